//! Violations and their status history; overstay evaluation against the
//! stored sessions and events.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use serde_json::{Value, json};

use super::ingest::EventRecord;
use super::schema::{events, parking_sessions, violation_history, violations};
use super::{Store, StoreError, from_ms, to_ms};
use crate::domain::enforcement::judge;
use crate::domain::events::EventType;
use crate::domain::ids::{BayId, RoadId};
use crate::domain::layout::EnforcedHours;
use crate::domain::violations::{Action, ViolationKind, ViolationStatus, act, violation_id};

/// How far back overstays are re-judged when new evidence arrives.
const REVIEW_DAYS: i64 = 7;
/// Most events listed as a violation's evidence.
const MAX_EVIDENCE: i64 = 50;

/// The deployment's enforcement settings.
#[derive(Debug, Clone, Copy)]
pub struct Enforcement {
    /// Local time zone of `enforced_hours`.
    pub tz: Tz,
    /// Extra enforced time allowed past a bay's limit before it is an overstay.
    pub grace: Duration,
    /// How long a bay that nothing is heard from is still taken to hold
    /// what it last reported (the staleness window).
    pub staleness: Duration,
}

/// A bay's limit and when it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BayRules {
    /// Minutes; `None` is no limit.
    pub max_stay_minutes: Option<u32>,
    pub enforced_hours: Option<EnforcedHours>,
}

/// A stored violation.
#[derive(Debug, Clone, PartialEq)]
pub struct ViolationRecord {
    pub violation_id: String,
    pub kind: String,
    pub road_id: String,
    pub bay_id: Option<String>,
    /// WGS 84 (lon, lat), for violations filed at a position.
    pub position: Option<(f64, f64)>,
    pub plate: Option<String>,
    pub started_at: DateTime<Utc>,
    pub detected_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// For overstays: `sensor` or `observed`.
    pub source: Option<String>,
    /// For overstays: when the vehicle was last known to be there.
    pub last_seen: Option<DateTime<Utc>>,
    pub note: Option<String>,
    pub status: ViolationStatus,
    pub evidence: Value,
}

/// One step of a violation's life.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub status: ViolationStatus,
    pub at: DateTime<Utc>,
    /// The token name that acted; `None` for the service itself.
    pub actor: Option<String>,
    pub note: Option<String>,
}

/// What acting on a violation came to.
#[derive(Debug)]
pub enum ActOutcome {
    Done(Box<ViolationRecord>),
    NotFound,
    /// It is not open: its present status.
    Conflict(ViolationStatus),
}

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = violations)]
#[diesel(treat_none_as_null = true)]
struct Row {
    violation_id: String,
    kind: String,
    road_id: String,
    bay_id: Option<String>,
    lon: Option<f64>,
    lat: Option<f64>,
    plate: Option<String>,
    started_at_ms: i64,
    detected_at_ms: i64,
    ended_at_ms: Option<i64>,
    source: Option<String>,
    last_seen_ms: Option<i64>,
    note: Option<String>,
    status: String,
    evidence: String,
    updated_at_ms: i64,
}

impl TryFrom<Row> for ViolationRecord {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self, StoreError> {
        Ok(ViolationRecord {
            status: ViolationStatus::parse(&r.status).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "violation {} status {:?}",
                    r.violation_id, r.status
                ))
            })?,
            evidence: serde_json::from_str(&r.evidence).unwrap_or(Value::Array(Vec::new())),
            position: r.lon.zip(r.lat),
            started_at: from_ms(r.started_at_ms)?,
            detected_at: from_ms(r.detected_at_ms)?,
            ended_at: r.ended_at_ms.map(from_ms).transpose()?,
            last_seen: r.last_seen_ms.map(from_ms).transpose()?,
            violation_id: r.violation_id,
            kind: r.kind,
            road_id: r.road_id,
            bay_id: r.bay_id,
            plate: r.plate,
            source: r.source,
            note: r.note,
        })
    }
}

fn history(
    conn: &mut SqliteConnection,
    id: &str,
    status: ViolationStatus,
    at: DateTime<Utc>,
    actor: Option<&str>,
    note: Option<&str>,
) -> Result<(), StoreError> {
    diesel::insert_into(violation_history::table)
        .values((
            violation_history::violation_id.eq(id),
            violation_history::status.eq(status.as_str()),
            violation_history::at_ms.eq(to_ms(at)),
            violation_history::actor.eq(actor),
            violation_history::note.eq(note),
        ))
        .execute(conn)?;
    Ok(())
}

/// Files the violation an accepted event shows by itself: a vehicle
/// observed in no bay, or a warden's report. Idempotent per event.
pub(super) fn file_event_violation(
    conn: &mut SqliteConnection,
    rec: &EventRecord,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let e = &rec.event;
    let kind = match (e.kind, &rec.bay_id, e.category) {
        (EventType::Observed, None, _) => ViolationKind::OutsideBay,
        (EventType::Report, _, Some(c)) => ViolationKind::of_report(c),
        _ => return Ok(()),
    };
    let Some(road) = &rec.road_id else {
        return Ok(());
    };
    let id = violation_id(&["event", e.device_id.as_str(), e.event_id.as_str()]);
    let evidence = json!([{"device_id": e.device_id, "event_id": e.event_id, "type": e.kind.as_str(),
                           "observed_at": crate::clock::rfc3339(e.observed_at)}]);
    let row = Row {
        violation_id: id.clone(),
        kind: kind.as_str().into(),
        road_id: road.to_string(),
        bay_id: rec.bay_id.as_ref().map(ToString::to_string),
        lon: e.position.map(|p| p.lon),
        lat: e.position.map(|p| p.lat),
        plate: e.plate.clone(),
        started_at_ms: to_ms(e.observed_at),
        detected_at_ms: to_ms(e.observed_at),
        ended_at_ms: None,
        source: None,
        last_seen_ms: None,
        note: e.note.clone(),
        status: ViolationStatus::Open.as_str().into(),
        evidence: evidence.to_string(),
        updated_at_ms: to_ms(now),
    };
    let inserted = diesel::insert_into(violations::table)
        .values(&row)
        .on_conflict(violations::violation_id)
        .do_nothing()
        .execute(conn)?;
    if inserted == 1 {
        history(
            conn,
            &id,
            ViolationStatus::Open,
            now,
            None,
            Some("filed from a device event"),
        )?;
    }
    Ok(())
}

/// When the vehicle of a session was last known to be in the bay: the
/// sensor's end; while a sensor still sees it, `now` if the bay has been
/// heard from within the staleness window, else when it last was (a
/// silent sensor proves nothing); for a warden's chalk session, the last
/// sighting of the same plate.
#[allow(clippy::too_many_arguments)]
fn last_known(
    conn: &mut SqliteConnection,
    bay: &BayId,
    start: i64,
    end: Option<i64>,
    source: &str,
    plate: Option<&str>,
    staleness: Duration,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    if source != "observed" {
        if let Some(end) = end {
            return Ok(end);
        }
        let heard: Option<i64> = events::table
            .filter(events::bay_id.eq(bay.as_str()))
            .select(diesel::dsl::max(events::observed_at_ms))
            .first(conn)?;
        let now = to_ms(now);
        return Ok(match heard {
            Some(h) if now - h > staleness.num_milliseconds() => h.max(start),
            _ => now,
        });
    }
    let last: Option<i64> = events::table
        .filter(events::bay_id.eq(bay.as_str()))
        .filter(events::event_type.eq("observed"))
        .filter(events::plate.eq(plate.unwrap_or_default()))
        .filter(events::observed_at_ms.ge(start))
        .filter(events::observed_at_ms.le(end.unwrap_or(i64::MAX)))
        .select(diesel::dsl::max(events::observed_at_ms))
        .first(conn)?;
    Ok(last.unwrap_or(start))
}

fn evidence(
    conn: &mut SqliteConnection,
    bay: &BayId,
    from: i64,
    to: i64,
) -> Result<String, StoreError> {
    let rows: Vec<(String, String, String, i64)> = events::table
        .filter(events::bay_id.eq(bay.as_str()))
        .filter(events::observed_at_ms.ge(from))
        .filter(events::observed_at_ms.le(to))
        .filter(events::event_type.ne("heartbeat"))
        .order((events::observed_at_ms, events::seq))
        .limit(MAX_EVIDENCE)
        .select((
            events::device_id,
            events::event_id,
            events::event_type,
            events::observed_at_ms,
        ))
        .load(conn)?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(|(d, e, t, ms)| {
            json!({"device_id": d, "event_id": e, "type": t,
                   "observed_at": from_ms(ms).map(crate::clock::rfc3339).unwrap_or_default()})
        })
        .collect();
    Ok(Value::Array(items).to_string())
}

/// Re-judges every recent parking session of `bay` against its rules and
/// brings its overstay violations in line: one violation per overstay
/// (its id derives from the bay and the arrival), kept up to date, and an
/// open one that the evidence no longer supports is set `void`.
pub(super) fn evaluate_bay(
    conn: &mut SqliteConnection,
    bay: &BayId,
    road: &RoadId,
    rules: BayRules,
    enf: Enforcement,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some(max) = rules.max_stay_minutes else {
        return Ok(());
    };
    let max = Duration::minutes(i64::from(max));
    let horizon = to_ms(now - Duration::days(REVIEW_DAYS));
    let sessions: Vec<(i64, Option<i64>, String, Option<String>)> = parking_sessions::table
        .filter(parking_sessions::bay_id.eq(bay.as_str()))
        .filter(
            parking_sessions::ended_at_ms
                .is_null()
                .or(parking_sessions::ended_at_ms.ge(horizon)),
        )
        .select((
            parking_sessions::started_at_ms,
            parking_sessions::ended_at_ms,
            parking_sessions::source,
            parking_sessions::plate,
        ))
        .load(conn)?;
    let mut wanted = HashSet::new();
    for (start, end, source, plate) in sessions {
        let until = last_known(
            conn,
            bay,
            start,
            end,
            &source,
            plate.as_deref(),
            enf.staleness,
            now,
        )?;
        let Some(o) = judge(
            from_ms(start)?,
            from_ms(until)?,
            max,
            enf.grace,
            rules.enforced_hours,
            enf.tz,
        ) else {
            continue;
        };
        let id = violation_id(&["overstay", bay.as_str(), &start.to_string()]);
        wanted.insert(id.clone());
        let existing: Option<String> = violations::table
            .find(&id)
            .select(violations::status)
            .first(conn)
            .optional()?;
        let ev = evidence(conn, bay, start, until)?;
        match existing {
            None => {
                diesel::insert_into(violations::table)
                    .values(Row {
                        violation_id: id.clone(),
                        kind: ViolationKind::Overstay.as_str().into(),
                        road_id: road.to_string(),
                        bay_id: Some(bay.to_string()),
                        lon: None,
                        lat: None,
                        plate,
                        started_at_ms: start,
                        detected_at_ms: to_ms(o.detected_at),
                        ended_at_ms: end,
                        source: Some(source),
                        last_seen_ms: Some(until),
                        note: None,
                        status: ViolationStatus::Open.as_str().into(),
                        evidence: ev,
                        updated_at_ms: to_ms(now),
                    })
                    .execute(conn)?;
                history(
                    conn,
                    &id,
                    ViolationStatus::Open,
                    now,
                    None,
                    Some("limit passed"),
                )?;
            }
            Some(status) => {
                let reinstate = status == ViolationStatus::Void.as_str();
                let status = if reinstate {
                    ViolationStatus::Open.as_str()
                } else {
                    status.as_str()
                };
                diesel::update(violations::table.find(&id))
                    .set((
                        violations::status.eq(status),
                        violations::ended_at_ms.eq(end),
                        violations::last_seen_ms.eq(Some(until)),
                        violations::detected_at_ms.eq(to_ms(o.detected_at)),
                        violations::plate.eq(plate),
                        violations::evidence.eq(ev),
                        violations::updated_at_ms.eq(to_ms(now)),
                    ))
                    .execute(conn)?;
                if reinstate {
                    history(
                        conn,
                        &id,
                        ViolationStatus::Open,
                        now,
                        None,
                        Some("new evidence"),
                    )?;
                }
            }
        }
    }
    let open: Vec<String> = violations::table
        .filter(violations::bay_id.eq(bay.as_str()))
        .filter(violations::kind.eq(ViolationKind::Overstay.as_str()))
        .filter(violations::status.eq(ViolationStatus::Open.as_str()))
        .filter(
            violations::ended_at_ms
                .is_null()
                .or(violations::ended_at_ms.ge(horizon)),
        )
        .select(violations::violation_id)
        .load(conn)?;
    for id in open.into_iter().filter(|id| !wanted.contains(id)) {
        diesel::update(violations::table.find(&id))
            .set((
                violations::status.eq(ViolationStatus::Void.as_str()),
                violations::updated_at_ms.eq(to_ms(now)),
            ))
            .execute(conn)?;
        history(
            conn,
            &id,
            ViolationStatus::Void,
            now,
            None,
            Some("later evidence shows no overstay"),
        )?;
    }
    Ok(())
}

impl Store {
    /// Re-judges the overstays of these bays (for the periodic sweep).
    pub fn evaluate_overstays(
        &self,
        bays: &[(BayId, RoadId, BayRules)],
        enf: Enforcement,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.conn()?.immediate_transaction(|conn| {
            for (bay, road, rules) in bays {
                evaluate_bay(conn, bay, road, *rules, enf, now)?;
            }
            Ok(())
        })
    }

    /// A road's violations with `status` (all when `None`), newest first.
    pub fn violations(
        &self,
        road: &RoadId,
        status: Option<ViolationStatus>,
    ) -> Result<Vec<ViolationRecord>, StoreError> {
        let mut q = violations::table
            .filter(violations::road_id.eq(road.as_str()))
            .into_boxed();
        if let Some(s) = status {
            q = q.filter(violations::status.eq(s.as_str()));
        }
        let rows: Vec<Row> = q
            .order((violations::detected_at_ms.desc(), violations::violation_id))
            .select(Row::as_select())
            .load(&mut self.conn()?)?;
        rows.into_iter().map(ViolationRecord::try_from).collect()
    }

    /// One violation with its history, oldest step first.
    pub fn violation(
        &self,
        id: &str,
    ) -> Result<Option<(ViolationRecord, Vec<HistoryEntry>)>, StoreError> {
        let conn = &mut self.conn()?;
        let Some(row) = violations::table
            .find(id)
            .select(Row::as_select())
            .first(conn)
            .optional()?
        else {
            return Ok(None);
        };
        let steps: Vec<(String, i64, Option<String>, Option<String>)> = violation_history::table
            .filter(violation_history::violation_id.eq(id))
            .order(violation_history::seq)
            .select((
                violation_history::status,
                violation_history::at_ms,
                violation_history::actor,
                violation_history::note,
            ))
            .load(conn)?;
        let history = steps
            .into_iter()
            .map(|(status, at, actor, note)| {
                Ok(HistoryEntry {
                    status: ViolationStatus::parse(&status)
                        .ok_or_else(|| StoreError::Corrupt(format!("history status {status:?}")))?,
                    at: from_ms(at)?,
                    actor,
                    note,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some((row.try_into()?, history)))
    }

    /// Tickets or dismisses an open violation, recording who and when, in
    /// one transaction (so two wardens cannot both ticket it).
    pub fn act_on_violation(
        &self,
        id: &str,
        action: Action,
        actor: &str,
        note: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ActOutcome, StoreError> {
        self.conn()?.immediate_transaction(|conn| {
            let Some(row) = violations::table
                .find(id)
                .select(Row::as_select())
                .first(conn)
                .optional()?
            else {
                return Ok(ActOutcome::NotFound);
            };
            let current = ViolationRecord::try_from(row)?;
            match act(current.status, action) {
                Err(status) => Ok(ActOutcome::Conflict(status)),
                Ok(next) => {
                    diesel::update(violations::table.find(id))
                        .set((
                            violations::status.eq(next.as_str()),
                            violations::updated_at_ms.eq(to_ms(now)),
                        ))
                        .execute(conn)?;
                    history(conn, id, next, now, Some(actor), note)?;
                    Ok(ActOutcome::Done(Box::new(ViolationRecord {
                        status: next,
                        ..current
                    })))
                }
            }
        })
    }
}

/// The rules of each bay, for callers that hold them by bay.
pub type RulesByBay = HashMap<BayId, BayRules>;
