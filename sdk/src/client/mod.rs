//! The client of `vc-server`: an async API over the signalling protocol (mutual TLS 1.3), with an
//! event stream for incoming calls, presence and call state, and automatic reconnection with
//! backoff after a lost connection.

mod conference;
mod connection;
mod events;
mod media;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::UnixTime;
use tokio::sync::{mpsc, watch};

use crate::identity::Identity;
use crate::pki::{self, CertificateCheck, Usage, VerifiedCertificate};
use crate::proto::signal::{AccountInfo, Answer, Request, Response, UserPresence};
use crate::{Error, Result};

pub use conference::{
    Conference, ConferenceEvent, ConferenceOptions, ConferenceTimings, RosterMember,
    DEFAULT_INVITE_TTL,
};
pub use connection::Welcome;
pub use events::ClientEvent;

use connection::Connection;

/// How long a request may wait for its answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait between reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Events kept for the application before the oldest are dropped.
pub const EVENT_QUEUE: usize = 1024;

/// Where and as whom to connect.
#[derive(Clone)]
pub struct ClientOptions {
    /// `host:port` of the server.
    pub server: String,
    /// The name the server's certificate must carry (defaults to the host part of `server`).
    pub server_name: Option<String>,
    /// The identity to authenticate with.
    pub identity: Arc<Identity>,
    /// The check for the server's and peers' certificates (pinned root, CRL).
    pub check: CertificateCheck,
    /// Reconnect after a lost connection (default on).
    pub reconnect: bool,
}

impl ClientOptions {
    /// Options for `server` as `identity`, checking certificates with `check`.
    pub fn new(
        server: impl Into<String>,
        identity: Arc<Identity>,
        check: CertificateCheck,
    ) -> Self {
        ClientOptions {
            server: server.into(),
            server_name: None,
            identity,
            check,
            reconnect: true,
        }
    }
}

/// A connected client. Cloning shares the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    options: ClientOptions,
    current: watch::Sender<Option<Arc<Connection>>>,
    events: mpsc::Sender<ClientEvent>,
    wants_presence: AtomicBool,
    closed: AtomicBool,
    welcome: Mutex<Welcome>,
    supervisor: Mutex<Option<tokio::task::JoinHandle<()>>>,
    router: Arc<media::CallRouter>,
    conferences: Arc<conference::ConferenceRouter>,
    decliner: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Client {
    /// Connects (mutual TLS, `hello`) and returns the client and its event stream. Later losses of
    /// the connection are repaired in the background, with exponential backoff up to
    /// [`MAX_BACKOFF`], and reported as [`ClientEvent::Disconnected`] / [`ClientEvent::Reconnected`].
    pub async fn connect(options: ClientOptions) -> Result<(Client, mpsc::Receiver<ClientEvent>)> {
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let router = Arc::new(media::CallRouter::default());
        let (declines_tx, declines_rx) = mpsc::unbounded_channel();
        let conferences = Arc::new(conference::ConferenceRouter::new(
            options.identity.clone(),
            options.check.clone(),
            connection::server_name(&options),
            declines_tx,
        ));
        let (connection, welcome) = Connection::open(
            &options,
            events_tx.clone(),
            router.clone(),
            conferences.clone(),
        )
        .await?;
        let (current, _) = watch::channel(Some(connection.clone()));
        let inner = Arc::new(Inner {
            options,
            current,
            events: events_tx,
            wants_presence: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            welcome: Mutex::new(welcome),
            supervisor: Mutex::new(None),
            router,
            conferences,
            decliner: Mutex::new(None),
        });
        let supervisor = tokio::spawn(supervise(Arc::downgrade(&inner), connection));
        *inner.supervisor.lock().unwrap_or_else(|p| p.into_inner()) = Some(supervisor);
        let decliner = tokio::spawn(conference::decline_refused(
            Arc::downgrade(&inner),
            declines_rx,
        ));
        *inner.decliner.lock().unwrap_or_else(|p| p.into_inner()) = Some(decliner);
        Ok((Client { inner }, events_rx))
    }

    /// What the server said when the (latest) connection was made.
    pub fn welcome(&self) -> Welcome {
        self.inner
            .welcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The authenticated id.
    pub fn user(&self) -> &str {
        self.inner.options.identity.id()
    }

    /// Whether a connection is up now.
    pub fn is_connected(&self) -> bool {
        self.inner
            .current
            .borrow()
            .as_ref()
            .is_some_and(|c| c.is_alive())
    }

    async fn request(&self, request: Request) -> Result<Response> {
        let connection = self.inner.current.borrow().clone();
        let connection = connection
            .filter(|c| c.is_alive())
            .ok_or_else(|| Error::Connection {
                target: self.inner.options.server.clone(),
                message: "not connected (reconnecting)".into(),
            })?;
        connection.request(request, REQUEST_TIMEOUT).await
    }

    /// getServerCert: the server's certificate, checked against the pinned root and the server name.
    pub async fn server_certificate(&self) -> Result<VerifiedCertificate> {
        match self.request(Request::GetServerCert).await? {
            Response::ServerCert { certificate_pem } => {
                let cert = pki::pem::certificate(certificate_pem.as_bytes(), "server certificate")?;
                Ok(self.inner.options.check.verify(
                    &[cert],
                    Usage::Server,
                    Some(&self.server_name()),
                    UnixTime::now(),
                )?)
            }
            other => Err(unexpected(other)),
        }
    }

    /// registerNewUser: accepts the terms of use of `terms_version` (the server's current one, see
    /// [`Client::welcome`]) and registers.
    pub async fn register(&self, terms_version: &str) -> Result<i64> {
        match self
            .request(Request::Register {
                terms_version: terms_version.to_owned(),
            })
            .await?
        {
            Response::Registered { registered_at, .. } => {
                self.inner
                    .welcome
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .registered = true;
                Ok(registered_at)
            }
            other => Err(unexpected(other)),
        }
    }

    /// unregister.
    pub async fn unregister(&self) -> Result<()> {
        self.expect_ok(Request::Unregister).await?;
        self.inner
            .welcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .registered = false;
        Ok(())
    }

    /// getActiveUsers: every registered user online now, by id (fetched page by page).
    pub async fn active_users(&self) -> Result<Vec<UserPresence>> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            match self
                .request(Request::GetActiveUsers { after, limit: None })
                .await?
            {
                Response::ActiveUsers { users, next } => {
                    all.extend(users);
                    match next {
                        Some(n) => after = Some(n),
                        None => return Ok(all),
                    }
                }
                other => return Err(unexpected(other)),
            }
        }
    }

    /// Receive [`ClientEvent::Presence`] from now on (kept across reconnections).
    pub async fn subscribe_presence(&self) -> Result<()> {
        self.inner.wants_presence.store(true, Ordering::SeqCst);
        self.expect_ok(Request::SubscribePresence).await
    }

    /// getPeerCert: `user`'s certificate, verified against the pinned root and the CRL, and
    /// checked to name `user`.
    pub async fn peer_certificate(&self, user: &str) -> Result<VerifiedCertificate> {
        self.checked_peer_certificate(user).await.map(|(v, _)| v)
    }

    /// `user`'s certificate (DER), after the same check as [`Client::peer_certificate`].
    pub(crate) async fn verified_peer_certificate_der(&self, user: &str) -> Result<Vec<u8>> {
        self.checked_peer_certificate(user)
            .await
            .map(|(_, der)| der)
    }

    async fn checked_peer_certificate(&self, user: &str) -> Result<(VerifiedCertificate, Vec<u8>)> {
        match self
            .request(Request::GetPeerCert {
                user: user.to_owned(),
            })
            .await?
        {
            Response::PeerCert {
                certificate_pem, ..
            } => {
                let cert = pki::pem::certificate(certificate_pem.as_bytes(), "peer certificate")?;
                let verified = self.inner.options.check.verify(
                    std::slice::from_ref(&cert),
                    Usage::Client,
                    Some(user),
                    UnixTime::now(),
                )?;
                Ok((verified, cert.to_vec()))
            }
            other => Err(unexpected(other)),
        }
    }

    /// reqConnect: calls `user`; returns the call id. The outcome arrives as
    /// [`ClientEvent::CallState`].
    pub async fn call(&self, user: &str) -> Result<String> {
        match self
            .request(Request::ReqConnect {
                src: self.user().to_owned(),
                dst: user.to_owned(),
            })
            .await?
        {
            Response::CallPlaced { call_id } => {
                self.inner.router.placed(&call_id, user);
                Ok(call_id)
            }
            other => Err(unexpected(other)),
        }
    }

    /// acceptConnect / declineConnect: answers an incoming call.
    pub async fn answer(&self, call_id: &str, answer: Answer) -> Result<()> {
        if answer == Answer::Accept {
            // Ready for the caller's handshake before the server tells the caller.
            self.inner.router.accepted(call_id);
        }
        self.expect_ok(Request::Answer {
            call_id: call_id.to_owned(),
            answer,
        })
        .await
    }

    /// establishSession: sends an opaque end-to-end message to the other party of the call.
    pub async fn send_session_message(&self, call_id: &str, payload: &str) -> Result<()> {
        self.expect_ok(Request::EstablishSession {
            call_id: call_id.to_owned(),
            payload: payload.to_owned(),
        })
        .await
    }

    /// terminateSession: hangs up (or cancels) a call.
    pub async fn terminate(&self, call_id: &str, reason: Option<&str>) -> Result<()> {
        self.expect_ok(Request::TerminateSession {
            call_id: call_id.to_owned(),
            reason: reason.map(str::to_owned),
        })
        .await
    }

    /// getAccountInfo.
    pub async fn account_info(&self) -> Result<AccountInfo> {
        match self.request(Request::GetAccountInfo).await? {
            Response::Account(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    /// addCredit with a voucher code.
    pub async fn add_credit(&self, voucher: &str) -> Result<AccountInfo> {
        match self
            .request(Request::AddCredit {
                voucher: voucher.to_owned(),
            })
            .await?
        {
            Response::Account(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    /// Every call record of this user with its receipts, newest first (fetched page by page).
    pub async fn call_records(&self) -> Result<Vec<crate::billing::CallRecord>> {
        let mut all = Vec::new();
        let mut before = None;
        loop {
            match self
                .request(Request::GetCallRecords {
                    before,
                    limit: None,
                })
                .await?
            {
                Response::CallRecords { records, next } => {
                    all.extend(records);
                    match next {
                        Some(n) => before = Some(n),
                        None => return Ok(all),
                    }
                }
                other => return Err(unexpected(other)),
            }
        }
    }

    /// updateCert: the URL of the CA to renew with.
    pub async fn renewal_url(&self) -> Result<String> {
        match self.request(Request::UpdateCert).await? {
            Response::RenewAt { ca_url } => Ok(ca_url),
            other => Err(unexpected(other)),
        }
    }

    /// closeConnection: says goodbye, closes the connection and stops reconnecting. When it
    /// returns the socket is closed and the client's background tasks have ended.
    pub async fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::SeqCst);
        // The connection the goodbye goes on: once the server closes it, the supervisor clears
        // `current`, and it must still be closed here.
        let connection = self.inner.current.borrow().clone();
        let result = self.expect_ok(Request::CloseConnection).await;
        let latest = self.inner.current.borrow().clone();
        for c in [connection, latest].into_iter().flatten() {
            c.close().await;
        }
        for slot in [&self.inner.supervisor, &self.inner.decliner] {
            let task = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(task) = task {
                task.abort();
                let _ = task.await;
            }
        }
        result
    }

    async fn expect_ok(&self, request: Request) -> Result<()> {
        match self.request(request).await? {
            Response::Ok => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Our IP address on the current signalling connection.
    fn local_ip(&self) -> Result<std::net::IpAddr> {
        self.inner
            .current
            .borrow()
            .as_ref()
            .and_then(|c| c.local_ip())
            .ok_or_else(|| Error::Connection {
                target: self.inner.options.server.clone(),
                message: "not connected (reconnecting)".into(),
            })
    }

    fn server_name(&self) -> String {
        connection::server_name(&self.inner.options)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for slot in [&self.supervisor, &self.decliner] {
            if let Some(task) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
                task.abort();
            }
        }
        if let Some(c) = self.current.borrow().clone() {
            c.shutdown();
        }
    }
}

fn unexpected(response: Response) -> Error {
    Error::Protocol(format!("unexpected answer from the server: {response:?}"))
}

/// Watches the connection; when it is lost, reconnects with backoff unless the client was closed
/// or the server refused us for good.
async fn supervise(inner: std::sync::Weak<Inner>, mut connection: Arc<Connection>) {
    loop {
        let reason = connection.closed().await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        strong.current.send_replace(None);
        strong.conferences.lost(&reason);
        let _ = strong.events.try_send(ClientEvent::Disconnected {
            reason: reason.clone(),
        });
        if strong.closed.load(Ordering::SeqCst) || !strong.options.reconnect || is_final(&reason) {
            return;
        }
        drop(strong);
        let mut backoff = Duration::from_millis(250);
        loop {
            tokio::time::sleep(jitter(backoff)).await;
            let Some(strong) = inner.upgrade() else {
                return;
            };
            if strong.closed.load(Ordering::SeqCst) {
                return;
            }
            match Connection::open(
                &strong.options,
                strong.events.clone(),
                strong.router.clone(),
                strong.conferences.clone(),
            )
            .await
            {
                Ok((fresh, _)) if strong.closed.load(Ordering::SeqCst) => {
                    // Closed while this connection was being made: not kept.
                    fresh.shutdown();
                    return;
                }
                Ok((fresh, welcome)) => {
                    *strong.welcome.lock().unwrap_or_else(|p| p.into_inner()) = welcome;
                    strong.current.send_replace(Some(fresh.clone()));
                    if strong.wants_presence.load(Ordering::SeqCst) {
                        let _ = fresh
                            .request(Request::SubscribePresence, REQUEST_TIMEOUT)
                            .await;
                    }
                    let _ = strong.events.try_send(ClientEvent::Reconnected);
                    connection = fresh;
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, backoff_ms = backoff.as_millis() as u64, "reconnection failed");
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Disconnect reasons after which reconnecting cannot help.
fn is_final(reason: &str) -> bool {
    reason.contains("certificate revoked")
        || reason.contains("replaced by a new connection")
        || reason.contains("closed at the client's request")
}

fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 1];
    let _ = aws_lc_rs::rand::fill(&mut b);
    d + d * u32::from(b[0]) / 1024
}
