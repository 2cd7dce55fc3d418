//! Clients: connect to a vc-server with an identity (mutual TLS), register, see who is online,
//! place and answer calls, and manage the prepaid account. Every function blocks until the server
//! answered; events arrive on the client's event thread (see vc_client_listener).

use std::ffi::c_char;
use std::time::Duration;

use vcsdk::client::{Client, ClientOptions};
use vcsdk::proto::signal::{AccountInfo, Answer};

use crate::events::{vc_client_listener, Dispatcher, OwnedListener};
use crate::identity::vc_identity;
use crate::result::{
    boundary, done, fail, free_handle, hand_out, handle, optional_text, required, sdk_error, text,
    vc_result, write_text,
};
use crate::runtime::block_on;

/// A buffer of this many bytes holds any client id or call id with its NUL.
pub const VC_ID_CAPACITY: usize = 65;

/// How long vc_client_free() waits for the server to acknowledge the goodbye.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A connected client. Safe to use from several threads at once.
pub struct vc_client {
    client: Client,
    dispatcher: Option<Dispatcher>,
}

impl vc_client {
    /// The SDK client behind the handle.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }
}

impl Drop for vc_client {
    fn drop(&mut self) {
        // Delivery stops first (a callback running elsewhere is waited for, `destroy` runs), so
        // nothing the goodbye causes — VC_EVENT_DISCONNECTED above all — reaches the listener.
        drop(self.dispatcher.take());
        let client = self.client.clone();
        let _ = block_on(async move {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, client.close()).await;
        });
    }
}

/// How a callee answers.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum vc_answer {
    /// Take the call.
    VC_ANSWER_ACCEPT = 0,
    /// Refuse it.
    VC_ANSWER_DECLINE = 1,
    /// Refuse it as busy.
    VC_ANSWER_BUSY = 2,
}

/// A user's account, amounts in minor currency units (integers, never floating point).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vc_account {
    /// Balance (negative on a postpaid account in debt).
    pub balance: i64,
    /// How far a postpaid balance may go below zero (0 when prepaid).
    pub credit_limit: i64,
    /// Prepaid (true) or postpaid (false).
    pub prepaid: bool,
    /// ISO 4217 currency code, NUL-terminated.
    pub currency: [c_char; 8],
    /// Charged once when a call is answered.
    pub connect_fee: i64,
    /// Charged per 60 billed seconds.
    pub rate_per_minute: i64,
    /// The first billing increment, seconds.
    pub first_increment_secs: u32,
    /// Each following increment, seconds.
    pub next_increment_secs: u32,
    /// When the user registered, Unix seconds.
    pub registered_at: i64,
    /// Whether the fields below describe a call.
    pub has_last_call: bool,
    /// The most recent call's charge.
    pub last_call_cost: i64,
    /// The most recent call's billed seconds.
    pub last_call_billable_secs: i64,
}

impl From<&AccountInfo> for vc_account {
    fn from(info: &AccountInfo) -> Self {
        let mut currency = [0 as c_char; 8];
        for (slot, byte) in currency
            .iter_mut()
            .zip(info.currency.bytes().filter(|b| *b != 0).take(7))
        {
            *slot = byte as c_char;
        }
        let last = info.recent_calls.first();
        vc_account {
            balance: info.balance,
            credit_limit: info.credit_limit,
            prepaid: info.account_type == "prepaid",
            currency,
            connect_fee: info.tariff.connect_fee,
            rate_per_minute: info.tariff.rate_per_minute,
            first_increment_secs: info.tariff.first_increment_secs,
            next_increment_secs: info.tariff.next_increment_secs,
            registered_at: info.registered_at,
            has_last_call: last.is_some(),
            last_call_cost: last.map_or(0, |c| c.cost),
            last_call_billable_secs: last.map_or(0, |c| c.billable_secs),
        }
    }
}

/// Connects to the server at `server` (`HOST:PORT`) as `identity`: mutual TLS against the pinned
/// root, with the CRL fetched from the CA first (the cached one if the CA is unreachable).
/// Events go to `listener`. The library owns the listener from this call on, whatever it
/// returns: its `destroy` runs exactly once — on failure before this returns. Lost connections
/// are repaired in the background (VC_EVENT_DISCONNECTED / _RECONNECTED). Free with
/// vc_client_free(). A certificate the server refuses (foreign CA, revoked) gives
/// VC_RESULT_CONNECTION; refusals: `unsupported_version`, `shutting_down`, `too_many_devices`
/// (this user already has as many connections — devices — open as the server allows). Several
/// clients of one identity may be connected at once: each is a device, and calls ring on all.
/// A connection that ends for good (a revoked certificate, too many devices) is reported as
/// VC_EVENT_CLOSED, after which the client does not reconnect.
///
/// # Safety
/// Pointers: `identity` required; `server` required; `server_name` optional (NULL: the host of
/// `server`); `listener` optional (NULL: no events), read during the call only; `out` required.
#[no_mangle]
pub unsafe extern "C" fn vc_client_connect(
    identity: *const vc_identity,
    server: *const c_char,
    server_name: *const c_char,
    listener: *const vc_client_listener,
    out: *mut *mut vc_client,
) -> vc_result {
    // SAFETY: NULL or readable by the caller's promise; taken before anything can fail.
    let listener = OwnedListener::new(unsafe { listener.as_ref() }.copied());
    boundary(move || {
        done((move || {
            required(out, "out")?;
            // SAFETY: forwarded caller promises.
            let (identity, server, server_name) = unsafe {
                (
                    handle(identity, "identity")?,
                    text(server, "server")?,
                    optional_text(server_name, "server_name")?,
                )
            };
            let store = identity.store().clone();
            let mut options = ClientOptions::new(server, identity.current(), {
                match block_on(store.refresh_crl())? {
                    Ok(check) => check,
                    Err(_) => store.certificate_check().map_err(sdk_error)?,
                }
            })
            .with_crl_source(vcsdk::client::CrlSource::Store(store));
            options.server_name = server_name.map(str::to_owned);
            let (client, events) = block_on(Client::connect(options))?.map_err(sdk_error)?;
            let dispatcher = Dispatcher::start(listener, events).map_err(|e| {
                fail(
                    vc_result::VC_RESULT_STORE,
                    format!("starting the event thread: {e}"),
                )
            })?;
            let value = vc_client {
                client,
                dispatcher: Some(dispatcher),
            };
            // SAFETY: `out` checked non-NULL.
            unsafe { hand_out(out, value) };
            Ok(())
        })())
    })
}

/// Frees the client and everything it holds. First event delivery stops: a callback running on
/// the event thread is waited for, no callback starts after it — nothing the goodbye causes
/// (VC_EVENT_DISCONNECTED above all) reaches the listener — and the listener's `destroy` runs.
/// Then it says goodbye to the server (waiting up to 2 s) and closes the connection: when this
/// returns the socket is closed and the client's background work has ended. Called from one of
/// this client's own callbacks, `destroy` instead runs as soon as that callback returns. Media
/// sessions opened from the client stay valid handles (closed).
///
/// # Safety
/// Pointers: `client` optional (NULL: nothing happens); not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn vc_client_free(client: *mut vc_client) {
    // SAFETY: forwarded caller promise.
    unsafe { free_handle(client) }
}

/// The client behind `ptr`.
///
/// # Safety
/// `ptr` NULL or a live client.
unsafe fn live<'a>(ptr: *const vc_client) -> Result<&'a Client, vc_result> {
    // SAFETY: forwarded caller promise.
    Ok(unsafe { handle(ptr, "client") }?.client())
}

/// Whether this user is registered with the server (as of the latest connection) into `*out`.
/// Answers from what the client knows, without a request.
///
/// # Safety
/// Pointers: `client` required; `out` required.
#[no_mangle]
pub unsafe extern "C" fn vc_client_is_registered(
    client: *const vc_client,
    out: *mut bool,
) -> vc_result {
    boundary(|| {
        done((|| {
            required(out, "out")?;
            // SAFETY: forwarded caller promise.
            let client = unsafe { live(client)? };
            // SAFETY: checked non-NULL; writable by the caller's promise.
            unsafe { *out = client.welcome().registered };
            Ok(())
        })())
    })
}

/// Registers this user, accepting the server's terms of use of version `terms_version`.
/// Refusals: `terms_mismatch` (not the server's current version).
///
/// # Safety
/// Pointers: `client` required; `terms_version` optional (NULL: the version the server announced
/// on connecting).
#[no_mangle]
pub unsafe extern "C" fn vc_client_register(
    client: *const vc_client,
    terms_version: *const c_char,
) -> vc_result {
    boundary(|| {
        done((|| {
            // SAFETY: forwarded caller promises.
            let (client, terms) = unsafe {
                (
                    live(client)?,
                    optional_text(terms_version, "terms_version")?,
                )
            };
            let terms = terms
                .map(str::to_owned)
                .unwrap_or_else(|| client.welcome().terms_version);
            block_on(client.register(&terms))?
                .map(drop)
                .map_err(sdk_error)
        })())
    })
}

/// Writes the ids of the registered users online now (this one included), separated by '\n',
/// into `buf` (capacity `cap`) as text out (see the conventions: on VC_RESULT_BUFFER_TOO_SMALL
/// `*out_len` is the capacity needed, NUL included; ask again with that much). Refusals:
/// `not_registered`.
///
/// # Safety
/// Pointers: `client` required; `buf` required unless `cap` is 0; `out_len` optional (NULL: no
/// length reported).
#[no_mangle]
pub unsafe extern "C" fn vc_client_active_users(
    client: *const vc_client,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> vc_result {
    boundary(|| {
        done((|| {
            // SAFETY: forwarded caller promise.
            let client = unsafe { live(client)? };
            if buf.is_null() && cap > 0 {
                return Err(fail(
                    vc_result::VC_RESULT_NULL_PARAMETER,
                    format!("buf is NULL with capacity {cap}"),
                ));
            }
            let users = block_on(client.active_users())?.map_err(sdk_error)?;
            let list = users
                .iter()
                .map(|u| u.user.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            // SAFETY: forwarded caller promises.
            unsafe { write_text(&list, buf, cap, out_len, "buf") }
        })())
    })
}

/// Asks the server for presence events (VC_EVENT_PRESENCE) of every registered user.
/// Refusals: `not_registered`.
///
/// # Safety
/// Pointers: `client` required.
#[no_mangle]
pub unsafe extern "C" fn vc_client_subscribe_presence(client: *const vc_client) -> vc_result {
    boundary(|| {
        done((|| {
            // SAFETY: forwarded caller promise.
            let client = unsafe { live(client)? };
            block_on(client.subscribe_presence())?.map_err(sdk_error)
        })())
    })
}

/// Calls `user`; the call's id goes into `call_id` as text out, its length into `*out_len`. `cap`
/// must be at least VC_ID_CAPACITY, checked before anything is sent: with less, no call is
/// placed and the result is VC_RESULT_BUFFER_TOO_SMALL with `*out_len` = VC_ID_CAPACITY. What
/// follows arrives as VC_EVENT_CALL_STATE events. Refusals: `not_registered`,
/// `insufficient_credit` (the caller cannot pay the connect fee and first increment),
/// `unknown_user` (not a registered user), `user_offline`, `self_call`, `already_in_call` (this
/// user is in a call, on this or another device).
///
/// # Safety
/// Pointers: `client` required; `user` required; `call_id` required (`cap` bytes); `out_len`
/// optional (NULL: no length reported).
#[no_mangle]
pub unsafe extern "C" fn vc_client_call(
    client: *const vc_client,
    user: *const c_char,
    call_id: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> vc_result {
    boundary(|| {
        done((|| {
            if call_id.is_null() {
                return Err(fail(vc_result::VC_RESULT_NULL_PARAMETER, "call_id is NULL"));
            }
            // SAFETY: forwarded caller promises.
            let (client, user) = unsafe { (live(client)?, text(user, "user")?) };
            if cap < VC_ID_CAPACITY {
                if !out_len.is_null() {
                    // SAFETY: non-NULL and writable by the caller's promise.
                    unsafe { *out_len = VC_ID_CAPACITY };
                }
                return Err(fail(
                    vc_result::VC_RESULT_BUFFER_TOO_SMALL,
                    format!("call_id needs VC_ID_CAPACITY ({VC_ID_CAPACITY}) bytes; {cap} given; no call was placed"),
                ));
            }
            let id = block_on(client.call(user))?.map_err(sdk_error)?;
            if id.len() >= VC_ID_CAPACITY {
                // Not from a vc-server: the call is not left ringing with an id the caller
                // never got.
                let _ = block_on(client.terminate(&id, None));
                return Err(fail(
                    vc_result::VC_RESULT_PROTOCOL,
                    format!("the server's call id has {} bytes; at most {} are allowed (the call was hung up)", id.len(), VC_ID_CAPACITY - 1),
                ));
            }
            // SAFETY: forwarded caller promises.
            unsafe { write_text(&id, call_id, cap, out_len, "call_id") }
        })())
    })
}

/// Answers the incoming call `call_id` (from VC_EVENT_INCOMING_CALL) with `answer`, a vc_answer
/// value (passed as a number so that any value is checked: others give
/// VC_RESULT_INVALID_ARGUMENT). Refusals: `not_registered`, `not_offered` (no such call offered
/// to this user, or it already ended), `call_not_ringing` (already answered). The first device
/// of the user to accept takes the call; the others get VC_CALL_STATE_ANSWERED_ELSEWHERE.
///
/// # Safety
/// Pointers: `client` required; `call_id` required.
#[no_mangle]
pub unsafe extern "C" fn vc_client_answer(
    client: *const vc_client,
    call_id: *const c_char,
    answer: u32,
) -> vc_result {
    boundary(|| {
        done((|| {
            // SAFETY: forwarded caller promises.
            let (client, call_id) = unsafe { (live(client)?, text(call_id, "call_id")?) };
            let answer = match answer {
                x if x == vc_answer::VC_ANSWER_ACCEPT as u32 => Answer::Accept,
                x if x == vc_answer::VC_ANSWER_DECLINE as u32 => Answer::Decline,
                x if x == vc_answer::VC_ANSWER_BUSY as u32 => Answer::Busy,
                other => {
                    return Err(fail(
                        vc_result::VC_RESULT_INVALID_ARGUMENT,
                        format!("answer {other} is not a vc_answer (0 accept, 1 decline, 2 busy)"),
                    ))
                }
            };
            block_on(client.answer(call_id, answer))?.map_err(sdk_error)
        })())
    })
}

/// Hangs up (or cancels, while it rings) the call `call_id`; both sides then get
/// VC_EVENT_CALL_STATE with VC_CALL_STATE_ENDED. Refusals: `not_registered`, `unknown_call` (no
/// such open call), `not_in_call` (this user is not one of its parties, or the call is on
/// another device of this user).
///
/// # Safety
/// Pointers: `client` required; `call_id` required.
#[no_mangle]
pub unsafe extern "C" fn vc_client_hangup(
    client: *const vc_client,
    call_id: *const c_char,
) -> vc_result {
    boundary(|| {
        done((|| {
            // SAFETY: forwarded caller promises.
            let (client, call_id) = unsafe { (live(client)?, text(call_id, "call_id")?) };
            block_on(client.terminate(call_id, None))?.map_err(sdk_error)
        })())
    })
}

/// Fills `*out` with this user's account: balance, tariff, last call. Refusals:
/// `not_registered`.
///
/// # Safety
/// Pointers: `client` required; `out` required.
#[no_mangle]
pub unsafe extern "C" fn vc_client_account(
    client: *const vc_client,
    out: *mut vc_account,
) -> vc_result {
    boundary(|| {
        done((|| {
            required(out, "out")?;
            // SAFETY: forwarded caller promise.
            let client = unsafe { live(client)? };
            let info = block_on(client.account_info())?.map_err(sdk_error)?;
            // SAFETY: checked non-NULL; writable by the caller's promise.
            unsafe { *out = vc_account::from(&info) };
            Ok(())
        })())
    })
}

/// Redeems the prepaid voucher `voucher` and fills `*out` with the account after it. Refusals:
/// `not_registered`, `voucher_unknown`, `voucher_redeemed`, `bad_amount` (the balance would
/// overflow).
///
/// # Safety
/// Pointers: `client` required; `voucher` required; `out` optional (NULL: the account is not
/// reported).
#[no_mangle]
pub unsafe extern "C" fn vc_client_redeem_voucher(
    client: *const vc_client,
    voucher: *const c_char,
    out: *mut vc_account,
) -> vc_result {
    boundary(|| {
        done((|| {
            // SAFETY: forwarded caller promises.
            let (client, voucher) = unsafe { (live(client)?, text(voucher, "voucher")?) };
            let info = block_on(client.add_credit(voucher))?.map_err(sdk_error)?;
            if !out.is_null() {
                // SAFETY: non-NULL; writable by the caller's promise.
                unsafe { *out = vc_account::from(&info) };
            }
            Ok(())
        })())
    })
}

/// Writes `minor` units of `currency` (an ISO 4217 code, e.g. "EUR") as a person reads them,
/// in major units with the currency's decimals and its code — `0.10 EUR`, `-5.00 USD`,
/// `1200 JPY` — into `buf` as text out. Amounts stay integers everywhere else; this is for
/// display only.
///
/// # Safety
/// Pointers: `currency` required; `buf` required unless `cap` is 0; `out_len` optional (NULL: no
/// length reported).
#[no_mangle]
pub unsafe extern "C" fn vc_money_format(
    minor: i64,
    currency: *const c_char,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> vc_result {
    boundary(|| {
        done((|| {
            // SAFETY: forwarded caller promise.
            let currency = unsafe { text(currency, "currency")? };
            let text = vcsdk::billing::Money::new(minor, currency).to_string();
            // SAFETY: forwarded caller promises.
            unsafe { write_text(&text, buf, cap, out_len, "buf") }
        })())
    })
}
