//! What a [`super::Client`] reports to the application.

use crate::billing::ReceiptKind;
use crate::proto::signal::{CallState, Event};

/// An event for the application.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// Someone calls; answer with [`super::Client::answer`].
    IncomingCall {
        /// The call.
        call_id: String,
        /// The caller.
        from: String,
    },
    /// A call changed state (accepted, declined, busy, no answer, ended with a reason).
    CallState {
        /// The call.
        call_id: String,
        /// The new state.
        state: CallState,
        /// Why, for ending states.
        reason: Option<String>,
    },
    /// A registered user came online or went offline.
    Presence {
        /// The user.
        user: String,
        /// Online now?
        online: bool,
    },
    /// An end-to-end message from the other party of a call.
    SessionMessage {
        /// The call.
        call_id: String,
        /// The sender.
        from: String,
        /// The opaque payload.
        payload: String,
    },
    /// The balance will soon not cover the call (the server ends it when it runs out).
    LowBalance {
        /// The call.
        call_id: String,
        /// Balance now, minor units.
        balance: i64,
        /// About how many more seconds it pays for.
        seconds_left: i64,
    },
    /// An invitation to a conference that passed the checks: the inviter's certificate and
    /// signature, that the inviter checked our certificate, and our access list. Join with
    /// [`super::Client::join_conference`] or decline with [`super::Client::decline_conference`].
    ConferenceInvitation {
        /// The conference.
        conf: String,
        /// Who invites.
        from: String,
        /// Until when it is open, Unix ms.
        expires_at_ms: i64,
    },
    /// The server asked for a receipt this client refused to sign: it does not describe a call or
    /// conference participation of ours at the moments we saw (an invented call, a stretched
    /// one, a second record, or a malformed statement). Nothing was signed or sent.
    ReceiptRefused {
        /// The call (or participation record) the request names.
        call_id: String,
        /// Answer or end.
        kind: ReceiptKind,
        /// The statement we were asked to sign.
        statement: String,
        /// Why it was refused.
        reason: String,
    },
    /// The connection was lost. With `reconnecting` the client is reconnecting by itself
    /// ([`ClientEvent::Reconnected`] follows once it is back); without it the connection ended
    /// for good — the server gave a final reason (a revoked certificate, too many devices of this
    /// user, an unsupported protocol version), the client was closed, or reconnection is off —
    /// and this is the client's last event.
    Disconnected {
        /// Why.
        reason: String,
        /// Whether the client is reconnecting (false: it stopped for good).
        reconnecting: bool,
    },
    /// The connection is back (presence subscriptions renewed).
    Reconnected,
}

impl From<Event> for Option<ClientEvent> {
    fn from(event: Event) -> Self {
        Some(match event {
            Event::IncomingCall { call_id, from } => ClientEvent::IncomingCall { call_id, from },
            Event::CallState {
                call_id,
                state,
                reason,
            } => ClientEvent::CallState {
                call_id,
                state,
                reason,
            },
            Event::Presence { user, online } => ClientEvent::Presence { user, online },
            Event::SessionMessage {
                call_id,
                from,
                payload,
            } => ClientEvent::SessionMessage {
                call_id,
                from,
                payload,
            },
            Event::LowBalance {
                call_id,
                balance,
                seconds_left,
            } => ClientEvent::LowBalance {
                call_id,
                balance,
                seconds_left,
            },
            // Reported by the connection when it closes; receipts are signed by the connection.
            // The relay offer is taken by the call's media (see `Client::media`).
            // Conference traffic goes to its conference (see `Client::join_conference`).
            Event::Disconnect { .. }
            | Event::ReceiptRequest { .. }
            | Event::MediaRelay { .. }
            | Event::ConfInvitation { .. }
            | Event::ConfEntries { .. }
            | Event::ConfWrap { .. }
            | Event::ConfSignal { .. }
            | Event::ConfRelay { .. } => return None,
        })
    }
}
