//! The invariants of the `strict` profile: what no flush request may do to
//! the spool, whatever fails under it. The lockstep runner checks them
//! after every flush connection of a strict run, and the fault-exploring
//! run after every request it faults.
//!
//! They are stated on what can be seen, the spool before and after one
//! request and the bytes the client sent, and know no rule of flush(8)
//! beyond what a line and a queue ID are:
//!
//! 1. **A line leaves a logfile only by truncation**, after it was read
//!    under the lock in that same pass: the logfile is emptied whole, by a
//!    request that sends, and every queue file its lines name that was in
//!    `deferred/` or `incoming/` was touched by the pass (it is in
//!    `incoming/` with the request's time).
//! 2. **Mail is not left behind**: every queue file named by a line read in
//!    a pass that was in `deferred/` is in `incoming/` afterwards, or the
//!    line is still in the logfile.
//! 3. **A logfile is never deleted while it has lines.**
//! 4. **A logfile holds only lines appended by add or planted** by the
//!    scenario: a request adds at most the one line of its own `add`.
//!
//! One loss the real server has is not a departure of strict
//! (`docs/DEPARTURES.md`), so the invariants let it pass, by name:
//! [`KnownLoss::LastLineEndingIn0xFF`].

use flushbed_vocab::wire::{
    ATTR_QUEUE_ID, ATTR_REQUEST, REQ_ADD, REQ_PURGE, REQ_REFRESH, REQ_SEND_SITE,
};
use flushbed_vocab::{QueueName, SpoolState, Time};

/// A loss of the real server that strict keeps, and the invariants allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownLoss {
    /// A last line without a newline whose last byte is 0xFF is never read
    /// (Postfix's reader returns it as end-of-file) and goes with the
    /// truncation when another line was read.
    LastLineEndingIn0xFF,
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `1` to `4`, as numbered above, with a short name.
    pub invariant: &'static str,
    pub what: String,
}

/// What a connection asked for, as far as the invariants care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// An `add` of this queue ID: the one line it may append.
    Add { queue_id: Vec<u8> },
    /// `send_site`, `rfrsh`, `purge` or the master's wakeup: a request
    /// that may truncate or delete logfiles.
    Sends,
    /// Anything else touches no logfile.
    Other,
}

/// Reads the client's bytes as the client library wrote them: a short
/// trigger, or `name\0value\0` pairs.
pub fn requested(input: &[u8]) -> Requested {
    // Two bytes or fewer is a trigger; the only one that works is W.
    if input.len() <= 2 {
        return if input.first() == Some(&b'W') {
            Requested::Sends
        } else {
            Requested::Other
        };
    }
    let mut fields = input.split(|&b| b == 0);
    let mut request = None;
    let mut queue_id = None;
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        if name.is_empty() {
            break;
        }
        if name == ATTR_REQUEST.as_bytes() && request.is_none() {
            request = Some(value);
        } else if name == ATTR_QUEUE_ID.as_bytes() {
            queue_id = Some(value);
        }
    }
    match request {
        Some(name) if name == REQ_ADD.as_bytes() => Requested::Add {
            queue_id: queue_id.unwrap_or_default().to_vec(),
        },
        Some(name)
            if [REQ_SEND_SITE, REQ_REFRESH, REQ_PURGE]
                .iter()
                .any(|r| r.as_bytes() == name) =>
        {
            Requested::Sends
        }
        _ => Requested::Other,
    }
}

/// Checks one request: `before` and `after` are the spool around it,
/// `input` what the client sent, `now` the request's time.
pub fn check_request(
    before: &SpoolState,
    after: &SpoolState,
    input: &[u8],
    now: Time,
) -> Vec<Violation> {
    let requested = requested(input);
    let mut violations = Vec::new();
    let mut names: Vec<&String> = before
        .logfiles
        .keys()
        .chain(after.logfiles.keys())
        .collect();
    names.sort();
    names.dedup();

    for name in names {
        let was = before.logfiles.get(name).map(|l| l.content.as_slice());
        let is = after.logfiles.get(name).map(|l| l.content.as_slice());
        match (was, is) {
            (None, None) => {}
            (None, Some(is)) => {
                if !may_append(&requested, is) {
                    violations.push(Violation {
                        invariant: "4 only added or planted lines",
                        what: format!("logfile {name} appeared holding {}", show(is)),
                    });
                }
            }
            (Some(was), None) => {
                if !was.is_empty() {
                    violations.push(Violation {
                        invariant: "3 no deleted lines",
                        what: format!("logfile {name} was deleted holding {}", show(was)),
                    });
                } else if requested != Requested::Sends {
                    violations.push(Violation {
                        invariant: "3 no deleted lines",
                        what: format!("logfile {name} was deleted by a request that only adds"),
                    });
                }
            }
            (Some(was), Some(is)) => {
                if let Some(added) = is.strip_prefix(was) {
                    if !may_append(&requested, added) {
                        violations.push(Violation {
                            invariant: "4 only added or planted lines",
                            what: format!("logfile {name} gained {}", show(added)),
                        });
                    }
                } else if !is.is_empty() || requested != Requested::Sends {
                    violations.push(Violation {
                        invariant: "1 lines leave only by truncation",
                        what: format!("logfile {name} went from {} to {}", show(was), show(is)),
                    });
                } else {
                    read_pass(name, was, before, after, now, &mut violations);
                }
            }
        }
    }
    violations
}

/// What a request may have appended to a logfile: nothing, or the line
/// of its own add.
fn may_append(requested: &Requested, added: &[u8]) -> bool {
    if added.is_empty() {
        return true;
    }
    match requested {
        Requested::Add { queue_id } => {
            added.len() == queue_id.len() + 1
                && added.starts_with(queue_id)
                && added.ends_with(b"\n")
        }
        _ => false,
    }
}

/// A logfile holding `was` was truncated: every line it held was read by
/// the pass and its mail went to `incoming/`.
fn read_pass(
    name: &str,
    was: &[u8],
    before: &SpoolState,
    after: &SpoolState,
    now: Time,
    violations: &mut Vec<Violation>,
) {
    for line in lines(was) {
        let Some(queue_id) = queue_id_of(line) else {
            continue;
        };
        let Some((queue, _, _)) = before.find_queue_file(queue_id) else {
            continue;
        };
        if !matches!(queue, QueueName::Deferred | QueueName::Incoming) {
            continue;
        }
        let now_in = after.find_queue_file(queue_id);
        let touched = now_in.is_some_and(|(q, _, file)| {
            q == QueueName::Incoming && file.atime == now && file.mtime == now
        });
        if touched {
            continue;
        }
        let (invariant, why) = if queue == QueueName::Deferred {
            (
                "2 no mail left behind",
                "was in deferred/ and did not reach incoming/",
            )
        } else {
            (
                "1 lines leave only by truncation",
                "was not touched by the pass",
            )
        };
        violations.push(Violation {
            invariant,
            what: format!("logfile {name} was truncated, but queue file {queue_id} {why}"),
        });
    }
}

/// The lines a pass reads: up to each newline, and a last line without
/// one unless it ends in 0xFF ([`KnownLoss::LastLineEndingIn0xFF`]).
fn lines(content: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = content.split(|&b| b == b'\n').collect();
    match lines.pop() {
        Some(last) if !last.is_empty() && last.last() != Some(&0xFF) => lines.push(last),
        _ => {}
    }
    lines
}

/// A line's queue ID: up to the first NUL, letters, digits and `_` only.
fn queue_id_of(line: &[u8]) -> Option<&str> {
    let id = line.split(|&b| b == 0).next().unwrap_or_default();
    let ok = !id.is_empty()
        && id.len() <= 255
        && id.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then(|| std::str::from_utf8(id).ok()).flatten()
}

fn show(bytes: &[u8]) -> String {
    format!("\"{}\"", bytes.escape_ascii())
}

#[cfg(test)]
mod tests {
    use flushbed_vocab::wire::{add_request, send_site_request, wakeup_trigger};
    use flushbed_vocab::{LogfileState, QueueFileState};

    use super::*;

    const NOW: Time = 1_800_000_000;

    fn spool(logfiles: &[(&str, &[u8])], queue_files: &[&str]) -> SpoolState {
        let mut state = SpoolState::default();
        for (name, content) in logfiles {
            let log = LogfileState {
                content: content.to_vec(),
                mode: 0o600,
                atime: NOW,
                mtime: NOW,
            };
            state.logfiles.insert(name.to_string(), log);
        }
        for path in queue_files {
            let file = QueueFileState {
                mode: 0o700,
                atime: NOW,
                mtime: NOW,
            };
            state.queue_files.insert(path.to_string(), file);
        }
        state
    }

    fn broken(violations: &[Violation]) -> Vec<&'static str> {
        violations.iter().map(|v| v.invariant).collect()
    }

    #[test]
    fn an_add_may_append_its_own_line_and_nothing_else() {
        let before = spool(&[("example_com", b"A1\n")], &[]);
        let own = spool(&[("example_com", b"A1\nB2\n")], &[]);
        let input = add_request(b"example.com", b"B2");
        assert!(check_request(&before, &own, &input, NOW).is_empty());
        let other = spool(&[("example_com", b"A1\nC3\n")], &[]);
        assert_eq!(
            broken(&check_request(&before, &other, &input, NOW)),
            ["4 only added or planted lines"]
        );
    }

    #[test]
    fn a_truncation_that_leaves_mail_in_deferred_breaks_invariant_2() {
        let before = spool(&[("example_com", b"A1\n")], &["deferred/A/A1"]);
        let after = spool(&[("example_com", b"")], &["deferred/A/A1"]);
        let input = send_site_request(b"example.com");
        assert_eq!(
            broken(&check_request(&before, &after, &input, NOW)),
            ["2 no mail left behind"]
        );
        let moved = spool(&[("example_com", b"")], &["incoming/A1"]);
        assert!(check_request(&before, &moved, &input, NOW).is_empty());
    }

    #[test]
    fn a_logfile_deleted_with_lines_breaks_invariant_3() {
        let before = spool(&[("example_com", b"A1\n")], &[]);
        let after = spool(&[], &[]);
        assert_eq!(
            broken(&check_request(&before, &after, &wakeup_trigger(), NOW)),
            ["3 no deleted lines"]
        );
        let empty = spool(&[("example_com", b"")], &[]);
        assert!(check_request(&empty, &after, &wakeup_trigger(), NOW).is_empty());
    }

    #[test]
    fn lines_leave_only_with_the_whole_logfile() {
        let before = spool(
            &[("example_com", b"A1\nB2\n")],
            &["incoming/A1", "incoming/B2"],
        );
        let after = spool(&[("example_com", b"B2\n")], &["incoming/A1", "incoming/B2"]);
        let input = send_site_request(b"example.com");
        assert_eq!(
            broken(&check_request(&before, &after, &input, NOW)),
            ["1 lines leave only by truncation"]
        );
    }

    #[test]
    fn a_last_line_ending_in_0xff_may_go_unread() {
        let before = spool(
            &[("example_com", b"A1\nB2\xff")],
            &["deferred/A/A1", "deferred/B/B2"],
        );
        let after = spool(&[("example_com", b"")], &["incoming/A1", "deferred/B/B2"]);
        let input = send_site_request(b"example.com");
        assert!(check_request(&before, &after, &input, NOW).is_empty());
    }

    #[test]
    fn requests_are_told_apart_from_the_clients_bytes() {
        assert_eq!(
            requested(&add_request(b"example.com", b"A1")),
            Requested::Add {
                queue_id: b"A1".to_vec()
            }
        );
        assert_eq!(requested(&wakeup_trigger()), Requested::Sends);
        assert_eq!(requested(b"x\0"), Requested::Other);
        assert_eq!(
            requested(&send_site_request(b"example.com")),
            Requested::Sends
        );
    }
}
