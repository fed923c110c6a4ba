//! The lockstep runner: plays a scenario against the reference model and a
//! target at once, and stops at the first difference.
//!
//! For each profile of a scenario, a fresh model and a fresh target start
//! from the same configuration and the same initial spool. Then every event
//! happens in time order, and what happens on its own in between (the queue
//! manager's deferred scans every `queue_run_delay`, the master's wakeups of
//! the flush service) happens in time order too; work due at an event's own
//! time happens before the event. After *every* step, each event, each
//! `add` the queue manager's delivery agents make, each wakeup and each
//! queue file the queue manager moves, the runner compares:
//!
//! - the exchange: the bytes the server wrote, the triggers it sent (as a
//!   multiset for a refresh, a purge or a wakeup, whose order is the
//!   directory's), and whether the process died;
//! - what the client shows (the `ETRN` reply, `postqueue`'s exit and error);
//! - the whole spool: every logfile's bytes, mode, atime and mtime, and
//!   every queue file's path, mode, atime and mtime.
//!
//! The spool is compared where it can have changed: the files the model's
//! spool marks as changed by the step, together with every path the
//! target's file layer named (a target that records them, the spool
//! target); the two spools agreed before the step, so the rest still
//! agrees. A file the target changed where no rule says it should is among
//! the paths its file layer named, so it is compared all the same. The
//! whole spool is compared after the setup, after every
//! [`WHOLE_COMPARISON_EVERY`]th event and after the last one, and after
//! every step against a target that cannot say what it touched.
//!
//! The model is the reference: the queue manager reads where files are from
//! the model's spool, and the triggers it acts on are the model's (they
//! have just been found equal to the target's). An event's own `expect`
//! table is checked against the model after the event; an unmet expectation
//! stops the run like a divergence, naming the expectation.

use std::collections::{BTreeMap, HashMap, VecDeque};

use anyhow::Context;
use flushbed_model::client::{Client, EtrnSession};
use flushbed_model::{Model, Tables};
use flushbed_vocab::{Exchange, Profile, QueueName, SpoolState, Status, Time, Trigger};
use serde::Serialize;

use crate::clients::{self, Begun, ClientResult, Command};
use crate::escape;
use crate::invariants;
use crate::observe::{Partial, Paths};
use crate::qmgr::{Message, QmgrTimers, QueueManager, World};
use crate::scenario::{Action, Event, Expect, ExpectedStatus, ExpectedTimes, Scenario, Wakeup};
use crate::target::{SpoolTarget, Target};

/// What the flush server writes when a client connects, before anything
/// else: the protocol announcement.
pub const ANNOUNCEMENT: &[u8] = b"protocol\0queue_flush_protocol\0\0";

/// Between the steps' comparisons of what changed, the whole spool is
/// compared after every this many events (and after the last), so that a
/// change neither side accounted for cannot go unseen for long.
pub const WHOLE_COMPARISON_EVERY: usize = 16;

/// The kinds of target the runner can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// flushbed's implementation in process, on a temporary spool.
    Spool,
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Spool => "spool",
        }
    }

    /// A fresh target of this kind for one run of a scenario.
    pub fn build(self, scenario: &Scenario, profile: Profile) -> anyhow::Result<Box<dyn Target>> {
        match self {
            TargetKind::Spool => Ok(Box::new(SpoolTarget::new(&scenario.config, profile)?)),
        }
    }
}

impl std::str::FromStr for TargetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spool" => Ok(TargetKind::Spool),
            other => Err(format!("unknown target \"{other}\": expected spool")),
        }
    }
}

/// The result of one scenario in one profile against one target.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub file: String,
    pub summary: String,
    pub profile: Profile,
    pub target: String,
    /// How many events ran to the end (all of them when it passed).
    pub events_run: usize,
    pub outcome: Outcome,
}

impl ScenarioResult {
    pub fn passed(&self) -> bool {
        matches!(self.outcome, Outcome::Pass | Outcome::Skipped { .. })
    }
}

/// How a run ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    /// The scenario does not apply to this target.
    Skipped {
        why: String,
    },
    /// The target did something the model did not.
    Diverged(Report),
    /// The model did not do what the scenario expects.
    ExpectationFailed(Report),
    /// The run could not go on (a target that could not be set up or
    /// observed).
    Error {
        why: String,
    },
}

/// Where a run stopped and what differed.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub file: String,
    /// The event, or none when the initial spool already differed.
    pub event: Option<EventRef>,
    /// The virtual time, seconds since the epoch.
    pub time: Time,
    /// The same time, from the scenario's start.
    pub offset: i64,
    /// The step within the event (its request, an `add` made by the queue
    /// manager, a wakeup, a queue file moved).
    pub step: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<Difference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unmet: Vec<Unmet>,
}

/// One event, as a report names it.
#[derive(Debug, Clone, Serialize)]
pub struct EventRef {
    pub index: usize,
    pub line: usize,
    pub kind: String,
}

/// One field that differs between the model and the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub field: String,
    pub model: String,
    pub target: String,
}

/// One expectation the model did not meet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unmet {
    /// `expect.logfiles.example_com`, with the line of the table.
    pub expectation: String,
    pub line: usize,
    pub expected: String,
    pub model: String,
}

/// One line of a run's story, for the narration.
#[derive(Debug, Clone)]
pub enum TraceLine {
    /// A connection to the flush server.
    Exchange {
        label: String,
        input: Vec<u8>,
        exchange: Exchange,
        notes: Vec<(String, String)>,
    },
    /// What a client showed.
    Client(ClientResult),
    /// Something the simulator or the queue manager did.
    Note(String),
}

/// One event's story.
#[derive(Debug, Clone)]
pub struct TraceEvent {
    /// `None` for the setup.
    pub event: Option<Event>,
    /// What happened on its own before the event.
    pub meanwhile: Vec<TraceLine>,
    pub lines: Vec<TraceLine>,
    /// The model's spool after the event.
    pub state: SpoolState,
}

/// Runs one scenario in one profile against a fresh target of `kind`.
pub fn run(scenario: &Scenario, profile: Profile, kind: TargetKind) -> ScenarioResult {
    run_traced(scenario, profile, kind, None)
}

/// As [`run`], keeping the story of the run in `trace`.
pub fn run_traced(
    scenario: &Scenario,
    profile: Profile,
    kind: TargetKind,
    trace: Option<&mut Vec<TraceEvent>>,
) -> ScenarioResult {
    if !scenario.applies_to(kind.name()) {
        return result(
            scenario,
            profile,
            kind.name(),
            0,
            Outcome::Skipped {
                why: format!("the scenario does not apply to the {} target", kind.name()),
            },
        );
    }
    match kind.build(scenario, profile) {
        Ok(mut target) => run_against(scenario, target.as_mut(), trace),
        Err(e) => result(
            scenario,
            profile,
            kind.name(),
            0,
            Outcome::Error {
                why: format!("{e:#}"),
            },
        ),
    }
}

/// Runs one scenario against a target that is already built (and perhaps
/// deliberately broken), in the target's profile.
pub fn run_against(
    scenario: &Scenario,
    target: &mut dyn Target,
    trace: Option<&mut Vec<TraceEvent>>,
) -> ScenarioResult {
    let profile = target.profile();
    let name = target.name();
    let mut run = match Run::new(scenario, target, trace.is_some()) {
        Ok(run) => run,
        Err(e) => {
            return result(
                scenario,
                profile,
                &name,
                0,
                Outcome::Error {
                    why: format!("{e:#}"),
                },
            )
        }
    };
    let outcome = match run.play() {
        Ok(()) => Outcome::Pass,
        Err(Stop::Diverged(report)) => Outcome::Diverged(*report),
        Err(Stop::Unmet(report)) => Outcome::ExpectationFailed(*report),
        Err(Stop::Error(e)) => Outcome::Error {
            why: format!("{e:#}"),
        },
    };
    let events_run = run.events_run;
    if let Some(trace) = trace {
        trace.append(&mut run.trace);
    }
    result(scenario, profile, &name, events_run, outcome)
}

fn result(
    scenario: &Scenario,
    profile: Profile,
    target: &str,
    events_run: usize,
    outcome: Outcome,
) -> ScenarioResult {
    ScenarioResult {
        scenario: scenario.name.clone(),
        file: scenario.file.clone(),
        summary: scenario.summary.clone(),
        profile,
        target: target.to_string(),
        events_run,
        outcome,
    }
}

/// Why a run stopped early.
enum Stop {
    Diverged(Box<Report>),
    Unmet(Box<Report>),
    Error(anyhow::Error),
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Stop {
        Stop::Error(e)
    }
}

/// The master's wakeup timer of the flush service.
#[derive(Debug, Clone, Copy)]
struct WakeupTimer {
    next: Option<Time>,
    /// An `N?` timer not yet started by a first use.
    waiting: bool,
    period: i64,
}

impl WakeupTimer {
    fn new(wakeup: Wakeup, start: Time) -> WakeupTimer {
        match wakeup {
            Wakeup::Never => WakeupTimer {
                next: None,
                waiting: false,
                period: 0,
            },
            Wakeup::Every(n) => WakeupTimer {
                next: Some(start + n),
                waiting: false,
                period: n,
            },
            Wakeup::AfterFirstUse(n) => WakeupTimer {
                next: None,
                waiting: true,
                period: n,
            },
        }
    }

    /// A client used the service: an `N?` timer starts, and as the master
    /// starts a wakeup timer, with one wakeup at once.
    fn used(&mut self, now: Time) {
        if std::mem::take(&mut self.waiting) {
            self.next = Some(now);
        }
    }

    fn fired(&mut self, now: Time) {
        self.next = Some(now + self.period);
    }
}

/// What a step of a run is, for reports.
#[derive(Debug, Clone)]
enum StepKind {
    Request,
    Add { site: Vec<u8>, queue_id: String },
    Wakeup,
    Spool(String),
}

impl StepKind {
    fn describe(&self) -> String {
        match self {
            StepKind::Request => "the event's flush request".to_string(),
            StepKind::Add { site, queue_id } => format!(
                "the queue manager's add of {queue_id} for site \"{}\"",
                escape::encode(site)
            ),
            StepKind::Wakeup => "the master's wakeup of the flush service".to_string(),
            StepKind::Spool(what) => what.clone(),
        }
    }
}

/// What the event's own flush request (if any) came to.
#[derive(Debug, Clone, Default)]
struct Primary {
    exchange: Option<Exchange>,
    order_free: bool,
    /// The status the client came to (a local refusal included).
    status: Option<Status>,
    client: Option<ClientResult>,
}

struct Run<'a> {
    scenario: &'a Scenario,
    target: &'a mut dyn Target,
    model: Model,
    client: Client,
    qmgr: Option<QueueManager>,
    /// The triggers the queue manager has yet to act on, batch by batch.
    pending: VecDeque<Vec<Trigger>>,
    /// The queue manager is out of its slot, acting.
    qmgr_busy: bool,
    /// The model's spool as last compared (and so the target's too).
    model_state: SpoolState,
    /// The model's spool as compared before the last flush connection, for
    /// the strict invariants.
    before_state: SpoolState,
    /// Where each queue file of `model_state` is, by queue ID.
    model_paths: HashMap<String, String>,
    /// Events since the whole spool was last compared.
    since_whole: usize,
    now: Time,
    wakeup: WakeupTimer,
    event: Option<&'a Event>,
    step: StepKind,
    adds: Vec<Vec<u8>>,
    generated_ids: u32,
    events_run: usize,
    tracing: bool,
    trace: Vec<TraceEvent>,
    lines: Vec<TraceLine>,
}

impl<'a> Run<'a> {
    fn new(
        scenario: &'a Scenario,
        target: &'a mut dyn Target,
        tracing: bool,
    ) -> anyhow::Result<Run<'a>> {
        let config = target.config().clone();
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
        let model = Model::new(&config, tables.clone(), target.profile());
        let client = Client::new(&config, tables);
        let qmgr = scenario.sim.queue_manager.then(|| {
            QueueManager::new(
                QmgrTimers::from_config(&config),
                &scenario.sim.sites,
                scenario.start,
            )
        });
        let model_state = model.observe();
        let before_state = model_state.clone();
        Ok(Run {
            scenario,
            target,
            model,
            client,
            qmgr,
            pending: VecDeque::new(),
            qmgr_busy: false,
            model_state,
            before_state,
            model_paths: HashMap::new(),
            since_whole: 0,
            now: scenario.start,
            wakeup: WakeupTimer::new(scenario.sim.flush_wakeup, scenario.start),
            event: None,
            step: StepKind::Spool("setting up the initial spool".to_string()),
            adds: Vec::new(),
            generated_ids: 0,
            events_run: 0,
            tracing,
            trace: Vec::new(),
            lines: Vec::new(),
        })
    }

    fn play(&mut self) -> Result<(), Stop> {
        self.setup()?;
        let scenario = self.scenario;
        for event in &scenario.events {
            // What falls due before the event is reported under its name.
            self.event = Some(event);
            self.advance_to(event.time)?;
            let meanwhile = std::mem::take(&mut self.lines);
            self.adds.clear();
            self.step = StepKind::Request;
            if let Some(note) = &event.note {
                self.note(format!("note: {note}"));
            }

            let primary = self.perform(&event.action)?;
            if let Some(expect) = &event.expect {
                self.check_expectations(expect, &primary)?;
            }
            self.since_whole += 1;
            let last = self.events_run + 1 == scenario.events.len();
            if self.since_whole == WHOLE_COMPARISON_EVERY || last {
                let saved = std::mem::replace(
                    &mut self.step,
                    StepKind::Spool("the whole comparison of the spool after the event".into()),
                );
                if self.compare_whole()? {
                    self.settle(None);
                }
                self.step = saved;
            }
            self.events_run += 1;
            if self.tracing {
                let lines = std::mem::take(&mut self.lines);
                self.trace.push(TraceEvent {
                    event: Some(event.clone()),
                    meanwhile,
                    lines,
                    state: self.model_state.clone(),
                });
            }
        }
        Ok(())
    }

    /// The initial spool, on both sides.
    fn setup(&mut self) -> Result<(), Stop> {
        let scenario = self.scenario;
        for l in &scenario.logfiles {
            self.model
                .write_logfile(&l.name, &l.content, l.mode, l.atime, l.mtime);
            self.target
                .write_logfile(&l.name, &l.content, l.mode, l.atime, l.mtime)?;
        }
        for q in &scenario.queue_files {
            self.model
                .plant_queue_file(&q.id, q.queue, q.mode, q.atime, q.mtime);
            self.target
                .plant_queue_file(&q.id, q.queue, q.mode, q.atime, q.mtime)?;
            if let Some(qmgr) = &mut self.qmgr {
                if !q.recipients.is_empty() {
                    qmgr.know(&q.id, Message::new(&q.recipients, q.arrival, &q.sender));
                }
            }
        }
        self.compare_whole()?;
        self.settle(None);
        if self.tracing {
            let lines = std::mem::take(&mut self.lines);
            self.trace.push(TraceEvent {
                event: None,
                meanwhile: Vec::new(),
                lines,
                state: self.model_state.clone(),
            });
        }
        Ok(())
    }

    /// Moves the clock to `time`, doing what falls due on the way.
    fn advance_to(&mut self, time: Time) -> Result<(), Stop> {
        loop {
            let scan = self.qmgr.as_ref().map(QueueManager::next_deferred_scan);
            let wake = self.wakeup.next;
            let next = match (scan, wake) {
                (Some(s), Some(w)) => s.min(w),
                (Some(s), None) => s,
                (None, Some(w)) => w,
                (None, None) => break,
            };
            if next > time {
                break;
            }
            self.now = self.now.max(next);

            // At the same second, the queue manager's scan comes first.
            if scan == Some(next) {
                self.step = StepKind::Spool("the queue manager's periodic deferred scan".into());
                let mut qmgr = self
                    .qmgr
                    .take()
                    .ok_or_else(|| anyhow::anyhow!("no queue manager"))?;
                self.qmgr_busy = true;
                let done = qmgr.run_deferred_scan(self.now, self);
                self.qmgr = Some(qmgr);
                self.qmgr_busy = false;
                done?;
                self.drain_triggers()?;
            } else {
                self.wakeup.fired(self.now);
                self.step = StepKind::Wakeup;
                let exchange = self.exchange(&flushbed_vocab::wire::wakeup_trigger(), "wakeup")?;
                self.queue_triggers(exchange.triggers);
                self.drain_triggers()?;
            }
        }
        self.now = self.now.max(time);
        Ok(())
    }

    /// One event's own doing.
    fn perform(&mut self, action: &Action) -> Result<Primary, Stop> {
        use flushbed_vocab::wire;
        let mut primary = Primary::default();
        match action {
            Action::Submit {
                id,
                recipients,
                sender,
            } => {
                let id = match id {
                    Some(id) => id.clone(),
                    None => self.generate_id(),
                };
                self.note(format!("submit: message {id} arrives in incoming/"));
                self.step = StepKind::Spool(format!("planting the new message {id} in incoming/"));
                self.put_both(&id, QueueName::Incoming, 0o700, self.now, self.now)?;
                if let Some(qmgr) = &mut self.qmgr {
                    qmgr.know(&id, Message::new(recipients, self.now, sender));
                    self.step = StepKind::Spool("the queue manager's first attempt".into());
                    let mut qmgr = self.qmgr.take().ok_or_else(|| anyhow::anyhow!("no qmgr"))?;
                    self.qmgr_busy = true;
                    let done = qmgr.on_arrival(self.now, self);
                    self.qmgr = Some(qmgr);
                    self.qmgr_busy = false;
                    done?;
                    self.drain_triggers()?;
                }
            }
            Action::Site { site, up } => {
                let state = if *up { "up" } else { "down" };
                self.note(format!("site \"{}\" is now {state}", escape::encode(site)));
                if let Some(qmgr) = &mut self.qmgr {
                    qmgr.set_site(site, *up);
                }
            }
            Action::Etrn {
                args,
                helo,
                in_transaction,
            } => {
                let session = EtrnSession {
                    helo_seen: *helo,
                    in_transaction: *in_transaction,
                };
                primary = self.command(&Command::Etrn {
                    args: args.clone(),
                    session,
                })?;
            }
            Action::PostqueueS { site } => {
                primary = self.command(&Command::PostqueueSite { site: site.clone() })?;
            }
            Action::PostqueueI { queue_id } => {
                primary = self.command(&Command::PostqueueFile {
                    queue_id: queue_id.clone(),
                })?;
            }
            Action::PostqueueF => {
                self.note(
                    "postqueue -f: no flush request; the queue manager gets F, A, D, I".into(),
                );
                primary.client = Some(clients::postqueue_f_result());
                self.lines
                    .push(TraceLine::Client(clients::postqueue_f_result()));
                self.queue_triggers(clients::POSTQUEUE_F_TRIGGERS.to_vec());
                self.drain_triggers()?;
            }
            Action::Add { site, queue_id } => {
                primary = self.request(&wire::add_request(site, queue_id), "add")?;
            }
            Action::SendSite { site } => {
                primary = self.request(&wire::send_site_request(site), "send_site")?;
            }
            Action::SendFile { queue_id } => {
                primary = self.request(&wire::send_file_request(queue_id), "send_file")?;
            }
            Action::Refresh => primary = self.request(&wire::refresh_request(), "rfrsh")?,
            Action::FlushRefresh => primary = self.command(&Command::LibraryRefresh)?,
            Action::FlushPurge => primary = self.command(&Command::LibraryPurge)?,
            Action::Purge => primary = self.request(&wire::purge_request(), "purge")?,
            Action::Wakeup => {
                self.step = StepKind::Wakeup;
                primary = self.request(&wire::wakeup_trigger(), "wakeup")?;
            }
            Action::Request { wire } => primary = self.request(wire, "raw request")?,
            Action::Advance | Action::Check => {}
            Action::WriteLogfile(l) => {
                self.note(format!("logfile {} written as it is", l.name));
                self.step = StepKind::Spool(format!("writing logfile {}", l.name));
                self.model
                    .write_logfile(&l.name, &l.content, l.mode, l.atime, l.mtime);
                self.target
                    .write_logfile(&l.name, &l.content, l.mode, l.atime, l.mtime)?;
                self.compare_spool()?;
            }
            Action::RemoveLogfile { name } => {
                self.note(format!("logfile {name} removed"));
                self.step = StepKind::Spool(format!("removing logfile {name}"));
                self.model.remove_logfile(name);
                self.target.remove_logfile(name)?;
                self.compare_spool()?;
            }
            Action::PlantQueueFile(q) => {
                self.note(format!("queue file {} planted in {}/", q.id, q.queue));
                self.step = StepKind::Spool(format!("planting queue file {}", q.id));
                self.put_both(&q.id, q.queue, q.mode, q.atime, q.mtime)?;
                if let Some(qmgr) = &mut self.qmgr {
                    if q.recipients.is_empty() {
                        qmgr.forget(&q.id);
                    } else {
                        qmgr.know(&q.id, Message::new(&q.recipients, q.arrival, &q.sender));
                    }
                }
            }
            Action::RemoveQueueFile { id } => {
                self.note(format!("queue file {id} removed"));
                self.step = StepKind::Spool(format!("removing queue file {id}"));
                self.remove_both(id)?;
                if let Some(qmgr) = &mut self.qmgr {
                    qmgr.forget(id);
                }
            }
        }
        Ok(primary)
    }

    /// A flush request straight to the server.
    fn request(&mut self, input: &[u8], label: &str) -> Result<Primary, Stop> {
        let exchange = self.exchange(input, label)?;
        let primary = Primary {
            order_free: order_free(input),
            status: Some(clients::client_status(&exchange.output)),
            exchange: Some(exchange.clone()),
            client: None,
        };
        self.queue_triggers(exchange.triggers);
        self.drain_triggers()?;
        Ok(primary)
    }

    /// A client program, end to end.
    fn command(&mut self, command: &Command) -> Result<Primary, Stop> {
        let mut primary = Primary::default();
        match clients::begin(&self.client, command) {
            Begun::Done { result, status } => {
                self.note("the client decided without a flush request".to_string());
                self.lines.push(TraceLine::Client(result.clone()));
                primary.status = status;
                primary.client = Some(result);
            }
            Begun::Send { request, pending } => {
                let order = self.dir_order(&request)?;
                let step = self.model.connect(&request, self.now, &order);
                let got = self.target.connect(&request, self.now)?;
                self.after_connection(&request, &step, &got, "client request")?;

                // Each side's reply, as its client shows it.
                let model_status = clients::client_status(&step.exchange.output);
                let target_status = clients::client_status(&got.output);
                let model_result = clients::finish(&self.client, &pending, model_status);
                let target_result = clients::finish(&self.client, &pending, target_status);
                if model_result != target_result {
                    let mut differences = Vec::new();
                    let fields = [
                        ("client smtp reply", &model_result.smtp, &target_result.smtp),
                        ("client stderr", &model_result.stderr, &target_result.stderr),
                    ];
                    for (field, m, t) in fields {
                        if m != t {
                            differences.push(difference(field, show_opt(m), show_opt(t)));
                        }
                    }
                    if model_result.exit != target_result.exit {
                        differences.push(difference(
                            "client exit status",
                            format!("{:?}", model_result.exit),
                            format!("{:?}", target_result.exit),
                        ));
                    }
                    return Err(Stop::Diverged(Box::new(self.report(differences))));
                }
                self.lines.push(TraceLine::Client(model_result.clone()));
                primary = Primary {
                    exchange: Some(step.exchange.clone()),
                    order_free: order_free(&request),
                    status: Some(model_status),
                    client: Some(model_result),
                };
                self.queue_triggers(step.exchange.triggers);
                self.drain_triggers()?;
            }
        }
        Ok(primary)
    }

    /// One connection to both sides, compared.
    fn exchange(&mut self, input: &[u8], label: &str) -> Result<Exchange, Stop> {
        let order = self.dir_order(input)?;
        let step = self.model.connect(input, self.now, &order);
        let got = self.target.connect(input, self.now)?;
        self.after_connection(input, &step, &got, label)?;
        Ok(step.exchange)
    }

    fn after_connection(
        &mut self,
        input: &[u8],
        step: &flushbed_model::Step,
        got: &Exchange,
        label: &str,
    ) -> Result<(), Stop> {
        if !matches!(self.step, StepKind::Wakeup) {
            self.wakeup.used(self.now);
        }
        if self.tracing {
            self.lines.push(TraceLine::Exchange {
                label: label.to_string(),
                input: input.to_vec(),
                exchange: step.exchange.clone(),
                notes: step
                    .notes
                    .iter()
                    .map(|n| (n.rule.to_string(), n.text.clone()))
                    .collect(),
            });
        }
        let differences = compare_exchange(&step.exchange, got, order_free(input));
        if !differences.is_empty() {
            return Err(Stop::Diverged(Box::new(self.report(differences))));
        }
        let compared = self.compare_changed()?;
        self.check_strict_invariants(input)?;
        self.settle(compared);
        Ok(())
    }

    /// The entries of `flush/` in the target's order, for a request that
    /// walks them (a refresh, a purge, a trigger); the model reads the
    /// order for nothing else, so other requests are spared the listing.
    fn dir_order(&mut self, input: &[u8]) -> anyhow::Result<Vec<String>> {
        if order_free(input) {
            self.target.flush_dir_order()
        } else {
            Ok(Vec::new())
        }
    }

    /// The invariants of the strict profile (`crate::invariants`), on the
    /// spool before and after one flush connection.
    fn check_strict_invariants(&self, input: &[u8]) -> Result<(), Stop> {
        if self.model.profile() != Profile::Strict {
            return Ok(());
        }
        let before = &self.before_state;
        let violations = invariants::check_request(before, &self.model_state, input, self.now);
        if violations.is_empty() {
            return Ok(());
        }
        let differences = violations
            .into_iter()
            .map(|v| {
                difference(
                    &format!("strict invariant {}", v.invariant),
                    v.what,
                    "the same".into(),
                )
            })
            .collect();
        Err(Stop::Diverged(Box::new(self.report(differences))))
    }

    /// The spool, model against target, after a step.
    fn compare_spool(&mut self) -> Result<(), Stop> {
        let compared = self.compare_changed()?;
        self.settle(compared);
        Ok(())
    }

    /// Compares what the step can have changed, or the whole spool when
    /// either side cannot tell; says which files were compared (`None`:
    /// all of them).
    fn compare_changed(&mut self) -> Result<Option<Paths>, Stop> {
        let changes = self.model.take_changes();
        if !changes.all {
            let mut also = Paths {
                logfiles: changes.logfiles,
                queue_files: Default::default(),
            };

            // A queue file the model moved is compared where it was and
            // where it is.
            for queue_id in &changes.queue_files {
                if let Some(path) = self.model_paths.get(queue_id) {
                    also.queue_files.insert(path.clone());
                }
                if let Some((path, _)) = self.model.observe_queue_file(queue_id) {
                    also.queue_files.insert(path);
                }
            }
            let seen = self
                .target
                .observe_changed(&also)
                .context("observing the target's spool")?;
            if let Some(seen) = seen {
                return self.compare_partial(seen).map(Some);
            }
        }
        let changed = self.compare_whole()?;
        Ok((!changed).then(Paths::default))
    }

    /// The whole spool, model against target; says whether the model's
    /// spool differs from the one last compared.
    fn compare_whole(&mut self) -> Result<bool, Stop> {
        self.since_whole = 0;
        self.model.take_changes();
        let model = self.model.observe();
        let target = self
            .target
            .observe()
            .context("observing the target's spool")?;
        if model != target {
            let differences = compare_spools(&model, &target, self.scenario.start);
            return Err(Stop::Diverged(Box::new(self.report(differences))));
        }
        if model == self.model_state {
            return Ok(false);
        }
        self.model_paths = model
            .queue_files
            .keys()
            .map(|path| (queue_id_of(path).to_string(), path.clone()))
            .collect();
        self.model_state = model;
        Ok(true)
    }

    /// The files the target saw, each against the model's, and the model's
    /// spool brought up to date there; says which files were compared.
    fn compare_partial(&mut self, seen: Partial) -> Result<Paths, Stop> {
        let mut compared = Paths::default();
        let mut model_side = SpoolState::default();
        let mut target_side = SpoolState::default();
        let mut differ = false;
        for (name, target) in seen.logfiles {
            let model = self.model.observe_logfile(&name);
            differ |= model != target;
            if let Some(model) = model {
                model_side.logfiles.insert(name.clone(), model);
            }
            if let Some(target) = target {
                target_side.logfiles.insert(name.clone(), target);
            }
            compared.logfiles.insert(name);
        }
        for (path, target) in seen.queue_files {
            let model = self
                .model
                .observe_queue_file(queue_id_of(&path))
                .filter(|(at, _)| *at == path)
                .map(|(_, state)| state);
            differ |= model != target;
            if let Some(model) = model {
                model_side.queue_files.insert(path.clone(), model);
            }
            if let Some(target) = target {
                target_side.queue_files.insert(path.clone(), target);
            }
            compared.queue_files.insert(path);
        }
        if differ {
            let differences = compare_spools(&model_side, &target_side, self.scenario.start);
            return Err(Stop::Diverged(Box::new(self.report(differences))));
        }

        // Where the two agree, the model's side is the spool now.
        for name in &compared.logfiles {
            match model_side.logfiles.remove(name) {
                Some(state) => self.model_state.logfiles.insert(name.clone(), state),
                None => self.model_state.logfiles.remove(name),
            };
        }
        for path in &compared.queue_files {
            let queue_id = queue_id_of(path);
            match model_side.queue_files.remove(path) {
                Some(state) => {
                    self.model_state.queue_files.insert(path.clone(), state);
                    self.model_paths.insert(queue_id.to_string(), path.clone());
                }
                None => {
                    self.model_state.queue_files.remove(path);
                    if self.model_paths.get(queue_id) == Some(path) {
                        self.model_paths.remove(queue_id);
                    }
                }
            }
        }
        debug_assert_eq!(
            self.model_state,
            self.model.observe(),
            "the model's spool kept step by step"
        );
        Ok(compared)
    }

    /// The spool before the next flush connection is the one just compared.
    fn settle(&mut self, compared: Option<Paths>) {
        let Some(compared) = compared else {
            self.before_state = self.model_state.clone();
            return;
        };
        for name in compared.logfiles {
            match self.model_state.logfiles.get(&name) {
                Some(state) => self.before_state.logfiles.insert(name, state.clone()),
                None => self.before_state.logfiles.remove(&name),
            };
        }
        for path in compared.queue_files {
            match self.model_state.queue_files.get(&path) {
                Some(state) => self.before_state.queue_files.insert(path, *state),
                None => self.before_state.queue_files.remove(&path),
            };
        }
    }

    fn put_both(
        &mut self,
        id: &str,
        queue: QueueName,
        mode: u32,
        atime: Time,
        mtime: Time,
    ) -> Result<(), Stop> {
        self.model.plant_queue_file(id, queue, mode, atime, mtime);
        self.target
            .plant_queue_file(id, queue, mode, atime, mtime)?;
        self.compare_spool()
    }

    fn remove_both(&mut self, id: &str) -> Result<(), Stop> {
        self.model.remove_queue_file(id);
        self.target.remove_queue_file(id)?;
        self.compare_spool()
    }

    fn queue_triggers(&mut self, triggers: Vec<Trigger>) {
        // While the queue manager acts, it is out of its slot, but still there.
        if !triggers.is_empty() && (self.qmgr.is_some() || self.qmgr_busy) {
            self.pending.push_back(triggers);
        }
    }

    /// The queue manager acts on the triggers sent so far, and on those its
    /// own work makes the flush server send.
    fn drain_triggers(&mut self) -> Result<(), Stop> {
        if self.qmgr_busy {
            return Ok(());
        }
        while let Some(batch) = self.pending.pop_front() {
            let Some(mut qmgr) = self.qmgr.take() else {
                self.pending.clear();
                return Ok(());
            };
            let saved = std::mem::replace(
                &mut self.step,
                StepKind::Spool("the queue manager's work after a trigger".into()),
            );
            self.qmgr_busy = true;
            let done = qmgr.on_triggers(&batch, self.now, self);
            self.qmgr = Some(qmgr);
            self.qmgr_busy = false;
            self.step = saved;
            done?;
        }
        Ok(())
    }

    fn generate_id(&mut self) -> String {
        self.generated_ids += 1;
        // Postfix's short queue IDs are upper-case hex; these stay unique
        // within a run and look the part.
        format!(
            "{:05X}{:05X}",
            (self.now as u64) & 0xF_FFFF,
            self.generated_ids
        )
    }

    fn note(&mut self, text: String) {
        if self.tracing {
            self.lines.push(TraceLine::Note(text));
        }
    }

    fn report(&self, differences: Vec<Difference>) -> Report {
        Report {
            file: self.scenario.file.clone(),
            event: self.event.map(|e| EventRef {
                index: e.index,
                line: e.line,
                kind: e.action.kind().to_string(),
            }),
            time: self.now,
            offset: self.now - self.scenario.start,
            step: self.step.describe(),
            differences,
            unmet: Vec::new(),
        }
    }

    /// The event's `expect` table, against the model.
    fn check_expectations(&mut self, expect: &Expect, primary: &Primary) -> Result<(), Stop> {
        let start = self.scenario.start;
        let mut unmet = Vec::new();
        let mut miss = |key: String, expected: String, model: String| {
            unmet.push(Unmet {
                expectation: format!("expect.{key}"),
                line: expect.line,
                expected,
                model,
            });
        };
        let no_request = "no flush request was made".to_string();

        if let Some(want) = expect.status {
            let got = match (&primary.exchange, primary.status) {
                (Some(x), _) if Client::decode_reply(&x.output).is_none() => {
                    Some(ExpectedStatus::NoReply)
                }
                (_, Some(status)) => Some(ExpectedStatus::Status(status)),
                (_, None) => None,
            };
            if got != Some(want) {
                miss(
                    "status".into(),
                    show_status(Some(want)),
                    got.map_or(no_request.clone(), |g| show_status(Some(g))),
                );
            }
        }
        if let Some(want) = &expect.reply {
            match &primary.exchange {
                Some(x) => {
                    let reply = x.output.strip_prefix(ANNOUNCEMENT).unwrap_or(&x.output);
                    if reply != want.as_slice() {
                        miss("reply".into(), show_bytes(want), show_bytes(reply));
                    }
                }
                None => miss("reply".into(), show_bytes(want), no_request.clone()),
            }
        }
        if let Some(want) = &expect.triggers {
            let got = primary
                .exchange
                .as_ref()
                .map(|x| x.triggers.clone())
                .unwrap_or_default();
            let same = if primary.order_free {
                sorted(want.clone()) == sorted(got.clone())
            } else {
                *want == got
            };
            if !same {
                miss("triggers".into(), show_triggers(want), show_triggers(&got));
            }
        }
        if let Some(want) = expect.died {
            let got = primary.exchange.as_ref().is_some_and(|x| x.died);
            if want != got {
                miss("died".into(), want.to_string(), got.to_string());
            }
        }
        let client = primary.client.clone().unwrap_or_default();
        if let Some(want) = &expect.smtp {
            if client.smtp.as_ref() != Some(want) {
                miss("smtp".into(), format!("{want:?}"), show_opt(&client.smtp));
            }
        }
        if let Some(want) = expect.exit {
            if client.exit != Some(want) {
                miss(
                    "exit".into(),
                    want.to_string(),
                    format!("{:?}", client.exit),
                );
            }
        }
        if let Some(want) = &expect.stderr {
            if client.stderr.as_ref() != Some(want) {
                miss(
                    "stderr".into(),
                    format!("{want:?}"),
                    show_opt(&client.stderr),
                );
            }
        }

        let state = &self.model_state;
        for (name, want) in &expect.logfiles {
            let got = state.logfiles.get(name).map(|l| l.content.clone());
            if *want != got {
                let show = |v: &Option<Vec<u8>>| {
                    v.as_ref().map_or("absent".to_string(), |b| show_bytes(b))
                };
                miss(format!("logfiles.{name}"), show(want), show(&got));
            }
        }
        for (name, want) in &expect.logfile_times {
            match state.logfiles.get(name) {
                None => miss(
                    format!("logfile_times.{name}"),
                    show_times(want, start),
                    "absent".into(),
                ),
                Some(l) => {
                    let got = ExpectedTimes {
                        atime: Some(l.atime),
                        mtime: Some(l.mtime),
                        mode: Some(l.mode),
                    };
                    check_times(
                        &mut miss,
                        &format!("logfile_times.{name}"),
                        want,
                        &got,
                        start,
                    );
                }
            }
        }
        for (id, want) in &expect.queue {
            let got = state.find_queue_file(id).map(|(queue, _, _)| queue);
            if *want != got {
                let show =
                    |q: &Option<QueueName>| q.map_or("in no queue".to_string(), |q| q.to_string());
                miss(format!("queue.{id}"), show(want), show(&got));
            }
        }
        for (id, want) in &expect.queue_times {
            match state.find_queue_file(id) {
                None => miss(
                    format!("queue_times.{id}"),
                    show_times(want, start),
                    "in no queue".into(),
                ),
                Some((_, _, q)) => {
                    let got = ExpectedTimes {
                        atime: Some(q.atime),
                        mtime: Some(q.mtime),
                        mode: Some(q.mode),
                    };
                    check_times(&mut miss, &format!("queue_times.{id}"), want, &got, start);
                }
            }
        }
        if let Some(want) = &expect.adds {
            if *want != self.adds {
                let show = |v: &[Vec<u8>]| {
                    format!(
                        "[{}]",
                        v.iter()
                            .map(|a| show_bytes(a))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                miss("adds".into(), show(want), show(&self.adds));
            }
        }

        if unmet.is_empty() {
            return Ok(());
        }
        let mut report = self.report(Vec::new());
        report.step = "the event's expectations".to_string();
        report.unmet = unmet;
        Err(Stop::Unmet(Box::new(report)))
    }
}

impl World for Run<'_> {
    type Error = Stop;

    fn spool(&self) -> &SpoolState {
        &self.model_state
    }

    fn put_queue_file(
        &mut self,
        queue_id: &str,
        queue: QueueName,
        mode: u32,
        atime: Time,
        mtime: Time,
    ) -> Result<(), Stop> {
        let saved = std::mem::replace(
            &mut self.step,
            StepKind::Spool(format!("the queue manager moving {queue_id} to {queue}/")),
        );
        self.put_both(queue_id, queue, mode, atime, mtime)?;
        self.step = saved;
        Ok(())
    }

    fn remove_queue_file(&mut self, queue_id: &str) -> Result<(), Stop> {
        let saved = std::mem::replace(
            &mut self.step,
            StepKind::Spool(format!("the queue manager removing {queue_id}")),
        );
        self.remove_both(queue_id)?;
        self.step = saved;
        Ok(())
    }

    fn deferred(&mut self, site: &[u8], queue_id: &str) -> Result<(), Stop> {
        match self.client.flush_add(site, queue_id.as_bytes()) {
            flushbed_model::client::LocalDecision::Send(request) => {
                let mut add = site.to_vec();
                add.push(b' ');
                add.extend_from_slice(queue_id.as_bytes());
                self.adds.push(add);
                let saved = std::mem::replace(
                    &mut self.step,
                    StepKind::Add {
                        site: site.to_vec(),
                        queue_id: queue_id.to_string(),
                    },
                );
                let exchange = self.exchange(&request, "add (queue manager)")?;
                self.step = saved;
                self.queue_triggers(exchange.triggers);
                Ok(())
            }
            flushbed_model::client::LocalDecision::Refuse(status) => {
                self.note(format!(
                    "flush_add for \"{}\" {queue_id} refused by the client library: {}",
                    escape::encode(site),
                    status.name()
                ));
                Ok(())
            }
        }
    }

    fn note(&mut self, text: String) {
        Run::note(self, text);
    }
}

/// Whether a request's triggers come in directory order (so are compared
/// as a multiset): a refresh, a purge, or a trigger such as the wakeup.
fn order_free(input: &[u8]) -> bool {
    input.len() <= 2
        || input.starts_with(b"request\0rfrsh\0")
        || input.starts_with(b"request\0purge\0")
}

/// The queue ID a queue file's path ends in.
fn queue_id_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn sorted(mut triggers: Vec<Trigger>) -> Vec<Trigger> {
    triggers.sort();
    triggers
}

fn difference(field: &str, model: String, target: String) -> Difference {
    Difference {
        field: field.to_string(),
        model,
        target,
    }
}

/// The fields of two exchanges that differ.
pub fn compare_exchange(model: &Exchange, target: &Exchange, order_free: bool) -> Vec<Difference> {
    let mut differences = Vec::new();
    if model.output != target.output {
        differences.push(difference(
            "output",
            show_bytes(&model.output),
            show_bytes(&target.output),
        ));
    }
    let same_triggers = if order_free {
        sorted(model.triggers.clone()) == sorted(target.triggers.clone())
    } else {
        model.triggers == target.triggers
    };
    if !same_triggers {
        let field = if order_free {
            "triggers (any order)"
        } else {
            "triggers"
        };
        differences.push(difference(
            field,
            show_triggers(&model.triggers),
            show_triggers(&target.triggers),
        ));
    }
    if model.died != target.died {
        differences.push(difference(
            "died",
            model.died.to_string(),
            target.died.to_string(),
        ));
    }
    differences
}

/// The fields of two spools that differ, file by file.
pub fn compare_spools(model: &SpoolState, target: &SpoolState, start: Time) -> Vec<Difference> {
    let mut differences = Vec::new();
    let absent = || "absent".to_string();

    let names: std::collections::BTreeSet<&String> = model
        .logfiles
        .keys()
        .chain(target.logfiles.keys())
        .collect();
    for name in names {
        match (model.logfiles.get(name), target.logfiles.get(name)) {
            (Some(m), Some(t)) => {
                let field = |what: &str| format!("logfile {name}: {what}");
                if m.content != t.content {
                    differences.push(difference(
                        &field("content"),
                        show_bytes(&m.content),
                        show_bytes(&t.content),
                    ));
                }
                if m.mode != t.mode {
                    differences.push(difference(
                        &field("mode"),
                        format!("{:#o}", m.mode),
                        format!("{:#o}", t.mode),
                    ));
                }
                if m.atime != t.atime {
                    differences.push(difference(
                        &field("atime"),
                        show_time(m.atime, start),
                        show_time(t.atime, start),
                    ));
                }
                if m.mtime != t.mtime {
                    differences.push(difference(
                        &field("mtime"),
                        show_time(m.mtime, start),
                        show_time(t.mtime, start),
                    ));
                }
            }
            (m, t) => {
                let show = |l: Option<&flushbed_vocab::LogfileState>| {
                    l.map_or_else(absent, |l| format!("present, {}", show_bytes(&l.content)))
                };
                differences.push(difference(&format!("logfile {name}"), show(m), show(t)));
            }
        }
    }

    let paths: std::collections::BTreeSet<&String> = model
        .queue_files
        .keys()
        .chain(target.queue_files.keys())
        .collect();
    for path in paths {
        let show = |q: Option<&flushbed_vocab::QueueFileState>| {
            q.map_or_else(absent, |q| {
                format!(
                    "mode {:#o}, atime {}, mtime {}",
                    q.mode,
                    show_time(q.atime, start),
                    show_time(q.mtime, start)
                )
            })
        };
        let (m, t) = (model.queue_files.get(path), target.queue_files.get(path));
        if m != t {
            differences.push(difference(&format!("queue file {path}"), show(m), show(t)));
        }
    }
    differences
}

fn check_times(
    miss: &mut impl FnMut(String, String, String),
    key: &str,
    want: &ExpectedTimes,
    got: &ExpectedTimes,
    start: Time,
) {
    let pairs = [
        ("atime", want.atime, got.atime),
        ("mtime", want.mtime, got.mtime),
    ];
    for (what, w, g) in pairs {
        if let (Some(w), Some(g)) = (w, g) {
            if w != g {
                miss(
                    format!("{key}.{what}"),
                    show_time(w, start),
                    show_time(g, start),
                );
            }
        }
    }
    if let (Some(w), Some(g)) = (want.mode, got.mode) {
        if w != g {
            miss(format!("{key}.mode"), format!("{w:#o}"), format!("{g:#o}"));
        }
    }
}

/// Bytes as a scenario would write them.
pub fn show_bytes(bytes: &[u8]) -> String {
    format!("'{}'", escape::encode(bytes))
}

/// A time with its offset from the scenario's start.
pub fn show_time(time: Time, start: Time) -> String {
    let offset = time - start;
    let sign = if offset < 0 { "-" } else { "+" };
    format!("{time} ({sign}{}s)", offset.abs())
}

fn show_times(t: &ExpectedTimes, start: Time) -> String {
    let mut parts = Vec::new();
    if let Some(a) = t.atime {
        parts.push(format!("atime {}", show_time(a, start)));
    }
    if let Some(m) = t.mtime {
        parts.push(format!("mtime {}", show_time(m, start)));
    }
    if let Some(mode) = t.mode {
        parts.push(format!("mode {mode:#o}"));
    }
    parts.join(", ")
}

fn show_triggers(triggers: &[Trigger]) -> String {
    let letters: Vec<String> = triggers
        .iter()
        .map(|t| format!("\"{}\"", t.byte() as char))
        .collect();
    format!("[{}]", letters.join(", "))
}

fn show_status(status: Option<ExpectedStatus>) -> String {
    match status {
        Some(ExpectedStatus::Status(s)) => s.name().to_string(),
        Some(ExpectedStatus::NoReply) => "none (no reply)".to_string(),
        None => "no flush request".to_string(),
    }
}

fn show_opt(value: &Option<String>) -> String {
    value
        .as_ref()
        .map_or("nothing".to_string(), |v| format!("{v:?}"))
}

impl Report {
    /// The report as a person reads it: where, when, and each difference
    /// with the model's value above the target's.
    pub fn render(&self, profile: Profile) -> String {
        let mut out = String::new();
        let sign = if self.offset < 0 { "-" } else { "+" };
        let when = format!("at {sign}{}s ({})", self.offset.abs(), self.time);
        match &self.event {
            Some(e) => out.push_str(&format!(
                "    {}:{}: event {} (do = \"{}\") {when} [{}], during {}\n",
                self.file,
                e.line,
                e.index,
                e.kind,
                profile.name(),
                self.step
            )),
            None => out.push_str(&format!(
                "    {}: setup {when} [{}], during {}\n",
                self.file,
                profile.name(),
                self.step
            )),
        }
        for d in &self.differences {
            out.push_str(&format!(
                "      {}\n        model:  {}\n        target: {}\n",
                d.field, d.model, d.target
            ));
        }
        for u in &self.unmet {
            out.push_str(&format!(
                "      {} (line {})\n        expected: {}\n        model:    {}\n",
                u.expectation, u.line, u.expected, u.model
            ));
        }
        out
    }
}

/// Every logfile and queue file of a spool, one per line, for narration.
pub fn describe_spool(state: &SpoolState, start: Time) -> Vec<String> {
    let mut lines = Vec::new();
    for (name, l) in &state.logfiles {
        lines.push(format!(
            "logfile {name}: {} (mode {:#o}, atime {}, mtime {})",
            show_bytes(&l.content),
            l.mode,
            show_time(l.atime, start),
            show_time(l.mtime, start)
        ));
    }
    let mut by_queue: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (path, q) in &state.queue_files {
        let queue = path.split('/').next().unwrap_or("");
        by_queue.entry(queue).or_default().push(format!(
            "{path} (mode {:#o}, atime {}, mtime {})",
            q.mode,
            show_time(q.atime, start),
            show_time(q.mtime, start)
        ));
    }
    for (_, files) in by_queue {
        for f in files {
            lines.push(format!("queue file {f}"));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use flushbed_vocab::{LogfileState, QueueFileState};

    #[test]
    fn refresh_purge_and_triggers_compare_triggers_in_any_order() {
        assert!(order_free(b"W\0"));
        assert!(order_free(&flushbed_vocab::wire::refresh_request()));
        assert!(order_free(&flushbed_vocab::wire::purge_request()));
        assert!(!order_free(&flushbed_vocab::wire::send_site_request(
            b"example.com"
        )));

        let m = Exchange {
            output: vec![],
            triggers: vec![Trigger::ScanIncoming, Trigger::FlushDead],
            died: false,
        };
        let t = Exchange {
            output: vec![],
            triggers: vec![Trigger::FlushDead, Trigger::ScanIncoming],
            died: false,
        };
        assert!(compare_exchange(&m, &t, true).is_empty());
        assert_eq!(compare_exchange(&m, &t, false)[0].field, "triggers");
    }

    #[test]
    fn an_exchange_difference_names_the_field_and_shows_bytes_escaped() {
        let m = Exchange {
            output: b"status\0\x30\0\0".to_vec(),
            triggers: vec![],
            died: false,
        };
        let t = Exchange {
            output: b"status\0\x34\0\0".to_vec(),
            triggers: vec![],
            died: true,
        };
        let d = compare_exchange(&m, &t, false);
        assert_eq!(
            d[0],
            difference(
                "output",
                r"'status\x000\0\0'".into(),
                r"'status\x004\0\0'".into()
            )
        );
        assert_eq!(d[1].field, "died");
    }

    #[test]
    fn a_spool_difference_names_each_file_and_field() {
        let log = |content: &[u8], atime| LogfileState {
            content: content.to_vec(),
            mode: 0o600,
            atime,
            mtime: 10,
        };
        let mut m = SpoolState::default();
        let mut t = SpoolState::default();
        m.logfiles.insert("example_com".into(), log(b"A1\n", 10));
        t.logfiles.insert("example_com".into(), log(b"", 12));
        m.queue_files.insert(
            "deferred/A/A1".into(),
            QueueFileState {
                mode: 0o700,
                atime: 1,
                mtime: 1,
            },
        );
        t.queue_files.insert(
            "incoming/A1".into(),
            QueueFileState {
                mode: 0o700,
                atime: 1,
                mtime: 1,
            },
        );
        let d = compare_spools(&m, &t, 10);
        let fields: Vec<&str> = d.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "logfile example_com: content",
                "logfile example_com: atime",
                "queue file deferred/A/A1",
                "queue file incoming/A1"
            ]
        );
        assert_eq!(d[1].target, "12 (+2s)");
        assert_eq!(d[2].target, "absent");
    }

    #[test]
    fn an_after_first_use_wakeup_waits_for_the_first_use() {
        let mut w = WakeupTimer::new(Wakeup::AfterFirstUse(1000), 0);
        assert_eq!(w.next, None);
        w.used(50);
        assert_eq!(w.next, Some(50));
        w.fired(50);
        w.used(60);
        assert_eq!(w.next, Some(1050));
        assert_eq!(WakeupTimer::new(Wakeup::Every(30), 100).next, Some(130));
        assert_eq!(WakeupTimer::new(Wakeup::Never, 100).next, None);
    }

    /// How a [`Sabotaged`] target goes wrong.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Sabotage {
        /// A logfile no rule asked for, written through the file layer.
        ThroughTheFileLayer,
        /// The same logfile, written behind the file layer's back.
        BehindTheFileLayer,
    }

    /// A spool target that writes a stray logfile after its third
    /// connection, and perhaps cannot say what it touched.
    struct Sabotaged {
        inner: SpoolTarget,
        how: Sabotage,
        reports_touched: bool,
        connections: usize,
    }

    impl Target for Sabotaged {
        fn name(&self) -> String {
            self.inner.name()
        }
        fn profile(&self) -> Profile {
            self.inner.profile()
        }
        fn config(&self) -> &flushbed_vocab::FlushConfig {
            self.inner.config()
        }
        fn connect(&mut self, input: &[u8], now: Time) -> anyhow::Result<Exchange> {
            let exchange = self.inner.connect(input, now)?;
            self.connections += 1;
            if self.connections == 3 {
                match self.how {
                    Sabotage::ThroughTheFileLayer => {
                        self.inner
                            .write_logfile("stray_example", b"X1\n", 0o600, now, now)?
                    }
                    Sabotage::BehindTheFileLayer => {
                        std::fs::write(self.inner.queue_dir().join("flush/stray_example"), b"X1\n")?
                    }
                }
            }
            Ok(exchange)
        }
        crate::target::forward_environment!(inner);
        fn observe_changed(&mut self, also: &Paths) -> anyhow::Result<Option<Partial>> {
            if self.reports_touched {
                self.inner.observe_changed(also)
            } else {
                Ok(None)
            }
        }
    }

    /// Twenty adds, a second apart.
    fn twenty_adds() -> Scenario {
        let mut text = String::from(
            "[scenario]\nsummary = \"adds\"\nprofiles = [\"strict\"]\n\
             [config]\nmain_cf = \"fast_flush_domains = example.com\\n\"\n\
             [sim]\nqueue_manager = false\nflush_wakeup = \"0\"\n",
        );
        for n in 0..20 {
            text.push_str(&format!(
                "[[event]]\ndo = \"add\"\nsite = \"example.com\"\nqueue_id = \"A{n}\"\nafter = \"1s\"\n"
            ));
        }
        crate::scenario::parse(&text, "twenty-adds.toml").unwrap()
    }

    /// Where a sabotaged run diverged: the event and the step.
    fn diverged_at(how: Sabotage, reports_touched: bool) -> (usize, String, Vec<String>) {
        let scenario = twenty_adds();
        let inner = SpoolTarget::new(&scenario.config, Profile::Strict).unwrap();
        let mut target = Sabotaged {
            inner,
            how,
            reports_touched,
            connections: 0,
        };
        match run_against(&scenario, &mut target, None).outcome {
            Outcome::Diverged(report) => (
                report.event.map_or(0, |e| e.index),
                report.step,
                report.differences.into_iter().map(|d| d.field).collect(),
            ),
            other => panic!("the sabotage went unseen: {other:?}"),
        }
    }

    #[test]
    fn a_file_the_target_touched_unasked_is_caught_at_that_step() {
        let (event, step, fields) = diverged_at(Sabotage::ThroughTheFileLayer, true);
        assert_eq!(event, 3);
        assert_eq!(step, "the event's flush request");
        assert_eq!(fields, vec!["logfile stray_example".to_string()]);
    }

    #[test]
    fn a_file_changed_behind_the_file_layer_is_caught_by_the_whole_comparison() {
        let (event, step, fields) = diverged_at(Sabotage::BehindTheFileLayer, true);
        assert_eq!(event, WHOLE_COMPARISON_EVERY);
        assert_eq!(step, "the whole comparison of the spool after the event");
        assert_eq!(fields, vec!["logfile stray_example".to_string()]);
    }

    #[test]
    fn a_target_that_cannot_say_what_it_touched_is_compared_whole_at_every_step() {
        let (event, step, _) = diverged_at(Sabotage::BehindTheFileLayer, false);
        assert_eq!(event, 3);
        assert_eq!(step, "the event's flush request");
    }
}
