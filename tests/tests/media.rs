//! End-to-end encrypted calls between SDK clients through the real `vc-ca` and `vc-server`: the
//! key agreement runs through the server, media flows directly or through the server's relay,
//! the relay (and anything on its path) sees ciphertext only, and strangers are refused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use vcsdk::client::{Client, ClientEvent};
use vcsdk::media::{MediaConfig, MediaFrame, MediaPath, MediaSession, Stream};
use vcsdk::proto::signal::{Answer, CallState};
use vcsdk_tests::{enroll, online, Connected, TestCa, TestServer};

const WAIT: Duration = Duration::from_secs(15);

struct World {
    ca: TestCa,
    server: TestServer,
    _home: tempfile::TempDir,
    alice: Connected,
    bob: Connected,
}

async fn world(settings: &[&str]) -> World {
    let ca = TestCa::start(&[]);
    let mut all = vec!["rate_per_minute = 0"];
    all.extend_from_slice(settings);
    let server = TestServer::start(&ca, &all);
    let home = tempfile::tempdir().unwrap();
    let alice = online(&server, &ca, &enroll(&ca, home.path(), "alice").await).await;
    let bob = online(&server, &ca, &enroll(&ca, home.path(), "bob").await).await;
    World {
        ca,
        server,
        _home: home,
        alice,
        bob,
    }
}

async fn event(events: &mut tokio::sync::mpsc::Receiver<ClientEvent>, what: &str) -> ClientEvent {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap_or_else(|_| panic!("no {what} within the bound"))
        .expect("event stream open")
}

/// Alice calls Bob, Bob accepts; both start the call's media with their configs.
async fn call(
    w: &mut World,
    configs: [MediaConfig; 2],
) -> (String, Arc<MediaSession>, Arc<MediaSession>) {
    let call_id = w.alice.0.call("bob").await.unwrap();
    loop {
        if let ClientEvent::IncomingCall { call_id: c, .. } =
            event(&mut w.bob.1, "incoming call").await
        {
            assert_eq!(c, call_id);
            break;
        }
    }
    w.bob.0.answer(&call_id, Answer::Accept).await.unwrap();
    let [ca, cb] = configs;
    let (a, b) = tokio::join!(w.alice.0.media(&call_id, ca), w.bob.0.media(&call_id, cb));
    (call_id, a.unwrap(), b.unwrap())
}

async fn next(session: &MediaSession) -> MediaFrame {
    tokio::time::timeout(WAIT, session.recv())
        .await
        .expect("a frame within the bound")
        .expect("session open")
}

fn relay_only() -> MediaConfig {
    MediaConfig {
        direct: false,
        ..MediaConfig::default()
    }
}

/// Sends a mix of frames both ways and checks each arrives intact, in order per direction.
async fn exchange(a: &MediaSession, b: &MediaSession, marker: &[u8]) {
    let frames: Vec<(Stream, Vec<u8>)> = (0..24u8)
        .map(|i| {
            let len = match i % 3 {
                0 => 160,
                1 => 20_000,
                _ => 900,
            };
            let stream = [Stream::Audio, Stream::Video, Stream::Data][usize::from(i % 3)];
            let mut data = marker.repeat(len / marker.len() + 1);
            data.truncate(len);
            data[0] = i;
            (stream, data)
        })
        .collect();
    // One at a time, as paced media would be: a burst beyond the socket buffers would be lost
    // (and counted), which is UDP's nature rather than what this checks.
    for (i, (stream, data)) in frames.iter().enumerate() {
        a.send(*stream, data).await.unwrap();
        let got = next(b).await;
        assert!(
            got.stream == *stream && &got.data == data,
            "frame {i} arrived intact"
        );
    }
    b.send(Stream::Signalling, b"pointer moved").await.unwrap();
    let got = next(a).await;
    assert_eq!(
        (got.stream, got.data.as_slice()),
        (Stream::Signalling, &b"pointer moved"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_carries_encrypted_media_directly_then_through_the_relay() {
    let mut w = world(&[]).await;
    // Direct: both offer their addresses; probes succeed on loopback.
    let (call_id, a, b) = call(&mut w, [MediaConfig::default(), MediaConfig::default()]).await;
    assert!(
        matches!(a.path(), Some(MediaPath::Direct(_))),
        "{:?}",
        a.stats()
    );
    assert!(
        matches!(b.path(), Some(MediaPath::Direct(_))),
        "{:?}",
        b.stats()
    );
    exchange(&a, &b, b"direct-call-plaintext ").await;
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!((sa.frames_sent, sb.frames_received), (24, 24));
    assert_eq!(
        sb.auth_failures + sb.replays_refused + sb.unknown_key + sb.foreign_packets,
        0
    );
    // Hanging up ends the media on both sides.
    w.alice.0.terminate(&call_id, None).await.unwrap();
    for s in [&a, &b] {
        let closed = tokio::time::timeout(WAIT, async {
            while !s.is_closed() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(closed.is_ok(), "media closed with the call");
        assert!(s.send(Stream::Audio, b"late").await.is_err());
    }

    // Relay only, at security level 3 (hybrid key agreement, AES-256-GCM media).
    let level3 = |c: MediaConfig| MediaConfig { level: 3, ..c };
    let (_, a, b) = call(&mut w, [level3(relay_only()), level3(relay_only())]).await;
    let relay = w.server.relay_addr();
    assert_eq!(a.path(), Some(MediaPath::Relay(relay)));
    assert_eq!(b.path(), Some(MediaPath::Relay(relay)));
    exchange(&a, &b, b"relayed-call-plaintext ").await;
    // Neither the server's log nor anything it printed holds the plaintext.
    let log = w.server.process.log();
    assert!(!log.contains("plaintext"));
    assert!(!log.contains("pointer moved"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_and_callee_at_different_levels_get_a_clear_refusal_and_no_media() {
    let mut w = world(&[]).await;
    let call_id = w.alice.0.call("bob").await.unwrap();
    while !matches!(
        event(&mut w.bob.1, "incoming call").await,
        ClientEvent::IncomingCall { .. }
    ) {}
    w.bob.0.answer(&call_id, Answer::Accept).await.unwrap();
    let (a, b) = tokio::join!(
        w.alice.0.media(
            &call_id,
            MediaConfig {
                level: 2,
                ..MediaConfig::default()
            }
        ),
        w.bob.0.media(
            &call_id,
            MediaConfig {
                level: 3,
                ..MediaConfig::default()
            }
        )
    );
    let (a, b) = (a.unwrap_err().to_string(), b.unwrap_err().to_string());
    assert!(b.contains("security level"), "{b}");
    assert!(a.contains("the peer refused the key agreement"), "{a}");
    // The media of a call cannot be started twice, nor for a call that is not ours.
    let err = w
        .alice
        .0
        .media(&call_id, MediaConfig::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already started"), "{err}");
    let err = w
        .alice
        .0
        .media("no-such-call", MediaConfig::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not one this client placed"),
        "{err}"
    );
}

/// A recording UDP hop in front of the relay (as a load balancer or NAT would be, and as an
/// eavesdropper on the relay's path is): the server advertises it as the relay address.
struct Tap {
    socket: Arc<UdpSocket>,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Tap {
    async fn bind() -> Tap {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        Tap {
            socket,
            seen: Arc::new(Mutex::new(Vec::new())),
            task: tokio::spawn(async {}),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// Forwards between clients and `relay`, one upstream socket per client, recording both ways.
    fn run(&mut self, relay: SocketAddr) {
        let (front, seen) = (self.socket.clone(), self.seen.clone());
        self.task = tokio::spawn(async move {
            let mut upstream: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
            let mut buf = vec![0u8; 65_536];
            loop {
                let (n, client) = front.recv_from(&mut buf).await.unwrap();
                seen.lock().unwrap().push(buf[..n].to_vec());
                let up = match upstream.get(&client) {
                    Some(up) => up.clone(),
                    None => {
                        let up = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                        upstream.insert(client, up.clone());
                        let (front, up2, seen) = (front.clone(), up.clone(), seen.clone());
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 65_536];
                            while let Ok((n, _)) = up2.recv_from(&mut buf).await {
                                seen.lock().unwrap().push(buf[..n].to_vec());
                                let _ = front.send_to(&buf[..n], client).await;
                            }
                        });
                        up
                    }
                };
                let _ = up.send_to(&buf[..n], relay).await;
            }
        });
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_path_carries_only_ciphertext_and_strangers_are_refused() {
    let mut tap = Tap::bind().await;
    let advertise = format!("media_advertise = \"{}\"", tap.addr());
    let mut w = world(&[&advertise]).await;
    tap.run(w.server.relay_addr());
    let (_, a, b) = call(&mut w, [relay_only(), relay_only()]).await;
    assert_eq!(a.path(), Some(MediaPath::Relay(tap.addr())));
    let secret = b"TOP-SECRET-WHITEBOARD-CONTENT-".repeat(40);
    for stream in [
        Stream::Audio,
        Stream::Video,
        Stream::Data,
        Stream::Signalling,
    ] {
        a.send(stream, &secret).await.unwrap();
        assert_eq!(next(&b).await.data, secret);
        b.send(stream, &secret[..300]).await.unwrap();
        assert_eq!(next(&a).await.data, &secret[..300]);
    }
    let seen = tap.seen.lock().unwrap().clone();
    assert!(
        seen.len() >= 8,
        "{} datagrams on the relay path",
        seen.len()
    );
    let marker = b"TOP-SECRET";
    for d in &seen {
        assert!(
            !d.windows(marker.len()).any(|w| w == marker),
            "plaintext on the relay path"
        );
    }

    // A stranger: straight to Alice's media socket (a protected-looking packet), and to the relay
    // with a made-up token. Neither reaches the application.
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut fake = vec![1u8, 0, 0, 1, 0, 0, 0, 9, 0, 1];
    fake.extend_from_slice(&[0x5a; 64]);
    stranger
        .send_to(&fake, a.local_addr().unwrap())
        .await
        .unwrap();
    let mut forged = vec![2u8];
    forged.extend_from_slice(&[7u8; 16]);
    forged.extend_from_slice(&fake);
    stranger
        .send_to(&forged, w.server.relay_addr())
        .await
        .unwrap();
    // Replays of a captured media datagram and of a captured bind, from the stranger's address:
    // the relay forwards media only from the bound address and takes only fresh binds, so the
    // flow cannot be moved to the stranger.
    for d in seen
        .iter()
        .filter(|d| matches!(d.first(), Some(2 | 4)))
        .take(4)
    {
        stranger.send_to(d, tap.addr()).await.unwrap();
    }
    let before = b.stats();
    a.send(Stream::Audio, b"after the attacks").await.unwrap();
    assert_eq!(next(&b).await.data, b"after the attacks");
    b.send(Stream::Audio, b"still here").await.unwrap();
    assert_eq!(
        next(&a).await.data,
        b"still here",
        "the flow was not hijacked"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while a.stats().foreign_packets == 0 {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", a.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut buf = [0u8; 2048];
    let got = tokio::time::timeout(Duration::from_millis(300), stranger.recv_from(&mut buf)).await;
    assert!(got.is_err(), "the stranger received nothing");
    let after = b.stats();
    assert_eq!(
        after.replays_refused, before.replays_refused,
        "replays never got through the relay"
    );
    assert!(a.try_recv().is_none() && b.try_recv().is_none());
    let _ = &w.ca;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_media_events_to_others_and_ends_relaying_with_the_call() {
    let mut w = world(&[]).await;
    let (call_id, a, b) = call(&mut w, [relay_only(), relay_only()]).await;
    exchange(&a, &b, b"short-call ").await;
    // Carol, a registered user outside the call, cannot inject into it through the server.
    let home = tempfile::tempdir().unwrap();
    let (carol, _events) =
        online(&w.server, &w.ca, &enroll(&w.ca, home.path(), "carol").await).await;
    let err = carol
        .send_session_message(
            &call_id,
            "{\"type\":\"abort\",\"call_id\":\"x\",\"reason\":\"x\"}",
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not_in_call") || err.to_string().contains("call"),
        "{err}"
    );
    let err = carol
        .media(&call_id, MediaConfig::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not one this client placed"),
        "{err}"
    );
    // After the call ends, the relay drops the call's packets: a new frame never arrives.
    w.bob.0.terminate(&call_id, Some("done")).await.unwrap();
    loop {
        if let ClientEvent::CallState {
            state: CallState::Ended,
            ..
        } = event(&mut w.alice.1, "end").await
        {
            break;
        }
    }
    assert!(a.is_closed() && b.is_closed());
    assert!(a.send(Stream::Audio, b"x").await.is_err());
    let _: &Client = &carol;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vc_streams_a_file_over_an_encrypted_call_and_the_receiver_writes_identical_bytes() {
    let w = world(&[]).await;
    let home = w._home.path().to_owned();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("clip.bin");
    let content: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    let saved = work.path().join("saved");
    let addr = w.server.addr();
    let args = |id: &str, rest: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
        let dir = home.join(id);
        all.extend(
            [
                "--server",
                &addr,
                "--server-name",
                "localhost",
                "--identity-dir",
                dir.to_str().unwrap(),
            ]
            .map(String::from),
        );
        all
    };
    // Bob's SDK connection would be a second device ringing too: it leaves first.
    let _ = w.bob.0.close().await;
    let mut gone = false;
    for _ in 0..100 {
        let users = w.alice.0.active_users().await.unwrap();
        if !users.iter().any(|u| u.user == "bob") {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "Bob's SDK connection did not leave");
    // Bob never offers his address (relay only), so Alice's media goes through the relay too.
    let listener = std::process::Command::new(vcsdk_tests::binary("vc"))
        .args(args(
            "bob",
            &[
                "listen",
                "--auto-accept",
                "--max-calls",
                "1",
                "--relay-only",
                "--save",
                saved.to_str().unwrap(),
            ],
        ))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // `vc listen` is connected once Alice sees Bob online again.
    let mut listening = false;
    for _ in 0..100 {
        let users = w.alice.0.active_users().await.unwrap();
        if users.iter().any(|u| u.user == "bob") {
            listening = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(listening, "vc listen did not come online");
    let call_args = args(
        "alice",
        &[
            "call",
            "bob",
            "--send",
            file.to_str().unwrap(),
            "--frame-size",
            "8000",
            "--rate",
            "200",
        ],
    );
    let out = tokio::task::spawn_blocking(move || {
        vcsdk_tests::run_ok(
            "vc",
            &call_args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    })
    .await
    .unwrap();
    assert!(out.contains("identical bytes"), "{out}");
    assert!(out.contains("media: path relayed by"), "{out}");
    let listened = listener.wait_with_output().unwrap();
    let listened = String::from_utf8_lossy(&listened.stdout);
    assert!(listened.contains("saved "), "{listened}");
    assert!(listened.contains("media: path relayed by"), "{listened}");
    assert_eq!(std::fs::read(saved.join("clip.bin")).unwrap(), content);
}
