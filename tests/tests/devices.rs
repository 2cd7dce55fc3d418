//! Several devices per user, against the real `vc-ca` and `vc-server`: each connection of a user
//! is a device; presence is per user; a call rings every device and the first to answer takes
//! it; a conference participation belongs to the device that joined; the device over the cap is
//! refused; a connection ended for good is reported as such and the client stops.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::Receiver;
use vcsdk::client::{Client, ClientEvent, ClientOptions, ConferenceEvent, ConferenceOptions};
use vcsdk::media::{MediaConfig, Stream};
use vcsdk::proto::signal::{Answer, CallState, Request, ServerMessage};
use vcsdk::Error;
use vcsdk_tests::conference::{all_at, bring_in, deliver, World, WAIT};
use vcsdk_tests::{enroll, online, Connected, RawClient};

/// Waits (at most [`WAIT`]) for an event `pick` accepts, skipping others.
async fn expect<T>(
    events: &mut Receiver<ClientEvent>,
    what: &str,
    mut pick: impl FnMut(&ClientEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) => {
                if let Some(t) = pick(&event) {
                    return t;
                }
            }
            Ok(None) => panic!("event stream ended while waiting for {what}"),
            Err(_) => panic!("no {what} within {} s", WAIT.as_secs()),
        }
    }
}

/// Every event that arrives within `settle` (the absence of one is checked on these).
async fn drain(events: &mut Receiver<ClientEvent>, settle: Duration) -> Vec<ClientEvent> {
    let mut seen = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(settle, events.recv()).await {
        seen.push(e);
    }
    seen
}

fn incoming(e: &ClientEvent) -> Option<String> {
    match e {
        ClientEvent::IncomingCall { call_id, .. } => Some(call_id.clone()),
        _ => None,
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

fn code(e: Error) -> String {
    match e {
        Error::ServerRefused { code, .. } => code,
        other => panic!("expected a refusal, got {other}"),
    }
}

/// Another device of `id` (enrolled already in `w`'s home), online and registered.
async fn device(w: &World, id: &str) -> Connected {
    let store = vcsdk::identity::IdentityStore::new(w.home.path().join(id));
    online(&w.server, &w.ca, &store).await
}

/// A client of `id` at `addr` that reconnects after a lost connection (as applications run it).
async fn reconnecting(
    addr: &str,
    w_ca: &vcsdk_tests::TestCa,
    home: &std::path::Path,
    id: &str,
) -> Result<Connected, Error> {
    let store = vcsdk::identity::IdentityStore::new(home.join(id));
    let identity = Arc::new(store.load().expect("identity"));
    let check = vcsdk::pki::CertificateCheck::from_root_pem(&w_ca.root_pem()).expect("root");
    let mut options = ClientOptions::new(addr, identity, check);
    options.server_name = Some("localhost".into());
    Client::connect(options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_per_user_and_goes_offline_with_the_last_device() {
    let w = World::new(&[]);
    let mut alice = w.user("alice").await;
    alice.0.subscribe_presence().await.unwrap();
    let bob1 = w.user("bob").await;
    expect(&mut alice.1, "bob online", |e| {
        (e == &ClientEvent::Presence {
            user: "bob".into(),
            online: true,
        })
            .then_some(())
    })
    .await;
    let since = alice.0.active_users().await.unwrap();
    let bob_since = since.iter().find(|u| u.user == "bob").unwrap().online_since;

    // A second device: the first stays connected, bob is listed once, since the first device.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let bob2 = device(&w, "bob").await;
    assert!(bob1.0.is_connected() && bob2.0.is_connected());
    let users = alice.0.active_users().await.unwrap();
    let bobs: Vec<_> = users.iter().filter(|u| u.user == "bob").collect();
    assert_eq!(bobs.len(), 1, "{users:?}");
    assert_eq!(
        bobs[0].online_since, bob_since,
        "online since the earliest device"
    );

    // The first device leaves: bob is still online, and nobody is told otherwise.
    bob1.0.close().await.unwrap();
    let seen = drain(&mut alice.1, Duration::from_millis(800)).await;
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, ClientEvent::Presence { user, .. } if user == "bob")),
        "no presence change while a device is left: {seen:?}"
    );
    let users = alice.0.active_users().await.unwrap();
    assert!(users.iter().any(|u| u.user == "bob"), "{users:?}");
    assert!(bob2.0.is_connected());
    // bob2's requests work as before.
    bob2.0.account_info().await.unwrap();

    // The last device leaves: offline, once.
    bob2.0.close().await.unwrap();
    expect(&mut alice.1, "bob offline", |e| {
        (e == &ClientEvent::Presence {
            user: "bob".into(),
            online: false,
        })
            .then_some(())
    })
    .await;
    let users = alice.0.active_users().await.unwrap();
    assert!(!users.iter().any(|u| u.user == "bob"), "{users:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_rings_every_device_and_the_first_to_answer_takes_it() {
    let w = World::new(&[]);
    let mut alice = w.user("alice").await;
    let mut bob1 = w.user("bob").await;
    let mut bob2 = device(&w, "bob").await;

    let call_id = alice.0.call("bob").await.unwrap();
    assert_eq!(
        expect(&mut bob1.1, "ringing on bob1", incoming).await,
        call_id
    );
    assert_eq!(
        expect(&mut bob2.1, "ringing on bob2", incoming).await,
        call_id
    );

    // bob2 answers first and takes the call; bob1 is told it was answered elsewhere.
    bob2.0.answer(&call_id, Answer::Accept).await.unwrap();
    expect(
        &mut alice.1,
        "accepted",
        state_of(&call_id, CallState::Accepted),
    )
    .await;
    let why = expect(
        &mut bob1.1,
        "answered elsewhere",
        state_of(&call_id, CallState::AnsweredElsewhere),
    )
    .await;
    assert!(why.is_some_and(|r| r.contains("another device")));
    // bob1 can no longer take it, speak in it or end it.
    assert_eq!(
        code(bob1.0.answer(&call_id, Answer::Accept).await.unwrap_err()),
        "call_not_ringing"
    );
    assert_eq!(
        code(
            bob1.0
                .send_session_message(&call_id, "from the other device")
                .await
                .unwrap_err()
        ),
        "not_in_call"
    );
    assert_eq!(
        code(bob1.0.terminate(&call_id, None).await.unwrap_err()),
        "not_in_call"
    );
    // A user in a call on one device is busy on all: bob1 cannot place another.
    assert_eq!(
        code(bob1.0.call("alice").await.unwrap_err()),
        "already_in_call"
    );

    // The call's handshake and media flow between alice and bob2 (relayed, so the relay legs
    // are the two answering devices').
    let relay = MediaConfig {
        direct: false,
        ..MediaConfig::default()
    };
    let (a, b) = tokio::join!(
        alice.0.media(&call_id, relay.clone()),
        bob2.0.media(&call_id, relay)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    for (from, to, data) in [(&a, &b, &b"to bob2"[..]), (&b, &a, &b"to alice"[..])] {
        let wait = async {
            loop {
                from.send(Stream::Audio, data).await.unwrap();
                if let Ok(Some(f)) =
                    tokio::time::timeout(Duration::from_millis(300), to.recv()).await
                {
                    if f.data == data {
                        return;
                    }
                }
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .expect("media between the answering devices");
    }

    // alice hangs up: bob2 is told; the call is one record, answered, billed once.
    alice.0.terminate(&call_id, None).await.unwrap();
    expect(&mut bob2.1, "ended", state_of(&call_id, CallState::Ended)).await;
    let seen = drain(&mut bob1.1, Duration::from_millis(500)).await;
    assert!(
        !seen.iter().any(|e| matches!(
            e,
            ClientEvent::SessionMessage { .. } | ClientEvent::ReceiptRefused { .. }
        )),
        "the other device saw nothing of the call: {seen:?}"
    );
    let records = alice.0.call_records().await.unwrap();
    let ours: Vec<_> = records.iter().filter(|r| r.call_id == call_id).collect();
    assert_eq!(ours.len(), 1, "{records:?}");
    assert_eq!(ours[0].disposition.as_deref(), Some("answered"));
    let bobs = bob1.0.call_records().await.unwrap();
    assert_eq!(bobs.iter().filter(|r| r.call_id == call_id).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decline_from_one_device_ends_the_ringing_everywhere() {
    let w = World::new(&[]);
    let mut alice = w.user("alice").await;
    let mut bob1 = w.user("bob").await;
    let mut bob2 = device(&w, "bob").await;
    let call_id = alice.0.call("bob").await.unwrap();
    expect(&mut bob1.1, "ringing on bob1", incoming).await;
    expect(&mut bob2.1, "ringing on bob2", incoming).await;
    bob1.0.answer(&call_id, Answer::Decline).await.unwrap();
    expect(
        &mut alice.1,
        "declined",
        state_of(&call_id, CallState::Declined),
    )
    .await;
    expect(
        &mut bob2.1,
        "declined on the other device",
        state_of(&call_id, CallState::Declined),
    )
    .await;
    assert_eq!(
        code(bob2.0.answer(&call_id, Answer::Accept).await.unwrap_err()),
        "not_offered"
    );

    // A ringing device that disconnects stops ringing there; the call rings on.
    let call_id = alice.0.call("bob").await.unwrap();
    expect(&mut bob1.1, "ringing on bob1", incoming).await;
    expect(&mut bob2.1, "ringing on bob2", incoming).await;
    bob1.0.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    bob2.0.answer(&call_id, Answer::Accept).await.unwrap();
    expect(
        &mut alice.1,
        "accepted",
        state_of(&call_id, CallState::Accepted),
    )
    .await;
    alice.0.terminate(&call_id, None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_device_coming_and_going_leaves_the_conference_member_in() {
    let w = World::new(&["keepalive_secs = 1"]);
    let alice = w.user("alice").await;
    let mut bob = w.user("bob").await;
    let a = alice
        .0
        .create_conference(ConferenceOptions::default())
        .await
        .unwrap();
    let b = bring_in(&a, &mut bob, "bob").await;
    all_at(&[&a, &b], 2).await;

    // bob's second device connects (through the SDK) and leaves again.
    let bob2 = device(&w, "bob").await;
    // It cannot act in the conference its other device is in.
    let root = w.ca.root_pem();
    let identity = vcsdk::identity::IdentityStore::new(w.home.path().join("bob"))
        .load()
        .unwrap();
    let mut raw = RawClient::connect(&w.server.addr(), &root, Some(identity.certified_key()))
        .await
        .unwrap();
    assert!(matches!(
        raw.hello().await.unwrap(),
        ServerMessage::Welcome { .. }
    ));
    raw.request(
        1,
        Request::ConfLog {
            conf: a.id().to_owned(),
            after: None,
        },
    )
    .await
    .unwrap();
    match raw.recv().await.unwrap() {
        ServerMessage::Error { code, .. } => assert_eq!(code, "conf_other_device"),
        other => panic!("expected conf_other_device, got {other:?}"),
    }
    bob2.0.close().await.unwrap();
    drop(raw);
    // Let the server see both go.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // bob is still a member: the roster, the epoch and the media say so.
    let roster: Vec<String> = a.roster().into_iter().map(|m| m.id).collect();
    assert_eq!(roster, ["alice", "bob"]);
    assert_eq!(a.epoch(), 2, "no rekey: nobody left");
    deliver(&a, &b, b"still here").await;
    deliver(&b, &a, b"still here too").await;

    // bob's own device leaving does take him out.
    bob.0.close().await.unwrap();
    let left = tokio::time::timeout(WAIT, async {
        loop {
            match a.next_event().await {
                Some(ConferenceEvent::Left { member, .. }) if member == "bob" => return true,
                Some(_) => {}
                None => return false,
            }
        }
    })
    .await
    .expect("bob's departure within the bound");
    assert!(left);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_over_the_cap_is_refused_with_too_many_devices() {
    let w = World::new(&["max_devices_per_user = 2"]);
    let first = w.user("bob").await;
    let _second = device(&w, "bob").await;
    let store = vcsdk::identity::IdentityStore::new(w.home.path().join("bob"));
    let identity = Arc::new(store.load().unwrap());
    let check = vcsdk::pki::CertificateCheck::from_root_pem(&w.ca.root_pem()).unwrap();
    let mut options = ClientOptions::new(w.server.addr(), identity.clone(), check);
    options.server_name = Some("localhost".into());
    match Client::connect(options.clone()).await {
        Err(e) => assert_eq!(code(e), "too_many_devices"),
        Ok(_) => panic!("a third device was admitted past the cap of 2"),
    }
    // On the wire: the refusal comes instead of the welcome, and the connection is closed.
    let mut raw = RawClient::connect(
        &w.server.addr(),
        &w.ca.root_pem(),
        Some(identity.certified_key()),
    )
    .await
    .unwrap();
    match raw.hello().await.unwrap() {
        ServerMessage::Error { code, .. } => assert_eq!(code, "too_many_devices"),
        other => panic!("expected too_many_devices, got {other:?}"),
    }
    assert!(
        raw.recv().await.is_err(),
        "the refused connection is closed"
    );
    // The devices already there are untouched; once one leaves, a new one is admitted.
    assert!(first.0.is_connected());
    first.0.close().await.unwrap();
    let mut admitted = false;
    for _ in 0..50 {
        if Client::connect(options.clone()).await.is_ok() {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(admitted, "a device is admitted once one left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_gets_a_final_disconnect_and_the_client_stops() {
    let w = World::new(&["crl_refresh_secs = 1", "keepalive_secs = 1"]);
    let store = enroll(&w.ca, w.home.path(), "bob").await;
    drop(online(&w.server, &w.ca, &store).await);
    let (client, mut events) = reconnecting(&w.server.addr(), &w.ca, w.home.path(), "bob")
        .await
        .unwrap();
    let serial = store.load().unwrap().info().serial.clone();
    w.ca.cli(&["revoke", "--serial", &serial, "--reason", "keyCompromise"]);
    let (reason, again) = expect(&mut events, "the disconnect", |e| match e {
        ClientEvent::Disconnected {
            reason,
            reconnecting,
        } => Some((reason.clone(), *reconnecting)),
        _ => None,
    })
    .await;
    assert!(reason.contains("certificate revoked"), "{reason}");
    assert!(
        !again,
        "a revoked certificate is final: the client must not reconnect"
    );
    assert!(
        client.has_ended(),
        "the end is visible to whoever handles the event"
    );
    // It stops: nothing follows, and it stays disconnected.
    let seen = drain(&mut events, Duration::from_secs(2)).await;
    assert!(seen.is_empty(), "{seen:?}");
    assert!(!client.is_connected());
}

/// A TCP relay on 127.0.0.1 to `target`: connections it accepts wait until the gate is open;
/// `cut` drops every connection it carries.
struct Proxy {
    addr: String,
    gate: tokio::sync::watch::Sender<bool>,
    carried: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (gate, open) = tokio::sync::watch::channel(true);
        let carried = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks = carried.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut open = open.clone();
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if open.wait_for(|o| *o).await.is_err() {
                        return;
                    }
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(task);
            }
        });
        Proxy {
            addr,
            gate,
            carried,
        }
    }

    fn cut(&self) {
        for task in self.carried.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnection_refused_for_too_many_devices_is_final() {
    let w = World::new(&["max_devices_per_user = 1"]);
    let store = enroll(&w.ca, w.home.path(), "bob").await;
    drop(online(&w.server, &w.ca, &store).await);
    // Wait until the server has let that connection go (the cap is 1).
    let proxy = Proxy::start(w.server.addr()).await;
    let mut first = None;
    for _ in 0..50 {
        if let Ok(c) = reconnecting(&proxy.addr, &w.ca, w.home.path(), "bob").await {
            first = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (client, mut events) = first.expect("connected through the proxy");
    // The connection is cut; while this client cannot get back, another device of bob's takes
    // the only slot.
    proxy.gate.send_replace(false);
    proxy.cut();
    expect(&mut events, "the lost connection", |e| match e {
        ClientEvent::Disconnected {
            reconnecting: true, ..
        } => Some(()),
        _ => None,
    })
    .await;
    assert!(!client.has_ended(), "a cut connection is being repaired");
    let mut other = None;
    for _ in 0..50 {
        let identity = Arc::new(store.load().unwrap());
        let check = vcsdk::pki::CertificateCheck::from_root_pem(&w.ca.root_pem()).unwrap();
        let mut options = ClientOptions::new(w.server.addr(), identity, check);
        options.server_name = Some("localhost".into());
        options.reconnect = false;
        if let Ok(c) = Client::connect(options).await {
            other = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _other = other.expect("the other device connected once the cut one was gone");
    proxy.gate.send_replace(true);
    let reason = expect(&mut events, "the final disconnect", |e| match e {
        ClientEvent::Disconnected {
            reason,
            reconnecting: false,
        } => Some(reason.clone()),
        ClientEvent::Reconnected => panic!("reconnected past the cap"),
        _ => None,
    })
    .await;
    assert!(reason.contains("too_many_devices"), "{reason}");
    assert!(client.has_ended());
    assert!(!client.is_connected());
}

/// The next message from `raw` that is an event of `kind` (JSON as it came), skipping others.
async fn raw_event(raw: &mut RawClient, kind: &str) -> serde_json::Value {
    for _ in 0..50 {
        let message = raw.recv_json().await.expect("a message");
        if message["type"] == "event" && message["event"]["kind"] == kind {
            return message;
        }
    }
    panic!("no {kind} event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_1_device_is_sent_only_what_it_can_read() {
    let w = World::new(&[]);
    let mut alice = w.user("alice").await;
    let mut bob = w.user("bob").await;
    let store = vcsdk::identity::IdentityStore::new(w.home.path().join("bob"));
    let key = || store.load().unwrap().certified_key();

    // A version-1 device is served in version 1; a version the server does not know is refused.
    let mut old = RawClient::connect(&w.server.addr(), &w.ca.root_pem(), Some(key()))
        .await
        .unwrap();
    let welcome = old.hello_version(1).await.unwrap();
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["protocol"], 1, "{welcome}");
    let mut future = RawClient::connect(&w.server.addr(), &w.ca.root_pem(), Some(key()))
        .await
        .unwrap();
    let refused = future.hello_version(3).await.unwrap();
    assert_eq!(refused["code"], "unsupported_version", "{refused}");

    // A call rings both of bob's devices; the new one takes it; the old one, which cannot read
    // `answered_elsewhere`, sees the call end with the reason.
    let call_id = alice.0.call("bob").await.unwrap();
    let ring = raw_event(&mut old, "incoming_call").await;
    assert_eq!(ring["event"]["call_id"], call_id.as_str());
    assert_eq!(expect(&mut bob.1, "ringing", incoming).await, call_id);
    bob.0.answer(&call_id, Answer::Accept).await.unwrap();
    expect(
        &mut alice.1,
        "accepted",
        state_of(&call_id, CallState::Accepted),
    )
    .await;
    let told = raw_event(&mut old, "call_state").await;
    assert_eq!(told["event"]["call_id"], call_id.as_str(), "{told}");
    assert_eq!(told["event"]["state"], "ended", "{told}");
    assert_eq!(told["event"]["reason"], "answered on another device");

    // A goodbye is final: in version 2 the disconnect says so with `final` and a `code`; in
    // version 1 it carries neither.
    old.request(1, Request::CloseConnection).await.unwrap();
    let bye = raw_event(&mut old, "disconnect").await;
    assert!(bye["event"].get("final").is_none(), "{bye}");
    assert!(bye["event"].get("code").is_none(), "{bye}");
    let mut new = RawClient::connect(&w.server.addr(), &w.ca.root_pem(), Some(key()))
        .await
        .unwrap();
    let welcome = new.hello_version(2).await.unwrap();
    assert_eq!(welcome["protocol"], 2, "{welcome}");
    new.request(1, Request::CloseConnection).await.unwrap();
    let bye = raw_event(&mut new, "disconnect").await;
    assert_eq!(bye["event"]["final"], true, "{bye}");
    assert_eq!(bye["event"]["code"], "client_request", "{bye}");
}
