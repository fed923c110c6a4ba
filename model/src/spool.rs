//! The spool as flush(8) sees it: logfiles in `flush/` (bytes, mode, atime,
//! mtime) and queue files in the queues (which queue, mode, atime, mtime),
//! with the paths `mail_queue_path` gives them.
//!
//! A queue named in `hash_queue_names` keeps its files `hash_queue_depth`
//! levels of one-character directories deep (`mail_queue_dir`). A short
//! queue ID hashes on its own first characters; a long queue ID (the
//! newer format, with a `z` between time and inode number) hashes on its
//! microseconds, re-encoded as five upper-case hex digits, as the short
//! form would have them. A name shorter than the depth pads with `_`.
//!
//! The spool remembers which logfiles and queue files a request (or the
//! environment) changed since it was last asked ([`Spool::take_changes`]),
//! so that a lockstep can compare only those after a step instead of the
//! whole spool.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

use flushbed_vocab::{LogfileState, QueueFileState, QueueName, SpoolState, Time};

/// The owner's read, write and execute bits: a queue file that has all
/// three is ready (`MAIL_QUEUE_STAT_READY`).
pub const MODE_READY: u32 = 0o700;

/// The group-read bit: "unthrottle when read" (`MAIL_QUEUE_STAT_UNTHROTTLE`).
pub const MODE_UNTHROTTLE: u32 = 0o040;

/// The mode a new logfile is created with.
pub const LOGFILE_MODE: u32 = 0o600;

/// Where `mail_queue_path` puts files: which queues are hashed, how deep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashing {
    queues: Vec<String>,
    depth: u32,
}

impl Hashing {
    pub fn new(hash_queue_names: &[String], hash_queue_depth: u32) -> Hashing {
        Hashing {
            queues: hash_queue_names.to_vec(),
            depth: hash_queue_depth.max(1),
        }
    }

    /// `mail_queue_path`: `queue/` plus, for a hashed queue, the hash
    /// directories, plus the name.
    pub fn path(&self, queue: &str, name: &str) -> String {
        let mut path = format!("{queue}/");
        if self.queues.iter().any(|q| q.eq_ignore_ascii_case(queue)) {
            path.push_str(&dir_forest(&hash_key(name), self.depth));
        }
        path.push_str(name);
        path
    }
}

/// The safe alphabet of long queue IDs (`safe_ultostr.c`).
const SAFE_CHARS: &[u8; 52] = b"0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz";

/// Long queue IDs: at least this many time characters before the `z`.
const LONG_TIME_PAD: usize = 10;

/// Long queue IDs: the microseconds are the last four time characters.
const LONG_USEC_PAD: usize = 4;

/// What a name hashes on: itself, or for a long queue ID its
/// microseconds in short-ID form.
fn hash_key(name: &str) -> String {
    let bytes = name.as_bytes();
    let Some(z) = bytes
        .iter()
        .rposition(|&b| b == b'z')
        .filter(|&z| z >= LONG_TIME_PAD)
    else {
        return name.to_string();
    };

    // An undecodable field counts as zero microseconds.
    let usec = bytes[z - LONG_USEC_PAD..z]
        .iter()
        .try_fold(0u64, |sum, &ch| {
            SAFE_CHARS
                .iter()
                .position(|&s| s == ch)
                .map(|digit| sum * 52 + digit as u64)
        });
    format!("{:05X}", usec.unwrap_or(0) as i32)
}

/// `dir_forest`: one directory per character, `_` past the end.
fn dir_forest(key: &str, depth: u32) -> String {
    let mut chars = key.chars();
    let mut out = String::new();
    for _ in 0..depth {
        out.push(chars.next().unwrap_or('_'));
        out.push('/');
    }
    out
}

/// One logfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logfile {
    pub content: Vec<u8>,
    pub mode: u32,
    pub atime: Time,
    pub mtime: Time,
}

/// One queue file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueFile {
    pub queue: QueueName,
    pub mode: u32,
    pub atime: Time,
    pub mtime: Time,
}

/// The files of one kind, by name, remembering which names were changed.
///
/// Reading goes through [`Deref`] to the map; every change goes through
/// [`Tracked::insert`], [`Tracked::remove`] or [`Tracked::get_mut`], and
/// each marks the name, whether or not the value really changes.
#[derive(Debug)]
pub struct Tracked<V> {
    files: BTreeMap<String, V>,
    changed: BTreeSet<String>,
    /// Every name counts as changed: a copy cannot tell what differs from
    /// the spool that was last asked.
    all: bool,
}

impl<V> Tracked<V> {
    fn new() -> Tracked<V> {
        Tracked {
            files: BTreeMap::new(),
            changed: BTreeSet::new(),
            all: false,
        }
    }

    fn mark(&mut self, name: &str) {
        if !self.all && !self.changed.contains(name) {
            self.changed.insert(name.to_string());
        }
    }

    /// Puts a file under a name, replacing what was there.
    pub fn insert(&mut self, name: String, value: V) -> Option<V> {
        self.mark(&name);
        self.files.insert(name, value)
    }

    /// Takes a file away.
    pub fn remove(&mut self, name: &str) -> Option<V> {
        if self.files.contains_key(name) {
            self.mark(name);
        }
        self.files.remove(name)
    }

    /// A file to change in place.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut V> {
        if self.files.contains_key(name) {
            self.mark(name);
        }
        self.files.get_mut(name)
    }

    /// The names changed since the last call, or `None` when every name
    /// may have changed.
    fn take_changed(&mut self) -> Option<BTreeSet<String>> {
        let changed = std::mem::take(&mut self.changed);
        (!std::mem::take(&mut self.all)).then_some(changed)
    }
}

impl<V> Deref for Tracked<V> {
    type Target = BTreeMap<String, V>;
    fn deref(&self) -> &BTreeMap<String, V> {
        &self.files
    }
}

impl<V: Clone> Clone for Tracked<V> {
    /// A copy stands for a spool put in place wholesale (a snapshot
    /// restored, a model forked): all of it counts as changed.
    fn clone(&self) -> Tracked<V> {
        Tracked {
            files: self.files.clone(),
            changed: BTreeSet::new(),
            all: true,
        }
    }
}

impl<V: PartialEq> PartialEq for Tracked<V> {
    fn eq(&self, other: &Tracked<V>) -> bool {
        self.files == other.files
    }
}

impl<V: Eq> Eq for Tracked<V> {}

/// What changed in a spool since it was last asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Anything may have changed: the spool must be looked at whole.
    pub all: bool,
    /// Logfiles written, created, truncated, timed or removed, by name.
    pub logfiles: BTreeSet<String>,
    /// Queue files planted, moved, timed or removed, by queue ID.
    pub queue_files: BTreeSet<String>,
}

/// The whole spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spool {
    pub hashing: Hashing,
    /// By logfile name.
    pub logfiles: Tracked<Logfile>,
    /// By queue ID: a queue ID is in at most one queue.
    pub queue_files: Tracked<QueueFile>,
}

impl Spool {
    pub fn new(hashing: Hashing) -> Spool {
        Spool {
            hashing,
            logfiles: Tracked::new(),
            queue_files: Tracked::new(),
        }
    }

    /// What changed since the last call (or since the spool was made or
    /// copied); the next call starts afresh.
    pub fn take_changes(&mut self) -> Changes {
        let logfiles = self.logfiles.take_changed();
        let queue_files = self.queue_files.take_changed();
        match (logfiles, queue_files) {
            (Some(logfiles), Some(queue_files)) => Changes {
                all: false,
                logfiles,
                queue_files,
            },
            _ => Changes {
                all: true,
                ..Changes::default()
            },
        }
    }

    /// One logfile, as [`Spool::observe`] renders it.
    pub fn observe_logfile(&self, name: &str) -> Option<LogfileState> {
        self.logfiles.get(name).map(|log| LogfileState {
            content: log.content.clone(),
            mode: log.mode,
            atime: log.atime,
            mtime: log.mtime,
        })
    }

    /// One queue file, as [`Spool::observe`] renders it: its path relative
    /// to `queue_directory`, and its state.
    pub fn observe_queue_file(&self, queue_id: &str) -> Option<(String, QueueFileState)> {
        self.queue_files.get(queue_id).map(|file| {
            let state = QueueFileState {
                mode: file.mode,
                atime: file.atime,
                mtime: file.mtime,
            };
            (self.hashing.path(file.queue.dir(), queue_id), state)
        })
    }

    /// Everything observable, with paths relative to `queue_directory`.
    pub fn observe(&self) -> SpoolState {
        let logfiles = self
            .logfiles
            .iter()
            .map(|(name, log)| {
                let state = LogfileState {
                    content: log.content.clone(),
                    mode: log.mode,
                    atime: log.atime,
                    mtime: log.mtime,
                };
                (name.clone(), state)
            })
            .collect();
        let queue_files = self
            .queue_files
            .iter()
            .map(|(id, file)| {
                let state = QueueFileState {
                    mode: file.mode,
                    atime: file.atime,
                    mtime: file.mtime,
                };
                (self.hashing.path(file.queue.dir(), id), state)
            })
            .collect();
        SpoolState {
            logfiles,
            queue_files,
        }
    }
}

/// Whether the server, running as the file's owner (not root), may open a
/// file of this mode for reading and/or writing.
pub fn owner_may(mode: u32, read: bool, write: bool) -> bool {
    (!read || mode & 0o400 != 0) && (!write || mode & 0o200 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_hashing() -> Hashing {
        Hashing::new(&["deferred".to_string(), "defer".to_string()], 1)
    }

    #[test]
    fn deferred_is_hashed_one_level_and_incoming_is_flat() {
        let h = default_hashing();
        assert_eq!(h.path("deferred", "A2AD898C68C"), "deferred/A/A2AD898C68C");
        assert_eq!(h.path("incoming", "A2AD898C68C"), "incoming/A2AD898C68C");
        assert_eq!(h.path("flush", "example_com"), "flush/example_com");
    }

    #[test]
    fn short_names_pad_the_forest_with_underscores() {
        let h = Hashing::new(&["deferred".to_string()], 3);
        assert_eq!(h.path("deferred", "AB"), "deferred/A/B/_/AB");
    }

    #[test]
    fn long_queue_ids_hash_on_their_microseconds_in_hex() {
        let h = Hashing::new(&["deferred".to_string()], 2);
        // "0001" in base 52 is 1 microsecond: 00001.
        assert_eq!(
            h.path("deferred", "4Bc9SB0001zJ3Kk"),
            "deferred/0/0/4Bc9SB0001zJ3Kk"
        );
        // "3Lg2": 3, L is digit 18, g is digit 35, 2.
        let usec = 3 * 52 * 52 * 52 + 18 * 52 * 52 + 35 * 52 + 2;
        let expected = format!("{usec:05X}");
        let id = "4Bc9SB3Lg2zJ3Kk";
        assert_eq!(hash_key(id), expected);
        // A z too early is part of a short ID.
        assert_eq!(hash_key("ABCzDEF"), "ABCzDEF");
    }

    #[test]
    fn an_undecodable_microsecond_field_hashes_as_zero() {
        assert_eq!(hash_key("foo_example_biz"), "00000");
    }

    #[test]
    fn hash_queue_names_compare_without_case() {
        let h = Hashing::new(&["Deferred".to_string()], 1);
        assert_eq!(h.path("deferred", "ABC"), "deferred/A/ABC");
    }

    #[test]
    fn the_owner_needs_the_bits_for_the_access() {
        assert!(owner_may(0o600, true, true));
        assert!(!owner_may(0o400, true, true));
        assert!(owner_may(0o200, false, true));
        assert!(!owner_may(0o000, true, false));
    }

    fn spool_with_one_of_each() -> Spool {
        let mut spool = Spool::new(default_hashing());
        let log = Logfile {
            content: b"A1\n".to_vec(),
            mode: LOGFILE_MODE,
            atime: 1,
            mtime: 1,
        };
        spool.logfiles.insert("example_com".to_string(), log);
        let file = QueueFile {
            queue: QueueName::Deferred,
            mode: MODE_READY,
            atime: 1,
            mtime: 1,
        };
        spool.queue_files.insert("A1".to_string(), file);
        spool
    }

    #[test]
    fn every_change_marks_its_name_until_the_changes_are_taken() {
        let mut spool = spool_with_one_of_each();
        let first = spool.take_changes();
        assert!(!first.all);
        assert_eq!(first.logfiles, BTreeSet::from(["example_com".to_string()]));
        assert_eq!(first.queue_files, BTreeSet::from(["A1".to_string()]));
        assert_eq!(spool.take_changes(), Changes::default());

        if let Some(file) = spool.queue_files.get_mut("A1") {
            file.queue = QueueName::Incoming;
        }
        spool.logfiles.remove("example_com");
        let second = spool.take_changes();
        assert_eq!(second.logfiles, BTreeSet::from(["example_com".to_string()]));
        assert_eq!(second.queue_files, BTreeSet::from(["A1".to_string()]));
    }

    #[test]
    fn reading_and_touching_missing_files_mark_nothing() {
        let mut spool = spool_with_one_of_each();
        spool.take_changes();
        assert!(spool.logfiles.contains_key("example_com"));
        assert!(spool.queue_files.get_mut("B2").is_none());
        assert!(spool.logfiles.remove("other_com").is_none());
        assert_eq!(spool.take_changes(), Changes::default());
    }

    #[test]
    fn a_copied_spool_counts_as_changed_everywhere() {
        let mut spool = spool_with_one_of_each();
        spool.take_changes();
        let mut copy = spool.clone();
        assert_eq!(copy, spool);
        assert!(copy.take_changes().all);
        assert!(!copy.take_changes().all);
    }

    #[test]
    fn one_file_is_rendered_as_the_whole_spool_renders_it() {
        let spool = spool_with_one_of_each();
        let whole = spool.observe();
        let (path, state) = spool.observe_queue_file("A1").unwrap();
        assert_eq!(whole.queue_files[&path], state);
        assert_eq!(path, "deferred/A/A1");
        assert_eq!(
            spool.observe_logfile("example_com").as_ref(),
            whole.logfiles.get("example_com")
        );
        assert_eq!(spool.observe_logfile("other_com"), None);
    }
}
