//! `sim --tls`: HTTPS with a certificate the simulator makes at start, as TikTok serves its hosts.
//!
//! A CA of its own (a fresh key every start) signs a server certificate for the listen address,
//! `127.0.0.1` and `localhost`. The CA's certificate is written to `--tls-ca-out` (or a file in a new
//! private directory under the temporary one, removed when the simulator stops) so a client can trust
//! it: `[tiktok] ca_file` for the daemon, `--cacert` for curl. Nothing is trusted system-wide, the keys
//! never leave the process, and the CA is name-constrained to loopback, `localhost` and the listen
//! address: a client that trusts it by mistake still cannot be shown a certificate for TikTok's hosts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, CidrSubnet, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, KeyPair, KeyUsagePurpose, NameConstraints,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

/// The simulator's TLS: the acceptor, where the CA certificate was written, and the directory made
/// for it when no path was given (removed when this guard is dropped).
pub(crate) struct SimTls {
    pub acceptor: TlsAcceptor,
    pub ca_file: PathBuf,
    pub own_dir: Option<OwnDir>,
}

/// A directory the simulator made for its CA; removed on drop.
#[derive(Debug)]
pub(crate) struct OwnDir(PathBuf);

impl Drop for OwnDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the CA's PEM: into `path` (replacing a file there, never following a link to another), or
/// into a new directory of mode 0700 under the temporary one, named by the process and the port.
fn write_ca(
    pem: &str,
    path: Option<&Path>,
    port: u16,
) -> std::io::Result<(PathBuf, Option<OwnDir>)> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let (file, dir) = match path {
        Some(p) => (p.to_path_buf(), None),
        None => {
            let dir = std::env::temp_dir()
                .join(format!("tiktok-poster-sim-{}-{port}", std::process::id()));
            std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
            (dir.join("ca.pem"), Some(OwnDir(dir)))
        }
    };
    match std::fs::remove_file(&file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&file)?
        .write_all(pem.as_bytes())?;
    Ok((file, dir))
}

/// The names the CA may vouch for: loopback, `localhost`, and the listen address.
fn loopback_only(addr: SocketAddr) -> NameConstraints {
    let mut permitted = vec![
        GeneralSubtree::DnsName("localhost".into()),
        GeneralSubtree::IpAddress(CidrSubnet::V4([127, 0, 0, 0], [255, 0, 0, 0])),
        GeneralSubtree::IpAddress(CidrSubnet::V6(
            std::net::Ipv6Addr::LOCALHOST.octets(),
            [0xff; 16],
        )),
    ];
    match addr.ip() {
        ip if ip.is_loopback() || ip.is_unspecified() => {}
        std::net::IpAddr::V4(v4) => {
            permitted.push(GeneralSubtree::IpAddress(CidrSubnet::V4(
                v4.octets(),
                [0xff; 4],
            )));
        }
        std::net::IpAddr::V6(v6) => {
            permitted.push(GeneralSubtree::IpAddress(CidrSubnet::V6(
                v6.octets(),
                [0xff; 16],
            )));
        }
    }
    NameConstraints {
        permitted_subtrees: permitted,
        excluded_subtrees: Vec::new(),
    }
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
    ca.name_constraints = Some(loopback_only(addr));
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

    let (ca_file, own_dir) = write_ca(&issuer.pem(), ca_out, addr.port()).map_err(|e| {
        let at = ca_out.map_or_else(
            || "the temporary directory".to_string(),
            |p| p.display().to_string(),
        );
        std::io::Error::new(
            e.kind(),
            format!(
                "sim --tls: cannot write the CA certificate to {at}: {e}; give a path you own with --tls-ca-out"
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
        own_dir,
    })
}
