//! What the benchmarks put in a server's spool: the `send_site` workload
//! (a logfile of 10,000 lines naming 10,000 real deferred queue files,
//! hashed under `deferred/` one level deep as Postfix expects), and a
//! stand-in for the queue manager listening on `public/qmgr`, so that the
//! server's `F` and `I` triggers find someone to take them.
//!
//! Files belong to the [`Owner`] the server runs as (user `postfix` for
//! the real server), with Postfix's modes: 0600 for a logfile, 0700 (ready)
//! for a queue file.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context};
use rustix::fs::{Mode, OFlags, Timespec, Timestamps};

/// The user and group a spool's files belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// A queue ID of the `send_site` workload: Postfix's short format (upper
/// case hexadecimal), its first character spread over all sixteen hash
/// directories.
pub fn queue_id(n: usize) -> String {
    format!(
        "{:X}{:05X}{:05X}",
        n % 16,
        n,
        n.wrapping_mul(7919) & 0xF_FFFF
    )
}

/// Where Postfix keeps a deferred queue file: `deferred/` hashed one level
/// deep on the queue ID's first character.
pub fn deferred_path(spool: &Path, id: &str) -> PathBuf {
    spool.join("deferred").join(&id[..1]).join(id)
}

/// A `send_site` workload: `count` queue files in `deferred/`, each named
/// once in the site's logfile.
#[derive(Debug, Clone)]
pub struct SendWorkload {
    pub logfile: String,
    pub ids: Vec<String>,
}

impl SendWorkload {
    pub fn new(logfile: &str, count: usize) -> SendWorkload {
        SendWorkload {
            logfile: logfile.to_string(),
            ids: (0..count).map(queue_id).collect(),
        }
    }

    /// Empties `incoming/` and `deferred/`, then plants every queue file in
    /// `deferred/` (times an hour ahead, as a deferral leaves them) and
    /// writes the logfile.
    pub fn plant(&self, spool: &Path, owner: Owner) -> anyhow::Result<()> {
        clear_queue(&spool.join("incoming"))?;
        clear_queue(&spool.join("deferred"))?;

        let later = rustix::time::clock_gettime(rustix::time::ClockId::Realtime).tv_sec + 3600;
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: later,
                tv_nsec: 0,
            },
            last_modification: Timespec {
                tv_sec: later,
                tv_nsec: 0,
            },
        };
        for hash in "0123456789ABCDEF".chars() {
            let dir = spool.join("deferred").join(hash.to_string());
            if !dir.exists() {
                fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
                chown(&dir, owner)?;
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
            }
        }
        for id in &self.ids {
            let path = deferred_path(spool, id);
            let fd = rustix::fs::open(
                &path,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o700),
            )
            .with_context(|| format!("creating {}", path.display()))?;
            rustix::fs::fchown(&fd, Some(uid(owner)), Some(gid(owner)))?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700))?;
            rustix::fs::futimens(&fd, &times)?;
        }

        let mut content = String::with_capacity(self.ids.len() * 12);
        for id in &self.ids {
            content.push_str(id);
            content.push('\n');
        }
        let path = spool.join("flush").join(&self.logfile);
        fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
        chown(&path, owner)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        Ok(())
    }

    /// Checks that a send did its work: every queue file in `incoming/`
    /// and the logfile empty. A server that found nothing would look fast.
    pub fn check_sent(&self, spool: &Path) -> anyhow::Result<()> {
        let incoming = fs::read_dir(spool.join("incoming"))?.count();
        if incoming != self.ids.len() {
            bail!(
                "after send_site {} of {} queue files are in incoming/",
                incoming,
                self.ids.len()
            );
        }
        let logfile = spool.join("flush").join(&self.logfile);
        let left = fs::metadata(&logfile)
            .with_context(|| format!("{}", logfile.display()))?
            .len();
        if left != 0 {
            bail!(
                "after send_site the logfile {} holds {left} bytes",
                logfile.display()
            );
        }
        Ok(())
    }
}

/// Removes every file below a queue directory, keeping its hash
/// directories.
fn clear_queue(dir: &Path) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            clear_queue(&path)?;
        } else {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

fn chown(path: &Path, owner: Owner) -> anyhow::Result<()> {
    rustix::fs::chown(path, Some(uid(owner)), Some(gid(owner)))
        .with_context(|| format!("giving {} to uid {}", path.display(), owner.uid))
}

fn uid(owner: Owner) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(owner.uid)
}

fn gid(owner: Owner) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(owner.gid)
}

/// Stands in for the queue manager on `public/qmgr`: takes each trigger
/// connection, reads the trigger (its byte and NUL) and closes it.
pub struct QmgrListener {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    triggers: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl QmgrListener {
    pub fn start(spool: &Path, owner: Owner) -> anyhow::Result<QmgrListener> {
        let path = spool.join("public/qmgr");
        let _ = fs::remove_file(&path);
        let listener =
            UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
        chown(&path, owner)?;

        let stop = Arc::new(AtomicBool::new(false));
        let triggers = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, triggers) = (stop.clone(), triggers.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(mut stream) = stream else { continue };
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                    let mut got = Vec::new();
                    let mut byte = [0u8; 1];
                    // A trigger ends at its NUL; waiting for the end of
                    // input could wait on a sender that waits on us.
                    while let Ok(1) = stream.read(&mut byte) {
                        if byte[0] == 0 {
                            break;
                        }
                        got.push(byte[0]);
                    }
                    triggers.fetch_add(got.len(), Ordering::Relaxed);
                }
            })
        };
        Ok(QmgrListener {
            path,
            stop,
            triggers,
            thread: Some(thread),
        })
    }

    /// How many trigger bytes arrived so far.
    pub fn triggers(&self) -> usize {
        self.triggers.load(Ordering::Relaxed)
    }
}

impl Drop for QmgrListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // One more connection wakes the accept so the thread sees the flag.
        let _ = std::os::unix::net::UnixStream::connect(&self.path);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_queue_ids_are_distinct_and_use_every_hash_directory() {
        let ids: Vec<String> = (0..10_000).map(queue_id).collect();
        let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        let dirs: std::collections::BTreeSet<char> =
            ids.iter().filter_map(|id| id.chars().next()).collect();
        assert_eq!(dirs.len(), 16);
        assert!(ids
            .iter()
            .all(|id| id.bytes().all(|b| b.is_ascii_hexdigit())));
    }

    #[test]
    fn a_deferred_queue_file_is_hashed_on_its_first_character() {
        let path = deferred_path(Path::new("/q"), "A2AD898C68C");
        assert_eq!(path, Path::new("/q/deferred/A/A2AD898C68C"));
    }

    #[test]
    fn planting_fills_deferred_and_the_logfile() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["flush", "incoming", "deferred"] {
            fs::create_dir(dir.path().join(d)).unwrap();
        }
        let work = SendWorkload::new("bulk_example", 40);
        let owner = crate::serve::current_owner();
        work.plant(dir.path(), owner).unwrap();
        work.plant(dir.path(), owner).unwrap();
        assert!(deferred_path(dir.path(), &work.ids[7]).exists());
        let logfile = fs::read_to_string(dir.path().join("flush/bulk_example")).unwrap();
        assert_eq!(logfile.lines().count(), 40);
        assert!(work.check_sent(dir.path()).is_err());
    }
}
