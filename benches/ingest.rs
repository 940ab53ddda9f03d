//! Ingest benchmark: durable events/s beside a bare MQTT subscriber on the
//! same broker in the same run, then publish-to-visible latency at a fixed
//! rate, then the same durable ingest through the embedded broker (whose
//! acknowledgements to the publisher wait for kerbside's commits).
//!
//! ```sh
//! cargo bench --bench ingest                      # private Mosquitto, 20,000 events
//! cargo bench --bench ingest -- --events 50000 --inflight 1000 --rate 1000 --seconds 10
//! cargo bench --bench ingest -- --postgres        # and then on PostgreSQL: one instance, two
//! ```
//!
//! It starts a Mosquitto of its own on a free port (`max_queued_messages 0`,
//! `max_inflight_messages` from `--inflight`) and kerbside in-process on a
//! fresh SQLite file. With `--postgres` it goes on to the same durable
//! ingest on PostgreSQL (a fresh database on the server
//! `KERBSIDE_BENCH_DATABASE` names, default the machine's, dropped after):
//! one instance, then two in this process taking the events through one
//! shared subscription, with the transactions they committed per second.
//! All parts share the machine's cores.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DurationRound, Utc};
use kerbside::app::Application;
use kerbside::clock::SystemClock;
use kerbside::config::Settings;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::sync::mpsc;

#[path = "../tests/support/mosquitto.rs"]
mod mosquitto;
mod support;

struct Args {
    events: usize,
    inflight: u32,
    rate: u64,
    seconds: u64,
}

fn args() -> Args {
    let n = |name: &str, default: u64| support::num(name).map_or(default, |v| v as u64);
    Args {
        events: n("--events", 20_000) as usize,
        inflight: n("--inflight", 1000) as u32,
        rate: n("--rate", 1000),
        seconds: n("--seconds", 10),
    }
}

/// Drives a client's event loop, forwarding incoming publishes.
fn drive(
    mut eventloop: rumqttc::EventLoop,
    tx: Option<mpsc::UnboundedSender<(Instant, rumqttc::Publish)>>,
) {
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Some(tx) = &tx
                        && tx.send((Instant::now(), p)).is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("mqtt: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
}

fn event_payload(i: usize, bays: &[String], start: chrono::DateTime<Utc>) -> (String, String) {
    support::sensor_event(
        i,
        bays,
        start + chrono::Duration::milliseconds(i as i64),
        "bench",
    )
}

/// Device connections publishing to the embedded broker.
const DEVICE_CONNECTIONS: usize = 4;

async fn publish_all(client: &AsyncClient, payloads: Vec<(String, String)>) {
    for (topic, body) in payloads {
        client
            .publish(topic, QoS::AtLeastOnce, false, body)
            .await
            .expect("publish");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = mosquitto::PrivateMosquitto::start(dir.path(), a.inflight);
    let bays = support::shipped_bays();
    println!(
        "broker: private Mosquitto, max_inflight_messages {}, max_queued_messages 0",
        a.inflight
    );

    // 1. A bare subscriber: QoS 1, acknowledging on receipt, storing nothing.
    let (sub, sub_loop) = AsyncClient::new(support::options("bench-bare-sub", broker.port), 10_000);
    let (tx, mut rx) = mpsc::unbounded_channel();
    drive(sub_loop, Some(tx));
    sub.subscribe("bench/bare/+/events", QoS::AtLeastOnce)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (publisher, pub_loop) =
        AsyncClient::new(support::options("bench-pub", broker.port), 10_000);
    drive(pub_loop, None);
    let start = Utc::now()
        .duration_trunc(chrono::Duration::milliseconds(1))
        .unwrap()
        - chrono::Duration::minutes(10);
    let payloads: Vec<(String, String)> = (0..a.events)
        .map(|i| {
            let (topic, body) = event_payload(i, &bays, start);
            (topic.replace("kerbside/v1/devices", "bench/bare"), body)
        })
        .collect();
    let t0 = Instant::now();
    let p = publisher.clone();
    tokio::spawn(async move { publish_all(&p, payloads).await });
    for _ in 0..a.events {
        rx.recv().await.expect("bare subscriber message");
    }
    let bare = a.events as f64 / t0.elapsed().as_secs_f64();
    println!(
        "bare rumqttc subscriber (QoS 1):      {bare:>9.0} msg/s   ({} messages)",
        a.events
    );

    // 2. kerbside: durable, one message per event.
    let mut settings = Settings::defaults();
    settings.database.database_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    settings.http = "127.0.0.1:0".into();
    settings.mqtt_url = Some(broker.url());
    settings.mqtt_client_id = "kerbside-bench".into();
    settings.devices = kerbside::devices::DeviceMode::Open;
    let app = Application::build(settings, Arc::new(SystemClock))
        .await
        .expect("kerbside starts");
    let state = app.state();
    tokio::spawn(app.run());
    while !state.mqtt.is_connected() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let payloads: Vec<(String, String)> = (0..a.events)
        .map(|i| event_payload(i, &bays, start))
        .collect();
    let t0 = Instant::now();
    let p = publisher.clone();
    tokio::spawn(async move { publish_all(&p, payloads).await });
    while state.metrics.events_accepted.load(Ordering::Relaxed) < a.events as u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let durable = a.events as f64 / t0.elapsed().as_secs_f64();
    let batches = state.metrics.batches.load(Ordering::Relaxed);
    println!(
        "kerbside durable ingest (QoS 1):       {durable:>9.0} events/s ({} events, {batches} transactions, {:.2}x bare)",
        a.events,
        durable / bare
    );

    // 3. Publish-to-visible at a fixed rate: every event flips its bay, so
    // each one yields a retained state message once committed and visible.
    let (watch, watch_loop) =
        AsyncClient::new(support::options("bench-watch", broker.port), 10_000);
    let (tx, mut rx) = mpsc::unbounded_channel();
    drive(watch_loop, Some(tx));
    watch
        .subscribe("kerbside/v1/bays/+/state", QoS::AtMostOnce)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    while rx.try_recv().is_ok() {}
    let n = (a.rate * a.seconds) as usize;
    let offset = a.events + (bays.len() - a.events % bays.len()) % bays.len();
    // Per bay, events not yet visible: (event time, publish instant). A state
    // message for a bay makes visible every pending event of it at or before
    // its `since` (batching can coalesce two flips of one bay into one state).
    type Pending = HashMap<String, Vec<(chrono::DateTime<Utc>, Instant)>>;
    let sent: Arc<std::sync::Mutex<Pending>> = Default::default();
    let sent_w = sent.clone();
    let p = publisher.clone();
    let bays2 = bays.clone();
    let rate = a.rate;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for i in offset..offset + n {
            tick.tick().await;
            let (topic, body) = event_payload(i, &bays2, start);
            let at = start + chrono::Duration::milliseconds(i as i64);
            sent_w
                .lock()
                .unwrap()
                .entry(bays2[i % bays2.len()].clone())
                .or_default()
                .push((at, Instant::now()));
            p.publish(topic, QoS::AtLeastOnce, false, body)
                .await
                .unwrap();
        }
    });
    let mut latencies = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(a.seconds + 30);
    while latencies.len() < n && Instant::now() < deadline {
        let Ok(Some((arrived, msg))) =
            tokio::time::timeout(Duration::from_secs(5), rx.recv()).await
        else {
            break;
        };
        let v: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
        let (Some(bay), Some(since)) = (v["bay_id"].as_str(), v["since"].as_str()) else {
            continue;
        };
        let since = chrono::DateTime::parse_from_rfc3339(since)
            .unwrap()
            .with_timezone(&Utc);
        if let Some(pending) = sent.lock().unwrap().get_mut(bay) {
            pending.retain(|(at, t)| {
                let visible = *at <= since;
                if visible {
                    latencies.push(arrived.duration_since(*t).as_secs_f64() * 1000.0);
                }
                !visible
            });
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "publish-to-visible at {} events/s:  p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  ({} of {} seen)",
        a.rate,
        pct(0.5),
        pct(0.99),
        pct(1.0),
        latencies.len(),
        n
    );

    // 4. The same durable ingest, flat out, through the embedded broker: a
    // second kerbside on a fresh store, publishing as a device would.
    let mut settings = Settings::defaults();
    settings.database.database_url =
        format!("sqlite://{}", dir.path().join("embedded.db").display());
    settings.http = "127.0.0.1:0".into();
    settings.mqtt_listen = Some("127.0.0.1:0".into());
    settings.devices = kerbside::devices::DeviceMode::Open;
    let app = Application::build(settings, Arc::new(SystemClock))
        .await
        .expect("kerbside starts on the embedded broker");
    let embedded_state = app.state();
    let embedded_port = app.mqtt_port();
    tokio::spawn(app.run());
    while !embedded_state.mqtt.is_connected() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A street's devices are many connections, each waiting for its own
    // acknowledgements: a few publishers share the events.
    let devices: Vec<AsyncClient> = (0..DEVICE_CONNECTIONS)
        .map(|k| {
            let (c, l) = AsyncClient::new(
                support::options(&format!("bench-device-{k}"), embedded_port),
                10_000,
            );
            drive(l, None);
            c
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut shares: Vec<Vec<(String, String)>> = vec![Vec::new(); DEVICE_CONNECTIONS];
    for i in 0..a.events {
        shares[i % DEVICE_CONNECTIONS].push(event_payload(i, &bays, start));
    }
    let t0 = Instant::now();
    for (device, share) in devices.into_iter().zip(shares) {
        tokio::spawn(async move { publish_all(&device, share).await });
    }
    while embedded_state
        .metrics
        .events_accepted
        .load(Ordering::Relaxed)
        < a.events as u64
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let embedded = a.events as f64 / t0.elapsed().as_secs_f64();
    println!(
        "kerbside durable ingest, embedded broker: {embedded:>9.0} events/s ({} events from {DEVICE_CONNECTIONS} connections, {} transactions, {:.2}x through Mosquitto)",
        a.events,
        embedded_state.metrics.batches.load(Ordering::Relaxed),
        embedded / durable
    );
    let mut summary = serde_json::json!({"bare_msgs_per_s": bare.round(), "durable_events_per_s": durable.round(),
        "ratio": (durable / bare * 100.0).round() / 100.0, "rate": a.rate,
        "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0),
        "embedded_events_per_s": embedded.round()});

    // 5. PostgreSQL: one instance, then two sharing the subscription.
    if std::env::args().any(|a| a == "--postgres") {
        for instances in [1, 2] {
            let db = support::PgDatabase::create(&format!("ingest{instances}"));
            let mut states = Vec::new();
            for k in 0..instances {
                let mut settings = Settings::defaults();
                settings.database.database_url = db.url.clone();
                settings.http = "127.0.0.1:0".into();
                settings.mqtt_url = Some(broker.url());
                settings.mqtt_client_id = format!("kerbside-bench-pg{instances}-{k}");
                settings.mqtt_share_group = format!("bench-pg{instances}");
                settings.devices = kerbside::devices::DeviceMode::Open;
                let app = Application::build(settings, Arc::new(SystemClock))
                    .await
                    .expect("kerbside starts on PostgreSQL");
                let state = app.state();
                tokio::spawn(app.run());
                while !state.mqtt.is_connected() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                states.push(state);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let tag = format!("pg{instances}-");
            let payloads: Vec<(String, String)> = (0..a.events)
                .map(|i| {
                    support::sensor_event(
                        i,
                        &bays,
                        start + chrono::Duration::milliseconds(i as i64),
                        &tag,
                    )
                })
                .collect();
            let accepted = |states: &[actix_web::web::Data<kerbside::http::AppState>]| {
                states
                    .iter()
                    .map(|s| s.metrics.events_accepted.load(Ordering::Relaxed))
                    .sum::<u64>()
            };
            let t0 = Instant::now();
            let p = publisher.clone();
            tokio::spawn(async move { publish_all(&p, payloads).await });
            while accepted(&states) < a.events as u64 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let secs = t0.elapsed().as_secs_f64();
            let rate = a.events as f64 / secs;
            let per: Vec<u64> = states
                .iter()
                .map(|s| s.metrics.batches.load(Ordering::Relaxed))
                .collect();
            let commits = per.iter().sum::<u64>() as f64 / secs;
            let shares: Vec<u64> = states
                .iter()
                .map(|s| s.metrics.events_accepted.load(Ordering::Relaxed))
                .collect();
            println!(
                "kerbside durable ingest, PostgreSQL, {instances} instance(s): {rate:>9.0} events/s, {commits:.0} commits/s ({:.2}x bare; events per instance {shares:?})",
                rate / bare
            );
            summary[format!("postgres_{instances}_events_per_s")] = rate.round().into();
            summary[format!("postgres_{instances}_commits_per_s")] = commits.round().into();
            if instances == 1 {
                let bytes = stored_bytes(&db.url);
                println!(
                    "  on disk: {:.0} bytes per event (events, keys and sessions with their indexes)",
                    bytes as f64 / a.events as f64
                );
                summary["postgres_bytes_per_event"] =
                    (bytes as f64 / a.events as f64).round().into();
            }
            if instances == 2 {
                let (p50, p99, max) =
                    visible_everywhere(&publisher, &states, &bays, start, a.events).await;
                println!(
                    "  visible on both instances at 200 events/s: p50 {p50:.1} ms  p99 {p99:.1} ms  max {max:.1} ms"
                );
                summary["postgres_2_visible_p99_ms"] = p99.into();
            }
            // The instances stop with the runtime; the database goes now.
            drop(states);
            drop(db);
        }
    }
    println!("{summary}");
}

/// Publishes 1,000 flips at 200 a second through the shared subscription
/// and measures, per event, the time from publishing until both instances'
/// streets show it (the one that stored it, and the other through its
/// change notice): (p50, p99, max) in ms.
async fn visible_everywhere(
    publisher: &AsyncClient,
    states: &[actix_web::web::Data<kerbside::http::AppState>],
    bays: &[String],
    start: chrono::DateTime<Utc>,
    offset: usize,
) -> (f64, f64, f64) {
    const N: usize = 1000;
    // Past the throughput run's events, on a whole round of the street, so
    // that every event flips its bay.
    let offset = offset + (bays.len() - offset % bays.len()) % bays.len() + bays.len();
    let ids: Vec<kerbside::domain::ids::BayId> = bays
        .iter()
        .map(|b| kerbside::domain::ids::BayId::parse(b).expect("bay id"))
        .collect();
    let mut pending: Vec<(usize, chrono::DateTime<Utc>, Instant)> = Vec::new();
    let mut latencies = Vec::with_capacity(N);
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while (sent < N || !pending.is_empty()) && Instant::now() < deadline {
        tick.tick().await;
        if sent < N {
            let i = offset + sent;
            let at = start + chrono::Duration::milliseconds(i as i64);
            let (topic, body) = support::sensor_event(i, bays, at, "vis-");
            pending.push((i % bays.len(), at, Instant::now()));
            publisher
                .publish(topic, QoS::AtLeastOnce, false, body)
                .await
                .expect("publish");
            sent += 1;
        }
        let now = Utc::now();
        pending.retain(|(bay, at, t)| {
            let everywhere = states.iter().all(|s| {
                s.street
                    .report(&ids[*bay], now)
                    .since
                    .is_some_and(|since| since >= *at)
            });
            if everywhere {
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            !everywhere
        });
    }
    assert!(
        pending.is_empty(),
        "{} events never became visible on both",
        pending.len()
    );
    latencies.sort_by(f64::total_cmp);
    let pct = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    (pct(0.5), pct(0.99), pct(1.0))
}

/// Bytes PostgreSQL holds for the history: every partition of `events`,
/// `event_keys` and `parking_sessions`, with their indexes and TOAST.
fn stored_bytes(url: &str) -> i64 {
    use diesel::{Connection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct Bytes {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        bytes: i64,
    }
    let mut c = diesel::PgConnection::establish(url).expect("bench database");
    diesel::sql_query(
        "SELECT coalesce(sum(pg_total_relation_size(oid)), 0)::bigint AS bytes FROM pg_class \
         WHERE relkind = 'r' AND (relname LIKE 'events%' OR relname IN ('event_keys', 'parking_sessions'))",
    )
    .get_result::<Bytes>(&mut c)
    .expect("sizes")
    .bytes
}
