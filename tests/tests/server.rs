//! The real `vc-ca` and `vc-server` processes on 127.0.0.1, with SDK clients, `vc` processes and
//! hand-driven connections: registration, presence, calls, and every refusal and misbehaviour.

use std::time::Duration;

use tokio::sync::mpsc::Receiver;
use vcsdk::client::ClientEvent;
use vcsdk::proto::signal::{Answer, CallState};
use vcsdk::Error;
use vcsdk_tests::{enroll, online, run, run_ok, TestCa, TestServer};

/// Short timers, and free calls (billing has its own tests).
const FAST: &[&str] = &[
    "keepalive_secs = 1",
    "ring_timeout_secs = 2",
    "crl_refresh_secs = 1",
    "rate_per_minute = 0",
];

/// Waits (at most `secs`) for an event `pick` accepts, skipping others.
async fn expect<T>(
    events: &mut Receiver<ClientEvent>,
    secs: u64,
    mut pick: impl FnMut(&ClientEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) => {
                if let Some(t) = pick(&event) {
                    return t;
                }
            }
            Ok(None) => panic!("event stream ended"),
            Err(_) => panic!("expected event did not arrive within {secs} s"),
        }
    }
}

fn state_of(
    call: &str,
    wanted: CallState,
) -> impl FnMut(&ClientEvent) -> Option<Option<String>> + '_ {
    move |e| match e {
        ClientEvent::CallState {
            call_id,
            state,
            reason,
        } if call_id == call && *state == wanted => Some(reason.clone()),
        _ => None,
    }
}

fn refused_code(e: Error) -> String {
    match e {
        Error::ServerRefused { code, .. } => code,
        other => panic!("expected a refusal, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clients_register_see_each_other_and_call() {
    let ca = TestCa::start(&[]);
    let server = TestServer::start(&ca, FAST);
    let home = tempfile::tempdir().unwrap();
    let alice_id = enroll(&ca, home.path(), "alice").await;
    let bob_id = enroll(&ca, home.path(), "bob").await;
    let carol_id = enroll(&ca, home.path(), "carol").await;

    let (alice, mut alice_events) = online(&server, &ca, &alice_id).await;
    alice.subscribe_presence().await.unwrap();
    let (bob, mut bob_events) = online(&server, &ca, &bob_id).await;
    expect(&mut alice_events, 5, |e| {
        (e == &ClientEvent::Presence {
            user: "bob".into(),
            online: true,
        })
            .then_some(())
    })
    .await;
    let (carol, mut carol_events) = online(&server, &ca, &carol_id).await;
    expect(&mut alice_events, 5, |e| {
        (e == &ClientEvent::Presence {
            user: "carol".into(),
            online: true,
        })
            .then_some(())
    })
    .await;
    let users: Vec<String> = alice
        .active_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.user)
        .collect();
    assert_eq!(users, ["alice", "bob", "carol"]);

    // Certificates for end-to-end checks, verified by the SDK against the root and the CRL.
    let peer = alice.peer_certificate("bob").await.unwrap();
    assert_eq!(peer.info.id, "bob");
    assert_eq!(
        refused_code(alice.peer_certificate("nobody").await.unwrap_err()),
        "unknown_user"
    );
    let server_cert = alice.server_certificate().await.unwrap();
    assert!(server_cert.info.server_auth);

    // call → accept → establish → terminate
    let call = alice.call("bob").await.unwrap();
    let from = expect(&mut bob_events, 5, |e| match e {
        ClientEvent::IncomingCall { call_id, from } if *call_id == call => Some(from.clone()),
        _ => None,
    })
    .await;
    assert_eq!(from, "alice");
    bob.answer(&call, Answer::Accept).await.unwrap();
    expect(&mut alice_events, 5, state_of(&call, CallState::Accepted)).await;
    expect(&mut bob_events, 5, state_of(&call, CallState::Accepted)).await;
    alice
        .send_session_message(&call, "offer:opaque-signed-bytes")
        .await
        .unwrap();
    let payload = expect(&mut bob_events, 5, |e| match e {
        ClientEvent::SessionMessage {
            call_id,
            from,
            payload,
        } if *call_id == call && from == "alice" => Some(payload.clone()),
        _ => None,
    })
    .await;
    assert_eq!(payload, "offer:opaque-signed-bytes");
    bob.send_session_message(&call, "answer:opaque")
        .await
        .unwrap();
    expect(&mut alice_events, 5, |e| {
        matches!(e, ClientEvent::SessionMessage { payload, .. } if payload == "answer:opaque")
            .then_some(())
    })
    .await;
    // carol is not in the call: she can neither relay into it nor end it.
    assert_eq!(
        refused_code(carol.send_session_message(&call, "x").await.unwrap_err()),
        "not_in_call"
    );
    assert_eq!(
        refused_code(carol.terminate(&call, None).await.unwrap_err()),
        "not_in_call"
    );
    alice.terminate(&call, None).await.unwrap();
    let reason = expect(&mut bob_events, 5, state_of(&call, CallState::Ended)).await;
    assert_eq!(reason.as_deref(), Some("alice hung up"));

    // call → decline
    let call = alice.call("carol").await.unwrap();
    expect(&mut carol_events, 5, |e| {
        matches!(e, ClientEvent::IncomingCall { .. }).then_some(())
    })
    .await;
    assert_eq!(
        refused_code(bob.answer(&call, Answer::Accept).await.unwrap_err()),
        "not_offered"
    );
    carol.answer(&call, Answer::Decline).await.unwrap();
    let reason = expect(&mut alice_events, 5, state_of(&call, CallState::Declined)).await;
    assert_eq!(reason.as_deref(), Some("carol declined"));

    // call → no answer (the ring timeout is 2 s here)
    let call = alice.call("bob").await.unwrap();
    expect(&mut bob_events, 5, |e| {
        matches!(e, ClientEvent::IncomingCall { .. }).then_some(())
    })
    .await;
    expect(&mut alice_events, 10, state_of(&call, CallState::NoAnswer)).await;
    expect(&mut bob_events, 5, state_of(&call, CallState::NoAnswer)).await;
    assert_eq!(
        refused_code(bob.answer(&call, Answer::Accept).await.unwrap_err()),
        "not_offered"
    );

    // busy: bob is in a call with carol when alice calls
    let with_carol = carol.call("bob").await.unwrap();
    expect(&mut bob_events, 5, |e| {
        matches!(e, ClientEvent::IncomingCall { call_id, .. } if *call_id == with_carol)
            .then_some(())
    })
    .await;
    bob.answer(&with_carol, Answer::Accept).await.unwrap();
    let busy = alice.call("bob").await.unwrap();
    expect(&mut alice_events, 5, state_of(&busy, CallState::Busy)).await;
    // In a call, one cannot place another; a call that is over is unknown.
    assert_eq!(
        refused_code(carol.call("alice").await.unwrap_err()),
        "already_in_call"
    );
    assert_eq!(
        refused_code(alice.terminate(&busy, None).await.unwrap_err()),
        "unknown_call"
    );
    bob.terminate(&with_carol, Some("bye")).await.unwrap();
    expect(
        &mut carol_events,
        5,
        state_of(&with_carol, CallState::Ended),
    )
    .await;

    // The callee answers "busy" itself: the caller is told busy, with the reason.
    let asked = alice.call("bob").await.unwrap();
    expect(&mut bob_events, 5, |e| {
        matches!(e, ClientEvent::IncomingCall { call_id, .. } if *call_id == asked).then_some(())
    })
    .await;
    bob.answer(&asked, Answer::Busy).await.unwrap();
    let reason = expect(&mut alice_events, 5, state_of(&asked, CallState::Busy)).await;
    assert_eq!(reason.as_deref(), Some("bob is busy"));
    assert_eq!(
        refused_code(bob.answer(&asked, Answer::Accept).await.unwrap_err()),
        "not_offered"
    );

    // unregister: carol disappears from the list and cannot be called
    carol.unregister().await.unwrap();
    expect(&mut alice_events, 5, |e| {
        (e == &ClientEvent::Presence {
            user: "carol".into(),
            online: false,
        })
            .then_some(())
    })
    .await;
    let users: Vec<String> = alice
        .active_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.user)
        .collect();
    assert_eq!(users, ["alice", "bob"]);
    assert_eq!(
        refused_code(alice.call("carol").await.unwrap_err()),
        "unknown_user"
    );
    assert_eq!(
        refused_code(carol.active_users().await.unwrap_err()),
        "not_registered"
    );

    // offline user: bob leaves
    bob.close().await.unwrap();
    expect(&mut alice_events, 5, |e| {
        (e == &ClientEvent::Presence {
            user: "bob".into(),
            online: false,
        })
            .then_some(())
    })
    .await;
    assert_eq!(
        refused_code(alice.call("bob").await.unwrap_err()),
        "user_offline"
    );
    assert_eq!(
        refused_code(alice.call("alice").await.unwrap_err()),
        "self_call"
    );

    let account = alice.account_info().await.unwrap();
    assert_eq!((account.user.as_str(), account.balance), ("alice", 0));
    assert_eq!(alice.renewal_url().await.unwrap(), ca.url());

    // Everything was recorded.
    alice.close().await.unwrap();
    let calls: Vec<serde_json::Value> = server
        .cli(&["cdr", "list", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let dispositions: Vec<&str> = calls
        .iter()
        .map(|c| c["disposition"].as_str().unwrap_or("open"))
        .collect();
    for wanted in ["answered", "declined", "no_answer", "busy"] {
        assert!(dispositions.contains(&wanted), "{dispositions:?}");
    }
    let users = server.cli(&["users"]);
    assert!(
        users.contains("carol") && users.contains("unregistered"),
        "{users}"
    );
}

#[test]
fn the_vc_command_line_registers_lists_calls_and_listens() {
    let ca = TestCa::start(&[]);
    let server = TestServer::start(&ca, &["ring_timeout_secs = 3", "rate_per_minute = 0"]);
    let home = tempfile::tempdir().unwrap();
    let root = ca.root_path();
    let enroll = |id: &str| {
        let dir = home.path().join(id);
        run_ok(
            "vc",
            &[
                "enroll",
                "--ca-url",
                &ca.url(),
                "--ca-root",
                root.to_str().unwrap(),
                "--token",
                &ca.client_token(id),
                "--id",
                id,
                "--identity-dir",
                dir.to_str().unwrap(),
            ],
        );
        dir.to_str().unwrap().to_owned()
    };
    let alice = enroll("alice");
    let bob = enroll("bob");
    let addr = server.addr();
    let with = |dir: &str, args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(
            [
                "--server",
                &addr,
                "--server-name",
                "localhost",
                "--identity-dir",
                dir,
            ]
            .map(String::from),
        );
        all
    };
    let refused = run(
        "vc",
        &with(&alice, &["register"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--accept-terms"));
    for dir in [&alice, &bob] {
        let out = run_ok(
            "vc",
            &with(dir, &["register", "--accept-terms"])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        assert!(
            out.contains("registered") && out.contains("version 1"),
            "{out}"
        );
    }
    // bob listens and accepts one call; alice calls with a duration.
    let listen_args = with(&bob, &["listen", "--auto-accept", "--max-calls", "1"]);
    let listener = std::process::Command::new(vcsdk_tests::binary("vc"))
        .args(&listen_args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let users = run_ok(
            "vc",
            &with(&alice, &["users"])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        if users.contains("bob") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "bob never came online: {users}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = run_ok(
        "vc",
        &with(&alice, &["call", "bob", "--duration", "1s"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(
        out.contains("calling bob")
            && out.contains("accepted")
            && out.contains("ended (alice hung up)"),
        "{out}"
    );
    let listened = listener.wait_with_output().unwrap();
    let listened = String::from_utf8_lossy(&listened.stdout);
    assert!(
        listened.contains("incoming call from alice") && listened.contains("ended (alice hung up)"),
        "{listened}"
    );

    // Declined and no-answer outcomes, printed.
    let decline_args = with(&bob, &["listen", "--auto-decline", "--max-calls", "1"]);
    let decliner = std::process::Command::new(vcsdk_tests::binary("vc"))
        .args(&decline_args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let declined = run(
        "vc",
        &with(&alice, &["call", "bob"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let out = String::from_utf8_lossy(&declined.stdout);
    assert_eq!(declined.status.code(), Some(5), "declined exits 5: {out}");
    assert!(out.contains("declined (bob declined)"), "{out}");
    let _ = decliner.wait_with_output();
    // bob listens but never answers (it asks on a terminal nobody types into): no answer.
    let ask_args = with(&bob, &["listen", "--max-calls", "1"]);
    let mut asker = std::process::Command::new(vcsdk_tests::binary("vc"))
        .args(&ask_args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let unanswered = run(
        "vc",
        &with(&alice, &["call", "bob"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let out = String::from_utf8_lossy(&unanswered.stdout);
    assert_eq!(
        unanswered.status.code(),
        Some(7),
        "no answer exits 7: {out}"
    );
    assert!(
        out.contains("ringing") && out.contains("no answer"),
        "{out}"
    );
    let _ = asker.kill();
    let _ = asker.wait();
    let offline = run(
        "vc",
        &with(&alice, &["call", "bob"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(String::from_utf8_lossy(&offline.stderr).contains("user_offline"));
    let out = run_ok(
        "vc",
        &with(&bob, &["unregister"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(out.contains("unregistered bob"), "{out}");
    let help = run_ok("vc-server", &["--help"]);
    for word in [
        "init", "enroll", "serve", "users", "credit", "voucher", "cdr", "accounts",
    ] {
        assert!(help.contains(word), "{help}");
    }
}
