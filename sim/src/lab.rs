//! Private real Postfix instances: the oracle flushbed is held to.
//!
//! An [`Instance`] is a Postfix 3.7 mail system of its own under a
//! temporary directory: its own configuration directory (`main.cf`,
//! `master.cf` and any files the configuration names), its own
//! `queue_directory`, its own `data_directory` (which holds the master's
//! lock) and a maillog inside it. It listens only on loopback, and it never
//! touches the system instance: every `postfix` command names its own
//! configuration directory with `-c`.
//!
//! Two shapes of `master.cf` are offered ([`Services`]):
//!
//! - flush only: the real flush server and `postlog`, nothing else. Its
//!   wakeup is 0, since the lockstep runner plays the master's wakeups
//!   itself, and nothing listens on `public/qmgr`: whoever drives the
//!   flush server listens there to see its triggers.
//! - a whole mail system: an SMTP server on a loopback port, pickup,
//!   cleanup, the queue manager, the delivery agents, and either the real
//!   flush server or none at all (when another flush server is to listen on
//!   `public/flush` in its place).
//!
//! The flush server runs as user `postfix`; files that are planted in the
//! spool must belong to it ([`PostfixUser::chown`]), or its `utime` and
//! `rename` fail. Every directory above the instance is traversable by that
//! user (the master cannot open its lock file otherwise), so the temporary
//! directory is opened up to mode 0755 at once.
//!
//! An instance is stopped when it is dropped, so that none is ever left
//! running, and its directory is removed after it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flushbed_vocab::config::{ConfigError, Environment};
use flushbed_vocab::{FlushConfig, MainCf};
use thiserror::Error;
use tracing::{debug, warn};

/// The command that starts and stops a Postfix instance.
pub const POSTFIX_COMMAND: &str = "/usr/sbin/postfix";

/// The real flush server's program, where Debian installs it.
pub const FLUSH_PROGRAM: &str = "/usr/lib/postfix/sbin/flush";

/// How long `postfix start` and `postfix stop` may take. Stop waits five
/// seconds for the master before it kills it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The command that writes a line to the instance's maillog, through the
/// same logging service as the flush server.
pub const POSTLOG_COMMAND: &str = "/usr/sbin/postlog";

/// How long the master may take to open `public/flush` after a start.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);

/// What can go wrong with a private instance.
#[derive(Debug, Error)]
pub enum LabError {
    #[error("Postfix is not installed: {} is missing", .0.display())]
    NotInstalled(PathBuf),
    #[error("starting a private Postfix needs root (the master starts as root)")]
    NotRoot,
    #[error("user postfix is not in /etc/passwd")]
    NoPostfixUser,
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the instance's main.cf: {0}")]
    Config(#[from] ConfigError),
    #[error("postfix -c {} {action}: {why}; maillog: {maillog}", config_dir.display())]
    Command {
        action: &'static str,
        config_dir: PathBuf,
        why: String,
        maillog: String,
    },
    #[error("no listener on {} after {waited:?}; maillog: {maillog}", socket.display())]
    NoSocket {
        socket: PathBuf,
        waited: Duration,
        maillog: String,
    },
}

fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LabError + 'a {
    move |source| LabError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Whether a real Postfix is installed here: `Ok` or the missing program.
pub fn postfix_installed() -> Result<(), LabError> {
    for program in [POSTFIX_COMMAND, FLUSH_PROGRAM] {
        if !Path::new(program).exists() {
            return Err(LabError::NotInstalled(PathBuf::from(program)));
        }
    }
    Ok(())
}

/// Whether private instances can run here: Postfix installed, and root to
/// start them.
pub fn instances_possible() -> Result<(), LabError> {
    postfix_installed()?;
    if !rustix::process::geteuid().is_root() {
        return Err(LabError::NotRoot);
    }
    PostfixUser::lookup().map(|_| ())
}

/// The mail owner, `postfix`: who the flush server runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostfixUser {
    pub uid: u32,
    pub gid: u32,
}

impl PostfixUser {
    /// Looks the user up in `/etc/passwd`.
    pub fn lookup() -> Result<PostfixUser, LabError> {
        let path = Path::new("/etc/passwd");
        let passwd = fs::read_to_string(path).map_err(io_error("reading", path))?;
        parse_passwd_entry(&passwd, "postfix").ok_or(LabError::NoPostfixUser)
    }

    /// Gives a file or directory to the mail owner.
    pub fn chown(&self, path: &Path) -> Result<(), LabError> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .map_err(io_error("giving to postfix", path))
    }
}

/// The uid and gid of `user` in passwd(5) text.
fn parse_passwd_entry(passwd: &str, user: &str) -> Option<PostfixUser> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != user {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(PostfixUser { uid, gid })
    })
}

/// Which services the instance's `master.cf` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Services {
    /// Only the real flush server (wakeup 0) and `postlog`. `verbose` runs
    /// it as `flush -v`, so that the maillog shows every attribute read.
    FlushOnly { verbose: bool },
    /// A whole mail system: `smtpd` on `127.0.0.1:smtpd_port`, pickup,
    /// cleanup, the queue manager, the delivery agents and the rest of a
    /// stock `master.cf`; with the real flush server (wakeup 0) when
    /// `flush` is true, and with no flush service at all otherwise.
    MailSystem { smtpd_port: u16, flush: bool },
}

/// What an instance is made of: the configuration a scenario (or a test)
/// gives, and the services to run.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    /// `main.cf` lines of the caller; the instance adds its own paths and
    /// loopback settings, which win over these.
    pub main_cf: String,
    /// Files for the configuration directory, by name (pattern files,
    /// `texthash:` tables).
    pub files: BTreeMap<String, Vec<u8>>,
    /// The host name the configuration assumes: `myhostname` when
    /// `main_cf` does not set it.
    pub hostname: String,
    pub services: Services,
}

/// The parameters every private instance sets, whatever the caller said:
/// its own directories, the mail owner, loopback only.
fn instance_parameters(root: &Path) -> Vec<(&'static str, String)> {
    let text = |p: PathBuf| p.to_string_lossy().into_owned();
    vec![
        ("queue_directory", text(root.join("spool"))),
        ("data_directory", text(root.join("data"))),
        ("mail_owner", "postfix".to_string()),
        ("setgid_group", "postdrop".to_string()),
        ("inet_interfaces", "loopback-only".to_string()),
        ("inet_protocols", "ipv4".to_string()),
        ("maillog_file", text(root.join("maillog"))),
        ("maillog_file_prefixes", text(root.to_path_buf())),
    ]
}

/// `main.cf` as the instance writes it: the caller's parameters, the
/// host name unless the caller set `myhostname`, a short
/// `service_throttle_time` unless the caller set one, then the instance's
/// own parameters.
fn instance_main_cf(spec: &InstanceSpec, root: &Path) -> Result<MainCf, LabError> {
    let mut main = MainCf::parse(&spec.main_cf, "main.cf")?;
    if main.get("myhostname").is_none() {
        main.set("myhostname", &spec.hostname);
    }

    // A flush process that dies before it has served a request makes the
    // master pause the service for service_throttle_time, 60 s by default.
    if main.get("service_throttle_time").is_none() {
        main.set("service_throttle_time", "2s");
    }
    for (name, value) in instance_parameters(root) {
        main.set(name, &value);
    }
    Ok(main)
}

/// `master.cf` for the services asked for; chroot is off everywhere, since
/// the instance's spool has no chroot jail set up.
fn master_cf(services: &Services) -> String {
    let mut out = String::from(
        "# service type  private unpriv  chroot  wakeup  maxproc command + args\n\
         postlog   unix-dgram n  -       n       -       1       postlogd\n",
    );
    match services {
        Services::FlushOnly { verbose } => {
            let command = if *verbose { "flush -v" } else { "flush" };
            out.push_str(&format!(
                "flush     unix  n       -       n       0       0       {command}\n"
            ));
        }
        Services::MailSystem { smtpd_port, flush } => {
            out.push_str(&format!("127.0.0.1:{smtpd_port} inet n - n - - smtpd\n"));
            out.push_str(MAIL_SYSTEM_SERVICES);
            if *flush {
                out.push_str("flush     unix  n       -       n       0       0       flush\n");
            }
        }
    }
    out
}

/// The services of a stock `master.cf` that a mail system on loopback
/// needs, with chroot off.
const MAIL_SYSTEM_SERVICES: &str = "\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
";

/// A private Postfix instance. Stopped (if running) and removed on drop.
pub struct Instance {
    /// Removed after the instance has stopped, on drop.
    root: tempfile::TempDir,
    config_dir: PathBuf,
    queue_dir: PathBuf,
    maillog: PathBuf,
    main: MainCf,
    hostname: String,
    services: Services,
    user: PostfixUser,
    running: bool,
}

impl Instance {
    /// Writes an instance's directories and configuration; it is not
    /// started yet.
    pub fn create(spec: &InstanceSpec) -> Result<Instance, LabError> {
        instances_possible()?;
        let user = PostfixUser::lookup()?;

        let root = tempfile::Builder::new()
            .prefix("flushbed-postfix.")
            .tempdir_in("/tmp")
            .map_err(io_error("creating", Path::new("/tmp")))?;
        let dir = root.path().to_path_buf();
        let config_dir = dir.join("etc");
        let queue_dir = dir.join("spool");
        let data_dir = dir.join("data");
        let maillog = dir.join("maillog");

        // The master, running as postfix, must reach its lock file below.
        for d in [&dir, &config_dir, &queue_dir] {
            fs::create_dir_all(d).map_err(io_error("creating", d))?;
            fs::set_permissions(d, fs::Permissions::from_mode(0o755))
                .map_err(io_error("opening up", d))?;
        }
        fs::create_dir_all(&data_dir).map_err(io_error("creating", &data_dir))?;
        fs::set_permissions(&data_dir, fs::Permissions::from_mode(0o700))
            .map_err(io_error("closing", &data_dir))?;
        user.chown(&data_dir)?;
        fs::write(&maillog, b"").map_err(io_error("creating", &maillog))?;

        let main = instance_main_cf(spec, &dir)?;
        write_file(&config_dir.join("main.cf"), main.to_text().as_bytes())?;
        write_file(
            &config_dir.join("master.cf"),
            master_cf(&spec.services).as_bytes(),
        )?;
        for (name, content) in &spec.files {
            let path = config_dir.join(name);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(io_error("creating", parent))?;
            }
            write_file(&path, content)?;
        }

        Ok(Instance {
            root,
            config_dir,
            queue_dir,
            maillog,
            main,
            hostname: spec.hostname.clone(),
            services: spec.services.clone(),
            user,
            running: false,
        })
    }

    /// Creates and starts an instance.
    pub fn start(spec: &InstanceSpec) -> Result<Instance, LabError> {
        let mut instance = Instance::create(spec)?;
        instance.start_mail_system()?;
        Ok(instance)
    }

    /// `postfix start`, then waits until `public/flush` takes connections
    /// (when the instance runs a flush server).
    pub fn start_mail_system(&mut self) -> Result<(), LabError> {
        // `postfix start` runs `postfix check`, which makes the queue
        // directories with Postfix's owners and modes.
        self.postfix("start")?;
        self.running = true;
        debug!(instance = %self.config_dir.display(), "postfix started");

        let serves_flush = match self.services {
            Services::FlushOnly { .. } => true,
            Services::MailSystem { flush, .. } => flush,
        };
        if serves_flush {
            self.wait_for_socket(&self.queue_dir.join("public/flush"))?;
        }
        Ok(())
    }

    /// `postfix stop`, and waits until every process of the instance is
    /// gone.
    pub fn stop(&mut self) -> Result<(), LabError> {
        if !self.running {
            return Ok(());
        }
        let result = self.postfix("stop");
        self.running = false;
        self.wait_for_processes_to_end();
        debug!(instance = %self.config_dir.display(), "postfix stopped");
        result
    }

    /// `postfix reload`: the flush processes read `main.cf` afresh.
    pub fn reload(&mut self) -> Result<(), LabError> {
        self.postfix("reload")
    }

    /// The configuration directory (`postfix -c`).
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// The instance's `queue_directory`.
    pub fn queue_dir(&self) -> &Path {
        &self.queue_dir
    }

    /// The instance's directory, holding everything else.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// `main.cf` as the instance's programs read it.
    pub fn main_cf(&self) -> &MainCf {
        &self.main
    }

    /// The mail owner, who must own what is planted in the spool.
    pub fn user(&self) -> PostfixUser {
        self.user
    }

    /// The effective configuration of the instance's flush server.
    pub fn flush_config(&self) -> Result<FlushConfig, LabError> {
        let mut main = self.main.clone();
        let config_dir = self.config_dir.to_string_lossy().into_owned();
        main.set("config_directory", &config_dir);
        let env = Environment {
            hostname: self.hostname.clone(),
            config_directory: config_dir,
        };
        Ok(FlushConfig::from_main_cf(&main, &env)?)
    }

    /// Where the maillog ends now: a mark for [`Instance::maillog_since`].
    pub fn maillog_mark(&self) -> u64 {
        fs::metadata(&self.maillog).map_or(0, |m| m.len())
    }

    /// The maillog from `mark` on, as text (bytes that are not UTF-8 are
    /// replaced).
    pub fn maillog_since(&self, mark: u64) -> String {
        let mut text = Vec::new();
        let read = fs::File::open(&self.maillog).and_then(|mut f| {
            f.seek(SeekFrom::Start(mark))?;
            f.read_to_end(&mut text)
        });
        if let Err(e) = read {
            return format!("(maillog {} unreadable: {e})", self.maillog.display());
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    /// A reader of the maillog from its present end on.
    pub fn maillog_reader(&self) -> MaillogReader {
        MaillogReader {
            config_dir: self.config_dir.clone(),
            maillog: self.maillog.clone(),
            position: self.maillog_mark(),
            markers: 0,
        }
    }

    /// The last lines of the maillog, for a diagnostic.
    pub fn maillog_tail(&self, lines: usize) -> String {
        tail(&self.maillog_since(0), lines)
    }

    /// `postfix -c DIR ACTION`, bounded in time; a failure carries the
    /// command's output and the maillog's end.
    fn postfix(&self, action: &'static str) -> Result<(), LabError> {
        let fail = |why: String| LabError::Command {
            action,
            config_dir: self.config_dir.clone(),
            why,
            maillog: self.maillog_tail(20),
        };
        let out_path = self.root.path().join(format!("postfix-{action}.out"));
        let out = fs::File::create(&out_path).map_err(io_error("creating", &out_path))?;
        let err = out
            .try_clone()
            .map_err(io_error("duplicating", &out_path))?;
        let mut child = Command::new(POSTFIX_COMMAND)
            .arg("-c")
            .arg(&self.config_dir)
            .arg(action)
            .env("MAIL_CONFIG", &self.config_dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| fail(format!("cannot run {POSTFIX_COMMAND}: {e}")))?;

        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(ms(50)),
                Ok(None) => {
                    // Only the command this instance started is ended.
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(fail(format!("no exit after {COMMAND_TIMEOUT:?}")));
                }
                Err(e) => return Err(fail(format!("waiting: {e}"))),
            }
        };
        if status.success() {
            return Ok(());
        }
        let output = fs::read_to_string(&out_path).unwrap_or_default();
        Err(fail(format!("{status}: {}", output.trim())))
    }

    /// Waits until `socket` takes a connection.
    fn wait_for_socket(&self, socket: &Path) -> Result<(), LabError> {
        let started = Instant::now();
        while started.elapsed() < SOCKET_TIMEOUT {
            if UnixStream::connect(socket).is_ok() {
                return Ok(());
            }
            std::thread::sleep(ms(50));
        }
        Err(LabError::NoSocket {
            socket: socket.to_path_buf(),
            waited: SOCKET_TIMEOUT,
            maillog: self.maillog_tail(20),
        })
    }

    /// Waits, a bounded time, until no process runs with this instance's
    /// configuration; one still there is reported, not killed.
    fn wait_for_processes_to_end(&self) {
        let deadline = Instant::now() + SOCKET_TIMEOUT;
        loop {
            let left = processes_of(&self.config_dir);
            if left.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                warn!(instance = %self.config_dir.display(), pids = ?left,
                    "postfix processes still running after stop");
                return;
            }
            std::thread::sleep(ms(50));
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            warn!(instance = %self.config_dir.display(), error = %e, "stopping postfix");
        }
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn write_file(path: &Path, content: &[u8]) -> Result<(), LabError> {
    fs::write(path, content).map_err(io_error("writing", path))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Reads an instance's maillog piece by piece, each piece starting where
/// the last one ended.
pub struct MaillogReader {
    config_dir: PathBuf,
    maillog: PathBuf,
    position: u64,
    markers: u64,
}

impl MaillogReader {
    /// What the maillog holds beyond the last piece, as it is now.
    pub fn read_available(&mut self) -> Result<String, LabError> {
        let mut bytes = Vec::new();
        let mut file = fs::File::open(&self.maillog).map_err(io_error("opening", &self.maillog))?;
        file.seek(SeekFrom::Start(self.position))
            .and_then(|_| file.read_to_end(&mut bytes))
            .map_err(io_error("reading", &self.maillog))?;

        // A line is taken only whole; the rest waits for the next piece.
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |n| n + 1);
        self.position += whole as u64;
        Ok(String::from_utf8_lossy(&bytes[..whole]).into_owned())
    }

    /// What the maillog holds beyond the last piece, up to a line written
    /// now through the instance's own logging service. Every line that a
    /// process of the instance logged before this call is in it: the
    /// logging service writes in the order it is told, and this line is
    /// told last.
    pub fn read_through_now(&mut self) -> Result<String, LabError> {
        self.markers += 1;
        let marker = format!(
            "flushbed lab marker {} {}",
            std::process::id(),
            self.markers
        );
        let config_dir = self.config_dir.clone();
        let fail = |why: String| LabError::Command {
            action: "postlog",
            config_dir: config_dir.clone(),
            why,
            maillog: String::new(),
        };
        let status = Command::new(POSTLOG_COMMAND)
            .arg("-c")
            .arg(&self.config_dir)
            .args(["-t", "flushbed/lab"])
            .arg(&marker)
            .env("MAIL_CONFIG", &self.config_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| fail(format!("cannot run {POSTLOG_COMMAND}: {e}")))?;
        if !status.success() {
            return Err(fail(status.to_string()));
        }

        let started = Instant::now();
        let mut text = String::new();
        loop {
            text.push_str(&self.read_available()?);
            if let Some(at) = text.find(&marker) {
                let start = text[..at].rfind('\n').map_or(0, |n| n + 1);
                let end = text[at..].find('\n').map_or(text.len(), |n| at + n + 1);
                text.replace_range(start..end, "");
                return Ok(text);
            }
            if started.elapsed() > SOCKET_TIMEOUT {
                return Err(fail(format!("\"{marker}\" never reached the maillog")));
            }
            std::thread::sleep(ms(5));
        }
    }
}

/// The pids of the flush processes that maillog text says logged a
/// `fatal:` or `panic:` (each then exits).
pub fn flush_fatal_pids(log: &str) -> BTreeSet<u32> {
    log.lines()
        .filter_map(|line| {
            let rest = line.split("postfix/flush[").nth(1)?;
            let (pid, after) = rest.split_once("]: ")?;
            (after.starts_with("fatal:") || after.starts_with("panic:"))
                .then(|| pid.parse().ok())
                .flatten()
        })
        .collect()
}

/// The pids of the flush processes that maillog text says the master saw
/// end badly: with an exit status, or killed by a signal.
pub fn flush_bad_exit_pids(log: &str) -> BTreeSet<u32> {
    log.lines()
        .filter_map(|line| {
            let rest = line.split("warning: process ").nth(1)?;
            let (program, rest) = rest.split_once(" pid ")?;
            if !program.ends_with("/flush") {
                return None;
            }
            let (pid, how) = rest.split_once(' ')?;
            (how.starts_with("exit status") || how.starts_with("killed by signal"))
                .then(|| pid.parse().ok())
                .flatten()
        })
        .collect()
}

/// Whether maillog text says the master paused the flush service
/// (`service_throttle_time`) after a process died at its start.
pub fn flush_throttled(log: &str) -> bool {
    log.lines()
        .any(|l| l.contains("/flush: bad command startup -- throttling"))
}

/// The pids of the processes whose environment names `config_dir` as
/// `MAIL_CONFIG`: the master passes it on to every process it starts.
pub fn processes_of(config_dir: &Path) -> Vec<u32> {
    let mut wanted = b"MAIL_CONFIG=".to_vec();
    wanted.extend_from_slice(config_dir.as_os_str().as_encoded_bytes());
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var == wanted.as_slice())
        {
            pids.push(pid);
        }
    }
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(main_cf: &str) -> InstanceSpec {
        InstanceSpec {
            main_cf: main_cf.to_string(),
            files: BTreeMap::new(),
            hostname: "scenario.test.invalid".to_string(),
            services: Services::FlushOnly { verbose: false },
        }
    }

    #[test]
    fn passwd_entry_gives_uid_and_gid_of_the_named_user_only() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      postfixx:x:7:7::/:/bin/false\n\
                      postfix:x:102:105::/var/spool/postfix:/usr/sbin/nologin\n";
        assert_eq!(
            parse_passwd_entry(passwd, "postfix"),
            Some(PostfixUser { uid: 102, gid: 105 })
        );
        assert_eq!(parse_passwd_entry(passwd, "nobody"), None);
        assert_eq!(
            parse_passwd_entry("postfix:x:bad:1::/:/\n", "postfix"),
            None
        );
    }

    #[test]
    fn instance_paths_win_over_the_callers_and_the_callers_lines_stay() {
        let root = Path::new("/tmp/flushbed-postfix.x");
        let main = instance_main_cf(
            &spec("queue_directory = /var/spool/postfix\nfast_flush_domains = example.com\n"),
            root,
        )
        .unwrap();
        assert_eq!(
            main.get("queue_directory"),
            Some("/tmp/flushbed-postfix.x/spool")
        );
        assert_eq!(main.get("fast_flush_domains"), Some("example.com"));
        assert_eq!(main.get("inet_interfaces"), Some("loopback-only"));
        assert_eq!(main.get("mydestination"), None, "defaults stay defaults");
    }

    #[test]
    fn host_name_and_throttle_time_are_set_only_when_the_caller_did_not() {
        let root = Path::new("/tmp/i");
        let main = instance_main_cf(&spec(""), root).unwrap();
        assert_eq!(main.get("myhostname"), Some("scenario.test.invalid"));
        assert_eq!(main.get("service_throttle_time"), Some("2s"));

        let main = instance_main_cf(
            &spec("myhostname = mx.test.invalid\nservice_throttle_time = 5s\n"),
            root,
        )
        .unwrap();
        assert_eq!(main.get("myhostname"), Some("mx.test.invalid"));
        assert_eq!(main.get("service_throttle_time"), Some("5s"));
    }

    #[test]
    fn flush_only_master_cf_runs_flush_with_wakeup_zero_and_postlog() {
        let text = master_cf(&Services::FlushOnly { verbose: false });
        let services: Vec<Vec<&str>> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(services.len(), 2);
        assert_eq!(services[0][0], "postlog");
        assert_eq!(
            services[1],
            ["flush", "unix", "n", "-", "n", "0", "0", "flush"]
        );
    }

    #[test]
    fn mail_system_without_flush_has_no_flush_service_and_no_chroot() {
        let text = master_cf(&Services::MailSystem {
            smtpd_port: 10025,
            flush: false,
        });
        assert!(text.contains("127.0.0.1:10025 inet n - n - - smtpd"));
        assert!(text.lines().any(|l| l.starts_with("qmgr ")));
        assert!(!text.lines().any(|l| l.starts_with("flush ")));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields[4], "n", "chroot is off: {line}");
        }
    }

    #[test]
    fn maillog_names_the_flush_processes_that_died_and_the_throttle() {
        let log = "\
Dec 04 09:20:01 h postfix/flush[14856]: fatal: scan_dir_push: open directory flush/x: Not a directory
Dec 04 09:20:02 h postfix/master[14848]: warning: process /usr/lib/postfix/sbin/flush pid 14856 exit status 1
Dec 04 09:20:02 h postfix/master[14848]: warning: /usr/lib/postfix/sbin/flush: bad command startup -- throttling
Dec 04 09:20:03 h postfix/flush[14860]: warning: bad queue id \"x\" in fast flush logfile example_com
Dec 04 09:20:04 h postfix/master[14848]: warning: process /usr/lib/postfix/sbin/smtpd pid 14870 exit status 1
Dec 04 09:20:05 h postfix/master[14848]: warning: process /usr/lib/postfix/sbin/flush pid 14871 killed by signal 9
";
        assert_eq!(flush_fatal_pids(log), BTreeSet::from([14856]));
        assert_eq!(flush_bad_exit_pids(log), BTreeSet::from([14856, 14871]));
        assert!(flush_throttled(log));
        assert!(!flush_throttled(log.lines().next().unwrap_or("")));
        assert!(flush_fatal_pids("").is_empty());
    }

    #[test]
    fn a_maillog_reader_takes_only_whole_lines_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let maillog = dir.path().join("maillog");
        fs::write(&maillog, "one\ntw").unwrap();
        let mut reader = MaillogReader {
            config_dir: dir.path().to_path_buf(),
            maillog: maillog.clone(),
            position: 0,
            markers: 0,
        };
        assert_eq!(reader.read_available().unwrap(), "one\n");
        fs::write(&maillog, "one\ntwo\nthree\n").unwrap();
        assert_eq!(reader.read_available().unwrap(), "two\nthree\n");
        assert_eq!(reader.read_available().unwrap(), "");
    }
}
