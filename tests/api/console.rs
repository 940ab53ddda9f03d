//! The console page in a real browser: headless Chromium driven over
//! WebDriver (Debian's `chromium` and `chromium-driver`). It loads `/`,
//! draws Qingfeng Road's 136 bays, and a sensor event published over MQTT
//! turns its bay red without a reload; a warden tickets from it and sees
//! the road's cases, kept current by the stream; a wrong or expired token
//! is said plainly, and each role sees only its sections; a planner checks
//! a layout file (its errors drawn at their features, or its diff), and a
//! revision published meanwhile is drawn and the stale check explained; a
//! basemap is drawn only when `--tile-url` names one. Screenshots are kept
//! in `target/test-artefacts/`. Under CI a missing browser fails the test;
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
    // No basemap was configured: no tile layer, and nothing fetched from
    // anywhere but kerbside.
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
    // The road list's occupancy follows too.
    page.wait_for(
        "the road list to count the car",
        "return document.querySelector('#roads button[data-road=\"qingfeng-road\"]')\
         .textContent.endsWith('— 1/136 occupied')",
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

/// Qingfeng Road's shipped layout, as GeoJSON to change.
fn qingfeng_layout() -> Value {
    let path = crate::helpers::geodata_dir().join("qingfeng-road.geojson");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The feature of `layout` whose id is `id`.
fn feature<'a>(layout: &'a mut Value, id: &str) -> &'a mut Value {
    layout["features"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no feature {id}"))
}

/// Chooses `layout` as the file `name` in the planner's file input.
const CHOOSE_FILE: &str = "const dt = new DataTransfer(); \
    dt.items.add(new File([arguments[0]], arguments[1], {type: 'application/geo+json'})); \
    const input = document.getElementById('layout-file'); input.files = dt.files; \
    input.dispatchEvent(new Event('change')); return true";

/// Drops `layout` as the file `name` on the map.
const DROP_ON_MAP: &str = "const dt = new DataTransfer(); \
    dt.items.add(new File([arguments[0]], arguments[1], {type: 'application/geo+json'})); \
    const map = document.getElementById('map'); \
    map.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true})); \
    map.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true})); \
    return true";

fn current_revision(app: &crate::helpers::TestApp) -> i64 {
    app.get("/v1/roads/qingfeng-road/layout").json()["revision"]
        .as_i64()
        .unwrap()
}

#[test]
fn the_planner_sees_each_validation_error_drawn_at_its_feature() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let app = spawn_app();
    let planner = app.token(kerbside::domain::auth::Role::Planner);
    let before = current_revision(&app);
    // A bay drawn over a planter: the planter's footprint, too small for a
    // bay and meeting the planter itself.
    let mut layout = qingfeng_layout();
    let planter = feature(&mut layout, "QF-P-001")["geometry"].clone();
    feature(&mut layout, "QF-S-014")["geometry"] = planter;

    let page = Browser::open(&driver);
    page.go(&format!("{}/", app.base));
    page.wait_for(
        "the road drawn",
        "return document.querySelectorAll('path[data-bay]').length === 136",
    );
    page.sign_in(&planner);
    page.wait_for(
        "the planner's view",
        "return !document.getElementById('planner').hidden \
         && document.querySelectorAll('#revisions li').length === 1",
    );
    page.eval_with(
        CHOOSE_FILE,
        json!([layout.to_string(), "over-a-planter.geojson"]),
    );
    page.wait_for(
        "the dry run's errors listed",
        "return !!document.querySelector('#layout-errors li[data-feature=\"QF-S-014\"][data-code=\"barrier_conflict\"]')",
    );
    let listed = page.eval(
        "return [...document.querySelectorAll('#layout-errors li')].map(li => li.textContent)",
    );
    let listed: Vec<String> = serde_json::from_value(listed).unwrap();
    assert!(
        listed
            .iter()
            .any(|t| t.starts_with("QF-S-014: barrier_conflict: meets planter QF-P-001")),
        "{listed:?}"
    );
    assert!(
        listed
            .iter()
            .any(|t| t.starts_with("QF-S-014: bay_size: a standard bay measures")),
        "{listed:?}"
    );
    assert!(
        page.eval("return document.getElementById('planner-message').textContent")
            .as_str()
            .unwrap()
            .contains("2 problems"),
    );

    // On the map: the feature drawn in the problem style, its codes on its
    // element, and its label (code and message) beside it.
    let at_feature = page.eval(
        "const p = document.querySelector('path[data-feature=\"QF-S-014\"][data-error-codes~=\"barrier_conflict\"]'); \
         const t = [...document.querySelectorAll('.leaflet-tooltip.problem-label')] \
           .find(t => t.textContent.startsWith('QF-S-014: ')); \
         if (!p || !t) return 'missing: ' + !!p + ' ' + !!t; \
         return { stroke: p.getAttribute('stroke'), label: t.textContent }",
    );
    assert_eq!(at_feature["stroke"], "#c0128a", "{at_feature}");
    let label = at_feature["label"].as_str().unwrap();
    assert!(
        label.contains("barrier_conflict: meets planter QF-P-001") && label.contains("bay_size: "),
        "{label}"
    );
    // Once the map has stopped moving, the label sits right above it.
    page.wait_for(
        "the label right above its feature",
        "const p = document.querySelector('path[data-feature=\"QF-S-014\"]'); \
         const t = [...document.querySelectorAll('.leaflet-tooltip.problem-label')] \
           .find(t => t.textContent.startsWith('QF-S-014: ')); \
         const a = p.getBoundingClientRect(), b = t.getBoundingClientRect(); \
         const dx = Math.abs((a.left + a.right) / 2 - (b.left + b.right) / 2), gap = a.top - b.bottom; \
         return dx < 10 && gap >= 0 && gap < 40",
    );
    assert_eq!(
        page.eval("return document.getElementById('publish').disabled"),
        json!(true),
        "nothing to publish while the layout has problems"
    );
    page.screenshot("console-planner-errors");
    assert_eq!(current_revision(&app), before, "a dry run saves nothing");

    // A file that is not GeoJSON at all: its one problem is the layout's.
    page.eval_with(CHOOSE_FILE, json!(["<kml></kml>", "road.kml"]));
    page.wait_for(
        "the malformed file's problem",
        "const li = document.querySelectorAll('#layout-errors li'); \
         return li.length === 1 && li[0].dataset.code === 'malformed' \
         && li[0].textContent.startsWith('the layout: malformed: the body is not JSON') \
         && document.querySelectorAll('path[data-error-codes]').length === 0",
    );
}

#[test]
fn the_planner_sees_the_diff_and_a_stale_publish_is_explained() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let app = spawn_app();
    let (planner, other) = (
        app.token(kerbside::domain::auth::Role::Planner),
        app.token(kerbside::domain::auth::Role::Planner),
    );
    let loaded = current_revision(&app);
    // QF-S-001 renumbered (removed, and added as QF-S-901), QF-S-014's limit shortened.
    let mut layout = qingfeng_layout();
    let bay = feature(&mut layout, "QF-S-001");
    bay["id"] = json!("QF-S-901");
    bay["properties"]["bay_id"] = json!("QF-S-901");
    feature(&mut layout, "QF-S-014")["properties"]["max_stay_minutes"] = json!(60);

    let page = Browser::open(&driver);
    page.go(&format!("{}/", app.base));
    page.wait_for(
        "the road drawn",
        "return document.querySelectorAll('path[data-bay]').length === 136",
    );
    page.sign_in(&planner);
    page.wait_for(
        "the planner's view",
        "return !document.getElementById('planner').hidden",
    );
    page.eval_with(
        DROP_ON_MAP,
        json!([layout.to_string(), "renumbered.geojson"]),
    );
    page.wait_for(
        "the diff drawn",
        "return document.querySelectorAll('path[data-change]').length === 3",
    );
    let styles = page.eval(
        "return Object.fromEntries([...document.querySelectorAll('path[data-change]')] \
           .map(p => [p.dataset.feature, [p.dataset.change, p.getAttribute('stroke'), p.getAttribute('stroke-dasharray')]]))",
    );
    assert_eq!(
        styles,
        json!({
            "QF-S-901": ["added", "#1f5fbf", null],
            "QF-S-001": ["removed", "#7a1010", "4 3"],
            "QF-S-014": ["changed", "#d98a00", "1 4"],
        }),
        "three changes, three styles"
    );
    let items = page.eval(
        "return [...document.querySelectorAll('#diff li[data-change]')].map(li => li.textContent)",
    );
    assert_eq!(
        items,
        json!(["QF-S-901: added", "QF-S-014: changed", "QF-S-001: removed"])
    );
    // The legend says it in words, not by colour alone.
    let legend = page.eval("return document.getElementById('diff-legend').innerText");
    for word in ["added: ", "removed: ", "changed: ", "problem: "] {
        assert!(legend.as_str().unwrap().contains(word), "{legend}");
    }
    page.wait_for(
        "publishing offered",
        "return !document.getElementById('publish').disabled",
    );
    page.screenshot("console-planner-diff");

    // Meanwhile another planner publishes.
    let mut theirs = qingfeng_layout();
    feature(&mut theirs, "QF-S-020")["properties"]["max_stay_minutes"] = json!(90);
    let r = app.put_as(
        "/v1/roads/qingfeng-road/layout",
        &other,
        "application/geo+json",
        Some(&format!("\"{loaded}\"")),
        &theirs.to_string(),
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
    let meanwhile = loaded + 1;
    assert_eq!(current_revision(&app), meanwhile);

    // The stream tells the page at once: their revision is drawn, and the
    // checked layout may no longer be published as it is.
    page.wait_for(
        "the new revision drawn and the dry run said stale",
        &format!(
            "const m = document.getElementById('planner-message').textContent; \
             return document.getElementById('planner-message').dataset.kind === 'error' \
             && document.getElementById('revision').textContent === '· layout revision {meanwhile}' \
             && m.startsWith('Revision {meanwhile} arrived while your layout waited: it was checked against revision {loaded}') \
             && m.includes('published revision {meanwhile}') \
             && m.includes('after this page loaded revision {loaded}') \
             && m.includes('Reload the road, redo your changes') \
             && document.getElementById('publish').disabled \
             && !document.getElementById('reload').hidden"
        ),
    );
    page.screenshot("console-planner-stale");
    assert_eq!(
        current_revision(&app),
        meanwhile,
        "the stale publish changed nothing"
    );

    // Reloaded and redone, it is published on top of theirs.
    page.eval("document.getElementById('reload').click(); return true");
    page.wait_for(
        "the road reloaded",
        &format!(
            "return document.getElementById('revision').textContent === '· layout revision {meanwhile}' \
             && document.querySelectorAll('#revisions li').length === 2"
        ),
    );
    feature(&mut layout, "QF-S-020")["properties"]["max_stay_minutes"] = json!(90);
    page.eval_with(
        CHOOSE_FILE,
        json!([layout.to_string(), "renumbered.geojson"]),
    );
    page.wait_for(
        "publishing offered again",
        "return !document.getElementById('publish').disabled",
    );
    page.eval("document.getElementById('publish').click(); return true");
    let published = meanwhile + 1;
    page.wait_for(
        "the publish",
        &format!(
            "return document.getElementById('planner-message').textContent \
               === 'Published revision {published} (drawn from revision {meanwhile}).' \
             && document.querySelectorAll('path[data-bay=\"QF-S-901\"]').length === 1 \
             && document.querySelectorAll('#revisions li').length === 3"
        ),
    );
    assert_eq!(current_revision(&app), published);

    // A past revision drawn on request, over the current one.
    page.eval(&format!(
        "document.querySelector('button[data-draw=\"{loaded}\"]').click(); return true"
    ));
    page.wait_for(
        "the first revision drawn",
        &format!(
            "return document.querySelectorAll('path[data-revision=\"{loaded}\"]').length === 136 + 90 + 1 \
             && document.getElementById('revision-drawn').textContent.startsWith('revision {loaded} drawn')"
        ),
    );
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
    // A wrong token is said plainly, and shows nothing.
    page.sign_in("kbs_not-a-token");
    page.wait_for(
        "the wrong token said",
        "const m = document.getElementById('signed-in'); \
         return m.dataset.kind === 'error' \
         && m.textContent.startsWith('Not signed in: the token is not valid.')",
    );
    assert_eq!(page.eval(SECTIONS_SHOWN), json!([]));
    page.sign_in(&warden);
    page.wait_for(
        "whose token it is",
        "return document.getElementById('signed-in').textContent === 'signed in as test warden (warden)'",
    );
    // A warden's token: the warden's actions and the cases, no planner's view.
    assert_eq!(
        page.eval(SECTIONS_SHOWN),
        json!(["warden", "cases-section"])
    );
    assert_eq!(
        page.eval("return document.getElementById('layout-file').offsetParent === null"),
        json!(true),
        "the planner's file input is out of reach"
    );
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
    page.eval("window.__loaded = performance.timeOrigin; return true");

    // Resolved at another desk: the stream takes its marker off the map
    // (the page no longer polls).
    let r = app.post_as(
        &format!("/v1/cases/{goods}/resolve"),
        &warden,
        &json!({"note": "cleared by the shop"}).to_string(),
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
    page.wait_for(
        "the resolved case gone",
        &format!(
            "return document.querySelectorAll('.case-marker').length === 1 \
             && !document.querySelector('#cases li[data-case=\"{goods}\"]') \
             && document.getElementById('cases-message').textContent === '1 open case'"
        ),
    );
    // A complaint's kind of text, opened elsewhere: drawn from the stream,
    // and its note shown as the text it is.
    let note = "<img src=x onerror=\"window.__pwned=1\"> 水果摊占道 & <b>more</b>";
    let r = app.post_as(
        "/v1/cases",
        &warden,
        &json!({"kind": "obstruction", "position": {"lon": lon + 0.0006, "lat": lat}, "note": note})
            .to_string(),
    );
    assert_eq!(r.status, 201, "{:?}", r.json());
    let stall = r.json()["case_id"].as_str().unwrap().to_owned();
    let marker = format!("document.querySelector('.case-marker[data-case=\"{stall}\"]')");
    page.wait_for(
        "the new case drawn",
        &format!("return !!{marker} && document.querySelectorAll('#cases li').length === 2"),
    );
    page.eval(&format!(
        "{marker}.focus(); {marker}.dispatchEvent(new KeyboardEvent('keydown', {{key: 'Enter'}})); return true"
    ));
    page.wait_for(
        "its details",
        &format!(
            "return !!document.querySelector('.leaflet-popup .case-details[data-case=\"{stall}\"]')"
        ),
    );
    let shown = page.eval(&format!(
        "const d = document.querySelector('.leaflet-popup .case-details[data-case=\"{stall}\"]'); \
         return [d.textContent, d.querySelectorAll('img, b').length, window.__pwned === undefined]"
    ));
    assert!(
        shown[0]
            .as_str()
            .is_some_and(|t| t.contains(&format!("note: {note}"))),
        "{shown}"
    );
    assert_eq!(shown[1], json!(0), "the note was taken for HTML");
    assert_eq!(shown[2], json!(true), "the note's script ran");
    assert_eq!(
        page.eval("return window.__loaded === performance.timeOrigin"),
        json!(true),
        "the page was not reloaded"
    );
    page.screenshot("console-cases-live");
}

/// The ids of the role-dependent sections the page shows.
const SECTIONS_SHOWN: &str = "return ['warden', 'cases-section', 'planner'] \
    .filter(id => !document.getElementById(id).hidden)";

#[test]
fn a_revision_published_through_the_api_is_drawn_without_a_reload() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let app = spawn_app();
    app.wait_for_broker();
    let planner = app.token(kerbside::domain::auth::Role::Planner);
    let loaded = current_revision(&app);
    let page = Browser::open(&driver);
    page.go(&format!("{}/", app.base));
    page.wait_for(
        "the road drawn and the stream live",
        "return document.querySelectorAll('path[data-bay]').length === 136 \
         && document.getElementById('link').dataset.state === 'live'",
    );
    let sensor = app.mqtt("s-console-layout");
    sensor.send_events(
        "s-console-layout",
        &json!({"event_id": "1", "type": "occupied", "observed_at": at(-1), "bay_id": "QF-S-014"}),
    );
    let red =
        "document.querySelector('path[data-bay=\"QF-S-014\"]')?.getAttribute('fill') === '#d33b2c'";
    page.wait_for("QF-S-014 red", &format!("return {red}"));
    page.eval("window.__loaded = performance.timeOrigin; return true");

    // QF-S-001 renumbered QF-S-901, published by a planner elsewhere.
    let mut layout = qingfeng_layout();
    let bay = feature(&mut layout, "QF-S-001");
    bay["id"] = json!("QF-S-901");
    bay["properties"]["bay_id"] = json!("QF-S-901");
    let r = app.put_as(
        "/v1/roads/qingfeng-road/layout",
        &planner,
        "application/geo+json",
        Some(&format!("\"{loaded}\"")),
        &layout.to_string(),
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
    page.wait_for(
        "the new revision drawn, its bays' statuses kept",
        &format!(
            "return document.getElementById('revision').textContent === '· layout revision {}' \
             && document.querySelectorAll('path[data-bay=\"QF-S-901\"]').length === 1 \
             && document.querySelectorAll('path[data-bay=\"QF-S-001\"]').length === 0 \
             && document.querySelectorAll('path[data-bay]').length === 136 \
             && document.querySelector('#bays li[data-bay=\"QF-S-901\"]') !== null \
             && {red}",
            loaded + 1
        ),
    );
    assert_eq!(
        page.eval("return window.__loaded === performance.timeOrigin"),
        json!(true),
        "the page was not reloaded"
    );
    page.screenshot("console-new-revision");

    // A token that has expired is said to have, and shows nothing.
    let t = kerbside::domain::auth::generate_token();
    let until = crate::helpers::default_now() + chrono::Duration::minutes(10);
    app.store
        .create_token_expiring(
            "Zhou Min",
            kerbside::domain::auth::Role::Planner,
            &t.hash,
            crate::helpers::default_now(),
            Some(until),
        )
        .unwrap();
    page.sign_in(&t.secret);
    page.wait_for(
        "signed in until the expiry",
        "return document.getElementById('signed-in').textContent.startsWith('signed in as Zhou Min (planner); the token expires ') \
         && !document.getElementById('planner').hidden && document.getElementById('warden').hidden",
    );
    page.wait_for(
        "the stream open with the token",
        "return document.getElementById('link').dataset.state === 'live'",
    );
    // Expired while the page is open: the next time the stream is opened
    // (the road chosen again) it is refused, and the page says why and
    // listens without the token.
    app.clock.advance(chrono::Duration::minutes(10));
    page.eval("document.querySelector('#roads button').click(); return true");
    page.wait_for(
        "the expiry said, and the road live again",
        "const m = document.getElementById('signed-in'); \
         return m.dataset.kind === 'error' \
         && m.textContent.startsWith('Not signed in: the token expired at 2026-11-27T02:10:00Z.') \
         && document.getElementById('planner').hidden \
         && document.getElementById('link').dataset.state === 'live'",
    );
    assert_eq!(
        page.eval("return sessionStorage.getItem('kerbside-token')"),
        Value::Null,
        "the expired token is forgotten"
    );
    // Typed in again, it is refused at once.
    page.eval("document.getElementById('signed-in').textContent = ''; return true");
    page.sign_in(&t.secret);
    page.wait_for(
        "the expiry said again",
        "return document.getElementById('signed-in').textContent \
           .startsWith('Not signed in: the token expired at 2026-11-27T02:10:00Z.')",
    );
}

/// A tile server on a free port that answers every request with a blank
/// PNG and keeps the paths asked for, until dropped.
struct TileServer {
    url: String,
    paths: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl TileServer {
    fn start() -> TileServer {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!(
            "http://127.0.0.1:{}/tiles/{{z}}/{{x}}/{{y}}.png",
            listener.local_addr().unwrap().port()
        );
        let paths = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen, done) = (paths.clone(), stop.clone());
        std::thread::spawn(move || {
            use base64::Engine;
            let png = base64::engine::general_purpose::STANDARD
                .decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
                .unwrap();
            while !done.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head);
                if let Some(path) = line.split_whitespace().nth(1) {
                    seen.lock().unwrap().push(path.to_owned());
                }
                let _ = conn.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        png.len()
                    )
                    .as_bytes(),
                );
                let _ = conn.write_all(&png);
            }
        });
        TileServer { url, paths, stop }
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

impl Drop for TileServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn with_tile_url_the_page_draws_that_basemap_beneath_the_road() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let tiles = TileServer::start();
    let url = tiles.url.clone();
    let app = crate::helpers::spawn_app_with(|s| {
        s.tile_url = Some(url);
        s.tile_attribution = Some("© test tiles <b>not bold</b>".into());
    });
    assert_eq!(
        app.get("/console/config").json(),
        json!({"tile_url": tiles.url, "tile_attribution": "© test tiles <b>not bold</b>"})
    );
    let page = Browser::open(&driver);
    page.go(&format!("{}/", app.base));
    page.wait_for(
        "the road drawn over loaded tiles",
        "return document.querySelectorAll('path[data-bay]').length === 136 \
         && document.querySelectorAll('.leaflet-tile-loaded').length > 0",
    );
    let asked = tiles.paths();
    assert!(!asked.is_empty());
    for p in &asked {
        let parts: Vec<&str> = p
            .strip_prefix("/tiles/")
            .and_then(|p| p.strip_suffix(".png"))
            .unwrap_or_else(|| panic!("{p} is not a tile"))
            .split('/')
            .collect();
        assert_eq!(parts.len(), 3, "{p}");
        assert!(parts.iter().all(|n| n.parse::<u32>().is_ok()), "{p}");
    }
    // Beneath the road: the tile pane under the overlay pane.
    assert_eq!(
        page.eval(
            "const z = (c) => +getComputedStyle(document.querySelector(c)).zIndex; \
             return z('.leaflet-tile-pane') < z('.leaflet-overlay-pane')"
        ),
        json!(true)
    );
    // The attribution is shown as text, never as markup.
    assert_eq!(
        page.eval("return document.querySelector('.leaflet-control-attribution').textContent.includes('<b>not bold</b>')"),
        json!(true)
    );
    page.screenshot("console-basemap");
}
