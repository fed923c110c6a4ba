//! Where the `strict` profile departs from the real Postfix 3.7 server: the
//! places where Postfix loses or corrupts data, or dies, and flushbed does
//! not. Everything not named here is the same in both profiles.
//!
//! Only [`Departure::OneLetterLogfile`] changes what the model says today.
//! The others depend on failures the model does not produce (a failed
//! write, a failed rename, a concurrent `add`, an oversized attribute); each
//! is named where it would branch, so that a model of those failures knows
//! where to go.

use flushbed_vocab::Profile;

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
    /// client is told OK. Strict answers FAIL.
    FailedWriteAnsweredOk,
    /// A failed rename from `deferred/` to `incoming/` still counts as
    /// handled, so the logfile is truncated with the mail left behind.
    /// Strict keeps the lines it could not act on.
    FailedRenameCounted,
    /// Refresh deletes an empty logfile without taking its lock, while an
    /// `add` may be writing to it. Strict deletes only under the lock,
    /// after checking that the file is still empty and still the same
    /// file, and `add` checks after locking that its file is still linked.
    UnlockedPurgeDelete,
    /// Attribute values have no size bound and a read may wait an hour.
    /// Strict bounds both, with named limits.
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
    fn only_strict_departs() {
        for departure in Departure::ALL {
            assert!(departure.taken(Profile::Strict));
            assert!(!departure.taken(Profile::Postfix));
        }
    }
}
