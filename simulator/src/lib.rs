//! `kerbside-sim`: a street in a box. It drives kerbside over MQTT the way
//! a road would, records the ground truth (contract section 5), and checks
//! the service's reports against it.
//!
//! - [`map`]: the street's geometry, read from the service's geodata.
//! - [`enforce`] and [`gcj02`]: the simulator's own enforcement clock and
//!   datum conversion, written apart from kerbside's.
//! - [`plan`]: the simulation, a pure function of street, window and seed.
//! - [`publish`]: paced QoS 1 publishing, done when the broker has acked.
//! - [`register`]: the devices registered through the admin API.
//! - [`truth`]: the truth file (JSON lines).
//! - [`check`]: the service against the truth.
//! - [`load`]: fixed-rate load for benchmarks.
//! - [`case`]: the station's first case, from a report to its resolution.

pub mod case;
pub mod check;
pub mod enforce;
pub mod gcj02;
pub mod load;
pub mod map;
pub mod plan;
pub mod publish;
pub mod register;
pub mod truth;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::plan::{Params, Plan};
use crate::register::Registrar;
use crate::truth::Truth;

/// Said of a failed anonymous connection: a refusal most likely means
/// that the service admits only registered devices.
pub(crate) const ANONYMOUS: &str = "connecting anonymously (only a service started with \
    --devices open admits that; give an admin's --token to register the devices)";

/// Simulates and publishes a window, then writes its truth to `truth_file`.
/// `speed` is street seconds per wall-clock second; `progress` hears of
/// each street hour published.
///
/// With a `registrar`, the street's devices get ids tagged with the run
/// (see [`Params::tagged_devices`]), are registered before anything is
/// published, and each publishes over a connection of its own, logged in
/// as itself. Without one, a single anonymous connection carries every
/// device's messages, as a broker that admits anyone allows.
pub fn run(
    street: &map::StreetPlan,
    params: &Params,
    mqtt_url: &str,
    registrar: Option<&Registrar>,
    speed: f64,
    truth_file: &Path,
    mut progress: impl FnMut(DateTime<Utc>, u64),
) -> anyhow::Result<Plan> {
    anyhow::ensure!(speed > 0.0, "--speed must be above 0");
    let mut params = params.clone();
    params.tagged_devices |= registrar.is_some();
    let mut plan = plan::simulate(street, &params);
    let mut publisher = match registrar {
        Some(r) => publish::Publisher::connect_devices(mqtt_url, &r.register(&plan.devices)?)?,
        None => {
            let client_id = format!("kerbside-sim-{}-{}", params.seed, std::process::id());
            publish::Publisher::connect(mqtt_url, &client_id).context(ANONYMOUS)?
        }
    };
    let mut hour = plan.started_at;
    let mut sent = 0;
    publish::publish_paced(
        &mut publisher,
        &plan.messages,
        plan.started_at,
        speed,
        |m| {
            sent += 1;
            if m.publish_at - hour >= chrono::Duration::hours(1) {
                hour = m.publish_at;
                progress(hour, sent);
            }
        },
    )?;
    publisher.finish(Duration::from_secs(60))?;
    plan.truth.push(Truth::Run {
        started_at: plan.started_at,
        ended_at: plan.ended_at,
        seed: params.seed,
        messages: plan.messages.len() as u64,
        events: plan.events(),
    });
    truth::write(truth_file, &plan.truth)?;
    Ok(plan)
}
