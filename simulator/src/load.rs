//! Load mode: sensor events at a fixed rate (or flat out), for benchmarks.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use kerbside::clock::rfc3339;
use kerbside::domain::devices::DeviceKind;
use kerbside::mqtt::topics;
use serde::Serialize;
use serde_json::json;

use crate::map::StreetPlan;
use crate::plan::Device;
use crate::publish::Publisher;
use crate::register::Registrar;

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub mqtt_url: String,
    /// Events per second; 0 is as fast as the broker takes them.
    pub rate: f64,
    /// Sensors to spread the events over (each on one bay, round robin).
    pub devices: usize,
    /// How long to send, seconds.
    pub duration: f64,
    /// When given, the devices are registered first (their ids tagged
    /// with the run) and each sends over a connection of its own.
    pub registrar: Option<Registrar>,
}

/// What was sent.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub sent: u64,
    /// Seconds from the first publish until the broker acked the last.
    pub seconds: f64,
    /// Events per second achieved.
    pub rate: f64,
}

/// Publishes `occupied` and `vacated` in turn for each device's bay, with
/// the wall clock as event time.
pub fn run(street: &StreetPlan, opts: &LoadOptions) -> anyhow::Result<LoadReport> {
    let bays: Vec<&str> = street.bays().map(|b| b.bay_id.as_str()).collect();
    anyhow::ensure!(!bays.is_empty(), "the layouts have no bays");
    anyhow::ensure!(opts.devices > 0, "--devices must be at least 1");
    let run = Utc::now().timestamp_millis();
    let sensors: Vec<Device> = (0..opts.devices)
        .map(|k| Device {
            device_id: match opts.registrar {
                Some(_) => format!("LOAD-{k}.{run:x}"),
                None => format!("LOAD-{k}"),
            },
            kind: DeviceKind::Sensor,
            name: format!("load sensor {k} on bay {}", bays[k % bays.len()]),
        })
        .collect();
    let mut publisher = match &opts.registrar {
        Some(r) => Publisher::connect_devices(&opts.mqtt_url, &r.register(&sensors)?)?,
        None => Publisher::connect(&opts.mqtt_url, &format!("kerbside-load-{run}"))
            .context(crate::ANONYMOUS)?,
    };
    let devices: Vec<(String, &str)> = sensors
        .iter()
        .enumerate()
        .map(|(k, d)| (topics::events(&d.device_id), bays[k % bays.len()]))
        .collect();
    let start = Instant::now();
    let stop = start + Duration::from_secs_f64(opts.duration);
    let mut n: u64 = 0;
    loop {
        let now = Instant::now();
        if now >= stop {
            break;
        }
        if opts.rate > 0.0 {
            let due = start + Duration::from_secs_f64(n as f64 / opts.rate);
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let (topic, bay) = &devices[(n as usize) % devices.len()];
        let round = n / devices.len() as u64;
        let kind = if round.is_multiple_of(2) {
            "occupied"
        } else {
            "vacated"
        };
        let body = json!({
            "event_id": format!("L{run}-{round}"),
            "type": kind,
            "bay_id": bay,
            "observed_at": rfc3339(Utc::now()),
        });
        publisher.send(topic, body.to_string().into_bytes())?;
        n += 1;
    }
    let sent = publisher.sent();
    publisher.finish(Duration::from_secs(60))?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(LoadReport {
        sent,
        seconds,
        rate: sent as f64 / seconds,
    })
}
