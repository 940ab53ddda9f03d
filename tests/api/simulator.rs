//! The street in a box against the real service: hours of Qingfeng Road,
//! compressed, over the embedded broker, checked against the truth; and
//! the station's first case, from a report to its resolution.

use chrono::{DateTime, TimeZone, Utc};
use kerbside::domain::auth::Role;
use kerbside_sim::case::{CaseOptions, replay};
use kerbside_sim::check::{CheckOptions, Report, check};
use kerbside_sim::map::StreetPlan;
use kerbside_sim::plan::{Faults, Params};
use kerbside_sim::register::Registrar;
use kerbside_sim::truth;

use crate::helpers::{TestApp, geodata_dir, spawn_app, spawn_app_with, wait_until};

/// Saturday 20:00 in Jiaxing: the window is a busy weekend afternoon and
/// evening, inside the enforced hours.
fn saturday_evening() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
}

/// Runs `hours` of the street ending at the service's "now" against `app`,
/// publishing 3,600 times faster than real time (registering its devices
/// first when given an admin's token), and checks it.
fn simulate_and_check(
    app: &TestApp,
    hours: f64,
    seed: u64,
    faults: Faults,
    admin: Option<String>,
) -> Report {
    let end = saturday_evening();
    app.clock.set(end);
    app.wait_for_broker();
    let street = StreetPlan::load(&geodata_dir()).expect("the shipped geodata");
    let registrar = admin.map(|token| Registrar {
        api: app.base.clone(),
        token,
    });
    let mut params = Params::new(end, hours, seed);
    params.faults = faults;
    let dir = tempfile::tempdir().expect("temp dir");
    let truth_file = dir.path().join("truth.jsonl");
    let url = format!("mqtt://{}:{}", app.broker.0, app.broker.1);
    kerbside_sim::run(
        &street,
        &params,
        &url,
        registrar.as_ref(),
        3_600.0,
        &truth_file,
        |_, _| {},
    )
    .expect("the simulation runs");
    let truth = truth::read(&truth_file).expect("the truth reads back");
    let report = check(
        &truth,
        &CheckOptions {
            api: app.base.clone(),
            token: app.token(Role::Warden),
            tolerance: chrono::Duration::seconds(1),
            wait: std::time::Duration::from_secs(120),
        },
    )
    .expect("the check runs");
    println!("{}", report.summary());
    report
}

#[test]
fn six_hours_with_duplicates_and_reordering_are_reported_exactly() {
    let app = spawn_app();
    let report = simulate_and_check(
        &app,
        6.0,
        42,
        Faults {
            duplicates: 0.05,
            reorder: 0.05,
            ..Faults::default()
        },
        None,
    );
    assert_eq!(report.bays_compared, 136);
    assert_eq!(report.end_state_agreement, Some(1.0));
    assert!(report.truth_sessions > 300, "{}", report.truth_sessions);
    assert!(report.session_recall.unwrap() >= 0.99, "{report:?}");
    assert!(report.truth_overstays >= 10, "{}", report.truth_overstays);
    assert_eq!(report.overstay_recall, Some(1.0), "{report:?}");
    assert_eq!(report.overstay_precision, Some(1.0), "{report:?}");
    assert_eq!(report.outside_bay_recall, Some(1.0), "{report:?}");
    assert!(report.full_agreement());
    // The copies arrived, and changed nothing.
    assert!(app.metric("kerbside_events_duplicate_total") > 100.0);
}

#[test]
fn a_hard_day_loses_nothing_and_invents_nothing() {
    let app = spawn_app();
    let report = simulate_and_check(
        &app,
        6.0,
        7,
        Faults {
            duplicates: 0.05,
            reorder: 0.05,
            offline_batches: 0.2,
            stale_sensors: 0.05,
            malformed: 0.01,
        },
        None,
    );
    // Every bay whose sensor lives is right; a silent one is not claimed.
    assert_eq!(report.end_state_agreement, Some(1.0), "{report:?}");
    assert!(report.silent_bays > 0);
    assert!(report.session_recall.unwrap() >= 0.99, "{report:?}");
    assert_eq!(report.session_precision, Some(1.0), "{report:?}");
    // Offline batches arrive late and still count; no overstay is made up
    // from a sensor that went quiet.
    assert_eq!(report.overstay_precision, Some(1.0), "{report:?}");
    assert_eq!(report.outside_bay_recall, Some(1.0), "{report:?}");
    assert!(app.metric("kerbside_events_rejected_total") > 10.0);
}

#[test]
fn a_street_of_registered_devices_is_reported_exactly() {
    let app = spawn_app_with(|s| s.devices = kerbside::devices::DeviceMode::Registered);
    let admin = app.token(Role::Admin);
    let report = simulate_and_check(
        &app,
        2.0,
        11,
        Faults {
            duplicates: 0.05,
            reorder: 0.05,
            ..Faults::default()
        },
        Some(admin.clone()),
    );
    assert_eq!(report.bays_compared, 136);
    assert_eq!(report.end_state_agreement, Some(1.0), "{report:?}");
    assert!(report.full_agreement(), "{report:?}");
    // Every event came from a device the service knew.
    assert_eq!(
        app.metric("kerbside_events_rejected_by_reason_total{reason=\"unknown_device\"}"),
        0.0
    );
    assert!(app.metric("kerbside_events_accepted_total") > 500.0);
    // The street's 136 sensors and 12 handhelds, each registered by the run.
    let devices = app.get_as("/v1/devices", &admin).json();
    let devices = devices["devices"].as_array().expect("a device list");
    let kind = |k: &str| devices.iter().filter(|d| d["kind"] == k).count();
    assert_eq!((kind("sensor"), kind("handheld")), (136, 12));
}

#[test]
fn the_stations_first_case_is_replayed_from_report_to_resolution() {
    use kerbside::clock::Clock;
    let app = spawn_app_with(|s| s.devices = kerbside::devices::DeviceMode::Registered);
    app.wait_for_broker();
    let options = CaseOptions {
        mqtt_url: format!("mqtt://{}:{}", app.broker.0, app.broker.1),
        registrar: Registrar {
            api: app.base.clone(),
            token: app.token(Role::Admin),
        },
        receiver: "127.0.0.1:0".into(),
        deadline_minutes: 120,
        observed_at: app.clock.now(),
        tag: "first".into(),
        patience: std::time::Duration::from_secs(30),
    };
    let street = StreetPlan::load(&geodata_dir()).unwrap();
    let steps = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let heard = steps.clone();
    let scenario = std::thread::spawn(move || {
        replay(&street, &options, |s| {
            heard.lock().unwrap().push(s.to_owned())
        })
    });
    // The two hours pass on the service's clock once the site has been told.
    wait_until("the site told", || {
        steps
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.starts_with("the site was told"))
    });
    app.clock.advance(chrono::Duration::minutes(121));
    let report = scenario.join().unwrap().expect("the case replayed");
    assert_eq!(report.road_id.as_deref(), Some("qingfeng-road"));
    assert_eq!(
        report.history,
        ["opened", "notified", "overdue", "escalated", "resolved"]
    );
    assert!(report.squad_message.contains(&report.case_id));
    assert!(
        report.delivered >= 3,
        "opened, escalated and resolved told: {report:?}"
    );
    let case = app
        .get_as(
            &format!("/v1/cases/{}", report.case_id),
            &app.token(Role::Warden),
        )
        .json();
    assert_eq!(case["status"], "resolved");
    assert_eq!(case["source"], "report");
    assert_eq!(case["party_id"], "wanda-site.first");
}
