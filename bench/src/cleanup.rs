//! Stopping what a benchmark run started: every Postfix instance, every
//! `flushbed serve` and floor process is registered here with the action
//! that stops it. The action runs once, either when its guard is dropped
//! (the run ended, well or with an error) or when SIGINT, SIGTERM or SIGHUP
//! arrives, whichever comes first; after a signal the run exits.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

type Action = Box<dyn FnOnce() + Send>;

static ACTIONS: Mutex<BTreeMap<u64, Action>> = Mutex::new(BTreeMap::new());
static NEXT: AtomicU64 = AtomicU64::new(0);

fn actions() -> MutexGuard<'static, BTreeMap<u64, Action>> {
    // A panic while stopping something must not keep the rest running.
    ACTIONS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A registered stop action; dropping it runs the action.
#[derive(Debug)]
pub struct Registration(u64);

/// Registers the action that stops something just started.
pub fn register(action: impl FnOnce() + Send + 'static) -> Registration {
    let key = NEXT.fetch_add(1, Ordering::Relaxed);
    actions().insert(key, Box::new(action));
    Registration(key)
}

impl Registration {
    /// Forgets the action without running it: what it stops has been
    /// stopped another way.
    pub fn dismiss(self) {
        actions().remove(&self.0);
        std::mem::forget(self);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // The lock is held while the action runs, so that a signal arriving
        // now waits for it instead of exiting halfway through.
        let mut actions = actions();
        if let Some(action) = actions.remove(&self.0) {
            action();
        }
    }
}

/// Blocks the stop signals in this thread (and so in every thread it
/// starts afterwards) and starts the thread that waits for them. Call it
/// first thing in `main`. Child processes start with an empty signal mask
/// (the standard library resets it), so they still hear their signals.
pub fn install() -> anyhow::Result<()> {
    // SAFETY: sigset_t is plain data; the calls only fill and install it.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            anyhow::bail!("pthread_sigmask: {}", std::io::Error::from_raw_os_error(rc));
        }
        set
    };

    std::thread::Builder::new()
        .name("stop-signals".into())
        .spawn(move || {
            let mut signal: libc::c_int = 0;
            // SAFETY: `set` is a valid, filled signal set; `signal` is ours.
            let rc = unsafe { libc::sigwait(&set, &mut signal) };
            if rc != 0 {
                return;
            }
            eprintln!("flushbed-bench: signal {signal}, stopping what the run started");
            let mut actions = actions();
            while let Some((_, action)) = actions.pop_first() {
                action();
            }
            std::process::exit(128 + signal);
        })?;
    Ok(())
}
