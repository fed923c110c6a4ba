//! `flushbed serve` to measure: the `flushbed` binary run as a child
//! process in the `strict` profile, on a spool and configuration directory
//! of its own, listening on `public/flush` as the real server does. It is
//! killed when dropped, and on a stop signal.
//!
//! Also the small process helpers the floor shares: waiting for a socket
//! to take connections, and ending a child the run started.

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::cleanup::{self, Registration};
use crate::spool::Owner;

/// How long a server may take to listen after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The directories of a fresh Postfix-layout spool.
const SPOOL_DIRS: [&str; 9] = [
    "flush", "maildrop", "incoming", "active", "deferred", "hold", "corrupt", "public", "private",
];

/// A running `flushbed serve`.
pub struct ServeProcess {
    root: tempfile::TempDir,
    child: Child,
    _stop: Registration,
}

impl ServeProcess {
    /// Writes `main_cf` (with the spool's own `queue_directory`) into a
    /// fresh configuration directory, starts `flushbed serve` on it and
    /// waits until `public/flush` takes connections.
    pub fn start(flushbed: &Path, main_cf: &str) -> anyhow::Result<ServeProcess> {
        let root = tempfile::Builder::new()
            .prefix("flushbed-bench-serve.")
            .tempdir_in("/tmp")?;
        let (etc, spool) = (root.path().join("etc"), root.path().join("spool"));
        fs::create_dir(&etc)?;
        for dir in SPOOL_DIRS {
            fs::create_dir_all(spool.join(dir))?;
        }
        fs::write(
            etc.join("main.cf"),
            format!("{main_cf}queue_directory = {}\n", spool.display()),
        )?;

        let log = fs::File::create(root.path().join("serve.log"))?;
        let child = Command::new(flushbed)
            .arg("serve")
            .arg("--config")
            .arg(&etc)
            .arg("--profile")
            .arg("strict")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} serve", flushbed.display()))?;
        let pid = child.id() as i32;
        let stop = cleanup::register(move || kill_and_reap(pid));
        let mut serve = ServeProcess {
            root,
            child,
            _stop: stop,
        };

        if let Err(e) = wait_for_socket(&serve.flush_socket()) {
            let exited = serve.child.try_wait().ok().flatten();
            bail!(
                "{e:#}; flushbed serve {}; its log:\n{}",
                exited.map_or("still running".to_string(), |s| s.to_string()),
                serve.log()
            );
        }
        Ok(serve)
    }

    pub fn spool(&self) -> PathBuf {
        self.root.path().join("spool")
    }

    pub fn flush_socket(&self) -> PathBuf {
        self.spool().join("public/flush")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// What the server wrote to its standard output and error.
    pub fn log(&self) -> String {
        fs::read_to_string(self.root.path().join("serve.log")).unwrap_or_default()
    }
}

/// Whoever runs the benchmarks: the owner of what the floor and
/// `flushbed serve` touch.
pub fn current_owner() -> Owner {
    Owner {
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
    }
}

/// Waits until `socket` takes a connection.
pub fn wait_for_socket(socket: &Path) -> anyhow::Result<()> {
    let began = Instant::now();
    while began.elapsed() < START_TIMEOUT {
        if UnixStream::connect(socket).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!(
        "{} took no connection within {START_TIMEOUT:?}",
        socket.display()
    )
}

/// Ends a child process this run started: SIGTERM, a moment's grace, then
/// SIGKILL; and reaps it.
pub fn kill_and_reap(pid: i32) {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return;
    };
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG) {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
                return;
            }
        }
    }
}
