//! `vc call` is safe to script: inputs are checked before anything rings or is charged, each
//! outcome has its own exit code, and SIGTERM hangs up like Ctrl-C. Real `vc`, `vc-server` and
//! `vc-ca` processes.

use std::time::Duration;

use vcsdk::client::ClientEvent;
use vcsdk::proto::signal::{Answer, CallState};
use vcsdk_tests::{enroll, online, run, Connected, Process, TestCa, TestServer};

const WAIT: Duration = Duration::from_secs(20);

fn call_args(server: &TestServer, dir: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["call".into(), "bob".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend([
        "--server".into(),
        server.addr(),
        "--server-name".into(),
        "localhost".into(),
        "--identity-dir".into(),
        dir.to_str().unwrap().into(),
    ]);
    args
}

/// Answers bob's next incoming call with `answer`; `None`: lets it ring.
async fn answer_next(bob: &mut Connected, answer: Option<Answer>) -> String {
    let call = tokio::time::timeout(WAIT, async {
        loop {
            match bob.1.recv().await {
                Some(ClientEvent::IncomingCall { call_id, .. }) => break call_id,
                Some(_) => {}
                None => panic!("bob's events closed"),
            }
        }
    })
    .await
    .expect("the call rings");
    if let Some(answer) = answer {
        bob.0.answer(&call, answer).await.unwrap();
    }
    call
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_call_outcome_has_its_exit_code_and_sigterm_hangs_up() {
    let ca = TestCa::start(&[]);
    let server = TestServer::start(&ca, &["ring_timeout_secs = 2"]);
    let home = tempfile::tempdir().unwrap();
    let alice_dir = home.path().join("alice");
    let alice_store = enroll(&ca, home.path(), "alice").await;
    drop(online(&server, &ca, &alice_store).await);
    let mut bob = online(&server, &ca, &enroll(&ca, home.path(), "bob").await).await;
    server.cli(&["credit", "add", "--user", "alice", "--amount", "10"]);

    // A file that cannot be sent: refused before anything rings or is recorded.
    let missing = home.path().join("missing.bin");
    let args = call_args(&server, &alice_dir, &["--send", missing.to_str().unwrap()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run("vc", &args);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.bin"));
    let rang = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let Some(ClientEvent::IncomingCall { .. }) = bob.1.recv().await {
                break;
            }
        }
    })
    .await;
    assert!(rang.is_err(), "a call rang although its file is missing");
    assert_eq!(
        server
            .cli(&["cdr", "list", "--user", "alice"])
            .lines()
            .count(),
        1,
        "a call was recorded although its file is missing"
    );

    // Declined, busy and unanswered calls each end with their own code.
    for (answer, code, said) in [
        (Some(Answer::Decline), 5, "declined"),
        (Some(Answer::Busy), 6, "busy"),
        (None, 7, "no answer"),
    ] {
        let args = call_args(&server, &alice_dir, &[]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut caller = Process::spawn("vc", &args, &[]);
        answer_next(&mut bob, answer).await;
        let status = caller.wait_exit(WAIT).expect("vc call ends");
        assert_eq!(status.code(), Some(code), "{said}: {}", caller.log());
        assert!(caller.log().contains(said), "{}", caller.log());
    }

    // SIGTERM during an answered call hangs up: bob sees it end, alice's call is recorded as
    // answered and ended, and vc exits 0.
    let args = call_args(&server, &alice_dir, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut caller = Process::spawn("vc", &args, &[]);
    let call = answer_next(&mut bob, Some(Answer::Accept)).await;
    assert!(caller.wait_for_log("accepted", WAIT), "{}", caller.log());
    caller.signal("TERM");
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match bob.1.recv().await {
                Some(ClientEvent::CallState { call_id, state, .. }) if call_id == call => {
                    if state == CallState::Ended {
                        break;
                    }
                }
                Some(_) => {}
                None => panic!("bob's events closed"),
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "SIGTERM did not hang up: {}", caller.log());
    let status = caller.wait_exit(WAIT).expect("vc call ends after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", caller.log());
    assert!(caller.log().contains("hanging up"), "{}", caller.log());
    let csv = server.cli(&["cdr", "list", "--user", "alice"]);
    let last = csv.lines().last().unwrap();
    assert!(last.contains(&call) && last.contains(",answered,"), "{csv}");

    // A user who is not online: refused by the server, code 4; an unreachable server: code 3.
    bob.0.close().await.unwrap();
    drop(bob);
    let args = call_args(&server, &alice_dir, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run("vc", &args);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = run(
        "vc",
        &[
            "call",
            "bob",
            "--server",
            &format!("127.0.0.1:{port}"),
            "--server-name",
            "localhost",
            "--identity-dir",
            alice_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
