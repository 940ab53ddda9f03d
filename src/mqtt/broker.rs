//! The embedded MQTT broker (rumqttd), for a laptop or a single box: no
//! setup, started in-process when no `--mqtt-url` is given.
//!
//! It keeps messages in memory only: a message a device has handed to it but
//! kerbside has not yet committed is lost if the process dies. Deployments
//! that must lose nothing use an external broker with persistence
//! (Mosquitto with `persistence true` and `max_queued_messages 0`).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Why the embedded broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on --mqtt-listen {addr}: {message}")]
    Listen { addr: String, message: String },
}

/// Where the embedded broker listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:1883";

/// Largest MQTT payload the embedded broker takes, bytes: above the 256 KiB
/// event limit, so an oversized payload reaches kerbside and is rejected
/// with a reason instead of the device being disconnected.
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// Starts the broker on `listen` (`HOST:PORT`; port 0 picks a free port)
/// and returns the address it listens on.
pub fn start(listen: &str) -> Result<SocketAddr, BrokerError> {
    let err = |message: String| BrokerError::Listen {
        addr: listen.to_owned(),
        message,
    };
    let addr = listen
        .to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("the address resolves to nothing".into()))?;
    // rumqttd binds on its own thread and only logs a failure; bind here
    // first so that a taken port is a clear start-up error.
    let probe = TcpListener::bind(addr).map_err(|e| err(e.to_string()))?;
    let addr = probe.local_addr().map_err(|e| err(e.to_string()))?;
    drop(probe);

    let server = ServerSettings {
        name: "kerbside-v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: MAX_PAYLOAD,
            max_inflight_count: 1000,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 1000,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        ..Default::default()
    };
    let mut broker = Broker::new(config);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "the embedded MQTT broker stopped");
            }
        })
        .map_err(|e| err(e.to_string()))?;
    // The listener comes up a moment after the thread starts; wait for it so
    // the service's own client does not begin with a refused connection.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::net::TcpStream::connect(addr).is_err() {
        if std::time::Instant::now() > deadline {
            return Err(err(
                "the embedded broker did not start listening within 3 s".into(),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Ok(addr)
}
