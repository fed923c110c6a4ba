//! Fault injection for the flush server: a [`FileSystem`] that fails the
//! calls it is told to, and the two ends of a connection (the client and
//! the queue manager's trigger socket) as a process that may die sees them.
//!
//! Every call the service makes through a [`FaultFs`] is counted from the
//! start of a request ([`Faults::begin_request`]) and can be failed by its
//! number ([`Plan`]):
//!
//! - an error: `ENOSPC` or `EIO` on a write, `EIO` on a rename, `EACCES`
//!   on an open. The failure is sticky: from that call on, every call of
//!   the same operation fails the same way for the rest of the request (a
//!   full disk stays full; Postfix's own retry of a rename fails again).
//!   An error planted on any other call fails that call alone;
//! - a crash: the call and every later one fail, as if the process had
//!   died there; what it would still write to the client or send to the
//!   queue manager is dropped by [`DyingConnection`] and [`DyingSink`]. The
//!   caller then starts a fresh service on the same spool, as the master
//!   starts a fresh flush process.
//!
//! Tests can also fail every call of one kind ([`Faults::fail_every`]), and
//! run something just before the next lock is granted
//! ([`Faults::before_next_lock`]): another process acting between a
//! server's open and its lock.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use flushbed_vocab::{Time, Trigger};

use crate::fs::{FileSystem, Metadata};
use crate::{Connection, TriggerSink};

/// One method of [`FileSystem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Call {
    OpenAppend,
    OpenReadWrite,
    OpenQueueFile,
    ReadFile,
    Lock,
    Unlock,
    Read,
    Write,
    WriteAt,
    Truncate,
    Fstat,
    Fchmod,
    Close,
    Stat,
    SetTimes,
    Rename,
    Unlink,
    ListDir,
    Mkdir,
}

/// The operation a call is, as far as an error fault is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Open,
    Write,
    Rename,
    /// Anything else: only a crash stops it.
    Other,
}

impl Call {
    pub fn op(self) -> Op {
        match self {
            Call::OpenAppend | Call::OpenReadWrite | Call::OpenQueueFile | Call::ReadFile => {
                Op::Open
            }
            Call::Write | Call::WriteAt => Op::Write,
            Call::Rename => Op::Rename,
            _ => Op::Other,
        }
    }
}

/// How a call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// `ENOSPC`.
    NoSpace,
    /// `EIO`.
    Io,
    /// `EACCES`.
    Denied,
    /// The process dies.
    Crash,
}

impl Failure {
    /// The failures that make sense for a call of this operation.
    pub fn for_op(op: Op) -> &'static [Failure] {
        match op {
            Op::Open => &[Failure::Denied, Failure::Crash],
            Op::Write => &[Failure::NoSpace, Failure::Io, Failure::Crash],
            Op::Rename => &[Failure::Io, Failure::Crash],
            Op::Other => &[Failure::Crash],
        }
    }

    fn error(self) -> io::Error {
        let errno = match self {
            Failure::NoSpace => rustix::io::Errno::NOSPC,
            Failure::Io | Failure::Crash => rustix::io::Errno::IO,
            Failure::Denied => rustix::io::Errno::ACCESS,
        };
        io::Error::from_raw_os_error(errno.raw_os_error())
    }
}

/// Which call of a request fails, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The call's number in the request, from 0.
    pub call: usize,
    pub failure: Failure,
}

/// Something another process does meanwhile.
type Meanwhile = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    plan: Option<Plan>,
    /// The calls of the current request, in order.
    calls: Vec<Call>,
    /// An error fault that went off, and keeps failing its operation.
    sticky: Option<(Op, Failure)>,
    crashed: bool,
    every: BTreeMap<Call, Failure>,
    before_lock: Option<Meanwhile>,
}

/// The control of a [`FaultFs`], shared with whoever injects the faults.
#[derive(Clone, Default)]
pub struct Faults(Arc<Mutex<State>>);

impl Faults {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request starts: its calls are counted from 0, and `plan` (if any)
    /// fails one of them.
    pub fn begin_request(&self, plan: Option<Plan>) {
        let mut state = self.state();
        state.plan = plan;
        state.calls.clear();
        state.sticky = None;
        state.crashed = false;
    }

    /// The calls made since the request began.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Whether the process died in this request.
    pub fn crashed(&self) -> bool {
        self.state().crashed
    }

    /// Every call of this kind fails this way, until [`Faults::clear`].
    pub fn fail_every(&self, call: Call, failure: Failure) {
        self.state().every.insert(call, failure);
    }

    /// No call fails any more.
    pub fn clear(&self) {
        let mut state = self.state();
        state.every.clear();
        state.plan = None;
        state.sticky = None;
        state.crashed = false;
    }

    /// Runs `meanwhile` just before the next lock is granted.
    pub fn before_next_lock(&self, meanwhile: impl FnOnce() + Send + 'static) {
        self.state().before_lock = Some(Box::new(meanwhile));
    }

    /// Counts a call and says whether it fails.
    fn check(&self, call: Call) -> io::Result<()> {
        let mut state = self.state();
        let number = state.calls.len();
        state.calls.push(call);
        if state.crashed {
            return Err(Failure::Crash.error());
        }
        if let Some(plan) = state.plan.filter(|plan| plan.call == number) {
            if plan.failure == Failure::Crash {
                state.crashed = true;
            } else if call.op() != Op::Other {
                state.sticky = Some((call.op(), plan.failure));
            }
            return Err(plan.failure.error());
        }
        if let Some((op, failure)) = state.sticky {
            if op == call.op() {
                return Err(failure.error());
            }
        }
        if let Some(failure) = state.every.get(&call) {
            return Err(failure.error());
        }
        Ok(())
    }

    fn take_before_lock(&self) -> Option<Meanwhile> {
        self.state().before_lock.take()
    }
}

/// A file system whose calls fail as its [`Faults`] say.
pub struct FaultFs<F> {
    inner: F,
    faults: Faults,
}

impl<F: FileSystem> FaultFs<F> {
    pub fn new(inner: F, faults: Faults) -> FaultFs<F> {
        FaultFs { inner, faults }
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    pub fn inner(&self) -> &F {
        &self.inner
    }
}

impl<F: FileSystem> FileSystem for FaultFs<F> {
    type File = F::File;

    fn open_append(&self, path: &Path, mode: u32) -> io::Result<(F::File, bool)> {
        self.faults.check(Call::OpenAppend)?;
        self.inner.open_append(path, mode)
    }

    fn open_read_write(&self, path: &Path) -> io::Result<F::File> {
        self.faults.check(Call::OpenReadWrite)?;
        self.inner.open_read_write(path)
    }

    fn open_queue_file(&self, path: &Path) -> io::Result<(F::File, Metadata)> {
        self.faults.check(Call::OpenQueueFile)?;
        self.inner.open_queue_file(path)
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.faults.check(Call::ReadFile)?;
        self.inner.read_file(path)
    }

    fn lock_exclusive(&self, file: &F::File) -> io::Result<()> {
        self.faults.check(Call::Lock)?;
        if let Some(meanwhile) = self.faults.take_before_lock() {
            meanwhile();
        }
        self.inner.lock_exclusive(file)
    }

    fn unlock(&self, file: &F::File) -> io::Result<()> {
        self.faults.check(Call::Unlock)?;
        self.inner.unlock(file)
    }

    fn read(&self, file: &F::File, buf: &mut [u8]) -> io::Result<usize> {
        self.faults.check(Call::Read)?;
        self.inner.read(file, buf)
    }

    fn write(&self, file: &F::File, buf: &[u8]) -> io::Result<usize> {
        self.faults.check(Call::Write)?;
        self.inner.write(file, buf)
    }

    fn write_at(&self, file: &F::File, offset: u64, buf: &[u8]) -> io::Result<usize> {
        self.faults.check(Call::WriteAt)?;
        self.inner.write_at(file, offset, buf)
    }

    fn truncate(&self, file: &F::File, len: u64) -> io::Result<()> {
        self.faults.check(Call::Truncate)?;
        self.inner.truncate(file, len)
    }

    fn fstat(&self, file: &F::File) -> io::Result<Metadata> {
        self.faults.check(Call::Fstat)?;
        self.inner.fstat(file)
    }

    fn fchmod(&self, file: &F::File, mode: u32) -> io::Result<()> {
        self.faults.check(Call::Fchmod)?;
        self.inner.fchmod(file, mode)
    }

    fn close(&self, file: F::File) -> io::Result<()> {
        // A dead process closes nothing, but the kernel does it for it.
        let counted = self.faults.check(Call::Close);
        let closed = self.inner.close(file);
        counted.and(closed)
    }

    fn stat(&self, path: &Path) -> io::Result<Metadata> {
        self.faults.check(Call::Stat)?;
        self.inner.stat(path)
    }

    fn set_times(&self, path: &Path, atime: Time, mtime: Time) -> io::Result<()> {
        self.faults.check(Call::SetTimes)?;
        self.inner.set_times(path, atime, mtime)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.faults.check(Call::Rename)?;
        self.inner.rename(from, to)
    }

    fn unlink(&self, path: &Path) -> io::Result<()> {
        self.faults.check(Call::Unlink)?;
        self.inner.unlink(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        self.faults.check(Call::ListDir)?;
        self.inner.list_dir(path)
    }

    fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.faults.check(Call::Mkdir)?;
        self.inner.mkdir(path, mode)
    }
}

/// A client connection served by a process that may die: after a crash,
/// nothing more reaches the client.
pub struct DyingConnection<'a> {
    inner: &'a mut dyn Connection,
    faults: Faults,
}

impl<'a> DyingConnection<'a> {
    pub fn new(inner: &'a mut dyn Connection, faults: Faults) -> DyingConnection<'a> {
        DyingConnection { inner, faults }
    }
}

impl Connection for DyingConnection<'_> {
    fn wait_and_peek(&mut self) -> io::Result<usize> {
        self.inner.wait_and_peek()
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.faults.crashed() {
            return Ok(());
        }
        self.inner.write_all(buf)
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.set_read_timeout(timeout)
    }
}

/// The queue manager's trigger socket, as a process that may die writes
/// to it: after a crash, no trigger is sent.
pub struct DyingSink<S> {
    inner: S,
    faults: Faults,
}

impl<S: TriggerSink> DyingSink<S> {
    pub fn new(inner: S, faults: Faults) -> DyingSink<S> {
        DyingSink { inner, faults }
    }
}

impl<S: TriggerSink> TriggerSink for DyingSink<S> {
    fn send(&self, trigger: Trigger) {
        if !self.faults.crashed() {
            self.inner.send(trigger);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::RealFs;
    use crate::{MemoryConnection, RecordingSink};

    fn errno(error: &io::Error) -> i32 {
        error.raw_os_error().unwrap_or(0)
    }

    #[test]
    fn a_planned_error_fails_its_call_and_every_later_call_of_its_operation() {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::default();
        let fs = FaultFs::new(RealFs, faults.clone());
        let path = dir.path().join("example_com");
        let (file, _) = fs.open_append(&path, 0o600).unwrap();
        faults.begin_request(Some(Plan {
            call: 1,
            failure: Failure::NoSpace,
        }));
        fs.fstat(&file).unwrap();
        let first = fs.write(&file, b"A1\n").unwrap_err();
        assert_eq!(errno(&first), rustix::io::Errno::NOSPC.raw_os_error());
        assert!(fs.write(&file, b"A1\n").is_err());
        assert!(fs.fstat(&file).is_ok());
        assert_eq!(
            faults.calls(),
            vec![Call::Fstat, Call::Write, Call::Write, Call::Fstat]
        );
        assert!(!faults.crashed());
    }

    #[test]
    fn after_a_crash_every_call_fails_and_nothing_reaches_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::default();
        let fs = FaultFs::new(RealFs, faults.clone());
        faults.begin_request(Some(Plan {
            call: 0,
            failure: Failure::Crash,
        }));
        assert!(fs.stat(dir.path()).is_err());
        assert!(fs.list_dir(dir.path()).is_err());
        assert!(faults.crashed());

        let mut client = MemoryConnection::new(b"");
        DyingConnection::new(&mut client, faults.clone())
            .write_all(b"status\x000\0\0")
            .unwrap();
        assert!(client.output.is_empty());
        let sink = RecordingSink::default();
        DyingSink::new(sink.clone(), faults.clone()).send(Trigger::ScanIncoming);
        assert!(sink.take().is_empty());

        faults.begin_request(None);
        assert!(fs.stat(dir.path()).is_ok());
    }

    #[test]
    fn each_operation_has_its_own_failures() {
        assert_eq!(
            Failure::for_op(Call::OpenAppend.op()),
            &[Failure::Denied, Failure::Crash]
        );
        assert_eq!(
            Failure::for_op(Call::Rename.op()),
            &[Failure::Io, Failure::Crash]
        );
        assert_eq!(Failure::for_op(Call::Lock.op()), &[Failure::Crash]);
    }
}
