//! Lockstep steps per second: the reference model alone, flushbed's
//! implementation alone on a temporary spool, and the lockstep of the two,
//! on one generated event sequence: `add`, `send_site`, refresh and time
//! passing, over a few dozen sites whose queue files start in `deferred/`.
//!
//! The sequence is built as a [`Scenario`] with the simulator's public
//! types, so the lockstep runner plays it as it plays any scenario file;
//! the model and the implementation alone are given the same requests at
//! the same times. Setting up the initial spool is not timed: the lockstep
//! is timed on the whole scenario and on the same scenario with no events,
//! and the difference is what the events cost.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use flushbed_model::{Model, Tables};
use flushbed_sim::lockstep::{self, Outcome};
use flushbed_sim::scenario::{
    Action, ConfigSpec, Event, QueueFileSpec, Scenario, SimSpec, Wakeup, DEFAULT_SENDER,
    DEFAULT_START,
};
use flushbed_sim::target::{SpoolTarget, Target};
use flushbed_vocab::{wire, Profile, QueueName};

/// The shape of a generated sequence.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub events: usize,
    pub sites: usize,
    /// Queue files in `deferred/` at the start, named by the adds.
    pub queue_files: usize,
    pub seed: u64,
}

/// What one way of playing the sequence cost.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub events: usize,
    pub elapsed: Duration,
}

impl Timing {
    pub fn per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

/// The three timings of one sequence.
#[derive(Debug, Clone, Copy)]
pub struct LockstepResults {
    pub model: Timing,
    pub implementation: Timing,
    pub lockstep: Timing,
}

/// A small deterministic generator (xorshift64*): the same seed gives the
/// same sequence on every machine.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn site(n: usize) -> Vec<u8> {
    format!("s{n:02}.example.com").into_bytes()
}

fn queue_id(n: usize) -> String {
    format!("{:X}{:08X}", n % 16, n)
}

/// The sequence: mostly adds (as deferrals make them), some sends, a
/// refresh now and then, and time passing between them so that refresh
/// finds logfiles unread for longer than `fast_flush_refresh_time`.
pub fn generate(shape: Shape) -> Scenario {
    let mut dice = Dice(shape.seed | 1);
    let start = DEFAULT_START;
    let mut now = start;
    let mut events = Vec::with_capacity(shape.events);
    for index in 1..=shape.events {
        now += dice.below(30) as i64;
        let roll = dice.below(100);
        let action = if roll < 70 {
            Action::Add {
                site: site(dice.below(shape.sites)),
                queue_id: queue_id(dice.below(shape.queue_files)).into_bytes(),
            }
        } else if roll < 85 {
            Action::SendSite {
                site: site(dice.below(shape.sites)),
            }
        } else if roll < 90 {
            Action::Refresh
        } else {
            now += 600 + dice.below(7200) as i64;
            Action::Advance
        };
        events.push(Event {
            index,
            line: 0,
            time: now,
            note: None,
            action,
            expect: None,
        });
    }

    let queue_files = (0..shape.queue_files)
        .map(|n| QueueFileSpec {
            id: queue_id(n),
            queue: QueueName::Deferred,
            mode: 0o700,
            atime: start,
            mtime: start,
            recipients: Vec::new(),
            arrival: start,
            sender: DEFAULT_SENDER.to_string(),
        })
        .collect();

    Scenario {
        file: "(generated)".to_string(),
        name: "bench-lockstep".to_string(),
        summary: "a generated sequence of add, send_site, refresh and time passing".to_string(),
        profiles: vec![Profile::Strict],
        start,
        targets: None,
        config: ConfigSpec {
            main_cf: "compatibility_level = 3.6\n\
                      fast_flush_domains = example.com\n\
                      fast_flush_refresh_time = 1h\n\
                      fast_flush_purge_time = 1d\n"
                .to_string(),
            files: BTreeMap::new(),
            hostname: "bench.test.invalid".to_string(),
        },
        sim: SimSpec {
            queue_manager: false,
            flush_wakeup: Wakeup::Never,
            sites: BTreeMap::new(),
        },
        logfiles: Vec::new(),
        queue_files,
        events,
    }
}

/// The request an event makes, if any.
fn request_of(action: &Action) -> Option<Vec<u8>> {
    match action {
        Action::Add { site, queue_id } => Some(wire::add_request(site, queue_id)),
        Action::SendSite { site } => Some(wire::send_site_request(site)),
        Action::Refresh => Some(wire::refresh_request()),
        _ => None,
    }
}

/// The requests of the sequence, built before anything is timed.
fn requests(scenario: &Scenario) -> Vec<(Option<Vec<u8>>, i64)> {
    scenario
        .events
        .iter()
        .map(|e| (request_of(&e.action), e.time))
        .collect()
}

/// The model alone: every request to a [`Model`], nothing observed.
pub fn time_model(scenario: &Scenario) -> anyhow::Result<Timing> {
    let target = SpoolTarget::new(&scenario.config, Profile::Strict)?;
    let mut model = Model::new(target.config(), Tables::default(), Profile::Strict);
    for q in &scenario.queue_files {
        model.plant_queue_file(&q.id, q.queue, q.mode, q.atime, q.mtime);
    }
    let requests = requests(scenario);

    let began = Instant::now();
    for (input, now) in &requests {
        let Some(input) = input else { continue };
        // A refresh walks flush/ in the directory's order; the model's own
        // (sorted) names stand in for it.
        let order: Vec<String> = if input.starts_with(b"request\0rfrsh\0") {
            model.observe().logfiles.into_keys().collect()
        } else {
            Vec::new()
        };
        let step = model.connect(input, *now, &order);
        std::hint::black_box(step);
    }
    Ok(Timing {
        events: requests.len(),
        elapsed: began.elapsed(),
    })
}

/// The implementation alone: every request to flushbed's service on a
/// temporary spool, nothing observed.
pub fn time_implementation(scenario: &Scenario) -> anyhow::Result<Timing> {
    let mut target = SpoolTarget::new(&scenario.config, Profile::Strict)?;
    for q in &scenario.queue_files {
        target.plant_queue_file(&q.id, q.queue, q.mode, q.atime, q.mtime)?;
    }
    let requests = requests(scenario);

    let began = Instant::now();
    for (input, now) in &requests {
        let Some(input) = input else { continue };
        let exchange = target.connect(input, *now)?;
        std::hint::black_box(exchange);
    }
    Ok(Timing {
        events: requests.len(),
        elapsed: began.elapsed(),
    })
}

/// The lockstep of both, with every comparison after every step; the
/// setup's cost is taken off.
pub fn time_lockstep(scenario: &Scenario) -> anyhow::Result<Timing> {
    let setup_only = Scenario {
        events: Vec::new(),
        ..scenario.clone()
    };
    let setup = time_run(&setup_only).context("the lockstep with no events")?;
    let whole = time_run(scenario)?;
    Ok(Timing {
        events: scenario.events.len(),
        elapsed: whole.saturating_sub(setup),
    })
}

fn time_run(scenario: &Scenario) -> anyhow::Result<Duration> {
    let mut target = SpoolTarget::new(&scenario.config, Profile::Strict)?;
    let began = Instant::now();
    let result = lockstep::run_against(scenario, &mut target, None);
    let elapsed = began.elapsed();
    match &result.outcome {
        Outcome::Pass => Ok(elapsed),
        Outcome::Diverged(report) | Outcome::ExpectationFailed(report) => bail!(
            "the generated sequence did not pass the lockstep:\n{}",
            report.render(Profile::Strict)
        ),
        Outcome::Error { why } => bail!("the lockstep could not run: {why}"),
        Outcome::Skipped { why } => bail!("the lockstep skipped the sequence: {why}"),
    }
}

/// All three, on one sequence.
pub fn run(shape: Shape) -> anyhow::Result<LockstepResults> {
    let scenario = generate(shape);
    Ok(LockstepResults {
        model: time_model(&scenario).context("the model alone")?,
        implementation: time_implementation(&scenario).context("the implementation alone")?,
        lockstep: time_lockstep(&scenario).context("the lockstep")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_generates_the_same_sequence() {
        let shape = Shape {
            events: 200,
            sites: 5,
            queue_files: 20,
            seed: 7,
        };
        assert_eq!(generate(shape).events, generate(shape).events);
        let other = Shape { seed: 8, ..shape };
        assert_ne!(generate(shape).events, generate(other).events);
    }

    #[test]
    fn a_short_generated_sequence_passes_the_lockstep() {
        let shape = Shape {
            events: 150,
            sites: 4,
            queue_files: 10,
            seed: 3,
        };
        let scenario = generate(shape);
        assert!(scenario
            .events
            .iter()
            .any(|e| matches!(e.action, Action::Refresh)));
        time_run(&scenario).unwrap();
    }
}
