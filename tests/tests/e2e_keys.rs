//! The end-to-end key agreement of a call: both sides derive the same keys (levels 2 and 3), media
//! frames encrypted with them open on the other side, and every attack a relaying server could try
//! on the handshake is refused. `media.rs` runs it between SDK clients through the real `vc-server`.

use vcsdk::identity::Identity;
use vcsdk::media::handshake::{kid, CalleeHandshake, CallerHandshake, HandshakeMessage, Stream};
use vcsdk::media::sframe::SframeContext;
use vcsdk::pki::CertificateCheck;

type Ca = vcsdk_tests::LocalCa;

/// Runs the three messages; returns both sides' secrets.
fn run(
    alice: &Identity,
    bob: &Identity,
    check: &CertificateCheck,
    level: u8,
) -> (
    vcsdk::media::handshake::SessionSecrets,
    vcsdk::media::handshake::SessionSecrets,
) {
    let (caller, offer) = CallerHandshake::start(alice, "call-1", "bob", level).unwrap();
    let (callee, answer) =
        CalleeHandshake::answer(bob, &offer, "call-1", "alice", level, check).unwrap();
    let (a, confirm) = caller.finish(&answer, check).unwrap();
    let b = callee.finish(&confirm).unwrap();
    (a, b)
}

#[test]
fn both_sides_derive_the_same_keys_and_media_flows() {
    let ca = Ca::new();
    let (alice, bob) = (ca.client("alice"), ca.client("bob"));
    let check = ca.check();
    for level in [2u8, 3] {
        let (a, b) = run(&alice, &bob, &check, level);
        assert_eq!(a.transcript_hash, b.transcript_hash);
        assert_eq!(a.suite(), b.suite());
        for stream in Stream::ALL {
            assert_eq!(a.base_key(0, stream), b.base_key(0, stream));
            assert_ne!(
                a.base_key(0, stream),
                a.base_key(1, stream),
                "per-sender keys"
            );
        }
        assert_ne!(
            a.base_key(0, Stream::Audio),
            a.base_key(0, Stream::Video),
            "per-stream keys"
        );
        let mut alice_ctx = SframeContext::new();
        a.install(&mut alice_ctx, 0, 1).unwrap();
        let mut bob_ctx = SframeContext::new();
        b.install(&mut bob_ctx, 1, 0).unwrap();
        for stream in Stream::ALL {
            let mut frame = [0u8; 128];
            let n = alice_ctx
                .encrypt(kid(0, 0, stream), b"", b"media", &mut frame)
                .unwrap();
            let mut out = [0u8; 128];
            let (k, len) = bob_ctx.decrypt(b"", &frame[..n], &mut out).unwrap();
            assert_eq!((k, &out[..len]), (kid(0, 0, stream), &b"media"[..]));
        }
    }
    // Two runs never share a secret (fresh ephemeral keys).
    let (a1, _) = run(&alice, &bob, &check, 2);
    let (a2, _) = run(&alice, &bob, &check, 2);
    assert_ne!(a1.base_key(0, Stream::Audio), a2.base_key(0, Stream::Audio));
}

fn edit(message: &HandshakeMessage, f: impl FnOnce(&mut serde_json::Value)) -> HandshakeMessage {
    let mut v = serde_json::to_value(message).unwrap();
    f(&mut v);
    serde_json::from_value(v).unwrap()
}

fn flip_hex(v: &mut serde_json::Value, key: &str) {
    let s = v[key].as_str().unwrap().to_owned();
    let first = if s.starts_with('0') { "1" } else { "0" };
    v[key] = serde_json::Value::String(format!("{first}{}", &s[1..]));
}

#[test]
fn a_relaying_server_cannot_alter_substitute_or_replay() {
    let ca = Ca::new();
    let (alice, bob, mallory) = (ca.client("alice"), ca.client("bob"), ca.client("mallory"));
    let check = ca.check();
    let (_, offer) = CallerHandshake::start(&alice, "call-1", "bob", 3).unwrap();
    let answer_to = |offer: &HandshakeMessage| {
        CalleeHandshake::answer(&bob, offer, "call-1", "alice", 3, &check).map(|_| ())
    };

    // Altered public values, level (downgrade), ids, or signature.
    for key in ["x25519", "mlkem", "signature"] {
        assert!(
            answer_to(&edit(&offer, |v| flip_hex(v, key))).is_err(),
            "{key} altered"
        );
    }
    assert!(
        CalleeHandshake::answer(
            &bob,
            &edit(&offer, |v| {
                v["level"] = 2.into();
                v["mlkem"] = serde_json::Value::Null;
            }),
            "call-1",
            "alice",
            2,
            &check
        )
        .is_err(),
        "downgrade"
    );
    assert!(
        CalleeHandshake::answer(&bob, &offer, "call-1", "alice", 2, &check).is_err(),
        "level other than required"
    );
    // Replayed into another call.
    assert!(CalleeHandshake::answer(&bob, &offer, "call-2", "alice", 3, &check).is_err());
    // Mallory (a real user) re-signs alice's values as herself: the certificate names mallory.
    let (_, forged) = CallerHandshake::start(&mallory, "call-1", "bob", 3).unwrap();
    let forged = edit(&forged, |v| v["caller"] = "alice".into());
    assert!(answer_to(&forged).is_err(), "impersonation");
    // A certificate from another CA.
    let other = Ca::new();
    let (_, foreign) = CallerHandshake::start(&other.client("alice"), "call-1", "bob", 3).unwrap();
    let err = answer_to(&foreign).unwrap_err().to_string();
    assert!(err.contains("not issued by the pinned CA root"), "{err}");
    // A revoked caller.
    let revoked = ca.client("alice");
    ca.revoke(&revoked);
    let (_, from_revoked) = CallerHandshake::start(&revoked, "call-1", "bob", 3).unwrap();
    let fresh_crl = ca.check();
    let err = CalleeHandshake::answer(&bob, &from_revoked, "call-1", "alice", 3, &fresh_crl)
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");

    // The answer: altered values, a MAC that does not confirm, or an answer to another offer.
    let (caller, offer) = CallerHandshake::start(&alice, "call-1", "bob", 3).unwrap();
    let (_, answer) = CalleeHandshake::answer(&bob, &offer, "call-1", "alice", 3, &check).unwrap();
    for key in ["x25519", "mlkem", "signature", "mac", "offer_hash"] {
        let (caller, _) = CallerHandshake::start(&alice, "call-1", "bob", 3).unwrap();
        assert!(
            caller
                .finish(&edit(&answer, |v| flip_hex(v, key)), &check)
                .is_err(),
            "{key} altered"
        );
    }
    let (fresh_caller, _) = CallerHandshake::start(&alice, "call-1", "bob", 3).unwrap();
    assert!(
        fresh_caller.finish(&answer, &check).is_err(),
        "an answer to an earlier offer"
    );
    // The caller's own check: a callee whose certificate was revoked (with the fresh CRL) is
    // refused before any key is derived.
    let revoked_bob = ca.client("bob");
    ca.revoke(&revoked_bob);
    let (to_revoked, offer_r) = CallerHandshake::start(&alice, "call-9", "bob", 2).unwrap();
    let (_, answer_r) =
        CalleeHandshake::answer(&revoked_bob, &offer_r, "call-9", "alice", 2, &check).unwrap();
    let err = to_revoked
        .finish(&answer_r, &ca.check())
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");

    let (_, confirm) = caller.finish(&answer, &check).unwrap();
    // The confirmation: altered, or from another run.
    let (callee, _) = CalleeHandshake::answer(&bob, &offer, "call-1", "alice", 3, &check).unwrap();
    assert!(
        callee.finish(&confirm).is_err(),
        "confirmation of another run"
    );
    let (callee, _) = CalleeHandshake::answer(&bob, &offer, "call-1", "alice", 3, &check).unwrap();
    assert!(callee
        .finish(&edit(&confirm, |v| flip_hex(v, "mac")))
        .is_err());
}
