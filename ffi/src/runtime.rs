//! The library's own tokio runtime: started on first use, shared by every client and media
//! session, never exposed. C calls block on it from the caller's thread.

use std::future::Future;
use std::sync::OnceLock;

use crate::result::{fail, vc_result};

/// Worker threads of the runtime.
const WORKERS: usize = 2;

fn runtime() -> Result<&'static tokio::runtime::Runtime, vc_result> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(WORKERS)
                .thread_name("vcsdk-worker")
                .enable_all()
                .build()
                .map_err(|e| format!("starting the runtime: {e}"))
        })
        .as_ref()
        .map_err(|e| fail(vc_result::VC_RESULT_STORE, e.clone()))
}

/// Runs `work` to completion on the runtime, blocking the calling thread. Refused (not a panic)
/// when called from one of the runtime's own threads.
pub(crate) fn block_on<F: Future>(work: F) -> Result<F::Output, vc_result> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(fail(
            vc_result::VC_RESULT_INVALID_ARGUMENT,
            "a blocking vc_* function was called from inside an asynchronous runtime",
        ));
    }
    Ok(runtime()?.block_on(work))
}

/// Spawns `work` on the runtime.
pub(crate) fn spawn<F>(work: F) -> Result<tokio::task::JoinHandle<F::Output>, vc_result>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Ok(runtime()?.spawn(work))
}
