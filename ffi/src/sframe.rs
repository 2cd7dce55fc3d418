//! SFrame (RFC 9605) contexts on their own, for apps with their own transport: install keys by
//! KID, protect and unprotect frames into caller-owned buffers (nothing is allocated per frame).

use std::time::Duration;

use vcsdk::media::sframe::{CipherSuite, SframeContext, SframeError, MAX_HEADER_LEN, TAG_LEN};

use crate::result::{boundary, done, fail, input, output, required, vc_result};

/// Most bytes protection adds to a frame (header and tag): an output buffer of the plaintext's
/// length plus this always suffices.
pub const VC_SFRAME_MAX_OVERHEAD: usize = 33;
const _: () = assert!(VC_SFRAME_MAX_OVERHEAD == MAX_HEADER_LEN + TAG_LEN);
/// Cipher suite AES_128_GCM_SHA256_128.
pub const VC_SFRAME_SUITE_AES_128_GCM_SHA256_128: u16 = 0x0004;
/// Cipher suite AES_256_GCM_SHA512_128.
pub const VC_SFRAME_SUITE_AES_256_GCM_SHA512_128: u16 = 0x0005;

/// An SFrame context: sending keys with their counters, receiving keys with their replay windows.
/// Not for use from two threads at once.
pub struct vc_sframe_context {
    inner: SframeContext,
}

fn sframe_error(e: SframeError) -> vc_result {
    let code = match &e {
        SframeError::BufferTooSmall { .. } => vc_result::VC_RESULT_BUFFER_TOO_SMALL,
        SframeError::UnknownKid(_) => vc_result::VC_RESULT_UNKNOWN_KEY,
        SframeError::Malformed(_) => vc_result::VC_RESULT_MALFORMED,
        SframeError::Replay { .. } | SframeError::TooOld { .. } => vc_result::VC_RESULT_REPLAY,
        SframeError::AuthenticationFailed => vc_result::VC_RESULT_AUTHENTICATION_FAILED,
        SframeError::CounterExhausted(_) => vc_result::VC_RESULT_COUNTER_EXHAUSTED,
        SframeError::KidReused(_) => vc_result::VC_RESULT_KEY_REUSED,
        SframeError::InvalidKey(_) => vc_result::VC_RESULT_INVALID_ARGUMENT,
    };
    fail(code, e.to_string())
}

/// [`sframe_error`], writing the capacity needed into `*out_len` when the buffer was too small.
///
/// # Safety
/// `out_len` non-NULL and writable.
unsafe fn report_needed(e: SframeError, out_len: *mut usize) -> vc_result {
    if let SframeError::BufferTooSmall { needed } = e {
        // SAFETY: by the caller's promise.
        unsafe { *out_len = needed };
    }
    sframe_error(e)
}

/// The context behind `ctx`.
///
/// # Safety
/// `ctx` must be NULL or a live pointer from `vc_sframe_context_new`.
unsafe fn context<'a>(ctx: *mut vc_sframe_context) -> Result<&'a mut SframeContext, vc_result> {
    required(ctx, "ctx")?;
    // SAFETY: non-NULL and, by the caller's promise, a live context used by one thread at a time.
    Ok(unsafe { &mut (*ctx).inner })
}

fn suite(id: u16) -> Result<CipherSuite, vc_result> {
    CipherSuite::from_id(id).ok_or_else(|| {
        fail(
            vc_result::VC_RESULT_INVALID_ARGUMENT,
            format!("cipher suite 0x{id:04x} is not supported (0x0004, 0x0005)"),
        )
    })
}

/// Creates an empty context into `*out`. Free it with vc_sframe_context_free().
///
/// # Safety
/// Pointers: `out` required.
#[no_mangle]
pub unsafe extern "C" fn vc_sframe_context_new(out: *mut *mut vc_sframe_context) -> vc_result {
    boundary(|| {
        done((|| {
            required(out, "out")?;
            let ctx = Box::new(vc_sframe_context {
                inner: SframeContext::new(),
            });
            // SAFETY: `out` is non-NULL and writable by the caller's promise.
            unsafe { *out = Box::into_raw(ctx) };
            Ok(())
        })())
    })
}

/// Frees a context (its keys are dropped).
///
/// # Safety
/// Pointers: `ctx` optional (NULL: nothing happens).
#[no_mangle]
pub unsafe extern "C" fn vc_sframe_context_free(ctx: *mut vc_sframe_context) {
    if ctx.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: by the caller's promise, created by Box::into_raw and not freed before.
        drop(unsafe { Box::from_raw(ctx) });
    });
}

/// Installs the sending key of `kid` (`key_len` bytes: 16 for suite 0x0004, 32 for 0x0005).
/// A KID this context sent with before is refused with VC_RESULT_KEY_REUSED.
///
/// # Safety
/// Pointers: `ctx` required; `key` required unless `key_len` is 0.
#[no_mangle]
pub unsafe extern "C" fn vc_sframe_add_send_key(
    ctx: *mut vc_sframe_context,
    suite_id: u16,
    kid: u64,
    key: *const u8,
    key_len: usize,
) -> vc_result {
    boundary(|| {
        done((|| {
            // SAFETY: forwarded caller promises.
            let (ctx, key) = unsafe { (context(ctx)?, input(key, key_len, "key")?) };
            ctx.add_send_key(suite(suite_id)?, kid, key)
                .map_err(sframe_error)
        })())
    })
}

/// Installs the receiving key of `kid`.
///
/// # Safety
/// Pointers: `ctx` required; `key` required unless `key_len` is 0.
#[no_mangle]
pub unsafe extern "C" fn vc_sframe_add_receive_key(
    ctx: *mut vc_sframe_context,
    suite_id: u16,
    kid: u64,
    key: *const u8,
    key_len: usize,
) -> vc_result {
    boundary(|| {
        done((|| {
            // SAFETY: forwarded caller promises.
            let (ctx, key) = unsafe { (context(ctx)?, input(key, key_len, "key")?) };
            ctx.add_receive_key(suite(suite_id)?, kid, key)
                .map_err(sframe_error)
        })())
    })
}

/// Stops sending with `kid` (its KID can never be installed for sending again).
///
/// # Safety
/// Pointers: `ctx` required.
#[no_mangle]
pub unsafe extern "C" fn vc_sframe_remove_send_key(
    ctx: *mut vc_sframe_context,
    kid: u64,
) -> vc_result {
    boundary(|| {
        // SAFETY: forwarded caller promise.
        done(unsafe { context(ctx) }.map(|c| c.remove_send_key(kid)))
    })
}

/// Keeps accepting frames of `kid` for `grace_ms` milliseconds, then forgets its receiving key.
///
/// # Safety
/// Pointers: `ctx` required.
#[no_mangle]
pub unsafe extern "C" fn vc_sframe_retire_receive_key(
    ctx: *mut vc_sframe_context,
    kid: u64,
    grace_ms: u32,
) -> vc_result {
    boundary(|| {
        // SAFETY: forwarded caller promise.
        done(
            unsafe { context(ctx) }
                .map(|c| c.retire_receive_key(kid, Duration::from_millis(grace_ms.into()))),
        )
    })
}

/// Protects `plain` with the sending key of `kid` into `out` (capacity `out_cap`; the plaintext
/// length plus VC_SFRAME_MAX_OVERHEAD always suffices); `*out_len` receives the frame length.
/// With a smaller `out_cap` nothing is done (no counter is used) and VC_RESULT_BUFFER_TOO_SMALL
/// puts the capacity needed in `*out_len`. `metadata` is authenticated but not sent.
/// Allocates nothing.
///
/// # Safety
/// Pointers: `ctx` required; `metadata` required unless `metadata_len` is 0; `plain` required
/// unless `plain_len` is 0; `out` required unless `out_cap` is 0, and not overlapping the inputs;
/// `out_len` required.
#[no_mangle]
pub unsafe extern "C" fn vc_sframe_encrypt(
    ctx: *mut vc_sframe_context,
    kid: u64,
    metadata: *const u8,
    metadata_len: usize,
    plain: *const u8,
    plain_len: usize,
    out: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> vc_result {
    boundary(|| {
        done((|| {
            required(out_len, "out_len")?;
            // SAFETY: forwarded caller promises.
            let (ctx, metadata, plain, out) = unsafe {
                (
                    context(ctx)?,
                    input(metadata, metadata_len, "metadata")?,
                    input(plain, plain_len, "plain")?,
                    output(out, out_cap, "out")?,
                )
            };
            let n = ctx
                .encrypt(kid, metadata, plain, out)
                // SAFETY: `out_len` checked non-NULL; writable by the caller's promise.
                .map_err(|e| unsafe { report_needed(e, out_len) })?;
            // SAFETY: checked non-NULL; writable by the caller's promise.
            unsafe { *out_len = n };
            Ok(())
        })())
    })
}

/// Unprotects `frame` into `out` (capacity `out_cap`; the frame's length suffices): checks the
/// KID is known, the frame authenticates, and its counter is fresh in the replay window.
/// `*out_len` receives the plaintext length and `*out_kid` the frame's KID. With too small an
/// `out_cap` nothing is done (the frame is not marked as seen: it can be decrypted again with
/// more room) and VC_RESULT_BUFFER_TOO_SMALL puts the capacity needed in `*out_len`. Allocates
/// nothing.
///
/// # Safety
/// Pointers: `ctx` required; `metadata` required unless `metadata_len` is 0; `frame` required
/// unless `frame_len` is 0; `out` required unless `out_cap` is 0, and not overlapping the inputs;
/// `out_len` required; `out_kid` optional (NULL: the KID is not reported).
#[no_mangle]
pub unsafe extern "C" fn vc_sframe_decrypt(
    ctx: *mut vc_sframe_context,
    metadata: *const u8,
    metadata_len: usize,
    frame: *const u8,
    frame_len: usize,
    out: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
    out_kid: *mut u64,
) -> vc_result {
    boundary(|| {
        done((|| {
            required(out_len, "out_len")?;
            // SAFETY: forwarded caller promises.
            let (ctx, metadata, frame, out) = unsafe {
                (
                    context(ctx)?,
                    input(metadata, metadata_len, "metadata")?,
                    input(frame, frame_len, "frame")?,
                    output(out, out_cap, "out")?,
                )
            };
            let (kid, n) = ctx
                .decrypt(metadata, frame, out)
                // SAFETY: `out_len` checked non-NULL; writable by the caller's promise.
                .map_err(|e| unsafe { report_needed(e, out_len) })?;
            // SAFETY: checked non-NULL / NULL-tested; writable by the caller's promise.
            unsafe {
                *out_len = n;
                if !out_kid.is_null() {
                    *out_kid = kid;
                }
            }
            Ok(())
        })())
    })
}
