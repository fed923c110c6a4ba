//! flushbed's flush(8): the real, file-backed implementation.
//!
//! (API contract; filled in module by module.)

pub mod clock;
pub mod conn;
pub mod service;
pub mod trigger;

pub use clock::{Clock, ManualClock, SystemClock};
pub use conn::{Connection, MemoryConnection};
pub use service::{ConnectionEnd, FlushService, ServiceError};
pub use trigger::{RecordingSink, TriggerSink};
