//! flushbed's flush(8): the real, file-backed implementation of the
//! Postfix fast flush server, working on a Postfix-layout spool so that a
//! real Postfix could use it in place of its own.
//!
//! - [`service`]: the rules of add, send_site, send_file, refresh and
//!   purge, in the `postfix` or the `strict` profile.
//! - [`protocol`]: reading one request as the real server reads it, and
//!   writing the reply.
//! - [`domain_list`]: `fast_flush_domains`, which sites may have a logfile.
//! - [`names`]: queue IDs, host names, and the site to logfile name
//!   mapping.
//! - [`spool`]: the layout of `queue_directory` and its hash directories.
//! - [`fs`]: the one layer through which every file operation goes;
//!   [`memfs`] keeps a file system in memory (on loom's primitives for the
//!   loom models), and [`faultfs`] fails chosen calls.
//! - [`clock`], [`trigger`], [`conn`]: what the service is given: the time,
//!   the queue manager's trigger socket, the client connection.
//!
//! This crate shares no rule with the reference model: only the words of
//! `flushbed-vocab` and the ICU calls of `flushbed-icu`.

#[cfg(feature = "planted-bugs")]
pub mod bugs;
pub mod clock;
pub mod conn;
pub mod domain_list;
pub mod faultfs;
pub mod fs;
pub mod memfs;
pub mod names;
pub mod protocol;
pub mod server;
pub mod service;
pub mod spool;
pub mod trigger;

#[cfg(feature = "planted-bugs")]
pub use bugs::PlantedBug;
pub use clock::{Clock, ManualClock, SystemClock};
pub use conn::{Connection, MemoryConnection, UnixConnection};
pub use fs::{FileSystem, Metadata, RealFs};
pub use service::{ConnectionEnd, FlushService, ServiceError};
pub use trigger::{RecordingSink, TriggerSink};
