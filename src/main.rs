//! `flushbed`: the command line of the flush(8) testbed.
//!
//! - `flushbed check [PATH...]` runs scenarios in lockstep, the reference
//!   model against a target, and says for each scenario and profile
//!   whether the target did exactly what the model did. With no path it
//!   runs the built-in suite (the `scenarios/` directory, compiled in).
//! - `flushbed run SCENARIO` tells one scenario's run step by step: each
//!   request, what the server answered and the rule that decided it, and
//!   the logfiles and queues after it.
//! - `flushbed serve --config DIR` runs flushbed's flush(8) as a server on
//!   its socket, and `check --target serve` or `--target socket:PATH`
//!   holds a running server to the model (`serve.rs`).
//!
//! Exit status: 0 when everything passed, 1 when a run diverged or an
//! expectation failed, 2 for bad usage or a scenario that cannot be read.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use flushbed_sim::lockstep::{self, Outcome, ScenarioResult, TargetKind};
use flushbed_sim::narrate::narrate;
use flushbed_sim::scenario::{self, Scenario, ScenarioError};
use flushbed_vocab::Profile;
use serde::Serialize;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/scenarios.rs"));
}

mod explore;

mod serve;

#[derive(Debug, Parser)]
#[command(
    name = "flushbed",
    version,
    about = "A testbed for the Postfix fast flush server, flush(8)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run scenarios in lockstep, model against target.
    Check {
        /// Scenario files or directories of them; none runs the built-in suite.
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Run only this profile (each scenario says which profiles it runs in).
        #[arg(long, value_enum)]
        profile: Option<ProfileArg>,
        /// spool, serve (a `flushbed serve` per run), or socket:PATH (a running server).
        #[arg(long, default_value = "spool")]
        target: serve::CheckTarget,
        /// The configuration directory of the server behind socket:PATH.
        #[arg(long, value_name = "DIR")]
        config: Option<PathBuf>,
    },
    /// Serve flush(8) on a UNIX socket, as Postfix's flush server does.
    Serve(serve::ServeArgs),
    /// Narrate one scenario's run.
    Run {
        /// A scenario file, or the name of a built-in scenario.
        scenario: PathBuf,
        #[arg(long, value_enum)]
        profile: Option<ProfileArg>,
        #[arg(long, value_enum, default_value_t = TargetArg::Spool)]
        target: TargetArg,
    },
    /// Run random cases in lockstep; shrink and write any that fails.
    Explore(explore::ExploreArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProfileArg {
    Strict,
    Postfix,
}

impl From<ProfileArg> for Profile {
    fn from(p: ProfileArg) -> Profile {
        match p {
            ProfileArg::Strict => Profile::Strict,
            ProfileArg::Postfix => Profile::Postfix,
        }
    }
}

/// The targets a run can be held against; more (a socket server, a real
/// Postfix) fit behind the same `Target` trait.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum TargetArg {
    Spool,
}

impl From<TargetArg> for TargetKind {
    fn from(t: TargetArg) -> TargetKind {
        match t {
            TargetArg::Spool => TargetKind::Spool,
        }
    }
}

/// Bad input: the run never started.
struct BadInput(Vec<String>);

fn main() -> ExitCode {
    // Like any Unix filter, end quietly when the reader of our output goes
    // away (`flushbed check | head`), instead of failing on a broken pipe.
    // SAFETY: setting a signal's disposition to its default, before any
    // thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }

    let cli = Cli::parse();

    // Quiet by default, as Postfix's own commands are; a server still says
    // what went wrong. RUST_LOG asks for more.
    let default = if matches!(cli.command, Cmd::Serve(_)) {
        "warn"
    } else {
        "off"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let outcome = match cli.command {
        Cmd::Check {
            paths,
            format,
            profile,
            target,
            config,
        } => serve::Checker::new(&target, config.as_deref()).and_then(|target| {
            let only = profile.map(Profile::from).or(target.default_profile());
            check(&paths, format, only, &target)
        }),
        Cmd::Serve(args) => serve::serve(&args).map(|()| Ok(true)),
        Cmd::Run {
            scenario,
            profile,
            target,
        } => run(&scenario, profile.map(Profile::from), target.into()),
        Cmd::Explore(args) => explore::explore(&args).map(Ok),
    };
    match outcome {
        Ok(Ok(true)) => ExitCode::SUCCESS,
        Ok(Ok(false)) => ExitCode::from(1),
        Ok(Err(BadInput(errors))) => {
            for e in errors {
                eprintln!("flushbed: {e}");
            }
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("flushbed: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Every scenario named by `paths` (or the built-in suite), all read and
/// checked before any runs.
fn load(paths: &[PathBuf]) -> anyhow::Result<Result<Vec<Scenario>, BadInput>> {
    let mut sources: Vec<(String, String)> = Vec::new();
    let mut errors = Vec::new();
    if paths.is_empty() {
        sources.extend(
            embedded::SCENARIOS
                .iter()
                .map(|(f, t)| (f.to_string(), t.to_string())),
        );
    }
    for path in paths {
        for file in scenario_files(path)? {
            match std::fs::read_to_string(&file) {
                Ok(text) => sources.push((file.display().to_string(), text)),
                Err(e) => errors.push(format!("{}: {e}", file.display())),
            }
        }
    }

    let mut scenarios = Vec::new();
    for (file, text) in &sources {
        match scenario::parse(text, file) {
            Ok(s) => scenarios.push(s),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        return Ok(Err(BadInput(errors)));
    }
    if scenarios.is_empty() {
        return Ok(Err(BadInput(vec!["no scenario files found".to_string()])));
    }
    Ok(Ok(scenarios))
}

/// A file as it is; a directory's `*.toml` files in name order.
fn scenario_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading directory {}", path.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

#[derive(Serialize)]
struct Summary {
    passed: usize,
    failed: usize,
    skipped: usize,
    results: Vec<ScenarioResult>,
}

fn check(
    paths: &[PathBuf],
    format: Format,
    only: Option<Profile>,
    target: &serve::Checker,
) -> anyhow::Result<Result<bool, BadInput>> {
    let scenarios = match load(paths)? {
        Ok(s) => s,
        Err(bad) => {
            // A machine reading JSON gets the errors as JSON too.
            if let Format::Json = format {
                let errors = serde_json::json!({ "errors": bad.0 });
                println!("{}", serde_json::to_string_pretty(&errors)?);
            }
            return Ok(Err(bad));
        }
    };

    let mut summary = Summary {
        passed: 0,
        failed: 0,
        skipped: 0,
        results: Vec::new(),
    };
    let stdout = std::io::stdout();
    for scenario in &scenarios {
        for &profile in scenario
            .profiles
            .iter()
            .filter(|p| only.map_or(true, |o| o == **p))
        {
            let result = target.run(scenario, profile);
            match &result.outcome {
                Outcome::Pass => summary.passed += 1,
                Outcome::Skipped { .. } => summary.skipped += 1,
                _ => summary.failed += 1,
            }
            if let Format::Text = format {
                let mut out = stdout.lock();
                writeln!(out, "{}", result_line(&result))?;
                match &result.outcome {
                    Outcome::Diverged(report) | Outcome::ExpectationFailed(report) => {
                        write!(out, "{}", report.render(profile))?;
                    }
                    Outcome::Error { why } => writeln!(out, "    {why}")?,
                    Outcome::Pass | Outcome::Skipped { .. } => {}
                }
            }
            summary.results.push(result);
        }
    }

    match format {
        Format::Text => println!(
            "{} passed, {} failed, {} skipped ({} scenarios, target {})",
            summary.passed,
            summary.failed,
            summary.skipped,
            scenarios.len(),
            target.name()
        ),
        Format::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
    }
    Ok(Ok(summary.failed == 0))
}

/// `ok  send-truncates-only-when-a-line-was-read  [strict]`
fn result_line(result: &ScenarioResult) -> String {
    let (word, extra) = match &result.outcome {
        Outcome::Pass => ("ok", String::new()),
        Outcome::Skipped { why } => ("skip", format!("  ({why})")),
        Outcome::Diverged(_) => ("DIVERGED", String::new()),
        Outcome::ExpectationFailed(_) => ("EXPECTATION FAILED", String::new()),
        Outcome::Error { .. } => ("ERROR", String::new()),
    };
    format!(
        "{word}  {}  [{}]{extra}",
        result.scenario,
        result.profile.name()
    )
}

fn run(
    path: &Path,
    only: Option<Profile>,
    target: TargetKind,
) -> anyhow::Result<Result<bool, BadInput>> {
    let scenario = match find_scenario(path) {
        Ok(s) => s,
        Err(e) => return Ok(Err(BadInput(vec![e.to_string()]))),
    };
    let profiles: Vec<Profile> = match only {
        Some(p) => vec![p],
        None => scenario.profiles.clone(),
    };

    let mut all_passed = true;
    for (n, profile) in profiles.into_iter().enumerate() {
        if n > 0 {
            println!("\n{}\n", "-".repeat(72));
        }
        let mut trace = Vec::new();
        let result = lockstep::run_traced(&scenario, profile, target, Some(&mut trace));
        all_passed &= result.passed();
        print!("{}", narrate(&scenario, profile, &trace, &result));
    }
    Ok(Ok(all_passed))
}

/// A scenario file, or failing that a built-in scenario of that name.
fn find_scenario(path: &Path) -> Result<Scenario, ScenarioError> {
    if path.exists() {
        return scenario::load(path);
    }
    let wanted = path.to_string_lossy();
    let builtin = embedded::SCENARIOS.iter().find(|(file, _)| {
        let stem = file
            .trim_start_matches("scenarios/")
            .trim_end_matches(".toml");
        *file == wanted || stem == wanted
    });
    match builtin {
        Some((file, text)) => scenario::parse(text, file),
        None => scenario::load(path),
    }
}
