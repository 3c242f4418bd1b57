use actix_web::App;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

use crate::error::Problem;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "partner-gateway",
        // Pinned: the API's version, not the crate's, so releases do not churn the document.
        version = "1",
        description = "Update a customer's qualification in Microsoft Partner Center (Education, \
GovernmentCommunityCloud, StateOwnedEntity) and follow the asynchronous vetting, without handling \
Partner Center tokens, GUID headers or its response shapes. Errors are RFC 9457 problem documents \
carrying the correlation ID.",
        contact(name = "partner-gateway maintainers"),
        license(name = "Proprietary", identifier = "LicenseRef-Proprietary"),
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth),
    tags(
        (name = "qualifications", description = "Request a qualification and follow its vetting"),
        (name = "validation codes", description = "The partner's GovernmentCommunityCloud validation codes"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".into());
        scheme.description = Some(
            "An access token from the configured identity provider (in sandbox mode: POST /sandbox/caller-token)."
                .into(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The OpenAPI document, collected from the same route registration the server uses.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(super::api)
        .split_for_parts()
        .1
}
