//! Live-stream benchmark: does a crowd of `/v1/stream` listeners slow
//! ingest? Events at a fixed rate through a private Mosquitto into
//! kerbside (SQLite), publish-to-visible latency taken from the retained
//! bay states, first with no listener, then with `--clients` SSE listeners
//! on Qingfeng Road reading as fast as they can plus one that never reads
//! (it must be cut off, not waited for).
//!
//! ```sh
//! cargo bench --bench stream                          # 1,000 listeners, 1,000 events/s for 10 s
//! cargo bench --bench stream -- --clients 2000 --rate 500 --seconds 20
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DurationRound, Utc};
use kerbside::app::Application;
use kerbside::clock::SystemClock;
use kerbside::config::Settings;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

#[path = "../tests/support/mosquitto.rs"]
mod mosquitto;
mod support;

/// What one fixed-rate run saw.
struct Run {
    p50: f64,
    p99: f64,
    max: f64,
    seen: usize,
    sent: usize,
    /// Events stored per second over the run.
    stored_per_s: f64,
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

/// Publishes `n` flips at `rate` a second from event number `offset` and
/// measures publish-to-visible on the retained bay states.
/// What every run drives and watches.
struct Rig {
    publisher: AsyncClient,
    states: mpsc::UnboundedReceiver<rumqttc::Publish>,
    app: actix_web::web::Data<kerbside::http::AppState>,
    bays: Vec<String>,
    start: chrono::DateTime<Utc>,
    rate: u64,
}

async fn run(rig: &mut Rig, offset: usize, n: usize) -> Run {
    let Rig {
        publisher,
        states,
        app,
        bays,
        start,
        rate,
    } = rig;
    let (start, rate) = (*start, *rate);
    while states.try_recv().is_ok() {}
    type Pending = HashMap<String, Vec<(chrono::DateTime<Utc>, Instant)>>;
    let sent: Arc<std::sync::Mutex<Pending>> = Default::default();
    let sent_w = sent.clone();
    let p = publisher.clone();
    let bays2 = bays.to_vec();
    let stored0 = app.metrics.events_accepted.load(Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for i in offset..offset + n {
            tick.tick().await;
            let at = start + chrono::Duration::milliseconds(i as i64);
            let (topic, body) = support::sensor_event(i, &bays2, at, "stream");
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
    let deadline = Instant::now() + Duration::from_secs(n as u64 / rate + 30);
    while latencies.len() < n && Instant::now() < deadline {
        let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(5), states.recv()).await
        else {
            break;
        };
        let arrived = Instant::now();
        let v: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap_or_default();
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
    let secs = t0.elapsed().as_secs_f64();
    let stored = app.metrics.events_accepted.load(Ordering::Relaxed) - stored0;
    latencies.sort_by(f64::total_cmp);
    Run {
        p50: pct(&latencies, 0.5),
        p99: pct(&latencies, 0.99),
        max: pct(&latencies, 1.0),
        seen: latencies.len(),
        sent: n,
        stored_per_s: stored as f64 / secs,
    }
}

/// Opens a `/v1/stream` listener on Qingfeng Road; unless `stalled`, it
/// reads everything, counting the bytes.
async fn listener(http: u16, stalled: bool, bytes: Arc<AtomicU64>) {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", http)).await else {
        return;
    };
    let req = "GET /v1/stream?road=qingfeng-road HTTP/1.1\r\nHost: bench\r\n\r\n";
    if s.write_all(req.as_bytes()).await.is_err() {
        return;
    }
    if stalled {
        // Holds the connection and reads nothing.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            return;
        }
        bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = |name: &str, default: f64| support::num(name).unwrap_or(default);
    let clients = n("--clients", 1000.0) as usize;
    let rate = n("--rate", 1000.0).max(1.0) as u64;
    let seconds = n("--seconds", 10.0).max(1.0) as u64;
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = mosquitto::PrivateMosquitto::start(dir.path(), 1000);
    let bays = support::shipped_bays();

    let mut settings = Settings::defaults();
    settings.database.database_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    settings.http = "127.0.0.1:0".into();
    settings.mqtt_url = Some(broker.url());
    settings.mqtt_client_id = "kerbside-stream-bench".into();
    settings.devices = kerbside::devices::DeviceMode::Open;
    let app = Application::build(settings, Arc::new(SystemClock))
        .await
        .expect("kerbside starts");
    let http = app.http_port();
    let state = app.state();
    tokio::spawn(app.run());
    while !state.mqtt.is_connected() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (watch, mut watch_loop) =
        AsyncClient::new(support::options("stream-bench-watch", broker.port), 10_000);
    let (tx, states) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match watch_loop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send(p).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    watch
        .subscribe("kerbside/v1/bays/+/state", QoS::AtMostOnce)
        .await
        .unwrap();
    let (publisher, mut pub_loop) =
        AsyncClient::new(support::options("stream-bench-pub", broker.port), 10_000);
    tokio::spawn(async move {
        loop {
            if pub_loop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Utc::now()
        .duration_trunc(chrono::Duration::milliseconds(1))
        .unwrap()
        - chrono::Duration::minutes(20);
    let count = (rate * seconds) as usize;

    let mut rig = Rig {
        publisher,
        states,
        app: state,
        bays: bays.clone(),
        start,
        rate,
    };
    // Warm-up, then the run with no listener.
    run(&mut rig, 0, bays.len() * 4).await;
    let quiet = run(&mut rig, bays.len() * 4, count).await;

    // The crowd, and one listener that never reads.
    let bytes = Arc::new(AtomicU64::new(0));
    for _ in 0..clients {
        tokio::spawn(listener(http, false, bytes.clone()));
    }
    tokio::spawn(listener(http, true, bytes.clone()));
    // Every listener first gets the road (137 messages).
    let snapshot = Instant::now();
    while bytes.load(Ordering::Relaxed) < clients as u64 * 137 * 80
        && snapshot.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = bytes.load(Ordering::Relaxed);
    let offset = bays.len() * 4 + count + (bays.len() - count % bays.len()) % bays.len();
    let crowd = run(&mut rig, offset, count).await;
    let streamed = bytes.load(Ordering::Relaxed) - before;

    println!("{count} events at {rate}/s through a private Mosquitto into kerbside (SQLite):");
    for (name, r) in [
        ("no listener", &quiet),
        (&*format!("{clients} SSE listeners + 1 stalled"), &crowd),
    ] {
        println!(
            "  {name:<28} stored {:>7.0} events/s   publish-to-visible p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  ({} of {} seen)",
            r.stored_per_s, r.p50, r.p99, r.max, r.seen, r.sent
        );
    }
    println!(
        "  the listeners read {:.1} MB during the run ({:.0} KB each)",
        streamed as f64 / 1e6,
        streamed as f64 / 1e3 / clients.max(1) as f64
    );
    println!(
        "{}",
        serde_json::json!({"bench": "stream", "clients": clients, "rate": rate, "events": count,
            "quiet": {"stored_per_s": quiet.stored_per_s.round(), "p50_ms": quiet.p50, "p99_ms": quiet.p99},
            "crowd": {"stored_per_s": crowd.stored_per_s.round(), "p50_ms": crowd.p50, "p99_ms": crowd.p99},
            "streamed_bytes": streamed})
    );
}
