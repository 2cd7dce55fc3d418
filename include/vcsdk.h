/*
 * vcsdk.h: the C interface of libvcsdk, the end-to-end encrypted video conferencing SDK.
 * Generated from the ffi crate by `cargo run -p gen-header`; do not edit by hand.
 *
 * Conventions
 * - Every function returns a vc_result (VC_RESULT_OK = 0) unless it says otherwise; on failure
 *   vc_last_error_message() gives the details for the calling thread.
 * - Handles are opaque. A constructor (vc_sframe_context_new, vc_identity_enroll,
 *   vc_identity_load, vc_client_connect, vc_media_open) writes the new handle to its last
 *   argument (vc_x **out) and only on success; vc_x_free(vc_x *) frees it and accepts NULL.
 *   Never use a handle after freeing it.
 * - Errors: the vc_result says the kind; vc_last_error_message() the details and
 *   vc_last_error_code() a stable word (for VC_RESULT_REFUSED, the CA's or server's reason, e.g.
 *   "insufficient_credit"), both for the calling thread and until its next vc_* call.
 * - Typical use: vc_identity_load (or vc_identity_enroll once), vc_client_connect with a
 *   listener, vc_client_register once, vc_client_call / vc_client_answer, then on both sides
 *   vc_media_open and vc_media_send / vc_media_receive, vc_client_hangup; samples/c/vc_sample.c
 *   is a complete program.
 * - Byte buffers are a pointer and a length. Output buffers belong to the caller: no function
 *   hands out memory for the caller to free, and the SFrame functions allocate nothing at all.
 * - Enum values the caller passes in (vc_answer, vc_stream) travel as uint32_t and are checked:
 *   an unknown value is VC_RESULT_INVALID_ARGUMENT.
 * - Blocking: client, identity and media functions block the calling thread until the server,
 *   the CA or the peer answered (each with its own time limit); the library runs its network work
 *   on two threads of its own, started on first use.
 * - No function panics or aborts across this interface: an internal failure becomes
 *   VC_RESULT_PANIC. NULL where a pointer is required gives VC_RESULT_NULL_PARAMETER.
 * - Threads: a handle may be used from any thread, but not from two threads at once unless its
 *   type says so (vc_identity, vc_client and vc_media may). Events arrive on a thread of the
 *   library: see vc_client_listener for what a callback may do.
 */

#ifndef VCSDK_H
#define VCSDK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

// A buffer of this many bytes holds any client id or call id with its NUL.
#define VC_ID_CAPACITY 65

// Most bytes protection adds to a frame (header and tag): an output buffer of the plaintext's
// length plus this always suffices.
#define VC_SFRAME_MAX_OVERHEAD 33

// Cipher suite AES_128_GCM_SHA256_128.
#define VC_SFRAME_SUITE_AES_128_GCM_SHA256_128 4

// Cipher suite AES_256_GCM_SHA512_128.
#define VC_SFRAME_SUITE_AES_256_GCM_SHA512_128 5

// What a `vc_*` function did. The values are fixed and never renumbered.
typedef enum {
  // Success.
  VC_RESULT_OK = 0,
  // A required pointer was NULL.
  VC_RESULT_NULL_PARAMETER = 1,
  // An argument was malformed or out of range (see vc_last_error_message()).
  VC_RESULT_INVALID_ARGUMENT = 2,
  // The output buffer is too small; the needed size is reported where the function says.
  VC_RESULT_BUFFER_TOO_SMALL = 3,
  // No key is installed for the frame's or the given KID (or it was retired).
  VC_RESULT_UNKNOWN_KEY = 4,
  // The frame was already received, or is older than the replay window.
  VC_RESULT_REPLAY = 5,
  // The frame did not authenticate: altered, or protected with another key.
  VC_RESULT_AUTHENTICATION_FAILED = 6,
  // The data is not a well-formed frame.
  VC_RESULT_MALFORMED = 7,
  // A sending key for this KID was installed before; a new key needs a new KID.
  VC_RESULT_KEY_REUSED = 8,
  // Every counter of the key was used; install a new key.
  VC_RESULT_COUNTER_EXHAUSTED = 9,
  // An internal failure was caught at the interface (a bug; please report it).
  VC_RESULT_PANIC = 10,
  // A certificate was refused: foreign root, expired, revoked, wrong name or usage.
  VC_RESULT_CERTIFICATE = 11,
  // A file or the identity store could not be read or written, or holds damaged data.
  VC_RESULT_STORE = 12,
  // The network connection or the TLS handshake failed.
  VC_RESULT_CONNECTION = 13,
  // The CA or the server refused the request; vc_last_error_code() names the reason.
  VC_RESULT_REFUSED = 14,
  // The other side broke the protocol.
  VC_RESULT_PROTOCOL = 15,
  // A cryptographic operation failed.
  VC_RESULT_CRYPTO = 16,
  // Nothing arrived within the time allowed.
  VC_RESULT_TIMEOUT = 17,
  // The handle's session or connection is closed.
  VC_RESULT_CLOSED = 18,
} vc_result;

// What happened (the fields of vc_event that apply are listed with each kind).
typedef enum {
  // Someone calls: `call_id`, `user` (the caller). Answer with vc_client_answer().
  VC_EVENT_INCOMING_CALL = 0,
  // A call changed state: `call_id`, `state`, `reason` (for ending states, else NULL).
  VC_EVENT_CALL_STATE = 1,
  // A registered user came online or went offline: `user`, `online`.
  VC_EVENT_PRESENCE = 2,
  // The balance will soon not pay for the call: `call_id`, `balance`, `seconds_left`.
  VC_EVENT_LOW_BALANCE = 3,
  // An end-to-end message from the other party: `call_id`, `user` (the sender), `payload`.
  VC_EVENT_SESSION_MESSAGE = 4,
  // The connection to the server was lost: `reason`. The client reconnects by itself.
  VC_EVENT_DISCONNECTED = 5,
  // The connection is back.
  VC_EVENT_RECONNECTED = 6,
  // An invitation to a conference passed its checks (the inviter's certificate and
  // signature, our access list): `conference`, `user` (the inviter), `seconds_left` (until
  // it lapses). Join with vc_conference_join() or decline with vc_client_decline_conference().
  VC_EVENT_CONFERENCE_INVITATION = 7,
} vc_event_kind;

// The state of a call.
typedef enum {
  // The callee is being asked.
  VC_CALL_STATE_RINGING = 0,
  // The call is up.
  VC_CALL_STATE_ACCEPTED = 1,
  // The callee declined (final).
  VC_CALL_STATE_DECLINED = 2,
  // The callee was busy (final).
  VC_CALL_STATE_BUSY = 3,
  // Nobody answered in time (final).
  VC_CALL_STATE_NO_ANSWER = 4,
  // The call ended; `reason` says why (final).
  VC_CALL_STATE_ENDED = 5,
} vc_call_state;

// Who decides a conference's policy.
typedef enum {
  // The moderator (who also distributes the keys and may remove members).
  VC_CONFERENCE_MODE_MODERATION = 0,
  // A majority of the members, by vote; the longest-present member distributes the keys.
  VC_CONFERENCE_MODE_VOTING = 1,
} vc_conference_mode;

// How one stream of a conference is protected.
typedef enum {
  // In the clear (levels 0 and 1, or a stream a level-2 policy leaves open).
  VC_PROTECTION_PLAIN = 0,
  // SFrame with AES-128-GCM.
  VC_PROTECTION_AES128GCM = 1,
  // SFrame with AES-256-GCM (every stream at level 3).
  VC_PROTECTION_AES256GCM = 2,
} vc_protection;

// What happened in a conference (the fields of vc_conference_event that apply are listed).
typedef enum {
  // `member` joined (it gets keys with the next epoch).
  VC_CONFERENCE_EVENT_JOINED = 0,
  // `member` is gone: `reason`.
  VC_CONFERENCE_EVENT_LEFT = 1,
  // `member` was invited by `other`.
  VC_CONFERENCE_EVENT_INVITED = 2,
  // `member` declined its invitation.
  VC_CONFERENCE_EVENT_DECLINED = 3,
  // A new `epoch` is in force, with `policy`, distributed by `member`; its keys are installed.
  VC_CONFERENCE_EVENT_EPOCH = 4,
  // `policy` was agreed; it takes effect at the next epoch.
  VC_CONFERENCE_EVENT_POLICY_PENDING = 5,
  // `member` is the moderator now (NULL: none, voting mode).
  VC_CONFERENCE_EVENT_MODERATOR = 6,
  // `member` proposes `policy` as `proposal` (voting mode).
  VC_CONFERENCE_EVENT_PROPOSAL = 7,
  // `member` voted `approve` on `proposal`.
  VC_CONFERENCE_EVENT_VOTE = 8,
  // `proposal` was decided: `adopted`, `reason`.
  VC_CONFERENCE_EVENT_DECIDED = 9,
  // A control message every member refuses reached us and was ignored: `member` (its
  // author), `code`, `reason`.
  VC_CONFERENCE_EVENT_REJECTED = 10,
  // The key of `epoch` could not be opened: `reason`.
  VC_CONFERENCE_EVENT_KEY_UNAVAILABLE = 11,
  // We are no longer a member: `reason`. No event follows.
  VC_CONFERENCE_EVENT_ENDED = 12,
} vc_conference_event_kind;

// The path media takes.
typedef enum {
  // The session is closed.
  VC_MEDIA_PATH_CLOSED = 0,
  // Straight to the peer.
  VC_MEDIA_PATH_DIRECT = 1,
  // Through the server's relay (which cannot read it).
  VC_MEDIA_PATH_RELAY = 2,
} vc_media_path;

// How a callee answers.
typedef enum {
  // Take the call.
  VC_ANSWER_ACCEPT = 0,
  // Refuse it.
  VC_ANSWER_DECLINE = 1,
  // Refuse it as busy.
  VC_ANSWER_BUSY = 2,
} vc_answer;

// The media streams of a call.
typedef enum {
  // Audio.
  VC_STREAM_AUDIO = 0,
  // Video.
  VC_STREAM_VIDEO = 1,
  // Data (whiteboard, files).
  VC_STREAM_DATA = 2,
  // Application signalling between the two parties.
  VC_STREAM_SIGNALLING = 3,
} vc_stream;

// A connected client. Safe to use from several threads at once.
typedef struct vc_client vc_client;

// A conference this client is in. Safe to use from several threads at once. Freeing it does
// not leave: call vc_conference_leave() first to tell the others.
typedef struct vc_conference vc_conference;

// A client identity: its directory, key and certificate. Safe to use from several threads.
typedef struct vc_identity vc_identity;

// A call's media session. Safe to use from several threads at once: one thread may send while
// another receives.
typedef struct vc_media vc_media;

// An SFrame context: sending keys with their counters, receiving keys with their replay windows.
// Not for use from two threads at once.
typedef struct vc_sframe_context vc_sframe_context;

// One event. Every pointer is NULL or a NUL-terminated string that lives only until the
// callback returns: copy what you keep.
typedef struct {
  // What happened; says which fields apply.
  vc_event_kind kind;
  // The call, or NULL.
  const char *call_id;
  // The caller, the user whose presence changed, or the sender; or NULL.
  const char *user;
  // The call's new state (VC_EVENT_CALL_STATE only).
  vc_call_state state;
  // Why a call ended or the connection was lost, or NULL.
  const char *reason;
  // Online now? (VC_EVENT_PRESENCE only).
  bool online;
  // Balance in minor currency units (VC_EVENT_LOW_BALANCE only).
  int64_t balance;
  // About how many more seconds the balance pays for (VC_EVENT_LOW_BALANCE only).
  int64_t seconds_left;
  // The message (VC_EVENT_SESSION_MESSAGE only), or NULL.
  const char *payload;
  // The conference (VC_EVENT_CONFERENCE_INVITATION only), or NULL.
  const char *conference;
} vc_event;

// Where a client's events go.
//
// Threading: every callback of one client runs on that client's own event thread, one at a
// time, in the order the events happened; never on the thread that called a vc_* function.
// A callback may call any vc_* function, including vc_client_free() of its own client (its
// `destroy` then runs on the event thread right after the callback returns). A callback must
// return promptly (events wait behind it) and must not unwind (no C++ exception, no longjmp).
typedef struct {
  // Passed back to every function below.
  void *ctx;
  // Called for each event; NULL to ignore events.
  void (*on_event)(void *ctx, const vc_event *event);
  // Called exactly once when no callback will follow, on the event thread (or, when the
  // client could not be created, on the thread of vc_client_connect()); NULL if not needed.
  void (*destroy)(void *ctx);
} vc_client_listener;

// A user's account, amounts in minor currency units (integers, never floating point).
typedef struct {
  // Balance (negative on a postpaid account in debt).
  int64_t balance;
  // How far a postpaid balance may go below zero (0 when prepaid).
  int64_t credit_limit;
  // Prepaid (true) or postpaid (false).
  bool prepaid;
  // ISO 4217 currency code, NUL-terminated.
  char currency[8];
  // Charged once when a call is answered.
  int64_t connect_fee;
  // Charged per 60 billed seconds.
  int64_t rate_per_minute;
  // The first billing increment, seconds.
  uint32_t first_increment_secs;
  // Each following increment, seconds.
  uint32_t next_increment_secs;
  // When the user registered, Unix seconds.
  int64_t registered_at;
  // Whether the fields below describe a call.
  bool has_last_call;
  // The most recent call's charge.
  int64_t last_call_cost;
  // The most recent call's billed seconds.
  int64_t last_call_billable_secs;
} vc_account;

// A conference's security policy. Start from vc_conference_policy_default().
typedef struct {
  // Security level 0–3: 0 and 1 plain, 2 encrypted, 3 AES-256-GCM with post-quantum key wraps.
  uint8_t level;
  // Moderation or voting.
  vc_conference_mode mode;
  // Audio.
  vc_protection audio;
  // Video.
  vc_protection video;
  // Data (whiteboard).
  vc_protection data;
  // Signalling between members.
  vc_protection signalling;
  // The distributor starts a new epoch this often, seconds (0: only on changes).
  uint32_t rekey_interval_secs;
} vc_conference_policy;

// One conference event. Every pointer is NULL or a NUL-terminated string that lives only until
// the callback returns: copy what you keep.
typedef struct {
  // What happened; says which fields apply.
  vc_conference_event_kind kind;
  // The member concerned, or NULL.
  const char *member;
  // A second member (the inviter), or NULL.
  const char *other;
  // Why, or NULL.
  const char *reason;
  // A stable code (VC_CONFERENCE_EVENT_REJECTED), or NULL.
  const char *code;
  // The epoch (EPOCH, KEY_UNAVAILABLE).
  uint32_t epoch;
  // The policy (EPOCH, POLICY_PENDING, PROPOSAL).
  vc_conference_policy policy;
  // The proposal (PROPOSAL, VOTE, DECIDED).
  uint64_t proposal;
  // The ballot (VOTE).
  bool approve;
  // The decision (DECIDED).
  bool adopted;
} vc_conference_event;

// Where a conference's events go. Threading as for vc_client_listener: one event thread per
// conference, callbacks one at a time in order, never on a thread that called a vc_* function;
// a callback may call any vc_* function (vc_conference_free() of its own conference included)
// and must return promptly.
typedef struct {
  // Passed back to every function below.
  void *ctx;
  // Called for each event; NULL to ignore events.
  void (*on_event)(void *ctx, const vc_conference_event *event);
  // Called exactly once when no callback will follow (on the event thread, or — when the
  // conference could not be created or joined — on the calling thread); NULL if not needed.
  void (*destroy)(void *ctx);
} vc_conference_listener;

// Statistics of a conference's media and keys.
typedef struct {
  // The epoch whose keys we send with.
  uint32_t epoch;
  // Other members.
  uint32_t peers;
  // Of them, reached directly.
  uint32_t peers_direct;
  // Of them, reached through the server's relay.
  uint32_t peers_relayed;
  // Frames sent (each once, whatever the number of members).
  uint64_t frames_sent;
  // Frames received and delivered.
  uint64_t frames_received;
  // Payload bytes received.
  uint64_t bytes_received;
  // Frames that never completed.
  uint64_t frames_lost;
  // Replayed frames refused.
  uint64_t replays_refused;
  // Frames that failed authentication.
  uint64_t auth_failures;
  // Frames for keys we do not hold.
  uint64_t unknown_key;
  // Packets from addresses or senders that are not members.
  uint64_t foreign_packets;
  // Plain frames refused on streams the policy encrypts.
  uint64_t plain_refused;
  // Microseconds the last bundle we distributed took to make.
  uint64_t last_bundle_micros;
  // Bytes of that bundle.
  uint64_t last_bundle_bytes;
} vc_conference_stats;

// What a certificate says, for display and renewal planning.
typedef struct {
  // Start of validity, Unix seconds.
  int64_t not_before;
  // End of validity, Unix seconds.
  int64_t not_after;
  // Two thirds of the lifetime have passed: renew now (vc_identity_renew()).
  bool renewal_due;
} vc_identity_info;

// How a media session is set up. Start from vc_media_options_default().
typedef struct {
  // Security level 0–3 (docs/protocol.md §5); both parties must agree. Default 2.
  uint8_t level;
  // Try a direct path before the relay (false: relay only). Default true.
  bool direct;
  // How long the key agreement with the peer may take, milliseconds. Default 15000.
  uint32_t handshake_timeout_ms;
  // Largest frame accepted from the peer, bytes. Default 4 MiB.
  uint32_t max_frame;
} vc_media_options;

// What a media session did so far.
typedef struct {
  // The path in use.
  vc_media_path path;
  // Our current sending key epoch.
  uint32_t send_epoch;
  // The peer's latest key epoch seen.
  uint32_t receive_epoch;
  // Frames sent.
  uint64_t frames_sent;
  // Payload bytes sent.
  uint64_t bytes_sent;
  // Packets sent.
  uint64_t packets_sent;
  // Frames received and delivered.
  uint64_t frames_received;
  // Payload bytes received.
  uint64_t bytes_received;
  // Packets received.
  uint64_t packets_received;
  // Frames that never completed.
  uint64_t frames_lost;
  // Replayed packets refused.
  uint64_t replays_refused;
  // Packets that failed authentication.
  uint64_t auth_failures;
  // Packets for keys we do not hold.
  uint64_t unknown_key;
  // Packets from addresses that are not the peer's path.
  uint64_t foreign_packets;
  // Malformed packets.
  uint64_t malformed;
  // Frames dropped because the application did not receive them fast enough.
  uint64_t dropped_slow_receiver;
  // Sends the network refused.
  uint64_t send_errors;
} vc_media_stats;

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// The SDK version, "MAJOR.MINOR.PATCH", as a static NUL-terminated string (never freed).
const char *vc_version(void);

// Connects to the server at `server` (`HOST:PORT`) as `identity`: mutual TLS against the pinned
// root, with the CRL fetched from the CA first (the cached one if the CA is unreachable).
// `server_name` is the name the server's certificate must carry (NULL: the host of `server`).
// Events go to `listener` (NULL: none). The library owns the listener from this call on,
// whatever it returns: its `destroy` runs exactly once — on failure before this returns.
// Lost connections are repaired in the background (VC_EVENT_DISCONNECTED / _RECONNECTED).
// Free with vc_client_free().
//
// # Safety
// `identity` live or NULL; strings NUL-terminated or NULL; `listener` NULL or readable;
// `out` writable or NULL.
vc_result vc_client_connect(const vc_identity *identity,
                            const char *server,
                            const char *server_name,
                            const vc_client_listener *listener,
                            vc_client **out);

// Says goodbye to the server (waiting up to 2 s), stops the event thread and frees the client.
// The listener's `destroy` has run when this returns — unless it is called from one of this
// client's own callbacks, in which case `destroy` runs as soon as that callback returns.
// Media sessions opened from the client stay valid handles (closed). NULL is ignored.
//
// # Safety
// `client` NULL or from vc_client_connect(), not freed before, and not in use by another thread.
void vc_client_free(vc_client *client);

// Whether this user is registered with the server (as of the latest connection) into `*out`.
//
// # Safety
// `client` live or NULL; `out` writable or NULL.
vc_result vc_client_is_registered(const vc_client *client, bool *out);

// Registers this user, accepting the server's terms of use of version `terms_version` (NULL:
// the version the server announced on connecting). A stale version is refused
// (VC_RESULT_REFUSED, code `terms_outdated`).
//
// # Safety
// `client` live or NULL; `terms_version` NUL-terminated or NULL.
vc_result vc_client_register(const vc_client *client, const char *terms_version);

// Writes the ids of the registered users online now (this one included), separated by '\n' and
// NUL-terminated, into `buf` (capacity `cap`); `*out_len` receives the text's length. With
// VC_RESULT_BUFFER_TOO_SMALL, `*out_len` is the length needed (call again with more room).
//
// # Safety
// `client` live or NULL; `buf` valid for `cap` bytes; `out_len` NULL or writable.
vc_result vc_client_active_users(const vc_client *client, char *buf, size_t cap, size_t *out_len);

// Asks the server for presence events (VC_EVENT_PRESENCE) of every registered user.
//
// # Safety
// `client` live or NULL.
vc_result vc_client_subscribe_presence(const vc_client *client);

// Calls `user`; the call's id (NUL-terminated) goes into `call_id` (capacity `cap`; VC_ID_CAPACITY
// suffices) and its length into `*out_len` (if not NULL). What follows arrives as
// VC_EVENT_CALL_STATE events. Refusals (VC_RESULT_REFUSED) name the reason in
// vc_last_error_code(): `user_offline`, `not_registered`, `insufficient_credit`, …
//
// # Safety
// `client` live or NULL; `user` NUL-terminated or NULL; `call_id` valid for `cap` bytes;
// `out_len` NULL or writable.
vc_result vc_client_call(const vc_client *client,
                         const char *user,
                         char *call_id,
                         size_t cap,
                         size_t *out_len);

// Answers the incoming call `call_id` (from VC_EVENT_INCOMING_CALL) with `answer`, a vc_answer
// value (passed as a number so that any value is checked: others give
// VC_RESULT_INVALID_ARGUMENT).
//
// # Safety
// `client` live or NULL; `call_id` NUL-terminated or NULL.
vc_result vc_client_answer(const vc_client *client, const char *call_id, uint32_t answer);

// Hangs up (or cancels, while it rings) the call `call_id`; both sides then get
// VC_EVENT_CALL_STATE with VC_CALL_STATE_ENDED.
//
// # Safety
// `client` live or NULL; `call_id` NUL-terminated or NULL.
vc_result vc_client_hangup(const vc_client *client, const char *call_id);

// Fills `*out` with this user's account: balance, tariff, last call.
//
// # Safety
// `client` live or NULL; `out` writable or NULL.
vc_result vc_client_account(const vc_client *client, vc_account *out);

// Redeems the prepaid voucher `voucher` and fills `*out` (if not NULL) with the account after
// it. A used or unknown voucher is refused (`voucher_redeemed`, `voucher_unknown`).
//
// # Safety
// `client` live or NULL; `voucher` NUL-terminated or NULL; `out` NULL or writable.
vc_result vc_client_redeem_voucher(const vc_client *client, const char *voucher, vc_account *out);

// Fills `*out` with the usual policy of `level` (0–3) in `mode` (a vc_conference_mode).
//
// # Safety
// `out` writable or NULL.
vc_result vc_conference_policy_default(uint8_t level, uint32_t mode, vc_conference_policy *out);

// Creates a conference with `policy` (NULL: level 2, moderation); we are its first member and,
// in moderation mode, its moderator. `direct` false sends media only through the server's relay
// (never revealing our address). Events go to `listener` (NULL: none), which the library owns
// from this call on whatever it returns. Blocks until the conference exists. Free with
// vc_conference_free().
//
// # Safety
// `client` live or NULL; `policy` NULL or readable; `listener` NULL or readable; `out`
// writable or NULL.
vc_result vc_conference_create(const vc_client *client,
                               const vc_conference_policy *policy,
                               bool direct,
                               const vc_conference_listener *listener,
                               vc_conference **out);

// Joins conference `conf_id`, to which an invitation was shown (VC_EVENT_CONFERENCE_INVITATION).
// `direct` and `listener` as for vc_conference_create(). Blocks until we are a member.
//
// # Safety
// `client` live or NULL; `conf_id` NUL-terminated or NULL; `listener` NULL or readable; `out`
// writable or NULL.
vc_result vc_conference_join(const vc_client *client,
                             const char *conf_id,
                             bool direct,
                             const vc_conference_listener *listener,
                             vc_conference **out);

// Declines the invitation to `conf_id`.
//
// # Safety
// `client` live or NULL; `conf_id` NUL-terminated or NULL.
vc_result vc_client_decline_conference(const vc_client *client, const char *conf_id);

// Sets who may invite this client, as TOML text: `allow = [ids]`, `deny = [ids]`,
// `contacts = [ids]`, `default = "anyone" | "contacts" | "nobody"` (deny wins, then allow, then
// the default). An invitation the list refuses is declined and never reaches the listener.
//
// # Safety
// `client` live or NULL; `acl_toml` NUL-terminated or NULL.
vc_result vc_client_set_access_list(const vc_client *client, const char *acl_toml);

// Frees the conference handle (without leaving; see vc_conference_leave()). Its listener's
// `destroy` runs. NULL is ignored.
//
// # Safety
// `conference` NULL or from vc_conference_create()/vc_conference_join(), not freed before and
// not in use by another thread.
void vc_conference_free(vc_conference *conference);

// Writes the conference's id (32 hex digits, NUL-terminated) into `buf` (capacity `cap`;
// VC_ID_CAPACITY suffices); its length goes into `*out_len` (if not NULL).
//
// # Safety
// `conference` live or NULL; `buf` valid for `cap` bytes; `out_len` NULL or writable.
vc_result vc_conference_id(const vc_conference *conference, char *buf, size_t cap, size_t *out_len);

// Invites `user`: its certificate is fetched and checked first (pinned root, CRL, names it).
//
// # Safety
// `conference` live or NULL; `user` NUL-terminated or NULL.
vc_result vc_conference_invite(const vc_conference *conference, const char *user);

// Removes `member` (moderator only; VC_RESULT_REFUSED with code `conf_forbidden` otherwise).
//
// # Safety
// `conference` live or NULL; `member` NUL-terminated or NULL.
vc_result vc_conference_remove(const vc_conference *conference, const char *member);

// Hands the moderator role to `member` (moderator only).
//
// # Safety
// `conference` live or NULL; `member` NUL-terminated or NULL.
vc_result vc_conference_hand_over(const vc_conference *conference, const char *member);

// Leaves the conference: the others rekey without us (VC_CONFERENCE_EVENT_ENDED follows).
//
// # Safety
// `conference` live or NULL.
vc_result vc_conference_leave(const vc_conference *conference);

// Sets the policy (moderator only); it takes effect for everyone at the next epoch.
//
// # Safety
// `conference` live or NULL; `policy` NULL or readable.
vc_result vc_conference_set_policy(const vc_conference *conference,
                                   const vc_conference_policy *policy);

// Proposes `policy` (voting mode), votes counting for `deadline_secs`; the proposal's number
// goes into `*out_proposal` (if not NULL). Refused while another proposal is open.
//
// # Safety
// `conference` live or NULL; `policy` NULL or readable; `out_proposal` NULL or writable.
vc_result vc_conference_propose(const vc_conference *conference,
                                const vc_conference_policy *policy,
                                uint32_t deadline_secs,
                                uint64_t *out_proposal);

// Votes on the open proposal `proposal`.
//
// # Safety
// `conference` live or NULL.
vc_result vc_conference_vote(const vc_conference *conference, uint64_t proposal, bool approve);

// Fills `*out` with the policy in force.
//
// # Safety
// `conference` live or NULL; `out` writable or NULL.
vc_result vc_conference_get_policy(const vc_conference *conference, vc_conference_policy *out);

// Writes the roster (member ids in join order, separated by '\n', NUL-terminated) into `buf`
// (capacity `cap`); `*out_len` gets its length (the length needed with
// VC_RESULT_BUFFER_TOO_SMALL).
//
// # Safety
// `conference` live or NULL; `buf` valid for `cap` bytes; `out_len` NULL or writable.
vc_result vc_conference_roster(const vc_conference *conference,
                               char *buf,
                               size_t cap,
                               size_t *out_len);

// Sends `data` (`len` bytes) as one frame of `stream_id` (a vc_stream) to every other member,
// protected as the policy says. VC_RESULT_CONNECTION before the first epoch's keys arrived.
//
// # Safety
// `conference` live or NULL; `data` valid for `len` bytes (NULL allowed when `len` is 0).
vc_result vc_conference_send(const vc_conference *conference,
                             uint32_t stream_id,
                             const uint8_t *data,
                             size_t len);

// Receives the next frame from another member into `buf` (capacity `cap`): its length goes
// into `*out_len`, its stream into `*out_stream` and its sender's member index into
// `*out_sender` (each if not NULL). Waits up to `timeout_ms` (0: only a frame already waiting),
// then VC_RESULT_TIMEOUT. A frame larger than `cap` is kept for the next call and
// VC_RESULT_BUFFER_TOO_SMALL puts its length in `*out_len`.
//
// # Safety
// `conference` live or NULL; `buf` valid for `cap` writable bytes; `out_len` writable or NULL;
// `out_stream`, `out_sender` NULL or writable.
vc_result vc_conference_receive(const vc_conference *conference,
                                uint32_t timeout_ms,
                                uint8_t *buf,
                                size_t cap,
                                size_t *out_len,
                                uint32_t *out_stream,
                                uint16_t *out_sender);

// Fills `*out` with the conference's statistics.
//
// # Safety
// `conference` live or NULL; `out` writable or NULL.
vc_result vc_conference_get_stats(const vc_conference *conference, vc_conference_stats *out);

// Enrolls a new client identity: makes a key, asks the CA at `ca_url` (`https://HOST:PORT`, whose
// root certificate is the PEM `root_pem`, `root_pem_len` bytes) for a certificate for `client_id`
// with the one-time `token`, checks the answer against that root, and stores key, certificate
// and root in the directory `dir` (created; it must not hold an identity yet). Blocks until
// done. Refusals by the CA (used or unknown token, id not matching the token) give
// VC_RESULT_REFUSED with the CA's code in vc_last_error_code(). Free with vc_identity_free().
//
// # Safety
// Strings NUL-terminated or NULL; `root_pem` valid for `root_pem_len` bytes; `out` writable.
vc_result vc_identity_enroll(const char *dir,
                             const char *ca_url,
                             const uint8_t *root_pem,
                             size_t root_pem_len,
                             const char *token,
                             const char *client_id,
                             vc_identity **out);

// Loads the identity stored in `dir` (finishing a renewal that was interrupted). A missing,
// damaged or mismatched store gives VC_RESULT_STORE; a revoked identity (moved aside by a
// revocation) VC_RESULT_STORE naming it. Free with vc_identity_free().
//
// # Safety
// `dir` NUL-terminated or NULL; `out` writable or NULL.
vc_result vc_identity_load(const char *dir, vc_identity **out);

// Frees an identity handle (the stored files stay). NULL is ignored. Clients made from it keep
// their own copy and may outlive it.
//
// # Safety
// `identity` NULL or from vc_identity_enroll()/vc_identity_load(), not freed before.
void vc_identity_free(vc_identity *identity);

// Copies the identity's client id, NUL-terminated, into `buf` (capacity `cap`); `*out_len`
// (if not NULL) receives its length. VC_RESULT_BUFFER_TOO_SMALL reports the length needed.
//
// # Safety
// `identity` live or NULL; `buf` valid for `cap` bytes; `out_len` NULL or writable.
vc_result vc_identity_id(const vc_identity *identity, char *buf, size_t cap, size_t *out_len);

// Fills `*out` with the current certificate's validity.
//
// # Safety
// `identity` live or NULL; `out` writable or NULL.
vc_result vc_identity_get_info(const vc_identity *identity, vc_identity_info *out);

// Renews now: a new key and certificate for the same id from the CA, authorised by the current
// certificate (which the CA then revokes as superseded); both are stored before this returns.
// Clients connected with the old certificate keep their connection; new ones use the new one.
// Blocks until done.
//
// # Safety
// `identity` live or NULL.
vc_result vc_identity_renew(const vc_identity *identity);

// Fills `*out` with the default media options.
//
// # Safety
// `out` writable or NULL.
vc_result vc_media_options_default(vc_media_options *out);

// Starts the media of the accepted call `call_id` (both parties call this once the call is
// accepted): agrees keys end to end with the peer (checking its certificate), finds a path
// (direct, else the server's relay) and returns the session. `options` NULL means the defaults.
// Blocks until the session is up or the handshake timed out (VC_RESULT_TIMEOUT). Free with
// vc_media_free(); the session closes by itself when the call ends.
//
// # Safety
// `client` live or NULL; `call_id` NUL-terminated or NULL; `options` NULL or readable; `out`
// writable or NULL.
vc_result vc_media_open(const vc_client *client,
                        const char *call_id,
                        const vc_media_options *options,
                        vc_media **out);

// Closes the session (if still open) and frees the handle. NULL is ignored.
//
// # Safety
// `media` NULL or from vc_media_open(), not freed before and not in use by another thread.
void vc_media_free(vc_media *media);

// Closes the session: nothing more is sent or received. The handle stays valid until freed.
//
// # Safety
// `media` live or NULL.
vc_result vc_media_close(const vc_media *media);

// Encrypts `data` (`len` bytes, up to the peer's max_frame) as one frame of `stream` (a
// vc_stream value) and sends it. Returns once it is handed to the network; VC_RESULT_CLOSED
// after the session closed.
//
// # Safety
// `media` live or NULL; `data` valid for `len` bytes (NULL allowed when `len` is 0).
vc_result vc_media_send(const vc_media *media, uint32_t stream_id, const uint8_t *data, size_t len);

// Receives the next frame into `buf` (capacity `cap`): its length goes into `*out_len` and its
// stream into `*out_stream` (if not NULL). Waits up to `timeout_ms` milliseconds (0: only
// takes a frame already waiting) and then gives VC_RESULT_TIMEOUT. A frame larger than `cap`
// is kept for the next call and VC_RESULT_BUFFER_TOO_SMALL puts its length in `*out_len`.
// VC_RESULT_CLOSED once the session is closed and every frame was taken.
//
// # Safety
// `media` live or NULL; `buf` valid for `cap` writable bytes; `out_len` writable or NULL;
// `out_stream` NULL or writable.
vc_result vc_media_receive(const vc_media *media,
                           uint32_t timeout_ms,
                           uint8_t *buf,
                           size_t cap,
                           size_t *out_len,
                           uint32_t *out_stream);

// Starts a new sending key epoch now (fresh keys on every stream; the peer follows).
//
// # Safety
// `media` live or NULL.
vc_result vc_media_rekey(const vc_media *media);

// Fills `*out` with the session's statistics.
//
// # Safety
// `media` live or NULL; `out` writable or NULL.
vc_result vc_media_get_stats(const vc_media *media, vc_media_stats *out);

// A static, NUL-terminated description of a vc_result value (never freed). Takes the number so
// that any value, even one this library does not know, is described safely.
const char *vc_result_message(uint32_t result);

// Copies this thread's last error message (empty when the last call succeeded) into `buf` of
// `len` bytes, NUL-terminated and truncated if needed, and returns its full length without the
// NUL. With `buf` NULL or `len` 0 nothing is written: call it that way to learn the size.
//
// # Safety
// `buf`, when not NULL, must point to `len` writable bytes.
size_t vc_last_error_message(char *buf, size_t len);

// Copies this thread's last error code into `buf` like vc_last_error_message(): a stable,
// machine-readable word (empty after a success). For VC_RESULT_REFUSED it is the CA's or the
// server's refusal code (`token_used`, `insufficient_credit`, `user_offline`, … as listed in
// docs/protocol.md); otherwise the result's own word (`connection`, `certificate`, …).
//
// # Safety
// `buf`, when not NULL, must point to `len` writable bytes.
size_t vc_last_error_code(char *buf, size_t len);

// Shuts the library down for the rest of the process: every vc_* call waiting on the network
// returns VC_RESULT_CLOSED at once, every connection still open is cut (no goodbye is said),
// every client's and conference's event thread ends (its listener's `destroy` has run when this
// returns, unless called from a callback: that thread's `destroy` runs when the callback
// returns), and the library's own threads stop (waiting up to 5 s for them).
//
// After it, every function that needs the network or the library's threads (connecting,
// enrolling, renewing, every client, conference and media call) returns VC_RESULT_CLOSED
// (vc_last_error_code() "closed"); nothing crashes. The library cannot be started again in this
// process. What needs no thread keeps working: the SFrame functions, vc_identity_load,
// vc_identity_id, vc_identity_get_info, the option defaults, the error functions. Handles must
// still be freed with their vc_*_free function (which then says no goodbye). Calling it again
// returns VC_RESULT_OK and does nothing.
//
// Call it when the application is done with the library (typically at exit, after freeing its
// handles): memory checkers then see no thread of the library still running. Refused
// (VC_RESULT_INVALID_ARGUMENT) from inside an asynchronous runtime.
vc_result vc_library_shutdown(void);

// Creates an empty context into `*out`. Free it with vc_sframe_context_free().
//
// # Safety
// `out` must be NULL or point to writable storage for one pointer.
vc_result vc_sframe_context_new(vc_sframe_context **out);

// Frees a context (its keys are dropped). NULL is accepted and ignored.
//
// # Safety
// `ctx` must be NULL or a pointer from vc_sframe_context_new() not freed before.
void vc_sframe_context_free(vc_sframe_context *ctx);

// Installs the sending key of `kid` (`key_len` bytes: 16 for suite 0x0004, 32 for 0x0005).
// A KID this context sent with before is refused with VC_RESULT_KEY_REUSED.
//
// # Safety
// `ctx` as for every context function; `key` must point to `key_len` readable bytes.
vc_result vc_sframe_add_send_key(vc_sframe_context *ctx,
                                 uint16_t suite_id,
                                 uint64_t kid,
                                 const uint8_t *key,
                                 size_t key_len);

// Installs the receiving key of `kid`.
//
// # Safety
// As vc_sframe_add_send_key().
vc_result vc_sframe_add_receive_key(vc_sframe_context *ctx,
                                    uint16_t suite_id,
                                    uint64_t kid,
                                    const uint8_t *key,
                                    size_t key_len);

// Stops sending with `kid` (its KID can never be installed for sending again).
//
// # Safety
// `ctx` must be NULL or a live context.
vc_result vc_sframe_remove_send_key(vc_sframe_context *ctx, uint64_t kid);

// Keeps accepting frames of `kid` for `grace_ms` milliseconds, then forgets its receiving key.
//
// # Safety
// `ctx` must be NULL or a live context.
vc_result vc_sframe_retire_receive_key(vc_sframe_context *ctx, uint64_t kid, uint32_t grace_ms);

// Protects `plain` with the sending key of `kid` into `out` (capacity `out_cap`; the plaintext
// length plus VC_SFRAME_MAX_OVERHEAD always suffices); `*out_len` receives the frame length.
// `metadata` is authenticated but not sent (NULL when `metadata_len` is 0). Allocates nothing.
//
// # Safety
// `ctx` a live context; each pointer NULL or valid for its length; `out` not overlapping the
// inputs; `out_len` writable.
vc_result vc_sframe_encrypt(vc_sframe_context *ctx,
                            uint64_t kid,
                            const uint8_t *metadata,
                            size_t metadata_len,
                            const uint8_t *plain,
                            size_t plain_len,
                            uint8_t *out,
                            size_t out_cap,
                            size_t *out_len);

// Unprotects `frame` into `out` (capacity `out_cap`; the frame's length suffices): checks the
// KID is known, the frame authenticates, and its counter is fresh in the replay window.
// `*out_len` receives the plaintext length and `*out_kid` (if not NULL) the frame's KID.
// Allocates nothing.
//
// # Safety
// As vc_sframe_encrypt(); `out_kid` NULL or writable.
vc_result vc_sframe_decrypt(vc_sframe_context *ctx,
                            const uint8_t *metadata,
                            size_t metadata_len,
                            const uint8_t *frame,
                            size_t frame_len,
                            uint8_t *out,
                            size_t out_cap,
                            size_t *out_len,
                            uint64_t *out_kid);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* VCSDK_H */
