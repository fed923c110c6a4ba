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
//! Two ways to look: [`observe`] reads the whole spool, walking each
//! directory through an open descriptor so that a file costs one lookup of
//! its own name; [`observe_touched`] reads only the files a step can have
//! changed (the paths a target's file layer touched, and those the model
//! changed), and says when only a whole look will do: a path that climbs
//! with `..`, a symbolic link or a hard-linked file (whose change shows
//! under another name), a directory moved by a rename.
//!
//! Observing must not disturb what it observes: a logfile's atime is its
//! last *read* time, which refresh decides on. Logfiles are opened with
//! `O_NOATIME`, and should the times have moved anyway (a file system that
//! ignores the flag, or a file we do not own), they are put back.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CStr;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use flushbed_vocab::{LogfileState, QueueFileState, QueueName, SpoolState};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat, Timestamps};
use thiserror::Error;

use crate::target::touched::Touched;

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

fn errno_at(path: &Path) -> impl FnOnce(rustix::io::Errno) -> ObserveError + '_ {
    move |errno| at(path)(errno.into())
}

/// Everything observable in the spool at `queue_dir`.
pub fn observe(queue_dir: &Path) -> Result<SpoolState, ObserveError> {
    let mut state = SpoolState::default();

    let flush = queue_dir.join("flush");
    walk_regular_files(&flush, &mut |dir, name, key, path| {
        state.logfiles.insert(key, read_logfile(dir, name, path)?);
        Ok(())
    })?;

    for queue in QueueName::ALL {
        let top = queue_dir.join(queue.dir());
        walk_regular_files(&top, &mut |dir, name, key, path| {
            let st =
                rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(errno_at(path))?;
            let key = format!("{}/{key}", queue.dir());
            state.queue_files.insert(key, queue_file_state(&st));
            Ok(())
        })?;
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

/// Spool files by the keys [`SpoolState`] gives them: logfiles by their
/// path below `flush/`, queue files by their path below `queue_directory`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paths {
    pub logfiles: BTreeSet<String>,
    pub queue_files: BTreeSet<String>,
}

impl Paths {
    pub fn is_empty(&self) -> bool {
        self.logfiles.is_empty() && self.queue_files.is_empty()
    }
}

/// Some files of a spool as they are now; `None` is a file that is not
/// there (or is no regular file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partial {
    pub logfiles: BTreeMap<String, Option<LogfileState>>,
    pub queue_files: BTreeMap<String, Option<QueueFileState>>,
}

/// The files at `also` and at every path in `touched` that is a spool
/// file, as they are now; `None` when a whole look at the spool is needed
/// to be sure of what changed.
pub fn observe_touched(
    queue_dir: &Path,
    touched: &Touched,
    also: &Paths,
) -> Result<Option<Partial>, ObserveError> {
    let mut wanted = also.clone();
    for path in &touched.paths {
        match classify(queue_dir, path) {
            Kind::Unsure => return Ok(None),
            Kind::Elsewhere => {}
            Kind::Logfile(key) => {
                wanted.logfiles.insert(key);
            }
            Kind::QueueFile(key) => {
                wanted.queue_files.insert(key);
            }
        }
    }

    // A directory where a rename put something is a subtree that moved.
    for to in &touched.renamed_to {
        match rustix::fs::lstat(to) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                return Ok(None)
            }
            _ => {}
        }
    }

    let flush = queue_dir.join("flush");
    let mut partial = Partial::default();
    for key in wanted.logfiles {
        let path = flush.join(&key);
        let state = match look_at_logfile(&path)? {
            Look::File(state) => Some(state),
            Look::Absent => None,
            Look::Unsure => return Ok(None),
        };
        partial.logfiles.insert(key, state);
    }
    for key in wanted.queue_files {
        let path = queue_dir.join(&key);
        let state = match rustix::fs::lstat(&path) {
            Ok(st) => match regular(&st) {
                Look::File(()) => Some(queue_file_state(&st)),
                Look::Absent => None,
                Look::Unsure => return Ok(None),
            },
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => None,
            Err(e) => return Err(errno_at(&path)(e)),
        };
        partial.queue_files.insert(key, state);
    }
    Ok(Some(partial))
}

/// Where a path the file layer named lies in the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Logfile(String),
    QueueFile(String),
    /// Not a file the observer looks at: outside the spool, a queue
    /// directory itself, `public/`, `private/`.
    Elsewhere,
    /// A path whose file the observer cannot name for certain.
    Unsure,
}

fn classify(queue_dir: &Path, path: &Path) -> Kind {
    if path.components().any(|c| c == Component::ParentDir) {
        return Kind::Unsure;
    }
    let Ok(relative) = path.strip_prefix(queue_dir) else {
        return Kind::Elsewhere;
    };
    let mut names = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(name) => match name.to_str() {
                Some(name) => names.push(name),
                // The whole look keys such a name lossily; only it matches.
                None => return Kind::Unsure,
            },
            Component::CurDir => {}
            _ => return Kind::Unsure,
        }
    }
    match names.split_first() {
        Some((&"flush", rest)) if !rest.is_empty() => Kind::Logfile(rest.join("/")),
        Some((top, rest)) if !rest.is_empty() && QueueName::from_dir(top).is_some() => {
            Kind::QueueFile(names.join("/"))
        }
        _ => Kind::Elsewhere,
    }
}

/// What a path holds, for the observer.
enum Look<T> {
    /// A regular file with no other name.
    File(T),
    /// Nothing, or a directory (which the observer does not look at).
    Absent,
    /// A symbolic link, a device, a socket, a file with several names.
    Unsure,
}

fn regular(st: &Stat) -> Look<()> {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile if st.st_nlink == 1 => Look::File(()),
        FileType::Directory => Look::Absent,
        _ => Look::Unsure,
    }
}

/// One logfile by its whole path, if a regular file with one name is
/// there.
fn look_at_logfile(path: &Path) -> Result<Look<LogfileState>, ObserveError> {
    // O_NOFOLLOW refuses a symbolic link with ELOOP.
    let fd = match open_logfile(rustix::fs::CWD, path, path) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(Look::Absent),
        Err(rustix::io::Errno::LOOP) => return Ok(Look::Unsure),
        Err(e) => return Err(errno_at(path)(e)),
    };
    let before = rustix::fs::fstat(&fd).map_err(errno_at(path))?;
    match regular(&before) {
        Look::File(()) => Ok(Look::File(read_open_logfile(fd, before, path)?)),
        Look::Absent => Ok(Look::Absent),
        Look::Unsure => Ok(Look::Unsure),
    }
}

fn queue_file_state(st: &Stat) -> QueueFileState {
    QueueFileState {
        mode: st.st_mode & 0o7777,
        atime: st.st_atime,
        mtime: st.st_mtime,
    }
}

/// What a walk does with one regular file: the directory it is in, its
/// name there, its key and its whole path.
type Visit<'v> = dyn FnMut(BorrowedFd<'_>, &CStr, String, &Path) -> Result<(), ObserveError> + 'v;

/// Calls `visit` for every regular file below `top` with the directory it
/// is in, its name there, its key (its path relative to `top`) and its
/// whole path; a `top` that does not exist holds nothing.
fn walk_regular_files(top: &Path, visit: &mut Visit<'_>) -> Result<(), ObserveError> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(top, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(errno_at(top)(e)),
    };
    let mut pending: Vec<(String, PathBuf, OwnedFd)> = vec![(String::new(), top.to_path_buf(), fd)];
    while let Some((prefix, path, fd)) = pending.pop() {
        let mut dir = Dir::new(fd).map_err(errno_at(&path))?;
        let mut entries = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(errno_at(&path))?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            entries.push((name.to_owned(), entry.file_type()));
        }
        // The directory's descriptor serves the lookups of its entries; they
        // do not move its reading position.
        let dir_fd = dir.fd().map_err(errno_at(&path))?;

        for (name, file_type) in entries {
            let text = name.to_string_lossy().into_owned();
            let key = if prefix.is_empty() {
                text.clone()
            } else {
                format!("{prefix}/{text}")
            };
            let whole = path.join(&text);

            // A file system that does not say the type in the directory
            // entry is asked for it.
            let file_type = match file_type {
                FileType::Unknown => {
                    let st = rustix::fs::statat(dir_fd, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(errno_at(&whole))?;
                    FileType::from_raw_mode(st.st_mode)
                }
                known => known,
            };
            match file_type {
                FileType::Directory => {
                    let sub = rustix::fs::openat(dir_fd, name.as_c_str(), flags, Mode::empty())
                        .map_err(errno_at(&whole))?;
                    pending.push((key, whole, sub));
                }
                FileType::RegularFile => visit(dir_fd, name.as_c_str(), key, &whole)?,
                _ => {}
            }
        }
    }
    Ok(())
}

/// One logfile's bytes, mode and times, its atime left as it was: `name`
/// in the directory `dir` (or a whole path with `CWD`), `path` for errors.
fn read_logfile<P: rustix::path::Arg + Copy>(
    dir: impl AsFd,
    name: P,
    path: &Path,
) -> Result<LogfileState, ObserveError> {
    let fd = open_logfile(dir, name, path).map_err(errno_at(path))?;
    let before = rustix::fs::fstat(&fd).map_err(errno_at(path))?;
    read_open_logfile(fd, before, path)
}

/// Opens a logfile for reading without moving its atime where the kernel
/// allows it.
fn open_logfile<P: rustix::path::Arg + Copy>(
    dir: impl AsFd,
    name: P,
    path: &Path,
) -> rustix::io::Result<OwnedFd> {
    // O_NOATIME is refused for a file we do not own; then the times are put
    // back by hand after reading.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    match rustix::fs::openat(&dir, name, flags | OFlags::NOATIME, Mode::empty()) {
        Err(rustix::io::Errno::PERM) => {
            tracing::trace!(logfile = %path.display(), "O_NOATIME refused");
            rustix::fs::openat(&dir, name, flags, Mode::empty())
        }
        other => other,
    }
}

/// The bytes, mode and times of an open logfile whose status before
/// reading is `before`; times the read moved are put back.
fn read_open_logfile(fd: OwnedFd, before: Stat, path: &Path) -> Result<LogfileState, ObserveError> {
    let content = read_all(&fd, before.st_size).map_err(at(path))?;

    let after = rustix::fs::fstat(&fd).map_err(errno_at(path))?;
    let moved = (
        after.st_atime,
        after.st_atime_nsec,
        after.st_mtime,
        after.st_mtime_nsec,
    ) != (
        before.st_atime,
        before.st_atime_nsec,
        before.st_mtime,
        before.st_mtime_nsec,
    );
    if moved {
        let times = Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: before.st_atime,
                tv_nsec: before.st_atime_nsec as _,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: before.st_mtime,
                tv_nsec: before.st_mtime_nsec as _,
            },
        };
        rustix::fs::futimens(&fd, &times).map_err(errno_at(path))?;
        tracing::debug!(logfile = %path.display(), "times restored after observing");
    }

    Ok(LogfileState {
        content,
        mode: before.st_mode & 0o7777,
        atime: before.st_atime,
        mtime: before.st_mtime,
    })
}

/// Every byte of an open file, from its start.
fn read_all(fd: &OwnedFd, size_hint: i64) -> io::Result<Vec<u8>> {
    // One byte more than the size, so that the end is seen in one read.
    let mut content = vec![0u8; usize::try_from(size_hint).unwrap_or(0) + 1];
    let mut len = 0;
    loop {
        if len == content.len() {
            content.resize(len * 2, 0);
        }
        match rustix::io::read(fd, &mut content[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    content.truncate(len);
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

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

    #[test]
    fn a_logfile_larger_than_one_read_is_read_whole() {
        let dir = spool();
        let content: Vec<u8> = (0..50_000u32).map(|n| b'A' + (n % 26) as u8).collect();
        fs::write(dir.path().join("flush/big_example"), &content).unwrap();
        assert_eq!(
            observe(dir.path()).unwrap().logfiles["big_example"].content,
            content
        );
    }

    fn touched(paths: &[PathBuf]) -> Touched {
        Touched {
            paths: paths.to_vec(),
            renamed_to: BTreeSet::new(),
        }
    }

    #[test]
    fn touched_files_are_seen_as_the_whole_look_sees_them() {
        let dir = spool();
        let logfile = dir.path().join("flush/example_com");
        fs::write(&logfile, b"A1\n").unwrap();
        fs::write(dir.path().join("deferred/A/A1"), b"").unwrap();
        let paths = [
            logfile,
            dir.path().join("deferred/A/A1"),
            dir.path().join("incoming/A1"),
            dir.path().join("deferred/A"),
            dir.path().join("public/flush"),
        ];
        let partial = observe_touched(dir.path(), &touched(&paths), &Paths::default())
            .unwrap()
            .unwrap();
        let whole = observe(dir.path()).unwrap();
        assert_eq!(
            partial.logfiles["example_com"].as_ref(),
            whole.logfiles.get("example_com")
        );
        assert_eq!(
            partial.queue_files["deferred/A/A1"].as_ref(),
            whole.queue_files.get("deferred/A/A1")
        );
        assert_eq!(partial.queue_files["incoming/A1"], None);
        assert_eq!(partial.queue_files["deferred/A"], None);
        assert_eq!(partial.queue_files.len(), 3);
        assert_eq!(partial.logfiles.len(), 1);
    }

    #[test]
    fn the_models_paths_are_seen_even_when_nothing_touched_them() {
        let dir = spool();
        fs::write(dir.path().join("flush/other_com"), b"B2\n").unwrap();
        let also = Paths {
            logfiles: BTreeSet::from(["other_com".to_string(), "gone_com".to_string()]),
            queue_files: BTreeSet::new(),
        };
        let partial = observe_touched(dir.path(), &Touched::default(), &also)
            .unwrap()
            .unwrap();
        assert_eq!(
            partial.logfiles["other_com"].as_ref().unwrap().content,
            b"B2\n"
        );
        assert_eq!(partial.logfiles["gone_com"], None);
    }

    #[test]
    fn links_climbing_paths_and_moved_directories_need_a_whole_look() {
        let dir = spool();
        let file = dir.path().join("incoming/B1");
        fs::write(&file, b"").unwrap();
        let none = Paths::default();

        let link = dir.path().join("flush/example_com");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(
            observe_touched(dir.path(), &touched(&[link]), &none).unwrap(),
            None
        );

        let climbing = dir.path().join("flush/../incoming/B1");
        assert_eq!(
            observe_touched(dir.path(), &touched(&[climbing]), &none).unwrap(),
            None
        );

        let second = dir.path().join("active/B1");
        fs::hard_link(&file, &second).unwrap();
        assert_eq!(
            observe_touched(dir.path(), &touched(&[second]), &none).unwrap(),
            None
        );

        let moved = Touched {
            paths: vec![dir.path().join("deferred/A"), dir.path().join("active/A")],
            renamed_to: BTreeSet::from([dir.path().join("active/A")]),
        };
        fs::rename(dir.path().join("deferred/A"), dir.path().join("active/A")).unwrap();
        assert_eq!(observe_touched(dir.path(), &moved, &none).unwrap(), None);
    }
}
