//! The virtual clock of one lockstep run: whole seconds, the only time
//! source of the model, the target, the queue manager and the master's
//! wakeups. It moves forward when the timeline says so, never back.

use flushbed_vocab::Time;

/// A clock that reads what the run last moved it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtualClock {
    now: Time,
}

impl VirtualClock {
    pub fn new(start: Time) -> VirtualClock {
        VirtualClock { now: start }
    }

    pub fn now(&self) -> Time {
        self.now
    }

    /// Moves the clock to `time`; a time in the past leaves it where it is,
    /// since a request can never start before the one before it.
    pub fn advance_to(&mut self, time: Time) {
        self.now = self.now.max(time);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_never_goes_back() {
        let mut clock = VirtualClock::new(100);
        clock.advance_to(150);
        clock.advance_to(120);
        assert_eq!(clock.now(), 150);
    }
}
