//! The planner's GIS round trip: the road's layout, taken through the
//! tools planners use (GDAL, a GeoPackage as QGIS keeps it, CGCS2000, a
//! GCJ-02 basemap), comes back as the same layout; a CRS kerbside cannot
//! read is refused by name. The files GDAL wrote are in `tests/data/gdal/`.

use std::path::PathBuf;
use std::process::Command;

use kerbside::domain::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, spawn_app};

const LAYOUT: &str = "/v1/roads/qingfeng-road/layout";

fn gdal_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/gdal")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn put(app: &TestApp, query: &str, body: &str) -> Reply {
    let planner = app.token(Role::Planner);
    app.put_as(
        &format!("{LAYOUT}{query}"),
        &planner,
        "application/geo+json",
        None,
        body,
    )
}

/// A dry run that must pass, and its answer.
fn preview(app: &TestApp, query: &str, body: &str) -> Value {
    let r = put(app, &format!("?dry_run=true{query}"), body);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn no_change() -> Value {
    json!({"added": [], "removed": [], "changed": []})
}

/// The problems of a 422 as (feature id, code, message).
fn problems(r: &Reply) -> Vec<(Option<String>, String, String)> {
    r.problem(422)["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["feature_id"].as_str().map(str::to_owned),
                e["code"].as_str().unwrap().to_owned(),
                e["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_road_through_a_geopackage_dry_runs_unchanged_and_publishes_in_the_contracts_form() {
    let app = spawn_app();
    let exported = app.get(LAYOUT).json();
    let body = gdal_file("qingfeng-road.via-gpkg.geojson");
    // As GDAL wrote it: no string ids, the id as a property, nulls around.
    let written: Value = serde_json::from_str(&body).unwrap();
    assert!(written["features"][1].get("id").is_none());
    assert_eq!(written["features"][1]["properties"]["id"], "QF-N-001");
    assert_eq!(
        written["features"][1]["properties"]["barrier_id"],
        json!(null)
    );

    let r = preview(&app, "", &body);
    assert_eq!(r["diff"], no_change());
    assert_eq!(r["warnings"], json!([]));

    // Published, it exports exactly as before: the next round trip is clean.
    let r = put(&app, "", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["revision"], 2);
    assert_eq!(app.get(LAYOUT).json()["features"], exported["features"]);
}

#[test]
fn the_road_written_by_gdal_as_rfc_7946_geojson_dry_runs_unchanged() {
    let app = spawn_app();
    let r = preview(&app, "", &gdal_file("qingfeng-road.rfc7946.geojson"));
    assert_eq!(r["diff"], no_change());
    assert_eq!(r["warnings"], json!([]));
}

#[test]
fn a_cgcs2000_layout_is_taken_as_wgs84_with_a_warning() {
    let app = spawn_app();
    let r = preview(&app, "", &gdal_file("qingfeng-road.epsg4490.geojson"));
    assert_eq!(r["diff"], no_change());
    let w = &r["warnings"][0];
    assert_eq!(w["code"], "cgcs2000_as_wgs84");
    assert_eq!(w["feature_id"], json!(null));
    assert!(w["message"].as_str().unwrap().contains("EPSG:4490"));
    assert_eq!(r["warnings"].as_array().unwrap().len(), 1);
}

#[test]
fn a_projected_layout_is_unsupported_crs_naming_it() {
    let app = spawn_app();
    for (file, name) in [
        (
            "qingfeng-road.epsg3857.geojson",
            "urn:ogc:def:crs:EPSG::3857",
        ),
        (
            "qingfeng-road.epsg4549.geojson",
            "urn:ogc:def:crs:EPSG::4549",
        ),
    ] {
        let got = problems(&put(&app, "?dry_run=true", &gdal_file(file)));
        assert_eq!(got.len(), 1, "{got:?}");
        let (feature, code, message) = &got[0];
        assert_eq!((feature, code.as_str()), (&None, "unsupported_crs"));
        assert!(message.contains(name), "{message}");
    }
    // Whatever the query says.
    let got = problems(&put(
        &app,
        "?dry_run=true&crs=gcj02",
        &gdal_file("qingfeng-road.epsg3857.geojson"),
    ));
    assert_eq!(got[0].1, "unsupported_crs");
}

#[test]
fn a_gcj02_copy_for_tracing_comes_back_unchanged_with_crs_gcj02() {
    let app = spawn_app();
    let wgs = app.get(LAYOUT).json();
    let gcj = app.get(&format!("{LAYOUT}?crs=gcj02")).json();
    assert_eq!(gcj["datum"], "gcj02");
    assert_eq!(gcj["revision"], 1);
    let (w, g) = (
        &wgs["features"][1]["geometry"]["coordinates"][0][0],
        &gcj["features"][1]["geometry"]["coordinates"][0][0],
    );
    // Amap's offset in Jiaxing: several hundred metres east.
    assert!(
        g[0].as_f64().unwrap() - w[0].as_f64().unwrap() > 0.003,
        "{w} {g}"
    );

    let body = gcj.to_string();
    let r = preview(&app, "&crs=gcj02", &body);
    assert_eq!(r["diff"], no_change());
    assert_eq!(r["warnings"], json!([]));

    // Sent as if it were WGS 84, it is refused, not moved 500 m.
    let got = problems(&put(&app, "?dry_run=true", &body));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1, "unsupported_crs");
    assert!(got[0].2.contains("?crs=gcj02"), "{}", got[0].2);

    // Published, the layout is where it was, within a millimetre.
    assert_eq!(put(&app, "?crs=gcj02", &body).status, 200);
    let r = preview(&app, "", &wgs.to_string());
    assert_eq!(r["diff"], no_change());
}

#[test]
fn a_bad_crs_parameter_is_a_400() {
    let app = spawn_app();
    let body = app.get(LAYOUT).body;
    put(&app, "?dry_run=true&crs=bd09", &body).problem(400);
    app.get(&format!("{LAYOUT}?crs=epsg3857")).problem(400);
}

#[test]
fn ids_that_disagree_are_conflicting_id_naming_both() {
    let app = spawn_app();
    let mut fc: Value = serde_json::from_str(&gdal_file("qingfeng-road.via-gpkg.geojson")).unwrap();
    // An edit in QGIS renamed the bay in one column only.
    fc["features"][1]["properties"]["id"] = json!("QF-N-901");
    let got = problems(&put(&app, "?dry_run=true", &fc.to_string()));
    assert_eq!(got.len(), 1, "{got:?}");
    let (feature, code, message) = &got[0];
    assert_eq!(
        (feature.as_deref(), code.as_str()),
        (Some("QF-N-001"), "conflicting_id")
    );
    assert!(
        message.contains("\"QF-N-001\"") && message.contains("\"QF-N-901\""),
        "{message}"
    );
}

/// Runs the machine's `ogr2ogr`; `None` when GDAL is not installed (CI
/// installs it, and there its absence fails the test).
fn ogr2ogr(args: &[&str]) -> Option<()> {
    match Command::new("ogr2ogr").args(args).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "ogr2ogr {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var_os("CI").is_none(),
                "ogr2ogr is not installed: CI needs GDAL (Debian's gdal-bin; .ci/run installs it)"
            );
            eprintln!(
                "\n*** SKIPPED: ogr2ogr is not installed (apt-get install gdal-bin); the GIS round trip through this machine's GDAL was not tried ***\n"
            );
            None
        }
        Err(e) => panic!("cannot run ogr2ogr: {e}"),
    }
}

#[test]
fn gdal_of_this_machine_round_trips_the_road() {
    let app = spawn_app();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(path("road.geojson"), app.get(LAYOUT).body).unwrap();
    let runs: [&[&str]; 4] = [
        &["-f", "GPKG", &path("road.gpkg"), &path("road.geojson")],
        &[
            "-f",
            "GeoJSON",
            &path("via-gpkg.geojson"),
            &path("road.gpkg"),
        ],
        &[
            "-f",
            "GeoJSON",
            "-lco",
            "RFC7946=YES",
            &path("rfc7946.geojson"),
            &path("road.geojson"),
        ],
        &[
            "-f",
            "GeoJSON",
            "-lco",
            "RFC7946=YES",
            &path("via-gpkg-rfc7946.geojson"),
            &path("road.gpkg"),
        ],
    ];
    for args in runs {
        if ogr2ogr(args).is_none() {
            return;
        }
    }
    for name in [
        "via-gpkg.geojson",
        "rfc7946.geojson",
        "via-gpkg-rfc7946.geojson",
    ] {
        let body = std::fs::read_to_string(path(name)).unwrap();
        let r = preview(&app, "", &body);
        assert_eq!(r["diff"], no_change(), "{name}");
        assert_eq!(r["warnings"], json!([]), "{name}");
    }
}
