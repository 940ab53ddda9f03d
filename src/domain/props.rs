//! Properties of what arrives from outside: device payloads, identifiers,
//! planners' layouts and enforcement instants. Whatever comes in, the
//! answer is a value or a refusal with a reason, never a panic.
//!
//! They run with the unit tests (`cargo test --lib props`), thousands of
//! generated cases each. A case that ever fails is written to
//! `proptest-regressions/` (beside `src/`, mirroring this file's path) and
//! replayed first on every later run, so keep those files in git.

use chrono::{DateTime, Duration, FixedOffset, SecondsFormat, TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Map, Value, json};

use super::enforcement::{enforced_between, judge, limit_reached_at};
use super::events::{
    Event, EventType, MAX_BATCH_EVENTS, MAX_PAYLOAD_BYTES, Position, Reason, Rejection,
    ReportCategory, Sanity, decode_payload, device_from_topic_segment,
};
use super::ids::{BarrierId, BayId, DeviceId, EventId, IdError, RoadId};
use super::layout::{
    EnforcedHours, LayoutProblem, ProblemCode, parse_layouts, parse_layouts_lenient,
    parse_road_layout_lenient,
};
use super::validate::{diff, validate};

/// `cases` generated cases, failures kept in `proptest-regressions/`.
pub(crate) fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// JSON of any shape, leaning towards the names and values kerbside reads.

/// Field names the service reads, in events, positions and layouts.
const FIELDS: &[&str] = &[
    "event_id",
    "type",
    "observed_at",
    "bay_id",
    "position",
    "crs",
    "plate",
    "category",
    "note",
    "lon",
    "lat",
    "features",
    "geometry",
    "properties",
    "coordinates",
    "id",
    "feature_type",
    "road_id",
    "barrier_id",
    "kind",
    "name",
    "max_stay_minutes",
    "enforced_hours",
];

/// Values that are right for some field, so decoding gets past the first check.
const WORDS: &[&str] = &[
    "occupied",
    "vacated",
    "observed",
    "report",
    "heartbeat",
    "wgs84",
    "gcj02",
    "obstruction",
    "footway_parking",
    "other",
    "QF-S-014",
    "e1",
    "2026-11-27T01:00:00Z",
    "2026-11-27T09:58:00+08:00",
    "2026-11-27T02:05:01Z",
    "1970-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999999-23:59",
    "0000-01-01T00:00:00+23:59",
    "FeatureCollection",
    "Feature",
    "Polygon",
    "LineString",
    "Point",
    "road",
    "bay",
    "barrier",
    "standard",
    "planter",
    "08:00-20:00",
    "20:00-24:00",
    "",
    " ",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(FIELDS).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

pub(crate) fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(WORDS).prop_map(str::to_owned),
        1 => "[A-Za-z0-9._-]{0,70}",
        1 => any::<String>(),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-200.0..200.0f64).prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(&[0.0, -0.0, 1e308, -1e308, 5e-324, 180.0, 90.0, -180.0][..])
            .prop_map(Value::from),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        2 => number(),
        4 => text().prop_map(Value::String),
    ]
}

/// Any JSON value, a few levels deep.
pub(crate) fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..10)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An optional field: absent, `good`, or now and then anything else.
fn optional(good: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        4 => Just(None),
        8 => good.prop_map(Some),
        1 => json_value().prop_map(Some),
    ]
}

// ---------------------------------------------------------------------------
// Device events.

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 2, 0, 0).unwrap()
}

fn sanity() -> Sanity {
    Sanity {
        retention: Duration::days(30),
    }
}

fn device() -> DeviceId {
    DeviceId::parse("s-1").unwrap()
}

/// An RFC 3339 text for `at`, written in the offset `offset_min` minutes east.
fn rfc3339(at: DateTime<Utc>, offset_min: i32) -> String {
    let tz = FixedOffset::east_opt(offset_min * 60).unwrap();
    at.with_timezone(&tz)
        .to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

fn offset_minutes() -> impl Strategy<Value = i32> {
    prop_oneof![Just(0), Just(480), -1439..=1439i32]
}

/// An instant within about 40 days either side of [`now`], to the nanosecond.
fn instant_near_now() -> impl Strategy<Value = DateTime<Utc>> {
    (-40 * 86_400_000_000_000i64..=86_400_000_000_000i64)
        .prop_map(|ns| now() + Duration::nanoseconds(ns))
}

/// An object that looks like an event: mostly the real fields with values
/// of the right kind, sometimes anything, sometimes missing.
fn event_like() -> impl Strategy<Value = Value> {
    let time = (instant_near_now(), offset_minutes()).prop_map(|(t, o)| Value::from(rfc3339(t, o)));
    let position =
        (-190.0..190.0f64, -95.0..95.0f64).prop_map(|(lon, lat)| json!({"lon": lon, "lat": lat}));
    let id = || prop_oneof![8 => "[A-Za-z0-9._-]{1,64}", 1 => text()].prop_map(Value::from);
    (
        mostly(id()),
        mostly(prop_oneof![8 => event_type().prop_map(|t| t.as_str()), 1 => prop::sample::select(WORDS)].prop_map(Value::from)),
        mostly(prop_oneof![8 => time, 1 => text().prop_map(Value::from)]),
        optional(id()),
        optional(position),
        optional(prop::sample::select(&["wgs84", "gcj02", "bd09"][..]).prop_map(Value::from)),
        optional(prop_oneof![3 => "[A-Z0-9 ]{0,34}", 1 => any::<String>()].prop_map(Value::from)),
        optional(prop::sample::select(&["obstruction", "footway_parking", "other", "graffiti"][..]).prop_map(Value::from)),
        optional(".{0,520}".prop_map(Value::from)),
    )
        .prop_map(|(id, ty, at, bay, pos, crs, plate, cat, note)| {
            let mut o = Map::new();
            for (k, v) in [
                ("event_id", id),
                ("type", ty),
                ("observed_at", at),
                ("bay_id", bay),
                ("position", pos),
                ("crs", crs),
                ("plate", plate),
                ("category", cat),
                ("note", note),
            ] {
                if let Some(v) = v {
                    o.insert(k.to_owned(), v);
                }
            }
            Value::Object(o)
        })
}

/// The fields of a well-formed, sane event.
#[derive(Debug, Clone)]
struct GoodEvent {
    event_id: String,
    kind: EventType,
    observed_at: DateTime<Utc>,
    offset_min: i32,
    bay_id: Option<String>,
    /// Degrees times 10^7: what a device's GNSS gives, exact in JSON.
    position: Option<(i32, i32)>,
    plate: Option<String>,
    category: Option<ReportCategory>,
    note: Option<String>,
}

impl GoodEvent {
    fn json(&self) -> Value {
        let mut o = Map::new();
        o.insert("event_id".into(), self.event_id.clone().into());
        o.insert("type".into(), self.kind.as_str().into());
        o.insert(
            "observed_at".into(),
            rfc3339(self.observed_at, self.offset_min).into(),
        );
        if let Some(b) = &self.bay_id {
            o.insert("bay_id".into(), b.clone().into());
        }
        if let Some((lon, lat)) = self.position {
            o.insert(
                "position".into(),
                json!({"lon": f64::from(lon) / 1e7, "lat": f64::from(lat) / 1e7}),
            );
        }
        if let Some(p) = &self.plate {
            o.insert("plate".into(), p.clone().into());
        }
        if let Some(c) = self.category {
            o.insert("category".into(), c.as_str().into());
        }
        if let Some(n) = &self.note {
            o.insert("note".into(), n.clone().into());
        }
        Value::Object(o)
    }

    /// The event kerbside should make of it.
    fn expected(&self) -> Event {
        Event {
            device_id: device(),
            event_id: EventId::parse(&self.event_id).unwrap(),
            kind: self.kind,
            observed_at: self.observed_at,
            bay_id: self.bay_id.as_deref().map(|b| BayId::parse(b).unwrap()),
            position: self.position.map(|(lon, lat)| Position {
                lon: f64::from(lon) / 1e7,
                lat: f64::from(lat) / 1e7,
            }),
            plate: self.plate.clone(),
            category: match (self.kind, self.category) {
                (EventType::Report, None) => Some(ReportCategory::Other),
                (_, c) => c,
            },
            note: self.note.clone(),
        }
    }
}

fn event_type() -> impl Strategy<Value = EventType> {
    prop::sample::select(
        &[
            EventType::Occupied,
            EventType::Vacated,
            EventType::Observed,
            EventType::Report,
            EventType::Heartbeat,
        ][..],
    )
}

/// A well-formed event dated within the sanity window around [`now`].
fn good_event() -> impl Strategy<Value = GoodEvent> {
    let window = sanity().retention.num_nanoseconds().unwrap();
    let skew = Duration::minutes(5).num_nanoseconds().unwrap();
    (
        "[A-Za-z0-9._-]{1,64}",
        event_type(),
        (-window..=skew).prop_map(|ns| now() + Duration::nanoseconds(ns)),
        offset_minutes(),
        proptest::option::of("[A-Za-z0-9._-]{1,64}"),
        proptest::option::of((
            -1_800_000_000..=1_800_000_000i32,
            -900_000_000..=900_000_000i32,
        )),
        proptest::option::of("[A-Z0-9浙京沪]([A-Z0-9 ·浙京沪-]{0,30}[A-Z0-9浙京沪])?"),
        proptest::option::of(prop::sample::select(
            &[
                ReportCategory::Obstruction,
                ReportCategory::FootwayParking,
                ReportCategory::Other,
            ][..],
        )),
        proptest::option::of(".{0,500}"),
    )
        .prop_map(
            |(event_id, kind, observed_at, offset_min, bay_id, position, plate, category, note)| {
                let mut e = GoodEvent {
                    event_id,
                    kind,
                    observed_at,
                    offset_min,
                    bay_id,
                    position,
                    plate,
                    category,
                    note,
                };
                if e.kind != EventType::Heartbeat && e.bay_id.is_none() && e.position.is_none() {
                    e.bay_id = Some("QF-S-014".into());
                }
                if e.kind == EventType::Observed && e.plate.is_none() {
                    e.plate = Some("浙F12345".into());
                }
                e
            },
        )
}

fn decode_value(v: &Value) -> Vec<Result<Event, Rejection>> {
    decode_payload(&device(), v.to_string().as_bytes(), now(), sanity())
}

/// What every outcome must be: an event that obeys the contract, or a
/// rejection with a reason decoding can give and something to say.
fn check_outcome(outcome: &Result<Event, Rejection>) -> Result<(), TestCaseError> {
    match outcome {
        Ok(e) => {
            prop_assert!(e.observed_at <= now() + Duration::minutes(5));
            prop_assert!(e.observed_at >= now() - sanity().retention);
            if e.kind != EventType::Heartbeat {
                prop_assert!(e.bay_id.is_some() || e.position.is_some());
            }
            if e.kind == EventType::Observed {
                prop_assert!(e.plate.is_some());
            }
            if let Some(p) = e.position {
                prop_assert!((-180.0..=180.0).contains(&p.lon), "{p:?}");
                prop_assert!((-90.0..=90.0).contains(&p.lat), "{p:?}");
            }
        }
        Err(r) => {
            prop_assert!(
                matches!(
                    r.reason,
                    Reason::Malformed | Reason::ClockSkew | Reason::TooOld
                ),
                "decoding alone cannot know {:?}",
                r.reason
            );
            prop_assert!(!r.detail.is_empty());
            if let Some(id) = &r.event_id {
                prop_assert!(
                    id.chars().count() <= 200,
                    "{} characters",
                    id.chars().count()
                );
            }
        }
    }
    Ok(())
}

/// Applies byte edits (replace, insert, cut) to `bytes`: valid input made
/// slightly wrong, the way a flaky link or a careless hand would.
pub(crate) fn mangle(mut bytes: Vec<u8>, edits: Vec<(prop::sample::Index, u8, u8)>) -> Vec<u8> {
    for (at, byte, op) in edits {
        if bytes.is_empty() {
            break;
        }
        let i = at.index(bytes.len());
        match op {
            0 => bytes[i] = byte,
            1 => bytes.insert(i, byte),
            _ => bytes.truncate(i),
        }
    }
    bytes
}

/// A valid event's JSON text with a few bytes changed, cut or inserted.
fn mangled_payload() -> impl Strategy<Value = Vec<u8>> {
    (
        good_event(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..6),
    )
        .prop_map(|(e, edits)| mangle(e.json().to_string().into_bytes(), edits))
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn any_bytes_are_events_or_rejections_never_a_panic(
        payload in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            mangled_payload(),
        ]
    ) {
        let out = decode_payload(&device(), &payload, now(), sanity());
        prop_assert!(!out.is_empty());
        for o in &out {
            check_outcome(o)?;
        }
    }

    #[test]
    fn any_json_is_events_or_rejections_never_a_panic(
        v in prop_oneof![json_value(), event_like(), prop::collection::vec(event_like(), 0..4).prop_map(Value::Array)]
    ) {
        let out = decode_value(&v);
        let expected = match &v {
            Value::Array(items) if !items.is_empty() => items.len(),
            _ => 1,
        };
        prop_assert_eq!(out.len(), expected);
        for o in &out {
            check_outcome(o)?;
        }
    }

    #[test]
    fn a_rejection_echoes_at_most_200_characters_of_the_event_id(
        id in prop_oneof![".{0,300}", "[a-z]{190,260}", any::<String>()],
        event in event_like(),
    ) {
        let mut event = event;
        event["event_id"] = Value::from(id.clone());
        for o in decode_value(&event) {
            check_outcome(&o)?;
            match o {
                Ok(e) => prop_assert_eq!(e.event_id.as_str(), id.as_str()),
                Err(r) => {
                    let echoed = r.event_id.expect("a string event_id is echoed");
                    prop_assert!(id.starts_with(&echoed));
                    prop_assert_eq!(echoed.chars().count(), id.chars().count().min(200));
                }
            }
        }
    }

    #[test]
    fn a_well_formed_event_is_accepted_with_the_fields_it_was_sent(e in good_event()) {
        let out = decode_value(&e.json());
        prop_assert_eq!(out.len(), 1);
        prop_assert_eq!(out[0].as_ref(), Ok(&e.expected()));
    }

    #[test]
    fn an_event_more_than_5_minutes_ahead_is_clock_skew(
        e in good_event(),
        ahead_ns in prop_oneof![1..1_000_000i64, 1..=100 * 365 * 86_400_000_000_000i64],
    ) {
        let mut e = e;
        e.observed_at = now() + Duration::minutes(5) + Duration::nanoseconds(ahead_ns);
        let out = decode_value(&e.json());
        prop_assert_eq!(out[0].as_ref().err().map(|r| r.reason), Some(Reason::ClockSkew));
        prop_assert_eq!(out[0].as_ref().unwrap_err().event_id.as_deref(), Some(e.event_id.as_str()));
    }

    #[test]
    fn an_event_older_than_retention_is_too_old(
        e in good_event(),
        older_ns in prop_oneof![1..1_000_000i64, 1..=100 * 365 * 86_400_000_000_000i64],
    ) {
        let mut e = e;
        e.observed_at = now() - sanity().retention - Duration::nanoseconds(older_ns);
        let out = decode_value(&e.json());
        prop_assert_eq!(out[0].as_ref().err().map(|r| r.reason), Some(Reason::TooOld));
    }

    #[test]
    fn an_oversized_payload_is_one_malformed_rejection(
        pattern in prop::collection::vec(any::<u8>(), 1..64),
        extra in 1..4096usize,
    ) {
        let payload: Vec<u8> = pattern.iter().copied().cycle().take(MAX_PAYLOAD_BYTES + extra).collect();
        let out = decode_payload(&device(), &payload, now(), sanity());
        prop_assert_eq!(out.len(), 1);
        let r = out[0].as_ref().unwrap_err();
        prop_assert_eq!((r.reason, r.event_id.as_deref()), (Reason::Malformed, None));
    }
}

/// A cheap array element: a good heartbeat, a good sensor event, or junk.
fn batch_element() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0..1_000_000u32).prop_map(|i| json!({"event_id": format!("e{i}"), "type": "heartbeat", "observed_at": "2026-11-27T01:00:00Z"})),
        (0..1_000_000u32).prop_map(|i| json!({"event_id": format!("e{i}"), "type": "occupied", "observed_at": "2026-11-27T09:00:00+08:00", "bay_id": "QF-S-014"})),
        leaf(),
        Just(json!({"type": "vacated"})),
    ]
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn an_array_of_up_to_500_gives_one_outcome_per_element(
        items in prop::collection::vec(batch_element(), 1..=MAX_BATCH_EVENTS)
    ) {
        let out = decode_value(&Value::Array(items.clone()));
        prop_assert_eq!(out.len(), items.len());
        for (item, o) in items.iter().zip(&out) {
            check_outcome(o)?;
            if !item.is_object() {
                let r = o.as_ref().unwrap_err();
                prop_assert_eq!((r.reason, r.event_id.as_deref()), (Reason::Malformed, None));
            }
        }
    }

    #[test]
    fn an_array_of_more_than_500_is_one_malformed_rejection(
        n in MAX_BATCH_EVENTS + 1..=MAX_BATCH_EVENTS + 300,
        item in batch_element(),
    ) {
        let out = decode_value(&Value::Array(vec![item; n]));
        prop_assert_eq!(out.len(), 1);
        let r = out[0].as_ref().unwrap_err();
        prop_assert_eq!((r.reason, r.event_id.as_deref()), (Reason::Malformed, None));
    }
}

// ---------------------------------------------------------------------------
// Identifiers.

/// The contract's rule, written out without the implementation's helpers:
/// 1 to 64 characters, each of `A-Z a-z 0-9 - _ .`.
fn is_identifier(s: &str) -> bool {
    let mut n = 0;
    for c in s.chars() {
        n += 1;
        if !matches!(c, 'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '_' | '.') {
            return false;
        }
    }
    (1..=64).contains(&n)
}

fn id_candidate() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9._-]{0,70}",
        1 => "[A-Za-z0-9._-]{60,66}",
        1 => ("[A-Za-z0-9._-]{0,40}", any::<char>(), "[A-Za-z0-9._-]{0,40}")
            .prop_map(|(a, c, b)| format!("{a}{c}{b}")),
        1 => any::<String>(),
        1 => "\\PC{0,80}",
    ]
}

proptest! {
    #![proptest_config(config(5000))]

    #[test]
    fn an_identifier_parses_exactly_when_the_contract_allows_it(s in id_candidate()) {
        let ok = is_identifier(&s);
        prop_assert_eq!(RoadId::parse(&s).is_ok(), ok);
        prop_assert_eq!(BayId::parse(&s).is_ok(), ok);
        prop_assert_eq!(BarrierId::parse(&s).is_ok(), ok);
        prop_assert_eq!(EventId::parse(&s).is_ok(), ok);
        prop_assert_eq!(device_from_topic_segment(&s).is_some(), ok);
        prop_assert_eq!(serde_json::from_value::<DeviceId>(Value::from(s.clone())).is_ok(), ok);
        match DeviceId::parse(&s) {
            Ok(id) => prop_assert_eq!(id.as_str(), s.as_str()),
            Err(IdError::Empty) => prop_assert!(s.is_empty()),
            Err(IdError::TooLong(n)) => prop_assert!(n > 64 && s.is_ascii()),
            Err(IdError::BadChar(c)) => prop_assert!(s.contains(c) && !is_identifier(&c.to_string())),
        }
    }
}

// ---------------------------------------------------------------------------
// Layouts.

/// The codes the contract lists for layout problems.
const PROBLEM_CODES: &[&str] = &[
    "malformed",
    "invalid_id",
    "duplicate_id",
    "missing_property",
    "invalid_property",
    "wrong_road",
    "missing_road",
    "invalid_geometry",
    "bay_size",
    "bay_overlap",
    "barrier_conflict",
    "conflicting_id",
    "unsupported_crs",
    "bay_on_other_road",
];

/// Every problem names a code from the contract's list and says something.
pub(crate) fn check_problems(problems: &[LayoutProblem]) -> Result<(), TestCaseError> {
    for p in problems {
        let code = serde_json::to_value(p.code).unwrap();
        prop_assert!(
            PROBLEM_CODES.contains(&code.as_str().unwrap_or_default()),
            "{code}"
        );
        prop_assert!(!p.message.is_empty());
    }
    Ok(())
}

/// Everything a planner's upload goes through after JSON: the GeoJSON
/// reader, both parsers and, on whatever parsed, validation.
pub(crate) fn parse_everything(v: Value) -> Result<(), TestCaseError> {
    let Ok(fc) = serde_json::from_value::<geojson::FeatureCollection>(v) else {
        return Ok(());
    };
    let (layouts, problems) = parse_layouts_lenient(&fc);
    check_problems(&problems)?;
    prop_assert_eq!(parse_layouts(&fc).is_err(), !problems.is_empty());
    for l in &layouts {
        match validate(l) {
            Ok(_) => {}
            Err(problems) => {
                prop_assert!(!problems.is_empty());
                check_problems(&problems)?;
                for p in &problems {
                    prop_assert!(matches!(
                        p.code,
                        ProblemCode::BaySize
                            | ProblemCode::BayOverlap
                            | ProblemCode::BarrierConflict
                    ));
                    let id = p.feature_id.as_deref().unwrap_or_default();
                    prop_assert!(l.bays.iter().any(|b| b.bay_id.as_str() == id), "{id}");
                }
            }
        }
        // Export never panics either, and reads back.
        let again = parse_layouts(&l.to_feature_collection());
        prop_assert!(again.is_ok(), "{:?}", again.err());
    }
    let (layout, problems) = parse_road_layout_lenient(&fc, &RoadId::parse("r1").unwrap());
    check_problems(&problems)?;
    if let Some(l) = layout
        && let Err(problems) = validate(&l)
    {
        check_problems(&problems)?;
    }
    Ok(())
}

/// A coordinate: near the test road most of the time (on a coarse grid, so
/// that points coincide and edges line up), anywhere or out of range else.
fn coordinate() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => (-8..=8i32, -8..=8i32).prop_map(|(i, j)| json!([120.78 + f64::from(i) * 2e-5, 30.76 + f64::from(j) * 2e-5])),
        1 => (-180.0..=180.0f64, -90.0..=90.0f64).prop_map(|(x, y)| json!([x, y])),
        1 => prop::sample::select(&[180.0, -180.0, 90.0, -90.0, 0.0, 1e308, -1e308, 181.0, 1e-300][..])
            .prop_flat_map(|a| (Just(a), prop::sample::select(&[90.0, -90.0, 0.0, 1e308, 91.0][..])))
            .prop_map(|(x, y)| json!([x, y])),
        1 => prop::collection::vec(number(), 0..5).prop_map(Value::Array),
    ]
}

fn ring() -> impl Strategy<Value = Value> {
    prop_oneof![
        // Closed rings of 3 to 7 corners: squares, bow ties, slivers, points.
        prop::collection::vec(coordinate(), 3..8).prop_map(|mut r| {
            r.push(r[0].clone());
            Value::Array(r)
        }),
        prop::collection::vec(coordinate(), 0..6).prop_map(Value::Array),
    ]
}

fn geometry() -> impl Strategy<Value = Value> {
    prop_oneof![
        5 => prop::collection::vec(ring(), 0..3).prop_map(|r| json!({"type": "Polygon", "coordinates": r})),
        3 => prop::collection::vec(coordinate(), 0..5).prop_map(|c| json!({"type": "LineString", "coordinates": c})),
        1 => coordinate().prop_map(|c| json!({"type": "Point", "coordinates": c})),
        1 => prop::collection::vec(prop::collection::vec(ring(), 1..2), 0..3)
            .prop_map(|p| json!({"type": "MultiPolygon", "coordinates": p})),
        1 => Just(json!({"type": "GeometryCollection", "geometries": []})),
        1 => Just(Value::Null),
        1 => json_value(),
    ]
}

fn feature_id() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        8 => prop::sample::select(&["r1", "r2", "b1", "b2", "b3", "b4", "p1", "p2"][..]).prop_map(|s| Some(Value::from(s))),
        1 => text().prop_map(|s| Some(Value::from(s))),
        1 => (0..10u32).prop_map(|n| Some(Value::from(n))),
        1 => Just(None),
    ]
}

/// `good` nearly always; anything else or nothing now and then.
fn mostly(good: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        14 => good.prop_map(Some),
        1 => json_value().prop_map(Some),
        1 => Just(None),
    ]
}

/// A centre line near the test road.
fn centre_line() -> impl Strategy<Value = Value> {
    prop::collection::vec(coordinate(), 2..5)
        .prop_map(|c| json!({"type": "LineString", "coordinates": c}))
}

/// A bay-like outline near the test road: a rectangle of a few metres at
/// any angle (overlapping its neighbours as often as not), or a closed
/// ring of grid points (slivers, spikes, bow ties, repeated corners).
fn outline() -> impl Strategy<Value = Value> {
    let rotated = (
        -60.0..60.0f64,
        -10.0..25.0f64,
        0.3..9.0f64,
        0.3..16.0f64,
        0.0..std::f64::consts::PI,
    )
        .prop_map(|(x, y, w, l, a)| {
            let f = crate::spatial::LocalFrame::at(120.78, 30.76);
            let (s, c) = a.sin_cos();
            let corner = |u: f64, v: f64| {
                let p = f.to_degrees(geo::Coord {
                    x: x + u * c - v * s,
                    y: y + u * s + v * c,
                });
                json!([p.x, p.y])
            };
            let ring = [
                corner(0.0, 0.0),
                corner(l, 0.0),
                corner(l, w),
                corner(0.0, w),
                corner(0.0, 0.0),
            ];
            json!({"type": "Polygon", "coordinates": [ring]})
        });
    let grid = prop::collection::vec((-4..=4i32, -4..=4i32), 3..7).prop_map(|pts| {
        let mut ring: Vec<Value> = pts
            .iter()
            .map(|&(i, j)| json!([120.78 + f64::from(i) * 2e-5, 30.76 + f64::from(j) * 2e-5]))
            .collect();
        ring.push(ring[0].clone());
        json!({"type": "Polygon", "coordinates": [ring]})
    });
    prop_oneof![3 => rotated, 1 => grid]
}

/// A feature shaped like the contract's, each part now and then wrong.
fn feature_like() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just("road"),
        5 => Just("bay"),
        2 => Just("barrier"),
        1 => prop::sample::select(WORDS),
    ]
    .prop_flat_map(|ft| {
        let (ids, kinds): (&'static [&'static str], &'static [&'static str]) = match ft {
            "road" => (&["r1", "r2"], &["standard"]),
            "barrier" => (&["p1", "p2", "p3"], &["planter", "bollard", "fence", "wall"]),
            _ => (
                &["b1", "b2", "b3", "b4", "b5", "b6"],
                &["standard", "accessible", "loading", "ev", "motorcycle", "lorry"],
            ),
        };
        let good_geometry = if ft == "road" { centre_line().boxed() } else { outline().boxed() };
        (
            Just(ft),
            prop_oneof![12 => prop::sample::select(ids).prop_map(|s| Some(Value::from(s))), 1 => feature_id()],
            mostly(prop_oneof![9 => Just("r1"), 1 => Just("r2"), 1 => Just("r 3")].prop_map(Value::from)),
            mostly(prop::sample::select(kinds).prop_map(Value::from)),
            optional(prop_oneof![
                8 => (1..=10_080i64).prop_map(Value::from),
                1 => prop::sample::select(vec![json!(0), json!(10_081), json!(-5), json!(90.5), json!(1e300)]),
            ]),
            optional(prop_oneof![
                6 => prop::sample::select(&["08:00-20:00", "20:00-02:00", "00:00-24:00", "20:00-00:00", "07:30-09:15"][..]),
                1 => prop::sample::select(&["24:00-08:00", "8-20", "08:00-08:00", "08:00-20:00-22:00"][..]),
            ].prop_map(Value::from)),
            mostly(text().prop_map(Value::from)),
            prop_oneof![8 => good_geometry, 1 => geometry()],
            prop::bool::weighted(0.9),
        )
    })
    .prop_map(|(ft, id, road, kind, max, hours, name, geometry, same_id)| {
        let mut p = Map::new();
        p.insert("feature_type".into(), ft.into());
        let own = id.clone().unwrap_or(Value::Null);
        for (k, v) in [
            ("road_id", road),
            ("kind", kind),
            ("max_stay_minutes", max),
            ("enforced_hours", hours),
            ("name", name),
        ] {
            if let Some(v) = v {
                p.insert(k.to_owned(), v);
            }
        }
        // Bays and barriers repeat their id, usually rightly; a road's id is its road_id.
        let key = match ft {
            "road" => "road_id",
            "barrier" => "barrier_id",
            _ => "bay_id",
        };
        if ft != "road" || same_id {
            p.insert(key.to_owned(), if same_id { own } else { Value::from("x9") });
        }
        let mut f = json!({"type": "Feature", "properties": p, "geometry": geometry});
        if let Some(id) = id {
            f["id"] = id;
        }
        f
    })
}

pub(crate) fn feature_collection_like() -> impl Strategy<Value = Value> {
    (prop::bool::weighted(0.8), prop::collection::vec(feature_like(), 0..10)).prop_map(
        |(with_road, mut features)| {
            if with_road {
                features.insert(0, json!({"type": "Feature", "id": "r1",
                    "geometry": {"type": "LineString", "coordinates": [[120.7795, 30.76], [120.7805, 30.76]]},
                    "properties": {"feature_type": "road", "road_id": "r1", "name": "Test Road"}}));
            }
            json!({"type": "FeatureCollection", "features": features})
        },
    )
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn any_json_layout_is_parsed_or_refused_never_a_panic(v in json_value()) {
        parse_everything(v)?;
    }

    #[test]
    fn a_geojson_shaped_layout_is_parsed_or_refused_with_contract_codes(v in feature_collection_like()) {
        parse_everything(v)?;
    }
}

/// A valid layout: road `r1` along the parallel 30.76 N, with bays and
/// barriers drawn as rectangles north of it, and the extras a planner's
/// tool may add (unknown properties, explicit nulls, bboxes, heights).
fn valid_layout() -> impl Strategy<Value = Value> {
    // A null extra is absent (see `layout`), so extras are not null.
    let extra = || {
        proptest::option::of(prop::collection::btree_map(
            "x_[a-z]{1,6}",
            json_value().prop_filter("a null property is absent", |v| !v.is_null()),
            1..3,
        ))
    };
    let rect = (0..400u32, 1..50u32, 1..50u32, any::<bool>()).prop_map(|(x, w, l, height)| {
        // Corners in 1e-6 degree steps (about 0.1 m) east of 120.78.
        let (x0, y0) = (120.78 + f64::from(x) * 1e-5, 30.7601);
        let (x1, y1) = (x0 + f64::from(l) * 1e-6, y0 + f64::from(w) * 1e-6);
        let c = |x: f64, y: f64| {
            if height {
                json!([x, y, 4.5])
            } else {
                json!([x, y])
            }
        };
        json!([[c(x0, y0), c(x1, y0), c(x1, y1), c(x0, y1), c(x0, y0)]])
    });
    let bay = (
        rect.clone(),
        prop::sample::select(&["standard", "accessible", "loading", "ev", "motorcycle"][..]),
        prop_oneof![
            Just(None),
            Just(Some(Value::Null)),
            (1..=10_080u32).prop_map(|m| Some(Value::from(m)))
        ],
        prop_oneof![
            Just(None),
            Just(Some(Value::Null)),
            prop::sample::select(
                &[
                    "08:00-20:00",
                    "20:00-02:00",
                    "00:00-24:00",
                    "20:00-00:00",
                    "07:30-09:15"
                ][..]
            )
            .prop_map(|h| Some(Value::from(h)))
        ],
        prop_oneof![
            Just(None),
            Just(Some(Value::Null)),
            ".{0,12}".prop_map(|s| Some(Value::from(s)))
        ],
        extra(),
        any::<bool>(),
    );
    let barrier = (
        rect,
        prop::sample::select(&["planter", "bollard", "fence"][..]),
        extra(),
    );
    (
        ".{0,20}",
        prop_oneof![Just(None), Just(Some(Value::Null)), ".{0,20}".prop_map(|s| Some(Value::from(s)))],
        extra(),
        prop::collection::vec(bay, 0..6),
        prop::collection::vec(barrier, 0..3),
    )
        .prop_map(|(name, name_en, road_extra, bays, barriers)| {
            let mut road = json!({"type": "Feature", "id": "r1",
                "geometry": {"type": "LineString", "coordinates": [[120.78, 30.76], [120.79, 30.76]]},
                "properties": {"feature_type": "road", "road_id": "r1", "name": name}});
            if let Some(n) = name_en {
                road["properties"]["name_en"] = n;
            }
            for (k, v) in road_extra.into_iter().flatten() {
                road["properties"][k] = v;
            }
            let mut features = vec![road];
            for (i, (coords, kind, max, hours, side, extra, boxed)) in bays.into_iter().enumerate() {
                let id = format!("b{i}");
                let mut f = json!({"type": "Feature", "id": id,
                    "geometry": {"type": "Polygon", "coordinates": coords},
                    "properties": {"feature_type": "bay", "bay_id": id, "road_id": "r1", "kind": kind}});
                for (k, v) in [("max_stay_minutes", max), ("enforced_hours", hours), ("side", side)] {
                    if let Some(v) = v {
                        f["properties"][k] = v;
                    }
                }
                for (k, v) in extra.into_iter().flatten() {
                    f["properties"][k] = v;
                }
                if boxed {
                    f["bbox"] = json!([120.78, 30.76, 120.79, 30.77]);
                    f["geometry"]["bbox"] = json!([120.78, 30.76, 120.79, 30.77]);
                    f["x_survey"] = json!({"by": "Zhou Min"});
                }
                features.push(f);
            }
            for (i, (coords, kind, extra)) in barriers.into_iter().enumerate() {
                let id = format!("p{i}");
                let mut f = json!({"type": "Feature", "id": id,
                    "geometry": {"type": "Polygon", "coordinates": coords},
                    "properties": {"feature_type": "barrier", "barrier_id": id, "road_id": "r1", "kind": kind}});
                for (k, v) in extra.into_iter().flatten() {
                    f["properties"][k] = v;
                }
                features.push(f);
            }
            json!({"type": "FeatureCollection", "features": features})
        })
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn a_valid_layout_exports_exactly_as_it_was_imported(v in valid_layout()) {
        let fc: geojson::FeatureCollection = serde_json::from_value(v.clone()).unwrap();
        let layouts = parse_layouts(&fc);
        prop_assert!(layouts.is_ok(), "{:?}", layouts.err());
        let layouts = layouts.unwrap();
        prop_assert_eq!(layouts.len(), 1);
        let exported = layouts[0].to_feature_collection();
        prop_assert_eq!(&exported.features, &fc.features);
        prop_assert_eq!(serde_json::to_value(&exported).unwrap(), serde_json::to_value(&fc).unwrap());
        // And import of the export is the same layout again.
        let again = parse_layouts(&exported).unwrap();
        prop_assert_eq!(again[0].to_feature_collection().features, exported.features);
        // Validation judges it without panicking, with contract codes.
        if let Err(problems) = validate(&layouts[0]) {
            check_problems(&problems)?;
        }
    }
}

/// `v` as GDAL writes it back from a GeoPackage: the string id moved to an
/// `id` property, the row number (or nothing) as the feature's id, and a
/// null for every column another feature uses.
fn through_geopackage(v: &Value, row_numbers: bool) -> Value {
    let mut v = v.clone();
    let features = v["features"].as_array_mut().unwrap();
    let columns: std::collections::BTreeSet<String> = features
        .iter()
        .flat_map(|f| f["properties"].as_object().unwrap().keys().cloned())
        .collect();
    for (i, f) in features.iter_mut().enumerate() {
        let id = f.as_object_mut().unwrap().remove("id").unwrap();
        if row_numbers {
            f["id"] = json!(i + 1);
        }
        let p = f["properties"].as_object_mut().unwrap();
        p.insert("id".into(), id);
        for c in &columns {
            p.entry(c.clone()).or_insert(Value::Null);
        }
    }
    v
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn a_valid_layout_through_a_geopackage_is_the_same_layout(v in valid_layout(), row_numbers in any::<bool>()) {
        let original = parse_layouts(&serde_json::from_value(v.clone()).unwrap()).unwrap().remove(0);
        let through = parse_layouts(&serde_json::from_value(through_geopackage(&v, row_numbers)).unwrap());
        prop_assert!(through.is_ok(), "{:?}", through.err());
        let through = through.unwrap().remove(0);
        prop_assert!(diff(Some(&original), &through).is_empty());
        // Exported in the contract's form: string ids, no `id` property.
        for f in through.to_feature_collection().features {
            prop_assert!(matches!(f.id, Some(geojson::feature::Id::String(_))));
            prop_assert!(!f.properties.unwrap().contains_key("id"));
        }
    }
}

// ---------------------------------------------------------------------------
// Enforcement time.

fn zone() -> impl Strategy<Value = chrono_tz::Tz> {
    prop::sample::select(
        &[
            chrono_tz::Asia::Shanghai,
            chrono_tz::Europe::London,
            chrono_tz::America::New_York,
            chrono_tz::America::Santiago,
            chrono_tz::Australia::Lord_Howe,
            chrono_tz::Pacific::Apia,
        ][..],
    )
}

fn enforced_hours() -> impl Strategy<Value = Option<EnforcedHours>> {
    prop_oneof![
        1 => Just(None),
        4 => (0..=24u16, 0..60u16, 0..=24u16, 0..60u16).prop_filter_map("not a window", |(h1, m1, h2, m2)| {
            EnforcedHours::parse(&format!("{h1:02}:{m1:02}-{h2:02}:{m2:02}"))
        }).prop_map(Some),
    ]
}

/// Any instant an RFC 3339 text can name (years 0000 to 9999).
fn any_instant() -> impl Strategy<Value = DateTime<Utc>> {
    let lo = Utc.with_ymd_and_hms(0, 1, 2, 0, 0, 0).unwrap().timestamp();
    let hi = Utc
        .with_ymd_and_hms(9999, 12, 31, 0, 0, 0)
        .unwrap()
        .timestamp();
    prop_oneof![
        (lo..=hi).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap()),
        instant_near_now(),
    ]
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn the_limit_is_reached_after_exactly_the_enforced_minutes(
        start in any_instant(),
        limit in 1..=10_080 + 60i64,
        hours in enforced_hours(),
        tz in zone(),
    ) {
        let limit = Duration::minutes(limit);
        match limit_reached_at(start, limit, hours, tz) {
            Some(at) => {
                prop_assert!(at >= start);
                prop_assert_eq!(enforced_between(start, at, hours, tz), limit);
            }
            // Only a window too short to hold the limit within the search.
            None => prop_assert!(enforced_between(start, start + Duration::days(398), hours, tz) < limit),
        }
    }

    #[test]
    fn judging_any_stay_never_panics_and_counts_no_negative_minutes(
        start in any_instant(),
        stay_min in -100_000..=1_000_000i64,
        max_stay in 1..=10_080i64,
        grace in 0..=60i64,
        hours in enforced_hours(),
        tz in zone(),
    ) {
        let until = start + Duration::minutes(stay_min);
        if let Some(o) = judge(start, until, Duration::minutes(max_stay), Duration::minutes(grace), hours, tz) {
            prop_assert!(o.minutes >= 0);
            prop_assert!(o.detected_at <= until && o.detected_at >= start);
        }
    }
}
