//! A long-lived client keeps one live certificate check whose CRL it refreshes from the CA: with
//! CRLs that live 4 s, it outlives many of them and still verifies peers, runs a call's key
//! agreement and reconnects after the server restarts; it sees a revocation made after it
//! connected (a dishonest server still delivering the revoked member's conference invitation
//! gets it refused); and once the CA is gone and its CRL expires, checks fail naming the stale
//! CRL.

mod dishonest;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::Receiver;
use vcsdk::client::{Client, ClientEvent, ClientOptions, CrlSource};
use vcsdk::identity::IdentityStore;
use vcsdk::media::MediaConfig;
use vcsdk::pki::CertificateError;
use vcsdk::proto::signal::Answer;
use vcsdk::util::unix_now;
use vcsdk::Error;
use vcsdk_tests::{enroll, TestCa, TestServer};

/// How long each CRL the CA signs is valid.
const CRL_SECS: i64 = 4;

async fn long_lived(server: &TestServer, store: &IdentityStore) -> (Client, Receiver<ClientEvent>) {
    let identity = Arc::new(store.load().unwrap());
    let mut options =
        ClientOptions::new(server.addr(), identity, store.refresh_crl().await.unwrap())
            .with_crl_source(CrlSource::Store(store.clone()));
    options.server_name = Some("localhost".into());
    options.crl_refresh = Duration::from_secs(1);
    let (client, events) = Client::connect(options).await.expect("connect");
    client
        .register(&client.welcome().terms_version)
        .await
        .expect("register");
    (client, events)
}

async fn wait_event<T>(
    events: &mut Receiver<ClientEvent>,
    secs: u64,
    mut pick: impl FnMut(&ClientEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) => {
                if let Some(t) = pick(&e) {
                    return t;
                }
            }
            other => panic!("expected event missing after {secs} s: {other:?}"),
        }
    }
}

/// Polls `check` every 200 ms for at most `secs` until it gives `Some`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    secs: u64,
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(t) = check().await {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_lived_client_outlives_many_crls_and_sees_new_revocations() {
    let mut ca = TestCa::start(&["--crl-validity", &format!("{CRL_SECS}s")]);
    let mut server = TestServer::start(&ca, &["crl_refresh_secs = 1"]);
    let home = tempfile::tempdir().unwrap();
    let alice_store = enroll(&ca, home.path(), "alice").await;
    let bob_store = enroll(&ca, home.path(), "bob").await;
    let carol_store = enroll(&ca, home.path(), "carol").await;
    let (alice, mut alice_events) = long_lived(&server, &alice_store).await;
    let (bob, mut bob_events) = long_lived(&server, &bob_store).await;
    let (carol, _carol_events) = long_lived(&server, &carol_store).await;
    server.cli(&["credit", "add", "--user", "alice", "--amount", "1000"]);
    let first = alice.crl_status().crl.expect("a CRL from the CA");
    assert!(first.next_update - first.this_update <= CRL_SECS);
    alice
        .peer_certificate("carol")
        .await
        .expect("carol is valid");

    // Three CRL lifetimes pass: the CRL alice connected with is long expired.
    tokio::time::sleep(Duration::from_secs(3 * CRL_SECS as u64 + 1)).await;
    assert!(first.next_update <= unix_now());
    let status = alice.crl_status();
    let current = status.crl.clone().expect("a CRL");
    assert!(current.number > first.number, "{status:?}");
    assert!(current.next_update > unix_now(), "{status:?}");
    assert_eq!(status.failures, 0, "{status:?}");

    // It still verifies peers and runs a call's end-to-end key agreement.
    alice.peer_certificate("bob").await.expect("bob verifies");
    let call = alice.call("bob").await.unwrap();
    wait_event(&mut bob_events, 10, |e| {
        matches!(e, ClientEvent::IncomingCall { call_id, .. } if *call_id == call).then_some(())
    })
    .await;
    bob.answer(&call, Answer::Accept).await.unwrap();
    let (a, b) = tokio::join!(
        alice.media(&call, MediaConfig::default()),
        bob.media(&call, MediaConfig::default())
    );
    a.expect("alice's side of the key agreement");
    b.expect("bob's side of the key agreement");
    alice.terminate(&call, None).await.unwrap();

    // It reconnects after the server restarts: the server's certificate is checked with the
    // current CRL.
    let addr = server.addr();
    server.process.kill();
    let data = server.data_dir();
    server.process = TestServer::serve(data.to_str().unwrap(), &addr);
    wait_event(&mut alice_events, 30, |e| {
        matches!(e, ClientEvent::Reconnected).then_some(())
    })
    .await;
    alice
        .peer_certificate("carol")
        .await
        .expect("carol still valid");

    // carol is revoked after alice connected: alice's own check refuses her certificate.
    let serial = carol_store.load().unwrap().info().serial.clone();
    drop(carol);
    ca.cli(&["revoke", "--serial", &serial, "--reason", "keyCompromise"]);
    let refusal = eventually(10, "alice sees carol's revocation", || {
        let alice = alice.clone();
        async move {
            match alice.peer_certificate("carol").await {
                Err(Error::Certificate(e)) => Some(e),
                _ => None,
            }
        }
    })
    .await;
    assert_eq!(refusal, CertificateError::Revoked);

    // The CA goes away: the refreshes fail, the CRL expires, and every check names the stale
    // CRL instead of passing without revocation.
    ca.process.kill();
    let stale = eventually(3 * CRL_SECS as u64, "checks fail on the stale CRL", || {
        let alice = alice.clone();
        async move {
            match alice.peer_certificate("bob").await {
                Err(Error::Certificate(e @ CertificateError::StaleCrl { .. })) => Some(e),
                _ => None,
            }
        }
    })
    .await;
    let text = stale.to_string();
    assert!(text.contains("stale CRL"), "{text}");
    let status = alice.crl_status();
    assert!(
        status.failures > 0 && status.last_error.is_some(),
        "{status:?}"
    );
}

#[test]
fn only_current_crls_signed_by_the_pinned_root_and_no_older_are_installed() {
    let ca = vcsdk_tests::LocalCa::new();
    let other = vcsdk_tests::LocalCa::new();
    let live = vcsdk::pki::LiveCheck::new(
        vcsdk::pki::CertificateCheck::new(ca.ca.root().clone()).unwrap(),
    );
    let now = unix_now();
    let first = ca.ca.current_crl().unwrap().der;
    let installed = live.install(&first, now).expect("the CA's CRL");
    // Another CA's CRL (same name, another key), garbage, a tampered CRL and a CRL judged after
    // its nextUpdate are refused.
    let foreign = other.ca.current_crl().unwrap().der;
    assert!(matches!(
        live.install(&foreign, now),
        Err(CertificateError::BadCrl(m)) if m.contains("signature")
    ));
    assert!(matches!(
        live.install(&[0x30, 0x03, 1, 2, 3], now),
        Err(CertificateError::BadCrl(_))
    ));
    let mut tampered = first.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(matches!(
        live.install(&tampered, now),
        Err(CertificateError::BadCrl(_))
    ));
    assert!(matches!(
        live.install(&first, installed.next_update),
        Err(CertificateError::BadCrl(m)) if m.contains("nextUpdate")
    ));
    // A revocation makes a newer CRL; the older one can no longer be put back.
    let victim = ca.client("victim");
    ca.revoke(&victim);
    let newer = ca.ca.current_crl().unwrap().der;
    let info = live.install(&newer, now).expect("the newer CRL");
    assert!(info.number > installed.number && info.revoked == 1);
    assert!(matches!(
        live.install(&first, now),
        Err(CertificateError::BadCrl(m)) if m.contains("older")
    ));
    assert_eq!(live.status().crl, Some(info));
    assert_eq!(
        live.verify(
            std::slice::from_ref(victim.certificate()),
            vcsdk::pki::Usage::Client,
            Some("victim"),
            rustls_pki_types::UnixTime::now()
        )
        .unwrap_err(),
        CertificateError::Revoked
    );
}

/// An invitation to a fresh conference, signed by `inviter`, for `invitee`.
fn invitation(
    inviter: &vcsdk::identity::Identity,
    invitee: &vcsdk::identity::Identity,
) -> (String, vcsdk::conference::entry::Sequenced) {
    use vcsdk::conference::entry::{
        sha256_hex, Body, Content, Entry, Sequenced, CONFERENCE_VERSION,
    };
    let mut id = [0u8; 16];
    aws_lc_rs::rand::fill(&mut id).unwrap();
    let conf = vcsdk::util::hex(&id);
    let content = Content {
        version: CONFERENCE_VERSION,
        conf: conf.clone(),
        author: inviter.id().to_owned(),
        counter: dishonest::now_ms() as u64,
        epoch: 0,
        roster: vcsdk::util::hex(
            vcsdk::conference::state::ConferenceState::new(&conf).roster_hash(),
        ),
        body: Body::Invite {
            invitee: invitee.id().to_owned(),
            invitee_certificate: sha256_hex(invitee.certificate()),
            ttl_secs: 300,
        },
    };
    let entry = Entry::sign(inviter, &content).unwrap();
    (
        conf,
        Sequenced {
            seq: 1,
            at_ms: dishonest::now_ms(),
            entry,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_revoked_after_connecting_cannot_invite_even_through_a_dishonest_server() {
    let ca = TestCa::start(&[]);
    let home = tempfile::tempdir().unwrap();
    let alice_store = enroll(&ca, home.path(), "alice").await;
    let bob = enroll(&ca, home.path(), "bob").await.load().unwrap();
    let carol_store = enroll(&ca, home.path(), "carol").await;
    let carol = carol_store.load().unwrap();
    let alice = Arc::new(alice_store.load().unwrap());
    let server = dishonest::Dishonest::start(&ca, home.path()).await;
    let mut options = ClientOptions::new(
        server.addr(),
        alice.clone(),
        alice_store.refresh_crl().await.unwrap(),
    )
    .with_crl_source(CrlSource::Store(alice_store.clone()));
    options.server_name = Some("localhost".into());
    options.reconnect = false;
    options.crl_refresh = Duration::from_secs(1);
    let (connected, session) = tokio::join!(Client::connect(options), server.accept(alice.id()));
    let (client, mut events) = connected.unwrap();
    let invited = |events: &mut Receiver<ClientEvent>| {
        let mut seen = Vec::new();
        while let Ok(e) = events.try_recv() {
            if let ClientEvent::ConferenceInvitation { conf, from, .. } = e {
                seen.push((conf, from));
            }
        }
        seen
    };

    // Before: carol's invitation is shown.
    let (conf, invite) = invitation(&carol, &alice);
    session.event(vcsdk::proto::signal::Event::ConfInvitation {
        conf: conf.clone(),
        invite,
    });
    let (c, from) = wait_event(&mut events, 10, |e| match e {
        ClientEvent::ConferenceInvitation { conf, from, .. } => Some((conf.clone(), from.clone())),
        _ => None,
    })
    .await;
    assert_eq!((c.as_str(), from.as_str()), (conf.as_str(), "carol"));

    // carol is revoked; alice's client picks up the new CRL by itself.
    let before = client.crl_status().crl.unwrap().number;
    ca.cli(&[
        "revoke",
        "--serial",
        &carol.info().serial,
        "--reason",
        "keyCompromise",
    ]);
    eventually(10, "alice's CRL lists carol", || {
        let status = client.crl_status();
        async move { status.crl.filter(|c| c.number > before && c.revoked >= 1) }
    })
    .await;

    // After: the server still delivers carol's invitation, then bob's; only bob's is shown.
    let (refused, invite) = invitation(&carol, &alice);
    session.event(vcsdk::proto::signal::Event::ConfInvitation {
        conf: refused.clone(),
        invite,
    });
    let (accepted, invite) = invitation(&bob, &alice);
    session.event(vcsdk::proto::signal::Event::ConfInvitation {
        conf: accepted.clone(),
        invite,
    });
    let (c, from) = wait_event(&mut events, 10, |e| match e {
        ClientEvent::ConferenceInvitation { conf, from, .. } => Some((conf.clone(), from.clone())),
        _ => None,
    })
    .await;
    assert_eq!((c.as_str(), from.as_str()), (accepted.as_str(), "bob"));
    assert!(invited(&mut events).is_empty());
    assert!(
        !client
            .conference_invitations()
            .iter()
            .any(|(c, _)| *c == refused),
        "the revoked member's invitation is held"
    );
}
