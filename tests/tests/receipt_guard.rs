//! A dishonest operator cannot obtain receipt signatures for calls that never happened or for
//! stretched ones: the SDK signs only for calls and conference participations it was in, at the
//! moments it saw, and reports every refusal. The attacker is a TLS server in the test (a server
//! certificate from the real vc-ca, the SDK's protocol types); genuine receipts are still signed
//! for real calls and conferences against the real vc-server.

mod dishonest;

use std::sync::Arc;
use std::time::Duration;

use dishonest::{now_ms, Dishonest, Session};
use tokio::sync::mpsc::Receiver;
use vcsdk::billing::{receipt_statement, verify_receipt, verify_records, ReceiptKind, RecordCheck};
use vcsdk::client::{Client, ClientEvent, ClientOptions, ConferenceOptions};
use vcsdk::identity::IdentityStore;
use vcsdk::proto::signal::{Answer, CallState, Event, Request};
use vcsdk_tests::{enroll, online, TestCa, TestServer};

/// A receipt request as the server sends it.
fn ask(kind: ReceiptKind, call_id: &str, caller: &str, callee: &str, at_ms: i64) -> Event {
    Event::ReceiptRequest {
        call_id: call_id.into(),
        receipt: kind,
        statement: receipt_statement(kind, call_id, caller, callee, at_ms),
    }
}

/// Every signature the client sent: (call id, kind, signature).
fn signatures(session: &Session) -> Vec<(String, ReceiptKind, Vec<u8>)> {
    session.with_log(|l| {
        l.requests
            .iter()
            .filter_map(|r| match r {
                Request::SignReceipt {
                    call_id,
                    kind,
                    signature_hex,
                } => Some((
                    call_id.clone(),
                    *kind,
                    vcsdk::util::unhex(signature_hex).expect("hex"),
                )),
                _ => None,
            })
            .collect()
    })
}

/// Waits until the client sent a signature for (`call_id`, `kind`).
async fn signed(session: &Session, call_id: &str, kind: ReceiptKind) {
    session
        .wait_for(10, |l| {
            l.requests
                .iter()
                .any(|r| matches!(r, Request::SignReceipt { call_id: c, kind: k, .. } if c == call_id && *k == kind))
                .then_some(())
        })
        .await
}

/// Collects the refusals reported until `count` arrived (at most `secs`).
async fn refusals(
    events: &mut Receiver<ClientEvent>,
    count: usize,
    secs: u64,
) -> Vec<(String, ReceiptKind, String, String)> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while seen.len() < count {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(ClientEvent::ReceiptRefused {
                call_id,
                kind,
                statement,
                reason,
            })) => seen.push((call_id, kind, statement, reason)),
            Ok(Some(_)) => {}
            other => panic!(
                "only {} refusals reported: {seen:?} ({other:?})",
                seen.len()
            ),
        }
    }
    seen
}

async fn connect_to(
    dishonest: &Dishonest,
    store: &IdentityStore,
) -> (Client, Receiver<ClientEvent>, Session) {
    let identity = Arc::new(store.load().unwrap());
    let mut options = ClientOptions::new(
        dishonest.addr(),
        identity.clone(),
        store.refresh_crl().await.unwrap(),
    );
    options.server_name = Some("localhost".into());
    options.reconnect = false;
    let (connected, session) =
        tokio::join!(Client::connect(options), dishonest.accept(identity.id()));
    let (client, events) = connected.expect("connect to the dishonest server");
    (client, events, session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_and_stretched_calls_get_no_signature() {
    let ca = TestCa::start(&[]);
    let home = tempfile::tempdir().unwrap();
    let alice = enroll(&ca, home.path(), "alice").await;
    let key = alice.load().unwrap().info().public_key.clone();
    let dishonest = Dishonest::start(&ca, home.path()).await;
    let (client, mut events, session) = connect_to(&dishonest, &alice).await;
    let now = now_ms();

    // A call that never happened, answered and ended; one naming alice as the callee.
    let mut bad = vec![
        ask(ReceiptKind::Answer, "invented-1", "alice", "bob", now),
        ask(ReceiptKind::End, "invented-1", "alice", "bob", now + 60_000),
        ask(ReceiptKind::Answer, "invented-2", "bob", "alice", now),
    ];
    // A real call (placed here, answered, ended) whose answer is moved a minute earlier and
    // whose end a minute later; and one naming another callee.
    let call = client.call("bob").await.unwrap();
    session.event(Event::CallState {
        call_id: call.clone(),
        state: CallState::Accepted,
        reason: None,
    });
    let answered = now_ms();
    bad.push(ask(
        ReceiptKind::Answer,
        &call,
        "alice",
        "bob",
        answered - 60_000,
    ));
    bad.push(ask(ReceiptKind::Answer, &call, "alice", "carol", answered));
    for e in &bad {
        session.event(e.clone());
    }
    let genuine_answer = ask(ReceiptKind::Answer, &call, "alice", "bob", answered);
    session.event(genuine_answer.clone());
    signed(&session, &call, ReceiptKind::Answer).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    session.event(Event::CallState {
        call_id: call.clone(),
        state: CallState::Ended,
        reason: Some("hung up".into()),
    });
    let ended = now_ms();
    let stretched_end = ask(ReceiptKind::End, &call, "alice", "bob", ended + 60_000);
    session.event(stretched_end.clone());
    bad.push(stretched_end);
    // Asking again for the answer already signed gets nothing either.
    session.event(genuine_answer.clone());
    let genuine_end = ask(ReceiptKind::End, &call, "alice", "bob", ended);
    session.event(genuine_end.clone());
    signed(&session, &call, ReceiptKind::End).await;

    // Requests are judged in order: everything before the genuine end was judged already.
    let reported = refusals(&mut events, bad.len() + 1, 10).await;
    let statement = |e: &Event| match e {
        Event::ReceiptRequest { statement, .. } => statement.clone(),
        _ => unreachable!(),
    };
    for e in &bad {
        let s = statement(e);
        assert!(
            reported.iter().any(|(_, _, st, _)| *st == s),
            "refusal of {s:?} not reported: {reported:?}"
        );
    }
    let stretched = reported
        .iter()
        .find(|(c, k, st, _)| {
            *c == call
                && *k == ReceiptKind::Answer
                && st.ends_with(&format!("\n{}\n", answered - 60_000))
        })
        .expect("the stretched answer is reported");
    assert!(stretched.3.contains("ms apart"), "{}", stretched.3);
    assert!(
        reported
            .iter()
            .any(|(c, _, _, r)| c == "invented-1" && r.contains("never placed")),
        "{reported:?}"
    );

    // Exactly the two genuine receipts were signed, and no signature verifies over any refused
    // statement.
    let sigs = signatures(&session);
    assert_eq!(sigs.len(), 2, "{sigs:?}");
    for (genuine, kind) in [
        (&genuine_answer, ReceiptKind::Answer),
        (&genuine_end, ReceiptKind::End),
    ] {
        let s = statement(genuine);
        assert!(sigs
            .iter()
            .any(|(c, k, sig)| *c == call && *k == kind && verify_receipt(&key, &s, sig)));
    }
    for e in &bad {
        let s = statement(e);
        assert!(
            sigs.iter()
                .all(|(_, _, sig)| !verify_receipt(&key, &s, sig)),
            "a signature verifies over the refused {s:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conference_participations_are_signed_once_at_the_join_and_leave_seen() {
    let ca = TestCa::start(&[]);
    let home = tempfile::tempdir().unwrap();
    let alice = enroll(&ca, home.path(), "alice").await;
    let key = alice.load().unwrap().info().public_key.clone();
    let dishonest = Dishonest::start(&ca, home.path()).await;
    let (client, mut events, session) = connect_to(&dishonest, &alice).await;

    // A participation in a conference alice was never in.
    let elsewhere = "00112233445566778899aabbccddeeff";
    let invented = ask(
        ReceiptKind::Answer,
        "rec-0",
        "alice",
        &format!("conf:{elsewhere}"),
        now_ms(),
    );
    session.event(invented.clone());

    let conference = client
        .create_conference(ConferenceOptions::default())
        .await
        .expect("create through the dishonest server");
    let conf = conference.id().to_owned();
    let joined = session.with_log(|l| {
        l.sequenced
            .iter()
            .find(|(c, s)| *c == conf && s.seq == 0)
            .map(|(_, s)| s.at_ms)
            .unwrap()
    });
    let callee = format!("conf:{conf}");
    // Billed from a minute before the join; then the genuine one; then a second record for the
    // same participation; and a member alice never saw.
    let early = ask(
        ReceiptKind::Answer,
        "rec-1",
        "alice",
        &callee,
        joined - 60_000,
    );
    let genuine_answer = ask(ReceiptKind::Answer, "rec-1", "alice", &callee, joined);
    let second = ask(ReceiptKind::Answer, "rec-2", "alice", &callee, joined);
    let ghost = ask(
        ReceiptKind::Answer,
        "rec-3",
        "alice",
        &format!("{callee}:mallory"),
        joined,
    );
    for e in [&early, &genuine_answer, &second, &ghost] {
        session.event(e.clone());
    }
    signed(&session, "rec-1", ReceiptKind::Answer).await;
    // An end a minute in the future while alice is still in.
    let future_end = ask(
        ReceiptKind::End,
        "rec-1",
        "alice",
        &callee,
        now_ms() + 60_000,
    );
    session.event(future_end.clone());
    conference.leave().await.unwrap();
    let left = session.with_log(|l| {
        l.sequenced
            .iter()
            .filter(|(c, _)| *c == conf)
            .map(|(_, s)| s.at_ms)
            .max()
            .unwrap()
    });
    let stretched_end = ask(ReceiptKind::End, "rec-1", "alice", &callee, left + 60_000);
    let genuine_end = ask(ReceiptKind::End, "rec-1", "alice", &callee, left);
    session.event(stretched_end.clone());
    session.event(genuine_end.clone());
    signed(&session, "rec-1", ReceiptKind::End).await;

    let bad = [invented, early, second, ghost, future_end, stretched_end];
    let reported = refusals(&mut events, bad.len(), 20).await;
    let statement = |e: &Event| match e {
        Event::ReceiptRequest { statement, .. } => statement.clone(),
        _ => unreachable!(),
    };
    for e in &bad {
        let s = statement(e);
        assert!(
            reported.iter().any(|(_, _, st, _)| *st == s),
            "refusal of {s:?} not reported: {reported:?}"
        );
    }
    let sigs = signatures(&session);
    assert_eq!(sigs.len(), 2, "{sigs:?}");
    for (genuine, kind) in [
        (&genuine_answer, ReceiptKind::Answer),
        (&genuine_end, ReceiptKind::End),
    ] {
        let s = statement(genuine);
        assert!(sigs
            .iter()
            .any(|(c, k, sig)| c == "rec-1" && *k == kind && verify_receipt(&key, &s, sig)));
    }
    for e in &bad {
        let s = statement(e);
        assert!(sigs
            .iter()
            .all(|(_, _, sig)| !verify_receipt(&key, &s, sig)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_server_still_gets_every_genuine_receipt() {
    let ca = TestCa::start(&[]);
    let server = TestServer::start(&ca, &["debit_interval_secs = 1"]);
    let home = tempfile::tempdir().unwrap();
    let alice = enroll(&ca, home.path(), "alice").await;
    let bob = enroll(&ca, home.path(), "bob").await;
    let (a, mut a_events) = online(&server, &ca, &alice).await;
    let (b, mut b_events) = online(&server, &ca, &bob).await;
    server.cli(&["credit", "add", "--user", "alice", "--amount", "100"]);

    let call = a.call("bob").await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), b_events.recv()).await {
            Ok(Some(ClientEvent::IncomingCall { call_id, .. })) if call_id == call => break,
            Ok(Some(_)) => {}
            other => panic!("no incoming call: {other:?}"),
        }
    }
    b.answer(&call, Answer::Accept).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    a.terminate(&call, None).await.unwrap();

    let conference = a
        .create_conference(ConferenceOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    conference.leave().await.unwrap();

    // Both records charged to alice verify offline against the receipts she signed.
    let check = vcsdk::pki::CertificateCheck::from_root_pem(&ca.root_pem()).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let outcomes = loop {
        let records = a.call_records().await.unwrap();
        let outcomes = verify_records(&records, "alice", &check);
        let verified = outcomes
            .iter()
            .filter(|o| matches!(o, RecordCheck::Verified { .. }))
            .count();
        if verified == 2 || tokio::time::Instant::now() > deadline {
            break outcomes;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, RecordCheck::Verified { call_id, .. } if *call_id == call)),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, RecordCheck::Verified { .. }))
            .count(),
        2,
        "{outcomes:?}"
    );
    for events in [&mut a_events, &mut b_events] {
        while let Ok(e) = events.try_recv() {
            assert!(
                !matches!(e, ClientEvent::ReceiptRefused { .. }),
                "an honest receipt was refused: {e:?}"
            );
        }
    }
}
