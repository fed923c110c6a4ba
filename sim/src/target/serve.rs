//! The `serve` target: flushbed's own server as a separate process,
//! `flushbed serve`, started fresh for one run of a scenario on a
//! temporary configuration and queue directory, driven over its socket by
//! the live target, and stopped with SIGTERM as a system would stop it.
//!
//! The scenario's `main.cf` is written into the configuration directory
//! with the target's own `queue_directory` and `config_directory`, and
//! with the scenario's host name as `myhostname` when `main.cf` does not
//! set one (the server would otherwise take the real host name), so that
//! the server reads exactly the configuration the model is given.
//!
//! A request that ends as Postfix's flush process would die is seen in
//! the server's log: the target runs it with only that event turned on
//! and reads its standard error after every exchange (the event is
//! written before the connection is closed).
//!
//! ## Limitations
//!
//! - A configuration the server refuses at start-up (a `fast_flush_domains`
//!   it cannot read) ends the run with an error instead of being compared
//!   with the model, which says such a server dies before any reply.
//!   FIXME: answering every connection of such a run as a death would let
//!   the lockstep compare it.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use flushbed_impl::server::FLUSH_PROCESS_DIED;
use flushbed_impl::spool::QUEUE_DIRECTORIES;
use flushbed_vocab::{Exchange, FlushConfig, Profile, Time};
use tracing::{debug, warn};

use super::live::{result, tables_of, DeathWatch, LiveSetup, LiveTarget};
use super::Target;
use crate::lockstep::{self, Outcome, ScenarioResult};
use crate::scenario::{ConfigSpec, Scenario};

/// How long the server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the server may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The log filter the server runs with: only its deaths.
const DEATHS_ONLY: &str = "flushbed_impl::server=error";

/// A `flushbed serve` process and the live target that drives it.
pub struct ServeTarget {
    live: LiveTarget,
    child: Child,
    /// Removed last, after the server has stopped.
    _root: tempfile::TempDir,
}

impl ServeTarget {
    /// Starts `program serve` on a fresh spool for a server that reads
    /// `spec`, in `profile`.
    pub fn start(program: &Path, spec: &ConfigSpec, profile: Profile) -> anyhow::Result<Self> {
        let root = tempfile::Builder::new()
            .prefix("flushbed-serve.")
            .tempdir()?;
        let config_dir = root.path().join("config");
        let queue_dir = root.path().join("spool");
        fs::create_dir(&config_dir)?;
        fs::create_dir(&queue_dir)?;
        for (name, mode) in QUEUE_DIRECTORIES {
            fs::DirBuilder::new()
                .mode(mode)
                .create(queue_dir.join(name))
                .with_context(|| format!("making {}", queue_dir.join(name).display()))?;
        }

        let config = super::install_config(spec, &config_dir, &queue_dir)?;

        // The queue manager's socket is there before the first request.
        let socket = queue_dir.join("public").join("flush");
        let tables = tables_of(spec, &config);
        let mut child = Command::new(program)
            .arg("serve")
            .arg("--config")
            .arg(&config_dir)
            .arg("--profile")
            .arg(profile.name())
            .env("RUST_LOG", DEATHS_ONLY)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} serve", program.display()))?;
        let deaths = match child.stderr.take() {
            Some(stderr) => ServerLog::new(stderr)?,
            None => bail!("no standard error from the server"),
        };
        let live = LiveTarget::new(LiveSetup {
            name: "serve".to_string(),
            socket: socket.clone(),
            config,
            tables,
            profile,
            deaths: Some(Box::new(deaths)),
        });
        let live = match live {
            Ok(live) => live,
            Err(e) => {
                stop(&mut child);
                return Err(e);
            }
        };
        let mut target = ServeTarget {
            live,
            child,
            _root: root,
        };
        target.wait_listening(&socket)?;
        Ok(target)
    }

    fn wait_listening(&mut self, socket: &Path) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            // A connection the server accepts is served: close it at once,
            // which the server answers and forgets.
            if UnixStream::connect(socket).is_ok() {
                debug!(socket = %socket.display(), "server listening");
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("flushbed serve exited at start-up ({status})");
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "flushbed serve did not listen on {} within {}s",
                    socket.display(),
                    START_TIMEOUT.as_secs()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// SIGTERM, then a bounded wait; a server that does not stop is killed.
fn stop(child: &mut Child) {
    let pid = rustix::process::Pid::from_child(child);
    if let Err(e) = rustix::process::kill_process(pid, rustix::process::Signal::TERM) {
        debug!(error = %e, "cannot signal the server");
    }
    let started = Instant::now();
    while started.elapsed() < STOP_TIMEOUT {
        match child.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                warn!(error = %e, "cannot wait for the server");
                break;
            }
        }
    }
    warn!("flushbed serve did not stop after SIGTERM; killed");
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for ServeTarget {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// The server's standard error, read without blocking: each line that
/// reports a death is one death.
struct ServerLog {
    stderr: ChildStderr,
    partial: Vec<u8>,
}

impl ServerLog {
    fn new(stderr: ChildStderr) -> io::Result<ServerLog> {
        rustix::io::ioctl_fionbio(&stderr, true)?;
        Ok(ServerLog {
            stderr,
            partial: Vec::new(),
        })
    }
}

impl DeathWatch for ServerLog {
    fn died_since_last(&mut self) -> anyhow::Result<bool> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stderr.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.partial.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("reading the server's log"),
            }
        }
        let mut died = false;
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            if line.contains(FLUSH_PROCESS_DIED) {
                died = true;
            } else {
                debug!(line = %line.trim_end(), "server log");
            }
        }
        Ok(died)
    }
}

impl Target for ServeTarget {
    fn name(&self) -> String {
        self.live.name()
    }

    fn profile(&self) -> Profile {
        self.live.profile()
    }

    fn config(&self) -> &FlushConfig {
        self.live.config()
    }

    fn connect(&mut self, input: &[u8], now: Time) -> anyhow::Result<Exchange> {
        if let Some(status) = self.child.try_wait()? {
            bail!("flushbed serve is gone ({status})");
        }
        self.live.connect(input, now)
    }

    super::forward_environment!(live);
}

/// Runs one scenario in one profile against a fresh `program serve`.
pub fn run_serve(program: &Path, scenario: &Scenario, profile: Profile) -> ScenarioResult {
    if !scenario.applies_to("serve") {
        return result(
            scenario,
            profile,
            "serve",
            Outcome::Skipped {
                why: "the scenario does not apply to the serve target".to_string(),
            },
        );
    }
    match ServeTarget::start(program, &scenario.config, profile) {
        Ok(mut target) => lockstep::run_against(scenario, &mut target, None),
        Err(e) => result(
            scenario,
            profile,
            "serve",
            Outcome::Error {
                why: format!("{e:#}"),
            },
        ),
    }
}
