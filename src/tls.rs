//! HTTPS: the certificate chain and private key Keyport serves, read from PEM
//! files, and swapped in place on reload (SIGHUP, or
//! [`CertificateReloader::reload_certificate`]), so a renewed certificate is
//! served from the next handshake on without dropping the listener.
//!
//! rustls runs on the aws-lc-rs provider the JWT code already links; nothing
//! here pulls in `ring`. No error or log line carries key material: a file is
//! named by its path, a certificate by its SHA-256 fingerprint.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, ServerConfig};
use sha2::{Digest, Sha256};

use crate::config::TlsSettings;

const CERTIFICATE: &str = "certificate";
const PRIVATE_KEY: &str = "private key";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS {what} file {}", .path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the TLS {what} file {} is not usable: {reason}", .path.display())]
    Invalid {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "the private key in {} does not belong to the first certificate in {} \
         (the server's own certificate comes first, then its intermediates)",
        .key.display(),
        .cert.display()
    )]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot configure TLS: {0}")]
    Config(String),
    #[error("HTTPS is not configured: set tls_cert_file and tls_key_file")]
    NotConfigured,
}

/// The certificate served now, with what is needed to replace it.
struct Certificates {
    files: TlsSettings,
    provider: Arc<CryptoProvider>,
    current: RwLock<Served>,
    /// One reload at a time: two racing reloads could otherwise swap in the
    /// older of the two reads last.
    reloading: Mutex<()>,
}

#[derive(Clone)]
struct Served {
    key: Arc<CertifiedKey>,
    fingerprint: String,
}

/// rustls asks this for the certificate at every handshake; a reload swaps
/// what it answers. A handshake holds the read lock for one `Arc` clone.
impl ResolvesServerCert for Certificates {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.served().key))
    }
}

impl Certificates {
    fn served(&self) -> Served {
        // A panic while holding the lock cannot leave a half-swapped value
        // behind (the swap is one assignment), so a poisoned lock is usable.
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

// By hand: `CertifiedKey`'s own `Debug` reaches into the signing key; this
// one names files and a fingerprint only.
impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates")
            .field("cert_file", &self.files.cert_file)
            .field("key_file", &self.files.key_file)
            .field("fingerprint", &self.served().fingerprint)
            .finish()
    }
}

/// A handle on the certificate being served: builds the rustls
/// configuration and reloads the files. Clones share one certificate.
#[derive(Clone, Debug)]
pub struct CertificateReloader {
    certificates: Arc<Certificates>,
}

impl CertificateReloader {
    /// Reads and checks both files; an error names the file and what is wrong.
    pub fn load(files: &TlsSettings) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let served = read_certified_key(files, &provider)?;
        log::info!(
            "HTTPS: serving the certificate in {} (SHA-256 fingerprint {}, chain of {})",
            files.cert_file.display(),
            served.fingerprint,
            served.key.cert.len()
        );
        Ok(CertificateReloader {
            certificates: Arc::new(Certificates {
                files: files.clone(),
                provider,
                current: RwLock::new(served),
                reloading: Mutex::new(()),
            }),
        })
    }

    /// A rustls server configuration that asks this handle for its
    /// certificate at every handshake (TLS 1.2 and 1.3, no client
    /// certificates). A returning client resumes its session with a
    /// stateless ticket (sealed under a key of this process's, rotated
    /// every six hours), so resumption holds for any number of clients
    /// and the server stores nothing per client; TLS 1.3 resumption still
    /// makes a fresh key exchange, so forward secrecy is kept.
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let resolver: Arc<dyn ResolvesServerCert> = self.certificates.clone();
        let mut config =
            ServerConfig::builder_with_provider(Arc::clone(&self.certificates.provider))
                .with_safe_default_protocol_versions()
                .map_err(|err| TlsError::Config(err.to_string()))?
                .with_no_client_auth()
                .with_cert_resolver(resolver);
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
            .map_err(|err| TlsError::Config(err.to_string()))?;
        Ok(config)
    }

    /// [`Self::server_config`] with `client_certificates` deciding what a
    /// client is asked for and which certificates the handshake accepts
    /// (the mutual-TLS listener's, `crate::mtls::server_config`).
    pub fn server_config_with(
        &self,
        client_certificates: Arc<dyn ClientCertVerifier>,
    ) -> Result<ServerConfig, TlsError> {
        let resolver: Arc<dyn ResolvesServerCert> = self.certificates.clone();
        Ok(
            ServerConfig::builder_with_provider(Arc::clone(&self.certificates.provider))
                .with_safe_default_protocol_versions()
                .map_err(|err| TlsError::Config(err.to_string()))?
                .with_client_cert_verifier(client_certificates)
                .with_cert_resolver(resolver),
        )
    }

    /// The cryptography the handshakes use.
    pub fn provider(&self) -> Arc<CryptoProvider> {
        Arc::clone(&self.certificates.provider)
    }

    /// Re-reads both files. If they hold a usable certificate and key, new
    /// handshakes get them at once (connections already open keep theirs);
    /// if not, the old certificate stays and the error is logged and returned.
    pub fn reload_certificate(&self) -> Result<(), TlsError> {
        let certificates = &self.certificates;
        let _one_at_a_time = certificates
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let old = certificates.served().fingerprint;
        match read_certified_key(&certificates.files, &certificates.provider) {
            Ok(served) => {
                log::info!(
                    "TLS certificate reloaded from {}: now serving SHA-256 fingerprint {} (was {})",
                    certificates.files.cert_file.display(),
                    served.fingerprint,
                    old
                );
                *certificates
                    .current
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = served;
                Ok(())
            }
            Err(err) => {
                log::error!(
                    "TLS certificate reload failed; still serving SHA-256 fingerprint {old}: {}",
                    crate::telemetry::error_chain(&err)
                );
                Err(err)
            }
        }
    }

    /// The SHA-256 fingerprint of the certificate served now, as
    /// `openssl x509 -noout -fingerprint -sha256` prints it.
    pub fn fingerprint(&self) -> String {
        self.certificates.served().fingerprint
    }
}

/// `AB:CD:…`, the SHA-256 of a certificate's DER.
pub fn fingerprint(certificate: &[u8]) -> String {
    Sha256::digest(certificate)
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn read_certified_key(files: &TlsSettings, provider: &CryptoProvider) -> Result<Served, TlsError> {
    let cert_file = &files.cert_file;
    let key_file = &files.key_file;
    let chain = read_chain(cert_file)?;
    let key = read_key(key_file)?;
    let signing_key =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|err| TlsError::Invalid {
                what: PRIVATE_KEY,
                path: key_file.clone(),
                reason: format!("not a usable RSA, ECDSA or Ed25519 key ({err})"),
            })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // `Unknown`: the key cannot tell its public half; rustls accepts it.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::Mismatch {
                cert: cert_file.clone(),
                key: key_file.clone(),
            });
        }
        Err(err) => {
            return Err(TlsError::Invalid {
                what: CERTIFICATE,
                path: cert_file.clone(),
                reason: format!("the first certificate cannot be parsed ({err})"),
            });
        }
    }
    let fingerprint = certified
        .cert
        .first()
        .map(|leaf| fingerprint(leaf))
        .unwrap_or_default();
    Ok(Served {
        key: Arc::new(certified),
        fingerprint,
    })
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let invalid = |reason: String| TlsError::Invalid {
        what: CERTIFICATE,
        path: path.to_owned(),
        reason,
    };
    let pem = read_file(CERTIFICATE, path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid(pem_problem(&err)))?;
    if chain.is_empty() {
        return Err(invalid(
            "no `-----BEGIN CERTIFICATE-----` section found".to_owned(),
        ));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file(PRIVATE_KEY, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|err| {
        let reason = match err {
            pem::Error::NoItemsFound if contains(&pem, b"ENCRYPTED PRIVATE KEY") => {
                "the key is encrypted; Keyport needs it unencrypted (protect the file instead)"
                    .to_owned()
            }
            pem::Error::NoItemsFound => "no private key found (expected `BEGIN PRIVATE KEY` \
                 (PKCS#8), `BEGIN RSA PRIVATE KEY` (PKCS#1) or `BEGIN EC PRIVATE KEY` (SEC1))"
                .to_owned(),
            other => pem_problem(&other),
        };
        TlsError::Invalid {
            what: PRIVATE_KEY,
            path: path.to_owned(),
            reason,
        }
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// What is wrong with a PEM file, in words that never quote its content
/// (a key file's lines are key material).
fn pem_problem(err: &pem::Error) -> String {
    match err {
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no `-----END` line",
        pem::Error::IllegalSectionStart { .. } => "a `-----BEGIN` line is malformed",
        pem::Error::Base64Decode(_) => "a PEM section is not valid base64",
        pem::Error::SectionTooLarge => "a PEM section is too large",
        _ => "not a readable PEM file",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    struct Files {
        dir: PathBuf,
    }

    impl Files {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!(
                "keyport_tls_unit_{}",
                uuid::Uuid::new_v4().simple()
            ));
            std::fs::create_dir_all(&dir).expect("temp dir");
            Files { dir }
        }

        fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
            let path = self.dir.join(name);
            std::fs::write(&path, content).expect("write");
            path
        }

        fn settings(&self, cert: &str, key: &str) -> TlsSettings {
            TlsSettings {
                cert_file: self.dir.join(cert),
                key_file: self.dir.join(key),
            }
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// A self-signed certificate for 127.0.0.1, and its key pair.
    fn self_signed(alg: &'static rcgen::SignatureAlgorithm) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate_for(alg).expect("key");
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        (cert, key)
    }

    fn pem(label: &str, der: &[u8]) -> String {
        use base64::Engine;
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|chunk| std::str::from_utf8(chunk).expect("ascii"))
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    /// The content of the OCTET STRING in a PKCS#8 `PrivateKeyInfo`: for
    /// RSA, the PKCS#1 `RSAPrivateKey`.
    fn pkcs8_inner_key(pkcs8: &[u8]) -> Vec<u8> {
        // Returns (content start, content length) of the TLV at `at`.
        fn tlv(der: &[u8], at: usize) -> (usize, usize) {
            let first = der[at + 1] as usize;
            if first < 0x80 {
                (at + 2, first)
            } else {
                let n = first & 0x7f;
                let len = der[at + 2..at + 2 + n]
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | *b as usize);
                (at + 2 + n, len)
            }
        }
        let (body, _) = tlv(pkcs8, 0); // PrivateKeyInfo SEQUENCE
        let (v, vlen) = tlv(pkcs8, body); // version INTEGER
        let (a, alen) = tlv(pkcs8, v + vlen); // AlgorithmIdentifier SEQUENCE
        let (k, klen) = tlv(pkcs8, a + alen); // privateKey OCTET STRING
        assert_eq!(pkcs8[a + alen], 0x04, "OCTET STRING");
        pkcs8[k..k + klen].to_vec()
    }

    #[test]
    fn a_pkcs8_ecdsa_key_and_its_certificate_load() {
        let files = Files::new();
        let (cert, key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        files.write("cert.pem", cert.pem());
        files.write("key.pem", key.serialize_pem());
        let reloader =
            CertificateReloader::load(&files.settings("cert.pem", "key.pem")).expect("loads");
        assert_eq!(reloader.fingerprint(), fingerprint(cert.der()));
        assert_eq!(reloader.fingerprint().len(), 32 * 3 - 1);
        reloader.server_config().expect("rustls config");
    }

    #[test]
    fn a_sec1_ec_key_loads() {
        use aws_lc_rs::encoding::{AsDer, EcPrivateKeyRfc5915Der};
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
        let files = Files::new();
        let (cert, key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &key.serialize_der())
            .expect("pkcs8");
        let sec1: EcPrivateKeyRfc5915Der<'_> = pair.private_key().as_der().expect("sec1");
        files.write("cert.pem", cert.pem());
        files.write("key.pem", pem("EC PRIVATE KEY", sec1.as_ref()));
        CertificateReloader::load(&files.settings("cert.pem", "key.pem")).expect("SEC1 loads");
    }

    #[test]
    fn a_pkcs1_rsa_key_loads() {
        let files = Files::new();
        let (cert, key) = self_signed(&rcgen::PKCS_RSA_SHA256);
        files.write("cert.pem", cert.pem());
        files.write(
            "key.pem",
            pem("RSA PRIVATE KEY", &pkcs8_inner_key(&key.serialize_der())),
        );
        CertificateReloader::load(&files.settings("cert.pem", "key.pem")).expect("PKCS#1 loads");
    }

    #[test]
    fn a_missing_file_is_named_in_the_error() {
        let files = Files::new();
        let (cert, _) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        files.write("cert.pem", cert.pem());
        let err = CertificateReloader::load(&files.settings("cert.pem", "absent.pem"))
            .expect_err("no key file");
        let message = crate::telemetry::error_chain(&err);
        assert!(message.contains("private key file"), "{message}");
        assert!(message.contains("absent.pem"), "{message}");
    }

    #[test]
    fn a_key_that_belongs_to_another_certificate_is_refused() {
        let files = Files::new();
        let (cert, _) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (_, other_key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        files.write("cert.pem", cert.pem());
        files.write("key.pem", other_key.serialize_pem());
        let err = CertificateReloader::load(&files.settings("cert.pem", "key.pem"))
            .expect_err("mismatch");
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[test]
    fn files_without_the_expected_sections_say_what_is_missing() {
        let files = Files::new();
        let (cert, key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        let key_pem = key.serialize_pem();
        // The two files swapped: a key where the certificate belongs.
        files.write("cert.pem", &key_pem);
        files.write("key.pem", cert.pem());
        let err = CertificateReloader::load(&files.settings("cert.pem", "key.pem"))
            .expect_err("no certificate");
        assert!(err.to_string().contains("BEGIN CERTIFICATE"), "{err}");
        let err =
            CertificateReloader::load(&files.settings("key.pem", "key.pem")).expect_err("no key");
        assert!(err.to_string().contains("no private key found"), "{err}");

        files.write(
            "encrypted.pem",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        let err = CertificateReloader::load(&files.settings("key.pem", "encrypted.pem"))
            .expect_err("encrypted");
        assert!(err.to_string().contains("encrypted"), "{err}");
    }

    #[test]
    fn a_damaged_key_file_is_refused_without_quoting_it() {
        let files = Files::new();
        let (cert, key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        files.write("cert.pem", cert.pem());
        let key_pem = key.serialize_pem();
        // Cut before the END line: the body is there, the end is not.
        let truncated = &key_pem[..key_pem.len() / 2];
        files.write("key.pem", truncated);
        let err =
            CertificateReloader::load(&files.settings("cert.pem", "key.pem")).expect_err("damaged");
        let message = crate::telemetry::error_chain(&err);
        assert!(message.contains("key.pem"), "{message}");
        let body_line = key_pem.lines().nth(1).expect("a base64 line");
        assert!(!message.contains(body_line), "{message}");
        assert!(!format!("{err:?}").contains(body_line));
    }

    #[test]
    fn a_failed_reload_keeps_the_served_certificate_and_a_good_one_replaces_it() {
        let files = Files::new();
        let (first, first_key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        files.write("cert.pem", first.pem());
        files.write("key.pem", first_key.serialize_pem());
        let settings = files.settings("cert.pem", "key.pem");
        let reloader = CertificateReloader::load(&settings).expect("loads");
        let debug = format!("{reloader:?}");
        assert!(debug.contains(&fingerprint(first.der())), "{debug}");

        files.write("cert.pem", "not a certificate");
        reloader.reload_certificate().expect_err("broken file");
        assert_eq!(reloader.fingerprint(), fingerprint(first.der()));

        let (second, second_key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        files.write("cert.pem", second.pem());
        files.write("key.pem", second_key.serialize_pem());
        reloader.reload_certificate().expect("good files");
        assert_eq!(reloader.fingerprint(), fingerprint(second.der()));
        // Every clone of the handle sees the one certificate.
        assert_eq!(reloader.clone().fingerprint(), fingerprint(second.der()));
    }
}
