//! Publishing over MQTT: at QoS 1, paced so that street time runs `speed`
//! times faster than the wall clock, and finished only when the broker has
//! acknowledged every message.
//!
//! Either one anonymous connection carries every device's messages (a
//! broker that admits anyone), or each device has a connection of its own,
//! logged in as itself (a broker that lets a device publish only to its
//! own topic). All connections share one small runtime: a street's 150
//! devices are 150 tasks, not 150 threads.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use chrono::{DateTime, Utc};
use kerbside::mqtt::topics;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::plan::Message;

/// Requests a connection may have queued before `send` waits.
const QUEUE: usize = 1_000;
/// How long the broker has to accept every connection.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);

/// A device's login on the broker: its id as username, and its password.
#[derive(Debug, Clone)]
pub struct Login {
    pub device_id: String,
    pub password: String,
}

/// QoS 1 publishing over one or many connections, counting the broker's
/// acknowledgements.
pub struct Publisher {
    runtime: Runtime,
    /// The anonymous connection, when there is one: it carries everything.
    shared: Option<AsyncClient>,
    /// Each logged-in device's connection, by device id.
    devices: HashMap<String, AsyncClient>,
    tasks: Vec<JoinHandle<()>>,
    acked: Arc<AtomicU64>,
    sent: u64,
}

impl Publisher {
    /// One anonymous connection for every device; waits (up to 10 s) for
    /// the broker to accept it.
    pub fn connect(url: &str, client_id: &str) -> anyhow::Result<Publisher> {
        Publisher::open(url, &[(client_id.to_owned(), None)])
    }

    /// A connection per device, each logged in as its device (the device
    /// id is its client id too); waits (up to 10 s) for the broker to
    /// accept them all.
    pub fn connect_devices(url: &str, logins: &[Login]) -> anyhow::Result<Publisher> {
        anyhow::ensure!(!logins.is_empty(), "no devices to connect");
        let clients: Vec<(String, Option<&Login>)> = logins
            .iter()
            .map(|l| (l.device_id.clone(), Some(l)))
            .collect();
        Publisher::open(url, &clients)
    }

    fn open(url: &str, clients: &[(String, Option<&Login>)]) -> anyhow::Result<Publisher> {
        let (host, port) = kerbside::mqtt::parse_url(url)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kerbside-sim-mqtt")
            .enable_all()
            .build()
            .context("starting the MQTT runtime")?;
        let acked = Arc::new(AtomicU64::new(0));
        let mut publisher = Publisher {
            runtime,
            shared: None,
            devices: HashMap::new(),
            tasks: Vec::new(),
            acked,
            sent: 0,
        };
        let mut ready = Vec::new();
        for (client_id, login) in clients {
            let mut opts = MqttOptions::new(client_id, host.clone(), port);
            opts.set_keep_alive(Duration::from_secs(30));
            opts.set_max_packet_size(512 * 1024, 512 * 1024);
            if let Some(l) = login {
                opts.set_credentials(&l.device_id, &l.password);
            }
            let (client, eventloop) = AsyncClient::new(opts, QUEUE);
            let (tx, rx) = oneshot::channel();
            let task = publisher
                .runtime
                .spawn(drive(eventloop, publisher.acked.clone(), tx));
            publisher.tasks.push(task);
            ready.push((client_id.as_str(), rx));
            match login {
                Some(l) => {
                    publisher.devices.insert(l.device_id.clone(), client);
                }
                None => publisher.shared = Some(client),
            }
        }
        publisher.runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + CONNECT_WITHIN;
            for (who, rx) in ready {
                match tokio::time::timeout_at(deadline, rx).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(e))) => bail!("{who} cannot connect to the broker at {url}: {e}"),
                    Ok(Err(_)) => bail!("{who}'s connection to {url} ended before it was up"),
                    Err(_) => bail!("the broker at {url} did not accept {who} within 10 s"),
                }
            }
            Ok(())
        })?;
        Ok(publisher)
    }

    /// Publishes one message at QoS 1, on the connection of the device
    /// whose events topic `topic` is (or on the shared one).
    pub fn send(&mut self, topic: &str, payload: Vec<u8>) -> anyhow::Result<()> {
        let client = match &self.shared {
            Some(c) => c,
            None => {
                let device = topics::device_of_events_topic(topic)
                    .ok_or_else(|| anyhow!("{topic} is no device's events topic"))?;
                self.devices
                    .get(device)
                    .ok_or_else(|| anyhow!("device {device} has no connection of its own"))?
            }
        };
        self.runtime
            .block_on(client.publish(topic, QoS::AtLeastOnce, false, payload))
            .context("the MQTT client stopped")?;
        self.sent += 1;
        Ok(())
    }

    /// Messages sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Waits until the broker has acknowledged everything sent, then
    /// disconnects.
    pub fn finish(self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while self.acked.load(Ordering::Relaxed) < self.sent {
            if Instant::now() > deadline {
                bail!(
                    "the broker acknowledged {} of {} messages within {within:?}",
                    self.acked.load(Ordering::Relaxed),
                    self.sent
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let Publisher {
            runtime,
            shared,
            devices,
            tasks,
            ..
        } = self;
        runtime.block_on(async {
            for client in shared.iter().chain(devices.values()) {
                let _ = client.disconnect().await;
            }
            // Let the DISCONNECTs go out, but do not hang on a broker that
            // has gone away.
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                for task in tasks {
                    let _ = task.await;
                }
            })
            .await;
        });
        runtime.shutdown_background();
        Ok(())
    }
}

/// Polls one connection until it disconnects: reports whether the broker
/// accepted it, counts acknowledgements, and reconnects after a loss.
async fn drive(
    mut eventloop: EventLoop,
    acked: Arc<AtomicU64>,
    ready: oneshot::Sender<Result<(), String>>,
) {
    let mut ready = Some(ready);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Ok(()));
                }
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(e) => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Err(e.to_string()));
                    break;
                }
                eprintln!("kerbside-sim: broker connection: {e}; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Publishes `messages` (in order) so that street time `started_at` is
/// now and street time runs `speed` times faster than the wall clock;
/// `progress` hears of each message sent. Returns once all are sent; the
/// caller's [`Publisher::finish`] waits for the acknowledgements.
pub fn publish_paced(
    publisher: &mut Publisher,
    messages: &[Message],
    started_at: DateTime<Utc>,
    speed: f64,
    mut progress: impl FnMut(&Message),
) -> anyhow::Result<()> {
    let wall_start = Instant::now();
    for m in messages {
        let street_ms = (m.publish_at - started_at).num_milliseconds().max(0) as f64;
        let due = wall_start + Duration::from_secs_f64(street_ms / 1000.0 / speed);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        publisher.send(&m.topic, m.payload.clone())?;
        progress(m);
    }
    Ok(())
}
