//! Parsing a token request (RFC 6749 §4.4.2, §2.3.1) from its Authorization
//! header, media type and body, with no I/O, so it can be fuzzed on its own.
//! A client authenticates with its secret (HTTP Basic or the body) or with a
//! JWT assertion (RFC 7523 §2.2, `private_key_jwt`), one method per request.

use std::collections::HashMap;

use base64::Engine;
use percent_encoding::percent_decode_str;

use super::error::OAuthError;
use crate::domain::exchange::{ACCESS_TOKEN_TYPE, SubjectTokenType, TOKEN_EXCHANGE_GRANT};

/// `client_assertion_type` for a JWT client assertion (RFC 7523 §2.2).
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A client ID and secret as presented, not yet checked.
pub struct SecretCredentials {
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for SecretCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// A JWT client assertion as presented (RFC 7523 §2.2), not yet checked.
pub struct ClientAssertion {
    /// The `client_id` parameter, if sent: it must then name the client
    /// the assertion is for.
    pub client_id: Option<String>,
    pub assertion: String,
}

impl std::fmt::Debug for ClientAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAssertion")
            .field("client_id", &self.client_id)
            .field("assertion", &"<redacted>")
            .finish()
    }
}

/// How the client authenticated, as presented, not yet checked.
#[derive(Debug)]
pub enum ClientCredentials {
    /// `client_secret_basic` or `client_secret_post`.
    Secret(SecretCredentials),
    /// `private_key_jwt`.
    Assertion(ClientAssertion),
    /// A `client_id` alone: `tls_client_auth` or
    /// `self_signed_tls_client_auth` (RFC 8705 §2) when the client
    /// presented a certificate; nothing otherwise.
    ClientId(String),
}

#[derive(Debug)]
pub struct TokenRequest {
    /// Always there for client credentials; for a token exchange, `None`
    /// when the client did not authenticate (a trusted issuer's token is
    /// its own credential).
    pub credentials: Option<ClientCredentials>,
    pub scope: Option<String>,
    pub resource: Option<String>,
    /// `Some` for `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`.
    pub exchange: Option<TokenExchangeParameters>,
}

/// RFC 8693 §2.1's parameters, shape-checked.
pub struct TokenExchangeParameters {
    pub subject_token: String,
    pub subject_token_type: SubjectTokenType,
    pub actor_token: Option<String>,
    pub requested_token_type: Option<String>,
}

impl std::fmt::Debug for TokenExchangeParameters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchangeParameters")
            .field("subject_token", &"<redacted>")
            .field("subject_token_type", &self.subject_token_type)
            .field(
                "actor_token",
                &self.actor_token.as_ref().map(|_| "<redacted>"),
            )
            .field("requested_token_type", &self.requested_token_type)
            .finish()
    }
}

/// Parses `Authorization: Basic …` per RFC 6749 §2.3.1: base64 of
/// `urlencode(client_id):urlencode(client_secret)`.
pub fn parse_basic_authorization(value: &[u8]) -> Result<SecretCredentials, OAuthError> {
    let malformed = || OAuthError::invalid_client("the Basic Authorization header is malformed");
    let value = std::str::from_utf8(value).map_err(|_| malformed())?;
    let (scheme, encoded) = value.trim().split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client(
            "authenticate with HTTP Basic (client_secret_basic) or client_id and client_secret in the body",
        ));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    Ok(SecretCredentials {
        client_id: form_decode(id).ok_or_else(malformed)?,
        client_secret: form_decode(secret).ok_or_else(malformed)?,
    })
}

/// `application/x-www-form-urlencoded` decoding of one value: `+` is a space.
fn form_decode(raw: &str) -> Option<String> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// Body parameters as (name, value) pairs, from a form or a JSON object.
fn body_parameters(
    media_type: Option<&str>,
    body: &[u8],
) -> Result<Vec<(String, String)>, OAuthError> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    match media_type {
        Some("application/x-www-form-urlencoded") => serde_urlencoded::from_bytes(body)
            .map_err(|_| OAuthError::invalid_request("the form body is malformed")),
        Some("application/json") => {
            // Every member in order, duplicates kept, so a repeated parameter
            // is refused as in a form (a JSON map would keep only the last).
            let JsonMembers(members) = serde_json::from_slice(body)
                .map_err(|_| OAuthError::invalid_request("the JSON body is not a JSON object"))?;
            members
                .into_iter()
                .map(|(name, value)| match value {
                    serde_json::Value::String(s) => Ok((name, s)),
                    _ => Err(OAuthError::invalid_request(format!(
                        "parameter `{}` must be a string",
                        preview(&name)
                    ))),
                })
                .collect()
        }
        _ => Err(OAuthError::invalid_request(
            "send the parameters as application/x-www-form-urlencoded (or application/json)",
        )),
    }
}

/// The members of a JSON object, in order and with duplicates.
struct JsonMembers(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for JsonMembers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = JsonMembers;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<JsonMembers, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(JsonMembers(members))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// The known parameters of a request, each at most once (RFC 6749 §3.2);
/// unrecognised parameters are ignored.
fn known_parameters(
    media_type: Option<&str>,
    body: &[u8],
    known: &[&'static str],
) -> Result<HashMap<&'static str, String>, OAuthError> {
    let mut found = HashMap::new();
    for (name, value) in body_parameters(media_type, body)? {
        let Some(known_name) = known.iter().find(|k| **k == name) else {
            continue;
        };
        if found.insert(*known_name, value).is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter `{name}` is repeated"
            )));
        }
    }
    Ok(found)
}

/// Client authentication from the Authorization header, the body's secret
/// or the body's assertion: exactly one of them (RFC 6749 §2.3).
fn client_credentials(
    authorization: &[&[u8]],
    params: &mut HashMap<&'static str, String>,
) -> Result<ClientCredentials, OAuthError> {
    let client_id = params.remove("client_id");
    let client_secret = params.remove("client_secret");
    let assertion_type = params.remove("client_assertion_type");
    let assertion = params.remove("client_assertion");
    if assertion_type.is_some() || assertion.is_some() {
        if !authorization.is_empty() || client_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "use one client authentication method: a client assertion, HTTP Basic or \
                 client_secret, not several",
            ));
        }
        return client_assertion(client_id, assertion_type, assertion)
            .map(ClientCredentials::Assertion);
    }
    if let (Some(client_id), [], None) = (&client_id, authorization, &client_secret) {
        return Ok(ClientCredentials::ClientId(client_id.clone()));
    }
    secret_credentials(authorization, client_id, client_secret).map(ClientCredentials::Secret)
}

/// RFC 7523 §2.2: `client_assertion_type` names the JWT bearer type and
/// `client_assertion` carries one JWT.
fn client_assertion(
    client_id: Option<String>,
    assertion_type: Option<String>,
    assertion: Option<String>,
) -> Result<ClientAssertion, OAuthError> {
    match assertion_type.as_deref() {
        None => {
            return Err(OAuthError::invalid_request(format!(
                "client_assertion_type is required with client_assertion: {JWT_BEARER_ASSERTION}"
            )));
        }
        Some(JWT_BEARER_ASSERTION) => {}
        Some(other) => {
            return Err(OAuthError::invalid_client(format!(
                "client_assertion_type `{}` is not supported; use {JWT_BEARER_ASSERTION}",
                preview(other)
            )));
        }
    }
    match assertion {
        None => Err(OAuthError::invalid_request(
            "client_assertion is required with client_assertion_type",
        )),
        Some(assertion) if assertion.is_empty() => Err(OAuthError::invalid_client(
            "the client assertion is not a well-formed JWT (RFC 7523 §3)",
        )),
        Some(assertion) => Ok(ClientAssertion {
            client_id,
            assertion,
        }),
    }
}

/// A secret from the Authorization header or the body, never both.
fn secret_credentials(
    authorization: &[&[u8]],
    client_id: Option<String>,
    client_secret: Option<String>,
) -> Result<SecretCredentials, OAuthError> {
    match authorization {
        [] => match (client_id, client_secret) {
            (Some(client_id), Some(client_secret)) => Ok(SecretCredentials {
                client_id,
                client_secret,
            }),
            (Some(_), None) => Err(OAuthError::invalid_client("client_secret is required")),
            _ => Err(OAuthError::invalid_client(
                "client authentication is required (HTTP Basic, client_id and client_secret, \
                 or a client assertion)",
            )),
        },
        [header] => {
            if client_secret.is_some() {
                return Err(OAuthError::invalid_request(
                    "use one client authentication method: HTTP Basic or client_secret in the body, not both",
                ));
            }
            let basic = parse_basic_authorization(header)?;
            if client_id.is_some_and(|id| id != basic.client_id) {
                return Err(OAuthError::invalid_request(
                    "client_id in the body differs from the one in the Authorization header",
                ));
            }
            Ok(basic)
        }
        _ => Err(OAuthError::invalid_request(
            "send at most one Authorization header",
        )),
    }
}

/// Parses and checks the shape of a token request: client credentials
/// (RFC 6749 §4.4) or a token exchange (RFC 8693 §2.1). `authorization`
/// holds every Authorization header sent.
pub fn parse_token_request(
    authorization: &[&[u8]],
    media_type: Option<&str>,
    body: &[u8],
) -> Result<TokenRequest, OAuthError> {
    let mut params = known_parameters(
        media_type,
        body,
        &[
            "grant_type",
            "client_id",
            "client_secret",
            "client_assertion_type",
            "client_assertion",
            "scope",
            "resource",
            "audience",
            "subject_token",
            "subject_token_type",
            "actor_token",
            "actor_token_type",
            "requested_token_type",
        ],
    )?;
    let exchange = match params.get("grant_type").map(String::as_str) {
        None | Some("") => return Err(OAuthError::invalid_request("grant_type is required")),
        Some("client_credentials") => false,
        Some(TOKEN_EXCHANGE_GRANT) => true,
        Some(other) => {
            return Err(OAuthError::new(
                super::error::OAuthErrorCode::UnsupportedGrantType,
                format!(
                    "grant_type `{}` is not supported; use client_credentials or {TOKEN_EXCHANGE_GRANT}",
                    preview(other)
                ),
            ));
        }
    };
    let resource = match (params.remove("resource"), params.remove("audience")) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request(
                "send `resource` or `audience`, not both",
            ));
        }
        (resource, audience) => resource.or(audience),
    };
    let anything_presented = !authorization.is_empty()
        || ["client_secret", "client_assertion", "client_assertion_type"]
            .iter()
            .any(|name| params.contains_key(name));
    let credentials = if exchange && !anything_presented {
        // RFC 8693 §2.1 leaves client authentication to the server: a
        // trusted issuer's token needs none, a Keyport token does (the
        // service decides). A lone client_id authenticates only with a
        // certificate (RFC 8705).
        params.remove("client_id").map(ClientCredentials::ClientId)
    } else {
        Some(client_credentials(authorization, &mut params)?)
    };
    let exchange = if exchange {
        Some(exchange_parameters(&mut params)?)
    } else {
        None
    };
    Ok(TokenRequest {
        credentials,
        scope: params.remove("scope"),
        resource,
        exchange,
    })
}

/// RFC 8693 §2.1: `subject_token` and its type are required; an actor token
/// needs its type, and a type needs its token.
fn exchange_parameters(
    params: &mut HashMap<&'static str, String>,
) -> Result<TokenExchangeParameters, OAuthError> {
    let subject_token = params
        .remove("subject_token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("subject_token is required (RFC 8693 §2.1)"))?;
    let subject_token_type = params
        .remove("subject_token_type")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            OAuthError::invalid_request("subject_token_type is required (RFC 8693 §2.1)")
        })?;
    let subject_token_type =
        SubjectTokenType::parse(&subject_token_type).map_err(OAuthError::invalid_request)?;
    let actor_token = params.remove("actor_token").filter(|t| !t.is_empty());
    let actor_token_type = params.remove("actor_token_type").filter(|t| !t.is_empty());
    match (&actor_token, actor_token_type.as_deref()) {
        (None, None) => {}
        (Some(_), Some(ACCESS_TOKEN_TYPE)) => {}
        (Some(_), Some(other)) => {
            return Err(OAuthError::invalid_request(format!(
                "actor_token_type `{}` is not supported: an actor presents a Keyport access \
                 token ({ACCESS_TOKEN_TYPE})",
                preview(other)
            )));
        }
        (Some(_), None) => {
            return Err(OAuthError::invalid_request(
                "actor_token_type is required with actor_token (RFC 8693 §2.1)",
            ));
        }
        (None, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "actor_token_type was sent without actor_token (RFC 8693 §2.1)",
            ));
        }
    }
    Ok(TokenExchangeParameters {
        subject_token,
        subject_token_type,
        actor_token,
        requested_token_type: params
            .remove("requested_token_type")
            .filter(|t| !t.is_empty()),
    })
}

/// An introspection (RFC 7662) or revocation (RFC 7009) request: the client's
/// credentials and the token it asks about.
#[derive(Debug)]
pub struct TokenQuery {
    pub credentials: ClientCredentials,
    pub token: String,
}

pub fn parse_token_query(
    authorization: &[&[u8]],
    media_type: Option<&str>,
    body: &[u8],
) -> Result<TokenQuery, OAuthError> {
    let mut params = known_parameters(
        media_type,
        body,
        &[
            "token",
            "token_type_hint",
            "client_id",
            "client_secret",
            "client_assertion_type",
            "client_assertion",
        ],
    )?;
    let token = params
        .remove("token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let credentials = client_credentials(authorization, &mut params)?;
    Ok(TokenQuery { credentials, token })
}

fn preview(raw: &str) -> String {
    raw.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::error::OAuthErrorCode;

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    fn basic(id: &str, secret: &str) -> Vec<u8> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        format!("Basic {encoded}").into_bytes()
    }

    #[test]
    fn basic_credentials_are_form_url_decoded() {
        let header = basic("my%20client", "s%3Acret+x");
        let creds = parse_basic_authorization(&header).unwrap();
        assert_eq!(creds.client_id, "my client");
        assert_eq!(creds.client_secret, "s:cret x");
    }

    #[test]
    fn a_secret_containing_a_colon_splits_at_the_first_one() {
        let creds = parse_basic_authorization(&basic("id", "a:b")).unwrap();
        assert_eq!(creds.client_secret, "a:b");
    }

    #[test]
    fn malformed_basic_headers_are_invalid_client() {
        for bad in [
            &b"Basic"[..],
            b"Basic !!!notbase64",
            b"Basic bm9jb2xvbg==",
            b"Bearer abc",
            b"Basic /w==",
            b"\xff\xfe",
        ] {
            let err = parse_basic_authorization(bad).unwrap_err();
            assert_eq!(err.code, OAuthErrorCode::InvalidClient, "{bad:?}");
        }
    }

    #[test]
    fn both_authentication_methods_at_once_is_invalid_request() {
        let header = basic("id", "secret");
        let err = parse_token_request(
            &[&header],
            FORM,
            b"grant_type=client_credentials&client_secret=other",
        )
        .unwrap_err();
        assert_eq!(err.code, OAuthErrorCode::InvalidRequest);
    }

    #[test]
    fn repeated_parameters_are_invalid_request() {
        let err = parse_token_request(
            &[],
            FORM,
            b"grant_type=client_credentials&grant_type=client_credentials",
        )
        .unwrap_err();
        assert_eq!(err.code, OAuthErrorCode::InvalidRequest);
    }

    #[test]
    fn other_grant_types_are_unsupported() {
        let err = parse_token_request(&[], FORM, b"grant_type=password").unwrap_err();
        assert_eq!(err.code, OAuthErrorCode::UnsupportedGrantType);
    }

    #[test]
    fn json_bodies_are_accepted_but_only_with_string_values() {
        let ok = parse_token_request(
            &[],
            Some("application/json"),
            br#"{"grant_type":"client_credentials","client_id":"a","client_secret":"b","scope":"reports:read"}"#,
        )
        .unwrap();
        let Some(ClientCredentials::Secret(credentials)) = &ok.credentials else {
            panic!("a secret was sent");
        };
        assert_eq!(credentials.client_id, "a");
        assert_eq!(ok.scope.as_deref(), Some("reports:read"));
        let err = parse_token_request(
            &[],
            Some("application/json"),
            br#"{"grant_type":["client_credentials"]}"#,
        )
        .unwrap_err();
        assert_eq!(err.code, OAuthErrorCode::InvalidRequest);
    }

    #[test]
    fn a_json_member_sent_twice_is_refused_like_a_repeated_form_parameter() {
        let err = parse_token_request(
            &[],
            Some("application/json"),
            br#"{"grant_type":"client_credentials","client_id":"a","client_secret":"x","client_secret":"b"}"#,
        )
        .unwrap_err();
        assert_eq!(err.code, OAuthErrorCode::InvalidRequest);
        assert!(err.description.contains("repeated"), "{}", err.description);
    }

    #[test]
    fn other_media_types_are_invalid_request() {
        let err = parse_token_request(&[], Some("text/plain"), b"grant_type=client_credentials")
            .unwrap_err();
        assert_eq!(err.code, OAuthErrorCode::InvalidRequest);
    }

    const ASSERTION_FORM: &str = "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=eyJ.e30.sig";

    #[test]
    fn a_client_assertion_is_parsed_with_its_optional_client_id() {
        let request = parse_token_request(&[], FORM, ASSERTION_FORM.as_bytes()).unwrap();
        let Some(ClientCredentials::Assertion(assertion)) = request.credentials else {
            panic!("an assertion was sent");
        };
        assert_eq!(assertion.assertion, "eyJ.e30.sig");
        assert_eq!(assertion.client_id, None);
        let with_id = format!("{ASSERTION_FORM}&client_id=kpc_a");
        let query = parse_token_query(&[], FORM, format!("token=t&{with_id}").as_bytes()).unwrap();
        let ClientCredentials::Assertion(assertion) = query.credentials else {
            panic!("an assertion was sent");
        };
        assert_eq!(assertion.client_id.as_deref(), Some("kpc_a"));
        assert!(!format!("{assertion:?}").contains("eyJ"));
    }

    #[test]
    fn an_assertion_with_a_secret_or_basic_is_invalid_request() {
        let with_secret = format!("{ASSERTION_FORM}&client_id=kpc_a&client_secret=kps_x");
        let err = parse_token_request(&[], FORM, with_secret.as_bytes()).unwrap_err();
        assert_eq!(err.code, OAuthErrorCode::InvalidRequest);
        let header = basic("kpc_a", "kps_x");
        let err = parse_token_request(&[&header], FORM, ASSERTION_FORM.as_bytes()).unwrap_err();
        assert_eq!(err.code, OAuthErrorCode::InvalidRequest);
    }

    #[test]
    fn another_assertion_type_is_invalid_client_and_half_an_assertion_invalid_request() {
        let saml = ASSERTION_FORM.replace("jwt-bearer", "saml2-bearer");
        let err = parse_token_request(&[], FORM, saml.as_bytes()).unwrap_err();
        assert_eq!(err.code, OAuthErrorCode::InvalidClient);
        let err = parse_token_request(
            &[],
            FORM,
            b"grant_type=client_credentials&client_assertion=eyJ.e30.sig",
        )
        .unwrap_err();
        assert_eq!(err.code, OAuthErrorCode::InvalidRequest);
        let err = parse_token_request(
            &[],
            FORM,
            b"grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer",
        )
        .unwrap_err();
        assert_eq!(err.code, OAuthErrorCode::InvalidRequest);
    }

    #[test]
    fn credentials_debug_hides_the_secret() {
        let creds = parse_basic_authorization(&basic("id", "kps_topsecret")).unwrap();
        assert!(!format!("{creds:?}").contains("topsecret"));
    }
}
