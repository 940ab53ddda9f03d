//! Evidence that stays put: fines rest on it. A violation a warden has
//! acted on is never rewritten by late evidence, only disputed; one stay
//! is one overstay; plates are shown only to those who need them and are
//! kept readable only as long as needed.

use chrono::Duration;
use kerbside::domain::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, local, spawn_app, wait_until};

const QUEUE: &str = "/v1/roads/qingfeng-road/violations";

fn all_violations(app: &TestApp, token: &str) -> Vec<Value> {
    let r = app.get_as(&format!("{QUEUE}?status=all"), token);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["violations"].as_array().unwrap().clone()
}

fn violation(app: &TestApp, token: &str, id: &str) -> Value {
    let r = app.get_as(&format!("/v1/violations/{id}"), token);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn accepted(app: &TestApp, n: f64) {
    wait_until(&format!("{n} events accepted"), || {
        app.metric("kerbside_events_accepted_total") == n
    });
}

/// A sensor saw a car from 09:00, still there at 11:20: an open overstay in
/// `bay`, which a warden tickets at 11:30. Returns the violation.
fn ticketed_overstay(app: &TestApp, warden: &str, device: &str, bay: &str) -> Value {
    let s = app.mqtt(device);
    s.send_events(device, &json!([
        {"event_id": "1", "type": "occupied", "observed_at": local(9, 0).to_rfc3339(), "bay_id": bay},
        {"event_id": "hb", "type": "heartbeat", "observed_at": local(11, 20).to_rfc3339(), "bay_id": bay}]));
    wait_until("the overstay", || {
        all_violations(app, warden)
            .iter()
            .any(|v| v["bay_id"] == bay)
    });
    let v = all_violations(app, warden)
        .into_iter()
        .find(|v| v["bay_id"] == bay)
        .unwrap();
    let id = v["violation_id"].as_str().unwrap();
    let r = app.post_as(&format!("/v1/violations/{id}/ticket"), warden, "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["disputed"], false);
    violation(app, warden, id)
}

#[test]
fn late_evidence_disputes_a_ticketed_overstay_without_rewriting_it() {
    let app = spawn_app();
    app.clock.set(local(11, 30));
    app.wait_for_broker();
    let warden = app.token(Role::Warden);
    let before = ticketed_overstay(&app, &warden, "sensor-t1", "QF-S-014");
    let id = before["violation_id"].as_str().unwrap();

    // The sensor's offline backlog: the car had left at 10:30, before its
    // limit. The ticket stands as written; the contradiction is recorded.
    app.mqtt("sensor-t1b").send_events("sensor-t1", &json!([
        {"event_id": "2", "type": "vacated", "observed_at": local(10, 30).to_rfc3339(), "bay_id": "QF-S-014"}]));
    accepted(&app, 3.0);
    let after = violation(&app, &warden, id);
    assert_eq!(after["status"], "ticketed");
    assert_eq!(after["disputed"], true, "{after}");
    for field in ["started_at", "detected_at", "ended_at", "plate", "evidence"] {
        assert_eq!(after[field], before[field], "{field} was rewritten");
    }
    let history = after["history"].as_array().unwrap();
    assert_eq!(history.len(), 3, "{after}");
    let last = &history[2];
    assert_eq!(last["status"], "ticketed");
    assert!(last["actor"].is_null());
    assert_eq!(
        last["note"],
        "disputed: later evidence shows no overstay (departure at 2026-11-27T02:30:00Z)"
    );
    // The warden's list shows it, still one violation.
    let all = all_violations(&app, &warden);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["disputed"], true);

    // Sweeps and repeated evidence record the finding once.
    let sweeps = app.metric("kerbside_sweeps_total");
    wait_until("two sweeps", || {
        app.metric("kerbside_sweeps_total") >= sweeps + 2.0
    });
    assert_eq!(
        violation(&app, &warden, id)["history"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn an_earlier_arrival_learned_late_is_still_one_overstay() {
    let app = spawn_app();
    app.clock.set(local(11, 30));
    app.wait_for_broker();
    let warden = app.token(Role::Warden);
    let ticketed = ticketed_overstay(&app, &warden, "sensor-t2", "QF-S-014");
    let tid = ticketed["violation_id"].as_str().unwrap().to_owned();
    // And an open one in another bay, from the same 09:00.
    let s = app.mqtt("sensor-t2o");
    s.send_events("sensor-t2o", &json!([
        {"event_id": "1", "type": "occupied", "observed_at": local(9, 0).to_rfc3339(), "bay_id": "QF-S-002"},
        {"event_id": "hb", "type": "heartbeat", "observed_at": local(11, 20).to_rfc3339(), "bay_id": "QF-S-002"}]));
    wait_until("the open overstay", || {
        all_violations(&app, &warden).len() == 2
    });
    let open = all_violations(&app, &warden)
        .into_iter()
        .find(|v| v["bay_id"] == "QF-S-002")
        .unwrap();
    let oid = open["violation_id"].as_str().unwrap().to_owned();

    // Each sensor's backlog: the car was there from 08:50 (the 09:00
    // event was a repeat). The same stays, so the same violations.
    s.send_events("sensor-t2o", &json!([
        {"event_id": "0", "type": "occupied", "observed_at": local(8, 50).to_rfc3339(), "bay_id": "QF-S-002"}]));
    app.mqtt("sensor-t2b").send_events("sensor-t2", &json!([
        {"event_id": "0", "type": "occupied", "observed_at": local(8, 50).to_rfc3339(), "bay_id": "QF-S-014"}]));
    accepted(&app, 6.0);
    let all = all_violations(&app, &warden);
    assert_eq!(all.len(), 2, "one stay, one overstay: {all:#?}");

    // The open one follows the evidence, under its id.
    let o = violation(&app, &warden, &oid);
    assert_eq!(o["status"], "open");
    assert_eq!(o["started_at"], "2026-11-27T00:50:00Z");
    assert_eq!(o["detected_at"], "2026-11-27T02:50:00Z");
    assert_eq!(o["disputed"], false);

    // The ticketed one keeps what it said, and is disputed.
    let t = violation(&app, &warden, &tid);
    assert_eq!(t["status"], "ticketed");
    assert_eq!(t["started_at"], ticketed["started_at"]);
    assert_eq!(t["detected_at"], ticketed["detected_at"]);
    assert_eq!(t["evidence"], ticketed["evidence"]);
    assert_eq!(t["disputed"], true);
    let note = t["history"].as_array().unwrap().last().unwrap()["note"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        note.contains(
            "arrival at 2026-11-27T00:50:00Z on later evidence, not 2026-11-27T01:00:00Z"
        ),
        "{note}"
    );
}

#[test]
fn a_departure_after_the_ticket_is_no_dispute() {
    let app = spawn_app();
    app.clock.set(local(11, 30));
    app.wait_for_broker();
    let warden = app.token(Role::Warden);
    let before = ticketed_overstay(&app, &warden, "sensor-t3", "QF-S-014");
    let id = before["violation_id"].as_str().unwrap();
    app.clock.set(local(11, 45));
    app.mqtt("sensor-t3b").send_events("sensor-t3", &json!([
        {"event_id": "2", "type": "vacated", "observed_at": local(11, 40).to_rfc3339(), "bay_id": "QF-S-014"}]));
    accepted(&app, 3.0);
    let after = violation(&app, &warden, id);
    assert_eq!(after["disputed"], false, "{after}");
    assert_eq!(after["ended_at"], "2026-11-27T03:40:00Z");
    assert_eq!(after["history"].as_array().unwrap().len(), 2);
    assert_eq!(after["started_at"], before["started_at"]);
    assert_eq!(after["evidence"], before["evidence"]);
}

#[test]
fn sessions_carry_plates_for_wardens_not_planners() {
    let app = spawn_app();
    app.clock.set(local(10, 0));
    app.wait_for_broker();
    let (warden, planner) = (app.token(Role::Warden), app.token(Role::Planner));
    app.mqtt("hh-plates").send_events(
        "hh-plates",
        &json!({"event_id": "1", "type": "observed",
        "observed_at": local(9, 50).to_rfc3339(), "bay_id": "QF-N-001", "plate": "浙A12121"}),
    );
    accepted(&app, 1.0);
    let path = "/v1/roads/qingfeng-road/sessions";
    let w = app.get_as(path, &warden).json();
    assert_eq!(w["sessions"][0]["plate"], "浙A12121", "{w}");
    let p = app.get_as(path, &planner);
    assert_eq!(p.status, 200);
    assert!(!p.body.contains("浙A12121"), "{}", p.body);
    let s = &p.json()["sessions"][0];
    assert!(s.get("plate").is_none(), "{s}");
    for field in ["bay_id", "started_at", "ended_at", "source"] {
        assert!(s.get(field).is_some(), "{field} missing: {s}");
    }
}

#[test]
fn an_import_is_credited_to_its_file_not_the_servers_path() {
    let app = spawn_app();
    let r = app.get("/v1/roads/qingfeng-road/layout/revisions").json();
    assert_eq!(
        r["revisions"][0]["created_by"], "import of qingfeng-road.geojson",
        "{r}"
    );
}

#[test]
fn plates_become_pseudonyms_a_day_after_the_parking_ends() {
    let app = spawn_app();
    app.clock.set(local(11, 0));
    app.wait_for_broker();
    let warden = app.token(Role::Warden);
    let hh = app.mqtt("hh-erase");
    let (lon, lat) = crate::violations::footway_point();
    hh.send_events("hh-erase", &json!([
        // One car parks twice, and leaves each time.
        {"event_id": "a1", "type": "observed", "observed_at": local(9, 0).to_rfc3339(), "bay_id": "QF-N-001", "plate": "浙A11111"},
        {"event_id": "a2", "type": "vacated", "observed_at": local(9, 30).to_rfc3339(), "bay_id": "QF-N-001"},
        {"event_id": "a3", "type": "observed", "observed_at": local(9, 40).to_rfc3339(), "bay_id": "QF-N-002", "plate": "浙A11111"},
        {"event_id": "a4", "type": "vacated", "observed_at": local(9, 50).to_rfc3339(), "bay_id": "QF-N-002"},
        // A van on the footway, dismissed; a chalked overstay, ticketed.
        {"event_id": "b1", "type": "observed", "observed_at": local(10, 0).to_rfc3339(), "plate": "浙A22222",
         "position": {"lon": lon, "lat": lat}},
        {"event_id": "c1", "type": "observed", "observed_at": local(9, 0).to_rfc3339(), "bay_id": "QF-N-020", "plate": "浙A33333"},
        {"event_id": "c2", "type": "observed", "observed_at": local(9, 40).to_rfc3339(), "bay_id": "QF-N-020", "plate": "浙A33333"},
    ]));
    accepted(&app, 7.0);
    let all = all_violations(&app, &warden);
    assert_eq!(all.len(), 2, "{all:#?}");
    for v in &all {
        let action = if v["kind"] == "outside_bay" {
            "dismiss"
        } else {
            "ticket"
        };
        let id = v["violation_id"].as_str().unwrap();
        let r = app.post_as(&format!("/v1/violations/{id}/{action}"), &warden, "");
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let sessions = format!(
        "/v1/roads/qingfeng-road/sessions?from={}&to={}",
        local(8, 0).to_rfc3339().replace('+', "%2B"),
        local(12, 0).to_rfc3339().replace('+', "%2B")
    );
    let plates = |app: &TestApp| -> Vec<(String, String)> {
        app.get_as(&sessions, &warden).json()["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["bay_id"].as_str().unwrap().to_owned(),
                    s["plate"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    // Within the day the plates are there, for chalking and for wardens.
    let sweeps = app.metric("kerbside_sweeps_total");
    wait_until("two sweeps", || {
        app.metric("kerbside_sweeps_total") >= sweeps + 2.0
    });
    assert!(
        plates(&app).iter().all(|(_, p)| p.starts_with("浙A")),
        "{:?}",
        plates(&app)
    );

    // A day and an hour later: nothing readable remains of the car that
    // left, nor of the dismissed van; the ticketed overstay keeps its plate.
    app.clock.advance(Duration::hours(25));
    let sweeps = app.metric("kerbside_sweeps_total");
    wait_until("two sweeps", || {
        app.metric("kerbside_sweeps_total") >= sweeps + 2.0
    });
    let after = plates(&app);
    let of = |bay: &str| after.iter().find(|(b, _)| b == bay).unwrap().1.clone();
    assert!(of("QF-N-001").starts_with("pseud:"), "{after:?}");
    assert_eq!(of("QF-N-001"), of("QF-N-002"), "one car, one pseudonym");
    assert_eq!(of("QF-N-020"), "浙A33333", "the chalked car is still there");
    let all = all_violations(&app, &warden);
    let plate_of = |kind: &str| {
        all.iter().find(|v| v["kind"] == kind).unwrap()["plate"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(plate_of("outside_bay").starts_with("pseud:"), "{all:#?}");
    assert_eq!(plate_of("overstay"), "浙A33333");
    for path in [sessions.as_str(), &format!("{QUEUE}?status=all")] {
        let body = app.get_as(path, &warden).body;
        assert!(
            !body.contains("浙A11111") && !body.contains("浙A22222"),
            "{body}"
        );
    }
}

#[test]
fn a_departure_before_the_ticket_learned_late_leaves_the_ticket_as_written() {
    let app = spawn_app();
    app.clock.set(local(11, 30));
    app.wait_for_broker();
    let warden = app.token(Role::Warden);
    let before = ticketed_overstay(&app, &warden, "sensor-t4", "QF-S-014");
    let id = before["violation_id"].as_str().unwrap();
    // Still an overstay (the limit passed at 11:00), but the car had gone
    // at 11:10, before the warden ticketed it at 11:30.
    app.mqtt("sensor-t4b").send_events("sensor-t4", &json!([
        {"event_id": "2", "type": "vacated", "observed_at": local(11, 10).to_rfc3339(), "bay_id": "QF-S-014"}]));
    accepted(&app, 3.0);
    let after = violation(&app, &warden, id);
    for field in ["started_at", "detected_at", "ended_at", "plate", "evidence"] {
        assert_eq!(after[field], before[field], "{field} was rewritten");
    }
    assert_eq!(after["status"], "ticketed");
    assert_eq!(after["disputed"], true, "{after}");
    let note = after["history"].as_array().unwrap().last().unwrap()["note"].clone();
    assert_eq!(
        note,
        "disputed: departure at 2026-11-27T03:10:00Z on later evidence, before 2026-11-27T03:30:00Z when it was known there"
    );
}
