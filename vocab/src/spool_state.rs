//! What can be seen of a spool from the outside: every logfile in `flush/`
//! with its bytes, mode and times, and every queue file under the queue
//! directories with its path, mode and times.
//!
//! The model renders its state in this form; the simulator's observer reads
//! a real queue directory into it (without disturbing any atime). Paths are
//! relative to `queue_directory`, so that where a file *is* (its queue, its
//! hash subdirectory) is compared, not only that it exists.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Time;

/// A queue directory that holds queue files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueName {
    Maildrop,
    Incoming,
    Active,
    Deferred,
    Hold,
    Corrupt,
}

impl QueueName {
    /// Every queue that can hold a queue file, in Postfix's order.
    pub const ALL: [QueueName; 6] = [
        QueueName::Maildrop,
        QueueName::Incoming,
        QueueName::Active,
        QueueName::Deferred,
        QueueName::Hold,
        QueueName::Corrupt,
    ];

    /// The directory name under `queue_directory`.
    pub fn dir(self) -> &'static str {
        match self {
            QueueName::Maildrop => "maildrop",
            QueueName::Incoming => "incoming",
            QueueName::Active => "active",
            QueueName::Deferred => "deferred",
            QueueName::Hold => "hold",
            QueueName::Corrupt => "corrupt",
        }
    }

    pub fn from_dir(dir: &str) -> Option<QueueName> {
        QueueName::ALL.into_iter().find(|q| q.dir() == dir)
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir())
    }
}

/// One logfile in `flush/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogfileState {
    /// The file's bytes, exactly.
    pub content: Vec<u8>,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Last read time.
    pub atime: Time,
    /// Last modified time.
    pub mtime: Time,
}

/// One queue file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueFileState {
    /// Permission bits (`st_mode & 0o7777`): owner rwx means "ready", group
    /// read means "unthrottle when read".
    pub mode: u32,
    pub atime: Time,
    pub mtime: Time,
}

/// Everything observable in a spool.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SpoolState {
    /// Regular files directly in `flush/`, by file name.
    pub logfiles: BTreeMap<String, LogfileState>,
    /// Regular files below the queue directories, by path relative to
    /// `queue_directory` (`deferred/A/A2AD898C68C`).
    pub queue_files: BTreeMap<String, QueueFileState>,
}

impl SpoolState {
    /// The queue a queue file with this ID is in, and its path, if it is
    /// anywhere.
    pub fn find_queue_file(&self, queue_id: &str) -> Option<(QueueName, &str, &QueueFileState)> {
        self.queue_files.iter().find_map(|(path, state)| {
            let (queue, rest) = path.split_once('/')?;
            let name = rest.rsplit('/').next()?;
            (name == queue_id).then(|| Some((QueueName::from_dir(queue)?, path.as_str(), state)))?
        })
    }
}
