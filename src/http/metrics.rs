//! `GET /metrics`: Prometheus text.

use actix_web::{HttpResponse, get, web};

use super::AppState;

/// Counters of accepted, duplicate and rejected events, and ingest histograms.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
