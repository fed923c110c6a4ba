//! The flush server's requests, as `flush.c` carries them out on the model's
//! spool: `add`, `send_site`, `send_file`, refresh (`rfrsh` and the master's
//! wakeup) and `purge`, one connection at a time.
//!
//! Each function is named after the C function it states, and its steps
//! come in the same order, so the two can be read side by side. Every
//! decision leaves a [`Note`] behind. A fatal error (the server process
//! exits) is a `Died` value: nothing more is written to the client, and
//! what was already done stays done.

use std::collections::BTreeSet;

use flushbed_vocab::{Exchange, Profile, QueueName, Status, Time, Trigger};

use crate::domain_list::{DomainList, Verdict};
use crate::names::{c_string, logfile_name_of, mail_queue_id_ok, midna_domain_to_ascii};
use crate::profile::Departure;
use crate::spool::{
    owner_may, Logfile, QueueFile, Spool, LOGFILE_MODE, MODE_READY, MODE_UNTHROTTLE,
};
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

/// One connection to the server.
pub struct Connection<'a> {
    pub spool: &'a mut Spool,
    pub domains: &'a DomainList,
    pub times: Times,
    pub profile: Profile,
    pub now: Time,
    exchange: Exchange,
    notes: Vec<Note>,
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
        }
    }

    fn note(&mut self, rule: &'static str, text: impl Into<String>) {
        self.notes.push(Note {
            rule,
            text: text.into(),
        });
    }

    fn reply(&mut self, status: Status) {
        self.exchange
            .output
            .extend_from_slice(&status_reply(status.code()));
    }

    fn trigger(&mut self, trigger: Trigger) {
        self.exchange.triggers.push(trigger);
    }

    /// `flush_service`: announce, read the request, carry it out, reply.
    pub fn serve(mut self, input: &[u8], flush_dir_order: &[String]) -> Step {
        self.exchange.output.extend_from_slice(ANNOUNCEMENT);
        let mut input = Input::new(input);

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

    fn finish(self) -> Step {
        Step {
            exchange: self.exchange,
            notes: self.notes,
        }
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
        match self.spool.logfiles.get_mut(path) {
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
            Some(log) => {
                log.content.extend_from_slice(queue_id);
                log.content.push(b'\n');
                log.mtime = now;
                self.note(
                    "append",
                    format!("queue ID {id} appended to logfile {path}; its atime is unchanged"),
                );
            }
            None => {
                let mut content = queue_id.to_vec();
                content.push(b'\n');
                let log = Logfile {
                    content,
                    mode: LOGFILE_MODE,
                    atime: now,
                    mtime: now,
                };
                self.spool.logfiles.insert(path.to_string(), log);
                self.note(
                    "append",
                    format!("logfile {path} created (mode 0600) with queue ID {id}"),
                );
            }
        }

        // Departure::FailedWriteAnsweredOk branches here once writes can
        // fail: the model's writes always succeed, so OK either way.
        Ok(Status::Ok)
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

        // Dead destinations are forgotten before the mail is moved, so that
        // the queue manager does not defer it again on sight.
        if how == How::UnthrottleBefore {
            self.trigger(Trigger::FlushDead);
        }

        let mut count = 0usize;
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
            if self.flush_one_file(&queue_id, how) {
                count += 1;
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

        // The logfile is emptied only when something was read from it.
        let now = self.now;
        if let Some(log) = self.spool.logfiles.get_mut(path) {
            if count > 0 {
                log.content.clear();
            }
            log.atime = now;
            log.mtime = now;
        }
        if count > 0 {
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
    /// `incoming/`), and move it to `incoming/`. Whether it counts as done.
    fn flush_one_file(&mut self, queue_id: &str, how: How) -> bool {
        let now = self.now;
        let looked_in =
            |file: &&mut QueueFile| matches!(file.queue, QueueName::Deferred | QueueName::Incoming);
        let Some(file) = self.spool.queue_files.get_mut(queue_id).filter(looked_in) else {
            self.note(
                "queue-file",
                format!("queue file {queue_id} is in neither deferred nor incoming: nothing done"),
            );
            return false;
        };
        let queue = file.queue;
        file.atime = now;
        file.mtime = now;

        // Only send_file insists on a ready file, and marks it so the queue
        // manager unthrottles its destinations as it reads it.
        if how == How::UnthrottleAfter {
            if file.mode & MODE_READY != MODE_READY {
                let mode = file.mode;
                self.note(
                    "not-ready",
                    format!(
                        "queue file {queue_id} (mode {mode:04o}) is not ready: \
                         times set, nothing more"
                    ),
                );
                return false;
            }
            file.mode |= MODE_UNTHROTTLE;
        }

        if queue == QueueName::Deferred {
            file.queue = QueueName::Incoming;
            // Departure::FailedRenameCounted branches here once renames can
            // fail: the model's renames always succeed.
            self.note(
                "queue-file",
                format!("queue file {queue_id}: times set, moved from deferred to incoming"),
            );
        } else {
            self.note(
                "queue-file",
                format!("queue file {queue_id}: already in incoming, times set"),
            );
        }
        true
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
        if self.flush_one_file(&queue_id, How::UnthrottleAfter) {
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
                    self.spool.logfiles.remove(name);
                    // Departure::UnlockedPurgeDelete: without concurrent adds
                    // the unlocked and the locked delete look the same.
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
