//! What a failing file operation does: the fatal ones end the connection
//! without a reply and leave what was done; the others are warnings, except
//! where the strict profile departs (a failed add write answers FAIL, a
//! queue file that could not be moved keeps its logfile whole). And what
//! another process does between a server's open and its lock.

mod common;

use common::*;
use flushbed_impl::faultfs::{Call, Failure, FaultFs, Faults, Plan};
use flushbed_impl::RealFs;
use flushbed_vocab::wire::{add_request, refresh_request, send_site_request};
use flushbed_vocab::{Profile, QueueName, Trigger};

/// The real file system, with chosen calls failing.
type Faulty = FaultFs<RealFs>;

fn faulty() -> Faulty {
    FaultFs::new(RealFs, Faults::default())
}

const DOMAINS: &str = "fast_flush_domains = example.com\n";

fn bed(profile: Profile) -> Bed<Faulty> {
    Bed::with_fs(faulty(), DOMAINS, profile)
}

#[test]
fn a_lock_failure_on_add_is_fatal_and_unanswered() {
    let bed = bed(Profile::Postfix);
    bed.service
        .fs()
        .faults()
        .fail_every(Call::Lock, Failure::Io);
    let out = bed.request(&add_request(b"example.com", b"A1"), T0);
    assert!(out.died);
    assert!(out.reply.is_empty());
    assert_eq!(bed.logfile("example_com").unwrap(), b"");
}

#[test]
fn an_open_failure_other_than_not_found_is_fatal_on_send() {
    let bed = bed(Profile::Strict);
    bed.write_logfile("example_com", b"A1\n", T0, T0);
    bed.service
        .fs()
        .faults()
        .fail_every(Call::OpenReadWrite, Failure::Denied);
    let out = bed.request(&send_site_request(b"example.com"), T0);
    assert!(out.died);
    assert!(out.reply.is_empty());
    assert!(out.triggers.is_empty());
}

#[test]
fn a_truncate_failure_is_fatal_and_the_moves_made_stay_made() {
    let bed = bed(Profile::Postfix);
    bed.plant("A1", QueueName::Deferred, 0o700, T0);
    bed.write_logfile("example_com", b"A1\n", T0, T0);
    bed.service
        .fs()
        .faults()
        .fail_every(Call::Truncate, Failure::Io);
    let out = bed.request(&send_site_request(b"example.com"), T0 + 1);
    assert!(out.died);
    assert!(out.reply.is_empty());
    assert_eq!(out.triggers, vec![Trigger::FlushDead]);
    assert_eq!(bed.find("A1").unwrap(), "incoming/A1");
    assert_eq!(bed.logfile("example_com").unwrap(), b"A1\n");
}

#[test]
fn an_unlock_failure_after_add_is_fatal_but_the_line_is_written() {
    let bed = bed(Profile::Strict);
    bed.service
        .fs()
        .faults()
        .fail_every(Call::Unlock, Failure::Io);
    let out = bed.request(&add_request(b"example.com", b"A1"), T0);
    assert!(out.died);
    assert!(out.reply.is_empty());
    assert_eq!(bed.logfile("example_com").unwrap(), b"A1\n");
}

#[test]
fn a_failed_add_write_answers_ok_under_postfix_and_fail_under_strict() {
    for (profile, code) in [(Profile::Postfix, OK), (Profile::Strict, FAIL)] {
        let bed = bed(profile);
        bed.service
            .fs()
            .faults()
            .fail_every(Call::Write, Failure::NoSpace);
        let out = bed.request(&add_request(b"example.com", b"A1"), T0);
        assert!(!out.died);
        assert_eq!(out.reply, status(code), "{profile:?}");
    }
}

#[test]
fn a_failed_rename_loses_the_line_under_postfix_and_keeps_the_logfile_under_strict() {
    for (profile, kept) in [
        (Profile::Postfix, &b""[..]),
        (Profile::Strict, &b"A1\nB2\n"[..]),
    ] {
        let bed = bed(profile);
        bed.plant("A1", QueueName::Deferred, 0o700, T0);
        bed.plant("B2", QueueName::Incoming, 0o700, T0);
        bed.write_logfile("example_com", b"A1\nB2\n", T0, T0);
        bed.service
            .fs()
            .faults()
            .fail_every(Call::Rename, Failure::Io);
        let out = bed.request(&send_site_request(b"example.com"), T0 + 1);
        assert_eq!(out.reply, status(OK));
        assert_eq!(
            out.triggers,
            vec![Trigger::FlushDead, Trigger::ScanIncoming]
        );
        assert_eq!(bed.find("A1").unwrap(), "deferred/A/A1");
        assert_eq!(times(&bed.queue_dir().join("deferred/A/A1")).0, T0 + 1);
        assert_eq!(bed.logfile("example_com").unwrap(), kept, "{profile:?}");
        assert_eq!(times(&bed.logfile_path("example_com")).1, T0 + 1);
    }
}

#[test]
fn a_failed_logfile_time_reset_changes_no_answer() {
    let bed = bed(Profile::Postfix);
    bed.write_logfile("example_com", b"A1\n", T0 - 60, T0 - 60);

    // The last utime of a send is the logfile's own.
    let faults = bed.service.fs().faults().clone();
    faults.begin_request(None);
    bed.request(&send_site_request(b"example.com"), T0);
    let calls = faults.calls();
    let reset = calls.iter().rposition(|&c| c == Call::SetTimes).unwrap();

    bed.write_logfile("example_com", b"A1\n", T0 - 60, T0 - 60);
    faults.begin_request(Some(Plan {
        call: reset,
        failure: Failure::Io,
    }));
    let out = bed.request(&send_site_request(b"example.com"), T0);
    assert_eq!(out.reply, status(OK));
    assert!(!out.died);
    assert_eq!(bed.logfile("example_com").unwrap(), b"");
}

#[test]
fn a_failed_write_to_a_new_logfile_still_gives_it_the_requests_times() {
    let bed = bed(Profile::Strict);
    bed.service
        .fs()
        .faults()
        .fail_every(Call::Write, Failure::Io);
    let out = bed.request(&add_request(b"example.com", b"A1"), T0 + 5);
    assert_eq!(out.reply, status(FAIL));
    assert_eq!(bed.logfile("example_com").unwrap(), b"");
    let (atime, mtime, mode) = times(&bed.logfile_path("example_com"));
    assert_eq!((atime, mtime, mode), (T0 + 5, T0 + 5, 0o600));
}

#[test]
fn strict_keeps_a_logfile_whose_queue_file_times_could_not_be_set() {
    for (profile, kept) in [
        (Profile::Postfix, &b""[..]),
        (Profile::Strict, &b"A1\n"[..]),
    ] {
        let bed = bed(profile);
        bed.plant("A1", QueueName::Deferred, 0o700, T0);
        bed.write_logfile("example_com", b"A1\n", T0, T0);
        let faults = bed.service.fs().faults().clone();
        faults.begin_request(None);
        bed.request(&send_site_request(b"example.com"), T0 + 1);
        let first_utime = faults
            .calls()
            .iter()
            .position(|&c| c == Call::SetTimes)
            .unwrap();

        bed.plant("A1", QueueName::Deferred, 0o700, T0);
        bed.write_logfile("example_com", b"A1\n", T0, T0);
        faults.begin_request(Some(Plan {
            call: first_utime,
            failure: Failure::Io,
        }));
        let out = bed.request(&send_site_request(b"example.com"), T0 + 1);
        assert_eq!(out.reply, status(OK));
        assert_eq!(bed.find("A1").unwrap(), "deferred/A/A1");
        assert_eq!(bed.logfile("example_com").unwrap(), kept, "{profile:?}");
    }
}

#[test]
fn an_add_whose_logfile_is_removed_before_its_lock_is_lost_under_postfix_only() {
    for (profile, kept) in [
        (Profile::Postfix, None),
        (Profile::Strict, Some(&b"A1\n"[..])),
    ] {
        let bed = bed(profile);
        bed.write_logfile("example_com", b"", T0 - 1000, T0 - 1000);
        let path = bed.logfile_path("example_com");
        bed.service
            .fs()
            .faults()
            .before_next_lock(move || std::fs::remove_file(path).unwrap());
        let out = bed.request(&add_request(b"example.com", b"A1"), T0);
        assert_eq!(out.reply, status(OK));
        assert_eq!(bed.logfile("example_com").as_deref(), kept, "{profile:?}");
    }
}

#[test]
fn strict_refresh_keeps_an_empty_logfile_written_to_before_its_lock() {
    let main_cf = "fast_flush_domains = example.com\nfast_flush_purge_time = 180s\n";
    for (profile, kept) in [
        (Profile::Postfix, None),
        (Profile::Strict, Some(&b"A1\n"[..])),
    ] {
        let bed = Bed::with_fs(faulty(), main_cf, profile);
        bed.write_logfile("example_com", b"", T0 - 1000, T0 - 1000);
        let path = bed.logfile_path("example_com");
        bed.service
            .fs()
            .faults()
            .before_next_lock(move || std::fs::write(path, b"A1\n").unwrap());

        // Under postfix there is no lock to wait for: the file goes at once
        // and the hook never runs.
        let out = bed.request(&refresh_request(), T0);
        assert_eq!(out.reply, status(OK));
        assert_eq!(bed.logfile("example_com").as_deref(), kept, "{profile:?}");
    }
}

#[test]
fn strict_refresh_keeps_a_logfile_replaced_before_its_lock() {
    let main_cf = "fast_flush_domains = example.com\nfast_flush_purge_time = 180s\n";
    let bed = Bed::with_fs(faulty(), main_cf, Profile::Strict);
    bed.write_logfile("example_com", b"", T0 - 1000, T0 - 1000);
    let path = bed.logfile_path("example_com");
    let spare = bed.dir.path().join("spare");
    std::fs::write(&spare, b"").unwrap();
    bed.service
        .fs()
        .faults()
        .before_next_lock(move || std::fs::rename(spare, path).unwrap());
    bed.request(&refresh_request(), T0);
    assert_eq!(bed.logfile("example_com").unwrap(), b"");
}
