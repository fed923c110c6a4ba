//! The flush service: one connection, one request.
//!
//! (API contract; filled in.)

use std::path::PathBuf;
use std::sync::Arc;

use flushbed_vocab::{FlushConfig, Profile, QueueName, Time};
use thiserror::Error;

use crate::{Clock, Connection, TriggerSink};

/// A failure to start the service.
#[derive(Debug, Error)]
pub enum ServiceError {
    #[error("{0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// How a connection ended.
#[derive(Debug)]
pub enum ConnectionEnd {
    /// The request was handled (replied to, or closed without a reply where
    /// the protocol says so).
    Done,
    /// A fatal error: under the `postfix` profile the server process dies
    /// here; the caller must treat the service as restarted.
    Fatal(String),
}

/// A flush server over one spool.
pub struct FlushService {
    _private: (),
}

impl FlushService {
    /// A service over `config.queue_directory`, reading `/file` patterns
    /// and tables from the real file system.
    pub fn new(
        config: &FlushConfig,
        profile: Profile,
        clock: Arc<dyn Clock>,
        triggers: Arc<dyn TriggerSink>,
    ) -> Result<FlushService, ServiceError> {
        let _ = (config, profile, clock, triggers);
        todo!()
    }

    /// Serves one connection: announce, read one request, act, reply.
    pub fn serve_connection(&self, conn: &mut dyn Connection) -> ConnectionEnd {
        let _ = conn;
        todo!()
    }

    /// Puts a queue file into a queue of this spool with the given mode and
    /// times, as a queue manager would leave it (for the simulator and for
    /// tests; not part of the flush protocol).
    pub fn plant_queue_file(
        &self,
        queue_id: &str,
        queue: QueueName,
        mode: u32,
        atime: Time,
        mtime: Time,
    ) -> std::io::Result<()> {
        let _ = (queue_id, queue, mode, atime, mtime);
        todo!()
    }

    /// Removes a queue file from every queue of this spool.
    pub fn remove_queue_file(&self, queue_id: &str) -> std::io::Result<()> {
        let _ = queue_id;
        todo!()
    }

    /// Writes a logfile's bytes as they are (a damaged file, for example).
    pub fn write_logfile(
        &self,
        name: &str,
        content: &[u8],
        mode: u32,
        atime: Time,
        mtime: Time,
    ) -> std::io::Result<()> {
        let _ = (name, content, mode, atime, mtime);
        todo!()
    }

    /// Removes a logfile.
    pub fn remove_logfile(&self, name: &str) -> std::io::Result<()> {
        let _ = name;
        todo!()
    }
}
