//! `GET /v1/stream` (contract 6.2): Server-Sent Events of a road's bays,
//! occupancy and layout revisions and, with a token, violations and cases.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use kerbside::clock::Clock;
use kerbside::domain::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, at, default_now, geodata_dir, spawn_app, spawn_app_with};
use crate::violations::footway_point;

/// One message of the stream: (event, data) or a comment (`None`, text).
type Message = (Option<String>, String);

/// Reads the stream on a thread of its own, message by message.
struct Stream {
    rx: mpsc::Receiver<Message>,
    /// Every byte read, for what must never appear.
    raw: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Stream {
    fn open(app: &TestApp, query: &str, token: Option<&str>) -> Stream {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut req = agent.get(format!("{}/v1/stream{query}", app.base));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let resp = req.call().expect("GET /v1/stream");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let (tx, rx) = mpsc::channel();
        let raw = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let seen = raw.clone();
        std::thread::spawn(move || {
            let reader = BufReader::new(resp.into_body().into_reader());
            let (mut event, mut data) = (None, String::new());
            for line in reader.lines() {
                let Ok(line) = line else { return };
                seen.lock().unwrap().push_str(&format!("{line}\n"));
                if let Some(e) = line.strip_prefix("event: ") {
                    event = Some(e.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                } else if let Some(c) = line.strip_prefix(':') {
                    if tx.send((None, c.trim().to_owned())).is_err() {
                        return;
                    }
                } else if line.is_empty()
                    && event.is_some()
                    && tx.send((event.take(), std::mem::take(&mut data))).is_err()
                {
                    return;
                }
            }
        });
        Stream { rx, raw }
    }

    /// The next `event` message whose data satisfies `want`, within 10 s.
    fn next(&self, event: &str, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let (e, data) = self
                .rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {event} message within 10 s"));
            if e.as_deref() == Some(event) {
                let v: Value = serde_json::from_str(&data).expect("JSON data");
                if want(&v) {
                    return v;
                }
            }
        }
    }

    /// Every message that arrives within `within`.
    fn drain(&self, within: Duration) -> Vec<Message> {
        let deadline = std::time::Instant::now() + within;
        let mut out = Vec::new();
        while let Ok(m) = self
            .rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            out.push(m);
        }
        out
    }
}

#[test]
fn a_listener_gets_the_road_then_each_change_of_a_bay_and_its_counts() {
    let app = spawn_app();
    app.wait_for_broker();
    let s = Stream::open(&app, "?road=qingfeng-road", None);
    let first = s.next("occupancy", |_| true);
    assert_eq!(first["road_id"], "qingfeng-road");
    assert_eq!(first["bays"], 136);
    assert_eq!(first["occupied"], 0);
    // Then every bay as it stands.
    let mut bays = std::collections::BTreeSet::new();
    while bays.len() < 136 {
        let b = s.next("bay", |_| true);
        assert_eq!(b["road_id"], "qingfeng-road");
        assert_eq!(b["status"], "unknown");
        bays.insert(b["bay_id"].as_str().unwrap().to_owned());
    }

    let sensor = app.mqtt("s-stream");
    sensor.send_events(
        "s-stream",
        &json!({"event_id": "1", "type": "occupied", "observed_at": at(-2), "bay_id": "QF-S-014"}),
    );
    let b = s.next("bay", |v| v["bay_id"] == "QF-S-014");
    assert_eq!(
        b,
        json!({"bay_id": "QF-S-014", "road_id": "qingfeng-road", "status": "occupied",
               "since": kerbside::clock::rfc3339(
                   chrono::DateTime::parse_from_rfc3339(&at(-2)).unwrap().to_utc())})
    );
    let o = s.next("occupancy", |v| v["occupied"] == 1);
    assert_eq!(o["unknown"], 135);
    assert_eq!(o["by_kind"]["standard"]["occupied"], 1);
}

#[test]
fn an_unknown_road_is_404_and_a_bad_token_401() {
    let app = spawn_app();
    app.get("/v1/stream?road=no-such-road").problem(404);
    app.get("/v1/stream?road=Not%20An%20Id").problem(400);
    app.get("/v1/stream?road=qingfeng-road&token=not-a-token")
        .problem(401);
}

#[test]
fn the_public_stream_carries_no_plate_device_or_violation_and_a_warden_gets_violations() {
    let app = spawn_app();
    app.wait_for_broker();
    let warden = app.token(Role::Warden);
    let public = Stream::open(&app, "?road=qingfeng-road", None);
    let wardens = Stream::open(&app, &format!("?road=qingfeng-road&token={warden}"), None);
    let by_header = Stream::open(&app, "?road=qingfeng-road", Some(&app.token(Role::Planner)));
    let hh = app.mqtt("hh-stream-7");
    let (lon, lat) = footway_point();
    hh.send_events(
        "hh-stream-7",
        &json!([
            {"event_id": "seen", "type": "observed", "observed_at": at(-3), "plate": "浙F12345", "bay_id": "QF-S-020"},
            {"event_id": "van", "type": "report", "observed_at": at(-1), "category": "footway_parking",
             "plate": "浙F67890", "position": {"lon": lon, "lat": lat}},
        ]),
    );
    let v = wardens.next("violation", |v| v["kind"] == "footway_parking");
    assert_eq!(v["road_id"], "qingfeng-road");
    assert_eq!(v["status"], "open");
    assert!(v["violation_id"].as_str().unwrap().starts_with("v-"));
    by_header.next("violation", |v| v["kind"] == "footway_parking");

    // The public listener heard the bay change, and nothing more.
    let b = public.next("bay", |v| {
        v["bay_id"] == "QF-S-020" && v["status"] != "unknown"
    });
    assert_eq!(b["status"], "occupied");
    // Long enough for a violation sent its way to have come.
    public.drain(Duration::from_secs(2));
    let raw = public.raw.lock().unwrap().clone();
    assert!(
        !raw.contains("event: violation"),
        "a violation on the public stream"
    );
    for secret in ["浙F12345", "浙F67890", "hh-stream-7", "\"plate\"", "device"] {
        assert!(!raw.contains(secret), "{secret} on the public stream");
    }
}

#[test]
fn a_quiet_stream_sends_heartbeats() {
    let app = spawn_app_with(|s| s.stream_heartbeat_seconds = 1);
    let s = Stream::open(&app, "", None);
    let comments: Vec<String> = s
        .drain(Duration::from_millis(2_500))
        .into_iter()
        .filter_map(|(e, text)| e.is_none().then_some(text))
        .collect();
    assert!(
        comments.iter().filter(|c| *c == "heartbeat").count() >= 2,
        "{comments:?}"
    );
}

/// Qingfeng Road's current revision.
fn revision(app: &TestApp) -> i64 {
    app.get("/v1/roads/qingfeng-road/layout").json()["revision"]
        .as_i64()
        .unwrap()
}

#[test]
fn a_new_layout_revision_is_told_to_every_listener_of_the_road() {
    let app = spawn_app();
    let planner = app.token(Role::Planner);
    let road = Stream::open(&app, "?road=qingfeng-road", None);
    let all = Stream::open(&app, "", None);
    let before = revision(&app);
    let mut layout: Value = serde_json::from_slice(
        &std::fs::read(geodata_dir().join("qingfeng-road.geojson")).unwrap(),
    )
    .unwrap();
    layout["features"][1]["properties"]["max_stay_minutes"] = json!(45);
    let put = |query: &str| {
        app.put_as(
            &format!("/v1/roads/qingfeng-road/layout{query}"),
            &planner,
            "application/geo+json",
            None,
            &layout.to_string(),
        )
    };
    // A dry run publishes nothing, so tells nothing.
    assert_eq!(put("?dry_run=true").status, 200);
    assert_eq!(put("").status, 200);
    let want = json!({"road_id": "qingfeng-road", "revision": before + 1});
    assert_eq!(road.next("layout", |_| true), want);
    assert_eq!(all.next("layout", |_| true), want);

    // Another instance's publish, heard through the store's change notices
    // (PostgreSQL; on SQLite there is one process and nothing to hear).
    if app.store.backend() == kerbside::store::Backend::Postgres {
        let mut again = kerbside::geodata::load_file(&geodata_dir().join("qingfeng-road.geojson"))
            .unwrap()
            .remove(0);
        again.bays.retain(|b| b.bay_id.as_str() != "QF-S-066");
        app.store
            .publish_layout(
                &again,
                "another instance",
                None,
                Some(before + 1),
                default_now(),
            )
            .unwrap();
        assert_eq!(
            road.next("layout", |_| true),
            json!({"road_id": "qingfeng-road", "revision": before + 2})
        );
    }
}

#[test]
fn staff_hear_a_case_opened_and_resolved_and_the_public_never_does() {
    let app = spawn_app();
    let warden = app.token(Role::Warden);
    let public = Stream::open(&app, "?road=qingfeng-road", None);
    let staff = Stream::open(
        &app,
        &format!("?road=qingfeng-road&token={}", app.token(Role::Planner)),
        None,
    );
    let everywhere = Stream::open(&app, "", Some(&warden));
    let (lon, lat) = footway_point();
    let r = app.post_as(
        "/v1/cases",
        &warden,
        &json!({"kind": "obstruction", "position": {"lon": lon, "lat": lat},
                "note": "<b>crates</b> on the footway"})
        .to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["case_id"].as_str().unwrap().to_owned();
    let opened = staff.next("case", |c| c["case_id"] == id.as_str());
    // The case as GET /v1/cases lists it, field for field.
    let listed = app
        .get_as("/v1/cases?road_id=qingfeng-road", &warden)
        .json()["cases"][0]
        .clone();
    assert_eq!(opened, listed);
    assert_eq!(opened["status"], "open");
    assert_eq!(opened["note"], "<b>crates</b> on the footway");
    everywhere.next("case", |c| c["case_id"] == id.as_str());

    let r = app.post_as(
        &format!("/v1/cases/{id}/resolve"),
        &warden,
        &json!({"note": "cleared"}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let resolved = staff.next("case", |c| {
        c["case_id"] == id.as_str() && c["status"] == "resolved"
    });
    assert_eq!(resolved["resolved_at"], r.json()["resolved_at"]);

    // A case on no road (nowhere near one) goes to listeners of every road.
    let r = app.post_as(
        "/v1/cases",
        &warden,
        &json!({"kind": "other", "position": {"lon": lon + 0.05, "lat": lat + 0.05},
                "note": "far away"})
        .to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let far = r.json()["case_id"].as_str().unwrap().to_owned();
    let c = everywhere.next("case", |c| c["case_id"] == far.as_str());
    assert_eq!(c["road_id"], Value::Null);

    // Long enough for anything sent the public's way to have come.
    public.drain(Duration::from_secs(2));
    let raw = public.raw.lock().unwrap().clone();
    assert!(!raw.contains("event: case"), "a case on the public stream");
    assert!(!raw.contains(&id), "the case's id on the public stream");
    assert!(
        staff
            .drain(Duration::from_millis(100))
            .iter()
            .all(|(_, d)| !d.contains(&far)),
        "a case on no road sent to a road's listener"
    );
}

#[test]
fn a_case_changed_by_another_instance_is_told_too() {
    let app = spawn_app();
    let warden = app.token(Role::Warden);
    let staff = Stream::open(&app, "?road=qingfeng-road", Some(&warden));
    let (lon, lat) = footway_point();
    let r = app.post_as(
        "/v1/cases",
        &warden,
        &json!({"kind": "obstruction", "position": {"lon": lon, "lat": lat}, "note": "bricks"})
            .to_string(),
    );
    let id = r.json()["case_id"].as_str().unwrap().to_owned();
    staff.next("case", |c| c["case_id"] == id.as_str());
    // Written to the store by someone else (another instance's desk): this
    // instance learns of it only by reading the store.
    let done = app
        .store
        .resolve_case(&id, "another desk", Some("gone"), None, app.clock.now())
        .unwrap();
    assert!(matches!(done, kerbside::store::Resolved::Done(_)));
    let c = staff.next("case", |c| {
        c["case_id"] == id.as_str() && c["status"] == "resolved"
    });
    assert_eq!(c["status"], "resolved");
}

#[test]
fn a_case_escalated_when_its_deadline_passes_is_told() {
    let app = spawn_app();
    let warden = app.token(Role::Warden);
    let staff = Stream::open(&app, "?road=qingfeng-road", Some(&warden));
    let (lon, lat) = footway_point();
    let r = app.post_as(
        "/v1/cases",
        &warden,
        &json!({"kind": "obstruction", "position": {"lon": lon, "lat": lat}, "note": "scaffolding"})
            .to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let case = r.json();
    let id = case["case_id"].as_str().unwrap().to_owned();
    staff.next("case", |c| c["case_id"] == id.as_str());
    // No party answers for the place: escalated after the default deadline.
    let due = chrono::DateTime::parse_from_rfc3339(case["due_at"].as_str().unwrap()).unwrap();
    app.clock.set(due.to_utc());
    let c = staff.next("case", |c| {
        c["case_id"] == id.as_str() && c["status"] == "escalated"
    });
    assert_eq!(c["due_at"], case["due_at"]);
}
