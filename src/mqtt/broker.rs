//! The embedded MQTT 3.1.1 broker: no setup, started in-process when no
//! `--mqtt-url` is given, and as strict as a configured Mosquitto.
//!
//! It is ours (on rumqttc's packet codec) because no embeddable broker did
//! what a street needs: rumqttd checks credentials only at CONNECT, has no
//! topic rules, truncates retained delivery to 100 messages and buffers 200
//! notifications a connection. Here:
//!
//! - **Only registered devices connect** ([`Registry::authenticate`]), and
//!   every PUBLISH and SUBSCRIBE passes [`topics::may_publish`] /
//!   [`topics::may_subscribe`]. A refused publish is acknowledged and dropped
//!   (MQTT 3.1.1 has no negative acknowledgement; Mosquitto does the same),
//!   a refused subscription gets the failure code. Revoked devices are
//!   disconnected at once.
//! - **A device's QoS 1 publish is acknowledged only when kerbside has
//!   stored it**: the PUBACK to the device waits for kerbside's own client
//!   to acknowledge its copy, which it does after the commit. The broker
//!   keeps nothing on disk, yet loses nothing acknowledged: a message in
//!   flight when the process dies was never acknowledged, so the device
//!   sends it again.
//! - **Every retained message reaches a new subscriber**, through the same
//!   windowed queue as live messages.
//!
//! Sessions live in memory. Only kerbside's own session outlives its
//! connection in a way that matters (its queue holds what devices sent
//! while it was away); it is created at start, so nothing sent before
//! kerbside subscribes is lost.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{SocketAddr, TcpListener as StdListener, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::{
    ConnAck, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, PubRel, Publish, QoS, SubAck,
    SubscribeReasonCode, UnsubAck,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use super::topics;
use crate::devices::Registry;
use crate::domain::devices::Principal;

/// Why the embedded broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on --mqtt-listen {addr}: {message}")]
    Listen { addr: String, message: String },
}

/// Where the embedded broker listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:1883";

/// Largest MQTT packet the embedded broker takes, bytes: above the 256 KiB
/// event limit, so an oversized payload reaches kerbside and is rejected
/// with a reason instead of the device being disconnected.
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// Messages sent to kerbside's client and not yet acknowledged, at most
/// (its client takes as many).
const SERVICE_INFLIGHT: usize = 1000;
/// The same for devices and other clients.
const CLIENT_INFLIGHT: usize = 100;
/// Messages queued for a device's session, at most; beyond that the
/// oldest is dropped (bay states are retained, so a reconnecting display
/// loses nothing it needs). Kerbside's own queue is not capped: what
/// devices may have outstanding bounds it (see [`HELD_PER_CONNECTION`]).
const CLIENT_QUEUE: usize = 10_000;
/// QoS 1 publishes a connection may have waiting for kerbside's commit;
/// past that the broker stops reading from it (back-pressure, not loss).
const HELD_PER_CONNECTION: usize = 1000;
/// Connections held at once, at most; more are closed on arrival.
const MAX_CONNECTIONS: usize = 10_000;
/// How long a new connection has to send CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type ConnId = u64;

/// Sessions are keyed by who holds them as well as by client id, so that
/// no client can take over another identity's session (kerbside's above
/// all) by choosing its client id.
type SessionKey = Arc<str>;

fn session_key(who: &Principal, client_id: &str) -> SessionKey {
    let owner = match who {
        Principal::Service => "$service".to_owned(),
        Principal::Device { id, .. } => format!("device:{id}"),
        Principal::Guest => "$guest".to_owned(),
    };
    Arc::from(format!("{owner}\u{0}{client_id}"))
}

/// What a connection's writer is told to do.
enum Command {
    Send(Packet),
    Close,
}

/// A publish whose acknowledgement to its sender waits on kerbside.
#[derive(Clone)]
struct Origin {
    session: SessionKey,
    conn: ConnId,
    pkid: u16,
    qos: QoS,
    /// The sender's allowance of held publishes; a permit returns on ack.
    held: Arc<Semaphore>,
}

#[derive(Clone)]
struct Out {
    topic: Arc<str>,
    payload: Bytes,
    qos: QoS,
    retain: bool,
    origin: Option<Origin>,
}

struct Link {
    conn: ConnId,
    tx: mpsc::UnboundedSender<Command>,
}

struct Session {
    who: Principal,
    persistent: bool,
    subscriptions: HashMap<String, QoS>,
    link: Option<Link>,
    queue: VecDeque<Out>,
    inflight: BTreeMap<u16, Out>,
    next_pkid: u16,
    max_inflight: usize,
    dropped: u64,
}

impl Session {
    fn new(who: Principal, persistent: bool) -> Session {
        let max_inflight = if who == Principal::Service {
            SERVICE_INFLIGHT
        } else {
            CLIENT_INFLIGHT
        };
        Session {
            who,
            persistent,
            subscriptions: HashMap::new(),
            link: None,
            queue: VecDeque::new(),
            inflight: BTreeMap::new(),
            next_pkid: 0,
            max_inflight,
            dropped: 0,
        }
    }

    fn send(&self, packet: Packet) {
        if let Some(link) = &self.link {
            let _ = link.tx.send(Command::Send(packet));
        }
    }

    fn free_pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
            if !self.inflight.contains_key(&self.next_pkid) {
                return self.next_pkid;
            }
        }
    }

    /// Sends queued messages while the in-flight window has room.
    fn pump(&mut self) {
        if self.link.is_none() {
            return;
        }
        while self.inflight.len() < self.max_inflight {
            let Some(out) = self.queue.pop_front() else {
                return;
            };
            let pkid = self.free_pkid();
            self.send(Packet::Publish(publish_of(&out, pkid, false)));
            self.inflight.insert(pkid, out);
        }
    }

    /// Takes a message for this session: QoS 0 goes out at once or not at
    /// all; QoS 1 is queued and sent as the window allows.
    fn offer(&mut self, out: Out) {
        if out.qos == QoS::AtMostOnce {
            self.send(Packet::Publish(publish_of(&out, 0, false)));
            return;
        }
        if self.who != Principal::Service && self.queue.len() >= CLIENT_QUEUE {
            self.queue.pop_front();
            self.dropped += 1;
        }
        self.queue.push_back(out);
        self.pump();
    }
}

/// The lower of two QoS levels.
fn lower(a: QoS, b: QoS) -> QoS {
    if (a as u8) <= (b as u8) { a } else { b }
}

fn publish_of(out: &Out, pkid: u16, dup: bool) -> Publish {
    Publish {
        dup,
        qos: out.qos,
        retain: out.retain,
        topic: out.topic.to_string(),
        pkid,
        payload: out.payload.clone(),
    }
}

#[derive(Default)]
struct Router {
    sessions: HashMap<SessionKey, Session>,
    /// Subscribers per filter.
    filters: HashMap<String, HashSet<SessionKey>>,
    /// The filters above with a wildcard: a publish is matched against
    /// these one by one, and against the others by a single lookup.
    wildcards: HashSet<String>,
    retained: BTreeMap<Arc<str>, Bytes>,
    /// Deliveries to kerbside still to be acknowledged, per held publish.
    holds: HashMap<(ConnId, u16), usize>,
    next_conn: ConnId,
}

impl Router {
    /// Routes a publish that passed the rules to every matching session.
    /// Copies for kerbside hold `origin`'s acknowledgement until kerbside
    /// has acknowledged them all; with none, it is acknowledged at once.
    fn route(
        &mut self,
        topic: &str,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        origin: Option<Origin>,
    ) {
        let topic: Arc<str> = Arc::from(topic);
        if retain {
            if payload.is_empty() {
                self.retained.remove(&topic);
            } else {
                self.retained.insert(topic.clone(), payload.clone());
            }
        }
        let mut targets: HashMap<SessionKey, QoS> = HashMap::new();
        let exact = self.filters.get_key_value(&*topic);
        let wild = self
            .wildcards
            .iter()
            .filter(|f| matches(f, &topic))
            .filter_map(|f| self.filters.get_key_value(f));
        for (filter, keys) in exact.into_iter().chain(wild) {
            for key in keys {
                let granted = self
                    .sessions
                    .get(key)
                    .and_then(|s| s.subscriptions.get(filter))
                    .copied()
                    .unwrap_or(QoS::AtMostOnce);
                let best = targets.entry(key.clone()).or_insert(granted);
                if granted as u8 > *best as u8 {
                    *best = granted;
                }
            }
        }
        let mut holds = 0;
        for (key, granted) in targets {
            let Some(session) = self.sessions.get_mut(&key) else {
                continue;
            };
            let qos = lower(lower(qos, granted), QoS::AtLeastOnce);
            let hold = qos == QoS::AtLeastOnce && session.who == Principal::Service;
            if hold {
                holds += 1;
            }
            session.offer(Out {
                topic: topic.clone(),
                payload: payload.clone(),
                qos,
                retain: false,
                origin: if hold { origin.clone() } else { None },
            });
        }
        if let Some(o) = origin {
            if holds == 0 {
                self.acknowledge(&o);
            } else {
                self.holds.insert((o.conn, o.pkid), holds);
            }
        }
    }

    /// Tells a publish's sender that it is stored, if it is still there.
    fn acknowledge(&mut self, o: &Origin) {
        o.held.add_permits(1);
        if let Some(s) = self.sessions.get(&o.session)
            && s.link.as_ref().is_some_and(|l| l.conn == o.conn)
        {
            s.send(match o.qos {
                QoS::ExactlyOnce => Packet::PubRec(PubRec::new(o.pkid)),
                _ => Packet::PubAck(PubAck::new(o.pkid)),
            });
        }
    }

    fn puback(&mut self, key: &SessionKey, pkid: u16) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let Some(out) = session.inflight.remove(&pkid) else {
            return;
        };
        session.pump();
        if let Some(o) = out.origin {
            let slot = (o.conn, o.pkid);
            let left = self.holds.get(&slot).map_or(0, |n| n.saturating_sub(1));
            if left == 0 {
                self.holds.remove(&slot);
                self.acknowledge(&o);
            } else {
                self.holds.insert(slot, left);
            }
        }
    }

    fn subscribe(&mut self, key: &SessionKey, filter: &str, qos: QoS) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        session.subscriptions.insert(filter.to_owned(), qos);
        self.add_subscriber(filter, key);
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let retained: Vec<(Arc<str>, Bytes)> = self
            .retained
            .iter()
            .filter(|(t, _)| matches(filter, t))
            .map(|(t, p)| (t.clone(), p.clone()))
            .collect();
        for (topic, payload) in retained {
            session.offer(Out {
                topic,
                payload,
                qos: lower(qos, QoS::AtLeastOnce),
                retain: true,
                origin: None,
            });
        }
    }

    fn unsubscribe(&mut self, key: &SessionKey, filter: &str) {
        if let Some(s) = self.sessions.get_mut(key) {
            s.subscriptions.remove(filter);
        }
        self.drop_subscriber(filter, key);
    }

    fn add_subscriber(&mut self, filter: &str, key: &SessionKey) {
        self.filters
            .entry(filter.to_owned())
            .or_default()
            .insert(key.clone());
        if filter.contains(['+', '#']) {
            self.wildcards.insert(filter.to_owned());
        }
    }

    fn drop_subscriber(&mut self, filter: &str, key: &SessionKey) {
        if let Some(keys) = self.filters.get_mut(filter) {
            keys.remove(key);
            if keys.is_empty() {
                self.filters.remove(filter);
                self.wildcards.remove(filter);
            }
        }
    }

    fn remove_session(&mut self, key: &SessionKey) {
        let Some(session) = self.sessions.remove(key) else {
            return;
        };
        for filter in session.subscriptions.keys() {
            self.drop_subscriber(filter, key);
        }
        if let Some(link) = &session.link {
            let _ = link.tx.send(Command::Close);
        }
        // Whatever it held for others will never be acknowledged by it:
        // release the senders (they resend on reconnect; kerbside's
        // idempotency key absorbs the copy).
        for out in session.inflight.into_values().chain(session.queue) {
            if let Some(o) = out.origin {
                let slot = (o.conn, o.pkid);
                if self.holds.remove(&slot).is_some() {
                    o.held.add_permits(1);
                }
            }
        }
    }

    /// Opens (or takes over) a session for a new connection; returns
    /// whether a session was present.
    fn attach(
        &mut self,
        key: &SessionKey,
        who: &Principal,
        clean: bool,
        conn: ConnId,
        tx: mpsc::UnboundedSender<Command>,
    ) -> bool {
        if clean {
            self.remove_session(key);
        }
        let present = self.sessions.contains_key(key);
        let session = self
            .sessions
            .entry(key.clone())
            .or_insert_with(|| Session::new(who.clone(), !clean));
        session.persistent = !clean;
        if let Some(old) = session.link.replace(Link { conn, tx }) {
            let _ = old.tx.send(Command::Close);
        }
        // Resend what was in flight, then carry on with the queue.
        let inflight: Vec<(u16, Out)> = session
            .inflight
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for (pkid, out) in inflight {
            session.send(Packet::Publish(publish_of(&out, pkid, true)));
        }
        present
    }

    /// Whether `conn` is still the connection of session `key`.
    fn is_current(&self, key: &SessionKey, conn: ConnId) -> bool {
        self.sessions
            .get(key)
            .and_then(|s| s.link.as_ref())
            .is_some_and(|l| l.conn == conn)
    }

    fn detach(&mut self, key: &SessionKey, conn: ConnId) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        if session.link.as_ref().is_none_or(|l| l.conn != conn) {
            return; // taken over by a newer connection
        }
        session.link = None;
        if !session.persistent {
            self.remove_session(key);
        }
    }

    fn revoke(&mut self, device: &str) {
        let keys: Vec<SessionKey> = self
            .sessions
            .iter()
            .filter(
                |(_, s)| matches!(&s.who, Principal::Device { id, .. } if id.as_str() == device),
            )
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.remove_session(&k);
        }
    }
}

/// Whether a topic filter matches a topic (MQTT 3.1.1 section 4.7): `+`
/// is one level, `#` the rest; wildcards at the first level do not match
/// topics starting with `$`.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether a subscription filter is well formed: `#` only as the whole
/// last level, `+` only as a whole level.
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, l)| {
        (*l == "#" && i == levels.len() - 1) || *l == "+" || (!l.contains('#') && !l.contains('+'))
    })
}

fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

/// The running embedded broker.
#[derive(Clone)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    router: Arc<Mutex<Router>>,
}

impl EmbeddedBroker {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Retained messages held, for metrics and tests.
    pub fn retained_count(&self) -> usize {
        lock(&self.router).retained.len()
    }
}

fn lock(router: &Mutex<Router>) -> std::sync::MutexGuard<'_, Router> {
    router.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the broker on `listen` (`HOST:PORT`; port 0 picks a free port) on
/// the current tokio runtime. `service_client_id` is kerbside's own client
/// id: its session, subscribed to every device's events, exists from the
/// start.
pub fn start(
    listen: &str,
    registry: Arc<Registry>,
    service_client_id: &str,
) -> Result<EmbeddedBroker, BrokerError> {
    let err = |message: String| BrokerError::Listen {
        addr: listen.to_owned(),
        message,
    };
    let addr = listen
        .to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("the address resolves to nothing".into()))?;
    let std_listener = StdListener::bind(addr).map_err(|e| err(e.to_string()))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| err(e.to_string()))?;
    let addr = std_listener.local_addr().map_err(|e| err(e.to_string()))?;
    let listener = TcpListener::from_std(std_listener).map_err(|e| err(e.to_string()))?;

    let mut router = Router::default();
    let key = session_key(&Principal::Service, service_client_id);
    let mut session = Session::new(Principal::Service, true);
    session
        .subscriptions
        .insert(topics::EVENTS_FILTER.to_owned(), QoS::AtLeastOnce);
    router.sessions.insert(key.clone(), session);
    router.add_subscriber(topics::EVENTS_FILTER, &key);
    let router = Arc::new(Mutex::new(router));

    let mut revoked = registry.revocations();
    let r = router.clone();
    tokio::spawn(async move {
        loop {
            match revoked.recv().await {
                Ok(id) => {
                    lock(&r).revoke(id.as_str());
                    tracing::info!(device = %id, "revoked device disconnected from the embedded broker");
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            }
        }
    });

    let r = router.clone();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, max = MAX_CONNECTIONS,
                            "the embedded broker is full; refusing a connection");
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let (r, reg) = (r.clone(), registry.clone());
                    tokio::spawn(async move {
                        serve(stream, peer, r, reg).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the embedded broker cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(EmbeddedBroker { addr, router })
}

/// Reads one packet, waiting for more bytes as needed.
async fn read_packet(
    stream: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
) -> Result<Packet, String> {
    loop {
        match Packet::read(buf, MAX_PAYLOAD) {
            Ok(p) => return Ok(p),
            Err(rumqttc::Error::InsufficientBytes(n)) => {
                buf.reserve(n.max(4096));
                let read = stream.read_buf(buf).await.map_err(|e| e.to_string())?;
                if read == 0 {
                    return Err("connection closed".into());
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

async fn write_loop(
    mut stream: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Command>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while let Some(cmd) = rx.recv().await {
        let mut next = Some(cmd);
        // Gather what is queued into one write.
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Send(p) => {
                    if p.write(&mut buf, MAX_PAYLOAD * 16).is_err() {
                        continue;
                    }
                }
                Command::Close => {
                    let _ = stream.write_all(&buf).await;
                    let _ = stream.shutdown().await;
                    return;
                }
            }
            if buf.len() < 256 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        if stream.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
    }
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    router: Arc<Mutex<Router>>,
    registry: Arc<Registry>,
) {
    let (mut reader, writer) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(write_loop(writer, rx));
    let mut buf = BytesMut::with_capacity(8 * 1024);

    let connect =
        match tokio::time::timeout(CONNECT_TIMEOUT, read_packet(&mut reader, &mut buf)).await {
            Ok(Ok(Packet::Connect(c))) => c,
            Ok(Err(e)) if e.contains("protocol") => {
                let _ = tx.send(Command::Send(Packet::ConnAck(ConnAck::new(
                    ConnectReturnCode::RefusedProtocolVersion,
                    false,
                ))));
                let _ = tx.send(Command::Close);
                return;
            }
            _ => {
                let _ = tx.send(Command::Close);
                return;
            }
        };
    let refuse = |code| {
        let _ = tx.send(Command::Send(Packet::ConnAck(ConnAck::new(code, false))));
        let _ = tx.send(Command::Close);
    };
    if connect.protocol != rumqttc::Protocol::V4 {
        refuse(ConnectReturnCode::RefusedProtocolVersion);
        return;
    }
    let (username, password) = match &connect.login {
        Some(l) => (Some(l.username.clone()), Some(l.password.clone())),
        None => (None, None),
    };
    let reg = registry.clone();
    let (u, p) = (username.clone(), password.clone());
    let who = tokio::task::spawn_blocking(move || reg.authenticate(u.as_deref(), p.as_deref()))
        .await
        .ok()
        .flatten();
    let Some(who) = who else {
        tracing::info!(%peer, username = username.as_deref().unwrap_or("(none)"),
            "embedded broker refused a connection: not a registered device or wrong password");
        refuse(if username.is_none() {
            ConnectReturnCode::NotAuthorized
        } else {
            ConnectReturnCode::BadUserNamePassword
        });
        return;
    };
    if connect.client_id.is_empty() && !connect.clean_session {
        refuse(ConnectReturnCode::BadClientId);
        return;
    }
    let client_id = if connect.client_id.is_empty() {
        format!("auto-{peer}")
    } else {
        connect.client_id.clone()
    };
    let key = session_key(&who, &client_id);
    let conn = {
        let mut r = lock(&router);
        r.next_conn += 1;
        let conn = r.next_conn;
        let present = r.attach(&key, &who, connect.clean_session, conn, tx.clone());
        let _ = tx.send(Command::Send(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Success,
            present,
        ))));
        if let Some(s) = r.sessions.get_mut(&key) {
            s.pump();
        }
        conn
    };
    let held = Arc::new(Semaphore::new(HELD_PER_CONNECTION));
    let keep_alive = Duration::from_secs(u64::from(connect.keep_alive));
    // QoS 2 publishes whose PUBREC went out, waiting for PUBREL.
    let mut awaiting_rel: HashSet<u16> = HashSet::new();
    let mut clean_exit = false;

    loop {
        let next = if keep_alive.is_zero() {
            read_packet(&mut reader, &mut buf).await
        } else {
            match tokio::time::timeout(keep_alive * 3 / 2, read_packet(&mut reader, &mut buf)).await
            {
                Ok(r) => r,
                Err(_) => Err("keep-alive expired".into()),
            }
        };
        let packet = match next {
            Ok(p) => p,
            Err(_) => break,
        };
        // A revoked device, or a client taken over by a newer connection
        // with its id, is heard no more, even if it keeps its socket open.
        if !lock(&router).is_current(&key, conn) {
            break;
        }
        match packet {
            Packet::Publish(p) => {
                if !valid_topic(&p.topic) {
                    break;
                }
                if p.qos == QoS::ExactlyOnce && awaiting_rel.contains(&p.pkid) {
                    // A QoS 2 publish resent on the same connection: it is
                    // already taken, and its PUBREC goes out (or went out)
                    // once kerbside has stored it; answering now would
                    // acknowledge what may not be on disk.
                    continue;
                }
                if !topics::may_publish(&who, &p.topic) {
                    tracing::info!(%peer, client = %client_id, topic = %p.topic,
                        "embedded broker dropped a publish its sender may not make");
                    match p.qos {
                        QoS::AtMostOnce => {}
                        QoS::AtLeastOnce => {
                            let _ = tx.send(Command::Send(Packet::PubAck(PubAck::new(p.pkid))));
                        }
                        QoS::ExactlyOnce => {
                            awaiting_rel.insert(p.pkid);
                            let _ = tx.send(Command::Send(Packet::PubRec(PubRec::new(p.pkid))));
                        }
                    }
                    continue;
                }
                let origin = if p.qos == QoS::AtMostOnce {
                    None
                } else {
                    // Back-pressure: wait while too many are held for kerbside.
                    match held.clone().acquire_owned().await {
                        Ok(permit) => permit.forget(),
                        Err(_) => break,
                    }
                    if p.qos == QoS::ExactlyOnce {
                        awaiting_rel.insert(p.pkid);
                    }
                    Some(Origin {
                        session: key.clone(),
                        conn,
                        pkid: p.pkid,
                        qos: p.qos,
                        held: held.clone(),
                    })
                };
                lock(&router).route(&p.topic, p.payload, p.qos, p.retain, origin);
            }
            Packet::PubAck(a) => lock(&router).puback(&key, a.pkid),
            Packet::PubRec(r) => {
                // We send at most QoS 1; answer as the protocol asks.
                let _ = tx.send(Command::Send(Packet::PubRel(PubRel::new(r.pkid))));
                lock(&router).puback(&key, r.pkid);
            }
            Packet::PubRel(r) => {
                awaiting_rel.remove(&r.pkid);
                let _ = tx.send(Command::Send(Packet::PubComp(PubComp::new(r.pkid))));
            }
            Packet::PubComp(_) => {}
            Packet::Subscribe(s) => {
                let mut r = lock(&router);
                let mut codes = Vec::with_capacity(s.filters.len());
                let mut granted = Vec::new();
                for f in &s.filters {
                    if valid_filter(&f.path) && topics::may_subscribe(&who, &f.path) {
                        let qos = lower(f.qos, QoS::AtLeastOnce);
                        codes.push(SubscribeReasonCode::Success(qos));
                        granted.push((f.path.clone(), qos));
                    } else {
                        tracing::info!(%peer, client = %client_id, filter = %f.path,
                            "embedded broker refused a subscription");
                        codes.push(SubscribeReasonCode::Failure);
                    }
                }
                // SUBACK first, then the retained messages (section 3.8.4).
                if let Some(session) = r.sessions.get(&key) {
                    session.send(Packet::SubAck(SubAck::new(s.pkid, codes)));
                }
                for (filter, qos) in granted {
                    r.subscribe(&key, &filter, qos);
                }
            }
            Packet::Unsubscribe(u) => {
                let mut r = lock(&router);
                for t in &u.topics {
                    r.unsubscribe(&key, t);
                }
                let _ = tx.send(Command::Send(Packet::UnsubAck(UnsubAck::new(u.pkid))));
            }
            Packet::PingReq => {
                let _ = tx.send(Command::Send(Packet::PingResp));
            }
            Packet::Disconnect => {
                clean_exit = true;
                break;
            }
            Packet::Connect(_) => break, // a second CONNECT is a protocol violation
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                break;
            }
        }
    }

    let mut r = lock(&router);
    let still_ours = r.is_current(&key, conn);
    if !clean_exit
        && still_ours
        && let Some(will) = &connect.last_will
        && valid_topic(&will.topic)
        && topics::may_publish(&who, &will.topic)
    {
        r.route(
            &will.topic,
            will.message.clone(),
            will.qos,
            will.retain,
            None,
        );
    }
    r.detach(&key, conn);
    let _ = tx.send(Command::Close);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_mqtt_says() {
        assert!(matches(
            "kerbside/v1/bays/+/state",
            "kerbside/v1/bays/QF-N-001/state"
        ));
        assert!(!matches(
            "kerbside/v1/bays/+/state",
            "kerbside/v1/bays/a/b/state"
        ));
        assert!(matches("kerbside/#", "kerbside/v1/bays/x/state"));
        assert!(matches("kerbside/#", "kerbside"));
        assert!(matches("#", "a/b"));
        assert!(!matches("#", "$CONTROL/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("a/+", "a/"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
    }

    #[test]
    fn malformed_filters_are_refused() {
        for ok in ["a/#", "#", "+", "a/+/b", "kerbside/v1/bays/+/state"] {
            assert!(valid_filter(ok), "{ok}");
        }
        for bad in ["", "a/#/b", "a#", "a/b+", "#/a", "a/\0"] {
            assert!(!valid_filter(bad), "{bad:?}");
        }
        assert!(!valid_topic("a/+"));
        assert!(valid_topic("a/b"));
    }

    #[test]
    fn sessions_of_different_identities_never_collide() {
        let d = Principal::Device {
            id: crate::domain::ids::DeviceId::parse("kerbside").unwrap(),
            kind: crate::domain::devices::DeviceKind::Sensor,
        };
        assert_ne!(
            session_key(&d, "kerbside"),
            session_key(&Principal::Service, "kerbside")
        );
    }
}
