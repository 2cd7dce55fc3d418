//! Conferences for the bindings: create one or join one you were invited to, invite, leave,
//! remove, set or vote on the policy, events to a listener, frames to and from every member.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use vcsdk::client::ConferenceOptions;
use vcsdk::conference::{ConferenceMediaConfig, Mode, Protection};
use vcsdk::media::MediaPath;

use super::listeners::Listeners;
use super::media::{PathKind, SecurityLevel, Stream};
use super::{on_runtime, Subscription, VcError};
use crate::result::vc_result;

/// Who decides a conference's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ConferenceMode {
    /// The moderator (who also distributes the keys and may remove members).
    Moderation,
    /// A majority of the members, by vote.
    Voting,
}

/// How one stream is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum StreamProtection {
    /// In the clear.
    Plain,
    /// SFrame with AES-128-GCM.
    Aes128Gcm,
    /// SFrame with AES-256-GCM.
    Aes256Gcm,
}

/// A conference's security policy (`default_conference_policy` gives the usual one per level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct ConferencePolicy {
    /// The security level.
    pub level: SecurityLevel,
    /// Moderation or voting.
    pub mode: ConferenceMode,
    /// Audio.
    pub audio: StreamProtection,
    /// Video.
    pub video: StreamProtection,
    /// Data (whiteboard).
    pub data: StreamProtection,
    /// Signalling between members.
    pub signalling: StreamProtection,
    /// The distributor starts a new epoch this often, seconds (0: only on changes).
    pub rekey_interval_secs: u32,
}

fn level_number(level: SecurityLevel) -> u8 {
    match level {
        SecurityLevel::Open => 0,
        SecurityLevel::Authenticated => 1,
        SecurityLevel::Encrypted => 2,
        SecurityLevel::PostQuantum => 3,
    }
}

fn level_of(n: u8) -> SecurityLevel {
    match n {
        0 => SecurityLevel::Open,
        1 => SecurityLevel::Authenticated,
        2 => SecurityLevel::Encrypted,
        _ => SecurityLevel::PostQuantum,
    }
}

impl From<Protection> for StreamProtection {
    fn from(p: Protection) -> Self {
        match p {
            Protection::Plain => StreamProtection::Plain,
            Protection::Aes128Gcm => StreamProtection::Aes128Gcm,
            Protection::Aes256Gcm => StreamProtection::Aes256Gcm,
        }
    }
}

impl From<StreamProtection> for Protection {
    fn from(p: StreamProtection) -> Self {
        match p {
            StreamProtection::Plain => Protection::Plain,
            StreamProtection::Aes128Gcm => Protection::Aes128Gcm,
            StreamProtection::Aes256Gcm => Protection::Aes256Gcm,
        }
    }
}

impl From<&vcsdk::conference::Policy> for ConferencePolicy {
    fn from(p: &vcsdk::conference::Policy) -> Self {
        ConferencePolicy {
            level: level_of(p.level),
            mode: match p.mode {
                Mode::Moderation => ConferenceMode::Moderation,
                Mode::Voting => ConferenceMode::Voting,
            },
            audio: p.streams.audio.into(),
            video: p.streams.video.into(),
            data: p.streams.data.into(),
            signalling: p.streams.signalling.into(),
            rekey_interval_secs: p.rekey_interval_secs,
        }
    }
}

impl ConferencePolicy {
    fn sdk(&self) -> Result<vcsdk::conference::Policy, VcError> {
        let policy = vcsdk::conference::Policy {
            level: level_number(self.level),
            mode: match self.mode {
                ConferenceMode::Moderation => Mode::Moderation,
                ConferenceMode::Voting => Mode::Voting,
            },
            streams: vcsdk::conference::StreamProtection {
                audio: self.audio.into(),
                video: self.video.into(),
                data: self.data.into(),
                signalling: self.signalling.into(),
            },
            rekey_interval_secs: self.rekey_interval_secs,
        };
        policy.validate()?;
        Ok(policy)
    }
}

/// The usual policy of `level` in `mode`: plain streams at Open and Authenticated, AES-128-GCM at
/// Encrypted, AES-256-GCM with post-quantum key wraps at PostQuantum.
#[uniffi::export]
pub fn default_conference_policy(level: SecurityLevel, mode: ConferenceMode) -> ConferencePolicy {
    let mode = match mode {
        ConferenceMode::Moderation => Mode::Moderation,
        ConferenceMode::Voting => Mode::Voting,
    };
    (&vcsdk::conference::Policy::for_level(level_number(level), mode)).into()
}

/// Who may invite this client: the deny list wins, then the allow list, then the default.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AccessList {
    /// Always admitted (unless denied).
    pub allow: Vec<String>,
    /// Never admitted.
    pub deny: Vec<String>,
    /// Admitted when `default` is `Contacts`.
    pub contacts: Vec<String>,
    /// Everyone else.
    pub default: AccessDefault,
}

/// Whom an access list admits by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum AccessDefault {
    /// Anyone the CA certified.
    Anyone,
    /// Only contacts.
    Contacts,
    /// Nobody (only the allow list).
    Nobody,
}

impl AccessList {
    pub(crate) fn sdk(&self) -> Result<vcsdk::conference::AccessList, VcError> {
        for id in self.allow.iter().chain(&self.deny).chain(&self.contacts) {
            vcsdk::id::validate_id(id)
                .map_err(|e| VcError::kind(vc_result::VC_RESULT_INVALID_ARGUMENT, e))?;
        }
        Ok(vcsdk::conference::AccessList {
            allow: self.allow.iter().cloned().collect(),
            deny: self.deny.iter().cloned().collect(),
            contacts: self.contacts.iter().cloned().collect(),
            default: match self.default {
                AccessDefault::Anyone => vcsdk::conference::AclDefault::Anyone,
                AccessDefault::Contacts => vcsdk::conference::AclDefault::Contacts,
                AccessDefault::Nobody => vcsdk::conference::AclDefault::Nobody,
            },
        })
    }
}

/// A member of a conference's roster.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RosterMember {
    /// Its id.
    pub id: String,
    /// Its index (the sender number of its frames).
    pub index: u16,
    /// Whether it is the moderator.
    pub moderator: bool,
}

/// What happened in a conference.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum ConferenceEvent {
    /// A member joined.
    Joined {
        /// Who.
        member: String,
    },
    /// A member is gone.
    Left {
        /// Who.
        member: String,
        /// Why.
        reason: String,
    },
    /// Someone was invited.
    Invited {
        /// Who.
        invitee: String,
        /// By whom.
        inviter: String,
    },
    /// An invitee declined.
    Declined {
        /// Who.
        invitee: String,
    },
    /// A new epoch is in force (its keys are installed).
    Epoch {
        /// The epoch.
        epoch: u32,
        /// The policy from now on.
        policy: ConferencePolicy,
        /// Who distributed it.
        distributor: String,
        /// Its roster.
        roster: Vec<String>,
    },
    /// A policy was agreed for the next epoch.
    PolicyPending {
        /// The policy.
        policy: ConferencePolicy,
        /// Who set or proposed it.
        by: String,
        /// What it lowers compared with the policy in force (a lower level, a stream with weaker
        /// or no encryption), or null: tell the user loudly.
        lowered: Option<String>,
    },
    /// The moderator changed (none in voting mode).
    ModeratorChanged {
        /// The moderator.
        moderator: Option<String>,
    },
    /// A member proposed a policy (voting mode).
    ProposalOpened {
        /// Its number: 1 for the conference's first proposal, and so on (what `vote` takes).
        proposal: u64,
        /// Who.
        proposer: String,
        /// What.
        policy: ConferencePolicy,
    },
    /// A ballot was cast.
    Voted {
        /// The proposal.
        proposal: u64,
        /// Who.
        voter: String,
        /// For or against.
        approve: bool,
    },
    /// A proposal was decided.
    ProposalDecided {
        /// The proposal.
        proposal: u64,
        /// Adopted or not.
        adopted: bool,
        /// Why.
        reason: String,
    },
    /// A control message every member refuses reached us and was ignored.
    Rejected {
        /// Its author.
        author: String,
        /// The rejection's code.
        code: String,
        /// Why.
        reason: String,
    },
    /// An epoch's key could not be opened.
    KeyUnavailable {
        /// The epoch.
        epoch: u32,
        /// Why.
        reason: String,
    },
    /// We are no longer a member.
    Ended {
        /// Why.
        reason: String,
    },
}

impl From<vcsdk::client::ConferenceEvent> for ConferenceEvent {
    fn from(e: vcsdk::client::ConferenceEvent) -> Self {
        use vcsdk::client::ConferenceEvent as E;
        match e {
            E::Joined { member } => ConferenceEvent::Joined { member },
            E::Left { member, reason } => ConferenceEvent::Left { member, reason },
            E::Invited { invitee, inviter } => ConferenceEvent::Invited { invitee, inviter },
            E::Declined { invitee } => ConferenceEvent::Declined { invitee },
            E::Epoch {
                epoch,
                policy,
                distributor,
                roster,
            } => ConferenceEvent::Epoch {
                epoch,
                policy: (&policy).into(),
                distributor,
                roster,
            },
            E::PolicyPending {
                policy,
                by,
                lowered,
            } => ConferenceEvent::PolicyPending {
                policy: (&policy).into(),
                by,
                lowered,
            },
            E::ModeratorChanged { moderator } => ConferenceEvent::ModeratorChanged { moderator },
            E::ProposalOpened {
                proposal,
                proposer,
                policy,
                ..
            } => ConferenceEvent::ProposalOpened {
                proposal,
                proposer,
                policy: (&policy).into(),
            },
            E::Voted {
                proposal,
                voter,
                approve,
            } => ConferenceEvent::Voted {
                proposal,
                voter,
                approve,
            },
            E::ProposalDecided {
                proposal,
                adopted,
                reason,
            } => ConferenceEvent::ProposalDecided {
                proposal,
                adopted,
                reason,
            },
            E::Rejected {
                author,
                code,
                reason,
                ..
            } => ConferenceEvent::Rejected {
                author,
                code,
                reason,
            },
            E::KeyUnavailable { epoch, reason } => {
                ConferenceEvent::KeyUnavailable { epoch, reason }
            }
            E::Ended { reason } => ConferenceEvent::Ended { reason },
        }
    }
}

/// Receives a conference's events, on the conference's own event thread, one call at a time,
/// in order; it may call back into the SDK.
#[uniffi::export(with_foreign)]
pub trait ConferenceListener: Send + Sync {
    /// Something happened.
    fn on_event(&self, event: ConferenceEvent);
}

/// A frame from another member.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ConferenceFrame {
    /// Its stream.
    pub stream: Stream,
    /// Who sent it.
    pub member: String,
    /// The epoch it was protected in.
    pub epoch: u32,
    /// Whether it came in the clear (a plain stream of the policy).
    pub plain: bool,
    /// The payload.
    pub data: Vec<u8>,
}

/// The path to one other member.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PeerPath {
    /// The member.
    pub member: String,
    /// Direct, relayed, or not yet known (`Closed`).
    pub path: PathKind,
}

/// Statistics of a conference's media and keys.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ConferenceStats {
    /// The epoch whose keys we send with.
    pub epoch: u32,
    /// The path to each other member.
    pub peers: Vec<PeerPath>,
    /// Frames sent.
    pub frames_sent: u64,
    /// Frames received and delivered.
    pub frames_received: u64,
    /// Frames that never completed.
    pub frames_lost: u64,
    /// Replayed frames refused.
    pub replays_refused: u64,
    /// Frames that failed authentication.
    pub auth_failures: u64,
    /// Frames for keys we do not hold.
    pub unknown_key: u64,
    /// Packets from addresses or senders that are not members.
    pub foreign_packets: u64,
}

fn deliver(listener: &dyn ConferenceListener, event: &vcsdk::client::ConferenceEvent) {
    listener.on_event(event.clone().into())
}

/// A conference this client is in. Dropping it does not leave: call `leave` first.
#[derive(uniffi::Object)]
pub struct Conference {
    conference: vcsdk::client::Conference,
    listeners: Arc<Listeners<dyn ConferenceListener>>,
    stop: watch::Sender<bool>,
}

impl Conference {
    pub(crate) fn new(conference: vcsdk::client::Conference) -> Result<Self, VcError> {
        let listeners = Listeners::new();
        let (stop, stopped) = watch::channel(false);
        listeners.pump("vcsdk-conference", conference.clone(), deliver, stopped)?;
        Ok(Conference {
            conference,
            listeners,
            stop,
        })
    }
}

impl Drop for Conference {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

pub(crate) fn options(
    policy: Option<ConferencePolicy>,
    direct: bool,
) -> Result<ConferenceOptions, VcError> {
    Ok(ConferenceOptions {
        policy: match policy {
            Some(p) => p.sdk()?,
            None => vcsdk::conference::Policy::default(),
        },
        media: ConferenceMediaConfig {
            direct,
            ..Default::default()
        },
    })
}

#[uniffi::export]
impl Conference {
    /// The conference id.
    pub fn id(&self) -> String {
        self.conference.id().to_owned()
    }

    /// The epoch in force.
    pub fn epoch(&self) -> u32 {
        self.conference.epoch()
    }

    /// The policy in force.
    pub fn policy(&self) -> ConferencePolicy {
        (&self.conference.policy()).into()
    }

    /// The roster, in join order.
    pub fn roster(&self) -> Vec<RosterMember> {
        self.conference
            .roster()
            .into_iter()
            .map(|m| RosterMember {
                id: m.id,
                index: m.index,
                moderator: m.moderator,
            })
            .collect()
    }

    /// Why we are no longer a member, once we are not.
    pub fn ended(&self) -> Option<String> {
        self.conference.ended()
    }

    /// Adds a listener for this conference's events (on the conference's own thread, one call at
    /// a time, in order); it hears them until the returned subscription is cancelled or dropped.
    /// Events before the first listener wait for it (up to 1 024).
    pub fn add_listener(&self, listener: Arc<dyn ConferenceListener>) -> Arc<Subscription> {
        self.listeners.add(listener)
    }

    /// Invites `user` (its certificate is checked first).
    pub async fn invite(&self, user: String) -> Result<(), VcError> {
        let c = self.conference.clone();
        on_runtime(async move { Ok(c.invite(&user).await?) }).await
    }

    /// Leaves: the others rekey without us.
    pub async fn leave(&self) -> Result<(), VcError> {
        let c = self.conference.clone();
        on_runtime(async move { Ok(c.leave().await?) }).await
    }

    /// Removes `member` (moderator only).
    pub async fn remove(&self, member: String) -> Result<(), VcError> {
        let c = self.conference.clone();
        on_runtime(async move { Ok(c.remove(&member).await?) }).await
    }

    /// Hands the moderator role to `member`.
    pub async fn hand_over(&self, member: String) -> Result<(), VcError> {
        let c = self.conference.clone();
        on_runtime(async move { Ok(c.hand_over(&member).await?) }).await
    }

    /// Sets the policy (moderator only), in force for everyone from the next epoch.
    pub async fn set_policy(&self, policy: ConferencePolicy) -> Result<(), VcError> {
        let c = self.conference.clone();
        let policy = policy.sdk()?;
        on_runtime(async move { Ok(c.set_policy(policy).await?) }).await
    }

    /// Proposes a policy (voting mode), votes counting for `deadline_secs`; returns its number.
    pub async fn propose(
        &self,
        policy: ConferencePolicy,
        deadline_secs: u32,
    ) -> Result<u64, VcError> {
        let c = self.conference.clone();
        let policy = policy.sdk()?;
        on_runtime(async move {
            Ok(c.propose(policy, Duration::from_secs(deadline_secs.into()))
                .await?)
        })
        .await
    }

    /// Votes on the open proposal, which must be number `proposal` (a number not seen yet is
    /// waited for up to 5 s, then `InvalidArgument`).
    pub async fn vote(&self, proposal: u64, approve: bool) -> Result<(), VcError> {
        let c = self.conference.clone();
        on_runtime(async move { Ok(c.vote(proposal, approve).await?) }).await
    }

    /// Sends one frame on `stream` to every other member.
    pub async fn send(&self, stream: Stream, data: Vec<u8>) -> Result<(), VcError> {
        let c = self.conference.clone();
        on_runtime(async move { Ok(c.send(stream.into(), &data).await?) }).await
    }

    /// The next frame from another member, waiting up to `timeout_ms`; `None` when none came.
    pub async fn receive(&self, timeout_ms: u32) -> Result<Option<ConferenceFrame>, VcError> {
        let c = self.conference.clone();
        on_runtime(async move {
            let wait = Duration::from_millis(timeout_ms.into());
            match tokio::time::timeout(wait, c.recv()).await {
                Ok(Some(f)) => Ok(Some(ConferenceFrame {
                    stream: f.stream.into(),
                    member: f.member.to_string(),
                    epoch: f.epoch,
                    plain: f.plain,
                    data: f.data,
                })),
                Ok(None) => Err(VcError::kind(
                    vc_result::VC_RESULT_CLOSED,
                    "the conference media stopped",
                )),
                Err(_) => Ok(None),
            }
        })
        .await
    }

    /// Statistics of the media and keys.
    pub fn stats(&self) -> ConferenceStats {
        let s = self.conference.stats();
        ConferenceStats {
            epoch: s.epoch,
            peers: s
                .peers
                .into_iter()
                .map(|p| PeerPath {
                    member: p.member,
                    path: match p.path {
                        None => PathKind::Closed,
                        Some(MediaPath::Direct(_)) => PathKind::Direct,
                        Some(MediaPath::Relay(_)) => PathKind::Relay,
                    },
                })
                .collect(),
            frames_sent: s.frames_sent,
            frames_received: s.frames_received,
            frames_lost: s.frames_lost,
            replays_refused: s.replays_refused,
            auth_failures: s.auth_failures,
            unknown_key: s.unknown_key,
            foreign_packets: s.foreign_packets,
        }
    }
}
