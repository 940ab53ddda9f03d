//! Devices (contract 6.1): an admin registers sensors, handhelds and
//! observers, and revokes them. The MQTT password is shown once, in the
//! answer to the registration; only its digest is kept.

use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::problem::{ApiError, blocking};
use super::{AppState, parse_id};
use crate::domain::auth::Role;
use crate::domain::devices::{DeviceKind, check_name, generate_password};
use crate::domain::ids::DeviceId;
use crate::store::{DeviceRecord, StoreError};

/// `POST /v1/devices`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    /// The device's id: its MQTT username and the `{device_id}` of its topics.
    pub device_id: String,
    /// `sensor`, `handheld` or `observer`.
    pub kind: String,
    /// Who or what it is (at most 200 characters), e.g. "bay QF-S-014".
    pub name: String,
}

/// A device as an admin sees it: never its password.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    pub device_id: String,
    /// `sensor`, `handheld` or `observer`.
    pub kind: &'static str,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// When one of its events was last stored (to the minute).
    pub last_seen_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<DeviceRecord> for DeviceView {
    fn from(d: DeviceRecord) -> DeviceView {
        DeviceView {
            device_id: d.device_id.to_string(),
            kind: d.kind.as_str(),
            name: d.name,
            created_at: d.created_at,
            last_seen_at: d.last_seen_at,
            revoked_at: d.revoked_at,
        }
    }
}

/// The answer to a registration: the only time the password is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedDevice {
    pub device_id: String,
    pub kind: &'static str,
    pub name: String,
    /// The MQTT password (192 random bits, hex). Only its digest is kept.
    pub password: String,
}

/// `GET /v1/devices`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DevicesResponse {
    pub devices: Vec<DeviceView>,
}

/// Checks a registration body: the id's rule, a known kind, a name of
/// 1-200 characters.
pub fn validate(body: &NewDevice) -> Result<(DeviceId, DeviceKind, String), String> {
    let id = DeviceId::parse(&body.device_id)
        .map_err(|e| format!("device_id {:?} {e}", body.device_id))?;
    let kind = DeviceKind::parse(&body.kind).ok_or_else(|| {
        format!(
            "kind {:?} is not one of sensor, handheld, observer",
            body.kind
        )
    })?;
    let name = check_name(&body.name)?;
    Ok((id, kind, name.to_owned()))
}

#[utoipa::path(post, path = "/v1/devices", tag = "devices", request_body = NewDevice,
    security(("bearer" = [])),
    responses((status = 201, body = CreatedDevice), (status = 400, body = super::problem::Problem),
              (status = 401, body = super::problem::Problem), (status = 403, body = super::problem::Problem),
              (status = 409, body = super::problem::Problem)))]
#[post("/devices")]
pub async fn create_device(
    caller: Caller,
    state: web::Data<AppState>,
    // Taken as a Result and looked at only once the caller is known: actix
    // extracts the arguments together, and a body that is not JSON would
    // otherwise answer 400 before a bad token could answer 401.
    body: Result<web::Json<NewDevice>, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let body = match body {
        Ok(b) => b,
        Err(e) => return Ok(e.error_response()),
    };
    let (id, kind, name) = validate(&body).map_err(ApiError::BadRequest)?;
    let password = generate_password();
    let store = state.store.clone();
    let now = state.clock.now();
    let (sid, sname, secret) = (id.clone(), name.clone(), password.secret.clone());
    let created = actix_web::web::block(move || {
        store.create_device(&sid, kind, &sname, &secret, &password.digest, now)
    })
    .await
    .map_err(|e| ApiError::Store(StoreError::Corrupt(format!("blocking task failed: {e}"))))?;
    let record = match created {
        Ok(r) => r,
        Err(StoreError::DeviceExists(_)) => {
            return Err(ApiError::Conflict(format!(
                "device {id} is already registered (a revoked id is not reused)"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    state.devices.note(&record);
    tracing::info!(device = %id, kind = kind.as_str(), by = %caller.name, "device registered");
    Ok(HttpResponse::Created().json(CreatedDevice {
        device_id: id.to_string(),
        kind: kind.as_str(),
        name,
        password: password.secret,
    }))
}

#[utoipa::path(get, path = "/v1/devices", tag = "devices", security(("bearer" = [])),
    responses((status = 200, body = DevicesResponse), (status = 401, body = super::problem::Problem),
              (status = 403, body = super::problem::Problem)))]
#[get("/devices")]
pub async fn list_devices(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let store = state.store.clone();
    let devices = blocking(move || store.devices()).await?;
    Ok(HttpResponse::Ok().json(DevicesResponse {
        devices: devices.into_iter().map(DeviceView::from).collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/devices/{device_id}", tag = "devices",
    params(("device_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = DeviceView), (status = 401, body = super::problem::Problem),
              (status = 403, body = super::problem::Problem), (status = 404, body = super::problem::Problem)))]
#[delete("/devices/{device_id}")]
pub async fn revoke_device(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let id = parse_id("device_id", &path, DeviceId::parse)?;
    let store = state.store.clone();
    let now = state.clock.now();
    let lookup = id.clone();
    let record = blocking(move || store.revoke_device(&lookup, now))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no device {id}")))?;
    state.devices.note(&record);
    tracing::info!(device = %id, by = %caller.name, "device revoked");
    Ok(HttpResponse::Ok().json(DeviceView::from(record)))
}
