//! Geometry in metres over WGS 84 coordinates, and the in-memory spatial
//! index of a street.
//!
//! Coordinates are always (longitude, latitude) in degrees, GeoJSON order.
//! Distances and sizes are computed in a local tangent-plane frame
//! ([`LocalFrame`]), which is accurate to well under 0.1% within a few
//! kilometres of its origin: enough for bays, roads and walking distances.

use geo::{Coord, LineString, Polygon};

pub mod gcj02;
pub mod geodesy;
pub mod index;
#[cfg(test)]
mod props;

pub use geodesy::LocalFrame;

/// Finds two non-adjacent edges of a closed ring that cross or touch, and
/// returns their indices. `ring` must be closed (first == last position).
///
/// Rings of bays and barriers have a handful of vertices, so the quadratic
/// scan is cheaper than building anything cleverer.
pub fn ring_self_intersection(ring: &[Coord<f64>]) -> Option<(usize, usize)> {
    let n = ring.len().saturating_sub(1);
    for i in 0..n {
        for j in i + 1..n {
            let adjacent = j == i + 1 || (i == 0 && j == n - 1);
            if adjacent {
                continue;
            }
            if segments_intersect(ring[i], ring[i + 1], ring[j], ring[j + 1]) {
                return Some((i, j));
            }
        }
    }
    None
}

fn orient(a: Coord<f64>, b: Coord<f64>, c: Coord<f64>) -> f64 {
    (b.x - a.x) * (c.y - a.y) - (b.y - a.y) * (c.x - a.x)
}

fn on_segment(a: Coord<f64>, b: Coord<f64>, p: Coord<f64>) -> bool {
    p.x >= a.x.min(b.x) && p.x <= a.x.max(b.x) && p.y >= a.y.min(b.y) && p.y <= a.y.max(b.y)
}

/// Whether segments `p1p2` and `p3p4` share any point.
fn segments_intersect(p1: Coord<f64>, p2: Coord<f64>, p3: Coord<f64>, p4: Coord<f64>) -> bool {
    let d1 = orient(p3, p4, p1);
    let d2 = orient(p3, p4, p2);
    let d3 = orient(p1, p2, p3);
    let d4 = orient(p1, p2, p4);
    if ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0))
        && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0))
    {
        return true;
    }
    (d1 == 0.0 && on_segment(p3, p4, p1))
        || (d2 == 0.0 && on_segment(p3, p4, p2))
        || (d3 == 0.0 && on_segment(p1, p2, p3))
        || (d4 == 0.0 && on_segment(p1, p2, p4))
}

/// The farthest any vertex of `polygon` lies from `line`, in metres.
pub fn polygon_max_distance_m(polygon: &Polygon<f64>, line: &LineString<f64>) -> f64 {
    use geo::{Distance, Euclidean, Point};
    let Some(origin) = polygon.exterior().0.first() else {
        return f64::INFINITY;
    };
    let frame = LocalFrame::at(origin.x, origin.y);
    let line_m = frame.line_to_metres(line);
    polygon
        .exterior()
        .0
        .iter()
        .map(|c| Euclidean.distance(&Point::from(frame.to_metres(*c)), &line_m))
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::coord;

    #[test]
    fn a_square_does_not_cross_itself_a_bowtie_does() {
        let square = [
            coord! {x: 0.0, y: 0.0},
            coord! {x: 1.0, y: 0.0},
            coord! {x: 1.0, y: 1.0},
            coord! {x: 0.0, y: 1.0},
            coord! {x: 0.0, y: 0.0},
        ];
        assert_eq!(ring_self_intersection(&square), None);
        let bowtie = [
            coord! {x: 0.0, y: 0.0},
            coord! {x: 1.0, y: 1.0},
            coord! {x: 1.0, y: 0.0},
            coord! {x: 0.0, y: 1.0},
            coord! {x: 0.0, y: 0.0},
        ];
        assert_eq!(ring_self_intersection(&bowtie), Some((0, 2)));
    }
}
