//! Certificates made at test time (rcgen): a CA, a server certificate for 127.0.0.1 and localhost, a
//! client certificate, and the wrong ones (another CA's, one for another host name), as PEM files
//! in a temporary directory.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A certificate and its key, as files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Every file a TLS test needs.
pub struct TestCerts {
    pub dir: tempfile::TempDir,
    /// The CA that signed `server`, `client` and `wrong_host`.
    pub ca: PathBuf,
    /// A CA that signed nothing the server uses.
    pub other_ca: PathBuf,
    /// For 127.0.0.1 and localhost, signed by `ca`.
    pub server: CertFiles,
    /// A client certificate signed by `ca`.
    pub client: CertFiles,
    /// For 127.0.0.1 and localhost, signed by `other_ca`.
    pub other_ca_server: CertFiles,
    /// For `redis.other.example` only, signed by `ca`.
    pub wrong_host: CertFiles,
}

fn make_ca(dir: &Path, name: &str) -> (CertifiedIssuer<'static, KeyPair>, PathBuf) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, issuer.pem()).unwrap();
    (issuer, path)
}

fn leaf(
    dir: &Path,
    name: &str,
    hosts: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &CertifiedIssuer<'static, KeyPair>,
) -> CertFiles {
    let mut params =
        CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    let files = CertFiles {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    files
}

impl TestCerts {
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (ca_issuer, ca) = make_ca(d, "test-ca");
        let (other_issuer, other_ca) = make_ca(d, "other-ca");
        let hosts = ["127.0.0.1", "localhost"];
        let server = leaf(
            d,
            "server",
            &hosts,
            ExtendedKeyUsagePurpose::ServerAuth,
            &ca_issuer,
        );
        let client = leaf(
            d,
            "client",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
            &ca_issuer,
        );
        let other_ca_server = leaf(
            d,
            "other-ca-server",
            &hosts,
            ExtendedKeyUsagePurpose::ServerAuth,
            &other_issuer,
        );
        let wrong_host = leaf(
            d,
            "wrong-host",
            &["redis.other.example"],
            ExtendedKeyUsagePurpose::ServerAuth,
            &ca_issuer,
        );
        Self {
            dir,
            ca,
            other_ca,
            server,
            client,
            other_ca_server,
            wrong_host,
        }
    }
}
