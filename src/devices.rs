//! The device registry as the running service sees it: a cache of the
//! store's registered devices, answering "who is this broker client?" for
//! the embedded broker and "may this device send?" for ingest.
//!
//! The store is the truth. The cache is reloaded every few seconds (so a
//! device added or revoked by `kerbside device` in another process takes
//! effect within [`RELOAD_EVERY`]), changed at once by the REST endpoints,
//! and a miss is looked up in the store directly, so a device added a moment
//! ago is never refused for the cache's sake.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::domain::devices::{DeviceKind, Principal, generate_password, verify_password};
use crate::domain::ids::DeviceId;
use crate::store::{DeviceRecord, Store, StoreError};

/// How often the cache is reloaded from the store.
pub const RELOAD_EVERY: Duration = Duration::from_secs(3);

/// How long an unknown device id is remembered as unknown before the store
/// is asked again (bounds the store lookups a flood of made-up ids costs).
const MISS_TTL: Duration = Duration::from_secs(2);

/// The broker username of kerbside's own client. It is not a valid device
/// identifier (`$` is outside the identifier alphabet), so no device can
/// be registered under it.
pub const SERVICE_USERNAME: &str = "$kerbside";

/// Whether events need a registered device (contract 6.1, `--devices`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceMode {
    /// Only registered, unrevoked devices may connect and send (the default).
    Registered,
    /// Any device id is accepted, as in v1: for labs, demos and test suites.
    Open,
}

#[derive(Debug, Clone)]
struct Entry {
    kind: DeviceKind,
    digest: Arc<str>,
    revoked: bool,
}

impl From<&DeviceRecord> for Entry {
    fn from(d: &DeviceRecord) -> Entry {
        Entry {
            kind: d.kind,
            digest: Arc::from(d.password_digest.as_str()),
            revoked: d.revoked_at.is_some(),
        }
    }
}

#[derive(Default)]
struct Known {
    devices: HashMap<DeviceId, Entry>,
    misses: HashMap<String, Instant>,
}

/// The registry; share it behind an `Arc`.
pub struct Registry {
    mode: DeviceMode,
    store: Store,
    /// The password of kerbside's own client on the embedded broker: fresh
    /// at every start, never stored.
    service_password: String,
    known: RwLock<Known>,
    revoked: broadcast::Sender<DeviceId>,
}

impl Registry {
    /// Loads every registered device from the store (blocking).
    pub fn load(store: Store, mode: DeviceMode) -> Result<Registry, StoreError> {
        let (revoked, _) = broadcast::channel(1024);
        let registry = Registry {
            mode,
            store,
            service_password: generate_password().secret,
            known: RwLock::new(Known::default()),
            revoked,
        };
        registry.reload()?;
        Ok(registry)
    }

    /// Whether registration is enforced.
    pub fn mode(&self) -> DeviceMode {
        self.mode
    }

    /// Username and password of kerbside's own client on the embedded broker.
    pub fn service_credentials(&self) -> (&str, &str) {
        (SERVICE_USERNAME, &self.service_password)
    }

    /// Device ids revoked from now on, as they are noticed (for the
    /// embedded broker, which closes their connections).
    pub fn revocations(&self) -> broadcast::Receiver<DeviceId> {
        self.revoked.subscribe()
    }

    /// Re-reads the store and tells of devices revoked since the last read
    /// (blocking).
    pub fn reload(&self) -> Result<(), StoreError> {
        let fresh: HashMap<DeviceId, Entry> = self
            .store
            .devices()?
            .iter()
            .map(|d| (d.device_id.clone(), Entry::from(d)))
            .collect();
        let newly_revoked: Vec<DeviceId> = {
            let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
            let newly = fresh
                .iter()
                .filter(|(id, e)| e.revoked && known.devices.get(*id).is_none_or(|k| !k.revoked))
                .map(|(id, _)| id.clone())
                .collect();
            known.devices = fresh;
            known.misses.clear();
            newly
        };
        for id in newly_revoked {
            let _ = self.revoked.send(id);
        }
        Ok(())
    }

    /// Takes a device the store has just registered or revoked into account
    /// at once.
    pub fn note(&self, record: &DeviceRecord) {
        let entry = Entry::from(record);
        let newly_revoked = {
            let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
            known.misses.remove(record.device_id.as_str());
            let was_revoked = known
                .devices
                .insert(record.device_id.clone(), entry.clone())
                .is_some_and(|e| e.revoked);
            entry.revoked && !was_revoked
        };
        if newly_revoked {
            let _ = self.revoked.send(record.device_id.clone());
        }
    }

    /// The device's entry (blocking). With `fresh`, straight from the store
    /// (a connection attempt: a device registered or revoked a moment ago,
    /// even by another process, is judged as the store has it now, and the
    /// cache learns it). Otherwise from the cache, else the store; an id
    /// the store did not know a moment ago is not looked up again (ingest,
    /// where a flood of made-up ids could cost a lookup a message).
    fn entry(&self, id: &str, fresh: bool) -> Result<Option<Entry>, StoreError> {
        if !fresh {
            let known = self.known.read().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = known.devices.get(id) {
                return Ok(Some(e.clone()));
            }
            if known.misses.get(id).is_some_and(|t| t.elapsed() < MISS_TTL) {
                return Ok(None);
            }
        }
        let Ok(device_id) = DeviceId::parse(id) else {
            return Ok(None);
        };
        match self.store.device(&device_id)? {
            Some(d) => {
                self.note(&d);
                Ok(Some(Entry::from(&d)))
            }
            None => {
                let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
                known.misses.insert(id.to_owned(), Instant::now());
                Ok(None)
            }
        }
    }

    /// Checks broker credentials (blocking: a cache miss asks the store).
    /// `None` refuses the connection: no username, an unknown or revoked
    /// device, or a wrong password. In open mode every client but one
    /// claiming to be kerbside connects, as a guest.
    pub fn authenticate(
        &self,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Option<Principal> {
        if username == Some(SERVICE_USERNAME) {
            let ok = password.is_some_and(|p| constant_time_eq(p, &self.service_password));
            return ok.then_some(Principal::Service);
        }
        if self.mode == DeviceMode::Open {
            return Some(Principal::Guest);
        }
        let username = username?;
        let entry = match self.entry(username, true) {
            Ok(e) => e?,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check a device's credentials; refusing it");
                return None;
            }
        };
        if entry.revoked || !verify_password(password?, &entry.digest) {
            return None;
        }
        let id = DeviceId::parse(username).ok()?;
        Some(Principal::Device {
            id,
            kind: entry.kind,
        })
    }

    /// Whether events from `device` may be stored (blocking on a cache
    /// miss). In open mode every device may; otherwise only a registered,
    /// unrevoked device of a kind that sends events.
    pub fn admits(&self, device: &DeviceId) -> Result<bool, StoreError> {
        if self.mode == DeviceMode::Open {
            return Ok(true);
        }
        Ok(self
            .entry(device.as_str(), false)?
            .is_some_and(|e| !e.revoked && e.kind.sends_events()))
    }

    /// Reloads the cache every [`RELOAD_EVERY`] on the current tokio runtime.
    pub fn spawn_reloader(self: &Arc<Self>) {
        let registry = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let r = registry.clone();
                match tokio::task::spawn_blocking(move || r.reload()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot reload the device registry"),
                    Err(e) => tracing::warn!(error = %e, "the device registry reload failed"),
                }
            }
        });
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn registry(mode: DeviceMode) -> (tempfile::TempDir, Store, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("k.db").display());
        let store = Store::open(&url).unwrap();
        let r = Registry::load(store.clone(), mode).unwrap();
        (dir, store, r)
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000).unwrap()
    }

    #[test]
    fn only_registered_devices_with_their_password_are_let_in() {
        let (_d, store, reg) = registry(DeviceMode::Registered);
        let id = DeviceId::parse("hh-01").unwrap();
        let pw = generate_password();
        // Added behind the cache's back, as `kerbside device add` would.
        store
            .create_device(
                &id,
                DeviceKind::Handheld,
                "Li",
                &pw.secret,
                &pw.digest,
                now(),
            )
            .unwrap();
        assert_eq!(
            reg.authenticate(Some("hh-01"), Some(&pw.secret)),
            Some(Principal::Device {
                id: id.clone(),
                kind: DeviceKind::Handheld
            })
        );
        assert!(reg.admits(&id).unwrap());
        assert_eq!(reg.authenticate(Some("hh-01"), Some("wrong")), None);
        assert_eq!(reg.authenticate(Some("hh-01"), None), None);
        assert_eq!(reg.authenticate(None, None), None);
        assert_eq!(reg.authenticate(Some("ghost"), Some(&pw.secret)), None);
        assert!(!reg.admits(&DeviceId::parse("ghost").unwrap()).unwrap());
        // Refused a moment ago, registered now: it connects at once.
        let ghost = DeviceId::parse("ghost").unwrap();
        let gpw = generate_password();
        store
            .create_device(
                &ghost,
                DeviceKind::Sensor,
                "late",
                &gpw.secret,
                &gpw.digest,
                now(),
            )
            .unwrap();
        assert!(reg.authenticate(Some("ghost"), Some(&gpw.secret)).is_some());
        assert!(reg.admits(&ghost).unwrap());

        let mut revoked = reg.revocations();
        store.revoke_device(&id, now()).unwrap();
        // Revoked behind the cache's back: refused at the next connect,
        // and the broker is told to cut its live connections.
        assert_eq!(reg.authenticate(Some("hh-01"), Some(&pw.secret)), None);
        assert_eq!(revoked.try_recv().unwrap(), id);
        reg.reload().unwrap();
        assert!(!reg.admits(&id).unwrap());
    }

    #[test]
    fn the_service_has_its_own_credentials_and_open_mode_admits_anyone() {
        let (_d, _s, reg) = registry(DeviceMode::Open);
        let (user, pass) = reg.service_credentials();
        let (user, pass) = (user.to_owned(), pass.to_owned());
        assert_eq!(
            reg.authenticate(Some(&user), Some(&pass)),
            Some(Principal::Service)
        );
        assert_eq!(reg.authenticate(Some(&user), Some("guess")), None);
        assert_eq!(
            reg.authenticate(Some("any-device"), None),
            Some(Principal::Guest)
        );
        assert_eq!(reg.authenticate(None, None), Some(Principal::Guest));
        assert!(reg.admits(&DeviceId::parse("any-device").unwrap()).unwrap());
    }

    #[test]
    fn observers_may_not_send_events() {
        let (_d, store, reg) = registry(DeviceMode::Registered);
        let id = DeviceId::parse("sign-1").unwrap();
        let pw = generate_password();
        let rec = store
            .create_device(
                &id,
                DeviceKind::Observer,
                "sign",
                &pw.secret,
                &pw.digest,
                now(),
            )
            .unwrap();
        reg.note(&rec);
        assert!(!reg.admits(&id).unwrap());
    }
}
