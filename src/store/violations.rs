//! Violations and their status history; overstay evaluation against the
//! stored sessions and events.

use std::collections::{HashMap, HashSet};

use super::db::{Db, on_backend};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use diesel::prelude::*;
use serde_json::{Value, json};

use super::ingest::EventRecord;
use super::privacy::plate_key;
use super::schema::{events, parking_sessions, violation_disputes, violation_history, violations};
use super::{Store, StoreError, from_ms, to_ms};
use crate::domain::enforcement::judge;
use crate::domain::events::EventType;
use crate::domain::ids::{BayId, RoadId};
use crate::domain::layout::EnforcedHours;
use crate::domain::privacy::{canonical, is_pseudonym, same_vehicle};
use crate::domain::violations::{
    Action, OnFile, Rejudged, Review, Stay, ViolationKind, ViolationStatus, act, review, stay_of,
    violation_id,
};

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

/// Where a page of violations resumes: after this (detected, id) in
/// newest-first order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViolationCursor {
    pub detected_at_ms: i64,
    pub violation_id: String,
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
    /// Later evidence contradicts it after a warden acted on it (see its
    /// history); what was filed stays as it was.
    pub disputed: bool,
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
            disputed: false,
        })
    }
}

fn history(
    conn: &mut Db,
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
/// observed in no bay, or a warden's report. Idempotent per event: gives
/// the violation's id when this call filed it.
pub(super) fn file_event_violation(
    conn: &mut Db,
    rec: &EventRecord,
    now: DateTime<Utc>,
) -> Result<Option<String>, StoreError> {
    let e = &rec.event;
    let kind = match (e.kind, &rec.bay_id, e.category) {
        (EventType::Observed, None, _) => ViolationKind::OutsideBay,
        (EventType::Report, _, Some(c)) => ViolationKind::of_report(c),
        _ => return Ok(None),
    };
    let Some(road) = &rec.road_id else {
        return Ok(None);
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
    Ok(file_new(conn, &row, now, "filed from a device event")?.then_some(id))
}

/// Files `row` as an open violation, with its first history entry, unless
/// a violation of that id is already on file (a redelivery, a re-judging).
/// Gives whether it was filed now.
fn file_new(conn: &mut Db, row: &Row, now: DateTime<Utc>, note: &str) -> Result<bool, StoreError> {
    let inserted = on_backend!(conn, c => diesel::insert_into(violations::table)
        .values(row)
        .on_conflict(violations::violation_id)
        .do_nothing()
        .execute(c))?;
    if inserted == 1 {
        history(
            conn,
            &row.violation_id,
            ViolationStatus::Open,
            now,
            None,
            Some(note),
        )?;
    }
    Ok(inserted == 1)
}

/// When the vehicle of a session was last known to be in the bay: the
/// sensor's end; while a sensor still sees it, `now` if the bay has been
/// heard from within the staleness window, else when it last was (a
/// silent sensor proves nothing); for a warden's chalk session, the last
/// sighting of the same plate.
#[allow(clippy::too_many_arguments)]
fn last_known(
    conn: &mut Db,
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
    // A sighting whose plate has since been erased is still a sighting.
    let forms = match plate {
        Some(p) => vec![p.to_owned(), canonical(&plate_key(conn, now)?, p)],
        None => vec![String::new()],
    };
    let last: Option<i64> = events::table
        .filter(events::bay_id.eq(bay.as_str()))
        .filter(events::event_type.eq("observed"))
        .filter(events::plate.eq_any(forms))
        .filter(events::observed_at_ms.ge(start))
        .filter(events::observed_at_ms.le(end.unwrap_or(i64::MAX)))
        .select(diesel::dsl::max(events::observed_at_ms))
        .first(conn)?;
    Ok(last.unwrap_or(start))
}

fn evidence(conn: &mut Db, bay: &BayId, from: i64, to: i64) -> Result<String, StoreError> {
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

/// An overstay on file for a bay, as re-judging needs it.
struct Filed {
    id: String,
    status: ViolationStatus,
    started_at: i64,
    ended_at: Option<i64>,
    last_seen: Option<i64>,
    plate: Option<String>,
}

/// A session of the bay with what re-judging made of it.
struct Judged {
    start: i64,
    end: Option<i64>,
    source: String,
    plate: Option<String>,
    until: i64,
    overstay: Option<crate::domain::enforcement::Overstay>,
}

/// How wardens' work ranks when two overstays on file turn out to be one
/// stay: the one a warden acted on is kept.
fn rank(s: ViolationStatus) -> u8 {
    match s {
        ViolationStatus::Ticketed => 0,
        ViolationStatus::Dismissed => 1,
        ViolationStatus::Open => 2,
        ViolationStatus::Void => 3,
    }
}

/// Records in the history of an acted-on violation that later evidence
/// contradicts it, and flags it `disputed`; each finding once.
fn dispute(conn: &mut Db, f: &Filed, note: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
    let known: i64 = violation_history::table
        .filter(violation_history::violation_id.eq(&f.id))
        .filter(violation_history::note.eq(note))
        .count()
        .get_result(conn)?;
    if known > 0 {
        return Ok(());
    }
    on_backend!(conn, c => diesel::insert_into(violation_disputes::table)
        .values((
            violation_disputes::violation_id.eq(&f.id),
            violation_disputes::since_ms.eq(to_ms(now)),
        ))
        .on_conflict_do_nothing()
        .execute(c))?;
    history(conn, &f.id, f.status, now, None, Some(note))
}

fn is_disputed(conn: &mut Db, id: &str) -> Result<bool, StoreError> {
    Ok(violation_disputes::table
        .find(id)
        .count()
        .get_result::<i64>(conn)?
        > 0)
}

/// When a warden ticketed or dismissed the violation.
fn acted_at(conn: &mut Db, id: &str) -> Result<Option<i64>, StoreError> {
    Ok(violation_history::table
        .filter(violation_history::violation_id.eq(id))
        .filter(violation_history::actor.is_not_null())
        .select(diesel::dsl::max(violation_history::at_ms))
        .first(conn)?)
}

/// Re-judges every recent parking session of `bay` against its rules and
/// brings its overstay violations in line: one violation per stay (matched
/// by the session that holds its arrival, so an earlier arrival learned
/// late changes no id), kept up to date while it is open; an open one that
/// the evidence no longer supports is set `void`. One a warden has acted
/// on (ticketed, dismissed) is never rewritten: a contradiction is added to
/// its history and flags it `disputed`; only a departure after it was
/// acted on is added.
pub(super) fn evaluate_bay(
    conn: &mut Db,
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
        .order((
            parking_sessions::started_at_ms,
            parking_sessions::session_id,
        ))
        .select((
            parking_sessions::started_at_ms,
            parking_sessions::ended_at_ms,
            parking_sessions::source,
            parking_sessions::plate,
        ))
        .load(conn)?;
    // Plates are compared across erasure only when one is a pseudonym.
    let mut key: Option<Vec<u8>> = None;
    let mut judged = Vec::with_capacity(sessions.len());
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
        let overstay = judge(
            from_ms(start)?,
            from_ms(until)?,
            max,
            enf.grace,
            rules.enforced_hours,
            enf.tz,
        );
        judged.push(Judged {
            start,
            end,
            source,
            plate,
            until,
            overstay,
        });
    }
    let stays = judged
        .iter()
        .map(|j| {
            Ok(Stay {
                start: from_ms(j.start)?,
                end: j.end.map(from_ms).transpose()?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;

    let rows: Vec<Row> = violations::table
        .filter(violations::bay_id.eq(bay.as_str()))
        .filter(violations::kind.eq(ViolationKind::Overstay.as_str()))
        .filter(
            violations::ended_at_ms
                .is_null()
                .or(violations::ended_at_ms.ge(horizon)),
        )
        .order((violations::started_at_ms, violations::violation_id))
        .select(Row::as_select())
        .load(conn)?;
    // Each overstay on file goes to the stay it is about.
    let mut by_stay: Vec<Vec<Filed>> = judged.iter().map(|_| Vec::new()).collect();
    let mut homeless = Vec::new();
    for r in rows {
        let f = Filed {
            status: ViolationStatus::parse(&r.status).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "violation {} status {:?}",
                    r.violation_id, r.status
                ))
            })?,
            id: r.violation_id,
            started_at: r.started_at_ms,
            ended_at: r.ended_at_ms,
            last_seen: r.last_seen_ms,
            plate: r.plate,
        };
        let known_until = f.ended_at.or(f.last_seen).unwrap_or(f.started_at);
        match stay_of(from_ms(f.started_at)?, from_ms(known_until)?, &stays) {
            Some(i) => by_stay[i].push(f),
            None => homeless.push(f),
        }
    }

    for (j, mut filed) in judged.into_iter().zip(by_stay) {
        filed.sort_by_key(|f| (rank(f.status), f.started_at));
        let mut filed = filed.into_iter();
        let keeper = match j.overstay {
            Some(o) => Some(keep(conn, bay, road, &j, o, filed.next(), &mut key, now)?),
            None => None,
        };
        // Anything else on file for this stay is not (or no longer) an overstay.
        for f in filed {
            let end = j.end.map(from_ms).transpose()?;
            let note = match &keeper {
                Some(k) => format!("the same stay as {k}"),
                None => "later evidence shows no overstay".to_owned(),
            };
            unsupported(conn, &f, end, &note, now)?;
        }
    }
    for f in homeless {
        // No stay is left where it was: an open one is void; one a warden
        // acted on is left as it is, for want of evidence either way.
        if f.status == ViolationStatus::Open {
            unsupported(conn, &f, None, "later evidence shows no overstay", now)?;
        }
    }
    Ok(())
}

/// Sets aside an overstay on file that the evidence no longer supports:
/// an open one becomes void; one a warden acted on is disputed.
fn unsupported(
    conn: &mut Db,
    f: &Filed,
    stay_end: Option<DateTime<Utc>>,
    note: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    match f.status {
        ViolationStatus::Open => {
            diesel::update(violations::table.find(&f.id))
                .set((
                    violations::status.eq(ViolationStatus::Void.as_str()),
                    violations::updated_at_ms.eq(to_ms(now)),
                ))
                .execute(conn)?;
            history(conn, &f.id, ViolationStatus::Void, now, None, Some(note))
        }
        ViolationStatus::Ticketed | ViolationStatus::Dismissed => {
            let reason = if note.starts_with("the same stay") {
                format!("disputed: {note}")
            } else {
                match review(&on_file(conn, f)?, None, stay_end, |a, b| a == b) {
                    Review::Disputed(n) => n,
                    _ => format!("disputed: {note}"),
                }
            };
            dispute(conn, f, &reason, now)
        }
        ViolationStatus::Void => Ok(()),
    }
}

fn on_file<'a>(conn: &mut Db, f: &'a Filed) -> Result<OnFile<'a>, StoreError> {
    Ok(OnFile {
        started_at: from_ms(f.started_at)?,
        ended_at: f.ended_at.map(from_ms).transpose()?,
        last_seen: f.last_seen.map(from_ms).transpose()?,
        plate: f.plate.as_deref(),
        acted_at: acted_at(conn, &f.id)?.map(from_ms).transpose()?,
    })
}

/// Brings the overstay of one stay in line with the evidence: files it
/// (`filed` is `None`), updates it while open, reinstates it if void, or
/// reviews it if a warden acted on it. Returns its id.
#[allow(clippy::too_many_arguments)]
fn keep(
    conn: &mut Db,
    bay: &BayId,
    road: &RoadId,
    j: &Judged,
    o: crate::domain::enforcement::Overstay,
    filed: Option<Filed>,
    key: &mut Option<Vec<u8>>,
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    let ev = evidence(conn, bay, j.start, j.until)?;
    let Some(f) = filed else {
        let id = violation_id(&["overstay", bay.as_str(), &j.start.to_string()]);
        let row = Row {
            violation_id: id.clone(),
            kind: ViolationKind::Overstay.as_str().into(),
            road_id: road.to_string(),
            bay_id: Some(bay.to_string()),
            lon: None,
            lat: None,
            plate: j.plate.clone(),
            started_at_ms: j.start,
            detected_at_ms: to_ms(o.detected_at),
            ended_at_ms: j.end,
            source: Some(j.source.clone()),
            last_seen_ms: Some(j.until),
            note: None,
            status: ViolationStatus::Open.as_str().into(),
            evidence: ev,
            updated_at_ms: to_ms(now),
        };
        file_new(conn, &row, now, "limit passed")?;
        return Ok(id);
    };
    // A plate erased since it was filed is the same plate: keep the
    // readable one on file.
    let mut plate = j.plate.clone();
    if let (Some(new), Some(old)) = (&j.plate, &f.plate)
        && new != old
        && (is_pseudonym(new) || is_pseudonym(old))
    {
        let k = match key {
            Some(k) => k,
            None => key.insert(plate_key(conn, now)?),
        };
        if same_vehicle(k, new, old) && !is_pseudonym(old) {
            plate = Some(old.clone());
        }
    }
    match f.status {
        ViolationStatus::Open | ViolationStatus::Void => {
            diesel::update(violations::table.find(&f.id))
                .set((
                    violations::status.eq(ViolationStatus::Open.as_str()),
                    violations::started_at_ms.eq(j.start),
                    violations::ended_at_ms.eq(j.end),
                    violations::last_seen_ms.eq(Some(j.until)),
                    violations::detected_at_ms.eq(to_ms(o.detected_at)),
                    violations::source.eq(Some(&j.source)),
                    violations::plate.eq(plate),
                    violations::evidence.eq(ev),
                    violations::updated_at_ms.eq(to_ms(now)),
                ))
                .execute(conn)?;
            if f.status == ViolationStatus::Void {
                history(
                    conn,
                    &f.id,
                    ViolationStatus::Open,
                    now,
                    None,
                    Some("new evidence"),
                )?;
            }
        }
        ViolationStatus::Ticketed | ViolationStatus::Dismissed => {
            let filed = on_file(conn, &f)?;
            let rejudged = Rejudged {
                started_at: from_ms(j.start)?,
                ended_at: j.end.map(from_ms).transpose()?,
                plate: plate.as_deref(),
            };
            let k = key.clone();
            let same = |a: &str, b: &str| match &k {
                Some(k) => same_vehicle(k, a, b),
                None => a == b,
            };
            match review(&filed, Some(&rejudged), None, same) {
                Review::Unchanged => {}
                Review::Departed(at) => {
                    diesel::update(violations::table.find(&f.id))
                        .set(violations::ended_at_ms.eq(to_ms(at)))
                        .execute(conn)?;
                }
                Review::Disputed(note) => dispute(conn, &f, &note, now)?,
            }
        }
    }
    Ok(f.id)
}

impl Store {
    /// Re-judges the overstays of these bays (for the periodic sweep).
    pub fn evaluate_overstays(
        &self,
        bays: &[(BayId, RoadId, BayRules)],
        enf: Enforcement,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.write(|conn| {
            super::coord::lock_bays(conn, bays.iter().map(|(b, _, _)| b.as_str()))?;
            for (bay, road, rules) in bays {
                evaluate_bay(conn, bay, road, *rules, enf, now)?;
            }
            Ok(())
        })
    }

    /// Violations filed or changed (by any instance) at or after
    /// `since_ms` (UTC milliseconds, the writer's clock), oldest change
    /// first, at most `limit`: what the live stream tells wardens.
    pub fn violations_changed_since(
        &self,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<(i64, ViolationRecord)>, StoreError> {
        let rows: Vec<Row> = violations::table
            .filter(violations::updated_at_ms.ge(since_ms))
            .order((violations::updated_at_ms, violations::violation_id))
            .limit(limit)
            .select(Row::as_select())
            .load(&mut self.conn()?)?;
        rows.into_iter()
            .map(|r| {
                let at = r.updated_at_ms;
                Ok((at, ViolationRecord::try_from(r)?))
            })
            .collect()
    }

    /// A road's violations with `status` (all when `None`), newest first.
    pub fn violations(
        &self,
        road: &RoadId,
        status: Option<ViolationStatus>,
    ) -> Result<Vec<ViolationRecord>, StoreError> {
        self.violations_page(road, status, None, i64::MAX)
    }

    /// A page of a road's violations with `status` (all when `None`),
    /// newest first (by `detected_at`, then id): those after `cursor`, at
    /// most `limit`.
    pub fn violations_page(
        &self,
        road: &RoadId,
        status: Option<ViolationStatus>,
        cursor: Option<ViolationCursor>,
        limit: i64,
    ) -> Result<Vec<ViolationRecord>, StoreError> {
        let mut q = violations::table
            .filter(violations::road_id.eq(road.as_str()))
            .into_boxed();
        if let Some(s) = status {
            q = q.filter(violations::status.eq(s.as_str()));
        }
        if let Some(c) = cursor {
            q = q.filter(
                violations::detected_at_ms
                    .lt(c.detected_at_ms)
                    .or(violations::detected_at_ms
                        .eq(c.detected_at_ms)
                        .and(violations::violation_id.gt(c.violation_id))),
            );
        }
        let conn = &mut self.conn()?;
        let rows: Vec<Row> = q
            .order((violations::detected_at_ms.desc(), violations::violation_id))
            .limit(limit)
            .select(Row::as_select())
            .load(conn)?;
        let ids: Vec<&str> = rows.iter().map(|r| r.violation_id.as_str()).collect();
        let mut disputed: HashSet<String> = HashSet::new();
        // SQLite allows a few thousand bound values per statement.
        for chunk in ids.chunks(500) {
            disputed.extend(
                violation_disputes::table
                    .filter(violation_disputes::violation_id.eq_any(chunk))
                    .select(violation_disputes::violation_id)
                    .load::<String>(conn)?,
            );
        }
        rows.into_iter()
            .map(|r| {
                let mut v = ViolationRecord::try_from(r)?;
                v.disputed = disputed.contains(&v.violation_id);
                Ok(v)
            })
            .collect()
    }

    /// A road's violations that began (were detected) or ended within
    /// `[from, to)`, except those later shown void, oldest detection first.
    pub fn violations_between(
        &self,
        road: &RoadId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ViolationRecord>, StoreError> {
        let (lo, hi) = (to_ms(from), to_ms(to));
        let rows: Vec<Row> = violations::table
            .filter(violations::road_id.eq(road.as_str()))
            .filter(violations::status.ne(ViolationStatus::Void.as_str()))
            .filter(
                violations::detected_at_ms
                    .ge(lo)
                    .and(violations::detected_at_ms.lt(hi))
                    .or(violations::ended_at_ms
                        .ge(lo)
                        .and(violations::ended_at_ms.lt(hi))),
            )
            .order((violations::detected_at_ms, violations::violation_id))
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
        let mut record = ViolationRecord::try_from(row)?;
        record.disputed = is_disputed(conn, id)?;
        Ok(Some((record, history)))
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
        self.write(|conn| {
            let Some(row) = violations::table
                .find(id)
                .select(Row::as_select())
                .first(conn)
                .optional()?
            else {
                return Ok(ActOutcome::NotFound);
            };
            let mut current = ViolationRecord::try_from(row)?;
            current.disputed = is_disputed(conn, id)?;
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
