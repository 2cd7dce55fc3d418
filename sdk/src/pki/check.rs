//! The certificate check: one path for every certificate the SDK, the CA and the server accept.
//! It verifies the chain to the pinned root, the validity period, the extended key usage, the
//! revocation status against the CA's CRL, and the expected id or host name.

use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage, OwnedCertRevocationList,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};

use super::{CertificateInfo, CrlInfo, Usage};

/// DER value of the id-kp-clientAuth OID (1.3.6.1.5.5.7.3.2).
const EKU_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
/// DER value of the id-kp-serverAuth OID (1.3.6.1.5.5.7.3.1).
const EKU_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];

/// Why a certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The certificate could not be parsed.
    #[error("malformed certificate: {0}")]
    Malformed(String),
    /// It does not chain to the pinned CA root (issued by another CA, or a bad signature).
    #[error("not issued by the pinned CA root")]
    UnknownIssuer,
    /// Its validity period has ended.
    #[error("certificate expired")]
    Expired,
    /// Its validity period has not begun.
    #[error("certificate not yet valid")]
    NotYetValid,
    /// It is listed on the CA's CRL.
    #[error("certificate revoked")]
    Revoked,
    /// The CRL is past its next-update time; fetch a fresh one.
    #[error(
        "the CRL is out of date (past its nextUpdate): a fresh one must be fetched from the CA"
    )]
    CrlExpired,
    /// The CRL a long-lived check holds expired and no fresher one could be fetched from the CA:
    /// revocation cannot be checked, so nothing is accepted until a refresh succeeds.
    #[error("stale CRL: CRL number {number} expired at {} (its nextUpdate) and no fresher one could be fetched from the CA ({why})", crate::util::rfc3339(*.next_update))]
    StaleCrl {
        /// The number of the CRL in hand.
        number: u64,
        /// Its nextUpdate, Unix seconds.
        next_update: i64,
        /// Why no fresher one was installed (the last refresh error).
        why: String,
    },
    /// The CRL is malformed or was not signed by the pinned CA.
    #[error("CRL refused: {0}")]
    BadCrl(String),
    /// It lacks the extended key usage needed for this role.
    #[error("certificate lacks the {0}-auth usage")]
    WrongUsage(&'static str),
    /// It names someone other than the expected peer.
    #[error("certificate names {found:?}, expected {expected:?}")]
    WrongId {
        /// The id or host name the caller expected.
        expected: String,
        /// What the certificate names.
        found: String,
    },
    /// Any other refusal by the path validator.
    #[error("certificate refused: {0}")]
    Other(String),
}

/// A certificate that passed the check, with its facts.
#[derive(Clone, Debug)]
pub struct VerifiedCertificate {
    /// The facts of the end-entity certificate.
    pub info: CertificateInfo,
}

/// The pinned root and the current CRL: everything needed to check a peer certificate.
#[derive(Clone, Debug)]
pub struct CertificateCheck {
    root: CertificateDer<'static>,
    anchor: TrustAnchor<'static>,
    crl: Option<std::sync::Arc<CertRevocationList<'static>>>,
    crl_info: Option<CrlInfo>,
}

impl CertificateCheck {
    /// Pins `root`, which must be a CA certificate.
    pub fn new(root: CertificateDer<'static>) -> crate::Result<Self> {
        let info = CertificateInfo::parse(&root)?;
        if !info.is_ca {
            return Err(crate::Error::InvalidArgument(
                "the pinned root is not a CA certificate".into(),
            ));
        }
        let anchor = webpki::anchor_from_trusted_cert(&root)
            .map_err(|e| crate::Error::InvalidArgument(format!("the pinned root: {e}")))?
            .to_owned();
        Ok(CertificateCheck {
            root,
            anchor,
            crl: None,
            crl_info: None,
        })
    }

    /// Pins the root read from PEM text.
    pub fn from_root_pem(pem: &[u8]) -> crate::Result<Self> {
        Self::new(super::pem::certificate(pem, "CA root")?)
    }

    /// The pinned root certificate.
    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root
    }

    /// Installs the CA's current CRL (DER). Its signature is verified against the root when it is
    /// used; from then on a certificate whose status the CRL does not give is refused.
    pub fn set_crl_der(&mut self, der: &[u8]) -> Result<(), CertificateError> {
        let crl = OwnedCertRevocationList::from_der(der)
            .map_err(|e| CertificateError::BadCrl(format!("{e:?}")))?;
        self.crl = Some(std::sync::Arc::new(CertRevocationList::from(crl)));
        self.crl_info = super::crl::crl_info(der).ok();
        Ok(())
    }

    /// Installs a CRL only after checking it: issued and signed by the pinned root and not past
    /// its nextUpdate at `now` (Unix seconds). Returns its facts.
    pub fn install_crl(&mut self, der: &[u8], now: i64) -> Result<CrlInfo, CertificateError> {
        let info = super::crl::check_crl(der, &self.root, now)?;
        self.set_crl_der(der)?;
        self.crl_info = Some(info.clone());
        Ok(info)
    }

    /// The facts of the installed CRL (number, thisUpdate, nextUpdate), when it has them.
    pub fn crl_info(&self) -> Option<&CrlInfo> {
        self.crl_info.as_ref()
    }

    /// Removes the CRL: revocation is no longer checked (for signatures judged at their own time,
    /// such as a conference's log before one joined).
    pub fn clear_crl(&mut self) {
        self.crl = None;
        self.crl_info = None;
    }

    /// Whether a CRL is installed (without one, revocation is not checked).
    pub fn has_crl(&self) -> bool {
        self.crl.is_some()
    }

    /// Checks `chain` (end-entity first) for `usage` at `now`. With `expected`, the certificate must
    /// name that client id (client usage) or be valid for that host name (server usage).
    pub fn verify(
        &self,
        chain: &[CertificateDer<'_>],
        usage: Usage,
        expected: Option<&str>,
        now: UnixTime,
    ) -> Result<VerifiedCertificate, CertificateError> {
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or_else(|| CertificateError::Malformed("no certificate presented".into()))?;
        let end_entity = EndEntityCert::try_from(leaf).map_err(map_webpki)?;
        let crls: Vec<&CertRevocationList<'_>> = self.crl.as_deref().into_iter().collect();
        let revocation = RevocationOptionsBuilder::new(&crls).ok().map(|b| {
            b.with_depth(RevocationCheckDepth::Chain)
                .with_status_policy(UnknownStatusPolicy::Deny)
                .with_expiration_policy(ExpirationPolicy::Enforce)
                .build()
        });
        let eku = match usage {
            Usage::Client => KeyUsage::required(EKU_CLIENT_AUTH),
            Usage::Server => KeyUsage::required(EKU_SERVER_AUTH),
        };
        end_entity
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                std::slice::from_ref(&self.anchor),
                intermediates,
                now,
                eku,
                revocation,
                None,
            )
            .map_err(|e| match e {
                webpki::Error::RequiredEkuNotFoundContext(_) => {
                    CertificateError::WrongUsage(usage.as_str())
                }
                other => map_webpki(other),
            })?;
        let info =
            CertificateInfo::parse(leaf).map_err(|e| CertificateError::Malformed(e.to_string()))?;
        if let Some(expected) = expected {
            match usage {
                Usage::Client => {
                    if info.id != expected {
                        return Err(CertificateError::WrongId {
                            expected: expected.to_owned(),
                            found: info.id.clone(),
                        });
                    }
                }
                Usage::Server => {
                    let name =
                        ServerName::try_from(expected).map_err(|_| CertificateError::WrongId {
                            expected: expected.to_owned(),
                            found: info.host_names.join(","),
                        })?;
                    end_entity
                        .verify_is_valid_for_subject_name(&name)
                        .map_err(|_| CertificateError::WrongId {
                            expected: expected.to_owned(),
                            found: info.host_names.join(","),
                        })?;
                }
            }
        }
        Ok(VerifiedCertificate { info })
    }
}

fn map_webpki(e: webpki::Error) -> CertificateError {
    use webpki::Error as W;
    match e {
        W::UnknownIssuer
        | W::InvalidSignatureForPublicKey
        | W::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => CertificateError::UnknownIssuer,
        W::CertExpired { .. } => CertificateError::Expired,
        W::CertNotValidYet { .. } => CertificateError::NotYetValid,
        W::CertRevoked => CertificateError::Revoked,
        W::CrlExpired { .. } => CertificateError::CrlExpired,
        W::UnknownRevocationStatus => {
            CertificateError::BadCrl("the CRL does not come from the pinned CA".into())
        }
        W::InvalidCrlSignatureForPublicKey => {
            CertificateError::BadCrl("the CRL's signature does not verify".into())
        }
        W::BadDer | W::BadDerTime | W::TrailingData(_) => {
            CertificateError::Malformed(format!("{e:?}"))
        }
        other => CertificateError::Other(format!("{other:?}")),
    }
}
