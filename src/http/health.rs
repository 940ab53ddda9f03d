//! `GET /healthz`: whether the store and the broker link are up.

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
    /// The MQTT broker link: `up` or `down`.
    pub broker: &'static str,
}

/// 200 when the store answers and the broker link is up, 503 otherwise.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
#[get("/healthz")]
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let store = state.store.clone();
    let store_up = matches!(web::block(move || store.ping()).await, Ok(Ok(())));
    let broker_up = state.mqtt.is_connected();
    let up = |b: bool| if b { "up" } else { "down" };
    let body = Health {
        status: if store_up && broker_up {
            "ok"
        } else {
            "degraded"
        },
        store: up(store_up),
        broker: up(broker_up),
    };
    if store_up && broker_up {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
