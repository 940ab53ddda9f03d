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
use serde_json::Value;

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
    pub database_url: String,
    pub clock: Arc<ManualClock>,
    pub store: Store,
    agent: ureq::Agent,
    handle: actix_web::dev::ServerHandle,
    // Dropped last: the store's file lives here.
    _dir: tempfile::TempDir,
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

/// Starts the service with the shipped geodata, a fresh SQLite store and a
/// manual clock at [`default_now`].
pub fn spawn_app() -> TestApp {
    spawn_app_with(|_| {})
}

/// Like [`spawn_app`], after `tweak` has adjusted the settings.
pub fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = format!("sqlite://{}", dir.path().join("kerbside.db").display());
    let mut settings = Settings::defaults();
    settings.database.database_url = database_url.clone();
    settings.http = "127.0.0.1:0".into();
    settings.geodata = geodata_dir();
    tweak(&mut settings);
    let clock = Arc::new(ManualClock::new(default_now()));

    let (tx, rx) = mpsc::channel();
    let app_clock = clock.clone();
    std::thread::spawn(move || {
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
    let (port, handle, store) = rx
        .recv()
        .expect("the service thread ended before reporting")
        .unwrap_or_else(|e| panic!("the service did not start: {e}"));
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        database_url,
        clock,
        store,
        agent,
        handle,
        _dir: dir,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop accepting; the runtime thread ends when the server future does.
        drop(self.handle.stop(false));
    }
}

impl TestApp {
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

    /// GET `path` as the holder of `token`.
    pub fn get_as(&self, path: &str, token: &str) -> Reply {
        self.get_with(path, &format!("Bearer {token}"))
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
