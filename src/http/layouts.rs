//! `PUT /v1/roads/{road_id}/layout`: planners validate, preview and publish
//! a road's layout as a new revision.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, put, web};
use futures_util::StreamExt;
use geojson::FeatureCollection;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::problem::{ApiError, blocking};
use super::{AppState, parse_id};
use crate::domain::auth::Role;
use crate::domain::crs::{self, Datum, DeclaredCrs};
use crate::domain::ids::RoadId;
use crate::domain::layout::{Layout, LayoutProblem, ProblemCode, parse_road_layout_lenient};
use crate::domain::occupancy::BayStatus;
use crate::domain::validate::{Diff, Warning, diff, validate};
use crate::domain::violations::ViolationStatus;
use crate::store::{StoreError, StoredLayout};
use crate::street::{RoadView, StreetMap};

/// Largest layout body accepted, bytes.
pub const MAX_LAYOUT_BYTES: usize = 16 * 1024 * 1024;
/// Most features in one layout.
pub const MAX_FEATURES: usize = 20_000;

/// Preview or publish.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PutQuery {
    /// Validate and diff without saving anything.
    pub dry_run: Option<bool>,
    /// The revision this layout was drawn from (recorded; `If-Match` also
    /// enforces it).
    pub based_on: Option<i64>,
    /// `wgs84` (the default; also for CGCS2000) or `gcj02`: the layout was
    /// drawn over an Amap or Tencent basemap and is converted to WGS 84.
    #[param(value_type = Option<String>)]
    pub crs: Option<Datum>,
}

/// A removed or changed bay that matters now.
#[derive(Debug, Serialize, ToSchema)]
pub struct Impact {
    pub bay_id: String,
    /// `removed` or `changed`.
    pub change: &'static str,
    /// Occupied right now.
    pub occupied: bool,
    /// Open violations on it.
    pub open_violations: usize,
}

/// The outcome of a preview or a publish.
#[derive(Debug, Serialize, ToSchema)]
pub struct PutResponse {
    /// The revision published; for a dry run, the current revision the
    /// layout was compared with (0 for a new road).
    pub revision: i64,
    pub dry_run: bool,
    #[schema(value_type = Object)]
    pub diff: Diff,
    #[schema(value_type = Vec<Object>)]
    pub warnings: Vec<Warning>,
    pub impact: Vec<Impact>,
}

fn invalid(errors: Vec<LayoutProblem>) -> ApiError {
    let n = errors.len();
    ApiError::Invalid {
        detail: format!(
            "the layout has {n} problem{}; see errors",
            if n == 1 { "" } else { "s" }
        ),
        errors,
    }
}

fn malformed(message: String) -> ApiError {
    invalid(vec![LayoutProblem {
        feature_id: None,
        code: ProblemCode::Malformed,
        message,
    }])
}

/// `If-Match: "3"` (or `3`, or `W/"3"`) as a revision number.
fn if_match(req: &HttpRequest) -> Result<Option<i64>, ApiError> {
    let Some(v) = req.headers().get(actix_web::http::header::IF_MATCH) else {
        return Ok(None);
    };
    revision_tag(v.to_str().unwrap_or_default()).map(Some)
}

/// An `If-Match` value as a revision number; 400 when it is not one.
pub(super) fn revision_tag(s: &str) -> Result<i64, ApiError> {
    let s = s.trim();
    let s = s.trim_start_matches("W/").trim_matches('"');
    s.parse::<i64>().map_err(|_| {
        ApiError::BadRequest(format!(
            "If-Match {s:?} is not a revision number in quotes, like \"3\""
        ))
    })
}

/// A layout body as a FeatureCollection: 422 `malformed` when it is not
/// JSON or not GeoJSON, 413 with more than [`MAX_FEATURES`] features.
pub(super) fn feature_collection(body: &[u8]) -> Result<FeatureCollection, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| malformed(format!("the body is not JSON: {e}")))?;
    if value
        .get("features")
        .and_then(|f| f.as_array())
        .is_some_and(|f| f.len() > MAX_FEATURES)
    {
        return Err(ApiError::PayloadTooLarge(format!(
            "a layout may have at most {MAX_FEATURES} features"
        )));
    }
    serde_json::from_value(value)
        .map_err(|e| malformed(format!("the body is not a GeoJSON FeatureCollection: {e}")))
}

/// Reads the layout's `crs` member and, for `?crs=gcj02`, converts it to
/// WGS 84 in place. 422 `unsupported_crs` for a CRS kerbside does not take,
/// and for a layout marked GCJ-02 sent without `?crs=gcj02`; a warning for
/// CGCS2000, taken as WGS 84.
fn read_crs(fc: &mut FeatureCollection, datum: Datum) -> Result<Vec<Warning>, ApiError> {
    let declared = crs::declared_crs(fc).map_err(|p| invalid(vec![p]))?;
    let mut warnings = Vec::new();
    match datum {
        Datum::Gcj02 => crs::gcj02_to_wgs84(fc),
        Datum::Wgs84 if crs::marked_gcj02(fc) => {
            return Err(invalid(vec![LayoutProblem {
                feature_id: None,
                code: ProblemCode::UnsupportedCrs,
                message: "the layout says \"datum\": \"gcj02\", as an export with ?crs=gcj02 does; send it with ?crs=gcj02 so that it is converted, or remove the member if it is in WGS 84 now".into(),
            }]));
        }
        Datum::Wgs84 if declared == Some(DeclaredCrs::Cgcs2000) => warnings.push(Warning {
            feature_id: None,
            code: "cgcs2000_as_wgs84",
            message: "the layout is in CGCS2000 (EPSG:4490), taken as WGS 84: at this scale the two agree within a few centimetres".into(),
        }),
        Datum::Wgs84 => {}
    }
    Ok(warnings)
}

/// A layout that passed every check, with what it changes.
struct Checked {
    layout: Layout,
    warnings: Vec<Warning>,
    /// The road as the street has it now, if it exists.
    current: Option<Arc<RoadView>>,
    diff: Diff,
}

/// Reads, converts and validates a layout body for `road` against the
/// street `map`: 422 with every problem found. CPU-bound; runs on the
/// blocking pool.
fn check_layout(
    body: &[u8],
    datum: Datum,
    road: &RoadId,
    map: &StreetMap,
) -> Result<Checked, ApiError> {
    let mut fc = feature_collection(body)?;
    let crs_warnings = read_crs(&mut fc, datum)?;
    let (layout, mut problems) = parse_road_layout_lenient(&fc, road);
    drop(fc);
    // Geometry is checked on whatever parsed, so one answer lists everything.
    let Some(layout) = layout else {
        return Err(invalid(problems));
    };
    let taken: Vec<LayoutProblem> = layout
        .bays
        .iter()
        .filter_map(|b| {
            let (owner, _) = map.bay(&b.bay_id)?;
            (owner.info.road_id != *road).then(|| LayoutProblem {
                feature_id: Some(b.bay_id.to_string()),
                code: ProblemCode::DuplicateId,
                message: format!("bay {} belongs to road {}", b.bay_id, owner.info.road_id),
            })
        })
        .collect();
    problems.extend(taken);
    let warnings = match validate(&layout) {
        Ok(w) if problems.is_empty() => crs_warnings.into_iter().chain(w).collect(),
        Ok(_) => return Err(invalid(problems)),
        Err(more) => {
            problems.extend(more);
            return Err(invalid(problems));
        }
    };
    let current = map.road(road).cloned();
    let diff = diff(current.as_ref().map(|v| &v.layout), &layout);
    Ok(Checked {
        layout,
        warnings,
        current,
        diff,
    })
}

/// Validates the road's new layout and, unless `dry_run`, publishes it as
/// the next revision. Planners and admins.
#[utoipa::path(put, path = "/v1/roads/{road_id}/layout", tag = "roads",
    params(("road_id" = String, Path), PutQuery,
           ("If-Match" = Option<String>, Header, description = "The revision the layout was drawn from, e.g. \"3\"; 412 if it is no longer current")),
    request_body(content = Object, description = "A GeoJSON FeatureCollection (contract section 1)", content_type = "application/json"),
    security(("bearer" = [])),
    responses((status = 200, body = PutResponse), (status = 400, body = super::problem::Problem),
              (status = 401, body = super::problem::Problem), (status = 403, body = super::problem::Problem),
              (status = 412, body = super::problem::Problem), (status = 413, body = super::problem::Problem),
              (status = 415, body = super::problem::Problem), (status = 422, body = super::problem::Problem)))]
#[put("/roads/{road_id}/layout")]
pub async fn put_layout(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<PutQuery>,
    req: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Planner])?;
    let road = parse_id("road_id", &path, RoadId::parse)?;
    let content_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !matches!(essence, "application/json" | "application/geo+json") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "a layout is sent as application/json or application/geo+json, not {content_type:?}"
        )));
    }
    let expected = if_match(&req)?;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > MAX_LAYOUT_BYTES {
            return Err(ApiError::PayloadTooLarge(format!(
                "a layout may be at most {MAX_LAYOUT_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    // Reading and checking 20,000 features takes a while: not on the
    // server's threads, which answer everyone else meanwhile.
    let datum = query.crs.unwrap_or_default();
    let map = state.street.map();
    let rid = road.clone();
    let checked = actix_web::web::block(move || check_layout(&body, datum, &rid, &map))
        .await
        .map_err(|e| {
            ApiError::Store(StoreError::Corrupt(format!("blocking task failed: {e}")))
        })??;
    let Checked {
        layout,
        warnings,
        current,
        diff,
    } = checked;

    // Impact: removed or changed bays that are occupied now or have open violations.
    let now = state.clock.now();
    let store = state.store.clone();
    let rid = road.clone();
    let open = blocking(move || store.violations(&rid, Some(ViolationStatus::Open))).await?;
    let impact: Vec<Impact> = diff
        .removed
        .iter()
        .map(|id| (id, "removed"))
        .chain(diff.changed.iter().map(|id| (id, "changed")))
        .filter_map(|(id, change)| {
            let bay = current
                .as_ref()?
                .layout
                .bays
                .iter()
                .find(|b| b.bay_id.as_str() == id)?;
            let occupied = state.street.report(&bay.bay_id, now).status == BayStatus::Occupied;
            let open_violations = open
                .iter()
                .filter(|v| v.bay_id.as_deref() == Some(id.as_str()))
                .count();
            (occupied || open_violations > 0).then(|| Impact {
                bay_id: id.clone(),
                change,
                occupied,
                open_violations,
            })
        })
        .collect();

    let current_revision = current.as_ref().map_or(0, |v| v.info.revision);
    if query.dry_run.unwrap_or(false) {
        return Ok(HttpResponse::Ok().json(PutResponse {
            revision: current_revision,
            dry_run: true,
            diff,
            warnings,
            impact,
        }));
    }

    let store = state.store.clone();
    let by = caller.name.clone();
    let based_on = query.based_on.or(expected);
    let to_store = layout.clone();
    let published =
        blocking(
            move || match store.publish_layout(&to_store, &by, based_on, expected, now) {
                Err(
                    e @ (StoreError::RevisionConflict { .. } | StoreError::BayOnOtherRoad { .. }),
                ) => Ok(Err(e)),
                other => other.map(Ok),
            },
        )
        .await?;
    let info = published.map_err(|e| match e {
        // A bay id that another road once used (and has retired) stays that
        // road's: its history is filed under it.
        StoreError::BayOnOtherRoad { bay_id, owner } => invalid(vec![LayoutProblem {
            message: format!(
                "bay {bay_id} belongs to road {owner} (retired there); give this bay a new id"
            ),
            feature_id: Some(bay_id),
            code: ProblemCode::BayOnOtherRoad,
        }]),
        StoreError::RevisionConflict { current, .. } => ApiError::PreconditionFailed(format!(
            "the road's current revision is {current}, not {}; fetch it, redraw and send again",
            expected.unwrap_or_default()
        )),
        other => ApiError::Store(other),
    })?;
    let revision = info.revision;
    // Retired bays leave the street, and their states with them.
    if state.street.replace_road(StoredLayout { info, layout }) {
        state.live.layout(&road, revision);
    }
    tracing::info!(road = %road, revision, by = %caller.name, "published a layout revision");
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::ETAG, format!("\"{revision}\"")))
        .json(PutResponse {
            revision,
            dry_run: false,
            diff,
            warnings,
            impact,
        }))
}
