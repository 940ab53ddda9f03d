//! The command line: token creation and one-line start-up errors.

use std::process::{Command, Output};

use kerbside::domain::auth::hash_token;

use crate::helpers::{TestDb, geodata_dir, spawn_app};

fn kerbside(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kerbside"))
        .args(args)
        .env_remove("KERBSIDE_DATABASE_URL")
        .env("KERBSIDE_LOG", "warn")
        // Never the shared 1883: an embedded broker takes a free port.
        .env("KERBSIDE_MQTT_LISTEN", "127.0.0.1:0")
        .output()
        .expect("the kerbside binary runs")
}

/// A fresh store on the backend under test, and its URL.
fn fresh_store() -> (TestDb, String) {
    let db = TestDb::new();
    let url = db.url.clone();
    (db, url)
}

/// The one-line error of `kerbside serve` with this store, geodata and
/// HTTP address, plus `extra` flags.
fn serve_error(db: &str, geodata: &str, http: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "serve",
        "--database-url",
        db,
        "--geodata",
        geodata,
        "--http",
        http,
    ];
    args.extend_from_slice(extra);
    one_line_error(&kerbside(&args))
}

fn one_line_error(out: &Output) -> String {
    assert!(!out.status.success(), "expected failure: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn token_create_prints_a_token_that_works_and_stores_only_its_hash() {
    let app = spawn_app();
    let out = kerbside(&[
        "token",
        "create",
        "--role",
        "warden",
        "--name",
        "Li Wei",
        "--database-url",
        &app.database_url,
    ]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "the token alone on its line: {stdout:?}"
    );
    let token = stdout.trim();
    assert!(token.len() >= 64);

    let r = app.get_as("/v1/roads/qingfeng-road/violations", token);
    assert_eq!(r.status, 200, "{}", r.body);

    // Only the digest is stored: the secret appears nowhere in the database files.
    assert!(
        app.store
            .token_hashes()
            .unwrap()
            .contains(&hash_token(token))
    );
    let secret = token.as_bytes();
    if crate::testdb::is_postgres_url(&app.database_url) {
        let rows = crate::testdb::query(&app.database_url, "SELECT t::text FROM api_tokens t");
        assert!(!rows.is_empty());
        assert!(
            rows.iter().all(|r| !r.contains(token)),
            "secret found in api_tokens"
        );
    } else {
        let path = app.database_url.trim_start_matches("sqlite://");
        for suffix in ["", "-wal"] {
            if let Ok(bytes) = std::fs::read(format!("{path}{suffix}")) {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret),
                    "secret found in {path}{suffix}"
                );
            }
        }
    }
}

#[test]
fn token_create_refuses_an_unknown_role() {
    let out = kerbside(&["token", "create", "--role", "mayor", "--name", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mayor"));
}

#[test]
fn a_bad_flag_is_refused_with_usage() {
    let out = kerbside(&["serve", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}

#[test]
fn bad_geodata_is_one_line_naming_the_file_and_the_feature() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(geodata_dir().join("qingfeng-road.geojson"))
        .unwrap()
        .replacen("\"kind\": \"standard\"", "\"kind\": \"lorry\"", 1);
    std::fs::write(dir.path().join("broken.geojson"), text).unwrap();
    let db = format!("sqlite://{}", dir.path().join("k.db").display());
    let geodata = dir.path().to_str().unwrap();
    let err = serve_error(&db, geodata, "127.0.0.1:0", &[]);
    assert!(err.contains("broken.geojson"), "{err}");
    assert!(err.contains("QF-N-001"), "{err}");
    assert!(err.contains("lorry"), "{err}");
}

#[test]
fn a_file_that_is_not_geojson_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("road.geojson"), "{not json").unwrap();
    let db = format!("sqlite://{}", dir.path().join("k.db").display());
    let err = serve_error(&db, dir.path().to_str().unwrap(), "127.0.0.1:0", &[]);
    assert!(
        err.contains("road.geojson") && err.contains("not a GeoJSON"),
        "{err}"
    );
}

#[test]
fn a_database_that_cannot_be_opened_is_one_line() {
    let err = one_line_error(&kerbside(&[
        "serve",
        "--database-url",
        "sqlite:///no/such/dir/k.db",
        "--http",
        "127.0.0.1:0",
    ]));
    assert!(err.contains("/no/such/dir/k.db"), "{err}");
    let err = one_line_error(&kerbside(&[
        "serve",
        "--database-url",
        "mysql://x",
        "--http",
        "127.0.0.1:0",
    ]));
    assert!(err.contains("mysql://x"), "{err}");
    // A PostgreSQL that is not there: the URL, its password hidden.
    let err = one_line_error(&kerbside(&[
        "serve",
        "--database-url",
        "postgres://kerbside:s3cret@127.0.0.1:1/city",
        "--http",
        "127.0.0.1:0",
    ]));
    assert!(err.contains("127.0.0.1:1/city"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn a_taken_http_port_is_one_line_naming_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (_dir, db) = fresh_store();
    let err = serve_error(&db, geodata_dir().to_str().unwrap(), &addr, &[]);
    assert!(err.contains("--http") && err.contains(&addr), "{err}");
}

#[test]
fn a_taken_mqtt_port_is_one_line_naming_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (_dir, db) = fresh_store();
    let err = serve_error(
        &db,
        geodata_dir().to_str().unwrap(),
        "127.0.0.1:0",
        &["--mqtt-listen", &addr],
    );
    assert!(
        err.contains("--mqtt-listen") && err.contains(&addr),
        "{err}"
    );
}

#[test]
fn a_bad_broker_url_is_one_line() {
    let (_dir, db) = fresh_store();
    let err = serve_error(
        &db,
        geodata_dir().to_str().unwrap(),
        "127.0.0.1:0",
        &["--mqtt-url", "amqp://x"],
    );
    assert!(
        err.contains("--mqtt-url") && err.contains("amqp://x"),
        "{err}"
    );
}

#[test]
fn with_no_broker_flags_the_embedded_broker_finds_a_port_even_if_1883_is_taken() {
    // Where a Mosquitto holds 1883 (as on CI), this exercises the fallback.
    let (_dir, db) = fresh_store();
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kerbside"))
        .args([
            "serve",
            "--database-url",
            &db,
            "--http",
            &http.to_string(),
            "--geodata",
        ])
        .arg(geodata_dir())
        .env_remove("KERBSIDE_MQTT_LISTEN")
        .env_remove("KERBSIDE_MQTT_URL")
        .env("KERBSIDE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("http://{http}/healthz");
    crate::helpers::wait_until("a healthy service", || {
        agent.get(&url).call().is_ok_and(|r| r.status() == 200)
    });
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `kerbside token create` with `extra` flags; the printed token.
fn create_token(db: &str, role: &str, name: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "token",
        "create",
        "--role",
        role,
        "--name",
        name,
        "--database-url",
        db,
    ];
    args.extend_from_slice(extra);
    let out = kerbside(&args);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `kerbside token list`: its lines after the header, split at tabs.
fn token_list(db: &str) -> Vec<Vec<String>> {
    let out = kerbside(&["token", "list", "--database-url", db]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("name\trole\tcreated_at\texpires_at\trevoked_at")
    );
    lines
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

#[test]
fn tokens_are_listed_without_secrets_and_revoked_by_name() {
    let app = spawn_app();
    let db = app.database_url.as_str();
    let li = create_token(db, "warden", "Li Wei", &[]);
    let li_temp = create_token(db, "warden", "Li Wei", &["--expires-in-days", "7"]);
    let zhou = create_token(db, "planner", "Zhou Min", &[]);
    const VIOLATIONS: &str = "/v1/roads/qingfeng-road/violations";
    assert_eq!(app.get_as(VIOLATIONS, &li_temp).status, 200);

    let listed = token_list(db);
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed.iter().all(|l| l.len() == 5), "{listed:?}");
    let summary: Vec<_> = listed
        .iter()
        .map(|l| (l[0].as_str(), l[1].as_str(), l[3] != "-", l[4].as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("Li Wei", "warden", false, "-"),
            ("Li Wei", "warden", true, "-"),
            ("Zhou Min", "planner", false, "-")
        ]
    );
    let text = format!("{listed:?}");
    for t in [&li, &li_temp, &zhou] {
        assert!(!text.contains(t.as_str()) && !text.contains(&hash_token(t)));
    }

    let out = kerbside(&["token", "revoke", "--name", "Li Wei", "--database-url", db]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("revoked 2"));
    app.get_as(VIOLATIONS, &li).problem(401);
    app.get_as(VIOLATIONS, &li_temp).problem(401);
    assert_eq!(app.get_as(VIOLATIONS, &zhou).status, 200);
    let revoked: Vec<bool> = token_list(db).iter().map(|l| l[4] != "-").collect();
    assert_eq!(revoked, [true, true, false]);

    let err = one_line_error(&kerbside(&[
        "token",
        "revoke",
        "--name",
        "Li Wei",
        "--database-url",
        db,
    ]));
    assert!(err.contains("Li Wei"), "{err}");
}

#[test]
fn a_token_cannot_be_made_already_expired() {
    let (_dir, db) = fresh_store();
    let err = one_line_error(&kerbside(&[
        "token",
        "create",
        "--role",
        "warden",
        "--name",
        "x",
        "--expires-at",
        "2020-01-01T00:00:00+08:00",
        "--database-url",
        &db,
    ]));
    assert!(err.contains("--expires-at"), "{err}");
}

#[test]
fn logs_carry_no_colour_codes_when_not_written_to_a_terminal() {
    let (_dir, db) = fresh_store();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_kerbside"))
        .args(["serve", "--database-url", &db, "--http", &addr, "--geodata"])
        .arg(geodata_dir())
        .env("KERBSIDE_LOG", "info")
        .env("KERBSIDE_MQTT_LISTEN", "127.0.0.1:0")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("loaded geodata"), "{stderr}");
    assert!(!stderr.contains("\x1b["), "{stderr:?}");
}
