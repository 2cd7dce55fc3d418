//! The certification authority's HTTPS+JSON API, version 1. Every request and response body is a
//! JSON object; unknown fields are refused.

use serde::{Deserialize, Serialize};

/// Path prefix of every version-1 endpoint.
pub const PREFIX: &str = "/v1";
/// Largest request body the CA accepts, in bytes.
pub const MAX_REQUEST_BODY: usize = 64 * 1024;
/// getNewCert: `POST` an [`EnrollRequest`], get a [`CertificateResponse`].
pub const PATH_ENROLL: &str = "/v1/certificates";
/// updateCert (mutual TLS): `POST` a [`RenewRequest`], get a [`CertificateResponse`].
pub const PATH_RENEW: &str = "/v1/certificates/renew";
/// The result of a renewal whose answer was lost: `POST` a [`RenewalOfRequest`], get the same
/// [`CertificateResponse`] the renewal gave (no TLS client certificate: the old one is revoked).
pub const PATH_RENEWAL_OF: &str = "/v1/certificates/renewal";
/// revokeCert (mutual TLS): `POST` a [`RevokeRequest`], get a [`RevokeResponse`].
pub const PATH_REVOKE: &str = "/v1/certificates/revoke";
/// The current CRL, DER (`application/pkix-crl`).
pub const PATH_CRL: &str = "/v1/crl";
/// The current CRL, PEM.
pub const PATH_CRL_PEM: &str = "/v1/crl.pem";
/// The CA root certificate, PEM (for inspection; clients pin it out of band).
pub const PATH_ROOT: &str = "/v1/root.pem";
/// Liveness: `{"status":"ok"}`.
pub const PATH_HEALTH: &str = "/v1/health";

/// getNewCert: a one-time token and a CSR for the id the token names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The one-time enrollment token from `vc-ca token create`.
    pub token: String,
    /// PKCS#10 certificate signing request, PEM.
    pub csr_pem: String,
}

/// updateCert: a CSR for a new key, sent over mutual TLS with the current certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// PKCS#10 certificate signing request for the same id, PEM.
    pub csr_pem: String,
}

/// Asks for the certificate a renewal of `certificate_pem` issued onto the key of `csr_pem`
/// (the CSR that renewal sent; its signature proves possession of the new key).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewalOfRequest {
    /// The certificate that was renewed (now revoked as superseded), PEM.
    pub certificate_pem: String,
    /// The CSR the renewal sent, PEM.
    pub csr_pem: String,
}

/// revokeCert by the holder, sent over mutual TLS with the certificate to revoke.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Why; `unspecified` when absent.
    #[serde(default)]
    pub reason: Option<RevocationReason>,
}

/// An issued certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateResponse {
    /// The client id or server host name the certificate names.
    pub id: String,
    /// Serial number in lowercase hex: the keyID.
    pub serial: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// The chain above it up to and including the root, PEM.
    pub chain_pem: String,
}

/// A completed revocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeResponse {
    /// The revoked serial.
    pub serial: String,
    /// The recorded reason.
    pub reason: RevocationReason,
    /// When, Unix seconds.
    pub revoked_at: i64,
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable code and a human-readable message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    /// Stable machine-readable code (listed in docs/protocol.md).
    pub code: String,
    /// What was wrong.
    pub message: String,
}

/// CRL reason codes (RFC 5280 §5.3.1) that this CA records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RevocationReason {
    /// No reason given.
    Unspecified,
    /// The private key was exposed.
    KeyCompromise,
    /// The holder's affiliation changed.
    AffiliationChanged,
    /// Replaced by a renewed certificate.
    Superseded,
    /// No longer needed.
    CessationOfOperation,
    /// The operator withdrew the holder's privileges.
    PrivilegeWithdrawn,
}

impl RevocationReason {
    /// Every reason, for help texts and parsing.
    pub const ALL: [RevocationReason; 6] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::PrivilegeWithdrawn,
    ];

    /// The RFC 5280 name, e.g. `keyCompromise`.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "keyCompromise",
            RevocationReason::AffiliationChanged => "affiliationChanged",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessationOfOperation",
            RevocationReason::PrivilegeWithdrawn => "privilegeWithdrawn",
        }
    }
}

impl std::str::FromStr for RevocationReason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        RevocationReason::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = RevocationReason::ALL.iter().map(|r| r.as_str()).collect();
                format!(
                    "unknown revocation reason {s:?}; use one of {}",
                    names.join(", ")
                )
            })
    }
}

impl std::fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<EnrollRequest>(r#"{"token":"t","csr_pem":"c","x":1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn reasons_parse() {
        assert_eq!(
            "keycompromise".parse::<RevocationReason>().unwrap(),
            RevocationReason::KeyCompromise
        );
        assert!("nope"
            .parse::<RevocationReason>()
            .unwrap_err()
            .contains("superseded"));
        let json = serde_json::to_string(&RevocationReason::CessationOfOperation).unwrap();
        assert_eq!(json, "\"cessationOfOperation\"");
    }
}
