//! Sealed storage: values the server must *use* (signing keys' private
//! halves, webhook-signing keys), as opposed to secrets it only compares
//! (stored as digests), are kept in the database encrypted under a master key
//! that lives outside it.
//!
//! A sealed value is `kpseal:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`
//! (AES-256-GCM, a random 96-bit nonce per value). The key id names the master
//! key that sealed it, so a rotation can run while instances read with both the
//! old and the new key. The additional data binds each value to its table,
//! column and row: a sealed value copied into another row or column does not
//! open.

pub mod master_key;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub use master_key::{
    Database, MasterKey, MasterKeyError, MasterKeySettings, MasterKeyText, existing_sealer,
    resolve_sealer,
};

const PREFIX: &str = "kpseal:v1:";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error(
        "a value in {table}.{column} is sealed with master key {key_id}, which is not configured; \
         set it as KEYPORT_MASTER_KEY_PREVIOUS (or master_key_previous_file) until \
         `keyport master-key rotate` has re-sealed everything"
    )]
    UnknownKey {
        table: &'static str,
        column: &'static str,
        key_id: String,
    },
    #[error("a value in {table}.{column} (row {row}) is not a sealed value")]
    Malformed {
        table: &'static str,
        column: &'static str,
        row: String,
    },
    /// Wrong key material under a known id, a value moved to another row, or
    /// tampering: GCM's tag does not say which.
    #[error("a value in {table}.{column} (row {row}) does not open: it was altered or moved")]
    Tampered {
        table: &'static str,
        column: &'static str,
        row: String,
    },
    #[error("the system random generator failed")]
    Random,
}

/// Where a sealed value lives; it is authenticated with the value, so the
/// value opens only there.
#[derive(Debug, Clone, Copy)]
pub struct SealedAt<'a> {
    pub table: &'static str,
    pub column: &'static str,
    pub row: &'a str,
}

impl SealedAt<'_> {
    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(self.table.len() + self.column.len() + self.row.len() + 2);
        aad.extend_from_slice(self.table.as_bytes());
        aad.push(0);
        aad.extend_from_slice(self.column.as_bytes());
        aad.push(0);
        aad.extend_from_slice(self.row.as_bytes());
        aad
    }
}

struct OpenKey {
    id: String,
    aead: RandomizedNonceKey,
    /// HKDF-Extract of the master key: the root of keys derived for other
    /// purposes ([`Sealer::derive_keys`]), never the sealing key itself.
    prk: aws_lc_rs::hkdf::Prk,
}

impl OpenKey {
    fn new(key: &MasterKey) -> Self {
        OpenKey {
            id: key.id().to_owned(),
            // 32 bytes always make an AES-256 key.
            aead: RandomizedNonceKey::new(&AES_256_GCM, key.expose())
                .expect("a master key is 32 bytes"),
            prk: aws_lc_rs::hkdf::Salt::new(aws_lc_rs::hkdf::HKDF_SHA256, b"keyport derived keys")
                .extract(key.expose()),
        }
    }
}

/// Seals with the current master key; opens with the current or the previous
/// one.
pub struct Sealer {
    current: OpenKey,
    previous: Option<OpenKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("current", &self.current.id)
            .field("previous", &self.previous.as_ref().map(|k| &k.id))
            .finish()
    }
}

impl Sealer {
    pub fn new(current: &MasterKey, previous: Option<&MasterKey>) -> Self {
        Sealer {
            current: OpenKey::new(current),
            previous: previous
                .filter(|p| p.id() != current.id())
                .map(OpenKey::new),
        }
    }

    /// The id of the key new values are sealed with.
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// 32-byte keys for `purpose` (HKDF-SHA256, RFC 5869, from the master
    /// keys): the current master key's first, then the previous one's, so
    /// what one instance makes with its current key, another still
    /// accepts during a master-key rotation. Every instance with the same
    /// master key derives the same keys: DPoP nonces use this.
    pub fn derive_keys(&self, purpose: &[u8]) -> Vec<[u8; 32]> {
        [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|key| {
                let info = [purpose];
                let okm = key.prk.expand(&info, aws_lc_rs::hkdf::HKDF_SHA256).ok()?;
                let mut out = [0u8; 32];
                okm.fill(&mut out).ok()?;
                Some(out)
            })
            .collect()
    }

    pub fn seal(&self, at: SealedAt<'_>, clear: &[u8]) -> Result<String, SealError> {
        let mut in_out = clear.to_vec();
        let nonce = self
            .current
            .aead
            .seal_in_place_append_tag(Aad::from(at.aad()), &mut in_out)
            .map_err(|_| SealError::Random)?;
        let mut body = Vec::with_capacity(NONCE_LEN + in_out.len());
        body.extend_from_slice(nonce.as_ref());
        body.extend_from_slice(&in_out);
        Ok(format!(
            "{PREFIX}{}:{}",
            self.current.id,
            URL_SAFE_NO_PAD.encode(body)
        ))
    }

    pub fn open(&self, at: SealedAt<'_>, sealed: &str) -> Result<Vec<u8>, SealError> {
        let malformed = || SealError::Malformed {
            table: at.table,
            column: at.column,
            row: at.row.to_owned(),
        };
        let (key_id, body) = sealed
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .ok_or_else(malformed)?;
        let key = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| k.id == key_id)
            .ok_or_else(|| SealError::UnknownKey {
                table: at.table,
                column: at.column,
                key_id: key_id.to_owned(),
            })?;
        let body = URL_SAFE_NO_PAD.decode(body).map_err(|_| malformed())?;
        if body.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(malformed());
        }
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| malformed())?;
        let mut in_out = ciphertext.to_vec();
        let clear = key
            .aead
            .open_in_place(nonce, Aad::from(at.aad()), &mut in_out)
            .map_err(|_| SealError::Tampered {
                table: at.table,
                column: at.column,
                row: at.row.to_owned(),
            })?;
        Ok(clear.to_vec())
    }

    /// Whether `stored` is a sealed value at all (rows written before sealed
    /// storage hold their value in clear until converted).
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }

    /// The id of the master key that sealed `sealed`, if it is a sealed value.
    pub fn key_id_of(sealed: &str) -> Option<&str> {
        sealed
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .map(|(id, _)| id)
    }

    /// Whether `sealed` was sealed by another key than the current one, and
    /// so should be re-sealed by a rotation.
    pub fn needs_reseal(&self, sealed: &str) -> bool {
        let key_id = sealed
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .map(|(id, _)| id);
        key_id != Some(self.current.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(row: &str) -> SealedAt<'_> {
        SealedAt {
            table: "signing_keys",
            column: "private_key_sealed",
            row,
        }
    }

    #[test]
    fn a_sealed_value_opens_where_it_was_sealed_and_names_its_key() {
        let key = MasterKey::generate();
        let sealer = Sealer::new(&key, None);
        let sealed = sealer.seal(at("kid-1"), b"private half").expect("seal");
        assert!(sealed.starts_with(&format!("kpseal:v1:{}:", key.id())));
        assert!(!sealed.contains("private half"));
        assert_eq!(sealer.open(at("kid-1"), &sealed).unwrap(), b"private half");
        // A fresh nonce each time: the same value never seals alike.
        assert_ne!(sealed, sealer.seal(at("kid-1"), b"private half").unwrap());
    }

    #[test]
    fn a_value_moved_to_another_row_or_altered_does_not_open() {
        let sealer = Sealer::new(&MasterKey::generate(), None);
        let sealed = sealer.seal(at("kid-1"), b"private half").unwrap();
        assert!(matches!(
            sealer.open(at("kid-2"), &sealed),
            Err(SealError::Tampered { .. })
        ));
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert!(matches!(
            sealer.open(at("kid-1"), &altered),
            Err(SealError::Tampered { .. })
        ));
        assert!(matches!(
            sealer.open(at("kid-1"), "-----BEGIN PRIVATE KEY-----"),
            Err(SealError::Malformed { .. })
        ));
        assert!(matches!(
            sealer.open(at("kid-1"), "kpseal:v1:x"),
            Err(SealError::Malformed { .. })
        ));
    }

    #[test]
    fn the_previous_key_still_opens_and_marks_values_for_resealing() {
        let old = MasterKey::generate();
        let new = MasterKey::generate();
        let before = Sealer::new(&old, None);
        let sealed = before.seal(at("kid-1"), b"x").unwrap();
        let during = Sealer::new(&new, Some(&old));
        assert_eq!(during.open(at("kid-1"), &sealed).unwrap(), b"x");
        assert!(during.needs_reseal(&sealed));
        let resealed = during.seal(at("kid-1"), b"x").unwrap();
        assert!(!during.needs_reseal(&resealed));
        let after = Sealer::new(&new, None);
        let err = after.open(at("kid-1"), &sealed).unwrap_err();
        assert!(
            err.to_string().contains(old.id()) && err.to_string().contains("PREVIOUS"),
            "{err}"
        );
    }
}
