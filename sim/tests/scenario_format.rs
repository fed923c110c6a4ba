//! The scenario format as `docs/SCENARIOS.md` states it, read from the
//! files in `tests/data/`: what a scenario says comes back as a checked
//! `Scenario`, and each kind of mistake is refused with its
//! `file:line:column`.

use std::path::PathBuf;

use flushbed_sim::scenario::{self, Action, ExpectedStatus, Wakeup};
use flushbed_vocab::{Profile, QueueName, Status, Trigger};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn refused(name: &str) -> String {
    let path = data(name);
    let err = scenario::load(&path)
        .expect_err("the scenario must be refused")
        .to_string();
    let prefix = format!("{}:", path.display());
    assert!(err.starts_with(&prefix), "{err}");
    err[prefix.len()..].to_string()
}

#[test]
fn every_section_reads_back_as_written() {
    let s = scenario::load(&data("every-key.toml")).unwrap();
    assert_eq!(s.name, "every-key");
    assert_eq!(s.profiles, vec![Profile::Strict]);
    assert_eq!(s.start, 1_700_000_000);
    assert_eq!(s.targets, Some(vec!["spool".to_string()]));
    assert!(s.applies_to("spool") && !s.applies_to("postfix"));
    assert_eq!(s.config.files["domains"], b"example.com example.net\n");
    assert_eq!(s.config.hostname, "mx.example.invalid");
    assert_eq!(s.sim.flush_wakeup, Wakeup::Every(30));
    assert!(s.sim.sites[&b"example.com"[..]]);

    let log = &s.logfiles[0];
    assert_eq!(
        (log.content.as_slice(), log.mode),
        (&b"A1B2C3D4E5\n\xff"[..], 0o644)
    );
    assert_eq!((log.atime, log.mtime), (s.start - 3600, 1_699_999_000));
    let q = &s.queue_files[0];
    assert_eq!(
        (q.queue, q.mode, q.arrival),
        (QueueName::Incoming, 0o740, s.start - 2 * 86_400)
    );
    assert_eq!(q.sender, "");

    let times: Vec<i64> = s.events.iter().map(|e| e.time - s.start).collect();
    assert_eq!(times, vec![5, 60, 60, 60, 3660, 3660]);
    assert_eq!(s.events[0].note.as_deref(), Some("a new message"));
    assert_eq!(
        s.events[1].action,
        Action::Etrn {
            args: vec![b"@example.com".to_vec()],
            helo: false,
            in_transaction: false
        }
    );
    let etrn = s.events[1].expect.as_ref().unwrap();
    assert_eq!(etrn.status, Some(ExpectedStatus::Status(Status::Ok)));
    assert_eq!(
        etrn.triggers,
        Some(vec![Trigger::FlushDead, Trigger::ScanIncoming])
    );
    assert_eq!(
        s.events[2].action,
        Action::Request {
            wire: b"request\0bogus\0\0".to_vec()
        }
    );
    match &s.events[3].action {
        Action::WriteLogfile(l) => assert_eq!((l.mode, l.atime), (0o600, s.start + 60)),
        other => panic!("{other:?}"),
    }
    let check = s.events[5].expect.as_ref().unwrap();
    assert_eq!(check.logfiles["gone"], None);
    assert_eq!(check.queue["NOPE"], None);
    assert_eq!(check.queue_times["A1B2C3D4E5"].mode, Some(0o700));
}

#[test]
fn a_bad_escape_is_refused_at_its_string() {
    assert!(refused("bad-escape.toml").starts_with("9:11: expected a byte string"));
}

#[test]
fn a_key_the_event_does_not_take_is_refused_at_the_key() {
    assert!(refused("misplaced-key.toml").starts_with("10:4: unexpected key `site`"));
}

#[test]
fn time_going_back_is_refused_at_the_later_event() {
    assert!(refused("time-goes-back.toml").starts_with("13:1: expected a time not before"));
}

#[test]
fn an_unknown_key_is_refused_where_it_stands() {
    assert!(refused("unknown-table-key.toml").starts_with("7:1: unknown field `queue_manger`"));
}
