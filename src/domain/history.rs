//! History of a road: occupancy, turnover, dwell and violations per hour,
//! assembled into local-time buckets, and the before/after of a change.
//!
//! Everything here is pure: instants are milliseconds since the Unix epoch
//! (UTC), `now` is passed in, and nothing reads the clock or the store.
//!
//! **Known time, replayed.** Live, a bay reports `unknown` once its newest
//! event of any type is older than the staleness window
//! ([`crate::domain::occupancy::BayState::report`]). History replays the same
//! rule: a bay is *known* at instant `x` when one of its events (occupied,
//! vacated, observed or heartbeat) has event time `t` with
//! `t <= x < t + staleness`, and never after `now`. Its *known time* is the
//! union of those windows, clipped to the time the bay was on the road's
//! layout. Its *occupied time* is the part of its known time inside one of
//! its parking sessions (an open session lasts until `now`). So a silent
//! sensor's session stops counting as occupied once its bay goes unknown,
//! as it stops showing occupied on the street. (A bay that has only ever
//! sent heartbeats reports `unknown` live but counts as known here: the
//! replay does not look back for the first status event.)
//!
//! **Sessions and dwell.** A session counts once, in the hour it started.
//! Dwell is `ended_at - started_at` of sessions that have ended, counted in
//! the hour they started; sessions still open have no dwell yet.
//!
//! **Turnover** is sessions per bay: a bucket's sessions over its average
//! number of bays (bay-time over the bucket's elapsed length), so a bay
//! added or retired mid-bucket counts for the part it was there.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveTime, Offset, TimeZone, Utc};
use serde::Serialize;

/// One hour, ms.
pub const HOUR_MS: i64 = 3_600_000;
/// One day, ms.
pub const DAY_MS: i64 = 86_400_000;

/// The start of the UTC hour holding `ms`.
pub fn floor_hour(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// The start of the first UTC hour at or after `ms`.
pub fn ceil_hour(ms: i64) -> i64 {
    floor_hour(ms + HOUR_MS - 1)
}

/// A stretch of time a bay was on the road's layout, with its kind then:
/// `[from_ms, to_ms)`, `to_ms` `i64::MAX` while it still is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub from_ms: i64,
    pub to_ms: i64,
    /// The bay's kind in that revision (`standard`, `loading`, ...).
    pub kind: String,
}

/// What is known of one bay for a roll-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BayHistory {
    /// When it was on the layout, oldest first, not overlapping.
    pub presence: Vec<Presence>,
    /// Event times of its events (any order), from at least one staleness
    /// window before the roll-up's start.
    pub heard_ms: Vec<i64>,
    /// Its parking sessions `(started_at, ended_at)`, `None` while open.
    pub sessions: Vec<(i64, Option<i64>)>,
}

impl BayHistory {
    /// The bay's kind at `ms`, if it was on the layout then.
    pub fn kind_at(&self, ms: i64) -> Option<&str> {
        self.presence
            .iter()
            .find(|p| p.from_ms <= ms && ms < p.to_ms)
            .map(|p| p.kind.as_str())
    }
}

/// The figures of one UTC hour for the bays of one kind, as the roll-up
/// table keeps them. Durations in ms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HourRow {
    pub hour_ms: i64,
    pub kind: String,
    /// Bays on the layout at some time in the hour.
    pub bays: i64,
    /// Bay-time on the layout (up to `now`).
    pub bay_ms: i64,
    /// Known bay-time.
    pub known_ms: i64,
    /// Occupied and known bay-time.
    pub occupied_ms: i64,
    /// Sessions that started in the hour.
    pub sessions: i64,
    /// Of those, the ones that have ended.
    pub ended_sessions: i64,
    /// Their summed dwell.
    pub dwell_ms: i64,
}

/// Sorted, disjoint half-open intervals.
type Spans = Vec<(i64, i64)>;

fn merge(mut v: Spans) -> Spans {
    v.retain(|(a, b)| a < b);
    v.sort_unstable();
    let mut out: Spans = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

fn intersect(x: &[(i64, i64)], y: &[(i64, i64)]) -> Spans {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < x.len() && j < y.len() {
        let (a, b) = (x[i].0.max(y[j].0), x[i].1.min(y[j].1));
        if a < b {
            out.push((a, b));
        }
        if x[i].1 < y[j].1 { i += 1 } else { j += 1 }
    }
    out
}

/// Calls `add(hour_start, ms)` for each UTC hour that `[a, b)` touches.
fn by_hour(a: i64, b: i64, mut add: impl FnMut(i64, i64)) {
    let mut h = floor_hour(a);
    while h < b {
        let (lo, hi) = (a.max(h), b.min(h + HOUR_MS));
        if lo < hi {
            add(h, hi - lo);
        }
        h += HOUR_MS;
    }
}

/// Rolls bays' histories up into hourly rows per kind over the UTC hours
/// `[from_ms, to_ms)` (both on hour boundaries), counting nothing after
/// `now_ms`. Rows are sorted by hour and kind; an hour with no bay on the
/// layout and no session has no row.
pub fn roll_up(
    bays: &[BayHistory],
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
    staleness_ms: i64,
) -> Vec<HourRow> {
    let end = to_ms.min(now_ms);
    let mut rows: BTreeMap<(i64, String), HourRow> = BTreeMap::new();
    for bay in bays {
        let known = merge(
            bay.heard_ms
                .iter()
                .map(|&t| (t.max(from_ms), t.saturating_add(staleness_ms).min(end)))
                .collect(),
        );
        let occupied = merge(
            bay.sessions
                .iter()
                .map(|&(s, e)| (s.max(from_ms), e.unwrap_or(end).min(end)))
                .collect(),
        );
        let occupied_known = intersect(&known, &occupied);
        let mut counted: Option<(i64, &str)> = None;
        for p in &bay.presence {
            let span = [(p.from_ms.max(from_ms), p.to_ms.min(end))];
            if span[0].0 >= span[0].1 {
                continue;
            }
            let kind = p.kind.as_str();
            by_hour(span[0].0, span[0].1, |h, ms| {
                let r = entry(&mut rows, h, kind);
                r.bay_ms += ms;
                if counted != Some((h, kind)) {
                    r.bays += 1;
                    counted = Some((h, kind));
                }
            });
            for (a, b) in intersect(&known, &span) {
                by_hour(a, b, |h, ms| entry(&mut rows, h, kind).known_ms += ms);
            }
            for (a, b) in intersect(&occupied_known, &span) {
                by_hour(a, b, |h, ms| entry(&mut rows, h, kind).occupied_ms += ms);
            }
        }
        for &(s, e) in &bay.sessions {
            if s < from_ms || s >= end {
                continue;
            }
            let Some(kind) = bay.kind_at(s) else { continue };
            let r = entry(&mut rows, floor_hour(s), kind);
            r.sessions += 1;
            if let Some(e) = e {
                r.ended_sessions += 1;
                r.dwell_ms += (e - s).max(0);
            }
        }
    }
    rows.into_values().collect()
}

fn entry<'a>(
    rows: &'a mut BTreeMap<(i64, String), HourRow>,
    h: i64,
    kind: &str,
) -> &'a mut HourRow {
    rows.entry((h, kind.to_owned())).or_insert_with(|| HourRow {
        hour_ms: h,
        kind: kind.to_owned(),
        ..HourRow::default()
    })
}

/// A violation as history counts it: its kind (wire name) and when it
/// started. Void violations (disproved) are left out before they get here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViolationAt {
    pub kind: String,
    pub started_at_ms: i64,
}

/// Everything history knows of one UTC hour of a road (or of the bays a
/// query selected): the roll-up summed over kinds, and the violations
/// that started in it. This is the unit every report is assembled from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Hour {
    /// The hour's first instant, ms.
    pub start_ms: i64,
    pub bays: i64,
    pub bay_ms: i64,
    pub known_ms: i64,
    pub occupied_ms: i64,
    pub sessions: i64,
    pub ended_sessions: i64,
    pub dwell_ms: i64,
    pub overstays: i64,
    pub outside_bay: i64,
    pub obstructions: i64,
    pub footway_parking: i64,
}

/// Every UTC hour of `[from_ms, to_ms)` (on hour boundaries), from roll-up
/// rows (any kinds, summed) and violations; hours with nothing are zero.
pub fn hours(from_ms: i64, to_ms: i64, rows: &[HourRow], violations: &[ViolationAt]) -> Vec<Hour> {
    let n = ((to_ms - from_ms) / HOUR_MS).max(0) as usize;
    let mut out: Vec<Hour> = (0..n)
        .map(|i| Hour {
            start_ms: from_ms + i as i64 * HOUR_MS,
            ..Hour::default()
        })
        .collect();
    let slot = |ms: i64| -> Option<usize> {
        (ms >= from_ms && ms < to_ms).then(|| ((ms - from_ms) / HOUR_MS) as usize)
    };
    for r in rows {
        if let Some(h) = slot(r.hour_ms).and_then(|i| out.get_mut(i)) {
            h.bays += r.bays;
            h.bay_ms += r.bay_ms;
            h.known_ms += r.known_ms;
            h.occupied_ms += r.occupied_ms;
            h.sessions += r.sessions;
            h.ended_sessions += r.ended_sessions;
            h.dwell_ms += r.dwell_ms;
        }
    }
    for v in violations {
        if let Some(h) = slot(v.started_at_ms).and_then(|i| out.get_mut(i)) {
            match v.kind.as_str() {
                "overstay" => h.overstays += 1,
                "outside_bay" => h.outside_bay += 1,
                "obstruction" => h.obstructions += 1,
                "footway_parking" => h.footway_parking += 1,
                _ => {}
            }
        }
    }
    out
}

/// Hours summed over a stretch of time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// The most bays on the layout in any one hour.
    pub bays: i64,
    pub bay_ms: i64,
    pub known_ms: i64,
    pub occupied_ms: i64,
    pub sessions: i64,
    pub ended_sessions: i64,
    pub dwell_ms: i64,
    pub overstays: i64,
    pub outside_bay: i64,
    pub obstructions: i64,
    pub footway_parking: i64,
}

impl Totals {
    /// The sum of `hours`.
    pub fn of<'a>(hours: impl IntoIterator<Item = &'a Hour>) -> Totals {
        let mut t = Totals::default();
        for h in hours {
            t.bays = t.bays.max(h.bays);
            t.bay_ms += h.bay_ms;
            t.known_ms += h.known_ms;
            t.occupied_ms += h.occupied_ms;
            t.sessions += h.sessions;
            t.ended_sessions += h.ended_sessions;
            t.dwell_ms += h.dwell_ms;
            t.overstays += h.overstays;
            t.outside_bay += h.outside_bay;
            t.obstructions += h.obstructions;
            t.footway_parking += h.footway_parking;
        }
        t
    }

    /// Occupied over known bay-time, 0-100; `None` when nothing was known.
    pub fn occupancy_percent(&self) -> Option<f64> {
        (self.known_ms > 0).then(|| 100.0 * self.occupied_ms as f64 / self.known_ms as f64)
    }

    /// Known over all bay-time, 0-100; `None` when no bay was there.
    pub fn coverage_percent(&self) -> Option<f64> {
        (self.bay_ms > 0).then(|| 100.0 * self.known_ms as f64 / self.bay_ms as f64)
    }

    /// Unknown over all bay-time, 0-100; `None` when no bay was there.
    pub fn unknown_percent(&self) -> Option<f64> {
        self.coverage_percent().map(|c| 100.0 - c)
    }

    /// Mean dwell of the sessions that ended, minutes.
    pub fn average_dwell_minutes(&self) -> Option<f64> {
        (self.ended_sessions > 0)
            .then(|| self.dwell_ms as f64 / self.ended_sessions as f64 / 60_000.0)
    }

    /// Sessions per bay present for `span_ms` (the stretch's elapsed length):
    /// sessions over bay-time / span.
    pub fn turnover_per_bay(&self, span_ms: i64) -> Option<f64> {
        (self.bay_ms > 0 && span_ms > 0)
            .then(|| self.sessions as f64 * span_ms as f64 / self.bay_ms as f64)
    }
}

/// Bucket length of a metrics query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }
}

/// Whether `tz` is a whole number of hours from UTC at every instant of
/// `[from, to)` that matters (checked at both ends), so that its local
/// hours are UTC hours.
pub fn whole_hour_zone<Tz: TimeZone>(tz: &Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
    [from, to].iter().all(|t| {
        tz.offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc()
            % 3600
            == 0
    })
}

/// The local midnight that starts `date`'s day in `tz` (the first instant
/// of the day where midnight itself does not exist).
fn day_start<Tz: TimeZone>(tz: &Tz, date: chrono::NaiveDate) -> DateTime<Utc> {
    let mut t = date.and_time(NaiveTime::MIN);
    for _ in 0..24 {
        if let Some(x) = tz.from_local_datetime(&t).earliest() {
            return x.with_timezone(&Utc);
        }
        t += Duration::minutes(30);
    }
    Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN))
}

/// The buckets `[start, end)` that cover `[from, to)`: UTC hours (which are
/// the local hours of a zone a whole number of hours from UTC, so a day
/// that changes the clocks has 23 or 25 of them), or local days in `tz`.
/// The first bucket is the one holding `from`; the last the one holding
/// the instant before `to`. Hours are whole: in a zone with a half-hour
/// offset a local day is assembled from the UTC hours that start in it.
pub fn buckets<Tz: TimeZone>(
    tz: &Tz,
    bucket: Bucket,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut out = Vec::new();
    match bucket {
        Bucket::Hour => {
            let mut h = floor_hour(from.timestamp_millis());
            let end = to.timestamp_millis();
            while h < end {
                out.push((ms_time(h), ms_time(h + HOUR_MS)));
                h += HOUR_MS;
            }
        }
        Bucket::Day => {
            let mut date = from.with_timezone(tz).date_naive();
            loop {
                let (a, next) = (day_start(tz, date), date.succ_opt());
                let Some(next) = next else { break };
                if a >= to {
                    break;
                }
                let b = day_start(tz, next);
                if b > from {
                    out.push((a, b));
                }
                date = next;
            }
        }
    }
    out
}

/// How many buckets [`buckets`] would give, without making them (for a
/// bound checked before any work).
pub fn bucket_count(bucket: Bucket, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    let span = (to - from).num_milliseconds().max(0);
    match bucket {
        Bucket::Hour => span / HOUR_MS + 2,
        Bucket::Day => span / DAY_MS + 2,
    }
}

fn ms_time(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// One bucket of a metrics answer (contract 6.3).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BucketFigures {
    #[serde(skip)]
    pub start: DateTime<Utc>,
    pub bays: i64,
    pub occupancy_percent: Option<f64>,
    pub sessions: i64,
    pub turnover_per_bay: Option<f64>,
    pub average_dwell_minutes: Option<f64>,
    pub unknown_percent: Option<f64>,
    pub overstays: i64,
    pub outside_bay: i64,
    pub obstructions: i64,
    pub footway_parking: i64,
}

/// The figures of the bucket `[start, end)` from the hours that start in
/// it; time after `now` is not elapsed and does not count for turnover.
pub fn bucket_figures(
    hours: &[Hour],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> BucketFigures {
    let (a, b) = (start.timestamp_millis(), end.timestamp_millis());
    let t = Totals::of(hours.iter().filter(|h| h.start_ms >= a && h.start_ms < b));
    let span = b.min(now.timestamp_millis()) - a;
    BucketFigures {
        start,
        bays: t.bays,
        occupancy_percent: t.occupancy_percent().map(round2),
        sessions: t.sessions,
        turnover_per_bay: t.turnover_per_bay(span).map(round2),
        average_dwell_minutes: t.average_dwell_minutes().map(round2),
        unknown_percent: t.unknown_percent().map(round2),
        overstays: t.overstays,
        outside_bay: t.outside_bay,
        obstructions: t.obstructions,
        footway_parking: t.footway_parking,
    }
}

/// Rounds to two decimals (what a report prints; the sums are exact).
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// One side of an effect report (contract 6.3): rates per day of the
/// stretch's elapsed time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Measures {
    pub occupancy_percent: Option<f64>,
    pub turnover_per_bay_day: Option<f64>,
    pub average_dwell_minutes: Option<f64>,
    pub overstays_per_day: Option<f64>,
    pub outside_bay_per_day: Option<f64>,
    pub obstructions_per_day: Option<f64>,
    pub footway_parking_per_day: Option<f64>,
    pub coverage_percent: Option<f64>,
}

/// The measures, in the order a report shows them, with their wire names
/// and titles.
pub const MEASURES: [(&str, &str); 8] = [
    ("occupancy_percent", "Occupancy (% of known bay-time)"),
    (
        "turnover_per_bay_day",
        "Turnover (sessions per bay per day)",
    ),
    ("average_dwell_minutes", "Average dwell (minutes)"),
    ("overstays_per_day", "Overstays per day"),
    ("outside_bay_per_day", "Parked outside a bay per day"),
    ("obstructions_per_day", "Obstructions per day"),
    ("footway_parking_per_day", "Footway parking per day"),
    ("coverage_percent", "Sensor coverage (% of bay-time known)"),
];

impl Measures {
    /// The measures of `t` over a stretch `span_ms` long.
    pub fn of(t: &Totals, span_ms: i64) -> Measures {
        let days = span_ms as f64 / DAY_MS as f64;
        let per_day = |n: i64| (span_ms > 0).then(|| round2(n as f64 / days));
        Measures {
            occupancy_percent: t.occupancy_percent().map(round2),
            turnover_per_bay_day: t.turnover_per_bay(DAY_MS).map(round2),
            average_dwell_minutes: t.average_dwell_minutes().map(round2),
            overstays_per_day: per_day(t.overstays),
            outside_bay_per_day: per_day(t.outside_bay),
            obstructions_per_day: per_day(t.obstructions),
            footway_parking_per_day: per_day(t.footway_parking),
            coverage_percent: t.coverage_percent().map(round2),
        }
    }

    /// The measures in [`MEASURES`] order.
    pub fn values(&self) -> [Option<f64>; 8] {
        [
            self.occupancy_percent,
            self.turnover_per_bay_day,
            self.average_dwell_minutes,
            self.overstays_per_day,
            self.outside_bay_per_day,
            self.obstructions_per_day,
            self.footway_parking_per_day,
            self.coverage_percent,
        ]
    }

    /// After minus before, measure by measure (percentage points for the
    /// percentages); `None` where either side has none.
    pub fn change(before: &Measures, after: &Measures) -> Measures {
        let d = |a: Option<f64>, b: Option<f64>| Some(round2(b? - a?));
        Measures {
            occupancy_percent: d(before.occupancy_percent, after.occupancy_percent),
            turnover_per_bay_day: d(before.turnover_per_bay_day, after.turnover_per_bay_day),
            average_dwell_minutes: d(before.average_dwell_minutes, after.average_dwell_minutes),
            overstays_per_day: d(before.overstays_per_day, after.overstays_per_day),
            outside_bay_per_day: d(before.outside_bay_per_day, after.outside_bay_per_day),
            obstructions_per_day: d(before.obstructions_per_day, after.obstructions_per_day),
            footway_parking_per_day: d(
                before.footway_parking_per_day,
                after.footway_parking_per_day,
            ),
            coverage_percent: d(before.coverage_percent, after.coverage_percent),
        }
    }
}

/// Below this share of bay-time known (%), a side of an effect report is
/// flagged: its occupancy and turnover rest on too little observation.
pub const LOW_COVERAGE_PERCENT: f64 = 60.0;

/// The stretches an effect report compares, UTC hours on both sides of
/// `pivot`: `[p0 - days, p0)` and `[p1, p1 + days)` with `p0` the hour
/// holding the pivot and `p1` the next hour boundary at or after it (the
/// hour in which the street changed belongs to neither side when the
/// pivot falls inside it). The after side ends at `now` at the latest.
pub fn effect_windows(pivot_ms: i64, days: i64, now_ms: i64) -> ((i64, i64), (i64, i64)) {
    let (p0, p1) = (floor_hour(pivot_ms), ceil_hour(pivot_ms));
    let span = days * DAY_MS;
    ((p0 - span, p0), (p1, (p1 + span).min(now_ms.max(p1))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const M: i64 = 60_000;

    fn t(d: u32, h: u32, m: u32) -> i64 {
        Utc.with_ymd_and_hms(2026, 12, d, h, m, 0)
            .unwrap()
            .timestamp_millis()
    }

    fn on_layout(kind: &str) -> Vec<Presence> {
        vec![Presence {
            from_ms: t(1, 0, 0),
            to_ms: i64::MAX,
            kind: kind.into(),
        }]
    }

    #[test]
    fn a_session_across_midnight_counts_where_it_started_and_occupies_both_days() {
        // Heard every 20 minutes from 22:00 to 02:00: known throughout.
        let heard = (0..=12).map(|i| t(1, 22, 0) + i * 20 * M).collect();
        let bay = BayHistory {
            presence: on_layout("standard"),
            heard_ms: heard,
            sessions: vec![(t(1, 23, 30), Some(t(2, 0, 45)))],
        };
        let rows = roll_up(&[bay], t(1, 22, 0), t(2, 2, 0), t(3, 0, 0), 30 * M);
        let by: Vec<(i64, i64, i64, i64)> = rows
            .iter()
            .map(|r| (r.hour_ms, r.known_ms, r.occupied_ms, r.sessions))
            .collect();
        assert_eq!(
            by,
            vec![
                (t(1, 22, 0), 60 * M, 0, 0),
                (t(1, 23, 0), 60 * M, 30 * M, 1),
                (t(2, 0, 0), 60 * M, 45 * M, 0),
                (t(2, 1, 0), 60 * M, 0, 0),
            ]
        );
        assert_eq!(rows[1].dwell_ms, 75 * M);
        assert_eq!(rows[1].ended_sessions, 1);
    }

    #[test]
    fn a_silent_bay_goes_unknown_after_the_window_and_stops_counting_occupied() {
        // Occupied at 10:00, then nothing: known (and occupied) for 30 min.
        let bay = BayHistory {
            presence: on_layout("loading"),
            heard_ms: vec![t(1, 10, 0)],
            sessions: vec![(t(1, 10, 0), None)],
        };
        let rows = roll_up(&[bay], t(1, 10, 0), t(1, 12, 0), t(1, 12, 0), 30 * M);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].known_ms, rows[0].occupied_ms), (30 * M, 30 * M));
        assert_eq!((rows[1].known_ms, rows[1].occupied_ms), (0, 0));
        assert_eq!(rows[1].bay_ms, 60 * M);
        assert_eq!((rows[0].sessions, rows[0].ended_sessions), (1, 0));
        assert_eq!(rows[0].kind, "loading");
    }

    #[test]
    fn nothing_after_now_counts() {
        let bay = BayHistory {
            presence: on_layout("standard"),
            heard_ms: vec![t(1, 10, 0)],
            sessions: vec![(t(1, 10, 0), None)],
        };
        let rows = roll_up(&[bay], t(1, 10, 0), t(1, 11, 0), t(1, 10, 10), 30 * M);
        assert_eq!(
            (rows[0].bay_ms, rows[0].known_ms, rows[0].occupied_ms),
            (10 * M, 10 * M, 10 * M)
        );
    }

    #[test]
    fn a_bay_retired_mid_hour_counts_for_the_part_it_was_there() {
        let bay = BayHistory {
            presence: vec![
                Presence {
                    from_ms: t(1, 0, 0),
                    to_ms: t(1, 10, 15),
                    kind: "standard".into(),
                },
                Presence {
                    from_ms: t(1, 10, 15),
                    to_ms: i64::MAX,
                    kind: "loading".into(),
                },
            ],
            heard_ms: vec![],
            sessions: vec![],
        };
        let rows = roll_up(&[bay], t(1, 10, 0), t(1, 11, 0), t(2, 0, 0), 30 * M);
        let kinds: Vec<(&str, i64, i64)> = rows
            .iter()
            .map(|r| (r.kind.as_str(), r.bays, r.bay_ms))
            .collect();
        assert_eq!(kinds, vec![("loading", 1, 45 * M), ("standard", 1, 15 * M)]);
    }

    #[test]
    fn berlin_days_that_change_the_clocks_have_23_and_25_hours() {
        let tz = chrono_tz::Europe::Berlin;
        let day = |y, m, d| {
            let date = chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
            let (a, b) = (
                day_start(&tz, date),
                day_start(&tz, date.succ_opt().unwrap()),
            );
            buckets(&tz, Bucket::Hour, a, b).len()
        };
        assert_eq!(day(2027, 3, 28), 23);
        assert_eq!(day(2027, 10, 31), 25);
        assert_eq!(day(2027, 6, 1), 24);
    }

    #[test]
    fn day_buckets_start_at_local_midnight() {
        let tz = chrono_tz::Asia::Shanghai;
        let from = Utc.with_ymd_and_hms(2026, 12, 1, 3, 0, 0).unwrap();
        let to = Utc.with_ymd_and_hms(2026, 12, 2, 15, 0, 0).unwrap();
        let b = buckets(&tz, Bucket::Day, from, to);
        // 2026-12-01 00:00+08 to 2026-12-03 00:00+08.
        assert_eq!(b.len(), 2);
        assert_eq!(
            b[0].0,
            Utc.with_ymd_and_hms(2026, 11, 30, 16, 0, 0).unwrap()
        );
        assert_eq!(b[1].1, Utc.with_ymd_and_hms(2026, 12, 2, 16, 0, 0).unwrap());
        assert!(bucket_count(Bucket::Day, from, to) >= b.len() as i64);
    }

    #[test]
    fn measures_are_rates_per_day_and_change_is_after_minus_before() {
        let t1 = Totals {
            bays: 2,
            bay_ms: 4 * DAY_MS,
            known_ms: 2 * DAY_MS,
            occupied_ms: DAY_MS,
            sessions: 8,
            ended_sessions: 4,
            dwell_ms: 4 * 90 * M,
            overstays: 2,
            ..Totals::default()
        };
        let m = Measures::of(&t1, 2 * DAY_MS);
        assert_eq!(m.occupancy_percent, Some(50.0));
        assert_eq!(m.coverage_percent, Some(50.0));
        assert_eq!(m.turnover_per_bay_day, Some(2.0));
        assert_eq!(m.average_dwell_minutes, Some(90.0));
        assert_eq!(m.overstays_per_day, Some(1.0));
        let c = Measures::change(&m, &Measures::default());
        assert_eq!(c.occupancy_percent, None);
        let c = Measures::change(&m, &m);
        assert_eq!(c.overstays_per_day, Some(0.0));
    }

    #[test]
    fn effect_windows_leave_out_the_pivot_hour_and_end_at_now() {
        let p = t(10, 14, 23);
        let ((a, b), (c, d)) = effect_windows(p, 2, t(11, 9, 0));
        assert_eq!((a, b), (t(8, 14, 0), t(10, 14, 0)));
        assert_eq!((c, d), (t(10, 15, 0), t(11, 9, 0)));
    }
}
