//! Who is online and what calls exist: the server's in-memory state, and every rule of
//! registration, presence and call routing. Persistence goes to [`Store`]; messages to clients go
//! to their bounded outbound queues (a client whose queue is full is disconnected as too slow, so it
//! never holds the others up).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::sync::{mpsc, watch};
use vcsdk::billing::{receipt_statement, ReceiptKind};
use vcsdk::identity::Identity;
use vcsdk::pki::{CertificateCheck, CertificateError, Usage};
use vcsdk::proto::frame;
use vcsdk::proto::signal::{
    Answer, CallState, DisconnectCode, Event, ServerMessage, UserPresence, PROTOCOL_VERSION,
};
use vcsdk::util::unix_now;

use crate::conference::Conf;
use crate::config::ServerConfig;
use crate::limits::KeyedBuckets;
use crate::relay::Relay;
use crate::store::{DebitOutcome, Disposition, Store};

/// A refusal sent to the client as an `error` with a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable code (docs/protocol.md).
    pub code: &'static str,
    /// What was wrong.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code` and `message`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// Why a connection is closed: the code on the wire and the words for people and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The code (`disconnect` `code`, version 2).
    pub code: DisconnectCode,
    /// The reason, in words.
    pub reason: String,
}

impl Close {
    /// A close for `code`, saying `reason`.
    pub fn new(code: DisconnectCode, reason: impl Into<String>) -> Close {
        Close {
            code,
            reason: reason.into(),
        }
    }
}

/// One connected client: a device of its user. A user may have several at once (up to
/// `max_devices_per_user`), each its own connection.
pub struct Peer {
    /// Distinguishes the connections (devices) of the same user.
    pub conn_id: u64,
    /// Its outbound frames.
    pub out: mpsc::Sender<Bytes>,
    /// Closing it: set why.
    pub kill: watch::Sender<Option<Close>>,
    /// The certificate it authenticated with.
    pub cert: CertificateDer<'static>,
    /// Whether it is a registered user.
    pub registered: bool,
    /// Connected since, Unix seconds.
    pub online_since: i64,
    /// Whether it receives presence events.
    pub presence: bool,
    /// The server address it connected to (for the relay address it is told).
    pub local_ip: Option<std::net::IpAddr>,
    /// The signalling protocol version it speaks (what it may be sent).
    pub protocol: u32,
}

struct Call {
    caller: String,
    /// The device (connection) that placed the call.
    caller_conn: u64,
    callee: String,
    /// The callee's device that answered it, once answered.
    callee_conn: Option<u64>,
    /// The callee's devices it rings (or rang) on.
    rung: Vec<u64>,
    /// Whether the callee was told of it (a busy callee never is).
    offered: bool,
    answered: bool,
    /// When it was answered, Unix ms (the time in the answer receipt).
    answered_at_ms: Option<i64>,
    /// The task debiting the payer while the call runs.
    billing: Option<tokio::task::JoinHandle<()>>,
    /// Whether the payer was warned of a low balance.
    warned: bool,
}

/// Everything the hub's lock guards.
#[derive(Default)]
pub(crate) struct State {
    /// Every user's connected devices, by connection id.
    pub(crate) peers: HashMap<String, BTreeMap<u64, Peer>>,
    calls: HashMap<String, Call>,
    /// The call each user is in (whichever device): a user is busy while any device is in one.
    call_of: HashMap<String, String>,
    shutting_down: bool,
    pub(crate) media_relay: Option<Arc<Relay>>,
    /// Conferences by id.
    pub(crate) conferences: HashMap<String, Conf>,
    /// The conferences each user is in, with the device (connection) that joined each.
    pub(crate) conf_of: HashMap<String, BTreeMap<String, u64>>,
    /// Conference participations whose payer was warned of a low balance.
    pub(crate) warned: HashSet<String>,
    /// Call attempts per user (each is a call record): whatever connections the user has.
    call_attempts: Option<KeyedBuckets<String>>,
}

/// What a running debit pays for.
#[derive(Debug, Clone)]
pub(crate) enum Billed {
    /// A two-party call (its record id is the call id).
    Call,
    /// A member's time in a conference.
    Participation {
        /// The conference.
        conf: String,
        /// The member.
        member: String,
    },
}

/// The server's own identity and certificate check, for the conference entries it checks and
/// signs.
#[derive(Default)]
struct Authority {
    identity: Option<Arc<Identity>>,
    check: Option<vcsdk::tls::SharedCheck>,
}

/// The shared state of a running server.
pub struct Hub {
    state: Mutex<State>,
    /// Durable state.
    pub store: Arc<Store>,
    /// Settings.
    pub config: Arc<ServerConfig>,
    next_conn: AtomicU64,
    authority: RwLock<Authority>,
    me: Weak<Hub>,
}

/// Unix milliseconds, now.
pub(crate) use vcsdk::util::unix_now_ms as now_ms;

pub(crate) fn new_call_id() -> String {
    let mut b = [0u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut b);
    vcsdk::util::hex(&b)
}

impl Hub {
    /// A hub over `store` with `config`.
    pub fn new(store: Arc<Store>, config: Arc<ServerConfig>) -> Arc<Self> {
        Arc::new_cyclic(|me| Hub {
            state: Mutex::new(State::default()),
            store,
            config,
            next_conn: AtomicU64::new(1),
            authority: RwLock::new(Authority::default()),
            me: me.clone(),
        })
    }

    /// The server's identity (it signs conference entries with it) and the certificate check it
    /// admits clients with (it checks conference entries with it).
    pub fn set_authority(&self, identity: Arc<Identity>, check: vcsdk::tls::SharedCheck) {
        let mut a = self.authority.write().unwrap_or_else(|p| p.into_inner());
        a.identity = Some(identity);
        a.check = Some(check);
    }

    /// Installs a renewed server identity.
    pub fn set_identity(&self, identity: Arc<Identity>) {
        self.authority
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .identity = Some(identity);
    }

    pub(crate) fn server_identity(&self) -> Option<Arc<Identity>> {
        self.authority
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .identity
            .clone()
    }

    /// The server's name, as clients check it in the entries it signs.
    pub(crate) fn server_name(&self) -> Option<String> {
        self.server_identity().map(|i| i.id().to_owned())
    }

    /// The current certificate check (pinned root and CRL), once serving.
    pub(crate) fn certificate_check(&self) -> Option<vcsdk::pki::CertificateCheck> {
        let a = self.authority.read().unwrap_or_else(|p| p.into_inner());
        a.check
            .as_ref()
            .map(|c| c.read().unwrap_or_else(|p| p.into_inner()).clone())
    }

    pub(crate) fn weak(&self) -> Weak<Hub> {
        self.me.clone()
    }

    /// Offers `relay` to the members of every call answered from now on.
    pub fn set_media_relay(&self, relay: Arc<Relay>) {
        self.lock().media_relay = Some(relay);
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Connections (devices of every user) open now.
    pub fn connected(&self) -> usize {
        self.lock().peers.values().map(BTreeMap::len).sum()
    }

    /// Admits a connection of `user` as one more of its devices (the others stay connected).
    /// Refused while shutting down, and with `too_many_devices` when the user already has
    /// `max_devices_per_user` connections.
    pub fn attach(&self, user: &str, peer: Peer) -> Result<(), Refusal> {
        let mut state = self.lock();
        if state.shutting_down {
            return Err(Refusal::new("shutting_down", "the server is shutting down"));
        }
        let cap = self.config.max_devices_per_user;
        let devices = state.peers.get(user).map_or(0, BTreeMap::len);
        if devices >= cap {
            return Err(Refusal::new(
                "too_many_devices",
                format!(
                    "{user} already has {devices} connections (devices) open, the most this \
                     server allows; close one first"
                ),
            ));
        }
        let was_online = is_online_locked(&state, user);
        let registered = peer.registered;
        state
            .peers
            .entry(user.to_owned())
            .or_default()
            .insert(peer.conn_id, peer);
        if registered && !was_online {
            broadcast_presence_locked(&mut state, user, true);
        }
        Ok(())
    }

    /// Forgets device `conn_id` of `user`, which closed for `reason`: the call it placed or
    /// answered ends, it stops ringing, it leaves the conferences it joined, and the user's
    /// presence goes offline when it was the last device.
    pub fn detach(&self, user: &str, conn_id: u64, reason: &str) {
        let mut state = self.lock();
        let Some(devices) = state.peers.get_mut(user) else {
            return;
        };
        let Some(gone) = devices.remove(&conn_id) else {
            return;
        };
        if devices.is_empty() {
            state.peers.remove(user);
        }
        device_left_call_locked(
            &mut state,
            &self.store,
            user,
            conn_id,
            &format!("{user} disconnected"),
        );
        self.conf_depart_device_locked(
            &mut state,
            user,
            conn_id,
            &format!("disconnected: {reason}"),
        );
        if gone.registered && !is_online_locked(&state, user) {
            broadcast_presence_locked(&mut state, user, false);
        }
    }

    /// Closes device `conn_id` of `user`, saying why.
    pub fn kill_device(&self, user: &str, conn_id: u64, close: Close) {
        if let Some(peer) = self.lock().peers.get(user).and_then(|d| d.get(&conn_id)) {
            let _ = peer.kill.send(Some(close));
        }
    }

    /// Whether `user` is registered (every device of it is, once one registered).
    pub fn is_registered(&self, user: &str) -> bool {
        is_online_locked(&self.lock(), user)
    }

    /// registerNewUser from device `conn_id`: records acceptance of `terms` durably, then shows
    /// the user online (every device of it is registered from then on).
    pub async fn register(&self, user: &str, conn_id: u64, terms: &str) -> Result<i64, Refusal> {
        if terms != self.config.terms_version {
            return Err(Refusal::new(
                "terms_mismatch",
                format!(
                    "the current terms of use are version {:?}; you accepted {terms:?}",
                    self.config.terms_version
                ),
            ));
        }
        let (serial, der) = {
            let state = self.lock();
            let peer = state
                .peers
                .get(user)
                .and_then(|d| d.get(&conn_id))
                .ok_or_else(|| Refusal::new("internal", "connection not attached"))?;
            let info = vcsdk::pki::CertificateInfo::parse(&peer.cert)
                .map_err(|e| Refusal::new("internal", e.to_string()))?;
            (info.serial, peer.cert.to_vec())
        };
        let now = unix_now();
        let billing = &self.config.billing;
        let registered_at = self
            .store
            .register(
                user,
                &serial,
                &der,
                terms,
                now,
                &billing.default_account_type,
                billing.default_credit_limit,
            )
            .await
            .map_err(|e| Refusal::new(e.code, e.message))?;
        let mut state = self.lock();
        let was_online = is_online_locked(&state, user);
        if let Some(devices) = state.peers.get_mut(user) {
            for peer in devices.values_mut() {
                peer.registered = true;
            }
        }
        if !was_online && is_online_locked(&state, user) {
            broadcast_presence_locked(&mut state, user, true);
        }
        tracing::info!(%user, terms, "registered");
        Ok(registered_at)
    }

    /// unregister: ends the user's calls, takes every device of it out of its conferences, and
    /// shows it offline.
    pub async fn unregister(&self, user: &str) -> Result<(), Refusal> {
        self.store
            .unregister(user, unix_now())
            .await
            .map_err(|e| Refusal::new(e.code, e.message))?;
        let mut state = self.lock();
        end_calls_locked(
            &mut state,
            &self.store,
            user,
            &format!("{user} unregistered"),
        );
        self.conf_depart_all_locked(&mut state, user, "unregistered");
        let was_online = is_online_locked(&state, user);
        if let Some(devices) = state.peers.get_mut(user) {
            for peer in devices.values_mut() {
                peer.registered = false;
            }
        }
        if was_online {
            broadcast_presence_locked(&mut state, user, false);
        }
        tracing::info!(%user, "unregistered");
        Ok(())
    }

    /// getActiveUsers: registered users online now (on any device), by id, at most `limit` after
    /// `after`; and the `after` of the next page when there is one. A user's `online_since` is
    /// when its earliest device still connected connected.
    pub fn active_users(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<UserPresence>, Option<String>) {
        let state = self.lock();
        let mut users: Vec<UserPresence> = state
            .peers
            .iter()
            .filter(|(user, _)| after.is_none_or(|a| user.as_str() > a))
            .filter_map(|(user, devices)| {
                let since = devices
                    .values()
                    .filter(|p| p.registered)
                    .map(|p| p.online_since)
                    .min()?;
                Some(UserPresence {
                    user: user.clone(),
                    online_since: since,
                })
            })
            .collect();
        drop(state);
        users.sort_by(|a, b| a.user.cmp(&b.user));
        let next = (users.len() > limit).then(|| users[limit - 1].user.clone());
        users.truncate(limit);
        (users, next)
    }

    /// Sends presence events to device `conn_id` of `user` from now on.
    pub fn subscribe_presence(&self, user: &str, conn_id: u64) {
        if let Some(peer) = self
            .lock()
            .peers
            .get_mut(user)
            .and_then(|d| d.get_mut(&conn_id))
        {
            peer.presence = true;
        }
    }

    /// reqConnect from device `caller_conn` of `caller`: offers a call to `callee`, ringing
    /// every registered device of it; returns the call id. A busy callee (any device in a call)
    /// ends the call at once with the state `busy`; an unanswered one rings until the ring
    /// timeout.
    pub fn request_call(
        self: &Arc<Self>,
        caller: &str,
        caller_conn: u64,
        callee: &str,
    ) -> Result<String, Refusal> {
        if caller == callee {
            return Err(Refusal::new("self_call", "you cannot call yourself"));
        }
        let mut state = self.lock();
        if state.call_of.contains_key(caller) {
            return Err(Refusal::new(
                "already_in_call",
                "you are already in a call (on this or another device); end it first",
            ));
        }
        let rung: Vec<u64> = state
            .peers
            .get(callee)
            .map(|d| {
                d.values()
                    .filter(|p| p.registered)
                    .map(|p| p.conn_id)
                    .collect()
            })
            .unwrap_or_default();
        if rung.is_empty() {
            // The connection tells an offline registered user from an unknown one.
            return Err(Refusal::new(
                "user_offline",
                format!("{callee} is not online"),
            ));
        }
        // Every attempt from here on is a call record (and rings someone): limited per user.
        let per_minute = self.config.call_attempts_per_minute;
        let attempts = state
            .call_attempts
            .get_or_insert_with(|| KeyedBuckets::per_minute(per_minute));
        if let Err(wait) = attempts.take(&caller.to_owned()) {
            return Err(Refusal::new(
                "rate_limited",
                format!("more than {per_minute} calls a minute; try again in {wait} s"),
            ));
        }
        let call_id = new_call_id();
        self.store
            .call_requested(&call_id, caller, callee, now_ms());
        state.calls.insert(
            call_id.clone(),
            Call {
                caller: caller.to_owned(),
                caller_conn,
                callee: callee.to_owned(),
                callee_conn: None,
                rung: Vec::new(),
                offered: false,
                answered: false,
                answered_at_ms: None,
                billing: None,
                warned: false,
            },
        );
        state.call_of.insert(caller.to_owned(), call_id.clone());
        if state.call_of.contains_key(callee) {
            finish_call_locked(
                &mut state,
                &self.store,
                &call_id,
                CallState::Busy,
                Disposition::Busy,
                &format!("{callee} is in another call"),
            );
            return Ok(call_id);
        }
        state.call_of.insert(callee.to_owned(), call_id.clone());
        if let Some(call) = state.calls.get_mut(&call_id) {
            call.offered = true;
            call.rung = rung.clone();
        }
        let incoming = ServerMessage::Event {
            event: Event::IncomingCall {
                call_id: call_id.clone(),
                from: caller.to_owned(),
            },
        };
        for conn in rung {
            send_device_locked(&mut state, callee, conn, &incoming);
        }
        send_device_locked(
            &mut state,
            caller,
            caller_conn,
            &call_state(&call_id, CallState::Ringing, None),
        );
        drop(state);
        let hub = Arc::downgrade(self);
        let id = call_id.clone();
        let timeout = Duration::from_secs(self.config.ring_timeout_secs);
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(hub) = hub.upgrade() {
                hub.ring_expired(&id);
            }
        });
        Ok(call_id)
    }

    fn ring_expired(&self, call_id: &str) {
        let mut state = self.lock();
        if state.calls.get(call_id).is_some_and(|c| !c.answered) {
            finish_call_locked(
                &mut state,
                &self.store,
                call_id,
                CallState::NoAnswer,
                Disposition::NoAnswer,
                "no answer",
            );
        }
    }

    /// acceptConnect / declineConnect / busy, from device `conn_id` of the callee of a ringing
    /// call. The first device to accept takes the call: the other devices it rang on are told
    /// `answered_elsewhere`. A decline (or busy) from any device ends the ringing on every
    /// device. Accepting starts billing (the first debit at once, then one per debit interval)
    /// and asks both answering parties to sign the answer receipt.
    pub fn answer(
        self: &Arc<Self>,
        user: &str,
        conn_id: u64,
        call_id: &str,
        answer: Answer,
    ) -> Result<(), Refusal> {
        let mut state = self.lock();
        let call = state
            .calls
            .get_mut(call_id)
            .filter(|c| c.callee == user && c.rung.contains(&conn_id))
            .ok_or_else(|| {
                Refusal::new(
                    "not_offered",
                    format!("call {call_id} was not offered to you (on this device)"),
                )
            })?;
        if call.answered {
            return Err(Refusal::new(
                "call_not_ringing",
                format!("call {call_id} was already answered"),
            ));
        }
        match answer {
            Answer::Accept => {
                let at = now_ms();
                call.answered = true;
                call.answered_at_ms = Some(at);
                call.callee_conn = Some(conn_id);
                let caller = call.caller.clone();
                let caller_conn = call.caller_conn;
                let others: Vec<u64> = call
                    .rung
                    .iter()
                    .copied()
                    .filter(|c| *c != conn_id)
                    .collect();
                self.store
                    .call_answered(call_id, at, &self.config.billing.tariff);
                call.billing = Some(tokio::spawn(bill_call(
                    Arc::downgrade(self),
                    call_id.to_owned(),
                    caller.clone(),
                    Billed::Call,
                )));
                for other in others {
                    // Version 1 has no `answered_elsewhere`: the call ends there.
                    let speaks = state
                        .peers
                        .get(user)
                        .and_then(|d| d.get(&other))
                        .map_or(PROTOCOL_VERSION, |p| p.protocol);
                    let elsewhere = if speaks >= 2 {
                        CallState::AnsweredElsewhere
                    } else {
                        CallState::Ended
                    };
                    let told = call_state(call_id, elsewhere, Some("answered on another device"));
                    send_device_locked(&mut state, user, other, &told);
                }
                let accepted = call_state(call_id, CallState::Accepted, None);
                send_device_locked(&mut state, &caller, caller_conn, &accepted);
                send_device_locked(&mut state, user, conn_id, &accepted);
                let receipt = receipt_request(ReceiptKind::Answer, call_id, &caller, user, at);
                send_device_locked(&mut state, &caller, caller_conn, &receipt);
                send_device_locked(&mut state, user, conn_id, &receipt);
                offer_relay_locked(
                    &mut state,
                    call_id,
                    [(caller.as_str(), caller_conn), (user, conn_id)],
                );
            }
            Answer::Decline => finish_call_locked(
                &mut state,
                &self.store,
                call_id,
                CallState::Declined,
                Disposition::Declined,
                &format!("{user} declined"),
            ),
            Answer::Busy => finish_call_locked(
                &mut state,
                &self.store,
                call_id,
                CallState::Busy,
                Disposition::Busy,
                &format!("{user} is busy"),
            ),
        }
        Ok(())
    }

    /// establishSession: forwards an opaque end-to-end message from device `conn_id` to the
    /// other party's device of the call.
    pub fn relay(
        &self,
        user: &str,
        conn_id: u64,
        call_id: &str,
        payload: String,
    ) -> Result<(), Refusal> {
        let mut state = self.lock();
        let (other, devices) = other_party(&state, user, conn_id, call_id)?;
        let frame = deliverable(&ServerMessage::Event {
            event: Event::SessionMessage {
                call_id: call_id.to_owned(),
                from: user.to_owned(),
                payload,
            },
        })?;
        for conn in devices {
            send_frame_device_locked(&mut state, &other, conn, frame.clone());
        }
        Ok(())
    }

    /// terminateSession: ends (or, while ringing, cancels) a call, from the device that placed
    /// it, the device that answered it, or (while ringing) any device it rings on.
    pub fn terminate(
        &self,
        user: &str,
        conn_id: u64,
        call_id: &str,
        reason: Option<String>,
    ) -> Result<(), Refusal> {
        let mut state = self.lock();
        other_party(&state, user, conn_id, call_id)?;
        let answered = state.calls.get(call_id).is_some_and(|c| c.answered);
        let why = match reason {
            Some(r) => format!(
                "{user} hung up: {}",
                r.chars().take(200).collect::<String>()
            ),
            None => format!("{user} hung up"),
        };
        let disposition = if answered {
            Disposition::Answered
        } else {
            Disposition::Cancelled
        };
        finish_call_locked(
            &mut state,
            &self.store,
            call_id,
            CallState::Ended,
            disposition,
            &why,
        );
        Ok(())
    }

    /// Ends an answered call with `reason` (e.g. "insufficient credit"); both parties are told.
    pub fn end_call(&self, call_id: &str, reason: &str) {
        let mut state = self.lock();
        finish_call_locked(
            &mut state,
            &self.store,
            call_id,
            CallState::Ended,
            Disposition::Answered,
            reason,
        );
    }

    /// Warns the payer once per call (or participation) that the balance will soon not cover it,
    /// on the device that is in it.
    fn warn_low_balance(
        &self,
        payer: &str,
        call_id: &str,
        what: &Billed,
        balance: i64,
        seconds_left: i64,
    ) {
        let mut state = self.lock();
        let device = match state.calls.get_mut(call_id) {
            Some(call) if call.warned => return,
            Some(call) => {
                call.warned = true;
                Some(call.caller_conn)
            }
            None => {
                if !state.warned.insert(call_id.to_owned()) {
                    return;
                }
                match what {
                    Billed::Participation { conf, member } => state
                        .conferences
                        .get(conf)
                        .and_then(|c| c.participations.get(member))
                        .and_then(|p| p.payer_conn),
                    Billed::Call => None,
                }
            }
        };
        let Some(device) = device else { return };
        send_device_locked(
            &mut state,
            payer,
            device,
            &ServerMessage::Event {
                event: Event::LowBalance {
                    call_id: call_id.to_owned(),
                    balance,
                    seconds_left,
                },
            },
        );
    }

    /// Ends every call ("server shutdown", recorded) and closes every connection.
    pub fn shutdown(&self) {
        let mut state = self.lock();
        state.shutting_down = true;
        let ids: Vec<String> = state.calls.keys().cloned().collect();
        for id in ids {
            let answered = state.calls.get(&id).is_some_and(|c| c.answered);
            let disposition = if answered {
                Disposition::Answered
            } else {
                Disposition::Failed
            };
            finish_call_locked(
                &mut state,
                &self.store,
                &id,
                CallState::Ended,
                disposition,
                "server shutdown",
            );
        }
        self.conf_shutdown_locked(&mut state);
        for peer in state.peers.values().flat_map(BTreeMap::values) {
            let _ = peer.kill.send(Some(Close::new(
                DisconnectCode::Shutdown,
                "server shutting down",
            )));
        }
    }

    /// Checks every connected device's certificate with `check` (a fresh CRL) and disconnects
    /// those it refuses. Returns how many were disconnected.
    pub fn sweep(&self, check: &CertificateCheck) -> usize {
        // Check outside the lock (thousands of signature checks), then close the refused
        // connections that are still open.
        let snapshot: Vec<(String, u64, CertificateDer<'static>)> = self
            .lock()
            .peers
            .iter()
            .flat_map(|(user, devices)| {
                devices
                    .values()
                    .map(move |peer| (user.clone(), peer.conn_id, peer.cert.clone()))
            })
            .collect();
        let now = UnixTime::now();
        let refused: Vec<(String, u64, Close)> = snapshot
            .into_iter()
            .filter_map(|(user, conn_id, cert)| {
                let error = check
                    .verify(std::slice::from_ref(&cert), Usage::Client, Some(&user), now)
                    .err()?;
                let close = match error {
                    CertificateError::Revoked => {
                        Close::new(DisconnectCode::CertificateRevoked, "certificate revoked")
                    }
                    other => Close::new(
                        DisconnectCode::CertificateRefused,
                        format!("certificate refused: {other}"),
                    ),
                };
                Some((user, conn_id, close))
            })
            .collect();
        let state = self.lock();
        for (user, conn_id, close) in &refused {
            if let Some(peer) = state.peers.get(user).and_then(|d| d.get(conn_id)) {
                tracing::info!(%user, reason = %close.reason, "disconnecting");
                let _ = peer.kill.send(Some(close.clone()));
            }
        }
        refused.len()
    }
}

/// Debits the payer while the call (or participation) runs: at once (the connect fee and the
/// first interval), then every debit interval, each paying one interval ahead. Ends the call —
/// or the member's participation — when the payer cannot pay.
pub(crate) async fn bill_call(hub: Weak<Hub>, call_id: String, payer: String, what: Billed) {
    let Some(strong) = hub.upgrade() else { return };
    let interval = i64::from(strong.config.billing.debit_interval_secs);
    let warn_below = i64::from(strong.config.billing.low_balance_warning_secs);
    let tariff = strong.config.billing.tariff.clone();
    drop(strong);
    loop {
        let Some(hub) = hub.upgrade() else { return };
        let now = now_ms();
        match hub.store.debit(&call_id, now, interval).await {
            Ok(DebitOutcome::Paid {
                balance,
                available,
                covered_to_ms,
            }) => {
                let left = (covered_to_ms - now) / 1000
                    + tariff.seconds_for(available).unwrap_or(i64::MAX / 2);
                if left < warn_below {
                    hub.warn_low_balance(&payer, &call_id, &what, balance, left);
                }
            }
            Ok(DebitOutcome::Insufficient) => {
                match &what {
                    Billed::Call => {
                        tracing::info!(%call_id, %payer, "ending call: insufficient credit");
                        hub.end_call(&call_id, "insufficient credit");
                    }
                    Billed::Participation { conf, member } => {
                        tracing::info!(%conf, %member, %payer, "ending participation: insufficient credit");
                        hub.conf_departed(conf, member, "insufficient credit");
                    }
                }
                return;
            }
            Ok(DebitOutcome::Closed) => return,
            Err(e) => tracing::error!(%call_id, "debit failed: {}", e.message),
        }
        drop(hub);
        tokio::time::sleep(Duration::from_secs(interval as u64)).await;
    }
}

pub(crate) fn receipt_request(
    kind: ReceiptKind,
    call_id: &str,
    caller: &str,
    callee: &str,
    at_ms: i64,
) -> ServerMessage {
    ServerMessage::Event {
        event: Event::ReceiptRequest {
            call_id: call_id.to_owned(),
            receipt: kind,
            statement: receipt_statement(kind, call_id, caller, callee, at_ms),
        },
    }
}

fn call_state(call_id: &str, state: CallState, reason: Option<&str>) -> ServerMessage {
    ServerMessage::Event {
        event: Event::CallState {
            call_id: call_id.to_owned(),
            state,
            reason: reason.map(str::to_owned),
        },
    }
}

/// The other party of `call_id` for device `conn_id` of `user`, with the devices of it that
/// messages go to: the caller's device, or the callee's answering device (every device it rings
/// on while ringing). Refused unless `user` is in the call on this device.
fn other_party(
    state: &State,
    user: &str,
    conn_id: u64,
    call_id: &str,
) -> Result<(String, Vec<u64>), Refusal> {
    let call = state
        .calls
        .get(call_id)
        .ok_or_else(|| Refusal::new("unknown_call", format!("no open call {call_id}")))?;
    if call.caller == user && call.caller_conn == conn_id {
        let devices = match call.callee_conn {
            Some(c) => vec![c],
            None => call.rung.clone(),
        };
        Ok((call.callee.clone(), devices))
    } else if call.callee == user
        && match call.callee_conn {
            Some(c) => c == conn_id,
            None => call.rung.contains(&conn_id),
        }
    {
        Ok((call.caller.clone(), vec![call.caller_conn]))
    } else if call.caller == user || call.callee == user {
        Err(Refusal::new(
            "not_in_call",
            format!("call {call_id} is on another of your devices"),
        ))
    } else {
        Err(Refusal::new(
            "not_in_call",
            format!("you are not a party of call {call_id}"),
        ))
    }
}

/// Ends a call: records it, tells both parties (the caller's device; the answering device, or
/// every device it rang on), forgets it.
fn finish_call_locked(
    state: &mut State,
    store: &Store,
    call_id: &str,
    final_state: CallState,
    disposition: Disposition,
    reason: &str,
) {
    let Some(call) = state.calls.remove(call_id) else {
        return;
    };
    if let Some(relay) = &state.media_relay {
        relay.close(call_id);
    }
    if let Some(billing) = &call.billing {
        billing.abort();
    }
    for party in [&call.caller, &call.callee] {
        if state.call_of.get(party).is_some_and(|c| c == call_id) {
            state.call_of.remove(party);
        }
    }
    let at = now_ms();
    store.call_ended(call_id, at, disposition, reason);
    let message = call_state(call_id, final_state, Some(reason));
    send_device_locked(state, &call.caller, call.caller_conn, &message);
    if call.offered {
        let devices = match call.callee_conn {
            Some(c) => vec![c],
            None => call.rung.clone(),
        };
        for conn in devices {
            send_device_locked(state, &call.callee, conn, &message);
        }
    }
    if let (true, Some(callee_conn)) = (call.answered, call.callee_conn) {
        let receipt = receipt_request(ReceiptKind::End, call_id, &call.caller, &call.callee, at);
        send_device_locked(state, &call.caller, call.caller_conn, &receipt);
        send_device_locked(state, &call.callee, callee_conn, &receipt);
    }
    tracing::info!(call_id, caller = %call.caller, callee = %call.callee, disposition = disposition.as_str(), reason, "call ended");
}

/// The address a device is told for the media relay: the advertised one, or — when that is a
/// wildcard — the address the device connected to, with the relay's port.
pub(crate) fn relay_address_locked(
    state: &State,
    relay: &Relay,
    user: &str,
    conn_id: Option<u64>,
) -> std::net::SocketAddr {
    let mut address = relay.advertised();
    if address.ip().is_unspecified() {
        let device = state.peers.get(user).and_then(|d| match conn_id {
            Some(c) => d.get(&c),
            None => d.values().next(),
        });
        if let Some(ip) = device.and_then(|p| p.local_ip) {
            address.set_ip(ip);
        }
    }
    address
}

/// Opens the relay for an answered call and tells each member's device its address and token.
fn offer_relay_locked(state: &mut State, call_id: &str, members: [(&str, u64); 2]) {
    let Some(relay) = state.media_relay.clone() else {
        return;
    };
    let grants = relay.open(call_id);
    for ((member, conn), (token, secret)) in members.into_iter().zip(grants) {
        let address = relay_address_locked(state, &relay, member, Some(conn));
        let event = ServerMessage::Event {
            event: Event::MediaRelay {
                call_id: call_id.to_owned(),
                address: address.to_string(),
                token: token.to_hex(),
                secret: secret.to_hex(),
            },
        };
        send_device_locked(state, member, conn, &event);
    }
}

/// Ends the call `user` is in (on whichever device), if any.
fn end_calls_locked(state: &mut State, store: &Store, user: &str, reason: &str) {
    let Some(call_id) = state.call_of.get(user).cloned() else {
        return;
    };
    let (answered, caller_left) = state
        .calls
        .get(&call_id)
        .map_or((false, false), |c| (c.answered, c.caller == user));
    let disposition = match (answered, caller_left) {
        (true, _) => Disposition::Answered,
        (false, true) => Disposition::Cancelled,
        (false, false) => Disposition::Failed,
    };
    finish_call_locked(
        state,
        store,
        &call_id,
        CallState::Ended,
        disposition,
        reason,
    );
}

/// Device `conn_id` of `user` is gone: the call it placed or answered ends; a call ringing on
/// it stops ringing there, and ends when it rang on no other device still connected.
fn device_left_call_locked(
    state: &mut State,
    store: &Store,
    user: &str,
    conn_id: u64,
    reason: &str,
) {
    let Some(call_id) = state.call_of.get(user).cloned() else {
        return;
    };
    let Some(call) = state.calls.get_mut(&call_id) else {
        return;
    };
    let in_it = (call.caller == user && call.caller_conn == conn_id)
        || (call.callee == user && call.callee_conn == Some(conn_id));
    if in_it {
        end_calls_locked(state, store, user, reason);
        return;
    }
    if call.callee == user && call.callee_conn.is_none() {
        call.rung.retain(|c| *c != conn_id);
        if call.rung.is_empty() {
            end_calls_locked(state, store, user, reason);
        }
    }
}

/// Whether `user` has a registered device connected (is online).
pub(crate) fn is_online_locked(state: &State, user: &str) -> bool {
    state
        .peers
        .get(user)
        .is_some_and(|d| d.values().any(|p| p.registered))
}

/// Queues `message` for every device of `user`; a full queue disconnects that device (too
/// slow), never blocks.
pub(crate) fn send_locked(state: &mut State, user: &str, message: &ServerMessage) {
    match deliverable(message) {
        Ok(frame) => send_frame_locked(state, user, frame),
        Err(r) => tracing::error!(code = r.code, "message not sent: {}", r.message),
    }
}

/// Queues `message` for device `conn_id` of `user` only.
pub(crate) fn send_device_locked(
    state: &mut State,
    user: &str,
    conn_id: u64,
    message: &ServerMessage,
) {
    match deliverable(message) {
        Ok(frame) => send_frame_device_locked(state, user, conn_id, frame),
        Err(r) => tracing::error!(code = r.code, "message not sent: {}", r.message),
    }
}

/// Encodes `message` as a frame, refusing (`too_large`) one that would not fit: whatever the
/// server passes on is checked at its encoded size before it is accepted, so nothing it accepted
/// is lost on the way out.
pub(crate) fn deliverable(message: &ServerMessage) -> Result<Bytes, Refusal> {
    frame::encode(message).map(Bytes::from).map_err(|e| {
        Refusal::new(
            "too_large",
            format!("once encoded for delivery, the message would not fit a frame: {e}"),
        )
    })
}

/// Queues an encoded frame for every device of `user`; a full queue drops that device.
pub(crate) fn send_frame_locked(state: &mut State, user: &str, frame: Bytes) {
    let Some(devices) = state.peers.get(user) else {
        return;
    };
    for peer in devices.values() {
        queue(peer, frame.clone());
    }
}

/// Queues an encoded frame for device `conn_id` of `user`; a full queue drops that device.
pub(crate) fn send_frame_device_locked(state: &mut State, user: &str, conn_id: u64, frame: Bytes) {
    if let Some(peer) = state.peers.get(user).and_then(|d| d.get(&conn_id)) {
        queue(peer, frame);
    }
}

fn queue(peer: &Peer, frame: Bytes) {
    if peer.out.try_send(frame).is_err() {
        let _ = peer.kill.send(Some(Close::new(
            DisconnectCode::TooSlow,
            "too slow: outbound queue full",
        )));
    }
}

/// Tells every subscribed device of every other user that `user` came online or went offline.
fn broadcast_presence_locked(state: &mut State, user: &str, online: bool) {
    let frame = match frame::encode(&ServerMessage::Event {
        event: Event::Presence {
            user: user.to_owned(),
            online,
        },
    }) {
        Ok(f) => Bytes::from(f),
        Err(_) => return,
    };
    for (who, devices) in &state.peers {
        if who == user {
            continue;
        }
        for peer in devices.values().filter(|p| p.presence) {
            queue(peer, frame.clone());
        }
    }
}
