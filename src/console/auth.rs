//! Who is using the console: the session cookie (the same sessions as
//! `POST /api/v1/session`), and the checks every state change passes: a CSRF
//! token tied to the session, and an `Origin` from this server.

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::http::header;
use actix_web::{HttpRequest, web};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::{Principal, SessionToken};
use crate::routes::client_address;
use crate::service::authz;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "keyport_session";

/// A signed-in person, and the session behind them.
pub struct Visitor {
    pub principal: Principal,
    pub session: SessionToken,
    pub csrf: String,
}

/// The visitor behind the session cookie, if it names a live session.
pub async fn visitor(req: &HttpRequest, state: &web::Data<AppState>) -> Option<Visitor> {
    let cookie = req.cookie(SESSION_COOKIE)?;
    let session = SessionToken::parse(cookie.value()).ok()?;
    let principal = authz::session(&state.service, &session, client_address(req))
        .await
        .ok()?;
    Some(Visitor {
        csrf: csrf_token(&session),
        principal,
        session,
    })
}

/// The session cookie: the browser sends it to the console only, never lets
/// scripts read it, and never on a request started by another site.
pub fn session_cookie(token: &SessionToken, max_age_seconds: i64, tls: bool) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, token.expose().to_owned())
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(tls)
        .max_age(CookieDuration::seconds(max_age_seconds))
        .finish()
}

/// A cookie that removes the session cookie.
pub fn removal_cookie(tls: bool) -> Cookie<'static> {
    let mut cookie = session_cookie(&SessionToken::generate(), 0, tls);
    cookie.make_removal();
    cookie
}

/// The CSRF token of a session: derived from the session token, so only a
/// page this server rendered for that session can carry it.
pub fn csrf_token(session: &SessionToken) -> String {
    let digest = Sha256::new()
        .chain_update(b"keyport console csrf\0")
        .chain_update(session.expose().as_bytes())
        .finalize();
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Whether a state-changing request may proceed: its CSRF field matches the
/// session's, and it came from a page of this server (`Origin`, or
/// `Referer` when a browser sends no Origin).
pub fn state_change_allowed(req: &HttpRequest, visitor_csrf: &str, presented: &str) -> bool {
    let token_ok: bool = visitor_csrf.as_bytes().ct_eq(presented.as_bytes()).into();
    token_ok && same_origin(req)
}

/// The request's `Origin` (or `Referer`) names the host it was sent to.
pub fn same_origin(req: &HttpRequest) -> bool {
    let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let source = req
        .headers()
        .get(header::ORIGIN)
        .or_else(|| req.headers().get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(source) = source else {
        return false;
    };
    let Some((_, rest)) = source.split_once("://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    authority.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn the_csrf_token_belongs_to_one_session() {
        let a = SessionToken::generate();
        let b = SessionToken::generate();
        assert_eq!(csrf_token(&a), csrf_token(&a));
        assert_ne!(csrf_token(&a), csrf_token(&b));
        assert_eq!(csrf_token(&a).len(), 32);
    }

    #[test]
    fn only_requests_from_this_host_change_state() {
        let ok = TestRequest::post()
            .insert_header(("host", "127.0.0.1:8080"))
            .insert_header(("origin", "http://127.0.0.1:8080"))
            .to_http_request();
        assert!(state_change_allowed(&ok, "abc", "abc"));
        assert!(!state_change_allowed(&ok, "abc", "abd"));
        let foreign = TestRequest::post()
            .insert_header(("host", "127.0.0.1:8080"))
            .insert_header(("origin", "https://evil.example"))
            .to_http_request();
        assert!(!state_change_allowed(&foreign, "abc", "abc"));
        let by_referer = TestRequest::post()
            .insert_header(("host", "127.0.0.1:8080"))
            .insert_header(("referer", "http://127.0.0.1:8080/console/keys"))
            .to_http_request();
        assert!(state_change_allowed(&by_referer, "abc", "abc"));
        let neither = TestRequest::post()
            .insert_header(("host", "127.0.0.1:8080"))
            .to_http_request();
        assert!(!state_change_allowed(&neither, "abc", "abc"));
    }
}
