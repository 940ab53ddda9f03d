//! `GET /`: the console page (contract 6.2), and its assets under
//! `/console/`, all built into the binary: the page's own ES modules and
//! style (`console/src/`) and Leaflet (`console/node_modules`, from npm,
//! pinned by `console/package-lock.json`). Nothing is fetched from the
//! internet, at build's end or at run time: the one exception is a basemap
//! the deployment names with `--tile-url`, which the page learns from
//! `GET /console/config`.

use actix_web::http::header::{CACHE_CONTROL, ContentType};
use actix_web::{HttpResponse, get, web};
use serde::Serialize;

use super::problem::ApiError;

macro_rules! asset {
    ($path:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/console/", $path))
    };
}

const INDEX: &[u8] = asset!("src/index.html");

/// The page's assets: (name, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        asset!("src/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        asset!("src/api.js"),
    ),
    (
        "road.js",
        "text/javascript; charset=utf-8",
        asset!("src/road.js"),
    ),
    (
        "warden.js",
        "text/javascript; charset=utf-8",
        asset!("src/warden.js"),
    ),
    (
        "cases.js",
        "text/javascript; charset=utf-8",
        asset!("src/cases.js"),
    ),
    (
        "signin.js",
        "text/javascript; charset=utf-8",
        asset!("src/signin.js"),
    ),
    (
        "planner.js",
        "text/javascript; charset=utf-8",
        asset!("src/planner.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        asset!("src/style.css"),
    ),
    (
        "leaflet.js",
        "text/javascript; charset=utf-8",
        asset!("node_modules/leaflet/dist/leaflet.js"),
    ),
    (
        "leaflet.css",
        "text/css; charset=utf-8",
        asset!("node_modules/leaflet/dist/leaflet.css"),
    ),
];

/// The console page.
#[get("/")]
pub async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::html())
        .insert_header((CACHE_CONTROL, "no-cache"))
        .body(INDEX)
}

/// What the page needs to know of the deployment (`GET /console/config`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConsoleConfig {
    /// The basemap's tile URL template (`--tile-url`); none: no basemap.
    pub tile_url: Option<String>,
    /// The basemap's attribution text (`--tile-attribution`).
    pub tile_attribution: Option<String>,
}

/// The page's settings: the basemap, if the deployment has one.
#[get("/console/config")]
pub async fn config(state: web::Data<super::AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-cache"))
        .json(&state.console)
}

/// One of the page's assets.
#[get("/console/{name}")]
pub async fn asset(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (_, kind, body) = ASSETS
        .iter()
        .find(|(n, _, _)| *n == name.as_str())
        .ok_or_else(|| ApiError::NotFound(format!("no console asset {:?}", name.as_str())))?;
    Ok(HttpResponse::Ok()
        .content_type(*kind)
        .insert_header((CACHE_CONTROL, "no-cache"))
        .body(*body))
}
