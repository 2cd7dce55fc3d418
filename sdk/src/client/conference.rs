//! Conferences from the client's side. [`super::Client::create_conference`] and
//! [`super::Client::join_conference`] give a [`Conference`]: a task that applies the conference's
//! sequenced control messages to its [`ConferenceState`] (verifying every one: signer, counter,
//! epoch, roster hash, rules), opens this member's wrap of each new epoch and installs its keys in
//! the full-mesh [`ConferenceMedia`], sends this member's sealed media addresses to newcomers,
//! and — when this member is the distributor — makes the next epoch on every membership or policy
//! change (and periodically). The application sees [`ConferenceEvent`]s.
//!
//! Invitations are checked before the application hears of them ([`ConferenceRouter`]): the
//! inviter's certificate (pinned root, CRL) and signature, that the inviter checked *our*
//! certificate, then our [`AccessList`]. An invitation the list refuses is declined and never
//! shown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::time::{Duration, Instant};

use rustls::pki_types::UnixTime;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Mutex};

use super::{unexpected, Client, ClientEvent, Inner};
use crate::conference::acl::AccessList;
use crate::conference::bundle::next_epoch;
use crate::conference::entry::{sha256_hex, Body, Content, Entry, Sequenced, CONFERENCE_VERSION};
use crate::conference::group_key::{unwrap_epoch, EpochSecret, MemberSecrets, WrapContext};
use crate::conference::media::{
    ConferenceFrame, ConferenceMedia, ConferenceMediaConfig, ConferenceMediaStats,
};
use crate::conference::policy::{Mode, Policy};
use crate::conference::state::{Change, ConferenceState, Verifier};
use crate::identity::Identity;
use crate::media::relay::{RelayGrant, RelaySecret, RelayToken};
use crate::media::Stream;
use crate::pki::LiveCheck;
use crate::proto::signal::{Event, Request, Response, WrapDelivery, MAX_WRAPS_CHUNK_BYTES};
use crate::util::{hex, unhex};
use crate::{Error, Result};

/// How long creating or joining waits for the server and the first entries.
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a vote waits for a proposal it has not seen yet.
const PROPOSAL_WAIT: Duration = Duration::from_secs(5);
/// How many times a post is signed again after the state moved under it.
const POST_ATTEMPTS: usize = 12;
/// Invitations remembered.
const REMEMBERED_INVITATIONS: usize = 64;
/// Wraps of future epochs held.
const HELD_WRAPS: usize = 8;
/// Default time an invitation stays open.
pub const DEFAULT_INVITE_TTL: Duration = Duration::from_secs(300);

/// How to create or join a conference.
#[derive(Debug, Clone, Default)]
pub struct ConferenceOptions {
    /// The initial policy (when creating).
    pub policy: Policy,
    /// The media.
    pub media: ConferenceMediaConfig,
}

/// A member of the roster, as the application sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterMember {
    /// Its id.
    pub id: String,
    /// Its index (the sender number of its frames).
    pub index: u16,
    /// Whether it is the moderator.
    pub moderator: bool,
}

/// What happened in a conference.
#[derive(Debug, Clone, PartialEq)]
pub enum ConferenceEvent {
    /// A member joined (it gets keys with the next epoch).
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
    /// A new epoch is in force: its keys are installed and frames go out under it.
    Epoch {
        /// The epoch.
        epoch: u32,
        /// The policy from now on.
        policy: Policy,
        /// Who distributed it.
        distributor: String,
        /// The roster of the epoch.
        roster: Vec<String>,
    },
    /// A policy was agreed; it takes effect at the next epoch. Every member gets this event.
    PolicyPending {
        /// The policy.
        policy: Policy,
        /// Who set it (the moderator) or proposed it (voting mode).
        by: String,
        /// What it lowers compared with the policy in force — a lower level, or a stream with
        /// weaker or no encryption — or `None`. Apps should tell their user loudly.
        lowered: Option<String>,
    },
    /// The moderator changed (none in voting mode).
    ModeratorChanged {
        /// The moderator.
        moderator: Option<String>,
    },
    /// A member proposed a policy (voting mode).
    ProposalOpened {
        /// The proposal's number: 1 for the conference's first proposal, and so on (what
        /// [`Conference::vote`] takes).
        proposal: u64,
        /// Who.
        proposer: String,
        /// What.
        policy: Policy,
        /// Until when votes count, Unix ms.
        deadline_ms: i64,
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
    /// The proposal was decided.
    ProposalDecided {
        /// The proposal.
        proposal: u64,
        /// Adopted (its policy then waits for the next epoch) or not.
        adopted: bool,
        /// Why.
        reason: String,
    },
    /// A control message every member refuses (forged, replayed, stale, not allowed) reached us
    /// and was ignored.
    Rejected {
        /// Its sequence number.
        seq: u64,
        /// Its author.
        author: String,
        /// Its kind.
        kind: String,
        /// The rejection's code (`signature`, `replay`, `stale`, `forbidden`, …).
        code: String,
        /// Why.
        reason: String,
    },
    /// An epoch began whose key we could not open (its wrap is missing or does not open).
    KeyUnavailable {
        /// The epoch.
        epoch: u32,
        /// Why.
        reason: String,
    },
    /// We are no longer a member (left, removed, disconnected, or the conference ended).
    Ended {
        /// Why.
        reason: String,
    },
}

/// What the server sends a conference's task.
#[derive(Debug)]
pub(super) enum ConfInput {
    /// Entries, and when they arrived (Unix ms).
    Entries(Vec<Sequenced>, i64),
    Wrap {
        epoch: u32,
        wrap: String,
    },
    Signal {
        from: String,
        payload: String,
    },
    Relay(RelayGrant),
    Lost(String),
}

/// An admitted invitation.
#[derive(Debug, Clone)]
pub(super) struct PendingInvitation {
    expires_at_ms: i64,
    id: String,
    inviter: String,
    roster: String,
}

/// Takes the conference events out of the connection's stream: invitations (checked, then shown
/// or declined) and the traffic of the conferences this client is in.
pub(super) struct ConferenceRouter {
    identity: Arc<Identity>,
    check: LiveCheck,
    server_name: String,
    acl: StdMutex<AccessList>,
    slots: StdMutex<HashMap<String, mpsc::UnboundedSender<ConfInput>>>,
    invitations: StdMutex<Vec<(String, PendingInvitation)>>,
    declines: mpsc::UnboundedSender<(String, PendingInvitation)>,
}

/// What the router did with an event.
pub(super) enum Routed {
    /// Not a conference event.
    Pass(Event),
    /// Taken (for a conference, or dropped).
    Taken,
    /// An event for the application.
    Client(ClientEvent),
}

impl ConferenceRouter {
    /// A router for `identity`, checking with `check`; declined invitations go to `declines`.
    pub(super) fn new(
        identity: Arc<Identity>,
        check: LiveCheck,
        server_name: String,
        declines: mpsc::UnboundedSender<(String, PendingInvitation)>,
    ) -> ConferenceRouter {
        ConferenceRouter {
            identity,
            check,
            server_name,
            acl: StdMutex::new(AccessList::default()),
            slots: StdMutex::new(HashMap::new()),
            invitations: StdMutex::new(Vec::new()),
            declines,
        }
    }

    fn slots(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<ConfInput>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn to(&self, conf: &str, input: ConfInput) {
        if let Some(slot) = self.slots().get(conf) {
            let _ = slot.send(input);
        }
    }

    /// The connection was lost: every conference ends (the server removed us).
    pub(super) fn lost(&self, reason: &str) {
        for slot in self.slots().values() {
            let _ = slot.send(ConfInput::Lost(reason.to_owned()));
        }
    }

    /// Routes one event.
    pub(super) fn route(&self, event: Event) -> Routed {
        match event {
            Event::ConfEntries { conf, entries } => self.to(
                &conf,
                ConfInput::Entries(entries, crate::util::unix_now_ms()),
            ),
            Event::ConfWrap { conf, epoch, wrap } => {
                self.to(&conf, ConfInput::Wrap { epoch, wrap })
            }
            Event::ConfSignal {
                conf,
                from,
                payload,
            } => self.to(&conf, ConfInput::Signal { from, payload }),
            Event::ConfRelay {
                conf,
                address,
                token,
                secret,
            } => match (
                address.parse::<SocketAddr>(),
                RelayToken::from_hex(&token),
                RelaySecret::from_hex(&secret),
            ) {
                (Ok(address), Ok(token), Ok(secret)) => self.to(
                    &conf,
                    ConfInput::Relay(RelayGrant {
                        address,
                        token,
                        secret,
                    }),
                ),
                _ => tracing::warn!(conf, "malformed conference relay offer ignored"),
            },
            Event::ConfInvitation { conf, invite } => return self.invitation(conf, invite),
            other => return Routed::Pass(other),
        }
        Routed::Taken
    }

    /// Checks an invitation: the inviter's certificate and signature, that it names us and the
    /// certificate we hold, and our access list.
    fn invitation(&self, conf: String, invite: Sequenced) -> Routed {
        let me = self.identity.id();
        let checked = (|| -> Result<PendingInvitation> {
            let opened = invite.entry.open()?;
            let Body::Invite {
                invitee,
                invitee_certificate,
                ttl_secs,
            } = &opened.content.body
            else {
                return Err(Error::Protocol("not an invitation".into()));
            };
            if invitee != me || opened.content.conf != conf {
                return Err(Error::Protocol("the invitation is not for us".into()));
            }
            if let Some(stale) = self.check.stale(crate::util::unix_now()) {
                self.check.wake();
                return Err(Error::Certificate(stale));
            }
            invite.entry.verify(
                &opened,
                &self.check.snapshot(),
                Some(&self.server_name),
                UnixTime::now(),
            )?;
            if *invitee_certificate != sha256_hex(self.identity.certificate()) {
                return Err(Error::Protocol(
                    "the inviter did not check our certificate (it names another)".into(),
                ));
            }
            Ok(PendingInvitation {
                id: hex(&opened.id),
                inviter: opened.content.author.clone(),
                roster: opened.content.roster.clone(),
                expires_at_ms: invite.at_ms + i64::from(*ttl_secs) * 1000,
            })
        })();
        let pending = match checked {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(conf, "invitation refused: {e}");
                return Routed::Taken;
            }
        };
        let decision = self
            .acl
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check(&pending.inviter);
        if !decision.admits() {
            tracing::info!(conf, inviter = %pending.inviter, "invitation declined: {}", decision.reason());
            let _ = self.declines.send((conf, pending));
            return Routed::Taken;
        }
        let from = pending.inviter.clone();
        let expires_at_ms = pending.expires_at_ms;
        let mut list = self.invitations.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|(c, _)| c != &conf);
        if list.len() >= REMEMBERED_INVITATIONS {
            list.remove(0);
        }
        list.push((conf.clone(), pending));
        Routed::Client(ClientEvent::ConferenceInvitation {
            conf,
            from,
            expires_at_ms,
        })
    }

    fn take_invitation(&self, conf: &str) -> Option<PendingInvitation> {
        let mut list = self.invitations.lock().unwrap_or_else(|p| p.into_inner());
        let at = list.iter().position(|(c, _)| c == conf)?;
        Some(list.remove(at).1)
    }
}

/// Declines the invitations the access list refused.
pub(super) async fn decline_refused(
    inner: Weak<Inner>,
    mut declines: mpsc::UnboundedReceiver<(String, PendingInvitation)>,
) {
    while let Some((conf, pending)) = declines.recv().await {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let client = Client { inner: strong };
        if let Err(e) = client
            .post_as_invitee(
                &conf,
                &pending,
                Body::Decline {
                    invite: pending.id.clone(),
                },
            )
            .await
        {
            tracing::debug!(conf, "decline not sent: {e}");
        }
    }
}

/// A counter above `last` that also grows with the clock (entries authored without the
/// conference's state, like a join, stay above everything sent before).
fn next_counter(last: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    now.max(last + 1)
}

/// The content of an entry its author signs without the conference's state (creating it, or
/// answering an invitation): the epoch and roster it names are not checked.
fn content_outside(conf: &str, author: &str, roster: String, body: Body) -> Content {
    Content {
        version: CONFERENCE_VERSION,
        conf: conf.to_owned(),
        author: author.to_owned(),
        counter: next_counter(0),
        epoch: 0,
        roster,
        body,
    }
}

/// The sealed media addresses a member sends the others.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ConfSignalPayload {
    /// Addresses sealed with the sender's transport key of an epoch.
    Candidates {
        /// Hex of the SFrame frame.
        sealed: String,
    },
}

/// Timings of this member's work, for measuring.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConferenceTimings {
    /// CPU-bound time of making the last bundle (wrapping to every member and signing), µs.
    pub last_bundle_micros: u64,
    /// Bytes of the last bundle made: the entry and the wraps.
    pub last_bundle_bytes: usize,
    /// Time of opening the last epoch: verifying its bundle, unwrapping, installing keys, µs.
    pub last_epoch_open_micros: u64,
}

struct Shared {
    client: Client,
    conf: String,
    me: String,
    secrets: MemberSecrets,
    state: StdMutex<ConferenceState>,
    applied: watch::Sender<u64>,
    joined: watch::Sender<Option<u16>>,
    ended: watch::Sender<Option<String>>,
    media: StdMutex<Option<Arc<ConferenceMedia>>>,
    events_tx: mpsc::UnboundedSender<ConferenceEvent>,
    events: Mutex<mpsc::UnboundedReceiver<ConferenceEvent>>,
    timings: StdMutex<ConferenceTimings>,
    options: ConferenceOptions,
    /// The last counter we signed with: the task and the application may sign at once, and no
    /// two of our entries may share a counter.
    last_counter: std::sync::atomic::AtomicU64,
}

impl Shared {
    /// A counter above every one we used and above `applied` (our last in the applied state).
    fn counter(&self, applied: u64) -> u64 {
        use std::sync::atomic::Ordering;
        let mut chosen = 0;
        let _ = self
            .last_counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                chosen = next_counter(last.max(applied));
                Some(chosen)
            });
        chosen
    }
}

struct TaskGuard(StdMutex<Option<tokio::task::JoinHandle<()>>>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if let Some(t) = self.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }
}

/// A conference this client is in. Cloning shares it; when the last clone is dropped its task
/// stops (leave first to tell the others).
#[derive(Clone)]
pub struct Conference {
    shared: Arc<Shared>,
    _task: Arc<TaskGuard>,
}

impl std::fmt::Debug for Conference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conference")
            .field("conf", &self.shared.conf)
            .field("me", &self.shared.me)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Sets who may invite this client (checked on every invitation from now on).
    pub fn set_access_list(&self, acl: AccessList) {
        *self
            .inner
            .conferences
            .acl
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = acl;
    }

    /// The access list in use.
    pub fn access_list(&self) -> AccessList {
        self.inner
            .conferences
            .acl
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Creates a conference with `options.policy`; we are its first member (and moderator in
    /// moderation mode).
    pub async fn create_conference(&self, options: ConferenceOptions) -> Result<Conference> {
        options.policy.validate()?;
        let mut id = [0u8; 16];
        aws_lc_rs::rand::fill(&mut id).map_err(|_| Error::Crypto("random conference id".into()))?;
        let conf = hex(&id);
        let conference = Conference::start(self, &conf, options.clone())?;
        let body = Body::Create {
            policy: options.policy,
            keys: conference.shared.secrets.public().clone(),
        };
        let roster = hex(ConferenceState::new(&conf).roster_hash());
        let content = content_outside(&conf, self.user(), roster, body);
        conference.enter(content).await?;
        Ok(conference)
    }

    /// Joins conference `conf`, to which an invitation was shown
    /// ([`ClientEvent::ConferenceInvitation`]).
    pub async fn join_conference(
        &self,
        conf: &str,
        options: ConferenceOptions,
    ) -> Result<Conference> {
        let pending = self
            .inner
            .conferences
            .take_invitation(conf)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("no open invitation to conference {conf}"))
            })?;
        let conference = Conference::start(self, conf, options)?;
        let body = Body::Join {
            invite: pending.id.clone(),
            keys: conference.shared.secrets.public().clone(),
        };
        let content = content_outside(conf, self.user(), pending.roster.clone(), body);
        conference.enter(content).await?;
        Ok(conference)
    }

    /// Declines the invitation to `conf`.
    pub async fn decline_conference(&self, conf: &str) -> Result<()> {
        let pending = self
            .inner
            .conferences
            .take_invitation(conf)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("no open invitation to conference {conf}"))
            })?;
        self.post_as_invitee(
            conf,
            &pending,
            Body::Decline {
                invite: pending.id.clone(),
            },
        )
        .await
        .map(|_| ())
    }

    /// Open invitations: (conference, inviter).
    pub fn conference_invitations(&self) -> Vec<(String, String)> {
        self.inner
            .conferences
            .invitations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(c, p)| (c.clone(), p.inviter.clone()))
            .collect()
    }

    async fn post_as_invitee(
        &self,
        conf: &str,
        pending: &PendingInvitation,
        body: Body,
    ) -> Result<u64> {
        let content = content_outside(conf, self.user(), pending.roster.clone(), body);
        let entry = Entry::sign(&self.inner.options.identity, &content)?;
        self.post_entry(conf, entry).await
    }

    /// Posts a signed conference entry exactly as given (for tools; [`Conference`] builds and
    /// signs its own). Returns its sequence number, or the server's refusal.
    pub async fn post_conference_entry(&self, conf: &str, entry: Entry) -> Result<u64> {
        self.post_entry(conf, entry).await
    }

    async fn post_entry(&self, conf: &str, entry: Entry) -> Result<u64> {
        match self
            .request(Request::ConfPost {
                conf: conf.to_owned(),
                entry,
            })
            .await?
        {
            Response::ConfPosted { seq, .. } => Ok(seq),
            other => Err(unexpected(other)),
        }
    }
}

impl Conference {
    fn start(client: &Client, conf: &str, options: ConferenceOptions) -> Result<Conference> {
        let (input_tx, input_rx) = mpsc::unbounded_channel();
        {
            let mut slots = client.inner.conferences.slots();
            if slots.get(conf).is_some_and(|s| !s.is_closed()) {
                return Err(Error::InvalidArgument(format!(
                    "this client is already in conference {conf}"
                )));
            }
            slots.insert(conf.to_owned(), input_tx);
        }
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            client: client.clone(),
            conf: conf.to_owned(),
            me: client.user().to_owned(),
            secrets: MemberSecrets::generate()?,
            state: StdMutex::new(ConferenceState::new(conf)),
            applied: watch::channel(0).0,
            joined: watch::channel(None).0,
            ended: watch::channel(None).0,
            media: StdMutex::new(None),
            events_tx,
            events: Mutex::new(events_rx),
            timings: StdMutex::new(ConferenceTimings::default()),
            options,
            last_counter: std::sync::atomic::AtomicU64::new(0),
        });
        let engine = Engine {
            shared: shared.clone(),
            wraps: HashMap::new(),
            relay: None,
            newcomers: Vec::new(),
            in_flight: None,
            first_epoch: true,
            early_signals: Vec::new(),
            arrived_ms: 0,
        };
        let task = tokio::spawn(engine.run(input_rx));
        Ok(Conference {
            shared,
            _task: Arc::new(TaskGuard(StdMutex::new(Some(task)))),
        })
    }

    /// Posts our create or join entry and waits until it is applied here.
    async fn enter(&self, content: Content) -> Result<()> {
        let s = &self.shared;
        s.last_counter
            .fetch_max(content.counter, std::sync::atomic::Ordering::SeqCst);
        let entry = Entry::sign(&s.client.inner.options.identity, &content)?;
        let result = async {
            s.client.post_entry(&s.conf, entry).await?;
            let mut joined = s.joined.subscribe();
            let mut ended = s.ended.subscribe();
            tokio::select! {
                r = joined.wait_for(|j| j.is_some()) => r.map(|_| ()).map_err(|_| Error::Protocol("the conference task stopped".into())),
                r = ended.wait_for(|e| e.is_some()) => {
                    let why = r.map(|e| e.clone().unwrap_or_default()).unwrap_or_default();
                    Err(Error::Protocol(format!("the conference ended while joining: {why}")))
                }
            }
        };
        match tokio::time::timeout(JOIN_TIMEOUT, result).await {
            Ok(r) => r,
            Err(_) => Err(Error::Protocol(format!(
                "our entry was not applied within {} s",
                JOIN_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The conference id.
    pub fn id(&self) -> &str {
        &self.shared.conf
    }

    /// Our id.
    pub fn me(&self) -> &str {
        &self.shared.me
    }

    /// Our member index.
    pub fn index(&self) -> Option<u16> {
        *self.shared.joined.borrow()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ConferenceState> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the conference state as applied here.
    pub fn snapshot(&self) -> ConferenceState {
        self.state().clone()
    }

    /// The roster, in join order.
    pub fn roster(&self) -> Vec<RosterMember> {
        let st = self.state();
        st.members()
            .iter()
            .map(|m| RosterMember {
                id: m.id.clone(),
                index: m.index,
                moderator: st.moderator() == Some(m.id.as_str()),
            })
            .collect()
    }

    /// The epoch in force.
    pub fn epoch(&self) -> u32 {
        self.state().epoch()
    }

    /// The policy in force.
    pub fn policy(&self) -> Policy {
        *self.state().policy()
    }

    /// The moderator (moderation mode).
    pub fn moderator(&self) -> Option<String> {
        self.state().moderator().map(str::to_owned)
    }

    /// Who distributes the next epoch.
    pub fn distributor(&self) -> Option<String> {
        self.state().distributor().map(str::to_owned)
    }

    /// The open proposal: (number, proposer, policy, deadline in Unix ms). Proposals are
    /// numbered 1, 2, … in each conference.
    pub fn proposal(&self) -> Option<(u64, String, Policy, i64)> {
        self.state()
            .proposal()
            .map(|p| (p.number, p.proposer.clone(), p.policy, p.deadline_ms))
    }

    /// Why we are no longer a member, once we are not.
    pub fn ended(&self) -> Option<String> {
        self.shared.ended.borrow().clone()
    }

    /// The next event; `None` once the conference's task stopped and every event was taken.
    pub async fn next_event(&self) -> Option<ConferenceEvent> {
        self.shared.events.lock().await.recv().await
    }

    /// An event if one is waiting.
    pub fn try_event(&self) -> Option<ConferenceEvent> {
        self.shared.events.try_lock().ok()?.try_recv().ok()
    }

    /// Invites `user`: its certificate is fetched and checked (pinned root, CRL, names `user`)
    /// and its hash put in the invitation, which the invitee checks.
    pub async fn invite(&self, user: &str) -> Result<()> {
        self.invite_for(user, DEFAULT_INVITE_TTL).await
    }

    /// Invites `user`, the invitation open for `ttl`.
    pub async fn invite_for(&self, user: &str, ttl: Duration) -> Result<()> {
        let der = self
            .shared
            .client
            .verified_peer_certificate_der(user)
            .await?;
        let ttl_secs = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX).max(1);
        let body = Body::Invite {
            invitee: user.to_owned(),
            invitee_certificate: sha256_hex(&der),
            ttl_secs,
        };
        self.post(move |_| Ok(body.clone())).await.map(|_| ())
    }

    /// Leaves: the others rekey without us.
    pub async fn leave(&self) -> Result<()> {
        self.post(|_| Ok(Body::Leave)).await.map(|_| ())
    }

    /// Removes `member` (moderator only).
    pub async fn remove(&self, member: &str) -> Result<()> {
        let member = member.to_owned();
        self.post(move |_| {
            Ok(Body::Remove {
                member: member.clone(),
            })
        })
        .await
        .map(|_| ())
    }

    /// Sets the policy (moderator only); it takes effect at the next epoch, for everyone.
    pub async fn set_policy(&self, policy: Policy) -> Result<()> {
        policy.validate()?;
        self.post(move |_| Ok(Body::SetPolicy { policy }))
            .await
            .map(|_| ())
    }

    /// Hands the moderator role to `to`.
    pub async fn hand_over(&self, to: &str) -> Result<()> {
        let to = to.to_owned();
        self.post(move |_| Ok(Body::HandOver { to: to.clone() }))
            .await
            .map(|_| ())
    }

    /// Proposes `policy` (voting mode), votes counting for `deadline`; returns the proposal's
    /// number (1 for the conference's first proposal, and so on).
    pub async fn propose(&self, policy: Policy, deadline: Duration) -> Result<u64> {
        policy.validate()?;
        let deadline_secs = u32::try_from(deadline.as_secs()).unwrap_or(u32::MAX);
        let seq = self
            .post(move |_| {
                Ok(Body::Propose {
                    policy,
                    deadline_secs,
                })
            })
            .await?;
        self.state().proposal_number(seq).ok_or_else(|| {
            Error::Protocol(format!("entry {seq} was applied but opened no proposal"))
        })
    }

    /// Votes on the open proposal, which must be proposal number `proposal`. A number not seen
    /// here yet (another member's proposal still on its way) is waited for, up to 5 s; one that
    /// never came is an invalid argument. The server judges the rest: a proposal no longer open
    /// (`conf_invalid`), a conference not in voting mode (`conf_forbidden`).
    pub async fn vote(&self, proposal: u64, approve: bool) -> Result<()> {
        if self.policy().mode == Mode::Voting {
            let mut applied = self.shared.applied.subscribe();
            let known = applied.wait_for(|_| self.state().proposals_opened() >= proposal);
            let _ = tokio::time::timeout(PROPOSAL_WAIT, known).await;
        }
        self.post(move |state| {
            let seq = match state.proposal_seq(proposal) {
                Some(seq) => seq,
                None if state.policy().mode == Mode::Voting => {
                    return Err(Error::InvalidArgument(format!(
                        "there is no proposal {proposal} in this conference (proposals so far: {})",
                        state.proposals_opened()
                    )))
                }
                // Outside voting mode every ballot is refused (`conf_forbidden`); this one names
                // no entry.
                None => 0,
            };
            Ok(Body::Vote {
                proposal: seq,
                approve,
            })
        })
        .await
        .map(|_| ())
    }

    /// Signs an entry against the state applied here and posts it; when the state moved on
    /// before the server got it (`conf_stale`), waits for the state to catch up and tries again.
    /// Returns its sequence number once it is applied here.
    async fn post(&self, body: impl Fn(&ConferenceState) -> Result<Body>) -> Result<u64> {
        let s = &self.shared;
        if let Some(why) = self.ended() {
            return Err(Error::InvalidArgument(format!(
                "no longer a member of conference {}: {why}",
                s.conf
            )));
        }
        let mut applied = s.applied.subscribe();
        for attempt in 0..POST_ATTEMPTS {
            let entry = {
                let st = self.state();
                let mut content = st.content(&s.me, body(&st)?);
                content.counter = s.counter(st.counter_of(&s.me));
                Entry::sign(&s.client.inner.options.identity, &content)?
            };
            let seen = *applied.borrow_and_update();
            match s.client.post_entry(&s.conf, entry).await {
                Ok(seq) => {
                    let wait = applied.wait_for(|next| *next > seq);
                    let _ = tokio::time::timeout(JOIN_TIMEOUT, wait).await;
                    return Ok(seq);
                }
                Err(Error::ServerRefused { code, .. })
                    if (code == "conf_stale" || code == "conf_replay")
                        && attempt + 1 < POST_ATTEMPTS =>
                {
                    // Wait until the entries that moved the state arrive here.
                    let moved = applied.wait_for(|next| *next > seen);
                    let _ = tokio::time::timeout(Duration::from_millis(500), moved).await;
                }
                Err(Error::ServerRefused { code, .. })
                    if code == "rate_limited" && attempt + 1 < POST_ATTEMPTS =>
                {
                    // Too many requests at once (a moderator inviting many): back off.
                    tokio::time::sleep(Duration::from_millis(100 << attempt.min(4))).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Protocol(
            "the conference kept changing; try again".into(),
        ))
    }

    fn media(&self) -> Result<Arc<ConferenceMedia>> {
        self.shared
            .media
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| Error::InvalidArgument("the conference media has not started".into()))
    }

    /// Sends one frame on `stream` to every other member.
    pub async fn send(&self, stream: Stream, frame: &[u8]) -> Result<()> {
        self.media()?.send(stream, frame).await
    }

    /// The next frame from another member; `None` once the media stops.
    pub async fn recv(&self) -> Option<ConferenceFrame> {
        self.media().ok()?.recv().await
    }

    /// A frame if one is waiting.
    pub fn try_recv(&self) -> Option<ConferenceFrame> {
        self.media().ok()?.try_recv()
    }

    /// Protects one frame with our current key without sending it (for an application's own
    /// transport).
    pub async fn protect(&self, stream: Stream, frame: &[u8]) -> Result<Vec<u8>> {
        self.media()?.protect(stream, frame).await
    }

    /// Opens a protected frame with the keys this member holds: (sender index, epoch, stream
    /// number, plaintext). Refused for a frame of an epoch we never had keys for.
    pub async fn open_frame(&self, frame: &[u8]) -> Result<(u16, u32, u8, Vec<u8>)> {
        self.media()?.open_frame(frame).await
    }

    /// The local UDP address this member's conference media is received on.
    pub fn media_address(&self) -> Result<std::net::SocketAddr> {
        self.media()?.local_addr()
    }

    /// Seals `addresses` as this member's media address list (with its current transport key)
    /// and sends it to `to`, or to every other member. The conference announces its own
    /// addresses by itself; this is for tools and tests — members take one list per member and
    /// epoch, so a member cannot keep steering the others' probes.
    pub async fn announce_addresses(
        &self,
        addresses: &[std::net::SocketAddr],
        to: Option<&str>,
    ) -> Result<()> {
        let sealed = self.media()?.seal_addresses(addresses.to_vec()).await?;
        let payload = serde_json::to_string(&ConfSignalPayload::Candidates { sealed })
            .map_err(|e| Error::Protocol(format!("encoding addresses: {e}")))?;
        match self
            .shared
            .client
            .request(Request::ConfSignal {
                conf: self.shared.conf.clone(),
                to: to.map(str::to_owned),
                payload,
            })
            .await?
        {
            Response::Ok => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Media statistics (zero before the media starts).
    pub fn stats(&self) -> ConferenceMediaStats {
        self.media().map(|m| m.stats()).unwrap_or_default()
    }

    /// Timings of this member's key work (for measuring).
    pub fn timings(&self) -> ConferenceTimings {
        self.shared
            .timings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until epoch `epoch` (or a later one) is in force here, at most `timeout`.
    pub async fn wait_for_epoch(&self, epoch: u32, timeout: Duration) -> Result<u32> {
        let mut applied = self.shared.applied.subscribe();
        let wait = async {
            loop {
                let now = self.media().map(|m| m.stats().epoch).unwrap_or(0);
                if now >= epoch {
                    return now;
                }
                if applied.changed().await.is_err() {
                    return now;
                }
            }
        };
        let reached = tokio::time::timeout(timeout, wait).await.map_err(|_| {
            Error::Protocol(format!("epoch {epoch} did not begin within {timeout:?}"))
        })?;
        if reached >= epoch {
            Ok(reached)
        } else {
            Err(Error::Protocol(format!("epoch {epoch} never began")))
        }
    }
}

/// The conference's task.
struct Engine {
    shared: Arc<Shared>,
    wraps: HashMap<u32, Vec<u8>>,
    relay: Option<RelayGrant>,
    /// Members who joined since the last epoch: they get our addresses once they hold its keys.
    newcomers: Vec<String>,
    /// The epoch of the bundle we are making or posted.
    in_flight: Option<(u32, EpochSecret)>,
    first_epoch: bool,
    /// Addresses that came before their sender's keys.
    early_signals: Vec<(String, Vec<u8>)>,
    /// When the entries being applied arrived, Unix ms (what this member saw, for receipts).
    arrived_ms: i64,
}

impl Engine {
    async fn run(mut self, mut input: mpsc::UnboundedReceiver<ConfInput>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                message = input.recv() => match message {
                    Some(m) => {
                        self.input(m).await;
                        while let Ok(m) = input.try_recv() {
                            self.input(m).await;
                        }
                    }
                    None => return,
                },
                _ = tick.tick() => {}
            }
            if self.shared.ended.borrow().is_none() {
                self.distribute().await;
            }
        }
    }

    fn emit(&self, event: ConferenceEvent) {
        let _ = self.shared.events_tx.send(event);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ConferenceState> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn media(&self) -> Option<Arc<ConferenceMedia>> {
        self.shared
            .media
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn end(&mut self, reason: String) {
        if self.shared.ended.borrow().is_some() {
            return;
        }
        if let Some(m) = self.media() {
            m.depart_all();
        }
        self.shared.ended.send_replace(Some(reason.clone()));
        let (conf, me) = (&self.shared.conf, &self.shared.me);
        let now = crate::util::unix_now_ms();
        self.shared
            .client
            .inner
            .receipts
            .observe(|g| g.conf_left(conf, me, now));
        self.shared
            .client
            .inner
            .conferences
            .slots()
            .remove(&self.shared.conf);
        self.emit(ConferenceEvent::Ended { reason });
    }

    async fn input(&mut self, input: ConfInput) {
        if self.shared.ended.borrow().is_some() {
            return;
        }
        match input {
            ConfInput::Entries(entries, arrived_ms) => {
                self.arrived_ms = arrived_ms;
                for s in entries {
                    self.entry(s).await;
                }
            }
            ConfInput::Wrap { epoch, wrap } => {
                if let Some(bytes) = unhex(&wrap) {
                    if self.wraps.len() >= HELD_WRAPS {
                        let oldest = self.wraps.keys().min().copied();
                        if let Some(o) = oldest {
                            self.wraps.remove(&o);
                        }
                    }
                    self.wraps.insert(epoch, bytes);
                }
            }
            ConfInput::Signal { from, payload } => self.signal(from, payload),
            ConfInput::Relay(grant) => {
                self.relay = Some(grant);
                if let Some(m) = self.media() {
                    m.set_relay(grant);
                }
            }
            ConfInput::Lost(reason) => self.end(format!("connection lost: {reason}")),
        }
    }

    fn signal(&mut self, from: String, payload: String) {
        let Ok(ConfSignalPayload::Candidates { sealed }) = serde_json::from_str(&payload) else {
            tracing::debug!(conf = %self.shared.conf, %from, "conference signal ignored");
            return;
        };
        let Some(bytes) = unhex(&sealed) else { return };
        let index = self.state().member(&from).map(|m| m.index);
        match (self.media(), index) {
            (Some(media), Some(index)) => media.add_candidates(index, bytes),
            _ => {
                if self.early_signals.len() < 64 {
                    self.early_signals.push((from, bytes));
                }
            }
        }
    }

    async fn entry(&mut self, s: Sequenced) {
        let next = self.state().next_seq();
        if s.seq < next {
            return;
        }
        if s.seq > next {
            // Entries are missing (they were delivered before we were ready, or lost): fetch
            // them first.
            self.fetch_log(next, s.seq).await;
            if self.state().next_seq() != s.seq {
                tracing::warn!(conf = %self.shared.conf, seq = s.seq, "conference log has a gap we could not fill");
                return;
            }
        }
        let joined = self.shared.joined.borrow().is_some();
        let ours = s.entry.open().is_ok_and(|o| {
            o.content.author == self.shared.me
                && matches!(o.content.body, Body::Join { .. } | Body::Create { .. })
        });
        let live = joined || ours;
        let result = {
            let inner = &self.shared.client.inner;
            let server_name = inner.options.expected_server_name();
            if let Some(stale) = inner.check.stale(crate::util::unix_now()) {
                inner.check.wake();
                tracing::warn!(conf = %self.shared.conf, "entries cannot be checked: {stale}");
            }
            let check = inner.check.snapshot();
            let verifier = Verifier {
                check: &check,
                server_name: Some(&server_name),
                live,
            };
            let started = Instant::now();
            let r = self.state().apply(&s, &verifier);
            (r, started)
        };
        let (result, started) = result;
        match result {
            Ok(changes) => {
                for change in changes {
                    self.change(change, &s, live, started).await;
                }
            }
            Err(rejection) => {
                tracing::warn!(conf = %self.shared.conf, "{rejection}");
                if live {
                    self.emit(ConferenceEvent::Rejected {
                        seq: rejection.seq,
                        author: rejection.author,
                        kind: rejection.kind,
                        code: rejection.code.to_owned(),
                        reason: rejection.reason,
                    });
                }
            }
        }
        // Told only now, so whoever waits sees what the entry changed (keys included).
        self.shared.applied.send_replace(self.state().next_seq());
    }

    async fn fetch_log(&mut self, from: u64, until: u64) {
        let mut after = from.checked_sub(1);
        while self.state().next_seq() < until {
            let answer = self
                .shared
                .client
                .request(Request::ConfLog {
                    conf: self.shared.conf.clone(),
                    after,
                })
                .await;
            let Ok(Response::ConfLog { entries, next, .. }) = answer else {
                return;
            };
            if entries.is_empty() {
                return;
            }
            // These arrive now; the entry that revealed the gap keeps its own arrival.
            let arrived = std::mem::replace(&mut self.arrived_ms, crate::util::unix_now_ms());
            let mut reached = false;
            for e in entries {
                if e.seq >= until {
                    reached = true;
                    break;
                }
                Box::pin(self.entry(e)).await;
            }
            self.arrived_ms = arrived;
            if reached {
                return;
            }
            match next {
                Some(n) => after = Some(n),
                None => return,
            }
        }
    }

    async fn change(&mut self, change: Change, s: &Sequenced, live: bool, started: Instant) {
        let me = self.shared.me.clone();
        // What this member saw of everyone's time here, for judging receipt requests.
        let (conf, at) = (&self.shared.conf, self.arrived_ms);
        let receipts = &self.shared.client.inner.receipts;
        match &change {
            Change::Joined { member, .. } if live || *member == me => {
                receipts.observe(|g| g.conf_joined(conf, member, at))
            }
            Change::Left { member, .. } if live || *member == me => {
                receipts.observe(|g| g.conf_left(conf, member, at))
            }
            _ => {}
        }
        match change {
            Change::Joined { member, index } if member == me => {
                let bind = match self.shared.options.media.bind {
                    Some(ip) => Ok(ip),
                    None => self.shared.client.local_ip(),
                };
                let media = match bind {
                    Ok(ip) => {
                        ConferenceMedia::new(index, ip, self.shared.options.media.clone()).await
                    }
                    Err(e) => Err(e),
                };
                match media {
                    Ok(m) => {
                        if let Some(grant) = self.relay {
                            m.set_relay(grant);
                        }
                        *self.shared.media.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(Arc::new(m));
                        self.shared.joined.send_replace(Some(index));
                    }
                    Err(e) => self.end(format!("the conference media could not start: {e}")),
                }
            }
            Change::Joined { member, .. } if live => {
                self.newcomers.push(member.clone());
                self.emit(ConferenceEvent::Joined { member });
            }
            Change::Left { member, reason, .. } if member == me => {
                self.end(reason);
            }
            Change::Left {
                member,
                index,
                reason,
            } => {
                if let Some(m) = self.media() {
                    m.depart(index);
                }
                self.newcomers.retain(|n| n != &member);
                if live {
                    self.emit(ConferenceEvent::Left { member, reason });
                }
            }
            Change::EpochStarted {
                epoch,
                policy,
                distributor,
            } if live => {
                self.open_epoch(s, epoch, policy, distributor, started)
                    .await;
            }
            Change::Ended => self.end("the conference ended".into()),
            Change::Created { .. } => {}
            other if live => self.emit(match other {
                Change::Invited {
                    invitee, inviter, ..
                } => ConferenceEvent::Invited { invitee, inviter },
                Change::Declined { invitee } => ConferenceEvent::Declined { invitee },
                Change::PolicyPending {
                    policy,
                    by,
                    lowered,
                } => ConferenceEvent::PolicyPending {
                    policy,
                    by,
                    lowered,
                },
                Change::ModeratorChanged { moderator } => {
                    ConferenceEvent::ModeratorChanged { moderator }
                }
                Change::ProposalOpened {
                    proposal,
                    proposer,
                    policy,
                    deadline_ms,
                } => ConferenceEvent::ProposalOpened {
                    proposal,
                    proposer,
                    policy,
                    deadline_ms,
                },
                Change::Voted {
                    proposal,
                    voter,
                    approve,
                } => ConferenceEvent::Voted {
                    proposal,
                    voter,
                    approve,
                },
                Change::ProposalDecided {
                    proposal,
                    adopted,
                    reason,
                } => ConferenceEvent::ProposalDecided {
                    proposal,
                    adopted,
                    reason,
                },
                _ => return,
            }),
            _ => {}
        }
    }

    /// Opens our wrap of `epoch` (or takes the secret we made), installs its keys, and sends our
    /// addresses to those who need them.
    async fn open_epoch(
        &mut self,
        s: &Sequenced,
        epoch: u32,
        policy: Policy,
        distributor: String,
        started: Instant,
    ) {
        let me = self.shared.me.clone();
        let Some(media) = self.media() else { return };
        let index = media.me();
        let secret = if distributor == me {
            match self.in_flight.take() {
                Some((e, secret)) if e == epoch => Ok(secret),
                _ => Err("we distributed it but no longer hold its secret".to_owned()),
            }
        } else {
            self.unwrap_ours(s, epoch, &policy, index)
        };
        self.wraps.retain(|e, _| *e > epoch);
        let secret = match secret {
            Ok(secret) => secret,
            Err(reason) => {
                tracing::warn!(conf = %self.shared.conf, epoch, "{reason}");
                self.emit(ConferenceEvent::KeyUnavailable { epoch, reason });
                return;
            }
        };
        let roster: Vec<(u16, Arc<str>)> = self
            .state()
            .members()
            .iter()
            .map(|m| (m.index, Arc::from(m.id.as_str())))
            .collect();
        if let Err(e) = media
            .install_epoch(epoch, &secret, policy, roster.clone())
            .await
        {
            self.emit(ConferenceEvent::KeyUnavailable {
                epoch,
                reason: e.to_string(),
            });
            return;
        }
        if distributor != me {
            self.shared
                .timings
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .last_epoch_open_micros = started.elapsed().as_micros() as u64;
        }
        // Addresses: all of ours to everyone on our first epoch; else to the newcomers.
        let targets: Vec<Option<String>> = if self.first_epoch {
            self.first_epoch = false;
            vec![None]
        } else {
            std::mem::take(&mut self.newcomers)
                .into_iter()
                .filter(|n| roster.iter().any(|(_, m)| &**m == n))
                .map(Some)
                .collect()
        };
        if roster.len() > 1 && !targets.is_empty() {
            match media.seal_candidates().await {
                Ok(sealed) => {
                    let payload = serde_json::to_string(&ConfSignalPayload::Candidates { sealed })
                        .unwrap_or_default();
                    for to in targets {
                        let r = self
                            .shared
                            .client
                            .request(Request::ConfSignal {
                                conf: self.shared.conf.clone(),
                                to,
                                payload: payload.clone(),
                            })
                            .await;
                        if let Err(e) = r {
                            tracing::debug!(conf = %self.shared.conf, "addresses not sent: {e}");
                        }
                    }
                }
                Err(e) => tracing::debug!("addresses not sealed: {e}"),
            }
        }
        for (from, bytes) in std::mem::take(&mut self.early_signals) {
            if let Some(m) = self.state().member(&from) {
                media.add_candidates(m.index, bytes);
            }
        }
        self.emit(ConferenceEvent::Epoch {
            epoch,
            policy,
            distributor,
            roster: roster.iter().map(|(_, m)| m.to_string()).collect(),
        });
    }

    fn unwrap_ours(
        &mut self,
        s: &Sequenced,
        epoch: u32,
        policy: &Policy,
        index: u16,
    ) -> std::result::Result<EpochSecret, String> {
        let opened = s.entry.open().map_err(|e| e.to_string())?;
        let Body::Bundle {
            ephemeral, wraps, ..
        } = &opened.content.body
        else {
            return Err("the epoch did not come with a bundle".into());
        };
        let named = wraps
            .iter()
            .find(|w| w.member == index)
            .ok_or("the bundle has no wrap for us")?;
        let wrap = self
            .wraps
            .remove(&epoch)
            .ok_or("our wrap of the epoch did not arrive")?;
        if sha256_hex(&wrap) != named.hash {
            return Err("our wrap is not the one the bundle names".into());
        }
        let roster: [u8; 32] = unhex(&opened.content.roster)
            .and_then(|r| r.try_into().ok())
            .ok_or("the bundle's roster hash is malformed")?;
        let ephemeral = unhex(ephemeral).ok_or("the bundle's ephemeral key is not hex")?;
        let ctx = WrapContext {
            conf: &self.shared.conf,
            epoch,
            roster_hash: &roster,
            post_quantum: policy.post_quantum(),
        };
        unwrap_epoch(
            &ctx,
            &self.shared.secrets,
            index,
            &self.shared.me,
            &ephemeral,
            &wrap,
        )
        .map_err(|e| e.to_string())
    }

    /// When we are the distributor and the roster or policy changed (or the periodic rekey is
    /// due), makes the next epoch: a fresh secret wrapped to every other member, the wraps sent
    /// to the server, then the signed bundle.
    async fn distribute(&mut self) {
        let me = self.shared.me.clone();
        let prepared = {
            let st = self.state();
            if st.distributor() != Some(me.as_str()) || self.shared.joined.borrow().is_none() {
                return;
            }
            let next = st.epoch() + 1;
            if self.in_flight.as_ref().is_some_and(|(e, _)| *e == next) {
                return;
            }
            let interval = i64::from(st.policy().rekey_interval_secs) * 1000;
            let periodic =
                interval > 0 && crate::util::unix_now() * 1000 - st.last_epoch_at_ms() >= interval;
            if !st.rekey_due() && !periodic {
                return;
            }
            let started = Instant::now();
            let counter = self.shared.counter(st.counter_of(&me));
            let made = next_epoch(&st, &self.shared.client.inner.options.identity, counter);
            let made = match made {
                Ok(made) => made,
                Err(e) => {
                    tracing::warn!(conf = %self.shared.conf, "cannot make epoch {next}: {e}");
                    return;
                }
            };
            let mut t = self
                .shared
                .timings
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            t.last_bundle_micros = started.elapsed().as_micros() as u64;
            t.last_bundle_bytes = made.bytes();
            (made.epoch, made.prepared, made.entry)
        };
        let (next, prepared, entry) = prepared;
        // Wraps first (in pieces that fit a frame), then the bundle.
        let mut chunk: Vec<WrapDelivery> = Vec::new();
        let mut chunk_bytes = 0;
        let mut chunks = Vec::new();
        for (member, wrap) in &prepared.wraps {
            let w = hex(wrap);
            if chunk_bytes + w.len() > MAX_WRAPS_CHUNK_BYTES && !chunk.is_empty() {
                chunks.push(std::mem::take(&mut chunk));
                chunk_bytes = 0;
            }
            chunk_bytes += w.len() + 32;
            chunk.push(WrapDelivery {
                member: *member,
                wrap: w,
            });
        }
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
        self.in_flight = Some((next, prepared.secret));
        for wraps in chunks {
            let r = self
                .shared
                .client
                .request(Request::ConfWraps {
                    conf: self.shared.conf.clone(),
                    epoch: next,
                    wraps,
                })
                .await;
            if let Err(e) = r {
                tracing::debug!(conf = %self.shared.conf, "wraps of epoch {next} refused: {e}");
                self.in_flight = None;
                return;
            }
        }
        if let Err(e) = self
            .shared
            .client
            .post_entry(&self.shared.conf, entry)
            .await
        {
            tracing::debug!(conf = %self.shared.conf, "bundle of epoch {next} refused: {e}");
            self.in_flight = None;
        }
    }
}
