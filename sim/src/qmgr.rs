//! A simulated queue manager, as far as flush(8) depends on it.
//!
//! The real queue manager scans `incoming/` when told (`I`) and `deferred/`
//! every `queue_run_delay` (or when told, `D`), moves what it picks into
//! `active/`, has delivery agents try each recipient, and puts the message
//! back into `deferred/` with its times set into the future when some
//! recipients are left. Each deferred recipient is an `add` to the flush
//! server: that is how logfiles fill. This module plays that part:
//!
//! - a message is a queue ID with recipients (the site is what follows the
//!   right-most `@`), an arrival time and a sender;
//! - a site is up or down on a timeline; an attempt to an up site
//!   delivers, to a down site defers and makes the site *dead* for
//!   `minimal_backoff_time`, during which mail for it is deferred without
//!   an attempt; `F` forgets every dead site;
//! - a scan skips a file whose mtime is more than a second in the future
//!   (unless `A` came with the request) and a file that is not ready
//!   (owner read, write and execute); reading a file with the group-read
//!   bit clears the bit and forgets the dead state of its sites;
//! - after an attempt with recipients left, the message is bounced and
//!   removed once older than `maximal_queue_lifetime`
//!   (`bounce_queue_lifetime` for the null sender), and otherwise goes to
//!   `deferred/` with atime and mtime at now plus its age, clamped to
//!   [`minimal_backoff_time`, `maximal_backoff_time`];
//! - a message with no recipients left is removed.
//!
//! The queue manager does not keep its own idea of where a file is: it
//! reads that from the reference spool (the model's), and makes its moves
//! and its `add` requests through a [`World`], which applies them to both
//! sides of the lockstep.
//!
//! # Limitations
//!
//! Bounces are not delivered anywhere (no new message to the sender), and
//! dead transports (`transport_retry_time`) are not modelled: every
//! recipient goes through the one transport, and only destinations die.
//! Address-verification probes are not simulated.

use std::collections::{BTreeMap, BTreeSet};

use flushbed_vocab::{FlushConfig, QueueName, SpoolState, Time, Trigger};

/// The timers of the queue manager, from `main.cf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QmgrTimers {
    pub minimal_backoff_time: i64,
    pub maximal_backoff_time: i64,
    pub queue_run_delay: i64,
    pub maximal_queue_lifetime: i64,
    pub bounce_queue_lifetime: i64,
}

impl QmgrTimers {
    pub fn from_config(config: &FlushConfig) -> QmgrTimers {
        QmgrTimers {
            minimal_backoff_time: config.minimal_backoff_time,
            maximal_backoff_time: config.maximal_backoff_time,
            queue_run_delay: config.queue_run_delay,
            maximal_queue_lifetime: config.maximal_queue_lifetime,
            bounce_queue_lifetime: config.bounce_queue_lifetime,
        }
    }
}

/// One recipient of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub address: Vec<u8>,
    /// What follows the right-most `@`, as written: the site of its `add`.
    /// A recipient without a domain is never added.
    pub site: Option<Vec<u8>>,
    /// The destination the queue manager keeps up, down or dead: the site
    /// folded to lower case (destinations are case-insensitive).
    pub destination: Vec<u8>,
    pub delivered: bool,
}

/// A message the queue manager knows the recipients of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub recipients: Vec<Recipient>,
    pub arrival: Time,
    pub sender: String,
}

impl Message {
    pub fn new(recipients: &[Vec<u8>], arrival: Time, sender: &str) -> Message {
        Message {
            recipients: recipients
                .iter()
                .map(|address| Recipient {
                    address: address.clone(),
                    site: site_of(address).map(<[u8]>::to_vec),
                    destination: destination(site_of(address).unwrap_or(address)),
                    delivered: false,
                })
                .collect(),
            arrival,
            sender: sender.to_string(),
        }
    }
}

/// The site of an address: the part after the right-most `@`, if it is
/// not empty (the delivery agents' condition for an `add`).
pub fn site_of(address: &[u8]) -> Option<&[u8]> {
    let at = address.iter().rposition(|b| *b == b'@')?;
    Some(&address[at + 1..]).filter(|site| !site.is_empty())
}

/// A destination's key: queue names are folded to lower case.
pub fn destination(site: &[u8]) -> Vec<u8> {
    site.to_ascii_lowercase()
}

/// What the queue manager acts on: the reference spool to read, both sides
/// to change, and the flush server to tell about deferrals.
pub trait World {
    type Error;

    /// The reference spool, where every queue file is.
    fn spool(&self) -> &SpoolState;

    /// Moves (or re-modes, or re-times) a queue file on both sides.
    fn put_queue_file(
        &mut self,
        queue_id: &str,
        queue: QueueName,
        mode: u32,
        atime: Time,
        mtime: Time,
    ) -> Result<(), Self::Error>;

    /// Removes a queue file on both sides.
    fn remove_queue_file(&mut self, queue_id: &str) -> Result<(), Self::Error>;

    /// A delivery agent deferred a recipient of this site: `flush_add`.
    fn deferred(&mut self, site: &[u8], queue_id: &str) -> Result<(), Self::Error>;

    /// One fact for the narration.
    fn note(&mut self, text: String);
}

/// The simulated queue manager.
#[derive(Debug, Clone)]
pub struct QueueManager {
    timers: QmgrTimers,
    messages: BTreeMap<String, Message>,
    up: BTreeMap<Vec<u8>, bool>,
    dead_until: BTreeMap<Vec<u8>, Time>,
    next_deferred_scan: Time,
}

/// The group-read bit: "unthrottle this message's destinations when read".
const UNTHROTTLE: u32 = 0o040;
/// Owner read, write and execute: the file is ready.
const READY: u32 = 0o700;

impl QueueManager {
    /// A queue manager started at `start`, with these sites up or down.
    pub fn new(timers: QmgrTimers, sites: &BTreeMap<Vec<u8>, bool>, start: Time) -> QueueManager {
        QueueManager {
            timers,
            messages: BTreeMap::new(),
            up: sites
                .iter()
                .map(|(site, up)| (destination(site), *up))
                .collect(),
            dead_until: BTreeMap::new(),
            next_deferred_scan: start + timers.queue_run_delay,
        }
    }

    /// Learns the recipients of a queue file.
    pub fn know(&mut self, queue_id: &str, message: Message) {
        self.messages.insert(queue_id.to_string(), message);
    }

    /// Forgets a queue file (it was removed by hand).
    pub fn forget(&mut self, queue_id: &str) {
        self.messages.remove(queue_id);
    }

    /// The messages still known, by queue ID.
    pub fn messages(&self) -> &BTreeMap<String, Message> {
        &self.messages
    }

    /// A site comes up or goes down.
    pub fn set_site(&mut self, site: &[u8], up: bool) {
        self.up.insert(destination(site), up);
    }

    /// When the next periodic deferred scan is due.
    pub fn next_deferred_scan(&self) -> Time {
        self.next_deferred_scan
    }

    /// The periodic deferred scan due at `now`.
    pub fn run_deferred_scan<W: World>(
        &mut self,
        now: Time,
        world: &mut W,
    ) -> Result<(), W::Error> {
        self.next_deferred_scan = now + self.timers.queue_run_delay;
        world.note("queue manager: periodic scan of deferred/".to_string());
        self.scan(QueueName::Deferred, now, false, world)
    }

    /// The triggers that one request sent, as one batch: `F` forgets dead
    /// sites at once; `A` makes this batch's scans ignore time stamps; then
    /// `I` scans incoming and `D` deferred.
    pub fn on_triggers<W: World>(
        &mut self,
        triggers: &[Trigger],
        now: Time,
        world: &mut W,
    ) -> Result<(), W::Error> {
        if triggers.contains(&Trigger::FlushDead) && !self.dead_until.is_empty() {
            world.note("queue manager: F forgets every dead site".to_string());
            self.dead_until.clear();
        }
        let all = triggers.contains(&Trigger::ScanAll);
        if triggers.contains(&Trigger::ScanIncoming) {
            self.scan(QueueName::Incoming, now, all, world)?;
        }
        if triggers.contains(&Trigger::ScanDeferred) {
            self.scan(QueueName::Deferred, now, all, world)?;
        }
        Ok(())
    }

    /// A message arrived in `incoming/`: cleanup tells the queue manager.
    pub fn on_arrival<W: World>(&mut self, now: Time, world: &mut W) -> Result<(), W::Error> {
        self.scan(QueueName::Incoming, now, false, world)
    }

    fn scan<W: World>(
        &mut self,
        queue: QueueName,
        now: Time,
        all: bool,
        world: &mut W,
    ) -> Result<(), W::Error> {
        // The candidates are read first: the moves below change the spool.
        let prefix = format!("{}/", queue.dir());
        let candidates: Vec<(String, u32, Time)> = world
            .spool()
            .queue_files
            .iter()
            .filter(|(path, _)| path.starts_with(&prefix))
            .filter_map(|(path, state)| {
                let id = path.rsplit('/').next()?;
                Some((id.to_string(), state.mode, state.mtime))
            })
            .collect();

        for (id, mode, mtime) in candidates {
            if !self.messages.contains_key(&id) {
                continue;
            }
            if !all && mtime > now + 1 {
                world.note(format!(
                    "queue manager: {id} in {queue} skipped, its mtime is {}s in the future",
                    mtime - now
                ));
                continue;
            }
            if mode & READY != READY {
                world.note(format!("queue manager: {id} in {queue} skipped, not ready"));
                continue;
            }
            self.attempt(&id, mode, now, world)?;
        }
        Ok(())
    }

    /// One delivery attempt of a message just picked from a queue.
    fn attempt<W: World>(
        &mut self,
        id: &str,
        mode: u32,
        now: Time,
        world: &mut W,
    ) -> Result<(), W::Error> {
        let Some(mut message) = self.messages.remove(id) else {
            return Ok(());
        };

        // Reading a file marked for unthrottling clears the mark and gives
        // its sites another chance.
        let mode = if mode & UNTHROTTLE != 0 {
            for r in message.recipients.iter().filter(|r| !r.delivered) {
                if self.dead_until.remove(&r.destination).is_some() {
                    world.note(format!(
                        "queue manager: {id} was marked, {} is no longer dead",
                        String::from_utf8_lossy(&r.destination)
                    ));
                }
            }
            mode & !UNTHROTTLE
        } else {
            mode
        };
        let (atime, mtime) = world
            .spool()
            .find_queue_file(id)
            .map_or((now, now), |(_, _, state)| (state.atime, state.mtime));
        world.put_queue_file(id, QueueName::Active, mode, atime, mtime)?;

        // Each recipient: delivered, deferred after a failed attempt, or
        // deferred without one while its site is dead.
        let mut deferred = Vec::new();
        for r in message.recipients.iter_mut().filter(|r| !r.delivered) {
            let dest = String::from_utf8_lossy(&r.destination).into_owned();
            let address = String::from_utf8_lossy(&r.address).into_owned();
            if self
                .dead_until
                .get(&r.destination)
                .is_some_and(|until| *until > now)
            {
                world.note(format!(
                    "queue manager: {id} to {address}: deferred, delivery temporarily suspended \
                     ({dest} is dead)"
                ));
                deferred.push(r.site.clone());
            } else if self.up.get(&r.destination).copied().unwrap_or(false) {
                world.note(format!("queue manager: {id} to {address}: delivered"));
                r.delivered = true;
            } else {
                world.note(format!(
                    "queue manager: {id} to {address}: deferred, {dest} is down (dead for {}s)",
                    self.timers.minimal_backoff_time
                ));
                let until = now + self.timers.minimal_backoff_time;
                self.dead_until.insert(r.destination.clone(), until);
                deferred.push(r.site.clone());
            }
        }

        // The delivery agent tells the flush server of each deferred
        // recipient that has a domain.
        for site in deferred.iter().flatten() {
            world.deferred(site, id)?;
        }

        // What is left: nothing (removed), too old (bounced), or back to
        // deferred/ with its times moved into the future.
        if message.recipients.iter().all(|r| r.delivered) {
            world.note(format!(
                "queue manager: {id} delivered to every recipient, removed"
            ));
            return world.remove_queue_file(id);
        }
        let lifetime = if message.sender.is_empty() {
            self.timers.bounce_queue_lifetime
        } else {
            self.timers.maximal_queue_lifetime
        };
        if now > message.arrival + lifetime {
            world.note(format!(
                "queue manager: {id} expired, returned to sender and removed"
            ));
            return world.remove_queue_file(id);
        }
        let delay = (now - message.arrival)
            .min(self.timers.maximal_backoff_time)
            .max(self.timers.minimal_backoff_time);
        world.note(format!(
            "queue manager: {id} to deferred/, next try in {delay}s"
        ));
        world.put_queue_file(id, QueueName::Deferred, mode, now + delay, now + delay)?;
        self.messages.insert(id.to_string(), message);
        Ok(())
    }

    /// The sites that are dead at `now`, for the narration.
    pub fn dead_sites(&self, now: Time) -> BTreeSet<Vec<u8>> {
        self.dead_until
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(s, _)| s.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flushbed_vocab::QueueFileState;

    /// A spool of queue files only, moved as the queue manager says.
    #[derive(Default)]
    struct Spool {
        state: SpoolState,
        adds: Vec<String>,
    }

    impl World for Spool {
        type Error = ();
        fn spool(&self) -> &SpoolState {
            &self.state
        }
        fn put_queue_file(
            &mut self,
            id: &str,
            queue: QueueName,
            mode: u32,
            atime: Time,
            mtime: Time,
        ) -> Result<(), ()> {
            self.remove_queue_file(id)?;
            self.state.queue_files.insert(
                format!("{queue}/{id}"),
                QueueFileState { mode, atime, mtime },
            );
            Ok(())
        }
        fn remove_queue_file(&mut self, id: &str) -> Result<(), ()> {
            self.state
                .queue_files
                .retain(|path, _| path.rsplit('/').next() != Some(id));
            Ok(())
        }
        fn deferred(&mut self, site: &[u8], id: &str) -> Result<(), ()> {
            self.adds
                .push(format!("{} {id}", String::from_utf8_lossy(site)));
            Ok(())
        }
        fn note(&mut self, _: String) {}
    }

    const T0: Time = 1_000_000;

    fn timers() -> QmgrTimers {
        QmgrTimers {
            minimal_backoff_time: 300,
            maximal_backoff_time: 4000,
            queue_run_delay: 300,
            maximal_queue_lifetime: 5 * 86400,
            bounce_queue_lifetime: 86400,
        }
    }

    fn qmgr_with(sites: &[(&str, bool)]) -> QueueManager {
        let sites = sites
            .iter()
            .map(|(s, up)| (s.as_bytes().to_vec(), *up))
            .collect();
        QueueManager::new(timers(), &sites, T0)
    }

    fn submit(q: &mut QueueManager, w: &mut Spool, id: &str, rcpts: &[&str], arrival: Time) {
        let rcpts: Vec<Vec<u8>> = rcpts.iter().map(|r| r.as_bytes().to_vec()).collect();
        q.know(id, Message::new(&rcpts, arrival, "s@example.invalid"));
        w.put_queue_file(id, QueueName::Incoming, 0o700, arrival, arrival)
            .unwrap();
    }

    #[test]
    fn the_site_is_right_of_the_right_most_at() {
        assert_eq!(site_of(b"\"a@b\"@example.com"), Some(&b"example.com"[..]));
        assert_eq!(site_of(b"postmaster"), None);
        assert_eq!(site_of(b"user@"), None);
    }

    #[test]
    fn a_deferred_recipient_adds_and_backs_off_by_the_clamped_age() {
        let mut q = qmgr_with(&[("up.example", true)]);
        let mut w = Spool::default();
        submit(
            &mut q,
            &mut w,
            "A1",
            &["a@up.example", "b@down.example"],
            T0 - 1000,
        );
        q.on_arrival(T0, &mut w).unwrap();
        assert_eq!(w.adds, vec!["down.example A1"]);
        let state = w.state.queue_files["deferred/A1"];
        assert_eq!((state.atime, state.mtime), (T0 + 1000, T0 + 1000));

        // A young message backs off by the minimum.
        submit(&mut q, &mut w, "B2", &["c@down.example"], T0);
        q.on_arrival(T0 + 10, &mut w).unwrap();
        assert_eq!(w.state.queue_files["deferred/B2"].mtime, T0 + 10 + 300);
    }

    #[test]
    fn destinations_are_case_insensitive_but_adds_keep_the_case_written() {
        let mut q = qmgr_with(&[("example.com", false)]);
        let mut w = Spool::default();
        submit(&mut q, &mut w, "A1", &["a@EXAMPLE.com", "local"], T0);
        q.on_arrival(T0, &mut w).unwrap();
        assert_eq!(w.adds, vec!["EXAMPLE.com A1"]);

        q.set_site(b"Example.COM", true);
        q.set_site(b"local", true);
        w.put_queue_file("A1", QueueName::Incoming, 0o700, T0 + 1, T0 + 1)
            .unwrap();
        q.on_triggers(&[Trigger::FlushDead, Trigger::ScanIncoming], T0 + 1, &mut w)
            .unwrap();
        assert!(w.state.queue_files.is_empty());
    }

    #[test]
    fn a_dead_site_defers_without_an_attempt_until_f() {
        let mut q = qmgr_with(&[]);
        let mut w = Spool::default();
        submit(&mut q, &mut w, "A1", &["a@down.example"], T0);
        q.on_arrival(T0, &mut w).unwrap();
        assert_eq!(q.dead_sites(T0 + 299).len(), 1);

        // The site comes up but stays dead until F.
        q.set_site(b"down.example", true);
        w.put_queue_file("A1", QueueName::Incoming, 0o700, T0 + 5, T0 + 5)
            .unwrap();
        q.on_triggers(&[Trigger::ScanIncoming], T0 + 5, &mut w)
            .unwrap();
        assert!(w.state.queue_files.contains_key("deferred/A1"));
        assert_eq!(w.adds.len(), 2);

        w.put_queue_file("A1", QueueName::Incoming, 0o700, T0 + 6, T0 + 6)
            .unwrap();
        q.on_triggers(&[Trigger::FlushDead, Trigger::ScanIncoming], T0 + 6, &mut w)
            .unwrap();
        assert!(w.state.queue_files.is_empty());
        assert!(q.messages().is_empty());
    }

    #[test]
    fn a_scan_skips_future_files_unless_a_and_files_not_ready() {
        let mut q = qmgr_with(&[("up.example", true)]);
        let mut w = Spool::default();
        submit(&mut q, &mut w, "A1", &["a@up.example"], T0);
        w.put_queue_file("A1", QueueName::Deferred, 0o700, T0 + 2, T0 + 2)
            .unwrap();
        submit(&mut q, &mut w, "B2", &["b@up.example"], T0);
        w.put_queue_file("B2", QueueName::Deferred, 0o600, T0, T0)
            .unwrap();

        q.on_triggers(&[Trigger::ScanDeferred], T0, &mut w).unwrap();
        assert_eq!(w.state.queue_files.len(), 2);
        q.on_triggers(&[Trigger::ScanAll, Trigger::ScanDeferred], T0, &mut w)
            .unwrap();
        assert_eq!(
            w.state.queue_files.keys().collect::<Vec<_>>(),
            vec!["deferred/B2"]
        );
    }

    #[test]
    fn reading_a_marked_file_clears_the_mark_and_revives_its_sites() {
        let mut q = qmgr_with(&[]);
        let mut w = Spool::default();
        submit(&mut q, &mut w, "A1", &["a@x.example"], T0);
        q.on_arrival(T0, &mut w).unwrap();
        q.set_site(b"x.example", true);
        w.put_queue_file("A1", QueueName::Incoming, 0o740, T0 + 1, T0 + 1)
            .unwrap();
        q.on_triggers(&[Trigger::ScanIncoming], T0 + 1, &mut w)
            .unwrap();
        assert!(w.state.queue_files.is_empty());
    }

    #[test]
    fn expiry_is_strictly_after_the_lifetime_and_shorter_for_the_null_sender() {
        let mut q = qmgr_with(&[]);
        let mut w = Spool::default();
        q.know("A1", Message::new(&[b"a@x.example".to_vec()], T0, ""));
        w.put_queue_file("A1", QueueName::Incoming, 0o700, T0, T0)
            .unwrap();
        q.on_arrival(T0 + 86400, &mut w).unwrap();
        assert!(w.state.queue_files.contains_key("deferred/A1"));

        w.put_queue_file("A1", QueueName::Incoming, 0o700, T0, T0)
            .unwrap();
        q.on_arrival(T0 + 86401, &mut w).unwrap();
        assert!(w.state.queue_files.is_empty());
        assert_eq!(w.adds.len(), 2);
    }

    #[test]
    fn files_without_known_recipients_are_left_alone() {
        let mut q = qmgr_with(&[]);
        let mut w = Spool::default();
        w.put_queue_file("Z9", QueueName::Incoming, 0o700, T0, T0)
            .unwrap();
        q.on_arrival(T0, &mut w).unwrap();
        assert!(w.state.queue_files.contains_key("incoming/Z9"));
    }
}
