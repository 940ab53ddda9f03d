//! Only registered devices (contract 6.1), on the embedded broker: who may
//! connect, what each may publish and read, and that an acknowledgement
//! means the event is stored.

use std::time::{Duration, Instant};

use kerbside::devices::DeviceMode;
use kerbside::domain::auth::Role;
use rumqttc::ConnectReturnCode;
use serde_json::json;

use crate::helpers::{ConnectOutcome, TestApp, at, spawn_app_with, wait_until, wait_until_within};

fn registered_app() -> TestApp {
    let app = spawn_app_with(|s| s.devices = DeviceMode::Registered);
    app.wait_for_broker();
    app
}

fn occupied(event_id: &str, bay: &str) -> serde_json::Value {
    json!({"event_id": event_id, "type": "occupied", "observed_at": at(-1), "bay_id": bay})
}

#[test]
fn an_admin_registers_lists_and_revokes_devices_and_nobody_else_may() {
    let app = registered_app();
    let admin = app.token(Role::Admin);
    let warden = app.token(Role::Warden);
    let body =
        json!({"device_id": "sensor-014", "kind": "sensor", "name": "bay QF-S-014"}).to_string();

    assert_eq!(app.post_as("/v1/devices", &warden, &body).status, 403);
    assert_eq!(app.get("/v1/devices").status, 401);
    let created = app.post_as("/v1/devices", &admin, &body);
    assert_eq!(created.status, 201, "{}", created.body);
    let c = created.json();
    assert_eq!(c["device_id"], "sensor-014");
    assert_eq!(c["kind"], "sensor");
    let password = c["password"].as_str().unwrap();
    assert!(password.len() >= 32, "at least 128 bits: {password}");
    assert_eq!(app.post_as("/v1/devices", &admin, &body).status, 409);

    for (bad, why) in [
        (
            json!({"device_id": "a b", "kind": "sensor", "name": "x"}),
            "device_id",
        ),
        (
            json!({"device_id": "cam-1", "kind": "camera", "name": "x"}),
            "kind",
        ),
        (
            json!({"device_id": "cam-1", "kind": "sensor", "name": ""}),
            "name",
        ),
        (json!({"device_id": "cam-1", "kind": "sensor"}), "name"),
    ] {
        let r = app.post_as("/v1/devices", &admin, &bad.to_string());
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert_eq!(r.content_type, "application/problem+json");
        assert!(
            r.json()["detail"].as_str().unwrap().contains(why),
            "{}",
            r.body
        );
    }

    let list = app.get_as("/v1/devices", &admin);
    assert_eq!(list.status, 200);
    assert!(
        !list.body.contains(password),
        "a password is shown once only"
    );
    let devices = list.json()["devices"].as_array().unwrap().clone();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["name"], "bay QF-S-014");
    assert!(devices[0]["revoked_at"].is_null());

    let revoked = app.delete_as("/v1/devices/sensor-014", &admin);
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let first = revoked.json()["revoked_at"].clone();
    assert!(first.is_string());
    assert_eq!(
        app.delete_as("/v1/devices/sensor-014", &admin).json()["revoked_at"],
        first
    );
    assert_eq!(app.delete_as("/v1/devices/nobody", &admin).status, 404);
    assert_eq!(app.delete_as("/v1/devices/sensor-014", &warden).status, 403);
}

#[test]
fn strangers_are_refused_at_connect_and_change_nothing() {
    let app = registered_app();
    let admin = app.token(Role::Admin);
    let password = app.register_device(&admin, "sensor-014", "sensor");
    let revoked = app.register_device(&admin, "sensor-015", "sensor");
    assert_eq!(app.delete_as("/v1/devices/sensor-015", &admin).status, 200);

    let refused = |id: &str, login: Option<(&str, &str)>| match app.try_mqtt(id, login) {
        Ok(_) => panic!("{id} was let in"),
        Err(outcome) => outcome,
    };
    assert_eq!(
        refused("anon", None),
        ConnectOutcome::Refused(ConnectReturnCode::NotAuthorized)
    );
    assert_eq!(
        refused("made-up", Some(("sensor-999", "whatever"))),
        ConnectOutcome::Refused(ConnectReturnCode::BadUserNamePassword)
    );
    assert_eq!(
        refused("wrong", Some(("sensor-014", "not-the-password"))),
        ConnectOutcome::Refused(ConnectReturnCode::BadUserNamePassword)
    );
    assert_eq!(
        refused("old", Some(("sensor-015", revoked.as_str()))),
        ConnectOutcome::Refused(ConnectReturnCode::BadUserNamePassword)
    );
    assert!(
        app.try_mqtt("kerbside", Some(("$kerbside", "guess")))
            .is_err(),
        "nobody passes for kerbside itself"
    );

    // The right password gets in; nothing the others tried was stored.
    let ok = app.mqtt_as("s14", "sensor-014", &password);
    ok.send_events("sensor-014", &occupied("e-1", "QF-S-014"));
    wait_until("the registered sensor's event", || {
        app.bay_status("QF-S-014") == "occupied"
    });
    assert_eq!(app.metric("kerbside_events_accepted_total"), 1.0);
    assert_eq!(app.bay_status("QF-N-001"), "unknown");
}

#[test]
fn a_device_publishes_only_as_itself_and_cannot_forge_kerbsides_messages() {
    let app = registered_app();
    let admin = app.token(Role::Admin);
    let password = app.register_device(&admin, "sensor-014", "sensor");
    app.register_device(&admin, "sensor-001", "sensor");
    // Kerbside has published every bay's state once the first sweep ran.
    let before = app.metric("kerbside_sweeps_total");
    wait_until("a sweep", || app.metric("kerbside_sweeps_total") > before);

    let d = app.mqtt_as("s14", "sensor-014", &password);
    // As another sensor, onto kerbside's own topics, and retained.
    d.send_events("sensor-001", &occupied("forged-1", "QF-N-001"));
    d.publish(
        "kerbside/v1/devices/sensor-001/rejections",
        json!({"event_id": "x", "reason": "forged"}).to_string(),
    );
    let forged = json!({"bay_id": "QF-N-001", "road_id": "qingfeng-road", "status": "occupied",
        "since": at(-1), "updated_at": at(0), "forged": true});
    d.publish_retained("kerbside/v1/bays/QF-N-001/state", forged.to_string());
    // Then as itself: once this is stored, the forgeries would have been.
    d.send_events("sensor-014", &occupied("real-1", "QF-S-014"));
    wait_until("its own event", || app.bay_status("QF-S-014") == "occupied");

    assert_eq!(app.bay_status("QF-N-001"), "unknown");
    assert_eq!(app.metric("kerbside_events_accepted_total"), 1.0);
    assert_eq!(app.metric("kerbside_events_rejected_total"), 0.0);

    let sign_pw = app.register_device(&admin, "sign-1", "observer");
    let sign = app.mqtt_as("sign", "sign-1", &sign_pw);
    sign.subscribe("kerbside/v1/bays/QF-N-001/state");
    let state = sign.next_on("kerbside/v1/bays/QF-N-001/state");
    assert_eq!(
        state["status"], "unknown",
        "kerbside's state, not the forgery: {state}"
    );
    assert!(state.get("forged").is_none());

    // Reading: bay states and its own rejections, nothing else.
    assert!(d.try_subscribe("kerbside/v1/bays/+/state"));
    assert!(d.try_subscribe("kerbside/v1/devices/sensor-014/rejections"));
    assert!(!d.try_subscribe("kerbside/v1/devices/sensor-001/rejections"));
    assert!(!d.try_subscribe("kerbside/v1/devices/+/events"));
    assert!(!d.try_subscribe("#"));
    assert!(!sign.try_subscribe("kerbside/v1/devices/sign-1/rejections"));
}

#[test]
fn a_device_added_while_running_publishes_at_once_and_a_revoked_one_is_cut_off() {
    let app = registered_app();
    // Registered from another process, as an operator would at the console.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kerbside"))
        .args([
            "device",
            "add",
            "--id",
            "hh-07",
            "--kind",
            "handheld",
            "--name",
            "Warden Li",
        ])
        .args(["--database-url", &app.database_url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let password = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    let started = Instant::now();
    let hh = app.mqtt_as("hh-07", "hh-07", &password);
    hh.send_events("hh-07", &occupied("h-1", "QF-S-020"));
    wait_until("the new handheld's event", || {
        app.bay_status("QF-S-020") == "occupied"
    });
    assert!(started.elapsed() < Duration::from_secs(10));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kerbside"))
        .args([
            "device",
            "revoke",
            "--id",
            "hh-07",
            "--database-url",
            &app.database_url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Refused at once: a connection attempt is judged by the store.
    assert!(
        app.try_mqtt("hh-07-again", Some(("hh-07", &password)))
            .is_err()
    );
    wait_until_within("the revoked handheld is disconnected", 10, || {
        !hh.is_connected()
    });

    let list = std::process::Command::new(env!("CARGO_BIN_EXE_kerbside"))
        .args(["device", "list", "--database-url", &app.database_url])
        .output()
        .unwrap();
    let text = String::from_utf8(list.stdout).unwrap();
    let row = text
        .lines()
        .find(|l| l.starts_with("hh-07\t"))
        .expect("listed");
    assert!(row.contains("handheld\tWarden Li\t"), "{row}");
    assert!(!row.ends_with("\t-"), "revoked time shown: {row}");
    assert!(!text.contains(&password));
}

#[test]
fn a_new_subscriber_sees_all_136_retained_states() {
    let app = registered_app();
    let admin = app.token(Role::Admin);
    let before = app.metric("kerbside_sweeps_total");
    wait_until("a sweep", || app.metric("kerbside_sweeps_total") > before);
    let pw = app.register_device(&admin, "sign-1", "observer");
    let sign = app.mqtt_as("sign", "sign-1", &pw);
    sign.subscribe("kerbside/v1/bays/+/state");
    let mut bays = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while bays.len() < 136 && Instant::now() < deadline {
        for p in sign.drain(Duration::from_millis(200)) {
            assert!(
                p.retain,
                "states reach a new subscriber as retained messages"
            );
            bays.insert(p.topic);
        }
    }
    assert_eq!(bays.len(), 136);
}

#[test]
fn events_of_unregistered_devices_are_rejected_on_any_broker() {
    // A broker that lets anyone in (like the machine's Mosquitto): kerbside
    // itself refuses what an unregistered device sends.
    let dir = tempfile::tempdir().unwrap();
    let broker = crate::brokers::PrivateMosquitto::start(dir.path(), 100);
    let url = broker.url();
    let app = spawn_app_with(move |s| {
        s.devices = DeviceMode::Registered;
        s.mqtt_url = Some(url);
    });
    app.wait_for_broker();
    let ghost = crate::helpers::MqttClient::connect("ghost", "127.0.0.1", broker.port);
    ghost.subscribe("kerbside/v1/devices/ghost/rejections");
    ghost.send_events("ghost", &occupied("g-1", "QF-S-014"));
    let r = ghost.next_on("kerbside/v1/devices/ghost/rejections");
    assert_eq!(r["reason"], "unknown_device");
    assert_eq!(r["event_id"], "g-1");
    assert_eq!(app.bay_status("QF-S-014"), "unknown");
    assert_eq!(app.metric("kerbside_events_accepted_total"), 0.0);
}

#[test]
fn the_embedded_broker_acknowledges_an_event_only_once_it_is_stored() {
    let app = spawn_app_with(|_| {});
    app.wait_for_broker();
    // Another writer holds the store for three seconds.
    let lock = crate::testdb::WriteLock::take(&app.database_url);
    let locker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        lock.release();
    });

    let (client, acks) = crate::helpers::acking_client("127.0.0.1", app.broker.1);
    let sent = Instant::now();
    client
        .publish(
            "kerbside/v1/devices/s-ack/events",
            rumqttc::QoS::AtLeastOnce,
            false,
            occupied("a-1", "QF-S-014").to_string(),
        )
        .unwrap();
    assert!(
        acks.recv_timeout(Duration::from_millis(1500)).is_err(),
        "acknowledged while the store could not have it"
    );
    acks.recv_timeout(Duration::from_secs(15))
        .expect("acknowledged once stored");
    assert!(sent.elapsed() >= Duration::from_secs(2));
    assert_eq!(app.bay_status("QF-S-014"), "occupied");
    locker.join().unwrap();
}

#[test]
fn a_revoked_device_that_keeps_its_socket_open_is_heard_no_more() {
    use std::io::{Read, Write};
    let app = registered_app();
    let admin = app.token(Role::Admin);
    let password = app.register_device(&admin, "hh-09", "handheld");
    // A raw socket: no client library that politely closes when told to.
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", app.broker.1)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut connect = rumqttc::Connect::new("hh-09");
    connect.keep_alive = 60;
    connect.set_login("hh-09", password);
    let mut buf = bytes::BytesMut::new();
    rumqttc::Packet::Connect(connect)
        .write(&mut buf, 1 << 20)
        .unwrap();
    sock.write_all(&buf).unwrap();
    let mut connack = [0u8; 4];
    sock.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00], "accepted");

    assert_eq!(app.delete_as("/v1/devices/hh-09", &admin).status, 200);
    // The broker closes its side...
    let mut rest = [0u8; 16];
    assert_eq!(sock.read(&mut rest).unwrap_or(0), 0, "the broker hung up");
    // ...and whatever still comes down the socket goes nowhere.
    let mut publish = rumqttc::Publish::new(
        "kerbside/v1/devices/hh-09/events",
        rumqttc::QoS::AtLeastOnce,
        occupied("late-1", "QF-S-030").to_string(),
    );
    publish.pkid = 1;
    let mut buf = bytes::BytesMut::new();
    rumqttc::Packet::Publish(publish)
        .write(&mut buf, 1 << 20)
        .unwrap();
    let _ = sock.write_all(&buf);

    let other = app.register_device(&admin, "hh-10", "handheld");
    let d = app.mqtt_as("hh-10", "hh-10", &other);
    d.send_events("hh-10", &occupied("h-1", "QF-S-031"));
    wait_until("the other handheld's event", || {
        app.bay_status("QF-S-031") == "occupied"
    });
    assert_eq!(app.bay_status("QF-S-030"), "unknown");
    assert_eq!(
        app.metric("kerbside_events_rejected_total"),
        0.0,
        "the revoked device's publish never reached kerbside"
    );
}
