//! One connection type for both backends: SQLite (embedded, the default)
//! and PostgreSQL (a city, many instances).
//!
//! Queries are written once, in diesel's query builder, against [`Db`],
//! diesel's `MultiConnection` over the two: it carries the common subset
//! (selects, inserts, updates, deletes, `RETURNING`, transactions). What
//! differs goes through [`on_backend!`], which runs the same code on the
//! concrete connection of either backend (upserts, whose `ON CONFLICT`
//! the multi-backend does not carry), or through a `match` where the SQL
//! itself differs (SQLite's `BEGIN IMMEDIATE`, PostgreSQL's row locks,
//! `LISTEN/NOTIFY`, partitions).

use diesel::connection::{
    AnsiTransactionManager, Connection, SimpleConnection, TransactionManager,
};
use diesel::pg::PgConnection;
use diesel::r2d2::R2D2Connection;
use diesel::sqlite::SqliteConnection;

use super::StoreError;

/// A connection to the store, of either backend.
#[derive(diesel::MultiConnection)]
pub enum Db {
    Sqlite(SqliteConnection),
    Pg(PgConnection),
}

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Runs `$body` with `$c` bound to the concrete connection inside a
/// [`Db`], once per backend (the code is compiled for each).
macro_rules! on_backend {
    ($conn:expr, $c:ident => $body:expr) => {
        match &mut *$conn {
            $crate::store::db::Db::Sqlite($c) => $body,
            $crate::store::db::Db::Pg($c) => $body,
        }
    };
}
pub(crate) use on_backend;

/// Runs `f` in a write transaction: on SQLite `BEGIN IMMEDIATE`, which
/// takes the write lock at once (a deferred transaction that read first
/// could fail to upgrade, rather than wait, when another writer went
/// first); on PostgreSQL a plain `BEGIN` (read committed), with the rows
/// that must not change under it locked by the code that reads them.
/// Commits when `f` succeeds, rolls back when it fails.
pub(super) fn write_transaction<T>(
    conn: &mut Db,
    f: impl FnOnce(&mut Db) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    match conn {
        Db::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?,
        Db::Pg(c) => AnsiTransactionManager::begin_transaction(c)?,
    }
    match f(conn) {
        Ok(value) => {
            <Db as Connection>::TransactionManager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(e) => {
            match <Db as Connection>::TransactionManager::rollback_transaction(conn) {
                Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => {}
                Err(rollback) => {
                    tracing::warn!(error = %rollback, "rollback failed after: {e}");
                }
            }
            Err(e)
        }
    }
}

/// Hands out connections of one backend, each set up as the store needs
/// (SQLite's pragmas), for the r2d2 pool.
#[derive(Debug)]
pub(super) struct Manager {
    pub backend: Backend,
    /// The file path (SQLite) or the connection URL (PostgreSQL).
    pub target: String,
    /// SQL run on every new connection.
    pub setup: String,
}

impl Manager {
    pub fn establish(&self) -> Result<Db, diesel::ConnectionError> {
        let mut db = match self.backend {
            Backend::Sqlite => Db::Sqlite(SqliteConnection::establish(&self.target)?),
            Backend::Postgres => Db::Pg(PgConnection::establish(&self.target)?),
        };
        if !self.setup.is_empty() {
            db.batch_execute(&self.setup)
                .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
        }
        Ok(db)
    }
}

impl diesel::r2d2::ManageConnection for Manager {
    type Connection = Db;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<Db, Self::Error> {
        self.establish()
            .map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut Db) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut Db) -> bool {
        std::thread::panicking() || conn.is_broken()
    }
}
