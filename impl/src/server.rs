//! The flush server on a UNIX-domain socket: what `flushbed serve` runs in
//! place of Postfix's master and its flush(8) processes.
//!
//! One request per connection, many connections at once, as the master
//! runs many flush processes. A pool of flush threads accepts on the one
//! socket, each thread for itself as each flush process does, so that no
//! connection is handed from thread to thread; the pool grows while every
//! thread is busy, up to a limit like the master's process limit (more
//! clients wait in the listen queue). Every thread shares one
//! [`FlushService`]: logfiles are serialised by `flock(2)`, so flushbed's
//! connections, and a real Postfix's processes on the same spool, exclude
//! each other exactly where Postfix's do.
//!
//! - [`UnixConnection`]: a client on the socket, its waits for input
//!   bounded by the profile's read timeout and cut short when the server
//!   stops.
//! - [`QmgrTrigger`]: triggers to the queue manager's `public/qmgr`, as
//!   Postfix's `mail_trigger()` sends them.
//! - [`Server`]: binds the socket, serves until the shutdown flag is
//!   raised ([`stop_on_signals`] raises it on SIGTERM and SIGINT), then
//!   stops.
//!
//! Stopping: the server stops accepting and removes its socket, so that
//! new clients are refused at once. A client that had connected but was
//! not yet accepted waits until the requests in progress are done, and
//! then finds its connection closed unannounced.
//! Every connection in progress finishes its request; one still waiting
//! for its client's input gets [`STOP_GRACE`] more to send it, and then
//! ends as after a read timeout: as the real server does then, a client
//! that sent nothing is answered BAD, one cut off mid-request nothing at
//! all. Only then does
//! [`Server::run`] return. A logfile line is written whole or not at all,
//! so a stop never leaves one half-written.
//!
//! A fatal error (what would make Postfix's flush process die) ends only
//! its own connection, without a reply, and is logged as
//! [`FLUSH_PROCESS_DIED`]; the next connection is served as by the fresh
//! process the master would start.

use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use flushbed_vocab::{Profile, Trigger};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType};
use tracing::{debug, error, info, warn};

use crate::protocol;
use crate::{Connection, ConnectionEnd, FlushService, TriggerSink};

/// How long Postfix waits for a client by default (`ipc_timeout`): the
/// `postfix` profile's read timeout unless `main.cf` says otherwise.
pub const POSTFIX_IPC_TIMEOUT: Duration = protocol::POSTFIX_READ_WAIT;

/// The `strict` profile's longest wait for a client's input, so that idle
/// clients cannot pin connections for an hour.
pub const STRICT_READ_TIMEOUT: Duration = protocol::STRICT_READ_WAIT;

/// How many connections are served at once; more wait in the listen
/// queue. Postfix's `default_process_limit` is 100.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100;

/// How long a client that is still sending its request when the server
/// stops may go on sending.
pub const STOP_GRACE: Duration = Duration::from_secs(1);

/// What the log says when a request ends as Postfix's flush process would
/// die: the message of the one error event per such request.
pub const FLUSH_PROCESS_DIED: &str = "flush process died";

/// How often blocked waits look at the shutdown flag.
const POLL_SLICE: Duration = Duration::from_millis(100);

/// The read timeout a profile gives a client, given `ipc_timeout`: the
/// real server's for `postfix`, never more than [`STRICT_READ_TIMEOUT`]
/// for `strict`.
pub fn read_timeout(profile: Profile, ipc_timeout: Duration) -> Duration {
    match profile {
        Profile::Postfix => ipc_timeout,
        Profile::Strict => ipc_timeout.min(STRICT_READ_TIMEOUT),
    }
}

/// How the server listens.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The socket, normally `$queue_directory/public/flush`.
    pub socket_path: PathBuf,
    /// The longest wait for a client's input; the service's own bound
    /// applies too, whichever is shorter.
    pub read_timeout: Duration,
    /// How many connections are served at once.
    pub max_connections: usize,
}

impl ServerConfig {
    /// The defaults of a profile: its read timeout with Postfix's default
    /// `ipc_timeout`, and Postfix's process limit.
    pub fn new(socket_path: PathBuf, profile: Profile) -> ServerConfig {
        ServerConfig {
            socket_path,
            read_timeout: read_timeout(profile, POSTFIX_IPC_TIMEOUT),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// When the server began to stop; unset while it serves.
type StopTime = Arc<OnceLock<Instant>>;

/// A client connection on a UNIX-domain stream socket. Every wait for
/// input is bounded by the read timeout and ends [`STOP_GRACE`] after the
/// server began to stop; either end is a timeout, which the protocol takes
/// as the end of input (and Postfix's stream then writes no reply).
///
/// Waits are `poll(2)` calls, never socket options: input that is already
/// there is read at once, and a connection costs no `setsockopt`.
pub struct UnixConnection {
    stream: UnixStream,
    /// The server's bound.
    read_timeout: Duration,
    /// The wait in force: the server's bound or the service's, the shorter.
    wait: Duration,
    stopping: StopTime,
}

impl UnixConnection {
    /// A connection whose waits for input last at most `read_timeout`.
    pub fn new(stream: UnixStream, read_timeout: Duration) -> io::Result<UnixConnection> {
        Ok(UnixConnection::serving(
            stream,
            read_timeout,
            Arc::default(),
        ))
    }

    fn serving(stream: UnixStream, read_timeout: Duration, stopping: StopTime) -> UnixConnection {
        UnixConnection {
            stream,
            read_timeout,
            wait: read_timeout,
            stopping,
        }
    }

    /// Waits until input (or the client's close) is there, as Postfix's
    /// `read_wait()` does, in slices so that a stop is seen.
    fn wait_readable(&self) -> io::Result<()> {
        let deadline = Instant::now() + self.wait;
        loop {
            let now = Instant::now();
            let stop = self.stopping.get().map(|since| *since + STOP_GRACE);
            let until = stop.map_or(deadline, |stop| stop.min(deadline));
            if now >= until {
                let why = if stop.is_some_and(|stop| stop <= deadline) {
                    "server stopping: no more input awaited"
                } else {
                    "timeout waiting for input"
                };
                return Err(io::Error::new(io::ErrorKind::TimedOut, why));
            }
            if self.poll(PollFlags::IN, (until - now).min(POLL_SLICE))? {
                return Ok(());
            }
        }
    }

    /// Waits until the client can take more of the reply, at most the read
    /// timeout: a client that never reads must not hold a connection for
    /// ever. A stop does not cut this short; the request is done by now.
    fn wait_writable(&self) -> io::Result<()> {
        let deadline = Instant::now() + self.read_timeout.max(POLL_SLICE);
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "timeout writing the reply",
                ));
            }
            if self.poll(PollFlags::OUT, deadline - now)? {
                return Ok(());
            }
        }
    }

    /// One `poll(2)` of the socket for `events`; false when `slice` passed
    /// first. Any event counts: a hang-up or an error is for the read or
    /// the write that follows to report.
    fn poll(&self, events: PollFlags, slice: Duration) -> io::Result<bool> {
        // At least a millisecond, so that a wait never spins; a wait too
        // long for a timespec goes a second at a time.
        let slice = slice.max(Duration::from_millis(1));
        let timeout = Timespec::try_from(slice).unwrap_or(Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        });
        let mut fds = [PollFd::new(&self.stream, events)];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(ready) => Ok(ready > 0),
            Err(rustix::io::Errno::INTR) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

impl Connection for UnixConnection {
    fn wait_and_peek(&mut self) -> io::Result<usize> {
        self.wait_readable()?;

        // Count what is waiting without consuming it, as peekfd() does.
        let waiting = rustix::io::ioctl_fionread(&self.stream)?;
        Ok(usize::try_from(waiting).unwrap_or(usize::MAX))
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Input already there is taken without a wait.
        loop {
            match rustix::net::recv(&self.stream, &mut *buf, RecvFlags::DONTWAIT) {
                Ok((n, _)) => return Ok(n),
                Err(rustix::io::Errno::AGAIN) => self.wait_readable()?,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        // NOSIGNAL: a client gone before its reply is an error, not SIGPIPE.
        let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
        while !buf.is_empty() {
            match rustix::net::send(&self.stream, buf, flags) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(rustix::io::Errno::AGAIN) => self.wait_writable()?,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.wait = timeout.map_or(self.read_timeout, |t| t.min(self.read_timeout));
        Ok(())
    }
}

/// Sends triggers to the queue manager's `public/qmgr` as Postfix's
/// `mail_trigger()` does: to a UNIX socket the byte then a NUL, to a FIFO
/// the byte alone, never waiting for a busy queue manager. A queue manager
/// that is not there is a warning, never the request's failure.
#[derive(Debug, Clone)]
pub struct QmgrTrigger {
    path: PathBuf,
}

impl QmgrTrigger {
    /// Triggers to `$queue_directory/public/qmgr`.
    pub fn new(queue_directory: &Path) -> QmgrTrigger {
        QmgrTrigger {
            path: queue_directory.join("public").join("qmgr"),
        }
    }

    /// The queue manager's trigger endpoint.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn deliver(&self, trigger: Trigger) -> io::Result<()> {
        let kind = std::fs::metadata(&self.path)?.file_type();
        if kind.is_socket() {
            // Non-blocking: a queue manager whose listen queue is full makes
            // the connect fail instead of holding up the request.
            let fd = rustix::net::socket_with(
                AddressFamily::UNIX,
                SocketType::STREAM,
                SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
                None,
            )?;
            rustix::net::connect(&fd, &SocketAddrUnix::new(&self.path)?)?;
            let stream = UnixStream::from(fd);
            (&stream).write_all(&[trigger.byte(), 0])
        } else if kind.is_fifo() {
            // Non-blocking, so that a FIFO nobody reads fails at once.
            let fifo = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(&self.path)?;
            (&fifo).write_all(&[trigger.byte()])
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "neither a socket nor a FIFO",
            ))
        }
    }
}

impl TriggerSink for QmgrTrigger {
    fn send(&self, trigger: Trigger) {
        match self.deliver(trigger) {
            Ok(()) => debug!(
                qmgr = %self.path.display(),
                trigger = %(trigger.byte() as char),
                "trigger sent"
            ),
            Err(e) => warn!(
                qmgr = %self.path.display(),
                trigger = %(trigger.byte() as char),
                error = %e,
                "trigger not delivered to the queue manager"
            ),
        }
    }
}

/// Raises `shutdown` on SIGTERM and SIGINT, instead of the process dying
/// mid-request.
pub fn stop_on_signals(shutdown: &Arc<AtomicBool>) -> io::Result<()> {
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(shutdown))?;
    }
    Ok(())
}

/// The flush threads, each accepting its own connections on the shared
/// socket, as Postfix's flush processes do on the master's. A thread that
/// has served a connection goes back to accepting: starting and ending a
/// thread costs the machine more than an `add` does. The pool grows, as
/// the master starts processes, only when the last thread waiting in
/// `accept(2)` takes a connection, so there is one thread more than the
/// connections served at once, never more than `max_connections` in all;
/// beyond that, clients wait in the listen queue.
struct Pool {
    listener: UnixListener,
    service: Arc<FlushService>,
    read_timeout: Duration,
    max_threads: usize,
    stopping: StopTime,
    /// Threads waiting in `accept(2)`, or started and about to.
    idle: AtomicUsize,
    /// Threads alive, counted under the lock so that a stop can wait for
    /// the last one; changed only when one starts or ends.
    threads: Mutex<usize>,
    ended: Condvar,
}

impl Pool {
    /// Starts one more flush thread, if the limit allows and the server
    /// is not stopping. The thread counts as waiting from the start.
    fn grow(self: &Arc<Pool>) -> io::Result<()> {
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        if *threads >= self.max_threads || self.stopping.get().is_some() {
            return Ok(());
        }
        self.idle.fetch_add(1, Ordering::SeqCst);
        let pool = Arc::clone(self);
        let spawned = thread::Builder::new()
            .name("flush".to_string())
            .spawn(move || pool.accept_and_serve());
        match spawned {
            Ok(_) => {
                *threads += 1;
                Ok(())
            }
            Err(e) => {
                self.idle.fetch_sub(1, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    /// A flush thread's life: accept, serve, and again, until the stop.
    fn accept_and_serve(self: Arc<Pool>) {
        while self.stopping.get().is_none() {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    // Out of descriptors, say: wait rather than spin.
                    warn!(error = %e, "accept failed");
                    thread::sleep(POLL_SLICE);
                    continue;
                }
            };

            // The last thread waiting has taken a connection: start one to
            // wait in its place.
            if self.idle.fetch_sub(1, Ordering::SeqCst) == 1 {
                if let Err(e) = self.grow() {
                    warn!(error = %e, "cannot start a flush thread");
                }
            }
            serve_one(&self.service, stream, self.read_timeout, &self.stopping);
            self.idle.fetch_add(1, Ordering::SeqCst);
        }

        self.idle.fetch_sub(1, Ordering::SeqCst);
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        *threads -= 1;
        self.ended.notify_all();
    }

    /// Waits until every flush thread has ended.
    fn wait_ended(&self) {
        let threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        let _none = self
            .ended
            .wait_while(threads, |threads| *threads > 0)
            .unwrap_or_else(|e| e.into_inner());
    }
}

/// A listening flush server.
pub struct Server {
    listener: UnixListener,
    /// The socket's inode, so that a stop removes only our own socket.
    socket_ino: u64,
    service: Arc<FlushService>,
    config: ServerConfig,
}

impl Server {
    /// Binds the socket with mode 0666, as the master makes a public
    /// service's socket, so that every local user's `postqueue` and the
    /// `postfix` user's processes can connect. A stale socket (nobody
    /// listening) is replaced; a live one is an error.
    pub fn bind(service: Arc<FlushService>, config: ServerConfig) -> io::Result<Server> {
        let path = &config.socket_path;
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            match UnixStream::connect(path) {
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("a server is listening on {}", path.display()),
                    ))
                }
                Err(_) => {
                    debug!(socket = %path.display(), "stale socket removed");
                    std::fs::remove_file(path)?;
                }
            }
        }

        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        let socket_ino = std::fs::symlink_metadata(path)?.ino();

        // accept() then returns now and then, to see the shutdown flag.
        rustix::net::sockopt::set_socket_timeout(
            &listener,
            rustix::net::sockopt::Timeout::Recv,
            Some(POLL_SLICE),
        )?;
        info!(socket = %path.display(), "listening");
        Ok(Server {
            listener,
            socket_ino,
            service,
            config,
        })
    }

    /// The socket the server listens on.
    pub fn socket_path(&self) -> &Path {
        &self.config.socket_path
    }

    /// Serves connections until `shutdown` is raised, then stops: no new
    /// connection, the socket removed, every request in progress finished.
    pub fn run(self, shutdown: &AtomicBool) -> io::Result<()> {
        let Server {
            listener,
            socket_ino,
            service,
            config,
        } = self;
        let pool = Arc::new(Pool {
            listener,
            service,
            read_timeout: config.read_timeout,
            // At least one thread, or nothing would ever be served.
            max_threads: config.max_connections.max(1),
            stopping: Arc::default(),
            idle: AtomicUsize::new(0),
            threads: Mutex::new(0),
            ended: Condvar::new(),
        });
        pool.grow()?;

        // The flush threads accept for themselves; this one only watches
        // the flag, which a signal handler can do no more than raise.
        while !shutdown.load(Ordering::SeqCst) {
            thread::sleep(POLL_SLICE);
        }

        // New clients are refused from here on instead of waiting; threads
        // in accept(2) see the stop within a slice and end.
        let _ = pool.stopping.set(Instant::now());
        info!(socket = %config.socket_path.display(), "stopping: finishing the requests in progress");
        remove_own_socket(&config.socket_path, socket_ino);
        pool.wait_ended();
        info!(socket = %config.socket_path.display(), "stopped");
        Ok(())
    }
}

fn remove_own_socket(path: &Path, ino: u64) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.ino() == ino => {
            if let Err(e) = std::fs::remove_file(path) {
                warn!(socket = %path.display(), error = %e, "cannot remove socket");
            }
        }
        Ok(_) => warn!(socket = %path.display(), "socket replaced by another, left alone"),
        Err(e) => debug!(socket = %path.display(), error = %e, "socket already gone"),
    }
}

fn serve_one(service: &FlushService, stream: UnixStream, read_timeout: Duration, stop: &StopTime) {
    let mut conn = UnixConnection::serving(stream, read_timeout, Arc::clone(stop));

    // A panic ends only its own connection, as a fatal error would.
    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        service.serve_connection(&mut conn)
    }));
    match served {
        Ok(ConnectionEnd::Done) => debug!("connection done"),
        Ok(ConnectionEnd::Fatal(why)) => error!(why = %why, "{}", FLUSH_PROCESS_DIED),
        Err(_) => error!(why = "panic", "{}", FLUSH_PROCESS_DIED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn strict_never_waits_longer_than_its_bound() {
        let hour = Duration::from_secs(3600);
        assert_eq!(read_timeout(Profile::Strict, hour), STRICT_READ_TIMEOUT);
        assert_eq!(read_timeout(Profile::Postfix, hour), hour);
        let short = Duration::from_secs(6);
        assert_eq!(read_timeout(Profile::Strict, short), short);
        assert_eq!(read_timeout(Profile::Postfix, short), short);
    }

    #[test]
    fn a_wait_for_input_times_out_at_the_read_timeout() {
        let (_client, server) = UnixStream::pair().unwrap();
        let mut conn = UnixConnection::new(server, Duration::from_millis(50)).unwrap();
        let started = Instant::now();
        let err = conn.wait_and_peek().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn the_service_can_shorten_the_wait_but_not_lengthen_it() {
        let (_client, server) = UnixStream::pair().unwrap();
        let mut conn = UnixConnection::new(server, Duration::from_millis(40)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(3600)))
            .unwrap();
        assert_eq!(conn.wait, Duration::from_millis(40));
        conn.set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        assert_eq!(conn.wait, Duration::from_millis(10));
    }

    #[test]
    fn peeking_counts_what_is_waiting_without_consuming_it() {
        let (client, server) = UnixStream::pair().unwrap();
        let mut conn = UnixConnection::new(server, Duration::from_secs(1)).unwrap();
        (&client).write_all(b"W\0").unwrap();
        assert_eq!(conn.wait_and_peek().unwrap(), 2);
        let mut buf = [0u8; 8];
        assert_eq!(conn.read(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"W\0");
    }

    #[test]
    fn a_closed_client_is_seen_as_no_input_at_once() {
        let (client, server) = UnixStream::pair().unwrap();
        drop(client);
        let mut conn = UnixConnection::new(server, Duration::from_secs(5)).unwrap();
        let started = Instant::now();
        assert_eq!(conn.wait_and_peek().unwrap(), 0);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_stop_cuts_a_wait_for_input_after_the_grace() {
        let (_client, server) = UnixStream::pair().unwrap();
        let stop: StopTime = Arc::default();
        let mut conn =
            UnixConnection::serving(server, Duration::from_secs(3600), Arc::clone(&stop));
        let _ = stop.set(Instant::now() - STOP_GRACE);
        let err = conn.read(&mut [0u8; 4]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    /// A server on a fresh spool, and the flag that stops it.
    fn serving(dir: &Path) -> (Server, Arc<AtomicBool>) {
        serving_at_most(dir, DEFAULT_MAX_CONNECTIONS)
    }

    /// A server on a fresh spool serving at most `max_connections` at once.
    fn serving_at_most(dir: &Path, max_connections: usize) -> (Server, Arc<AtomicBool>) {
        let mut main =
            flushbed_vocab::MainCf::parse("fast_flush_domains = example.com\n", "main.cf").unwrap();
        main.set("queue_directory", dir.to_str().unwrap());
        let config = flushbed_vocab::FlushConfig::from_main_cf(&main, &Default::default()).unwrap();
        let service = FlushService::new(
            &config,
            Profile::Strict,
            Arc::new(crate::ManualClock::new(1_800_000_000)),
            Arc::new(crate::RecordingSink::default()),
        )
        .unwrap();
        let socket = dir.join("public/flush");
        let config = ServerConfig {
            max_connections,
            ..ServerConfig::new(socket, Profile::Strict)
        };
        let server = Server::bind(Arc::new(service), config);
        (server.unwrap(), Arc::new(AtomicBool::new(false)))
    }

    #[test]
    fn clients_beyond_the_connection_limit_wait_in_the_listen_queue() {
        let dir = tempfile::tempdir().unwrap();
        let (server, shutdown) = serving_at_most(dir.path(), 2);
        let socket = server.socket_path().to_path_buf();
        let running = {
            let shutdown = Arc::clone(&shutdown);
            thread::spawn(move || server.run(&shutdown))
        };
        let announced = |client: &mut UnixStream| {
            let mut announcement = [0u8; protocol::ANNOUNCEMENT.len()];
            client.read_exact(&mut announcement).is_ok()
        };

        let mut first = UnixStream::connect(&socket).unwrap();
        assert!(announced(&mut first));
        let mut second = UnixStream::connect(&socket).unwrap();
        assert!(announced(&mut second));
        let mut third = UnixStream::connect(&socket).unwrap();
        third
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(!announced(&mut third), "a third connection was served");

        // The first one's end frees its thread for the one waiting.
        first
            .write_all(b"request\0add\0site\0example.com\0queue_id\0ID1\0\0")
            .unwrap();
        let mut reply = Vec::new();
        first.read_to_end(&mut reply).unwrap();
        assert!(reply.ends_with(b"status\x000\x00\x00"));
        third
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert!(announced(&mut third));

        shutdown.store(true, Ordering::SeqCst);
        running.join().unwrap().unwrap();
    }

    #[test]
    fn a_request_already_sent_is_read_whole_in_one_read() {
        let (client, server) = UnixStream::pair().unwrap();
        let mut conn = UnixConnection::new(server, Duration::from_secs(1)).unwrap();
        let request = b"request\0add\0site\0example.com\0queue_id\0ID1\0\0";
        (&client).write_all(request).unwrap();
        assert_eq!(conn.wait_and_peek().unwrap(), request.len());
        let mut buf = [0u8; 4096];
        assert_eq!(conn.read(&mut buf).unwrap(), request.len());
    }

    #[test]
    fn a_live_socket_is_not_taken_over_and_a_stale_one_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = serving(dir.path());
        let socket = dir.path().join("public/flush");
        let mut main =
            flushbed_vocab::MainCf::parse("fast_flush_domains = example.com\n", "main.cf").unwrap();
        main.set("queue_directory", dir.path().to_str().unwrap());
        let config = flushbed_vocab::FlushConfig::from_main_cf(&main, &Default::default()).unwrap();
        let service = Arc::new(
            FlushService::new(
                &config,
                Profile::Strict,
                Arc::new(crate::ManualClock::new(0)),
                Arc::new(crate::RecordingSink::default()),
            )
            .unwrap(),
        );
        let taken = Server::bind(
            Arc::clone(&service),
            ServerConfig::new(socket.clone(), Profile::Strict),
        );
        assert_eq!(
            taken.err().map(|e| e.kind()),
            Some(io::ErrorKind::AddrInUse)
        );

        // Gone without removing its socket, as after a crash.
        drop(first);
        assert!(socket.exists());
        assert!(Server::bind(service, ServerConfig::new(socket, Profile::Strict)).is_ok());
    }

    /// The thread IDs of this process's threads named `flush`.
    fn flush_threads() -> std::collections::BTreeSet<String> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(Result::ok)
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "flush")
            })
            .map(|t| t.file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_thread_of_one_connection_serves_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let (server, shutdown) = serving(dir.path());
        let socket = server.socket_path().to_path_buf();
        let running = {
            let shutdown = Arc::clone(&shutdown);
            thread::spawn(move || server.run(&shutdown))
        };
        let add = |n: usize| {
            let mut client = UnixStream::connect(&socket).unwrap();
            let request = format!("request\0add\0site\0example.com\0queue_id\0ID{n}\0\0");
            client.write_all(request.as_bytes()).unwrap();
            let mut reply = Vec::new();
            client.read_to_end(&mut reply).unwrap();
            assert!(reply.ends_with(b"status\x000\x00\x00"));
            // Time for the thread to go back to waiting (or to end).
            thread::sleep(Duration::from_millis(50));
        };

        // Other tests run servers too: only threads new since are ours.
        let before = flush_threads();
        add(0);
        let first: Vec<String> = flush_threads().difference(&before).cloned().collect();
        for n in 1..5 {
            add(n);
        }
        let after = flush_threads();
        assert!(
            first.iter().any(|tid| after.contains(tid)),
            "the thread that served the first connection ended"
        );

        shutdown.store(true, Ordering::SeqCst);
        running.join().unwrap().unwrap();
    }

    #[test]
    fn concurrent_clients_get_no_more_threads_than_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let (server, shutdown) = serving(dir.path());
        let socket = server.socket_path().to_path_buf();
        let running = {
            let shutdown = Arc::clone(&shutdown);
            thread::spawn(move || server.run(&shutdown))
        };

        let before = flush_threads();
        let clients = 8;
        thread::scope(|scope| {
            for c in 0..clients {
                let socket = &socket;
                scope.spawn(move || {
                    for n in 0..25 {
                        let mut client = UnixStream::connect(socket).unwrap();
                        let request =
                            format!("request\0add\0site\0example.com\0queue_id\0C{c}N{n}\0\0");
                        client.write_all(request.as_bytes()).unwrap();
                        let mut reply = Vec::new();
                        client.read_to_end(&mut reply).unwrap();
                    }
                });
            }
        });
        // Other tests' servers may start a few threads meanwhile.
        let new = flush_threads().difference(&before).count();
        assert!(new <= clients + 8, "{new} threads for {clients} clients");

        shutdown.store(true, Ordering::SeqCst);
        running.join().unwrap().unwrap();
    }

    #[test]
    fn a_stop_finishes_the_request_in_progress_then_removes_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let (server, shutdown) = serving(dir.path());
        let socket = server.socket_path().to_path_buf();
        let running = {
            let shutdown = Arc::clone(&shutdown);
            thread::spawn(move || server.run(&shutdown))
        };

        // One client is half-way through its request when the stop comes;
        // it finishes within the grace and is answered.
        let mut client = UnixStream::connect(&socket).unwrap();
        client
            .write_all(b"request\0add\0site\0example.com\0")
            .unwrap();
        thread::sleep(Duration::from_millis(200));
        shutdown.store(true, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(300));
        assert!(!socket.exists(), "new clients must be refused at once");
        client.write_all(b"queue_id\0ABC123\0\0").unwrap();
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).unwrap();
        assert_eq!(reply, b"protocol\0queue_flush_protocol\0\0status\x000\0\0");

        running.join().unwrap().unwrap();
        let logfile = std::fs::read(dir.path().join("flush/example_com")).unwrap();
        assert_eq!(logfile, b"ABC123\n");
    }

    #[test]
    fn a_stop_answers_a_client_that_sent_nothing_as_a_read_timeout_does() {
        let dir = tempfile::tempdir().unwrap();
        let (server, shutdown) = serving(dir.path());
        let socket = server.socket_path().to_path_buf();
        let running = {
            let shutdown = Arc::clone(&shutdown);
            thread::spawn(move || server.run(&shutdown))
        };
        let mut idle = UnixStream::connect(&socket).unwrap();
        let mut announcement = [0u8; protocol::ANNOUNCEMENT.len()];
        idle.read_exact(&mut announcement).unwrap();

        let stopped = Instant::now();
        shutdown.store(true, Ordering::SeqCst);
        running.join().unwrap().unwrap();
        assert!(stopped.elapsed() < STOP_GRACE + Duration::from_secs(2));
        let mut rest = Vec::new();
        idle.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"status\x003\0\0");
    }

    #[test]
    fn a_stop_cuts_off_a_client_that_stalls_mid_request_without_a_reply() {
        let dir = tempfile::tempdir().unwrap();
        let (server, shutdown) = serving(dir.path());
        let socket = server.socket_path().to_path_buf();
        let running = {
            let shutdown = Arc::clone(&shutdown);
            thread::spawn(move || server.run(&shutdown))
        };
        let mut stalled = UnixStream::connect(&socket).unwrap();
        stalled
            .write_all(b"request\0add\0site\0example.com\0")
            .unwrap();
        thread::sleep(Duration::from_millis(200));

        shutdown.store(true, Ordering::SeqCst);
        running.join().unwrap().unwrap();
        let mut rest = Vec::new();
        stalled.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, protocol::ANNOUNCEMENT);
        assert!(!dir.path().join("flush/example_com").exists());
    }

    #[test]
    fn a_trigger_to_a_socket_is_the_byte_then_a_nul() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("public")).unwrap();
        let qmgr = QmgrTrigger::new(dir.path());
        let listener = UnixListener::bind(qmgr.path()).unwrap();
        qmgr.deliver(Trigger::FlushDead).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"F\0");
    }

    #[test]
    fn a_trigger_to_a_fifo_is_the_byte_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("public")).unwrap();
        let qmgr = QmgrTrigger::new(dir.path());
        rustix::fs::mknodat(
            rustix::fs::CWD,
            qmgr.path(),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(qmgr.path())
            .unwrap();
        qmgr.deliver(Trigger::ScanIncoming).unwrap();
        let mut got = [0u8; 4];
        assert_eq!(reader.read(&mut got).unwrap(), 1);
        assert_eq!(got[0], b'I');
    }

    #[test]
    fn a_missing_queue_manager_is_an_error_for_the_sink_to_log() {
        let dir = tempfile::tempdir().unwrap();
        let qmgr = QmgrTrigger::new(dir.path());
        assert_eq!(
            qmgr.deliver(Trigger::ScanIncoming).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        // Through the sink it is only logged.
        qmgr.send(Trigger::ScanIncoming);
    }

    #[test]
    fn a_fifo_nobody_reads_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("public")).unwrap();
        let qmgr = QmgrTrigger::new(dir.path());
        rustix::fs::mknodat(
            rustix::fs::CWD,
            qmgr.path(),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(qmgr.deliver(Trigger::ScanIncoming).is_err());
    }
}
