//! The same ingest path on the machine's Mosquitto, the production kind of
//! broker. Tests here share that broker, so they run one at a time, each
//! with its own client id.

use std::sync::Mutex;

use serde_json::json;

use crate::brokers::machine_mosquitto;
use crate::helpers::{TestApp, at, rand_suffix, spawn_app_with, wait_until};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn app_on(url: &str, client_id: &str, database_url: Option<String>) -> TestApp {
    let (url, id) = (url.to_owned(), client_id.to_owned());
    spawn_app_with(move |s| {
        s.mqtt_url = Some(url);
        // The machine's broker serves every test at once: a group of its
        // own, or another test's instance would take this one's events.
        s.mqtt_share_group = id.clone();
        s.mqtt_client_id = id;
        if let Some(db) = database_url {
            s.database.database_url = db;
        }
    })
}

fn client_on(url: &str, id: &str) -> crate::helpers::MqttClient {
    let addr = url.trim_start_matches("mqtt://");
    let (host, port) = addr.rsplit_once(':').unwrap();
    crate::helpers::MqttClient::connect(id, host, port.parse().unwrap())
}

#[test]
fn events_flow_through_mosquitto_with_rejections_and_retained_states() {
    let Some(url) = machine_mosquitto() else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let app = app_on(&url, &format!("kerbside-test-{}", rand_suffix()), None);
    app.wait_for_broker();
    let device = format!("mq-{}", rand_suffix());
    let d = client_on(&url, &device);
    // The broker outlives test runs and keeps the bay's state retained: an
    // earlier run's must not pass for this one's. It is cleared, and the
    // arrival is dated to a millisecond of this run's own.
    d.publish_retained("kerbside/v1/bays/QF-S-031/state", "");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let arrived = crate::helpers::default_now()
        - chrono::Duration::minutes(3)
        - chrono::Duration::milliseconds(i64::from(nanos % 60_000));
    d.subscribe(&format!("kerbside/v1/devices/{device}/rejections"));
    d.subscribe("kerbside/v1/bays/QF-S-031/state");
    d.send_events(
        &device,
        &json!([
            {"event_id": "1", "type": "occupied", "observed_at": arrived.to_rfc3339(), "bay_id": "QF-S-031"},
            {"event_id": "2", "type": "occupied", "observed_at": at(-3), "bay_id": "QF-S-999"},
        ]),
    );
    let r = d.next_on(&format!("kerbside/v1/devices/{device}/rejections"));
    assert_eq!(
        (r["event_id"].as_str(), r["reason"].as_str()),
        (Some("2"), Some("unknown_bay"))
    );
    wait_until("QF-S-031 occupied", || {
        app.bay_status("QF-S-031") == "occupied"
    });
    let since = |m: &serde_json::Value| {
        m["since"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    };
    let state = d.wait_on("kerbside/v1/bays/QF-S-031/state", |m| {
        since(m).is_some_and(|t| t == arrived)
    });
    assert_eq!(state["status"], "occupied");
}

#[test]
fn events_published_while_kerbside_is_down_arrive_when_it_is_back() {
    let Some(url) = machine_mosquitto() else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let test_db = crate::helpers::TestDb::new();
    let db = test_db.url.clone();
    let client_id = format!("kerbside-test-{}", rand_suffix());
    let first = app_on(&url, &client_id, Some(db.clone()));
    first.wait_for_broker();
    drop(first);

    let device = format!("mq-{}", rand_suffix());
    let d = client_on(&url, &device);
    d.send_events(&device, &json!({"event_id": "while-down", "type": "occupied", "observed_at": at(-2), "bay_id": "QF-N-012"}));

    let back = app_on(&url, &client_id, Some(db));
    wait_until("the queued event", || {
        back.bay_status("QF-N-012") == "occupied"
    });
}
