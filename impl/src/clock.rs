//! Where the implementation's "now" comes from: the system clock in
//! production, a hand-set clock under the simulator.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use flushbed_vocab::Time;

/// A source of the current time in whole seconds.
pub trait Clock: Send + Sync {
    fn now(&self) -> Time;
}

/// The system's real-time clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Time {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as Time)
            .unwrap_or(0)
    }
}

/// A clock that says what it was last set to; clones share the reading.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(now: Time) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(now)))
    }

    pub fn set(&self, now: Time) {
        self.0.store(now, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Time {
        self.0.load(Ordering::SeqCst)
    }
}
