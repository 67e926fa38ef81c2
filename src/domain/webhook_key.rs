//! The key that signs a key owner's webhook deliveries, derived from the
//! key's API secret when the key is created. Receivers verify with what the
//! owner already holds (the secret, or the `whsec_…` form shown with it),
//! while Keyport keeps only the derived key, sealed: with the database and
//! the master key one could sign webhooks, never authenticate as the key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::ClientSecret;

/// HKDF-SHA256's `info`: fixed and documented (the book, guides/webhooks.md),
/// so receivers can derive the key themselves.
pub const WEBHOOK_KEY_INFO: &[u8] = b"keyport webhook signing key v1";

/// The prefix Standard Webhooks libraries expect before the base64 key.
pub const WHSEC_PREFIX: &str = "whsec_";

const KEY_LEN: usize = 32;

#[derive(Clone)]
pub struct WebhookSigningKey([u8; KEY_LEN]);

impl std::fmt::Debug for WebhookSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSigningKey(<redacted>)")
    }
}

impl WebhookSigningKey {
    /// HKDF-SHA256 (RFC 5869) of the secret's text, with no salt (so a
    /// salt of 32 zero bytes) and [`WEBHOOK_KEY_INFO`], 32 bytes long.
    pub fn derive(secret: &ClientSecret) -> Self {
        WebhookSigningKey(hkdf_sha256(secret.expose().as_bytes(), WEBHOOK_KEY_INFO))
    }

    /// The key as stored (sealed) bytes come back.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(WebhookSigningKey)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// `whsec_<base64>`: what Standard Webhooks libraries take. Shown once,
    /// with the key's secret.
    pub fn to_whsec(&self) -> String {
        format!("{WHSEC_PREFIX}{}", STANDARD.encode(self.0))
    }

    /// The Standard Webhooks signature of one delivery:
    /// `v1,base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))`.
    pub fn sign(&self, message_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(message_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// HKDF-SHA256 (RFC 5869) with an empty salt, 32 bytes of output.
fn hkdf_sha256(input_key: &[u8], info: &[u8]) -> [u8; KEY_LEN] {
    let mut okm = [0u8; KEY_LEN];
    Hkdf::<Sha256>::new(None, input_key)
        .expand(info, &mut okm)
        .expect("32 bytes is within HKDF-SHA256's 8160-byte limit");
    okm
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5869's test case 3 (SHA-256, empty salt and info): the first
    /// 32 bytes of its output.
    #[test]
    fn the_derivation_is_rfc_5869_hkdf_sha256() {
        let okm = hkdf_sha256(&[0x0bu8; 22], b"");
        let hex: String = okm.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
        );
    }

    #[test]
    fn each_secret_derives_its_own_key_shown_in_whsec_form() {
        let one = ClientSecret::generate();
        let two = ClientSecret::generate();
        let key = WebhookSigningKey::derive(&one);
        assert_eq!(key.expose(), WebhookSigningKey::derive(&one).expose());
        assert_ne!(key.expose(), WebhookSigningKey::derive(&two).expose());
        let whsec = key.to_whsec();
        assert!(whsec.starts_with("whsec_"));
        assert_eq!(STANDARD.decode(&whsec[6..]).unwrap(), key.expose());
        assert!(!format!("{key:?}").contains(&whsec[6..]));
    }
}
