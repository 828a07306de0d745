//! Test-only crash injection (debug builds only): with `BLOCKSTOR_AGENT_CRASH_AFTER_STEP=<n>`
//! set, the process SIGKILLs itself right after the n-th journalled step of its lifetime ran,
//! before the step is marked done: exactly what a `kill -9` at the worst moment leaves behind.
//! Release builds compile this to nothing, so the variable has no effect in production.

/// Called after a journalled step ran and before its "done" mark is written.
#[cfg(debug_assertions)]
pub fn after_step() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STEPS: AtomicU64 = AtomicU64::new(0);
    let n = STEPS.fetch_add(1, Ordering::SeqCst) + 1;
    let limit = std::env::var("BLOCKSTOR_AGENT_CRASH_AFTER_STEP")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    if limit == Some(n) {
        tracing::warn!(
            step = n,
            "BLOCKSTOR_AGENT_CRASH_AFTER_STEP: killing self with SIGKILL"
        );
        // SAFETY: kill(2) on our own pid with a valid signal number has no memory effects.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// Release builds: no crash injection.
#[cfg(not(debug_assertions))]
pub fn after_step() {}
