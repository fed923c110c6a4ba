//! `flushbed explore`: random lockstep exploration of flush(8) with
//! shrinking.
//!
//! Each case is a small random configuration and timeline (sites that fold
//! and collide, valid and invalid queue IDs, damaged logfiles, every
//! request, trigger and client, time jumps onto the refresh and purge
//! boundaries), played in lockstep, the reference model against a target.
//! A failing case is shrunk to a smallest one that fails the same way and
//! written as a scenario file that `flushbed check FILE` replays; the seed
//! and the path are printed. The same seed gives the same cases
//! everywhere, with any number of `--jobs`.
//!
//! Exit status: 0 when every case passed, 1 when one failed.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use flushbed_sim::explore::{self, FailureKind, Options, Runner, Stderr};
use flushbed_sim::lockstep::TargetKind;
use flushbed_vocab::Profile;

/// The options of `flushbed explore`.
#[derive(Debug, Args)]
pub struct ExploreArgs {
    /// The seed: the same seed gives the same cases everywhere.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many cases to run.
    #[arg(long, default_value_t = 1000)]
    cases: u64,
    /// Events per case.
    #[arg(long, default_value_t = 30)]
    steps: usize,
    /// The target held to the model.
    #[arg(long, default_value = "spool", value_parser = parse_target)]
    target: TargetKind,
    /// Run only this profile (by default each case runs in strict, then postfix).
    #[arg(long, value_parser = parse_profile)]
    profile: Option<Profile>,
    /// Threads running cases; the results are the same for any number.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Where shrunk failing cases are written, one scenario file each.
    #[arg(long, default_value = "explore-found")]
    out: PathBuf,
    /// Run every case instead of stopping at the first failing one.
    #[arg(long)]
    keep_going: bool,
    /// With --keep-going, at most this many failing cases are shrunk.
    #[arg(long, default_value_t = 5)]
    max_findings: usize,
}

fn parse_target(text: &str) -> Result<TargetKind, String> {
    text.parse()
}

fn parse_profile(text: &str) -> Result<Profile, String> {
    text.parse()
}

/// Runs the exploration; whether every case passed.
pub fn explore(args: &ExploreArgs) -> anyhow::Result<bool> {
    let profiles = match args.profile {
        Some(p) => vec![p],
        None => vec![Profile::Strict, Profile::Postfix],
    };
    let options = Options {
        seed: args.seed,
        cases: args.cases,
        steps: args.steps,
        profiles: profiles.clone(),
        jobs: args.jobs.max(1),
        keep_going: args.keep_going,
        max_findings: args.max_findings,
        ..Options::default()
    };
    let mut progress = Stderr::new(args.cases);
    let summary = explore::explore(&options, Runner::new(args.target), &mut progress);

    for finding in &summary.findings {
        let path = explore::write_finding(&args.out, finding)
            .with_context(|| format!("writing a shrunk case into {}", args.out.display()))?;
        let word = match finding.failure.kind {
            FailureKind::Diverged => "DIVERGED",
            FailureKind::Error => "ERROR",
            FailureKind::Panicked => "PANICKED",
        };
        println!(
            "{word}  seed {} case {}  [{}]: shrunk from {} events to {} in {} runs",
            finding.seed,
            finding.case,
            finding.failure.profile.name(),
            finding.events_before,
            finding.shrunk.events.len(),
            finding.shrink_runs
        );
        for line in &finding.failure.lines {
            println!("    {line}");
        }
        println!("    wrote {}", path.display());
        println!("    replay: flushbed check {}", path.display());
    }

    let names: Vec<&str> = profiles.iter().map(|p| p.name()).collect();
    println!(
        "explore: seed {}: {} cases in {:.1} s ({:.0} cases/s), {} failing [{}], target {}",
        summary.seed,
        summary.cases_run,
        summary.elapsed.as_secs_f64(),
        summary.cases_per_second(),
        summary.failing_cases.len(),
        names.join(", "),
        args.target.name()
    );
    if !summary.findings.is_empty() {
        println!(
            "explore: shrinking took {:.1} s",
            summary.shrink_elapsed.as_secs_f64()
        );
    }
    Ok(summary.failing_cases.is_empty())
}
