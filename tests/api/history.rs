//! History (contract 6.3): metrics per hour and per day, the effect of a
//! change, and its chart, against a street whose figures are worked out
//! by hand below.

use chrono::{DateTime, TimeZone, Utc};
use kerbside::domain::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with, wait_until};

const ROAD: &str = "/v1/roads/qingfeng-road";

/// 2026-11-`day` at `h:m` in Shanghai, the deployment's zone.
fn sh(day: u32, h: u32, m: u32) -> DateTime<Utc> {
    chrono_tz::Asia::Shanghai
        .with_ymd_and_hms(2026, 11, day, h, m, 0)
        .unwrap()
        .with_timezone(&Utc)
}

fn ev(id: &str, kind: &str, at: DateTime<Utc>, bay: &str) -> Value {
    json!({"event_id": id, "type": kind, "observed_at": at.to_rfc3339(), "bay_id": bay})
}

/// The street of the hand computation (Shanghai, staleness 30 minutes),
/// all on 2026-11-28 unless said:
///
/// * QF-S-001: free 10:00, occupied 10:20, heartbeat 10:45, vacated
///   11:10, heartbeat 11:35. Known 10:00-12:05; a session 10:20-11:10
///   (50 min).
/// * QF-S-002: occupied 10:30, silent, vacated 12:00. Known 10:30-11:00
///   and 12:00-12:30; a session 10:30-12:00 (90 min), occupied and known
///   only 10:30-11:00.
/// * QF-S-003: occupied 12:00, heartbeats every 20 minutes to 14:40, no
///   departure. Known and occupied 12:00-15:10; past its 120 minutes at
///   14:00 in enforced hours: an overstay from 12:00.
/// * QF-N-001: occupied 23:30, heartbeats 23:50, 00:10 and 00:30 (the
///   29th), vacated 00:45. Known 23:30-01:15, a session of 75 minutes
///   counted on the 28th.
/// * A van outside any bay at 11:20, goods on the footway (obstruction)
///   at 11:30, a car on the footway at 11:40.
fn street_of_the_28th(app: &TestApp) {
    let (lon, lat) = crate::violations::footway_point();
    let mut events = vec![
        ev("a1", "vacated", sh(28, 10, 0), "QF-S-001"),
        ev("a2", "occupied", sh(28, 10, 20), "QF-S-001"),
        ev("b1", "occupied", sh(28, 10, 30), "QF-S-002"),
        ev("a3", "heartbeat", sh(28, 10, 45), "QF-S-001"),
        ev("a4", "vacated", sh(28, 11, 10), "QF-S-001"),
        json!({"event_id": "van", "type": "observed", "observed_at": sh(28, 11, 20).to_rfc3339(),
               "plate": "浙F99999", "position": {"lon": lon, "lat": lat}}),
        json!({"event_id": "goods", "type": "report", "observed_at": sh(28, 11, 30).to_rfc3339(),
               "category": "obstruction", "position": {"lon": lon + 0.0003, "lat": lat}}),
        ev("a5", "heartbeat", sh(28, 11, 35), "QF-S-001"),
        json!({"event_id": "kerb", "type": "report", "observed_at": sh(28, 11, 40).to_rfc3339(),
               "category": "footway_parking", "position": {"lon": lon + 0.0002, "lat": lat}}),
        ev("b2", "vacated", sh(28, 12, 0), "QF-S-002"),
        ev("d0", "occupied", sh(28, 12, 0), "QF-S-003"),
    ];
    for i in 1..=8 {
        let at = sh(28, 12, 0) + chrono::Duration::minutes(20 * i);
        events.push(ev(&format!("d{i}"), "heartbeat", at, "QF-S-003"));
    }
    events.extend([
        ev("c1", "occupied", sh(28, 23, 30), "QF-N-001"),
        ev("c2", "heartbeat", sh(28, 23, 50), "QF-N-001"),
        ev("c3", "heartbeat", sh(29, 0, 10), "QF-N-001"),
        ev("c4", "heartbeat", sh(29, 0, 30), "QF-N-001"),
        ev("c5", "vacated", sh(29, 0, 45), "QF-N-001"),
    ]);
    let n = events.len() as f64;
    let hh = app.mqtt("hist-handheld");
    hh.send_events("hist-handheld", &Value::Array(events));
    wait_until("the street of the 28th", || {
        app.metric("kerbside_events_accepted_total") == n
    });
}

fn get(app: &TestApp, token: &str, path: &str) -> Value {
    let r = app.get_as(path, token);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json()
}

fn metrics(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    get(app, token, &format!("{ROAD}/metrics?{query}"))["buckets"]
        .as_array()
        .unwrap()
        .clone()
}

fn q(t: DateTime<Utc>) -> String {
    t.to_rfc3339().replace('+', "%2B")
}

/// The measures of a bucket as `[occupancy, sessions, turnover, dwell,
/// unknown, overstays, outside_bay, obstructions, footway_parking]`.
fn figures(b: &Value) -> Vec<Value> {
    [
        "occupancy_percent",
        "sessions",
        "turnover_per_bay",
        "average_dwell_minutes",
        "unknown_percent",
        "overstays",
        "outside_bay",
        "obstructions",
        "footway_parking",
    ]
    .iter()
    .map(|k| b[*k].clone())
    .collect()
}

#[test]
fn hourly_and_daily_metrics_and_the_effect_agree_with_the_hand_computation() {
    let app = spawn_app();
    app.clock.set(sh(30, 10, 0));
    app.wait_for_broker();
    street_of_the_28th(&app);
    let warden = app.token(Role::Warden);
    let planner = app.token(Role::Planner);

    // Hours 10, 11 and 12 of the 28th. 136 bays, each 60 minutes an hour:
    // 8160 bay-minutes.
    let body = get(
        &app,
        &warden,
        &format!(
            "{ROAD}/metrics?bucket=hour&from={}&to={}",
            q(sh(28, 10, 0)),
            q(sh(28, 13, 0))
        ),
    );
    assert_eq!(body["road_id"], "qingfeng-road");
    assert_eq!(body["time_zone"], "Asia/Shanghai");
    assert_eq!(body["bucket"], "hour");
    let b = body["buckets"].as_array().unwrap();
    assert_eq!(b.len(), 3);
    assert_eq!(b[0]["start"], "2026-11-28T10:00:00+08:00");
    assert_eq!(b[2]["end"], "2026-11-28T13:00:00+08:00");
    for x in b {
        assert_eq!(x["bays"], 136);
    }
    // 10:00: known 60 (S-001) + 30 (S-002) = 90 min, occupied 40 + 30 = 70:
    // 77.78 %; two sessions (50 and 90 min): 70 min; 2 per 136 bays;
    // unknown (8160 - 90) / 8160 = 98.90 %.
    assert_eq!(
        figures(&b[0]),
        vec![
            json!(77.78),
            json!(2),
            json!(0.01),
            json!(70.0),
            json!(98.9),
            json!(0),
            json!(0),
            json!(0),
            json!(0)
        ]
    );
    // 11:00: known 60 (S-001 only; S-002 is stale), occupied 10: 16.67 %.
    assert_eq!(
        figures(&b[1]),
        vec![
            json!(16.67),
            json!(0),
            json!(0.0),
            Value::Null,
            json!(99.26),
            json!(0),
            json!(1),
            json!(1),
            json!(1)
        ]
    );
    // 12:00: known 5 (S-001) + 30 (S-002) + 60 (S-003) = 95, occupied 60:
    // 63.16 %; S-003's session, still open, has no dwell; its overstay.
    assert_eq!(
        figures(&b[2]),
        vec![
            json!(63.16),
            json!(1),
            json!(0.01),
            Value::Null,
            json!(98.84),
            json!(1),
            json!(0),
            json!(0),
            json!(0)
        ]
    );

    // One bay: QF-S-001 alone.
    let one = metrics(
        &app,
        &warden,
        &format!(
            "bucket=hour&bay_id=QF-S-001&from={}&to={}",
            q(sh(28, 10, 0)),
            q(sh(28, 13, 0))
        ),
    );
    let occ: Vec<Value> = one.iter().map(|x| x["occupancy_percent"].clone()).collect();
    assert_eq!(occ, vec![json!(66.67), json!(16.67), json!(0.0)]);
    let unk: Vec<Value> = one.iter().map(|x| x["unknown_percent"].clone()).collect();
    assert_eq!(unk, vec![json!(0.0), json!(0.0), json!(91.67)]);
    assert_eq!(one[0]["bays"], 1);
    assert_eq!(one[0]["average_dwell_minutes"], 50.0);
    assert_eq!(
        one[1]["outside_bay"], 0,
        "a bay's metrics hold only its own violations"
    );
    // The loading bays heard nothing: no occupancy, all unknown.
    let loading = metrics(
        &app,
        &warden,
        &format!(
            "bucket=hour&kind=loading&from={}&to={}",
            q(sh(28, 10, 0)),
            q(sh(28, 11, 0))
        ),
    );
    assert_eq!(loading[0]["bays"], 8);
    assert!(loading[0]["occupancy_percent"].is_null());
    assert_eq!(loading[0]["unknown_percent"], 100.0);

    // Days of the 28th and 29th, local midnight to midnight. The 28th:
    // known 125 + 60 + 190 + 30 = 405 min, occupied 50 + 30 + 190 + 30 =
    // 300: 74.07 %; four sessions, three ended (50, 90, 75): 71.67 min;
    // 136 x 1440 = 195840 bay-minutes, 99.79 % unknown. The 29th: S-N-001's
    // 75 known minutes, 45 occupied: 60 %.
    let days = metrics(
        &app,
        &planner,
        &format!("bucket=day&from={}&to={}", q(sh(28, 0, 0)), q(sh(30, 0, 0))),
    );
    assert_eq!(days.len(), 2);
    assert_eq!(days[0]["start"], "2026-11-28T00:00:00+08:00");
    assert_eq!(
        figures(&days[0]),
        vec![
            json!(74.07),
            json!(4),
            json!(0.03),
            json!(71.67),
            json!(99.79),
            json!(1),
            json!(1),
            json!(1),
            json!(1)
        ]
    );
    assert_eq!(days[1]["occupancy_percent"], 60.0);
    assert_eq!(days[1]["sessions"], 0);
    // A day is the sum of its hours.
    let hours = metrics(
        &app,
        &planner,
        &format!(
            "bucket=hour&from={}&to={}",
            q(sh(28, 0, 0)),
            q(sh(29, 0, 0))
        ),
    );
    assert_eq!(hours.len(), 24);
    let sum = |k: &str| hours.iter().map(|h| h[k].as_i64().unwrap()).sum::<i64>();
    for k in [
        "sessions",
        "overstays",
        "outside_bay",
        "obstructions",
        "footway_parking",
    ] {
        assert_eq!(sum(k), days[0][k].as_i64().unwrap(), "{k}");
    }

    // The effect of a change at midnight, a day each side: the two days.
    let effect = get(
        &app,
        &planner,
        &format!("{ROAD}/effect?pivot={}&days=1", q(sh(29, 0, 0))),
    );
    assert_eq!(effect["days"], 1);
    let (before, after, change) = (&effect["before"], &effect["after"], &effect["change"]);
    assert_eq!(before["occupancy_percent"], days[0]["occupancy_percent"]);
    assert_eq!(
        before["average_dwell_minutes"],
        days[0]["average_dwell_minutes"]
    );
    assert_eq!(before["turnover_per_bay_day"], days[0]["turnover_per_bay"]);
    assert_eq!(before["overstays_per_day"], 1.0);
    assert_eq!(before["outside_bay_per_day"], 1.0);
    assert_eq!(before["obstructions_per_day"], 1.0);
    assert_eq!(before["footway_parking_per_day"], 1.0);
    // 405 / 195840 and 75 / 195840 of the bay-time known.
    assert_eq!(before["coverage_percent"], 0.21);
    assert_eq!(after["coverage_percent"], 0.04);
    assert_eq!(after["occupancy_percent"], days[1]["occupancy_percent"]);
    assert_eq!(after["turnover_per_bay_day"], 0.0);
    assert!(after["average_dwell_minutes"].is_null());
    assert_eq!(change["occupancy_percent"], -14.07);
    assert_eq!(change["overstays_per_day"], -1.0);
    assert!(change["average_dwell_minutes"].is_null());
    let codes: Vec<&str> = effect["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, vec!["low_coverage", "low_coverage"], "{effect}");

    // The chart of the same report: SVG that parses, naming every measure
    // and the coverage.
    let r = app.get_as(
        &format!("{ROAD}/effect.svg?pivot={}&days=1", q(sh(29, 0, 0))),
        &planner,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.content_type.starts_with("image/svg+xml"),
        "{}",
        r.content_type
    );
    let doc = roxmltree::Document::parse(&r.body).expect("the chart is XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let text: String = doc
        .descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("\n");
    for title in [
        "Occupancy",
        "Turnover",
        "Average dwell",
        "Overstays per day",
        "Parked outside a bay per day",
        "Obstructions per day",
        "Footway parking per day",
        "Sensor coverage: 0.21% before, 0.04% after",
        "change: -14.07",
        "74.07",
    ] {
        assert!(text.contains(title), "the chart lacks {title:?}:\n{text}");
    }
}

#[test]
fn a_late_departure_rewrites_the_hours_it_touches() {
    let app = spawn_app();
    app.clock.set(sh(30, 10, 0));
    app.wait_for_broker();
    street_of_the_28th(&app);
    let warden = app.token(Role::Warden);
    let window = format!(
        "bucket=hour&from={}&to={}",
        q(sh(28, 12, 0)),
        q(sh(28, 14, 0))
    );
    let before = metrics(&app, &warden, &window);
    assert_eq!(before[0]["overstays"], 1);
    assert!(before[0]["average_dwell_minutes"].is_null());
    assert_eq!(before[1]["occupancy_percent"], 100.0);

    // A handheld's offline batch: QF-S-003 was left at 13:30, before its
    // limit. Its session is 90 minutes, counted at 12:00; 13:00 is half
    // occupied; the overstay is void and no longer counts.
    let hh = app.mqtt("hist-late");
    hh.send_events(
        "hist-late",
        &ev("late", "vacated", sh(28, 13, 30), "QF-S-003"),
    );
    wait_until("the late departure", || {
        app.metric("kerbside_events_accepted_total") == 25.0
    });
    let after = metrics(&app, &warden, &window);
    assert_eq!(after[0]["average_dwell_minutes"], 90.0);
    assert_eq!(after[0]["overstays"], 0);
    assert_eq!(after[1]["occupancy_percent"], 50.0);
}

#[test]
fn berlin_days_that_change_the_clocks_have_23_and_25_hourly_buckets() {
    let app = spawn_app_with(|s| s.timezone = chrono_tz::Europe::Berlin);
    let planner = app.token(Role::Planner);
    let spring = chrono_tz::Europe::Berlin
        .with_ymd_and_hms(2027, 3, 28, 0, 0, 0)
        .unwrap()
        .with_timezone(&Utc);
    app.clock.set(spring + chrono::Duration::days(2));
    let b = metrics(
        &app,
        &planner,
        "bucket=hour&from=2027-03-28T00:00:00%2B01:00&to=2027-03-29T00:00:00%2B02:00",
    );
    assert_eq!(b.len(), 23);
    assert_eq!(b[1]["start"], "2027-03-28T01:00:00+01:00");
    assert_eq!(b[2]["start"], "2027-03-28T03:00:00+02:00");
    assert!(
        b.iter()
            .all(|x| x["bays"] == 136 && x["unknown_percent"] == 100.0)
    );
    let d = metrics(
        &app,
        &planner,
        "bucket=day&from=2027-03-27T00:00:00%2B01:00&to=2027-03-30T00:00:00%2B02:00",
    );
    let starts: Vec<&str> = d.iter().map(|x| x["start"].as_str().unwrap()).collect();
    assert_eq!(
        starts,
        vec![
            "2027-03-27T00:00:00+01:00",
            "2027-03-28T00:00:00+01:00",
            "2027-03-29T00:00:00+02:00"
        ]
    );

    let autumn = chrono_tz::Europe::Berlin
        .with_ymd_and_hms(2027, 10, 31, 0, 0, 0)
        .unwrap()
        .with_timezone(&Utc);
    app.clock.set(autumn + chrono::Duration::days(2));
    let b = metrics(
        &app,
        &planner,
        "bucket=hour&from=2027-10-31T00:00:00%2B02:00&to=2027-11-01T00:00:00%2B01:00",
    );
    assert_eq!(b.len(), 25);
    assert_eq!(b[2]["start"], "2027-10-31T02:00:00+02:00");
    assert_eq!(b[3]["start"], "2027-10-31T02:00:00+01:00");
    let body = get(
        &app,
        &planner,
        &format!(
            "{ROAD}/metrics?bucket=day&from=2027-10-31T00:00:00%2B02:00&to=2027-11-01T00:00:00%2B01:00"
        ),
    );
    assert_eq!(body["time_zone"], "Europe/Berlin");
    assert_eq!(body["buckets"].as_array().unwrap().len(), 1);
}

#[test]
fn bad_questions_get_a_problem_not_an_answer() {
    let app = spawn_app();
    let warden = app.token(Role::Warden);
    let planner = app.token(Role::Planner);
    let bad = |path: &str, token: &str, status: u16| {
        app.get_as(path, token).problem(status);
    };
    bad(&format!("{ROAD}/metrics?bucket=week"), &warden, 400);
    bad(&format!("{ROAD}/metrics?from=yesterday"), &warden, 400);
    bad(&format!("{ROAD}/metrics?kind=lorry"), &warden, 400);
    bad(&format!("{ROAD}/metrics?bay_id=no%20such"), &warden, 400);
    bad(
        &format!("{ROAD}/metrics?from=2026-11-27T00:00:00Z&to=2026-11-26T00:00:00Z"),
        &warden,
        422,
    );
    bad(
        &format!("{ROAD}/metrics?bucket=hour&from=2024-01-01T00:00:00Z&to=2026-11-27T00:00:00Z"),
        &warden,
        422,
    );
    bad(&format!("{ROAD}/metrics?bay_id=QF-X-999"), &warden, 404);
    bad("/v1/roads/no-such-road/metrics", &warden, 404);
    bad(&format!("{ROAD}/effect?days=0"), &planner, 422);
    bad(&format!("{ROAD}/effect?days=many"), &planner, 400);
    bad(
        &format!("{ROAD}/effect?pivot=2030-01-01T00:00:00Z"),
        &planner,
        422,
    );
    bad(&format!("{ROAD}/effect.svg?pivot=soon"), &planner, 400);
    // Wardens read metrics, not effect reports; nobody without a token.
    bad(&format!("{ROAD}/effect"), &warden, 403);
    assert_eq!(app.get(&format!("{ROAD}/metrics")).status, 401);
    assert_eq!(app.get(&format!("{ROAD}/effect.svg")).status, 401);
    // The defaults answer: the last 24 hours, and the latest revision as
    // the pivot (the import, an hour ago: no "before" on the layout).
    app.clock
        .set(crate::helpers::default_now() + chrono::Duration::hours(1));
    assert_eq!(metrics(&app, &warden, "").len(), 24);
    let e = get(&app, &planner, &format!("{ROAD}/effect"));
    assert_eq!(e["pivot"], "2026-11-27T02:00:00Z");
    assert_eq!(e["days"], 14);
    assert!(e["before"]["coverage_percent"].is_null());
    assert!(
        e["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["code"] == "short_after")
    );
}
