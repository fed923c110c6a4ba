//! Whole-connection tests of the model: each pins one rule of flush(8) as
//! a client and the queue manager would see it.

use flushbed_vocab::config::Environment;
use flushbed_vocab::wire::{
    add_request, purge_request, refresh_request, send_file_request, send_site_request,
    wakeup_trigger,
};
use flushbed_vocab::{FlushConfig, MainCf, Profile, QueueName, Status, Trigger};

use crate::wire::{status_reply, ANNOUNCEMENT};
use crate::{Model, Step, Tables};

const NOW: i64 = 1_800_000_000;
const HOUR: i64 = 3600;
const DAY: i64 = 86400;

fn config(main_cf: &str) -> FlushConfig {
    let main = MainCf::parse(main_cf, "main.cf").expect("main.cf");
    FlushConfig::from_main_cf(&main, &Environment::default()).expect("config")
}

fn model(main_cf: &str, profile: Profile) -> Model {
    Model::new(&config(main_cf), Tables::default(), profile)
}

fn example() -> Model {
    model("fast_flush_domains = example.com\n", Profile::Postfix)
}

fn reply(status: Status) -> Vec<u8> {
    let mut out = ANNOUNCEMENT.to_vec();
    out.extend_from_slice(&status_reply(status.code()));
    out
}

fn rules(step: &Step) -> Vec<&'static str> {
    step.notes.iter().map(|n| n.rule).collect()
}

#[test]
fn the_section_7_table_of_the_real_server() {
    let mut m = model(
        "fast_flush_domains = example.com, example.net, [127.0.0.1], \
         !deny.example.org, example.org, .dot.example\n",
        Profile::Postfix,
    );
    let cases: [(&str, Status, Option<&str>); 8] = [
        ("EXAMPLE.ORG", Status::Ok, Some("example_org")),
        ("a.example.org", Status::Ok, Some("a_example_org")),
        ("deny.example.org", Status::Deny, None),
        ("x.deny.example.org", Status::Deny, None),
        ("example.com.", Status::Deny, None),
        ("[127.0.0.1]", Status::Deny, None),
        (
            "under_score.example.com",
            Status::Ok,
            Some("under_score_example_com"),
        ),
        (
            "straße.example.com",
            Status::Ok,
            Some("xn__strae_oqa_example_com"),
        ),
    ];
    for (site, status, logfile) in cases {
        let before = m.observe().logfiles.len();
        let step = m.connect(&add_request(site.as_bytes(), b"ABC123"), NOW, &[]);
        assert_eq!(step.exchange.output, reply(status), "{site}");
        let state = m.observe();
        match logfile {
            Some(name) => assert_eq!(state.logfiles[name].content, b"ABC123\n", "{site}"),
            None => assert_eq!(state.logfiles.len(), before, "{site}"),
        }
    }
}

#[test]
fn add_checks_queue_id_then_eligibility_then_ascii_form() {
    let mut m = example();
    let bad_id = m.connect(&add_request(b"nowhere.invalid", b"not-an-id"), NOW, &[]);
    assert_eq!(bad_id.exchange.output, reply(Status::Bad));
    let denied = m.connect(&add_request(b"nowhere.invalid", b"ABC"), NOW, &[]);
    assert_eq!(denied.exchange.output, reply(Status::Deny));
    let no_ascii = m.connect(&add_request(b"ab--c.example.com", b"ABC"), NOW, &[]);
    assert_eq!(no_ascii.exchange.output, reply(Status::Deny));
    assert!(rules(&no_ascii).contains(&"ascii-form"));
}

#[test]
fn add_creates_with_mode_0600_and_later_changes_only_mtime() {
    let mut m = example();
    m.connect(&add_request(b"example.com", b"AAA"), NOW, &[]);
    let log = &m.observe().logfiles["example_com"];
    assert_eq!((log.mode, log.atime, log.mtime), (0o600, NOW, NOW));
    m.connect(&add_request(b"example.com", b"BBB"), NOW + 10, &[]);
    let log = &m.observe().logfiles["example_com"];
    assert_eq!(log.content, b"AAA\nBBB\n");
    assert_eq!((log.atime, log.mtime), (NOW, NOW + 10));
}

#[test]
fn a_table_error_answers_fail() {
    let mut m = model(
        "fast_flush_domains = texthash:/nonexistent\n",
        Profile::Postfix,
    );
    let step = m.connect(&add_request(b"example.com", b"ABC"), NOW, &[]);
    assert_eq!(step.exchange.output, reply(Status::Fail));
    assert!(step.exchange.output.ends_with(b"status\x004294967295\0\0"));
}

#[test]
fn send_site_without_a_logfile_is_ok_and_triggers_nothing() {
    let mut m = example();
    let step = m.connect(&send_site_request(b"example.com"), NOW, &[]);
    assert_eq!(step.exchange.output, reply(Status::Ok));
    assert!(step.exchange.triggers.is_empty());
}

#[test]
fn send_truncates_only_when_a_line_was_read_but_always_sets_the_times() {
    let mut m = example();
    m.write_logfile("example_com", b"", 0o600, NOW - HOUR, NOW - HOUR);
    let step = m.connect(&send_site_request(b"example.com"), NOW, &[]);
    assert_eq!(step.exchange.triggers, vec![Trigger::FlushDead]);
    let log = &m.observe().logfiles["example_com"];
    assert_eq!((log.atime, log.mtime), (NOW, NOW));

    m.write_logfile("example_com", b"\n", 0o600, NOW - HOUR, NOW - HOUR);
    let step = m.connect(&send_site_request(b"example.com"), NOW, &[]);
    assert_eq!(
        step.exchange.triggers,
        vec![Trigger::FlushDead, Trigger::ScanIncoming]
    );
    assert_eq!(m.observe().logfiles["example_com"].content, b"");
    assert!(rules(&step).contains(&"bad-line"));
}

#[test]
fn send_site_moves_deferred_mail_and_touches_incoming_mail() {
    let mut m = example();
    m.write_logfile(
        "example_com",
        b"AAA\nBBB\nCCC\nAAA\n",
        0o600,
        NOW - HOUR,
        NOW - HOUR,
    );
    m.plant_queue_file("AAA", QueueName::Deferred, 0o700, NOW + 300, NOW + 300);
    m.plant_queue_file("BBB", QueueName::Incoming, 0o600, NOW - 5, NOW - 5);
    m.plant_queue_file("CCC", QueueName::Active, 0o700, NOW - 5, NOW - 5);
    let step = m.connect(&send_site_request(b"example.com"), NOW, &[]);
    assert_eq!(
        step.exchange.triggers,
        vec![Trigger::FlushDead, Trigger::ScanIncoming]
    );
    let state = m.observe();
    assert_eq!(state.queue_files["incoming/AAA"].mtime, NOW);
    assert_eq!(state.queue_files["incoming/AAA"].mode, 0o700);
    assert_eq!(state.queue_files["incoming/BBB"].atime, NOW);
    assert_eq!(state.queue_files["active/CCC"].mtime, NOW - 5);
    assert!(rules(&step).contains(&"duplicate-filter"));
}

#[test]
fn a_queue_id_ends_at_the_first_nul_and_a_final_0xff_line_is_not_read() {
    let mut m = example();
    m.write_logfile(
        "example_com",
        b"AAA\0junk\nBBB\xff",
        0o600,
        NOW - HOUR,
        NOW - HOUR,
    );
    m.plant_queue_file("AAA", QueueName::Deferred, 0o700, NOW - 5, NOW - 5);
    let step = m.connect(&send_site_request(b"example.com"), NOW, &[]);
    assert!(m.observe().queue_files.contains_key("incoming/AAA"));
    assert!(rules(&step).contains(&"last-line-0xff"));
    assert_eq!(m.observe().logfiles["example_com"].content, b"");

    // Alone, a 0xff line means nothing was read: no truncation, no I.
    m.write_logfile("example_com", b"BBB\xff", 0o600, NOW - HOUR, NOW - HOUR);
    let step = m.connect(&send_site_request(b"example.com"), NOW, &[]);
    assert_eq!(step.exchange.triggers, vec![Trigger::FlushDead]);
    assert_eq!(m.observe().logfiles["example_com"].content, b"BBB\xff");
}

#[test]
fn send_file_needs_a_ready_file_and_marks_it_for_unthrottling() {
    let mut m = example();
    m.plant_queue_file("AAA", QueueName::Deferred, 0o700, NOW - 5, NOW - 5);
    m.plant_queue_file("BBB", QueueName::Deferred, 0o600, NOW - 5, NOW - 5);
    let ready = m.connect(&send_file_request(b"AAA"), NOW, &[]);
    assert_eq!(ready.exchange.output, reply(Status::Ok));
    assert_eq!(ready.exchange.triggers, vec![Trigger::ScanIncoming]);
    assert_eq!(m.observe().queue_files["incoming/AAA"].mode, 0o740);

    let not_ready = m.connect(&send_file_request(b"BBB"), NOW, &[]);
    assert!(not_ready.exchange.triggers.is_empty());
    let state = m.observe();
    let file = &state.queue_files["deferred/B/BBB"];
    assert_eq!((file.mode, file.mtime), (0o600, NOW));

    let missing = m.connect(&send_file_request(b"CCC"), NOW, &[]);
    assert_eq!(missing.exchange.output, reply(Status::Ok));
    assert!(missing.exchange.triggers.is_empty());
    let bad = m.connect(&send_file_request(b"not-a-queue-id"), NOW, &[]);
    assert_eq!(bad.exchange.output, reply(Status::Bad));
}

#[test]
fn refresh_purges_strictly_after_the_purge_time_and_sends_old_logfiles() {
    let mut m = example();
    m.write_logfile("old_empty", b"", 0o600, NOW, NOW - 7 * DAY - 1);
    m.write_logfile("edge_empty", b"", 0o600, NOW, NOW - 7 * DAY);
    m.write_logfile("unread", b"AAA\n", 0o600, NOW - 12 * HOUR - 1, NOW);
    m.write_logfile("edge_read", b"BBB\n", 0o600, NOW - 12 * HOUR, NOW);
    let step = m.connect(&refresh_request(), NOW, &[]);
    assert_eq!(step.exchange.output, reply(Status::Ok));
    assert_eq!(step.exchange.triggers, vec![Trigger::ScanIncoming]);
    let state = m.observe();
    assert!(!state.logfiles.contains_key("old_empty"));
    assert!(state.logfiles.contains_key("edge_empty"));
    assert_eq!(state.logfiles["unread"].content, b"");
    assert_eq!(state.logfiles["edge_read"].content, b"BBB\n");
}

#[test]
fn purge_sends_every_logfile_not_read_this_second() {
    let mut m = example();
    m.write_logfile("a_example", b"AAA\n", 0o600, NOW - 1, NOW);
    m.write_logfile("b_example", b"BBB\n", 0o600, NOW, NOW);
    let step = m.connect(&purge_request(), NOW, &[]);
    assert_eq!(step.exchange.triggers, vec![Trigger::ScanIncoming]);
    assert_eq!(m.observe().logfiles["b_example"].content, b"BBB\n");
}

#[test]
fn the_wakeup_is_a_refresh_with_its_reply_first() {
    let mut m = example();
    m.write_logfile("unread", b"AAA\n", 0o600, NOW - DAY, NOW);
    for input in [wakeup_trigger(), b"W".to_vec(), b"request\0W\0\0".to_vec()] {
        m.write_logfile("unread", b"AAA\n", 0o600, NOW - DAY, NOW);
        let step = m.connect(&input, NOW, &[]);
        assert_eq!(step.exchange.output, reply(Status::Ok));
        assert_eq!(m.observe().logfiles["unread"].content, b"");
    }
}

#[test]
fn a_one_letter_logfile_kills_the_postfix_refresh_but_not_the_strict_one() {
    let order = [
        "a_example".to_string(),
        "x".to_string(),
        "z_example".to_string(),
    ];
    for profile in [Profile::Postfix, Profile::Strict] {
        let mut m = model("fast_flush_domains = example.com\n", profile);
        for name in &order {
            m.write_logfile(name, b"AAA\n", 0o600, NOW - DAY, NOW);
        }
        let step = m.connect(&refresh_request(), NOW, &order);
        assert_eq!(step.exchange.output, reply(Status::Ok));
        let state = m.observe();
        assert_eq!(state.logfiles["a_example"].content, b"");
        let dies = profile == Profile::Postfix;
        assert_eq!(step.exchange.died, dies);
        assert_eq!(state.logfiles["x"].content.is_empty(), !dies);
        assert_eq!(state.logfiles["z_example"].content.is_empty(), !dies);
        assert!(rules(&step).contains(&"one-letter-logfile"));
    }
}

#[test]
fn logfiles_the_order_does_not_list_come_after_it_sorted() {
    let mut m = example();
    m.write_logfile("x", b"AAA\n", 0o600, NOW - DAY, NOW);
    m.write_logfile("b_example", b"AAA\n", 0o600, NOW - DAY, NOW);
    m.write_logfile("a_example", b"AAA\n", 0o600, NOW - DAY, NOW);
    let step = m.connect(&refresh_request(), NOW, &["b_example".to_string()]);
    assert!(step.exchange.died);
    let state = m.observe();
    assert_eq!(state.logfiles["b_example"].content, b"");
    assert_eq!(state.logfiles["a_example"].content, b"");
    assert_eq!(state.logfiles["x"].content, b"AAA\n");
}

#[test]
fn refresh_skips_names_that_are_not_logfile_names() {
    let mut m = example();
    m.write_logfile("bad.name", b"", 0o600, NOW, NOW - 30 * DAY);
    m.connect(&refresh_request(), NOW, &[]);
    assert!(m.observe().logfiles.contains_key("bad.name"));
}

#[test]
fn refresh_sends_without_the_flush_dead_trigger() {
    let mut m = example();
    m.write_logfile("example_com", b"AAA\n", 0o600, NOW - DAY, NOW);
    m.plant_queue_file("AAA", QueueName::Deferred, 0o600, NOW - 5, NOW - 5);
    let step = m.connect(&refresh_request(), NOW, &[]);
    assert_eq!(step.exchange.triggers, vec![Trigger::ScanIncoming]);
    // Refresh moves a file that is not ready; only send_file checks.
    assert!(m.observe().queue_files.contains_key("incoming/AAA"));
}

#[test]
fn an_unknown_request_gets_no_reply() {
    let mut m = example();
    let step = m.connect(b"request\0bogus_request\0\0", NOW, &[]);
    assert_eq!(step.exchange.output, ANNOUNCEMENT);
    assert!(!step.exchange.died);
    let step = m.connect(b"X\0", NOW, &[]);
    assert_eq!(step.exchange.output, ANNOUNCEMENT);
}

#[test]
fn empty_input_and_broken_lists_answer_bad() {
    let mut m = example();
    let empty = m.connect(b"", NOW, &[]);
    assert_eq!(empty.exchange.output, [ANNOUNCEMENT, b"3\0\0"].concat());
    for input in [
        &b"\xff"[..],
        b"site\0example.com\0\0",
        b"request\0send_site\0",
        b"request\0send_site\0site\0example.com\0",
        b"request\0add\0queue_id\0ABC\0site\0example.com\0\0",
        b"request\0add\0site\0example.com\0\0",
    ] {
        let step = m.connect(input, NOW, &[]);
        assert_eq!(
            step.exchange.output,
            reply(Status::Bad),
            "{:?}",
            input.escape_ascii()
        );
    }
}

#[test]
fn an_extra_attribute_is_logged_and_the_request_carried_out() {
    let mut m = example();
    let step = m.connect(
        b"request\0add\0site\0example.com\0queue_id\0ABC\0more\0x\0\0",
        NOW,
        &[],
    );
    assert_eq!(step.exchange.output, reply(Status::Ok));
    assert!(rules(&step).contains(&"extra-attribute"));
    assert_eq!(m.observe().logfiles["example_com"].content, b"ABC\n");
}

#[test]
fn refresh_and_purge_ignore_what_follows_the_request() {
    let mut m = example();
    let step = m.connect(b"request\0rfrsh\0", NOW, &[]);
    assert_eq!(step.exchange.output, reply(Status::Ok));
}

#[test]
fn a_logfile_the_server_cannot_open_kills_it_before_the_reply() {
    let mut m = example();
    m.write_logfile("example_com", b"AAA\n", 0o400, NOW, NOW);
    let step = m.connect(&add_request(b"example.com", b"BBB"), NOW, &[]);
    assert_eq!(step.exchange.output, ANNOUNCEMENT);
    assert!(step.exchange.died);
    let step = m.connect(&send_site_request(b"example.com"), NOW, &[]);
    assert!(step.exchange.died);
    assert!(step.exchange.triggers.is_empty());
    assert_eq!(m.observe().logfiles["example_com"].content, b"AAA\n");
}

#[test]
fn a_broken_domain_list_stops_the_server_before_it_answers() {
    let mut m = model("fast_flush_domains = example.com, !\n", Profile::Postfix);
    let step = m.connect(&send_site_request(b"example.com"), NOW, &[]);
    assert!(step.exchange.output.is_empty());
    assert!(step.exchange.died);
}

#[test]
fn hashed_queues_follow_hash_queue_names_and_depth() {
    let mut m = model(
        "fast_flush_domains = example.com\nhash_queue_names = deferred, incoming, flush\n\
         hash_queue_depth = 2\n",
        Profile::Postfix,
    );
    m.plant_queue_file("ABCDEF", QueueName::Deferred, 0o700, NOW, NOW);
    m.write_logfile("example_com", b"ABCDEF\n", 0o600, NOW, NOW);
    m.connect(&send_site_request(b"example.com"), NOW, &[]);
    assert!(m.observe().queue_files.contains_key("incoming/A/B/ABCDEF"));
}

#[test]
fn smtputf8_folds_the_site_fully_before_matching() {
    let tables = Tables::default();
    let folded = Model::new(
        &config("fast_flush_domains = strasse.example\nsmtputf8_enable = yes\n"),
        tables.clone(),
        Profile::Postfix,
    );
    let ascii_only = Model::new(
        &config("fast_flush_domains = strasse.example\nsmtputf8_enable = no\n"),
        tables,
        Profile::Postfix,
    );
    for (mut m, status) in [(folded, Status::Ok), (ascii_only, Status::Deny)] {
        let step = m.connect(&add_request("STRAßE.example".as_bytes(), b"ABC"), NOW, &[]);
        assert_eq!(step.exchange.output, reply(status));
    }
}

#[test]
fn damaged_logfiles_read_as_measured_on_the_real_server() {
    let mut m = example();
    m.write_logfile(
        "example_com",
        b"AAA111\n\nBBB222\r\nCCC333\0junk\nAAA111\nDDD444",
        0o600,
        NOW - HOUR,
        NOW - HOUR,
    );
    for id in ["AAA111", "BBB222", "CCC333", "DDD444"] {
        m.plant_queue_file(id, QueueName::Deferred, 0o700, NOW + HOUR, NOW + HOUR);
    }
    let step = m.connect(&send_site_request(b"example.com"), NOW, &[]);
    assert_eq!(
        step.exchange.triggers,
        vec![Trigger::FlushDead, Trigger::ScanIncoming]
    );
    let state = m.observe();
    for id in ["AAA111", "CCC333", "DDD444"] {
        assert_eq!(
            state.queue_files[&format!("incoming/{id}")].mtime,
            NOW,
            "{id}"
        );
    }
    assert_eq!(state.queue_files["deferred/B/BBB222"].mtime, NOW + HOUR);

    // A last line ending in 0xfe is read; one ending in 0xff is not.
    m.write_logfile("example_com", b"HHH889\xfe", 0o600, NOW - HOUR, NOW - HOUR);
    let step = m.connect(&send_site_request(b"example.com"), NOW, &[]);
    assert_eq!(
        step.exchange.triggers,
        vec![Trigger::FlushDead, Trigger::ScanIncoming]
    );
    m.write_logfile(
        "example_com",
        b"FFF666\nGGG777\xff",
        0o600,
        NOW - HOUR,
        NOW - HOUR,
    );
    m.connect(&send_site_request(b"example.com"), NOW, &[]);
    assert_eq!(m.observe().logfiles["example_com"].content, b"");
}

#[test]
fn long_queue_ids_are_looked_for_where_the_real_server_looks() {
    let mut m = example();
    m.plant_queue_file("4T2BxK1Zr8z1a2b", QueueName::Deferred, 0o600, NOW, NOW);
    m.plant_queue_file("4T2BxK1ZrZz1a2b", QueueName::Deferred, 0o600, NOW, NOW);
    let state = m.observe();
    assert!(state.queue_files.contains_key("deferred/3/4T2BxK1Zr8z1a2b"));
    assert!(state.queue_files.contains_key("deferred/3/4T2BxK1ZrZz1a2b"));
}

#[test]
fn comments_in_domain_lists_read_as_measured_on_the_real_server() {
    let mut tables = Tables::default();
    tables.files.insert(
        "/etc/postfix/flush_domains".to_string(),
        b"# a comment at line start\n  # indented comment\nalpha.example # trailing.example\n\
          beta.example, gamma.example\n!delta.example\ndelta2.example\n#hash.example\n\
          epsilon.example#notcomment.example\n\t#tab.example\nlast.example"
            .to_vec(),
    );
    let cf = config(
        "fast_flush_domains = /etc/postfix/flush_domains, zeta.example #omega.example, \
         after.example\ncompatibility_level = 3.6\n",
    );
    let mut m = Model::new(&cf, tables, Profile::Postfix);
    let ok = [
        "alpha.example",
        "beta.example",
        "gamma.example",
        "delta2.example",
        "x.delta2.example",
        "last.example",
        "zeta.example",
    ];
    let denied = [
        "trailing.example",
        "delta.example",
        "hash.example",
        "tab.example",
        "epsilon.example",
        "notcomment.example",
        "omega.example",
        "after.example",
        "epsilon.example#notcomment.example",
    ];
    for (sites, status) in [(&ok[..], Status::Ok), (&denied[..], Status::Deny)] {
        for site in sites {
            let step = m.connect(&add_request(site.as_bytes(), b"QID1"), NOW, &[]);
            assert_eq!(step.exchange.output, reply(status), "{site}");
        }
    }
}
