//! Faults in flush(8) requests: the scenario suite replayed with one file
//! operation failing (or the process crashing) at a time, held to the
//! outcomes the reference model accepts, with the strict invariants
//! checked through every fault; and the named limits of strict, the same
//! on both sides.

use std::path::Path;
use std::time::Instant;

use flushbed_sim::faults::{self, Bounds, Exploration};
use flushbed_sim::invariants;
use flushbed_sim::scenario::{self, Scenario};

fn suite() -> Vec<Scenario> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the scenarios directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let scenarios: Vec<Scenario> = files
        .iter()
        .map(|f| scenario::load(f).expect("a scenario of the suite"))
        .filter(|s| s.applies_to("spool"))
        .collect();
    assert!(!scenarios.is_empty(), "no scenarios in {}", dir.display());
    scenarios
}

fn explore_suite(bounds: Bounds) -> Exploration {
    let started = Instant::now();
    let mut total = Exploration::default();
    for scenario in suite() {
        total.absorb(faults::explore(&scenario, bounds).expect("the exploration runs"));
    }
    eprintln!(
        "fault exploration: {} faulted runs, {} fault points ({:?}), {} findings, {:.1?}",
        total.runs,
        total.fault_points,
        total.by_failure,
        total.findings.len(),
        started.elapsed()
    );
    total
}

fn assert_nothing_found(exploration: &Exploration) {
    assert!(exploration.runs > 0, "no fault was injected");
    let shown: Vec<String> = exploration
        .findings
        .iter()
        .take(20)
        .map(|f| f.to_string())
        .collect();
    assert!(
        exploration.findings.is_empty(),
        "{} finding(s):\n{}",
        exploration.findings.len(),
        shown.join("\n")
    );
}

#[test]
fn every_fault_in_the_first_requests_of_the_suite_leaves_an_outcome_the_model_accepts() {
    let bounds = Bounds {
        requests: Some(3),
        calls: Some(32),
    };
    assert_nothing_found(&explore_suite(bounds));
}

/// The whole suite, every request and every call: `cargo test --release
/// --test faults -- --ignored` (seconds with the spools in `/dev/shm`,
/// minutes on a disk).
#[test]
#[ignore = "the full exploration; the bounded one runs by default"]
fn every_fault_in_the_suite_leaves_an_outcome_the_model_accepts() {
    assert_nothing_found(&explore_suite(Bounds::default()));
}

#[test]
fn under_postfix_a_failed_rename_leaves_mail_behind_and_breaks_an_invariant_strict_keeps() {
    use flushbed_model::faults::{Fault, Op};
    use flushbed_model::{Model, Tables};
    use flushbed_vocab::config::Environment;
    use flushbed_vocab::wire::send_site_request;
    use flushbed_vocab::{FlushConfig, MainCf, Profile, QueueName};

    let main = MainCf::parse("fast_flush_domains = example.com\n", "main.cf").unwrap();
    let config = FlushConfig::from_main_cf(&main, &Environment::default()).unwrap();
    let now = 1_800_000_000;
    for (profile, broken) in [(Profile::Postfix, true), (Profile::Strict, false)] {
        let mut model = Model::new(&config, Tables::default(), profile);
        model.write_logfile("example_com", b"A1\n", 0o600, now - 60, now - 60);
        model.plant_queue_file("A1", QueueName::Deferred, 0o700, now, now);
        let before = model.observe();
        let input = send_site_request(b"example.com");
        let outcomes = model.fault_outcomes(&input, now, &[], Fault::Fails(Op::Rename));
        assert_eq!(outcomes.len(), 1);
        let after = outcomes[0].model.observe();
        let violations = invariants::check_request(&before, &after, &input, now);
        assert_eq!(
            !violations.is_empty(),
            broken,
            "{profile:?}: {violations:?}"
        );
    }
}

#[test]
fn the_model_and_the_implementation_name_the_same_strict_limits() {
    use flushbed_impl::protocol;
    use flushbed_model::profile::{self, Limits};
    use flushbed_vocab::Profile;

    let strict = Limits::of(Profile::Strict);
    assert_eq!(
        strict.max_attribute_len,
        Some(protocol::STRICT_MAX_ATTRIBUTE_LEN)
    );
    assert_eq!(
        strict.read_wait_seconds,
        protocol::STRICT_READ_WAIT.as_secs()
    );
    let postfix = Limits::of(Profile::Postfix);
    assert_eq!(
        postfix.max_attribute_len,
        protocol::Limits::postfix().max_attribute_len
    );
    assert_eq!(
        profile::POSTFIX_READ_WAIT_SECONDS,
        protocol::POSTFIX_READ_WAIT.as_secs()
    );
}
