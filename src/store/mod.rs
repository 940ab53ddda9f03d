//! The store: the truth and the history (layouts, events, states, sessions,
//! violations, tokens), behind diesel.
//!
//! Only this module imports diesel. Every method is blocking: async callers
//! run them on the blocking pool (`actix_web::web::block` or
//! `tokio::task::spawn_blocking`). Instants are stored as milliseconds since
//! the Unix epoch (UTC), the same type on every backend.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{Pool, PooledConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

mod cases;
mod cds;
pub mod coord;
pub(crate) mod db;
mod devices;
mod events;
mod history;
mod ingest;
mod layouts;
mod privacy;
mod quarantine;
mod retention;
pub mod schema;
mod session_writes;
mod sessions;
mod states;
mod tokens;
mod violations;

pub use cases::{
    Attempt, CaseDetail, CaseFilter, CaseRecord, CaseStep, ComplaintForStaff, ComplaintRecord,
    DEFAULT_DEADLINE_MINUTES, NewCase, NewComplaint, NewParty, NotificationRecord, Opened,
    PartyRecord, Pending, Resolved,
};
pub use devices::DeviceRecord;
pub use history::{HistoryFilter, STEP_HOURS};
pub use ingest::{
    BareHeartbeat, BatchResult, BatchWrite, DEVICE_SEEN_CAPACITY, EventRecord, OPEN_DEVICES_CAP,
    RejectionRecord,
};
pub use layouts::{RevisionInfo, StoredLayout};
pub use privacy::Erased;
pub use quarantine::QuarantineRecord;
pub use retention::Retained;
pub use sessions::{SessionCursor, SessionRecord};
pub use tokens::{TokenInfo, TokenRecord};
pub use violations::{
    ActOutcome, BayRules, Enforcement, HistoryEntry, RulesByBay, ViolationCursor, ViolationRecord,
};

pub use coord::{Notices, Watcher};
pub use db::Backend;
use db::{Db, Manager, write_transaction};
pub use states::Versioned;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Connections a store keeps open at most (per process).
pub const DEFAULT_POOL_SIZE: u32 = 8;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: expected sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("cannot open the database {path}: {message}")]
    Open { path: String, message: String },
    #[error("cannot migrate the database: {0}")]
    Migration(String),
    #[error("no database connection available: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("database error: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("stored data cannot be read back: {0}")]
    Corrupt(String),
    #[error("the road's current revision is {current}, not {expected}")]
    RevisionConflict { expected: i64, current: i64 },
    #[error("device {0} is already registered")]
    DeviceExists(String),
    #[error("party {0} is already registered")]
    PartyExists(String),
    #[error("there is no party {0}")]
    UnknownParty(String),
    #[error("bay {bay_id} belongs to road {owner}")]
    BayOnOtherRoad { bay_id: String, owner: String },
}

impl StoreError {
    /// Whether the failure may pass by itself (the database busy, locked,
    /// full or failing, no connection), rather than being caused by what
    /// was written. Ingest never quarantines a message for such a failure.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Pool(_) | StoreError::Open { .. } => true,
            StoreError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::SerializationFailure
                | diesel::result::DatabaseErrorKind::ClosedConnection,
                _,
            )) => true,
            StoreError::Query(e) => {
                let text = e.to_string().to_lowercase();
                [
                    // SQLite
                    "locked",
                    "busy",
                    "full",
                    "i/o",
                    "readonly",
                    "unable to open",
                    // PostgreSQL: the server gone, restarting, out of
                    // room, or two writers deadlocked (one is rolled back).
                    "connection",
                    "terminating",
                    "shutting down",
                    "starting up",
                    "deadlock",
                    "lock timeout",
                    "could not obtain lock",
                    "no space",
                    "could not extend",
                ]
                .iter()
                .any(|t| text.contains(t))
            }
            _ => false,
        }
    }
}

/// A handle on the database: a connection pool; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool<Manager>,
    backend: Backend,
    /// When each device's `last_seen_ms` was last written, so that a busy
    /// device costs one write a minute, not one a batch (bounded).
    device_seen: std::sync::Arc<ingest::DeviceSeen>,
    /// Serialises history roll-up refreshes in this process.
    history_lock: std::sync::Arc<std::sync::Mutex<()>>,
    /// SQLite's write-ahead log (`PATH-wal`), whose size the checkpointer
    /// watches; `None` on PostgreSQL.
    wal_path: Option<std::sync::Arc<std::path::Path>>,
    /// The PostgreSQL URL, for connections outside the pool (a watcher's);
    /// `None` on SQLite.
    pg_url: Option<std::sync::Arc<str>>,
}

/// The size past which the write-ahead log is checkpointed in full and
/// truncated, bytes (64 MiB).
///
/// A passive checkpoint copies pages but never restarts the log while a
/// writer keeps appending and readers keep older snapshots open, so under
/// a station's steady load the WAL would grow until the disk is full.
/// Past this size [`Store::checkpoint`] takes a TRUNCATE checkpoint, which
/// waits (up to the busy timeout) for the writer to finish and for readers
/// to move to the newest snapshot, holding new writers meanwhile. The WAL
/// therefore stays under this size plus what ingest writes while one
/// checkpoint copies pages and waits (`cargo bench --bench soak`, 1,000
/// events/s for 6 minutes, about 3.8 MiB of WAL a second: at most 91 MiB).
/// The same figure is SQLite's `journal_size_limit`, so a log restarted by
/// a writer is cut back to it too.
pub const WAL_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

fn wal_pragmas() -> String {
    format!("PRAGMA journal_size_limit = {WAL_LIMIT_BYTES};")
}

/// What one [`Store::checkpoint`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalCheckpoint {
    /// The WAL's size before, bytes.
    pub wal_bytes_before: u64,
    /// Whether the size passed the limit, so the log was truncated.
    pub truncated: bool,
    /// Whether SQLite could not finish the checkpoint (a reader or the
    /// writer outlasted the busy timeout); the next one tries again.
    pub busy: bool,
}

#[derive(QueryableByName)]
struct CheckpointRow {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    busy: i32,
}

/// WAL lets readers run beside the one writer. FULL sync makes every commit
/// fsync the log before it returns, so a commit survives a power cut or a
/// kernel panic, not only a process crash: a QoS 1 message is acknowledged
/// to the broker after its commit, and the broker then forgets it, so an
/// acknowledged event that only reached the page cache (NORMAL under WAL)
/// could be lost for good. Ingest commits a whole batch in one
/// transaction, so this is one fsync a batch, not one an event. The busy
/// timeout makes a writer wait for another instead of failing. A 64 MiB page cache per
/// connection and 64 MiB of memory-mapped reads keep the indexes of the
/// write path in memory (the rest of a large file is left to the kernel's
/// page cache, outside the process).
/// Checkpoints are taken off the commit path (`wal_autocheckpoint = 0`): a
/// background thread runs them, see [`Store::spawn_checkpointer`].
const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -65536; \
     PRAGMA temp_store = MEMORY; PRAGMA mmap_size = 67108864; PRAGMA wal_autocheckpoint = 0;";

/// Turns `sqlite://PATH` (or `sqlite:PATH`) into the file path.
fn sqlite_path(url: &str) -> Result<&str, StoreError> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::UnsupportedUrl(url.to_owned()))?;
    if path.is_empty() {
        return Err(StoreError::UnsupportedUrl(url.to_owned()));
    }
    Ok(path)
}

/// The backend a database URL names.
pub fn backend_of(url: &str) -> Result<Backend, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        sqlite_path(url).map(|_| Backend::Sqlite)
    }
}

/// A URL with its password hidden, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

/// Every PostgreSQL connection: UTC, so that nothing the server prints
/// depends on its zone (kerbside stores instants as UTC milliseconds
/// anyway), and a bound on how long a statement waits for a row lock
/// held by another instance (then it fails, and ingest retries).
pub(super) const POSTGRES_SETUP: &str = "SET TIME ZONE 'UTC'; SET lock_timeout = '10s';";

impl Store {
    /// Opens (creating if needed) the database at `url` and applies any
    /// pending migrations. `sqlite://PATH` is a file of the embedded engine;
    /// `postgres://...` a PostgreSQL database, which must exist.
    pub fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, DEFAULT_POOL_SIZE)
    }

    /// Like [`Store::open`], with at most `pool_size` connections.
    pub fn open_with(url: &str, pool_size: u32) -> Result<Store, StoreError> {
        let backend = backend_of(url)?;
        let (manager, wal_path, shown) = match backend {
            Backend::Sqlite => {
                let path = sqlite_path(url)?;
                let manager = Manager {
                    backend,
                    target: path.to_owned(),
                    setup: format!("{SQLITE_PRAGMAS} {}", wal_pragmas()),
                };
                let wal = std::path::PathBuf::from(format!("{path}-wal"));
                (manager, Some(wal.into()), path.to_owned())
            }
            Backend::Postgres => {
                let manager = Manager {
                    backend,
                    target: url.to_owned(),
                    setup: POSTGRES_SETUP.to_owned(),
                };
                (manager, None, redact_url(url))
            }
        };
        let open_err = |message: String| StoreError::Open {
            path: shown.clone(),
            message,
        };
        // One direct connection first: it fails at once with the engine's
        // own message, where the pool would retry until its timeout.
        // libpq's messages run over several lines; a log line holds one.
        let mut conn = manager.establish().map_err(|e| {
            open_err(
                e.to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        })?;
        migrate(&mut conn)?;
        retention::ensure_at_open(&mut conn, Utc::now());
        drop(conn);

        // No idle minimum: connections open on demand in the caller's
        // thread, so a one-shot command never exits while a pool thread is
        // half-way through a libpq connect (which can crash at exit).
        let pool = Pool::builder()
            .max_size(pool_size.max(2))
            .min_idle(Some(0))
            .connection_timeout(Duration::from_secs(10))
            .build(manager)
            .map_err(|e| open_err(e.to_string()))?;
        Ok(Store {
            pool,
            backend,
            device_seen: Default::default(),
            history_lock: Default::default(),
            wal_path,
            pg_url: (backend == Backend::Postgres).then(|| url.into()),
        })
    }

    /// The engine this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn conn(&self) -> Result<PooledConnection<Manager>, StoreError> {
        Ok(self.pool.get()?)
    }

    /// Runs `f` in one write transaction (see [`db::write_transaction`]).
    fn write<T>(&self, f: impl FnOnce(&mut Db) -> Result<T, StoreError>) -> Result<T, StoreError> {
        write_transaction(&mut *self.conn()?, f)
    }

    /// Gives back the page cache of every idle connection (after reading a
    /// whole city at start-up, say); it refills as work needs it.
    pub fn release_memory(&self) {
        if self.backend != Backend::Sqlite {
            return;
        }
        let idle = self.pool.state().idle_connections;
        let conns: Vec<_> = (0..idle).filter_map(|_| self.pool.try_get()).collect();
        for mut c in conns {
            let _ = c.batch_execute("PRAGMA shrink_memory;");
        }
    }

    /// Checkpoints the write-ahead log every `every`, on a thread of its
    /// own, so that no ingest commit pays for a checkpoint, and keeps the
    /// log near [`WAL_LIMIT_BYTES`] (see [`Store::checkpoint`]).
    pub fn spawn_checkpointer(&self, every: Duration) {
        if self.backend != Backend::Sqlite {
            return;
        }
        let store = self.clone();
        let spawned = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    match store.checkpoint(WAL_LIMIT_BYTES) {
                        Ok(c) if c.truncated && c.busy => tracing::warn!(
                            wal_bytes = c.wal_bytes_before,
                            "the WAL is past its limit and a reader or writer kept it from \
                             being truncated; will retry"
                        ),
                        Ok(c) if c.truncated => {
                            tracing::info!(wal_bytes = c.wal_bytes_before, "WAL truncated")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; will retry"),
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the WAL checkpoint thread");
        }
    }

    /// One checkpoint (blocking): a passive one, which never waits; then,
    /// if the log is larger than `wal_limit_bytes`, a TRUNCATE one, which
    /// waits up to the busy timeout for readers and the writer, holds new
    /// writers meanwhile, and leaves the log empty.
    pub fn checkpoint(&self, wal_limit_bytes: u64) -> Result<WalCheckpoint, StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(WalCheckpoint {
                wal_bytes_before: 0,
                truncated: false,
                busy: false,
            });
        }
        let mut c = self.conn()?;
        c.batch_execute("PRAGMA wal_checkpoint(PASSIVE)")?;
        let wal_bytes_before = self.wal_bytes();
        let mut done = WalCheckpoint {
            wal_bytes_before,
            truncated: false,
            busy: false,
        };
        if wal_bytes_before > wal_limit_bytes {
            let row: CheckpointRow =
                diesel::sql_query("PRAGMA wal_checkpoint(TRUNCATE)").get_result(&mut c)?;
            done.truncated = true;
            done.busy = row.busy != 0;
        }
        Ok(done)
    }

    /// The write-ahead log's size on disk, bytes (0 when there is none).
    pub fn wal_bytes(&self) -> u64 {
        self.wal_path
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len())
    }

    /// Checks that the database answers a trivial query.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.conn()?.batch_execute("SELECT 1")?;
        Ok(())
    }
}

/// Brings the schema up to date, from the migrations of the backend.
fn migrate(conn: &mut Db) -> Result<(), StoreError> {
    let done = match conn {
        Db::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(drop),
        Db::Pg(c) => {
            // Two instances starting at once must not both migrate: the
            // first takes this lock (held to the end of the session's
            // transaction-free work below), the second waits, then finds
            // nothing pending.
            c.batch_execute("SELECT pg_advisory_lock(7260361)")
                .map_err(|e| StoreError::Migration(e.to_string()))?;
            let done = c.run_pending_migrations(POSTGRES_MIGRATIONS).map(drop);
            let _ = c.batch_execute("SELECT pg_advisory_unlock(7260361)");
            done
        }
    };
    done.map_err(|e| StoreError::Migration(e.to_string()))
}

/// Milliseconds since the Unix epoch.
pub(crate) fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The instant `ms` milliseconds after the Unix epoch.
pub(crate) fn from_ms(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} ms is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_a_file() {
        assert_eq!(sqlite_path("sqlite://kerbside.db").unwrap(), "kerbside.db");
        assert_eq!(
            sqlite_path("sqlite:///var/lib/k.db").unwrap(),
            "/var/lib/k.db"
        );
        assert!(sqlite_path("mysql://x").is_err());
        assert!(sqlite_path("sqlite://").is_err());
    }

    #[test]
    fn opens_and_migrates_a_fresh_file() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("k.db").display());
        let store = Store::open(&url).unwrap();
        store.ping().unwrap();
        // Opening again finds nothing left to migrate.
        Store::open(&url).unwrap().ping().unwrap();
    }

    #[test]
    fn a_missing_directory_is_a_clear_error() {
        let err = Store::open("sqlite:///nonexistent-dir/k.db").err().unwrap();
        assert!(
            err.to_string()
                .starts_with("cannot open the database /nonexistent-dir/k.db"),
            "{err}"
        );
    }

    /// Sustained writes with readers whose snapshots overlap: the passive
    /// checkpoints alone never restart the log, so it grows by everything
    /// written; the checkpointer must keep it near its limit.
    #[test]
    fn the_wal_stays_bounded_under_writes_and_overlapping_readers() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

        const LIMIT: u64 = 2 << 20;
        const BOUND: u64 = 4 * LIMIT;
        const WRITE: u64 = 24 << 20;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("k.db").display());
        let store = Store::open(&url).unwrap();
        store
            .conn()
            .unwrap()
            .batch_execute("CREATE TABLE scratch (b BLOB NOT NULL)")
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        // The writer: 64 KiB a transaction, a hundred a second at most (a
        // station's load, scaled to the test's small limit).
        {
            let (store, stop, written) = (store.clone(), stop.clone(), written.clone());
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && written.load(Ordering::Relaxed) < WRITE {
                    // A failed transaction is retried, as ingest retries a batch.
                    let stored = store.conn().and_then(|mut c| {
                        Ok(c.batch_execute(
                            "BEGIN IMMEDIATE; INSERT INTO scratch SELECT randomblob(1024) FROM \
                             (WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n \
                             WHERE x < 64) SELECT x FROM n); COMMIT;",
                        )?)
                    });
                    if stored.is_ok() {
                        written.fetch_add(64 << 10, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }));
        }
        // Two readers, each keeping a snapshot over several reads, so
        // that one of them is nearly always reading an older snapshot.
        for _ in 0..2 {
            let (store, stop, written) = (store.clone(), stop.clone(), written.clone());
            threads.push(std::thread::spawn(move || {
                let mut c = store.conn().unwrap();
                while !stop.load(Ordering::Relaxed) && written.load(Ordering::Relaxed) < WRITE {
                    c.batch_execute(
                        "BEGIN; SELECT count(*) FROM scratch; SELECT count(*) FROM scratch; \
                         SELECT count(*) FROM scratch; COMMIT;",
                    )
                    .unwrap();
                }
            }));
        }
        // The checkpointer, at a short period to match the small scale.
        {
            let (store, stop, written) = (store.clone(), stop.clone(), written.clone());
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && written.load(Ordering::Relaxed) < WRITE {
                    store.checkpoint(LIMIT).unwrap();
                    std::thread::sleep(Duration::from_millis(20));
                }
            }));
        }
        let mut largest = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while written.load(Ordering::Relaxed) < WRITE && std::time::Instant::now() < deadline {
            largest = largest.max(store.wal_bytes());
            if largest > BOUND {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        let total = written.load(Ordering::Relaxed);
        assert!(
            largest <= BOUND,
            "the WAL reached {largest} bytes (bound {BOUND}) after {total} bytes written"
        );
        assert!(total >= WRITE, "only {total} bytes written within 30 s");
    }
}
