//! A Mosquitto of our own on a free port, shared by the tests and the
//! benchmarks: it queues without limit (`max_queued_messages 0`), so nothing
//! is dropped for a client that is away or slow. Killed when dropped.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running private Mosquitto.
pub struct PrivateMosquitto {
    child: Child,
    pub port: u16,
}

impl PrivateMosquitto {
    /// Starts one with its config and log in `dir`; `max_inflight` is the
    /// QoS 1 window per client (Mosquitto's default is 20).
    pub fn start(dir: &Path, max_inflight: u32) -> PrivateMosquitto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
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
        .expect("write mosquitto.conf");
        let binary = if Path::new("/usr/sbin/mosquitto").exists() {
            "/usr/sbin/mosquitto"
        } else {
            "mosquitto"
        };
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto runs (apt-get install mosquitto)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the private mosquitto did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        PrivateMosquitto { child, port }
    }

    /// Its process id.
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.id()
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
