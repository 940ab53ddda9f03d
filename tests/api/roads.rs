//! The public read API over the shipped Qingfeng Road.

use crate::helpers::spawn_app;

#[test]
fn healthz_reports_the_store_and_the_broker_up() {
    let app = spawn_app();
    app.wait_for_broker();
    let r = app.get("/healthz");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        serde_json::json!({"status": "ok", "store": "up", "broker": "up"})
    );
}

#[test]
fn healthz_is_503_while_the_broker_is_unreachable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app =
        crate::helpers::spawn_app_with(|s| s.mqtt_url = Some(format!("mqtt://127.0.0.1:{closed}")));
    let r = app.get("/healthz");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["broker"], "down");
    assert_eq!(r.json()["store"], "up");
}

#[test]
fn roads_lists_qingfeng_road_with_its_bays_and_barriers() {
    let app = spawn_app();
    let r = app.get("/v1/roads");
    assert_eq!(r.status, 200);
    let roads = r.json()["roads"].as_array().unwrap().clone();
    assert_eq!(roads.len(), 1);
    let road = &roads[0];
    assert_eq!(road["road_id"], "qingfeng-road");
    assert_eq!(road["name"], "庆丰路");
    assert_eq!(road["bays"], 136);
    assert_eq!(road["barriers"], 90);
    // No event has arrived: every bay is unknown, none free or occupied.
    assert_eq!(road["unknown"], 136);
    assert_eq!(road["free"], 0);
    assert_eq!(road["occupied"], 0);
}

#[test]
fn occupancy_starts_all_unknown_and_counts_by_kind() {
    let app = spawn_app();
    let o = app.get("/v1/roads/qingfeng-road/occupancy").json();
    assert_eq!(o["road_id"], "qingfeng-road");
    assert_eq!(o["as_of"], "2026-11-27T02:00:00Z");
    assert_eq!(o["bays"], 136);
    assert_eq!(o["unknown"], 136);
    assert!(o["occupancy_rate"].is_null());
    let by_kind = o["by_kind"].as_object().unwrap();
    let total: u64 = by_kind.values().map(|k| k["bays"].as_u64().unwrap()).sum();
    assert_eq!(total, 136);
    assert_eq!(by_kind["standard"]["bays"], 124);
    assert_eq!(by_kind["loading"]["bays"], 8);
    assert_eq!(by_kind["accessible"]["bays"], 4);
}

#[test]
fn bays_are_a_feature_collection_with_status_and_since() {
    let app = spawn_app();
    let fc = app.get("/v1/roads/qingfeng-road/bays").json();
    assert_eq!(fc["type"], "FeatureCollection");
    let features = fc["features"].as_array().unwrap();
    assert_eq!(features.len(), 136);
    for f in features {
        assert_eq!(f["properties"]["feature_type"], "bay");
        assert_eq!(f["properties"]["status"], "unknown");
        assert!(f["properties"]["since"].is_null());
        assert_eq!(f["geometry"]["type"], "Polygon");
    }
}

#[test]
fn one_bay_answers_with_its_rules_and_status() {
    let app = spawn_app();
    let b = app.get("/v1/bays/QF-S-014").json();
    assert_eq!(b["bay_id"], "QF-S-014");
    assert_eq!(b["road_id"], "qingfeng-road");
    assert_eq!(b["kind"], "standard");
    assert_eq!(b["max_stay_minutes"], 120);
    assert_eq!(b["status"], "unknown");
    assert!(b["since"].is_null());
}

#[test]
fn unknown_roads_and_bays_are_404_problems() {
    let app = spawn_app();
    for path in [
        "/v1/roads/no-such-road/occupancy",
        "/v1/roads/no-such-road/layout",
        "/v1/roads/no-such-road/layout/revisions",
        "/v1/roads/no-such-road/bays",
        "/v1/bays/QF-X-999",
        "/v1/nothing-here",
    ] {
        let p = app.get(path).problem(404);
        assert!(!p["detail"].as_str().unwrap().is_empty(), "{path}");
    }
}

#[test]
fn ids_that_break_the_identifier_rule_are_400_problems() {
    let app = spawn_app();
    let long = "x".repeat(65);
    for path in [
        "/v1/roads/qingfeng%20road/occupancy".to_owned(),
        "/v1/bays/QF-S-014%3B".to_owned(),
        format!("/v1/bays/{long}"),
        "/v1/roads/%E5%BA%86%E4%B8%B0/bays".to_owned(),
    ] {
        let p = app.get(&path).problem(400);
        assert!(
            p["detail"].as_str().unwrap().contains("allowed")
                || p["detail"].as_str().unwrap().contains("64"),
            "{path}: {p}"
        );
    }
}

#[test]
fn a_bad_query_parameter_is_a_400_problem() {
    let app = spawn_app();
    app.get("/v1/roads/qingfeng-road/layout?revision=first")
        .problem(400);
}

#[test]
fn as_of_is_the_service_clock() {
    let app = spawn_app();
    app.clock.advance(chrono::Duration::minutes(90));
    let o = app.get("/v1/roads/qingfeng-road/occupancy").json();
    assert_eq!(o["as_of"], "2026-11-27T03:30:00Z");
}
