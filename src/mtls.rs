//! Mutual TLS (RFC 8705): the client certificate a connection presented,
//! the TLS layer that asks for one, and the CAs `tls_client_auth` keys
//! chain to.
//!
//! The mutual-TLS listener asks every client for a certificate but does not
//! require one, and accepts any certificate whose handshake signature
//! verifies ([`AnyClientCertificate`]): whether it authenticates a key is
//! Keyport's decision, made per key in `service::clients` (a registered
//! thumbprint, or a chain to [`ClientAuthorities`] and a subject), so that a
//! refusal is an OAuth `invalid_client` answer rather than a TLS alert, and
//! self-signed certificates get through. No error or log line carries a
//! certificate: a certificate is named by its `x5t#S256` thumbprint.

use std::any::Any;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use actix_web::dev::Extensions;
use aws_lc_rs::digest::{Context, SHA256};
use prometheus::{IntCounter, IntCounterVec, Opts};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};

use crate::domain::CertificateThumbprint;
use crate::tls::{CertificateReloader, TlsError};

/// A chain longer than this is not a client certificate anyone issues.
pub const MAX_CHAIN: usize = 8;

/// The certificate a client presented (over mutual TLS, or through a
/// trusted proxy's `Client-Cert`), with the chain it sent and its
/// thumbprint, computed once.
#[derive(Clone)]
pub struct PresentedCertificate {
    leaf: CertificateDer<'static>,
    intermediates: Vec<CertificateDer<'static>>,
    thumbprint: CertificateThumbprint,
    /// SHA-256 over the leaf and the intermediates, each length-prefixed:
    /// what [`ClientAuthorities`] remembers a passed chain by. Computed on
    /// the first chain check only: a registered (self-signed) certificate
    /// never needs it.
    chain_digest: OnceLock<[u8; 32]>,
    /// How it reached Keyport, for the log and the audit trail.
    pub source: CertificateSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateSource {
    /// The TLS handshake on the mutual-TLS listener.
    Handshake,
    /// A trusted proxy's RFC 9440 `Client-Cert` header.
    ProxyHeader,
}

impl PresentedCertificate {
    /// `chain`: the leaf first, then what the client sent with it.
    pub fn new(chain: Vec<CertificateDer<'static>>, source: CertificateSource) -> Option<Self> {
        let mut chain = chain.into_iter();
        let leaf = chain.next()?;
        let intermediates: Vec<_> = chain.take(MAX_CHAIN).collect();
        let thumbprint = CertificateThumbprint::of(&leaf);
        Some(PresentedCertificate {
            leaf,
            intermediates,
            thumbprint,
            chain_digest: OnceLock::new(),
            source,
        })
    }

    fn chain_digest(&self) -> &[u8; 32] {
        self.chain_digest.get_or_init(|| {
            let mut digest = Context::new(&SHA256);
            for certificate in std::iter::once(&self.leaf).chain(&self.intermediates) {
                digest.update(&(certificate.len() as u64).to_be_bytes());
                digest.update(certificate);
            }
            let mut chain_digest = [0; 32];
            chain_digest.copy_from_slice(digest.finish().as_ref());
            chain_digest
        })
    }

    pub fn thumbprint(&self) -> &CertificateThumbprint {
        &self.thumbprint
    }

    pub fn leaf_der(&self) -> &[u8] {
        &self.leaf
    }
}

impl fmt::Debug for PresentedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresentedCertificate")
            .field("thumbprint", &self.thumbprint)
            .field("intermediates", &self.intermediates.len())
            .field("source", &self.source)
            .finish()
    }
}

/// In a connection's data: it came to the mutual-TLS listener, whose
/// public URL (not the issuer's) its requests name (a DPoP proof's `htu`).
#[derive(Debug, Clone, Copy)]
pub struct MtlsConnection;

/// For `HttpServer::on_connect` on the mutual-TLS listener: marks the
/// connection as [`MtlsConnection`] and keeps the certificate the client
/// presented, if any, where [`PresentedCertificate`] is read by the
/// request's handlers (`HttpRequest::conn_data`).
pub fn keep_peer_certificate(connection: &dyn Any, data: &mut Extensions) {
    type Stream = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    let Some(stream) = connection.downcast_ref::<Stream>() else {
        return;
    };
    data.insert(MtlsConnection);
    let (_, session) = stream.get_ref();
    let Some(chain) = session.peer_certificates() else {
        return;
    };
    let chain = chain.iter().map(|c| c.clone().into_owned()).collect();
    if let Some(presented) = PresentedCertificate::new(chain, CertificateSource::Handshake) {
        data.insert(presented);
    }
}

/// The mutual-TLS listener's client verifier: asks for a certificate
/// (optional), names no CA (so a client sends whichever it has), and
/// checks only that the client holds the certificate's private key (the
/// handshake signature). Keyport decides afterwards whether the certificate
/// authenticates anything.
#[derive(Debug)]
pub struct AnyClientCertificate {
    provider: Arc<CryptoProvider>,
}

/// The mutual-TLS listener's configuration: the HTTPS certificate, and
/// every client asked for a certificate (optional; see
/// [`AnyClientCertificate`]).
pub fn server_config(reloader: &CertificateReloader) -> Result<ServerConfig, TlsError> {
    reloader.server_config_with(Arc::new(AnyClientCertificate::new(reloader.provider())))
}

impl AnyClientCertificate {
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        AnyClientCertificate { provider }
    }
}

impl ClientCertVerifier for AnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Why a certificate does not chain to the configured CAs, in words the
/// client is told (`invalid_client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub enum ChainRefusal {
    NoAuthorities,
    UnknownIssuer,
    Expired,
    NotValidYet,
    WrongPurpose,
    Invalid,
}

impl ChainRefusal {
    /// What the verifier's error means for the client.
    fn of(err: rustls::Error) -> Self {
        use rustls::CertificateError as E;
        match err {
            rustls::Error::InvalidCertificate(cert) => match cert {
                E::UnknownIssuer | E::BadSignature => ChainRefusal::UnknownIssuer,
                E::Expired | E::ExpiredContext { .. } => ChainRefusal::Expired,
                E::NotValidYet | E::NotValidYetContext { .. } => ChainRefusal::NotValidYet,
                E::InvalidPurpose | E::InvalidPurposeContext { .. } => ChainRefusal::WrongPurpose,
                _ => ChainRefusal::Invalid,
            },
            _ => ChainRefusal::Invalid,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            ChainRefusal::NoAuthorities => {
                "the server trusts no CA for client certificates (tls_client_ca_file)"
            }
            ChainRefusal::UnknownIssuer => "the client certificate is not issued by a trusted CA",
            ChainRefusal::Expired => "the client certificate has expired",
            ChainRefusal::NotValidYet => "the client certificate is not valid yet",
            ChainRefusal::WrongPurpose => {
                "the client certificate is not for client authentication (extended key usage)"
            }
            ChainRefusal::Invalid => "the client certificate cannot be verified",
        }
    }
}

/// The CAs a `tls_client_auth` key's certificate must chain to, read from
/// `tls_client_ca_file` and swapped in place on reload (SIGHUP).
pub struct ClientAuthorities {
    file: Option<PathBuf>,
    provider: Arc<CryptoProvider>,
    current: RwLock<Option<Arc<LoadedAuthorities>>>,
    checks: ChainChecks,
}

/// One reading of the CA file, with the chains that passed against it in
/// the current second. A reload replaces both, so nothing that passed
/// against the CAs before it is remembered after it.
struct LoadedAuthorities {
    verifier: Arc<dyn ClientCertVerifier>,
    passed: Mutex<PassedThisSecond>,
}

/// Chains (by [`PresentedCertificate`]'s chain digest) that passed in one
/// second. The verifier judges validity dates to the second, so within that
/// second and against the same CAs a chain gets the same answer again: a
/// client on a kept-alive connection pays for its chain's signatures once
/// per second rather than once per token, and a certificate that expires is
/// refused from its first second past `notAfter`, as without the memory.
/// Only passes are kept; a refusal is checked again every time.
#[derive(Default)]
struct PassedThisSecond {
    second: u64,
    chains: HashSet<[u8; 32]>,
}

/// Distinct chains remembered within one second; beyond it, others are
/// checked every time (their second ends soon anyway).
const PASSED_PER_SECOND: usize = 4096;

impl PassedThisSecond {
    fn holds(&self, second: u64, chain: &[u8; 32]) -> bool {
        self.second == second && self.chains.contains(chain)
    }

    fn remember(&mut self, second: u64, chain: [u8; 32]) {
        if self.second != second {
            self.second = second;
            self.chains.clear();
        }
        if self.chains.len() < PASSED_PER_SECOND {
            self.chains.insert(chain);
        }
    }
}

/// `keyport_client_certificate_chain_checks_total`: chains checked in full
/// (and whether they passed), and those answered from the second's memory.
#[derive(Clone)]
struct ChainChecks {
    all: IntCounterVec,
    passed: IntCounter,
    refused: IntCounter,
    remembered: IntCounter,
}

impl ChainChecks {
    fn new() -> Self {
        // The name and label are constants: this cannot fail.
        let all = IntCounterVec::new(
            Opts::new(
                "keyport_client_certificate_chain_checks_total",
                "Client certificates held against the tls_client_ca_file CAs: checked in full \
                 and passed (passed) or refused (refused), or passed earlier in the same second \
                 against the same CAs (remembered)",
            ),
            &["result"],
        )
        .expect("a valid counter");
        ChainChecks {
            passed: all.with_label_values(&["passed"]),
            refused: all.with_label_values(&["refused"]),
            remembered: all.with_label_values(&["remembered"]),
            all,
        }
    }
}

impl fmt::Debug for ClientAuthorities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuthorities")
            .field("file", &self.file)
            .field("loaded", &self.loaded())
            .finish()
    }
}

impl ClientAuthorities {
    /// Nothing read yet: [`Self::reload`] reads `file`.
    pub fn new(file: Option<PathBuf>) -> Self {
        ClientAuthorities {
            file,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            current: RwLock::new(None),
            checks: ChainChecks::new(),
        }
    }

    pub fn loaded(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// The chain checks' counter, for `/metrics`.
    pub fn checks_counter(&self) -> IntCounterVec {
        self.checks.all.clone()
    }

    /// Reads the CA file (if one is configured). On error the CAs held
    /// before stay, and the error names the file.
    pub fn reload(&self) -> Result<(), TlsError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let verifier = read_authorities(file, &self.provider)?;
        let loaded = Arc::new(LoadedAuthorities {
            verifier,
            passed: Mutex::default(),
        });
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(loaded);
        Ok(())
    }

    /// Whether `presented` chains to one of the CAs, is within its validity
    /// dates now, and is meant for client authentication.
    pub fn verify(&self, presented: &PresentedCertificate) -> Result<(), ChainRefusal> {
        let loaded = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(ChainRefusal::NoAuthorities)?;
        let now = UnixTime::now();
        let second = now.as_secs();
        let chain = presented.chain_digest();
        let passed = || loaded.passed.lock().unwrap_or_else(PoisonError::into_inner);
        if passed().holds(second, chain) {
            self.checks.remembered.inc();
            return Ok(());
        }
        match loaded
            .verifier
            .verify_client_cert(&presented.leaf, &presented.intermediates, now)
        {
            Ok(_) => {
                self.checks.passed.inc();
                passed().remember(second, *chain);
                Ok(())
            }
            Err(err) => {
                self.checks.refused.inc();
                Err(ChainRefusal::of(err))
            }
        }
    }
}

fn read_authorities(
    file: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let invalid = |reason: String| TlsError::Invalid {
        what: "client CA",
        path: file.to_owned(),
        reason,
    };
    let pem = std::fs::read(file).map_err(|source| TlsError::Read {
        what: "client CA",
        path: file.to_owned(),
        source,
    })?;
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate =
            certificate.map_err(|_| invalid("not a readable PEM certificate bundle".to_owned()))?;
        roots
            .add(certificate)
            .map_err(|err| invalid(format!("a certificate is not a usable CA ({err})")))?;
    }
    if roots.is_empty() {
        return Err(invalid(
            "no `-----BEGIN CERTIFICATE-----` section found".to_owned(),
        ));
    }
    let count = roots.len();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
            .build()
            .map_err(|err| invalid(err.to_string()))?;
    log::info!(
        "mutual TLS: {count} CA certificate(s) for tls_client_auth keys read from {}",
        file.display()
    );
    Ok(verifier)
}
