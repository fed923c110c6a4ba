//! The generator: from a run's seed and a case's index, a small random
//! configuration and a timeline of events in the scenario vocabulary.
//!
//! What it draws from is fixed here, as small alphabets chosen to reach the
//! corners of flush(8): sites that fold, collide, convert to their ASCII
//! form or are refused (`Example.COM`, `a-b.example` beside `a_b.example`,
//! `straße`, `Bücher`, `xn--`, the address literal `[127.0.0.1]`, a negated
//! and a parent-matched name, a trailing dot, the one-letter site `x`);
//! valid and invalid queue IDs; damaged logfiles; every request, trigger and
//! client; and time jumps placed on the refresh, purge, queue-run and wakeup
//! boundaries of earlier events (exactly on them, a second before, a second
//! after). The configuration is one of a handful of `fast_flush_domains`
//! lists with the parent style on or off, `smtputf8_enable` on or off, and
//! short timers.
//!
//! Only the seed and the index decide a case: nothing is iterated in hash
//! order, and nothing depends on how an earlier case ran.

use std::collections::BTreeMap;

use flushbed_vocab::{wire, QueueName};

use super::case::{Case, CaseEvent, START};
use super::draw::Draw;
use crate::scenario::{Action, LogfileSpec, QueueFileSpec, DEFAULT_SENDER};

/// The sites requests, clients and recipients name.
pub const SITES: &[&str] = &[
    "example.com",
    "Example.COM",
    "a.example.com",
    "under_score.example.com",
    "example.com.",
    "a-b.example",
    "a_b.example",
    "straße.example",
    "STRASSE.example",
    "Bücher.example",
    "bücher.example",
    "xn--bcher-kva.example",
    "xn--zz-.example",
    "ab--c.example",
    "[127.0.0.1]",
    "deny.example.org",
    "x.deny.example.org",
    "example.org",
    "sub.example.org",
    "dot.example",
    "a.dot.example",
    "x",
    "X",
    "other.example",
    "localhost",
    "-lead.example",
    "123.456",
    "a..example",
    "",
];

/// The simplest site, which the shrinker tries first.
pub const SIMPLE_SITE: &str = "example.com";

/// Queue IDs that are valid (letters and digits, the short hex format and
/// longer ones).
pub const VALID_IDS: &[&str] = &[
    "A1B2C3D4E5F",
    "B2C3D4E5F6A",
    "C3D4E5F6A7B",
    "D00D",
    "4XyZ1k2Lm3Nq",
    "0",
];

/// The simplest queue ID, which the shrinker tries first.
pub const SIMPLE_ID: &str = "A1B2C3D4E5F";

/// Queue IDs that a flush request must refuse.
const INVALID_IDS: &[&[u8]] = &[
    b"",
    b"A1-B2",
    b"A1.B2",
    b"A1 B2",
    b"A1B2\0junk",
    "Ä1".as_bytes(),
];

/// Logfile names as a damaged spool may hold them.
const LOGFILE_NAMES: &[&str] = &[
    "example_com",
    "a_example_com",
    "a_b_example",
    "xn__strae_oqa_example",
    "xn__bcher_kva_example",
    "example_org",
    "sub_example_org",
    "a_dot_example",
    "x",
    "y",
    "other_example",
    "Bad-Name",
    "localhost",
];

/// A raw request that is malformed in one way, or a stray trigger.
fn raw_requests() -> Vec<Vec<u8>> {
    let long_site = vec![b'a'; 1500];
    vec![
        Vec::new(),
        b"W\0".to_vec(),
        b"W".to_vec(),
        b"I\0".to_vec(),
        b"x".to_vec(),
        wire::attr_list(&[("request", "add"), ("site", "example.com")]),
        wire::attr_list(&[
            ("request", "add"),
            ("queue_id", "A1B2C3D4E5F"),
            ("site", "example.com"),
        ]),
        wire::attr_list(&[
            ("request", "send_site"),
            ("site", "example.com"),
            ("bogus", "v"),
        ]),
        wire::attr_list(&[("request", "bogus")]),
        wire::attr_list(&[("site", "example.com")]),
        b"request\0rfrsh".to_vec(),
        b"request\0send_file\0queue_id\0A1B2C3D4E5F\0".to_vec(),
        wire::add_request(&long_site, b"A1B2C3D4E5F"),
        wire::attr_list(&[("request", "purge"), ("extra", "1")]),
        b"request\0add\0site\0example.com\0queue_id\0A1B2C3D4E5F\0\0trailing".to_vec(),
    ]
}

/// The timers of a case that boundaries are placed on, in seconds.
struct Timers {
    refresh: i64,
    purge: i64,
    queue_run: i64,
    wakeup: i64,
    backoff: i64,
}

/// The configuration of a case, drawn first.
fn configure(d: &mut Draw) -> (Case, Timers) {
    let mut main_cf = Vec::new();
    let mut files = BTreeMap::new();

    // The domain list: one of a fixed handful.
    match d.below(7) {
        0 => main_cf.push(
            "fast_flush_domains = example.com, a-b.example, a_b.example, [127.0.0.1], \
             !deny.example.org, example.org, .dot.example, x, straße.example, bücher.example"
                .to_string(),
        ),
        1 => main_cf.push(
            "fast_flush_domains = Example.COM !x.deny.example.org deny.example.org \
             STRASSE.example xn--bcher-kva.example under_score.example.com x X"
                .to_string(),
        ),
        2 => {
            main_cf.push("fast_flush_domains = $config_directory/flush_domains".to_string());
            files.insert(
                "flush_domains".to_string(),
                b"example.com\n!deny.example.org example.org\n# a comment\nx\n".to_vec(),
            );
        }
        3 => {
            main_cf
                .push("fast_flush_domains = texthash:$config_directory/flush_table, x".to_string());
            files.insert(
                "flush_table".to_string(),
                "example.com 1\nExample.Org 1\nstraße.example 1\na_b.example 1\n"
                    .as_bytes()
                    .to_vec(),
            );
        }
        4 => main_cf.push(
            "fast_flush_domains = example.com, !deny.example.org, \
             texthash:$config_directory/absent_table, example.org"
                .to_string(),
        ),
        5 => main_cf.push("fast_flush_domains =".to_string()),
        // Unset: $relay_domains, which is $mydestination at level 0.
        _ => {}
    }

    // The parent style, UTF-8 and the compatibility level.
    match d.below(3) {
        0 => main_cf.push("parent_domain_matches_subdomains = fast_flush_domains".to_string()),
        1 => main_cf.push("parent_domain_matches_subdomains = debug_peer_list".to_string()),
        _ => {}
    }
    match d.below(3) {
        0 => main_cf.push("smtputf8_enable = yes".to_string()),
        1 => main_cf.push("smtputf8_enable = no".to_string()),
        _ => {}
    }
    if d.chance(30) {
        main_cf.push("compatibility_level = 3.6".to_string());
    }

    // Short timers, written in the ways Postfix reads them. The queue
    // manager's and the master's periods go with the flush timers, so that
    // a jump over a boundary is tens of scans and wakeups, not thousands.
    let (refresh, purge, queue_run, backoff, wakeups): (i64, i64, i64, i64, &[(&str, i64)]) =
        match d.below(3) {
            0 => {
                let (text, refresh) = *d.pick(&[("30s", 30), ("60s", 60), ("1m", 60)]);
                let (purge_text, purge) = *d.pick(&[("45s", 45), ("90s", 90)]);
                main_cf.push(format!("fast_flush_refresh_time = {text}"));
                main_cf.push(format!("fast_flush_purge_time = {purge_text}"));
                main_cf.push("queue_run_delay = 10s".to_string());
                main_cf.push("minimal_backoff_time = 10s".to_string());
                main_cf.push("maximal_backoff_time = 30s".to_string());
                (refresh, purge, 10, 10, &[("0", 0), ("30", 30), ("60?", 60)])
            }
            1 => {
                let (text, refresh) = *d.pick(&[("2minutes", 120), ("10m", 600)]);
                let (purge_text, purge) = *d.pick(&[("5m", 300), ("600s", 600)]);
                main_cf.push(format!("fast_flush_refresh_time = {text}"));
                main_cf.push(format!("fast_flush_purge_time = {purge_text}"));
                main_cf.push("queue_run_delay = 60s".to_string());
                main_cf.push("minimal_backoff_time = 60s".to_string());
                main_cf.push("maximal_backoff_time = 120s".to_string());
                (
                    refresh,
                    purge,
                    60,
                    60,
                    &[("0", 0), ("120", 120), ("100?", 100)],
                )
            }
            _ => {
                // A bare number takes the default's unit: hours, and days.
                let (text, refresh) = *d.pick(&[("1", 3600), ("1h", 3600)]);
                main_cf.push(format!("fast_flush_refresh_time = {text}"));
                main_cf.push("fast_flush_purge_time = 2h".to_string());
                (refresh, 7200, 300, 300, &[("0", 0), ("1000?", 1000)])
            }
        };
    if d.chance(15) {
        main_cf.push("maximal_queue_lifetime = 10m".to_string());
    }
    if d.chance(15) {
        main_cf.push("bounce_queue_lifetime = 2m".to_string());
    }
    match d.below(8) {
        0 => main_cf.push("hash_queue_names = deferred, incoming".to_string()),
        1 => main_cf.push("hash_queue_depth = 2".to_string()),
        _ => {}
    }
    if d.chance(10) {
        main_cf.push("smtpd_helo_required = yes".to_string());
    }

    // The world around the server.
    let queue_manager = d.chance(75);
    let (flush_wakeup, wakeup) = *d.pick(wakeups);
    let mut sites = BTreeMap::new();
    for _ in 0..d.below(3) {
        let site = *d.pick(SITES);
        if !site.is_empty() {
            sites.insert(site.to_string(), d.chance(50));
        }
    }

    let case = Case {
        main_cf,
        files,
        queue_manager,
        flush_wakeup: flush_wakeup.to_string(),
        sites,
        events: Vec::new(),
    };
    let timers = Timers {
        refresh,
        purge,
        queue_run,
        wakeup,
        backoff,
    };
    (case, timers)
}

/// The kinds of event, with their weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Submit,
    Site,
    Etrn,
    PostqueueS,
    PostqueueI,
    PostqueueF,
    Add,
    SendSite,
    SendFile,
    Refresh,
    Purge,
    FlushRefresh,
    FlushPurge,
    Wakeup,
    Request,
    Advance,
    WriteLogfile,
    RemoveLogfile,
    PlantQueueFile,
    RemoveQueueFile,
}

const KINDS: &[(u64, Kind)] = &[
    (10, Kind::Submit),
    (5, Kind::Site),
    (6, Kind::Etrn),
    (6, Kind::PostqueueS),
    (4, Kind::PostqueueI),
    (3, Kind::PostqueueF),
    (12, Kind::Add),
    (8, Kind::SendSite),
    (5, Kind::SendFile),
    (6, Kind::Refresh),
    (4, Kind::Purge),
    (2, Kind::FlushRefresh),
    (2, Kind::FlushPurge),
    (4, Kind::Wakeup),
    (4, Kind::Request),
    (5, Kind::Advance),
    (8, Kind::WriteLogfile),
    (2, Kind::RemoveLogfile),
    (6, Kind::PlantQueueFile),
    (2, Kind::RemoveQueueFile),
];

/// The case `index` of a run with seed `seed`, with `steps` events.
pub fn generate(seed: u64, index: u64, steps: usize) -> Case {
    let mut d = Draw::for_case(seed, index);
    let (mut case, timers) = configure(&mut d);
    let mut g = Timeline {
        now: 0,
        marks: vec![0],
        timers,
    };

    // A few files in place at the start, so that refresh and send find
    // something from the first event on.
    let setup = (d.below(4) as usize).min(steps);
    for _ in 0..setup {
        let action = if d.chance(60) {
            write_logfile(&mut d, &g)
        } else {
            plant_queue_file(&mut d, &g)
        };
        case.events.push(CaseEvent { at: 0, action });
    }

    for _ in setup..steps {
        g.jump(&mut d);
        let kind = d.weighted(KINDS);
        let action = event(&mut d, &g, kind);
        case.events.push(CaseEvent { at: g.now, action });
        g.marks.push(g.now);
    }
    case
}

/// The clock of the timeline being drawn, and the times earlier events
/// happened at (the references boundaries are placed on).
struct Timeline {
    now: i64,
    marks: Vec<i64>,
    timers: Timers,
}

impl Timeline {
    /// Moves the clock: not at all, a little, onto a boundary of an earlier
    /// event's time, or far.
    fn jump(&mut self, d: &mut Draw) {
        let next = match d.below(100) {
            0..=29 => self.now,
            30..=54 => self.now + d.between(1, 5),
            55..=89 => {
                let period = self.period(d);
                let mark = self.recent_mark(d);
                mark + period + d.between(-1, 1)
            }
            _ => self.now + d.between(1, 2 * self.timers.purge.max(self.timers.refresh)),
        };
        self.now = next.max(self.now);
    }

    /// A boundary length: a timer of the case, a second either side at most.
    fn period(&self, d: &mut Draw) -> i64 {
        let t = &self.timers;
        let candidates = [t.refresh, t.purge, t.queue_run, t.backoff, t.wakeup.max(1)];
        *d.pick(&candidates)
    }

    /// An earlier event's time, recent ones more likely.
    fn recent_mark(&self, d: &mut Draw) -> i64 {
        let n = self.marks.len() as u64;
        let back = d.below(n.min(6)) as usize;
        self.marks[self.marks.len() - 1 - back]
    }

    /// A file time for a damaged or planted file: now, or a boundary's
    /// length (give or take a second) before now, so that a refresh or a
    /// purge right away is on its edge.
    fn file_time(&self, d: &mut Draw) -> i64 {
        match d.below(4) {
            0 => START + self.now,
            1 => START + self.now - self.timers.refresh + d.between(-1, 1),
            2 => START + self.now - self.timers.purge + d.between(-1, 1),
            _ => START + self.now - d.between(0, 2 * self.timers.purge),
        }
    }
}

fn site(d: &mut Draw) -> Vec<u8> {
    d.pick(SITES).as_bytes().to_vec()
}

fn queue_id(d: &mut Draw) -> Vec<u8> {
    if d.chance(85) {
        d.pick(VALID_IDS).as_bytes().to_vec()
    } else {
        d.pick(INVALID_IDS).to_vec()
    }
}

fn recipients(d: &mut Draw) -> Vec<Vec<u8>> {
    let n = 1 + d.below(3);
    (0..n)
        .map(|i| {
            let mut address = format!("u{i}@").into_bytes();
            match d.below(20) {
                0 => address = b"nodomain".to_vec(),
                1 => address = b"a@b@example.com".to_vec(),
                _ => address.extend_from_slice(&site(d)),
            }
            address
        })
        .collect()
}

fn sender(d: &mut Draw) -> String {
    if d.chance(15) {
        String::new()
    } else {
        DEFAULT_SENDER.to_string()
    }
}

/// Logfile contents: valid lines, bad lines (empty, `\r`, NUL, invalid IDs),
/// duplicates, perhaps no final newline, perhaps a last byte 0xFF.
fn logfile_content(d: &mut Draw) -> Vec<u8> {
    let mut content = Vec::new();
    let lines = d.below(5);
    for n in 0..lines {
        let line: Vec<u8> = match d.below(10) {
            0 => Vec::new(),
            1 => [d.pick(VALID_IDS).as_bytes(), b"\r"].concat(),
            2 => [d.pick(VALID_IDS).as_bytes(), b"\0junk"].concat(),
            3 => b"BAD LINE".to_vec(),
            4 => b"A1-B2".to_vec(),
            _ => d.pick(VALID_IDS).as_bytes().to_vec(),
        };
        content.extend_from_slice(&line);
        if n + 1 < lines || d.chance(75) {
            content.push(b'\n');
        }
    }
    if d.chance(10) {
        content.push(0xFF);
    }
    content
}

fn write_logfile(d: &mut Draw, g: &Timeline) -> Action {
    let mtime = g.file_time(d);
    let atime = if d.chance(50) { mtime } else { g.file_time(d) };
    Action::WriteLogfile(LogfileSpec {
        name: d.pick(LOGFILE_NAMES).to_string(),
        content: logfile_content(d),
        mode: 0o600,
        atime,
        mtime,
    })
}

fn plant_queue_file(d: &mut Draw, g: &Timeline) -> Action {
    // FIXME: a queue file whose name is not a queue ID is a damaged spool
    // worth exploring, but the spool target refuses to plant one; drawing
    // such names needs a target that can.
    let id = d.pick(VALID_IDS).to_string();
    let queue = d.weighted(&[
        (50, QueueName::Deferred),
        (20, QueueName::Incoming),
        (10, QueueName::Hold),
        (10, QueueName::Active),
        (5, QueueName::Corrupt),
        (5, QueueName::Maildrop),
    ]);
    let mode = d.weighted(&[(70, 0o700), (15, 0o600), (10, 0o740), (5, 0o500)]);
    let mtime = match d.below(4) {
        0 => START + g.now + g.timers.backoff,
        _ => g.file_time(d),
    };
    let with_recipients = d.chance(40);
    Action::PlantQueueFile(QueueFileSpec {
        id,
        queue,
        mode,
        atime: mtime,
        mtime,
        recipients: if with_recipients {
            recipients(d)
        } else {
            Vec::new()
        },
        arrival: START + g.now - d.between(0, 3 * g.timers.backoff),
        sender: sender(d),
    })
}

fn event(d: &mut Draw, g: &Timeline, kind: Kind) -> Action {
    match kind {
        Kind::Submit => Action::Submit {
            id: d.chance(85).then(|| d.pick(VALID_IDS).to_string()),
            recipients: recipients(d),
            sender: sender(d),
        },
        Kind::Site => Action::Site {
            site: site(d),
            up: d.chance(50),
        },
        Kind::Etrn => {
            let args = match d.below(10) {
                0 => Vec::new(),
                1 => vec![site(d), site(d)],
                2 => vec![[b"@".as_slice(), &site(d)].concat()],
                3 => vec![[b"#".as_slice(), &site(d)].concat()],
                _ => vec![site(d)],
            };
            Action::Etrn {
                args,
                helo: d.chance(90),
                in_transaction: d.chance(10),
            }
        }
        Kind::PostqueueS => Action::PostqueueS { site: site(d) },
        Kind::PostqueueI => Action::PostqueueI {
            queue_id: queue_id(d),
        },
        Kind::PostqueueF => Action::PostqueueF,
        Kind::Add => Action::Add {
            site: site(d),
            queue_id: queue_id(d),
        },
        Kind::SendSite => Action::SendSite { site: site(d) },
        Kind::SendFile => Action::SendFile {
            queue_id: queue_id(d),
        },
        Kind::Refresh => Action::Refresh,
        Kind::Purge => Action::Purge,
        Kind::FlushRefresh => Action::FlushRefresh,
        Kind::FlushPurge => Action::FlushPurge,
        Kind::Wakeup => Action::Wakeup,
        Kind::Request => {
            let pool = raw_requests();
            let mut wire = d.pick(&pool).clone();
            match d.below(6) {
                // Cut short at some byte.
                0 if !wire.is_empty() => {
                    let cut = d.below(wire.len() as u64) as usize;
                    wire.truncate(cut);
                }
                // Bytes of no protocol at all.
                1 => {
                    let n = d.below(24);
                    wire = (0..n)
                        .map(|_| *d.pick(b"\0\0\x01\xffrequestaddsite=W\n"))
                        .collect();
                }
                _ => {}
            }
            Action::Request { wire }
        }
        Kind::Advance => Action::Advance,
        Kind::WriteLogfile => write_logfile(d, g),
        Kind::RemoveLogfile => Action::RemoveLogfile {
            name: d.pick(LOGFILE_NAMES).to_string(),
        },
        Kind::PlantQueueFile => plant_queue_file(d, g),
        Kind::RemoveQueueFile => Action::RemoveQueueFile {
            id: d.pick(VALID_IDS).to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_and_index_give_the_same_case() {
        assert_eq!(generate(9, 4, 30), generate(9, 4, 30));
        assert_ne!(generate(9, 4, 30), generate(9, 5, 30));
    }

    #[test]
    fn a_case_has_the_events_asked_for_and_time_never_goes_back() {
        for index in 0..50 {
            let case = generate(3, index, 25);
            assert_eq!(case.events.len(), 25);
            assert!(case.events.windows(2).all(|w| w[0].at <= w[1].at));
        }
    }

    #[test]
    fn every_generated_case_reads_back_as_a_scenario() {
        for index in 0..200 {
            let case = generate(11, index, 30);
            if let Err(e) = case.scenario("s", &[flushbed_vocab::Profile::Strict], "c.toml") {
                panic!("case {index}: {e}\n{}", case.render("s", &[], ""));
            }
        }
    }

    #[test]
    fn the_generator_reaches_every_kind_of_event_and_the_tricky_sites() {
        let mut kinds = std::collections::BTreeSet::new();
        let mut text = String::new();
        for index in 0..100 {
            let case = generate(5, index, 30);
            for e in &case.events {
                kinds.insert(e.action.kind());
            }
            text.push_str(&case.render("s", &[], ""));
        }
        // Every `do` but `check`, which makes nothing happen.
        assert_eq!(kinds.len(), 20, "{kinds:?}");
        for site in [
            "Example.COM",
            "a_b.example",
            "straße",
            "[127.0.0.1]",
            "'x'",
            "example.com.",
        ] {
            assert!(text.contains(site), "{site}");
        }
    }
}
