//! Soak benchmark: a steady event rate for a long time, to show that the
//! disk and memory stay bounded. Every `--sample-seconds` it prints the
//! SQLite WAL and database sizes, the process's resident memory, and the
//! receive-to-commit latency of the messages committed in that interval.
//!
//! ```sh
//! cargo bench --bench soak -- --minutes 30 --rate 1000
//! ```
//!
//! It starts a Mosquitto of its own on a free port (`max_queued_messages 0`)
//! and kerbside in-process on a fresh SQLite file, and publishes QoS 1
//! sensor events (each flips its bay) spread over the shipped street. The
//! resident memory is this whole process: kerbside and the publisher.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use kerbside::app::Application;
use kerbside::clock::SystemClock;
use kerbside::config::Settings;
use rumqttc::{AsyncClient, Event, Packet, QoS};

#[path = "../tests/support/mosquitto.rs"]
mod mosquitto;
mod support;

struct Args {
    minutes: f64,
    rate: u64,
    sample_seconds: u64,
}

fn args() -> Args {
    Args {
        minutes: support::num("--minutes").unwrap_or(30.0),
        rate: support::num("--rate").map_or(1000, |v| v as u64),
        sample_seconds: support::num("--sample-seconds").map_or(15, |v| v as u64),
    }
}

/// Resident memory of this process, MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn mib(path: &std::path::Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / (1024.0 * 1024.0))
}

/// The commit-latency histogram as (upper bound in seconds, cumulative count).
fn latency_buckets(metrics: &str) -> Vec<(f64, u64)> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("kerbside_ingest_commit_latency_seconds_bucket{le=\""))
        .filter_map(|l| {
            let (le, count) = l.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// The bucket bound under which a share `q` of the interval's commits fell.
fn quantile(now: &[(f64, u64)], before: &[(f64, u64)], q: f64) -> f64 {
    let delta: Vec<(f64, u64)> = now
        .iter()
        .zip(before.iter().map(|b| b.1).chain(std::iter::repeat(0)))
        .map(|((le, c), b)| (*le, c - b))
        .collect();
    let total = delta.last().map_or(0, |d| d.1);
    if total == 0 {
        return f64::NAN;
    }
    let want = (total as f64 * q).ceil() as u64;
    delta
        .iter()
        .find(|(_, c)| *c >= want)
        .map_or(f64::INFINITY, |d| d.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = mosquitto::PrivateMosquitto::start(dir.path(), 1000);
    let bays = support::shipped_bays();

    let db = dir.path().join("soak.db");
    let wal = dir.path().join("soak.db-wal");
    let mut settings = Settings::defaults();
    settings.database.database_url = format!("sqlite://{}", db.display());
    settings.http = "127.0.0.1:0".into();
    settings.mqtt_url = Some(broker.url());
    settings.mqtt_client_id = "kerbside-soak".into();
    settings.devices = kerbside::devices::DeviceMode::Open;
    settings.geodata = "geodata".into();
    let app = Application::build(settings, Arc::new(SystemClock))
        .await
        .expect("kerbside starts");
    let state = app.state();
    tokio::spawn(app.run());
    while !state.mqtt.is_connected() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (publisher, mut pub_loop) =
        AsyncClient::new(support::options("soak-pub", broker.port), 10_000);
    tokio::spawn(async move {
        loop {
            match pub_loop.poll().await {
                Ok(Event::Incoming(Packet::Disconnect)) | Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(_) => {}
            }
        }
    });

    let duration = Duration::from_secs_f64(a.minutes * 60.0);
    let sent = Arc::new(AtomicU64::new(0));
    let sent_w = sent.clone();
    let rate = a.rate;
    let load = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let t0 = Instant::now();
        let mut i: usize = 0;
        while t0.elapsed() < duration {
            tick.tick().await;
            let (topic, body) = support::sensor_event(i, &bays, Utc::now(), "soak");
            publisher
                .publish(topic, QoS::AtLeastOnce, false, body)
                .await
                .expect("publish");
            i += 1;
            sent_w.store(i as u64, Ordering::Relaxed);
        }
    });

    println!(
        "soak: {} events/s for {} min, sampled every {} s (private Mosquitto, no persistence)",
        a.rate, a.minutes, a.sample_seconds
    );
    println!(
        "{:>7} {:>10} {:>10} {:>9} {:>9} {:>8} {:>9} {:>9}",
        "t_s", "sent", "stored", "wal_MiB", "db_MiB", "rss_MiB", "p50_ms", "p99_ms"
    );
    let t0 = Instant::now();
    let mut before = latency_buckets(&state.metrics.render());
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(a.sample_seconds));
    tick.tick().await;
    let mut largest_wal: f64 = 0.0;
    let mut wal_watch = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = wal_watch.tick() => {
                largest_wal = largest_wal.max(mib(&wal));
                continue;
            }
            _ = tick.tick() => {}
        }
        let now = latency_buckets(&state.metrics.render());
        let (p50, p99) = (
            quantile(&now, &before, 0.5) * 1000.0,
            quantile(&now, &before, 0.99) * 1000.0,
        );
        before = now;
        let stored = state.metrics.events_accepted.load(Ordering::Relaxed)
            + state.metrics.events_duplicate.load(Ordering::Relaxed);
        let row = serde_json::json!({
            "t_s": t0.elapsed().as_secs(), "sent": sent.load(Ordering::Relaxed), "stored": stored,
            "wal_mib": mib(&wal), "db_mib": mib(&db), "rss_mib": rss_mib(),
            "p50_ms": p50, "p99_ms": p99,
        });
        println!(
            "{:>7} {:>10} {:>10} {:>9.1} {:>9.1} {:>8.1} {:>9} {:>9}",
            t0.elapsed().as_secs(),
            sent.load(Ordering::Relaxed),
            stored,
            mib(&wal),
            mib(&db),
            rss_mib(),
            p50,
            p99
        );
        samples.push(row);
        if load.is_finished() && stored >= sent.load(Ordering::Relaxed) {
            break;
        }
        if t0.elapsed() > duration + Duration::from_secs(120) {
            println!("gave up waiting for ingest to catch up");
            break;
        }
    }
    println!(
        "{}",
        serde_json::json!({"rate": a.rate, "minutes": a.minutes,
            "largest_wal_mib": largest_wal, "samples": samples})
    );
}
