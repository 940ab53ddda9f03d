//! `GET /healthz`: whether the store (and, once connected, the broker) answer.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

/// Health of each dependency.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when every dependency is up, else `degraded`.
    pub status: &'static str,
    /// `up` or `down`.
    pub store: &'static str,
}

/// 200 when the store answers, 503 otherwise.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
#[get("/healthz")]
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let store = state.store.clone();
    let store_up = matches!(web::block(move || store.ping()).await, Ok(Ok(())));
    let body = Health {
        status: if store_up { "ok" } else { "degraded" },
        store: if store_up { "up" } else { "down" },
    };
    if store_up {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
