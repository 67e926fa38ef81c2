//! Server nonces (§8), stateless: every instance holding the same key
//! accepts every other's.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::now;

/// Stateless server nonces (§8): an HMAC over a time slot, so every
/// instance holding the same key accepts every other's nonces, with nothing
/// stored. A nonce is good in its slot and the next one.
pub struct DpopNonces {
    /// The first key makes nonces; all are accepted (a master-key rotation
    /// gives two).
    keys: Vec<[u8; 32]>,
    slot_seconds: i64,
}

impl std::fmt::Debug for DpopNonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopNonces")
            .field("keys", &"<redacted>")
            .field("slot_seconds", &self.slot_seconds)
            .finish()
    }
}

/// How a presented nonce stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NonceStanding {
    /// Of the current slot.
    Current,
    /// Of the previous slot: accepted, and a fresh one is sent back.
    Previous,
    Stale,
    Invalid,
}

impl DpopNonces {
    /// `keys`: at least one 32-byte key (none: an empty list refuses every
    /// nonce); `slot`: how long one nonce is handed out.
    pub fn new(keys: Vec<[u8; 32]>, slot: Duration) -> Self {
        DpopNonces {
            keys,
            slot_seconds: slot.as_secs().max(1) as i64,
        }
    }

    fn slot(&self, at: i64) -> i64 {
        at.div_euclid(self.slot_seconds)
    }

    fn tag(key: &[u8; 32], slot: i64) -> [u8; 16] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
        mac.update(b"keyport dpop nonce\0");
        mac.update(&slot.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&full[..16]);
        tag
    }

    fn make(&self, slot: i64) -> String {
        let Some(key) = self.keys.first() else {
            return String::new();
        };
        let mut bytes = Vec::with_capacity(24);
        bytes.extend_from_slice(&slot.to_be_bytes());
        bytes.extend_from_slice(&Self::tag(key, slot));
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The nonce of the current slot.
    pub fn current(&self) -> String {
        self.make(self.slot(now()))
    }

    pub(super) fn standing(&self, nonce: &str, at: i64) -> NonceStanding {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(nonce) else {
            return NonceStanding::Invalid;
        };
        if bytes.len() != 24 {
            return NonceStanding::Invalid;
        }
        let mut slot_bytes = [0u8; 8];
        slot_bytes.copy_from_slice(&bytes[..8]);
        let slot = i64::from_be_bytes(slot_bytes);
        let authentic = self.keys.iter().any(|key| {
            subtle::ConstantTimeEq::ct_eq(&Self::tag(key, slot)[..], &bytes[8..]).into()
        });
        if !authentic {
            return NonceStanding::Invalid;
        }
        let current = self.slot(at);
        if slot == current {
            NonceStanding::Current
        } else if slot == current - 1 {
            NonceStanding::Previous
        } else {
            NonceStanding::Stale
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_hold_for_their_slot_and_the_next_and_only_under_their_key() {
        let nonces = DpopNonces::new(vec![[7u8; 32]], Duration::from_secs(60));
        let at = 1_000_020;
        let current = nonces.make(nonces.slot(at));
        assert_eq!(nonces.standing(&current, at), NonceStanding::Current);
        assert_eq!(nonces.standing(&current, at + 60), NonceStanding::Previous);
        assert_eq!(nonces.standing(&current, at + 120), NonceStanding::Stale);
        let other = DpopNonces::new(vec![[8u8; 32]], Duration::from_secs(60));
        assert_eq!(other.standing(&current, at), NonceStanding::Invalid);
        let rotated = DpopNonces::new(vec![[8u8; 32], [7u8; 32]], Duration::from_secs(60));
        assert_eq!(rotated.standing(&current, at), NonceStanding::Current);
        assert_eq!(nonces.standing("garbage!", at), NonceStanding::Invalid);
    }
}
