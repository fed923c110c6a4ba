//! The `postfix` target: the real Postfix 3.7 flush server, the oracle.
//!
//! For each run of a scenario the target starts a private, flush-only
//! Postfix instance ([`crate::lab`]) whose `main.cf` is the scenario's,
//! drives its flush server with the live-server target (connections on
//! `public/flush`, triggers heard on `public/qmgr`, file times moved so that
//! virtual time can pass), and stops the instance when the run ends. The
//! model runs in the `postfix` profile: the real server, bugs included.
//! The master's wakeups and the clients (eligibility, the `ETRN` mapping,
//! `postqueue`'s exit codes) are the runner's, as for every target: the
//! instance's `master.cf` has wakeup 0, and no client program is run.
//!
//! What only a real Postfix needs, beyond the live target:
//!
//! - Whether the flush process died is read from the maillog: a `fatal:`
//!   or `panic:` of a flush process, or the master's word that one ended
//!   badly. After each connection the maillog is read up to a line written
//!   through the same logging service, so that a death is neither missed
//!   nor counted for the next request.
//! - After a process dies before it has served a request, the master
//!   pauses the service for `service_throttle_time` (2 s in these
//!   instances unless the scenario says otherwise); the target waits that
//!   out, so that the next request is served in the second it is sent.
//! - Postfix reads the time with `time(2)`, which follows the kernel's
//!   coarse clock: in the first milliseconds of a second it may still say
//!   the second before, and so may the times of a file the server creates.
//!   The target sends a request only when the second has well begun
//!   ([`COARSE_CLOCK_LAG`]) and has room left for it.
//! - Planted files belong to user `postfix`, as the live target gives
//!   them to the owner of `flush/`, which `postfix check` made `postfix`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use flushbed_vocab::config::parse_time;
use flushbed_vocab::{Exchange, FlushConfig, Profile, Time};
use tracing::debug;

use super::live::{result, tables_of, DeathWatch, LiveSetup, LiveTarget};
use super::Target;
use crate::lab::{self, Instance, InstanceSpec, LabError, MaillogReader, Services};
use crate::lockstep::{self, Outcome, ScenarioResult};
use crate::scenario::{ConfigSpec, Scenario};

/// How long the master may take to log the end of a process that logged
/// its own fatal error.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// How far into a real second the kernel's coarse clock (one tick of at
/// most 10 ms) is sure to have reached it.
pub const COARSE_CLOCK_LAG: Duration = Duration::from_millis(25);

/// How much of a real second must be left when a request is sent, so that
/// the live target need not wait for the next one itself.
const ROOM_LEFT: Duration = Duration::from_millis(200);

/// Why the `postfix` target cannot run here; `Ok` when it can.
pub fn available() -> Result<(), LabError> {
    lab::instances_possible()
}

/// A real Postfix flush server on a private instance, driven live.
pub struct PostfixTarget {
    /// Dropped first: it stops listening on `public/qmgr` before the
    /// instance stops.
    live: LiveTarget,
    instance: Instance,
}

impl PostfixTarget {
    /// Starts a private instance for a scenario's configuration. Only the
    /// `postfix` profile can be held against a real Postfix.
    pub fn start(spec: &ConfigSpec, profile: Profile) -> anyhow::Result<PostfixTarget> {
        anyhow::ensure!(
            profile == Profile::Postfix,
            "the real Postfix runs only in the postfix profile, not {}",
            profile.name()
        );
        let instance = Instance::start(&InstanceSpec {
            main_cf: spec.main_cf.clone(),
            files: spec.files.clone(),
            hostname: spec.hostname.clone(),
            services: Services::FlushOnly { verbose: false },
        })
        .context("starting a private Postfix")?;
        let config = instance
            .flush_config()
            .context("reading the instance's main.cf")?;

        let deaths = MaillogDeaths {
            reader: instance.maillog_reader(),
            seen: BTreeSet::new(),
            throttle: throttle_time(&config),
        };
        let live = LiveTarget::new(LiveSetup {
            name: "postfix".to_string(),
            socket: instance.queue_dir().join("public/flush"),
            tables: tables_of(spec, &config),
            config,
            profile,
            deaths: Some(Box::new(deaths)),
        })
        .with_context(|| format!("driving the instance at {}", instance.root().display()))?;
        Ok(PostfixTarget { live, instance })
    }

    /// The instance the target drives.
    pub fn instance(&self) -> &Instance {
        &self.instance
    }
}

/// The master's pause after a flush process died at its start.
fn throttle_time(config: &FlushConfig) -> Duration {
    let value = config.main_cf.get("service_throttle_time").unwrap_or("60s");
    parse_time("service_throttle_time", value, 's').map_or(Duration::from_secs(60), |s| {
        Duration::from_secs(s.unsigned_abs())
    })
}

/// Deaths of flush processes, as the instance's maillog tells them.
struct MaillogDeaths {
    reader: MaillogReader,
    /// Processes already reported, so that the master's late word about
    /// one is not a second death.
    seen: BTreeSet<u32>,
    throttle: Duration,
}

impl DeathWatch for MaillogDeaths {
    fn died_since_last(&mut self) -> anyhow::Result<bool> {
        let mut log = self.reader.read_through_now()?;
        let dead: BTreeSet<u32> = lab::flush_fatal_pids(&log)
            .union(&lab::flush_bad_exit_pids(&log))
            .copied()
            .filter(|pid| !self.seen.contains(pid))
            .collect();
        if dead.is_empty() {
            return Ok(false);
        }

        // Whether the master pauses the service is known once it has seen
        // each process end.
        let started = Instant::now();
        while !dead.is_subset(&lab::flush_bad_exit_pids(&log)) && started.elapsed() < REAP_TIMEOUT {
            std::thread::sleep(Duration::from_millis(20));
            log.push_str(&self.reader.read_available()?);
        }
        self.seen.extend(&dead);
        debug!(target_name = "postfix", pids = ?dead, log = %log.trim_end(), "flush process died");
        if lab::flush_throttled(&log) {
            std::thread::sleep(self.throttle + Duration::from_millis(200));
        }
        Ok(true)
    }
}

impl Target for PostfixTarget {
    fn name(&self) -> String {
        self.live.name()
    }

    fn profile(&self) -> Profile {
        self.live.profile()
    }

    fn config(&self) -> &FlushConfig {
        self.live.config()
    }

    fn connect(&mut self, input: &[u8], now: Time) -> anyhow::Result<Exchange> {
        wait_for_a_settled_second();
        let tail = || format!("maillog:\n{}", self.instance.maillog_tail(20));
        let got = self.live.connect(input, now);
        got.with_context(tail)
    }

    super::forward_environment!(live);
}

/// Waits until the real second has begun for the coarse clock too, and
/// has room left for a request.
fn wait_for_a_settled_second() {
    loop {
        let into = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(Duration::ZERO, |d| {
                Duration::from_nanos(d.subsec_nanos().into())
            });
        if let Some(wait) = settle_wait(into) {
            std::thread::sleep(wait);
        } else {
            return;
        }
    }
}

/// How long to wait, `into` a real second, for a settled one; `None` when
/// it is settled now.
fn settle_wait(into: Duration) -> Option<Duration> {
    let second = Duration::from_secs(1);
    if into < COARSE_CLOCK_LAG {
        Some(COARSE_CLOCK_LAG - into)
    } else if into > second - ROOM_LEFT {
        Some(second - into + COARSE_CLOCK_LAG)
    } else {
        None
    }
}

/// Runs one scenario against a fresh private Postfix. A scenario for
/// other targets, or a run in the `strict` profile, is skipped: the real
/// server is what the `postfix` profile describes.
pub fn run_postfix(scenario: &Scenario, profile: Profile) -> ScenarioResult {
    let skipped = |why: String| result(scenario, profile, "postfix", Outcome::Skipped { why });
    if !scenario.applies_to("postfix") {
        return skipped("the scenario does not apply to the postfix target".to_string());
    }
    if profile != Profile::Postfix {
        return skipped(format!(
            "the real Postfix is held to the postfix profile, not {}",
            profile.name()
        ));
    }
    match PostfixTarget::start(&scenario.config, profile) {
        Ok(mut target) => lockstep::run_against(scenario, &mut target, None),
        Err(e) => result(
            scenario,
            profile,
            "postfix",
            Outcome::Error {
                why: format!("{e:#}"),
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flushbed_vocab::config::Environment;
    use flushbed_vocab::MainCf;

    fn config(main_cf: &str) -> FlushConfig {
        let main = MainCf::parse(main_cf, "main.cf").unwrap();
        FlushConfig::from_main_cf(&main, &Environment::default()).unwrap()
    }

    #[test]
    fn requests_wait_out_the_start_and_the_end_of_a_second() {
        let ms = Duration::from_millis;
        assert_eq!(settle_wait(ms(3)), Some(ms(22)));
        assert_eq!(settle_wait(ms(25)), None);
        assert_eq!(settle_wait(ms(800)), None);
        assert_eq!(settle_wait(ms(900)), Some(ms(125)));
    }

    #[test]
    fn the_throttle_wait_is_service_throttle_time_or_postfixs_sixty_seconds() {
        assert_eq!(
            throttle_time(&config("service_throttle_time = 2s\n")),
            Duration::from_secs(2)
        );
        assert_eq!(
            throttle_time(&config("service_throttle_time = 1m\n")),
            Duration::from_secs(60)
        );
        assert_eq!(throttle_time(&config("")), Duration::from_secs(60));
    }
}
