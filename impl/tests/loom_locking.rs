//! Concurrent add, send_site and refresh on one logfile, every
//! interleaving of their file operations explored with loom on the
//! in-memory file system: under strict no acknowledged queue ID is ever
//! lost, and under postfix loom finds the refresh that deletes an empty
//! logfile between an add's open and its lock.
//!
//! An acknowledged queue ID is kept when, after every request is done, it
//! is still in its logfile or its queue file was moved to `incoming/` by a
//! send that read it. The loss is counted in an atomic across loom's
//! iterations and asserted on afterwards, so that postfix's loss is a
//! finding, not a panic.
//!
//! The models are small (two or three threads, preemption bound 2 or 3)
//! so that they finish in seconds in a release build; they run from
//! `cargo test --workspace --release`, the bounds set in code.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use flushbed_impl::fs::FileSystem;
use flushbed_impl::memfs::{LoomSync, MemFs};
use flushbed_impl::{FlushService, ManualClock, MemoryConnection, RecordingSink};
use flushbed_vocab::config::Environment;
use flushbed_vocab::wire::{add_request, refresh_request, send_site_request};
use flushbed_vocab::{FlushConfig, MainCf, Profile, QueueName, Time};

const NOW: Time = 1_800_000_000;
const DAY: Time = 86400;
const QUEUE_ID: &str = "A1";

type Service = FlushService<MemFs<LoomSync>>;

fn config() -> FlushConfig {
    let main = MainCf::parse(
        "queue_directory = /spool\nfast_flush_domains = example.com\n",
        "main.cf",
    )
    .expect("main.cf");
    FlushConfig::from_main_cf(&main, &Environment::default()).expect("config")
}

/// A service over a fresh in-memory spool: an empty logfile unchanged for
/// ten days (due for deletion), and the queue file in `deferred/`.
fn service(config: &FlushConfig, profile: Profile) -> (Arc<Service>, MemFs<LoomSync>) {
    let fs = MemFs::<LoomSync>::new();
    fs.set_clock(NOW);
    let clock = ManualClock::new(NOW);
    let service = FlushService::with_fs(
        fs.clone(),
        config,
        profile,
        Arc::new(clock),
        Arc::new(RecordingSink::default()),
    )
    .expect("the service starts");
    let old = NOW - 10 * DAY;
    service
        .write_logfile("example_com", b"", 0o600, old, old)
        .expect("the logfile");
    service
        .plant_queue_file(QUEUE_ID, QueueName::Deferred, 0o700, old, old)
        .expect("the queue file");
    (Arc::new(service), fs)
}

/// One request; whether the client was told OK.
fn request(service: &Service, input: &[u8]) -> bool {
    let mut conn = MemoryConnection::new(input);
    service.serve_connection(&mut conn);
    conn.output.ends_with(b"status\x000\0\0")
}

/// Whether the acknowledged queue ID survived: listed, or moved.
fn kept(fs: &MemFs<LoomSync>) -> bool {
    let listed = fs
        .read_file(Path::new("/spool/flush/example_com"))
        .is_ok_and(|content| {
            content
                .split(|&b| b == b'\n')
                .any(|l| l == QUEUE_ID.as_bytes())
        });
    let moved = fs.stat(Path::new("/spool/incoming/A1")).is_ok();
    listed || moved
}

/// What a loom model saw over all its iterations.
#[derive(Debug, Default)]
struct Seen {
    iterations: AtomicUsize,
    lost: AtomicUsize,
}

/// Explores an add beside `others` (each a request on its own thread)
/// with loom, preempting at most `preemptions` times per execution.
fn explore(profile: Profile, others: &'static [&'static [u8]], preemptions: usize) -> Arc<Seen> {
    let seen = Arc::new(Seen::default());
    let config = Arc::new(config());
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemptions);
    let in_model = Arc::clone(&seen);
    builder.check(move || {
        in_model.iterations.fetch_add(1, Ordering::Relaxed);
        let (service, fs) = service(&config, profile);

        let mut handles = Vec::new();
        for &input in others {
            let service = Arc::clone(&service);
            handles.push(loom::thread::spawn(move || {
                request(&service, input);
            }));
        }
        let acknowledged = request(&service, &add_request(b"example.com", QUEUE_ID.as_bytes()));
        for handle in handles {
            handle.join().expect("a request thread");
        }

        if acknowledged && !kept(&fs) {
            in_model.lost.fetch_add(1, Ordering::Relaxed);
        }
    });
    eprintln!(
        "loom {profile:?} with {} other request(s), preemption bound {preemptions}: \
         {} iterations, {} lost",
        others.len(),
        seen.iterations.load(Ordering::Relaxed),
        seen.lost.load(Ordering::Relaxed)
    );
    seen
}

static REFRESH: &[&[u8]] = &[b"request\0rfrsh\0\0"];
static SEND_AND_REFRESH: &[&[u8]] = &[
    b"request\0send_site\0site\0example.com\0\0",
    b"request\0rfrsh\0\0",
];

#[test]
fn the_requests_are_what_the_client_library_sends() {
    assert_eq!(REFRESH[0], refresh_request().as_slice());
    assert_eq!(
        SEND_AND_REFRESH[0],
        send_site_request(b"example.com").as_slice()
    );
}

#[test]
fn under_postfix_a_refresh_deleting_between_an_adds_open_and_lock_loses_it() {
    let seen = explore(Profile::Postfix, REFRESH, 2);
    assert!(seen.iterations.load(Ordering::Relaxed) > 1);
    assert!(
        seen.lost.load(Ordering::Relaxed) > 0,
        "loom should find the unlocked delete that loses an acknowledged queue ID"
    );
}

#[test]
fn under_strict_an_add_beside_a_refresh_is_never_lost() {
    let seen = explore(Profile::Strict, REFRESH, 3);
    assert!(seen.iterations.load(Ordering::Relaxed) > 1);
    assert_eq!(seen.lost.load(Ordering::Relaxed), 0);
}

#[test]
fn under_strict_an_add_beside_a_send_and_a_refresh_is_never_lost() {
    let seen = explore(Profile::Strict, SEND_AND_REFRESH, 3);
    assert!(seen.iterations.load(Ordering::Relaxed) > 1);
    assert_eq!(seen.lost.load(Ordering::Relaxed), 0);
}
