//! Violations: the warden's work queue and what wardens do with it.
//! Plates are personal data: every endpoint here needs a token.

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Duration, Utc};
use geo::{Centroid, Distance, Euclidean, Point};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::problem::{ApiError, blocking};
use super::{AppState, parse_id};
use crate::domain::auth::Role;
use crate::domain::enforcement::enforced_between;
use crate::domain::ids::{RoadId, check_identifier};
use crate::domain::violations::{Action, ViolationStatus};
use crate::spatial::LocalFrame;
use crate::store::{ActOutcome, ViolationCursor, ViolationRecord};
use crate::street::StreetMap;

/// Which violations to list, and from where.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ViolationQuery {
    /// `open` (default), `ticketed`, `dismissed`, `void` or `all`.
    pub status: Option<String>,
    /// `LON,LAT` (WGS 84): order nearest first from this point, as a
    /// warden's work queue, and give each item's `distance_m`.
    pub near: Option<String>,
    /// Page size, 1 to 10000 (default 1000).
    pub limit: Option<i64>,
    /// Opaque cursor from a previous page's `next`.
    pub after: Option<String>,
}

/// Default number of violations in one page.
pub const LIMIT_DEFAULT: i64 = 1000;
/// Most violations in one page.
pub const LIMIT_MAX: i64 = 10_000;

/// A point, WGS 84 degrees.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct PositionView {
    pub lon: f64,
    pub lat: f64,
}

/// A violation as wardens and planners see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ViolationView {
    pub violation_id: String,
    /// `overstay`, `outside_bay`, `obstruction`, `footway_parking` or `other`.
    pub kind: String,
    pub road_id: String,
    pub bay_id: Option<String>,
    /// Where it is: the event's position, or the bay's centre for overstays.
    pub position: Option<PositionView>,
    pub plate: Option<String>,
    /// When the vehicle arrived (or the event happened).
    pub started_at: DateTime<Utc>,
    /// When the limit was passed (or the event was seen).
    pub detected_at: DateTime<Utc>,
    /// When the vehicle left; null while it is there or not known.
    pub ended_at: Option<DateTime<Utc>>,
    /// Enforced minutes beyond the bay's limit, as of this answer; null for
    /// kinds other than overstay.
    pub overstay_minutes: Option<i64>,
    /// `open`, `ticketed`, `dismissed` or `void`.
    pub status: &'static str,
    /// Later evidence contradicts it after a warden ticketed or dismissed
    /// it; what was filed is unchanged, and the history says what the
    /// evidence now shows.
    pub disputed: bool,
    /// The events it rests on: `[{device_id, event_id, type, observed_at}]`.
    #[schema(value_type = Vec<Object>)]
    pub evidence: Value,
    pub note: Option<String>,
    /// Metres from the `near` point, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<f64>,
}

/// `GET /v1/roads/{road_id}/violations`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ViolationsResponse {
    pub violations: Vec<ViolationView>,
    /// The URL of the following page, or null.
    pub next: Option<String>,
}

/// One step of a violation's life.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryView {
    pub status: &'static str,
    pub at: DateTime<Utc>,
    /// The token name that acted; null when kerbside itself did.
    pub actor: Option<String>,
    pub note: Option<String>,
}

/// A violation with its full status history.
#[derive(Debug, Serialize, ToSchema)]
pub struct ViolationDetail {
    #[serde(flatten)]
    pub violation: ViolationView,
    pub history: Vec<HistoryView>,
}

pub(super) fn view(
    state: &AppState,
    map: &StreetMap,
    r: ViolationRecord,
    now: DateTime<Utc>,
) -> ViolationView {
    let bay = r
        .bay_id
        .as_deref()
        .and_then(|b| crate::domain::ids::BayId::parse(b).ok())
        .and_then(|b| map.bay(&b).map(|(_, bay)| bay.clone()));
    let position = r
        .position
        .map(|(lon, lat)| PositionView { lon, lat })
        .or_else(|| {
            let c = bay.as_ref()?.polygon.centroid()?;
            Some(PositionView {
                lon: c.x(),
                lat: c.y(),
            })
        });
    let overstay_minutes = (r.kind == "overstay").then(|| {
        let until = match (r.ended_at, r.source.as_deref()) {
            (Some(end), _) => end,
            (None, Some("sensor")) => now,
            _ => r.last_seen.unwrap_or(r.detected_at),
        };
        match bay
            .as_ref()
            .and_then(|b| Some((b.max_stay_minutes?, b.enforced_hours)))
        {
            Some((max, hours)) => (enforced_between(r.started_at, until, hours, state.timezone)
                - Duration::minutes(i64::from(max)))
            .num_minutes()
            .max(0),
            // The bay is gone from the layout: count from when the limit passed.
            None => (until - r.detected_at).num_minutes().max(0),
        }
    });
    ViolationView {
        violation_id: r.violation_id,
        kind: r.kind,
        road_id: r.road_id,
        bay_id: r.bay_id,
        position,
        plate: r.plate,
        started_at: r.started_at,
        detected_at: r.detected_at,
        ended_at: r.ended_at,
        overstay_minutes,
        status: r.status.as_str(),
        disputed: r.disputed,
        evidence: r.evidence,
        note: r.note,
        distance_m: None,
    }
}

/// A violation id from the path: it follows the identifier rule (400 if not).
pub(super) fn violation_id(s: &str) -> Result<String, ApiError> {
    check_identifier(s)
        .map(|()| s.to_owned())
        .map_err(|e| ApiError::BadRequest(format!("violation_id {s:?} {e}")))
}

/// The `status` filter: `None` for `all`; `open` when absent.
pub(super) fn status_filter(s: Option<&str>) -> Result<Option<ViolationStatus>, ApiError> {
    match s.unwrap_or("open") {
        "all" => Ok(None),
        s => ViolationStatus::parse(s).map(Some).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "status {s:?} is not one of open, ticketed, dismissed, void, all"
            ))
        }),
    }
}

pub(super) fn parse_near(s: &str) -> Result<Point<f64>, ApiError> {
    let bad = || ApiError::BadRequest(format!("near {s:?} is not LON,LAT in degrees"));
    let (lon, lat) = s.split_once(',').ok_or_else(bad)?;
    let (lon, lat): (f64, f64) = (
        lon.trim().parse().map_err(|_| bad())?,
        lat.trim().parse().map_err(|_| bad())?,
    );
    if !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
        return Err(bad());
    }
    Ok(Point::new(lon, lat))
}

/// The road's violations with the given status, newest first, or nearest
/// first from `near`. Wardens, planners and admins.
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
    let status = status_filter(query.status.as_deref())?;
    let near = query.near.as_deref().map(parse_near).transpose()?;
    let limit = query.limit.unwrap_or(LIMIT_DEFAULT);
    if !(1..=LIMIT_MAX).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit {limit} is not between 1 and {LIMIT_MAX}"
        )));
    }
    let after = query.after.as_deref();
    let store = state.store.clone();
    let now = state.clock.now();
    let rid = id.clone();
    let (views, next_after) = match near {
        None => {
            let cursor = after.map(newest_cursor).transpose()?;
            let mut rows =
                blocking(move || store.violations_page(&rid, status, cursor, limit + 1)).await?;
            let more = rows.len() as i64 > limit;
            rows.truncate(limit as usize);
            let next_after = match rows.last() {
                Some(last) if more => Some(format!(
                    "{}.{}",
                    last.detected_at.timestamp_millis(),
                    last.violation_id
                )),
                _ => None,
            };
            let map = state.street.map();
            let views: Vec<ViolationView> = rows
                .into_iter()
                .map(|r| view(&state, &map, r, now))
                .collect();
            (views, next_after)
        }
        Some(p) => {
            // Nearest first has no index to walk: the road's violations are
            // ordered in memory and the page resumes after (distance, id).
            let cursor = after.map(nearest_cursor).transpose()?;
            let rows = blocking(move || store.violations(&rid, status)).await?;
            let frame = LocalFrame::at(p.x(), p.y());
            let map = state.street.map();
            let mut views: Vec<ViolationView> = rows
                .into_iter()
                .map(|r| {
                    let mut v = view(&state, &map, r, now);
                    v.distance_m = v.position.map(|q| {
                        let m = frame.to_metres(geo::Coord { x: q.lon, y: q.lat });
                        (Euclidean.distance(Point::new(0.0, 0.0), Point::from(m)) * 10.0).round()
                            / 10.0
                    });
                    v
                })
                .collect();
            drop(map);
            let key = |v: &ViolationView| v.distance_m.unwrap_or(f64::INFINITY);
            views.sort_by(|a, b| {
                key(a)
                    .total_cmp(&key(b))
                    .then_with(|| a.violation_id.cmp(&b.violation_id))
            });
            if let Some((d, vid)) = &cursor {
                views.retain(|v| {
                    key(v)
                        .total_cmp(d)
                        .then_with(|| v.violation_id.as_str().cmp(vid))
                        .is_gt()
                });
            }
            let more = views.len() as i64 > limit;
            views.truncate(limit as usize);
            let next_after = match views.last() {
                Some(last) if more => Some(format!("{},{}", key(last), last.violation_id)),
                _ => None,
            };
            (views, next_after)
        }
    };
    let next = next_after.map(|a| {
        let mut url = format!(
            "/v1/roads/{id}/violations?status={}&limit={limit}",
            query.status.as_deref().unwrap_or("open")
        );
        if let Some(p) = near {
            url.push_str(&format!("&near={},{}", p.x(), p.y()));
        }
        url.push_str(&format!("&after={a}"));
        url
    });
    Ok(HttpResponse::Ok().json(ViolationsResponse {
        violations: views,
        next,
    }))
}

/// A newest-first cursor: `DETECTED_MS.VIOLATION_ID`.
fn newest_cursor(s: &str) -> Result<ViolationCursor, ApiError> {
    let bad = || ApiError::BadRequest(format!("after {s:?} is not a cursor from a previous page"));
    let (ms, vid) = s.split_once('.').ok_or_else(bad)?;
    check_identifier(vid).map_err(|_| bad())?;
    Ok(ViolationCursor {
        detected_at_ms: ms.parse().map_err(|_| bad())?,
        violation_id: vid.to_owned(),
    })
}

/// A nearest-first cursor: `DISTANCE_M,VIOLATION_ID` (`inf` for a
/// violation without a position).
fn nearest_cursor(s: &str) -> Result<(f64, String), ApiError> {
    let bad = || ApiError::BadRequest(format!("after {s:?} is not a cursor from a previous page"));
    let (d, vid) = s.split_once(',').ok_or_else(bad)?;
    check_identifier(vid).map_err(|_| bad())?;
    let d: f64 = d.parse().map_err(|_| bad())?;
    if d.is_nan() {
        return Err(bad());
    }
    Ok((d, vid.to_owned()))
}

/// One violation with its status history. Wardens, planners and admins.
#[utoipa::path(get, path = "/v1/violations/{violation_id}", tag = "violations",
    params(("violation_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = ViolationDetail), (status = 401, body = super::problem::Problem),
              (status = 403, body = super::problem::Problem), (status = 404, body = super::problem::Problem)))]
#[get("/violations/{violation_id}")]
pub async fn get_violation(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Warden, Role::Planner])?;
    let id = violation_id(&path)?;
    let store = state.store.clone();
    let lookup = id.clone();
    let (record, history) = blocking(move || store.violation(&lookup))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no violation {id:?}")))?;
    Ok(HttpResponse::Ok().json(ViolationDetail {
        violation: view(&state, &state.street.map(), record, state.clock.now()),
        history: history
            .into_iter()
            .map(|h| HistoryView {
                status: h.status.as_str(),
                at: h.at,
                actor: h.actor,
                note: h.note,
            })
            .collect(),
    }))
}

/// The optional body of a ticket or dismissal.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActBody {
    /// Up to 500 characters, kept in the history.
    pub note: Option<String>,
}

/// The body of a ticket or dismissal: empty, or `{"note"}` of at most 500
/// characters; 400 otherwise.
pub(super) fn act_body(body: &[u8]) -> Result<ActBody, ApiError> {
    let body: ActBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActBody::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("bad JSON body: {e}")))?
    };
    if body.note.as_ref().is_some_and(|n| n.chars().count() > 500) {
        return Err(ApiError::BadRequest(
            "note is longer than 500 characters".into(),
        ));
    }
    Ok(body)
}

async fn act_on(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
    action: Action,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Warden])?;
    let id = violation_id(&path)?;
    let body = act_body(&body)?;
    let store = state.store.clone();
    let now = state.clock.now();
    let (vid, actor) = (id.clone(), caller.name.clone());
    let outcome =
        blocking(move || store.act_on_violation(&vid, action, &actor, body.note.as_deref(), now))
            .await?;
    match outcome {
        ActOutcome::Done(record) => {
            Ok(HttpResponse::Ok().json(view(&state, &state.street.map(), *record, now)))
        }
        ActOutcome::NotFound => Err(ApiError::NotFound(format!("no violation {id:?}"))),
        ActOutcome::Conflict(status) => Err(ApiError::Conflict(format!(
            "violation {id} is already {}; only an open violation can be ticketed or dismissed",
            status.as_str()
        ))),
    }
}

/// Tickets an open violation; 409 when it is not open. Wardens and admins.
#[utoipa::path(post, path = "/v1/violations/{violation_id}/ticket", tag = "violations",
    params(("violation_id" = String, Path)), request_body(content = Option<ActBody>),
    security(("bearer" = [])),
    responses((status = 200, body = ViolationView), (status = 401, body = super::problem::Problem),
              (status = 403, body = super::problem::Problem), (status = 404, body = super::problem::Problem),
              (status = 409, body = super::problem::Problem)))]
#[post("/violations/{violation_id}/ticket")]
pub async fn ticket(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    act_on(caller, state, path, body, Action::Ticket).await
}

/// Dismisses an open violation; 409 when it is not open. Wardens and admins.
#[utoipa::path(post, path = "/v1/violations/{violation_id}/dismiss", tag = "violations",
    params(("violation_id" = String, Path)), request_body(content = Option<ActBody>),
    security(("bearer" = [])),
    responses((status = 200, body = ViolationView), (status = 401, body = super::problem::Problem),
              (status = 403, body = super::problem::Problem), (status = 404, body = super::problem::Problem),
              (status = 409, body = super::problem::Problem)))]
#[post("/violations/{violation_id}/dismiss")]
pub async fn dismiss(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    act_on(caller, state, path, body, Action::Dismiss).await
}
