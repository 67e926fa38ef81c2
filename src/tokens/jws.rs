//! JWTs that others sign (RFC 7515 compact form): client assertions and
//! external issuers' tokens. Parsing reads the header (`jsonwebtoken`'s
//! decoding) and claims without trusting them, so the caller can pick the
//! key (`kid`, a client's registered keys); `verify` then checks the
//! signature with that key. Keyport's own part is what it refuses before
//! any key is chosen: an algorithm it does not sign with, a critical header,
//! an oversized token. What the claims must say is the caller's to check:
//! each RFC asks for different ones.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Map, Value};

use super::SigningAlgorithm;
use super::jwk::PublicJwk;

/// Larger than any proof, assertion or workload token seen in practice
/// (a GitHub Actions OIDC token is about 1.5 KiB), small enough that a
/// flood of them costs little.
pub const MAX_JWT_LEN: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("the JWT is malformed")]
    Malformed,
    /// `none`, HMAC, or anything but ES256, EdDSA and RS256 (RFC 8725 §3.1).
    #[error("the JWT's algorithm is not allowed: use ES256, EdDSA or RS256")]
    AlgorithmNotAllowed,
    #[error("the JWT's algorithm does not match its key")]
    AlgorithmMismatch,
    #[error("the JWT's signature is invalid")]
    BadSignature,
    /// RFC 7515 §4.1.11: extensions Keyport does not understand.
    #[error("the JWT has critical header parameters this server does not understand")]
    CriticalHeader,
}

/// A compact JWS, parsed but not yet verified.
#[derive(Debug)]
pub struct UnverifiedJwt<'a> {
    header: Header,
    claims: Map<String, Value>,
    algorithm: SigningAlgorithm,
    signing_input: &'a str,
    signature: &'a str,
}

/// A JWT whose signature verified with the key it was checked against.
#[derive(Debug, Clone)]
pub struct VerifiedJwt {
    pub claims: Map<String, Value>,
}

fn json_object(segment: &str) -> Result<Map<String, Value>, JwsError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwsError::Malformed)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(JwsError::Malformed),
    }
}

/// Why `jsonwebtoken` would not decode a header: an `alg` it does not know
/// (`none`, a misspelling) is a refused algorithm; the rest is malformed.
fn header_refusal(segment: &str) -> JwsError {
    match json_object(segment)
        .ok()
        .as_ref()
        .and_then(|header| header.get("alg"))
        .and_then(Value::as_str)
    {
        Some(alg) if alg.parse::<SigningAlgorithm>().is_err() => JwsError::AlgorithmNotAllowed,
        _ => JwsError::Malformed,
    }
}

/// The algorithms Keyport accepts from others: those it signs with.
fn accepted(algorithm: Algorithm) -> Option<SigningAlgorithm> {
    [
        SigningAlgorithm::Es256,
        SigningAlgorithm::EdDsa,
        SigningAlgorithm::Rs256,
    ]
    .into_iter()
    .find(|ours| ours.jwt_algorithm() == algorithm)
}

impl<'a> UnverifiedJwt<'a> {
    pub fn parse(token: &'a str) -> Result<Self, JwsError> {
        if token.len() > MAX_JWT_LEN {
            return Err(JwsError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwsError::Malformed);
        };
        let header_json = jsonwebtoken::decode_header(token).map_err(|_| header_refusal(header))?;
        let algorithm = accepted(header_json.alg).ok_or(JwsError::AlgorithmNotAllowed)?;
        if header_json.crit.is_some() {
            return Err(JwsError::CriticalHeader);
        }
        let claims = json_object(payload)?;
        if URL_SAFE_NO_PAD.decode(signature).is_err() {
            return Err(JwsError::Malformed);
        }
        Ok(UnverifiedJwt {
            header: header_json,
            claims,
            algorithm,
            signing_input: &token[..header.len() + 1 + payload.len()],
            signature,
        })
    }

    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// The claims, not yet to be trusted: for choosing the key only.
    pub fn unverified_claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// The header's `typ`, if it is a string.
    pub fn typ(&self) -> Option<&str> {
        self.header.typ.as_deref()
    }

    /// The header's `kid`, if it is a string.
    /// The (unverified) `aud`, a string or a list of strings: to pick which
    /// keys to verify with, never to trust.
    pub fn audiences(&self) -> Vec<&str> {
        match self.unverified_claims().get("aud") {
            Some(Value::String(aud)) => vec![aud.as_str()],
            Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    pub fn kid(&self) -> Option<&str> {
        self.header.kid.as_deref()
    }

    /// Checks the signature with `key`, whose algorithm the token must name.
    pub fn verify(self, key: &PublicJwk) -> Result<VerifiedJwt, JwsError> {
        if self.algorithm != key.algorithm() {
            return Err(JwsError::AlgorithmMismatch);
        }
        if !key.verifies(self.signing_input.as_bytes(), self.signature) {
            return Err(JwsError::BadSignature);
        }
        Ok(VerifiedJwt {
            claims: self.claims,
        })
    }
}

/// Why a JWT's times refuse it (RFC 7519 §4.1.4 to §4.1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtTimeError {
    /// No `exp`: every JWT Keyport accepts from others must expire.
    NoExpiry,
    Expired,
    NotYetValid,
    IssuedInFuture,
}

impl VerifiedJwt {
    /// `exp` required and not past, `nbf` and `iat` (when present) not in
    /// the future, each with `leeway` seconds; answers `exp`.
    pub fn check_times(&self, at: i64, leeway: i64) -> Result<i64, JwtTimeError> {
        let exp = self.time_claim("exp").ok_or(JwtTimeError::NoExpiry)?;
        if exp.saturating_add(leeway) <= at {
            return Err(JwtTimeError::Expired);
        }
        let future = |claim| {
            self.time_claim(claim)
                .is_some_and(|t| t > at.saturating_add(leeway))
        };
        if future("nbf") {
            return Err(JwtTimeError::NotYetValid);
        }
        if future("iat") {
            return Err(JwtTimeError::IssuedInFuture);
        }
        Ok(exp)
    }

    pub fn string_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A NumericDate claim (RFC 7519 §2), in whole seconds.
    pub fn time_claim(&self, name: &str) -> Option<i64> {
        let value = self.claims.get(name)?;
        value
            .as_i64()
            .or_else(|| value.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
    }

    /// Whether `aud` (a string or an array of strings) names `audience`.
    pub fn has_audience(&self, audience: &str) -> bool {
        names_audience(&self.claims, audience)
    }
}

fn names_audience(claims: &Map<String, Value>, audience: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(aud)) => aud == audience,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rfc7515_key() -> PublicJwk {
        PublicJwk::parse(&json!({
            "kty": "EC",
            "crv": "P-256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
        }))
        .unwrap()
    }

    const RFC7515_A3: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";

    #[test]
    fn a_jws_signed_by_the_key_verifies_and_yields_its_claims() {
        let jwt = UnverifiedJwt::parse(RFC7515_A3).unwrap();
        let verified = jwt.verify(&rfc7515_key()).unwrap();
        assert_eq!(verified.string_claim("iss"), Some("joe"));
        assert_eq!(verified.time_claim("exp"), Some(1300819380));
    }

    #[test]
    fn tokens_of_every_algorithm_verify_with_the_published_jwk_and_not_with_another() {
        use crate::tokens::SigningKey;
        for algorithm in [
            SigningAlgorithm::Es256,
            SigningAlgorithm::EdDsa,
            SigningAlgorithm::Rs256,
        ] {
            let (signer, _) = SigningKey::generate(algorithm).unwrap();
            let (other, _) = SigningKey::generate(algorithm).unwrap();
            let token = signer.sign(&json!({"sub": "s"})).unwrap();
            let published = PublicJwk::parse(&serde_json::to_value(&signer.jwk).unwrap()).unwrap();
            let foreign = PublicJwk::parse(&serde_json::to_value(&other.jwk).unwrap()).unwrap();
            assert_eq!(published.algorithm(), algorithm);
            assert_eq!(published.thumbprint(), signer.kid, "{algorithm}");
            let verified = UnverifiedJwt::parse(&token).unwrap().verify(&published);
            assert_eq!(verified.unwrap().string_claim("sub"), Some("s"));
            assert_eq!(
                UnverifiedJwt::parse(&token)
                    .unwrap()
                    .verify(&foreign)
                    .unwrap_err(),
                JwsError::BadSignature,
                "{algorithm}"
            );
        }
    }

    #[test]
    fn times_are_checked_with_the_leeway_and_exp_is_required() {
        let at = 1_000_000;
        let jwt = |claims: Value| VerifiedJwt {
            claims: claims.as_object().unwrap().clone(),
        };
        assert_eq!(
            jwt(json!({"exp": at + 60})).check_times(at, 30),
            Ok(at + 60)
        );
        assert_eq!(
            jwt(json!({"exp": at - 10})).check_times(at, 30),
            Ok(at - 10)
        );
        assert_eq!(
            jwt(json!({"exp": at - 30})).check_times(at, 30),
            Err(JwtTimeError::Expired)
        );
        assert_eq!(
            jwt(json!({"iat": at})).check_times(at, 30),
            Err(JwtTimeError::NoExpiry)
        );
        assert_eq!(
            jwt(json!({"exp": at + 600, "nbf": at + 31})).check_times(at, 30),
            Err(JwtTimeError::NotYetValid)
        );
        assert_eq!(
            jwt(json!({"exp": at + 600, "iat": at + 31})).check_times(at, 30),
            Err(JwtTimeError::IssuedInFuture)
        );
    }

    #[test]
    fn a_changed_payload_fails_the_signature() {
        let (head, rest) = RFC7515_A3.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let forged = format!(
            "{head}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(br#"{"iss":"mallory"}"#)
        );
        let jwt = UnverifiedJwt::parse(&forged).unwrap();
        assert_eq!(
            jwt.verify(&rfc7515_key()).unwrap_err(),
            JwsError::BadSignature
        );
    }

    fn token_with_header(header: Value) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#),
            URL_SAFE_NO_PAD.encode([1u8; 64])
        )
    }

    #[test]
    fn none_hmac_and_unknown_algorithms_are_refused_before_any_key_is_chosen() {
        for alg in ["none", "HS256", "ES384", "PS256", "es256", ""] {
            let token = token_with_header(json!({"alg": alg}));
            assert_eq!(
                UnverifiedJwt::parse(&token).unwrap_err(),
                JwsError::AlgorithmNotAllowed,
                "{alg}"
            );
        }
        let missing = token_with_header(json!({"typ": "JWT"}));
        assert_eq!(
            UnverifiedJwt::parse(&missing).unwrap_err(),
            JwsError::Malformed
        );
    }

    #[test]
    fn a_token_naming_another_algorithm_than_its_key_is_refused() {
        let token = token_with_header(json!({"alg": "EdDSA"}));
        let jwt = UnverifiedJwt::parse(&token).unwrap();
        assert_eq!(
            jwt.verify(&rfc7515_key()).unwrap_err(),
            JwsError::AlgorithmMismatch
        );
    }

    #[test]
    fn critical_extensions_and_malformed_shapes_are_refused() {
        let crit = token_with_header(json!({"alg": "ES256", "crit": ["exp"]}));
        assert_eq!(
            UnverifiedJwt::parse(&crit).unwrap_err(),
            JwsError::CriticalHeader
        );
        let oversized = "a".repeat(MAX_JWT_LEN + 1);
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.e30.AA",
            "e30.e30.AA",
            "WzFd.e30.AA",
            oversized.as_str(),
        ] {
            assert!(UnverifiedJwt::parse(bad).is_err(), "{bad}");
        }
    }
}
