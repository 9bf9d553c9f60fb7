//! `sim --tls`: HTTPS with a certificate the simulator makes at start, as TikTok serves its hosts.
//!
//! A CA of its own (a fresh key every start) signs a server certificate for the listen address,
//! `127.0.0.1` and `localhost`. The CA's certificate is written to `--tls-ca-out` (or a file in the
//! temporary directory) so a client can trust it: `[tiktok] ca_file` for the daemon, `--cacert` for curl.
//! Nothing is trusted system-wide, and the keys never leave the process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

/// The simulator's TLS: the acceptor and where the CA certificate was written.
pub(crate) struct SimTls {
    pub acceptor: TlsAcceptor,
    pub ca_file: PathBuf,
}

/// Where the CA goes when `--tls-ca-out` is not given: one file per simulator process.
fn default_ca_path() -> PathBuf {
    std::env::temp_dir().join(format!("tiktok-poster-sim-{}-ca.pem", std::process::id()))
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("sim --tls: {what}: {e}"))
}

/// Makes the CA and the server certificate for `addr`, writes the CA to `ca_out`, and builds the
/// acceptor (rustls, HTTP/1.1 by ALPN).
pub(crate) fn make(addr: SocketAddr, ca_out: Option<&Path>) -> std::io::Result<SimTls> {
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(|e| tls_err("CA", e))?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "tiktok-poster simulator CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(|e| tls_err("CA key", e))?;
    let issuer = CertifiedIssuer::self_signed(ca, ca_key).map_err(|e| tls_err("CA", e))?;

    let mut hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let ip = addr.ip().to_string();
    if !hosts.contains(&ip) && !addr.ip().is_unspecified() {
        hosts.push(ip);
    }
    let mut leaf = CertificateParams::new(hosts).map_err(|e| tls_err("certificate", e))?;
    leaf.distinguished_name
        .push(DnType::CommonName, "tiktok-poster simulator");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(|e| tls_err("key", e))?;
    let cert = leaf
        .signed_by(&key, &issuer)
        .map_err(|e| tls_err("certificate", e))?;

    let ca_file = ca_out.map_or_else(default_ca_path, Path::to_path_buf);
    std::fs::write(&ca_file, issuer.pem()).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "sim --tls: cannot write the CA certificate to {}: {e}; give a writable path with --tls-ca-out",
                ca_file.display()
            ),
        )
    })?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("protocol versions", e))?
        .with_no_client_auth()
        .with_single_cert(
            vec![
                CertificateDer::from(cert.der().to_vec()),
                CertificateDer::from(issuer.der().to_vec()),
            ],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(|e| tls_err("server config", e))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(SimTls {
        acceptor: TlsAcceptor::from(Arc::new(cfg)),
        ca_file,
    })
}
