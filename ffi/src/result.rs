//! Results, error text, the panic boundary and pointer checks shared by every entry point.

use std::cell::RefCell;
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
    /// The output buffer is too small; the needed size is reported where the function says.
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
        _ => "unknown result code\0",
    };
    text.as_ptr().cast()
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records `message` as this thread's last error and returns `result`.
pub(crate) fn fail(result: vc_result, message: impl Into<String>) -> vc_result {
    let message = message.into();
    LAST_ERROR.with(|e| *e.borrow_mut() = message);
    result
}

/// Copies this thread's last error message (empty when the last call succeeded) into `buf` of
/// `len` bytes, NUL-terminated and truncated if needed, and returns its full length without the
/// NUL. With `buf` NULL or `len` 0 nothing is written: call it that way to learn the size.
///
/// # Safety
/// `buf`, when not NULL, must point to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn vc_last_error_message(buf: *mut c_char, len: usize) -> usize {
    catch_unwind(|| {
        LAST_ERROR.with(|e| {
            let e = e.borrow();
            if !buf.is_null() && len > 0 {
                let n = e.len().min(len - 1);
                // SAFETY: the caller promises `len` writable bytes at `buf`; we write n + 1 <= len.
                unsafe {
                    std::ptr::copy_nonoverlapping(e.as_ptr(), buf.cast::<u8>(), n);
                    *buf.add(n) = 0;
                }
            }
            e.len()
        })
    })
    .unwrap_or(0)
}

/// Runs `f` behind the panic boundary: clears the last error, turns a panic into
/// `VC_RESULT_PANIC`.
pub(crate) fn boundary(f: impl FnOnce() -> vc_result) -> vc_result {
    LAST_ERROR.with(|e| e.borrow_mut().clear());
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

/// `Ok(())` as `VC_RESULT_OK`, an error as itself.
pub(crate) fn done(r: Result<(), vc_result>) -> vc_result {
    r.err().unwrap_or(vc_result::VC_RESULT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_result_has_its_own_text_and_unknown_values_are_safe() {
        use vc_result::*;
        let all = [
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
        ];
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
        assert_eq!(boundary(|| panic!("boom")), VC_RESULT_PANIC);
    }
}
