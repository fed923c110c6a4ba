//! The fault-exploring run: every scenario's flush requests replayed on
//! flushbed's implementation with one fault each, held to what the
//! reference model says a fault may leave behind.
//!
//! For each scenario and profile, the run first plays the scenario's flush
//! requests without a fault, on a spool whose file system counts every call
//! ([`flushbed_impl::faultfs`]). Then, for each request and each of its
//! calls `k`, it plays the scenario again from the start, failing call `k`
//! of that request in each way that call can fail (`EACCES` on an open,
//! `ENOSPC` or `EIO` on a write, `EIO` on a rename, a crash on any call),
//! and checks:
//!
//! - the target's exchange and spool are one of the outcomes
//!   [`Model::fault_outcomes`] accepts, and nothing else;
//! - under strict, the invariants of [`crate::invariants`] hold across the
//!   faulted request;
//! - the rest of the scenario then goes on in lockstep with the model that
//!   outcome left, served by a fresh process after a death.
//!
//! Only the flush requests and the spool events of a scenario are played:
//! no queue manager moves mail and no master wakes the service, so that a
//! run is the same sequence of requests every time. A client program's
//! request (`ETRN`, `postqueue`) is the one its client library would send.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use flushbed_impl::faultfs::{
    Call, DyingConnection, DyingSink, Failure, FaultFs, Faults, Op, Plan,
};
use flushbed_impl::{
    ConnectionEnd, FlushService, ManualClock, MemoryConnection, RealFs, RecordingSink,
};
use flushbed_model::client::Client;
use flushbed_model::faults::{self as model_faults, Fault};
use flushbed_model::{Model, Tables};
use flushbed_vocab::{Exchange, FlushConfig, Profile, QueueName, SpoolState, Time};

use crate::clients::{self, Begun, Command};
use crate::invariants;
use crate::observe;
use crate::scenario::{Action, ConfigSpec, Scenario};

/// How much of each scenario to explore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bounds {
    /// Fault only the first this many requests of a scenario.
    pub requests: Option<usize>,
    /// Fault only the first this many calls of a request.
    pub calls: Option<usize>,
}

/// Something a faulted run found.
#[derive(Debug, Clone)]
pub struct Finding {
    pub scenario: String,
    pub profile: Profile,
    /// The faulted request: its number among the scenario's requests, and
    /// what it was.
    pub request: usize,
    pub label: String,
    pub call: Option<Call>,
    pub plan: Option<Plan>,
    pub what: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): request #{} ({})",
            self.scenario,
            self.profile.name(),
            self.request,
            self.label
        )?;
        if let (Some(call), Some(plan)) = (self.call, self.plan) {
            write!(
                f,
                ", call #{} {call:?} failing with {:?}",
                plan.call, plan.failure
            )?;
        }
        write!(f, ": {}", self.what)
    }
}

/// What an exploration did and found.
#[derive(Debug, Clone, Default)]
pub struct Exploration {
    /// Faulted runs played.
    pub runs: usize,
    /// Distinct (request, call, failure) points among them.
    pub fault_points: usize,
    /// Fault points by how the call failed.
    pub by_failure: BTreeMap<String, usize>,
    pub findings: Vec<Finding>,
}

impl Exploration {
    /// Adds another exploration's counts and findings to this one.
    pub fn absorb(&mut self, other: Exploration) {
        self.runs += other.runs;
        self.fault_points += other.fault_points;
        for (failure, count) in other.by_failure {
            *self.by_failure.entry(failure).or_default() += count;
        }
        self.findings.extend(other.findings);
    }
}

/// One thing a scenario does that the exploration plays.
#[derive(Debug, Clone)]
enum Step {
    Request {
        input: Vec<u8>,
        now: Time,
        label: String,
    },
    WriteLogfile {
        name: String,
        content: Vec<u8>,
        mode: u32,
        atime: Time,
        mtime: Time,
    },
    RemoveLogfile(String),
    PlantQueueFile {
        id: String,
        queue: QueueName,
        mode: u32,
        atime: Time,
        mtime: Time,
    },
    RemoveQueueFile(String),
}

/// Explores every profile of `scenario`.
pub fn explore(scenario: &Scenario, bounds: Bounds) -> anyhow::Result<Exploration> {
    let mut exploration = Exploration::default();
    for &profile in &scenario.profiles {
        explore_profile(scenario, profile, bounds, &mut exploration)?;
    }
    Ok(exploration)
}

fn explore_profile(
    scenario: &Scenario,
    profile: Profile,
    bounds: Bounds,
    exploration: &mut Exploration,
) -> anyhow::Result<()> {
    // Without a fault first: the calls each request makes.
    let mut clean = Run::new(scenario, profile)?;
    let requests = clean.requests();
    let mut calls = Vec::new();
    for index in 0..clean.steps.len() {
        if let Err(what) = clean.play_clean(index)? {
            exploration
                .findings
                .push(finding(scenario, profile, &clean, index, None, what));
            return Ok(());
        }
        if matches!(clean.steps[index], Step::Request { .. }) {
            calls.push(clean.last_calls.clone());
        }
    }

    let limit = bounds.requests.unwrap_or(usize::MAX);
    for (request, request_calls) in calls.iter().enumerate().take(limit) {
        let call_limit = bounds.calls.unwrap_or(usize::MAX).min(request_calls.len());
        for (number, &call) in request_calls.iter().enumerate().take(call_limit) {
            for &failure in Failure::for_op(call.op()) {
                let plan = Plan {
                    call: number,
                    failure,
                };
                exploration.runs += 1;
                exploration.fault_points += 1;
                let kind = format!("{failure:?} on {:?}", call.op());
                *exploration.by_failure.entry(kind).or_default() += 1;
                let mut run = Run::new(scenario, profile)?;
                let step = requests[request];
                if let Err(what) = run.play_faulted(step, call, plan)? {
                    let mut found = finding(scenario, profile, &run, step, Some(plan), what);
                    found.request = request;
                    found.call = Some(call);
                    exploration.findings.push(found);
                }
            }
        }
    }
    Ok(())
}

fn finding(
    scenario: &Scenario,
    profile: Profile,
    run: &Run,
    step: usize,
    plan: Option<Plan>,
    what: String,
) -> Finding {
    let label = match run.steps.get(step) {
        Some(Step::Request { label, .. }) => label.clone(),
        _ => "spool setup".to_string(),
    };
    Finding {
        scenario: scenario.name.clone(),
        profile,
        request: step,
        label,
        call: None,
        plan,
        what,
    }
}

/// The model of a fault an injected failure of `call` stands for.
fn model_fault(call: Call, failure: Failure) -> Fault {
    match (failure, call.op()) {
        (Failure::Crash, _) | (_, Op::Other) => Fault::Crash,
        (_, Op::Open) => Fault::Fails(model_faults::Op::Open),
        (_, Op::Write) => Fault::Fails(model_faults::Op::Write),
        (_, Op::Rename) => Fault::Fails(model_faults::Op::Rename),
    }
}

/// One play of a scenario: the model, the target, and the steps.
struct Run {
    model: Model,
    target: FaultTarget,
    steps: Vec<Step>,
    last_calls: Vec<Call>,
}

impl Run {
    fn new(scenario: &Scenario, profile: Profile) -> anyhow::Result<Run> {
        let target = FaultTarget::new(&scenario.config, profile)?;
        let config = target.config.clone();
        let tables = Tables {
            files: scenario
                .config
                .files
                .iter()
                .map(|(name, content)| {
                    (
                        format!("{}/{name}", config.config_directory),
                        content.clone(),
                    )
                })
                .collect(),
        };
        let model = Model::new(&config, tables.clone(), profile);
        let client = Client::new(&config, tables);
        Ok(Run {
            model,
            target,
            steps: steps(scenario, &client),
            last_calls: Vec::new(),
        })
    }

    /// The step numbers of the requests.
    fn requests(&self) -> Vec<usize> {
        let is_request =
            |(index, step): (usize, &Step)| matches!(step, Step::Request { .. }).then_some(index);
        self.steps
            .iter()
            .enumerate()
            .filter_map(is_request)
            .collect()
    }

    /// Plays step `index` on both sides without a fault; a difference is
    /// the inner error.
    fn play_clean(&mut self, index: usize) -> anyhow::Result<Result<(), String>> {
        let step = self.steps[index].clone();
        let Step::Request { input, now, .. } = &step else {
            self.environment(&step)?;
            return Ok(self.compare_spools());
        };
        let order = self.target.flush_dir_order()?;
        let expected = self.model.connect(input, *now, &order).exchange;
        let (got, calls) = self.target.connect(input, *now, None)?;
        self.last_calls = calls;
        if got != expected {
            let spool = self.target.observe()?;
            return Ok(Err(format!(
                "without a fault: the model said {}, the target did {}",
                show(&expected, &self.model.observe()),
                show(&got, &spool)
            )));
        }
        Ok(self.compare_spools())
    }

    /// Plays the scenario with `plan` failing in step `faulted`.
    fn play_faulted(
        &mut self,
        faulted: usize,
        call: Call,
        plan: Plan,
    ) -> anyhow::Result<Result<(), String>> {
        for index in 0..self.steps.len() {
            if index != faulted {
                if let Err(what) = self.play_clean(index)? {
                    let when = if index < faulted { "before" } else { "after" };
                    return Ok(Err(format!("{when} the fault: {what}")));
                }
                continue;
            }
            let Step::Request { input, now, .. } = self.steps[index].clone() else {
                continue;
            };
            let before = self.target.observe()?;
            let order = self.target.flush_dir_order()?;
            let fault = model_fault(call, plan.failure);
            let outcomes = self.model.fault_outcomes(&input, now, &order, fault);
            let (got, _) = self.target.connect(&input, now, Some(plan))?;
            let after = self.target.observe()?;

            let Some(outcome) = outcomes.iter().find(|o| o.accepts(&got, &after)) else {
                let hows: Vec<&str> = outcomes.iter().map(|o| o.how.as_str()).collect();
                return Ok(Err(format!(
                    "an outcome the model does not accept ({fault:?}): {}; the model accepts \
                     {} outcome(s): {hows:?}",
                    show(&got, &after),
                    outcomes.len()
                )));
            };
            if self.model.profile() == Profile::Strict {
                let violations = invariants::check_request(&before, &after, &input, now);
                if let Some(v) = violations.first() {
                    return Ok(Err(format!("strict invariant {}: {}", v.invariant, v.what)));
                }
            }
            self.model = outcome.adopt(&after);
        }
        Ok(Ok(()))
    }

    fn environment(&mut self, step: &Step) -> anyhow::Result<()> {
        match step {
            Step::Request { .. } => {}
            Step::WriteLogfile {
                name,
                content,
                mode,
                atime,
                mtime,
            } => {
                self.model
                    .write_logfile(name, content, *mode, *atime, *mtime);
                self.target
                    .service
                    .write_logfile(name, content, *mode, *atime, *mtime)
                    .with_context(|| format!("writing logfile {name}"))?;
            }
            Step::RemoveLogfile(name) => {
                self.model.remove_logfile(name);
                self.target.service.remove_logfile(name)?;
            }
            Step::PlantQueueFile {
                id,
                queue,
                mode,
                atime,
                mtime,
            } => {
                self.model
                    .plant_queue_file(id, *queue, *mode, *atime, *mtime);
                self.target.service.remove_queue_file(id)?;
                self.target
                    .service
                    .plant_queue_file(id, *queue, *mode, *atime, *mtime)
                    .with_context(|| format!("planting queue file {id}"))?;
            }
            Step::RemoveQueueFile(id) => {
                self.model.remove_queue_file(id);
                self.target.service.remove_queue_file(id)?;
            }
        }
        Ok(())
    }

    fn compare_spools(&mut self) -> Result<(), String> {
        let expected = self.model.observe();
        match self.target.observe() {
            Ok(got) if got == expected => Ok(()),
            Ok(got) => Err(format!(
                "the spools differ: the model's {}, the target's {}",
                show_spool(&expected),
                show_spool(&got)
            )),
            Err(e) => Err(format!("observing the target: {e:#}")),
        }
    }
}

/// The steps of a scenario that the exploration plays, in order.
fn steps(scenario: &Scenario, client: &Client) -> Vec<Step> {
    use flushbed_vocab::wire;

    let mut steps = Vec::new();
    for l in &scenario.logfiles {
        steps.push(Step::WriteLogfile {
            name: l.name.clone(),
            content: l.content.clone(),
            mode: l.mode,
            atime: l.atime,
            mtime: l.mtime,
        });
    }
    for q in &scenario.queue_files {
        steps.push(Step::PlantQueueFile {
            id: q.id.clone(),
            queue: q.queue,
            mode: q.mode,
            atime: q.atime,
            mtime: q.mtime,
        });
    }
    for event in &scenario.events {
        let now = event.time;
        let request = |input: Vec<u8>| Step::Request {
            input,
            now,
            label: format!(
                "event {} ({}), line {}",
                event.index,
                event.action.kind(),
                event.line
            ),
        };
        let command = |command: Command| match clients::begin(client, &command) {
            Begun::Send { request: input, .. } => Some(request(input)),
            Begun::Done { .. } => None,
        };
        let step = match &event.action {
            Action::Add { site, queue_id } => Some(request(wire::add_request(site, queue_id))),
            Action::SendSite { site } => Some(request(wire::send_site_request(site))),
            Action::SendFile { queue_id } => Some(request(wire::send_file_request(queue_id))),
            Action::Refresh => Some(request(wire::refresh_request())),
            Action::Purge => Some(request(wire::purge_request())),
            Action::Wakeup => Some(request(wire::wakeup_trigger())),
            Action::Request { wire } => Some(request(wire.clone())),
            Action::Etrn {
                args,
                helo,
                in_transaction,
            } => command(Command::Etrn {
                args: args.clone(),
                session: flushbed_model::client::EtrnSession {
                    helo_seen: *helo,
                    in_transaction: *in_transaction,
                },
            }),
            Action::PostqueueS { site } => command(Command::PostqueueSite { site: site.clone() }),
            Action::PostqueueI { queue_id } => command(Command::PostqueueFile {
                queue_id: queue_id.clone(),
            }),
            Action::FlushRefresh => command(Command::LibraryRefresh),
            Action::FlushPurge => command(Command::LibraryPurge),
            Action::Submit { id, .. } => Some(Step::PlantQueueFile {
                id: id
                    .clone()
                    .unwrap_or_else(|| format!("F{:05X}", event.index)),
                queue: QueueName::Incoming,
                mode: 0o700,
                atime: now,
                mtime: now,
            }),
            Action::WriteLogfile(l) => Some(Step::WriteLogfile {
                name: l.name.clone(),
                content: l.content.clone(),
                mode: l.mode,
                atime: l.atime,
                mtime: l.mtime,
            }),
            Action::RemoveLogfile { name } => Some(Step::RemoveLogfile(name.clone())),
            Action::PlantQueueFile(q) => Some(Step::PlantQueueFile {
                id: q.id.clone(),
                queue: q.queue,
                mode: q.mode,
                atime: q.atime,
                mtime: q.mtime,
            }),
            Action::RemoveQueueFile { id } => Some(Step::RemoveQueueFile(id.clone())),
            Action::Site { .. } | Action::PostqueueF | Action::Advance | Action::Check => None,
        };
        steps.extend(step);
    }
    steps
}

/// flushbed's implementation on a temporary spool, every file operation
/// through a [`FaultFs`].
struct FaultTarget {
    _root: tempfile::TempDir,
    queue_dir: PathBuf,
    config: FlushConfig,
    profile: Profile,
    clock: ManualClock,
    sink: RecordingSink,
    faults: Faults,
    service: FlushService<FaultFs<RealFs>>,
}

impl FaultTarget {
    fn new(spec: &ConfigSpec, profile: Profile) -> anyhow::Result<FaultTarget> {
        let root = spool_root()?;
        let config_dir = root.path().join("config");
        let queue_dir = root.path().join("spool");
        fs::create_dir_all(&config_dir)?;
        fs::create_dir_all(queue_dir.join("flush"))?;

        let config = crate::target::install_config(spec, &config_dir, &queue_dir)?;

        let clock = ManualClock::new(0);
        let sink = RecordingSink::default();
        let faults = Faults::default();
        let service = start(&config, profile, &clock, &sink, &faults)?;
        Ok(FaultTarget {
            _root: root,
            queue_dir,
            config,
            profile,
            clock,
            sink,
            faults,
            service,
        })
    }

    /// One connection, with `plan` failing one of its calls; the calls it
    /// made come back with what the client and the queue manager saw.
    fn connect(
        &mut self,
        input: &[u8],
        now: Time,
        plan: Option<Plan>,
    ) -> anyhow::Result<(Exchange, Vec<Call>)> {
        self.clock.set(now);
        self.faults.begin_request(plan);
        let mut client = MemoryConnection::new(input);
        let end = {
            let mut dying = DyingConnection::new(&mut client, self.faults.clone());
            self.service.serve_connection(&mut dying)
        };
        let died = self.faults.crashed() || matches!(end, ConnectionEnd::Fatal(_));
        let calls = self.faults.calls();

        // The master starts a fresh process on the same spool.
        self.faults.begin_request(None);
        if died {
            self.service = start(
                &self.config,
                self.profile,
                &self.clock,
                &self.sink,
                &self.faults,
            )?;
        }
        let exchange = Exchange {
            output: client.output,
            triggers: self.sink.take(),
            died,
        };
        Ok((exchange, calls))
    }

    fn observe(&self) -> anyhow::Result<SpoolState> {
        Ok(observe::observe(&self.queue_dir)?)
    }

    fn flush_dir_order(&self) -> anyhow::Result<Vec<String>> {
        Ok(observe::flush_dir_order(&self.queue_dir)?)
    }
}

/// Where a run's spool goes: memory, when the machine has a writable
/// `/dev/shm`. An exploration makes and removes thousands of spools, and a
/// disk file system spends most of the run on those directories.
fn spool_root() -> anyhow::Result<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("flushbed-faults.");
    if let Ok(root) = builder.tempdir_in("/dev/shm") {
        return Ok(root);
    }
    Ok(builder.tempdir()?)
}

fn start(
    config: &FlushConfig,
    profile: Profile,
    clock: &ManualClock,
    sink: &RecordingSink,
    faults: &Faults,
) -> anyhow::Result<FlushService<FaultFs<RealFs>>> {
    let fs = FaultFs::new(RealFs, faults.clone());
    let triggers = DyingSink::new(sink.clone(), faults.clone());
    FlushService::with_fs(
        fs,
        config,
        profile,
        Arc::new(clock.clone()),
        Arc::new(triggers),
    )
    .context("starting the flush service")
}

/// An exchange and a spool, for a person to read.
fn show(exchange: &Exchange, spool: &SpoolState) -> String {
    let output = exchange
        .output
        .strip_prefix(b"protocol\0queue_flush_protocol\0\0".as_slice());
    format!(
        "reply \"{}\", triggers {:?}, died {}, {}",
        output.unwrap_or(&exchange.output).escape_ascii(),
        exchange.triggers,
        exchange.died,
        show_spool(spool)
    )
}

fn show_spool(spool: &SpoolState) -> String {
    let logfiles: Vec<String> = spool
        .logfiles
        .iter()
        .map(|(name, l)| {
            let content = l.content.escape_ascii();
            format!(
                "{name}=\"{content}\" {:o} a{} m{}",
                l.mode, l.atime, l.mtime
            )
        })
        .collect();
    let queue_files: Vec<String> = spool
        .queue_files
        .iter()
        .map(|(path, q)| format!("{path} {:o} a{} m{}", q.mode, q.atime, q.mtime))
        .collect();
    format!(
        "logfiles [{}], queue files [{}]",
        logfiles.join(", "),
        queue_files.join(", ")
    )
}
