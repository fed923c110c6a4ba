//! Where the flush server's triggers to the queue manager go.

use std::sync::{Arc, Mutex};

use flushbed_vocab::Trigger;

/// A destination for triggers. A trigger that cannot be delivered is the
/// sink's to log; it is never the request's failure.
pub trait TriggerSink: Send + Sync {
    fn send(&self, trigger: Trigger);
}

/// Keeps every trigger, for the simulator and for tests; clones share the
/// record.
#[derive(Debug, Clone, Default)]
pub struct RecordingSink(Arc<Mutex<Vec<Trigger>>>);

impl RecordingSink {
    /// The triggers sent since the last call, in the order sent.
    pub fn take(&self) -> Vec<Trigger> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl TriggerSink for RecordingSink {
    fn send(&self, trigger: Trigger) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(trigger);
    }
}
