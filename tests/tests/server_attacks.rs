//! Attacks on `vc-server`: certificates it must refuse, protocol violations, floods and
//! misbehaving connections. Each is tried against the real processes and seen refused, while
//! well-behaved clients keep working.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::Receiver;
use vcsdk::client::{Client, ClientEvent, ClientOptions};
use vcsdk::identity::IdentityStore;
use vcsdk::pki::CsrSubject;
use vcsdk::proto::signal::{ClientMessage, Request, ServerMessage};
use vcsdk::Error;
use vcsdk_tests::{enroll, online, RawClient, TestCa, TestServer};

async fn connect(
    addr: &str,
    store: &IdentityStore,
    root_pem: &[u8],
) -> Result<(Client, Receiver<ClientEvent>), Error> {
    let identity = Arc::new(store.load()?);
    let check = vcsdk::pki::CertificateCheck::from_root_pem(root_pem)?;
    let mut options = ClientOptions::new(addr.to_owned(), identity, check);
    options.server_name = Some("localhost".into());
    options.reconnect = false;
    Client::connect(options).await
}

/// Connects a raw client with `store`'s identity, says hello and registers.
async fn raw_registered(server: &TestServer, ca: &TestCa, store: &IdentityStore) -> RawClient {
    let identity = store.load().unwrap();
    let mut raw = RawClient::connect(
        &server.addr(),
        &ca.root_pem(),
        Some(identity.certified_key()),
    )
    .await
    .unwrap();
    assert!(matches!(
        raw.hello().await.unwrap(),
        ServerMessage::Welcome { .. }
    ));
    raw.request(
        1,
        Request::Register {
            terms_version: "1".into(),
        },
    )
    .await
    .unwrap();
    assert!(matches!(
        raw.recv().await.unwrap(),
        ServerMessage::Response { id: 1, .. }
    ));
    raw
}

/// Reads until the connection closes; only a `disconnect` event may come first.
async fn expect_closed(raw: &mut RawClient) {
    loop {
        match raw.recv().await {
            Err(_) => return,
            Ok(ServerMessage::Event {
                event: vcsdk::proto::signal::Event::Disconnect { .. },
            }) => {}
            Ok(other) => panic!("expected the connection to close, got {other:?}"),
        }
    }
}

fn error_code(message: &ServerMessage) -> Option<&str> {
    match message {
        ServerMessage::Error { code, .. } => Some(code),
        _ => None,
    }
}

async fn presence(events: &mut Receiver<ClientEvent>, user: &str, online: bool, secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(ClientEvent::Presence { user: u, online: o })) if u == user && o == online => {
                return
            }
            Ok(Some(_)) => {}
            other => panic!("no presence {user}={online} within {secs} s: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_the_server_must_refuse_are_refused() {
    let ca = TestCa::start(&[]);
    let server = TestServer::start(&ca, &["keepalive_secs = 1", "crl_refresh_secs = 1"]);
    let home = tempfile::tempdir().unwrap();
    let root = ca.root_pem();

    // No client certificate.
    let mut raw = RawClient::connect(&server.addr(), &root, None)
        .await
        .unwrap();
    assert!(
        raw.hello().await.is_err(),
        "a client without a certificate got an answer"
    );

    // A certificate from another CA.
    let other = TestCa::start(&["--name", "Other CA"]);
    let mallory = enroll(&other, home.path(), "mallory").await;
    let err = connect(&server.addr(), &mallory, &root)
        .await
        .err()
        .expect("foreign certificate admitted");
    assert!(err.to_string().contains("UnknownCA"), "{err}");

    // A server-auth-only certificate presented by a client.
    let server_id = IdentityStore::new(home.path().join("srv"));
    let token = ca
        .cli(&["token", "create", "--server", "evil.example"])
        .trim()
        .to_owned();
    server_id
        .enroll(
            &ca.url(),
            &root,
            &token,
            CsrSubject::Server(vec!["evil.example".into()]),
        )
        .await
        .unwrap();
    let identity = server_id.load().unwrap();
    let mut raw = RawClient::connect(&server.addr(), &root, Some(identity.certified_key()))
        .await
        .unwrap();
    let err = raw.hello().await.unwrap_err();
    assert!(
        err.contains("UnsupportedCertificate") || err.contains("alert") || err.contains("closed"),
        "{err}"
    );

    // Revoked while connected: disconnected within one CRL refresh (1 s here), then refused.
    let alice = enroll(&ca, home.path(), "alice").await;
    let (client, mut events) = online(&server, &ca, &alice).await;
    let serial = alice.load().unwrap().info().serial.clone();
    ca.cli(&["revoke", "--serial", &serial, "--reason", "keyCompromise"]);
    let reason = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Some(ClientEvent::Disconnected { reason, .. }) => return reason,
                Some(_) => {}
                None => return "stream ended".into(),
            }
        }
    })
    .await
    .expect("revoked client still connected after 10 s");
    assert!(reason.contains("certificate revoked"), "{reason}");
    assert!(!client.is_connected());
    let err = connect(&server.addr(), &alice, &root)
        .await
        .err()
        .expect("revoked certificate admitted");
    assert!(err.to_string().contains("CertificateRevoked"), "{err}");

    // Someone else is still served.
    let bob = enroll(&ca, home.path(), "bob").await;
    let (bob_client, _) = online(&server, &ca, &bob).await;
    assert_eq!(bob_client.active_users().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificates_are_refused() {
    let ca = TestCa::start(&["--cert-validity", "4s"]);
    // The server's own certificate is short-lived here too; it renews itself automatically.
    let server = TestServer::start(&ca, &[]);
    let home = tempfile::tempdir().unwrap();
    let alice = enroll(&ca, home.path(), "alice").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let identity = alice.load().unwrap();
    let mut raw = RawClient::connect(
        &server.addr(),
        &ca.root_pem(),
        Some(identity.certified_key()),
    )
    .await
    .unwrap();
    let err = raw.hello().await.unwrap_err();
    assert!(
        err.contains("CertificateExpired") || err.contains("closed"),
        "{err}"
    );
    // After renewal the same user is admitted again.
    alice.renew().await.unwrap_err(); // an expired certificate cannot authorise its own renewal
    let bob = enroll(&ca, home.path(), "bob").await;
    let (client, _) = online(&server, &ca, &bob).await;
    client.active_users().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_are_refused_and_the_server_keeps_serving() {
    let ca = TestCa::start(&[]);
    let server = TestServer::start(
        &ca,
        &[
            "rate_limit_per_sec = 20",
            "rate_limit_burst = 20",
            "rate_per_minute = 0",
        ],
    );
    let home = tempfile::tempdir().unwrap();
    let mallory = enroll(&ca, home.path(), "mallory").await;
    let key = || mallory.load().unwrap().certified_key();
    let root = ca.root_pem();

    // Unknown protocol version.
    let mut raw = RawClient::connect(&server.addr(), &root, Some(key()))
        .await
        .unwrap();
    raw.send(&ClientMessage::Hello {
        protocol: 99,
        agent: "future".into(),
    })
    .await
    .unwrap();
    let answer = raw.recv().await.unwrap();
    assert_eq!(
        error_code(&answer),
        Some("unsupported_version"),
        "{answer:?}"
    );
    expect_closed(&mut raw).await;

    // A request before hello.
    let mut raw = RawClient::connect(&server.addr(), &root, Some(key()))
        .await
        .unwrap();
    raw.request(
        1,
        Request::GetActiveUsers {
            after: None,
            limit: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        error_code(&raw.recv().await.unwrap()),
        Some("hello_required")
    );
    expect_closed(&mut raw).await;

    // Not registered yet; then src naming another user; unknown callee; malformed messages.
    let mut raw = RawClient::connect(&server.addr(), &root, Some(key()))
        .await
        .unwrap();
    raw.hello().await.unwrap();
    raw.request(
        1,
        Request::GetActiveUsers {
            after: None,
            limit: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        error_code(&raw.recv().await.unwrap()),
        Some("not_registered")
    );
    raw.request(
        2,
        Request::Register {
            terms_version: "0.9".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        error_code(&raw.recv().await.unwrap()),
        Some("terms_mismatch")
    );
    raw.request(
        3,
        Request::Register {
            terms_version: "1".into(),
        },
    )
    .await
    .unwrap();
    assert!(matches!(
        raw.recv().await.unwrap(),
        ServerMessage::Response { id: 3, .. }
    ));
    raw.request(
        4,
        Request::ReqConnect {
            src: "alice".into(),
            dst: "bob".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        error_code(&raw.recv().await.unwrap()),
        Some("forbidden_src")
    );
    raw.request(
        5,
        Request::ReqConnect {
            src: "mallory".into(),
            dst: "nobody".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(error_code(&raw.recv().await.unwrap()), Some("unknown_user"));
    raw.request(
        6,
        Request::Answer {
            call_id: "feed".into(),
            answer: vcsdk::proto::signal::Answer::Accept,
        },
    )
    .await
    .unwrap();
    assert_eq!(error_code(&raw.recv().await.unwrap()), Some("not_offered"));
    for junk in [
        &b"{not json"[..],
        br#"{"type":"request","id":7,"request":{"op":"launch"}}"#,
        br#"{"type":"request","id":8,"admin":true,"request":{"op":"unregister"}}"#,
    ] {
        let mut frame = (junk.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(junk);
        raw.send_bytes(&frame).await.unwrap();
        assert_eq!(
            error_code(&raw.recv().await.unwrap()),
            Some("malformed_message")
        );
    }
    let big = "x".repeat(vcsdk::proto::signal::MAX_SESSION_PAYLOAD + 1);
    raw.request(
        9,
        Request::EstablishSession {
            call_id: "c".into(),
            payload: big,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        error_code(&raw.recv().await.unwrap()),
        Some("payload_too_large")
    );
    // An oversize frame closes the connection.
    raw.send_bytes(&(1u32 << 20).to_be_bytes()).await.unwrap();
    assert_eq!(
        error_code(&raw.recv().await.unwrap()),
        Some("frame_too_large")
    );
    expect_closed(&mut raw).await;

    // HTTP spoken to the signalling port: refused as a frame of absurd length.
    let mut raw = RawClient::connect(&server.addr(), &root, Some(key()))
        .await
        .unwrap();
    raw.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        error_code(&raw.recv().await.unwrap()),
        Some("frame_too_large")
    );
    expect_closed(&mut raw).await;

    // A flood: rate-limited, then disconnected.
    let mut raw = RawClient::connect(&server.addr(), &root, Some(key()))
        .await
        .unwrap();
    raw.hello().await.unwrap();
    for nonce in 0..400u64 {
        if raw.send(&ClientMessage::Ping { nonce }).await.is_err() {
            break;
        }
    }
    let mut limited = 0;
    let mut closed = false;
    for _ in 0..1000 {
        match raw.recv().await {
            Ok(m) if error_code(&m) == Some("rate_limited") => limited += 1,
            Ok(_) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(limited > 0, "no rate_limited errors");
    assert!(closed, "the flooding connection was not closed");
    assert!(server
        .process
        .wait_for_log("flooding", Duration::from_secs(5)));

    // Plain TCP garbage where TLS is expected.
    {
        use tokio::io::AsyncWriteExt;
        let mut tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        let _ = tcp
            .write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3, 4, 5])
            .await;
        let _ = tcp.write_all(&[0u8; 4096]).await;
    }

    // After all that, a well-behaved client is served.
    let alice = enroll(&ca, home.path(), "alice").await;
    let (client, _) = online(&server, &ca, &alice).await;
    let users: Vec<String> = client
        .active_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.user)
        .collect();
    assert!(users.contains(&"alice".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_clients_do_not_hold_up_the_others() {
    let ca = TestCa::start(&[]);
    let server = TestServer::start(
        &ca,
        &[
            "keepalive_secs = 1",
            "outbound_queue = 16",
            "rate_limit_per_sec = 100000",
            "rate_limit_burst = 100000",
        ],
    );
    let home = tempfile::tempdir().unwrap();
    let alice = enroll(&ca, home.path(), "alice").await;
    let (observer, mut events) = online(&server, &ca, &alice).await;
    observer.subscribe_presence().await.unwrap();

    // Half-open: registers, then neither reads nor answers pings.
    let ghost = enroll(&ca, home.path(), "ghost").await;
    let ghost_conn = raw_registered(&server, &ca, &ghost).await;
    presence(&mut events, "ghost", true, 5).await;
    let started = std::time::Instant::now();
    presence(&mut events, "ghost", false, 10).await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "dead connection found after {:?}",
        started.elapsed()
    );
    drop(ghost_conn);

    // Slow reader: asks for a lot and never reads the answers.
    let slow = enroll(&ca, home.path(), "slow").await;
    let mut slow_conn = raw_registered(&server, &ca, &slow).await;
    presence(&mut events, "slow", true, 5).await;
    let writer = tokio::spawn(async move {
        for id in 10..20_000u64 {
            if slow_conn.request(id, Request::GetServerCert).await.is_err() {
                break;
            }
        }
        slow_conn
    });
    // Meanwhile the observer is answered promptly.
    for _ in 0..20 {
        tokio::time::timeout(Duration::from_secs(2), observer.active_users())
            .await
            .expect("observer held up")
            .unwrap();
    }
    presence(&mut events, "slow", false, 20).await;
    let _ = tokio::time::timeout(Duration::from_secs(20), writer).await;
    assert!(
        server
            .process
            .wait_for_log("too slow", Duration::from_secs(5)),
        "the slow reader was not dropped as too slow"
    );
    observer.active_users().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_calls_and_records_them() {
    let ca = TestCa::start(&[]);
    let mut server = TestServer::start(&ca, &["rate_per_minute = 0"]);
    let home = tempfile::tempdir().unwrap();
    let alice = enroll(&ca, home.path(), "alice").await;
    let bob = enroll(&ca, home.path(), "bob").await;
    let (a, mut a_events) = online(&server, &ca, &alice).await;
    let (b, mut b_events) = online(&server, &ca, &bob).await;
    let call = a.call("bob").await.unwrap();
    loop {
        if let Some(ClientEvent::IncomingCall { .. }) = b_events.recv().await {
            break;
        }
    }
    b.answer(&call, vcsdk::proto::signal::Answer::Accept)
        .await
        .unwrap();
    assert!(
        server.process.terminate(),
        "vc-server did not exit on SIGTERM"
    );
    let mut ended = false;
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(5), a_events.recv()).await
    {
        if let ClientEvent::CallState {
            state: vcsdk::proto::signal::CallState::Ended,
            reason,
            ..
        } = &event
        {
            assert_eq!(reason.as_deref(), Some("server shutdown"));
            ended = true;
            break;
        }
    }
    assert!(ended, "alice was not told the call ended");
    let calls: Vec<serde_json::Value> = server
        .cli(&["cdr", "list", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let record = calls
        .iter()
        .find(|c| c["call_id"] == call.as_str())
        .expect("call recorded");
    assert_eq!(record["end_reason"], "server shutdown");
    assert_eq!(record["disposition"], "answered");
    assert!(record["ended_at_ms"].as_i64().unwrap() >= record["answered_at_ms"].as_i64().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reconnect_after_losing_the_server() {
    let ca = TestCa::start(&[]);
    let mut server = TestServer::start(&ca, &["keepalive_secs = 1"]);
    let home = tempfile::tempdir().unwrap();
    let alice = enroll(&ca, home.path(), "alice").await;
    let identity = Arc::new(alice.load().unwrap());
    let mut options =
        ClientOptions::new(server.addr(), identity, alice.refresh_crl().await.unwrap());
    options.server_name = Some("localhost".into());
    let (client, mut events) = Client::connect(options).await.unwrap();
    client
        .register(&client.welcome().terms_version)
        .await
        .unwrap();
    client.subscribe_presence().await.unwrap();
    let addr = server.addr();
    server.process.kill();
    let data = server.data_dir();
    server.process = TestServer::serve(data.to_str().unwrap(), &addr);
    let mut saw_disconnect = false;
    let reconnected = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events.recv().await {
                Some(ClientEvent::Disconnected { .. }) => saw_disconnect = true,
                Some(ClientEvent::Reconnected) => return true,
                Some(_) => {}
                None => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(saw_disconnect && reconnected, "no reconnection");
    assert!(client.welcome().registered);
    let users = client.active_users().await.unwrap();
    assert_eq!(users.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_refreshes_the_crl_at_once() {
    let ca = TestCa::start(&[]);
    // The scheduled refresh is an hour away: only the signal can bring the new CRL in time.
    let server = TestServer::start(&ca, &["crl_refresh_secs = 3600"]);
    let home = tempfile::tempdir().unwrap();
    let alice = enroll(&ca, home.path(), "alice").await;
    let (_client, mut events) = online(&server, &ca, &alice).await;
    let serial = alice.load().unwrap().info().serial.clone();
    ca.cli(&["revoke", "--serial", &serial]);
    server.process.signal("HUP");
    let reason = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(ClientEvent::Disconnected { reason, .. }) = events.recv().await {
                return reason;
            }
        }
    })
    .await
    .expect("not disconnected after SIGHUP");
    assert!(reason.contains("certificate revoked"), "{reason}");
}
