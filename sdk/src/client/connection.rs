//! One signalling connection: mutual TLS, `hello`/`welcome`, a writer task and a reader task that
//! matches answers to requests, answers pings and forwards events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_rustls::client::TlsStream;

use super::conference::{ConferenceRouter, Routed};
use super::media::CallRouter;
use super::receipts::{Job, ReceiptDesk, Reply};
use super::{ClientEvent, ClientOptions};
use crate::pki::LiveCheck;
use crate::proto::frame::{self, read_frame, write_frame};
use crate::proto::signal::{
    CallState, ClientMessage, Event, Request, Response, ServerMessage, PROTOCOL_VERSION,
};
use crate::tls;
use crate::util::unix_now_ms as now_ms;
use crate::{Error, Result};

/// How long connecting, the TLS handshake and the `welcome` may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames queued for sending before requests are refused.
const OUTBOUND_QUEUE: usize = 256;
/// How long closing our side of a finished connection may take.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the server said in `welcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The server's name.
    pub server: String,
    /// Our authenticated id.
    pub user: String,
    /// Whether we are a registered user.
    pub registered: bool,
    /// The terms-of-use version `register` must accept.
    pub terms_version: String,
    /// The server's keepalive period, seconds.
    pub keepalive_secs: u64,
}

type Pending = Mutex<HashMap<u64, oneshot::Sender<Result<Response>>>>;

/// What a connection shares with the client that owns it.
#[derive(Clone)]
pub(super) struct Links {
    /// Events for the application.
    pub events: mpsc::Sender<ClientEvent>,
    /// The calls' media.
    pub router: Arc<CallRouter>,
    /// The conferences.
    pub conferences: Arc<ConferenceRouter>,
    /// The client's one live certificate check.
    pub check: LiveCheck,
    /// What the client saw, for judging receipt requests.
    pub receipts: Arc<ReceiptDesk>,
}

pub(super) struct Connection {
    target: String,
    out: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    /// The callee of each `req_connect` waiting for its answer, by request id.
    placing: Mutex<HashMap<u64, String>>,
    next_id: AtomicU64,
    alive: AtomicBool,
    /// Whether the server said reconnecting cannot help.
    final_close: AtomicBool,
    closed: watch::Sender<Option<String>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Our end's IP address on this connection.
    local_ip: Option<std::net::IpAddr>,
}

/// The frame length a reply starting `HTTP` reads as: what an HTTPS server such as the CA sends.
const HTTP_AS_LENGTH: usize = u32::from_be_bytes(*b"HTTP") as usize;

impl Reply for Connection {
    fn send_unanswered(&self, request: Request) {
        Connection::send_unanswered(self, request)
    }
}

impl Connection {
    pub(super) async fn open(
        options: &ClientOptions,
        links: &Links,
    ) -> Result<(Arc<Self>, Welcome)> {
        let target = options.server.clone();
        let fail = |message: String| Error::Connection {
            target: target.clone(),
            message,
        };
        let name = options.expected_server_name();
        if let Some(stale) = links.check.stale(crate::util::unix_now()) {
            links.check.wake();
            return Err(Error::Certificate(stale));
        }
        let config =
            tls::client_config(links.check.shared(), Some(options.identity.certified_key()))?;
        let server_name = ServerName::try_from(name.clone())
            .map_err(|e| Error::InvalidArgument(format!("server name {name:?}: {e}")))?;
        let opening = async {
            let tcp = TcpStream::connect(&options.server)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            let local_ip = tcp.local_addr().ok().map(|a| a.ip());
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(server_name, tcp)
                .await
                .map_err(|e| fail(format!("TLS handshake: {}", crate::https::describe_tls(&e))))?;
            let (mut reader, mut writer) = tokio::io::split(tls);
            let hello = frame::encode(&ClientMessage::Hello {
                protocol: PROTOCOL_VERSION,
                agent: format!("vcsdk/{}", crate::VERSION),
            })?;
            write_frame(&mut writer, &hello)
                .await
                .map_err(|e| fail(format!("sending hello: {}", crate::https::describe_tls(&e))))?;
            let mut buf = Vec::new();
            match read_frame(&mut reader, &mut buf).await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(fail("the server closed the connection during hello".into()))
                }
                Err(frame::FrameError::Io(e)) => {
                    return Err(fail(format!(
                        "during hello: {}",
                        crate::https::describe_tls(&e)
                    )))
                }
                Err(frame::FrameError::TooLarge(len)) if len == HTTP_AS_LENGTH => {
                    return Err(fail(
                        "the server answered in HTTP: is this the CA's address? --server takes vc-server's HOST:PORT (vc-server serve prints it)".into(),
                    ))
                }
                Err(e) => return Err(fail(e.to_string())),
            }
            let welcome = match serde_json::from_slice::<ServerMessage>(&buf) {
                Ok(ServerMessage::Welcome {
                    protocol,
                    server,
                    user,
                    registered,
                    terms_version,
                    keepalive_secs,
                }) if protocol == PROTOCOL_VERSION => Welcome {
                    server,
                    user,
                    registered,
                    terms_version,
                    keepalive_secs,
                },
                Ok(ServerMessage::Error { code, message, .. }) => {
                    return Err(Error::ServerRefused { code, message })
                }
                Ok(other) => {
                    return Err(Error::Protocol(format!("expected welcome, got {other:?}")))
                }
                Err(e) => {
                    return Err(Error::Protocol(format!(
                        "the server's welcome is malformed: {e}"
                    )))
                }
            };
            Ok((reader, writer, welcome, local_ip))
        };
        let (reader, writer, welcome, local_ip) = tokio::time::timeout(OPEN_TIMEOUT, opening)
            .await
            .map_err(|_| fail(format!("no welcome within {} s", OPEN_TIMEOUT.as_secs())))??;

        let (out, out_rx) = mpsc::channel(OUTBOUND_QUEUE);
        let (closed, _) = watch::channel(None);
        let connection = Arc::new(Connection {
            target: options.server.clone(),
            out,
            pending: Mutex::new(HashMap::new()),
            placing: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            alive: AtomicBool::new(true),
            final_close: AtomicBool::new(false),
            closed,
            tasks: Mutex::new(Vec::new()),
            local_ip,
        });
        let idle = Duration::from_secs(welcome.keepalive_secs.max(1) * 3 + 2);
        let writer_task = tokio::spawn(write_loop(writer, out_rx, connection.clone()));
        let reader_task = tokio::spawn(read_loop(reader, connection.clone(), links.clone(), idle));
        connection
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend([writer_task, reader_task]);
        Ok((connection, welcome))
    }

    /// Our end's IP address on this connection.
    pub(super) fn local_ip(&self) -> Option<std::net::IpAddr> {
        self.local_ip
    }

    pub(super) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Sends a request and waits for its answer.
    pub(super) async fn request(&self, request: Request, timeout: Duration) -> Result<Response> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let callee = match &request {
            Request::ReqConnect { dst, .. } => Some(dst.clone()),
            _ => None,
        };
        let frame = frame::encode(&ClientMessage::Request { id, request })?;
        let (tx, rx) = oneshot::channel();
        if let Some(callee) = callee {
            self.placing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, callee);
        }
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        if self.out.try_send(frame).is_err() {
            self.forget(id);
            return Err(self.lost("the connection is closed or its send queue is full"));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.lost("the connection closed before the answer")),
            Err(_) => {
                self.forget(id);
                Err(self.lost(&format!("no answer within {} s", timeout.as_secs())))
            }
        }
    }

    fn forget(&self, id: u64) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        self.placing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Sends a request whose answer nobody waits for (it is dropped when it comes).
    pub(super) fn send_unanswered(&self, request: Request) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        match frame::encode(&ClientMessage::Request { id, request }) {
            Ok(frame) => {
                if self.out.try_send(frame).is_err() {
                    tracing::debug!("request not sent: the connection is closed or full");
                }
            }
            Err(e) => tracing::warn!("request not encoded: {e}"),
        }
    }

    /// Whether the server closed it saying reconnecting cannot help.
    pub(super) fn closed_for_good(&self) -> bool {
        self.final_close.load(Ordering::SeqCst)
    }

    /// Waits until the connection is closed; returns why.
    pub(super) async fn closed(&self) -> String {
        let mut rx = self.closed.subscribe();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return "connection dropped".into();
            }
        }
    }

    /// Closes the connection and waits until it is gone: both loops ended (our side closed
    /// cleanly when possible), the socket released. Loops that do not end in time are aborted.
    pub(super) async fn close(&self) {
        self.finish("closed at the client's request");
        let tasks: Vec<_> = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for mut task in tasks {
            if tokio::time::timeout(CLOSE_WRITE_TIMEOUT, &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
    }

    /// Closes the connection now.
    pub(super) fn shutdown(&self) {
        self.finish("closed at the client's request");
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }

    fn lost(&self, message: &str) -> Error {
        Error::Connection {
            target: self.target.clone(),
            message: message.to_owned(),
        }
    }

    /// Marks the connection dead (first reason wins) and fails every waiting request.
    fn finish(&self, reason: &str) {
        self.alive.store(false, Ordering::SeqCst);
        self.closed.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason.to_owned());
                true
            } else {
                false
            }
        });
        let pending: Vec<_> = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for (_, tx) in pending {
            let _ = tx.send(Err(self.lost(reason)));
        }
    }
}

/// Sends queued frames until the connection is finished (by either loop, a lost connection or
/// [`Connection::shutdown`]); then closes our side. It must end by itself: the connection it
/// holds keeps the queue's sender alive, so waiting for the queue to close would wait forever
/// and keep the socket open (in CLOSE-WAIT once the server closed its side).
async fn write_loop(
    mut writer: WriteHalf<TlsStream<TcpStream>>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    connection: Arc<Connection>,
) {
    let mut closed = connection.closed.subscribe();
    loop {
        let frame = tokio::select! {
            biased;
            _ = closed.wait_for(Option::is_some) => break,
            frame = rx.recv() => frame,
        };
        let Some(frame) = frame else { break };
        if let Err(e) = write_frame(&mut writer, &frame).await {
            connection.finish(&format!("sending failed: {e}"));
            break;
        }
    }
    drop(connection);
    let _ = tokio::time::timeout(
        CLOSE_WRITE_TIMEOUT,
        tokio::io::AsyncWriteExt::shutdown(&mut writer),
    )
    .await;
}

/// Records what the client sees of its calls, for judging receipt requests.
fn observe_call(receipts: &ReceiptDesk, event: &Event) {
    match event {
        Event::IncomingCall { call_id, from } => {
            receipts.observe(|g| g.call_offered(call_id, from));
        }
        Event::CallState { call_id, state, .. } => {
            let at = now_ms();
            match state {
                CallState::Accepted => receipts.observe(|g| g.call_answered(call_id, at)),
                s if s.is_final() => receipts.observe(|g| g.call_ended(call_id, at)),
                _ => {}
            }
        }
        _ => {}
    }
}

async fn read_loop(
    mut reader: ReadHalf<TlsStream<TcpStream>>,
    connection: Arc<Connection>,
    links: Links,
    idle: Duration,
) {
    let Links {
        events,
        router,
        conferences,
        receipts,
        ..
    } = links;
    let mut buf = Vec::new();
    let mut disconnect_reason: Option<String> = None;
    let mut closed = connection.closed.subscribe();
    let reason = loop {
        let read = tokio::select! {
            biased;
            // Finished elsewhere (sending failed, or shut down): stop reading too.
            _ = closed.wait_for(Option::is_some) => return,
            read = tokio::time::timeout(idle, read_frame(&mut reader, &mut buf)) => read,
        };
        let frame = match read {
            Err(_) => break format!("the server was silent for {} s", idle.as_secs()),
            Ok(Ok(true)) => &buf,
            Ok(Ok(false)) => {
                break disconnect_reason
                    .take()
                    .unwrap_or_else(|| "the server closed the connection".into())
            }
            Ok(Err(frame::FrameError::Io(e))) => {
                break disconnect_reason.take().unwrap_or_else(|| {
                    format!("connection lost: {}", crate::https::describe_tls(&e))
                })
            }
            Ok(Err(e)) => break format!("protocol error: {e}"),
        };
        let message = match serde_json::from_slice::<ServerMessage>(frame) {
            Ok(m) => m,
            Err(e) => break format!("protocol error: malformed message from the server: {e}"),
        };
        match message {
            ServerMessage::Ping { nonce } => {
                if let Ok(pong) = frame::encode(&ClientMessage::Pong { nonce }) {
                    let _ = connection.out.try_send(pong);
                }
            }
            ServerMessage::Pong { .. } | ServerMessage::Welcome { .. } => {}
            ServerMessage::Response { id, result } => {
                let callee = connection
                    .placing
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                if let Response::CallPlaced { call_id } = &result {
                    router.placing(call_id);
                    if let Some(callee) = callee {
                        receipts.observe(|g| g.call_placed(call_id, &callee));
                    }
                }
                if let Some(tx) = connection
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id)
                {
                    let _ = tx.send(Ok(result));
                }
            }
            ServerMessage::Error {
                id: Some(id),
                code,
                message,
            } => {
                connection
                    .placing
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                if let Some(tx) = connection
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id)
                {
                    let _ = tx.send(Err(Error::ServerRefused { code, message }));
                }
            }
            ServerMessage::Error {
                id: None,
                code,
                message,
            } => {
                disconnect_reason = Some(format!("{code}: {message}"));
            }
            ServerMessage::Event { event } => {
                match &event {
                    Event::Disconnect {
                        reason, is_final, ..
                    } => {
                        if *is_final {
                            connection.final_close.store(true, Ordering::SeqCst);
                        }
                        disconnect_reason = Some(reason.clone());
                    }
                    Event::ReceiptRequest {
                        call_id,
                        receipt,
                        statement,
                    } => receipts.submit(
                        Job {
                            connection: connection.clone(),
                            call_id: call_id.clone(),
                            kind: *receipt,
                            statement: statement.clone(),
                            arrived_ms: now_ms(),
                        },
                        &events,
                    ),
                    other => observe_call(&receipts, other),
                }
                let event = match conferences.route(event) {
                    Routed::Pass(event) => event,
                    Routed::Taken => continue,
                    Routed::Client(event) => {
                        if events.try_send(event).is_err() {
                            tracing::warn!("event queue full or closed; event dropped");
                        }
                        continue;
                    }
                };
                let Some(event) = router.intercept(event) else {
                    continue;
                };
                if let Some(event) = Option::<ClientEvent>::from(event) {
                    if events.try_send(event).is_err() {
                        tracing::warn!("event queue full or closed; event dropped");
                    }
                }
            }
        }
    };
    connection.finish(&reason);
}
