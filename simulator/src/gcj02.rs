//! WGS 84 to GCJ-02, the datum of Amap's handhelds: the simulator's own
//! copy of the public formula (the Krasovsky ellipsoid plus the published
//! distortion polynomials), kept apart from kerbside's so that the
//! end-to-end check would notice a mistake in either.

use std::f64::consts::PI;

/// Krasovsky 1940: semi-major axis (m) and first eccentricity squared.
const KRASOVSKY_A: f64 = 6_378_245.0;
const KRASOVSKY_EE: f64 = 0.006_693_421_622_965_943;

fn outside_china(lon: f64, lat: f64) -> bool {
    !(72.004..=137.8347).contains(&lon) || !(0.8293..=55.8271).contains(&lat)
}

/// The published latitude distortion, in metres of the ellipsoid, for
/// `x` = lon - 105 and `y` = lat - 35.
fn shift_lat(x: f64, y: f64) -> f64 {
    let mut r = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * x.abs().sqrt();
    r += (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    r += (20.0 * (y * PI).sin() + 40.0 * (y / 3.0 * PI).sin()) * 2.0 / 3.0;
    r += (160.0 * (y / 12.0 * PI).sin() + 320.0 * (y * PI / 30.0).sin()) * 2.0 / 3.0;
    r
}

/// The published longitude distortion, as [`shift_lat`].
fn shift_lon(x: f64, y: f64) -> f64 {
    let mut r = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * x.abs().sqrt();
    r += (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    r += (20.0 * (x * PI).sin() + 40.0 * (x / 3.0 * PI).sin()) * 2.0 / 3.0;
    r += (150.0 * (x / 12.0 * PI).sin() + 300.0 * (x / 30.0 * PI).sin()) * 2.0 / 3.0;
    r
}

/// WGS 84 (`lon`, `lat`) degrees as an Amap handheld would give them, in
/// GCJ-02; outside mainland China the two are the same.
pub fn to_gcj02(lon: f64, lat: f64) -> (f64, f64) {
    if outside_china(lon, lat) {
        return (lon, lat);
    }
    let (x, y) = (lon - 105.0, lat - 35.0);
    let phi = lat / 180.0 * PI;
    let w2 = 1.0 - KRASOVSKY_EE * phi.sin() * phi.sin();
    let w = w2.sqrt();
    // Metres to degrees on the Krasovsky ellipsoid: the meridian radius
    // for latitude, the parallel's for longitude.
    let meridian = KRASOVSKY_A * (1.0 - KRASOVSKY_EE) / (w2 * w);
    let parallel = KRASOVSKY_A / w * phi.cos();
    (
        lon + shift_lon(x, y) * 180.0 / (parallel * PI),
        lat + shift_lat(x, y) * 180.0 / (meridian * PI),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Published pairs: (WGS 84 lon, lat, GCJ-02 lon, lat).
    const PUBLISHED: [(f64, f64, f64, f64); 3] = [
        (121.5272106, 31.1774276, 121.531541859215, 31.17530398364597),
        (113.912316, 22.543847, 113.9171764808363, 22.540796131694766),
        (116.377817, 39.911954, 116.38404722455657, 39.91334545536069),
    ];

    #[test]
    fn matches_published_pairs_and_leaves_the_rest_of_the_world_alone() {
        for (lon, lat, glon, glat) in PUBLISHED {
            let (x, y) = to_gcj02(lon, lat);
            assert!(
                (x - glon).abs() < 1e-9 && (y - glat).abs() < 1e-9,
                "{lon},{lat}"
            );
        }
        assert_eq!(to_gcj02(-0.1276, 51.5072), (-0.1276, 51.5072));
    }

    /// kerbside's transform and this one agree over China to 1e-10 degrees
    /// (about 10 micrometres).
    #[test]
    fn agrees_with_kerbsides_transform_on_a_grid() {
        for i in 0..=130 {
            for j in 0..=110 {
                let (lon, lat) = (
                    73.0 + 0.5 * f64::from(i) + 0.0137,
                    1.0 + 0.5 * f64::from(j) + 0.0071,
                );
                let (a, b) = to_gcj02(lon, lat);
                let (c, d) = kerbside::spatial::gcj02::wgs84_to_gcj02(lon, lat);
                assert!(
                    (a - c).abs() < 1e-10 && (b - d).abs() < 1e-10,
                    "{lon},{lat}"
                );
            }
        }
        // Around Qingfeng Road, finely.
        for i in 0..100 {
            let (lon, lat) = (120.78 + 1e-4 * f64::from(i), 30.76 + 7e-5 * f64::from(i));
            let (a, b) = to_gcj02(lon, lat);
            let (c, d) = kerbside::spatial::gcj02::wgs84_to_gcj02(lon, lat);
            assert!(
                (a - c).abs() < 1e-10 && (b - d).abs() < 1e-10,
                "{lon},{lat}"
            );
        }
    }
}
