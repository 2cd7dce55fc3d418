//! The one live certificate check of a long-lived party: the pinned root and the newest CRL,
//! replaced in place when a fresher CRL is installed, so that every check it makes (TLS
//! handshakes, peer certificates, signed entries) uses the same current CRL. Once the CRL in hand
//! is past its nextUpdate, checks fail with [`CertificateError::StaleCrl`].

use std::sync::{Arc, Mutex, RwLock};

use rustls_pki_types::{CertificateDer, UnixTime};

use super::{CertificateCheck, CertificateError, CrlInfo, Usage, VerifiedCertificate};

/// How the CRL of a [`LiveCheck`] is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrlStatus {
    /// The CRL in use (none: revocation is not checked).
    pub crl: Option<CrlInfo>,
    /// When a CRL was last installed here, Unix seconds.
    pub installed_at: Option<i64>,
    /// How many refreshes in a row failed since.
    pub failures: u32,
    /// Why the last refresh failed, while the last one failed.
    pub last_error: Option<String>,
}

/// A certificate check shared by everything one party checks, whose CRL is replaced in place.
/// Cloning shares it.
#[derive(Clone, Debug)]
pub struct LiveCheck {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    check: Arc<RwLock<CertificateCheck>>,
    status: Mutex<CrlStatus>,
    wake: tokio::sync::Notify,
}

impl LiveCheck {
    /// Starts from `check` (its root, and its CRL if it has one).
    pub fn new(check: CertificateCheck) -> Self {
        let status = CrlStatus {
            crl: check.crl_info().cloned(),
            ..CrlStatus::default()
        };
        LiveCheck {
            inner: Arc::new(Inner {
                check: Arc::new(RwLock::new(check)),
                status: Mutex::new(status),
                wake: tokio::sync::Notify::new(),
            }),
        }
    }

    /// The check as the TLS verifiers take it (they see every CRL installed later).
    pub fn shared(&self) -> crate::tls::SharedCheck {
        self.inner.check.clone()
    }

    /// A copy of the check as it is now (for code that takes a plain [`CertificateCheck`]).
    pub fn snapshot(&self) -> CertificateCheck {
        self.inner
            .check
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How the CRL is doing.
    pub fn status(&self) -> CrlStatus {
        self.status_lock().clone()
    }

    fn status_lock(&self) -> std::sync::MutexGuard<'_, CrlStatus> {
        self.inner.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Installs a fetched CRL once it passed the checks: issued and signed by the pinned root,
    /// not past its nextUpdate at `now` (Unix seconds), and not older (by CRL number) than the
    /// one in use — an old CRL replayed to hide a revocation is refused.
    pub fn install(&self, der: &[u8], now: i64) -> Result<CrlInfo, CertificateError> {
        let mut candidate = self.snapshot();
        let info = candidate.install_crl(der, now)?;
        let mut status = self.status_lock();
        if let Some(current) = &status.crl {
            if info.number < current.number {
                return Err(CertificateError::BadCrl(format!(
                    "CRL number {} is older than the one in use ({})",
                    info.number, current.number
                )));
            }
        }
        *self.inner.check.write().unwrap_or_else(|p| p.into_inner()) = candidate;
        status.crl = Some(info.clone());
        status.installed_at = Some(now);
        status.failures = 0;
        status.last_error = None;
        Ok(info)
    }

    /// Records a failed refresh (`error` must not contain secrets: it is shown and logged).
    pub fn note_failure(&self, error: &str) {
        let mut status = self.status_lock();
        status.failures = status.failures.saturating_add(1);
        status.last_error = Some(error.chars().take(300).collect());
    }

    /// The error every check gives while the CRL in hand is past its nextUpdate at `now` (Unix
    /// seconds); `None` while it is usable (or when there is no CRL).
    pub fn stale(&self, now: i64) -> Option<CertificateError> {
        let status = self.status_lock();
        let info = status.crl.as_ref()?;
        (now >= info.next_update).then(|| CertificateError::StaleCrl {
            number: info.number,
            next_update: info.next_update,
            why: status
                .last_error
                .clone()
                .unwrap_or_else(|| "no refresh has succeeded since".into()),
        })
    }

    /// Checks `chain` like [`CertificateCheck::verify`] with the current CRL. A CRL past its
    /// nextUpdate gives [`CertificateError::StaleCrl`] and asks the refresher to try at once.
    pub fn verify(
        &self,
        chain: &[CertificateDer<'_>],
        usage: Usage,
        expected: Option<&str>,
        now: UnixTime,
    ) -> Result<VerifiedCertificate, CertificateError> {
        let result = self
            .inner
            .check
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .verify(chain, usage, expected, now);
        match result {
            Err(CertificateError::CrlExpired) => {
                self.wake();
                let secs = now.as_secs() as i64;
                Err(self.stale(secs).unwrap_or(CertificateError::CrlExpired))
            }
            other => other,
        }
    }

    /// Asks whoever refreshes the CRL to do it now.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Waits until [`LiveCheck::wake`] is called.
    pub async fn woken(&self) {
        self.inner.wake.notified().await;
    }
}
