//! The spatial index of a street: which bay a position is in (or next to),
//! and which road it is beside. Built once per layout snapshot, never
//! edited in place.

use geo::{Distance, Euclidean, LineString, Point, Polygon};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};

use super::LocalFrame;

/// Where a bay is in the snapshot: road number and bay number within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BayRef {
    pub road: u32,
    pub bay: u32,
}

type BayEntry = GeomWithData<Rectangle<[f64; 2]>, BayRef>;
type RoadEntry = GeomWithData<Rectangle<[f64; 2]>, (u32, u32)>;

/// R-trees over bay outlines and road centre-line segments, by bounding box
/// in (longitude, latitude) degrees; exact distances are then computed in
/// metres in a local frame around the query point.
#[derive(Debug, Default)]
pub struct SpatialIndex {
    bays: RTree<BayEntry>,
    roads: RTree<RoadEntry>,
}

fn envelope_of(coords: impl Iterator<Item = geo::Coord<f64>>) -> Option<Rectangle<[f64; 2]>> {
    let mut it = coords;
    let first = it.next()?;
    let (mut min, mut max) = ([first.x, first.y], [first.x, first.y]);
    for c in it {
        min = [min[0].min(c.x), min[1].min(c.y)];
        max = [max[0].max(c.x), max[1].max(c.y)];
    }
    Some(Rectangle::from_corners(min, max))
}

/// A degree-box around `p` that holds every point within `metres` of it.
fn search_box(p: Point<f64>, metres: f64) -> AABB<[f64; 2]> {
    let f = LocalFrame::at(p.x(), p.y());
    let (dx, dy) = (metres / f.m_per_deg_lon, metres / f.m_per_deg_lat);
    AABB::from_corners([p.x() - dx, p.y() - dy], [p.x() + dx, p.y() + dy])
}

impl SpatialIndex {
    /// Indexes the bays and centre lines of `roads` (bay outlines and the
    /// road's centre line, per road, in snapshot order).
    pub fn build<'a>(
        roads: impl IntoIterator<Item = (&'a LineString<f64>, Vec<&'a Polygon<f64>>)>,
    ) -> Self {
        let mut bays = Vec::new();
        let mut segments = Vec::new();
        for (r, (line, polygons)) in roads.into_iter().enumerate() {
            for (b, poly) in polygons.into_iter().enumerate() {
                if let Some(env) = envelope_of(poly.exterior().coords().copied()) {
                    bays.push(GeomWithData::new(
                        env,
                        BayRef {
                            road: r as u32,
                            bay: b as u32,
                        },
                    ));
                }
            }
            for (s, seg) in line.lines().enumerate() {
                if let Some(env) = envelope_of([seg.start, seg.end].into_iter()) {
                    segments.push(GeomWithData::new(env, (r as u32, s as u32)));
                }
            }
        }
        SpatialIndex {
            bays: RTree::bulk_load(bays),
            roads: RTree::bulk_load(segments),
        }
    }

    /// Bays within `metres` of `p` (0 when inside), nearest first, with their
    /// distance in metres. `outline` gives a bay's polygon.
    pub fn bays_near<'a>(
        &self,
        p: Point<f64>,
        metres: f64,
        outline: impl Fn(BayRef) -> &'a Polygon<f64>,
    ) -> Vec<(BayRef, f64)> {
        let frame = LocalFrame::at(p.x(), p.y());
        let origin = Point::new(0.0, 0.0);
        let mut hits: Vec<(BayRef, f64)> = self
            .bays
            .locate_in_envelope_intersecting(&search_box(p, metres))
            .map(|e| {
                let poly = frame.polygon_to_metres(outline(e.data));
                (e.data, Euclidean.distance(&origin, &poly))
            })
            .filter(|(_, d)| *d <= metres)
            .collect();
        hits.sort_by(|a, b| a.1.total_cmp(&b.1));
        hits
    }

    /// The nearest road within `metres` of `p`, with its distance in metres.
    /// `centre_line` gives a road's line.
    pub fn nearest_road<'a>(
        &self,
        p: Point<f64>,
        metres: f64,
        centre_line: impl Fn(u32) -> &'a LineString<f64>,
    ) -> Option<(u32, f64)> {
        let frame = LocalFrame::at(p.x(), p.y());
        let origin = Point::new(0.0, 0.0);
        self.roads
            .locate_in_envelope_intersecting(&search_box(p, metres))
            .map(|e| {
                let (road, seg) = e.data;
                let line = centre_line(road);
                let s = line.lines().nth(seg as usize).map(|l| {
                    let a = frame.to_metres(l.start);
                    let b = frame.to_metres(l.end);
                    Euclidean.distance(&origin, &geo::Line::new(a, b))
                });
                (road, s.unwrap_or(f64::INFINITY))
            })
            .filter(|(_, d)| *d <= metres)
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }
}
