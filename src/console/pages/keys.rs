//! The key list, and what its rows and the create form do.

use super::*;

#[derive(serde::Deserialize, Default)]
pub struct KeysQuery {
    owner: Option<String>,
    status: Option<String>,
    sort: Option<String>,
    /// Part of a name, client ID or owner's email.
    q: Option<String>,
    /// Which page of [`KEYS_PER_PAGE`] keys, from 1; anything else is the
    /// first page, and one past the last is the last.
    page: Option<String>,
}

/// Rows on one page of the key list: a company with a thousand keys gets
/// twenty pages instead of one page of several megabytes.
const KEYS_PER_PAGE: usize = 50;

fn form_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn keys_page(
    state: &State,
    visitor: &Visitor,
    query: &KeysQuery,
    flash: Option<String>,
    create_error: Option<PageError>,
    created: Option<CreatedView>,
) -> (StatusCode, KeysPage) {
    let mine = query.owner.as_deref() == Some("me") || !is_admin(visitor);
    let status = query
        .status
        .as_deref()
        .filter(|s| STATUS_OPTIONS.iter().any(|(value, _)| value == s))
        .unwrap_or("all")
        .to_owned();
    let sort = match query.sort.as_deref() {
        Some("last_used") => "last_used",
        _ => "created",
    }
    .to_owned();
    let at = now();
    let (keys, may_manage, error) =
        match key_service::list_keys(&state.service, &visitor.principal, KeyListing::All).await {
            Ok(keys) => (keys, true, None),
            Err(ServiceError::InsufficientScope(_)) => (Vec::new(), false, None),
            Err(err) => {
                // The page still shows, with the refusal in words; a server
                // failure's cause goes to the log.
                service_status(&err);
                (Vec::new(), true, Some(PageError::from(&err)))
            }
        };
    let own_id = visitor.principal.user_id().unwrap_or_default().to_owned();
    let search = query
        .q
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .chars()
        .take(100)
        .collect::<String>();
    let needle = search.to_lowercase();
    let mut keys: Vec<KeyView> = keys
        .into_iter()
        .filter(|k| !mine || k.owner_id == own_id)
        .filter(|k| status == "all" || k.status.as_str() == status)
        .map(|k| KeyView::of(k, &own_id, at))
        .filter(|k| needle.is_empty() || k.search_text.contains(&needle))
        .collect();
    KeyView::order(&mut keys, sort == "last_used");
    let asked = query.page.as_deref().and_then(|p| p.trim().parse().ok());
    let pages = KeyPages::of(keys.len(), asked, KEYS_PER_PAGE, |page| {
        keys_href(mine, &status, &sort, &search, page)
    });
    let mut keys: Vec<KeyView> = keys.drain(pages.shown.clone()).collect();
    // The sparklines of the keys shown: a failure to read usage leaves them
    // out, the list stays.
    let week = Period::Week;
    let shown: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
    let usage = match crate::service::key_usage::UsageRange::parse(
        Some(week.from(at)),
        Some(at),
        Some(week.granularity()),
        at,
    ) {
        Ok(range) if may_manage => crate::service::key_usage::usage_by_key(
            &state.service,
            &visitor.principal,
            range,
            Some(&shown),
        )
        .await
        .unwrap_or_default(),
        _ => Default::default(),
    };
    for key in &mut keys {
        let buckets = usage
            .get(&key.id)
            .map(|s| s.buckets.as_slice())
            .unwrap_or(&[]);
        key.sparkline = Some(Sparkline::of(buckets, at));
    }
    let status_code = if error.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let today = chrono::Utc::now().date_naive();
    let tomorrow = today + chrono::Days::new(1);
    // Keys expire at most ten years out (key_service::MAX_KEY_LIFETIME).
    let latest = today + chrono::Days::new(key_service::MAX_KEY_LIFETIME.as_secs() / 86_400 - 1);
    (
        status_code,
        KeysPage {
            nav: nav(state, visitor, if mine { "mine" } else { "keys" }).await,
            heading: if mine { "My keys" } else { "API Keys" },
            flash,
            error,
            create_error,
            mine,
            may_manage,
            keys,
            pages,
            status,
            status_options: STATUS_OPTIONS,
            sort,
            permissions: offered_permissions(visitor.principal.scopes.iter()),
            max_ttl: state.service.settings.tokens.max_ttl.as_secs(),
            tomorrow: tomorrow.format("%Y-%m-%d").to_string(),
            latest: latest.format("%Y-%m-%d").to_string(),
            form_id: form_id(),
            created,
            sigv4_region: state.service.settings.sigv4.region.clone(),
            sigv4_service: state.service.settings.sigv4.service.clone(),
            issuer: state.service.settings.tokens.issuer.clone(),
            search,
        },
    )
}

/// The key list's address with these filters, on `page` (the defaults
/// left out, so the first page of the plain list is `/console/keys`).
fn keys_href(mine: bool, status: &str, sort: &str, search: &str, page: usize) -> String {
    let page = page.to_string();
    let params: Vec<(&str, &str)> = [
        ("owner", mine.then_some("me")),
        ("status", (status != "all").then_some(status)),
        ("sort", (sort != "created").then_some(sort)),
        ("q", (!search.is_empty()).then_some(search)),
        ("page", (page != "1").then_some(page.as_str())),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, value?)))
    .collect();
    if params.is_empty() {
        return "/console/keys".to_owned();
    }
    // As the audit page's links: the same encoding as the filter form's.
    format!(
        "/console/keys?{}",
        serde_urlencoded::to_string(&params).unwrap_or_default()
    )
}

/// The permissions a person may give a key (those they hold), in the
/// console's order, each with its label and description.
fn offered_permissions<'a>(
    held: impl Iterator<Item = &'a str>,
) -> Vec<(String, &'static str, &'static str)> {
    let held: Vec<&str> = held.collect();
    let mut offered: Vec<(String, &'static str, &'static str)> = PERMISSIONS
        .iter()
        .filter(|(code, _, _)| held.contains(code))
        .map(|(code, label, description)| ((*code).to_owned(), *label, *description))
        .collect();
    for code in held {
        if !PERMISSIONS.iter().any(|(c, _, _)| *c == code) {
            offered.push((code.to_owned(), "", ""));
        }
    }
    offered
}

pub async fn keys(req: HttpRequest, state: State, query: web::Query<KeysQuery>) -> HttpResponse {
    let visitor = match signed_in(&req, &state).await {
        Ok(visitor) => visitor,
        Err(response) => return response,
    };
    let flash = read_flash(&req);
    let (status, template) = keys_page(&state, &visitor, &query, flash, None, None).await;
    shown_once(page(status, &template), &req, &state)
}

/// The key a form asks for.
struct KeyForm {
    name: String,
    scopes: String,
    expires_in: Option<u64>,
    token_ttl: Option<u64>,
    sigv4: bool,
    require_dpop: bool,
    /// The key's own rate for reports and webhooks (`600/min`).
    rate_limit: Option<crate::domain::RateLimit>,
    /// RFC 8705 `tls_client_auth`: the certificate subject, if given.
    tls_client_auth: Option<String>,
    /// RFC 8705 `self_signed_tls_client_auth`: the registered certificates,
    /// if any (PEM blocks or thumbprints).
    tls_client_certificates: Option<Vec<String>>,
}

/// The key a form asks for, or the error and the field at fault.
fn new_key_request(form: &FormFields) -> Result<KeyForm, (PageError, &'static str)> {
    let name = form
        .get("name")
        .ok_or_else(|| {
            (
                PageError::new(
                    "invalid_input",
                    "give the key a name, e.g. \"ERP nightly sync\"",
                ),
                "name",
            )
        })?
        .to_owned();
    let scopes = form.all("scope");
    if scopes.is_empty() {
        return Err((
            PageError::new("invalid_input", "pick at least one permission for the key"),
            "scope",
        ));
    }
    let preset = |days: u64| Ok(Some(days * 86_400));
    let expires_in = match form.get("expiry") {
        Some("30") => preset(30),
        Some("90") => preset(90),
        Some("365") => preset(365),
        Some("never") => Ok(None),
        Some("custom") if form.get("expires_on").is_none() => Err((
            PageError::new(
                "invalid_input",
                "pick the day the key expires, or choose one of the lengths",
            ),
            "expires_on",
        )),
        Some("custom") | None => custom_expiry(form),
        Some(_) => Err((
            PageError::new(
                "invalid_input",
                "choose how long the key lasts: 30, 90 or 365 days, a day of your own, or no expiry",
            ),
            "expiry",
        )),
    }?;
    let token_ttl = match form.get("token_ttl") {
        None => None,
        Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
            (
                PageError::new("invalid_input", "the token lifetime is a number of seconds"),
                "token_ttl",
            )
        })?),
    };
    let rate_limit = match form.get("rate_limit") {
        None => None,
        Some(raw) => Some(
            crate::domain::RateLimit::parse_cli(raw)
                .map_err(|e| (PageError::new("invalid_input", e.to_string()), "rate_limit"))?,
        ),
    };
    Ok(KeyForm {
        rate_limit,
        name,
        scopes: scopes.join(" "),
        expires_in,
        token_ttl,
        sigv4: form.get("sigv4").is_some_and(|v| v == "on" || v == "true"),
        require_dpop: form
            .get("require_dpop")
            .is_some_and(|v| v == "on" || v == "true"),
        tls_client_auth: form.get("tls_client_auth").map(str::to_owned),
        tls_client_certificates: form
            .get("tls_client_certificates")
            .map(certificate_entries)
            .filter(|entries| !entries.is_empty()),
    })
}

/// The self-signed certificates a form registers: PEM blocks as pasted, or
/// thumbprints separated by spaces or lines.
fn certificate_entries(text: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    if text.contains("-----BEGIN") {
        text.split_inclusive(END)
            .map(str::trim)
            .filter(|block| !block.is_empty())
            .map(str::to_owned)
            .collect()
    } else {
        text.split_whitespace().map(str::to_owned).collect()
    }
}

/// The expiry a form's own date asks for: none without a date.
fn custom_expiry(form: &FormFields) -> Result<Option<u64>, (PageError, &'static str)> {
    let Some(day) = form.get("expires_on") else {
        return Ok(None);
    };
    let date = NaiveDate::parse_from_str(day, "%Y-%m-%d").map_err(|_| {
        (
            PageError::new("invalid_input", "the expiry date is not a date"),
            "expires_on",
        )
    })?;
    let end: UnixTime = date
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp())
        .unwrap_or(0);
    let seconds = end - now();
    if seconds <= 0 {
        return Err((
            PageError::new("invalid_input", "the expiry date must be in the future"),
            "expires_on",
        ));
    }
    Ok(Some(seconds as u64))
}

/// A refused key creation: JSON for the page's script, else the page with
/// the error next to the form.
async fn refuse_create(
    state: &State,
    visitor: &Visitor,
    json: bool,
    error: PageError,
    field: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    if json {
        return json_error(status, &error, field);
    }
    let (_, template) = keys_page(
        state,
        visitor,
        &KeysQuery::default(),
        None,
        Some(error),
        None,
    )
    .await;
    page(status, &template)
}

pub async fn create_key(
    req: HttpRequest,
    state: State,
    console: Console,
    body: web::Bytes,
) -> HttpResponse {
    let (visitor, form) = match checked_change(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let json = wants_json(&req);
    let KeyForm {
        name,
        scopes,
        expires_in,
        token_ttl,
        sigv4,
        require_dpop,
        rate_limit,
        tls_client_auth,
        tls_client_certificates,
    } = match new_key_request(&form) {
        Ok(parts) => parts,
        Err((error, field)) => {
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            return refuse_create(&state, &visitor, json, error, Some(field), status).await;
        }
    };
    let form_id = form.get("form_id").unwrap_or("");
    if !console.first_submission(form_id) {
        let error = PageError::new(
            "already_submitted",
            "this form was already submitted: nothing was changed (reload the page to create another key)",
        );
        return refuse_create(&state, &visitor, json, error, None, StatusCode::CONFLICT).await;
    }
    let created = key_service::create_key_with(
        &state.service,
        &visitor.principal,
        NewKeyRequest {
            owner_email: None,
            name: &name,
            scopes: Some(&scopes),
            expires_in: expires_in.map(std::time::Duration::from_secs),
            token_ttl: token_ttl.map(std::time::Duration::from_secs),
            sigv4,
        },
        key_service::KeyControls {
            require_dpop: Some(require_dpop),
            rate_limit: rate_limit.map(Some),
            tls_client_auth: tls_client_auth.as_deref().map(Some),
            tls_client_certificates: tls_client_certificates.as_deref(),
            ..Default::default()
        },
    )
    .await;
    let created = match created {
        Ok(created) => created,
        Err(err) => {
            // Nothing was created: the corrected form may be sent again.
            console.release_submission(form_id);
            let field = match &err {
                ServiceError::Invalid(message) if message.contains("tls_client_auth") => {
                    Some("tls_client_auth")
                }
                ServiceError::Invalid(message) if message.contains("tls_client_certificates") => {
                    Some("tls_client_certificates")
                }
                ServiceError::Invalid(message) if message.contains("name") => Some("name"),
                ServiceError::Invalid(message) if message.contains("scope") => Some("scope"),
                ServiceError::Invalid(message) if message.contains("expir") => Some("expires_on"),
                ServiceError::Invalid(message) if message.contains("lifetime") => Some("token_ttl"),
                ServiceError::Invalid(message) if message.contains("rate") => Some("rate_limit"),
                _ => None,
            };
            let status = service_status(&err);
            return refuse_create(&state, &visitor, json, PageError::from(&err), field, status)
                .await;
        }
    };
    let view = created_view(&state, &created);
    if json {
        return HttpResponse::Created()
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .json(json!({
                "id": view.id,
                "client_id": view.client_id,
                "client_secret": view.secret,
                "webhook_signing_key": view.webhook_signing_key,
                "curl": view.curl,
                "sigv4_curl": view.sigv4_curl,
                "postman": format!("/console/keys/{}/postman.json", view.id),
                "signs_webhooks": view.signs_webhooks,
                "token_url": view.token_url,
            }));
    }
    let (_, template) = keys_page(
        &state,
        &visitor,
        &KeysQuery::default(),
        Some(format!("Key {} created.", created.key.name)),
        None,
        Some(view),
    )
    .await;
    page(StatusCode::CREATED, &template)
}

/// A key action from a row's dialog, then back to the list.
async fn key_action(
    req: HttpRequest,
    state: State,
    body: web::Bytes,
    key_id: String,
    action: KeyAction,
) -> HttpResponse {
    let (visitor, form) = match checked_change(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let principal = &visitor.principal;
    let done = match action {
        KeyAction::Revoke => key_service::revoke_key(&state.service, principal, &key_id)
            .await
            .map(|k| format!("Key {} is revoked.", k.name)),
        KeyAction::Delete => {
            key_service::delete_key(&state.service, principal, &key_id, form.get("confirm"))
                .await
                .map(|k| format!("Key {} is deleted.", k.name))
        }
        KeyAction::MarkWebhookSigning => {
            key_service::mark_webhook_signing(&state.service, principal, &key_id)
                .await
                .map(|k| format!("Key {} now signs webhooks.", k.name))
        }
        KeyAction::Disable => key_service::disable_key(&state.service, principal, &key_id)
            .await
            .map(|k| format!("Key {} is disabled: it is refused until enabled.", k.name)),
        KeyAction::Enable => key_service::enable_key(&state.service, principal, &key_id)
            .await
            .map(|k| format!("Key {} is enabled.", k.name)),
    };
    let key_page = format!("/console/keys/{key_id}");
    let back = if form.get("return_to") == Some("key") && !matches!(action, KeyAction::Delete) {
        key_page.as_str()
    } else {
        req.headers()
            .get(header::REFERER)
            .and_then(|v| v.to_str().ok())
            .filter(|r| r.contains("owner=me"))
            .map_or("/console/keys", |_| "/console/keys?owner=me")
    };
    match done {
        Ok(notice) => redirect_with(back, &notice, &state),
        Err(err) => {
            let mismatch = matches!(err, ServiceError::ConfirmationRequired { .. });
            let error = if mismatch {
                PageError::new(
                    err.code(),
                    "The name you typed is not the key's name: type its name (any case) to delete it. Nothing was deleted.",
                )
            } else {
                PageError::from(&err)
            };
            let from_key_page = (form.get("return_to") == Some("key")).then_some(key_id.as_str());
            let status = service_status(&err);
            refused_action(
                &req,
                &state,
                &visitor,
                from_key_page,
                error,
                status,
                mismatch,
            )
            .await
        }
    }
}

/// A refused key action, shown where it was asked for: on the key's page
/// (`from_key_page`, its id) or the key list. `delete_mismatch`: a delete
/// whose typed name was not the key's, whose confirmation stays open.
async fn refused_action(
    req: &HttpRequest,
    state: &State,
    visitor: &Visitor,
    from_key_page: Option<&str>,
    error: PageError,
    status: StatusCode,
    delete_mismatch: bool,
) -> HttpResponse {
    if let Some(key_id) = from_key_page {
        let refused = super::insight::Refused::Action {
            error,
            status,
            delete_mismatch,
        };
        let period = Period::parse(None);
        return super::insight::key_page_of(req, state, visitor, key_id, period, Some(refused))
            .await;
    }
    let (_, mut template) =
        keys_page(state, visitor, &KeysQuery::default(), None, None, None).await;
    template.error = Some(error);
    page(status, &template)
}

#[derive(Clone, Copy)]
enum KeyAction {
    Revoke,
    Delete,
    MarkWebhookSigning,
    Disable,
    Enable,
}

pub async fn disable_key(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    key_action(req, state, body, path.into_inner(), KeyAction::Disable).await
}

pub async fn enable_key(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    key_action(req, state, body, path.into_inner(), KeyAction::Enable).await
}

/// Rolls a key: the successor's secret is shown once, on this answer only.
pub async fn roll_key(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (visitor, form) = match checked_change(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let grace = form
        .get("grace_seconds")
        .and_then(|g| g.parse::<i64>().ok());
    match key_service::roll_key(&state.service, &visitor.principal, &path, grace).await {
        Ok(rolled) => {
            let view = created_view(&state, &rolled.new);
            let notice = format!(
                "Key {} was rolled: the new key is below; the old one keeps working until it expires.",
                rolled.old.name
            );
            let (_, template) = keys_page(
                &state,
                &visitor,
                &KeysQuery::default(),
                Some(notice),
                None,
                Some(view),
            )
            .await;
            page(StatusCode::CREATED, &template)
        }
        Err(err) => {
            let from_key_page = (form.get("return_to") == Some("key")).then_some(path.as_str());
            let (error, status) = (PageError::from(&err), service_status(&err));
            refused_action(&req, &state, &visitor, from_key_page, error, status, false).await
        }
    }
}

/// How the one-time dialog shows a new key.
fn created_view(state: &AppState, created: &key_service::CreatedKey) -> CreatedView {
    let issuer = &state.service.settings.tokens.issuer;
    CreatedView {
        curl: format!(
            "curl -u '{}:{}' -d grant_type=client_credentials {issuer}/oauth/token",
            created.key.client_id,
            created.secret.expose()
        ),
        sigv4_curl: created.key.sigv4.then(|| {
            let sigv4 = &state.service.settings.sigv4;
            crate::console::views::sigv4_curl(
                &sigv4.region,
                &sigv4.service,
                issuer,
                &created.key.client_id,
                created.secret.expose(),
            )
        }),
        id: created.key.id.clone(),
        signs_webhooks: created.key.signs_webhooks,
        token_url: format!("{issuer}/oauth/token"),
        client_id: created.key.client_id.clone(),
        secret: created.secret.expose().to_owned(),
        webhook_signing_key: created.webhook_signing_key.to_whsec(),
    }
}

pub async fn revoke_key(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    key_action(req, state, body, path.into_inner(), KeyAction::Revoke).await
}

pub async fn delete_key(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    key_action(req, state, body, path.into_inner(), KeyAction::Delete).await
}

pub async fn mark_webhook_signing(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    key_action(
        req,
        state,
        body,
        path.into_inner(),
        KeyAction::MarkWebhookSigning,
    )
    .await
}

/// This key's Postman collection: the client ID and the server filled in,
/// never the secret.
pub async fn postman(req: HttpRequest, state: State, path: web::Path<String>) -> HttpResponse {
    let visitor = match signed_in(&req, &state).await {
        Ok(visitor) => visitor,
        Err(response) => return response,
    };
    match key_service::find_key(&state.service, &visitor.principal, &path).await {
        Ok(key) => {
            // A SigV4 key gets the AWS Signature variant: its two variables
            // are the access key (filled in) and the secret.
            let document = if key.sigv4 {
                crate::postman::sigv4_collection_for_key(&state.service.settings, &key.client_id)
            } else {
                crate::postman::collection_for_key(&state.service.settings, &key.client_id)
            };
            HttpResponse::Ok()
                .insert_header((
                    header::CONTENT_DISPOSITION,
                    format!(
                        "attachment; filename=\"keyport-{}.postman_collection.json\"",
                        key.client_id
                    ),
                ))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .content_type("application/json")
                .body(
                    serde_json::to_string_pretty(&document)
                        .unwrap_or_else(|_| document.to_string()),
                )
        }
        Err(err) => HttpResponse::build(service_status(&err))
            .content_type("text/plain; charset=utf-8")
            .body(format!(
                "{} ({})",
                PageError::from(&err).message,
                err.code()
            )),
    }
}

/// Saves the key page's settings form: the same change as the API's
/// `PATCH /api/v1/keys/{id}` (one service function), with only the fields
/// that differ from the key as it is sent, so the audit row names what
/// changed.
pub async fn change_settings(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    use super::insight::{Refused, RefusedSettings, key_page_of};
    let (visitor, form) = match checked_change(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let key = match key_service::find_key(&state.service, &visitor.principal, &path).await {
        Ok(key) => key,
        Err(err) => return forbidden(&err),
    };
    let current = SettingsForm::of(&key);
    let sent = SettingsForm {
        name: form.get("name").unwrap_or("").to_owned(),
        description: form.get("description").unwrap_or("").to_owned(),
        allowed_sources: form.get("allowed_sources").unwrap_or("").to_owned(),
        rate_limit: form.get("rate_limit").unwrap_or("").to_owned(),
        require_dpop: form
            .get("require_dpop")
            .is_some_and(|v| v == "on" || v == "true"),
    };
    let period = Period::parse(None);
    let refuse = |sent: SettingsForm, error: PageError, field: &'static str, status| {
        Refused::Settings(RefusedSettings {
            form: sent,
            error,
            field,
            status,
        })
    };
    if sent.name.is_empty() {
        let error = PageError::new(
            "invalid_input",
            "Give the key a name, e.g. \"ERP nightly sync\". Nothing was changed.",
        );
        let refused = refuse(sent, error, "name", StatusCode::UNPROCESSABLE_ENTITY);
        return key_page_of(&req, &state, &visitor, &key.id, period, Some(refused)).await;
    }
    let rate_limit = if sent.rate_limit == current.rate_limit {
        None
    } else if sent.rate_limit.is_empty() {
        Some(None)
    } else {
        match crate::domain::RateLimit::parse_cli(&sent.rate_limit) {
            Ok(rate) => Some(Some(rate)),
            Err(e) => {
                let error = PageError::new(
                    "invalid_input",
                    format!("The rate is not valid: {e}. Nothing was changed."),
                );
                let refused = refuse(sent, error, "rate_limit", StatusCode::UNPROCESSABLE_ENTITY);
                return key_page_of(&req, &state, &visitor, &key.id, period, Some(refused)).await;
            }
        }
    };
    let sources: Vec<String> = sent
        .allowed_sources
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|range| !range.is_empty())
        .map(str::to_owned)
        .collect();
    let change = key_service::KeyChange {
        name: (sent.name != current.name).then_some(sent.name.as_str()),
        controls: key_service::KeyControls {
            description: (sent.description != current.description)
                .then_some(sent.description.as_str()),
            allowed_sources: (sources != key.allowed_sources).then_some(sources.as_slice()),
            rate_limit,
            require_dpop: (sent.require_dpop != current.require_dpop).then_some(sent.require_dpop),
            ..Default::default()
        },
    };
    let key_page = format!("/console/keys/{}", key.id);
    if change.name.is_none()
        && change.controls.description.is_none()
        && change.controls.allowed_sources.is_none()
        && change.controls.rate_limit.is_none()
        && change.controls.require_dpop.is_none()
    {
        return redirect_with(
            &key_page,
            "Nothing to save: the settings were already these.",
            &state,
        );
    }
    match key_service::update_key(&state.service, &visitor.principal, &key.id, change).await {
        Ok(changed) => redirect_with(
            &key_page,
            &format!("Settings of {} saved.", changed.name),
            &state,
        ),
        Err(err) => {
            let status = service_status(&err);
            let (field, error) = settings_refusal(&err);
            let refused = refuse(sent, error, field, status);
            key_page_of(&req, &state, &visitor, &key.id, period, Some(refused)).await
        }
    }
}

/// A refused settings change in a plain sentence, and the field at fault.
fn settings_refusal(err: &ServiceError) -> (&'static str, PageError) {
    let shown = PageError::from(err);
    let (field, message) = match err {
        ServiceError::Invalid(message) => {
            if let Some(rest) = message.strip_prefix("allowed_sources: ") {
                (
                    "allowed_sources",
                    format!(
                        "An allowed address is not valid: {rest}. Write one range per line, \
                         e.g. 203.0.113.0/24 or 2001:db8::/32."
                    ),
                )
            } else if message.contains("name") {
                ("name", capitalised(&shown.message))
            } else if message.contains("description") {
                ("description", capitalised(&shown.message))
            } else if message.contains("rate") {
                ("rate_limit", capitalised(&shown.message))
            } else {
                ("", capitalised(&shown.message))
            }
        }
        _ if shown.message.contains("rate") => ("rate_limit", capitalised(&shown.message)),
        _ => ("", capitalised(&shown.message)),
    };
    let message = if message.ends_with('.') {
        format!("{message} Nothing was changed.")
    } else {
        format!("{message}. Nothing was changed.")
    };
    (field, PageError::new(&shown.code, message))
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
