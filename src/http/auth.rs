//! Who is calling: the bearer token's holder and role, and
//! `GET /v1/auth/whoami`, which tells a client (the console page) whose
//! token it holds before it shows what that role may do.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, HttpResponse, dev::Payload, get, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::problem::{ApiError, blocking};
use crate::domain::auth::{Role, hash_token};

/// An authenticated caller. Extracting it answers 401 when the request has
/// no token, a malformed one, one the store does not know (or has revoked),
/// or one past its expiry by the service's clock.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name (who acted, for audit trails).
    pub name: String,
    pub role: Role,
    /// When the token stops working; `None`: never (until revoked).
    pub expires_at: Option<DateTime<Utc>>,
}

impl Caller {
    /// 403 unless the caller's role is among `allowed` (admins always pass).
    pub fn require(&self, allowed: &[Role]) -> Result<(), ApiError> {
        if self.role.may(allowed) {
            Ok(())
        } else {
            let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
            Err(ApiError::Forbidden(format!(
                "this needs the role {} (or admin); the token's role is {}",
                names.join(" or "),
                self.role.as_str()
            )))
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header; 401 otherwise.
pub(super) fn bearer_token(header: &str) -> Result<&str, ApiError> {
    match header.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => {
            Ok(t.trim())
        }
        _ => Err(ApiError::Unauthorized(
            "the Authorization header must be \"Bearer <token>\"".into(),
        )),
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Caller, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .map(|v| v.to_str().map(str::to_owned));
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let token = match header {
                None => {
                    return Err(ApiError::Unauthorized(
                        "this endpoint needs an Authorization: Bearer <token> header".into(),
                    ));
                }
                Some(Err(_)) => {
                    return Err(ApiError::Unauthorized(
                        "the Authorization header is not text".into(),
                    ));
                }
                Some(Ok(h)) => bearer_token(&h)?.to_owned(),
            };
            let state = state.ok_or_else(|| ApiError::Unauthorized("no token store".into()))?;
            caller_of(&state, &token).await
        })
    }
}

/// The caller a token stands for; 401 when the store does not know it (or
/// has revoked it), or it is past its expiry by the service's clock.
pub(super) async fn caller_of(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let store = state.store.clone();
    let hash = hash_token(token);
    let record = blocking(move || store.token_by_hash(&hash))
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the token is not valid".into()))?;
    if record.expired(state.clock.now())
        && let Some(at) = record.expires_at
    {
        return Err(ApiError::Unauthorized(format!(
            "the token expired at {}",
            crate::clock::rfc3339(at)
        )));
    }
    Ok(Caller {
        name: record.name,
        role: record.role,
        expires_at: record.expires_at,
    })
}

/// The holder of a token, as `GET /v1/auth/whoami` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    /// The token's name (`kerbside token create --name`).
    pub name: String,
    /// `warden`, `planner` or `admin`.
    pub role: &'static str,
    /// When the token stops working; null when it does not expire.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Whose token this is: any valid token, whatever its role. 401 (with the
/// reason: unknown, revoked, or expired at when) otherwise.
#[utoipa::path(get, path = "/v1/auth/whoami", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = WhoAmI),
              (status = 401, body = super::problem::Problem)))]
#[get("/auth/whoami")]
pub async fn whoami(caller: Caller) -> HttpResponse {
    HttpResponse::Ok().json(WhoAmI {
        name: caller.name,
        role: caller.role.as_str(),
        expires_at: caller.expires_at,
    })
}
