//! The `vc` CLI with several devices of one identity, against the real `vc-ca` and `vc-server`:
//! `vc listen` stays online while another `vc` command runs with the same identity directory,
//! and `vc listen` / a `vc conf` session exit non-zero, saying why, when their connection ends for
//! good.

use std::time::Duration;

use vcsdk::client::ClientEvent;
use vcsdk::proto::signal::CallState;
use vcsdk_tests::conference::{World, WAIT};
use vcsdk_tests::{enroll, online, run, Process};

fn dir_of(w: &World, id: &str) -> String {
    w.home.path().join(id).to_str().unwrap().to_owned()
}

/// `vc ARGS --server … --server-name localhost --identity-dir HOME/id`.
fn vc_args(w: &World, id: &str, args: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(
        [
            "--server",
            &w.server.addr(),
            "--server-name",
            "localhost",
            "--identity-dir",
            &dir_of(w, id),
        ]
        .map(String::from),
    );
    all
}

fn spawn_vc(w: &World, id: &str, args: &[&str]) -> Process {
    let all = vc_args(w, id, args);
    Process::spawn(
        "vc",
        &all.iter().map(String::as_str).collect::<Vec<_>>(),
        &[("RUST_LOG", "warn")],
    )
}

/// Enrolls and registers `id` (its SDK connection then leaves).
async fn registered(w: &World, id: &str) -> vcsdk::identity::IdentityStore {
    let store = enroll(&w.ca, w.home.path(), id).await;
    drop(online(&w.server, &w.ca, &store).await);
    store
}

/// Waits until `watcher` sees `user` online (bounded).
async fn until_online(watcher: &vcsdk::client::Client, user: &str) {
    for _ in 0..200 {
        let users = watcher.active_users().await.unwrap();
        if users.iter().any(|u| u.user == user) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{user} did not come online");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vc_listen_stays_online_while_vc_account_runs_with_the_same_identity() {
    let w = World::new(&["keepalive_secs = 1"]);
    let mut alice = w.user("alice").await;
    registered(&w, "bob").await;
    // The command of the report: a listener, then another command with the same identity.
    let mut listener = spawn_vc(&w, "bob", &["listen", "--auto-accept"]);
    assert!(
        listener.wait_for_log("listening as bob", WAIT),
        "{}",
        listener.log()
    );
    until_online(&alice.0, "bob").await;
    let args = vc_args(&w, "bob", &["account"]);
    let out = tokio::task::spawn_blocking(move || {
        run("vc", &args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("user:     bob"), "{printed}");

    // Well after `vc account` left, the listener was never disconnected, and still answers.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(listener.wait_exit(Duration::from_millis(10)).is_none());
    let log = listener.log();
    assert!(
        !log.contains("disconnected") && !log.contains("reconnecting"),
        "{log}"
    );
    let call_id = alice.0.call("bob").await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, alice.1.recv()).await {
            Ok(Some(ClientEvent::CallState {
                call_id: c,
                state,
                reason,
            })) if c == call_id && state != CallState::Ringing => {
                assert_eq!(state, CallState::Accepted, "{reason:?}");
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("the listener did not answer: {other:?}\n{}", listener.log()),
        }
    }
    alice.0.terminate(&call_id, None).await.unwrap();
    assert!(
        listener.wait_for_log(&format!("call {call_id}: ended"), WAIT),
        "{}",
        listener.log()
    );
    // A call without media is an outcome, not a media error.
    assert!(
        listener.wait_for_log(
            "media: none (the call ended before its media started)",
            WAIT
        ),
        "{}",
        listener.log()
    );
    assert!(
        !listener.log().contains("protocol error"),
        "{}",
        listener.log()
    );
    assert!(listener.terminate());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vc_listen_exits_non_zero_with_the_reason_when_its_connection_ends_for_good() {
    let w = World::new(&["crl_refresh_secs = 1", "keepalive_secs = 1"]);
    let alice = w.user("alice").await;
    let bob = registered(&w, "bob").await;
    let mut listener = spawn_vc(&w, "bob", &["listen", "--auto-accept"]);
    assert!(
        listener.wait_for_log("listening as bob", WAIT),
        "{}",
        listener.log()
    );
    until_online(&alice.0, "bob").await;
    let serial = bob.load().unwrap().info().serial.clone();
    w.ca.cli(&["revoke", "--serial", &serial, "--reason", "keyCompromise"]);
    let status = listener
        .wait_exit(WAIT)
        .unwrap_or_else(|| panic!("vc listen still running:\n{}", listener.log()));
    assert_eq!(status.code(), Some(3), "{status}");
    let log = listener.log();
    assert!(
        log.contains("ended for good") && log.contains("certificate revoked"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vc_conf_session_survives_another_device_and_fails_when_its_connection_ends() {
    let w = World::new(&["crl_refresh_secs = 1", "keepalive_secs = 1"]);
    let alice = registered(&w, "alice").await;
    let mut session = spawn_vc(
        &w,
        "alice",
        &["conf", "create", "--frame-interval", "200ms"],
    );
    assert!(
        session.wait_for_log("created conference", WAIT),
        "{}",
        session.log()
    );
    // Another device of alice's comes and goes: the session is untouched.
    let args = vc_args(&w, "alice", &["account"]);
    let out = tokio::task::spawn_blocking(move || {
        run("vc", &args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    assert!(out.status.success());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        session.wait_exit(Duration::from_millis(10)).is_none(),
        "{}",
        session.log()
    );
    assert!(
        !session.log().contains("left the conference"),
        "{}",
        session.log()
    );
    let dir = dir_of(&w, "alice");
    let out = run("vc", &["conf", "status", "--identity-dir", &dir]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("alice"),
        "{out:?}"
    );

    // Its connection ends for good: the session fails, saying why.
    let serial = alice.load().unwrap().info().serial.clone();
    w.ca.cli(&["revoke", "--serial", &serial, "--reason", "keyCompromise"]);
    let status = session
        .wait_exit(WAIT)
        .unwrap_or_else(|| panic!("vc conf still running:\n{}", session.log()));
    assert_eq!(status.code(), Some(3), "{status}\n{}", session.log());
    let log = session.log();
    assert!(
        log.contains("certificate revoked") || log.contains("ended for good"),
        "{log}"
    );
}
