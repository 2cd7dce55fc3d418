//! The UniFFI exports: the client SDK for Kotlin, Swift and Python, from the same library as the
//! C ABI. Objects for identities, clients and media sessions; records and enums for what they
//! report; async methods for everything that waits on the network (run on the library's runtime,
//! awaitable from any foreign event loop); listeners as foreign traits, each added listener
//! returning a [`Subscription`] whose drop stops delivery; one error enum, [`VcError`], built from
//! the same table as the C `vc_result`.
//!
//! Threading: listener methods are called on a thread of the library (one per client for client
//! events, one per frame listener), never on a thread of the foreign runtime, one call at a time
//! per listener; they may call any method of these objects.

mod client;
mod conference;
mod error;
mod identity;
mod listeners;
mod media;
mod subscription;

pub use client::*;
pub use conference::*;
pub use error::*;
pub use identity::*;
pub use media::*;
pub use subscription::*;

/// The SDK version, "MAJOR.MINOR.PATCH".
#[uniffi::export]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

/// Runs `work` on the library's runtime and awaits it from whatever executor polls the result: a
/// panic in it becomes [`VcError::Panic`].
pub(crate) async fn on_runtime<T, F>(work: F) -> Result<T, VcError>
where
    F: std::future::Future<Output = Result<T, VcError>> + Send + 'static,
    T: Send + 'static,
{
    let task = crate::runtime::spawn(work).map_err(VcError::from_result_code)?;
    task.await.unwrap_or_else(|_| {
        Err(VcError::Panic {
            code: "panic".into(),
            detail: "internal failure caught at the interface".into(),
        })
    })
}
