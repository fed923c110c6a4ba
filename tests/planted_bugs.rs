//! Proof that the checkers check something: each bug planted in the
//! implementation (`impl/src/bugs.rs`) must be caught both by the scenario
//! suite in lockstep, naming the scenario and the step where it shows, and
//! by `explore`, within a bounded number of cases from a fixed seed; the
//! shrunk case explore writes must replay the divergence with the bug and
//! pass without it.
//!
//! The bound is `FLUSHBED_PLANTED_CASES` cases (400 by default), from seed
//! `FLUSHBED_PLANTED_SEED` (1). Each test prints, per bug, where it was
//! caught and how many cases explore took: the table in `docs/EXPLORE.md`
//! comes from this output (`cargo test --release --test planted_bugs --
//! --nocapture`).

use std::path::Path;

use flushbed_impl::PlantedBug;
use flushbed_sim::explore::{self, Options, Quiet, Runner};
use flushbed_sim::lockstep::{run_against, Outcome, TargetKind};
use flushbed_sim::scenario::{self, Scenario};
use flushbed_sim::target::SpoolTarget;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn suite() -> Vec<Scenario> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the scenarios directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| scenario::load(f).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// The first scenario and profile of the suite that diverges with `bug`
/// planted, and where: `scenario [profile] event N (do = "..."), during ...`.
fn caught_by_suite(suite: &[Scenario], bug: PlantedBug) -> Option<String> {
    for s in suite.iter().filter(|s| s.applies_to("spool")) {
        for &profile in &s.profiles {
            let mut target = SpoolTarget::new(&s.config, profile).expect("a spool target");
            target.plant_bug(bug);
            if let Outcome::Diverged(report) = run_against(s, &mut target, None).outcome {
                let event = report.event.map_or("the setup".to_string(), |e| {
                    format!("event {} (do = \"{}\", line {})", e.index, e.kind, e.line)
                });
                return Some(format!(
                    "{} [{}] {event}, during {}",
                    s.name,
                    profile.name(),
                    report.step
                ));
            }
        }
    }
    None
}

#[test]
fn the_scenario_suite_catches_every_planted_bug() {
    let suite = suite();
    let mut missed = Vec::new();
    for bug in PlantedBug::ALL {
        match caught_by_suite(&suite, bug) {
            Some(place) => println!("{bug:?}: caught by {place}"),
            None => missed.push(format!("{bug:?}")),
        }
    }
    assert!(
        missed.is_empty(),
        "no scenario catches: {}",
        missed.join(", ")
    );
}

#[test]
fn explore_finds_every_planted_bug_within_the_bound() {
    let seed = env_number("FLUSHBED_PLANTED_SEED", 1);
    let bound = env_number("FLUSHBED_PLANTED_CASES", 400);
    let mut missed = Vec::new();
    for bug in PlantedBug::ALL {
        let options = Options {
            seed,
            cases: bound,
            jobs: 2,
            shrink_budget: 1500,
            ..Options::default()
        };
        let summary = explore::explore(&options, Runner::with_bug(bug), &mut Quiet);
        let Some(finding) = summary.findings.first() else {
            missed.push(format!("{bug:?}"));
            println!("{bug:?}: not found in {bound} cases of seed {seed}");
            continue;
        };
        println!(
            "{bug:?}: found by explore in {} cases (seed {seed}, case {}, {}), \
             shrunk from {} events to {}",
            finding.case + 1,
            finding.case,
            finding.failure.profile.name(),
            finding.events_before,
            finding.shrunk.events.len()
        );
        for line in &finding.failure.lines {
            println!("    {line}");
        }

        // The file explore writes replays the divergence with the bug, and
        // passes on the implementation as it is.
        let text = finding.scenario_text();
        let s = scenario::parse(&text, &finding.file_name()).unwrap_or_else(|e| panic!("{e}"));
        let profile = finding.failure.profile;
        let mut broken = SpoolTarget::new(&s.config, profile).expect("a spool target");
        broken.plant_bug(bug);
        assert!(
            matches!(
                run_against(&s, &mut broken, None).outcome,
                Outcome::Diverged(_)
            ),
            "{bug:?}: the shrunk case does not replay:\n{text}"
        );
        let correct = flushbed_sim::lockstep::run(&s, profile, TargetKind::Spool);
        assert!(
            correct.passed(),
            "{bug:?}: the shrunk case fails without the bug too:\n{text}"
        );
    }
    assert!(
        missed.is_empty(),
        "explore did not find within {bound} cases: {}",
        missed.join(", ")
    );
}
