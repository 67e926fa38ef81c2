//! The company's audit trail (admins), newest first, and its CSV export.

use super::*;
use crate::service::insights;

#[derive(serde::Deserialize, Default)]
pub struct AuditQuery {
    action: Option<String>,
    actor: Option<String>,
    /// A key's client ID or a user's id (a key page's "every event").
    target: Option<String>,
    since: Option<String>,
    until: Option<String>,
    after: Option<String>,
}

/// The rows a CSV export holds at most.
const CSV_LIMIT: u32 = 10_000;

fn day_start(day: &str) -> Option<i64> {
    NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .ok()?
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp())
}

/// The filter a query asks for, checked: blank fields are absent.
struct Wanted {
    action: Option<String>,
    actor: Option<String>,
    target: Option<String>,
    since: Option<String>,
    until: Option<String>,
    since_at: Option<i64>,
    until_at: Option<i64>,
    after: Option<String>,
    error: Option<PageError>,
}

impl Wanted {
    fn of(query: &AuditQuery) -> Self {
        let blank = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let since = blank(&query.since);
        let until = blank(&query.until);
        let mut error = None;
        let since_at = since.as_deref().and_then(|d| {
            day_start(d).or_else(|| {
                error = Some(PageError::new(
                    "invalid_query",
                    "the From date is not a date: pick a day in the calendar",
                ));
                None
            })
        });
        let until_at = until.as_deref().and_then(|d| {
            day_start(d).map(|t| t + 86_399).or_else(|| {
                error = Some(PageError::new(
                    "invalid_query",
                    "the To date is not a date: pick a day in the calendar",
                ));
                None
            })
        });
        Wanted {
            action: blank(&query.action),
            actor: blank(&query.actor),
            target: blank(&query.target),
            since,
            until,
            since_at,
            until_at,
            after: blank(&query.after).filter(|id| uuid::Uuid::parse_str(id).is_ok()),
            error,
        }
    }

    fn filter(&self, limit: u32) -> AuditFilter<'_> {
        AuditFilter {
            action: self.action.as_deref(),
            actor: self.actor.as_deref(),
            target: self.target.as_deref(),
            since: self.since_at,
            until: self.until_at,
            request_id: None,
            after_id: self.after.as_deref(),
            limit,
            newest_first: true,
        }
    }

    /// The query string of this filter, with `extra` first.
    fn query(&self, extra: Option<(&'static str, String)>) -> String {
        let mut params: Vec<(&str, String)> = extra.into_iter().collect();
        for (name, value) in [
            ("action", &self.action),
            ("actor", &self.actor),
            ("target", &self.target),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if let Some(value) = value {
                params.push((name, value.clone()));
            }
        }
        serde_urlencoded::to_string(&params).unwrap_or_default()
    }
}

pub async fn audit(req: HttpRequest, state: State, query: web::Query<AuditQuery>) -> HttpResponse {
    let visitor = match signed_in(&req, &state).await {
        Ok(visitor) => visitor,
        Err(response) => return response,
    };
    let wanted = Wanted::of(&query);
    const PAGE: u32 = 50;
    let listed =
        insights::readable_audit(&state.service, &visitor.principal, wanted.filter(PAGE)).await;
    let (events, has_more, names) = match listed {
        Ok(found) => found,
        Err(err) => return forbidden(&err),
    };
    let next_page = if has_more {
        events.last().map(|last| {
            format!(
                "/console/audit?{}",
                wanted.query(Some(("after", last.id.clone())))
            )
        })
    } else {
        None
    };
    let at = now();
    let csv_link = format!("/console/audit.csv?{}", wanted.query(None));
    let Wanted {
        action,
        actor,
        since,
        until,
        error,
        ..
    } = wanted;
    let template = AuditPage {
        nav: nav(&state, &visitor, "audit").await,
        error,
        filter: AuditFilterView {
            action: action.unwrap_or_default(),
            actor: actor.unwrap_or_default(),
            since: since.unwrap_or_default(),
            until: until.unwrap_or_default(),
        },
        actions: ACTIONS,
        events: events
            .into_iter()
            .map(|e| EventView::of(e, &names, at))
            .collect(),
        next_page,
        csv_link,
    };
    page(StatusCode::OK, &template)
}

/// A CSV field: quoted, quotes doubled, and a leading `=`, `+`, `-` or `@`
/// defused so a spreadsheet does not run it as a formula.
fn csv_field(value: &str) -> String {
    let defused = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    format!("\"{}\"", defused.replace('"', "\"\""))
}

/// The filtered events as CSV, newest first, with names beside the ids.
pub async fn audit_csv(
    req: HttpRequest,
    state: State,
    query: web::Query<AuditQuery>,
) -> HttpResponse {
    let visitor = match signed_in(&req, &state).await {
        Ok(visitor) => visitor,
        Err(response) => return response,
    };
    let wanted = Wanted::of(&query);
    if let Some(error) = &wanted.error {
        return HttpResponse::BadRequest()
            .content_type("text/plain; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(format!("{} ({})", error.message, error.code));
    }
    let listed =
        insights::readable_audit(&state.service, &visitor.principal, wanted.filter(CSV_LIMIT))
            .await;
    let (events, _, names) = match listed {
        Ok(found) => found,
        Err(err) => return forbidden(&err),
    };
    let mut csv = String::from(
        "time_utc,action,action_name,actor,actor_name,credential,target,target_name,detail,source_address,request_id\r\n",
    );
    let at = now();
    for event in events {
        let actor_name = names.users.get(&event.actor).cloned().unwrap_or_default();
        let target = event.target.clone().unwrap_or_default();
        let target_name = names
            .keys
            .get(&target)
            .map(|(_, name)| name.clone())
            .or_else(|| names.users.get(&target).cloned())
            .unwrap_or_default();
        let credential = match (&event.credential_kind, &event.credential_id) {
            (Some(kind), Some(id)) => format!("{kind} {id}"),
            (Some(kind), None) => kind.clone(),
            _ => String::new(),
        };
        let view = EventView::of(event.clone(), &names, at);
        let fields = [
            view.when.exact.as_str(),
            event.action.as_str(),
            view.action_label.as_str(),
            event.actor.as_str(),
            actor_name.as_str(),
            credential.as_str(),
            target.as_str(),
            target_name.as_str(),
            event.detail.as_deref().unwrap_or(""),
            event.source_address.as_deref().unwrap_or(""),
            event.request_id.as_deref().unwrap_or(""),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        csv.push_str(&line.join(","));
        csv.push_str("\r\n");
    }
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"keyport-audit-{}.csv\"",
                chrono::Utc::now().format("%Y-%m-%d")
            ),
        ))
        .body(csv)
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "\"plain\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "\"'=HYPERLINK(1)\"");
        assert_eq!(csv_field("-1"), "\"'-1\"");
    }
}
