//! The real Postfix 3.7 flush server held to the reference model: the whole
//! scenario suite, run by `flushbed check --target postfix` against private
//! flush-only instances, passes in the `postfix` profile.
//!
//! These tests need a real Postfix and root to start it. Without them they
//! are skipped, saying so on stderr; with `FLUSHBED_REQUIRE_POSTFIX=1` (as
//! CI sets it) they fail instead.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flushbed_sim::lab::{self, Instance, InstanceSpec, Services};

/// Whether the real Postfix can be used here; a visible skip, or a failure
/// when CI demands it.
fn postfix_here(test: &str) -> bool {
    match lab::instances_possible() {
        Ok(()) => true,
        Err(why) if std::env::var("FLUSHBED_REQUIRE_POSTFIX").is_ok_and(|v| v == "1") => {
            panic!("{test}: FLUSHBED_REQUIRE_POSTFIX=1, but {why}")
        }
        Err(why) => {
            eprintln!("skipped {test}: {why}");
            false
        }
    }
}

/// The whole suite takes a few minutes: one private instance per scenario.
const SUITE_TIMEOUT: Duration = Duration::from_secs(20 * 60);

#[test]
fn the_real_postfix_does_what_the_model_says_in_every_scenario() {
    if !postfix_here("the_real_postfix_does_what_the_model_says_in_every_scenario") {
        return;
    }
    let dir = tempfile::tempdir().expect("a directory for the report");
    let report = dir.path().join("check.out");
    let out = std::fs::File::create(&report).expect("creating the report");
    let err = out.try_clone().expect("duplicating the report");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flushbed"))
        .args(["check", "--target", "postfix"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("running flushbed check --target postfix");

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for flushbed check") {
            break status;
        }
        if started.elapsed() > SUITE_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "flushbed check --target postfix took over {SUITE_TIMEOUT:?}:\n{}",
                std::fs::read_to_string(&report).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    assert!(
        status.success(),
        "flushbed check --target postfix: {status}\n{text}"
    );

    // Every scenario ran against the real server, none was left out.
    let summary = text.lines().last().unwrap_or_default();
    assert!(summary.contains(" 0 failed, "), "{summary}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok  one-letter-logfile-kills-the-refresh")),
        "the scenario of a dying refresh ran:\n{text}"
    );
}

#[test]
fn a_private_instance_answers_on_public_flush_and_stops_on_drop() {
    if !postfix_here("a_private_instance_answers_on_public_flush_and_stops_on_drop") {
        return;
    }
    let spec = InstanceSpec {
        main_cf: "compatibility_level = 3.6\nfast_flush_domains = example.com\n".to_string(),
        files: Default::default(),
        hostname: "conformance.test.invalid".to_string(),
        services: Services::FlushOnly { verbose: false },
    };
    let instance = Instance::start(&spec).expect("starting a private Postfix");
    let root = instance.root().to_path_buf();
    let config_dir = instance.config_dir().to_path_buf();
    assert!(
        !lab::processes_of(&config_dir).is_empty(),
        "the master runs"
    );
    let socket = instance.queue_dir().join("public/flush");

    // No queue manager listens: the server warns and still answers.
    let mut conn = UnixStream::connect(&socket).expect("connecting to public/flush");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("setting a read timeout");
    conn.write_all(b"request\0add\0site\0example.com\0queue_id\0ABC123\0\0")
        .expect("writing an add");
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).expect("reading the reply");
    assert_eq!(
        reply,
        b"protocol\0queue_flush_protocol\0\0status\x000\0\0",
        "maillog:\n{}",
        instance.maillog_tail(20)
    );
    let logfile = instance.queue_dir().join("flush/example_com");
    assert_eq!(
        std::fs::read(&logfile).expect("the new logfile"),
        b"ABC123\n"
    );

    drop(instance);
    assert!(!root.exists(), "the instance's directory is removed");
    assert_eq!(
        lab::processes_of(&config_dir),
        Vec::<u32>::new(),
        "no process is left"
    );
}
