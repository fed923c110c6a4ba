//! rfrsh, purge and the master's wakeup: the reply before the work, the
//! strict time comparisons, old empty logfiles removed, and the one-letter
//! logfile that ends Postfix's scan but not flushbed's strict one.

mod common;

use common::*;
use flushbed_impl::fs::FileSystem;
use flushbed_vocab::wire::{purge_request, refresh_request, wakeup_trigger};
use flushbed_vocab::{Profile, QueueName, Trigger};

/// Short times, so that the boundaries are easy to write.
const TIMES: &str = "fast_flush_domains = example.com\n\
                     fast_flush_refresh_time = 90s\nfast_flush_purge_time = 180s\n";

#[test]
fn refresh_sends_a_logfile_unread_for_longer_than_the_refresh_time_without_f() {
    let bed = Bed::new(TIMES, Profile::Strict);
    bed.plant("A1", QueueName::Deferred, 0o700, T0);
    bed.write_logfile("example_com", b"A1\n", T0 - 91, T0 - 91);
    let out = bed.request(&refresh_request(), T0);
    assert_eq!(out.reply, status(OK));
    assert!(!out.died);
    assert_eq!(out.triggers, vec![Trigger::ScanIncoming]);
    assert_eq!(bed.find("A1").unwrap(), "incoming/A1");
    assert_eq!(bed.logfile("example_com").unwrap(), b"");
    assert_eq!(times(&bed.logfile_path("example_com")), (T0, T0, 0o600));
}

#[test]
fn refresh_compares_strictly() {
    let bed = Bed::new(TIMES, Profile::Postfix);
    bed.write_logfile("example_com", b"A1\n", T0 - 90, T0 - 90);
    bed.write_logfile("empty_one", b"", T0 - 180, T0 - 180);
    let out = bed.request(&refresh_request(), T0);
    assert!(out.triggers.is_empty());
    assert_eq!(bed.logfile("example_com").unwrap(), b"A1\n");
    assert_eq!(bed.logfile("empty_one").unwrap(), b"");

    let out = bed.request(&wakeup_trigger(), T0 + 1);
    assert_eq!(out.reply, status(OK));
    assert_eq!(out.triggers, vec![Trigger::ScanIncoming]);
    assert_eq!(bed.logfile("example_com").unwrap(), b"");
    assert_eq!(bed.logfile("empty_one"), None);
}

#[test]
fn refresh_removes_old_empty_logfiles_in_both_profiles() {
    for profile in [Profile::Postfix, Profile::Strict] {
        let bed = Bed::new(TIMES, profile);
        bed.write_logfile("old_empty", b"", T0, T0 - 1000);
        bed.write_logfile("new_empty", b"", T0 - 1000, T0);
        bed.request(&refresh_request(), T0);
        assert_eq!(bed.logfile("old_empty"), None);
        assert_eq!(bed.logfile("new_empty").unwrap(), b"");
    }
}

#[test]
fn purge_sends_every_logfile_not_read_in_this_second() {
    let bed = Bed::new(TIMES, Profile::Strict);
    bed.write_logfile("read_now", b"A1\n", T0, T0);
    bed.write_logfile("read_before", b"B1\n", T0 - 1, T0 - 1);
    let out = bed.request(&purge_request(), T0);
    assert_eq!(out.reply, status(OK));
    assert_eq!(out.triggers, vec![Trigger::ScanIncoming]);
    assert_eq!(bed.logfile("read_now").unwrap(), b"A1\n");
    assert_eq!(bed.logfile("read_before").unwrap(), b"");
}

#[test]
fn refresh_skips_names_that_are_not_logfile_names_and_checks_no_eligibility() {
    let bed = Bed::new(TIMES, Profile::Strict);
    bed.write_logfile("a.b", b"A1\n", T0 - 1000, T0 - 1000);
    bed.write_logfile("not_listed_example", b"A1\n", T0 - 1000, T0 - 1000);
    let out = bed.request(&refresh_request(), T0);
    assert_eq!(out.triggers, vec![Trigger::ScanIncoming]);
    assert_eq!(bed.logfile("a.b").unwrap(), b"A1\n");
    assert_eq!(bed.logfile("not_listed_example").unwrap(), b"");
}

/// Old logfiles around a one-letter logfile, and the order the scan meets
/// them in.
fn one_letter_bed(profile: Profile) -> (Bed, Vec<String>) {
    let bed = Bed::new(TIMES, profile);
    for name in ["aa", "bb", "x", "cc", "dd"] {
        bed.write_logfile(name, b"A1\n", T0 - 1000, T0 - 1000);
    }
    let order = bed
        .service
        .fs()
        .list_dir(&bed.queue_dir().join("flush"))
        .unwrap()
        .into_iter()
        .map(|n| n.into_string().unwrap())
        .collect();
    (bed, order)
}

#[test]
fn a_one_letter_logfile_ends_the_postfix_scan_after_the_reply() {
    let (bed, order) = one_letter_bed(Profile::Postfix);
    let out = bed.request(&refresh_request(), T0);
    assert_eq!(out.reply, status(OK));
    assert!(out.died);

    let x = order.iter().position(|n| n == "x").unwrap();
    for (i, name) in order.iter().enumerate() {
        let expected: &[u8] = if i < x { b"" } else { b"A1\n" };
        assert_eq!(
            bed.logfile(name).unwrap(),
            expected,
            "{name} in order {order:?}"
        );
    }
}

#[test]
fn a_one_letter_logfile_is_refreshed_like_any_other_under_strict() {
    let (bed, order) = one_letter_bed(Profile::Strict);
    let out = bed.request(&refresh_request(), T0);
    assert_eq!(out.reply, status(OK));
    assert!(!out.died);
    for name in &order {
        assert_eq!(bed.logfile(name).unwrap(), b"", "{name}");
    }
}

#[test]
fn a_hashed_flush_directory_is_walked_through_its_one_letter_subdirectories() {
    for profile in [Profile::Postfix, Profile::Strict] {
        let main_cf = format!("{TIMES}hash_queue_names = deferred, flush\n");
        let bed = Bed::new(&main_cf, profile);
        bed.write_logfile("example_com", b"A1\n", T0 - 1000, T0 - 1000);
        let out = bed.request(&refresh_request(), T0);
        assert!(!out.died);
        assert_eq!(out.triggers, vec![Trigger::ScanIncoming]);
        assert_eq!(
            read_noatime(&bed.queue_dir().join("flush/e/example_com")).unwrap(),
            b""
        );
    }
}

#[test]
fn a_missing_flush_directory_is_fatal_after_the_reply() {
    let bed = Bed::new(TIMES, Profile::Strict);
    std::fs::remove_dir(bed.queue_dir().join("flush")).unwrap();
    let out = bed.request(&refresh_request(), T0);
    assert_eq!(out.reply, status(OK));
    assert!(out.died);
}
