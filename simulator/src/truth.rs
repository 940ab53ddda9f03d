//! The ground truth: what really happened in the simulated street, as JSON
//! lines (contract section 5), plus the run's own record.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A WGS 84 position.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub lon: f64,
    pub lat: f64,
}

/// Serialises instants as kerbside writes them (RFC 3339 UTC).
mod instant {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&kerbside::clock::rfc3339(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            let s = Option::<String>::deserialize(d)?;
            s.map(|s| {
                DateTime::parse_from_rfc3339(&s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
        }
    }
}

/// One line of the truth file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Truth {
    /// A bay's true status changed (and, at the window's start, every
    /// bay's status as the street began).
    BayStatus {
        #[serde(with = "instant")]
        at: DateTime<Utc>,
        bay_id: String,
        /// `free` or `occupied`.
        status: String,
    },
    /// A vehicle passed its bay's limit within the window.
    Overstay {
        bay_id: String,
        plate: String,
        #[serde(with = "instant")]
        arrived_at: DateTime<Utc>,
        #[serde(with = "instant")]
        limit_reached_at: DateTime<Utc>,
        /// `None` while it is still there at the window's end.
        #[serde(with = "instant::option")]
        left_at: Option<DateTime<Utc>>,
    },
    /// A vehicle parked outside any bay (a van on the footway).
    OutsideBay {
        #[serde(with = "instant")]
        at: DateTime<Utc>,
        plate: String,
        position: Position,
    },
    /// Something a warden should report (goods piled on the footway).
    Report {
        #[serde(with = "instant")]
        at: DateTime<Utc>,
        category: String,
        position: Position,
    },
    /// A bay's sensor fell silent for the rest of the window.
    SensorSilent {
        #[serde(with = "instant")]
        at: DateTime<Utc>,
        bay_id: String,
        device_id: String,
    },
    /// The run itself: its window, seed, and what it published. Written
    /// last, once every message is acknowledged by the broker.
    Run {
        #[serde(with = "instant")]
        started_at: DateTime<Utc>,
        #[serde(with = "instant")]
        ended_at: DateTime<Utc>,
        seed: u64,
        /// MQTT messages published, copies and malformed ones included.
        messages: u64,
        /// Events in those messages as the service counts them (each
        /// element of an array; a payload it cannot read counts once).
        events: u64,
    },
}

impl Truth {
    /// When it happened (for ordering the file).
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Truth::BayStatus { at, .. }
            | Truth::OutsideBay { at, .. }
            | Truth::Report { at, .. }
            | Truth::SensorSilent { at, .. } => *at,
            Truth::Overstay { arrived_at, .. } => *arrived_at,
            Truth::Run { ended_at, .. } => *ended_at,
        }
    }
}

/// Writes `records` as JSON lines.
pub fn write(path: &Path, records: &[Truth]) -> anyhow::Result<()> {
    let file = std::fs::File::create(path)
        .with_context(|| format!("creating the truth file {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for r in records {
        serde_json::to_writer(&mut out, r)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Reads a truth file; lines of types this version does not know are
/// skipped, so newer files stay readable.
pub fn read(path: &Path) -> anyhow::Result<Vec<Truth>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("opening the truth file {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
        match serde_json::from_value::<Truth>(value.clone()) {
            Ok(t) => out.push(t),
            Err(e) => {
                let known = [
                    "bay_status",
                    "overstay",
                    "outside_bay",
                    "report",
                    "sensor_silent",
                    "run",
                ];
                if value["type"].as_str().is_some_and(|t| known.contains(&t)) {
                    anyhow::bail!("{}:{}: {e}", path.display(), i + 1);
                }
            }
        }
    }
    Ok(out)
}
