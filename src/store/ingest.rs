//! Writing a batch of device events in one transaction: the events (the
//! unique key on `(device_id, event_id)` decides duplicates), rejections,
//! device last-seen times, bay states and parking sessions.

use std::collections::{HashMap, HashSet};

use super::db::{Db, on_backend};
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;

use super::coord::{BAYS_CHANNEL, lock_bays, notify};
use super::privacy::replay_plates;
use super::schema::{bay_states, devices, events, parking_sessions, rejections};
use super::session_writes::SessionWrites;
use super::states::load_states;
use super::violations::{Enforcement, RulesByBay, evaluate_bay, file_event_violation};
use super::{Store, StoreError, from_ms, to_ms};
use crate::domain::enforcement::limit_reached_at;
use crate::domain::events::{Event, EventType, Rejection};
use crate::domain::history;
use crate::domain::ids::{BayId, RoadId};
use crate::domain::occupancy::{Applied, BayState, BayStatus, OpenSession, Signal, apply, replay};

/// An accepted event with where it resolved to.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub event: Event,
    /// The bay it is about (given, or resolved from its position).
    pub bay_id: Option<BayId>,
    /// The road it is about (the bay's, or the nearest for off-bay positions).
    pub road_id: Option<RoadId>,
    /// Where it happened, WGS 84: its position, else its bay's centre.
    pub place: Option<crate::domain::events::Position>,
    pub received_at: DateTime<Utc>,
}

/// A refused event, stored so that nothing is silently lost.
#[derive(Debug, Clone)]
pub struct RejectionRecord {
    /// The device named in the topic (as sent, even if invalid).
    pub device_id: String,
    pub rejection: Rejection,
    /// The payload, when it is text (cut to 4 KiB), for diagnosis: one
    /// excerpt per message, shared by all of its rejections.
    pub payload: Option<std::sync::Arc<str>>,
    /// [`Rejection::once_key`]: with the device, stores the rejection at
    /// most once however often its message is redelivered.
    pub once_key: String,
    pub received_at: DateTime<Utc>,
}

/// One batch to store.
#[derive(Debug, Default)]
pub struct BatchWrite {
    pub events: Vec<EventRecord>,
    pub rejections: Vec<RejectionRecord>,
}

/// What storing a batch decided.
#[derive(Debug, Default)]
pub struct BatchResult {
    /// Per event of the batch, in order: whether it was a duplicate.
    pub duplicate: Vec<bool>,
    /// The new state of every bay the batch changed.
    pub states: HashMap<BayId, BayState>,
    /// The version each of `states` was stored at.
    pub versions: HashMap<BayId, i64>,
    /// How many bays a late event made be replayed from history.
    pub replayed: usize,
    /// Devices whose `last_seen_ms` this batch wrote, and the value.
    devices_written: Vec<(String, i64)>,
}

fn signal(e: &Event) -> Signal<'_> {
    match e.kind {
        EventType::Occupied => Signal::Occupied,
        EventType::Vacated => Signal::Vacated,
        EventType::Observed => Signal::Observed {
            plate: e.plate.as_deref().unwrap_or_default(),
        },
        // A report or heartbeat about a bay shows it is watched: it keeps
        // the bay fresh without changing its status.
        EventType::Report | EventType::Heartbeat => Signal::Heartbeat,
    }
}

const STATUS_TYPES: [&str; 3] = ["occupied", "vacated", "observed"];

/// A device's `last_seen_ms` is kept to this resolution (one minute).
const DEVICE_SEEN_RESOLUTION_MS: i64 = 60_000;

/// Most devices whose last write [`DeviceSeen`] remembers. Past it, those
/// not written within the last minute are forgotten (their next event
/// writes again), and if that is not enough, all are: more devices than
/// this heard within a minute cost a write each per batch, not memory.
pub const DEVICE_SEEN_CAPACITY: usize = 50_000;

/// What the store remembers of devices between batches.
#[derive(Debug, Default)]
pub(crate) struct DeviceSeen {
    /// Device id to the `last_seen_ms` last written for it.
    written: std::sync::Mutex<HashMap<String, i64>>,
    /// Whether the `devices` table is known to hold at least
    /// [`OPEN_DEVICES_CAP`] rows (rows are never deleted).
    open_full: std::sync::atomic::AtomicBool,
}

/// What [`Store::admits_bare_heartbeat`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareHeartbeat {
    /// The device has a row already.
    Known,
    /// A new device, within the cap.
    New,
    /// A new device past the cap.
    Refused,
}

/// On `--devices open`, how many devices may have a row before a
/// heartbeat that names neither bay nor position may no longer bring in
/// a new one (it is rejected `unknown_device`): such a heartbeat says
/// nothing about the street, so a stream of made-up device ids must not
/// grow the table without end. Registered devices are not capped.
pub const OPEN_DEVICES_CAP: i64 = 10_000;

impl DeviceSeen {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.written.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Of the batch's devices (with their newest receive time), those whose
    /// `last_seen_ms` is due to be written.
    fn due<'a>(&self, seen: HashMap<&'a str, i64>) -> Vec<(&'a str, i64)> {
        let written = self.lock();
        seen.into_iter()
            .filter(|(device, ms)| {
                written
                    .get(*device)
                    .is_none_or(|w| ms - w >= DEVICE_SEEN_RESOLUTION_MS)
            })
            .collect()
    }

    /// Remembers committed writes, keeping within [`DEVICE_SEEN_CAPACITY`].
    fn remember(&self, writes: &[(String, i64)]) {
        let mut written = self.lock();
        if written.len() + writes.len() > DEVICE_SEEN_CAPACITY {
            let newest = writes.iter().map(|w| w.1).max().unwrap_or(i64::MIN);
            written.retain(|_, w| newest.saturating_sub(*w) < DEVICE_SEEN_RESOLUTION_MS);
            if written.len() + writes.len() > DEVICE_SEEN_CAPACITY {
                written.clear();
            }
        }
        written.extend(writes.iter().take(DEVICE_SEEN_CAPACITY).cloned());
    }

    /// How many devices are remembered.
    fn len(&self) -> usize {
        self.lock().len()
    }
}

impl Store {
    /// Stores a batch in one transaction and returns which events were
    /// duplicates and the new states of the bays it touched; `now` is
    /// recorded as the states' update time. The transaction first locks
    /// the batch's bays (PostgreSQL; SQLite's writer is alone) and builds on
    /// their stored states, so two instances writing one bay queue, and the
    /// later one sees what the earlier committed: no update is lost, and an
    /// event older than the stored state is late whoever stored that.
    pub fn write_batch(
        &self,
        batch: &BatchWrite,
        rules: &RulesByBay,
        enf: Enforcement,
        now: DateTime<Utc>,
    ) -> Result<BatchResult, StoreError> {
        // Only the batch's devices are looked up in what is remembered.
        let mut seen_devices: HashMap<&str, i64> = HashMap::new();
        for rec in &batch.events {
            let seen = seen_devices
                .entry(rec.event.device_id.as_str())
                .or_insert(i64::MIN);
            *seen = (*seen).max(to_ms(rec.received_at));
        }
        let due = self.device_seen.due(seen_devices);
        let mut named: Vec<&str> = batch
            .events
            .iter()
            .filter_map(|r| r.bay_id.as_ref().map(BayId::as_str))
            .collect();
        named.sort_unstable();
        named.dedup();
        self.write(|conn| {
            lock_bays(conn, named.iter().copied())?;
            let stored = load_states(conn, &named)?;
            let current = |bay: &BayId| stored.get(bay).map(|(s, _)| s);
            let mut result = BatchResult::default();
            let mut by_bay: Vec<(&BayId, &str, &Event)> = Vec::new();
            let fresh = super::events::insert_events(conn, &batch.events)?;
            for (i, rec) in batch.events.iter().enumerate() {
                let e = &rec.event;
                let duplicate = !fresh[i];
                result.duplicate.push(duplicate);
                if !duplicate && let (Some(bay), Some(road)) = (&rec.bay_id, &rec.road_id) {
                    by_bay.push((bay, road.as_str(), e));
                }
            }
            for r in &batch.rejections {
                on_backend!(conn, c => diesel::insert_into(rejections::table)
                        .values((
                            rejections::device_id.eq(&r.device_id),
                            rejections::event_id.eq(r.rejection.event_id.as_deref()),
                            rejections::reason.eq(r.rejection.reason.as_str()),
                            rejections::detail.eq(&r.rejection.detail),
                            rejections::payload.eq(r.payload.as_deref()),
                            rejections::received_at_ms.eq(to_ms(r.received_at)),
                            rejections::once_key.eq(&r.once_key),
                        ))
                        .on_conflict((rejections::device_id, rejections::once_key))
                        .do_nothing()
                        .execute(c))?;
            }
            for (device, seen_ms) in due {
                result.devices_written.push((device.to_owned(), seen_ms));
                on_backend!(conn, c => diesel::insert_into(devices::table)
                        .values((
                            devices::device_id.eq(device),
                            devices::first_seen_ms.eq(seen_ms),
                            devices::last_seen_ms.eq(seen_ms),
                        ))
                        .on_conflict(devices::device_id)
                        .do_update()
                        .set(devices::last_seen_ms.eq(seen_ms))
                        .execute(c))?;
            }
            // The history roll-up rebuilds the hours these events fall in
            // (marked last, below: the mark's row is shared by the road's
            // batches, so its lock is held only for the commit).
            let marks: std::collections::BTreeSet<(&str, i64)> = by_bay
                .iter()
                .map(|(_, road, e)| (*road, history::floor_hour(to_ms(e.observed_at))))
                .collect();
            // Apply to each bay in arrival order; a late event means replay.
            let mut late_from: HashMap<&BayId, DateTime<Utc>> = HashMap::new();
            let mut roads: HashMap<&BayId, &str> = HashMap::new();
            let mut sessions = SessionWrites::default();
            for (bay, road, e) in by_bay {
                roads.insert(bay, road);
                let state = result.states.get(bay).or_else(|| current(bay)).cloned();
                match apply(state.as_ref(), e.observed_at, signal(e)) {
                    Applied::Next(next, ops) => {
                        sessions.take(bay, road, state.as_ref(), ops);
                        result.states.insert(bay.clone(), next);
                    }
                    Applied::Late => {
                        let t = late_from.entry(bay).or_insert(e.observed_at);
                        *t = (*t).min(e.observed_at);
                        // Still the newest thing heard of the bay, perhaps.
                        if let Some(mut s) = state {
                            s.last_event_at = s.last_event_at.max(e.observed_at);
                            result.states.insert(bay.clone(), s);
                        }
                    }
                }
            }
            // Written before anything reads sessions back.
            sessions.write(conn, &mut result.states)?;
            // Bays whose overstays need judging: replayed ones, and those with
            // a session (before or after this batch) past its limit by now.
            let mut judge: HashSet<&BayId> = late_from.keys().copied().collect();
            result.replayed = late_from.len();
            for (bay, t0) in late_from {
                let prev = result.states.get(bay).cloned();
                let next = replay_bay(conn, bay, roads[bay], t0, prev)?;
                result.states.insert(bay.clone(), next);
            }
            for (bay, next) in &result.states {
                let Some(r) = rules.get(bay) else { continue };
                let Some(max) = r.max_stay_minutes else {
                    continue;
                };
                let limit = Duration::minutes(i64::from(max)) + enf.grace;
                let over = [
                    current(bay).and_then(|p| p.open.as_ref()),
                    next.open.as_ref(),
                ]
                .into_iter()
                .flatten()
                .any(|o| {
                    limit_reached_at(o.started_at, limit, r.enforced_hours, enf.tz)
                        .is_some_and(|t| t <= now)
                });
                if over {
                    judge.insert(bay);
                }
            }
            for bay in judge {
                if let (Some(r), Some(road)) = (rules.get(bay), roads.get(bay)) {
                    let road =
                        RoadId::parse(road).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    evaluate_bay(conn, bay, &road, *r, enf, now)?;
                }
            }
            for (rec, dup) in batch.events.iter().zip(&result.duplicate) {
                if !dup && let Some(violation) = file_event_violation(conn, rec, now)? {
                    open_report_case(conn, rec, violation, now)?;
                }
            }
            for (bay, s) in &result.states {
                let version = stored.get(bay).map_or(0, |(_, v)| *v) + 1;
                result.versions.insert(bay.clone(), version);
                let values = (
                    bay_states::bay_id.eq(bay.as_str()),
                    bay_states::status.eq(s.status.as_str()),
                    bay_states::since_ms.eq(to_ms(s.since)),
                    bay_states::status_event_ms.eq(s.status_at.map(to_ms)),
                    bay_states::last_event_at_ms.eq(to_ms(s.last_event_at)),
                    bay_states::updated_at_ms.eq(to_ms(now)),
                    bay_states::version.eq(version),
                );
                on_backend!(conn, c => diesel::insert_into(bay_states::table)
                        .values(values)
                        .on_conflict(bay_states::bay_id)
                        .do_update()
                        .set(values)
                        .execute(c))?;
            }
            // Told to the other instances when, and only if, this commits.
            notify(conn, BAYS_CHANNEL, result.states.keys().map(BayId::as_str))?;
            super::history::mark(conn, &marks)?;
            Ok(result)
        })
        .inspect(|result: &BatchResult| {
            // Committed: remember what was written.
            self.device_seen.remember(&result.devices_written);
        })
    }
}

/// A warden's report of an obstruction or of footway parking opens a case
/// (or adds to the open one it is), in the transaction that stores it.
fn open_report_case(
    conn: &mut Db,
    rec: &EventRecord,
    violation_id: String,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    use crate::domain::cases::{CaseKind, CaseSource};
    use crate::domain::events::ReportCategory;
    let e = &rec.event;
    let kind = match (e.kind, e.category) {
        (EventType::Report, Some(ReportCategory::Obstruction)) => CaseKind::Obstruction,
        (EventType::Report, Some(ReportCategory::FootwayParking)) => CaseKind::FootwayParking,
        _ => return Ok(()),
    };
    super::cases::open_case_in(
        conn,
        &super::NewCase {
            kind,
            position: rec.place,
            road_id: rec.road_id.as_ref().map(ToString::to_string),
            note: e.note.clone(),
            source: CaseSource::Report,
            violation_id: Some(violation_id),
            complaint_id: None,
            party_id: None,
            actor: Some(e.device_id.to_string()),
        },
        now,
    )?;
    Ok(())
}

fn insert_session(
    conn: &mut Db,
    bay: &BayId,
    road: &str,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    source: &str,
    plate: Option<&str>,
) -> Result<i64, StoreError> {
    Ok(diesel::insert_into(parking_sessions::table)
        .values((
            parking_sessions::bay_id.eq(bay.as_str()),
            parking_sessions::road_id.eq(road),
            parking_sessions::started_at_ms.eq(to_ms(started_at)),
            parking_sessions::ended_at_ms.eq(ended_at.map(to_ms)),
            parking_sessions::source.eq(source),
            parking_sessions::plate.eq(plate),
        ))
        .returning(parking_sessions::session_id)
        .get_result(conn)?)
}

/// Rebuilds a bay's sessions and state from its stored status events, from
/// the start of the session in progress at `t0` (or `t0` itself).
fn replay_bay(
    conn: &mut Db,
    bay: &BayId,
    road: &str,
    t0: DateTime<Utc>,
    prev: Option<BayState>,
) -> Result<BayState, StoreError> {
    let t0_ms = to_ms(t0);
    let affected = parking_sessions::table
        .filter(parking_sessions::bay_id.eq(bay.as_str()))
        .filter(
            parking_sessions::ended_at_ms
                .is_null()
                .or(parking_sessions::ended_at_ms.ge(t0_ms)),
        );
    let first_start: Option<i64> = affected
        .select(diesel::dsl::min(parking_sessions::started_at_ms))
        .first(conn)?;
    let s0 = first_start.map_or(t0_ms, |s| s.min(t0_ms));
    diesel::delete(affected).execute(conn)?;

    // Between sessions at s0: free since the last earlier session ended, if
    // any status event came before.
    let before: Option<i64> = events::table
        .filter(events::bay_id.eq(bay.as_str()))
        .filter(events::event_type.eq_any(STATUS_TYPES))
        .filter(events::observed_at_ms.lt(s0))
        .select(diesel::dsl::max(events::observed_at_ms))
        .first(conn)?;
    let last_end: Option<i64> = parking_sessions::table
        .filter(parking_sessions::bay_id.eq(bay.as_str()))
        .select(diesel::dsl::max(parking_sessions::ended_at_ms))
        .first(conn)?;
    let start = before
        .map(|b| -> Result<BayState, StoreError> {
            Ok(BayState {
                status: BayStatus::Free,
                since: from_ms(last_end.unwrap_or(b))?,
                status_at: Some(from_ms(b)?),
                last_event_at: from_ms(b)?,
                open: None,
            })
        })
        .transpose()?;

    let rows: Vec<(i64, String, Option<String>)> = events::table
        .filter(events::bay_id.eq(bay.as_str()))
        .filter(events::event_type.eq_any(STATUS_TYPES))
        .filter(events::observed_at_ms.ge(s0))
        .order((events::observed_at_ms, events::seq))
        .select((events::observed_at_ms, events::event_type, events::plate))
        .load(conn)?;
    let plates = replay_plates(conn, rows.iter().map(|r| r.2.clone()).collect())?;
    let timeline = rows
        .iter()
        .zip(&plates.compare)
        .map(|((ms, ty, _), plate)| {
            let signal = match ty.as_str() {
                "occupied" => Signal::Occupied,
                "vacated" => Signal::Vacated,
                _ => Signal::Observed {
                    plate: plate.as_deref().unwrap_or_default(),
                },
            };
            Ok((from_ms(*ms)?, signal))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let (state, spans) = replay(start, timeline);
    let mut state = state.ok_or_else(|| {
        StoreError::Corrupt(format!("bay {bay}: no status event to replay from {t0}"))
    })?;
    for span in &spans {
        let plate = plates.readable(span.plate.as_ref());
        let id = insert_session(
            conn,
            bay,
            road,
            span.started_at,
            span.ended_at,
            span.source.as_str(),
            plate.as_deref(),
        )?;
        if span.ended_at.is_none() {
            state.open = Some(OpenSession {
                id: Some(id),
                started_at: span.started_at,
                source: span.source,
                plate,
            });
        }
    }
    if let Some(p) = prev {
        state.last_event_at = state.last_event_at.max(p.last_event_at);
    }
    Ok(state)
}

impl Store {
    /// Whether a heartbeat naming neither bay nor position from `device`
    /// may be stored on `--devices open`: yes for a device with a row, and
    /// for a new one while fewer than [`OPEN_DEVICES_CAP`] devices have
    /// rows, counting `newcomers` admitted earlier in the same batch.
    pub fn admits_bare_heartbeat(
        &self,
        device: &str,
        newcomers: usize,
    ) -> Result<BareHeartbeat, StoreError> {
        if self.device_seen.lock().contains_key(device) {
            return Ok(BareHeartbeat::Known);
        }
        let mut conn = self.conn()?;
        let known: i64 = devices::table
            .filter(devices::device_id.eq(device))
            .count()
            .get_result(&mut conn)?;
        if known > 0 {
            return Ok(BareHeartbeat::Known);
        }
        let full = &self.device_seen.open_full;
        if !full.load(std::sync::atomic::Ordering::Relaxed) {
            let rows: i64 = devices::table.count().get_result(&mut conn)?;
            if rows + (newcomers as i64) < OPEN_DEVICES_CAP {
                return Ok(BareHeartbeat::New);
            }
            if rows >= OPEN_DEVICES_CAP {
                full.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(BareHeartbeat::Refused)
    }

    /// How many devices have a row (any device whose event was stored).
    pub fn device_count(&self) -> Result<i64, StoreError> {
        Ok(devices::table.count().get_result(&mut self.conn()?)?)
    }

    /// How many devices the last-seen cache remembers (at most
    /// [`DEVICE_SEEN_CAPACITY`]).
    pub fn device_seen_len(&self) -> usize {
        self.device_seen.len()
    }

    /// How many distinct events are stored.
    pub fn event_count(&self) -> Result<i64, StoreError> {
        Ok(events::table.count().get_result(&mut self.conn()?)?)
    }

    /// How many rejections are stored (a redelivered one counts once).
    pub fn rejection_count(&self) -> Result<i64, StoreError> {
        Ok(rejections::table.count().get_result(&mut self.conn()?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::Reason;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("k.db").display());
        (dir, Store::open(&url).unwrap())
    }

    fn rejection(event_id: Option<&str>, payload: &[u8], index: usize) -> RejectionRecord {
        let rejection = Rejection {
            event_id: event_id.map(str::to_owned),
            reason: Reason::Malformed,
            detail: "type is required".into(),
        };
        RejectionRecord {
            device_id: "s-1".into(),
            once_key: rejection.once_key(payload, index),
            rejection,
            payload: std::str::from_utf8(payload).ok().map(std::sync::Arc::from),
            received_at: Utc::now(),
        }
    }

    fn write(store: &Store, rejections: Vec<RejectionRecord>) {
        let batch = BatchWrite {
            events: vec![],
            rejections,
        };
        let enf = Enforcement {
            tz: chrono_tz::Asia::Shanghai,
            grace: Duration::zero(),
            staleness: Duration::minutes(30),
        };
        store
            .write_batch(&batch, &HashMap::new(), enf, Utc::now())
            .unwrap();
    }

    #[test]
    fn a_redelivered_rejection_is_stored_once() {
        let (_dir, store) = store();
        let payload = br#"{"event_id":"e1"}"#;
        write(&store, vec![rejection(Some("e1"), payload, 0)]);
        write(&store, vec![rejection(Some("e1"), payload, 0)]);
        assert_eq!(store.rejection_count().unwrap(), 1);
    }

    #[test]
    fn old_duplicate_rejections_neither_stop_the_migration_nor_come_back() {
        use diesel::connection::SimpleConnection;
        use diesel_migrations::MigrationHarness;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.db");
        let mut conn = Db::establish(path.to_str().unwrap()).unwrap();
        // A store as it was before rejections were keyed, with a redelivery.
        for m in conn
            .pending_migrations(super::super::SQLITE_MIGRATIONS)
            .unwrap()
        {
            if m.name().to_string().as_str() >= "2026-11-29-000002" {
                break;
            }
            conn.run_migration(&m).unwrap();
        }
        conn.batch_execute(
            "INSERT INTO rejections (device_id, event_id, reason, detail, received_at_ms) VALUES \
             ('s-1', 'e1', 'malformed', 'x', 1), ('s-1', 'e1', 'malformed', 'x', 2), \
             ('s-1', NULL, 'malformed', 'x', 3), ('s-1', NULL, 'malformed', 'x', 4);",
        )
        .unwrap();
        drop(conn);
        let store = Store::open(&format!("sqlite://{}", path.display())).unwrap();
        assert_eq!(store.rejection_count().unwrap(), 4, "history is kept");
        write(&store, vec![rejection(Some("e1"), b"{}", 0)]);
        assert_eq!(
            store.rejection_count().unwrap(),
            4,
            "an old rejection's redelivery is known"
        );
    }

    #[test]
    fn unreadable_payloads_are_told_apart_by_digest_and_place() {
        let (_dir, store) = store();
        // Two elements of one array without an id, and another payload.
        let both = || {
            vec![
                rejection(None, b"[1,2]", 0),
                rejection(None, b"[1,2]", 1),
                rejection(None, b"not json", 0),
            ]
        };
        write(&store, both());
        assert_eq!(store.rejection_count().unwrap(), 3);
        write(&store, both());
        assert_eq!(
            store.rejection_count().unwrap(),
            3,
            "the redelivery adds none"
        );
    }

    use crate::domain::ids::{DeviceId, EventId};

    fn heartbeat(device: &str, at: DateTime<Utc>) -> EventRecord {
        EventRecord {
            event: Event {
                device_id: DeviceId::parse(device).unwrap(),
                event_id: EventId::parse("hb").unwrap(),
                kind: EventType::Heartbeat,
                observed_at: at,
                bay_id: None,
                position: None,
                plate: None,
                category: None,
                note: None,
            },
            bay_id: None,
            road_id: None,
            place: None,
            received_at: at,
        }
    }

    #[test]
    fn the_last_seen_cache_stays_within_its_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("k.db").display());
        let store = Store::open(&url).unwrap();
        let now = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 27, 2, 0, 0).unwrap();
        let enf = Enforcement {
            tz: chrono_tz::Asia::Shanghai,
            grace: Duration::zero(),
            staleness: Duration::minutes(30),
        };
        // More devices than the cache holds, all heard within a minute.
        let mut n = 0;
        while n < DEVICE_SEEN_CAPACITY + 2_000 {
            let batch = BatchWrite {
                events: (n..n + 1_000)
                    .map(|i| heartbeat(&format!("d-{i}"), now))
                    .collect(),
                rejections: Vec::new(),
            };
            store
                .write_batch(&batch, &RulesByBay::default(), enf, now)
                .unwrap();
            n += 1_000;
            assert!(
                store.device_seen_len() <= DEVICE_SEEN_CAPACITY,
                "the cache holds {} devices",
                store.device_seen_len()
            );
        }
        assert_eq!(store.device_count().unwrap(), n as i64);
    }
}
