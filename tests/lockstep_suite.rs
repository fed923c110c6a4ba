//! The scenario suite in lockstep: every scenario in `scenarios/`, in each
//! of its profiles, the reference model against flushbed's spool target,
//! must pass; and a scenario that cannot be read must be reported with its
//! file, line and column, and not run.

use std::path::Path;
use std::process::Command;

use flushbed_sim::lockstep::{self, Outcome, TargetKind};
use flushbed_sim::scenario;

#[test]
fn every_scenario_passes_in_lockstep() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the scenarios directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scenarios in {}", dir.display());

    let mut failures = Vec::new();
    for file in &files {
        let scenario = match scenario::load(file) {
            Ok(s) => s,
            Err(e) => {
                failures.push(e.to_string());
                continue;
            }
        };
        for &profile in &scenario.profiles {
            let result = lockstep::run(&scenario, profile, TargetKind::Spool);
            match &result.outcome {
                Outcome::Pass | Outcome::Skipped { .. } => {}
                Outcome::Diverged(r) | Outcome::ExpectationFailed(r) => {
                    failures.push(format!("{}\n{}", scenario.name, r.render(profile)))
                }
                Outcome::Error { why } => failures.push(format!("{}: {why}", scenario.name)),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_scenario_with_a_syntax_error_is_reported_with_file_line_and_column() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("broken.toml");
    std::fs::write(
        &file,
        "[scenario]\nsummary = \"broken\"\n[[event]\ndo = \"check\"\n",
    )
    .expect("writing the scenario");

    let output = Command::new(env!("CARGO_BIN_EXE_flushbed"))
        .arg("check")
        .arg(&file)
        .output()
        .expect("running flushbed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    let position = format!("{}:3:", file.display());
    assert!(
        stderr.contains(&position),
        "expected {position} in: {stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "nothing may run: {}",
        String::from_utf8_lossy(&output.stdout)
    );
}
