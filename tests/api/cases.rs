//! Cases (contract 6.4), black-box: a webhook receiver on a free port in
//! the test; a warden's report in a site's area opens a case and the site
//! receives a correctly signed POST; with the manual clock past the
//! deadline the case escalates and the enforcement party is told; a
//! receiver that fails three times gets exactly one delivery, after four
//! attempts; a service killed with a notification pending delivers it once
//! it is back; complaints answer with a tracking code and never the
//! contact.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};
use kerbside::domain::auth::{Role, generate_token};
use kerbside::store::Store;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDb, at, geodata_dir, spawn_app, wait_until, wait_until_within};
use crate::process::{Service, agent, get};

/// One POST as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    /// The request target: path and query.
    target: String,
    headers: Vec<(String, String)>,
    body: String,
    /// The status the receiver answered with.
    status: u16,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A webhook receiver on a free port: answers 500 to the first `fail`
/// requests, then 200; keeps every request.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    fail: Arc<AtomicUsize>,
    /// The body of every answer, 500 or 200.
    answer: Arc<Mutex<String>>,
}

impl Receiver {
    fn start(fail: usize) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let kept = got.clone();
        let fail = Arc::new(AtomicUsize::new(fail));
        let failing = fail.clone();
        let answer = Arc::new(Mutex::new("ok".to_owned()));
        let answering = answer.clone();
        std::thread::spawn(move || {
            let mut served = 0;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.trim_end().split_once(':') {
                        headers.push((k.trim().to_owned(), v.trim().to_owned()));
                    }
                }
                let length: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                served += 1;
                let failed = served <= failing.load(Ordering::SeqCst);
                kept.lock().unwrap().push(Received {
                    target: line.split_whitespace().nth(1).unwrap_or("").to_owned(),
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                    status: if failed { 500 } else { 200 },
                });
                let status = if failed {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let answer = answering.lock().unwrap().clone();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        Receiver {
            url,
            got,
            fail,
            answer,
        }
    }

    /// From now on, answers carry `body`.
    fn answer_with(&self, body: &str) {
        *self.answer.lock().unwrap() = body.to_owned();
    }

    /// From now on, every request is answered 200.
    fn succeed(&self) {
        self.fail.store(0, Ordering::SeqCst);
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

/// A square around (`lon`, `lat`), `half` degrees each way, as GeoJSON.
fn square(lon: f64, lat: f64, half: f64) -> Value {
    json!({"type": "Polygon", "coordinates": [[[lon - half, lat - half], [lon + half, lat - half],
        [lon + half, lat + half], [lon - half, lat + half], [lon - half, lat - half]]]})
}

fn add_party(app: &TestApp, admin: &str, body: Value) -> Value {
    let r = app.post_as("/v1/parties", admin, &body.to_string());
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

fn hmac_hex(secret: &str, body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn public_post(app: &TestApp, path: &str, body: &str) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .post(format!("{}{path}", app.base))
        .header("Content-Type", "application/json")
        .send(body)
        .unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn a_report_in_a_sites_area_is_told_signed_then_escalates_to_enforcement() {
    let app = spawn_app();
    app.wait_for_broker();
    let (admin, warden) = (app.token(Role::Admin), app.token(Role::Warden));
    let (site_hook, squad_hook) = (Receiver::start(0), Receiver::start(0));
    let (lon, lat) = crate::violations::footway_point();
    let site = add_party(
        &app,
        &admin,
        json!({"party_id": "wanda-site", "name": "万达工地 building site", "kind": "site",
               "area": square(lon, lat, 0.0003), "webhook_url": site_hook.url, "deadline_minutes": 1}),
    );
    let secret = site["webhook_secret"].as_str().unwrap().to_owned();
    add_party(
        &app,
        &admin,
        json!({"party_id": "squad", "name": "执法中队", "kind": "enforcement",
               "webhook_url": squad_hook.url, "webhook_format": "wecom"}),
    );
    let listed = app.get_as("/v1/parties", &warden).json();
    assert_eq!(listed["parties"].as_array().unwrap().len(), 2);
    assert!(
        !listed.to_string().contains(&secret),
        "the secret is shown once only"
    );

    let hh = app.mqtt("hh-case");
    hh.send_events(
        "hh-case",
        &json!({"event_id": "r-1", "type": "report", "observed_at": at(-1), "category": "obstruction",
                "position": {"lon": lon, "lat": lat}, "note": "site materials on the footway"}),
    );
    wait_until("the site to be told", || !site_hook.received().is_empty());
    let got = site_hook.received()[0].clone();
    let expected = format!("sha256={}", hmac_hex(&secret, &got.body));
    assert_eq!(got.header("X-Kerbside-Signature"), Some(expected.as_str()));
    let notice: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(notice["kind"], "obstruction");
    assert_eq!(notice["status"], "notified");
    assert_eq!(notice["road_id"], "qingfeng-road");
    assert_eq!(notice["note"], "site materials on the footway");
    assert_eq!(notice["history"][0]["action"], "opened");
    let case_id = notice["case_id"].as_str().unwrap().to_owned();

    let case = app.get_as(&format!("/v1/cases/{case_id}"), &warden).json();
    assert_eq!(case["party_id"], "wanda-site");
    assert_eq!(case["source"], "report");
    assert!(case["violation_id"].is_string());
    wait_until("the delivery recorded", || {
        app.get_as(&format!("/v1/cases/{case_id}"), &warden).json()["notifications"][0]
            ["delivered_at"]
            .is_string()
    });

    // A second report 5 m away is the same case.
    hh.send_events(
        "hh-case",
        &json!({"event_id": "r-2", "type": "report", "observed_at": at(-1), "category": "obstruction",
                "position": {"lon": lon + 0.00005, "lat": lat}}),
    );
    wait_until("the second report in the case's history", || {
        app.get_as(&format!("/v1/cases/{case_id}"), &warden).json()["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["action"] == "reported_again")
    });
    let open = app.get_as("/v1/cases", &warden).json();
    assert_eq!(open["cases"].as_array().unwrap().len(), 1, "{open}");

    // The one-minute deadline passes on the manual clock.
    app.clock.advance(Duration::minutes(2));
    wait_until("the case escalated", || {
        app.get_as(&format!("/v1/cases/{case_id}"), &warden).json()["status"] == "escalated"
    });
    wait_until("enforcement told", || !squad_hook.received().is_empty());
    let robot: Value = serde_json::from_str(&squad_hook.received()[0].body).unwrap();
    assert_eq!(robot["msgtype"], "text");
    let text = robot["text"]["content"].as_str().unwrap();
    assert!(
        text.contains(&case_id) && text.contains("escalated"),
        "{text}"
    );
    // The squad reads the whole story, in order.
    let story: Vec<usize> = ["opened", "notified", "reported_again", "overdue"]
        .iter()
        .map(|step| {
            text.find(&format!(" {step}"))
                .unwrap_or_else(|| panic!("{step} missing from {text}"))
        })
        .collect();
    assert!(story.is_sorted(), "{text}");
    let history: Vec<String> =
        app.get_as(&format!("/v1/cases/{case_id}"), &warden).json()["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["action"].as_str().unwrap().to_owned())
            .collect();
    assert_eq!(
        history,
        [
            "opened",
            "notified",
            "reported_again",
            "overdue",
            "escalated"
        ]
    );
    assert_eq!(
        app.get_as("/v1/cases?status=escalated", &warden).json()["cases"][0]["case_id"],
        json!(case_id)
    );

    // Resolved: once; the second time is a 409.
    let r = app.post_as(
        &format!("/v1/cases/{case_id}/resolve"),
        &warden,
        r#"{"note": "site cleared within the warning's deadline"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "resolved");
    let again = app.post_as(&format!("/v1/cases/{case_id}/resolve"), &warden, "");
    assert_eq!(again.status, 409);
    let metrics = app.get("/metrics").body;
    assert!(
        metrics.contains("kerbside_cases{status=\"resolved\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("kerbside_case_resolve_seconds_count 1"));
}

#[test]
fn a_receiver_that_fails_three_times_gets_one_delivery_after_four_attempts() {
    let app = spawn_app();
    let (admin, warden) = (app.token(Role::Admin), app.token(Role::Warden));
    let hook = Receiver::start(3);
    let (lon, lat) = crate::violations::footway_point();
    add_party(
        &app,
        &admin,
        json!({"party_id": "shop-1", "name": "shop", "kind": "shop",
               "area": square(lon, lat, 0.0003), "webhook_url": hook.url}),
    );
    let r = app.post_as(
        "/v1/cases",
        &warden,
        &json!({"kind": "footway_parking", "position": {"lon": lon, "lat": lat}, "note": "goods"})
            .to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let case_id = r.json()["case_id"].as_str().unwrap().to_owned();
    // Each retry falls due on the service's clock: move it past the backoff.
    for tries in 1..=3 {
        wait_until("an attempt", || hook.received().len() >= tries);
        wait_until("the failure recorded", || {
            app.get_as(&format!("/v1/cases/{case_id}"), &warden).json()["notifications"][0]["attempts"]
                == json!(tries)
        });
        app.clock.advance(Duration::minutes(5));
    }
    wait_until("delivered", || {
        app.get_as(&format!("/v1/cases/{case_id}"), &warden).json()["notifications"][0]
            ["delivered_at"]
            .is_string()
    });
    let n = &app.get_as(&format!("/v1/cases/{case_id}"), &warden).json()["notifications"];
    assert_eq!(n.as_array().unwrap().len(), 1);
    assert_eq!(n[0]["attempts"], 4);
    assert_eq!(n[0]["last_error"], Value::Null);
    assert_eq!(hook.received().len(), 4, "three failures and one delivery");
}

#[test]
fn a_complaint_gets_a_tracking_code_and_never_shows_its_contact() {
    let app = spawn_app();
    let warden = app.token(Role::Warden);
    let (lon, lat) = crate::violations::footway_point();
    let (status, filed) = public_post(
        &app,
        "/v1/public/complaints",
        &json!({"category": "footway_parking", "position": {"lon": lon, "lat": lat},
                "text": "<b>vans</b> on the footway every evening", "contact": "138 0000 0000"})
        .to_string(),
    );
    assert_eq!(status, 201, "{filed}");
    let code = filed["complaint_id"].as_str().unwrap().to_owned();
    assert!(code.len() >= 26, "at least 128 bits: {code}");
    assert_eq!(filed["status"], "received");
    let back = app.get(&format!("/v1/public/complaints/{code}"));
    assert_eq!(back.status, 200);
    assert!(!back.body.contains("138 0000 0000") && !back.body.contains("vans"));
    assert_eq!(
        app.get("/v1/public/complaints/aaaaaaaaaaaaaaaaaaaaaaaaaa")
            .status,
        404
    );

    let cases = app.get_as("/v1/cases", &warden).json();
    let case = &cases["cases"][0];
    assert_eq!(case["source"], "complaint");
    assert_eq!(case["road_id"], "qingfeng-road");
    assert_eq!(case["status"], "open", "no party answers there");
    assert_eq!(
        case["note"], "<b>vans</b> on the footway every evening",
        "stored as given"
    );
    let id = case["case_id"].as_str().unwrap();
    let r = app.post_as(
        &format!("/v1/cases/{id}/resolve"),
        &warden,
        r#"{"response": "patrols added in the evening"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let back = app.get(&format!("/v1/public/complaints/{code}")).json();
    assert_eq!(back["status"], "resolved");
    assert_eq!(back["response"], "patrols added in the evening");

    for (body, want) in [
        (
            json!({"category": "graffiti", "position": {"lon": lon, "lat": lat}, "text": "x"}),
            422,
        ),
        (
            json!({"category": "other", "position": {"lon": 500.0, "lat": lat}, "text": "x"}),
            422,
        ),
        (
            json!({"category": "other", "position": {"lon": lon, "lat": lat}, "text": "字".repeat(1001)}),
            422,
        ),
        (
            json!({"category": "other", "position": "here", "text": "x"}),
            400,
        ),
    ] {
        let (status, p) = public_post(&app, "/v1/public/complaints", &body.to_string());
        assert_eq!(status, want, "{body}: {p}");
        assert!(p["detail"].is_string(), "problem+json: {p}");
    }
}

#[test]
fn a_service_killed_with_a_notification_pending_delivers_it_after_restart() {
    let db = TestDb::new();
    let store = Store::open(&db.url).unwrap();
    let warden = generate_token();
    store
        .create_token("restart test", Role::Warden, &warden.hash, Utc::now())
        .unwrap();
    let hook = Receiver::start(usize::MAX);
    let (lon, lat) = crate::violations::footway_point();

    // The party comes in through the command line, from the same JSON.
    let party = json!({"party_id": "wanda-site", "name": "万达工地", "kind": "site",
                       "area": square(lon, lat, 0.0003), "webhook_url": hook.url});
    let mut cli = Command::new(env!("CARGO_BIN_EXE_kerbside"))
        .args(["party", "add", "--file", "-", "--database-url", &db.url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    cli.stdin
        .take()
        .unwrap()
        .write_all(party.to_string().as_bytes())
        .unwrap();
    let out = cli.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(secret.lines().count(), 1, "the secret alone on its line");

    let mut service = Service::new(&[
        "--database-url",
        &db.url,
        "--mqtt-listen",
        "127.0.0.1:0",
        "--geodata",
        geodata_dir().to_str().unwrap(),
        "--devices",
        "open",
    ]);
    service.start();
    service.wait_healthy("the service to be healthy", 30);
    let http = agent();
    let mut r = http
        .post(format!("{}/v1/cases", service.base_url))
        .header("Authorization", format!("Bearer {}", warden.secret))
        .header("Content-Type", "application/json")
        .send(
            json!({"kind": "obstruction", "position": {"lon": lon, "lat": lat},
                   "note": "site materials on the footway"})
            .to_string(),
        )
        .unwrap();
    assert_eq!(r.status(), 201);
    let case: Value = r.body_mut().read_json().unwrap();
    let case_id = case["case_id"].as_str().unwrap().to_owned();

    // The site's webhook fails; the service dies with the notice pending,
    // its failed attempt recorded and the next one not yet due.
    let case_url = format!("{}/v1/cases/{case_id}", service.base_url);
    wait_until("a failed attempt recorded", || {
        get(&http, &case_url, &warden.secret)["notifications"][0]["last_error"].is_string()
    });
    service.kill();
    let tried_before = hook.received().len();
    hook.succeed();
    service.start();
    wait_until_within("the notice delivered after the restart", 60, || {
        get(&http, &case_url, &warden.secret)["notifications"][0]["delivered_at"].is_string()
    });

    let got = hook.received();
    let delivered: Vec<&Received> = got.iter().filter(|g| g.status == 200).collect();
    assert_eq!(delivered.len(), 1, "delivered exactly once");
    assert!(
        got.len() > tried_before,
        "the delivery came after the restart"
    );
    assert_eq!(
        delivered[0].header("X-Kerbside-Signature"),
        Some(format!("sha256={}", hmac_hex(&secret, &delivered[0].body)).as_str()),
        "signed with the secret the command line printed"
    );
    let notice: Value = serde_json::from_str(&delivered[0].body).unwrap();
    assert_eq!(notice["case_id"], json!(case_id));
    let n = &get(&http, &case_url, &warden.secret)["notifications"][0];
    // An attempt in flight at the kill reached the receiver but was never
    // recorded; every other one was.
    let attempts = n["attempts"].as_u64().unwrap() as usize;
    assert!(
        attempts == got.len() || attempts + 1 == got.len(),
        "{attempts} attempts recorded for {} requests",
        got.len()
    );
}

#[test]
fn a_group_robot_that_refuses_with_an_error_code_is_tried_again() {
    let app = spawn_app();
    let (admin, warden) = (app.token(Role::Admin), app.token(Role::Warden));
    let hook = Receiver::start(0);
    // WeCom answers 200 even when it refuses a message.
    hook.answer_with(r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#);
    let (lon, lat) = crate::violations::footway_point();
    add_party(
        &app,
        &admin,
        json!({"party_id": "mall", "name": "万达广场 operator", "kind": "operator",
               "area": square(lon, lat, 0.0003), "webhook_url": hook.url, "webhook_format": "wecom"}),
    );
    let r = app.post_as(
        "/v1/cases",
        &warden,
        &json!({"kind": "obstruction", "position": {"lon": lon, "lat": lat}}).to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let case_url = format!("/v1/cases/{}", r.json()["case_id"].as_str().unwrap());
    wait_until("the refusal recorded", || {
        app.get_as(&case_url, &warden).json()["notifications"][0]["attempts"] == 1
    });
    let n = &app.get_as(&case_url, &warden).json()["notifications"][0];
    assert_eq!(
        n["delivered_at"],
        Value::Null,
        "a refusal is not a delivery"
    );
    let error = n["last_error"].as_str().unwrap();
    assert!(error.contains("93000"), "{error}");

    hook.answer_with(r#"{"errcode":0,"errmsg":"ok"}"#);
    app.clock.advance(Duration::minutes(1));
    wait_until("delivered", || {
        app.get_as(&case_url, &warden).json()["notifications"][0]["delivered_at"].is_string()
    });
    assert_eq!(
        app.get_as(&case_url, &warden).json()["notifications"][0]["attempts"],
        2
    );
    let robot: Value = serde_json::from_str(&hook.received()[1].body).unwrap();
    assert_eq!(robot["msgtype"], "text");
}

#[test]
fn staff_see_a_complaints_contact_until_it_is_erased_after_90_days() {
    let app = spawn_app();
    let warden = app.token(Role::Warden);
    let (lon, lat) = crate::violations::footway_point();
    let (status, filed) = public_post(
        &app,
        "/v1/public/complaints",
        &json!({"category": "disorderly_parking", "position": {"lon": lon, "lat": lat},
                "text": "cars at the school gate", "contact": "138 0000 0001"})
        .to_string(),
    );
    assert_eq!(status, 201, "{filed}");
    let code = filed["complaint_id"].as_str().unwrap().to_owned();
    let case_id = app.get_as("/v1/cases", &warden).json()["cases"][0]["case_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let staff_view = || app.get_as(&format!("/v1/cases/{case_id}"), &warden).json();
    let complaint = &staff_view()["complaints"][0];
    assert_eq!(complaint["complaint_id"], json!(code));
    assert_eq!(complaint["contact"], "138 0000 0001", "staff can call back");
    assert_eq!(complaint["text"], "cars at the school gate");

    // 89 days on, it is still kept; past 90, the sweep erases it.
    app.clock.advance(Duration::days(89));
    app.wait_for_two_sweeps();
    assert_eq!(staff_view()["complaints"][0]["contact"], "138 0000 0001");
    app.clock.advance(Duration::days(2));
    wait_until("the contact erased", || {
        staff_view()["complaints"][0]["contact"].is_null()
    });
    assert_eq!(
        staff_view()["complaints"][0]["text"],
        "cars at the school gate",
        "the complaint itself stays"
    );
    assert_eq!(
        app.get(&format!("/v1/public/complaints/{code}")).status,
        200,
        "its tracking code still answers"
    );
}

#[test]
fn a_webhook_that_never_answers_is_given_up_on_after_5_s_and_ingest_goes_on() {
    let app = spawn_app();
    app.wait_for_broker();
    let (admin, warden) = (app.token(Role::Admin), app.token(Role::Warden));
    // Accepts connections and never answers them.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let holding = held.clone();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            holding.lock().unwrap().push(s);
        }
    });
    let (lon, lat) = crate::violations::footway_point();
    add_party(
        &app,
        &admin,
        json!({"party_id": "slow-shop", "name": "shop", "kind": "shop",
               "area": square(lon, lat, 0.0003), "webhook_url": url}),
    );
    let r = app.post_as(
        "/v1/cases",
        &warden,
        &json!({"kind": "obstruction", "position": {"lon": lon, "lat": lat}}).to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let case_url = format!("/v1/cases/{}", r.json()["case_id"].as_str().unwrap());
    wait_until("the webhook called", || !held.lock().unwrap().is_empty());

    // While the POST hangs, a sensor's event is stored and shown.
    let sensor = app.mqtt("s-hang");
    sensor.send_events(
        "s-hang",
        &json!({"event_id": "1", "type": "occupied", "observed_at": at(-1), "bay_id": "QF-S-014"}),
    );
    wait_until("the bay occupied", || {
        app.bay_status("QF-S-014") == "occupied"
    });
    assert_eq!(
        app.get_as(&case_url, &warden).json()["notifications"][0]["attempts"],
        0,
        "ingest did not wait for the webhook"
    );
    wait_until("the hanging attempt given up", || {
        app.get_as(&case_url, &warden).json()["notifications"][0]["attempts"] == 1
    });
    let n = &app.get_as(&case_url, &warden).json()["notifications"][0];
    assert_eq!(n["last_error"], "no answer within 5 s");
    assert_eq!(n["delivered_at"], Value::Null);
}

#[test]
fn a_dingtalk_robot_that_signs_gets_a_signed_url() {
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    let app = spawn_app();
    let (admin, warden) = (app.token(Role::Admin), app.token(Role::Warden));
    let hook = Receiver::start(0);
    let (lon, lat) = crate::violations::footway_point();
    let secret = "SEC5f0c1e2d3b4a5968778695a4b3c2d1e0f";
    let party = add_party(
        &app,
        &admin,
        json!({"party_id": "shop-dd", "name": "shop", "kind": "shop",
               "area": square(lon, lat, 0.0003),
               "webhook_url": format!("{}?access_token=t0k", hook.url),
               "webhook_format": "dingtalk", "robot_secret": secret}),
    );
    assert!(
        !party.to_string().contains(secret),
        "the robot's secret is never shown"
    );
    let r = app.post_as(
        "/v1/cases",
        &warden,
        &json!({"kind": "obstruction", "position": {"lon": lon, "lat": lat}}).to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    wait_until("the robot called", || !hook.received().is_empty());
    let target = hook.received()[0].target.clone();
    let query: std::collections::HashMap<&str, &str> = target
        .split_once('?')
        .unwrap()
        .1
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    assert_eq!(query["access_token"], "t0k");
    let timestamp = query["timestamp"];
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}\n{secret}").as_bytes());
    let expected = base64::engine::general_purpose::STANDARD
        .encode(mac.finalize().into_bytes())
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    assert_eq!(query["sign"], expected);
    let listed = app.get_as("/v1/parties", &warden).json().to_string();
    assert!(
        !listed.contains(secret) && !listed.contains("t0k"),
        "{listed}"
    );
    assert!(listed.contains("access_token=***"), "{listed}");
    let r = app.post_as(
        "/v1/parties",
        &admin,
        &json!({"party_id": "shop-wc", "name": "shop", "kind": "shop",
               "area": square(lon, lat, 0.0003), "webhook_url": hook.url,
               "webhook_format": "wecom", "robot_secret": secret})
        .to_string(),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("robot_secret"), "{}", r.body);
}
