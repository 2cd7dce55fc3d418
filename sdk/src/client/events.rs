//! What a [`super::Client`] reports to the application.

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
    /// The connection was lost; the client reconnects unless the reason is final.
    Disconnected {
        /// Why.
        reason: String,
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
            // Reported by the connection when it closes.
            Event::Disconnect { .. } => return None,
        })
    }
}
