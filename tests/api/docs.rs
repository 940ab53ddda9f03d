//! The OpenAPI document and the docs page, served from the binary.

use crate::helpers::spawn_app;

#[test]
fn openapi_lists_every_endpoint() {
    let app = spawn_app();
    let doc = app.get("/openapi.json").json();
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/healthz",
        "/v1/roads",
        "/v1/roads/{road_id}/layout",
        "/v1/roads/{road_id}/layout/revisions",
        "/v1/roads/{road_id}/occupancy",
        "/v1/roads/{road_id}/bays",
        "/v1/bays/{bay_id}",
        "/v1/roads/{road_id}/violations",
        "/v1/stream",
        "/v1/public/datex2/parking-light",
        "/cds/v1/curbs/zones",
        "/cds/v1/curbs/zones/{curb_zone_id}",
        "/cds/v1/events/events",
        "/cds/v1/metrics/sessions",
        "/cds/v1/metrics/aggregates",
        "/v1/auth/whoami",
    ] {
        assert!(paths.contains_key(p), "missing {p}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let who = &doc["components"]["schemas"]["WhoAmI"]["properties"];
    for field in ["name", "role", "expires_at"] {
        assert!(who[field].is_object(), "WhoAmI lacks {field}: {who}");
    }
    let stream = doc["paths"]["/v1/stream"]["get"]["responses"]["200"]["description"]
        .as_str()
        .unwrap();
    for event in ["`layout`", "`case`"] {
        assert!(
            stream.contains(event),
            "the stream's {event} event undocumented"
        );
    }
}

#[test]
fn the_docs_page_and_its_assets_are_served_offline() {
    let app = spawn_app();
    let page = app.get("/docs/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("swagger"), "{}", page.body);
    let bundle = app.get("/docs/swagger-ui-bundle.js");
    assert_eq!(bundle.status, 200);
    assert!(bundle.body.len() > 100_000);
}
