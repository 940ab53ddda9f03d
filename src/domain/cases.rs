//! Cases: a problem in the street that someone other than a driver must
//! fix (goods on the footway, a site's materials, a blocked access), and
//! the complaints from the public that open them (contract section 6.4).
//!
//! The rules are here, as pure functions: who answers for a position, when
//! two reports are one case, how a case moves through its life, how a
//! notification is signed and worded, and how long to wait before trying a
//! webhook again. Time comes in as `now`; randomness (ids, secrets) is
//! asked for by the caller.

use chrono::{DateTime, Duration, Utc};
use geo::{Contains, Distance, Euclidean, Point, Polygon};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::Serialize;
use sha2::Sha256;

use super::events::Position;
use crate::spatial::LocalFrame;

/// A party whose area is within this many metres of a case (and none
/// contains it) answers for it.
pub const ASSIGN_WITHIN_M: f64 = 30.0;
/// An open case of the same party and kind within this many metres is the
/// same problem: a second report adds to its history.
pub const SAME_CASE_WITHIN_M: f64 = 20.0;
/// A complaint is on the nearest road within this many metres, else on none.
pub const COMPLAINT_ROAD_WITHIN_M: f64 = 100.0;
/// Longest complaint text, characters.
pub const MAX_COMPLAINT_CHARS: usize = 1000;
/// Longest contact, note or response, characters.
pub const MAX_NOTE_CHARS: usize = 1000;
/// A webhook that has not answered in this long has failed this attempt.
pub const WEBHOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// A notification is retried for this long after it was written, then
/// given up (and the giving up recorded).
pub fn give_up_after() -> Duration {
    Duration::hours(24)
}

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum $name { $($(#[$vm])* #[serde(rename = $s)] $v),+ }

        impl $name {
            /// Every value, in wire order.
            pub const ALL: &[$name] = &[$($name::$v),+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }

            /// Parses a wire name.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$v),)+ _ => None }
            }

            /// The wire names, for error messages.
            pub fn names() -> String {
                [$($s),+].join(", ")
            }
        }
    };
}

wire_enum!(
    /// Who a party is.
    PartyKind {
        Shop = "shop",
        Site = "site",
        Property = "property",
        Operator = "operator",
        /// Told of every escalated case; answers for no area.
        Enforcement = "enforcement",
        Other = "other",
    }
);

wire_enum!(
    /// What a webhook receives.
    WebhookFormat {
        /// kerbside's own JSON notice.
        Json = "json",
        /// A WeCom (企业微信) group robot's text message.
        Wecom = "wecom",
        /// A DingTalk group robot's text message.
        Dingtalk = "dingtalk",
    }
);

wire_enum!(
    /// What a case is about.
    CaseKind {
        FootwayParking = "footway_parking",
        Obstruction = "obstruction",
        DisorderlyParking = "disorderly_parking",
        Other = "other",
    }
);

wire_enum!(
    /// Where a case is in its life.
    CaseStatus {
        /// Nobody answers for it yet; escalated after the default deadline.
        Open = "open",
        /// Its party was told, and has until `due_at`.
        Notified = "notified",
        /// `due_at` passed before it was resolved (escalation follows at once).
        Overdue = "overdue",
        /// Enforcement was told.
        Escalated = "escalated",
        Resolved = "resolved",
    }
);

wire_enum!(
    /// Where a complaint is, as its author sees it.
    ComplaintStatus {
        Received = "received",
        /// A case is open for it and someone has been told.
        InProgress = "in_progress",
        Resolved = "resolved",
    }
);

wire_enum!(
    /// How a case came to be.
    CaseSource {
        /// A warden's `report` event over MQTT.
        Report = "report",
        /// A warden's `POST /v1/cases`.
        Warden = "warden",
        Complaint = "complaint",
    }
);

wire_enum!(
    /// Why a party is being told.
    NoticeEvent {
        Opened = "opened",
        Escalated = "escalated",
        Resolved = "resolved",
    }
);

impl CaseStatus {
    /// Whether the case still needs someone.
    pub fn is_unresolved(self) -> bool {
        self != CaseStatus::Resolved
    }
}

/// A party's area, as the assignment rule needs it.
#[derive(Debug, Clone)]
pub struct PartyArea<'a> {
    pub party_id: &'a str,
    pub kind: PartyKind,
    /// WGS 84 degrees; `None` for enforcement.
    pub area: Option<&'a Polygon<f64>>,
}

/// The party that answers for a case at `p`: the one whose area contains
/// it (the smallest area when several do, then the lowest id), else the
/// nearest whose area is within [`ASSIGN_WITHIN_M`]. Enforcement parties
/// answer for no area.
pub fn assign<'a>(parties: &[PartyArea<'a>], p: Position) -> Option<&'a str> {
    let frame = LocalFrame::at(p.lon, p.lat);
    let origin = Point::new(0.0, 0.0);
    let mut containing: Option<(f64, &str)> = None;
    let mut nearest: Option<(f64, &str)> = None;
    for party in parties {
        if party.kind == PartyKind::Enforcement {
            continue;
        }
        let Some(area) = party.area else { continue };
        let local = frame.polygon_to_metres(area);
        if local.contains(&origin) {
            use geo::Area;
            let size = local.unsigned_area();
            if containing.is_none_or(|(s, id)| (size, party.party_id) < (s, id)) {
                containing = Some((size, party.party_id));
            }
            continue;
        }
        let d = Euclidean.distance(&origin, &local);
        if d <= ASSIGN_WITHIN_M && nearest.is_none_or(|(n, id)| (d, party.party_id) < (n, id)) {
            nearest = Some((d, party.party_id));
        }
    }
    containing.or(nearest).map(|(_, id)| id)
}

/// Metres between two positions (a local plane: exact enough within a
/// few kilometres).
pub fn distance_m(a: Position, b: Position) -> f64 {
    let frame = LocalFrame::at(a.lon, a.lat);
    let q = frame.to_metres(geo::coord! { x: b.lon, y: b.lat });
    q.x.hypot(q.y)
}

/// Whether a new problem at `p` is the open case at `q` of the same party
/// and kind.
pub fn same_case(p: Position, q: Position) -> bool {
    distance_m(p, q) <= SAME_CASE_WITHIN_M
}

/// When a case opened at `opened_at` falls due, given its party's deadline.
pub fn due_at(opened_at: DateTime<Utc>, deadline_minutes: u32) -> DateTime<Utc> {
    opened_at + Duration::minutes(i64::from(deadline_minutes))
}

/// A status change a case may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Its deadline passed.
    Overdue,
    /// Enforcement was told.
    Escalate,
    Resolve,
}

/// The status after `step`, or `Err` with the current status when the step
/// does not apply (a resolved case is never reopened by these steps).
pub fn step(current: CaseStatus, step: Step) -> Result<CaseStatus, CaseStatus> {
    use CaseStatus::*;
    match (current, step) {
        (Open | Notified, Step::Overdue) => Ok(Overdue),
        (Overdue, Step::Escalate) => Ok(Escalated),
        (Open | Notified | Overdue | Escalated, Step::Resolve) => Ok(Resolved),
        (s, _) => Err(s),
    }
}

/// The delay before attempt `attempts + 1` after `attempts` failures:
/// 5 s doubled each time, at most one hour.
pub fn backoff(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(10);
    Duration::seconds((5i64 << exp).min(3600))
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` keyed with the party's
/// webhook secret, as the `X-Kerbside-Signature` header carries it.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lowercase base32 (RFC 4648 alphabet, no padding) of `n` random bytes.
pub fn random_code(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    // ThreadRng is a ChaCha CSPRNG seeded from the operating system.
    rand::rng().fill_bytes(&mut bytes);
    base32(&bytes)
}

fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buffer, mut bits) = (0u32, 0);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// A new complaint's tracking code: 128 random bits, 26 characters.
pub fn tracking_code() -> String {
    random_code(16)
}

/// A new case's id.
pub fn case_id() -> String {
    format!("case-{}", random_code(10))
}

/// A new party's webhook secret: 256 random bits.
pub fn webhook_secret() -> String {
    format!("whsec_{}", random_code(32))
}

/// Checks free text from outside (a complaint, a contact, a note): at most
/// `max` characters, no control characters but line breaks and tabs.
/// Stored as given; escaped wherever it is shown.
pub fn check_text(name: &str, s: &str, max: usize) -> Result<(), String> {
    let n = s.chars().count();
    if n > max {
        return Err(format!(
            "{name} has {n} characters; at most {max} are taken"
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(format!(
            "{name} holds the control character U+{:04X}",
            u32::from(c)
        ));
    }
    Ok(())
}

/// What a party is told of a case (contract 6.4).
#[derive(Debug, Clone, Serialize)]
pub struct Notice<'a> {
    pub case_id: &'a str,
    pub kind: &'a str,
    pub road_id: Option<&'a str>,
    pub position: Option<Position>,
    pub status: &'a str,
    /// RFC 3339.
    pub due_at: Option<String>,
    pub note: Option<&'a str>,
    /// Why this notice was sent: `opened`, `escalated` or `resolved`.
    pub event: &'a str,
    /// What has happened to the case so far, oldest first, so that a party
    /// told of an escalation reads the whole story.
    pub history: Vec<NoticeStep>,
}

/// One step of a case's history, as a notice tells it.
#[derive(Debug, Clone, Serialize)]
pub struct NoticeStep {
    /// RFC 3339.
    pub at: String,
    pub action: String,
    pub status: String,
    /// Who did it (a token's name, a device); null for the service.
    pub actor: Option<String>,
    pub note: Option<String>,
}

/// Longest robot text, bytes: WeCom takes at most 2,048 bytes of text.
const ROBOT_TEXT_BYTES: usize = 2000;

/// The body a webhook of `format` receives for `notice`.
pub fn webhook_body(format: WebhookFormat, notice: &Notice<'_>) -> String {
    match format {
        WebhookFormat::Json => serde_json::to_string(notice).expect("a notice serializes"),
        // Both group robots take the same text message.
        WebhookFormat::Wecom | WebhookFormat::Dingtalk => serde_json::json!({
            "msgtype": "text",
            "text": {"content": robot_text(notice)},
        })
        .to_string(),
    }
}

/// Whether a receiver that answered 2xx took the message. WeCom and
/// DingTalk group robots answer HTTP 200 even when they refuse a message
/// (an unknown key, a keyword or signature check failed, a rate limit),
/// with a JSON body whose `errcode` is not 0: that is a failed attempt,
/// to be retried, with `errmsg` as the error. Any other 2xx body counts as
/// delivered.
pub fn accepted(format: WebhookFormat, body: &str) -> Result<(), String> {
    if format == WebhookFormat::Json {
        return Ok(());
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return Ok(());
    };
    match v.get("errcode").and_then(serde_json::Value::as_i64) {
        None | Some(0) => Ok(()),
        Some(code) => {
            let msg = v.get("errmsg").and_then(|m| m.as_str()).unwrap_or("");
            let msg: String = msg.chars().take(200).collect();
            Err(format!(
                "{} robot refused the message: errcode {code} {msg}",
                format.as_str()
            ))
        }
    }
}

fn kind_zh(kind: &str) -> &'static str {
    match kind {
        "footway_parking" => "人行道停车",
        "obstruction" => "占道堆物",
        "disorderly_parking" => "乱停乱放",
        _ => "其他问题",
    }
}

fn event_zh(event: &str) -> &'static str {
    match event {
        "opened" => "新案件",
        "escalated" => "逾期未整改，已移交执法",
        "resolved" => "已办结",
        _ => "案件更新",
    }
}

/// A short text for a chat group, Chinese first, then English.
fn robot_text(n: &Notice<'_>) -> String {
    let mut s = format!(
        "【kerbside】{}：{}（{}）\n案件 case {}，状态 status {}",
        event_zh(n.event),
        kind_zh(n.kind),
        n.kind,
        n.case_id,
        n.status
    );
    if let Some(road) = n.road_id {
        s.push_str(&format!("\n道路 road {road}"));
    }
    if let Some(p) = n.position {
        s.push_str(&format!("\n位置 position {:.6}, {:.6}", p.lon, p.lat));
    }
    if let Some(due) = &n.due_at {
        s.push_str(&format!("\n整改期限 due {due}"));
    }
    if let Some(note) = n.note {
        s.push_str(&format!("\n备注 note {note}"));
    }
    if !n.history.is_empty() {
        // The newest steps matter most: drop the oldest to fit.
        let lines: Vec<String> = n
            .history
            .iter()
            .map(|h| {
                let mut line = format!("\n· {} {}", h.at, h.action);
                if let Some(who) = &h.actor {
                    line.push_str(&format!(" ({who})"));
                }
                if let Some(note) = &h.note {
                    line.push_str(&format!(": {note}"));
                }
                line
            })
            .collect();
        let head = "\n经过 history:";
        let room = ROBOT_TEXT_BYTES.saturating_sub(s.len() + head.len());
        let mut used = 0;
        let kept = lines
            .iter()
            .rev()
            .take_while(|l| {
                used += l.len();
                used <= room
            })
            .count();
        s.push_str(head);
        for l in &lines[lines.len() - kept..] {
            s.push_str(l);
        }
    }
    if s.len() > ROBOT_TEXT_BYTES {
        let mut cut = ROBOT_TEXT_BYTES;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Longest party name, characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest webhook URL, bytes.
pub const MAX_URL_BYTES: usize = 2000;
/// Longest deadline a party may have, minutes (30 days).
pub const MAX_DEADLINE_MINUTES: u32 = 43_200;

/// A party as `POST /v1/parties` and `kerbside party add` take it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartyInput {
    pub party_id: String,
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub area: Option<serde_json::Value>,
    pub webhook_url: String,
    #[serde(default)]
    pub webhook_format: Option<String>,
    #[serde(default)]
    pub deadline_minutes: Option<u32>,
    /// A DingTalk robot's signing secret (`SEC...`), for a group whose
    /// robot has 加签 (signing) turned on; write-only.
    #[serde(default)]
    pub robot_secret: Option<String>,
}

/// A checked party.
#[derive(Debug, Clone)]
pub struct PartySpec {
    pub party_id: String,
    pub name: String,
    pub kind: PartyKind,
    /// The polygon, WGS 84, and its GeoJSON text as stored.
    pub area: Option<(Polygon<f64>, String)>,
    pub webhook_url: String,
    pub webhook_format: WebhookFormat,
    pub deadline_minutes: u32,
    /// A DingTalk robot's signing secret.
    pub robot_secret: Option<String>,
}

/// Checks a party; `Err` says what is wrong, for a 422 or the command line.
pub fn check_party(p: PartyInput, default_deadline: u32) -> Result<PartySpec, String> {
    super::ids::check_identifier(&p.party_id)
        .map_err(|e| format!("party_id {:?} {e}", p.party_id))?;
    let name = p.name.trim();
    if name.is_empty() {
        return Err("name is empty".into());
    }
    check_text("name", name, MAX_NAME_CHARS)?;
    let kind = PartyKind::parse(&p.kind)
        .ok_or_else(|| format!("kind {:?} is not one of {}", p.kind, PartyKind::names()))?;
    let webhook_format = match p.webhook_format.as_deref() {
        None => WebhookFormat::Json,
        Some(f) => WebhookFormat::parse(f).ok_or_else(|| {
            format!(
                "webhook_format {f:?} is not one of {}",
                WebhookFormat::names()
            )
        })?,
    };
    check_webhook_url(&p.webhook_url)?;
    let robot_secret = match (p.robot_secret, webhook_format) {
        (None, _) => None,
        (Some(s), WebhookFormat::Dingtalk) => {
            let s = s.trim().to_owned();
            if s.is_empty() || s.len() > 200 || !s.chars().all(|c| c.is_ascii_graphic()) {
                return Err(
                    "robot_secret must be the DingTalk robot's signing secret (SEC..., at most 200 printable ASCII characters)"
                        .into(),
                );
            }
            Some(s)
        }
        (Some(_), f) => {
            return Err(format!(
                "robot_secret is for a dingtalk robot that signs; webhook_format is {}",
                f.as_str()
            ));
        }
    };
    let deadline_minutes = p.deadline_minutes.unwrap_or(default_deadline);
    if !(1..=MAX_DEADLINE_MINUTES).contains(&deadline_minutes) {
        return Err(format!(
            "deadline_minutes {deadline_minutes} is out of range (1 to {MAX_DEADLINE_MINUTES})"
        ));
    }
    let area = match (kind, p.area) {
        (_, None | Some(serde_json::Value::Null)) if kind == PartyKind::Enforcement => None,
        (_, None | Some(serde_json::Value::Null)) => {
            return Err(format!(
                "area is required: the GeoJSON Polygon of the frontage a {} answers for",
                kind.as_str()
            ));
        }
        (PartyKind::Enforcement, Some(_)) => {
            return Err(
                "an enforcement party answers for every escalated case, not for an area: leave area out"
                    .into(),
            );
        }
        (_, Some(v)) => Some(check_area(v)?),
    };
    Ok(PartySpec {
        party_id: p.party_id,
        name: name.to_owned(),
        kind,
        area,
        webhook_url: p.webhook_url,
        webhook_format,
        deadline_minutes,
        robot_secret,
    })
}

/// `url` as it may be shown: a group robot's URL carries its credential in
/// the query (WeCom's `key`, DingTalk's `access_token`), and any URL may
/// carry one in its user part, so both are starred out, keeping the
/// parameter names.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}{path}"),
                None => base.to_owned(),
            }
        }
        None => base.to_owned(),
    };
    match query {
        None => base,
        Some(q) => {
            let q: Vec<String> = q
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) => format!("{k}=***"),
                    None => kv.to_owned(),
                })
                .collect();
            format!("{base}?{}", q.join("&"))
        }
    }
}

/// `url` with DingTalk's signature appended, for a robot with signing on:
/// `timestamp` (epoch milliseconds, which DingTalk wants within an hour of
/// its own clock) and `sign`, the base64 of the HMAC-SHA256 of
/// `"{timestamp}\n{secret}"` keyed with `secret`, URL-encoded.
pub fn dingtalk_signed_url(url: &str, secret: &str, timestamp_ms: i64) -> String {
    use base64::Engine as _;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    let sign = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let sign: String = sign
        .chars()
        .map(|c| match c {
            '+' => "%2B".to_owned(),
            '/' => "%2F".to_owned(),
            '=' => "%3D".to_owned(),
            c => c.to_string(),
        })
        .collect();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}timestamp={timestamp_ms}&sign={sign}")
}

fn check_webhook_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("webhook_url {url:?} is not an http:// or https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || url.len() > MAX_URL_BYTES || url.chars().any(char::is_whitespace) {
        return Err(format!(
            "webhook_url {url:?} is not a URL with a host (and at most {MAX_URL_BYTES} bytes, no spaces)"
        ));
    }
    Ok(())
}

/// A party's area: a GeoJSON Polygon in WGS 84 whose outer ring is closed,
/// has at least three corners and does not cross itself.
fn check_area(v: serde_json::Value) -> Result<(Polygon<f64>, String), String> {
    let g: geojson::Geometry =
        serde_json::from_value(v).map_err(|e| format!("area is not GeoJSON: {e}"))?;
    let polygon = match &g.value {
        geojson::GeometryValue::Polygon { .. } => Polygon::<f64>::try_from(g.clone())
            .map_err(|e| format!("area is not a polygon: {e}"))?,
        other => {
            return Err(format!("area is a {}, not a Polygon", other.type_name()));
        }
    };
    let ring = &polygon.exterior().0;
    if ring.len() < 4 {
        return Err("area's outer ring needs at least three corners".into());
    }
    if let Some(c) = ring
        .iter()
        .find(|c| !(-180.0..=180.0).contains(&c.x) || !(-90.0..=90.0).contains(&c.y))
    {
        return Err(format!(
            "area has the position ({}, {}), which is not longitude, latitude in WGS 84",
            c.x, c.y
        ));
    }
    if crate::spatial::ring_self_intersection(ring).is_some() {
        return Err("area's outer ring crosses itself".into());
    }
    Ok((polygon, g.to_string()))
}

/// Checks a position given as `{"lon", "lat"}` degrees.
pub fn check_position(lon: f64, lat: f64) -> Result<Position, String> {
    if !lon.is_finite()
        || !lat.is_finite()
        || !(-180.0..=180.0).contains(&lon)
        || !(-90.0..=90.0).contains(&lat)
    {
        return Err(format!(
            "position ({lon}, {lat}) is not a longitude, latitude in degrees"
        ));
    }
    Ok(Position { lon, lat })
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::polygon;

    fn square(lon: f64, lat: f64, half_deg: f64) -> Polygon<f64> {
        polygon![(x: lon - half_deg, y: lat - half_deg), (x: lon + half_deg, y: lat - half_deg),
                 (x: lon + half_deg, y: lat + half_deg), (x: lon - half_deg, y: lat + half_deg)]
    }

    const P: Position = Position {
        lon: 120.78,
        lat: 30.76,
    };

    #[test]
    fn the_containing_area_wins_then_the_nearest_within_30_m() {
        let big = square(P.lon, P.lat, 0.001);
        let small = square(P.lon, P.lat, 0.0001);
        // About 10 m east of P, and about 100 m east.
        let near = square(P.lon + 0.0003, P.lat, 0.0002);
        let far = square(P.lon + 0.0012, P.lat, 0.0001);
        let parties = |v: Vec<(&'static str, &'static Polygon<f64>)>| -> Vec<PartyArea<'static>> {
            v.into_iter()
                .map(|(id, a)| PartyArea {
                    party_id: id,
                    kind: PartyKind::Shop,
                    area: Some(a),
                })
                .collect()
        };
        let (big, small, near, far) = (
            Box::leak(Box::new(big)),
            Box::leak(Box::new(small)),
            Box::leak(Box::new(near)),
            Box::leak(Box::new(far)),
        );
        assert_eq!(
            assign(&parties(vec![("a-big", big), ("b-small", small)]), P),
            Some("b-small")
        );
        assert_eq!(
            assign(&parties(vec![("near", near), ("far", far)]), P),
            Some("near")
        );
        assert_eq!(assign(&parties(vec![("far", far)]), P), None);
        // Enforcement answers for no area, even one drawn around P.
        let enf = [PartyArea {
            party_id: "squad",
            kind: PartyKind::Enforcement,
            area: Some(big),
        }];
        assert_eq!(assign(&enf, P), None);
    }

    #[test]
    fn twenty_metres_apart_is_the_same_case_and_twenty_five_is_not() {
        // One degree of latitude near 30.76 N is about 110.87 km.
        let at = |m: f64| Position {
            lon: P.lon,
            lat: P.lat + m / 110_865.3,
        };
        assert!((distance_m(P, at(20.0)) - 20.0).abs() < 0.01);
        assert!(same_case(P, at(19.9)));
        assert!(!same_case(P, at(25.0)));
    }

    #[test]
    fn the_life_cycle_never_reopens_a_resolved_case() {
        use CaseStatus::*;
        assert_eq!(step(Notified, Step::Overdue), Ok(Overdue));
        assert_eq!(step(Open, Step::Overdue), Ok(Overdue));
        assert_eq!(step(Overdue, Step::Escalate), Ok(Escalated));
        assert_eq!(step(Escalated, Step::Resolve), Ok(Resolved));
        assert_eq!(step(Resolved, Step::Resolve), Err(Resolved));
        assert_eq!(step(Resolved, Step::Overdue), Err(Resolved));
        assert_eq!(step(Escalated, Step::Overdue), Err(Escalated));
    }

    #[test]
    fn backoff_doubles_from_five_seconds_to_an_hour() {
        let s: Vec<i64> = (1..=12).map(|n| backoff(n).num_seconds()).collect();
        assert_eq!(
            s,
            [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
    }

    #[test]
    fn the_signature_is_hmac_sha256_in_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn codes_are_base32_of_their_bits() {
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
        let code = tracking_code();
        assert_eq!(code.len(), 26, "128 bits in base32");
        assert_ne!(code, tracking_code());
    }

    #[test]
    fn text_is_bounded_and_free_of_control_characters() {
        assert!(check_text("text", "材料堆放在人行道上\n请处理", 1000).is_ok());
        assert!(check_text("text", &"字".repeat(1001), 1000).is_err());
        assert!(check_text("text", "bell\u{7}", 1000).is_err());
    }

    #[test]
    fn a_robot_gets_a_text_message() {
        let n = Notice {
            case_id: "case-1",
            kind: "obstruction",
            road_id: Some("qingfeng-road"),
            position: Some(P),
            status: "notified",
            due_at: Some("2026-11-27T04:00:00Z".into()),
            note: Some("site materials"),
            event: "opened",
            history: vec![NoticeStep {
                at: "2026-11-27T02:00:00Z".into(),
                action: "opened".into(),
                status: "open".into(),
                actor: Some("hh-7".into()),
                note: Some("堆料".repeat(600)),
            }],
        };
        let v: serde_json::Value =
            serde_json::from_str(&webhook_body(WebhookFormat::Wecom, &n)).unwrap();
        assert_eq!(v["msgtype"], "text");
        let text = v["text"]["content"].as_str().unwrap();
        assert!(
            text.contains("占道堆物")
                && text.contains("case-1")
                && text.contains("2026-11-27T04:00:00Z")
        );
        assert!(
            text.len() <= 2000,
            "within WeCom's 2,048 bytes: {}",
            text.len()
        );
        let v: serde_json::Value =
            serde_json::from_str(&webhook_body(WebhookFormat::Json, &n)).unwrap();
        assert_eq!(v["case_id"], "case-1");
        assert_eq!(v["position"]["lon"], 120.78);
    }

    #[test]
    fn a_robot_that_answers_200_with_an_error_code_has_not_taken_it() {
        assert_eq!(
            accepted(WebhookFormat::Wecom, r#"{"errcode":0,"errmsg":"ok"}"#),
            Ok(())
        );
        let refused = accepted(
            WebhookFormat::Dingtalk,
            r#"{"errcode":310000,"errmsg":"sign not match"}"#,
        )
        .unwrap_err();
        assert!(
            refused.contains("310000") && refused.contains("sign not match"),
            "{refused}"
        );
        assert!(
            accepted(
                WebhookFormat::Wecom,
                r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#
            )
            .is_err()
        );
        // kerbside's own JSON format: any 2xx is delivered.
        assert_eq!(accepted(WebhookFormat::Json, r#"{"errcode":1}"#), Ok(()));
        assert_eq!(accepted(WebhookFormat::Wecom, "ok"), Ok(()));
    }

    #[test]
    fn a_dingtalk_url_is_signed_as_its_robot_expects() {
        // Computed with DingTalk's own recipe (Python's hmac, base64 and
        // quote_plus) for this secret and timestamp.
        let url = dingtalk_signed_url(
            "https://oapi.dingtalk.com/robot/send?access_token=abc",
            "SEC0123456789abcdef",
            1_764_208_800_000,
        );
        assert_eq!(
            url,
            "https://oapi.dingtalk.com/robot/send?access_token=abc&timestamp=1764208800000\
             &sign=gPot9S7EgLnkgbceoHupOJUUNu0970H5OlqU0Nns4WE%3D"
        );
    }

    #[test]
    fn a_robot_secret_is_for_dingtalk_only() {
        let party = |format: &str, secret: &str| PartyInput {
            party_id: "g".into(),
            name: "group".into(),
            kind: "enforcement".into(),
            area: None,
            webhook_url: "https://oapi.dingtalk.com/robot/send?access_token=abc".into(),
            webhook_format: Some(format.into()),
            deadline_minutes: None,
            robot_secret: Some(secret.into()),
        };
        assert_eq!(
            check_party(party("dingtalk", "SECabc"), 120)
                .unwrap()
                .robot_secret
                .as_deref(),
            Some("SECabc")
        );
        assert!(check_party(party("wecom", "SECabc"), 120).is_err());
        assert!(check_party(party("dingtalk", "has space"), 120).is_err());
    }

    #[test]
    fn a_shown_url_keeps_no_credential() {
        assert_eq!(
            redact_url("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx"),
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***"
        );
        assert_eq!(
            redact_url("https://user:pw@hooks.example.cn:8443/a/b?x=1&y"),
            "https://***@hooks.example.cn:8443/a/b?x=***&y"
        );
        assert_eq!(redact_url("http://10.0.0.5/hook"), "http://10.0.0.5/hook");
    }
}
