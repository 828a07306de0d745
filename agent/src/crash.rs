//! Test-only crash injection (debug builds only). Two hooks, each counting over the process's
//! lifetime, each SIGKILLing the process itself: exactly what a `kill -9` at the worst moment
//! leaves behind.
//! - `BLOCKSTOR_AGENT_CRASH_AFTER_STEP=<n>`: right after the n-th journalled step ran, before
//!   the step is marked done.
//! - `BLOCKSTOR_AGENT_CRASH_DURING_STEP=<n>`: right after the runner spawned its n-th child,
//!   before waiting for it, so the child is killed mid-work (it dies with the agent: see
//!   `runner::die_with_parent`), e.g. a `luksFormat` that wrote its header but no keyslot.
//!
//! Release builds compile this to nothing, so the variables have no effect in production.

/// Called after a journalled step ran and before its "done" mark is written.
#[cfg(debug_assertions)]
pub fn after_step() {
    use std::sync::atomic::AtomicU64;
    static STEPS: AtomicU64 = AtomicU64::new(0);
    kill_self_at("BLOCKSTOR_AGENT_CRASH_AFTER_STEP", &STEPS);
}

/// Called by the runner after a child was spawned and before it is waited for.
#[cfg(debug_assertions)]
pub fn during_step() {
    use std::sync::atomic::AtomicU64;
    static SPAWNS: AtomicU64 = AtomicU64::new(0);
    kill_self_at("BLOCKSTOR_AGENT_CRASH_DURING_STEP", &SPAWNS);
}

/// Counts one event; SIGKILLs this process when the count reaches the limit in `var`.
#[cfg(debug_assertions)]
fn kill_self_at(var: &str, counter: &std::sync::atomic::AtomicU64) {
    let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    let limit = std::env::var(var).ok().and_then(|v| v.parse::<u64>().ok());
    if limit == Some(n) {
        tracing::warn!(count = n, "{var}: killing self with SIGKILL");
        // SAFETY: kill(2) on our own pid with a valid signal number has no memory effects.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// Release builds: no crash injection.
#[cfg(not(debug_assertions))]
pub fn after_step() {}

/// Release builds: no crash injection.
#[cfg(not(debug_assertions))]
pub fn during_step() {}
