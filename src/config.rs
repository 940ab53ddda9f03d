//! The command line and its `KERBSIDE_*` environment twins (contract
//! section 4). Precedence: flag, then environment variable, then default.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;

use crate::devices::DeviceMode;
use crate::domain::auth::Role;
use crate::domain::devices::DeviceKind;

/// kerbside: kerbside parking bays, occupancy and violations for a city's roads.
#[derive(Debug, Parser)]
#[command(
    name = "kerbside",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no subcommand, kerbside serves with these settings.
    #[command(flatten)]
    pub serve: Settings,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: store, MQTT ingest and the REST API (the default).
    Serve(Settings),
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        action: TokenCommand,
    },
    /// Register, revoke and list field devices (sensors, handhelds, observers).
    Device {
        #[command(subcommand)]
        action: DeviceCommand,
    },
    /// Add and list the parties told of cases (contract 6.4).
    Party {
        #[command(subcommand)]
        action: PartyCommand,
    },
    /// Write a Mosquitto 2 configuration that enforces device access, and
    /// print the --mqtt-url kerbside must then be given, alone on its line.
    MosquittoConf {
        /// Directory for `mosquitto.conf` and the broker's state (`data/`);
        /// an existing configuration there is replaced.
        #[arg(long)]
        out: PathBuf,
        /// Where Mosquitto listens (`HOST:PORT`).
        #[arg(long)]
        listen: String,
        /// Mosquitto's dynamic-security plugin.
        #[arg(long, default_value = crate::mqtt::mosquitto_conf::DEFAULT_DYNSEC_PLUGIN)]
        dynsec_plugin: PathBuf,
        /// The shared-subscription group the instances will be started
        /// with (`serve --mqtt-share-group`): kerbside may subscribe in it.
        #[arg(long, env = "KERBSIDE_MQTT_SHARE_GROUP", default_value = "kerbside",
            value_parser = share_group)]
        mqtt_share_group: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// Party subcommands (contract section 6.4).
#[derive(Debug, Subcommand)]
pub enum PartyCommand {
    /// Add a party from the JSON that `POST /v1/parties` takes (a file, or
    /// `-` for standard input) and print its webhook secret once, alone on
    /// its line.
    Add {
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List the parties, one a line (never a secret).
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// Device subcommands (contract section 6.1).
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Register a device and print its MQTT password once, alone on its line.
    Add {
        /// The device id: its MQTT username and the `{device_id}` of its topics.
        #[arg(long)]
        id: String,
        /// What it is, and so what it may do on the broker.
        #[arg(long, value_enum)]
        kind: DeviceKindArg,
        /// Who or what it is, e.g. "sensor of bay QF-S-014".
        #[arg(long)]
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke a device: it can no longer connect, and its events are refused.
    Revoke {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List registered devices, one a line (never a password).
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// A device kind, as typed on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DeviceKindArg {
    Sensor,
    Handheld,
    Observer,
}

impl From<DeviceKindArg> for DeviceKind {
    fn from(k: DeviceKindArg) -> DeviceKind {
        match k {
            DeviceKindArg::Sensor => DeviceKind::Sensor,
            DeviceKindArg::Handheld => DeviceKind::Handheld,
            DeviceKindArg::Observer => DeviceKind::Observer,
        }
    }
}

/// Token subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once on standard output; only its hash is stored.
    Create {
        /// What the token may do.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Who or what holds it (shown in audit trails, e.g. a warden's name).
        #[arg(long)]
        name: String,
        /// The token stops working this many days (of 24 hours) from now;
        /// without this or --expires-at it lasts until revoked.
        #[arg(long, value_name = "DAYS", conflicts_with = "expires_at",
              value_parser = clap::value_parser!(u32).range(1..=36_500))]
        expires_in_days: Option<u32>,
        /// The token stops working at this instant (RFC 3339 with an
        /// offset, e.g. 2027-06-30T18:00:00+08:00).
        #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
        expires_at: Option<DateTime<Utc>>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List the API tokens (never a token or its hash).
    ///
    /// One line per token after a header, tab-separated like `device
    /// list`: name, role, created_at, expires_at and revoked_at (RFC 3339,
    /// `-` for none).
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke every unrevoked token with this name; fails if there is none.
    Revoke {
        /// The name the tokens were created with (`token create --name`).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// Parses an RFC 3339 instant with an offset.
fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!("{s:?} is not an RFC 3339 instant with an offset (like 2027-06-30T18:00:00+08:00): {e}")
        })
}

/// Parses a comma-separated list of [`parse_network`]s; blank entries are
/// skipped, so an empty list is no network.
fn parse_networks(s: &str) -> Result<Vec<IpNet>, String> {
    s.split(',')
        .filter(|n| !n.trim().is_empty())
        .map(parse_network)
        .collect()
}

/// Parses a network in CIDR form (`10.0.0.0/8`, `2001:db8::/32`), or one
/// address as a network of one host.
pub fn parse_network(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!("{s:?} is not a network in CIDR form (like 10.0.0.0/8 or 2001:db8::/32) nor an address")
        })
}

/// A role, as typed on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Warden,
    Planner,
    Admin,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Warden => Role::Warden,
            RoleArg::Planner => Role::Planner,
            RoleArg::Admin => Role::Admin,
        }
    }
}

/// Where the store is.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// `sqlite://PATH` (embedded, the default) or `postgres://...`.
    #[arg(
        long,
        env = "KERBSIDE_DATABASE_URL",
        default_value = "sqlite://kerbside.db"
    )]
    pub database_url: String,
}

/// Everything `kerbside serve` needs.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Use the broker at `mqtt://[USER:PASSWORD@]HOST:PORT`; no embedded
    /// broker is started.
    #[arg(long, env = "KERBSIDE_MQTT_URL")]
    pub mqtt_url: Option<String>,
    /// Where the embedded broker listens (`HOST:PORT`). Unset, it is
    /// 127.0.0.1:1883, or a free port if another broker already holds 1883.
    #[arg(long, env = "KERBSIDE_MQTT_LISTEN")]
    pub mqtt_listen: Option<String>,
    /// Client id, and so persistent session, on an external broker; each
    /// instance of a deployment needs its own.
    #[arg(long, env = "KERBSIDE_MQTT_CLIENT_ID", default_value = "kerbside")]
    pub mqtt_client_id: String,
    /// On an external broker, the shared-subscription group the instances
    /// of one deployment take device events through
    /// (`$share/GROUP/kerbside/v1/devices/+/events`), so that each event
    /// reaches one of them; empty: a plain subscription (every instance
    /// gets every event).
    #[arg(long, env = "KERBSIDE_MQTT_SHARE_GROUP", default_value = "kerbside",
        value_parser = share_group)]
    pub mqtt_share_group: String,
    /// Seconds between heartbeat comments on the live stream (`/v1/stream`).
    #[arg(long, env = "KERBSIDE_STREAM_HEARTBEAT_SECONDS", default_value_t = 15,
        value_parser = clap::value_parser!(u64).range(1..=15))]
    pub stream_heartbeat_seconds: u64,
    /// Most database connections this instance keeps open (its pool; on
    /// PostgreSQL one more watches for other instances' changes).
    #[arg(long, env = "KERBSIDE_DATABASE_POOL", default_value_t = 8,
        value_parser = clap::value_parser!(u32).range(2..=256))]
    pub database_pool: u32,
    /// Where the REST API listens (`HOST:PORT`; port 0 picks a free one).
    #[arg(long, env = "KERBSIDE_HTTP", default_value = "127.0.0.1:8080")]
    pub http: String,
    /// Directory whose `*.geojson` files are loaded into an empty store.
    #[arg(long, env = "KERBSIDE_GEODATA", default_value = "geodata")]
    pub geodata: PathBuf,
    /// A bay silent for longer than this many minutes reports `unknown`.
    #[arg(long, env = "KERBSIDE_STALENESS_MINUTES", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=10_080))]
    pub staleness_minutes: u32,
    /// Events observed longer ago than this many days are rejected `too_old`.
    #[arg(long, env = "KERBSIDE_RETENTION_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub retention_days: u32,
    /// Days of events and rejections kept; older ones are forgotten by the
    /// retention job (hourly). Never less than `--retention-days` in effect.
    /// Parking sessions and violations are kept whatever their age.
    #[arg(long, env = "KERBSIDE_KEEP_HISTORY_DAYS", default_value_t = 400,
          value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub keep_history_days: u32,
    /// How often, in seconds, bay staleness is re-evaluated and published.
    #[arg(long, env = "KERBSIDE_SWEEP_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub sweep_seconds: u64,
    /// Time zone of bays' `enforced_hours` (an IANA name).
    #[arg(long, env = "KERBSIDE_TIMEZONE", default_value = "Asia/Shanghai")]
    pub timezone: chrono_tz::Tz,
    /// Enforced minutes allowed past a bay's limit before it is an overstay.
    #[arg(long, env = "KERBSIDE_OVERSTAY_GRACE_MINUTES", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=1440))]
    pub overstay_grace_minutes: u32,
    /// Hours a plate stays readable after its parking ends (sessions) or
    /// after a violation is dismissed or void; then it is replaced by a
    /// keyed pseudonym. Ticketed violations keep theirs.
    #[arg(long, env = "KERBSIDE_KEEP_PLATES_HOURS", default_value_t = 24,
          value_parser = clap::value_parser!(u32).range(1..=8760))]
    pub keep_plates_hours: u32,
    /// Days a complaint's contact details are kept, then erased (the
    /// complaint itself stays).
    #[arg(long, env = "KERBSIDE_KEEP_CONTACTS_DAYS", default_value_t = 90,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub keep_contacts_days: u32,
    /// Requests a minute each client may make to the public endpoints.
    #[arg(long, env = "KERBSIDE_PUBLIC_RATE_PER_MINUTE", default_value_t = 600,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub public_rate_per_minute: u32,
    /// `registered`: only registered, unrevoked devices may connect to the
    /// embedded broker and have their events stored; `open`: any device id,
    /// as in v1 (labs, demos, test suites).
    #[arg(
        long,
        env = "KERBSIDE_DEVICES",
        value_enum,
        default_value = "registered"
    )]
    pub devices: DeviceMode,
    /// Networks of the reverse proxies in front of kerbside (`CIDR,...`;
    /// an address alone is one host). Only a request from one of them has
    /// its `X-Forwarded-For` believed, for the public rate limit; empty (the
    /// default): the peer address always counts.
    // `::std::vec::Vec`: one value holding the whole list, so that an empty
    // KERBSIDE_TRUSTED_PROXIES means none rather than a bad network.
    #[arg(long, env = "KERBSIDE_TRUSTED_PROXIES", value_name = "CIDR,...",
          default_value = "", hide_default_value = true, value_parser = parse_networks)]
    pub trusted_proxies: ::std::vec::Vec<IpNet>,
    /// A basemap for the console page: a tile URL template with `{z}`,
    /// `{x}` and `{y}` (and optionally `{s}`), `http(s)://...` or a path on
    /// this host. Unset (the default): no basemap, and the page fetches
    /// nothing from anywhere but kerbside.
    #[arg(long, env = "KERBSIDE_TILE_URL", value_name = "URL", value_parser = tile_url)]
    pub tile_url: Option<String>,
    /// The basemap's attribution, shown as text in the map's corner (most
    /// tile providers' terms ask for one).
    #[arg(long, env = "KERBSIDE_TILE_ATTRIBUTION", value_name = "TEXT")]
    pub tile_attribution: Option<String>,
}

/// A tile URL template: `http://`, `https://` or `/`, with `{z}`, `{x}`
/// and `{y}`, and no quote or angle bracket (it ends up in the page).
pub fn tile_url(s: &str) -> Result<String, String> {
    if !(s.starts_with("http://") || s.starts_with("https://") || s.starts_with('/')) {
        return Err(format!(
            "{s:?} is not a tile URL: it starts with http://, https:// or /"
        ));
    }
    if let Some(missing) = ["{z}", "{x}", "{y}"].into_iter().find(|p| !s.contains(p)) {
        return Err(format!(
            "{s:?} is not a tile URL template: it has no {missing} (like https://tiles.example/{{z}}/{{x}}/{{y}}.png)"
        ));
    }
    if s.contains(['"', '\'', '<', '>', ' ']) || s.chars().any(char::is_control) {
        return Err(format!(
            "{s:?} is not a tile URL: it holds a quote, an angle bracket or a space"
        ));
    }
    Ok(s.to_owned())
}

/// A shared-subscription group name: one topic level, no wildcard.
fn share_group(s: &str) -> Result<String, String> {
    if s.contains(['/', '+', '#']) {
        return Err(format!(
            "{s:?} is not a group name: it may not contain '/', '+' or '#'"
        ));
    }
    Ok(s.to_owned())
}

impl Settings {
    /// The defaults, as `kerbside serve` with no flags and no environment would use.
    pub fn defaults() -> Settings {
        Settings {
            database: DatabaseArgs {
                database_url: "sqlite://kerbside.db".into(),
            },
            mqtt_url: None,
            mqtt_listen: None,
            mqtt_client_id: "kerbside".into(),
            mqtt_share_group: "kerbside".into(),
            database_pool: 8,
            stream_heartbeat_seconds: 15,
            http: "127.0.0.1:8080".into(),
            geodata: PathBuf::from("geodata"),
            staleness_minutes: 30,
            retention_days: 30,
            keep_history_days: 400,
            sweep_seconds: 10,
            timezone: chrono_tz::Asia::Shanghai,
            overstay_grace_minutes: 0,
            keep_plates_hours: 24,
            keep_contacts_days: 90,
            public_rate_per_minute: 600,
            devices: DeviceMode::Registered,
            trusted_proxies: Vec::new(),
            tile_url: None,
            tile_attribution: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_arguments_means_serve_with_the_defaults() {
        let cli = Cli::try_parse_from(["kerbside"]).unwrap();
        assert!(cli.command.is_none());
        let d = Settings::defaults();
        assert_eq!(cli.serve.http, d.http);
        assert_eq!(cli.serve.geodata, d.geodata);
        assert_eq!(cli.serve.staleness_minutes, d.staleness_minutes);
        assert_eq!(cli.serve.keep_plates_hours, d.keep_plates_hours);
        assert_eq!(cli.serve.keep_contacts_days, d.keep_contacts_days);
        assert_eq!(cli.serve.keep_history_days, d.keep_history_days);
        assert_eq!(cli.serve.retention_days, d.retention_days);
    }

    #[test]
    fn serve_takes_every_contract_flag() {
        let cli = Cli::try_parse_from([
            "kerbside",
            "serve",
            "--database-url",
            "sqlite://x.db",
            "--mqtt-url",
            "mqtt://127.0.0.1:1883",
            "--mqtt-listen",
            "127.0.0.1:1884",
            "--mqtt-client-id",
            "k2",
            "--http",
            "127.0.0.1:0",
            "--geodata",
            "g",
        ])
        .unwrap();
        let Some(Command::Serve(s)) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(s.database.database_url, "sqlite://x.db");
        assert_eq!(s.mqtt_url.as_deref(), Some("mqtt://127.0.0.1:1883"));
        assert_eq!(s.mqtt_client_id, "k2");
    }

    #[test]
    fn trusted_proxies_are_networks_or_addresses() {
        let cli = Cli::try_parse_from([
            "kerbside",
            "serve",
            "--trusted-proxies",
            "10.0.0.0/8, 192.168.1.7,2001:db8::/32",
        ])
        .unwrap();
        let Some(Command::Serve(s)) = cli.command else {
            panic!("not serve")
        };
        let nets: Vec<String> = s.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.168.1.7/32", "2001:db8::/32"]);
        assert!(Settings::defaults().trusted_proxies.is_empty());
        let none = Cli::try_parse_from(["kerbside", "serve", "--trusted-proxies", ""]).unwrap();
        let Some(Command::Serve(s)) = none.command else {
            panic!("not serve")
        };
        assert!(s.trusted_proxies.is_empty());
        let cli = Cli::try_parse_from(["kerbside"]).unwrap();
        assert!(cli.serve.trusted_proxies.is_empty());
        let err = Cli::try_parse_from(["kerbside", "serve", "--trusted-proxies", "10.0.0.0/33"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("10.0.0.0/33") && err.contains("CIDR"), "{err}");
    }

    #[test]
    fn a_basemap_is_a_tile_template_or_none() {
        assert_eq!(Settings::defaults().tile_url, None);
        let cli = Cli::try_parse_from([
            "kerbside",
            "serve",
            "--tile-url",
            "https://{s}.tiles.example/{z}/{x}/{y}.png",
        ])
        .unwrap();
        let Some(Command::Serve(s)) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(
            s.tile_url.as_deref(),
            Some("https://{s}.tiles.example/{z}/{x}/{y}.png")
        );
        assert!(tile_url("/tiles/{z}/{x}/{y}.png").is_ok());
        for bad in [
            "tiles.example/{z}/{x}/{y}.png",
            "https://tiles.example/{z}/{x}.png",
            "https://tiles.example/{z}/{x}/{y}.png\"><script>",
        ] {
            let err = Cli::try_parse_from(["kerbside", "serve", "--tile-url", bad])
                .unwrap_err()
                .to_string();
            assert!(err.contains("tile URL"), "{err}");
        }
    }

    #[test]
    fn a_token_expires_in_days_or_at_an_instant_not_both() {
        let create = [
            "kerbside", "token", "create", "--role", "admin", "--name", "a",
        ];
        let with = |extra: &[&str]| Cli::try_parse_from(create.iter().chain(extra));
        assert!(with(&["--expires-in-days", "30"]).is_ok());
        assert!(with(&["--expires-at", "2027-06-30T18:00:00+08:00"]).is_ok());
        assert!(with(&["--expires-at", "2027-06-30"]).is_err());
        assert!(with(&["--expires-in-days", "0"]).is_err());
        assert!(
            with(&[
                "--expires-in-days",
                "1",
                "--expires-at",
                "2027-06-30T18:00:00Z"
            ])
            .is_err()
        );
    }

    #[test]
    fn token_create_needs_a_known_role() {
        assert!(
            Cli::try_parse_from([
                "kerbside", "token", "create", "--role", "warden", "--name", "li"
            ])
            .is_ok()
        );
        assert!(
            Cli::try_parse_from([
                "kerbside", "token", "create", "--role", "mayor", "--name", "li"
            ])
            .is_err()
        );
    }
}
