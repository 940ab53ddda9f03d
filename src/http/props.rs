//! Properties of the REST inputs: whatever a client puts in a query string,
//! a header or a body, the answer is a value or a 4xx problem, never a
//! panic (which actix would turn into a dropped connection or a 500).
//!
//! Each handler's reading of its inputs is a pure function tested here;
//! `web::Query::from_query` is what actix runs on the raw query string
//! before the handler, its failures answered 400 by `configure`.

use actix_web::{ResponseError, http::StatusCode, web};
use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::auth::bearer_token;
use super::cds::{EventQuery, MAX_WINDOW_DAYS, SessionQuery as CdsSessionQuery, ZoneQuery};
use super::history::{MAX_BUCKETS, MetricsQuery};
use super::layouts::{MAX_FEATURES, PutQuery, feature_collection, revision_tag};
use super::problem::ApiError;
use super::public::{FreeQuery, LIMIT_MAX, RADIUS_MAX_M};
use super::sessions::{MAX_LIMIT, SessionQuery};
use super::violations::{ViolationQuery, act_body, parse_near, status_filter, violation_id};
use crate::domain::ids::RoadId;
use crate::domain::layout::{ProblemCode, parse_road_layout_lenient};
use crate::domain::props::{check_problems, config, json_value, text};
use crate::domain::validate::validate;

fn is_400(e: &ApiError) -> bool {
    e.status_code() == StatusCode::BAD_REQUEST
}

/// A query-string value: a number in or out of range, written any way a
/// client might, or anything at all.
fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (-7000.0..7000.0f64).prop_map(|x| x.to_string()),
        2 => (-200..200i64).prop_map(|x| x.to_string()),
        1 => prop::sample::select(
            &["", " 12 ", "1e3", "1e400", "-0", "NaN", "inf", "-inf", "0x10", "+5", "5.", ".5",
              "wgs84", "gcj02", "WGS84", "bd09", "true", "false", "1", "0", "yes", "open", "all",
              "2026-11-27T01:00:00Z", "2026-11-20T00:00:00%2B08:00", "hour", "day", "loading",
              "QF-S-001", "%20", "%FF", "%", "+", "&", "="][..],
        )
        .prop_map(str::to_owned),
        2 => text(),
    ]
}

/// A raw query string over `keys`, with junk keys, repeats and separators.
fn query_string(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    let pair = (
        prop_oneof![4 => prop::sample::select(keys).prop_map(str::to_owned), 1 => "[a-z_%=&]{0,6}"],
        query_value(),
        any::<bool>(),
    )
        .prop_map(|(k, v, eq)| if eq { format!("{k}={v}") } else { k });
    prop::collection::vec(pair, 0..6).prop_map(|p| p.join("&"))
}

/// What `number` in `public.rs` should accept: a decimal float (as Rust
/// reads one) that is finite and inside `range`.
fn number_ok(v: Option<&str>, lo: f64, hi: f64) -> bool {
    v.is_none_or(|s| {
        s.trim()
            .parse::<f64>()
            .is_ok_and(|x| x.is_finite() && (lo..=hi).contains(&x))
    })
}

fn opt(s: impl Strategy<Value = String>) -> impl Strategy<Value = Option<String>> {
    proptest::option::weighted(0.8, s)
}

fn free_query() -> impl Strategy<Value = FreeQuery> {
    (
        opt(query_value()),
        opt(query_value()),
        opt(query_value()),
        opt(query_value()),
        opt(prop_oneof![
            prop::sample::select(&["standard", "loading", "ev", "lorry"][..])
                .prop_map(str::to_owned),
            text()
        ]),
        opt(prop_oneof![
            prop::sample::select(&["wgs84", "gcj02", "bd09"][..]).prop_map(str::to_owned),
            text()
        ]),
    )
        .prop_map(|(lon, lat, radius_m, limit, kind, crs)| FreeQuery {
            lon,
            lat,
            radius_m,
            limit,
            kind,
            crs,
        })
}

fn session_time() -> impl Strategy<Value = String> {
    let lo = Utc
        .with_ymd_and_hms(0, 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp_millis();
    let hi = Utc
        .with_ymd_and_hms(9999, 12, 31, 0, 0, 0)
        .unwrap()
        .timestamp_millis();
    prop_oneof![
        4 => (now_ms() - 3 * 86_400_000..now_ms() + 86_400_000).prop_map(ms_rfc3339),
        1 => (lo..=hi).prop_map(ms_rfc3339),
        1 => prop::sample::select(&["0000-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59",
            "2026-11-27T01:00:00", "yesterday", ""][..]).prop_map(str::to_owned),
        1 => text(),
    ]
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 2, 0, 0).unwrap()
}

fn now_ms() -> i64 {
    now().timestamp_millis()
}

fn ms_rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn session_query() -> impl Strategy<Value = SessionQuery> {
    (
        opt(session_time()),
        opt(session_time()),
        proptest::option::of(prop_oneof![0..=MAX_LIMIT + 1, any::<i64>()]),
        opt(prop_oneof![
            (any::<i64>(), any::<i64>()).prop_map(|(a, b)| format!("{a}.{b}")),
            text()
        ]),
    )
        .prop_map(|(from, to, limit, after)| SessionQuery {
            from,
            to,
            limit,
            after,
        })
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn any_free_spaces_query_string_is_read_or_a_400(
        q in query_string(&["lon", "lat", "radius_m", "limit", "kind", "crs"])
    ) {
        if let Ok(q) = web::Query::<FreeQuery>::from_query(&q)
            && let Err(e) = q.search()
        {
            prop_assert!(is_400(&e), "{e}");
        }
    }

    #[test]
    fn a_free_spaces_search_is_accepted_exactly_when_every_value_is_in_range(q in free_query()) {
        let in_range = number_ok(q.lon.as_deref(), -180.0, 180.0)
            && q.lon.is_some()
            && number_ok(q.lat.as_deref(), -90.0, 90.0)
            && q.lat.is_some()
            && number_ok(q.radius_m.as_deref(), 1.0, RADIUS_MAX_M)
            && number_ok(q.limit.as_deref(), 1.0, LIMIT_MAX as f64)
            && q.kind.as_deref().is_none_or(|k| crate::domain::layout::BayKind::parse(k).is_some())
            && matches!(q.crs.as_deref(), None | Some("wgs84" | "gcj02"));
        match q.search() {
            Ok(s) => {
                prop_assert!(in_range, "{q:?} gave {s:?}");
                prop_assert!((-180.0..=180.0).contains(&s.lon) && (-90.0..=90.0).contains(&s.lat));
                prop_assert!((1.0..=RADIUS_MAX_M).contains(&s.radius));
                prop_assert!((1..=LIMIT_MAX).contains(&s.limit));
            }
            Err(e) => {
                prop_assert!(!in_range, "{q:?} refused: {e}");
                prop_assert!(is_400(&e));
            }
        }
    }

    #[test]
    fn any_sessions_query_string_is_read_or_a_400(
        q in query_string(&["from", "to", "limit", "after"])
    ) {
        if let Ok(q) = web::Query::<SessionQuery>::from_query(&q)
            && let Err(e) = q.window(now())
        {
            prop_assert!(is_400(&e), "{e}");
        }
    }

    #[test]
    fn a_sessions_window_is_nonempty_with_a_limit_from_1_to_10000_or_a_400(q in session_query()) {
        match q.window(now()) {
            Ok(w) => {
                prop_assert!(w.from < w.to);
                prop_assert!((1..=MAX_LIMIT).contains(&w.limit));
                if q.to.is_none() {
                    prop_assert_eq!(w.to, now());
                }
                if q.from.is_none() {
                    prop_assert_eq!(w.from, w.to - Duration::hours(24));
                }
                // The next page's link is made from these; it must not panic.
                let _ = (w.from.to_rfc3339_opts(SecondsFormat::Millis, true), w.to.timestamp_millis());
            }
            Err(e) => prop_assert!(is_400(&e), "{e}"),
        }
    }

    #[test]
    fn a_metrics_query_is_a_bounded_window_of_whole_buckets_or_a_400_or_422(
        q in query_string(&["from", "to", "bucket", "bay_id", "kind"]),
        tz in prop::sample::select(&[chrono_tz::Asia::Shanghai, chrono_tz::Europe::Berlin, chrono_tz::Asia::Kolkata][..]),
    ) {
        if let Ok(q) = web::Query::<MetricsQuery>::from_query(&q) {
            match q.window(now()) {
                Ok(w) => {
                    prop_assert!(w.from < w.to);
                    let spans = crate::domain::history::buckets(&tz, w.bucket, w.from, w.to);
                    prop_assert!(spans.len() as i64 <= MAX_BUCKETS + 1, "{}", spans.len());
                    prop_assert!(spans.windows(2).all(|p| p[0].1 == p[1].0 && p[0].0 < p[0].1));
                }
                Err(e) => prop_assert!(
                    is_400(&e) || matches!(e, ApiError::Unprocessable(_)),
                    "{e}"
                ),
            }
        }
    }

    #[test]
    fn a_violation_status_filter_is_one_of_five_words_or_a_400(s in opt(text())) {
        let known = matches!(s.as_deref(), None | Some("open" | "ticketed" | "dismissed" | "void" | "all"));
        match status_filter(s.as_deref()) {
            Ok(_) => prop_assert!(known),
            Err(e) => prop_assert!(!known && is_400(&e)),
        }
    }

    #[test]
    fn any_violations_query_string_is_read_or_a_400(q in query_string(&["status", "near"])) {
        if let Ok(q) = web::Query::<ViolationQuery>::from_query(&q) {
            if let Err(e) = status_filter(q.status.as_deref()) {
                prop_assert!(is_400(&e));
            }
            match q.near.as_deref().map(parse_near).transpose() {
                Ok(Some(p)) => prop_assert!((-180.0..=180.0).contains(&p.x()) && (-90.0..=90.0).contains(&p.y())),
                Ok(None) => {}
                Err(e) => prop_assert!(is_400(&e)),
            }
        }
    }

    #[test]
    fn a_violation_id_follows_the_identifier_rule_or_is_a_400(s in prop_oneof![text(), any::<String>()]) {
        match violation_id(&s) {
            Ok(id) => prop_assert_eq!(id, s),
            Err(e) => prop_assert!(is_400(&e)),
        }
    }

    #[test]
    fn a_ticket_body_is_empty_or_a_short_note_else_a_400(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            json_value().prop_map(|v| v.to_string().into_bytes()),
            ".{0,600}".prop_map(|n| json!({"note": n}).to_string().into_bytes()),
            "[ \t\r\n]{0,4}".prop_map(String::into_bytes),
        ]
    ) {
        match act_body(&body) {
            Ok(b) => prop_assert!(b.note.is_none_or(|n| n.chars().count() <= 500)),
            Err(e) => prop_assert!(is_400(&e)),
        }
    }

    #[test]
    fn dry_run_is_true_false_or_absent_else_a_400(v in opt(query_value())) {
        let q = match &v {
            Some(v) => format!("dry_run={v}"),
            None => String::new(),
        };
        let got = web::Query::<PutQuery>::from_query(&q).map(|q| q.dry_run);
        match v.as_deref() {
            None => prop_assert_eq!(got.ok(), Some(None)),
            Some("true") => prop_assert_eq!(got.ok(), Some(Some(true))),
            Some("false") => prop_assert_eq!(got.ok(), Some(Some(false))),
            // Percent-escapes and `+` decode first; anything else is refused.
            Some(s) if !s.contains(['%', '+', '&', '#']) => prop_assert!(got.is_err(), "{s:?}"),
            Some(_) => {}
        }
    }

    #[test]
    fn an_if_match_revision_is_a_number_or_a_400(s in prop_oneof![
        any::<i64>().prop_map(|n| format!("\"{n}\"")),
        any::<i64>().prop_map(|n| format!("W/\"{n}\"")),
        text(),
    ]) {
        match revision_tag(&s) {
            Ok(n) => prop_assert!(s.contains(&n.to_string())),
            Err(e) => prop_assert!(is_400(&e)),
        }
    }

    #[test]
    fn an_authorization_header_is_a_bearer_token_or_a_401(h in prop_oneof![
        "[Bb][Ee][Aa][Rr][Ee][Rr] .{0,20}",
        ".{0,30}",
    ]) {
        match bearer_token(&h) {
            Ok(t) => {
                prop_assert!(h[..6].eq_ignore_ascii_case("bearer"));
                prop_assert!(!t.is_empty() && h.contains(t));
            }
            Err(e) => prop_assert_eq!(e.status_code(), StatusCode::UNAUTHORIZED),
        }
    }
}

/// A valid layout body with a few bytes changed, cut or inserted.
fn mangled_layout() -> impl Strategy<Value = Vec<u8>> {
    (
        crate::domain::props::feature_collection_like(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 0..4),
    )
        .prop_map(|(v, edits)| crate::domain::props::mangle(v.to_string().into_bytes(), edits))
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn any_layout_body_is_judged_with_contract_codes_never_a_panic(
        body in prop_oneof![
            mangled_layout(),
            json_value().prop_map(|v| v.to_string().into_bytes()),
            prop::collection::vec(any::<u8>(), 0..256),
        ]
    ) {
        let fc = match feature_collection(&body) {
            Ok(fc) => fc,
            Err(e) => {
                prop_assert!(e.status_code().is_client_error(), "{e}");
                if let ApiError::Invalid { errors, .. } = &e {
                    prop_assert!(errors.iter().all(|p| p.code == ProblemCode::Malformed));
                }
                return Ok(());
            }
        };
        let (layout, problems) = parse_road_layout_lenient(&fc, &RoadId::parse("r1").unwrap());
        check_problems(&problems)?;
        prop_assert!(layout.is_some() || !problems.is_empty());
        if let Some(l) = layout
            && let Err(more) = validate(&l)
        {
            check_problems(&more)?;
        }
    }
}

#[test]
fn a_layout_of_too_many_features_is_413() {
    let body =
        json!({"type": "FeatureCollection", "features": vec![Value::Null; MAX_FEATURES + 1]});
    let e = feature_collection(body.to_string().as_bytes()).unwrap_err();
    assert_eq!(e.status_code(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[test]
fn a_layout_crs_is_wgs84_or_gcj02_else_a_400() {
    use crate::domain::crs::Datum;
    for (q, want) in [
        ("crs=gcj02", Some(Some(Datum::Gcj02))),
        ("crs=wgs84&dry_run=true", Some(Some(Datum::Wgs84))),
        ("dry_run=true", Some(None)),
        ("crs=bd09", None),
        ("crs=EPSG:3857", None),
        ("crs=", None),
    ] {
        let got = web::Query::<PutQuery>::from_query(q).map(|q| q.crs);
        assert_eq!(got.ok(), want, "{q}");
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn any_cds_zone_query_string_is_read_or_a_400(
        q in query_string(&["min_lat", "min_lng", "max_lat", "max_lng", "lat", "lng", "radius",
                            "include_geometry", "time", "area"])
    ) {
        if let Ok(q) = web::Query::<ZoneQuery>::from_query(&q)
            && let Err(e) = q.place()
        {
            prop_assert!(is_400(&e), "{e}");
        }
    }

    #[test]
    fn a_cds_time_range_is_nonempty_and_bounded_or_a_400(
        q in query_string(&["start_time", "end_time", "curb_zone_id", "curb_space_id"])
    ) {
        if let Ok(q) = web::Query::<EventQuery>::from_query(&q) {
            match q.range().window(now()) {
                Ok((from, to)) => {
                    prop_assert!(from < to);
                    prop_assert!(to - from <= Duration::days(MAX_WINDOW_DAYS));
                }
                Err(e) => prop_assert!(is_400(&e), "{e}"),
            }
        }
    }

    #[test]
    fn any_cds_sessions_query_string_is_read_or_a_400(
        q in query_string(&["start_time", "end_time", "curb_place_type", "lat", "lng", "radius"])
    ) {
        if let Ok(q) = web::Query::<CdsSessionQuery>::from_query(&q) {
            if let Err(e) = q.place() {
                prop_assert!(is_400(&e), "{e}");
            }
            if let Err(e) = q.range().window(now()) {
                prop_assert!(is_400(&e), "{e}");
            }
        }
    }

    #[test]
    fn any_accept_header_is_answered(h in text()) {
        let _ = crate::domain::cds::accepts(Some(&h), "application/vnd.cds+json");
    }
}
