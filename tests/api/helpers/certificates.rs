//! Throwaway certificates for the HTTPS and mutual-TLS tests, made with
//! rcgen: a certificate authority per test, server leaves for 127.0.0.1 it
//! signs (chained to it, as a real deployment serves them), and whatever
//! else a test signs with it.

use keyport::domain::CertificateThumbprint;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
    pub der: Vec<u8>,
}

/// A certificate and its key, as PEM, with the certificate's DER. A server
/// leaf's `pem` is the whole chain: the leaf, then its CA.
pub struct Cert {
    pub pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Cert {
    /// Its SHA-256 thumbprint, as a key registers it.
    pub fn thumbprint(&self) -> String {
        CertificateThumbprint::of(&self.der).to_string()
    }

    /// What reqwest takes as a client identity: the key and the certificate.
    pub fn identity(&self) -> reqwest::Identity {
        reqwest::Identity::from_pem(format!("{}{}", self.key_pem, self.pem).as_bytes())
            .expect("client identity")
    }
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost named
    /// `common_name`, with the chain up to this CA.
    pub fn server(&self, common_name: &str) -> Cert {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let mut cert = self.sign(params);
        cert.pem.push_str(&self.pem);
        cert
    }

    /// A certificate of `params`, with a new key, signed by this CA.
    pub fn sign(&self, params: CertificateParams) -> Cert {
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        Cert {
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}
