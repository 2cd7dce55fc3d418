//! A dishonest conferencing server for attack tests: a small mutual-TLS server on 127.0.0.1 that
//! speaks the signalling protocol with the SDK's own types, presents a server certificate
//! enrolled from the real `vc-ca`, answers what a client asks (placing calls, sequencing its
//! conference entries as they are), records every request, and sends whatever the test injects.
// Shared by several test crates, each using part of it.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio_rustls::server::TlsStream;
use vcsdk::conference::entry::Sequenced;
use vcsdk::proto::frame::{encode, read_frame, write_frame};
use vcsdk::proto::signal::{
    ClientMessage, Event, Request, Response, ServerMessage, PROTOCOL_VERSION,
};
use vcsdk_tests::TestCa;

/// Unix ms now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// What the dishonest server saw and did.
#[derive(Default)]
pub struct Log {
    /// Every request the client sent, in order.
    pub requests: Vec<Request>,
    /// Every entry it sequenced: (conference, sequenced entry).
    pub sequenced: Vec<(String, Sequenced)>,
}

/// The listening dishonest server.
pub struct Dishonest {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

/// One client's session with the dishonest server.
pub struct Session {
    inject: mpsc::UnboundedSender<ServerMessage>,
    log: Arc<Mutex<Log>>,
    changed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Dishonest {
    /// Enrolls a server identity for `localhost` with `ca` (into `home/dishonest`) and listens.
    pub async fn start(ca: &TestCa, home: &Path) -> Dishonest {
        let store = vcsdk::identity::IdentityStore::new(home.join("dishonest"));
        let token = ca
            .cli(&["token", "create", "--server", "localhost"])
            .trim()
            .to_owned();
        let identity = store
            .enroll(
                &ca.url(),
                &ca.root_pem(),
                &token,
                vcsdk::pki::CsrSubject::Server(vec!["localhost".into()]),
            )
            .await
            .expect("server enrollment");
        let check = vcsdk::pki::CertificateCheck::from_root_pem(&ca.root_pem()).unwrap();
        let verifier = vcsdk::tls::PkiClientVerifier::mandatory(
            Arc::new(RwLock::new(check)),
            vec![vcsdk::pki::Usage::Client],
        );
        let config = vcsdk::tls::server_config(identity.certified_key(), verifier).unwrap();
        Dishonest {
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.listener.local_addr().unwrap().to_string()
    }

    /// Accepts one client (TLS, `hello`, `welcome` as a registered `user`) and serves it.
    pub async fn accept(&self, user: &str) -> Session {
        let (tcp, _) = tokio::time::timeout(Duration::from_secs(10), self.listener.accept())
            .await
            .expect("no client came")
            .unwrap();
        let tls = self.acceptor.accept(tcp).await.expect("TLS");
        let (mut reader, mut writer) = tokio::io::split(tls);
        let mut buf = Vec::new();
        assert!(read_frame(&mut reader, &mut buf).await.unwrap());
        assert!(matches!(
            serde_json::from_slice::<ClientMessage>(&buf).unwrap(),
            ClientMessage::Hello { .. }
        ));
        let welcome = ServerMessage::Welcome {
            protocol: PROTOCOL_VERSION,
            server: "dishonest".into(),
            user: user.into(),
            registered: true,
            terms_version: "1".into(),
            keepalive_secs: 30,
        };
        write_frame(&mut writer, &encode(&welcome).unwrap())
            .await
            .unwrap();
        let (inject, injected) = mpsc::unbounded_channel();
        let log = Arc::new(Mutex::new(Log::default()));
        let changed = Arc::new(Notify::new());
        let task = tokio::spawn(serve(
            reader,
            writer,
            injected,
            log.clone(),
            changed.clone(),
        ));
        Session {
            inject,
            log,
            changed,
            task,
        }
    }
}

impl Session {
    /// Sends `message` to the client.
    pub fn send(&self, message: ServerMessage) {
        self.inject.send(message).unwrap();
    }

    /// Sends an event to the client.
    pub fn event(&self, event: Event) {
        self.send(ServerMessage::Event { event });
    }

    /// A copy of what was seen so far.
    pub fn with_log<T>(&self, f: impl FnOnce(&Log) -> T) -> T {
        f(&self.log.lock().unwrap())
    }

    /// Waits (at most `secs`) until `pick` finds something in the log.
    pub async fn wait_for<T>(&self, secs: u64, mut pick: impl FnMut(&Log) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(t) = self.with_log(&mut pick) {
                return t;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("the dishonest server did not see what was expected within {secs} s");
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut reader: ReadHalf<TlsStream<TcpStream>>,
    mut writer: WriteHalf<TlsStream<TcpStream>>,
    mut injected: mpsc::UnboundedReceiver<ServerMessage>,
    log: Arc<Mutex<Log>>,
    changed: Arc<Notify>,
) {
    let (out, mut out_rx) = mpsc::unbounded_channel::<ServerMessage>();
    let writer_task = tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                m = out_rx.recv() => m,
                m = injected.recv() => m,
            };
            let Some(message) = message else { return };
            if write_frame(&mut writer, &encode(&message).unwrap())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut buf = Vec::new();
    let mut calls = 0u32;
    while let Ok(true) = read_frame(&mut reader, &mut buf).await {
        let Ok(ClientMessage::Request { id, request }) = serde_json::from_slice(&buf) else {
            continue;
        };
        let answer = match &request {
            Request::ReqConnect { .. } => {
                calls += 1;
                Response::CallPlaced {
                    call_id: format!("dishonest-call-{calls}"),
                }
            }
            Request::ConfPost { conf, entry } => {
                // Sequenced as it is: the client's own rules check it.
                let mut l = log.lock().unwrap();
                let seq = l.sequenced.iter().filter(|(c, _)| c == conf).count() as u64;
                let s = Sequenced {
                    seq,
                    at_ms: now_ms(),
                    entry: entry.clone(),
                };
                l.sequenced.push((conf.clone(), s.clone()));
                let _ = out.send(ServerMessage::Response {
                    id,
                    result: Response::ConfPosted {
                        conf: conf.clone(),
                        seq,
                    },
                });
                let _ = out.send(ServerMessage::Event {
                    event: Event::ConfEntries {
                        conf: conf.clone(),
                        entries: vec![s],
                    },
                });
                l.requests.push(request.clone());
                drop(l);
                changed.notify_waiters();
                continue;
            }
            _ => Response::Ok,
        };
        let _ = out.send(ServerMessage::Response { id, result: answer });
        log.lock().unwrap().requests.push(request);
        changed.notify_waiters();
    }
    writer_task.abort();
}
