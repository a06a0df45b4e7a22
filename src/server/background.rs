//! CPU-heavy work nobody is waiting on with a spinner in front of a poll
//! (decoding and re-encoding an upload) runs on a thread of its own at a
//! lower scheduling priority. On a machine with few cores a decode takes a
//! core for a second or more; at the same priority the polls and page
//! loads queued behind it wait for the scheduler's time slice, at a lower
//! one they go first and the decode takes what is left (make bench,
//! section 8: poll p99 while 50 photos decode).

use crate::error::{AppError, Result};

/// How much nicer than the server a background thread is: 10 gives it
/// about a tenth of a core's time against a busy thread of the server, and
/// all of it when nothing else wants the core.
const NICE: i32 = 10;
/// The nicest a thread can be.
const NICEST: i32 = 19;

/// Runs `work` on a new thread named `name` at a lower priority and waits
/// for its result. The thread ends with the work, and its priority with it
/// (an unprivileged thread could not raise it again, so a pooled thread
/// would keep it for whatever it ran next). The caller bounds how many run
/// at once.
pub async fn run<T: Send + 'static>(name: &str, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            lower_priority();
            let _ = done.send(work());
        })
        .map_err(AppError::internal)?;
    // An error here means the work panicked (its thread dropped the sender).
    result.await.map_err(|_| AppError::internal(format!("the {name} thread ended without a result")))
}

/// Lowers this thread's priority. On Linux the nice value belongs to the
/// thread (`who = 0` is the caller only); where it cannot be set the work
/// runs at the default priority.
fn lower_priority() {
    // Relative to the server's own: a server started nice (or as root at a
    // nice value above NICE) must not have its background raised.
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::getpriority_process(None)
        .and_then(|own| rustix::process::setpriority_process(None, (own + NICE).min(NICEST)))
    {
        tracing::debug!("cannot lower a background thread's priority: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_the_work_at_a_lower_priority_and_leaves_the_caller_alone() {
        let before = rustix::process::getpriority_process(None).expect("own priority");
        let (answer, nice) = run("test-background", || (6 * 7, rustix::process::getpriority_process(None)))
            .await
            .expect("the work's result");
        assert_eq!(answer, 42);
        assert_eq!(nice.expect("the thread's priority"), (before + NICE).min(NICEST));
        assert_eq!(rustix::process::getpriority_process(None).expect("own priority"), before);
    }

    #[tokio::test]
    async fn a_panic_is_an_error_not_a_hang() {
        let e = run("test-background", || -> u32 { panic!("boom") }).await.expect_err("the panic");
        assert_eq!(e.status(), 500, "{e}");
    }
}
