//! Media load: packets per second through two SDK media sessions over loopback UDP, against a
//! plain UDP send/receive loop of the same sizes in the same run; and how many concurrent 9 Mbit/s
//! video streams one core can protect and unprotect (SFrame, packetization, reassembly).
//!
//! Both transfers are closed-loop: the sender keeps at most a window of packets in flight, so the
//! figure is what the path carries without loss rather than how fast packets can be dropped.
//!
//! Usage: media-load [--packets N] [--window W]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use vcsdk::media::handshake::SessionSecrets;
use vcsdk::media::packet::{split, PacketHeader, Reassembler, PACKET_HEADER_LEN};
use vcsdk::media::sframe::{CipherSuite, SframeContext, MAX_HEADER_LEN, TAG_LEN};
use vcsdk::media::{MediaConfig, MediaSession, PreparedMedia, Stream};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Bytes on the wire per packet in the single-packet case.
const PACKET: usize = 1200;
/// A 9 Mbit/s stream at 30 frames per second.
const STREAM_BYTES_PER_SEC: f64 = 9_000_000.0 / 8.0;
const VIDEO_FRAME: usize = 37_500;

struct Args {
    packets: u64,
    window: u64,
}

fn args() -> Args {
    let mut a = Args {
        packets: 200_000,
        window: 256,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        let n: u64 = value
            .parse()
            .unwrap_or_else(|_| panic!("{flag} needs a number, got {value:?}"));
        match flag.as_str() {
            "--packets" => a.packets = n.max(1000),
            "--window" => a.window = n.max(1),
            other => panic!("unknown argument {other} (--packets N, --window W)"),
        }
    }
    a
}

/// Waits until fewer than `window` units are in flight.
async fn pace(sent: u64, received: &AtomicU64, window: u64) {
    while sent.saturating_sub(received.load(Ordering::Relaxed)) >= window {
        tokio::task::yield_now().await;
    }
}

/// A loopback UDP socket with the same 4 MiB buffers the SDK asks for.
async fn socket() -> UdpSocket {
    let s = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    let r = socket2::SockRef::from(&s);
    let _ = r.set_recv_buffer_size(4 << 20);
    let _ = r.set_send_buffer_size(4 << 20);
    s
}

/// How long a receiver waits for the next unit before counting the rest as lost.
const IDLE: std::time::Duration = std::time::Duration::from_millis(500);

/// Plain UDP: `count` datagrams of `size` bytes; returns datagrams per second delivered and how
/// many were lost.
async fn plain_udp(size: usize, count: u64, window: u64) -> (f64, u64) {
    let rx = socket().await;
    let tx = socket().await;
    let to = rx.local_addr().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let receiver = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        let started = Instant::now();
        let mut last = started;
        let mut got = 0u64;
        while got < count {
            match tokio::time::timeout(IDLE, rx.recv_from(&mut buf)).await {
                Ok(r) => {
                    r.unwrap();
                    last = Instant::now();
                    got += 1;
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                // Lost datagrams: release the sender and stop.
                Err(_) => {
                    counter.store(u64::MAX / 2, Ordering::Relaxed);
                    break;
                }
            }
        }
        (last - started, got)
    });
    let data = vec![7u8; size];
    for sent in 0..count {
        pace(sent, &received, window).await;
        tx.send_to(&data, to).await.unwrap();
    }
    let (took, got) = receiver.await.unwrap();
    (got as f64 / took.as_secs_f64(), count - got)
}

async fn sessions(level: u8) -> (MediaSession, MediaSession) {
    let secrets = SessionSecrets::from_epoch_secret([5; 32], level, [0; 32]);
    let mut a = PreparedMedia::new(&secrets, 0, 1, LOCAL).await.unwrap();
    let mut b = PreparedMedia::new(&secrets, 1, 0, LOCAL).await.unwrap();
    let (sa, sb) = (
        a.seal_candidates(true).unwrap(),
        b.seal_candidates(true).unwrap(),
    );
    let (ca, cb): (Vec<SocketAddr>, Vec<SocketAddr>) = (
        a.open_candidates(&sb).unwrap(),
        b.open_candidates(&sa).unwrap(),
    );
    let config = MediaConfig {
        receive_queue: 4096,
        ..MediaConfig::default()
    };
    let (a, b) = tokio::join!(a.start(ca, None, config.clone()), b.start(cb, None, config));
    (a.unwrap(), b.unwrap())
}

/// Two SDK sessions: `frames` frames of `size` bytes on the video stream; returns packets per
/// second delivered (and frames per second).
async fn sdk_media(level: u8, size: usize, frames: u64, window_packets: u64) -> (f64, f64, u64) {
    let (a, b) = sessions(level).await;
    let b = Arc::new(b);
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let rx = b.clone();
    let receiver = tokio::spawn(async move {
        let started = Instant::now();
        let mut last = started;
        while counter.load(Ordering::Relaxed) < frames {
            match tokio::time::timeout(IDLE, rx.recv()).await {
                Ok(f) => {
                    assert_eq!(f.expect("session open").data.len(), size);
                    last = Instant::now();
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    counter.store(u64::MAX / 2, Ordering::Relaxed);
                    break;
                }
            }
        }
        last - started
    });
    let data = vec![9u8; size];
    let before = a.stats().packets_sent;
    let per_frame = size.div_ceil(PACKET - PACKET_HEADER_LEN - 40).max(1) as u64;
    let window = (window_packets / per_frame).max(1);
    for sent in 0..frames {
        pace(sent, &received, window).await;
        a.send(Stream::Video, &data).await.unwrap();
    }
    let took = receiver.await.unwrap();
    let packets = a.stats().packets_sent - before;
    let s = b.stats();
    let got = s.frames_received;
    let delivered = packets as f64 * got as f64 / frames as f64;
    (
        delivered / took.as_secs_f64(),
        got as f64 / took.as_secs_f64(),
        frames - got,
    )
}

/// One core: protect, packetize, reassemble and unprotect `frames` 9 Mbit/s video frames;
/// returns how many such streams that core sustains.
fn streams_per_core(suite: CipherSuite, frames: usize) -> f64 {
    let key = vec![1u8; suite.key_len()];
    let mut sender = SframeContext::new();
    sender.add_send_key(suite, 1, &key).unwrap();
    let mut receiver = SframeContext::new();
    receiver.add_receive_key(suite, 1, &key).unwrap();
    let plain = vec![3u8; VIDEO_FRAME];
    let mut protected = vec![0u8; VIDEO_FRAME + MAX_HEADER_LEN + TAG_LEN];
    let mut scratch = vec![0u8; PACKET];
    let mut reassembler = Reassembler::new(16, 1 << 20);
    let started = Instant::now();
    for seq in 0..frames as u32 {
        let n = sender.encrypt(1, &[], &plain, &mut protected).unwrap();
        let mut whole = None;
        split(0, 1, seq, &protected[..n], PACKET, &mut scratch, |p| {
            let (h, payload) = PacketHeader::parse(p).unwrap();
            if let Some(f) = reassembler.push(h, payload) {
                whole = Some(f);
            }
        })
        .unwrap();
        let mut whole = whole.expect("frame reassembled");
        let (_, range) = receiver.decrypt_in_place(&[], &mut whole).unwrap();
        assert_eq!(range.len(), VIDEO_FRAME);
    }
    let bytes_per_sec = (frames * VIDEO_FRAME) as f64 / started.elapsed().as_secs_f64();
    bytes_per_sec / STREAM_BYTES_PER_SEC
}

fn main() {
    let args = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "media-load: {} packets per case, window {} packets, loopback UDP, 2 worker threads",
        args.packets, args.window
    );
    rt.block_on(async {
        // Warm-up, not reported.
        let _ = plain_udp(PACKET, 10_000, args.window).await;
        let (baseline, lost) = plain_udp(PACKET, args.packets, args.window).await;
        println!("plain UDP, {PACKET}-byte datagrams: {baseline:.0} packets/s ({lost} lost)");
        let single = PACKET - PACKET_HEADER_LEN - 17 - TAG_LEN;
        for level in [2u8, 3] {
            let (pps, _, lost) = sdk_media(level, single, args.packets, args.window).await;
            println!(
                "SDK media level {level}, {single}-byte frames (one {PACKET}-byte packet each): {pps:.0} packets/s = {:.2} x plain UDP ({lost} frames lost)",
                pps / baseline
            );
            let frames = (args.packets / 14).max(100);
            let (pps, fps, lost) = sdk_media(level, 16 * 1024, frames, args.window).await;
            println!(
                "SDK media level {level}, 16 KiB frames (14 packets each): {pps:.0} packets/s ({fps:.0} frames/s, {:.0} Mbit/s) = {:.2} x plain UDP ({lost} frames lost)",
                fps * 16.0 * 1024.0 * 8.0 / 1e6,
                pps / baseline
            );
        }
    });
    for (name, suite) in [
        ("AES-128-GCM (level 2)", CipherSuite::Aes128GcmSha256),
        ("AES-256-GCM (level 3)", CipherSuite::Aes256GcmSha512),
    ] {
        let _ = streams_per_core(suite, 200);
        let streams = streams_per_core(suite, 5_000);
        println!(
            "one core, {name}: {streams:.0} concurrent 9 Mbit/s video streams protected and unprotected (SFrame + packets + reassembly)"
        );
    }
}
