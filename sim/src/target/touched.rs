//! A file layer that remembers what it touched: every path the flush
//! server's [`FileSystem`] calls name, so that the lockstep can look again
//! at only the logfiles and queue files a step can have changed.
//!
//! [`TouchedFs`] wraps another file layer (the real one, in the spool
//! target) and records the path of each call before passing it on: the
//! opens, reads and writes of a logfile (a read moves its atime), the
//! times, renames and unlinks of queue files, the listing of `flush/` and
//! the hash directories made. An open file carries its path, so that a
//! write, a truncation or a mode change through it is recorded under it
//! too. Because the record is what the file layer itself saw, a file the
//! server changes where no rule says it should is in it all the same.
//!
//! A rename moves a whole subtree when it names a directory, which its two
//! paths alone do not show: the destinations of renames are kept apart, so
//! that the observer can tell when only a whole look at the spool will do.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use flushbed_impl::{FileSystem, Metadata};
use flushbed_vocab::Time;

/// What the file layer touched since the record was last taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// Every path a call named, as the server spelt it, in the order of
    /// the calls; a path named by several calls in a row is listed once.
    pub paths: Vec<PathBuf>,
    /// The destinations of renames: a directory found at one of them means
    /// a subtree moved.
    pub renamed_to: BTreeSet<PathBuf>,
}

impl Touched {
    fn note(&mut self, path: &Path) {
        // An open, lock, write, unlock and close of one logfile name it
        // five times over; comparing bytes is cheaper than a set.
        let again = self
            .paths
            .last()
            .is_some_and(|last| last.as_os_str() == path.as_os_str());
        if !again {
            self.paths.push(path.to_path_buf());
        }
    }
}

/// The record, shared between the file layer and whoever reads it.
#[derive(Debug, Clone, Default)]
pub struct TouchedLog(Arc<Mutex<Touched>>);

impl TouchedLog {
    /// What was touched since the last call; the record starts afresh.
    pub fn take(&self) -> Touched {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, Touched> {
        // A panic while recording leaves a record that is still a set of
        // paths: carry on with it.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn note(&self, path: &Path) {
        self.lock().note(path);
    }
}

/// A file layer that records every path before the layer it wraps acts.
#[derive(Debug, Clone)]
pub struct TouchedFs<F> {
    inner: F,
    log: TouchedLog,
}

impl<F> TouchedFs<F> {
    /// Wraps `inner`, recording into `log`.
    pub fn new(inner: F, log: TouchedLog) -> TouchedFs<F> {
        TouchedFs { inner, log }
    }
}

/// An open file of a [`TouchedFs`], with the path it was opened by.
#[derive(Debug)]
pub struct TouchedFile<T> {
    file: T,
    path: PathBuf,
}

impl<F: FileSystem> TouchedFs<F> {
    fn opened(&self, path: &Path, file: F::File) -> TouchedFile<F::File> {
        TouchedFile {
            file,
            path: path.to_path_buf(),
        }
    }

    fn through<'a>(&self, file: &'a TouchedFile<F::File>) -> &'a F::File {
        self.log.note(&file.path);
        &file.file
    }
}

impl<F: FileSystem> FileSystem for TouchedFs<F> {
    type File = TouchedFile<F::File>;

    fn open_append(&self, path: &Path, mode: u32) -> io::Result<(Self::File, bool)> {
        self.log.note(path);
        let (file, created) = self.inner.open_append(path, mode)?;
        Ok((self.opened(path, file), created))
    }

    fn open_read_write(&self, path: &Path) -> io::Result<Self::File> {
        self.log.note(path);
        let file = self.inner.open_read_write(path)?;
        Ok(self.opened(path, file))
    }

    fn open_queue_file(&self, path: &Path) -> io::Result<(Self::File, Metadata)> {
        self.log.note(path);
        let (file, meta) = self.inner.open_queue_file(path)?;
        Ok((self.opened(path, file), meta))
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.log.note(path);
        self.inner.read_file(path)
    }

    fn lock_exclusive(&self, file: &Self::File) -> io::Result<()> {
        self.inner.lock_exclusive(self.through(file))
    }

    fn unlock(&self, file: &Self::File) -> io::Result<()> {
        self.inner.unlock(self.through(file))
    }

    fn read(&self, file: &Self::File, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(self.through(file), buf)
    }

    fn write(&self, file: &Self::File, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(self.through(file), buf)
    }

    fn write_at(&self, file: &Self::File, offset: u64, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_at(self.through(file), offset, buf)
    }

    fn truncate(&self, file: &Self::File, len: u64) -> io::Result<()> {
        self.inner.truncate(self.through(file), len)
    }

    fn fstat(&self, file: &Self::File) -> io::Result<Metadata> {
        self.inner.fstat(self.through(file))
    }

    fn fchmod(&self, file: &Self::File, mode: u32) -> io::Result<()> {
        self.inner.fchmod(self.through(file), mode)
    }

    fn close(&self, file: Self::File) -> io::Result<()> {
        self.log.note(&file.path);
        self.inner.close(file.file)
    }

    fn stat(&self, path: &Path) -> io::Result<Metadata> {
        self.log.note(path);
        self.inner.stat(path)
    }

    fn set_times(&self, path: &Path, atime: Time, mtime: Time) -> io::Result<()> {
        self.log.note(path);
        self.inner.set_times(path, atime, mtime)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        {
            let mut log = self.log.lock();
            log.note(from);
            log.note(to);
            if !log.renamed_to.contains(to) {
                log.renamed_to.insert(to.to_path_buf());
            }
        }
        self.inner.rename(from, to)
    }

    fn unlink(&self, path: &Path) -> io::Result<()> {
        self.log.note(path);
        self.inner.unlink(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        self.log.note(path);
        self.inner.list_dir(path)
    }

    fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.log.note(path);
        self.inner.mkdir(path, mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flushbed_impl::RealFs;

    #[test]
    fn a_write_through_an_open_file_is_recorded_under_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let log = TouchedLog::default();
        let fs = TouchedFs::new(RealFs, log.clone());
        let path = dir.path().join("example_com");
        let (file, _) = fs.open_append(&path, 0o600).unwrap();
        assert_eq!(log.take().paths, vec![path.clone()]);

        flushbed_impl::fs::write_all(&fs, &file, b"A1\n").unwrap();
        fs.close(file).unwrap();
        assert_eq!(log.take().paths, vec![path.clone()]);
        assert_eq!(log.take(), Touched::default());
        assert_eq!(std::fs::read(&path).unwrap(), b"A1\n");
    }

    #[test]
    fn a_rename_records_both_paths_and_its_destination() {
        let dir = tempfile::tempdir().unwrap();
        let log = TouchedLog::default();
        let fs = TouchedFs::new(RealFs, log.clone());
        let (from, to) = (dir.path().join("A1"), dir.path().join("B1"));
        std::fs::write(&from, b"").unwrap();
        fs.rename(&from, &to).unwrap();
        let touched = log.take();
        assert_eq!(touched.paths, vec![from, to.clone()]);
        assert_eq!(touched.renamed_to, BTreeSet::from([to]));
    }

    #[test]
    fn a_failed_call_is_recorded_all_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let log = TouchedLog::default();
        let fs = TouchedFs::new(RealFs, log.clone());
        let missing = dir.path().join("none");
        assert!(fs.unlink(&missing).is_err());
        assert_eq!(log.take().paths, vec![missing]);
    }
}
