//! `kerbside-sim`: a street in a box. It drives kerbside over MQTT the way
//! a road would, and records the ground truth (contract section 5).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Simulates a street's sensors, wardens and drivers against kerbside.
#[derive(Debug, Parser)]
#[command(name = "kerbside-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate the last `--hours` up to now, publishing events and writing the truth.
    Run(RunArgs),
}

/// A share between 0 and 1.
fn share(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 1"))
    }
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The broker, `mqtt://HOST:PORT`.
    #[arg(long)]
    mqtt_url: String,
    /// Directory of the GeoJSON layouts to simulate.
    #[arg(long, default_value = "geodata")]
    geodata: PathBuf,
    /// Hours of street time to simulate, ending now.
    #[arg(long, default_value_t = 6.0)]
    hours: f64,
    /// Time compression: street seconds per wall-clock second.
    #[arg(long, default_value_t = 60.0)]
    speed: f64,
    /// Seed; the same seed gives the same street.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where to write the ground truth (JSON lines).
    #[arg(long)]
    truth: PathBuf,
    /// Share of messages published twice.
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    duplicates: f64,
    /// Share of messages held back and published out of order.
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    reorder: f64,
    /// Share of handheld uploads sent later as one offline batch.
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    offline_batches: f64,
    /// Share of sensors that go silent.
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    stale_sensors: f64,
    /// Share of messages replaced by malformed payloads.
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    malformed: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            eprintln!(
                "kerbside-sim: the street simulation is not built yet (asked for {} hours at speed {} against {})",
                args.hours, args.speed, args.mqtt_url
            );
            ExitCode::FAILURE
        }
    }
}
