//! SFrame (RFC 9605): per-frame authenticated encryption of media with AES-GCM (cipher suites
//! 0x0004 `AES_128_GCM_SHA256_128` and 0x0005 `AES_256_GCM_SHA512_128`, via aws-lc-rs).
//!
//! A frame is `header ‖ ciphertext ‖ tag`, where the header carries the key id (KID) and the
//! counter (CTR), the nonce is the key's salt XOR the counter, and the AAD is the header followed by
//! the application's metadata. Keys are derived once per KID and kept prepared; encryption and
//! decryption write into caller-provided buffers (or in place) and allocate nothing per frame.

mod context;
mod header;
mod key;
mod replay;

pub use context::SframeContext;
pub use header::{Header, MAX_HEADER_LEN};
pub use key::{derive_key_material, CipherSuite, SframeKey, TAG_LEN};
pub use replay::{ReplayWindow, REPLAY_WINDOW};

/// Why a frame could not be protected or unprotected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SframeError {
    /// The output buffer is too small; `needed` bytes are required.
    #[error("output buffer too small: {needed} bytes needed")]
    BufferTooSmall {
        /// Bytes required.
        needed: usize,
    },
    /// No key is installed for this KID.
    #[error("no key for KID {0}")]
    UnknownKid(u64),
    /// The frame is too short or its header is malformed.
    #[error("malformed SFrame frame: {0}")]
    Malformed(&'static str),
    /// The counter was already received for this key (a replay).
    #[error("replayed frame (KID {kid}, CTR {ctr})")]
    Replay {
        /// Key id.
        kid: u64,
        /// Counter.
        ctr: u64,
    },
    /// The counter is older than the replay window.
    #[error("frame too old for the replay window (KID {kid}, CTR {ctr})")]
    TooOld {
        /// Key id.
        kid: u64,
        /// Counter.
        ctr: u64,
    },
    /// The tag did not verify: the frame was altered, or the key is wrong.
    #[error("authentication failed")]
    AuthenticationFailed,
    /// Every counter of this key was used; install a new key.
    #[error("counter space of KID {0} exhausted")]
    CounterExhausted(u64),
    /// This KID was already installed for sending in this context; a new key needs a new KID.
    #[error("KID {0} was already used for sending; a new key needs a new KID (epoch)")]
    KidReused(u64),
    /// The base key has the wrong length for the cipher suite.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
}

#[cfg(test)]
mod tests;
