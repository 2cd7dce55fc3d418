//! One client connection: `hello` and `welcome`, then requests answered in order, keepalive pings,
//! a per-connection rate limit, and a bounded outbound queue drained by its own writer task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;
use vcsdk::billing::Money;
use vcsdk::pki::CertificateInfo;
use vcsdk::proto::frame::{self, read_frame, write_frame, FrameError};
use vcsdk::proto::signal::{
    ClientMessage, DisconnectCode, Request, Response, ServerMessage, MAX_CONF_SIGNAL,
    MAX_RECORDS_PAGE, MAX_SESSION_PAYLOAD, MAX_USERS_PAGE, OLDEST_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
};
use vcsdk::util::unix_now;

use crate::hub::{Close, Hub, Peer, Refusal};
use crate::Server;

/// How long queued frames may take to drain when a connection closes.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// A token bucket: `rate` per second, `burst` at most.
struct RateLimit {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
    strikes: u32,
}

impl RateLimit {
    fn new(rate: u32, burst: u32) -> Self {
        RateLimit {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            last: Instant::now(),
            strikes: 0,
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.strikes = 0;
            true
        } else {
            self.strikes += 1;
            false
        }
    }
}

fn encode(message: &ServerMessage) -> Option<Bytes> {
    frame::encode(message).ok().map(Bytes::from)
}

fn error(id: Option<u64>, code: &str, message: impl Into<String>) -> ServerMessage {
    ServerMessage::Error {
        id,
        code: code.to_owned(),
        message: message.into(),
    }
}

/// Serves one authenticated TLS connection until it closes.
pub async fn serve(server: Arc<Server>, tls: TlsStream<TcpStream>, addr: SocketAddr) {
    let hub = server.hub.clone();
    let cert: CertificateDer<'static> =
        match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
            Some(c) => c.clone().into_owned(),
            None => return,
        };
    let user = match CertificateInfo::parse(&cert) {
        Ok(info) if vcsdk::id::validate_id(&info.id).is_ok() => info.id,
        _ => return,
    };
    let local_ip = tls.get_ref().0.local_addr().ok().map(|a| a.ip());
    let (mut reader, mut writer) = tokio::io::split(tls);

    // hello
    let mut buf = Vec::new();
    let hello = tokio::time::timeout(
        hub.config.handshake_timeout(),
        read_frame(&mut reader, &mut buf),
    )
    .await;
    // The version this connection speaks: the client's, within what this server serves.
    let mut protocol = PROTOCOL_VERSION;
    let refusal = match hello {
        Ok(Ok(true)) => match serde_json::from_slice::<ClientMessage>(&buf) {
            Ok(ClientMessage::Hello { protocol: asked, .. })
                if (OLDEST_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&asked) =>
            {
                protocol = asked;
                None
            }
            Ok(ClientMessage::Hello { protocol, .. }) => Some(error(
                None,
                "unsupported_version",
                format!("this server speaks protocol versions {OLDEST_PROTOCOL_VERSION} to {PROTOCOL_VERSION}; the client asked for {protocol}"),
            )),
            Ok(_) => Some(error(None, "hello_required", "the first message must be hello")),
            Err(e) => Some(error(None, "malformed_message", format!("hello: {e}"))),
        },
        Ok(Err(FrameError::TooLarge(n))) => Some(error(None, "frame_too_large", format!("frame of {n} bytes exceeds {}", frame::MAX_FRAME))),
        _ => return,
    };
    if let Some(refusal) = refusal {
        if let Some(f) = encode(&refusal) {
            let _ = write_frame(&mut writer, &f).await;
        }
        let _ = writer.shutdown().await;
        return;
    }

    let registered = read_store(&hub, {
        let user = user.clone();
        move |store| store.is_registered(&user)
    })
    .await
    .unwrap_or(false);
    if registered {
        let info = CertificateInfo::parse(&cert)
            .map(|i| i.serial)
            .unwrap_or_default();
        hub.store.seen_certificate(&user, &info, &cert);
    }
    let (out, out_rx) = mpsc::channel::<Bytes>(hub.config.outbound_queue);
    let (kill, mut killed) = watch::channel(None);
    let conn_id = hub.next_conn_id();
    let welcome = ServerMessage::Welcome {
        protocol,
        server: hub.config.name.clone(),
        user: user.clone(),
        registered,
        terms_version: hub.config.terms_version.clone(),
        keepalive_secs: hub.config.keepalive_secs,
    };
    if let Some(f) = encode(&welcome) {
        let _ = out.try_send(f);
    }
    let peer_cert = cert.clone();
    let peer = Peer {
        conn_id,
        out: out.clone(),
        kill,
        cert,
        registered,
        online_since: unix_now(),
        presence: false,
        local_ip,
        protocol,
    };
    if let Err(r) = hub.attach(&user, peer) {
        if let Some(f) = encode(&error(None, r.code, r.message)) {
            let _ = write_frame(&mut writer, &f).await;
        }
        return;
    }
    tracing::debug!(%user, %addr, conn_id, "connected");
    let writer_task = tokio::spawn(write_loop(writer, out_rx));
    let pinger = tokio::spawn(ping_loop(out.clone(), hub.config.keepalive()));

    let close = read_loop(
        &server,
        &user,
        conn_id,
        &peer_cert,
        &mut reader,
        &out,
        &mut killed,
    )
    .await;
    pinger.abort();
    let reason = close.reason.clone();
    hub.detach(&user, conn_id, &reason);
    // Version 1 has neither `code` nor `final`: such a client reconnects and is refused again.
    let v2 = protocol >= 2;
    if let Some(f) = encode(&ServerMessage::Event {
        event: vcsdk::proto::signal::Event::Disconnect {
            reason: close.reason,
            code: v2.then_some(close.code),
            is_final: v2 && close.code.is_final(),
        },
    }) {
        let _ = out.try_send(f);
    }
    drop(out);
    let abort = writer_task.abort_handle();
    if tokio::time::timeout(DRAIN_TIMEOUT, writer_task)
        .await
        .is_err()
    {
        abort.abort();
    }
    tracing::debug!(%user, %addr, conn_id, %reason, "disconnected");
}

/// Most bytes read and dropped from a flooding client before its connection is closed.
const DRAIN_BYTES: usize = 4 << 20;

async fn write_loop(mut writer: WriteHalf<TlsStream<TcpStream>>, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(frame) = rx.recv().await {
        if write_frame(&mut writer, &frame).await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

async fn ping_loop(out: mpsc::Sender<Bytes>, every: Duration) {
    let mut nonce = 0u64;
    let mut interval = tokio::time::interval(every);
    interval.tick().await;
    loop {
        interval.tick().await;
        nonce += 1;
        if let Some(f) = encode(&ServerMessage::Ping { nonce }) {
            if out.try_send(f).is_err() {
                return;
            }
        }
    }
}

/// Reads and answers frames until the client leaves, misbehaves, falls silent, or is killed.
/// Returns the reason.
#[allow(clippy::too_many_arguments)]
async fn read_loop(
    server: &Arc<Server>,
    user: &str,
    conn_id: u64,
    cert: &CertificateDer<'static>,
    reader: &mut ReadHalf<TlsStream<TcpStream>>,
    out: &mpsc::Sender<Bytes>,
    killed: &mut watch::Receiver<Option<Close>>,
) -> Close {
    let hub = &server.hub;
    let idle = hub.config.keepalive() * 3;
    let mut limit = RateLimit::new(hub.config.rate_limit_per_sec, hub.config.rate_limit_burst);
    let mut buf = Vec::new();
    loop {
        let read = tokio::select! {
            _ = killed.changed() => {
                return killed
                    .borrow()
                    .clone()
                    .unwrap_or_else(|| Close::new(DisconnectCode::Other, "closed"));
            }
            read = tokio::time::timeout(idle, read_frame(reader, &mut buf)) => read,
        };
        match read {
            Err(_) => {
                return Close::new(
                    DisconnectCode::KeepaliveTimeout,
                    format!("keepalive timeout: silent for {} s", idle.as_secs()),
                )
            }
            Ok(Ok(false)) => {
                return Close::new(
                    DisconnectCode::ConnectionLost,
                    "the client closed the connection",
                )
            }
            Ok(Err(FrameError::Io(e))) => {
                return Close::new(
                    DisconnectCode::ConnectionLost,
                    format!("connection lost: {e}"),
                )
            }
            Ok(Err(e)) => {
                let code = if matches!(e, FrameError::TooLarge(_)) {
                    "frame_too_large"
                } else {
                    "malformed_frame"
                };
                reply(hub, user, conn_id, out, &error(None, code, e.to_string()));
                return Close::new(DisconnectCode::BadFrame, format!("{code}: {e}"));
            }
            Ok(Ok(true)) => {}
        }
        if !limit.allow() {
            if limit.strikes > hub.config.rate_limit_burst * 4 {
                // Read (and drop) what the flooder already sent, for a bounded time, so closing
                // sends a clean FIN and the refusals already queued reach it instead of being cut
                // off by a reset.
                let drain = async {
                    let mut dropped = 0usize;
                    while dropped < DRAIN_BYTES {
                        match read_frame(reader, &mut buf).await {
                            Ok(true) => dropped += buf.len() + 4,
                            _ => break,
                        }
                    }
                };
                let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
                return Close::new(
                    DisconnectCode::Flooding,
                    "flooding: rate limit exceeded repeatedly",
                );
            }
            let id = serde_json::from_slice::<ClientMessage>(&buf)
                .ok()
                .and_then(|m| match m {
                    ClientMessage::Request { id, .. } => Some(id),
                    _ => None,
                });
            reply(
                hub,
                user,
                conn_id,
                out,
                &error(
                    id,
                    "rate_limited",
                    format!(
                        "more than {} requests per second",
                        hub.config.rate_limit_per_sec
                    ),
                ),
            );
            continue;
        }
        let message = match serde_json::from_slice::<ClientMessage>(&buf) {
            Ok(m) => m,
            Err(e) => {
                reply(
                    hub,
                    user,
                    conn_id,
                    out,
                    &error(None, "malformed_message", e.to_string()),
                );
                continue;
            }
        };
        match message {
            ClientMessage::Ping { nonce } => {
                reply(hub, user, conn_id, out, &ServerMessage::Pong { nonce })
            }
            ClientMessage::Pong { .. } => {}
            ClientMessage::Hello { .. } => reply(
                hub,
                user,
                conn_id,
                out,
                &error(None, "unexpected_hello", "hello was already received"),
            ),
            ClientMessage::Request { id, request } => {
                let close = matches!(request, Request::CloseConnection);
                let answer = match handle(server, user, conn_id, cert, request).await {
                    Ok(result) => ServerMessage::Response { id, result },
                    Err(r) => {
                        tracing::debug!(%user, code = r.code, "request refused: {}", r.message);
                        error(Some(id), r.code, r.message)
                    }
                };
                reply(hub, user, conn_id, out, &answer);
                if close {
                    return Close::new(
                        DisconnectCode::ClientRequest,
                        "closed at the client's request",
                    );
                }
            }
        }
    }
}

fn reply(hub: &Hub, user: &str, conn_id: u64, out: &mpsc::Sender<Bytes>, message: &ServerMessage) {
    if let Some(f) = encode(message) {
        if out.try_send(f).is_err() {
            hub.kill_device(
                user,
                conn_id,
                Close::new(DisconnectCode::TooSlow, "too slow: outbound queue full"),
            );
        }
    }
}

async fn handle(
    server: &Arc<Server>,
    user: &str,
    conn_id: u64,
    cert: &CertificateDer<'static>,
    request: Request,
) -> Result<Response, Refusal> {
    let hub = &server.hub;
    let registered_only = !matches!(
        request,
        Request::GetServerCert
            | Request::Register { .. }
            | Request::UpdateCert
            | Request::CloseConnection
    );
    if registered_only && !hub.is_registered(user) {
        return Err(Refusal::new(
            "not_registered",
            "register first (accept the terms of use)",
        ));
    }
    match request {
        Request::GetServerCert => Ok(Response::ServerCert {
            certificate_pem: server.certificate_pem(),
        }),
        Request::Register { terms_version } => {
            let registered_at = hub.register(user, conn_id, &terms_version).await?;
            Ok(Response::Registered {
                user: user.to_owned(),
                terms_version,
                registered_at,
            })
        }
        Request::Unregister => hub.unregister(user).await.map(|_| Response::Ok),
        Request::GetActiveUsers { after, limit } => {
            let limit = limit.unwrap_or(MAX_USERS_PAGE).clamp(1, MAX_USERS_PAGE) as usize;
            let (users, next) = hub.active_users(after.as_deref(), limit);
            Ok(Response::ActiveUsers { users, next })
        }
        Request::SubscribePresence => {
            hub.subscribe_presence(user, conn_id);
            Ok(Response::Ok)
        }
        Request::GetPeerCert { user: peer } => {
            let der = read_store(hub, {
                let peer = peer.clone();
                move |store| store.certificate(&peer)
            })
            .await?
            .ok_or_else(|| {
                Refusal::new("unknown_user", format!("{peer} is not a registered user"))
            })?;
            Ok(Response::PeerCert {
                user: peer,
                certificate_pem: vcsdk::pki::pem::encode("CERTIFICATE", &der),
            })
        }
        Request::ReqConnect { src, dst } => {
            if src != user {
                return Err(Refusal::new(
                    "forbidden_src",
                    format!("you are {user}, not {src}"),
                ));
            }
            // The payer (the caller) must afford the connect fee and the first increment.
            affordable(hub, user, "the call").await?;
            match hub.request_call(user, conn_id, &dst) {
                Ok(call_id) => Ok(Response::CallPlaced { call_id }),
                Err(r) if r.code == "user_offline" => {
                    let registered = read_store(hub, {
                        let dst = dst.clone();
                        move |store| store.is_registered(&dst)
                    })
                    .await?;
                    Err(if registered {
                        r
                    } else {
                        Refusal::new("unknown_user", format!("{dst} is not a registered user"))
                    })
                }
                Err(r) => Err(r),
            }
        }
        Request::Answer { call_id, answer } => hub
            .answer(user, conn_id, &call_id, answer)
            .map(|_| Response::Ok),
        Request::EstablishSession { call_id, payload } => {
            if payload.len() > MAX_SESSION_PAYLOAD {
                return Err(Refusal::new(
                    "payload_too_large",
                    format!("payload exceeds {MAX_SESSION_PAYLOAD} bytes"),
                ));
            }
            hub.relay(user, conn_id, &call_id, payload)
                .map(|_| Response::Ok)
        }
        Request::TerminateSession { call_id, reason } => hub
            .terminate(user, conn_id, &call_id, reason)
            .map(|_| Response::Ok),
        Request::CloseConnection => Ok(Response::Ok),
        Request::GetAccountInfo => account_info(hub, user).await,
        Request::AddCredit { voucher } => {
            hub.store
                .redeem_voucher(user, &voucher)
                .await
                .map_err(|e| Refusal::new(e.code, e.message))?;
            account_info(hub, user).await
        }
        Request::GetCallRecords { before, limit } => {
            let limit = limit.unwrap_or(MAX_RECORDS_PAGE).clamp(1, MAX_RECORDS_PAGE) as usize;
            hub.store.flush().await;
            let mut records = read_store(hub, {
                let user = user.to_owned();
                move |store| store.call_records(Some(&user), before.as_deref(), limit + 1, true)
            })
            .await?;
            let next = (records.len() > limit).then(|| {
                let last = &records[limit - 1];
                format!("{}/{}", last.requested_at_ms, last.call_id)
            });
            records.truncate(limit);
            Ok(Response::CallRecords { records, next })
        }
        Request::SignReceipt {
            call_id,
            kind,
            signature_hex,
        } => sign_receipt(hub, user, cert, &call_id, kind, &signature_hex)
            .await
            .map(|_| Response::Ok),
        Request::UpdateCert => Ok(Response::RenewAt {
            ca_url: server.ca_url.clone(),
        }),
        Request::ConfPost { conf, entry } => {
            let pays = match entry.open().map(|o| o.content.body) {
                Ok(vcsdk::conference::Body::Create { .. }) => true,
                Ok(vcsdk::conference::Body::Join { .. }) => {
                    hub.config.billing.conference_payer == "participant"
                }
                _ => false,
            };
            if pays {
                affordable(hub, user, "joining the conference").await?;
            }
            let seq = hub.conf_post(user, conn_id, &conf, entry)?;
            Ok(Response::ConfPosted { conf, seq })
        }
        Request::ConfWraps { conf, epoch, wraps } => hub
            .conf_wraps(user, conn_id, &conf, epoch, wraps)
            .map(|_| Response::Ok),
        Request::ConfLog { conf, after } => {
            let (entries, next) = hub.conf_log(user, conn_id, &conf, after)?;
            Ok(Response::ConfLog {
                conf,
                entries,
                next,
            })
        }
        Request::ConfSignal { conf, to, payload } => {
            if payload.len() > MAX_CONF_SIGNAL {
                return Err(Refusal::new(
                    "payload_too_large",
                    format!("payload exceeds {MAX_CONF_SIGNAL} bytes"),
                ));
            }
            hub.conf_signal(user, conn_id, &conf, to, payload)
                .map(|_| Response::Ok)
        }
    }
}

/// Refuses with `insufficient_credit` unless `user` can afford the connect fee and the first
/// increment (for `what`).
async fn affordable(hub: &Hub, user: &str, what: &str) -> Result<(), Refusal> {
    let needed = hub.config.billing.tariff.cost(1);
    let account = read_store(hub, {
        let user = user.to_owned();
        move |store| store.user(&user)
    })
    .await?
    .ok_or_else(|| Refusal::new("not_registered", "no account"))?;
    if account.available() < needed {
        return Err(Refusal::new(
            "insufficient_credit",
            format!(
                "{what} needs {} (connect fee and first increment); you have {} available",
                Money::new(needed, &hub.config.billing.tariff.currency),
                Money::new(account.available(), &hub.config.billing.tariff.currency)
            ),
        ));
    }
    Ok(())
}

/// The account, tariff and recent calls of `user`.
async fn account_info(hub: &Hub, user: &str) -> Result<Response, Refusal> {
    // What the user reads back includes every write made before (a call that just ended shows
    // its charge).
    hub.store.flush().await;
    let (record, recent) = read_store(hub, {
        let user = user.to_owned();
        move |store| {
            Ok((
                store.user(&user)?,
                store.call_records(Some(&user), None, 5, false)?,
            ))
        }
    })
    .await?;
    let record = record.ok_or_else(|| Refusal::new("not_registered", "no account"))?;
    let tariff = hub.config.billing.tariff.clone();
    Ok(Response::Account(vcsdk::proto::signal::AccountInfo {
        user: record.id,
        registered_at: record.registered_at,
        terms_version: record.terms_version,
        account_type: record.account_type,
        balance: record.balance,
        credit_limit: record.credit_limit,
        currency: tariff.currency.clone(),
        tariff,
        recent_calls: recent,
    }))
}

/// Checks a party's signature over the receipt statement of its call (built here from the
/// recorded times) with the certificate it is connected with, and stores it.
async fn sign_receipt(
    hub: &Hub,
    user: &str,
    cert: &CertificateDer<'static>,
    call_id: &str,
    kind: vcsdk::billing::ReceiptKind,
    signature_hex: &str,
) -> Result<(), Refusal> {
    let signature = vcsdk::util::unhex(signature_hex)
        .ok_or_else(|| Refusal::new("bad_receipt", "signature is not hex"))?;
    // The end time is written when the call ends; make sure that write is in.
    hub.store.flush().await;
    let times = read_store(hub, {
        let call_id = call_id.to_owned();
        move |store| store.call_times(&call_id)
    })
    .await?
    .ok_or_else(|| Refusal::new("unknown_call", format!("no call {call_id}")))?;
    let crate::store::CallTimes {
        caller,
        callee,
        answered_at_ms: answered,
        ended_at_ms: ended,
    } = times;
    if user != caller && user != callee {
        return Err(Refusal::new(
            "not_in_call",
            format!("you are not a party of call {call_id}"),
        ));
    }
    let at = match kind {
        vcsdk::billing::ReceiptKind::Answer => answered,
        vcsdk::billing::ReceiptKind::End => ended,
    }
    .ok_or_else(|| {
        Refusal::new(
            "bad_receipt",
            format!("call {call_id} has no {} time yet", kind.as_str()),
        )
    })?;
    let statement = vcsdk::billing::receipt_statement(kind, call_id, &caller, &callee, at);
    let info = CertificateInfo::parse(cert).map_err(|e| Refusal::new("internal", e.to_string()))?;
    if !vcsdk::billing::verify_receipt(&info.public_key, &statement, &signature) {
        return Err(Refusal::new(
            "bad_receipt",
            "the signature does not verify with your certificate over this call's statement",
        ));
    }
    hub.store
        .store_receipt(call_id, kind, user, &statement, &signature, cert)
        .await
        .map_err(|e| Refusal::new(e.code, e.message))
}

/// Runs a database read off the async threads.
async fn read_store<T: Send + 'static>(
    hub: &Hub,
    read: impl FnOnce(&crate::store::Store) -> Result<T, String> + Send + 'static,
) -> Result<T, Refusal> {
    let store = hub.store.clone();
    tokio::task::spawn_blocking(move || read(&store))
        .await
        .map_err(|e| Refusal::new("internal", e.to_string()))?
        .map_err(|e| Refusal::new("internal", e))
}
