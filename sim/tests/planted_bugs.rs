//! The lockstep must catch every bug planted in the implementation: with
//! each planted bug in turn, some scenario of the suite must diverge.
//! Built only with the `planted-bugs` feature
//! (`cargo test -p flushbed-sim --features planted-bugs`).

#![cfg(feature = "planted-bugs")]

use std::path::PathBuf;

use flushbed_impl::PlantedBug;
use flushbed_sim::lockstep::{run_against, Outcome};
use flushbed_sim::scenario::{self, Scenario};
use flushbed_sim::target::SpoolTarget;

fn suite() -> Vec<Scenario> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
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

#[test]
fn every_planted_bug_makes_some_scenario_diverge() {
    let suite = suite();
    let mut missed = Vec::new();
    for bug in PlantedBug::ALL {
        let caught = suite.iter().any(|s| {
            s.applies_to("spool")
                && s.profiles.iter().any(|&profile| {
                    let mut target = SpoolTarget::new(&s.config, profile).expect("a spool target");
                    target.plant_bug(bug);
                    let result = run_against(s, &mut target, None);
                    matches!(result.outcome, Outcome::Diverged(_))
                })
        });
        if !caught {
            missed.push(format!("{bug:?}"));
        }
    }
    assert!(
        missed.is_empty(),
        "no scenario catches: {}",
        missed.join(", ")
    );
}
