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

use std::collections::BTreeMap;

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

/// The whole spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spool {
    pub hashing: Hashing,
    /// By logfile name.
    pub logfiles: BTreeMap<String, Logfile>,
    /// By queue ID: a queue ID is in at most one queue.
    pub queue_files: BTreeMap<String, QueueFile>,
}

impl Spool {
    pub fn new(hashing: Hashing) -> Spool {
        Spool {
            hashing,
            logfiles: BTreeMap::new(),
            queue_files: BTreeMap::new(),
        }
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
}
