//! Client IDs and client secrets.
//!
//! A secret is `kps_` + 43 base62 characters from the OS CSPRNG (256 bits) + a
//! 6-character base62 CRC-32 of what precedes it. The prefix lets secret scanners
//! spot a leaked key; the checksum lets Keyport refuse a mistyped or truncated
//! secret before touching the database.

use std::fmt;

use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const CLIENT_ID_PREFIX: &str = "kpc_";
const CLIENT_ID_BODY_LEN: usize = 24;
pub const SECRET_PREFIX: &str = "kps_";
const SECRET_BODY_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
const SECRET_LEN: usize = SECRET_PREFIX.len() + SECRET_BODY_LEN + CHECKSUM_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("the client ID is not a Keyport client ID")]
    MalformedClientId,
    #[error("the client secret is not a Keyport client secret")]
    MalformedSecret,
    #[error("the client secret's checksum does not match")]
    BadChecksum,
}

/// Uniformly random base62 characters, by rejection sampling of OS random bytes
/// (a plain modulo would bias the first characters of the alphabet).
fn random_base62(len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        OsRng
            .try_fill_bytes(&mut buf)
            .expect("the operating system's random number generator failed");
        for byte in buf {
            // 248 = 62 * 4: values at or above it would favour some characters.
            if byte < 248 && out.len() < len {
                out.push(BASE62[usize::from(byte % 62)] as char);
            }
        }
    }
    out
}

fn is_base62(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn checksum(text: &str) -> String {
    let mut value = u64::from(crc32fast::hash(text.as_bytes()));
    let mut digits = [b'0'; CHECKSUM_LEN];
    for digit in digits.iter_mut().rev() {
        *digit = BASE62[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8_lossy(&digits).into_owned()
}

/// The public half of a key: safe to log and show.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId(String);

impl ClientId {
    pub fn generate() -> Self {
        ClientId(format!(
            "{CLIENT_ID_PREFIX}{}",
            random_base62(CLIENT_ID_BODY_LEN)
        ))
    }

    pub fn parse(raw: &str) -> Result<Self, CredentialError> {
        if Self::is_well_formed(raw) {
            Ok(ClientId(raw.to_owned()))
        } else {
            Err(CredentialError::MalformedClientId)
        }
    }

    /// Whether [`ClientId::parse`] would take `raw`, without a copy of it
    /// (for a check on every request that keeps only the text).
    pub fn is_well_formed(raw: &str) -> bool {
        raw.strip_prefix(CLIENT_ID_PREFIX)
            .is_some_and(|body| body.len() == CLIENT_ID_BODY_LEN && is_base62(body))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The private half of a key. Its `Debug` and `Display` never print it; the
/// only way to read it is [`ClientSecret::expose`].
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    pub fn generate() -> Self {
        let body = format!("{SECRET_PREFIX}{}", random_base62(SECRET_BODY_LEN));
        let sum = checksum(&body);
        ClientSecret(body + &sum)
    }

    /// Checks shape and checksum; no database work happens for a secret that
    /// fails here.
    pub fn parse(raw: &str) -> Result<Self, CredentialError> {
        if raw.len() != SECRET_LEN || !raw.starts_with(SECRET_PREFIX) {
            return Err(CredentialError::MalformedSecret);
        }
        let (body, sum) = raw.split_at(SECRET_LEN - CHECKSUM_LEN);
        if !is_base62(&body[SECRET_PREFIX.len()..]) || !is_base62(sum) {
            return Err(CredentialError::MalformedSecret);
        }
        if checksum(body).as_bytes().ct_eq(sum.as_bytes()).into() {
            Ok(ClientSecret(raw.to_owned()))
        } else {
            Err(CredentialError::BadChecksum)
        }
    }

    /// True when `raw` looks like a Keyport secret rather than a JWT, so a
    /// bearer value can be routed to the right check.
    pub fn has_secret_prefix(raw: &str) -> bool {
        raw.starts_with(SECRET_PREFIX)
    }

    pub fn digest(&self) -> SecretDigest {
        SecretDigest(Sha256::digest(self.0.as_bytes()).into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

impl fmt::Display for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An opaque, random bearer token handed to a person (not an integration):
/// stored only as a digest; `Debug` never prints it.
macro_rules! opaque_token {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                $name(format!("{}{}", Self::PREFIX, random_base62(SECRET_BODY_LEN)))
            }

            pub fn parse(raw: &str) -> Result<Self, CredentialError> {
                match raw.strip_prefix(Self::PREFIX) {
                    Some(body) if body.len() == SECRET_BODY_LEN && is_base62(body) => {
                        Ok($name(raw.to_owned()))
                    }
                    _ => Err(CredentialError::MalformedSecret),
                }
            }

            pub fn has_prefix(raw: &str) -> bool {
                raw.starts_with(Self::PREFIX)
            }

            pub fn digest(&self) -> SecretDigest {
                SecretDigest(Sha256::digest(self.0.as_bytes()).into())
            }

            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(<redacted>)", stringify!($name))
            }
        }
    };
}

opaque_token!(
    /// A human's signed-in session.
    SessionToken,
    "kpsess_"
);

opaque_token!(
    /// Lets a new user choose their password once, without a credential.
    SetPasswordToken,
    "kpset_"
);

opaque_token!(
    /// Opens the console's first-run setup page, once, while nobody uses the
    /// server.
    SetupToken,
    "kpsetup_"
);

impl SecretDigest {
    /// A short public handle for what this digests, for audit rows: not
    /// enough to find or use the credential.
    pub fn handle(&self) -> String {
        self.to_hex()[..16].to_owned()
    }
}

/// `text` with anything shaped like a Keyport secret, session or
/// set-password token, or a JWT, replaced by `<redacted>`: for text that
/// came from a request (a path, a query, an id) and is about to be logged
/// or echoed. A careless `GET /api/v1/keys/kps_…` must not leak the key.
pub fn redact_credentials(text: &str) -> std::borrow::Cow<'_, str> {
    const PREFIXES: [&str; 4] = [SECRET_PREFIX, "kpsess_", "kpset_", "kpsetup_"];
    let is_token_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_');
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        // A credential starts at a boundary, never inside a longer word.
        let at_boundary = i == 0 || !is_token_char(bytes[i - 1]);
        let rest = &text[i..];
        let prefix = PREFIXES.iter().find(|p| rest.starts_with(**p));
        let end = if !at_boundary {
            None
        } else if let Some(prefix) = prefix {
            let body = rest[prefix.len()..]
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric())
                .count();
            (body > 0).then(|| i + prefix.len() + body)
        } else if rest.starts_with("eyJ") {
            // header.payload[.signature], each base64url.
            let len = rest
                .bytes()
                .take_while(|b| is_token_char(*b) || *b == b'.')
                .count();
            rest[..len].contains('.').then_some(i + len)
        } else {
            None
        };
        match end {
            Some(end) => {
                out.push_str(&text[copied..i]);
                out.push_str(prefix.copied().unwrap_or(""));
                out.push_str("<redacted>");
                copied = end;
                i = end;
            }
            None => i += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    if copied == 0 {
        return std::borrow::Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    std::borrow::Cow::Owned(out)
}

/// SHA-256 of a secret: what the database stores. Secrets carry 256 bits of
/// entropy, so a fast hash is enough; there is nothing to guess offline.
#[derive(Clone, Copy)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    /// The 32 bytes, to key an in-memory index (what the database stores,
    /// as bytes rather than hex).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(SecretDigest(out))
    }

    /// Constant-time comparison.
    pub fn matches(&self, other: &SecretDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretDigest(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_secret_parses_and_has_the_documented_shape() {
        let secret = ClientSecret::generate();
        assert_eq!(secret.expose().len(), SECRET_LEN);
        assert!(secret.expose().starts_with("kps_"));
        ClientSecret::parse(secret.expose()).expect("own secret parses");
    }

    #[test]
    fn anything_shaped_like_a_credential_is_redacted() {
        let secret = ClientSecret::generate();
        let session = SessionToken::generate();
        let path = format!("/api/v1/keys/{}/revoke", secret.expose());
        assert_eq!(
            redact_credentials(&path),
            "/api/v1/keys/kps_<redacted>/revoke"
        );
        let path = format!("/api/v1/users/{}/unlock", session.expose());
        assert_eq!(
            redact_credentials(&path),
            "/api/v1/users/kpsess_<redacted>/unlock"
        );
        assert_eq!(
            redact_credentials("/oauth/token/eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln?x=1"),
            "/oauth/token/<redacted>?x=1"
        );
        assert_eq!(
            redact_credentials("kpset_abc and more"),
            "kpset_<redacted> and more"
        );
        for harmless in [
            "/api/v1/keys/kpc_abc",
            "/healthz",
            "mykps_abc",
            "eyJ-no-dot",
            "ü/kps_",
        ] {
            assert_eq!(redact_credentials(harmless), harmless);
        }
    }

    #[test]
    fn secrets_are_never_equal_twice() {
        let a = ClientSecret::generate();
        let b = ClientSecret::generate();
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn one_changed_character_fails_the_checksum() {
        let secret = ClientSecret::generate();
        let mut chars: Vec<char> = secret.expose().chars().collect();
        chars[10] = if chars[10] == 'a' { 'b' } else { 'a' };
        let tampered: String = chars.into_iter().collect();
        assert_eq!(
            ClientSecret::parse(&tampered).unwrap_err(),
            CredentialError::BadChecksum
        );
    }

    #[test]
    fn malformed_secrets_are_refused_before_any_lookup() {
        let good = ClientSecret::generate();
        for bad in [
            "",
            "kps_",
            "secret",
            &good.expose()[..SECRET_LEN - 1],
            &format!("{}x", good.expose()),
            &good.expose().replace("kps_", "kpx_"),
            "kps_'; DROP TABLE api_keys; --aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(ClientSecret::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn debug_and_display_never_show_the_secret() {
        let secret = ClientSecret::generate();
        assert!(!format!("{secret:?}").contains(secret.expose()));
        assert!(!format!("{secret}").contains(secret.expose()));
        assert!(!format!("{:?}", secret.digest()).contains(&secret.digest().to_hex()));
    }

    #[test]
    fn digests_round_trip_through_hex_and_compare() {
        let secret = ClientSecret::generate();
        let digest = secret.digest();
        let back = SecretDigest::from_hex(&digest.to_hex()).expect("hex parses");
        assert!(digest.matches(&back));
        assert!(!digest.matches(&ClientSecret::generate().digest()));
        assert!(SecretDigest::from_hex("zz").is_none());
    }

    #[test]
    fn client_ids_parse_only_in_their_own_format() {
        let id = ClientId::generate();
        assert_eq!(ClientId::parse(id.as_str()).unwrap(), id);
        for bad in ["", "kpc_short", "abc", "kpc_aaaaaaaaaaaaaaaaaaaaaaa!"] {
            assert!(ClientId::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn random_base62_uses_the_whole_alphabet() {
        let sample = random_base62(20_000);
        for c in BASE62 {
            assert!(
                sample.as_bytes().contains(c),
                "never produced {}",
                *c as char
            );
        }
    }
}
