//! External brokers: the machine's Mosquitto, and private Mosquitto
//! instances for tests that must lose nothing.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::helpers::wait_until;

/// The machine's Mosquitto, `mqtt://HOST:PORT`, from `KERBSIDE_TEST_MQTT_URL`
/// (default `mqtt://127.0.0.1:1883`). When it cannot be reached the test
/// fails under CI (`CI` set) and is skipped, loudly, elsewhere.
pub fn machine_mosquitto() -> Option<String> {
    let url =
        std::env::var("KERBSIDE_TEST_MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
    let addr = url.trim_start_matches("mqtt://").to_owned();
    if TcpStream::connect(&addr).is_ok() {
        return Some(url);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "no MQTT broker at {url}: CI needs the machine's Mosquitto (set KERBSIDE_TEST_MQTT_URL)"
        );
    }
    eprintln!(
        "\n*** SKIPPED: no MQTT broker at {url}; start Mosquitto or set KERBSIDE_TEST_MQTT_URL ***\n"
    );
    None
}

/// A Mosquitto of the test's own, on a free port, that queues without
/// limit (`max_queued_messages 0`), so nothing is dropped for a client
/// that is away. Killed when dropped.
pub struct PrivateMosquitto {
    child: Child,
    pub port: u16,
}

impl PrivateMosquitto {
    /// Starts one with its config and log in `dir`.
    pub fn start(dir: &Path, max_inflight: u32) -> PrivateMosquitto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_queued_messages 0\nmax_inflight_messages {max_inflight}\n\
                 log_dest file {}\n",
                dir.join("mosquitto.log").display()
            ),
        )
        .unwrap();
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto runs (apt-get install mosquitto)");
        wait_until("the private mosquitto to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        PrivateMosquitto { child, port }
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateMosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mosquitto_binary() -> &'static str {
    if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}
