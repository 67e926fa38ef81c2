//! The client's address: the TCP peer, or, when the peer is a trusted proxy,
//! the address that proxy says it forwarded for (`Forwarded`, RFC 7239, or
//! `X-Forwarded-For`). Throttling, the sign-in lockout and the audit trail
//! key on it, so a header from anyone else is ignored: a client must not
//! pick its own throttling bucket.

use std::net::IpAddr;

use actix_web::HttpRequest;
use actix_web::web;

use super::AppState;
use crate::domain::IpRange;

/// Where the request came from, as far as can be trusted.
pub fn client_address(req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let trusted = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.service.settings.security.trusted_proxies.as_slice())
        .unwrap_or_default();
    Some(resolve(peer, trusted, req))
}

/// Whether the TCP peer is one of `trusted_proxies`: only then are its
/// headers about the request (forwarded-for, request id) believed.
pub fn peer_is_trusted_proxy(req: &HttpRequest) -> bool {
    let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
        return false;
    };
    req.app_data::<web::Data<AppState>>().is_some_and(|state| {
        state
            .service
            .settings
            .security
            .trusted_proxies
            .iter()
            .any(|range| range.contains(peer))
    })
}

fn resolve(peer: IpAddr, trusted: &[IpRange], req: &HttpRequest) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|range| range.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let Some(chain) = forwarded_chain(req) else {
        return peer;
    };
    // Right to left: each trusted proxy vouches for the hop before it; the
    // first hop no trusted proxy owns is the client.
    let mut client = peer;
    for hop in chain.into_iter().rev() {
        client = hop;
        if !is_trusted(hop) {
            break;
        }
    }
    client
}

/// The forwarded-for addresses, oldest first; `None` when there is no
/// header or any entry is malformed (then only the peer is believed).
fn forwarded_chain(req: &HttpRequest) -> Option<Vec<IpAddr>> {
    let headers = req.headers();
    if headers.contains_key("forwarded") {
        let mut chain = Vec::new();
        for value in headers.get_all("forwarded") {
            for element in value.to_str().ok()?.split(',') {
                let for_value = element.split(';').find_map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    name.trim()
                        .eq_ignore_ascii_case("for")
                        .then_some(value.trim())
                })?;
                chain.push(parse_forwarded_node(for_value)?);
            }
        }
        return (!chain.is_empty()).then_some(chain);
    }
    let mut chain = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        for hop in value.to_str().ok()?.split(',') {
            chain.push(hop.trim().parse().ok()?);
        }
    }
    (!chain.is_empty()).then_some(chain)
}

/// An RFC 7239 node: `192.0.2.1`, `"192.0.2.1:4711"`, `"[2001:db8::1]:80"`.
fn parse_forwarded_node(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim_matches('"');
    if let Some(rest) = raw.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let host = match raw.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => raw,
    };
    host.parse().ok()
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn ranges(list: &[&str]) -> Vec<IpRange> {
        list.iter().map(|r| IpRange::parse(r).unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let req = TestRequest::default()
            .insert_header(("x-forwarded-for", "1.2.3.4"))
            .insert_header(("forwarded", "for=5.6.7.8"))
            .to_http_request();
        assert_eq!(
            resolve(ip("203.0.113.9"), &ranges(&["10.0.0.0/8"]), &req),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_trusted_proxy_is_believed_and_trusted_hops_are_skipped() {
        let trusted = ranges(&["10.0.0.0/8"]);
        let req = TestRequest::default()
            .insert_header(("x-forwarded-for", "9.9.9.9, 198.51.100.4, 10.0.0.2"))
            .to_http_request();
        // 9.9.9.9 could be forged by 198.51.100.4: the first untrusted hop
        // from the right is the client.
        assert_eq!(resolve(ip("10.0.0.1"), &trusted, &req), ip("198.51.100.4"));
        let req = TestRequest::default()
            .insert_header((
                "forwarded",
                "for=\"[2001:db8::7]:4711\";proto=https, for=10.0.0.3",
            ))
            .to_http_request();
        assert_eq!(resolve(ip("10.0.0.1"), &trusted, &req), ip("2001:db8::7"));
    }

    #[test]
    fn a_malformed_or_missing_header_leaves_the_peer() {
        let trusted = ranges(&["10.0.0.0/8"]);
        let req = TestRequest::default()
            .insert_header(("x-forwarded-for", "not-an-ip"))
            .to_http_request();
        assert_eq!(resolve(ip("10.0.0.1"), &trusted, &req), ip("10.0.0.1"));
        let req = TestRequest::default().to_http_request();
        assert_eq!(resolve(ip("10.0.0.1"), &trusted, &req), ip("10.0.0.1"));
    }
}
