//! Identities: enroll with the CA once, load from their directory afterwards, renew with a new
//! key. An identity directory is the one `vc enroll` writes (key 0600, certificate, pinned root).

use std::ffi::c_char;
use std::sync::{Arc, Mutex};

use vcsdk::identity::{Identity, IdentityStore};
use vcsdk::pki::CsrSubject;
use vcsdk::ClientId;

use crate::result::{
    boundary, done, free_handle, hand_out, handle, input, required, sdk_error, text, vc_result,
    write_text,
};
use crate::runtime::block_on;

/// A client identity: its directory, key and certificate. Safe to use from several threads.
pub struct vc_identity {
    store: IdentityStore,
    current: Mutex<Arc<Identity>>,
}

impl vc_identity {
    /// The identity as it is now (renewals replace it).
    pub(crate) fn current(&self) -> Arc<Identity> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The identity's directory.
    pub(crate) fn store(&self) -> &IdentityStore {
        &self.store
    }

    fn replace(&self, identity: Identity) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(identity);
    }
}

/// What a certificate says, for display and renewal planning.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct vc_identity_info {
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// Two thirds of the lifetime have passed: renew now (vc_identity_renew()).
    pub renewal_due: bool,
}

/// Enrolls a new client identity: makes a key, asks the CA at `ca_url` (`https://HOST:PORT`, whose
/// root certificate is the PEM `root_pem`, `root_pem_len` bytes) for a certificate for `client_id`
/// with the one-time `token`, checks the answer against that root, and stores key, certificate
/// and root in the directory `dir` (created). A `dir` whose certificate is revoked, expired or
/// from another CA is enrolled again, the old files kept in `dir/replaced/SERIAL/`; one with a
/// valid certificate is refused (VC_RESULT_INVALID_ARGUMENT). The new key is stored before the CA
/// is asked, so calling again with the same token after a failure (the answer lost, a full disk)
/// gets the same certificate. Blocks until done. Free with vc_identity_free(). Refusals (by the
/// CA): `token_unknown`, `token_used` (spent on another key), `token_revoked`, `token_expired`,
/// `wrong_id` (the token is for another id), and — for a request this library
/// does not make — `csr_invalid`, `unsupported_key`, `forbidden_usage`, `malformed_request`,
/// `body_too_large`.
///
/// # Safety
/// Pointers: `dir`, `ca_url`, `token`, `client_id` required; `root_pem` required (`root_pem_len`
/// bytes); `out` required.
#[no_mangle]
pub unsafe extern "C" fn vc_identity_enroll(
    dir: *const c_char,
    ca_url: *const c_char,
    root_pem: *const u8,
    root_pem_len: usize,
    token: *const c_char,
    client_id: *const c_char,
    out: *mut *mut vc_identity,
) -> vc_result {
    boundary(|| {
        done((|| {
            required(out, "out")?;
            // SAFETY: forwarded caller promises.
            let (dir, ca_url, root_pem, token, client_id) = unsafe {
                (
                    text(dir, "dir")?,
                    text(ca_url, "ca_url")?,
                    input(root_pem, root_pem_len, "root_pem")?,
                    text(token, "token")?,
                    text(client_id, "client_id")?,
                )
            };
            let id = ClientId::new(client_id).map_err(sdk_error)?;
            let store = IdentityStore::new(dir);
            let identity = block_on(store.enroll(ca_url, root_pem, token, CsrSubject::Client(id)))?
                .map_err(sdk_error)?;
            let value = vc_identity {
                store,
                current: Mutex::new(Arc::new(identity)),
            };
            // SAFETY: `out` checked non-NULL.
            unsafe { hand_out(out, value) };
            Ok(())
        })())
    })
}

/// Loads the identity stored in `dir` (finishing a renewal that was interrupted). A missing,
/// damaged or mismatched store gives VC_RESULT_STORE; a revoked identity (moved aside by a
/// revocation) VC_RESULT_STORE naming it. Free with vc_identity_free(). Needs no network.
///
/// # Safety
/// Pointers: `dir` required; `out` required.
#[no_mangle]
pub unsafe extern "C" fn vc_identity_load(
    dir: *const c_char,
    out: *mut *mut vc_identity,
) -> vc_result {
    boundary(|| {
        done((|| {
            required(out, "out")?;
            // SAFETY: forwarded caller promise.
            let dir = unsafe { text(dir, "dir")? };
            let store = IdentityStore::new(dir);
            let identity = store.load().map_err(sdk_error)?;
            let value = vc_identity {
                store,
                current: Mutex::new(Arc::new(identity)),
            };
            // SAFETY: `out` checked non-NULL.
            unsafe { hand_out(out, value) };
            Ok(())
        })())
    })
}

/// Frees an identity handle (the stored files stay). Clients made from it keep their own copy
/// and may outlive it.
///
/// # Safety
/// Pointers: `identity` optional (NULL: nothing happens).
#[no_mangle]
pub unsafe extern "C" fn vc_identity_free(identity: *mut vc_identity) {
    // SAFETY: forwarded caller promise.
    unsafe { free_handle(identity) }
}

/// Copies the identity's client id into `buf` (capacity `cap`; VC_ID_CAPACITY suffices) as text
/// out: on VC_RESULT_BUFFER_TOO_SMALL `*out_len` is the capacity needed, NUL included.
///
/// # Safety
/// Pointers: `identity` required; `buf` required unless `cap` is 0; `out_len` optional (NULL: no
/// length reported).
#[no_mangle]
pub unsafe extern "C" fn vc_identity_id(
    identity: *const vc_identity,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> vc_result {
    boundary(|| {
        done((|| {
            // SAFETY: forwarded caller promises.
            let identity = unsafe { handle(identity, "identity")? };
            let current = identity.current();
            // SAFETY: forwarded caller promises.
            unsafe { write_text(current.id(), buf, cap, out_len, "buf") }
        })())
    })
}

/// Fills `*out` with the current certificate's validity.
///
/// # Safety
/// Pointers: `identity` required; `out` required.
#[no_mangle]
pub unsafe extern "C" fn vc_identity_get_info(
    identity: *const vc_identity,
    out: *mut vc_identity_info,
) -> vc_result {
    boundary(|| {
        done((|| {
            required(out, "out")?;
            // SAFETY: forwarded caller promise.
            let identity = unsafe { handle(identity, "identity")? };
            let current = identity.current();
            let info = current.info();
            let value = vc_identity_info {
                not_before: info.not_before,
                not_after: info.not_after,
                renewal_due: current.renewal_due(vcsdk::util::unix_now()),
            };
            // SAFETY: checked non-NULL; writable by the caller's promise.
            unsafe { *out = value };
            Ok(())
        })())
    })
}

/// Renews now: a new key and certificate for the same id from the CA, authorised by the current
/// certificate (which the CA then revokes as superseded); both are stored before this returns.
/// Clients connected with the old certificate keep their connection; new ones use the new one.
/// Blocks until done. Refusals (by the CA): `certificate_revoked`, `certificate_expired`,
/// `certificate_unknown` (not a certificate this CA issued), `certificate_required`,
/// `renew_too_soon` (this certificate itself came from a renewal too recently; the message says
/// from when it may be renewed again), and — for a
/// request this library does not make — `csr_invalid`, `unsupported_key`, `forbidden_usage`,
/// `malformed_request`, `body_too_large`.
///
/// # Safety
/// Pointers: `identity` required.
#[no_mangle]
pub unsafe extern "C" fn vc_identity_renew(identity: *const vc_identity) -> vc_result {
    boundary(|| {
        done((|| {
            // SAFETY: forwarded caller promise.
            let identity = unsafe { handle(identity, "identity")? };
            let renewed = block_on(identity.store.renew())?.map_err(sdk_error)?;
            identity.replace(renewed);
            Ok(())
        })())
    })
}
