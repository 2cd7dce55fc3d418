//! An SFrame context: the sending keys (with their counters) and receiving keys (with their replay
//! windows) of one endpoint, by KID. Receiving keys can be retired with a grace period, so frames
//! of the previous epoch still open while the new one takes over.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;
use std::time::{Duration, Instant};

use super::header::{Header, MAX_HEADER_LEN};
use super::key::{CipherSuite, SframeKey, TAG_LEN};
use super::replay::{ReplayCheck, ReplayWindow};
use super::SframeError;

/// Metadata up to this length is assembled into the AAD on the stack (longer: on the heap).
const STACK_METADATA: usize = 256;

struct Sender {
    key: SframeKey,
    next_ctr: u64,
}

struct Receiver {
    key: SframeKey,
    window: ReplayWindow,
    expires: Option<Instant>,
}

/// The keys of one endpoint.
#[derive(Default)]
pub struct SframeContext {
    senders: HashMap<u64, Sender, KidHash>,
    /// Every KID ever installed for sending: never installed twice, so a (key, counter) pair —
    /// and with it a nonce — can never be used again, even if the same base key were given.
    used_send_kids: HashSet<u64>,
    receivers: HashMap<u64, Receiver, KidHash>,
}

impl std::fmt::Debug for SframeContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SframeContext")
            .field("send_kids", &self.senders.keys().collect::<Vec<_>>())
            .field("receive_kids", &self.receivers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Hashes a KID with one multiplication: the maps are small and only this context inserts into
/// them, so a keyed hash (which costs more than the rest of a lookup) buys nothing here.
#[derive(Default)]
struct KidHasher(u64);

impl Hasher for KidHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ (n >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type KidHash = BuildHasherDefault<KidHasher>;

/// Runs `f` with `header ‖ metadata` as one slice, on the stack when it is small.
fn with_aad<T>(header: &[u8], metadata: &[u8], f: impl FnOnce(&[u8]) -> T) -> T {
    if metadata.is_empty() {
        f(header)
    } else if metadata.len() <= STACK_METADATA {
        let mut buf = [0u8; MAX_HEADER_LEN + STACK_METADATA];
        buf[..header.len()].copy_from_slice(header);
        buf[header.len()..header.len() + metadata.len()].copy_from_slice(metadata);
        f(&buf[..header.len() + metadata.len()])
    } else {
        let mut buf = Vec::with_capacity(header.len() + metadata.len());
        buf.extend_from_slice(header);
        buf.extend_from_slice(metadata);
        f(&buf)
    }
}

impl SframeContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs the sending key of `kid` (counters start at 0). A KID this context has sent with
    /// before is refused ([`SframeError::KidReused`]): restarting its counter could repeat a nonce.
    pub fn add_send_key(
        &mut self,
        suite: CipherSuite,
        kid: u64,
        base_key: &[u8],
    ) -> Result<(), SframeError> {
        if self.used_send_kids.contains(&kid) {
            return Err(SframeError::KidReused(kid));
        }
        let key = SframeKey::derive(suite, kid, base_key)?;
        self.used_send_kids.insert(kid);
        self.senders.insert(kid, Sender { key, next_ctr: 0 });
        Ok(())
    }

    /// Installs the receiving key of `kid`.
    pub fn add_receive_key(
        &mut self,
        suite: CipherSuite,
        kid: u64,
        base_key: &[u8],
    ) -> Result<(), SframeError> {
        let key = SframeKey::derive(suite, kid, base_key)?;
        self.receivers.insert(
            kid,
            Receiver {
                key,
                window: ReplayWindow::default(),
                expires: None,
            },
        );
        Ok(())
    }

    /// Stops sending with `kid`.
    pub fn remove_send_key(&mut self, kid: u64) {
        self.senders.remove(&kid);
    }

    /// Forgets the receiving key of `kid` at once.
    pub fn remove_receive_key(&mut self, kid: u64) {
        self.receivers.remove(&kid);
    }

    /// Whether a receiving key (retired or not) is held for `kid`.
    pub fn has_receive_key(&self, kid: u64) -> bool {
        self.receivers.contains_key(&kid)
    }

    /// Keeps accepting frames of `kid` for `grace`, then forgets the key.
    pub fn retire_receive_key(&mut self, kid: u64, grace: Duration) {
        if let Some(r) = self.receivers.get_mut(&kid) {
            r.expires = Some(Instant::now() + grace);
        }
    }

    /// Forgets every receiving key whose grace period has passed.
    pub fn purge_expired(&mut self) {
        let now = Instant::now();
        self.receivers
            .retain(|_, r| r.expires.is_none_or(|e| e > now));
    }

    /// Bytes an encrypted frame adds to its plaintext with `kid` at its next counter.
    pub fn overhead(&self, kid: u64) -> usize {
        let ctr = self.senders.get(&kid).map_or(0, |s| s.next_ctr);
        Header { kid, ctr }.len() + TAG_LEN
    }

    /// The key and the next counter of `kid`, taken only if a frame of `payload` bytes fits in
    /// `capacity` (one lookup for both).
    fn next_counter(
        &mut self,
        kid: u64,
        payload: usize,
        capacity: usize,
    ) -> Result<(&SframeKey, u64), SframeError> {
        let sender = self
            .senders
            .get_mut(&kid)
            .ok_or(SframeError::UnknownKid(kid))?;
        let ctr = sender.next_ctr;
        let needed = Header { kid, ctr }.len() + TAG_LEN + payload;
        if needed > capacity {
            return Err(SframeError::BufferTooSmall { needed });
        }
        sender.next_ctr = ctr
            .checked_add(1)
            .ok_or(SframeError::CounterExhausted(kid))?;
        Ok((&sender.key, ctr))
    }

    /// Encrypts `plaintext` with `kid` into `out` (`header ‖ ciphertext ‖ tag`); returns the frame
    /// length. `metadata` is authenticated, not sent.
    pub fn encrypt(
        &mut self,
        kid: u64,
        metadata: &[u8],
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SframeError> {
        let (key, ctr) = self.next_counter(kid, plaintext.len(), out.len())?;
        let header_len = Header { kid, ctr }.encode(out)?;
        let (header, rest) = out.split_at_mut(header_len);
        let body = &mut rest[..plaintext.len()];
        body.copy_from_slice(plaintext);
        let tag = with_aad(header, metadata, |aad| key.seal(ctr, aad, body))?;
        rest[plaintext.len()..plaintext.len() + TAG_LEN].copy_from_slice(&tag);
        Ok(header_len + plaintext.len() + TAG_LEN)
    }

    /// Encrypts in place: `buf[..plaintext_len]` holds the plaintext and `buf` has room for the
    /// overhead ([`SframeContext::overhead`]); the frame is written from `buf[0]`. Returns its length.
    pub fn encrypt_in_place(
        &mut self,
        kid: u64,
        metadata: &[u8],
        buf: &mut [u8],
        plaintext_len: usize,
    ) -> Result<usize, SframeError> {
        let (key, ctr) = self.next_counter(kid, plaintext_len, buf.len())?;
        let header = Header { kid, ctr };
        let header_len = header.len();
        buf.copy_within(..plaintext_len, header_len);
        header.encode(buf)?;
        let (head, rest) = buf.split_at_mut(header_len);
        let tag = with_aad(head, metadata, |aad| {
            key.seal(ctr, aad, &mut rest[..plaintext_len])
        })?;
        rest[plaintext_len..plaintext_len + TAG_LEN].copy_from_slice(&tag);
        Ok(header_len + plaintext_len + TAG_LEN)
    }

    /// Decrypts `frame` into `out`; returns the KID and the plaintext length. Refuses unknown
    /// KIDs, replayed or too old counters, and frames that do not authenticate.
    pub fn decrypt(
        &mut self,
        metadata: &[u8],
        frame: &[u8],
        out: &mut [u8],
    ) -> Result<(u64, usize), SframeError> {
        let (header, header_len) = Header::decode(frame)?;
        let body_len = frame
            .len()
            .checked_sub(header_len + TAG_LEN)
            .ok_or(SframeError::Malformed("shorter than header and tag"))?;
        if out.len() < body_len {
            return Err(SframeError::BufferTooSmall { needed: body_len });
        }
        let receiver = self.receiver(header.kid)?;
        let body = &mut out[..body_len];
        body.copy_from_slice(&frame[header_len..header_len + body_len]);
        let tag = &frame[header_len + body_len..];
        with_aad(&frame[..header_len], metadata, |aad| {
            receiver.key.open(header.ctr, aad, tag, body)
        })?;
        receiver.accept(header)?;
        Ok((header.kid, body_len))
    }

    /// Decrypts in place; returns the KID and where the plaintext is inside `frame`.
    pub fn decrypt_in_place(
        &mut self,
        metadata: &[u8],
        frame: &mut [u8],
    ) -> Result<(u64, Range<usize>), SframeError> {
        let (header, header_len) = Header::decode(frame)?;
        let body_len = frame
            .len()
            .checked_sub(header_len + TAG_LEN)
            .ok_or(SframeError::Malformed("shorter than header and tag"))?;
        let receiver = self.receiver(header.kid)?;
        let (head, rest) = frame.split_at_mut(header_len);
        let (body, tag) = rest.split_at_mut(body_len);
        with_aad(head, metadata, |aad| {
            receiver.key.open(header.ctr, aad, tag, body)
        })?;
        receiver.accept(header)?;
        Ok((header.kid, header_len..header_len + body_len))
    }

    /// The live receiving key of `kid`. The replay check comes after authentication, so an
    /// altered frame is reported as such even when it reuses a seen counter.
    fn receiver(&mut self, kid: u64) -> Result<&mut Receiver, SframeError> {
        self.receivers
            .get_mut(&kid)
            .filter(|r| r.expires.is_none_or(|e| e > Instant::now()))
            .ok_or(SframeError::UnknownKid(kid))
    }
}

impl Receiver {
    /// Records an authenticated frame's counter, refusing a replay or a frame older than the window.
    fn accept(&mut self, header: Header) -> Result<(), SframeError> {
        match self.window.check(header.ctr) {
            ReplayCheck::Fresh => {
                self.window.record(header.ctr);
                Ok(())
            }
            ReplayCheck::Replay => Err(SframeError::Replay {
                kid: header.kid,
                ctr: header.ctr,
            }),
            ReplayCheck::TooOld => Err(SframeError::TooOld {
                kid: header.kid,
                ctr: header.ctr,
            }),
        }
    }
}

impl SframeContext {
    /// Encrypts with an explicit counter (test vectors only).
    #[cfg(test)]
    pub(crate) fn encrypt_with_counter(
        &mut self,
        kid: u64,
        ctr: u64,
        metadata: &[u8],
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SframeError> {
        self.senders
            .get_mut(&kid)
            .ok_or(SframeError::UnknownKid(kid))?
            .next_ctr = ctr;
        self.encrypt(kid, metadata, plaintext, out)
    }
}
