//! `GET /v1/roads/{road_id}/sessions`: parking sessions, paged.

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::problem::{ApiError, blocking};
use super::{AppState, parse_id};
use crate::domain::auth::Role;
use crate::domain::ids::RoadId;
use crate::store::SessionCursor;

/// Most sessions in one page (and the default).
pub const MAX_LIMIT: i64 = 10_000;

/// The window and page.
#[derive(Debug, Deserialize, IntoParams)]
pub struct SessionQuery {
    /// Window start, RFC 3339; default 24 hours before `to`.
    pub from: Option<String>,
    /// Window end, RFC 3339; default now.
    pub to: Option<String>,
    /// Page size, 1 to 10000 (default 10000).
    pub limit: Option<i64>,
    /// Opaque cursor from a previous page's `next`.
    pub after: Option<String>,
}

/// One occupied interval of a bay.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub bay_id: String,
    pub started_at: DateTime<Utc>,
    /// Null while the bay is still occupied.
    pub ended_at: Option<DateTime<Utc>>,
    /// `sensor` or `observed`.
    pub source: String,
    /// The vehicle, when a warden saw it (null when none did): for wardens
    /// and admins only; planners see counts and times, not plates. A
    /// plate past its keeping time is a pseudonym (`pseud:...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub plate: Option<Option<String>>,
}

/// A page of sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionsResponse {
    pub sessions: Vec<SessionView>,
    /// The URL of the following page, or null.
    pub next: Option<String>,
}

fn instant(name: &str, s: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ApiError::BadRequest(format!("{name} {s:?} is not RFC 3339: {e}")))
}

fn cursor(s: &str) -> Result<SessionCursor, ApiError> {
    let bad = || ApiError::BadRequest(format!("after {s:?} is not a cursor from a previous page"));
    let (a, b) = s.split_once('.').ok_or_else(bad)?;
    Ok(SessionCursor {
        started_at_ms: a.parse().map_err(|_| bad())?,
        session_id: b.parse().map_err(|_| bad())?,
    })
}

/// A sessions query, checked.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SessionWindow {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub limit: i64,
    pub after: Option<SessionCursor>,
}

impl SessionQuery {
    /// The window and page asked for, defaults filled in from `now`; 400
    /// for an unreadable time or cursor, an empty window or a bad limit.
    pub(super) fn window(&self, now: DateTime<Utc>) -> Result<SessionWindow, ApiError> {
        let to = match &self.to {
            Some(s) => instant("to", s)?,
            None => now,
        };
        let from = match &self.from {
            Some(s) => instant("from", s)?,
            None => to - Duration::hours(24),
        };
        if from >= to {
            return Err(ApiError::BadRequest("from must be before to".into()));
        }
        let limit = self.limit.unwrap_or(MAX_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::BadRequest(format!(
                "limit {limit} is not between 1 and {MAX_LIMIT}"
            )));
        }
        let after = self.after.as_deref().map(cursor).transpose()?;
        Ok(SessionWindow {
            from,
            to,
            limit,
            after,
        })
    }
}

/// Each occupied interval of the road's bays overlapping the window,
/// oldest first. Wardens, planners and admins.
#[utoipa::path(get, path = "/v1/roads/{road_id}/sessions", tag = "roads",
    params(("road_id" = String, Path), SessionQuery),
    security(("bearer" = [])),
    responses((status = 200, body = SessionsResponse), (status = 400, body = super::problem::Problem),
              (status = 401, body = super::problem::Problem), (status = 403, body = super::problem::Problem),
              (status = 404, body = super::problem::Problem)))]
#[get("/roads/{road_id}/sessions")]
pub async fn list_sessions(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<SessionQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Warden, Role::Planner])?;
    let with_plates = caller.role.may(&[Role::Warden]);
    let road = parse_id("road_id", &path, RoadId::parse)?;
    if state.street.map().road(&road).is_none() {
        return Err(ApiError::NotFound(format!("no road {road:?}")));
    }
    let SessionWindow {
        from,
        to,
        limit,
        after,
    } = query.window(state.clock.now())?;
    let store = state.store.clone();
    let rid = road.clone();
    let mut rows = blocking(move || store.sessions(&rid, from, to, after, limit + 1)).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = match rows.last() {
        Some(last) if more => Some(format!(
            "/v1/roads/{road}/sessions?from={}&to={}&limit={limit}&after={}.{}",
            from.to_rfc3339_opts(SecondsFormat::Millis, true),
            to.to_rfc3339_opts(SecondsFormat::Millis, true),
            last.started_at.timestamp_millis(),
            last.session_id
        )),
        _ => None,
    };
    Ok(HttpResponse::Ok().json(SessionsResponse {
        sessions: rows
            .into_iter()
            .map(|r| SessionView {
                bay_id: r.bay_id,
                started_at: r.started_at,
                ended_at: r.ended_at,
                source: r.source,
                plate: with_plates.then_some(r.plate),
            })
            .collect(),
        next,
    }))
}
