//! Conferences for C: create one or join one you were invited to, invite, leave, remove, set or
//! vote on the policy, follow what happens through a listener, and send and receive frames with
//! every other member through caller-owned buffers.

use std::ffi::{c_char, c_void, CString};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::mpsc;
use vcsdk::client::{Conference, ConferenceEvent, ConferenceOptions};
use vcsdk::conference::{
    AccessList, ConferenceFrame, ConferenceMediaConfig, Mode, Policy, Protection, StreamProtection,
};
use vcsdk::media::MediaPath;

use crate::client::vc_client;
use crate::events::{c_string, Deliver, Dispatcher};
use crate::result::{
    boundary, done, fail, free_handle, hand_out, handle, input, output, required, sdk_error, text,
    vc_result, write_text,
};
use crate::runtime::{block_on, block_on_media, spawn};

/// Events queued for a conference's listener before the oldest wait.
const EVENT_QUEUE: usize = 256;

/// Who decides a conference's policy.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum vc_conference_mode {
    /// The moderator (who also distributes the keys and may remove members).
    VC_CONFERENCE_MODE_MODERATION = 0,
    /// A majority of the members, by vote; the longest-present member distributes the keys.
    VC_CONFERENCE_MODE_VOTING = 1,
}

/// How one stream of a conference is protected.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum vc_protection {
    /// In the clear (levels 0 and 1, or a stream a level-2 policy leaves open).
    VC_PROTECTION_PLAIN = 0,
    /// SFrame with AES-128-GCM.
    VC_PROTECTION_AES128GCM = 1,
    /// SFrame with AES-256-GCM (every stream at level 3).
    VC_PROTECTION_AES256GCM = 2,
}

/// A conference's security policy. Start from vc_conference_policy_default().
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vc_conference_policy {
    /// Security level 0–3: 0 and 1 plain, 2 encrypted, 3 AES-256-GCM with post-quantum key wraps.
    pub level: u8,
    /// Moderation or voting.
    pub mode: vc_conference_mode,
    /// Audio.
    pub audio: vc_protection,
    /// Video.
    pub video: vc_protection,
    /// Data (whiteboard).
    pub data: vc_protection,
    /// Signalling between members.
    pub signalling: vc_protection,
    /// The distributor starts a new epoch this often, seconds (0: only on changes).
    pub rekey_interval_secs: u32,
}

fn protection_to_c(p: Protection) -> vc_protection {
    match p {
        Protection::Plain => vc_protection::VC_PROTECTION_PLAIN,
        Protection::Aes128Gcm => vc_protection::VC_PROTECTION_AES128GCM,
        Protection::Aes256Gcm => vc_protection::VC_PROTECTION_AES256GCM,
    }
}

fn protection_from_c(p: u32, what: &str) -> Result<Protection, vc_result> {
    match p {
        0 => Ok(Protection::Plain),
        1 => Ok(Protection::Aes128Gcm),
        2 => Ok(Protection::Aes256Gcm),
        other => Err(fail(
            vc_result::VC_RESULT_INVALID_ARGUMENT,
            format!("{what}: {other} is not a vc_protection"),
        )),
    }
}

impl From<&Policy> for vc_conference_policy {
    fn from(p: &Policy) -> Self {
        vc_conference_policy {
            level: p.level,
            mode: match p.mode {
                Mode::Moderation => vc_conference_mode::VC_CONFERENCE_MODE_MODERATION,
                Mode::Voting => vc_conference_mode::VC_CONFERENCE_MODE_VOTING,
            },
            audio: protection_to_c(p.streams.audio),
            video: protection_to_c(p.streams.video),
            data: protection_to_c(p.streams.data),
            signalling: protection_to_c(p.streams.signalling),
            rekey_interval_secs: p.rekey_interval_secs,
        }
    }
}

/// Reads a policy a caller filled in (enum fields read as numbers, so garbage is refused).
///
/// # Safety
/// `ptr` readable.
unsafe fn policy_from_c(ptr: *const vc_conference_policy) -> Result<Policy, vc_result> {
    // SAFETY: the caller promises a readable struct; each field is read as a plain integer (an
    // enum field holding a value outside its enum is then refused, never materialised).
    let raw = unsafe {
        [
            u32::from(std::ptr::addr_of!((*ptr).level).read_unaligned()),
            std::ptr::addr_of!((*ptr).mode)
                .cast::<u32>()
                .read_unaligned(),
            std::ptr::addr_of!((*ptr).audio)
                .cast::<u32>()
                .read_unaligned(),
            std::ptr::addr_of!((*ptr).video)
                .cast::<u32>()
                .read_unaligned(),
            std::ptr::addr_of!((*ptr).data)
                .cast::<u32>()
                .read_unaligned(),
            std::ptr::addr_of!((*ptr).signalling)
                .cast::<u32>()
                .read_unaligned(),
            std::ptr::addr_of!((*ptr).rekey_interval_secs).read_unaligned(),
        ]
    };
    let level = raw[0];
    let mode = match raw[1] {
        0 => Mode::Moderation,
        1 => Mode::Voting,
        other => {
            return Err(fail(
                vc_result::VC_RESULT_INVALID_ARGUMENT,
                format!("mode {other} is not a vc_conference_mode"),
            ))
        }
    };
    let policy = Policy {
        level: level as u8,
        mode,
        streams: StreamProtection {
            audio: protection_from_c(raw[2], "audio")?,
            video: protection_from_c(raw[3], "video")?,
            data: protection_from_c(raw[4], "data")?,
            signalling: protection_from_c(raw[5], "signalling")?,
        },
        rekey_interval_secs: raw[6],
    };
    policy
        .validate()
        .map_err(|e| fail(vc_result::VC_RESULT_INVALID_ARGUMENT, e.to_string()))?;
    Ok(policy)
}

/// What happened in a conference (the fields of vc_conference_event that apply are listed).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum vc_conference_event_kind {
    /// `member` joined (it gets keys with the next epoch).
    VC_CONFERENCE_EVENT_JOINED = 0,
    /// `member` is gone: `reason`.
    VC_CONFERENCE_EVENT_LEFT = 1,
    /// `member` was invited by `other`.
    VC_CONFERENCE_EVENT_INVITED = 2,
    /// `member` declined its invitation.
    VC_CONFERENCE_EVENT_DECLINED = 3,
    /// A new `epoch` is in force, with `policy`, distributed by `member`; its keys are installed.
    VC_CONFERENCE_EVENT_EPOCH = 4,
    /// `policy` was agreed; it takes effect at the next epoch. `member` set or proposed it;
    /// `reason`, when not NULL, says what it lowers (a lower level, a stream with weaker or no
    /// encryption): tell the user loudly.
    VC_CONFERENCE_EVENT_POLICY_PENDING = 5,
    /// `member` is the moderator now (NULL: none, voting mode).
    VC_CONFERENCE_EVENT_MODERATOR = 6,
    /// `member` proposes `policy` as `proposal` (voting mode).
    VC_CONFERENCE_EVENT_PROPOSAL = 7,
    /// `member` voted `approve` on `proposal`.
    VC_CONFERENCE_EVENT_VOTE = 8,
    /// `proposal` was decided: `adopted`, `reason`.
    VC_CONFERENCE_EVENT_DECIDED = 9,
    /// A control message every member refuses reached us and was ignored: `member` (its
    /// author), `code`, `reason`.
    VC_CONFERENCE_EVENT_REJECTED = 10,
    /// The key of `epoch` could not be opened: `reason`.
    VC_CONFERENCE_EVENT_KEY_UNAVAILABLE = 11,
    /// We are no longer a member: `reason`. No event follows.
    VC_CONFERENCE_EVENT_ENDED = 12,
}

/// One conference event. Every pointer is NULL or a NUL-terminated string that lives only until
/// the callback returns: copy what you keep.
#[repr(C)]
#[derive(Debug)]
pub struct vc_conference_event {
    /// What happened; says which fields apply.
    pub kind: vc_conference_event_kind,
    /// The member concerned, or NULL.
    pub member: *const c_char,
    /// A second member (the inviter), or NULL.
    pub other: *const c_char,
    /// Why, or NULL.
    pub reason: *const c_char,
    /// A stable code (VC_CONFERENCE_EVENT_REJECTED), or NULL.
    pub code: *const c_char,
    /// The epoch (EPOCH, KEY_UNAVAILABLE).
    pub epoch: u32,
    /// The policy (EPOCH, POLICY_PENDING, PROPOSAL).
    pub policy: vc_conference_policy,
    /// The proposal's number, 1 for the conference's first (PROPOSAL, VOTE, DECIDED).
    pub proposal: u64,
    /// The ballot (VOTE).
    pub approve: bool,
    /// The decision (DECIDED).
    pub adopted: bool,
}

/// Where a conference's events go. Threading as for vc_client_listener: one event thread per
/// conference, callbacks one at a time in order, never on a thread that called a vc_* function;
/// a callback may call any vc_* function (vc_conference_free() of its own conference included)
/// and must return promptly.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vc_conference_listener {
    /// Passed back to every function below.
    pub ctx: *mut c_void,
    /// Called for each event; NULL to ignore events.
    pub on_event: Option<unsafe extern "C" fn(ctx: *mut c_void, event: *const vc_conference_event)>,
    /// Called exactly once when no callback will follow (on the event thread, or — when the
    /// conference could not be created or joined — on the calling thread); NULL if not needed.
    pub destroy: Option<unsafe extern "C" fn(ctx: *mut c_void)>,
}

struct OwnedConferenceListener(vc_conference_listener);

// SAFETY: the C side promises the listener may be used from the event thread (documented on
// vc_conference_listener); only that thread uses it.
unsafe impl Send for OwnedConferenceListener {}

impl Drop for OwnedConferenceListener {
    fn drop(&mut self) {
        if let Some(destroy) = self.0.destroy.take() {
            // SAFETY: the caller's function and ctx, valid until destroy; called once.
            unsafe { destroy(self.0.ctx) };
        }
    }
}

impl Deliver<ConferenceEvent> for OwnedConferenceListener {
    fn deliver(&self, event: &ConferenceEvent) {
        let Some(on_event) = self.0.on_event else {
            return;
        };
        let s = |v: &str| Some(c_string(v));
        let (mut member, mut other, mut reason, mut code) = (None, None, None, None);
        let mut e = vc_conference_event {
            kind: vc_conference_event_kind::VC_CONFERENCE_EVENT_JOINED,
            member: std::ptr::null(),
            other: std::ptr::null(),
            reason: std::ptr::null(),
            code: std::ptr::null(),
            epoch: 0,
            policy: (&Policy::default()).into(),
            proposal: 0,
            approve: false,
            adopted: false,
        };
        use vc_conference_event_kind as K;
        e.kind = match event {
            ConferenceEvent::Joined { member: m } => {
                member = s(m);
                K::VC_CONFERENCE_EVENT_JOINED
            }
            ConferenceEvent::Left {
                member: m,
                reason: r,
            } => {
                (member, reason) = (s(m), s(r));
                K::VC_CONFERENCE_EVENT_LEFT
            }
            ConferenceEvent::Invited { invitee, inviter } => {
                (member, other) = (s(invitee), s(inviter));
                K::VC_CONFERENCE_EVENT_INVITED
            }
            ConferenceEvent::Declined { invitee } => {
                member = s(invitee);
                K::VC_CONFERENCE_EVENT_DECLINED
            }
            ConferenceEvent::Epoch {
                epoch,
                policy,
                distributor,
                ..
            } => {
                member = s(distributor);
                e.epoch = *epoch;
                e.policy = policy.into();
                K::VC_CONFERENCE_EVENT_EPOCH
            }
            ConferenceEvent::PolicyPending {
                policy,
                by,
                lowered,
            } => {
                member = s(by);
                reason = lowered.as_deref().and_then(s);
                e.policy = policy.into();
                K::VC_CONFERENCE_EVENT_POLICY_PENDING
            }
            ConferenceEvent::ModeratorChanged { moderator } => {
                member = moderator.as_deref().and_then(s);
                K::VC_CONFERENCE_EVENT_MODERATOR
            }
            ConferenceEvent::ProposalOpened {
                proposal,
                proposer,
                policy,
                ..
            } => {
                member = s(proposer);
                e.proposal = *proposal;
                e.policy = policy.into();
                K::VC_CONFERENCE_EVENT_PROPOSAL
            }
            ConferenceEvent::Voted {
                proposal,
                voter,
                approve,
            } => {
                member = s(voter);
                e.proposal = *proposal;
                e.approve = *approve;
                K::VC_CONFERENCE_EVENT_VOTE
            }
            ConferenceEvent::ProposalDecided {
                proposal,
                adopted,
                reason: r,
            } => {
                reason = s(r);
                e.proposal = *proposal;
                e.adopted = *adopted;
                K::VC_CONFERENCE_EVENT_DECIDED
            }
            ConferenceEvent::Rejected {
                author,
                code: c,
                reason: r,
                ..
            } => {
                (member, code, reason) = (s(author), s(c), s(r));
                K::VC_CONFERENCE_EVENT_REJECTED
            }
            ConferenceEvent::KeyUnavailable { epoch, reason: r } => {
                reason = s(r);
                e.epoch = *epoch;
                K::VC_CONFERENCE_EVENT_KEY_UNAVAILABLE
            }
            ConferenceEvent::Ended { reason: r } => {
                reason = s(r);
                K::VC_CONFERENCE_EVENT_ENDED
            }
        };
        let ptr = |v: &Option<CString>| v.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
        e.member = ptr(&member);
        e.other = ptr(&other);
        e.reason = ptr(&reason);
        e.code = ptr(&code);
        // SAFETY: the caller's function and ctx, valid until destroy; the event and its strings
        // live until the call returns.
        unsafe { on_event(self.0.ctx, &e) };
    }
}

/// A conference this client is in. Safe to use from several threads at once. Freeing it does
/// not leave: call vc_conference_leave() first to tell the others.
pub struct vc_conference {
    conference: Conference,
    dispatcher: Mutex<Option<Dispatcher>>,
    forwarder: Option<tokio::task::JoinHandle<()>>,
    /// A frame too large for the buffer of the last receive, kept for the next one.
    pending: Mutex<Option<ConferenceFrame>>,
}

impl Drop for vc_conference {
    fn drop(&mut self) {
        if let Some(f) = self.forwarder.take() {
            f.abort();
        }
        drop(
            self.dispatcher
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
    }
}

/// Statistics of a conference's media and keys.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vc_conference_stats {
    /// The epoch whose keys we send with.
    pub epoch: u32,
    /// Other members.
    pub peers: u32,
    /// Of them, reached directly.
    pub peers_direct: u32,
    /// Of them, reached through the server's relay.
    pub peers_relayed: u32,
    /// Frames sent (each once, whatever the number of members).
    pub frames_sent: u64,
    /// Frames received and delivered.
    pub frames_received: u64,
    /// Payload bytes received.
    pub bytes_received: u64,
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
    /// Plain frames refused on streams the policy encrypts.
    pub plain_refused: u64,
    /// Microseconds the last bundle we distributed took to make.
    pub last_bundle_micros: u64,
    /// Bytes of that bundle.
    pub last_bundle_bytes: u64,
}

/// Fills `*out` with the usual policy of `level` (0–3) in `mode` (a vc_conference_mode).
///
/// # Safety
/// Pointers: `out` required.
#[no_mangle]
pub unsafe extern "C" fn vc_conference_policy_default(
    level: u8,
    mode: u32,
    out: *mut vc_conference_policy,
) -> vc_result {
    boundary(|| {
        done((|| {
            required(out, "out")?;
            if level > 3 {
                return Err(fail(
                    vc_result::VC_RESULT_INVALID_ARGUMENT,
                    format!("security level {level} is not 0–3"),
                ));
            }
            let mode = match mode {
                0 => Mode::Moderation,
                1 => Mode::Voting,
                other => {
                    return Err(fail(
                        vc_result::VC_RESULT_INVALID_ARGUMENT,
                        format!("mode {other} is not a vc_conference_mode"),
                    ))
                }
            };
            // SAFETY: checked non-NULL; writable by the caller's promise.
            unsafe { *out = (&Policy::for_level(level, mode)).into() };
            Ok(())
        })())
    })
}

fn start(
    conference: Conference,
    listener: Option<vc_conference_listener>,
) -> Result<vc_conference, vc_result> {
    let listener = OwnedConferenceListener(listener.unwrap_or(vc_conference_listener {
        ctx: std::ptr::null_mut(),
        on_event: None,
        destroy: None,
    }));
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let source = conference.clone();
    let forwarder = spawn(async move {
        while let Some(event) = source.next_event().await {
            if tx.send(event).await.is_err() {
                break;
            }
        }
    })?;
    let dispatcher = Dispatcher::start(listener, rx).map_err(|e| {
        forwarder.abort();
        fail(
            vc_result::VC_RESULT_STORE,
            format!("starting the event thread: {e}"),
        )
    })?;
    Ok(vc_conference {
        conference,
        dispatcher: Mutex::new(Some(dispatcher)),
        forwarder: Some(forwarder),
        pending: Mutex::new(None),
    })
}

fn options(policy: Policy, direct: bool) -> ConferenceOptions {
    ConferenceOptions {
        policy,
        media: ConferenceMediaConfig {
            direct,
            ..Default::default()
        },
    }
}

/// Creates a conference with `policy`; we are its first member and, in moderation mode, its
/// moderator. `direct` false sends media only through the server's relay (never revealing our
/// address). Events go to `listener`, which the library owns from this call on whatever it
/// returns (its `destroy` runs exactly once; on failure before this returns). Blocks until the
/// conference exists. Free with vc_conference_free(). Refusals: `not_registered`,
/// `insufficient_credit` (the creator cannot pay the connect fee and first increment),
/// `conf_full` (the server holds too many conferences, or this user is in too many),
/// `conf_exists`, and the conference codes of the conventions.
///
/// # Safety
/// Pointers: `client` required; `policy` optional (NULL: level 2, moderation); `listener`
/// optional (NULL: no events), read during the call only; `out` required.
#[no_mangle]
pub unsafe extern "C" fn vc_conference_create(
    client: *const vc_client,
    policy: *const vc_conference_policy,
    direct: bool,
    listener: *const vc_conference_listener,
    out: *mut *mut vc_conference,
) -> vc_result {
    // SAFETY: forwarded caller promise; read before anything can fail, so it is always owned.
    let listener = unsafe { listener.as_ref().copied() };
    let owned = OwnedConferenceListener(listener.unwrap_or(vc_conference_listener {
        ctx: std::ptr::null_mut(),
        on_event: None,
        destroy: None,
    }));
    boundary(move || {
        done((|| {
            required(out, "out")?;
            // SAFETY: forwarded caller promises.
            let client = unsafe { handle(client, "client")? }.client().clone();
            let policy = if policy.is_null() {
                Policy::default()
            } else {
                // SAFETY: non-NULL and readable by the caller's promise.
                unsafe { policy_from_c(policy)? }
            };
            let conference =
                block_on(client.create_conference(options(policy, direct)))?.map_err(sdk_error)?;
            let value = start(conference, Some(take(owned)))?;
            // SAFETY: `out` checked non-NULL.
            unsafe { hand_out(out, value) };
            Ok(())
        })())
    })
}

/// Hands the raw listener on without running its `destroy`.
fn take(owned: OwnedConferenceListener) -> vc_conference_listener {
    let listener = owned.0;
    std::mem::forget(owned);
    listener
}

/// Joins conference `conf_id`, to which an invitation was shown (VC_EVENT_CONFERENCE_INVITATION).
/// `direct` and `listener` as for vc_conference_create(). Blocks until we are a member. No open
/// invitation to it gives VC_RESULT_INVALID_ARGUMENT. Refusals: `not_registered`, `conf_unknown`
/// (the conference is gone), `insufficient_credit` (when the server bills each participant),
/// `conf_full` (this user is in too many conferences), `conf_forbidden` (the invitation is not
/// held), `conf_invalid` (the invitation lapsed, or the conference is full or ended),
/// `conf_other_device` (another device of this user is in the conference), and the conference
/// codes of the conventions.
///
/// # Safety
/// Pointers: `client` required; `conf_id` required; `listener` optional (NULL: no events), read
/// during the call only; `out` required.
#[no_mangle]
pub unsafe extern "C" fn vc_conference_join(
    client: *const vc_client,
    conf_id: *const c_char,
    direct: bool,
    listener: *const vc_conference_listener,
    out: *mut *mut vc_conference,
) -> vc_result {
    // SAFETY: forwarded caller promise; read first, so it is always owned.
    let listener = unsafe { listener.as_ref().copied() };
    let owned = OwnedConferenceListener(listener.unwrap_or(vc_conference_listener {
        ctx: std::ptr::null_mut(),
        on_event: None,
        destroy: None,
    }));
    boundary(move || {
        done((|| {
            required(out, "out")?;
            // SAFETY: forwarded caller promises.
            let (client, conf) = unsafe {
                (
                    handle(client, "client")?.client().clone(),
                    text(conf_id, "conf_id")?,
                )
            };
            let conference =
                block_on(client.join_conference(conf, options(Policy::default(), direct)))?
                    .map_err(sdk_error)?;
            let value = start(conference, Some(take(owned)))?;
            // SAFETY: `out` checked non-NULL.
            unsafe { hand_out(out, value) };
            Ok(())
        })())
    })
}

/// Declines the invitation to `conf_id`. No open invitation to it gives
/// VC_RESULT_INVALID_ARGUMENT. Refusals: `not_registered`, `conf_unknown`, `conf_forbidden` (the
/// invitation is not held), `conf_invalid` (it lapsed), and the conference codes of the
/// conventions.
///
/// # Safety
/// Pointers: `client` required; `conf_id` required.
#[no_mangle]
pub unsafe extern "C" fn vc_client_decline_conference(
    client: *const vc_client,
    conf_id: *const c_char,
) -> vc_result {
    boundary(|| {
        done((|| {
            // SAFETY: forwarded caller promises.
            let (client, conf) = unsafe {
                (
                    handle(client, "client")?.client(),
                    text(conf_id, "conf_id")?,
                )
            };
            block_on(client.decline_conference(conf))?.map_err(sdk_error)
        })())
    })
}

/// Sets who may invite this client, as TOML text: `allow = [ids]`, `deny = [ids]`,
/// `contacts = [ids]`, `default = "anyone" | "contacts" | "nobody"` (deny wins, then allow, then
/// the default). An invitation the list refuses is declined and never reaches the listener.
/// Malformed TOML gives VC_RESULT_INVALID_ARGUMENT. Needs no network.
///
/// # Safety
/// Pointers: `client` required; `acl_toml` required.
#[no_mangle]
pub unsafe extern "C" fn vc_client_set_access_list(
    client: *const vc_client,
    acl_toml: *const c_char,
) -> vc_result {
    boundary(|| {
        done((|| {
            // SAFETY: forwarded caller promises.
            let (client, toml) = unsafe {
                (
                    handle(client, "client")?.client(),
                    text(acl_toml, "acl_toml")?,
                )
            };
            let acl = AccessList::from_toml(toml).map_err(sdk_error)?;
            client.set_access_list(acl);
            Ok(())
        })())
    })
}

/// Frees the conference handle (without leaving; see vc_conference_leave()). Event delivery stops
/// first (a callback running is waited for, none starts after) and the listener's `destroy` has
/// run when this returns (from one of its own callbacks: when that callback returns).
///
/// # Safety
/// Pointers: `conference` optional (NULL: nothing happens); not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn vc_conference_free(conference: *mut vc_conference) {
    // SAFETY: forwarded caller promise.
    unsafe { free_handle(conference) }
}

/// The conference behind `ptr`.
///
/// # Safety
/// `ptr` NULL or live.
unsafe fn live<'a>(ptr: *const vc_conference) -> Result<&'a Conference, vc_result> {
    // SAFETY: forwarded caller promise.
    Ok(&unsafe { handle(ptr, "conference") }?.conference)
}

/// Writes the conference's id (32 hex digits) into `buf` (capacity `cap`; VC_ID_CAPACITY
/// suffices) as text out: on VC_RESULT_BUFFER_TOO_SMALL `*out_len` is the capacity needed, NUL
/// included.
///
/// # Safety
/// Pointers: `conference` required; `buf` required unless `cap` is 0; `out_len` optional (NULL:
/// no length reported).
#[no_mangle]
pub unsafe extern "C" fn vc_conference_id(
    conference: *const vc_conference,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> vc_result {
    boundary(|| {
        done((|| {
            // SAFETY: forwarded caller promises.
            let c = unsafe { live(conference)? };
            // SAFETY: forwarded caller promises.
            unsafe { write_text(c.id(), buf, cap, out_len, "buf") }
        })())
    })
}

/// Invites `user`: its certificate is fetched and checked first (pinned root, CRL, names it;
/// VC_RESULT_CERTIFICATE if not). Refusals: `not_registered`, `conf_unknown` (the conference is gone), `conf_forbidden` (not a member), `unknown_user` (no certificate on record for `user`), `user_offline`, `conf_invalid` (already
/// a member, or the conference would exceed its members), and the conference codes of the
/// conventions.
///
/// # Safety
/// Pointers: `conference` required; `user` required.
#[no_mangle]
pub unsafe extern "C" fn vc_conference_invite(
    conference: *const vc_conference,
    user: *const c_char,
) -> vc_result {
    boundary(|| {
        done((|| {
            // SAFETY: forwarded caller promises.
            let (c, who) = unsafe { (live(conference)?, text(user, "user")?) };
            block_on(c.invite(who))?.map_err(sdk_error)
        })())
    })
}

/// Removes `member` (moderator only). Refusals: `not_registered`, `conf_unknown` (the conference is gone), `conf_forbidden` (not a member, not the
/// moderator, or voting mode), `conf_invalid` (not a member; the moderator itself leaves
/// instead), and the conference codes of the conventions.
///
/// # Safety
/// Pointers: `conference` required; `member` required.
#[no_mangle]
pub unsafe extern "C" fn vc_conference_remove(
    conference: *const vc_conference,
    member: *const c_char,
) -> vc_result {
    boundary(|| {
        done((|| {
            // SAFETY: forwarded caller promises.
            let (c, who) = unsafe { (live(conference)?, text(member, "member")?) };
            block_on(c.remove(who))?.map_err(sdk_error)
        })())
    })
}

/// Hands the moderator role to `member` (moderator only). Refusals: `not_registered`, `conf_unknown` (the conference is gone), `conf_forbidden` (not a member, not the moderator, or voting mode), `conf_invalid` (not another member), and the
/// conference codes of the conventions.
///
/// # Safety
/// Pointers: `conference` required; `member` required.
#[no_mangle]
pub unsafe extern "C" fn vc_conference_hand_over(
    conference: *const vc_conference,
    member: *const c_char,
) -> vc_result {
    boundary(|| {
        done((|| {
            // SAFETY: forwarded caller promises.
            let (c, who) = unsafe { (live(conference)?, text(member, "member")?) };
            block_on(c.hand_over(who))?.map_err(sdk_error)
        })())
    })
}

/// Leaves the conference: the others rekey without us (VC_CONFERENCE_EVENT_ENDED follows).
/// Once we are no longer a member (VC_CONFERENCE_EVENT_ENDED) it gives, like every function that
/// posts, VC_RESULT_INVALID_ARGUMENT. Refusals: `not_registered`, `conf_unknown` (the conference is gone), `conf_forbidden` (not a member), and
/// the conference codes of the conventions.
///
/// # Safety
/// Pointers: `conference` required.
#[no_mangle]
pub unsafe extern "C" fn vc_conference_leave(conference: *const vc_conference) -> vc_result {
    boundary(|| {
        done((|| {
            // SAFETY: forwarded caller promise.
            let c = unsafe { live(conference)? };
            block_on(c.leave())?.map_err(sdk_error)
        })())
    })
}

/// Sets the policy (moderator only); it takes effect for everyone at the next epoch. A policy
/// that is not valid gives VC_RESULT_INVALID_ARGUMENT. Refusals: `not_registered`, `conf_unknown` (the conference is gone), `conf_forbidden` (not a member, not the moderator, or voting mode), `conf_invalid`, and the conference codes of the
/// conventions.
///
/// # Safety
/// Pointers: `conference` required; `policy` required.
#[no_mangle]
pub unsafe extern "C" fn vc_conference_set_policy(
    conference: *const vc_conference,
    policy: *const vc_conference_policy,
) -> vc_result {
    boundary(|| {
        done((|| {
            required(policy.cast_mut(), "policy")?;
            // SAFETY: forwarded caller promises.
            let (c, policy) = unsafe { (live(conference)?, policy_from_c(policy)?) };
            block_on(c.set_policy(policy))?.map_err(sdk_error)
        })())
    })
}

/// Proposes `policy` (voting mode), votes counting for `deadline_secs`; the proposal's number
/// goes into `*out_proposal`. Refusals: `not_registered`, `conf_unknown` (the conference is gone), `conf_forbidden` (not a member, or moderation mode),
/// `conf_invalid` (another proposal is open, or the deadline is out of range), and the
/// conference codes of the conventions.
///
/// # Safety
/// Pointers: `conference` required; `policy` required; `out_proposal` optional (NULL: the number
/// is not reported).
#[no_mangle]
pub unsafe extern "C" fn vc_conference_propose(
    conference: *const vc_conference,
    policy: *const vc_conference_policy,
    deadline_secs: u32,
    out_proposal: *mut u64,
) -> vc_result {
    boundary(|| {
        done((|| {
            required(policy.cast_mut(), "policy")?;
            // SAFETY: forwarded caller promises.
            let (c, policy) = unsafe { (live(conference)?, policy_from_c(policy)?) };
            let id = block_on(c.propose(policy, Duration::from_secs(deadline_secs.into())))?
                .map_err(sdk_error)?;
            if !out_proposal.is_null() {
                // SAFETY: non-NULL; writable by the caller's promise.
                unsafe { *out_proposal = id };
            }
            Ok(())
        })())
    })
}

/// Votes on the open proposal, which must be number `proposal` (1 for the conference's first;
/// a number not seen yet is waited for up to 5 s, then VC_RESULT_INVALID_ARGUMENT). Refusals:
/// `not_registered`, `conf_unknown` (the conference is gone), `conf_forbidden` (not a member, or
/// moderation mode), `conf_invalid` (not open, its deadline passed, or already voted), and the
/// conference codes of the conventions.
///
/// # Safety
/// Pointers: `conference` required.
#[no_mangle]
pub unsafe extern "C" fn vc_conference_vote(
    conference: *const vc_conference,
    proposal: u64,
    approve: bool,
) -> vc_result {
    boundary(|| {
        done((|| {
            // SAFETY: forwarded caller promise.
            let c = unsafe { live(conference)? };
            block_on(c.vote(proposal, approve))?.map_err(sdk_error)
        })())
    })
}

/// Fills `*out` with the policy in force.
///
/// # Safety
/// Pointers: `conference` required; `out` required.
#[no_mangle]
pub unsafe extern "C" fn vc_conference_get_policy(
    conference: *const vc_conference,
    out: *mut vc_conference_policy,
) -> vc_result {
    boundary(|| {
        done((|| {
            required(out, "out")?;
            // SAFETY: forwarded caller promise.
            let c = unsafe { live(conference)? };
            // SAFETY: checked non-NULL; writable by the caller's promise.
            unsafe { *out = (&c.policy()).into() };
            Ok(())
        })())
    })
}

/// Writes the roster (member ids in join order, separated by '\n') into `buf` (capacity `cap`)
/// as text out: on VC_RESULT_BUFFER_TOO_SMALL `*out_len` is the capacity needed, NUL included.
///
/// # Safety
/// Pointers: `conference` required; `buf` required unless `cap` is 0; `out_len` optional (NULL:
/// no length reported).
#[no_mangle]
pub unsafe extern "C" fn vc_conference_roster(
    conference: *const vc_conference,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> vc_result {
    boundary(|| {
        done((|| {
            // SAFETY: forwarded caller promise.
            let c = unsafe { live(conference)? };
            let list: Vec<String> = c.roster().into_iter().map(|m| m.id).collect();
            // SAFETY: forwarded caller promises.
            unsafe { write_text(&list.join("\n"), buf, cap, out_len, "buf") }
        })())
    })
}

fn stream(value: u32) -> Result<vcsdk::media::Stream, vc_result> {
    u8::try_from(value)
        .ok()
        .and_then(vcsdk::media::Stream::from_u8)
        .ok_or_else(|| {
            fail(
                vc_result::VC_RESULT_INVALID_ARGUMENT,
                format!(
                    "stream {value} is not a vc_stream (0 audio, 1 video, 2 data, 3 signalling)"
                ),
            )
        })
}

/// Sends `data` (`len` bytes) as one frame of `stream_id` (a vc_stream) to every other member,
/// protected as the policy says. VC_RESULT_CONNECTION before the first epoch's keys arrived.
///
/// # Safety
/// Pointers: `conference` required; `data` required unless `len` is 0.
#[no_mangle]
pub unsafe extern "C" fn vc_conference_send(
    conference: *const vc_conference,
    stream_id: u32,
    data: *const u8,
    len: usize,
) -> vc_result {
    boundary(|| {
        done((|| {
            // SAFETY: forwarded caller promises.
            let (c, data) = unsafe { (live(conference)?, input(data, len, "data")?) };
            let stream = stream(stream_id)?;
            block_on_media(c.send(stream, data))?.map_err(sdk_error)
        })())
    })
}

/// Receives the next frame from another member into `buf` (capacity `cap`): its length goes
/// into `*out_len`, its stream into `*out_stream` and its sender's member index into
/// `*out_sender`. Waits up to `timeout_ms` (0: only a frame already waiting), then
/// VC_RESULT_TIMEOUT. A frame larger than `cap` is not lost: it is kept for the next call, and
/// VC_RESULT_BUFFER_TOO_SMALL puts its length (the capacity needed; frames are bytes, with no
/// NUL) in `*out_len`.
///
/// # Safety
/// Pointers: `conference` required; `buf` required unless `cap` is 0; `out_len` required;
/// `out_stream` and `out_sender` optional (NULL: not reported).
#[no_mangle]
pub unsafe extern "C" fn vc_conference_receive(
    conference: *const vc_conference,
    timeout_ms: u32,
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
    out_stream: *mut u32,
    out_sender: *mut u16,
) -> vc_result {
    boundary(|| {
        done((|| {
            required(out_len, "out_len")?;
            // SAFETY: forwarded caller promises.
            let (handle, buf) =
                unsafe { (handle(conference, "conference")?, output(buf, cap, "buf")?) };
            let c = &handle.conference;
            let mut pending = handle.pending.lock().unwrap_or_else(|p| p.into_inner());
            let frame = match pending.take().or_else(|| c.try_recv()) {
                Some(f) => f,
                None if timeout_ms == 0 => {
                    crate::runtime::check_running()?;
                    return Err(fail(vc_result::VC_RESULT_TIMEOUT, "no frame waiting"));
                }
                None => {
                    let wait = Duration::from_millis(timeout_ms.into());
                    block_on_media(async { tokio::time::timeout(wait, c.recv()).await })?
                        .map_err(|_| {
                            fail(
                                vc_result::VC_RESULT_TIMEOUT,
                                format!("no frame within {timeout_ms} ms"),
                            )
                        })?
                        .ok_or_else(|| {
                            fail(vc_result::VC_RESULT_CLOSED, "the conference media stopped")
                        })?
                }
            };
            // SAFETY: checked non-NULL; writable by the caller's promise.
            unsafe { *out_len = frame.data.len() };
            if frame.data.len() > buf.len() {
                let needed = frame.data.len();
                *pending = Some(frame);
                return Err(fail(
                    vc_result::VC_RESULT_BUFFER_TOO_SMALL,
                    format!("the frame has {needed} bytes; the buffer holds {cap}"),
                ));
            }
            buf[..frame.data.len()].copy_from_slice(&frame.data);
            if !out_stream.is_null() {
                // SAFETY: non-NULL; writable by the caller's promise.
                unsafe { *out_stream = frame.stream as u32 };
            }
            if !out_sender.is_null() {
                // SAFETY: non-NULL; writable by the caller's promise.
                unsafe { *out_sender = frame.sender };
            }
            Ok(())
        })())
    })
}

/// Fills `*out` with the conference's statistics.
///
/// # Safety
/// Pointers: `conference` required; `out` required.
#[no_mangle]
pub unsafe extern "C" fn vc_conference_get_stats(
    conference: *const vc_conference,
    out: *mut vc_conference_stats,
) -> vc_result {
    boundary(|| {
        done((|| {
            required(out, "out")?;
            // SAFETY: forwarded caller promise.
            let c = unsafe { live(conference)? };
            let s = c.stats();
            let t = c.timings();
            let count = |f: fn(&Option<MediaPath>) -> bool| {
                s.peers.iter().filter(|p| f(&p.path)).count() as u32
            };
            let value = vc_conference_stats {
                epoch: c.epoch(),
                peers: s.peers.len() as u32,
                peers_direct: count(|p| matches!(p, Some(MediaPath::Direct(_)))),
                peers_relayed: count(|p| matches!(p, Some(MediaPath::Relay(_)))),
                frames_sent: s.frames_sent,
                frames_received: s.frames_received,
                bytes_received: s.bytes_received,
                frames_lost: s.frames_lost,
                replays_refused: s.replays_refused,
                auth_failures: s.auth_failures,
                unknown_key: s.unknown_key,
                foreign_packets: s.foreign_packets,
                plain_refused: s.plain_refused,
                last_bundle_micros: t.last_bundle_micros,
                last_bundle_bytes: t.last_bundle_bytes as u64,
            };
            // SAFETY: checked non-NULL; writable by the caller's promise.
            unsafe { *out = value };
            Ok(())
        })())
    })
}
