//! The OpenAPI 3.1 document of the REST API, made from the code: the router is built from the handlers'
//! `#[utoipa::path]` descriptions (`api::router`), so a route cannot exist without its description; request bodies
//! and query parameters are the handlers' own types; answers are described in `answers`. Served at
//! `/api/openapi.json`.

pub(crate) mod answers;
pub(crate) mod check;
pub(crate) mod params;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi};

use answers::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "preview",
        description = "The REST API of the preview daemon: projects, environments and their deployments, variables and secrets, databases, pull-request previews, webhooks and clusters. Every route but `/health`, `/webhooks/{project}` and this document needs `Authorization: Bearer <token>` with the token of the client config the daemon writes (`client.json` in its data directory). Every change to an environment is one deployment, answered `202 Accepted` with its record; errors are `{\"error\": {\"code\", \"message\"}}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&BearerToken),
    tags(
        (name = "projects", description = "Registered specs"),
        (name = "environments", description = "Environments and the deployments that change them"),
        (name = "deployments", description = "Deployment records, their steps and journals"),
        (name = "variables", description = "Variables and secrets (secret values are never answered)"),
        (name = "databases", description = "Environments' databases and golden snapshots"),
        (name = "previews", description = "Pull requests, their previews and webhook deliveries"),
        (name = "daemon", description = "The daemon itself: health, gateway, CA, metrics, key rotation"),
        (name = "clusters", description = "Kubernetes clusters environments may live on"),
    )
)]
pub(crate) struct ApiDoc;

/// The API token, as a bearer token, required by every operation that does not say otherwise.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The token of the client config the daemon writes (`client.json` in its data directory)",
                    ))
                    .build(),
            ),
        );
        openapi.security = Some(vec![SecurityRequirement::new(
            "token",
            Vec::<String>::new(),
        )]);
    }
}

/// The answers every authenticated operation may give besides its own.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum Refusals {
    /// Bad input: the message names the problem and the place.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// A missing or wrong token.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// A browser's session without the CSRF token for a change, or asking for a secret.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such project, environment, service, deployment or route.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The change conflicts with the state (a deployment under way, a name in use, …).
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// A body over the limit (1 MiB).
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// A failure of the daemon's own; its log has the details.
    #[response(status = 500)]
    Internal(ErrorBody),
}

/// The document as JSON, made once.
pub(crate) fn document(api: utoipa::openapi::OpenApi) -> String {
    let mut document = ApiDoc::openapi();
    document.merge(api);
    document.to_json().expect("an OpenAPI document is JSON")
}
