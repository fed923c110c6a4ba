//! The narration of one scenario's run, for `flushbed run`: each event, the
//! requests it made of the flush server, what the model answered and the
//! rule that decided it, the queue manager's doings, and the logfiles and
//! queues after it, in plain text a person learning flush(8) can follow.

use flushbed_vocab::{Profile, Time};

use crate::clients;
use crate::escape;
use crate::lockstep::{
    self, describe_spool, show_bytes, Outcome, ScenarioResult, TraceEvent, TraceLine,
};
use crate::scenario::Scenario;

/// The story of a run, ending with how it came out.
pub fn narrate(
    scenario: &Scenario,
    profile: Profile,
    trace: &[TraceEvent],
    result: &ScenarioResult,
) -> String {
    let mut out = String::new();
    out.push_str(&format!("{}: {}\n", scenario.name, scenario.summary));
    out.push_str(&format!(
        "profile {}, target {}, clock starts at {}\n",
        profile.name(),
        result.target,
        scenario.start
    ));

    for entry in trace {
        out.push('\n');
        match &entry.event {
            None => out.push_str("Setup: the initial spool\n"),
            Some(e) => {
                if !entry.meanwhile.is_empty() {
                    out.push_str("Meanwhile, before the next event:\n");
                    lines(&mut out, &entry.meanwhile);
                }
                out.push_str(&format!(
                    "Event {} (line {}) at {}: do = \"{}\"\n",
                    e.index,
                    e.line,
                    when(e.time, scenario.start),
                    e.action.kind()
                ));
            }
        }
        lines(&mut out, &entry.lines);
        let spool = describe_spool(&entry.state, scenario.start);
        if spool.is_empty() {
            out.push_str("  after it, the spool is empty\n");
        } else {
            out.push_str("  after it:\n");
            for line in spool {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }

    out.push('\n');
    match &result.outcome {
        Outcome::Pass => out.push_str(&format!(
            "ok: the {} target did exactly what the model did, at every step\n",
            result.target
        )),
        Outcome::Skipped { why } => out.push_str(&format!("skipped: {why}\n")),
        Outcome::Diverged(report) => {
            out.push_str("DIVERGED: the target did something else\n");
            out.push_str(&report.render(profile));
        }
        Outcome::ExpectationFailed(report) => {
            out.push_str("EXPECTATION FAILED: the model did not do what the scenario expects\n");
            out.push_str(&report.render(profile));
        }
        Outcome::Error { why } => out.push_str(&format!("ERROR: {why}\n")),
    }
    out
}

fn when(time: Time, start: Time) -> String {
    let offset = time - start;
    let sign = if offset < 0 { "-" } else { "+" };
    format!("{sign}{}s", offset.abs())
}

fn lines(out: &mut String, lines: &[TraceLine]) {
    for line in lines {
        match line {
            TraceLine::Note(text) => out.push_str(&format!("  {text}\n")),
            TraceLine::Client(result) => {
                if let Some(smtp) = &result.smtp {
                    out.push_str(&format!("  the SMTP client is told: {smtp}\n"));
                }
                if let Some(exit) = result.exit {
                    let stderr = result.stderr.as_deref().unwrap_or("");
                    if stderr.is_empty() {
                        out.push_str(&format!("  postqueue exits {exit}\n"));
                    } else {
                        out.push_str(&format!("  postqueue exits {exit}: {stderr}\n"));
                    }
                }
            }
            TraceLine::Exchange {
                label,
                input,
                exchange,
                notes,
            } => {
                out.push_str(&format!("  {label} -> flush: {}\n", show_bytes(input)));
                let reply = exchange.output.strip_prefix(lockstep::ANNOUNCEMENT);
                let shown = match reply {
                    Some([]) => "no reply after the announcement".to_string(),
                    Some(reply) => format!(
                        "replied {} ({})",
                        show_bytes(reply),
                        clients::client_status(&exchange.output).name()
                    ),
                    None => format!("wrote {}", show_bytes(&exchange.output)),
                };
                out.push_str(&format!("    the server {shown}\n"));
                if !exchange.triggers.is_empty() {
                    let letters: String =
                        exchange.triggers.iter().map(|t| t.byte() as char).collect();
                    out.push_str(&format!("    triggers to the queue manager: {letters}\n"));
                }
                if exchange.died {
                    out.push_str("    the flush process died; the master starts a fresh one\n");
                }
                for (rule, text) in notes {
                    out.push_str(&format!("    [{rule}] {}\n", escape_controls(text)));
                }
            }
        }
    }
}

/// A note may quote bytes of a logfile; keep each note on its line.
fn escape_controls(text: &str) -> String {
    if text.chars().any(|c| c.is_control()) {
        escape::encode(text.as_bytes())
    } else {
        text.to_string()
    }
}
