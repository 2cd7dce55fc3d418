/*
 * vcsdk.h: the C interface of libvcsdk, the end-to-end encrypted video conferencing SDK.
 * Generated from the ffi crate by `cargo run -p gen-header`; do not edit by hand.
 *
 * Conventions
 * - Every function returns a vc_result (VC_RESULT_OK = 0) unless it says otherwise; on failure
 *   vc_last_error_message() gives the details for the calling thread.
 * - Pointer parameters: each function's comment says of every pointer whether it is
 *   "required" or "optional". Required: NULL is refused with VC_RESULT_NULL_PARAMETER before
 *   anything happens. Optional: it may be NULL, and the comment says what NULL means. Any pointer
 *   that is not NULL must be valid: a handle from its constructor and not freed, a string
 *   NUL-terminated (UTF-8 where text is meant), an input buffer readable and an output buffer or
 *   out-pointer writable for the length given. A buffer passed with a length (data/len, buf/cap)
 *   may be NULL when that length is 0.
 * - Handles are opaque. A constructor (vc_sframe_context_new, vc_identity_enroll,
 *   vc_identity_load, vc_client_connect, vc_media_open, vc_conference_create,
 *   vc_conference_join) writes the new handle to its last argument (vc_x **out) and only on
 *   success; vc_x_free(vc_x *) frees it and accepts NULL. Never use a handle after freeing it.
 * - Text out: a function writing text into a caller's buffer (buf and its capacity cap) writes
 *   it NUL-terminated. On success *out_len is the text's length without the NUL (strlen). When
 *   cap is too small nothing is written and nothing is done, the result is
 *   VC_RESULT_BUFFER_TOO_SMALL, and *out_len is the capacity needed, NUL included: a buffer of
 *   exactly that size succeeds. (Binary outputs report the byte count needed; there is no NUL.
 *   vc_last_error_message() and vc_last_error_code() instead return a length without the NUL, as
 *   snprintf does.)
 * - Errors: the vc_result says the kind; vc_last_error_message() the details and
 *   vc_last_error_code() a stable word, both for the calling thread and until its next vc_* call.
 * - Refusals (VC_RESULT_REFUSED): vc_last_error_code() is the CA's or the server's code (see
 *   docs/protocol.md). Each function that talks to one of them lists the codes it can get; on top
 *   of its list, any request to the server may be refused with `rate_limited` (too many requests
 *   per second; try again), `internal` (a failure inside the server) or `too_large` (a message
 *   the server would pass on to a peer does not fit a frame once encoded; the library makes none,
 *   so it would name a bug), and any request to the CA with `internal`, `busy` (the CA could not
 *   take the request in time; try again later) or `request_timeout` (the request did not reach
 *   the CA in time). The conference functions that post an entry (create, join, decline, invite,
 *   remove, hand over, leave, set_policy, propose, vote) may also get `conf_stale` (the
 *   conference kept changing while we posted, even after retries; try again), `conf_full` (its
 *   log is full), `conf_too_large` (the entry would not fit a frame once encoded, e.g. a huge
 *   access list or invitation) and `conf_malformed`, `conf_signature`, `conf_order`,
 *   `conf_replay` (entries this library does not make; they would name a bug).
 * - Typical use: vc_identity_load (or vc_identity_enroll once), vc_client_connect with a
 *   listener, vc_client_register once, vc_client_call / vc_client_answer, then on both sides
 *   vc_media_open and vc_media_send / vc_media_receive, vc_client_hangup, vc_client_free, and
 *   vc_library_shutdown at exit; samples/c/vc_sample.c is a complete program.
 * - Byte buffers are a pointer and a length. Output buffers belong to the caller: no function
 *   hands out memory for the caller to free, and the SFrame functions allocate nothing at all.
 * - Enum values the caller passes in (vc_answer, vc_stream, vc_conference_mode) travel as
 *   uint32_t and are checked: an unknown value is VC_RESULT_INVALID_ARGUMENT.
 * - Blocking: client, identity, conference and media functions block the calling thread until
 *   the server, the CA or the peer answered (each with its own time limit); the library runs its
 *   network work on two threads of its own, started on first use and stopped by
 *   vc_library_shutdown().
 * - No function panics or aborts across this interface: an internal failure becomes
 *   VC_RESULT_PANIC. No SIGPIPE reaches the application either: the library changes no signal
 *   disposition, but blocks SIGPIPE on its own threads and, while a call runs, on the caller's
 *   thread (a SIGPIPE raised for that thread meanwhile is consumed), so a write to a connection
 *   the peer reset fails instead of killing the process.
 * - Threads: a handle may be used from any thread, but not from two threads at once unless its
 *   type says so (vc_identity, vc_client, vc_conference and vc_media may). Events arrive on a
 *   thread of the library: see vc_client_listener for what a callback may do.
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
  // The output buffer is too small and nothing was done; the capacity needed (for text, its NUL
  // included) is reported where the function says.
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
  // The handle's session or connection is closed, the call ended before its media started,
  // or the library was shut down (vc_library_shutdown()).
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
  // The connection to the server was lost: `reason`. The client reconnects by itself
  // (VC_EVENT_RECONNECTED follows once it is back).
  VC_EVENT_DISCONNECTED = 5,
  // The connection is back.
  VC_EVENT_RECONNECTED = 6,
  // An invitation to a conference passed its checks (the inviter's certificate and
  // signature, our access list): `conference`, `user` (the inviter), `seconds_left` (until
  // it lapses). Join with vc_conference_join() or decline with vc_client_decline_conference().
  VC_EVENT_CONFERENCE_INVITATION = 7,
  // The server asked for a billing receipt the SDK refused to sign (it does not describe a
  // call or conference participation of ours at the moments we saw): `call_id`, `payload`
  // (the statement asked for), `reason`. Nothing was signed.
  VC_EVENT_RECEIPT_REFUSED = 8,
  // The connection to the server ended for good: `reason` (a revoked certificate, too many
  // devices of this user connected, an unsupported protocol version, or the client was
  // closed). The client does not reconnect; no client event follows.
  VC_EVENT_CLOSED = 9,
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
  // Another device of this user answered the call first (final on this device; the call
  // goes on with the other device).
  VC_CALL_STATE_ANSWERED_ELSEWHERE = 6,
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
  // `policy` was agreed; it takes effect at the next epoch. `member` set or proposed it;
  // `reason`, when not NULL, says what it lowers (a lower level, a stream with weaker or no
  // encryption): tell the user loudly.
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
  // The message (VC_EVENT_SESSION_MESSAGE), the statement (VC_EVENT_RECEIPT_REFUSED), or NULL.
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
  // The proposal's number, 1 for the conference's first (PROPOSAL, VOTE, DECIDED).
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
  // The path in use; VC_MEDIA_PATH_CLOSED once the session is closed (by vc_media_close() or
  // the end of the call).
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
// Events go to `listener`. The library owns the listener from this call on, whatever it
// returns: its `destroy` runs exactly once — on failure before this returns. Lost connections
// are repaired in the background (VC_EVENT_DISCONNECTED / _RECONNECTED). Free with
// vc_client_free(). A certificate the server refuses (foreign CA, revoked) gives
// VC_RESULT_CONNECTION; refusals: `unsupported_version`, `shutting_down`, `too_many_devices`
// (this user already has as many connections — devices — open as the server allows). Several
// clients of one identity may be connected at once: each is a device, and calls ring on all.
// A connection that ends for good (a revoked certificate, too many devices) is reported as
// VC_EVENT_CLOSED, after which the client does not reconnect.
//
// # Safety
// Pointers: `identity` required; `server` required; `server_name` optional (NULL: the host of
// `server`); `listener` optional (NULL: no events), read during the call only; `out` required.
vc_result vc_client_connect(const vc_identity *identity,
                            const char *server,
                            const char *server_name,
                            const vc_client_listener *listener,
                            vc_client **out);

// Frees the client and everything it holds. First event delivery stops: a callback running on
// the event thread is waited for, no callback starts after it — nothing the goodbye causes
// (VC_EVENT_DISCONNECTED above all) reaches the listener — and the listener's `destroy` runs.
// Then it says goodbye to the server (waiting up to 2 s) and closes the connection: when this
// returns the socket is closed and the client's background work has ended. Called from one of
// this client's own callbacks, `destroy` instead runs as soon as that callback returns. Media
// sessions opened from the client stay valid handles (closed).
//
// # Safety
// Pointers: `client` optional (NULL: nothing happens); not in use by another thread.
void vc_client_free(vc_client *client);

// Whether this user is registered with the server (as of the latest connection) into `*out`.
// Answers from what the client knows, without a request.
//
// # Safety
// Pointers: `client` required; `out` required.
vc_result vc_client_is_registered(const vc_client *client, bool *out);

// Registers this user, accepting the server's terms of use of version `terms_version`.
// Refusals: `terms_mismatch` (not the server's current version).
//
// # Safety
// Pointers: `client` required; `terms_version` optional (NULL: the version the server announced
// on connecting).
vc_result vc_client_register(const vc_client *client, const char *terms_version);

// Writes the ids of the registered users online now (this one included), separated by '\n',
// into `buf` (capacity `cap`) as text out (see the conventions: on VC_RESULT_BUFFER_TOO_SMALL
// `*out_len` is the capacity needed, NUL included; ask again with that much). Refusals:
// `not_registered`.
//
// # Safety
// Pointers: `client` required; `buf` required unless `cap` is 0; `out_len` optional (NULL: no
// length reported).
vc_result vc_client_active_users(const vc_client *client, char *buf, size_t cap, size_t *out_len);

// Asks the server for presence events (VC_EVENT_PRESENCE) of every registered user.
// Refusals: `not_registered`.
//
// # Safety
// Pointers: `client` required.
vc_result vc_client_subscribe_presence(const vc_client *client);

// Calls `user`; the call's id goes into `call_id` as text out, its length into `*out_len`. `cap`
// must be at least VC_ID_CAPACITY, checked before anything is sent: with less, no call is
// placed and the result is VC_RESULT_BUFFER_TOO_SMALL with `*out_len` = VC_ID_CAPACITY. What
// follows arrives as VC_EVENT_CALL_STATE events. Refusals: `not_registered`,
// `insufficient_credit` (the caller cannot pay the connect fee and first increment),
// `unknown_user` (not a registered user), `user_offline`, `self_call`, `already_in_call` (this
// user is in a call, on this or another device).
//
// # Safety
// Pointers: `client` required; `user` required; `call_id` required (`cap` bytes); `out_len`
// optional (NULL: no length reported).
vc_result vc_client_call(const vc_client *client,
                         const char *user,
                         char *call_id,
                         size_t cap,
                         size_t *out_len);

// Answers the incoming call `call_id` (from VC_EVENT_INCOMING_CALL) with `answer`, a vc_answer
// value (passed as a number so that any value is checked: others give
// VC_RESULT_INVALID_ARGUMENT). Refusals: `not_registered`, `not_offered` (no such call offered
// to this user, or it already ended), `call_not_ringing` (already answered). The first device
// of the user to accept takes the call; the others get VC_CALL_STATE_ANSWERED_ELSEWHERE.
//
// # Safety
// Pointers: `client` required; `call_id` required.
vc_result vc_client_answer(const vc_client *client, const char *call_id, uint32_t answer);

// Hangs up (or cancels, while it rings) the call `call_id`; both sides then get
// VC_EVENT_CALL_STATE with VC_CALL_STATE_ENDED. Refusals: `not_registered`, `unknown_call` (no
// such open call), `not_in_call` (this user is not one of its parties, or the call is on
// another device of this user).
//
// # Safety
// Pointers: `client` required; `call_id` required.
vc_result vc_client_hangup(const vc_client *client, const char *call_id);

// Fills `*out` with this user's account: balance, tariff, last call. Refusals:
// `not_registered`.
//
// # Safety
// Pointers: `client` required; `out` required.
vc_result vc_client_account(const vc_client *client, vc_account *out);

// Redeems the prepaid voucher `voucher` and fills `*out` with the account after it. Refusals:
// `not_registered`, `voucher_unknown`, `voucher_redeemed`, `bad_amount` (the balance would
// overflow).
//
// # Safety
// Pointers: `client` required; `voucher` required; `out` optional (NULL: the account is not
// reported).
vc_result vc_client_redeem_voucher(const vc_client *client, const char *voucher, vc_account *out);

// Writes `minor` units of `currency` (an ISO 4217 code, e.g. "EUR") as a person reads them,
// in major units with the currency's decimals and its code — `0.10 EUR`, `-5.00 USD`,
// `1200 JPY` — into `buf` as text out. Amounts stay integers everywhere else; this is for
// display only.
//
// # Safety
// Pointers: `currency` required; `buf` required unless `cap` is 0; `out_len` optional (NULL: no
// length reported).
vc_result vc_money_format(int64_t minor,
                          const char *currency,
                          char *buf,
                          size_t cap,
                          size_t *out_len);

// Fills `*out` with the usual policy of `level` (0–3) in `mode` (a vc_conference_mode).
//
// # Safety
// Pointers: `out` required.
vc_result vc_conference_policy_default(uint8_t level, uint32_t mode, vc_conference_policy *out);

// Creates a conference with `policy`; we are its first member and, in moderation mode, its
// moderator. `direct` false sends media only through the server's relay (never revealing our
// address). Events go to `listener`, which the library owns from this call on whatever it
// returns (its `destroy` runs exactly once; on failure before this returns). Blocks until the
// conference exists. Free with vc_conference_free(). Refusals: `not_registered`,
// `insufficient_credit` (the creator cannot pay the connect fee and first increment),
// `conf_full` (the server holds too many conferences, or this user is in too many),
// `conf_exists`, and the conference codes of the conventions.
//
// # Safety
// Pointers: `client` required; `policy` optional (NULL: level 2, moderation); `listener`
// optional (NULL: no events), read during the call only; `out` required.
vc_result vc_conference_create(const vc_client *client,
                               const vc_conference_policy *policy,
                               bool direct,
                               const vc_conference_listener *listener,
                               vc_conference **out);

// Joins conference `conf_id`, to which an invitation was shown (VC_EVENT_CONFERENCE_INVITATION).
// `direct` and `listener` as for vc_conference_create(). Blocks until we are a member. No open
// invitation to it gives VC_RESULT_INVALID_ARGUMENT. Refusals: `not_registered`, `conf_unknown`
// (the conference is gone), `insufficient_credit` (when the server bills each participant),
// `conf_full` (this user is in too many conferences), `conf_forbidden` (the invitation is not
// held), `conf_invalid` (the invitation lapsed, or the conference is full or ended),
// `conf_other_device` (another device of this user is in the conference), and the conference
// codes of the conventions.
//
// # Safety
// Pointers: `client` required; `conf_id` required; `listener` optional (NULL: no events), read
// during the call only; `out` required.
vc_result vc_conference_join(const vc_client *client,
                             const char *conf_id,
                             bool direct,
                             const vc_conference_listener *listener,
                             vc_conference **out);

// Declines the invitation to `conf_id`. No open invitation to it gives
// VC_RESULT_INVALID_ARGUMENT. Refusals: `not_registered`, `conf_unknown`, `conf_forbidden` (the
// invitation is not held), `conf_invalid` (it lapsed), and the conference codes of the
// conventions.
//
// # Safety
// Pointers: `client` required; `conf_id` required.
vc_result vc_client_decline_conference(const vc_client *client, const char *conf_id);

// Sets who may invite this client, as TOML text: `allow = [ids]`, `deny = [ids]`,
// `contacts = [ids]`, `default = "anyone" | "contacts" | "nobody"` (deny wins, then allow, then
// the default). An invitation the list refuses is declined and never reaches the listener.
// Malformed TOML gives VC_RESULT_INVALID_ARGUMENT. Needs no network.
//
// # Safety
// Pointers: `client` required; `acl_toml` required.
vc_result vc_client_set_access_list(const vc_client *client, const char *acl_toml);

// Frees the conference handle (without leaving; see vc_conference_leave()). Event delivery stops
// first (a callback running is waited for, none starts after) and the listener's `destroy` has
// run when this returns (from one of its own callbacks: when that callback returns).
//
// # Safety
// Pointers: `conference` optional (NULL: nothing happens); not in use by another thread.
void vc_conference_free(vc_conference *conference);

// Writes the conference's id (32 hex digits) into `buf` (capacity `cap`; VC_ID_CAPACITY
// suffices) as text out: on VC_RESULT_BUFFER_TOO_SMALL `*out_len` is the capacity needed, NUL
// included.
//
// # Safety
// Pointers: `conference` required; `buf` required unless `cap` is 0; `out_len` optional (NULL:
// no length reported).
vc_result vc_conference_id(const vc_conference *conference, char *buf, size_t cap, size_t *out_len);

// Invites `user`: its certificate is fetched and checked first (pinned root, CRL, names it;
// VC_RESULT_CERTIFICATE if not). Refusals: `not_registered`, `conf_unknown` (the conference is gone), `conf_forbidden` (not a member), `unknown_user` (no certificate on record for `user`), `user_offline`, `conf_invalid` (already
// a member, or the conference would exceed its members), and the conference codes of the
// conventions.
//
// # Safety
// Pointers: `conference` required; `user` required.
vc_result vc_conference_invite(const vc_conference *conference,
                               const char *user);

// Removes `member` (moderator only). Refusals: `not_registered`, `conf_unknown` (the conference is gone), `conf_forbidden` (not a member, not the
// moderator, or voting mode), `conf_invalid` (not a member; the moderator itself leaves
// instead), and the conference codes of the conventions.
//
// # Safety
// Pointers: `conference` required; `member` required.
vc_result vc_conference_remove(const vc_conference *conference,
                               const char *member);

// Hands the moderator role to `member` (moderator only). Refusals: `not_registered`, `conf_unknown` (the conference is gone), `conf_forbidden` (not a member, not the moderator, or voting mode), `conf_invalid` (not another member), and the
// conference codes of the conventions.
//
// # Safety
// Pointers: `conference` required; `member` required.
vc_result vc_conference_hand_over(const vc_conference *conference,
                                  const char *member);

// Leaves the conference: the others rekey without us (VC_CONFERENCE_EVENT_ENDED follows).
// Once we are no longer a member (VC_CONFERENCE_EVENT_ENDED) it gives, like every function that
// posts, VC_RESULT_INVALID_ARGUMENT. Refusals: `not_registered`, `conf_unknown` (the conference is gone), `conf_forbidden` (not a member), and
// the conference codes of the conventions.
//
// # Safety
// Pointers: `conference` required.
vc_result vc_conference_leave(const vc_conference *conference);

// Sets the policy (moderator only); it takes effect for everyone at the next epoch. A policy
// that is not valid gives VC_RESULT_INVALID_ARGUMENT. Refusals: `not_registered`, `conf_unknown` (the conference is gone), `conf_forbidden` (not a member, not the moderator, or voting mode), `conf_invalid`, and the conference codes of the
// conventions.
//
// # Safety
// Pointers: `conference` required; `policy` required.
vc_result vc_conference_set_policy(const vc_conference *conference,
                                   const vc_conference_policy *policy);

// Proposes `policy` (voting mode), votes counting for `deadline_secs`; the proposal's number
// goes into `*out_proposal`. Refusals: `not_registered`, `conf_unknown` (the conference is gone), `conf_forbidden` (not a member, or moderation mode),
// `conf_invalid` (another proposal is open, or the deadline is out of range), and the
// conference codes of the conventions.
//
// # Safety
// Pointers: `conference` required; `policy` required; `out_proposal` optional (NULL: the number
// is not reported).
vc_result vc_conference_propose(const vc_conference *conference,
                                const vc_conference_policy *policy,
                                uint32_t deadline_secs,
                                uint64_t *out_proposal);

// Votes on the open proposal, which must be number `proposal` (1 for the conference's first;
// a number not seen yet is waited for up to 5 s, then VC_RESULT_INVALID_ARGUMENT). Refusals:
// `not_registered`, `conf_unknown` (the conference is gone), `conf_forbidden` (not a member, or
// moderation mode), `conf_invalid` (not open, its deadline passed, or already voted), and the
// conference codes of the conventions.
//
// # Safety
// Pointers: `conference` required.
vc_result vc_conference_vote(const vc_conference *conference, uint64_t proposal, bool approve);

// Fills `*out` with the policy in force.
//
// # Safety
// Pointers: `conference` required; `out` required.
vc_result vc_conference_get_policy(const vc_conference *conference, vc_conference_policy *out);

// Writes the roster (member ids in join order, separated by '\n') into `buf` (capacity `cap`)
// as text out: on VC_RESULT_BUFFER_TOO_SMALL `*out_len` is the capacity needed, NUL included.
//
// # Safety
// Pointers: `conference` required; `buf` required unless `cap` is 0; `out_len` optional (NULL:
// no length reported).
vc_result vc_conference_roster(const vc_conference *conference,
                               char *buf,
                               size_t cap,
                               size_t *out_len);

// Sends `data` (`len` bytes) as one frame of `stream_id` (a vc_stream) to every other member,
// protected as the policy says. VC_RESULT_CONNECTION before the first epoch's keys arrived.
//
// # Safety
// Pointers: `conference` required; `data` required unless `len` is 0.
vc_result vc_conference_send(const vc_conference *conference,
                             uint32_t stream_id,
                             const uint8_t *data,
                             size_t len);

// Receives the next frame from another member into `buf` (capacity `cap`): its length goes
// into `*out_len`, its stream into `*out_stream` and its sender's member index into
// `*out_sender`. Waits up to `timeout_ms` (0: only a frame already waiting), then
// VC_RESULT_TIMEOUT. A frame larger than `cap` is not lost: it is kept for the next call, and
// VC_RESULT_BUFFER_TOO_SMALL puts its length (the capacity needed; frames are bytes, with no
// NUL) in `*out_len`.
//
// # Safety
// Pointers: `conference` required; `buf` required unless `cap` is 0; `out_len` required;
// `out_stream` and `out_sender` optional (NULL: not reported).
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
// Pointers: `conference` required; `out` required.
vc_result vc_conference_get_stats(const vc_conference *conference, vc_conference_stats *out);

// Enrolls a new client identity: makes a key, asks the CA at `ca_url` (`https://HOST:PORT`, whose
// root certificate is the PEM `root_pem`, `root_pem_len` bytes) for a certificate for `client_id`
// with the one-time `token`, checks the answer against that root, and stores key, certificate
// and root in the directory `dir` (created). A `dir` whose certificate is revoked, expired or
// from another CA is enrolled again, the old files kept in `dir/replaced/SERIAL/`; one with a
// valid certificate is refused (VC_RESULT_INVALID_ARGUMENT). The new key is stored before the CA
// is asked, so calling again with the same token after a failure (the answer lost, a full disk)
// gets the same certificate. Blocks until done. Free with vc_identity_free(). Refusals (by the
// CA): `token_unknown`, `token_used` (spent on another key), `token_revoked`, `token_expired`,
// `wrong_id` (the token is for another id), and — for a request this library
// does not make — `csr_invalid`, `unsupported_key`, `forbidden_usage`, `malformed_request`,
// `body_too_large`.
//
// # Safety
// Pointers: `dir`, `ca_url`, `token`, `client_id` required; `root_pem` required (`root_pem_len`
// bytes); `out` required.
vc_result vc_identity_enroll(const char *dir,
                             const char *ca_url,
                             const uint8_t *root_pem,
                             size_t root_pem_len,
                             const char *token,
                             const char *client_id,
                             vc_identity **out);

// Loads the identity stored in `dir` (finishing a renewal that was interrupted). A missing,
// damaged or mismatched store gives VC_RESULT_STORE; a revoked identity (moved aside by a
// revocation) VC_RESULT_STORE naming it. Free with vc_identity_free(). Needs no network.
//
// # Safety
// Pointers: `dir` required; `out` required.
vc_result vc_identity_load(const char *dir, vc_identity **out);

// Frees an identity handle (the stored files stay). Clients made from it keep their own copy
// and may outlive it.
//
// # Safety
// Pointers: `identity` optional (NULL: nothing happens).
void vc_identity_free(vc_identity *identity);

// Copies the identity's client id into `buf` (capacity `cap`; VC_ID_CAPACITY suffices) as text
// out: on VC_RESULT_BUFFER_TOO_SMALL `*out_len` is the capacity needed, NUL included.
//
// # Safety
// Pointers: `identity` required; `buf` required unless `cap` is 0; `out_len` optional (NULL: no
// length reported).
vc_result vc_identity_id(const vc_identity *identity, char *buf, size_t cap, size_t *out_len);

// Fills `*out` with the current certificate's validity.
//
// # Safety
// Pointers: `identity` required; `out` required.
vc_result vc_identity_get_info(const vc_identity *identity, vc_identity_info *out);

// Renews now: a new key and certificate for the same id from the CA, authorised by the current
// certificate (which the CA then revokes as superseded); both are stored before this returns.
// Clients connected with the old certificate keep their connection; new ones use the new one.
// Blocks until done. Refusals (by the CA): `certificate_revoked`, `certificate_expired`,
// `certificate_unknown` (not a certificate this CA issued), `certificate_required`,
// `renew_too_soon` (this certificate itself came from a renewal too recently; the message says
// from when it may be renewed again), and — for a
// request this library does not make — `csr_invalid`, `unsupported_key`, `forbidden_usage`,
// `malformed_request`, `body_too_large`.
//
// # Safety
// Pointers: `identity` required.
vc_result vc_identity_renew(const vc_identity *identity);

// Fills `*out` with the default media options.
//
// # Safety
// Pointers: `out` required.
vc_result vc_media_options_default(vc_media_options *out);

// Starts the media of the accepted call `call_id` (both parties call this once the call is
// accepted): agrees keys end to end with the peer (checking its certificate), finds a path
// (direct, else the server's relay) and returns the session. Blocks until the session is up or
// the handshake timed out (VC_RESULT_TIMEOUT). Free with vc_media_free(); the session closes by
// itself when the call ends. A call this client did not place or accept gives
// VC_RESULT_INVALID_ARGUMENT; a peer certificate that fails the checks VC_RESULT_CERTIFICATE.
// Refusals: `not_registered`, `unknown_user` (the peer has no certificate on record),
// `unknown_call` and `not_in_call` (the call ended meanwhile).
//
// # Safety
// Pointers: `client` required; `call_id` required; `options` optional (NULL: the defaults of
// vc_media_options_default()); `out` required.
vc_result vc_media_open(const vc_client *client,
                        const char *call_id,
                        const vc_media_options *options,
                        vc_media **out);

// Closes the session (if still open) and frees the handle.
//
// # Safety
// Pointers: `media` optional (NULL: nothing happens); not in use by another thread.
void vc_media_free(vc_media *media);

// Closes the session: nothing more is sent or received, and its statistics say
// VC_MEDIA_PATH_CLOSED. The handle stays valid until freed.
//
// # Safety
// Pointers: `media` required.
vc_result vc_media_close(const vc_media *media);

// Encrypts `data` (`len` bytes, up to the peer's max_frame) as one frame of `stream` (a
// vc_stream value) and sends it. Returns once it is handed to the network; VC_RESULT_CLOSED
// after the session closed.
//
// # Safety
// Pointers: `media` required; `data` required unless `len` is 0.
vc_result vc_media_send(const vc_media *media, uint32_t stream_id, const uint8_t *data, size_t len);

// Receives the next frame into `buf` (capacity `cap`): its length goes into `*out_len` and its
// stream into `*out_stream`. Waits up to `timeout_ms` milliseconds (0: only takes a frame
// already waiting) and then gives VC_RESULT_TIMEOUT. A frame larger than `cap` is not lost: it
// is kept for the next call, and VC_RESULT_BUFFER_TOO_SMALL puts its length (the capacity
// needed; frames are bytes, with no NUL) in `*out_len`. VC_RESULT_CLOSED once the session is
// closed and every frame was taken.
//
// # Safety
// Pointers: `media` required; `buf` required unless `cap` is 0; `out_len` required;
// `out_stream` optional (NULL: the stream is not reported).
vc_result vc_media_receive(const vc_media *media,
                           uint32_t timeout_ms,
                           uint8_t *buf,
                           size_t cap,
                           size_t *out_len,
                           uint32_t *out_stream);

// Starts a new sending key epoch now (fresh keys on every stream; the peer follows).
//
// # Safety
// Pointers: `media` required.
vc_result vc_media_rekey(const vc_media *media);

// Fills `*out` with the session's statistics. Once the session is closed `path` is
// VC_MEDIA_PATH_CLOSED and the counters keep their final values.
//
// # Safety
// Pointers: `media` required; `out` required.
vc_result vc_media_get_stats(const vc_media *media, vc_media_stats *out);

// A static, NUL-terminated description of a vc_result value (never freed). Takes the number so
// that any value, even one this library does not know, is described safely.
const char *vc_result_message(uint32_t result);

// Copies this thread's last error message (empty when the last call succeeded) into `buf` of
// `len` bytes, NUL-terminated and cut short if it does not fit, and returns the message's whole
// length *without* the NUL (like snprintf): a buffer of the returned value + 1 bytes holds it
// whole. With `buf` NULL or `len` 0 nothing is written (ask that way for the length). Never fails.
//
// # Safety
// Pointers: `buf` optional (NULL: nothing is written), else valid for `len` writable bytes.
size_t vc_last_error_message(char *buf, size_t len);

// Copies this thread's last error code into `buf` like vc_last_error_message() (returning the
// code's length without the NUL: allocate the returned value + 1 bytes): a stable,
// machine-readable word (empty after a success). For VC_RESULT_REFUSED it is the CA's or the
// server's refusal code (each function lists those it can get; docs/protocol.md explains them);
// otherwise the result's own word (`connection`, `certificate`, `closed`, …).
//
// # Safety
// Pointers: `buf` optional (NULL: nothing is written), else valid for `len` writable bytes.
size_t vc_last_error_code(char *buf, size_t len);

// Shuts the library down for the rest of the process: every vc_* call waiting on the network
// returns VC_RESULT_CLOSED at once, every connection still open is cut (no goodbye is said),
// every client's and conference's event thread ends (its listener's `destroy` has run when this
// returns — except on the thread of a callback that called this: there it runs when the
// callback returns), and the library's own threads stop (waiting up to 5 s for them).
//
// After it, every function that needs the network or the library's threads returns
// VC_RESULT_CLOSED (vc_last_error_code() `closed`) instead of crashing: connecting, enrolling,
// renewing, and every client, conference and media function that asks the server or the peer,
// sends or receives (also with a zero timeout). What only reads what a handle already holds keeps
// answering from it (vc_client_is_registered, ids, rosters, policies, statistics — a media
// session's path is then VC_MEDIA_PATH_CLOSED only once it was closed —, vc_media_close,
// vc_client_set_access_list), and so do the SFrame functions, vc_identity_load, vc_identity_id,
// vc_identity_get_info, the option defaults and the error functions. Handles must still be freed
// with their vc_*_free function (which then says no goodbye); the descriptors of the stopped
// runtime are released when the last handle that used the network is freed. The library cannot
// be started again in this process. Calling this again returns VC_RESULT_OK and does nothing.
//
// Call it when the application is done with the library (typically at exit, after freeing its
// handles): memory checkers then see no thread of the library still running. Refused
// (VC_RESULT_INVALID_ARGUMENT) from inside an asynchronous runtime.
vc_result vc_library_shutdown(void);

// Creates an empty context into `*out`. Free it with vc_sframe_context_free().
//
// # Safety
// Pointers: `out` required.
vc_result vc_sframe_context_new(vc_sframe_context **out);

// Frees a context (its keys are dropped).
//
// # Safety
// Pointers: `ctx` optional (NULL: nothing happens).
void vc_sframe_context_free(vc_sframe_context *ctx);

// Installs the sending key of `kid` (`key_len` bytes: 16 for suite 0x0004, 32 for 0x0005).
// A KID this context sent with before is refused with VC_RESULT_KEY_REUSED.
//
// # Safety
// Pointers: `ctx` required; `key` required unless `key_len` is 0.
vc_result vc_sframe_add_send_key(vc_sframe_context *ctx,
                                 uint16_t suite_id,
                                 uint64_t kid,
                                 const uint8_t *key,
                                 size_t key_len);

// Installs the receiving key of `kid`.
//
// # Safety
// Pointers: `ctx` required; `key` required unless `key_len` is 0.
vc_result vc_sframe_add_receive_key(vc_sframe_context *ctx,
                                    uint16_t suite_id,
                                    uint64_t kid,
                                    const uint8_t *key,
                                    size_t key_len);

// Stops sending with `kid` (its KID can never be installed for sending again).
//
// # Safety
// Pointers: `ctx` required.
vc_result vc_sframe_remove_send_key(vc_sframe_context *ctx, uint64_t kid);

// Keeps accepting frames of `kid` for `grace_ms` milliseconds, then forgets its receiving key.
//
// # Safety
// Pointers: `ctx` required.
vc_result vc_sframe_retire_receive_key(vc_sframe_context *ctx, uint64_t kid, uint32_t grace_ms);

// Protects `plain` with the sending key of `kid` into `out` (capacity `out_cap`; the plaintext
// length plus VC_SFRAME_MAX_OVERHEAD always suffices); `*out_len` receives the frame length.
// With a smaller `out_cap` nothing is done (no counter is used) and VC_RESULT_BUFFER_TOO_SMALL
// puts the capacity needed in `*out_len`. `metadata` is authenticated but not sent.
// Allocates nothing.
//
// # Safety
// Pointers: `ctx` required; `metadata` required unless `metadata_len` is 0; `plain` required
// unless `plain_len` is 0; `out` required unless `out_cap` is 0, and not overlapping the inputs;
// `out_len` required.
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
// `*out_len` receives the plaintext length and `*out_kid` the frame's KID. With too small an
// `out_cap` nothing is done (the frame is not marked as seen: it can be decrypted again with
// more room) and VC_RESULT_BUFFER_TOO_SMALL puts the capacity needed in `*out_len`. Allocates
// nothing.
//
// # Safety
// Pointers: `ctx` required; `metadata` required unless `metadata_len` is 0; `frame` required
// unless `frame_len` is 0; `out` required unless `out_cap` is 0, and not overlapping the inputs;
// `out_len` required; `out_kid` optional (NULL: the KID is not reported).
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
