//! Publishing over MQTT: at QoS 1, paced so that street time runs `speed`
//! times faster than the wall clock, and finished only when the broker has
//! acknowledged every message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

use crate::plan::Message;

/// A QoS 1 publisher that counts the broker's acknowledgements.
pub struct Publisher {
    client: Client,
    acked: Arc<AtomicU64>,
    sent: u64,
}

impl Publisher {
    /// Connects, and waits (up to 10 s) for the broker to accept.
    pub fn connect(url: &str, client_id: &str) -> anyhow::Result<Publisher> {
        let (host, port) = kerbside::mqtt::parse_url(url)?;
        let mut opts = MqttOptions::new(client_id, host, port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_max_packet_size(512 * 1024, 512 * 1024);
        let (client, mut connection) = Client::new(opts, 1_000);
        let acked = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = mpsc::channel();
        let counter = acked.clone();
        std::thread::spawn(move || {
            let mut ready = Some(ready_tx);
            for notification in connection.iter() {
                match notification {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(Ok(()));
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(e) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(Err(e.to_string()));
                            break;
                        }
                        eprintln!("kerbside-sim: broker connection: {e}; reconnecting");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
        });
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("cannot connect to the broker at {url}: {e}"),
            Err(_) => bail!("the broker at {url} did not answer within 10 s"),
        }
        Ok(Publisher {
            client,
            acked,
            sent: 0,
        })
    }

    /// Publishes one message at QoS 1.
    pub fn send(&mut self, topic: &str, payload: Vec<u8>) -> anyhow::Result<()> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
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
        let _ = self.client.disconnect();
        Ok(())
    }
}

/// Publishes `messages` (in order) so that street time `started_at` is
/// now and street time runs `speed` times faster than the wall clock;
/// `progress` hears of each message sent. Returns once all are acked.
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
