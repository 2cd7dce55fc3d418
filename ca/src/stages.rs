//! One connection's time limits after its TLS handshake: the stage it is in (waiting for headers,
//! handling a request, writing a response, idle between requests) and the deadline of that stage.
//! [`Watched`] wraps the connection's stream to see bytes arrive and responses leave; the API
//! marks where a request starts and its response is ready; [`Clock::expired`] completes when a
//! stage outlives its deadline, and the connection is then closed.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for a request's line and headers.
    Headers,
    /// A request is being handled (its body read, the work done).
    Handling,
    /// A response is being written.
    Writing,
    /// Kept alive, waiting for the next request.
    Idle,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Headers => "request headers",
            Stage::Handling => "request handling",
            Stage::Writing => "response write",
            Stage::Idle => "idle keep-alive",
        })
    }
}

/// How long each stage may last.
#[derive(Debug, Clone, Copy)]
pub struct StageLimits {
    /// [`Stage::Headers`].
    pub headers: Duration,
    /// [`Stage::Handling`]: a backstop above the body and handler limits the API applies itself.
    pub handling: Duration,
    /// [`Stage::Writing`].
    pub writing: Duration,
    /// [`Stage::Idle`].
    pub idle: Duration,
}

impl StageLimits {
    fn of(&self, stage: Stage) -> Duration {
        match stage {
            Stage::Headers => self.headers,
            Stage::Handling => self.handling,
            Stage::Writing => self.writing,
            Stage::Idle => self.idle,
        }
    }
}

/// A connection's current stage and deadline.
pub struct Clock {
    limits: StageLimits,
    state: Mutex<(Stage, Instant)>,
}

impl Clock {
    /// A clock for a connection that has just finished its handshake: waiting for headers.
    pub fn new(limits: StageLimits) -> Arc<Self> {
        Arc::new(Clock {
            limits,
            state: Mutex::new((Stage::Headers, Instant::now() + limits.headers)),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, (Stage, Instant)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enter(&self, stage: Stage) {
        *self.state() = (stage, Instant::now() + self.limits.of(stage));
    }

    fn enter_from(&self, from: Stage, to: Stage) {
        let mut state = self.state();
        if state.0 == from {
            *state = (to, Instant::now() + self.limits.of(to));
        }
    }

    /// A request's headers have been read and its handling starts.
    pub fn request_started(&self) {
        self.enter(Stage::Handling);
    }

    /// The response is ready to be written.
    pub fn response_ready(&self) {
        self.enter(Stage::Writing);
    }

    /// The stage the connection is in.
    pub fn stage(&self) -> Stage {
        self.state().0
    }

    /// Completes, with the stage, once the current stage has outlived its deadline.
    pub async fn expired(&self) -> Stage {
        loop {
            let (stage, deadline) = *self.state();
            if Instant::now() >= deadline {
                return stage;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A stream whose reads start the header stage of an idle connection, and whose completed
/// flushes end the write stage.
pub struct Watched<T> {
    inner: T,
    clock: Arc<Clock>,
}

impl<T> Watched<T> {
    /// Wraps `inner`, reporting to `clock`.
    pub fn new(inner: T, clock: Arc<Clock>) -> Self {
        Watched { inner, clock }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.enter_from(Stage::Idle, Stage::Headers);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(result, Poll::Ready(Ok(()))) {
            self.clock.enter_from(Stage::Writing, Stage::Idle);
        }
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> StageLimits {
        StageLimits {
            headers: Duration::from_millis(100),
            handling: Duration::from_secs(60),
            writing: Duration::from_secs(60),
            idle: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn a_stage_that_outlives_its_deadline_expires_and_moving_on_resets_it() {
        let clock = Clock::new(limits());
        let started = Instant::now();
        assert_eq!(clock.expired().await, Stage::Headers);
        assert!(started.elapsed() >= Duration::from_millis(100));
        clock.request_started();
        let waited =
            tokio::time::timeout(Duration::from_millis(200), clock.expired()).await;
        assert!(waited.is_err(), "handling has a minute");
        clock.response_ready();
        assert_eq!(clock.stage(), Stage::Writing);
    }
}
