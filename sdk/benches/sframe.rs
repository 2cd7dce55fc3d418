//! SFrame frame protection against raw AES-GCM (aws-lc-rs, prepared key, same buffer): the baseline
//! the media path is measured by. Also: the cost of preparing the key for every frame, which this
//! implementation avoids. Run: `cargo bench -p vcsdk --bench sframe`.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vcsdk::media::sframe::{CipherSuite, SframeContext, SframeKey, MAX_HEADER_LEN, TAG_LEN};

const SIZES: [usize; 3] = [160, 1200, 16 * 1024];

fn protect(c: &mut Criterion) {
    let mut group = c.benchmark_group("protect");
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let raw = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[1u8; 16]).unwrap());
        let mut buf = vec![0u8; size + MAX_HEADER_LEN + TAG_LEN];
        let mut counter = 0u64;
        group.bench_with_input(
            BenchmarkId::new("aes128gcm_raw_baseline", size),
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
        ctx.add_send_key(CipherSuite::Aes128GcmSha256, 0x0102, &[2u8; 16])
            .unwrap();
        group.bench_with_input(
            BenchmarkId::new("sframe_aes128gcm_in_place", size),
            &size,
            |b, &size| b.iter(|| ctx.encrypt_in_place(0x0102, &[], &mut buf, size).unwrap()),
        );
        let mut ctx256 = SframeContext::new();
        ctx256
            .add_send_key(CipherSuite::Aes256GcmSha512, 0x0102, &[2u8; 32])
            .unwrap();
        group.bench_with_input(
            BenchmarkId::new("sframe_aes256gcm_in_place", size),
            &size,
            |b, &size| {
                b.iter(|| {
                    ctx256
                        .encrypt_in_place(0x0102, &[], &mut buf, size)
                        .unwrap()
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("key_setup_per_frame_aes128gcm", size),
            &size,
            |b, &size| {
                b.iter(|| {
                    let mut fresh = SframeContext::new();
                    fresh
                        .add_send_key(CipherSuite::Aes128GcmSha256, 0x0102, &[2u8; 16])
                        .unwrap();
                    fresh.encrypt_in_place(0x0102, &[], &mut buf, size).unwrap()
                })
            },
        );
    }
    group.finish();
}

fn unprotect(c: &mut Criterion) {
    let mut group = c.benchmark_group("unprotect");
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let mut sender = SframeContext::new();
        sender
            .add_send_key(CipherSuite::Aes128GcmSha256, 7, &[3u8; 16])
            .unwrap();
        // Fresh frames for every iteration (the replay window refuses repeats); few enough to stay
        // in cache like the baseline's buffer. The receiver is renewed after each pass.
        let frames: Vec<Vec<u8>> = (0..64)
            .map(|_| {
                let mut f = vec![0u8; size + MAX_HEADER_LEN + TAG_LEN];
                let n = sender.encrypt(7, &[], &vec![5u8; size], &mut f).unwrap();
                f.truncate(n);
                f
            })
            .collect();
        let raw = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[1u8; 16]).unwrap());
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
        group.bench_with_input(
            BenchmarkId::new("aes128gcm_raw_baseline", size),
            &size,
            |b, _| {
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
            },
        );
        let mut out = vec![0u8; size];
        group.bench_with_input(BenchmarkId::new("sframe_aes128gcm", size), &size, |b, _| {
            let mut receiver = SframeContext::new();
            receiver
                .add_receive_key(CipherSuite::Aes128GcmSha256, 7, &[3u8; 16])
                .unwrap();
            let mut i = 0;
            b.iter(|| {
                if i == frames.len() {
                    receiver = SframeContext::new();
                    receiver
                        .add_receive_key(CipherSuite::Aes128GcmSha256, 7, &[3u8; 16])
                        .unwrap();
                    i = 0;
                }
                let r = receiver.decrypt(&[], &frames[i], &mut out).unwrap();
                i += 1;
                r
            })
        });
    }
    group.finish();
    let _ = SframeKey::derive(CipherSuite::Aes128GcmSha256, 0, &[1]);
}

criterion_group!(benches, protect, unprotect);
criterion_main!(benches);
