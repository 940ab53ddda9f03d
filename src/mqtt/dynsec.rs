//! Broker administration on Mosquitto's dynamic-security plugin (contract
//! 6.1): the roles that make Mosquitto enforce who may publish and
//! subscribe where, and the adapter that tells a running Mosquitto of
//! devices added and revoked since its configuration was written.
//!
//! ```text
//! store (devices, broker password outbox) -> reconcile every 2 s -> $CONTROL/dynamic-security/v1
//!                                                                  <- .../v1/response (by correlationData)
//! ```
//!
//! The adapter keeps a connection of its own, so broker administration
//! never waits on ingest nor ingest on it. The plugin's `createClient`
//! takes only a plain password, which is why a new device's password waits
//! in the store's outbox; it is deleted once the broker has confirmed the
//! client. A revoked device's client is deleted, which also disconnects it.
//!
//! Mosquitto 2.0's plugin does not expand `%u`/`%c` in ACL topics, so each
//! device that sends events has a role of its own (its events and
//! rejections topics), and every device shares the bay-state reader role.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeReasonCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Mutex, oneshot, watch};

use super::topics;
use crate::domain::devices::DeviceKind;
use crate::domain::ids::DeviceId;
use crate::store::{DeviceRecord, Store, StoreError};

/// The role of kerbside's own client: read device events, speak for bays
/// and rejections, administer the plugin.
pub const SERVICE_ROLE: &str = "kerbside-service";

/// The role every device holds: read bay states (all, or one bay's).
pub const BAY_STATES_ROLE: &str = "kerbside-bay-states";

/// How often the outbox and revocations are reconciled with the broker.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(2);

/// How long to wait for the plugin's answer to one message of commands.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// How often to try again while the broker does not answer commands (not
/// a Mosquitto with the plugin, or kerbside may not administer it).
const RETRY_SILENT_EVERY: Duration = Duration::from_secs(30);

/// Most devices handled in one message of commands.
const DEVICES_PER_MESSAGE: usize = 50;

/// Largest packet accepted from the broker, bytes (answers to a full
/// message of commands are a few KiB).
const MAX_PACKET_BYTES: usize = 1 << 20;

/// One access rule of a role, as the plugin writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Acl {
    /// `publishClientSend`, `publishClientReceive`, `subscribeLiteral`,
    /// `subscribePattern`, `unsubscribeLiteral` or `unsubscribePattern`.
    pub acltype: &'static str,
    pub topic: String,
    pub priority: i32,
    pub allow: bool,
}

fn allow(acltype: &'static str, topic: impl Into<String>) -> Acl {
    Acl {
        acltype,
        topic: topic.into(),
        priority: 0,
        allow: true,
    }
}

/// A role: a name and its rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Role {
    pub rolename: String,
    pub acls: Vec<Acl>,
}

/// kerbside's own role, its instances taking device events through the
/// shared-subscription `share_group` (or the plain filter, when empty:
/// both are allowed). Everything not allowed is denied (the
/// configuration's default access is deny for every kind of access).
pub fn service_role(share_group: &str) -> Role {
    let mut acls = Vec::new();
    if !share_group.is_empty() {
        // The plugin matches a filter with wildcards against literal rules only.
        let shared = super::events_subscription(share_group);
        acls.push(allow("subscribeLiteral", &shared));
        acls.push(allow("unsubscribeLiteral", shared));
    }
    acls.extend([
        allow("subscribeLiteral", topics::EVENTS_FILTER),
        allow("unsubscribeLiteral", topics::EVENTS_FILTER),
        allow("publishClientReceive", topics::EVENTS_FILTER),
        allow("publishClientSend", topics::BAY_STATES_FILTER),
        allow("publishClientSend", topics::REJECTIONS_FILTER),
        allow("publishClientSend", topics::DYNSEC_FILTER),
        allow("subscribeLiteral", topics::DYNSEC_RESPONSES),
        allow("unsubscribeLiteral", topics::DYNSEC_RESPONSES),
        allow("publishClientReceive", topics::DYNSEC_RESPONSES),
    ]);
    Role {
        rolename: SERVICE_ROLE.into(),
        acls,
    }
}

/// The bay-state reader role: the wildcard filter (a literal rule: the
/// plugin matches a subscription's filter as a topic against pattern
/// rules, so a filter with a wildcard matches only a literal rule) or one
/// bay's state (a pattern rule); nothing else under `kerbside/`.
pub fn bay_states_role() -> Role {
    Role {
        rolename: BAY_STATES_ROLE.into(),
        acls: vec![
            allow("subscribeLiteral", topics::BAY_STATES_FILTER),
            allow("subscribePattern", topics::BAY_STATES_FILTER),
            allow("unsubscribeLiteral", topics::BAY_STATES_FILTER),
            allow("unsubscribePattern", topics::BAY_STATES_FILTER),
            allow("publishClientReceive", topics::BAY_STATES_FILTER),
        ],
    }
}

/// The name of a sending device's own role.
pub fn device_role_name(id: &DeviceId) -> String {
    format!("kerbside-device-{id}")
}

/// A device's own role, for kinds that send events: publish its events,
/// read its rejections. `None` for observers, who only read bay states.
pub fn device_role(id: &DeviceId, kind: DeviceKind) -> Option<Role> {
    kind.sends_events().then(|| Role {
        rolename: device_role_name(id),
        acls: vec![
            allow("publishClientSend", topics::events(id.as_str())),
            allow("subscribeLiteral", topics::rejections(id.as_str())),
            allow("unsubscribeLiteral", topics::rejections(id.as_str())),
            allow("publishClientReceive", topics::rejections(id.as_str())),
        ],
    })
}

/// The roles a device's client holds.
pub fn device_roles(id: &DeviceId, kind: DeviceKind) -> Vec<String> {
    let mut roles = vec![BAY_STATES_ROLE.to_owned()];
    roles.extend(device_role(id, kind).map(|r| r.rolename));
    roles
}

/// `[{"rolename": ...}]`, as clients list their roles.
pub fn role_refs(roles: &[String]) -> Value {
    Value::Array(roles.iter().map(|r| json!({"rolename": r})).collect())
}

/// Where the broker is, and kerbside's credentials there.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub host: String,
    pub port: u16,
    /// The administration connection's own client id (not the ingest
    /// link's, whose persistent session it would otherwise take over).
    pub client_id: String,
    pub credentials: (String, String),
}

/// Why a round of reconciliation stopped.
#[derive(Debug, thiserror::Error)]
enum AdminError {
    #[error("the broker connection is down")]
    Down,
    #[error("the broker did not answer dynamic-security commands within {0:?}")]
    NoAnswer(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a store task failed: {0}")]
    Task(String),
}

/// The plugin's answer to one command: `None` when it succeeded, else its
/// error text (e.g. "Client already exists").
type Answer = Option<String>;

#[derive(Deserialize)]
struct Responses {
    responses: Vec<Response>,
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    error: Option<String>,
    #[serde(rename = "correlationData", default)]
    correlation: Option<String>,
}

/// Commands sent and not yet answered, by correlation data.
type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Answer>>>>;

/// The administration connection.
#[derive(Clone)]
struct Admin {
    client: AsyncClient,
    waiting: Waiting,
    /// Whether the connection is up and subscribed to the plugin's answers.
    ready: watch::Receiver<bool>,
    next: Arc<AtomicU64>,
}

impl Admin {
    /// Sends `commands` in one message and waits for every answer, in the
    /// order given.
    async fn run(&self, mut commands: Vec<Value>) -> Result<Vec<Answer>, AdminError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        if !*self.ready.borrow() {
            return Err(AdminError::Down);
        }
        let mut answers = Vec::with_capacity(commands.len());
        {
            let mut waiting = self.waiting.lock().await;
            for c in &mut commands {
                let id = format!("k{}", self.next.fetch_add(1, Ordering::Relaxed));
                let (tx, rx) = oneshot::channel();
                waiting.insert(id.clone(), tx);
                c["correlationData"] = Value::String(id);
                answers.push(rx);
            }
        }
        let ids: Vec<String> = commands
            .iter()
            .filter_map(|c| c["correlationData"].as_str().map(str::to_owned))
            .collect();
        let payload = json!({ "commands": commands }).to_string();
        if self
            .client
            .publish(topics::DYNSEC_COMMANDS, QoS::AtLeastOnce, false, payload)
            .await
            .is_err()
        {
            self.forget(&ids).await;
            return Err(AdminError::Down);
        }
        let all = async {
            let mut out = Vec::with_capacity(answers.len());
            for rx in answers {
                out.push(rx.await.map_err(|_| AdminError::Down)?);
            }
            Ok(out)
        };
        let result = match tokio::time::timeout(ANSWER_WITHIN, all).await {
            Ok(r) => r,
            Err(_) => Err(AdminError::NoAnswer(ANSWER_WITHIN)),
        };
        if result.is_err() {
            self.forget(&ids).await;
        }
        result
    }

    async fn forget(&self, ids: &[String]) {
        let mut waiting = self.waiting.lock().await;
        for id in ids {
            waiting.remove(id);
        }
    }
}

/// Starts the administration connection and the reconciliation loop on
/// the current tokio runtime. Problems are logged, never fatal: a broker
/// that does not answer (not Mosquitto with the dynamic-security plugin)
/// is warned about once and asked again every 30 s.
pub fn spawn(config: AdminConfig, store: Store) {
    let mut options = MqttOptions::new(config.client_id, config.host, config.port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
        .set_credentials(config.credentials.0, config.credentials.1);
    let (client, eventloop) = AsyncClient::new(options, 64);
    let (ready_tx, ready) = watch::channel(false);
    let admin = Admin {
        client: client.clone(),
        waiting: Arc::new(Mutex::new(HashMap::new())),
        ready,
        next: Arc::new(AtomicU64::new(0)),
    };
    tokio::spawn(poll_loop(
        eventloop,
        client,
        admin.waiting.clone(),
        ready_tx,
    ));
    tokio::spawn(reconcile_loop(admin, store));
}

async fn poll_loop(
    mut eventloop: EventLoop,
    client: AsyncClient,
    waiting: Waiting,
    ready: watch::Sender<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    let mut warned = false;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(200);
                if let Err(e) = client.try_subscribe(topics::DYNSEC_RESPONSES, QoS::AtLeastOnce) {
                    tracing::warn!(error = %e, "cannot subscribe to the broker's administration answers");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let granted = ack
                    .return_codes
                    .iter()
                    .all(|c| matches!(c, SubscribeReasonCode::Success(_)));
                if granted {
                    warned = false;
                    let _ = ready.send(true);
                } else if !warned {
                    warned = true;
                    tracing::warn!(
                        topic = topics::DYNSEC_RESPONSES,
                        "the broker refused kerbside's subscription to its administration answers; \
                         devices added or revoked will not reach it"
                    );
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == topics::DYNSEC_RESPONSES => {
                match serde_json::from_slice::<Responses>(&p.payload) {
                    Ok(r) => {
                        let mut waiting = waiting.lock().await;
                        for response in r.responses {
                            if let Some(tx) = response
                                .correlation
                                .as_deref()
                                .and_then(|c| waiting.remove(c))
                            {
                                let _ = tx.send(response.error);
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read an answer of the broker's dynamic-security plugin");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                let _ = ready.send(false);
                // Whatever was waiting will never be answered.
                waiting.lock().await.clear();
                if !warned {
                    warned = true;
                    tracing::warn!(error = %e, "broker administration cannot reach the broker; retrying");
                } else {
                    tracing::debug!(error = %e, "broker administration still cannot reach the broker");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// What one round found to do.
#[derive(Default)]
struct Work {
    /// Unrevoked devices whose password the broker has yet to learn.
    add: Vec<(DeviceRecord, String)>,
    /// Outbox entries no broker needs (revoked or unknown devices).
    forget: Vec<String>,
    /// Revoked devices not yet removed from the broker by this process.
    remove: Vec<DeviceId>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, AdminError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AdminError::Task(e.to_string()))?
        .map_err(AdminError::from)
}

async fn reconcile_loop(admin: Admin, store: Store) {
    let mut removed: HashSet<DeviceId> = HashSet::new();
    // Device ids whose last refusal was logged, so a refusal that repeats
    // every round is told once.
    let mut told: HashMap<String, String> = HashMap::new();
    let mut silent = false;
    loop {
        tokio::time::sleep(if silent {
            RETRY_SILENT_EVERY
        } else {
            RECONCILE_EVERY
        })
        .await;
        match reconcile(&admin, &store, &mut removed, &mut told).await {
            Ok(()) => {
                if silent {
                    tracing::info!("the broker answers dynamic-security commands again");
                }
                silent = false;
            }
            Err(AdminError::Down) => {}
            Err(e @ AdminError::NoAnswer(_)) => {
                if !silent {
                    tracing::warn!(
                        error = %e,
                        "devices added or revoked will not reach the broker: is it Mosquitto 2 with \
                         the dynamic-security plugin, configured by `kerbside mosquitto-conf`? \
                         Asking again every {}s",
                        RETRY_SILENT_EVERY.as_secs()
                    );
                }
                silent = true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reconcile the broker's clients; will retry")
            }
        }
    }
}

async fn reconcile(
    admin: &Admin,
    store: &Store,
    removed: &mut HashSet<DeviceId>,
    told: &mut HashMap<String, String>,
) -> Result<(), AdminError> {
    let s = store.clone();
    let (pending, devices) =
        blocking(move || Ok((s.pending_broker_passwords()?, s.devices()?))).await?;
    let mut work = Work::default();
    let by_id: HashMap<&str, &DeviceRecord> =
        devices.iter().map(|d| (d.device_id.as_str(), d)).collect();
    for (id, password) in pending {
        match by_id.get(id.as_str()) {
            Some(d) if d.revoked_at.is_none() => work.add.push(((*d).clone(), password)),
            _ => work.forget.push(id),
        }
    }
    work.remove = devices
        .iter()
        .filter(|d| d.revoked_at.is_some() && !removed.contains(&d.device_id))
        .map(|d| d.device_id.clone())
        .collect();

    for id in work.forget {
        let s = store.clone();
        blocking(move || s.forget_broker_password(&id)).await?;
    }
    for chunk in work.add.chunks(DEVICES_PER_MESSAGE) {
        let done = add_clients(admin, chunk, told).await?;
        for id in done {
            let s = store.clone();
            blocking(move || s.forget_broker_password(&id)).await?;
        }
    }
    for chunk in work.remove.chunks(DEVICES_PER_MESSAGE) {
        removed.extend(remove_clients(admin, chunk, told).await?);
    }
    Ok(())
}

/// Logs a refusal, once per device and error.
fn tell(told: &mut HashMap<String, String>, id: &str, command: &str, error: &str) {
    if told.get(id).map(String::as_str) != Some(error) {
        tracing::warn!(
            device = id,
            command,
            error,
            "the broker refused a device change; will retry"
        );
        told.insert(id.to_owned(), error.to_owned());
    }
}

/// Creates each device's role and client; a client that exists already
/// (the configuration had it, or an earlier run made it) gets the password
/// set. Returns the ids the broker has confirmed.
async fn add_clients(
    admin: &Admin,
    devices: &[(DeviceRecord, String)],
    told: &mut HashMap<String, String>,
) -> Result<Vec<String>, AdminError> {
    let mut commands = Vec::new();
    // Per device: where its createRole (if any) and createClient commands are.
    let mut at: Vec<(Option<usize>, usize)> = Vec::with_capacity(devices.len());
    for (d, password) in devices {
        let role_at = device_role(&d.device_id, d.kind).map(|role| {
            commands.push(json!({
                "command": "createRole",
                "rolename": role.rolename,
                "acls": role.acls,
            }));
            commands.len() - 1
        });
        at.push((role_at, commands.len()));
        commands.push(json!({
            "command": "createClient",
            "username": d.device_id.as_str(),
            "password": password,
            "textname": d.name,
            "roles": role_refs(&device_roles(&d.device_id, d.kind)),
        }));
    }
    let answers = admin.run(commands).await?;
    let mut done = Vec::new();
    let mut reset = Vec::new();
    for ((d, password), &(role_at, client_at)) in devices.iter().zip(&at) {
        let id = d.device_id.as_str();
        if let Some(Some(e)) = role_at.and_then(|i| answers.get(i))
            && e != "Role already exists"
        {
            tell(told, id, "createRole", e);
            continue;
        }
        match answers.get(client_at) {
            Some(None) => done.push(id.to_owned()),
            Some(Some(e)) if e == "Client already exists" => reset.push((id, password)),
            Some(Some(e)) => tell(told, id, "createClient", e),
            None => {}
        }
    }
    let commands = reset
        .iter()
        .map(|(id, password)| {
            json!({"command": "setClientPassword", "username": id, "password": password})
        })
        .collect();
    let answers = admin.run(commands).await?;
    for ((id, _), answer) in reset.into_iter().zip(answers) {
        match answer {
            None => done.push(id.to_owned()),
            Some(e) => tell(told, id, "setClientPassword", &e),
        }
    }
    for id in &done {
        told.remove(id);
    }
    Ok(done)
}

/// Deletes each revoked device's client (the plugin disconnects it at
/// once) and its role. Returns the ids the broker no longer knows.
async fn remove_clients(
    admin: &Admin,
    ids: &[DeviceId],
    told: &mut HashMap<String, String>,
) -> Result<Vec<DeviceId>, AdminError> {
    let mut commands = Vec::with_capacity(ids.len() * 2);
    for id in ids {
        commands.push(json!({"command": "deleteClient", "username": id.as_str()}));
        commands.push(json!({"command": "deleteRole", "rolename": device_role_name(id)}));
    }
    let answers = admin.run(commands).await?;
    let mut gone = Vec::new();
    for (id, pair) in ids.iter().zip(answers.chunks(2)) {
        match &pair[0] {
            None => {
                tracing::info!(device = %id, "revoked device removed from the broker");
                gone.push(id.clone());
            }
            Some(e) if e == "Client not found" => gone.push(id.clone()),
            Some(e) => tell(told, id.as_str(), "deleteClient", e),
        }
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> DeviceId {
        DeviceId::parse(s).unwrap()
    }

    #[test]
    fn a_sender_has_its_own_role_and_reads_bay_states() {
        let d = id("s-1");
        assert_eq!(
            device_roles(&d, DeviceKind::Sensor),
            vec![BAY_STATES_ROLE.to_owned(), "kerbside-device-s-1".to_owned()]
        );
        let role = device_role(&d, DeviceKind::Handheld).unwrap();
        let send: Vec<&str> = role
            .acls
            .iter()
            .filter(|a| a.acltype == "publishClientSend")
            .map(|a| a.topic.as_str())
            .collect();
        assert_eq!(send, vec!["kerbside/v1/devices/s-1/events"]);
        assert!(role.acls.iter().all(|a| a.allow));
    }

    #[test]
    fn an_observer_only_reads_bay_states() {
        let o = id("sign-1");
        assert!(device_role(&o, DeviceKind::Observer).is_none());
        assert_eq!(
            device_roles(&o, DeviceKind::Observer),
            vec![BAY_STATES_ROLE.to_owned()]
        );
        assert!(
            bay_states_role()
                .acls
                .iter()
                .all(|a| a.topic == topics::BAY_STATES_FILTER && a.acltype != "publishClientSend")
        );
    }

    #[test]
    fn only_kerbside_may_speak_for_bays_and_rejections() {
        let sends: Vec<String> = service_role("kerbside")
            .acls
            .into_iter()
            .filter(|a| a.acltype == "publishClientSend")
            .map(|a| a.topic)
            .collect();
        assert!(sends.contains(&topics::BAY_STATES_FILTER.to_owned()));
        assert!(sends.contains(&topics::REJECTIONS_FILTER.to_owned()));
        assert!(sends.contains(&topics::DYNSEC_FILTER.to_owned()));
    }
}
