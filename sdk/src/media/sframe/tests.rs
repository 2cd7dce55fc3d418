//! RFC 9605 test vectors (every header vector; the frame vectors of suites 0x0004 and 0x0005) and
//! attacks on the frame layer.

use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::util::unhex;

const VECTORS: &str = include_str!("../../../tests/data/rfc9605-test-vectors.json");

fn hex(v: &Value) -> Vec<u8> {
    unhex(v.as_str().expect("hex string")).expect("hex")
}

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("vectors")
}

#[test]
fn every_header_vector() {
    let all = vectors();
    let headers = all["header"].as_array().unwrap();
    assert_eq!(headers.len(), 289);
    for v in headers {
        let kid = v["kid"].as_u64().unwrap();
        let ctr = v["ctr"].as_u64().unwrap();
        let encoded = hex(&v["encoded"]);
        let header = Header { kid, ctr };
        let mut out = [0u8; MAX_HEADER_LEN];
        let len = header.encode(&mut out).unwrap();
        assert_eq!(&out[..len], &encoded[..], "kid {kid} ctr {ctr}");
        assert_eq!(Header::decode(&encoded).unwrap(), (header, encoded.len()));
    }
}

#[test]
fn frame_vectors_of_the_aes_gcm_suites() {
    let all = vectors();
    let mut checked = 0;
    for v in all["sframe"].as_array().unwrap() {
        let Some(suite) = CipherSuite::from_id(v["cipher_suite"].as_u64().unwrap() as u16) else {
            continue;
        };
        let kid = v["kid"].as_u64().unwrap();
        let ctr = v["ctr"].as_u64().unwrap();
        let base_key = hex(&v["base_key"]);
        let (key, salt) = derive_key_material(suite, kid, &base_key).unwrap();
        assert_eq!(key, hex(&v["sframe_key"]), "key, suite {suite:?}");
        assert_eq!(
            salt.to_vec(),
            hex(&v["sframe_salt"]),
            "salt, suite {suite:?}"
        );
        let metadata = hex(&v["metadata"]);
        let pt = hex(&v["pt"]);
        let ct = hex(&v["ct"]);

        let mut sender = SframeContext::new();
        sender.add_send_key(suite, kid, &base_key).unwrap();
        let mut out = vec![0u8; pt.len() + MAX_HEADER_LEN + TAG_LEN];
        let n = sender
            .encrypt_with_counter(kid, ctr, &metadata, &pt, &mut out)
            .unwrap();
        assert_eq!(&out[..n], &ct[..], "ciphertext, suite {suite:?}");

        let mut receiver = SframeContext::new();
        receiver.add_receive_key(suite, kid, &base_key).unwrap();
        let mut plain = vec![0u8; ct.len()];
        let (got_kid, len) = receiver.decrypt(&metadata, &ct, &mut plain).unwrap();
        assert_eq!((got_kid, &plain[..len]), (kid, &pt[..]));
        checked += 1;
    }
    assert_eq!(checked, 2, "vectors for 0x0004 and 0x0005");
}

fn pair(suite: CipherSuite, kid: u64) -> (SframeContext, SframeContext) {
    let key = [7u8; 32];
    let mut a = SframeContext::new();
    a.add_send_key(suite, kid, &key).unwrap();
    let mut b = SframeContext::new();
    b.add_receive_key(suite, kid, &key).unwrap();
    (a, b)
}

#[test]
fn round_trips_in_place_and_counters_never_repeat() {
    for suite in [CipherSuite::Aes128GcmSha256, CipherSuite::Aes256GcmSha512] {
        let (mut a, mut b) = pair(suite, 0x1234);
        let mut seen = std::collections::HashSet::new();
        for size in [0usize, 1, 100, 1200, 65_536] {
            let plaintext: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let mut buf = plaintext.clone();
            buf.resize(size + a.overhead(0x1234), 0);
            let n = a.encrypt_in_place(0x1234, b"meta", &mut buf, size).unwrap();
            let (header, _) = Header::decode(&buf[..n]).unwrap();
            assert!(seen.insert(header.ctr), "counter reused");
            let (kid, range) = b.decrypt_in_place(b"meta", &mut buf[..n]).unwrap();
            assert_eq!((kid, &buf[range]), (0x1234, &plaintext[..]));
        }
    }
}

#[test]
fn a_key_whose_counters_ran_out_is_refused_not_reused() {
    let (mut a, mut b) = pair(CipherSuite::Aes128GcmSha256, 7);
    let mut out = [0u8; 64];
    // The last counter a key uses: the frame goes out and opens...
    let n = a
        .encrypt_with_counter(7, u64::MAX - 1, b"", b"last", &mut out)
        .unwrap();
    let mut opened = [0u8; 64];
    assert_eq!(b.decrypt(b"", &out[..n], &mut opened).unwrap(), (7, 4));
    // ...and nothing more can be sent with that key: a new key needs a new KID.
    assert_eq!(
        a.encrypt(7, b"", b"again", &mut out),
        Err(SframeError::CounterExhausted(7))
    );
    assert_eq!(
        a.add_send_key(CipherSuite::Aes128GcmSha256, 7, &[1u8; 16]),
        Err(SframeError::KidReused(7))
    );
}

#[test]
fn tampering_replay_wrong_metadata_and_unknown_keys_are_refused() {
    let (mut a, mut b) = pair(CipherSuite::Aes128GcmSha256, 9);
    let mut frame = [0u8; 64];
    let n = a.encrypt(9, b"m", b"hello", &mut frame).unwrap();
    let frame = &frame[..n];
    let mut out = [0u8; 64];
    for i in 0..n {
        let mut bad = frame.to_vec();
        bad[i] ^= 0x01;
        assert!(
            b.decrypt(b"m", &bad, &mut out).is_err(),
            "flipped byte {i} accepted"
        );
    }
    assert_eq!(
        b.decrypt(b"other", frame, &mut out),
        Err(SframeError::AuthenticationFailed)
    );
    b.decrypt(b"m", frame, &mut out).unwrap();
    assert!(matches!(
        b.decrypt(b"m", frame, &mut out),
        Err(SframeError::Replay { .. })
    ));
    assert!(matches!(
        b.decrypt(b"m", &frame[..5], &mut out),
        Err(SframeError::Malformed(_))
    ));
    let (mut stranger, _) = pair(CipherSuite::Aes128GcmSha256, 10);
    let mut other = [0u8; 64];
    let m = stranger.encrypt(10, b"m", b"hello", &mut other).unwrap();
    assert_eq!(
        b.decrypt(b"m", &other[..m], &mut out),
        Err(SframeError::UnknownKid(10))
    );
    assert_eq!(
        a.encrypt(99, b"", b"x", &mut other),
        Err(SframeError::UnknownKid(99))
    );
    assert!(matches!(
        a.encrypt(9, b"", &[0u8; 100], &mut other),
        Err(SframeError::BufferTooSmall { .. })
    ));
    // A key derived from another secret does not open the frame.
    let mut wrong = SframeContext::new();
    wrong
        .add_receive_key(CipherSuite::Aes128GcmSha256, 9, &[8u8; 32])
        .unwrap();
    let mut frame2 = [0u8; 64];
    let n2 = a.encrypt(9, b"m", b"hello", &mut frame2).unwrap();
    assert_eq!(
        wrong.decrypt(b"m", &frame2[..n2], &mut out),
        Err(SframeError::AuthenticationFailed)
    );
}

#[test]
fn frames_older_than_the_window_are_refused_and_late_ones_accepted() {
    let (mut a, mut b) = pair(CipherSuite::Aes128GcmSha256, 1);
    let mut frames = Vec::new();
    for _ in 0..(REPLAY_WINDOW + 10) {
        let mut f = vec![0u8; 32];
        let n = a.encrypt(1, b"", b"x", &mut f).unwrap();
        f.truncate(n);
        frames.push(f);
    }
    let mut out = [0u8; 8];
    let last = frames.len() - 1;
    b.decrypt(b"", &frames[last], &mut out).unwrap();
    // Reordered but inside the window: accepted once.
    b.decrypt(b"", &frames[last - 100], &mut out).unwrap();
    assert!(matches!(
        b.decrypt(b"", &frames[last - 100], &mut out),
        Err(SframeError::Replay { .. })
    ));
    assert!(matches!(
        b.decrypt(b"", &frames[0], &mut out),
        Err(SframeError::TooOld { .. })
    ));
}

#[test]
fn a_retired_key_works_through_its_grace_period_only() {
    let (mut a, mut b) = pair(CipherSuite::Aes256GcmSha512, 5);
    let mut f = [0u8; 64];
    let mut out = [0u8; 64];
    b.retire_receive_key(5, Duration::from_millis(200));
    let n = a.encrypt(5, b"", b"late", &mut f).unwrap();
    b.decrypt(b"", &f[..n], &mut out).unwrap();
    std::thread::sleep(Duration::from_millis(250));
    let n = a.encrypt(5, b"", b"too late", &mut f).unwrap();
    assert_eq!(
        b.decrypt(b"", &f[..n], &mut out),
        Err(SframeError::UnknownKid(5))
    );
    b.purge_expired();
    assert!(format!("{b:?}").contains("receive_kids: []"));
}

#[test]
fn long_metadata_is_authenticated_too() {
    let (mut a, mut b) = pair(CipherSuite::Aes128GcmSha256, 2);
    let metadata = vec![3u8; 1000];
    let mut f = [0u8; 64];
    let mut out = [0u8; 64];
    let n = a.encrypt(2, &metadata, b"x", &mut f).unwrap();
    let mut other = metadata.clone();
    other[999] = 4;
    assert_eq!(
        b.decrypt(&other, &f[..n], &mut out),
        Err(SframeError::AuthenticationFailed)
    );
    b.decrypt(&metadata, &f[..n], &mut out).unwrap();
}

/// One step of the nonce-reuse property: install a send key (possibly for a KID used before, or
/// with a base key seen before) or encrypt a frame with some KID.
#[derive(Debug, Clone)]
enum Step {
    Install { kid: u64, key: u8, wide: bool },
    Encrypt { kid: u64, size: usize },
    Remove { kid: u64 },
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        (0u64..6, 0u8..3, any::<bool>()).prop_map(|(kid, key, wide)| Step::Install {
            kid,
            key,
            wide
        }),
        (0u64..6, 0usize..300).prop_map(|(kid, size)| Step::Encrypt { kid, size }),
        (0u64..6).prop_map(|kid| Step::Remove { kid }),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Whatever keys are installed, re-installed (same KID, same base key) or removed, no two
    /// frames ever go out under the same (key, nonce): a re-used KID is refused.
    #[test]
    fn no_key_and_nonce_pair_is_ever_used_twice(steps in proptest::collection::vec(step(), 1..400)) {
        let mut ctx = SframeContext::new();
        let mut material: std::collections::HashMap<u64, (Vec<u8>, [u8; 12])> = Default::default();
        let mut installed_once = std::collections::HashSet::new();
        let mut used = std::collections::HashSet::new();
        let mut out = vec![0u8; 300 + MAX_HEADER_LEN + TAG_LEN];
        for s in steps {
            match s {
                Step::Install { kid, key, wide } => {
                    let suite = if wide { CipherSuite::Aes256GcmSha512 } else { CipherSuite::Aes128GcmSha256 };
                    let base = vec![key; suite.key_len()];
                    let result = ctx.add_send_key(suite, kid, &base);
                    if installed_once.insert(kid) {
                        proptest::prop_assert!(result.is_ok());
                        material.insert(kid, derive_key_material(suite, kid, &base).unwrap());
                    } else {
                        proptest::prop_assert_eq!(result, Err(SframeError::KidReused(kid)));
                    }
                }
                Step::Encrypt { kid, size } => {
                    match ctx.encrypt(kid, b"", &vec![1u8; size], &mut out) {
                        Ok(n) => {
                            let (header, _) = Header::decode(&out[..n]).unwrap();
                            proptest::prop_assert_eq!(header.kid, kid);
                            let (key, salt) = material[&kid].clone();
                            let mut nonce = salt;
                            for (i, b) in header.ctr.to_be_bytes().iter().enumerate() {
                                nonce[4 + i] ^= b;
                            }
                            proptest::prop_assert!(used.insert((key, nonce)), "nonce reused");
                        }
                        Err(e) => proptest::prop_assert_eq!(e, SframeError::UnknownKid(kid)),
                    }
                }
                Step::Remove { kid } => ctx.remove_send_key(kid),
            }
        }
    }
}
