//! Device access on a Mosquitto configured by `kerbside mosquitto-conf`
//! (contract 6.1): each test writes the configuration with the real
//! binary, starts a Mosquitto of its own from it, and runs the service
//! against it with registration on. Without Mosquitto (and its
//! dynamic-security plugin) these tests fail; they never skip.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kerbside::devices::DeviceMode;
use kerbside::domain::auth::Role;
use kerbside::domain::devices::{DeviceKind, generate_password};
use kerbside::domain::ids::DeviceId;
use kerbside::store::Store;
use serde_json::{Value, json};

use crate::helpers::{
    ConnectOutcome, MqttClient, TestApp, at, default_now, rand_suffix, spawn_app_with, wait_until,
    wait_until_within,
};

/// What the contract allows for a change to reach the broker.
const TAKES_EFFECT_WITHIN_S: u64 = 10;

/// Runs the `kerbside` binary; panics unless it succeeds, and returns its
/// standard output.
fn kerbside(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kerbside"))
        .args(args)
        .env_remove("KERBSIDE_DATABASE_URL")
        .env("KERBSIDE_LOG", "warn")
        .output()
        .expect("the kerbside binary runs");
    assert!(
        out.status.success(),
        "kerbside {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// A Mosquitto started from `DIR/mosquitto.conf`, killed when dropped.
struct Mosquitto {
    child: Child,
    port: u16,
}

impl Mosquitto {
    fn start(conf_dir: &std::path::Path, port: u16) -> Mosquitto {
        let log = conf_dir.join("mosquitto.log");
        let binary = if std::path::Path::new("/usr/sbin/mosquitto").exists() {
            "/usr/sbin/mosquitto"
        } else {
            "mosquitto"
        };
        let child = Command::new(binary)
            .arg("-c")
            .arg(conf_dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("a log file"))
            .spawn()
            .expect("mosquitto runs (apt-get install mosquitto)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Mosquitto { child, port }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The service on a Mosquitto that `kerbside mosquitto-conf` configured.
struct Deployment {
    // Dropped first, so the service never sees its broker vanish.
    app: TestApp,
    broker: Mosquitto,
    database_url: String,
    /// Passwords of the devices registered before the configuration.
    passwords: HashMap<String, String>,
    _conf: tempfile::TempDir,
    _db: crate::helpers::TestDb,
}

/// Registers `devices` (id, kind, revoked), writes the configuration,
/// starts Mosquitto from it and the service on it with the printed URL.
fn deploy(devices: &[(&str, DeviceKind, bool)]) -> Deployment {
    let test_db = crate::helpers::TestDb::new();
    let database_url = test_db.url.clone();
    let store = Store::open(&database_url).unwrap();
    let mut passwords = HashMap::new();
    for &(id, kind, revoked) in devices {
        let device = DeviceId::parse(id).unwrap();
        let pw = generate_password();
        store
            .create_device(&device, kind, id, &pw.secret, &pw.digest, default_now())
            .unwrap();
        if revoked {
            store.revoke_device(&device, default_now()).unwrap();
        }
        passwords.insert(id.to_owned(), pw.secret);
    }
    drop(store);

    // The broker's user reads the configuration through this directory,
    // which `mosquitto-conf` opens to it (a temporary directory is 0700).
    let conf = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let out = kerbside(&[
        "mosquitto-conf",
        "--out",
        conf.path().to_str().unwrap(),
        "--listen",
        &listen,
        "--database-url",
        &database_url,
    ]);
    assert_eq!(out.lines().count(), 1, "the URL alone on its line: {out:?}");
    let url = out.trim().to_owned();
    assert!(
        url.starts_with("mqtt://%24kerbside:") && url.ends_with(&format!("@{listen}")),
        "{url}"
    );
    let broker = Mosquitto::start(conf.path(), port);

    let db = database_url.clone();
    let app = spawn_app_with(move |s| {
        s.devices = DeviceMode::Registered;
        s.mqtt_url = Some(url);
        s.database.database_url = db;
    });
    app.wait_for_broker();
    Deployment {
        app,
        broker,
        database_url,
        passwords,
        _conf: conf,
        _db: test_db,
    }
}

impl Deployment {
    fn try_connect(
        &self,
        client_id: &str,
        login: Option<(&str, &str)>,
    ) -> Result<MqttClient, ConnectOutcome> {
        self.app.try_mqtt(client_id, login)
    }

    /// Connects as a device registered before the configuration was written.
    fn device(&self, id: &str) -> MqttClient {
        let pw = &self.passwords[id];
        self.app.mqtt_as(&format!("{id}-{}", rand_suffix()), id, pw)
    }

    fn events_stored(&self) -> f64 {
        self.app.metric("kerbside_events_accepted_total")
            + self.app.metric("kerbside_events_duplicate_total")
            + self.app.metric("kerbside_events_rejected_total")
    }
}

/// A connection whose fate is reported: `true` when the broker accepted
/// it, then `false` once it is lost. It does not reconnect.
fn watched_connection(port: u16, user: &str, password: &str) -> mpsc::Receiver<bool> {
    let mut options = rumqttc::MqttOptions::new(format!("{user}-watched"), "127.0.0.1", port);
    options.set_credentials(user, password);
    let (client, mut connection) = rumqttc::Client::new(options, 10);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _client = client;
        for event in connection.iter() {
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                    let _ = tx.send(true);
                }
                Ok(_) => {}
                Err(_) => {
                    let _ = tx.send(false);
                    return;
                }
            }
        }
    });
    rx
}

#[test]
fn strangers_wrong_passwords_and_revoked_devices_are_refused_at_connect() {
    let d = deploy(&[
        ("s-1", DeviceKind::Sensor, false),
        ("old-1", DeviceKind::Sensor, true),
    ]);
    let bay_before = d.app.bay_status("QF-S-031");
    let revoked_pw = d.passwords["old-1"].clone();
    let attempts: [(&str, Option<(&str, &str)>); 5] = [
        ("anonymous", None),
        ("wrong password", Some(("s-1", "not-its-password"))),
        ("another's password", Some(("s-1", revoked_pw.as_str()))),
        ("revoked", Some(("old-1", revoked_pw.as_str()))),
        ("unregistered", Some(("ghost-9", "anything"))),
    ];
    for (who, login) in attempts {
        match d.try_connect(&format!("stranger-{}", who.replace(' ', "-")), login) {
            Err(ConnectOutcome::Refused(code)) => {
                assert_eq!(code, rumqttc::ConnectReturnCode::NotAuthorized, "{who}");
            }
            Ok(_) => panic!("{who} was let in"),
            Err(other) => panic!("{who}: expected a refusal at CONNACK, got {other:?}"),
        }
    }
    // The registered device is let in: the refusals are about who, not the broker.
    let s1 = d.device("s-1");
    s1.send_events(
        "s-1",
        &json!({"event_id": "1", "type": "heartbeat", "observed_at": at(-1)}),
    );
    wait_until("the registered device's event", || d.events_stored() == 1.0);
    assert_eq!(d.app.bay_status("QF-S-031"), bay_before);
    assert_eq!(d.app.metric("kerbside_events_accepted_total"), 1.0);
}

#[test]
fn a_device_cannot_send_as_another_nor_speak_for_kerbside() {
    let d = deploy(&[
        ("s-1", DeviceKind::Sensor, false),
        ("s-2", DeviceKind::Sensor, false),
        ("sign-1", DeviceKind::Observer, false),
    ]);
    let bay = "QF-S-031";
    let state_topic = format!("kerbside/v1/bays/{bay}/state");
    // kerbside's own retained state for the bay is there first.
    let reader = d.device("sign-1");
    reader.subscribe(&state_topic);
    let original = reader.next_on(&state_topic);
    assert_eq!(original["bay_id"], bay);

    let s2 = d.device("s-2");
    s2.subscribe("kerbside/v1/devices/s-2/rejections");

    // Each forgery on a connection of its own: Mosquitto closes a 3.1.1
    // connection whose publish it denied.
    let forged_event =
        json!({"event_id": "f1", "type": "occupied", "observed_at": at(-2), "bay_id": bay});
    let forged_state =
        json!({"bay_id": bay, "road_id": "qingfeng-road", "status": "occupied", "forged": true});
    let forged_rejection = json!({"event_id": "x", "reason": "forged", "detail": "forged"});
    for (who, topic, retain, body) in [
        (
            "s-1",
            "kerbside/v1/devices/s-2/events",
            false,
            &forged_event,
        ),
        ("s-1", state_topic.as_str(), true, &forged_state),
        (
            "s-1",
            "kerbside/v1/devices/s-2/rejections",
            false,
            &forged_rejection,
        ),
        (
            "sign-1",
            "kerbside/v1/devices/sign-1/events",
            false,
            &forged_event,
        ),
    ] {
        publish_once(&d, who, topic, retain, body);
    }
    // s-1's own event, sent after the forgeries, marks the end.
    d.device("s-1").send_events(
        "s-1",
        &json!({"event_id": "own", "type": "occupied", "observed_at": at(-2), "bay_id": "QF-N-012"}),
    );
    wait_until("s-1's own event", || {
        d.app.bay_status("QF-N-012") == "occupied"
    });

    assert_eq!(d.events_stored(), 1.0, "only s-1's own event was stored");
    assert_eq!(d.app.metric("kerbside_events_accepted_total"), 1.0);
    assert_eq!(
        d.app.bay_status(bay),
        "unknown",
        "the forged event changed the bay"
    );
    assert!(
        s2.drain(Duration::from_millis(500)).is_empty(),
        "s-2 received a forged rejection"
    );
    // A fresh subscriber gets kerbside's state, not the forgery.
    let fresh = d.device("sign-1");
    fresh.subscribe(&state_topic);
    let seen = fresh.next_on(&state_topic);
    assert!(seen.get("forged").is_none(), "the forgery was kept: {seen}");
    assert_eq!(seen, original);
}

/// Publishes `body` at QoS 1 to `topic` as a registered device, on a
/// connection of its own, and waits until the broker has answered it.
fn publish_once(d: &Deployment, id: &str, topic: &str, retain: bool, body: &Value) {
    let mut options = rumqttc::MqttOptions::new(
        format!("{id}-{}", rand_suffix()),
        "127.0.0.1",
        d.broker.port,
    );
    options.set_credentials(id, d.passwords[id].clone());
    let (client, mut connection) = rumqttc::Client::new(options, 10);
    client
        .publish(topic, rumqttc::QoS::AtLeastOnce, retain, body.to_string())
        .unwrap();
    for event in connection.iter() {
        match event {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

#[test]
fn devices_subscribe_only_where_the_contract_lets_them() {
    let d = deploy(&[
        ("h-1", DeviceKind::Handheld, false),
        ("sign-1", DeviceKind::Observer, false),
    ]);
    let h = d.device("h-1");
    for filter in [
        "kerbside/v1/bays/+/state",
        "kerbside/v1/bays/QF-N-001/state",
        "kerbside/v1/devices/h-1/rejections",
    ] {
        assert!(h.try_subscribe(filter), "h-1 refused {filter}");
    }
    for filter in [
        "kerbside/v1/devices/h-2/rejections",
        "kerbside/v1/devices/+/rejections",
        "kerbside/v1/devices/+/events",
        "kerbside/v1/devices/h-1/events",
        "kerbside/#",
        "#",
        "kerbside/v1/bays/#",
        "kerbside/v1/bays/+/+",
        "$CONTROL/dynamic-security/v1/response",
    ] {
        assert!(!h.try_subscribe(filter), "h-1 was granted {filter}");
    }
    let o = d.device("sign-1");
    assert!(o.try_subscribe("kerbside/v1/bays/+/state"));
    assert!(!o.try_subscribe("kerbside/v1/devices/sign-1/rejections"));
}

#[test]
fn devices_added_while_running_connect_and_send_within_10_s() {
    let d = deploy(&[]);
    let admin = d.app.token(Role::Admin);
    let r = d.app.post_as(
        "/v1/devices",
        &admin,
        &json!({"device_id": "hh-rest", "kind": "handheld", "name": "warden Li"}).to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let rest_pw = r.json()["password"].as_str().unwrap().to_owned();
    let cli_pw = kerbside(&[
        "device",
        "add",
        "--id",
        "s-cli",
        "--kind",
        "sensor",
        "--name",
        "bay QF-N-012",
        "--database-url",
        &d.database_url,
    ])
    .trim()
    .to_owned();

    let mut clients = Vec::new();
    for (id, pw) in [("hh-rest", &rest_pw), ("s-cli", &cli_pw)] {
        let mut client = None;
        wait_until_within(&format!("{id} to be let in"), TAKES_EFFECT_WITHIN_S, || {
            client = d.try_connect(&format!("{id}-c"), Some((id, pw))).ok();
            client.is_some()
        });
        clients.push((id, client.unwrap()));
    }
    for (id, c) in &clients {
        c.send_events(
            id,
            &json!({"event_id": "hello", "type": "heartbeat", "observed_at": at(-1)}),
        );
    }
    wait_until_within("both devices' events", TAKES_EFFECT_WITHIN_S, || {
        d.app.metric("kerbside_events_accepted_total") == 2.0
    });
    // Once the broker has the passwords, their plain copies are gone.
    wait_until("the outbox to empty", || {
        d.app.store.pending_broker_passwords().unwrap().is_empty()
    });
}

#[test]
fn a_device_revoked_while_connected_is_cut_off_and_refused_within_10_s() {
    let d = deploy(&[("s-1", DeviceKind::Sensor, false)]);
    let pw = d.passwords["s-1"].clone();
    let connection = watched_connection(d.broker.port, "s-1", &pw);
    assert_eq!(
        connection.recv_timeout(Duration::from_secs(10)),
        Ok(true),
        "s-1 could not connect"
    );
    let revoked = Instant::now();
    kerbside(&[
        "device",
        "revoke",
        "--id",
        "s-1",
        "--database-url",
        &d.database_url,
    ]);
    assert_eq!(
        connection.recv_timeout(Duration::from_secs(TAKES_EFFECT_WITHIN_S)),
        Ok(false),
        "s-1 is still connected {TAKES_EFFECT_WITHIN_S} s after its revocation"
    );
    assert!(revoked.elapsed() < Duration::from_secs(TAKES_EFFECT_WITHIN_S));
    assert!(matches!(
        d.try_connect("s-1-again", Some(("s-1", &pw))),
        Err(ConnectOutcome::Refused(_))
    ));
    assert_eq!(d.events_stored(), 0.0);
}

#[test]
fn a_new_wildcard_subscriber_gets_every_bays_retained_state() {
    let d = deploy(&[("sign-1", DeviceKind::Observer, false)]);
    let bays: u64 = d.app.get("/v1/roads").json()["roads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["bays"].as_u64().unwrap())
        .sum();
    assert_eq!(bays, 136);
    let distinct = |c: &MqttClient, window: Duration| -> HashSet<String> {
        c.drain(window).into_iter().map(|p| p.topic).collect()
    };
    // Wait until kerbside has published every bay once.
    let first = d.device("sign-1");
    first.subscribe("kerbside/v1/bays/+/state");
    let mut seen = HashSet::new();
    wait_until("kerbside to publish every bay", || {
        seen.extend(distinct(&first, Duration::from_millis(200)));
        seen.len() as u64 == bays
    });
    let fresh = d.device("sign-1");
    fresh.subscribe("kerbside/v1/bays/+/state");
    let retained = distinct(&fresh, Duration::from_secs(3));
    assert_eq!(retained.len() as u64, bays);
}

#[test]
fn an_oversize_event_reaches_kerbside_and_is_rejected_malformed() {
    let d = deploy(&[("s-1", DeviceKind::Sensor, false)]);
    let s1 = d.device("s-1");
    s1.subscribe("kerbside/v1/devices/s-1/rejections");
    let note = "x".repeat(300 * 1024);
    s1.send_events(
        "s-1",
        &json!({"event_id": "big", "type": "heartbeat", "observed_at": at(-1), "note": note}),
    );
    let r = s1.next_on("kerbside/v1/devices/s-1/rejections");
    assert_eq!(r["reason"], "malformed");
}

#[test]
fn mosquitto_conf_refuses_bad_input_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let test_db = crate::helpers::TestDb::new();
    let db = test_db.url.clone();
    let out = dir.path().join("conf");
    let out = out.to_str().unwrap();
    for (args, says) in [
        (vec!["--listen", "127.0.0.1"], "--listen"),
        (vec!["--listen", "127.0.0.1:0"], "--listen"),
        (
            vec![
                "--listen",
                "127.0.0.1:1883",
                "--dynsec-plugin",
                "/nowhere/dynsec.so",
            ],
            "--dynsec-plugin",
        ),
    ] {
        let mut all = vec!["mosquitto-conf", "--out", out, "--database-url", &db];
        all.extend(args);
        let result = Command::new(env!("CARGO_BIN_EXE_kerbside"))
            .args(&all)
            .env("KERBSIDE_LOG", "warn")
            .output()
            .unwrap();
        assert!(!result.status.success(), "{all:?}");
        let stderr = String::from_utf8_lossy(&result.stderr).trim().to_owned();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(says) && !stderr.contains("panicked"),
            "{stderr}"
        );
        assert!(result.stdout.is_empty());
    }
}
