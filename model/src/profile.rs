//! Where the `strict` profile departs from the real Postfix 3.7 server: the
//! places where Postfix loses or corrupts data, or dies, and flushbed does
//! not. Everything not named here is the same in both profiles.
//!
//! Each departure is taken where the model's rules branch on it:
//!
//! - [`Departure::OneLetterLogfile`] in the refresh scan;
//! - [`Departure::FailedWriteAnsweredOk`] and
//!   [`Departure::FailedRenameCounted`] where a documented effect fails
//!   (the model's effects fail only when [`crate::faults`] asks them to);
//! - [`Departure::UnlockedPurgeDelete`] in the refresh's delete of an empty
//!   logfile, which under strict opens and locks it first (one request at a
//!   time, the two deletes leave the same spool; they differ in the effects
//!   a crash can cut short, and under concurrency, which the loom tests of
//!   the implementation explore);
//! - [`Departure::UnboundedAttributes`] in the attribute reader, with the
//!   named [`Limits`] below.

use flushbed_vocab::Profile;

/// The longest attribute name or value a `strict` server reads; a longer
/// one makes the request BAD.
pub const STRICT_MAX_ATTRIBUTE_LEN: usize = 4096;

/// How long a `strict` server waits for input, in seconds.
pub const STRICT_READ_WAIT_SECONDS: u64 = 60;

/// How long Postfix waits for input: `ipc_timeout`, an hour by default.
pub const POSTFIX_READ_WAIT_SECONDS: u64 = 3600;

/// What one request may cost the server, by profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest attribute name or value read; `None`: no bound.
    pub max_attribute_len: Option<usize>,
    /// How long the server waits for input, in seconds.
    pub read_wait_seconds: u64,
}

impl Limits {
    /// The limits of a server in `profile`.
    pub fn of(profile: Profile) -> Limits {
        if Departure::UnboundedAttributes.taken(profile) {
            Limits {
                max_attribute_len: Some(STRICT_MAX_ATTRIBUTE_LEN),
                read_wait_seconds: STRICT_READ_WAIT_SECONDS,
            }
        } else {
            Limits {
                max_attribute_len: None,
                read_wait_seconds: POSTFIX_READ_WAIT_SECONDS,
            }
        }
    }
}

/// A named departure of the `strict` profile from the real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Departure {
    /// The refresh scan takes every one-character name in `flush/` for a
    /// hash subdirectory; the logfile of a one-letter site is a file, so
    /// the scan's `opendir` fails and the server dies after its reply, the
    /// entries after it never processed. Strict refreshes it like any
    /// other logfile.
    OneLetterLogfile,
    /// A failed write of a queue ID to a logfile is only a warning and the
    /// client is told OK, though the queue ID never reached the logfile.
    /// Strict answers FAIL, so that the delivery agent knows.
    FailedWriteAnsweredOk,
    /// A failed rename from `deferred/` to `incoming/` still counts as
    /// handled, so the logfile is truncated with the mail left behind.
    /// Strict keeps the lines it could not act on: a pass with a queue file
    /// it could not move does not truncate the logfile at all (the lines it
    /// did act on stay as harmless duplicates, and a crash cannot cut a
    /// rewrite short).
    FailedRenameCounted,
    /// Refresh deletes an empty logfile without taking its lock, while an
    /// `add` may be writing to it. Strict deletes only under the lock,
    /// after checking that the file is still empty and still the same
    /// file, and `add` checks after locking that its file is still linked.
    UnlockedPurgeDelete,
    /// Attribute values have no size bound and a read may wait an hour.
    /// Strict bounds both, with the named [`Limits`].
    UnboundedAttributes,
}

impl Departure {
    /// Every departure, in the order the specification lists them.
    pub const ALL: [Departure; 5] = [
        Departure::OneLetterLogfile,
        Departure::FailedWriteAnsweredOk,
        Departure::FailedRenameCounted,
        Departure::UnlockedPurgeDelete,
        Departure::UnboundedAttributes,
    ];

    /// A short, stable name.
    pub fn name(self) -> &'static str {
        match self {
            Departure::OneLetterLogfile => "one-letter-logfile",
            Departure::FailedWriteAnsweredOk => "failed-write-answered-ok",
            Departure::FailedRenameCounted => "failed-rename-counted",
            Departure::UnlockedPurgeDelete => "unlocked-purge-delete",
            Departure::UnboundedAttributes => "unbounded-attributes",
        }
    }

    /// Whether a server in this profile departs from Postfix here.
    pub fn taken(self, profile: Profile) -> bool {
        match profile {
            Profile::Postfix => false,
            Profile::Strict => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_bounds_attributes_and_the_wait_and_postfix_does_not() {
        let strict = Limits::of(Profile::Strict);
        assert_eq!(strict.max_attribute_len, Some(STRICT_MAX_ATTRIBUTE_LEN));
        assert_eq!(strict.read_wait_seconds, STRICT_READ_WAIT_SECONDS);
        let postfix = Limits::of(Profile::Postfix);
        assert_eq!(postfix.max_attribute_len, None);
        assert_eq!(postfix.read_wait_seconds, 3600);
    }

    #[test]
    fn strict_answers_bad_to_an_attribute_over_its_bound() {
        use flushbed_vocab::config::Environment;
        use flushbed_vocab::wire::add_request;
        use flushbed_vocab::{FlushConfig, MainCf, Status};

        let main = MainCf::parse("fast_flush_domains = example.com\n", "main.cf").unwrap();
        let config = FlushConfig::from_main_cf(&main, &Environment::default()).unwrap();
        let long = vec![b'a'; STRICT_MAX_ATTRIBUTE_LEN + 1];
        let at_bound = vec![b'a'; STRICT_MAX_ATTRIBUTE_LEN];
        let cases = [
            (Profile::Postfix, &long, Status::Deny),
            (Profile::Strict, &long, Status::Bad),
            (Profile::Strict, &at_bound, Status::Deny),
        ];
        for (profile, site, status) in cases {
            let mut model = crate::Model::new(&config, crate::Tables::default(), profile);
            let step = model.connect(&add_request(site, b"A1"), 0, &[]);
            let reply = crate::wire::status_reply(status.code());
            assert!(
                step.exchange.output.ends_with(&reply),
                "{profile:?} {}",
                site.len()
            );
        }
    }

    #[test]
    fn only_strict_departs() {
        for departure in Departure::ALL {
            assert!(departure.taken(Profile::Strict));
            assert!(!departure.taken(Profile::Postfix));
        }
    }
}
