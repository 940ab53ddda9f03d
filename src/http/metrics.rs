//! `GET /metrics`: Prometheus text.

use actix_web::{HttpResponse, get, web};

use super::AppState;
use crate::domain::cases::CaseStatus;

/// Counters of accepted, duplicate and rejected events, and ingest histograms.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut out = state.metrics.render();
    let store = state.store.clone();
    // Cases are counted from the store, so every instance tells the same.
    match actix_web::web::block(move || {
        Ok::<_, crate::store::StoreError>((
            store.case_counts()?,
            store.resolve_times(RESOLVE_BOUNDS_S)?,
        ))
    })
    .await
    {
        Ok(Ok((counts, times))) => render_cases(&mut out, &counts, times),
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot count cases for /metrics"),
        Err(e) => tracing::warn!(error = %e, "cannot count cases for /metrics"),
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out)
}

/// Buckets of the time to resolve a case, seconds: a minute to a week.
const RESOLVE_BOUNDS_S: &[i64] = &[
    60, 300, 900, 1800, 3600, 7200, 14_400, 28_800, 86_400, 259_200, 604_800,
];

fn render_cases(
    out: &mut String,
    counts: &[(CaseStatus, i64)],
    (within, count, sum_s): (Vec<i64>, i64, i64),
) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "# HELP kerbside_cases Cases by status.\n# TYPE kerbside_cases gauge"
    );
    for status in CaseStatus::ALL {
        let n = counts
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "kerbside_cases{{status=\"{}\"}} {n}", status.as_str());
    }
    let name = "kerbside_case_resolve_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from a case's opening to its resolution.\n# TYPE {name} histogram"
    );
    for (b, n) in RESOLVE_BOUNDS_S.iter().zip(&within) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {sum_s}\n{name}_count {count}");
}
