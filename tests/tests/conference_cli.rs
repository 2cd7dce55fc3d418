//! `vc conf` against the real `vc-ca` and `vc-server`: sessions started with `vc conf create` and
//! `vc conf join`, steered with `vc conf invite | status | policy | remove | leave` through their
//! control sockets; and a member whose process hangs (SIGSTOP) or dies (SIGKILL) is removed by
//! the server — after the keepalive timeout for the hung one — and the group rekeys without it.

use std::time::Duration;

use vcsdk::client::{ClientEvent, ConferenceEvent, ConferenceOptions};
use vcsdk_tests::{enroll, online, run, Process, TestCa, TestServer};

const WAIT: Duration = Duration::from_secs(30);

fn dir_of(home: &std::path::Path, id: &str) -> String {
    home.join(id).to_str().unwrap().to_owned()
}

/// `vc conf join` as `id`, waiting for an invitation from `from`.
fn join_process(server: &TestServer, home: &std::path::Path, id: &str, from: &str) -> Process {
    let dir = dir_of(home, id);
    Process::spawn(
        "vc",
        &[
            "conf",
            "join",
            "--server",
            &server.addr(),
            "--server-name",
            "localhost",
            "--identity-dir",
            &dir,
            "--from",
            from,
            "--frame-interval",
            "100ms",
            "--wait",
            "60s",
        ],
        &[("RUST_LOG", "warn")],
    )
}

fn vc_conf(home: &std::path::Path, id: &str, args: &[&str]) -> (bool, String) {
    let dir = dir_of(home, id);
    let mut all = vec!["conf"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--identity-dir", &dir]);
    let out = run("vc", &all);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vc_conf_sessions_are_steered_through_their_control_sockets() {
    let ca = TestCa::start(&[]);
    let server = TestServer::start(&ca, &["rate_per_minute = 0"]);
    let home = tempfile::tempdir().unwrap();
    for id in ["alice", "bob"] {
        let store = enroll(&ca, home.path(), id).await;
        drop(online(&server, &ca, &store).await);
    }
    let mut carol = online(&server, &ca, &enroll(&ca, home.path(), "carol").await).await;
    let mut bob = join_process(&server, home.path(), "bob", "alice");
    assert!(
        bob.wait_for_log("waiting for an invitation", WAIT),
        "{}",
        bob.log()
    );
    let alice_dir = dir_of(home.path(), "alice");
    let mut alice = Process::spawn(
        "vc",
        &[
            "conf",
            "create",
            "--server",
            &server.addr(),
            "--server-name",
            "localhost",
            "--identity-dir",
            &alice_dir,
            "--invite",
            "bob",
            "--frame-interval",
            "100ms",
        ],
        &[("RUST_LOG", "warn")],
    );
    assert!(
        alice.wait_for_log("created conference", WAIT),
        "{}",
        alice.log()
    );
    assert!(bob.wait_for_log("joined conference", WAIT), "{}", bob.log());
    assert!(
        alice.wait_for_log("epoch 2: alice, bob", WAIT),
        "{}",
        alice.log()
    );
    assert!(
        bob.wait_for_log("epoch 2: alice, bob", WAIT),
        "{}",
        bob.log()
    );

    // The control socket is the owner's only.
    let socket = home.path().join("alice").join("conference.sock");
    assert!(vcsdk_tests::has_mode(&socket, 0o600));
    let (ok, status) = vc_conf(home.path(), "alice", &["status"]);
    assert!(ok && status.contains("alice (moderator), bob"), "{status}");

    // Invite carol (an SDK client) through alice's session.
    let (ok, out) = vc_conf(home.path(), "alice", &["invite", "carol"]);
    assert!(ok, "{out}");
    let conf = loop {
        match tokio::time::timeout(WAIT, carol.1.recv()).await.unwrap() {
            Some(ClientEvent::ConferenceInvitation { conf, .. }) => break conf,
            Some(_) => {}
            None => panic!("carol's events closed"),
        }
    };
    let c = carol
        .0
        .join_conference(&conf, ConferenceOptions::default())
        .await
        .unwrap();
    c.wait_for_epoch(3, WAIT).await.unwrap();
    assert!(
        alice.wait_for_log("epoch 3: alice, bob, carol", WAIT),
        "{}",
        alice.log()
    );
    // Frames from both vc sessions reach carol.
    let mut from = std::collections::BTreeSet::new();
    while from.len() < 2 {
        let f = tokio::time::timeout(WAIT, c.recv()).await.unwrap().unwrap();
        from.insert(f.member.to_string());
    }

    // Bob is not the moderator: his policy change is refused, alice's is taken at the next epoch.
    let (ok, out) = vc_conf(home.path(), "bob", &["policy", "--level", "3"]);
    assert!(!ok && out.contains("not the moderator"), "{out}");
    let (ok, out) = vc_conf(home.path(), "alice", &["policy", "--level", "3"]);
    assert!(ok, "{out}");
    let epoch = loop {
        match tokio::time::timeout(WAIT, c.next_event()).await.unwrap() {
            Some(ConferenceEvent::Epoch { epoch, policy, .. }) if policy.level == 3 => break epoch,
            Some(_) => {}
            None => panic!("events closed"),
        }
    };
    assert_eq!(c.policy().level, 3);
    assert!(
        alice.wait_for_log(&format!("epoch {epoch}: alice, bob, carol (level 3"), WAIT),
        "{}",
        alice.log()
    );
    assert!(
        bob.wait_for_log("level 3, moderation", WAIT),
        "{}",
        bob.log()
    );

    // One session per identity directory: a second is refused, names the holder, and leaves the
    // first one's control socket alone.
    let out = run(
        "vc",
        &[
            "conf",
            "create",
            "--server",
            &server.addr(),
            "--server-name",
            "localhost",
            "--identity-dir",
            &alice_dir,
        ],
    );
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("is in use by a vc conf session (pid ")
            && text.contains(&alice.pid().to_string()),
        "{text}"
    );
    let (ok, status) = vc_conf(home.path(), "alice", &["status"]);
    assert!(ok && status.contains("epoch"), "{status}");

    // Lowering the protection needs --allow-downgrade, and every member is told.
    let (ok, out) = vc_conf(home.path(), "alice", &["policy", "--level", "2"]);
    assert!(
        !ok && out.contains("lowers the conference's protection (level 3 → 2"),
        "{out}"
    );
    let (ok, out) = vc_conf(
        home.path(),
        "alice",
        &["policy", "--level", "2", "--allow-downgrade"],
    );
    assert!(ok, "{out}");
    assert!(
        bob.wait_for_log(
            "WARNING: alice lowered the protection from the next epoch (level 3 → 2",
            WAIT
        ),
        "{}",
        bob.log()
    );
    let warned = async {
        loop {
            match c.next_event().await {
                Some(ConferenceEvent::PolicyPending {
                    lowered: Some(l),
                    by,
                    ..
                }) => break (l, by),
                Some(_) => {}
                None => panic!("events closed"),
            }
        }
    };
    let (lowered, by) = tokio::time::timeout(WAIT, warned).await.unwrap();
    assert!(
        lowered.starts_with("level 3 → 2") && by == "alice",
        "{lowered}"
    );
    let at_level = |level: u8| {
        let c = &c;
        async move {
            loop {
                match tokio::time::timeout(WAIT, c.next_event()).await.unwrap() {
                    Some(ConferenceEvent::Epoch { policy, .. }) if policy.level == level => break,
                    Some(_) => {}
                    None => panic!("events closed"),
                }
            }
        }
    };
    at_level(2).await;
    let (ok, out) = vc_conf(home.path(), "alice", &["policy", "--level", "3"]);
    assert!(ok, "{out}");
    at_level(3).await;

    // Alice removes carol; bob leaves; his session ends cleanly.
    let (ok, out) = vc_conf(home.path(), "alice", &["remove", "carol"]);
    assert!(ok, "{out}");
    assert!(
        alice.wait_for_log("carol left (removed by alice)", WAIT),
        "{}",
        alice.log()
    );
    // Changing only the mode keeps the level (a level-3 conference stays level 3).
    let (ok, out) = vc_conf(home.path(), "alice", &["policy", "--mode", "voting"]);
    assert!(ok, "{out}");
    assert!(
        bob.wait_for_log(
            "alice changed the policy from the next epoch: level 3, voting",
            WAIT
        ),
        "{}",
        bob.log()
    );
    assert!(
        bob.wait_for_log("alice, bob (level 3, voting", WAIT),
        "{}",
        bob.log()
    );

    // In voting mode a change is a proposal, numbered from 1 in this conference (not by its
    // place in the log), and the number printed is the one to vote with.
    let (ok, out) = vc_conf(home.path(), "alice", &["policy", "--mode", "moderation"]);
    assert!(ok && out.trim_end().ends_with("as proposal 1"), "{out}");
    assert!(
        bob.wait_for_log("alice proposes (level 3, moderation", WAIT)
            && bob.wait_for_log("vote with vc conf vote 1 yes|no", WAIT),
        "{}",
        bob.log()
    );
    let (ok, status) = vc_conf(home.path(), "bob", &["status"]);
    assert!(
        ok && status.contains("proposal:  1 by alice") && status.contains("vc conf vote 1 yes|no"),
        "{status}"
    );
    let (ok, out) = vc_conf(home.path(), "bob", &["vote", "7", "yes"]);
    assert!(
        !ok && out.contains("there is no proposal 7 in this conference (proposals so far: 1)"),
        "{out}"
    );
    let (ok, out) = vc_conf(home.path(), "bob", &["vote", "1", "yes"]);
    assert!(ok && out.contains("voted on proposal 1"), "{out}");
    assert!(
        alice.wait_for_log("proposal 1 adopted: adopted by 2 of 2 members", WAIT),
        "{}",
        alice.log()
    );
    let (ok, out) = vc_conf(home.path(), "bob", &["leave"]);
    assert!(ok, "{out}");
    let status = bob.wait_exit(WAIT).expect("bob's session ends");
    assert!(status.success(), "{}", bob.log());
    assert!(bob.log().contains("frames received:"), "{}", bob.log());
    assert!(alice.wait_for_log("bob left\n", WAIT), "{}", alice.log());
    let (ok, out) = vc_conf(home.path(), "bob", &["status"]);
    assert!(!ok && out.contains("no conference session"), "{out}");
    let (ok, out) = vc_conf(home.path(), "alice", &["leave"]);
    assert!(ok, "{out}");
    assert!(alice
        .wait_exit(WAIT)
        .expect("alice's session ends")
        .success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_that_hangs_or_dies_is_removed_and_the_group_rekeys() {
    let ca = TestCa::start(&[]);
    let server = TestServer::start(&ca, &["rate_per_minute = 0", "keepalive_secs = 1"]);
    let home = tempfile::tempdir().unwrap();
    for id in ["bob", "carol"] {
        let store = enroll(&ca, home.path(), id).await;
        drop(online(&server, &ca, &store).await);
    }
    let alice = online(&server, &ca, &enroll(&ca, home.path(), "alice").await).await;
    let mut bob = join_process(&server, home.path(), "bob", "alice");
    let mut carol = join_process(&server, home.path(), "carol", "alice");
    for p in [&bob, &carol] {
        assert!(
            p.wait_for_log("waiting for an invitation", WAIT),
            "{}",
            p.log()
        );
    }
    let a = alice
        .0
        .create_conference(ConferenceOptions::default())
        .await
        .unwrap();
    a.invite("bob").await.unwrap();
    a.invite("carol").await.unwrap();
    let full = loop {
        match tokio::time::timeout(WAIT, a.next_event()).await.unwrap() {
            Some(ConferenceEvent::Epoch { epoch, roster, .. }) if roster.len() == 3 => break epoch,
            Some(_) => {}
            None => panic!("events closed"),
        }
    };

    // Bob's process hangs: no answer to keepalives; after 3 × 1 s the server removes him.
    bob.signal("STOP");
    let stopped = std::time::Instant::now();
    let (who, why) = loop {
        match tokio::time::timeout(WAIT, a.next_event()).await.unwrap() {
            Some(ConferenceEvent::Left { member, reason }) => break (member, reason),
            Some(_) => {}
            None => panic!("events closed"),
        }
    };
    assert_eq!(who, "bob");
    assert!(why.contains("keepalive"), "{why}");
    assert!(
        stopped.elapsed() >= Duration::from_secs(2),
        "{:?}",
        stopped.elapsed()
    );
    let after_bob = loop {
        match tokio::time::timeout(WAIT, a.next_event()).await.unwrap() {
            Some(ConferenceEvent::Epoch { epoch, roster, .. }) => break (epoch, roster),
            Some(_) => {}
            None => panic!("events closed"),
        }
    };
    assert!(after_bob.0 > full);
    assert_eq!(after_bob.1, ["alice", "carol"]);
    assert!(
        carol.wait_for_log(&format!("epoch {}: alice, carol", after_bob.0), WAIT),
        "{}",
        carol.log()
    );
    bob.signal("CONT");
    bob.kill();

    // Carol's process dies: the connection closes and she is removed at once.
    carol.kill();
    let (who, why) = loop {
        match tokio::time::timeout(WAIT, a.next_event()).await.unwrap() {
            Some(ConferenceEvent::Left { member, reason }) => break (member, reason),
            Some(_) => {}
            None => panic!("events closed"),
        }
    };
    assert_eq!(who, "carol");
    assert!(why.contains("disconnected"), "{why}");
    a.wait_for_epoch(after_bob.0 + 1, WAIT).await.unwrap();
    assert_eq!(a.roster().len(), 1);
}
