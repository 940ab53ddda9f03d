//! Checks a parsed layout as a planner would want before paint meets road:
//! plausible bay sizes, no overlapping bays, no bay meeting a barrier, and
//! warnings for what is odd but possible. Every problem is reported, each
//! with its feature. Sizes and distances are in metres, measured in a
//! local frame around the road.

use geo::{Area, BooleanOps, BoundingRect, Intersects, MinimumRotatedRect, Polygon};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};
use serde::Serialize;

use super::layout::{BayKind, Layout, LayoutProblem, ProblemCode};
use crate::spatial::{LocalFrame, polygon_max_distance_m};

/// Two bays may share at most this much area (m²): drawing slop, not overlap.
pub const OVERLAP_TOLERANCE_M2: f64 = 0.05;
/// A bay farther than this from the centre line (m) draws a warning.
pub const MAX_BAY_DISTANCE_M: f64 = 15.0;

/// Something odd but allowed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    /// The feature it concerns; null when it concerns the whole layout.
    pub feature_id: Option<String>,
    pub code: &'static str,
    pub message: String,
}

/// Plausible (width, length) ranges in metres for a bay kind.
fn size_range(kind: BayKind) -> ((f64, f64), (f64, f64)) {
    match kind {
        BayKind::Standard | BayKind::Ev => ((2.0, 3.5), (4.5, 8.0)),
        BayKind::Accessible => ((2.4, 4.5), (4.5, 8.5)),
        BayKind::Loading => ((2.2, 4.0), (5.0, 15.0)),
        BayKind::Motorcycle => ((0.8, 2.5), (1.8, 3.5)),
    }
}

/// Width (short side) and length (long side) of a polygon's minimum
/// rotated rectangle, metres; the polygon must already be in metres.
fn width_length(p: &Polygon<f64>) -> Option<(f64, f64)> {
    let rect = p.minimum_rotated_rect()?;
    let c = &rect.exterior().0;
    if c.len() < 3 {
        return None;
    }
    let side =
        |a: geo::Coord<f64>, b: geo::Coord<f64>| ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt();
    let (s1, s2) = (side(c[0], c[1]), side(c[1], c[2]));
    Some((s1.min(s2), s1.max(s2)))
}

/// An R-tree of polygons' bounding boxes (in whatever units the polygons
/// are), by their index in the slice it was built from.
struct BoxIndex(RTree<GeomWithData<Rectangle<[f64; 2]>, usize>>);

impl BoxIndex {
    fn of(polygons: &[Polygon<f64>]) -> Self {
        BoxIndex(RTree::bulk_load(
            polygons
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    let r = p.bounding_rect()?;
                    Some(GeomWithData::new(
                        Rectangle::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]),
                        i,
                    ))
                })
                .collect(),
        ))
    }

    /// The indices, ascending, of the polygons whose boxes meet `p`'s.
    fn meeting(&self, p: &Polygon<f64>) -> impl Iterator<Item = usize> + use<> {
        let mut hits: Vec<usize> = match p.bounding_rect() {
            Some(r) => self
                .0
                .locate_in_envelope_intersecting(&AABB::from_corners(
                    [r.min().x, r.min().y],
                    [r.max().x, r.max().y],
                ))
                .map(|e| e.data)
                .collect(),
            None => Vec::new(),
        };
        hits.sort_unstable();
        hits.into_iter()
    }
}

/// Checks `layout`; `Err` holds every problem, `Ok` the warnings.
pub fn validate(layout: &Layout) -> Result<Vec<Warning>, Vec<LayoutProblem>> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let Some(origin) = layout.road.centre_line.0.first() else {
        return Ok(warnings);
    };
    let frame = LocalFrame::at(origin.x, origin.y);
    let bays: Vec<Polygon<f64>> = layout
        .bays
        .iter()
        .map(|b| frame.polygon_to_metres(&b.polygon))
        .collect();
    let barriers: Vec<Polygon<f64>> = layout
        .barriers
        .iter()
        .map(|b| frame.polygon_to_metres(&b.polygon))
        .collect();

    for (bay, m) in layout.bays.iter().zip(&bays) {
        let ((wmin, wmax), (lmin, lmax)) = size_range(bay.kind);
        if let Some((w, l)) = width_length(m)
            && (!(wmin..=wmax).contains(&w) || !(lmin..=lmax).contains(&l))
        {
            problems.push(LayoutProblem {
                feature_id: Some(bay.bay_id.to_string()),
                code: ProblemCode::BaySize,
                message: format!(
                    "a {} bay measures {w:.1} m x {l:.1} m; expected {wmin}-{wmax} m wide and {lmin}-{lmax} m long",
                    bay.kind.as_str()
                ),
            });
        }
        let d = polygon_max_distance_m(&bay.polygon, &layout.road.centre_line);
        if d > MAX_BAY_DISTANCE_M {
            warnings.push(Warning {
                feature_id: Some(bay.bay_id.to_string()),
                code: "far_from_road",
                message: format!("the bay reaches {d:.1} m from the centre line (more than {MAX_BAY_DISTANCE_M} m)"),
            });
        }
    }

    // Only pairs whose boxes meet are compared, found through R-trees of
    // the boxes: a 20,000-bay road is 20,000 look-ups, not 200 million
    // pairs. Problems keep the order of the pairs (i, then j, ascending).
    let bay_boxes = BoxIndex::of(&bays);
    let barrier_boxes = BoxIndex::of(&barriers);
    for i in 0..bays.len() {
        for j in bay_boxes.meeting(&bays[i]).filter(|&j| j > i) {
            if !bays[i].intersects(&bays[j]) {
                continue;
            }
            let shared = bays[i].intersection(&bays[j]).unsigned_area();
            if shared > OVERLAP_TOLERANCE_M2 {
                problems.push(LayoutProblem {
                    feature_id: Some(layout.bays[i].bay_id.to_string()),
                    code: ProblemCode::BayOverlap,
                    message: format!("overlaps bay {} by {shared:.2} m²", layout.bays[j].bay_id),
                });
            }
        }
        for k in barrier_boxes.meeting(&bays[i]) {
            let barrier = &barriers[k];
            if bays[i].intersects(barrier) {
                problems.push(LayoutProblem {
                    feature_id: Some(layout.bays[i].bay_id.to_string()),
                    code: ProblemCode::BarrierConflict,
                    message: format!(
                        "meets {} {}",
                        layout.barriers[k].kind.as_str(),
                        layout.barriers[k].barrier_id
                    ),
                });
            }
        }
    }
    for i in 0..barriers.len() {
        for j in barrier_boxes.meeting(&barriers[i]).filter(|&j| j > i) {
            if barriers[i].intersects(&barriers[j]) {
                warnings.push(Warning {
                    feature_id: Some(layout.barriers[i].barrier_id.to_string()),
                    code: "barrier_overlap",
                    message: format!("overlaps barrier {}", layout.barriers[j].barrier_id),
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(warnings)
    } else {
        Err(problems)
    }
}

/// What changed between two layouts of a road, by feature id.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Diff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Geometry or properties differ: a position moved by more than
    /// [`SAME_POSITION_M`], or a property other than a null one differs.
    pub changed: Vec<String>,
}

impl Diff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

fn features(l: &Layout) -> std::collections::BTreeMap<String, geojson::Feature> {
    std::iter::once((l.road.road_id.to_string(), l.road.feature()))
        .chain(l.bays.iter().map(|b| (b.bay_id.to_string(), b.feature())))
        .chain(
            l.barriers
                .iter()
                .map(|b| (b.barrier_id.to_string(), b.feature())),
        )
        .collect()
}

/// Positions closer than this (metres, horizontally and in height) are the
/// same in a diff: a GIS tool that writes numbers another way (fewer
/// digits, a float's neighbour) has not moved anything.
pub const SAME_POSITION_M: f64 = 0.001;

/// Metres per degree of latitude (and of longitude at the equator), on a
/// sphere of WGS 84's equatorial radius; ample for millimetres nearby.
const METRES_PER_DEGREE: f64 = 6_378_137.0 * std::f64::consts::PI / 180.0;

/// Whether two (longitude, latitude[, height]) positions in degrees (and
/// metres) lie within [`SAME_POSITION_M`] of each other.
fn same_position(a: &[f64], b: &[f64]) -> bool {
    if a.len() != b.len() || a.len() < 2 {
        return a == b;
    }
    let dy = (a[1] - b[1]) * METRES_PER_DEGREE;
    let dx = (a[0] - b[0]) * METRES_PER_DEGREE * a[1].to_radians().cos();
    let dz = a.get(2).zip(b.get(2)).map_or(0.0, |(p, q)| p - q);
    dx.hypot(dy) <= SAME_POSITION_M
        && dz.abs() <= SAME_POSITION_M
        && a.iter().skip(3).eq(b.iter().skip(3))
}

fn same_positions(a: &[geojson::Position], b: &[geojson::Position]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(p, q)| same_position(p.as_slice(), q.as_slice()))
}

fn same_rings(a: &[Vec<geojson::Position>], b: &[Vec<geojson::Position>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(p, q)| same_positions(p, q))
}

/// Whether two geometries are the same shape, position by position within
/// [`SAME_POSITION_M`]; a bbox (derived from the positions) is not compared.
fn same_geometry(a: &geojson::Geometry, b: &geojson::Geometry) -> bool {
    use geojson::GeometryValue as G;
    let same_value = match (&a.value, &b.value) {
        (G::Point { coordinates: p }, G::Point { coordinates: q }) => {
            same_position(p.as_slice(), q.as_slice())
        }
        (G::MultiPoint { coordinates: p }, G::MultiPoint { coordinates: q })
        | (G::LineString { coordinates: p }, G::LineString { coordinates: q }) => {
            same_positions(p, q)
        }
        (G::MultiLineString { coordinates: p }, G::MultiLineString { coordinates: q })
        | (G::Polygon { coordinates: p }, G::Polygon { coordinates: q }) => same_rings(p, q),
        (G::MultiPolygon { coordinates: p }, G::MultiPolygon { coordinates: q }) => {
            p.len() == q.len() && p.iter().zip(q).all(|(r, s)| same_rings(r, s))
        }
        (G::GeometryCollection { geometries: p }, G::GeometryCollection { geometries: q }) => {
            p.len() == q.len() && p.iter().zip(q).all(|(r, s)| same_geometry(r, s))
        }
        _ => false,
    };
    same_value && a.foreign_members == b.foreign_members
}

/// Whether a feature is unchanged: the same geometry (see
/// [`same_geometry`]) and the same properties, a null one being absent.
fn same_feature(a: &geojson::Feature, b: &geojson::Feature) -> bool {
    fn set(f: &geojson::Feature) -> std::collections::BTreeMap<&String, &serde_json::Value> {
        f.properties
            .iter()
            .flatten()
            .filter(|(_, v)| !v.is_null())
            .collect()
    }
    let geometry = match (&a.geometry, &b.geometry) {
        (Some(p), Some(q)) => same_geometry(p, q),
        (p, q) => p == q,
    };
    geometry && set(a) == set(b)
}

/// The diff from `old` (absent for a new road) to `new`.
pub fn diff(old: Option<&Layout>, new: &Layout) -> Diff {
    let before = old.map(features).unwrap_or_default();
    let after = features(new);
    let mut d = Diff::default();
    for (id, f) in &after {
        match before.get(id) {
            None => d.added.push(id.clone()),
            Some(g) if !same_feature(g, f) => d.changed.push(id.clone()),
            Some(_) => {}
        }
    }
    d.removed = before
        .keys()
        .filter(|id| !after.contains_key(*id))
        .cloned()
        .collect();
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::layout::parse_layouts;
    use serde_json::json;

    /// A bay `w` x `l` metres at `x` metres east of the road's start, 8 m north.
    fn bay(id: &str, x: f64, w: f64, l: f64, kind: &str) -> serde_json::Value {
        let f = LocalFrame::at(120.78, 30.76);
        let c = |dx: f64, dy: f64| {
            let p = f.to_degrees(geo::Coord {
                x: x + dx,
                y: 8.0 + dy,
            });
            json!([p.x, p.y])
        };
        json!({"type": "Feature", "id": id, "properties": {"feature_type": "bay", "bay_id": id, "road_id": "r", "kind": kind},
               "geometry": {"type": "Polygon", "coordinates": [[c(0.0, 0.0), c(l, 0.0), c(l, w), c(0.0, w), c(0.0, 0.0)]]}})
    }

    fn layout(features: Vec<serde_json::Value>) -> Layout {
        let mut all = vec![
            json!({"type": "Feature", "id": "r", "properties": {"feature_type": "road", "road_id": "r", "name": "R"},
            "geometry": {"type": "LineString", "coordinates": [[120.78, 30.76], [120.79, 30.76]]}}),
        ];
        all.extend(features);
        let fc =
            serde_json::from_value(json!({"type": "FeatureCollection", "features": all})).unwrap();
        parse_layouts(&fc).unwrap().remove(0)
    }

    fn codes(l: &Layout) -> Vec<(String, ProblemCode)> {
        validate(l)
            .unwrap_err()
            .into_iter()
            .map(|p| (p.feature_id.unwrap(), p.code))
            .collect()
    }

    #[test]
    fn a_road_of_twenty_thousand_bays_is_checked_in_seconds() {
        // 200 x 100 standard bays 2.5 x 5.5 m, 0.5 m apart: no two overlap.
        let f = LocalFrame::at(120.78, 30.76);
        let bays: Vec<serde_json::Value> = (0..20_000)
            .map(|n| {
                let (x, y) = (f64::from(n % 200) * 3.0, f64::from(n / 200) * 6.0);
                let c = |dx: f64, dy: f64| {
                    let p = f.to_degrees(geo::Coord {
                        x: x + dx,
                        y: y + dy,
                    });
                    json!([p.x, p.y])
                };
                json!({"type": "Feature", "id": format!("b{n}"), "properties": {"feature_type": "bay", "bay_id": format!("b{n}"), "road_id": "r", "kind": "standard"},
                       "geometry": {"type": "Polygon", "coordinates": [[c(0.0, 0.0), c(2.5, 0.0), c(2.5, 5.5), c(0.0, 5.5), c(0.0, 0.0)]]}})
            })
            .collect();
        let l = layout(bays);
        let t0 = std::time::Instant::now();
        assert!(validate(&l).is_ok());
        let took = t0.elapsed();
        // Every pair would be 200 million comparisons: minutes, even optimised.
        assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    }

    #[test]
    fn well_drawn_bays_pass() {
        let l = layout(vec![
            bay("a", 0.0, 2.5, 6.0, "standard"),
            bay("b", 6.2, 2.5, 6.0, "standard"),
        ]);
        assert_eq!(validate(&l), Ok(vec![]));
    }

    #[test]
    fn a_narrow_bay_is_a_size_problem() {
        let l = layout(vec![bay("a", 0.0, 1.8, 6.0, "standard")]);
        assert_eq!(codes(&l), vec![("a".into(), ProblemCode::BaySize)]);
        let msg = &validate(&l).unwrap_err()[0].message;
        assert!(msg.contains("1.8 m x 6.0 m"), "{msg}");
    }

    #[test]
    fn overlapping_bays_are_a_problem_touching_ones_are_not() {
        let l = layout(vec![
            bay("a", 0.0, 2.5, 6.0, "standard"),
            bay("b", 5.0, 2.5, 6.0, "standard"),
        ]);
        assert_eq!(codes(&l), vec![("a".into(), ProblemCode::BayOverlap)]);
        let touching = layout(vec![
            bay("a", 0.0, 2.5, 6.0, "standard"),
            bay("b", 6.0, 2.5, 6.0, "standard"),
        ]);
        assert!(validate(&touching).is_ok());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let l = layout(vec![
            bay("a", 0.0, 1.8, 6.0, "standard"),
            bay("b", 20.0, 2.5, 6.0, "standard"),
            bay("c", 24.0, 2.5, 6.0, "standard"),
        ]);
        assert_eq!(
            codes(&l),
            vec![
                ("a".into(), ProblemCode::BaySize),
                ("b".into(), ProblemCode::BayOverlap)
            ]
        );
    }

    /// `l` with every position of bay `id` moved `north` metres, written
    /// with `digits` decimals.
    fn moved(l: &Layout, id: &str, north: f64, digits: i32) -> Layout {
        let mut fc = serde_json::to_value(l.to_feature_collection()).unwrap();
        let scale = 10f64.powi(digits);
        for f in fc["features"].as_array_mut().unwrap() {
            if f["id"] != id {
                continue;
            }
            for p in f["geometry"]["coordinates"][0].as_array_mut().unwrap() {
                let (x, y) = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
                let y = y + north / METRES_PER_DEGREE;
                *p = json!([(x * scale).round() / scale, (y * scale).round() / scale]);
            }
        }
        parse_layouts(&serde_json::from_value(fc).unwrap())
            .unwrap()
            .remove(0)
    }

    #[test]
    fn the_diff_sees_moves_of_a_millimetre_and_more_not_number_formats_or_nulls() {
        let old = layout(vec![bay("a", 0.0, 2.5, 6.0, "standard")]);
        // Fewer digits (1e-12 degree is 0.1 micrometre) are no change.
        let reformatted = moved(&old, "a", 0.0, 12);
        assert_ne!(reformatted.bays[0].polygon, old.bays[0].polygon);
        assert!(diff(Some(&old), &reformatted).is_empty());
        assert!(diff(Some(&old), &moved(&old, "a", 0.0004, 12)).is_empty());
        assert_eq!(
            diff(Some(&old), &moved(&old, "a", 0.002, 12)).changed,
            vec!["a".to_string()]
        );
        let mut with_nulls = serde_json::to_value(old.to_feature_collection()).unwrap();
        with_nulls["features"][1]["properties"]["side"] = json!(null);
        with_nulls["features"][1]["properties"]["max_stay_minutes"] = json!(null);
        let with_nulls = parse_layouts(&serde_json::from_value(with_nulls).unwrap())
            .unwrap()
            .remove(0);
        assert_eq!(
            with_nulls.bays[0].feature().properties.unwrap()["side"],
            json!(null)
        );
        assert!(diff(Some(&old), &with_nulls).is_empty());
    }

    #[test]
    fn the_diff_names_added_removed_and_changed_features() {
        let old = layout(vec![
            bay("a", 0.0, 2.5, 6.0, "standard"),
            bay("b", 10.0, 2.5, 6.0, "standard"),
        ]);
        let new = layout(vec![
            bay("a", 0.0, 2.5, 6.0, "loading"),
            bay("c", 20.0, 2.5, 6.0, "standard"),
        ]);
        let d = diff(Some(&old), &new);
        assert_eq!(
            (d.added, d.removed, d.changed),
            (
                vec!["c".to_string()],
                vec!["b".to_string()],
                vec!["a".to_string()]
            )
        );
        assert!(diff(Some(&old), &old).is_empty());
    }
}
