//! Scenario files: the TOML format of `docs/SCENARIOS.md`, read into a
//! [`Scenario`] that the lockstep runner can play without looking back at
//! the text.
//!
//! Reading is in two passes. TOML and serde check the shape (every table
//! denies unknown keys), keeping the position of every value; then each
//! value is checked for what it means (a byte string's escapes, a time, a
//! key that the event's `do` does not take), and an error names the
//! position of the offending key. Either way the error reads
//! `file:line:column: what was expected`, and a scenario with any error is
//! never run, not even in part.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use flushbed_vocab::{Profile, QueueName, Status, Time, Trigger};
use serde::Deserialize;
use thiserror::Error;
use toml::{Spanned, Value};

use crate::escape;

/// The virtual clock's start when a scenario does not say.
pub const DEFAULT_START: Time = 1_800_000_000;

/// The envelope sender of a queue file or message that does not name one.
pub const DEFAULT_SENDER: &str = "sender@example.invalid";

/// A scenario that cannot be run, and where it went wrong.
#[derive(Debug, Error)]
pub enum ScenarioError {
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
}

/// One scenario, checked and with every time resolved.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The file it was read from, as given.
    pub file: String,
    /// The file's stem: the scenario's name in reports.
    pub name: String,
    pub summary: String,
    pub profiles: Vec<Profile>,
    pub start: Time,
    /// The targets it applies to; `None` is any target.
    pub targets: Option<Vec<String>>,
    pub config: ConfigSpec,
    pub sim: SimSpec,
    pub logfiles: Vec<LogfileSpec>,
    pub queue_files: Vec<QueueFileSpec>,
    pub events: Vec<Event>,
}

impl Scenario {
    /// Whether the scenario applies to the target of this name.
    pub fn applies_to(&self, target: &str) -> bool {
        self.targets
            .as_ref()
            .is_none_or(|targets| targets.iter().any(|t| t == target))
    }
}

/// `[config]`: what the flush server and its clients read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSpec {
    pub main_cf: String,
    /// Files written into the configuration directory, by name.
    pub files: BTreeMap<String, Vec<u8>>,
    pub hostname: String,
}

/// The master's wakeup of the flush service (its `master.cf` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wakeup {
    /// `0` or `-`.
    Never,
    /// `N`: every N seconds from the start.
    Every(i64),
    /// `N?`: every N seconds, counted from the first use of the service.
    AfterFirstUse(i64),
}

/// `[sim]`: the world around the flush server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimSpec {
    pub queue_manager: bool,
    pub flush_wakeup: Wakeup,
    /// Initial availability of each listed site (`true` is up); a site not
    /// listed is down.
    pub sites: BTreeMap<Vec<u8>, bool>,
}

/// A logfile as a scenario writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogfileSpec {
    pub name: String,
    pub content: Vec<u8>,
    pub mode: u32,
    pub atime: Time,
    pub mtime: Time,
}

/// A queue file, and the message in it as far as the queue manager cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueFileSpec {
    pub id: String,
    pub queue: QueueName,
    pub mode: u32,
    pub atime: Time,
    pub mtime: Time,
    /// Recipient addresses; none means the queue manager leaves it alone.
    pub recipients: Vec<Vec<u8>>,
    pub arrival: Time,
    pub sender: String,
}

/// One event of the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its position in the timeline, from 1.
    pub index: usize,
    /// The line of its `[[event]]` header.
    pub line: usize,
    /// When it happens.
    pub time: Time,
    pub note: Option<String>,
    pub action: Action,
    pub expect: Option<Expect>,
}

/// What an event does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Submit {
        id: Option<String>,
        recipients: Vec<Vec<u8>>,
        sender: String,
    },
    Site {
        site: Vec<u8>,
        up: bool,
    },
    Etrn {
        args: Vec<Vec<u8>>,
        helo: bool,
        in_transaction: bool,
    },
    PostqueueS {
        site: Vec<u8>,
    },
    PostqueueI {
        queue_id: Vec<u8>,
    },
    PostqueueF,
    Add {
        site: Vec<u8>,
        queue_id: Vec<u8>,
    },
    SendSite {
        site: Vec<u8>,
    },
    SendFile {
        queue_id: Vec<u8>,
    },
    Refresh,
    Purge,
    /// The client library's `flush_refresh()`: refused locally when
    /// `fast_flush_domains` is empty.
    FlushRefresh,
    /// The client library's `flush_purge()`.
    FlushPurge,
    Wakeup,
    Request {
        wire: Vec<u8>,
    },
    Advance,
    WriteLogfile(LogfileSpec),
    RemoveLogfile {
        name: String,
    },
    PlantQueueFile(QueueFileSpec),
    RemoveQueueFile {
        id: String,
    },
    Check,
}

impl Action {
    /// The event's `do`.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Submit { .. } => "submit",
            Action::Site { .. } => "site",
            Action::Etrn { .. } => "etrn",
            Action::PostqueueS { .. } => "postqueue_s",
            Action::PostqueueI { .. } => "postqueue_i",
            Action::PostqueueF => "postqueue_f",
            Action::Add { .. } => "add",
            Action::SendSite { .. } => "send_site",
            Action::SendFile { .. } => "send_file",
            Action::Refresh => "refresh",
            Action::Purge => "purge",
            Action::FlushRefresh => "flush_refresh",
            Action::FlushPurge => "flush_purge",
            Action::Wakeup => "wakeup",
            Action::Request { .. } => "request",
            Action::Advance => "advance",
            Action::WriteLogfile(_) => "write_logfile",
            Action::RemoveLogfile { .. } => "remove_logfile",
            Action::PlantQueueFile(_) => "plant_queue_file",
            Action::RemoveQueueFile { .. } => "remove_queue_file",
            Action::Check => "check",
        }
    }
}

/// What a scenario expects the status of the event's flush request to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedStatus {
    Status(Status),
    /// No reply at all.
    NoReply,
}

/// Expected times (and mode) of a file; what is `None` is not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpectedTimes {
    pub atime: Option<Time>,
    pub mtime: Option<Time>,
    pub mode: Option<u32>,
}

/// An event's `expect` table, checked against the model after the event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expect {
    /// The line of the table's header (or of `expect =`).
    pub line: usize,
    pub status: Option<ExpectedStatus>,
    pub reply: Option<Vec<u8>>,
    pub triggers: Option<Vec<Trigger>>,
    pub died: Option<bool>,
    pub smtp: Option<String>,
    pub exit: Option<i32>,
    pub stderr: Option<String>,
    /// Logfile name to its exact content, or `None`: it does not exist.
    pub logfiles: BTreeMap<String, Option<Vec<u8>>>,
    pub logfile_times: BTreeMap<String, ExpectedTimes>,
    /// Queue ID to its queue, or `None`: it is in no queue.
    pub queue: BTreeMap<String, Option<QueueName>>,
    pub queue_times: BTreeMap<String, ExpectedTimes>,
    /// The queue manager's `add` requests, each `site queue_id`.
    pub adds: Option<Vec<Vec<u8>>>,
}

/// Reads and checks a scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
        file: file.clone(),
        source,
    })?;
    parse(&source, &file)
}

/// Checks a scenario's text; `file` names it in errors and reports.
pub fn parse(source: &str, file: &str) -> Result<Scenario, ScenarioError> {
    let raw: RawFile = toml::from_str(source).map_err(|e| {
        let offset = e.span().map_or(0, |span| span.start);
        Reader { source, file }.error_at(offset, e.message().to_string())
    })?;
    Reader { source, file }.scenario(raw)
}

// ---------------------------------------------------------------------------
// The shape, as TOML and serde check it.

type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    scenario: RawScenario,
    #[serde(default)]
    config: Option<RawConfig>,
    #[serde(default)]
    sim: Option<RawSim>,
    #[serde(default)]
    logfile: Vec<S<RawLogfile>>,
    #[serde(default)]
    queue_file: Vec<S<RawQueueFile>>,
    #[serde(default)]
    event: Vec<S<RawEvent>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    summary: S<String>,
    profiles: Option<S<Vec<S<String>>>>,
    start: Option<S<i64>>,
    targets: Option<S<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    main_cf: Option<S<String>>,
    files: Option<BTreeMap<String, S<String>>>,
    hostname: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSim {
    queue_manager: Option<bool>,
    flush_wakeup: Option<S<Value>>,
    sites: Option<BTreeMap<String, S<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogfile {
    name: S<String>,
    content: Option<S<String>>,
    mode: Option<S<i64>>,
    atime: Option<S<Value>>,
    mtime: Option<S<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueueFile {
    id: S<String>,
    queue: Option<S<String>>,
    mode: Option<S<i64>>,
    atime: Option<S<Value>>,
    mtime: Option<S<Value>>,
    recipients: Option<S<Vec<S<String>>>>,
    arrival: Option<S<Value>>,
    sender: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    #[serde(rename = "do")]
    kind: S<String>,
    at: Option<S<Value>>,
    after: Option<S<String>>,
    note: Option<S<String>>,
    expect: Option<S<RawExpect>>,
    id: Option<S<String>>,
    recipients: Option<S<Vec<S<String>>>>,
    sender: Option<S<String>>,
    site: Option<S<String>>,
    state: Option<S<String>>,
    arg: Option<S<String>>,
    args: Option<S<Vec<S<String>>>>,
    helo: Option<S<bool>>,
    in_transaction: Option<S<bool>>,
    queue_id: Option<S<String>>,
    wire: Option<S<String>>,
    by: Option<S<String>>,
    name: Option<S<String>>,
    content: Option<S<String>>,
    mode: Option<S<i64>>,
    atime: Option<S<Value>>,
    mtime: Option<S<Value>>,
    queue: Option<S<String>>,
    arrival: Option<S<Value>>,
}

impl RawEvent {
    /// Every optional key that is present, with the position of its value.
    fn present(&self) -> Vec<(&'static str, Range<usize>)> {
        fn span<T>(key: &'static str, v: &Option<S<T>>) -> Option<(&'static str, Range<usize>)> {
            v.as_ref().map(|v| (key, v.span()))
        }
        [
            span("id", &self.id),
            span("recipients", &self.recipients),
            span("sender", &self.sender),
            span("site", &self.site),
            span("state", &self.state),
            span("arg", &self.arg),
            span("args", &self.args),
            span("helo", &self.helo),
            span("in_transaction", &self.in_transaction),
            span("queue_id", &self.queue_id),
            span("wire", &self.wire),
            span("by", &self.by),
            span("name", &self.name),
            span("content", &self.content),
            span("mode", &self.mode),
            span("atime", &self.atime),
            span("mtime", &self.mtime),
            span("queue", &self.queue),
            span("arrival", &self.arrival),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    status: Option<S<String>>,
    reply: Option<S<String>>,
    triggers: Option<S<Vec<S<String>>>>,
    died: Option<S<bool>>,
    smtp: Option<S<String>>,
    exit: Option<S<i64>>,
    stderr: Option<S<String>>,
    logfiles: Option<BTreeMap<String, S<Value>>>,
    logfile_times: Option<BTreeMap<String, S<RawTimes>>>,
    queue: Option<BTreeMap<String, S<Value>>>,
    queue_times: Option<BTreeMap<String, S<RawTimes>>>,
    adds: Option<S<Vec<S<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimes {
    atime: Option<S<Value>>,
    mtime: Option<S<Value>>,
    mode: Option<S<i64>>,
}

// ---------------------------------------------------------------------------
// The meaning, as flushbed checks it.

/// The keys each `do` takes, besides `do`, `at`, `after`, `note`, `expect`.
const EVENT_KEYS: &[(&str, &[&str])] = &[
    ("submit", &["id", "recipients", "sender"]),
    ("site", &["site", "state"]),
    ("etrn", &["arg", "args", "helo", "in_transaction"]),
    ("postqueue_s", &["site"]),
    ("postqueue_i", &["queue_id"]),
    ("postqueue_f", &[]),
    ("add", &["site", "queue_id"]),
    ("send_site", &["site"]),
    ("send_file", &["queue_id"]),
    ("refresh", &[]),
    ("purge", &[]),
    ("flush_refresh", &[]),
    ("flush_purge", &[]),
    ("wakeup", &[]),
    ("request", &["wire"]),
    ("advance", &["by"]),
    (
        "write_logfile",
        &["name", "content", "mode", "atime", "mtime"],
    ),
    ("remove_logfile", &["name"]),
    (
        "plant_queue_file",
        &[
            "id",
            "queue",
            "mode",
            "atime",
            "mtime",
            "recipients",
            "arrival",
            "sender",
        ],
    ),
    ("remove_queue_file", &["id"]),
    ("check", &[]),
];

/// Events that never make a flush request of their own: `status`, `reply`,
/// `triggers` and `died` mean nothing for them.
const NO_REQUEST: &[&str] = &[
    "submit",
    "site",
    "postqueue_f",
    "advance",
    "write_logfile",
    "remove_logfile",
    "plant_queue_file",
    "remove_queue_file",
    "check",
];

struct Reader<'a> {
    source: &'a str,
    file: &'a str,
}

type Checked<T> = Result<T, ScenarioError>;

impl Reader<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let before = &self.source[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    fn line(&self, offset: usize) -> usize {
        self.position(offset).0
    }

    fn error_at(&self, offset: usize, message: String) -> ScenarioError {
        let (line, column) = self.position(offset);
        ScenarioError::Invalid {
            file: self.file.to_string(),
            line,
            column,
            message,
        }
    }

    /// An error at the key whose value is at `value`: back from the value
    /// over `=` and blanks to the key's first character.
    fn error_at_key(&self, value: &Range<usize>, message: String) -> ScenarioError {
        self.error_at(self.key_start(value.start), message)
    }

    fn key_start(&self, value_start: usize) -> usize {
        let bytes = self.source.as_bytes();
        let mut i = value_start.min(bytes.len());
        let skip_blanks = |mut i: usize| {
            while i > 0 && matches!(bytes[i - 1], b' ' | b'\t') {
                i -= 1;
            }
            i
        };
        i = skip_blanks(i);
        if i == 0 || bytes[i - 1] != b'=' {
            return value_start;
        }
        i = skip_blanks(i - 1);
        let end = i;
        while i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || b"_-\"'.".contains(&bytes[i - 1])) {
            i -= 1;
        }
        if i == end {
            value_start
        } else {
            i
        }
    }

    fn bytes(&self, value: &S<String>) -> Checked<Vec<u8>> {
        escape::decode(value.get_ref())
            .map_err(|e| self.error_at(value.span().start, format!("expected a byte string: {e}")))
    }

    fn byte_list(&self, values: &S<Vec<S<String>>>) -> Checked<Vec<Vec<u8>>> {
        values.get_ref().iter().map(|v| self.bytes(v)).collect()
    }

    fn mode(&self, value: &Option<S<i64>>, default: u32) -> Checked<u32> {
        match value {
            None => Ok(default),
            Some(v) if (0..=0o7777).contains(v.get_ref()) => Ok(*v.get_ref() as u32),
            Some(v) => Err(self.error_at(
                v.span().start,
                "expected permission bits between 0o0 and 0o7777".to_string(),
            )),
        }
    }

    /// A time: seconds since the epoch, or `+N`/`-N` with a unit from the
    /// scenario's start.
    fn time(&self, value: &S<Value>, start: Time) -> Checked<Time> {
        let bad = || {
            self.error_at(
                value.span().start,
                "expected a time: seconds since the epoch, or an offset from the start \
                 such as \"+90s\" or \"-3d\""
                    .to_string(),
            )
        };
        match value.get_ref() {
            Value::Integer(seconds) => Ok(*seconds),
            Value::String(text) => {
                let (sign, rest) = match text.as_bytes().first() {
                    Some(b'+') => (1, &text[1..]),
                    Some(b'-') => (-1, &text[1..]),
                    _ => return Err(bad()),
                };
                let seconds = parse_duration(rest).ok_or_else(bad)?;
                start.checked_add(sign * seconds).ok_or_else(bad)
            }
            _ => Err(bad()),
        }
    }

    fn time_or(&self, value: &Option<S<Value>>, start: Time, default: Time) -> Checked<Time> {
        value.as_ref().map_or(Ok(default), |v| self.time(v, start))
    }

    fn duration(&self, value: &S<String>) -> Checked<i64> {
        parse_duration(value.get_ref()).ok_or_else(|| {
            self.error_at(
                value.span().start,
                "expected a duration: a whole number and a unit s, m, h, d or w, such as \"10s\""
                    .to_string(),
            )
        })
    }

    fn queue_id(&self, value: &S<String>) -> Checked<String> {
        let id = value.get_ref();
        if id.is_empty() || id.contains('/') || id == "." || id == ".." {
            return Err(self.error_at(
                value.span().start,
                "expected a queue ID: a file name, not empty and without '/'".to_string(),
            ));
        }
        Ok(id.clone())
    }

    fn logfile_name(&self, value: &S<String>) -> Checked<String> {
        let name = value.get_ref();
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(self.error_at(
                value.span().start,
                "expected a logfile name: a file name directly in flush/".to_string(),
            ));
        }
        Ok(name.clone())
    }

    fn queue_name(&self, value: &Option<S<String>>) -> Checked<QueueName> {
        match value {
            None => Ok(QueueName::Deferred),
            Some(v) => QueueName::from_dir(v.get_ref()).ok_or_else(|| {
                self.error_at(
                    v.span().start,
                    "expected a queue: incoming, active, deferred, hold, corrupt or maildrop"
                        .to_string(),
                )
            }),
        }
    }

    fn scenario(&self, raw: RawFile) -> Checked<Scenario> {
        let name = Path::new(self.file).file_stem().map_or_else(
            || self.file.to_string(),
            |s| s.to_string_lossy().into_owned(),
        );

        // [scenario]
        let head = raw.scenario;
        let summary = head.summary.get_ref().trim().to_string();
        if summary.is_empty() {
            return Err(self.error_at(
                head.summary.span().start,
                "expected a one-line summary of the rule shown".to_string(),
            ));
        }
        let profiles = match &head.profiles {
            None => vec![Profile::Strict, Profile::Postfix],
            Some(list) => {
                let mut profiles = Vec::new();
                for p in list.get_ref() {
                    let profile: Profile = p
                        .get_ref()
                        .parse()
                        .map_err(|why: String| self.error_at(p.span().start, why))?;
                    if !profiles.contains(&profile) {
                        profiles.push(profile);
                    }
                }
                if profiles.is_empty() {
                    return Err(self.error_at(
                        list.span().start,
                        "expected at least one profile: \"strict\" or \"postfix\"".to_string(),
                    ));
                }
                profiles
            }
        };
        let start = head.start.as_ref().map_or(DEFAULT_START, |s| *s.get_ref());
        let targets = self.targets(&head.targets)?;

        // [config]
        let config = match raw.config {
            None => ConfigSpec {
                main_cf: String::new(),
                files: BTreeMap::new(),
                hostname: "localhost.localdomain".to_string(),
            },
            Some(c) => {
                let mut files = BTreeMap::new();
                for (name, content) in c.files.unwrap_or_default() {
                    if name.is_empty() || name.split('/').any(|p| p.is_empty() || p == "..") {
                        return Err(self.error_at_key(
                            &content.span(),
                            format!("expected a file name in the configuration directory, not \"{name}\""),
                        ));
                    }
                    files.insert(name, self.bytes(&content)?);
                }
                let hostname = match c.hostname {
                    None => "localhost.localdomain".to_string(),
                    Some(h) if !h.get_ref().trim().is_empty() => h.get_ref().trim().to_string(),
                    Some(h) => {
                        return Err(
                            self.error_at(h.span().start, "expected a host name".to_string())
                        )
                    }
                };
                // A main.cf that Postfix would refuse is bad input, found
                // here rather than half way through a run.
                let main_cf = match c.main_cf {
                    None => String::new(),
                    Some(text) => {
                        let env = flushbed_vocab::config::Environment {
                            hostname: hostname.clone(),
                            ..Default::default()
                        };
                        let checked = flushbed_vocab::MainCf::parse(text.get_ref(), "main_cf")
                            .and_then(|m| flushbed_vocab::FlushConfig::from_main_cf(&m, &env));
                        if let Err(e) = checked {
                            return Err(self.error_at(
                                text.span().start,
                                format!("expected a main.cf Postfix accepts: {e}"),
                            ));
                        }
                        text.into_inner()
                    }
                };
                ConfigSpec {
                    main_cf,
                    files,
                    hostname,
                }
            }
        };

        // [sim]
        let sim = match raw.sim {
            None => SimSpec {
                queue_manager: true,
                flush_wakeup: Wakeup::AfterFirstUse(1000),
                sites: BTreeMap::new(),
            },
            Some(s) => {
                let flush_wakeup = match &s.flush_wakeup {
                    None => Wakeup::AfterFirstUse(1000),
                    Some(v) => self.wakeup(v)?,
                };
                let mut sites = BTreeMap::new();
                for (site, state) in s.sites.unwrap_or_default() {
                    sites.insert(escape_key(&site), self.site_state(&state)?);
                }
                SimSpec {
                    queue_manager: s.queue_manager.unwrap_or(true),
                    flush_wakeup,
                    sites,
                }
            }
        };

        // [[logfile]] and [[queue_file]]
        let mut logfiles = Vec::new();
        for l in &raw.logfile {
            logfiles.push(self.logfile(l.get_ref(), start, start)?);
        }
        let mut queue_files = Vec::new();
        for q in &raw.queue_file {
            queue_files.push(self.queue_file(q.get_ref(), start, start)?);
        }

        // [[event]], in time order.
        let mut events = Vec::new();
        let mut now = start;
        for (position, e) in raw.event.iter().enumerate() {
            let event = self.event(position + 1, e, start, now)?;
            now = event.time;
            events.push(event);
        }

        Ok(Scenario {
            file: self.file.to_string(),
            name,
            summary,
            profiles,
            start,
            targets,
            config,
            sim,
            logfiles,
            queue_files,
            events,
        })
    }

    fn targets(&self, value: &Option<S<Value>>) -> Checked<Option<Vec<String>>> {
        const KNOWN: [&str; 3] = ["spool", "serve", "postfix"];
        let Some(value) = value else { return Ok(None) };
        let bad = || {
            self.error_at(
                value.span().start,
                "expected \"any\" or a list of targets: \"spool\", \"serve\", \"postfix\""
                    .to_string(),
            )
        };
        match value.get_ref() {
            Value::String(s) if s == "any" => Ok(None),
            Value::Array(items) if !items.is_empty() => {
                let mut targets = Vec::new();
                for item in items {
                    match item.as_str() {
                        Some(t) if KNOWN.contains(&t) => targets.push(t.to_string()),
                        _ => return Err(bad()),
                    }
                }
                Ok(Some(targets))
            }
            _ => Err(bad()),
        }
    }

    fn wakeup(&self, value: &S<Value>) -> Checked<Wakeup> {
        let bad = || {
            self.error_at(
                value.span().start,
                "expected a wakeup field: \"1000?\" (after first use), \"30\" (from the start), \
                 \"0\" or \"-\" (never)"
                    .to_string(),
            )
        };
        let text = match value.get_ref() {
            Value::String(s) => s.clone(),
            Value::Integer(n) => n.to_string(),
            _ => return Err(bad()),
        };
        if text == "-" {
            return Ok(Wakeup::Never);
        }
        let (digits, conditional) = match text.strip_suffix('?') {
            Some(d) => (d, true),
            None => (text.as_str(), false),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let seconds: i64 = digits.parse().map_err(|_| bad())?;
        Ok(match (seconds, conditional) {
            (0, _) => Wakeup::Never,
            (n, true) => Wakeup::AfterFirstUse(n),
            (n, false) => Wakeup::Every(n),
        })
    }

    fn site_state(&self, value: &S<String>) -> Checked<bool> {
        match value.get_ref().as_str() {
            "up" => Ok(true),
            "down" => Ok(false),
            _ => Err(self.error_at(
                value.span().start,
                "expected \"up\" or \"down\"".to_string(),
            )),
        }
    }

    fn logfile(&self, raw: &RawLogfile, start: Time, now: Time) -> Checked<LogfileSpec> {
        Ok(LogfileSpec {
            name: self.logfile_name(&raw.name)?,
            content: raw
                .content
                .as_ref()
                .map_or(Ok(Vec::new()), |c| self.bytes(c))?,
            mode: self.mode(&raw.mode, 0o600)?,
            atime: self.time_or(&raw.atime, start, now)?,
            mtime: self.time_or(&raw.mtime, start, now)?,
        })
    }

    fn queue_file(&self, raw: &RawQueueFile, start: Time, now: Time) -> Checked<QueueFileSpec> {
        Ok(QueueFileSpec {
            id: self.queue_id(&raw.id)?,
            queue: self.queue_name(&raw.queue)?,
            mode: self.mode(&raw.mode, 0o700)?,
            atime: self.time_or(&raw.atime, start, now)?,
            mtime: self.time_or(&raw.mtime, start, now)?,
            recipients: raw
                .recipients
                .as_ref()
                .map_or(Ok(Vec::new()), |r| self.byte_list(r))?,
            arrival: self.time_or(&raw.arrival, start, now)?,
            sender: raw
                .sender
                .as_ref()
                .map_or(DEFAULT_SENDER.to_string(), |s| s.get_ref().clone()),
        })
    }

    fn event(&self, index: usize, raw: &S<RawEvent>, start: Time, before: Time) -> Checked<Event> {
        let line = self.line(raw.span().start);
        let e = raw.get_ref();
        let kind = e.kind.get_ref().as_str();

        // The keys this `do` takes, and nothing else.
        let Some((_, keys)) = EVENT_KEYS.iter().find(|(k, _)| *k == kind) else {
            let kinds: Vec<&str> = EVENT_KEYS.iter().map(|(k, _)| *k).collect();
            return Err(self.error_at(
                e.kind.span().start,
                format!("expected an event kind, one of: {}", kinds.join(", ")),
            ));
        };
        for (key, span) in e.present() {
            if !keys.contains(&key) {
                let takes = if keys.is_empty() {
                    "no keys of its own".to_string()
                } else {
                    format!("only {}", keys.join(", "))
                };
                return Err(self.error_at_key(
                    &span,
                    format!("unexpected key `{key}`: `do = \"{kind}\"` takes {takes}"),
                ));
            }
        }
        let need = |value: &Option<S<String>>, key: &str| -> Checked<S<String>> {
            value.clone().ok_or_else(|| {
                self.error_at(
                    e.kind.span().start,
                    format!("expected key `{key}` for `do = \"{kind}\"`"),
                )
            })
        };

        // When: `at`, `after` (or `by` for advance), or the previous time.
        let after = match (&e.after, &e.by) {
            (Some(_), Some(by)) => {
                return Err(self.error_at_key(
                    &by.span(),
                    "expected either `after` or `by`, not both".to_string(),
                ))
            }
            (Some(d), None) | (None, Some(d)) => Some(d),
            (None, None) => None,
        };
        let time = match (&e.at, after) {
            (Some(_), Some(d)) => {
                return Err(self.error_at_key(
                    &d.span(),
                    "expected either `at` or a duration since the previous event, not both"
                        .to_string(),
                ))
            }
            (Some(at), None) => {
                let time = self.time(at, start)?;
                if time < before {
                    return Err(self.error_at_key(
                        &at.span(),
                        format!(
                            "expected a time not before the previous event's (time never goes \
                             back): {time} is {}s before {before}",
                            before - time
                        ),
                    ));
                }
                time
            }
            (None, Some(d)) => before + self.duration(d)?,
            (None, None) => before,
        };

        let action = match kind {
            "submit" => Action::Submit {
                id: e.id.as_ref().map(|i| self.queue_id(i)).transpose()?,
                recipients: match &e.recipients {
                    Some(r) if !r.get_ref().is_empty() => self.byte_list(r)?,
                    _ => {
                        return Err(self.error_at(
                            e.kind.span().start,
                            "expected `recipients`, a non-empty list, for `do = \"submit\"`"
                                .to_string(),
                        ))
                    }
                },
                sender: e
                    .sender
                    .as_ref()
                    .map_or(DEFAULT_SENDER.to_string(), |s| s.get_ref().clone()),
            },
            "site" => Action::Site {
                site: self.bytes(&need(&e.site, "site")?)?,
                up: self.site_state(&need(&e.state, "state")?)?,
            },
            "etrn" => {
                let args = match (&e.arg, &e.args) {
                    (Some(_), Some(list)) => {
                        return Err(self.error_at_key(
                            &list.span(),
                            "expected either `arg` or `args`, not both".to_string(),
                        ))
                    }
                    (Some(arg), None) => self
                        .bytes(arg)?
                        .split(|b| *b == b' ' || *b == b'\t')
                        .filter(|w| !w.is_empty())
                        .map(<[u8]>::to_vec)
                        .collect(),
                    (None, Some(list)) => self.byte_list(list)?,
                    (None, None) => Vec::new(),
                };
                Action::Etrn {
                    args,
                    helo: e.helo.as_ref().is_none_or(|h| *h.get_ref()),
                    in_transaction: e.in_transaction.as_ref().is_some_and(|t| *t.get_ref()),
                }
            }
            "postqueue_s" => Action::PostqueueS {
                site: self.bytes(&need(&e.site, "site")?)?,
            },
            "postqueue_i" => Action::PostqueueI {
                queue_id: self.bytes(&need(&e.queue_id, "queue_id")?)?,
            },
            "postqueue_f" => Action::PostqueueF,
            "add" => Action::Add {
                site: self.bytes(&need(&e.site, "site")?)?,
                queue_id: self.bytes(&need(&e.queue_id, "queue_id")?)?,
            },
            "send_site" => Action::SendSite {
                site: self.bytes(&need(&e.site, "site")?)?,
            },
            "send_file" => Action::SendFile {
                queue_id: self.bytes(&need(&e.queue_id, "queue_id")?)?,
            },
            "refresh" => Action::Refresh,
            "purge" => Action::Purge,
            "flush_refresh" => Action::FlushRefresh,
            "flush_purge" => Action::FlushPurge,
            "wakeup" => Action::Wakeup,
            "request" => Action::Request {
                wire: self.bytes(&need(&e.wire, "wire")?)?,
            },
            "advance" => Action::Advance,
            "write_logfile" => Action::WriteLogfile(LogfileSpec {
                name: self.logfile_name(&need(&e.name, "name")?)?,
                content: e
                    .content
                    .as_ref()
                    .map_or(Ok(Vec::new()), |c| self.bytes(c))?,
                mode: self.mode(&e.mode, 0o600)?,
                atime: self.time_or(&e.atime, start, time)?,
                mtime: self.time_or(&e.mtime, start, time)?,
            }),
            "remove_logfile" => Action::RemoveLogfile {
                name: self.logfile_name(&need(&e.name, "name")?)?,
            },
            "plant_queue_file" => Action::PlantQueueFile(self.queue_file(
                &RawQueueFile {
                    id: need(&e.id, "id")?,
                    queue: e.queue.clone(),
                    mode: e.mode.clone(),
                    atime: e.atime.clone(),
                    mtime: e.mtime.clone(),
                    recipients: e.recipients.clone(),
                    arrival: e.arrival.clone(),
                    sender: e.sender.clone(),
                },
                start,
                time,
            )?),
            "remove_queue_file" => Action::RemoveQueueFile {
                id: self.queue_id(&need(&e.id, "id")?)?,
            },
            _ => Action::Check,
        };

        let expect = match &e.expect {
            None => None,
            Some(x) => Some(self.expect(x, kind, start)?),
        };

        Ok(Event {
            index,
            line,
            time,
            note: e.note.as_ref().map(|n| n.get_ref().clone()),
            action,
            expect,
        })
    }

    fn expect(&self, raw: &S<RawExpect>, kind: &str, start: Time) -> Checked<Expect> {
        let x = raw.get_ref();

        // Keys that only some events can satisfy.
        let misplaced = |key: &str, span: Option<Range<usize>>, allowed: &[&str]| -> Checked<()> {
            match span {
                Some(span) if !allowed.contains(&kind) => Err(self.error_at_key(
                    &span,
                    format!(
                        "unexpected expectation `{key}`: `do = \"{kind}\"` {}",
                        if allowed.is_empty() {
                            "makes no flush request".to_string()
                        } else {
                            format!("is not one of {}", allowed.join(", "))
                        }
                    ),
                )),
                _ => Ok(()),
            }
        };
        let requests: Vec<&str> = EVENT_KEYS
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| !NO_REQUEST.contains(k))
            .collect();
        misplaced("status", x.status.as_ref().map(Spanned::span), &requests)?;
        misplaced("reply", x.reply.as_ref().map(Spanned::span), &requests)?;
        misplaced(
            "triggers",
            x.triggers.as_ref().map(Spanned::span),
            &requests,
        )?;
        misplaced("died", x.died.as_ref().map(Spanned::span), &requests)?;
        misplaced("smtp", x.smtp.as_ref().map(Spanned::span), &["etrn"])?;
        let postqueue = ["postqueue_s", "postqueue_i", "postqueue_f"];
        misplaced("exit", x.exit.as_ref().map(Spanned::span), &postqueue)?;
        misplaced("stderr", x.stderr.as_ref().map(Spanned::span), &postqueue)?;

        let mut expect = Expect {
            line: self.line(raw.span().start),
            ..Expect::default()
        };
        if let Some(s) = &x.status {
            expect.status = Some(match s.get_ref().as_str() {
                "OK" => ExpectedStatus::Status(Status::Ok),
                "FAIL" => ExpectedStatus::Status(Status::Fail),
                "BAD" => ExpectedStatus::Status(Status::Bad),
                "DENY" => ExpectedStatus::Status(Status::Deny),
                "none" => ExpectedStatus::NoReply,
                _ => {
                    return Err(self.error_at(
                        s.span().start,
                        "expected a status: OK, FAIL, BAD, DENY or none".to_string(),
                    ))
                }
            });
        }
        expect.reply = x.reply.as_ref().map(|r| self.bytes(r)).transpose()?;
        if let Some(list) = &x.triggers {
            let mut triggers = Vec::new();
            for t in list.get_ref() {
                let trigger = match t.get_ref().as_bytes() {
                    [byte] => Trigger::from_byte(*byte),
                    _ => None,
                };
                triggers.push(trigger.ok_or_else(|| {
                    self.error_at(
                        t.span().start,
                        "expected a trigger: \"I\", \"F\", \"D\", \"A\" or \"W\"".to_string(),
                    )
                })?);
            }
            expect.triggers = Some(triggers);
        }
        expect.died = x.died.as_ref().map(|d| *d.get_ref());
        expect.smtp = x.smtp.as_ref().map(|s| s.get_ref().clone());
        if let Some(code) = &x.exit {
            expect.exit = Some(i32::try_from(*code.get_ref()).map_err(|_| {
                self.error_at(code.span().start, "expected an exit status".to_string())
            })?);
        }
        expect.stderr = x.stderr.as_ref().map(|s| s.get_ref().clone());

        for (name, value) in x.logfiles.iter().flatten() {
            let content = match value.get_ref() {
                Value::Boolean(false) => None,
                Value::String(text) => Some(escape::decode(text).map_err(|e| {
                    self.error_at(value.span().start, format!("expected a byte string: {e}"))
                })?),
                _ => {
                    return Err(self.error_at(
                        value.span().start,
                        "expected the logfile's content (a byte string) or false".to_string(),
                    ))
                }
            };
            expect.logfiles.insert(name.clone(), content);
        }
        for (name, times) in x.logfile_times.iter().flatten() {
            expect
                .logfile_times
                .insert(name.clone(), self.times(times, start)?);
        }
        for (id, value) in x.queue.iter().flatten() {
            let queue = match value.get_ref() {
                Value::Boolean(false) => None,
                Value::String(q) if QueueName::from_dir(q).is_some() => QueueName::from_dir(q),
                _ => {
                    return Err(self.error_at(
                        value.span().start,
                        "expected a queue (\"incoming\", \"deferred\", ...) or false".to_string(),
                    ))
                }
            };
            expect.queue.insert(id.clone(), queue);
        }
        for (id, times) in x.queue_times.iter().flatten() {
            expect
                .queue_times
                .insert(id.clone(), self.times(times, start)?);
        }
        expect.adds = x.adds.as_ref().map(|a| self.byte_list(a)).transpose()?;
        Ok(expect)
    }

    fn times(&self, raw: &S<RawTimes>, start: Time) -> Checked<ExpectedTimes> {
        let t = raw.get_ref();
        Ok(ExpectedTimes {
            atime: t.atime.as_ref().map(|v| self.time(v, start)).transpose()?,
            mtime: t.mtime.as_ref().map(|v| self.time(v, start)).transpose()?,
            mode: match &t.mode {
                None => None,
                Some(_) => Some(self.mode(&t.mode, 0)?),
            },
        })
    }
}

/// A table key is plain text; a site written as a key is its UTF-8 bytes.
fn escape_key(key: &str) -> Vec<u8> {
    key.as_bytes().to_vec()
}

/// `N` with a unit `s m h d w`, in seconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || text.len() != digits + 1 {
        return None;
    }
    let number: i64 = text[..digits].parse().ok()?;
    let unit = match text.as_bytes()[digits] {
        b's' => 1,
        b'm' => 60,
        b'h' => 3600,
        b'd' => 86_400,
        b'w' => 7 * 86_400,
        _ => return None,
    };
    number.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Scenario {
        parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    fn parse_err(text: &str) -> String {
        parse(text, "t.toml").unwrap_err().to_string()
    }

    const HEAD: &str = "[scenario]\nsummary = \"s\"\n";

    #[test]
    fn defaults_fill_what_a_scenario_does_not_say() {
        let s = parse_ok(HEAD);
        assert_eq!(s.profiles, vec![Profile::Strict, Profile::Postfix]);
        assert_eq!(s.start, DEFAULT_START);
        assert!(s.targets.is_none());
        assert!(s.sim.queue_manager);
        assert_eq!(s.sim.flush_wakeup, Wakeup::AfterFirstUse(1000));
        assert_eq!(s.config.hostname, "localhost.localdomain");
    }

    #[test]
    fn an_unknown_key_is_an_error_with_its_position() {
        let err = parse_err("[scenario]\nsummary = \"s\"\nbogus = 1\n");
        assert!(
            err.starts_with("t.toml:3:1: unknown field `bogus`"),
            "{err}"
        );
    }

    #[test]
    fn a_key_the_event_does_not_take_is_an_error_at_that_key() {
        let text = format!("{HEAD}[[event]]\ndo = \"refresh\"\n  site = \"example.com\"\n");
        let err = parse_err(&text);
        assert!(
            err.starts_with("t.toml:5:3: unexpected key `site`"),
            "{err}"
        );
    }

    #[test]
    fn event_times_follow_at_and_after_and_never_go_back() {
        let text = format!(
            "{HEAD}[[event]]\ndo = \"check\"\nafter = \"10s\"\n[[event]]\ndo = \"check\"\n\
             [[event]]\ndo = \"advance\"\nby = \"2m\"\n[[event]]\ndo = \"check\"\nat = \"+1h\"\n"
        );
        let s = parse_ok(&text);
        let times: Vec<Time> = s.events.iter().map(|e| e.time - s.start).collect();
        assert_eq!(times, vec![10, 10, 130, 3600]);

        let back = format!("{HEAD}[[event]]\ndo = \"check\"\nafter = \"1h\"\n[[event]]\ndo = \"check\"\nat = \"+1m\"\n");
        let err = parse_err(&back);
        assert!(
            err.starts_with("t.toml:8:1: expected a time not before"),
            "{err}"
        );
    }

    #[test]
    fn byte_strings_decode_flushbeds_escapes() {
        let text = format!(
            "{HEAD}[[logfile]]\nname = \"example_com\"\ncontent = 'A1\\0junk\\r\\n\\xff'\nmtime = \"-3d\"\n"
        );
        let s = parse_ok(&text);
        assert_eq!(s.logfiles[0].content, b"A1\0junk\r\n\xff");
        assert_eq!(s.logfiles[0].mtime, s.start - 3 * 86_400);
        assert_eq!(s.logfiles[0].atime, s.start);

        let bad = format!("{HEAD}[[logfile]]\nname = \"x\"\ncontent = 'a\\qb'\n");
        let err = parse_err(&bad);
        assert!(
            err.starts_with("t.toml:5:11: expected a byte string: bad escape"),
            "{err}"
        );
    }

    #[test]
    fn request_expectations_on_an_event_without_a_request_are_errors() {
        let text = format!(
            "{HEAD}[[event]]\ndo = \"advance\"\nby = \"1s\"\nexpect = {{ status = \"OK\" }}\n"
        );
        let err = parse_err(&text);
        assert!(
            err.starts_with("t.toml:6:12: unexpected expectation `status`"),
            "{err}"
        );
    }

    #[test]
    fn expectations_read_statuses_triggers_queues_and_absence() {
        let text = format!(
            "{HEAD}[[event]]\ndo = \"send_site\"\nsite = \"example.com\"\n[event.expect]\n\
             status = \"none\"\ntriggers = [\"F\", \"I\"]\nlogfiles = {{ a = false, b = 'x\\n' }}\n\
             queue = {{ Q1 = \"incoming\", Q2 = false }}\n\
             queue_times = {{ Q1 = {{ mode = 0o740, mtime = \"+0s\" }} }}\n"
        );
        let s = parse_ok(&text);
        let x = s.events[0].expect.as_ref().unwrap();
        assert_eq!(x.line, 6);
        assert_eq!(x.status, Some(ExpectedStatus::NoReply));
        assert_eq!(
            x.triggers,
            Some(vec![Trigger::FlushDead, Trigger::ScanIncoming])
        );
        assert_eq!(x.logfiles["a"], None);
        assert_eq!(x.logfiles["b"], Some(b"x\n".to_vec()));
        assert_eq!(x.queue["Q1"], Some(QueueName::Incoming));
        assert_eq!(x.queue["Q2"], None);
        assert_eq!(x.queue_times["Q1"].mode, Some(0o740));
        assert_eq!(x.queue_times["Q1"].mtime, Some(s.start));
    }

    #[test]
    fn wakeup_fields_read_as_master_cf_writes_them() {
        for (field, wakeup) in [
            ("\"1000?\"", Wakeup::AfterFirstUse(1000)),
            ("\"30\"", Wakeup::Every(30)),
            ("\"0\"", Wakeup::Never),
            ("\"-\"", Wakeup::Never),
        ] {
            let s = parse_ok(&format!("{HEAD}[sim]\nflush_wakeup = {field}\n"));
            assert_eq!(s.sim.flush_wakeup, wakeup, "{field}");
        }
        assert!(parse_err(&format!("{HEAD}[sim]\nflush_wakeup = \"soon\"\n")).contains(":4:16:"));
    }

    #[test]
    fn etrn_arg_splits_into_words_as_smtpd_would() {
        let text = format!("{HEAD}[[event]]\ndo = \"etrn\"\narg = \"a.example  b.example\"\n");
        let s = parse_ok(&text);
        assert_eq!(
            s.events[0].action,
            Action::Etrn {
                args: vec![b"a.example".to_vec(), b"b.example".to_vec()],
                helo: true,
                in_transaction: false
            }
        );
    }

    #[test]
    fn a_syntax_error_names_line_and_column() {
        let err = parse_err("[scenario]\nsummary = \"s\n");
        assert!(err.starts_with("t.toml:2:"), "{err}");
    }
}
