//! SFrame frame protection against its baselines, measured in the same run:
//! - raw aws-lc-rs AES-GCM seal/open of the same sizes (prepared key, same buffer): the floor;
//! - the `sframe` crate (2.x, its default backend): the anchor to beat;
//! - this SDK's `SframeContext` (decryption includes the replay check).
//!
//! Both cipher suites (0x0004 AES-128-GCM, 0x0005 AES-256-GCM), 1200-byte and 16 KiB frames (and
//! 160-byte audio frames). Run: `cargo bench -p vcsdk --bench sframe`; `scripts/bench-sframe.sh`
//! prints the ratios.

use std::hint::black_box;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vcsdk::media::sframe::{CipherSuite, SframeContext, MAX_HEADER_LEN, TAG_LEN};

const SIZES: [usize; 3] = [160, 1200, 16 * 1024];
const KID: u64 = 0x0102;

struct Suite {
    name: &'static str,
    ours: CipherSuite,
    theirs: sframe::CipherSuite,
    raw: &'static aws_lc_rs::aead::Algorithm,
    key_len: usize,
}

const SUITES: [Suite; 2] = [
    Suite {
        name: "aes128gcm",
        ours: CipherSuite::Aes128GcmSha256,
        theirs: sframe::CipherSuite::AesGcm128Sha256,
        raw: &AES_128_GCM,
        key_len: 16,
    },
    Suite {
        name: "aes256gcm",
        ours: CipherSuite::Aes256GcmSha512,
        theirs: sframe::CipherSuite::AesGcm256Sha512,
        raw: &AES_256_GCM,
        key_len: 32,
    },
];

fn protect(c: &mut Criterion) {
    for suite in &SUITES {
        let mut group = c.benchmark_group(format!("protect_{}", suite.name));
        for size in SIZES {
            group.throughput(Throughput::Bytes(size as u64));
            let raw =
                LessSafeKey::new(UnboundKey::new(suite.raw, &vec![1u8; suite.key_len]).unwrap());
            let mut buf = vec![0u8; size + MAX_HEADER_LEN + TAG_LEN];
            let mut counter = 0u64;
            group.bench_with_input(
                BenchmarkId::new("raw_aws_lc_seal", size),
                &size,
                |b, &size| {
                    b.iter(|| {
                        counter += 1;
                        let mut nonce = [0u8; 12];
                        nonce[4..].copy_from_slice(&counter.to_be_bytes());
                        raw.seal_in_place_separate_tag(
                            Nonce::assume_unique_for_key(nonce),
                            Aad::from(&[0u8; 3]),
                            &mut buf[..size],
                        )
                        .unwrap()
                    })
                },
            );
            let mut ctx = SframeContext::new();
            ctx.add_send_key(suite.ours, KID, &vec![2u8; suite.key_len])
                .unwrap();
            group.bench_with_input(
                BenchmarkId::new("vcsdk_in_place", size),
                &size,
                |b, &size| b.iter(|| ctx.encrypt_in_place(KID, &[], &mut buf, size).unwrap()),
            );
            let plain = vec![5u8; size];
            let mut out = vec![0u8; size + MAX_HEADER_LEN + TAG_LEN];
            group.bench_with_input(
                BenchmarkId::new("vcsdk_into_buffer", size),
                &size,
                |b, _| b.iter(|| ctx.encrypt(KID, &[], &plain, &mut out).unwrap()),
            );
            let key = sframe::key::EncryptionKey::derive_from(
                suite.theirs,
                KID,
                vec![2u8; suite.key_len],
            )
            .unwrap();
            let mut frame_counter = sframe::frame::PanickingMonotonicCounter::new(u64::MAX);
            let mut their_buf: Vec<u8> = Vec::with_capacity(size + 64);
            group.bench_with_input(BenchmarkId::new("sframe_crate", size), &size, |b, _| {
                b.iter(|| {
                    let view = sframe::frame::MediaFrameView::new(&mut frame_counter, &plain);
                    black_box(view.encrypt_into(&key, &mut their_buf).unwrap());
                })
            });
        }
        group.finish();
    }
}

fn unprotect(c: &mut Criterion) {
    for suite in &SUITES {
        let mut group = c.benchmark_group(format!("unprotect_{}", suite.name));
        for size in SIZES {
            group.throughput(Throughput::Bytes(size as u64));
            let key = vec![3u8; suite.key_len];
            let mut sender = SframeContext::new();
            sender.add_send_key(suite.ours, KID, &key).unwrap();
            // Fresh frames for every iteration (the replay window refuses repeats): about 1 MiB of
            // them, to stay in cache like the baseline's buffer while the receiver — renewed after
            // each pass — costs next to nothing per frame.
            let pool = ((1 << 20) / size).clamp(64, 4096);
            let frames: Vec<Vec<u8>> = (0..pool)
                .map(|_| {
                    let mut f = vec![0u8; size + MAX_HEADER_LEN + TAG_LEN];
                    let n = sender.encrypt(KID, &[], &vec![5u8; size], &mut f).unwrap();
                    f.truncate(n);
                    f
                })
                .collect();
            let raw =
                LessSafeKey::new(UnboundKey::new(suite.raw, &vec![1u8; suite.key_len]).unwrap());
            let nonce = [9u8; 12];
            let mut sealed = vec![6u8; size];
            let tag = raw
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(&[0u8; 3]),
                    &mut sealed,
                )
                .unwrap();
            let mut scratch = sealed.clone();
            group.bench_with_input(BenchmarkId::new("raw_aws_lc_open", size), &size, |b, _| {
                b.iter(|| {
                    scratch.copy_from_slice(&sealed);
                    raw.open_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(&[0u8; 3]),
                        tag.as_ref(),
                        &mut scratch,
                    )
                    .map(|p| p.len())
                    .unwrap()
                })
            });
            let mut out = vec![0u8; size];
            group.bench_with_input(
                BenchmarkId::new("vcsdk_with_replay_check", size),
                &size,
                |b, _| {
                    let fresh = || {
                        let mut r = SframeContext::new();
                        r.add_receive_key(suite.ours, KID, &key).unwrap();
                        r
                    };
                    let mut receiver = fresh();
                    let mut i = 0;
                    b.iter(|| {
                        if i == frames.len() {
                            receiver = fresh();
                            i = 0;
                        }
                        let r = receiver.decrypt(&[], &frames[i], &mut out).unwrap();
                        i += 1;
                        r
                    })
                },
            );
            let their_key =
                sframe::key::DecryptionKey::derive_from(suite.theirs, KID, key.clone()).unwrap();
            let views: Vec<sframe::frame::EncryptedFrameView> = frames
                .iter()
                .map(|f| sframe::frame::EncryptedFrameView::try_from(f.as_slice()).unwrap())
                .collect();
            let mut their_out: Vec<u8> = Vec::with_capacity(size + 64);
            let mut i = 0;
            group.bench_with_input(BenchmarkId::new("sframe_crate", size), &size, |b, _| {
                b.iter(|| {
                    i = (i + 1) % views.len();
                    black_box(views[i].decrypt_into(&their_key, &mut their_out).unwrap());
                })
            });
        }
        group.finish();
    }
}

// `criterion_group!` makes a public `benches` it cannot document.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, protect, unprotect);
}
use group::benches;
criterion_main!(benches);
