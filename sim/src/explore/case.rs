//! One explored case: a configuration and a timeline of events in the
//! scenario vocabulary, and its rendering as a scenario file.
//!
//! A case is always run *through its rendered text*: the lockstep plays the
//! scenario that [`Case::render`] writes and `scenario::parse` reads back,
//! so the file explore writes on a divergence is, byte for byte, what
//! diverged, and `flushbed check FILE` replays it as it is.

use std::collections::BTreeMap;

use flushbed_vocab::{Profile, Time};

use crate::escape;
use crate::scenario::{self, Action, LogfileSpec, QueueFileSpec, Scenario, ScenarioError};

/// The virtual clock's start of every case (the scenario default).
pub const START: Time = scenario::DEFAULT_START;

/// One event of a case: when (seconds from the start) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseEvent {
    pub at: i64,
    pub action: Action,
}

/// A generated case, before it is written as a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// `main.cf`, one parameter per line.
    pub main_cf: Vec<String>,
    /// Files of the configuration directory (`/path` patterns, tables).
    pub files: BTreeMap<String, Vec<u8>>,
    pub queue_manager: bool,
    /// The flush service's `master.cf` wakeup field.
    pub flush_wakeup: String,
    /// The initial availability of the sites the queue manager delivers to.
    pub sites: BTreeMap<String, bool>,
    pub events: Vec<CaseEvent>,
}

impl Case {
    /// The case as a scenario file: `header` (comment lines, each starting
    /// with `#`), then the scenario in the documented format.
    pub fn render(&self, summary: &str, profiles: &[Profile], header: &str) -> String {
        let mut out = String::new();
        out.push_str(header);
        if !header.is_empty() && !header.ends_with("\n\n") {
            out.push('\n');
        }

        out.push_str("[scenario]\n");
        out.push_str(&format!("summary = {}\n", text(summary)));
        let names: Vec<String> = profiles.iter().map(|p| text(p.name())).collect();
        out.push_str(&format!("profiles = [{}]\n", names.join(", ")));
        out.push_str(&format!("start = {START}\n\n"));

        out.push_str("[config]\n");
        let mut main_cf = String::new();
        for line in &self.main_cf {
            main_cf.push_str(line);
            main_cf.push('\n');
        }
        out.push_str(&format!("main_cf = {}\n", text(&main_cf)));
        if !self.files.is_empty() {
            let files: Vec<String> = self
                .files
                .iter()
                .map(|(name, content)| format!("{} = {}", text(name), bytes(content)))
                .collect();
            out.push_str(&format!("files = {{ {} }}\n", files.join(", ")));
        }
        out.push('\n');

        out.push_str("[sim]\n");
        out.push_str(&format!("queue_manager = {}\n", self.queue_manager));
        out.push_str(&format!("flush_wakeup = {}\n", text(&self.flush_wakeup)));
        if !self.sites.is_empty() {
            let sites: Vec<String> = self
                .sites
                .iter()
                .map(|(site, up)| {
                    format!("{} = \"{}\"", text(site), if *up { "up" } else { "down" })
                })
                .collect();
            out.push_str(&format!("sites = {{ {} }}\n", sites.join(", ")));
        }

        for event in &self.events {
            out.push_str("\n[[event]]\n");
            out.push_str(&format!("do = \"{}\"\n", event.action.kind()));
            out.push_str(&format!("at = {}\n", offset(event.at)));
            render_action(&mut out, &event.action);
        }
        out
    }

    /// The case as the scenario the lockstep plays.
    pub fn scenario(
        &self,
        summary: &str,
        profiles: &[Profile],
        file: &str,
    ) -> Result<Scenario, ScenarioError> {
        scenario::parse(&self.render(summary, profiles, ""), file)
    }
}

/// The keys of one action, after `do` and `at`.
fn render_action(out: &mut String, action: &Action) {
    let mut key = |k: &str, v: String| out.push_str(&format!("{k} = {v}\n"));
    match action {
        Action::Submit {
            id,
            recipients,
            sender,
        } => {
            if let Some(id) = id {
                key("id", text(id));
            }
            key("recipients", byte_list(recipients));
            if sender != scenario::DEFAULT_SENDER {
                key("sender", text(sender));
            }
        }
        Action::Site { site, up } => {
            key("site", bytes(site));
            key("state", text(if *up { "up" } else { "down" }));
        }
        Action::Etrn {
            args,
            helo,
            in_transaction,
        } => {
            key("args", byte_list(args));
            if !helo {
                key("helo", "false".to_string());
            }
            if *in_transaction {
                key("in_transaction", "true".to_string());
            }
        }
        Action::PostqueueS { site } | Action::SendSite { site } => key("site", bytes(site)),
        Action::PostqueueI { queue_id } | Action::SendFile { queue_id } => {
            key("queue_id", bytes(queue_id))
        }
        Action::Add { site, queue_id } => {
            key("site", bytes(site));
            key("queue_id", bytes(queue_id));
        }
        Action::Request { wire } => key("wire", bytes(wire)),
        Action::WriteLogfile(LogfileSpec {
            name,
            content,
            mode,
            atime,
            mtime,
        }) => {
            key("name", text(name));
            key("content", bytes(content));
            key("mode", format!("0o{mode:o}"));
            key("atime", offset(atime - START));
            key("mtime", offset(mtime - START));
        }
        Action::RemoveLogfile { name } => key("name", text(name)),
        Action::PlantQueueFile(QueueFileSpec {
            id,
            queue,
            mode,
            atime,
            mtime,
            recipients,
            arrival,
            sender,
        }) => {
            key("id", text(id));
            key("queue", text(queue.dir()));
            key("mode", format!("0o{mode:o}"));
            key("atime", offset(atime - START));
            key("mtime", offset(mtime - START));
            if !recipients.is_empty() {
                key("recipients", byte_list(recipients));
                key("arrival", offset(arrival - START));
                if sender != scenario::DEFAULT_SENDER {
                    key("sender", text(sender));
                }
            }
        }
        Action::RemoveQueueFile { id } => key("id", text(id)),
        Action::PostqueueF
        | Action::Refresh
        | Action::Purge
        | Action::FlushRefresh
        | Action::FlushPurge
        | Action::Wakeup
        | Action::Advance
        | Action::Check => {}
    }
}

/// A time as an offset from the start: `"+90s"`, `"-3601s"`.
fn offset(seconds: i64) -> String {
    if seconds < 0 {
        format!("\"-{}s\"", seconds.unsigned_abs())
    } else {
        format!("\"+{seconds}s\"")
    }
}

/// A byte string: flushbed's escapes inside a TOML literal string, or,
/// when the bytes hold a `'`, inside a basic string with TOML's own
/// escaping on top.
pub fn bytes(value: &[u8]) -> String {
    // UTF-8 text keeps its letters (`straße`), which flushbed's escapes
    // pass through; anything else is escaped byte by byte.
    let encoded = match std::str::from_utf8(value) {
        Ok(text) => text
            .chars()
            .map(|c| {
                if c.is_ascii() {
                    escape::encode(&[c as u8])
                } else {
                    c.to_string()
                }
            })
            .collect(),
        Err(_) => escape::encode(value),
    };
    if !encoded.contains('\'') {
        return format!("'{encoded}'");
    }
    let mut out = String::from("\"");
    for c in encoded.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn byte_list(values: &[Vec<u8>]) -> String {
    let items: Vec<String> = values.iter().map(|v| bytes(v)).collect();
    format!("[{}]", items.join(", "))
}

/// Plain text as a TOML basic string.
pub fn text(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_strings_survive_toml_and_flushbeds_escapes() {
        for value in [
            b"plain".to_vec(),
            b"A1\0junk\r\n\xff".to_vec(),
            b"it's \"quoted\" \\ here".to_vec(),
            "straße".as_bytes().to_vec(),
            "Bücher\0\u{85}".as_bytes().to_vec(),
        ] {
            let doc = format!("v = {}\n", bytes(&value));
            let parsed: toml::Table = toml::from_str(&doc).expect("valid TOML");
            let decoded = escape::decode(parsed["v"].as_str().expect("a string"));
            assert_eq!(decoded.as_deref(), Ok(value.as_slice()), "{doc}");
        }
    }

    #[test]
    fn utf8_sites_are_written_with_their_letters() {
        assert_eq!(bytes("straße.example".as_bytes()), "'straße.example'");
        assert_eq!(bytes(b"b\xfc"), "'b\\xfc'");
    }

    #[test]
    fn text_survives_toml() {
        let value = "a \"b\" \\ c\nd\te\u{1}straße";
        let doc = format!("v = {}\n", text(value));
        let parsed: toml::Table = toml::from_str(&doc).expect("valid TOML");
        assert_eq!(parsed["v"].as_str(), Some(value));
    }

    #[test]
    fn a_rendered_case_reads_back_as_the_same_events() {
        let case = Case {
            main_cf: vec!["fast_flush_domains = example.com".into()],
            files: BTreeMap::from([("flush_domains".to_string(), b"x\n".to_vec())]),
            queue_manager: true,
            flush_wakeup: "1000?".into(),
            sites: BTreeMap::from([("[127.0.0.1]".to_string(), true)]),
            events: vec![
                CaseEvent {
                    at: 0,
                    action: Action::WriteLogfile(LogfileSpec {
                        name: "example_com".into(),
                        content: b"A1\n\xff".to_vec(),
                        mode: 0o600,
                        atime: START - 61,
                        mtime: START - 60,
                    }),
                },
                CaseEvent {
                    at: 61,
                    action: Action::Etrn {
                        args: vec![b"@example.com".to_vec()],
                        helo: false,
                        in_transaction: true,
                    },
                },
            ],
        };
        let s = case
            .scenario("s", &[Profile::Postfix], "case.toml")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.profiles, vec![Profile::Postfix]);
        assert_eq!(s.sim.sites.get(b"[127.0.0.1]".as_slice()), Some(&true));
        assert_eq!(s.events.len(), 2);
        assert_eq!(s.events[0].action, case.events[0].action);
        assert_eq!(s.events[1].time, START + 61);
        assert_eq!(s.events[1].action, case.events[1].action);
    }
}
