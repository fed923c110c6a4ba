//! A flush server on a spool in a temporary directory, with a hand-set
//! clock and a recording trigger sink, and ways to look at the spool
//! without disturbing it (logfiles are read with `O_NOATIME`).

#![allow(dead_code)] // Each test file uses its own part of this kit.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flushbed_impl::fs::FileSystem;
use flushbed_impl::{
    ConnectionEnd, FlushService, ManualClock, MemoryConnection, RealFs, RecordingSink,
};
use flushbed_vocab::config::Environment;
use flushbed_vocab::{FlushConfig, MainCf, Profile, QueueName, Time, Trigger};

/// The time every test starts at.
pub const T0: Time = 1_800_000_000;

/// What one connection produced.
#[derive(Debug)]
pub struct Outcome {
    /// What the server wrote after its announcement.
    pub reply: Vec<u8>,
    pub triggers: Vec<Trigger>,
    pub died: bool,
}

pub struct Bed<F: FileSystem = RealFs> {
    pub dir: tempfile::TempDir,
    pub config: FlushConfig,
    pub clock: ManualClock,
    pub sink: RecordingSink,
    pub service: FlushService<F>,
}

pub fn config(dir: &Path, main_cf: &str) -> FlushConfig {
    let text = format!("queue_directory = {}/spool\n{main_cf}", dir.display());
    let main = MainCf::parse(&text, "main.cf").unwrap();
    let env = Environment {
        hostname: "localhost.localdomain".to_string(),
        config_directory: dir.display().to_string(),
    };
    FlushConfig::from_main_cf(&main, &env).unwrap()
}

impl Bed<RealFs> {
    pub fn new(main_cf: &str, profile: Profile) -> Bed {
        Bed::with_fs(RealFs, main_cf, profile)
    }
}

impl<F: FileSystem> Bed<F> {
    pub fn with_fs(fs: F, main_cf: &str, profile: Profile) -> Bed<F> {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), main_cf);
        let clock = ManualClock::new(T0);
        let sink = RecordingSink::default();
        let service = FlushService::with_fs(
            fs,
            &config,
            profile,
            Arc::new(clock.clone()),
            Arc::new(sink.clone()),
        )
        .unwrap();
        Bed {
            dir,
            config,
            clock,
            sink,
            service,
        }
    }

    pub fn queue_dir(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    /// One connection sending `input`, at `now`.
    pub fn request(&self, input: &[u8], now: Time) -> Outcome {
        self.clock.set(now);
        let mut conn = MemoryConnection::new(input);
        let end = self.service.serve_connection(&mut conn);
        let announcement = flushbed_impl::protocol::ANNOUNCEMENT;
        assert!(
            conn.output.starts_with(announcement),
            "no announcement: {:?}",
            conn.output
        );
        Outcome {
            reply: conn.output[announcement.len()..].to_vec(),
            triggers: self.sink.take(),
            died: matches!(end, ConnectionEnd::Fatal(_)),
        }
    }

    pub fn logfile_path(&self, name: &str) -> PathBuf {
        self.queue_dir().join("flush").join(name)
    }

    /// A logfile's bytes, read without changing its atime.
    pub fn logfile(&self, name: &str) -> Option<Vec<u8>> {
        read_noatime(&self.logfile_path(name))
    }

    pub fn write_logfile(&self, name: &str, content: &[u8], atime: Time, mtime: Time) {
        self.service
            .write_logfile(name, content, 0o600, atime, mtime)
            .unwrap();
    }

    pub fn plant(&self, id: &str, queue: QueueName, mode: u32, time: Time) {
        self.service
            .plant_queue_file(id, queue, mode, time, time)
            .unwrap();
    }

    /// Where a queue file is, relative to the queue directory.
    pub fn find(&self, id: &str) -> Option<String> {
        let root = self.queue_dir();
        let mut found = None;
        walk(&root, &mut |path| {
            if path.file_name().and_then(|n| n.to_str()) == Some(id)
                && !path.starts_with(root.join("flush"))
            {
                found = Some(path.strip_prefix(&root).unwrap().display().to_string());
            }
        });
        found
    }
}

fn walk(dir: &Path, visit: &mut dyn FnMut(&Path)) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, visit);
        } else {
            visit(&path);
        }
    }
}

/// A file's bytes, read with `O_NOATIME` so that its atime stays.
pub fn read_noatime(path: &Path) -> Option<Vec<u8>> {
    use rustix::fs::{Mode, OFlags};
    let fd = match rustix::fs::open(path, OFlags::RDONLY | OFlags::NOATIME, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return None,
        Err(e) => panic!("{}: {e}", path.display()),
    };
    let mut content = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = rustix::io::read(&fd, &mut buf).unwrap();
        if n == 0 {
            return Some(content);
        }
        content.extend_from_slice(&buf[..n]);
    }
}

/// A file's (atime, mtime, permission bits).
pub fn times(path: &Path) -> (Time, Time, u32) {
    let st = rustix::fs::stat(path).unwrap();
    (st.st_atime, st.st_mtime, st.st_mode & 0o7777)
}

pub fn status(code: &str) -> Vec<u8> {
    format!("status\0{code}\0\0").into_bytes()
}

pub const OK: &str = "0";
pub const BAD: &str = "3";
pub const DENY: &str = "4";
pub const FAIL: &str = "4294967295";
