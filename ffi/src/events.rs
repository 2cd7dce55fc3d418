//! Events for C: the listener a client is given, the event struct it receives, and the thread
//! that delivers them.

use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{JoinHandle, ThreadId};

use tokio::sync::{mpsc, watch};
use vcsdk::client::ClientEvent;
use vcsdk::proto::signal::CallState;

/// What happened (the fields of vc_event that apply are listed with each kind).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum vc_event_kind {
    /// Someone calls: `call_id`, `user` (the caller). Answer with vc_client_answer().
    VC_EVENT_INCOMING_CALL = 0,
    /// A call changed state: `call_id`, `state`, `reason` (for ending states, else NULL).
    VC_EVENT_CALL_STATE = 1,
    /// A registered user came online or went offline: `user`, `online`.
    VC_EVENT_PRESENCE = 2,
    /// The balance will soon not pay for the call: `call_id`, `balance`, `seconds_left`.
    VC_EVENT_LOW_BALANCE = 3,
    /// An end-to-end message from the other party: `call_id`, `user` (the sender), `payload`.
    VC_EVENT_SESSION_MESSAGE = 4,
    /// The connection to the server was lost: `reason`. The client reconnects by itself
    /// (VC_EVENT_RECONNECTED follows once it is back).
    VC_EVENT_DISCONNECTED = 5,
    /// The connection is back.
    VC_EVENT_RECONNECTED = 6,
    /// An invitation to a conference passed its checks (the inviter's certificate and
    /// signature, our access list): `conference`, `user` (the inviter), `seconds_left` (until
    /// it lapses). Join with vc_conference_join() or decline with vc_client_decline_conference().
    VC_EVENT_CONFERENCE_INVITATION = 7,
    /// The server asked for a billing receipt the SDK refused to sign (it does not describe a
    /// call or conference participation of ours at the moments we saw): `call_id`, `payload`
    /// (the statement asked for), `reason`. Nothing was signed.
    VC_EVENT_RECEIPT_REFUSED = 8,
    /// The connection to the server ended for good: `reason` (a revoked certificate, too many
    /// devices of this user connected, an unsupported protocol version, or the client was
    /// closed). The client does not reconnect; no client event follows.
    VC_EVENT_CLOSED = 9,
}

/// The state of a call.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum vc_call_state {
    /// The callee is being asked.
    VC_CALL_STATE_RINGING = 0,
    /// The call is up.
    VC_CALL_STATE_ACCEPTED = 1,
    /// The callee declined (final).
    VC_CALL_STATE_DECLINED = 2,
    /// The callee was busy (final).
    VC_CALL_STATE_BUSY = 3,
    /// Nobody answered in time (final).
    VC_CALL_STATE_NO_ANSWER = 4,
    /// The call ended; `reason` says why (final).
    VC_CALL_STATE_ENDED = 5,
    /// Another device of this user answered the call first (final on this device; the call
    /// goes on with the other device).
    VC_CALL_STATE_ANSWERED_ELSEWHERE = 6,
}

impl From<CallState> for vc_call_state {
    fn from(state: CallState) -> Self {
        match state {
            CallState::Ringing => vc_call_state::VC_CALL_STATE_RINGING,
            CallState::Accepted => vc_call_state::VC_CALL_STATE_ACCEPTED,
            CallState::Declined => vc_call_state::VC_CALL_STATE_DECLINED,
            CallState::Busy => vc_call_state::VC_CALL_STATE_BUSY,
            CallState::NoAnswer => vc_call_state::VC_CALL_STATE_NO_ANSWER,
            CallState::Ended => vc_call_state::VC_CALL_STATE_ENDED,
            CallState::AnsweredElsewhere => vc_call_state::VC_CALL_STATE_ANSWERED_ELSEWHERE,
        }
    }
}

/// One event. Every pointer is NULL or a NUL-terminated string that lives only until the
/// callback returns: copy what you keep.
#[repr(C)]
#[derive(Debug)]
pub struct vc_event {
    /// What happened; says which fields apply.
    pub kind: vc_event_kind,
    /// The call, or NULL.
    pub call_id: *const c_char,
    /// The caller, the user whose presence changed, or the sender; or NULL.
    pub user: *const c_char,
    /// The call's new state (VC_EVENT_CALL_STATE only).
    pub state: vc_call_state,
    /// Why a call ended or the connection was lost, or NULL.
    pub reason: *const c_char,
    /// Online now? (VC_EVENT_PRESENCE only).
    pub online: bool,
    /// Balance in minor currency units (VC_EVENT_LOW_BALANCE only).
    pub balance: i64,
    /// About how many more seconds the balance pays for (VC_EVENT_LOW_BALANCE only).
    pub seconds_left: i64,
    /// The message (VC_EVENT_SESSION_MESSAGE), the statement (VC_EVENT_RECEIPT_REFUSED), or NULL.
    pub payload: *const c_char,
    /// The conference (VC_EVENT_CONFERENCE_INVITATION only), or NULL.
    pub conference: *const c_char,
}

/// Where a client's events go.
///
/// Threading: every callback of one client runs on that client's own event thread, one at a
/// time, in the order the events happened; never on the thread that called a vc_* function.
/// A callback may call any vc_* function, including vc_client_free() of its own client (its
/// `destroy` then runs on the event thread right after the callback returns). A callback must
/// return promptly (events wait behind it) and must not unwind (no C++ exception, no longjmp).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vc_client_listener {
    /// Passed back to every function below.
    pub ctx: *mut c_void,
    /// Called for each event; NULL to ignore events.
    pub on_event: Option<unsafe extern "C" fn(ctx: *mut c_void, event: *const vc_event)>,
    /// Called exactly once when no callback will follow, on the event thread (or, when the
    /// client could not be created, on the thread of vc_client_connect()); NULL if not needed.
    pub destroy: Option<unsafe extern "C" fn(ctx: *mut c_void)>,
}

/// A listener owned by the library: its `destroy` runs exactly once, when this is dropped.
pub(crate) struct OwnedListener(vc_client_listener);

// SAFETY: the C side promises the listener's ctx and functions may be used from the event
// thread (documented on vc_client_listener); only that one thread uses it at a time.
unsafe impl Send for OwnedListener {}

impl OwnedListener {
    /// Takes ownership of `listener` (none: a listener that ignores everything).
    pub(crate) fn new(listener: Option<vc_client_listener>) -> Self {
        OwnedListener(listener.unwrap_or(vc_client_listener {
            ctx: std::ptr::null_mut(),
            on_event: None,
            destroy: None,
        }))
    }
}

/// Something that takes a thread's events one at a time (and is dropped on that thread).
pub(crate) trait Deliver<T>: Send {
    /// Hands over one event.
    fn deliver(&self, event: &T);
}

impl Deliver<ClientEvent> for OwnedListener {
    fn deliver(&self, event: &ClientEvent) {
        let Some(on_event) = self.0.on_event else {
            return;
        };
        let strings = EventStrings::of(event);
        let c_event = strings.event(event);
        // SAFETY: the function and ctx come from the caller, who promised they are valid until
        // destroy; the event and its strings live until the call returns.
        unsafe { on_event(self.0.ctx, &c_event) };
    }
}

impl Drop for OwnedListener {
    fn drop(&mut self) {
        if let Some(destroy) = self.0.destroy.take() {
            // SAFETY: as for deliver; called once, as `destroy` was taken.
            unsafe { destroy(self.0.ctx) };
        }
    }
}

/// The C strings of one event, kept alive while the callback runs.
struct EventStrings {
    call_id: Option<CString>,
    user: Option<CString>,
    reason: Option<CString>,
    payload: Option<CString>,
    conference: Option<CString>,
}

/// A C string of `s`; interior NULs (never sent by a well-behaved server) are cut off there.
pub(crate) fn c_string(s: &str) -> CString {
    let end = s.find('\0').unwrap_or(s.len());
    CString::new(&s[..end]).unwrap_or_default()
}

impl EventStrings {
    fn of(event: &ClientEvent) -> Self {
        let mut s = EventStrings {
            call_id: None,
            user: None,
            reason: None,
            payload: None,
            conference: None,
        };
        match event {
            ClientEvent::IncomingCall { call_id, from } => {
                s.call_id = Some(c_string(call_id));
                s.user = Some(c_string(from));
            }
            ClientEvent::CallState {
                call_id, reason, ..
            } => {
                s.call_id = Some(c_string(call_id));
                s.reason = reason.as_deref().map(c_string);
            }
            ClientEvent::Presence { user, .. } => s.user = Some(c_string(user)),
            ClientEvent::SessionMessage {
                call_id,
                from,
                payload,
            } => {
                s.call_id = Some(c_string(call_id));
                s.user = Some(c_string(from));
                s.payload = Some(c_string(payload));
            }
            ClientEvent::LowBalance { call_id, .. } => s.call_id = Some(c_string(call_id)),
            ClientEvent::Disconnected { reason, .. } => s.reason = Some(c_string(reason)),
            ClientEvent::Reconnected => {}
            ClientEvent::ConferenceInvitation { conf, from, .. } => {
                s.conference = Some(c_string(conf));
                s.user = Some(c_string(from));
            }
            ClientEvent::ReceiptRefused {
                call_id,
                statement,
                reason,
                ..
            } => {
                s.call_id = Some(c_string(call_id));
                s.payload = Some(c_string(statement));
                s.reason = Some(c_string(reason));
            }
        }
        s
    }

    fn event(&self, event: &ClientEvent) -> vc_event {
        let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
        let mut e = vc_event {
            kind: vc_event_kind::VC_EVENT_RECONNECTED,
            call_id: ptr(&self.call_id),
            user: ptr(&self.user),
            state: vc_call_state::VC_CALL_STATE_RINGING,
            reason: ptr(&self.reason),
            online: false,
            balance: 0,
            seconds_left: 0,
            payload: ptr(&self.payload),
            conference: ptr(&self.conference),
        };
        e.kind = match event {
            ClientEvent::IncomingCall { .. } => vc_event_kind::VC_EVENT_INCOMING_CALL,
            ClientEvent::CallState { state, .. } => {
                e.state = (*state).into();
                vc_event_kind::VC_EVENT_CALL_STATE
            }
            ClientEvent::Presence { online, .. } => {
                e.online = *online;
                vc_event_kind::VC_EVENT_PRESENCE
            }
            ClientEvent::SessionMessage { .. } => vc_event_kind::VC_EVENT_SESSION_MESSAGE,
            ClientEvent::LowBalance {
                balance,
                seconds_left,
                ..
            } => {
                e.balance = *balance;
                e.seconds_left = *seconds_left;
                vc_event_kind::VC_EVENT_LOW_BALANCE
            }
            ClientEvent::Disconnected {
                reconnecting: true, ..
            } => vc_event_kind::VC_EVENT_DISCONNECTED,
            ClientEvent::Disconnected {
                reconnecting: false,
                ..
            } => vc_event_kind::VC_EVENT_CLOSED,
            ClientEvent::Reconnected => vc_event_kind::VC_EVENT_RECONNECTED,
            ClientEvent::ConferenceInvitation { expires_at_ms, .. } => {
                e.seconds_left = ((expires_at_ms - vcsdk::util::unix_now() * 1000) / 1000).max(0);
                vc_event_kind::VC_EVENT_CONFERENCE_INVITATION
            }
            ClientEvent::ReceiptRefused { .. } => vc_event_kind::VC_EVENT_RECEIPT_REFUSED,
        };
        e
    }
}

/// The thread delivering one client's (or conference's) events.
pub(crate) struct Dispatcher {
    stop: watch::Sender<bool>,
    shared: Arc<Gate>,
    thread: Option<JoinHandle<()>>,
    thread_id: ThreadId,
}

/// What the event thread and whoever stops it share: a callback runs only while `lock` is held
/// and `stopped` is false, so that once [`Dispatcher::stop`] has taken the lock and set the flag,
/// no callback runs or starts.
struct Gate {
    lock: Mutex<()>,
    stopped: AtomicBool,
}

impl Dispatcher {
    /// Starts delivering `events` to `listener` on a new thread.
    pub(crate) fn start<T: Send + 'static, L: Deliver<T> + 'static>(
        listener: L,
        mut events: mpsc::Receiver<T>,
    ) -> std::io::Result<Dispatcher> {
        let (stop, mut stopped) = watch::channel(false);
        let shared = Arc::new(Gate {
            lock: Mutex::new(()),
            stopped: AtomicBool::new(false),
        });
        let gate = shared.clone();
        let thread = crate::runtime::event_thread("vcsdk-events", move || {
            let listener = listener;
            loop {
                let next = crate::runtime::block_on(async {
                    tokio::select! {
                        biased;
                        _ = stopped.wait_for(|s| *s) => None,
                        event = events.recv() => event,
                    }
                });
                let Ok(Some(event)) = next else { break };
                let _open = gate.lock.lock().unwrap_or_else(PoisonError::into_inner);
                if gate.stopped.load(Ordering::SeqCst) {
                    break;
                }
                listener.deliver(&event);
            }
            // Events still queued are dropped here, then `destroy` runs (when `listener` goes).
            drop(events);
            drop(listener);
        })?;
        let thread_id = thread.thread().id();
        Ok(Dispatcher {
            stop,
            shared,
            thread: Some(thread),
            thread_id,
        })
    }

    /// Stops delivery: when this returns no callback runs (one running on the event thread was
    /// waited for) and none will start — except when called from a callback, whose own end the
    /// loop then waits for before it stops.
    fn stop(&self) {
        if std::thread::current().id() == self.thread_id {
            self.shared.stopped.store(true, Ordering::SeqCst);
        } else {
            let _closed = self
                .shared
                .lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.shared.stopped.store(true, Ordering::SeqCst);
        }
        let _ = self.stop.send(true);
    }
}

impl Drop for Dispatcher {
    /// Stops delivery; waits for the thread (and so for `destroy`) unless this is the thread
    /// itself (a callback freeing its client), whose loop then ends when the callback returns.
    fn drop(&mut self) {
        self.stop();
        if std::thread::current().id() != self.thread_id {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn strings_with_a_nul_are_cut_there_and_fields_follow_the_kind() {
        let event = ClientEvent::CallState {
            call_id: "abc\0def".into(),
            state: CallState::Ended,
            reason: Some("hung up".into()),
        };
        let strings = EventStrings::of(&event);
        let e = strings.event(&event);
        assert_eq!(e.kind, vc_event_kind::VC_EVENT_CALL_STATE);
        assert_eq!(e.state, vc_call_state::VC_CALL_STATE_ENDED);
        // SAFETY: the pointers come from `strings`, alive here.
        unsafe {
            assert_eq!(CStr::from_ptr(e.call_id).to_str().unwrap(), "abc");
            assert_eq!(CStr::from_ptr(e.reason).to_str().unwrap(), "hung up");
        }
        assert!(e.user.is_null() && e.payload.is_null());
    }

    static DESTROYED: AtomicUsize = AtomicUsize::new(0);
    unsafe extern "C" fn count_destroy(_ctx: *mut c_void) {
        DESTROYED.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn destroy_runs_once_when_the_dispatcher_stops() {
        let listener = OwnedListener::new(Some(vc_client_listener {
            ctx: std::ptr::null_mut(),
            on_event: None,
            destroy: Some(count_destroy),
        }));
        let (tx, rx) = mpsc::channel::<ClientEvent>(4);
        let dispatcher = Dispatcher::start(listener, rx).unwrap();
        tx.try_send(ClientEvent::Reconnected).unwrap();
        drop(dispatcher);
        assert_eq!(DESTROYED.load(Ordering::SeqCst), 1);
        drop(tx);
        assert_eq!(DESTROYED.load(Ordering::SeqCst), 1);
    }
}
