//! History roll-ups: per road, bay kind and UTC hour, what
//! [`crate::domain::history::roll_up`] makes of the events and sessions,
//! kept in `occupancy_hours` so that a report over a year reads a year of
//! hours, not a year of events.
//!
//! **How the roll-up keeps up.** A road's roll-up is built up to a
//! watermark (`history_rollup.until_ms`). Each [`Store::refresh_history`]
//! rebuilds the road's hours from the earliest of
//! * the hour holding the watermark (the hour that was still going on, and
//!   whose bays may since have gone unknown with no event to say so),
//! * every hour ingest has marked (`history_marks`: the hours of events
//!   stored since; a late event's hour lies before the watermark), and
//! * the start of every session that ended in the rebuilt stretch (its
//!   dwell belongs to the hour it started in),
//!
//! up to `now`, then moves the watermark to `now`. Ingest marks in the
//! transaction that stores the events, so a mark exists exactly when its
//! events do; a mark is cleared only if no batch renewed it while the
//! roll-up worked (`renewals`). A replay moves sessions only at or after the
//! late event that caused it, so nothing before its hour changes. Nothing
//! earlier than `floor` (the retention window: no event older is accepted)
//! is ever rebuilt, so hours whose events retention has forgotten keep
//! their roll-up: **the roll-up is kept for good**, like sessions and
//! violations.
//!
//! Refreshing is serialised: by a mutex in the process, and on PostgreSQL
//! by an advisory lock held for the whole refresh, so that two instances
//! never write one road's hours from different snapshots.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use super::db::{Db, on_backend, write_transaction};
use super::schema::{
    bays, events, history_marks, history_rollup, layout_features, layout_revisions,
    occupancy_hours, parking_sessions, roads, violations,
};
use super::{Store, StoreError, to_ms};
use crate::domain::history::{
    BayHistory, HOUR_MS, Hour, HourRow, Presence, ViolationAt, ceil_hour, floor_hour, hours,
    roll_up,
};
use crate::domain::ids::{BayId, RoadId};

/// The advisory lock (transaction level) a refresh holds on PostgreSQL.
const HISTORY_LOCK: i64 = 7_260_366;

/// The most hours one refresh step rebuilds (a week); a longer backlog
/// is rebuilt in several steps, each its own transaction.
pub const STEP_HOURS: i64 = 24 * 7;

/// How much later than its start a violation may be detected and still
/// be found by start time (overstays are detected when the limit passes,
/// which may be a weekend of unenforced hours after arrival), ms.
const DETECTION_LAG_MS: i64 = 8 * 86_400_000;

/// Which bays a history query is about.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryFilter {
    /// One bay of the road.
    pub bay: Option<BayId>,
    /// Bays of this kind (the kind each had at the time).
    pub kind: Option<String>,
}

/// Status events and heartbeats: what keeps a bay known.
const HEARD: [&str; 4] = ["occupied", "vacated", "observed", "heartbeat"];

/// Marks the hours `(road_id, hour_ms)` of events just stored, in the
/// storing transaction, for the roll-up to rebuild. In key order, so that
/// two instances' batches queue on the rows rather than deadlock.
pub(super) fn mark(conn: &mut Db, marks: &BTreeSet<(&str, i64)>) -> Result<(), StoreError> {
    use history_marks::dsl as m;
    for (road, hour) in marks {
        on_backend!(conn, c => diesel::insert_into(m::history_marks)
            .values((m::road_id.eq(*road), m::hour_ms.eq(*hour), m::renewals.eq(0_i64)))
            .on_conflict((m::road_id, m::hour_ms))
            .do_update()
            .set(m::renewals.eq(m::renewals + 1_i64))
            .execute(c))?;
    }
    Ok(())
}

/// Each bay of the road (or only `bay`) with the stretches it was on the
/// layout and its kind in each, from the road's revisions.
fn presence(
    conn: &mut Db,
    road: &str,
    bay: Option<&str>,
) -> Result<BTreeMap<String, Vec<Presence>>, StoreError> {
    let revs: Vec<(i64, i64)> = layout_revisions::table
        .filter(layout_revisions::road_id.eq(road))
        .order(layout_revisions::revision)
        .select((layout_revisions::revision, layout_revisions::created_at_ms))
        .load(conn)?;
    let mut q = layout_features::table
        .filter(layout_features::road_id.eq(road))
        .filter(layout_features::feature_type.eq("bay"))
        .select((
            layout_features::revision,
            layout_features::feature_id,
            layout_features::kind,
        ))
        .into_boxed();
    if let Some(b) = bay {
        q = q.filter(layout_features::feature_id.eq(b.to_owned()));
    }
    let feats: Vec<(i64, String, Option<String>)> = q
        .order((layout_features::feature_id, layout_features::revision))
        .load(conn)?;
    let span: HashMap<i64, (i64, i64)> = revs
        .iter()
        .enumerate()
        .map(|(i, &(r, at))| (r, (at, revs.get(i + 1).map_or(i64::MAX, |n| n.1))))
        .collect();
    let mut out: BTreeMap<String, Vec<Presence>> = BTreeMap::new();
    for (rev, id, kind) in feats {
        let Some(&(from_ms, to_ms)) = span.get(&rev) else {
            continue;
        };
        let kind = kind.unwrap_or_else(|| "standard".into());
        let list = out.entry(id).or_default();
        match list.last_mut() {
            Some(p) if p.to_ms == from_ms && p.kind == kind => p.to_ms = to_ms,
            _ => list.push(Presence {
                from_ms,
                to_ms,
                kind,
            }),
        }
    }
    Ok(out)
}

/// The histories of the bays in `presence` over `[from_ms, to_ms)`: their
/// events from a staleness window before, and their sessions.
fn bay_histories(
    store: &Store,
    conn: &mut Db,
    road: &RoadId,
    presence: BTreeMap<String, Vec<Presence>>,
    single: bool,
    (from_ms, until_ms): (i64, i64),
    staleness_ms: i64,
) -> Result<Vec<BayHistory>, StoreError> {
    let mut out: BTreeMap<String, BayHistory> = presence
        .into_iter()
        .map(|(id, presence)| {
            (
                id,
                BayHistory {
                    presence,
                    ..BayHistory::default()
                },
            )
        })
        .collect();
    let lo = from_ms.saturating_sub(staleness_ms);
    let heard: Vec<(Option<String>, i64)> = if single {
        let ids: Vec<String> = out.keys().cloned().collect();
        events::table
            .filter(events::bay_id.eq_any(ids))
            .filter(events::observed_at_ms.ge(lo))
            .filter(events::observed_at_ms.lt(until_ms))
            .filter(events::event_type.eq_any(HEARD))
            .select((events::bay_id, events::observed_at_ms))
            .load(conn)?
    } else {
        events::table
            .filter(
                events::bay_id.eq_any(
                    bays::table
                        .filter(bays::road_id.eq(road.as_str()))
                        .select(bays::bay_id.nullable()),
                ),
            )
            .filter(events::observed_at_ms.ge(lo))
            .filter(events::observed_at_ms.lt(until_ms))
            .filter(events::event_type.eq_any(HEARD))
            .select((events::bay_id, events::observed_at_ms))
            .load(conn)?
    };
    for (bay, at) in heard {
        if let Some(b) = bay.and_then(|b| out.get_mut(&b)) {
            b.heard_ms.push(at);
        }
    }
    let (from, to) = (super::from_ms(from_ms)?, super::from_ms(until_ms)?);
    let sessions: Vec<(String, i64, Option<i64>)> = if single {
        let ids: Vec<String> = out.keys().cloned().collect();
        parking_sessions::table
            .filter(parking_sessions::bay_id.eq_any(ids))
            .filter(parking_sessions::started_at_ms.lt(until_ms))
            .filter(
                parking_sessions::ended_at_ms
                    .is_null()
                    .or(parking_sessions::ended_at_ms.gt(from_ms)),
            )
            .select((
                parking_sessions::bay_id,
                parking_sessions::started_at_ms,
                parking_sessions::ended_at_ms,
            ))
            .load(conn)?
    } else {
        store
            .sessions(road, from, to, None, i64::MAX / 2)?
            .into_iter()
            .map(|s| (s.bay_id, to_ms(s.started_at), s.ended_at.map(to_ms)))
            .collect()
    };
    for (bay, start, end) in sessions {
        if let Some(b) = out.get_mut(&bay) {
            b.sessions.push((start, end));
        }
    }
    Ok(out.into_values().collect())
}

#[derive(Queryable)]
struct RowIn {
    hour_ms: i64,
    kind: String,
    bays: i64,
    bay_ms: i64,
    known_ms: i64,
    occupied_ms: i64,
    sessions: i64,
    ended_sessions: i64,
    dwell_ms: i64,
}

impl Store {
    /// Brings the road's roll-up up to `now` (see the module's doc).
    /// `staleness` is the staleness window; nothing before `floor` is
    /// rebuilt. Cheap when little has happened since the last call (it
    /// rebuilds the current hour), a step of [`STEP_HOURS`] at a time
    /// when much has.
    pub fn refresh_history(
        &self,
        road: &RoadId,
        now: DateTime<Utc>,
        staleness: Duration,
        floor: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let _one = self.history_lock.lock().unwrap_or_else(|e| e.into_inner());
        let conn = &mut *self.conn()?;
        loop {
            let done = match conn {
                Db::Pg(_) => write_transaction(conn, |c| {
                    if let Db::Pg(pg) = c {
                        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                            .bind::<BigInt, _>(HISTORY_LOCK)
                            .execute(pg)?;
                    }
                    self.refresh_step(c, road, now, staleness, floor)
                })?,
                Db::Sqlite(_) => self.refresh_step(conn, road, now, staleness, floor)?,
            };
            if done {
                return Ok(());
            }
        }
    }

    /// One step of [`Store::refresh_history`]; `true` when the roll-up
    /// has reached `now`.
    fn refresh_step(
        &self,
        conn: &mut Db,
        road: &RoadId,
        now: DateTime<Utc>,
        staleness: Duration,
        floor: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let rid = road.as_str();
        let now_ms = to_ms(now);
        let Some(created) = roads::table
            .find(rid)
            .select(roads::created_at_ms)
            .first::<i64>(conn)
            .optional()?
        else {
            return Ok(true);
        };
        let marks: Vec<(i64, i64)> = history_marks::table
            .filter(history_marks::road_id.eq(rid))
            .select((history_marks::hour_ms, history_marks::renewals))
            .load(conn)?;
        let until: Option<i64> = history_rollup::table
            .find(rid)
            .select(history_rollup::until_ms)
            .first(conn)
            .optional()?;
        let lowest = floor_hour(created.max(to_ms(floor)));
        let mut from = floor_hour(until.unwrap_or(created));
        from = marks.iter().map(|m| m.0).fold(from, i64::min).max(lowest);
        if from >= now_ms && until.is_some_and(|u| u >= now_ms) {
            return Ok(true);
        }
        // Sessions that ended since `from` but started before: their dwell
        // is counted in the hour they started.
        let at = super::from_ms(from)?;
        let start = self
            .sessions(road, at, at + Duration::milliseconds(1), None, i64::MAX / 2)?
            .iter()
            .filter(|s| s.ended_at.is_some())
            .map(|s| floor_hour(to_ms(s.started_at)))
            .fold(from, i64::min)
            .max(lowest);
        let end = ceil_hour(now_ms)
            .min(start + STEP_HOURS * HOUR_MS)
            .max(start + HOUR_MS);
        let presence = presence(conn, rid, None)?;
        let bays = bay_histories(
            self,
            conn,
            road,
            presence,
            false,
            (start, end),
            staleness.num_milliseconds(),
        )?;
        let rows = roll_up(&bays, start, end, now_ms, staleness.num_milliseconds());
        let reached = end >= now_ms;
        let new_until = if reached { now_ms } else { end };
        write_transaction(conn, |c| {
            use occupancy_hours::dsl as o;
            diesel::delete(
                o::occupancy_hours
                    .filter(o::road_id.eq(rid))
                    .filter(o::hour_ms.ge(start))
                    .filter(o::hour_ms.lt(end)),
            )
            .execute(c)?;
            for chunk in rows.chunks(500) {
                let values: Vec<_> = chunk
                    .iter()
                    .map(|r| {
                        (
                            o::road_id.eq(rid),
                            o::hour_ms.eq(r.hour_ms),
                            o::kind.eq(r.kind.as_str()),
                            o::bays.eq(r.bays),
                            o::bay_ms.eq(r.bay_ms),
                            o::known_ms.eq(r.known_ms),
                            o::occupied_ms.eq(r.occupied_ms),
                            o::sessions.eq(r.sessions),
                            o::ended_sessions.eq(r.ended_sessions),
                            o::dwell_ms.eq(r.dwell_ms),
                        )
                    })
                    .collect();
                on_backend!(c, c => diesel::insert_into(o::occupancy_hours)
                    .values(&values)
                    .execute(c))?;
            }
            for (hour, renewals) in &marks {
                if *hour < end {
                    diesel::delete(
                        history_marks::table
                            .filter(history_marks::road_id.eq(rid))
                            .filter(history_marks::hour_ms.eq(*hour))
                            .filter(history_marks::renewals.eq(*renewals)),
                    )
                    .execute(c)?;
                }
            }
            on_backend!(c, c => diesel::insert_into(history_rollup::table)
                .values((
                    history_rollup::road_id.eq(rid),
                    history_rollup::until_ms.eq(new_until),
                ))
                .on_conflict(history_rollup::road_id)
                .do_update()
                .set(history_rollup::until_ms.eq(new_until))
                .execute(c))?;
            Ok(())
        })?;
        Ok(reached)
    }

    /// The road's hours `[from, to)` (UTC hour boundaries) for the bays
    /// `filter` selects: occupancy, sessions and dwell from the roll-up
    /// (brought up to `now` first), violations by start time. This is
    /// the one source of per-hour figures: the metrics and effect reports
    /// and the open-standards aggregates are all sums of these hours.
    ///
    /// A single bay is computed from its events and sessions directly (a
    /// bay's year is small); a road or a kind reads the roll-up.
    /// Violations of the road count when no bay is asked for; for a bay or
    /// a kind, only the violations of those bays (so not `outside_bay`).
    /// Void violations (disproved by late evidence) never count.
    #[allow(clippy::too_many_arguments)]
    pub fn history_hours(
        &self,
        road: &RoadId,
        filter: &HistoryFilter,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
        staleness: Duration,
        floor: DateTime<Utc>,
    ) -> Result<Vec<Hour>, StoreError> {
        let (a, b) = (floor_hour(to_ms(from)), ceil_hour(to_ms(to)));
        let now_ms = to_ms(now);
        let rows: Vec<HourRow> = match &filter.bay {
            Some(bay) => {
                let conn = &mut *self.conn()?;
                let presence = presence(conn, road.as_str(), Some(bay.as_str()))?;
                let bays = bay_histories(
                    self,
                    conn,
                    road,
                    presence,
                    true,
                    (a, b),
                    staleness.num_milliseconds(),
                )?;
                roll_up(&bays, a, b, now_ms, staleness.num_milliseconds())
            }
            None => {
                self.refresh_history(road, now, staleness, floor)?;
                use occupancy_hours::dsl as o;
                let mut q = o::occupancy_hours
                    .filter(o::road_id.eq(road.as_str()))
                    .filter(o::hour_ms.ge(a))
                    .filter(o::hour_ms.lt(b))
                    .into_boxed();
                if let Some(k) = &filter.kind {
                    q = q.filter(o::kind.eq(k.clone()));
                }
                q.select((
                    o::hour_ms,
                    o::kind,
                    o::bays,
                    o::bay_ms,
                    o::known_ms,
                    o::occupied_ms,
                    o::sessions,
                    o::ended_sessions,
                    o::dwell_ms,
                ))
                .load::<RowIn>(&mut self.conn()?)?
                .into_iter()
                .map(|r| HourRow {
                    hour_ms: r.hour_ms,
                    kind: r.kind,
                    bays: r.bays,
                    bay_ms: r.bay_ms,
                    known_ms: r.known_ms,
                    occupied_ms: r.occupied_ms,
                    sessions: r.sessions,
                    ended_sessions: r.ended_sessions,
                    dwell_ms: r.dwell_ms,
                })
                .collect()
            }
        };
        let violations = self.history_violations(road, filter, a, b)?;
        Ok(hours(a, b, &rows, &violations))
    }

    /// The UTC hours of `[from, to)` (widened to whole hours) of each bay
    /// that was ever on the road's layout, by bay id, rolled up one bay at
    /// a time from one read of the road's events and sessions: what the
    /// per-space and per-zone figures of the CDS aggregates rest on.
    /// Violations are not counted.
    pub fn history_hours_by_bay(
        &self,
        road: &RoadId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
        staleness: Duration,
    ) -> Result<Vec<(String, Vec<Hour>)>, StoreError> {
        let (a, b) = (floor_hour(to_ms(from)), ceil_hour(to_ms(to)));
        let (now_ms, st) = (to_ms(now), staleness.num_milliseconds());
        let conn = &mut *self.conn()?;
        let presence = presence(conn, road.as_str(), None)?;
        let ids: Vec<String> = presence.keys().cloned().collect();
        let bays = bay_histories(self, conn, road, presence, false, (a, b), st)?;
        Ok(ids
            .into_iter()
            .zip(bays)
            .map(|(id, bay)| {
                let rows = roll_up(std::slice::from_ref(&bay), a, b, now_ms, st);
                (id, hours(a, b, &rows, &[]))
            })
            .collect())
    }

    /// Violations of the road that started in `[a, b)` (ms), not void,
    /// of the bays `filter` selects.
    fn history_violations(
        &self,
        road: &RoadId,
        filter: &HistoryFilter,
        a: i64,
        b: i64,
    ) -> Result<Vec<ViolationAt>, StoreError> {
        use violations::dsl as v;
        let conn = &mut *self.conn()?;
        let mut q = v::violations
            .filter(v::road_id.eq(road.as_str()))
            .filter(v::detected_at_ms.ge(a))
            .filter(v::detected_at_ms.lt(b.saturating_add(DETECTION_LAG_MS)))
            .filter(v::started_at_ms.ge(a))
            .filter(v::started_at_ms.lt(b))
            .filter(v::status.ne("void"))
            .into_boxed();
        if let Some(bay) = &filter.bay {
            q = q.filter(v::bay_id.eq(bay.as_str().to_owned()));
        }
        let rows: Vec<(String, Option<String>, i64)> = q
            .select((v::kind, v::bay_id, v::started_at_ms))
            .load(conn)?;
        let kinds = match &filter.kind {
            Some(_) => Some(presence(conn, road.as_str(), None)?),
            None => None,
        };
        Ok(rows
            .into_iter()
            .filter(|(_, bay, at)| match (&filter.kind, &kinds) {
                (Some(k), Some(p)) => bay
                    .as_ref()
                    .and_then(|b| p.get(b))
                    .and_then(|ps| {
                        ps.iter()
                            .find(|x| x.from_ms <= *at && *at < x.to_ms)
                            .map(|x| &x.kind == k)
                    })
                    .unwrap_or(false),
                _ => true,
            })
            .map(|(kind, _, started_at_ms)| ViolationAt {
                kind,
                started_at_ms,
            })
            .collect())
    }

    /// Every road's id, for the periodic roll-up.
    pub fn road_ids(&self) -> Result<Vec<RoadId>, StoreError> {
        let ids: Vec<String> = roads::table
            .select(roads::road_id)
            .order(roads::road_id)
            .load(&mut self.conn()?)?;
        ids.iter()
            .map(|s| RoadId::parse(s).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }

    /// Refreshes every road's roll-up every `every` of the clock, on a
    /// thread of its own, so that a report never waits for a long backlog
    /// (after an upgrade, or a long-offline handheld's upload): a request
    /// then rebuilds only what arrived since. Failures are logged and
    /// retried.
    pub fn spawn_history(
        &self,
        clock: std::sync::Arc<dyn crate::clock::Clock>,
        staleness: Duration,
        retention: Duration,
        every: std::time::Duration,
    ) {
        let store = self.clone();
        let spawned = std::thread::Builder::new()
            .name("history".into())
            .spawn(move || {
                loop {
                    match store.road_ids() {
                        Ok(roads) => {
                            for road in roads {
                                let now = clock.now();
                                if let Err(e) =
                                    store.refresh_history(&road, now, staleness, now - retention)
                                {
                                    tracing::warn!(error = %e, road = %road.as_str(), "history roll-up failed; will retry");
                                }
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "history roll-up: cannot list roads"),
                    }
                    std::thread::sleep(every);
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the history thread");
        }
    }
}
