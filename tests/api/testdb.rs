//! The store a test runs on: a SQLite file, or a fresh PostgreSQL database.
//!
//! `KERBSIDE_TEST_DATABASE` chooses: unset or `sqlite` gives a SQLite file
//! in a temporary directory; `postgres` gives a fresh database on the
//! machine's PostgreSQL (`postgres://postgres@127.0.0.1:5432/test`); any
//! other `postgres://` URL names the server (and the database to connect to
//! while creating the fresh one). Each test gets a database of its own,
//! dropped when the test ends.

use std::sync::atomic::{AtomicUsize, Ordering};

use diesel::{Connection, PgConnection, RunQueryDsl};

/// The machine's PostgreSQL, as CI and the README use it.
pub const MACHINE_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Which backend this run of the suite tests.
pub fn postgres_server() -> Option<String> {
    match std::env::var("KERBSIDE_TEST_DATABASE") {
        Err(_) => None,
        Ok(v) if v.is_empty() || v == "sqlite" => None,
        Ok(v) if v == "postgres" => Some(without_gss(MACHINE_POSTGRES)),
        Ok(v) if v.starts_with("postgres://") || v.starts_with("postgresql://") => {
            Some(without_gss(&v))
        }
        Ok(v) => {
            panic!("KERBSIDE_TEST_DATABASE={v}: expected sqlite, postgres or a postgres:// URL")
        }
    }
}

/// `url` with libpq's GSSAPI encryption turned off (unless it says
/// otherwise). By default libpq tries Kerberos first on every connection;
/// the test binary ends while service threads of finished tests still hold
/// connections, and the Kerberos library's teardown then aborts the process
/// (`k5_mutex_lock: Received error 22`) after every test has passed.
fn without_gss(url: &str) -> String {
    if url.contains("gssencmode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&gssencmode=disable")
    } else {
        format!("{url}?gssencmode=disable")
    }
}

/// One test's store, removed when dropped.
pub struct TestDb {
    /// What `--database-url` is given.
    pub url: String,
    /// The server and the fresh database's name, on PostgreSQL.
    pg: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

static FRESH: AtomicUsize = AtomicUsize::new(0);

impl TestDb {
    /// A store on the backend `KERBSIDE_TEST_DATABASE` names.
    pub fn new() -> TestDb {
        match postgres_server() {
            Some(server) => TestDb::postgres(&server),
            None => TestDb::sqlite(),
        }
    }

    /// A SQLite file, whatever the run tests: for tests of the file itself.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("kerbside.db").display());
        TestDb {
            url,
            pg: None,
            _dir: dir,
        }
    }

    /// A fresh database on the PostgreSQL server at `server`. Fails the
    /// test, naming the variable, when the server cannot be reached.
    pub fn postgres(server: &str) -> TestDb {
        let name = format!(
            "kerbside_test_{}_{}_{}",
            std::process::id(),
            FRESH.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let mut admin = PgConnection::establish(server).unwrap_or_else(|e| {
            panic!(
                "KERBSIDE_TEST_DATABASE asks for PostgreSQL at {server}, which cannot be reached: {e}"
            )
        });
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        TestDb {
            url: with_database(server, &name),
            pg: Some((server.to_owned(), name)),
            _dir: tempfile::tempdir().expect("temp dir"),
        }
    }
}

impl Default for TestDb {
    fn default() -> Self {
        TestDb::new()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((server, name)) = &self.pg
            && let Ok(mut admin) = PgConnection::establish(server)
        {
            // FORCE ends the connections a killed service left behind.
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin);
        }
    }
}

/// `url` with its database path replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Whether `url` is a PostgreSQL URL.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Runs a statement (or, if not a SELECT, a script) on a SQLite file.
const SQLITE_QUERY: &str = r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
s = sys.argv[2]
if s.lstrip().upper().startswith("SELECT"):
    for r in c.execute(s):
        print("|".join(str(x) for x in r))
else:
    c.executescript(s)
"#;

/// Runs SQL on a store from outside, as an operator's `sqlite3` or `psql`
/// would: its rows, one a line, columns joined by `|`.
pub fn query(database_url: &str, sql: &str) -> Vec<String> {
    let out = if is_postgres_url(database_url) {
        std::process::Command::new("psql")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-A",
                "-t",
                "-F",
                "|",
                "-d",
                database_url,
                "-c",
                sql,
            ])
            .output()
            .expect("psql runs")
    } else {
        std::process::Command::new("python3")
            .args([
                "-c",
                SQLITE_QUERY,
                database_url.trim_start_matches("sqlite://"),
                sql,
            ])
            .output()
            .expect("python3 runs")
    };
    assert!(
        out.status.success(),
        "cannot run {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_server_url_takes_the_fresh_database_name() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "k1"),
        "postgres://postgres@127.0.0.1:5432/k1"
    );
    assert_eq!(with_database("postgres://h", "k1"), "postgres://h/k1");
    assert_eq!(
        with_database("postgres://h/x?sslmode=disable", "k1"),
        "postgres://h/k1?sslmode=disable"
    );
    assert_eq!(
        without_gss("postgres://h/x?sslmode=disable"),
        "postgres://h/x?sslmode=disable&gssencmode=disable"
    );
    assert_eq!(
        without_gss("postgres://h/x"),
        "postgres://h/x?gssencmode=disable"
    );
}

/// Every table the service writes.
const TABLES: &str = "roads, layout_revisions, bays, layout_features, devices, events, \
    event_keys, rejections, bay_states, parking_sessions, violations, violation_history, api_tokens, \
    device_registry, broker_password_outbox, violation_disputes, plate_key, quarantine";

/// Holds the store's writes back from outside until released: a disk that
/// stalls, as far as the service can tell. On SQLite, the write lock
/// (`BEGIN IMMEDIATE`); on PostgreSQL, every table locked `EXCLUSIVE`
/// (reads go on, writes wait).
pub struct WriteLock {
    release: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl WriteLock {
    /// Takes the lock; returns once it is held.
    pub fn take(database_url: &str) -> WriteLock {
        let (locked_tx, locked) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let url = database_url.to_owned();
        let thread = std::thread::spawn(move || {
            if is_postgres_url(&url) {
                let mut c = PgConnection::establish(&url).expect("connect to PostgreSQL");
                // The tables are locked one after another, so the service's
                // own work at start (retention, partitions) may deadlock
                // with it; PostgreSQL then cancels one side: try again.
                let mut tries = 0;
                loop {
                    diesel::sql_query("BEGIN").execute(&mut c).expect("begin");
                    match diesel::sql_query(format!("LOCK TABLE {TABLES} IN EXCLUSIVE MODE"))
                        .execute(&mut c)
                    {
                        Ok(_) => break,
                        Err(e) if tries < 20 && e.to_string().contains("deadlock") => {
                            tries += 1;
                            diesel::sql_query("ROLLBACK")
                                .execute(&mut c)
                                .expect("rollback");
                        }
                        Err(e) => panic!("lock: {e}"),
                    }
                }
                locked_tx.send(()).unwrap();
                let _ = released.recv();
                diesel::sql_query("COMMIT").execute(&mut c).expect("unlock");
            } else {
                let path = url.trim_start_matches("sqlite://");
                let mut c = diesel::SqliteConnection::establish(path).expect("open SQLite");
                for sql in ["PRAGMA busy_timeout = 10000", "BEGIN IMMEDIATE"] {
                    diesel::sql_query(sql).execute(&mut c).expect("lock");
                }
                locked_tx.send(()).unwrap();
                let _ = released.recv();
                diesel::sql_query("COMMIT").execute(&mut c).expect("unlock");
            }
        });
        locked.recv().expect("the lock was taken");
        WriteLock { release, thread }
    }

    /// Lets the writes through.
    pub fn release(self) {
        let _ = self.release.send(());
        self.thread.join().expect("the lock thread ends");
    }
}
