//! HTTP routes, one module per area, and the pieces they share.

pub mod bearer;
mod body;
mod caller;
mod client_address;
pub mod client_certificate;
mod doc;
pub mod dpop;
pub mod error;
mod health;
mod keys;
mod oauth;
pub mod observe;
mod openapi;
mod postman;
mod public_keys;
mod rate_limit;
mod records;
mod session;
mod signed_body;
mod token_request;
mod trusted_issuers;
mod usage;
mod users;
mod webhook_endpoints;
mod wellknown;
mod whoami;

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::domain::redact_credentials;
use error::ApiError;

pub use crate::state::AppState;
pub use bearer::{BearerError, BearerToken, bearer_value};
pub use body::BodyError;
pub use caller::{Caller, dpop_nonce_header};
pub use client_address::client_address;
pub use dpop::DpopToken;
pub use openapi::api_doc;
pub use signed_body::buffer_signed_body;
pub use token_request::{
    ClientAssertion, ClientCredentials, JWT_BEARER_ASSERTION, SecretCredentials, TokenQuery,
    TokenRequest, parse_basic_authorization, parse_token_query, parse_token_request,
};

/// One operation the app serves. [`ROUTES`] is the registration itself:
/// [`configure`] registers exactly these, and `GET /openapi.json` must
/// document exactly these (`tests/api/openapi.rs` checks).
pub struct RouteSpec {
    /// The path template, in actix and OpenAPI syntax alike (`{id}`).
    pub path: &'static str,
    pub method: Method,
    /// Attaches the handler to a route already guarded by `method`.
    handler: fn(actix_web::Route) -> actix_web::Route,
}

const fn route(
    path: &'static str,
    method: Method,
    handler: fn(actix_web::Route) -> actix_web::Route,
) -> RouteSpec {
    RouteSpec {
        path,
        method,
        handler,
    }
}

/// Every operation, in registration order (a path's methods share one resource).
pub static ROUTES: &[RouteSpec] = &[
    route("/healthz", Method::GET, |r| r.to(health::healthz)),
    route("/metrics", Method::GET, |r| r.to(observe::metrics)),
    route("/readyz", Method::GET, |r| r.to(health::readyz)),
    route("/openapi.json", Method::GET, |r| r.to(openapi::document)),
    route("/oauth/token", Method::POST, |r| r.to(oauth::token)),
    route("/oauth/introspect", Method::POST, |r| {
        r.to(oauth::introspect)
    }),
    route("/oauth/revoke", Method::POST, |r| r.to(oauth::revoke)),
    route(
        "/.well-known/oauth-authorization-server",
        Method::GET,
        |r| r.to(wellknown::metadata),
    ),
    route("/.well-known/jwks.json", Method::GET, |r| {
        r.to(wellknown::jwks)
    }),
    route("/api/v1/reports/{collection}", Method::GET, |r| {
        r.to(records::pull)
    }),
    route(
        "/api/v1/reports/{collection}/{record_id}",
        Method::GET,
        |r| r.to(records::pull_one),
    ),
    route("/api/v1/webhooks/{collection}", Method::POST, |r| {
        r.to(records::push)
    }),
    route("/api/v1/whoami", Method::GET, |r| r.to(whoami::whoami)),
    route("/api/v1/postman/collection.json", Method::GET, |r| {
        r.to(postman::collection)
    }),
    route("/api/v1/session", Method::POST, |r| r.to(session::sign_in)),
    route("/api/v1/session", Method::DELETE, |r| {
        r.to(session::sign_out)
    }),
    route("/api/v1/session/password", Method::POST, |r| {
        r.to(session::change_password)
    }),
    route("/api/v1/password", Method::POST, |r| {
        r.to(session::set_password)
    }),
    route("/api/v1/keys", Method::GET, |r| r.to(keys::list)),
    route("/api/v1/keys", Method::POST, |r| r.to(keys::create)),
    route("/api/v1/keys/{id}", Method::GET, |r| r.to(keys::show)),
    route("/api/v1/keys/{id}", Method::DELETE, |r| r.to(keys::delete)),
    route("/api/v1/keys/{id}", Method::PATCH, |r| r.to(keys::change)),
    route("/api/v1/keys/{id}/roll", Method::POST, |r| r.to(keys::roll)),
    route("/api/v1/keys/{id}/disable", Method::POST, |r| {
        r.to(keys::disable)
    }),
    route("/api/v1/keys/{id}/enable", Method::POST, |r| {
        r.to(keys::enable)
    }),
    route("/api/v1/keys/{id}/revoke", Method::POST, |r| {
        r.to(keys::revoke)
    }),
    route("/api/v1/keys/{id}/usage", Method::GET, |r| r.to(usage::key)),
    route("/api/v1/usage", Method::GET, |r| r.to(usage::company)),
    route("/api/v1/keys/{id}/webhook-signing", Method::POST, |r| {
        r.to(keys::mark_webhook_signing)
    }),
    route("/api/v1/keys/{id}/public-keys", Method::GET, |r| {
        r.to(public_keys::list)
    }),
    route("/api/v1/keys/{id}/public-keys", Method::POST, |r| {
        r.to(public_keys::add)
    }),
    route(
        "/api/v1/keys/{id}/public-keys/{thumbprint}",
        Method::DELETE,
        |r| r.to(public_keys::remove),
    ),
    route("/api/v1/users", Method::GET, |r| r.to(users::list)),
    route("/api/v1/users", Method::POST, |r| r.to(users::create)),
    route("/api/v1/users/{id}", Method::GET, |r| r.to(users::show)),
    route("/api/v1/users/{id}", Method::PATCH, |r| r.to(users::change)),
    route("/api/v1/users/{id}/disable", Method::POST, |r| {
        r.to(users::disable)
    }),
    route("/api/v1/users/{id}/enable", Method::POST, |r| {
        r.to(users::enable)
    }),
    route("/api/v1/users/{id}/unlock", Method::POST, |r| {
        r.to(users::unlock)
    }),
    route("/api/v1/tenant/policy", Method::PUT, |r| {
        r.to(users::set_policy)
    }),
    route("/api/v1/audit", Method::GET, |r| r.to(users::audit)),
    route("/api/v1/trusted-issuers", Method::GET, |r| {
        r.to(trusted_issuers::list)
    }),
    route("/api/v1/trusted-issuers", Method::POST, |r| {
        r.to(trusted_issuers::create)
    }),
    route("/api/v1/trusted-issuers/{id}", Method::DELETE, |r| {
        r.to(trusted_issuers::delete)
    }),
    route("/api/v1/trusted-issuers/{id}/rules", Method::POST, |r| {
        r.to(trusted_issuers::create_rule)
    }),
    route(
        "/api/v1/trusted-issuers/{id}/rules/{rule_id}",
        Method::DELETE,
        |r| r.to(trusted_issuers::delete_rule),
    ),
    route("/api/v1/webhook-endpoints", Method::GET, |r| {
        r.to(webhook_endpoints::list)
    }),
    route("/api/v1/webhook-endpoints", Method::POST, |r| {
        r.to(webhook_endpoints::create)
    }),
    route("/api/v1/webhook-endpoints/{id}", Method::GET, |r| {
        r.to(webhook_endpoints::show)
    }),
    route("/api/v1/webhook-endpoints/{id}", Method::PATCH, |r| {
        r.to(webhook_endpoints::change)
    }),
    route("/api/v1/webhook-endpoints/{id}", Method::DELETE, |r| {
        r.to(webhook_endpoints::delete)
    }),
    route("/api/v1/webhook-endpoints/{id}/test", Method::POST, |r| {
        r.to(webhook_endpoints::test)
    }),
    route(
        "/api/v1/webhook-endpoints/{id}/attempts",
        Method::GET,
        |r| r.to(webhook_endpoints::attempts),
    ),
    route(
        "/api/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/redeliver",
        Method::POST,
        |r| r.to(webhook_endpoints::redeliver),
    ),
];

/// The request's query without the parameters of a presigned SigV4 URL
/// (`X-Amz-Algorithm`, `X-Amz-Signature`, …): `Caller` reads those, and the
/// handlers parse the rest, refusing what they do not know.
pub(crate) fn query_without_signature(req: &HttpRequest) -> std::borrow::Cow<'_, str> {
    let query = req.query_string();
    if !query.contains("X-Amz-") && !query.contains("x-amz-") {
        return std::borrow::Cow::Borrowed(query);
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            !(name.len() >= 6 && name[..6].eq_ignore_ascii_case("x-amz-"))
        })
        .collect();
    std::borrow::Cow::Owned(kept.join("&"))
}

/// Registers [`ROUTES`]: one resource per path, holding that path's methods.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for path in registration_order() {
        let resource = ROUTES
            .iter()
            .filter(|spec| spec.path == path)
            .fold(endpoint(path), |resource, spec| {
                resource.route((spec.handler)(web::method(spec.method.clone())))
            });
        cfg.service(resource);
    }
}

/// The distinct paths of [`ROUTES`], fixed paths first. actix tries resources
/// in registration order, and each `{param}` pattern it passes costs a regex
/// match: with the fixed paths first, `/api/v1/whoami` no longer pays for
/// three failed pattern matches on every request. No fixed path matches a
/// pattern, so the order changes no routing decision.
fn registration_order() -> Vec<&'static str> {
    let mut paths: Vec<&'static str> = Vec::new();
    for spec in ROUTES {
        if !paths.contains(&spec.path) {
            paths.push(spec.path);
        }
    }
    paths.sort_by_key(|path| path.contains('{'));
    paths
}

/// A resource whose unsupported methods answer 405 in the documented format.
fn endpoint(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::new(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not supported on {}",
            req.method(),
            redact_credentials(req.path())
        ),
    ))
}

/// The answer for paths no route matches.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::not_found(format!(
        "no endpoint at {}",
        redact_credentials(req.path())
            .chars()
            .take(200)
            .collect::<String>()
    )))
}

#[cfg(test)]
mod tests {
    use actix_web::dev::ResourceDef;

    use super::*;

    #[test]
    fn fixed_paths_are_registered_first_and_no_pattern_would_take_one() {
        let order = registration_order();
        let first_pattern = order
            .iter()
            .position(|p| p.contains('{'))
            .expect("some routes have parameters");
        assert!(
            order[first_pattern..].iter().all(|p| p.contains('{')),
            "{order:?}"
        );
        for spec in ROUTES {
            assert_eq!(
                order.iter().filter(|p| **p == spec.path).count(),
                1,
                "{}",
                spec.path
            );
        }
        // Registering fixed paths first changes nothing only if no pattern
        // registered before them matches a fixed path.
        for fixed in order.iter().filter(|p| !p.contains('{')) {
            for pattern in &order[first_pattern..] {
                assert!(
                    !ResourceDef::new(*pattern).is_match(fixed),
                    "{pattern} also matches {fixed}"
                );
            }
        }
    }
}
