//! The floor: the least a flush server can do for an `add` and still make
//! the system calls one needs. It accepts, writes the announcement, reads
//! one request, appends `ID\n` to the site's logfile under an exclusive
//! flock(2), and replies `status\0` `0` `\0\0`. No eligibility, no ASCII
//! form, no checks: its cost is the cost of the system calls themselves,
//! what every real server is compared with.
//!
//! It runs as a process of its own (`flushbed-bench floor`), so that its
//! peak memory is its own, with a fixed pool of threads that each accept
//! one connection at a time, as Postfix's flush processes do.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rustix::fs::{FlockOperation, Mode, OFlags};

use crate::client::OK_REPLY;

/// How many connections the floor serves at once.
pub const FLOOR_THREADS: usize = 16;

/// Serves `socket` until killed, appending to logfiles in `flush_dir`.
pub fn serve(socket: &Path, flush_dir: &Path) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(socket);
    let listener =
        UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))?;

    std::thread::scope(|scope| {
        for _ in 0..FLOOR_THREADS {
            scope.spawn(|| loop {
                match listener.accept() {
                    Ok((stream, _)) => {
                        // A client that only checks the socket is up closes at
                        // once; that is no failure worth a warning.
                        if let Err(e) = serve_one(stream, flush_dir) {
                            tracing::debug!(error = %format!("{e:#}"), "floor: request failed");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "floor: accept failed"),
                }
            });
        }
    });
    Ok(())
}

fn serve_one(mut stream: UnixStream, flush_dir: &Path) -> anyhow::Result<()> {
    stream.write_all(crate::client::ANNOUNCEMENT)?;

    let (site, queue_id) = read_add(&mut stream)?;

    let path = flush_dir.join(logfile_name(&site));
    let fd = rustix::fs::open(
        &path,
        OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .with_context(|| format!("opening {}", path.display()))?;
    rustix::fs::flock(&fd, FlockOperation::LockExclusive)?;
    let mut line = queue_id;
    line.push(b'\n');
    rustix::io::write(&fd, &line)?;
    drop(fd);

    stream.write_all(OK_REPLY)?;
    Ok(())
}

/// Reads one attribute list and picks `site` and `queue_id` out of it.
fn read_add(stream: &mut UnixStream) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 512];
    loop {
        if let Some(found) = parse_add(&buf) {
            return Ok(found);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            anyhow::bail!("end of input before the request was complete");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `site` and `queue_id` of a complete attribute list, if it is one.
fn parse_add(buf: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (mut site, mut queue_id) = (None, None);
    let mut rest = buf;
    loop {
        let end = rest.iter().position(|&b| b == 0)?;
        let name = &rest[..end];
        rest = &rest[end + 1..];
        if name.is_empty() {
            return Some((site?, queue_id?));
        }
        let end = rest.iter().position(|&b| b == 0)?;
        let value = &rest[..end];
        rest = &rest[end + 1..];
        match name {
            b"site" => site = Some(value.to_vec()),
            b"queue_id" => queue_id = Some(value.to_vec()),
            _ => {}
        }
    }
}

/// The site's logfile name, ASCII only: letters lowercased, anything but a
/// letter or digit made `_`.
fn logfile_name(site: &[u8]) -> String {
    site.iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() {
                b.to_ascii_lowercase() as char
            } else {
                '_'
            }
        })
        .collect()
}

/// The floor running as a child process, killed when dropped.
pub struct FloorProcess {
    child: std::process::Child,
    socket: PathBuf,
    _stop: crate::cleanup::Registration,
}

impl FloorProcess {
    /// Starts `flushbed-bench floor` on `socket` and waits for it to listen.
    pub fn start(socket: &Path, flush_dir: &Path) -> anyhow::Result<FloorProcess> {
        let exe = std::env::current_exe().context("finding flushbed-bench itself")?;
        let child = std::process::Command::new(exe)
            .arg("floor")
            .arg(socket)
            .arg(flush_dir)
            .spawn()
            .context("starting the floor server")?;
        let pid = child.id() as i32;
        let stop = crate::cleanup::register(move || crate::serve::kill_and_reap(pid));
        let floor = FloorProcess {
            child,
            socket: socket.to_path_buf(),
            _stop: stop,
        };
        crate::serve::wait_for_socket(&floor.socket)?;
        Ok(floor)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_add_is_parsed_only_when_its_list_is_complete() {
        let wire = flushbed_vocab::wire::add_request(b"example.com", b"ABC123");
        assert_eq!(
            parse_add(&wire),
            Some((b"example.com".to_vec(), b"ABC123".to_vec()))
        );
        assert_eq!(parse_add(&wire[..wire.len() - 1]), None);
    }

    #[test]
    fn the_logfile_name_lowercases_and_replaces_punctuation() {
        assert_eq!(logfile_name(b"A-b.Example.COM"), "a_b_example_com");
    }

    #[test]
    fn the_floor_appends_and_replies_ok() {
        let dir = tempfile::tempdir().unwrap();
        let (mut client, server) = UnixStream::pair().unwrap();
        let wire = flushbed_vocab::wire::add_request(b"example.com", b"ABC123");
        client.write_all(&wire).unwrap();
        serve_one(server, dir.path()).unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).unwrap();
        assert_eq!(out, [crate::client::ANNOUNCEMENT, OK_REPLY].concat());
        let logfile = std::fs::read(dir.path().join("example_com")).unwrap();
        assert_eq!(logfile, b"ABC123\n");
    }
}
