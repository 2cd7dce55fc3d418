//! The client of `vc-server`: an async API over the signalling protocol (mutual TLS 1.3), with an
//! event stream for incoming calls, presence and call state, and automatic reconnection with
//! backoff after a lost connection.
//!
//! Each client has one live certificate check ([`LiveCheck`]) for everything it checks — the
//! server's certificate at every (re)connection, peers' certificates in call handshakes,
//! conference entries and invitations — whose CRL is refreshed from the CA in the background
//! ([`ClientOptions::crl_source`]). It signs a billing receipt only for a call or conference
//! participation it took part in, at the moments it saw ([`ClientOptions::receipt_tolerance`]);
//! it refuses any other and reports it ([`ClientEvent::ReceiptRefused`]).

mod conference;
mod connection;
mod crl;
mod events;
mod media;
mod receipts;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::UnixTime;
use tokio::sync::{mpsc, watch};

use crate::identity::Identity;
use crate::pki::{self, CertificateCheck, CrlStatus, LiveCheck, Usage, VerifiedCertificate};
use crate::proto::signal::{AccountInfo, Answer, Request, Response, UserPresence};
use crate::{Error, Result};

pub use crate::billing::DEFAULT_RECEIPT_TOLERANCE;
pub use conference::{
    Conference, ConferenceEvent, ConferenceOptions, ConferenceTimings, RosterMember,
    DEFAULT_INVITE_TTL,
};
pub use connection::Welcome;
pub use crl::{CrlSource, DEFAULT_CRL_REFRESH};
pub use events::ClientEvent;
pub use receipts::OBSERVATION_WAIT;

use connection::{Connection, Links};
use receipts::ReceiptDesk;

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
    /// The check for the server's and peers' certificates (pinned root, CRL) to start with; the
    /// client keeps its CRL fresh from [`ClientOptions::crl_source`].
    pub check: CertificateCheck,
    /// Reconnect after a lost connection (default on).
    pub reconnect: bool,
    /// Where the CRL is refreshed from (normally [`CrlSource::Store`] of the identity, whose CA
    /// it was enrolled with). Without one the CRL in `check` is never refreshed, and once it is
    /// past its nextUpdate every certificate check fails ("stale CRL").
    pub crl_source: Option<CrlSource>,
    /// Longest time between CRL refreshes (default [`DEFAULT_CRL_REFRESH`]); the client also
    /// refreshes before half the remaining life of the CRL in hand has passed.
    pub crl_refresh: Duration,
    /// How far a receipt's moment may be from the moment this client saw (default
    /// [`DEFAULT_RECEIPT_TOLERANCE`]): it covers network delay and the clock difference with the
    /// server.
    pub receipt_tolerance: Duration,
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
            crl_source: None,
            crl_refresh: DEFAULT_CRL_REFRESH,
            receipt_tolerance: DEFAULT_RECEIPT_TOLERANCE,
        }
    }

    /// Refreshes the CRL from `source` (see [`ClientOptions::crl_source`]).
    pub fn with_crl_source(mut self, source: CrlSource) -> Self {
        self.crl_source = Some(source);
        self
    }

    /// The name the server's certificate must carry: `server_name`, else the host of `server`.
    pub fn expected_server_name(&self) -> String {
        self.server_name.clone().unwrap_or_else(|| {
            let host = self
                .server
                .rsplit_once(':')
                .map_or(self.server.as_str(), |(h, _)| h);
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        })
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
    /// Set before `Disconnected { reconnecting: false }` is sent: no connection will follow.
    ended: AtomicBool,
    welcome: Mutex<Welcome>,
    supervisor: Mutex<Option<tokio::task::JoinHandle<()>>>,
    router: Arc<media::CallRouter>,
    conferences: Arc<conference::ConferenceRouter>,
    decliner: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The one live certificate check.
    check: LiveCheck,
    receipts: Arc<ReceiptDesk>,
    /// The CRL refresher and the receipt desk's worker.
    helpers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Inner {
    fn links(&self) -> Links {
        Links {
            events: self.events.clone(),
            router: self.router.clone(),
            conferences: self.conferences.clone(),
            check: self.check.clone(),
            receipts: self.receipts.clone(),
        }
    }
}

impl Client {
    /// Connects (mutual TLS, `hello`) and returns the client and its event stream. Later losses of
    /// the connection are repaired in the background, with exponential backoff up to
    /// [`MAX_BACKOFF`], and reported as [`ClientEvent::Disconnected`] (`reconnecting: true`) /
    /// [`ClientEvent::Reconnected`]. A connection that ends for good — the server says so (a
    /// revoked certificate), or refuses the reconnection for good (`too_many_devices`,
    /// `unsupported_version`) — is reported once as [`ClientEvent::Disconnected`] with
    /// `reconnecting: false`, and the client stops.
    ///
    /// Each client is one *device* of its user: other clients with the same identity may be
    /// connected at the same time (up to the server's `max_devices_per_user`; one more is refused
    /// with `too_many_devices`). Calls ring on every device, and the one that answers first takes
    /// the call (the others get [`crate::proto::signal::CallState::AnsweredElsewhere`]); a
    /// conference belongs to the device that created or joined it.
    pub async fn connect(options: ClientOptions) -> Result<(Client, mpsc::Receiver<ClientEvent>)> {
        check_server_address(&options.server)?;
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let router = Arc::new(media::CallRouter::default());
        let (declines_tx, declines_rx) = mpsc::unbounded_channel();
        let check = LiveCheck::new(options.check.clone());
        if let Some(source) = &options.crl_source {
            // Without a usable CRL in hand, fetch one before connecting (best effort: the
            // refresher keeps trying).
            let now = crate::util::unix_now();
            if !check.snapshot().has_crl() || check.stale(now).is_some() {
                if let Err(e) = crl::refresh_once(&check, source).await {
                    tracing::warn!(error = %e, "CRL not fetched before connecting");
                }
            }
        }
        let conferences = Arc::new(conference::ConferenceRouter::new(
            options.identity.clone(),
            check.clone(),
            options.expected_server_name(),
            declines_tx,
        ));
        let (receipts, receipt_jobs) =
            ReceiptDesk::new(options.identity.id(), options.receipt_tolerance);
        let links = Links {
            events: events_tx.clone(),
            router: router.clone(),
            conferences: conferences.clone(),
            check: check.clone(),
            receipts: receipts.clone(),
        };
        let (connection, welcome) = Connection::open(&options, &links).await?;
        let mut helpers = vec![tokio::spawn(receipts::serve(
            receipts.clone(),
            receipt_jobs,
            options.identity.clone(),
            events_tx.clone(),
        ))];
        if let Some(source) = options.crl_source.clone() {
            helpers.push(tokio::spawn(crl::refresh(
                check.clone(),
                source,
                options.crl_refresh,
            )));
        }
        let (current, _) = watch::channel(Some(connection.clone()));
        let inner = Arc::new(Inner {
            options,
            current,
            events: events_tx,
            wants_presence: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            welcome: Mutex::new(welcome),
            supervisor: Mutex::new(None),
            router,
            conferences,
            decliner: Mutex::new(None),
            check,
            receipts,
            helpers: Mutex::new(helpers),
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

    /// The client's live certificate check (pinned root and current CRL), for checking anything
    /// else with the same CRL.
    pub fn certificate_check(&self) -> LiveCheck {
        self.inner.check.clone()
    }

    /// How the client's CRL is doing (number, nextUpdate, refresh failures).
    pub fn crl_status(&self) -> CrlStatus {
        self.inner.check.status()
    }

    /// The authenticated id.
    pub fn user(&self) -> &str {
        self.inner.options.identity.id()
    }

    /// Whether the client has stopped for good: closed by the application, or its connection
    /// ended and will not be repaired (set before `Disconnected { reconnecting: false }` is
    /// delivered, so a handler of that event already sees it).
    pub fn has_ended(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst) || self.inner.ended.load(Ordering::SeqCst)
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
                Ok(self.inner.check.verify(
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
                let verified = self.inner.check.verify(
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
            self.inner.receipts.observe(|g| g.call_accepting(call_id));
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
        self.inner.options.expected_server_name()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for slot in [&self.supervisor, &self.decliner] {
            if let Some(task) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
                task.abort();
            }
        }
        for task in self
            .helpers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
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
        let ends = strong.closed.load(Ordering::SeqCst)
            || !strong.options.reconnect
            || connection.closed_for_good();
        if ends {
            strong.ended.store(true, Ordering::SeqCst);
        }
        let _ = strong.events.try_send(ClientEvent::Disconnected {
            reason: reason.clone(),
            reconnecting: !ends,
        });
        if ends {
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
            match Connection::open(&strong.options, &strong.links()).await {
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
                Err(e) if refused_for_good(&e) => {
                    // Reconnecting cannot help: say so, once, and stop.
                    strong.ended.store(true, Ordering::SeqCst);
                    let _ = strong.events.try_send(ClientEvent::Disconnected {
                        reason: e.to_string(),
                        reconnecting: false,
                    });
                    tracing::warn!(error = %e, "reconnection refused for good");
                    return;
                }
                Err(e) => {
                    if matches!(e, Error::Certificate(_)) {
                        // A refused server certificate or a stale CRL: worth the application's log.
                        tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "reconnection failed");
                    } else {
                        tracing::debug!(error = %e, backoff_ms = backoff.as_millis() as u64, "reconnection failed");
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Refuses a server address without a port (`127.0.0.1`, `server.example`) with what to write
/// instead; `HOST:PORT` and `[IPv6]:PORT` pass.
fn check_server_address(server: &str) -> Result<()> {
    if server.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let port = server
        .rsplit_once(':')
        .filter(|(host, _)| !host.is_empty() && !host.contains(':'))
        .map(|(_, port)| port.parse::<u16>());
    match port {
        Some(Ok(_)) => Ok(()),
        Some(Err(_)) => Err(Error::InvalidArgument(format!(
            "server address {server:?}: the port must be a number from 0 to 65535"
        ))),
        None => Err(Error::InvalidArgument(format!(
            "server address {server:?} has no port: write HOST:PORT, e.g. {}:7443 (vc-server serve prints it)",
            server.trim_start_matches('[').trim_end_matches(']')
        ))),
    }
}

/// Refusals of a reconnection that another attempt cannot change: too many devices of this user
/// connected, a protocol version the server does not speak, a revoked certificate.
fn refused_for_good(error: &Error) -> bool {
    match error {
        Error::ServerRefused { code, .. } => {
            matches!(code.as_str(), "too_many_devices" | "unsupported_version")
        }
        other => other.to_string().contains("certificate revoked"),
    }
}

fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 1];
    let _ = aws_lc_rs::rand::fill(&mut b);
    d + d * u32::from(b[0]) / 1024
}
