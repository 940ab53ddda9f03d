//! A `kerbside serve` of a test's own, as a child process that the test can
//! SIGKILL and start again, and the plain HTTP calls made to it.

use std::process::{Child, Command, Stdio};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::helpers::wait_until_within;

/// One `kerbside serve` child process on a free HTTP port, killed when
/// dropped.
pub struct Service {
    args: Vec<String>,
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub base_url: String,
    child: Option<Child>,
}

impl Service {
    /// A service that runs `kerbside serve ARGS --http 127.0.0.1:PORT`
    /// when started, on a port free now.
    pub fn new(args: &[&str]) -> Service {
        let http = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut args: Vec<String> = std::iter::once("serve")
            .chain(args.iter().copied())
            .map(String::from)
            .collect();
        args.extend(["--http".to_owned(), http.to_string()]);
        Service {
            args,
            base_url: format!("http://{http}"),
            child: None,
        }
    }

    /// Starts the process (logging warnings and errors only).
    pub fn start(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_kerbside"))
            .args(&self.args)
            .env("KERBSIDE_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("the kerbside binary starts");
        self.child = Some(child);
    }

    /// SIGKILLs the process: nothing of it runs after this returns.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            c.wait().unwrap();
        }
    }

    /// Whether `/healthz` answers 200.
    pub fn healthy(&self, agent: &ureq::Agent) -> bool {
        healthy(agent, &self.base_url)
    }

    /// Waits (at most `secs` seconds) for `/healthz` to answer 200.
    pub fn wait_healthy(&self, what: &str, secs: u64) {
        let agent = agent();
        wait_until_within(what, secs, || self.healthy(&agent));
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTP agent that hands back 4xx and 5xx answers instead of erring.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// Whether `{base}/healthz` answers 200.
pub fn healthy(agent: &ureq::Agent, base: &str) -> bool {
    agent
        .get(format!("{base}/healthz"))
        .call()
        .is_ok_and(|r| r.status() == 200)
}

/// GET `url` with a bearer token: its JSON, or null when there is none.
pub fn get(agent: &ureq::Agent, url: &str, token: &str) -> Value {
    agent
        .get(url)
        .header("Authorization", format!("Bearer {token}"))
        .call()
        .and_then(|mut r| r.body_mut().read_json())
        .unwrap_or(Value::Null)
}

/// An RFC 3339 string as a time; None for null.
pub fn parse(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .map(|s| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc))
}
