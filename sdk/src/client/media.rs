//! The media of a client's calls. Once a call is answered, [`super::Client::media`] runs the
//! end-to-end key agreement with the peer through the server (offer, answer, confirmation; see
//! [`crate::media::handshake`]), exchanges sealed media addresses, and starts a
//! [`MediaSession`] — direct, or through the relay the server offered for the call.
//!
//! The router here takes the call's handshake messages and relay offer out of the event stream
//! (other session messages still reach the application) and closes the media when the call ends.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::mpsc;

use crate::media::handshake::{CalleeHandshake, CallerHandshake, HandshakeMessage};
use crate::media::relay::{RelayGrant, RelaySecret, RelayToken};
use crate::media::session::{MediaConfig, MediaSession, PreparedMedia};
use crate::proto::signal::Event;
use crate::{Error, Result};

/// Handshake messages held for a call before its media starts.
const INBOX: usize = 16;
/// Incoming calls remembered (to know the caller when answering).
const REMEMBERED_OFFERS: usize = 64;

/// Our part in a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Caller,
    Callee,
}

struct CallSlot {
    role: Role,
    peer: String,
    inbox_tx: mpsc::Sender<HandshakeMessage>,
    inbox_rx: Option<mpsc::Receiver<HandshakeMessage>>,
    relay: Option<RelayGrant>,
    session: Option<Weak<MediaSession>>,
}

/// Routes the media-related events of calls.
#[derive(Default)]
pub(super) struct CallRouter {
    calls: Mutex<HashMap<String, CallSlot>>,
    offers: Mutex<VecDeque<(String, String)>>,
    /// Relay offers for calls not known yet: the server may send one before the answer that
    /// places the call.
    unclaimed: Mutex<VecDeque<(String, RelayGrant)>>,
    /// Calls that ended lately (the newest 64): starting their media is an outcome to report
    /// ("the call ended"), not an unknown call.
    ended: Mutex<VecDeque<String>>,
}

impl CallRouter {
    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<String, CallSlot>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `call_id` ended lately.
    fn has_ended(&self, call_id: &str) -> bool {
        self.ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|c| c == call_id)
    }

    fn open(&self, call_id: &str, role: Role, peer: &str) {
        if self.has_ended(call_id) {
            // It ended before we got here (a hang-up racing our answer): nothing to route.
            return;
        }
        let (inbox_tx, inbox_rx) = mpsc::channel(INBOX);
        let relay = {
            let mut unclaimed = self.unclaimed.lock().unwrap_or_else(|p| p.into_inner());
            let at = unclaimed.iter().position(|(c, _)| c == call_id);
            at.and_then(|i| unclaimed.remove(i)).map(|(_, g)| g)
        };
        self.calls().insert(
            call_id.to_owned(),
            CallSlot {
                role,
                peer: peer.to_owned(),
                inbox_tx,
                inbox_rx: Some(inbox_rx),
                relay,
                session: None,
            },
        );
    }

    /// The server placed a call of ours: open its slot at once, from the connection's reader,
    /// so the relay offer that may follow right behind is not missed.
    pub(super) fn placing(&self, call_id: &str) {
        if !self.calls().contains_key(call_id) {
            self.open(call_id, Role::Caller, "");
        }
    }

    /// We placed `call_id` to `peer`.
    pub(super) fn placed(&self, call_id: &str, peer: &str) {
        let known = match self.calls().get_mut(call_id) {
            Some(slot) => {
                slot.peer = peer.to_owned();
                true
            }
            None => false,
        };
        if !known {
            self.open(call_id, Role::Caller, peer);
        }
    }

    /// We accepted `call_id`; the caller is known from its `incoming_call` event.
    pub(super) fn accepted(&self, call_id: &str) {
        let caller = self
            .offers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(c, _)| c == call_id)
            .map(|(_, from)| from.clone());
        if let Some(caller) = caller {
            self.open(call_id, Role::Callee, &caller);
        }
    }

    /// Looks at an event from the server: returns it for the application, or `None` when it was
    /// the media's (a handshake message or relay offer of a known call).
    pub(super) fn intercept(&self, event: Event) -> Option<Event> {
        match event {
            Event::IncomingCall {
                ref call_id,
                ref from,
            } => {
                let mut offers = self.offers.lock().unwrap_or_else(|p| p.into_inner());
                if offers.len() >= REMEMBERED_OFFERS {
                    offers.pop_front();
                }
                offers.push_back((call_id.clone(), from.clone()));
                Some(event)
            }
            Event::SessionMessage {
                ref call_id,
                ref from,
                ref payload,
            } => {
                let calls = self.calls();
                let Some(slot) = calls.get(call_id).filter(|s| &s.peer == from) else {
                    return Some(event);
                };
                match serde_json::from_str::<HandshakeMessage>(payload) {
                    Ok(message) => {
                        if slot.inbox_tx.try_send(message).is_err() {
                            tracing::debug!(call_id, "handshake message dropped (inbox full)");
                        }
                        None
                    }
                    Err(_) => Some(event),
                }
            }
            Event::MediaRelay {
                call_id,
                address,
                token,
                secret,
            } => {
                let grant = match (
                    address.parse::<SocketAddr>(),
                    RelayToken::from_hex(&token),
                    RelaySecret::from_hex(&secret),
                ) {
                    (Ok(address), Ok(token), Ok(secret)) => Some(RelayGrant {
                        address,
                        token,
                        secret,
                    }),
                    _ => {
                        tracing::warn!(call_id, "malformed relay offer ignored");
                        None
                    }
                };
                match (self.calls().get_mut(&call_id), grant) {
                    (Some(slot), grant) => slot.relay = grant,
                    (None, Some(grant)) => {
                        let mut unclaimed =
                            self.unclaimed.lock().unwrap_or_else(|p| p.into_inner());
                        if unclaimed.len() >= REMEMBERED_OFFERS {
                            unclaimed.pop_front();
                        }
                        unclaimed.push_back((call_id, grant));
                    }
                    (None, None) => {}
                }
                None
            }
            Event::CallState {
                ref call_id, state, ..
            } if state.is_final() => {
                {
                    let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
                    if ended.len() >= REMEMBERED_OFFERS {
                        ended.pop_front();
                    }
                    ended.push_back(call_id.clone());
                }
                if let Some(slot) = self.calls().remove(call_id) {
                    if let Some(session) = slot.session.and_then(|w| w.upgrade()) {
                        session.close();
                    }
                }
                Some(event)
            }
            other => Some(other),
        }
    }
}

/// A handshake message the peer sent, within the timeout.
async fn receive(
    inbox: &mut mpsc::Receiver<HandshakeMessage>,
    config: &MediaConfig,
    what: &str,
) -> Result<HandshakeMessage> {
    match tokio::time::timeout(config.handshake_timeout, inbox.recv()).await {
        Ok(Some(HandshakeMessage::Abort { reason, .. })) => Err(Error::Protocol(format!(
            "the peer refused the key agreement: {}",
            reason.chars().take(300).collect::<String>()
        ))),
        Ok(Some(m)) => Ok(m),
        // The call ended (hung up, or the peer never started its media): an outcome, not a fault.
        Ok(None) => Err(Error::Closed(format!(
            "the call ended before its media started (while waiting for the peer's {what})"
        ))),
        Err(_) => Err(Error::Protocol(format!(
            "the peer's {what} did not arrive within {} s",
            config.handshake_timeout.as_secs()
        ))),
    }
}

impl super::Client {
    /// Starts the end-to-end encrypted media of the answered call `call_id` (both the caller and
    /// the callee call this): agrees the call's keys with the peer — whose certificate is checked
    /// against the pinned root and CRL and must name the peer — exchanges sealed addresses, and
    /// returns the session once a path (direct, else the server's relay) works. The session is
    /// closed when the call ends.
    pub async fn media(&self, call_id: &str, config: MediaConfig) -> Result<Arc<MediaSession>> {
        let result = self.start_media(call_id, config).await;
        if let Err(e) = &result {
            // Tell the peer at once rather than let it wait for a message that will not come
            // (not for a call that is not ours, or whose media already started).
            let abort = HandshakeMessage::Abort {
                call_id: call_id.to_owned(),
                reason: e.to_string(),
            };
            let ours = !matches!(e, Error::InvalidArgument(_) | Error::Closed(_))
                && !matches!(e, Error::Protocol(m) if m.starts_with("the peer refused"));
            if ours {
                if let Ok(payload) = serde_json::to_string(&abort) {
                    let _ = self.send_session_message(call_id, &payload).await;
                }
            }
        }
        result
    }

    async fn start_media(&self, call_id: &str, config: MediaConfig) -> Result<Arc<MediaSession>> {
        let (role, peer, mut inbox) = {
            let router = &self.inner.router;
            let mut calls = router.calls();
            let slot = match calls.get_mut(call_id) {
                Some(slot) => slot,
                None if router.has_ended(call_id) => {
                    return Err(Error::Closed(format!(
                        "call {call_id} ended before its media started"
                    )))
                }
                None => {
                    return Err(Error::InvalidArgument(format!(
                        "call {call_id} is not one this client placed or accepted"
                    )))
                }
            };
            let inbox = slot.inbox_rx.take().ok_or_else(|| {
                Error::InvalidArgument(format!("the media of call {call_id} was already started"))
            })?;
            (slot.role, slot.peer.clone(), inbox)
        };
        // The seed's sequence: fetch the peer's certificate from the server and check it (pinned
        // root, CRL, names the peer) before any key is made; the handshake checks the certificate
        // the peer signs with again.
        self.peer_certificate(&peer).await?;
        let identity = self.inner.options.identity.clone();
        let check = &self.inner.check.snapshot();
        let send = |m: HandshakeMessage| async move {
            let payload = serde_json::to_string(&m)
                .map_err(|e| Error::Protocol(format!("encoding a handshake message: {e}")))?;
            self.send_session_message(call_id, &payload).await
        };
        let (secrets, me, them) = match role {
            Role::Caller => {
                let (handshake, offer) =
                    CallerHandshake::start(&identity, call_id, &peer, config.level)?;
                send(offer).await?;
                let answer = receive(&mut inbox, &config, "answer").await?;
                let (secrets, confirm) = handshake.finish(&answer, check)?;
                send(confirm).await?;
                (secrets, 0, 1)
            }
            Role::Callee => {
                let offer = receive(&mut inbox, &config, "offer").await?;
                let (handshake, answer) = CalleeHandshake::answer(
                    &identity,
                    &offer,
                    call_id,
                    &peer,
                    config.level,
                    check,
                )?;
                send(answer).await?;
                let confirm = receive(&mut inbox, &config, "confirmation").await?;
                (handshake.finish(&confirm)?, 1, 0)
            }
        };
        let bind = match config.bind {
            Some(ip) => ip,
            None => self.local_ip()?,
        };
        let mut prepared = PreparedMedia::new(&secrets, me, them, bind).await?;
        send(HandshakeMessage::Candidates {
            call_id: call_id.to_owned(),
            sealed: prepared.seal_candidates(config.direct)?,
        })
        .await?;
        let candidates = match receive(&mut inbox, &config, "media addresses").await? {
            HandshakeMessage::Candidates { call_id: c, sealed } if c == call_id => {
                prepared.open_candidates(&sealed)?
            }
            _ => {
                return Err(Error::Protocol(
                    "expected the peer's media addresses".into(),
                ))
            }
        };
        let relay = self.inner.router.calls().get(call_id).and_then(|s| s.relay);
        let session = Arc::new(prepared.start(candidates, relay, config).await?);
        match self.inner.router.calls().get_mut(call_id) {
            Some(slot) => slot.session = Some(Arc::downgrade(&session)),
            None => {
                session.close();
                return Err(Error::Protocol(format!(
                    "call {call_id} ended while its media started"
                )));
            }
        }
        Ok(session)
    }
}
