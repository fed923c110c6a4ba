//! What a request may leave behind when a file operation fails under it or
//! the server process crashes in its middle: the set of outcomes the model
//! accepts, for a fault-exploring run to hold a target to.
//!
//! The model does not know a target's system calls. It knows each request's
//! documented effects, in their documented order ([`Effect`]): open, lock,
//! write, read, set times, rename, truncate, unlink, unlock, the triggers
//! and the reply. From them:
//!
//! - **A crash** (the process dies between two of its calls) leaves the
//!   state reached by some prefix of the effects: the spool as it was just
//!   before one of them (or after the last), what the client and the queue
//!   manager had been sent by then, and `died`.
//! - **A failing operation** ([`Op`]: an open denied, a write out of space
//!   or with an I/O error, a rename with an I/O error) fails from some
//!   effect of that operation on, for the rest of the request (a full disk
//!   stays full). Where the real server logs a fatal error the process
//!   dies: no reply, and the next request is served by a fresh process.
//!   Where it warns it carries on, and the profile's departures decide the
//!   rest (a failed write answers FAIL under strict, a queue file that
//!   could not be moved keeps its logfile under strict).
//!
//! A crash cut between a write (or a read, or a truncation) and the rules'
//! own setting of a logfile's times leaves those times to the kernel's
//! clock, which a virtual clock cannot predict: such a logfile is
//! *unsettled* in an outcome, and its atime and mtime are not compared.

use std::collections::BTreeSet;

use flushbed_vocab::{Exchange, SpoolState, Time};

use crate::service::{Connection, Recorder};
use crate::Model;

pub use crate::service::{Effect, Op};

/// A fault injected into one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// The process dies between two of its file operations.
    Crash,
    /// An operation fails, from one of its calls on.
    Fails(Op),
}

/// One outcome the model accepts for a request under a fault.
#[derive(Debug, Clone)]
pub struct FaultOutcome {
    /// What the client and the queue manager see.
    pub exchange: Exchange,
    /// The model after this outcome, to go on from.
    pub model: Model,
    /// Logfiles whose times are the kernel's, not compared.
    pub unsettled: BTreeSet<String>,
    /// How this outcome comes about, for a report.
    pub how: String,
}

impl FaultOutcome {
    /// Whether a target's exchange and spool are this outcome.
    pub fn accepts(&self, exchange: &Exchange, spool: &SpoolState) -> bool {
        if *exchange != self.exchange {
            return false;
        }
        let expected = self.model.observe();
        if expected.queue_files != spool.queue_files {
            return false;
        }
        let names: BTreeSet<&String> = expected.logfiles.keys().collect();
        if names != spool.logfiles.keys().collect() {
            return false;
        }
        expected.logfiles.iter().all(|(name, want)| {
            let got = &spool.logfiles[name];
            let times_agree = self.unsettled.contains(name)
                || (want.atime == got.atime && want.mtime == got.mtime);
            want.content == got.content && want.mode == got.mode && times_agree
        })
    }

    /// The model to go on from, once a target's spool was found to be this
    /// outcome: unsettled logfiles take the times the target has.
    pub fn adopt(&self, spool: &SpoolState) -> Model {
        let mut model = self.model.clone();
        for name in &self.unsettled {
            if let (Some(log), Some(seen)) =
                (model.spool.logfiles.get_mut(name), spool.logfiles.get(name))
            {
                log.atime = seen.atime;
                log.mtime = seen.mtime;
            }
        }
        model
    }
}

impl Model {
    /// Every outcome the model accepts for one connection (as
    /// [`Model::connect`] takes it) under `fault`, without changing this
    /// model.
    pub fn fault_outcomes(
        &self,
        input: &[u8],
        now: Time,
        flush_dir_order: &[String],
        fault: Fault,
    ) -> Vec<FaultOutcome> {
        // The request as it goes without a fault: its effects, in order.
        let (clean, recorder) = self.recorded(input, now, flush_dir_order, Recorder::default());
        let mut outcomes = Vec::new();
        match fault {
            Fault::Crash => {
                for snapshot in &recorder.snapshots {
                    let mut model = self.clone();
                    model.spool = snapshot.spool.clone();
                    let mut exchange = snapshot.exchange.clone();
                    exchange.died = true;
                    outcomes.push(FaultOutcome {
                        exchange,
                        model,
                        unsettled: snapshot.unsettled.clone(),
                        how: format!("a crash just before {:?}", snapshot.before),
                    });
                }
                let (model, mut exchange) = clean;
                exchange.died = true;
                outcomes.push(FaultOutcome {
                    exchange,
                    model,
                    unsettled: recorder.unsettled,
                    how: "a crash after the last effect".to_string(),
                });
            }
            Fault::Fails(op) => {
                let count = recorder.seen.get(&op).copied().unwrap_or(0);
                for from in 0..count {
                    let plan = Recorder {
                        plan: Some((op, from)),
                        ..Recorder::default()
                    };
                    let ((model, exchange), recorder) =
                        self.recorded(input, now, flush_dir_order, plan);
                    outcomes.push(FaultOutcome {
                        exchange,
                        model,
                        unsettled: recorder.unsettled,
                        how: format!("{op:?} failing from its call #{from} in this request on"),
                    });
                }
            }
        }
        outcomes
    }

    /// One connection on a copy of this model, watched by `recorder`.
    fn recorded(
        &self,
        input: &[u8],
        now: Time,
        flush_dir_order: &[String],
        recorder: Recorder,
    ) -> ((Model, Exchange), Recorder) {
        let mut model = self.clone();
        let Ok(domains) = &self.domains else {
            let step = model.connect(input, now, flush_dir_order);
            return ((model, step.exchange), recorder);
        };
        let connection =
            Connection::new(&mut model.spool, domains, model.times, model.profile, now)
                .recorded(recorder);
        let (step, recorder) = connection.serve_recorded(input, flush_dir_order);
        ((model, step.exchange), recorder.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use flushbed_vocab::config::Environment;
    use flushbed_vocab::wire::{add_request, refresh_request, send_site_request};
    use flushbed_vocab::{FlushConfig, MainCf, Profile, QueueName, Status, Trigger};

    use super::*;
    use crate::wire::{status_reply, ANNOUNCEMENT};
    use crate::Tables;

    const NOW: Time = 1_800_000_000;

    fn model(main_cf: &str, profile: Profile) -> Model {
        let main = MainCf::parse(main_cf, "main.cf").expect("main.cf");
        let config = FlushConfig::from_main_cf(&main, &Environment::default()).expect("config");
        Model::new(&config, Tables::default(), profile)
    }

    fn replied(outcome: &FaultOutcome) -> Option<Vec<u8>> {
        outcome
            .exchange
            .output
            .strip_prefix(ANNOUNCEMENT)
            .filter(|rest| !rest.is_empty())
            .map(<[u8]>::to_vec)
    }

    #[test]
    fn a_failed_add_write_answers_ok_under_postfix_and_fail_under_strict() {
        for (profile, status) in [
            (Profile::Postfix, Status::Ok),
            (Profile::Strict, Status::Fail),
        ] {
            let m = model("fast_flush_domains = example.com\n", profile);
            let input = add_request(b"example.com", b"A1");
            let outcomes = m.fault_outcomes(&input, NOW, &[], Fault::Fails(Op::Write));
            assert_eq!(outcomes.len(), 1);
            assert_eq!(replied(&outcomes[0]), Some(status_reply(status.code())));
            assert!(!outcomes[0].exchange.died);
            assert_eq!(
                outcomes[0].model.observe().logfiles["example_com"].content,
                b""
            );
        }
    }

    #[test]
    fn a_denied_logfile_open_kills_add_in_both_profiles() {
        for profile in [Profile::Postfix, Profile::Strict] {
            let m = model("fast_flush_domains = example.com\n", profile);
            let input = add_request(b"example.com", b"A1");
            let outcomes = m.fault_outcomes(&input, NOW, &[], Fault::Fails(Op::Open));
            assert_eq!(outcomes.len(), 1);
            assert!(outcomes[0].exchange.died);
            assert_eq!(replied(&outcomes[0]), None);
            assert!(outcomes[0].model.observe().logfiles.is_empty());
        }
    }

    #[test]
    fn a_failed_rename_truncates_under_postfix_and_keeps_the_logfile_under_strict() {
        for (profile, kept) in [
            (Profile::Postfix, &b""[..]),
            (Profile::Strict, &b"A1\nB2\n"[..]),
        ] {
            let mut m = model("fast_flush_domains = example.com\n", profile);
            m.write_logfile("example_com", b"A1\nB2\n", 0o600, NOW - 60, NOW - 60);
            m.plant_queue_file("A1", QueueName::Deferred, 0o700, NOW, NOW);
            m.plant_queue_file("B2", QueueName::Deferred, 0o700, NOW, NOW);
            let input = send_site_request(b"example.com");
            let outcomes = m.fault_outcomes(&input, NOW, &[], Fault::Fails(Op::Rename));

            // The first rename failing (and so the second), or only the second.
            assert_eq!(outcomes.len(), 2);
            let first = outcomes[0].model.observe();
            assert_eq!(first.logfiles["example_com"].content, kept, "{profile:?}");
            assert!(first
                .find_queue_file("A1")
                .is_some_and(|f| f.0 == QueueName::Deferred));
            let second = outcomes[1].model.observe();
            assert!(second
                .find_queue_file("A1")
                .is_some_and(|f| f.0 == QueueName::Incoming));
            assert_eq!(
                outcomes[1].exchange.triggers,
                vec![Trigger::FlushDead, Trigger::ScanIncoming]
            );
        }
    }

    #[test]
    fn a_crash_leaves_any_prefix_of_a_send_in_order() {
        let mut m = model("fast_flush_domains = example.com\n", Profile::Strict);
        m.write_logfile("example_com", b"A1\n", 0o600, NOW - 60, NOW - 60);
        m.plant_queue_file("A1", QueueName::Deferred, 0o700, NOW, NOW);
        let input = send_site_request(b"example.com");
        let outcomes = m.fault_outcomes(&input, NOW, &[], Fault::Crash);
        assert!(outcomes.iter().all(|o| o.exchange.died));

        // Mail moves before the logfile is truncated, never after.
        for outcome in &outcomes {
            let state = outcome.model.observe();
            let truncated = state.logfiles["example_com"].content.is_empty();
            let moved = state
                .find_queue_file("A1")
                .is_some_and(|f| f.0 == QueueName::Incoming);
            assert!(!truncated || moved, "{}", outcome.how);
        }
        let replies = outcomes.iter().filter(|o| replied(o).is_some()).count();
        assert_eq!(
            replies, 1,
            "only a crash after the last effect follows the reply"
        );
    }

    #[test]
    fn a_crash_in_a_refresh_comes_after_its_reply_or_before_any_work() {
        let main_cf = "fast_flush_domains = example.com\nfast_flush_purge_time = 1s\n";
        let m = {
            let mut m = model(main_cf, Profile::Strict);
            m.write_logfile("example_com", b"", 0o600, NOW - 60, NOW - 60);
            m
        };
        let outcomes = m.fault_outcomes(&refresh_request(), NOW, &[], Fault::Crash);
        for outcome in &outcomes {
            let gone = !outcome.model.observe().logfiles.contains_key("example_com");
            assert!(!gone || replied(outcome).is_some(), "{}", outcome.how);
        }
        assert!(outcomes
            .iter()
            .any(|o| !o.model.observe().logfiles.contains_key("example_com")));
    }

    #[test]
    fn an_unsettled_logfile_is_accepted_with_any_times() {
        let m = model("fast_flush_domains = example.com\n", Profile::Strict);
        let input = add_request(b"example.com", b"A1");
        let outcomes = m.fault_outcomes(&input, NOW, &[], Fault::Crash);
        let after_write = outcomes
            .iter()
            .find(|o| o.how.contains("Unlock"))
            .expect("a crash just before the unlock");
        let mut seen = after_write.model.observe();
        if let Some(log) = seen.logfiles.get_mut("example_com") {
            log.mtime = 12345;
        }
        assert!(after_write.accepts(&after_write.exchange, &seen));
        assert_eq!(after_write.adopt(&seen).observe(), seen);
    }
}
