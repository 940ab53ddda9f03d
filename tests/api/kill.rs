//! The kill test: 20,000 QoS 1 events published to a Mosquitto that queues
//! without limit, the service killed with SIGKILL mid-stream and started
//! again; every event must be accounted for exactly once, and the sessions
//! and final states must be what the published events imply.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Duration, DurationRound, Utc};
use kerbside::domain::auth::{Role, generate_token};
use kerbside::store::Store;
use serde_json::json;

use crate::brokers::PrivateMosquitto;
use crate::helpers::{geodata_dir, wait_until_within};
use crate::process::{Service, agent, get, parse};

const EVENTS: usize = 20_000;
const KILL_AFTER: usize = 6_000;

#[test]
fn killed_mid_stream_the_service_loses_nothing_and_counts_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let broker = PrivateMosquitto::start(dir.path(), 100);
    let test_db = crate::helpers::TestDb::new();
    let db = test_db.url.clone();
    let store = Store::open(&db).unwrap();
    let token = generate_token();
    store
        .create_token("kill test", Role::Warden, &token.hash, Utc::now())
        .unwrap();
    let mut service = Service::new(&[
        "--database-url",
        &db,
        "--mqtt-url",
        &broker.url(),
        "--mqtt-client-id",
        "kerbside-kill-test",
        "--geodata",
        geodata_dir().to_str().unwrap(),
        "--devices",
        "open",
    ]);
    let base_url = service.base_url.clone();
    service.start();
    let agent = agent();
    service.wait_healthy("the service to be healthy", 30);

    // Event i is about bay i % 136; each bay alternates occupied, vacated, ...
    let layout = kerbside::geodata::load_file(&geodata_dir().join("qingfeng-road.geojson"))
        .unwrap()
        .remove(0);
    let bays: Vec<String> = layout.bays.iter().map(|b| b.bay_id.to_string()).collect();
    let start = Utc::now()
        .duration_trunc(Duration::milliseconds(1))
        .unwrap()
        - Duration::minutes(15);
    let events: Vec<(String, &'static str, DateTime<Utc>)> = (0..EVENTS)
        .map(|i| {
            let kind = if (i / bays.len()).is_multiple_of(2) {
                "occupied"
            } else {
                "vacated"
            };
            (
                bays[i % bays.len()].clone(),
                kind,
                start + Duration::milliseconds(40 * i as i64),
            )
        })
        .collect();

    // Publish from a thread of its own, counting the broker's PUBACKs.
    let acked = Arc::new(AtomicUsize::new(0));
    let mut options = rumqttc::MqttOptions::new("kill-test-publisher", "127.0.0.1", broker.port);
    options.set_inflight(100);
    let (client, mut connection) = rumqttc::Client::new(options, 1000);
    let counter = acked.clone();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                    if counter.fetch_add(1, Ordering::Relaxed) + 1 == EVENTS {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("publisher lost the broker: {e}"),
            }
        }
    });
    let to_publish = events.clone();
    let publisher = std::thread::spawn(move || {
        for (i, (bay, kind, at)) in to_publish.iter().enumerate() {
            let device = format!("sensor-{bay}");
            let body = json!({"event_id": format!("e{i}"), "type": kind, "observed_at": at.to_rfc3339(), "bay_id": bay});
            client
                .publish(
                    format!("kerbside/v1/devices/{device}/events"),
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    body.to_string(),
                )
                .unwrap();
        }
    });

    // The kill must land mid-stream: some events stored, not all.
    wait_until_within(
        "a third of the events to reach the broker and the first to be stored",
        60,
        || acked.load(Ordering::Relaxed) >= KILL_AFTER && store.event_count().unwrap() > 0,
    );
    service.kill();
    let stored_at_kill = store.event_count().unwrap();
    eprintln!("killed with {stored_at_kill} of {EVENTS} events stored");
    assert!(
        stored_at_kill > 0,
        "the kill came before anything was stored; nothing was tested"
    );
    assert!(
        stored_at_kill < EVENTS as i64,
        "the kill came after the stream; nothing was tested"
    );
    service.start();
    publisher.join().unwrap();
    wait_until_within("every event to be stored", 120, || {
        store.event_count().unwrap() == EVENTS as i64
    });
    service.wait_healthy("the restarted service to be healthy", 30);
    assert_eq!(store.rejection_count().unwrap(), 0);

    // What the published events imply, bay by bay.
    let mut per_bay: BTreeMap<&str, Vec<(&str, DateTime<Utc>)>> = BTreeMap::new();
    for (bay, kind, at) in &events {
        per_bay.entry(bay).or_default().push((kind, *at));
    }
    let mut expected_sessions = BTreeSet::new();
    let mut expected_state = BTreeMap::new();
    for (bay, evs) in &per_bay {
        for pair in evs.chunks(2) {
            expected_sessions.insert((bay.to_string(), pair[0].1, pair.get(1).map(|p| p.1)));
        }
        let (kind, at) = evs.last().unwrap();
        expected_state.insert(
            bay.to_string(),
            (
                if *kind == "occupied" {
                    "occupied"
                } else {
                    "free"
                },
                *at,
            ),
        );
    }

    let mut got_sessions = BTreeSet::new();
    let mut url = format!(
        "{base_url}/v1/roads/qingfeng-road/sessions?from={}&to={}&limit=5000",
        (start - Duration::minutes(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        (Utc::now() + Duration::minutes(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );
    loop {
        let page = get(&agent, &url, &token.secret);
        for s in page["sessions"].as_array().expect("a page of sessions") {
            let fresh = got_sessions.insert((
                s["bay_id"].as_str().unwrap().to_owned(),
                parse(&s["started_at"]).unwrap(),
                parse(&s["ended_at"]),
            ));
            assert!(fresh, "a session listed twice: {s}");
        }
        match page["next"].as_str() {
            Some(next) => url = format!("{base_url}{next}"),
            None => break,
        }
    }
    assert_eq!(got_sessions.len(), expected_sessions.len());
    assert!(
        got_sessions == expected_sessions,
        "sessions differ from what the events imply"
    );

    let fc = get(
        &agent,
        &format!("{base_url}/v1/roads/qingfeng-road/bays"),
        &token.secret,
    );
    for f in fc["features"].as_array().unwrap() {
        let p = &f["properties"];
        let (status, since) = expected_state[p["bay_id"].as_str().unwrap()];
        assert_eq!(p["status"], status, "{}", p["bay_id"]);
        assert_eq!(parse(&p["since"]), Some(since), "{}", p["bay_id"]);
    }
}
