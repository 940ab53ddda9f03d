//! Violations on a road (wardens act on them; planners read them).

use actix_web::{HttpResponse, get, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::problem::ApiError;
use super::{AppState, parse_id};
use crate::domain::auth::Role;
use crate::domain::ids::RoadId;

/// Which violations to list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ViolationQuery {
    /// `open` (default), `ticketed`, `dismissed`, `void` or `all`.
    pub status: Option<String>,
}

/// `GET /v1/roads/{road_id}/violations`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ViolationsResponse {
    #[schema(value_type = Vec<Object>)]
    pub violations: Vec<serde_json::Value>,
}

const STATUSES: [&str; 5] = ["open", "ticketed", "dismissed", "void", "all"];

/// The road's violations with the given status. Wardens, planners and admins.
#[utoipa::path(get, path = "/v1/roads/{road_id}/violations", tag = "violations",
    params(("road_id" = String, Path), ViolationQuery),
    security(("bearer" = [])),
    responses((status = 200, body = ViolationsResponse), (status = 400, body = super::problem::Problem),
              (status = 401, body = super::problem::Problem), (status = 403, body = super::problem::Problem),
              (status = 404, body = super::problem::Problem)))]
#[get("/roads/{road_id}/violations")]
pub async fn list_violations(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ViolationQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Warden, Role::Planner])?;
    let id = parse_id("road_id", &path, RoadId::parse)?;
    if state.street.map().road(&id).is_none() {
        return Err(ApiError::NotFound(format!("no road {id:?}")));
    }
    let status = query.status.as_deref().unwrap_or("open");
    if !STATUSES.contains(&status) {
        return Err(ApiError::BadRequest(format!(
            "status {status:?} is not one of {}",
            STATUSES.join(", ")
        )));
    }
    // Violations are detected by the enforcement engine; until it records
    // any, every road's list is empty.
    Ok(HttpResponse::Ok().json(ViolationsResponse {
        violations: Vec::new(),
    }))
}
