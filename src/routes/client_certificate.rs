//! The client certificate a request came with (RFC 8705): the one the
//! client presented in the TLS handshake on the mutual-TLS listener, or,
//! when the TCP peer is one of `trusted_proxies` that ended mutual TLS
//! itself, the one its RFC 9440 `Client-Cert` header carries (with
//! `Client-Cert-Chain`). From any other peer those headers are ignored: a
//! client must not name its own certificate.

use actix_web::HttpRequest;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls::pki_types::CertificateDer;
use subtle::ConstantTimeEq;

use super::client_address::peer_is_trusted_proxy;
use crate::mtls::{CertificateSource, MAX_CHAIN, PresentedCertificate};
use crate::tokens::{TokenError, VerifiedToken};

pub const CLIENT_CERT_HEADER: &str = "client-cert";
pub const CLIENT_CERT_CHAIN_HEADER: &str = "client-cert-chain";

/// A certificate is a few kilobytes; a header far beyond is not one.
const MAX_HEADER_LEN: usize = 16 * 1024;

/// What the request says about a client certificate.
#[derive(Debug, Clone)]
pub enum RequestCertificate {
    None,
    Presented(PresentedCertificate),
    /// A `Client-Cert` header from a peer that is not a trusted proxy:
    /// ignored, and worth an audit row.
    UntrustedHeader,
}

impl RequestCertificate {
    pub fn presented(&self) -> Option<&PresentedCertificate> {
        match self {
            RequestCertificate::Presented(presented) => Some(presented),
            _ => None,
        }
    }
}

/// The request's client certificate, as far as it can be trusted. A
/// trusted proxy's malformed header counts as no certificate.
pub fn request_certificate(req: &HttpRequest) -> RequestCertificate {
    if let Some(presented) = req.conn_data::<PresentedCertificate>() {
        return RequestCertificate::Presented(presented.clone());
    }
    let Some(header) = req.headers().get(CLIENT_CERT_HEADER) else {
        return RequestCertificate::None;
    };
    if !peer_is_trusted_proxy(req) {
        return RequestCertificate::UntrustedHeader;
    }
    let chain_header = req
        .headers()
        .get_all(CLIENT_CERT_CHAIN_HEADER)
        .map(|v| v.as_bytes())
        .collect::<Vec<_>>();
    match from_headers(header.as_bytes(), &chain_header) {
        Some(presented) => RequestCertificate::Presented(presented),
        None => RequestCertificate::None,
    }
}

/// RFC 8705 §3: a certificate-bound token (`cnf.x5t#S256`) is good only
/// from a client that presented that certificate (compared in constant
/// time); any other token passes.
pub fn check_certificate_binding(
    req: &HttpRequest,
    token: &VerifiedToken,
) -> Result<(), TokenError> {
    let Some(bound) = token.claims.bound_certificate() else {
        return Ok(());
    };
    match request_certificate(req).presented() {
        Some(presented)
            if bool::from(
                presented
                    .thumbprint()
                    .as_str()
                    .as_bytes()
                    .ct_eq(bound.as_bytes()),
            ) =>
        {
            Ok(())
        }
        _ => {
            crate::telemetry::request::note_refusal(
                "certificate-bound token without its certificate",
            );
            Err(TokenError::CertificateBound)
        }
    }
}

/// RFC 9440 §2: `Client-Cert` is one structured-field byte sequence
/// (`:base64 DER:`); `Client-Cert-Chain` a list of them, possibly over
/// several header lines.
fn from_headers(leaf: &[u8], chain: &[&[u8]]) -> Option<PresentedCertificate> {
    let leaf = byte_sequence(std::str::from_utf8(leaf).ok()?)?;
    let mut certificates = vec![CertificateDer::from(leaf)];
    for line in chain {
        for item in std::str::from_utf8(line).ok()?.split(',') {
            if certificates.len() > MAX_CHAIN {
                return None;
            }
            certificates.push(CertificateDer::from(byte_sequence(item)?));
        }
    }
    PresentedCertificate::new(certificates, CertificateSource::ProxyHeader)
}

fn byte_sequence(item: &str) -> Option<Vec<u8>> {
    let item = item.trim();
    if item.len() > MAX_HEADER_LEN {
        return None;
    }
    let inner = item.strip_prefix(':')?.strip_suffix(':')?;
    STANDARD.decode(inner).ok().filter(|der| !der.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CertificateThumbprint;

    #[test]
    fn a_byte_sequence_is_base64_between_colons() {
        assert_eq!(byte_sequence(" :AQID: "), Some(vec![1, 2, 3]));
        assert_eq!(byte_sequence("AQID"), None);
        assert_eq!(byte_sequence(":AQID"), None);
        assert_eq!(byte_sequence("::"), None);
        assert_eq!(byte_sequence(":not base64!:"), None);
    }

    #[test]
    fn the_leaf_and_its_chain_are_read_and_the_thumbprint_is_the_leafs() {
        let presented = from_headers(b":AQID:", &[b":BAU=:, :Bgc=:", b":CA==:"]).expect("reads");
        assert_eq!(presented.leaf_der(), &[1, 2, 3]);
        assert_eq!(
            presented.thumbprint(),
            &CertificateThumbprint::of(&[1, 2, 3])
        );
        assert_eq!(presented.source, CertificateSource::ProxyHeader);
        assert!(from_headers(b":AQID:", &[b"junk"]).is_none());
        let long: Vec<&[u8]> = vec![b":AQ==:"; MAX_CHAIN + 1];
        assert!(from_headers(b":AQID:", &long).is_none());
    }
}
