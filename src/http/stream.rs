//! `GET /v1/stream?road=ROAD_ID`: Server-Sent Events (contract 6.2). Public:
//! `bay` on every status change of the road's bays (all roads when `road`
//! is absent), `occupancy` with the road's counts, and `layout`
//! (`{"road_id", "revision"}`) when the road's layout has a new revision,
//! from this instance or another; with a warden, planner or admin token
//! (the `Authorization` header, or `?token=` for `EventSource`), also
//! `violation` whenever one is filed or changes, and `case` (as
//! `GET /v1/cases` lists it) whenever one is opened, changes status or is
//! resolved. No plate, device, violation or case on the public stream. A
//! heartbeat comment every `--stream-heartbeat-seconds`.
//!
//! A new listener first gets the road's counts and each bay's status, then
//! the changes. One that falls behind by [`crate::live::BACKLOG`] messages
//! is cut off (its `EventSource` reconnects): a slow client is never
//! waited for.

use std::collections::VecDeque;
use std::sync::Arc;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_ENCODING};
use actix_web::{HttpRequest, HttpResponse, get, web};
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use utoipa::IntoParams;

use super::AppState;
use super::auth::{bearer_token, caller_of};
use super::problem::ApiError;
use crate::domain::auth::Role;
use crate::domain::ids::RoadId;
use crate::live::Live;

/// Which road, and who asks.
#[derive(Debug, Deserialize, IntoParams)]
pub struct StreamQuery {
    /// The road whose changes to send; every road when absent.
    pub road: Option<String>,
    /// A token, for clients that cannot set a header (`EventSource`).
    pub token: Option<String>,
}

fn message(event: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

struct Listener {
    state: web::Data<AppState>,
    rx: tokio::sync::broadcast::Receiver<Live>,
    beat: tokio::time::Interval,
    pending: VecDeque<Bytes>,
    road: Option<RoadId>,
    /// Whether the listener is staff: violations and cases too.
    staff: bool,
}

impl Listener {
    fn render(&self, live: Live) -> Option<Bytes> {
        let wanted = |r: &str| self.road.as_ref().is_none_or(|w| w.as_str() == r);
        match live {
            Live::Bay { road, data } => wanted(road.as_str()).then(|| message("bay", &data)),
            Live::Occupancy { road, data } => {
                wanted(road.as_str()).then(|| message("occupancy", &data))
            }
            Live::Layout { road, data } => wanted(road.as_str()).then(|| message("layout", &data)),
            // A case on no road goes to listeners of every road only.
            Live::Case(c)
                if self.staff && c.road_id.as_deref().map_or(self.road.is_none(), &wanted) =>
            {
                let view = super::cases::CaseView::from(Arc::unwrap_or_clone(c));
                let data = serde_json::to_string(&view).ok()?;
                Some(message("case", &data))
            }
            Live::Case(_) => None,
            Live::Violation(v) if self.staff && wanted(&v.road_id) => {
                let map = self.state.street.map();
                let view = super::violations::view(
                    &self.state,
                    &map,
                    Arc::unwrap_or_clone(v),
                    self.state.clock.now(),
                );
                let data = serde_json::to_string(&view).ok()?;
                Some(message("violation", &data))
            }
            Live::Violation(_) => None,
        }
    }
}

/// Live changes of a road's bays, occupancy and layout revision, and (with
/// a token) its violations and cases.
#[utoipa::path(get, path = "/v1/stream", tag = "live", params(StreamQuery),
    responses((status = 200, description = "text/event-stream: `bay`, `occupancy` and `layout` (`{\"road_id\", \"revision\"}`) events and, with a warden, planner or admin token, `violation` (the violation object) and `case` (the case as `GET /v1/cases` lists it) events; a heartbeat comment"),
              (status = 401, body = super::problem::Problem),
              (status = 404, body = super::problem::Problem)))]
#[get("/stream")]
pub async fn stream(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let token = match (&header, &query.token) {
        (Some(h), _) => Some(bearer_token(h)?.to_owned()),
        (None, Some(t)) if !t.trim().is_empty() => Some(t.trim().to_owned()),
        (None, Some(_)) => {
            return Err(ApiError::Unauthorized(
                "the token parameter is empty".into(),
            ));
        }
        (None, None) => None,
    };
    let staff = match token {
        Some(t) => caller_of(&state, &t)
            .await?
            .role
            .may(&[Role::Warden, Role::Planner]),
        None => false,
    };
    let view = match &query.road {
        Some(r) => Some(super::roads::road_view(&state, r)?),
        None => None,
    };
    // Subscribed before the first snapshot is read: a change after it is
    // not missed (one just before may come twice, which is harmless).
    let rx = state.live.subscribe();
    let now = state.clock.now();
    let mut pending = VecDeque::new();
    if let Some(view) = &view {
        let counts = crate::live::occupancy(&state.street, view, now);
        pending.push_back(message(
            "occupancy",
            &serde_json::to_string(&counts).unwrap_or_default(),
        ));
        for (bay, report) in view.layout.bays.iter().zip(state.street.reports(view, now)) {
            let data = crate::live::bay_data(&bay.bay_id, &view.info.road_id, report);
            pending.push_back(message("bay", &data));
        }
    }
    let every = state.stream_heartbeat;
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let listener = Listener {
        state: state.clone(),
        rx,
        beat,
        pending,
        road: view.map(|v| v.info.road_id.clone()),
        staff,
    };
    let body = futures_util::stream::unfold(listener, |mut l| async move {
        loop {
            if let Some(b) = l.pending.pop_front() {
                return Some((Ok::<_, actix_web::Error>(b), l));
            }
            tokio::select! {
                _ = l.beat.tick() => {
                    return Some((Ok(Bytes::from_static(b": heartbeat\n\n")), l));
                }
                m = l.rx.recv() => match m {
                    Ok(live) => {
                        if let Some(b) = l.render(live) {
                            return Some((Ok(b), l));
                        }
                    }
                    // Too far behind, or the service is stopping: the
                    // stream ends, and the client reconnects.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return None,
                },
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((CACHE_CONTROL, "no-cache"))
        // Not compressed: a compressor would hold messages back.
        .insert_header((CONTENT_ENCODING, "identity"))
        .streaming(body))
}
