//! Roads: the list, layouts and their revisions, occupancy, bays with status.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, get, web};
use chrono::{DateTime, Utc};
use geojson::{Feature, FeatureCollection, JsonObject, JsonValue};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::problem::{ApiError, blocking};
use super::public::{MAX_AGE_S, admit, cacheable};
use super::{AppState, parse_id};
use crate::domain::crs::{self, Datum};
use crate::domain::ids::RoadId;
use crate::domain::occupancy::{Counts, Report};
use crate::street::RoadView;

/// One road in the list.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoadSummary {
    pub road_id: String,
    pub name: String,
    pub name_en: Option<String>,
    /// The current layout revision.
    pub revision: i64,
    pub bays: u32,
    pub barriers: u32,
    pub occupied: u32,
    pub free: u32,
    pub unknown: u32,
}

/// `GET /v1/roads`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoadsResponse {
    pub roads: Vec<RoadSummary>,
}

/// Every road with its bay and barrier counts and live occupancy.
/// Rate limited per client like the `/v1/public` endpoints (it counts every
/// road), and cacheable for a few seconds.
#[utoipa::path(get, path = "/v1/roads", tag = "roads",
    responses((status = 200, body = RoadsResponse), (status = 429, body = super::problem::Problem)))]
#[get("/roads")]
pub async fn list_roads(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    admit(&state, &req)?;
    let now = state.clock.now();
    let map = state.street.map();
    let roads = map
        .roads
        .values()
        .map(|view| {
            let c = state.street.counts(view, now).all;
            let road = &view.layout.road;
            RoadSummary {
                road_id: road.road_id.to_string(),
                name: road.name.clone(),
                name_en: road.name_en.clone(),
                revision: view.info.revision,
                bays: c.bays,
                barriers: view.layout.barriers.len() as u32,
                occupied: c.occupied,
                free: c.free,
                unknown: c.unknown,
            }
        })
        .collect();
    Ok(cacheable(
        HttpResponse::Ok().json(RoadsResponse { roads }),
        MAX_AGE_S,
        false,
    ))
}

/// How long an answer that can never change may be cached: a year, the
/// longest HTTP caches honour.
const IMMUTABLE_MAX_AGE_S: u32 = 31_536_000;

pub(super) fn road_view(
    state: &AppState,
    road_id: &str,
) -> Result<std::sync::Arc<RoadView>, ApiError> {
    let id = parse_id("road_id", road_id, RoadId::parse)?;
    state
        .street
        .map()
        .road(&id)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no road {road_id:?}")))
}

/// Which revision of a layout to export.
#[derive(Debug, Deserialize, IntoParams)]
pub struct LayoutQuery {
    /// A past revision number; the current one when absent.
    pub revision: Option<i64>,
    /// `wgs84` (the default) or `gcj02`: the layout converted for tracing
    /// over an Amap or Tencent basemap, marked `"datum": "gcj02"`; send it
    /// back with `PUT ...layout?crs=gcj02`.
    #[param(value_type = Option<String>)]
    pub crs: Option<Datum>,
}

fn feature_collection_with(fc: FeatureCollection, extra: JsonObject) -> HttpResponse {
    let mut fc = fc;
    fc.foreign_members = Some(extra);
    HttpResponse::Ok().json(fc)
}

/// The road's layout as GeoJSON (contract section 1), with its `revision`.
/// What this exports can be imported again unchanged. A `?revision=` read
/// goes to the store, so it is rate limited per client like the
/// `/v1/public` endpoints; a stored revision never changes, so its answer
/// may be cached for a year.
#[utoipa::path(get, path = "/v1/roads/{road_id}/layout", tag = "roads",
    params(("road_id" = String, Path), LayoutQuery),
    responses((status = 200, description = "A GeoJSON FeatureCollection with a top-level `revision`", body = Object),
              (status = 400, body = super::problem::Problem), (status = 404, body = super::problem::Problem),
              (status = 429, body = super::problem::Problem)))]
#[get("/roads/{road_id}/layout")]
pub async fn get_layout(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<LayoutQuery>,
) -> Result<HttpResponse, ApiError> {
    if query.revision.is_some() {
        admit(&state, &req)?;
    }
    let view = road_view(&state, &path)?;
    let (revision, mut fc) = match query.revision {
        None => (view.info.revision, view.layout.to_feature_collection()),
        Some(n) => {
            let store = state.store.clone();
            let id = view.info.road_id.clone();
            let stored = blocking(move || store.layout_revision(&id, n))
                .await?
                .ok_or_else(|| {
                    ApiError::NotFound(format!("road {} has no revision {n}", view.info.road_id))
                })?;
            (n, stored.layout.to_feature_collection())
        }
    };
    let mut extra = JsonObject::new();
    if query.crs == Some(Datum::Gcj02) {
        crs::wgs84_to_gcj02(&mut fc);
        extra.extend(fc.foreign_members.take().into_iter().flatten());
    }
    extra.insert("revision".into(), revision.into());
    let mut res = feature_collection_with(fc, extra);
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&format!("\"{revision}\"")) {
        res.headers_mut().insert(actix_web::http::header::ETAG, v);
    }
    if query.revision.is_some() {
        res = cacheable(res, IMMUTABLE_MAX_AGE_S, true);
    }
    Ok(res)
}

/// One revision in the history.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevisionSummary {
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    /// The revision this one was drawn from, when its publisher said.
    pub based_on: Option<i64>,
    pub bays: i64,
    pub barriers: i64,
}

/// `GET /v1/roads/{road_id}/layout/revisions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevisionsResponse {
    pub revisions: Vec<RevisionSummary>,
}

/// Every layout revision of the road, oldest first.
#[utoipa::path(get, path = "/v1/roads/{road_id}/layout/revisions", tag = "roads",
    params(("road_id" = String, Path)),
    responses((status = 200, body = RevisionsResponse), (status = 404, body = super::problem::Problem)))]
#[get("/roads/{road_id}/layout/revisions")]
pub async fn list_revisions(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = road_view(&state, &path)?;
    let store = state.store.clone();
    let id = view.info.road_id.clone();
    let revisions = blocking(move || store.revisions(&id)).await?;
    Ok(HttpResponse::Ok().json(RevisionsResponse {
        revisions: revisions
            .into_iter()
            .map(|r| RevisionSummary {
                revision: r.revision,
                created_at: r.created_at,
                created_by: r.created_by,
                based_on: r.based_on,
                bays: r.bays,
                barriers: r.barriers,
            })
            .collect(),
    }))
}

/// Bay counts by status.
#[derive(Debug, Serialize, ToSchema)]
pub struct KindCounts {
    pub bays: u32,
    pub occupied: u32,
    pub free: u32,
    pub unknown: u32,
}

impl From<Counts> for KindCounts {
    fn from(c: Counts) -> Self {
        KindCounts {
            bays: c.bays,
            occupied: c.occupied,
            free: c.free,
            unknown: c.unknown,
        }
    }
}

/// `GET /v1/roads/{road_id}/occupancy`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OccupancyResponse {
    pub road_id: String,
    /// The instant the counts describe.
    pub as_of: DateTime<Utc>,
    pub bays: u32,
    pub occupied: u32,
    pub free: u32,
    pub unknown: u32,
    /// Occupied bays as a share (0 to 1) of the bays whose status is known;
    /// null when none is known.
    pub occupancy_rate: Option<f64>,
    /// Counts per bay kind present on the road.
    pub by_kind: BTreeMap<String, KindCounts>,
}

/// Live occupancy of the road, overall and by bay kind.
#[utoipa::path(get, path = "/v1/roads/{road_id}/occupancy", tag = "roads",
    params(("road_id" = String, Path)),
    responses((status = 200, body = OccupancyResponse), (status = 400, body = super::problem::Problem),
              (status = 404, body = super::problem::Problem)))]
#[get("/roads/{road_id}/occupancy")]
pub async fn get_occupancy(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = road_view(&state, &path)?;
    Ok(HttpResponse::Ok().json(OccupancyResponse::of(
        &state.street,
        &view,
        state.clock.now(),
    )))
}

impl OccupancyResponse {
    /// The road's counts at `now`: this answer, and the live stream's
    /// `occupancy` message.
    pub fn of(street: &crate::street::Street, view: &RoadView, now: DateTime<Utc>) -> Self {
        let counts = street.counts(view, now);
        OccupancyResponse {
            road_id: view.info.road_id.to_string(),
            as_of: now,
            bays: counts.all.bays,
            occupied: counts.all.occupied,
            free: counts.all.free,
            unknown: counts.all.unknown,
            occupancy_rate: counts.all.occupancy_rate(),
            by_kind: counts
                .by_kind
                .into_iter()
                .map(|(k, c)| (k.as_str().to_owned(), c.into()))
                .collect(),
        }
    }
}

/// Adds `status` and `since` to a bay feature's properties.
pub(super) fn with_status(mut f: Feature, report: Report) -> Feature {
    let props = f.properties.get_or_insert_with(JsonObject::new);
    props.insert("status".into(), report.status.as_str().into());
    props.insert(
        "since".into(),
        report.since.map_or(JsonValue::Null, |t| {
            JsonValue::String(crate::clock::rfc3339(t))
        }),
    );
    f
}

/// The road's bays as GeoJSON, each with its live `status` and `since`.
#[utoipa::path(get, path = "/v1/roads/{road_id}/bays", tag = "roads",
    params(("road_id" = String, Path)),
    responses((status = 200, description = "A GeoJSON FeatureCollection of bays", body = Object),
              (status = 404, body = super::problem::Problem)))]
#[get("/roads/{road_id}/bays")]
pub async fn get_bays(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = road_view(&state, &path)?;
    let reports = state.street.reports(&view, state.clock.now());
    let features = view
        .layout
        .bays
        .iter()
        .zip(reports)
        .map(|(bay, report)| with_status(bay.feature(), report))
        .collect();
    let mut extra = JsonObject::new();
    extra.insert("revision".into(), view.info.revision.into());
    Ok(feature_collection_with(
        FeatureCollection {
            bbox: None,
            features,
            foreign_members: None,
        },
        extra,
    ))
}
