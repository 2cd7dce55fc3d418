//! Limits of `vc-server` attacked through the real process: one address holding every connection
//! slot, stalled handshakes and hellos, call attempts that each leave a record, registrations
//! that each leave a row, a session message that would not fit once encoded, and a database
//! written by a newer server.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use vcsdk::proto::frame::{encoded_len, MAX_FRAME};
use vcsdk::proto::signal::{ClientMessage, Event, Request, ServerMessage};
use vcsdk_tests::conference::World;
use vcsdk_tests::{run, RawClient, TestServer};

/// Opens a TCP connection to `server` from the loopback address `from` (all of 127.0.0.0/8 is
/// this machine).
async fn connect_from(from: [u8; 4], server: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind a loopback source");
    socket.connect(server).await.expect("tcp connect")
}

/// Whether the server closes `stream` within `within` (EOF or reset).
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    let read = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    read.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_address_cannot_hold_the_slots_everyone_else_needs() {
    let w = World::new(&[
        "max_connections = 40",
        "max_connections_per_address = 8",
        "handshake_timeout_secs = 60",
    ]);
    let server: SocketAddr = w.server.addr().parse().unwrap();
    // 40 connections from 127.0.0.2 that never start TLS: as many as the server serves at once.
    let mut attackers = Vec::new();
    for _ in 0..40 {
        attackers.push(connect_from([127, 0, 0, 2], server).await);
    }
    let mut closed = 0;
    for a in &mut attackers {
        if closed_within(a, Duration::from_millis(300)).await {
            closed += 1;
        }
    }
    assert!(closed >= 32, "only {closed} of 40 closed at once");
    // While the attacker holds its share (its handshakes may stall a minute), another address is
    // served at once.
    let alice = tokio::time::timeout(Duration::from_secs(20), w.user("alice"))
        .await
        .expect("a legitimate client gets through during the flood");
    assert!(alice.0.active_users().await.is_ok());
    let log = w.server.process.log();
    assert!(
        log.contains("connections refused: their address holds its share"),
        "{log}"
    );
    drop(attackers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_handshake_or_hello_is_closed_at_its_time_limit() {
    let w = World::new(&["handshake_timeout_secs = 1"]);
    let server: SocketAddr = w.server.addr().parse().unwrap();
    // No TLS at all.
    let mut silent = connect_from([127, 0, 0, 1], server).await;
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
    // Half a TLS ClientHello.
    let mut half = connect_from([127, 0, 0, 1], server).await;
    use tokio::io::AsyncWriteExt;
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    assert!(closed_within(&mut half, Duration::from_secs(5)).await);
    // TLS done, then no hello.
    let store = vcsdk_tests::enroll(&w.ca, w.home.path(), "mallory").await;
    let identity = store.load().unwrap();
    let mut raw = RawClient::connect(
        &w.server.addr(),
        &w.ca.root_pem(),
        Some(identity.certified_key()),
    )
    .await
    .expect("tls");
    let started = std::time::Instant::now();
    assert!(
        raw.recv().await.is_err(),
        "the server closes a silent client"
    );
    assert!(started.elapsed() < Duration::from_secs(9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn call_attempts_are_limited_per_user_whatever_the_connection() {
    let w = World::new(&["call_attempts_per_minute = 5"]);
    let alice = w.user("alice").await;
    let bob = w.user("bob").await;
    let mut placed = 0;
    let mut refused = None;
    for _ in 0..8 {
        match alice.0.call("bob").await {
            Ok(call) => {
                placed += 1;
                alice.0.terminate(&call, None).await.unwrap();
            }
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert_eq!(placed, 5);
    match refused {
        Some(vcsdk::Error::ServerRefused { code, message }) => {
            assert_eq!(code, "rate_limited");
            assert!(message.contains("calls a minute"), "{message}");
        }
        other => panic!("expected rate_limited, got {other:?}"),
    }
    // A second connection of alice's does not get a fresh allowance.
    alice.0.close().await.unwrap();
    let store = vcsdk::identity::IdentityStore::new(w.home.path().join("alice"));
    let again = vcsdk_tests::online(&w.server, &w.ca, &store).await;
    assert!(matches!(
        again.0.call("bob").await,
        Err(vcsdk::Error::ServerRefused { code, .. }) if code == "rate_limited"
    ));
    let json = w.server.cli(&["cdr", "list", "--format", "json"]);
    let records = json.lines().filter(|l| l.contains("\"alice\"")).count();
    assert_eq!(records, 5, "{json}");
    drop(bob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registering_again_and_again_records_one_acceptance() {
    let w = World::new(&[]);
    let alice = w.user("alice").await;
    for _ in 0..20 {
        alice.0.register("1").await.expect("register");
    }
    let store = vcserver::store::Store::open(&w.server.data_dir()).unwrap();
    let acceptances = store.terms_acceptances("alice").unwrap();
    assert_eq!(acceptances.len(), 1, "{acceptances:?}");
    // Coming back after unregistering is news, and is recorded.
    alice.0.unregister().await.unwrap();
    alice.0.register("1").await.unwrap();
    assert_eq!(store.terms_acceptances("alice").unwrap().len(), 2);
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relayed_message_that_would_not_fit_once_encoded_is_refused() {
    let w = World::new(&[]);
    // A long sender id: the message the server delivers names the sender, the request does not.
    let sender = format!("alice{}", "x".repeat(50));
    let alice = w.user(&sender).await;
    let mut bob = w.user("bob").await;
    let call = alice.0.call("bob").await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), bob.1.recv()).await {
            Ok(Some(vcsdk::client::ClientEvent::IncomingCall { call_id, .. })) => {
                bob.0
                    .answer(&call_id, vcsdk::proto::signal::Answer::Accept)
                    .await
                    .unwrap();
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("no incoming call: {other:?}"),
        }
    }
    // Control characters grow sixfold when encoded: the largest payload whose request still
    // fits a frame, while the message the server would deliver (it adds the sender) does not.
    let request = |payload: &str| {
        encoded_len(&ClientMessage::Request {
            id: 99,
            request: Request::EstablishSession {
                call_id: call.clone(),
                payload: payload.to_owned(),
            },
        })
    };
    let delivered = |payload: &str| {
        encoded_len(&ServerMessage::Event {
            event: Event::SessionMessage {
                call_id: call.clone(),
                from: sender.clone(),
                payload: payload.to_owned(),
            },
        })
    };
    let mut payload = String::new();
    while request(&format!("{payload}\u{1}")) <= MAX_FRAME - 16 {
        payload.push('\u{1}');
    }
    while delivered(&payload) <= MAX_FRAME {
        payload.push('a');
    }
    assert!(
        request(&payload) <= MAX_FRAME - 8,
        "the attack's request fits a frame"
    );
    match alice.0.send_session_message(&call, &payload).await {
        Err(vcsdk::Error::ServerRefused { code, .. }) => assert_eq!(code, "too_large"),
        other => panic!("expected too_large, got {other:?}"),
    }
    // The call and the connection carry on.
    alice.0.send_session_message(&call, "hello").await.unwrap();
}

#[test]
fn a_database_of_a_newer_server_is_refused_and_left_as_it_is() {
    let ca = vcsdk_tests::TestCa::start(&[]);
    let server = TestServer::start(&ca, &[]);
    let dir = server.data_dir();
    let mut process = server.process;
    assert!(process.terminate());
    let db = dir.join("server.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let out = run(
        "vc-server",
        &["accounts", "--data-dir", dir.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("newer than this vc-server"), "{stderr}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 99, "the newer schema's version was rewritten");
}
