//! Group keys of a conference (the BRAVIS VTKD idea, as Discord DAVE and Signal do it): every
//! member announces per-conference public keys (X25519, and ML-KEM-768 for level 3). On every
//! membership or policy change the distributor makes a fresh random epoch secret and wraps it to
//! each other member: X25519 with one ephemeral key per bundle (plus an ML-KEM-768 encapsulation
//! per member at level 3), HKDF bound to the conference, the epoch, the roster hash and the
//! member, then AES-256-GCM. Someone who left gets no wrap, so cannot read the new epoch (forward
//! secrecy); a newcomer gets only the new secret, so cannot read the old ones (backward secrecy).
//!
//! Media keys: `base key = HKDF-Expand(epoch secret, "vcsdk conference media key " ‖ epoch(4) ‖
//! sender(2) ‖ stream(1))`, the SFrame base key of KID(epoch, sender, stream).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::hkdf;
use aws_lc_rs::kem::{Ciphertext, DecapsulationKey, EncapsulationKey, ML_KEM_768};

use super::entry::{sha256_hex, MemberKeys};
use crate::util::{hex, unhex};
use crate::{Error, Result};

/// Length of an X25519 public key.
pub const X25519_LEN: usize = 32;
/// Length of an ML-KEM-768 encapsulation key.
pub const MLKEM_KEY_LEN: usize = 1184;
/// Length of an ML-KEM-768 ciphertext.
pub const MLKEM_CIPHERTEXT_LEN: usize = 1088;
/// Length of an epoch secret.
pub const SECRET_LEN: usize = 32;
/// Length of a sealed epoch secret (secret and tag).
const SEALED_LEN: usize = SECRET_LEN + 16;

/// The secret of one epoch. Not printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct EpochSecret([u8; SECRET_LEN]);

impl std::fmt::Debug for EpochSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EpochSecret(..)")
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

impl EpochSecret {
    /// A fresh random secret.
    pub fn random() -> Result<EpochSecret> {
        let mut b = [0u8; SECRET_LEN];
        aws_lc_rs::rand::fill(&mut b).map_err(|_| Error::Crypto("random epoch secret".into()))?;
        Ok(EpochSecret(b))
    }

    /// A secret from its bytes (tests and benchmarks).
    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> EpochSecret {
        EpochSecret(bytes)
    }

    /// The SFrame base key of `sender`'s stream number `stream` in `epoch`.
    pub fn media_base_key(&self, epoch: u32, sender: u16, stream: u8) -> [u8; 32] {
        let mut key = [0u8; 32];
        let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &self.0);
        if let Ok(okm) = prk.expand(
            &[
                b"vcsdk conference media key ",
                &epoch.to_be_bytes(),
                &sender.to_be_bytes(),
                &[stream],
            ],
            Len(32),
        ) {
            let _ = okm.fill(&mut key);
        }
        key
    }
}

/// A member's private keys for one conference (kept in memory only). Not printed by `Debug`.
pub struct MemberSecrets {
    x25519: PrivateKey,
    mlkem: DecapsulationKey<aws_lc_rs::kem::AlgorithmId>,
    public: MemberKeys,
}

impl std::fmt::Debug for MemberSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemberSecrets(..)")
    }
}

impl MemberSecrets {
    /// Fresh keys.
    pub fn generate() -> Result<MemberSecrets> {
        let crypto = |what: &str| Error::Crypto(what.to_owned());
        let x25519 = PrivateKey::generate(&X25519).map_err(|_| crypto("X25519 key generation"))?;
        let x_pub = x25519
            .compute_public_key()
            .map_err(|_| crypto("X25519 public key"))?;
        let mlkem =
            DecapsulationKey::generate(&ML_KEM_768).map_err(|_| crypto("ML-KEM key generation"))?;
        let ek = mlkem
            .encapsulation_key()
            .and_then(|e| e.key_bytes().map(|b| b.as_ref().to_vec()))
            .map_err(|_| crypto("ML-KEM encapsulation key"))?;
        Ok(MemberSecrets {
            public: MemberKeys {
                x25519: hex(x_pub.as_ref()),
                mlkem: hex(&ek),
            },
            x25519,
            mlkem,
        })
    }

    /// The public half, announced when creating or joining.
    pub fn public(&self) -> &MemberKeys {
        &self.public
    }
}

/// Checks that announced keys have the right form (the ML-KEM key must parse).
pub fn validate_keys(keys: &MemberKeys) -> Result<()> {
    let bad = |what: &str| Error::Protocol(format!("member keys refused: {what}"));
    let x = unhex(&keys.x25519).ok_or_else(|| bad("X25519 key is not hex"))?;
    if x.len() != X25519_LEN {
        return Err(bad("X25519 key is not 32 bytes"));
    }
    let k = unhex(&keys.mlkem).ok_or_else(|| bad("ML-KEM key is not hex"))?;
    if k.len() != MLKEM_KEY_LEN {
        return Err(bad("ML-KEM key is not 1184 bytes"));
    }
    EncapsulationKey::new(&ML_KEM_768, &k).map_err(|_| bad("ML-KEM key rejected"))?;
    Ok(())
}

/// What a wrap is bound to.
#[derive(Debug, Clone, Copy)]
pub struct WrapContext<'a> {
    /// The conference.
    pub conf: &'a str,
    /// The new epoch.
    pub epoch: u32,
    /// The roster hash the bundle names.
    pub roster_hash: &'a [u8; 32],
    /// Whether the hybrid ML-KEM-768 is part of the wrap (level 3).
    pub post_quantum: bool,
}

impl WrapContext<'_> {
    fn salt(&self) -> [u8; 32] {
        let mut data = Vec::with_capacity(64 + self.conf.len());
        data.extend_from_slice(b"vcsdk conference wrap/1");
        data.extend_from_slice(&(self.conf.len() as u32).to_be_bytes());
        data.extend_from_slice(self.conf.as_bytes());
        data.extend_from_slice(&self.epoch.to_be_bytes());
        data.extend_from_slice(self.roster_hash);
        digest(&SHA256, &data)
            .as_ref()
            .try_into()
            .unwrap_or([0; 32])
    }

    /// The AES-256-GCM key of `member`'s wrap.
    fn key(
        &self,
        ikm: &[u8],
        member: u16,
        member_id: &str,
        ephemeral: &[u8],
        ciphertext: &[u8],
    ) -> Result<LessSafeKey> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &self.salt()).extract(ikm);
        let mut key = [0u8; 32];
        prk.expand(
            &[
                b"vcsdk conference wrap key",
                &(member_id.len() as u32).to_be_bytes(),
                member_id.as_bytes(),
                &member.to_be_bytes(),
                ephemeral,
                &(ciphertext.len() as u32).to_be_bytes(),
                ciphertext,
            ],
            Len(32),
        )
        .and_then(|okm| okm.fill(&mut key))
        .map_err(|_| Error::Crypto("wrap key derivation".into()))?;
        let unbound =
            UnboundKey::new(&AES_256_GCM, &key).map_err(|_| Error::Crypto("wrap key".into()))?;
        Ok(LessSafeKey::new(unbound))
    }

    fn aad(&self, member: u16) -> Vec<u8> {
        let mut aad = b"vcsdk epoch secret".to_vec();
        aad.extend_from_slice(self.conf.as_bytes());
        aad.extend_from_slice(&self.epoch.to_be_bytes());
        aad.extend_from_slice(&member.to_be_bytes());
        aad
    }
}

/// A recipient of a bundle.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    /// Its index.
    pub member: u16,
    /// Its id.
    pub id: &'a str,
    /// Its announced keys.
    pub keys: &'a MemberKeys,
}

/// A new epoch, made by the distributor: the secret, the ephemeral public key, and one wrap per
/// recipient (`ML-KEM ciphertext (level 3) ‖ sealed secret`).
pub struct PreparedEpoch {
    /// The new secret.
    pub secret: EpochSecret,
    /// The ephemeral X25519 public key.
    pub ephemeral: Vec<u8>,
    /// `(member, wrap)` in the recipients' order.
    pub wraps: Vec<(u16, Vec<u8>)>,
}

impl PreparedEpoch {
    /// The hashes the bundle names, in order.
    pub fn wrap_refs(&self) -> Vec<super::entry::WrapRef> {
        self.wraps
            .iter()
            .map(|(member, wrap)| super::entry::WrapRef {
                member: *member,
                hash: sha256_hex(wrap),
            })
            .collect()
    }

    /// Total bytes of the wraps.
    pub fn wrap_bytes(&self) -> usize {
        self.wraps.iter().map(|(_, w)| w.len()).sum()
    }
}

/// Makes a fresh epoch secret and wraps it to each recipient.
pub fn wrap_epoch(ctx: &WrapContext<'_>, recipients: &[Recipient<'_>]) -> Result<PreparedEpoch> {
    let crypto = |what: &str| Error::Crypto(what.to_owned());
    let secret = EpochSecret::random()?;
    let ephemeral = PrivateKey::generate(&X25519).map_err(|_| crypto("X25519 key generation"))?;
    let ephemeral_pub = ephemeral
        .compute_public_key()
        .map_err(|_| crypto("X25519 public key"))?
        .as_ref()
        .to_vec();
    let mut wraps = Vec::with_capacity(recipients.len());
    let mut ikm = Vec::with_capacity(64);
    for r in recipients {
        let bad = |what: &str| Error::Protocol(format!("{}'s keys: {what}", r.id));
        let peer = unhex(&r.keys.x25519).ok_or_else(|| bad("X25519 key is not hex"))?;
        ikm.clear();
        agreement::agree(
            &ephemeral,
            UnparsedPublicKey::new(&X25519, &peer),
            bad("X25519 agreement failed"),
            |shared| {
                ikm.extend_from_slice(shared);
                Ok(())
            },
        )?;
        let mut wrap = Vec::with_capacity(MLKEM_CIPHERTEXT_LEN + SEALED_LEN);
        if ctx.post_quantum {
            let ek = unhex(&r.keys.mlkem).ok_or_else(|| bad("ML-KEM key is not hex"))?;
            let ek = EncapsulationKey::new(&ML_KEM_768, &ek).map_err(|_| bad("ML-KEM key"))?;
            let (ct, shared) = ek
                .encapsulate()
                .map_err(|_| crypto("ML-KEM encapsulation"))?;
            ikm.extend_from_slice(shared.as_ref());
            wrap.extend_from_slice(ct.as_ref());
        }
        let key = ctx.key(&ikm, r.member, r.id, &ephemeral_pub, &wrap)?;
        let mut sealed = secret.0.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(ctx.aad(r.member)),
            &mut sealed,
        )
        .map_err(|_| crypto("sealing the epoch secret"))?;
        wrap.extend_from_slice(&sealed);
        wraps.push((r.member, wrap));
    }
    Ok(PreparedEpoch {
        secret,
        ephemeral: ephemeral_pub,
        wraps,
    })
}

/// Opens the wrap of member `member` (`member_id`) with its secrets.
pub fn unwrap_epoch(
    ctx: &WrapContext<'_>,
    secrets: &MemberSecrets,
    member: u16,
    member_id: &str,
    ephemeral: &[u8],
    wrap: &[u8],
) -> Result<EpochSecret> {
    let bad = |what: &str| Error::Protocol(format!("the epoch {} wrap: {what}", ctx.epoch));
    let ct_len = if ctx.post_quantum {
        MLKEM_CIPHERTEXT_LEN
    } else {
        0
    };
    if wrap.len() != ct_len + SEALED_LEN {
        return Err(bad("wrong length"));
    }
    let (ct, sealed) = wrap.split_at(ct_len);
    let mut ikm = agreement::agree(
        &secrets.x25519,
        UnparsedPublicKey::new(&X25519, ephemeral),
        bad("X25519 agreement failed"),
        |shared| Ok(shared.to_vec()),
    )?;
    if ctx.post_quantum {
        let shared = secrets
            .mlkem
            .decapsulate(Ciphertext::from(ct))
            .map_err(|_| bad("ML-KEM decapsulation failed"))?;
        ikm.extend_from_slice(shared.as_ref());
    }
    let key = ctx.key(&ikm, member, member_id, ephemeral, ct)?;
    let mut buf = sealed.to_vec();
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(ctx.aad(member)),
            &mut buf,
        )
        .map_err(|_| bad("does not open with our keys (not for us, or altered)"))?;
    let secret: [u8; SECRET_LEN] = plain.try_into().map_err(|_| bad("wrong secret length"))?;
    Ok(EpochSecret(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pq: bool) -> ([u8; 32], bool) {
        ([7u8; 32], pq)
    }

    #[test]
    fn each_recipient_opens_only_its_own_wrap() {
        for pq in [false, true] {
            let (roster, pq) = ctx(pq);
            let c = WrapContext {
                conf: "c1",
                epoch: 5,
                roster_hash: &roster,
                post_quantum: pq,
            };
            let a = MemberSecrets::generate().unwrap();
            let b = MemberSecrets::generate().unwrap();
            let outsider = MemberSecrets::generate().unwrap();
            let prepared = wrap_epoch(
                &c,
                &[
                    Recipient {
                        member: 1,
                        id: "a",
                        keys: a.public(),
                    },
                    Recipient {
                        member: 2,
                        id: "b",
                        keys: b.public(),
                    },
                ],
            )
            .unwrap();
            let [(1, wa), (2, wb)] = &prepared.wraps[..] else {
                panic!("two wraps")
            };
            let e = &prepared.ephemeral;
            assert_eq!(
                unwrap_epoch(&c, &a, 1, "a", e, wa).unwrap(),
                prepared.secret
            );
            assert_eq!(
                unwrap_epoch(&c, &b, 2, "b", e, wb).unwrap(),
                prepared.secret
            );
            // Someone else's wrap, the wrong index or id, an outsider, another epoch: refused.
            assert!(unwrap_epoch(&c, &a, 1, "a", e, wb).is_err());
            assert!(unwrap_epoch(&c, &a, 2, "a", e, wa).is_err());
            assert!(unwrap_epoch(&c, &a, 1, "b", e, wa).is_err());
            assert!(unwrap_epoch(&c, &outsider, 1, "a", e, wa).is_err());
            let other = WrapContext { epoch: 6, ..c };
            assert!(unwrap_epoch(&other, &a, 1, "a", e, wa).is_err());
            let mut tampered = wa.clone();
            tampered[0] ^= 1;
            assert!(unwrap_epoch(&c, &a, 1, "a", e, &tampered).is_err());
            assert_eq!(
                wa.len(),
                SEALED_LEN + if pq { MLKEM_CIPHERTEXT_LEN } else { 0 }
            );
        }
    }

    #[test]
    fn media_keys_differ_by_epoch_sender_and_stream() {
        let s = EpochSecret::from_bytes([1; 32]);
        let k = s.media_base_key(1, 0, 0);
        assert_ne!(k, s.media_base_key(2, 0, 0));
        assert_ne!(k, s.media_base_key(1, 1, 0));
        assert_ne!(k, s.media_base_key(1, 0, 1));
        assert_ne!(k, EpochSecret::from_bytes([2; 32]).media_base_key(1, 0, 0));
    }

    #[test]
    fn announced_keys_are_checked() {
        let m = MemberSecrets::generate().unwrap();
        validate_keys(m.public()).unwrap();
        let mut bad = m.public().clone();
        bad.x25519.pop();
        assert!(validate_keys(&bad).is_err());
        let mut bad = m.public().clone();
        bad.mlkem = "00".repeat(MLKEM_KEY_LEN - 1);
        assert!(validate_keys(&bad).is_err());
    }
}
