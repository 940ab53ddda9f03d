//! Open standards: the Curb Data Specification 1.1 under `/cds/v1` and the
//! DATEX II Parking Publication Light, checked field by field against the
//! specifications.

use std::collections::BTreeSet;

use chrono::Duration;
use kerbside::domain::auth::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, at, default_now, spawn_app, spawn_app_with, wait_until};
use crate::testdb::TestDb;

const CDS_JSON: &str = "application/vnd.cds+json;version=1.1";
const CDS_CSV: &str = "application/vnd.cds+csv;version=1.1";

/// GET a CDS JSON endpoint as a client that asks for version 1.1; checks
/// the media type and the envelope, and returns `data`.
fn cds(app: &TestApp, path: &str, token: Option<&str>) -> Value {
    let r = app.get_accepting(path, CDS_JSON, token);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    assert_eq!(r.content_type, CDS_JSON, "{path}");
    let body = r.json();
    // General information, REST Endpoints: every field required there.
    assert_eq!(body["version"], "1.1");
    assert_eq!(body["time_zone"], "Asia/Shanghai");
    assert!(body["last_updated"].is_i64(), "{}", body["last_updated"]);
    assert_eq!(body["currency"], "CNY");
    body["data"].clone()
}

fn uuid(v: &Value) -> Uuid {
    Uuid::parse_str(v.as_str().unwrap_or_else(|| panic!("{v} is not a string")))
        .unwrap_or_else(|e| panic!("{v} is not a UUID: {e}"))
}

fn ms(minutes: i64) -> i64 {
    (default_now() + Duration::minutes(minutes)).timestamp_millis()
}

fn assert_polygon(g: &Value) {
    assert_eq!(g["type"], "Polygon", "{g}");
    let ring = g["coordinates"][0].as_array().unwrap();
    assert!(ring.len() >= 4);
    assert_eq!(ring.first(), ring.last(), "a closed ring");
}

fn zones(app: &TestApp) -> Vec<Value> {
    cds(app, "/cds/v1/curbs/zones", None)["zones"]
        .as_array()
        .unwrap()
        .clone()
}

fn space_of(app: &TestApp, bay: &str) -> Value {
    cds(app, "/cds/v1/curbs/spaces", None)["spaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == bay)
        .unwrap_or_else(|| panic!("no space named {bay}"))
        .clone()
}

/// Sends `events` as one device and waits until all are stored.
fn send(app: &TestApp, device: &str, events: Value) {
    app.wait_for_broker();
    let before = app.metric("kerbside_events_accepted_total");
    let n = events.as_array().unwrap().len() as f64;
    app.mqtt(&format!("{device}-client"))
        .send_events(device, &events);
    wait_until("the events are stored", || {
        app.metric("kerbside_events_accepted_total") >= before + n
    });
}

#[test]
fn zones_spaces_objects_and_policies_carry_what_the_specification_requires() {
    let app = spawn_app();
    let zones = zones(&app);
    // Per side, runs of equally ruled bays: standard runs cut by the four
    // loading bays, then the two accessible ones (geodata/README.md).
    assert_eq!(zones.len(), 20);
    let policies = cds(&app, "/cds/v1/curbs/policies", None)["policies"]
        .as_array()
        .unwrap()
        .clone();
    let policy_ids: BTreeSet<Uuid> = policies
        .iter()
        .map(|p| uuid(&p["curb_policy_id"]))
        .collect();
    let spaces = cds(&app, "/cds/v1/curbs/spaces", None)["spaces"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(spaces.len(), 136);
    let space_ids: BTreeSet<Uuid> = spaces.iter().map(|s| uuid(&s["curb_space_id"])).collect();
    assert_eq!(space_ids.len(), 136);
    let mut listed = BTreeSet::new();
    let revision_ms = default_now().timestamp_millis();
    for z in &zones {
        let id = uuid(&z["curb_zone_id"]);
        assert_eq!(id.get_version_num(), 5);
        assert_polygon(&z["geometry"]);
        let ps = z["curb_policy_ids"].as_array().unwrap();
        assert!(!ps.is_empty());
        assert!(ps.iter().all(|p| policy_ids.contains(&uuid(p))));
        assert_eq!(z["published_date"], revision_ms);
        assert_eq!(z["last_updated_date"], revision_ms);
        assert_eq!(z["start_date"], revision_ms);
        assert!(z.get("end_date").is_none());
        assert_eq!(z["street_name"], "庆丰路");
        assert!(matches!(
            z["street_side"].as_str(),
            Some("N" | "S" | "NE" | "NW" | "SE" | "SW" | "E" | "W")
        ));
        // Lengths in whole centimetres: a zone of n bays of 6.0 m and the
        // 0.2 m gaps between them.
        let n = z["num_spaces"].as_i64().unwrap();
        let length = z["length"].as_i64().unwrap();
        assert!(
            length >= n * 400 && length <= n * 900,
            "{n} bays, {length} cm"
        );
        for s in z["curb_space_ids"].as_array().unwrap() {
            assert!(space_ids.contains(&uuid(s)));
            assert!(listed.insert(uuid(s)), "a space in two zones");
        }
        assert_eq!(z["curb_space_ids"].as_array().unwrap().len() as i64, n);
        // Fetching it by id gives the same zone.
        let one = cds(&app, &format!("/cds/v1/curbs/zones/{id}"), None);
        assert_eq!(one["curb_zone_id"], z["curb_zone_id"]);
    }
    assert_eq!(listed.len(), 136);
    let zone_ids: BTreeSet<Uuid> = zones.iter().map(|z| uuid(&z["curb_zone_id"])).collect();
    for s in &spaces {
        assert_polygon(&s["geometry"]);
        assert!(zone_ids.contains(&uuid(&s["curb_zone_id"])));
        assert!(s["published_date"].is_i64() && s["last_updated_date"].is_i64());
        let length = s["length"].as_i64().unwrap();
        assert!((300..=1500).contains(&length), "{length} cm");
        assert!(s["space_number"].as_i64().unwrap() >= 1);
    }
    // A standard bay: 6 m long, with a two-hour limit from 08:00 to 20:00.
    let n5 = spaces.iter().find(|s| s["name"] == "QF-N-005").unwrap();
    assert!(
        (595..=605).contains(&n5["length"].as_i64().unwrap()),
        "{}",
        n5["length"]
    );
    let zone = zones
        .iter()
        .find(|z| z["curb_zone_id"] == n5["curb_zone_id"])
        .unwrap();
    let limited: Vec<&Value> = policies
        .iter()
        .filter(|p| {
            zone["curb_policy_ids"]
                .as_array()
                .unwrap()
                .contains(&p["curb_policy_id"])
        })
        .collect();
    let first = limited.iter().find(|p| p["priority"] == 1).unwrap();
    assert_eq!(first["rules"][0]["activity"], "parking");
    assert_eq!(first["rules"][0]["max_stay"], 120);
    assert_eq!(first["rules"][0]["max_stay_unit"], "minute");
    assert_eq!(first["time_spans"][0]["time_of_day_start"], "08:00");
    assert_eq!(first["time_spans"][0]["time_of_day_end"], "20:00");
    assert!(first["published_date"].is_i64());
    // `ids` asks for some policies only.
    let one = cds(
        &app,
        &format!(
            "/cds/v1/curbs/policies?ids={}",
            first["curb_policy_id"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(one["policies"].as_array().unwrap().len(), 1);
    let fetched = cds(
        &app,
        &format!(
            "/cds/v1/curbs/policies/{}",
            first["curb_policy_id"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(&fetched, *first);
    // Optional endpoints kerbside does not serve say so, as CDS asks.
    for path in ["/cds/v1/curbs/areas", "/cds/v1/events/status"] {
        app.get(path).problem(501);
    }
    // Every planter is a Curb Object tied to a zone, at a point.
    let objects = cds(&app, "/cds/v1/curbs/objects", None)["objects"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(objects.len(), 90);
    for o in &objects {
        uuid(&o["curb_object_id"]);
        assert_eq!(o["object_type"], "planter");
        assert_eq!(o["geometry"]["type"], "Point");
        assert_polygon(&o["object_shape"]);
        assert!(zone_ids.contains(&uuid(&o["curb_zone_id"])));
        assert!(o["name"].is_string());
        assert!(o["published_date"].is_i64() && o["last_updated_date"].is_i64());
    }
}

#[test]
fn zone_queries_filter_by_box_and_radius_and_say_what_is_wrong() {
    let app = spawn_app();
    let all = zones(&app);
    let space = space_of(&app, "QF-N-005");
    let c = &space["geometry"]["coordinates"][0][0];
    let (lng, lat) = (c[0].as_f64().unwrap(), c[1].as_f64().unwrap());
    // Within 1 m of a corner of QF-N-005: its zone, first.
    let near = cds(
        &app,
        &format!("/cds/v1/curbs/zones?lat={lat}&lng={lng}&radius=100"),
        None,
    )["zones"]
        .clone();
    assert!(!near.as_array().unwrap().is_empty());
    assert_eq!(near[0]["curb_zone_id"], space["curb_zone_id"]);
    assert!(near.as_array().unwrap().len() < all.len());
    // A box around that corner.
    let boxed = cds(
        &app,
        &format!(
            "/cds/v1/curbs/zones?min_lat={}&min_lng={}&max_lat={}&max_lng={}&include_geometry=false",
            lat - 1e-6,
            lng - 1e-6,
            lat + 1e-6,
            lng + 1e-6
        ),
        None,
    )["zones"]
        .clone();
    let ids: Vec<&Value> = boxed
        .as_array()
        .unwrap()
        .iter()
        .map(|z| &z["curb_zone_id"])
        .collect();
    assert!(ids.contains(&&space["curb_zone_id"]));
    assert!(boxed[0].get("geometry").is_none());
    // Spaces of one zone.
    let zone_spaces = cds(
        &app,
        &format!(
            "/cds/v1/curbs/spaces?zone={}",
            space["curb_zone_id"].as_str().unwrap()
        ),
        None,
    )["spaces"]
        .clone();
    assert!(
        zone_spaces
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["curb_zone_id"] == space["curb_zone_id"])
    );
    // Half a box, a bad UUID, an unknown zone.
    let r = app.get_accepting("/cds/v1/curbs/zones?min_lat=30", CDS_JSON, None);
    assert!(
        r.problem(400)["detail"]
            .as_str()
            .unwrap()
            .contains("all four")
    );
    let r = app.get_accepting(
        "/cds/v1/curbs/zones?lat=30&lng=120&radius=-5",
        CDS_JSON,
        None,
    );
    r.problem(400);
    let r = app.get_accepting("/cds/v1/curbs/zones/not-a-uuid", CDS_JSON, None);
    r.problem(400);
    let r = app.get_accepting(
        &format!("/cds/v1/curbs/zones/{}", Uuid::nil()),
        CDS_JSON,
        None,
    );
    r.problem(404);
}

#[test]
fn a_request_whose_accept_excludes_cds_is_not_acceptable() {
    let app = spawn_app();
    let warden = app.token(Role::Warden);
    for accept in [
        "application/json",
        "application/vnd.cds+json;version=1.0",
        "text/html",
        "*/*;q=0",
    ] {
        let r = app.get_accepting("/cds/v1/curbs/zones", accept, None);
        assert!(
            r.problem(406)["detail"].as_str().unwrap().contains("1.1"),
            "{accept}"
        );
        app.get_accepting("/cds/v1/events/events", accept, Some(&warden))
            .problem(406);
    }
    // The sessions table is CSV: a JSON-only Accept is refused, its own
    // media type is not.
    for path in ["/cds/v1/metrics/sessions", "/cds/v1/metrics/aggregates"] {
        app.get_accepting(path, CDS_JSON, Some(&warden))
            .problem(406);
        app.get_accepting(path, "text/csv", Some(&warden))
            .problem(406);
    }
    for accept in ["*/*", "application/*", CDS_JSON, "application/vnd.cds+json"] {
        let r = app.get_accepting("/cds/v1/curbs/zones", accept, None);
        assert_eq!(r.status, 200, "{accept}");
        assert_eq!(r.content_type, CDS_JSON);
    }
}

#[test]
fn events_and_metrics_need_a_token_of_any_role() {
    let app = spawn_app();
    for path in [
        "/cds/v1/events/events",
        "/cds/v1/metrics/sessions",
        "/cds/v1/metrics/aggregates",
    ] {
        app.get(path).problem(401);
        app.get_with(path, "Bearer not-a-token").problem(401);
        for role in [Role::Warden, Role::Planner, Role::Admin] {
            let t = app.token(role);
            let r = app.get_accepting(path, "*/*", Some(&t));
            assert_eq!(r.status, 200, "{path} {role:?}: {}", r.body);
        }
    }
    // The Curbs API is public.
    assert_eq!(app.get("/cds/v1/curbs/zones").status, 200);
}

/// A known street: QF-N-010 parked from -50 to -20 min, QF-N-011 from
/// -10 min on, QF-N-012 heard at -100 min and then only at -5 min.
fn known_street(app: &TestApp) {
    send(
        app,
        "standards-sensor",
        json!([
            {"event_id": "a", "type": "occupied", "observed_at": at(-50), "bay_id": "QF-N-010"},
            {"event_id": "b", "type": "vacated", "observed_at": at(-20), "bay_id": "QF-N-010"},
            {"event_id": "c", "type": "occupied", "observed_at": at(-10), "bay_id": "QF-N-011"},
            {"event_id": "d", "type": "heartbeat", "observed_at": at(-100), "bay_id": "QF-N-012"},
            {"event_id": "e", "type": "heartbeat", "observed_at": at(-5), "bay_id": "QF-N-012"},
        ]),
    );
}

#[test]
fn the_sessions_table_is_csv_with_the_specified_columns_and_one_row_per_session() {
    let app = spawn_app();
    known_street(&app);
    let t = app.token(Role::Planner);
    let path = format!(
        "/cds/v1/metrics/sessions?start_time={}&end_time={}",
        ms(-60),
        ms(0)
    );
    let r = app.get_accepting(&path, CDS_CSV, Some(&t));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.content_type, CDS_CSV);
    let lines: Vec<&str> = r.body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines[0],
        "session_type,event_session_id,event_id_start,event_id_end,\
         event_location_start_latitude,event_location_start_longitude,\
         event_location_end_latitude,event_location_end_longitude,\
         event_time_start,event_time_end,curb_zone_id,curb_area_ids,\
         curb_space_id,curb_object_id,vehicle_length,vehicle_type"
    );
    assert_eq!(lines.len(), 3, "{}", r.body);
    let rows: Vec<Vec<&str>> = lines[1..].iter().map(|l| l.split(',').collect()).collect();
    let n10 = space_of(&app, "QF-N-010");
    let n11 = space_of(&app, "QF-N-011");
    // Oldest first: QF-N-010's ended stay, then QF-N-011's open one.
    let (a, b) = (&rows[0], &rows[1]);
    assert_eq!(a[0], "parking");
    uuid(&json!(a[1]));
    uuid(&json!(a[2]));
    uuid(&json!(a[3]));
    assert_eq!(a[8], ms(-50).to_string());
    assert_eq!(a[9], ms(-20).to_string());
    assert_eq!(a[10], n10["curb_zone_id"].as_str().unwrap());
    assert_eq!(a[12], n10["curb_space_id"].as_str().unwrap());
    let lat: f64 = a[4].parse().unwrap();
    let lng: f64 = a[5].parse().unwrap();
    assert!((30.0..31.5).contains(&lat) && (120.0..121.5).contains(&lng));
    assert_eq!(b[8], ms(-10).to_string());
    assert_eq!(
        (b[3], b[6], b[7], b[9]),
        ("", "", "", ""),
        "an open session has no end"
    );
    assert_eq!(b[12], n11["curb_space_id"].as_str().unwrap());
    // Only sessions that started in the range; the end is exclusive.
    let r = app.get_accepting(
        &format!(
            "/cds/v1/metrics/sessions?start_time={}&end_time={}",
            ms(-50),
            ms(-10)
        ),
        CDS_CSV,
        Some(&t),
    );
    assert_eq!(
        r.body.split("\r\n").filter(|l| !l.is_empty()).count(),
        2,
        "{}",
        r.body
    );
    // One space alone.
    let r = app.get_accepting(
        &format!(
            "{path}&curb_place_type=space&curb_place_id={}",
            n11["curb_space_id"].as_str().unwrap()
        ),
        CDS_CSV,
        Some(&t),
    );
    assert_eq!(
        r.body.split("\r\n").filter(|l| !l.is_empty()).count(),
        2,
        "{}",
        r.body
    );
    app.get_accepting(
        "/cds/v1/metrics/sessions?curb_place_type=street&curb_place_id=x",
        CDS_CSV,
        Some(&t),
    )
    .problem(400);
}

#[test]
fn events_come_from_sessions_and_silences_in_a_half_open_range() {
    let app = spawn_app();
    known_street(&app);
    let t = app.token(Role::Warden);
    let events = |from: i64, to: i64| -> Vec<Value> {
        cds(
            &app,
            &format!("/cds/v1/events/events?start_time={from}&end_time={to}"),
            Some(&t),
        )["events"]
            .as_array()
            .unwrap()
            .clone()
    };
    let kinds = |events: &[Value]| -> Vec<(String, i64)> {
        events
            .iter()
            .map(|e| {
                (
                    e["event_type"].as_str().unwrap().to_owned(),
                    e["event_time"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let all = events(ms(-120), ms(0));
    // Most recent first (General information, Event Times). QF-N-012 was
    // silent from -100 min: lost when the 30-minute window ran out, at
    // -70 min, and restored by its next event at -5 min.
    let want: Vec<(String, i64)> = [
        ("comms_restored", ms(-5)),
        ("park_start", ms(-10)),
        ("park_end", ms(-20)),
        ("park_start", ms(-50)),
        ("comms_lost", ms(-70)),
    ]
    .iter()
    .map(|(k, t)| ((*k).to_owned(), *t))
    .collect();
    assert_eq!(kinds(&all), want);
    for e in &all {
        uuid(&e["event_id"]);
        uuid(&e["curb_zone_id"]);
        uuid(&e["curb_space_id"]);
        uuid(&e["data_source_device_id"]);
        assert_eq!(e["event_location"]["type"], "Feature");
        assert_eq!(e["event_location"]["geometry"]["type"], "Point");
        assert_eq!(
            e["event_location"]["properties"]["timestamp"],
            e["event_time"]
        );
        assert!(e["event_publication_time"].as_i64().unwrap() >= e["event_time"].as_i64().unwrap());
        assert_eq!(e["data_source_type"], "in_ground");
    }
    // A session's two events share its id; the space is QF-N-010's.
    let n10 = space_of(&app, "QF-N-010");
    let pair: Vec<&Value> = all
        .iter()
        .filter(|e| e["curb_space_id"] == n10["curb_space_id"])
        .collect();
    assert_eq!(pair.len(), 2);
    assert_eq!(pair[0]["event_session_id"], pair[1]["event_session_id"]);
    uuid(&pair[0]["event_session_id"]);
    // Start inclusive, end exclusive.
    assert_eq!(
        kinds(&events(ms(-20), ms(-10))),
        vec![("park_end".to_owned(), ms(-20))]
    );
    assert!(events(ms(-19), ms(-10)).is_empty());
    // The same ids every time.
    assert_eq!(events(ms(-120), ms(0)), all);
    // Filters by zone and space.
    let by_space = cds(
        &app,
        &format!(
            "/cds/v1/events/events?start_time={}&end_time={}&curb_space_id={}",
            ms(-120),
            ms(0),
            n10["curb_space_id"].as_str().unwrap()
        ),
        Some(&t),
    );
    assert_eq!(by_space["events"].as_array().unwrap().len(), 2);
    // Bad ranges are 400s.
    let bad = |q: &str| {
        app.get_accepting(&format!("/cds/v1/events/events?{q}"), CDS_JSON, Some(&t))
            .problem(400)
    };
    bad(&format!("start_time={}&end_time={}", ms(0), ms(-10)));
    bad("start_time=yesterday");
    bad(&format!(
        "start_time={}&end_time={}",
        ms(-60 * 24 * 40),
        ms(0)
    ));
}

#[test]
fn an_overstay_is_told_as_a_vehicle_violation() {
    let app = spawn_app();
    // A loading bay allows 30 minutes from 07:00 to 19:00: parked since
    // 09:15, the limit passed at 09:45.
    send(
        &app,
        "standards-sensor",
        json!([
            {"event_id": "l", "type": "occupied", "observed_at": at(-45), "bay_id": "QF-N-020"},
            // Still there: the sensor is alive and says nothing new.
            {"event_id": "m", "type": "heartbeat", "observed_at": at(-1), "bay_id": "QF-N-020"},
        ]),
    );
    let t = app.token(Role::Warden);
    wait_until("the overstay is filed", || {
        app.get_as("/v1/roads/qingfeng-road/violations", &t).json()["violations"]
            .as_array()
            .is_some_and(|v| !v.is_empty())
    });
    let v = &app.get_as("/v1/roads/qingfeng-road/violations", &t).json()["violations"][0];
    let detected = chrono::DateTime::parse_from_rfc3339(v["detected_at"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    let events = cds(
        &app,
        &format!(
            "/cds/v1/events/events?start_time={}&end_time={}",
            ms(-60),
            ms(1)
        ),
        Some(&t),
    )["events"]
        .clone();
    let told: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_type"] == "vehicle_violation_start")
        .collect();
    assert_eq!(told.len(), 1, "{events}");
    assert_eq!(told[0]["event_time"], detected);
    assert_eq!(told[0]["enforcement"]["violation_name"], "overstay");
    assert_eq!(
        told[0]["curb_space_id"],
        space_of(&app, "QF-N-020")["curb_space_id"]
    );

    // A car seen in the carriageway, in no bay: told too, at its position,
    // with a source but no space.
    let layout = app.get("/v1/roads/qingfeng-road/layout").json();
    let road = layout["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["properties"]["feature_type"] == "road")
        .unwrap()
        .clone();
    let c = &road["geometry"]["coordinates"][1];
    send(
        &app,
        "standards-handheld",
        json!([{"event_id": "o", "type": "observed", "observed_at": at(0),
                "position": {"lon": c[0], "lat": c[1]}, "plate": "浙F12345"}]),
    );
    let outside = |events: &Value| -> Option<Value> {
        events["events"]
            .as_array()?
            .iter()
            .find(|e| e["enforcement"]["violation_name"] == "outside_bay")
            .cloned()
    };
    let path = format!(
        "/cds/v1/events/events?start_time={}&end_time={}",
        ms(-60),
        ms(1)
    );
    wait_until("the sighting is told", || {
        outside(&cds(&app, &path, Some(&t))).is_some()
    });
    let e = outside(&cds(&app, &path, Some(&t))).unwrap();
    assert_eq!(e["event_type"], "vehicle_violation_start");
    assert_eq!(
        e["event_location"]["geometry"]["coordinates"],
        json!([c[0], c[1]])
    );
    uuid(&e["data_source_device_id"]);
    assert!(e.get("curb_space_id").is_none());
    assert_eq!(e["data_source_type"], "in_person");
    assert!(!e.to_string().contains("浙F12345"), "no plate in an event");
}

#[test]
fn ids_survive_a_restart_and_a_zone_whose_geometry_changes_gets_a_new_one() {
    let db = TestDb::new();
    let url = db.url.clone();
    let first = spawn_app_with(|s| s.database.database_url = url.clone());
    let before = zones(&first);
    let spaces_before = cds(&first, "/cds/v1/curbs/spaces", None);
    drop(first);
    let app = spawn_app_with(|s| s.database.database_url = url.clone());
    let after = zones(&app);
    let ids = |zs: &[Value]| -> Vec<String> {
        zs.iter()
            .map(|z| z["curb_zone_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&after), ids(&before));
    let spaces_after = cds(&app, "/cds/v1/curbs/spaces", None);
    let space_ids = |d: &Value| -> Vec<Value> {
        d["spaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["curb_space_id"].clone())
            .collect()
    };
    assert_eq!(space_ids(&spaces_after), space_ids(&spaces_before));

    // Revision 2 drops QF-N-001: its zone's extent changes.
    let old = space_of(&app, "QF-N-001")["curb_zone_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut layout = app.get("/v1/roads/qingfeng-road/layout").json();
    layout["features"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["id"] != "QF-N-001");
    if let Some(o) = layout.as_object_mut() {
        o.remove("revision");
    }
    app.clock.advance(Duration::minutes(1));
    let planner = app.token(Role::Planner);
    let r = app.put_as(
        "/v1/roads/qingfeng-road/layout",
        &planner,
        "application/json",
        None,
        &layout.to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let republished = zones(&app);
    assert_eq!(republished.len(), before.len());
    let new = republished
        .iter()
        .find(|z| {
            z["prev_curb_zone_ids"]
                .as_array()
                .is_some_and(|p| !p.is_empty())
        })
        .expect("a zone that replaced another");
    assert_ne!(new["curb_zone_id"], old);
    assert_eq!(new["prev_curb_zone_ids"], json!([old]));
    let revision_2 = ms(1);
    assert_eq!(new["published_date"], revision_2);
    assert_eq!(new["start_date"], revision_2);
    assert_eq!(new["num_spaces"], 18);
    // Every other zone kept its id.
    let unchanged: BTreeSet<String> = ids(&before).into_iter().filter(|i| *i != old).collect();
    let now: BTreeSet<String> = ids(&republished)
        .into_iter()
        .filter(|i| new["curb_zone_id"] != *i.as_str())
        .collect();
    assert_eq!(unchanged, now);
    // The old zone is history: 404 unless asked for, then with its end.
    let path = format!("/cds/v1/curbs/zones/{old}");
    app.get_accepting(&path, CDS_JSON, None).problem(404);
    let retired = cds(&app, &format!("{path}?show_historic=true"), None);
    assert_eq!(retired["end_date"], revision_2);
    // Asked as of before the change, the list shows the old zone.
    let then = cds(&app, &format!("/cds/v1/curbs/zones?time={}", ms(0)), None);
    let as_set = |v: Vec<String>| v.into_iter().collect::<BTreeSet<String>>();
    assert_eq!(
        as_set(ids(then["zones"].as_array().unwrap())),
        as_set(ids(&before))
    );
}

fn parking_light(app: &TestApp) -> Value {
    let r = app.get("/v1/public/datex2/parking-light");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    r.json()["parkingPublicationLight"].clone()
}

#[test]
fn datex_parking_light_counts_sides_and_never_calls_a_stale_bay_free() {
    let app = spawn_app();
    send(
        &app,
        "standards-sensor",
        json!([
            {"event_id": "1", "type": "vacated", "observed_at": at(-2), "bay_id": "QF-N-005"},
            {"event_id": "2", "type": "occupied", "observed_at": at(-2), "bay_id": "QF-N-006"},
            // Free when last heard, 40 minutes ago: stale now.
            {"event_id": "3", "type": "vacated", "observed_at": at(-40), "bay_id": "QF-N-007"},
            {"event_id": "4", "type": "vacated", "observed_at": at(-1), "bay_id": "QF-S-001"},
        ]),
    );
    let p = parking_light(&app);
    assert_eq!(p["publicationTime"], "2026-11-27T02:00:00Z");
    assert!(p["lastUpdate"].is_string());
    let sites = p["parkingSite"].as_array().unwrap();
    assert_eq!(sites.len(), 2);
    let north = sites
        .iter()
        .find(|s| s["id"] == "qingfeng-road:north")
        .unwrap();
    let south = sites
        .iter()
        .find(|s| s["id"] == "qingfeng-road:south")
        .unwrap();
    assert_eq!(north["numberOfSpaces"], 68);
    assert_eq!(north["availableSpaces"], 1);
    assert_eq!(south["numberOfSpaces"], 68);
    assert_eq!(south["availableSpaces"], 1);
    assert_eq!(north["parkingSiteStatus"], "spacesAvailable");
    assert_eq!(north["roadName"], "庆丰路");
    assert!(north["location"]["coordinatesForDisplay"]["latitude"].is_f64());
    assert!(north["lastUpdate"].is_string());
    let spaces = p["parkingSpace"].as_array().unwrap();
    assert_eq!(spaces.len(), 136);
    let of = |id: &str| spaces.iter().find(|s| s["id"] == id).unwrap().clone();
    assert_eq!(of("QF-N-005")["availability"], "available");
    assert_eq!(of("QF-N-006")["availability"], "occupied");
    assert_eq!(of("QF-N-007")["availability"], "unknown");
    assert_eq!(of("QF-N-008")["availability"], "unknown");
    assert_eq!(
        of("QF-N-005")["parkingSiteReference"],
        "qingfeng-road:north"
    );
    // Counted over the same bays.
    for site in sites {
        let of_site: Vec<&Value> = spaces
            .iter()
            .filter(|s| s["parkingSiteReference"] == site["id"])
            .collect();
        assert_eq!(site["numberOfSpaces"], of_site.len());
        assert_eq!(
            site["availableSpaces"],
            of_site
                .iter()
                .filter(|s| s["availability"] == "available")
                .count()
        );
    }
    // Once QF-N-005 has been silent past the window, it is unknown too.
    app.clock.advance(Duration::minutes(29));
    let p = parking_light(&app);
    let north = p["parkingSite"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "qingfeng-road:north")
        .unwrap()
        .clone();
    assert_eq!(north["availableSpaces"], 0);
    assert_eq!(north["parkingSiteStatus"], "statusUnknown");
}

#[test]
fn a_road_closed_by_its_layout_is_closed_not_full() {
    let app = spawn_app();
    let mut layout = app.get("/v1/roads/qingfeng-road/layout").json();
    layout["features"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["properties"]["feature_type"] != "bay");
    if let Some(o) = layout.as_object_mut() {
        o.remove("revision");
    }
    let planner = app.token(Role::Planner);
    let r = app.put_as(
        "/v1/roads/qingfeng-road/layout",
        &planner,
        "application/json",
        None,
        &layout.to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let p = parking_light(&app);
    let sites = p["parkingSite"].as_array().unwrap();
    assert_eq!(sites.len(), 1);
    assert_eq!(sites[0]["id"], "qingfeng-road");
    assert_eq!(sites[0]["numberOfSpaces"], 0);
    assert_eq!(sites[0]["availableSpaces"], 0);
    assert_eq!(sites[0]["parkingSiteStatus"], "closed");
    assert!(p["parkingSpace"].as_array().unwrap().is_empty());
    // CDS: no bays, no zones; the old ones are history.
    assert!(zones(&app).is_empty());
}

/// The aggregates' value of one place, metric and local hour.
fn aggregate<'a>(
    lines: &[Vec<&'a str>],
    kind: &str,
    id: &str,
    metric: &str,
    hour: &str,
) -> &'a str {
    let found: Vec<&&str> = lines
        .iter()
        .filter(|r| r[0] == kind && r[1] == id && r[2] == metric && r[4] == hour)
        .map(|r| &r[5])
        .collect();
    assert_eq!(found.len(), 1, "{kind} {id} {metric} {hour}: {lines:?}");
    found[0]
}

#[test]
fn aggregates_are_hourly_per_zone_and_space_from_the_history() {
    let app = spawn_app();
    // 05:00Z (13:00 in Shanghai); the street was laid out at 02:00Z.
    app.clock.set(default_now() + Duration::hours(3));
    let n10 = space_of(&app, "QF-N-010");
    let zone = n10["curb_zone_id"].as_str().unwrap().to_owned();
    let in_zone: Vec<String> = cds(&app, "/cds/v1/curbs/spaces", None)["spaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["curb_zone_id"] == zone.as_str())
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(in_zone.len() >= 2 && in_zone.contains(&"QF-N-010".to_owned()));
    let other = in_zone.iter().find(|b| *b != "QF-N-010").unwrap().clone();
    // 03:00-04:00Z (11:00 local): every bay of the zone heard at the top
    // of the hour and at half past, so known all hour; QF-N-010 parked
    // from :10 to :40, the other from :20 to :35. 02:00-03:00Z (10:00
    // local): nothing heard.
    let mut events = Vec::new();
    for (i, bay) in in_zone.iter().enumerate() {
        for (j, m) in [60, 90].into_iter().enumerate() {
            events.push(json!({"event_id": format!("h{i}-{j}"), "type": "heartbeat",
                "observed_at": at(m), "bay_id": bay}));
        }
    }
    for (id, kind, m, bay) in [
        ("p1", "occupied", 70, "QF-N-010"),
        ("p2", "vacated", 100, "QF-N-010"),
        ("p3", "occupied", 80, other.as_str()),
        ("p4", "vacated", 95, other.as_str()),
    ] {
        events.push(json!({"event_id": id, "type": kind, "observed_at": at(m), "bay_id": bay}));
    }
    send(&app, "aggregates-sensor", json!(events));
    let t = app.token(Role::Warden);
    let path = format!(
        "/cds/v1/metrics/aggregates?start_time={}&end_time={}",
        ms(0),
        ms(120)
    );
    let r = app.get_accepting(&path, CDS_CSV, Some(&t));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.content_type, CDS_CSV);
    let text = r.body.clone();
    let lines: Vec<Vec<&str>> = text
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(
        lines[0].join(","),
        "curb_place_type,curb_place_id,metric_type,date,hour,value"
    );
    let rows = &lines[1..];
    assert!(
        rows.iter().all(|r| r.len() == 6 && r[3] == "2026-11-27"),
        "{text}"
    );
    let space = n10["curb_space_id"].as_str().unwrap();
    let n = in_zone.len() as f64;
    let round2 = |x: f64| ((x * 100.0).round() / 100.0).to_string();
    // The zone: 2 sessions, 30 + 15 occupied minutes of n known hours.
    for (metric, want) in [
        ("total_sessions", "2".to_owned()),
        ("turnover", round2(2.0 / n)),
        ("average_dwell_time", "22.5".to_owned()),
        ("occupancy_percent", round2(45.0 / (60.0 * n) * 100.0)),
    ] {
        assert_eq!(
            aggregate(rows, "zone", &zone, metric, "11"),
            want,
            "{metric}"
        );
        assert_eq!(
            aggregate(rows, "zone", &zone, metric, "10"),
            "-1",
            "{metric}"
        );
    }
    // QF-N-010 alone: 1 session of 30 minutes, half of a known hour.
    for (metric, want) in [
        ("total_sessions", "1"),
        ("turnover", "1"),
        ("average_dwell_time", "30"),
        ("occupancy_percent", "50"),
    ] {
        assert_eq!(
            aggregate(rows, "space", space, metric, "11"),
            want,
            "{metric}"
        );
        assert_eq!(
            aggregate(rows, "space", space, metric, "10"),
            "-1",
            "{metric}"
        );
    }
    // The same hour of the same bay in the road's own metrics.
    let road = app.get_as(
        &format!(
            "/v1/roads/qingfeng-road/metrics?bucket=hour&bay_id=QF-N-010&from={}&to={}",
            at(60).replace('+', "%2B"),
            at(120).replace('+', "%2B")
        ),
        &t,
    );
    assert_eq!(road.status, 200, "{}", road.body);
    let b = road.json()["buckets"][0].clone();
    assert_eq!(b["occupancy_percent"], json!(50.0), "{b}");
    assert_eq!(b["sessions"], json!(1), "{b}");

    // One metric of one space.
    let r = app.get_accepting(
        &format!(
            "{path}&metric_type=occupancy_percent&curb_place_type=space&curb_place_id={space}"
        ),
        CDS_CSV,
        Some(&t),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let date = "2026-11-27";
    assert_eq!(
        r.body,
        format!(
            "curb_place_type,curb_place_id,metric_type,date,hour,value\r\n\
             space,{space},occupancy_percent,{date},10,-1\r\n\
             space,{space},occupancy_percent,{date},11,50\r\n"
        )
    );
    // Bad queries.
    for bad in [
        format!(
            "/cds/v1/metrics/aggregates?start_time={}&end_time={}",
            ms(0) + 1,
            ms(60)
        ),
        format!(
            "/cds/v1/metrics/aggregates?start_time={}&end_time={}",
            ms(60),
            ms(0)
        ),
        format!("{path}&metric_type=dwell"),
        format!("{path}&curb_place_type=zone"),
        format!("{path}&curb_place_type=street&curb_place_id={space}"),
        format!("{path}&lat=30"),
    ] {
        app.get_accepting(&bad, CDS_CSV, Some(&t)).problem(400);
    }
}
