//! What a member does with control messages a compromised server (or anyone on its path) could
//! deliver: forged signatures, another signer, replays, stale epochs, wrong roster hashes,
//! actions the author may not take, hidden members. Each is fed to the real state machine with
//! certificates from a real CA, and every member — built from the same log — rejects it alike
//! and stays where it was. (`conference.rs` shows the real server refusing them first.)

use vcsdk::conference::entry::{sha256_hex, Body, Content, Entry, Sequenced, SERVER_AUTHOR};
use vcsdk::conference::group_key::{unwrap_epoch, MemberSecrets, WrapContext};
use vcsdk::conference::state::{Change, ConferenceState, Verifier};
use vcsdk::conference::{next_epoch, Mode, Policy};
use vcsdk::identity::Identity;
use vcsdk::pki::CertificateCheck;
use vcsdk::util::hex;

type Ca = vcsdk_tests::LocalCa;

const CONF: &str = "00112233445566778899aabbccddeeff";

/// A log being written, and the members that follow it.
struct Log {
    check: CertificateCheck,
    entries: Vec<Sequenced>,
    at_ms: i64,
}

impl Log {
    fn verifier(&self) -> Verifier<'_> {
        Verifier {
            check: &self.check,
            server_name: Some("localhost"),
            live: true,
        }
    }

    /// Sequences `entry` after checking it as the server does (must pass).
    fn post(&mut self, state: &mut ConferenceState, entry: Entry) -> Vec<Change> {
        self.at_ms += 1000;
        let s = Sequenced {
            seq: state.next_seq(),
            at_ms: self.at_ms,
            entry,
        };
        let changes = state.admit(&s, &self.verifier()).expect("an honest entry");
        self.entries.push(s);
        changes
    }

    /// A member that rebuilt its state from the log applies `entry` as the next one.
    fn deliver(
        &self,
        state: &mut ConferenceState,
        entry: Entry,
        at_ms: i64,
    ) -> Result<Vec<Change>, String> {
        let s = Sequenced {
            seq: state.next_seq(),
            at_ms,
            entry,
        };
        state
            .apply(&s, &self.verifier())
            .map_err(|r| format!("{}: {}", r.code, r.reason))
    }

    /// A member rebuilt from the log so far.
    fn member_state(&self) -> ConferenceState {
        let mut st = ConferenceState::new(CONF);
        for s in &self.entries {
            st.apply(s, &self.verifier()).expect("the log applies");
        }
        st
    }
}

fn sign(identity: &Identity, content: &Content) -> Entry {
    Entry::sign(identity, content).unwrap()
}

fn content(state: &ConferenceState, author: &str, body: Body) -> Content {
    state.content(author, body)
}

#[test]
fn forged_replayed_stale_and_unauthorised_entries_are_rejected_by_every_member() {
    let ca = Ca::new();
    let (alice, bob, carol, mallory) = (
        ca.client("alice"),
        ca.client("bob"),
        ca.client("carol"),
        ca.client("mallory"),
    );
    let server = ca.server();
    let keys: Vec<MemberSecrets> = (0..4).map(|_| MemberSecrets::generate().unwrap()).collect();
    let mut log = Log {
        check: ca.check(),
        entries: Vec::new(),
        at_ms: vcsdk::util::unix_now() * 1000,
    };
    let mut st = ConferenceState::new(CONF);
    let create = content(
        &st,
        "alice",
        Body::Create {
            policy: Policy::for_level(2, Mode::Moderation),
            keys: keys[0].public().clone(),
        },
    );
    log.post(&mut st, sign(&alice, &create));
    let bundle_for = |st: &ConferenceState, author: &Identity| {
        let made = next_epoch(st, author, st.counter_of(author.id()) + 1).unwrap();
        (made.entry, made.prepared)
    };
    let (b1, _) = bundle_for(&st, &alice);
    log.post(&mut st, b1);
    let invite = |st: &ConferenceState, who: &Identity, by: &Identity| {
        sign(
            by,
            &content(
                st,
                by.id(),
                Body::Invite {
                    invitee: who.id().into(),
                    invitee_certificate: sha256_hex(who.certificate()),
                    ttl_secs: 60,
                },
            ),
        )
    };
    let inv = invite(&st, &bob, &alice);
    log.post(&mut st, inv);
    let bob_invite = st.invitations()[0].id.clone();
    let join = content(
        &st,
        "bob",
        Body::Join {
            invite: bob_invite.clone(),
            keys: keys[1].public().clone(),
        },
    );
    log.post(&mut st, sign(&bob, &join));
    let (b2, prepared) = bundle_for(&st, &alice);
    log.post(&mut st, b2.clone());
    assert_eq!(st.epoch(), 2);
    // Bob opens his wrap of epoch 2.
    let ctx = WrapContext {
        conf: CONF,
        epoch: 2,
        roster_hash: st.roster_hash(),
        post_quantum: false,
    };
    let (_, bob_wrap) = &prepared.wraps[0];
    assert_eq!(
        unwrap_epoch(&ctx, &keys[1], 1, "bob", &prepared.ephemeral, bob_wrap).unwrap(),
        prepared.secret
    );

    let now = log.at_ms + 1000;
    let member = log.member_state();
    let mut attacks: Vec<(&str, Entry, &str)> = Vec::new();
    // Someone else's key: mallory signs as alice (alice's certificate, mallory's signature).
    let mut forged = sign(&mallory, &content(&member, "alice", Body::Leave));
    forged.certificate = hex(alice.certificate());
    attacks.push(("signed by another key", forged, "signature"));
    // A certificate for another id than the author.
    let as_alice = sign(&mallory, &content(&member, "alice", Body::Leave));
    attacks.push(("another id's certificate", as_alice, "signature"));
    // Altered after signing.
    let mut altered = sign(
        &alice,
        &content(&member, "alice", Body::HandOver { to: "bob".into() }),
    );
    altered.content = altered.content.replace("\"bob\"", "\"alice\"");
    attacks.push(("altered content", altered, "signature"));
    // A replay of an entry already applied (bob's join), and a replayed counter.
    attacks.push(("replayed join", log.entries[3].entry.clone(), "replay"));
    let mut c = content(&member, "alice", Body::Leave);
    c.counter = member.counter_of("alice");
    attacks.push(("reused counter", sign(&alice, &c), "replay"));
    // Stale epoch, wrong roster hash.
    let mut c = content(&member, "bob", Body::Leave);
    c.epoch = 1;
    attacks.push(("stale epoch", sign(&bob, &c), "stale"));
    let mut c = content(&member, "bob", Body::Leave);
    c.roster = "00".repeat(32);
    attacks.push(("wrong roster hash", sign(&bob, &c), "stale"));
    // Not allowed: a non-member, a non-moderator removing, a non-distributor's bundle, a client
    // posing as the server, a join without an invitation (a hidden member), a server that signs
    // a member's action.
    attacks.push((
        "a non-member",
        sign(&mallory, &content(&member, "mallory", Body::Leave)),
        "forbidden",
    ));
    attacks.push((
        "bob removes alice",
        sign(
            &bob,
            &content(
                &member,
                "bob",
                Body::Remove {
                    member: "alice".into(),
                },
            ),
        ),
        "forbidden",
    ));
    let bob_bundle = {
        let (e, _) = bundle_for(&member, &alice);
        let mut c: Content = serde_json::from_str(&e.content).unwrap();
        c.author = "bob".into();
        c.counter = member.counter_of("bob") + 1;
        sign(&bob, &c)
    };
    attacks.push(("bob distributes", bob_bundle, "forbidden"));
    attacks.push((
        "a client signs a departure",
        sign(
            &bob,
            &content(
                &member,
                "bob",
                Body::Departed {
                    member: "alice".into(),
                    reason: "x".into(),
                },
            ),
        ),
        "forbidden",
    ));
    let mut c = content(
        &member,
        SERVER_AUTHOR,
        Body::Departed {
            member: "alice".into(),
            reason: "x".into(),
        },
    );
    c.author = SERVER_AUTHOR.into();
    attacks.push((
        "a client's key as the server",
        sign(&mallory, &c),
        "signature",
    ));
    attacks.push((
        "the server signs a member's leave",
        sign(&server, &content(&member, SERVER_AUTHOR, Body::Leave)),
        "forbidden",
    ));
    attacks.push((
        "carol joins uninvited",
        sign(
            &carol,
            &content(
                &member,
                "carol",
                Body::Join {
                    invite: bob_invite.clone(),
                    keys: keys[2].public().clone(),
                },
            ),
        ),
        "forbidden",
    ));
    attacks.push((
        "a bundle for a skipped epoch",
        {
            let (e, _) = bundle_for(&member, &alice);
            let mut c: Content = serde_json::from_str(&e.content).unwrap();
            if let Body::Bundle { epoch, .. } = &mut c.body {
                *epoch += 1;
            }
            sign(&alice, &c)
        },
        "stale",
    ));
    attacks.push((
        "a bundle that leaves a member out",
        {
            let (e, _) = bundle_for(&member, &alice);
            let mut c: Content = serde_json::from_str(&e.content).unwrap();
            if let Body::Bundle { wraps, .. } = &mut c.body {
                wraps.clear();
            }
            sign(&alice, &c)
        },
        "invalid",
    ));
    let mut other_conf = content(&member, "alice", Body::Leave);
    other_conf.conf = "ffeeddccbbaa99887766554433221100".into();
    attacks.push((
        "another conference's entry",
        sign(&alice, &other_conf),
        "invalid",
    ));

    for (what, entry, code) in attacks {
        // Two members built from the same log reject it alike, and nothing changes but the
        // sequence number it used up.
        for _ in 0..2 {
            let mut m = log.member_state();
            let before = (
                m.epoch(),
                m.roster_hash_hex(),
                m.moderator().map(str::to_owned),
                m.counter_of("alice"),
            );
            let refused = log.deliver(&mut m, entry.clone(), now).expect_err(what);
            assert!(refused.starts_with(code), "{what}: {refused}");
            assert_eq!(
                before,
                (
                    m.epoch(),
                    m.roster_hash_hex(),
                    m.moderator().map(str::to_owned),
                    m.counter_of("alice")
                ),
                "{what} changed the state"
            );
            assert_eq!(m.next_seq(), log.entries.len() as u64 + 1, "{what}");
        }
    }

    // An entry out of order (a gap, or one already applied) uses up nothing.
    let mut m = log.member_state();
    let leave = sign(&bob, &content(&m, "bob", Body::Leave));
    let gap = Sequenced {
        seq: m.next_seq() + 3,
        at_ms: now,
        entry: leave.clone(),
    };
    assert_eq!(m.apply(&gap, &log.verifier()).unwrap_err().code, "order");
    let old = log.entries[1].clone();
    assert_eq!(m.apply(&old, &log.verifier()).unwrap_err().code, "order");
    assert_eq!(m.next_seq(), log.entries.len() as u64);
    // And the honest entry still applies.
    let changes = log.deliver(&mut m, leave, now).unwrap();
    assert!(matches!(&changes[0], Change::Left { member, .. } if member == "bob"));
    assert!(m.rekey_due());
}

#[test]
fn a_revoked_authors_entries_are_refused_and_lapsed_invitations_cannot_be_used() {
    let ca = Ca::new();
    let (alice, bob) = (ca.client("alice"), ca.client("bob"));
    let keys = MemberSecrets::generate().unwrap();
    let mut log = Log {
        check: ca.check(),
        entries: Vec::new(),
        at_ms: vcsdk::util::unix_now() * 1000,
    };
    let mut st = ConferenceState::new(CONF);
    let create = content(
        &st,
        "alice",
        Body::Create {
            policy: Policy::for_level(3, Mode::Voting),
            keys: keys.public().clone(),
        },
    );
    log.post(&mut st, sign(&alice, &create));
    let inv = sign(
        &alice,
        &content(
            &st,
            "alice",
            Body::Invite {
                invitee: "bob".into(),
                invitee_certificate: sha256_hex(bob.certificate()),
                ttl_secs: 5,
            },
        ),
    );
    log.post(&mut st, inv);
    let invite = st.invitations()[0].id.clone();
    let join = sign(
        &bob,
        &content(
            &st,
            "bob",
            Body::Join {
                invite,
                keys: MemberSecrets::generate().unwrap().public().clone(),
            },
        ),
    );
    // Ten seconds later the five-second invitation has lapsed.
    let mut m = log.member_state();
    let late = log.deliver(&mut m, join, log.at_ms + 10_000).unwrap_err();
    assert!(late.contains("lapsed"), "{late}");

    // Alice's certificate is revoked: with the new CRL, her next entry is refused.
    ca.revoke(&alice);
    log.check = ca.check();
    let mut m = log.member_state_historical();
    let leave = sign(&alice, &content(&m, "alice", Body::Leave));
    let refused = log.deliver(&mut m, leave, log.at_ms + 1).unwrap_err();
    assert!(refused.contains("revoked"), "{refused}");
}

impl Log {
    /// A member that joined later rebuilds the log before it joined at each entry's own time,
    /// without the CRL (authors may have renewed since).
    fn member_state_historical(&self) -> ConferenceState {
        let mut st = ConferenceState::new(CONF);
        let verifier = Verifier {
            live: false,
            ..self.verifier()
        };
        for s in &self.entries {
            st.apply(s, &verifier).expect("the log applies");
        }
        st
    }
}
