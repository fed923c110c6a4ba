//! Shrinking: from a case that diverged, a smallest case that still
//! diverges the same way, found by re-running the lockstep at every step.
//!
//! Delta debugging on the events first: drop chunks of half the timeline,
//! then quarters, down to single events, for as long as something can go.
//! Then each remaining event is made simpler, one candidate at a time:
//! an earlier time (the gap before it closed, halved, or one second less,
//! with every later event and file time moved along so that boundaries
//! stay boundaries), shorter logfile contents and raw requests, the
//! simplest site and queue ID, fewer recipients, plainer files. Last the
//! configuration: the queue manager and the wakeups off, each `main.cf`
//! line and each file left out. The whole round repeats until nothing
//! changes or the budget of runs is spent.
//!
//! Dropping an event keeps every other event at its time; a later event
//! never moves before an earlier one.

use flushbed_vocab::QueueName;

use super::case::{Case, START};
use super::generate::{SIMPLE_ID, SIMPLE_SITE};
use crate::scenario::{Action, DEFAULT_SENDER};

/// What the shrinker found, and what it cost.
#[derive(Debug, Clone)]
pub struct Shrunk<F> {
    pub case: Case,
    /// The failure of the shrunk case.
    pub failure: F,
    /// Lockstep runs made while shrinking.
    pub runs: usize,
}

/// Shrinks `case`, whose failure is `failure`. `fails` runs a candidate and
/// says how it failed, if it did the same way (`None` otherwise); at most
/// `budget` candidates are run.
pub fn shrink<F>(
    case: &Case,
    failure: F,
    budget: usize,
    fails: &mut dyn FnMut(&Case) -> Option<F>,
) -> Shrunk<F> {
    let mut s = Shrinker {
        best: case.clone(),
        failure,
        runs: 0,
        budget,
        fails,
    };
    loop {
        let before = s.best.clone();
        s.drop_events();
        s.simplify_events();
        s.simplify_config();
        if s.best == before || s.runs >= s.budget {
            break;
        }
    }
    Shrunk {
        case: s.best,
        failure: s.failure,
        runs: s.runs,
    }
}

struct Shrinker<'a, F> {
    best: Case,
    failure: F,
    runs: usize,
    budget: usize,
    fails: &'a mut dyn FnMut(&Case) -> Option<F>,
}

impl<F> Shrinker<'_, F> {
    /// Runs a candidate; keeps it when it fails the same way.
    fn try_case(&mut self, candidate: Case) -> bool {
        if self.runs >= self.budget || candidate == self.best {
            return false;
        }
        self.runs += 1;
        match (self.fails)(&candidate) {
            Some(failure) => {
                self.best = candidate;
                self.failure = failure;
                true
            }
            None => false,
        }
    }

    fn drop_events(&mut self) {
        let mut chunk = self.best.events.len().div_ceil(2).max(1);
        loop {
            let mut i = 0;
            while i < self.best.events.len() {
                let mut candidate = self.best.clone();
                let end = (i + chunk).min(candidate.events.len());
                candidate.events.drain(i..end);
                if !self.try_case(candidate) {
                    i += chunk;
                }
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
    }

    fn simplify_events(&mut self) {
        let mut i = 0;
        while i < self.best.events.len() {
            let mut changed = true;
            while changed {
                changed = false;
                for candidate in candidates(&self.best, i) {
                    if self.try_case(candidate) {
                        changed = true;
                        break;
                    }
                }
            }
            i += 1;
        }
    }

    fn simplify_config(&mut self) {
        if self.best.queue_manager {
            let mut c = self.best.clone();
            c.queue_manager = false;
            self.try_case(c);
        }
        if self.best.flush_wakeup != "0" {
            let mut c = self.best.clone();
            c.flush_wakeup = "0".to_string();
            self.try_case(c);
        }
        if !self.best.sites.is_empty() {
            let mut c = self.best.clone();
            c.sites.clear();
            self.try_case(c);
        }
        let mut line = 0;
        while line < self.best.main_cf.len() {
            let mut c = self.best.clone();
            c.main_cf.remove(line);
            if !self.try_case(c) {
                line += 1;
            }
        }
        let names: Vec<String> = self.best.files.keys().cloned().collect();
        for name in names {
            let mut c = self.best.clone();
            c.files.remove(&name);
            self.try_case(c);
        }
    }
}

/// Simpler versions of event `i` of `case`, most drastic first.
fn candidates(case: &Case, i: usize) -> Vec<Case> {
    let mut out = Vec::new();

    // An earlier time: the gap closed, halved, one second less.
    let previous = if i == 0 { 0 } else { case.events[i - 1].at };
    let gap = case.events[i].at - previous;
    let mut gaps = vec![gap, gap / 2, 1];
    gaps.dedup();
    for delta in gaps.into_iter().filter(|d| *d > 0 && *d <= gap) {
        let mut c = case.clone();
        shift_from(&mut c, i, delta);
        out.push(c);
    }

    // The action itself, made plainer.
    for action in simpler_actions(&case.events[i].action, START + case.events[i].at) {
        let mut c = case.clone();
        c.events[i].action = action;
        out.push(c);
    }
    out
}

/// Moves event `i` and every later one (with the file times they set)
/// `delta` seconds earlier.
fn shift_from(case: &mut Case, i: usize, delta: i64) {
    for event in &mut case.events[i..] {
        event.at -= delta;
        match &mut event.action {
            Action::WriteLogfile(l) => {
                l.atime -= delta;
                l.mtime -= delta;
            }
            Action::PlantQueueFile(q) => {
                q.atime -= delta;
                q.mtime -= delta;
                q.arrival -= delta;
            }
            _ => {}
        }
    }
}

/// Byte strings one step shorter: without the last half, without the last
/// byte, empty.
fn shorter(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if !bytes.is_empty() {
        out.push(Vec::new());
        out.push(bytes[..bytes.len() / 2].to_vec());
        out.push(bytes[..bytes.len() - 1].to_vec());
    }
    out.dedup();
    out
}

/// The lines of a logfile's content, each left out in turn.
fn fewer_lines(content: &[u8]) -> Vec<Vec<u8>> {
    let lines: Vec<&[u8]> = content.split_inclusive(|b| *b == b'\n').collect();
    let mut out = vec![Vec::new()];
    if lines.len() > 1 {
        for skip in 0..lines.len() {
            let kept: Vec<u8> = lines
                .iter()
                .enumerate()
                .filter(|(n, _)| *n != skip)
                .flat_map(|(_, l)| l.iter().copied())
                .collect();
            out.push(kept);
        }
    }
    out
}

fn fewer<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return Vec::new();
    }
    (0..items.len())
        .map(|skip| {
            items
                .iter()
                .enumerate()
                .filter(|(n, _)| *n != skip)
                .map(|(_, x)| x.clone())
                .collect()
        })
        .collect()
}

fn simple_site(site: &[u8]) -> Option<Vec<u8>> {
    (site != SIMPLE_SITE.as_bytes()).then(|| SIMPLE_SITE.as_bytes().to_vec())
}

fn simple_id(id: &[u8]) -> Option<Vec<u8>> {
    (id != SIMPLE_ID.as_bytes()).then(|| SIMPLE_ID.as_bytes().to_vec())
}

fn simpler_actions(action: &Action, now: i64) -> Vec<Action> {
    let mut out = Vec::new();
    match action {
        Action::Submit {
            id,
            recipients,
            sender,
        } => {
            for r in fewer(recipients) {
                out.push(Action::Submit {
                    id: id.clone(),
                    recipients: r,
                    sender: sender.clone(),
                });
            }
            for (n, r) in recipients.iter().enumerate() {
                let simple = format!("u@{SIMPLE_SITE}").into_bytes();
                if *r != simple {
                    let mut rs = recipients.clone();
                    rs[n] = simple;
                    out.push(Action::Submit {
                        id: id.clone(),
                        recipients: rs,
                        sender: sender.clone(),
                    });
                }
            }
            if sender != DEFAULT_SENDER {
                out.push(Action::Submit {
                    id: id.clone(),
                    recipients: recipients.clone(),
                    sender: DEFAULT_SENDER.to_string(),
                });
            }
        }
        Action::Site { site, up } => {
            if let Some(s) = simple_site(site) {
                out.push(Action::Site { site: s, up: *up });
            }
        }
        Action::Etrn {
            args,
            helo,
            in_transaction,
        } => {
            for a in fewer(args) {
                out.push(Action::Etrn {
                    args: a,
                    helo: *helo,
                    in_transaction: *in_transaction,
                });
            }
            if args.len() == 1 {
                if let Some(s) = simple_site(&args[0]) {
                    out.push(Action::Etrn {
                        args: vec![s],
                        helo: *helo,
                        in_transaction: *in_transaction,
                    });
                }
            }
            if !helo || *in_transaction {
                out.push(Action::Etrn {
                    args: args.clone(),
                    helo: true,
                    in_transaction: false,
                });
            }
        }
        Action::PostqueueS { site } => {
            if let Some(s) = simple_site(site) {
                out.push(Action::PostqueueS { site: s });
            }
        }
        Action::SendSite { site } => {
            if let Some(s) = simple_site(site) {
                out.push(Action::SendSite { site: s });
            }
        }
        Action::PostqueueI { queue_id } => {
            if let Some(q) = simple_id(queue_id) {
                out.push(Action::PostqueueI { queue_id: q });
            }
        }
        Action::SendFile { queue_id } => {
            if let Some(q) = simple_id(queue_id) {
                out.push(Action::SendFile { queue_id: q });
            }
        }
        Action::Add { site, queue_id } => {
            if let Some(s) = simple_site(site) {
                out.push(Action::Add {
                    site: s,
                    queue_id: queue_id.clone(),
                });
            }
            if let Some(q) = simple_id(queue_id) {
                out.push(Action::Add {
                    site: site.clone(),
                    queue_id: q,
                });
            }
        }
        Action::Request { wire } => {
            for w in shorter(wire) {
                out.push(Action::Request { wire: w });
            }
        }
        Action::WriteLogfile(l) => {
            for content in fewer_lines(&l.content) {
                let mut s = l.clone();
                s.content = content;
                out.push(Action::WriteLogfile(s));
            }
            if l.atime != now || l.mtime != now {
                let mut s = l.clone();
                s.atime = now;
                s.mtime = now;
                out.push(Action::WriteLogfile(s));
            }
        }
        Action::PlantQueueFile(q) => {
            for r in fewer(&q.recipients) {
                let mut s = q.clone();
                s.recipients = r;
                out.push(Action::PlantQueueFile(s));
            }
            if !q.recipients.is_empty() {
                let mut s = q.clone();
                s.recipients.clear();
                out.push(Action::PlantQueueFile(s));
            }
            if q.atime != now || q.mtime != now || q.arrival != now {
                let mut s = q.clone();
                s.atime = now;
                s.mtime = now;
                s.arrival = now;
                out.push(Action::PlantQueueFile(s));
            }
            if q.mode != 0o700 {
                let mut s = q.clone();
                s.mode = 0o700;
                out.push(Action::PlantQueueFile(s));
            }
            if q.queue != QueueName::Deferred {
                let mut s = q.clone();
                s.queue = QueueName::Deferred;
                out.push(Action::PlantQueueFile(s));
            }
            if q.id != SIMPLE_ID {
                let mut s = q.clone();
                s.id = SIMPLE_ID.to_string();
                out.push(Action::PlantQueueFile(s));
            }
        }
        Action::PostqueueF
        | Action::Refresh
        | Action::Purge
        | Action::FlushRefresh
        | Action::FlushPurge
        | Action::Wakeup
        | Action::Advance
        | Action::RemoveLogfile { .. }
        | Action::RemoveQueueFile { .. }
        | Action::Check => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explore::case::CaseEvent;
    use crate::scenario::LogfileSpec;

    fn case_of(events: Vec<(i64, Action)>) -> Case {
        Case {
            main_cf: vec!["fast_flush_domains = example.com".into(), "a = b".into()],
            files: Default::default(),
            queue_manager: true,
            flush_wakeup: "30".into(),
            sites: Default::default(),
            events: events
                .into_iter()
                .map(|(at, action)| CaseEvent { at, action })
                .collect(),
        }
    }

    #[test]
    fn shrinking_keeps_only_the_events_the_failure_needs() {
        let mut events: Vec<(i64, Action)> = (0..20).map(|n| (n, Action::Refresh)).collect();
        events[7] = (7, Action::Purge);
        events[13] = (13, Action::Wakeup);
        let case = case_of(events);
        // "Fails" while it still holds a purge followed later by a wakeup.
        let mut fails = |c: &Case| {
            let kinds: Vec<&str> = c.events.iter().map(|e| e.action.kind()).collect();
            let p = kinds.iter().position(|k| *k == "purge")?;
            kinds[p..].contains(&"wakeup").then_some(())
        };
        let shrunk = shrink(&case, (), 1000, &mut fails);
        let kinds: Vec<&str> = shrunk.case.events.iter().map(|e| e.action.kind()).collect();
        assert_eq!(kinds, vec!["purge", "wakeup"]);
        // Times close up as far as the failure allows: both at the start.
        assert_eq!(shrunk.case.events[0].at, 0);
        assert!(!shrunk.case.queue_manager);
        assert!(shrunk.case.main_cf.is_empty());
    }

    #[test]
    fn shrinking_shortens_contents_and_keeps_boundaries_relative() {
        let log = LogfileSpec {
            name: "example_com".into(),
            content: b"A1\nBAD\nB2\n".to_vec(),
            mode: 0o600,
            atime: START + 100 - 60,
            mtime: START + 100 - 60,
        };
        let case = case_of(vec![
            (100, Action::WriteLogfile(log)),
            (161, Action::Refresh),
        ]);
        // Fails while the logfile holds BAD and the refresh comes more
        // than 60 s after the logfile's atime.
        let mut fails = |c: &Case| {
            let Action::WriteLogfile(l) = &c.events.first()?.action else {
                return None;
            };
            let refresh = c.events.iter().find(|e| e.action == Action::Refresh)?;
            let holds_bad = l.content.windows(3).any(|w| w == b"BAD");
            (holds_bad && START + refresh.at - l.atime > 60).then_some(())
        };
        let shrunk = shrink(&case, (), 1000, &mut fails);
        let Action::WriteLogfile(l) = &shrunk.case.events[0].action else {
            panic!("the logfile event went")
        };
        assert_eq!(l.content, b"BAD\n");
        assert_eq!(START + shrunk.case.events[1].at - l.atime, 61);
        assert_eq!(shrunk.case.events[0].at, 0);
    }

    #[test]
    fn shrinking_stops_at_the_budget() {
        let case = case_of((0..50).map(|n| (n, Action::Refresh)).collect());
        let mut fails = |_: &Case| Some(());
        let shrunk = shrink(&case, (), 5, &mut fails);
        assert_eq!(shrunk.runs, 5);
    }
}
