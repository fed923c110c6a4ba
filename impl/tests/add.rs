//! add: the order of its checks, the logfile it appends to, the times it
//! sets, and the spec's table of what the real server answered.

mod common;

use common::*;
use flushbed_vocab::wire::add_request;
use flushbed_vocab::Profile;

const DOMAINS: &str = "fast_flush_domains = example.com, example.net, [127.0.0.1], \
                       !deny.example.org, example.org, .dot.example\n";

#[test]
fn add_appends_the_queue_id_to_a_new_logfile_with_mode_0600() {
    let bed = Bed::new(DOMAINS, Profile::Strict);
    let out = bed.request(&add_request(b"example.com", b"A1B2C3"), T0 + 5);
    assert_eq!(out.reply, status(OK));
    assert!(out.triggers.is_empty());
    assert_eq!(bed.logfile("example_com").unwrap(), b"A1B2C3\n");
    assert_eq!(
        times(&bed.logfile_path("example_com")),
        (T0 + 5, T0 + 5, 0o600)
    );
}

#[test]
fn add_sets_the_mtime_and_keeps_the_atime() {
    let bed = Bed::new(DOMAINS, Profile::Strict);
    bed.write_logfile("example_com", b"OLD1\n", T0 - 100, T0 - 50);
    bed.request(&add_request(b"EXAMPLE.com", b"NEW2"), T0 + 7);
    assert_eq!(bed.logfile("example_com").unwrap(), b"OLD1\nNEW2\n");
    assert_eq!(
        times(&bed.logfile_path("example_com")),
        (T0 - 100, T0 + 7, 0o600)
    );
}

#[test]
fn duplicates_are_appended_as_they_come() {
    let bed = Bed::new(DOMAINS, Profile::Postfix);
    for _ in 0..2 {
        bed.request(&add_request(b"example.com", b"A1"), T0);
    }
    assert_eq!(bed.logfile("example_com").unwrap(), b"A1\nA1\n");
}

#[test]
fn the_spec_table_of_the_real_server() {
    let cases: [(&str, &str, Option<&str>); 8] = [
        ("EXAMPLE.ORG", OK, Some("example_org")),
        ("a.example.org", OK, Some("a_example_org")),
        ("deny.example.org", DENY, None),
        ("x.deny.example.org", DENY, None),
        ("example.com.", DENY, None),
        ("[127.0.0.1]", DENY, None),
        (
            "under_score.example.com",
            OK,
            Some("under_score_example_com"),
        ),
        ("straße.example.com", OK, Some("xn__strae_oqa_example_com")),
    ];
    for profile in [Profile::Postfix, Profile::Strict] {
        let bed = Bed::new(DOMAINS, profile);
        for (site, code, logfile) in cases {
            let out = bed.request(&add_request(site.as_bytes(), b"ABC123"), T0);
            assert_eq!(out.reply, status(code), "{site}");
            if let Some(name) = logfile {
                assert_eq!(bed.logfile(name).unwrap(), b"ABC123\n", "{site}");
            }
        }
        let mut names: Vec<_> = std::fs::read_dir(bed.queue_dir().join("flush"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "a_example_org",
                "example_org",
                "under_score_example_com",
                "xn__strae_oqa_example_com"
            ]
        );
    }
}

#[test]
fn the_queue_id_is_checked_before_eligibility() {
    let bed = Bed::new(DOMAINS, Profile::Strict);
    assert_eq!(
        bed.request(&add_request(b"not.listed", b"BAD-ID"), T0)
            .reply,
        status(BAD)
    );
    assert_eq!(
        bed.request(&add_request(b"not.listed", b""), T0).reply,
        status(BAD)
    );
    assert_eq!(
        bed.request(&add_request(b"not.listed", b"GOOD1"), T0).reply,
        status(DENY)
    );
}

#[test]
fn a_table_error_answers_fail_written_unsigned() {
    let bed = Bed::new(
        "fast_flush_domains = a.example, texthash:/nonexistent/table\n",
        Profile::Postfix,
    );
    assert_eq!(
        bed.request(&add_request(b"a.example", b"A1"), T0).reply,
        status(OK)
    );
    let out = bed.request(&add_request(b"b.example", b"A1"), T0);
    assert_eq!(out.reply, b"status\x004294967295\0\0");
}

#[test]
fn eligibility_comes_before_the_ascii_form() {
    // Not eligible and no ASCII form: DENY either way, but a table error
    // on the way says FAIL before the ASCII form is looked at.
    let bed = Bed::new("fast_flush_domains = hash:/nonexistent\n", Profile::Strict);
    assert_eq!(
        bed.request(&add_request(b"ab--c.example", b"A1"), T0).reply,
        status(FAIL)
    );
}

#[test]
fn a_site_without_an_ascii_form_is_denied() {
    let bed = Bed::new("fast_flush_domains = example\n", Profile::Strict);
    assert_eq!(
        bed.request(&add_request(b"ab--c.example", b"A1"), T0).reply,
        status(DENY)
    );
    assert_eq!(
        bed.request(&add_request(b"\xff.example", b"A1"), T0).reply,
        status(DENY)
    );
    assert_eq!(
        bed.request(&add_request(b"a-b.example", b"A1"), T0).reply,
        status(OK)
    );
    assert_eq!(bed.logfile("a_b_example").unwrap(), b"A1\n");
}

#[test]
fn case_folding_follows_smtputf8_enable() {
    let on = Bed::new(
        "smtputf8_enable = yes\nfast_flush_domains = bücher.example\n",
        Profile::Strict,
    );
    assert_eq!(
        on.request(&add_request("BÜCHER.example".as_bytes(), b"A1"), T0)
            .reply,
        status(OK)
    );
    assert_eq!(on.logfile("xn__bcher_kva_example").unwrap(), b"A1\n");
    let off = Bed::new(
        "smtputf8_enable = no\nfast_flush_domains = bücher.example\n",
        Profile::Strict,
    );
    assert_eq!(
        off.request(&add_request("BÜCHER.example".as_bytes(), b"A1"), T0)
            .reply,
        status(DENY)
    );
}

#[test]
fn a_hashed_flush_directory_gets_its_hash_directory_made() {
    let bed = Bed::new(
        "fast_flush_domains = example.com\nhash_queue_names = deferred, flush\n",
        Profile::Strict,
    );
    assert_eq!(
        bed.request(&add_request(b"example.com", b"A1"), T0).reply,
        status(OK)
    );
    let path = bed.queue_dir().join("flush/e/example_com");
    assert_eq!(read_noatime(&path).unwrap(), b"A1\n");
    assert_eq!(times(&bed.queue_dir().join("flush/e")).2, 0o700);
}

#[test]
fn an_extra_attribute_is_logged_and_the_add_still_done() {
    let bed = Bed::new(DOMAINS, Profile::Postfix);
    let out = bed.request(
        b"request\0add\0site\0example.com\0queue_id\0A1\0extra\0x\0\0",
        T0,
    );
    assert_eq!(out.reply, status(OK));
    assert_eq!(bed.logfile("example_com").unwrap(), b"A1\n");
}

#[test]
fn misordered_attributes_are_bad_and_change_nothing() {
    let bed = Bed::new(DOMAINS, Profile::Postfix);
    let out = bed.request(b"request\0add\0queue_id\0A1\0site\0example.com\0\0", T0);
    assert_eq!(out.reply, status(BAD));
    assert_eq!(bed.logfile("example_com"), None);
}
