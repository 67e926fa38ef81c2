//! Users and the company policy (admins).

use super::*;

async fn users_page(
    state: &State,
    visitor: &Visitor,
    flash: Option<String>,
    error: Option<PageError>,
    invite: Option<InviteView>,
) -> Result<UsersPage, ServiceError> {
    let at = now();
    let listed = user_service::list_users(&state.service, &visitor.principal, None).await?;
    let api_only_users = tenants::api_only_users(&state.service, &visitor.principal)
        .await
        .unwrap_or(false);
    Ok(UsersPage {
        nav: nav(state, visitor, "users").await,
        flash,
        error,
        users: {
            // The server refuses disabling the last active admin; the page
            // does not offer it, nor disabling oneself.
            let me = visitor.principal.user_id().unwrap_or_default().to_owned();
            let admins = listed
                .iter()
                .filter(|u| u.role == "admin" && u.status == "active")
                .count();
            listed
                .into_iter()
                .map(|u| {
                    let why = if u.id == me {
                        Some("You cannot disable yourself: ask another admin.")
                    } else if u.role == "admin" && u.status == "active" && admins <= 1 {
                        Some("The company's only admin: make someone else admin first.")
                    } else {
                        None
                    };
                    let mut view = UserView::of(u, at);
                    view.keep_enabled = why;
                    view
                })
                .collect()
        },
        grantable: crate::domain::GRANTABLE_SCOPES
            .iter()
            .map(|scope| (*scope, permission_label(scope)))
            .collect(),
        api_only_users,
        invite,
    })
}

pub async fn users(req: HttpRequest, state: State) -> HttpResponse {
    let visitor = match signed_in(&req, &state).await {
        Ok(visitor) => visitor,
        Err(response) => return response,
    };
    match users_page(&state, &visitor, read_flash(&req), None, None).await {
        Ok(template) => shown_once(page(StatusCode::OK, &template), &req, &state),
        Err(err) => forbidden(&err),
    }
}

/// The users page again with `err` shown, after a refused change.
async fn users_error(state: &State, visitor: &Visitor, err: ServiceError) -> HttpResponse {
    match users_page(state, visitor, None, Some(PageError::from(&err)), None).await {
        Ok(template) => page(service_status(&err), &template),
        Err(err) => forbidden(&err),
    }
}

pub async fn add_user(req: HttpRequest, state: State, body: web::Bytes) -> HttpResponse {
    let (visitor, form) = match checked_change(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let permissions = form.all("permission").join(" ");
    let created = user_service::create_user(
        &state.service,
        &visitor.principal,
        user_service::NewUserRequest {
            tenant: None,
            email: form.get("email").unwrap_or(""),
            role: form.get("role").unwrap_or("member"),
            permissions: &permissions,
        },
    )
    .await;
    match created {
        Ok(created) => {
            let expires = When::at(created.set_password_expires_at, now());
            let invite = InviteView {
                email: created.user.email.clone(),
                link: invitation_link(
                    &state.service.settings.tokens.issuer,
                    created.set_password_token.expose(),
                ),
                expires: expires.exact,
            };
            let notice = format!("{} was added.", created.user.email);
            match users_page(&state, &visitor, Some(notice), None, Some(invite)).await {
                Ok(template) => page(StatusCode::CREATED, &template),
                Err(err) => forbidden(&err),
            }
        }
        Err(err) => users_error(&state, &visitor, err).await,
    }
}

async fn user_action(
    req: HttpRequest,
    state: State,
    body: web::Bytes,
    user_id: String,
    action: UserAction,
) -> HttpResponse {
    let (visitor, form) = match checked_change(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let principal = &visitor.principal;
    let service = &state.service;
    let done = match action {
        UserAction::Permissions => {
            let permissions = form.all("permission").join(" ");
            user_service::change_user(
                service,
                principal,
                &user_id,
                user_service::UserChange {
                    role: None,
                    permissions: Some(&permissions),
                },
            )
            .await
            .map(|u| format!("Permissions of {} saved.", u.email))
        }
        UserAction::Disable => {
            user_service::set_user_status(service, principal, &user_id, UserStatus::Disabled)
                .await
                .map(|u| format!("{} is disabled: their keys and sessions stopped.", u.email))
        }
        UserAction::Enable => {
            user_service::set_user_status(service, principal, &user_id, UserStatus::Active)
                .await
                .map(|u| format!("{} is enabled.", u.email))
        }
        UserAction::Unlock => user_service::unlock_user(service, principal, &user_id)
            .await
            .map(|()| "The account is unlocked.".to_owned()),
    };
    match done {
        Ok(notice) => redirect_with("/console/users", &notice, &state),
        Err(err) => users_error(&state, &visitor, err).await,
    }
}

enum UserAction {
    Permissions,
    Disable,
    Enable,
    Unlock,
}

pub async fn set_permissions(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    user_action(req, state, body, path.into_inner(), UserAction::Permissions).await
}

pub async fn disable_user(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    user_action(req, state, body, path.into_inner(), UserAction::Disable).await
}

pub async fn enable_user(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    user_action(req, state, body, path.into_inner(), UserAction::Enable).await
}

pub async fn unlock_user(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    user_action(req, state, body, path.into_inner(), UserAction::Unlock).await
}

pub async fn set_policy(req: HttpRequest, state: State, body: web::Bytes) -> HttpResponse {
    let (visitor, form) = match checked_change(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let on = form.get("api_only_users") == Some("true");
    match tenants::set_api_only_users(&state.service, &visitor.principal, None, on).await {
        Ok(()) => {
            let notice = if on {
                "API-only users is on: users holding an active key sign in no more, and their sessions ended."
            } else {
                "API-only users is off."
            };
            let mut response = redirect_with("/console/users", notice, &state);
            // The admin's own session may have been one of those ended.
            if on
                && matches!(visitor.principal.credential, Credential::Session { .. })
                && auth::visitor(&req, &state).await.is_none()
            {
                response = redirect_with("/console/sign-in", notice, &state);
            }
            response
        }
        Err(err) => users_error(&state, &visitor, err).await,
    }
}
