//! `flushbed explore`: random lockstep exploration with shrinking.
//!
//! Where the scenario suite checks the rules one by one, explore throws
//! many small random worlds at the lockstep: for each case of a run, a
//! configuration and a timeline of events in the scenario vocabulary
//! ([`generate`]), written as a scenario and played in lockstep, the
//! reference model against a target, in each profile asked for. A case
//! fails when the target diverges from the model, when the run cannot go
//! on, or when either side panics.
//!
//! A failing case is shrunk ([`shrink`]) to a smallest case that fails the
//! same way, and written as a scenario file whose opening comment says the
//! seed, the case and what diverged; `flushbed check FILE` replays it as it
//! is.
//!
//! Everything is decided by the seed and the case's index ([`draw`]), so a
//! run is the same on every machine and with any number of `--jobs`: the
//! cases are spread over threads but their results are taken in case
//! order, and without `keep_going` the run ends at the failing case of the
//! lowest index, whichever thread found it first.

pub mod case;
pub mod draw;
pub mod generate;
pub mod progress;
pub mod shrink;

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flushbed_vocab::Profile;
use serde::Serialize;

pub use case::{Case, CaseEvent};
pub use generate::generate;
pub use progress::{Progress, Quiet, Stderr};

use crate::lockstep::{self, Outcome, ScenarioResult, TargetKind};
use crate::scenario::Scenario;

/// What a run explores, and how.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub cases: u64,
    /// Events per case.
    pub steps: usize,
    /// Each case runs in each of these, in order, until one fails.
    pub profiles: Vec<Profile>,
    /// Threads running cases.
    pub jobs: usize,
    /// Run every case instead of stopping at the first failing one.
    pub keep_going: bool,
    /// At most this many failing cases are shrunk and reported.
    pub max_findings: usize,
    /// At most this many lockstep runs while shrinking one case.
    pub shrink_budget: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            seed: 1,
            cases: 100,
            steps: 30,
            profiles: vec![Profile::Strict, Profile::Postfix],
            jobs: 1,
            keep_going: false,
            max_findings: 1,
            shrink_budget: 4000,
        }
    }
}

/// How a case's scenario is played: against which target, perhaps broken
/// on purpose.
#[derive(Debug, Clone, Copy)]
pub struct Runner {
    pub target: TargetKind,
    #[cfg(feature = "planted-bugs")]
    pub bug: Option<flushbed_impl::PlantedBug>,
}

impl Runner {
    pub fn new(target: TargetKind) -> Runner {
        Runner {
            target,
            #[cfg(feature = "planted-bugs")]
            bug: None,
        }
    }

    /// The spool target with `bug` planted in its flush server.
    #[cfg(feature = "planted-bugs")]
    pub fn with_bug(bug: flushbed_impl::PlantedBug) -> Runner {
        Runner {
            target: TargetKind::Spool,
            bug: Some(bug),
        }
    }

    /// One scenario in one profile, in lockstep.
    pub fn run(&self, scenario: &Scenario, profile: Profile) -> ScenarioResult {
        #[cfg(feature = "planted-bugs")]
        if let Some(bug) = self.bug {
            return match crate::target::SpoolTarget::new(&scenario.config, profile) {
                Ok(mut target) => {
                    target.plant_bug(bug);
                    lockstep::run_against(scenario, &mut target, None)
                }
                Err(e) => lockstep::ScenarioResult {
                    scenario: scenario.name.clone(),
                    file: scenario.file.clone(),
                    summary: scenario.summary.clone(),
                    profile,
                    target: "spool".to_string(),
                    events_run: 0,
                    outcome: Outcome::Error {
                        why: format!("{e:#}"),
                    },
                },
            };
        }
        lockstep::run(scenario, profile, self.target)
    }
}

/// How a case failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The target did something the model did not.
    Diverged,
    /// The run could not go on.
    Error,
    /// The model, the target or the simulator panicked.
    Panicked,
}

/// A failing case's failure, as a person reads it.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub kind: FailureKind,
    pub profile: Profile,
    /// Where, and each difference (model above target), one per line.
    pub lines: Vec<String>,
}

/// Plays `case` in `profile` through its rendered scenario; its failure,
/// if it fails.
pub fn judge(case: &Case, profile: Profile, runner: Runner) -> Option<Failure> {
    let scenario = match case.scenario("explored case", &[profile], "explored-case.toml") {
        Ok(s) => s,
        Err(e) => {
            return Some(Failure {
                kind: FailureKind::Error,
                profile,
                lines: vec![format!("the generated scenario does not read: {e}")],
            })
        }
    };
    let result = panic::catch_unwind(AssertUnwindSafe(|| runner.run(&scenario, profile)));
    let (kind, lines) = match result {
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".to_string());
            (FailureKind::Panicked, vec![format!("panicked: {message}")])
        }
        Ok(result) => match result.outcome {
            Outcome::Pass | Outcome::Skipped { .. } => return None,
            Outcome::Diverged(report) | Outcome::ExpectationFailed(report) => {
                let mut lines = Vec::new();
                let sign = if report.offset < 0 { "-" } else { "+" };
                let when = format!("at {sign}{}s", report.offset.abs());
                lines.push(match &report.event {
                    Some(e) => format!(
                        "event {} (do = \"{}\") {when}, during {}",
                        e.index, e.kind, report.step
                    ),
                    None => format!("the setup {when}, during {}", report.step),
                });
                for d in &report.differences {
                    lines.push(format!("  {}", d.field));
                    lines.push(format!("    model:  {}", d.model));
                    lines.push(format!("    target: {}", d.target));
                }
                (FailureKind::Diverged, lines)
            }
            Outcome::Error { why } => (FailureKind::Error, vec![why]),
        },
    };
    Some(Failure {
        kind,
        profile,
        lines,
    })
}

/// A failing case, shrunk.
#[derive(Debug, Clone)]
pub struct Finding {
    pub seed: u64,
    /// The case's index in the run.
    pub case: u64,
    /// The run's events per case.
    pub steps: usize,
    /// Events in the case as generated.
    pub events_before: usize,
    pub shrunk: Case,
    pub failure: Failure,
    /// Lockstep runs made while shrinking.
    pub shrink_runs: usize,
    /// The target it failed against.
    pub target: String,
}

impl Finding {
    /// `explore-seed1-case17-strict.toml`
    pub fn file_name(&self) -> String {
        format!(
            "explore-seed{}-case{}-{}.toml",
            self.seed,
            self.case,
            self.failure.profile.name()
        )
    }

    /// The shrunk case as a scenario file, opening with a comment block
    /// that says where it came from and what diverged.
    pub fn scenario_text(&self) -> String {
        let mut header = vec![
            format!(
                "# Found by `flushbed explore --seed {} --steps {}`: case {} of seed {},",
                self.seed, self.steps, self.case, self.seed
            ),
            format!(
                "# in the {} profile against the {} target, shrunk from {} events to {}",
                self.failure.profile.name(),
                self.target,
                self.events_before,
                self.shrunk.events.len()
            ),
            format!("# in {} lockstep runs.", self.shrink_runs),
            "#".to_string(),
            match self.failure.kind {
                FailureKind::Diverged => "# What diverged (the model's value above the target's):",
                FailureKind::Error => "# The run could not go on:",
                FailureKind::Panicked => "# The run panicked:",
            }
            .to_string(),
        ];
        for line in &self.failure.lines {
            for part in line.split('\n') {
                header.push(format!("#   {part}"));
            }
        }
        header.push("#".to_string());
        header.push("# Replay it as it is with `flushbed check` and this file.".to_string());
        let mut text = header.join("\n");
        text.push_str("\n\n");
        let summary = format!(
            "explore seed {} case {}: {}",
            self.seed,
            self.case,
            match self.failure.kind {
                FailureKind::Diverged => "the target diverged from the model",
                FailureKind::Error => "the run could not go on",
                FailureKind::Panicked => "the run panicked",
            }
        );
        self.shrunk.render(&summary, &[self.failure.profile], &text)
    }
}

/// Writes a finding's scenario into `dir` (made if need be); its path.
pub fn write_finding(dir: &Path, finding: &Finding) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(finding.file_name());
    std::fs::write(&path, finding.scenario_text())?;
    Ok(path)
}

/// What a run came to.
#[derive(Debug, Clone)]
pub struct Summary {
    pub seed: u64,
    /// Cases run (up to and including the first failing one, unless
    /// `keep_going`).
    pub cases_run: u64,
    /// Their indices, in order, that failed.
    pub failing_cases: Vec<u64>,
    /// The time the cases took, without shrinking.
    pub elapsed: Duration,
    /// The time shrinking took.
    pub shrink_elapsed: Duration,
    pub findings: Vec<Finding>,
}

impl Summary {
    pub fn cases_per_second(&self) -> f64 {
        self.cases_run as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The index of the first failing case, if any.
    pub fn first_failing_case(&self) -> Option<u64> {
        self.failing_cases.first().copied()
    }
}

/// Runs the cases of `options`, shrinks what fails.
pub fn explore(options: &Options, runner: Runner, progress: &mut dyn Progress) -> Summary {
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let stop = AtomicU64::new(u64::MAX);
    let mut results: BTreeMap<u64, Option<Failure>> = BTreeMap::new();

    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<(u64, Option<Failure>)>();
        for _ in 0..options.jobs.max(1) {
            let tx = tx.clone();
            let (next, stop) = (&next, &stop);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= options.cases || i > stop.load(Ordering::SeqCst) {
                    break;
                }
                let case = generate(options.seed, i, options.steps);
                let failure = options
                    .profiles
                    .iter()
                    .find_map(|&profile| judge(&case, profile, runner));
                if failure.is_some() && !options.keep_going {
                    stop.fetch_min(i, Ordering::SeqCst);
                }
                if tx.send((i, failure)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut failed = 0;
        for (i, failure) in rx {
            failed += u64::from(failure.is_some());
            results.insert(i, failure);
            progress.cases(results.len() as u64, failed);
        }
    });

    // Cases past the first failure, run by threads that had started them,
    // are not part of the run: it is the same whatever the threads did.
    let last = stop.load(Ordering::SeqCst);
    results.retain(|i, _| *i <= last);
    let elapsed = started.elapsed();
    let failing: Vec<(u64, Failure)> = results
        .iter()
        .filter_map(|(i, f)| f.clone().map(|f| (*i, f)))
        .collect();

    // Shrink the failing cases, in case order.
    let shrinking = Instant::now();
    let mut findings = Vec::new();
    let limit = if options.keep_going {
        options.max_findings
    } else {
        1
    };
    for (i, failure) in failing.iter().take(limit) {
        progress.shrinking(*i);
        let case = generate(options.seed, *i, options.steps);
        let (kind, profile) = (failure.kind, failure.profile);
        let mut fails = |c: &Case| judge(c, profile, runner).filter(|f| f.kind == kind);
        let shrunk = shrink::shrink(&case, failure.clone(), options.shrink_budget, &mut fails);
        findings.push(Finding {
            seed: options.seed,
            case: *i,
            steps: options.steps,
            events_before: case.events.len(),
            shrunk: shrunk.case,
            failure: shrunk.failure,
            shrink_runs: shrunk.runs,
            target: runner.target.name().to_string(),
        });
    }
    progress.finish();

    Summary {
        seed: options.seed,
        cases_run: results.len() as u64,
        failing_cases: failing.iter().map(|(i, _)| *i).collect(),
        elapsed,
        shrink_elapsed: shrinking.elapsed(),
        findings,
    }
}
