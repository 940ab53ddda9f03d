//! Keeping this instance's street current with what other instances commit
//! (PostgreSQL): a connection of its own listens for the change notices
//! every write transaction sends as it commits, and reads the changed
//! bays' states and roads' layouts back from the store. Notices are not
//! replayed to a listener that was away, so on start and after every
//! reconnection the whole street is resynchronised from the store first.
//!
//! The same connection holds the lease (a session advisory lock) that
//! makes one instance at a time lead the overstay sweep, plate erasure and
//! the retained-state publisher; it is freed the moment its holder's
//! connection dies, and another instance takes it within a second.
//!
//! On SQLite there is one process: nothing to hear, and it always leads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::domain::ids::BayId;
use crate::mqtt::MqttLink;
use crate::store::{Notices, Store, StoreError, Watcher};
use crate::street::Street;

/// How often the watcher looks for notices (the street is current within
/// this, plus the time to read the changes back).
const POLL: Duration = Duration::from_millis(50);
/// How often a follower tries to take the lease.
const TRY_LEAD: Duration = Duration::from_secs(1);
/// How often the connection is checked with a round trip.
const PING: Duration = Duration::from_secs(2);

/// Starts watching the store for other instances' changes (a thread of its
/// own), and sets `leading` while this instance holds the lease.
pub fn spawn(
    store: Store,
    street: Arc<Street>,
    leading: Arc<AtomicBool>,
    link: MqttLink,
    live: Arc<crate::live::Hub>,
) {
    if store.backend() != crate::store::Backend::Postgres {
        leading.store(true, Ordering::Relaxed);
        return;
    }
    // The service's street, not this thread, decides how long it lives:
    // once the service is gone the thread ends, and its connection (and
    // the lease with it) is let go.
    let street = Arc::downgrade(&street);
    let spawned = std::thread::Builder::new()
        .name("store-watch".into())
        .spawn(move || {
            let mut backoff = Duration::from_millis(100);
            while street.strong_count() > 0 {
                match store.watcher() {
                    Ok(Some(mut w)) => {
                        backoff = Duration::from_millis(100);
                        let e = watch(&mut w, &store, &street, &leading, &link, &live);
                        leading.store(false, Ordering::Relaxed);
                        if let Err(e) = e {
                            tracing::warn!(error = %e, "lost the store's change notices; \
                                resynchronising once reconnected");
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                            "cannot open a connection for the store's change notices");
                    }
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the store watcher");
    }
}

/// Resynchronises, then follows notices until the connection fails (an
/// error) or the service is gone (`Ok`).
fn watch(
    w: &mut Watcher,
    store: &Store,
    street: &Weak<Street>,
    leading: &AtomicBool,
    link: &MqttLink,
    live: &crate::live::Hub,
) -> Result<(), StoreError> {
    let Some(s) = street.upgrade() else {
        return Ok(());
    };
    resync(store, &s, link, live)?;
    drop(s);
    let mut pinged = Instant::now();
    let mut tried: Option<Instant> = None;
    loop {
        let Some(street) = street.upgrade() else {
            return Ok(());
        };
        if !w.leading() && tried.is_none_or(|t| t.elapsed() >= TRY_LEAD) {
            tried = Some(Instant::now());
            if w.try_lead()? {
                leading.store(true, Ordering::Relaxed);
                tracing::info!("this instance leads the sweep and the retained-state publisher");
            }
        }
        let notices = w.drain()?;
        if !notices.is_empty() {
            apply(notices, store, &street, link, live)?;
        }
        drop(street);
        if pinged.elapsed() >= PING {
            w.ping()?;
            pinged = Instant::now();
        }
        std::thread::sleep(POLL);
    }
}

/// Reads every layout and bay state back from the store; a road whose
/// revision changed while this instance was away is told on the stream.
fn resync(
    store: &Store,
    street: &Street,
    link: &MqttLink,
    live: &crate::live::Hub,
) -> Result<(), StoreError> {
    let mut roads = 0;
    for layout in store.current_layouts()? {
        let (id, revision) = (layout.info.road_id.clone(), layout.info.revision);
        if street.replace_road(layout) {
            live.layout(&id, revision);
            roads += 1;
        }
    }
    let changed = street.update_states(store.bay_states()?);
    tracing::info!(
        roads,
        bays = changed.len(),
        "street resynchronised with the store"
    );
    link.publish_states(changed);
    Ok(())
}

/// Takes in what the notices name, read back from the store.
fn apply(
    n: Notices,
    store: &Store,
    street: &Street,
    link: &MqttLink,
    live: &crate::live::Hub,
) -> Result<(), StoreError> {
    for road in &n.roads {
        if let Some(layout) = store.current_layout(road)? {
            let (id, revision) = (layout.info.road_id.clone(), layout.info.revision);
            if street.replace_road(layout) {
                live.layout(&id, revision);
            }
        }
    }
    if !n.bays.is_empty() {
        let ids: Vec<&str> = n.bays.iter().map(String::as_str).collect();
        let states: Vec<(BayId, _)> = store.bay_states_of(&ids)?.into_iter().collect();
        let changed = street.update_states(states);
        live.refresh(street, &changed, chrono::Utc::now());
        link.publish_states(changed);
    }
    Ok(())
}
