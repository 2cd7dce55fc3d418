//! Listeners of an object's events (a client's, a conference's): registered and removed through
//! a [`Subscription`], and fed by one thread of the library that takes each event from its source
//! and hands it to every listener in turn — holding events while none is registered.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch, Notify};

use super::{Subscription, VcError};
use crate::result::vc_result;

/// Events kept while no listener is registered (the oldest are dropped beyond this).
const PENDING_EVENTS: usize = 1024;

/// Where a pump takes its events from.
pub(crate) trait Source<E>: Send + 'static {
    /// The next event; `None` when there will be no more.
    fn next(&mut self) -> impl Future<Output = Option<E>>;
}

impl<E: Send + 'static> Source<E> for mpsc::Receiver<E> {
    fn next(&mut self) -> impl Future<Output = Option<E>> {
        self.recv()
    }
}

impl Source<vcsdk::client::ConferenceEvent> for vcsdk::client::Conference {
    fn next(&mut self) -> impl Future<Output = Option<vcsdk::client::ConferenceEvent>> {
        self.next_event()
    }
}

/// The registered listeners of one object.
pub(crate) struct Listeners<L: ?Sized> {
    next: Mutex<u64>,
    list: Mutex<Vec<(u64, Arc<L>)>>,
    added: Notify,
}

impl<L: ?Sized + Send + Sync + 'static> Listeners<L> {
    /// No listener yet.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Listeners {
            next: Mutex::new(0),
            list: Mutex::new(Vec::new()),
            added: Notify::new(),
        })
    }

    fn snapshot(&self) -> Vec<Arc<L>> {
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// Registers `listener` until the returned subscription is cancelled or dropped.
    pub(crate) fn add(self: &Arc<Self>, listener: Arc<L>) -> Arc<Subscription> {
        let id = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            *next += 1;
            *next
        };
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id, listener));
        self.added.notify_one();
        let listeners = Arc::downgrade(self);
        Arc::new(Subscription::new(move || {
            if let Some(listeners) = listeners.upgrade() {
                listeners
                    .list
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|(i, _)| *i != id);
            }
        }))
    }

    /// Starts the thread `name` that takes every event of `source` and hands it to each listener
    /// with `deliver`, until `stop` is set or the source ends.
    pub(crate) fn pump<E: Send + 'static>(
        self: &Arc<Self>,
        name: &str,
        mut source: impl Source<E>,
        deliver: fn(&L, &E),
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), VcError> {
        let listeners = self.clone();
        crate::runtime::event_thread(name, move || {
            let mut pending: VecDeque<E> = VecDeque::new();
            loop {
                let next = crate::runtime::block_on(async {
                    tokio::select! {
                        biased;
                        _ = stop.wait_for(|s| *s) => None,
                        _ = listeners.added.notified() => Some(None),
                        event = source.next() => event.map(Some),
                    }
                });
                let event = match next {
                    Ok(Some(event)) => event,
                    _ => break,
                };
                if *stop.borrow() {
                    break;
                }
                let current = listeners.snapshot();
                if current.is_empty() {
                    if let Some(event) = event {
                        if pending.len() == PENDING_EVENTS {
                            pending.pop_front();
                        }
                        pending.push_back(event);
                    }
                    continue;
                }
                for event in pending.drain(..).chain(event) {
                    for listener in &current {
                        // A listener that throws is reported by UniFFI as a panic here; it
                        // must not end delivery to it or to the others.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            deliver(listener, &event)
                        }));
                    }
                }
            }
        })
        .map(drop)
        .map_err(|e| VcError::kind(vc_result::VC_RESULT_STORE, e.to_string()))
    }
}
