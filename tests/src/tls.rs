use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Certificates for TLS tests, made fresh with `rcgen` (ECDSA P-256): a CA,
/// a server certificate it signed, for the IP address `127.0.0.1` only (so
/// that `rediss://localhost:…` is a host-name mismatch), a client
/// certificate it signed, and an unrelated CA that signed neither.
///
/// ```no_run
/// let pki = cachefw_tests::TestPki::generate();
/// let redis = cachefw_tests::RedisServer::start_tls(&pki, true); // mTLS
/// let url = redis.url(); // rediss://127.0.0.1:<port>
/// # drop(url);
/// ```
#[derive(Clone)]
pub struct TestPki {
    /// The CA that signed the server and client certificates (PEM).
    pub ca_pem: String,
    /// The server's certificate (PEM), valid for `127.0.0.1`.
    pub server_cert_pem: String,
    /// The server's private key (PEM, PKCS#8).
    pub server_key_pem: String,
    /// A client certificate (PEM) for mutual TLS.
    pub client_cert_pem: String,
    /// The client certificate's private key (PEM, PKCS#8).
    pub client_key_pem: String,
    /// A CA that signed none of these (PEM): trusting it instead of
    /// [`ca_pem`](Self::ca_pem) must fail verification.
    pub other_ca_pem: String,
    /// A client certificate and key (PEM) signed by the other CA: a server
    /// that trusts only [`ca_pem`](Self::ca_pem) must refuse it.
    pub other_client: (String, String),
}

impl TestPki {
    /// Generates every certificate and key.
    ///
    /// # Panics
    ///
    /// When `rcgen` fails, which it does not for these parameters.
    pub fn generate() -> Self {
        let (ca_pem, ca) = authority("cachefw test CA");
        let (other_ca_pem, other) = authority("an unrelated CA");
        // Cluster nodes present the server certificate to each other on the
        // cluster bus, as clients too.
        let (server_cert_pem, server_key_pem) = leaf(
            &ca,
            "127.0.0.1",
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        let (client_cert_pem, client_key_pem) = leaf(
            &ca,
            "cachefw-client",
            &[ExtendedKeyUsagePurpose::ClientAuth],
        );
        let other_client = leaf(&other, "intruder", &[ExtendedKeyUsagePurpose::ClientAuth]);
        Self {
            ca_pem,
            server_cert_pem,
            server_key_pem,
            client_cert_pem,
            client_key_pem,
            other_ca_pem,
            other_client,
        }
    }
}

fn authority(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let key = KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("CA certificate");
    (cert.pem(), Issuer::new(params, key))
}

/// A certificate signed by `issuer` for `name` (an IP address becomes an IP
/// SAN, anything else a DNS name), and its key.
fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    name: &str,
    usages: &[ExtendedKeyUsagePurpose],
) -> (String, String) {
    let mut params = CertificateParams::new(vec![name.to_owned()]).expect("leaf parameters");
    params.distinguished_name.push(DnType::CommonName, name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = usages.to_vec();
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, issuer).expect("leaf certificate");
    (cert.pem(), key.serialize_pem())
}

/// rustls's `ring` provider as the process default (the kit's own TLS
/// connections need one), unless one is installed already.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
