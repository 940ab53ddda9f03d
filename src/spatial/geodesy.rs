//! A local tangent-plane frame: (longitude, latitude) degrees to metres east
//! and north of an origin, using the WGS 84 ellipsoid's radii of curvature at
//! the origin's latitude.

use geo::{Coord, LineString, MapCoords, Polygon};

/// WGS 84 semi-major axis, metres.
const A: f64 = 6_378_137.0;
/// WGS 84 first eccentricity squared.
const E2: f64 = 6.694_379_990_14e-3;

/// Metres east and north of an origin, for points near it.
///
/// Error grows with distance from the origin: below 0.1% within 5 km at the
/// latitudes of Chinese cities.
#[derive(Debug, Clone, Copy)]
pub struct LocalFrame {
    /// Origin longitude, degrees.
    pub lon0: f64,
    /// Origin latitude, degrees.
    pub lat0: f64,
    /// Metres per degree of longitude at the origin.
    pub m_per_deg_lon: f64,
    /// Metres per degree of latitude at the origin.
    pub m_per_deg_lat: f64,
}

impl LocalFrame {
    /// A frame centred on (`lon`, `lat`), degrees.
    ///
    /// ```
    /// let f = kerbside::spatial::LocalFrame::at(120.78, 30.76);
    /// // One degree of latitude near 30.76 N is about 110.87 km.
    /// assert!((f.m_per_deg_lat - 110_865.3).abs() < 0.1);
    /// ```
    pub fn at(lon: f64, lat: f64) -> Self {
        let phi = lat.to_radians();
        let s = phi.sin();
        let w = (1.0 - E2 * s * s).sqrt();
        let meridional = A * (1.0 - E2) / (w * w * w);
        let normal = A / w;
        let rad = std::f64::consts::PI / 180.0;
        LocalFrame {
            lon0: lon,
            lat0: lat,
            m_per_deg_lon: normal * phi.cos() * rad,
            m_per_deg_lat: meridional * rad,
        }
    }

    /// (longitude, latitude) degrees to (east, north) metres from the origin.
    pub fn to_metres(&self, c: Coord<f64>) -> Coord<f64> {
        Coord {
            x: (c.x - self.lon0) * self.m_per_deg_lon,
            y: (c.y - self.lat0) * self.m_per_deg_lat,
        }
    }

    /// (east, north) metres from the origin back to (longitude, latitude) degrees.
    pub fn to_degrees(&self, c: Coord<f64>) -> Coord<f64> {
        Coord {
            x: self.lon0 + c.x / self.m_per_deg_lon,
            y: self.lat0 + c.y / self.m_per_deg_lat,
        }
    }

    /// A polygon in degrees, re-expressed in metres of this frame.
    pub fn polygon_to_metres(&self, p: &Polygon<f64>) -> Polygon<f64> {
        p.map_coords(|c| self.to_metres(c))
    }

    /// A line in degrees, re-expressed in metres of this frame.
    pub fn line_to_metres(&self, l: &LineString<f64>) -> LineString<f64> {
        l.map_coords(|c| self.to_metres(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches_the_ellipsoid() {
        let f = LocalFrame::at(120.78, 30.76);
        let p = Coord {
            x: 120.7812,
            y: 30.7593,
        };
        let back = f.to_degrees(f.to_metres(p));
        assert!((back.x - p.x).abs() < 1e-12 && (back.y - p.y).abs() < 1e-12);
        // Reference values for 30.76 N from the standard WGS 84 series
        // (111132.92 - 559.82 cos 2φ + ...): 110,865.33 m per degree of
        // latitude and 95,742.58 m per degree of longitude.
        assert!(
            (f.m_per_deg_lat - 110_865.33).abs() < 0.1,
            "{}",
            f.m_per_deg_lat
        );
        assert!(
            (f.m_per_deg_lon - 95_742.58).abs() < 0.1,
            "{}",
            f.m_per_deg_lon
        );
    }
}
