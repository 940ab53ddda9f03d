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
use crate::store::{RevisionInfo, StoredLayout, Versioned};

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
    /// The ordinal of each road's first bay: bays are numbered road after
    /// road in `ordered`, and the street keeps states by that number.
    offsets: Vec<u32>,
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
        let mut offsets = Vec::with_capacity(ordered.len());
        let mut n = 0u32;
        for v in &ordered {
            offsets.push(n);
            n += v.layout.bays.len() as u32;
        }
        StreetMap {
            roads,
            bays,
            ordered,
            offsets,
            index,
        }
    }

    /// How many bays the current layouts hold.
    pub fn bay_count(&self) -> usize {
        self.bays.len()
    }

    fn ordinal(&self, b: BayRef) -> usize {
        (self.offsets[b.road as usize] + b.bay) as usize
    }

    /// The bay numbered `o`: in the last road whose first bay is at or
    /// before it (roads without bays share their successor's offset).
    fn bay_at_ordinal(&self, o: usize) -> Option<&Bay> {
        let road = self
            .offsets
            .partition_point(|&first| first as usize <= o)
            .checked_sub(1)?;
        let bay = o - self.offsets[road] as usize;
        self.ordered[road].layout.bays.get(bay)
    }

    fn ordinal_of(&self, id: &BayId) -> Option<usize> {
        self.bays.get(id).map(|&b| self.ordinal(b))
    }

    /// Every bay with its ordinal, road after road.
    fn each_bay(&self) -> impl Iterator<Item = (usize, &Bay)> {
        self.ordered
            .iter()
            .flat_map(|v| v.layout.bays.iter())
            .enumerate()
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
        mut accept: impl FnMut(BayOrdinal, &Bay) -> bool,
    ) -> Vec<(&Arc<RoadView>, &Bay, f64)> {
        let point = Point::new(p.lon, p.lat);
        self.index
            .nearest_bays(
                point,
                radius_m,
                limit,
                |b| &self.at(b).1.polygon,
                |b| accept(BayOrdinal(self.ordinal(b)), self.at(b).1),
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
        self.index
            .bays_near(point, radius_m, |b| &self.at(b).1.polygon)
            .into_iter()
            .map(|(b, d)| {
                let (road, bay) = self.at(b);
                (road, bay, d)
            })
            .collect()
    }

    /// Places a WGS 84 position for an event of type `kind`: the bay whose
    /// polygon contains it, else the nearest bay within [`BAY_SNAP_M`]; for
    /// an `observed` vehicle or a `report` in no bay, the nearest road within
    /// [`ROAD_SNAP_M`] (a report always goes to its road).
    pub fn place(&self, p: Position, kind: EventType) -> Placement {
        if kind != EventType::Report
            && let Some((road, bay, _)) = self.bays_near(p, BAY_SNAP_M).first()
        {
            return Placement::Bay {
                bay_id: bay.bay_id.clone(),
                road_id: road.info.road_id.clone(),
            };
        }
        let point = Point::new(p.lon, p.lat);
        if matches!(kind, EventType::Observed | EventType::Report)
            && let Some((r, _)) = self.index.nearest_road(point, ROAD_SNAP_M, |r| {
                &self.ordered[r as usize].layout.road.centre_line
            })
        {
            return Placement::Road {
                road_id: self.ordered[r as usize].info.road_id.clone(),
            };
        }
        Placement::Nowhere
    }

    /// The road whose centre line is nearest a WGS 84 position, within
    /// `metres`.
    pub fn nearest_road(&self, p: Position, metres: f64) -> Option<&RoadId> {
        let point = Point::new(p.lon, p.lat);
        self.index
            .nearest_road(point, metres, |r| {
                &self.ordered[r as usize].layout.road.centre_line
            })
            .map(|(r, _)| &self.ordered[r as usize].info.road_id)
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

/// A bay's number in one [`StreetMap`] snapshot (see [`ReportsAt::of_ordinal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BayOrdinal(usize);

/// The layouts and, beside them, each bay's state by its ordinal in that
/// snapshot: one vector slot per bay, no per-bay map, and a search that
/// walks the map reads states without hashing an id.
struct Live {
    map: Arc<StreetMap>,
    states: Vec<Option<BayState>>,
    /// Beside each state, the version it was stored at: a change reaches
    /// the street from this instance's commit and from other instances'
    /// notices, in either order, and only a newer version replaces it.
    versions: Vec<i64>,
}

/// The live read model: layouts and bay states.
pub struct Street {
    live: RwLock<Live>,
    /// Held while a new map is built and swapped in.
    swapping: std::sync::Mutex<()>,
    staleness: Duration,
}

impl Street {
    /// A street of these layouts and states; a bay silent for longer than
    /// `staleness` reports `unknown`. States of bays on no layout are
    /// dropped.
    pub fn new(
        layouts: Vec<StoredLayout>,
        states: Vec<(BayId, Versioned)>,
        staleness: Duration,
    ) -> Self {
        let roads = layouts
            .into_iter()
            .map(|l| (l.info.road_id.clone(), Arc::new(RoadView::new(l))))
            .collect();
        let map = StreetMap::build(roads);
        let mut slots = vec![None; map.bay_count()];
        let mut versions = vec![0; map.bay_count()];
        for (id, (state, version)) in states {
            if let Some(o) = map.ordinal_of(&id) {
                slots[o] = Some(state);
                versions[o] = version;
            }
        }
        Street {
            live: RwLock::new(Live {
                map: Arc::new(map),
                states: slots,
                versions,
            }),
            swapping: std::sync::Mutex::new(()),
            staleness,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Live> {
        self.live.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Live> {
        self.live.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The current snapshot of every layout.
    pub fn map(&self) -> Arc<StreetMap> {
        Arc::clone(&self.read().map)
    }

    /// Swaps in a road's new revision, atomically for readers; every bay
    /// that stays keeps its state. Publishes that commit close together may
    /// arrive here in either order, so a revision no newer than the one in
    /// the street is ignored: `false` then.
    pub fn replace_road(&self, stored: StoredLayout) -> bool {
        // One swap at a time, so the snapshot the new map is built from is
        // still the live one when it is swapped in; the build itself (the
        // R-tree of every bay) happens outside the lock readers wait on.
        let _one_at_a_time = self.swapping.lock().unwrap_or_else(|e| e.into_inner());
        let before = self.map();
        if before
            .road(&stored.info.road_id)
            .is_some_and(|v| v.info.revision >= stored.info.revision)
        {
            return false;
        }
        let mut roads = before.roads.clone();
        roads.insert(stored.info.road_id.clone(), Arc::new(RoadView::new(stored)));
        let map = StreetMap::build(roads);
        let from: Vec<Option<usize>> = map
            .each_bay()
            .map(|(_, bay)| before.ordinal_of(&bay.bay_id))
            .collect();
        let mut live = self.write();
        debug_assert!(
            Arc::ptr_eq(&live.map, &before),
            "only swaps replace the map"
        );
        let versions = from
            .iter()
            .map(|old| old.map_or(0, |o| live.versions[o]))
            .collect();
        let slots = from
            .into_iter()
            .map(|old| old.and_then(|o| live.states[o].take()))
            .collect();
        *live = Live {
            map: Arc::new(map),
            states: slots,
            versions,
        };
        true
    }

    /// The present states of these bays (those with any).
    pub fn states_of<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a BayId>,
    ) -> HashMap<BayId, BayState> {
        let live = self.read();
        ids.into_iter()
            .filter_map(|id| Some((id.clone(), live.state(id)?.clone())))
            .collect()
    }

    /// Calls `f` with every bay in a parking session now and the session's
    /// start, under one read of the states.
    pub fn for_each_open_session(&self, mut f: impl FnMut(&BayId, DateTime<Utc>)) {
        let live = self.read();
        for (o, bay) in live.map.each_bay() {
            if let Some(open) = live.states[o].as_ref().and_then(|s| s.open.as_ref()) {
                f(&bay.bay_id, open.started_at);
            }
        }
    }

    /// Takes in bay states the store has committed, each with the version
    /// it was stored at; a version no newer than the street's is ignored
    /// (it arrived after a later change), as are bays on no current layout
    /// (retired meanwhile). Returns the bays that changed.
    pub fn update_states(
        &self,
        changed: impl IntoIterator<Item = (BayId, Versioned)>,
    ) -> Vec<BayId> {
        let mut live = self.write();
        let live = &mut *live;
        let mut taken = Vec::new();
        for (id, (state, version)) in changed {
            if let Some(o) = live.map.ordinal_of(&id)
                && (live.states[o].is_none() || version > live.versions[o])
            {
                live.states[o] = Some(state);
                live.versions[o] = version;
                taken.push(id);
            }
        }
        taken
    }

    /// The staleness window.
    pub fn staleness(&self) -> Duration {
        self.staleness
    }

    /// What bay `id` reports at `now`.
    pub fn report(&self, id: &BayId, now: DateTime<Utc>) -> Report {
        BayState::report(self.read().state(id), now, self.staleness)
    }

    /// Reports for these bays at `now`, under one read of the states.
    pub fn reports_of<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a BayId>,
        now: DateTime<Utc>,
    ) -> Vec<Report> {
        let live = self.read();
        ids.into_iter()
            .map(|id| BayState::report(live.state(id), now, self.staleness))
            .collect()
    }

    /// The street at `now`: its current snapshot, and each bay's report
    /// read when asked. No lock is held between questions, so a search that
    /// asks about each bay it passes never keeps a writer (an ingest batch,
    /// a publish) waiting, nor the readers queued behind that writer.
    pub fn reports_at(&self, now: DateTime<Utc>) -> ReportsAt<'_> {
        ReportsAt {
            street: self,
            map: self.map(),
            now,
        }
    }

    /// Reports for every bay of `road`, in layout order.
    pub fn reports(&self, road: &RoadView, now: DateTime<Utc>) -> Vec<Report> {
        self.reports_of(road.layout.bays.iter().map(|b| &b.bay_id), now)
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

impl Live {
    fn state(&self, id: &BayId) -> Option<&BayState> {
        self.map
            .ordinal_of(id)
            .and_then(|o| self.states[o].as_ref())
    }
}

/// The street at one instant: a snapshot of the layouts, and each bay's
/// report read from the live states when asked.
pub struct ReportsAt<'a> {
    street: &'a Street,
    map: Arc<StreetMap>,
    now: DateTime<Utc>,
}

impl ReportsAt<'_> {
    /// The layouts these reports belong to.
    pub fn map(&self) -> &StreetMap {
        &self.map
    }

    /// What the bay numbered `o` in [`Self::map`] reports now. The read
    /// lock is taken for this one bay only; if a publish has swapped the
    /// street since the snapshot, the bay is found by its id (a bay the
    /// publish retired reports `unknown`).
    pub fn of_ordinal(&self, o: BayOrdinal) -> Report {
        let live = self.street.read();
        let state = if Arc::ptr_eq(&live.map, &self.map) {
            live.states[o.0].as_ref()
        } else {
            self.map
                .bay_at_ordinal(o.0)
                .and_then(|bay| live.state(&bay.bay_id))
        };
        BayState::report(state, self.now, self.street.staleness)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qingfeng(revision: i64, keep_bays: usize) -> StoredLayout {
        let file =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("geodata/qingfeng-road.geojson");
        let mut layout = crate::geodata::load_file(&file).unwrap().remove(0);
        layout.bays.truncate(keep_bays);
        StoredLayout {
            info: RevisionInfo {
                road_id: layout.road.road_id.clone(),
                revision,
                created_at: DateTime::<Utc>::UNIX_EPOCH,
                created_by: "test".into(),
                based_on: None,
                bays: layout.bays.len() as i64,
                barriers: layout.barriers.len() as i64,
            },
            layout,
        }
    }

    #[test]
    fn a_late_older_revision_never_replaces_a_newer_one() {
        let street = Street::new(vec![qingfeng(1, 10)], Vec::new(), Duration::minutes(30));
        assert!(street.replace_road(qingfeng(3, 4)));
        // Revision 2 committed before 3 but reached the street after it.
        assert!(!street.replace_road(qingfeng(2, 7)));
        let map = street.map();
        let road = map.roads.values().next().unwrap();
        assert_eq!(road.info.revision, 3);
        assert_eq!(road.layout.bays.len(), 4);
        assert_eq!(map.bay_count(), 4);
    }

    #[test]
    fn a_search_in_progress_keeps_no_writer_waiting() {
        let street = Arc::new(Street::new(
            vec![qingfeng(1, 10)],
            Vec::new(),
            Duration::minutes(30),
        ));
        let now = DateTime::<Utc>::UNIX_EPOCH;
        let search = street.reports_at(now);
        let first = search.map().each_bay().next().map(|(o, _)| BayOrdinal(o));
        let writer = Arc::clone(&street);
        let (done, published) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            writer.replace_road(qingfeng(2, 4));
            let _ = done.send(());
        });
        let swapped = published.recv_timeout(std::time::Duration::from_secs(5));
        // The search goes on over its snapshot, reading states as they are.
        assert_eq!(search.map().bay_count(), 10);
        assert_eq!(
            search.of_ordinal(first.unwrap()).status,
            crate::domain::occupancy::BayStatus::Unknown
        );
        drop(search);
        assert!(swapped.is_ok(), "the publish waited for the search");
        assert_eq!(street.map().bay_count(), 4);
    }
}
