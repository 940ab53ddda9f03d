//! MQTT: the embedded broker, the link to the broker, and the ingest loop.
//!
//! ```text
//! broker -> event loop task -> channel -> batcher -> Ingestor::process (one transaction)
//!           (only polls;        (bounded                 -> outbox: acks, in arrival order,
//!            waits when the      in messages               retained bay states, rejections
//!            budget is spent)    and bytes)
//! ```
//!
//! The event loop task only polls the connection and forwards each publish;
//! it never waits on the store. QoS 1 messages are acknowledged only after
//! the batch holding them is committed, so a crash before that makes the
//! broker redeliver them, and the `(device_id, event_id)` key turns the
//! redelivery into a duplicate. Only this module imports rumqttc.
//!
//! On a Mosquitto configured by `kerbside mosquitto-conf`
//! ([`mosquitto_conf`]), [`dynsec`] keeps the broker's clients in step with
//! the device registry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use serde::Serialize;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc};

use crate::domain::ids::{BayId, RoadId};
use crate::domain::occupancy::BayStatus;
use crate::ingest::{Committed, Ingestor, Message};
use crate::street::StreetMap;

pub mod broker;
pub mod dynsec;
pub mod mosquitto_conf;
#[cfg(test)]
mod props;
pub mod topics;

/// Most messages committed in one transaction.
pub const MAX_BATCH_MESSAGES: usize = 1000;
/// Most QoS 1 messages the broker may send kerbside before it acknowledges
/// them: the window the ingest client announces, and the one
/// `kerbside mosquitto-conf` gives Mosquitto.
pub const INFLIGHT_MESSAGES: u16 = 1000;
/// Most messages kerbside holds between the broker and the store: queued
/// for the batcher, or in the batch being stored.
pub const QUEUE_MESSAGES: usize = 10_000;
/// Most payload bytes kerbside holds between the broker and the store (a
/// message larger than this alone is let through alone).
pub const QUEUE_BYTES: usize = 64 * 1024 * 1024;
/// Longest device segment of a topic kept as sent, characters: a longer
/// one (no device id is longer than 64) is cut to this and marked with
/// `…`, so that a stranger's topic costs little to store, and no
/// rejection is published to it (no device can hold that id).
pub const MAX_DEVICE_SEGMENT: usize = 64;
/// Most rejection notices waiting in the outbox; past it, notices are not
/// published (the rejections are stored all the same) and are counted in
/// `kerbside_rejection_notices_dropped_total`.
pub const MAX_PENDING_NOTICES: usize = 10_000;
/// Largest packet the client accepts from the broker, bytes. Larger
/// payloads than the 256 KiB event limit still arrive, to be rejected with
/// a reason; cap message size at the broker above this.
pub const MAX_PACKET_BYTES: usize = 16 * 1024 * 1024;

/// Why the MQTT link could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("--mqtt-url {0:?} is not mqtt://[USER:PASSWORD@]HOST:PORT")]
    BadUrl(String),
}

/// Where to connect and as whom.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub host: String,
    pub port: u16,
    /// The client id, and so the persistent session on the broker.
    pub client_id: String,
    /// Username and password on the broker, if it wants them.
    pub credentials: Option<(String, String)>,
    /// How often bay staleness is re-evaluated and published.
    pub sweep_every: Duration,
    /// The filter device events are taken through: [`topics::EVENTS_FILTER`]
    /// or a shared subscription to it (see [`events_subscription`]).
    pub events_filter: String,
    /// Whether this instance leads the chores only one instance may do at a
    /// time (publishing retained bay states, the overstay sweep); always
    /// set on SQLite, held by a lease on PostgreSQL (see `crate::sync`).
    pub leading: Arc<AtomicBool>,
}

/// The filter to take device events through: a shared subscription in
/// `group` (`$share/GROUP/...`), or the plain filter when `group` is empty.
pub fn events_subscription(group: &str) -> String {
    if group.is_empty() {
        topics::EVENTS_FILTER.to_owned()
    } else {
        format!("$share/{group}/{}", topics::EVENTS_FILTER)
    }
}

/// A broker's address and the credentials to use there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    /// Username and password, percent-decoded.
    pub credentials: Option<(String, String)>,
}

/// Parses `mqtt://[USER:PASSWORD@]HOST[:PORT]` (port 1883 when absent;
/// user and password percent-encoded as in any URL).
pub fn parse_broker_url(url: &str) -> Result<BrokerUrl, MqttError> {
    let bad = || MqttError::BadUrl(url.to_owned());
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .ok_or_else(bad)?;
    let (credentials, rest) = match rest.rsplit_once('@') {
        Some((userinfo, rest)) => {
            let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let user = percent_decode(user).ok_or_else(bad)?;
            let pass = percent_decode(pass).ok_or_else(bad)?;
            if user.is_empty() {
                return Err(bad());
            }
            (Some((user, pass)), rest)
        }
        None => (None, rest),
    };
    let (host, port) = parse_host_port(rest).ok_or_else(bad)?;
    Ok(BrokerUrl {
        host,
        port,
        credentials,
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Parses `mqtt://HOST[:PORT]` (port 1883 when absent), ignoring any
/// credentials.
pub fn parse_url(url: &str) -> Result<(String, u16), MqttError> {
    parse_broker_url(url).map(|u| (u.host, u.port))
}

fn parse_host_port(rest: &str) -> Option<(String, u16)> {
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok()?),
        None => (rest, 1883),
    };
    if host.is_empty() || host.contains('/') {
        return None;
    }
    Some((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
    ))
}

/// The running link: whether it is connected, for `/healthz`.
#[derive(Clone)]
pub struct MqttLink {
    connected: Arc<AtomicBool>,
    /// Bays whose state another instance changed, to be published.
    changed: mpsc::UnboundedSender<Vec<BayId>>,
}

impl MqttLink {
    /// Whether the broker connection is up and subscribed to device events.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Publishes (when this instance leads) the retained states of bays
    /// that another instance's commits changed in the street.
    pub fn publish_states(&self, bays: Vec<BayId>) {
        if !bays.is_empty() {
            let _ = self.changed.send(bays);
        }
    }
}

/// Publishes the states of bays changed elsewhere (when leading).
async fn changed_loop(
    mut rx: mpsc::UnboundedReceiver<Vec<BayId>>,
    ingestor: Ingestor,
    publisher: Arc<Publisher>,
) {
    while let Some(mut bays) = rx.recv().await {
        while let Ok(more) = rx.try_recv() {
            bays.extend(more);
        }
        if !publisher.leading.load(Ordering::Relaxed) {
            continue;
        }
        let map = ingestor.street.map();
        let with_roads: Vec<(&BayId, &RoadId)> = bays
            .iter()
            .filter_map(|b| Some((b, &map.bay(b)?.0.info.road_id)))
            .collect();
        publisher
            .publish_changes(&ingestor, with_roads.iter().copied())
            .await;
    }
}

/// A message on its way to the store: the payload once (shared with the
/// packet it came in), what its acknowledgement needs, and its share of
/// the queue's budget, given back when it is dropped.
struct Delivery {
    ack: AckTag,
    message: Message,
    held: Held,
}

/// What acknowledging a message takes: its packet id and QoS, and the
/// connection it came in on (a packet id means nothing on another).
#[derive(Debug, Clone, Copy)]
struct AckTag {
    pkid: u16,
    qos: QoS,
    connection: u64,
}

/// The number of the broker connection, for acknowledgements: it changes
/// the moment a connection is lost, and an acknowledgement is sent only
/// on the connection its message came in on.
///
/// After a reconnect the broker either resumed the session, and then it
/// redelivers every unacknowledged message with its packet id, or it lost
/// it, and then packet ids start again and an old acknowledgement would
/// acknowledge someone else's message. In both cases dropping the old
/// acknowledgement is right: the redelivery is stored as a duplicate and
/// acknowledged on the new connection. The check and the hand-over to
/// rumqttc happen under the lock that the poll task takes to change the
/// number and drop the acknowledgements still queued in rumqttc
/// (`EventLoop::clean`), so none slips through.
#[derive(Clone, Default)]
struct Connection(Arc<std::sync::Mutex<u64>>);

impl Connection {
    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl AckTag {
    /// A publish with nothing but the fields an acknowledgement reads.
    fn as_publish(self) -> Publish {
        let mut p = Publish::new("", self.qos, Vec::new());
        p.pkid = self.pkid;
        p
    }
}

/// The budget of what ingest holds between the broker and the store, in
/// messages ([`QUEUE_MESSAGES`]) and payload bytes ([`QUEUE_BYTES`]), for
/// QoS 0 as for QoS 1.
///
/// The poll task takes a message's share before it polls on; when the
/// budget is spent it waits, so it reads nothing more from the socket and
/// the broker holds what waits (back-pressure on the connection, not
/// kerbside's memory). This cannot deadlock: the share is given back when
/// the batcher has stored the batch, and the batcher waits only on the
/// store and on this queue, never on the broker link; acknowledgements and
/// publishes wait on the link in a task of their own (`outbox_loop`),
/// which the poll task serves again as soon as the batcher frees a share.
/// While the poll task waits no keep-alive goes out: a store stalled for
/// longer than 1.5 keep-alive periods (45 s) gets the link dropped and
/// re-established, and the broker redelivers whatever was not acknowledged.
#[derive(Clone)]
struct Budget {
    messages: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    metrics: Arc<crate::metrics::Metrics>,
}

/// A message's share of the [`Budget`]; given back on drop.
struct Held {
    _message: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
    len: u64,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Budget {
    fn new(metrics: Arc<crate::metrics::Metrics>) -> Budget {
        Budget {
            messages: Arc::new(Semaphore::new(QUEUE_MESSAGES)),
            bytes: Arc::new(Semaphore::new(QUEUE_BYTES)),
            metrics,
        }
    }

    /// Waits until a payload of `len` bytes fits, and takes its share.
    async fn take(&self, len: usize) -> Held {
        let cost = len.clamp(1, QUEUE_BYTES) as u32;
        // The semaphores are never closed.
        let message = self.messages.clone().acquire_owned().await;
        let bytes = self.bytes.clone().acquire_many_owned(cost).await;
        let (Ok(message), Ok(bytes)) = (message, bytes) else {
            unreachable!("the queue budget is never closed")
        };
        self.metrics.queued(1, len as u64);
        Held {
            _message: message,
            _bytes: bytes,
            len: len as u64,
            metrics: self.metrics.clone(),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.metrics.dequeued(1, self.len);
    }
}

/// What the outbox sends after a batch is stored: acknowledgements, in
/// arrival order, then rejections and bay states.
struct Outgoing {
    acks: Vec<AckTag>,
    committed: Vec<Committed>,
}

/// Connects to the broker and starts the event loop, batcher and sweep
/// tasks on the current tokio runtime.
pub fn spawn(config: LinkConfig, ingestor: Ingestor) -> MqttLink {
    let mut options = MqttOptions::new(config.client_id.clone(), config.host.clone(), config.port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
        .set_inflight(INFLIGHT_MESSAGES)
        .set_request_channel_capacity(65_536);
    if let Some((user, pass)) = &config.credentials {
        options.set_credentials(user.clone(), pass.clone());
    }
    let (client, eventloop) = AsyncClient::new(options, 65_536);
    let connected = Arc::new(AtomicBool::new(false));
    // Unbounded, but what it can hold is bounded by the budget that the
    // poll task takes before it sends.
    let (tx, rx) = mpsc::unbounded_channel();
    let (outbox_tx, outbox_rx) = mpsc::unbounded_channel();
    let budget = Budget::new(ingestor.metrics.clone());
    let connection = Connection::default();
    let publisher = Arc::new(Publisher {
        client: client.clone(),
        last: Mutex::new(HashMap::new()),
        cleared_for: std::sync::Mutex::new(None),
        leading: config.leading.clone(),
        led: AtomicBool::new(false),
    });
    tokio::spawn(poll_loop(
        eventloop,
        config.events_filter.clone(),
        client.clone(),
        tx,
        connected.clone(),
        ingestor.clone(),
        budget,
        connection.clone(),
    ));
    // Rejection notices handed to the outbox and not yet published.
    let notices = Arc::new(AtomicUsize::new(0));
    tokio::spawn(batch_loop(rx, ingestor.clone(), outbox_tx, notices.clone()));
    tokio::spawn(outbox_loop(
        outbox_rx,
        client,
        connection,
        ingestor.clone(),
        publisher.clone(),
        notices,
    ));
    let (changed, changed_rx) = mpsc::unbounded_channel();
    tokio::spawn(changed_loop(
        changed_rx,
        ingestor.clone(),
        publisher.clone(),
    ));
    tokio::spawn(sweep_loop(
        config.sweep_every,
        ingestor,
        publisher,
        config.leading,
    ));
    MqttLink { connected, changed }
}

#[allow(clippy::too_many_arguments)]
async fn poll_loop(
    mut eventloop: EventLoop,
    filter: String,
    client: AsyncClient,
    tx: mpsc::UnboundedSender<Delivery>,
    connected: Arc<AtomicBool>,
    ingestor: Ingestor,
    budget: Budget,
    connection: Connection,
) {
    let mut backoff = Duration::from_millis(100);
    let mut current = *connection.lock();
    // Whether a connection was up since the number last changed.
    let mut live = false;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                live = true;
                backoff = Duration::from_millis(100);
                tracing::info!(
                    session_present = ack.session_present,
                    "connected to the MQTT broker"
                );
                if let Err(e) = client.try_subscribe(filter.as_str(), QoS::AtLeastOnce) {
                    tracing::error!(error = %e, "cannot subscribe to device events");
                }
            }
            // Up means subscribed: from here on no device event is missed.
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_)))
                {
                    tracing::info!(%filter, "subscribed to device events");
                    connected.store(true, Ordering::Relaxed);
                } else {
                    // Not up: /healthz says so, and the operator is told why.
                    tracing::error!(%filter, "the broker refused the subscription to device \
                        events (its access rules must allow kerbside this filter)");
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                // Waits while the budget is spent: see `Budget`.
                let held = budget.take(publish.payload.len()).await;
                let device = device_segment(&publish.topic);
                let ack = AckTag {
                    pkid: publish.pkid,
                    qos: publish.qos,
                    connection: current,
                };
                let message = Message {
                    device,
                    payload: publish.payload,
                    received_at: ingestor.clock.now(),
                };
                if tx.send(Delivery { ack, message, held }).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                if live {
                    // The connection is gone: no acknowledgement of its
                    // messages may reach the next one (see `Connection`).
                    // Once per connection, so that publishes queued while
                    // reconnecting stay queued.
                    live = false;
                    let mut n = connection.lock();
                    *n += 1;
                    current = *n;
                    eventloop.clean();
                }
                if connected.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "lost the MQTT broker; reconnecting");
                } else {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot reach the MQTT broker");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn batch_loop(
    mut rx: mpsc::UnboundedReceiver<Delivery>,
    ingestor: Ingestor,
    outbox: mpsc::UnboundedSender<Outgoing>,
    notices: Arc<AtomicUsize>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_MESSAGES {
            match rx.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        let mut acks = Vec::with_capacity(batch.len());
        let mut messages = Vec::with_capacity(batch.len());
        let mut held = Vec::with_capacity(batch.len());
        for d in batch {
            acks.push(d.ack);
            messages.push(d.message);
            held.push(d.held);
        }
        let mut committed = store_batch(&ingestor, Arc::new(messages)).await;
        // Stored: the payloads are gone, and their share of the queue with them.
        drop(held);
        for c in &mut committed {
            c.rejections.retain(|(device, _)| !is_cut(device));
            let room = MAX_PENDING_NOTICES.saturating_sub(notices.load(Ordering::Relaxed));
            if c.rejections.len() > room {
                let dropped = (c.rejections.len() - room) as u64;
                c.rejections.truncate(room);
                ingestor
                    .metrics
                    .rejection_notices_dropped
                    .fetch_add(dropped, Ordering::Relaxed);
            }
            notices.fetch_add(c.rejections.len(), Ordering::Relaxed);
        }
        if outbox.send(Outgoing { acks, committed }).is_err() {
            return;
        }
    }
}

/// The device segment of an events topic (or the whole topic, if it is
/// not one), cut to [`MAX_DEVICE_SEGMENT`] characters and marked if longer.
fn device_segment(topic: &str) -> String {
    let segment = topics::device_of_events_topic(topic).unwrap_or(topic);
    match segment.char_indices().nth(MAX_DEVICE_SEGMENT) {
        Some((end, _)) => format!("{}…", &segment[..end]),
        None => segment.to_owned(),
    }
}

/// Whether a device segment was cut (see [`device_segment`]).
fn is_cut(device: &str) -> bool {
    device.chars().count() > MAX_DEVICE_SEGMENT
}

/// Sends what each stored batch owes the broker: acknowledgements first,
/// in arrival order (the batch is committed or quarantined, so now and
/// only now), then rejections and retained bay states. A task of its own,
/// so that waiting on the link never holds up the batcher (see `Budget`).
async fn outbox_loop(
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    client: AsyncClient,
    connection: Connection,
    ingestor: Ingestor,
    publisher: Arc<Publisher>,
    notices: Arc<AtomicUsize>,
) {
    while let Some(out) = rx.recv().await {
        for a in &out.acks {
            ack(&client, &connection, *a).await;
        }
        for c in &out.committed {
            for (device, r) in &c.rejections {
                let body = RejectionMessage {
                    event_id: r.event_id.as_deref(),
                    reason: r.reason.as_str(),
                    detail: &r.detail,
                };
                publisher
                    .send(topics::rejections(device), false, &body)
                    .await;
                notices.fetch_sub(1, Ordering::Relaxed);
            }
            let bays = c.bays.iter().map(|(b, r, _)| (b, r));
            publisher.publish_changes(&ingestor, bays).await;
        }
    }
}

/// Acknowledges a message if the connection it came in on is still the
/// current one; otherwise drops the acknowledgement (see [`Connection`]).
async fn ack(client: &AsyncClient, connection: &Connection, tag: AckTag) {
    let publish = tag.as_publish();
    loop {
        {
            let current = connection.lock();
            if *current != tag.connection {
                tracing::debug!(
                    pkid = tag.pkid,
                    "dropped the acknowledgement of a message from an earlier connection"
                );
                return;
            }
            match client.try_ack(&publish) {
                Ok(()) => return,
                Err(rumqttc::ClientError::TryRequest(_)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot acknowledge a message; the broker will redeliver it");
                    return;
                }
            }
        }
        // rumqttc's request queue is full: the poll task is draining it.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Failures in a row, for a reason that is not transient, after which a
/// batch is split into its messages, and a message alone is quarantined.
pub const POISON_TRIES: u32 = 3;

/// Stores a batch (on the blocking pool) and returns what each commit
/// changed. A store that is down, busy or full is waited for, without end:
/// nothing is acknowledged before it is stored. A batch that fails
/// [`POISON_TRIES`] times in a row otherwise (a poison message, or a bug)
/// is stored message by message, and a message that fails as often alone
/// is quarantined: set aside whole in the store, so that it can be
/// acknowledged and ingest goes on.
async fn store_batch(ingestor: &Ingestor, messages: Arc<Vec<Message>>) -> Vec<Committed> {
    let error = match store_retrying(ingestor, &messages, 0..messages.len()).await {
        Ok(c) => return vec![c],
        Err(error) => error,
    };
    if messages.len() == 1 {
        quarantine(ingestor, &messages[0], &error).await;
        return Vec::new();
    }
    tracing::warn!(%error, messages = messages.len(), "a batch keeps failing; storing its messages one by one");
    let mut committed = Vec::new();
    for i in 0..messages.len() {
        match store_retrying(ingestor, &messages, i..i + 1).await {
            Ok(c) => committed.push(c),
            Err(error) => quarantine(ingestor, &messages[i], &error).await,
        }
    }
    committed
}

/// Stores `messages[range]` in one transaction, retrying with a backoff;
/// gives up with the last error only after [`POISON_TRIES`] failures in a
/// row that are not transient.
async fn store_retrying(
    ingestor: &Ingestor,
    messages: &Arc<Vec<Message>>,
    range: std::ops::Range<usize>,
) -> Result<Committed, String> {
    let mut backoff = Duration::from_millis(50);
    let mut failures = 0;
    loop {
        let (ing, msgs, r) = (ingestor.clone(), messages.clone(), range.clone());
        let (error, transient) =
            match tokio::task::spawn_blocking(move || ing.process(&msgs[r])).await {
                Ok(Ok(c)) => return Ok(c),
                Ok(Err(e)) => (e.to_string(), e.is_transient()),
                // A panic while processing is the batch's doing, as a poison message's.
                Err(e) => (format!("the batch task failed: {e}"), false),
            };
        tracing::error!(%error, transient, messages = range.len(), "cannot store a batch; retrying");
        failures = if transient { 0 } else { failures + 1 };
        if failures >= POISON_TRIES {
            return Err(error);
        }
        ingestor
            .metrics
            .store_retries
            .fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Sets a message aside in the store, retrying until the store has it.
async fn quarantine(ingestor: &Ingestor, message: &Message, error: &str) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let (ing, m, e) = (ingestor.clone(), message.clone(), error.to_owned());
        let topic = topics::events(&m.device);
        match tokio::task::spawn_blocking(move || ing.quarantine(&m, topic, e)).await {
            Ok(Ok(())) => {
                tracing::error!(device = %message.device, %error, "quarantined a message that cannot be stored");
                return;
            }
            Ok(Err(e)) => tracing::error!(error = %e, "cannot quarantine a message; retrying"),
            Err(e) => tracing::error!(error = %e, "the quarantine task failed; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn sweep_loop(
    every: Duration,
    ingestor: Ingestor,
    publisher: Arc<Publisher>,
    leading: Arc<AtomicBool>,
) {
    let mut tick = tokio::time::interval(every);
    let mut known = crate::ingest::SweepMemo::default();
    let mut led = false;
    loop {
        tick.tick().await;
        // One instance at a time sweeps and publishes retained states (the
        // lease, see `crate::sync`); the sweep's writes are idempotent under
        // the bays' row locks besides, so a lease that changes hands
        // between two sweeps files nothing twice.
        while !leading.load(Ordering::Relaxed) {
            led = false;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if !led {
            // Newly leading: judge every open stay afresh.
            led = true;
            known = crate::ingest::SweepMemo::default();
        }
        let ing = ingestor.clone();
        match tokio::task::spawn_blocking(move || {
            let filed = ing.sweep_overstays(&mut known);
            if let Err(e) = ing.erase_plates(&mut known) {
                tracing::error!(error = %e, "cannot erase old plates; will retry");
            }
            if let Err(e) = ing.sweep_cases(&mut known) {
                tracing::error!(error = %e, "cannot escalate cases past their deadline; will retry");
            }
            (known, filed)
        })
        .await
        {
            Ok((k, filed)) => {
                known = k;
                if let Err(e) = filed {
                    tracing::error!(error = %e, "cannot judge overstays; will retry");
                    known = crate::ingest::SweepMemo::default();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "the overstay sweep failed");
                known = crate::ingest::SweepMemo::default();
            }
        }
        let map = ingestor.street.map();
        // References into the snapshot: no id is copied.
        let mut all: Vec<(&BayId, &RoadId)> = Vec::new();
        for v in map.roads.values() {
            all.extend(v.layout.bays.iter().map(|b| (&b.bay_id, &v.info.road_id)));
        }
        publisher
            .publish_changes(&ingestor, all.iter().copied())
            .await;
        publisher.clear_retired(&ingestor).await;
        ingestor.metrics.sweeps.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Serialize)]
struct RejectionMessage<'a> {
    event_id: Option<&'a str>,
    reason: &'a str,
    detail: &'a str,
}

#[derive(Serialize)]
struct StateMessage<'a> {
    bay_id: &'a str,
    road_id: &'a str,
    status: &'a str,
    since: Option<String>,
    updated_at: String,
}

/// Publishes retained bay states when a bay's reported status changes,
/// and clears them when a bay leaves the street.
struct Publisher {
    client: AsyncClient,
    /// The status last published per bay; held while publishing, so that
    /// states go out in the order they were computed.
    last: Mutex<HashMap<BayId, BayStatus>>,
    /// The street map `last` was last checked against for retired bays;
    /// `None` until the store's retired bays have been cleared once since
    /// start. A `Weak` keeps the old map's address from being reused
    /// without keeping the map. Only touched while `last` is held.
    cleared_for: std::sync::Mutex<Option<Weak<StreetMap>>>,
    /// Whether this instance leads (see [`LinkConfig::leading`]).
    leading: Arc<AtomicBool>,
    /// Whether it led when `last` was last looked at.
    led: AtomicBool,
}

impl Publisher {
    /// Whether this instance may publish retained states now: only while
    /// it leads. Called with `last` held: on becoming leader, what was
    /// published is forgotten (another leader may have published since),
    /// so that the next round publishes every bay's state afresh, and the
    /// store's retired bays are cleared again.
    fn may_publish(&self, last: &mut HashMap<BayId, BayStatus>) -> bool {
        let leading = self.leading.load(Ordering::Relaxed);
        if self.led.swap(leading, Ordering::Relaxed) != leading && leading {
            last.clear();
            *self.cleared_for.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        leading
    }

    async fn send(&self, topic: String, retain: bool, body: &impl Serialize) {
        let payload = match serde_json::to_vec(body) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode an outgoing message");
                return;
            }
        };
        if let Err(e) = self
            .client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
        {
            tracing::warn!(error = %e, "cannot publish");
        }
    }

    /// Publishes the state of each of `bays` whose status differs from the
    /// one last published, as reported now.
    async fn publish_changes<'a>(
        &self,
        ingestor: &Ingestor,
        bays: impl Iterator<Item = (&'a BayId, &'a RoadId)>,
    ) {
        let mut last = self.last.lock().await;
        if !self.may_publish(&mut last) {
            return;
        }
        // Read under the lock: a bay this skips is gone from the map that
        // `clear_retired` checks next, or has already been cleared.
        let map = ingestor.street.map();
        let now = ingestor.clock.now();
        for (bay, road) in bays {
            let report = ingestor.street.report(bay, now);
            if last.get(bay) == Some(&report.status) || map.bay(bay).is_none() {
                continue;
            }
            last.insert(bay.clone(), report.status);
            let body = StateMessage {
                bay_id: bay.as_str(),
                road_id: road.as_str(),
                status: report.status.as_str(),
                since: report.since.map(crate::clock::rfc3339),
                updated_at: crate::clock::rfc3339(now),
            };
            self.send(topics::bay_state(bay.as_str()), true, &body)
                .await;
        }
    }

    /// Clears (an empty retained message) the state topic of every bay
    /// that has left the street: bays published since start that a new
    /// layout has retired, looked for whenever the street's map changes,
    /// and, once after start (when nothing is remembered), every bay the
    /// store holds as retired. Without this the broker would hand a
    /// retired bay's last state to every new subscriber forever.
    async fn clear_retired(&self, ingestor: &Ingestor) {
        let mut last = self.last.lock().await;
        if !self.may_publish(&mut last) {
            return;
        }
        let map = ingestor.street.map();
        let checked = self
            .cleared_for
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut gone: Vec<BayId> = Vec::new();
        match checked {
            Some(seen) if std::ptr::eq(seen.as_ptr(), Arc::as_ptr(&map)) => return,
            Some(_) => {}
            None => {
                let store = ingestor.store.clone();
                match tokio::task::spawn_blocking(move || store.retired_bays()).await {
                    Ok(Ok(retired)) => gone = retired,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot read the retired bays; will retry");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the retired-bays task failed; will retry");
                        return;
                    }
                }
            }
        }
        last.retain(|bay, _| {
            let on_street = map.bay(bay).is_some();
            if !on_street {
                gone.push(bay.clone());
            }
            on_street
        });
        for bay in &gone {
            if let Err(e) = self
                .client
                .publish(
                    topics::bay_state(bay.as_str()),
                    QoS::AtLeastOnce,
                    true,
                    Vec::new(),
                )
                .await
            {
                tracing::warn!(error = %e, bay = %bay, "cannot clear a retired bay's state");
            }
        }
        if !gone.is_empty() {
            tracing::info!(
                bays = gone.len(),
                "cleared the retained state of retired bays"
            );
        }
        *self.cleared_for.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::downgrade(&map));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(
            parse_url("mqtt://127.0.0.1:1883").unwrap(),
            ("127.0.0.1".into(), 1883)
        );
        assert_eq!(
            parse_url("mqtt://broker.city").unwrap(),
            ("broker.city".into(), 1883)
        );
        assert!(parse_url("http://x:1").is_err());
        assert!(parse_url("mqtt://:1883").is_err());
        assert!(parse_url("mqtt://h:port").is_err());
    }

    #[test]
    fn broker_urls_carry_credentials() {
        let u = parse_broker_url("mqtt://%24kerbside:s%40cret@127.0.0.1:1884").unwrap();
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.port, 1884);
        assert_eq!(u.credentials, Some(("$kerbside".into(), "s@cret".into())));
        assert_eq!(parse_broker_url("mqtt://h").unwrap().credentials, None);
        assert!(parse_broker_url("mqtt://:pw@h:1").is_err());
        assert!(parse_broker_url("mqtt://u:%zz@h:1").is_err());
    }
}
