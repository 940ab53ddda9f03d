//! The live stream's source (contract 6.2): each bay's reported status as
//! this instance's street has it, compared with what was last told, so
//! that every change (a commit here, another instance's commit arriving
//! through its notice, a bay going stale) is told once, with the road's
//! new counts; and violations as they are filed or change.
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
use crate::store::ViolationRecord;
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

/// How often the store is asked for violations changed since the last look.
const VIOLATIONS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// How far back each look reaches before the last one, ms: instances'
/// clocks and commits overlap by this much (what was told already is not
/// told again).
const VIOLATIONS_OVERLAP_MS: i64 = 5_000;

/// Starts the stream's own sources on the current runtime: staleness
/// (every bay re-read every `sweep_every`, so that a bay going `unknown` is
/// told) and violations filed or changed by any instance (read from the
/// store every second).
pub fn spawn(
    hub: Arc<Hub>,
    street: Arc<Street>,
    store: crate::store::Store,
    clock: Arc<dyn crate::clock::Clock>,
    sweep_every: std::time::Duration,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(VIOLATIONS_EVERY);
        let mut swept = std::time::Instant::now();
        let mut since = crate::store::to_ms(clock.now());
        // Per violation told within the overlap: its change time and what
        // it was told as (two changes may share a millisecond).
        let mut told: HashMap<String, (i64, String)> = HashMap::new();
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
                since = crate::store::to_ms(clock.now());
                told.clear();
                continue;
            }
            let s = store.clone();
            let from = since - VIOLATIONS_OVERLAP_MS;
            let changed =
                match tokio::task::spawn_blocking(move || s.violations_changed_since(from, 1000))
                    .await
                {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot read changed violations for the stream");
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the changed-violations task failed");
                        continue;
                    }
                };
            for (at, v) in changed {
                since = since.max(at);
                let seen = (at, format!("{}/{:?}", v.status.as_str(), v.ended_at));
                if told.get(&v.violation_id) == Some(&seen) {
                    continue;
                }
                told.insert(v.violation_id.clone(), seen);
                hub.violation(v);
            }
            told.retain(|_, (at, _)| *at >= since - VIOLATIONS_OVERLAP_MS);
        }
    });
}
