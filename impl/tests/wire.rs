//! The bytes on the wire, as the real server was measured to write them:
//! the announcement, every status unsigned, no reply to an unknown request,
//! and the reply that loses its attribute name after empty input.

mod common;

use common::*;
use flushbed_vocab::wire::{add_request, send_site_request};
use flushbed_vocab::Profile;

const DOMAINS: &str = "fast_flush_domains = example.com, !deny.example.org, example.org, \
                       texthash:/nonexistent/table\n";

#[test]
fn every_status_as_the_real_server_writes_it() {
    for profile in [Profile::Postfix, Profile::Strict] {
        let bed = Bed::new(DOMAINS, profile);
        let cases: [(&[u8], &[u8], &[u8]); 4] = [
            (b"example.com", b"ABC123", b"status\x000\0\0"),
            (b"example.com", b"AB-C", b"status\x003\0\0"),
            (b"deny.example.org", b"ABC123", b"status\x004\0\0"),
            (b"other.example.net", b"ABC123", b"status\x004294967295\0\0"),
        ];
        for (site, id, reply) in cases {
            assert_eq!(bed.request(&add_request(site, id), T0).reply, reply);
        }
        let out = bed.request(&send_site_request(b"other.example.net"), T0);
        assert_eq!(out.reply, b"status\x004294967295\0\0");
    }
}

#[test]
fn an_unknown_request_gets_no_reply() {
    let bed = Bed::new(DOMAINS, Profile::Strict);
    for input in [&b"request\0bogus\0\0"[..], b"x\0", b"\0"] {
        let out = bed.request(input, T0);
        assert!(out.reply.is_empty(), "{input:?}");
        assert!(!out.died);
    }
}

#[test]
fn empty_input_is_answered_with_the_status_value_alone() {
    for profile in [Profile::Postfix, Profile::Strict] {
        let bed = Bed::new(DOMAINS, profile);
        assert_eq!(bed.request(b"", T0).reply, b"3\0\0");
        assert_eq!(bed.request(b"\xff", T0).reply, status(BAD));
    }
}

#[test]
fn a_wakeup_without_its_nul_is_still_a_wakeup() {
    let bed = Bed::new(DOMAINS, Profile::Postfix);
    assert_eq!(bed.request(b"W", T0).reply, status(OK));
}
