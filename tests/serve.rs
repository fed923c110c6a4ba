//! `flushbed serve` as a running flush server: the scenario suite against
//! it, a running server held to the model over its socket, a stop in the
//! middle of a burst of adds, a client that sends nothing, and the strict
//! bound on attribute sizes.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const FLUSHBED: &str = env!("CARGO_BIN_EXE_flushbed");
const ANNOUNCEMENT: &[u8] = b"protocol\0queue_flush_protocol\0\0";
const OK: &[u8] = b"status\x000\0\0";

/// A `flushbed serve` on a fresh configuration and spool, stopped (and
/// its directory removed) when dropped.
struct Served {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Served {
    fn start(main_cf: &str, profile: &str) -> Served {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("config");
        std::fs::create_dir(&config).unwrap();
        let spool = dir.path().join("spool");
        std::fs::write(
            config.join("main.cf"),
            format!("{main_cf}queue_directory = {}\n", spool.display()),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        let child = Command::new(FLUSHBED)
            .args(["serve", "--profile", profile, "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting flushbed serve");
        let served = Served {
            dir,
            child: Some(child),
        };
        let started = Instant::now();
        while UnixStream::connect(served.socket()).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "flushbed serve did not listen: {}",
                served.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
        served
    }

    fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    fn socket(&self) -> PathBuf {
        self.spool().join("public/flush")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the server").id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("running kill");
        assert!(status.success());
    }

    /// Waits for the server to exit after a signal; its exit status.
    fn wait(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the server");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("flushbed serve did not stop: {}", self.log());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One request in one write, then everything the server writes until it
/// closes; `None` when the server could not be reached.
fn request(socket: &Path, wire: &[u8]) -> Option<Vec<u8>> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // A refusing server may close before reading it all.
    let _ = stream.write_all(wire);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    Some(out)
}

fn add(site: &[u8], queue_id: &[u8]) -> Vec<u8> {
    let mut wire = b"request\0add\0site\0".to_vec();
    wire.extend_from_slice(site);
    wire.extend_from_slice(b"\0queue_id\0");
    wire.extend_from_slice(queue_id);
    wire.extend_from_slice(b"\0\0");
    wire
}

fn flushbed(args: &[&str]) -> Output {
    Command::new(FLUSHBED)
        .args(args)
        .output()
        .expect("running flushbed")
}

/// `check --format json`'s counts: passed, failed, skipped.
fn counts(output: &Output) -> (u64, u64, u64) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    let count = |key: &str| summary[key].as_u64().unwrap_or(u64::MAX);
    (count("passed"), count("failed"), count("skipped"))
}

/// The names and reasons of every result that did not pass.
fn failures(output: &Output) -> String {
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    let mut lines = Vec::new();
    for result in summary["results"].as_array().into_iter().flatten() {
        let outcome = &result["outcome"]["result"];
        if outcome != "pass" && outcome != "skipped" {
            lines.push(format!(
                "{} [{}]: {}",
                result["scenario"], result["profile"], result["outcome"]
            ));
        }
    }
    lines.join("\n")
}

#[test]
fn check_against_serve_passes_every_scenario_in_both_profiles() {
    for profile in ["strict", "postfix"] {
        let output = flushbed(&[
            "check",
            "--target",
            "serve",
            "--profile",
            profile,
            "--format",
            "json",
        ]);
        let (passed, failed, _) = counts(&output);
        assert_eq!(failed, 0, "[{profile}] failing:\n{}", failures(&output));
        assert!(passed >= 50, "[{profile}] only {passed} passed");
        assert!(output.status.success());
    }
}

#[test]
fn a_socket_run_against_a_running_serve_passes_the_scenarios_that_match() {
    let served = Served::start("fast_flush_domains = example.com\n", "strict");
    let socket = format!("socket:{}", served.socket().display());
    let config = served.config_dir().display().to_string();
    let output = flushbed(&[
        "check", "--target", &socket, "--config", &config, "--format", "json",
    ]);
    let (passed, failed, skipped) = counts(&output);
    assert_eq!(failed, 0, "failing:\n{}", failures(&output));
    assert!(
        passed >= 10,
        "only {passed} matched the server's configuration"
    );
    assert!(
        skipped > 0,
        "scenarios for other configurations must be skipped"
    );
    assert!(output.status.success());
}

#[test]
fn a_socket_target_needs_the_servers_configuration() {
    let output = flushbed(&["check", "--target", "socket:/nonexistent/public/flush"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--config"));
}

#[test]
fn sigterm_during_a_burst_of_adds_loses_no_acknowledged_queue_id() {
    let mut served = Served::start("fast_flush_domains = example.com\n", "strict");
    let socket = served.socket();
    let stop = Arc::new(AtomicBool::new(false));

    // Four clients add distinct queue IDs as fast as they can until the
    // server refuses them; each keeps the IDs that were answered OK.
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let socket = socket.clone();
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut acknowledged = Vec::new();
                for n in 0.. {
                    let id = format!("C{client}N{n:06}");
                    match request(&socket, &add(b"example.com", id.as_bytes())) {
                        Some(out) if out == [ANNOUNCEMENT, OK].concat() => acknowledged.push(id),
                        Some(_) => {}
                        None if stop.load(Ordering::SeqCst) => break,
                        None => {}
                    }
                }
                acknowledged
            })
        })
        .collect();

    thread::sleep(Duration::from_millis(400));
    stop.store(true, Ordering::SeqCst);
    served.signal("TERM");
    let status = served.wait();
    let acknowledged: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("a client"))
        .collect();

    assert!(status.success(), "exit {status}: {}", served.log());
    assert!(!socket.exists(), "the socket must be removed");
    assert!(
        acknowledged.len() > 10,
        "only {} adds before the stop",
        acknowledged.len()
    );

    let logfile = std::fs::read(served.spool().join("flush/example_com")).unwrap();
    assert_eq!(logfile.last(), Some(&b'\n'), "the last line is cut short");
    let text = String::from_utf8(logfile).expect("whole lines");
    let lines: Vec<&str> = text.lines().collect();
    for line in &lines {
        assert!(
            line.len() == 9 && line.starts_with('C') && line.as_bytes()[2] == b'N',
            "a partial or mixed line: {line:?}"
        );
    }
    for id in &acknowledged {
        let times = lines.iter().filter(|l| *l == id).count();
        assert_eq!(
            times, 1,
            "acknowledged {id} is in the logfile {times} times"
        );
    }
}

#[test]
fn the_socket_is_public_and_its_directory_belongs_to_the_mail_owner() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    let served = Served::start("fast_flush_domains = example.com\n", "strict");
    let socket = std::fs::symlink_metadata(served.socket()).unwrap();
    assert_eq!(socket.permissions().mode() & 0o777, 0o666);
    let public = std::fs::metadata(served.spool().join("public")).unwrap();
    assert_eq!(public.permissions().mode() & 0o777, 0o710);

    // Where Postfix is installed, its user can reach the socket.
    let id = |file: &str, name: &str| {
        std::fs::read_to_string(file).ok().and_then(|text| {
            text.lines()
                .map(|line| line.split(':').collect::<Vec<_>>())
                .find(|f| f.len() > 2 && f[0] == name)
                .and_then(|f| f[2].parse::<u32>().ok())
        })
    };
    if let (Some(uid), Some(gid)) = (id("/etc/passwd", "postfix"), id("/etc/group", "postdrop")) {
        assert_eq!((public.uid(), public.gid()), (uid, gid));
    }
}

#[test]
fn sigint_stops_the_server_and_removes_its_socket() {
    let mut served = Served::start("fast_flush_domains = example.com\n", "postfix");
    served.signal("INT");
    let status = served.wait();
    assert!(status.success(), "exit {status}: {}", served.log());
    assert!(!served.socket().exists());
}

#[test]
fn a_slow_client_does_not_block_other_clients() {
    let served = Served::start("fast_flush_domains = example.com\n", "strict");

    // Connected, announced to, and sending nothing.
    let mut idle = UnixStream::connect(served.socket()).unwrap();
    let mut announcement = [0u8; ANNOUNCEMENT.len()];
    idle.read_exact(&mut announcement).unwrap();

    let started = Instant::now();
    let out = request(&served.socket(), &add(b"example.com", b"ABC123")).unwrap();
    assert_eq!(out, [ANNOUNCEMENT, OK].concat());
    assert!(started.elapsed() < Duration::from_secs(2));
    let logfile = std::fs::read(served.spool().join("flush/example_com")).unwrap();
    assert_eq!(logfile, b"ABC123\n");
    drop(idle);
}

#[test]
fn an_oversized_attribute_is_refused_under_strict_and_logged() {
    let site = [b"a.".repeat(5000), b"example.com".to_vec()].concat();

    let strict = Served::start("fast_flush_domains = example.com\n", "strict");
    let out = request(&strict.socket(), &add(&site, b"ABC123")).unwrap();
    assert_eq!(out, [ANNOUNCEMENT, b"status\x003\0\0"].concat());
    let log = strict.log();
    assert!(
        log.contains("bad attribute value") && log.contains("site"),
        "not logged: {log}"
    );

    // The real server reads it all, and the name is refused only later.
    let postfix = Served::start("fast_flush_domains = example.com\n", "postfix");
    let out = request(&postfix.socket(), &add(&site, b"ABC123")).unwrap();
    assert_eq!(out, [ANNOUNCEMENT, b"status\x004\0\0"].concat());
}
