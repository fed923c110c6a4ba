//! The real Postfix flush server to measure: a private, flush-only
//! instance from the simulator's lab (`master.cf` with only `flush`,
//! wakeup 0, no `-v`, no process limit, and `postlog`; nothing listening on
//! any port), with `fast_flush_domains` naming the benchmarks' sites. It is
//! stopped when dropped, and on a stop signal.
//!
//! The flush server runs as user `postfix`, so what the benchmarks plant in
//! its spool (logfiles, queue files, the queue manager's trigger socket)
//! belongs to `postfix`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;
use flushbed_sim::lab::{self, Instance, InstanceSpec, Services};

use crate::cleanup::{self, Registration};
use crate::spool::Owner;

/// A running private Postfix instance.
pub struct PostfixServer {
    instance: Instance,
    /// Stops the instance should a signal end the run first.
    on_signal: Registration,
}

impl PostfixServer {
    /// Starts an instance whose `main.cf` is `main_cf` plus the instance's
    /// own paths, and waits until `public/flush` takes connections.
    pub fn start(main_cf: &str) -> anyhow::Result<PostfixServer> {
        lab::instances_possible().context("a private Postfix instance")?;
        let spec = InstanceSpec {
            main_cf: main_cf.to_string(),
            files: BTreeMap::new(),
            hostname: "bench.test.invalid".to_string(),
            services: Services::FlushOnly { verbose: false },
        };
        let mut instance = Instance::create(&spec)?;

        // Registered before the start, so that a signal during it still
        // stops whatever came up.
        let config_dir = instance.config_dir().to_path_buf();
        let on_signal = cleanup::register(move || stop(&config_dir));
        instance.start_mail_system()?;
        Ok(PostfixServer {
            instance,
            on_signal,
        })
    }

    /// The instance's `queue_directory`.
    pub fn spool(&self) -> &Path {
        self.instance.queue_dir()
    }

    /// The flush service's socket.
    pub fn flush_socket(&self) -> PathBuf {
        self.spool().join("public/flush")
    }

    /// Who owns what the flush server touches.
    pub fn owner(&self) -> Owner {
        let user = self.instance.user();
        Owner {
            uid: user.uid,
            gid: user.gid,
        }
    }

    /// The master's process ID, from `pid/master.pid`.
    pub fn master_pid(&self) -> anyhow::Result<i32> {
        let path = self.spool().join("pid/master.pid");
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        text.trim()
            .parse()
            .with_context(|| format!("{}: not a process ID", path.display()))
    }

    /// The maillog's last lines, for an error message.
    pub fn maillog_tail(&self) -> String {
        self.instance.maillog_tail(20)
    }

    /// Stops the instance and says whether it went as it should.
    pub fn stop(self) -> anyhow::Result<()> {
        let PostfixServer {
            mut instance,
            on_signal,
        } = self;
        on_signal.dismiss();
        instance.stop().context("stopping postfix")
    }
}

/// `postfix -c DIR stop`, for a run that a signal ends.
fn stop(config_dir: &Path) {
    let _ = Command::new(lab::POSTFIX_COMMAND)
        .arg("-c")
        .arg(config_dir)
        .arg("stop")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
