//! Media sessions over loopback UDP: the direct path, the relay path (through a relay the test
//! controls, which also plays the attacker on the path), epochs, and attacks.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;

use super::*;
use crate::media::handshake::SessionSecrets;
use crate::media::relay::{RelaySecret, RelayToken};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(10);

fn secrets(seed: u8) -> SessionSecrets {
    SessionSecrets::from_epoch_secret([seed; 32], 2, [0; 32])
}

fn quick() -> MediaConfig {
    MediaConfig {
        direct_timeout: Duration::from_millis(400),
        grace: Duration::from_millis(300),
        ..MediaConfig::default()
    }
}

/// A relay run by the test: forwards like the server's, records what it forwards, and lets the
/// test inject datagrams towards a member.
struct TestRelay {
    socket: Arc<UdpSocket>,
    addresses: Arc<Mutex<HashMap<RelayToken, SocketAddr>>>,
    forwarded: Arc<Mutex<Vec<Vec<u8>>>>,
    grants: [RelayGrant; 2],
    task: tokio::task::JoinHandle<()>,
}

impl TestRelay {
    async fn start() -> TestRelay {
        let socket = Arc::new(UdpSocket::bind((LOCAL, 0)).await.unwrap());
        let address = socket.local_addr().unwrap();
        let grants = [0, 1].map(|_| RelayGrant {
            address,
            token: RelayToken::random(),
            secret: RelaySecret::random(),
        });
        let addresses = Arc::new(Mutex::new(HashMap::new()));
        let forwarded = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let (socket, addresses, forwarded) =
                (socket.clone(), addresses.clone(), forwarded.clone());
            let tokens = [grants[0].token, grants[1].token];
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_536];
                loop {
                    let (n, from) = socket.recv_from(&mut buf).await.unwrap();
                    let (token, inner) = match Datagram::parse(&buf[..n]) {
                        Some(Datagram::Relay { token, inner }) => (token, inner),
                        Some(Datagram::Bind { token, .. }) => {
                            addresses.lock().unwrap().insert(token, from);
                            let _ = socket.send_to(&relay::bound(&token), from).await;
                            continue;
                        }
                        _ => continue,
                    };
                    let Some(me) = tokens.iter().position(|t| *t == token) else {
                        continue;
                    };
                    let to = addresses.lock().unwrap().get(&tokens[1 - me]).copied();
                    if let Some(to) = to {
                        forwarded.lock().unwrap().push(inner.to_vec());
                        let _ = socket.send_to(inner, to).await;
                    }
                }
            })
        };
        TestRelay {
            socket,
            addresses,
            forwarded,
            grants,
            task,
        }
    }

    /// Sends `datagram` to member `i` from the relay's address.
    async fn inject(&self, i: usize, datagram: &[u8]) {
        let to = self.addresses.lock().unwrap()[&self.grants[i].token];
        self.socket.send_to(datagram, to).await.unwrap();
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts both members (sender 0 and 1) of a call with `secrets`, exchanging sealed addresses.
async fn pair(
    s: &SessionSecrets,
    configs: [MediaConfig; 2],
    relay: Option<&TestRelay>,
) -> (MediaSession, MediaSession) {
    let mut a = PreparedMedia::new(s, 0, 1, LOCAL).await.unwrap();
    let mut b = PreparedMedia::new(s, 1, 0, LOCAL).await.unwrap();
    let sealed_a = a.seal_candidates(configs[0].direct).unwrap();
    let sealed_b = b.seal_candidates(configs[1].direct).unwrap();
    let for_a = a.open_candidates(&sealed_b).unwrap();
    let for_b = b.open_candidates(&sealed_a).unwrap();
    let [ca, cb] = configs;
    let (a, b) = tokio::join!(
        a.start(for_a, relay.map(|r| r.grants[0]), ca),
        b.start(for_b, relay.map(|r| r.grants[1]), cb)
    );
    (a.unwrap(), b.unwrap())
}

async fn next(session: &MediaSession) -> MediaFrame {
    tokio::time::timeout(WAIT, session.recv())
        .await
        .expect("a frame within the bound")
        .expect("session open")
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn the_direct_path_carries_every_stream_and_fragmented_frames() {
    let s = secrets(1);
    let (a, b) = pair(&s, [quick(), quick()], None).await;
    assert!(matches!(a.path(), Some(MediaPath::Direct(_))), "{a:?}");
    assert!(matches!(b.path(), Some(MediaPath::Direct(_))), "{b:?}");
    assert_eq!(a.path(), Some(MediaPath::Direct(b.local_addr().unwrap())));
    let mut sent = Vec::new();
    for i in 0..40u8 {
        let (stream, len) = match i % 4 {
            0 => (Stream::Audio, 160),
            1 => (Stream::Video, 16 * 1024 + usize::from(i)),
            2 => (Stream::Data, 3000),
            _ => (Stream::Signalling, 40),
        };
        let frame = pattern(len, i);
        a.send(stream, &frame).await.unwrap();
        sent.push((stream, frame));
    }
    for (stream, frame) in &sent {
        let got = next(&b).await;
        assert_eq!((got.stream, got.sender, got.epoch), (*stream, 0, 0));
        assert_eq!(&got.data, frame);
    }
    b.send(Stream::Audio, b"back").await.unwrap();
    assert_eq!(next(&a).await.data, b"back");
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sa.frames_sent, 40);
    assert_eq!(sb.frames_received, 40);
    assert_eq!(sb.bytes_received, sa.bytes_sent);
    assert!(
        sa.packets_sent >= 40 + 10 * 13,
        "video frames are split: {sa:?}"
    );
    let refused = sb.replays_refused
        + sb.auth_failures
        + sb.unknown_key
        + sb.foreign_packets
        + sb.malformed
        + sb.frames_lost;
    assert_eq!(refused, 0, "{sb:?}");
    // Frames larger than the session allows are refused with a clear error.
    let err = a
        .send(Stream::Video, &vec![0u8; (4 << 20) + 1])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("exceeds the largest frame"),
        "{err}"
    );
}

#[tokio::test]
async fn without_a_direct_path_media_falls_back_to_the_relay_which_sees_only_ciphertext() {
    let relay = TestRelay::start().await;
    let s = secrets(2);
    // The peer's offered address is a socket that never answers: probes go unanswered.
    let silent = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    let mut a = PreparedMedia::new(&s, 0, 1, LOCAL).await.unwrap();
    let b = PreparedMedia::new(&s, 1, 0, LOCAL).await.unwrap();
    let _ = a.seal_candidates(true).unwrap();
    let (a, b) = tokio::join!(
        a.start(
            vec![silent.local_addr().unwrap()],
            Some(relay.grants[0]),
            quick()
        ),
        b.start(
            Vec::new(),
            Some(relay.grants[1]),
            MediaConfig {
                direct: false,
                ..quick()
            }
        )
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.path(), Some(MediaPath::Relay(relay.grants[0].address)));
    assert_eq!(b.path(), Some(MediaPath::Relay(relay.grants[1].address)));
    let secret = b"THE-PLAINTEXT-THAT-MUST-NOT-BE-SEEN-".repeat(100);
    a.send(Stream::Video, &secret).await.unwrap();
    a.send(Stream::Audio, &secret[..100]).await.unwrap();
    assert_eq!(next(&b).await.data, secret);
    assert_eq!(next(&b).await.data, &secret[..100]);
    b.send(Stream::Data, &secret[..500]).await.unwrap();
    assert_eq!(next(&a).await.data, &secret[..500]);
    let forwarded = relay.forwarded.lock().unwrap().clone();
    assert!(forwarded.len() >= 5, "{} datagrams", forwarded.len());
    for d in &forwarded {
        assert!(
            !d.windows(16).any(|w| secret.windows(16).any(|p| p == w)),
            "plaintext on the relay path"
        );
    }
}

/// Everything a member receives from its (relay) path that is not a fresh frame of the peer is
/// refused, counted, and never delivered.
#[tokio::test]
async fn tampered_replayed_unknown_retired_and_foreign_frames_are_refused() {
    let relay = TestRelay::start().await;
    let s = secrets(3);
    let relay_only = MediaConfig {
        direct: false,
        ..quick()
    };
    let (a, b) = pair(&s, [relay_only.clone(), relay_only], Some(&relay)).await;
    a.send(Stream::Audio, b"one").await.unwrap();
    assert_eq!(next(&b).await.data, b"one");
    let captured = relay.forwarded.lock().unwrap().last().unwrap().clone();

    // Tampered: every byte of the packet after the header flipped in turn.
    for i in PACKET_HEADER_LEN..captured.len() {
        let mut t = captured.clone();
        t[i] ^= 0x40;
        relay.inject(1, &t).await;
    }
    // Replayed.
    relay.inject(1, &captured).await;
    // A third party's frame: same KIDs, other keys.
    let mut other = SframeContext::new();
    secrets(99)
        .sender_chain(0)
        .install_send(&mut other)
        .unwrap();
    let forged = protected(&mut other, kid_of(0, 0, Stream::Audio), b"forged", 0);
    relay.inject(1, &forged).await;
    // Unknown KID: an epoch far ahead.
    let mut ahead = SframeContext::new();
    let mut chain = s.sender_chain(0);
    for _ in 0..10 {
        chain = chain.next().unwrap();
    }
    chain.install_send(&mut ahead).unwrap();
    relay
        .inject(
            1,
            &protected(&mut ahead, chain.kid(Stream::Audio), b"ahead", 1),
        )
        .await;
    // Another sender index than the peer's.
    let mut third = SframeContext::new();
    s.sender_chain(7).install_send(&mut third).unwrap();
    let mut p = protected(&mut third, kid_of(0, 7, Stream::Audio), b"third", 2);
    p[2..4].copy_from_slice(&7u16.to_be_bytes());
    relay.inject(1, &p).await;
    // Junk.
    relay.inject(1, &[1, 2, 3]).await;
    relay.inject(1, &[200; 40]).await;
    // From an address that is neither the relay nor a proven peer address.
    let stranger = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    let mut s_ctx = SframeContext::new();
    s.sender_chain(0).install_send(&mut s_ctx).unwrap();
    for _ in 0..1000 {
        let _ = s_ctx.encrypt(kid_of(0, 0, Stream::Audio), &[], b"x", &mut [0u8; 64]);
    }
    let from_stranger = protected(&mut s_ctx, kid_of(0, 0, Stream::Audio), b"stranger", 3);
    stranger
        .send_to(&from_stranger, b.local_addr().unwrap())
        .await
        .unwrap();

    // A retired key: the peer moves to epoch 1; after the grace period a frame under epoch 0
    // (fresh counter, right key) is refused.
    a.rekey().await.unwrap();
    a.send(Stream::Audio, b"two").await.unwrap();
    let two = next(&b).await;
    assert_eq!((two.data.as_slice(), two.epoch), (&b"two"[..], 1));
    tokio::time::sleep(Duration::from_millis(600)).await;
    relay
        .inject(
            1,
            &protected(&mut s_ctx, kid_of(0, 0, Stream::Audio), b"retired", 4),
        )
        .await;

    a.send(Stream::Audio, b"three").await.unwrap();
    assert_eq!(next(&b).await.data, b"three", "nothing else was delivered");
    assert!(b.try_recv().is_none());
    let st = b.stats();
    assert_eq!(st.frames_received, 3, "{st:?}");
    assert_eq!(st.replays_refused, 1, "{st:?}");
    assert!(st.auth_failures >= 2, "tampered and forged: {st:?}");
    assert!(st.unknown_key >= 2, "far epoch and retired: {st:?}");
    assert!(st.foreign_packets >= 2, "other sender and stranger: {st:?}");
    assert!(st.malformed >= 2, "{st:?}");
    assert_eq!(st.receive_epoch, 1);
}

fn kid_of(epoch: u32, sender: u16, stream: Stream) -> u64 {
    crate::media::handshake::kid(epoch, sender, stream)
}

/// One single-packet datagram carrying `plain` protected under `kid`.
fn protected(ctx: &mut SframeContext, kid: u64, plain: &[u8], sequence: u32) -> Vec<u8> {
    let mut frame = vec![0u8; plain.len() + MAX_HEADER_LEN + TAG_LEN];
    let n = ctx.encrypt(kid, &[], plain, &mut frame).unwrap();
    let (_, sender, stream) = kid_parts(kid).unwrap();
    let mut out = Vec::new();
    let mut scratch = vec![0u8; 1200];
    split(
        sender,
        stream,
        sequence + 1000,
        &frame[..n],
        1200,
        &mut scratch,
        |p| out = p.to_vec(),
    )
    .unwrap();
    out
}

#[tokio::test]
async fn epochs_advance_on_request_and_by_count_without_losing_frames() {
    let s = secrets(4);
    let (a, b) = pair(
        &s,
        [
            MediaConfig {
                rekey_after_frames: Some(10),
                ..quick()
            },
            quick(),
        ],
        None,
    )
    .await;
    for i in 0..35u32 {
        a.send(Stream::Audio, &i.to_be_bytes()).await.unwrap();
        let got = next(&b).await;
        assert_eq!(got.data, i.to_be_bytes());
        assert_eq!(got.epoch, i / 10);
    }
    assert_eq!(a.rekey().await.unwrap(), 4);
    a.send(Stream::Audio, b"after").await.unwrap();
    assert_eq!(next(&b).await.epoch, 4);
    assert_eq!((a.stats().send_epoch, b.stats().receive_epoch), (4, 4));
    // The other direction is untouched.
    b.send(Stream::Audio, b"back").await.unwrap();
    assert_eq!(next(&a).await.epoch, 0);
}

#[tokio::test]
async fn addresses_are_sealed_and_a_path_is_required() {
    let s = secrets(5);
    let mut a = PreparedMedia::new(&s, 0, 1, LOCAL).await.unwrap();
    let mut b = PreparedMedia::new(&s, 1, 0, LOCAL).await.unwrap();
    let sealed = a.seal_candidates(true).unwrap();
    let addr = a.local_addr().unwrap().to_string();
    assert!(!sealed.contains(&crate::util::hex(addr.as_bytes())));
    // Altered, replayed, or sealed by a stranger: refused.
    let mut altered = unhex(&sealed).unwrap();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    assert!(b.open_candidates(&hex(&altered)).is_err());
    assert_eq!(
        b.open_candidates(&sealed).unwrap(),
        vec![a.local_addr().unwrap()]
    );
    assert!(b.open_candidates(&sealed).is_err(), "replay");
    let mut stranger = PreparedMedia::new(&secrets(6), 0, 1, LOCAL).await.unwrap();
    assert!(b
        .open_candidates(&stranger.seal_candidates(true).unwrap())
        .is_err());
    assert!(PreparedMedia::new(&s, 1, 1, LOCAL).await.is_err());
    // No direct answer and no relay: a clear error, not a hang.
    let err = a
        .start(
            vec![b.local_addr().unwrap()],
            None,
            MediaConfig {
                direct_timeout: Duration::from_millis(200),
                ..quick()
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no direct path answered"), "{err}");
}
