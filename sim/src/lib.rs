//! flushbed's simulator and lockstep runner.
//!
//! (API contract; filled in.)

pub mod target;
