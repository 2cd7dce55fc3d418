//! TLS 1.3 configurations (rustls with the aws-lc-rs provider) whose certificate verifiers are the
//! SDK's [`CertificateCheck`]: the same chain, validity, usage, CRL and name rules everywhere.

use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::pki::{CertificateCheck, CertificateError, Usage};
use crate::{Error, Result};

/// A certificate check shared between connections and refreshed (new CRL) in place.
pub type SharedCheck = Arc<RwLock<CertificateCheck>>;

/// The crypto provider used for every TLS connection: aws-lc-rs.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A certificate chain and its private key, presented to the other side.
pub struct CertifiedKey {
    /// End-entity certificate first.
    pub chain: Vec<CertificateDer<'static>>,
    /// PKCS#8 private key (DER).
    pub key: PrivateKeyDer<'static>,
}

/// A client configuration that checks the server's certificate with `check` (server usage, the
/// host name dialled) and, with `identity`, authenticates with it (mutual TLS).
pub fn client_config(
    check: SharedCheck,
    identity: Option<CertifiedKey>,
) -> Result<rustls::ClientConfig> {
    let provider = provider();
    let verifier = Arc::new(PkiServerVerifier {
        check,
        algorithms: provider.signature_verification_algorithms,
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Crypto(format!("TLS configuration: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain, id.key)
            .map_err(|e| Error::InvalidArgument(format!("client certificate or key: {e}"))),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// A server configuration presenting `identity` and checking client certificates with `verifier`.
pub fn server_config(
    identity: CertifiedKey,
    verifier: Arc<PkiClientVerifier>,
) -> Result<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Crypto(format!("TLS configuration: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain, identity.key)
        .map_err(|e| Error::InvalidArgument(format!("server certificate or key: {e}")))?;
    config.alpn_protocols.clear();
    Ok(config)
}

/// Verifies server certificates with the shared [`CertificateCheck`].
#[derive(Debug)]
struct PkiServerVerifier {
    check: SharedCheck,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PkiServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone()];
        chain.extend(intermediates.iter().cloned());
        let name = server_name.to_str();
        let check = self.check.read().unwrap_or_else(|p| p.into_inner());
        check
            .verify(&chain, Usage::Server, Some(&name), now)
            .map_err(to_rustls)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Verifies client certificates with the shared [`CertificateCheck`], accepting any of the given
/// usages, and optionally letting clients without a certificate in (to be refused or served by the
/// application, e.g. the CA's enrollment endpoint).
#[derive(Debug)]
pub struct PkiClientVerifier {
    check: SharedCheck,
    usages: Vec<Usage>,
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PkiClientVerifier {
    /// Requires a client certificate with one of `usages`.
    pub fn mandatory(check: SharedCheck, usages: Vec<Usage>) -> Arc<Self> {
        Arc::new(PkiClientVerifier {
            check,
            usages,
            mandatory: true,
            algorithms: provider().signature_verification_algorithms,
        })
    }

    /// Checks a client certificate when one is presented; admits clients without one.
    pub fn optional(check: SharedCheck, usages: Vec<Usage>) -> Arc<Self> {
        Arc::new(PkiClientVerifier {
            mandatory: false,
            ..Arc::unwrap_or_clone(Self::mandatory(check, usages))
        })
    }
}

impl Clone for PkiClientVerifier {
    fn clone(&self) -> Self {
        PkiClientVerifier {
            check: self.check.clone(),
            usages: self.usages.clone(),
            mandatory: self.mandatory,
            algorithms: self.algorithms,
        }
    }
}

impl ClientCertVerifier for PkiClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone()];
        chain.extend(intermediates.iter().cloned());
        let check = self.check.read().unwrap_or_else(|p| p.into_inner());
        let mut last = CertificateError::WrongUsage("client");
        for usage in &self.usages {
            match check.verify(&chain, *usage, None, now) {
                Ok(_) => return Ok(ClientCertVerified::assertion()),
                Err(e @ CertificateError::WrongUsage(_)) => last = e,
                Err(e) => return Err(to_rustls(e)),
            }
        }
        Err(to_rustls(last))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Maps a refusal to the rustls error whose TLS alert tells the peer why.
fn to_rustls(e: CertificateError) -> rustls::Error {
    use rustls::CertificateError as R;
    let mapped = match e {
        CertificateError::UnknownIssuer => R::UnknownIssuer,
        CertificateError::Expired => R::Expired,
        CertificateError::NotYetValid => R::NotValidYet,
        CertificateError::Revoked => R::Revoked,
        CertificateError::CrlExpired => R::ExpiredRevocationList,
        CertificateError::WrongUsage(_) => R::InvalidPurpose,
        CertificateError::WrongId { .. } => R::NotValidForName,
        CertificateError::Malformed(_) => R::BadEncoding,
        other => R::Other(rustls::OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(mapped)
}

/// The server certificate presented by a TLS server, replaceable while it runs (after renewal).
#[derive(Debug)]
pub struct ReloadableCertificate {
    current: RwLock<Arc<rustls::sign::CertifiedKey>>,
}

impl ReloadableCertificate {
    /// Starts with `identity`.
    pub fn new(identity: CertifiedKey) -> Result<Arc<Self>> {
        Ok(Arc::new(ReloadableCertificate {
            current: RwLock::new(Arc::new(signing_key(identity)?)),
        }))
    }

    /// Presents `identity` from the next handshake on.
    pub fn replace(&self, identity: CertifiedKey) -> Result<()> {
        let key = Arc::new(signing_key(identity)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = key;
        Ok(())
    }
}

fn signing_key(identity: CertifiedKey) -> Result<rustls::sign::CertifiedKey> {
    let key = provider()
        .key_provider
        .load_private_key(identity.key)
        .map_err(|e| Error::InvalidArgument(format!("server key: {e}")))?;
    Ok(rustls::sign::CertifiedKey::new(identity.chain, key))
}

impl rustls::server::ResolvesServerCert for ReloadableCertificate {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// A server configuration presenting a [`ReloadableCertificate`] and checking client
/// certificates with `verifier`.
pub fn reloadable_server_config(
    certificate: Arc<ReloadableCertificate>,
    verifier: Arc<PkiClientVerifier>,
) -> Result<rustls::ServerConfig> {
    Ok(rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Crypto(format!("TLS configuration: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certificate))
}

/// The most bytes read and thrown away from a refused client before its socket is closed.
const REFUSAL_DRAIN_BYTES: usize = 64 * 1024;
/// How long a refused client's socket is drained before it is closed.
const REFUSAL_DRAIN_TIME: std::time::Duration = std::time::Duration::from_millis(500);

/// Accepts one TLS connection within `timeout`. A refused handshake (a revoked or foreign client
/// certificate, say) is closed gracefully: after the alert, the socket's write side is shut and
/// whatever the client already sent is read and dropped, so the client receives the alert that
/// names the refusal instead of a bare connection reset. The error text is for logs.
pub async fn accept_or_refuse(
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    timeout: std::time::Duration,
) -> std::result::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let handshake = acceptor.accept(tcp).into_fallible();
    match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err((error, mut tcp))) => {
            let _ = tcp.shutdown().await;
            let drain = async {
                let mut buffer = [0u8; 4096];
                let mut drained = 0;
                while drained < REFUSAL_DRAIN_BYTES {
                    match tcp.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => drained += n,
                    }
                }
            };
            let _ = tokio::time::timeout(REFUSAL_DRAIN_TIME, drain).await;
            Err(format!("TLS handshake refused: {error}"))
        }
        Err(_) => Err("TLS handshake timed out".into()),
    }
}
