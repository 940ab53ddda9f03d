//! `spawn_app()` and the HTTP helpers every test uses.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;

use chrono::{DateTime, TimeZone, Utc};
use kerbside::app::Application;
use kerbside::clock::ManualClock;
use kerbside::config::Settings;
use kerbside::domain::auth::{Role, generate_token};
use kerbside::store::Store;
use serde_json::{Value, json};

pub use crate::testdb::TestDb;

/// The repository's shipped geodata.
pub fn geodata_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("geodata")
}

/// 2026-11-27 10:00 Asia/Shanghai, the tests' default "now".
pub fn default_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 2, 0, 0).unwrap()
}

/// A running service with its own store, on free ports.
pub struct TestApp {
    pub base: String,
    /// `(host, port)` of the broker the service uses.
    pub broker: (String, u16),
    pub database_url: String,
    pub clock: Arc<ManualClock>,
    pub store: Store,
    agent: ureq::Agent,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
    // Dropped last: the store lives here.
    _db: TestDb,
}

/// A response, read whole.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts a problem+json answer with this status, and returns its body.
    pub fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(
            self.content_type, "application/problem+json",
            "body: {}",
            self.body
        );
        let p = self.json();
        assert_eq!(p["status"], status);
        for field in ["type", "title", "detail"] {
            assert!(p[field].is_string(), "problem lacks {field}: {p}");
        }
        p
    }
}

/// Starts the service with the shipped geodata, a fresh store on the
/// backend under test ([`TestDb`]) and a manual clock at [`default_now`].
pub fn spawn_app() -> TestApp {
    spawn_app_with(|_| {})
}

/// Like [`spawn_app`], after `tweak` has adjusted the settings.
pub fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_on(TestDb::new(), tweak)
}

/// Like [`spawn_app_with`], on this store. A `tweak` that sets the
/// database URL itself takes over the store (a restart on an old one).
pub fn spawn_app_on(db: TestDb, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = Settings::defaults();
    settings.database.database_url = db.url.clone();
    settings.http = "127.0.0.1:0".into();
    settings.mqtt_listen = Some("127.0.0.1:0".into());
    settings.sweep_seconds = 1;
    settings.geodata = geodata_dir();
    // Most tests speak as devices they never registered, as in v1; the
    // registration tests turn it back on.
    settings.devices = kerbside::devices::DeviceMode::Open;
    tweak(&mut settings);
    let database_url = settings.database.database_url.clone();
    let clock = Arc::new(ManualClock::new(default_now()));

    let (tx, rx) = mpsc::channel();
    let app_clock = clock.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            match Application::build(settings, app_clock).await {
                Ok(app) => {
                    let _ = tx.send(Ok((
                        app.http_port(),
                        app.mqtt_port(),
                        app.handle(),
                        app.state().store.clone(),
                    )));
                    let _ = app.run().await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                }
            }
        });
    });
    let (port, mqtt_port, handle, store) = rx
        .recv()
        .expect("the service thread ended before reporting")
        .unwrap_or_else(|e| panic!("the service did not start: {e}"));
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        broker: ("127.0.0.1".into(), mqtt_port),
        database_url,
        clock,
        store,
        agent,
        handle,
        thread: Some(thread),
        _db: db,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop the server; its runtime, and with it the MQTT link, ends
        // when the server future does.
        drop(self.handle.stop(false));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl TestApp {
    /// A device (or any MQTT client) on the service's broker.
    pub fn mqtt(&self, client_id: &str) -> MqttClient {
        MqttClient::connect(client_id, &self.broker.0, self.broker.1)
    }

    /// A registered device on the service's broker, as `user`.
    pub fn mqtt_as(&self, client_id: &str, user: &str, password: &str) -> MqttClient {
        MqttClient::connect_as(client_id, &self.broker.0, self.broker.1, user, password)
    }

    /// Tries to connect to the service's broker with these credentials.
    pub fn try_mqtt(
        &self,
        client_id: &str,
        login: Option<(&str, &str)>,
    ) -> Result<MqttClient, ConnectOutcome> {
        MqttClient::try_connect(client_id, &self.broker.0, self.broker.1, login)
    }

    /// Waits until the service reports the broker link up.
    pub fn wait_for_broker(&self) {
        wait_until("the service to connect to its broker", || {
            self.get("/healthz").json()["broker"] == "up"
        });
    }

    /// Waits until two more sweeps have ended (`kerbside_sweeps_total`): the
    /// second began after this call, so it saw everything done before it.
    pub fn wait_for_two_sweeps(&self) {
        let sweeps = self.metric("kerbside_sweeps_total");
        wait_until("two sweeps", || {
            self.metric("kerbside_sweeps_total") >= sweeps + 2.0
        });
    }

    /// A bay's status as the REST API reports it.
    pub fn bay_status(&self, bay: &str) -> String {
        self.get(&format!("/v1/bays/{bay}")).json()["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The value of a counter in `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").body;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
    }

    fn read(mut res: ureq::http::Response<ureq::Body>) -> Reply {
        let status = res.status().as_u16();
        let headers: Vec<(String, String)> = res
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = res.body_mut().read_to_string().expect("readable body");
        Reply {
            status,
            content_type,
            headers,
            body,
        }
    }

    /// GET `path` without a token.
    pub fn get(&self, path: &str) -> Reply {
        Self::read(
            self.agent
                .get(format!("{}{path}", self.base))
                .call()
                .expect("GET"),
        )
    }

    /// OPTIONS `path`, as a browser's CORS preflight would.
    pub fn preflight(&self, path: &str) -> Reply {
        Self::read(
            self.agent
                .options(format!("{}{path}", self.base))
                .header("Origin", "https://map.example")
                .header("Access-Control-Request-Method", "GET")
                .call()
                .expect("OPTIONS"),
        )
    }

    /// GET `path` with `X-Forwarded-For: <forwarded_for>`, as through a proxy.
    pub fn get_forwarded(&self, path: &str, forwarded_for: &str) -> Reply {
        Self::read(
            self.agent
                .get(format!("{}{path}", self.base))
                .header("X-Forwarded-For", forwarded_for)
                .call()
                .expect("GET"),
        )
    }

    /// GET `path` with `Authorization: <authorization>`.
    pub fn get_with(&self, path: &str, authorization: &str) -> Reply {
        Self::read(
            self.agent
                .get(format!("{}{path}", self.base))
                .header("Authorization", authorization)
                .call()
                .expect("GET"),
        )
    }

    /// GET `path` with `Accept: <accept>`, as the holder of `token` if given.
    pub fn get_accepting(&self, path: &str, accept: &str, token: Option<&str>) -> Reply {
        let mut req = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Accept", accept);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        Self::read(req.call().expect("GET"))
    }

    /// GET `path` as the holder of `token`.
    pub fn get_as(&self, path: &str, token: &str) -> Reply {
        self.get_with(path, &format!("Bearer {token}"))
    }

    /// POST `body` (JSON, or empty) to `path` as the holder of `token`.
    pub fn post_as(&self, path: &str, token: &str, body: &str) -> Reply {
        let req = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json");
        Self::read(req.send(body).expect("POST"))
    }

    /// DELETE `path` as the holder of `token`.
    pub fn delete_as(&self, path: &str, token: &str) -> Reply {
        Self::read(
            self.agent
                .delete(format!("{}{path}", self.base))
                .header("Authorization", format!("Bearer {token}"))
                .call()
                .expect("DELETE"),
        )
    }

    /// Registers a device through the admin API; returns its password.
    pub fn register_device(&self, admin: &str, device_id: &str, kind: &str) -> String {
        let r = self.post_as(
            "/v1/devices",
            admin,
            &json!({"device_id": device_id, "kind": kind, "name": format!("test {kind}")})
                .to_string(),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["password"]
            .as_str()
            .expect("a password")
            .to_owned()
    }

    /// PUT `body` with `content_type` (and `If-Match` when given) as the holder of `token`.
    pub fn put_as(
        &self,
        path: &str,
        token: &str,
        content_type: &str,
        if_match: Option<&str>,
        body: &str,
    ) -> Reply {
        let mut req = self
            .agent
            .put(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", content_type);
        if let Some(m) = if_match {
            req = req.header("If-Match", m);
        }
        Self::read(req.send(body).expect("PUT"))
    }

    /// A fresh token with `role`, made the way `kerbside token create` makes one.
    pub fn token(&self, role: Role) -> String {
        let t = generate_token();
        self.store
            .create_token(
                &format!("test {}", role.as_str()),
                role,
                &t.hash,
                default_now(),
            )
            .expect("store the token");
        t.secret
    }
}

/// Polls `cond` every 20 ms until it holds, failing after 20 seconds.
pub fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    wait_until_within(what, 20, cond);
}

/// Polls `cond` every 20 ms until it holds, failing after `secs` seconds.
pub fn wait_until_within(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A plain MQTT client, as a device or a dashboard would be.
pub struct MqttClient {
    client: rumqttc::Client,
    incoming: mpsc::Receiver<rumqttc::Publish>,
    subacks: mpsc::Receiver<rumqttc::SubAck>,
    /// Whether the connection is up (false once the broker closed it).
    alive: Arc<std::sync::atomic::AtomicBool>,
}

/// How a connection attempt ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ConnectOutcome {
    Accepted,
    /// The broker answered CONNACK with this refusal.
    Refused(rumqttc::ConnectReturnCode),
    /// The broker closed the connection without a CONNACK.
    Closed,
}

impl MqttClient {
    /// Connects anonymously (clean session) and starts receiving on a thread of its own.
    pub fn connect(client_id: &str, host: &str, port: u16) -> MqttClient {
        Self::try_connect(client_id, host, port, None).expect("connected to the broker")
    }

    /// Connects as `user` with `password`; panics if refused.
    pub fn connect_as(
        client_id: &str,
        host: &str,
        port: u16,
        user: &str,
        password: &str,
    ) -> MqttClient {
        Self::try_connect(client_id, host, port, Some((user, password)))
            .unwrap_or_else(|e| panic!("{user} could not connect: {e:?}"))
    }

    /// Tries to connect; a refusal is returned, not retried.
    pub fn try_connect(
        client_id: &str,
        host: &str,
        port: u16,
        login: Option<(&str, &str)>,
    ) -> Result<MqttClient, ConnectOutcome> {
        let mut options = rumqttc::MqttOptions::new(client_id, host, port);
        options.set_max_packet_size(4 << 20, 4 << 20);
        if let Some((u, p)) = login {
            options.set_credentials(u, p);
        }
        let (client, mut connection) = rumqttc::Client::new(options, 1000);
        let (tx, incoming) = mpsc::channel();
        let (sub_tx, subacks) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        let alive = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let up = alive.clone();
        std::thread::spawn(move || {
            let mut connected = false;
            for event in connection.iter() {
                if event.is_err() {
                    up.store(false, std::sync::atomic::Ordering::Relaxed);
                }
                match event {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                        connected = true;
                        up.store(true, std::sync::atomic::Ordering::Relaxed);
                        let _ = ready_tx.send(ConnectOutcome::Accepted);
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        if tx.send(p).is_err() {
                            return;
                        }
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(a))) => {
                        let _ = sub_tx.send(a);
                    }
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                        let _ = ready_tx.send(ConnectOutcome::Refused(code));
                        return;
                    }
                    Err(_) if !connected => {
                        let _ = ready_tx.send(ConnectOutcome::Closed);
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
                }
            }
        });
        match ready.recv_timeout(std::time::Duration::from_secs(10)) {
            Ok(ConnectOutcome::Accepted) => Ok(MqttClient {
                client,
                incoming,
                subacks,
                alive,
            }),
            Ok(other) => Err(other),
            Err(_) => Err(ConnectOutcome::Closed),
        }
    }

    /// Whether the connection is up.
    pub fn is_connected(&self) -> bool {
        self.alive.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Subscribes at QoS 1 and waits until the broker has taken it.
    pub fn subscribe(&self, filter: &str) {
        assert!(
            self.try_subscribe(filter),
            "the broker refused the subscription to {filter}"
        );
    }

    /// Subscribes at QoS 1; whether the broker granted it (by its SUBACK).
    pub fn try_subscribe(&self, filter: &str) -> bool {
        self.client
            .subscribe(filter, rumqttc::QoS::AtLeastOnce)
            .expect("subscribe");
        let ack = self
            .subacks
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a SUBACK within 10 s");
        matches!(
            ack.return_codes.as_slice(),
            [rumqttc::SubscribeReasonCode::Success(_)]
        )
    }

    /// Every message that arrives within `window`, on any topic.
    pub fn drain(&self, window: std::time::Duration) -> Vec<rumqttc::Publish> {
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + window;
        while let Ok(p) = self
            .incoming
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            out.push(p);
        }
        out
    }

    /// Publishes `payload` at QoS 1 to `topic`.
    pub fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
            .expect("publish");
    }

    /// Publishes `payload` at QoS 1 to `topic`, retained.
    pub fn publish_retained(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, true, payload)
            .expect("publish");
    }

    /// Publishes a JSON payload to a device's events topic.
    pub fn send_events(&self, device: &str, payload: &Value) {
        self.publish(
            &format!("kerbside/v1/devices/{device}/events"),
            payload.to_string(),
        );
    }

    /// The next message on `topic` within 10 seconds, as JSON.
    pub fn next_on(&self, topic: &str) -> Value {
        let payload = self
            .next_payload_on(topic, std::time::Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no message on {topic} within 10 s"));
        serde_json::from_slice(&payload).expect("JSON message")
    }

    /// The payload of the next message on `topic` within `within`, as sent.
    pub fn next_payload_on(&self, topic: &str, within: std::time::Duration) -> Option<Vec<u8>> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let p = self.incoming.recv_timeout(left).ok()?;
            if p.topic == topic {
                return Some(p.payload.to_vec());
            }
        }
    }

    /// Messages on `topic` until `pred` holds for one, which is returned.
    pub fn wait_on(&self, topic: &str, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = self.next_on(topic);
            if pred(&v) {
                return v;
            }
        }
    }
}

/// An anonymous MQTT client whose broker acknowledgements (PUBACKs) are
/// told on the returned channel, one `()` each.
pub fn acking_client(host: &str, port: u16) -> (rumqttc::Client, mpsc::Receiver<()>) {
    let options = rumqttc::MqttOptions::new(format!("acking-{}", rand_suffix()), host, port);
    let (client, mut connection) = rumqttc::Client::new(options, 100);
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready) = mpsc::channel();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                    if tx.send(()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        }
    });
    ready
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("connected to the broker");
    (client, rx)
}

/// A short random suffix for unique names.
pub fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// 2026-11-27 (the tests' default day) at `h:m` Shanghai time.
pub fn local(h: u32, m: u32) -> DateTime<Utc> {
    chrono_tz::Asia::Shanghai
        .with_ymd_and_hms(2026, 11, 27, h, m, 0)
        .unwrap()
        .with_timezone(&Utc)
}

/// An RFC 3339 instant `minutes` after the tests' default now.
pub fn at(minutes: i64) -> String {
    (default_now() + chrono::Duration::minutes(minutes)).to_rfc3339()
}
