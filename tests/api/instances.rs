//! Two instances on one PostgreSQL and one Mosquitto, taking device events
//! through a shared subscription: a few thousand events over every bay of
//! Qingfeng Road, with duplicates and events of one bay out of order, one
//! instance SIGKILLed mid-stream and started again. Both must then answer
//! the same occupancy, sessions and violations, and those must be what the
//! published events imply, each event stored once. A layout revision
//! published through one then reaches the other's street.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Duration, DurationRound, Timelike, Utc};
use kerbside::domain::auth::{Role, generate_token};
use kerbside::store::Store;
use serde_json::{Value, json};

use crate::brokers::PrivateMosquitto;
use crate::helpers::{geodata_dir, wait_until_within};
use crate::process::{Service, agent, get, healthy, parse};
use crate::testdb::{TestDb, postgres_server};

/// One instance of the deployment: its own client id on the shared
/// database and broker, a sweep every second, and no bay going stale during
/// the five hours the stream spans.
fn instance(name: &str, db: &str, broker: &str, timezone: &str) -> Service {
    Service::new(&[
        "--database-url",
        db,
        "--mqtt-url",
        broker,
        "--mqtt-client-id",
        name,
        "--geodata",
        geodata_dir().to_str().unwrap(),
        "--devices",
        "open",
        "--timezone",
        timezone,
        "--sweep-seconds",
        "1",
        "--staleness-minutes",
        "720",
    ])
}

/// Events an instance has stored as new since it started.
fn accepted(agent: &ureq::Agent, base: &str) -> f64 {
    let text = agent
        .get(format!("{base}/metrics"))
        .call()
        .and_then(|mut r| r.body_mut().read_to_string())
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("kerbside_events_accepted_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn ms(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A fixed-offset zone in which `now` is a little past 14:00, so that the
/// five hours before it fall within the bays' enforced 08:00-20:00.
fn afternoon_zone(now: DateTime<Utc>) -> String {
    let mut offset = (14 - now.hour() as i32).rem_euclid(24);
    if offset > 14 {
        offset -= 24;
    }
    match offset {
        0 => "Etc/GMT".to_owned(),
        // The Etc zones' signs are the POSIX ones: GMT-8 is eight hours ahead.
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    }
}

/// Every session of the road overlapping `[from, to)`, through the pages.
fn sessions(
    agent: &ureq::Agent,
    base: &str,
    token: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> BTreeSet<(String, DateTime<Utc>, Option<DateTime<Utc>>)> {
    let mut got = BTreeSet::new();
    let mut url = format!(
        "{base}/v1/roads/qingfeng-road/sessions?from={}&to={}&limit=1000",
        ms(from),
        ms(to)
    );
    loop {
        let page = get(agent, &url, token);
        for s in page["sessions"].as_array().expect("a page of sessions") {
            let fresh = got.insert((
                s["bay_id"].as_str().unwrap().to_owned(),
                parse(&s["started_at"]).unwrap(),
                parse(&s["ended_at"]),
            ));
            assert!(fresh, "a session listed twice: {s}");
        }
        match page["next"].as_str() {
            Some(next) => url = format!("{base}{next}"),
            None => return got,
        }
    }
}

/// The road's bays as `bay -> (status, since)`.
fn states(agent: &ureq::Agent, base: &str) -> BTreeMap<String, (String, Option<DateTime<Utc>>)> {
    let fc = get(agent, &format!("{base}/v1/roads/qingfeng-road/bays"), "");
    fc["features"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .map(|f| {
                    let p = &f["properties"];
                    (
                        p["bay_id"].as_str().unwrap().to_owned(),
                        (p["status"].as_str().unwrap().to_owned(), parse(&p["since"])),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The road's overstays as `(violation id, bay, session start)`.
fn overstays(agent: &ureq::Agent, base: &str, token: &str) -> BTreeSet<(String, String, String)> {
    let v = get(
        agent,
        &format!("{base}/v1/roads/qingfeng-road/violations?status=all"),
        token,
    );
    let list = v
        .as_array()
        .or_else(|| v["violations"].as_array())
        .unwrap_or_else(|| panic!("a list of violations: {v}"));
    // Judged while a stay was still open, an overstay of history sent all
    // at once is filed, then made void by the vacated event behind it.
    list.iter()
        .filter(|x| x["kind"] == "overstay" && x["status"] != "void")
        .map(|x| {
            (
                x["violation_id"].as_str().unwrap().to_owned(),
                x["bay_id"].as_str().unwrap_or_default().to_owned(),
                x["started_at"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The occupancy answer without its time of asking.
fn occupancy(agent: &ureq::Agent, base: &str) -> Value {
    let mut v = get(
        agent,
        &format!("{base}/v1/roads/qingfeng-road/occupancy"),
        "",
    );
    v.as_object_mut().map(|o| o.remove("as_of"));
    v
}

/// One published event: (bay, kind, observed at, event id).
type Published = (String, &'static str, DateTime<Utc>, String);

#[test]
fn two_instances_on_one_database_answer_alike_and_lose_nothing_when_one_is_killed() {
    let Some(server) = postgres_server() else {
        eprintln!(
            "two instances need PostgreSQL: this test runs in the suite's PostgreSQL pass \
             (KERBSIDE_TEST_DATABASE=postgres)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = PrivateMosquitto::start(dir.path(), 1000);
    let test_db = TestDb::postgres(&server);
    let store = Store::open(&test_db.url).unwrap();
    let token = generate_token();
    store
        .create_token("instances test", Role::Warden, &token.hash, Utc::now())
        .unwrap();
    let planner = generate_token();
    store
        .create_token(
            "instances planner",
            Role::Planner,
            &planner.hash,
            Utc::now(),
        )
        .unwrap();

    let now = Utc::now().duration_trunc(Duration::seconds(1)).unwrap();
    let zone = afternoon_zone(now);
    let mut a = instance("kerbside-a", &test_db.url, &broker.url(), &zone);
    let mut b = instance("kerbside-b", &test_db.url, &broker.url(), &zone);
    // Both at once, on an empty database: one migrates it and loads the
    // road, the other waits for the migrations and keeps that revision.
    a.start();
    b.start();
    let agent = agent();
    wait_until_within("both instances to be healthy", 60, || {
        healthy(&agent, &a.base_url) && healthy(&agent, &b.base_url)
    });
    let revisions = get(
        &agent,
        &format!("{}/v1/roads/qingfeng-road/layout/revisions", b.base_url),
        "",
    );
    let revisions = revisions
        .as_array()
        .or_else(|| revisions["revisions"].as_array())
        .unwrap_or_else(|| panic!("a list of revisions: {revisions}"))
        .len();
    assert_eq!(revisions, 1, "the road was loaded once");

    // Each bay: occupied and vacated in turn every 12 minutes from five
    // hours ago. Twelve of the two-hour bays hold their first car for 156
    // minutes (an overstay); every third bay ends occupied.
    let layout = kerbside::geodata::load_file(&geodata_dir().join("qingfeng-road.geojson"))
        .unwrap()
        .remove(0);
    let t0 = now - Duration::hours(5);
    let long: BTreeSet<String> = layout
        .bays
        .iter()
        .filter(|b| b.max_stay_minutes == Some(120))
        .take(12)
        .map(|b| b.bay_id.to_string())
        .collect();
    let mut events: Vec<Published> = Vec::new();
    for (n, bay) in layout.bays.iter().enumerate() {
        let id = bay.bay_id.to_string();
        let last = if n % 3 == 0 { 20 } else { 21 };
        for k in 0..=last {
            if long.contains(&id) && (1..=12).contains(&k) {
                continue;
            }
            let kind = if k % 2 == 0 { "occupied" } else { "vacated" };
            let at = t0 + Duration::minutes(12 * k) + Duration::seconds(7 * n as i64);
            events.push((id.clone(), kind, at, format!("{id}-{k}")));
        }
    }
    events.sort_by_key(|e| e.2);
    // Publishing order: by time, except that every fifth bay's fifth event
    // follows its sixth (late: that bay is replayed), and every ninth event
    // is sent again fifty messages later (a duplicate).
    let mut order: Vec<Published> = events.clone();
    for (n, bay) in layout.bays.iter().enumerate().step_by(5) {
        let id = bay.bay_id.to_string();
        let (i, j) = (
            order.iter().position(|e| e.3 == format!("{id}-4")),
            order.iter().position(|e| e.3 == format!("{id}-5")),
        );
        if let (Some(i), Some(j)) = (i, j) {
            order.swap(i, j);
        } else {
            assert!(long.contains(&id), "bay {n} has events 4 and 5");
        }
    }
    let mut sent: Vec<Published> = Vec::new();
    for (i, e) in order.iter().enumerate() {
        sent.push(e.clone());
        if i >= 50 && (i - 50) % 9 == 0 {
            sent.push(order[i - 50].clone());
        }
    }
    let total = sent.len();
    eprintln!(
        "{} events, {} published with duplicates, zone {zone}",
        events.len(),
        total
    );

    let acked = Arc::new(AtomicUsize::new(0));
    let mut options = rumqttc::MqttOptions::new("instances-publisher", "127.0.0.1", broker.port);
    options.set_inflight(100);
    let (client, mut connection) = rumqttc::Client::new(options, 1000);
    let counter = acked.clone();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                    if counter.fetch_add(1, Ordering::Relaxed) + 1 == total {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("publisher lost the broker: {e}"),
            }
        }
    });
    let publisher = std::thread::spawn(move || {
        for (i, (bay, kind, at, id)) in sent.iter().enumerate() {
            let body = json!({"event_id": id, "type": kind, "observed_at": ms(*at), "bay_id": bay});
            client
                .publish(
                    format!("kerbside/v1/devices/sensor-{bay}/events"),
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    body.to_string(),
                )
                .unwrap();
            // A steady stream rather than one burst, so that the kill
            // lands in the middle of it.
            if i % 100 == 99 {
                std::thread::sleep(std::time::Duration::from_millis(40));
            }
        }
    });

    wait_until_within("a third of the stream to reach the broker", 60, || {
        acked.load(Ordering::Relaxed) >= total / 3 && store.event_count().unwrap() > 0
    });
    // The shared subscription spreads the stream: both take part.
    wait_until_within("both instances to have stored events", 60, || {
        accepted(&agent, &a.base_url) > 0.0 && accepted(&agent, &b.base_url) > 0.0
    });
    b.kill();
    let at_kill = store.event_count().unwrap();
    eprintln!(
        "instance b killed with {at_kill} of {} events stored",
        events.len()
    );
    assert!(
        at_kill < events.len() as i64,
        "the kill came after the stream; nothing was tested"
    );
    wait_until_within("two thirds of the stream to reach the broker", 60, || {
        acked.load(Ordering::Relaxed) >= 2 * total / 3
    });
    b.start();
    publisher.join().unwrap();
    wait_until_within("every event to be stored, once", 120, || {
        store.event_count().unwrap() == events.len() as i64
    });
    wait_until_within("instance b to be healthy again", 60, || {
        healthy(&agent, &b.base_url)
    });
    eprintln!(
        "stored as new: a {}, b {} since its restart",
        accepted(&agent, &a.base_url),
        accepted(&agent, &b.base_url)
    );
    assert_eq!(store.rejection_count().unwrap(), 0, "no event was refused");

    // What the events imply, bay by bay.
    let mut per_bay: BTreeMap<&str, Vec<(&str, DateTime<Utc>)>> = BTreeMap::new();
    for (bay, kind, at, _) in &events {
        per_bay.entry(bay).or_default().push((kind, *at));
    }
    let mut expected_sessions = BTreeSet::new();
    let mut expected_states = BTreeMap::new();
    for (bay, evs) in &per_bay {
        for pair in evs.chunks(2) {
            expected_sessions.insert((bay.to_string(), pair[0].1, pair.get(1).map(|p| p.1)));
        }
        let (kind, at) = evs.last().unwrap();
        let status = if *kind == "occupied" {
            "occupied"
        } else {
            "free"
        };
        expected_states.insert(bay.to_string(), (status.to_owned(), Some(*at)));
    }
    // Bays with no event keep no state.
    let mut all_expected = expected_states.clone();
    for bay in &layout.bays {
        all_expected
            .entry(bay.bay_id.to_string())
            .or_insert(("unknown".to_owned(), None));
    }

    for (name, base) in [("a", &a.base_url), ("b", &b.base_url)] {
        let mut differ = Vec::new();
        let shown = || {
            differ = states(&agent, base)
                .into_iter()
                .filter(|(bay, s)| all_expected.get(bay) != Some(s))
                .map(|(bay, s)| format!("{bay}: {s:?}, not {:?}", all_expected.get(&bay)))
                .collect();
            differ.is_empty()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut shown = shown;
        while !shown() {
            assert!(
                std::time::Instant::now() < deadline,
                "instance {name}'s street differs from the events: {differ:#?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    let (from, to) = (t0 - Duration::minutes(1), now + Duration::minutes(1));
    let sessions_a = sessions(&agent, &a.base_url, &token.secret, from, to);
    let sessions_b = sessions(&agent, &b.base_url, &token.secret, from, to);
    assert_eq!(sessions_a.len(), expected_sessions.len());
    assert!(
        sessions_a == expected_sessions,
        "sessions differ from what the events imply"
    );
    assert!(
        sessions_a == sessions_b,
        "the instances list different sessions"
    );

    assert_eq!(
        occupancy(&agent, &a.base_url),
        occupancy(&agent, &b.base_url)
    );

    // One overstay per long first stay, filed once whichever instance (or
    // sweep) judged it.
    // Overstays: every stay longer than its bay's limit (all of the stream
    // lies in enforced hours), filed once whichever instance or sweep
    // judged it: the twelve long first stays, and the last stays of the
    // thirty-minute bays that end occupied.
    let limits: BTreeMap<String, i64> = layout
        .bays
        .iter()
        .filter_map(|b| Some((b.bay_id.to_string(), i64::from(b.max_stay_minutes?))))
        .collect();
    let expected_overstays: BTreeSet<(String, String)> = expected_sessions
        .iter()
        .filter(|(bay, start, end)| {
            limits
                .get(bay)
                .is_some_and(|m| end.unwrap_or(now) - *start > Duration::minutes(*m))
        })
        .map(|(bay, start, _)| {
            (
                bay.clone(),
                start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )
        })
        .collect();
    assert!(
        expected_overstays.len() > long.len(),
        "the stream holds overstays of both kinds"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let va = overstays(&agent, &a.base_url, &token.secret);
        let vb = overstays(&agent, &b.base_url, &token.secret);
        let got: BTreeSet<(String, String)> = va
            .iter()
            .map(|(_, bay, start)| {
                let t = DateTime::parse_from_rfc3339(start)
                    .unwrap()
                    .with_timezone(&Utc);
                (
                    bay.clone(),
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                )
            })
            .collect();
        if va == vb && va.len() == got.len() && got == expected_overstays {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "overstays differ: a {va:#?}, b {vb:#?}, expected {expected_overstays:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // A revision published through one instance reaches the other's street.
    let mut fc = get(
        &agent,
        &format!("{}/v1/roads/qingfeng-road/layout", a.base_url),
        "",
    );
    fc.as_object_mut().unwrap().remove("revision");
    let retired = layout.bays[0].bay_id.to_string();
    fc["features"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["id"] != retired.as_str());
    let put = agent
        .put(format!("{}/v1/roads/qingfeng-road/layout", a.base_url))
        .header("Authorization", format!("Bearer {}", planner.secret))
        .header("Content-Type", "application/json")
        .send(fc.to_string())
        .unwrap();
    assert_eq!(put.status(), 200, "the new revision is published");
    wait_until_within("instance b's street to lose the retired bay", 10, || {
        let on_b = states(&agent, &b.base_url);
        !on_b.is_empty() && !on_b.contains_key(&retired) && on_b.len() == layout.bays.len() - 1
    });
}
