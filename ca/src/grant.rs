//! What an authorisation (a one-time token, or the current certificate on renewal) permits, and
//! the check that a CSR asks for nothing more.

use rcgen::{
    CertificateSigningRequestParams, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use vcsdk::pki::Usage;
use vcsdk::ClientId;

use crate::error::CaError;

/// Who may receive a certificate under an authorisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// A client certificate (client-auth usage) for this id.
    Client(ClientId),
    /// A server certificate (server-auth usage) for these host names.
    Server(Vec<String>),
}

impl Grant {
    /// The usage of certificates under this grant.
    pub fn usage(&self) -> Usage {
        match self {
            Grant::Client(_) => Usage::Client,
            Grant::Server(_) => Usage::Server,
        }
    }

    /// The id stored and shown for it: the client id, or the host names joined by commas.
    pub fn subject(&self) -> String {
        match self {
            Grant::Client(id) => id.to_string(),
            Grant::Server(names) => names.join(","),
        }
    }

    /// Rebuilds a grant from its stored usage and subject.
    pub fn from_stored(usage: &str, subject: &str) -> Result<Self, CaError> {
        match usage {
            "client" => Ok(Grant::Client(
                ClientId::new(subject).map_err(|e| CaError::internal(e.to_string()))?,
            )),
            "server" => Ok(Grant::Server(
                subject.split(',').map(str::to_owned).collect(),
            )),
            other => Err(CaError::internal(format!(
                "stored usage {other:?} is unknown"
            ))),
        }
    }

    /// Refuses a CSR that asks for anything this grant does not cover: another id or host name,
    /// CA powers, the other role's usage, or a key that is not ECDSA P-256.
    pub fn check_csr(&self, csr: &CertificateSigningRequestParams) -> Result<(), CaError> {
        if csr.public_key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(CaError::unsupported_key(
                "the CSR's key must be ECDSA P-256 signed with SHA-256",
            ));
        }
        let params = &csr.params;
        if !matches!(params.is_ca, IsCa::NoCa | IsCa::ExplicitNoCa) {
            return Err(CaError::forbidden_usage(
                "the CSR asks for a CA certificate",
            ));
        }
        if params
            .key_usages
            .iter()
            .any(|u| matches!(u, KeyUsagePurpose::KeyCertSign | KeyUsagePurpose::CrlSign))
        {
            return Err(CaError::forbidden_usage(
                "the CSR asks for certificate or CRL signing",
            ));
        }
        let allowed_eku = match self {
            Grant::Client(_) => ExtendedKeyUsagePurpose::ClientAuth,
            Grant::Server(_) => ExtendedKeyUsagePurpose::ServerAuth,
        };
        if let Some(other) = params
            .extended_key_usages
            .iter()
            .find(|u| **u != allowed_eku)
        {
            return Err(CaError::forbidden_usage(format!(
                "the CSR asks for {other:?} usage, but this authorisation is for a {} certificate",
                self.usage().as_str()
            )));
        }
        let mut names = 0;
        for (ty, value) in params.distinguished_name.iter() {
            if *ty != DnType::CommonName {
                continue;
            }
            let cn = dn_text(value)?;
            names += 1;
            self.check_name(&cn, "subject common name")?;
        }
        for san in &params.subject_alt_names {
            names += 1;
            match (self, san) {
                (Grant::Client(id), SanType::URI(uri)) if uri.as_str() == id.san_uri() => {}
                (Grant::Server(_), SanType::DnsName(dns)) => {
                    self.check_name(dns.as_str(), "DNS name")?
                }
                (Grant::Server(_), SanType::IpAddress(ip)) => {
                    self.check_name(&ip.to_string(), "IP address")?
                }
                (_, other) => {
                    return Err(CaError::wrong_id(format!(
                        "the CSR asks for the name {other:?}, which this authorisation ({}) does not cover",
                        self.subject()
                    )))
                }
            }
        }
        if names == 0 {
            return Err(CaError::csr_invalid("the CSR names no subject"));
        }
        Ok(())
    }

    fn check_name(&self, name: &str, what: &str) -> Result<(), CaError> {
        let ok = match self {
            Grant::Client(id) => name == id.as_str(),
            Grant::Server(names) => names.iter().any(|n| n.eq_ignore_ascii_case(name)),
        };
        if ok {
            Ok(())
        } else {
            Err(CaError::wrong_id(format!(
                "the CSR's {what} {name:?} is not {}",
                self.subject()
            )))
        }
    }
}

fn dn_text(value: &DnValue) -> Result<String, CaError> {
    match value {
        DnValue::Utf8String(s) => Ok(s.clone()),
        DnValue::PrintableString(s) => Ok(s.as_str().to_owned()),
        DnValue::Ia5String(s) => Ok(s.as_str().to_owned()),
        _ => Err(CaError::csr_invalid(
            "the CSR's common name uses an unsupported string type",
        )),
    }
}
