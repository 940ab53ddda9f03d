//! `kerbside-sim`: a street in a box. It drives kerbside over MQTT the way
//! a road would, and records the ground truth (contract section 5).

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;
use clap::{Args, Parser, Subcommand};
use kerbside_sim::case::{CaseOptions, replay};
use kerbside_sim::check::{CheckOptions, check};
use kerbside_sim::load::{LoadOptions, run as load};
use kerbside_sim::map::StreetPlan;
use kerbside_sim::plan::{Faults, Params};
use kerbside_sim::register::Registrar;

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
    /// Compare the service's reports with a run's truth; the last line
    /// printed is one JSON object. Exits 1 unless the agreement is full.
    Check(CheckArgs),
    /// Publish sensor events at a fixed rate, for benchmarks.
    Load(LoadArgs),
    /// Replay the station's first case: a warden's report of a site's
    /// materials on the footway, the site told, the deadline passed, the
    /// enforcement squad told, the case resolved. Needs an admin's token;
    /// takes the deadline's minutes of real time.
    Case(CaseArgs),
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

/// Where and as whom to register devices.
#[derive(Debug, Args)]
struct RegisterArgs {
    /// The service's base URL, for registering devices.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
    /// An admin's token: register every device first, and publish as
    /// each of them. Without one, one anonymous connection publishes for
    /// all (a service started with `--devices open`).
    #[arg(long, env = "KERBSIDE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl RegisterArgs {
    fn registrar(self) -> Option<Registrar> {
        let api = self.api;
        self.token.map(|token| Registrar { api, token })
    }
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The broker, `mqtt://HOST:PORT`.
    #[arg(long)]
    mqtt_url: String,
    #[command(flatten)]
    register: RegisterArgs,
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
    /// Extra malformed payloads, as a share of the messages sent.
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    malformed: f64,
    /// Share of drivers in a time-limited bay who mean to overstay.
    #[arg(long, default_value_t = 0.08, value_parser = share)]
    overstayers: f64,
    /// Local time zone of the street (arrival profile, enforced hours).
    #[arg(long, default_value = "Asia/Shanghai")]
    timezone: chrono_tz::Tz,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The truth file a run wrote.
    #[arg(long)]
    truth: PathBuf,
    /// The service's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
    /// A warden's or admin's token (sessions and violations need one).
    #[arg(long, env = "KERBSIDE_TOKEN")]
    token: String,
    /// How far a reported start or end may lie from the truth, seconds.
    #[arg(long, default_value_t = 60)]
    tolerance_seconds: i64,
    /// How long to wait for the service to take every event, seconds.
    #[arg(long, default_value_t = 120)]
    wait_seconds: u64,
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// The broker, `mqtt://HOST:PORT`.
    #[arg(long)]
    mqtt_url: String,
    #[command(flatten)]
    register: RegisterArgs,
    /// Directory of the GeoJSON layouts whose bays the devices sit on.
    #[arg(long, default_value = "geodata")]
    geodata: PathBuf,
    /// Events per second; 0 sends as fast as the broker takes them.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Sensors to spread the events over.
    #[arg(long, default_value_t = 136)]
    devices: usize,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
}

#[derive(Debug, Args)]
struct CaseArgs {
    /// The broker, `mqtt://HOST:PORT`.
    #[arg(long)]
    mqtt_url: String,
    /// The service's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
    /// An admin's token: the parties and the handheld are registered.
    #[arg(long, env = "KERBSIDE_TOKEN", hide_env_values = true)]
    token: String,
    /// Directory of the GeoJSON layouts; the case is on the first road.
    #[arg(long, default_value = "geodata")]
    geodata: PathBuf,
    /// Where the stand-in for the groups' webhooks listens (the service
    /// must reach it).
    #[arg(long, default_value = "127.0.0.1:0")]
    receiver: String,
    /// The site's deadline, minutes.
    #[arg(long, default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=240))]
    deadline_minutes: u32,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Check(args) => check_cmd(args),
        Command::Load(args) => load_cmd(args),
        Command::Case(args) => case_cmd(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kerbside-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let street = StreetPlan::load(&args.geodata)?;
    let mut params = Params::new(Utc::now(), args.hours, args.seed);
    params.tz = args.timezone;
    params.overstayers = args.overstayers;
    params.faults = Faults {
        duplicates: args.duplicates,
        reorder: args.reorder,
        offline_batches: args.offline_batches,
        stale_sensors: args.stale_sensors,
        malformed: args.malformed,
    };
    let bays = street.bays().count();
    eprintln!(
        "kerbside-sim: {bays} bays, {} hours up to now at {}x, seed {}",
        args.hours, args.speed, args.seed
    );
    // Events are dated in the past window while the service judges them by
    // its own clock: past about 20 minutes of wall time, the heartbeats of
    // the window's last part reach a service that already counts them as
    // stale (30 minutes by default).
    let wall_minutes = args.hours * 60.0 / args.speed;
    if wall_minutes > 20.0 {
        eprintln!(
            "kerbside-sim: warning: this run takes {wall_minutes:.0} minutes; a service with the \
             default 30-minute staleness window will report most bays unknown until its end \
             (start it with a longer --staleness-minutes, see the README)"
        );
    }
    let registrar = args.register.registrar();
    if let Some(r) = &registrar {
        eprintln!(
            "kerbside-sim: registering {bays} sensors and {} handhelds at {}",
            params.wardens, r.api
        );
    }
    let tz = params.tz;
    let plan = kerbside_sim::run(
        &street,
        &params,
        &args.mqtt_url,
        registrar.as_ref(),
        args.speed,
        &args.truth,
        |at, sent| {
            eprintln!(
                "kerbside-sim: street time {}, {sent} messages sent",
                at.with_timezone(&tz).format("%a %H:%M")
            );
        },
    )?;
    eprintln!(
        "kerbside-sim: sent {} messages ({} events); truth in {}",
        plan.messages.len(),
        plan.events(),
        args.truth.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn check_cmd(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let truth = kerbside_sim::truth::read(&args.truth)?;
    let report = check(
        &truth,
        &CheckOptions {
            api: args.api,
            token: args.token,
            tolerance: chrono::Duration::seconds(args.tolerance_seconds),
            wait: std::time::Duration::from_secs(args.wait_seconds),
        },
    )?;
    print!("{}", report.summary());
    println!("{}", serde_json::to_string(&report)?);
    Ok(if report.full_agreement() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn load_cmd(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let street = StreetPlan::load(&args.geodata)?;
    let report = load(
        &street,
        &LoadOptions {
            mqtt_url: args.mqtt_url,
            rate: args.rate,
            devices: args.devices,
            duration: args.duration,
            registrar: args.register.registrar(),
        },
    )?;
    eprintln!(
        "kerbside-sim: {} events in {:.1} s: {:.0} events/s",
        report.sent, report.seconds, report.rate
    );
    println!("{}", serde_json::to_string(&report)?);
    Ok(ExitCode::SUCCESS)
}

fn case_cmd(args: CaseArgs) -> anyhow::Result<ExitCode> {
    let street = StreetPlan::load(&args.geodata)?;
    let now = Utc::now();
    let options = CaseOptions {
        mqtt_url: args.mqtt_url,
        registrar: Registrar {
            api: args.api,
            token: args.token,
        },
        receiver: args.receiver,
        deadline_minutes: args.deadline_minutes,
        observed_at: now,
        tag: now.format("%Y%m%d%H%M%S").to_string(),
        patience: std::time::Duration::from_secs(60),
    };
    let report = replay(&street, &options, |step| eprintln!("kerbside-sim: {step}"))?;
    eprintln!(
        "kerbside-sim: case {} resolved; history {}",
        report.case_id,
        report.history.join(" → ")
    );
    println!("{}", serde_json::to_string(&report)?);
    Ok(ExitCode::SUCCESS)
}
