//! Public keys that others hold the private half of, as JWKs (RFC 7517):
//! a DPoP proof's key (RFC 9449), a client's `private_key_jwt` key
//! (RFC 7523), an external issuer's signing key (RFC 8693 token exchange).
//!
//! The key itself, its RFC 7638 thumbprint and signature checks are
//! `jsonwebtoken`'s. What is Keyport's is the stricter door in front:
//! only what Keyport itself signs with is accepted, one algorithm per key
//! type, so a key never lets a token choose how it is checked: P-256 is
//! ES256, Ed25519 is EdDSA, RSA (2048 to 8192 bits) is RS256. Symmetric and
//! private keys are refused, and an EC point must lie on its curve.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ED25519, ParsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use serde_json::{Map, Value};

use super::SigningAlgorithm;

/// Why a JWK was refused; each message names the member at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    #[error("a JWK must be a JSON object")]
    NotAnObject,
    #[error("the JWK holds a private or symmetric key member (`{0}`): send the public key only")]
    PrivateMember(&'static str),
    #[error("the JWK's `kty` must be EC (P-256), OKP (Ed25519) or RSA")]
    UnsupportedKeyType,
    #[error("the JWK's `crv` must be P-256 for EC keys and Ed25519 for OKP keys")]
    UnsupportedCurve,
    #[error("the JWK's `alg` does not match its key type (EC: ES256, OKP: EdDSA, RSA: RS256)")]
    AlgorithmMismatch,
    #[error("the JWK's `use` must be `sig`")]
    NotForSignatures,
    #[error("the JWK's `{0}` member is missing or not base64url")]
    BadMember(&'static str),
    #[error("the RSA key must be 2048 to 8192 bits")]
    RsaKeySize,
    #[error("the JWK is not a valid public key")]
    InvalidKey,
    #[error("the JWK's `kid` must be a string of at most 128 characters")]
    BadKeyId,
}

/// Members that only a private or symmetric key has.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A public signing key, checked, with its RFC 7638 thumbprint.
#[derive(Clone)]
pub struct PublicJwk {
    algorithm: SigningAlgorithm,
    /// The public members, `kid` and `alg` only.
    jwk: Jwk,
    thumbprint: String,
    key: DecodingKey,
}

impl std::fmt::Debug for PublicJwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicJwk")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid())
            .field("thumbprint", &self.thumbprint)
            .finish()
    }
}

fn member<'a>(object: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, JwkError> {
    object
        .get(name)
        .and_then(Value::as_str)
        .ok_or(JwkError::BadMember(name))
}

/// A base64url member, decoded; padding and other alphabets are refused,
/// so one key has one spelling and one thumbprint.
fn bytes_member(object: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, JwkError> {
    URL_SAFE_NO_PAD
        .decode(member(object, name)?)
        .map_err(|_| JwkError::BadMember(name))
}

/// Whether the curve point (`0x04‖x‖y` for P-256, `x` for Ed25519) is a
/// public key: `jsonwebtoken` takes the bytes as they come, and a point off
/// the curve is better refused when the key is registered than at each use.
fn is_point(
    algorithm: &'static dyn aws_lc_rs::signature::VerificationAlgorithm,
    point: Vec<u8>,
) -> bool {
    ParsedPublicKey::new(algorithm, point).is_ok()
}

impl PublicJwk {
    /// Parses a JWK object, refusing anything but a public ES256, EdDSA or
    /// RS256 signing key.
    pub fn parse(value: &Value) -> Result<Self, JwkError> {
        let object = value.as_object().ok_or(JwkError::NotAnObject)?;
        if let Some(private) = PRIVATE_MEMBERS.iter().find(|m| object.contains_key(**m)) {
            return Err(JwkError::PrivateMember(private));
        }
        if object.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
            return Err(JwkError::NotForSignatures);
        }
        let kid = match object.get("kid") {
            None => None,
            Some(Value::String(kid)) if !kid.is_empty() && kid.chars().count() <= 128 => {
                Some(kid.clone())
            }
            Some(_) => return Err(JwkError::BadKeyId),
        };
        let kty = object.get("kty").and_then(Value::as_str);
        let crv = object.get("crv").and_then(Value::as_str);
        let (algorithm, public_members): (_, &[&str]) = match kty {
            Some("EC") => {
                if crv != Some("P-256") {
                    return Err(JwkError::UnsupportedCurve);
                }
                let x = bytes_member(object, "x")?;
                let y = bytes_member(object, "y")?;
                if x.len() != 32 {
                    return Err(JwkError::BadMember("x"));
                }
                if y.len() != 32 {
                    return Err(JwkError::BadMember("y"));
                }
                if !is_point(&ECDSA_P256_SHA256_FIXED, [&[0x04][..], &x, &y].concat()) {
                    return Err(JwkError::InvalidKey);
                }
                (SigningAlgorithm::Es256, &["kty", "crv", "x", "y"])
            }
            Some("OKP") => {
                if crv != Some("Ed25519") {
                    return Err(JwkError::UnsupportedCurve);
                }
                let x = bytes_member(object, "x")?;
                if x.len() != 32 {
                    return Err(JwkError::BadMember("x"));
                }
                if !is_point(&ED25519, x) {
                    return Err(JwkError::InvalidKey);
                }
                (SigningAlgorithm::EdDsa, &["kty", "crv", "x"])
            }
            Some("RSA") => {
                let n = bytes_member(object, "n")?;
                let e = bytes_member(object, "e")?;
                let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
                if !(2048..=8192).contains(&bits) || n.first() == Some(&0) {
                    return Err(JwkError::RsaKeySize);
                }
                if e.is_empty() || e.len() > 8 || e.first() == Some(&0) {
                    return Err(JwkError::BadMember("e"));
                }
                (SigningAlgorithm::Rs256, &["kty", "n", "e"])
            }
            _ => return Err(JwkError::UnsupportedKeyType),
        };
        if let Some(alg) = object.get("alg")
            && alg.as_str() != Some(algorithm.as_str())
        {
            return Err(JwkError::AlgorithmMismatch);
        }
        // The members checked above, `kid` and `alg`: nothing else is kept,
        // stored or listed.
        let mut kept: Map<String, Value> = public_members
            .iter()
            .map(|name| ((*name).to_owned(), object[*name].clone()))
            .collect();
        if let Some(kid) = kid {
            kept.insert("kid".to_owned(), Value::String(kid));
        }
        kept.insert("alg".to_owned(), algorithm.as_str().into());
        let jwk: Jwk =
            serde_json::from_value(Value::Object(kept)).map_err(|_| JwkError::InvalidKey)?;
        let thumbprint = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|_| JwkError::InvalidKey)?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| JwkError::InvalidKey)?;
        Ok(PublicJwk {
            algorithm,
            jwk,
            thumbprint,
            key,
        })
    }

    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    pub fn kid(&self) -> Option<&str> {
        self.jwk.common.key_id.as_deref()
    }

    /// The RFC 7638 SHA-256 thumbprint, base64url: DPoP's `jkt`.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The key as a JWK with its public members, `kid` and `alg`: what is
    /// stored and listed.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(&self.jwk).expect("a parsed JWK serializes")
    }

    /// Whether `signature` (base64url, JWS form: ECDSA as r‖s) signs
    /// `message`.
    pub fn verifies(&self, message: &[u8], signature: &str) -> bool {
        jsonwebtoken::crypto::verify(
            signature,
            message,
            &self.key,
            self.algorithm.jwt_algorithm(),
        )
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_rfc_7638_example_key_has_the_rfc_thumbprint() {
        // RFC 7638 §3.1.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let key = PublicJwk::parse(&jwk).unwrap();
        assert_eq!(
            key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        assert_eq!(key.algorithm(), SigningAlgorithm::Rs256);
        assert_eq!(key.kid(), Some("2011-04-29"));
    }

    fn p256() -> Value {
        // RFC 7515 Appendix A.3's key, public half.
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
        })
    }

    #[test]
    fn the_rfc_7515_es256_example_verifies() {
        // RFC 7515 Appendix A.3.
        let key = PublicJwk::parse(&p256()).unwrap();
        let input = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        let signature = "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
        assert!(key.verifies(input.as_bytes(), signature));
        assert!(!key.verifies(b"another message", signature));
        assert!(!key.verifies(input.as_bytes(), "not base64url!"));
    }

    #[test]
    fn private_symmetric_and_unsupported_keys_are_refused_saying_why() {
        let mut private = p256();
        private["d"] = json!("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI");
        assert_eq!(
            PublicJwk::parse(&private).unwrap_err(),
            JwkError::PrivateMember("d")
        );
        let symmetric = json!({"kty": "oct", "k": "c2VjcmV0"});
        assert_eq!(
            PublicJwk::parse(&symmetric).unwrap_err(),
            JwkError::PrivateMember("k")
        );
        let mut p384 = p256();
        p384["crv"] = json!("P-384");
        assert_eq!(
            PublicJwk::parse(&p384).unwrap_err(),
            JwkError::UnsupportedCurve
        );
        let mut hs = p256();
        hs["alg"] = json!("HS256");
        assert_eq!(
            PublicJwk::parse(&hs).unwrap_err(),
            JwkError::AlgorithmMismatch
        );
        let mut encryption = p256();
        encryption["use"] = json!("enc");
        assert_eq!(
            PublicJwk::parse(&encryption).unwrap_err(),
            JwkError::NotForSignatures
        );
        let mut off_curve = p256();
        off_curve["y"] = json!(URL_SAFE_NO_PAD.encode([7u8; 32]));
        assert_eq!(
            PublicJwk::parse(&off_curve).unwrap_err(),
            JwkError::InvalidKey
        );
        let mut padded = p256();
        padded["x"] = json!("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU=");
        assert_eq!(
            PublicJwk::parse(&padded).unwrap_err(),
            JwkError::BadMember("x")
        );
        let small_rsa =
            json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xc1u8; 128]), "e": "AQAB"});
        assert_eq!(
            PublicJwk::parse(&small_rsa).unwrap_err(),
            JwkError::RsaKeySize
        );
        assert_eq!(
            PublicJwk::parse(&json!("not an object")).unwrap_err(),
            JwkError::NotAnObject
        );
        assert_eq!(
            PublicJwk::parse(&json!({"kty": "EC"})).unwrap_err(),
            JwkError::UnsupportedCurve
        );
    }

    #[test]
    fn the_stored_form_keeps_public_members_kid_and_alg_only() {
        let mut with_extras = p256();
        with_extras["kid"] = json!("k1");
        with_extras["x5u"] = json!("https://example.com/x");
        let key = PublicJwk::parse(&with_extras).unwrap();
        let stored = key.to_json();
        assert_eq!(stored["alg"], "ES256");
        assert_eq!(stored["kid"], "k1");
        assert!(stored.get("x5u").is_none());
        let again = PublicJwk::parse(&stored).unwrap();
        assert_eq!(again.thumbprint(), key.thumbprint());
    }
}
