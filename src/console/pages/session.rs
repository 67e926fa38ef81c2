//! First run, sign-in and sign-out, and choosing a password.

use super::*;

#[derive(serde::Deserialize)]
pub struct SetupQuery {
    token: Option<String>,
}

pub async fn setup_form(
    state: State,
    console: Console,
    query: web::Query<SetupQuery>,
) -> HttpResponse {
    let token = query.token.clone().unwrap_or_default();
    let first_run = setup::is_first_run(&state.service).await.unwrap_or(false);
    if !first_run || !console.setup_armed(&token) {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body("this setup link is not valid: it works once, on a server nobody uses yet, until the server restarts");
    }
    page(
        StatusCode::OK,
        &SetupPage {
            error: None,
            token,
            company: String::new(),
            email: String::new(),
        },
    )
}

pub async fn setup(
    req: HttpRequest,
    state: State,
    console: Console,
    body: web::Bytes,
) -> HttpResponse {
    let form = FormFields::parse(&body);
    let token = form.get("token").unwrap_or("").to_owned();
    let company = form.get("company").unwrap_or("").to_owned();
    let email = form.get("email").unwrap_or("").to_owned();
    let password = form.get("password").unwrap_or("");
    let again_with = |status: StatusCode, error: PageError| {
        page(
            status,
            &SetupPage {
                error: Some(error),
                token: token.clone(),
                company: company.clone(),
                email: email.clone(),
            },
        )
    };
    let again = |error: PageError| again_with(StatusCode::UNPROCESSABLE_ENTITY, error);
    if !auth::same_origin(&req) || !console.setup_armed(&token) {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("this setup link is not valid any more");
    }
    if password.chars().count() < 12 {
        return again(PageError::new(
            "weak_password",
            "a password needs at least 12 characters",
        ));
    }
    if !console.take_setup(&token) {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("this setup link was used already");
    }
    let address = client_address(&req);
    match setup::first_run(&state.service, address, &company, &email, password).await {
        Ok(()) => start_session(&req, &state, &email, password).await,
        Err(err) => {
            // Nothing was created (or only what a retry reports): let the
            // operator try again with the same link.
            console.rearm_setup(&token);
            again_with(service_status(&err), PageError::from(&err))
        }
    }
}

/// Signs in with a password and sets the session cookie.
async fn start_session(
    req: &HttpRequest,
    state: &State,
    email: &str,
    password: &str,
) -> HttpResponse {
    let address = client_address(req);
    match sessions::sign_in(&state.service, email, password, address).await {
        Ok(session) => {
            let mut response = redirect("/console/");
            let max_age = session.expires_at - now();
            let _ = response.add_cookie(&auth::session_cookie(&session.token, max_age, tls(state)));
            response
        }
        Err(err) => page(
            service_status(&err),
            &SignInPage {
                flash: None,
                error: Some(sign_in_error(&err)),
                email: email.to_owned(),
            },
        ),
    }
}

/// A refused sign-in in words. A locked account answers like a wrong
/// password (nobody learns which emails exist), so the words cover both.
fn sign_in_error(err: &ServiceError) -> PageError {
    match err {
        ServiceError::BadCredentials => PageError::new(
            err.code(),
            "The email or password is wrong, or the account is locked after repeated failed \
             sign-ins (for 15 minutes, or until an admin unlocks it).",
        ),
        other => PageError::from(other),
    }
}

pub async fn sign_in_form(req: HttpRequest, state: State) -> HttpResponse {
    if auth::visitor(&req, &state).await.is_some() {
        return redirect("/console/");
    }
    let form = SignInPage {
        flash: read_flash(&req),
        error: None,
        email: String::new(),
    };
    shown_once(page(StatusCode::OK, &form), &req, &state)
}

pub async fn sign_in(req: HttpRequest, state: State, body: web::Bytes) -> HttpResponse {
    if !auth::same_origin(&req) {
        return HttpResponse::Forbidden().body("sign in from this server's page");
    }
    let form = FormFields::parse(&body);
    let email = form.get("email").unwrap_or("");
    let password = form.get("password").unwrap_or("");
    start_session(&req, &state, email, password).await
}

pub async fn sign_out(req: HttpRequest, state: State, body: web::Bytes) -> HttpResponse {
    let (visitor, _) = match checked_change(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    if let Err(err) = sessions::sign_out(&state.service, &visitor.principal, &visitor.session).await
    {
        log::warn!(
            "console sign-out failed: {}",
            crate::telemetry::error_chain(&err)
        );
    }
    let mut response = redirect_with("/console/sign-in", "You are signed out.", &state);
    let _ = response.add_cookie(&auth::removal_cookie(tls(&state)));
    response
}

pub async fn set_password_form() -> HttpResponse {
    page(
        StatusCode::OK,
        &SetPasswordPage {
            error: None,
            token: String::new(),
        },
    )
}

pub async fn set_password(req: HttpRequest, state: State, body: web::Bytes) -> HttpResponse {
    if !auth::same_origin(&req) {
        return HttpResponse::Forbidden().body("set your password from this server's page");
    }
    let form = FormFields::parse(&body);
    let token = form.get("token").unwrap_or("");
    let result = sessions::set_password_with_token(
        &state.service,
        client_address(&req),
        token,
        form.get("new_password").unwrap_or(""),
    )
    .await;
    match result {
        Ok(()) => redirect_with(
            "/console/sign-in",
            "Your password is set: sign in with it.",
            &state,
        ),
        Err(err) => page(
            service_status(&err),
            &SetPasswordPage {
                // A weak password leaves the code unused: keep it in the form.
                token: if matches!(err, ServiceError::WeakPassword(_)) {
                    token.to_owned()
                } else {
                    String::new()
                },
                error: Some(PageError::from(&err)),
            },
        ),
    }
}
