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
use tokio::sync::Notify;
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
    state: Mutex<State>,
    /// Wakes [`Clock::expired`] when the deadline moves (it may move earlier).
    moved: Notify,
}

struct State {
    stage: Stage,
    /// End of the current stage (for [`Stage::Writing`], see `unflushed_since`).
    deadline: Instant,
    /// Since when a response has been waiting to be flushed. It is tracked apart from the stage
    /// because a pipelined request may start while an earlier response is still unwritten.
    unflushed_since: Option<Instant>,
}

impl State {
    /// The next deadline and the stage that would have outlived it.
    fn next(&self, limits: &StageLimits) -> (Stage, Instant) {
        match self.unflushed_since.map(|t| t + limits.writing) {
            Some(write) if self.stage == Stage::Writing || write < self.deadline => {
                (Stage::Writing, write)
            }
            _ => (self.stage, self.deadline),
        }
    }
}

impl Clock {
    /// A clock for a connection that has just finished its handshake: waiting for headers.
    pub fn new(limits: StageLimits) -> Arc<Self> {
        Arc::new(Clock {
            limits,
            state: Mutex::new(State {
                stage: Stage::Headers,
                deadline: Instant::now() + limits.headers,
                unflushed_since: None,
            }),
            moved: Notify::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enter(&self, state: &mut State, stage: Stage) {
        state.stage = stage;
        state.deadline = Instant::now() + self.limits.of(stage);
        self.moved.notify_one();
    }

    /// A request's headers have been read and its handling starts.
    pub fn request_started(&self) {
        self.enter(&mut self.state(), Stage::Handling);
    }

    /// The response is ready to be written.
    pub fn response_ready(&self) {
        let mut state = self.state();
        self.enter(&mut state, Stage::Writing);
        state.unflushed_since.get_or_insert_with(Instant::now);
    }

    /// Bytes arrived: an idle connection is now reading a request's headers.
    fn bytes_read(&self) {
        let mut state = self.state();
        if state.stage == Stage::Idle {
            self.enter(&mut state, Stage::Headers);
        }
    }

    /// Everything written so far has left: a written response makes the connection idle.
    fn flushed(&self) {
        let mut state = self.state();
        state.unflushed_since = None;
        if state.stage == Stage::Writing {
            self.enter(&mut state, Stage::Idle);
        }
    }

    /// The stage the connection is in.
    pub fn stage(&self) -> Stage {
        self.state().stage
    }

    /// Completes, with the stage, once the current stage (or an unwritten response) has outlived
    /// its deadline.
    pub async fn expired(&self) -> Stage {
        loop {
            let (stage, deadline) = self.state().next(&self.limits);
            if Instant::now() >= deadline {
                return stage;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.moved.notified() => {}
            }
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
            self.clock.bytes_read();
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
            self.clock.flushed();
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
        let waited = tokio::time::timeout(Duration::from_millis(200), clock.expired()).await;
        assert!(waited.is_err(), "handling has a minute");
        clock.response_ready();
        assert_eq!(clock.stage(), Stage::Writing);
    }

    #[tokio::test]
    async fn a_deadline_moved_earlier_wakes_the_watch() {
        let clock = Clock::new(StageLimits {
            headers: Duration::from_secs(60),
            writing: Duration::from_millis(100),
            ..limits()
        });
        let watch = tokio::spawn({
            let clock = clock.clone();
            async move { clock.expired().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        clock.request_started();
        clock.response_ready();
        let expired = tokio::time::timeout(Duration::from_secs(5), watch).await;
        assert_eq!(expired.ok().and_then(Result::ok), Some(Stage::Writing));
    }

    #[tokio::test]
    async fn an_unwritten_response_expires_even_while_a_pipelined_request_is_handled() {
        let clock = Clock::new(StageLimits {
            writing: Duration::from_millis(100),
            ..limits()
        });
        clock.request_started();
        clock.response_ready();
        // The next pipelined request starts before the first response has left.
        clock.request_started();
        let expired = tokio::time::timeout(Duration::from_secs(5), clock.expired()).await;
        assert_eq!(expired.ok(), Some(Stage::Writing));
        clock.flushed();
        let waited = tokio::time::timeout(Duration::from_millis(200), clock.expired()).await;
        assert!(
            waited.is_err(),
            "once flushed, the handling stage has its minute"
        );
    }
}
