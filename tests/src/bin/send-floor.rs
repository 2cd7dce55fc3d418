//! The Rust figure the bindings' per-frame cost is compared with (scripts/bench-bindings.sh):
//! nanoseconds per `MediaSession::send` of a 1200-byte frame (SFrame encryption and the UDP send),
//! each awaited before the next, on a real call between two SDK clients through the real vc-ca and
//! vc-server on 127.0.0.1 — what the Kotlin and Python benchmarks measure through their bindings.
//! Usage: send-floor [frames] [rounds]; prints `rust send NS ns` (the best round).
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use vcsdk::client::ClientEvent;
use vcsdk::media::{MediaConfig, Stream};
use vcsdk::proto::signal::Answer;
use vcsdk_tests::{enroll, online, TestCa, TestServer};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let frames: u32 = args.next().map_or(20_000, |a| a.parse().expect("frames"));
    let rounds: u32 = args.next().map_or(5, |a| a.parse().expect("rounds"));
    let ca = TestCa::start(&[]);
    let server = TestServer::start(&ca, &["rate_per_minute = 0"]);
    let home = tempfile::tempdir().expect("tempdir");
    let (alice, _alice_events) =
        online(&server, &ca, &enroll(&ca, home.path(), "alice").await).await;
    let (bob, mut bob_events) = online(&server, &ca, &enroll(&ca, home.path(), "bob").await).await;
    let call_id = alice.call("bob").await.expect("call");
    loop {
        match tokio::time::timeout(Duration::from_secs(30), bob_events.recv()).await {
            Ok(Some(ClientEvent::IncomingCall { .. })) => break,
            Ok(Some(_)) => {}
            other => panic!("no incoming call: {other:?}"),
        }
    }
    bob.answer(&call_id, Answer::Accept).await.expect("answer");
    let (a, b) = tokio::join!(
        alice.media(&call_id, MediaConfig::default()),
        bob.media(&call_id, MediaConfig::default())
    );
    let (a, b) = (a.expect("media"), b.expect("media"));
    // The receiver's SDK decrypts every frame and, as nobody takes them here, drops them once its
    // queue is full: the same work on that side as in the bindings' benchmarks.
    let receiver = b.clone();
    let frame = vec![7u8; 1200];
    let frame = std::sync::Arc::new(frame);
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..frames {
            a.send(Stream::Video, frame.as_slice()).await.expect("send");
        }
        best = best.min(start.elapsed().as_nanos() as f64 / f64::from(frames));
    }
    println!("rust send {best:.0} ns");
    // The same from a thread outside the runtime, blocking on each send as the C ABI and the
    // bindings' blocking calls do.
    let handle = tokio::runtime::Handle::current();
    let sender = a.clone();
    let blocking = std::thread::spawn(move || {
        let mut best = f64::INFINITY;
        for _ in 0..rounds {
            let start = Instant::now();
            for _ in 0..frames {
                handle
                    .block_on(sender.send(Stream::Video, frame.as_slice()))
                    .expect("send");
            }
            best = best.min(start.elapsed().as_nanos() as f64 / f64::from(frames));
        }
        best
    })
    .join()
    .expect("sender thread");
    println!("rust send_blocking {blocking:.0} ns");
    assert_eq!(receiver.stats().auth_failures, 0);
    a.close();
}
