//! `GET /v1/quarantine` (admin): the messages ingest set aside because
//! they could not be stored, alone, after several tries (a poison
//! message), so that ingest could go on.

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::Caller;
use super::problem::{ApiError, blocking};
use crate::domain::auth::Role;
use crate::store::QuarantineRecord;

/// Most entries one answer lists.
const MAX_LIMIT: i64 = 1000;

/// `?limit=`: how many of the newest entries (default 100, at most 1000).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct QuarantineQuery {
    pub limit: Option<i64>,
}

/// A message set aside.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuarantinedView {
    /// Its number, in the order set aside.
    pub quarantine_id: i64,
    /// The device segment of its topic, as sent.
    pub device_id: String,
    pub topic: String,
    /// The payload as text (invalid UTF-8 shown as U+FFFD).
    pub payload: String,
    /// Why the store refused it, on the last try.
    pub error: String,
    pub received_at: DateTime<Utc>,
    pub quarantined_at: DateTime<Utc>,
}

impl From<QuarantineRecord> for QuarantinedView {
    fn from(q: QuarantineRecord) -> QuarantinedView {
        QuarantinedView {
            quarantine_id: q.seq,
            device_id: q.device_id,
            topic: q.topic,
            payload: String::from_utf8_lossy(&q.payload).into_owned(),
            error: q.error,
            received_at: q.received_at,
            quarantined_at: q.quarantined_at,
        }
    }
}

/// `GET /v1/quarantine`: newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuarantineResponse {
    pub quarantined: Vec<QuarantinedView>,
}

#[utoipa::path(get, path = "/v1/quarantine", tag = "operations", params(QuarantineQuery),
    security(("bearer" = [])),
    responses((status = 200, body = QuarantineResponse), (status = 400, body = super::problem::Problem),
              (status = 401, body = super::problem::Problem), (status = 403, body = super::problem::Problem)))]
#[get("/quarantine")]
pub async fn list_quarantine(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<QuarantineQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit {limit} is not between 1 and {MAX_LIMIT}"
        )));
    }
    let store = state.store.clone();
    let rows = blocking(move || store.quarantined(limit)).await?;
    Ok(HttpResponse::Ok().json(QuarantineResponse {
        quarantined: rows.into_iter().map(QuarantinedView::from).collect(),
    }))
}
