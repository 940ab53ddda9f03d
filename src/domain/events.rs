//! Device events (contract section 2): decoding a payload into events, each
//! accepted or rejected on its own, with the sanity rules applied.
//!
//! Decoding is pure: the device, the bytes and `now` go in; a list of
//! outcomes comes out, one per event (or one for a payload that could not be
//! read at all). Nothing here can fail for I/O reasons.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use super::ids::{BayId, DeviceId, EventId, check_identifier};
use crate::spatial::gcj02::gcj02_to_wgs84;

/// Largest payload accepted, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Most events in one array payload.
pub const MAX_BATCH_EVENTS: usize = 500;
/// Longest `note`, in characters.
pub const MAX_NOTE_CHARS: usize = 500;
/// Longest `plate`, in characters.
pub const MAX_PLATE_CHARS: usize = 32;

/// How far in the future (by the service's clock) an event may claim to be.
pub fn max_clock_skew() -> Duration {
    Duration::minutes(5)
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// A sensor: a vehicle is over the bay.
    Occupied,
    /// A sensor: the bay is empty.
    Vacated,
    /// A warden saw a vehicle (plate required).
    Observed,
    /// A warden reports an obstruction or footway parking.
    Report,
    /// A sensor is alive.
    Heartbeat,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Occupied => "occupied",
            EventType::Vacated => "vacated",
            EventType::Observed => "observed",
            EventType::Report => "report",
            EventType::Heartbeat => "heartbeat",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::Occupied,
            Self::Vacated,
            Self::Observed,
            Self::Report,
            Self::Heartbeat,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// What a warden's report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportCategory {
    Obstruction,
    FootwayParking,
    Other,
}

impl ReportCategory {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportCategory::Obstruction => "obstruction",
            ReportCategory::FootwayParking => "footway_parking",
            ReportCategory::Other => "other",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Obstruction, Self::FootwayParking, Self::Other]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// A point, (longitude, latitude) degrees, always WGS 84 once decoded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Position {
    pub lon: f64,
    pub lat: f64,
}

/// A decoded, sane event; not yet resolved to a bay or road.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub device_id: DeviceId,
    pub event_id: EventId,
    pub kind: EventType,
    pub observed_at: DateTime<Utc>,
    pub bay_id: Option<BayId>,
    /// WGS 84, converted from GCJ-02 when the event said so.
    pub position: Option<Position>,
    pub plate: Option<String>,
    pub category: Option<ReportCategory>,
    pub note: Option<String>,
}

/// Why an event was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Not JSON, not UTF-8, too large, or of the wrong shape.
    Malformed,
    /// A `bay_id` that no current layout has.
    UnknownBay,
    /// A position near no bay (and, where it applies, no road).
    NoBayNearby,
    /// `observed_at` more than 5 minutes in the future.
    ClockSkew,
    /// `observed_at` older than the retention window.
    TooOld,
    /// The topic names a device that is not registered, or is revoked.
    UnknownDevice,
}

impl Reason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::UnknownBay => "unknown_bay",
            Reason::NoBayNearby => "no_bay_nearby",
            Reason::ClockSkew => "clock_skew",
            Reason::TooOld => "too_old",
            Reason::UnknownDevice => "unknown_device",
        }
    }

    /// Every reason, for metrics.
    pub const ALL: [Reason; 6] = [
        Reason::Malformed,
        Reason::UnknownBay,
        Reason::NoBayNearby,
        Reason::ClockSkew,
        Reason::TooOld,
        Reason::UnknownDevice,
    ];
}

/// A refused event, as stored and told to its device.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The event's id as sent, when it could be read (at most 200 characters).
    pub event_id: Option<String>,
    pub reason: Reason,
    pub detail: String,
}

impl Rejection {
    /// What makes this the same rejection when its message is delivered
    /// again (a lost acknowledgement makes the broker redeliver): within a
    /// device, `event:REASON:EVENT_ID` when the event id could be read,
    /// else `payload:SHA256:INDEX`, the hex SHA-256 of the payload bytes
    /// and `index`, this outcome's place among its message's outcomes
    /// (several elements of one array may each lack an id).
    ///
    /// One event id rejected for two reasons (say `unknown_bay`, then
    /// `too_old` when resent weeks later) is two rejections; the same
    /// reason again is the same one.
    pub fn once_key(&self, payload: &[u8], index: usize) -> String {
        match &self.event_id {
            Some(id) => format!("event:{}:{id}", self.reason.as_str()),
            None => {
                use sha2::{Digest, Sha256};
                use std::fmt::Write;
                let digest = Sha256::digest(payload);
                let mut key = String::with_capacity(8 + 64 + 1 + 3);
                key.push_str("payload:");
                for b in digest {
                    let _ = write!(key, "{b:02x}");
                }
                let _ = write!(key, ":{index}");
                key
            }
        }
    }

    fn new(event_id: Option<String>, reason: Reason, detail: impl Into<String>) -> Self {
        Rejection {
            event_id,
            reason,
            detail: detail.into(),
        }
    }
}

/// Limits that depend on configuration.
#[derive(Debug, Clone, Copy)]
pub struct Sanity {
    /// Events older than this are rejected `too_old`.
    pub retention: Duration,
}

/// Decodes one MQTT payload from `device` into one outcome per event.
pub fn decode_payload(
    device: &DeviceId,
    payload: &[u8],
    now: DateTime<Utc>,
    sanity: Sanity,
) -> Vec<Result<Event, Rejection>> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return vec![Err(Rejection::new(
            None,
            Reason::Malformed,
            format!(
                "payload is {} bytes; at most {MAX_PAYLOAD_BYTES} are accepted",
                payload.len()
            ),
        ))];
    }
    let Ok(text) = std::str::from_utf8(payload) else {
        return vec![Err(Rejection::new(
            None,
            Reason::Malformed,
            "payload is not UTF-8",
        ))];
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return vec![Err(Rejection::new(
                None,
                Reason::Malformed,
                format!("payload is not JSON: {e}"),
            ))];
        }
    };
    match value {
        Value::Object(o) => vec![decode_event(device, &o, now, sanity)],
        Value::Array(items) if items.len() > MAX_BATCH_EVENTS => vec![Err(Rejection::new(
            None,
            Reason::Malformed,
            format!(
                "array of {} events; at most {MAX_BATCH_EVENTS} are accepted in one message",
                items.len()
            ),
        ))],
        Value::Array(items) if items.is_empty() => {
            vec![Err(Rejection::new(
                None,
                Reason::Malformed,
                "empty array: no events",
            ))]
        }
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Object(o) => decode_event(device, o, now, sanity),
                other => Err(Rejection::new(
                    None,
                    Reason::Malformed,
                    format!(
                        "an array element is {}, not an event object",
                        json_kind(other)
                    ),
                )),
            })
            .collect(),
        other => vec![Err(Rejection::new(
            None,
            Reason::Malformed,
            format!(
                "payload is {}, not an event object or an array of them",
                json_kind(&other)
            ),
        ))],
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The event id as sent, for echoing in a rejection: any string, cut to 200 characters.
fn raw_event_id(o: &Map<String, Value>) -> Option<String> {
    o.get("event_id")
        .and_then(Value::as_str)
        .map(|s| s.chars().take(200).collect())
}

fn decode_event(
    device: &DeviceId,
    o: &Map<String, Value>,
    now: DateTime<Utc>,
    sanity: Sanity,
) -> Result<Event, Rejection> {
    let raw_id = raw_event_id(o);
    let bad = |detail: String| Rejection::new(raw_id.clone(), Reason::Malformed, detail);

    let event_id = match o.get("event_id") {
        Some(Value::String(s)) => EventId::parse(s).map_err(|e| bad(format!("event_id {e}")))?,
        None | Some(Value::Null) => return Err(bad("event_id is required".into())),
        Some(v) => {
            return Err(bad(format!(
                "event_id must be a string, not {}",
                json_kind(v)
            )));
        }
    };
    let kind = match o.get("type") {
        Some(Value::String(s)) => EventType::parse(s).ok_or_else(|| {
            bad(format!(
                "type {s:?} is not one of occupied, vacated, observed, report, heartbeat"
            ))
        })?,
        None | Some(Value::Null) => return Err(bad("type is required".into())),
        Some(v) => return Err(bad(format!("type must be a string, not {}", json_kind(v)))),
    };
    let observed_at = match o.get("observed_at") {
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map_err(|e| {
                bad(format!(
                    "observed_at {s:?} is not RFC 3339 with an offset: {e}"
                ))
            })?
            .with_timezone(&Utc),
        None | Some(Value::Null) => return Err(bad("observed_at is required".into())),
        Some(v) => {
            return Err(bad(format!(
                "observed_at must be a string, not {}",
                json_kind(v)
            )));
        }
    };
    let bay_id = optional_str(o, "bay_id", &bad)?
        .map(|s| BayId::parse(s).map_err(|e| bad(format!("bay_id {s:?} {e}"))))
        .transpose()?;
    let crs = optional_str(o, "crs", &bad)?.unwrap_or("wgs84");
    if crs != "wgs84" && crs != "gcj02" {
        return Err(bad(format!("crs {crs:?} is not wgs84 or gcj02")));
    }
    let position = match o.get("position") {
        None | Some(Value::Null) => None,
        Some(Value::Object(p)) => {
            let coord = |k: &str| p.get(k).and_then(Value::as_f64);
            let (Some(lon), Some(lat)) = (coord("lon"), coord("lat")) else {
                return Err(bad(
                    "position must be {\"lon\": number, \"lat\": number}".into()
                ));
            };
            if !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
                return Err(bad(format!(
                    "position ({lon}, {lat}) is not a longitude and latitude"
                )));
            }
            let (lon, lat) = if crs == "gcj02" {
                gcj02_to_wgs84(lon, lat)
            } else {
                (lon, lat)
            };
            Some(Position { lon, lat })
        }
        Some(v) => {
            return Err(bad(format!(
                "position must be an object, not {}",
                json_kind(v)
            )));
        }
    };
    let plate = optional_str(o, "plate", &bad)?
        .map(str::trim)
        .filter(|p| !p.is_empty());
    if let Some(p) = plate
        && p.chars().count() > MAX_PLATE_CHARS
    {
        return Err(bad(format!(
            "plate is longer than {MAX_PLATE_CHARS} characters"
        )));
    }
    let category = optional_str(o, "category", &bad)?
        .map(|c| {
            ReportCategory::parse(c).ok_or_else(|| {
                bad(format!(
                    "category {c:?} is not obstruction, footway_parking or other"
                ))
            })
        })
        .transpose()?;
    let note = optional_str(o, "note", &bad)?;
    if let Some(n) = note
        && n.chars().count() > MAX_NOTE_CHARS
    {
        return Err(bad(format!(
            "note is longer than {MAX_NOTE_CHARS} characters"
        )));
    }

    match kind {
        EventType::Heartbeat => {}
        _ if bay_id.is_none() && position.is_none() => {
            return Err(bad(format!(
                "a {} event needs bay_id or position",
                kind.as_str()
            )));
        }
        _ => {}
    }
    if kind == EventType::Observed && plate.is_none() {
        return Err(bad("an observed event needs a plate".into()));
    }

    if observed_at > now + max_clock_skew() {
        return Err(Rejection::new(
            raw_id,
            Reason::ClockSkew,
            format!(
                "observed_at {} is more than 5 minutes after the service's clock ({})",
                observed_at.to_rfc3339(),
                now.to_rfc3339()
            ),
        ));
    }
    if observed_at < now - sanity.retention {
        return Err(Rejection::new(
            raw_id,
            Reason::TooOld,
            format!(
                "observed_at {} is older than the {}-day retention window",
                observed_at.to_rfc3339(),
                sanity.retention.num_days()
            ),
        ));
    }

    Ok(Event {
        device_id: device.clone(),
        event_id,
        kind,
        observed_at,
        bay_id,
        position,
        plate: plate.map(str::to_owned),
        category: if kind == EventType::Report {
            Some(category.unwrap_or(ReportCategory::Other))
        } else {
            category
        },
        note: note.map(str::to_owned),
    })
}

fn optional_str<'a>(
    o: &'a Map<String, Value>,
    key: &str,
    bad: &impl Fn(String) -> Rejection,
) -> Result<Option<&'a str>, Rejection> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(bad(format!("{key} must be a string, not {}", json_kind(v)))),
    }
}

/// Whether `s` is a valid device id (the topic's `{device_id}` segment).
pub fn device_from_topic_segment(s: &str) -> Option<DeviceId> {
    check_identifier(s)
        .ok()
        .and_then(|()| DeviceId::parse(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 2, 0, 0).unwrap()
    }

    fn sanity() -> Sanity {
        Sanity {
            retention: Duration::days(30),
        }
    }

    fn decode(v: Value) -> Vec<Result<Event, Rejection>> {
        decode_payload(
            &DeviceId::parse("s-1").unwrap(),
            v.to_string().as_bytes(),
            now(),
            sanity(),
        )
    }

    fn reason(r: &Result<Event, Rejection>) -> Option<Reason> {
        r.as_ref().err().map(|e| e.reason)
    }

    #[test]
    fn decodes_a_sensor_event() {
        let out = decode(
            json!({"event_id": "e1", "type": "occupied", "observed_at": "2026-11-27T09:58:00+08:00", "bay_id": "QF-S-014"}),
        );
        let e = out[0].as_ref().unwrap();
        assert_eq!(e.kind, EventType::Occupied);
        assert_eq!(
            e.observed_at,
            Utc.with_ymd_and_hms(2026, 11, 27, 1, 58, 0).unwrap()
        );
        assert_eq!(e.bay_id.as_ref().unwrap().as_str(), "QF-S-014");
    }

    #[test]
    fn each_element_of_a_batch_stands_alone() {
        let out = decode(json!([
            {"event_id": "a", "type": "heartbeat", "observed_at": "2026-11-27T01:00:00Z"},
            {"event_id": "b", "type": "parked", "observed_at": "2026-11-27T01:00:00Z", "bay_id": "x"},
            7,
            {"event_id": "c", "type": "vacated", "observed_at": "2026-11-27T01:00:00Z", "bay_id": "x"},
        ]));
        assert_eq!(out.len(), 4);
        assert!(out[0].is_ok() && out[3].is_ok());
        assert_eq!(reason(&out[1]), Some(Reason::Malformed));
        assert_eq!(out[1].as_ref().unwrap_err().event_id.as_deref(), Some("b"));
        assert_eq!(reason(&out[2]), Some(Reason::Malformed));
    }

    #[test]
    fn unreadable_payloads_are_one_malformed_rejection_without_an_id() {
        let dev = DeviceId::parse("s-1").unwrap();
        for payload in [
            &b"not json"[..],
            &[0xff, 0xfe, 0x00][..],
            &b"\"a string\""[..],
            &b"[]"[..],
        ] {
            let out = decode_payload(&dev, payload, now(), sanity());
            assert_eq!(out.len(), 1);
            let r = out[0].as_ref().unwrap_err();
            assert_eq!((r.reason, r.event_id.as_deref()), (Reason::Malformed, None));
        }
        let huge = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        assert!(
            decode_payload(&dev, &huge, now(), sanity())[0]
                .as_ref()
                .unwrap_err()
                .detail
                .contains("bytes")
        );
        let many: Vec<Value> = (0..501).map(|i| json!({"event_id": format!("e{i}"), "type": "heartbeat", "observed_at": "2026-11-27T01:00:00Z"})).collect();
        assert_eq!(decode(Value::Array(many)).len(), 1);
    }

    #[test]
    fn wrong_types_and_missing_fields_are_malformed() {
        for v in [
            json!({"type": "occupied", "observed_at": "2026-11-27T01:00:00Z", "bay_id": "b"}),
            json!({"event_id": 5, "type": "occupied", "observed_at": "2026-11-27T01:00:00Z", "bay_id": "b"}),
            json!({"event_id": "e", "type": "occupied", "observed_at": "yesterday", "bay_id": "b"}),
            json!({"event_id": "e", "type": "occupied", "observed_at": "2026-11-27T01:00:00", "bay_id": "b"}),
            json!({"event_id": "e", "type": "occupied", "observed_at": "2026-11-27T01:00:00Z"}),
            json!({"event_id": "e", "type": "observed", "observed_at": "2026-11-27T01:00:00Z", "bay_id": "b"}),
            json!({"event_id": "e", "type": "occupied", "observed_at": "2026-11-27T01:00:00Z", "position": {"lon": "x", "lat": 1}}),
            json!({"event_id": "e", "type": "occupied", "observed_at": "2026-11-27T01:00:00Z", "bay_id": "b c"}),
            json!({"event_id": "e", "type": "report", "observed_at": "2026-11-27T01:00:00Z", "bay_id": "b", "note": "x".repeat(501)}),
            json!({"event_id": "e", "type": "report", "observed_at": "2026-11-27T01:00:00Z", "bay_id": "b", "category": "graffiti"}),
            json!({"event_id": "e", "type": "occupied", "observed_at": "2026-11-27T01:00:00Z", "bay_id": "b", "crs": "bd09"}),
        ] {
            assert_eq!(
                reason(&decode(v.clone())[0]),
                Some(Reason::Malformed),
                "{v}"
            );
        }
    }

    #[test]
    fn clock_skew_and_retention_are_judged_against_now() {
        let at = |t: &str| json!({"event_id": "e", "type": "heartbeat", "observed_at": t});
        assert!(decode(at("2026-11-27T02:05:00Z"))[0].is_ok());
        assert_eq!(
            reason(&decode(at("2026-11-27T02:05:01Z"))[0]),
            Some(Reason::ClockSkew)
        );
        assert!(decode(at("2026-10-28T02:00:00Z"))[0].is_ok());
        assert_eq!(
            reason(&decode(at("2026-10-28T01:59:59Z"))[0]),
            Some(Reason::TooOld)
        );
    }

    #[test]
    fn gcj02_positions_are_converted_to_wgs84() {
        let (glon, glat) = crate::spatial::gcj02::wgs84_to_gcj02(120.78, 30.76);
        let out = decode(
            json!({"event_id": "e", "type": "report", "observed_at": "2026-11-27T01:00:00Z",
                                "position": {"lon": glon, "lat": glat}, "crs": "gcj02"}),
        );
        let e = out[0].as_ref().unwrap();
        let p = e.position.unwrap();
        assert!((p.lon - 120.78).abs() < 1e-8 && (p.lat - 30.76).abs() < 1e-8);
        assert_eq!(e.category, Some(ReportCategory::Other));
    }
}
