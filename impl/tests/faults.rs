//! What a failing file operation does: the fatal ones end the connection
//! without a reply and leave what was done; the others are warnings, except
//! where the strict profile departs (a failed add write answers FAIL, a
//! queue file that could not be moved stays listed in its logfile).

mod common;

use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::sync::Mutex;

use common::*;
use flushbed_impl::fs::{FileSystem, Metadata};
use flushbed_impl::RealFs;
use flushbed_vocab::wire::{add_request, refresh_request, send_site_request};
use flushbed_vocab::{Profile, QueueName, Time, Trigger};
use rustix::fd::OwnedFd;

/// Something another process does while the server waits for a lock.
type Meanwhile = Box<dyn FnOnce() + Send>;

/// The real file system, with chosen operations failing (`EIO`, or
/// `EACCES` for opens), and something that can happen just before the
/// next lock is granted.
#[derive(Default)]
struct Faulty {
    failing: Mutex<HashSet<&'static str>>,
    before_lock: Mutex<Option<Meanwhile>>,
}

impl Faulty {
    fn before_next_lock(&self, meanwhile: impl FnOnce() + Send + 'static) {
        *self.before_lock.lock().unwrap() = Some(Box::new(meanwhile));
    }

    fn fail(&self, op: &'static str) {
        self.failing.lock().unwrap().insert(op);
    }

    fn check(&self, op: &'static str) -> io::Result<()> {
        if self.failing.lock().unwrap().contains(op) {
            let errno = if op.starts_with("open") {
                libc_eacces()
            } else {
                libc_eio()
            };
            return Err(io::Error::from_raw_os_error(errno));
        }
        Ok(())
    }
}

fn libc_eio() -> i32 {
    rustix::io::Errno::IO.raw_os_error()
}

fn libc_eacces() -> i32 {
    rustix::io::Errno::ACCESS.raw_os_error()
}

impl FileSystem for Faulty {
    type File = OwnedFd;

    fn open_append(&self, path: &Path, mode: u32) -> io::Result<(OwnedFd, bool)> {
        self.check("open_append")?;
        RealFs.open_append(path, mode)
    }
    fn open_read_write(&self, path: &Path) -> io::Result<OwnedFd> {
        self.check("open_read_write")?;
        RealFs.open_read_write(path)
    }
    fn open_queue_file(&self, path: &Path) -> io::Result<(OwnedFd, Metadata)> {
        self.check("open_queue_file")?;
        RealFs.open_queue_file(path)
    }
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        RealFs.read_file(path)
    }
    fn lock_exclusive(&self, file: &OwnedFd) -> io::Result<()> {
        self.check("lock")?;
        let meanwhile = self.before_lock.lock().unwrap().take();
        if let Some(meanwhile) = meanwhile {
            meanwhile();
        }
        RealFs.lock_exclusive(file)
    }
    fn unlock(&self, file: &OwnedFd) -> io::Result<()> {
        self.check("unlock")?;
        RealFs.unlock(file)
    }
    fn read(&self, file: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
        RealFs.read(file, buf)
    }
    fn write(&self, file: &OwnedFd, buf: &[u8]) -> io::Result<usize> {
        self.check("write")?;
        RealFs.write(file, buf)
    }
    fn write_at(&self, file: &OwnedFd, offset: u64, buf: &[u8]) -> io::Result<usize> {
        RealFs.write_at(file, offset, buf)
    }
    fn truncate(&self, file: &OwnedFd, len: u64) -> io::Result<()> {
        self.check("truncate")?;
        RealFs.truncate(file, len)
    }
    fn fstat(&self, file: &OwnedFd) -> io::Result<Metadata> {
        RealFs.fstat(file)
    }
    fn fchmod(&self, file: &OwnedFd, mode: u32) -> io::Result<()> {
        RealFs.fchmod(file, mode)
    }
    fn close(&self, file: OwnedFd) -> io::Result<()> {
        RealFs.close(file)
    }
    fn stat(&self, path: &Path) -> io::Result<Metadata> {
        RealFs.stat(path)
    }
    fn set_times(&self, path: &Path, atime: Time, mtime: Time) -> io::Result<()> {
        if path.starts_with_flush() {
            self.check("set_logfile_times")?;
        }
        RealFs.set_times(path, atime, mtime)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check("rename")?;
        RealFs.rename(from, to)
    }
    fn unlink(&self, path: &Path) -> io::Result<()> {
        RealFs.unlink(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        RealFs.list_dir(path)
    }
    fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()> {
        RealFs.mkdir(path, mode)
    }
}

trait InFlush {
    fn starts_with_flush(&self) -> bool;
}

impl InFlush for Path {
    fn starts_with_flush(&self) -> bool {
        self.components().any(|c| c.as_os_str() == "flush")
    }
}

const DOMAINS: &str = "fast_flush_domains = example.com\n";

fn bed(profile: Profile) -> Bed<Faulty> {
    Bed::with_fs(Faulty::default(), DOMAINS, profile)
}

#[test]
fn a_lock_failure_on_add_is_fatal_and_unanswered() {
    let bed = bed(Profile::Postfix);
    bed.service.fs().fail("lock");
    let out = bed.request(&add_request(b"example.com", b"A1"), T0);
    assert!(out.died);
    assert!(out.reply.is_empty());
    assert_eq!(bed.logfile("example_com").unwrap(), b"");
}

#[test]
fn an_open_failure_other_than_not_found_is_fatal_on_send() {
    let bed = bed(Profile::Strict);
    bed.write_logfile("example_com", b"A1\n", T0, T0);
    bed.service.fs().fail("open_read_write");
    let out = bed.request(&send_site_request(b"example.com"), T0);
    assert!(out.died);
    assert!(out.reply.is_empty());
    assert!(out.triggers.is_empty());
}

#[test]
fn a_truncate_failure_is_fatal_and_the_moves_made_stay_made() {
    let bed = bed(Profile::Postfix);
    bed.plant("A1", QueueName::Deferred, 0o700, T0);
    bed.write_logfile("example_com", b"A1\n", T0, T0);
    bed.service.fs().fail("truncate");
    let out = bed.request(&send_site_request(b"example.com"), T0 + 1);
    assert!(out.died);
    assert!(out.reply.is_empty());
    assert_eq!(out.triggers, vec![Trigger::FlushDead]);
    assert_eq!(bed.find("A1").unwrap(), "incoming/A1");
    assert_eq!(bed.logfile("example_com").unwrap(), b"A1\n");
}

#[test]
fn an_unlock_failure_after_add_is_fatal_but_the_line_is_written() {
    let bed = bed(Profile::Strict);
    bed.service.fs().fail("unlock");
    let out = bed.request(&add_request(b"example.com", b"A1"), T0);
    assert!(out.died);
    assert!(out.reply.is_empty());
    assert_eq!(bed.logfile("example_com").unwrap(), b"A1\n");
}

#[test]
fn a_failed_add_write_answers_ok_under_postfix_and_fail_under_strict() {
    for (profile, code) in [(Profile::Postfix, OK), (Profile::Strict, FAIL)] {
        let bed = bed(profile);
        bed.service.fs().fail("write");
        let out = bed.request(&add_request(b"example.com", b"A1"), T0);
        assert!(!out.died);
        assert_eq!(out.reply, status(code), "{profile:?}");
    }
}

#[test]
fn a_failed_rename_loses_the_line_under_postfix_and_keeps_it_under_strict() {
    for (profile, kept) in [
        (Profile::Postfix, &b""[..]),
        (Profile::Strict, &b"A1\n"[..]),
    ] {
        let bed = bed(profile);
        bed.plant("A1", QueueName::Deferred, 0o700, T0);
        bed.plant("B2", QueueName::Incoming, 0o700, T0);
        bed.write_logfile("example_com", b"A1\nB2\n", T0, T0);
        bed.service.fs().fail("rename");
        let out = bed.request(&send_site_request(b"example.com"), T0 + 1);
        assert_eq!(out.reply, status(OK));
        assert_eq!(
            out.triggers,
            vec![Trigger::FlushDead, Trigger::ScanIncoming]
        );
        assert_eq!(bed.find("A1").unwrap(), "deferred/A/A1");
        assert_eq!(times(&bed.queue_dir().join("deferred/A/A1")).0, T0 + 1);
        assert_eq!(bed.logfile("example_com").unwrap(), kept, "{profile:?}");
        assert_eq!(times(&bed.logfile_path("example_com")).1, T0 + 1);
    }
}

#[test]
fn a_failed_logfile_time_reset_changes_no_answer() {
    let bed = bed(Profile::Postfix);
    bed.write_logfile("example_com", b"A1\n", T0 - 60, T0 - 60);
    bed.service.fs().fail("set_logfile_times");
    let out = bed.request(&send_site_request(b"example.com"), T0);
    assert_eq!(out.reply, status(OK));
    assert!(!out.died);
    assert_eq!(bed.logfile("example_com").unwrap(), b"");
}

#[test]
fn an_add_whose_logfile_is_removed_before_its_lock_is_lost_under_postfix_only() {
    for (profile, kept) in [
        (Profile::Postfix, None),
        (Profile::Strict, Some(&b"A1\n"[..])),
    ] {
        let bed = bed(profile);
        bed.write_logfile("example_com", b"", T0 - 1000, T0 - 1000);
        let path = bed.logfile_path("example_com");
        bed.service
            .fs()
            .before_next_lock(move || std::fs::remove_file(path).unwrap());
        let out = bed.request(&add_request(b"example.com", b"A1"), T0);
        assert_eq!(out.reply, status(OK));
        assert_eq!(bed.logfile("example_com").as_deref(), kept, "{profile:?}");
    }
}

#[test]
fn strict_refresh_keeps_an_empty_logfile_written_to_before_its_lock() {
    let main_cf = "fast_flush_domains = example.com\nfast_flush_purge_time = 180s\n";
    for (profile, kept) in [
        (Profile::Postfix, None),
        (Profile::Strict, Some(&b"A1\n"[..])),
    ] {
        let bed = Bed::with_fs(Faulty::default(), main_cf, profile);
        bed.write_logfile("example_com", b"", T0 - 1000, T0 - 1000);
        let path = bed.logfile_path("example_com");
        bed.service
            .fs()
            .before_next_lock(move || std::fs::write(path, b"A1\n").unwrap());

        // Under postfix there is no lock to wait for: the file goes at once
        // and the hook never runs.
        let out = bed.request(&refresh_request(), T0);
        assert_eq!(out.reply, status(OK));
        assert_eq!(bed.logfile("example_com").as_deref(), kept, "{profile:?}");
    }
}

#[test]
fn strict_refresh_keeps_a_logfile_replaced_before_its_lock() {
    let main_cf = "fast_flush_domains = example.com\nfast_flush_purge_time = 180s\n";
    let bed = Bed::with_fs(Faulty::default(), main_cf, Profile::Strict);
    bed.write_logfile("example_com", b"", T0 - 1000, T0 - 1000);
    let path = bed.logfile_path("example_com");
    let spare = bed.dir.path().join("spare");
    std::fs::write(&spare, b"").unwrap();
    bed.service
        .fs()
        .before_next_lock(move || std::fs::rename(spare, path).unwrap());
    bed.request(&refresh_request(), T0);
    assert_eq!(bed.logfile("example_com").unwrap(), b"");
}
