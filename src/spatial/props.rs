//! Properties of the geometry helpers: any numbers in, no panic out, and
//! the GCJ-02 conversion undoes itself inside China.

use geo::Coord;
use proptest::prelude::*;

use super::gcj02::{gcj02_to_wgs84, wgs84_to_gcj02};
use super::{LocalFrame, ring_self_intersection};
use crate::domain::props::config;

/// GCJ-02 applies in the box 72.004..137.8347 E, 0.8293..55.8271 N; the
/// offset is under 0.01 degrees, so 0.05 degrees inside the box both a
/// point and its image are in it.
fn inside_china() -> impl Strategy<Value = (f64, f64)> {
    (72.054..137.7847f64, 0.8793..55.7771f64)
}

/// Any float, the awkward ones (NaN, infinities, huge) included.
fn any_number() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        -200.0..200.0f64,
        prop::sample::select(
            &[
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::MAX,
                f64::MIN,
                0.0,
                -0.0,
                72.004,
                55.8271
            ][..]
        ),
    ]
}

proptest! {
    #![proptest_config(config(5000))]

    #[test]
    fn gcj02_conversions_never_panic_on_any_numbers(lon in any_number(), lat in any_number()) {
        let _ = wgs84_to_gcj02(lon, lat);
        let _ = gcj02_to_wgs84(lon, lat);
    }

    #[test]
    fn gcj02_round_trips_within_1e_9_degrees_inside_china((lon, lat) in inside_china()) {
        // The documented tolerance of the inverse: 1e-9 degrees, about 0.1 mm.
        let (glon, glat) = wgs84_to_gcj02(lon, lat);
        let (wlon, wlat) = gcj02_to_wgs84(glon, glat);
        prop_assert!((wlon - lon).abs() < 1e-9 && (wlat - lat).abs() < 1e-9,
            "({lon}, {lat}) came back as ({wlon}, {wlat})");
        let (blon, blat) = wgs84_to_gcj02(gcj02_to_wgs84(lon, lat).0, gcj02_to_wgs84(lon, lat).1);
        prop_assert!((blon - lon).abs() < 1e-9 && (blat - lat).abs() < 1e-9);
    }

    #[test]
    fn outside_china_gcj02_is_wgs84(
        (lon, lat) in prop_oneof![(-180.0..72.0f64, -90.0..90.0f64), (138.0..180.0f64, -90.0..90.0f64), (-180.0..180.0f64, -90.0..0.8f64)]
    ) {
        prop_assert_eq!(wgs84_to_gcj02(lon, lat), (lon, lat));
        prop_assert_eq!(gcj02_to_wgs84(lon, lat), (lon, lat));
    }

    #[test]
    fn a_local_frame_gives_back_the_degrees_it_was_given(
        lon0 in -180.0..180.0f64, lat0 in -85.0..85.0f64,
        dlon in -0.05..0.05f64, dlat in -0.05..0.05f64,
    ) {
        let f = LocalFrame::at(lon0, lat0);
        let p = Coord { x: lon0 + dlon, y: lat0 + dlat };
        let back = f.to_degrees(f.to_metres(p));
        prop_assert!((back.x - p.x).abs() < 1e-9 && (back.y - p.y).abs() < 1e-9, "{p:?} {back:?}");
    }

    #[test]
    fn the_ring_check_never_panics_on_any_ring(
        ring in prop::collection::vec((any_number(), any_number()), 0..8)
    ) {
        let ring: Vec<Coord<f64>> = ring.into_iter().map(|(x, y)| Coord { x, y }).collect();
        if let Some((i, j)) = ring_self_intersection(&ring) {
            prop_assert!(i < j && j + 1 < ring.len());
        }
    }
}
