//! Snapshots of `flushbed run`'s narration for a few scenarios: what a
//! person learning flush(8) reads, pinned so that a change to the story (or
//! to the rules behind it) is seen and reviewed.

use std::path::Path;

use flushbed_sim::lockstep::{self, TargetKind};
use flushbed_sim::narrate::narrate;
use flushbed_sim::scenario;
use flushbed_vocab::Profile;

fn narration(file: &str, profile: Profile) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(file);
    let scenario = scenario::load(&path).expect("scenario loads");
    let mut trace = Vec::new();
    let result = lockstep::run_traced(&scenario, profile, TargetKind::Spool, Some(&mut trace));
    assert!(result.passed(), "{file} must pass to be narrated");
    narrate(&scenario, profile, &trace, &result)
}

#[test]
fn narration_of_truncation_only_when_a_line_was_read() {
    insta::assert_snapshot!(narration(
        "send-truncates-only-when-a-line-was-read.toml",
        Profile::Strict
    ));
}

// Only scenarios whose story does not depend on directory order: a refresh
// walks flush/ in readdir order, which differs from one file system to the
// next, and the narration follows it.

#[test]
fn narration_of_a_message_listed_in_two_logfiles() {
    insta::assert_snapshot!(narration(
        "multi-recipient-message-is-listed-in-both-logfiles.toml",
        Profile::Strict
    ));
}

#[test]
fn narration_of_idna_site_names() {
    insta::assert_snapshot!(narration(
        "idna-maps-sites-to-their-ascii-form.toml",
        Profile::Postfix
    ));
}

#[test]
fn narration_of_the_dead_destination_cache() {
    insta::assert_snapshot!(narration(
        "dead-destination-cache-is-cleared-by-f.toml",
        Profile::Strict
    ));
}
