//! GCJ-02, the offset datum that Chinese map SDKs (Amap, Tencent) return,
//! to and from WGS 84.
//!
//! The forward transform is the public formula (Krasovsky ellipsoid plus a
//! deterministic distortion). The inverse has no closed form: it is found by
//! fixed-point iteration to under a millimetre. Outside mainland China the
//! datums coincide and coordinates pass through unchanged.

/// Krasovsky 1940 semi-major axis, metres.
const A: f64 = 6_378_245.0;
/// Krasovsky 1940 first eccentricity squared.
const EE: f64 = 0.006_693_421_622_965_943;

/// Whether (`lon`, `lat`) degrees lies in the rough box where GCJ-02 applies.
fn in_china(lon: f64, lat: f64) -> bool {
    (72.004..=137.8347).contains(&lon) && (0.8293..=55.8271).contains(&lat)
}

fn distortion(x: f64, y: f64) -> (f64, f64) {
    use std::f64::consts::PI;
    let base = 20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin();
    let mut dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * x.abs().sqrt();
    dlat += base * 2.0 / 3.0;
    dlat += (20.0 * (y * PI).sin() + 40.0 * (y / 3.0 * PI).sin()) * 2.0 / 3.0;
    dlat += (160.0 * (y / 12.0 * PI).sin() + 320.0 * (y * PI / 30.0).sin()) * 2.0 / 3.0;
    let mut dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * x.abs().sqrt();
    dlon += base * 2.0 / 3.0;
    dlon += (20.0 * (x * PI).sin() + 40.0 * (x / 3.0 * PI).sin()) * 2.0 / 3.0;
    dlon += (150.0 * (x / 12.0 * PI).sin() + 300.0 * (x / 30.0 * PI).sin()) * 2.0 / 3.0;
    (dlon, dlat)
}

/// WGS 84 (`lon`, `lat`) degrees to GCJ-02 (lon, lat) degrees.
///
/// ```
/// let (lon, lat) = kerbside::spatial::gcj02::wgs84_to_gcj02(121.5272106, 31.1774276);
/// assert!((lon - 121.531541859215).abs() < 1e-9 && (lat - 31.17530398364597).abs() < 1e-9);
/// ```
pub fn wgs84_to_gcj02(lon: f64, lat: f64) -> (f64, f64) {
    if !in_china(lon, lat) {
        return (lon, lat);
    }
    let (dlon, dlat) = distortion(lon - 105.0, lat - 35.0);
    let rad = lat.to_radians();
    let magic = 1.0 - EE * rad.sin() * rad.sin();
    let sqrt_magic = magic.sqrt();
    let dlat = (dlat * 180.0) / ((A * (1.0 - EE)) / (magic * sqrt_magic) * std::f64::consts::PI);
    let dlon = (dlon * 180.0) / (A / sqrt_magic * rad.cos() * std::f64::consts::PI);
    (lon + dlon, lat + dlat)
}

/// GCJ-02 (`lon`, `lat`) degrees to WGS 84 (lon, lat) degrees, to within
/// 1e-9 degrees (about 0.1 mm) of the exact inverse.
pub fn gcj02_to_wgs84(lon: f64, lat: f64) -> (f64, f64) {
    if !in_china(lon, lat) {
        return (lon, lat);
    }
    let (mut wlon, mut wlat) = (lon, lat);
    for _ in 0..30 {
        let (glon, glat) = wgs84_to_gcj02(wlon, wlat);
        let (elon, elat) = (glon - lon, glat - lat);
        wlon -= elon;
        wlat -= elat;
        if elon.abs() < 1e-10 && elat.abs() < 1e-10 {
            break;
        }
    }
    (wlon, wlat)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Published reference pairs: (wgs lon, wgs lat, gcj lon, gcj lat).
    const REFERENCE: [(f64, f64, f64, f64); 4] = [
        (121.5272106, 31.1774276, 121.531541859215, 31.17530398364597), // Shanghai
        (113.912316, 22.543847, 113.9171764808363, 22.540796131694766), // Shenzhen
        (116.377817, 39.911954, 116.38404722455657, 39.91334545536069), // Beijing
        (116.404, 39.915, 116.41024449916938, 39.91640428150164),       // Beijing
    ];

    #[test]
    fn matches_published_reference_points() {
        for (wlon, wlat, glon, glat) in REFERENCE {
            let (lon, lat) = wgs84_to_gcj02(wlon, wlat);
            assert!(
                (lon - glon).abs() < 1e-9 && (lat - glat).abs() < 1e-9,
                "{wlon},{wlat}"
            );
        }
    }

    #[test]
    fn the_inverse_recovers_wgs84_to_a_millimetre() {
        for (wlon, wlat, glon, glat) in REFERENCE {
            let (lon, lat) = gcj02_to_wgs84(glon, glat);
            assert!(
                (lon - wlon).abs() < 1e-8 && (lat - wlat).abs() < 1e-8,
                "{glon},{glat}"
            );
        }
        // Qingfeng Road, Jiaxing: the offset there is several hundred metres.
        let (glon, glat) = wgs84_to_gcj02(120.78, 30.76);
        assert!((glon - 120.78).abs() > 0.003);
        let (lon, lat) = gcj02_to_wgs84(glon, glat);
        assert!((lon - 120.78).abs() < 1e-9 && (lat - 30.76).abs() < 1e-9);
    }

    #[test]
    fn outside_china_nothing_moves() {
        assert_eq!(wgs84_to_gcj02(-0.1276, 51.5072), (-0.1276, 51.5072));
        assert_eq!(gcj02_to_wgs84(-0.1276, 51.5072), (-0.1276, 51.5072));
    }
}
