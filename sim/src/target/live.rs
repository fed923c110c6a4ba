//! The live-server target: any flush server that is already running,
//! driven over its socket as Postfix's clients drive flush(8), and held
//! to the model like the in-process spool target.
//!
//! - **Requests.** Each connection connects to the server's socket, sends
//!   the event's bytes in one write, closes its sending side (so that a
//!   cut-short request ends at the end of input, as the model assumes),
//!   and reads everything until the server closes, within
//!   [`EXCHANGE_TIMEOUT`].
//! - **Triggers.** The target is the queue manager: it binds
//!   `$queue_directory/public/qmgr` itself, a UNIX stream socket, and a
//!   listener thread collects the bytes of each trigger connection, in the
//!   order the server connected. A refresh sends its triggers after its
//!   reply, so the exchange ends only when the connection to flush is
//!   closed *and* a look at the qmgr socket that began after the close
//!   found nothing waiting.
//! - **The spool.** It is observed with the simulator's observer, which
//!   does not disturb a logfile's atime; files are planted directly at the
//!   paths Postfix's layout gives them (the implementation's `Spool`),
//!   owned by whoever owns `flush/` (a real Postfix runs as `postfix`).
//!   Before each scenario of a [`SocketServer`], the spool's logfiles and
//!   queue files are removed: the target owns the spool for the run.
//!
//! ## Time
//!
//! A live server reads the real clock, while a scenario runs on the
//! virtual clock, which jumps hours between two requests. The target keeps
//! the scenario's virtual time as the truth and translates: a running
//! *offset* (virtual minus real seconds) holds for every file time in the
//! target's spool. Observing adds the offset to every time read; planting
//! subtracts it from every time written; every expectation in virtual time
//! therefore holds unchanged.
//!
//! Before each request at virtual second `now`, the target reads the real
//! clock. When less than [`SECOND_GUARD`] is left of the current real
//! second it first waits for the next one, so that the server's own
//! reading falls in the same second. The offset becomes `now` minus that
//! real second, and when it changed, every file time in the spool is moved
//! by the change: virtual time passing between two requests is the spool's
//! times moving back in real time. So every request runs with the files'
//! ages exactly as the scenario has them.
//!
//! The clock is read again when the server's first bytes arrive. Both
//! readings agree almost always; the server then read that same second. If
//! they differ, the server read one of the seconds in between, and the
//! target runs its own copy of the model (kept in step with the runner's:
//! the same configuration and every same operation) for each candidate
//! second, and takes the one whose exchange and spool match what the
//! server did. When that is not the first second, the request happened a
//! second late in real time: the file times it set are put back by that
//! second, which is only a change of the clock's translation when the
//! candidates differ in nothing but those times. When they differ in more
//! (a refresh boundary reached in that second), the run stops with an
//! error instead of a verdict that would depend on timing.
//!
//! ## Limitations
//!
//! - A process death is not visible on a socket. A target with a
//!   [`DeathWatch`] (the `serve` target reads its server's log) reports
//!   it; without one, `died` is taken from the model's prediction, so it
//!   is not checked. FIXME: a socket server that reported its deaths (a
//!   log to read, as the `serve` target does) would make it checkable.
//! - The server's wakeups by its master and its own timers must be off:
//!   the runner plays the master, and the spool's times are moved only
//!   between requests.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use flushbed_impl::spool::Spool;
use flushbed_model::{Model, Tables};
use flushbed_vocab::config::Environment;
use flushbed_vocab::Trigger;
use flushbed_vocab::{Exchange, FlushConfig, MainCf, Profile, QueueName, SpoolState, Time};
use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};
use tracing::{debug, warn};

use super::Target;
use crate::lockstep::{self, Outcome, ScenarioResult};
use crate::observe;
use crate::scenario::{ConfigSpec, Scenario};

/// How long a request may take before the server is taken to hang.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A request is not started closer than this to the end of a real second.
pub const SECOND_GUARD: Duration = Duration::from_millis(150);

/// How long one trigger connection may take to deliver its bytes.
const TRIGGER_READ_TIMEOUT: Duration = Duration::from_millis(500);

/// How often the qmgr listener looks for a connection.
const QMGR_POLL: Duration = Duration::from_millis(5);

/// The most real seconds a request may span before its second cannot be
/// told.
const MAX_SPAN: i64 = 3;

/// Tells whether the server died during the last exchange.
pub trait DeathWatch: Send {
    /// Whether a death was seen since the last call.
    fn died_since_last(&mut self) -> anyhow::Result<bool>;
}

/// What a live target needs to know about its server.
pub struct LiveSetup {
    /// The name in reports (`serve`, `socket`).
    pub name: String,
    /// The server's socket.
    pub socket: PathBuf,
    /// The configuration the server read, as the model is to read it.
    pub config: FlushConfig,
    /// The files `fast_flush_domains` may read, by absolute path.
    pub tables: Tables,
    pub profile: Profile,
    pub deaths: Option<Box<dyn DeathWatch>>,
}

/// A running flush server, driven over its socket.
pub struct LiveTarget {
    name: String,
    socket: PathBuf,
    config: FlushConfig,
    profile: Profile,
    spool: Spool,
    queue_dir: PathBuf,
    qmgr: QmgrListener,
    /// Virtual minus real seconds, for every file time in the spool.
    offset: Time,
    /// The model, in step with the runner's, to tell which second the
    /// server read when the clock moved during a request.
    shadow: Model,
    deaths: Option<Box<dyn DeathWatch>>,
    /// Who planted files and directories belong to.
    owner: Option<(u32, u32)>,
}

impl LiveTarget {
    /// A target for the server described, listening on its queue
    /// directory's `public/qmgr`.
    pub fn new(setup: LiveSetup) -> anyhow::Result<LiveTarget> {
        let queue_dir = PathBuf::from(&setup.config.queue_directory);
        let qmgr = QmgrListener::bind(&queue_dir.join("public").join("qmgr"))?;
        let owner = planting_owner(&queue_dir.join("flush"));
        Ok(LiveTarget {
            name: setup.name,
            socket: setup.socket,
            spool: Spool::new(&setup.config),
            shadow: Model::new(&setup.config, setup.tables, setup.profile),
            config: setup.config,
            profile: setup.profile,
            queue_dir,
            qmgr,
            offset: 0,
            deaths: setup.deaths,
            owner,
        })
    }

    /// Removes every logfile and queue file, so that a scenario starts on
    /// an empty spool.
    pub fn empty_spool(&mut self) -> anyhow::Result<()> {
        for path in self.spool_files()? {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        Ok(())
    }

    /// Every regular file below `flush/` and the queues.
    fn spool_files(&self) -> anyhow::Result<Vec<PathBuf>> {
        let mut dirs = vec![self.queue_dir.join("flush")];
        dirs.extend(QueueName::ALL.iter().map(|q| self.queue_dir.join(q.dir())));
        let mut files = Vec::new();
        while let Some(dir) = dirs.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
            };
            for entry in entries {
                let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    dirs.push(entry.path());
                } else if kind.is_file() {
                    files.push(entry.path());
                }
            }
        }
        Ok(files)
    }

    /// Waits, if need be, for a real second with room for a request, and
    /// makes the offset map it to `now`. Returns that real second.
    fn align(&mut self, now: Time) -> anyhow::Result<Time> {
        loop {
            let (second, into) = real_clock();
            let left = Duration::from_secs(1).saturating_sub(into);
            if left < SECOND_GUARD {
                thread::sleep(left + Duration::from_millis(1));
                continue;
            }
            let offset = now - second;
            if offset == self.offset {
                return Ok(second);
            }

            // Moving the files takes time: the clock is read again after.
            self.shift(self.offset - offset)?;
            self.offset = offset;
        }
    }

    /// Moves every file time in the spool by `delta` real seconds.
    fn shift(&self, delta: i64) -> anyhow::Result<()> {
        for path in self.spool_files()? {
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                // The server may have just renamed it; it is seen again next time.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("stat {}", path.display())),
            };
            let times = Timestamps {
                last_access: Timespec {
                    tv_sec: meta.atime() + delta,
                    tv_nsec: meta.atime_nsec() as _,
                },
                last_modification: Timespec {
                    tv_sec: meta.mtime() + delta,
                    tv_nsec: meta.mtime_nsec() as _,
                },
            };
            rustix::fs::utimensat(CWD, &path, &times, AtFlags::SYMLINK_NOFOLLOW)
                .with_context(|| format!("moving the times of {}", path.display()))?;
        }
        debug!(target_name = %self.name, delta, "spool times moved");
        Ok(())
    }

    /// Sets a file's times, given in virtual seconds.
    fn set_times(&self, path: &Path, atime: Time, mtime: Time) -> anyhow::Result<()> {
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: atime - self.offset,
                tv_nsec: 0,
            },
            last_modification: Timespec {
                tv_sec: mtime - self.offset,
                tv_nsec: 0,
            },
        };
        rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
            .with_context(|| format!("setting the times of {}", path.display()))
    }

    /// The spool with every time in virtual seconds.
    fn observe_virtual(&self) -> anyhow::Result<SpoolState> {
        let mut state = observe::observe(&self.queue_dir)?;
        for log in state.logfiles.values_mut() {
            log.atime += self.offset;
            log.mtime += self.offset;
        }
        for file in state.queue_files.values_mut() {
            file.atime += self.offset;
            file.mtime += self.offset;
        }
        Ok(state)
    }

    /// One connection: the input in one write, then everything the server
    /// writes until it closes. Returns the output and the real second
    /// when its first bytes (or the close) arrived.
    fn talk(&self, input: &[u8]) -> anyhow::Result<(Vec<u8>, Time, Instant)> {
        let mut stream = UnixStream::connect(&self.socket)
            .with_context(|| format!("connecting to {}", self.socket.display()))?;
        stream.set_read_timeout(Some(EXCHANGE_TIMEOUT))?;
        stream.set_write_timeout(Some(EXCHANGE_TIMEOUT))?;

        // A server may refuse a long request before reading all of it.
        if let Err(e) = stream.write_all(input) {
            if !gone(&e) {
                return Err(e).context("sending the request");
            }
            debug!(error = %e, "server stopped reading the request");
        }
        if let Err(e) = stream.shutdown(std::net::Shutdown::Write) {
            if !gone(&e) && e.kind() != io::ErrorKind::NotConnected {
                return Err(e).context("closing the request");
            }
        }

        let mut output = Vec::new();
        let mut first = None;
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    first.get_or_insert_with(|| real_clock().0);
                    output.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if gone(&e) => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    bail!(
                        "the server did not close the connection within {}s",
                        EXCHANGE_TIMEOUT.as_secs()
                    )
                }
                Err(e) => return Err(e).context("reading the reply"),
            }
        }
        let closed = Instant::now();
        let first = first.unwrap_or_else(|| real_clock().0);
        Ok((output, first, closed))
    }

    /// Whether the model, served the request at `second`, does what the
    /// server did; if so, its exchange (with its `died` when deaths cannot
    /// be seen) and the model after it.
    fn explains(
        &self,
        input: &[u8],
        second: Time,
        order: &[String],
        got: &Exchange,
        seen: &SpoolState,
    ) -> Option<(Exchange, Model)> {
        let mut model = self.shadow.clone();
        let step = model.connect(input, second, order);
        let mut exchange = got.clone();
        if self.deaths.is_none() {
            exchange.died = step.exchange.died;
        }
        let same = lockstep::compare_exchange(&step.exchange, &exchange, order_free(input))
            .is_empty()
            && model.observe() == *seen;
        same.then_some((exchange, model))
    }

    /// Sets the times that differ between `seen` (the spool as a server
    /// that read its clock late left it) and `wanted` (the model at the
    /// request's own second) to the wanted ones, when times are all that
    /// differs; says whether they were.
    fn translate(&self, seen: &SpoolState, wanted: &SpoolState) -> anyhow::Result<bool> {
        if seen.logfiles.keys().ne(wanted.logfiles.keys())
            || seen.queue_files.keys().ne(wanted.queue_files.keys())
        {
            return Ok(false);
        }
        let mut moves = Vec::new();
        for (name, log) in &seen.logfiles {
            let want = &wanted.logfiles[name];
            if (&log.content, log.mode) != (&want.content, want.mode) {
                return Ok(false);
            }
            if (log.atime, log.mtime) != (want.atime, want.mtime) {
                moves.push((
                    self.queue_dir.join("flush").join(name),
                    want.atime,
                    want.mtime,
                ));
            }
        }
        for (path, file) in &seen.queue_files {
            let want = &wanted.queue_files[path];
            if file.mode != want.mode {
                return Ok(false);
            }
            if (file.atime, file.mtime) != (want.atime, want.mtime) {
                moves.push((self.queue_dir.join(path), want.atime, want.mtime));
            }
        }
        for (path, atime, mtime) in moves {
            self.set_times(&path, atime, mtime)?;
        }
        Ok(true)
    }

    /// Makes the directories missing between the queue directory and
    /// `dir`, mode 0700 as Postfix makes hash directories, owned as the
    /// spool is.
    fn make_dirs(&self, dir: &Path) -> anyhow::Result<()> {
        let relative = dir
            .strip_prefix(&self.queue_dir)
            .with_context(|| format!("{} is outside the queue directory", dir.display()))?;
        let mut path = self.queue_dir.clone();
        for component in relative.components() {
            path.push(component);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => continue,
                Ok(_) => bail!("{} is not a directory", path.display()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&path)
                        .with_context(|| format!("making {}", path.display()))?;
                    self.chown(&path)?;
                }
                Err(e) => return Err(e).with_context(|| format!("stat {}", path.display())),
            }
        }
        Ok(())
    }

    fn chown(&self, path: &Path) -> anyhow::Result<()> {
        if let Some((uid, gid)) = self.owner {
            let (uid, gid) = (
                rustix::fs::Uid::from_raw(uid),
                rustix::fs::Gid::from_raw(gid),
            );
            rustix::fs::chown(path, Some(uid), Some(gid))
                .with_context(|| format!("giving {} to the spool's owner", path.display()))?;
        }
        Ok(())
    }

    /// Writes a file as it is, replacing what was there.
    fn write_file(
        &self,
        path: &Path,
        content: &[u8],
        mode: u32,
        atime: Time,
        mtime: Time,
    ) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            self.make_dirs(dir)?;
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
            .with_context(|| format!("writing {}", path.display()))?;
        file.write_all(content)
            .with_context(|| format!("writing {}", path.display()))?;
        drop(file);
        self.chown(path)?;
        // After the chown, which clears set-id bits.
        rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(mode & 0o7777))
            .with_context(|| format!("chmod {}", path.display()))?;
        self.set_times(path, atime, mtime)
    }

    fn remove_from_queues(&self, queue_id: &str) -> anyhow::Result<()> {
        for queue in QueueName::ALL {
            let path = self.spool.path(queue.dir(), queue_id);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", path.display()))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl Target for LiveTarget {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn profile(&self) -> Profile {
        self.profile
    }

    fn config(&self) -> &FlushConfig {
        &self.config
    }

    fn connect(&mut self, input: &[u8], now: Time) -> anyhow::Result<Exchange> {
        let order = observe::flush_dir_order(&self.queue_dir)?;
        let before = self.qmgr.take();
        if !before.is_empty() {
            warn!(target_name = %self.name, connections = before.len(), "triggers arrived between requests");
        }

        let started = self.align(now)?;
        let (output, answered, closed) = self.talk(input)?;
        let mut triggers = parse_triggers(&before)?;
        triggers.extend(parse_triggers(&self.qmgr.take_after(closed)?)?);
        let died = match &mut self.deaths {
            Some(watch) => watch.died_since_last()?,
            None => false,
        };
        let got = Exchange {
            output,
            triggers,
            died,
        };
        let seen = self.observe_virtual()?;

        // Which second the server read: the one before the request almost
        // always; one of those up to its first bytes otherwise.
        let span = (answered - started).clamp(0, MAX_SPAN);
        for late in 0..=span {
            let Some((exchange, model)) = self.explains(input, now + late, &order, &got, &seen)
            else {
                continue;
            };
            if late == 0 {
                self.shadow = model;
                return Ok(exchange);
            }

            // The server read its clock `late` seconds after the request's
            // second: only a translation when nothing but times differ.
            let mut on_time = self.shadow.clone();
            let step = on_time.connect(input, now, &order);
            let same_answer =
                lockstep::compare_exchange(&step.exchange, &exchange, order_free(input)).is_empty();
            if !same_answer || !self.translate(&seen, &on_time.observe())? {
                bail!(
                    "the request straddled a real second boundary and its outcome depends on \
                     which second the server read; run the scenario again"
                );
            }
            debug!(target_name = %self.name, late, "the server read its clock late; times translated");
            self.shadow = on_time;
            return Ok(exchange);
        }

        // Nothing explains it: the runner shows the difference, at `now`.
        let step = self.shadow.connect(input, now, &order);
        Ok(Exchange {
            died: if self.deaths.is_some() {
                got.died
            } else {
                step.exchange.died
            },
            ..got
        })
    }

    fn plant_queue_file(
        &mut self,
        queue_id: &str,
        queue: QueueName,
        mode: u32,
        atime: Time,
        mtime: Time,
    ) -> anyhow::Result<()> {
        check_name(queue_id)?;
        self.shadow
            .plant_queue_file(queue_id, queue, mode, atime, mtime);
        // A queue file is in one queue at a time: planting it moves it.
        self.remove_from_queues(queue_id)?;
        let path = self.spool.path(queue.dir(), queue_id);
        self.write_file(&path, b"", mode, atime, mtime)
    }

    fn remove_queue_file(&mut self, queue_id: &str) -> anyhow::Result<()> {
        check_name(queue_id)?;
        self.shadow.remove_queue_file(queue_id);
        self.remove_from_queues(queue_id)
    }

    fn write_logfile(
        &mut self,
        name: &str,
        content: &[u8],
        mode: u32,
        atime: Time,
        mtime: Time,
    ) -> anyhow::Result<()> {
        check_name(name)?;
        self.shadow.write_logfile(name, content, mode, atime, mtime);
        let path = self.spool.path("flush", name);
        self.write_file(&path, content, mode, atime, mtime)
    }

    fn remove_logfile(&mut self, name: &str) -> anyhow::Result<()> {
        check_name(name)?;
        self.shadow.remove_logfile(name);
        let path = self.spool.path("flush", name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        }
    }

    fn observe(&mut self) -> anyhow::Result<SpoolState> {
        self.observe_virtual()
    }

    fn flush_dir_order(&mut self) -> anyhow::Result<Vec<String>> {
        Ok(observe::flush_dir_order(&self.queue_dir)?)
    }
}

/// The real clock: whole seconds, and how far into the second it is.
fn real_clock() -> (Time, Duration) {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (
        since.as_secs() as Time,
        Duration::from_nanos(since.subsec_nanos().into()),
    )
}

/// The server closed its side: what it wrote is all there is.
fn gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

/// Whether a request's triggers come in directory order, so are compared
/// as a multiset, as the runner compares them.
fn order_free(input: &[u8]) -> bool {
    input.len() <= 2
        || input.starts_with(b"request\0rfrsh\0")
        || input.starts_with(b"request\0purge\0")
}

/// A name that stays inside its directory.
fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        bail!("bad file name \"{name}\"");
    }
    Ok(())
}

/// Who a planted file must belong to: the owner of `flush/`, when we may
/// give files away and it is someone else.
fn planting_owner(flush: &Path) -> Option<(u32, u32)> {
    let meta = fs::metadata(flush).ok()?;
    let me = rustix::process::geteuid();
    (me.is_root() && meta.uid() != me.as_raw()).then(|| (meta.uid(), meta.gid()))
}

/// Triggers from the bytes of trigger connections: each a byte and its
/// NUL (a FIFO-style byte without one is taken too).
fn parse_triggers(connections: &[Vec<u8>]) -> anyhow::Result<Vec<Trigger>> {
    let mut triggers = Vec::new();
    for bytes in connections {
        for &byte in bytes.iter().filter(|&&b| b != 0) {
            match Trigger::from_byte(byte) {
                Some(trigger) => triggers.push(trigger),
                None => bail!("the queue manager got an unknown trigger byte {byte:#04x}"),
            }
        }
    }
    Ok(triggers)
}

/// What the qmgr listener has seen.
#[derive(Default)]
struct QmgrSeen {
    /// The bytes of each trigger connection, in the order accepted.
    connections: Vec<Vec<u8>>,
    /// When the latest look that found no connection waiting began.
    quiet_since: Option<Instant>,
}

type Shared = Arc<(Mutex<QmgrSeen>, Condvar)>;

/// The target's `public/qmgr`: a UNIX stream socket and the thread that
/// collects what the server sends to it.
struct QmgrListener {
    path: PathBuf,
    ino: u64,
    seen: Shared,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl QmgrListener {
    /// Binds the socket, replacing a stale one; a live queue manager, or a
    /// FIFO, is an error: the target must not take a real one's place.
    fn bind(path: &Path) -> anyhow::Result<QmgrListener> {
        if let Ok(meta) = fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                bail!("{} exists and is not a socket", path.display());
            }
            if UnixStream::connect(path).is_ok() {
                bail!("a queue manager is listening on {}", path.display());
            }
            fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
        }
        let listener =
            UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
        // The flush server may run as another user (Postfix's `postfix`).
        fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o666))?;
        let ino = fs::symlink_metadata(path)?.ino();
        rustix::net::sockopt::set_socket_timeout(
            &listener,
            rustix::net::sockopt::Timeout::Recv,
            Some(QMGR_POLL),
        )?;

        let seen: Shared = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            thread::Builder::new()
                .name("qmgr".to_string())
                .spawn(move || collect(&listener, &seen, &stop))?
        };
        Ok(QmgrListener {
            path: path.to_path_buf(),
            ino,
            seen,
            stop,
            thread: Some(thread),
        })
    }

    /// Everything collected so far.
    fn take(&self) -> Vec<Vec<u8>> {
        let (lock, _) = &*self.seen;
        std::mem::take(&mut lock.lock().unwrap_or_else(|e| e.into_inner()).connections)
    }

    /// Everything collected once a look that began after `closed` found
    /// nothing more waiting: every trigger the server sent before it
    /// closed the connection is in by then.
    fn take_after(&self, closed: Instant) -> anyhow::Result<Vec<Vec<u8>>> {
        let (lock, changed) = &*self.seen;
        let seen = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (mut seen, timeout) = changed
            .wait_timeout_while(seen, EXCHANGE_TIMEOUT, |seen| {
                seen.quiet_since.is_none_or(|quiet| quiet < closed)
            })
            .unwrap_or_else(|e| e.into_inner());
        if timeout.timed_out() {
            bail!("the qmgr socket {} never went quiet", self.path.display());
        }
        Ok(std::mem::take(&mut seen.connections))
    }
}

impl Drop for QmgrListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if fs::symlink_metadata(&self.path).is_ok_and(|meta| meta.ino() == self.ino) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The listener thread: accepts trigger connections one after another,
/// reading each to its NUL or its end.
fn collect(listener: &UnixListener, seen: &Shared, stop: &AtomicBool) {
    let (lock, changed) = &**seen;
    while !stop.load(Ordering::SeqCst) {
        let looked = Instant::now();
        match listener.accept() {
            Ok((stream, _)) => {
                let bytes = read_trigger(stream);
                let mut seen = lock.lock().unwrap_or_else(|e| e.into_inner());
                seen.connections.push(bytes);
                seen.quiet_since = None;
                changed.notify_all();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                let mut seen = lock.lock().unwrap_or_else(|e| e.into_inner());
                seen.quiet_since = Some(looked);
                changed.notify_all();
            }
            Err(e) => {
                warn!(error = %e, "qmgr socket: accept failed");
                thread::sleep(QMGR_POLL);
            }
        }
    }
}

/// The bytes of one trigger connection: up to and with its NUL (a
/// Postfix client may hold the connection open after it), or all of it.
fn read_trigger(mut stream: UnixStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Err(e) = stream.set_read_timeout(Some(TRIGGER_READ_TIMEOUT)) {
        warn!(error = %e, "qmgr socket: cannot bound the read");
    }
    let mut chunk = [0u8; 64];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                bytes.extend_from_slice(&chunk[..n]);
                if bytes.last() == Some(&0) {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                debug!(error = %e, bytes = bytes.len(), "qmgr socket: trigger connection ended");
                break;
            }
        }
    }
    bytes
}

/// A flush server already running, as `--target socket:PATH --config DIR`
/// names it: its socket and the configuration it read.
pub struct SocketServer {
    socket: PathBuf,
    config_dir: PathBuf,
    /// The server's effective configuration (the real host name as the
    /// default of `myhostname`).
    config: FlushConfig,
}

impl SocketServer {
    /// Reads `config_dir/main.cf` as the server read it.
    pub fn read(socket: &Path, config_dir: &Path, hostname: &str) -> anyhow::Result<SocketServer> {
        let config_dir = fs::canonicalize(config_dir)
            .with_context(|| format!("configuration directory {}", config_dir.display()))?;
        let main_cf = config_dir.join("main.cf");
        let text = fs::read_to_string(&main_cf)
            .with_context(|| format!("reading {}", main_cf.display()))?;
        let main = MainCf::parse(&text, &main_cf.display().to_string())?;
        let env = Environment {
            hostname: hostname.to_string(),
            config_directory: path_text(&config_dir)?,
        };
        let config = FlushConfig::from_main_cf(&main, &env)?;
        Ok(SocketServer {
            socket: socket.to_path_buf(),
            config_dir,
            config,
        })
    }

    /// The server's effective configuration.
    pub fn config(&self) -> &FlushConfig {
        &self.config
    }

    /// The scenario's configuration on this server's spool, or why the
    /// server's differs from it.
    pub fn scenario_config(
        &self,
        spec: &ConfigSpec,
    ) -> anyhow::Result<Result<FlushConfig, String>> {
        let mut main = MainCf::parse(&spec.main_cf, "main.cf")?;
        main.set("queue_directory", &self.config.queue_directory);
        main.set("config_directory", &self.config.config_directory);
        let env = Environment {
            hostname: spec.hostname.clone(),
            config_directory: self.config.config_directory.clone(),
        };
        let wanted = FlushConfig::from_main_cf(&main, &env)?;
        if let Some(why) = flush_difference(&self.config, &wanted) {
            return Ok(Err(why));
        }
        for (name, content) in &spec.files {
            let path = self.config_dir.join(name);
            if fs::read(&path).ok().as_deref() != Some(content.as_slice()) {
                return Ok(Err(format!(
                    "{} differs from the scenario's",
                    path.display()
                )));
            }
        }
        Ok(Ok(wanted))
    }

    /// A target on this server for one run of a scenario, its spool
    /// emptied; `Err` says why the scenario does not apply.
    pub fn target(
        &self,
        spec: &ConfigSpec,
        profile: Profile,
    ) -> anyhow::Result<Result<LiveTarget, String>> {
        let config = match self.scenario_config(spec)? {
            Ok(config) => config,
            Err(why) => return Ok(Err(why)),
        };
        let tables = tables_of(spec, &config);
        let mut target = LiveTarget::new(LiveSetup {
            name: "socket".to_string(),
            socket: self.socket.clone(),
            config,
            tables,
            profile,
            deaths: None,
        })?;
        target.empty_spool()?;
        Ok(Ok(target))
    }
}

/// The first field flush(8) reads in which two configurations differ.
pub fn flush_difference(server: &FlushConfig, scenario: &FlushConfig) -> Option<String> {
    let fields: [(&str, String, String); 8] = [
        (
            "fast_flush_domains",
            server.fast_flush_domains.clone(),
            scenario.fast_flush_domains.clone(),
        ),
        (
            "parent_domain_matches_subdomains (for fast_flush_domains)",
            server.fast_flush_parent_style().to_string(),
            scenario.fast_flush_parent_style().to_string(),
        ),
        (
            "smtputf8_enable",
            server.smtputf8_enable.to_string(),
            scenario.smtputf8_enable.to_string(),
        ),
        (
            "enable_idna2003_compatibility",
            server.enable_idna2003_compatibility.to_string(),
            scenario.enable_idna2003_compatibility.to_string(),
        ),
        (
            "fast_flush_refresh_time",
            server.fast_flush_refresh_time.to_string(),
            scenario.fast_flush_refresh_time.to_string(),
        ),
        (
            "fast_flush_purge_time",
            server.fast_flush_purge_time.to_string(),
            scenario.fast_flush_purge_time.to_string(),
        ),
        (
            "hash_queue_names",
            server.hash_queue_names.join(", "),
            scenario.hash_queue_names.join(", "),
        ),
        (
            "hash_queue_depth",
            server.hash_queue_depth.to_string(),
            scenario.hash_queue_depth.to_string(),
        ),
    ];
    fields
        .into_iter()
        .find(|(_, a, b)| a != b)
        .map(|(name, a, b)| format!("the server's {name} is \"{a}\", the scenario's \"{b}\""))
}

/// The scenario's files as the model reads them, by absolute path.
pub fn tables_of(spec: &ConfigSpec, config: &FlushConfig) -> Tables {
    Tables {
        files: spec
            .files
            .iter()
            .map(|(name, content)| {
                (
                    format!("{}/{name}", config.config_directory),
                    content.clone(),
                )
            })
            .collect::<BTreeMap<_, _>>(),
    }
}

pub(crate) use super::path_text;

/// Runs one scenario in one profile against a running server; a scenario
/// for another configuration or another target is skipped.
pub fn run_socket(server: &SocketServer, scenario: &Scenario, profile: Profile) -> ScenarioResult {
    let skipped = |why: String| result(scenario, profile, "socket", Outcome::Skipped { why });
    if !scenario.applies_to("socket") {
        return skipped("the scenario does not apply to the socket target".to_string());
    }
    match server.target(&scenario.config, profile) {
        Ok(Ok(mut target)) => lockstep::run_against(scenario, &mut target, None),
        Ok(Err(why)) => skipped(format!("not applicable: {why}")),
        Err(e) => result(
            scenario,
            profile,
            "socket",
            Outcome::Error {
                why: format!("{e:#}"),
            },
        ),
    }
}

/// A result that ran no event.
pub(crate) fn result(
    scenario: &Scenario,
    profile: Profile,
    target: &str,
    outcome: Outcome,
) -> ScenarioResult {
    ScenarioResult {
        scenario: scenario.name.clone(),
        file: scenario.file.clone(),
        summary: scenario.summary.clone(),
        profile,
        target: target.to_string(),
        events_run: 0,
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flushbed_impl::server::{QmgrTrigger, Server, ServerConfig};
    use flushbed_impl::{Clock, FlushService, SystemClock};
    use flushbed_vocab::wire;

    /// The real clock, read only once the next second has begun: a server
    /// that always reads its clock one second after the client did.
    struct LateClock;

    impl Clock for LateClock {
        fn now(&self) -> Time {
            let (second, _) = real_clock();
            while real_clock().0 == second {
                thread::sleep(Duration::from_millis(5));
            }
            SystemClock.now()
        }
    }

    /// flushbed's server in this process, on a fresh spool.
    struct InProcess {
        dir: tempfile::TempDir,
        config: FlushConfig,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl InProcess {
        fn start(clock: Arc<dyn Clock>) -> InProcess {
            let dir = tempfile::tempdir().unwrap();
            let queue_dir = dir.path().join("spool");
            let mut main = MainCf::parse("fast_flush_domains = example.com\n", "main.cf").unwrap();
            main.set("queue_directory", queue_dir.to_str().unwrap());
            let config = FlushConfig::from_main_cf(&main, &Environment::default()).unwrap();
            let triggers = Arc::new(QmgrTrigger::new(&queue_dir));
            let service = FlushService::new(&config, Profile::Strict, clock, triggers).unwrap();
            let socket = queue_dir.join("public/flush");
            let server = Server::bind(
                Arc::new(service),
                ServerConfig::new(socket, Profile::Strict),
            )
            .unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let thread = {
                let stop = Arc::clone(&stop);
                thread::spawn(move || server.run(&stop).unwrap())
            };
            InProcess {
                dir,
                config,
                stop,
                thread: Some(thread),
            }
        }

        fn target(&self) -> LiveTarget {
            LiveTarget::new(LiveSetup {
                name: "socket".to_string(),
                socket: self.dir.path().join("spool/public/flush"),
                config: self.config.clone(),
                tables: Tables::default(),
                profile: Profile::Strict,
                deaths: None,
            })
            .unwrap()
        }
    }

    impl Drop for InProcess {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    const START: Time = 1_800_000_000;

    #[test]
    fn virtual_time_passing_moves_the_spool_back_in_real_time() {
        let server = InProcess::start(Arc::new(SystemClock));
        let mut target = server.target();
        target
            .write_logfile(
                "example_com",
                b"AAA111\n",
                0o600,
                START - 3600,
                START - 3600,
            )
            .unwrap();
        target
            .plant_queue_file(
                "AAA111",
                QueueName::Deferred,
                0o700,
                START + 300,
                START + 300,
            )
            .unwrap();

        // Thirteen hours later the logfile is due for a refresh.
        let now = START + 13 * 3600;
        let exchange = target.connect(&wire::refresh_request(), now).unwrap();
        assert_eq!(
            exchange.output,
            [lockstep::ANNOUNCEMENT, b"status\x000\0\0"].concat()
        );
        assert_eq!(exchange.triggers, vec![Trigger::ScanIncoming]);

        let state = target.observe().unwrap();
        let log = &state.logfiles["example_com"];
        assert_eq!(
            (log.content.as_slice(), log.atime, log.mtime),
            (&b""[..], now, now)
        );
        let queued = state.queue_files["incoming/AAA111"];
        assert_eq!((queued.atime, queued.mtime), (now, now));
    }

    #[test]
    fn a_server_that_reads_its_clock_a_second_late_is_translated_to_the_requests_second() {
        let server = InProcess::start(Arc::new(LateClock));
        let mut target = server.target();
        target
            .write_logfile("example_com", b"BBB222\n", 0o600, START, START)
            .unwrap();
        target
            .plant_queue_file("BBB222", QueueName::Deferred, 0o700, START, START)
            .unwrap();

        let now = START + 60;
        let exchange = target
            .connect(&wire::send_site_request(b"example.com"), now)
            .unwrap();
        assert_eq!(
            exchange.triggers,
            vec![Trigger::FlushDead, Trigger::ScanIncoming]
        );
        let state = target.observe().unwrap();
        let log = &state.logfiles["example_com"];
        assert_eq!((log.atime, log.mtime), (now, now));
        let queued = state.queue_files["incoming/BBB222"];
        assert_eq!((queued.atime, queued.mtime), (now, now));

        // And the target's model went on from the request's own second.
        let exchange = target
            .connect(&wire::add_request(b"example.com", b"CCC333"), now)
            .unwrap();
        assert_eq!(
            exchange.output,
            [lockstep::ANNOUNCEMENT, b"status\x000\0\0"].concat()
        );
        let log = &target.observe().unwrap().logfiles["example_com"];
        assert_eq!((log.content.as_slice(), log.mtime), (&b"CCC333\n"[..], now));
    }

    #[test]
    fn triggers_are_parsed_from_each_connections_bytes() {
        let parsed = parse_triggers(&[b"F\0".to_vec(), b"I\0".to_vec(), b"I".to_vec()]).unwrap();
        assert_eq!(
            parsed,
            vec![
                Trigger::FlushDead,
                Trigger::ScanIncoming,
                Trigger::ScanIncoming
            ]
        );
        assert!(parse_triggers(&[b"?\0".to_vec()]).is_err());
    }

    #[test]
    fn a_server_configuration_matches_a_scenario_on_the_fields_flush_reads() {
        let read = |text: &str, hostname: &str| {
            let main = MainCf::parse(text, "main.cf").unwrap();
            let env = Environment {
                hostname: hostname.to_string(),
                ..Environment::default()
            };
            FlushConfig::from_main_cf(&main, &env).unwrap()
        };
        let server = read("fast_flush_domains = example.com\n", "mx.example.net");
        let same = read(
            "fast_flush_domains = example.com\nminimal_backoff_time = 10s\n",
            "localhost.localdomain",
        );
        assert_eq!(flush_difference(&server, &same), None);
        let other = read(
            "fast_flush_domains = example.com\nfast_flush_purge_time = 1d\n",
            "x.y",
        );
        assert!(flush_difference(&server, &other)
            .is_some_and(|why| why.contains("fast_flush_purge_time")));
    }
}
