use actix_web::{App, HttpResponse, web};
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
carrying the correlation ID; branch on their `type`.\n\n\
A method a path does not take is answered 405 with `Allow`; `HEAD` is served wherever `GET` is, and \
`OPTIONS` answers 204 with `Allow`. A token in the URL (`access_token=`) is refused with 400 on \
every path.",
        contact(name = "partner-gateway maintainers"),
        license(name = "Proprietary", identifier = "LicenseRef-Proprietary"),
    ),
    components(schemas(Problem, crate::webhooks::Envelope)),
    modifiers(&BearerAuth, &Webhooks),
    tags(
        (name = "qualifications", description = "Request a qualification and follow its vetting"),
        (name = "qualification requests", description = "The gateway's record of every qualification request, with its status timeline, kept up to date by the vetting watch"),
        (name = "webhooks", description = "Signed notifications (Standard Webhooks) when vetting ends: subscribe, inspect deliveries, redeliver"),
        (name = "validation codes", description = "The partner's GovernmentCommunityCloud validation codes"),
        (name = "operations", description = "Liveness and readiness probes; no token needed"),
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

/// What the gateway sends to subscribed callback URLs (OpenAPI 3.1 `webhooks`).
struct Webhooks;

impl Modify for Webhooks {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let header = |name: &str, description: &str| {
            serde_json::json!({"name": name, "in": "header", "required": true,
                "schema": {"type": "string"}, "description": description})
        };
        let parameters = [
            header(
                "webhook-id",
                "The message's ID (`msg_…`): the same on every attempt; de-duplicate on it.",
            ),
            header(
                "webhook-timestamp",
                "Unix seconds when this attempt was signed; refuse one more than 5 minutes off.",
            ),
            header(
                "webhook-signature",
                "`v1,<base64 HMAC-SHA256>` of `{webhook-id}.{webhook-timestamp}.{raw body}`, keyed with the bytes of the subscription's `whsec_` secret (base64 after the prefix); space-separated when several.",
            ),
        ];
        let mut webhooks = serde_json::Map::new();
        for (event, summary) in [
            (
                "qualification.approved",
                "Partner Center approved a qualification request",
            ),
            (
                "qualification.denied",
                "Partner Center denied a qualification request (its reason in vettingReason)",
            ),
            (
                "qualification.expired-watch",
                "A request was still InReview after watch.max_days; the gateway stopped following it",
            ),
        ] {
            webhooks.insert(event.to_owned(), serde_json::json!({"post": {
                "tags": ["webhooks"],
                "summary": summary,
                "description": "Sent to each subscription of the requesting app that asked for this event, at least once: retried with exponential backoff for up to 24 hours while the receiver does not answer 2xx within 10 s (redirects are not followed), then dead-lettered. Verify the signature over the raw body before parsing it.",
                "operationId": event,
                "parameters": parameters,
                "requestBody": {"required": true, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/QualificationEvent"}}}},
                "responses": {
                    "2XX": {"description": "Received; the delivery is done"},
                    "default": {"description": "Anything else, or no answer in time: delivered again later"}
                }
            }}));
        }
        openapi.webhooks = serde_json::from_value(serde_json::Value::Object(webhooks)).ok();
    }
}

/// The committed OpenAPI document (`cargo run -- openapi`).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    served_document(false)
}

/// Where the document is served, and where Swagger UI fetches it from.
pub const OPENAPI_JSON_PATH: &str = "/openapi.json";

/// What `/openapi.json` answers, serialised once at start: the document is 160 kB, the same for
/// every request, and as a value several times that per copy.
pub struct OpenApiJson(web::Bytes);

impl OpenApiJson {
    pub fn new(document: &utoipa::openapi::OpenApi) -> serde_json::Result<Self> {
        Ok(Self(serde_json::to_vec(document)?.into()))
    }
}

pub async fn serve_openapi_json(json: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(mime::APPLICATION_JSON)
        .body(json.0.clone())
}

/// The document `/openapi.json` serves: the operations collected from the same route
/// registration the server uses, plus the sandbox's own in sandbox mode, then the shared
/// response conventions, once, over all of them.
pub fn served_document(sandbox: bool) -> utoipa::openapi::OpenApi {
    let mut document = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(|config| super::api(config))
        .split_for_parts()
        .1;
    if sandbox {
        document.merge(crate::sandbox::Sandbox::openapi());
    }
    apply_response_conventions(&mut document);
    document
}

/// What every documented answer shares, stated once rather than on each annotation: the
/// `X-Correlation-ID` header; on the token-guarded operations `Retry-After` where waiting
/// helps, `WWW-Authenticate` on credential failures, `Idempotent-Replayed` on what a replay can
/// answer, and a `default` problem for the rarer statuses Partner Center can pass on; and an
/// example problem for each error status.
fn apply_response_conventions(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};

    let correlation_header = HeaderBuilder::new()
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
        ))
        .description(Some(
            "The request's correlation ID: the caller's own GUID if it sent one, else a new one. Quote it when reporting a problem.",
        ))
        .build();
    let retry_after_header = HeaderBuilder::new()
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
        ))
        .description(Some(
            "Seconds to wait before trying again (on 502, when Partner Center said so).",
        ))
        .build();
    let string_header = |description: &str| {
        HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .description(Some(description))
            .build()
    };
    let challenge_header = string_header(
        "The RFC 6750 challenge, e.g. `Bearer realm=\"partner-gateway\", error=\"invalid_token\", error_description=\"token expired\"`.",
    );
    let replayed_header = string_header(
        "`true`, present only when this is the stored answer to an earlier request with the same Idempotency-Key.",
    );

    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let needs_token = operation.security.is_some();
            let parameters: Vec<_> = operation
                .parameters
                .iter()
                .flatten()
                .filter_map(|parameter| match parameter {
                    RefOr::T(parameter) => Some(parameter),
                    RefOr::Ref(_) => None,
                })
                .collect();
            let takes_idempotency_key = parameters
                .iter()
                .any(|parameter| parameter.name == crate::domain::IDEMPOTENCY_KEY_HEADER);
            let has_path_parameters = parameters
                .iter()
                .any(|parameter| parameter.parameter_in == ParameterIn::Path);
            let responses = &mut operation.responses.responses;
            if needs_token && !responses.contains_key("default") {
                let default = utoipa::openapi::ResponseBuilder::new()
                    .description("Any other error Partner Center passes on, as a problem document")
                    .content(
                        PROBLEM_JSON,
                        utoipa::openapi::ContentBuilder::new()
                            .schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
                            .build(),
                    )
                    .build();
                responses.insert("default".into(), RefOr::T(default));
            }
            for (status, response) in responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                response.headers.insert(
                    "X-Correlation-ID".into(),
                    RefOr::T(correlation_header.clone()),
                );
                let mut add_header = |name: &str, header: &utoipa::openapi::header::Header| {
                    response
                        .headers
                        .insert(name.into(), RefOr::T(header.clone()));
                };
                if needs_token && matches!(status.as_str(), "429" | "502" | "503") {
                    add_header("Retry-After", &retry_after_header);
                }
                if needs_token && matches!(status.as_str(), "400" | "401" | "403") {
                    add_header("WWW-Authenticate", &challenge_header);
                }
                // A replay answers what was stored: the 202 or Partner Center's refusal.
                if takes_idempotency_key
                    && matches!(
                        status.as_str(),
                        "202" | "403" | "404" | "409" | "422" | "default"
                    )
                {
                    add_header("Idempotent-Replayed", &replayed_header);
                }
                if let Some(RefOr::T(content)) = response.content.get_mut(PROBLEM_JSON)
                    && content.example.is_none()
                    && content.examples.is_empty()
                {
                    content.example = Some(example_problem(status, has_path_parameters));
                }
            }
        }
    }
}

const PROBLEM_JSON: &str = "application/problem+json";

const CUSTOMER_ID_EXAMPLE_FAULT: &str =
    "must be the customer's tenant ID as a GUID, e.g. 7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745";

/// An example of what `status` looks like; a 400 is a bad customer ID where the path takes one,
/// else the only 400 left, malformed credentials.
fn example_problem(status: &str, has_path_parameters: bool) -> serde_json::Value {
    let (code, slug, title, detail) = match status {
        "400" if has_path_parameters => (
            400,
            "invalid-request",
            "The request is invalid",
            CUSTOMER_ID_EXAMPLE_FAULT,
        ),
        "400" => (
            400,
            "invalid-auth-request",
            "The request's credentials are malformed",
            "The request's credentials are malformed: more than one Authorization header.",
        ),
        "401" => (
            401,
            "invalid-token",
            "The access token was rejected",
            "The access token was rejected: token expired.",
        ),
        "403" => (
            403,
            "insufficient-scope",
            "The caller may not do this",
            "This operation needs one of these roles or scopes: Qualifications.ReadWrite.",
        ),
        "404" => (
            404,
            "upstream-rejected",
            "Partner Center refused the request",
            "Customer not found",
        ),
        "409" => (
            409,
            "upstream-rejected",
            "Partner Center refused the request",
            "The customer already has this qualification.",
        ),
        "413" => (
            413,
            "payload-too-large",
            "The request body is too large",
            "The request body must not exceed 16384 bytes.",
        ),
        "415" => (
            415,
            "unsupported-media-type",
            "The request body must be JSON",
            "Send the body with Content-Type: application/json.",
        ),
        "422" => (
            422,
            "upstream-rejected",
            "Partner Center refused the request",
            "The validation code is not valid for this partner.",
        ),
        "429" => (
            429,
            "upstream-throttled",
            "Partner Center is throttling requests",
            "Partner Center asks to wait 30 seconds before trying again.",
        ),
        "502" => (
            502,
            "upstream-error",
            "Partner Center failed",
            "Partner Center answered 500 Internal Server Error.",
        ),
        "503" => (
            503,
            "partner-token-unavailable",
            "The gateway cannot sign in to Partner Center",
            "The gateway could not obtain a Partner Center access token; operators have been told why in the logs.",
        ),
        "504" => (
            504,
            "upstream-timeout",
            "Partner Center did not answer in time",
            "Partner Center did not answer within the gateway's timeout.",
        ),
        _ => (
            410,
            "upstream-rejected",
            "Partner Center refused the request",
            "Partner Center answered 410 Gone.",
        ),
    };
    let mut example = serde_json::json!({
        "type": format!("urn:partner-gateway:problem:{slug}"),
        "title": title,
        "status": code,
        "detail": detail,
        "correlationId": "0f8fad5b-d9cb-469f-a165-70867728950e",
    });
    if slug == "invalid-request" {
        example["field"] = "customerId".into();
        example["errors"] =
            serde_json::json!([{"field": "customerId", "message": CUSTOMER_ID_EXAMPLE_FAULT}]);
    } else if code == 400 {
        example["field"] = "Authorization".into();
    }
    if slug.starts_with("upstream") {
        example["requestId"] = "3b6a4c1e-0d2f-4a51-9c8e-2f1d7b6a5c40".into();
    }
    example
}
