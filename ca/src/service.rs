//! The certification authority's operations (the seed's CA interface): getNewCert (enroll with a
//! token), updateCert (renew), revokeCert, the CRL, tokens and the certificate list. Used by the
//! HTTPS API and the operator's command line alike. Each operation is one database transaction:
//! a refused request records nothing but an audit entry.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rcgen::CertificateSigningRequestParams;
use rusqlite::{Connection, TransactionBehavior};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use vcsdk::pki::CertificateInfo;
use vcsdk::proto::ca::RevocationReason;
use vcsdk::tls::CertifiedKey;
use vcsdk::util::{hex, unix_now};

use crate::authority::{Authority, SignedCertificate, KEY_FILE, ROOT_FILE};
use crate::config::{CaConfig, CONFIG_FILE};
use crate::error::CaError;
use crate::grant::Grant;
use crate::store::{self, CertificateRecord, CrlRecord};

/// Prefix of every enrollment token.
pub const TOKEN_PREFIX: &str = "vct1.";

/// Who asked for a revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor<'a> {
    /// The operator, on the command line.
    Operator,
    /// The holder, authenticated by the certificate with this serial.
    Holder(&'a str),
}

impl Actor<'_> {
    fn name(&self) -> String {
        match self {
            Actor::Operator => "operator".into(),
            Actor::Holder(serial) => format!("holder:{serial}"),
        }
    }
}

/// A completed revocation.
#[derive(Debug, Clone)]
pub struct Revocation {
    /// The revoked serial.
    pub serial: String,
    /// The recorded reason.
    pub reason: RevocationReason,
    /// When, Unix seconds.
    pub revoked_at: i64,
    /// The CRL published with it.
    pub crl: CrlRecord,
}

/// A CA opened from its data directory.
pub struct CertificationAuthority {
    dir: PathBuf,
    config: CaConfig,
    authority: Authority,
    db: Mutex<Connection>,
}

impl CertificationAuthority {
    /// `vc-ca init`: makes a new root in `dir` (created if needed) and refuses to touch an existing
    /// CA. The key file is created with mode 0600.
    pub fn init(
        dir: &Path,
        config: &CaConfig,
        root_validity: std::time::Duration,
    ) -> Result<(), CaError> {
        config.validate()?;
        check_root_validity(root_validity, config.cert_validity(), config.crl_validity())?;
        for file in [ROOT_FILE, KEY_FILE, store::DB_FILE] {
            if dir.join(file).exists() {
                return Err(CaError::internal(format!(
                    "{} already holds a CA ({file} exists); refusing to overwrite it",
                    dir.display()
                )));
            }
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| CaError::internal(format!("creating {}: {e}", dir.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| CaError::internal(format!("restricting {}: {e}", dir.display())))?;
        }
        let (_, root_pem, key_pem) = Authority::create(&config.name, root_validity)?;
        write_new(&dir.join(KEY_FILE), key_pem.as_bytes(), 0o600)?;
        write_new(&dir.join(ROOT_FILE), root_pem.as_bytes(), 0o644)?;
        let text = toml::to_string(config).map_err(|e| CaError::internal(e.to_string()))?;
        write_new(&dir.join(CONFIG_FILE), text.as_bytes(), 0o644)?;
        let ca = Self::open(dir)?;
        let conn = ca.lock();
        store::audit(
            &conn,
            unix_now(),
            "initialized",
            "operator",
            Some(&config.name),
            None,
            None,
        )?;
        ca.publish_crl(&conn)?;
        Ok(())
    }

    /// Opens an initialised CA.
    pub fn open(dir: &Path) -> Result<Self, CaError> {
        let config = CaConfig::load(dir)?;
        let authority = Authority::load(dir)?;
        let db = Mutex::new(store::open(dir)?);
        Ok(CertificationAuthority {
            dir: dir.to_owned(),
            config,
            authority,
            db,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The settings.
    pub fn config(&self) -> &CaConfig {
        &self.config
    }

    /// The root certificate.
    pub fn root(&self) -> &CertificateDer<'static> {
        self.authority.root()
    }

    /// The root certificate, PEM.
    pub fn root_pem(&self) -> String {
        self.authority.root_pem()
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a one-time token for `grant`, valid for `ttl` (the configured default when
    /// `None`). Only its hash is stored; the token itself is returned once.
    /// Every token (by hash: the tokens themselves are never stored), newest first.
    pub fn tokens(&self) -> Result<Vec<store::TokenListing>, CaError> {
        store::tokens(&self.lock())
    }

    /// Revokes the unused tokens named by id prefix (from `token list`) or by subject; returns
    /// how many.
    pub fn revoke_tokens(&self, id: Option<&str>, subject: Option<&str>) -> Result<usize, CaError> {
        let now = unix_now();
        let conn = self.lock();
        let n = store::revoke_tokens(&conn, id, subject, now)?;
        store::audit(
            &conn,
            now,
            "tokens_revoked",
            "operator",
            subject,
            None,
            Some(&format!(
                "count={n}{}",
                id.map(|i| format!(" id={i}")).unwrap_or_default()
            )),
        )?;
        Ok(n)
    }

    /// Makes a one-time enrollment token for `grant`, valid for `ttl` (default: the configured
    /// token lifetime). Returns the token, which is stored only hashed and shown this once.
    pub fn create_token(
        &self,
        grant: &Grant,
        ttl: Option<std::time::Duration>,
    ) -> Result<String, CaError> {
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret)
            .map_err(|_| CaError::internal("the system random generator failed"))?;
        let token = format!("{TOKEN_PREFIX}{}", hex(&secret));
        let now = unix_now();
        let ttl = ttl.unwrap_or_else(|| self.config.token_ttl());
        let conn = self.lock();
        store::insert_token(
            &conn,
            &token_hash(&token),
            grant,
            now,
            now + ttl.as_secs() as i64,
        )?;
        store::audit(
            &conn,
            now,
            "token_created",
            "operator",
            Some(&grant.subject()),
            None,
            Some(&format!(
                "usage={} ttl={}s",
                grant.usage().as_str(),
                ttl.as_secs()
            )),
        )?;
        Ok(token)
    }

    /// getNewCert: checks the token and the CSR, signs, and records the certificate and the
    /// token's use in one transaction.
    pub fn enroll(&self, token: &str, csr_pem: &str) -> Result<SignedCertificate, CaError> {
        let now = unix_now();
        let hash = token_hash(token);
        let csr = parse_csr(csr_pem);
        let mut conn = self.lock();
        let mut grant = None;
        let result = (|| -> Result<_, CaError> {
            let csr = csr?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let record = store::token(&tx, &hash)?.ok_or_else(CaError::token_unknown)?;
            grant = Some(record.grant.clone());
            if record.used_at.is_some() {
                // A retry of the exchange that spent the token (the answer was lost, or the
                // client could not store it): the same CSR gets the same certificate.
                return match self.issued_to_key(
                    &tx,
                    store::token_used_serial(&tx, &hash)?,
                    &csr,
                    now,
                )? {
                    Some(cert) => Ok(cert),
                    None => Err(CaError::token_used()),
                };
            }
            if record.revoked_at.is_some() {
                return Err(CaError::token_revoked());
            }
            if now >= record.expires_at {
                return Err(CaError::token_expired());
            }
            record.grant.check_csr(&csr)?;
            let cert = self.authority.sign_csr(
                csr,
                &record.grant,
                self.config.cert_validity(),
                self.config.crl_url().as_deref(),
            )?;
            store::insert_certificate(&tx, &record.grant, &cert, now)?;
            store::consume_token(&tx, &hash, &cert.serial, now)?;
            store::audit(
                &tx,
                now,
                "issued",
                "token",
                Some(&record.grant.subject()),
                Some(&cert.serial),
                None,
            )?;
            tx.commit()?;
            Ok(cert)
        })();
        match result {
            Ok(cert) => {
                tracing::info!(subject = %cert_subject(&cert), serial = %cert.serial, "certificate issued");
                Ok(cert)
            }
            Err(e) => {
                let subject = grant.map(|g| g.subject());
                let _ = store::audit_refusal(
                    &conn,
                    now,
                    "enroll_refused",
                    "token",
                    subject.as_deref(),
                    None,
                    Some(e.code),
                );
                tracing::warn!(
                    code = e.code,
                    subject = subject.as_deref().unwrap_or("-"),
                    "enrollment refused: {}",
                    e.message
                );
                Err(e)
            }
        }
    }

    /// The certificate `serial` (if any) when it is still valid and certifies the key of `csr`.
    fn issued_to_key(
        &self,
        conn: &Connection,
        serial: Option<String>,
        csr: &CertificateSigningRequestParams,
        now: i64,
    ) -> Result<Option<SignedCertificate>, CaError> {
        let Some(serial) = serial else {
            return Ok(None);
        };
        let Some((record, der)) = store::valid_certificate_der(conn, &serial, now)? else {
            return Ok(None);
        };
        let der = CertificateDer::from(der);
        let info = CertificateInfo::parse(&der).map_err(|e| CaError::internal(e.to_string()))?;
        if info.public_key != rcgen::PublicKeyData::der_bytes(&csr.public_key) {
            return Ok(None);
        }
        Ok(Some(SignedCertificate {
            serial: record.serial,
            der,
            not_before: record.not_before,
            not_after: record.not_after,
        }))
    }

    /// The certificate a renewal of `previous` issued onto the key of `csr_pem`: for a client
    /// whose renewal was committed here but never stored there (the answer was lost, the disk
    /// was full). `previous` is then revoked as superseded, so it cannot authenticate; the CSR
    /// proves possession of the new key, and a certificate is public anyway. Changes nothing.
    pub fn renewal_of(
        &self,
        previous: &CertificateDer<'_>,
        csr_pem: &str,
    ) -> Result<SignedCertificate, CaError> {
        let now = unix_now();
        let csr = parse_csr(csr_pem)?;
        let conn = self.lock();
        let record = issued_record(&conn, previous)?;
        let superseded =
            record.revocation_reason.as_deref() == Some(RevocationReason::Superseded.as_str());
        let next = if superseded { record.replaced_by } else { None };
        self.issued_to_key(&conn, next, &csr, now)?
            .ok_or_else(|| CaError::renewal_unknown(&record.serial))
    }

    /// updateCert: the holder of `presented` (authenticated over mutual TLS) gets a certificate for
    /// the same id on a new key; the old one is revoked as superseded and a new CRL published.
    pub fn renew(
        &self,
        presented: &CertificateDer<'_>,
        csr_pem: &str,
    ) -> Result<(SignedCertificate, CrlRecord), CaError> {
        let now = unix_now();
        let csr = parse_csr(csr_pem);
        let mut conn = self.lock();
        let result = (|| -> Result<_, CaError> {
            let csr = csr?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let old = self.presented_record(&tx, presented, now)?;
            let grant = old.grant()?;
            grant.check_csr(&csr)?;
            self.check_renewal_interval(&tx, &old, now)?;
            let cert = self.authority.sign_csr(
                csr,
                &grant,
                self.config.cert_validity(),
                self.config.crl_url().as_deref(),
            )?;
            store::insert_certificate(&tx, &grant, &cert, now)?;
            store::revoke(
                &tx,
                &old.serial,
                RevocationReason::Superseded.as_str(),
                Some(&cert.serial),
                now,
            )?;
            store::audit(
                &tx,
                now,
                "renewed",
                &Actor::Holder(&old.serial).name(),
                Some(&old.subject),
                Some(&cert.serial),
                Some(&format!("supersedes {}", old.serial)),
            )?;
            let crl = self.publish_crl(&tx)?;
            tx.commit()?;
            Ok((cert, crl, old))
        })();
        match result {
            Ok((cert, crl, old)) => {
                tracing::info!(subject = %old.subject, serial = %cert.serial, superseded = %old.serial, "certificate renewed");
                Ok((cert, crl))
            }
            Err(e) => {
                let serial = CertificateInfo::parse(presented).map(|i| i.serial).ok();
                let _ = store::audit_refusal(
                    &conn,
                    now,
                    "renew_refused",
                    "holder",
                    None,
                    serial.as_deref(),
                    Some(e.code),
                );
                tracing::warn!(
                    code = e.code,
                    serial = serial.as_deref().unwrap_or("-"),
                    "renewal refused: {}",
                    e.message
                );
                Err(e)
            }
        }
    }

    /// Refuses to renew a certificate that was itself issued by a renewal less than
    /// `renew_min_interval` ago, so that one holder cannot grow the certificate table and the CRL
    /// by renewing in a loop. A certificate from enrollment (each costs a token) may renew at once.
    fn check_renewal_interval(
        &self,
        conn: &Connection,
        record: &CertificateRecord,
        now: i64,
    ) -> Result<(), CaError> {
        if store::renewed_from(conn, &record.serial)?.is_none() {
            return Ok(());
        }
        let allowed_at = record
            .issued_at
            .saturating_add(self.config.renew_min_interval().as_secs() as i64);
        if now < allowed_at {
            return Err(CaError::renew_too_soon(&record.serial, allowed_at, now));
        }
        Ok(())
    }

    /// revokeCert by the holder of `presented` (authenticated over mutual TLS).
    pub fn revoke_presented(
        &self,
        presented: &CertificateDer<'_>,
        reason: RevocationReason,
    ) -> Result<Revocation, CaError> {
        let now = unix_now();
        let serial = {
            let conn = self.lock();
            self.presented_record(&conn, presented, now)?.serial
        };
        self.revoke_serial(&serial, reason, Actor::Holder(&serial))
    }

    /// revokeCert by serial (the operator, or the holder once authenticated).
    pub fn revoke_serial(
        &self,
        serial: &str,
        reason: RevocationReason,
        actor: Actor<'_>,
    ) -> Result<Revocation, CaError> {
        let serial = serial.trim().to_ascii_lowercase();
        if vcsdk::util::unhex(&serial).is_none_or(|b| b.is_empty()) {
            return Err(CaError::malformed(format!(
                "serial {serial:?} is not hexadecimal"
            )));
        }
        let now = unix_now();
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let record = store::certificate(&tx, &serial)?
            .ok_or_else(|| CaError::certificate_unknown(&serial))?;
        if record.status == "revoked" {
            return Err(CaError::certificate_revoked(
                &serial,
                record.revocation_reason.as_deref().unwrap_or("unspecified"),
            ));
        }
        store::revoke(&tx, &serial, reason.as_str(), None, now)?;
        store::audit(
            &tx,
            now,
            "revoked",
            &actor.name(),
            Some(&record.subject),
            Some(&serial),
            Some(reason.as_str()),
        )?;
        let crl = self.publish_crl(&tx)?;
        tx.commit()?;
        tracing::info!(subject = %record.subject, serial = %serial, reason = reason.as_str(), actor = %actor.name(), "certificate revoked");
        Ok(Revocation {
            serial,
            reason,
            revoked_at: now,
            crl,
        })
    }

    /// The record of a certificate presented over mutual TLS: it must be one this CA issued
    /// (byte for byte), still valid, and not revoked.
    fn presented_record(
        &self,
        conn: &Connection,
        presented: &CertificateDer<'_>,
        now: i64,
    ) -> Result<CertificateRecord, CaError> {
        let record = issued_record(conn, presented)?;
        if record.status == "revoked" {
            return Err(CaError::certificate_revoked(
                &record.serial,
                record.revocation_reason.as_deref().unwrap_or("unspecified"),
            ));
        }
        if now >= record.not_after {
            return Err(CaError::certificate_expired(&record.serial));
        }
        Ok(record)
    }

    /// The current CRL; signs a fresh one when none exists or half its validity has passed.
    pub fn current_crl(&self) -> Result<CrlRecord, CaError> {
        let conn = self.lock();
        let now = unix_now();
        match store::latest_crl(&conn)? {
            Some(crl) if now < crl.this_update + (crl.next_update - crl.this_update) / 2 => Ok(crl),
            _ => self.publish_crl(&conn),
        }
    }

    /// Signs and stores a new CRL listing every revoked certificate that has not expired.
    fn publish_crl(&self, conn: &Connection) -> Result<CrlRecord, CaError> {
        let now = unix_now();
        let revoked = store::revoked_unexpired(conn, now)?;
        let number = store::next_crl_number(conn)?;
        let next_update = now + self.config.crl_validity().as_secs() as i64;
        let der = self
            .authority
            .sign_crl(&revoked, number, now, next_update)?;
        let crl = CrlRecord {
            number,
            this_update: now,
            next_update,
            der,
        };
        store::insert_crl(conn, &crl)?;
        store::audit(
            conn,
            now,
            "crl_published",
            "ca",
            None,
            None,
            Some(&format!("number={number} entries={}", revoked.len())),
        )?;
        Ok(crl)
    }

    /// Every issued certificate, newest first.
    pub fn list(&self) -> Result<Vec<CertificateRecord>, CaError> {
        store::certificates(&self.lock())
    }

    /// The audit log, oldest first.
    pub fn audit_log(&self) -> Result<Vec<store::AuditEntry>, CaError> {
        store::audit_log(&self.lock())
    }

    /// Issues the CA's own HTTPS certificate (server usage, the configured host names) on a fresh
    /// key held in memory, valid as long as issued certificates are, and records it.
    pub fn issue_tls_identity(&self) -> Result<(CertifiedKey, SignedCertificate), CaError> {
        let grant = Grant::Server(self.config.tls_hostnames.clone());
        let (cert, key) = self
            .authority
            .sign_new_key(&grant, self.config.cert_validity())?;
        let now = unix_now();
        let conn = self.lock();
        store::insert_certificate(&conn, &grant, &cert, now)?;
        store::audit(
            &conn,
            now,
            "issued",
            "ca",
            Some(&grant.subject()),
            Some(&cert.serial),
            Some("CA HTTPS certificate"),
        )?;
        Ok((
            CertifiedKey {
                chain: vec![cert.der.clone()],
                key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            },
            cert,
        ))
    }
}

/// SHA-256 of a token: what the database keeps.
pub fn token_hash(token: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.trim().as_bytes())
        .as_ref()
        .to_vec()
}

/// Refuses a root lifetime that would make the CA useless: zero (an expired root, then an
/// expired HTTPS certificate issued every second), or shorter than one certificate or CRL it
/// signs.
fn check_root_validity(
    root: std::time::Duration,
    cert: std::time::Duration,
    crl: std::time::Duration,
) -> Result<(), CaError> {
    let days = root.as_secs() / 86_400;
    if root < std::time::Duration::from_secs(86_400) {
        return Err(CaError::internal(
            "the root must be valid for at least 1 day (--validity-days)",
        ));
    }
    if root.as_secs() > 100 * 365 * 86_400 {
        return Err(CaError::internal(format!(
            "--validity-days {days} is more than 100 years"
        )));
    }
    for (what, lifetime) in [("--cert-validity", cert), ("--crl-validity", crl)] {
        if lifetime >= root {
            return Err(CaError::internal(format!(
                "{what} ({} s) must be shorter than the root's lifetime ({days} days): nothing may outlive the root that signs it",
                lifetime.as_secs()
            )));
        }
    }
    Ok(())
}

fn parse_csr(csr_pem: &str) -> Result<CertificateSigningRequestParams, CaError> {
    let der = vcsdk::pki::pem::csr(csr_pem.as_bytes())
        .map_err(|e| CaError::csr_invalid(e.to_string()))?;
    CertificateSigningRequestParams::from_der(&der).map_err(|e| match e {
        rcgen::Error::InvalidCertificationRequestSignature => CaError::csr_invalid(
            "the CSR's signature does not verify (it must be signed by the key it carries)",
        ),
        rcgen::Error::UnsupportedExtension => {
            CaError::csr_invalid("the CSR asks for an extension this CA does not issue")
        }
        other => CaError::csr_invalid(format!("the CSR could not be parsed: {other}")),
    })
}

fn cert_subject(cert: &SignedCertificate) -> String {
    CertificateInfo::parse(&cert.der)
        .map(|i| i.id)
        .unwrap_or_default()
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), CaError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let mut file = options
        .open(path)
        .map_err(|e| CaError::internal(format!("creating {}: {e}", path.display())))?;
    file.write_all(data)
        .and_then(|_| file.sync_all())
        .map_err(|e| CaError::internal(format!("writing {}: {e}", path.display())))
}

/// The record of `certificate`, which must be one this CA issued, byte for byte (a certificate
/// with a known serial but other contents is `certificate_unknown`). Status and dates unchecked.
fn issued_record(
    conn: &Connection,
    certificate: &CertificateDer<'_>,
) -> Result<CertificateRecord, CaError> {
    let info =
        CertificateInfo::parse(certificate).map_err(|e| CaError::malformed(e.to_string()))?;
    let record = store::certificate(conn, &info.serial)?
        .ok_or_else(|| CaError::certificate_unknown(&info.serial))?;
    let stored: Vec<u8> = conn.query_row(
        "SELECT der FROM certificates WHERE serial = ?1",
        [&info.serial],
        |r| r.get(0),
    )?;
    if stored != certificate.as_ref() {
        return Err(CaError::certificate_unknown(&info.serial));
    }
    Ok(record)
}
