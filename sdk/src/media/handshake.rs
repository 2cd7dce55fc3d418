//! The end-to-end key agreement of a two-party call (the seed's establishSession), carried by the
//! server as opaque `establish_session` payloads:
//!
//! 1. **offer** (caller → callee): a fresh X25519 public key (and, at security level 3, an
//!    ML-KEM-768 encapsulation key), the call id, both ids, the level and the caller's certificate,
//!    signed with the caller's certificate key;
//! 2. **answer** (callee → caller): the callee's X25519 public key (and the ML-KEM ciphertext), its
//!    certificate and the hash of the offer, signed; plus a key-confirmation MAC;
//! 3. **confirm** (caller → callee): the caller's key-confirmation MAC.
//!
//! Each side checks the other's certificate against the pinned root (and CRL) and that it names the
//! expected peer. The secret is HKDF over the X25519 (and ML-KEM) shared secrets, salted with the
//! hash of the whole signed transcript, so the server — which relays everything — can neither read
//! the secret nor alter, substitute or replay a message without a signature failing.

use aws_lc_rs::agreement::{agree_ephemeral, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::kem::{Ciphertext, DecapsulationKey, EncapsulationKey, ML_KEM_768};
use aws_lc_rs::{hkdf, hmac, rand::SystemRandom, signature};
use rustls::pki_types::UnixTime;
use serde::{Deserialize, Serialize};

use super::sframe::{CipherSuite, SframeContext, SframeError};
use crate::identity::Identity;
use crate::pki::{self, CertificateCheck, Usage};
use crate::util::{hex, unhex};
use crate::{Error, Result};

/// Version of the handshake messages.
pub const HANDSHAKE_VERSION: u8 = 1;

/// The three handshake messages (JSON in `establish_session` payloads). Byte fields are hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum HandshakeMessage {
    /// Caller → callee.
    Offer {
        /// [`HANDSHAKE_VERSION`].
        version: u8,
        /// The call.
        call_id: String,
        /// The caller.
        caller: String,
        /// The callee.
        callee: String,
        /// Security level, 2 or 3.
        level: u8,
        /// The caller's X25519 public key.
        x25519: String,
        /// The caller's ML-KEM-768 encapsulation key (level 3).
        mlkem: Option<String>,
        /// The caller's certificate (PEM).
        certificate_pem: String,
        /// ECDSA P-256 signature over the offer.
        signature: String,
    },
    /// Callee → caller.
    Answer {
        /// [`HANDSHAKE_VERSION`].
        version: u8,
        /// The call.
        call_id: String,
        /// The caller.
        caller: String,
        /// The callee.
        callee: String,
        /// Security level.
        level: u8,
        /// The callee's X25519 public key.
        x25519: String,
        /// The ML-KEM-768 ciphertext (level 3).
        mlkem: Option<String>,
        /// The callee's certificate (PEM).
        certificate_pem: String,
        /// SHA-256 of the signed offer.
        offer_hash: String,
        /// ECDSA P-256 signature over the answer.
        signature: String,
        /// The callee's key-confirmation MAC.
        mac: String,
    },
    /// Caller → callee: the caller's key-confirmation MAC.
    Confirm {
        /// The call.
        call_id: String,
        /// The MAC.
        mac: String,
    },
    /// After the handshake, each side: the UDP addresses where it takes media directly, sealed
    /// as a frame of its signalling stream (hex) — the server can neither read nor change them.
    Candidates {
        /// The call.
        call_id: String,
        /// The sealed address list ([`super::session::PreparedMedia::seal_candidates`]).
        sealed: String,
    },
    /// Either side: the key agreement failed here (why, in words; no secret).
    Abort {
        /// The call.
        call_id: String,
        /// What was refused.
        reason: String,
    },
}

/// Length-prefixed concatenation with a domain label: what is signed and hashed.
fn canonical(label: &str, fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + fields.iter().map(|f| f.len() + 4).sum::<usize>());
    out.extend_from_slice(b"vcsdk-handshake/1 ");
    out.extend_from_slice(label.as_bytes());
    for f in fields {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

fn bad(what: &str) -> Error {
    Error::Protocol(format!("handshake refused: {what}"))
}

fn field(hex_text: &str, what: &str) -> Result<Vec<u8>> {
    unhex(hex_text).ok_or_else(|| bad(&format!("{what} is not hex")))
}

/// Checks a peer certificate (pinned root, CRL, client usage, expected id) and a signature by it.
fn verify_peer(
    check: &CertificateCheck,
    pem: &str,
    expected: &str,
    tbs: &[u8],
    signature_hex: &str,
) -> Result<Vec<u8>> {
    let cert = pki::pem::certificate(pem.as_bytes(), "peer certificate")?;
    let verified = check.verify(
        std::slice::from_ref(&cert),
        Usage::Client,
        Some(expected),
        UnixTime::now(),
    )?;
    let sig = field(signature_hex, "signature")?;
    signature::UnparsedPublicKey::new(
        &signature::ECDSA_P256_SHA256_ASN1,
        &verified.info.public_key,
    )
    .verify(tbs, &sig)
    .map_err(|_| bad("signature does not verify with the peer's certificate"))?;
    Ok(cert.to_vec())
}

fn check_level(level: u8) -> Result<()> {
    if matches!(level, 2 | 3) {
        Ok(())
    } else {
        Err(bad("security level must be 2 or 3 for encrypted media"))
    }
}

/// The media streams of a call; each has its own keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Audio.
    Audio = 0,
    /// Video.
    Video = 1,
    /// Data (whiteboard).
    Data = 2,
    /// Signalling between members.
    Signalling = 3,
}

impl Stream {
    /// Every stream.
    pub const ALL: [Stream; 4] = [
        Stream::Audio,
        Stream::Video,
        Stream::Data,
        Stream::Signalling,
    ];

    /// The stream numbered `n` on the wire.
    pub fn from_u8(n: u8) -> Option<Stream> {
        Stream::ALL.get(usize::from(n)).copied()
    }

    /// Its name: `audio`, `video`, `data` or `signalling`.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Audio => "audio",
            Stream::Video => "video",
            Stream::Data => "data",
            Stream::Signalling => "signalling",
        }
    }
}

impl std::str::FromStr for Stream {
    type Err = Error;

    fn from_str(s: &str) -> Result<Stream> {
        Stream::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown stream {s:?} (audio, video, data, signalling)"
                ))
            })
    }
}

/// The KID of (epoch, sender, stream): `epoch << 24 | sender << 8 | stream`.
pub fn kid(epoch: u32, sender: u16, stream: Stream) -> u64 {
    (u64::from(epoch) << 24) | (u64::from(sender) << 8) | stream as u64
}

/// The (epoch, sender, stream number) a KID names; `None` when it is not of that form.
pub fn kid_parts(kid: u64) -> Option<(u32, u16, u8)> {
    let epoch = u32::try_from(kid >> 24).ok()?;
    Some((epoch, (kid >> 8) as u16, kid as u8))
}

/// What both parties derive: the epoch secret of the call, and the transcript it is bound to.
pub struct SessionSecrets {
    epoch_secret: [u8; 32],
    /// SHA-256 of the signed offer and answer.
    pub transcript_hash: [u8; 32],
    /// The security level agreed.
    pub level: u8,
}

impl std::fmt::Debug for SessionSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSecrets")
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

impl SessionSecrets {
    /// Secrets agreed by other means (a conference's group key agreement): `epoch_secret` is the
    /// 32-byte secret every member holds, `level` the security level (2 or 3).
    pub fn from_epoch_secret(epoch_secret: [u8; 32], level: u8, transcript_hash: [u8; 32]) -> Self {
        SessionSecrets {
            epoch_secret,
            transcript_hash,
            level,
        }
    }

    /// The cipher suite of media at this level (AES-256-GCM at level 3).
    pub fn suite(&self) -> CipherSuite {
        if self.level >= 3 {
            CipherSuite::Aes256GcmSha512
        } else {
            CipherSuite::Aes128GcmSha256
        }
    }

    /// The SFrame base key of `sender`'s `stream` in epoch 0.
    pub fn base_key(&self, sender: u16, stream: Stream) -> Vec<u8> {
        self.sender_chain(sender).base_key(stream)
    }

    /// `sender`'s key chain at epoch 0.
    pub fn sender_chain(&self, sender: u16) -> SenderChain {
        let mut secret = [0u8; 32];
        expand(
            &self.epoch_secret,
            &[b"vcsdk sender chain ", &sender.to_be_bytes()],
            &mut secret,
        );
        SenderChain {
            sender,
            epoch: 0,
            secret,
            suite: self.suite(),
        }
    }

    /// Installs epoch 0's keys: ours to send on every stream, the peer's to receive.
    pub fn install(
        &self,
        context: &mut SframeContext,
        me: u16,
        peer: u16,
    ) -> std::result::Result<(), SframeError> {
        self.sender_chain(me).install_send(context)?;
        self.sender_chain(peer).install_receive(context)
    }
}

/// HKDF-Expand (SHA-256) of `secret` with `info` into `out` (at most 32 bytes here; cannot fail).
fn expand(secret: &[u8; 32], info: &[&[u8]], out: &mut [u8]) {
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, secret);
    if let Ok(okm) = prk.expand(info, Len(out.len())) {
        let _ = okm.fill(out);
    }
}

/// One sender's keys, epoch by epoch. Epoch `e + 1`'s secret is derived from epoch `e`'s in one
/// direction only, so a key that leaks later does not open earlier epochs once they are dropped;
/// each side can follow the other's epochs without a message (the KID names the epoch).
pub struct SenderChain {
    sender: u16,
    epoch: u32,
    secret: [u8; 32],
    suite: CipherSuite,
}

impl std::fmt::Debug for SenderChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderChain")
            .field("sender", &self.sender)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl SenderChain {
    /// The sender's index.
    pub fn sender(&self) -> u16 {
        self.sender
    }

    /// The epoch of these keys.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The cipher suite.
    pub fn suite(&self) -> CipherSuite {
        self.suite
    }

    /// The KID of `stream` in this epoch.
    pub fn kid(&self, stream: Stream) -> u64 {
        kid(self.epoch, self.sender, stream)
    }

    /// The SFrame base key of `stream` in this epoch.
    pub fn base_key(&self, stream: Stream) -> Vec<u8> {
        let mut key = vec![0u8; 32];
        expand(
            &self.secret,
            &[
                b"vcsdk media key ",
                &self.epoch.to_be_bytes(),
                &self.sender.to_be_bytes(),
                &[stream as u8],
            ],
            &mut key,
        );
        key
    }

    /// The next epoch's chain, or `None` when the epoch number would leave the KID's 32 bits.
    pub fn next(&self) -> Option<SenderChain> {
        let epoch = self.epoch.checked_add(1)?;
        let mut secret = [0u8; 32];
        expand(&self.secret, &[b"vcsdk sender epoch next"], &mut secret);
        Some(SenderChain {
            sender: self.sender,
            epoch,
            secret,
            suite: self.suite,
        })
    }

    /// Installs this epoch's keys for sending on every stream.
    pub fn install_send(
        &self,
        context: &mut SframeContext,
    ) -> std::result::Result<(), SframeError> {
        for stream in Stream::ALL {
            context.add_send_key(self.suite, self.kid(stream), &self.base_key(stream))?;
        }
        Ok(())
    }

    /// Installs this epoch's keys for receiving on every stream.
    pub fn install_receive(
        &self,
        context: &mut SframeContext,
    ) -> std::result::Result<(), SframeError> {
        for stream in Stream::ALL {
            context.add_receive_key(self.suite, self.kid(stream), &self.base_key(stream))?;
        }
        Ok(())
    }
}

fn derive(transcript: &[u8], ikm: &[u8], level: u8) -> (SessionSecrets, hmac::Key) {
    let transcript_hash: [u8; 32] = digest(&SHA256, transcript)
        .as_ref()
        .try_into()
        .unwrap_or([0; 32]);
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &transcript_hash).extract(ikm);
    let mut epoch_secret = [0u8; 32];
    let mut confirm = [0u8; 32];
    if let Ok(okm) = prk.expand(&[b"vcsdk call epoch 0"], Len(32)) {
        let _ = okm.fill(&mut epoch_secret);
    }
    if let Ok(okm) = prk.expand(&[b"vcsdk key confirmation"], Len(32)) {
        let _ = okm.fill(&mut confirm);
    }
    (
        SessionSecrets {
            epoch_secret,
            transcript_hash,
            level,
        },
        hmac::Key::new(hmac::HMAC_SHA256, &confirm),
    )
}

fn mac(key: &hmac::Key, role: &str, transcript_hash: &[u8]) -> String {
    hex(hmac::sign(key, &[role.as_bytes(), transcript_hash].concat()).as_ref())
}

fn verify_mac(key: &hmac::Key, role: &str, transcript_hash: &[u8], mac_hex: &str) -> Result<()> {
    let tag = field(mac_hex, "MAC")?;
    hmac::verify(key, &[role.as_bytes(), transcript_hash].concat(), &tag)
        .map_err(|_| bad("key confirmation failed"))
}

fn x25519_shared(private: EphemeralPrivateKey, peer_hex: &str) -> Result<Vec<u8>> {
    let peer = field(peer_hex, "X25519 key")?;
    agree_ephemeral(
        private,
        UnparsedPublicKey::new(&X25519, &peer),
        bad("X25519 agreement failed"),
        |k| Ok(k.to_vec()),
    )
}

/// The caller's side, between sending the offer and receiving the answer.
pub struct CallerHandshake {
    call_id: String,
    caller: String,
    callee: String,
    level: u8,
    x25519: EphemeralPrivateKey,
    mlkem: Option<DecapsulationKey<aws_lc_rs::kem::AlgorithmId>>,
    offer_signed: Vec<u8>,
}

impl CallerHandshake {
    /// Makes the offer for `call_id` to `callee` at `level` (2, or 3 for the post-quantum hybrid).
    pub fn start(
        identity: &Identity,
        call_id: &str,
        callee: &str,
        level: u8,
    ) -> Result<(Self, HandshakeMessage)> {
        check_level(level)?;
        let rng = SystemRandom::new();
        let x25519 = EphemeralPrivateKey::generate(&X25519, &rng)
            .map_err(|_| Error::Crypto("X25519 key generation".into()))?;
        let x_pub = x25519
            .compute_public_key()
            .map_err(|_| Error::Crypto("X25519 public key".into()))?
            .as_ref()
            .to_vec();
        let (mlkem, ek) = if level >= 3 {
            let dk = DecapsulationKey::generate(&ML_KEM_768)
                .map_err(|_| Error::Crypto("ML-KEM key generation".into()))?;
            let ek = dk
                .encapsulation_key()
                .and_then(|e| e.key_bytes().map(|b| b.as_ref().to_vec()))
                .map_err(|_| Error::Crypto("ML-KEM encapsulation key".into()))?;
            (Some(dk), ek)
        } else {
            (None, Vec::new())
        };
        let cert = identity.certificate().to_vec();
        let caller = identity.id().to_owned();
        let tbs = canonical(
            "offer",
            &[
                &[HANDSHAKE_VERSION],
                call_id.as_bytes(),
                caller.as_bytes(),
                callee.as_bytes(),
                &[level],
                &x_pub,
                &ek,
                &cert,
            ],
        );
        let sig = identity.sign(&tbs)?;
        let message = HandshakeMessage::Offer {
            version: HANDSHAKE_VERSION,
            call_id: call_id.to_owned(),
            caller: caller.clone(),
            callee: callee.to_owned(),
            level,
            x25519: hex(&x_pub),
            mlkem: (level >= 3).then(|| hex(&ek)),
            certificate_pem: pki::pem::encode("CERTIFICATE", &cert),
            signature: hex(&sig),
        };
        let mut offer_signed = tbs;
        offer_signed.extend_from_slice(&sig);
        Ok((
            CallerHandshake {
                call_id: call_id.to_owned(),
                caller,
                callee: callee.to_owned(),
                level,
                x25519,
                mlkem,
                offer_signed,
            },
            message,
        ))
    }

    /// Checks the answer (certificate names the callee, signature, offer hash, confirmation MAC)
    /// and returns the secrets and the confirm message to send.
    pub fn finish(
        self,
        answer: &HandshakeMessage,
        check: &CertificateCheck,
    ) -> Result<(SessionSecrets, HandshakeMessage)> {
        let HandshakeMessage::Answer {
            version,
            call_id,
            caller,
            callee,
            level,
            x25519,
            mlkem,
            certificate_pem,
            offer_hash,
            signature,
            mac: callee_mac,
        } = answer
        else {
            return Err(bad("expected an answer"));
        };
        if *version != HANDSHAKE_VERSION
            || call_id != &self.call_id
            || caller != &self.caller
            || callee != &self.callee
            || *level != self.level
        {
            return Err(bad(
                "the answer is for another call, party, version or level",
            ));
        }
        let expected_hash = digest(&SHA256, &self.offer_signed);
        if field(offer_hash, "offer hash")? != expected_hash.as_ref() {
            return Err(bad("the answer does not answer our offer"));
        }
        let x_b = field(x25519, "X25519 key")?;
        let ct = match (&self.mlkem, mlkem) {
            (Some(_), Some(ct)) => field(ct, "ML-KEM ciphertext")?,
            (None, None) => Vec::new(),
            _ => return Err(bad("ML-KEM presence does not match the level")),
        };
        let cert_b =
            pki::pem::certificate(certificate_pem.as_bytes(), "peer certificate")?.to_vec();
        let tbs = canonical(
            "answer",
            &[
                &[HANDSHAKE_VERSION],
                call_id.as_bytes(),
                caller.as_bytes(),
                callee.as_bytes(),
                &[*level],
                &x_b,
                &ct,
                &cert_b,
                expected_hash.as_ref(),
            ],
        );
        verify_peer(check, certificate_pem, &self.callee, &tbs, signature)?;
        let mut ikm = x25519_shared(self.x25519, x25519)?;
        if let Some(dk) = &self.mlkem {
            let shared = dk
                .decapsulate(Ciphertext::from(ct.as_slice()))
                .map_err(|_| bad("ML-KEM decapsulation failed"))?;
            ikm.extend_from_slice(shared.as_ref());
        }
        let mut transcript = self.offer_signed;
        transcript.extend_from_slice(&tbs);
        transcript.extend_from_slice(&field(signature, "signature")?);
        let (secrets, confirm_key) = derive(&transcript, &ikm, self.level);
        verify_mac(&confirm_key, "callee", &secrets.transcript_hash, callee_mac)?;
        let confirm = HandshakeMessage::Confirm {
            call_id: self.call_id,
            mac: mac(&confirm_key, "caller", &secrets.transcript_hash),
        };
        Ok((secrets, confirm))
    }
}

/// The callee's side, between sending the answer and receiving the confirmation.
pub struct CalleeHandshake {
    call_id: String,
    secrets: SessionSecrets,
    confirm_key: hmac::Key,
}

impl CalleeHandshake {
    /// Checks the offer for `call_id` from `caller` at `level` (the level this callee requires)
    /// and makes the answer.
    pub fn answer(
        identity: &Identity,
        offer: &HandshakeMessage,
        call_id: &str,
        caller: &str,
        level: u8,
        check: &CertificateCheck,
    ) -> Result<(Self, HandshakeMessage)> {
        let HandshakeMessage::Offer {
            version,
            call_id: offered_call,
            caller: offer_caller,
            callee,
            level: offered_level,
            x25519,
            mlkem,
            certificate_pem,
            signature,
        } = offer
        else {
            return Err(bad("expected an offer"));
        };
        if *version != HANDSHAKE_VERSION
            || offered_call != call_id
            || offer_caller != caller
            || callee != identity.id()
        {
            return Err(bad("the offer is for another call, party or version"));
        }
        if *offered_level != level {
            return Err(bad("the offer's security level is not the one required"));
        }
        check_level(level)?;
        let x_a = field(x25519, "X25519 key")?;
        let ek = match (level >= 3, mlkem) {
            (true, Some(ek)) => field(ek, "ML-KEM key")?,
            (false, None) => Vec::new(),
            _ => return Err(bad("ML-KEM presence does not match the level")),
        };
        let cert_a =
            pki::pem::certificate(certificate_pem.as_bytes(), "peer certificate")?.to_vec();
        let offer_tbs = canonical(
            "offer",
            &[
                &[HANDSHAKE_VERSION],
                call_id.as_bytes(),
                caller.as_bytes(),
                callee.as_bytes(),
                &[level],
                &x_a,
                &ek,
                &cert_a,
            ],
        );
        verify_peer(check, certificate_pem, caller, &offer_tbs, signature)?;
        let mut offer_signed = offer_tbs;
        offer_signed.extend_from_slice(&field(signature, "signature")?);
        let offer_hash = digest(&SHA256, &offer_signed);

        let rng = SystemRandom::new();
        let mine = EphemeralPrivateKey::generate(&X25519, &rng)
            .map_err(|_| Error::Crypto("X25519 key generation".into()))?;
        let x_b = mine
            .compute_public_key()
            .map_err(|_| Error::Crypto("X25519 public key".into()))?
            .as_ref()
            .to_vec();
        let mut ikm = x25519_shared(mine, x25519)?;
        let ct = if level >= 3 {
            let ek =
                EncapsulationKey::new(&ML_KEM_768, &ek).map_err(|_| bad("ML-KEM key rejected"))?;
            let (ct, shared) = ek
                .encapsulate()
                .map_err(|_| Error::Crypto("ML-KEM encapsulation".into()))?;
            ikm.extend_from_slice(shared.as_ref());
            ct.as_ref().to_vec()
        } else {
            Vec::new()
        };
        let cert_b = identity.certificate().to_vec();
        let tbs = canonical(
            "answer",
            &[
                &[HANDSHAKE_VERSION],
                call_id.as_bytes(),
                caller.as_bytes(),
                callee.as_bytes(),
                &[level],
                &x_b,
                &ct,
                &cert_b,
                offer_hash.as_ref(),
            ],
        );
        let sig = identity.sign(&tbs)?;
        let mut transcript = offer_signed;
        transcript.extend_from_slice(&tbs);
        transcript.extend_from_slice(&sig);
        let (secrets, confirm_key) = derive(&transcript, &ikm, level);
        let answer = HandshakeMessage::Answer {
            version: HANDSHAKE_VERSION,
            call_id: call_id.to_owned(),
            caller: caller.to_owned(),
            callee: callee.clone(),
            level,
            x25519: hex(&x_b),
            mlkem: (level >= 3).then(|| hex(&ct)),
            certificate_pem: pki::pem::encode("CERTIFICATE", &cert_b),
            offer_hash: hex(offer_hash.as_ref()),
            signature: hex(&sig),
            mac: mac(&confirm_key, "callee", &secrets.transcript_hash),
        };
        Ok((
            CalleeHandshake {
                call_id: call_id.to_owned(),
                secrets,
                confirm_key,
            },
            answer,
        ))
    }

    /// Checks the caller's confirmation and returns the secrets.
    pub fn finish(self, confirm: &HandshakeMessage) -> Result<SessionSecrets> {
        let HandshakeMessage::Confirm { call_id, mac } = confirm else {
            return Err(bad("expected a confirmation"));
        };
        if call_id != &self.call_id {
            return Err(bad("the confirmation is for another call"));
        }
        verify_mac(
            &self.confirm_key,
            "caller",
            &self.secrets.transcript_hash,
            mac,
        )?;
        Ok(self.secrets)
    }
}
