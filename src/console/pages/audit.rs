//! The company's audit trail (admins).

use super::*;

#[derive(serde::Deserialize, Default)]
pub struct AuditQuery {
    action: Option<String>,
    actor: Option<String>,
    since: Option<String>,
    until: Option<String>,
    after: Option<String>,
}

fn day_start(day: &str) -> Option<i64> {
    NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .ok()?
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp())
}

pub async fn audit(req: HttpRequest, state: State, query: web::Query<AuditQuery>) -> HttpResponse {
    let visitor = match signed_in(&req, &state).await {
        Ok(visitor) => visitor,
        Err(response) => return response,
    };
    let blank = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let action = blank(&query.action);
    let actor = blank(&query.actor);
    let since = blank(&query.since);
    let until = blank(&query.until);
    let mut error = None;
    let since_at = since.as_deref().and_then(|d| {
        day_start(d).or_else(|| {
            error = Some(PageError::new(
                "invalid_query",
                "the From date is not a date",
            ));
            None
        })
    });
    let until_at = until.as_deref().and_then(|d| {
        day_start(d).map(|t| t + 86_399).or_else(|| {
            error = Some(PageError::new("invalid_query", "the To date is not a date"));
            None
        })
    });
    let after = blank(&query.after).filter(|id| uuid::Uuid::parse_str(id).is_ok());
    const PAGE: u32 = 50;
    let listed = audit_service::list(
        &state.service,
        &visitor.principal,
        AuditFilter {
            action: action.as_deref(),
            actor: actor.as_deref(),
            target: None,
            since: since_at,
            until: until_at,
            request_id: None,
            after_id: after.as_deref(),
            limit: PAGE,
        },
    )
    .await;
    let (events, has_more) = match listed {
        Ok(found) => found,
        Err(err) => return forbidden(&err),
    };
    let next_page = if has_more {
        events.last().map(|last| {
            let mut params = vec![("after", last.id.clone())];
            for (name, value) in [
                ("action", &action),
                ("actor", &actor),
                ("since", &since),
                ("until", &until),
            ] {
                if let Some(value) = value {
                    params.push((name, value.clone()));
                }
            }
            format!(
                "/console/audit?{}",
                serde_urlencoded::to_string(&params).unwrap_or_default()
            )
        })
    } else {
        None
    };
    let at = now();
    let template = AuditPage {
        nav: nav(&state, &visitor, "audit").await,
        error,
        filter: AuditFilterView {
            action: action.unwrap_or_default(),
            actor: actor.unwrap_or_default(),
            since: since.unwrap_or_default(),
            until: until.unwrap_or_default(),
        },
        known_actions: KNOWN_ACTIONS,
        events: events.into_iter().map(|e| EventView::of(e, at)).collect(),
        next_page,
    };
    page(StatusCode::OK, &template)
}
