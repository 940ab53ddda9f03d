//! `GET /v1/roads/{road_id}/metrics`, `/effect` and `/effect.svg`: a road's
//! history per bucket of local time, and the before/after of a change
//! (contract 6.3). The figures come from [`crate::store::Store::history_hours`];
//! the rules that turn hours into buckets and measures are
//! [`crate::domain::history`].

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::problem::{ApiError, blocking};
use super::roads::road_view;
use super::{AppState, parse_id};
use crate::domain::auth::Role;
use crate::domain::history::{
    Bucket, DAY_MS, LOW_COVERAGE_PERCENT, Measures, Totals, bucket_count, bucket_figures, buckets,
    effect_windows, whole_hour_zone,
};
use crate::domain::ids::{BayId, RoadId};
use crate::domain::layout::BayKind;
use crate::store::HistoryFilter;

/// Most buckets one metrics answer holds: a leap year of hours.
pub const MAX_BUCKETS: i64 = 366 * 24;

/// Most days on each side of an effect report.
pub const MAX_EFFECT_DAYS: i64 = 366;

/// A metrics query.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct MetricsQuery {
    /// Window start, RFC 3339; default one day (`bucket=hour`) or 30 days
    /// (`bucket=day`) before `to`. Rounded down to its bucket's start.
    pub from: Option<String>,
    /// Window end (exclusive), RFC 3339; default now.
    pub to: Option<String>,
    /// `hour` (default) or `day`, in the deployment's time zone.
    pub bucket: Option<String>,
    /// Only this bay of the road.
    pub bay_id: Option<String>,
    /// Only bays of this kind (the kind each had at the time).
    pub kind: Option<String>,
}

/// A note on how far an answer can be trusted.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Warning {
    pub code: String,
    pub message: String,
}

/// One bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct BucketView {
    /// The bucket's first instant, local time with its offset (inclusive).
    pub start: String,
    /// The next bucket's start (exclusive).
    pub end: String,
    /// Bays on the layout (that the query selects) in any hour of it.
    pub bays: i64,
    /// Occupied over known bay-time, 0-100; null when no bay was known.
    pub occupancy_percent: Option<f64>,
    /// Sessions that started in the bucket.
    pub sessions: i64,
    /// Sessions per bay (over the bucket's elapsed part).
    pub turnover_per_bay: Option<f64>,
    /// Mean length of the bucket's sessions that have ended, minutes.
    pub average_dwell_minutes: Option<f64>,
    /// Bay-time no recent event vouched for, 0-100.
    pub unknown_percent: Option<f64>,
    pub overstays: i64,
    pub outside_bay: i64,
    pub obstructions: i64,
    pub footway_parking: i64,
}

/// A metrics answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricsResponse {
    pub road_id: String,
    pub time_zone: String,
    pub bucket: String,
    pub bay_id: Option<String>,
    pub kind: Option<String>,
    pub buckets: Vec<BucketView>,
    pub warnings: Vec<Warning>,
}

fn instant(name: &str, s: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ApiError::BadRequest(format!("{name} {s:?} is not RFC 3339: {e}")))
}

fn local(tz: chrono_tz::Tz, t: DateTime<Utc>) -> String {
    t.with_timezone(&tz)
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A metrics query, checked.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct MetricsWindow {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub bucket: Bucket,
    pub kind: Option<String>,
    pub bay: Option<BayId>,
}

impl MetricsQuery {
    /// The window asked for, defaults filled in from `now`: 400 for what
    /// cannot be read, 422 for an empty or too long window.
    pub(super) fn window(&self, now: DateTime<Utc>) -> Result<MetricsWindow, ApiError> {
        let bucket = match self.bucket.as_deref() {
            None | Some("hour") => Bucket::Hour,
            Some("day") => Bucket::Day,
            Some(b) => {
                return Err(ApiError::BadRequest(format!(
                    "bucket {b:?} is not hour or day"
                )));
            }
        };
        let to = match &self.to {
            Some(s) => instant("to", s)?,
            None => now,
        };
        let from = match &self.from {
            Some(s) => instant("from", s)?,
            None => match bucket {
                Bucket::Hour => to - Duration::hours(24),
                Bucket::Day => to - Duration::days(30),
            },
        };
        if from >= to {
            return Err(ApiError::Unprocessable("from must be before to".into()));
        }
        let n = bucket_count(bucket, from, to);
        if n > MAX_BUCKETS {
            return Err(ApiError::Unprocessable(format!(
                "the window holds about {n} {} buckets; at most {MAX_BUCKETS} are answered at once",
                bucket.as_str()
            )));
        }
        let kind = match self.kind.as_deref() {
            None => None,
            Some(k) => Some(
                BayKind::parse(k)
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "kind {k:?} is not one of standard, accessible, loading, ev, motorcycle"
                        ))
                    })?
                    .as_str()
                    .to_owned(),
            ),
        };
        let bay = self
            .bay_id
            .as_deref()
            .map(|b| parse_id("bay_id", b, BayId::parse))
            .transpose()?;
        Ok(MetricsWindow {
            from,
            to,
            bucket,
            kind,
            bay,
        })
    }
}

/// The road, checked: 400 for a bad id, 404 for none.
fn road_of(state: &AppState, path: &str) -> Result<RoadId, ApiError> {
    Ok(road_view(state, path)?.info.road_id.clone())
}

/// 404 unless `bay` is a bay of `road` on its current layout.
fn check_bay(state: &AppState, road: &RoadId, bay: &BayId) -> Result<(), ApiError> {
    match state.street.map().bay(bay) {
        Some((view, _)) if &view.info.road_id == road => Ok(()),
        _ => Err(ApiError::NotFound(format!(
            "no bay {bay:?} on road {road:?}"
        ))),
    }
}

/// The road's history per bucket of local time. Wardens, planners, admins.
#[utoipa::path(get, path = "/v1/roads/{road_id}/metrics", tag = "roads",
    params(("road_id" = String, Path), MetricsQuery),
    security(("bearer" = [])),
    responses((status = 200, body = MetricsResponse), (status = 400, body = super::problem::Problem),
              (status = 401, body = super::problem::Problem), (status = 403, body = super::problem::Problem),
              (status = 404, body = super::problem::Problem), (status = 422, body = super::problem::Problem)))]
#[get("/roads/{road_id}/metrics")]
pub async fn road_metrics(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<MetricsQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Warden, Role::Planner])?;
    let road = road_of(&state, &path)?;
    let now = state.clock.now();
    let w = query.window(now)?;
    if let Some(bay) = &w.bay {
        check_bay(&state, &road, bay)?;
    }
    let tz = state.timezone;
    let spans = buckets(&tz, w.bucket, w.from, w.to);
    let (Some(first), Some(last)) = (spans.first(), spans.last()) else {
        return Err(ApiError::Unprocessable("the window holds no bucket".into()));
    };
    let (a, b) = (first.0, last.1);
    let filter = HistoryFilter {
        bay: w.bay.clone(),
        kind: w.kind.clone(),
    };
    let (store, rid, staleness, floor) = (
        state.store.clone(),
        road.clone(),
        state.street.staleness(),
        now - state.retention,
    );
    let hours =
        blocking(move || store.history_hours(&rid, &filter, a, b, now, staleness, floor)).await?;
    let mut warnings = Vec::new();
    if !whole_hour_zone(&tz, a, b) {
        warnings.push(Warning {
            code: "offset_not_whole_hours".into(),
            message: format!(
                "{} is not a whole number of hours from UTC: history is kept per UTC hour, \
                 so each bucket holds the UTC hours that start in it",
                tz.name()
            ),
        });
    }
    if b > now {
        warnings.push(Warning {
            code: "partial".into(),
            message: format!(
                "buckets after {} are not over yet: they count what has happened so far",
                local(tz, now)
            ),
        });
    }
    let buckets = spans
        .iter()
        .map(|&(s, e)| {
            let f = bucket_figures(&hours, s, e, now);
            BucketView {
                start: local(tz, s),
                end: local(tz, e),
                bays: f.bays,
                occupancy_percent: f.occupancy_percent,
                sessions: f.sessions,
                turnover_per_bay: f.turnover_per_bay,
                average_dwell_minutes: f.average_dwell_minutes,
                unknown_percent: f.unknown_percent,
                overstays: f.overstays,
                outside_bay: f.outside_bay,
                obstructions: f.obstructions,
                footway_parking: f.footway_parking,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(MetricsResponse {
        road_id: road.to_string(),
        time_zone: tz.name().to_owned(),
        bucket: w.bucket.as_str().to_owned(),
        bay_id: w.bay.map(|b| b.to_string()),
        kind: w.kind,
        buckets,
        warnings,
    }))
}

/// An effect query.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct EffectQuery {
    /// The instant the street changed, RFC 3339; default the publish time
    /// of the road's latest layout revision.
    pub pivot: Option<String>,
    /// Days on each side, 1 to 366; default 14.
    pub days: Option<String>,
}

/// One side of an effect report.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Side {
    /// The stretch compared, `[from, to)`.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Its length in days (the after side ends at now at the latest).
    pub days: f64,
    pub occupancy_percent: Option<f64>,
    pub turnover_per_bay_day: Option<f64>,
    pub average_dwell_minutes: Option<f64>,
    pub overstays_per_day: Option<f64>,
    pub outside_bay_per_day: Option<f64>,
    pub obstructions_per_day: Option<f64>,
    pub footway_parking_per_day: Option<f64>,
    /// Known bay-time over all bay-time, 0-100.
    pub coverage_percent: Option<f64>,
}

/// After minus before, measure by measure (percentage points for the
/// percentages).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Change {
    pub occupancy_percent: Option<f64>,
    pub turnover_per_bay_day: Option<f64>,
    pub average_dwell_minutes: Option<f64>,
    pub overstays_per_day: Option<f64>,
    pub outside_bay_per_day: Option<f64>,
    pub obstructions_per_day: Option<f64>,
    pub footway_parking_per_day: Option<f64>,
    pub coverage_percent: Option<f64>,
}

/// An effect report.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EffectResponse {
    pub road_id: String,
    pub pivot: DateTime<Utc>,
    pub days: i64,
    pub before: Side,
    pub after: Side,
    pub change: Change,
    /// `low_coverage` when a side rests on too little observation,
    /// `short_after` when the after side has not had all its days yet.
    pub warnings: Vec<Warning>,
}

impl EffectResponse {
    /// Both sides' measures, in [`crate::domain::history::MEASURES`] order.
    pub fn sides(&self) -> [[Option<f64>; 8]; 2] {
        let m = |s: &Side| {
            [
                s.occupancy_percent,
                s.turnover_per_bay_day,
                s.average_dwell_minutes,
                s.overstays_per_day,
                s.outside_bay_per_day,
                s.obstructions_per_day,
                s.footway_parking_per_day,
                s.coverage_percent,
            ]
        };
        [m(&self.before), m(&self.after)]
    }
}

fn side(m: Measures, from_ms: i64, to_ms: i64) -> Result<Side, ApiError> {
    let t = |ms| {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .ok_or_else(|| ApiError::Unprocessable("the window is out of range".into()))
    };
    Ok(Side {
        from: t(from_ms)?,
        to: t(to_ms)?,
        days: crate::domain::history::round2((to_ms - from_ms) as f64 / DAY_MS as f64),
        occupancy_percent: m.occupancy_percent,
        turnover_per_bay_day: m.turnover_per_bay_day,
        average_dwell_minutes: m.average_dwell_minutes,
        overstays_per_day: m.overstays_per_day,
        outside_bay_per_day: m.outside_bay_per_day,
        obstructions_per_day: m.obstructions_per_day,
        footway_parking_per_day: m.footway_parking_per_day,
        coverage_percent: m.coverage_percent,
    })
}

/// Builds the report for the road: both sides from one read of hours.
async fn effect_report(
    state: &AppState,
    path: &str,
    query: &EffectQuery,
) -> Result<EffectResponse, ApiError> {
    let road = road_of(state, path)?;
    let now = state.clock.now();
    let days = match query.days.as_deref() {
        None => 14,
        Some(s) => s
            .parse::<i64>()
            .map_err(|_| ApiError::BadRequest(format!("days {s:?} is not a whole number")))?,
    };
    if !(1..=MAX_EFFECT_DAYS).contains(&days) {
        return Err(ApiError::Unprocessable(format!(
            "days {days} is not between 1 and {MAX_EFFECT_DAYS}"
        )));
    }
    let pivot = match query.pivot.as_deref() {
        Some(s) => instant("pivot", s)?,
        None => {
            let (store, rid) = (state.store.clone(), road.clone());
            let revs = blocking(move || store.revisions(&rid)).await?;
            revs.last()
                .map(|r| r.created_at)
                .ok_or_else(|| ApiError::NotFound(format!("road {road:?} has no revision")))?
        }
    };
    if pivot >= now {
        return Err(ApiError::Unprocessable(format!(
            "pivot {} is not in the past: there is no after yet",
            crate::clock::rfc3339(pivot)
        )));
    }
    let ((b0, b1), (a0, a1)) =
        effect_windows(pivot.timestamp_millis(), days, now.timestamp_millis());
    let t = |ms| {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .ok_or_else(|| ApiError::Unprocessable("the window is out of range".into()))
    };
    let (from, to) = (t(b0)?, t(a1.max(a0 + 1))?);
    let (store, rid, staleness, floor) = (
        state.store.clone(),
        road.clone(),
        state.street.staleness(),
        now - state.retention,
    );
    let filter = HistoryFilter::default();
    let hours =
        blocking(move || store.history_hours(&rid, &filter, from, to, now, staleness, floor))
            .await?;
    let before_t = Totals::of(hours.iter().filter(|h| h.start_ms >= b0 && h.start_ms < b1));
    let after_t = Totals::of(hours.iter().filter(|h| h.start_ms >= a0 && h.start_ms < a1));
    let before = Measures::of(&before_t, b1 - b0);
    let after = Measures::of(&after_t, a1 - a0);
    let c = Measures::change(&before, &after);
    let mut warnings = Vec::new();
    for (name, m) in [("before", &before), ("after", &after)] {
        match m.coverage_percent {
            Some(c) if c >= LOW_COVERAGE_PERCENT => {}
            Some(c) => warnings.push(Warning {
                code: "low_coverage".into(),
                message: format!(
                    "the {name} side is known for only {c:.2}% of its bay-time (below \
                     {LOW_COVERAGE_PERCENT}%): its occupancy, turnover and dwell rest on little observation"
                ),
            }),
            None => warnings.push(Warning {
                code: "low_coverage".into(),
                message: format!("the {name} side has no bay on the layout: nothing to compare"),
            }),
        }
    }
    if a1 - a0 < days * DAY_MS {
        warnings.push(Warning {
            code: "short_after".into(),
            message: format!(
                "the after side has had {:.2} of its {days} days so far",
                (a1 - a0) as f64 / DAY_MS as f64
            ),
        });
    }
    Ok(EffectResponse {
        road_id: road.to_string(),
        pivot,
        days,
        before: side(before, b0, b1)?,
        after: side(after, a0, a1)?,
        change: Change {
            occupancy_percent: c.occupancy_percent,
            turnover_per_bay_day: c.turnover_per_bay_day,
            average_dwell_minutes: c.average_dwell_minutes,
            overstays_per_day: c.overstays_per_day,
            outside_bay_per_day: c.outside_bay_per_day,
            obstructions_per_day: c.obstructions_per_day,
            footway_parking_per_day: c.footway_parking_per_day,
            coverage_percent: c.coverage_percent,
        },
        warnings,
    })
}

/// The road before and after a change (by default its latest layout
/// revision). Planners and admins.
#[utoipa::path(get, path = "/v1/roads/{road_id}/effect", tag = "roads",
    params(("road_id" = String, Path), EffectQuery),
    security(("bearer" = [])),
    responses((status = 200, body = EffectResponse), (status = 400, body = super::problem::Problem),
              (status = 401, body = super::problem::Problem), (status = 403, body = super::problem::Problem),
              (status = 404, body = super::problem::Problem), (status = 422, body = super::problem::Problem)))]
#[get("/roads/{road_id}/effect")]
pub async fn road_effect(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<EffectQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Planner])?;
    let report = effect_report(&state, &path, &query).await?;
    Ok(HttpResponse::Ok().json(report))
}

/// The same report drawn as an SVG chart, for printing. Planners and admins.
#[utoipa::path(get, path = "/v1/roads/{road_id}/effect.svg", tag = "roads",
    params(("road_id" = String, Path), EffectQuery),
    security(("bearer" = [])),
    responses((status = 200, content_type = "image/svg+xml", body = String), (status = 400, body = super::problem::Problem),
              (status = 401, body = super::problem::Problem), (status = 403, body = super::problem::Problem),
              (status = 404, body = super::problem::Problem), (status = 422, body = super::problem::Problem)))]
#[get("/roads/{road_id}/effect.svg")]
pub async fn road_effect_svg(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<EffectQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Planner])?;
    let report = effect_report(&state, &path, &query).await?;
    let tz = state.timezone;
    let svg = super::chart::effect_svg(&report, tz.name(), |t| {
        tz.from_utc_datetime(&t.naive_utc())
            .format("%Y-%m-%d %H:%M")
            .to_string()
    })
    .map_err(|e| ApiError::Store(crate::store::StoreError::Corrupt(e)))?;
    Ok(HttpResponse::Ok()
        .content_type("image/svg+xml; charset=utf-8")
        .body(svg))
}
