//! Clients for the bindings: connect, register, presence, calls, account; events to listeners.

use std::sync::Arc;

use tokio::sync::watch;
use vcsdk::client::{ClientEvent, ClientOptions};
use vcsdk::proto::signal::AccountInfo;

use super::conference::{AccessList, Conference, ConferencePolicy};
use super::listeners::Listeners;
use super::media::{MediaOptions, MediaSession};
use super::{on_runtime, Identity, Subscription, VcError};

/// The state of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum CallState {
    /// The callee is being asked.
    Ringing,
    /// The call is up.
    Accepted,
    /// The callee declined (final).
    Declined,
    /// The callee was busy (final).
    Busy,
    /// Nobody answered in time (final).
    NoAnswer,
    /// The call ended (final).
    Ended,
    /// Another device of this user answered the call first (final on this device).
    AnsweredElsewhere,
}

impl From<vcsdk::proto::signal::CallState> for CallState {
    fn from(s: vcsdk::proto::signal::CallState) -> Self {
        use vcsdk::proto::signal::CallState as S;
        match s {
            S::Ringing => CallState::Ringing,
            S::Accepted => CallState::Accepted,
            S::Declined => CallState::Declined,
            S::Busy => CallState::Busy,
            S::NoAnswer => CallState::NoAnswer,
            S::Ended => CallState::Ended,
            S::AnsweredElsewhere => CallState::AnsweredElsewhere,
        }
    }
}

/// How a callee answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Answer {
    /// Take the call.
    Accept,
    /// Refuse it.
    Decline,
    /// Refuse it as busy.
    Busy,
}

/// A registered user online now.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct UserPresence {
    /// The user's id.
    pub user: String,
    /// Online since, Unix seconds.
    pub online_since: i64,
}

/// The most recent call on an account.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CallCharge {
    /// The call.
    pub call_id: String,
    /// Billed seconds.
    pub billable_secs: i64,
    /// The charge, minor currency units.
    pub cost: i64,
}

/// A user's account; money in minor currency units (integers).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Account {
    /// The user.
    pub user: String,
    /// Balance (negative on a postpaid account in debt).
    pub balance: i64,
    /// How far a postpaid balance may go below zero (0 when prepaid).
    pub credit_limit: i64,
    /// Prepaid (true) or postpaid.
    pub prepaid: bool,
    /// ISO 4217 currency code.
    pub currency: String,
    /// Charged when a call is answered.
    pub connect_fee: i64,
    /// Charged per 60 billed seconds.
    pub rate_per_minute: i64,
    /// The first billing increment, seconds.
    pub first_increment_secs: u32,
    /// Each following increment, seconds.
    pub next_increment_secs: u32,
    /// When the user registered, Unix seconds.
    pub registered_at: i64,
    /// The most recent call, if any.
    pub last_call: Option<CallCharge>,
}

impl From<AccountInfo> for Account {
    fn from(info: AccountInfo) -> Self {
        Account {
            last_call: info.recent_calls.first().map(|c| CallCharge {
                call_id: c.call_id.clone(),
                billable_secs: c.billable_secs,
                cost: c.cost,
            }),
            prepaid: info.account_type == "prepaid",
            user: info.user,
            balance: info.balance,
            credit_limit: info.credit_limit,
            currency: info.currency,
            connect_fee: info.tariff.connect_fee,
            rate_per_minute: info.tariff.rate_per_minute,
            first_increment_secs: info.tariff.first_increment_secs,
            next_increment_secs: info.tariff.next_increment_secs,
            registered_at: info.registered_at,
        }
    }
}

/// Receives a client's events. Called on the client's event thread, one call at a time, in order;
/// a method may call back into the SDK. Events that arrive before the first listener is added are
/// kept (up to 1 024) and delivered to it.
#[uniffi::export(with_foreign)]
pub trait ClientListener: Send + Sync {
    /// Someone calls; answer with `Client.answer`.
    fn on_incoming_call(&self, call_id: String, from: String);
    /// A call changed state; `reason` says why it ended.
    fn on_call_state(&self, call_id: String, state: CallState, reason: Option<String>);
    /// A registered user came online or went offline (after `subscribe_presence`).
    fn on_presence(&self, user: String, online: bool);
    /// The balance will soon not pay for the call.
    fn on_low_balance(&self, call_id: String, balance: i64, seconds_left: i64);
    /// The connection to the server was lost (`connected` false, with the reason) or is back.
    /// When lost, `Client.has_ended()` tells whether it is being repaired (false) or ended for
    /// good (true: nothing more arrives; connect again to go on).
    fn on_connection(&self, connected: bool, reason: Option<String>);
    /// An invitation to conference `conf` from `from` passed its checks (the inviter's
    /// certificate and signature, our access list); join with `Client.join_conference` or
    /// decline with `Client.decline_conference`.
    fn on_conference_invitation(&self, conf: String, from: String);
}

fn deliver(listener: &dyn ClientListener, event: &ClientEvent) {
    match event.clone() {
        ClientEvent::IncomingCall { call_id, from } => listener.on_incoming_call(call_id, from),
        ClientEvent::CallState {
            call_id,
            state,
            reason,
        } => listener.on_call_state(call_id, state.into(), reason),
        ClientEvent::Presence { user, online } => listener.on_presence(user, online),
        ClientEvent::LowBalance {
            call_id,
            balance,
            seconds_left,
        } => listener.on_low_balance(call_id, balance, seconds_left),
        ClientEvent::Disconnected { reason, .. } => listener.on_connection(false, Some(reason)),
        ClientEvent::Reconnected => listener.on_connection(true, None),
        ClientEvent::ConferenceInvitation { conf, from, .. } => {
            listener.on_conference_invitation(conf, from)
        }
        // Session messages are the media's; refused receipts are logged by the SDK (the C
        // interface reports them as VC_EVENT_RECEIPT_REFUSED).
        ClientEvent::SessionMessage { .. } | ClientEvent::ReceiptRefused { .. } => {}
    }
}

/// A client connected to a vc-server. Lost connections are repaired in the background.
#[derive(uniffi::Object)]
pub struct Client {
    client: vcsdk::client::Client,
    listeners: Arc<Listeners<dyn ClientListener>>,
    stop: watch::Sender<bool>,
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let client = self.client.clone();
        let _ = crate::runtime::spawn(async move {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), client.close()).await;
        });
    }
}

/// Connects to the server at `server` (`HOST:PORT`) as `identity`: mutual TLS against the pinned
/// root, with the CRL fetched from the CA first (the cached one if the CA cannot be reached).
/// `server_name` is the name the server's certificate must carry (default: the host of `server`).
#[uniffi::export]
pub async fn connect(
    identity: Arc<Identity>,
    server: String,
    server_name: Option<String>,
) -> Result<Arc<Client>, VcError> {
    let store = identity.store();
    let current = identity.current();
    on_runtime(async move {
        let check = match store.refresh_crl().await {
            Ok(check) => check,
            Err(_) => store.certificate_check()?,
        };
        let mut options = ClientOptions::new(server, current, check)
            .with_crl_source(vcsdk::client::CrlSource::Store(store));
        options.server_name = server_name;
        let (client, events) = vcsdk::client::Client::connect(options).await?;
        let listeners = Listeners::new();
        let (stop, stopped) = watch::channel(false);
        listeners.pump("vcsdk-events", events, deliver, stopped)?;
        Ok(Arc::new(Client {
            client,
            listeners,
            stop,
        }))
    })
    .await
}

#[uniffi::export]
impl Client {
    /// Adds a listener for this client's events; it hears them until the returned subscription is
    /// cancelled or dropped.
    pub fn add_listener(&self, listener: Arc<dyn ClientListener>) -> Arc<Subscription> {
        self.listeners.add(listener)
    }

    /// This client's user id.
    pub fn user(&self) -> String {
        self.client.user().to_owned()
    }

    /// Whether this client has stopped for good: disconnected by the application, or its
    /// connection ended and will not be repaired (the server ended it for good, or a reconnection
    /// was refused for good). Already true when `on_connection(false, …)` reports that end; false
    /// there means the client is reconnecting.
    pub fn has_ended(&self) -> bool {
        self.client.has_ended()
    }

    /// Whether this user is registered (as of the latest connection).
    pub fn is_registered(&self) -> bool {
        self.client.welcome().registered
    }

    /// Registers, accepting the terms of use of `terms_version` (default: the server's current).
    pub async fn register(&self, terms_version: Option<String>) -> Result<(), VcError> {
        let client = self.client.clone();
        let terms = terms_version.unwrap_or_else(|| client.welcome().terms_version);
        on_runtime(async move { Ok(client.register(&terms).await.map(drop)?) }).await
    }

    /// The registered users online now.
    pub async fn active_users(&self) -> Result<Vec<UserPresence>, VcError> {
        let client = self.client.clone();
        on_runtime(async move {
            Ok(client
                .active_users()
                .await?
                .into_iter()
                .map(|u| UserPresence {
                    user: u.user,
                    online_since: u.online_since,
                })
                .collect())
        })
        .await
    }

    /// Asks for presence events of every registered user.
    pub async fn subscribe_presence(&self) -> Result<(), VcError> {
        let client = self.client.clone();
        on_runtime(async move { Ok(client.subscribe_presence().await?) }).await
    }

    /// Calls `user`; returns the call id. States follow as `on_call_state`.
    pub async fn call(&self, user: String) -> Result<String, VcError> {
        let client = self.client.clone();
        on_runtime(async move { Ok(client.call(&user).await?) }).await
    }

    /// Answers the incoming call `call_id`.
    pub async fn answer(&self, call_id: String, answer: Answer) -> Result<(), VcError> {
        let client = self.client.clone();
        let answer = match answer {
            Answer::Accept => vcsdk::proto::signal::Answer::Accept,
            Answer::Decline => vcsdk::proto::signal::Answer::Decline,
            Answer::Busy => vcsdk::proto::signal::Answer::Busy,
        };
        on_runtime(async move { Ok(client.answer(&call_id, answer).await?) }).await
    }

    /// Hangs up (or cancels) the call `call_id`.
    pub async fn hangup(&self, call_id: String) -> Result<(), VcError> {
        let client = self.client.clone();
        on_runtime(async move { Ok(client.terminate(&call_id, None).await?) }).await
    }

    /// This user's account.
    pub async fn account(&self) -> Result<Account, VcError> {
        let client = self.client.clone();
        on_runtime(async move { Ok(client.account_info().await?.into()) }).await
    }

    /// Redeems a prepaid voucher; returns the account after it.
    pub async fn redeem_voucher(&self, voucher: String) -> Result<Account, VcError> {
        let client = self.client.clone();
        on_runtime(async move { Ok(client.add_credit(&voucher).await?.into()) }).await
    }

    /// Starts the media of the accepted call `call_id` (both parties do): end-to-end keys with
    /// the peer, a direct path or the server's relay.
    pub async fn open_media(
        &self,
        call_id: String,
        options: MediaOptions,
    ) -> Result<Arc<MediaSession>, VcError> {
        let client = self.client.clone();
        let config = options.config()?;
        on_runtime(async move {
            let session = client.media(&call_id, config).await?;
            Ok(Arc::new(MediaSession::new(session)))
        })
        .await
    }

    /// Creates a conference with `policy` (default: level 2, moderation); we are its first member.
    /// `direct` false sends media only through the server's relay.
    pub async fn create_conference(
        &self,
        policy: Option<ConferencePolicy>,
        direct: bool,
    ) -> Result<Arc<Conference>, VcError> {
        let client = self.client.clone();
        let options = super::conference::options(policy, direct)?;
        on_runtime(async move {
            Ok(Arc::new(Conference::new(
                client.create_conference(options).await?,
            )?))
        })
        .await
    }

    /// Joins conference `conf`, to which an invitation was shown (`on_conference_invitation`).
    pub async fn join_conference(
        &self,
        conf: String,
        direct: bool,
    ) -> Result<Arc<Conference>, VcError> {
        let client = self.client.clone();
        let options = super::conference::options(None, direct)?;
        on_runtime(async move {
            Ok(Arc::new(Conference::new(
                client.join_conference(&conf, options).await?,
            )?))
        })
        .await
    }

    /// Declines the invitation to conference `conf`.
    pub async fn decline_conference(&self, conf: String) -> Result<(), VcError> {
        let client = self.client.clone();
        on_runtime(async move { Ok(client.decline_conference(&conf).await?) }).await
    }

    /// Sets who may invite this client; refused invitations are declined unseen.
    pub fn set_access_list(&self, list: AccessList) -> Result<(), VcError> {
        self.client.set_access_list(list.sdk()?);
        Ok(())
    }

    /// Says goodbye to the server and stops reconnecting; listeners hear nothing more. (Named so
    /// as not to clash with the `close()` of Kotlin's AutoCloseable, which frees the object.)
    pub async fn disconnect(&self) -> Result<(), VcError> {
        let _ = self.stop.send(true);
        let client = self.client.clone();
        on_runtime(async move { Ok(client.close().await?) }).await
    }
}

/// `minor` units of `currency` (ISO 4217) as a person reads them: major units with the
/// currency's decimals and its code (`0.10 EUR`, `1200 JPY`). For display only; amounts stay
/// integers of minor units everywhere else.
#[uniffi::export]
pub fn format_money(minor: i64, currency: String) -> String {
    vcsdk::billing::Money::new(minor, &currency).to_string()
}
