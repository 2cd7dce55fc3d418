//! Billing with the real processes: exact charges, prepaid limits, vouchers, signed receipts
//! verified offline, and no loss when the server is killed during calls.

use std::time::Duration;

use tokio::sync::mpsc::Receiver;
use vcsdk::billing::{verify_records, CallRecord, RecordCheck, Tariff};
use vcsdk::client::{Client, ClientEvent};
use vcsdk::pki::CertificateCheck;
use vcsdk::proto::signal::{Answer, CallState, Request, ServerMessage};
use vcsdk::Error;
use vcsdk_tests::{enroll, online, run, RawClient, TestCa, TestServer};

/// connect fee 7, 120 per minute (2 per second), 2 s then 1 s, rounding up; debits every second.
const TARIFF: &[&str] = &[
    "ring_timeout_secs = 2",
    "debit_interval_secs = 1",
    "low_balance_warning_secs = 5",
    "connect_fee = 7",
    "rate_per_minute = 120",
    "first_increment_secs = 2",
    "next_increment_secs = 1",
    "rounding = \"up\"",
];

async fn wait_for<T>(
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

fn ended(call: &str) -> impl FnMut(&ClientEvent) -> Option<(CallState, Option<String>)> + '_ {
    move |e| match e {
        ClientEvent::CallState {
            call_id,
            state,
            reason,
        } if call_id == call && state.is_final() => Some((*state, reason.clone())),
        _ => None,
    }
}

/// Places a call from `a` to `b`, which `b` answers with `answer`; when accepted, `a` hangs up after
/// `hold`. Returns the call id.
async fn scripted_call(
    a: &Client,
    a_events: &mut Receiver<ClientEvent>,
    b: &Client,
    b_events: &mut Receiver<ClientEvent>,
    answer: Option<Answer>,
    hold: Duration,
) -> String {
    let call = a.call(b.user()).await.unwrap();
    wait_for(b_events, 5, |e| {
        matches!(e, ClientEvent::IncomingCall { call_id, .. } if *call_id == call).then_some(())
    })
    .await;
    match answer {
        Some(Answer::Accept) => {
            b.answer(&call, Answer::Accept).await.unwrap();
            wait_for(a_events, 5, |e| matches!(e, ClientEvent::CallState { call_id, state: CallState::Accepted, .. } if *call_id == call).then_some(())).await;
            tokio::time::sleep(hold).await;
            a.terminate(&call, None).await.unwrap();
        }
        Some(other) => b.answer(&call, other).await.unwrap(),
        None => {}
    }
    wait_for(a_events, 10, ended(&call)).await;
    wait_for(b_events, 10, ended(&call)).await;
    call
}

/// The tariff computed independently of `Tariff::cost`: step through the increments.
fn by_hand(answered: Option<i64>, ended: i64) -> i64 {
    let Some(answered) = answered else { return 0 };
    let ms = ended - answered;
    let billable = if ms <= 0 { 0 } else { (ms + 999) / 1000 };
    if billable == 0 {
        return 7;
    }
    let mut charged = 2;
    while charged < billable {
        charged += 1;
    }
    let cents = 120 * charged; // per minute × seconds
    7 + (cents + 59) / 60
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_receipts_and_vouchers() {
    let ca = TestCa::start(&[]);
    let server = TestServer::start(&ca, TARIFF);
    let home = tempfile::tempdir().unwrap();
    let alice_id = enroll(&ca, home.path(), "alice").await;
    let bob_id = enroll(&ca, home.path(), "bob").await;
    let (alice, mut a_events) = online(&server, &ca, &alice_id).await;
    let (bob, mut b_events) = online(&server, &ca, &bob_id).await;

    // A new prepaid account cannot afford a call.
    let err = alice.call("bob").await.unwrap_err();
    assert!(
        matches!(&err, Error::ServerRefused { code, .. } if code == "insufficient_credit"),
        "{err}"
    );

    // Credit by the operator; refused amounts say why.
    assert!(server
        .cli(&["credit", "add", "--user", "alice", "--amount", "100.00"])
        .contains("credited 100.00 EUR to alice; balance 100.00 EUR"));
    let data = server.data_dir();
    let data = data.to_str().unwrap();
    for (bad, why) in [
        ("-5", "more than zero"),
        ("0", "more than zero"),
        ("0.00", "more than zero"),
        ("10000000000.01", "too large"),
        ("0.001", "more decimals than EUR has (2)"),
        ("1,000", "not an amount of EUR"),
        ("ten", "not an amount of EUR"),
    ] {
        let out = run(
            "vc-server",
            &[
                "credit",
                "add",
                "--data-dir",
                data,
                "--user",
                "alice",
                "--amount",
                bad,
            ],
        );
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--amount") && stderr.contains(why),
            "{bad}: {stderr}"
        );
    }
    let out = run(
        "vc-server",
        &[
            "credit",
            "add",
            "--data-dir",
            data,
            "--user",
            "alice",
            "--amount",
            "99999999999999999999",
        ],
    );
    assert!(!out.status.success(), "an overflowing amount was accepted");
    let out = run(
        "vc-server",
        &[
            "credit",
            "add",
            "--data-dir",
            data,
            "--user",
            "nobody",
            "--amount",
            "5",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no account"));

    // Account types: refused values say why; postpaid lets a call through on credit.
    for (args, why) in [
        (vec!["--type", "gold"], "prepaid or postpaid"),
        (
            vec!["--type", "postpaid", "--credit-limit", "-1"],
            "as a positive amount",
        ),
        (
            vec!["--type", "prepaid", "--credit-limit", "5"],
            "no credit limit",
        ),
    ] {
        let mut all = vec!["account", "set", "--data-dir", data, "--user", "bob"];
        all.extend(args);
        let out = run("vc-server", &all);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(why), "{why}");
    }
    server.cli(&[
        "account",
        "set",
        "--user",
        "bob",
        "--type",
        "postpaid",
        "--credit-limit",
        "10.00",
    ]);
    let bob_account = bob.account_info().await.unwrap();
    assert_eq!(
        (
            bob_account.account_type.as_str(),
            bob_account.credit_limit,
            bob_account.balance
        ),
        ("postpaid", 1000, 0)
    );
    let on_credit = scripted_call(
        &bob,
        &mut b_events,
        &alice,
        &mut a_events,
        Some(Answer::Accept),
        Duration::from_millis(200),
    )
    .await;
    let bob_account = bob.account_info().await.unwrap();
    let charged = bob_account
        .recent_calls
        .iter()
        .find(|r| r.call_id == on_credit)
        .unwrap()
        .cost;
    assert!(charged > 0);
    assert_eq!(
        bob_account.balance, -charged,
        "a postpaid balance goes below zero"
    );
    server.cli(&["account", "set", "--user", "bob", "--type", "prepaid"]);
    let err = bob.call("alice").await.unwrap_err();
    assert!(
        matches!(&err, Error::ServerRefused { code, .. } if code == "insufficient_credit"),
        "{err}"
    );

    // The scripted calls.
    let mut calls = Vec::new();
    for hold in [
        Duration::ZERO,
        Duration::from_millis(1500),
        Duration::from_millis(2500),
        Duration::from_millis(3300),
    ] {
        calls.push(
            scripted_call(
                &alice,
                &mut a_events,
                &bob,
                &mut b_events,
                Some(Answer::Accept),
                hold,
            )
            .await,
        );
    }
    let declined = scripted_call(
        &alice,
        &mut a_events,
        &bob,
        &mut b_events,
        Some(Answer::Decline),
        Duration::ZERO,
    )
    .await;
    let unanswered = scripted_call(
        &alice,
        &mut a_events,
        &bob,
        &mut b_events,
        None,
        Duration::ZERO,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // end receipts are signed asynchronously

    let records = alice.call_records().await.unwrap();
    let find = |id: &str| records.iter().find(|r| r.call_id == id).expect("record");
    let mut total = 0;
    for id in &calls {
        let r = find(id);
        assert_eq!(r.disposition.as_deref(), Some("answered"));
        assert_eq!(
            r.cost,
            by_hand(r.answered_at_ms, r.ended_at_ms.unwrap()),
            "{r:?}"
        );
        assert_eq!(r.payer, "alice");
        assert!(!r.end_receipt_missing, "{:?}", r.receipts);
        assert_eq!(
            r.receipts.len(),
            4,
            "answer and end, by both: {:?}",
            r.receipts
        );
        total += r.cost;
    }
    for (id, disposition) in [(&declined, "declined"), (&unanswered, "no_answer")] {
        let r = find(id);
        assert_eq!((r.disposition.as_deref(), r.cost), (Some(disposition), 0));
    }
    let account = alice.account_info().await.unwrap();
    assert_eq!(account.balance, 10000 - total);
    assert_eq!(account.tariff.connect_fee, 7);
    assert!(!account.recent_calls.is_empty());
    let ledgers = server.cli(&["accounts"]);
    assert!(!ledgers.contains(" NO"), "{ledgers}");

    // Offline verification of the export, and of tampered copies.
    let check = CertificateCheck::from_root_pem(&ca.root_pem()).unwrap();
    let outcomes = verify_records(&records, "alice", &check);
    let verified = outcomes
        .iter()
        .filter(|o| matches!(o, RecordCheck::Verified { .. }))
        .count();
    assert_eq!(verified, calls.len(), "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| !matches!(o, RecordCheck::Failed { .. })),
        "{outcomes:?}"
    );
    let mut overcharged: Vec<CallRecord> = records.clone();
    let victim = overcharged
        .iter_mut()
        .find(|r| r.call_id == calls[1])
        .unwrap();
    victim.cost += 1;
    assert!(verify_records(&overcharged, "alice", &check)
        .iter()
        .any(|o| matches!(o, RecordCheck::Failed { .. })));
    let mut stretched = records.clone();
    let victim = stretched
        .iter_mut()
        .find(|r| r.call_id == calls[1])
        .unwrap();
    victim.ended_at_ms = victim.ended_at_ms.map(|e| e + 60_000);
    victim.cost = Tariff {
        connect_fee: 7,
        rate_per_minute: 120,
        first_increment_secs: 2,
        next_increment_secs: 1,
        ..Tariff::default()
    }
    .call_cost(victim.answered_at_ms, victim.ended_at_ms.unwrap());
    assert!(verify_records(&stretched, "alice", &check)
        .iter()
        .any(|o| matches!(o, RecordCheck::Failed { .. })));

    // The same through the command line: export, verify, and a tampered file fails.
    let dir = alice_id.dir().to_str().unwrap().to_owned();
    let file = home.path().join("receipts.json");
    let addr = server.addr();
    let out = vcsdk_tests::run_ok(
        "vc",
        &[
            "receipts",
            "export",
            "--out",
            file.to_str().unwrap(),
            "--server",
            &addr,
            "--server-name",
            "localhost",
            "--identity-dir",
            &dir,
        ],
    );
    assert!(out.contains("exported"), "{out}");
    let out = vcsdk_tests::run_ok(
        "vc",
        &[
            "receipts",
            "verify",
            file.to_str().unwrap(),
            "--identity-dir",
            &dir,
        ],
    );
    assert!(
        out.contains(&format!("{} charges verified", calls.len())) && out.contains("0 failed"),
        "{out}"
    );
    std::fs::write(&file, serde_json::to_vec(&overcharged).unwrap()).unwrap();
    let out = run(
        "vc",
        &[
            "receipts",
            "verify",
            file.to_str().unwrap(),
            "--identity-dir",
            &dir,
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILED"));

    // Vouchers: redeemed once, then refused; unknown codes refused.
    let code = server
        .cli(&["voucher", "create", "--amount", "5"])
        .trim()
        .to_owned();
    let before = bob.account_info().await.unwrap().balance;
    assert_eq!(bob.add_credit(&code).await.unwrap().balance, before + 500);
    let again = bob.add_credit(&code).await.unwrap_err();
    assert!(
        matches!(&again, Error::ServerRefused { code, .. } if code == "voucher_redeemed"),
        "{again}"
    );
    let unknown = bob.add_credit("vcv1.00").await.unwrap_err();
    assert!(
        matches!(&unknown, Error::ServerRefused { code, .. } if code == "voucher_unknown"),
        "{unknown}"
    );
    let out = run(
        "vc-server",
        &["voucher", "create", "--data-dir", data, "--amount", "-1"],
    );
    assert!(!out.status.success());

    // Receipts signed by the wrong key, or for a call that is not yours, are refused.
    let carol_id = enroll(&ca, home.path(), "carol").await;
    let carol = carol_id.load().unwrap();
    let mut raw = RawClient::connect(&server.addr(), &ca.root_pem(), Some(carol.certified_key()))
        .await
        .unwrap();
    raw.hello().await.unwrap();
    raw.request(
        1,
        Request::Register {
            terms_version: "1".into(),
        },
    )
    .await
    .unwrap();
    raw.recv().await.unwrap();
    let statement = vcsdk::billing::receipt_statement(
        vcsdk::billing::ReceiptKind::Answer,
        &calls[0],
        "alice",
        "bob",
        0,
    );
    let forged = vcsdk::pki::new_key_pair().unwrap();
    let signature = rcgen::SigningKey::sign(&forged, statement.as_bytes()).unwrap();
    raw.request(
        2,
        Request::SignReceipt {
            call_id: calls[0].clone(),
            kind: vcsdk::billing::ReceiptKind::Answer,
            signature_hex: vcsdk::util::hex(&signature),
        },
    )
    .await
    .unwrap();
    let answer = raw.recv().await.unwrap();
    assert!(
        matches!(&answer, ServerMessage::Error { code, .. } if code == "not_in_call"),
        "{answer:?}"
    );
    let bob_identity = bob_id.load().unwrap();
    let mut raw = RawClient::connect(
        &server.addr(),
        &ca.root_pem(),
        Some(bob_identity.certified_key()),
    )
    .await
    .unwrap();
    raw.hello().await.unwrap();
    raw.request(
        3,
        Request::SignReceipt {
            call_id: calls[0].clone(),
            kind: vcsdk::billing::ReceiptKind::Answer,
            signature_hex: vcsdk::util::hex(&signature),
        },
    )
    .await
    .unwrap();
    let answer = raw.recv().await.unwrap();
    assert!(
        matches!(&answer, ServerMessage::Error { code, .. } if code == "bad_receipt"),
        "{answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_credit_ends_the_call_without_overdrawing() {
    let ca = TestCa::start(&[]);
    // 600 per minute (10 per second), per-second billing, no fee, debited every second.
    let server = TestServer::start(
        &ca,
        &[
            "debit_interval_secs = 1",
            "low_balance_warning_secs = 5",
            "connect_fee = 0",
            "rate_per_minute = 600",
            "first_increment_secs = 1",
            "next_increment_secs = 1",
        ],
    );
    let home = tempfile::tempdir().unwrap();
    let alice_id = enroll(&ca, home.path(), "alice").await;
    let bob_id = enroll(&ca, home.path(), "bob").await;
    let (alice, mut a_events) = online(&server, &ca, &alice_id).await;
    let (bob, mut b_events) = online(&server, &ca, &bob_id).await;
    server.cli(&["credit", "add", "--user", "alice", "--amount", "0.35"]);
    let call = alice.call("bob").await.unwrap();
    wait_for(&mut b_events, 5, |e| {
        matches!(e, ClientEvent::IncomingCall { .. }).then_some(())
    })
    .await;
    bob.answer(&call, Answer::Accept).await.unwrap();
    let warned = wait_for(&mut a_events, 10, |e| match e {
        ClientEvent::LowBalance { seconds_left, .. } => Some(*seconds_left),
        _ => None,
    })
    .await;
    assert!(warned < 5, "{warned}");
    let (state, reason) = wait_for(&mut a_events, 15, ended(&call)).await;
    assert_eq!(
        (state, reason.as_deref()),
        (CallState::Ended, Some("insufficient credit"))
    );
    let (_, reason) = wait_for(&mut b_events, 5, ended(&call)).await;
    assert_eq!(
        reason.as_deref(),
        Some("insufficient credit"),
        "the callee is told why too"
    );
    // The end is recorded by the database writer right after both parties are told: wait for
    // it (bounded).
    let mut account = alice.account_info().await.unwrap();
    for _ in 0..50 {
        let closed = account
            .recent_calls
            .iter()
            .any(|r| r.call_id == call && r.ended_at_ms.is_some());
        if closed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        account = alice.account_info().await.unwrap();
    }
    assert!(
        account.balance >= -10,
        "overdrawn beyond one debit interval: {}",
        account.balance
    );
    assert!(account.balance < 35);
    let record = account
        .recent_calls
        .iter()
        .find(|r| r.call_id == call)
        .unwrap();
    assert_eq!(record.end_reason.as_deref(), Some("insufficient credit"));
    assert_eq!(35 - record.cost, account.balance);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_loses_no_charge_and_applies_none_twice() {
    let ca = TestCa::start(&[]);
    let mut server = TestServer::start(&ca, TARIFF);
    let home = tempfile::tempdir().unwrap();
    let mut pairs = Vec::new();
    for (a, b) in [("alice", "bob"), ("carol", "dave")] {
        let a_id = enroll(&ca, home.path(), a).await;
        let b_id = enroll(&ca, home.path(), b).await;
        let (a_client, a_events) = online(&server, &ca, &a_id).await;
        let (b_client, b_events) = online(&server, &ca, &b_id).await;
        server.cli(&["credit", "add", "--user", a, "--amount", "1000"]);
        pairs.push((a_client, a_events, b_client, b_events));
    }
    let mut open_calls = Vec::new();
    for (a, _a_events, b, b_events) in &mut pairs {
        let call = a.call(b.user()).await.unwrap();
        wait_for(b_events, 5, |e| {
            matches!(e, ClientEvent::IncomingCall { .. }).then_some(())
        })
        .await;
        b.answer(&call, Answer::Accept).await.unwrap();
        open_calls.push(call);
    }
    tokio::time::sleep(Duration::from_millis(3500)).await;
    server.process.kill();
    drop(pairs);
    let data = server.data_dir();
    server.process = TestServer::serve(data.to_str().unwrap(), "127.0.0.1:0");

    let json = server.cli(&["cdr", "list", "--format", "json"]);
    let records: Vec<CallRecord> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for call in &open_calls {
        let r = records.iter().find(|r| &r.call_id == call).expect("record");
        assert_eq!(
            r.end_reason.as_deref(),
            Some("server stopped; billed up to the last debit")
        );
        assert_eq!(r.disposition.as_deref(), Some("answered"));
        let last = r.last_debit_at_ms.expect("debited while running");
        assert_eq!(
            r.ended_at_ms,
            Some(last),
            "closed at its last durable debit"
        );
        assert!(
            last - r.answered_at_ms.unwrap() >= 2000,
            "several debits were made"
        );
        assert_eq!(r.cost, by_hand(r.answered_at_ms, last));
        assert!(r.end_receipt_missing);
    }
    let ledgers = server.cli(&["accounts"]);
    assert!(
        !ledgers.contains(" NO"),
        "a balance differs from credits minus charges:\n{ledgers}"
    );
    for (payer, call) in [("alice", &open_calls[0]), ("carol", &open_calls[1])] {
        let r = records.iter().find(|r| &r.call_id == call).unwrap();
        let line = ledgers.lines().find(|l| l.starts_with(payer)).unwrap();
        let balance = vcsdk::billing::Money::new(100000 - r.cost, "EUR").major();
        assert!(line.contains(&format!(" {balance} ")), "{line}");
    }
    // A second restart changes nothing: nothing is charged twice.
    let before = server.cli(&["accounts"]);
    server.process.kill();
    server.process = TestServer::serve(data.to_str().unwrap(), "127.0.0.1:0");
    assert_eq!(server.cli(&["accounts"]), before);
    let csv = server.cli(&["cdr", "list", "--user", "alice"]);
    assert!(csv.starts_with("call_id,caller,callee,payer,start,answer,end"));
    assert_eq!(csv.lines().count(), 2, "{csv}");
}
