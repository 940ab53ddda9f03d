//! Plates kept only while they are needed: the deployment's pseudonym key,
//! and the erasure pass that replaces the plates of finished parking by
//! their keyed pseudonyms (see `domain::privacy`).

use super::db::{Db, on_backend};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use rand::RngCore;

use super::schema::{events, parking_sessions, plate_key as key_table, violations};
use super::{Store, StoreError, to_ms};
use crate::domain::privacy::{canonical, is_pseudonym, pseudonym};

/// Most plates of each kind replaced by one pass (one transaction); the
/// rest wait for the next pass.
const ERASE_CHUNK: i64 = 5_000;

/// The deployment's pseudonym key, made (from the operating system's
/// randomness) the first time it is asked for.
pub(super) fn plate_key(conn: &mut Db, now: DateTime<Utc>) -> Result<Vec<u8>, StoreError> {
    let read = |conn: &mut Db| -> Result<Option<String>, StoreError> {
        Ok(key_table::table
            .find(1)
            .select(key_table::secret)
            .first(conn)
            .optional()?)
    };
    let secret = match read(conn)? {
        Some(s) => s,
        None => {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            on_backend!(conn, c => diesel::insert_into(key_table::table)
                .values((
                    key_table::id.eq(1),
                    key_table::secret.eq(&hex),
                    key_table::created_at_ms.eq(to_ms(now)),
                ))
                .on_conflict_do_nothing()
                .execute(c))?;
            read(conn)?
                .ok_or_else(|| StoreError::Corrupt("no plate key after writing it".into()))?
        }
    };
    decode_hex(&secret).ok_or_else(|| StoreError::Corrupt("the plate key is not hex".into()))
}

/// The plates of a bay's events being replayed, in a form that compares
/// across erasure: once any is a pseudonym, each is compared as its
/// pseudonym, and a stay's readable plate is given back where one is known.
pub(super) struct ReplayPlates {
    /// Per event, the plate to compare.
    pub compare: Vec<Option<String>>,
    readable: std::collections::HashMap<String, String>,
}

impl ReplayPlates {
    /// The plate to store for a replayed stay whose compared plate is `p`.
    pub fn readable(&self, p: Option<&String>) -> Option<String> {
        p.map(|p| self.readable.get(p).unwrap_or(p).clone())
    }
}

pub(super) fn replay_plates(
    conn: &mut Db,
    plates: Vec<Option<String>>,
) -> Result<ReplayPlates, StoreError> {
    let mut readable = std::collections::HashMap::new();
    if !plates.iter().flatten().any(|p| is_pseudonym(p)) {
        return Ok(ReplayPlates {
            compare: plates,
            readable,
        });
    }
    let secret: String = key_table::table
        .find(1)
        .select(key_table::secret)
        .first(conn)
        .optional()?
        .ok_or_else(|| StoreError::Corrupt("pseudonyms stored but no plate key".into()))?;
    let key = decode_hex(&secret)
        .ok_or_else(|| StoreError::Corrupt("the plate key is not hex".into()))?;
    let compare = plates
        .into_iter()
        .map(|p| {
            p.map(|p| {
                let c = canonical(&key, &p);
                if c != p {
                    readable.insert(c.clone(), p);
                }
                c
            })
        })
        .collect();
    Ok(ReplayPlates { compare, readable })
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What one erasure pass replaced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Erased {
    pub sessions: usize,
    pub events: usize,
    pub violations: usize,
}

impl Erased {
    /// Plates replaced, all kinds together.
    pub fn total(&self) -> usize {
        self.sessions + self.events + self.violations
    }
}

#[derive(QueryableByName)]
struct ReadableEvent {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = BigInt)]
    observed_at_ms: i64,
    #[diesel(sql_type = Text)]
    plate: String,
}

#[derive(QueryableByName)]
struct Readable {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    plate: String,
}

// The `plate ... NOT LIKE 'pseud:%'` terms are written out so that the
// planner uses the partial indexes of readable plates. Each query is
// written with SQLite's `?` placeholders; [`for_backend`] numbers them for
// PostgreSQL.
const SESSIONS: &str = "SELECT CAST(session_id AS TEXT) AS id, plate FROM parking_sessions \
     WHERE plate IS NOT NULL AND plate NOT LIKE 'pseud:%' AND ended_at_ms < ? LIMIT ?";
// An event's plate is still needed while a stay that has not ended before
// the cutoff, in the event's bay, started at or before it: the sessions
// being judged and replayed compare those plates.
// The event's instant comes back with its seq so that the update names the
// partition holding it (PostgreSQL partitions `events` by month of
// `observed_at_ms`; by seq alone it would probe every month's index).
const EVENTS: &str = "SELECT seq, observed_at_ms, plate FROM events e \
     WHERE plate IS NOT NULL AND plate NOT LIKE 'pseud:%' AND observed_at_ms < ? \
     AND NOT EXISTS (SELECT 1 FROM parking_sessions s WHERE s.bay_id = e.bay_id \
       AND s.started_at_ms <= e.observed_at_ms \
       AND (s.ended_at_ms IS NULL OR s.ended_at_ms >= ?)) LIMIT ?";
// Dismissed and void violations, once both the parking and the decision
// are older than the cutoff. Open and ticketed ones keep their plate.
// (`MAX(a, b)` is SQLite's scalar maximum; PostgreSQL calls it GREATEST.)
const VIOLATIONS: &str = "SELECT violation_id AS id, plate FROM violations \
     WHERE plate IS NOT NULL AND plate NOT LIKE 'pseud:%' AND status IN ('dismissed', 'void') \
     AND MAX(coalesce(ended_at_ms, last_seen_ms, detected_at_ms), updated_at_ms) < ? LIMIT ?";

/// `sql` as the backend of `conn` takes it: unchanged for SQLite; for
/// PostgreSQL with `$1, $2, ...` for the `?` and GREATEST for MAX(a, b).
fn for_backend(conn: &Db, sql: &str) -> String {
    match conn {
        Db::Sqlite(_) => sql.to_owned(),
        Db::Pg(_) => {
            let mut out = String::with_capacity(sql.len() + 8);
            let mut n = 0;
            for ch in sql.replace("MAX(coalesce", "GREATEST(coalesce").chars() {
                if ch == '?' {
                    n += 1;
                    out.push_str(&format!("${n}"));
                } else {
                    out.push(ch);
                }
            }
            out
        }
    }
}

impl Store {
    /// Makes the deployment's pseudonym key if there is none yet (at start).
    pub fn ensure_plate_key(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.write(|conn| plate_key(conn, now).map(drop))
    }

    /// Replaces by their keyed pseudonyms the plates no longer needed as of
    /// `cutoff` (now less the keeping time): of sessions that ended before
    /// it, of events that no stay still going on (or ended after it) rests
    /// on, and of dismissed or void violations. Open and ticketed
    /// violations keep theirs. At most a few thousand of each per call;
    /// call again while it reports any.
    pub fn erase_plates(
        &self,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Erased, StoreError> {
        let cut = to_ms(cutoff);
        self.write(|conn| {
            let key = plate_key(conn, now)?;
            let mut erased = Erased::default();
            let rows: Vec<Readable> = diesel::sql_query(for_backend(conn, SESSIONS))
                .bind::<BigInt, _>(cut)
                .bind::<BigInt, _>(ERASE_CHUNK)
                .load(conn)?;
            for r in rows {
                let id: i64 = r.id.parse().map_err(|_| corrupt("session", &r.id))?;
                erased.sessions += diesel::update(parking_sessions::table.find(id))
                    .set(parking_sessions::plate.eq(pseudonym(&key, &r.plate)))
                    .execute(conn)?;
            }
            let rows: Vec<ReadableEvent> = diesel::sql_query(for_backend(conn, EVENTS))
                .bind::<BigInt, _>(cut)
                .bind::<BigInt, _>(cut)
                .bind::<BigInt, _>(ERASE_CHUNK)
                .load(conn)?;
            for r in rows {
                let event = events::table
                    .filter(events::seq.eq(r.seq))
                    .filter(events::observed_at_ms.eq(r.observed_at_ms));
                erased.events += diesel::update(event)
                    .set(events::plate.eq(pseudonym(&key, &r.plate)))
                    .execute(conn)?;
            }
            let rows: Vec<Readable> = diesel::sql_query(for_backend(conn, VIOLATIONS))
                .bind::<BigInt, _>(cut)
                .bind::<BigInt, _>(ERASE_CHUNK)
                .load(conn)?;
            for r in rows {
                erased.violations += diesel::update(violations::table.find(&r.id))
                    .set(violations::plate.eq(pseudonym(&key, &r.plate)))
                    .execute(conn)?;
            }
            Ok(erased)
        })
    }
}

fn corrupt(what: &str, id: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} id {id:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::domain::events::{Event, EventType};
    use crate::domain::ids::{BayId, DeviceId, EventId, RoadId};
    use crate::store::EventRecord;
    use crate::store::schema::{bays, roads};

    fn at(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap() + Duration::hours(h)
    }

    fn plates(conn: &mut Db, sql: &str) -> Vec<(String, String)> {
        diesel::sql_query(sql)
            .load::<Readable>(conn)
            .unwrap()
            .into_iter()
            .map(|r| (r.id, r.plate))
            .collect()
    }

    /// On SQLite, and on PostgreSQL too when `KERBSIDE_TEST_DATABASE` asks
    /// (there `events` is partitioned and its keys kept apart).
    #[test]
    fn plates_past_their_time_become_pseudonyms_and_nothing_else_changes() {
        for t in crate::store::retention::testing::each() {
            plates_past_their_time_become_pseudonyms(&t.store);
        }
    }

    fn plates_past_their_time_become_pseudonyms(store: &Store) {
        let conn = &mut store.conn().unwrap();
        diesel::insert_into(roads::table)
            .values((
                roads::road_id.eq("r"),
                roads::current_revision.eq(1),
                roads::created_at_ms.eq(0),
            ))
            .execute(conn)
            .unwrap();
        for b in ["gone", "here"] {
            diesel::insert_into(bays::table)
                .values((
                    bays::bay_id.eq(b),
                    bays::road_id.eq("r"),
                    bays::first_revision.eq(1),
                ))
                .execute(conn)
                .unwrap();
        }
        // Bay "gone": a car seen at 0h and 1h, gone at 2h. Bay "here": a
        // car seen at 0h that is still there.
        let session = |conn: &mut Db, bay: &str, end: Option<i64>, plate: &str| {
            diesel::insert_into(parking_sessions::table)
                .values((
                    parking_sessions::bay_id.eq(bay),
                    parking_sessions::road_id.eq("r"),
                    parking_sessions::started_at_ms.eq(to_ms(at(0))),
                    parking_sessions::ended_at_ms.eq(end),
                    parking_sessions::source.eq("observed"),
                    parking_sessions::plate.eq(plate),
                ))
                .execute(conn)
                .unwrap();
        };
        session(conn, "gone", Some(to_ms(at(2))), "A1");
        session(conn, "here", None, "B2");
        for (id, bay, h, plate) in [
            ("1", "gone", 0, "A1"),
            ("2", "gone", 1, "A1"),
            ("3", "here", 0, "B2"),
        ] {
            // As ingest stores them: on PostgreSQL the key goes to
            // `event_keys` in the same statement.
            let rec = EventRecord {
                event: Event {
                    device_id: DeviceId::parse("hh").unwrap(),
                    event_id: EventId::parse(id).unwrap(),
                    kind: EventType::Observed,
                    observed_at: at(h),
                    bay_id: Some(BayId::parse(bay).unwrap()),
                    position: None,
                    plate: Some(plate.to_owned()),
                    category: None,
                    note: None,
                },
                bay_id: Some(BayId::parse(bay).unwrap()),
                road_id: Some(RoadId::parse("r").unwrap()),
                place: None,
                received_at: at(h),
            };
            assert!(super::super::events::insert_event(conn, &rec).unwrap());
        }
        for (id, status, plate) in [
            ("v-d", "dismissed", "C3"),
            ("v-t", "ticketed", "D4"),
            ("v-o", "open", "E5"),
        ] {
            diesel::insert_into(violations::table)
                .values((
                    violations::violation_id.eq(id),
                    violations::kind.eq("outside_bay"),
                    violations::road_id.eq("r"),
                    violations::plate.eq(plate),
                    violations::started_at_ms.eq(to_ms(at(0))),
                    violations::detected_at_ms.eq(to_ms(at(0))),
                    violations::status.eq(status),
                    violations::evidence.eq("[]"),
                    violations::updated_at_ms.eq(to_ms(at(1))),
                ))
                .execute(conn)
                .unwrap();
        }

        // Within the day, nothing changes.
        assert_eq!(
            store
                .erase_plates(at(2) - Duration::hours(1), at(2))
                .unwrap(),
            Erased::default()
        );
        // A day after the car left.
        let erased = store.erase_plates(at(3), at(27)).unwrap();
        assert_eq!(
            erased,
            Erased {
                sessions: 1,
                events: 2,
                violations: 1
            }
        );
        assert_eq!(
            store.erase_plates(at(3), at(27)).unwrap().total(),
            0,
            "done in one pass"
        );

        let key = plate_key(conn, at(27)).unwrap();
        let (a1, c3) = (pseudonym(&key, "A1"), pseudonym(&key, "C3"));
        let mut sessions = plates(
            conn,
            "SELECT bay_id AS id, plate FROM parking_sessions ORDER BY bay_id",
        );
        sessions.sort();
        assert_eq!(
            sessions,
            [("gone".into(), a1.clone()), ("here".into(), "B2".into())]
        );
        let events = plates(
            conn,
            "SELECT event_id AS id, plate FROM events ORDER BY event_id",
        );
        assert_eq!(
            events,
            [
                ("1".into(), a1.clone()),
                ("2".into(), a1.clone()),
                ("3".into(), "B2".into())
            ],
            "one car, one pseudonym; the car still there keeps its plate"
        );
        let violations = plates(
            conn,
            "SELECT violation_id AS id, plate FROM violations ORDER BY violation_id",
        );
        assert_eq!(
            violations,
            [
                ("v-d".into(), c3),
                ("v-o".into(), "E5".into()),
                ("v-t".into(), "D4".into())
            ]
        );
        // The key is the deployment's: asked again, it is the same.
        assert_eq!(plate_key(conn, at(30)).unwrap(), key);
    }
}
