//! The observer: reads a real `queue_directory` into a [`SpoolState`],
//! independently of the implementation's code, so that a mistake in how the
//! implementation lays out its spool cannot hide in how it is looked at.
//!
//! What is seen: every regular file in `flush/` (a logfile, keyed by its
//! path below `flush/`, should `flush/` ever be hashed) with its bytes, mode
//! and times; every regular file below `maildrop/`, `incoming/`, `active/`,
//! `deferred/`, `hold/` and `corrupt/` (a queue file, keyed by its path
//! relative to `queue_directory`) with its mode and times.
//!
//! Observing must not disturb what it observes: a logfile's atime is its
//! last *read* time, which refresh decides on. Logfiles are opened with
//! `O_NOATIME`, and should the times have moved anyway (a file system that
//! ignores the flag, or a file we do not own), they are put back.

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use flushbed_vocab::{LogfileState, QueueFileState, QueueName, SpoolState};
use rustix::fs::{Mode, OFlags, Timestamps};
use thiserror::Error;

/// A spool that could not be read.
#[derive(Debug, Error)]
#[error("observing {path}: {source}")]
pub struct ObserveError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> ObserveError + '_ {
    move |source| ObserveError {
        path: path.to_path_buf(),
        source,
    }
}

/// Everything observable in the spool at `queue_dir`.
pub fn observe(queue_dir: &Path) -> Result<SpoolState, ObserveError> {
    let mut state = SpoolState::default();

    let flush = queue_dir.join("flush");
    for (key, path) in regular_files(&flush)? {
        state.logfiles.insert(key, read_logfile(&path)?);
    }

    for queue in QueueName::ALL {
        let dir = queue_dir.join(queue.dir());
        for (key, path) in regular_files(&dir)? {
            let meta = fs::symlink_metadata(&path).map_err(at(&path))?;
            state.queue_files.insert(
                format!("{}/{key}", queue.dir()),
                QueueFileState {
                    mode: meta.mode() & 0o7777,
                    atime: meta.atime(),
                    mtime: meta.mtime(),
                },
            );
        }
    }
    Ok(state)
}

/// The names in `flush/`, in the order the directory returns them: the
/// order a refresh or purge walks them.
pub fn flush_dir_order(queue_dir: &Path) -> Result<Vec<String>, ObserveError> {
    let flush = queue_dir.join("flush");
    let mut names = Vec::new();
    for entry in fs::read_dir(&flush).map_err(at(&flush))? {
        let entry = entry.map_err(at(&flush))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

/// Every regular file below `dir`, keyed by its path relative to `dir`; a
/// directory that does not exist holds nothing.
fn regular_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, ObserveError> {
    let mut found = Vec::new();
    let mut pending = vec![(String::new(), dir.to_path_buf())];
    while let Some((prefix, path)) = pending.pop() {
        let entries = match fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && prefix.is_empty() => continue,
            Err(e) => return Err(ObserveError { path, source: e }),
        };
        for entry in entries {
            let entry = entry.map_err(at(&path))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let file_type = entry.file_type().map_err(at(&path))?;
            if file_type.is_dir() {
                pending.push((key, entry.path()));
            } else if file_type.is_file() {
                found.push((key, entry.path()));
            }
        }
    }
    Ok(found)
}

/// One logfile's bytes, mode and times, its atime left as it was.
fn read_logfile(path: &Path) -> Result<LogfileState, ObserveError> {
    let before = fs::symlink_metadata(path).map_err(at(path))?;

    // O_NOATIME is refused for a file we do not own; then the times are put
    // back by hand below.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd = match rustix::fs::open(path, flags | OFlags::NOATIME, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::PERM) => {
            rustix::fs::open(path, flags, Mode::empty()).map_err(|e| at(path)(e.into()))?
        }
        Err(e) => return Err(at(path)(e.into())),
    };
    let mut file = fs::File::from(fd);
    let mut content = Vec::with_capacity(before.len() as usize);
    file.read_to_end(&mut content).map_err(at(path))?;

    let after = file.metadata().map_err(at(path))?;
    let moved = (
        after.atime(),
        after.atime_nsec(),
        after.mtime(),
        after.mtime_nsec(),
    ) != (
        before.atime(),
        before.atime_nsec(),
        before.mtime(),
        before.mtime_nsec(),
    );
    if moved {
        let times = Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: before.atime(),
                tv_nsec: before.atime_nsec() as _,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: before.mtime(),
                tv_nsec: before.mtime_nsec() as _,
            },
        };
        rustix::fs::futimens(&file, &times).map_err(|e| at(path)(e.into()))?;
        tracing::debug!(logfile = %path.display(), "times restored after observing");
    }

    Ok(LogfileState {
        content,
        mode: before.mode() & 0o7777,
        atime: before.atime(),
        mtime: before.mtime(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn set_times(path: &Path, atime: i64, mtime: i64) {
        let times = Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: atime,
                tv_nsec: 0,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: mtime,
                tv_nsec: 0,
            },
        };
        rustix::fs::utimensat(rustix::fs::CWD, path, &times, rustix::fs::AtFlags::empty()).unwrap();
    }

    fn spool() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["flush", "incoming", "deferred/A", "active"] {
            fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        dir
    }

    #[test]
    fn observing_a_logfile_leaves_its_atime_alone() {
        let dir = spool();
        let logfile = dir.path().join("flush/example_com");
        fs::write(&logfile, b"A1B2C3\n").unwrap();
        set_times(&logfile, 1_000_000, 2_000_000);

        let first = observe(dir.path()).unwrap();
        let second = observe(dir.path()).unwrap();
        let seen = &first.logfiles["example_com"];
        assert_eq!(seen.content, b"A1B2C3\n");
        assert_eq!((seen.atime, seen.mtime), (1_000_000, 2_000_000));
        assert_eq!(first, second);
        assert_eq!(fs::metadata(&logfile).unwrap().atime(), 1_000_000);
    }

    #[test]
    fn queue_files_are_keyed_by_their_path_below_the_queue_directory() {
        let dir = spool();
        let file = dir.path().join("deferred/A/A2AD898C68C");
        fs::write(&file, b"").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o740)).unwrap();
        set_times(&file, 5, 6);
        fs::write(dir.path().join("incoming/B1"), b"").unwrap();

        let state = observe(dir.path()).unwrap();
        let seen = state.queue_files["deferred/A/A2AD898C68C"];
        assert_eq!((seen.mode, seen.atime, seen.mtime), (0o740, 5, 6));
        assert!(state.queue_files.contains_key("incoming/B1"));
        assert_eq!(state.queue_files.len(), 2);
    }

    #[test]
    fn missing_queue_directories_hold_nothing_and_directories_are_not_files() {
        let dir = spool();
        fs::create_dir(dir.path().join("flush/x")).unwrap();
        let state = observe(dir.path()).unwrap();
        assert!(state.logfiles.is_empty());
        assert!(state.queue_files.is_empty());
        assert_eq!(flush_dir_order(dir.path()).unwrap(), vec!["x".to_string()]);
    }
}
