//! The server's receipt requests (`receipt_request`), judged by a [`ReceiptGuard`] against what
//! this client saw itself before anything is signed. A request that describes a call or
//! conference participation of ours, at the moments we saw, is signed and answered with
//! `sign_receipt`; any other is refused: nothing is sent (the server records the receipt as
//! missing, and a charge without the payer's receipts cannot be proven), and the application is
//! told with [`ClientEvent::ReceiptRefused`].
//!
//! Requests are handled one at a time, in the order they arrived. One about a conference whose
//! entries are still being verified here waits for them, at most [`OBSERVATION_WAIT`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};

use super::ClientEvent;
use crate::billing::{ReceiptGuard, ReceiptKind, Verdict};
use crate::identity::Identity;
use crate::proto::signal::Request;

/// Receipt requests waiting to be judged; more are refused at once.
const QUEUE: usize = 64;
/// How long a request about a conference may wait for the entries it depends on.
pub const OBSERVATION_WAIT: Duration = Duration::from_secs(3);
/// Refusals reported in a burst; then [`REPORTS_PER_SEC`].
const REPORT_BURST: f64 = 20.0;
/// Refusals reported per second, sustained (the rest are counted and dropped).
const REPORTS_PER_SEC: f64 = 5.0;

/// Where a receipt's signature goes back: the connection the request came on.
pub(super) trait Reply: Send + Sync {
    /// Sends `request`, expecting no answer.
    fn send_unanswered(&self, request: Request);
}

/// One receipt request, as it arrived.
pub(super) struct Job {
    /// The connection it came on (the signature goes back on it).
    pub connection: Arc<dyn Reply>,
    pub call_id: String,
    pub kind: ReceiptKind,
    pub statement: String,
    /// When it arrived, Unix ms.
    pub arrived_ms: i64,
}

struct Budget {
    tokens: f64,
    at: Instant,
    dropped: u64,
}

/// The client's receipt desk: what it saw, and the queue of requests.
pub(super) struct ReceiptDesk {
    guard: Mutex<ReceiptGuard>,
    seen: Notify,
    jobs: mpsc::Sender<Job>,
    budget: Mutex<Budget>,
}

impl ReceiptDesk {
    /// A desk for client `me` with `tolerance`; the receiver goes to [`serve`].
    pub(super) fn new(me: &str, tolerance: Duration) -> (Arc<Self>, mpsc::Receiver<Job>) {
        let (jobs, rx) = mpsc::channel(QUEUE);
        let desk = ReceiptDesk {
            guard: Mutex::new(ReceiptGuard::new(me, tolerance)),
            seen: Notify::new(),
            jobs,
            budget: Mutex::new(Budget {
                tokens: REPORT_BURST,
                at: Instant::now(),
                dropped: 0,
            }),
        };
        (Arc::new(desk), rx)
    }

    /// Records something this client saw.
    pub(super) fn observe(&self, record: impl FnOnce(&mut ReceiptGuard)) {
        record(&mut self.guard.lock().unwrap_or_else(|p| p.into_inner()));
        self.seen.notify_waiters();
    }

    /// Queues a request; refuses it at once when too many wait.
    pub(super) fn submit(&self, job: Job, events: &mpsc::Sender<ClientEvent>) {
        if let Err(mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) =
            self.jobs.try_send(job)
        {
            self.report(
                events,
                &job,
                format!("more than {QUEUE} receipt requests are waiting"),
            );
        }
    }

    fn judge(&self, job: &Job) -> Verdict {
        self.guard.lock().unwrap_or_else(|p| p.into_inner()).judge(
            job.kind,
            &job.call_id,
            &job.statement,
            job.arrived_ms,
        )
    }

    /// Logs and reports a refusal, within the report budget.
    fn report(&self, events: &mpsc::Sender<ClientEvent>, job: &Job, reason: String) {
        {
            let mut b = self.budget.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * REPORTS_PER_SEC)
                .min(REPORT_BURST);
            b.at = now;
            if b.tokens < 1.0 {
                b.dropped += 1;
                return;
            }
            b.tokens -= 1.0;
            if b.dropped > 0 {
                tracing::warn!(
                    dropped = b.dropped,
                    "receipt refusals not reported (too many)"
                );
                b.dropped = 0;
            }
        }
        tracing::warn!(
            call_id = %job.call_id.chars().take(80).collect::<String>(),
            kind = job.kind.as_str(),
            %reason,
            "receipt request refused: not signed"
        );
        let event = ClientEvent::ReceiptRefused {
            call_id: job.call_id.clone(),
            kind: job.kind,
            statement: job.statement.clone(),
            reason,
        };
        if events.try_send(event).is_err() {
            tracing::warn!("event queue full or closed; event dropped");
        }
    }
}

/// Judges the queued requests in order; signs or refuses each.
pub(super) async fn serve(
    desk: Arc<ReceiptDesk>,
    mut jobs: mpsc::Receiver<Job>,
    identity: Arc<Identity>,
    events: mpsc::Sender<ClientEvent>,
) {
    while let Some(job) = jobs.recv().await {
        let deadline = tokio::time::Instant::now() + OBSERVATION_WAIT;
        let verdict = loop {
            let notified = desk.seen.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let verdict = desk.judge(&job);
            match verdict {
                Verdict::Unseen(why) => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        break Verdict::Refuse(why);
                    }
                }
                other => break other,
            }
        };
        match verdict {
            Verdict::Sign => match identity.sign(job.statement.as_bytes()) {
                Ok(signature) => job.connection.send_unanswered(Request::SignReceipt {
                    call_id: job.call_id.clone(),
                    kind: job.kind,
                    signature_hex: crate::util::hex(&signature),
                }),
                Err(e) => desk.report(&events, &job, format!("signing failed: {e}")),
            },
            Verdict::Refuse(reason) | Verdict::Unseen(reason) => desk.report(&events, &job, reason),
        }
    }
}
