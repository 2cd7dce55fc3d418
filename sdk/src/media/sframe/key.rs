//! Cipher suites and key derivation (RFC 9605 §4.4.2): `sframe_secret = HKDF-Extract("", base_key)`,
//! `sframe_key = HKDF-Expand(secret, "SFrame 1.0 Secret key " ‖ KID ‖ suite, Nk)`, and the salt with
//! the label `"SFrame 1.0 Secret salt "` and length Nn. KID is 8 bytes and the suite 2 bytes, both
//! big-endian.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf;

use super::SframeError;

/// Length of the authentication tag of both suites.
pub const TAG_LEN: usize = 16;

/// The AES-GCM cipher suites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherSuite {
    /// 0x0004: AES-128-GCM, HKDF-SHA256, 16-byte tag.
    Aes128GcmSha256,
    /// 0x0005: AES-256-GCM, HKDF-SHA512, 16-byte tag.
    Aes256GcmSha512,
}

impl CipherSuite {
    /// The IANA code point.
    pub fn id(self) -> u16 {
        match self {
            CipherSuite::Aes128GcmSha256 => 0x0004,
            CipherSuite::Aes256GcmSha512 => 0x0005,
        }
    }

    /// The suite with code point `id`, if supported.
    pub fn from_id(id: u16) -> Option<Self> {
        match id {
            0x0004 => Some(CipherSuite::Aes128GcmSha256),
            0x0005 => Some(CipherSuite::Aes256GcmSha512),
            _ => None,
        }
    }

    /// Key length Nk.
    pub fn key_len(self) -> usize {
        match self {
            CipherSuite::Aes128GcmSha256 => 16,
            CipherSuite::Aes256GcmSha512 => 32,
        }
    }

    fn hkdf(self) -> hkdf::Algorithm {
        match self {
            CipherSuite::Aes128GcmSha256 => hkdf::HKDF_SHA256,
            CipherSuite::Aes256GcmSha512 => hkdf::HKDF_SHA512,
        }
    }

    fn aead(self) -> &'static aws_lc_rs::aead::Algorithm {
        match self {
            CipherSuite::Aes128GcmSha256 => &AES_128_GCM,
            CipherSuite::Aes256GcmSha512 => &AES_256_GCM,
        }
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// The key and salt for `kid` derived from `base_key` (exposed for test vectors).
pub fn derive_key_material(
    suite: CipherSuite,
    kid: u64,
    base_key: &[u8],
) -> Result<(Vec<u8>, [u8; NONCE_LEN]), SframeError> {
    if base_key.is_empty() {
        return Err(SframeError::InvalidKey("empty base key"));
    }
    let prk = hkdf::Salt::new(suite.hkdf(), &[]).extract(base_key);
    let kid_bytes = kid.to_be_bytes();
    let suite_bytes = suite.id().to_be_bytes();
    let mut key = vec![0u8; suite.key_len()];
    prk.expand(
        &[b"SFrame 1.0 Secret key ", &kid_bytes, &suite_bytes],
        Len(key.len()),
    )
    .and_then(|okm| okm.fill(&mut key))
    .map_err(|_| SframeError::InvalidKey("key derivation failed"))?;
    let mut salt = [0u8; NONCE_LEN];
    prk.expand(
        &[b"SFrame 1.0 Secret salt ", &kid_bytes, &suite_bytes],
        Len(NONCE_LEN),
    )
    .and_then(|okm| okm.fill(&mut salt))
    .map_err(|_| SframeError::InvalidKey("salt derivation failed"))?;
    Ok((key, salt))
}

/// A prepared key for one KID: the AES-GCM key schedule is computed once, here.
pub struct SframeKey {
    key: LessSafeKey,
    salt: [u8; NONCE_LEN],
}

impl std::fmt::Debug for SframeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SframeKey(..)")
    }
}

impl SframeKey {
    /// Derives and prepares the key of `kid` from `base_key`.
    pub fn derive(suite: CipherSuite, kid: u64, base_key: &[u8]) -> Result<Self, SframeError> {
        let (key, salt) = derive_key_material(suite, kid, base_key)?;
        let unbound = UnboundKey::new(suite.aead(), &key)
            .map_err(|_| SframeError::InvalidKey("bad key length"))?;
        Ok(SframeKey {
            key: LessSafeKey::new(unbound),
            salt,
        })
    }

    fn nonce(&self, ctr: u64) -> Nonce {
        let mut nonce = self.salt;
        for (n, c) in nonce[NONCE_LEN - 8..].iter_mut().zip(ctr.to_be_bytes()) {
            *n ^= c;
        }
        Nonce::assume_unique_for_key(nonce)
    }

    /// Encrypts `in_out` in place with counter `ctr` and `aad`; returns the tag.
    pub(super) fn seal(
        &self,
        ctr: u64,
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], SframeError> {
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(ctr), Aad::from(aad), in_out)
            .map_err(|_| SframeError::InvalidKey("encryption failed"))?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts `in_out` in place and checks `tag`.
    pub(super) fn open(
        &self,
        ctr: u64,
        aad: &[u8],
        tag: &[u8],
        in_out: &mut [u8],
    ) -> Result<(), SframeError> {
        self.key
            .open_in_place_separate_tag(self.nonce(ctr), Aad::from(aad), tag, in_out)
            .map(|_| ())
            .map_err(|_| SframeError::AuthenticationFailed)
    }
}
