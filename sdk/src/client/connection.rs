//! One signalling connection: mutual TLS, `hello`/`welcome`, a writer task and a reader task that
//! matches answers to requests, answers pings and forwards events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_rustls::client::TlsStream;

use super::conference::{ConferenceRouter, Routed};
use super::media::CallRouter;
use super::{ClientEvent, ClientOptions};
use crate::proto::frame::{self, read_frame, write_frame};
use crate::proto::signal::{ClientMessage, Request, Response, ServerMessage, PROTOCOL_VERSION};
use crate::tls;
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

pub(super) struct Connection {
    target: String,
    out: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    next_id: AtomicU64,
    alive: AtomicBool,
    closed: watch::Sender<Option<String>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Our end's IP address on this connection.
    local_ip: Option<std::net::IpAddr>,
}

/// The name the server's certificate must carry.
pub(super) fn server_name(options: &ClientOptions) -> String {
    options.server_name.clone().unwrap_or_else(|| {
        let host = options
            .server
            .rsplit_once(':')
            .map_or(options.server.as_str(), |(h, _)| h);
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned()
    })
}

impl Connection {
    pub(super) async fn open(
        options: &ClientOptions,
        events: mpsc::Sender<ClientEvent>,
        router: Arc<CallRouter>,
        conferences: Arc<ConferenceRouter>,
    ) -> Result<(Arc<Self>, Welcome)> {
        let target = options.server.clone();
        let fail = |message: String| Error::Connection {
            target: target.clone(),
            message,
        };
        let name = server_name(options);
        let config = tls::client_config(
            Arc::new(RwLock::new(options.check.clone())),
            Some(options.identity.certified_key()),
        )?;
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
            next_id: AtomicU64::new(1),
            alive: AtomicBool::new(true),
            closed,
            tasks: Mutex::new(Vec::new()),
            local_ip,
        });
        let idle = Duration::from_secs(welcome.keepalive_secs.max(1) * 3 + 2);
        let writer_task = tokio::spawn(write_loop(writer, out_rx, connection.clone()));
        let reader_task = tokio::spawn(read_loop(
            reader,
            connection.clone(),
            events,
            (router, conferences),
            idle,
            options.identity.clone(),
        ));
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
        let frame = frame::encode(&ClientMessage::Request { id, request })?;
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        if self.out.try_send(frame).is_err() {
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            return Err(self.lost("the connection is closed or its send queue is full"));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.lost("the connection closed before the answer")),
            Err(_) => {
                self.pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                Err(self.lost(&format!("no answer within {} s", timeout.as_secs())))
            }
        }
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

/// How far a receipt's time may be from the local clock for the SDK to sign it.
const RECEIPT_CLOCK_TOLERANCE_MS: i64 = 5 * 60 * 1000;

/// Signs a receipt statement if it is about a call of ours at a plausible time; the answer is sent
/// without waiting for the server's reply.
fn sign_receipt(
    connection: &Connection,
    identity: &crate::identity::Identity,
    call_id: &str,
    kind: crate::billing::ReceiptKind,
    statement: &str,
) {
    let lines: Vec<&str> = statement.split('\n').collect();
    let ours = lines.len() == 7
        && lines[0] == "vcsdk-call-receipt/1"
        && lines[1] == kind.as_str()
        && lines[2] == call_id
        && (lines[3] == identity.id() || lines[4] == identity.id())
        && lines[6].is_empty();
    let at_ms: i64 = lines.get(5).and_then(|t| t.parse().ok()).unwrap_or(0);
    let now_ms = crate::util::unix_now() * 1000;
    if !ours || (at_ms - now_ms).abs() > RECEIPT_CLOCK_TOLERANCE_MS {
        tracing::warn!(
            call_id,
            "refusing to sign a receipt that does not describe our call now"
        );
        return;
    }
    let Ok(signature) = identity.sign(statement.as_bytes()) else {
        return;
    };
    let id = connection.next_id.fetch_add(1, Ordering::Relaxed);
    let request = Request::SignReceipt {
        call_id: call_id.to_owned(),
        kind,
        signature_hex: crate::util::hex(&signature),
    };
    if let Ok(frame) = frame::encode(&ClientMessage::Request { id, request }) {
        let _ = connection.out.try_send(frame);
    }
}

async fn read_loop(
    mut reader: ReadHalf<TlsStream<TcpStream>>,
    connection: Arc<Connection>,
    events: mpsc::Sender<ClientEvent>,
    (router, conferences): (Arc<CallRouter>, Arc<ConferenceRouter>),
    idle: Duration,
    identity: Arc<crate::identity::Identity>,
) {
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
                if let crate::proto::signal::Response::CallPlaced { call_id } = &result {
                    router.placing(call_id);
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
                    crate::proto::signal::Event::Disconnect { reason } => {
                        disconnect_reason = Some(reason.clone())
                    }
                    crate::proto::signal::Event::ReceiptRequest {
                        call_id,
                        receipt,
                        statement,
                    } => {
                        sign_receipt(&connection, &identity, call_id, *receipt, statement);
                    }
                    _ => {}
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
