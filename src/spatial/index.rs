//! The spatial index of a street: which bay a position is in (or next to),
//! and which road it is beside. Built once per layout snapshot, never
//! edited in place.

use geo::{Coord, Distance, Euclidean, LineString, Point, Polygon};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, Envelope, RTree};

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

/// Distance in metres from the frame's origin to `poly` (0 inside or on it),
/// computed on the fly without building the polygon in metres.
fn origin_to_polygon_m(frame: &LocalFrame, poly: &Polygon<f64>) -> f64 {
    let mut inside = false;
    let mut best2 = f64::INFINITY;
    for ring in std::iter::once(poly.exterior()).chain(poly.interiors()) {
        let mut pts = ring.0.iter().map(|&c| frame.to_metres(c));
        let Some(mut a) = pts.next() else { continue };
        for b in pts {
            // Even-odd crossing of the ray from the origin towards +x.
            if (a.y > 0.0) != (b.y > 0.0) && a.x + (b.x - a.x) * (-a.y) / (b.y - a.y) > 0.0 {
                inside = !inside;
            }
            best2 = best2.min(origin_to_segment_m2(a, b));
            a = b;
        }
    }
    if inside { 0.0 } else { best2.sqrt() }
}

/// Squared distance from the origin to the segment `a`-`b`, square metres.
fn origin_to_segment_m2(a: Coord<f64>, b: Coord<f64>) -> f64 {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        ((-a.x * dx - a.y * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (x, y) = (a.x + t * dx, a.y + t * dy);
    x * x + y * y
}

/// Most bays one [`SpatialIndex::nearest_bays`] search examines: enough to
/// find 100 free bays where nineteen in twenty are taken, and a bound on
/// the work of a search over a wide radius where nothing is free.
pub const MAX_CANDIDATES: usize = 5_000;

/// Beyond this latitude (degrees, either hemisphere) there is no kerbside
/// to search, and a degree of longitude shrinks towards nothing, which
/// would make the nearest-first bound useless.
pub const MAX_SEARCH_LAT: f64 = 85.0;

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
        let mut hits: Vec<(BayRef, f64)> = self
            .bays
            .locate_in_envelope_intersecting(&search_box(p, metres))
            .map(|e| (e.data, origin_to_polygon_m(&frame, outline(e.data))))
            .filter(|(_, d)| *d <= metres)
            .collect();
        hits.sort_by(|a, b| a.1.total_cmp(&b.1));
        hits
    }

    /// Up to `limit` bays within `metres` of `p` that `accept` takes,
    /// nearest first, with their distance in metres: the same answer as
    /// [`Self::bays_near`] filtered and cut to `limit`.
    ///
    /// The R-tree hands out bays in order of their boxes' distance in
    /// degrees; scaled by the smaller of the metres-per-degree of the two
    /// axes, that is a lower bound of a bay's true distance in metres. The
    /// search stops once that bound passes the radius or the `limit`-th
    /// best exact distance, so it looks at a few more bays than it
    /// returns, however large the city; where `accept` turns most bays
    /// down, it stops after [`MAX_CANDIDATES`] bays with what it has found.
    /// A point beyond [`MAX_SEARCH_LAT`], or farther than `metres` from the
    /// box around every bay, finds nothing without looking at any bay.
    pub fn nearest_bays<'a>(
        &self,
        p: Point<f64>,
        metres: f64,
        limit: usize,
        outline: impl Fn(BayRef) -> &'a Polygon<f64>,
        mut accept: impl FnMut(BayRef) -> bool,
    ) -> Vec<(BayRef, f64)> {
        let mut best: Vec<(BayRef, f64)> = Vec::with_capacity(limit + 1);
        let near_a_pole = p.y().is_nan() || p.y().abs() > MAX_SEARCH_LAT;
        if limit == 0 || near_a_pole || !self.may_hold_bays_near(p, metres) {
            return best;
        }
        let frame = LocalFrame::at(p.x(), p.y());
        let scale = frame.m_per_deg_lon.min(frame.m_per_deg_lat);
        for (e, d2) in self
            .bays
            .nearest_neighbor_iter_with_distance_2(&[p.x(), p.y()])
            .take(MAX_CANDIDATES)
        {
            let bound = d2.sqrt() * scale;
            if bound > metres || (best.len() == limit && bound > best[limit - 1].1) {
                break;
            }
            let d = origin_to_polygon_m(&frame, outline(e.data));
            if d > metres || (best.len() == limit && d >= best[limit - 1].1) {
                continue;
            }
            if !accept(e.data) {
                continue;
            }
            let at = best.partition_point(|(_, x)| *x <= d);
            best.insert(at, (e.data, d));
            best.truncate(limit);
        }
        best
    }

    /// Whether any bay's box comes within (about) `metres` of `p`: false
    /// for a point well outside the street.
    fn may_hold_bays_near(&self, p: Point<f64>, metres: f64) -> bool {
        let street = self.bays.root().envelope();
        self.bays.size() > 0 && street.intersects(&search_box(p, metres))
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

#[cfg(test)]
mod tests {
    use super::*;
    use geo::polygon;

    /// A grid of 2 x 5 m bays, 1 m apart, around (120.78, 30.76).
    fn grid() -> Vec<Polygon<f64>> {
        let f = LocalFrame::at(120.78, 30.76);
        let mut out = Vec::new();
        for i in -20..20 {
            for j in -20..20 {
                let (x, y) = (f64::from(i) * 3.0, f64::from(j) * 6.0);
                let c = |dx: f64, dy: f64| {
                    f.to_degrees(Coord {
                        x: x + dx,
                        y: y + dy,
                    })
                };
                let (a, b, cc, d) = (c(0.0, 0.0), c(2.0, 0.0), c(2.0, 5.0), c(0.0, 5.0));
                out.push(polygon![a, b, cc, d, a]);
            }
        }
        out
    }

    #[test]
    fn distances_match_geo() {
        let bays = grid();
        let f = LocalFrame::at(120.78012, 30.76007);
        for poly in &bays {
            let want = Euclidean.distance(&Point::new(0.0, 0.0), &f.polygon_to_metres(poly));
            let got = origin_to_polygon_m(&f, poly);
            assert!((want - got).abs() < 1e-9, "{want} {got}");
        }
        let inside = &bays[20 * 40 + 20];
        let c = inside.exterior().0[0];
        let f = LocalFrame::at(c.x + 1e-6, c.y + 1e-6);
        assert_eq!(origin_to_polygon_m(&f, inside), 0.0);
    }

    #[test]
    fn nearest_first_is_the_whole_radius_filtered_and_cut() {
        let bays = grid();
        let lines: Vec<(LineString<f64>, Vec<&Polygon<f64>>)> = vec![(
            LineString::from(vec![(120.78, 30.76), (120.781, 30.76)]),
            bays.iter().collect(),
        )];
        let index = SpatialIndex::build(lines.iter().map(|(l, p)| (l, p.clone())));
        let outline = |b: BayRef| &bays[b.bay as usize];
        let p = Point::new(120.7801, 30.7601);
        for (radius, limit) in [(500.0, 20), (30.0, 100), (2.0, 5), (500.0, 1000)] {
            let every = index.bays_near(p, radius, outline);
            let accept = |b: BayRef| !b.bay.is_multiple_of(3);
            let want: Vec<_> = every
                .into_iter()
                .filter(|(b, _)| accept(*b))
                .take(limit)
                .collect();
            assert_eq!(index.nearest_bays(p, radius, limit, outline, accept), want);
        }
    }

    #[test]
    fn a_search_off_the_street_or_near_a_pole_looks_at_no_bay() {
        let bays = grid();
        let lines: Vec<(LineString<f64>, Vec<&Polygon<f64>>)> = vec![(
            LineString::from(vec![(120.78, 30.76), (120.781, 30.76)]),
            bays.iter().collect(),
        )];
        let index = SpatialIndex::build(lines.iter().map(|(l, p)| (l, p.clone())));
        let looked = std::cell::Cell::new(0usize);
        let outline = |b: BayRef| {
            looked.set(looked.get() + 1);
            &bays[b.bay as usize]
        };
        for p in [
            Point::new(120.78, 90.0),
            Point::new(120.78, 89.99),
            Point::new(-120.78, -86.0),
            Point::new(121.5, 30.76),
            Point::new(0.0, 0.0),
        ] {
            assert!(
                index
                    .nearest_bays(p, 5000.0, 100, outline, |_| true)
                    .is_empty()
            );
            assert_eq!(looked.get(), 0, "{p:?}");
        }
        assert!(
            !index
                .nearest_bays(Point::new(120.7801, 30.7601), 5000.0, 1, outline, |_| true)
                .is_empty()
        );
    }

    #[test]
    fn a_search_where_nothing_is_accepted_examines_a_bounded_number_of_bays() {
        // 12,000 bays within 250 m, none of them free.
        let f = LocalFrame::at(120.78, 30.76);
        let bays: Vec<Polygon<f64>> = (0..120)
            .flat_map(|i| (0..100).map(move |j| (f64::from(i) * 3.0, f64::from(j) * 6.0)))
            .map(|(x, y)| {
                let c = |dx: f64, dy: f64| {
                    f.to_degrees(Coord {
                        x: x + dx,
                        y: y + dy,
                    })
                };
                let (a, b, cc, d) = (c(0.0, 0.0), c(2.0, 0.0), c(2.0, 5.0), c(0.0, 5.0));
                polygon![a, b, cc, d, a]
            })
            .collect();
        let lines: Vec<(LineString<f64>, Vec<&Polygon<f64>>)> = vec![(
            LineString::from(vec![(120.78, 30.76), (120.781, 30.76)]),
            bays.iter().collect(),
        )];
        let index = SpatialIndex::build(lines.iter().map(|(l, p)| (l, p.clone())));
        let asked = std::cell::Cell::new(0usize);
        let found = index.nearest_bays(
            Point::new(120.7801, 30.7601),
            5000.0,
            100,
            |b| &bays[b.bay as usize],
            |_| {
                asked.set(asked.get() + 1);
                false
            },
        );
        assert!(found.is_empty());
        assert!(
            asked.get() <= MAX_CANDIDATES,
            "{} bays examined",
            asked.get()
        );
    }
}
