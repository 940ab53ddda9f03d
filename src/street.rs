//! The street: the in-memory read model every read endpoint answers from.
//!
//! It holds each road's current layout and each bay's state. A layout is
//! never edited in place: a new revision builds a new [`StreetMap`] that is
//! swapped in whole, so a reader sees either the old layout or the new one,
//! never half of each.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use chrono::{DateTime, Duration, Utc};

use geo::Point;

use crate::domain::events::{EventType, Position};
use crate::domain::ids::{BayId, RoadId};
use crate::domain::layout::{Bay, BayKind};
use crate::domain::occupancy::{BayState, Counts, Report};
use crate::spatial::index::{BayRef, SpatialIndex};
use crate::store::{RevisionInfo, StoredLayout};

/// A position within this many metres of a bay (and in none) is in it.
pub const BAY_SNAP_M: f64 = 3.0;
/// An off-bay sighting or report within this many metres of a road is on it.
pub const ROAD_SNAP_M: f64 = 30.0;

/// Where an event's position puts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// In (or within 3 m of) this bay.
    Bay { bay_id: BayId, road_id: RoadId },
    /// In no bay, within 30 m of this road.
    Road { road_id: RoadId },
    /// Nowhere the service looks after.
    Nowhere,
}

/// One road's current layout.
#[derive(Debug)]
pub struct RoadView {
    pub info: RevisionInfo,
    pub layout: crate::domain::layout::Layout,
}

impl RoadView {
    fn new(stored: StoredLayout) -> Self {
        RoadView {
            info: stored.info,
            layout: stored.layout,
        }
    }
}

/// Every road's current layout: an immutable snapshot.
#[derive(Debug, Default)]
pub struct StreetMap {
    pub roads: BTreeMap<RoadId, Arc<RoadView>>,
    /// Where each bay is: road number (in `ordered`) and bay number.
    bays: HashMap<BayId, BayRef>,
    /// The roads in index order (the spatial index refers to them by number).
    ordered: Vec<Arc<RoadView>>,
    index: SpatialIndex,
}

impl StreetMap {
    fn build(roads: BTreeMap<RoadId, Arc<RoadView>>) -> Self {
        let ordered: Vec<Arc<RoadView>> = roads.values().cloned().collect();
        let mut bays = HashMap::with_capacity(ordered.iter().map(|v| v.layout.bays.len()).sum());
        for (r, view) in ordered.iter().enumerate() {
            for (b, bay) in view.layout.bays.iter().enumerate() {
                let at = BayRef {
                    road: r as u32,
                    bay: b as u32,
                };
                bays.insert(bay.bay_id.clone(), at);
            }
        }
        let index = SpatialIndex::build(ordered.iter().map(|v| {
            (
                &v.layout.road.centre_line,
                v.layout.bays.iter().map(|b| &b.polygon).collect(),
            )
        }));
        StreetMap {
            roads,
            bays,
            ordered,
            index,
        }
    }

    fn at(&self, b: BayRef) -> (&Arc<RoadView>, &Bay) {
        let road = &self.ordered[b.road as usize];
        (road, &road.layout.bays[b.bay as usize])
    }

    /// Up to `limit` bays within `radius_m` metres of `p` (WGS 84) that
    /// `accept` takes, nearest first, with their road and distance in metres
    /// (0 inside the bay). Only the neighbourhood that holds the answer is
    /// searched, not the whole radius.
    pub fn nearest_bays(
        &self,
        p: Position,
        radius_m: f64,
        limit: usize,
        mut accept: impl FnMut(&RoadView, &Bay) -> bool,
    ) -> Vec<(&Arc<RoadView>, &Bay, f64)> {
        let point = Point::new(p.lon, p.lat);
        self.index
            .nearest_bays(
                point,
                radius_m,
                limit,
                |b| &self.at(b).1.polygon,
                |b| {
                    let (road, bay) = self.at(b);
                    accept(road, bay)
                },
            )
            .into_iter()
            .map(|(b, d)| {
                let (road, bay) = self.at(b);
                (road, bay, d)
            })
            .collect()
    }

    /// Bays within `radius_m` metres of `p` (WGS 84), nearest first, with
    /// their road and distance in metres (0 inside the bay).
    pub fn bays_near(&self, p: Position, radius_m: f64) -> Vec<(&Arc<RoadView>, &Bay, f64)> {
        let point = Point::new(p.lon, p.lat);
        let road_of = |r: u32| &self.ordered[r as usize];
        self.index
            .bays_near(point, radius_m, |b| {
                &road_of(b.road).layout.bays[b.bay as usize].polygon
            })
            .into_iter()
            .map(|(b, d)| {
                let road = road_of(b.road);
                (road, &road.layout.bays[b.bay as usize], d)
            })
            .collect()
    }

    /// Places a WGS 84 position for an event of type `kind`: the bay whose
    /// polygon contains it, else the nearest bay within [`BAY_SNAP_M`]; for
    /// an `observed` vehicle or a `report` in no bay, the nearest road within
    /// [`ROAD_SNAP_M`] (a report always goes to its road).
    pub fn place(&self, p: Position, kind: EventType) -> Placement {
        let point = Point::new(p.lon, p.lat);
        let road_of = |r: u32| &self.ordered[r as usize];
        if kind != EventType::Report {
            let near = self.index.bays_near(point, BAY_SNAP_M, |b| {
                &road_of(b.road).layout.bays[b.bay as usize].polygon
            });
            if let Some((b, _)) = near.first() {
                let road = road_of(b.road);
                return Placement::Bay {
                    bay_id: road.layout.bays[b.bay as usize].bay_id.clone(),
                    road_id: road.info.road_id.clone(),
                };
            }
        }
        if matches!(kind, EventType::Observed | EventType::Report)
            && let Some((r, _)) = self
                .index
                .nearest_road(point, ROAD_SNAP_M, |r| &road_of(r).layout.road.centre_line)
        {
            return Placement::Road {
                road_id: road_of(r).info.road_id.clone(),
            };
        }
        Placement::Nowhere
    }

    /// A road by id.
    pub fn road(&self, id: &RoadId) -> Option<&Arc<RoadView>> {
        self.roads.get(id)
    }

    /// A bay of any current layout, with its road.
    pub fn bay(&self, id: &BayId) -> Option<(&Arc<RoadView>, &Bay)> {
        self.bays.get(id).map(|&b| self.at(b))
    }
}

/// Counts for a road: overall and per bay kind (kinds with no bays omitted).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoadCounts {
    pub all: Counts,
    pub by_kind: BTreeMap<BayKind, Counts>,
}

/// Bay states, compact for a city: each id maps to a slot of a dense
/// vector, so the hash table holds only (id, slot) pairs and the states sit
/// side by side (at a million bays this is about half the memory of a map
/// from id to state).
#[derive(Debug, Default)]
pub struct StateTable {
    slots: HashMap<BayId, u32>,
    states: Vec<BayState>,
    /// Slots of forgotten bays, for reuse.
    free: Vec<u32>,
}

impl StateTable {
    /// A bay's state, if any.
    pub fn get(&self, id: &BayId) -> Option<&BayState> {
        self.slots.get(id).map(|&i| &self.states[i as usize])
    }

    /// Sets a bay's state.
    pub fn insert(&mut self, id: BayId, state: BayState) {
        if let Some(&i) = self.slots.get(&id) {
            self.states[i as usize] = state;
            return;
        }
        let i = match self.free.pop() {
            Some(i) => {
                self.states[i as usize] = state;
                i
            }
            None => {
                self.states.push(state);
                (self.states.len() - 1) as u32
            }
        };
        self.slots.insert(id, i);
    }

    /// Forgets a bay's state.
    pub fn remove(&mut self, id: &BayId) {
        if let Some(i) = self.slots.remove(id) {
            self.free.push(i);
        }
    }

    /// Every bay with a state.
    pub fn iter(&self) -> impl Iterator<Item = (&BayId, &BayState)> {
        self.slots
            .iter()
            .map(|(id, &i)| (id, &self.states[i as usize]))
    }

    /// How many bays have a state.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no bay has a state.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// The live read model: layouts and bay states.
pub struct Street {
    map: RwLock<Arc<StreetMap>>,
    states: RwLock<StateTable>,
    staleness: Duration,
}

impl Street {
    /// A street of these layouts and states; a bay silent for longer than
    /// `staleness` reports `unknown`.
    pub fn new(
        layouts: Vec<StoredLayout>,
        states: Vec<(BayId, BayState)>,
        staleness: Duration,
    ) -> Self {
        let roads = layouts
            .into_iter()
            .map(|l| (l.info.road_id.clone(), Arc::new(RoadView::new(l))))
            .collect();
        let map = StreetMap::build(roads);
        // Key each state by the layout's own copy of the id, so the id's
        // text is held once.
        let mut table = StateTable {
            slots: HashMap::with_capacity(states.len()),
            states: Vec::with_capacity(states.len()),
            free: Vec::new(),
        };
        for (id, state) in states {
            let id = map.bays.get_key_value(&id).map_or(id, |(k, _)| k.clone());
            table.insert(id, state);
        }
        Street {
            map: RwLock::new(Arc::new(map)),
            states: RwLock::new(table),
            staleness,
        }
    }

    /// The current snapshot of every layout.
    pub fn map(&self) -> Arc<StreetMap> {
        Arc::clone(&self.map.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Swaps in a road's new revision, atomically for readers.
    pub fn replace_road(&self, stored: StoredLayout) {
        let mut guard = self.map.write().unwrap_or_else(|e| e.into_inner());
        let mut roads = guard.roads.clone();
        roads.insert(stored.info.road_id.clone(), Arc::new(RoadView::new(stored)));
        *guard = Arc::new(StreetMap::build(roads));
    }

    /// The present states of these bays (those with any).
    pub fn states_of<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a BayId>,
    ) -> HashMap<BayId, BayState> {
        let states = self.states.read().unwrap_or_else(|e| e.into_inner());
        ids.into_iter()
            .filter_map(|id| states.get(id).map(|s| (id.clone(), s.clone())))
            .collect()
    }

    /// Every bay in a parking session now, with the session's start.
    pub fn open_sessions(&self) -> HashMap<BayId, DateTime<Utc>> {
        let states = self.states.read().unwrap_or_else(|e| e.into_inner());
        states
            .iter()
            .filter_map(|(id, s)| Some((id.clone(), s.open.as_ref()?.started_at)))
            .collect()
    }

    /// Takes in bay states the store has committed.
    pub fn update_states(&self, changed: impl IntoIterator<Item = (BayId, BayState)>) {
        let mut states = self.states.write().unwrap_or_else(|e| e.into_inner());
        for (id, state) in changed {
            states.insert(id, state);
        }
    }

    /// Forgets the states of bays that no longer exist (retired).
    pub fn forget_states<'a>(&self, ids: impl IntoIterator<Item = &'a BayId>) {
        let mut states = self.states.write().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            states.remove(id);
        }
    }

    /// The staleness window.
    pub fn staleness(&self) -> Duration {
        self.staleness
    }

    /// What bay `id` reports at `now`.
    pub fn report(&self, id: &BayId, now: DateTime<Utc>) -> Report {
        let states = self.states.read().unwrap_or_else(|e| e.into_inner());
        BayState::report(states.get(id), now, self.staleness)
    }

    /// Reports for these bays at `now`, under one read of the states.
    pub fn reports_of<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a BayId>,
        now: DateTime<Utc>,
    ) -> Vec<Report> {
        let states = self.states.read().unwrap_or_else(|e| e.into_inner());
        ids.into_iter()
            .map(|id| BayState::report(states.get(id), now, self.staleness))
            .collect()
    }

    /// Reports at `now` under one read of the states, for as long as the
    /// answer is held: for a search that asks about each bay it passes.
    pub fn reports_at(&self, now: DateTime<Utc>) -> ReportsAt<'_> {
        ReportsAt {
            states: self.states.read().unwrap_or_else(|e| e.into_inner()),
            now,
            staleness: self.staleness,
        }
    }

    /// Reports for every bay of `road`, in layout order.
    pub fn reports(&self, road: &RoadView, now: DateTime<Utc>) -> Vec<Report> {
        let states = self.states.read().unwrap_or_else(|e| e.into_inner());
        road.layout
            .bays
            .iter()
            .map(|b| BayState::report(states.get(&b.bay_id), now, self.staleness))
            .collect()
    }

    /// Status counts of a road's bays at `now`.
    pub fn counts(&self, road: &RoadView, now: DateTime<Utc>) -> RoadCounts {
        let mut out = RoadCounts::default();
        for (bay, report) in road.layout.bays.iter().zip(self.reports(road, now)) {
            out.all.add(report.status);
            out.by_kind.entry(bay.kind).or_default().add(report.status);
        }
        out
    }
}

/// Bay reports at one instant, under one read of the states.
pub struct ReportsAt<'a> {
    states: RwLockReadGuard<'a, StateTable>,
    now: DateTime<Utc>,
    staleness: Duration,
}

impl ReportsAt<'_> {
    /// What bay `id` reports.
    pub fn of(&self, id: &BayId) -> Report {
        BayState::report(self.states.get(id), self.now, self.staleness)
    }
}
