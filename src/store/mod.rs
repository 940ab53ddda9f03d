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
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

mod devices;
mod ingest;
mod layouts;
mod privacy;
pub mod schema;
mod sessions;
mod states;
mod tokens;
mod violations;

pub use devices::DeviceRecord;
pub use ingest::{BatchResult, BatchWrite, EventRecord, RejectionRecord};
pub use layouts::{RevisionInfo, StoredLayout};
pub use privacy::Erased;
pub use sessions::{SessionCursor, SessionRecord};
pub use tokens::{TokenInfo, TokenRecord};
pub use violations::{
    ActOutcome, BayRules, Enforcement, HistoryEntry, RulesByBay, ViolationCursor, ViolationRecord,
};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: expected sqlite://PATH")]
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
    #[error("bay {bay_id} belongs to road {owner}")]
    BayOnOtherRoad { bay_id: String, owner: String },
}

/// A handle on the database: a connection pool; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool<ConnectionManager<SqliteConnection>>,
    /// When each device's `last_seen_ms` was last written, so that a busy
    /// device costs one write a minute, not one a batch.
    device_seen: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>,
}

#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(SQLITE_PRAGMAS)
            .map_err(diesel::r2d2::Error::QueryError)
    }
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

impl Store {
    /// Opens (creating if needed) the database at `url` and applies any
    /// pending migrations.
    pub fn open(url: &str) -> Result<Store, StoreError> {
        let path = sqlite_path(url)?;
        let open_err = |message: String| StoreError::Open {
            path: path.to_owned(),
            message,
        };
        // One direct connection first: it fails at once with SQLite's own
        // message, where the pool would retry until its timeout.
        let mut conn = SqliteConnection::establish(path).map_err(|e| open_err(e.to_string()))?;
        conn.batch_execute(SQLITE_PRAGMAS)
            .map_err(|e| open_err(e.to_string()))?;
        conn.run_pending_migrations(SQLITE_MIGRATIONS)
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        drop(conn);

        let pool = Pool::builder()
            .max_size(8)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(10))
            .connection_customizer(Box::new(SqlitePragmas))
            .build(ConnectionManager::new(path))
            .map_err(|e| open_err(e.to_string()))?;
        Ok(Store {
            pool,
            device_seen: Default::default(),
        })
    }

    fn conn(&self) -> Result<PooledConnection<ConnectionManager<SqliteConnection>>, StoreError> {
        Ok(self.pool.get()?)
    }

    /// Gives back the page cache of every idle connection (after reading a
    /// whole city at start-up, say); it refills as work needs it.
    pub fn release_memory(&self) {
        let idle = self.pool.state().idle_connections;
        let conns: Vec<_> = (0..idle).filter_map(|_| self.pool.try_get()).collect();
        for mut c in conns {
            let _ = c.batch_execute("PRAGMA shrink_memory;");
        }
    }

    /// Copies the write-ahead log into the database every `every`, on a
    /// thread of its own, so that no ingest commit pays for a checkpoint.
    /// A passive checkpoint never blocks readers or the writer.
    pub fn spawn_checkpointer(&self, every: Duration) {
        let store = self.clone();
        let spawned = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    let result = store
                        .conn()
                        .and_then(|mut c| Ok(c.batch_execute("PRAGMA wal_checkpoint(PASSIVE)")?));
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the WAL checkpoint thread");
        }
    }

    /// Checks that the database answers a trivial query.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.conn()?.batch_execute("SELECT 1")?;
        Ok(())
    }
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
}
