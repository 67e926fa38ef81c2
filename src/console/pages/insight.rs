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
        match insights::key_details(&state.service, &visitor.principal, &path, range).await {
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
    let template = KeyPage {
        nav: nav(
            &state,
            &visitor,
            if is_admin(&visitor) { "keys" } else { "mine" },
        )
        .await,
        flash: read_flash(&req),
        error: None,
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
    };
    shown_once(page(StatusCode::OK, &template), &req, &state)
}
