//! The flush server's rules: one connection, one request.
//!
//! - **add** appends a queue ID to its site's logfile, under the lock.
//! - **send_site** sends the queue manager `F`, then for each queue ID in
//!   the site's logfile sets the queue file's times to now and moves it
//!   from `deferred/` into `incoming/`; truncates the logfile when a line
//!   was read, sets its times, and sends `I`. The lock is held from before
//!   `F` through the truncation and the time reset.
//! - **send_file** does the same for one queue ID, the "unthrottle after"
//!   way: only a ready queue file, which gets the group-read bit.
//! - **refresh** (`rfrsh`, or the master's wakeup) and **purge** answer
//!   first, then walk `flush/`: an old empty logfile is deleted, a
//!   non-empty one not read for the refresh time (0 for purge) is sent,
//!   without `F`.
//!
//! The checks of add and send_site come in Postfix's order: the queue ID's
//! syntax (BAD), eligibility (DENY, or FAIL on a table error), the ASCII
//! form (DENY), the logfile name (BAD).
//!
//! Every time comes from the injected [`Clock`], read once when the
//! request starts, and every time the rules change is set explicitly, in
//! whole seconds: the kernel's own clock is never the one that counts.
//!
//! A failure to open (other than "does not exist"), lock, truncate or
//! unlock a logfile is fatal, as in Postfix: the connection ends with
//! [`ConnectionEnd::Fatal`] and no reply, and what was already done stays
//! done. Any other failure is a warning.
//!
//! The `strict` profile departs from Postfix where Postfix loses data or
//! dies (`docs/DEPARTURES.md`): a one-letter logfile does not end the
//! refresh scan; a failed write of an add answers FAIL; a pass that could
//! not move a queue file out of `deferred/` leaves its logfile as it was;
//! refresh deletes an empty logfile only under its lock, when it is still
//! empty, old and the file the name points to, and add checks after
//! locking that its logfile is still linked; attribute sizes and the wait
//! for input are bounded.

#[cfg(feature = "planted-bugs")]
use std::collections::BTreeSet;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flushbed_vocab::{FlushConfig, Profile, QueueName, Status, Time, Trigger};
use thiserror::Error;
use tracing::{debug, error, info, warn};

#[cfg(feature = "planted-bugs")]
use crate::bugs::PlantedBug;
use crate::domain_list::{DomainList, Eligibility};
use crate::fs::{self, is_not_found, FileSystem, Metadata, RealFs};
use crate::names::{logfile_name, queue_id_ok, site_to_ascii};
use crate::protocol::{self, Limits, Received, Request};
use crate::spool::{Spool, DEFERRED, FLUSH, INCOMING, QUEUE_DIRECTORIES};
use crate::{Clock, Connection, TriggerSink};

/// A failure to start the service.
#[derive(Debug, Error)]
pub enum ServiceError {
    #[error("{0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How a connection ended.
#[derive(Debug)]
pub enum ConnectionEnd {
    /// The request was handled (replied to, or closed without a reply where
    /// the protocol says so).
    Done,
    /// A fatal error: under the `postfix` profile the server process dies
    /// here; the caller must treat the service as restarted.
    Fatal(String),
}

/// The mode of a logfile the server creates.
pub const LOGFILE_MODE: u32 = 0o600;
/// Owner read, write and execute: the queue file is ready.
pub const QUEUE_FILE_READY: u32 = 0o700;
/// Group read: the queue manager unthrottles as it reads the file.
pub const QUEUE_FILE_UNTHROTTLE: u32 = 0o040;
/// How often `strict` add reopens a logfile that was deleted between its
/// open and its lock before it gives up.
const STRICT_RELINK_ATTEMPTS: usize = 100;
/// How much of a bad logfile line a warning shows.
const BAD_LINE_SHOWN: usize = 30;

/// Whether a planted bug is active; always false without the feature.
#[cfg(feature = "planted-bugs")]
macro_rules! planted {
    ($service:expr, $bug:ident) => {
        $service.planted.contains(&PlantedBug::$bug)
    };
}
#[cfg(not(feature = "planted-bugs"))]
macro_rules! planted {
    ($service:expr, $bug:ident) => {
        false
    };
}

/// Why a request could not go on: the server process would die here.
#[derive(Debug)]
struct Fatal(String);

/// How a send treats the queue manager's throttles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// refresh: only move the mail.
    RefreshOnly,
    /// send_site: `F` first, then move the mail.
    UnthrottleBefore,
    /// send_file: move only a ready file, and mark it for unthrottling.
    UnthrottleAfter,
}

/// What became of one queue ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moved {
    /// No queue file was found (or it is not ready): nothing was done.
    Nothing,
    /// Its times were set, and it is in `incoming/` (or its move failed
    /// because it had gone).
    Done,
    /// It may still be in `deferred/`: its times or its move failed.
    Stuck,
}

/// A flush server over one spool.
pub struct FlushService<F: FileSystem = RealFs> {
    fs: F,
    spool: Spool,
    domains: DomainList,
    profile: Profile,
    clock: Arc<dyn Clock>,
    triggers: Arc<dyn TriggerSink>,
    refresh_time: i64,
    purge_time: i64,
    #[cfg(feature = "planted-bugs")]
    planted: BTreeSet<PlantedBug>,
}

impl FlushService<RealFs> {
    /// A service over `config.queue_directory`, reading `/file` patterns
    /// and tables from the real file system.
    pub fn new(
        config: &FlushConfig,
        profile: Profile,
        clock: Arc<dyn Clock>,
        triggers: Arc<dyn TriggerSink>,
    ) -> Result<FlushService, ServiceError> {
        FlushService::with_fs(RealFs, config, profile, clock, triggers)
    }
}

impl<F: FileSystem> FlushService<F> {
    /// A service whose every file operation goes through `fs`. Makes the
    /// spool's directories that are missing; reads `fast_flush_domains`'
    /// files and tables once, now.
    pub fn with_fs(
        fs: F,
        config: &FlushConfig,
        profile: Profile,
        clock: Arc<dyn Clock>,
        triggers: Arc<dyn TriggerSink>,
    ) -> Result<FlushService<F>, ServiceError> {
        let spool = Spool::new(config);
        make_spool_directories(&fs, &spool)?;
        let domains = DomainList::new(
            &fs,
            &config.fast_flush_domains,
            config.fast_flush_parent_style(),
            config.smtputf8_enable,
        )
        .map_err(|e| ServiceError::Config(e.to_string()))?;
        Ok(FlushService {
            fs,
            spool,
            domains,
            profile,
            clock,
            triggers,
            refresh_time: config.fast_flush_refresh_time,
            purge_time: config.fast_flush_purge_time,
            #[cfg(feature = "planted-bugs")]
            planted: BTreeSet::new(),
        })
    }

    /// The spool's layout.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// The profile the service runs in.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The file system the service works through.
    pub fn fs(&self) -> &F {
        &self.fs
    }

    /// Makes one rule wrong on purpose, for proving the checkers.
    #[cfg(feature = "planted-bugs")]
    pub fn plant_bug(&mut self, bug: PlantedBug) {
        self.planted.insert(bug);
    }

    fn strict(&self) -> bool {
        self.profile == Profile::Strict
    }

    fn limits(&self) -> Limits {
        match self.profile {
            Profile::Postfix => Limits::postfix(),
            Profile::Strict => Limits::strict(),
        }
    }

    /// Serves one connection: announce, read one request, act, reply.
    pub fn serve_connection(&self, conn: &mut dyn Connection) -> ConnectionEnd {
        let now = self.clock.now();

        if let Err(e) = conn.write_all(protocol::ANNOUNCEMENT) {
            warn!(error = %e, "client: cannot announce the protocol");
        }

        let (received, channel) = protocol::receive(conn, self.limits());
        let request = match received {
            Received::Request(request) => request,
            Received::Bad => {
                self.reply(conn, channel, Status::Bad);
                return ConnectionEnd::Done;
            }
            Received::Unknown(name) => {
                warn!(
                    request = %String::from_utf8_lossy(&name),
                    "unknown request, connection closed without a reply"
                );
                return ConnectionEnd::Done;
            }
        };

        let outcome = match request {
            Request::Add { site, queue_id } => self.add_service(now, &site, &queue_id),
            Request::SendSite { site } => self.send_site_service(now, &site),
            Request::SendFile { queue_id } => self.send_file_service(now, &queue_id),
            Request::Refresh | Request::Purge => {
                // The client hears OK before the work starts.
                self.reply(conn, channel, Status::Ok);
                let max_age = if request == Request::Refresh {
                    self.refresh_time
                } else {
                    0
                };
                return match self.refresh_service(now, max_age) {
                    Ok(()) => ConnectionEnd::Done,
                    Err(Fatal(why)) => {
                        error!(error = %why, "fatal error after the reply");
                        ConnectionEnd::Fatal(why)
                    }
                };
            }
        };
        match outcome {
            Ok(status) => {
                self.reply(conn, channel, status);
                ConnectionEnd::Done
            }
            Err(Fatal(why)) => {
                error!(error = %why, "fatal error, no reply");
                ConnectionEnd::Fatal(why)
            }
        }
    }

    fn reply(&self, conn: &mut dyn Connection, channel: protocol::Channel, status: Status) {
        let mut bytes = channel.reply(status.code());
        if planted!(self, FailWrittenSigned) && status == Status::Fail {
            bytes = b"status\0-1\0\0".to_vec();
        }
        if bytes.is_empty() {
            debug!(
                status = status.name(),
                "client: a read failed, reply not written"
            );
            return;
        }
        if let Err(e) = conn.write_all(&bytes) {
            warn!(status = status.name(), error = %e, "client: cannot write the reply");
        }
    }

    /// DENY or FAIL when the site may not have a logfile.
    fn ineligible(&self, site: &[u8]) -> Option<Status> {
        match self.domains.matches(site) {
            Eligibility::Eligible => None,
            Eligibility::NotEligible => Some(Status::Deny),
            Eligibility::TableError(_) if planted!(self, DenyOnTableError) => Some(Status::Deny),
            Eligibility::TableError(_) => Some(Status::Fail),
        }
    }

    /// The logfile name of a site, or `None` (DENY) when it has no ASCII
    /// form.
    fn site_logfile_name(&self, site: &[u8]) -> Option<String> {
        match site_to_ascii(site) {
            Ok(ascii) => {
                if planted!(self, CaseSensitiveLogfileNames) && site.is_ascii() {
                    let keep_case = |b: u8| {
                        if b.is_ascii_alphanumeric() {
                            b as char
                        } else {
                            '_'
                        }
                    };
                    return Some(site.iter().map(|&b| keep_case(b)).collect());
                }
                Some(logfile_name(&ascii))
            }
            Err(e) => {
                warn!(site = %String::from_utf8_lossy(site), error = %e, "cannot convert site to ASCII form");
                None
            }
        }
    }

    /// The path of a queue file in a queue.
    fn queue_path(&self, queue: &str, queue_id: &str) -> PathBuf {
        #[cfg(feature = "planted-bugs")]
        if planted!(self, WrongHashDirectory) {
            return self.spool.misdirected_path(queue, queue_id);
        }
        self.spool.path(queue, queue_id)
    }

    // ----- add -------------------------------------------------------------

    fn add_service(&self, now: Time, site: &[u8], queue_id: &[u8]) -> Result<Status, Fatal> {
        if !queue_id_ok(queue_id) {
            return Ok(Status::Bad);
        }
        if let Some(status) = self.ineligible(site) {
            return Ok(status);
        }
        let Some(name) = self.site_logfile_name(site) else {
            return Ok(Status::Deny);
        };
        if !queue_id_ok(name.as_bytes()) {
            return Ok(Status::Bad);
        }
        let queue_id = String::from_utf8_lossy(queue_id);
        self.add_path(now, &name, &queue_id)
    }

    fn add_path(&self, now: Time, name: &str, queue_id: &str) -> Result<Status, Fatal> {
        let path = self.spool.path(FLUSH, name);

        // The lock keeps appends from interleaving with a send's truncation.
        let mut attempts = 0;
        let (file, created) = loop {
            let (file, created) = self
                .open_logfile_for_append(&path)
                .map_err(|e| Fatal(format!("open fast flush logfile {name}: {e}")))?;
            self.fs
                .lock_exclusive(&file)
                .map_err(|e| Fatal(format!("lock fast flush logfile {name}: {e}")))?;

            // A refresh may have deleted the logfile between the open and
            // the lock; a line appended to it now would be lost.
            if self.strict() {
                if let Ok(held) = self.fs.fstat(&file) {
                    if held.nlink == 0 {
                        attempts += 1;
                        self.unlock(&file, name)?;
                        let _ = self.fs.close(file);
                        if attempts >= STRICT_RELINK_ATTEMPTS {
                            return Err(Fatal(format!(
                                "fast flush logfile {name} keeps vanishing"
                            )));
                        }
                        debug!(
                            logfile = name,
                            "logfile deleted before it was locked, reopened"
                        );
                        continue;
                    }
                }
            }
            break (file, created);
        };

        // A new logfile was first read now; an old one keeps its atime.
        let atime = if created {
            Some(now)
        } else {
            match self.fs.fstat(&file) {
                Ok(held) => Some(held.atime),
                Err(e) => {
                    warn!(logfile = name, error = %e, "cannot stat fast flush logfile");
                    None
                }
            }
        };

        let line = format!("{queue_id}\n");
        let written = fs::write_all(&self.fs, &file, line.as_bytes());

        // The request's clock goes on what changed: the mtime of a written
        // logfile, both times of a new one, written or not.
        let mtime = match (&written, created) {
            (Ok(()), _) => Some(now),
            (Err(_), true) => Some(now),
            (Err(_), false) => None,
        };
        if let (Some(atime), Some(mtime)) = (atime, mtime) {
            if !planted!(self, NoMtimeOnAdd) {
                if let Err(e) = self.fs.set_times(&path, atime, mtime) {
                    warn!(logfile = name, error = %e, "cannot set fast flush logfile times");
                }
            }
        }

        let status = match written {
            Ok(()) => Status::Ok,
            Err(e) => {
                warn!(logfile = name, queue_id, error = %e, "write fast flush logfile");
                if self.strict() {
                    Status::Fail
                } else {
                    Status::Ok
                }
            }
        };

        self.unlock(&file, name)?;
        if let Err(e) = self.fs.close(file) {
            warn!(logfile = name, error = %e, "write fast flush logfile");
        }
        Ok(status)
    }

    fn open_logfile_for_append(&self, path: &Path) -> io::Result<(F::File, bool)> {
        match self.fs.open_append(path, LOGFILE_MODE) {
            Err(e) if is_not_found(&e) => {
                // A hashed flush/ may lack the logfile's hash directory.
                if let Some(dir) = path.parent() {
                    self.spool.make_dirs(&self.fs, dir)?;
                }
                self.fs.open_append(path, LOGFILE_MODE)
            }
            other => other,
        }
    }

    fn unlock(&self, file: &F::File, name: &str) -> Result<(), Fatal> {
        self.fs
            .unlock(file)
            .map_err(|e| Fatal(format!("unlock fast flush logfile {name}: {e}")))
    }

    // ----- send_site, send_file ---------------------------------------------

    fn send_site_service(&self, now: Time, site: &[u8]) -> Result<Status, Fatal> {
        if let Some(status) = self.ineligible(site) {
            return Ok(status);
        }
        let Some(name) = self.site_logfile_name(site) else {
            return Ok(Status::Deny);
        };
        self.send_path(now, &name, How::UnthrottleBefore)
    }

    fn send_file_service(&self, now: Time, queue_id: &[u8]) -> Result<Status, Fatal> {
        if !queue_id_ok(queue_id) {
            return Ok(Status::Bad);
        }
        let queue_id = String::from_utf8_lossy(queue_id);
        if self.flush_one_file(now, &queue_id, How::UnthrottleAfter) != Moved::Nothing {
            self.triggers.send(Trigger::ScanIncoming);
        }
        Ok(Status::Ok)
    }

    /// Sends what one logfile lists.
    fn send_path(&self, now: Time, name: &str, how: How) -> Result<Status, Fatal> {
        if !queue_id_ok(name.as_bytes()) {
            return Ok(Status::Bad);
        }
        let path = self.spool.path(FLUSH, name);

        // No logfile: no mail queued for this site.
        let file = match self.fs.open_read_write(&path) {
            Ok(file) => file,
            Err(e) if is_not_found(&e) => return Ok(Status::Ok),
            Err(e) => return Err(Fatal(format!("open fast flush logfile {name}: {e}"))),
        };

        // Locked from before F through the truncation, so that an add made
        // meanwhile is neither lost nor sent twice.
        self.fs
            .lock_exclusive(&file)
            .map_err(|e| Fatal(format!("lock fast flush logfile {name}: {e}")))?;

        // The queue manager forgets dead destinations before the mail moves.
        if how == How::UnthrottleBefore && !planted!(self, NoFlushDeadTrigger) {
            self.triggers.send(Trigger::FlushDead);
        }

        let (content, read_error) = fs::read_to_end(&self.fs, &file);
        if let Some(e) = read_error {
            warn!(logfile = name, error = %e, "read fast flush logfile");
        }

        // Postfix 3.7's duplicate filter never fires (it stores a null
        // value and then looks for a non-null one), so every line is acted
        // on, duplicates included.
        let mut lines_read = 0usize;
        let mut stuck = 0usize;
        for line in logfile_lines(&content) {
            let queue_id = line.split(|&b| b == 0).next().unwrap_or_default();
            if !queue_id_ok(queue_id) {
                let shown = &queue_id[..queue_id.len().min(BAD_LINE_SHOWN)];
                warn!(
                    logfile = name,
                    line = %String::from_utf8_lossy(shown).escape_debug(),
                    "bad queue id in fast flush logfile, skipped"
                );
                if !planted!(self, BadLineNotCounted) {
                    lines_read += 1;
                }
                continue;
            }
            lines_read += 1;

            let queue_id = String::from_utf8_lossy(queue_id);
            debug!(logfile = name, queue_id = %queue_id, "update queue file time stamps");
            if self.flush_one_file(now, &queue_id, how) == Moved::Stuck {
                stuck += 1;
            }
        }

        // Under strict, mail left in deferred/ keeps its logfile whole: the
        // lines acted on stay as duplicates, and nothing is rewritten that a
        // crash could cut short.
        let keep = stuck > 0 && self.strict();
        if keep {
            warn!(
                logfile = name,
                stuck, "queue files left in deferred, fast flush logfile kept"
            );
        }
        if lines_read > 0 && !keep && !planted!(self, NeverTruncate) {
            self.fs
                .truncate(&file, 0)
                .map_err(|e| Fatal(format!("truncate fast flush logfile {name}: {e}")))?;
        }

        // Postfix resets the times for noatime mounts; here it is also
        // what puts the request's clock on the file.
        if !planted!(self, NoLogfileTimesAfterSend) {
            if let Err(e) = self.fs.set_times(&path, now, now) {
                debug!(logfile = name, error = %e, "cannot set fast flush logfile times");
            }
        }

        self.unlock(&file, name)?;
        if let Err(e) = self.fs.close(file) {
            warn!(logfile = name, error = %e, "read fast flush logfile");
        }
        if lines_read > 0 || planted!(self, ScanIncomingWithoutLines) {
            info!(logfile = name, lines = lines_read, "requesting delivery");
            self.triggers.send(Trigger::ScanIncoming);
        }
        Ok(Status::Ok)
    }

    /// Schedules one queue file: times to now, looked for in `deferred/`
    /// and then `incoming/` (another send may just have moved it); for
    /// send_file, only a ready file, marked for unthrottling; then moved
    /// into `incoming/`.
    fn flush_one_file(&self, now: Time, queue_id: &str, how: How) -> Moved {
        let mut queue = DEFERRED;
        let mut path = self.queue_path(queue, queue_id);
        loop {
            match self.fs.set_times(&path, now, now) {
                Ok(()) => break,
                Err(e) => {
                    if !is_not_found(&e) {
                        warn!(queue_file = %path.display(), error = %e, "update time stamps");

                        // Postfix looks in incoming/ next and forgets the
                        // file, which may well still be in deferred/.
                        if queue == DEFERRED && self.strict() && how != How::UnthrottleAfter {
                            return Moved::Stuck;
                        }
                    }
                    if queue == INCOMING {
                        return Moved::Nothing;
                    }
                    queue = INCOMING;
                    path = self.queue_path(queue, queue_id);
                }
            }
        }

        if how == How::UnthrottleAfter {
            let (file, held) = loop {
                match self.fs.open_queue_file(&path) {
                    Ok(opened) => break opened,
                    Err(e) => {
                        if !is_not_found(&e) {
                            warn!(queue_file = %path.display(), error = %e, "open");
                            return Moved::Nothing;
                        }
                        if queue == INCOMING {
                            return Moved::Nothing;
                        }
                        queue = INCOMING;
                        path = self.queue_path(queue, queue_id);
                    }
                }
            };
            if !is_ready(&held) && !planted!(self, SendFileIgnoresReady) {
                let _ = self.fs.close(file);
                return Moved::Nothing;
            }
            if let Err(e) = self
                .fs
                .fchmod(&file, held.permissions() | QUEUE_FILE_UNTHROTTLE)
            {
                warn!(queue_file = %path.display(), error = %e, "fchmod");
            }
            let _ = self.fs.close(file);
        }

        if queue != INCOMING && !planted!(self, NoRenameToIncoming) {
            if let Err(e) = self.rename_to_incoming(queue, queue_id) {
                if !is_not_found(&e) {
                    warn!(queue_file = %path.display(), error = %e, "rename from deferred to incoming");
                    return Moved::Stuck;
                }
            }
        }
        Moved::Done
    }

    /// Postfix's `mail_queue_rename`: a failed rename is tried once more
    /// after making the target's missing hash directories.
    fn rename_to_incoming(&self, queue: &str, queue_id: &str) -> io::Result<()> {
        let from = self.queue_path(queue, queue_id);
        let to = self.queue_path(INCOMING, queue_id);
        if self.fs.rename(&from, &to).is_ok() {
            return Ok(());
        }
        if let Some(dir) = to.parent() {
            self.spool.make_dirs(&self.fs, dir)?;
        }
        self.fs.rename(&from, &to)
    }

    // ----- refresh, purge -----------------------------------------------------

    fn refresh_service(&self, now: Time, max_age: i64) -> Result<(), Fatal> {
        let dir = self.spool.queue_dir(FLUSH);
        self.refresh_dir(now, max_age, &dir, true)
    }

    /// Walks one directory of `flush/` in directory order; a one-letter
    /// name is a hash subdirectory to Postfix.
    fn refresh_dir(&self, now: Time, max_age: i64, dir: &Path, top: bool) -> Result<(), Fatal> {
        let names = match self.fs.list_dir(dir) {
            Ok(names) => names,
            Err(e) if top || !self.strict() => {
                return Err(Fatal(format!("open directory {}: {e}", dir.display())));
            }
            Err(e) => {
                warn!(directory = %dir.display(), error = %e, "cannot scan, skipped");
                return Ok(());
            }
        };

        for entry in names {
            let name = entry.as_bytes();
            if name.len() == 1 {
                let sub = dir.join(&entry);
                if !self.strict() {
                    // The logfile of a one-letter site ends the scan here.
                    self.refresh_dir(now, max_age, &sub, false)?;
                    continue;
                }
                match self.fs.stat(&sub) {
                    Ok(meta) if meta.is_dir() => {
                        self.refresh_dir(now, max_age, &sub, false)?;
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if !is_not_found(&e) {
                            warn!(logfile = %sub.display(), error = %e, "stat");
                        }
                        continue;
                    }
                }
            }
            self.refresh_logfile(now, max_age, name)?;
        }
        Ok(())
    }

    fn refresh_logfile(&self, now: Time, max_age: i64, name: &[u8]) -> Result<(), Fatal> {
        if !queue_id_ok(name) {
            return Ok(());
        }
        let name = String::from_utf8_lossy(name);
        let path = self.spool.path(FLUSH, &name);
        let meta = match self.fs.stat(&path) {
            Ok(meta) => meta,
            Err(e) => {
                if !is_not_found(&e) {
                    warn!(logfile = %name, error = %e, "stat");
                }
                return Ok(());
            }
        };

        if meta.size == 0 {
            if self.purge_due(meta.mtime, now) {
                self.purge_logfile(now, &name, &path)?;
            } else {
                debug!(logfile = %name, "empty logfile, skipped");
            }
        } else if self.refresh_due(meta.atime, max_age, now) {
            debug!(logfile = %name, "refresh");
            self.send_path(now, &name, How::RefreshOnly)?;
        } else {
            debug!(logfile = %name, "read recently, skipped");
        }
        Ok(())
    }

    /// An empty logfile unchanged for longer than the purge time; the
    /// comparison is strict, as the real server's.
    fn purge_due(&self, mtime: Time, now: Time) -> bool {
        let deadline = mtime.saturating_add(self.purge_time);
        if planted!(self, PurgeAtBoundary) {
            return deadline <= now;
        }
        deadline < now
    }

    /// A logfile not read for longer than `max_age`.
    fn refresh_due(&self, atime: Time, max_age: i64, now: Time) -> bool {
        let deadline = atime.saturating_add(max_age);
        if planted!(self, RefreshAtBoundary) {
            return deadline <= now;
        }
        deadline < now
    }

    fn purge_logfile(&self, now: Time, name: &str, path: &Path) -> Result<(), Fatal> {
        if !self.strict() {
            match self.fs.unlink(path) {
                Ok(()) => info!(logfile = name, "empty and unchanged, removed"),
                Err(e) => warn!(logfile = name, error = %e, "remove logfile"),
            }
            return Ok(());
        }

        // An add may be between its open and its lock: remove only what is
        // still empty, still old and still the file the name points to.
        let file = match self.fs.open_read_write(path) {
            Ok(file) => file,
            Err(e) => {
                if !is_not_found(&e) {
                    warn!(logfile = name, error = %e, "cannot open logfile to remove it, kept");
                }
                return Ok(());
            }
        };
        self.fs
            .lock_exclusive(&file)
            .map_err(|e| Fatal(format!("lock fast flush logfile {name}: {e}")))?;
        let unchanged = match (self.fs.fstat(&file), self.fs.stat(path)) {
            (Ok(held), Ok(named)) => {
                held.size == 0 && held.same_file(&named) && self.purge_due(held.mtime, now)
            }
            _ => false,
        };
        if unchanged {
            match self.fs.unlink(path) {
                Ok(()) => info!(logfile = name, "empty and unchanged, removed"),
                Err(e) => warn!(logfile = name, error = %e, "remove logfile"),
            }
        } else {
            debug!(logfile = name, "logfile changed while it was locked, kept");
        }
        self.unlock(&file, name)?;
        let _ = self.fs.close(file);
        Ok(())
    }

    // ----- the environment ------------------------------------------------------

    /// Puts a queue file into a queue of this spool with the given mode and
    /// times, as a queue manager would leave it (for the simulator and for
    /// tests; not part of the flush protocol).
    pub fn plant_queue_file(
        &self,
        queue_id: &str,
        queue: QueueName,
        mode: u32,
        atime: Time,
        mtime: Time,
    ) -> std::io::Result<()> {
        if !queue_id_ok(queue_id.as_bytes()) {
            return Err(invalid_name(queue_id));
        }
        let path = self.spool.path(queue.dir(), queue_id);
        self.write_file(&path, b"", mode, atime, mtime)
    }

    /// Removes a queue file from every queue of this spool.
    pub fn remove_queue_file(&self, queue_id: &str) -> std::io::Result<()> {
        if !queue_id_ok(queue_id.as_bytes()) {
            return Err(invalid_name(queue_id));
        }
        for queue in QueueName::ALL {
            match self.fs.unlink(&self.spool.path(queue.dir(), queue_id)) {
                Err(e) if !is_not_found(&e) => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes a logfile's bytes as they are (a damaged file, for example).
    pub fn write_logfile(
        &self,
        name: &str,
        content: &[u8],
        mode: u32,
        atime: Time,
        mtime: Time,
    ) -> std::io::Result<()> {
        if !file_name_ok(name) {
            return Err(invalid_name(name));
        }
        let path = self.spool.path(FLUSH, name);
        self.write_file(&path, content, mode, atime, mtime)
    }

    /// Removes a logfile.
    pub fn remove_logfile(&self, name: &str) -> std::io::Result<()> {
        if !file_name_ok(name) {
            return Err(invalid_name(name));
        }
        match self.fs.unlink(&self.spool.path(FLUSH, name)) {
            Err(e) if !is_not_found(&e) => Err(e),
            _ => Ok(()),
        }
    }

    fn write_file(
        &self,
        path: &Path,
        content: &[u8],
        mode: u32,
        atime: Time,
        mtime: Time,
    ) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            self.spool.make_dirs(&self.fs, dir)?;
        }
        let (file, _) = self.fs.open_append(path, mode & 0o7777)?;
        self.fs.truncate(&file, 0)?;
        fs::write_all(&self.fs, &file, content)?;
        self.fs.fchmod(&file, mode)?;
        self.fs.close(file)?;
        self.fs.set_times(path, atime, mtime)
    }
}

/// Makes `queue_directory` and its queue directories where missing.
fn make_spool_directories<F: FileSystem>(fs: &F, spool: &Spool) -> Result<(), ServiceError> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ServiceError::Io { path, source }
    };
    let root = spool.root();
    if let Err(e) = fs.stat(root) {
        if !is_not_found(&e) {
            return Err(io_error(root)(e));
        }
        fs.mkdir(root, 0o755).map_err(io_error(root))?;
    }
    for (name, mode) in QUEUE_DIRECTORIES {
        let dir = spool.queue_dir(name);
        match fs.stat(&dir) {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => fs.mkdir(&dir, mode).map_err(io_error(&dir))?,
            Err(e) => return Err(io_error(&dir)(e)),
        }
    }
    Ok(())
}

/// A queue file is ready when its owner may read, write and execute it.
fn is_ready(meta: &Metadata) -> bool {
    meta.mode & QUEUE_FILE_READY == QUEUE_FILE_READY
}

/// A name an environment operation may put in a queue directory.
fn file_name_ok(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

fn invalid_name(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("bad file name \"{name}\""),
    )
}

/// The lines of a logfile as Postfix's line reader returns them: up to a
/// newline, or a last line without one; except that a last line without a
/// newline that ends in byte 0xFF is not read at all (Postfix reads the
/// last byte back as a signed char, and 0xFF is EOF on amd64).
fn logfile_lines(content: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        match rest.iter().position(|&b| b == b'\n') {
            Some(at) => {
                lines.push(&rest[..at]);
                rest = &rest[at + 1..];
            }
            None => {
                if rest.last() != Some(&0xFF) {
                    lines.push(rest);
                }
                break;
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_last_line_without_newline_still_counts() {
        assert_eq!(logfile_lines(b"A1\nB2"), vec![&b"A1"[..], &b"B2"[..]]);
        assert_eq!(logfile_lines(b"A1\n"), vec![&b"A1"[..]]);
        assert_eq!(logfile_lines(b"\n\n"), vec![&b""[..], &b""[..]]);
        assert!(logfile_lines(b"").is_empty());
    }

    #[test]
    fn a_last_line_ending_in_0xff_is_not_read() {
        assert_eq!(logfile_lines(b"A1\nB2\xff"), vec![&b"A1"[..]]);
        assert!(logfile_lines(b"\xff").is_empty());
        assert_eq!(logfile_lines(b"B2\xff\n"), vec![&b"B2\xff"[..]]);
        assert_eq!(logfile_lines(b"B2\xfe"), vec![&b"B2\xfe"[..]]);
    }

    #[test]
    fn environment_names_stay_inside_their_directory() {
        assert!(file_name_ok("example_com"));
        assert!(file_name_ok("a.b"));
        assert!(!file_name_ok("../x"));
        assert!(!file_name_ok(".."));
        assert!(!file_name_ok(""));
    }
}
