//! Road layouts: the road's centre line, its bays and its barriers.
//!
//! The wire form is a GeoJSON FeatureCollection (contract section 1). This
//! module turns it into typed values, reporting **every** problem it finds
//! with the feature it belongs to, and turns a layout back into the same
//! GeoJSON: import, export and import again gives the same features.
//!
//! A city holds a million bays, so a parsed feature does not keep its
//! `geojson::Feature` (about 1.5 KB of maps and vectors). It keeps its typed
//! fields, which rebuild the usual feature exactly, and, as compact JSON
//! text, only what they do not say ([`FeatureRest`]): extra properties, a
//! property written differently from how the typed field prints it, a
//! geometry with a third coordinate, bbox or foreign members.
//!
//! GIS tools do not all keep GeoJSON's string ids. A GeoPackage, QGIS's
//! default store, gives every feature an integer row id, keeps the string
//! id as an `id` column, and writes every column for every feature (a bay
//! gets `"barrier_id": null`). So a feature's identifier is read from the
//! first of: its string `id`, its `bay_id`/`barrier_id`/`road_id` property
//! (by `feature_type`), its `id` property; a numeric top-level id is
//! ignored; every one present must agree. A property whose value is null
//! counts as absent, and is not kept, unless the contract gives the null a
//! meaning (a bay's `max_stay_minutes`, `enforced_hours` and `side`, a
//! road's `name_en`). The `id` property, once checked, is not kept either:
//! export writes the identifier as the feature's string `id`, the
//! contract's form, so the next round trip through such a tool is clean.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use geo::{Coord, LineString, Polygon};
use geojson::{
    Bbox, Feature, FeatureCollection, Geometry, GeometryValue, JsonObject, JsonValue, Position,
    feature::Id,
};
use serde::{Deserialize, Serialize};

use super::ids::{BarrierId, BayId, IdError, RoadId, check_identifier};

/// The kind of a parking bay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BayKind {
    Standard,
    Accessible,
    Loading,
    Ev,
    Motorcycle,
}

impl BayKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [BayKind; 5] = [
        BayKind::Standard,
        BayKind::Accessible,
        BayKind::Loading,
        BayKind::Ev,
        BayKind::Motorcycle,
    ];

    /// The wire name, e.g. `"loading"`.
    pub fn as_str(self) -> &'static str {
        match self {
            BayKind::Standard => "standard",
            BayKind::Accessible => "accessible",
            BayKind::Loading => "loading",
            BayKind::Ev => "ev",
            BayKind::Motorcycle => "motorcycle",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The kind of a barrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BarrierKind {
    Planter,
    Bollard,
    Fence,
}

impl BarrierKind {
    /// The wire name, e.g. `"planter"`.
    pub fn as_str(self) -> &'static str {
        match self {
            BarrierKind::Planter => "planter",
            BarrierKind::Bollard => "bollard",
            BarrierKind::Fence => "fence",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Planter, Self::Bollard, Self::Fence]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Daily enforcement window in the deployment's local time, `"HH:MM-HH:MM"`.
///
/// Minutes are counted from local midnight. A window whose end is before its
/// start runs across midnight (`"20:00-02:00"`); `"00:00-24:00"` is all day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnforcedHours {
    /// Start, in minutes after local midnight (0..1440).
    pub start_minute: u16,
    /// End, in minutes after local midnight (1..=1440).
    pub end_minute: u16,
}

impl EnforcedHours {
    /// Parses `"HH:MM-HH:MM"`; `None` when it is not of that form, a time is
    /// out of range, or the window is empty.
    pub fn parse(s: &str) -> Option<Self> {
        let (a, b) = s.split_once('-')?;
        let start = parse_hhmm(a)?;
        let end = parse_hhmm(b)?;
        if start == end || start == 1440 {
            return None;
        }
        Some(Self {
            start_minute: start,
            end_minute: if end == 0 { 1440 } else { end },
        })
    }

    /// Whether the window runs across local midnight.
    pub fn crosses_midnight(&self) -> bool {
        self.end_minute < self.start_minute
    }
}

impl fmt::Display for EnforcedHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, e) = (self.start_minute, self.end_minute);
        write!(f, "{:02}:{:02}-{:02}:{:02}", s / 60, s % 60, e / 60, e % 60)
    }
}

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

/// A road: its centre line and names.
#[derive(Debug, Clone)]
pub struct Road {
    pub road_id: RoadId,
    pub name: String,
    pub name_en: Option<String>,
    /// Centre line, (longitude, latitude) in degrees, WGS 84.
    pub centre_line: LineString<f64>,
    /// What the fields above do not say of the feature as it came.
    pub rest: FeatureRest,
}

/// A parking bay in one layout revision.
#[derive(Debug, Clone)]
pub struct Bay {
    pub bay_id: BayId,
    pub road_id: RoadId,
    pub kind: BayKind,
    /// Longest permitted stay in minutes; `None` is no limit.
    pub max_stay_minutes: Option<u32>,
    /// When the limit applies; `None` is always.
    pub enforced_hours: Option<EnforcedHours>,
    pub side: Option<String>,
    /// Outline, (longitude, latitude) in degrees, WGS 84.
    pub polygon: Polygon<f64>,
    /// What the fields above do not say of the feature as it came.
    pub rest: FeatureRest,
}

/// A barrier (planter, bollard, fence) in one layout revision.
#[derive(Debug, Clone)]
pub struct Barrier {
    pub barrier_id: BarrierId,
    pub road_id: RoadId,
    pub kind: BarrierKind,
    /// Outline, (longitude, latitude) in degrees, WGS 84.
    pub polygon: Polygon<f64>,
    /// What the fields above do not say of the feature as it came.
    pub rest: FeatureRest,
}

/// One road's complete layout: the unit of import, export and revision.
#[derive(Debug, Clone)]
pub struct Layout {
    pub road: Road,
    pub bays: Vec<Bay>,
    pub barriers: Vec<Barrier>,
}

impl Layout {
    /// The layout as a GeoJSON FeatureCollection: the road, then bays, then
    /// barriers, each feature exactly as it was imported.
    pub fn to_feature_collection(&self) -> FeatureCollection {
        let features = std::iter::once(self.road.feature())
            .chain(self.bays.iter().map(Bay::feature))
            .chain(self.barriers.iter().map(Barrier::feature))
            .collect();
        FeatureCollection {
            bbox: None,
            features,
            foreign_members: None,
        }
    }

    /// The road's id.
    pub fn road_id(&self) -> &RoadId {
        &self.road.road_id
    }
}

/// What a feature's typed fields do not say, as compact JSON text; `None`
/// (no allocation) for the usual feature, which the typed fields rebuild
/// exactly.
///
/// Holds the feature's `bbox` and foreign members, its geometry when the
/// typed outline would not give it back (a third coordinate, a bbox or
/// foreign members of its own), and every property the typed fields would
/// not write back identically: unknown properties, explicit nulls, and
/// values written another way (`"20:00-00:00"` reads as 20:00 to 24:00).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeatureRest(Option<Box<str>>);

#[derive(Debug, Default, Serialize, Deserialize)]
struct RestParts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bbox: Option<Bbox>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    geometry: Option<Geometry>,
    #[serde(default, skip_serializing_if = "JsonObject::is_empty")]
    properties: JsonObject,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    foreign_members: Option<JsonObject>,
}

impl FeatureRest {
    /// What of `feature` is not `derived` (the properties the typed fields
    /// write) and, unless `geometry_derived`, its geometry. Null properties
    /// other than `keep_null` and an `id` property equal to `id` (a GIS
    /// tool's copy of the identifier) are left out.
    fn of(
        feature: &Feature,
        id: &str,
        derived: &[(&str, JsonValue)],
        keep_null: &[&str],
        geometry_derived: bool,
    ) -> Self {
        let properties: JsonObject = feature
            .properties
            .iter()
            .flatten()
            .filter(|(k, v)| match v {
                JsonValue::Null => keep_null.contains(&k.as_str()),
                _ => {
                    let copy_of_id = k.as_str() == "id" && v.as_str() == Some(id);
                    !copy_of_id && !derived.iter().any(|(dk, dv)| dk == k && dv == *v)
                }
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let parts = RestParts {
            bbox: feature.bbox.clone(),
            geometry: if geometry_derived {
                None
            } else {
                feature.geometry.clone()
            },
            properties,
            foreign_members: feature.foreign_members.clone(),
        };
        if parts.bbox.is_none()
            && parts.geometry.is_none()
            && parts.properties.is_empty()
            && parts.foreign_members.is_none()
        {
            return FeatureRest(None);
        }
        // Serialising plain JSON values cannot fail.
        FeatureRest(
            serde_json::to_string(&parts)
                .ok()
                .map(String::into_boxed_str),
        )
    }

    /// The JSON text kept, if any.
    pub fn as_json(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// The feature: `id`, the typed fields' properties and geometry, with
    /// what was kept laid over them.
    fn rebuild(&self, id: &str, derived: Vec<(&str, JsonValue)>, geometry: Geometry) -> Feature {
        let parts: RestParts = self
            .0
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default();
        let mut properties: JsonObject = derived
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        properties.extend(parts.properties);
        Feature {
            bbox: parts.bbox,
            geometry: Some(parts.geometry.unwrap_or(geometry)),
            id: Some(Id::String(id.to_owned())),
            properties: Some(properties),
            foreign_members: parts.foreign_members,
        }
    }
}

fn positions(line: &LineString<f64>) -> Vec<Position> {
    line.coords().map(|c| Position::from([c.x, c.y])).collect()
}

fn polygon_geometry(p: &Polygon<f64>) -> Geometry {
    let rings = std::iter::once(p.exterior())
        .chain(p.interiors())
        .map(positions)
        .collect();
    Geometry::new(GeometryValue::Polygon { coordinates: rings })
}

/// Whether `geometry` is what the typed outline or line gives back: only
/// (longitude, latitude) pairs, no bbox, no foreign members.
fn plain_geometry(geometry: Option<&Geometry>) -> bool {
    let Some(g) = geometry else { return false };
    let pairs = |ps: &[Position]| ps.iter().all(|p| p.len() == 2);
    g.bbox.is_none()
        && g.foreign_members.is_none()
        && match &g.value {
            GeometryValue::LineString { coordinates } => pairs(coordinates),
            GeometryValue::Polygon { coordinates } => coordinates.iter().all(|r| pairs(r)),
            _ => false,
        }
}

fn opt_str(v: &Option<String>) -> Option<JsonValue> {
    v.as_ref().map(|s| JsonValue::String(s.clone()))
}

impl Road {
    fn derived(&self) -> Vec<(&'static str, JsonValue)> {
        let mut d = vec![
            ("feature_type", "road".into()),
            ("road_id", self.road_id.as_str().into()),
            ("name", self.name.as_str().into()),
        ];
        d.extend(opt_str(&self.name_en).map(|v| ("name_en", v)));
        d
    }

    /// The feature as it was imported.
    pub fn feature(&self) -> Feature {
        let geometry = Geometry::new(GeometryValue::LineString {
            coordinates: positions(&self.centre_line),
        });
        self.rest
            .rebuild(self.road_id.as_str(), self.derived(), geometry)
    }
}

impl Bay {
    fn derived(&self) -> Vec<(&'static str, JsonValue)> {
        let mut d = vec![
            ("feature_type", "bay".into()),
            ("bay_id", self.bay_id.as_str().into()),
            ("road_id", self.road_id.as_str().into()),
            ("kind", self.kind.as_str().into()),
        ];
        d.extend(
            self.max_stay_minutes
                .map(|m| ("max_stay_minutes", m.into())),
        );
        d.extend(
            self.enforced_hours
                .map(|h| ("enforced_hours", h.to_string().into())),
        );
        d.extend(opt_str(&self.side).map(|v| ("side", v)));
        d
    }

    /// The feature as it was imported.
    pub fn feature(&self) -> Feature {
        self.rest.rebuild(
            self.bay_id.as_str(),
            self.derived(),
            polygon_geometry(&self.polygon),
        )
    }
}

impl Barrier {
    fn derived(&self) -> Vec<(&'static str, JsonValue)> {
        vec![
            ("feature_type", "barrier".into()),
            ("barrier_id", self.barrier_id.as_str().into()),
            ("road_id", self.road_id.as_str().into()),
            ("kind", self.kind.as_str().into()),
        ]
    }

    /// The feature as it was imported.
    pub fn feature(&self) -> Feature {
        self.rest.rebuild(
            self.barrier_id.as_str(),
            self.derived(),
            polygon_geometry(&self.polygon),
        )
    }
}

/// Most positions in one ring of a bay or barrier. A kerbside outline
/// needs a handful; a ring's self-crossing check grows with the square of
/// its positions, so one huge ring must not cost the upload its time.
pub const MAX_RING_POSITIONS: usize = 1_000;

/// Stable machine-readable codes for layout problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    Malformed,
    InvalidId,
    DuplicateId,
    MissingProperty,
    InvalidProperty,
    WrongRoad,
    MissingRoad,
    InvalidGeometry,
    BaySize,
    BayOverlap,
    BarrierConflict,
    /// A feature's ids (its `id`, its `bay_id`/`barrier_id`/`road_id`, its
    /// `id` property) name different features.
    ConflictingId,
    /// The layout's `crs` is not longitude/latitude in WGS 84 or CGCS2000.
    UnsupportedCrs,
    /// A bay id that another road holds, on its current layout or retired
    /// from it: bay ids are never reused across roads.
    BayOnOtherRoad,
}

/// One problem with a submitted layout, tied to the feature it concerns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayoutProblem {
    /// The feature's id, when it has a readable one.
    pub feature_id: Option<String>,
    pub code: ProblemCode,
    pub message: String,
}

impl fmt::Display for LayoutProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.feature_id {
            Some(id) => write!(f, "feature {id}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

enum Parsed {
    Road(Road),
    Bay(Bay),
    Barrier(Barrier),
}

impl Parsed {
    fn road_id(&self) -> &RoadId {
        match self {
            Parsed::Road(r) => &r.road_id,
            Parsed::Bay(b) => &b.road_id,
            Parsed::Barrier(b) => &b.road_id,
        }
    }
}

/// Parses a FeatureCollection that may hold several roads into one layout per
/// road, ordered by road id. Every problem is reported, not just the first.
pub fn parse_layouts(fc: &FeatureCollection) -> Result<Vec<Layout>, Vec<LayoutProblem>> {
    let (layouts, problems) = parse_layouts_lenient(fc);
    if problems.is_empty() {
        Ok(layouts)
    } else {
        Err(problems)
    }
}

/// Like [`parse_layouts`], but also gives back the layouts built from the
/// features that did parse, so that later checks (geometry) can report
/// their problems in the same answer.
pub fn parse_layouts_lenient(fc: &FeatureCollection) -> (Vec<Layout>, Vec<LayoutProblem>) {
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    let mut parsed = Vec::new();
    for (i, feature) in fc.features.iter().enumerate() {
        let mut cx = FeatureCx::new(feature, i, &mut problems);
        let Some(id) = cx.id.clone() else { continue };
        if !seen.insert(id.clone()) {
            cx.problem(
                ProblemCode::DuplicateId,
                format!("the id {id:?} is used by more than one feature"),
            );
            continue;
        }
        // A feature whose ids disagree is still read, for its other
        // problems, but not taken.
        let agreed = cx.ids_agree();
        if let Some(p) = cx.parse()
            && agreed
        {
            parsed.push(p);
        }
    }

    /// A road's features as parsed: road features (one is right), bays, barriers.
    type Parts = (Vec<Road>, Vec<Bay>, Vec<Barrier>);
    let mut by_road: BTreeMap<RoadId, Parts> = BTreeMap::new();
    for p in parsed {
        let entry = by_road.entry(p.road_id().clone()).or_default();
        match p {
            Parsed::Road(r) => entry.0.push(r),
            Parsed::Bay(b) => entry.1.push(b),
            Parsed::Barrier(b) => entry.2.push(b),
        }
    }
    let mut layouts = Vec::new();
    for (road_id, (mut roads, bays, barriers)) in by_road {
        match roads.len() {
            1 => {
                let road = roads.remove(0);
                // One shared copy of the road's id for all its features.
                let (mut bays, mut barriers) = (bays, barriers);
                bays.iter_mut()
                    .for_each(|b| b.road_id = road.road_id.clone());
                barriers
                    .iter_mut()
                    .for_each(|b| b.road_id = road.road_id.clone());
                layouts.push(Layout {
                    road,
                    bays,
                    barriers,
                })
            }
            0 => problems.push(LayoutProblem {
                feature_id: None,
                code: ProblemCode::MissingRoad,
                message: format!(
                    "features name road_id {road_id:?} but no feature of type \"road\" has that road_id"
                ),
            }),
            n => problems.push(LayoutProblem {
                feature_id: Some(roads[1].road_id.to_string()),
                code: ProblemCode::DuplicateId,
                message: format!("{n} road features have road_id {road_id:?}; one is allowed"),
            }),
        }
    }
    if fc.features.is_empty() {
        problems.push(LayoutProblem {
            feature_id: None,
            code: ProblemCode::Malformed,
            message: "the FeatureCollection has no features".into(),
        });
    }
    (layouts, problems)
}

/// Parses the layout of one road, as a planner submits it for `road_id`:
/// every feature must belong to that road and exactly one must be the road.
pub fn parse_road_layout(
    fc: &FeatureCollection,
    road_id: &RoadId,
) -> Result<Layout, Vec<LayoutProblem>> {
    match parse_road_layout_lenient(fc, road_id) {
        (Some(layout), problems) if problems.is_empty() => Ok(layout),
        (_, problems) => Err(problems),
    }
}

/// Like [`parse_road_layout`], but also gives back the road's layout as far
/// as its features parsed (when the road feature itself did).
pub fn parse_road_layout_lenient(
    fc: &FeatureCollection,
    road_id: &RoadId,
) -> (Option<Layout>, Vec<LayoutProblem>) {
    let mut problems = Vec::new();
    for f in &fc.features {
        let rid = f
            .properties
            .as_ref()
            .and_then(|p| p.get("road_id"))
            .and_then(JsonValue::as_str);
        if let Some(rid) = rid
            && rid != road_id.as_str()
        {
            problems.push(LayoutProblem {
                feature_id: feature_id_text(f),
                code: ProblemCode::WrongRoad,
                message: format!("road_id is {rid:?} but the layout is for {road_id:?}"),
            });
        }
    }
    let (layouts, more) = parse_layouts_lenient(fc);
    problems.extend(more);
    let layout = layouts.into_iter().find(|l| l.road_id() == road_id);
    if layout.is_none() && !problems.iter().any(|p| p.code == ProblemCode::MissingRoad) {
        problems.push(LayoutProblem {
            feature_id: None,
            code: ProblemCode::MissingRoad,
            message: format!("no feature of type \"road\" with road_id {road_id:?}"),
        });
    }
    (layout, problems)
}

/// The id a problem with `f` is reported under: its identifier as far as
/// it can be read, else its numeric id.
fn feature_id_text(f: &Feature) -> Option<String> {
    match (id_sources(f).first(), &f.id) {
        (Some((_, s)), _) => Some((*s).to_owned()),
        (None, Some(Id::Number(n))) => Some(n.to_string()),
        (None, _) => None,
    }
}

/// Where a feature names itself, in order of precedence: its string `id`,
/// its own id property by `feature_type`, its `id` property. Each is
/// `(how a message names it, the id)`; nulls and non-strings are not ids.
fn id_sources(feature: &Feature) -> Vec<(&'static str, &str)> {
    let props = feature.properties.as_ref();
    let prop = |key: &str| props.and_then(|p| p.get(key)).and_then(JsonValue::as_str);
    let own = match prop("feature_type") {
        Some("road") => Some("road_id"),
        Some("bay") => Some("bay_id"),
        Some("barrier") => Some("barrier_id"),
        _ => None,
    };
    let top = match &feature.id {
        Some(Id::String(s)) => Some(("the feature id", s.as_str())),
        _ => None,
    };
    top.into_iter()
        .chain(own.and_then(|k| prop(k).map(|v| (k, v))))
        .chain(prop("id").map(|v| ("the property \"id\"", v)))
        .collect()
}

/// Parsing state for one feature: its id and the shared problem list.
struct FeatureCx<'a> {
    feature: &'a Feature,
    /// The identifier, when the feature has a valid one.
    id: Option<String>,
    /// Every place the feature names itself (see [`id_sources`]).
    sources: Vec<(&'static str, &'a str)>,
    problems: &'a mut Vec<LayoutProblem>,
    props: Option<&'a JsonObject>,
}

impl<'a> FeatureCx<'a> {
    fn new(feature: &'a Feature, index: usize, problems: &'a mut Vec<LayoutProblem>) -> Self {
        let props = feature.properties.as_ref();
        let sources = id_sources(feature);
        let mut cx = FeatureCx {
            feature,
            id: None,
            sources,
            problems,
            props,
        };
        match (cx.sources.first().copied(), &feature.id) {
            (Some((label, s)), _) => match check_identifier(s) {
                Ok(()) => cx.id = Some(s.to_owned()),
                Err(e) => cx.problems.push(LayoutProblem {
                    feature_id: Some(s.to_owned()),
                    code: ProblemCode::InvalidId,
                    message: format!("{label} {s:?} {e}"),
                }),
            },
            (None, Some(Id::Number(n))) => cx.problems.push(LayoutProblem {
                feature_id: Some(n.to_string()),
                code: ProblemCode::InvalidId,
                message: format!(
                    "feature number {index} has a numeric id {n} and no bay_id, barrier_id or road_id to name it; ids must be strings"
                ),
            }),
            (None, _) => cx.problems.push(LayoutProblem {
                feature_id: None,
                code: ProblemCode::InvalidId,
                message: format!(
                    "feature number {index} has no id: give it a string id, or its bay_id, barrier_id or road_id"
                ),
            }),
        }
        cx
    }

    /// Whether every place the feature names itself names the same id;
    /// a `conflicting_id` problem for each that does not.
    fn ids_agree(&mut self) -> bool {
        let Some(id) = self.id.clone() else {
            return false;
        };
        let first = self.sources[0].0;
        let others: Vec<(&str, &str)> = self.sources[1..]
            .iter()
            .copied()
            .filter(|(_, v)| *v != id)
            .collect();
        for (label, v) in &others {
            self.problem(
                ProblemCode::ConflictingId,
                format!("{first} {id:?} and {label} {v:?} disagree; make them the same"),
            );
        }
        others.is_empty()
    }

    fn problem(&mut self, code: ProblemCode, message: String) {
        self.problems.push(LayoutProblem {
            feature_id: self.id.clone(),
            code,
            message,
        });
    }

    fn parse(&mut self) -> Option<Parsed> {
        let ft = self.required_str("feature_type")?;
        match ft.as_str() {
            "road" => self.parse_road().map(Parsed::Road),
            "bay" => self.parse_bay().map(Parsed::Bay),
            "barrier" => self.parse_barrier().map(Parsed::Barrier),
            other => {
                self.problem(
                    ProblemCode::InvalidProperty,
                    format!("feature_type {other:?} is not one of road, bay, barrier"),
                );
                None
            }
        }
    }

    fn parse_road(&mut self) -> Option<Road> {
        let road_id = self.id_property("road_id", RoadId::parse);
        let name = self.required_str("name");
        let name_en = self.optional_str("name_en");
        let line = self.line_string();
        let mut road = Road {
            road_id: road_id?,
            name: name?,
            name_en: name_en?,
            centre_line: line?,
            rest: FeatureRest::default(),
        };
        road.rest = self.rest(&road.derived(), &["name_en"]);
        Some(road)
    }

    fn parse_bay(&mut self) -> Option<Bay> {
        let bay_id = self.id_property("bay_id", BayId::parse);
        let road_id = self.id_property("road_id", RoadId::parse);
        let kind = self.kind(
            "kind",
            BayKind::parse,
            "standard, accessible, loading, ev, motorcycle",
        );
        let max_stay = self.max_stay();
        let hours = self.enforced_hours();
        let side = self.optional_str("side");
        let polygon = self.polygon(false);
        let mut bay = Bay {
            bay_id: bay_id?,
            road_id: road_id?,
            kind: kind?,
            max_stay_minutes: max_stay?,
            enforced_hours: hours?,
            side: side?,
            polygon: polygon?,
            rest: FeatureRest::default(),
        };
        bay.rest = self.rest(
            &bay.derived(),
            &["max_stay_minutes", "enforced_hours", "side"],
        );
        Some(bay)
    }

    fn parse_barrier(&mut self) -> Option<Barrier> {
        let barrier_id = self.id_property("barrier_id", BarrierId::parse);
        let road_id = self.id_property("road_id", RoadId::parse);
        let kind = self.kind("kind", BarrierKind::parse, "planter, bollard, fence");
        let polygon = self.polygon(true);
        let mut barrier = Barrier {
            barrier_id: barrier_id?,
            road_id: road_id?,
            kind: kind?,
            polygon: polygon?,
            rest: FeatureRest::default(),
        };
        barrier.rest = self.rest(&barrier.derived(), &[]);
        Some(barrier)
    }

    /// What of this feature the typed fields (writing `derived`) do not
    /// say; of its null properties, only `keep_null` are kept.
    fn rest(&self, derived: &[(&str, JsonValue)], keep_null: &[&str]) -> FeatureRest {
        FeatureRest::of(
            self.feature,
            self.id.as_deref().unwrap_or_default(),
            derived,
            keep_null,
            plain_geometry(self.feature.geometry.as_ref()),
        )
    }

    fn prop(&self, key: &str) -> Option<&'a JsonValue> {
        self.props.and_then(|p| p.get(key))
    }

    fn required_str(&mut self, key: &str) -> Option<String> {
        match self.prop(key) {
            Some(JsonValue::String(s)) => Some(s.clone()),
            None | Some(JsonValue::Null) => {
                self.problem(
                    ProblemCode::MissingProperty,
                    format!("the property {key:?} is required"),
                );
                None
            }
            Some(other) => {
                self.problem(
                    ProblemCode::InvalidProperty,
                    format!("the property {key:?} must be a string, not {other}"),
                );
                None
            }
        }
    }

    /// `Some(None)` when absent or null, `None` when present and invalid.
    fn optional_str(&mut self, key: &str) -> Option<Option<String>> {
        match self.prop(key) {
            None | Some(JsonValue::Null) => Some(None),
            Some(JsonValue::String(s)) => Some(Some(s.clone())),
            Some(other) => {
                self.problem(
                    ProblemCode::InvalidProperty,
                    format!("the property {key:?} must be a string or null, not {other}"),
                );
                None
            }
        }
    }

    fn id_property<T>(&mut self, key: &str, parse: fn(&str) -> Result<T, IdError>) -> Option<T> {
        let s = self.required_str(key)?;
        match parse(&s) {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(ProblemCode::InvalidId, format!("{key} {s:?} {e}"));
                None
            }
        }
    }

    fn kind<T>(&mut self, key: &str, parse: fn(&str) -> Option<T>, allowed: &str) -> Option<T> {
        let s = self.required_str(key)?;
        let kind = parse(&s);
        if kind.is_none() {
            self.problem(
                ProblemCode::InvalidProperty,
                format!("{key} {s:?} is not one of {allowed}"),
            );
        }
        kind
    }

    fn max_stay(&mut self) -> Option<Option<u32>> {
        match self.prop("max_stay_minutes") {
            None | Some(JsonValue::Null) => Some(None),
            Some(JsonValue::Number(n)) => match n.as_u64() {
                Some(m) if (1..=10_080).contains(&m) => Some(Some(m as u32)),
                _ => {
                    self.problem(
                        ProblemCode::InvalidProperty,
                        format!(
                            "max_stay_minutes {n} must be a whole number of minutes from 1 to 10080 (a week), or null"
                        ),
                    );
                    None
                }
            },
            Some(other) => {
                self.problem(
                    ProblemCode::InvalidProperty,
                    format!("max_stay_minutes must be an integer or null, not {other}"),
                );
                None
            }
        }
    }

    fn enforced_hours(&mut self) -> Option<Option<EnforcedHours>> {
        let s = self.optional_str("enforced_hours")?;
        let Some(s) = s else { return Some(None) };
        match EnforcedHours::parse(&s) {
            Some(h) => Some(Some(h)),
            None => {
                self.problem(
                    ProblemCode::InvalidProperty,
                    format!(
                        "enforced_hours {s:?} is not \"HH:MM-HH:MM\" with two different times from 00:00 to 24:00"
                    ),
                );
                None
            }
        }
    }

    fn geometry_value(&mut self) -> Option<&'a GeometryValue> {
        let feature = self.feature;
        match &feature.geometry {
            Some(g) => Some(&g.value),
            None => {
                self.problem(
                    ProblemCode::InvalidGeometry,
                    "the feature has no geometry".into(),
                );
                None
            }
        }
    }

    fn line_string(&mut self) -> Option<LineString<f64>> {
        let value = self.geometry_value()?;
        let GeometryValue::LineString { coordinates } = value else {
            self.problem(
                ProblemCode::InvalidGeometry,
                format!(
                    "a road's geometry must be a LineString, not a {}",
                    value.type_name()
                ),
            );
            return None;
        };
        let coords = self.coords(coordinates)?;
        if coords.len() < 2 {
            self.problem(
                ProblemCode::InvalidGeometry,
                "a centre line needs at least 2 positions".into(),
            );
            return None;
        }
        Some(LineString::new(coords))
    }

    fn polygon(&mut self, holes_allowed: bool) -> Option<Polygon<f64>> {
        let value = self.geometry_value()?;
        let GeometryValue::Polygon { coordinates } = value else {
            self.problem(
                ProblemCode::InvalidGeometry,
                format!(
                    "the geometry must be a Polygon, not a {}",
                    value.type_name()
                ),
            );
            return None;
        };
        let Some((outer, inner)) = coordinates.split_first() else {
            self.problem(
                ProblemCode::InvalidGeometry,
                "the polygon has no ring".into(),
            );
            return None;
        };
        if !holes_allowed && !inner.is_empty() {
            self.problem(
                ProblemCode::InvalidGeometry,
                "a bay's polygon must not have holes".into(),
            );
            return None;
        }
        let mut rings = Vec::with_capacity(coordinates.len());
        for ring in std::iter::once(outer).chain(inner) {
            if ring.len() > MAX_RING_POSITIONS {
                self.problem(
                    ProblemCode::InvalidGeometry,
                    format!(
                        "a ring has {} positions; at most {MAX_RING_POSITIONS} are allowed (simplify it)",
                        ring.len()
                    ),
                );
                return None;
            }
            let coords = self.coords(ring)?;
            if coords.len() < 4 {
                self.problem(
                    ProblemCode::InvalidGeometry,
                    format!(
                        "a ring has {} positions; at least 4 are needed",
                        coords.len()
                    ),
                );
                return None;
            }
            if coords.first() != coords.last() {
                self.problem(
                    ProblemCode::InvalidGeometry,
                    "a ring is not closed: its last position must equal its first".into(),
                );
                return None;
            }
            if let Some((i, j)) = crate::spatial::ring_self_intersection(&coords) {
                self.problem(
                    ProblemCode::InvalidGeometry,
                    format!("the ring intersects itself (edges {i} and {j} cross)"),
                );
                return None;
            }
            rings.push(LineString::new(coords));
        }
        let outer = rings.remove(0);
        Some(Polygon::new(outer, rings))
    }

    fn coords(&mut self, positions: &[geojson::Position]) -> Option<Vec<Coord<f64>>> {
        let mut out = Vec::with_capacity(positions.len());
        for p in positions {
            let s = p.as_slice();
            if s.len() < 2 {
                self.problem(
                    ProblemCode::InvalidGeometry,
                    "a position has fewer than 2 numbers".into(),
                );
                return None;
            }
            let (x, y) = (s[0], s[1]);
            if !x.is_finite()
                || !y.is_finite()
                || !(-180.0..=180.0).contains(&x)
                || !(-90.0..=90.0).contains(&y)
            {
                self.problem(
                    ProblemCode::InvalidGeometry,
                    format!(
                        "position [{x}, {y}] is not a longitude in -180..180 and a latitude in -90..90"
                    ),
                );
                return None;
            }
            out.push(Coord { x, y });
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fc(v: serde_json::Value) -> FeatureCollection {
        serde_json::from_value(v).expect("test fixture is a FeatureCollection")
    }

    fn road() -> serde_json::Value {
        json!({"type": "Feature", "id": "r1", "geometry": {"type": "LineString", "coordinates": [[120.78, 30.76], [120.781, 30.76]]},
               "properties": {"feature_type": "road", "road_id": "r1", "name": "Test Road"}})
    }

    fn bay(id: &str, props: serde_json::Value) -> serde_json::Value {
        let mut p = json!({"feature_type": "bay", "bay_id": id, "road_id": "r1", "kind": "standard",
                           "max_stay_minutes": 120, "enforced_hours": "08:00-20:00"});
        p.as_object_mut()
            .unwrap()
            .extend(props.as_object().unwrap().clone());
        json!({"type": "Feature", "id": id, "properties": p, "geometry": {"type": "Polygon", "coordinates": [[
            [120.7800, 30.76006], [120.78006, 30.76006], [120.78006, 30.76008], [120.7800, 30.76008], [120.7800, 30.76006]]]}})
    }

    fn codes(r: Result<Vec<Layout>, Vec<LayoutProblem>>) -> Vec<(Option<String>, ProblemCode)> {
        r.expect_err("should fail")
            .into_iter()
            .map(|p| (p.feature_id, p.code))
            .collect()
    }

    #[test]
    fn parses_a_minimal_layout() {
        let layouts = parse_layouts(&fc(
            json!({"type": "FeatureCollection", "features": [road(), bay("b1", json!({}))]}),
        ))
        .unwrap();
        assert_eq!(layouts.len(), 1);
        let b = &layouts[0].bays[0];
        assert_eq!(b.kind, BayKind::Standard);
        assert_eq!(b.max_stay_minutes, Some(120));
        assert_eq!(b.enforced_hours, EnforcedHours::parse("08:00-20:00"));
    }

    #[test]
    fn reports_every_problem_with_its_feature() {
        let got = codes(parse_layouts(&fc(
            json!({"type": "FeatureCollection", "features": [
                road(),
                bay("b1", json!({"kind": "lorry"})),
                bay("b2", json!({"enforced_hours": "8-20"})),
                bay("b3", json!({"max_stay_minutes": -5})),
                bay("b 4", json!({})),
                bay("b1", json!({})),
            ]}),
        )));
        assert_eq!(
            got,
            vec![
                (Some("b1".into()), ProblemCode::InvalidProperty),
                (Some("b2".into()), ProblemCode::InvalidProperty),
                (Some("b3".into()), ProblemCode::InvalidProperty),
                (Some("b 4".into()), ProblemCode::InvalidId),
                (Some("b1".into()), ProblemCode::DuplicateId),
            ]
        );
    }

    #[test]
    fn a_ring_of_too_many_positions_is_refused_before_it_is_checked() {
        let n = MAX_RING_POSITIONS + 1;
        let mut ring: Vec<serde_json::Value> = (0..n - 1)
            .map(|i| {
                let a = std::f64::consts::TAU * i as f64 / (n - 1) as f64;
                serde_json::json!([120.78 + 0.00002 * a.cos(), 30.76 + 0.00003 * a.sin()])
            })
            .collect();
        ring.push(ring[0].clone());
        let mut b = bay("B1", serde_json::json!({}));
        b["geometry"]["coordinates"] = serde_json::json!([ring]);
        let r = parse_layouts(&fc(
            json!({"type": "FeatureCollection", "features": [road(), b]}),
        ));
        assert_eq!(
            codes(r),
            vec![(Some("B1".into()), ProblemCode::InvalidGeometry)]
        );
    }

    #[test]
    fn rejects_unclosed_short_and_self_crossing_rings() {
        let mut unclosed = bay("b1", json!({}));
        unclosed["geometry"]["coordinates"][0][4] = json!([120.7801, 30.7601]);
        let mut short = bay("b2", json!({}));
        short["geometry"]["coordinates"] =
            json!([[[120.78, 30.76], [120.7801, 30.76], [120.78, 30.76]]]);
        let mut bowtie = bay("b3", json!({}));
        bowtie["geometry"]["coordinates"] =
            json!([[[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]);
        let got = codes(parse_layouts(&fc(
            json!({"type": "FeatureCollection", "features": [road(), unclosed, short, bowtie]}),
        )));
        assert!(
            got.iter().all(|(_, c)| *c == ProblemCode::InvalidGeometry),
            "{got:?}"
        );
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn a_road_layout_must_stay_on_its_road() {
        let mut other = bay("b1", json!({}));
        other["properties"]["road_id"] = json!("r2");
        let got = parse_road_layout(
            &fc(json!({"type": "FeatureCollection", "features": [road(), other]})),
            &RoadId::parse("r1").unwrap(),
        )
        .unwrap_err();
        assert!(got.iter().any(|p| p.code == ProblemCode::WrongRoad));
    }

    /// A feature as GDAL writes it back from a GeoPackage: no top-level id
    /// (or the row number), the id as an `id` property, a null for every
    /// column the feature does not use.
    fn from_geopackage(mut f: serde_json::Value, fid: Option<u64>) -> serde_json::Value {
        let id = f.as_object_mut().unwrap().remove("id").unwrap();
        if let Some(n) = fid {
            f["id"] = json!(n);
        }
        let p = f["properties"].as_object_mut().unwrap();
        p.insert("id".into(), id);
        for column in [
            "bay_id",
            "barrier_id",
            "road_id",
            "name",
            "name_en",
            "kind",
            "max_stay_minutes",
            "enforced_hours",
            "side",
        ] {
            p.entry(column).or_insert(json!(null));
        }
        f
    }

    #[test]
    fn a_geopackage_round_trip_is_read_by_the_ids_in_the_properties() {
        let original = json!({"type": "FeatureCollection", "features": [
            road(), bay("b1", json!({"side": "north"})), bay("b2", json!({"max_stay_minutes": null}))]});
        let through = json!({"type": "FeatureCollection", "features": [
            from_geopackage(road(), None),
            from_geopackage(bay("b1", json!({"side": "north"})), Some(2)),
            from_geopackage(bay("b2", json!({"max_stay_minutes": null})), Some(3)),
        ]});
        let layout = parse_layouts(&fc(through)).unwrap().remove(0);
        assert_eq!(layout.bays[1].bay_id.as_str(), "b2");
        // Export is in the contract's form: string ids at the top, no `id`
        // property, only the nulls the contract gives a meaning to.
        let out = serde_json::to_value(layout.to_feature_collection()).unwrap();
        let b2 = &out["features"][2];
        assert_eq!(b2["id"], "b2");
        assert_eq!(
            b2["properties"],
            json!({"feature_type": "bay", "bay_id": "b2", "road_id": "r1", "kind": "standard",
                   "max_stay_minutes": null, "enforced_hours": "08:00-20:00", "side": null})
        );
        // A road's name_en may be null: kept as the GeoPackage wrote it.
        let mut road = original["features"][0].clone();
        road["properties"]["name_en"] = json!(null);
        assert_eq!(out["features"][0], road);
        assert_eq!(out["features"][1], original["features"][1]);
    }

    #[test]
    fn an_id_is_taken_from_the_first_of_id_own_property_and_id_property() {
        // Only the property names it.
        let mut only_prop = bay("b1", json!({}));
        only_prop.as_object_mut().unwrap().remove("id");
        // A numeric id is then ignored.
        let mut numeric = bay("b2", json!({}));
        numeric["id"] = json!(7);
        let mut by_id_prop = road();
        by_id_prop.as_object_mut().unwrap().remove("id");
        by_id_prop["properties"]["id"] = json!("r1");
        let layout = parse_layouts(&fc(json!({"type": "FeatureCollection", "features": [
            by_id_prop, only_prop, numeric]})))
        .unwrap()
        .remove(0);
        let ids: Vec<_> = layout
            .to_feature_collection()
            .features
            .into_iter()
            .map(|f| f.id)
            .collect();
        assert_eq!(ids, ["r1", "b1", "b2"].map(|s| Some(Id::String(s.into()))));

        // Nothing names it: the numeric id is all there is.
        let mut nameless = bay("b3", json!({}));
        nameless["id"] = json!(7);
        nameless["properties"]["bay_id"] = json!(null);
        let got = codes(parse_layouts(&fc(
            json!({"type": "FeatureCollection", "features": [road(), nameless]}),
        )));
        assert_eq!(got, vec![(Some("7".into()), ProblemCode::InvalidId)]);
    }

    #[test]
    fn disagreeing_ids_are_a_conflict_that_names_both() {
        let mut top = bay("b1", json!({}));
        top["properties"]["bay_id"] = json!("b2");
        let mut prop = bay("b3", json!({}));
        prop["properties"]["id"] = json!("b9");
        let mut road = road();
        road["properties"]["road_id"] = json!("r2");
        let problems = parse_layouts(&fc(json!({"type": "FeatureCollection", "features": [
            road, top, prop]})))
        .unwrap_err();
        let conflicts: Vec<_> = problems
            .iter()
            .filter(|p| p.code == ProblemCode::ConflictingId)
            .map(|p| (p.feature_id.clone().unwrap(), p.message.clone()))
            .collect();
        assert_eq!(conflicts.len(), 3, "{problems:?}");
        assert_eq!(conflicts[0].0, "r1");
        assert!(conflicts[0].1.contains("\"r1\"") && conflicts[0].1.contains("road_id \"r2\""));
        assert_eq!(conflicts[1].0, "b1");
        assert!(conflicts[1].1.contains("\"b1\"") && conflicts[1].1.contains("bay_id \"b2\""));
        assert_eq!(conflicts[2].0, "b3");
        assert!(conflicts[2].1.contains("\"b9\""), "{}", conflicts[2].1);
    }

    #[test]
    fn enforced_hours_parse_and_print() {
        let h = EnforcedHours::parse("20:00-02:00").unwrap();
        assert!(h.crosses_midnight());
        assert_eq!(h.to_string(), "20:00-02:00");
        assert_eq!(
            EnforcedHours::parse("00:00-24:00").unwrap().end_minute,
            1440
        );
        for bad in [
            "08:00-08:00",
            "8:00-20:00",
            "08:60-20:00",
            "25:00-01:00",
            "08:00",
            "24:00-08:00",
        ] {
            assert_eq!(EnforcedHours::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn export_gives_back_the_features_imported() {
        let input = fc(
            json!({"type": "FeatureCollection", "features": [road(), bay("b1", json!({"colour": "white"}))]}),
        );
        let layout = parse_layouts(&input).unwrap().remove(0);
        assert_eq!(layout.to_feature_collection().features, input.features);
    }

    #[test]
    fn a_usual_bay_keeps_nothing_beside_its_typed_fields() {
        let input = fc(
            json!({"type": "FeatureCollection", "features": [road(), bay("b1", json!({"side": "north"}))]}),
        );
        let layout = parse_layouts(&input).unwrap().remove(0);
        assert_eq!(layout.road.rest.as_json(), None);
        assert_eq!(layout.bays[0].rest.as_json(), None);
        assert_eq!(layout.to_feature_collection().features, input.features);
    }

    #[test]
    fn export_keeps_every_bit_of_a_coordinate() {
        // 30.760104000000002 is the float just above 30.760104; kept text
        // (here a third coordinate) must read back as that float, not its
        // neighbour, or an unchanged layout would diff as changed.
        let mut b = bay("b1", json!({}));
        b["geometry"]["coordinates"] = json!([[
            [120.78, 30.7601, 4.5],
            [120.780001, 30.7601, 4.5],
            [120.780001, 30.760104000000002, 4.5],
            [120.78, 30.760104000000002, 4.5],
            [120.78, 30.7601, 4.5]
        ]]);
        let input = fc(json!({"type": "FeatureCollection", "features": [road(), b]}));
        let layout = parse_layouts(&input).unwrap().remove(0);
        assert_eq!(layout.to_feature_collection().features, input.features);
    }

    #[test]
    fn export_gives_back_what_the_typed_fields_do_not_say() {
        let mut third = bay("b5", json!({}));
        third["geometry"]["coordinates"][0][1] = json!([120.78006, 30.76006, 4.5]);
        let mut boxed = bay("b6", json!({}));
        boxed["bbox"] = json!([120.78, 30.76, 120.79, 30.77]);
        boxed["geometry"]["bbox"] = json!([120.78, 30.76, 120.79, 30.77]);
        boxed["survey"] = json!({"by": "Zhou Min"});
        let mut road = road();
        road["properties"]["name_en"] = json!(null);
        road["properties"]["lanes"] = json!(2);
        let barrier = json!({"type": "Feature", "id": "p1", "properties": {"feature_type": "barrier",
            "barrier_id": "p1", "road_id": "r1", "kind": "planter", "colour": "green"},
            "geometry": {"type": "Polygon", "coordinates": [[[120.7802, 30.76006], [120.78022, 30.76006],
            [120.78022, 30.76008], [120.7802, 30.76008], [120.7802, 30.76006]]]}});
        let input = fc(json!({"type": "FeatureCollection", "features": [
            road,
            bay("b1", json!({"side": null, "max_stay_minutes": null, "enforced_hours": null})),
            bay("b2", json!({"enforced_hours": "20:00-00:00"})),
            bay("b3", json!({"colour": "white", "sensor": {"id": 7, "depth_m": 0.05}})),
            bay("b4", json!({"max_stay_minutes": 10080})),
            third,
            boxed,
            barrier,
        ]}));
        let layout = parse_layouts(&input).unwrap().remove(0);
        assert_eq!(
            layout.bays[1].enforced_hours.unwrap().to_string(),
            "20:00-24:00"
        );
        assert_eq!(layout.bays[3].rest.as_json(), None);
        let out = layout.to_feature_collection();
        assert_eq!(out.features, input.features);
        assert_eq!(
            serde_json::to_value(&out).unwrap(),
            serde_json::to_value(&input).unwrap()
        );
    }
}
