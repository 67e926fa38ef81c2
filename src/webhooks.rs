//! Sends one webhook delivery over HTTP. The only outbound HTTP Keyport
//! makes, so the SSRF guard lives here: every connection resolves its host
//! through [`GuardedResolver`], which refuses non-public addresses unless
//! configured otherwise (so a host that resolved to a public address when
//! registered and to 127.0.0.1 now is refused now); IP-literal hosts, which
//! need no resolving, are checked before sending; redirects are never
//! followed; proxies from the environment are ignored (a proxy would resolve
//! the host itself).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::WebhookSettings;
use crate::domain::{TargetPolicy, WebhookUrl};

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

#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to {reason} ({address}), which webhooks may not be sent to")]
struct RefusedTarget {
    host: String,
    address: std::net::IpAddr,
    reason: &'static str,
}

struct GuardedResolver {
    policy: TargetPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // One refused address refuses the host: a name that mixes public
            // and private answers is exactly what rebinding looks like.
            for address in &addresses {
                if let Some(reason) = policy.refuses(address.ip()) {
                    return Err(Box::new(RefusedTarget {
                        host,
                        address: address.ip(),
                        reason,
                    })
                        as Box<dyn std::error::Error + Send + Sync>);
                }
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
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
        .dns_resolver(Arc::new(GuardedResolver { policy }))
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
    for address in addresses {
        if let Some(reason) = policy.refuses(address.ip()) {
            return Err(WebhookTargetError::Refused { host, reason });
        }
    }
    Ok(())
}
