//! The OpenAPI document, generated from the handlers, and the Swagger UI
//! page, served from the binary (no CDN, works offline).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

/// The kerbside REST API.
#[derive(OpenApi)]
#[openapi(
    info(title = "kerbside", description = "Kerbside parking: bays, occupancy and violations per road. \
        Errors are RFC 9457 problem+json. Times are RFC 3339; coordinates WGS 84 (lon, lat)."),
    paths(
        super::health::healthz,
        super::auth::whoami,
        super::roads::list_roads,
        super::roads::get_layout,
        super::layouts::put_layout,
        super::roads::list_revisions,
        super::roads::get_occupancy,
        super::roads::get_bays,
        super::bays::get_bay,
        super::violations::list_violations,
        super::violations::get_violation,
        super::violations::ticket,
        super::violations::dismiss,
        super::sessions::list_sessions,
        super::history::road_metrics,
        super::history::road_effect,
        super::history::road_effect_svg,
        super::metrics::metrics,
        super::public::free_spaces,
        super::public::public_roads,
        super::datex::parking_light,
        super::cds::list_zones,
        super::cds::get_zone,
        super::cds::list_spaces,
        super::cds::list_objects,
        super::cds::list_policies,
        super::cds::get_policy,
        super::cds::list_events,
        super::cds::metric_sessions,
        super::cds::metric_aggregates,
        super::devices::create_device,
        super::devices::list_devices,
        super::devices::revoke_device,
        super::quarantine::list_quarantine,
        super::stream::stream,
        super::cases::add_party,
        super::cases::list_parties,
        super::cases::open_case,
        super::cases::list_cases,
        super::cases::get_case,
        super::cases::resolve_case,
        super::cases::file_complaint,
        super::cases::get_complaint,
    ),
    modifiers(&BearerAuth),
    tags((name = "public"), (name = "roads"), (name = "bays"), (name = "violations"), (name = "devices"), (name = "operations"), (name = "live"), (name = "cases"), (name = "auth"), (name = "cds", description = "Curb Data Specification 1.1 (Open Mobility Foundation), under /cds/v1"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `/docs/` (the page) and `/openapi.json` (the document).
pub fn swagger_ui() -> SwaggerUi {
    SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", ApiDoc::openapi())
}
