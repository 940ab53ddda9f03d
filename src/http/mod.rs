//! The REST API (contract section 3): one file per resource, problem+json
//! errors, OpenAPI at `/openapi.json` and a docs page at `/docs/`.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::mqtt::MqttLink;
use crate::store::Store;
use crate::street::Street;

pub mod auth;
mod bays;
pub mod cases;
mod cds;
mod chart;
pub mod console;
mod datex;
pub mod devices;
mod docs;
mod health;
mod history;
mod layouts;
mod metrics;
pub mod problem;
#[cfg(test)]
mod props;
pub mod public;
mod quarantine;
mod roads;
mod sessions;
mod stream;
mod violations;

pub use docs::ApiDoc;
use problem::ApiError;
pub use roads::OccupancyResponse;

/// What every handler can reach.
pub struct AppState {
    pub store: Store,
    pub street: Arc<Street>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub mqtt: MqttLink,
    /// Registered devices, as the broker and ingest see them.
    pub devices: Arc<crate::devices::Registry>,
    /// Time zone of bays' enforced hours.
    pub timezone: chrono_tz::Tz,
    /// Per-client limit on the public endpoints.
    pub limiter: public::RateLimiter,
    /// The live stream's source.
    pub live: Arc<crate::live::Hub>,
    /// The retention window: no event older is accepted, so history
    /// before it is never rebuilt.
    pub retention: chrono::Duration,
    /// How often the live stream sends a heartbeat comment.
    pub stream_heartbeat: std::time::Duration,
    /// What the console page learns from `GET /console/config`.
    pub console: console::ConsoleConfig,
}

/// Registers every route and the error handlers that keep extractor
/// failures in problem+json.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::PathConfig::default()
            .error_handler(|e, _| ApiError::BadRequest(format!("bad path: {e}")).into()),
    )
    .app_data(
        web::QueryConfig::default()
            .error_handler(|e, _| ApiError::BadRequest(format!("bad query string: {e}")).into()),
    )
    .app_data(
        web::JsonConfig::default()
            .error_handler(|e, _| ApiError::BadRequest(format!("bad JSON body: {e}")).into()),
    )
    .service(console::index)
    .service(console::config)
    .service(console::asset)
    .service(health::healthz)
    .service(metrics::metrics)
    .service(docs::swagger_ui())
    .service(
        web::scope("/cds/v1")
            .service(cds::list_zones)
            .service(cds::get_zone)
            .service(cds::list_spaces)
            .service(cds::list_objects)
            .service(cds::list_policies)
            .service(cds::get_policy)
            .route("/curbs/areas", web::get().to(cds::not_implemented))
            .route("/curbs/areas/{id}", web::get().to(cds::not_implemented))
            .route("/curbs/spaces/{id}", web::get().to(cds::not_implemented))
            .route("/curbs/objects/{id}", web::get().to(cds::not_implemented))
            .route("/events/status", web::get().to(cds::not_implemented))
            .service(cds::list_events)
            .service(cds::metric_sessions)
            .service(cds::metric_aggregates),
    )
    .service(
        web::scope("/v1/public")
            .service(public::free_spaces)
            .service(public::public_roads)
            .service(datex::parking_light)
            .service(cases::file_complaint)
            .service(cases::get_complaint)
            .route(
                "/{tail:.*}",
                web::method(actix_web::http::Method::OPTIONS).to(public::preflight),
            ),
    )
    .service(
        web::scope("/v1")
            .service(stream::stream)
            .service(auth::whoami)
            .service(roads::list_roads)
            .service(roads::get_layout)
            .service(layouts::put_layout)
            .service(roads::list_revisions)
            .service(roads::get_occupancy)
            .service(roads::get_bays)
            .service(bays::get_bay)
            .service(sessions::list_sessions)
            .service(history::road_metrics)
            .service(history::road_effect)
            .service(history::road_effect_svg)
            .service(violations::list_violations)
            .service(violations::get_violation)
            .service(violations::ticket)
            .service(violations::dismiss)
            .service(devices::create_device)
            .service(devices::list_devices)
            .service(devices::revoke_device)
            .service(quarantine::list_quarantine)
            .service(cases::add_party)
            .service(cases::list_parties)
            .service(cases::open_case)
            .service(cases::list_cases)
            .service(cases::get_case)
            .service(cases::resolve_case),
    )
    .default_service(web::to(not_found));
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    use actix_web::ResponseError;
    ApiError::NotFound(format!("no resource at {} {}", req.method(), req.path())).error_response()
}

/// Parses a path identifier, answering 400 when it breaks the identifier rule.
fn parse_id<T>(
    what: &str,
    s: &str,
    parse: fn(&str) -> Result<T, crate::domain::ids::IdError>,
) -> Result<T, ApiError> {
    parse(s).map_err(|e| ApiError::BadRequest(format!("{what} {s:?} {e}")))
}
