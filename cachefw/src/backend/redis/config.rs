//! How to reach Redis: URLs, TLS, credentials, and masking passwords in
//! what is shown.
//!
//! `rediss://` connects over TLS (rustls, with the `ring` provider) and
//! never falls back to plain text; the system roots are trusted unless the
//! builder gives a CA.

use std::sync::Arc;
use std::time::Duration;

use redis::{
    Client, ClientTlsConfig, ConnectionInfo, IntoConnectionInfo, RedisError, TlsCertificates,
};

use crate::backend::breaker::Rules;
use crate::error::Error;
use crate::options::invalid;

/// How to reach Redis: what the builder gives beyond the URLs.
pub(crate) struct Connect {
    /// The bound of one operation, and of making a connection.
    pub(crate) timeout: Duration,
    /// PEM: the CA to trust instead of the system roots.
    pub(crate) root_cert: Option<Vec<u8>>,
    /// PEM: the client certificate chain and its private key, for mTLS.
    pub(crate) client_cert: Option<(Vec<u8>, Vec<u8>)>,
    /// The ACL user (empty: the default user) and its password.
    pub(crate) credentials: Option<(String, String)>,
    /// The largest value read or written, in bytes.
    pub(crate) max_value_size: u64,
    /// What every node's breaker shares: the builder's settings.
    pub(crate) breaker: Arc<Rules>,
}

impl Connect {
    fn certificates(&self) -> Option<TlsCertificates> {
        if self.root_cert.is_none() && self.client_cert.is_none() {
            return None;
        }
        Some(TlsCertificates {
            client_tls: self
                .client_cert
                .as_ref()
                .map(|(cert, key)| ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.root_cert.clone(),
        })
    }

    /// Refuses what cannot work, without connecting: a PEM that does not
    /// parse, a key that does not go with its certificate, a user name
    /// with spaces. The error names the builder method.
    pub(crate) fn check(&self) -> Result<(), Error> {
        if let Some(pem) = &self.root_cert {
            let mut roots = rustls::RootCertStore::empty();
            for cert in pem_certificates("tls_root_cert", pem)? {
                roots.add(cert).map_err(|error| {
                    invalid(
                        "tls_root_cert",
                        format!("a certificate in the PEM is not a usable CA certificate: {error}"),
                    )
                })?;
            }
        }
        if let Some((cert, key)) = &self.client_cert {
            use rustls::pki_types::PrivateKeyDer;
            use rustls::pki_types::pem::PemObject;

            let chain = pem_certificates("tls_client_cert", cert)?;
            // The PEM parser's own messages may quote a line of the key:
            // only ours are shown.
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| {
                invalid(
                    "tls_client_cert",
                    "the key PEM holds no private key that parses (PKCS#8, PKCS#1 or SEC1)",
                )
            })?;
            install_crypto_provider();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .and_then(|builder| {
                    builder
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_client_auth_cert(chain, key)
                })
                .map_err(|error| {
                    invalid(
                        "tls_client_cert",
                        format!("the certificate and key cannot be used together: {error}"),
                    )
                })?;
        }
        if let Some((user, _)) = &self.credentials
            && user.contains(char::is_whitespace)
        {
            return Err(invalid(
                "credentials",
                "the user name must not contain spaces",
            ));
        }
        Ok(())
    }
}

/// The certificates of a PEM given to `setting`: at least one, all parsed.
fn pem_certificates(
    setting: &'static str,
    pem: &[u8],
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid(setting, format!("the PEM does not parse: {error}")))?;
    if certs.is_empty() {
        return Err(invalid(
            setting,
            "the PEM holds no certificate (`-----BEGIN CERTIFICATE-----`)",
        ));
    }
    Ok(certs)
}

/// Whether a URL asks for TLS.
pub(super) fn is_tls(raw: &str) -> bool {
    let scheme = raw.split_once("://").map_or("", |(scheme, _)| scheme);
    scheme.eq_ignore_ascii_case("rediss") || scheme.eq_ignore_ascii_case("valkeys")
}

/// `host:port` of a Redis URL, or why the URL cannot be used. Parsed with
/// the `url` crate; the scheme must be one Redis speaks.
pub(super) fn node_name(raw: &str) -> Result<String, Error> {
    let invalid = |reason: String| Error::InvalidUrl {
        url: mask_password(raw),
        reason,
    };
    let url = url::Url::parse(raw).map_err(|e| invalid(e.to_string()))?;
    match url.scheme() {
        "redis" | "valkey" => {}
        "unix" | "redis+unix" | "valkey+unix" => return Ok(url.path().to_owned()),
        "rediss" | "valkeys" => {
            if url.fragment().is_some() {
                return Err(invalid(
                    "a fragment such as #insecure (TLS without verifying the server) is not \
                     supported: trust the server's CA with tls_root_cert instead"
                        .to_owned(),
                ));
            }
        }
        other => return Err(invalid(format!("unknown scheme `{other}`"))),
    }
    let host = url
        .host_str()
        .filter(|host| !host.is_empty())
        .ok_or_else(|| invalid("no host".to_owned()))?;
    Ok(format!("{host}:{}", url.port().unwrap_or(6379)))
}

/// The connection settings of `url`, with the builder's credentials.
fn connection_info(url: &str, connect: &Connect) -> Result<ConnectionInfo, Error> {
    let info = url
        .into_connection_info()
        .map_err(|source| Error::InvalidUrl {
            url: mask_password(url),
            reason: source.to_string(),
        })?;
    let Some((user, password)) = &connect.credentials else {
        return Ok(info);
    };
    if info.redis_settings().password().is_some() {
        return Err(Error::Config {
            setting: "credentials",
            reason: format!(
                "the URL {} has a password too: give it in one place",
                mask_password(url)
            ),
        });
    }
    let mut settings = info.redis_settings().clone().set_password(password);
    if !user.is_empty() {
        settings = settings.set_username(user);
    }
    Ok(info.set_redis_settings(settings))
}

/// A client of the Redis at `url`: over TLS for `rediss://` (with the
/// builder's CA and client certificate, if any), never over plain text.
pub(super) fn client_for(url: &str, connect: &Connect) -> Result<Client, Error> {
    let info = connection_info(url, connect)?;
    let invalid = |source: RedisError| Error::InvalidUrl {
        url: mask_password(url),
        reason: source.to_string(),
    };
    if !is_tls(url) {
        if connect.root_cert.is_some() || connect.client_cert.is_some() {
            let setting = if connect.root_cert.is_some() {
                "tls_root_cert"
            } else {
                "tls_client_cert"
            };
            return Err(Error::Config {
                setting,
                reason: format!(
                    "TLS certificates need a rediss:// URL, and {} is not one",
                    mask_password(url)
                ),
            });
        }
        return Client::open(info).map_err(invalid);
    }
    install_crypto_provider();
    match connect.certificates() {
        Some(certificates) => Client::build_with_tls(info, certificates).map_err(invalid),
        None => Client::open(info).map_err(invalid),
    }
}

/// rustls's `ring` provider as the process default, unless the
/// application installed one already (then that one is used).
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The URL with any password replaced by `***`, fit for errors and logs.
///
/// Works on the raw text, so that a URL the `url` crate cannot parse (a
/// password with an unescaped `/`, `?` or `#`, say) is masked too:
/// everything between the user name and the last `@` is hidden.
pub(crate) fn mask_password(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let Some(at) = url.rfind('@').filter(|at| *at >= start) else {
        return url.to_owned();
    };
    let userinfo = &url[start..at];
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    if user.len() == userinfo.len() {
        // A user name and no password.
        return url.to_owned();
    }
    format!("{}{user}:***{}", &url[..start], &url[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords_only() {
        assert_eq!(
            mask_password("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            mask_password("redis://:hunter2@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(
            mask_password("rediss://app:hunter2@host/1"),
            "rediss://app:***@host/1"
        );
        assert_eq!(mask_password("redis://:pa/ss@h"), "redis://:***@h");
        assert_eq!(mask_password("redis://u:p@ss@h:1"), "redis://u:***@h:1");
        assert_eq!(mask_password("redis://:pa?ss#x@h"), "redis://:***@h");
        assert_eq!(mask_password("redis://app@host"), "redis://app@host");
        assert_eq!(mask_password("not a url"), "not a url");
    }

    #[test]
    fn urls_are_checked_with_their_password_masked() {
        assert_eq!(node_name("redis://h").ok().as_deref(), Some("h:6379"));
        assert_eq!(
            node_name("redis://:pw@10.0.0.1:7000/2").ok().as_deref(),
            Some("10.0.0.1:7000")
        );
        assert_eq!(
            node_name("rediss://:pw@cache.internal:6380")
                .ok()
                .as_deref(),
            Some("cache.internal:6380")
        );
        assert!(is_tls("rediss://h") && is_tls("VALKEYS://h") && !is_tls("redis://h"));
        let insecure = node_name("rediss://:secret@h/#insecure").expect_err("#insecure");
        assert!(insecure.to_string().contains("tls_root_cert"), "{insecure}");
        assert!(!insecure.to_string().contains("secret"), "{insecure}");
        for bad in ["http://h", "127.0.0.1:6379", "redis://:pa/ss@h", "redis://"] {
            let error = node_name(bad).expect_err(bad).to_string();
            assert!(!error.contains("ss@"), "{error}");
            assert!(error.contains("expected redis://"), "{error}");
        }
    }
}
