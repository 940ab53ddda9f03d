//! kerbside's street as the Open Mobility Foundation's Curb Data
//! Specification (CDS) 1.1 sees it: zones, spaces, objects and policies
//! derived from layouts, curb events from sessions, staleness and
//! violations, and the sessions table of the Metrics API.
//!
//! The mapping (see `docs/standards.md`):
//! * a **Curb Zone** is a run of bays on one side of a road, in order along
//!   the centre line, that share kind, `max_stay_minutes` and
//!   `enforced_hours` (CDS: one regulation along a zone's whole extent);
//!   its geometry is the convex hull of its bays;
//! * a **Curb Space** is a bay, a **Curb Object** a barrier;
//! * **Policies** come from a bay kind's user class, its stay limit and
//!   its enforced hours; a policy's id is derived from its content, so one
//!   id is one regulation forever, as CDS requires.
//!
//! Identifiers are UUID v5 under [`namespace`] of kerbside's own ids. A
//! zone's name includes its geometry (rounded to 1e-7 degrees, about a
//! centimetre), so a zone whose geometry changes gets a new id; which
//! earlier zone it replaces is decided by its *key*: road, side, rules and
//! the run's place among runs of the same rules on that side.
//!
//! Lengths are whole centimetres, instants epoch milliseconds (CDS
//! Timestamp). Everything here is pure: layouts, times and states come in
//! as arguments.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, TimeZone, Timelike, Utc};
use geo::{Area, Centroid, ConvexHull, Coord, LineString, MultiPolygon, Polygon};
use serde::Serialize;
use uuid::Uuid;

use crate::domain::history::{HOUR_MS, Hour, Totals, round2};
use crate::domain::ids::{BarrierId, BayId, RoadId};
use crate::domain::layout::{Barrier, BarrierKind, Bay, BayKind, EnforcedHours, Layout};
use crate::spatial::LocalFrame;

/// The specification version served (`version` in every envelope).
pub const VERSION: &str = "1.1";
/// Media type of every JSON answer of `/cds/v1`.
pub const JSON_MEDIA: &str = "application/vnd.cds+json;version=1.1";
/// Media type of the Metrics API's CSV answers.
pub const CSV_MEDIA: &str = "application/vnd.cds+csv;version=1.1";

/// The UUID v5 namespace of every id kerbside publishes in CDS: itself the
/// v5 of `urn:kerbside:cds` in the URL namespace, so anyone can recompute
/// an id from kerbside's ids.
pub fn namespace() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:kerbside:cds")
}

fn v5(name: &str) -> Uuid {
    Uuid::new_v5(&namespace(), name.as_bytes())
}

/// The Curb Space id of a bay: `v5("space:" + bay_id)`, stable while the
/// bay keeps its id.
pub fn space_id(bay: &BayId) -> Uuid {
    v5(&format!("space:{}", bay.as_str()))
}

/// The Curb Object id of a barrier: `v5("object:" + barrier_id)`.
pub fn object_id(barrier: &BarrierId) -> Uuid {
    v5(&format!("object:{}", barrier.as_str()))
}

/// The id of a curb event: `v5("event:" + what)`, where `what` names the
/// kerbside record and which of its instants the event is.
pub fn event_id(what: &str) -> Uuid {
    v5(&format!("event:{what}"))
}

/// The `event_session_id` tying a parking session's two events.
pub fn session_uuid(session_id: i64) -> Uuid {
    v5(&format!("session:{session_id}"))
}

/// The `data_source_device_id` of what watches a bay. kerbside does not
/// publish its device ids (a handheld is a warden); the source is named by
/// the bay it watches, which is what a consumer can join on.
pub fn bay_source_id(bay: &BayId) -> Uuid {
    v5(&format!("source:{}", bay.as_str()))
}

/// The `data_source_device_id` of what is seen on a road outside any bay
/// (a warden's sighting or report): `v5("source:road:" + road_id)`.
pub fn road_source_id(road: &RoadId) -> Uuid {
    v5(&format!("source:road:{}", road.as_str()))
}

/// Whether an `Accept` header admits `media` (e.g. `application/vnd.cds+json`)
/// at version [`VERSION`].
///
/// No header, or an empty one, admits it. Otherwise some media range with a
/// non-zero `q` must: `*/*`, `application/*` (they include it, RFC 9110
/// §12.5.1), or the type itself with no `version` (served the current
/// one) or with `version=1.1` or `1.1.x`. `application/json` does not:
/// CDS says a server MUST answer 406 to an `Accept` that does not include
/// its media type.
///
/// ```
/// use kerbside::domain::cds::accepts;
/// let cds = "application/vnd.cds+json";
/// assert!(accepts(None, cds));
/// assert!(accepts(Some("application/vnd.cds+json;version=1.1"), cds));
/// assert!(accepts(Some("text/html, */*;q=0.1"), cds));
/// assert!(!accepts(Some("application/json"), cds));
/// assert!(!accepts(Some("application/vnd.cds+json;version=1.0"), cds));
/// ```
pub fn accepts(header: Option<&str>, media: &str) -> bool {
    let Some(header) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return true;
    };
    let (top, _) = media.split_once('/').unwrap_or((media, ""));
    header.split(',').any(|range| {
        let mut parts = range.split(';');
        let kind = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0f64;
        let mut version: Option<String> = None;
        for p in parts {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "q" => q = v.parse().unwrap_or(0.0),
                "version" => version = Some(v.to_owned()),
                _ => {}
            }
        }
        if q <= 0.0 {
            return false;
        }
        if kind == "*/*" || kind == format!("{top}/*") {
            return true;
        }
        kind == media
            && version.is_none_or(|v| v == VERSION || v.starts_with(&format!("{VERSION}.")))
    })
}

/// The rules every bay of a zone shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub kind: BayKind,
    pub max_stay_minutes: Option<u32>,
    pub enforced_hours: Option<EnforcedHours>,
}

impl Rules {
    fn of(bay: &Bay) -> Self {
        Rules {
            kind: bay.kind,
            max_stay_minutes: bay.max_stay_minutes,
            enforced_hours: bay.enforced_hours,
        }
    }

    fn key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.kind.as_str(),
            self.max_stay_minutes
                .map_or_else(|| "-".to_owned(), |m| m.to_string()),
            self.enforced_hours
                .map_or_else(|| "-".to_owned(), |h| h.to_string())
        )
    }
}

/// A CDS Time Span (only the fields kerbside uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimeSpan {
    /// Local `"HH:MM"`, inclusive; absent means midnight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_of_day_start: Option<String>,
    /// Local `"HH:MM"`, exclusive; absent means midnight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_of_day_end: Option<String>,
}

/// A CDS Rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// `parking`, `loading` or `no parking`.
    pub activity: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_stay: Option<u32>,
    /// Always `minute` when `max_stay` is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_stay_unit: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_classes: Option<Vec<&'static str>>,
}

/// A CDS Policy. `published_date` is filled in from the layout history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub curb_policy_id: Uuid,
    pub published_date: i64,
    pub priority: u32,
    pub rules: Vec<Rule>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub time_spans: Vec<TimeSpan>,
}

fn hhmm(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// The time spans of enforced hours: one span, or two for a window across
/// midnight (CDS leaves an end before a start undefined).
fn spans(h: EnforcedHours) -> Vec<TimeSpan> {
    let end = |m: u16| (m < 1440).then(|| hhmm(m));
    let start = |m: u16| (m > 0).then(|| hhmm(m));
    if h.crosses_midnight() {
        vec![
            TimeSpan {
                time_of_day_start: start(h.start_minute),
                time_of_day_end: None,
            },
            TimeSpan {
                time_of_day_start: None,
                time_of_day_end: end(h.end_minute),
            },
        ]
    } else {
        vec![TimeSpan {
            time_of_day_start: start(h.start_minute),
            time_of_day_end: end(h.end_minute),
        }]
    }
}

/// What a bay kind allows, and to whom (CDS activity and user classes).
fn activity(kind: BayKind) -> (&'static str, Option<Vec<&'static str>>) {
    match kind {
        BayKind::Standard => ("parking", None),
        BayKind::Accessible => ("parking", Some(vec!["disabled_parking_permit"])),
        BayKind::Loading => ("loading", None),
        BayKind::Ev => ("parking", Some(vec!["electric"])),
        BayKind::Motorcycle => ("parking", Some(vec!["motorcycle"])),
    }
}

/// The policies of a zone's rules, in priority order (1 first): the stay
/// limit within the enforced hours; outside them, the same use without a
/// limit; for a kind reserved to a user class, `no parking` for everyone
/// else. Ids are v5 of the policy's content, so equal rules share a policy
/// and a policy never changes under its id.
pub fn policies_of(rules: &Rules) -> Vec<Policy> {
    let (act, classes) = activity(rules.kind);
    let rule = |max: Option<u32>| Rule {
        activity: act,
        max_stay: max,
        max_stay_unit: max.map(|_| "minute"),
        user_classes: classes.clone(),
    };
    let mut out = Vec::new();
    match (rules.max_stay_minutes, rules.enforced_hours) {
        (Some(max), Some(h)) => {
            out.push((vec![rule(Some(max))], spans(h)));
            out.push((vec![rule(None)], Vec::new()));
        }
        (max, _) => out.push((vec![rule(max)], Vec::new())),
    }
    if classes.is_some() {
        out.push((
            vec![Rule {
                activity: "no parking",
                max_stay: None,
                max_stay_unit: None,
                user_classes: None,
            }],
            Vec::new(),
        ));
    }
    out.into_iter()
        .enumerate()
        .map(|(i, (rules, time_spans))| {
            let priority = i as u32 + 1;
            let content = serde_json::json!({
                "priority": priority, "rules": rules, "time_spans": time_spans,
            });
            Policy {
                curb_policy_id: v5(&format!("policy:{content}")),
                published_date: 0,
                priority,
                rules,
                time_spans,
            }
        })
        .collect()
}

/// One zone of one layout revision.
#[derive(Debug, Clone)]
pub struct Zone {
    pub curb_zone_id: Uuid,
    /// What stays the same when the geometry changes (see the module doc).
    pub key: String,
    pub road_id: RoadId,
    pub road_name: String,
    pub side: Option<String>,
    pub rules: Rules,
    pub policy_ids: Vec<Uuid>,
    /// Convex hull of the bays, (lon, lat) degrees.
    pub geometry: Polygon<f64>,
    /// Bays in order along the centre line.
    pub bays: Vec<BayId>,
    /// Barriers whose nearest zone (on their road) this is.
    pub objects: Vec<BarrierId>,
    /// Extent along the centre line, cm.
    pub length_cm: i64,
    /// `N`, `NE`, ... `NW`: where the zone lies from the centre line.
    pub street_side: Option<&'static str>,
}

impl Zone {
    /// Everything a zone publishes except its dates: when this changes
    /// (and the id does not), `last_updated_date` moves.
    fn content(&self) -> String {
        format!("{:?}|{:?}|{:?}", self.policy_ids, self.bays, self.objects)
    }
}

/// A bay's place along its road: (start, end) metres along the centre
/// line, and its area in square metres.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Extent {
    pub start_m: f64,
    pub end_m: f64,
    pub area_m2: f64,
}

impl Extent {
    /// Length along the curb, centimetres.
    pub fn length_cm(&self) -> i64 {
        ((self.end_m - self.start_m) * 100.0).round() as i64
    }

    /// Depth from the curb, centimetres (area over length).
    pub fn width_cm(&self) -> Option<i64> {
        let l = self.end_m - self.start_m;
        (l > 0.01).then(|| (self.area_m2 / l * 100.0).round() as i64)
    }
}

/// The frame and centre line (in metres) of a road.
struct Along {
    frame: LocalFrame,
    line: Vec<Coord<f64>>,
}

impl Along {
    fn of(centre: &LineString<f64>) -> Self {
        let first = centre
            .0
            .first()
            .copied()
            .unwrap_or(Coord { x: 0.0, y: 0.0 });
        let frame = LocalFrame::at(first.x, first.y);
        Along {
            line: centre.0.iter().map(|c| frame.to_metres(*c)).collect(),
            frame,
        }
    }

    /// Distance along the centre line of the point nearest `p` (metres),
    /// and that nearest point.
    fn locate(&self, p: Coord<f64>) -> (f64, Coord<f64>) {
        let mut best = (f64::INFINITY, 0.0, p);
        let mut walked = 0.0;
        for w in self.line.windows(2) {
            let (a, b) = (w[0], w[1]);
            let d = b - a;
            let len2 = d.x * d.x + d.y * d.y;
            let t = if len2 > 0.0 {
                (((p - a).x * d.x + (p - a).y * d.y) / len2).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let q = a + d * t;
            let dist = ((p - q).x).hypot((p - q).y);
            if dist < best.0 {
                best = (dist, walked + t * len2.sqrt(), q);
            }
            walked += len2.sqrt();
        }
        if self.line.len() < 2 {
            return (0.0, self.line.first().copied().unwrap_or(p));
        }
        (best.1, best.2)
    }

    fn extent(&self, polygon: &Polygon<f64>) -> Extent {
        let m = self.frame.polygon_to_metres(polygon);
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for c in m.exterior().0.iter() {
            let (s, _) = self.locate(*c);
            lo = lo.min(s);
            hi = hi.max(s);
        }
        if !lo.is_finite() {
            (lo, hi) = (0.0, 0.0);
        }
        Extent {
            start_m: lo,
            end_m: hi,
            area_m2: m.unsigned_area(),
        }
    }

    /// The compass point (8 ways) from the centre line towards `polygon`.
    fn side_of(&self, polygon: &Polygon<f64>) -> Option<&'static str> {
        let c = self.frame.polygon_to_metres(polygon).centroid()?.0;
        let (_, q) = self.locate(c);
        let v = c - q;
        if v.x.hypot(v.y) < 0.01 {
            return None;
        }
        let bearing = v.x.atan2(v.y).to_degrees().rem_euclid(360.0);
        const POINTS: [&str; 8] = ["N", "NE", "E", "SE", "S", "SW", "W", "NW"];
        Some(POINTS[((bearing + 22.5) / 45.0).floor() as usize % 8])
    }
}

/// Each bay's extent along its road, by bay id.
pub fn extents(layout: &Layout) -> BTreeMap<BayId, Extent> {
    let along = Along::of(&layout.road.centre_line);
    layout
        .bays
        .iter()
        .map(|b| (b.bay_id.clone(), along.extent(&b.polygon)))
        .collect()
}

/// The geometry written into a zone's id: rounded to 1e-7 degrees.
fn fingerprint(p: &Polygon<f64>) -> String {
    let mut s = String::new();
    for c in p.exterior().0.iter() {
        let _ = write!(s, "{:.7},{:.7};", c.x, c.y);
    }
    s
}

/// The zones of one road's layout: per side, bays in order along the
/// centre line, cut wherever the rules change. A layout with no bays has
/// no zones (the road is closed to parking).
pub fn zones_of(layout: &Layout) -> Vec<Zone> {
    let along = Along::of(&layout.road.centre_line);
    let mut by_side: BTreeMap<Option<String>, Vec<(&Bay, Extent)>> = BTreeMap::new();
    for bay in &layout.bays {
        by_side
            .entry(bay.side.clone())
            .or_default()
            .push((bay, along.extent(&bay.polygon)));
    }
    let mut zones = Vec::new();
    for (side, mut bays) in by_side {
        bays.sort_by(|a, b| {
            a.1.start_m
                .total_cmp(&b.1.start_m)
                .then_with(|| a.0.bay_id.as_str().cmp(b.0.bay_id.as_str()))
        });
        let mut runs: Vec<Vec<(&Bay, Extent)>> = Vec::new();
        for (bay, ext) in bays {
            match runs.last_mut() {
                Some(run) if Rules::of(run[0].0) == Rules::of(bay) => run.push((bay, ext)),
                _ => runs.push(vec![(bay, ext)]),
            }
        }
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for run in runs {
            let rules = Rules::of(run[0].0);
            let n = seen.entry(rules.key()).or_default();
            let key = format!(
                "{}/{}/{}/{}",
                layout.road.road_id.as_str(),
                side.as_deref().unwrap_or("-"),
                rules.key(),
                n
            );
            *n += 1;
            let hull = MultiPolygon::new(run.iter().map(|(b, _)| b.polygon.clone()).collect())
                .convex_hull();
            let start = run
                .iter()
                .map(|r| r.1.start_m)
                .fold(f64::INFINITY, f64::min);
            let end = run
                .iter()
                .map(|r| r.1.end_m)
                .fold(f64::NEG_INFINITY, f64::max);
            zones.push(Zone {
                curb_zone_id: v5(&format!("zone:{key}:{}", fingerprint(&hull))),
                key,
                road_id: layout.road.road_id.clone(),
                road_name: layout.road.name.clone(),
                side: side.clone(),
                rules,
                policy_ids: policies_of(&rules)
                    .iter()
                    .map(|p| p.curb_policy_id)
                    .collect(),
                street_side: along.side_of(&hull),
                geometry: hull,
                bays: run.iter().map(|(b, _)| b.bay_id.clone()).collect(),
                objects: Vec::new(),
                length_cm: ((end - start) * 100.0).round() as i64,
            });
        }
    }
    for barrier in &layout.barriers {
        if let Some(z) = nearest_zone(&along, &zones, barrier) {
            zones[z].objects.push(barrier.barrier_id.clone());
        }
    }
    zones
}

fn nearest_zone(along: &Along, zones: &[Zone], barrier: &Barrier) -> Option<usize> {
    let c = along.frame.to_metres(barrier.polygon.centroid()?.0);
    zones
        .iter()
        .enumerate()
        .filter_map(|(i, z)| {
            let zc = along.frame.to_metres(z.geometry.centroid()?.0);
            Some((i, (zc - c).x.hypot((zc - c).y)))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// The CDS `object_type` of a barrier kind.
pub fn object_type(kind: BarrierKind) -> &'static str {
    match kind {
        BarrierKind::Planter => "planter",
        BarrierKind::Bollard => "bollard",
        BarrierKind::Fence => "barrier",
    }
}

/// One revision of one road, as the history gives it.
pub struct Revision<'a> {
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub layout: &'a Layout,
}

/// A zone with the dates the history gives it.
#[derive(Debug, Clone)]
pub struct DatedZone {
    pub zone: Zone,
    /// When this id first appeared (also its `start_date`), ms.
    pub published_ms: i64,
    /// When its published content last changed, ms.
    pub last_updated_ms: i64,
    /// For a retired zone: when the revision that dropped it was
    /// published (exclusive), ms.
    pub end_ms: Option<i64>,
    /// Ids this zone replaced, most recent first.
    pub prev_ids: Vec<Uuid>,
}

/// A space's dates: first published, last changed (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceDates {
    pub published_ms: i64,
    pub last_updated_ms: i64,
}

/// Every zone, policy and date one road's history gives.
#[derive(Debug, Default)]
pub struct RoadCatalogue {
    /// Current zones first (in layout order), then retired ones.
    pub zones: Vec<DatedZone>,
    /// Policies by id, with the first time any zone of the road used them.
    pub policies: BTreeMap<Uuid, Policy>,
    /// Bays of the current layout, by id.
    pub spaces: BTreeMap<BayId, SpaceDates>,
    /// Barriers of the current layout, by id.
    pub objects: BTreeMap<BarrierId, SpaceDates>,
}

/// Dates and lineage from a road's revisions, oldest first; the last is
/// the current layout. Empty history gives an empty catalogue.
pub fn catalogue(history: &[Revision<'_>]) -> RoadCatalogue {
    let mut out = RoadCatalogue::default();
    let Some(current) = history.last() else {
        return out;
    };
    let zones: Vec<Vec<Zone>> = history.iter().map(|r| zones_of(r.layout)).collect();
    let ms = |i: usize| history[i].created_at.timestamp_millis();
    for (i, revision_zones) in zones.iter().enumerate() {
        for z in revision_zones {
            for p in policies_of(&z.rules) {
                out.policies.entry(p.curb_policy_id).or_insert(Policy {
                    published_date: ms(i),
                    ..p
                });
            }
        }
    }
    let last = zones.len() - 1;
    // Every id, with the revisions it appears in.
    let mut ids: BTreeMap<Uuid, BTreeSet<usize>> = BTreeMap::new();
    for (i, zs) in zones.iter().enumerate() {
        for z in zs {
            ids.entry(z.curb_zone_id).or_default().insert(i);
        }
    }
    let dated = |i: usize, z: &Zone, end_ms: Option<i64>| {
        let first = ids[&z.curb_zone_id].first().copied().unwrap_or(i);
        let mut since = i;
        while since > first
            && zones[since - 1]
                .iter()
                .any(|o| o.curb_zone_id == z.curb_zone_id && o.content() == z.content())
        {
            since -= 1;
        }
        let mut prev_ids = Vec::new();
        for earlier in zones[..first].iter().rev() {
            for o in earlier {
                if o.key == z.key
                    && o.curb_zone_id != z.curb_zone_id
                    && !prev_ids.contains(&o.curb_zone_id)
                {
                    prev_ids.push(o.curb_zone_id);
                }
            }
        }
        DatedZone {
            zone: z.clone(),
            published_ms: ms(first),
            last_updated_ms: ms(since),
            end_ms,
            prev_ids,
        }
    };
    for z in &zones[last] {
        out.zones.push(dated(last, z, None));
    }
    for (id, seen) in &ids {
        let Some(&gone_after) = seen.last() else {
            continue;
        };
        if gone_after == last {
            continue;
        }
        if let Some(z) = zones[gone_after].iter().find(|z| z.curb_zone_id == *id) {
            out.zones
                .push(dated(gone_after, z, Some(ms(gone_after + 1))));
        }
    }
    // A space or object is updated when its feature changes.
    let bay_text = |l: &Layout, id: &BayId| {
        l.bays
            .iter()
            .find(|b| &b.bay_id == id)
            .map(|b| b.feature().to_string())
    };
    let barrier_text = |l: &Layout, id: &BarrierId| {
        l.barriers
            .iter()
            .find(|b| &b.barrier_id == id)
            .map(|b| b.feature().to_string())
    };
    for bay in &current.layout.bays {
        out.spaces.insert(
            bay.bay_id.clone(),
            dates(history, |l| bay_text(l, &bay.bay_id)),
        );
    }
    for barrier in &current.layout.barriers {
        out.objects.insert(
            barrier.barrier_id.clone(),
            dates(history, |l| barrier_text(l, &barrier.barrier_id)),
        );
    }
    out
}

/// First appearance and last change of a feature through the history
/// (`text` gives its form in a layout, `None` when absent).
fn dates(history: &[Revision<'_>], text: impl Fn(&Layout) -> Option<String>) -> SpaceDates {
    let ms = |i: usize| history[i].created_at.timestamp_millis();
    let last = history.len() - 1;
    let now = text(history[last].layout);
    let mut since = last;
    while since > 0 && text(history[since - 1].layout) == now {
        since -= 1;
    }
    let mut first = since;
    while first > 0 && text(history[first - 1].layout).is_some() {
        first -= 1;
    }
    SpaceDates {
        published_ms: ms(first),
        last_updated_ms: ms(since),
    }
}

/// A change of a bay's link, derived from the gaps in what it sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comms {
    /// Nothing heard for longer than the staleness window: lost at the
    /// last event plus the window.
    Lost,
    /// The first event after such a gap.
    Restored,
}

/// The link changes of one bay within `[from, to)`, oldest first.
///
/// `before` is the bay's newest event before `times` begin (if any);
/// `times` its event times (ms, ascending) from `from - staleness` to
/// `to`. A gap longer than `staleness_ms` between two events is a loss at
/// the first plus the window and a restoration at the second; a silence
/// reaching `now` is a loss alone. The same rule as the bay's `unknown`
/// status, so the two always agree.
pub fn comms_changes(
    before: Option<i64>,
    times: &[i64],
    staleness_ms: i64,
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
) -> Vec<(Comms, i64)> {
    let mut out = Vec::new();
    let mut prev = before;
    let within = |t: i64| t >= from_ms && t < to_ms;
    for &t in times {
        if let Some(p) = prev
            && t - p > staleness_ms
        {
            if within(p + staleness_ms) {
                out.push((Comms::Lost, p + staleness_ms));
            }
            if within(t) {
                out.push((Comms::Restored, t));
            }
        }
        prev = Some(prev.map_or(t, |p| p.max(t)));
    }
    if let Some(p) = prev
        && now_ms - p > staleness_ms
        && within(p + staleness_ms)
    {
        out.push((Comms::Lost, p + staleness_ms));
    }
    out
}

/// One row of the Metrics API's sessions table.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub event_session_id: Uuid,
    pub event_id_start: Uuid,
    pub event_id_end: Option<Uuid>,
    /// (lat, lng) of the bay's centroid.
    pub location: (f64, f64),
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    pub curb_zone_id: Option<Uuid>,
    pub curb_space_id: Uuid,
}

/// The columns of CDS `/metrics/sessions`, in the specification's order.
pub const SESSION_COLUMNS: [&str; 16] = [
    "session_type",
    "event_session_id",
    "event_id_start",
    "event_id_end",
    "event_location_start_latitude",
    "event_location_start_longitude",
    "event_location_end_latitude",
    "event_location_end_longitude",
    "event_time_start",
    "event_time_end",
    "curb_zone_id",
    "curb_area_ids",
    "curb_space_id",
    "curb_object_id",
    "vehicle_length",
    "vehicle_type",
];

/// The sessions table as CSV (RFC 4180, CRLF line ends): the header, then
/// a `parking` row per session. A session still under way has its end
/// fields empty (CDS: missing values are null). No field needs quoting:
/// every value is a UUID, a number or a fixed word.
pub fn sessions_csv(rows: &[SessionRow]) -> String {
    let mut out = SESSION_COLUMNS.join(",");
    out.push_str("\r\n");
    let opt = |v: Option<String>| v.unwrap_or_default();
    for r in rows {
        let (lat, lng) = r.location;
        let ended = r.end_ms.is_some();
        let fields = [
            "parking".to_owned(),
            r.event_session_id.to_string(),
            r.event_id_start.to_string(),
            opt(r.event_id_end.map(|u| u.to_string())),
            format!("{lat:.7}"),
            format!("{lng:.7}"),
            opt(ended.then(|| format!("{lat:.7}"))),
            opt(ended.then(|| format!("{lng:.7}"))),
            r.start_ms.to_string(),
            opt(r.end_ms.map(|t| t.to_string())),
            opt(r.curb_zone_id.map(|u| u.to_string())),
            String::new(),
            r.curb_space_id.to_string(),
            String::new(),
            String::new(),
            String::new(),
        ];
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

/// The metrics of the Metrics API's aggregates, in the order each place's
/// rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MetricType {
    /// Sessions that started in the hour.
    TotalSessions,
    /// Sessions that started in the hour per bay present (a space: its
    /// sessions; a zone: over its average number of bays in the hour).
    Turnover,
    /// Mean dwell of the sessions that started in the hour and have ended,
    /// in minutes.
    AverageDwellTime,
    /// Occupied over known bay-time, 0-100.
    OccupancyPercent,
}

impl MetricType {
    pub const ALL: [MetricType; 4] = [
        MetricType::TotalSessions,
        MetricType::Turnover,
        MetricType::AverageDwellTime,
        MetricType::OccupancyPercent,
    ];

    /// The specification's name.
    pub fn name(self) -> &'static str {
        match self {
            MetricType::TotalSessions => "total_sessions",
            MetricType::Turnover => "turnover",
            MetricType::AverageDwellTime => "average_dwell_time",
            MetricType::OccupancyPercent => "occupancy_percent",
        }
    }

    pub fn parse(s: &str) -> Option<MetricType> {
        MetricType::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// The columns of the Metrics API's aggregates, in order.
pub const AGGREGATE_COLUMNS: [&str; 6] = [
    "curb_place_type",
    "curb_place_id",
    "metric_type",
    "date",
    "hour",
    "value",
];

/// The value of an hour whose sensors were offline for most of it.
pub const OFFLINE: f64 = -1.0;

/// The value of `metric` for one place's hour: `None` when the place had
/// no bay on the layout in it, or (average dwell) no session that started
/// in it has ended; [`OFFLINE`] when more than half its bay-time was
/// unknown; otherwise rounded to two decimals.
pub fn aggregate_value(metric: MetricType, h: &Totals) -> Option<f64> {
    if h.bay_ms <= 0 {
        return None;
    }
    if 2 * (h.bay_ms - h.known_ms) > h.bay_ms {
        return Some(OFFLINE);
    }
    match metric {
        MetricType::TotalSessions => Some(h.sessions as f64),
        MetricType::Turnover => h.turnover_per_bay(HOUR_MS).map(round2),
        MetricType::AverageDwellTime => h.average_dwell_minutes().map(round2),
        MetricType::OccupancyPercent => h.occupancy_percent().map(round2),
    }
}

/// One row of the aggregates.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateRow {
    /// `zone` or `space`.
    pub curb_place_type: &'static str,
    pub curb_place_id: Uuid,
    pub metric: MetricType,
    /// The local date and hour of the start of the UTC hour.
    pub date: NaiveDate,
    pub hour: u32,
    pub value: f64,
}

/// The rows of one place: for each metric of `metrics`, one row per hour
/// of `hours` that has a value, the hours in order. `hours` are the
/// place's UTC hours, its bays' figures summed.
pub fn aggregate_rows<Z: TimeZone>(
    curb_place_type: &'static str,
    curb_place_id: Uuid,
    hours: &[Hour],
    metrics: &[MetricType],
    tz: &Z,
) -> Vec<AggregateRow> {
    let mut out = Vec::new();
    for &metric in metrics {
        for h in hours {
            let Some(value) = aggregate_value(metric, &Totals::of([h])) else {
                continue;
            };
            let Some(start) = DateTime::<Utc>::from_timestamp_millis(h.start_ms) else {
                continue;
            };
            let local = start.with_timezone(tz).naive_local();
            out.push(AggregateRow {
                curb_place_type,
                curb_place_id,
                metric,
                date: local.date(),
                hour: local.hour(),
                value,
            });
        }
    }
    out
}

/// Sums bays' hours hour by hour (all cover the same hours).
pub fn sum_hours<'a>(bays: impl IntoIterator<Item = &'a [Hour]>) -> Vec<Hour> {
    let mut out: Vec<Hour> = Vec::new();
    for hours in bays {
        if out.is_empty() {
            out = hours.to_vec();
            continue;
        }
        for (o, h) in out.iter_mut().zip(hours) {
            o.bays += h.bays;
            o.bay_ms += h.bay_ms;
            o.known_ms += h.known_ms;
            o.occupied_ms += h.occupied_ms;
            o.sessions += h.sessions;
            o.ended_sessions += h.ended_sessions;
            o.dwell_ms += h.dwell_ms;
        }
    }
    out
}

/// The aggregates as CSV (RFC 4180, CRLF line ends), the header first.
/// No field needs quoting: each is a UUID, a number, a date or a word.
pub fn aggregates_csv(rows: &[AggregateRow]) -> String {
    let mut out = AGGREGATE_COLUMNS.join(",");
    out.push_str("\r\n");
    for r in rows {
        let _ = write!(
            out,
            "{},{},{},{},{},{}\r\n",
            r.curb_place_type,
            r.curb_place_id,
            r.metric.name(),
            r.date.format("%Y-%m-%d"),
            r.hour,
            r.value
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qingfeng() -> Layout {
        let file =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("geodata/qingfeng-road.geojson");
        crate::geodata::load_file(&file).unwrap().remove(0)
    }

    #[test]
    fn ids_are_name_based_and_version_5() {
        let bay = BayId::parse("QF-N-001").unwrap();
        let a = space_id(&bay);
        assert_eq!(a, space_id(&bay));
        assert_eq!(a.get_version_num(), 5);
        assert_ne!(a, space_id(&BayId::parse("QF-N-002").unwrap()));
        // Anyone can recompute it from the documented names.
        let ns = Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:kerbside:cds");
        assert_eq!(a, Uuid::new_v5(&ns, b"space:QF-N-001"));
    }

    #[test]
    fn qingfeng_road_has_a_zone_per_run_of_equal_rules_per_side() {
        let layout = qingfeng();
        let zones = zones_of(&layout);
        let bays: usize = zones.iter().map(|z| z.bays.len()).sum();
        assert_eq!(bays, layout.bays.len());
        for z in &zones {
            let r = z.rules;
            assert!(z.bays.iter().all(|id| {
                let b = layout.bays.iter().find(|b| &b.bay_id == id).unwrap();
                Rules::of(b) == r && b.side == z.side
            }));
            // The hull contains every bay of the zone.
            use geo::Contains;
            for id in &z.bays {
                let b = layout.bays.iter().find(|b| &b.bay_id == id).unwrap();
                assert!(z.geometry.contains(&b.polygon), "{id:?}");
            }
            assert!(z.length_cm > 0);
        }
        let sides: BTreeSet<_> = zones.iter().map(|z| z.street_side).collect();
        assert_eq!(sides.len(), 2, "{sides:?}");
        // Every barrier belongs to exactly one zone.
        let objects: usize = zones.iter().map(|z| z.objects.len()).sum();
        assert_eq!(objects, layout.barriers.len());
    }

    #[test]
    fn a_bay_extent_is_its_length_along_the_road() {
        let layout = qingfeng();
        let e = extents(&layout);
        let n5 = e[&BayId::parse("QF-N-005").unwrap()];
        // The street's standard bays are 6.0 m long (see geodata/README.md).
        assert!((n5.length_cm() - 600).abs() <= 2, "{}", n5.length_cm());
        assert!(n5.width_cm().unwrap() > 150);
    }

    #[test]
    fn moving_a_bay_gives_its_zone_a_new_id_that_names_the_old_one() {
        let v1 = qingfeng();
        let mut v2 = v1.clone();
        let first = &mut v2.bays[0];
        first.polygon = geo::MapCoords::map_coords(&first.polygon, |c| Coord {
            x: c.x + 0.00001,
            y: c.y,
        });
        let moved = first.bay_id.clone();
        let t = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap();
        let history = [
            Revision {
                revision: 1,
                created_at: t(1_000),
                layout: &v1,
            },
            Revision {
                revision: 2,
                created_at: t(2_000),
                layout: &v2,
            },
        ];
        let cat = catalogue(&history);
        let current: Vec<&DatedZone> = cat.zones.iter().filter(|z| z.end_ms.is_none()).collect();
        let retired: Vec<&DatedZone> = cat.zones.iter().filter(|z| z.end_ms.is_some()).collect();
        let changed = current
            .iter()
            .find(|z| z.zone.bays.contains(&moved))
            .unwrap();
        assert_eq!(changed.published_ms, 2_000_000);
        assert_eq!(retired.len(), 1);
        assert_eq!(changed.prev_ids, vec![retired[0].zone.curb_zone_id]);
        assert_eq!(retired[0].end_ms, Some(2_000_000));
        // Every other zone kept its id and its first date.
        for z in current.iter().filter(|z| !z.zone.bays.contains(&moved)) {
            assert_eq!(z.published_ms, 1_000_000);
            assert!(z.prev_ids.is_empty());
        }
        assert_eq!(cat.spaces[&moved].last_updated_ms, 2_000_000);
        assert_eq!(cat.spaces[&moved].published_ms, 1_000_000);
    }

    #[test]
    fn policies_say_limit_hours_and_class() {
        let p = policies_of(&Rules {
            kind: BayKind::Standard,
            max_stay_minutes: Some(120),
            enforced_hours: EnforcedHours::parse("08:00-20:00"),
        });
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].rules[0].max_stay, Some(120));
        assert_eq!(p[0].rules[0].max_stay_unit, Some("minute"));
        assert_eq!(
            p[0].time_spans[0].time_of_day_start.as_deref(),
            Some("08:00")
        );
        assert_eq!(p[0].time_spans[0].time_of_day_end.as_deref(), Some("20:00"));
        assert_eq!(p[1].rules[0].max_stay, None);
        let night = policies_of(&Rules {
            kind: BayKind::Accessible,
            max_stay_minutes: Some(60),
            enforced_hours: EnforcedHours::parse("22:00-06:00"),
        });
        assert_eq!(night[0].time_spans.len(), 2);
        assert_eq!(night[2].rules[0].activity, "no parking");
        assert_eq!(
            night[0].rules[0].user_classes,
            Some(vec!["disabled_parking_permit"])
        );
        // Same content, same id; different content, different id.
        assert_eq!(
            policies_of(&Rules {
                kind: BayKind::Standard,
                max_stay_minutes: Some(120),
                enforced_hours: EnforcedHours::parse("08:00-20:00"),
            })[0]
                .curb_policy_id,
            p[0].curb_policy_id
        );
        assert_ne!(night[0].curb_policy_id, p[0].curb_policy_id);
    }

    #[test]
    fn link_losses_follow_the_staleness_rule() {
        let w = 30 * 60_000;
        // Heard at 0 and 10 min, then silence until 100 min.
        let got = comms_changes(None, &[0, 600_000, 6_000_000], w, 0, 7_000_000, 7_000_000);
        assert_eq!(
            got,
            vec![(Comms::Lost, 600_000 + w), (Comms::Restored, 6_000_000)]
        );
        // Silent up to now: lost only.
        let got = comms_changes(Some(0), &[], w, 0, 10_000_000, 10_000_000);
        assert_eq!(got, vec![(Comms::Lost, w)]);
        // A loss before the window is not told; its restoration is.
        let got = comms_changes(Some(0), &[5_000_000], w, 4_000_000, 6_000_000, 6_000_000);
        assert_eq!(got, vec![(Comms::Restored, 5_000_000)]);
    }

    #[test]
    fn accept_follows_the_specification() {
        let m = "application/vnd.cds+json";
        assert!(accepts(Some(""), m));
        assert!(accepts(Some("application/*"), m));
        assert!(accepts(Some("application/vnd.cds+json"), m));
        assert!(accepts(
            Some("application/vnd.cds+json; version=\"1.1\""),
            m
        ));
        assert!(accepts(Some("application/vnd.cds+json;version=1.1.0"), m));
        assert!(!accepts(Some("application/vnd.cds+json;version=1.10"), m));
        assert!(!accepts(Some("*/*;q=0"), m));
        assert!(!accepts(Some("text/csv"), m));
        assert!(accepts(
            Some("application/vnd.cds+csv;version=1.1"),
            "application/vnd.cds+csv"
        ));
    }

    #[test]
    fn the_sessions_table_has_the_specified_columns() {
        let csv = sessions_csv(&[SessionRow {
            event_session_id: session_uuid(1),
            event_id_start: event_id("session:1:start"),
            event_id_end: None,
            location: (30.75, 120.76),
            start_ms: 5,
            end_ms: None,
            curb_zone_id: None,
            curb_space_id: space_id(&BayId::parse("B1").unwrap()),
        }]);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines[0].split(',').count(), 16);
        assert_eq!(lines[1].split(',').count(), 16);
        assert!(lines[1].starts_with("parking,"));
        assert_eq!(lines[1].split(',').nth(9), Some(""));
    }

    fn hour(start_ms: i64, bay_ms: i64, known_ms: i64, occupied_ms: i64) -> Hour {
        Hour {
            start_ms,
            bays: 1,
            bay_ms,
            known_ms,
            occupied_ms,
            ..Hour::default()
        }
    }

    #[test]
    fn aggregate_values_follow_the_methodology_and_minus_one_when_mostly_unknown() {
        let mut h = hour(0, 2 * HOUR_MS, HOUR_MS + 1, HOUR_MS / 2);
        h.sessions = 3;
        h.ended_sessions = 2;
        h.dwell_ms = 50 * 60_000;
        let t = Totals::of([&h]);
        let v = |m| aggregate_value(m, &t);
        assert_eq!(v(MetricType::TotalSessions), Some(3.0));
        // Two bays' worth of bay-time: 1.5 sessions per bay.
        assert_eq!(v(MetricType::Turnover), Some(1.5));
        assert_eq!(v(MetricType::AverageDwellTime), Some(25.0));
        // 30 of just over 60 known minutes.
        assert_eq!(v(MetricType::OccupancyPercent), Some(50.0));
        // Unknown for exactly half: still a value; for more: -1.
        let half = Totals::of([&hour(0, HOUR_MS, HOUR_MS / 2, 0)]);
        assert_eq!(
            aggregate_value(MetricType::OccupancyPercent, &half),
            Some(0.0)
        );
        let mostly = Totals::of([&hour(0, HOUR_MS, HOUR_MS / 2 - 1, 0)]);
        for m in MetricType::ALL {
            assert_eq!(aggregate_value(m, &mostly), Some(OFFLINE), "{m:?}");
        }
        // No bay: no row; no ended session: no dwell.
        assert_eq!(
            aggregate_value(MetricType::TotalSessions, &Totals::default()),
            None
        );
        let idle = Totals::of([&hour(0, HOUR_MS, HOUR_MS, 0)]);
        assert_eq!(aggregate_value(MetricType::AverageDwellTime, &idle), None);
        assert_eq!(aggregate_value(MetricType::TotalSessions, &idle), Some(0.0));
    }

    #[test]
    fn aggregates_csv_has_the_specified_header_and_local_dates_and_hours() {
        let tz = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
        // 2021-10-31T15:00Z and 16:00Z: 23:00 that day and 00:00 the next, +08:00.
        let start = 1_635_692_400_000;
        let mut a = hour(start, HOUR_MS, HOUR_MS, HOUR_MS / 4);
        a.sessions = 2;
        let b = hour(start + HOUR_MS, HOUR_MS, 0, 0);
        let id = Uuid::nil();
        let rows = aggregate_rows(
            "zone",
            id,
            &[a, b],
            &[MetricType::TotalSessions, MetricType::OccupancyPercent],
            &tz,
        );
        assert_eq!(
            aggregates_csv(&rows),
            format!(
                "curb_place_type,curb_place_id,metric_type,date,hour,value\r\n\
                 zone,{id},total_sessions,2021-10-31,23,2\r\n\
                 zone,{id},total_sessions,2021-11-01,0,-1\r\n\
                 zone,{id},occupancy_percent,2021-10-31,23,25\r\n\
                 zone,{id},occupancy_percent,2021-11-01,0,-1\r\n"
            )
        );
        assert_eq!(MetricType::parse("turnover"), Some(MetricType::Turnover));
        assert_eq!(MetricType::parse("Turnover"), None);
        let summed = sum_hours([&[a, b][..], &[a, b][..]]);
        assert_eq!(
            (summed[0].bays, summed[0].sessions, summed[1].bay_ms),
            (2, 4, 2 * HOUR_MS)
        );
    }
}
