//! Outbound webhook endpoints: where Keyport may send (the SSRF policy),
//! and what it may announce.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::CollectionName;
use super::special_addresses::{Refusal, TargetPolicy};

/// Every event an endpoint can listen to.
pub const WEBHOOK_EVENT_TYPES: [&str; 6] = [
    "record.created",
    "key.created",
    "key.revoked",
    "key.deleted",
    "key.expiring",
    "user.locked",
];

/// The event a "send test event" call sends, whatever the endpoint listens to.
pub const TEST_EVENT_TYPE: &str = "webhook.test";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookTargetError {
    #[error("the URL is not valid: {0}")]
    Malformed(String),
    #[error("the URL must use https (plain http is allowed only with webhook_allow_http)")]
    NotHttps,
    #[error("the URL must not carry a user name or password")]
    Credentials,
    #[error("the URL must name a host")]
    NoHost,
    #[error("the URL is longer than 2048 characters")]
    TooLong,
    #[error("the URL's host {host} is {reason}; {}", advice(.reason))]
    Refused { host: String, reason: Refusal },
    #[error("the URL's host {0} does not resolve")]
    Unresolvable(String),
}

/// What the operator can do about a refusal, if anything.
pub(crate) fn advice(reason: &Refusal) -> &'static str {
    if reason.opened_by_allow_private() {
        "Keyport sends only to public addresses (see webhook_allow_private_targets)"
    } else {
        "Keyport never sends there, whatever its settings"
    }
}

/// An endpoint URL that parsed and passed the policy's static checks; the
/// addresses its host resolves to are checked at registration and again at
/// every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

impl WebhookUrl {
    pub fn parse(raw: &str, policy: &TargetPolicy) -> Result<Self, WebhookTargetError> {
        if raw.len() > 2048 {
            return Err(WebhookTargetError::TooLong);
        }
        let url = url::Url::parse(raw.trim())
            .map_err(|e| WebhookTargetError::Malformed(e.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" if policy.allow_http => {}
            _ => return Err(WebhookTargetError::NotHttps),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(WebhookTargetError::Credentials);
        }
        // The URL parser already turned `2130706433`, `0x7f.1` and the like
        // into the IPv4 address they mean.
        match url.host() {
            None => return Err(WebhookTargetError::NoHost),
            Some(url::Host::Ipv4(v4)) => refuse_literal(policy, IpAddr::V4(v4))?,
            Some(url::Host::Ipv6(v6)) => refuse_literal(policy, IpAddr::V6(v6))?,
            Some(url::Host::Domain(domain)) => {
                let lowered = domain.trim_end_matches('.').to_ascii_lowercase();
                if !policy.allow_private
                    && (lowered == "localhost" || lowered.ends_with(".localhost"))
                {
                    return Err(WebhookTargetError::Refused {
                        host: domain.to_owned(),
                        reason: Refusal::localhost(),
                    });
                }
            }
        }
        Ok(WebhookUrl(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn host(&self) -> String {
        self.0.host_str().unwrap_or_default().to_owned()
    }

    pub fn port(&self) -> u16 {
        self.0.port_or_known_default().unwrap_or(443)
    }

    /// The address when the host is an IP literal.
    pub fn literal_address(&self) -> Option<IpAddr> {
        match self.0.host()? {
            url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
            url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
            url::Host::Domain(_) => None,
        }
    }
}

fn refuse_literal(policy: &TargetPolicy, address: IpAddr) -> Result<(), WebhookTargetError> {
    match policy.refuses(address) {
        Some(reason) => Err(WebhookTargetError::Refused {
            host: address.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The events an endpoint listens to: known types, at least one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEventTypes(BTreeSet<&'static str>);

impl WebhookEventTypes {
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, String> {
        let mut set = BTreeSet::new();
        for name in raw {
            let name = name.as_ref().trim();
            let known = WEBHOOK_EVENT_TYPES
                .iter()
                .find(|t| **t == name)
                .ok_or_else(|| {
                    format!(
                        "`{}` is not an event; use {}",
                        name.chars().take(64).collect::<String>(),
                        WEBHOOK_EVENT_TYPES.join(", ")
                    )
                })?;
            set.insert(*known);
        }
        if set.is_empty() {
            return Err("name at least one event".to_owned());
        }
        Ok(WebhookEventTypes(set))
    }

    pub fn from_stored(stored: &str) -> Result<Self, String> {
        Self::parse(
            &stored
                .split(' ')
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>(),
        )
    }

    pub fn to_stored(&self) -> String {
        self.0.iter().copied().collect::<Vec<_>>().join(" ")
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|t| (*t).to_owned()).collect()
    }

    pub fn contains(&self, event_type: &str) -> bool {
        self.0.contains(event_type)
    }
}

/// The collections a `record.created` listener hears of; empty: every one.
pub fn parse_collections<S: AsRef<str>>(raw: &[S]) -> Result<Vec<CollectionName>, String> {
    if raw.len() > 50 {
        return Err("at most 50 collections".to_owned());
    }
    let mut parsed: Vec<CollectionName> = raw
        .iter()
        .map(|name| CollectionName::parse(name.as_ref()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    parsed.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    parsed.dedup_by(|a, b| a.as_str() == b.as_str());
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> TargetPolicy {
        TargetPolicy {
            allow_http: false,
            allow_private: false,
        }
    }

    #[test]
    fn non_public_targets_are_refused_in_every_spelling() {
        for url in [
            "https://localhost/hook",
            "https://LOCALHOST./hook",
            "https://api.localhost/hook",
            "https://127.0.0.1/hook",
            "https://127.1.2.3/hook",
            "https://[::1]/hook",
            "https://0.0.0.0/hook",
            "https://[::]/hook",
            "https://2130706433/hook",
            "https://0x7f000001/hook",
            "https://[::ffff:127.0.0.1]/hook",
            "https://[::ffff:169.254.169.254]/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.8/hook",
            "https://172.16.5.4/hook",
            "https://192.168.1.1/hook",
            "https://100.64.0.1/hook",
            "https://[fd00::1]/hook",
            "https://[fe80::1]/hook",
            "https://224.0.0.1/hook",
            "https://[ff02::1]/hook",
            "https://255.255.255.255/hook",
            "https://198.18.0.1/hook",
            "https://[64:ff9b::127.0.0.1]/hook",
            "https://[64:ff9b::93.184.216.34]/hook",
            "https://[2002:7f00:1::]/hook",
            "https://[fec0::1]/hook",
            "https://[::93.184.216.34]/hook",
        ] {
            let err = WebhookUrl::parse(url, &strict()).expect_err(url);
            assert!(
                matches!(err, WebhookTargetError::Refused { .. }),
                "{url}: {err}"
            );
        }
    }

    #[test]
    fn public_https_urls_pass_and_other_shapes_are_refused_clearly() {
        assert!(WebhookUrl::parse("https://hooks.example.com/keyport?x=1", &strict()).is_ok());
        assert!(WebhookUrl::parse("https://93.184.216.34:8443/h", &strict()).is_ok());
        assert_eq!(
            WebhookUrl::parse("http://hooks.example.com/", &strict()),
            Err(WebhookTargetError::NotHttps)
        );
        assert_eq!(
            WebhookUrl::parse("ftp://hooks.example.com/", &strict()),
            Err(WebhookTargetError::NotHttps)
        );
        assert_eq!(
            WebhookUrl::parse("https://user:pw@hooks.example.com/", &strict()),
            Err(WebhookTargetError::Credentials)
        );
        assert!(matches!(
            WebhookUrl::parse("not a url", &strict()),
            Err(WebhookTargetError::Malformed(_))
        ));
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert_eq!(
            WebhookUrl::parse(&long, &strict()),
            Err(WebhookTargetError::TooLong)
        );
        let open = TargetPolicy {
            allow_http: true,
            allow_private: true,
        };
        assert!(WebhookUrl::parse("http://127.0.0.1:9000/hook", &open).is_ok());
    }

    #[test]
    fn event_types_are_known_ones_and_at_least_one() {
        let parsed = WebhookEventTypes::parse(&["key.created", "record.created", "key.created"])
            .expect("parse");
        assert_eq!(parsed.to_stored(), "key.created record.created");
        assert!(WebhookEventTypes::parse::<&str>(&[]).is_err());
        let err = WebhookEventTypes::parse(&["key.exploded"]).unwrap_err();
        assert!(
            err.contains("key.exploded") && err.contains("user.locked"),
            "{err}"
        );
    }
}
