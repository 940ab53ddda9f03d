//! The ingest step between the broker and the store: decode each message
//! into events or rejections, place positions on the street, store the batch
//! in one transaction, and bring the street up to date after the commit.
//!
//! It knows nothing of MQTT: it takes (topic, payload) pairs, so the MQTT
//! loop, tests and benchmarks drive the same code.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Duration, Utc};

use crate::clock::Clock;
use crate::domain::events::{Event, EventType, Reason, Rejection, Sanity, decode_payload};
use crate::domain::ids::{BayId, DeviceId, RoadId};
use crate::domain::layout::Bay;
use crate::domain::occupancy::Report;
use crate::metrics::Metrics;
use crate::store::{
    BareHeartbeat, BatchWrite, BayRules, Enforcement, EventRecord, QuarantineRecord,
    RejectionRecord, RulesByBay, Store, StoreError,
};
use crate::street::{Placement, Street};

/// One message as it arrived.
#[derive(Debug, Clone)]
pub struct Message {
    /// The device segment of the topic, as sent (an over-long one cut, see
    /// `mqtt::MAX_DEVICE_SEGMENT`).
    pub device: String,
    /// The payload, shared with the packet it arrived in (not copied).
    pub payload: bytes::Bytes,
    pub received_at: DateTime<Utc>,
}

/// What a committed batch changed, for the publisher.
#[derive(Debug, Default)]
pub struct Committed {
    /// Rejections to tell each device: (device as sent, rejection).
    pub rejections: Vec<(String, Rejection)>,
    /// The bays whose state changed, with their road and new report.
    pub bays: Vec<(BayId, RoadId, Report)>,
    /// Events stored as new, duplicates, and rejections, in this batch.
    pub accepted: usize,
    pub duplicates: usize,
}

/// Everything ingest needs; cheap to clone.
#[derive(Clone)]
pub struct Ingestor {
    pub store: Store,
    pub street: Arc<Street>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// Who may send: events of other devices are rejected `unknown_device`.
    pub devices: Arc<crate::devices::Registry>,
    pub retention: Duration,
    pub enforcement: Enforcement,
    /// How long a plate stays readable once nothing needs it
    /// (`--keep-plates-hours`).
    pub keep_plates: Duration,
    /// How long a complaint's contact is kept (`--keep-contacts-days`).
    pub keep_contacts: Duration,
    /// The live stream: told of every committed change.
    pub live: Arc<crate::live::Hub>,
}

/// A bay's limit and enforced hours.
pub fn rules_of(bay: &Bay) -> BayRules {
    BayRules {
        max_stay_minutes: bay.max_stay_minutes,
        enforced_hours: bay.enforced_hours,
    }
}

/// The payload as text, cut to 4 KiB, if it is text.
fn payload_excerpt(payload: &[u8]) -> Option<Arc<str>> {
    let text = std::str::from_utf8(payload).ok()?;
    let end = text.char_indices().nth(4096).map_or(text.len(), |(i, _)| i);
    Some(Arc::from(&text[..end]))
}

/// Most bays whose sessions one transaction replays from history (a late
/// event makes its bay be replayed and re-judged): a batch whose messages
/// bring more late bays is stored in several transactions, cut between
/// messages (a single message, at most 500 events, is never cut), so that
/// a backlog of late events never holds the writer for long.
pub const MAX_REPLAYS_PER_BATCH: usize = 64;

/// One transaction's worth of a batch, being gathered.
#[derive(Default)]
struct Chunk {
    batch: BatchWrite,
    told: Vec<(String, Rejection)>,
    /// How many messages it holds.
    messages: usize,
    /// Bays with a late event in it.
    late: std::collections::HashSet<BayId>,
    /// The newest status event per bay, as far as this chunk knows.
    newest: HashMap<BayId, Option<DateTime<Utc>>>,
}

impl Ingestor {
    /// Decodes, places and stores a batch of messages (blocking: call it
    /// off the async runtime), in one transaction unless it brings more
    /// than [`MAX_REPLAYS_PER_BATCH`] late bays. On error the caller
    /// retries the same batch: what an earlier transaction of it stored
    /// comes back as duplicates.
    pub fn process(&self, messages: &[Message]) -> Result<Committed, StoreError> {
        let now = self.clock.now();
        let sanity = Sanity {
            retention: self.retention,
        };
        let map = self.street.map();
        let open = self.devices.mode() == crate::devices::DeviceMode::Open;
        // Devices of this batch's bare heartbeats: (known to the store, new).
        let mut bare_devices = BareDevices::default();
        let mut committed = Committed::default();
        let mut chunk = Chunk::default();
        let mut first = 0;
        for (i, m) in messages.iter().enumerate() {
            let mut events = Vec::new();
            let mut told = Vec::new();
            let mut rejections = Vec::new();
            // Made once per message, however many of its events are rejected.
            let mut excerpt: Option<Option<Arc<str>>> = None;
            let outcomes = match DeviceId::parse(&m.device) {
                Ok(device) if !self.devices.admits(&device)? => {
                    decode_payload(&device, &m.payload, now, sanity)
                        .into_iter()
                        .map(|o| {
                            let e = o?;
                            Err(Rejection {
                                event_id: Some(e.event_id.to_string()),
                                reason: Reason::UnknownDevice,
                                detail: format!("device {device} is not registered, or is revoked"),
                            })
                        })
                        .collect()
                }
                Ok(device) => decode_payload(&device, &m.payload, now, sanity),
                Err(_) => vec![Err(Rejection {
                    event_id: None,
                    reason: Reason::Malformed,
                    detail: format!(
                        "device id {:?} in the topic breaks the identifier rule",
                        m.device
                    ),
                })],
            };
            for (index, outcome) in outcomes.into_iter().enumerate() {
                let outcome = match outcome {
                    Ok(e) if open && is_bare_heartbeat(&e) => {
                        self.admit_bare_heartbeat(e, &mut bare_devices)?
                    }
                    other => other,
                };
                match outcome.and_then(|e| place(&map, e)) {
                    Ok((event, bay_id, road_id)) => events.push(EventRecord {
                        place: event.position.or_else(|| bay_centre(&map, bay_id.as_ref())),
                        event,
                        bay_id,
                        road_id,
                        received_at: m.received_at,
                    }),
                    Err(r) => {
                        told.push((m.device.clone(), r.clone()));
                        rejections.push(RejectionRecord {
                            device_id: m.device.clone(),
                            once_key: r.once_key(&m.payload, index),
                            rejection: r,
                            payload: excerpt
                                .get_or_insert_with(|| payload_excerpt(&m.payload))
                                .clone(),
                            received_at: m.received_at,
                        });
                    }
                }
            }
            let (mut late, mut newest) = self.late_bays(&mut chunk, &events);
            if chunk.messages > 0 && chunk.late.len() + late.len() > MAX_REPLAYS_PER_BATCH {
                let full = std::mem::take(&mut chunk);
                committed.merge(self.write_chunk(full, &messages[first..i], &map, now)?);
                first = i;
                // Judged afresh against the states just committed.
                (late, newest) = self.late_bays(&mut chunk, &events);
            }
            chunk
                .newest
                .extend(newest.into_iter().map(|(b, t)| (b, Some(t))));
            chunk.late.extend(late);
            chunk.messages += 1;
            chunk.batch.events.extend(events);
            chunk.batch.rejections.extend(rejections);
            chunk.told.extend(told);
        }
        if chunk.messages > 0 {
            let c = self.write_chunk(chunk, &messages[first..], &map, now)?;
            committed.merge(c);
        }
        Ok(committed)
    }

    /// Of a message's events, the bays it would make late that the chunk
    /// does not count yet, and the newest status event it brings per bay.
    fn late_bays(
        &self,
        chunk: &mut Chunk,
        events: &[EventRecord],
    ) -> (Vec<BayId>, HashMap<BayId, DateTime<Utc>>) {
        let unknown: Vec<&BayId> = events
            .iter()
            .filter_map(|e| e.bay_id.as_ref())
            .filter(|b| !chunk.newest.contains_key(*b))
            .collect();
        let states = self.street.states_of(unknown.iter().copied());
        for bay in unknown {
            let at = states.get(bay).and_then(|s| s.status_at);
            chunk.newest.insert(bay.clone(), at);
        }
        let mut late = Vec::new();
        let mut newest: HashMap<BayId, DateTime<Utc>> = HashMap::new();
        for e in events {
            let Some(bay) = &e.bay_id else { continue };
            if !matches!(
                e.event.kind,
                EventType::Occupied | EventType::Vacated | EventType::Observed
            ) {
                continue;
            }
            let at = e.event.observed_at;
            let known = newest
                .get(bay)
                .copied()
                .or_else(|| chunk.newest.get(bay).copied().flatten());
            if known.is_some_and(|t| at < t) {
                if !chunk.late.contains(bay) {
                    late.push(bay.clone());
                }
            } else {
                newest.insert(bay.clone(), at);
            }
        }
        late.sort();
        late.dedup();
        (late, newest)
    }

    /// Stores one chunk in one transaction and brings the street up to date.
    fn write_chunk(
        &self,
        chunk: Chunk,
        messages: &[Message],
        map: &crate::street::StreetMap,
        now: DateTime<Utc>,
    ) -> Result<Committed, StoreError> {
        let Chunk { batch, told, .. } = chunk;
        let touched: Vec<&BayId> = batch
            .events
            .iter()
            .filter_map(|e| e.bay_id.as_ref())
            .collect();
        let rules: RulesByBay = touched
            .iter()
            .filter_map(|b| Some(((*b).clone(), rules_of(map.bay(b)?.1))))
            .collect();
        let result = self
            .store
            .write_batch(&batch, &rules, self.enforcement, now)?;

        let duplicates = result.duplicate.iter().filter(|d| **d).count();
        let accepted = batch.events.len() - duplicates;
        self.metrics
            .events_accepted
            .fetch_add(accepted as u64, Ordering::Relaxed);
        self.metrics
            .events_duplicate
            .fetch_add(duplicates as u64, Ordering::Relaxed);
        for (_, r) in &told {
            self.metrics.rejected(r.reason);
        }
        self.metrics.batches.fetch_add(1, Ordering::Relaxed);
        self.metrics.batch_size.observe(messages.len() as f64);
        self.metrics.replayed_bays.observe(result.replayed as f64);
        let committed_at = self.clock.now();
        for m in messages {
            let secs = (committed_at - m.received_at)
                .num_microseconds()
                .unwrap_or(0) as f64
                / 1e6;
            self.metrics.commit_latency.observe(secs);
        }

        let roads: HashMap<&BayId, &RoadId> = batch
            .events
            .iter()
            .filter_map(|e| Some((e.bay_id.as_ref()?, e.road_id.as_ref()?)))
            .collect();
        let staleness = self.street.staleness();
        let bays: Vec<(BayId, RoadId, Report)> = result
            .states
            .iter()
            .filter_map(|(bay, s)| {
                let road = roads.get(bay)?;
                let report = crate::domain::occupancy::BayState::report(Some(s), now, staleness);
                Some((bay.clone(), (*road).clone(), report))
            })
            .collect();
        let versions = result.versions;
        self.street.update_states(
            result
                .states
                .into_iter()
                .filter_map(|(bay, s)| Some((versions.get(&bay).copied()?, (bay, s))))
                .map(|(v, (bay, s))| (bay, (s, v))),
        );
        self.live
            .refresh(&self.street, bays.iter().map(|(b, _, _)| b), now);
        Ok(Committed {
            rejections: told,
            bays,
            accepted,
            duplicates,
        })
    }
}

impl Committed {
    /// Adds what a later transaction of the same batch changed.
    fn merge(&mut self, later: Committed) {
        self.rejections.extend(later.rejections);
        self.bays.extend(later.bays);
        self.accepted += later.accepted;
        self.duplicates += later.duplicates;
    }
}

impl Ingestor {
    /// Sets aside a message that cannot be stored (blocking), with the
    /// store's `error`, and counts it.
    pub fn quarantine(&self, m: &Message, topic: String, error: String) -> Result<(), StoreError> {
        self.store.quarantine(&QuarantineRecord {
            seq: 0,
            device_id: m.device.clone(),
            topic,
            payload: m.payload.to_vec(),
            error,
            received_at: m.received_at,
            quarantined_at: self.clock.now(),
        })?;
        self.metrics.quarantined.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The devices of a batch's bare heartbeats, so each is looked up once.
#[derive(Default)]
struct BareDevices {
    /// Devices the store has a row for.
    known: std::collections::HashSet<DeviceId>,
    /// Devices new to the store, admitted within the cap.
    new: std::collections::HashSet<DeviceId>,
}

/// A heartbeat that names neither bay nor position: it tells only that its
/// device is alive.
fn is_bare_heartbeat(e: &Event) -> bool {
    e.kind == EventType::Heartbeat && e.bay_id.is_none() && e.position.is_none()
}

impl Ingestor {
    /// On `--devices open`, lets a bare heartbeat through unless it would
    /// bring in a new device past `store::OPEN_DEVICES_CAP`.
    fn admit_bare_heartbeat(
        &self,
        e: Event,
        seen: &mut BareDevices,
    ) -> Result<Result<Event, Rejection>, StoreError> {
        if seen.known.contains(&e.device_id) || seen.new.contains(&e.device_id) {
            return Ok(Ok(e));
        }
        match self
            .store
            .admits_bare_heartbeat(e.device_id.as_str(), seen.new.len())?
        {
            BareHeartbeat::Known => {
                seen.known.insert(e.device_id.clone());
                return Ok(Ok(e));
            }
            BareHeartbeat::New => {
                seen.new.insert(e.device_id.clone());
                return Ok(Ok(e));
            }
            BareHeartbeat::Refused => {}
        }
        Ok(Err(Rejection {
            event_id: Some(e.event_id.to_string()),
            reason: Reason::UnknownDevice,
            detail: format!(
                "device {} is not known, and past {} devices a heartbeat that names neither \
                 bay nor position brings in no new one",
                e.device_id,
                crate::store::OPEN_DEVICES_CAP
            ),
        }))
    }
}

/// Bays judged per transaction by a sweep.
const SWEEP_CHUNK: usize = 256;

/// What the overstay sweep remembers between runs: for each bay in a
/// session, when its limit falls due (computed once per session) and
/// whether it has been judged, so that a sweep costs a lookup per open
/// session, not an enforcement-calendar walk.
#[derive(Debug, Default)]
pub struct SweepMemo {
    sessions: HashMap<BayId, Tracked>,
    round: u64,
    /// When plates were last erased (by the service's clock).
    erased_at: Option<DateTime<Utc>>,
    /// When complaints' contacts were last erased (by the service's clock).
    contacts_erased_at: Option<DateTime<Utc>>,
}

/// Minutes of the service's clock between two plate erasure passes.
const ERASE_EVERY_MINUTES: i64 = 10;

#[derive(Debug)]
struct Tracked {
    started_at: DateTime<Utc>,
    /// When the limit (plus grace) is reached; `None`: never.
    due: Option<DateTime<Utc>>,
    judged: bool,
    round: u64,
}

impl Ingestor {
    /// Files overstays that time alone has caused: every bay whose open
    /// session has passed its limit by now and was not yet judged
    /// (blocking). On an error the caller should start from a fresh memo.
    pub fn sweep_overstays(&self, memo: &mut SweepMemo) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let map = self.street.map();
        memo.round += 1;
        let round = memo.round;
        let mut due = Vec::new();
        // Only bays in a session now can overstay: look at those alone.
        self.street.for_each_open_session(|bay_id, started_at| {
            let fresh = memo
                .sessions
                .get(bay_id)
                .is_none_or(|t| t.started_at != started_at);
            if fresh {
                let due_at = map.bay(bay_id).and_then(|(_, bay)| {
                    let max = bay.max_stay_minutes?;
                    let limit = Duration::minutes(i64::from(max)) + self.enforcement.grace;
                    crate::domain::enforcement::limit_reached_at(
                        started_at,
                        limit,
                        bay.enforced_hours,
                        self.enforcement.tz,
                    )
                });
                memo.sessions.insert(
                    bay_id.clone(),
                    Tracked {
                        started_at,
                        due: due_at,
                        judged: false,
                        round,
                    },
                );
            }
            let Some(t) = memo.sessions.get_mut(bay_id) else {
                return;
            };
            t.round = round;
            if !t.judged && t.due.is_some_and(|d| d <= now) {
                t.judged = true;
                if let Some((road, bay)) = map.bay(bay_id) {
                    due.push((bay_id.clone(), road.info.road_id.clone(), rules_of(bay)));
                }
            }
        });
        // Forget stays that have ended, so the memo stays as small as the street.
        memo.sessions.retain(|_, t| t.round == round);
        // A transaction per few hundred bays, so that a city's first sweep
        // never holds the writer for long.
        for chunk in due.chunks(SWEEP_CHUNK) {
            self.store
                .evaluate_overstays(chunk, self.enforcement, now)?;
        }
        Ok(due.len())
    }
}

impl Ingestor {
    /// Replaces by keyed pseudonyms the plates kept longer than
    /// `keep_plates` (blocking); at most once every ten minutes of the
    /// clock, so that most sweeps cost nothing. Returns how many.
    pub fn erase_plates(&self, memo: &mut SweepMemo) -> Result<usize, StoreError> {
        let now = self.clock.now();
        if memo
            .erased_at
            .is_some_and(|t| now - t < Duration::minutes(ERASE_EVERY_MINUTES))
        {
            return Ok(0);
        }
        let cutoff = now - self.keep_plates;
        let mut total = 0;
        // A transaction per few thousand plates, until none is left.
        loop {
            let n = self.store.erase_plates(cutoff, now)?.total();
            if n == 0 {
                break;
            }
            total += n;
        }
        memo.erased_at = Some(now);
        if total > 0 {
            tracing::info!(
                plates = total,
                "replaced plates past their keeping time by pseudonyms"
            );
        }
        Ok(total)
    }
}

impl Ingestor {
    /// Escalates the cases whose deadline has passed by the service's
    /// clock, and, at most once every ten minutes of it, erases the
    /// contacts of complaints older than `keep_contacts` (blocking).
    /// Returns how many cases were escalated.
    pub fn sweep_cases(&self, memo: &mut SweepMemo) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let escalated = self.store.escalate_due_cases(now)?;
        if escalated > 0 {
            tracing::info!(cases = escalated, "cases past their deadline escalated");
        }
        if memo
            .contacts_erased_at
            .is_none_or(|t| now - t >= Duration::minutes(ERASE_EVERY_MINUTES))
        {
            let n = self.store.erase_contacts(now - self.keep_contacts)?;
            if n > 0 {
                tracing::info!(complaints = n, "erased contacts past their keeping time");
            }
            memo.contacts_erased_at = Some(now);
        }
        Ok(escalated)
    }
}

/// Resolves an event's bay and road: a named bay must be on a current
/// layout; a position is placed on the street.
fn place(
    map: &crate::street::StreetMap,
    e: Event,
) -> Result<(Event, Option<BayId>, Option<RoadId>), Rejection> {
    let reject = |e: &Event, reason, detail: String| Rejection {
        event_id: Some(e.event_id.to_string()),
        reason,
        detail,
    };
    if let Some(bay) = &e.bay_id {
        return match map.bay(bay) {
            Some((road, _)) => {
                let road_id = road.info.road_id.clone();
                let bay = bay.clone();
                Ok((e, Some(bay), Some(road_id)))
            }
            None => {
                let detail = format!("bay {bay} is on no current layout");
                Err(reject(&e, Reason::UnknownBay, detail))
            }
        };
    }
    let Some(p) = e.position else {
        // Only a heartbeat may name neither; decoding saw to that.
        return Ok((e, None, None));
    };
    match map.place(p, e.kind) {
        Placement::Bay { bay_id, road_id } => Ok((e, Some(bay_id), Some(road_id))),
        Placement::Road { road_id } => Ok((e, None, Some(road_id))),
        Placement::Nowhere if e.kind == EventType::Heartbeat => Ok((e, None, None)),
        Placement::Nowhere => {
            let detail = format!(
                "position ({:.7}, {:.7}) is in no bay and not within 3 m of one{}",
                p.lon,
                p.lat,
                match e.kind {
                    EventType::Observed | EventType::Report => ", nor within 30 m of a road",
                    _ => "",
                }
            );
            Err(reject(&e, Reason::NoBayNearby, detail))
        }
    }
}

/// The centre of a bay of the current layouts, WGS 84.
fn bay_centre(
    map: &crate::street::StreetMap,
    bay: Option<&BayId>,
) -> Option<crate::domain::events::Position> {
    use geo::Centroid;
    let (_, bay) = map.bay(bay?)?;
    let c = bay.polygon.centroid()?;
    Some(crate::domain::events::Position {
        lon: c.x(),
        lat: c.y(),
    })
}
