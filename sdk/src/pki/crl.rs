//! The facts of a CRL, and the check a fetched CRL passes before it replaces the one in use:
//! issued and signed by the pinned root, not past its nextUpdate.

use x509_parser::prelude::*;

use super::CertificateError;

/// What a CRL says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlInfo {
    /// Its CRL number (the CA numbers the CRLs it signs in increasing order).
    pub number: u64,
    /// When it was signed (thisUpdate), Unix seconds.
    pub this_update: i64,
    /// When it stops being usable (nextUpdate), Unix seconds.
    pub next_update: i64,
    /// How many certificates it lists as revoked.
    pub revoked: usize,
}

/// The OID of ecdsa-with-SHA256 (1.2.840.10045.4.3.2).
const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
/// The OID of ecdsa-with-SHA384 (1.2.840.10045.4.3.3).
const ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";

/// Reads the facts of `der` without checking its signature.
pub(crate) fn crl_info(der: &[u8]) -> Result<CrlInfo, CertificateError> {
    let crl = parse(der)?;
    info_of(&crl)
}

/// Checks that `der` is a CRL issued and signed by `root` (DER) that is still usable at `now`
/// (Unix seconds), and returns its facts.
pub(crate) fn check_crl(der: &[u8], root: &[u8], now: i64) -> Result<CrlInfo, CertificateError> {
    let crl = parse(der)?;
    let (_, root) = X509Certificate::from_der(root)
        .map_err(|e| CertificateError::Malformed(format!("the pinned root: {e}")))?;
    if crl.tbs_cert_list.issuer.as_raw() != root.tbs_certificate.subject.as_raw() {
        return Err(CertificateError::BadCrl(
            "the CRL was issued by another CA than the pinned root".into(),
        ));
    }
    let key = &root.public_key().subject_public_key.data;
    let oid = crl.signature_algorithm.algorithm.to_id_string();
    let algorithm: &'static aws_lc_rs::signature::EcdsaVerificationAlgorithm =
        match (oid.as_str(), key.len()) {
            (ECDSA_SHA256, 65) => &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
            (ECDSA_SHA384, 65) => &aws_lc_rs::signature::ECDSA_P256_SHA384_ASN1,
            (ECDSA_SHA384, 97) => &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1,
            (ECDSA_SHA256, 97) => &aws_lc_rs::signature::ECDSA_P384_SHA256_ASN1,
            _ => {
                return Err(CertificateError::BadCrl(format!(
                    "unsupported CRL signature algorithm {oid}"
                )))
            }
        };
    aws_lc_rs::signature::UnparsedPublicKey::new(algorithm, key.as_ref())
        .verify(
            crl.tbs_cert_list.as_ref(),
            crl.signature_value.data.as_ref(),
        )
        .map_err(|_| CertificateError::BadCrl("the CRL's signature does not verify".into()))?;
    let info = info_of(&crl)?;
    if now >= info.next_update {
        return Err(CertificateError::BadCrl(format!(
            "CRL number {} is already past its nextUpdate ({})",
            info.number,
            crate::util::rfc3339(info.next_update)
        )));
    }
    Ok(info)
}

fn parse(der: &[u8]) -> Result<CertificateRevocationList<'_>, CertificateError> {
    let (rest, crl) = CertificateRevocationList::from_der(der)
        .map_err(|e| CertificateError::BadCrl(format!("not a DER CRL: {e}")))?;
    if !rest.is_empty() {
        return Err(CertificateError::BadCrl(
            "trailing bytes after the CRL".into(),
        ));
    }
    Ok(crl)
}

fn info_of(crl: &CertificateRevocationList<'_>) -> Result<CrlInfo, CertificateError> {
    let next_update = crl
        .next_update()
        .ok_or_else(|| CertificateError::BadCrl("the CRL has no nextUpdate".into()))?
        .timestamp();
    let number = crl
        .crl_number()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| CertificateError::BadCrl("the CRL has no usable CRL number".into()))?;
    Ok(CrlInfo {
        number,
        this_update: crl.last_update().timestamp(),
        next_update,
        revoked: crl.iter_revoked_certificates().count(),
    })
}
