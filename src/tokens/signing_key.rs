//! Signing keys: generated from the OS CSPRNG by aws-lc, stored as PKCS#8 PEM,
//! identified by their RFC 7638 JWK thumbprint.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::Serialize;

use super::ACCESS_TOKEN_TYP;
use crate::domain::SigningAlgorithm;

/// How `jsonwebtoken` names each algorithm Keyport signs with (the
/// algorithm itself is a domain type: settings name it too).
impl SigningAlgorithm {
    pub fn jwt_algorithm(self) -> Algorithm {
        match self {
            SigningAlgorithm::Es256 => Algorithm::ES256,
            SigningAlgorithm::EdDsa => Algorithm::EdDSA,
            SigningAlgorithm::Rs256 => Algorithm::RS256,
        }
    }
}

/// A parsed signing key: both halves ready to use, and its public JWK.
pub struct SigningKey {
    pub kid: String,
    pub algorithm: SigningAlgorithm,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    pub jwk: Jwk,
    signer: PreparedSigner,
    /// The base64url JOSE header every token this key signs carries.
    encoded_header: String,
}

/// The private key parsed once. `jsonwebtoken::encode` parses the PKCS#8
/// document on every call, and for ES256 that parse re-derives the public
/// point: a second scalar multiplication, as costly as the signature itself.
enum PreparedSigner {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Rs256(RsaKeyPair),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("key generation failed")]
    Generate,
    #[error("stored signing key {kid} cannot be read: {reason}")]
    Invalid { kid: String, reason: String },
    #[error("signing failed")]
    Sign,
}

impl SigningKey {
    /// A fresh key pair, returned with its PKCS#8 PEM for storage.
    pub fn generate(algorithm: SigningAlgorithm) -> Result<(Self, String), SigningKeyError> {
        let pkcs8: Vec<u8> = match algorithm {
            SigningAlgorithm::Es256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .and_then(|k| k.to_pkcs8v1())
                .map(|d| d.as_ref().to_vec()),
            SigningAlgorithm::EdDsa => Ed25519KeyPair::generate()
                .and_then(|k| k.to_pkcs8v1())
                .map(|d| d.as_ref().to_vec()),
            SigningAlgorithm::Rs256 => aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048)
                .and_then(|k| k.as_der())
                .map(|d| d.as_ref().to_vec()),
        }
        .map_err(|_| SigningKeyError::Generate)?;
        let pem = to_pem(&pkcs8);
        let key = Self::from_pem(None, algorithm, &pem)?;
        Ok((key, pem))
    }

    /// Parses a stored key. `kid` is checked against the key's thumbprint when
    /// given, so a row edited by hand cannot publish one key under another's id.
    pub fn from_pem(
        kid: Option<&str>,
        algorithm: SigningAlgorithm,
        pem: &str,
    ) -> Result<Self, SigningKeyError> {
        let invalid = |reason: String| SigningKeyError::Invalid {
            kid: kid.unwrap_or("(new)").to_owned(),
            reason,
        };
        let encoding = match algorithm {
            SigningAlgorithm::Es256 => EncodingKey::from_ec_pem(pem.as_bytes()),
            SigningAlgorithm::EdDsa => EncodingKey::from_ed_pem(pem.as_bytes()),
            SigningAlgorithm::Rs256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
        }
        .map_err(|e| invalid(e.to_string()))?;
        let mut jwk = Jwk::from_encoding_key(&encoding, algorithm.jwt_algorithm())
            .map_err(|e| invalid(e.to_string()))?;
        let thumbprint = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| invalid(e.to_string()))?;
        if kid.is_some_and(|kid| kid != thumbprint) {
            return Err(invalid(
                "kid does not match the key's thumbprint".to_owned(),
            ));
        }
        jwk.common.key_id = Some(thumbprint.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(match algorithm {
            SigningAlgorithm::Es256 => KeyAlgorithm::ES256,
            SigningAlgorithm::EdDsa => KeyAlgorithm::EdDSA,
            SigningAlgorithm::Rs256 => KeyAlgorithm::RS256,
        });
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| invalid(e.to_string()))?;
        // EncodingKey holds PKCS#8 for EC and Ed25519 keys, PKCS#1 for RSA.
        let der = encoding.as_bytes();
        let signer = match algorithm {
            SigningAlgorithm::Es256 => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map(PreparedSigner::Es256)
                    .map_err(|e| invalid(e.to_string()))?
            }
            SigningAlgorithm::EdDsa => Ed25519KeyPair::from_pkcs8(der)
                .map(PreparedSigner::EdDsa)
                .map_err(|e| invalid(e.to_string()))?,
            SigningAlgorithm::Rs256 => RsaKeyPair::from_der(der)
                .map(PreparedSigner::Rs256)
                .map_err(|e| invalid(e.to_string()))?,
        };
        let mut header = Header::new(algorithm.jwt_algorithm());
        header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
        header.kid = Some(thumbprint.clone());
        let encoded_header = serde_json::to_vec(&header)
            .map(|json| URL_SAFE_NO_PAD.encode(json))
            .map_err(|e| invalid(e.to_string()))?;
        Ok(SigningKey {
            kid: thumbprint,
            algorithm,
            encoding,
            decoding,
            jwk,
            signer,
            encoded_header,
        })
    }

    /// A compact JWS of `claims` with this key's header (`typ: at+jwt`, its
    /// `kid` and algorithm).
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, SigningKeyError> {
        let json = serde_json::to_vec(claims).map_err(|_| SigningKeyError::Sign)?;
        // Room for the header, the claims and an RSA-4096 signature in base64.
        let mut token = String::with_capacity(self.encoded_header.len() + json.len() * 4 / 3 + 700);
        token.push_str(&self.encoded_header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&json, &mut token);
        let message = token.as_bytes();
        let rng = SystemRandom::new();
        let signature = match &self.signer {
            PreparedSigner::Es256(key) => key
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SigningKeyError::Sign)?,
            PreparedSigner::EdDsa(key) => key.sign(message).as_ref().to_vec(),
            PreparedSigner::Rs256(key) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .map_err(|_| SigningKeyError::Sign)?;
                signature
            }
        };
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }
}

fn to_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_generates_a_key_that_round_trips_through_pem() {
        for algorithm in [
            SigningAlgorithm::Es256,
            SigningAlgorithm::EdDsa,
            SigningAlgorithm::Rs256,
        ] {
            let (key, pem) = SigningKey::generate(algorithm).expect("generates");
            let again = SigningKey::from_pem(Some(&key.kid), algorithm, &pem).expect("parses");
            assert_eq!(again.kid, key.kid);
            let json = serde_json::to_value(&key.jwk).unwrap();
            assert_eq!(json["kid"], key.kid.as_str());
            assert_eq!(json["alg"], algorithm.as_str());
            assert!(json.get("d").is_none(), "private part published: {json}");
        }
    }

    #[test]
    fn every_algorithm_signs_tokens_its_published_key_verifies() {
        for algorithm in [
            SigningAlgorithm::Es256,
            SigningAlgorithm::EdDsa,
            SigningAlgorithm::Rs256,
        ] {
            let (key, _) = SigningKey::generate(algorithm).expect("generates");
            let claims = serde_json::json!({"sub": "u1", "aud": "api", "exp": 4_000_000_000_i64});
            let token = key.sign(&claims).expect("signs");
            let header = jsonwebtoken::decode_header(&token).expect("header");
            assert_eq!(header.alg, algorithm.jwt_algorithm());
            assert_eq!(header.typ.as_deref(), Some(ACCESS_TOKEN_TYP));
            assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
            let from_jwk = DecodingKey::from_jwk(&key.jwk).expect("jwk");
            let mut validation = jsonwebtoken::Validation::new(algorithm.jwt_algorithm());
            validation.set_audience(&["api"]);
            let decoded = jsonwebtoken::decode::<serde_json::Value>(&token, &from_jwk, &validation)
                .unwrap_or_else(|e| panic!("{algorithm} token does not verify: {e}"));
            assert_eq!(decoded.claims, claims);
            // A signature from another key of the same algorithm is refused.
            let (other, _) = SigningKey::generate(algorithm).expect("generates");
            let forged = format!(
                "{}.{}",
                token.rsplit_once('.').unwrap().0,
                other.sign(&claims).unwrap().rsplit_once('.').unwrap().1
            );
            assert!(
                jsonwebtoken::decode::<serde_json::Value>(&forged, &from_jwk, &validation).is_err()
            );
        }
    }

    #[test]
    fn a_kid_that_is_not_the_thumbprint_is_refused() {
        let (_, pem) = SigningKey::generate(SigningAlgorithm::Es256).unwrap();
        assert!(SigningKey::from_pem(Some("forged"), SigningAlgorithm::Es256, &pem).is_err());
    }
}
