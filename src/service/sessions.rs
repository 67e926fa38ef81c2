//! Human sign-in: passwords (argon2id), account locks after repeated
//! failures, sessions, and the tenant's "API-only users" policy.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::TryRngCore;
use rand::rngs::OsRng;

use super::audit::{self, Event};
use super::{Result, Service, ServiceError};
use crate::domain::{
    ActingUser, Credential, Email, Principal, Role, ScopeSet, SessionToken, SetPasswordToken,
    UnixTime, UserStatus, now,
};
use crate::storage::SignInRow;

const MIN_PASSWORD_LEN: usize = 12;
const MAX_PASSWORD_LEN: usize = 1024;

/// A session just opened: the token is shown to its user once.
pub struct Session {
    pub token: SessionToken,
    pub expires_at: UnixTime,
    pub user_id: String,
}

fn hash_password_blocking(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    OsRng
        .try_fill_bytes(&mut salt)
        .map_err(|e| ServiceError::Internal(format!("no randomness for a salt: {e}")))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| ServiceError::Internal(format!("salt encoding failed: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::Internal(format!("password hashing failed: {e}")))
}

fn verify_password_blocking(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

pub(super) fn check_strength(password: &str) -> Result<()> {
    let len = password.chars().count();
    if len < MIN_PASSWORD_LEN {
        return Err(ServiceError::WeakPassword(format!(
            "a password needs at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(ServiceError::WeakPassword(format!(
            "a password may have at most {MAX_PASSWORD_LEN} bytes"
        )));
    }
    Ok(())
}

/// Hashing is deliberately slow: keep it off the async workers.
async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || hash_password_blocking(&password))
        .await
        .map_err(|e| ServiceError::Internal(format!("the hashing task failed: {e}")))?
}

async fn verify_password(password: String, hash: Option<String>) -> bool {
    // Without a hash, verify against a fixed one anyway: the answer takes as
    // long for unknown emails as for wrong passwords.
    let hash = hash.unwrap_or_else(|| DUMMY_HASH.to_owned());
    tokio::task::spawn_blocking(move || verify_password_blocking(&password, &hash))
        .await
        .unwrap_or(false)
}

/// argon2id of a random string nobody knows, with the default parameters.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Vn8oMOLqpwbcs5V1QHcvoHplKQ7m3KeT8v5q1tUr4cY";

/// Sets a user's password (the operator's `keyport user set-password`).
/// Every session of the user ends: whoever held one must prove the new
/// password.
pub async fn set_password(
    service: &Service,
    principal: &Principal,
    email: &str,
    password: &str,
) -> Result<()> {
    if !principal.is_operator() {
        return Err(ServiceError::Forbidden(
            "only the operator sets passwords; people change their own".to_owned(),
        ));
    }
    check_strength(password)?;
    let email = Email::parse(email).map_err(ServiceError::Invalid)?;
    let user = service
        .store
        .find_sign_in(email.as_str())
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no user with email `{email}`")))?;
    store_password(service, principal, &user, password, "user.set_password").await
}

/// A new user chooses their password with the one-time token their admin
/// was given. The token is used up whether or not the password is accepted
/// later, so it cannot be replayed.
pub async fn set_password_with_token(
    service: &Service,
    source_address: Option<std::net::IpAddr>,
    token: &str,
    password: &str,
) -> Result<()> {
    check_strength(password)?;
    let token =
        SetPasswordToken::parse(token).map_err(|_| ServiceError::InvalidSetPasswordToken)?;
    let user_id = service
        .store
        .take_set_password_token(&token.digest().to_hex(), now())
        .await?
        .ok_or(ServiceError::InvalidSetPasswordToken)?;
    let user = service
        .store
        .find_user_by_id(&user_id)
        .await?
        .ok_or(ServiceError::InvalidSetPasswordToken)?;
    let sign_in = service
        .store
        .find_sign_in(&user.email)
        .await?
        .ok_or(ServiceError::InvalidSetPasswordToken)?;
    let principal = Principal {
        credential: Credential::Anonymous,
        user: Some(ActingUser {
            user_id: user.id.clone(),
            tenant_id: user.tenant_id.clone(),
            role: user.role.parse().unwrap_or(Role::Member),
        }),
        scopes: ScopeSet::default(),
        source_address,
    };
    store_password(
        service,
        &principal,
        &sign_in,
        password,
        "user.set_password_with_token",
    )
    .await
}

/// Hashes and stores a password; the user's sessions and unused
/// set-password tokens end.
async fn store_password(
    service: &Service,
    principal: &Principal,
    user: &SignInRow,
    password: &str,
    action: &str,
) -> Result<()> {
    let hash = hash_password(password.to_owned()).await?;
    let store = &service.store;
    store.set_password_hash(&user.id, &hash, now()).await?;
    store.delete_sessions_of(&user.id).await?;
    store.delete_set_password_tokens_of(&user.id).await?;
    audit::record(
        store,
        principal,
        Event::new(action)
            .tenant(&user.tenant_id)
            .target(&user.email),
    )
    .await;
    Ok(())
}

/// Checks `password` for `user` under the lockout rule: the attempt is
/// claimed (counted) before the slow check, so concurrent guesses cannot
/// exceed `sign_in_max_failures` checks per window. A refused claim (a
/// locked account, or the budget spent) costs the same time as a check and
/// answers like a wrong password: nobody learns that the account exists or
/// is locked. A right password clears the count.
async fn check_password_guarded(
    service: &Service,
    principal: &Principal,
    user: &SignInRow,
    password: &str,
) -> Result<()> {
    let security = &service.settings.security;
    let at = now();
    let max = i64::from(security.sign_in_max_failures);
    let claimed = service
        .store
        .claim_sign_in_attempt(
            &user.id,
            at,
            security.sign_in_failure_window.as_secs() as i64,
            max,
        )
        .await?;
    let Some(attempt) = claimed else {
        verify_password(password.to_owned(), None).await;
        audit::record(
            &service.store,
            principal,
            Event::new("session.sign_in_refused")
                .tenant(&user.tenant_id)
                .target(&user.email)
                .detail("locked".to_owned()),
        )
        .await;
        return Err(ServiceError::BadCredentials);
    };
    let matches = verify_password(password.to_owned(), user.password_hash.clone()).await;
    if matches && user.password_hash.is_some() && user.status == UserStatus::Active.as_str() {
        service
            .store
            .set_sign_in_failures(&user.id, 0, None, None)
            .await?;
        return Ok(());
    }
    audit::record(
        &service.store,
        principal,
        Event::new("session.sign_in_failed")
            .tenant(&user.tenant_id)
            .target(&user.email),
    )
    .await;
    if attempt == max {
        let until = at + security.sign_in_lock.as_secs() as i64;
        service.store.lock_user(&user.id, until, at).await?;
        audit::record(
            &service.store,
            principal,
            Event::new("user.lock")
                .tenant(&user.tenant_id)
                .target(&user.email)
                .detail(format!("failures={attempt} locked_until={until}")),
        )
        .await;
    }
    Err(ServiceError::BadCredentials)
}

pub async fn sign_in(
    service: &Service,
    email: &str,
    password: &str,
    source_address: Option<std::net::IpAddr>,
) -> Result<Session> {
    // Nobody is signed in yet: failures are the anonymous caller's.
    let anonymous = Principal::anonymous(source_address);
    let user = match Email::parse(email) {
        Ok(email) => service.store.find_sign_in(email.as_str()).await?,
        Err(_) => None,
    };
    let Some(user) = user else {
        verify_password(password.to_owned(), None).await;
        return Err(ServiceError::BadCredentials);
    };
    check_password_guarded(service, &anonymous, &user, password).await?;
    let at = now();
    if user.api_only_users != 0 && service.store.count_active_keys(&user.id, at).await? > 0 {
        audit::record(
            &service.store,
            &anonymous,
            Event::new("session.sign_in_refused")
                .tenant(&user.tenant_id)
                .target(&user.email)
                .detail("api_only".to_owned()),
        )
        .await;
        return Err(ServiceError::ApiOnly);
    }
    let token = SessionToken::generate();
    let expires_at = at + service.settings.security.session_ttl.as_secs() as i64;
    service
        .store
        .insert_session(
            &token.digest().to_hex(),
            &user.id,
            &user.tenant_id,
            at,
            expires_at,
        )
        .await?;
    let signed_in = Principal {
        credential: Credential::Session {
            handle: token.digest().handle(),
        },
        user: Some(ActingUser {
            user_id: user.id.clone(),
            tenant_id: user.tenant_id.clone(),
            role: Role::Member,
        }),
        scopes: ScopeSet::default(),
        source_address,
    };
    audit::record(
        &service.store,
        &signed_in,
        Event::new("session.sign_in").target(&user.email),
    )
    .await;
    Ok(Session {
        token,
        expires_at,
        user_id: user.id,
    })
}

/// Ends the presented session.
pub async fn sign_out(
    service: &Service,
    principal: &Principal,
    token: &SessionToken,
) -> Result<bool> {
    let removed = service
        .store
        .delete_session(&token.digest().to_hex())
        .await?;
    if removed {
        audit::record(&service.store, principal, Event::new("session.sign_out")).await;
    }
    Ok(removed)
}

/// A signed-in user changes their own password; every session of theirs
/// ends. A wrong current password counts toward the lockout like a failed
/// sign-in.
pub async fn change_password(
    service: &Service,
    principal: &Principal,
    current: &str,
    new: &str,
) -> Result<()> {
    if !matches!(principal.credential, Credential::Session { .. }) {
        return Err(ServiceError::Invalid(
            "present the session token from POST /api/v1/session".to_owned(),
        ));
    }
    check_strength(new)?;
    let user_id = principal.user_id().ok_or(ServiceError::BadCredentials)?;
    let user = service
        .store
        .find_user_by_id(user_id)
        .await?
        .ok_or(ServiceError::BadCredentials)?;
    let sign_in = service
        .store
        .find_sign_in(&user.email)
        .await?
        .ok_or(ServiceError::BadCredentials)?;
    check_password_guarded(service, principal, &sign_in, current).await?;
    store_password(service, principal, &sign_in, new, "user.change_password").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_their_own_password() {
        let hash = hash_password_blocking("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password_blocking("correct horse battery", &hash));
        assert!(!verify_password_blocking("wrong horse battery", &hash));
    }

    #[test]
    fn the_dummy_hash_parses_so_unknown_users_cost_a_real_verification() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!verify_password_blocking("anything", DUMMY_HASH));
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(check_strength("short").is_err());
        assert!(check_strength("long enough password").is_ok());
    }
}
