/*
 * vcsdk.h: the C interface of libvcsdk, the end-to-end encrypted video conferencing SDK.
 * Generated from the ffi crate by `cargo run -p gen-header`; do not edit by hand.
 *
 * Conventions
 * - Every function returns a vc_result (VC_RESULT_OK = 0) unless it says otherwise; on failure
 *   vc_last_error_message() gives the details for the calling thread.
 * - Handles are opaque. vc_x_new(..., vc_x **out) creates one; vc_x_free(vc_x *) frees it and
 *   accepts NULL. Never use a handle after freeing it.
 * - Byte buffers are a pointer and a length. Output buffers belong to the caller; the media path
 *   never allocates per frame.
 * - No function panics or aborts across this interface: an internal failure becomes
 *   VC_RESULT_PANIC. NULL where a pointer is required gives VC_RESULT_NULL_PARAMETER.
 * - Threads: a handle may be used from any thread, but not from two threads at once unless its
 *   functions say so.
 */

#ifndef VCSDK_H
#define VCSDK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

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
} vc_result;

// An SFrame context: sending keys with their counters, receiving keys with their replay windows.
// Not for use from two threads at once.
typedef struct vc_sframe_context vc_sframe_context;

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// The SDK version, "MAJOR.MINOR.PATCH", as a static NUL-terminated string (never freed).
const char *vc_version(void);

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
