//! The one narrow layer through which every file operation of the flush
//! server goes: opening a logfile for append or for read-write, the
//! exclusive lock around an append or a send, reading, writing and
//! truncating a logfile, setting file times, renaming a queue file from
//! `deferred/` into `incoming/`, opening a queue file safely before its
//! mode is changed, listing `flush/` in directory order, and making hash
//! directories.
//!
//! The rules in [`crate::service`] never touch the file system any other
//! way, so that another implementation of [`FileSystem`] (in memory, or one
//! that fails on purpose) can stand in without changing a rule. [`RealFs`]
//! is the real thing, on rustix: `flock(2)` with `LOCK_EX`, which is what
//! Postfix uses for its internal locks on Linux, so that flushbed and a
//! real Postfix can share one spool.
//!
//! Times are always whole seconds: a time is set with nanoseconds 0 and
//! read back truncated, because flush(8) compares nothing finer.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use flushbed_vocab::Time;
use rustix::fd::OwnedFd;
use rustix::fs::{FlockOperation, Mode, OFlags, Timestamps};
use rustix::time::Timespec;

/// The file type bits of `st_mode`.
const S_IFMT: u32 = 0o170000;
/// A directory.
const S_IFDIR: u32 = 0o040000;
/// A regular file.
const S_IFREG: u32 = 0o100000;

/// What `stat(2)` says about a file, in the terms flush(8) uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    pub dev: u64,
    pub ino: u64,
    /// The whole `st_mode`: file type and permission bits.
    pub mode: u32,
    pub nlink: u64,
    pub size: u64,
    /// Last read time, whole seconds.
    pub atime: Time,
    /// Last modified time, whole seconds.
    pub mtime: Time,
}

impl Metadata {
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    pub fn is_file(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }

    /// The permission bits (`st_mode & 07777`).
    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }

    /// Whether `other` is the same file (same device and inode).
    pub fn same_file(&self, other: &Metadata) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

/// Every file operation the flush server makes.
///
/// Errors are `std::io::Error`s; the rules look only at whether an error
/// is "does not exist" (`ErrorKind::NotFound`), as Postfix looks only at
/// `ENOENT`.
pub trait FileSystem: Send + Sync {
    /// An open file.
    type File: Send;

    /// Opens a logfile for append, creating it with `mode` if it does not
    /// exist (`O_CREAT | O_APPEND | O_WRONLY`). Says whether it was
    /// created by this call, so that the caller knows a new logfile's
    /// atime is now.
    fn open_append(&self, path: &Path, mode: u32) -> io::Result<(Self::File, bool)>;

    /// Opens an existing file for reading and writing (`O_RDWR`).
    fn open_read_write(&self, path: &Path) -> io::Result<Self::File>;

    /// Opens an existing queue file for reading and writing, safely: not
    /// through a symbolic link, only a regular file, and only one with
    /// exactly one hard link (so that nobody can lure the server into
    /// changing the mode of some other file). Returns its status as seen
    /// through the open file.
    fn open_queue_file(&self, path: &Path) -> io::Result<(Self::File, Metadata)>;

    /// Reads a whole file: a `/file` pattern list or a `texthash:` table,
    /// at service start.
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>>;

    /// Takes an exclusive lock on an open file, waiting for it.
    fn lock_exclusive(&self, file: &Self::File) -> io::Result<()>;

    /// Releases the lock.
    fn unlock(&self, file: &Self::File) -> io::Result<()>;

    /// Reads from the current position; 0 means end of file.
    fn read(&self, file: &Self::File, buf: &mut [u8]) -> io::Result<usize>;

    /// Writes at the current position (at the end, for a file opened for
    /// append); may write less than all of `buf`.
    fn write(&self, file: &Self::File, buf: &[u8]) -> io::Result<usize>;

    /// Writes at `offset`, whatever the current position; may write less
    /// than all of `buf`.
    fn write_at(&self, file: &Self::File, offset: u64, buf: &[u8]) -> io::Result<usize>;

    /// Truncates an open file to `len` bytes.
    fn truncate(&self, file: &Self::File, len: u64) -> io::Result<()>;

    /// The status of an open file.
    fn fstat(&self, file: &Self::File) -> io::Result<Metadata>;

    /// Sets the permission bits of an open file.
    fn fchmod(&self, file: &Self::File, mode: u32) -> io::Result<()>;

    /// Closes a file. Postfix reports a failed close as a warning.
    fn close(&self, file: Self::File) -> io::Result<()>;

    /// The status of the file a path names, following symbolic links.
    fn stat(&self, path: &Path) -> io::Result<Metadata>;

    /// Sets a file's atime and mtime, in whole seconds, following symbolic
    /// links as `utime(2)` does.
    fn set_times(&self, path: &Path, atime: Time, mtime: Time) -> io::Result<()>;

    /// Renames a file.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes a file.
    fn unlink(&self, path: &Path) -> io::Result<()>;

    /// The names in a directory, in the order the directory returns them,
    /// without `.` and `..`.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>>;

    /// Makes one directory with `mode`.
    fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()>;
}

/// Writes all of `buf` with [`FileSystem::write`].
pub fn write_all<F: FileSystem + ?Sized>(fs: &F, file: &F::File, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match fs.write(file, buf) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "short write")),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `buf` at `offset` with [`FileSystem::write_at`].
pub fn write_all_at<F: FileSystem + ?Sized>(
    fs: &F,
    file: &F::File,
    mut offset: u64,
    mut buf: &[u8],
) -> io::Result<()> {
    while !buf.is_empty() {
        match fs.write_at(file, offset, buf) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "short write")),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads an open file from its current position to its end. On a read
/// error, returns what was read before it together with the error, as
/// Postfix's line reader treats an error as the end of the file.
pub fn read_to_end<F: FileSystem + ?Sized>(fs: &F, file: &F::File) -> (Vec<u8>, Option<io::Error>) {
    let mut content = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match fs.read(file, &mut buf) {
            Ok(0) => return (content, None),
            Ok(n) => content.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (content, Some(e)),
        }
    }
}

/// Whether an error says the file does not exist.
pub fn is_not_found(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound
}

/// The real file system, through rustix.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

fn metadata(st: &rustix::fs::Stat) -> Metadata {
    Metadata {
        dev: st.st_dev,
        ino: st.st_ino,
        mode: st.st_mode,
        nlink: st.st_nlink,
        size: u64::try_from(st.st_size).unwrap_or(0),
        atime: st.st_atime,
        mtime: st.st_mtime,
    }
}

fn seconds(time: Time) -> Timespec {
    Timespec {
        tv_sec: time,
        tv_nsec: 0,
    }
}

/// How many times `open_append` retries when the logfile appears and
/// vanishes between its two opens (a concurrent create and delete).
const OPEN_APPEND_RETRIES: usize = 10;

impl FileSystem for RealFs {
    type File = OwnedFd;

    fn open_append(&self, path: &Path, mode: u32) -> io::Result<(OwnedFd, bool)> {
        let existing = OFlags::WRONLY | OFlags::APPEND | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(mode);

        // Open an existing file first, then create one exclusively, so that
        // the caller knows which happened; a lost race goes round again.
        for _ in 0..OPEN_APPEND_RETRIES {
            match rustix::fs::open(path, existing, Mode::empty()) {
                Ok(fd) => return Ok((fd, false)),
                Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
            match rustix::fs::open(path, existing | OFlags::CREATE | OFlags::EXCL, mode) {
                Ok(fd) => return Ok((fd, true)),
                Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }

        // A dangling symbolic link exists for O_EXCL and not for a plain
        // open; create through it as Postfix's O_CREAT open would.
        let fd = rustix::fs::open(path, existing | OFlags::CREATE, mode)?;
        Ok((fd, false))
    }

    fn open_read_write(&self, path: &Path) -> io::Result<OwnedFd> {
        Ok(rustix::fs::open(
            path,
            OFlags::RDWR | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }

    fn open_queue_file(&self, path: &Path) -> io::Result<(OwnedFd, Metadata)> {
        let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, Mode::empty())?;
        let st = metadata(&rustix::fs::fstat(&fd)?);
        if st.nlink != 1 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("file has {} hard links", st.nlink),
            ));
        }
        if !st.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "not a regular file",
            ));
        }
        Ok((fd, st))
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        let (content, error) = read_to_end(self, &fd);
        match error {
            Some(e) => Err(e),
            None => Ok(content),
        }
    }

    fn lock_exclusive(&self, file: &OwnedFd) -> io::Result<()> {
        loop {
            match rustix::fs::flock(file, FlockOperation::LockExclusive) {
                Err(rustix::io::Errno::INTR) => continue,
                other => return Ok(other?),
            }
        }
    }

    fn unlock(&self, file: &OwnedFd) -> io::Result<()> {
        loop {
            match rustix::fs::flock(file, FlockOperation::Unlock) {
                Err(rustix::io::Errno::INTR) => continue,
                other => return Ok(other?),
            }
        }
    }

    fn read(&self, file: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
        Ok(rustix::io::read(file, buf)?)
    }

    fn write(&self, file: &OwnedFd, buf: &[u8]) -> io::Result<usize> {
        Ok(rustix::io::write(file, buf)?)
    }

    fn write_at(&self, file: &OwnedFd, offset: u64, buf: &[u8]) -> io::Result<usize> {
        Ok(rustix::io::pwrite(file, buf, offset)?)
    }

    fn truncate(&self, file: &OwnedFd, len: u64) -> io::Result<()> {
        Ok(rustix::fs::ftruncate(file, len)?)
    }

    fn fstat(&self, file: &OwnedFd) -> io::Result<Metadata> {
        Ok(metadata(&rustix::fs::fstat(file)?))
    }

    fn fchmod(&self, file: &OwnedFd, mode: u32) -> io::Result<()> {
        Ok(rustix::fs::fchmod(
            file,
            Mode::from_raw_mode(mode & 0o7777),
        )?)
    }

    fn close(&self, file: OwnedFd) -> io::Result<()> {
        drop(file);
        Ok(())
    }

    fn stat(&self, path: &Path) -> io::Result<Metadata> {
        Ok(metadata(&rustix::fs::stat(path)?))
    }

    fn set_times(&self, path: &Path, atime: Time, mtime: Time) -> io::Result<()> {
        let times = Timestamps {
            last_access: seconds(atime),
            last_modification: seconds(mtime),
        };
        Ok(rustix::fs::utimensat(
            rustix::fs::CWD,
            path,
            &times,
            rustix::fs::AtFlags::empty(),
        )?)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        Ok(rustix::fs::rename(from, to)?)
    }

    fn unlink(&self, path: &Path) -> io::Result<()> {
        Ok(rustix::fs::unlink(path)?)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let dir = rustix::fs::Dir::new(fd)?;
        let mut names = Vec::new();
        for entry in dir {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            names.push(OsString::from_vec(name.to_vec()));
        }
        Ok(names)
    }

    fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()> {
        Ok(rustix::fs::mkdir(path, Mode::from_raw_mode(mode))?)
    }
}

/// Reads a file's status without following a final symbolic link, for
/// tests and observers that must not disturb anything.
pub fn lstat(path: &Path) -> io::Result<Metadata> {
    Ok(metadata(&rustix::fs::lstat(path.as_os_str().as_bytes())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_append_says_when_it_created_the_logfile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("example_com");
        let (fd, created) = RealFs.open_append(&path, 0o600).unwrap();
        assert!(created);
        drop(fd);
        let (_fd, created) = RealFs.open_append(&path, 0o600).unwrap();
        assert!(!created);
        assert_eq!(RealFs.stat(&path).unwrap().permissions(), 0o600);
    }

    #[test]
    fn set_times_sets_whole_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        RealFs.open_append(&path, 0o600).unwrap();
        RealFs
            .set_times(&path, 1_700_000_001, 1_700_000_002)
            .unwrap();
        let st = rustix::fs::stat(&path).unwrap();
        assert_eq!((st.st_atime, st.st_atime_nsec), (1_700_000_001, 0));
        assert_eq!((st.st_mtime, st.st_mtime_nsec), (1_700_000_002, 0));
    }

    #[test]
    fn open_queue_file_refuses_links_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("A1B2C3");
        RealFs.open_append(&file, 0o700).unwrap();
        assert!(RealFs.open_queue_file(&file).is_ok());

        let symlink = dir.path().join("S1");
        std::os::unix::fs::symlink(&file, &symlink).unwrap();
        assert!(RealFs.open_queue_file(&symlink).is_err());

        let hard = dir.path().join("H1");
        std::fs::hard_link(&file, &hard).unwrap();
        assert!(RealFs.open_queue_file(&file).is_err());

        assert!(RealFs.open_queue_file(dir.path()).is_err());
        let missing = RealFs
            .open_queue_file(&dir.path().join("none"))
            .unwrap_err();
        assert!(is_not_found(&missing));
    }

    #[test]
    fn list_dir_leaves_out_dot_and_dot_dot() {
        let dir = tempfile::tempdir().unwrap();
        RealFs.open_append(&dir.path().join("a_b"), 0o600).unwrap();
        RealFs.mkdir(&dir.path().join("x"), 0o700).unwrap();
        let mut names = RealFs.list_dir(dir.path()).unwrap();
        names.sort();
        assert_eq!(names, vec![OsString::from("a_b"), OsString::from("x")]);
    }

    #[test]
    fn lock_is_exclusive_between_open_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("example_com");
        let (first, _) = RealFs.open_append(&path, 0o600).unwrap();
        let second = RealFs.open_read_write(&path).unwrap();
        RealFs.lock_exclusive(&first).unwrap();
        let attempt = rustix::fs::flock(&second, FlockOperation::NonBlockingLockExclusive);
        assert_eq!(attempt, Err(rustix::io::Errno::WOULDBLOCK));
        RealFs.unlock(&first).unwrap();
        assert!(rustix::fs::flock(&second, FlockOperation::NonBlockingLockExclusive).is_ok());
    }
}
