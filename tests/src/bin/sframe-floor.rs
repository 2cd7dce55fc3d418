//! The Rust-level and raw figures the C ABI benchmark (`tests/c/bench_sframe.c`) is compared with,
//! measured the same way: nanoseconds per SFrame encrypt / decrypt of 1200-byte frames through
//! `SframeContext`, and per raw aws-lc-rs AES-GCM seal / open of the same size, both suites: the
//! raw figures copy between the same buffers SFrame uses (plaintext into a pool of 1 024 output
//! buffers for sealing; pooled frames into one output buffer for opening), so the ratios measure
//! the SFrame layer and the C boundary, not the buffer discipline.
//! Usage: sframe-floor [iterations]

use std::time::Instant;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
use vcsdk::media::sframe::{CipherSuite, SframeContext, MAX_HEADER_LEN, TAG_LEN};

const SIZE: usize = 1200;
const POOL: usize = 1024;

fn nonce(i: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&i.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn raw(alg: &'static aws_lc_rs::aead::Algorithm, key_len: usize, iterations: usize) -> (f64, f64) {
    let key = LessSafeKey::new(UnboundKey::new(alg, &vec![3u8; key_len]).unwrap());
    // Like SFrame's buffer encryption: the plaintext is copied into one of the same pool of output
    // buffers and sealed there.
    let plain = vec![5u8; SIZE];
    let mut outputs = vec![vec![0u8; SIZE]; POOL];
    let start = Instant::now();
    for i in 0..iterations {
        let buf = &mut outputs[i % POOL];
        buf.copy_from_slice(&plain);
        let _ = std::hint::black_box(
            key.seal_in_place_separate_tag(nonce(i as u64), Aad::from(&[0u8; 3]), buf)
                .unwrap(),
        );
    }
    let seal = start.elapsed().as_nanos() as f64 / iterations as f64;
    let sealed: Vec<(Vec<u8>, aws_lc_rs::aead::Tag)> = (0..POOL)
        .map(|i| {
            let mut b = vec![5u8; SIZE];
            let tag = key
                .seal_in_place_separate_tag(nonce(i as u64), Aad::from(&[0u8; 3]), &mut b)
                .unwrap();
            (b, tag)
        })
        .collect();
    let mut out = vec![0u8; SIZE];
    let start = Instant::now();
    for i in 0..iterations {
        let (b, tag) = &sealed[i % POOL];
        out.copy_from_slice(b);
        std::hint::black_box(
            key.open_in_place_separate_tag(
                nonce((i % POOL) as u64),
                Aad::from(&[0u8; 3]),
                tag.as_ref(),
                &mut out,
            )
            .unwrap()
            .len(),
        );
    }
    let open = start.elapsed().as_nanos() as f64 / iterations as f64;
    (seal, open)
}

fn rust_level(suite: CipherSuite, iterations: usize) -> (f64, f64) {
    let key = vec![3u8; suite.key_len()];
    let mut tx = SframeContext::new();
    tx.add_send_key(suite, 1, &key).unwrap();
    let plain = vec![5u8; SIZE];
    let mut frames = vec![vec![0u8; SIZE + MAX_HEADER_LEN + TAG_LEN]; POOL];
    let start = Instant::now();
    for i in 0..iterations {
        std::hint::black_box(tx.encrypt(1, &[], &plain, &mut frames[i % POOL]).unwrap());
    }
    let enc = start.elapsed().as_nanos() as f64 / iterations as f64;
    let lens: Vec<usize> = frames
        .iter_mut()
        .map(|f| tx.encrypt(1, &[], &plain, f).unwrap())
        .collect();
    let mut out = vec![0u8; SIZE];
    let mut spent = 0f64;
    let mut done = 0;
    while done < iterations {
        let mut rx = SframeContext::new();
        rx.add_receive_key(suite, 1, &key).unwrap();
        let start = Instant::now();
        for i in 0..POOL.min(iterations - done) {
            std::hint::black_box(rx.decrypt(&[], &frames[i][..lens[i]], &mut out).unwrap());
            done += 1;
        }
        spent += start.elapsed().as_nanos() as f64;
    }
    (enc, spent / iterations as f64)
}

fn main() {
    let iterations: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("iterations: a number"))
        .unwrap_or(2_000_000)
        .max(POOL);
    for (name, suite, alg, key_len) in [
        ("aes128gcm", CipherSuite::Aes128GcmSha256, &AES_128_GCM, 16),
        ("aes256gcm", CipherSuite::Aes256GcmSha512, &AES_256_GCM, 32),
    ] {
        let (seal, open) = raw(alg, key_len, iterations);
        println!("raw {name} encrypt {seal:.1} ns decrypt {open:.1} ns");
        let (enc, dec) = rust_level(suite, iterations);
        println!("rust {name} encrypt {enc:.1} ns decrypt {dec:.1} ns");
    }
}
