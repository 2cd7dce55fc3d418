//! Identities for the bindings: enroll once, load afterwards, renew.

use std::sync::{Arc, Mutex};

use vcsdk::identity::IdentityStore;
use vcsdk::pki::CsrSubject;
use vcsdk::ClientId;

use super::{on_runtime, VcError};

/// What an identity's certificate says.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct IdentityInfo {
    /// The client id.
    pub id: String,
    /// The certificate's serial, hex.
    pub serial: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// Two thirds of the lifetime have passed: renew now.
    pub renewal_due: bool,
}

/// A client identity stored in a directory (key 0600, certificate, pinned root).
#[derive(uniffi::Object)]
pub struct Identity {
    store: IdentityStore,
    current: Mutex<Arc<vcsdk::identity::Identity>>,
}

impl Identity {
    /// The identity as it is now.
    pub(crate) fn current(&self) -> Arc<vcsdk::identity::Identity> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Its directory.
    pub(crate) fn store(&self) -> IdentityStore {
        self.store.clone()
    }
}

#[uniffi::export]
impl Identity {
    /// Loads the identity stored in `dir`.
    #[uniffi::constructor]
    pub fn load(dir: String) -> Result<Arc<Identity>, VcError> {
        let store = IdentityStore::new(dir);
        let identity = store.load()?;
        Ok(Arc::new(Identity {
            store,
            current: Mutex::new(Arc::new(identity)),
        }))
    }

    /// Renews now: a new key and certificate for the same id from the CA (the old certificate is
    /// revoked as superseded), stored before this returns.
    pub async fn renew(&self) -> Result<(), VcError> {
        let store = self.store.clone();
        let renewed = on_runtime(async move { Ok(store.renew().await?) }).await?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(renewed);
        Ok(())
    }

    /// The certificate's facts.
    pub fn info(&self) -> IdentityInfo {
        let current = self.current();
        let info = current.info();
        IdentityInfo {
            id: info.id.clone(),
            serial: info.serial.clone(),
            not_before: info.not_before,
            not_after: info.not_after,
            renewal_due: current.renewal_due(vcsdk::util::unix_now()),
        }
    }

    /// The client id.
    pub fn id(&self) -> String {
        self.current().id().to_owned()
    }
}

/// Enrolls `client_id` with the CA at `ca_url` (whose root certificate is the PEM `root_pem`)
/// using the one-time `token`; stores the new identity in `dir`. A `dir` whose certificate is
/// revoked, expired or from another CA is enrolled again (old files kept in `replaced/SERIAL/`);
/// one with a valid certificate is refused. Calling again with the same token after a failure
/// gets the same certificate.
#[uniffi::export]
pub async fn enroll(
    dir: String,
    ca_url: String,
    root_pem: Vec<u8>,
    token: String,
    client_id: String,
) -> Result<Arc<Identity>, VcError> {
    on_runtime(async move {
        let id = ClientId::new(&client_id)?;
        let store = IdentityStore::new(dir);
        let identity = store
            .enroll(&ca_url, &root_pem, &token, CsrSubject::Client(id))
            .await?;
        Ok(Arc::new(Identity {
            store,
            current: Mutex::new(Arc::new(identity)),
        }))
    })
    .await
}
