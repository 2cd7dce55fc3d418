//! The signalling protocol between clients and `vc-server`, version 2 (see `docs/protocol.md`).
//! Every message is a JSON object in one frame ([`super::frame`]); unknown fields and unknown
//! message types are refused.

use serde::{Deserialize, Serialize};

use crate::billing::{CallRecord, ReceiptKind, Tariff};
use crate::conference::entry::{Entry, Sequenced};

/// The protocol version this SDK speaks. Version 2 added the call state `answered_elsewhere` and
/// the `final` flag of `disconnect` (several devices per user).
pub const PROTOCOL_VERSION: u32 = 2;
/// The oldest protocol version a server still serves: a version-1 client is never sent what it
/// cannot read (`answered_elsewhere` becomes `ended`; `disconnect` goes without `final`).
pub const OLDEST_PROTOCOL_VERSION: u32 = 1;
/// Most users in one `active_users` page (keeps the answer well inside one frame).
pub const MAX_USERS_PAGE: u32 = 500;
/// Longest opaque end-to-end payload carried by `establish_session`, in bytes.
pub const MAX_SESSION_PAYLOAD: usize = 48 * 1024;

/// Messages a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message on a connection: the protocol version the client speaks.
    Hello {
        /// Must be [`PROTOCOL_VERSION`].
        protocol: u32,
        /// Free text naming the client software.
        agent: String,
    },
    /// A request; the answer carries the same `id`.
    Request {
        /// Chosen by the client, unique on the connection.
        id: u64,
        /// What is asked.
        request: Request,
    },
    /// Keepalive probe; the server answers `pong` with the same nonce.
    Ping {
        /// Echoed back.
        nonce: u64,
    },
    /// Answer to the server's `ping`.
    Pong {
        /// The nonce of the ping.
        nonce: u64,
    },
}

/// The seed's server interface, as requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// getServerCert: the server's certificate.
    GetServerCert,
    /// registerNewUser: accept the terms of use of this version and become a registered user.
    Register {
        /// The terms version the user accepted (the server's current one, from `welcome`).
        terms_version: String,
    },
    /// unregister: stop being a registered user.
    Unregister,
    /// getActiveUsers: registered users online now, by id, a page at a time.
    GetActiveUsers {
        /// Start after this id (the previous page's `next`).
        #[serde(default)]
        after: Option<String>,
        /// Page size, at most [`MAX_USERS_PAGE`] (the default).
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Receive `presence` events from now on.
    SubscribePresence,
    /// getPeerCert: the certificate of a registered user.
    GetPeerCert {
        /// The user.
        user: String,
    },
    /// reqConnect: call `dst`. `src` must be the caller's own id.
    ReqConnect {
        /// The caller (must be the authenticated id).
        src: String,
        /// The callee.
        dst: String,
    },
    /// acceptConnect / declineConnect: the callee answers an offered call.
    Answer {
        /// The call.
        call_id: String,
        /// The answer.
        answer: Answer,
    },
    /// establishSession: an opaque, signed end-to-end message for the other party of the call.
    EstablishSession {
        /// The call.
        call_id: String,
        /// Opaque to the server (base64 or JSON text chosen by the clients).
        payload: String,
    },
    /// terminateSession: end (or cancel) a call.
    TerminateSession {
        /// The call.
        call_id: String,
        /// Why, shown to the other party.
        #[serde(default)]
        reason: Option<String>,
    },
    /// closeConnection: the server closes the connection after answering.
    CloseConnection,
    /// getAccountInfo.
    GetAccountInfo,
    /// addCredit with a voucher code.
    AddCredit {
        /// The voucher.
        voucher: String,
    },
    /// updateCert: where to renew the certificate.
    UpdateCert,
    /// A signed call receipt, answering a `receipt_request` event.
    SignReceipt {
        /// The call.
        call_id: String,
        /// Answer or end.
        kind: ReceiptKind,
        /// DER ECDSA signature over the requested statement, hex.
        signature_hex: String,
    },
    /// Your call records with their receipts, newest first, a page at a time.
    GetCallRecords {
        /// Continue after this cursor (the previous page's `next`).
        #[serde(default)]
        before: Option<String>,
        /// Page size, at most [`MAX_RECORDS_PAGE`] (the default).
        #[serde(default)]
        limit: Option<u32>,
    },
    /// A signed conference control message for the server to sequence (a `create` entry makes
    /// the conference).
    ConfPost {
        /// The conference.
        conf: String,
        /// The entry.
        entry: Entry,
    },
    /// The distributor's wraps of the next epoch, sent before its bundle (in several requests
    /// when they do not fit one frame); each is delivered to its member only.
    ConfWraps {
        /// The conference.
        conf: String,
        /// The epoch the wraps are for.
        epoch: u32,
        /// Wraps by member index.
        wraps: Vec<WrapDelivery>,
    },
    /// A page of a conference's log (members only).
    ConfLog {
        /// The conference.
        conf: String,
        /// Entries after this sequence number (from the first when absent).
        #[serde(default)]
        after: Option<u64>,
    },
    /// An opaque message to one member, or to every other member (sealed media addresses).
    ConfSignal {
        /// The conference.
        conf: String,
        /// The recipient; absent: everyone else.
        #[serde(default)]
        to: Option<String>,
        /// Opaque, at most [`MAX_CONF_SIGNAL`] bytes.
        payload: String,
    },
}

/// One member's wrapped epoch secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrapDelivery {
    /// The member's index.
    pub member: u16,
    /// The wrap, hex.
    pub wrap: String,
}

/// Longest `conf_signal` payload, bytes.
pub const MAX_CONF_SIGNAL: usize = 4096;
/// Most bytes of entries, as encoded in JSON (a comma each included), in one `conf_log` page or
/// `conf_entries` event (more follow). Leaves room in a frame for the message around them.
pub const MAX_CONF_PAGE_BYTES: usize = 60 * 1024;
/// Most bytes of wraps (hex, with room for their fields) in one `conf_wraps` request.
pub const MAX_WRAPS_CHUNK_BYTES: usize = 40 * 1024;
/// Longest wrap in a `conf_wraps` request (hex of an ML-KEM ciphertext and a sealed secret).
pub const MAX_WRAP_HEX: usize = 2 * (1088 + 48);

/// Most call records in one `call_records` page.
pub const MAX_RECORDS_PAGE: u32 = 10;

/// The callee's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// acceptConnect.
    Accept,
    /// declineConnect.
    Decline,
    /// Busy: declined because the callee is occupied.
    Busy,
}

/// Messages the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMessage {
    /// Answer to `hello`.
    Welcome {
        /// The protocol version in use.
        protocol: u32,
        /// The server's name.
        server: String,
        /// The authenticated client id.
        user: String,
        /// Whether that id is a registered user.
        registered: bool,
        /// The terms-of-use version `register` must accept.
        terms_version: String,
        /// The server pings this often; a connection silent for three periods is dropped.
        keepalive_secs: u64,
    },
    /// Success of the request `id`.
    Response {
        /// The request's id.
        id: u64,
        /// The result.
        result: Response,
    },
    /// Failure of the request `id` (or of the connection, without an id).
    Error {
        /// The request's id, if the error answers one.
        #[serde(default)]
        id: Option<u64>,
        /// Stable code (docs/protocol.md).
        code: String,
        /// What was wrong.
        message: String,
    },
    /// Something happened.
    Event {
        /// What.
        event: Event,
    },
    /// Keepalive probe; answer with `pong`.
    Ping {
        /// Echo it.
        nonce: u64,
    },
    /// Answer to a client's `ping`.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
}

/// Results of requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    /// Done, nothing to report.
    Ok,
    /// The server's certificate.
    ServerCert {
        /// PEM.
        certificate_pem: String,
    },
    /// Registration recorded.
    Registered {
        /// The user.
        user: String,
        /// The accepted terms version.
        terms_version: String,
        /// When, Unix seconds.
        registered_at: i64,
    },
    /// Registered users online now: one page.
    ActiveUsers {
        /// Them, by id.
        users: Vec<UserPresence>,
        /// When more follow: the `after` for the next page.
        #[serde(default)]
        next: Option<String>,
    },
    /// A registered user's certificate.
    PeerCert {
        /// The user.
        user: String,
        /// PEM; check it with the pinned root, the CRL and the expected id.
        certificate_pem: String,
    },
    /// The call was placed and is ringing; its outcome arrives as `call_state` events.
    CallPlaced {
        /// The call's id.
        call_id: String,
    },
    /// The account.
    Account(AccountInfo),
    /// Where to renew the certificate.
    RenewAt {
        /// The CA's URL.
        ca_url: String,
    },
    /// A page of call records.
    CallRecords {
        /// Newest first.
        records: Vec<CallRecord>,
        /// When more follow: the `before` for the next page.
        #[serde(default)]
        next: Option<String>,
    },
    /// The entry was sequenced.
    ConfPosted {
        /// The conference.
        conf: String,
        /// Its sequence number.
        seq: u64,
    },
    /// A page of a conference's log.
    ConfLog {
        /// The conference.
        conf: String,
        /// In order.
        entries: Vec<Sequenced>,
        /// When more follow: the `after` for the next page.
        #[serde(default)]
        next: Option<u64>,
    },
}

/// A user who is online.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPresence {
    /// The user.
    pub user: String,
    /// Online since, Unix seconds.
    pub online_since: i64,
}

/// A user's account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountInfo {
    /// The user.
    pub user: String,
    /// When the user registered, Unix seconds.
    pub registered_at: i64,
    /// The terms version accepted.
    pub terms_version: String,
    /// `prepaid` or `postpaid`.
    pub account_type: String,
    /// Balance in minor currency units (negative on a postpaid account in debt).
    pub balance: i64,
    /// How far a postpaid balance may go below zero, minor units (0 when prepaid).
    pub credit_limit: i64,
    /// Currency code.
    pub currency: String,
    /// The tariff calls are charged by.
    pub tariff: Tariff,
    /// The most recent call records (without receipts), newest first.
    pub recent_calls: Vec<CallRecord>,
}

/// Something the server tells a client without being asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// Someone calls you; answer with `answer`.
    IncomingCall {
        /// The call.
        call_id: String,
        /// The caller.
        from: String,
    },
    /// A call changed state.
    CallState {
        /// The call.
        call_id: String,
        /// The new state.
        state: CallState,
        /// Why, for ending states.
        #[serde(default)]
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
        /// Opaque payload.
        payload: String,
    },
    /// Sign this statement with your certificate key and send it back with `sign_receipt`.
    ReceiptRequest {
        /// The call.
        call_id: String,
        /// Answer or end.
        receipt: ReceiptKind,
        /// The exact text to sign ([`crate::billing::receipt_statement`]).
        statement: String,
    },
    /// Your balance will soon not cover the call.
    LowBalance {
        /// The call.
        call_id: String,
        /// Balance now, minor units.
        balance: i64,
        /// About how many more seconds the balance pays for.
        seconds_left: i64,
    },
    /// The call was answered and the server relays its media: where, and this member's token
    /// (used when the direct path between the members does not work).
    MediaRelay {
        /// The call.
        call_id: String,
        /// The relay's UDP address, `host:port`.
        address: String,
        /// This member's relay token, hex.
        token: String,
        /// This member's secret for authenticating binds to the relay, hex.
        secret: String,
    },
    /// You are invited to a conference (the signed invite entry; check it before showing it).
    ConfInvitation {
        /// The conference.
        conf: String,
        /// The sequenced invite.
        invite: Sequenced,
    },
    /// Sequenced control messages of a conference you are in, in order (on joining: the whole
    /// log, in several events).
    ConfEntries {
        /// The conference.
        conf: String,
        /// In order.
        entries: Vec<Sequenced>,
    },
    /// Your wrap of the next epoch (its bundle follows).
    ConfWrap {
        /// The conference.
        conf: String,
        /// The epoch.
        epoch: u32,
        /// The wrap, hex.
        wrap: String,
    },
    /// An opaque message from another member.
    ConfSignal {
        /// The conference.
        conf: String,
        /// The sender.
        from: String,
        /// Opaque.
        payload: String,
    },
    /// The server relays this conference's media: where, and your token and bind secret.
    ConfRelay {
        /// The conference.
        conf: String,
        /// The relay's UDP address, `host:port`.
        address: String,
        /// Your relay token, hex.
        token: String,
        /// Your bind secret, hex.
        secret: String,
    },
    /// The server is closing this connection.
    Disconnect {
        /// Why, in words.
        reason: String,
        /// Why, as a code (version 2; absent for version 1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<DisconnectCode>,
        /// Whether reconnecting cannot help (a revoked or refused certificate, the client's own
        /// goodbye): the client stops instead of reconnecting.
        #[serde(default, rename = "final", skip_serializing_if = "std::ops::Not::not")]
        is_final: bool,
    },
}

/// Why the server closed a connection: the `code` of `disconnect` (version 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisconnectCode {
    /// The client's certificate was revoked (final).
    CertificateRevoked,
    /// The client's certificate no longer passes the check: expired, or refused by a new CRL
    /// (final).
    CertificateRefused,
    /// The client asked to close (`close_connection`) (final).
    ClientRequest,
    /// The server is shutting down; reconnecting later may work.
    Shutdown,
    /// Nothing arrived from the client for 3 × keepalive.
    KeepaliveTimeout,
    /// The client did not read what the server sent: its outbound queue filled.
    TooSlow,
    /// The client kept sending past the rate limit.
    Flooding,
    /// A frame that could not be read (too large, or malformed).
    BadFrame,
    /// The connection broke or the client closed it (never sent; for the server's own records).
    ConnectionLost,
    /// A code this side does not know (from a newer peer).
    #[serde(other)]
    Other,
}

impl DisconnectCode {
    /// Whether reconnecting cannot help (the client should stop instead).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DisconnectCode::CertificateRevoked
                | DisconnectCode::CertificateRefused
                | DisconnectCode::ClientRequest
        )
    }

    /// The code as it is on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectCode::CertificateRevoked => "certificate_revoked",
            DisconnectCode::CertificateRefused => "certificate_refused",
            DisconnectCode::ClientRequest => "client_request",
            DisconnectCode::Shutdown => "shutdown",
            DisconnectCode::KeepaliveTimeout => "keepalive_timeout",
            DisconnectCode::TooSlow => "too_slow",
            DisconnectCode::Flooding => "flooding",
            DisconnectCode::BadFrame => "bad_frame",
            DisconnectCode::ConnectionLost => "connection_lost",
            DisconnectCode::Other => "other",
        }
    }
}

/// States of a two-party call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// Offered to the callee.
    Ringing,
    /// The callee accepted; the call is up.
    Accepted,
    /// The callee declined.
    Declined,
    /// The callee is busy.
    Busy,
    /// Nobody answered in time.
    NoAnswer,
    /// The call ended (hang-up, disconnect, shutdown); see the reason.
    Ended,
    /// Another device of the callee answered the call first: it rang on this device and is now
    /// over here (final for this device; the call goes on with the other one).
    AnsweredElsewhere,
}

impl CallState {
    /// Whether the call is over in this state.
    pub fn is_final(self) -> bool {
        !matches!(self, CallState::Ringing | CallState::Accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_unknown_fields_are_refused() {
        let m = ClientMessage::Request {
            id: 3,
            request: Request::ReqConnect {
                src: "alice".into(),
                dst: "bob".into(),
            },
        };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            json,
            r#"{"type":"request","id":3,"request":{"op":"req_connect","src":"alice","dst":"bob"}}"#
        );
        assert_eq!(serde_json::from_str::<ClientMessage>(&json).unwrap(), m);
        for bad in [
            r#"{"type":"request","id":3,"request":{"op":"req_connect","src":"a","dst":"b","x":1}}"#,
            r#"{"type":"request","id":3,"extra":1,"request":{"op":"unregister"}}"#,
            r#"{"type":"request","id":3,"request":{"op":"launch_missiles"}}"#,
            r#"{"type":"shout"}"#,
        ] {
            assert!(serde_json::from_str::<ClientMessage>(bad).is_err(), "{bad}");
        }
        let e = ServerMessage::Event {
            event: Event::CallState {
                call_id: "c".into(),
                state: CallState::NoAnswer,
                reason: None,
            },
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<ServerMessage>(&json).unwrap(), e);
        let r = ServerMessage::Response {
            id: 1,
            result: Response::Account(AccountInfo {
                user: "a".into(),
                registered_at: 1,
                terms_version: "1".into(),
                account_type: "prepaid".into(),
                balance: 0,
                credit_limit: 0,
                currency: "EUR".into(),
                tariff: Tariff::default(),
                recent_calls: Vec::new(),
            }),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<ServerMessage>(&json).unwrap(), r);
    }
}
