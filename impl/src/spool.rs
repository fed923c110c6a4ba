//! The layout of `queue_directory` as flush(8) sees it: `flush/` for the
//! logfiles, `deferred/` and `incoming/` for the queue files it moves, and
//! the other queues beside them; which queues are hashed into one-letter
//! subdirectories (`hash_queue_names`, `hash_queue_depth`), and how a queue
//! ID or a logfile name picks its hash directory.
//!
//! A short queue ID (`A2AD898C68C`) hashes on its first characters; a name
//! shorter than the depth is padded with `_`. A long queue ID (Postfix's
//! newer format: seconds, four characters of microseconds, `z`, inode
//! number) hashes on its microseconds written as five upper-case hex
//! digits, so that both formats spread the same way. The test for "long"
//! is Postfix's own: the last `z` in the name is at position 10 or later,
//! which a logfile name can also meet when `flush` itself is hashed.
//!
//! Missing hash directories are made as Postfix makes them: mode 0700,
//! every missing level below the queue directory.

use std::io;
use std::path::{Path, PathBuf};

use flushbed_vocab::FlushConfig;

use crate::fs::{is_not_found, FileSystem};

/// The queue of fast flush logfiles.
pub const FLUSH: &str = "flush";
/// The queue of mail waiting for a retry.
pub const DEFERRED: &str = "deferred";
/// The queue the queue manager scans on trigger `I`.
pub const INCOMING: &str = "incoming";

/// The directories a spool has, with Postfix's modes (`postfix-files`).
pub const QUEUE_DIRECTORIES: [(&str, u32); 9] = [
    ("active", 0o700),
    ("corrupt", 0o700),
    ("deferred", 0o700),
    ("flush", 0o700),
    ("hold", 0o700),
    ("incoming", 0o700),
    ("maildrop", 0o730),
    ("private", 0o700),
    ("public", 0o710),
];

/// The mode of a hash directory made on demand.
pub const HASH_DIRECTORY_MODE: u32 = 0o700;

/// The alphabet of long queue IDs: digits and letters without vowels.
const SAFE_ALPHABET: &[u8] = b"0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz";
/// The width of the microseconds field of a long queue ID.
const LONG_USEC_WIDTH: usize = 4;
/// Seconds (at least six characters) and microseconds come before the `z`.
const LONG_TIME_WIDTH: usize = 6 + LONG_USEC_WIDTH;
/// The separator between time and inode number in a long queue ID.
const LONG_SEPARATOR: u8 = b'z';

/// One spool's layout.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
    /// `hash_queue_names`, lower-cased: Postfix compares them without case.
    hashed: Vec<String>,
    depth: usize,
}

impl Spool {
    pub fn new(config: &FlushConfig) -> Spool {
        Spool {
            root: PathBuf::from(&config.queue_directory),
            hashed: config
                .hash_queue_names
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .collect(),
            depth: config.hash_queue_depth.max(1) as usize,
        }
    }

    /// `queue_directory`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The top directory of a queue.
    pub fn queue_dir(&self, queue: &str) -> PathBuf {
        self.root.join(queue)
    }

    /// Whether a queue is hashed.
    pub fn is_hashed(&self, queue: &str) -> bool {
        self.hashed
            .iter()
            .any(|name| name.eq_ignore_ascii_case(queue))
    }

    /// The directory that holds `name` in `queue`, hash levels included.
    pub fn dir(&self, queue: &str, name: &str) -> PathBuf {
        let mut dir = self.queue_dir(queue);
        if self.is_hashed(queue) {
            for level in hash_levels(name, self.depth) {
                dir.push(level.to_string());
            }
        }
        dir
    }

    /// The path of `name` (a queue ID or a logfile name) in `queue`.
    pub fn path(&self, queue: &str, name: &str) -> PathBuf {
        self.dir(queue, name).join(name)
    }

    /// The path of `name` hashed on its last characters instead of its
    /// first: a wrong layout, for proving the checkers see it.
    #[cfg(feature = "planted-bugs")]
    pub fn misdirected_path(&self, queue: &str, name: &str) -> PathBuf {
        let mut dir = self.queue_dir(queue);
        if self.is_hashed(queue) {
            let reversed: String = name.chars().rev().collect();
            for level in hash_levels(&reversed, self.depth) {
                dir.push(level.to_string());
            }
        }
        dir.join(name)
    }

    /// Makes the directories missing between `queue_directory` and `dir`
    /// (which must be below it), each with mode 0700, as Postfix's
    /// `make_dirs` does; a path component that exists and is not a
    /// directory is an error.
    pub fn make_dirs<F: FileSystem + ?Sized>(&self, fs: &F, dir: &Path) -> io::Result<()> {
        let relative = dir.strip_prefix(&self.root).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "directory outside the queue directory",
            )
        })?;
        let mut path = self.root.clone();
        for component in relative.components() {
            path.push(component);
            match fs.stat(&path) {
                Ok(meta) if meta.is_dir() => continue,
                Ok(_) => {
                    return Err(io::Error::from_raw_os_error(
                        rustix::io::Errno::NOTDIR.raw_os_error(),
                    ))
                }
                Err(e) if !is_not_found(&e) => return Err(e),
                Err(_) => {}
            }

            // Someone else may make it between the stat and the mkdir.
            if let Err(e) = fs.mkdir(&path, HASH_DIRECTORY_MODE) {
                match fs.stat(&path) {
                    Ok(meta) if meta.is_dir() => {}
                    _ => return Err(e),
                }
            }
        }
        Ok(())
    }
}

/// The one-character directory names that hash `name` at `depth` levels.
pub fn hash_levels(name: &str, depth: usize) -> Vec<char> {
    let key = hash_key(name);
    let mut chars = key.chars();
    (0..depth).map(|_| chars.next().unwrap_or('_')).collect()
}

/// What a name hashes on: itself, or for a long queue ID its
/// microseconds as five hex digits.
fn hash_key(name: &str) -> String {
    let bytes = name.as_bytes();
    match bytes.iter().rposition(|&b| b == LONG_SEPARATOR) {
        Some(at) if at >= LONG_TIME_WIDTH => {
            let usec = decode_safe(&bytes[at - LONG_USEC_WIDTH..at]).unwrap_or(0);
            format!("{usec:05X}")
        }
        _ => name.to_string(),
    }
}

/// Decodes base-52 digits of the long queue ID alphabet; `None` when a
/// character is not in it or the value overflows.
fn decode_safe(digits: &[u8]) -> Option<u64> {
    let base = SAFE_ALPHABET.len() as u64;
    digits.iter().try_fold(0u64, |sum, &digit| {
        let value = SAFE_ALPHABET.iter().position(|&c| c == digit)? as u64;
        sum.checked_mul(base)?.checked_add(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::RealFs;
    use flushbed_vocab::{config::Environment, MainCf};

    fn spool(root: &Path, main_cf: &str) -> Spool {
        let text = format!("queue_directory = {}\n{main_cf}", root.display());
        let main = MainCf::parse(&text, "main.cf").unwrap();
        Spool::new(&FlushConfig::from_main_cf(&main, &Environment::default()).unwrap())
    }

    #[test]
    fn deferred_is_hashed_one_level_by_default_and_flush_is_flat() {
        let s = spool(Path::new("/q"), "");
        assert_eq!(
            s.path(DEFERRED, "A2AD898C68C"),
            Path::new("/q/deferred/A/A2AD898C68C")
        );
        assert_eq!(
            s.path(INCOMING, "A2AD898C68C"),
            Path::new("/q/incoming/A2AD898C68C")
        );
        assert_eq!(
            s.path(FLUSH, "example_com"),
            Path::new("/q/flush/example_com")
        );
    }

    #[test]
    fn hash_queue_names_are_compared_without_case() {
        let s = spool(
            Path::new("/q"),
            "hash_queue_names = Deferred, FLUSH\nhash_queue_depth = 2\n",
        );
        assert_eq!(
            s.path(FLUSH, "example_com"),
            Path::new("/q/flush/e/x/example_com")
        );
        assert_eq!(s.path(DEFERRED, "A"), Path::new("/q/deferred/A/_/A"));
    }

    #[test]
    fn long_queue_ids_hash_on_their_microseconds_in_hex() {
        // "4Yb9" is 4*52^3 + 29*52^2 + 31*52 + 9 = 642469 = 0x9CDA5 microseconds.
        let usec = 4 * 52u64.pow(3) + 29 * 52u64.pow(2) + 31 * 52 + 9;
        assert_eq!(usec, 0x9CDA5);
        let id = "4XjQ1q4Yb9zbGqCm";
        let hex = format!("{usec:05X}");
        assert_eq!(hash_levels(id, 2), hex.chars().take(2).collect::<Vec<_>>());
        let s = spool(Path::new("/q"), "");
        assert_eq!(
            s.dir(DEFERRED, id),
            Path::new("/q/deferred").join(&hex[..1])
        );
    }

    #[test]
    fn a_z_before_position_ten_is_a_short_queue_id() {
        assert_eq!(hash_levels("Az0000000", 1), vec!['A']);
        assert_eq!(hash_levels("xyzzy_example_com", 1), vec!['x']);
    }

    #[test]
    fn an_undecodable_long_id_hashes_as_microseconds_zero() {
        // Vowels are not in the alphabet.
        assert_eq!(hash_levels("123456AEIOzB", 1), vec!['0']);
    }

    #[test]
    fn make_dirs_makes_every_missing_level_with_mode_0700() {
        let dir = tempfile::tempdir().unwrap();
        let s = spool(dir.path(), "hash_queue_depth = 2\n");
        let target = s.dir(DEFERRED, "AB1");
        s.make_dirs(&RealFs, &target).unwrap();
        for level in [
            dir.path().join("deferred"),
            dir.path().join("deferred/A"),
            target.clone(),
        ] {
            let meta = RealFs.stat(&level).unwrap();
            assert!(meta.is_dir());
            assert_eq!(meta.permissions() & 0o700, 0o700);
        }
        assert_eq!(RealFs.stat(&target).unwrap().permissions(), 0o700);
    }

    #[test]
    fn make_dirs_refuses_a_file_in_the_way() {
        let dir = tempfile::tempdir().unwrap();
        let s = spool(dir.path(), "");
        std::fs::write(dir.path().join("deferred"), b"").unwrap();
        assert!(s.make_dirs(&RealFs, &s.dir(DEFERRED, "AB1")).is_err());
    }
}
