//! `flushbed explore` as a whole: the same seed gives the same cases
//! everywhere (a fixed seed's first case, rendered as a scenario, is
//! byte-identical to the snapshot in `tests/data/`), any number of jobs
//! gives the same run, the correct implementation passes a bounded
//! exploration in both profiles, and a shrunk case is a scenario file that
//! `flushbed check` reads and runs as it is.
//!
//! `FLUSHBED_EXPLORE_CASES` sets how many cases the bounded exploration
//! runs (60 by default); `FLUSHBED_EXPLORE_SEED` its seed (1).

use std::path::Path;
use std::process::Command;

use flushbed_impl::PlantedBug;
use flushbed_sim::explore::{self, Options, Quiet, Runner};
use flushbed_sim::lockstep::TargetKind;
use flushbed_vocab::Profile;

const SNAPSHOT: &str = "tests/data/explore-seed1-case0.toml";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn a_fixed_seeds_first_case_renders_byte_identically_to_the_snapshot() {
    let case = explore::generate(1, 0, 30);
    let rendered = case.render(
        "explore seed 1 case 0",
        &[Profile::Strict, Profile::Postfix],
        "# The first case of seed 1 with 30 steps, as `flushbed explore` draws it.\n",
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SNAPSHOT);

    // FLUSHBED_WRITE_SNAPSHOT=1 rewrites the snapshot after a deliberate
    // change to the generator.
    if std::env::var_os("FLUSHBED_WRITE_SNAPSHOT").is_some() {
        std::fs::write(&path, &rendered).expect("writing the snapshot");
    }
    let snapshot = std::fs::read_to_string(&path).expect("the snapshot");
    assert!(
        rendered == snapshot,
        "seed 1 case 0 no longer renders as {SNAPSHOT}; the generator or the \
         stream of words changed. Rendered now:\n{rendered}"
    );
}

#[test]
fn the_correct_implementation_passes_a_bounded_exploration_in_both_profiles() {
    let options = Options {
        seed: env_number("FLUSHBED_EXPLORE_SEED", 1),
        cases: env_number("FLUSHBED_EXPLORE_CASES", 60),
        jobs: 2,
        keep_going: true,
        max_findings: 3,
        ..Options::default()
    };
    let summary = explore::explore(&options, Runner::new(TargetKind::Spool), &mut Quiet);
    println!(
        "{} cases in {:.1} s, {:.1} cases/s",
        summary.cases_run,
        summary.elapsed.as_secs_f64(),
        summary.cases_per_second()
    );
    assert_eq!(summary.cases_run, options.cases);
    let shown: Vec<String> = summary.findings.iter().map(|f| f.scenario_text()).collect();
    assert!(
        summary.failing_cases.is_empty(),
        "failing cases {:?}:\n{}",
        summary.failing_cases,
        shown.join("\n----\n")
    );
}

#[test]
fn any_number_of_jobs_gives_the_same_run() {
    // A bug that the first cases of seed 1 do not show, so that threads
    // race past the failing case.
    let run = |jobs| {
        let options = Options {
            seed: 1,
            cases: 200,
            jobs,
            shrink_budget: 300,
            ..Options::default()
        };
        explore::explore(
            &options,
            Runner::with_bug(PlantedBug::PurgeAtBoundary),
            &mut Quiet,
        )
    };
    let one = run(1);
    let two = run(3);
    assert_eq!(one.cases_run, two.cases_run);
    assert_eq!(one.failing_cases, two.failing_cases);
    assert_eq!(one.findings.len(), 1);
    assert_eq!(
        one.findings[0].scenario_text(),
        two.findings[0].scenario_text()
    );
}

#[test]
fn a_shrunk_case_is_a_scenario_that_flushbed_check_runs_as_it_is() {
    let options = Options {
        seed: 1,
        cases: 50,
        shrink_budget: 500,
        ..Options::default()
    };
    let summary = explore::explore(
        &options,
        Runner::with_bug(PlantedBug::NeverTruncate),
        &mut Quiet,
    );
    let finding = summary.findings.first().expect("the planted bug is found");
    let text = finding.scenario_text();
    assert!(
        text.starts_with("# Found by `flushbed explore --seed 1"),
        "{text}"
    );
    assert!(
        text.contains("model:"),
        "the divergence is in the comment:\n{text}"
    );

    // The command line's binary has no bug planted: the file must read and
    // pass there, as it is.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = explore::write_finding(dir.path(), finding).expect("writing the finding");
    let output = Command::new(env!("CARGO_BIN_EXE_flushbed"))
        .arg("check")
        .arg(&path)
        .output()
        .expect("running flushbed check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{text}");
    assert!(stdout.starts_with("ok  explore-seed1-case"), "{stdout}");
}

#[test]
fn the_command_line_runs_cases_and_says_how_fast() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let output = Command::new(env!("CARGO_BIN_EXE_flushbed"))
        .args([
            "explore", "--seed", "3", "--cases", "4", "--steps", "10", "--jobs", "2",
        ])
        .arg("--out")
        .arg(dir.path())
        .output()
        .expect("running flushbed explore");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("explore: seed 3: 4 cases in ") && stdout.contains("cases/s"),
        "{stdout}"
    );
    // Not a terminal: progress comes as lines, not a bar.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("explore: 4/4 cases, 0 failing"), "{stderr}");
}
