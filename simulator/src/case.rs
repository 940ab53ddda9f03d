//! The station's first case, replayed against a running kerbside (contract
//! 6.4): a building site beside the Wanda plaza piles its materials on the
//! footway; a warden's handheld reports it; the site's group is told, with
//! a deadline; the deadline passes, the case escalates and the enforcement
//! squad's group is told; a warden checks the footway and resolves it.
//!
//! The scenario stands in for both groups' webhooks with a receiver of its
//! own, registers the two parties and a handheld through the admin API,
//! publishes the report over MQTT as that handheld, and follows the case
//! through the REST API to its resolution. Each step is checked: a
//! notification that does not arrive, or arrives unsigned, fails the run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use kerbside::domain::devices::DeviceKind;
use serde_json::{Value, json};

use crate::map::StreetPlan;
use crate::plan::Device;
use crate::publish::Publisher;
use crate::register::Registrar;

/// What the scenario needs.
#[derive(Debug, Clone)]
pub struct CaseOptions {
    /// The broker, `mqtt://HOST:PORT`.
    pub mqtt_url: String,
    /// The service's base URL and an admin's token.
    pub registrar: Registrar,
    /// Where the receiver standing in for both groups listens; port 0
    /// picks a free one. The service must be able to reach it.
    pub receiver: String,
    /// The site's deadline, minutes (the station gave two hours).
    pub deadline_minutes: u32,
    /// The report's `observed_at`: now, by the service's clock.
    pub observed_at: DateTime<Utc>,
    /// A tag that makes this run's party and device ids new.
    pub tag: String,
    /// How long to wait for each step, beyond the deadline, real time.
    pub patience: Duration,
}

/// How the case went, step by step.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseReport {
    pub case_id: String,
    pub road_id: Option<String>,
    /// The site's message, as its group received it.
    pub site_message: String,
    /// The enforcement squad's message, as its group received it.
    pub squad_message: String,
    /// The case's history, action by action.
    pub history: Vec<String>,
    /// Every notification was delivered, and signed where the party's
    /// format carries a signature.
    pub delivered: usize,
}

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    signature: Option<String>,
    body: String,
}

/// Replays the first case; `progress` hears of each step as it happens.
pub fn replay(
    street: &StreetPlan,
    o: &CaseOptions,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<CaseReport> {
    let road = street
        .roads
        .first()
        .context("the geodata has no road to replay the case on")?;
    let (lon, lat) = road.point_beside(road.length_m * 0.3, 1.0, 12.0);
    let (receiver, got) = receive(&o.receiver)?;
    let api = o.registrar.api.trim_end_matches('/').to_owned();
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let auth = format!("Bearer {}", o.registrar.token);
    let post = |path: &str, body: &Value| -> anyhow::Result<(u16, Value)> {
        let url = format!("{api}{path}");
        let mut r = http
            .post(&url)
            .header("Authorization", &auth)
            .send_json(body)
            .with_context(|| format!("POST {url}"))?;
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    };
    let get = |path: &str| -> anyhow::Result<Value> {
        let url = format!("{api}{path}");
        let mut r = http
            .get(&url)
            .header("Authorization", &auth)
            .call()
            .with_context(|| format!("GET {url}"))?;
        ensure!(r.status() == 200, "GET {url} answered {}", r.status());
        r.body_mut()
            .read_json()
            .with_context(|| format!("GET {url}"))
    };

    let site_id = format!("wanda-site.{}", o.tag);
    let squad_id = format!("squad.{}", o.tag);
    let half = 0.0002;
    let area = json!({"type": "Polygon", "coordinates": [[[lon - half, lat - half],
        [lon + half, lat - half], [lon + half, lat + half], [lon - half, lat + half],
        [lon - half, lat - half]]]});
    let (status, site) = post(
        "/v1/parties",
        &json!({"party_id": site_id, "name": "万达广场东侧工地 building site", "kind": "site",
                "area": area, "webhook_url": format!("{receiver}/site"),
                "deadline_minutes": o.deadline_minutes}),
    )?;
    ensure!(status == 201, "adding the site answered {status}: {site}");
    let secret = site["webhook_secret"]
        .as_str()
        .context("the site's webhook secret")?
        .to_owned();
    let (status, squad) = post(
        "/v1/parties",
        &json!({"party_id": squad_id, "name": "城管执法中队 enforcement squad",
                "kind": "enforcement", "webhook_url": format!("{receiver}/squad"),
                "webhook_format": "wecom"}),
    )?;
    ensure!(status == 201, "adding the squad answered {status}: {squad}");
    progress(&format!(
        "parties {site_id} (deadline {} min) and {squad_id} told at {receiver}",
        o.deadline_minutes
    ));

    let handheld = Device {
        device_id: format!("HH-case.{}", o.tag),
        kind: DeviceKind::Handheld,
        name: "warden's handheld, the first case".into(),
    };
    let logins = o.registrar.register(std::slice::from_ref(&handheld))?;
    let mut publisher = Publisher::connect_devices(&o.mqtt_url, &logins)?;
    let report = json!({"event_id": format!("case-{}", o.tag), "type": "report",
        "observed_at": o.observed_at.to_rfc3339(), "category": "obstruction",
        "position": {"lon": lon, "lat": lat},
        "note": "building materials piled on the footway outside the site"});
    publisher.send(
        &kerbside::mqtt::topics::events(&handheld.device_id),
        report.to_string().into_bytes(),
    )?;
    publisher.finish(Duration::from_secs(30))?;
    progress(&format!(
        "{} reported materials on the footway at {lon:.6}, {lat:.6}",
        handheld.device_id
    ));

    let site_msg = wait_for(&got, "/site", o.patience)
        .context("the site's group was never told of the case")?;
    let expected = signature(&secret, &site_msg.body);
    ensure!(
        site_msg.signature.as_deref() == Some(expected.as_str()),
        "the site's message is not signed with its secret"
    );
    let notice: Value = serde_json::from_str(&site_msg.body).context("the site's message")?;
    let case_id = notice["case_id"]
        .as_str()
        .context("the site's message names no case")?
        .to_owned();
    progress(&format!(
        "the site was told of case {case_id}, due {}",
        notice["due_at"].as_str().unwrap_or("(no deadline)")
    ));

    let patience = o.patience + Duration::from_secs(60 * u64::from(o.deadline_minutes));
    let squad_msg = wait_for(&got, "/squad", patience)
        .context("the case never escalated to the enforcement squad")?;
    let robot: Value = serde_json::from_str(&squad_msg.body).context("the squad's message")?;
    let text = robot["text"]["content"].as_str().unwrap_or_default();
    ensure!(
        text.contains(&case_id),
        "the squad's message does not name the case: {text}"
    );
    progress(&format!(
        "the deadline passed; the squad's group was told:\n{text}"
    ));

    let (status, resolved) = post(
        &format!("/v1/cases/{case_id}/resolve"),
        &json!({"note": "a warden checked the footway: cleared within the warning's deadline"}),
    )?;
    ensure!(
        status == 200,
        "resolving the case answered {status}: {resolved}"
    );
    progress("a warden checked the footway and resolved the case");

    let case = get(&format!("/v1/cases/{case_id}"))?;
    let history: Vec<String> = case["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter_map(|s| s["action"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for step in ["opened", "notified", "overdue", "escalated", "resolved"] {
        ensure!(
            history.iter().any(|h| h == step),
            "the case's history lacks {step:?}: {history:?}"
        );
    }
    let delivered = wait_delivered(&get, &case_id, o.patience)?;
    Ok(CaseReport {
        case_id,
        road_id: case["road_id"].as_str().map(str::to_owned),
        site_message: site_msg.body,
        squad_message: text.to_owned(),
        history,
        delivered,
    })
}

/// Waits for every notification of the case (the resolution's included)
/// to be delivered; returns how many there were.
fn wait_delivered(
    get: &dyn Fn(&str) -> anyhow::Result<Value>,
    case_id: &str,
    patience: Duration,
) -> anyhow::Result<usize> {
    let until = Instant::now() + patience;
    loop {
        let case = get(&format!("/v1/cases/{case_id}"))?;
        let n = case["notifications"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !n.is_empty() && n.iter().all(|n| n["delivered_at"].is_string()) {
            return Ok(n.len());
        }
        if Instant::now() > until {
            bail!("notifications not all delivered: {}", case["notifications"]);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The first POST to `path`, waiting at most `patience`.
fn wait_for(got: &Mutex<Vec<Got>>, path: &str, patience: Duration) -> anyhow::Result<Got> {
    let until = Instant::now() + patience;
    loop {
        if let Some(g) = got.lock().unwrap().iter().find(|g| g.path == path) {
            return Ok(g.clone());
        }
        if Instant::now() > until {
            bail!("nothing was posted to {path} within {patience:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `sha256=<hex>` of `body` keyed with `secret`, as kerbside signs.
fn signature(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(body.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Starts the receiver on `addr`; returns its base URL and what it got.
/// It answers every POST 200 (a WeCom robot's `{"errcode":0}`).
fn receive(addr: &str) -> anyhow::Result<(String, Arc<Mutex<Vec<Got>>>)> {
    let listener =
        TcpListener::bind(addr).with_context(|| format!("the receiver cannot listen on {addr}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    let got = Arc::new(Mutex::new(Vec::new()));
    let kept = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let kept = kept.clone();
            std::thread::spawn(move || {
                let _ = serve(stream, &kept);
            });
        }
    });
    Ok((url, got))
}

fn serve(mut stream: std::net::TcpStream, kept: &Mutex<Vec<Got>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let (mut length, mut signature) = (0usize, None);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            } else if k.eq_ignore_ascii_case("x-kerbside-signature") {
                signature = Some(v.trim().to_owned());
            }
        }
    }
    let mut body = vec![0; length.min(1 << 20)];
    reader.read_exact(&mut body)?;
    kept.lock().unwrap().push(Got {
        path,
        signature,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let answer = r#"{"errcode":0,"errmsg":"ok"}"#;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    )
}
