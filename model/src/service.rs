//! The flush server's requests, as `flush.c` carries them out on the model's
//! spool: `add`, `send_site`, `send_file`, refresh (`rfrsh` and the master's
//! wakeup) and `purge`, one connection at a time.
//!
//! Each function is named after the C function it states, and its steps
//! come in the same order, so the two can be read side by side. Every
//! decision leaves a [`Note`] behind. A fatal error (the server process
//! exits) is a `Died` value: nothing more is written to the client, and
//! what was already done stays done.
//!
//! Every step that changes the spool or reaches the client or the queue
//! manager is a documented [`Effect`], announced just before it happens.
//! A plain connection ignores the announcements; under a [`Recorder`]
//! ([`crate::faults`]) they are where a crash may stop the request, and
//! where a failing open, write or rename shows.

use std::collections::{BTreeMap, BTreeSet};

use flushbed_vocab::{Exchange, Profile, QueueName, Status, Time, Trigger};

use crate::domain_list::{DomainList, Verdict};
use crate::names::{c_string, logfile_name_of, mail_queue_id_ok, midna_domain_to_ascii};
use crate::profile::{Departure, Limits};
use crate::spool::{owner_may, Logfile, Spool, LOGFILE_MODE, MODE_READY, MODE_UNTHROTTLE};
use crate::wire::{
    get_line_nonl, status_reply, status_reply_after_empty_input, Input, Wanted, ANNOUNCEMENT,
    FLAG_STRICT,
};
use crate::{Note, Step};

/// The time parameters of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    /// `fast_flush_refresh_time`, seconds.
    pub refresh: i64,
    /// `fast_flush_purge_time`, seconds.
    pub purge: i64,
}

/// How a logfile or queue file is sent (`flush.c`'s `how`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// Refresh: move the mail, tell the queue manager nothing but `I`.
    RefreshOnly,
    /// `send_site`: `F` first, so dead destinations are forgotten before
    /// the mail arrives.
    UnthrottleBefore,
    /// `send_file`: only a ready file, marked to unthrottle when read.
    UnthrottleAfter,
}

/// The server process exited (`msg_fatal`).
struct Died;

/// What became of one queue ID (`flush_one_file`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moved {
    /// No queue file in `deferred/` or `incoming/`, or one not ready for
    /// send_file: nothing was done.
    Nothing,
    /// Its times were set and it is in `incoming/`.
    Done,
    /// Its times were set but the rename out of `deferred/` failed.
    Stuck,
}

/// One documented effect of a request, in the order the request makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// add opens the logfile for append, creating it (mode 0600) if need be.
    OpenForAppend(String),
    /// send opens the logfile read-write.
    OpenLogfile(String),
    /// Strict refresh opens an empty old logfile to delete it under its lock.
    OpenToDelete(String),
    /// The exclusive lock is taken.
    Lock(String),
    /// add writes `ID\n` at the logfile's end.
    Write(String),
    /// send reads the logfile's lines (the kernel may move its atime).
    ReadLogfile(String),
    /// A queue file's atime and mtime are set to the request's time.
    QueueFileTimes(String),
    /// send_file opens a queue file safely.
    OpenQueueFile(String),
    /// send_file sets a ready queue file's group-read bit.
    GroupRead(String),
    /// A queue file moves from `deferred/` to `incoming/`.
    Rename(String),
    /// The logfile is truncated to nothing.
    Truncate(String),
    /// The logfile's atime and mtime are set to the request's time.
    LogfileTimes(String),
    /// An empty old logfile is removed.
    Unlink(String),
    /// The lock is released.
    Unlock(String),
    /// A trigger goes to the queue manager.
    Trigger(Trigger),
    /// The status goes to the client.
    Reply(Status),
}

/// The file operations a fault can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// Any open of a logfile or a queue file (`EACCES`).
    Open,
    /// The write of a line (`ENOSPC`, `EIO`).
    Write,
    /// The rename of a queue file (`EIO`).
    Rename,
}

impl Effect {
    /// The operation whose failure this effect is, if a fault can fail it.
    pub fn op(&self) -> Option<Op> {
        match self {
            Effect::OpenForAppend(_)
            | Effect::OpenLogfile(_)
            | Effect::OpenToDelete(_)
            | Effect::OpenQueueFile(_) => Some(Op::Open),
            Effect::Write(_) => Some(Op::Write),
            Effect::Rename(_) => Some(Op::Rename),
            _ => None,
        }
    }
}

/// What a request looked like just before one of its effects.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub spool: Spool,
    pub exchange: Exchange,
    /// Logfiles whose times the kernel, not the rules, set last.
    pub unsettled: BTreeSet<String>,
    /// The effect about to happen.
    pub before: Effect,
}

/// Watches a request's effects: keeps a snapshot before each, and fails
/// the ones a fault plan names.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    /// From the `n`th effect of this operation on (counting from 0), every
    /// effect of it fails: a full disk stays full, a bad sector bad.
    pub plan: Option<(Op, usize)>,
    /// How many effects of each operation were announced.
    pub seen: BTreeMap<Op, usize>,
    pub snapshots: Vec<Snapshot>,
    /// Logfiles touched by an open that created them, a write, a read or a
    /// truncation, and not yet given their times by the rules.
    pub unsettled: BTreeSet<String>,
}

/// One connection to the server.
pub struct Connection<'a> {
    pub spool: &'a mut Spool,
    pub domains: &'a DomainList,
    pub times: Times,
    pub profile: Profile,
    pub now: Time,
    exchange: Exchange,
    notes: Vec<Note>,
    recorder: Option<Recorder>,
}

impl<'a> Connection<'a> {
    pub fn new(
        spool: &'a mut Spool,
        domains: &'a DomainList,
        times: Times,
        profile: Profile,
        now: Time,
    ) -> Connection<'a> {
        Connection {
            spool,
            domains,
            times,
            profile,
            now,
            exchange: Exchange::default(),
            notes: Vec::new(),
            recorder: None,
        }
    }

    /// The same connection, its effects watched by `recorder`.
    pub fn recorded(mut self, recorder: Recorder) -> Connection<'a> {
        self.recorder = Some(recorder);
        self
    }

    /// An effect is about to happen: whether it succeeds (it fails only
    /// under a fault plan that names it).
    fn effect(&mut self, effect: Effect) -> bool {
        let Some(recorder) = self.recorder.as_mut() else {
            return true;
        };
        recorder.snapshots.push(Snapshot {
            spool: self.spool.clone(),
            exchange: self.exchange.clone(),
            unsettled: recorder.unsettled.clone(),
            before: effect.clone(),
        });
        let Some(op) = effect.op() else {
            return true;
        };
        let seen = recorder.seen.entry(op).or_default();
        let index = *seen;
        *seen += 1;
        !matches!(recorder.plan, Some((failing, from)) if failing == op && index >= from)
    }

    /// The kernel, not the rules, set this logfile's times last.
    fn unsettle(&mut self, name: &str) {
        if let Some(recorder) = self.recorder.as_mut() {
            recorder.unsettled.insert(name.to_string());
        }
    }

    /// The rules have set this logfile's times.
    fn settle(&mut self, name: &str) {
        if let Some(recorder) = self.recorder.as_mut() {
            recorder.unsettled.remove(name);
        }
    }

    fn note(&mut self, rule: &'static str, text: impl Into<String>) {
        self.notes.push(Note {
            rule,
            text: text.into(),
        });
    }

    fn reply(&mut self, status: Status) {
        self.effect(Effect::Reply(status));
        self.exchange
            .output
            .extend_from_slice(&status_reply(status.code()));
    }

    fn trigger(&mut self, trigger: Trigger) {
        self.effect(Effect::Trigger(trigger));
        self.exchange.triggers.push(trigger);
    }

    /// `flush_service`: announce, read the request, carry it out, reply.
    pub fn serve(self, input: &[u8], flush_dir_order: &[String]) -> Step {
        self.serve_recorded(input, flush_dir_order).0
    }

    /// As [`Connection::serve`], handing back the recorder too.
    pub fn serve_recorded(
        mut self,
        input: &[u8],
        flush_dir_order: &[String],
    ) -> (Step, Option<Recorder>) {
        self.exchange.output.extend_from_slice(ANNOUNCEMENT);
        let limits = Limits::of(self.profile);
        let mut input = Input::bounded(input, limits.max_attribute_len);

        let request = match input.receive_request() {
            Ok(request) => request,
            Err(why) if input.was_empty() => {
                self.note(
                    "empty-input",
                    format!(
                        "{why}: BAD, written without its attribute name, as the real server does"
                    ),
                );
                let bytes = status_reply_after_empty_input(Status::Bad.code());
                self.exchange.output.extend_from_slice(&bytes);
                return self.finish();
            }
            Err(why) => {
                self.note("request", format!("{why}: BAD"));
                self.reply(Status::Bad);
                return self.finish();
            }
        };

        let outcome = match request.as_slice() {
            b"add" => self.add_request(&mut input),
            b"send_site" => self.send_site_request(&mut input),
            b"send_file" => self.send_file_request(&mut input),
            b"rfrsh" | b"W" => {
                let what = if request == b"W" {
                    "wakeup trigger"
                } else {
                    "rfrsh"
                };
                self.note(
                    "reply-before-work",
                    format!("{what}: OK is sent before the refresh"),
                );
                self.reply(Status::Ok);
                self.flush_refresh_service(self.times.refresh, flush_dir_order)
            }
            b"purge" => {
                self.note("reply-before-work", "purge: OK is sent before the work");
                self.reply(Status::Ok);
                self.flush_refresh_service(0, flush_dir_order)
            }
            other => {
                self.note(
                    "unknown-request",
                    format!(
                        "request \"{}\" is not known: the connection is closed without a reply",
                        String::from_utf8_lossy(other)
                    ),
                );
                Ok(())
            }
        };
        if outcome.is_err() {
            self.exchange.died = true;
        }
        self.finish()
    }

    fn finish(self) -> (Step, Option<Recorder>) {
        let step = Step {
            exchange: self.exchange,
            notes: self.notes,
        };
        (step, self.recorder)
    }

    /// Reads a request's own attributes; `None` (and a note) when the
    /// request is BAD for want of them.
    fn scan_attributes(
        &mut self,
        input: &mut Input<'_>,
        request: &str,
        wanted: &[Wanted<'_>],
    ) -> Option<Vec<Vec<u8>>> {
        let scan = input.attr_scan(FLAG_STRICT, wanted);
        if scan.result != wanted.len() as i32 {
            self.note("attributes", format!("{request}: {}: BAD", scan.why));
            return None;
        }
        if scan.why.starts_with("unexpected attribute") {
            self.note(
                "extra-attribute",
                format!(
                    "{request}: {}: logged, the request is carried out",
                    scan.why
                ),
            );
        }
        Some(
            (0..wanted.len())
                .map(|i| scan.string(i).unwrap_or_default().to_vec())
                .collect(),
        )
    }

    fn add_request(&mut self, input: &mut Input<'_>) -> Result<(), Died> {
        let wanted = [Wanted::Str("site"), Wanted::Str("queue_id")];
        let Some(values) = self.scan_attributes(input, "add", &wanted) else {
            self.reply(Status::Bad);
            return Ok(());
        };
        let (site, queue_id) = (&values[0], &values[1]);
        if !mail_queue_id_ok(queue_id) {
            self.note(
                "queue-id-syntax",
                format!("{}: not a queue ID: BAD", show(queue_id)),
            );
            self.reply(Status::Bad);
            return Ok(());
        }
        let status = self.flush_add_service(site, queue_id)?;
        self.reply(status);
        Ok(())
    }

    fn send_site_request(&mut self, input: &mut Input<'_>) -> Result<(), Died> {
        let Some(values) = self.scan_attributes(input, "send_site", &[Wanted::Str("site")]) else {
            self.reply(Status::Bad);
            return Ok(());
        };
        let status = self.flush_send_service(&values[0], How::UnthrottleBefore)?;
        self.reply(status);
        Ok(())
    }

    fn send_file_request(&mut self, input: &mut Input<'_>) -> Result<(), Died> {
        let Some(values) = self.scan_attributes(input, "send_file", &[Wanted::Str("queue_id")])
        else {
            self.reply(Status::Bad);
            return Ok(());
        };
        let status = self.flush_send_file_service(&values[0]);
        self.reply(status);
        Ok(())
    }

    /// `domain_list_match` on `fast_flush_domains`: `None` when eligible,
    /// else the status to answer.
    fn eligibility(&mut self, site: &[u8]) -> Option<Status> {
        match self.domains.matches(site) {
            Verdict::Eligible(text) => {
                self.note("eligibility", text);
                None
            }
            Verdict::NotEligible(text) => {
                self.note("eligibility", format!("{text}: DENY"));
                Some(Status::Deny)
            }
            Verdict::TableError(text) => {
                self.note("table-error", format!("{text}: FAIL"));
                Some(Status::Fail)
            }
        }
    }

    /// `flush_site_to_path`: the ASCII form, then the logfile name.
    fn flush_site_to_path(&mut self, site: &[u8]) -> Result<String, Status> {
        match midna_domain_to_ascii(site) {
            Ok(ascii) => {
                let path = logfile_name_of(&ascii);
                self.note(
                    "logfile-name",
                    format!("site {} has logfile {path}", show(site)),
                );
                Ok(path)
            }
            Err(why) => {
                self.note(
                    "ascii-form",
                    format!("site {} has no ASCII form: {why}: DENY", show(site)),
                );
                Err(Status::Deny)
            }
        }
    }

    /// `flush_add_service`.
    fn flush_add_service(&mut self, site: &[u8], queue_id: &[u8]) -> Result<Status, Died> {
        if let Some(status) = self.eligibility(site) {
            return Ok(status);
        }
        match self.flush_site_to_path(site) {
            Ok(path) => self.flush_add_path(&path, queue_id),
            Err(status) => Ok(status),
        }
    }

    /// `flush_add_path`: append `queue_id` and a newline to the logfile.
    fn flush_add_path(&mut self, path: &str, queue_id: &[u8]) -> Result<Status, Died> {
        if !mail_queue_id_ok(path.as_bytes()) {
            self.note(
                "logfile-name",
                format!("{path}: not a valid logfile name: BAD"),
            );
            return Ok(Status::Bad);
        }
        let now = self.now;
        let id = show(queue_id);

        // Open the logfile or bust.
        if !self.effect(Effect::OpenForAppend(path.to_string())) {
            self.note(
                "fault",
                format!("logfile {path} cannot be opened for append: the server dies"),
            );
            return Err(Died);
        }
        let created = match self.spool.logfiles.get(path) {
            Some(log) if !owner_may(log.mode, false, true) => {
                let mode = log.mode;
                self.note(
                    "logfile-permission",
                    format!(
                        "logfile {path} (mode {mode:04o}) cannot be opened for append: \
                         the server dies"
                    ),
                );
                return Err(Died);
            }
            Some(_) => false,
            None => {
                let log = Logfile {
                    content: Vec::new(),
                    mode: LOGFILE_MODE,
                    atime: now,
                    mtime: now,
                };
                self.spool.logfiles.insert(path.to_string(), log);
                self.unsettle(path);
                true
            }
        };

        // The lock keeps the append from landing in a send's truncation.
        self.effect(Effect::Lock(path.to_string()));
        let status = if self.effect(Effect::Write(path.to_string())) {
            if let Some(log) = self.spool.logfiles.get_mut(path) {
                log.content.extend_from_slice(queue_id);
                log.content.push(b'\n');
                log.mtime = now;
            }
            self.unsettle(path);
            let text = if created {
                format!("logfile {path} created (mode 0600) with queue ID {id}")
            } else {
                format!("queue ID {id} appended to logfile {path}; its atime is unchanged")
            };
            self.note("append", text);
            Status::Ok
        } else if Departure::FailedWriteAnsweredOk.taken(self.profile) {
            self.note(
                "failed-write",
                format!(
                    "queue ID {id} could not be written to logfile {path}: \
                     strict answers FAIL (Postfix warns and answers OK)"
                ),
            );
            Status::Fail
        } else {
            self.note(
                "failed-write",
                format!(
                    "queue ID {id} could not be written to logfile {path}: \
                     a warning, and the client is told OK"
                ),
            );
            Status::Ok
        };
        self.effect(Effect::Unlock(path.to_string()));

        // A new logfile was read and modified now; an old one was modified
        // now if the write went through.
        self.settle(path);
        Ok(status)
    }

    /// `flush_send_service`.
    fn flush_send_service(&mut self, site: &[u8], how: How) -> Result<Status, Died> {
        if let Some(status) = self.eligibility(site) {
            return Ok(status);
        }
        match self.flush_site_to_path(site) {
            Ok(path) => self.flush_send_path(&path, how),
            Err(status) => Ok(status),
        }
    }

    /// `flush_send_path`: act on every queue ID the logfile lists, then
    /// truncate it if anything was read.
    fn flush_send_path(&mut self, path: &str, how: How) -> Result<Status, Died> {
        if !mail_queue_id_ok(path.as_bytes()) {
            self.note(
                "logfile-name",
                format!("{path}: not a valid logfile name: BAD"),
            );
            return Ok(Status::Bad);
        }
        if !self.effect(Effect::OpenLogfile(path.to_string())) {
            self.note(
                "fault",
                format!("logfile {path} cannot be opened read-write: the server dies"),
            );
            return Err(Died);
        }
        let Some(log) = self.spool.logfiles.get(path) else {
            self.note(
                "logfile-missing",
                format!("no logfile {path}: no mail is listed for it: OK"),
            );
            return Ok(Status::Ok);
        };
        if !owner_may(log.mode, true, true) {
            let mode = log.mode;
            self.note(
                "logfile-permission",
                format!(
                    "logfile {path} (mode {mode:04o}) cannot be opened read-write: the server dies"
                ),
            );
            return Err(Died);
        }
        let content = log.content.clone();
        self.effect(Effect::Lock(path.to_string()));

        // Dead destinations are forgotten before the mail is moved, so that
        // the queue manager does not defer it again on sight.
        if how == How::UnthrottleBefore {
            self.trigger(Trigger::FlushDead);
        }

        self.effect(Effect::ReadLogfile(path.to_string()));
        self.unsettle(path);
        let mut count = 0usize;
        let mut stuck = 0usize;
        let mut lines = 0usize;
        let mut seen_ids = BTreeSet::new();
        let mut repeated = 0usize;
        let mut at = 0;
        while let Some((line, seen)) = get_line_nonl(&content, &mut at) {
            if !seen {
                self.note(
                    "last-line-0xff",
                    format!(
                        "logfile {path}: the last line has no newline and ends in byte 0xff, \
                         which the reader returns as end-of-file: it is not read"
                    ),
                );
                break;
            }
            lines += 1;
            count += 1;
            let queue_id = c_string(&line);
            if !mail_queue_id_ok(queue_id) {
                self.note(
                    "bad-line",
                    format!(
                        "logfile {path}, line {lines}: bad queue ID {}: skipped",
                        show(&line)
                    ),
                );
                continue;
            }
            // Postfix 3.7's duplicate filter stores 0 and looks for a
            // non-null value, so it never fires: every line is acted on.
            if !seen_ids.insert(queue_id.to_vec()) {
                repeated += 1;
            }
            let queue_id = String::from_utf8_lossy(queue_id).into_owned();
            match self.flush_one_file(&queue_id, how) {
                Moved::Nothing => {}
                Moved::Done => count += 1,
                Moved::Stuck => {
                    count += 1;
                    stuck += 1;
                }
            }
        }
        if repeated > 0 {
            self.note(
                "duplicate-filter",
                format!(
                    "logfile {path}: {repeated} repeated queue ID line(s) acted on again \
                     (the 3.7 duplicate filter never fires)"
                ),
            );
        }

        // The logfile is emptied only when something was read from it;
        // under strict, only when every queue file could be acted on.
        let now = self.now;
        let keep = stuck > 0 && Departure::FailedRenameCounted.taken(self.profile);
        if count > 0 && !keep {
            self.effect(Effect::Truncate(path.to_string()));
            if let Some(log) = self.spool.logfiles.get_mut(path) {
                log.content.clear();
            }
        }
        self.effect(Effect::LogfileTimes(path.to_string()));
        if let Some(log) = self.spool.logfiles.get_mut(path) {
            log.atime = now;
            log.mtime = now;
        }
        self.settle(path);
        if keep {
            self.note(
                "failed-rename-kept",
                format!(
                    "{stuck} queue file(s) could not be moved out of deferred: \
                     strict keeps logfile {path} as it was (Postfix truncates it)"
                ),
            );
        } else if count > 0 {
            self.note(
                "truncate-when-read",
                format!("{lines} line(s) read: logfile {path} truncated"),
            );
        } else {
            self.note(
                "truncate-when-read",
                format!("nothing read: logfile {path} not truncated"),
            );
        }
        self.note(
            "noatime-workaround",
            format!("logfile {path}: atime and mtime set to now, whatever was read"),
        );
        self.effect(Effect::Unlock(path.to_string()));

        if count > 0 {
            self.note(
                "scan-incoming",
                format!("logfile {path}: the queue manager is asked to scan incoming"),
            );
            self.trigger(Trigger::ScanIncoming);
        }
        Ok(Status::Ok)
    }

    /// `flush_one_file`: set the queue file's times (in `deferred/`, else in
    /// `incoming/`), and move it to `incoming/`.
    fn flush_one_file(&mut self, queue_id: &str, how: How) -> Moved {
        let now = self.now;
        let queue = self
            .spool
            .queue_files
            .get(queue_id)
            .map(|file| file.queue)
            .filter(|queue| matches!(queue, QueueName::Deferred | QueueName::Incoming));
        let Some(queue) = queue else {
            self.note(
                "queue-file",
                format!("queue file {queue_id} is in neither deferred nor incoming: nothing done"),
            );
            return Moved::Nothing;
        };
        self.effect(Effect::QueueFileTimes(queue_id.to_string()));
        if let Some(file) = self.spool.queue_files.get_mut(queue_id) {
            file.atime = now;
            file.mtime = now;
        }

        // Only send_file insists on a ready file, and marks it so the queue
        // manager unthrottles its destinations as it reads it.
        if how == How::UnthrottleAfter {
            if !self.effect(Effect::OpenQueueFile(queue_id.to_string())) {
                self.note(
                    "fault",
                    format!("queue file {queue_id} cannot be opened: a warning, nothing more"),
                );
                return Moved::Nothing;
            }
            let mode = self.spool.queue_files.get(queue_id).map_or(0, |f| f.mode);
            if mode & MODE_READY != MODE_READY {
                self.note(
                    "not-ready",
                    format!(
                        "queue file {queue_id} (mode {mode:04o}) is not ready: \
                         times set, nothing more"
                    ),
                );
                return Moved::Nothing;
            }
            self.effect(Effect::GroupRead(queue_id.to_string()));
            if let Some(file) = self.spool.queue_files.get_mut(queue_id) {
                file.mode |= MODE_UNTHROTTLE;
            }
        }

        if queue != QueueName::Deferred {
            self.note(
                "queue-file",
                format!("queue file {queue_id}: already in incoming, times set"),
            );
            return Moved::Done;
        }
        if !self.effect(Effect::Rename(queue_id.to_string())) {
            // Departure::FailedRenameCounted: Postfix claims success anyway.
            self.note(
                "failed-rename",
                format!(
                    "queue file {queue_id} could not be moved from deferred to incoming: \
                     a warning; it still counts as handled"
                ),
            );
            return Moved::Stuck;
        }
        if let Some(file) = self.spool.queue_files.get_mut(queue_id) {
            file.queue = QueueName::Incoming;
        }
        self.note(
            "queue-file",
            format!("queue file {queue_id}: times set, moved from deferred to incoming"),
        );
        Moved::Done
    }

    /// `flush_send_file_service`.
    fn flush_send_file_service(&mut self, queue_id: &[u8]) -> Status {
        if !mail_queue_id_ok(queue_id) {
            self.note(
                "queue-id-syntax",
                format!("{}: not a queue ID: BAD", show(queue_id)),
            );
            return Status::Bad;
        }
        let queue_id = String::from_utf8_lossy(queue_id).into_owned();
        if self.flush_one_file(&queue_id, How::UnthrottleAfter) != Moved::Nothing {
            self.trigger(Trigger::ScanIncoming);
        }
        Status::Ok
    }

    /// `flush_refresh_service`: walk `flush/` in directory order; delete old
    /// empty logfiles, send those not read within `max_age`.
    fn flush_refresh_service(&mut self, max_age: i64, order: &[String]) -> Result<(), Died> {
        let names = self.scan_order(order);
        for (index, name) in names.iter().enumerate() {
            // The scan takes a one-character name for a hash subdirectory.
            if name.len() == 1 && self.spool.logfiles.contains_key(name) {
                if Departure::OneLetterLogfile.taken(self.profile) {
                    self.note(
                        "one-letter-logfile",
                        format!("logfile {name} has a one-letter name: refreshed like any other"),
                    );
                } else {
                    let left = names.len() - index - 1;
                    self.note(
                        "one-letter-logfile",
                        format!(
                            "logfile {name} has a one-letter name: the scan takes it for a hash \
                             directory, cannot open it, and the server dies; {left} entr(ies) \
                             after it are not processed"
                        ),
                    );
                    return Err(Died);
                }
            }

            if !mail_queue_id_ok(name.as_bytes()) {
                self.note(
                    "not-a-logfile-name",
                    format!("{name}: not a logfile name: skipped"),
                );
                continue;
            }
            let Some(log) = self.spool.logfiles.get(name) else {
                continue;
            };
            let (empty, atime, mtime) = (log.content.is_empty(), log.atime, log.mtime);

            // Strict `<`: a logfile exactly at its age limit stays.
            if empty {
                let purge = self.times.purge;
                let ago = span(self.now - mtime);
                if mtime + purge < self.now {
                    if !self.purge_logfile(name) {
                        continue;
                    }
                    let text = format!(
                        "logfile {name} deleted: empty, last modified {ago} ago, purge after {}",
                        span(purge)
                    );
                    self.note("purge-time", text);
                } else {
                    self.note(
                        "purge-time",
                        format!(
                            "logfile {name} kept: empty, last modified {ago} ago, purge after {}",
                            span(purge)
                        ),
                    );
                }
            } else if atime + max_age < self.now {
                self.note(
                    "refresh-time",
                    format!(
                        "logfile {name} sent: last read {} ago, refresh after {}",
                        span(self.now - atime),
                        span(max_age)
                    ),
                );
                self.flush_send_path(name, How::RefreshOnly)?;
            } else {
                self.note(
                    "refresh-time",
                    format!(
                        "logfile {name} kept: last read {} ago, refresh after {}",
                        span(self.now - atime),
                        span(max_age)
                    ),
                );
            }
        }
        Ok(())
    }

    /// Deletes an empty old logfile; whether it is gone. Postfix unlinks it
    /// as it stands; strict (`Departure::UnlockedPurgeDelete`) first opens
    /// and locks it, so that an `add` between its open and its lock is
    /// either done before the delete or sees the file gone. One request at
    /// a time, the file is still empty and the same under the lock.
    fn purge_logfile(&mut self, name: &str) -> bool {
        if !Departure::UnlockedPurgeDelete.taken(self.profile) {
            self.effect(Effect::Unlink(name.to_string()));
            self.spool.logfiles.remove(name);
            return true;
        }
        let mode = self.spool.logfiles.get(name).map_or(0, |log| log.mode);
        if !self.effect(Effect::OpenToDelete(name.to_string())) || !owner_may(mode, true, true) {
            self.note(
                "unlocked-purge-delete",
                format!("logfile {name} cannot be opened to lock it: kept, with a warning"),
            );
            return false;
        }
        self.effect(Effect::Lock(name.to_string()));
        self.effect(Effect::Unlink(name.to_string()));
        self.spool.logfiles.remove(name);
        self.effect(Effect::Unlock(name.to_string()));
        true
    }

    /// The names the scan returns: the target's directory order, then any
    /// logfile it did not list, sorted; each once.
    fn scan_order(&self, order: &[String]) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let listed = order.iter().filter(|name| seen.insert(name.as_str()));
        let mut names: Vec<String> = listed.cloned().collect();
        let unlisted = self
            .spool
            .logfiles
            .keys()
            .filter(|name| !seen.contains(name.as_str()));
        names.extend(unlisted.cloned().collect::<Vec<_>>());
        names
    }
}

/// Bytes from the wire, for a note.
fn show(bytes: &[u8]) -> String {
    format!("\"{}\"", bytes.escape_ascii())
}

/// A duration as a person reads it: `3d`, `12h`, `1d2h`, `1m30s`.
pub fn span(seconds: i64) -> String {
    if seconds < 0 {
        return format!("-{}", span(-seconds));
    }
    if seconds == 0 {
        return "0s".to_string();
    }
    let units = [
        ("w", 7 * 86400),
        ("d", 86400),
        ("h", 3600),
        ("m", 60),
        ("s", 1),
    ];
    let mut rest = seconds;
    let mut out = String::new();
    for (unit, size) in units {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_units() {
        assert_eq!(span(3 * 86400), "3d");
        assert_eq!(span(12 * 3600), "12h");
        assert_eq!(span(90), "1m30s");
        assert_eq!(span(0), "0s");
        assert_eq!(span(-5), "-5s");
    }
}
