//! Many instances on one PostgreSQL: each bay's writes serialised by a row
//! lock, change notices sent inside the writing transaction, and a lease
//! that lets one instance at a time lead the chores that must not run
//! twice (the overstay sweep, plate erasure, the retained-state publisher).
//!
//! On SQLite there is one writer (`BEGIN IMMEDIATE`) and one process, so
//! locks and notices are no-ops and the process always leads.

use std::collections::BTreeSet;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text};

use super::db::{Backend, Db};
use super::schema::{bays, roads};
use super::{Store, StoreError};

/// The channel of bay-state changes: the payload is bay ids, space-separated.
pub const BAYS_CHANNEL: &str = "kerbside_bays";
/// The channel of layout revisions: the payload is a road id.
pub const LAYOUTS_CHANNEL: &str = "kerbside_layouts";

/// The advisory-lock key of the lease (session level: it is held as long
/// as the holder's connection lives, and freed the moment it dies).
const LEASE_KEY: i64 = 7_260_364;

/// Most payload bytes per notice (PostgreSQL's cap is 8,000).
const NOTICE_BYTES: usize = 7_800;

/// Bays locked per statement.
const LOCK_CHUNK: usize = 1000;

/// Locks these bays' rows (PostgreSQL: `SELECT ... FOR UPDATE`) for the rest
/// of the transaction, in id order across statements, so that two writers
/// of overlapping bays queue rather than deadlock. Everything that writes a
/// bay's state, sessions or overstays takes this first.
pub(super) fn lock_bays<'a>(
    conn: &mut Db,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<(), StoreError> {
    let Db::Pg(pg) = conn else { return Ok(()) };
    let sorted: Vec<&str> = ids
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for chunk in sorted.chunks(LOCK_CHUNK) {
        bays::table
            .filter(bays::bay_id.eq_any(chunk))
            .order(bays::bay_id)
            .select(bays::bay_id)
            .for_update()
            .load::<String>(pg)?;
    }
    Ok(())
}

/// Locks a road's row for a layout publish (PostgreSQL), creating it at
/// revision 0 if it is new, so that two publishes of one road queue and
/// number their revisions one after the other.
pub(super) fn lock_road(conn: &mut Db, road_id: &str, now_ms: i64) -> Result<(), StoreError> {
    let Db::Pg(pg) = conn else { return Ok(()) };
    diesel::insert_into(roads::table)
        .values((
            roads::road_id.eq(road_id),
            roads::current_revision.eq(0_i64),
            roads::created_at_ms.eq(now_ms),
        ))
        .on_conflict_do_nothing()
        .execute(pg)?;
    roads::table
        .find(road_id)
        .select(roads::road_id)
        .for_update()
        .load::<String>(pg)?;
    // Every bay of the road, in id order, before the publish touches any:
    // ingest takes bay locks in the same order.
    bays::table
        .filter(bays::road_id.eq(road_id))
        .order(bays::bay_id)
        .select(bays::bay_id)
        .for_update()
        .load::<String>(pg)?;
    Ok(())
}

/// The advisory-lock key that serialises case writes (transaction level).
const CASES_KEY: i64 = 7_260_365;

/// Serialises every write of cases for the rest of the transaction
/// (PostgreSQL; SQLite has one writer anyway), so that two instances
/// filing reports of one problem at once still find each other's case.
/// Taken after any bay locks, never before: ingest locks bays first.
pub(super) fn lock_cases(conn: &mut Db) -> Result<(), StoreError> {
    let Db::Pg(pg) = conn else { return Ok(()) };
    diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
        .bind::<diesel::sql_types::BigInt, _>(CASES_KEY)
        .execute(pg)?;
    Ok(())
}

/// Sends `ids` on `channel` (PostgreSQL), as few notices as fit; delivered
/// to listeners when, and only if, the transaction commits.
pub(super) fn notify<'a>(
    conn: &mut Db,
    channel: &str,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<(), StoreError> {
    let Db::Pg(pg) = conn else { return Ok(()) };
    let mut payload = String::new();
    let send = |payload: &mut String, pg: &mut PgConnection| -> Result<(), StoreError> {
        if !payload.is_empty() {
            diesel::sql_query("SELECT pg_notify($1, $2)")
                .bind::<Text, _>(channel)
                .bind::<Text, _>(&*payload)
                .execute(pg)?;
            payload.clear();
        }
        Ok(())
    };
    for id in ids {
        if payload.len() + id.len() + 1 > NOTICE_BYTES {
            send(&mut payload, pg)?;
        }
        if !payload.is_empty() {
            payload.push(' ');
        }
        payload.push_str(id);
    }
    send(&mut payload, pg)
}

/// What other writers changed, as told by their notices.
#[derive(Debug, Default)]
pub struct Notices {
    /// Bays whose state changed.
    pub bays: BTreeSet<String>,
    /// Roads with a new layout revision.
    pub roads: BTreeSet<String>,
}

impl Notices {
    pub fn is_empty(&self) -> bool {
        self.bays.is_empty() && self.roads.is_empty()
    }
}

/// A PostgreSQL connection of its own, outside the pool: it listens for
/// change notices and may hold the lease.
pub struct Watcher {
    conn: PgConnection,
    leading: bool,
}

#[derive(QueryableByName)]
struct Taken {
    #[diesel(sql_type = Bool)]
    taken: bool,
}

impl Store {
    /// A watcher listening on both channels; `None` on SQLite, where there
    /// is no one else to hear from.
    pub fn watcher(&self) -> Result<Option<Watcher>, StoreError> {
        let Some(url) = &self.pg_url else {
            return Ok(None);
        };
        let manager = super::db::Manager {
            backend: Backend::Postgres,
            target: url.to_string(),
            setup: super::POSTGRES_SETUP.to_owned(),
        };
        let db = manager.establish().map_err(|e| StoreError::Open {
            path: super::redact_url(url),
            message: e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        })?;
        let Db::Pg(mut conn) = db else {
            return Ok(None);
        };
        conn.batch_execute(&format!("LISTEN {BAYS_CHANNEL}; LISTEN {LAYOUTS_CHANNEL};"))?;
        Ok(Some(Watcher {
            conn,
            leading: false,
        }))
    }
}

impl Watcher {
    /// Takes the lease if no one holds it; `true` while this watcher holds
    /// it (until its connection is lost).
    pub fn try_lead(&mut self) -> Result<bool, StoreError> {
        if !self.leading {
            let row: Taken = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS taken")
                .bind::<BigInt, _>(LEASE_KEY)
                .get_result(&mut self.conn)?;
            self.leading = row.taken;
        }
        Ok(self.leading)
    }

    /// Whether this watcher holds the lease.
    pub fn leading(&self) -> bool {
        self.leading
    }

    /// Checks the connection with a round trip (a lost one fails here, and
    /// the lease with it).
    pub fn ping(&mut self) -> Result<(), StoreError> {
        self.conn.batch_execute("SELECT 1")?;
        Ok(())
    }

    /// The notices that have arrived, without waiting.
    pub fn drain(&mut self) -> Result<Notices, StoreError> {
        let mut out = Notices::default();
        for n in self.conn.notifications_iter() {
            let n = n?;
            let words = n
                .payload
                .split(' ')
                .filter(|w| !w.is_empty())
                .map(str::to_owned);
            match n.channel.as_str() {
                BAYS_CHANNEL => out.bays.extend(words),
                LAYOUTS_CHANNEL => out.roads.extend(words),
                _ => {}
            }
        }
        Ok(out)
    }
}
