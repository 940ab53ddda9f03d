//! The shipped Qingfeng Road: counts, sizes and placement.

use geo::{Area, Intersects};
use kerbside::domain::layout::{BarrierKind, BayKind, EnforcedHours, Layout};
use kerbside::geodata::load_file;
use kerbside::spatial::{LocalFrame, polygon_max_distance_m};

use crate::helpers::geodata_dir;

fn qingfeng() -> Layout {
    let mut layouts =
        load_file(&geodata_dir().join("qingfeng-road.geojson")).expect("valid geodata");
    assert_eq!(layouts.len(), 1);
    layouts.remove(0)
}

#[test]
fn qingfeng_road_has_136_bays_and_90_planters() {
    let l = qingfeng();
    assert_eq!(l.road.road_id.as_str(), "qingfeng-road");
    assert_eq!(l.road.name, "庆丰路");
    assert_eq!(l.bays.len(), 136);
    assert_eq!(l.barriers.len(), 90);
    assert!(l.barriers.iter().all(|b| b.kind == BarrierKind::Planter));
}

#[test]
fn it_lies_near_jiaxing_and_is_about_600_m_long() {
    let l = qingfeng();
    let first = l.road.centre_line.0[0];
    assert!(
        (first.x - 120.78).abs() < 0.01 && (first.y - 30.76).abs() < 0.01,
        "{first:?}"
    );
    let frame = LocalFrame::at(first.x, first.y);
    let line = frame.line_to_metres(&l.road.centre_line);
    let length: f64 = line
        .lines()
        .map(|s| (s.dx().powi(2) + s.dy().powi(2)).sqrt())
        .sum();
    assert!((550.0..=650.0).contains(&length), "{length} m");
}

#[test]
fn no_bay_overlaps_another_bay_or_a_planter() {
    let l = qingfeng();
    for (i, a) in l.bays.iter().enumerate() {
        for b in &l.bays[i + 1..] {
            assert!(
                !a.polygon.intersects(&b.polygon),
                "{} meets {}",
                a.bay_id,
                b.bay_id
            );
        }
        for p in &l.barriers {
            assert!(
                !a.polygon.intersects(&p.polygon),
                "{} meets {}",
                a.bay_id,
                p.barrier_id
            );
        }
    }
}

#[test]
fn every_bay_lies_within_15_m_of_the_centre_line() {
    let l = qingfeng();
    for bay in &l.bays {
        let d = polygon_max_distance_m(&bay.polygon, &l.road.centre_line);
        assert!(
            d <= 15.0,
            "{} reaches {d:.2} m from the centre line",
            bay.bay_id
        );
    }
}

#[test]
fn bays_are_about_2_5_by_6_m_and_planters_1_5_by_0_6_m() {
    let l = qingfeng();
    let o = l.road.centre_line.0[0];
    let frame = LocalFrame::at(o.x, o.y);
    for bay in &l.bays {
        let area = frame.polygon_to_metres(&bay.polygon).unsigned_area();
        assert!(
            (14.0..=16.0).contains(&area),
            "{}: {area:.2} m²",
            bay.bay_id
        );
    }
    for p in &l.barriers {
        let area = frame.polygon_to_metres(&p.polygon).unsigned_area();
        assert!(
            (0.8..=1.0).contains(&area),
            "{}: {area:.2} m²",
            p.barrier_id
        );
    }
}

#[test]
fn bay_rules_follow_their_kind() {
    let l = qingfeng();
    let standard = l
        .bays
        .iter()
        .filter(|b| b.kind == BayKind::Standard)
        .count();
    assert!(standard > 100, "{standard} standard bays");
    for b in &l.bays {
        match b.kind {
            BayKind::Standard => {
                assert_eq!(b.max_stay_minutes, Some(120), "{}", b.bay_id);
                assert_eq!(b.enforced_hours, EnforcedHours::parse("08:00-20:00"));
            }
            BayKind::Loading => {
                assert_eq!(b.max_stay_minutes, Some(30), "{}", b.bay_id);
                assert_eq!(b.enforced_hours, EnforcedHours::parse("07:00-19:00"));
            }
            BayKind::Accessible => assert_eq!(b.max_stay_minutes, None, "{}", b.bay_id),
            other => panic!("{} is {other:?}", b.bay_id),
        }
    }
    assert!(l.bays.iter().any(|b| b.kind == BayKind::Loading));
    assert!(l.bays.iter().any(|b| b.kind == BayKind::Accessible));
}

#[test]
fn the_generator_reproduces_the_committed_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("qingfeng-road.geojson");
    let status = std::process::Command::new("python3")
        .arg(geodata_dir().join("generate.py"))
        .arg("--output")
        .arg(&out)
        .status()
        .expect("python3 runs the generator");
    assert!(status.success());
    let committed = std::fs::read(geodata_dir().join("qingfeng-road.geojson")).unwrap();
    assert!(
        std::fs::read(&out).unwrap() == committed,
        "geodata/generate.py no longer reproduces the committed file"
    );
}
