//! The overview (the console's home) and a key's own page.

use super::*;
use crate::service::insights;
use crate::service::key_usage::UsageRange;

pub async fn overview(req: HttpRequest, state: State) -> HttpResponse {
    let visitor = match signed_in(&req, &state).await {
        Ok(visitor) => visitor,
        Err(response) => return response,
    };
    let flash = read_flash(&req);
    let nav = nav(&state, &visitor, "overview").await;
    let template = match insights::overview(&state.service, &visitor.principal).await {
        Ok(found) => OverviewPage::of(nav, flash, found, now()),
        Err(err) => {
            let status = service_status(&err);
            let mut template = OverviewPage::of(nav, flash, Default::default(), now());
            template.error = Some(PageError::from(&err));
            return shown_once(page(status, &template), &req, &state);
        }
    };
    shown_once(page(StatusCode::OK, &template), &req, &state)
}

#[derive(serde::Deserialize)]
pub struct KeyPageQuery {
    period: Option<String>,
}

pub async fn key_page(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    query: web::Query<KeyPageQuery>,
) -> HttpResponse {
    let visitor = match signed_in(&req, &state).await {
        Ok(visitor) => visitor,
        Err(response) => return response,
    };
    let period = Period::parse(query.period.as_deref());
    let response = key_page_of(&req, &state, &visitor, &path, period, None).await;
    shown_once(response, &req, &state)
}

/// A settings change the server refused: the form as sent, the refusal and
/// the field at fault.
pub(super) struct RefusedSettings {
    pub form: SettingsForm,
    pub error: PageError,
    pub field: &'static str,
    pub status: StatusCode,
}

/// What the server refused, shown on the key's page.
pub(super) enum Refused {
    /// A settings change: shown in its form.
    Settings(RefusedSettings),
    /// An action from the page (revoke, delete, roll, use with webhooks):
    /// shown above it; a delete whose typed name did not match keeps its
    /// confirmation open.
    Action {
        error: PageError,
        status: StatusCode,
        delete_mismatch: bool,
    },
}

/// A key's page, with what the server refused, if anything.
pub(super) async fn key_page_of(
    req: &HttpRequest,
    state: &State,
    visitor: &Visitor,
    key_id: &str,
    period: Period,
    refused: Option<Refused>,
) -> HttpResponse {
    let at = now();
    let range = match UsageRange::parse(
        Some(period.from(at)),
        Some(at),
        Some(period.granularity()),
        at,
    ) {
        Ok(range) => range,
        Err(message) => return forbidden(&ServiceError::Invalid(message)),
    };
    let details =
        match insights::key_details(&state.service, &visitor.principal, key_id, range).await {
            Ok(details) => details,
            Err(err) => return forbidden(&err),
        };
    let own_id = visitor.principal.user_id().unwrap_or_default().to_owned();
    let insights::KeyDetails {
        key,
        usage,
        rolled_from,
        own_recent_uses,
        events,
    } = details;
    // The form only where the server would take it: keys:manage, and a key
    // that is not revoked.
    let may_change = key.status != crate::service::keys::KeyStatus::Revoked
        && visitor
            .principal
            .scopes
            .contains(crate::domain::KEYS_MANAGE);
    let mut error = None;
    let mut delete_refused = false;
    let (settings, settings_error, status) = match refused {
        Some(Refused::Settings(refused)) => (
            Some(refused.form),
            Some((refused.error, refused.field)),
            refused.status,
        ),
        Some(Refused::Action {
            error: refusal,
            status,
            delete_mismatch,
        }) => {
            error = Some(refusal);
            delete_refused = delete_mismatch;
            (may_change.then(|| SettingsForm::of(&key)), None, status)
        }
        None => (
            may_change.then(|| SettingsForm::of(&key)),
            None,
            StatusCode::OK,
        ),
    };
    let template = KeyPage {
        nav: nav(
            state,
            visitor,
            if is_admin(visitor) { "keys" } else { "mine" },
        )
        .await,
        flash: read_flash(req),
        error,
        key: KeyView::of(key, &own_id, at),
        period: period.code(),
        periods: PERIODS,
        chart: Chart::of(&usage.buckets, period, at),
        refusals: KeyPage::refusals_of(&usage.total),
        addresses: usage.total.addresses.clone(),
        peak_per_minute: usage.total.peak_per_minute,
        rolled_from: rolled_from.map(|(old, uses)| (old.id, old.name, uses)),
        own_recent_uses,
        events: events.map(|(rows, names)| {
            rows.into_iter()
                .map(|e| EventView::of(e, &names, at))
                .collect()
        }),
        return_to: "key",
        settings,
        settings_error,
        delete_refused,
    };
    page(status, &template)
}
