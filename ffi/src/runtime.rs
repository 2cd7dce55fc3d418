//! The library's own tokio runtime: started on first use, shared by every client and media
//! session, never exposed. C calls block on it from the caller's thread. It can be shut down
//! once for the life of the process (vc_library_shutdown()): calls waiting on it return
//! VC_RESULT_CLOSED at once, its threads end, and every later call that needs it is refused
//! with VC_RESULT_CLOSED.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Runtime};
use tokio::sync::watch;

use crate::result::{boundary, done, fail, vc_result};

/// Worker threads of the runtime.
const WORKERS: usize = 2;
/// How long vc_library_shutdown() waits for calls in progress and event threads to end, and
/// then for the runtime's threads.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// The runtime and what shutting it down needs.
struct Library {
    /// The runtime while it runs (None before the first use and after the shutdown).
    runtime: Mutex<Option<Runtime>>,
    /// A handle to it, for the calls (cloned out of `runtime` under its lock).
    handle: Mutex<Option<Handle>>,
    /// Set once by the shutdown; never cleared.
    shut_down: AtomicBool,
    /// Calls inside [`block_on`] now.
    in_flight: AtomicUsize,
    /// Event threads running now (see [`event_thread`]).
    event_threads: AtomicUsize,
    /// Turns true at the shutdown: every [`block_on`] in progress stops waiting.
    stop: watch::Sender<bool>,
}

static LIBRARY: LazyLock<Library> = LazyLock::new(|| Library {
    runtime: Mutex::new(None),
    handle: Mutex::new(None),
    shut_down: AtomicBool::new(false),
    in_flight: AtomicUsize::new(0),
    event_threads: AtomicUsize::new(0),
    stop: watch::Sender::new(false),
});

thread_local! {
    /// Whether this thread is one of the library's event threads.
    static EVENT_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// The failure every call that needs the runtime gets after the shutdown.
fn shut_down() -> vc_result {
    fail(
        vc_result::VC_RESULT_CLOSED,
        "the library was shut down (vc_library_shutdown); nothing that needs the network works any more",
    )
}

/// A handle to the running runtime, starting it on first use.
fn handle() -> Result<Handle, vc_result> {
    let mut handle = LIBRARY
        .handle
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(h) = handle.as_ref() {
        return Ok(h.clone());
    }
    let mut runtime = LIBRARY
        .runtime
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if LIBRARY.shut_down.load(Ordering::SeqCst) {
        return Err(shut_down());
    }
    let started = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .thread_name("vcsdk-worker")
        .on_thread_start(block_sigpipe)
        .enable_all()
        .build()
        .map_err(|e| {
            fail(
                vc_result::VC_RESULT_STORE,
                format!("starting the runtime: {e}"),
            )
        })?;
    let h = started.handle().clone();
    *runtime = Some(started);
    *handle = Some(h.clone());
    Ok(h)
}

/// A call counted in [`Library::in_flight`] while it lives.
struct InFlight;

impl InFlight {
    /// Counts a call in, unless the library is shut down.
    fn enter() -> Result<InFlight, vc_result> {
        // Counted first, then the flag read (both SeqCst): the shutdown sets the flag and then
        // reads the count, so either this call sees the flag or the shutdown waits for it.
        LIBRARY.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight;
        if LIBRARY.shut_down.load(Ordering::SeqCst) {
            return Err(shut_down());
        }
        Ok(guard)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        LIBRARY.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs `work` to completion on the runtime, blocking the calling thread. Refused (not a panic)
/// when called from one of the runtime's own threads; VC_RESULT_CLOSED after the shutdown, and
/// when the shutdown happens while it waits.
pub(crate) fn block_on<F: Future>(work: F) -> Result<F::Output, vc_result> {
    block_on_masked(work, true)
}

/// [`block_on`] for the media path: sending and receiving datagrams (UDP cannot raise SIGPIPE),
/// so the calling thread's signal mask is left alone — two system calls less per frame.
pub(crate) fn block_on_media<F: Future>(work: F) -> Result<F::Output, vc_result> {
    block_on_masked(work, false)
}

fn block_on_masked<F: Future>(work: F, mask_sigpipe: bool) -> Result<F::Output, vc_result> {
    if Handle::try_current().is_ok() {
        return Err(fail(
            vc_result::VC_RESULT_INVALID_ARGUMENT,
            "a blocking vc_* function was called from inside an asynchronous runtime",
        ));
    }
    let _counted = InFlight::enter()?;
    let handle = handle()?;
    let mut stop = LIBRARY.stop.subscribe();
    let run = || {
        handle.block_on(async move {
            tokio::select! {
                biased;
                _ = stop.wait_for(|stopped| *stopped) => None,
                out = work => Some(out),
            }
        })
    };
    // The work runs on this (the caller's) thread too: connecting, TLS handshakes.
    let out = if mask_sigpipe {
        without_sigpipe(run)
    } else {
        run()
    };
    out.ok_or_else(shut_down)
}

/// The signal set holding only SIGPIPE.
fn sigpipe_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set it is given; sigaddset adds a valid signal.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        set
    }
}

/// Blocks SIGPIPE for good on one of the library's own threads.
///
/// Writing to a socket the peer has reset raises SIGPIPE, whose default action kills the
/// process. TLS writes go out as vectored writes (writev), which cannot ask the kernel not to
/// raise it (MSG_NOSIGNAL), and a library must not change the process's signal handling; so the
/// threads that write block it instead, and the write fails with EPIPE.
fn block_sigpipe() {
    let set = sigpipe_set();
    // SAFETY: a valid set; the old mask is not asked for.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Runs `f` with SIGPIPE blocked on the calling thread (see [`block_sigpipe`]), then consumes a
/// SIGPIPE raised for it meanwhile and restores the caller's mask. A thread that blocks SIGPIPE
/// already is left alone.
fn without_sigpipe<T>(f: impl FnOnce() -> T) -> T {
    let set = sigpipe_set();
    // SAFETY: valid sets; `old` is written by pthread_sigmask before it is read.
    let old = unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        old
    };
    // SAFETY: `old` is an initialised set.
    if unsafe { libc::sigismember(&old, libc::SIGPIPE) } == 1 {
        return f();
    }
    /// Restores the mask however `f` ends.
    struct Restore(libc::sigset_t, libc::sigset_t);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: valid sets; a zero timeout makes sigtimedwait return at once.
            unsafe {
                let mut pending: libc::sigset_t = std::mem::zeroed();
                libc::sigpending(&mut pending);
                if libc::sigismember(&pending, libc::SIGPIPE) == 1 {
                    let now = libc::timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    };
                    libc::sigtimedwait(&self.1, std::ptr::null_mut(), &now);
                }
                libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut());
            }
        }
    }
    let _restore = Restore(old, set);
    f()
}

/// Spawns `work` on the runtime (VC_RESULT_CLOSED after the shutdown; work still running at the
/// shutdown is dropped).
pub(crate) fn spawn<F>(work: F) -> Result<tokio::task::JoinHandle<F::Output>, vc_result>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let _counted = InFlight::enter()?;
    Ok(handle()?.spawn(work))
}

/// Starts the event thread `name` running `body`. The shutdown waits for event threads to end
/// (their [`block_on`] returns VC_RESULT_CLOSED, so their loop ends).
pub(crate) fn event_thread(
    name: &str,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    LIBRARY.event_threads.fetch_add(1, Ordering::SeqCst);
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            /// Counts the thread out however `body` ends.
            struct Running;
            impl Drop for Running {
                fn drop(&mut self) {
                    LIBRARY.event_threads.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let _running = Running;
            block_sigpipe();
            EVENT_THREAD.with(|e| e.set(true));
            body();
        })
        .inspect_err(|_| {
            LIBRARY.event_threads.fetch_sub(1, Ordering::SeqCst);
        })
}

/// Whether vc_library_shutdown() ran.
pub(crate) fn is_shut_down() -> bool {
    LIBRARY.shut_down.load(Ordering::SeqCst)
}

/// VC_RESULT_CLOSED when the library was shut down (for calls that would not otherwise wait).
pub(crate) fn check_running() -> Result<(), vc_result> {
    if is_shut_down() {
        Err(shut_down())
    } else {
        Ok(())
    }
}

/// Waits (up to `until`) for `count` to fall to `target` or below.
fn wait_for(count: &AtomicUsize, target: usize, until: Instant) {
    while count.load(Ordering::SeqCst) > target && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Shuts the library down for the rest of the process: every vc_* call waiting on the network
/// returns VC_RESULT_CLOSED at once, every connection still open is cut (no goodbye is said),
/// every client's and conference's event thread ends (its listener's `destroy` has run when this
/// returns — except on the thread of a callback that called this: there it runs when the
/// callback returns), and the library's own threads stop (waiting up to 5 s for them).
///
/// After it, every function that needs the network or the library's threads returns
/// VC_RESULT_CLOSED (vc_last_error_code() `closed`) instead of crashing: connecting, enrolling,
/// renewing, and every client, conference and media function that asks the server or the peer,
/// sends or receives (also with a zero timeout). What only reads what a handle already holds keeps
/// answering from it (vc_client_is_registered, ids, rosters, policies, statistics — a media
/// session's path is then VC_MEDIA_PATH_CLOSED only once it was closed —, vc_media_close,
/// vc_client_set_access_list), and so do the SFrame functions, vc_identity_load, vc_identity_id,
/// vc_identity_get_info, the option defaults and the error functions. Handles must still be freed
/// with their vc_*_free function (which then says no goodbye); the descriptors of the stopped
/// runtime are released when the last handle that used the network is freed. The library cannot
/// be started again in this process. Calling this again returns VC_RESULT_OK and does nothing.
///
/// Call it when the application is done with the library (typically at exit, after freeing its
/// handles): memory checkers then see no thread of the library still running. Refused
/// (VC_RESULT_INVALID_ARGUMENT) from inside an asynchronous runtime.
#[no_mangle]
pub extern "C" fn vc_library_shutdown() -> vc_result {
    boundary(|| {
        done((|| {
            if Handle::try_current().is_ok() {
                return Err(fail(
                    vc_result::VC_RESULT_INVALID_ARGUMENT,
                    "vc_library_shutdown was called from inside an asynchronous runtime",
                ));
            }
            let runtime = {
                let mut runtime = LIBRARY
                    .runtime
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if LIBRARY.shut_down.swap(true, Ordering::SeqCst) {
                    return Ok(());
                }
                runtime.take()
            };
            LIBRARY.stop.send_replace(true);
            let until = Instant::now() + SHUTDOWN_WAIT;
            wait_for(&LIBRARY.in_flight, 0, until);
            let this_one = usize::from(EVENT_THREAD.with(Cell::get));
            wait_for(&LIBRARY.event_threads, this_one, until);
            *LIBRARY
                .handle
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
            if let Some(runtime) = runtime {
                runtime.shutdown_timeout(SHUTDOWN_WAIT);
            }
            Ok(())
        })())
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    const CHILD: &str = "VCSDK_SIGPIPE_CHILD";
    const NAME: &str = "runtime::tests::a_sigpipe_raised_in_a_call_does_not_kill_the_process";

    /// In a child process with SIGPIPE's default action (as in a C program): raises SIGPIPE for
    /// the thread, inside `without_sigpipe` ("guarded") or not ("bare"), then exits 0 if the
    /// caller's mask was restored.
    fn child(mode: &str) -> ! {
        // SAFETY: plain libc calls on this thread and process.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            let raise = || {
                libc::pthread_kill(libc::pthread_self(), libc::SIGPIPE);
            };
            if mode == "guarded" {
                super::without_sigpipe(raise);
            } else {
                raise();
            }
            let mut now: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut now);
            let code = if libc::sigismember(&now, libc::SIGPIPE) == 1 {
                3
            } else {
                0
            };
            libc::_exit(code)
        }
    }

    #[test]
    fn a_sigpipe_raised_in_a_call_does_not_kill_the_process() {
        if let Ok(mode) = std::env::var(CHILD) {
            child(&mode);
        }
        let run = |mode: &str| {
            Command::new(std::env::current_exe().expect("the test binary"))
                .args(["--exact", NAME, "--test-threads=1"])
                .env(CHILD, mode)
                .output()
                .expect("run the child")
                .status
        };
        let guarded = run("guarded");
        assert!(guarded.success(), "guarded: {guarded:?}");
        // The same signal without the guard kills the process: the test can fail.
        let bare = run("bare");
        assert_eq!(bare.signal(), Some(libc::SIGPIPE), "bare: {bare:?}");
    }
}
