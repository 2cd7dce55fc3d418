//! Conferences on the server: it sequences each conference's signed control messages (after
//! checking them with the same rules every member applies, so honest members never see an entry
//! they must refuse), delivers them in order to the members, hands each member its own wrap of a
//! new epoch, delivers invitations, relays the members' sealed media addresses and their media
//! (a per-conference relay leg per member), bills every participant for its own time, and signs
//! the entries only it can know: a member whose connection is gone (disconnect, keepalive
//! timeout, insufficient credit) and a vote whose deadline passed. It holds no group key: the
//! wraps are sealed to the members' keys.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use vcsdk::conference::entry::{
    sha256_hex, Body, Content, Entry, Sequenced, CONFERENCE_VERSION, MAX_ENTRY_ENCODED,
    SERVER_AUTHOR,
};
use vcsdk::conference::state::{Change, ConferenceState, Verifier};
use vcsdk::proto::signal::{Event, ServerMessage, WrapDelivery, MAX_CONF_PAGE_BYTES, MAX_WRAP_HEX};
use vcsdk::util::unhex;

use crate::hub::{
    deliverable, is_online_locked, now_ms, receipt_request, relay_address_locked,
    send_device_locked, send_frame_device_locked, send_locked, Billed, Hub, Refusal, State,
};
use vcsdk::billing::ReceiptKind;

/// Most bytes of entries one conference's log may hold.
pub const MAX_LOG_BYTES: usize = 4 << 20;
/// Most conferences one user may be in at once.
pub const MAX_CONFERENCES_PER_USER: usize = 16;
/// Most conferences on one server.
pub const MAX_CONFERENCES: usize = 10_000;
/// Why members depart when the creator who pays for them leaves.
const PAYER_LEFT: &str = "the member who pays for this conference left";

/// One member's time being billed.
pub(crate) struct Participation {
    /// The call record of it.
    pub record: String,
    /// Who pays.
    pub payer: String,
    /// The payer's device in the conference, which its receipts and warnings go to.
    pub payer_conn: Option<u64>,
    /// The callee field of the record (`conf:<id>`, or `conf:<id>:<member>` when another pays).
    pub callee: String,
    /// The debiting task.
    pub billing: tokio::task::JoinHandle<()>,
}

/// The wraps the distributor sent for the next epoch.
pub(crate) struct PendingWraps {
    epoch: u32,
    author: String,
    wraps: HashMap<u16, String>,
}

/// A conference the server sequences.
pub(crate) struct Conf {
    pub state: ConferenceState,
    log: Vec<Sequenced>,
    log_bytes: usize,
    wraps: Option<PendingWraps>,
    pub participations: HashMap<String, Participation>,
    creator: String,
    server_counter: u64,
}

/// What an entry costs in a page of the log or an event: its encoded size and a comma.
fn entry_size(s: &Sequenced) -> usize {
    s.encoded_len().saturating_add(1)
}

fn conf_refusal(code: &str, message: String) -> Refusal {
    let code = match code {
        "malformed" => "conf_malformed",
        "signature" => "conf_signature",
        "replay" => "conf_replay",
        "stale" => "conf_stale",
        "forbidden" => "conf_forbidden",
        "order" => "conf_order",
        _ => "conf_invalid",
    };
    Refusal::new(code, message)
}

/// The device (connection) of `member` that joined `conf`.
fn conf_device(state: &State, member: &str, conf: &str) -> Option<u64> {
    state.conf_of.get(member).and_then(|m| m.get(conf)).copied()
}

/// A participation belongs to the device that joined: the user's other devices are refused
/// (`conf_other_device`) for that conference.
fn check_conf_device(state: &State, user: &str, conn_id: u64, conf: &str) -> Result<(), Refusal> {
    match conf_device(state, user, conf) {
        Some(device) if device != conn_id => Err(Refusal::new(
            "conf_other_device",
            format!(
                "you are in conference {conf} on another device; leave it there (or disconnect \
                 that device) first"
            ),
        )),
        _ => Ok(()),
    }
}

/// Queues `message` for the device of `member` in `conf` (nothing if it has none).
fn send_conf_locked(state: &mut State, conf: &str, member: &str, message: &ServerMessage) {
    if let Some(device) = conf_device(state, member, conf) {
        send_device_locked(state, member, device, message);
    }
}

fn valid_conf_id(conf: &str) -> bool {
    conf.len() == 32
        && conf
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Hub {
    /// conf_post: checks and sequences a member's entry, sent from device `conn_id`; returns its
    /// sequence number. A join binds the participation to that device.
    pub fn conf_post(
        self: &Arc<Self>,
        user: &str,
        conn_id: u64,
        conf: &str,
        entry: Entry,
    ) -> Result<u64, Refusal> {
        let opened = entry
            .open()
            .map_err(|e| Refusal::new("conf_malformed", e.to_string()))?;
        if opened.content.author != user {
            return Err(Refusal::new(
                "forbidden_src",
                format!(
                    "you are {user}; the entry is signed as {}",
                    opened.content.author
                ),
            ));
        }
        if opened.content.conf != conf {
            return Err(Refusal::new(
                "conf_malformed",
                "the entry names another conference",
            ));
        }
        let mut state = self.lock();
        check_conf_device(&state, user, conn_id, conf)?;
        let creating = matches!(opened.content.body, Body::Create { .. });
        // Every check first: a refused entry leaves nothing behind.
        if creating {
            if !valid_conf_id(conf) {
                return Err(Refusal::new(
                    "conf_malformed",
                    "a conference id is 32 lowercase hex digits (128 random bits)",
                ));
            }
            if state.conferences.contains_key(conf) {
                return Err(Refusal::new(
                    "conf_exists",
                    format!("conference {conf} exists"),
                ));
            }
            if state.conferences.len() >= MAX_CONFERENCES {
                return Err(Refusal::new(
                    "conf_full",
                    "the server holds too many conferences",
                ));
            }
        } else if !state.conferences.contains_key(conf) {
            return Err(Refusal::new(
                "conf_unknown",
                format!("no conference {conf}"),
            ));
        }
        if matches!(opened.content.body, Body::Create { .. } | Body::Join { .. })
            && state.conf_of.get(user).map_or(0, |s| s.len()) >= MAX_CONFERENCES_PER_USER
        {
            return Err(Refusal::new(
                "conf_full",
                format!("you are in {MAX_CONFERENCES_PER_USER} conferences already"),
            ));
        }
        if let Body::Invite { invitee, .. } = &opened.content.body {
            if !is_online_locked(&state, invitee) {
                return Err(Refusal::new(
                    "user_offline",
                    format!("{invitee} is not online"),
                ));
            }
            self.check_billed_invite_locked(&state, conf, user)?;
        }
        if creating {
            state.conferences.insert(
                conf.to_owned(),
                Conf {
                    state: ConferenceState::new(conf),
                    log: Vec::new(),
                    log_bytes: 0,
                    wraps: None,
                    participations: HashMap::new(),
                    creator: user.to_owned(),
                    server_counter: 0,
                },
            );
        }
        let result = self.sequence_locked(&mut state, conf, entry, Some((user, conn_id)));
        if result.is_err() && creating {
            state.conferences.remove(conf);
        }
        result
    }

    /// Whether the conferences' creators pay for every member's time.
    fn creator_pays(&self) -> bool {
        self.config.billing.conference_payer == "creator"
    }

    /// Where the creator pays for everyone, only the creator may bring in someone it pays for.
    fn check_billed_invite_locked(
        &self,
        state: &State,
        conf: &str,
        user: &str,
    ) -> Result<(), Refusal> {
        let creator = state.conferences.get(conf).map(|c| c.creator.as_str());
        if self.creator_pays() && creator != Some(user) {
            return Err(Refusal::new(
                "conf_forbidden",
                "the creator pays for this conference: only the creator invites",
            ));
        }
        Ok(())
    }

    /// conf_wraps: the distributor's wraps of the next epoch, kept until its bundle.
    pub fn conf_wraps(
        &self,
        user: &str,
        conn_id: u64,
        conf: &str,
        epoch: u32,
        wraps: Vec<WrapDelivery>,
    ) -> Result<(), Refusal> {
        let mut state = self.lock();
        check_conf_device(&state, user, conn_id, conf)?;
        let c = state
            .conferences
            .get_mut(conf)
            .ok_or_else(|| Refusal::new("conf_unknown", format!("no conference {conf}")))?;
        if c.state.distributor() != Some(user) {
            return Err(Refusal::new(
                "conf_forbidden",
                "only the distributor sends wraps",
            ));
        }
        if Some(epoch) != c.state.epoch().checked_add(1) {
            return Err(Refusal::new(
                "conf_stale",
                format!(
                    "wraps for epoch {epoch}; the next is {}",
                    c.state.epoch() + 1
                ),
            ));
        }
        let me = c.state.member(user).map(|m| m.index);
        for w in &wraps {
            if Some(w.member) == me || c.state.member_at(w.member).is_none() {
                return Err(Refusal::new(
                    "conf_invalid",
                    format!("member {} is not another member", w.member),
                ));
            }
            if w.wrap.len() > MAX_WRAP_HEX || unhex(&w.wrap).is_none() {
                return Err(Refusal::new(
                    "conf_invalid",
                    format!(
                        "the wrap of member {} is not hex of at most {} bytes",
                        w.member,
                        MAX_WRAP_HEX / 2
                    ),
                ));
            }
        }
        let pending = match c.wraps.take() {
            Some(p) if p.epoch == epoch && p.author == user => p,
            _ => PendingWraps {
                epoch,
                author: user.to_owned(),
                wraps: HashMap::new(),
            },
        };
        let mut pending = pending;
        for w in wraps {
            pending.wraps.insert(w.member, w.wrap);
        }
        c.wraps = Some(pending);
        Ok(())
    }

    /// conf_log: a page of the log after `after`, for a member.
    pub fn conf_log(
        &self,
        user: &str,
        conn_id: u64,
        conf: &str,
        after: Option<u64>,
    ) -> Result<(Vec<Sequenced>, Option<u64>), Refusal> {
        let state = self.lock();
        check_conf_device(&state, user, conn_id, conf)?;
        let c = state
            .conferences
            .get(conf)
            .ok_or_else(|| Refusal::new("conf_unknown", format!("no conference {conf}")))?;
        if c.state.member(user).is_none() {
            return Err(Refusal::new(
                "conf_not_member",
                format!("you are not a member of conference {conf}"),
            ));
        }
        let start = after.map_or(0, |a| a as usize + 1).min(c.log.len());
        let (page, more) = page(&c.log[start..]);
        let next = more.then(|| page.last().map_or(0, |s| s.seq));
        Ok((page, next))
    }

    /// conf_signal: an opaque message from a member to one member, or to every other member.
    pub fn conf_signal(
        &self,
        user: &str,
        conn_id: u64,
        conf: &str,
        to: Option<String>,
        payload: String,
    ) -> Result<(), Refusal> {
        let mut state = self.lock();
        check_conf_device(&state, user, conn_id, conf)?;
        let c = state
            .conferences
            .get(conf)
            .ok_or_else(|| Refusal::new("conf_unknown", format!("no conference {conf}")))?;
        if c.state.member(user).is_none() {
            return Err(Refusal::new(
                "conf_not_member",
                format!("you are not a member of conference {conf}"),
            ));
        }
        let recipients: Vec<String> = match &to {
            Some(to) if to != user && c.state.member(to).is_some() => vec![to.clone()],
            Some(to) => {
                return Err(Refusal::new(
                    "conf_not_member",
                    format!("{to} is not another member"),
                ))
            }
            None => c
                .state
                .members()
                .iter()
                .filter(|m| m.id != user)
                .map(|m| m.id.clone())
                .collect(),
        };
        let frame = deliverable(&ServerMessage::Event {
            event: Event::ConfSignal {
                conf: conf.to_owned(),
                from: user.to_owned(),
                payload,
            },
        })?;
        for r in recipients {
            if let Some(device) = conf_device(&state, &r, conf) {
                send_frame_device_locked(&mut state, &r, device, frame.clone());
            }
        }
        Ok(())
    }

    /// A member is gone (unregistered): the server signs its departure from every conference
    /// it is in, whichever device joined it, and the groups rekey.
    pub(crate) fn conf_depart_all_locked(&self, state: &mut State, user: &str, reason: &str) {
        let confs: Vec<String> = state
            .conf_of
            .get(user)
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        for conf in confs {
            self.conf_departed_locked(state, &conf, user, reason);
        }
    }

    /// Device `conn_id` of a member is gone: the server signs the member's departure from the
    /// conferences that device joined (not those of its other devices), and the groups rekey.
    pub(crate) fn conf_depart_device_locked(
        &self,
        state: &mut State,
        user: &str,
        conn_id: u64,
        reason: &str,
    ) {
        let confs: Vec<String> = state
            .conf_of
            .get(user)
            .map(|s| {
                s.iter()
                    .filter(|(_, device)| **device == conn_id)
                    .map(|(conf, _)| conf.clone())
                    .collect()
            })
            .unwrap_or_default();
        for conf in confs {
            self.conf_departed_locked(state, &conf, user, reason);
        }
    }

    /// Signs `member`'s departure from `conf`.
    pub(crate) fn conf_departed_locked(
        &self,
        state: &mut State,
        conf: &str,
        member: &str,
        reason: &str,
    ) {
        let body = Body::Departed {
            member: member.to_owned(),
            reason: reason.to_owned(),
        };
        if let Err(r) = self.post_server_locked(state, conf, body) {
            tracing::warn!(conf, member, "departure not sequenced: {}", r.message);
            // Never leave a binding to a device behind.
            if let Some(set) = state.conf_of.get_mut(member) {
                set.remove(conf);
                if set.is_empty() {
                    state.conf_of.remove(member);
                }
            }
        }
    }

    /// Ends `member`'s participation in `conf` ("insufficient credit").
    pub(crate) fn conf_departed(&self, conf: &str, member: &str, reason: &str) {
        let mut state = self.lock();
        self.conf_departed_locked(&mut state, conf, member, reason);
    }

    /// The deadline of proposal number `number` passed: the server says so if it is still open.
    fn conf_expire(&self, conf: &str, number: u64) {
        let mut state = self.lock();
        let open = state
            .conferences
            .get(conf)
            .and_then(|c| c.state.proposal())
            .filter(|p| p.number == number)
            .map(|p| p.seq);
        if let Some(proposal) = open {
            if let Err(r) = self.post_server_locked(&mut state, conf, Body::Expired { proposal }) {
                tracing::warn!(conf, "expiry not sequenced: {}", r.message);
            }
        }
    }

    /// Signs and sequences an entry of the server's own.
    fn post_server_locked(
        &self,
        state: &mut State,
        conf: &str,
        body: Body,
    ) -> Result<u64, Refusal> {
        let identity = self.server_identity();
        let Some(c) = state.conferences.get_mut(conf) else {
            return Err(Refusal::new(
                "conf_unknown",
                format!("no conference {conf}"),
            ));
        };
        let counter = c.server_counter.max(now_ms() as u64) + 1;
        c.server_counter = counter;
        let content = Content {
            version: CONFERENCE_VERSION,
            conf: conf.to_owned(),
            author: SERVER_AUTHOR.to_owned(),
            counter,
            epoch: c.state.epoch(),
            roster: c.state.roster_hash_hex(),
            body,
        };
        let identity = identity.ok_or_else(|| Refusal::new("internal", "no server identity"))?;
        let entry = Entry::sign(&identity, &content)
            .map_err(|e| Refusal::new("internal", e.to_string()))?;
        self.sequence_locked(state, conf, entry, None)
    }

    /// Admits an entry into `conf`'s log with the members' rules, then delivers it and acts on
    /// what it changed. `poster` is the member and device that sent it (none: the server's own);
    /// a member it makes join is bound to that device.
    fn sequence_locked(
        &self,
        state: &mut State,
        conf: &str,
        entry: Entry,
        poster: Option<(&str, u64)>,
    ) -> Result<u64, Refusal> {
        let check = self
            .certificate_check()
            .ok_or_else(|| Refusal::new("internal", "the server is not serving yet"))?;
        let server_name = self.server_name();
        let c = state
            .conferences
            .get_mut(conf)
            .ok_or_else(|| Refusal::new("conf_unknown", format!("no conference {conf}")))?;
        let sequenced = Sequenced {
            seq: c.state.next_seq(),
            at_ms: now_ms(),
            entry,
        };
        // Never sequence what cannot be delivered: the bound is the size as it travels.
        let size = entry_size(&sequenced);
        if size > MAX_ENTRY_ENCODED {
            return Err(Refusal::new(
                "conf_too_large",
                format!(
                    "the entry is {size} bytes once encoded; at most {MAX_ENTRY_ENCODED} can be delivered"
                ),
            ));
        }
        if c.log_bytes + size > MAX_LOG_BYTES {
            return Err(Refusal::new(
                "conf_full",
                "the conference's log is full; start a new conference",
            ));
        }
        let opened = sequenced
            .entry
            .open()
            .map_err(|e| Refusal::new("conf_malformed", e.to_string()))?;
        // A bundle needs every wrap it names, delivered before it.
        let mut wraps_to_send = Vec::new();
        if let Body::Bundle { epoch, wraps, .. } = &opened.content.body {
            let pending = c
                .wraps
                .as_ref()
                .filter(|p| p.epoch == *epoch && p.author == opened.content.author);
            for w in wraps {
                let wrap = pending
                    .and_then(|p| p.wraps.get(&w.member))
                    .filter(|hex_wrap| {
                        unhex(hex_wrap).is_some_and(|bytes| sha256_hex(&bytes) == w.hash)
                    });
                match (wrap, c.state.member_at(w.member)) {
                    (Some(wrap), Some(m)) => wraps_to_send.push((m.id.clone(), wrap.clone())),
                    _ => {
                        return Err(Refusal::new(
                            "conf_wraps_missing",
                            format!(
                                "send the wrap of member {} (conf_wraps) before the bundle",
                                w.member
                            ),
                        ))
                    }
                }
            }
        }
        let before: Vec<String> = c.state.members().iter().map(|m| m.id.clone()).collect();
        let verifier = Verifier {
            check: &check,
            server_name: server_name.as_deref(),
            live: true,
        };
        let changes = c
            .state
            .admit(&sequenced, &verifier)
            .map_err(|r| conf_refusal(r.code, r.to_string()))?;
        let seq = sequenced.seq;
        c.log_bytes += size;
        c.log.push(sequenced.clone());
        if matches!(opened.content.body, Body::Bundle { .. }) {
            c.wraps = None;
        }
        let after: Vec<String> = c.state.members().iter().map(|m| m.id.clone()).collect();
        let joined: Vec<String> = changes
            .iter()
            .filter_map(|ch| match ch {
                Change::Joined { member, .. } if !before.contains(member) => Some(member.clone()),
                _ => None,
            })
            .collect();
        let epoch = c.state.epoch();
        // A newcomer's participation belongs to the device that joined.
        for member in &joined {
            let device = match poster {
                Some((who, conn)) if who == member => Some(conn),
                _ => state
                    .peers
                    .get(member)
                    .and_then(|d| d.keys().next().copied()),
            };
            if let Some(device) = device {
                state
                    .conf_of
                    .entry(member.clone())
                    .or_default()
                    .insert(conf.to_owned(), device);
            }
        }
        // Delivery: wraps first, then the entry to everyone who was or is a member; a newcomer
        // gets the whole log instead.
        for (member, wrap) in wraps_to_send {
            send_conf_locked(
                state,
                conf,
                &member,
                &ServerMessage::Event {
                    event: Event::ConfWrap {
                        conf: conf.to_owned(),
                        epoch,
                        wrap,
                    },
                },
            );
        }
        let one = ServerMessage::Event {
            event: Event::ConfEntries {
                conf: conf.to_owned(),
                entries: vec![sequenced.clone()],
            },
        };
        let mut recipients = before.clone();
        recipients.extend(after.iter().filter(|m| !before.contains(m)).cloned());
        for member in &recipients {
            if joined.contains(member) {
                let log = state
                    .conferences
                    .get(conf)
                    .map(|c| c.log.clone())
                    .unwrap_or_default();
                let mut rest = &log[..];
                while !rest.is_empty() {
                    let (page, _) = page(rest);
                    rest = &rest[page.len()..];
                    send_conf_locked(
                        state,
                        conf,
                        member,
                        &ServerMessage::Event {
                            event: Event::ConfEntries {
                                conf: conf.to_owned(),
                                entries: page,
                            },
                        },
                    );
                }
            } else {
                send_conf_locked(state, conf, member, &one);
            }
        }
        if let Body::Invite { invitee, .. } = &opened.content.body {
            send_locked(
                state,
                invitee,
                &ServerMessage::Event {
                    event: Event::ConfInvitation {
                        conf: conf.to_owned(),
                        invite: sequenced.clone(),
                    },
                },
            );
        }
        let payer_left = self.creator_pays()
            && state.conferences.get(conf).is_some_and(|c| {
                changes
                    .iter()
                    .any(|ch| matches!(ch, Change::Left { member, .. } if *member == c.creator))
            });
        for change in changes {
            self.conf_change_locked(state, conf, change);
        }
        if payer_left {
            self.end_for_payer_locked(state, conf);
        }
        Ok(seq)
    }

    /// The creator who pays for everyone left: nobody is billed to it any more, so the conference
    /// ends — every remaining member departs (its time charged up to now).
    fn end_for_payer_locked(&self, state: &mut State, conf: &str) {
        let remaining: Vec<String> = state
            .conferences
            .get(conf)
            .map(|c| c.state.members().iter().map(|m| m.id.clone()).collect())
            .unwrap_or_default();
        for member in remaining {
            self.end_participation_locked(state, conf, &member, PAYER_LEFT);
            self.conf_departed_locked(state, conf, &member, PAYER_LEFT);
        }
    }

    /// Acts on one change of a conference: billing, relay legs, vote deadlines, the end.
    fn conf_change_locked(&self, state: &mut State, conf: &str, change: Change) {
        match change {
            Change::Joined { member, index } => {
                self.start_participation_locked(state, conf, &member);
                self.offer_conf_relay_locked(state, conf, &member, index);
                tracing::info!(conf, %member, index, "joined conference");
            }
            Change::Left { member, reason, .. } => {
                self.end_participation_locked(state, conf, &member, &reason);
                if let Some(set) = state.conf_of.get_mut(&member) {
                    set.remove(conf);
                    if set.is_empty() {
                        state.conf_of.remove(&member);
                    }
                }
                if let Some(relay) = &state.media_relay {
                    relay.close_member(conf, &member);
                }
                tracing::info!(conf, %member, %reason, "left conference");
            }
            Change::ProposalOpened {
                proposal,
                deadline_ms,
                ..
            } => {
                let hub = self.weak();
                let conf = conf.to_owned();
                let wait = Duration::from_millis((deadline_ms - now_ms()).max(0) as u64 + 50);
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    if let Some(hub) = hub.upgrade() {
                        hub.conf_expire(&conf, proposal);
                    }
                });
            }
            Change::EpochStarted { epoch, .. } => {
                tracing::debug!(conf, epoch, "conference epoch");
            }
            Change::Ended => {
                if let Some(c) = state.conferences.remove(conf) {
                    for (member, p) in c.participations {
                        p.billing.abort();
                        tracing::warn!(conf, %member, "participation left open at the end");
                    }
                }
                if let Some(relay) = &state.media_relay {
                    relay.close_group(conf);
                }
                tracing::info!(conf, "conference ended");
            }
            _ => {}
        }
    }

    fn start_participation_locked(&self, state: &mut State, conf: &str, member: &str) {
        let Some(c) = state.conferences.get_mut(conf) else {
            return;
        };
        let participant_pays = self.config.billing.conference_payer == "participant";
        let (payer, callee) = if participant_pays || c.creator == member {
            (member.to_owned(), format!("conf:{conf}"))
        } else {
            (c.creator.clone(), format!("conf:{conf}:{member}"))
        };
        let payer_conn = conf_device(state, &payer, conf);
        let Some(c) = state.conferences.get_mut(conf) else {
            return;
        };
        let record = crate::hub::new_call_id();
        let at = now_ms();
        self.store.call_requested(&record, &payer, &callee, at);
        self.store
            .call_answered(&record, at, &self.config.billing.tariff);
        let billing = tokio::spawn(crate::hub::bill_call(
            self.weak(),
            record.clone(),
            payer.clone(),
            Billed::Participation {
                conf: conf.to_owned(),
                member: member.to_owned(),
            },
        ));
        c.participations.insert(
            member.to_owned(),
            Participation {
                record: record.clone(),
                payer: payer.clone(),
                payer_conn,
                callee: callee.clone(),
                billing,
            },
        );
        let receipt = receipt_request(ReceiptKind::Answer, &record, &payer, &callee, at);
        if let Some(device) = payer_conn {
            send_device_locked(state, &payer, device, &receipt);
        }
    }

    pub(crate) fn end_participation_locked(
        &self,
        state: &mut State,
        conf: &str,
        member: &str,
        reason: &str,
    ) {
        let Some(p) = state
            .conferences
            .get_mut(conf)
            .and_then(|c| c.participations.remove(member))
        else {
            return;
        };
        p.billing.abort();
        state.warned.remove(&p.record);
        let at = now_ms();
        self.store
            .call_ended(&p.record, at, crate::store::Disposition::Answered, reason);
        let receipt = receipt_request(ReceiptKind::End, &p.record, &p.payer, &p.callee, at);
        if let Some(device) = p.payer_conn {
            send_device_locked(state, &p.payer, device, &receipt);
        }
    }

    /// Opens a relay leg for `member` of `conf` and tells it where and with which token.
    fn offer_conf_relay_locked(&self, state: &mut State, conf: &str, member: &str, index: u16) {
        let Some(relay) = state.media_relay.clone() else {
            return;
        };
        let (token, secret) = relay.open_member(conf, member, index);
        let device = conf_device(state, member, conf);
        let address = relay_address_locked(state, &relay, member, device);
        send_conf_locked(
            state,
            conf,
            member,
            &ServerMessage::Event {
                event: Event::ConfRelay {
                    conf: conf.to_owned(),
                    address: address.to_string(),
                    token: token.to_hex(),
                    secret: secret.to_hex(),
                },
            },
        );
    }

    /// Ends every participation ("server shutdown"); the conferences end with the process.
    pub(crate) fn conf_shutdown_locked(&self, state: &mut State) {
        let all: Vec<(String, String)> = state
            .conferences
            .iter()
            .flat_map(|(conf, c)| {
                c.participations
                    .keys()
                    .map(move |m| (conf.clone(), m.clone()))
            })
            .collect();
        for (conf, member) in all {
            self.end_participation_locked(state, &conf, &member, "server shutdown");
        }
    }
}

/// The longest prefix of `entries` within one page (at least one entry), and whether more follow.
fn page(entries: &[Sequenced]) -> (Vec<Sequenced>, bool) {
    let mut bytes = 0;
    let mut n = 0;
    for e in entries {
        let size = entry_size(e);
        if n > 0 && bytes + size > MAX_CONF_PAGE_BYTES {
            break;
        }
        bytes += size;
        n += 1;
    }
    (entries[..n].to_vec(), n < entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcsdk::proto::frame::{encode, MAX_FRAME};
    use vcsdk::proto::signal::Response;

    /// An entry whose content escapes badly (every quote doubles), sized to `encoded` bytes.
    fn entry_of(seq: u64, encoded: usize) -> Sequenced {
        let mut s = Sequenced {
            seq,
            at_ms: i64::MAX,
            entry: Entry {
                content: String::new(),
                certificate: "ab".repeat(600),
                signature: "cd".repeat(72),
            },
        };
        // Each quote is two bytes once escaped.
        let quotes = encoded.saturating_sub(s.encoded_len()) / 2;
        s.entry.content = "\"".repeat(quotes);
        assert!(s.encoded_len() <= encoded && s.encoded_len() + 2 > encoded);
        s
    }

    #[test]
    fn every_page_of_entries_the_server_may_sequence_fits_a_frame() {
        let conf = "0".repeat(32);
        for size in [2_000, 20_000, MAX_ENTRY_ENCODED - 10, MAX_ENTRY_ENCODED] {
            let log: Vec<Sequenced> = (0..12).map(|i| entry_of(u64::MAX - i, size)).collect();
            assert!(log.iter().all(|e| entry_size(e) <= MAX_ENTRY_ENCODED + 1));
            let mut rest = &log[..];
            while !rest.is_empty() {
                let (entries, more) = page(rest);
                rest = &rest[entries.len()..];
                let event = ServerMessage::Event {
                    event: Event::ConfEntries {
                        conf: conf.clone(),
                        entries: entries.clone(),
                    },
                };
                let response = ServerMessage::Response {
                    id: u64::MAX,
                    result: Response::ConfLog {
                        conf: conf.clone(),
                        entries,
                        next: more.then_some(u64::MAX),
                    },
                };
                for m in [event, response] {
                    let frame = encode(&m).unwrap_or_else(|e| panic!("entries of {size}: {e}"));
                    assert!(frame.len() - 4 <= MAX_FRAME);
                }
            }
        }
    }
}
