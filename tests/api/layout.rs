//! Layout export and revisions.

use kerbside::domain::layout::parse_layouts;
use serde_json::Value;

use crate::helpers::{geodata_dir, spawn_app};

fn shipped() -> Value {
    let text = std::fs::read_to_string(geodata_dir().join("qingfeng-road.geojson")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn export_gives_back_exactly_the_imported_features() {
    let app = spawn_app();
    let exported = app.get("/v1/roads/qingfeng-road/layout").json();
    assert_eq!(exported["type"], "FeatureCollection");
    assert_eq!(exported["revision"], 1);
    assert_eq!(exported["features"], shipped()["features"]);
}

#[test]
fn an_export_imports_again_to_the_same_layout() {
    let app = spawn_app();
    let exported: geojson::FeatureCollection =
        serde_json::from_str(&app.get("/v1/roads/qingfeng-road/layout").body).unwrap();
    let again = parse_layouts(&exported).expect("the export is a valid layout");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].bays.len(), 136);
    assert_eq!(again[0].barriers.len(), 90);
    assert_eq!(again[0].to_feature_collection().features, exported.features);
}

#[test]
fn past_revisions_can_be_asked_for_and_missing_ones_are_404() {
    let app = spawn_app();
    let one = app.get("/v1/roads/qingfeng-road/layout?revision=1").json();
    assert_eq!(one["revision"], 1);
    assert_eq!(one["features"], shipped()["features"]);
    app.get("/v1/roads/qingfeng-road/layout?revision=2")
        .problem(404);
}

#[test]
fn revisions_list_the_import_as_revision_one() {
    let app = spawn_app();
    let r = app.get("/v1/roads/qingfeng-road/layout/revisions").json();
    let revs = r["revisions"].as_array().unwrap();
    assert_eq!(revs.len(), 1);
    assert_eq!(revs[0]["revision"], 1);
    assert_eq!(revs[0]["bays"], 136);
    assert_eq!(revs[0]["barriers"], 90);
    assert_eq!(revs[0]["created_at"], "2026-11-27T02:00:00Z");
    assert!(
        revs[0]["created_by"]
            .as_str()
            .unwrap()
            .contains("qingfeng-road.geojson")
    );
}
