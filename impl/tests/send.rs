//! send_site and send_file: which queue files move, which times are set,
//! when the logfile is truncated, and which triggers the queue manager
//! gets.

mod common;

use common::*;
use flushbed_vocab::wire::{send_file_request, send_site_request};
use flushbed_vocab::{Profile, QueueName, Trigger};

const DOMAINS: &str = "fast_flush_domains = example.com\n";

#[test]
fn send_site_without_a_logfile_is_ok_and_triggers_nothing() {
    let bed = Bed::new(DOMAINS, Profile::Strict);
    let out = bed.request(&send_site_request(b"example.com"), T0);
    assert_eq!(out.reply, status(OK));
    assert!(out.triggers.is_empty());
}

#[test]
fn send_site_of_an_ineligible_site_is_denied() {
    let bed = Bed::new(DOMAINS, Profile::Strict);
    assert_eq!(
        bed.request(&send_site_request(b"example.net"), T0).reply,
        status(DENY)
    );
    assert_eq!(
        bed.request(&send_site_request(b"example.com."), T0).reply,
        status(DENY)
    );
}

#[test]
fn send_site_moves_deferred_mail_into_incoming_and_sets_its_times() {
    let bed = Bed::new(DOMAINS, Profile::Strict);
    bed.plant("A2AD898C68C", QueueName::Deferred, 0o700, T0 + 3000);
    bed.plant("B1", QueueName::Incoming, 0o700, T0 - 10);
    bed.write_logfile(
        "example_com",
        b"A2AD898C68C\nB1\nGONE1\n",
        T0 - 3600,
        T0 - 3600,
    );

    let out = bed.request(&send_site_request(b"example.com"), T0 + 10);
    assert_eq!(out.reply, status(OK));
    assert_eq!(
        out.triggers,
        vec![Trigger::FlushDead, Trigger::ScanIncoming]
    );
    assert_eq!(bed.find("A2AD898C68C").unwrap(), "incoming/A2AD898C68C");
    assert_eq!(
        times(&bed.queue_dir().join("incoming/A2AD898C68C")),
        (T0 + 10, T0 + 10, 0o700)
    );
    assert_eq!(
        times(&bed.queue_dir().join("incoming/B1")),
        (T0 + 10, T0 + 10, 0o700)
    );
    assert_eq!(bed.find("GONE1"), None);
    assert_eq!(bed.logfile("example_com").unwrap(), b"");
    assert_eq!(
        times(&bed.logfile_path("example_com")),
        (T0 + 10, T0 + 10, 0o600)
    );
}

#[test]
fn send_truncates_only_when_a_line_was_read_but_always_sets_the_logfile_times() {
    let bed = Bed::new(DOMAINS, Profile::Postfix);
    bed.write_logfile("example_com", b"", T0 - 3600, T0 - 3600);
    let out = bed.request(&send_site_request(b"example.com"), T0 + 10);
    assert_eq!(out.reply, status(OK));
    assert_eq!(out.triggers, vec![Trigger::FlushDead]);
    assert_eq!(
        times(&bed.logfile_path("example_com")),
        (T0 + 10, T0 + 10, 0o600)
    );
}

#[test]
fn bad_lines_are_skipped_but_count_as_read() {
    let bed = Bed::new(DOMAINS, Profile::Strict);
    bed.write_logfile("example_com", b"BAD LINE\r\n\n", T0, T0);
    let out = bed.request(&send_site_request(b"example.com"), T0 + 1);
    assert_eq!(
        out.triggers,
        vec![Trigger::FlushDead, Trigger::ScanIncoming]
    );
    assert_eq!(bed.logfile("example_com").unwrap(), b"");
}

#[test]
fn a_queue_id_ends_at_the_first_nul() {
    let bed = Bed::new(DOMAINS, Profile::Strict);
    bed.plant("A1", QueueName::Deferred, 0o700, T0);
    bed.write_logfile("example_com", b"A1\0junk", T0, T0);
    bed.request(&send_site_request(b"example.com"), T0 + 1);
    assert_eq!(bed.find("A1").unwrap(), "incoming/A1");
}

#[test]
fn an_unterminated_last_line_ending_in_0xff_is_not_read() {
    let bed = Bed::new(DOMAINS, Profile::Postfix);
    bed.write_logfile("example_com", b"\xff", T0 - 60, T0 - 60);
    let out = bed.request(&send_site_request(b"example.com"), T0);
    assert_eq!(out.triggers, vec![Trigger::FlushDead]);
    assert_eq!(bed.logfile("example_com").unwrap(), b"\xff");
    assert_eq!(times(&bed.logfile_path("example_com")), (T0, T0, 0o600));

    // With a line before it, the logfile is truncated all the same.
    bed.write_logfile("example_com", b"A1\nB2\xff", T0, T0);
    let out = bed.request(&send_site_request(b"example.com"), T0);
    assert_eq!(
        out.triggers,
        vec![Trigger::FlushDead, Trigger::ScanIncoming]
    );
    assert_eq!(bed.logfile("example_com").unwrap(), b"");
}

#[test]
fn a_duplicate_line_is_harmless() {
    let bed = Bed::new(DOMAINS, Profile::Postfix);
    bed.plant("A1", QueueName::Deferred, 0o700, T0);
    bed.write_logfile("example_com", b"A1\nA1\n", T0, T0);
    bed.request(&send_site_request(b"example.com"), T0 + 5);
    assert_eq!(bed.find("A1").unwrap(), "incoming/A1");
    assert_eq!(
        times(&bed.queue_dir().join("incoming/A1")),
        (T0 + 5, T0 + 5, 0o700)
    );
}

#[test]
fn send_site_moves_a_file_whatever_its_mode() {
    let bed = Bed::new(DOMAINS, Profile::Strict);
    bed.plant("A1", QueueName::Deferred, 0o600, T0);
    bed.write_logfile("example_com", b"A1\n", T0, T0);
    bed.request(&send_site_request(b"example.com"), T0 + 1);
    assert_eq!(bed.find("A1").unwrap(), "incoming/A1");
    assert_eq!(times(&bed.queue_dir().join("incoming/A1")).2, 0o600);
}

#[test]
fn send_file_moves_a_ready_file_and_marks_it_for_unthrottling() {
    let bed = Bed::new(DOMAINS, Profile::Strict);
    bed.plant("A1", QueueName::Deferred, 0o700, T0 + 3000);
    let out = bed.request(&send_file_request(b"A1"), T0 + 2);
    assert_eq!(out.reply, status(OK));
    assert_eq!(out.triggers, vec![Trigger::ScanIncoming]);
    assert_eq!(
        times(&bed.queue_dir().join("incoming/A1")),
        (T0 + 2, T0 + 2, 0o740)
    );
}

#[test]
fn send_file_of_a_file_that_is_not_ready_only_sets_its_times() {
    let bed = Bed::new(DOMAINS, Profile::Postfix);
    bed.plant("A1", QueueName::Deferred, 0o600, T0 + 3000);
    let out = bed.request(&send_file_request(b"A1"), T0 + 2);
    assert_eq!(out.reply, status(OK));
    assert!(out.triggers.is_empty());
    assert_eq!(
        times(&bed.queue_dir().join("deferred/A/A1")),
        (T0 + 2, T0 + 2, 0o600)
    );
}

#[test]
fn send_file_of_a_file_in_incoming_needs_no_move() {
    let bed = Bed::new(DOMAINS, Profile::Strict);
    bed.plant("A1", QueueName::Incoming, 0o700, T0);
    let out = bed.request(&send_file_request(b"A1"), T0 + 2);
    assert_eq!(out.triggers, vec![Trigger::ScanIncoming]);
    assert_eq!(
        times(&bed.queue_dir().join("incoming/A1")),
        (T0 + 2, T0 + 2, 0o740)
    );
}

#[test]
fn send_file_of_a_missing_file_triggers_nothing() {
    let bed = Bed::new(DOMAINS, Profile::Strict);
    let out = bed.request(&send_file_request(b"A1"), T0);
    assert_eq!(out.reply, status(OK));
    assert!(out.triggers.is_empty());
}

#[test]
fn send_file_checks_only_the_queue_id() {
    let bed = Bed::new("fast_flush_domains =\n", Profile::Strict);
    assert_eq!(
        bed.request(&send_file_request(b"not-a-queue-id"), T0).reply,
        status(BAD)
    );
    assert_eq!(bed.request(&send_file_request(b"A1"), T0).reply, status(OK));
}

#[test]
fn send_file_leaves_a_file_with_another_hard_link_alone() {
    let bed = Bed::new(DOMAINS, Profile::Strict);
    bed.plant("A1", QueueName::Deferred, 0o700, T0);
    let path = bed.queue_dir().join("deferred/A/A1");
    std::fs::hard_link(&path, bed.dir.path().join("elsewhere")).unwrap();
    let out = bed.request(&send_file_request(b"A1"), T0 + 2);
    assert!(out.triggers.is_empty());
    assert_eq!(times(&path), (T0 + 2, T0 + 2, 0o700));
}

#[test]
fn long_queue_ids_are_found_in_their_own_hash_directory() {
    let bed = Bed::new(DOMAINS, Profile::Strict);
    let id = "4XjQ1q4Yb9zbGqCm";
    bed.plant(id, QueueName::Deferred, 0o700, T0);
    assert_eq!(bed.find(id).unwrap(), format!("deferred/9/{id}"));
    bed.write_logfile("example_com", format!("{id}\n").as_bytes(), T0, T0);
    bed.request(&send_site_request(b"example.com"), T0 + 1);
    assert_eq!(bed.find(id).unwrap(), format!("incoming/{id}"));
}

#[test]
fn a_hashed_incoming_queue_gets_its_hash_directory_on_the_move() {
    let bed = Bed::new(
        "fast_flush_domains = example.com\nhash_queue_names = deferred incoming\n",
        Profile::Strict,
    );
    bed.plant("A1", QueueName::Deferred, 0o700, T0);
    bed.write_logfile("example_com", b"A1\n", T0, T0);
    bed.request(&send_site_request(b"example.com"), T0 + 1);
    assert_eq!(bed.find("A1").unwrap(), "incoming/A/A1");
}

#[test]
fn long_queue_ids_are_looked_for_where_the_real_server_looks() {
    let bed = Bed::new(DOMAINS, Profile::Postfix);
    for id in ["4T2BxK1Zr8z1a2b", "4T2BxK1ZrZz1a2b"] {
        bed.plant(id, QueueName::Deferred, 0o700, T0);
        assert_eq!(bed.find(id).unwrap(), format!("deferred/3/{id}"));
    }
    bed.plant("ABCDEF12345", QueueName::Deferred, 0o700, T0);
    assert_eq!(bed.find("ABCDEF12345").unwrap(), "deferred/A/ABCDEF12345");
}

#[test]
fn a_damaged_logfile_reads_as_measured_on_the_real_server() {
    let bed = Bed::new(DOMAINS, Profile::Postfix);
    for id in ["AAA111", "BBB222", "CCC333", "DDD444"] {
        bed.plant(id, QueueName::Deferred, 0o700, T0 + 3600);
    }
    let content = b"AAA111\n\nBBB222\r\nCCC333\x00junk\nAAA111\nDDD444";
    bed.write_logfile("example_com", content, T0 - 3600, T0 - 3600);
    let out = bed.request(&send_site_request(b"example.com"), T0);
    assert_eq!(out.reply, status(OK));
    assert_eq!(
        out.triggers,
        vec![Trigger::FlushDead, Trigger::ScanIncoming]
    );
    for id in ["AAA111", "CCC333", "DDD444"] {
        assert_eq!(
            times(&bed.queue_dir().join("incoming").join(id)),
            (T0, T0, 0o700)
        );
    }
    let bbb = bed.queue_dir().join("deferred/B/BBB222");
    assert_eq!(times(&bbb), (T0 + 3600, T0 + 3600, 0o700));
    assert_eq!(bed.logfile("example_com").unwrap(), b"");
    assert_eq!(times(&bed.logfile_path("example_com")), (T0, T0, 0o600));

    // A last line ending in 0xFE is read (and bad); 0xFF is not read.
    bed.write_logfile("example_com", b"HHH889\xfe", T0 - 3600, T0 - 3600);
    let out = bed.request(&send_site_request(b"example.com"), T0);
    assert_eq!(
        out.triggers,
        vec![Trigger::FlushDead, Trigger::ScanIncoming]
    );
    assert_eq!(bed.logfile("example_com").unwrap(), b"");
}
