//! RFC 8693 token exchange: the token types Keyport takes and gives, and
//! what an admin configures to trust another issuer's tokens: the issuer,
//! and rules whose conditions on that issuer's claims pick a Keyport user.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// RFC 8693 §3 token type identifiers.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// What a subject or actor token is, by its `*_token_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectTokenType {
    /// A Keyport access token.
    AccessToken,
    /// Another issuer's JWT (`jwt`, or an OpenID Connect `id_token`).
    ExternalJwt,
}

impl SubjectTokenType {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            ACCESS_TOKEN_TYPE => Ok(SubjectTokenType::AccessToken),
            JWT_TOKEN_TYPE | ID_TOKEN_TYPE => Ok(SubjectTokenType::ExternalJwt),
            other => Err(format!(
                "token type `{}` is not supported: use {ACCESS_TOKEN_TYPE} (a Keyport token), \
                 {JWT_TOKEN_TYPE} or {ID_TOKEN_TYPE} (a trusted issuer's)",
                other.chars().take(80).collect::<String>()
            )),
        }
    }
}

/// Rule ids double as the `client_id` of the tokens they grant, so a token
/// can be traced to the rule and ends when the rule is deleted.
pub const RULE_ID_PREFIX: &str = "kpx_";

pub fn is_rule_id(raw: &str) -> bool {
    raw.strip_prefix(RULE_ID_PREFIX)
        .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub fn new_rule_id() -> String {
    format!("{RULE_ID_PREFIX}{}", uuid::Uuid::new_v4().simple())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error(
        "`issuer` must be an https URL (or http with exchange_allow_http) of at most 512 characters"
    )]
    Issuer,
    #[error("`audience` must be 1 to 512 characters")]
    Audience,
    #[error("`jwks_url`: {0}")]
    JwksUrl(String),
    #[error(
        "`conditions` must be a non-empty list of at most 16 {{\"claim\", \"equals\" or \"matches\"}} objects: {0}"
    )]
    Conditions(String),
    #[error("`description` must be at most 200 characters")]
    Description,
    #[error(
        "`conditions` must tell subjects apart: add a condition on a claim that differs between subjects (such as `sub`, `repository` or `job_workflow_ref`) that `equals` a value or `matches` a pattern with at least 3 characters besides `*`. Conditions on iss, aud, exp, nbf, iat or jti hold for every token of the issuer, and patterns like `**` or `.*` match almost anything"
    )]
    Broad,
}

/// An issuer URL as it must appear in the tokens' `iss`, compared exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerId(String);

impl IssuerId {
    pub fn parse(raw: &str, allow_http: bool) -> Result<Self, TrustError> {
        if raw.is_empty() || raw.len() > 512 || raw.trim() != raw {
            return Err(TrustError::Issuer);
        }
        let url = url::Url::parse(raw).map_err(|_| TrustError::Issuer)?;
        let scheme_ok = url.scheme() == "https" || (allow_http && url.scheme() == "http");
        if !scheme_ok || url.host().is_none() || url.query().is_some() || url.fragment().is_some() {
            return Err(TrustError::Issuer);
        }
        Ok(IssuerId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn parse_audience(raw: &str) -> Result<String, TrustError> {
    if raw.is_empty() || raw.len() > 512 || raw.chars().any(char::is_control) {
        return Err(TrustError::Audience);
    }
    Ok(raw.to_owned())
}

pub fn parse_description(raw: Option<&str>) -> Result<String, TrustError> {
    let raw = raw.unwrap_or("").trim();
    if raw.chars().count() > 200 || raw.chars().any(char::is_control) {
        return Err(TrustError::Description);
    }
    Ok(raw.to_owned())
}

/// One condition on a claim of the external token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimCondition {
    pub claim: String,
    /// The claim must equal this string (or, for a list of strings, hold it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// The claim must match this pattern, where `*` stands for any run of
    /// characters (nothing else is special: no regular expressions, so a
    /// pattern can never be slow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
}

/// A rule's conditions: all must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conditions(Vec<ClaimCondition>);

/// Claims every token of one issuer (for one audience) can carry alike, so a
/// condition on them tells no subject from another.
const CLAIMS_ALIKE_FOR_EVERY_SUBJECT: [&str; 6] = ["iss", "aud", "exp", "nbf", "iat", "jti"];

/// A `matches` pattern narrows only with this many characters besides `*`.
const MIN_PATTERN_LITERALS: usize = 3;

impl Conditions {
    /// Conditions for a new rule: well formed, and narrowing which subjects
    /// qualify (see [`Conditions::narrow_subjects`]).
    pub fn parse(value: &Value) -> Result<Self, TrustError> {
        let conditions = Conditions::parse_structure(value)?;
        conditions.narrow_subjects()?;
        Ok(conditions)
    }

    /// Whether at least one condition tells subjects apart: a claim that
    /// differs between subjects (`sub`, `repository`, `job_workflow_ref`, …,
    /// never `iss`, `aud`, the times or `jti`) that must equal a value, or
    /// match a pattern with at least three characters besides `*` (one a
    /// letter or digit). Else any token the issuer signs for the audience
    /// would be admitted, and for a CI platform that is anyone's job.
    pub fn narrow_subjects(&self) -> Result<(), TrustError> {
        let narrows = |condition: &ClaimCondition| {
            if CLAIMS_ALIKE_FOR_EVERY_SUBJECT.contains(&condition.claim.as_str()) {
                return false;
            }
            match (&condition.equals, &condition.matches) {
                (Some(_), None) => true,
                (None, Some(pattern)) => {
                    let literals = pattern.chars().filter(|c| *c != '*');
                    literals.clone().count() >= MIN_PATTERN_LITERALS
                        && literals.clone().any(char::is_alphanumeric)
                }
                _ => false,
            }
        };
        if self.0.iter().any(narrows) {
            Ok(())
        } else {
            Err(TrustError::Broad)
        }
    }

    /// Conditions as stored: well formed (rules stored before the narrowing
    /// rule existed are read, and refused when matched).
    fn parse_structure(value: &Value) -> Result<Self, TrustError> {
        let conditions: Vec<ClaimCondition> = serde_json::from_value(value.clone())
            .map_err(|e| TrustError::Conditions(e.to_string()))?;
        if conditions.is_empty() || conditions.len() > 16 {
            return Err(TrustError::Conditions("give 1 to 16 conditions".to_owned()));
        }
        for condition in &conditions {
            let name_ok = !condition.claim.is_empty()
                && condition.claim.len() <= 64
                && !condition.claim.chars().any(char::is_control);
            if !name_ok {
                return Err(TrustError::Conditions(
                    "a claim name is 1 to 64 characters".to_owned(),
                ));
            }
            let value = match (&condition.equals, &condition.matches) {
                (Some(value), None) | (None, Some(value)) => value,
                _ => {
                    return Err(TrustError::Conditions(format!(
                        "the condition on `{}` needs exactly one of `equals` and `matches`",
                        condition.claim
                    )));
                }
            };
            if value.is_empty() || value.len() > 512 {
                return Err(TrustError::Conditions(format!(
                    "the value for `{}` must be 1 to 512 characters",
                    condition.claim
                )));
            }
            if condition.matches.as_deref() == Some("*") {
                return Err(TrustError::Conditions(format!(
                    "`{}` matching `*` matches everything: name what must match",
                    condition.claim
                )));
            }
        }
        Ok(Conditions(conditions))
    }

    pub fn from_stored(stored: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(stored).map_err(|e| e.to_string())?;
        Conditions::parse_structure(&value).map_err(|e| e.to_string())
    }

    pub fn to_stored(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "[]".to_owned())
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(&self.0).unwrap_or(Value::Null)
    }

    /// Whether every condition holds for `claims`. A claim that is absent,
    /// or neither a string nor a list of strings, holds no condition.
    pub fn hold_for(&self, claims: &Map<String, Value>) -> bool {
        self.0.iter().all(|condition| {
            let check = |value: &str| match (&condition.equals, &condition.matches) {
                (Some(expected), _) => value == expected,
                (None, Some(pattern)) => glob_matches(pattern, value),
                (None, None) => false,
            };
            match claims.get(&condition.claim) {
                Some(Value::String(value)) => check(value),
                Some(Value::Array(values)) => values.iter().filter_map(Value::as_str).any(check),
                _ => false,
            }
        })
    }
}

/// One condition written as text, as the CLI and the console take it:
/// `NAME=VALUE` (the claim equals VALUE) or `NAME~PATTERN` (matches, `*`
/// being any run of characters); whichever operator comes first splits.
pub fn condition_from_text(raw: &str) -> Result<Value, String> {
    let raw = raw.trim();
    let split = raw.char_indices().find(|(_, c)| *c == '=' || *c == '~');
    match split {
        Some((at, op)) if at > 0 => {
            let kind = if op == '=' { "equals" } else { "matches" };
            let mut condition = Map::new();
            condition.insert(
                "claim".to_owned(),
                Value::String(raw[..at].trim().to_owned()),
            );
            condition.insert(
                kind.to_owned(),
                Value::String(raw[at + 1..].trim().to_owned()),
            );
            Ok(Value::Object(condition))
        }
        _ => Err(format!(
            "`{}`: write NAME=VALUE or NAME~PATTERN",
            raw.chars().take(80).collect::<String>()
        )),
    }
}

/// `*` matches any run of characters; everything else matches itself.
/// Greedy with one backtrack point, so linear in practice and never
/// exponential.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// RFC 8693 §4.1 `act`: who acts for the subject; a nested `act` is who
/// acted before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

/// Delegation chains longer than this are refused: a token is not a log.
pub const MAX_ACTOR_DEPTH: usize = 8;

impl Actor {
    pub fn depth(&self) -> usize {
        1 + self.act.as_ref().map_or(0, |inner| inner.depth())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn glob_patterns_match_runs_of_characters_and_nothing_else_is_special() {
        assert!(glob_matches(
            "repo:acme/erp:ref:refs/heads/*",
            "repo:acme/erp:ref:refs/heads/main"
        ));
        assert!(glob_matches("repo:acme/*:ref:*", "repo:acme/erp:ref:x"));
        assert!(!glob_matches("repo:acme/*", "repo:acmex/erp"));
        assert!(!glob_matches("repo:acme/erp", "repo:acme/erp2"));
        assert!(glob_matches("a*b*c", "aXXbYYc"));
        assert!(!glob_matches("a*b*c", "aXXbYY"));
        assert!(glob_matches("a.b", "a.b"));
        assert!(!glob_matches("a.b", "axb"), "a dot is not a wildcard");
        assert!(
            !glob_matches("a?", "ab"),
            "a question mark is not a wildcard"
        );
        // Pathological for naive backtracking; linear here.
        let text = "a".repeat(5000);
        assert!(!glob_matches(&format!("{}b", "*a".repeat(50)), &text));
    }

    #[test]
    fn every_condition_must_hold_and_lists_hold_when_one_element_does() {
        let conditions = Conditions::parse(&json!([
            {"claim": "sub", "matches": "repo:acme/erp:*"},
            {"claim": "groups", "equals": "deployers"}
        ]))
        .unwrap();
        let claims = |value: Value| value.as_object().unwrap().clone();
        assert!(conditions.hold_for(&claims(
            json!({"sub": "repo:acme/erp:ref:refs/heads/main", "groups": ["x", "deployers"]})
        )));
        assert!(!conditions.hold_for(&claims(
            json!({"sub": "repo:acme/erp:ref:refs/heads/main", "groups": ["x"]})
        )));
        assert!(!conditions.hold_for(&claims(json!({"sub": "repo:acme/erp:x"}))));
        assert!(!conditions.hold_for(&claims(json!({"sub": 7, "groups": "deployers"}))));
        let stored = Conditions::from_stored(&conditions.to_stored()).unwrap();
        assert_eq!(stored, conditions);
    }

    #[test]
    fn conditions_that_would_match_anything_or_are_malformed_are_refused() {
        for bad in [
            json!([]),
            json!({"claim": "sub"}),
            json!([{"claim": "sub"}]),
            json!([{"claim": "sub", "equals": "a", "matches": "b"}]),
            json!([{"claim": "sub", "matches": "*"}]),
            json!([{"claim": "", "equals": "a"}]),
            json!([{"claim": "sub", "equals": ""}]),
            json!([{"claim": "sub", "equals": 5}]),
            json!([{"claim": "sub", "equals": "a", "regex": ".*"}]),
        ] {
            assert!(Conditions::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn conditions_that_hold_for_every_subject_of_the_issuer_are_refused() {
        let issuer = "https://token.actions.example.com";
        for broad in [
            json!([{"claim": "sub", "matches": "**"}]),
            json!([{"claim": "sub", "matches": "*.*"}]),
            json!([{"claim": "sub", "matches": ".*"}]),
            json!([{"claim": "sub", "matches": "a*"}]),
            json!([{"claim": "sub", "matches": "*:*/*"}]),
            json!([{"claim": "iss", "equals": issuer}]),
            json!([{"claim": "aud", "equals": "keyport-acme"}]),
            json!([{"claim": "iss", "equals": issuer}, {"claim": "aud", "equals": "keyport-acme"}]),
            json!([{"claim": "iat", "matches": "17*"}, {"claim": "jti", "matches": "*-*-*"}]),
        ] {
            assert_eq!(Conditions::parse(&broad), Err(TrustError::Broad), "{broad}");
            // Stored before the rule existed: still read, and refused when
            // matched.
            let stored = Conditions::parse_structure(&broad).unwrap();
            assert!(stored.narrow_subjects().is_err());
            assert!(Conditions::from_stored(&stored.to_stored()).is_ok());
        }
        for narrow in [
            json!([{"claim": "sub", "equals": "repo:acme/erp:ref:refs/heads/main"}]),
            json!([{"claim": "sub", "matches": "repo:acme/erp:*"}]),
            json!([{"claim": "repository", "matches": "acm*"}]),
            json!([{"claim": "iss", "equals": issuer}, {"claim": "job_workflow_ref", "equals": "x"}]),
        ] {
            assert!(Conditions::parse(&narrow).is_ok(), "{narrow}");
        }
    }

    #[test]
    fn issuers_are_https_urls_unless_http_is_allowed() {
        assert!(IssuerId::parse("https://token.actions.githubusercontent.com", false).is_ok());
        assert!(IssuerId::parse("http://127.0.0.1:9/", false).is_err());
        assert!(IssuerId::parse("http://127.0.0.1:9/", true).is_ok());
        for bad in ["", "issuer", "https://x/?q=1", " https://x", "ftp://x"] {
            assert!(IssuerId::parse(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn conditions_written_as_text_split_at_the_first_operator() {
        assert_eq!(
            condition_from_text("sub~repo:acme/*:ref=x").unwrap(),
            json!({"claim": "sub", "matches": "repo:acme/*:ref=x"})
        );
        assert_eq!(
            condition_from_text(" repository_owner = acme ").unwrap(),
            json!({"claim": "repository_owner", "equals": "acme"})
        );
        assert!(condition_from_text("no operator").is_err());
        assert!(condition_from_text("=value").is_err());
    }

    #[test]
    fn rule_ids_are_recognised_by_shape() {
        let id = new_rule_id();
        assert!(is_rule_id(&id));
        assert!(!is_rule_id("kpx_short"));
        assert!(!is_rule_id("kp_0123456789abcdef0123456789abcdef"));
    }
}
