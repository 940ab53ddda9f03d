//! External brokers: the machine's Mosquitto, and private Mosquitto
//! instances for tests that must lose nothing.

use std::net::TcpStream;

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

#[path = "../support/mosquitto.rs"]
mod private;
pub use private::PrivateMosquitto;
