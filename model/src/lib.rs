//! The reference model of flush(8): the documented semantics as a pure,
//! deterministic state machine, with no I/O and no clock of its own.
//!
//! (API contract; the rules are filled in module by module.)

use std::collections::BTreeMap;

use flushbed_vocab::{Exchange, FlushConfig, Profile, QueueName, SpoolState, Time};

pub mod client;

/// Files that `fast_flush_domains` may read: `/path` patterns and
/// `texthash:/path` tables, by absolute path. A path that is absent cannot
/// be opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tables {
    pub files: BTreeMap<String, Vec<u8>>,
}

/// One fact the model used to decide, for a person reading a narration:
/// which rule fired and why ("logfile kept: empty, last modified 3d ago,
/// purge after 7d").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// A short, stable name of the rule (`purge-time`, `refresh-time`,
    /// `truncate-when-read`, `eligibility`, ...).
    pub rule: &'static str,
    pub text: String,
}

/// What one connection did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Step {
    pub exchange: Exchange,
    pub notes: Vec<Note>,
}

/// The model: the spool's state and the rules that change it.
#[derive(Debug, Clone)]
pub struct Model {
    _private: (),
}

impl Model {
    /// A model of a flush server that read this configuration, with an
    /// empty spool.
    pub fn new(config: &FlushConfig, tables: Tables, profile: Profile) -> Model {
        let _ = (config, tables, profile);
        todo!()
    }

    /// One client connection: the client sends `input` in one write, and
    /// the model answers as the server would. `now` is the request's start
    /// time. `flush_dir_order` lists the entries of `flush/` in the order
    /// the target's directory scan returns them (refresh and purge walk
    /// `flush/` in that order, and under the `postfix` profile a one-letter
    /// logfile ends the walk where it stands).
    pub fn connect(&mut self, input: &[u8], now: Time, flush_dir_order: &[String]) -> Step {
        let _ = (input, now, flush_dir_order);
        todo!()
    }

    /// Puts a queue file in a queue, with this mode and these times,
    /// removing it from wherever else it was.
    pub fn plant_queue_file(
        &mut self,
        queue_id: &str,
        queue: QueueName,
        mode: u32,
        atime: Time,
        mtime: Time,
    ) {
        let _ = (queue_id, queue, mode, atime, mtime);
        todo!()
    }

    /// Removes a queue file from every queue.
    pub fn remove_queue_file(&mut self, queue_id: &str) {
        let _ = queue_id;
        todo!()
    }

    /// Writes a logfile's bytes as they are, creating or replacing it.
    pub fn write_logfile(&mut self, name: &str, content: &[u8], mode: u32, atime: Time, mtime: Time) {
        let _ = (name, content, mode, atime, mtime);
        todo!()
    }

    /// Removes a logfile.
    pub fn remove_logfile(&mut self, name: &str) {
        let _ = name;
        todo!()
    }

    /// Everything observable, in the form the observer reads a real spool.
    pub fn observe(&self) -> SpoolState {
        todo!()
    }
}
