//! Events over MQTT into the store and out through the API and the
//! retained state topics, on the embedded broker.

use kerbside::spatial::gcj02::wgs84_to_gcj02;
use serde_json::json;

use crate::helpers::{at, spawn_app, wait_until};

#[test]
fn an_occupied_event_shows_in_occupancy_and_the_bay() {
    let app = spawn_app();
    app.wait_for_broker();
    let sensor = app.mqtt("sensor-014");
    sensor.send_events(
        "sensor-014",
        &json!({"event_id": "e1", "type": "occupied", "observed_at": at(-8), "bay_id": "QF-S-014"}),
    );
    wait_until("QF-S-014 occupied", || {
        app.bay_status("QF-S-014") == "occupied"
    });
    let bay = app.get("/v1/bays/QF-S-014").json();
    assert_eq!(bay["since"], "2026-11-27T01:52:00Z");
    let o = app.get("/v1/roads/qingfeng-road/occupancy").json();
    assert_eq!(
        (o["occupied"].as_u64(), o["unknown"].as_u64()),
        (Some(1), Some(135))
    );
    assert_eq!(o["by_kind"]["standard"]["occupied"], 1);
    assert_eq!(o["occupancy_rate"], 1.0);
    assert_eq!(app.metric("kerbside_events_accepted_total"), 1.0);
}

#[test]
fn each_event_of_a_batch_is_accepted_or_rejected_alone_and_told() {
    let app = spawn_app();
    app.wait_for_broker();
    let handheld = app.mqtt("hh-1");
    handheld.subscribe("kerbside/v1/devices/hh-1/rejections");
    handheld.send_events("hh-1", &json!([
        {"event_id": "a", "type": "observed", "observed_at": at(-30), "bay_id": "QF-N-001", "plate": "浙F12345"},
        {"event_id": "b", "type": "observed", "observed_at": at(-29), "bay_id": "QF-N-999", "plate": "浙F1"},
        {"event_id": "c", "type": "observed", "observed_at": at(-28), "bay_id": "QF-N-002"},
        {"event_id": "d", "type": "vacated", "observed_at": at(60), "bay_id": "QF-N-003"},
        {"event_id": "e", "type": "occupied", "observed_at": at(-40 * 24 * 60), "bay_id": "QF-N-004"},
        {"event_id": "f", "type": "vacated", "observed_at": at(-1), "bay_id": "QF-N-005"},
    ]));
    let mut reasons = std::collections::BTreeMap::new();
    for _ in 0..4 {
        let r = handheld.next_on("kerbside/v1/devices/hh-1/rejections");
        assert!(r["detail"].as_str().is_some_and(|d| !d.is_empty()), "{r}");
        reasons.insert(
            r["event_id"].as_str().unwrap().to_owned(),
            r["reason"].as_str().unwrap().to_owned(),
        );
    }
    let expect = [
        ("b", "unknown_bay"),
        ("c", "malformed"),
        ("d", "clock_skew"),
        ("e", "too_old"),
    ];
    assert_eq!(
        reasons,
        expect
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    );
    wait_until("the good events applied", || {
        app.bay_status("QF-N-005") == "free"
    });
    assert_eq!(app.bay_status("QF-N-001"), "occupied");
    assert_eq!(app.metric("kerbside_events_accepted_total"), 2.0);
    assert_eq!(app.metric("kerbside_events_rejected_total"), 4.0);
}

#[test]
fn duplicates_change_nothing_and_are_counted() {
    let app = spawn_app();
    app.wait_for_broker();
    let s = app.mqtt("s-dup");
    let occupied = json!({"event_id": "same", "type": "occupied", "observed_at": at(-10), "bay_id": "QF-S-001"});
    for _ in 0..3 {
        s.send_events("s-dup", &occupied);
    }
    wait_until("three messages", || {
        app.metric("kerbside_events_accepted_total") + app.metric("kerbside_events_duplicate_total")
            == 3.0
    });
    assert_eq!(app.metric("kerbside_events_accepted_total"), 1.0);
    assert_eq!(app.metric("kerbside_events_duplicate_total"), 2.0);
    // The same event id from another device is another event.
    let other = app.mqtt("s-other");
    other.send_events("s-other", &json!({"event_id": "same", "type": "vacated", "observed_at": at(-5), "bay_id": "QF-S-001"}));
    wait_until("the other device's event", || {
        app.bay_status("QF-S-001") == "free"
    });
}

#[test]
fn a_late_event_lands_in_history_without_overwriting_a_newer_state() {
    let app = spawn_app();
    app.wait_for_broker();
    let warden = app.token(kerbside::domain::auth::Role::Warden);
    let s = app.mqtt("s-late");
    // Sent in the wrong order: the vacate (09:45) arrives before the arrival (09:40).
    s.send_events(
        "s-late",
        &json!({"event_id": "2", "type": "vacated", "observed_at": at(-15), "bay_id": "QF-S-010"}),
    );
    wait_until("the vacate", || app.bay_status("QF-S-010") == "free");
    s.send_events(
        "s-late",
        &json!({"event_id": "1", "type": "occupied", "observed_at": at(-20), "bay_id": "QF-S-010"}),
    );
    wait_until("the late arrival stored", || {
        app.metric("kerbside_events_accepted_total") == 2.0
    });
    let bay = app.get("/v1/bays/QF-S-010").json();
    assert_eq!(
        (bay["status"].as_str(), bay["since"].as_str()),
        (Some("free"), Some("2026-11-27T01:45:00Z"))
    );
    let sessions = app
        .get_as("/v1/roads/qingfeng-road/sessions", &warden)
        .json()["sessions"]
        .clone();
    assert_eq!(
        sessions,
        json!([{"bay_id": "QF-S-010", "started_at": "2026-11-27T01:40:00Z",
        "ended_at": "2026-11-27T01:45:00Z", "source": "sensor", "plate": null}])
    );
}

#[test]
fn positions_resolve_to_bays_in_either_datum() {
    let app = spawn_app();
    app.wait_for_broker();
    let layout =
        kerbside::geodata::load_file(&crate::helpers::geodata_dir().join("qingfeng-road.geojson"))
            .unwrap();
    let bay = |id: &str| {
        layout[0]
            .bays
            .iter()
            .find(|b| b.bay_id.as_str() == id)
            .unwrap()
            .polygon
            .clone()
    };
    let centre = |id: &str| {
        use geo::Centroid;
        bay(id).centroid().unwrap()
    };
    let hh = app.mqtt("hh-pos");
    let c = centre("QF-N-010");
    hh.send_events(
        "hh-pos",
        &json!({"event_id": "p1", "type": "observed", "observed_at": at(-3),
        "position": {"lon": c.x(), "lat": c.y()}, "plate": "浙F00001"}),
    );
    let c = centre("QF-S-020");
    let (glon, glat) = wgs84_to_gcj02(c.x(), c.y());
    hh.send_events(
        "hh-pos",
        &json!({"event_id": "p2", "type": "observed", "observed_at": at(-3),
        "position": {"lon": glon, "lat": glat}, "crs": "gcj02", "plate": "浙F00002"}),
    );
    wait_until("both sightings placed", || {
        app.bay_status("QF-N-010") == "occupied" && app.bay_status("QF-S-020") == "occupied"
    });
}

#[test]
fn a_position_far_from_any_bay_is_rejected_no_bay_nearby() {
    let app = spawn_app();
    app.wait_for_broker();
    let s = app.mqtt("s-far");
    s.subscribe("kerbside/v1/devices/s-far/rejections");
    s.send_events(
        "s-far",
        &json!({"event_id": "x", "type": "occupied", "observed_at": at(-1),
        "position": {"lon": 120.70, "lat": 30.70}}),
    );
    let r = s.next_on("kerbside/v1/devices/s-far/rejections");
    assert_eq!(
        (r["event_id"].as_str(), r["reason"].as_str()),
        (Some("x"), Some("no_bay_nearby"))
    );
}

#[test]
fn unreadable_payloads_are_rejected_as_malformed_and_the_service_goes_on() {
    let app = spawn_app();
    app.wait_for_broker();
    let d = app.mqtt("d-bad");
    d.subscribe("kerbside/v1/devices/d-bad/rejections");
    let topic = "kerbside/v1/devices/d-bad/events";
    d.publish(topic, "this is not json");
    d.publish(topic, vec![0xff, 0xfe, 0x7b, 0x7d]);
    d.publish(topic, vec![b' '; 300 * 1024]);
    d.publish(
        topic,
        json!({"event_id": ["x"], "type": 1, "observed_at": false}).to_string(),
    );
    for _ in 0..4 {
        let r = d.next_on("kerbside/v1/devices/d-bad/rejections");
        assert_eq!(r["reason"], "malformed", "{r}");
    }
    d.send_events(
        "d-bad",
        &json!({"event_id": "ok", "type": "occupied", "observed_at": at(-1), "bay_id": "QF-N-030"}),
    );
    wait_until("a good event after the bad ones", || {
        app.bay_status("QF-N-030") == "occupied"
    });
    assert_eq!(app.metric("kerbside_events_rejected_total"), 4.0);
}

#[test]
fn a_silent_bay_goes_unknown_and_a_heartbeat_keeps_it_fresh() {
    let app = spawn_app();
    app.wait_for_broker();
    let s = app.mqtt("s-stale");
    s.subscribe("kerbside/v1/bays/+/state");
    s.send_events(
        "s-stale",
        &json!([
            {"event_id": "1", "type": "occupied", "observed_at": at(-1), "bay_id": "QF-N-040"},
            {"event_id": "2", "type": "occupied", "observed_at": at(-1), "bay_id": "QF-N-041"},
        ]),
    );
    wait_until("both occupied", || {
        app.bay_status("QF-N-040") == "occupied" && app.bay_status("QF-N-041") == "occupied"
    });
    app.clock.advance(chrono::Duration::minutes(20));
    s.send_events(
        "s-stale",
        &json!({"event_id": "3", "type": "heartbeat", "observed_at": at(19), "bay_id": "QF-N-041"}),
    );
    wait_until("the heartbeat", || {
        app.metric("kerbside_events_accepted_total") == 3.0
    });
    app.clock.advance(chrono::Duration::minutes(12));
    // 32 minutes after its last event QF-N-040 is unknown; QF-N-041 heard 13 minutes ago is not.
    assert_eq!(app.bay_status("QF-N-040"), "unknown");
    assert_eq!(app.bay_status("QF-N-041"), "occupied");
    let b = app.get("/v1/bays/QF-N-040").json();
    assert_eq!(b["since"], "2026-11-27T02:29:00Z");
    // The sweep publishes the change on the retained state topic.
    let msg = s.wait_on("kerbside/v1/bays/QF-N-040/state", |m| {
        m["status"] == "unknown"
    });
    assert_eq!(msg["road_id"], "qingfeng-road");
}

#[test]
fn a_new_subscriber_sees_every_bays_retained_state() {
    let app = spawn_app();
    app.wait_for_broker();
    let s = app.mqtt("s-ret");
    s.send_events(
        "s-ret",
        &json!({"event_id": "1", "type": "occupied", "observed_at": at(-2), "bay_id": "QF-S-014"}),
    );
    wait_until("occupied", || app.bay_status("QF-S-014") == "occupied");
    let late = app.mqtt("dashboard");
    late.subscribe("kerbside/v1/bays/QF-S-014/state");
    let state = late.wait_on("kerbside/v1/bays/QF-S-014/state", |m| {
        m["status"] == "occupied"
    });
    assert_eq!(state["bay_id"], "QF-S-014");
    assert_eq!(state["since"], "2026-11-27T01:58:00Z");
    assert_eq!(state["updated_at"], "2026-11-27T02:00:00Z");
}

#[test]
fn a_redelivered_rejected_message_is_stored_once() {
    let app = spawn_app();
    app.wait_for_broker();
    let device = app.mqtt("hh-again");
    // As a broker redelivers a message whose acknowledgement was lost.
    for _ in 0..2 {
        device.publish("kerbside/v1/devices/hh-again/events", "{not json");
        device.send_events(
            "hh-again",
            &json!({"event_id": "x", "type": "occupied", "observed_at": at(-1), "bay_id": "QF-N-999"}),
        );
    }
    wait_until("every delivery judged", || {
        app.metric("kerbside_events_rejected_total") == 4.0
    });
    assert_eq!(app.store.rejection_count().unwrap(), 2);
}
