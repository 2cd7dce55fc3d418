//! A listener's registration: dropping it (or calling `cancel`) stops delivery.

use std::sync::Mutex;

type Cancel = Box<dyn FnOnce() + Send>;

/// Keeps a listener registered. After `cancel` (or when this is dropped or garbage-collected) no
/// new callback starts; one already running finishes.
#[derive(uniffi::Object)]
pub struct Subscription {
    cancel: Mutex<Option<Cancel>>,
}

impl Subscription {
    /// A subscription that runs `cancel` once when cancelled or dropped.
    pub(crate) fn new(cancel: impl FnOnce() + Send + 'static) -> Self {
        Subscription {
            cancel: Mutex::new(Some(Box::new(cancel))),
        }
    }
}

#[uniffi::export]
impl Subscription {
    /// Stops delivery now (idempotent).
    pub fn cancel(&self) {
        let cancel = self.cancel.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(cancel) = cancel {
            cancel();
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cancel();
    }
}
