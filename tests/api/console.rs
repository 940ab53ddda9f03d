//! The console page in a real browser: headless Chromium driven over
//! WebDriver (Debian's `chromium` and `chromium-driver`). It loads `/`,
//! draws Qingfeng Road's 136 bays, and a sensor event published over MQTT
//! turns its bay red without a reload; a warden tickets from it and sees
//! the road's cases. Screenshots are kept in `target/test-artefacts/`. Under CI a missing browser fails the test;
//! elsewhere it is skipped, loudly.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{at, spawn_app};

const CHROMIUM: &str = "/usr/bin/chromium";

/// A chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    base: String,
    agent: ureq::Agent,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn start() -> Option<Driver> {
        let binary = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let (Some(binary), true) = (binary, std::path::Path::new(CHROMIUM).exists()) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI needs headless Chromium: apt-get install chromium chromium-driver"
            );
            eprintln!(
                "SKIPPED: no {CHROMIUM} or chromedriver (apt-get install chromium chromium-driver)"
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs");
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build()
                .into(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while driver
            .agent
            .get(format!("{}/status", driver.base))
            .call()
            .is_err()
        {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(driver)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let resp = match (method, body) {
            ("GET", _) => self.agent.get(url).call(),
            ("DELETE", _) => self.agent.delete(url).call(),
            (_, body) => self
                .agent
                .post(url)
                .send_json(body.unwrap_or_else(|| json!({}))),
        };
        let mut resp = resp.expect("chromedriver answers");
        resp.body_mut().read_json().expect("WebDriver JSON")
    }
}

/// One browser session.
struct Browser<'a> {
    driver: &'a Driver,
    session: String,
    _profile: tempfile::TempDir,
}

impl<'a> Browser<'a> {
    fn open(driver: &'a Driver) -> Browser<'a> {
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.path().display())]}}}});
        let v = driver.call("POST", "/session", Some(caps));
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("a WebDriver session: {v}"))
            .to_owned();
        Browser {
            driver,
            session,
            _profile: profile,
        }
    }

    fn go(&self, url: &str) {
        self.driver.call(
            "POST",
            &format!("/session/{}/url", self.session),
            Some(json!({"url": url})),
        );
    }

    /// Runs `script` in the page and gives back its value.
    fn eval(&self, script: &str) -> Value {
        self.eval_with(script, json!([]))
    }

    /// Runs `script` in the page with `args` as `arguments`.
    fn eval_with(&self, script: &str, args: Value) -> Value {
        self.driver.call(
            "POST",
            &format!("/session/{}/execute/sync", self.session),
            Some(json!({"script": script, "args": args})),
        )["value"]
            .clone()
    }

    /// Types `token` into the page's sign-in form and sends it.
    fn sign_in(&self, token: &str) {
        self.eval_with(
            "document.getElementById('token').value = arguments[0]; \
             document.getElementById('warden-form').requestSubmit(); return true",
            json!([token]),
        );
    }

    fn wait_for(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.eval(script) == json!(true) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves a PNG of the whole page to `target/test-artefacts/NAME.png`
    /// (the window made as tall as the page first).
    fn screenshot(&self, name: &str) {
        use base64::Engine;
        let height = self
            .eval("return document.documentElement.scrollHeight")
            .as_u64()
            .unwrap_or(900)
            .clamp(900, 4000);
        self.driver.call(
            "POST",
            &format!("/session/{}/window/rect", self.session),
            Some(json!({"width": 1280, "height": height + 100})),
        );
        let v = self.driver.call(
            "GET",
            &format!("/session/{}/screenshot", self.session),
            None,
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(v["value"].as_str().expect("a screenshot"))
            .expect("base64 PNG");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artefacts");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        self.driver
            .call("DELETE", &format!("/session/{}", self.session), None);
    }
}

#[test]
fn the_console_draws_the_road_and_a_bay_turns_red_without_a_reload() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let app = spawn_app();
    app.wait_for_broker();
    let page = Browser::open(&driver);
    page.go(&format!("{}/", app.base));
    page.wait_for(
        "the road's 136 bays on the map and the stream live",
        "return document.querySelectorAll('path[data-bay]').length === 136 \
         && document.getElementById('link').dataset.state === 'live' \
         && document.getElementById('counts').textContent.includes('of 136 bays')",
    );
    assert_eq!(
        page.eval("return document.getElementById('road-title').textContent"),
        json!("庆丰路 · Qingfeng Road")
    );
    let bay = "document.querySelector('path[data-bay=\"QF-S-014\"]')";
    assert_eq!(
        page.eval(&format!("return {bay}.getAttribute('fill')")),
        json!("#9a9a9a"),
        "grey while nothing is known"
    );
    page.eval("window.__loaded = performance.timeOrigin; return true");
    // No basemap: no tile layer, and nothing fetched from anywhere but
    // kerbside.
    assert_eq!(
        page.eval("return document.querySelectorAll('.leaflet-tile').length"),
        json!(0)
    );
    let elsewhere = page.eval_with(
        "return performance.getEntriesByType('resource').map(e => e.name) \
           .filter(n => !n.startsWith(arguments[0]))",
        json!([format!("{}/", app.base)]),
    );
    assert_eq!(elsewhere, json!([]), "fetched from outside kerbside");

    let sensor = app.mqtt("s-console");
    sensor.send_events(
        "s-console",
        &json!({"event_id": "1", "type": "occupied", "observed_at": at(-1), "bay_id": "QF-S-014"}),
    );
    page.wait_for(
        "QF-S-014 to turn red",
        &format!(
            "return {bay}.getAttribute('fill') === '#d33b2c' \
             && {bay}.dataset.status === 'occupied'"
        ),
    );
    // By colour and by text, in the same page (no reload).
    assert_eq!(
        page.eval("return document.querySelector('#bays li[data-bay=\"QF-S-014\"]').textContent"),
        json!("QF-S-014: occupied")
    );
    assert_eq!(
        page.eval("return window.__loaded === performance.timeOrigin"),
        json!(true),
        "the page was not reloaded"
    );
    // Its details, from the keyboard: focus and Enter.
    page.eval(&format!(
        "{bay}.focus(); {bay}.dispatchEvent(new KeyboardEvent('keydown', {{key: 'Enter'}})); return true"
    ));
    page.wait_for(
        "the bay's details",
        "const d = document.querySelector('.leaflet-popup .bay-details');          return !!d && d.textContent.includes('bay: QF-S-014') && d.textContent.includes('status: occupied')          && d.textContent.includes('limit: 120 min') && d.textContent.includes('enforced: 08:00-20:00')",
    );
    page.screenshot("console-qingfeng-road");
}

#[test]
fn the_warden_view_tickets_and_says_plainly_when_someone_else_was_first() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let app = spawn_app();
    app.wait_for_broker();
    let (warden, other) = (
        app.token(kerbside::domain::auth::Role::Warden),
        app.token(kerbside::domain::auth::Role::Warden),
    );
    let hh = app.mqtt("hh-console");
    let (lon, lat) = crate::violations::footway_point();
    hh.send_events(
        "hh-console",
        &json!([
            {"event_id": "van-1", "type": "report", "observed_at": at(-2), "category": "footway_parking",
             "position": {"lon": lon, "lat": lat}},
            {"event_id": "van-2", "type": "report", "observed_at": at(-1), "category": "obstruction",
             "position": {"lon": lon + 0.0003, "lat": lat}},
        ]),
    );
    crate::helpers::wait_until("both filed", || {
        app.get_as("/v1/roads/qingfeng-road/violations", &warden)
            .json()["violations"]
            .as_array()
            .is_some_and(|v| v.len() == 2)
    });
    let list = app
        .get_as("/v1/roads/qingfeng-road/violations", &warden)
        .json();
    let id_of = |kind: &str| {
        list["violations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["kind"] == kind)
            .unwrap()["violation_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (mine, theirs) = (id_of("footway_parking"), id_of("obstruction"));

    let page = Browser::open(&driver);
    page.go(&format!("{}/", app.base));
    page.wait_for(
        "the road drawn",
        "return document.querySelectorAll('path[data-bay]').length === 136",
    );
    page.sign_in(&warden);
    page.wait_for(
        "the two open violations listed, and their markers",
        "return document.querySelectorAll('#violations li').length === 2 \
         && document.querySelectorAll('path.leaflet-interactive[stroke=\"#a31d12\"]').length === 2",
    );

    // Ticketed from the page, with a note.
    let item =
        |id: &str| format!("document.querySelector('#violations li[data-violation=\"{id}\"]')");
    page.eval(&format!(
        "{m}.querySelector('input').value = 'van on the footway, plate photographed'; \
         {m}.querySelector('button[data-action=\"ticket\"]').click(); return true",
        m = item(&mine)
    ));
    page.wait_for(
        "the page to say it is ticketed",
        &format!(
            "return document.getElementById('warden-message').textContent === '{mine}: ticketed'"
        ),
    );
    let v = app
        .get_as(&format!("/v1/violations/{mine}"), &warden)
        .json();
    assert_eq!(v["status"], "ticketed");
    let last = v["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["status"].as_str(), last["note"].as_str()),
        (
            Some("ticketed"),
            Some("van on the footway, plate photographed")
        )
    );

    page.wait_for(
        "the list to drop the ticketed one",
        &format!(
            "return document.querySelectorAll('#violations li').length === 1 && !!{}",
            item(&theirs)
        ),
    );
    // Another warden tickets the other one; the page shows it, and a
    // dismissal from the page then gets the 409, said plainly.
    let r = app.post_as(&format!("/v1/violations/{theirs}/ticket"), &other, "");
    assert_eq!(r.status, 200);
    page.wait_for(
        "the other warden's ticket to show in the page",
        &format!("return {}.dataset.status === 'ticketed'", item(&theirs)),
    );
    page.eval(&format!(
        "{}.querySelector('button[data-action=\"dismiss\"]').click(); return true",
        item(&theirs)
    ));
    page.wait_for(
        "the 409 to be shown",
        "const m = document.getElementById('warden-message'); \
         return m.dataset.kind === 'error' && m.textContent.includes('already handled by someone else') \
         && m.textContent.includes('already ticketed')",
    );
    assert_eq!(
        app.get_as(&format!("/v1/violations/{theirs}"), &warden)
            .json()["status"],
        "ticketed",
        "the dismissal changed nothing"
    );
    page.screenshot("console-warden");
}

#[test]
fn a_warden_sees_open_cases_and_violations_on_one_map() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let app = spawn_app();
    app.wait_for_broker();
    let warden = app.token(kerbside::domain::auth::Role::Warden);
    let (lon, lat) = crate::violations::footway_point();
    // A van on the footway: a violation, and a case of its own.
    app.mqtt("hh-cases").send_events(
        "hh-cases",
        &json!({"event_id": "van-1", "type": "report", "observed_at": at(-2),
                "category": "footway_parking", "position": {"lon": lon, "lat": lat}}),
    );
    // Goods piled on the footway, 30 m east: a case alone.
    let r = app.post_as(
        "/v1/cases",
        &warden,
        &json!({"kind": "obstruction", "position": {"lon": lon + 0.0003, "lat": lat},
                "note": "crates of fruit on the footway"})
        .to_string(),
    );
    assert_eq!(r.status, 201, "{:?}", r.json());
    let goods = r.json()["case_id"].as_str().unwrap().to_owned();
    crate::helpers::wait_until("both cases open", || {
        app.get_as("/v1/cases?road_id=qingfeng-road", &warden)
            .json()["cases"]
            .as_array()
            .is_some_and(|c| c.len() == 2)
    });

    let page = Browser::open(&driver);
    page.go(&format!("{}/", app.base));
    page.wait_for(
        "the road drawn",
        "return document.querySelectorAll('path[data-bay]').length === 136",
    );
    assert_eq!(
        page.eval("return document.querySelectorAll('.case-marker').length"),
        json!(0),
        "no cases without a token"
    );
    page.sign_in(&warden);
    page.wait_for(
        "two case markers and one violation circle",
        "return document.querySelectorAll('.case-marker').length === 2 \
         && document.querySelectorAll('#cases li').length === 2 \
         && document.querySelectorAll('path.leaflet-interactive[stroke=\"#a31d12\"]').length === 1",
    );
    assert_eq!(
        page.eval("return document.getElementById('cases-message').textContent"),
        json!("2 open cases")
    );
    let item = page.eval(&format!(
        "return document.querySelector('#cases li[data-case=\"{goods}\"]').textContent"
    ));
    assert!(
        item.as_str()
            .unwrap()
            .starts_with("case: obstruction, open"),
        "{item}"
    );

    // Its details from the keyboard: focus the marker, Enter.
    let marker = format!("document.querySelector('.case-marker[data-case=\"{goods}\"]')");
    page.eval(&format!(
        "{marker}.focus(); {marker}.dispatchEvent(new KeyboardEvent('keydown', {{key: 'Enter'}})); return true"
    ));
    page.wait_for(
        "the case's details",
        &format!(
            "const d = document.querySelector('.leaflet-popup .case-details[data-case=\"{goods}\"]'); \
             return !!d && d.textContent.includes('status: open') && d.textContent.includes('kind: obstruction') \
             && d.textContent.includes('party: none answers for this place') && d.textContent.includes('due: ') \
             && d.textContent.includes('note: crates of fruit on the footway')"
        ),
    );
    page.eval("document.querySelector('.leaflet-popup .history-link').click(); return true");
    page.wait_for(
        "its history",
        "const h = document.querySelector('.leaflet-popup .case-history'); \
         return !!h && h.textContent.includes('opened → open')",
    );
    page.screenshot("console-cases");
}
