//! Attacks on conferences by hostile members and strangers, run against the real `vc-ca` and
//! `vc-server`: an entry that grows past a frame once escaped, a refused `create` that would leave
//! a conference behind, joins billed to a creator who did not invite them or who left, address
//! lists resent to steer the members' probes, and early frames sent by strangers.

use std::net::SocketAddr;
use std::time::Duration;

use vcsdk::client::{ConferenceEvent, ConferenceOptions};
use vcsdk::conference::entry::{Body, Entry, MAX_ENTRY_ENCODED};
use vcsdk::conference::group_key::MemberSecrets;
use vcsdk::conference::media::{conference_kid, TRANSPORT_STREAM};
use vcsdk::conference::{ConferenceMediaConfig, ConferenceState, Policy};
use vcsdk::proto::frame::{encoded_len, MAX_FRAME};
use vcsdk::proto::signal::{ClientMessage, Event, Request, ServerMessage};
use vcsdk::util::hex;
use vcsdk_tests::conference::{all_at, bring_in, deliver, trio, until, World};

/// What an entry's signature covers before its content (protocol §8).
const SIGNING_LABEL: &[u8] = b"vcsdk-conference/1 entry\n";

fn identity(w: &World, id: &str) -> vcsdk::identity::Identity {
    vcsdk::identity::IdentityStore::new(w.home.path().join(id))
        .load()
        .expect("identity")
}

/// Signs `text` as it is (not re-encoded), as a hostile member can.
fn sign_raw(identity: &vcsdk::identity::Identity, text: String) -> Entry {
    let signature = identity
        .sign(&[SIGNING_LABEL, text.as_bytes()].concat())
        .expect("sign");
    Entry {
        content: text,
        certificate: hex(identity.certificate()),
        signature: hex(&signature),
    }
}

fn refused<T: std::fmt::Debug>(result: vcsdk::Result<T>, code: &str, what: &str) {
    match result {
        Err(vcsdk::Error::ServerRefused { code: c, .. }) if c == code => {}
        other => panic!("{what}: expected {code}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_entry_that_escapes_past_a_frame_is_refused_and_the_conference_goes_on() {
    let w = World::new(&[]);
    let (clients, [a, b, c]) = trio(&w, Policy::default()).await;
    let carol = identity(&w, "carol");
    // carol's `leave`, padded with tabs between JSON tokens: valid JSON, under the raw content
    // limit, but every tab doubles when the content travels inside a JSON string.
    let plain = serde_json::to_string(&c.snapshot().content("carol", Body::Leave)).unwrap();
    let padded = |tabs: usize| format!("{{{}{}", "\t".repeat(tabs), &plain[1..]);
    let post_len = |entry: &Entry| {
        encoded_len(&ClientMessage::Request {
            id: 99,
            request: Request::ConfPost {
                conf: a.id().to_owned(),
                entry: entry.clone(),
            },
        })
    };
    // The largest padding whose post still fits a frame (with room for the client's request
    // id; signatures vary in length by a byte or two, so the final one is checked again).
    let room = MAX_FRAME - 16;
    let (mut low, mut high) = (0usize, 40_000usize);
    while low + 1 < high {
        let mid = (low + high) / 2;
        if post_len(&sign_raw(&carol, padded(mid))) <= room {
            low = mid;
        } else {
            high = mid;
        }
    }
    let entry = (0..100)
        .map(|_| sign_raw(&carol, padded(low - 4)))
        .find(|e| post_len(e) <= room)
        .expect("a signature of the usual length");
    assert!(entry.content.len() <= vcsdk::conference::entry::MAX_CONTENT);
    // As the server would deliver it, it no longer fits: that is the attack.
    let delivered = ServerMessage::Event {
        event: Event::ConfEntries {
            conf: a.id().to_owned(),
            entries: vec![vcsdk::conference::Sequenced {
                seq: 9,
                at_ms: 1_764_000_000_000,
                entry: entry.clone(),
            }],
        },
    };
    assert!(encoded_len(&delivered) > MAX_FRAME, "the attack entry fits");
    assert!(entry.encoded_len() > MAX_ENTRY_ENCODED);
    refused(
        clients[2].0.post_conference_entry(a.id(), entry).await,
        "conf_too_large",
        "a leave escaping past a frame",
    );
    // Nothing was sequenced: carol's ordinary leave reaches everyone and the group rekeys.
    c.leave().await.expect("leave");
    all_at(&[&a, &b], 4).await;
    assert_eq!(a.roster().len(), 2);
    assert_eq!(b.snapshot().next_seq(), a.snapshot().next_seq());
    deliver(&a, &b, b"still here").await;
    // The SDK refuses to sign what it could not deliver either.
    let mut content = a.snapshot().content("alice", Body::Leave);
    content.conf = "\"".repeat(40_000);
    assert!(matches!(
        Entry::sign(&identity(&w, "alice"), &content),
        Err(vcsdk::Error::InvalidArgument(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_create_leaves_no_conference_behind() {
    let w = World::new(&["rate_limit_per_sec = 1000", "rate_limit_burst = 1000"]);
    let alice = w.user("alice").await;
    let bob = w.user("bob").await;
    // alice fills her own share of conferences.
    let mut held = Vec::new();
    for _ in 0..vcserver::conference::MAX_CONFERENCES_PER_USER {
        held.push(
            alice
                .0
                .create_conference(ConferenceOptions::default())
                .await
                .expect("create"),
        );
    }
    let create = |who: &str, conf: &str| {
        let keys = MemberSecrets::generate().unwrap().public().clone();
        let content = ConferenceState::new(conf).content(
            who,
            Body::Create {
                policy: Policy::default(),
                keys,
            },
        );
        Entry::sign(&identity(&w, who), &content).unwrap()
    };
    // Her next create is refused, again and again, for the same id.
    let conf = "5e".repeat(16);
    for _ in 0..3 {
        refused(
            alice
                .0
                .post_conference_entry(&conf, create("alice", &conf))
                .await,
            "conf_full",
            "a create beyond her share",
        );
    }
    // The refused id was never taken: bob creates that very conference.
    let seq = bob
        .0
        .post_conference_entry(&conf, create("bob", &conf))
        .await
        .expect("the id a refused create named is free");
    assert_eq!(seq, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn where_the_creator_pays_only_it_invites_and_its_departure_ends_the_billing() {
    let w = World::new(&[
        "conference_payer = \"creator\"",
        "rate_per_minute = 60",
        "first_increment_secs = 1",
        "debit_interval_secs = 1",
    ]);
    let alice = w.user("alice").await;
    let mut bob = w.user("bob").await;
    let _carol = w.user("carol").await;
    w.server
        .cli(&["credit", "add", "--user", "alice", "--amount", "1000.00"]);
    let a = alice
        .0
        .create_conference(ConferenceOptions::default())
        .await
        .unwrap();
    let b = bring_in(&a, &mut bob, "bob").await;
    all_at(&[&a, &b], 2).await;
    // bob may not bring in someone alice pays for.
    refused(
        b.invite("carol").await.map(|_| 0u64),
        "conf_forbidden",
        "bob inviting carol at alice's cost",
    );
    // alice leaves: bob's time stops being charged to her, and the conference ends for bob.
    a.leave().await.unwrap();
    let reason = until(&b, |e| match e {
        ConferenceEvent::Ended { reason } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(reason.contains("pays"), "{reason}");
    // Every participation is closed, and alice's balance stops moving.
    let balance = || async { alice.0.account_info().await.unwrap().balance };
    let mut settled = balance().await;
    for _ in 0..50 {
        let json = w.server.cli(&["cdr", "list", "--format", "json"]);
        let open = json
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str::<vcsdk::billing::CallRecord>(l).unwrap())
            .filter(|r| r.callee.starts_with("conf:") && r.ended_at_ms.is_none())
            .count();
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        settled = balance().await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(balance().await, settled, "alice charged after she left");
    let accounts = w.server.cli(&["accounts"]);
    assert!(!accounts.contains("MISMATCH"), "{accounts}");
}

/// Counts the datagrams that reach `socket` within `for_how_long`.
async fn count_datagrams(socket: &tokio::net::UdpSocket, for_how_long: Duration) -> usize {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    let _ = tokio::time::timeout(for_how_long, async {
        while socket.recv_from(&mut buf).await.is_ok() {
            n += 1;
        }
    })
    .await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_cannot_keep_steering_the_others_probes() {
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
    // carol goes through the relay only: nobody has a direct path to her, so every address list
    // she sends would be probed.
    a.invite("carol").await.unwrap();
    let (id, _) = vcsdk_tests::conference::invitation(&mut carol.1).await;
    let c = carol
        .0
        .join_conference(
            &id,
            ConferenceOptions {
                media: ConferenceMediaConfig {
                    direct: false,
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    all_at(&[&a, &b, &c], 3).await;
    deliver(&c, &a, b"via the relay").await;
    // The victim: an address carol wants the others to send packets to.
    let victim = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target: SocketAddr = victim.local_addr().unwrap();
    // carol already sent her (empty) list in this epoch: new lists are refused outright.
    let refused_before = a.stats().addresses_refused;
    let hammer = |c: vcsdk::client::Conference| async move {
        for _ in 0..10 {
            c.announce_addresses(&[target], None).await.expect("sent");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let (_, probes) = tokio::join!(
        hammer(c.clone()),
        count_datagrams(&victim, Duration::from_secs(3))
    );
    assert_eq!(probes, 0, "probes reached the address carol chose");
    let refused_now = a.stats().addresses_refused;
    assert!(refused_now >= refused_before + 10, "{refused_now}");
    // In a new epoch she may send one list: it is probed a bounded number of times, and the
    // lists she sends after it are refused.
    b.leave().await.unwrap();
    all_at(&[&a, &c], 4).await;
    let (_, probes) = tokio::join!(
        hammer(c.clone()),
        count_datagrams(&victim, Duration::from_secs(4))
    );
    assert!(
        (1..=32).contains(&probes),
        "{probes} probes for one list in one epoch"
    );
    assert!(a.stats().addresses_refused >= refused_now + 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stranger_cannot_fill_a_members_early_frame_buffer() {
    let w = World::new(&[]);
    let (_clients, [a, b, _c]) = trio(&w, Policy::default()).await;
    let port = a.media_address().expect("alice's media port");
    let target = SocketAddr::from(([127, 0, 0, 1], port.port()));
    let bob_index = b.index().expect("bob's index");
    let before = a.stats();
    // Single-packet frames in bob's name, on the transport stream (the only kind an unproven
    // address may send), each of a future epoch: far ahead, and just ahead.
    let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut sent = 0u64;
    for (i, ahead) in (0..600u64).map(|i| (i, if i % 2 == 0 { 1 } else { 1000 })) {
        let mut frame = vec![0u8; 64];
        let header = vcsdk::media::sframe::Header {
            kid: conference_kid(a.epoch() + ahead as u32, bob_index, TRANSPORT_STREAM),
            ctr: i,
        };
        let n = header.encode(&mut frame).unwrap();
        frame.truncate(n + 40);
        let mut scratch = vec![0u8; 1500];
        vcsdk::media::packet::split(
            bob_index,
            TRANSPORT_STREAM,
            i as u32,
            &frame,
            1200,
            &mut scratch,
            |p| {
                let _ = stranger.try_send_to(p, target);
            },
        )
        .unwrap();
        sent += 1;
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // Wait (bounded) until alice has seen them.
    for _ in 0..100 {
        if a.stats().foreign_packets >= before.foreign_packets + sent / 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = a.stats();
    assert_eq!(
        after.early_frames, before.early_frames,
        "a stranger's frames were held as early frames: {after:?}"
    );
    assert!(after.foreign_packets >= before.foreign_packets + sent / 2);
    // The members' own media is untouched.
    deliver(&b, &a, b"unharmed").await;
}
