//! The public's nearby free spaces and road list.

use geo::Centroid;
use kerbside::spatial::gcj02::wgs84_to_gcj02;
use serde_json::{Value, json};

use crate::helpers::{TestApp, at, geodata_dir, spawn_app, spawn_app_with, wait_until};

const FREE: &str = "/v1/public/free-spaces";

fn centroid(id: &str) -> (f64, f64) {
    let l = kerbside::geodata::load_file(&geodata_dir().join("qingfeng-road.geojson"))
        .unwrap()
        .remove(0);
    let c = l
        .bays
        .iter()
        .find(|b| b.bay_id.as_str() == id)
        .unwrap()
        .polygon
        .centroid()
        .unwrap();
    (c.x(), c.y())
}

/// Reports bays free (and one occupied) by sensor events.
fn street(app: &TestApp) {
    app.wait_for_broker();
    let s = app.mqtt("secret-device-1");
    s.send_events("secret-device-1", &json!([
        {"event_id": "1", "type": "vacated", "observed_at": at(-2), "bay_id": "QF-N-005"},
        {"event_id": "2", "type": "vacated", "observed_at": at(-2), "bay_id": "QF-N-006"},
        {"event_id": "3", "type": "observed", "observed_at": at(-2), "bay_id": "QF-N-007", "plate": "浙F77777"},
        {"event_id": "4", "type": "vacated", "observed_at": at(-2), "bay_id": "QF-N-008"},
    ]));
    wait_until("the street", || {
        app.bay_status("QF-N-008") == "free" && app.bay_status("QF-N-007") == "occupied"
    });
}

fn ids_and_distances(fc: &Value) -> Vec<(String, f64)> {
    fc["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["properties"]["bay_id"].as_str().unwrap().to_owned(),
                f["properties"]["distance_m"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn free_bays_come_nearest_first_with_their_distance() {
    let app = spawn_app();
    street(&app);
    let (lon, lat) = centroid("QF-N-005");
    let r = app.get(&format!("{FREE}?lon={lon}&lat={lat}"));
    assert_eq!(r.status, 200, "{}", r.body);
    let got = ids_and_distances(&r.json());
    // From the middle of QF-N-005: inside it (0 m); QF-N-006 is 3.0 m + the
    // 0.2 m painted gap away; QF-N-008 two bays of 6.2 m further. QF-N-007
    // is occupied; the rest are unknown.
    let names: Vec<&str> = got.iter().map(|(b, _)| b.as_str()).collect();
    assert_eq!(names, ["QF-N-005", "QF-N-006", "QF-N-008"]);
    for ((_, d), want) in got.iter().zip([0.0, 3.2, 15.6]) {
        assert!((d - want).abs() <= 0.01 * want.max(1.0), "{d} vs {want}");
    }
    let f = &r.json()["features"][0];
    assert_eq!(f["properties"]["road_name"], "庆丰路");
    assert_eq!(f["properties"]["kind"], "standard");
    assert_eq!(f["properties"]["max_stay_minutes"], 120);
    assert_eq!(f["geometry"]["type"], "Polygon");
}

#[test]
fn radius_and_limit_bound_the_answer() {
    let app = spawn_app();
    street(&app);
    let (lon, lat) = centroid("QF-N-005");
    let n = |q: &str| {
        ids_and_distances(&app.get(&format!("{FREE}?lon={lon}&lat={lat}{q}")).json()).len()
    };
    assert_eq!(n("&radius_m=15"), 2);
    assert_eq!(n("&radius_m=16"), 3);
    assert_eq!(n("&limit=2"), 2);
    assert_eq!(n("&limit=1&radius_m=1"), 1);
    assert_eq!(n("&kind=loading"), 0);
}

#[test]
fn gcj02_in_means_gcj02_out() {
    let app = spawn_app();
    street(&app);
    let (lon, lat) = centroid("QF-N-005");
    let (glon, glat) = wgs84_to_gcj02(lon, lat);
    let fc = app
        .get(&format!("{FREE}?lon={glon}&lat={glat}&crs=gcj02"))
        .json();
    let got = ids_and_distances(&fc);
    assert_eq!(got[0].0, "QF-N-005");
    assert!(got[0].1 < 0.01);
    let wgs = app.get(&format!("{FREE}?lon={lon}&lat={lat}")).json();
    let p = &fc["features"][0]["geometry"]["coordinates"][0][0];
    let q = &wgs["features"][0]["geometry"]["coordinates"][0][0];
    let (x, y) = wgs84_to_gcj02(q[0].as_f64().unwrap(), q[1].as_f64().unwrap());
    assert!((p[0].as_f64().unwrap() - x).abs() < 1e-9 && (p[1].as_f64().unwrap() - y).abs() < 1e-9);
}

#[test]
fn a_bay_just_taken_is_no_longer_offered() {
    let app = spawn_app();
    street(&app);
    let (lon, lat) = centroid("QF-N-005");
    let s = app.mqtt("s-taken");
    s.send_events(
        "s-taken",
        &json!({"event_id": "x", "type": "occupied", "observed_at": at(-1), "bay_id": "QF-N-005"}),
    );
    wait_until("taken", || app.bay_status("QF-N-005") == "occupied");
    let names: Vec<String> =
        ids_and_distances(&app.get(&format!("{FREE}?lon={lon}&lat={lat}")).json())
            .into_iter()
            .map(|x| x.0)
            .collect();
    assert_eq!(names, ["QF-N-006", "QF-N-008"]);
}

#[test]
fn bad_queries_are_400_problems() {
    let app = spawn_app();
    for q in [
        "",
        "?lat=30.76",
        "?lon=120.78",
        "?lon=east&lat=30.76",
        "?lon=120.78&lat=95",
        "?lon=181&lat=30",
        "?lon=120.78&lat=30.76&radius_m=6000",
        "?lon=120.78&lat=30.76&radius_m=0",
        "?lon=120.78&lat=30.76&limit=101",
        "?lon=120.78&lat=30.76&limit=0",
        "?lon=120.78&lat=30.76&kind=bus",
        "?lon=120.78&lat=30.76&crs=bd09",
        "?lon=NaN&lat=30.76",
    ] {
        app.get(&format!("{FREE}{q}")).problem(400);
    }
}

#[test]
fn answers_carry_no_plate_or_device_and_are_cacheable_from_any_origin() {
    let app = spawn_app();
    street(&app);
    let (lon, lat) = centroid("QF-N-007");
    for path in [
        format!("{FREE}?lon={lon}&lat={lat}&radius_m=5000&limit=100"),
        "/v1/public/roads".to_owned(),
    ] {
        let r = app.get(&path);
        assert_eq!(r.status, 200);
        for secret in ["浙F77777", "plate", "secret-device-1", "device"] {
            assert!(!r.body.contains(secret), "{path} shows {secret}");
        }
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        assert_eq!(r.header("cache-control"), Some("public, max-age=5"));
    }
    let roads = app.get("/v1/public/roads").json();
    assert_eq!(roads["roads"][0]["free"], 3);
    assert_eq!(roads["roads"][0]["occupied"], 1);
}

#[test]
fn a_client_past_its_rate_is_told_when_to_come_back() {
    let app = spawn_app_with(|s| s.public_rate_per_minute = 3);
    for _ in 0..3 {
        assert_eq!(app.get("/v1/public/roads").status, 200);
    }
    let r = app.get("/v1/public/roads");
    r.problem(429);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
    // Answers from the street alone are not limited.
    assert_eq!(app.get("/v1/roads/qingfeng-road/occupancy").status, 200);
    assert_eq!(app.get("/v1/roads/qingfeng-road/layout").status, 200);
}

#[test]
fn the_road_list_and_past_revisions_are_rate_limited_and_cacheable() {
    let app = spawn_app_with(|s| s.public_rate_per_minute = 4);
    let roads = app.get("/v1/roads");
    assert_eq!(roads.status, 200);
    assert_eq!(roads.header("cache-control"), Some("public, max-age=5"));
    let past = app.get("/v1/roads/qingfeng-road/layout?revision=1");
    assert_eq!(past.status, 200);
    let cache = past.header("cache-control").unwrap();
    assert!(
        cache.contains("max-age=31536000") && cache.contains("immutable"),
        "a stored revision never changes: {cache}"
    );
    assert_eq!(app.get("/v1/roads").status, 200);
    assert_eq!(
        app.get("/v1/roads/qingfeng-road/layout?revision=1").status,
        200
    );
    app.get("/v1/roads").problem(429);
    let r = app.get("/v1/roads/qingfeng-road/layout?revision=1");
    r.problem(429);
    assert!(r.header("retry-after").is_some());
}

#[test]
fn free_space_searches_are_rate_limited_too() {
    let app = spawn_app_with(|s| s.public_rate_per_minute = 3);
    let (lon, lat) = centroid("QF-N-005");
    let search = format!("{FREE}?lon={lon}&lat={lat}");
    for _ in 0..3 {
        assert_eq!(app.get(&search).status, 200);
    }
    let r = app.get(&search);
    r.problem(429);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
}

#[test]
fn browsers_may_ask_first() {
    let app = spawn_app();
    let r = app.preflight("/v1/public/free-spaces?lon=120.78&lat=30.76");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(
        r.header("access-control-allow-methods")
            .unwrap()
            .contains("GET")
    );
}

#[test]
fn forwarded_addresses_count_only_from_a_trusted_proxy() {
    const ROADS: &str = "/v1/public/roads";
    // One request a minute: a second one from the same client is refused.
    let direct = spawn_app_with(|s| s.public_rate_per_minute = 1);
    assert_eq!(direct.get_forwarded(ROADS, "203.0.113.1").status, 200);
    direct.get_forwarded(ROADS, "203.0.113.2").problem(429);

    let behind_proxy = spawn_app_with(|s| {
        s.public_rate_per_minute = 1;
        s.trusted_proxies = vec![kerbside::config::parse_network("127.0.0.1/32").unwrap()];
    });
    assert_eq!(behind_proxy.get_forwarded(ROADS, "203.0.113.1").status, 200);
    assert_eq!(
        behind_proxy.get_forwarded(ROADS, "203.0.113.2").status,
        200,
        "another client behind the proxy has a bucket of its own"
    );
    behind_proxy
        .get_forwarded(ROADS, "203.0.113.1")
        .problem(429);
    // Only the proxy's own entry is believed, not what the client wrote.
    behind_proxy
        .get_forwarded(ROADS, "198.51.100.1, 203.0.113.2")
        .problem(429);
}
