//! The street as the simulation sees it: each road's centre line in local
//! metres, and each bay's place along it.

use std::path::Path;

use anyhow::Context;
use geo::{Centroid, Coord};
use kerbside::domain::layout::{EnforcedHours, Layout};
use kerbside::spatial::LocalFrame;

/// A parking bay, placed along its road.
#[derive(Debug, Clone)]
pub struct SimBay {
    pub bay_id: String,
    pub road_id: String,
    /// The contract's bay kind (`standard`, `loading`, ...).
    pub kind: String,
    /// Longest permitted stay, minutes; `None` is no limit.
    pub max_stay_minutes: Option<u32>,
    pub enforced_hours: Option<EnforcedHours>,
    /// Centroid, WGS 84 (lon, lat) degrees.
    pub centroid: (f64, f64),
    /// Distance along the road's centre line to the bay, metres.
    pub along_m: f64,
    /// `1.0` left of the centre line (walking its direction), `-1.0` right.
    pub side: f64,
}

/// A road: its centre line in metres of a local frame, and its bays.
#[derive(Debug, Clone)]
pub struct SimRoad {
    pub road_id: String,
    frame: LocalFrame,
    /// Centre line vertices, metres in `frame`.
    line: Vec<Coord<f64>>,
    /// Length of the centre line, metres.
    pub length_m: f64,
    pub bays: Vec<SimBay>,
}

/// Every road of the simulated street.
#[derive(Debug, Clone)]
pub struct StreetPlan {
    pub roads: Vec<SimRoad>,
}

impl StreetPlan {
    /// Reads the layouts of `dir` (the service's geodata format).
    pub fn load(dir: &Path) -> anyhow::Result<StreetPlan> {
        let layouts = kerbside::geodata::load_dir(dir)
            .with_context(|| format!("reading the layouts of {}", dir.display()))?;
        Ok(StreetPlan::from_layouts(layouts.iter().map(|(_, l)| l)))
    }

    /// Places the bays of `layouts` along their roads.
    pub fn from_layouts<'a>(layouts: impl IntoIterator<Item = &'a Layout>) -> StreetPlan {
        let roads = layouts.into_iter().map(SimRoad::new).collect();
        StreetPlan { roads }
    }

    /// Every bay, road by road.
    pub fn bays(&self) -> impl Iterator<Item = &SimBay> {
        self.roads.iter().flat_map(|r| r.bays.iter())
    }
}

impl SimRoad {
    fn new(layout: &Layout) -> SimRoad {
        let pts = &layout.road.centre_line.0;
        let mid = pts[pts.len() / 2];
        let frame = LocalFrame::at(mid.x, mid.y);
        let line: Vec<Coord<f64>> = pts.iter().map(|c| frame.to_metres(*c)).collect();
        let length_m = line
            .windows(2)
            .map(|w| (w[1].x - w[0].x).hypot(w[1].y - w[0].y))
            .sum();
        let mut road = SimRoad {
            road_id: layout.road.road_id.to_string(),
            frame,
            line,
            length_m,
            bays: Vec::new(),
        };
        road.bays = layout
            .bays
            .iter()
            .map(|b| {
                let c = b
                    .polygon
                    .centroid()
                    .map_or(b.polygon.exterior().0[0], |p| p.0);
                let (along_m, side) = road.locate(road.frame.to_metres(c));
                SimBay {
                    bay_id: b.bay_id.to_string(),
                    road_id: b.road_id.to_string(),
                    kind: b.kind.as_str().to_owned(),
                    max_stay_minutes: b.max_stay_minutes,
                    enforced_hours: b.enforced_hours,
                    centroid: (c.x, c.y),
                    along_m,
                    side,
                }
            })
            .collect();
        road
    }

    /// Where `p` (metres) projects onto the centre line: distance along it,
    /// and which side `p` lies on.
    fn locate(&self, p: Coord<f64>) -> (f64, f64) {
        let mut best = (f64::INFINITY, 0.0, 1.0);
        let mut walked = 0.0;
        for w in self.line.windows(2) {
            let (a, b) = (w[0], w[1]);
            let d = Coord {
                x: b.x - a.x,
                y: b.y - a.y,
            };
            let len = d.x.hypot(d.y);
            if len == 0.0 {
                continue;
            }
            let t = (((p.x - a.x) * d.x + (p.y - a.y) * d.y) / (len * len)).clamp(0.0, 1.0);
            let q = Coord {
                x: a.x + t * d.x,
                y: a.y + t * d.y,
            };
            let dist = (p.x - q.x).hypot(p.y - q.y);
            if dist < best.0 {
                let cross = d.x * (p.y - a.y) - d.y * (p.x - a.x);
                best = (
                    dist,
                    walked + t * len,
                    if cross >= 0.0 { 1.0 } else { -1.0 },
                );
            }
            walked += len;
        }
        (best.1, best.2)
    }

    /// The WGS 84 (lon, lat) of the point `offset_m` to `side` of the centre
    /// line, `along_m` along it.
    pub fn point_beside(&self, along_m: f64, side: f64, offset_m: f64) -> (f64, f64) {
        let mut left = along_m.clamp(0.0, self.length_m);
        for w in self.line.windows(2) {
            let (a, b) = (w[0], w[1]);
            let len = (b.x - a.x).hypot(b.y - a.y);
            if len == 0.0 {
                continue;
            }
            if left <= len {
                let (tx, ty) = ((b.x - a.x) / len, (b.y - a.y) / len);
                let (nx, ny) = (-ty * side, tx * side);
                let p = Coord {
                    x: a.x + tx * left + nx * offset_m,
                    y: a.y + ty * left + ny * offset_m,
                };
                let d = self.frame.to_degrees(p);
                return (d.x, d.y);
            }
            left -= len;
        }
        let d = self
            .frame
            .to_degrees(*self.line.last().unwrap_or(&Coord { x: 0.0, y: 0.0 }));
        (d.x, d.y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qingfeng() -> StreetPlan {
        StreetPlan::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../geodata")).unwrap()
    }

    #[test]
    fn bays_lie_along_the_road_on_both_sides() {
        let street = qingfeng();
        assert_eq!(street.roads.len(), 1);
        let road = &street.roads[0];
        assert!((road.length_m - 600.0).abs() < 5.0, "{}", road.length_m);
        let bays: Vec<_> = street.bays().collect();
        assert_eq!(bays.len(), 136);
        let north: Vec<_> = bays
            .iter()
            .filter(|b| b.bay_id.starts_with("QF-N"))
            .collect();
        let sides: std::collections::HashSet<i8> = north.iter().map(|b| b.side as i8).collect();
        assert_eq!(sides.len(), 1, "all north bays on one side");
        assert!(
            bays.iter()
                .all(|b| b.along_m > 0.0 && b.along_m < road.length_m)
        );
    }

    #[test]
    fn a_point_beside_a_bay_is_its_centroid_at_the_bay_offset() {
        let street = qingfeng();
        let road = &street.roads[0];
        let bay = &road.bays[10];
        let c = road.frame.to_metres(Coord {
            x: bay.centroid.0,
            y: bay.centroid.1,
        });
        let offset = road.locate(c);
        let on_line = road.point_beside(offset.0, offset.1, 0.0);
        let line_pt = road.frame.to_metres(Coord {
            x: on_line.0,
            y: on_line.1,
        });
        let off = (c.x - line_pt.x).hypot(c.y - line_pt.y);
        let (lon, lat) = road.point_beside(bay.along_m, bay.side, off);
        let back = road.frame.to_metres(Coord { x: lon, y: lat });
        assert!((back.x - c.x).hypot(back.y - c.y) < 0.01);
    }
}
