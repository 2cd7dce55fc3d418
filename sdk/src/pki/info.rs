//! Facts read from a certificate: who it names, its serial (the keyID), validity and usage.

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::*;

use crate::id::CLIENT_URI_PREFIX;
use crate::util::hex;

/// What a certificate may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Usage {
    /// TLS client authentication: clients of the conferencing server.
    Client,
    /// TLS server authentication: the conferencing server and the CA's own API.
    Server,
}

impl Usage {
    /// The lowercase name, as stored and sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Usage::Client => "client",
            Usage::Server => "server",
        }
    }
}

/// The facts of one certificate that the SDK, CA and server act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The client id (from the `urn:vcsdk:client:` SAN) or, for a server, its first host name.
    pub id: String,
    /// The subject common name.
    pub common_name: Option<String>,
    /// DNS names and IP addresses in the SAN (server certificates).
    pub host_names: Vec<String>,
    /// The serial number in lowercase hex: the keyID and revocation handle.
    pub serial: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// Whether it carries the client-auth extended key usage.
    pub client_auth: bool,
    /// Whether it carries the server-auth extended key usage.
    pub server_auth: bool,
    /// Whether it is a CA certificate.
    pub is_ca: bool,
    /// The subject public key (for P-256, the uncompressed point).
    pub public_key: Vec<u8>,
}

impl CertificateInfo {
    /// Parses a DER certificate.
    pub fn parse(der: &CertificateDer<'_>) -> crate::Result<Self> {
        let (rest, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| {
            crate::Error::InvalidArgument(format!("certificate is not valid DER X.509: {e}"))
        })?;
        if !rest.is_empty() {
            return Err(crate::Error::InvalidArgument(
                "certificate has trailing bytes after the DER structure".into(),
            ));
        }
        let bad = |what: &str, e: X509Error| {
            crate::Error::InvalidArgument(format!("certificate {what} extension is malformed: {e}"))
        };
        let mut client_uri = None;
        let mut host_names = Vec::new();
        if let Some(san) = cert
            .subject_alternative_name()
            .map_err(|e| bad("subject alternative name", e))?
        {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(uri) => {
                        if let Some(id) = uri.strip_prefix(CLIENT_URI_PREFIX) {
                            client_uri.get_or_insert_with(|| id.to_owned());
                        }
                    }
                    GeneralName::DNSName(dns) => host_names.push((*dns).to_owned()),
                    GeneralName::IPAddress(ip) => {
                        if let Some(addr) = ip_from_bytes(ip) {
                            host_names.push(addr.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        let (client_auth, server_auth) = match cert
            .extended_key_usage()
            .map_err(|e| bad("extended key usage", e))?
        {
            Some(eku) => (eku.value.client_auth, eku.value.server_auth),
            None => (false, false),
        };
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        let id = client_uri
            .or_else(|| host_names.first().cloned())
            .or_else(|| common_name.clone())
            .unwrap_or_default();
        Ok(CertificateInfo {
            id,
            common_name,
            host_names,
            serial: hex(cert.raw_serial()),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            client_auth,
            server_auth,
            is_ca: cert.is_ca(),
            public_key: cert.public_key().subject_public_key.data.to_vec(),
        })
    }

    /// The moment two thirds of the validity period have passed: when renewal is due.
    pub fn renewal_due_at(&self) -> i64 {
        self.not_before + (self.not_after - self.not_before) * 2 / 3
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}
