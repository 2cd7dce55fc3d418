//! Keeps a client's [`LiveCheck`] current, as `vc-server` does for its own: fetches the CA's CRL
//! (`GET /v1/crl`, over TLS checked against the pinned root) at most `crl_refresh` apart and
//! always before half the remaining life of the CRL in hand has passed, retries failures with
//! backoff, and installs only CRLs signed by the pinned root, still current and not older than
//! the one in use.

use std::time::Duration;

use crate::ca_client::CaClient;
use crate::identity::IdentityStore;
use crate::pki::LiveCheck;
use crate::util::unix_now;
use crate::Result;

/// Default longest time between two CRL fetches (a revocation is seen at most this late).
pub const DEFAULT_CRL_REFRESH: Duration = Duration::from_secs(600);
/// Shortest time between two fetches, whatever asks for one.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait between retries after failures.
const MAX_RETRY: Duration = Duration::from_secs(60);

/// Where a client fetches the CA's CRL from.
#[derive(Clone)]
pub enum CrlSource {
    /// The CA's CRL endpoint.
    Ca(CaClient),
    /// The CA the identity in this store was enrolled with; each CRL installed is also cached in
    /// the store.
    Store(IdentityStore),
}

impl CrlSource {
    /// Fetches the CA's current CRL (DER), unchecked.
    pub async fn fetch(&self) -> Result<Vec<u8>> {
        match self {
            CrlSource::Ca(ca) => ca.crl_der().await,
            CrlSource::Store(store) => store.ca_client()?.crl_der().await,
        }
    }

    /// The CA's URL, for logs.
    fn describe(&self) -> String {
        match self {
            CrlSource::Ca(ca) => ca.url(),
            CrlSource::Store(store) => store
                .ca_client()
                .map(|c| c.url())
                .unwrap_or_else(|_| "the identity's CA".into()),
        }
    }

    fn cache(&self, der: &[u8]) {
        if let CrlSource::Store(store) = self {
            if let Err(e) = store.save_crl(der) {
                tracing::debug!(error = %e, "CRL not cached");
            }
        }
    }
}

/// Fetches once and installs what passes the checks; the error says why not (no secrets).
pub(super) async fn refresh_once(
    live: &LiveCheck,
    source: &CrlSource,
) -> std::result::Result<crate::pki::CrlInfo, String> {
    let outcome = match tokio::time::timeout(FETCH_TIMEOUT, source.fetch()).await {
        Ok(Ok(der)) => live
            .install(&der, unix_now())
            .map(|info| (info, der))
            .map_err(|e| format!("CRL refused: {e}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "the CA did not answer within {} s",
            FETCH_TIMEOUT.as_secs()
        )),
    };
    match outcome {
        Ok((info, der)) => {
            source.cache(&der);
            Ok(info)
        }
        Err(e) => {
            live.note_failure(&e);
            Err(e)
        }
    }
}

/// The refresher's loop; runs until aborted.
pub(super) async fn refresh(live: LiveCheck, source: CrlSource, every: Duration) {
    let every = every.max(MIN_INTERVAL);
    let mut failures: u32 = 0;
    let mut last_fetch: Option<tokio::time::Instant> = None;
    loop {
        let wait = if failures == 0 {
            scheduled(&live, every)
        } else {
            retry_after(failures, every).min(scheduled(&live, every).max(MIN_INTERVAL))
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = live.woken() => {}
        }
        if let Some(at) = last_fetch {
            let since = at.elapsed();
            if since < MIN_INTERVAL {
                tokio::time::sleep(MIN_INTERVAL - since).await;
            }
        }
        last_fetch = Some(tokio::time::Instant::now());
        match refresh_once(&live, &source).await {
            Ok(info) => {
                failures = 0;
                tracing::debug!(
                    number = info.number,
                    next_update = info.next_update,
                    revoked = info.revoked,
                    "CRL refreshed"
                );
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(
                    ca = %source.describe(),
                    failures,
                    retry_in_ms = retry_after(failures, every).as_millis() as u64,
                    error = %e,
                    "CRL refresh failed; keeping the CRL in hand"
                );
            }
        }
    }
}

/// When the next fetch is due: `every`, or sooner — half the remaining life of the CRL in hand,
/// at least [`MIN_INTERVAL`] — and at once without a CRL.
fn scheduled(live: &LiveCheck, every: Duration) -> Duration {
    match live.status().crl {
        None => Duration::ZERO,
        Some(info) => {
            let left_ms = (info.next_update - unix_now()).max(0) as u64 * 1000;
            every.min(Duration::from_millis(left_ms / 2).max(MIN_INTERVAL))
        }
    }
}

/// Backoff after `failures` failures in a row: 1 s, 2 s, 4 s … up to `every` and one minute.
fn retry_after(failures: u32, every: Duration) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    (MIN_INTERVAL * (1u32 << exp)).min(every.min(MAX_RETRY).max(MIN_INTERVAL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_up_to_the_period() {
        let every = Duration::from_secs(10);
        let waits: Vec<u64> = (1..7).map(|f| retry_after(f, every).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(
            retry_after(30, Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
    }
}
