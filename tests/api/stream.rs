//! `GET /v1/stream` (contract 6.2): Server-Sent Events of a road's bays,
//! occupancy and, with a token, violations.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use kerbside::domain::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, at, spawn_app, spawn_app_with};
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
