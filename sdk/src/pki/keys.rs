//! Identity keys (ECDSA P-256) and certificate signing requests.

use rcgen::{
    CertificateParams, DistinguishedName, DnType, KeyPair, SanType, PKCS_ECDSA_P256_SHA256,
};

use crate::{Error, Result};

/// Generates a fresh ECDSA P-256 key pair.
pub fn new_key_pair() -> Result<KeyPair> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| Error::Crypto(format!("generating a P-256 key failed: {e}")))
}

/// Parses a PKCS#8 PEM private key; only ECDSA P-256 keys are accepted.
pub fn parse_key_pair(pem: &str) -> Result<KeyPair> {
    let key = KeyPair::from_pem(pem)
        .map_err(|e| Error::InvalidArgument(format!("private key is not a PKCS#8 PEM key: {e}")))?;
    if !key.is_compatible(&PKCS_ECDSA_P256_SHA256) {
        return Err(Error::InvalidArgument(
            "private key is not an ECDSA P-256 key".into(),
        ));
    }
    Ok(key)
}

/// Who a certificate signing request asks a certificate for.
#[derive(Clone, Debug)]
pub enum CsrSubject {
    /// A client, by id.
    Client(crate::ClientId),
    /// A server, by host names (DNS names or IP addresses).
    Server(Vec<String>),
}

impl CsrSubject {
    /// Builds a PEM CSR for `key`, signed by it (which proves possession of the key).
    pub fn csr_pem(&self, key: &KeyPair) -> Result<String> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        match self {
            CsrSubject::Client(id) => {
                dn.push(DnType::CommonName, id.as_str());
                params.subject_alt_names =
                    vec![SanType::URI(id.san_uri().try_into().map_err(|e| {
                        Error::InvalidArgument(format!("client id URI: {e}"))
                    })?)];
            }
            CsrSubject::Server(names) => {
                let first = names.first().ok_or_else(|| {
                    Error::InvalidArgument("a server CSR needs at least one host name".into())
                })?;
                dn.push(DnType::CommonName, first.as_str());
                for name in names {
                    crate::id::validate_host_name(name).map_err(Error::InvalidArgument)?;
                    params.subject_alt_names.push(match name.parse() {
                        Ok(ip) => SanType::IpAddress(ip),
                        Err(_) => SanType::DnsName(name.clone().try_into().map_err(|e| {
                            Error::InvalidArgument(format!("host name {name:?}: {e}"))
                        })?),
                    });
                }
            }
        }
        params.distinguished_name = dn;
        let csr = params
            .serialize_request(key)
            .map_err(|e| Error::Crypto(format!("building the CSR failed: {e}")))?;
        csr.pem()
            .map_err(|e| Error::Crypto(format!("encoding the CSR failed: {e}")))
    }
}
