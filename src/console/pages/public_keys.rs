//! A key's public keys for `private_key_jwt` (RFC 7523): list, add a JWK,
//! remove one. The same service functions as
//! `/api/v1/keys/{id}/public-keys`, so the same checks (`keys:manage`,
//! members their own keys, adding by the owner only, the last way in kept)
//! and audit rows. The add form is shown to the key's owner only.

use super::*;
use crate::console::views::{PublicKeyView, PublicKeysPage};
use crate::service::public_keys;

async fn public_keys_page(
    state: &State,
    visitor: &Visitor,
    key: &str,
    flash: Option<String>,
    error: Option<PageError>,
) -> Result<PublicKeysPage, ServiceError> {
    let at = now();
    let found = key_service::find_key(&state.service, &visitor.principal, key).await?;
    let listed = public_keys::list_public_keys(&state.service, &visitor.principal, key).await?;
    Ok(PublicKeysPage {
        nav: nav(state, visitor, "keys").await,
        flash,
        error,
        key_id: found.id,
        key_name: found.name,
        client_id: found.client_id,
        secret_enabled: found.secret_enabled,
        active: found.status == key_service::KeyStatus::Active,
        owner_is_me: visitor.principal.user_id() == Some(found.owner_id.as_str()),
        token_endpoint: format!("{}/oauth/token", state.service.settings.tokens.issuer),
        public_keys: listed
            .into_iter()
            .map(|k| PublicKeyView {
                added: When::at(k.created_at, at),
                thumbprint: k.thumbprint,
                kid: k.kid.unwrap_or_default(),
                alg: k.alg,
            })
            .collect(),
    })
}

pub async fn key_public_keys(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
) -> HttpResponse {
    let visitor = match signed_in(&req, &state).await {
        Ok(visitor) => visitor,
        Err(response) => return response,
    };
    match public_keys_page(&state, &visitor, &path, read_flash(&req), None).await {
        Ok(template) => shown_once(page(StatusCode::OK, &template), &req, &state),
        Err(err) => forbidden(&err),
    }
}

/// The page again with `err` shown, after a refused change.
async fn public_keys_error(
    state: &State,
    visitor: &Visitor,
    key: &str,
    err: ServiceError,
) -> HttpResponse {
    match public_keys_page(state, visitor, key, None, Some(PageError::from(&err))).await {
        Ok(template) => page(service_status(&err), &template),
        Err(err) => forbidden(&err),
    }
}

pub async fn add_public_key(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (visitor, form) = match checked_change(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let jwk = match serde_json::from_str::<serde_json::Value>(form.get("jwk").unwrap_or("")) {
        Ok(jwk) => jwk,
        Err(_) => {
            let err = ServiceError::Invalid(
                "paste the public key as a JWK: a JSON object such as {\"kty\": \"EC\", \"crv\": \"P-256\", \"x\": …, \"y\": …}".to_owned(),
            );
            return public_keys_error(&state, &visitor, &path, err).await;
        }
    };
    match public_keys::add_public_key(&state.service, &visitor.principal, &path, &jwk).await {
        Ok(added) => redirect_with(
            &format!("/console/keys/{}/public-keys", path.as_str()),
            &format!(
                "Public key {} added: assertions signed with it authenticate this key.",
                added.thumbprint
            ),
            &state,
        ),
        Err(err) => public_keys_error(&state, &visitor, &path, err).await,
    }
}

pub async fn remove_public_key(
    req: HttpRequest,
    state: State,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (visitor, _) = match checked_change(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let (key, thumbprint) = path.into_inner();
    match public_keys::remove_public_key(&state.service, &visitor.principal, &key, &thumbprint)
        .await
    {
        Ok(removed) => redirect_with(
            &format!("/console/keys/{key}/public-keys"),
            &format!(
                "Public key {} removed: assertions signed with it are refused from now on.",
                removed.thumbprint
            ),
            &state,
        ),
        Err(err) => public_keys_error(&state, &visitor, &key, err).await,
    }
}
