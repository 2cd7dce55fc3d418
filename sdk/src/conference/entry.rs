//! The control messages of a conference: each is signed by its author with its certificate key,
//! names the conference, the author's counter (strictly increasing: a replay is refused), the
//! group epoch and the roster hash the author saw, and one [`Body`]. The server gives each a
//! sequence number and a time ([`Sequenced`]) and delivers them in that order to every member; it
//! can order them but cannot forge or alter one. The signature covers the exact bytes of
//! `content`, so nothing depends on how JSON is re-serialised.

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::signature;
use rustls::pki_types::{CertificateDer, UnixTime};
use serde::{Deserialize, Serialize};

use super::policy::Policy;
use crate::identity::Identity;
use crate::pki::{CertificateCheck, Usage};
use crate::util::{hex, unhex};
use crate::{Error, Result};

/// Version of the conference control messages.
pub const CONFERENCE_VERSION: u8 = 1;
/// The author of the entries the server itself signs (a departed member, an expired vote). No
/// client id can take this form.
pub const SERVER_AUTHOR: &str = "@server";
/// Longest `content` of one entry, bytes.
pub const MAX_CONTENT: usize = 40 * 1024;
/// Largest size of one sequenced entry as it travels, encoded in JSON (content escaped inside a
/// string, certificate and signature in hex, sequence number and time), bytes. The server
/// sequences nothing larger, so every entry it sequences fits a frame and a page of the log.
/// Escaping can double raw content (quotes, tabs, newlines), so this, not [`MAX_CONTENT`],
/// is the bound that matters.
pub const MAX_ENTRY_ENCODED: usize = 48 * 1024;
/// Room an entry needs beside itself once sequenced (`{"seq":…,"at_ms":…,"entry":…}`).
const SEQUENCED_ROOM: usize = 64;
/// Most members of one conference.
pub const MAX_MEMBERS: usize = 256;
/// Longest an invitation may stay open, seconds.
pub const MAX_INVITE_TTL_SECS: u32 = 86_400;
/// Shortest and longest voting deadline, seconds.
pub const VOTE_DEADLINE_SECS: std::ops::RangeInclusive<u32> = 1..=3600;

/// What is signed: a label, then the content bytes.
const SIGNING_LABEL: &[u8] = b"vcsdk-conference/1 entry\n";

/// A member's public keys for one conference: the group keys are wrapped to them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberKeys {
    /// X25519 public key, hex (32 bytes).
    pub x25519: String,
    /// ML-KEM-768 encapsulation key, hex (1184 bytes); used when the policy is level 3.
    pub mlkem: String,
}

/// One member's wrapped epoch secret, named in a bundle by its hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrapRef {
    /// The member's index.
    pub member: u16,
    /// SHA-256 of the wrap, hex.
    pub hash: String,
}

/// What a control message does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Body {
    /// The first entry: the creator becomes member 0 (and moderator in moderation mode).
    Create {
        /// The initial policy.
        policy: Policy,
        /// The creator's keys.
        keys: MemberKeys,
    },
    /// A member invites someone (any member may: the social agreement). The invitee's own access
    /// list decides whether the invitation is shown.
    Invite {
        /// Who.
        invitee: String,
        /// SHA-256 of the certificate the inviter checked for the invitee, hex.
        invitee_certificate: String,
        /// How long the invitation stays open, seconds.
        ttl_secs: u32,
    },
    /// The invitee accepts and joins with its keys.
    Join {
        /// The invitation's id (the hash of its content).
        invite: String,
        /// The joiner's keys.
        keys: MemberKeys,
    },
    /// The invitee declines.
    Decline {
        /// The invitation's id.
        invite: String,
    },
    /// The author leaves.
    Leave,
    /// The moderator removes a member.
    Remove {
        /// Who.
        member: String,
    },
    /// Signed by the server: a member's connection is gone (keepalive timeout, disconnect,
    /// insufficient credit).
    Departed {
        /// Who.
        member: String,
        /// Why.
        reason: String,
    },
    /// The distributor's new epoch: a fresh secret wrapped to every other member (the wraps travel
    /// separately, each to its member; this names their hashes), and the policy in force from it.
    Bundle {
        /// The new epoch (the current one plus one).
        epoch: u32,
        /// The distributor's ephemeral X25519 public key for this bundle, hex.
        ephemeral: String,
        /// The policy from this epoch on.
        policy: Policy,
        /// One per member other than the distributor, in roster order.
        wraps: Vec<WrapRef>,
    },
    /// The moderator sets the policy (in force from the next epoch).
    SetPolicy {
        /// The new policy.
        policy: Policy,
    },
    /// The moderator hands the role to another member.
    HandOver {
        /// The new moderator.
        to: String,
    },
    /// Voting mode: a member proposes a policy (and votes for it).
    Propose {
        /// The proposed policy.
        policy: Policy,
        /// Votes count until this many seconds after the proposal is sequenced.
        deadline_secs: u32,
    },
    /// Voting mode: a ballot on the open proposal.
    Vote {
        /// The proposal (the sequence number of its entry).
        proposal: u64,
        /// For or against.
        approve: bool,
    },
    /// Signed by the server: the open proposal's deadline passed without a majority.
    Expired {
        /// The proposal.
        proposal: u64,
    },
}

impl Body {
    /// Its kind, as on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Create { .. } => "create",
            Body::Invite { .. } => "invite",
            Body::Join { .. } => "join",
            Body::Decline { .. } => "decline",
            Body::Leave => "leave",
            Body::Remove { .. } => "remove",
            Body::Departed { .. } => "departed",
            Body::Bundle { .. } => "bundle",
            Body::SetPolicy { .. } => "set_policy",
            Body::HandOver { .. } => "hand_over",
            Body::Propose { .. } => "propose",
            Body::Vote { .. } => "vote",
            Body::Expired { .. } => "expired",
        }
    }

    /// Whether only the server may author it.
    pub fn server_only(&self) -> bool {
        matches!(self, Body::Departed { .. } | Body::Expired { .. })
    }
}

/// The signed part of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Content {
    /// [`CONFERENCE_VERSION`].
    pub version: u8,
    /// The conference id.
    pub conf: String,
    /// The author's client id, or [`SERVER_AUTHOR`].
    pub author: String,
    /// The author's counter in this conference: each entry's is larger than the last.
    pub counter: u64,
    /// The group epoch the author is in.
    pub epoch: u32,
    /// The roster hash the author sees, hex.
    pub roster: String,
    /// What it does.
    pub body: Body,
}

/// A signed control message as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The JSON text of the [`Content`]; the signature covers exactly these bytes.
    pub content: String,
    /// The author's certificate, DER in hex.
    pub certificate: String,
    /// ECDSA P-256 / SHA-256 signature (DER, hex) over the label and `content`.
    pub signature: String,
}

/// An entry as the server delivers it: its place in the conference's order and the server's time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sequenced {
    /// Position in the conference's log, from 0.
    pub seq: u64,
    /// When the server sequenced it, Unix ms.
    pub at_ms: i64,
    /// The entry.
    pub entry: Entry,
}

impl Sequenced {
    /// Its size as it travels inside an event or a page of the log (JSON), bytes.
    pub fn encoded_len(&self) -> usize {
        crate::proto::frame::encoded_len(self)
    }
}

/// An entry whose content was parsed (not yet verified).
#[derive(Debug, Clone)]
pub struct Opened {
    /// The content.
    pub content: Content,
    /// The author's certificate.
    pub certificate: CertificateDer<'static>,
    /// The content's hash: the entry's id (an invitation is named by it).
    pub id: [u8; 32],
}

fn refused(what: impl std::fmt::Display) -> Error {
    Error::Protocol(format!("conference entry refused: {what}"))
}

impl Entry {
    /// Signs `content` with `identity` (a client's, or the server's for server entries).
    pub fn sign(identity: &Identity, content: &Content) -> Result<Entry> {
        let text = serde_json::to_string(content)
            .map_err(|e| Error::Protocol(format!("encoding an entry: {e}")))?;
        if text.len() > MAX_CONTENT {
            return Err(Error::InvalidArgument(format!(
                "conference entry of {} bytes exceeds {MAX_CONTENT}",
                text.len()
            )));
        }
        let signature = identity.sign(&[SIGNING_LABEL, text.as_bytes()].concat())?;
        let entry = Entry {
            content: text,
            certificate: hex(identity.certificate()),
            signature: hex(&signature),
        };
        let encoded = entry.encoded_len();
        if encoded + SEQUENCED_ROOM > MAX_ENTRY_ENCODED {
            return Err(Error::InvalidArgument(format!(
                "conference entry of {encoded} bytes once encoded exceeds {}",
                MAX_ENTRY_ENCODED - SEQUENCED_ROOM
            )));
        }
        Ok(entry)
    }

    /// Its size as it travels (JSON, content escaped), bytes.
    pub fn encoded_len(&self) -> usize {
        crate::proto::frame::encoded_len(self)
    }

    /// Parses the content and certificate (strictly; nothing verified yet).
    pub fn open(&self) -> Result<Opened> {
        if self.content.len() > MAX_CONTENT {
            return Err(refused(format!("content exceeds {MAX_CONTENT} bytes")));
        }
        let content: Content = serde_json::from_str(&self.content)
            .map_err(|e| refused(format!("malformed content: {e}")))?;
        if content.version != CONFERENCE_VERSION {
            return Err(refused(format!(
                "version {} (this SDK speaks {CONFERENCE_VERSION})",
                content.version
            )));
        }
        let der = unhex(&self.certificate).ok_or_else(|| refused("certificate is not hex"))?;
        let id = digest(&SHA256, self.content.as_bytes())
            .as_ref()
            .try_into()
            .unwrap_or([0; 32]);
        Ok(Opened {
            content,
            certificate: CertificateDer::from(der),
            id,
        })
    }

    /// Checks the author's certificate with `check` (pinned root, validity at `now`, usage, CRL
    /// when installed, naming the author — or, for server entries, the server's name) and the
    /// signature over the content.
    pub fn verify(
        &self,
        opened: &Opened,
        check: &CertificateCheck,
        server_name: Option<&str>,
        now: UnixTime,
    ) -> Result<()> {
        let author = &opened.content.author;
        let (usage, expected) = if author == SERVER_AUTHOR {
            (Usage::Server, server_name)
        } else {
            (Usage::Client, Some(author.as_str()))
        };
        let verified = check
            .verify(
                std::slice::from_ref(&opened.certificate),
                usage,
                expected,
                now,
            )
            .map_err(|e| refused(format!("{author}'s certificate: {e}")))?;
        let sig = unhex(&self.signature).ok_or_else(|| refused("signature is not hex"))?;
        signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_ASN1,
            &verified.info.public_key,
        )
        .verify(&[SIGNING_LABEL, self.content.as_bytes()].concat(), &sig)
        .map_err(|_| {
            refused(format!(
                "the signature does not verify with {author}'s certificate"
            ))
        })
    }
}

/// SHA-256 of `data`, hex: the hash a bundle names a wrap by, and an invitation names the
/// invitee's certificate by.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(digest(&SHA256, data).as_ref())
}
