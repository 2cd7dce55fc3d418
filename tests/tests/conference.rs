//! Conferences between SDK clients through the real `vc-ca` and `vc-server`: invitations checked
//! against the invitee's access list, group keys renewed on every join and leave (the newcomer
//! cannot open what was sent before it joined, the removed member what is sent after), the
//! full-mesh media, per-stream protection, moderation and voting, forged and replayed control
//! messages refused, and each participant billed for its own time.

use std::time::Duration;

use vcsdk::client::{ClientEvent, ConferenceEvent, ConferenceOptions};
use vcsdk::conference::{AccessList, AclDefault, Mode, Policy, Protection};
use vcsdk::media::Stream;
use vcsdk_tests::conference::{all_at, bring_in, deliver, invitation, trio, until, World, WAIT};
use vcsdk_tests::{enroll, online, TestCa, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joins_and_leaves_rekey_and_only_members_can_read() {
    let w = World::new(&[]);
    let alice = w.user("alice").await;
    let mut bob = w.user("bob").await;
    let mut carol = w.user("carol").await;

    let a = alice
        .0
        .create_conference(ConferenceOptions::default())
        .await
        .expect("create");
    assert_eq!(a.moderator().as_deref(), Some("alice"));
    a.wait_for_epoch(1, WAIT).await.expect("the first epoch");

    let b = bring_in(&a, &mut bob, "bob").await;
    all_at(&[&a, &b], 2).await;
    deliver(&a, &b, b"hello bob").await;
    deliver(&b, &a, b"hello alice").await;
    // Sent before carol joins: she must not be able to read it.
    let before_carol = a.protect(Stream::Video, b"before carol").await.unwrap();
    assert!(
        b.open_frame(&before_carol).await.is_ok(),
        "bob reads epoch 2"
    );

    let c = bring_in(&a, &mut carol, "carol").await;
    all_at(&[&a, &b, &c], 3).await;
    let roster: Vec<String> = c.roster().into_iter().map(|m| m.id).collect();
    assert_eq!(roster, ["alice", "bob", "carol"]);
    assert_eq!(a.snapshot().roster_hash(), c.snapshot().roster_hash());
    assert!(
        c.open_frame(&before_carol).await.is_err(),
        "backward secrecy: the newcomer cannot read an earlier epoch"
    );
    for (x, y) in [(&a, &c), (&c, &b), (&b, &c), (&c, &a)] {
        deliver(x, y, format!("{} to {}", x.me(), y.me()).as_bytes()).await;
    }
    let at_three = a.protect(Stream::Audio, b"epoch three").await.unwrap();
    assert!(b.open_frame(&at_three).await.is_ok());

    // The moderator removes bob: a fresh secret only alice and carol get.
    a.remove("bob").await.expect("remove");
    let why = until(&b, |e| match e {
        ConferenceEvent::Ended { reason } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(why.contains("removed by alice"), "{why}");
    all_at(&[&a, &c], 4).await;
    let after_bob = a.protect(Stream::Audio, b"after bob").await.unwrap();
    assert!(
        b.open_frame(&after_bob).await.is_err(),
        "forward secrecy: the removed member cannot read the new epoch"
    );
    assert!(c.open_frame(&after_bob).await.is_ok());
    deliver(&c, &a, b"still here").await;
    // bob's conference is over with the reason he was told, and what he still sends reaches no
    // one.
    assert_eq!(b.ended().as_deref(), Some(why.as_str()));
    let _ = b.send(Stream::Audio, b"from the removed bob").await;
    let heard = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            match a.recv().await {
                Some(f) if &*f.member == "bob" => return true,
                Some(_) => {}
                None => return false,
            }
        }
    })
    .await;
    assert_ne!(heard, Ok(true), "alice heard the removed bob");
    assert_eq!(
        a.roster().into_iter().map(|m| m.id).collect::<Vec<_>>(),
        ["alice", "carol"]
    );

    // Carol leaves; alice is alone and rekeys once more.
    c.leave().await.expect("leave");
    a.wait_for_epoch(5, WAIT)
        .await
        .expect("epoch after the leave");
    let stats = a.stats();
    assert!(stats.frames_received >= 3, "{stats:?}");
    assert_eq!(stats.auth_failures, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_access_list_decides_before_the_user_sees_an_invitation() {
    let w = World::new(&[]);
    let mallory = w.user("mallory").await;
    let alice = w.user("alice").await;
    let mut bob = w.user("bob").await;
    let mut acl = AccessList::default();
    acl.deny.insert("mallory".into());
    acl.default = AclDefault::Contacts;
    acl.contacts.insert("alice".into());
    bob.0.set_access_list(acl);

    // Mallory's invitation never reaches bob's application: it is declined for him.
    let m = mallory
        .0
        .create_conference(ConferenceOptions::default())
        .await
        .unwrap();
    m.invite("bob").await.unwrap();
    let declined = until(&m, |e| match e {
        ConferenceEvent::Declined { invitee } => Some(invitee.clone()),
        _ => None,
    })
    .await;
    assert_eq!(declined, "bob");
    assert!(bob.0.conference_invitations().is_empty());
    assert!(bob
        .0
        .join_conference(m.id(), ConferenceOptions::default())
        .await
        .is_err());

    // Alice, a contact, gets through.
    let a = alice
        .0
        .create_conference(ConferenceOptions::default())
        .await
        .unwrap();
    a.invite("bob").await.unwrap();
    let (conf, from) = invitation(&mut bob.1).await;
    assert_eq!((conf.as_str(), from.as_str()), (a.id(), "alice"));
    // Nothing from mallory was shown before it.
    while let Ok(e) = bob.1.try_recv() {
        assert!(
            !matches!(e, ClientEvent::ConferenceInvitation { ref from, .. } if from == "mallory")
        );
    }
    bob.0.decline_conference(&conf).await.unwrap();
    until(&a, |e| {
        matches!(e, ConferenceEvent::Declined { .. }).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_stream_protection_and_a_policy_change_at_one_epoch_for_all() {
    let w = World::new(&[]);
    let alice = w.user("alice").await;
    let mut bob = w.user("bob").await;
    let mut policy = Policy::for_level(2, Mode::Moderation);
    policy.streams.video = Protection::Plain;
    let a = alice
        .0
        .create_conference(ConferenceOptions {
            policy,
            ..Default::default()
        })
        .await
        .unwrap();
    let b = bring_in(&a, &mut bob, "bob").await;
    all_at(&[&a, &b], 2).await;
    deliver(&a, &b, b"warm up").await;
    a.send(Stream::Video, b"open video").await.unwrap();
    a.send(Stream::Audio, b"secret audio").await.unwrap();
    let mut seen = (false, false);
    while !(seen.0 && seen.1) {
        let f = tokio::time::timeout(WAIT, b.recv()).await.unwrap().unwrap();
        match f.stream {
            Stream::Video if f.data == b"open video" => {
                assert!(f.plain, "video is plain under this policy");
                seen.0 = true;
            }
            Stream::Audio if f.data == b"secret audio" => {
                assert!(!f.plain);
                seen.1 = true;
            }
            _ => {}
        }
    }

    // The moderator moves to level 3: it takes effect for both at the same epoch.
    let level3 = Policy::for_level(3, Mode::Moderation);
    a.set_policy(level3).await.unwrap();
    let epochs: Vec<u32> = {
        let mut v = Vec::new();
        for m in [&a, &b] {
            v.push(
                until(m, |e| match e {
                    ConferenceEvent::Epoch { epoch, policy, .. } if policy.level == 3 => {
                        Some(*epoch)
                    }
                    _ => None,
                })
                .await,
            );
        }
        v
    };
    assert_eq!(epochs[0], epochs[1]);
    assert_eq!(a.policy(), level3);
    assert_eq!(b.policy(), level3);
    // Frames flow at level 3 too.
    deliver(&a, &b, b"level three").await;
    assert!(a.timings().last_bundle_bytes > 1088, "{:?}", a.timings());
    // A bob who is not the moderator may not set the policy.
    assert!(b
        .set_policy(Policy::for_level(2, Mode::Moderation))
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conflicting_proposals_end_with_one_policy_everywhere() {
    let w = World::new(&[]);
    let (_clients, [a, b, c]) = trio(&w, Policy::for_level(2, Mode::Voting)).await;

    let p1 = Policy::for_level(3, Mode::Voting);
    let mut p2 = Policy::for_level(2, Mode::Voting);
    p2.streams.video = Protection::Plain;
    // Both propose at once: the server orders them; the second finds a proposal open.
    let (r1, r2) = tokio::join!(
        a.propose(p1, Duration::from_secs(30)),
        b.propose(p2, Duration::from_secs(30))
    );
    assert!(
        r1.is_ok() != r2.is_ok(),
        "exactly one proposal opens: {r1:?} {r2:?}"
    );
    let (open_id, winner) = match (r1, r2) {
        (Ok(id), _) => (id, p1),
        (_, Ok(id)) => (id, p2),
        _ => unreachable!(),
    };
    for m in [&a, &b, &c] {
        // The proposal reaches each member when its entry does.
        let seen = async {
            while m.proposal().map(|p| p.0) != Some(open_id) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(WAIT, seen)
            .await
            .unwrap_or_else(|_| panic!("{} never saw proposal {open_id}", m.me()));
    }
    c.vote(open_id, true).await.unwrap();
    for m in [&a, &b, &c] {
        until(m, |e| match e {
            ConferenceEvent::Epoch { policy, .. } if *policy == winner => Some(()),
            _ => None,
        })
        .await;
        assert_eq!(m.policy(), winner);
    }
    assert_eq!(a.epoch(), b.epoch());
    assert_eq!(b.epoch(), c.epoch());
}

/// Expects a server refusal with `code`.
fn refused(result: vcsdk::Result<u64>, code: &str, what: &str) {
    match result {
        Err(vcsdk::Error::ServerRefused { code: c, .. }) if c == code => {}
        other => panic!("{what}: expected {code}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_server_refuses_forged_replayed_and_stale_posts_and_members_see_none() {
    use vcsdk::conference::entry::{Body, Entry};
    let w = World::new(&[]);
    let alice = w.user("alice").await;
    let mut bob = w.user("bob").await;
    let mut mallory = w.user("mallory").await;
    let a = alice
        .0
        .create_conference(ConferenceOptions::default())
        .await
        .unwrap();
    let b = bring_in(&a, &mut bob, "bob").await;
    let m = bring_in(&a, &mut mallory, "mallory").await;
    all_at(&[&a, &b, &m], 3).await;
    let identity = |id: &str| {
        vcsdk::identity::IdentityStore::new(w.home.path().join(id))
            .load()
            .unwrap()
    };
    let (mallory_id, alice_id) = (identity("mallory"), identity("alice"));
    let before = a.snapshot().next_seq();
    let state = m.snapshot();
    let post = |entry: Entry| mallory.0.post_conference_entry(a.id(), entry);

    // Signed as alice with alice's key — but posted by mallory: not hers to post.
    let as_alice = Entry::sign(&alice_id, &state.content("alice", Body::Leave)).unwrap();
    refused(
        post(as_alice).await,
        "forbidden_src",
        "posting alice's entry",
    );
    // Claiming to be alice with mallory's key.
    let mut c = state.content("mallory", Body::Leave);
    c.author = "alice".into();
    refused(
        post(Entry::sign(&mallory_id, &c).unwrap()).await,
        "forbidden_src",
        "author alice",
    );
    // Mallory's own entry with a broken signature.
    let mut e = Entry::sign(&mallory_id, &state.content("mallory", Body::Leave)).unwrap();
    e.signature = "3044".to_string() + &"00".repeat(68);
    refused(post(e).await, "conf_signature", "bad signature");
    // A counter that is not above her last (a replay).
    let mut c = state.content("mallory", Body::Leave);
    c.counter = state.counter_of("mallory");
    refused(
        post(Entry::sign(&mallory_id, &c).unwrap()).await,
        "conf_replay",
        "replayed counter",
    );
    // Stale epoch and a wrong roster hash.
    let mut c = state.content("mallory", Body::Leave);
    c.counter += 1_000_000_000_000;
    c.epoch -= 1;
    refused(
        post(Entry::sign(&mallory_id, &c).unwrap()).await,
        "conf_stale",
        "stale epoch",
    );
    let mut c = state.content("mallory", Body::Leave);
    c.counter += 1_000_000_000_000;
    c.roster = "11".repeat(32);
    refused(
        post(Entry::sign(&mallory_id, &c).unwrap()).await,
        "conf_stale",
        "wrong roster",
    );
    // Actions she may not take.
    let mut c = state.content(
        "mallory",
        Body::Remove {
            member: "alice".into(),
        },
    );
    c.counter += 1_000_000_000_000;
    refused(
        post(Entry::sign(&mallory_id, &c).unwrap()).await,
        "conf_forbidden",
        "remove",
    );
    let mut c = state.content(
        "mallory",
        Body::Departed {
            member: "bob".into(),
            reason: "gone".into(),
        },
    );
    c.counter += 1_000_000_000_000;
    refused(
        post(Entry::sign(&mallory_id, &c).unwrap()).await,
        "conf_forbidden",
        "departure",
    );

    // Nobody saw any of it: every member is where it was.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for x in [&a, &b, &m] {
        assert_eq!(x.snapshot().next_seq(), before, "{}", x.me());
        while let Some(e) = x.try_event() {
            assert!(!matches!(e, ConferenceEvent::Rejected { .. }), "{e:?}");
        }
    }
    deliver(&b, &a, b"business as usual").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_only_members_meet_through_the_servers_relay() {
    let w = World::new(&[]);
    let alice = w.user("alice").await;
    let mut bob = w.user("bob").await;
    let mut carol = w.user("carol").await;
    let relay_only = || ConferenceOptions {
        media: vcsdk::conference::ConferenceMediaConfig {
            direct: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let a = alice.0.create_conference(relay_only()).await.unwrap();
    a.invite("bob").await.unwrap();
    let (id, _) = invitation(&mut bob.1).await;
    let b = bob.0.join_conference(&id, relay_only()).await.unwrap();
    a.invite("carol").await.unwrap();
    let (id, _) = invitation(&mut carol.1).await;
    let c = carol.0.join_conference(&id, relay_only()).await.unwrap();
    all_at(&[&a, &b, &c], 3).await;
    for (x, y) in [(&a, &b), (&b, &c), (&c, &a)] {
        deliver(x, y, format!("{} via the relay", x.me()).as_bytes()).await;
    }
    for x in [&a, &b, &c] {
        for p in x.stats().peers {
            assert!(
                matches!(p.path, Some(vcsdk::media::MediaPath::Relay(_))),
                "{} to {}: {:?}",
                x.me(),
                p.member,
                p.path
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_participant_pays_for_its_own_time_with_signed_receipts() {
    for payer in ["participant", "creator"] {
        let setting = format!("conference_payer = \"{payer}\"");
        let ca = TestCa::start(&[]);
        let server = TestServer::start(
            &ca,
            &[
                "connect_fee = 5",
                "rate_per_minute = 60",
                "first_increment_secs = 1",
                "debit_interval_secs = 1",
                &setting,
            ],
        );
        let home = tempfile::tempdir().unwrap();
        let alice = online(&server, &ca, &enroll(&ca, home.path(), "alice").await).await;
        let mut bob = online(&server, &ca, &enroll(&ca, home.path(), "bob").await).await;
        for user in ["alice", "bob"] {
            server.cli(&["credit", "add", "--user", user, "--amount", "10.00"]);
        }
        let a = alice
            .0
            .create_conference(ConferenceOptions::default())
            .await
            .unwrap();
        let b = bring_in(&a, &mut bob, "bob").await;
        all_at(&[&a, &b], 2).await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        b.leave().await.unwrap();
        a.wait_for_epoch(3, WAIT).await.unwrap();
        a.leave().await.unwrap();
        // Receipts are signed as the participations end: wait (bounded) until both are in.
        let mut records: Vec<vcsdk::billing::CallRecord> = Vec::new();
        for _ in 0..100 {
            let json = server.cli(&["cdr", "list", "--format", "json"]);
            records = json
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let done = records
                .iter()
                .filter(|r| r.callee.starts_with("conf:") && r.ended_at_ms.is_some())
                .filter(|r| !r.end_receipt_missing)
                .count();
            if done == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let conf_records: Vec<_> = records
            .iter()
            .filter(|r| r.callee.starts_with(&format!("conf:{}", a.id())))
            .collect();
        assert_eq!(conf_records.len(), 2, "{payer}: {conf_records:#?}");
        let bobs = conf_records
            .iter()
            .find(|r| r.callee.ends_with(":bob") || r.caller == "bob")
            .expect("bob's participation");
        let expected_payer = if payer == "participant" {
            "bob"
        } else {
            "alice"
        };
        assert_eq!(bobs.payer, expected_payer, "{payer}");
        assert_eq!(bobs.caller, expected_payer, "{payer}");
        assert_eq!(bobs.disposition.as_deref(), Some("answered"));
        assert!(
            (2..=8).contains(&bobs.billable_secs),
            "{payer}: {}",
            bobs.billable_secs
        );
        assert_eq!(
            bobs.cost,
            5 + bobs.billable_secs,
            "{payer}: connect fee + 1 per second"
        );
        assert!(!bobs.end_receipt_missing, "{payer}: {bobs:#?}");
        // Balances are the credits less each payer's own records.
        let accounts = server.cli(&["accounts"]);
        assert!(!accounts.contains("MISMATCH"), "{accounts}");
        let spent: i64 = conf_records
            .iter()
            .filter(|r| r.payer == "alice")
            .map(|r| r.cost)
            .sum();
        let info = alice.0.account_info().await.unwrap();
        assert_eq!(info.balance, 1000 - spent, "{payer}");
        // The payer's receipts verify offline.
        let who = if payer == "participant" {
            &bob.0
        } else {
            &alice.0
        };
        let mine = who.call_records().await.unwrap();
        let file = home.path().join("receipts.json");
        std::fs::write(&file, serde_json::to_vec(&mine).unwrap()).unwrap();
        let dir = home.path().join(expected_payer);
        let out = vcsdk_tests::run_ok(
            "vc",
            &[
                "receipts",
                "verify",
                file.to_str().unwrap(),
                "--identity-dir",
                dir.to_str().unwrap(),
            ],
        );
        assert!(out.contains(" 0 failed"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_frame_of_a_remaining_member_is_lost_when_the_epoch_switches() {
    let w = World::new(&[]);
    let alice = w.user("alice").await;
    let mut bob = w.user("bob").await;
    let mut carol = w.user("carol").await;
    let a = alice
        .0
        .create_conference(ConferenceOptions::default())
        .await
        .unwrap();
    let b = bring_in(&a, &mut bob, "bob").await;
    all_at(&[&a, &b], 2).await;
    deliver(&a, &b, b"path up").await;
    while b.try_recv().is_some() {}
    // alice streams numbered frames while carol joins and leaves: two switches (2 → 3 → 4).
    let sender = {
        let a = a.clone();
        tokio::spawn(async move {
            for i in 0u32..400 {
                a.send(Stream::Audio, &i.to_be_bytes()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let c = bring_in(&a, &mut carol, "carol").await;
    all_at(&[&a, &b, &c], 3).await;
    c.leave().await.unwrap();
    all_at(&[&a, &b], 4).await;
    sender.await.unwrap();
    let mut got = Vec::new();
    let mut epochs = std::collections::BTreeSet::new();
    while got.len() < 400 {
        let f = tokio::time::timeout(WAIT, b.recv())
            .await
            .unwrap_or_else(|_| panic!("bob got {} of 400 frames", got.len()))
            .unwrap();
        if &*f.member == "alice" && f.data.len() == 4 {
            got.push(u32::from_be_bytes(f.data[..].try_into().unwrap()));
            epochs.insert(f.epoch);
        }
    }
    assert_eq!(got, (0..400).collect::<Vec<_>>(), "every frame, in order");
    assert!(epochs.len() >= 2, "the stream crossed epochs: {epochs:?}");
    let s = b.stats();
    assert_eq!(
        (s.frames_lost, s.unknown_key, s.auth_failures),
        (0, 0, 0),
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_the_moderator_leaves_the_next_member_by_rule_moderates_and_distributes() {
    let w = World::new(&[]);
    let (_clients, [a, b, c]) = trio(&w, Policy::default()).await;
    a.leave().await.unwrap();
    // bob, the longest-present member left, is the moderator and makes the next epoch.
    let (epoch, distributor, roster) = until(&c, |e| match e {
        ConferenceEvent::Epoch {
            epoch,
            distributor,
            roster,
            ..
        } if roster.len() == 2 => Some((*epoch, distributor.clone(), roster.clone())),
        _ => None,
    })
    .await;
    assert_eq!(
        (distributor.as_str(), roster),
        ("bob", vec!["bob".to_string(), "carol".to_string()])
    );
    b.wait_for_epoch(epoch, WAIT).await.unwrap();
    assert_eq!(c.moderator().as_deref(), Some("bob"));
    deliver(&b, &c, b"bob runs it now").await;
    // And bob can hand the role on.
    b.hand_over("carol").await.unwrap();
    let seen = async {
        while c.moderator().as_deref() != Some("carol") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, seen).await.unwrap();
    assert!(
        b.remove("carol").await.is_err(),
        "bob is no longer the moderator"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_vote_without_a_majority_lapses_at_its_deadline_for_everyone() {
    let w = World::new(&[]);
    let voting = Policy::for_level(2, Mode::Voting);
    let (_clients, [a, b, c]) = trio(&w, voting).await;
    // bob proposes level 3 (his own vote: 1 of 3); carol votes against; nobody else votes.
    let id = b
        .propose(Policy::for_level(3, Mode::Voting), Duration::from_secs(1))
        .await
        .unwrap();
    // Proposals are numbered per conference, not by their place in the log.
    assert_eq!(id, 1, "the conference's first proposal");
    c.vote(id, false).await.unwrap();
    assert!(c.vote(id, true).await.is_err(), "one ballot per member");
    for m in [&a, &b, &c] {
        let (adopted, reason) = until(m, |e| match e {
            ConferenceEvent::ProposalDecided {
                proposal,
                adopted,
                reason,
            } if *proposal == id => Some((*adopted, reason.clone())),
            _ => None,
        })
        .await;
        assert!(
            !adopted && reason.contains("deadline"),
            "{}: {reason}",
            m.me()
        );
        assert_eq!(m.policy(), voting);
        assert!(m.proposal().is_none());
    }
    // A vote after the deadline is refused; a new proposal may be made.
    assert!(a.vote(id, true).await.is_err());
    let again = a
        .propose(Policy::for_level(3, Mode::Voting), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(again, 2, "the conference's second proposal");
    b.vote(again, true).await.unwrap();
    until(&c, |e| match e {
        ConferenceEvent::Epoch { policy, .. } if policy.level == 3 => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_participant_out_of_credit_is_removed_and_the_group_rekeys() {
    let ca = TestCa::start(&[]);
    let server = TestServer::start(
        &ca,
        &[
            "connect_fee = 0",
            "rate_per_minute = 60",
            "first_increment_secs = 1",
            "debit_interval_secs = 1",
            "low_balance_warning_secs = 5",
        ],
    );
    let home = tempfile::tempdir().unwrap();
    let alice = online(&server, &ca, &enroll(&ca, home.path(), "alice").await).await;
    let mut bob = online(&server, &ca, &enroll(&ca, home.path(), "bob").await).await;
    server.cli(&["credit", "add", "--user", "alice", "--amount", "10.00"]);
    server.cli(&["credit", "add", "--user", "bob", "--amount", "0.04"]);
    let a = alice
        .0
        .create_conference(ConferenceOptions::default())
        .await
        .unwrap();
    let b = bring_in(&a, &mut bob, "bob").await;
    all_at(&[&a, &b], 2).await;
    // bob is warned, then runs out of credit within seconds and is removed by the server.
    let warned = async {
        loop {
            match bob.1.recv().await {
                Some(ClientEvent::LowBalance { .. }) => return,
                Some(_) => {}
                None => panic!("bob's events closed"),
            }
        }
    };
    tokio::time::timeout(WAIT, warned)
        .await
        .expect("a low-balance warning");
    let (who, why) = until(&a, |e| match e {
        ConferenceEvent::Left { member, reason } => Some((member.clone(), reason.clone())),
        _ => None,
    })
    .await;
    assert_eq!((who.as_str(), why.as_str()), ("bob", "insufficient credit"));
    a.wait_for_epoch(3, WAIT).await.unwrap();
    let ended = until(&b, |e| match e {
        ConferenceEvent::Ended { reason } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(ended, "insufficient credit");
    let info = bob.0.account_info().await.unwrap();
    assert!(
        info.balance >= 0,
        "prepaid never overdrawn: {}",
        info.balance
    );
}
