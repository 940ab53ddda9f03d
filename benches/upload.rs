//! Upload benchmark: a planner previews, then publishes, a road of 20,000
//! bays while devices stream events, and the ingest rate is measured
//! before and during each upload.
//!
//! ```sh
//! cargo bench --bench upload                       # 19,999 bays and the road: 20,000 features, the most a layout may have
//! cargo bench --bench upload -- --bays 5000 --baseline-seconds 3
//! ```
//!
//! kerbside runs in-process on a fresh SQLite file with its embedded broker
//! (devices open); four device connections publish `occupied`/`vacated`
//! events for Qingfeng Road's bays flat out (QoS 1) for the whole run. The
//! new road is a straight 2-point centre line with standard bays 2.5 x 5.5 m
//! on both sides at a 3 m pitch. `PUT ...?dry_run=true`, then `PUT`, each
//! timed; accepted events/s is sampled over the baseline and over each
//! upload. Prints a JSON summary line last. All parts share the machine's
//! cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DurationRound, Utc};
use kerbside::app::Application;
use kerbside::clock::SystemClock;
use kerbside::config::Settings;
use kerbside::domain::auth::{Role, generate_token};
use kerbside::spatial::LocalFrame;
use rumqttc::{AsyncClient, QoS};
use serde_json::{Value, json};

mod support;

const DEVICE_CONNECTIONS: usize = 4;

struct Args {
    bays: usize,
    baseline_seconds: u64,
}

fn args() -> Args {
    Args {
        bays: support::num("--bays").map_or(19_999, |v| v as usize),
        baseline_seconds: support::num("--baseline-seconds").map_or(5, |v| v as u64),
    }
}

/// A road of `bays` standard bays, both sides of a straight centre line.
fn long_road(bays: usize) -> Value {
    let f = LocalFrame::at(120.80, 30.80);
    let p = |x: f64, y: f64| {
        let d = f.to_degrees(geo::Coord { x, y });
        json!([d.x, d.y])
    };
    let length = (bays / 2 + 1) as f64 * 3.0;
    let mut features = vec![json!({"type": "Feature", "id": "bench-avenue",
        "properties": {"feature_type": "road", "road_id": "bench-avenue", "name": "Bench Avenue"},
        "geometry": {"type": "LineString", "coordinates": [p(0.0, 0.0), p(length, 0.0)]}})];
    for n in 0..bays {
        let x = (n / 2) as f64 * 3.0;
        let y = if n % 2 == 0 { 5.0 } else { -10.5 };
        let id = format!("BA-{n:05}");
        features.push(json!({"type": "Feature", "id": id,
            "properties": {"feature_type": "bay", "bay_id": id, "road_id": "bench-avenue", "kind": "standard",
                           "max_stay_minutes": 120},
            "geometry": {"type": "Polygon", "coordinates": [[
                p(x, y), p(x + 2.5, y), p(x + 2.5, y + 5.5), p(x, y + 5.5), p(x, y)]]}}));
    }
    json!({"type": "FeatureCollection", "features": features})
}

/// Events accepted per second over `window`, sampled now.
async fn rate_over(accepted: impl Fn() -> u64, window: Duration) -> f64 {
    let (n0, t0) = (accepted(), Instant::now());
    tokio::time::sleep(window).await;
    (accepted() - n0) as f64 / t0.elapsed().as_secs_f64()
}

/// Times `PUT path` and the events accepted meanwhile: (seconds, status,
/// events/s).
async fn timed_put(
    url: String,
    token: &str,
    body: Arc<String>,
    accepted: impl Fn() -> u64,
) -> (f64, u16, f64) {
    let auth = format!("Bearer {token}");
    let (n0, t0) = (accepted(), Instant::now());
    let status = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .into();
        agent
            .put(&url)
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .send(body.as_str())
            .map(|r| r.status().as_u16())
            .expect("PUT")
    })
    .await
    .expect("the upload thread");
    let secs = t0.elapsed().as_secs_f64();
    (secs, status, (accepted() - n0) as f64 / secs)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings::defaults();
    settings.database.database_url = format!("sqlite://{}", dir.path().join("upload.db").display());
    settings.http = "127.0.0.1:0".into();
    settings.mqtt_listen = Some("127.0.0.1:0".into());
    settings.devices = kerbside::devices::DeviceMode::Open;
    let app = Application::build(settings, Arc::new(SystemClock))
        .await
        .expect("kerbside starts");
    let state = app.state();
    let (http, mqtt) = (app.http_port(), app.mqtt_port());
    tokio::spawn(app.run());
    while !state.mqtt.is_connected() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = generate_token();
    state
        .store
        .create_token("bench planner", Role::Planner, &t.hash, Utc::now())
        .expect("a planner token");

    // Devices stream events for the shipped road for the whole run.
    let bays: Vec<String> = state
        .street
        .map()
        .roads
        .values()
        .flat_map(|v| v.layout.bays.iter().map(|b| b.bay_id.to_string()))
        .collect();
    let start = Utc::now()
        .duration_trunc(chrono::Duration::milliseconds(1))
        .unwrap()
        - chrono::Duration::minutes(10);
    let stop = Arc::new(AtomicBool::new(false));
    for k in 0..DEVICE_CONNECTIONS {
        let (client, mut eventloop) =
            AsyncClient::new(support::options(&format!("bench-device-{k}"), mqtt), 10_000);
        tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
        let (bays, stop) = (bays.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = k;
            while !stop.load(Ordering::Relaxed) {
                let at = start + chrono::Duration::milliseconds(i as i64);
                let (topic, body) = support::sensor_event(i, &bays, at, "bench");
                if client
                    .publish(topic, QoS::AtLeastOnce, false, body)
                    .await
                    .is_err()
                {
                    break;
                }
                i += DEVICE_CONNECTIONS;
            }
        });
    }
    let metrics = state.metrics.clone();
    let accepted = move || metrics.events_accepted.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = rate_over(&accepted, Duration::from_secs(a.baseline_seconds)).await;
    println!("ingest alone:                 {baseline:>8.0} events/s");

    let body = Arc::new(long_road(a.bays).to_string());
    println!(
        "layout: {} bays, {:.1} MiB",
        a.bays,
        body.len() as f64 / (1024.0 * 1024.0)
    );
    let url = format!("http://127.0.0.1:{http}/v1/roads/bench-avenue/layout");
    let (dry_s, dry_status, dry_rate) = timed_put(
        format!("{url}?dry_run=true"),
        &t.secret,
        body.clone(),
        &accepted,
    )
    .await;
    println!(
        "dry run:  {dry_s:>6.2} s  (HTTP {dry_status})  ingest meanwhile {dry_rate:>8.0} events/s"
    );
    let (pub_s, pub_status, pub_rate) = timed_put(url, &t.secret, body, &accepted).await;
    println!(
        "publish:  {pub_s:>6.2} s  (HTTP {pub_status})  ingest meanwhile {pub_rate:>8.0} events/s"
    );
    let after = rate_over(&accepted, Duration::from_secs(a.baseline_seconds)).await;
    println!("ingest after:                 {after:>8.0} events/s");
    stop.store(true, Ordering::Relaxed);
    assert_eq!((dry_status, pub_status), (200, 200), "both uploads succeed");
    assert_eq!(
        state.street.map().roads.len(),
        2,
        "the new road is in the street"
    );
    println!(
        "{}",
        json!({"bays": a.bays, "dry_run_s": (dry_s * 100.0).round() / 100.0,
               "publish_s": (pub_s * 100.0).round() / 100.0,
               "ingest_alone_per_s": baseline.round(), "ingest_during_dry_run_per_s": dry_rate.round(),
               "ingest_during_publish_per_s": pub_rate.round(), "ingest_after_per_s": after.round()})
    );
}
