//! What the benchmarks share: reading `--name value` flags, the MQTT client
//! options, the shipped street's bay ids, and a sensor event that flips its
//! bay.

#![allow(dead_code)] // each bench uses its own part

use std::time::Duration;

use chrono::{DateTime, Utc};
use rumqttc::MqttOptions;

/// The value after `--name` on the command line, if any.
pub fn arg(name: &str) -> Option<String> {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter()
        .position(|x| x == name)
        .and_then(|i| argv.get(i + 1))
        .cloned()
}

/// The number after `--name` (underscores allowed: `1_000_000`), if any.
pub fn num(name: &str) -> Option<f64> {
    arg(name).and_then(|v| v.replace('_', "").parse().ok())
}

/// Options for a bench client on the local broker: a window of 1,000
/// unacknowledged QoS 1 messages, as kerbside's own client has.
pub fn options(id: &str, port: u16) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_inflight(1000).set_keep_alive(Duration::from_secs(30));
    o
}

/// The bay ids of the shipped Qingfeng Road (run from the repository root).
pub fn shipped_bays() -> Vec<String> {
    kerbside::geodata::load_file(std::path::Path::new("geodata/qingfeng-road.geojson"))
        .expect("run from the repository root")
        .remove(0)
        .bays
        .iter()
        .map(|b| b.bay_id.to_string())
        .collect()
}

/// Event `i` of a run tagged `tag`: it flips bay `i mod n` (occupied on
/// even rounds of the street, vacated on odd), observed at `at`, from that
/// bay's sensor `{tag}-{bay}`. Returns (topic, payload).
pub fn sensor_event(i: usize, bays: &[String], at: DateTime<Utc>, tag: &str) -> (String, String) {
    let bay = &bays[i % bays.len()];
    let kind = if (i / bays.len()).is_multiple_of(2) {
        "occupied"
    } else {
        "vacated"
    };
    let body = format!(
        r#"{{"event_id":"{tag}{i}","type":"{kind}","observed_at":"{}","bay_id":"{bay}"}}"#,
        kerbside::clock::rfc3339(at)
    );
    (format!("kerbside/v1/devices/{tag}-{bay}/events"), body)
}

/// A fresh PostgreSQL database for one bench run, dropped when this is:
/// `kerbside_bench_{pid}_{tag}` on the server `KERBSIDE_BENCH_DATABASE`
/// names (default `postgres://postgres@127.0.0.1:5432/`).
pub struct PgDatabase {
    admin_url: String,
    name: String,
    /// Its URL, for `--database-url`.
    pub url: String,
}

impl PgDatabase {
    pub fn create(tag: &str) -> PgDatabase {
        use diesel::Connection;
        use diesel::connection::SimpleConnection;
        let server = std::env::var("KERBSIDE_BENCH_DATABASE")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/".to_owned());
        let base = server.trim_end_matches('/');
        let base = match base.rsplit_once('/') {
            // A URL naming a database: the server is what comes before it.
            Some((head, _)) if head.contains("://") => head.to_owned(),
            _ => base.to_owned(),
        };
        let name = format!("kerbside_bench_{}_{tag}", std::process::id());
        let admin_url = format!("{base}/postgres");
        let mut admin = diesel::PgConnection::establish(&admin_url)
            .unwrap_or_else(|e| panic!("KERBSIDE_BENCH_DATABASE: cannot reach {admin_url}: {e}"));
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin
                .batch_execute(&sql)
                .unwrap_or_else(|e| panic!("cannot create {name}: {e}"));
        }
        PgDatabase {
            url: format!("{base}/{name}"),
            admin_url,
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        use diesel::Connection;
        use diesel::connection::SimpleConnection;
        if let Ok(mut admin) = diesel::PgConnection::establish(&self.admin_url) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
