//! A target: any flush server the lockstep runner can drive and observe.
//! The reference model is not a target; it is what targets are held to.
//!
//! A target owns its spool and its configuration directory; the runner
//! gives the model the very configuration the target's server read
//! ([`Target::config`]), so that both sides see the same paths. The
//! in-process [`SpoolTarget`] is here; a socket server and a real Postfix
//! are in the submodules.
//!
//! After each step the runner compares what may have changed. A target
//! that can say which files it touched ([`Target::observe_changed`]: the
//! spool target, whose file layer records every path it names) is looked
//! at only there; any other is observed whole.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use flushbed_impl::{
    ConnectionEnd, FlushService, ManualClock, MemoryConnection, RealFs, RecordingSink,
};
use flushbed_vocab::config::Environment;
use flushbed_vocab::{Exchange, FlushConfig, MainCf, Profile, QueueName, SpoolState, Time};

use crate::observe;
use crate::scenario::ConfigSpec;

pub mod live;
pub mod postfix;
pub mod serve;
pub mod touched;

use touched::{TouchedFs, TouchedLog};

/// The environment operations of a target that wraps another one (in the
/// field named), forwarded as they are: planting, removing, observing.
macro_rules! forward_environment {
    ($field:ident) => {
        fn plant_queue_file(
            &mut self,
            queue_id: &str,
            queue: flushbed_vocab::QueueName,
            mode: u32,
            atime: flushbed_vocab::Time,
            mtime: flushbed_vocab::Time,
        ) -> anyhow::Result<()> {
            self.$field
                .plant_queue_file(queue_id, queue, mode, atime, mtime)
        }

        fn remove_queue_file(&mut self, queue_id: &str) -> anyhow::Result<()> {
            self.$field.remove_queue_file(queue_id)
        }

        fn write_logfile(
            &mut self,
            name: &str,
            content: &[u8],
            mode: u32,
            atime: flushbed_vocab::Time,
            mtime: flushbed_vocab::Time,
        ) -> anyhow::Result<()> {
            self.$field.write_logfile(name, content, mode, atime, mtime)
        }

        fn remove_logfile(&mut self, name: &str) -> anyhow::Result<()> {
            self.$field.remove_logfile(name)
        }

        fn observe(&mut self) -> anyhow::Result<flushbed_vocab::SpoolState> {
            self.$field.observe()
        }

        fn flush_dir_order(&mut self) -> anyhow::Result<Vec<String>> {
            self.$field.flush_dir_order()
        }
    };
}
pub(crate) use forward_environment;

/// A flush server under test, with the spool it works on.
pub trait Target {
    /// A short name for reports (`spool`, `serve`, `postfix`, ...).
    fn name(&self) -> String;

    /// The profile the target runs in; the model is run in the same one.
    fn profile(&self) -> Profile;

    /// The configuration the target's server read, with its own
    /// `queue_directory` and `config_directory`.
    fn config(&self) -> &FlushConfig;

    /// One client connection that sends `input` in one write, at `now`.
    fn connect(&mut self, input: &[u8], now: Time) -> anyhow::Result<Exchange>;

    /// Environment: put a queue file in a queue with this mode and times,
    /// removing it from wherever else it was (the model does the same).
    fn plant_queue_file(
        &mut self,
        queue_id: &str,
        queue: QueueName,
        mode: u32,
        atime: Time,
        mtime: Time,
    ) -> anyhow::Result<()>;

    /// Environment: remove a queue file from every queue.
    fn remove_queue_file(&mut self, queue_id: &str) -> anyhow::Result<()>;

    /// Environment: write a logfile's bytes as they are.
    fn write_logfile(
        &mut self,
        name: &str,
        content: &[u8],
        mode: u32,
        atime: Time,
        mtime: Time,
    ) -> anyhow::Result<()>;

    /// Environment: remove a logfile.
    fn remove_logfile(&mut self, name: &str) -> anyhow::Result<()>;

    /// Everything observable in the target's spool, read without
    /// disturbing it.
    fn observe(&mut self) -> anyhow::Result<SpoolState>;

    /// The entries of `flush/` in the order the target's directory scan
    /// returns them.
    fn flush_dir_order(&mut self) -> anyhow::Result<Vec<String>>;

    /// What may have changed since the spool was last observed: the files
    /// the target touched since then, and those at `also`, as they are
    /// now. `None` when the target cannot tell what it touched (a server in
    /// another process); the runner then observes the whole spool.
    fn observe_changed(
        &mut self,
        also: &observe::Paths,
    ) -> anyhow::Result<Option<observe::Partial>> {
        let _ = also;
        Ok(None)
    }
}

/// The in-process target: flushbed's implementation, called directly, on a
/// spool in a temporary directory that it owns for the length of one run.
///
/// The master's part is played here too: each connection is served by the
/// current service, and after a fatal end a fresh service is built on the
/// same spool, as the master would start a fresh flush process.
pub struct SpoolTarget {
    root: tempfile::TempDir,
    config: FlushConfig,
    profile: Profile,
    clock: ManualClock,
    sink: RecordingSink,
    /// Every path the service's file layer named since the spool was last
    /// observed.
    touched: TouchedLog,
    service: FlushService<TouchedFs<RealFs>>,
    #[cfg(feature = "planted-bugs")]
    bug: Option<flushbed_impl::PlantedBug>,
}

/// The directories of a fresh spool: the queues, `flush/`, and the two
/// socket directories a real one has.
const SPOOL_DIRS: [&str; 9] = [
    "flush", "maildrop", "incoming", "active", "deferred", "hold", "corrupt", "public", "private",
];

impl SpoolTarget {
    /// A target whose server read `config` (main.cf text, configuration
    /// files and host name), with an empty spool.
    pub fn new(config: &ConfigSpec, profile: Profile) -> anyhow::Result<SpoolTarget> {
        let root = tempfile::Builder::new()
            .prefix("flushbed-spool.")
            .tempdir()?;
        let config_dir = root.path().join("config");
        let queue_dir = root.path().join("spool");
        for dir in SPOOL_DIRS {
            fs::create_dir_all(queue_dir.join(dir))
                .with_context(|| format!("creating {}", queue_dir.join(dir).display()))?;
        }
        fs::create_dir_all(&config_dir)?;

        let flush_config = install_config(config, &config_dir, &queue_dir)?;

        let clock = ManualClock::new(0);
        let sink = RecordingSink::default();
        let touched = TouchedLog::default();
        let service = start_service(&flush_config, profile, &clock, &sink, &touched)?;
        Ok(SpoolTarget {
            root,
            config: flush_config,
            profile,
            clock,
            sink,
            touched,
            service,
            #[cfg(feature = "planted-bugs")]
            bug: None,
        })
    }

    /// The spool's `queue_directory`.
    pub fn queue_dir(&self) -> PathBuf {
        self.root.path().join("spool")
    }

    /// Breaks the implementation on purpose, for this and every later
    /// service on the spool, so that a test can show the lockstep catches it.
    #[cfg(feature = "planted-bugs")]
    pub fn plant_bug(&mut self, bug: flushbed_impl::PlantedBug) {
        self.service.plant_bug(bug);
        self.bug = Some(bug);
    }
}

fn start_service(
    config: &FlushConfig,
    profile: Profile,
    clock: &ManualClock,
    sink: &RecordingSink,
    touched: &TouchedLog,
) -> anyhow::Result<FlushService<TouchedFs<RealFs>>> {
    let service = FlushService::with_fs(
        TouchedFs::new(RealFs, touched.clone()),
        config,
        profile,
        Arc::new(clock.clone()),
        Arc::new(sink.clone()),
    )
    .context("starting the flush service")?;
    Ok(service)
}

pub(crate) fn path_text(path: &Path) -> anyhow::Result<String> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("{}: not a UTF-8 path", path.display()))
}

/// Writes a scenario's configuration into `config_dir` (its `main.cf` and
/// table files) for a server working on `queue_dir`, and returns what that
/// server reads from it. Both directories are the target's own, whatever
/// main.cf says, so that `$config_directory` names the scenario's files; and
/// `myhostname` is pinned to the scenario's host name, so that a server
/// process reads what the model reads, whatever host it runs on.
pub(crate) fn install_config(
    spec: &ConfigSpec,
    config_dir: &Path,
    queue_dir: &Path,
) -> anyhow::Result<FlushConfig> {
    let mut main = MainCf::parse(&spec.main_cf, "main.cf")?;
    let config_path = path_text(config_dir)?;
    main.set("config_directory", &config_path);
    main.set("queue_directory", &path_text(queue_dir)?);
    if main.get("myhostname").is_none() {
        main.set("myhostname", &spec.hostname);
    }
    let env = Environment {
        hostname: spec.hostname.clone(),
        config_directory: config_path,
    };
    let config = FlushConfig::from_main_cf(&main, &env)?;

    fs::write(config_dir.join("main.cf"), main.to_text())?;
    for (name, content) in &spec.files {
        let path = config_dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(config)
}

impl Target for SpoolTarget {
    fn name(&self) -> String {
        "spool".to_string()
    }

    fn profile(&self) -> Profile {
        self.profile
    }

    fn config(&self) -> &FlushConfig {
        &self.config
    }

    fn connect(&mut self, input: &[u8], now: Time) -> anyhow::Result<Exchange> {
        self.clock.set(now);
        let mut conn = MemoryConnection::new(input);
        let end = self.service.serve_connection(&mut conn);
        let died = matches!(end, ConnectionEnd::Fatal(_));
        if let ConnectionEnd::Fatal(why) = &end {
            tracing::debug!(target_name = "spool", why = %why, "flush process died; starting a fresh one");

            // The master starts a fresh process for the next connection.
            self.service = start_service(
                &self.config,
                self.profile,
                &self.clock,
                &self.sink,
                &self.touched,
            )?;
            #[cfg(feature = "planted-bugs")]
            if let Some(bug) = self.bug {
                self.service.plant_bug(bug);
            }
        }
        Ok(Exchange {
            output: conn.output,
            triggers: self.sink.take(),
            died,
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
        // A queue file is in one queue at a time: planting it moves it.
        self.service
            .remove_queue_file(queue_id)
            .with_context(|| format!("removing queue file {queue_id} before planting it"))?;
        self.service
            .plant_queue_file(queue_id, queue, mode, atime, mtime)
            .with_context(|| format!("planting queue file {queue_id} in {queue}"))
    }

    fn remove_queue_file(&mut self, queue_id: &str) -> anyhow::Result<()> {
        self.service
            .remove_queue_file(queue_id)
            .with_context(|| format!("removing queue file {queue_id}"))
    }

    fn write_logfile(
        &mut self,
        name: &str,
        content: &[u8],
        mode: u32,
        atime: Time,
        mtime: Time,
    ) -> anyhow::Result<()> {
        self.service
            .write_logfile(name, content, mode, atime, mtime)
            .with_context(|| format!("writing logfile {name}"))
    }

    fn remove_logfile(&mut self, name: &str) -> anyhow::Result<()> {
        self.service
            .remove_logfile(name)
            .with_context(|| format!("removing logfile {name}"))
    }

    fn observe(&mut self) -> anyhow::Result<SpoolState> {
        // A whole look covers whatever was touched before it.
        self.touched.take();
        Ok(observe::observe(&self.queue_dir())?)
    }

    fn flush_dir_order(&mut self) -> anyhow::Result<Vec<String>> {
        Ok(observe::flush_dir_order(&self.queue_dir())?)
    }

    fn observe_changed(
        &mut self,
        also: &observe::Paths,
    ) -> anyhow::Result<Option<observe::Partial>> {
        let touched = self.touched.take();
        Ok(observe::observe_touched(&self.queue_dir(), &touched, also)?)
    }
}
