//! Violations and the warden's day: overstays by sensor and by chalking,
//! vehicles outside any bay, reports, tickets, and late evidence.

use kerbside::domain::auth::Role;
use kerbside::spatial::gcj02::wgs84_to_gcj02;
use serde_json::{Value, json};

use crate::helpers::{TestApp, geodata_dir, local, spawn_app, wait_until};

const QUEUE: &str = "/v1/roads/qingfeng-road/violations";

fn queue(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let r = app.get_as(&format!("{QUEUE}{query}"), token);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["violations"].as_array().unwrap().clone()
}

fn post(app: &TestApp, path: &str, token: &str, body: &str) -> crate::helpers::Reply {
    app.post_as(path, token, body)
}

#[test]
fn a_car_left_from_nine_is_an_open_overstay_at_eleven_and_is_ticketed_once() {
    let app = spawn_app();
    app.clock.set(local(9, 0));
    app.wait_for_broker();
    let warden = app.token(Role::Warden);
    let s = app.mqtt("sensor-s014");
    s.send_events("sensor-s014", &json!({"event_id": "1", "type": "occupied", "observed_at": local(9, 0).to_rfc3339(), "bay_id": "QF-S-014"}));
    wait_until("the arrival", || app.bay_status("QF-S-014") == "occupied");
    assert!(queue(&app, &warden, "").is_empty());

    // The sensor stays alive (a heartbeat) and nothing else happens: the
    // sweep files the overstay as time passes.
    app.clock.set(local(10, 50));
    s.send_events("sensor-s014", &json!({"event_id": "hb", "type": "heartbeat", "observed_at": local(10, 50).to_rfc3339(), "bay_id": "QF-S-014"}));
    wait_until("the heartbeat", || {
        app.metric("kerbside_events_accepted_total") == 2.0
    });
    app.clock.set(local(11, 0));
    wait_until("the overstay", || !queue(&app, &warden, "").is_empty());
    let v = &queue(&app, &warden, "")[0];
    assert_eq!(v["kind"], "overstay");
    assert_eq!(v["bay_id"], "QF-S-014");
    assert_eq!(v["road_id"], "qingfeng-road");
    assert_eq!(v["status"], "open");
    assert_eq!(v["started_at"], "2026-11-27T01:00:00Z");
    assert_eq!(v["detected_at"], "2026-11-27T03:00:00Z");
    assert_eq!(v["overstay_minutes"], 0);
    assert!(v["ended_at"].is_null());
    app.clock.set(local(11, 8));
    assert_eq!(queue(&app, &warden, "")[0]["overstay_minutes"], 8);
    // Sweeps and further events do not make a second one.
    s.send_events("sensor-s014", &json!({"event_id": "2", "type": "occupied", "observed_at": local(11, 5).to_rfc3339(), "bay_id": "QF-S-014"}));
    wait_until("the second event", || {
        app.metric("kerbside_events_accepted_total") == 3.0
    });
    app.wait_for_two_sweeps();
    assert_eq!(queue(&app, &warden, "?status=all").len(), 1);

    let id = v["violation_id"].as_str().unwrap();
    let r = post(
        &app,
        &format!("/v1/violations/{id}/ticket"),
        &warden,
        r#"{"note": "plate 浙F12345 confirmed"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "ticketed");
    let colleague = app.token(Role::Warden);
    let p = post(&app, &format!("/v1/violations/{id}/ticket"), &colleague, "").problem(409);
    assert!(p["detail"].as_str().unwrap().contains("ticketed"));
    post(
        &app,
        &format!("/v1/violations/{id}/dismiss"),
        &colleague,
        "",
    )
    .problem(409);

    let detail = app.get_as(&format!("/v1/violations/{id}"), &warden).json();
    let history = detail["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        (history[0]["status"].as_str(), history[0]["actor"].as_str()),
        (Some("open"), None)
    );
    assert_eq!(history[1]["status"], "ticketed");
    assert_eq!(history[1]["actor"], "test warden");
    assert_eq!(history[1]["note"], "plate 浙F12345 confirmed");
    assert_eq!(history[1]["at"], "2026-11-27T03:08:00Z");
    assert!(queue(&app, &warden, "").is_empty());
    assert_eq!(queue(&app, &warden, "?status=ticketed").len(), 1);
}

#[test]
fn two_sightings_of_one_plate_past_the_limit_are_an_overstay_without_a_sensor() {
    let app = spawn_app();
    app.clock.set(local(11, 12));
    app.wait_for_broker();
    let warden = app.token(Role::Warden);
    let hh = app.mqtt("hh-chalk");
    // QF-N-020 is a 30-minute loading bay, enforced 07:00-19:00.
    hh.send_events("hh-chalk", &json!({"event_id": "c1", "type": "observed", "observed_at": local(10, 35).to_rfc3339(), "bay_id": "QF-N-020", "plate": "浙F8B123"}));
    wait_until("the first sighting", || {
        app.metric("kerbside_events_accepted_total") == 1.0
    });
    assert!(
        queue(&app, &warden, "").is_empty(),
        "one sighting proves nothing"
    );
    hh.send_events("hh-chalk", &json!({"event_id": "c2", "type": "observed", "observed_at": local(11, 10).to_rfc3339(), "bay_id": "QF-N-020", "plate": "浙F8B123"}));
    wait_until("the chalk overstay", || {
        !queue(&app, &warden, "").is_empty()
    });
    let v = &queue(&app, &warden, "")[0];
    assert_eq!(
        (v["kind"].as_str(), v["plate"].as_str()),
        (Some("overstay"), Some("浙F8B123"))
    );
    assert_eq!(v["started_at"], "2026-11-27T02:35:00Z");
    assert_eq!(v["detected_at"], "2026-11-27T03:05:00Z");
    assert_eq!(v["overstay_minutes"], 5);
    let ids: Vec<&str> = v["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c1", "c2"]);
}

#[test]
fn a_different_plate_in_the_bay_is_no_overstay() {
    let app = spawn_app();
    app.clock.set(local(11, 12));
    app.wait_for_broker();
    let warden = app.token(Role::Warden);
    let hh = app.mqtt("hh-chalk2");
    hh.send_events("hh-chalk2", &json!([
        {"event_id": "c1", "type": "observed", "observed_at": local(10, 35).to_rfc3339(), "bay_id": "QF-N-020", "plate": "浙F1"},
        {"event_id": "c2", "type": "observed", "observed_at": local(11, 10).to_rfc3339(), "bay_id": "QF-N-020", "plate": "浙F2"},
    ]));
    wait_until("both sightings", || {
        app.metric("kerbside_events_accepted_total") == 2.0
    });
    app.wait_for_two_sweeps();
    assert!(queue(&app, &warden, "?status=all").is_empty());
}

#[test]
fn late_evidence_that_the_car_left_in_time_voids_the_overstay() {
    let app = spawn_app();
    app.clock.set(local(11, 30));
    app.wait_for_broker();
    let warden = app.token(Role::Warden);
    let s = app.mqtt("sensor-late");
    s.send_events("sensor-late", &json!([
        {"event_id": "1", "type": "occupied", "observed_at": local(9, 0).to_rfc3339(), "bay_id": "QF-S-002"},
        {"event_id": "hb", "type": "heartbeat", "observed_at": local(11, 20).to_rfc3339(), "bay_id": "QF-S-002"}]));
    wait_until("the overstay", || !queue(&app, &warden, "").is_empty());
    // The sensor's offline backlog: the car had left at 10:30.
    s.send_events("sensor-late", &json!([{"event_id": "2", "type": "vacated", "observed_at": local(10, 30).to_rfc3339(), "bay_id": "QF-S-002"}]));
    wait_until("the overstay voided", || {
        queue(&app, &warden, "").is_empty()
    });
    let all = queue(&app, &warden, "?status=all");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["status"], "void");
    let id = all[0]["violation_id"].as_str().unwrap();
    let history = app.get_as(&format!("/v1/violations/{id}"), &warden).json()["history"].clone();
    assert_eq!(
        history.as_array().unwrap().last().unwrap()["status"],
        "void"
    );
    assert_eq!(queue(&app, &warden, "?status=void").len(), 1);
}

#[test]
fn a_sensor_that_falls_silent_grows_no_overstay() {
    let app = spawn_app();
    app.clock.set(local(11, 30));
    app.wait_for_broker();
    let warden = app.token(Role::Warden);
    let s = app.mqtt("sensor-quiet");
    // A car from 9:00, then nothing from the sensor after 9:10: by 11:30 the
    // bay is unknown, and nothing shows the car stayed past 11:00.
    s.send_events("sensor-quiet", &json!([
        {"event_id": "1", "type": "occupied", "observed_at": local(9, 0).to_rfc3339(), "bay_id": "QF-S-003"},
        {"event_id": "2", "type": "heartbeat", "observed_at": local(9, 10).to_rfc3339(), "bay_id": "QF-S-003"}]));
    wait_until("the events", || {
        app.metric("kerbside_events_accepted_total") == 2.0
    });
    let sweeps = app.metric("kerbside_sweeps_total");
    wait_until("two sweeps", || {
        app.metric("kerbside_sweeps_total") >= sweeps + 2.0
    });
    assert_eq!(app.bay_status("QF-S-003"), "unknown");
    assert!(queue(&app, &warden, "?status=all").is_empty());
    // The sensor speaks again at 11:25, still seeing the car: now it is
    // known to have stayed past its limit.
    s.send_events("sensor-quiet", &json!({"event_id": "3", "type": "heartbeat", "observed_at": local(11, 25).to_rfc3339(), "bay_id": "QF-S-003"}));
    wait_until("the overstay", || !queue(&app, &warden, "").is_empty());
    let v = &queue(&app, &warden, "")[0];
    assert_eq!(v["started_at"], "2026-11-27T01:00:00Z");
    assert_eq!(v["detected_at"], "2026-11-27T03:00:00Z");
}

#[test]
fn a_car_from_half_past_seven_is_due_two_enforced_hours_later_at_ten() {
    let app = spawn_app();
    app.clock.set(local(9, 40));
    app.wait_for_broker();
    let warden = app.token(Role::Warden);
    let layout = app.get("/v1/roads/qingfeng-road/layout").json();
    let bay = layout["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "QF-S-040")
        .unwrap();
    assert_eq!(bay["properties"]["max_stay_minutes"], 120);
    assert_eq!(bay["properties"]["enforced_hours"], "08:00-20:00");
    // Parked at 07:30, before enforcement begins; the sensor stays alive.
    let s = app.mqtt("sensor-early");
    s.send_events("sensor-early", &json!([
        {"event_id": "1", "type": "occupied", "observed_at": local(7, 30).to_rfc3339(), "bay_id": "QF-S-040"},
        {"event_id": "2", "type": "heartbeat", "observed_at": local(9, 35).to_rfc3339(), "bay_id": "QF-S-040"}]));
    wait_until("the events", || {
        app.metric("kerbside_events_accepted_total") == 2.0
    });
    // Over two hours parked, but only 100 minutes enforced.
    app.wait_for_two_sweeps();
    assert!(queue(&app, &warden, "?status=all").is_empty());
    app.clock.set(local(9, 59));
    s.send_events("sensor-early", &json!({"event_id": "3", "type": "heartbeat", "observed_at": local(9, 58).to_rfc3339(), "bay_id": "QF-S-040"}));
    wait_until("the heartbeat", || {
        app.metric("kerbside_events_accepted_total") == 3.0
    });
    app.wait_for_two_sweeps();
    assert!(queue(&app, &warden, "?status=all").is_empty());
    // 10:00 local: the 120th enforced minute has passed; the sweep files it.
    app.clock.set(local(10, 1));
    wait_until("the overstay", || !queue(&app, &warden, "").is_empty());
    let v = &queue(&app, &warden, "")[0];
    assert_eq!(v["bay_id"], "QF-S-040");
    assert_eq!(v["started_at"], "2026-11-26T23:30:00Z");
    assert_eq!(v["detected_at"], "2026-11-27T02:00:00Z");
    assert_eq!(v["overstay_minutes"], 1);
}

/// A point on the footway at the road's west end, where there are no bays.
pub fn footway_point() -> (f64, f64) {
    let layout = kerbside::geodata::load_file(&geodata_dir().join("qingfeng-road.geojson"))
        .unwrap()
        .remove(0);
    let west = layout.road.centre_line.0[0];
    let f = kerbside::spatial::LocalFrame::at(west.x, west.y);
    let p = f.to_degrees(geo::Coord { x: 20.0, y: 12.0 });
    (p.x, p.y)
}

#[test]
fn a_van_on_the_footway_and_goods_piled_there_are_filed_on_the_road() {
    let app = spawn_app();
    app.wait_for_broker();
    let warden = app.token(Role::Warden);
    let hh = app.mqtt("hh-footway");
    let (lon, lat) = footway_point();
    let (glon, glat) = wgs84_to_gcj02(lon, lat);
    hh.send_events("hh-footway", &json!([
        {"event_id": "van", "type": "observed", "observed_at": crate::helpers::at(-2), "plate": "浙F99999",
         "position": {"lon": glon, "lat": glat}, "crs": "gcj02"},
        {"event_id": "goods", "type": "report", "observed_at": crate::helpers::at(-1), "category": "obstruction",
         "position": {"lon": lon + 0.0003, "lat": lat}, "note": "boxes of stock blocking the footway"},
    ]));
    wait_until("both filed", || queue(&app, &warden, "").len() == 2);
    let q = queue(&app, &warden, &format!("?near={lon},{lat}"));
    assert_eq!(q[0]["kind"], "outside_bay");
    assert_eq!(q[0]["plate"], "浙F99999");
    assert!(q[0]["overstay_minutes"].is_null());
    assert!(q[0]["distance_m"].as_f64().unwrap() < 0.5, "{}", q[0]);
    assert!((q[0]["position"]["lon"].as_f64().unwrap() - lon).abs() < 1e-7);
    assert_eq!(q[1]["kind"], "obstruction");
    assert_eq!(q[1]["note"], "boxes of stock blocking the footway");
    let d = q[1]["distance_m"].as_f64().unwrap();
    assert!((d - 28.7).abs() < 0.5, "{d}");
}

#[test]
fn the_violation_endpoints_check_who_asks() {
    let app = spawn_app();
    let (warden, planner) = (app.token(Role::Warden), app.token(Role::Planner));
    let admin = app.token(Role::Admin);
    app.get(QUEUE).problem(401);
    app.get("/v1/violations/v-0123456789abcdef").problem(401);
    app.post_as("/v1/violations/v-0123456789abcdef/ticket", "nope", "")
        .problem(401);
    app.post_as("/v1/violations/v-0123456789abcdef/ticket", &planner, "")
        .problem(403);
    app.post_as("/v1/violations/v-0123456789abcdef/dismiss", &planner, "")
        .problem(403);
    app.post_as("/v1/violations/v-0123456789abcdef/ticket", &warden, "")
        .problem(404);
    app.post_as("/v1/violations/v-0123456789abcdef/dismiss", &admin, "")
        .problem(404);
    app.get_as("/v1/violations/v-0123456789abcdef", &planner)
        .problem(404);
    app.get_as("/v1/violations/not%20an%20id", &planner)
        .problem(400);
    app.post_as(
        "/v1/violations/v-0123456789abcdef/ticket",
        &warden,
        "{not json",
    )
    .problem(400);
    app.get_as(&format!("{QUEUE}?near=north"), &warden)
        .problem(400);
    app.get_as(&format!("{QUEUE}?near=200,10"), &warden)
        .problem(400);
}

#[test]
fn plates_never_reach_public_answers() {
    let app = spawn_app();
    app.wait_for_broker();
    let hh = app.mqtt("hh-privacy");
    hh.send_events("hh-privacy", &json!({"event_id": "1", "type": "observed", "observed_at": crate::helpers::at(-2), "bay_id": "QF-N-001", "plate": "浙F55555"}));
    wait_until("the sighting", || app.bay_status("QF-N-001") == "occupied");
    // The car leaves: the bay where its plate was seen is offered again,
    // so the free-space search answers about it.
    hh.send_events("hh-privacy", &json!({"event_id": "2", "type": "vacated", "observed_at": crate::helpers::at(-1), "bay_id": "QF-N-001"}));
    wait_until("the departure", || app.bay_status("QF-N-001") == "free");
    let bay = app.get("/v1/roads/qingfeng-road/bays").json()["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "QF-N-001")
        .unwrap()["geometry"]["coordinates"][0][0]
        .clone();
    let free = format!(
        "/v1/public/free-spaces?lon={}&lat={}&radius_m=5000&limit=100",
        bay[0], bay[1]
    );
    assert_eq!(app.get(&free).json()["features"][0]["id"], "QF-N-001");
    for path in [
        "/v1/roads",
        "/v1/roads/qingfeng-road/occupancy",
        "/v1/roads/qingfeng-road/bays",
        "/v1/bays/QF-N-001",
        "/v1/public/roads",
        &free,
    ] {
        let body = app.get(path).body;
        assert!(!body.contains("F55555"), "{path}: {body}");
    }
}

#[test]
fn a_long_queue_comes_in_pages_that_link_to_the_next() {
    let app = spawn_app();
    app.wait_for_broker();
    let warden = app.token(Role::Warden);
    let hh = app.mqtt("hh-pages");
    let (lon, lat) = footway_point();
    let events: Vec<Value> = (0..5)
        .map(|i| {
            json!({"event_id": format!("van-{i}"), "type": "observed",
                   "observed_at": crate::helpers::at(-10 + i), "plate": format!("浙F0000{i}"),
                   "position": {"lon": lon + 0.00001 * f64::from(i as i32), "lat": lat}})
        })
        .collect();
    hh.send_events("hh-pages", &Value::Array(events));
    wait_until("all filed", || queue(&app, &warden, "").len() == 5);
    let everything: Vec<Value> = queue(&app, &warden, "");

    for first in [
        format!("{QUEUE}?limit=2"),
        format!("{QUEUE}?limit=2&near={lon},{lat}"),
    ] {
        let mut seen = Vec::new();
        let mut pages = 0;
        let mut url = Some(first.clone());
        while let Some(u) = url {
            let page = app.get_as(&u, &warden).json();
            let items = page["violations"].as_array().unwrap();
            assert!(items.len() <= 2, "{page}");
            seen.extend(items.iter().map(|v| v["violation_id"].clone()));
            pages += 1;
            url = page["next"].as_str().map(str::to_owned);
        }
        assert_eq!(pages, 3, "{first}");
        let mut unique: Vec<String> = seen.iter().map(|v| v.to_string()).collect();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 5, "{first}: every violation once: {seen:?}");
        if !first.contains("near") {
            let all: Vec<Value> = everything
                .iter()
                .map(|v| v["violation_id"].clone())
                .collect();
            assert_eq!(seen, all, "pages keep the newest-first order");
        }
    }
    let whole = app.get_as(QUEUE, &warden).json();
    assert!(whole["next"].is_null(), "{whole}");
    app.get_as(&format!("{QUEUE}?limit=0"), &warden)
        .problem(400);
    app.get_as(&format!("{QUEUE}?limit=10001"), &warden)
        .problem(400);
    app.get_as(&format!("{QUEUE}?after=nonsense"), &warden)
        .problem(400);
}
