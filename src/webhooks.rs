//! Sends one webhook delivery over HTTP. The only outbound HTTP Keyport
//! makes, so the SSRF guard lives here: every connection resolves its host
//! through [`GuardedResolver`], which refuses non-public addresses unless
//! configured otherwise (so a host that resolved to a public address when
//! registered and to 127.0.0.1 now is refused now); IP-literal hosts, which
//! need no resolving, are checked before sending; redirects are never
//! followed; proxies from the environment are ignored (a proxy would resolve
//! the host itself).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::WebhookSettings;
use crate::domain::{Refusal, TargetPolicy, WebhookUrl};

/// The first bytes of an answer kept with the attempt.
const EXCERPT_BYTES: usize = 1024;

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    pub status: Option<u16>,
    pub latency_ms: i64,
    pub excerpt: Option<String>,
    /// Why no answer came, in words safe to show the endpoint's owner.
    pub error: Option<String>,
}

/// A host that resolved to an address the policy refuses: the resolver's
/// error, so no connection is attempted.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to {address}, {reason}, which Keyport does not connect to")]
pub(crate) struct RefusedTarget {
    host: String,
    address: IpAddr,
    reason: Refusal,
}

/// The addresses `host` resolved to, when `policy` allows every one of them:
/// the check made after resolving and before connecting (and when an
/// endpoint is registered). One refused address refuses the host: a name
/// that mixes public and internal answers is exactly what rebinding looks
/// like.
pub(crate) fn screen(
    host: &str,
    addresses: Vec<SocketAddr>,
    policy: TargetPolicy,
) -> Result<Vec<SocketAddr>, RefusedTarget> {
    for address in &addresses {
        if let Some(reason) = policy.refuses(address.ip()) {
            return Err(RefusedTarget {
                host: host.to_owned(),
                address: address.ip(),
                reason,
            });
        }
    }
    Ok(addresses)
}

type LookupResult = std::io::Result<Vec<SocketAddr>>;

/// How a host name becomes addresses: the system resolver, or a stub in
/// tests (which must never connect to what they check).
type Lookup = Arc<dyn Fn(String) -> BoxFuture<'static, LookupResult> + Send + Sync>;

fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.collect()) })
    })
}

/// Resolves for reqwest and hands it only addresses [`screen`] passed: the
/// connection goes to exactly the addresses that were checked.
struct GuardedResolver {
    policy: TargetPolicy,
    lookup: Lookup,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        let lookup = (self.lookup)(host.clone());
        Box::pin(async move {
            let addresses = lookup.await?;
            let allowed = screen(&host, addresses, policy)
                .map_err(|refused| Box::new(refused) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

pub struct Sender {
    client: reqwest::Client,
    policy: TargetPolicy,
}

/// An HTTP client that connects only where `policy` allows (every host
/// resolved through [`GuardedResolver`]), follows no redirects and ignores
/// proxies: for webhooks, and for fetching trusted issuers' keys. IP-literal
/// hosts need no resolving: check them with [`TargetPolicy::refuses`].
pub fn guarded_client(
    policy: TargetPolicy,
    connect_timeout: Duration,
    timeout: Duration,
    user_agent: &'static str,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .user_agent(user_agent)
        .dns_resolver(Arc::new(GuardedResolver {
            policy,
            lookup: system_lookup(),
        }))
        .build()
}

impl Sender {
    pub fn new(settings: &WebhookSettings) -> Result<Self, reqwest::Error> {
        let client = guarded_client(
            settings.targets,
            settings.connect_timeout,
            settings.timeout,
            concat!("Keyport-Webhooks/", env!("CARGO_PKG_VERSION")),
        )?;
        Ok(Sender {
            client,
            policy: settings.targets,
        })
    }

    /// POSTs `body` to `url` with `headers`; never fails, the result says
    /// what happened.
    pub async fn send(&self, url: &str, headers: &[(&str, String)], body: String) -> SendResult {
        let started = Instant::now();
        let elapsed = |started: Instant| started.elapsed().as_millis() as i64;
        let refused = |error: String| SendResult {
            status: None,
            latency_ms: 0,
            excerpt: None,
            error: Some(error),
        };
        // The URL was checked when registered; the policy may have changed.
        let target = match WebhookUrl::parse(url, &self.policy) {
            Ok(target) => target,
            Err(err) => return refused(err.to_string()),
        };
        if let Some(reason) = target
            .literal_address()
            .and_then(|a| self.policy.refuses(a))
        {
            return refused(format!("{} is {reason}", target.host()));
        }
        let mut request = self
            .client
            .post(target.as_str())
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        match request.body(body).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let excerpt = read_excerpt(response).await;
                SendResult {
                    status: Some(status),
                    latency_ms: elapsed(started),
                    excerpt,
                    error: None,
                }
            }
            Err(err) => SendResult {
                status: None,
                latency_ms: elapsed(started),
                excerpt: None,
                error: Some(describe(&err)),
            },
        }
    }
}

/// Reads at most [`EXCERPT_BYTES`] of the answer, then stops.
async fn read_excerpt(mut response: reqwest::Response) -> Option<String> {
    let mut kept = Vec::new();
    while kept.len() < EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
            _ => break,
        }
    }
    kept.truncate(EXCERPT_BYTES);
    (!kept.is_empty()).then(|| String::from_utf8_lossy(&kept).into_owned())
}

/// An error in words: reqwest's outer message plus the innermost cause
/// (the refused target, "connection refused", a timeout).
pub(crate) fn describe(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(err);
    let mut innermost = None;
    while let Some(cause) = source {
        innermost = Some(cause.to_string());
        source = cause.source();
    }
    match innermost {
        Some(cause) => format!("{kind}: {cause}"),
        None => kind.to_owned(),
    }
}

/// Resolves `url`'s host now and refuses it when any address it resolves to
/// is refused by `policy`, or when it does not resolve: checked when an
/// endpoint is registered (and again at every connection).
pub async fn check_target(
    url: &WebhookUrl,
    policy: &TargetPolicy,
) -> Result<(), crate::domain::WebhookTargetError> {
    use crate::domain::WebhookTargetError;
    if url.literal_address().is_some() {
        // Checked by the parser already.
        return Ok(());
    }
    let host = url.host();
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), url.port()))
        .await
        .map_err(|_| WebhookTargetError::Unresolvable(host.clone()))?
        .collect();
    if addresses.is_empty() {
        return Err(WebhookTargetError::Unresolvable(host));
    }
    screen(&host, addresses, *policy).map_err(|refused| WebhookTargetError::Refused {
        host: format!("{host} ({})", refused.address),
        reason: refused.reason,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resolver whose DNS answers `answers` for every name: nothing is
    /// looked up and nothing is connected to, only the guard runs.
    fn resolver(policy: TargetPolicy, answers: &[&str]) -> GuardedResolver {
        let answers: Vec<SocketAddr> = answers
            .iter()
            .map(|a| SocketAddr::new(a.parse().expect("an address"), 0))
            .collect();
        GuardedResolver {
            policy,
            lookup: Arc::new(move |_host| {
                let answers = answers.clone();
                Box::pin(async move { Ok(answers) })
            }),
        }
    }

    async fn resolve(resolver: &GuardedResolver) -> Result<Vec<SocketAddr>, String> {
        let name: Name = "hooks.example.com".parse().expect("a name");
        match resolver.resolve(name).await {
            Ok(addresses) => Ok(addresses.collect()),
            Err(err) => {
                assert!(
                    err.downcast_ref::<RefusedTarget>().is_some(),
                    "not the guard's refusal: {err}"
                );
                Err(err.to_string())
            }
        }
    }

    const STRICT: TargetPolicy = TargetPolicy {
        allow_http: false,
        allow_private: false,
    };

    /// At connection time a name whose DNS answer lies in a special-purpose
    /// block is refused by the resolver, before reqwest gets an address to
    /// connect to; alone or mixed with a public answer (rebinding).
    #[tokio::test]
    async fn the_resolver_refuses_special_purpose_answers_before_any_connection() {
        for (answer, says) in [
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.254", "benchmarking"),
            ("192.0.0.8", "dummy"),
            ("192.0.2.1", "documentation"),
            ("192.88.99.1", "6to4 Relay Anycast"),
            ("240.0.0.1", "reserved"),
            ("64:ff9b::a00:1", "NAT64"),
            ("64:ff9b::5db8:d822", "NAT64"),
            ("64:ff9b:1::1", "local-use NAT64"),
            ("2002:a00:1::1", "6to4"),
            ("2002:5db8:d822::1", "6to4"),
            ("2001::1", "Teredo"),
            ("::5db8:d822", "IPv4-compatible"),
            ("fec0::1", "site-local"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("100::1", "Discard-Only"),
            ("5f00::1", "SRv6"),
            ("4000::1", "Reserved by IETF"),
            ("::ffff:127.0.0.1", "loopback"),
            ("169.254.169.254", "link-local"),
        ] {
            for answers in [vec![answer], vec!["93.184.216.34", answer]] {
                let refused = resolve(&resolver(STRICT, &answers))
                    .await
                    .expect_err(answer);
                assert!(
                    refused.contains(says) && refused.contains(answer),
                    "{answers:?}: {refused}"
                );
            }
        }
        // Public answers come back as they are, to be connected to.
        let public = resolve(&resolver(STRICT, &["93.184.216.34", "2606:4700::1111"]))
            .await
            .expect("public");
        assert_eq!(public.len(), 2);
    }

    /// With private targets allowed, a private answer passes, and the
    /// blocks that are never opened are still refused at connection.
    #[tokio::test]
    async fn with_private_targets_allowed_the_resolver_still_refuses_what_is_never_opened() {
        let open = TargetPolicy {
            allow_http: true,
            allow_private: true,
        };
        assert!(
            resolve(&resolver(open, &["10.0.0.7", "127.0.0.1"]))
                .await
                .is_ok()
        );
        for answer in ["0.0.0.0", "169.254.169.254", "64:ff9b::7f00:1", "224.0.0.1"] {
            resolve(&resolver(open, &[answer])).await.expect_err(answer);
        }
    }
}
