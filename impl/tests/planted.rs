//! Every planted bug changes what can be seen: the same run of requests,
//! with and without each bug, must differ in a reply, a trigger or the
//! spool. A bug that changed nothing would prove nothing about a checker.

#![cfg(feature = "planted-bugs")]

mod common;

use std::path::Path;

use common::*;
use flushbed_impl::PlantedBug;
use flushbed_vocab::wire::{add_request, refresh_request, send_file_request, send_site_request};
use flushbed_vocab::{Profile, QueueName};

const MAIN_CF: &str = "fast_flush_domains = example.com, texthash:/nonexistent/table\n\
                       fast_flush_refresh_time = 90s\nfast_flush_purge_time = 180s\n";

/// Everything one run shows: replies, triggers, then every file of the
/// spool with its bytes, times and mode.
fn run(bug: Option<PlantedBug>) -> String {
    let mut bed = Bed::new(MAIN_CF, Profile::Strict);
    if let Some(bug) = bug {
        bed.service.plant_bug(bug);
    }
    let mut seen = Vec::new();
    let mut request = |bed: &Bed, input: Vec<u8>, now| {
        let out = bed.request(&input, now);
        let reply = String::from_utf8_lossy(&out.reply).into_owned();
        seen.push(format!("{reply:?} {:?} {}", out.triggers, out.died));
    };

    request(&bed, add_request(b"Example.com", b"A1"), T0);
    request(&bed, add_request(b"other.example", b"A2"), T0);

    bed.plant("A1", QueueName::Deferred, 0o700, T0 - 500);
    bed.plant("B2", QueueName::Deferred, 0o600, T0 - 500);
    bed.write_logfile("empty_example_com", b"", T0, T0);
    request(&bed, send_site_request(b"example.com"), T0 + 10);
    request(&bed, send_site_request(b"empty.example.com"), T0 + 10);
    request(&bed, send_file_request(b"B2"), T0 + 20);
    bed.write_logfile("keep_example_com", b"", T0 + 50, T0 - 10);
    request(&bed, add_request(b"keep.example.com", b"K1"), T0 + 60);

    bed.write_logfile("only_bad", b"x-y\n", T0 - 1000, T0 - 1000);
    bed.write_logfile("edge_refresh", b"C3\n", T0 + 10, T0 + 10);
    bed.write_logfile("edge_purge", b"", T0 - 80, T0 - 80);
    request(&bed, refresh_request(), T0 + 100);

    let mut files = Vec::new();
    list(&bed.queue_dir(), &bed.queue_dir(), &mut files);
    files.sort();
    seen.extend(files);
    seen.join("\n")
}

fn list(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            list(root, &path, out);
        } else {
            let (atime, mtime, mode) = times(&path);
            let content = String::from_utf8_lossy(&read_noatime(&path).unwrap()).into_owned();
            let name = path.strip_prefix(root).unwrap().display();
            out.push(format!("{name} {content:?} {atime} {mtime} {mode:o}"));
        }
    }
}

#[test]
fn every_planted_bug_shows() {
    let clean = run(None);
    for bug in PlantedBug::ALL {
        assert_ne!(run(Some(bug)), clean, "{bug:?} changed nothing");
    }
}
