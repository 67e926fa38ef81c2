//! Human sign-in: passwords (argon2id), account locks after repeated
//! failures, sessions, and the tenant's "API-only users" policy.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::TryRngCore;
use rand::rngs::OsRng;

use crate::audit::{self, Actor};
use crate::config::SecuritySettings;
use crate::domain::{Email, Role, SessionToken, UnixTime, UserStatus, now};
use crate::storage::{SignInRow, StorageError, Store};

const MIN_PASSWORD_LEN: usize = 12;
const MAX_PASSWORD_LEN: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Unknown email, wrong password, no password set or a disabled user:
    /// deliberately one answer.
    #[error("the email or password is wrong")]
    BadCredentials,
    #[error(
        "the account is locked after repeated failed sign-ins; try again later or ask an admin"
    )]
    Locked { until: UnixTime },
    #[error("this company's policy lets users with an active API key use only the API")]
    ApiOnly,
    #[error("{0}")]
    WeakPassword(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub struct Session {
    pub token: SessionToken,
    pub expires_at: UnixTime,
    pub user_id: String,
}

fn hash_password_blocking(password: &str) -> Result<String, SignInError> {
    let mut salt = [0u8; 16];
    OsRng
        .try_fill_bytes(&mut salt)
        .map_err(|_| SignInError::WeakPassword("no randomness available".to_owned()))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|_| SignInError::WeakPassword("salt encoding failed".to_owned()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| SignInError::WeakPassword("the password cannot be hashed".to_owned()))
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

fn check_strength(password: &str) -> Result<(), SignInError> {
    let len = password.chars().count();
    if len < MIN_PASSWORD_LEN {
        return Err(SignInError::WeakPassword(format!(
            "a password needs at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(SignInError::WeakPassword(format!(
            "a password may have at most {MAX_PASSWORD_LEN} bytes"
        )));
    }
    Ok(())
}

/// Hashing is deliberately slow: keep it off the async workers.
async fn hash_password(password: String) -> Result<String, SignInError> {
    tokio::task::spawn_blocking(move || hash_password_blocking(&password))
        .await
        .map_err(|_| SignInError::WeakPassword("hashing failed".to_owned()))?
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

pub async fn set_password(
    store: &Store,
    actor: &Actor,
    email: &str,
    password: &str,
) -> Result<(), SignInError> {
    check_strength(password)?;
    let email = Email::parse(email).map_err(|_| SignInError::BadCredentials)?;
    let user = store
        .find_sign_in(email.as_str())
        .await?
        .ok_or(SignInError::BadCredentials)?;
    let hash = hash_password(password.to_owned()).await?;
    store.set_password_hash(&user.id, &hash, now()).await?;
    audit::record(
        store,
        actor,
        Some(&user.tenant_id),
        "user.set_password",
        Some(&user.email),
        None,
    )
    .await;
    Ok(())
}

pub async fn sign_in(
    store: &Store,
    settings: &SecuritySettings,
    email: &str,
    password: &str,
    source_address: Option<String>,
) -> Result<Session, SignInError> {
    let Some(user) = (match Email::parse(email) {
        Ok(email) => store.find_sign_in(email.as_str()).await?,
        Err(_) => None,
    }) else {
        verify_password(password.to_owned(), None).await;
        return Err(SignInError::BadCredentials);
    };
    // Not signed in yet: the actor holds no scopes.
    let actor = Actor::user(
        &user.id,
        &user.tenant_id,
        Role::Member,
        Default::default(),
        source_address,
    );
    let at = now();
    if let Some(until) = user.locked_until.filter(|until| *until > at) {
        audit::record(
            store,
            &actor,
            None,
            "session.sign_in_refused",
            Some(&user.email),
            Some("locked".to_owned()),
        )
        .await;
        return Err(SignInError::Locked { until });
    }
    let matches = verify_password(password.to_owned(), user.password_hash.clone()).await;
    if !matches || user.password_hash.is_none() || user.status != UserStatus::Active.as_str() {
        record_failure(store, settings, &actor, &user, at).await?;
        return Err(SignInError::BadCredentials);
    }
    if user.api_only_users != 0 && store.count_active_keys(&user.id, at).await? > 0 {
        audit::record(
            store,
            &actor,
            None,
            "session.sign_in_refused",
            Some(&user.email),
            Some("api_only".to_owned()),
        )
        .await;
        return Err(SignInError::ApiOnly);
    }
    if user.failed_sign_ins > 0 || user.locked_until.is_some() {
        store.set_sign_in_failures(&user.id, 0, None, None).await?;
    }
    let token = SessionToken::generate();
    let expires_at = at + settings.session_ttl.as_secs() as i64;
    store
        .insert_session(
            &token.digest().to_hex(),
            &user.id,
            &user.tenant_id,
            at,
            expires_at,
        )
        .await?;
    audit::record(
        store,
        &actor,
        None,
        "session.sign_in",
        Some(&user.email),
        None,
    )
    .await;
    Ok(Session {
        token,
        expires_at,
        user_id: user.id,
    })
}

async fn record_failure(
    store: &Store,
    settings: &SecuritySettings,
    actor: &Actor,
    user: &SignInRow,
    at: UnixTime,
) -> Result<(), StorageError> {
    let window = settings.sign_in_failure_window.as_secs() as i64;
    let (failed, first) = match user.first_failed_at {
        Some(first) if at - first < window => (user.failed_sign_ins + 1, first),
        _ => (1, at),
    };
    let lock = failed >= i64::from(settings.sign_in_max_failures);
    let locked_until = lock.then(|| at + settings.sign_in_lock.as_secs() as i64);
    store
        .set_sign_in_failures(
            &user.id,
            if lock { 0 } else { failed },
            (!lock).then_some(first),
            locked_until,
        )
        .await?;
    audit::record(
        store,
        actor,
        None,
        "session.sign_in_failed",
        Some(&user.email),
        None,
    )
    .await;
    if lock {
        audit::record(
            store,
            actor,
            None,
            "user.lock",
            Some(&user.email),
            Some(format!("failures={failed}")),
        )
        .await;
    }
    Ok(())
}

pub async fn sign_out(
    store: &Store,
    actor: &Actor,
    token: &SessionToken,
) -> Result<bool, StorageError> {
    let removed = store.delete_session(&token.digest().to_hex()).await?;
    if removed {
        audit::record(store, actor, None, "session.sign_out", None, None).await;
    }
    Ok(removed)
}

/// A signed-in user changes their own password; every session of theirs ends.
pub async fn change_password(
    store: &Store,
    actor: &Actor,
    user_id: &str,
    current: &str,
    new: &str,
) -> Result<(), SignInError> {
    check_strength(new)?;
    let user = store
        .find_user_by_id(user_id)
        .await?
        .ok_or(SignInError::BadCredentials)?;
    let sign_in = store
        .find_sign_in(&user.email)
        .await?
        .ok_or(SignInError::BadCredentials)?;
    if !verify_password(current.to_owned(), sign_in.password_hash.clone()).await
        || sign_in.password_hash.is_none()
    {
        return Err(SignInError::BadCredentials);
    }
    let hash = hash_password(new.to_owned()).await?;
    store.set_password_hash(&user.id, &hash, now()).await?;
    store.delete_sessions_of(&user.id).await?;
    audit::record(
        store,
        actor,
        None,
        "user.change_password",
        Some(&user.email),
        None,
    )
    .await;
    Ok(())
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
