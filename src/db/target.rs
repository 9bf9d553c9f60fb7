//! Where the daemon's Redis is and how a TLS connection to it is trusted: `[redis] url` with
//! `ca_file`, `client_cert_file` and `client_key_file`. Every connection the daemon and the CLI open
//! is built from one [`Target`] (`Settings::redis_target`), so a later way of finding the server
//! (asking Sentinel for the primary) plugs in here and reaches every connection at once.

use std::io::Read;
use std::path::{Path, PathBuf};

use redis::{ClientTlsConfig, ErrorKind, RedisError, TlsCertificates};

/// The most a certificate or key file may hold; a PEM chain is a few KB.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// A Redis URL and the files that make a `rediss://` connection trust a private CA or present a
/// client certificate. Without files, `rediss://` trusts the host's root certificates.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// `redis://`, `rediss://` or `unix://`.
    pub url: String,
    /// PEM certificates of the CA(s) the server's certificate must chain to (instead of the host's).
    pub ca_file: Option<PathBuf>,
    /// PEM certificate (chain) presented to a server that asks for one (mutual TLS).
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
    /// Sentinels to ask for the primary; `url`'s host and port are then replaced by its address.
    pub sentinel: Option<SentinelTarget>,
}

/// The sentinels that know where the primary is (`[redis] sentinels`, `sentinel_master`,
/// `sentinel_password`).
#[derive(Clone, Default)]
pub struct SentinelTarget {
    /// `host:port` of each sentinel, asked in this order.
    pub addrs: Vec<String>,
    /// The name the sentinels monitor the primary under.
    pub master: String,
    /// The sentinels' password (`requirepass` in sentinel.conf), if they have one.
    pub password: Option<secrecy::SecretString>,
}

impl std::fmt::Debug for SentinelTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelTarget")
            .field("addrs", &self.addrs)
            .field("master", &self.master)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .finish()
    }
}

/// The most sentinels `[redis] sentinels` may list (a deployment has 3 or 5).
pub const MAX_SENTINELS: usize = 16;

/// `host:port` (or `[v6]:port`) as a host and a port, or why it is not one.
pub fn parse_host_port(addr: &str) -> Result<(String, u16), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| "is not host:port (e.g. 10.0.0.1:26379)".to_string())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
        return Err("has no usable host name (write host:port, e.g. 10.0.0.1:26379)".into());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((host.to_string(), p)),
        _ => Err(format!("{port:?} is not a port (1 to 65535)")),
    }
}

impl From<&str> for Target {
    fn from(url: &str) -> Self {
        Self {
            url: url.to_string(),
            ..Self::default()
        }
    }
}

impl From<&String> for Target {
    fn from(url: &String) -> Self {
        Self::from(url.as_str())
    }
}

impl From<&Target> for Target {
    fn from(t: &Target) -> Self {
        t.clone()
    }
}

impl Target {
    /// The same target with `url`'s host and port replaced (a primary or a sentinel the sentinels
    /// named), keeping its scheme, credentials, database and TLS files; `password` replaces the
    /// URL's credentials when given (a sentinel's own password).
    pub fn at(&self, host: &str, port: u16, password: Option<&str>) -> redis::RedisResult<Target> {
        let bad = |why: &str| {
            RedisError::from((
                ErrorKind::InvalidClientConfig,
                "unusable [redis] url",
                why.to_string(),
            ))
        };
        let mut u = url::Url::parse(&self.url).map_err(|_| bad("[redis] url is not a URL"))?;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        u.set_host(Some(&host))
            .map_err(|_| bad("the address the sentinels gave is not a host name"))?;
        u.set_port(Some(port))
            .map_err(|_| bad("[redis] url cannot take a port"))?;
        if let Some(pw) = password {
            let _ = u.set_username("");
            let _ = u.set_password(Some(pw));
            u.set_path("");
        }
        Ok(Target {
            url: u.to_string(),
            sentinel: None,
            ..self.clone()
        })
    }

    /// Whether any TLS file is set.
    pub fn has_tls_files(&self) -> bool {
        self.ca_file.is_some() || self.client_cert_file.is_some() || self.client_key_file.is_some()
    }

    /// A client for this target: the files are read (and parsed) now, so a client built at start
    /// keeps working when a file is replaced later, and a broken file is an error here, not at the
    /// first connection.
    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        if !self.has_tls_files() {
            return redis::Client::open(self.url.as_str());
        }
        let root_cert = self
            .ca_file
            .as_deref()
            .map(|p| read_pem("redis.ca_file", p))
            .transpose()?;
        let client_tls = match (&self.client_cert_file, &self.client_key_file) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: read_pem("redis.client_cert_file", cert)?,
                client_key: read_pem("redis.client_key_file", key)?,
            }),
            (None, None) => None,
            _ => {
                return Err(RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "redis.client_cert_file and redis.client_key_file go together: set both or neither",
                )));
            }
        };
        redis::Client::build_with_tls(
            self.url.as_str(),
            TlsCertificates {
                client_tls,
                root_cert,
            },
        )
    }
}

impl Target {
    /// Why the file of `key` (`redis.ca_file`, `redis.client_cert_file`, `redis.client_key_file`)
    /// cannot be used, if it cannot: unreadable, too large, or without the PEM block it needs.
    pub fn read_check(key: &str, path: &Path) -> Result<(), String> {
        let pem = read_pem(key, path).map_err(|e| {
            e.detail()
                .map(|d| d.trim_start_matches(key).trim().to_string())
                .unwrap_or_else(|| e.to_string())
        })?;
        let text = String::from_utf8_lossy(&pem);
        let (block, what) = if key.ends_with("key_file") {
            ("PRIVATE KEY-----", "PEM private key")
        } else {
            ("-----BEGIN CERTIFICATE-----", "PEM certificate")
        };
        if text.contains(block) {
            Ok(())
        } else {
            Err(format!("{} holds no {what}", path.display()))
        }
    }
}

/// The content of a PEM file named by `key`, at most [`MAX_PEM_BYTES`].
pub(crate) fn read_pem(key: &str, path: &Path) -> redis::RedisResult<Vec<u8>> {
    let fail = |why: String| {
        RedisError::from((
            ErrorKind::InvalidClientConfig,
            "unusable TLS file",
            format!("{key} {}: {why}", path.display()),
        ))
    };
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot read it ({e})")))?;
    let mut out = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| fail(format!("cannot read it ({e})")))?;
    if out.len() as u64 > MAX_PEM_BYTES {
        return Err(fail(format!(
            "larger than {MAX_PEM_BYTES} bytes, not a PEM file"
        )));
    }
    Ok(out)
}

/// The problem with a TLS connection, in the operator's words, when `e` is one: the server's
/// certificate is not trusted or does not name the host, or the server wants a client certificate.
/// `None` for errors that are not about TLS.
pub fn tls_problem(e: &RedisError) -> Option<String> {
    let text = e.to_string();
    let has = |s: &str| text.contains(s);
    let what = if has("NotValidForName") || has("not valid for name") {
        "the server's TLS certificate does not name this host: connect with the host name (or IP) its certificate is for, or give the server a certificate for this one"
    } else if has("UnknownIssuer") || has("unknown issuer") || has("BadSignature") {
        "the server's TLS certificate is not signed by a trusted CA: set [redis] ca_file to the CA that signed it"
    } else if has("Expired") || has("NotValidYet") {
        "the server's TLS certificate is expired or not valid yet: renew it (or fix this host's clock)"
    } else if has("invalid peer certificate") {
        "the server's TLS certificate was refused: check it and [redis] ca_file"
    } else if has("CertificateRequired") {
        "the server requires a client certificate (mutual TLS): set [redis] client_cert_file and client_key_file"
    } else if has("HandshakeFailure") {
        "the server ended the TLS handshake: it may require a client certificate ([redis] client_cert_file and client_key_file) or a TLS version this client lacks"
    } else if has("BadCertificate") || has("UnknownCA") || has("DecryptError") {
        "the server refused this client's TLS certificate: check [redis] client_cert_file and client_key_file against the server's CA"
    } else if has("InvalidContentType") || has("CorruptMessage") {
        "the server does not speak TLS on this port: use redis:// for a plain port, or the server's TLS port"
    } else {
        return None;
    };
    Some(format!("{what} ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_is_parsed_with_ipv6_and_refused_without_a_port() {
        assert_eq!(
            parse_host_port("10.0.0.1:26379"),
            Ok(("10.0.0.1".into(), 26379))
        );
        assert_eq!(parse_host_port("[::1]:26379"), Ok(("::1".into(), 26379)));
        assert_eq!(parse_host_port("sentinel-a.internal:5000").unwrap().1, 5000);
        assert!(parse_host_port("10.0.0.1").is_err());
        assert!(parse_host_port(":26379").is_err());
        assert!(parse_host_port("10.0.0.1:99999").is_err());
    }

    /// The primary the sentinels name keeps the URL's scheme, credentials and database; a sentinel
    /// gets its own password instead of the primary's credentials.
    #[test]
    fn a_target_moved_to_another_address_keeps_what_the_url_says_but_the_address() {
        let t = Target {
            url: "rediss://app:pw@placeholder:1/3".into(),
            ..Target::default()
        };
        let primary = t.at("10.0.0.7", 6380, None).unwrap();
        assert_eq!(primary.url, "rediss://app:pw@10.0.0.7:6380/3");
        let v6 = t.at("::1", 6380, None).unwrap();
        assert_eq!(v6.url, "rediss://app:pw@[::1]:6380/3");
        let sentinel = t.at("10.0.0.8", 26379, Some("sentinel-pw")).unwrap();
        assert_eq!(sentinel.url, "rediss://:sentinel-pw@10.0.0.8:26379");
        assert!(sentinel.sentinel.is_none());
    }
}
