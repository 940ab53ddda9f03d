//! Planners redraw a road: validation with every problem at once, preview
//! with diff and impact, publication as a new revision, retired bays.

use kerbside::domain::auth::Role;
use kerbside::spatial::LocalFrame;
use kerbside::store::Store;
use serde_json::{Value, json};

use crate::brokers::PrivateMosquitto;
use crate::helpers::{
    MqttClient, TestApp, at, default_now, geodata_dir, rand_suffix, spawn_app, spawn_app_with,
    wait_until,
};

const LAYOUT: &str = "/v1/roads/qingfeng-road/layout";
const JSON: &str = "application/json";

fn export(app: &TestApp) -> Value {
    let mut fc = app.get(LAYOUT).json();
    fc.as_object_mut().unwrap().remove("revision");
    fc
}

fn feature<'a>(fc: &'a mut Value, id: &str) -> &'a mut Value {
    fc["features"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["id"] == id)
        .unwrap()
}

fn ring(f: &Value) -> Vec<(f64, f64)> {
    f["geometry"]["coordinates"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
        .collect()
}

fn set_ring(f: &mut Value, r: &[(f64, f64)]) {
    f["geometry"]["coordinates"] =
        json!([r.iter().map(|(x, y)| json!([x, y])).collect::<Vec<_>>()]);
}

/// Moves a feature by (`east`, `north`) metres.
fn shift(f: &mut Value, east: f64, north: f64) {
    let r = ring(f);
    let frame = LocalFrame::at(r[0].0, r[0].1);
    let moved: Vec<(f64, f64)> = r
        .iter()
        .map(|&(x, y)| {
            let m = frame.to_metres(geo::Coord { x, y });
            let d = frame.to_degrees(geo::Coord {
                x: m.x + east,
                y: m.y + north,
            });
            (d.x, d.y)
        })
        .collect();
    set_ring(f, &moved);
}

/// Narrows a rectangular bay's short side to `width` metres.
fn narrow(f: &mut Value, width: f64) {
    let r = ring(f);
    let frame = LocalFrame::at(r[0].0, r[0].1);
    let m: Vec<geo::Coord<f64>> = r
        .iter()
        .map(|&(x, y)| frame.to_metres(geo::Coord { x, y }))
        .collect();
    let len =
        |a: geo::Coord<f64>, b: geo::Coord<f64>| ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt();
    // Sides p0-p1 and p1-p2; pull the far edge of the short side in.
    let (a, b, c, d) = if len(m[0], m[1]) < len(m[1], m[2]) {
        (1, 0, 2, 3)
    } else {
        (0, 3, 1, 2)
    };
    let mut out = m.clone();
    for (fixed, moving) in [(b, a), (d, c)] {
        let (p, q) = (m[fixed], m[moving]);
        let k = width / len(p, q);
        out[moving] = geo::Coord {
            x: p.x + (q.x - p.x) * k,
            y: p.y + (q.y - p.y) * k,
        };
    }
    out[4] = out[0];
    let back: Vec<(f64, f64)> = out
        .iter()
        .map(|c| {
            let d = frame.to_degrees(*c);
            (d.x, d.y)
        })
        .collect();
    set_ring(f, &back);
}

fn put(
    app: &TestApp,
    token: &str,
    fc: &Value,
    query: &str,
    if_match: Option<&str>,
) -> crate::helpers::Reply {
    app.put_as(
        &format!("{LAYOUT}{query}"),
        token,
        JSON,
        if_match,
        &fc.to_string(),
    )
}

/// A new road, Wanda Lane (万达巷), 100 m long, with one 6 m x 2.5 m bay
/// whose properties (besides `feature_type` and `road_id`) are `bay`.
fn wanda_lane(mut bay: Value) -> Value {
    let f = LocalFrame::at(120.79, 30.77);
    let p = |x: f64, y: f64| {
        let d = f.to_degrees(geo::Coord { x, y });
        json!([d.x, d.y])
    };
    bay["feature_type"] = json!("bay");
    bay["road_id"] = json!("wanda-lane");
    json!({"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "wanda-lane", "properties": {"feature_type": "road", "road_id": "wanda-lane", "name": "万达巷"},
         "geometry": {"type": "LineString", "coordinates": [p(0.0, 0.0), p(100.0, 0.0)]}},
        {"type": "Feature", "id": bay["bay_id"].clone(), "properties": bay,
         "geometry": {"type": "Polygon", "coordinates": [[p(10.0, 5.0), p(16.0, 5.0), p(16.0, 7.5), p(10.0, 7.5), p(10.0, 5.0)]]}},
    ]})
}

fn errors(r: &crate::helpers::Reply) -> Vec<(Option<String>, String)> {
    let p = r.problem(422);
    p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["feature_id"].as_str().map(str::to_owned),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_shipped_road_sent_back_as_a_preview_is_clean_and_unchanged() {
    let app = spawn_app();
    let planner = app.token(Role::Planner);
    let r = put(&app, &planner, &export(&app), "?dry_run=true", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(
        body["diff"],
        json!({"added": [], "removed": [], "changed": []})
    );
    assert_eq!(body["warnings"], json!([]));
    assert_eq!(body["revision"], 1);
    assert_eq!(body["dry_run"], true);
}

#[test]
fn each_kind_of_mistake_has_its_code() {
    let app = spawn_app();
    let planner = app.token(Role::Planner);
    let base = export(&app);
    let case = |edit: &dyn Fn(&mut Value)| {
        let mut fc = base.clone();
        edit(&mut fc);
        errors(&put(&app, &planner, &fc, "?dry_run=true", None))
    };
    let one = |id: &str, code: &str| vec![(Some(id.to_owned()), code.to_owned())];
    assert_eq!(
        case(&|fc| feature(fc, "QF-N-001")["id"] = json!("QF N 001")),
        one("QF N 001", "invalid_id")
    );
    assert_eq!(
        case(&|fc| feature(fc, "QF-N-002")["id"] = json!("QF-N-001")),
        vec![(Some("QF-N-001".to_owned()), "duplicate_id".to_owned()),]
    );
    assert_eq!(
        case(&|fc| {
            feature(fc, "QF-N-003")["properties"]
                .as_object_mut()
                .unwrap()
                .remove("kind");
        }),
        one("QF-N-003", "missing_property")
    );
    assert_eq!(
        case(&|fc| feature(fc, "QF-N-004")["properties"]["kind"] = json!("lorry")),
        one("QF-N-004", "invalid_property")
    );
    assert_eq!(
        case(&|fc| feature(fc, "QF-N-005")["properties"]["max_stay_minutes"] = json!(0)),
        one("QF-N-005", "invalid_property")
    );
    assert_eq!(
        case(&|fc| feature(fc, "QF-N-006")["properties"]["enforced_hours"] = json!("8am-8pm")),
        one("QF-N-006", "invalid_property")
    );
    assert!(
        case(&|fc| feature(fc, "QF-N-007")["properties"]["road_id"] = json!("other-road"))
            .contains(&(Some("QF-N-007".into()), "wrong_road".into()))
    );
    assert_eq!(
        case(&|fc| feature(fc, "QF-N-008")["geometry"] =
            json!({"type": "LineString", "coordinates": [[120.78, 30.76], [120.781, 30.76]]})),
        one("QF-N-008", "invalid_geometry")
    );
    assert_eq!(
        case(&|fc| {
            let f = feature(fc, "QF-N-009");
            let mut r = ring(f);
            r.pop();
            set_ring(f, &r);
        }),
        one("QF-N-009", "invalid_geometry")
    );
    assert_eq!(
        case(&|fc| narrow(feature(fc, "QF-N-010"), 1.8)),
        one("QF-N-010", "bay_size")
    );
    assert_eq!(
        case(&|fc| shift(feature(fc, "QF-N-012"), -3.0, 0.0))
            .iter()
            .filter(|e| e.1 == "bay_overlap")
            .count(),
        1
    );
    assert_eq!(
        case(&|fc| {
            let r = ring(feature(fc, "QF-N-014"));
            set_ring(feature(fc, "QF-P-001"), &r);
        }),
        one("QF-N-014", "barrier_conflict")
    );

    let r = app.put_as(
        &format!("{LAYOUT}?dry_run=true"),
        &planner,
        JSON,
        None,
        "{\"type\": \"Feature",
    );
    assert_eq!(errors(&r), vec![(None, "malformed".to_owned())]);
    let r = app.put_as(
        &format!("{LAYOUT}?dry_run=true"),
        &planner,
        JSON,
        None,
        r#"{"type": "Point", "coordinates": [1, 2]}"#,
    );
    assert_eq!(errors(&r), vec![(None, "malformed".to_owned())]);
}

#[test]
fn several_problems_are_reported_together() {
    let app = spawn_app();
    let planner = app.token(Role::Planner);
    let mut fc = export(&app);
    narrow(feature(&mut fc, "QF-S-020"), 1.8);
    feature(&mut fc, "QF-S-021")["properties"]["kind"] = json!("bus");
    let r = ring(feature(&mut fc, "QF-S-030"));
    set_ring(feature(&mut fc, "QF-P-050"), &r);
    let mut got = errors(&put(&app, &planner, &fc, "", None));
    got.sort();
    assert_eq!(
        got,
        vec![
            (Some("QF-S-020".into()), "bay_size".into()),
            (Some("QF-S-021".into()), "invalid_property".into()),
            (Some("QF-S-030".into()), "barrier_conflict".into()),
        ]
    );
    assert_eq!(
        app.get("/v1/roads/qingfeng-road/layout/revisions").json()["revisions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_planner_moves_bays_adds_a_planter_previews_and_publishes() {
    let app = spawn_app();
    app.wait_for_broker();
    let planner = app.token(Role::Planner);
    // QF-N-012 is occupied right now and will be changed.
    let s = app.mqtt("s-plan");
    s.send_events(
        "s-plan",
        &json!({"event_id": "1", "type": "occupied", "observed_at": at(-1), "bay_id": "QF-N-012"}),
    );
    wait_until("occupied", || app.bay_status("QF-N-012") == "occupied");

    let mut fc = export(&app);
    for id in ["QF-N-012", "QF-N-013", "QF-N-014"] {
        shift(feature(&mut fc, id), 0.0, 0.1);
    }
    let mut planter = feature(&mut fc, "QF-P-001").clone();
    planter["id"] = json!("QF-P-091");
    planter["properties"]["barrier_id"] = json!("QF-P-091");
    shift(&mut planter, 0.0, 1.0);
    fc["features"].as_array_mut().unwrap().push(planter);

    let preview = put(&app, &planner, &fc, "?dry_run=true", None).json();
    assert_eq!(
        preview["diff"]["changed"],
        json!(["QF-N-012", "QF-N-013", "QF-N-014"])
    );
    assert_eq!(preview["diff"]["added"], json!(["QF-P-091"]));
    assert_eq!(
        preview["impact"],
        json!([{"bay_id": "QF-N-012", "change": "changed", "occupied": true, "open_violations": 0}])
    );
    assert_eq!(
        app.get(LAYOUT).json()["revision"],
        1,
        "a preview stores nothing"
    );

    let r = put(&app, &planner, &fc, "", Some("\"1\""));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["revision"], 2);
    assert_eq!(r.header("etag"), Some("\"2\""));
    let now = app.get(LAYOUT);
    assert_eq!(now.json()["revision"], 2);
    assert_eq!(now.header("etag"), Some("\"2\""));
    assert_eq!(app.get("/v1/roads").json()["roads"][0]["barriers"], 91);
    assert_eq!(
        app.get(&format!("{LAYOUT}?revision=1")).json()["features"]
            .as_array()
            .unwrap()
            .len(),
        227
    );
    let revs = app.get("/v1/roads/qingfeng-road/layout/revisions").json();
    assert_eq!(revs["revisions"][1]["created_by"], "test planner");
    assert_eq!(revs["revisions"][1]["based_on"], 1);
    assert_eq!(
        app.bay_status("QF-N-012"),
        "occupied",
        "a redrawn bay keeps its state"
    );

    // A colleague's upload drawn from revision 1 is refused.
    let p = put(&app, &planner, &fc, "", Some("\"1\"")).problem(412);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("current revision is 2")
    );
}

#[test]
fn a_removed_bay_is_retired_its_session_ends_and_its_events_are_refused() {
    let app = spawn_app();
    app.wait_for_broker();
    let planner = app.token(Role::Planner);
    let warden = app.token(Role::Warden);
    let s = app.mqtt("s-retire");
    s.subscribe("kerbside/v1/devices/s-retire/rejections");
    s.send_events(
        "s-retire",
        &json!({"event_id": "1", "type": "occupied", "observed_at": at(-5), "bay_id": "QF-S-068"}),
    );
    wait_until("occupied", || app.bay_status("QF-S-068") == "occupied");

    let mut fc = export(&app);
    fc["features"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["id"] != "QF-S-068");
    let r = put(&app, &planner, &fc, "", None).json();
    assert_eq!(r["diff"]["removed"], json!(["QF-S-068"]));
    assert_eq!(r["impact"][0]["bay_id"], "QF-S-068");
    app.get("/v1/bays/QF-S-068").problem(404);
    assert_eq!(
        app.get("/v1/roads/qingfeng-road/occupancy").json()["bays"],
        135
    );
    let sessions = app
        .get_as("/v1/roads/qingfeng-road/sessions", &warden)
        .json()["sessions"]
        .clone();
    assert_eq!(sessions[0]["bay_id"], "QF-S-068");
    assert_eq!(
        sessions[0]["ended_at"], "2026-11-27T02:00:00Z",
        "closed at the revision time"
    );

    s.send_events(
        "s-retire",
        &json!({"event_id": "2", "type": "vacated", "observed_at": at(0), "bay_id": "QF-S-068"}),
    );
    let rej = s.next_on("kerbside/v1/devices/s-retire/rejections");
    assert_eq!(rej["reason"], "unknown_bay");
}

#[test]
fn a_retired_bays_retained_state_is_cleared() {
    let app = spawn_app();
    app.wait_for_broker();
    let planner = app.token(Role::Planner);
    let topic = "kerbside/v1/bays/QF-S-067/state";
    let watcher = app.mqtt("watch-retire");
    watcher.subscribe(topic);
    let s = app.mqtt("s-retire-state");
    s.send_events(
        "s-retire-state",
        &json!({"event_id": "1", "type": "occupied", "observed_at": at(-5), "bay_id": "QF-S-067"}),
    );
    watcher.wait_on(topic, |v| v["status"] == "occupied");

    let mut fc = export(&app);
    fc["features"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["id"] != "QF-S-067");
    assert_eq!(put(&app, &planner, &fc, "", None).status, 200);

    let cleared = watcher.next_payload_on(topic, std::time::Duration::from_secs(10));
    assert_eq!(
        cleared.as_deref(),
        Some(&b""[..]),
        "an empty retained message"
    );
    let fresh = app.mqtt("fresh-retire");
    fresh.subscribe(topic);
    assert_eq!(
        fresh.next_payload_on(topic, std::time::Duration::from_millis(500)),
        None,
        "a new subscriber is told nothing of a retired bay"
    );
}

#[test]
fn after_a_restart_bays_retired_meanwhile_have_their_retained_state_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let broker = PrivateMosquitto::start(dir.path(), 100);
    let test_db = crate::helpers::TestDb::new();
    let db = test_db.url.clone();
    let on_broker = |db: &str| {
        let (url, db) = (broker.url(), db.to_owned());
        spawn_app_with(move |s| {
            s.mqtt_url = Some(url);
            s.mqtt_client_id = format!("kerbside-{}", rand_suffix());
            s.database.database_url = db;
        })
    };
    let topic = "kerbside/v1/bays/QF-S-066/state";
    let watcher = MqttClient::connect("watch-restart", "127.0.0.1", broker.port);
    watcher.subscribe(topic);
    let first = on_broker(&db);
    first.wait_for_broker();
    let s = MqttClient::connect("s-restart", "127.0.0.1", broker.port);
    s.send_events(
        "s-restart",
        &json!({"event_id": "1", "type": "occupied", "observed_at": at(-5), "bay_id": "QF-S-066"}),
    );
    watcher.wait_on(topic, |v| v["status"] == "occupied");
    drop(first);

    // Retired while this instance was down (by another one, say).
    let mut layout = kerbside::geodata::load_file(&geodata_dir().join("qingfeng-road.geojson"))
        .unwrap()
        .remove(0);
    layout.bays.retain(|b| b.bay_id.as_str() != "QF-S-066");
    Store::open(&db)
        .unwrap()
        .publish_layout(&layout, "test", None, None, default_now())
        .unwrap();

    let _back = on_broker(&db);
    let cleared = watcher.next_payload_on(topic, std::time::Duration::from_secs(10));
    assert_eq!(
        cleared.as_deref(),
        Some(&b""[..]),
        "an empty retained message"
    );
    let fresh = MqttClient::connect("fresh-restart", "127.0.0.1", broker.port);
    fresh.subscribe(topic);
    assert_eq!(
        fresh.next_payload_on(topic, std::time::Duration::from_millis(500)),
        None
    );
}

#[test]
fn a_put_to_a_new_road_creates_it() {
    let app = spawn_app();
    let planner = app.token(Role::Planner);
    let fc = wanda_lane(json!({"bay_id": "WL-001", "kind": "ev", "max_stay_minutes": 240}));
    let r = app.put_as(
        "/v1/roads/wanda-lane/layout",
        &planner,
        "application/geo+json",
        Some("\"0\""),
        &fc.to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["revision"], 1);
    assert_eq!(
        app.get("/v1/roads").json()["roads"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(app.get("/v1/bays/WL-001").json()["kind"], "ev");
    // A bay id of another road cannot be taken.
    let mut stolen = fc.clone();
    stolen["features"][1]["id"] = json!("QF-N-001");
    stolen["features"][1]["properties"]["bay_id"] = json!("QF-N-001");
    let r = app.put_as(
        "/v1/roads/wanda-lane/layout",
        &planner,
        JSON,
        None,
        &stolen.to_string(),
    );
    assert_eq!(
        errors(&r),
        vec![(Some("QF-N-001".into()), "duplicate_id".into())]
    );
}

#[test]
fn a_bay_id_another_road_retired_is_refused_with_its_code() {
    let app = spawn_app();
    let planner = app.token(Role::Planner);
    let mut qingfeng = export(&app);
    qingfeng["features"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["id"] != "QF-N-001");
    assert_eq!(put(&app, &planner, &qingfeng, "", None).status, 200);
    app.get("/v1/bays/QF-N-001").problem(404);

    let fc = wanda_lane(json!({"bay_id": "QF-N-001", "kind": "standard"}));
    let r = app.put_as(
        "/v1/roads/wanda-lane/layout",
        &planner,
        JSON,
        None,
        &fc.to_string(),
    );
    assert_eq!(
        errors(&r),
        vec![(Some("QF-N-001".into()), "bay_on_other_road".into())]
    );
    assert_eq!(
        app.get("/v1/roads").json()["roads"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn only_planners_and_admins_publish_and_bodies_are_checked() {
    let app = spawn_app();
    let fc = export(&app).to_string();
    app.put_as(LAYOUT, "nope", JSON, None, &fc).problem(401);
    app.put_as(LAYOUT, &app.token(Role::Warden), JSON, None, &fc)
        .problem(403);
    let admin = app.token(Role::Admin);
    assert_eq!(
        app.put_as(&format!("{LAYOUT}?dry_run=true"), &admin, JSON, None, &fc)
            .status,
        200
    );
    let planner = app.token(Role::Planner);
    app.put_as(LAYOUT, &planner, "text/plain", None, &fc)
        .problem(415);
    let huge = format!(
        "{{\"type\": \"FeatureCollection\", \"features\": [], \"pad\": \"{}\"}}",
        "x".repeat(17 << 20)
    );
    app.put_as(LAYOUT, &planner, JSON, None, &huge).problem(413);
    app.put_as(LAYOUT, &planner, JSON, Some("three"), &fc)
        .problem(400);
}

#[test]
fn readers_see_one_revision_or_the_next_never_half() {
    let app = std::sync::Arc::new(spawn_app());
    let planner = app.token(Role::Planner);
    let mut fc = export(&app);
    let mut extra = feature(&mut fc, "QF-N-001").clone();
    extra["id"] = json!("QF-N-900");
    extra["properties"]["bay_id"] = json!("QF-N-900");
    shift(&mut extra, -200.0, 0.0);
    let next = {
        let mut f = fc.clone();
        f["features"].as_array_mut().unwrap().push(extra);
        f
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (app, stop) = (app.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = std::collections::BTreeSet::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let bays = app.get("/v1/roads/qingfeng-road/bays").json();
                    let pair = (
                        bays["revision"].as_i64().unwrap(),
                        bays["features"].as_array().unwrap().len(),
                    );
                    assert!(
                        pair == (1, 136) || pair == (2, 137),
                        "half a layout: {pair:?}"
                    );
                    seen.insert(pair);
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(put(&app, &planner, &next, "", Some("\"1\"")).status, 200);
    std::thread::sleep(std::time::Duration::from_millis(100));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        let seen = r.join().unwrap();
        assert!(seen.contains(&(2, 137)), "{seen:?}");
    }
}
