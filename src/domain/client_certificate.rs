//! Client certificates (RFC 8705): a certificate's `x5t#S256` thumbprint,
//! what a `tls_client_auth` key expects of its certificate (a subject DN or
//! one subject alternative name), and whether a certificate shows it. Pure:
//! the DER is read with x509-parser, nothing is fetched or timed here (the
//! chain and the validity dates are `crate::mtls`'s).

use std::fmt;
use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A key holds at most this many registered certificates
/// (`self_signed_tls_client_auth`): enough for one in use and a few being
/// rolled in or out.
pub const MAX_REGISTERED_CERTIFICATES: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error(
        "not a certificate thumbprint: expected x5t#S256, the base64url SHA-256 of the \
         certificate's DER (43 characters), or a PEM certificate"
    )]
    Thumbprint,
    #[error("not a readable certificate (expected PEM `-----BEGIN CERTIFICATE-----`)")]
    Certificate,
    #[error("at most {MAX_REGISTERED_CERTIFICATES} certificates may be registered on a key")]
    TooMany,
    #[error("the same certificate is registered twice")]
    Duplicate,
    #[error(
        "tls_client_auth must be `subject_dn:<DN>`, `san_dns:<name>`, `san_uri:<URI>`, \
         `san_ip:<address>` or `san_email:<address>`"
    )]
    SubjectKind,
    #[error("tls_client_auth: {0}")]
    SubjectValue(&'static str),
}

/// `x5t#S256` (RFC 8705 §3.1): base64url, unpadded, of the SHA-256 of a
/// certificate's DER.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CertificateThumbprint(String);

impl CertificateThumbprint {
    /// The thumbprint of a certificate, from its DER.
    pub fn of(der: &[u8]) -> Self {
        CertificateThumbprint(URL_SAFE_NO_PAD.encode(Sha256::digest(der)))
    }

    /// A thumbprint as written: 43 base64url characters that decode to 32
    /// bytes.
    pub fn parse(raw: &str) -> Result<Self, CertificateError> {
        let raw = raw.trim();
        match URL_SAFE_NO_PAD.decode(raw) {
            Ok(bytes) if bytes.len() == 32 && raw.len() == 43 => {
                Ok(CertificateThumbprint(raw.to_owned()))
            }
            _ => Err(CertificateError::Thumbprint),
        }
    }

    /// A thumbprint, or a PEM certificate whose thumbprint is taken (the
    /// certificate itself is not kept).
    pub fn parse_or_certificate(raw: &str) -> Result<Self, CertificateError> {
        if raw.contains("-----BEGIN") {
            let der = certificate_der_from_pem(raw)?;
            return Ok(Self::of(&der));
        }
        Self::parse(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// In constant time: a presented certificate is compared with the
    /// registered ones.
    pub fn matches(&self, other: &CertificateThumbprint) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl fmt::Debug for CertificateThumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "x5t#S256={}", self.0)
    }
}

impl fmt::Display for CertificateThumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The DER of the first certificate in `pem`.
fn certificate_der_from_pem(pem: &str) -> Result<Vec<u8>, CertificateError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(pem.trim().as_bytes())
        .map_err(|_| CertificateError::Certificate)?;
    X509Certificate::from_der(&der).map_err(|_| CertificateError::Certificate)?;
    Ok(der.to_vec())
}

/// The certificates a `self_signed_tls_client_auth` key accepts, by
/// thumbprint: at most [`MAX_REGISTERED_CERTIFICATES`], none twice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisteredCertificates(Vec<CertificateThumbprint>);

impl RegisteredCertificates {
    /// Each entry a thumbprint or a PEM certificate.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, CertificateError> {
        if entries.len() > MAX_REGISTERED_CERTIFICATES {
            return Err(CertificateError::TooMany);
        }
        let mut thumbprints: Vec<CertificateThumbprint> = Vec::with_capacity(entries.len());
        for entry in entries {
            let thumbprint = CertificateThumbprint::parse_or_certificate(entry.as_ref())?;
            if thumbprints.contains(&thumbprint) {
                return Err(CertificateError::Duplicate);
            }
            thumbprints.push(thumbprint);
        }
        Ok(RegisteredCertificates(thumbprints))
    }

    /// As stored: space-separated thumbprints; `None` for none.
    pub fn to_stored(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| {
            self.0
                .iter()
                .map(CertificateThumbprint::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
    }

    pub fn from_stored(stored: Option<&str>) -> Result<Self, String> {
        let entries: Vec<&str> = stored.unwrap_or("").split_whitespace().collect();
        Self::parse(&entries).map_err(|e| format!("tls_client_certificates: {e}"))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &CertificateThumbprint> {
        self.0.iter()
    }

    /// Whether `presented` is one of them (every one compared, in
    /// constant time).
    pub fn contains(&self, presented: &CertificateThumbprint) -> bool {
        self.0.iter().fold(false, |found, registered| {
            found | registered.matches(presented)
        })
    }
}

/// What a `tls_client_auth` key's certificate must show (RFC 8705 §2.1.2):
/// its subject DN, or one subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsClientSubject {
    /// RFC 4514 form, e.g. `CN=erp,O=Example`; matched attribute by
    /// attribute, in either order.
    Dn(Vec<(String, String)>),
    Dns(String),
    Uri(String),
    Ip(IpAddr),
    Email(String),
}

const MAX_SUBJECT_LEN: usize = 1024;

impl TlsClientSubject {
    /// `subject_dn:<DN>`, `san_dns:<name>`, `san_uri:<URI>`,
    /// `san_ip:<address>` or `san_email:<address>` (the names of RFC 8705
    /// §2.1.2's client metadata).
    pub fn parse(raw: &str) -> Result<Self, CertificateError> {
        let raw = raw.trim();
        if raw.len() > MAX_SUBJECT_LEN {
            return Err(CertificateError::SubjectValue("at most 1024 characters"));
        }
        if raw.chars().any(char::is_control) {
            return Err(CertificateError::SubjectValue("no control characters"));
        }
        let (kind, value) = raw.split_once(':').ok_or(CertificateError::SubjectKind)?;
        let value = value.trim();
        if value.is_empty() {
            return Err(CertificateError::SubjectValue("the value is empty"));
        }
        match kind.trim() {
            "subject_dn" => parse_dn(value).map(TlsClientSubject::Dn),
            "san_dns" if value.contains(char::is_whitespace) => {
                Err(CertificateError::SubjectValue("a DNS name has no spaces"))
            }
            "san_dns" => Ok(TlsClientSubject::Dns(value.to_ascii_lowercase())),
            "san_uri" if value.contains(char::is_whitespace) || !value.contains(':') => Err(
                CertificateError::SubjectValue("a URI has a scheme and no spaces"),
            ),
            "san_uri" => Ok(TlsClientSubject::Uri(value.to_owned())),
            "san_ip" => value
                .parse()
                .map(TlsClientSubject::Ip)
                .map_err(|_| CertificateError::SubjectValue("not an IPv4 or IPv6 address")),
            "san_email" if !value.contains('@') || value.contains(char::is_whitespace) => {
                Err(CertificateError::SubjectValue("not an e-mail address"))
            }
            "san_email" => Ok(TlsClientSubject::Email(value.to_owned())),
            _ => Err(CertificateError::SubjectKind),
        }
    }

    /// Whether the certificate (DER) shows this subject. A certificate that
    /// cannot be read shows nothing.
    pub fn is_shown_by(&self, der: &[u8]) -> bool {
        let Ok((_, certificate)) = X509Certificate::from_der(der) else {
            return false;
        };
        match self {
            TlsClientSubject::Dn(expected) => {
                let Some(shown) = certificate_dn(&certificate) else {
                    return false;
                };
                let same =
                    |a: &[(String, String)], b: &mut dyn Iterator<Item = &(String, String)>| {
                        a.len() == shown.len()
                            && a.iter()
                                .zip(b)
                                .all(|((ka, va), (kb, vb))| ka == kb && va.eq_ignore_ascii_case(vb))
                    };
                same(expected, &mut shown.iter()) || same(expected, &mut shown.iter().rev())
            }
            other => {
                let Ok(Some(names)) = certificate.subject_alternative_name() else {
                    return false;
                };
                names
                    .value
                    .general_names
                    .iter()
                    .any(|name| match (other, name) {
                        (TlsClientSubject::Dns(want), GeneralName::DNSName(got)) => {
                            want.eq_ignore_ascii_case(got)
                        }
                        (TlsClientSubject::Uri(want), GeneralName::URI(got)) => want == got,
                        (TlsClientSubject::Email(want), GeneralName::RFC822Name(got)) => {
                            want.eq_ignore_ascii_case(got)
                        }
                        (TlsClientSubject::Ip(want), GeneralName::IPAddress(got)) => match want {
                            IpAddr::V4(v4) => v4.octets().as_slice() == *got,
                            IpAddr::V6(v6) => v6.octets().as_slice() == *got,
                        },
                        _ => false,
                    })
            }
        }
    }

    /// As stored, and as the API shows it.
    pub fn to_stored(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for TlsClientSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsClientSubject::Dn(pairs) => {
                let dn: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| format!("{k}={}", escape_dn_value(v)))
                    .collect();
                write!(f, "subject_dn:{}", dn.join(","))
            }
            TlsClientSubject::Dns(name) => write!(f, "san_dns:{name}"),
            TlsClientSubject::Uri(uri) => write!(f, "san_uri:{uri}"),
            TlsClientSubject::Ip(ip) => write!(f, "san_ip:{ip}"),
            TlsClientSubject::Email(email) => write!(f, "san_email:{email}"),
        }
    }
}

fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An RFC 4514 DN (`CN=erp,O=Example`; `\,` escapes a comma) as
/// (attribute, value) pairs, attributes upper-cased.
fn parse_dn(raw: &str) -> Result<Vec<(String, String)>, CertificateError> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next) => {
                    current.push('\\');
                    current.push(next);
                }
                None => return Err(CertificateError::SubjectValue("a DN ends in `\\`")),
            },
            ',' | '+' => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|part| {
            let (name, value) = part.split_once('=').ok_or(CertificateError::SubjectValue(
                "a DN is attribute=value pairs separated by commas, e.g. CN=erp,O=Example",
            ))?;
            let name = name.trim().to_ascii_uppercase();
            let value = unescape(value.trim());
            if name.is_empty() || value.is_empty() {
                return Err(CertificateError::SubjectValue(
                    "a DN attribute has an empty name or value",
                ));
            }
            Ok((name, value))
        })
        .collect()
}

fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The subject's attributes in the order they are encoded; `None` when a
/// value is not a string.
fn certificate_dn(certificate: &X509Certificate<'_>) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for rdn in certificate.subject().iter_rdn() {
        for attribute in rdn.iter() {
            let oid = attribute.attr_type().to_id_string();
            let name = match oid.as_str() {
                "2.5.4.3" => "CN",
                "2.5.4.6" => "C",
                "2.5.4.7" => "L",
                "2.5.4.8" => "ST",
                "2.5.4.9" => "STREET",
                "2.5.4.10" => "O",
                "2.5.4.11" => "OU",
                "2.5.4.5" => "SERIALNUMBER",
                "0.9.2342.19200300.100.1.25" => "DC",
                "0.9.2342.19200300.100.1.1" => "UID",
                "1.2.840.113549.1.9.1" => "EMAILADDRESS",
                other => other,
            }
            .to_owned();
            pairs.push((name, attribute.as_str().ok()?.to_owned()));
        }
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    fn certificate(dn: &[(DnType, &str)], sans: Vec<SanType>) -> Vec<u8> {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        for (kind, value) in dn {
            name.push(kind.clone(), *value);
        }
        params.distinguished_name = name;
        params.subject_alt_names = sans;
        params
            .self_signed(&key)
            .expect("certificate")
            .der()
            .to_vec()
    }

    #[test]
    fn a_thumbprint_is_43_base64url_characters_of_a_sha256() {
        let der = b"not really a certificate";
        let thumbprint = CertificateThumbprint::of(der);
        assert_eq!(thumbprint.as_str().len(), 43);
        assert_eq!(
            CertificateThumbprint::parse(thumbprint.as_str()).expect("parses"),
            thumbprint
        );
        assert_eq!(
            CertificateThumbprint::parse("abc"),
            Err(CertificateError::Thumbprint)
        );
        assert_eq!(
            CertificateThumbprint::parse(&format!("{}=", thumbprint.as_str())),
            Err(CertificateError::Thumbprint)
        );
    }

    #[test]
    fn registered_certificates_take_pem_or_thumbprints_at_most_five_none_twice() {
        let der = certificate(&[(DnType::CommonName, "a")], vec![]);
        let key = KeyPair::generate().expect("key");
        let pem = CertificateParams::new(vec!["b".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        let thumbprint = CertificateThumbprint::of(&der);
        let registered = RegisteredCertificates::parse(&[thumbprint.as_str(), pem.pem().as_str()])
            .expect("parses");
        assert!(registered.contains(&thumbprint));
        assert!(registered.contains(&CertificateThumbprint::of(pem.der())));
        let stored = registered.to_stored().expect("stored");
        assert_eq!(
            RegisteredCertificates::from_stored(Some(&stored)).expect("reads"),
            registered
        );
        assert_eq!(
            RegisteredCertificates::parse(&[thumbprint.as_str(), thumbprint.as_str()]),
            Err(CertificateError::Duplicate)
        );
        let six: Vec<String> = (0..6u8)
            .map(|i| CertificateThumbprint::of(&[i]).to_string())
            .collect();
        assert_eq!(
            RegisteredCertificates::parse(&six),
            Err(CertificateError::TooMany)
        );
    }

    #[test]
    fn a_subject_dn_matches_in_either_order_and_a_san_by_its_kind() {
        let der = certificate(
            &[
                (DnType::OrganizationName, "Example"),
                (DnType::CommonName, "erp"),
            ],
            vec![
                SanType::DnsName("erp.example.com".try_into().expect("dns")),
                SanType::URI("spiffe://example.com/erp".try_into().expect("uri")),
                SanType::IpAddress("192.0.2.7".parse().expect("ip")),
                SanType::Rfc822Name("erp@example.com".try_into().expect("email")),
            ],
        );
        for shown in [
            "subject_dn:CN=erp,O=Example",
            "subject_dn:O=Example, CN=erp",
            "subject_dn:cn=ERP,o=example",
            "san_dns:ERP.example.com",
            "san_uri:spiffe://example.com/erp",
            "san_ip:192.0.2.7",
            "san_email:erp@example.com",
        ] {
            let subject = TlsClientSubject::parse(shown).expect(shown);
            assert!(subject.is_shown_by(&der), "{shown}");
        }
        for not_shown in [
            "subject_dn:CN=erp",
            "subject_dn:CN=other,O=Example",
            "san_dns:other.example.com",
            "san_uri:spiffe://example.com/other",
            "san_ip:192.0.2.8",
            "san_email:other@example.com",
        ] {
            let subject = TlsClientSubject::parse(not_shown).expect(not_shown);
            assert!(!subject.is_shown_by(&der), "{not_shown}");
        }
        assert!(
            !TlsClientSubject::parse("san_dns:x")
                .expect("dns")
                .is_shown_by(b"junk")
        );
    }

    #[test]
    fn a_subject_is_stored_as_it_is_shown_and_bad_ones_say_why() {
        let subject = TlsClientSubject::parse("subject_dn:CN=a\\,b, O=Example").expect("dn");
        assert_eq!(subject.to_stored(), "subject_dn:CN=a\\,b,O=Example");
        assert_eq!(
            TlsClientSubject::parse(&subject.to_stored()).expect("again"),
            subject
        );
        assert_eq!(
            TlsClientSubject::parse("dns:x"),
            Err(CertificateError::SubjectKind)
        );
        assert!(TlsClientSubject::parse("san_ip:nope").is_err());
        assert!(TlsClientSubject::parse("subject_dn:CN").is_err());
        assert!(TlsClientSubject::parse("san_email:nobody").is_err());
        assert!(TlsClientSubject::parse("san_dns:").is_err());
    }
}
