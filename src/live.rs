//! The live stream's source (contract 6.2): each bay's reported status as
//! this instance's street has it, compared with what was last told, so
//! that every change (a commit here, another instance's commit arriving
//! through its notice, a bay going stale) is told once, with the road's
//! new counts; violations and cases as they are filed or change; and a
//! road's new layout revision, published here or by another instance.
//!
//! Listeners take a broadcast receiver; one that falls behind by more
//! than [`BACKLOG`] messages is cut off (it reconnects), never waited for,
//! so no number of slow listeners holds up ingest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::broadcast;

use crate::domain::ids::{BayId, RoadId};
use crate::domain::occupancy::BayStatus;
use crate::store::{CaseRecord, ViolationRecord};
use crate::street::Street;

/// Messages a listener may fall behind by before it is cut off.
pub const BACKLOG: usize = 4096;

/// One message of the stream.
#[derive(Debug, Clone)]
pub enum Live {
    /// A bay's new status: `{"bay_id", "road_id", "status", "since"}`.
    Bay { road: RoadId, data: Arc<str> },
    /// A road's counts after a change: as `GET .../occupancy` answers.
    Occupancy { road: RoadId, data: Arc<str> },
    /// A violation filed or changed (for wardens, planners and admins).
    Violation(Arc<ViolationRecord>),
    /// A road's layout has a new revision: `{"road_id", "revision"}`.
    Layout { road: RoadId, data: Arc<str> },
    /// A case opened, changed or resolved (for wardens, planners and
    /// admins; never on the public stream).
    Case(Arc<CaseRecord>),
}

/// What a listener was last told of a bay: its status and since.
type Told = (BayStatus, Option<DateTime<Utc>>);

/// Where the stream's messages come from.
pub struct Hub {
    tx: broadcast::Sender<Live>,
    /// The status and since last told per bay.
    told: Mutex<HashMap<BayId, Told>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            tx: broadcast::channel(BACKLOG).0,
            told: Mutex::new(HashMap::new()),
        }
    }
}

impl Hub {
    /// A new listener.
    pub fn subscribe(&self) -> broadcast::Receiver<Live> {
        self.tx.subscribe()
    }

    /// Tells every bay of `bays` whose report at `now` differs from what
    /// was last told, then the counts of each road that had a change.
    pub fn refresh<'a>(
        &self,
        street: &Street,
        bays: impl IntoIterator<Item = &'a BayId>,
        now: DateTime<Utc>,
    ) {
        let mut told = self.told.lock().unwrap_or_else(|e| e.into_inner());
        if self.tx.receiver_count() == 0 {
            // Nobody listens: nothing is computed, and nothing is kept (a
            // listener starts from the road as it stands).
            told.clear();
            return;
        }
        let map = street.map();
        let mut roads: Vec<RoadId> = Vec::new();
        {
            for bay in bays {
                let Some((road, _)) = map.bay(bay) else {
                    continue;
                };
                let report = street.report(bay, now);
                let now_told = (report.status, report.since);
                if told.get(bay) == Some(&now_told) {
                    continue;
                }
                told.insert(bay.clone(), now_told);
                let road_id = road.info.road_id.clone();
                let _ = self.tx.send(Live::Bay {
                    road: road_id.clone(),
                    data: bay_data(bay, &road_id, report).into(),
                });
                if !roads.contains(&road_id) {
                    roads.push(road_id);
                }
            }
        }
        drop(told);
        for road in roads {
            if let Some(view) = map.road(&road) {
                let data = occupancy(street, view, now);
                let _ = self.tx.send(Live::Occupancy {
                    road,
                    data: serde_json::to_string(&data).unwrap_or_default().into(),
                });
            }
        }
    }

    /// Tells a violation filed or changed.
    pub fn violation(&self, v: ViolationRecord) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(Live::Violation(Arc::new(v)));
        }
    }

    /// Tells a case opened, changed or resolved.
    pub fn case(&self, c: CaseRecord) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(Live::Case(Arc::new(c)));
        }
    }

    /// Tells that `road`'s current layout is now `revision` (published on
    /// this instance, or read back after another instance's publish).
    pub fn layout(&self, road: &RoadId, revision: i64) {
        if self.tx.receiver_count() > 0 {
            let data = json!({"road_id": road.as_str(), "revision": revision}).to_string();
            let _ = self.tx.send(Live::Layout {
                road: road.clone(),
                data: data.into(),
            });
        }
    }
}

/// A road's counts, as `GET /v1/roads/{road_id}/occupancy` answers them.
pub fn occupancy(
    street: &Street,
    view: &crate::street::RoadView,
    now: DateTime<Utc>,
) -> crate::http::OccupancyResponse {
    crate::http::OccupancyResponse::of(street, view, now)
}

/// A `bay` message's data: `{"bay_id", "road_id", "status", "since"}`.
pub fn bay_data(bay: &BayId, road: &RoadId, report: crate::domain::occupancy::Report) -> String {
    json!({
        "bay_id": bay.as_str(),
        "road_id": road.as_str(),
        "status": report.status.as_str(),
        "since": report.since.map(crate::clock::rfc3339),
    })
    .to_string()
}

/// How often the store is asked for violations and cases changed since
/// the last look.
const CHANGES_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// How far back each look reaches before the last one, ms: instances'
/// clocks and commits overlap by this much (what was told already is not
/// told again).
const CHANGES_OVERLAP_MS: i64 = 5_000;
/// At most this many changes of each kind are read per look; more wait for
/// the next (the look starts from the last change it read).
const CHANGES_PER_LOOK: i64 = 1000;

/// What was last told of each record changed within the overlap, so that
/// a change read twice (the looks overlap) is told once, and two changes
/// within one millisecond are both told.
struct Changes {
    /// The change time (ms) of the newest change read.
    since: i64,
    /// Per record: its change time and what it was told as.
    told: HashMap<String, (i64, String)>,
}

impl Changes {
    fn new(now_ms: i64) -> Changes {
        Changes {
            since: now_ms,
            told: HashMap::new(),
        }
    }

    /// Where the next look starts.
    fn from(&self) -> i64 {
        self.since - CHANGES_OVERLAP_MS
    }

    /// Whether the change of `id` at `at`, seen as `what`, is news.
    fn news(&mut self, id: &str, at: i64, what: String) -> bool {
        self.since = self.since.max(at);
        let seen = (at, what);
        if self.told.get(id) == Some(&seen) {
            return false;
        }
        self.told.insert(id.to_owned(), seen);
        true
    }

    /// Forgets what fell out of the overlap.
    fn trim(&mut self) {
        let from = self.from();
        self.told.retain(|_, (at, _)| *at >= from);
    }
}

/// Runs a store read off the runtime's threads; `None` (logged) when it
/// fails, and the look is tried again next time.
async fn read<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(t)) => Some(t),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read changed {what} for the stream");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "the changed-{what} task failed");
            None
        }
    }
}

/// Starts the stream's own sources on the current runtime: staleness
/// (every bay re-read every `sweep_every`, so that a bay going `unknown` is
/// told), and violations and cases filed or changed by any instance (read
/// from the store every second, by their change-time indexes, and only
/// while someone listens).
pub fn spawn(
    hub: Arc<Hub>,
    street: Arc<Street>,
    store: crate::store::Store,
    clock: Arc<dyn crate::clock::Clock>,
    sweep_every: std::time::Duration,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHANGES_EVERY);
        let mut swept = std::time::Instant::now();
        let now_ms = crate::store::to_ms(clock.now());
        let (mut violations, mut cases) = (Changes::new(now_ms), Changes::new(now_ms));
        loop {
            tick.tick().await;
            if swept.elapsed() >= sweep_every {
                swept = std::time::Instant::now();
                let map = street.map();
                let all: Vec<&BayId> = map
                    .roads
                    .values()
                    .flat_map(|v| v.layout.bays.iter().map(|b| &b.bay_id))
                    .collect();
                hub.refresh(&street, all, clock.now());
            }
            if hub.tx.receiver_count() == 0 {
                let now_ms = crate::store::to_ms(clock.now());
                (violations, cases) = (Changes::new(now_ms), Changes::new(now_ms));
                continue;
            }
            let (s, from) = (store.clone(), violations.from());
            if let Some(changed) = read("violations", move || {
                s.violations_changed_since(from, CHANGES_PER_LOOK)
            })
            .await
            {
                for (at, v) in changed {
                    let what = format!("{}/{:?}", v.status.as_str(), v.ended_at);
                    if violations.news(&v.violation_id, at, what) {
                        hub.violation(v);
                    }
                }
                violations.trim();
            }
            let (s, from) = (store.clone(), cases.from());
            if let Some(changed) = read("cases", move || {
                s.cases_changed_since(from, CHANGES_PER_LOOK)
            })
            .await
            {
                for (at, c) in changed {
                    let what = format!("{}/{:?}/{:?}", c.status.as_str(), c.due_at, c.party_id);
                    if cases.news(&c.case_id, at, what) {
                        hub.case(c);
                    }
                }
                cases.trim();
            }
        }
    });
}
