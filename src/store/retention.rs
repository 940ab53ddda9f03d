//! Years of history, bounded: the monthly partitions of `events` on
//! PostgreSQL, and the retention job that forgets events and rejections
//! older than `--keep-history-days`.
//!
//! On PostgreSQL `events` is partitioned by month of `observed_at_ms`
//! (UTC): `events_YYYY_MM` holds `[first instant of the month, first of
//! the next)`, and `events_default` whatever no month holds yet, so that no
//! insert ever fails for want of a partition. [`ensure_partitions`] makes
//! the months ahead of need; the job drops whole months once they are past
//! the cutoff (a catalogue change, however many rows), and deletes by row
//! only what the default partition, `event_keys` and `rejections` hold. On
//! SQLite `events` is one table, and the job deletes old rows in chunks of
//! [`CHUNK`], one short write transaction each, so that ingest never waits
//! long for the writer.
//!
//! Parking sessions and violations are kept whatever their age: they are
//! the record that fines rest on, and they are small beside the events.
//! So are the history roll-ups (`occupancy_hours`, see `store::history`):
//! they summarise the forgotten events, and are never rebuilt that far
//! back.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::sqlite::SqliteConnection;

use super::db::{Db, write_transaction};
use super::{Store, StoreError, to_ms};
use crate::clock::Clock;

/// The advisory lock (transaction level) every change of the partitions
/// takes, so that two instances never create or drop the same month at
/// once (7260361 is the migration lock).
pub const PARTITION_LOCK: i64 = 7_260_363;

/// Rows deleted by one transaction at most.
pub const CHUNK: i64 = 10_000;

/// How far back the partitions made at open reach, days: the default
/// `--retention-days`. The job's first pass, at start, reaches back by the
/// configured window; rows of a month that had no partition yet waited in
/// the default partition, and are moved into the month's when it is made.
pub const OPEN_LOOKBACK_DAYS: i64 = 30;

/// Months ahead of the current one that always have a partition.
pub const MONTHS_AHEAD: u32 = 2;

/// A calendar month, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
}

impl Month {
    /// The month holding `t`.
    pub fn of(t: DateTime<Utc>) -> Month {
        Month {
            year: t.year(),
            month: t.month(),
        }
    }

    /// The month after this one.
    pub fn next(self) -> Month {
        if self.month >= 12 {
            Month {
                year: self.year.saturating_add(1),
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// Its first instant, ms since the Unix epoch; `None` out of range.
    pub fn start_ms(self) -> Option<i64> {
        NaiveDate::from_ymd_opt(self.year, self.month, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp_millis())
    }

    /// `[start, end)` in ms: the values its partition holds.
    pub fn bounds_ms(self) -> Option<(i64, i64)> {
        Some((self.start_ms()?, self.next().start_ms()?))
    }

    /// Its partition's name, `events_YYYY_MM`; `None` for a year that has
    /// not four digits (no such partition is ever made).
    pub fn partition(self) -> Option<String> {
        (1000..=9999)
            .contains(&self.year)
            .then(|| format!("events_{:04}_{:02}", self.year, self.month))
    }

    /// The month of a partition named by [`Month::partition`]; `None` for
    /// any other name (the default partition, a table not of kerbside's).
    pub fn of_partition(name: &str) -> Option<Month> {
        let rest = name.strip_prefix("events_")?;
        let (y, m) = rest.split_once('_')?;
        if y.len() != 4 || m.len() != 2 || !(y.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let month = Month {
            year: y.parse().ok()?,
            month: m.parse().ok()?,
        };
        ((1..=12).contains(&month.month) && month.year >= 1000).then_some(month)
    }
}

/// What one pass of [`Store::retain`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Retained {
    /// Events older than this (ms since the Unix epoch) are forgotten.
    pub cutoff_ms: i64,
    /// Month partitions made (PostgreSQL).
    pub partitions_created: Vec<String>,
    /// Month partitions dropped whole (PostgreSQL).
    pub partitions_dropped: Vec<String>,
    /// Rows moved from the default partition into a month made for them.
    pub events_moved: u64,
    /// Events deleted row by row (SQLite; PostgreSQL's default partition).
    pub events_deleted: u64,
    /// Idempotency keys deleted (PostgreSQL's `event_keys`).
    pub keys_deleted: u64,
    /// Rejections deleted.
    pub rejections_deleted: u64,
}

impl Retained {
    fn did_something(&self) -> bool {
        !self.partitions_created.is_empty()
            || !self.partitions_dropped.is_empty()
            || self.events_moved + self.events_deleted + self.keys_deleted + self.rejections_deleted
                > 0
    }
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Span {
    #[diesel(sql_type = Nullable<BigInt>)]
    lo: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    hi: Option<i64>,
}

#[derive(QueryableByName)]
struct MaybeName {
    #[diesel(sql_type = Nullable<Text>)]
    name: Option<String>,
}

/// The month partitions of `events` (not the default one), by name.
fn partitions(c: &mut PgConnection) -> Result<Vec<String>, StoreError> {
    let rows: Vec<Name> = diesel::sql_query(
        "SELECT c.relname::text AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'events'::regclass ORDER BY 1",
    )
    .load(c)?;
    Ok(rows
        .into_iter()
        .map(|r| r.name)
        .filter(|n| Month::of_partition(n).is_some())
        .collect())
}

/// Makes the month partitions of `events` from the month of `from` through
/// that of `through` (at most 240 months), each in a transaction of its
/// own under [`PARTITION_LOCK`], so that two instances doing this at once
/// make each month once. A month that has one already is left alone.
/// Rows of a new month already in the default partition are moved into it
/// (in the same transaction, so no reader ever misses them), rather than
/// the month being skipped: the default partition stays empty in steady
/// state, and every month is dropped whole when its time comes. The new
/// month is made as a plain table and attached, which locks the parent
/// `events` only against other schema changes: ingest goes on meanwhile,
/// except into the default partition, which is locked while it is checked
/// (it is normally empty). On SQLite this does nothing.
///
/// Returns the partitions made and the rows moved.
pub fn ensure_partitions(
    conn: &mut Db,
    from: DateTime<Utc>,
    through: DateTime<Utc>,
) -> Result<(Vec<String>, u64), StoreError> {
    let mut made = Vec::new();
    let mut moved = 0;
    if matches!(conn, Db::Sqlite(_)) {
        return Ok((made, moved));
    }
    let (mut month, last) = (Month::of(from), Month::of(through));
    for _ in 0..240 {
        if month > last {
            break;
        }
        if let (Some(name), Some((start, end))) = (month.partition(), month.bounds_ms()) {
            let done = write_transaction(conn, |conn| {
                let Db::Pg(c) = conn else { return Ok(None) };
                diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                    .bind::<BigInt, _>(PARTITION_LOCK)
                    .execute(c)?;
                if partitions(c)?.contains(&name) {
                    return Ok(None);
                }
                // The name is ours (`events_` and digits): safe to splice.
                diesel::sql_query("LOCK TABLE events_default IN ACCESS EXCLUSIVE MODE")
                    .execute(c)?;
                diesel::sql_query(format!(
                    "CREATE TABLE {name} (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
                ))
                .execute(c)?;
                let rows = diesel::sql_query(format!(
                    "WITH moved AS (DELETE FROM events_default \
                     WHERE observed_at_ms >= $1 AND observed_at_ms < $2 RETURNING *) \
                     INSERT INTO {name} SELECT * FROM moved"
                ))
                .bind::<BigInt, _>(start)
                .bind::<BigInt, _>(end)
                .execute(c)?;
                diesel::sql_query(format!(
                    "ALTER TABLE events ATTACH PARTITION {name} FOR VALUES FROM ({start}) TO ({end})"
                ))
                .execute(c)?;
                Ok(Some(rows as u64))
            })?;
            if let Some(rows) = done {
                made.push(name);
                moved += rows;
            }
        }
        month = month.next();
    }
    Ok((made, moved))
}

/// The partitions a store needs at open: from the month [`OPEN_LOOKBACK_DAYS`]
/// before `now` through [`MONTHS_AHEAD`] months after it. A failure is
/// logged, not returned: the default partition holds what comes meanwhile,
/// and the retention job tries again.
pub(super) fn ensure_at_open(conn: &mut Db, now: DateTime<Utc>) {
    let lookback = now - Duration::days(OPEN_LOOKBACK_DAYS);
    match ensure_partitions(conn, lookback, months_ahead(now)) {
        Ok((made, moved)) if !made.is_empty() => {
            tracing::info!(partitions = ?made, moved, "made the months' partitions of events")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot make the months' partitions of events; \
            the default partition takes their events until the retention job can"),
    }
}

/// An instant in the month [`MONTHS_AHEAD`] months after that of `now`.
fn months_ahead(now: DateTime<Utc>) -> DateTime<Utc> {
    let mut m = Month::of(now);
    for _ in 0..MONTHS_AHEAD {
        m = m.next();
    }
    m.start_ms()
        .and_then(DateTime::from_timestamp_millis)
        .unwrap_or(now)
}

/// Deletes, in transactions of at most [`CHUNK`] rows, what `sql` (a
/// PostgreSQL DELETE taking the cutoff as `$1` and the chunk as `$2`)
/// selects, until a chunk comes back short.
fn delete_chunked_pg(conn: &mut Db, sql: &str, cutoff_ms: i64) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let n = write_transaction(conn, |conn| match conn {
            Db::Pg(c) => Ok(diesel::sql_query(sql)
                .bind::<BigInt, _>(cutoff_ms)
                .bind::<BigInt, _>(CHUNK)
                .execute(c)?),
            Db::Sqlite(_) => Ok(0),
        })?;
        total += n as u64;
        if (n as i64) < CHUNK {
            return Ok(total);
        }
    }
}

/// The PostgreSQL pass: months made ahead, months wholly past the cutoff
/// dropped, what is older in the default partition, `event_keys` and
/// `rejections` deleted row by row. The events of the month holding the
/// cutoff stay until the month is wholly past it: PostgreSQL keeps up to a
/// month more than asked, and never deletes events row by row from a
/// month's partition.
fn retain_pg(
    conn: &mut Db,
    now: DateTime<Utc>,
    retention: Duration,
    out: &mut Retained,
) -> Result<(), StoreError> {
    let (made, moved) = ensure_partitions(conn, now - retention, months_ahead(now))?;
    out.partitions_created = made;
    out.events_moved = moved;
    let Db::Pg(c) = &mut *conn else {
        return Ok(());
    };
    for name in partitions(c)? {
        let Some((_, end)) = Month::of_partition(&name).and_then(Month::bounds_ms) else {
            continue;
        };
        if end > out.cutoff_ms {
            continue;
        }
        let dropped = write_transaction(conn, |conn| {
            let Db::Pg(c) = conn else { return Ok(false) };
            diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                .bind::<BigInt, _>(PARTITION_LOCK)
                .execute(c)?;
            // Another instance may have dropped it while this one waited.
            if !partitions(c)?.contains(&name) {
                return Ok(false);
            }
            diesel::sql_query(format!("ALTER TABLE events DETACH PARTITION {name}")).execute(c)?;
            diesel::sql_query(format!("DROP TABLE {name}")).execute(c)?;
            Ok(true)
        })?;
        if dropped {
            out.partitions_dropped.push(name);
        }
    }
    out.events_deleted += delete_chunked_pg(
        conn,
        "DELETE FROM events_default WHERE ctid = ANY (ARRAY(SELECT ctid FROM events_default \
         WHERE observed_at_ms < $1 LIMIT $2))",
        out.cutoff_ms,
    )?;
    // What the default partition still holds is of months that had no
    // partition when it came (older than the months made at open, say):
    // make them, which moves it there.
    let Db::Pg(c) = &mut *conn else {
        return Ok(());
    };
    let span: Span = diesel::sql_query(
        "SELECT min(observed_at_ms) AS lo, max(observed_at_ms) AS hi FROM events_default",
    )
    .get_result(c)?;
    if let (Some(lo), Some(hi)) = (
        span.lo.and_then(DateTime::from_timestamp_millis),
        span.hi.and_then(DateTime::from_timestamp_millis),
    ) {
        let (made, moved) = ensure_partitions(conn, lo, hi)?;
        out.partitions_created.extend(made);
        out.events_moved += moved;
    }
    out.keys_deleted += delete_chunked_pg(
        conn,
        "DELETE FROM event_keys WHERE ctid = ANY (ARRAY(SELECT ctid FROM event_keys \
         WHERE observed_at_ms < $1 LIMIT $2))",
        out.cutoff_ms,
    )?;
    out.rejections_deleted += delete_chunked_pg(
        conn,
        "DELETE FROM rejections WHERE ctid = ANY (ARRAY(SELECT ctid FROM rejections \
         WHERE received_at_ms < $1 LIMIT $2))",
        out.cutoff_ms,
    )?;
    Ok(())
}

/// The bays a transaction of the SQLite pass visits at most.
const BAYS_PER_TRANSACTION: usize = 1_000;

/// SQLite's events older than the cutoff, bay by bay through the
/// `(bay_id, observed_at_ms)` index (there is no index on time alone, and
/// one would cost every insert): the events without a bay first, then each
/// bay in id order, found by seeking the index past the previous one. Each
/// transaction deletes at most [`CHUNK`] rows and visits at most
/// [`BAYS_PER_TRANSACTION`] bays, so it holds the writer for milliseconds.
fn delete_events_sqlite(conn: &mut Db, cutoff_ms: i64) -> Result<u64, StoreError> {
    fn delete_some(
        c: &mut SqliteConnection,
        bay: Option<&str>,
        cutoff_ms: i64,
        limit: i64,
    ) -> Result<i64, StoreError> {
        Ok(diesel::sql_query(
            "DELETE FROM events WHERE seq IN (SELECT seq FROM events \
             WHERE bay_id IS ? AND observed_at_ms < ? LIMIT ?)",
        )
        .bind::<Nullable<Text>, _>(bay)
        .bind::<BigInt, _>(cutoff_ms)
        .bind::<BigInt, _>(limit)
        .execute(c)? as i64)
    }
    // Where the walk is: `None` before the bay-less events, then the last
    // bay finished; `done` past the last.
    let mut at: Option<Option<String>> = None;
    let mut total = 0u64;
    loop {
        let (deleted, next, done) = write_transaction(conn, |conn| {
            let Db::Sqlite(c) = conn else {
                return Ok((0, None, true));
            };
            let mut deleted = 0;
            let mut at = at.clone();
            for _ in 0..BAYS_PER_TRANSACTION {
                let bay = match &at {
                    None => None,
                    Some(after) => {
                        let next: MaybeName = diesel::sql_query(
                            "SELECT min(bay_id) AS name FROM events WHERE bay_id > ?",
                        )
                        .bind::<Text, _>(after.as_deref().unwrap_or(""))
                        .get_result(c)?;
                        match next.name {
                            Some(b) => Some(b),
                            None => return Ok((deleted, at, true)),
                        }
                    }
                };
                let room = CHUNK - deleted;
                let n = delete_some(c, bay.as_deref(), cutoff_ms, room)?;
                deleted += n;
                if n == room {
                    // This bay may have more: the next transaction goes on
                    // with it.
                    return Ok((deleted, at, false));
                }
                at = Some(bay);
            }
            Ok((deleted, at, false))
        })?;
        total += deleted as u64;
        at = next;
        if done {
            return Ok(total);
        }
    }
}

/// How far a rejection's `received_at_ms` may run behind that of a
/// rejection stored before it, ms (an hour: both are stamped when the
/// message arrives and stored within seconds).
const REJECTION_DISORDER_MS: i64 = 3_600_000;

#[derive(QueryableByName)]
struct SeqTime {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = BigInt)]
    at_ms: i64,
}

/// SQLite's rejections older than the cutoff. They are stored in the order
/// they arrive, so the walk goes by `seq` (the rowid: no index needed) a
/// page of [`CHUNK`] at a time, deleting the old rows of each page in a
/// transaction of its own, and stops at the first page that reaches past
/// the cutoff by [`REJECTION_DISORDER_MS`].
fn delete_rejections_sqlite(conn: &mut Db, cutoff_ms: i64) -> Result<u64, StoreError> {
    let mut after = i64::MIN;
    let mut total = 0u64;
    loop {
        let Db::Sqlite(c) = &mut *conn else {
            return Ok(total);
        };
        let page: Vec<SeqTime> = diesel::sql_query(
            "SELECT seq, received_at_ms AS at_ms FROM rejections WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind::<BigInt, _>(after)
        .bind::<BigInt, _>(CHUNK)
        .load(c)?;
        let (Some(first), Some(last)) = (page.first(), page.last()) else {
            return Ok(total);
        };
        let (lo, hi) = (first.seq, last.seq);
        let newest = page.iter().map(|r| r.at_ms).max().unwrap_or(i64::MAX);
        if page.iter().any(|r| r.at_ms < cutoff_ms) {
            total += write_transaction(conn, |conn| match conn {
                Db::Sqlite(c) => Ok(diesel::sql_query(
                    "DELETE FROM rejections WHERE seq >= ? AND seq <= ? AND received_at_ms < ?",
                )
                .bind::<BigInt, _>(lo)
                .bind::<BigInt, _>(hi)
                .bind::<BigInt, _>(cutoff_ms)
                .execute(c)?),
                Db::Pg(_) => Ok(0),
            })? as u64;
        }
        if newest >= cutoff_ms.saturating_add(REJECTION_DISORDER_MS) || (page.len() as i64) < CHUNK
        {
            return Ok(total);
        }
        after = hi;
    }
}

impl Store {
    /// One pass of the retention job at `now` (blocking): forgets events,
    /// their idempotency keys and rejections older than `now - keep_history`,
    /// and (PostgreSQL) makes the partitions from the month of `now -
    /// retention` through [`MONTHS_AHEAD`] months ahead. Parking sessions
    /// and violations are kept: they are the record fines rest on.
    ///
    /// On PostgreSQL the events of the month holding the cutoff stay until
    /// the month is wholly past it (whole months are dropped, never rows of
    /// a month's partition), so up to a month more is kept.
    ///
    /// The history kept is never shorter than `retention` (the window in
    /// which events are accepted): an event's key must outlive the time in
    /// which its redelivery could still be accepted, or it would be stored
    /// twice.
    pub fn retain(
        &self,
        now: DateTime<Utc>,
        keep_history: Duration,
        retention: Duration,
    ) -> Result<Retained, StoreError> {
        let mut out = Retained {
            cutoff_ms: to_ms(now - keep_history.max(retention)),
            ..Retained::default()
        };
        let conn = &mut *self.conn()?;
        match conn {
            Db::Pg(_) => retain_pg(conn, now, retention, &mut out)?,
            Db::Sqlite(_) => {
                out.events_deleted = delete_events_sqlite(conn, out.cutoff_ms)?;
                out.rejections_deleted = delete_rejections_sqlite(conn, out.cutoff_ms)?;
            }
        }
        Ok(out)
    }

    /// Runs [`Store::retain`] at start and then at each full hour of
    /// `clock`, on a thread of its own, logging what it forgot; a failed
    /// pass is logged and tried again the next hour. `keep_history` is
    /// `--keep-history-days`, `retention` `--retention-days`.
    pub fn spawn_retention(
        &self,
        keep_history: Duration,
        retention: Duration,
        clock: Arc<dyn Clock>,
    ) {
        if keep_history < retention {
            tracing::warn!(
                keep_history_days = keep_history.num_days(),
                retention_days = retention.num_days(),
                "--keep-history-days is shorter than --retention-days; history is kept for \
                 the retention window, so that no redelivered event is stored twice"
            );
        }
        let store = self.clone();
        let spawned = std::thread::Builder::new()
            .name("retention".into())
            .spawn(move || {
                loop {
                    let now = clock.now();
                    match store.retain(now, keep_history, retention) {
                        Ok(r) if r.did_something() => tracing::info!(
                            cutoff_ms = r.cutoff_ms,
                            partitions_created = ?r.partitions_created,
                            partitions_dropped = ?r.partitions_dropped,
                            events_moved = r.events_moved,
                            events_deleted = r.events_deleted,
                            keys_deleted = r.keys_deleted,
                            rejections_deleted = r.rejections_deleted,
                            "retention pass"
                        ),
                        Ok(_) => tracing::debug!("retention pass: nothing to do"),
                        Err(e) => tracing::warn!(error = %e, "retention pass failed; will retry"),
                    }
                    std::thread::sleep(until_next_hour(clock.now()));
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the retention thread");
        }
    }
}

/// How long from `now` to the next full hour (at least a second, at most
/// an hour).
fn until_next_hour(now: DateTime<Utc>) -> std::time::Duration {
    let hour = 3_600_000;
    let ms = hour - to_ms(now).rem_euclid(hour);
    std::time::Duration::from_millis(ms.clamp(1_000, hour) as u64)
}

#[cfg(test)]
pub(super) mod testing {
    //! Stores for unit tests: a SQLite file always, and a fresh PostgreSQL
    //! database too when `KERBSIDE_TEST_DATABASE` is `postgres` (the
    //! machine's server) or a `postgres://` URL of a server.

    use diesel::{Connection, PgConnection, RunQueryDsl};

    use crate::store::Store;

    /// A store and what to remove after it.
    pub struct TestStore {
        pub store: Store,
        pub name: &'static str,
        _dir: Option<tempfile::TempDir>,
        pg: Option<(String, String)>,
    }

    impl Drop for TestStore {
        fn drop(&mut self) {
            if let Some((server, db)) = &self.pg
                && let Ok(mut admin) = PgConnection::establish(server)
            {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                    .execute(&mut admin);
            }
        }
    }

    fn server() -> Option<String> {
        match std::env::var("KERBSIDE_TEST_DATABASE").ok()?.as_str() {
            "postgres" => Some("postgres://postgres@127.0.0.1:5432/test".to_owned()),
            v if v.starts_with("postgres://") || v.starts_with("postgresql://") => {
                Some(v.to_owned())
            }
            _ => None,
        }
    }

    /// A fresh SQLite store.
    pub fn sqlite() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(&format!("sqlite://{}", dir.path().join("k.db").display())).unwrap();
        TestStore {
            store,
            name: "sqlite",
            _dir: Some(dir),
            pg: None,
        }
    }

    /// A fresh PostgreSQL store, when the run asks for one.
    pub fn postgres() -> Option<TestStore> {
        let server = server()?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let db = format!("kerbside_unit_{}_{nanos}", std::process::id());
        let mut admin = PgConnection::establish(&server)
            .unwrap_or_else(|e| panic!("KERBSIDE_TEST_DATABASE: cannot reach {server}: {e}"));
        diesel::sql_query(format!("CREATE DATABASE {db}"))
            .execute(&mut admin)
            .unwrap();
        let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
        let store = Store::open(&format!("{base}/{db}")).unwrap();
        Some(TestStore {
            store,
            name: "postgres",
            _dir: None,
            pg: Some((server, db)),
        })
    }

    /// SQLite, and PostgreSQL when asked for.
    pub fn each() -> Vec<TestStore> {
        let mut v = vec![sqlite()];
        v.extend(postgres());
        v
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use diesel::sql_types::BigInt;

    use super::testing::{TestStore, each};
    use super::*;
    use crate::domain::events::{Event, EventType};
    use crate::domain::ids::{BayId, DeviceId, EventId};
    use crate::store::EventRecord;
    use crate::store::schema::rejections;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
    }

    fn event(id: &str, bay: Option<&str>, t: DateTime<Utc>) -> EventRecord {
        EventRecord {
            event: Event {
                device_id: DeviceId::parse("sensor-1").unwrap(),
                event_id: EventId::parse(id).unwrap(),
                kind: EventType::Heartbeat,
                observed_at: t,
                bay_id: bay.map(|b| BayId::parse(b).unwrap()),
                position: None,
                plate: None,
                category: None,
                note: None,
            },
            bay_id: bay.map(|b| BayId::parse(b).unwrap()),
            road_id: None,
            place: None,
            received_at: t,
        }
    }

    fn insert(t: &TestStore, rec: &EventRecord) -> bool {
        t.store
            .write(|conn| super::super::events::insert_event(conn, rec))
            .unwrap()
    }

    fn count(t: &TestStore, sql: &str) -> i64 {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        diesel::sql_query(sql)
            .get_result::<N>(&mut *t.store.conn().unwrap())
            .unwrap()
            .n
    }

    fn rejection(t: &TestStore, key: &str, at: DateTime<Utc>) {
        diesel::insert_into(rejections::table)
            .values((
                rejections::device_id.eq("sensor-1"),
                rejections::reason.eq("malformed"),
                rejections::detail.eq("test"),
                rejections::received_at_ms.eq(to_ms(at)),
                rejections::once_key.eq(key),
            ))
            .execute(&mut *t.store.conn().unwrap())
            .unwrap();
    }

    #[test]
    fn months_name_their_partitions_and_their_bounds() {
        let m = Month::of(at(2026, 12, 31));
        assert_eq!(m.partition().as_deref(), Some("events_2026_12"));
        assert_eq!(m.next().partition().as_deref(), Some("events_2027_01"));
        assert_eq!(
            m.bounds_ms(),
            Some((
                to_ms(Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()),
                to_ms(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap())
            ))
        );
        assert_eq!(Month::of_partition("events_2026_12"), Some(m));
        for bad in [
            "events_default",
            "events_2026_13",
            "events_2026_00",
            "events_26_12",
            "events_2026_1",
            "events_2026_12x",
            "events_+026_12",
            "event_keys",
            "",
        ] {
            assert_eq!(Month::of_partition(bad), None, "{bad}");
        }
        assert_eq!(
            Month {
                year: 99_999,
                month: 1
            }
            .partition(),
            None
        );
        assert_eq!(
            Month {
                year: 2026,
                month: 13
            }
            .start_ms(),
            None
        );
        assert_eq!(
            until_next_hour(Utc.with_ymd_and_hms(2026, 12, 4, 10, 59, 0).unwrap()),
            std::time::Duration::from_secs(60)
        );
        assert_eq!(
            until_next_hour(Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap()),
            std::time::Duration::from_secs(3600)
        );
    }

    /// Events and rejections past the cutoff go, the rest stay, on either
    /// backend; on PostgreSQL old months go whole, the month holding the
    /// cutoff stays whole, and new months are made. (Years long past, so
    /// that the months made at open, around the real now, are not these.)
    #[test]
    fn retention_forgets_what_is_older_than_the_cutoff_and_keeps_the_rest() {
        let now = at(2003, 3, 15);
        let keep = Duration::days(400);
        let cutoff = now - keep; // 2002-02-08 12:00
        for t in each() {
            let pg = t.name == "postgres";
            if pg {
                // A month wholly past the cutoff, and the one holding it.
                let conn = &mut *t.store.conn().unwrap();
                let (made, _) = ensure_partitions(conn, at(2001, 11, 1), at(2001, 11, 1)).unwrap();
                assert_eq!(made, ["events_2001_11"]);
                ensure_partitions(conn, at(2002, 2, 1), at(2002, 2, 1)).unwrap();
            }
            // Old: well before, and just before, the cutoff; new: from it
            // on. With and without a bay, several bays.
            let old = [
                event("o1", Some("b1"), at(2001, 11, 3)),
                event("o2", None, cutoff - Duration::hours(1)),
                event("o3", Some("b2"), cutoff - Duration::milliseconds(1)),
                event("o4", Some("b3"), at(2002, 1, 20)),
            ];
            let new = [
                event("n1", Some("b1"), cutoff),
                event("n2", None, cutoff + Duration::hours(1)),
                event("n3", Some("b2"), at(2002, 8, 1)),
                event("n4", Some("b3"), now - Duration::minutes(1)),
            ];
            for e in old.iter().chain(&new) {
                assert!(insert(&t, e), "{}: {} is new", t.name, e.event.event_id);
            }
            rejection(&t, "r-old", cutoff - Duration::days(3));
            rejection(&t, "r-new", cutoff + Duration::days(3));

            let r = t.store.retain(now, keep, Duration::days(30)).unwrap();
            assert_eq!(r.cutoff_ms, to_ms(cutoff));
            let left: Vec<String> = {
                #[derive(QueryableByName)]
                struct Id {
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    event_id: String,
                }
                diesel::sql_query("SELECT event_id FROM events ORDER BY event_id")
                    .load::<Id>(&mut *t.store.conn().unwrap())
                    .unwrap()
                    .into_iter()
                    .map(|r| r.event_id)
                    .collect()
            };
            assert_eq!(r.rejections_deleted, 1, "{}", t.name);
            assert_eq!(count(&t, "SELECT count(*) AS n FROM rejections"), 1);
            if pg {
                // o2 and o3 are in February 2002, which the cutoff is in.
                assert_eq!(left, ["n1", "n2", "n3", "n4", "o2", "o3"]);
                assert_eq!(r.partitions_dropped, ["events_2001_11"]);
                assert_eq!(r.events_deleted, 1, "o4, from the default partition");
                // Every old key went, whichever partition held its event.
                assert_eq!(r.keys_deleted, 4);
                assert_eq!(count(&t, "SELECT count(*) AS n FROM event_keys"), 4);
                let names = partitions(match &mut *t.store.conn().unwrap() {
                    Db::Pg(c) => c,
                    Db::Sqlite(_) => unreachable!(),
                })
                .unwrap();
                for m in [
                    "events_2002_02",
                    "events_2002_08",
                    "events_2003_02",
                    "events_2003_03",
                    "events_2003_05",
                ] {
                    assert!(names.iter().any(|n| n == m), "{m} in {names:?}");
                }
                assert!(!names.iter().any(|n| n == "events_2001_11"), "{names:?}");
                let attached = count(
                    &t,
                    "SELECT count(*) AS n FROM pg_inherits WHERE inhparent = 'events'::regclass",
                );
                assert_eq!(attached as usize, names.len() + 1, "and the default");
                // n3 (August 2002) came before its month had a partition,
                // so into the default one; the pass made the month and
                // moved it there.
                assert_eq!(count(&t, "SELECT count(*) AS n FROM events_default"), 0);
                assert_eq!(count(&t, "SELECT count(*) AS n FROM events_2002_08"), 1);
                assert!(r.events_moved >= 1);
            } else {
                assert_eq!(left, ["n1", "n2", "n3", "n4"]);
                assert_eq!(r.events_deleted, 4);
            }
            // A second pass finds nothing left to do.
            let again = t.store.retain(now, keep, Duration::days(30)).unwrap();
            assert!(!again.did_something(), "{}: {again:?}", t.name);
        }
    }

    /// A repeated (device_id, event_id) is a duplicate, within a month,
    /// across months, and when the first copy sits in the default
    /// partition and is then moved into a month of its own.
    #[test]
    fn a_repeated_event_is_a_duplicate_whatever_partition_holds_it() {
        for t in each() {
            let first = event("e1", Some("b1"), at(2011, 5, 2));
            assert!(insert(&t, &first), "{}", t.name);
            assert!(!insert(&t, &first), "{}: the same again", t.name);
            // Same key, another instant (another month): still the same event.
            let moved = event("e1", Some("b1"), at(2010, 12, 2));
            assert!(!insert(&t, &moved), "{}", t.name);
            if let Db::Pg(_) = &*t.store.conn().unwrap() {
                assert_eq!(count(&t, "SELECT count(*) AS n FROM events_default"), 1);
                let conn = &mut *t.store.conn().unwrap();
                let (made, moved) =
                    ensure_partitions(conn, at(2011, 5, 1), at(2011, 5, 1)).unwrap();
                assert_eq!((made, moved), (vec!["events_2011_05".to_owned()], 1));
                assert_eq!(count(&t, "SELECT count(*) AS n FROM events_default"), 0);
                // Made already: nothing to do.
                let again = ensure_partitions(conn, at(2011, 5, 1), at(2011, 5, 1)).unwrap();
                assert_eq!(again, (vec![], 0));
            }
            assert!(!insert(&t, &first), "{}: after the move", t.name);
            assert_eq!(
                count(&t, "SELECT count(*) AS n FROM events"),
                1,
                "{}",
                t.name
            );
        }
    }

    /// Two instances making the same months at once make each once.
    #[test]
    fn concurrent_ensures_make_each_month_once() {
        let Some(t) = super::testing::postgres() else {
            return;
        };
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let store = t.store.clone();
                std::thread::spawn(move || {
                    ensure_partitions(&mut store.conn().unwrap(), at(2040, 1, 1), at(2040, 12, 1))
                        .unwrap()
                        .0
                })
            })
            .collect();
        let mut made: Vec<String> = threads
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        made.sort();
        let expected: Vec<String> = (1..=12).map(|m| format!("events_2040_{m:02}")).collect();
        assert_eq!(made, expected);
    }

    /// More old rows than a chunk: several transactions, all gone.
    #[test]
    fn sqlite_deletes_in_chunks() {
        let t = super::testing::sqlite();
        let now = at(2027, 3, 15);
        let old = now - Duration::days(500);
        {
            let conn = &mut *t.store.conn().unwrap();
            diesel::sql_query(
                "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 25000) \
                 INSERT INTO events (device_id, event_id, event_type, observed_at_ms, \
                 received_at_ms, bay_id) SELECT 'd', 'e' || x, 'heartbeat', ?, ?, \
                 CASE WHEN x % 3 = 0 THEN NULL ELSE 'b' || (x % 7) END FROM n",
            )
            .bind::<BigInt, _>(to_ms(old))
            .bind::<BigInt, _>(to_ms(old))
            .execute(conn)
            .unwrap();
            diesel::sql_query(
                "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 25000) \
                 INSERT INTO rejections (device_id, reason, detail, received_at_ms, once_key) \
                 SELECT 'd', 'malformed', '', ? + x, 'k' || x FROM n",
            )
            .bind::<BigInt, _>(to_ms(old))
            .execute(conn)
            .unwrap();
        }
        insert(&t, &event("kept", Some("b1"), now));
        rejection(&t, "kept", now);
        let r = t
            .store
            .retain(now, Duration::days(400), Duration::days(30))
            .unwrap();
        assert_eq!((r.events_deleted, r.rejections_deleted), (25_000, 25_000));
        assert_eq!(count(&t, "SELECT count(*) AS n FROM events"), 1);
        assert_eq!(count(&t, "SELECT count(*) AS n FROM rejections"), 1);
    }
}
