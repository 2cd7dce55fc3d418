//! Results, error text, the panic boundary and pointer checks shared by every entry point.

use std::cell::{Cell, RefCell};
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a `vc_*` function did. The values are fixed and never renumbered.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum vc_result {
    /// Success.
    VC_RESULT_OK = 0,
    /// A required pointer was NULL.
    VC_RESULT_NULL_PARAMETER = 1,
    /// An argument was malformed or out of range (see vc_last_error_message()).
    VC_RESULT_INVALID_ARGUMENT = 2,
    /// The output buffer is too small and nothing was done; the capacity needed (for text, its NUL
    /// included) is reported where the function says.
    VC_RESULT_BUFFER_TOO_SMALL = 3,
    /// No key is installed for the frame's or the given KID (or it was retired).
    VC_RESULT_UNKNOWN_KEY = 4,
    /// The frame was already received, or is older than the replay window.
    VC_RESULT_REPLAY = 5,
    /// The frame did not authenticate: altered, or protected with another key.
    VC_RESULT_AUTHENTICATION_FAILED = 6,
    /// The data is not a well-formed frame.
    VC_RESULT_MALFORMED = 7,
    /// A sending key for this KID was installed before; a new key needs a new KID.
    VC_RESULT_KEY_REUSED = 8,
    /// Every counter of the key was used; install a new key.
    VC_RESULT_COUNTER_EXHAUSTED = 9,
    /// An internal failure was caught at the interface (a bug; please report it).
    VC_RESULT_PANIC = 10,
    /// A certificate was refused: foreign root, expired, revoked, wrong name or usage.
    VC_RESULT_CERTIFICATE = 11,
    /// A file or the identity store could not be read or written, or holds damaged data.
    VC_RESULT_STORE = 12,
    /// The network connection or the TLS handshake failed.
    VC_RESULT_CONNECTION = 13,
    /// The CA or the server refused the request; vc_last_error_code() names the reason.
    VC_RESULT_REFUSED = 14,
    /// The other side broke the protocol.
    VC_RESULT_PROTOCOL = 15,
    /// A cryptographic operation failed.
    VC_RESULT_CRYPTO = 16,
    /// Nothing arrived within the time allowed.
    VC_RESULT_TIMEOUT = 17,
    /// The handle's session or connection is closed, the call ended before its media started,
    /// or the library was shut down (vc_library_shutdown()).
    VC_RESULT_CLOSED = 18,
}

impl vc_result {
    /// Every value, in order (index = value).
    #[cfg(test)]
    pub(crate) const ALL: [vc_result; 19] = {
        use vc_result::*;
        [
            VC_RESULT_OK,
            VC_RESULT_NULL_PARAMETER,
            VC_RESULT_INVALID_ARGUMENT,
            VC_RESULT_BUFFER_TOO_SMALL,
            VC_RESULT_UNKNOWN_KEY,
            VC_RESULT_REPLAY,
            VC_RESULT_AUTHENTICATION_FAILED,
            VC_RESULT_MALFORMED,
            VC_RESULT_KEY_REUSED,
            VC_RESULT_COUNTER_EXHAUSTED,
            VC_RESULT_PANIC,
            VC_RESULT_CERTIFICATE,
            VC_RESULT_STORE,
            VC_RESULT_CONNECTION,
            VC_RESULT_REFUSED,
            VC_RESULT_PROTOCOL,
            VC_RESULT_CRYPTO,
            VC_RESULT_TIMEOUT,
            VC_RESULT_CLOSED,
        ]
    };

    /// The stable code a failure of this kind reports through vc_last_error_code().
    pub(crate) fn code(self) -> &'static str {
        use vc_result::*;
        match self {
            VC_RESULT_OK => "",
            VC_RESULT_NULL_PARAMETER => "null_parameter",
            VC_RESULT_INVALID_ARGUMENT => "invalid_argument",
            VC_RESULT_BUFFER_TOO_SMALL => "buffer_too_small",
            VC_RESULT_UNKNOWN_KEY => "unknown_key",
            VC_RESULT_REPLAY => "replay",
            VC_RESULT_AUTHENTICATION_FAILED => "authentication_failed",
            VC_RESULT_MALFORMED => "malformed",
            VC_RESULT_KEY_REUSED => "key_reused",
            VC_RESULT_COUNTER_EXHAUSTED => "counter_exhausted",
            VC_RESULT_PANIC => "panic",
            VC_RESULT_CERTIFICATE => "certificate",
            VC_RESULT_STORE => "store",
            VC_RESULT_CONNECTION => "connection",
            VC_RESULT_REFUSED => "refused",
            VC_RESULT_PROTOCOL => "protocol",
            VC_RESULT_CRYPTO => "crypto",
            VC_RESULT_TIMEOUT => "timeout",
            VC_RESULT_CLOSED => "closed",
        }
    }
}

/// A static, NUL-terminated description of a vc_result value (never freed). Takes the number so
/// that any value, even one this library does not know, is described safely.
#[no_mangle]
pub extern "C" fn vc_result_message(result: u32) -> *const c_char {
    let text: &'static str = match result {
        0 => "ok\0",
        1 => "a required pointer was NULL\0",
        2 => "invalid argument\0",
        3 => "output buffer too small\0",
        4 => "no key for this KID\0",
        5 => "replayed or too old frame\0",
        6 => "authentication failed\0",
        7 => "malformed frame\0",
        8 => "KID already used for sending\0",
        9 => "counter space exhausted\0",
        10 => "internal failure caught at the interface\0",
        11 => "certificate refused\0",
        12 => "identity store or file error\0",
        13 => "connection failed\0",
        14 => "refused by the CA or the server\0",
        15 => "protocol error\0",
        16 => "cryptographic failure\0",
        17 => "timed out\0",
        18 => "closed\0",
        _ => "unknown result code\0",
    };
    text.as_ptr().cast()
}

/// The last failure of a thread: its text and its stable code.
struct LastError {
    message: String,
    code: String,
}

thread_local! {
    static LAST_ERROR: RefCell<LastError> = const {
        RefCell::new(LastError { message: String::new(), code: String::new() })
    };
    /// Whether LAST_ERROR holds something: a plain flag, so that the hot path (a call that
    /// succeeds after one that succeeded) touches no destructor-carrying thread-local.
    static HAS_ERROR: Cell<bool> = const { Cell::new(false) };
}

/// Records `message` as this thread's last error and returns `result`.
pub(crate) fn fail(result: vc_result, message: impl Into<String>) -> vc_result {
    fail_with_code(result, result.code(), message)
}

/// Records `message` with the stable `code` as this thread's last error and returns `result`.
pub(crate) fn fail_with_code(
    result: vc_result,
    code: &str,
    message: impl Into<String>,
) -> vc_result {
    let message = message.into();
    LAST_ERROR.with(|e| {
        let mut e = e.borrow_mut();
        e.message = message;
        e.code.clear();
        e.code.push_str(code);
    });
    HAS_ERROR.with(|h| h.set(true));
    result
}

/// This thread's last error: its code and message.
pub(crate) fn last_error() -> (String, String) {
    LAST_ERROR.with(|e| {
        let e = e.borrow();
        (e.code.clone(), e.message.clone())
    })
}

/// Records an SDK error: its kind as the result, the CA's or server's refusal code (or the
/// error's own code) as the last error code, its text as the message.
pub(crate) fn sdk_error(e: vcsdk::Error) -> vc_result {
    let (result, code) = classify(&e);
    fail_with_code(result, &code, e.to_string())
}

/// The kind (as a vc_result) and the stable code of an SDK error: the one table both the C ABI
/// and the UniFFI error use.
pub(crate) fn classify(e: &vcsdk::Error) -> (vc_result, String) {
    use vcsdk::Error as E;
    let result = match e {
        E::InvalidArgument(_) => vc_result::VC_RESULT_INVALID_ARGUMENT,
        E::Certificate(_) => vc_result::VC_RESULT_CERTIFICATE,
        E::Io { .. } | E::Store(_) => vc_result::VC_RESULT_STORE,
        E::Connection { .. } => vc_result::VC_RESULT_CONNECTION,
        E::CaRefused { .. } | E::ServerRefused { .. } => vc_result::VC_RESULT_REFUSED,
        E::Protocol(_) => vc_result::VC_RESULT_PROTOCOL,
        E::Crypto(_) => vc_result::VC_RESULT_CRYPTO,
        E::Closed(_) => vc_result::VC_RESULT_CLOSED,
    };
    let code = match e {
        E::CaRefused { code, .. } | E::ServerRefused { code, .. } => code.clone(),
        other => other.code().to_owned(),
    };
    (result, code)
}

/// Copies `text` into `buf` of `len` bytes, NUL-terminated and truncated if needed; returns the
/// full length without the NUL.
///
/// # Safety
/// `buf`, when not NULL, must point to `len` writable bytes.
unsafe fn copy_truncated(text: &str, buf: *mut c_char, len: usize) -> usize {
    if !buf.is_null() && len > 0 {
        let n = text.len().min(len - 1);
        // SAFETY: the caller promises `len` writable bytes at `buf`; we write n + 1 <= len.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
            *buf.add(n) = 0;
        }
    }
    text.len()
}

/// Copies this thread's last error message (empty when the last call succeeded) into `buf` of
/// `len` bytes, NUL-terminated and cut short if it does not fit, and returns the message's whole
/// length *without* the NUL (like snprintf): a buffer of the returned value + 1 bytes holds it
/// whole. With `buf` NULL or `len` 0 nothing is written (ask that way for the length). Never fails.
///
/// # Safety
/// Pointers: `buf` optional (NULL: nothing is written), else valid for `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn vc_last_error_message(buf: *mut c_char, len: usize) -> usize {
    catch_unwind(|| {
        // SAFETY: forwarded caller promise.
        LAST_ERROR.with(|e| unsafe { copy_truncated(&e.borrow().message, buf, len) })
    })
    .unwrap_or(0)
}

/// Copies this thread's last error code into `buf` like vc_last_error_message() (returning the
/// code's length without the NUL: allocate the returned value + 1 bytes): a stable,
/// machine-readable word (empty after a success). For VC_RESULT_REFUSED it is the CA's or the
/// server's refusal code (each function lists those it can get; docs/protocol.md explains them);
/// otherwise the result's own word (`connection`, `certificate`, `closed`, …).
///
/// # Safety
/// Pointers: `buf` optional (NULL: nothing is written), else valid for `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn vc_last_error_code(buf: *mut c_char, len: usize) -> usize {
    catch_unwind(|| {
        // SAFETY: forwarded caller promise.
        LAST_ERROR.with(|e| unsafe { copy_truncated(&e.borrow().code, buf, len) })
    })
    .unwrap_or(0)
}

/// Runs `f` behind the panic boundary: clears the last error, turns a panic into
/// `VC_RESULT_PANIC`.
pub(crate) fn boundary(f: impl FnOnce() -> vc_result) -> vc_result {
    if HAS_ERROR.with(|h| h.replace(false)) {
        LAST_ERROR.with(|e| {
            let mut e = e.borrow_mut();
            e.message.clear();
            e.code.clear();
        });
    }
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        fail(
            vc_result::VC_RESULT_PANIC,
            "internal failure caught at the interface",
        )
    })
}

/// The bytes at `ptr` (`len` of them); NULL is allowed for an empty buffer.
///
/// # Safety
/// A non-NULL `ptr` must point to `len` readable bytes that stay valid and unchanged for `'a`.
pub(crate) unsafe fn input<'a>(
    ptr: *const u8,
    len: usize,
    what: &str,
) -> Result<&'a [u8], vc_result> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(fail(
            vc_result::VC_RESULT_NULL_PARAMETER,
            format!("{what} is NULL with length {len}"),
        ));
    }
    if len > isize::MAX as usize {
        return Err(fail(
            vc_result::VC_RESULT_INVALID_ARGUMENT,
            format!("{what}: length {len} is too large"),
        ));
    }
    // SAFETY: non-NULL, length within isize::MAX, readable for `len` bytes by the caller's promise.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The writable bytes at `ptr` (`len` of them); NULL is allowed when `len` is 0.
///
/// # Safety
/// A non-NULL `ptr` must point to `len` writable bytes not aliased by any other argument.
pub(crate) unsafe fn output<'a>(
    ptr: *mut u8,
    len: usize,
    what: &str,
) -> Result<&'a mut [u8], vc_result> {
    if len == 0 {
        return Ok(&mut []);
    }
    if ptr.is_null() {
        return Err(fail(
            vc_result::VC_RESULT_NULL_PARAMETER,
            format!("{what} is NULL with capacity {len}"),
        ));
    }
    if len > isize::MAX as usize {
        return Err(fail(
            vc_result::VC_RESULT_INVALID_ARGUMENT,
            format!("{what}: capacity {len} is too large"),
        ));
    }
    // SAFETY: as for `input`, and writable without aliases by the caller's promise.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// Checks that an out-pointer is not NULL.
pub(crate) fn required<T>(ptr: *mut T, what: &str) -> Result<(), vc_result> {
    if ptr.is_null() {
        Err(fail(
            vc_result::VC_RESULT_NULL_PARAMETER,
            format!("{what} is NULL"),
        ))
    } else {
        Ok(())
    }
}

/// The NUL-terminated UTF-8 string at `ptr`.
///
/// # Safety
/// A non-NULL `ptr` must point to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn text<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, vc_result> {
    if ptr.is_null() {
        return Err(fail(
            vc_result::VC_RESULT_NULL_PARAMETER,
            format!("{what} is NULL"),
        ));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's promise.
    let bytes = unsafe { std::ffi::CStr::from_ptr(ptr) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|_| {
        fail(
            vc_result::VC_RESULT_INVALID_ARGUMENT,
            format!("{what} is not UTF-8"),
        )
    })
}

/// Like [`text`], but NULL means `None`.
///
/// # Safety
/// As [`text`].
pub(crate) unsafe fn optional_text<'a>(
    ptr: *const c_char,
    what: &str,
) -> Result<Option<&'a str>, vc_result> {
    if ptr.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded caller promise.
        unsafe { text(ptr, what) }.map(Some)
    }
}

/// Writes `value` NUL-terminated into `buf` (capacity `cap`) and its length without the NUL into
/// `*out_len` (if not NULL). A buffer too small gets nothing and VC_RESULT_BUFFER_TOO_SMALL, with
/// the capacity needed — the NUL included — in `*out_len`.
///
/// # Safety
/// `buf` NULL or valid for `cap` writable bytes; `out_len` NULL or writable.
pub(crate) unsafe fn write_text(
    value: &str,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
    what: &str,
) -> Result<(), vc_result> {
    if buf.is_null() && cap > 0 {
        return Err(fail(
            vc_result::VC_RESULT_NULL_PARAMETER,
            format!("{what} is NULL with capacity {cap}"),
        ));
    }
    let fits = cap > value.len();
    if !out_len.is_null() {
        let reported = if fits { value.len() } else { value.len() + 1 };
        // SAFETY: non-NULL and writable by the caller's promise.
        unsafe { *out_len = reported };
    }
    if !fits {
        return Err(fail(
            vc_result::VC_RESULT_BUFFER_TOO_SMALL,
            format!(
                "{what} needs {} bytes with its NUL; {cap} given",
                value.len() + 1
            ),
        ));
    }
    // SAFETY: cap > 0, so `output` checks `buf`; the caller promises `cap` writable bytes.
    let out = unsafe { output(buf.cast(), cap, what) }?;
    out[..value.len()].copy_from_slice(value.as_bytes());
    out[value.len()] = 0;
    Ok(())
}

/// Checks that a required handle pointer is not NULL and borrows it.
///
/// # Safety
/// A non-NULL `ptr` must point to a live `T` for `'a`.
pub(crate) unsafe fn handle<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, vc_result> {
    if ptr.is_null() {
        return Err(fail(
            vc_result::VC_RESULT_NULL_PARAMETER,
            format!("{what} is NULL"),
        ));
    }
    // SAFETY: non-NULL and live by the caller's promise.
    Ok(unsafe { &*ptr })
}

/// Stores `value` boxed into `*out`.
///
/// # Safety
/// `out` must be checked non-NULL and writable.
pub(crate) unsafe fn hand_out<T>(out: *mut *mut T, value: T) {
    // SAFETY: by the caller's promise.
    unsafe { *out = Box::into_raw(Box::new(value)) };
}

/// Frees a handle from [`hand_out`]; NULL is ignored and a panic in a destructor is contained.
///
/// # Safety
/// `ptr` must be NULL or from [`hand_out`] and not freed before.
pub(crate) unsafe fn free_handle<T>(ptr: *mut T) {
    if ptr.is_null() {
        return;
    }
    let ptr = AssertUnwindSafe(ptr);
    let _ = catch_unwind(move || {
        let ptr = ptr;
        // SAFETY: by the caller's promise, from Box::into_raw and not freed before.
        drop(unsafe { Box::from_raw(ptr.0) });
    });
}

/// `Ok(())` as `VC_RESULT_OK`, an error as itself.
pub(crate) fn done(r: Result<(), vc_result>) -> vc_result {
    r.err().unwrap_or(vc_result::VC_RESULT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_result_has_its_own_text_and_unknown_values_are_safe() {
        let all = vc_result::ALL;
        let text = |n: u32| {
            // SAFETY: vc_result_message returns a static NUL-terminated string.
            unsafe { std::ffi::CStr::from_ptr(vc_result_message(n)) }
                .to_str()
                .unwrap()
                .to_owned()
        };
        let mut seen = std::collections::HashSet::new();
        for (i, r) in all.iter().enumerate() {
            assert_eq!(*r as u32, i as u32, "values are fixed and dense");
            let t = text(*r as u32);
            assert_ne!(t, "unknown result code");
            assert!(seen.insert(t));
        }
        assert_eq!(text(999), "unknown result code");
        assert_eq!(boundary(|| panic!("boom")), vc_result::VC_RESULT_PANIC);
    }
}

#[cfg(test)]
mod text_tests {
    use super::*;

    #[test]
    fn text_that_does_not_fit_is_not_written_and_its_size_is_reported() {
        let mut buf = [b'x' as c_char; 4];
        let mut len = 0usize;
        // SAFETY: buf has 4 writable bytes; len is writable.
        let r = unsafe { write_text("hello", buf.as_mut_ptr(), buf.len(), &mut len, "buf") };
        assert_eq!(r, Err(vc_result::VC_RESULT_BUFFER_TOO_SMALL));
        assert_eq!(len, 6, "the capacity needed, NUL included");
        assert_eq!(buf, [b'x' as c_char; 4]);
        // Exactly the capacity reported is enough.
        let mut exact = [b'x' as c_char; 6];
        // SAFETY: exact has 6 writable bytes; len is writable.
        let r = unsafe { write_text("hello", exact.as_mut_ptr(), len, &mut len, "buf") };
        assert_eq!((r, len, exact[5]), (Ok(()), 5, 0));
        // SAFETY: as above.
        let r = unsafe { write_text("hey", buf.as_mut_ptr(), buf.len(), &mut len, "buf") };
        assert_eq!(r, Ok(()));
        assert_eq!((len, buf[3]), (3, 0));
    }

    #[test]
    fn refusals_keep_the_peer_code_and_other_errors_their_kind() {
        let r = sdk_error(vcsdk::Error::ServerRefused {
            code: "insufficient_credit".into(),
            message: "no money".into(),
        });
        assert_eq!(r, vc_result::VC_RESULT_REFUSED);
        let mut code = [0 as c_char; 64];
        // SAFETY: 64 writable bytes.
        let n = unsafe { vc_last_error_code(code.as_mut_ptr(), code.len()) };
        // SAFETY: NUL-terminated by vc_last_error_code.
        let text = unsafe { std::ffi::CStr::from_ptr(code.as_ptr()) };
        assert_eq!((n, text.to_str().unwrap()), (19, "insufficient_credit"));
        let r = sdk_error(vcsdk::Error::Connection {
            target: "x".into(),
            message: "down".into(),
        });
        assert_eq!(r, vc_result::VC_RESULT_CONNECTION);
    }
}
