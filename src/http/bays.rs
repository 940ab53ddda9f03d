//! `GET /v1/bays/{bay_id}`: one bay and its live status.

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::problem::ApiError;
use super::{AppState, parse_id};
use crate::domain::ids::BayId;

/// A bay and its live status.
#[derive(Debug, Serialize, ToSchema)]
pub struct BayResponse {
    pub bay_id: String,
    pub road_id: String,
    /// `standard`, `accessible`, `loading`, `ev` or `motorcycle`.
    pub kind: &'static str,
    /// Longest permitted stay in minutes; null is no limit.
    pub max_stay_minutes: Option<u32>,
    /// `"HH:MM-HH:MM"` local time when the limit applies; null is always.
    pub enforced_hours: Option<String>,
    pub side: Option<String>,
    /// `free`, `occupied` or `unknown`.
    pub status: &'static str,
    /// When the bay entered `status`; null when nothing was ever heard.
    pub since: Option<DateTime<Utc>>,
}

/// One bay of any road's current layout.
#[utoipa::path(get, path = "/v1/bays/{bay_id}", tag = "bays",
    params(("bay_id" = String, Path)),
    responses((status = 200, body = BayResponse), (status = 400, body = super::problem::Problem),
              (status = 404, body = super::problem::Problem)))]
#[get("/bays/{bay_id}")]
pub async fn get_bay(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("bay_id", &path, BayId::parse)?;
    let map = state.street.map();
    let (road, bay) = map
        .bay(&id)
        .ok_or_else(|| ApiError::NotFound(format!("no bay {id} in any current layout")))?;
    let report = state.street.report(&id, state.clock.now());
    Ok(HttpResponse::Ok().json(BayResponse {
        bay_id: bay.bay_id.to_string(),
        road_id: road.info.road_id.to_string(),
        kind: bay.kind.as_str(),
        max_stay_minutes: bay.max_stay_minutes,
        enforced_hours: bay.enforced_hours.map(|h| h.to_string()),
        side: bay.side.clone(),
        status: report.status.as_str(),
        since: report.since,
    }))
}
