//! The vocabulary of flushbed: the few types that the reference model, the
//! file-backed implementation and the simulator all speak.
//!
//! This crate holds words, not rules. Everything that decides what flush(8)
//! does (queue ID syntax, the site to logfile name mapping, domain-list
//! matching, the time rules, how a status is written on the wire) is written
//! separately in `flushbed-model` and in `flushbed-impl`, so that a mistake on
//! one side cannot hide in the other. What lives here is what both sides are
//! *given* (the `main.cf` parameters, the clock's reading, the profile) and
//! what both sides are *observed by* (the [`SpoolState`] and the
//! [`Exchange`] of one request).

pub mod config;
pub mod exchange;
pub mod spool_state;
pub mod wire;

pub use config::{ConfigError, FlushConfig, MainCf};
pub use exchange::{Exchange, Profile, Status, Trigger};
pub use spool_state::{LogfileState, QueueFileState, QueueName, SpoolState};

/// A point in time: whole seconds since the Unix epoch. flush(8) compares
/// file times with the request's start time in whole seconds, so nothing
/// finer is ever needed.
pub type Time = i64;
