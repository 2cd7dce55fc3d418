//! The CA's signing key and root certificate: makes the root, signs leaf certificates and CRLs.
//! The key is loaded into this process only and is never sent or logged.

use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams,
    CertificateSigningRequestParams, CrlDistributionPoint, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use vcsdk::pki::{self, CertificateInfo};

use crate::error::CaError;
use crate::grant::Grant;

/// File name of the root certificate in the data directory.
pub const ROOT_FILE: &str = "root.pem";
/// File name of the CA's private key (mode 0600).
pub const KEY_FILE: &str = "ca-key.pem";

/// Clock skew tolerated: certificates start this long before the moment of issue (at most a tenth
/// of their lifetime, so short-lived certificates keep their renewal point ahead of them).
const BACKDATE: Duration = Duration::from_secs(300);

fn backdate(validity: Duration) -> Duration {
    BACKDATE.min(validity / 10)
}

/// A certificate just signed.
#[derive(Clone, Debug)]
pub struct SignedCertificate {
    /// Serial in lowercase hex.
    pub serial: String,
    /// DER.
    pub der: CertificateDer<'static>,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
}

/// A revoked certificate as listed in a CRL.
#[derive(Clone, Debug)]
pub struct RevokedEntry {
    /// Serial in lowercase hex.
    pub serial: String,
    /// When, Unix seconds.
    pub revoked_at: i64,
    /// RFC 5280 reason name.
    pub reason: String,
}

/// The signing half of the CA.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    root: CertificateDer<'static>,
    root_info: CertificateInfo,
}

impl Authority {
    /// Makes a new self-signed root (ECDSA P-256) valid for `validity`; returns the authority and
    /// the PEM texts of the root certificate and the private key.
    pub fn create(name: &str, validity: Duration) -> Result<(Self, String, String), CaError> {
        let key = pki::new_key_pair().map_err(|e| CaError::internal(e.to_string()))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial()?);
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + validity;
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params
            .self_signed(&key)
            .map_err(|e| CaError::internal(format!("self-signing the root: {e}")))?;
        let root_pem = cert.pem();
        let key_pem = key.serialize_pem();
        let authority = Self::from_parts(cert.der().clone(), key)?;
        Ok((authority, root_pem, key_pem))
    }

    /// Loads the root and key from a data directory.
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let read = |file: &str| {
            std::fs::read_to_string(dir.join(file)).map_err(|e| {
                CaError::internal(format!("reading {}: {e}", dir.join(file).display()))
            })
        };
        let root = pki::pem::certificate(read(ROOT_FILE)?.as_bytes(), ROOT_FILE)
            .map_err(|e| CaError::internal(e.to_string()))?;
        let key = pki::parse_key_pair(&read(KEY_FILE)?)
            .map_err(|e| CaError::internal(format!("{KEY_FILE}: {e}")))?;
        Self::from_parts(root, key)
    }

    fn from_parts(root: CertificateDer<'static>, key: KeyPair) -> Result<Self, CaError> {
        let root_info =
            CertificateInfo::parse(&root).map_err(|e| CaError::internal(e.to_string()))?;
        if root_info.public_key != key.public_key_raw() {
            return Err(CaError::internal(format!(
                "{KEY_FILE} is not the key of {ROOT_FILE}"
            )));
        }
        let issuer = Issuer::from_ca_cert_der(&root, key)
            .map_err(|e| CaError::internal(format!("reading the root: {e}")))?;
        Ok(Authority {
            issuer,
            root,
            root_info,
        })
    }

    /// The root certificate.
    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root
    }

    /// The root certificate as PEM.
    pub fn root_pem(&self) -> String {
        pki::pem::encode("CERTIFICATE", &self.root)
    }

    /// Signs a certificate for `grant` over the CSR's (already checked) public key.
    pub fn sign_csr(
        &self,
        csr: CertificateSigningRequestParams,
        grant: &Grant,
        validity: Duration,
        crl_url: Option<&str>,
    ) -> Result<SignedCertificate, CaError> {
        let (params, not_before, not_after) = self.leaf_params(grant, validity, crl_url)?;
        let serial = params
            .serial_number
            .as_ref()
            .map(|s| s.to_bytes())
            .unwrap_or_default();
        let signed = CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        }
        .signed_by(&self.issuer)
        .map_err(|e| CaError::internal(format!("signing: {e}")))?;
        Ok(SignedCertificate {
            serial: vcsdk::util::hex(&serial),
            der: signed.der().clone(),
            not_before,
            not_after,
        })
    }

    /// Makes a key and a certificate for `grant` in one step (the CA's own TLS certificate).
    pub fn sign_new_key(
        &self,
        grant: &Grant,
        validity: Duration,
    ) -> Result<(SignedCertificate, KeyPair), CaError> {
        let key = pki::new_key_pair().map_err(|e| CaError::internal(e.to_string()))?;
        let (params, not_before, not_after) = self.leaf_params(grant, validity, None)?;
        let serial = params
            .serial_number
            .as_ref()
            .map(|s| s.to_bytes())
            .unwrap_or_default();
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| CaError::internal(format!("signing: {e}")))?;
        Ok((
            SignedCertificate {
                serial: vcsdk::util::hex(&serial),
                der: cert.der().clone(),
                not_before,
                not_after,
            },
            key,
        ))
    }

    fn leaf_params(
        &self,
        grant: &Grant,
        validity: Duration,
        crl_url: Option<&str>,
    ) -> Result<(CertificateParams, i64, i64), CaError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        let now = OffsetDateTime::now_utc();
        let not_before = now - backdate(validity);
        // A certificate never outlives the root that signs it.
        let root_end = OffsetDateTime::from_unix_timestamp(self.root_info.not_after)
            .map_err(|e| CaError::internal(e.to_string()))?;
        let not_after = (now + validity).min(root_end);
        match grant {
            Grant::Client(id) => {
                dn.push(DnType::CommonName, id.as_str());
                params.subject_alt_names = vec![SanType::URI(
                    id.san_uri()
                        .try_into()
                        .map_err(|e| CaError::internal(format!("id URI: {e}")))?,
                )];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
            Grant::Server(names) => {
                dn.push(
                    DnType::CommonName,
                    names.first().map(String::as_str).unwrap_or(""),
                );
                for name in names {
                    params.subject_alt_names.push(match name.parse() {
                        Ok(ip) => SanType::IpAddress(ip),
                        Err(_) => SanType::DnsName(
                            name.clone()
                                .try_into()
                                .map_err(|e| CaError::internal(format!("host name: {e}")))?,
                        ),
                    });
                }
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            }
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(random_serial()?);
        params.not_before = not_before;
        params.not_after = not_after;
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        if let Some(url) = crl_url {
            params.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![url.to_owned()],
            }];
        }
        Ok((
            params,
            not_before.unix_timestamp(),
            not_after.unix_timestamp(),
        ))
    }

    /// Signs a CRL listing `revoked`, numbered `number`, valid from `this_update` to `next_update`
    /// (Unix seconds). Returns DER.
    pub fn sign_crl(
        &self,
        revoked: &[RevokedEntry],
        number: u64,
        this_update: i64,
        next_update: i64,
    ) -> Result<Vec<u8>, CaError> {
        let time = |t: i64| {
            OffsetDateTime::from_unix_timestamp(t).map_err(|e| CaError::internal(e.to_string()))
        };
        let revoked_certs = revoked
            .iter()
            .map(|r| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(
                        &vcsdk::util::unhex(&r.serial)
                            .ok_or_else(|| CaError::internal("stored serial is not hex"))?,
                    ),
                    revocation_time: time(r.revoked_at)?,
                    reason_code: Some(reason_code(&r.reason)),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, CaError>>()?;
        let params = CertificateRevocationListParams {
            this_update: time(this_update)?,
            next_update: time(next_update)?,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&self.issuer)
            .map_err(|e| CaError::internal(format!("signing the CRL: {e}")))?;
        Ok(crl.der().to_vec())
    }
}

fn reason_code(reason: &str) -> rcgen::RevocationReason {
    use rcgen::RevocationReason as R;
    match reason {
        "keyCompromise" => R::KeyCompromise,
        "affiliationChanged" => R::AffiliationChanged,
        "superseded" => R::Superseded,
        "cessationOfOperation" => R::CessationOfOperation,
        "privilegeWithdrawn" => R::PrivilegeWithdrawn,
        _ => R::Unspecified,
    }
}

/// A random positive 128-bit serial whose first byte is neither zero nor has its top bit set, so
/// its DER encoding and its hex form are the same 16 bytes.
fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| CaError::internal("the system random generator failed"))?;
    bytes[0] = (bytes[0] & 0x3f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}
