//! The reference model of flush(8): the Postfix 3.7 fast flush server's
//! rules as a pure, deterministic state machine, with no I/O and no clock
//! of its own.
//!
//! A [`Model`] holds a spool (logfiles and queue files) and the server's
//! configuration. [`Model::connect`] is one client connection: the bytes
//! the client sent in, and out come the bytes the server wrote, the
//! triggers it sent the queue manager, whether it died, and a [`Note`] for
//! every rule that decided. [`client::Client`] states the other side: what
//! the client library refuses without asking, and how `ETRN` and
//! `postqueue` report a status.
//!
//! The modules follow Postfix's source, one concern each:
//!
//! - [`wire`]: the attribute lists and trigger strings on the socket;
//! - [`names`]: queue IDs, host names, the ASCII form and logfile names;
//! - [`domain_list`]: `fast_flush_domains` and its tables;
//! - [`spool`]: the files and where `mail_queue_path` puts them;
//! - [`service`]: the requests themselves;
//! - [`profile`]: where the `strict` profile departs from Postfix;
//! - [`faults`]: what a request may leave behind when a file operation
//!   fails or the process crashes.
//!
//! The model is written apart from flushbed's implementation and never
//! reads it: a lockstep of the two shows something only because a mistake
//! in one cannot hide in the other.

use std::collections::BTreeMap;

use flushbed_vocab::{
    Exchange, FlushConfig, LogfileState, Profile, QueueFileState, QueueName, SpoolState, Time,
};

pub mod client;
pub mod domain_list;
pub mod faults;
pub mod names;
pub mod profile;
pub mod service;
pub mod spool;
pub mod wire;

use domain_list::{DomainList, ListError};
use service::{Connection, Times};
use spool::{Hashing, Logfile, QueueFile, Spool};

pub use spool::Changes;

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
    profile: Profile,
    times: Times,
    /// `fast_flush_domains` as the server read it at start-up, or why it
    /// could not start.
    domains: Result<DomainList, ListError>,
    spool: Spool,
}

impl Model {
    /// A model of a flush server that read this configuration, with an
    /// empty spool.
    pub fn new(config: &FlushConfig, tables: Tables, profile: Profile) -> Model {
        let domains = DomainList::parse(
            &config.fast_flush_domains,
            config.fast_flush_parent_style(),
            config.smtputf8_enable,
            &tables,
        );
        let times = Times {
            refresh: config.fast_flush_refresh_time,
            purge: config.fast_flush_purge_time,
        };
        let hashing = Hashing::new(&config.hash_queue_names, config.hash_queue_depth);
        Model {
            profile,
            times,
            domains,
            spool: Spool::new(hashing),
        }
    }

    /// The profile the model speaks in.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// One client connection: the client sends `input` in one write and
    /// then closes its side (so a cut-short list ends at the end of input,
    /// not at a read timeout), and the model answers as the server would.
    /// `now` is the request's start
    /// time. `flush_dir_order` lists the entries of `flush/` in the order
    /// the target's directory scan returns them (refresh and purge walk
    /// `flush/` in that order, and under the `postfix` profile a one-letter
    /// logfile ends the walk where it stands).
    pub fn connect(&mut self, input: &[u8], now: Time, flush_dir_order: &[String]) -> Step {
        let domains = match &self.domains {
            Ok(domains) => domains,
            Err(why) => {
                // The list is read before the server accepts a connection.
                let text = format!("{why}: the server exits at start-up, before any reply");
                return Step {
                    exchange: Exchange {
                        output: Vec::new(),
                        triggers: Vec::new(),
                        died: true,
                    },
                    notes: vec![Note {
                        rule: "configuration",
                        text,
                    }],
                };
            }
        };
        Connection::new(&mut self.spool, domains, self.times, self.profile, now)
            .serve(input, flush_dir_order)
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
        let file = QueueFile {
            queue,
            mode,
            atime,
            mtime,
        };
        self.spool.queue_files.insert(queue_id.to_string(), file);
    }

    /// Removes a queue file from every queue.
    pub fn remove_queue_file(&mut self, queue_id: &str) {
        self.spool.queue_files.remove(queue_id);
    }

    /// Writes a logfile's bytes as they are, creating or replacing it.
    pub fn write_logfile(
        &mut self,
        name: &str,
        content: &[u8],
        mode: u32,
        atime: Time,
        mtime: Time,
    ) {
        let log = Logfile {
            content: content.to_vec(),
            mode,
            atime,
            mtime,
        };
        self.spool.logfiles.insert(name.to_string(), log);
    }

    /// Removes a logfile.
    pub fn remove_logfile(&mut self, name: &str) {
        self.spool.logfiles.remove(name);
    }

    /// Everything observable, in the form the observer reads a real spool.
    pub fn observe(&self) -> SpoolState {
        self.spool.observe()
    }

    /// The logfiles and queue files that requests and the environment
    /// changed since the last call (or since the model was made or
    /// copied): what a lockstep must look at again after a step.
    pub fn take_changes(&mut self) -> Changes {
        self.spool.take_changes()
    }

    /// One logfile, as [`Model::observe`] renders it.
    pub fn observe_logfile(&self, name: &str) -> Option<LogfileState> {
        self.spool.observe_logfile(name)
    }

    /// One queue file, as [`Model::observe`] renders it: its path relative
    /// to `queue_directory`, and its state.
    pub fn observe_queue_file(&self, queue_id: &str) -> Option<(String, QueueFileState)> {
        self.spool.observe_queue_file(queue_id)
    }
}

#[cfg(test)]
mod tests;
