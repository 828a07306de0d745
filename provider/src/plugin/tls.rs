//! AutoMTLS (TERRAFORM-PROTOCOL.md §1): a fresh server certificate per process, and a TLS
//! server that accepts exactly one client: the holder of the certificate Terraform passed in
//! `PLUGIN_CLIENT_CERT`.
//!
//! Terraform's client certificate is a self-signed ECDSA P-521 CA certificate. The stock webpki
//! verifier rejects it (a CA used as an end entity) and `ring` cannot check P-521 signatures, so
//! the server uses rustls with the aws-lc-rs provider and [`PinnedClientCert`], which compares
//! the presented certificate byte for byte with the pinned one and checks the handshake
//! signature against it.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{aws_lc_rs, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

/// Environment variable holding Terraform's client certificate (multi-line PEM). Absent when the
/// user set `TF_DISABLE_PLUGIN_TLS`: then the plugin serves plaintext.
pub const CLIENT_CERT_KEY: &str = "PLUGIN_CLIENT_CERT";

/// Why TLS could not be set up. The codes are stable; the messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `PLUGIN_CLIENT_CERT` is not a PEM certificate.
    #[error(
        "[plugin.client_cert] {CLIENT_CERT_KEY} does not hold a PEM certificate ({0}); it is set \
         by Terraform: unset it or set TF_DISABLE_PLUGIN_TLS to run without TLS"
    )]
    ClientCertPem(String),
    /// Generating the server certificate failed.
    #[error("[plugin.server_cert] cannot generate the TLS server certificate: {0}")]
    ServerCert(String),
    /// rustls refused the configuration.
    #[error("[plugin.tls_config] cannot build the TLS server configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The certificate and key this process presents; generated at start-up, never stored.
pub struct ServerIdentity {
    /// DER of the self-signed certificate (printed, base64, in the handshake line).
    pub cert_der: CertificateDer<'static>,
    key_der: PrivatePkcs8KeyDer<'static>,
}

impl fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("cert_der", &self.cert_der.len())
            .field("key_der", &"[REDACTED]")
            .finish()
    }
}

impl ServerIdentity {
    /// Generates a self-signed ECDSA P-256 certificate with SAN dNSName `localhost`: Terraform
    /// trusts exactly the certificate from the handshake line and checks the name `localhost`.
    pub fn generate() -> Result<Self, TlsError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| TlsError::ServerCert(e.to_string()))?;
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .map_err(|e| TlsError::ServerCert(e.to_string()))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "blockstor");
        let cert = params
            .self_signed(&key)
            .map_err(|e| TlsError::ServerCert(e.to_string()))?;
        Ok(Self {
            cert_der: cert.der().clone(),
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }
}

/// Parses the first certificate of the PEM text Terraform passes in `PLUGIN_CLIENT_CERT`.
pub fn parse_client_cert(pem: &str) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| TlsError::ClientCertPem(e.to_string()))
}

/// The aws-lc-rs provider: the only rustls provider that verifies Terraform's P-521 signatures.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// Builds the server configuration: our identity, client authentication mandatory against
/// `client_cert` only, ALPN `h2` (grpc-go ≥ 1.67 insists on it; older clients ignore it).
pub fn server_config(
    identity: &ServerIdentity,
    client_cert: CertificateDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = crypto_provider();
    let verifier = Arc::new(PinnedClientCert::new(
        client_cert,
        provider.signature_verification_algorithms,
    ));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![identity.cert_der.clone()],
            PrivateKeyDer::Pkcs8(identity.key_der.clone_key()),
        )?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts exactly one client certificate, compared byte for byte; no chain, no CA, no expiry
/// rules (the certificate was handed to us by our parent process a moment ago). Possession of
/// the key is still proven: the handshake signature is checked against this certificate.
#[derive(Debug)]
pub struct PinnedClientCert {
    pinned: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedClientCert {
    /// Pins `pinned`; handshake signatures are verified with `algorithms`.
    pub fn new(pinned: CertificateDer<'static>, algorithms: WebPkiSupportedAlgorithms) -> Self {
        Self { pinned, algorithms }
    }
}

impl ClientCertVerifier for PinnedClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: Go's client then sends its only certificate.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.pinned.as_ref() && intermediates.is_empty() {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A self-signed P-521 certificate like the one Terraform puts in `PLUGIN_CLIENT_CERT`.
    pub(in crate::plugin) fn p521_cert() -> rcgen::CertifiedKey<rcgen::KeyPair> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        rcgen::CertifiedKey {
            cert,
            signing_key: key,
        }
    }

    fn verifier_for(cert: &CertificateDer<'static>) -> PinnedClientCert {
        PinnedClientCert::new(
            cert.clone(),
            crypto_provider().signature_verification_algorithms,
        )
    }

    #[test]
    fn verifier_accepts_the_pinned_certificate() {
        let pinned = p521_cert();
        let verifier = verifier_for(pinned.cert.der());
        assert!(verifier
            .verify_client_cert(pinned.cert.der(), &[], UnixTime::now())
            .is_ok());
        assert!(verifier.client_auth_mandatory());
    }

    #[test]
    fn verifier_rejects_any_other_certificate() {
        let pinned = p521_cert();
        let other = p521_cert();
        let verifier = verifier_for(pinned.cert.der());
        assert!(verifier
            .verify_client_cert(other.cert.der(), &[], UnixTime::now())
            .is_err());
        // The pinned certificate with an extra chain is not what Terraform sends either.
        assert!(verifier
            .verify_client_cert(
                pinned.cert.der(),
                &[other.cert.der().clone()],
                UnixTime::now()
            )
            .is_err());
    }

    #[test]
    fn verifier_can_check_terraforms_p521_signatures() {
        let verifier = verifier_for(p521_cert().cert.der());
        assert!(verifier
            .supported_verify_schemes()
            .contains(&SignatureScheme::ECDSA_NISTP521_SHA512));
    }

    #[test]
    fn client_cert_is_read_from_multi_line_pem() {
        let cert = p521_cert();
        let parsed = parse_client_cert(&cert.cert.pem()).unwrap();
        assert_eq!(parsed.as_ref(), cert.cert.der().as_ref());
        let err = parse_client_cert("not a certificate").unwrap_err();
        assert!(err.to_string().starts_with("[plugin.client_cert]"));
    }

    #[test]
    fn server_identity_builds_a_config_offering_h2() {
        let identity = ServerIdentity::generate().unwrap();
        let config = server_config(&identity, p521_cert().cert.der().clone()).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
        assert!(format!("{identity:?}").contains("[REDACTED]"));
    }
}
