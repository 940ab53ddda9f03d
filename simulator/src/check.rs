//! Compares what the service reports with the truth of a run.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use kerbside::clock::rfc3339;
use serde::Serialize;
use serde_json::Value;

use crate::truth::Truth;

/// How to check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The service's base URL, e.g. `http://127.0.0.1:8080`.
    pub api: String,
    /// A warden's (or admin's) bearer token.
    pub token: String,
    /// How far a reported start or end may lie from the truth.
    pub tolerance: chrono::Duration,
    /// How long to wait for the service to take every published event.
    pub wait: Duration,
}

/// The comparison. Shares are `null` when there was nothing to compare.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Bays whose sensor stayed live to the end.
    pub bays_compared: usize,
    /// Share of those whose status the service reports as the truth has it.
    pub end_state_agreement: Option<f64>,
    /// Bays whose sensor fell silent; and how many the service reports as
    /// `unknown` (it cannot know, and should say so).
    pub silent_bays: usize,
    pub silent_bays_unknown: usize,
    pub truth_sessions: usize,
    pub service_sessions: usize,
    pub session_recall: Option<f64>,
    pub session_precision: Option<f64>,
    pub truth_overstays: usize,
    pub overstay_violations: usize,
    pub overstay_recall: Option<f64>,
    pub overstay_precision: Option<f64>,
    pub truth_outside_bay: usize,
    pub outside_bay_violations: usize,
    pub outside_bay_recall: Option<f64>,
    pub outside_bay_precision: Option<f64>,
    pub truth_obstructions: usize,
    pub obstruction_recall: Option<f64>,
    /// Every bay with a live sensor agrees, every overstay is found and
    /// none invented, and at least 99% of sessions are found.
    pub full_agreement: bool,
    /// The first disagreements found, for a person to read.
    #[serde(skip)]
    pub notes: Vec<String>,
}

fn share(hit: usize, of: usize) -> Option<f64> {
    (of > 0).then(|| hit as f64 / of as f64)
}

fn fmt_share(s: Option<f64>) -> String {
    s.map_or_else(|| "n/a".into(), |v| format!("{:.2}%", v * 100.0))
}

impl Report {
    /// See [`Report::full_agreement`](struct@Report).
    pub fn full_agreement(&self) -> bool {
        self.full_agreement
    }

    fn judge(mut self) -> Report {
        let all = |s: Option<f64>| s.is_none_or(|v| v >= 1.0);
        self.full_agreement = all(self.end_state_agreement)
            && all(self.overstay_recall)
            && all(self.overstay_precision)
            && self.session_recall.is_none_or(|v| v >= 0.99);
        self
    }

    /// The human part of the report; the caller prints the JSON line last.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "end state: {} of {} bays with live sensors agree ({}); {} silent bays, {} reported unknown",
            (self.end_state_agreement.unwrap_or(0.0) * self.bays_compared as f64).round(),
            self.bays_compared,
            fmt_share(self.end_state_agreement),
            self.silent_bays,
            self.silent_bays_unknown
        );
        let _ = writeln!(
            out,
            "sessions: {} true, {} reported; recall {}, precision {}",
            self.truth_sessions,
            self.service_sessions,
            fmt_share(self.session_recall),
            fmt_share(self.session_precision)
        );
        let _ = writeln!(
            out,
            "overstays: {} true, {} violations; recall {}, precision {}",
            self.truth_overstays,
            self.overstay_violations,
            fmt_share(self.overstay_recall),
            fmt_share(self.overstay_precision)
        );
        let _ = writeln!(
            out,
            "outside bay: {} true, {} violations; recall {}, precision {}",
            self.truth_outside_bay,
            self.outside_bay_violations,
            fmt_share(self.outside_bay_recall),
            fmt_share(self.outside_bay_precision)
        );
        let _ = writeln!(
            out,
            "obstructions: {} true; recall {}",
            self.truth_obstructions,
            fmt_share(self.obstruction_recall)
        );
        for n in &self.notes {
            let _ = writeln!(out, "  {n}");
        }
        out
    }
}

struct Api {
    agent: ureq::Agent,
    base: String,
    auth: String,
}

impl Api {
    fn get_text(&self, path_or_url: &str) -> anyhow::Result<String> {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        let mut resp = self
            .agent
            .get(&url)
            .header("Authorization", &self.auth)
            .call()
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .with_context(|| format!("reading GET {url}"))?;
        if status != 200 {
            bail!("GET {url} answered {status}: {body}");
        }
        Ok(body)
    }

    fn get(&self, path_or_url: &str) -> anyhow::Result<Value> {
        let text = self.get_text(path_or_url)?;
        serde_json::from_str(&text).with_context(|| format!("GET {path_or_url}: not JSON"))
    }

    /// The service's metrics as (name, value) for unlabelled samples.
    fn metrics(&self) -> anyhow::Result<HashMap<String, f64>> {
        let text = self.get_text("/metrics")?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.split_once(' ')?;
                Some((name.to_owned(), value.trim().parse().ok()?))
            })
            .collect())
    }
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn close(a: DateTime<Utc>, b: DateTime<Utc>, tol: chrono::Duration) -> bool {
    (a - b).abs() <= tol
}

fn close_opt(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>, tol: chrono::Duration) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => close(a, b, tol),
        _ => false,
    }
}

/// Waits until the service has counted `events` events, then for two of
/// its sweeps, so that what time alone decides is decided.
fn settle(api: &Api, events: u64, wait: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + wait;
    let value = |m: &HashMap<String, f64>, name: &str| m.get(name).copied().unwrap_or(0.0);
    loop {
        let m = api.metrics()?;
        let n = value(&m, "kerbside_events_accepted_total")
            + value(&m, "kerbside_events_duplicate_total")
            + value(&m, "kerbside_events_rejected_total");
        if n >= events as f64 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the service took {n} of the run's {events} events within {wait:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if let Some(&s0) = api.metrics()?.get("kerbside_sweeps_total") {
        while value(&api.metrics()?, "kerbside_sweeps_total") < s0 + 2.0 {
            if Instant::now() > deadline {
                bail!("the service ran no sweep within {wait:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// A true parking session of a bay.
struct Session {
    bay: String,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
}

/// Compares the service at `opts.api` with `truth`.
pub fn check(truth: &[Truth], opts: &CheckOptions) -> anyhow::Result<Report> {
    let Some((started, ended, events)) = truth.iter().find_map(|t| match t {
        Truth::Run {
            started_at,
            ended_at,
            events,
            ..
        } => Some((*started_at, *ended_at, *events)),
        _ => None,
    }) else {
        bail!("the truth has no run record: was the run finished?");
    };
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let api = Api {
        agent,
        base: opts.api.trim_end_matches('/').to_owned(),
        auth: format!("Bearer {}", opts.token),
    };
    settle(&api, events, opts.wait)?;
    let tol = opts.tolerance;
    let mut notes = Vec::new();
    let mut note = |s: String| {
        if notes.len() < 20 {
            notes.push(s);
        }
    };

    // The truth, bay by bay.
    let silent: HashSet<&str> = truth
        .iter()
        .filter_map(|t| match t {
            Truth::SensorSilent { bay_id, .. } => Some(bay_id.as_str()),
            _ => None,
        })
        .collect();
    let mut final_status: HashMap<&str, &str> = HashMap::new();
    let mut true_sessions: Vec<Session> = Vec::new();
    let mut open: HashMap<&str, usize> = HashMap::new();
    for t in truth {
        if let Truth::BayStatus { at, bay_id, status } = t {
            final_status.insert(bay_id, status);
            match status.as_str() {
                "occupied" if !open.contains_key(bay_id.as_str()) => {
                    open.insert(bay_id, true_sessions.len());
                    true_sessions.push(Session {
                        bay: bay_id.clone(),
                        start: *at,
                        end: None,
                    });
                }
                "free" => {
                    if let Some(i) = open.remove(bay_id.as_str()) {
                        true_sessions[i].end = Some(*at);
                    }
                }
                _ => {}
            }
        }
    }

    // The service, road by road.
    let roads = api.get("/v1/roads")?;
    let mut status_of: HashMap<String, String> = HashMap::new();
    let mut sessions: Vec<Session> = Vec::new();
    let mut violations: Vec<Value> = Vec::new();
    for road in roads["roads"].as_array().into_iter().flatten() {
        let id = road["road_id"].as_str().unwrap_or_default();
        let bays = api.get(&format!("/v1/roads/{id}/bays"))?;
        for f in bays["features"].as_array().into_iter().flatten() {
            let p = &f["properties"];
            if let (Some(b), Some(s)) = (p["bay_id"].as_str(), p["status"].as_str()) {
                status_of.insert(b.to_owned(), s.to_owned());
            }
        }
        let mut next = Some(format!(
            "/v1/roads/{id}/sessions?from={}&to={}&limit=10000",
            rfc3339(started),
            rfc3339(ended)
        ));
        while let Some(page) = next.take() {
            let v = api.get(&page)?;
            for s in v["sessions"].as_array().into_iter().flatten() {
                let (Some(bay), Some(start)) = (s["bay_id"].as_str(), time(&s["started_at"]))
                else {
                    continue;
                };
                sessions.push(Session {
                    bay: bay.to_owned(),
                    start,
                    end: time(&s["ended_at"]),
                });
            }
            next = v["next"].as_str().map(str::to_owned);
        }
        let v = api.get(&format!("/v1/roads/{id}/violations?status=all"))?;
        violations.extend(v["violations"].as_array().into_iter().flatten().cloned());
    }

    // End state, for bays whose sensor is live.
    let mut compared = 0;
    let mut agree = 0;
    let mut silent_unknown = 0;
    let mut bays: Vec<(&&str, &&str)> = final_status.iter().collect();
    bays.sort();
    for (bay, truth_status) in bays {
        let reported = status_of.get(*bay).map_or("missing", String::as_str);
        if silent.contains(*bay) {
            silent_unknown += usize::from(reported == "unknown");
            continue;
        }
        compared += 1;
        if reported == *truth_status {
            agree += 1;
        } else {
            note(format!(
                "bay {bay}: truly {truth_status}, reported {reported}"
            ));
        }
    }

    // Sessions, for bays whose sensor is live.
    let live = |bay: &str| !silent.contains(bay);
    let mut by_bay: HashMap<&str, Vec<(usize, &Session)>> = HashMap::new();
    for (i, s) in sessions.iter().enumerate().filter(|(_, s)| live(&s.bay)) {
        by_bay.entry(s.bay.as_str()).or_default().push((i, s));
    }
    let mut used = HashSet::new();
    let mut found = 0;
    let true_live: Vec<&Session> = true_sessions.iter().filter(|s| live(&s.bay)).collect();
    for t in &true_live {
        let hit = by_bay.get(t.bay.as_str()).and_then(|c| {
            c.iter().find(|(i, s)| {
                !used.contains(i) && close(s.start, t.start, tol) && close_opt(s.end, t.end, tol)
            })
        });
        match hit {
            Some((i, _)) => {
                used.insert(*i);
                found += 1;
            }
            None => note(format!(
                "session missed: bay {} from {} to {}",
                t.bay,
                rfc3339(t.start),
                t.end.map_or("(still there)".into(), rfc3339)
            )),
        }
    }
    let reported_live = by_bay.values().map(Vec::len).sum::<usize>();

    // Overstays: violations that stand (not void), decided by the window's end.
    let kind = |v: &Value, k: &str| v["kind"] == k && v["status"] != "void";
    let overstays: Vec<&Value> = violations
        .iter()
        .filter(|v| kind(v, "overstay"))
        .filter(|v| time(&v["detected_at"]).is_some_and(|d| d <= ended))
        .collect();
    let mut matched = HashSet::new();
    let mut truth_overstays = 0;
    let mut caught = 0;
    for t in truth {
        let Truth::Overstay {
            bay_id,
            plate,
            arrived_at,
            limit_reached_at,
            ..
        } = t
        else {
            continue;
        };
        truth_overstays += 1;
        let hit = overstays.iter().position(|v| {
            v["bay_id"] == bay_id.as_str()
                && time(&v["started_at"]).is_some_and(|s| close(s, *arrived_at, tol))
                && time(&v["detected_at"]).is_some_and(|d| close(d, *limit_reached_at, tol))
        });
        match hit {
            Some(i) => {
                matched.insert(i);
                caught += 1;
            }
            None => note(format!(
                "overstay missed: {plate} in bay {bay_id}, arrived {}, limit {}",
                rfc3339(*arrived_at),
                rfc3339(*limit_reached_at)
            )),
        }
    }
    for (i, v) in overstays.iter().enumerate() {
        if !matched.contains(&i) {
            note(format!(
                "overstay reported that did not happen: {} bay {} from {}",
                v["violation_id"], v["bay_id"], v["started_at"]
            ));
        }
    }

    // The footway.
    let outside: Vec<&Value> = violations
        .iter()
        .filter(|v| kind(v, "outside_bay"))
        .collect();
    let true_plates: HashSet<&str> = truth
        .iter()
        .filter_map(|t| match t {
            Truth::OutsideBay { plate, .. } => Some(plate.as_str()),
            _ => None,
        })
        .collect();
    let reported_plates: HashSet<&str> =
        outside.iter().filter_map(|v| v["plate"].as_str()).collect();
    let outside_hits = true_plates
        .iter()
        .filter(|p| reported_plates.contains(*p))
        .count();
    let outside_right = outside
        .iter()
        .filter(|v| v["plate"].as_str().is_some_and(|p| true_plates.contains(p)))
        .count();
    let obstructions: Vec<(f64, f64)> = violations
        .iter()
        .filter(|v| kind(v, "obstruction"))
        .filter_map(|v| {
            Some((
                v["position"]["lon"].as_f64()?,
                v["position"]["lat"].as_f64()?,
            ))
        })
        .collect();
    let mut true_obstructions = 0;
    let mut obstructions_hit = 0;
    for t in truth {
        if let Truth::Report { position, .. } = t {
            true_obstructions += 1;
            let near = obstructions.iter().any(|(lon, lat)| {
                let dx = (lon - position.lon) * 95_000.0;
                let dy = (lat - position.lat) * 111_000.0;
                dx.hypot(dy) < 5.0
            });
            obstructions_hit += usize::from(near);
        }
    }

    Ok(Report {
        bays_compared: compared,
        end_state_agreement: share(agree, compared),
        silent_bays: silent.len(),
        silent_bays_unknown: silent_unknown,
        truth_sessions: true_live.len(),
        service_sessions: reported_live,
        session_recall: share(found, true_live.len()),
        session_precision: share(used.len(), reported_live),
        truth_overstays,
        overstay_violations: overstays.len(),
        overstay_recall: share(caught, truth_overstays),
        overstay_precision: share(matched.len(), overstays.len()),
        truth_outside_bay: true_plates.len(),
        outside_bay_violations: outside.len(),
        outside_bay_recall: share(outside_hits, true_plates.len()),
        outside_bay_precision: share(outside_right, outside.len()),
        truth_obstructions: true_obstructions,
        obstruction_recall: share(obstructions_hit, true_obstructions),
        full_agreement: false,
        notes,
    }
    .judge())
}
