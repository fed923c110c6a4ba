//! Deliberately broken behaviours of the flush server, each a one-line
//! change to one rule, planted at run time with
//! [`FlushService::plant_bug`](crate::FlushService::plant_bug) so that a
//! test can prove the lockstep and the scenarios catch it. Only built with
//! the `planted-bugs` feature; a release build has none of this.

/// One planted bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PlantedBug {
    /// send never truncates the logfile.
    NeverTruncate,
    /// refresh sends a logfile whose atime plus the refresh time *equals*
    /// now (`<=` instead of `<`).
    RefreshAtBoundary,
    /// refresh deletes an empty logfile whose mtime plus the purge time
    /// equals now.
    PurgeAtBoundary,
    /// The logfile name keeps the site's case.
    CaseSensitiveLogfileNames,
    /// send_site sends no `F` trigger.
    NoFlushDeadTrigger,
    /// send leaves the logfile's times alone.
    NoLogfileTimesAfterSend,
    /// send_file moves a queue file that is not ready.
    SendFileIgnoresReady,
    /// A bad line in a logfile does not count as a line read.
    BadLineNotCounted,
    /// send sets the queue file's times but leaves it in `deferred/`.
    NoRenameToIncoming,
    /// Queue files are looked for in the hash directory of their last
    /// characters.
    WrongHashDirectory,
    /// FAIL goes on the wire as `-1`.
    FailWrittenSigned,
    /// A table error answers DENY instead of FAIL.
    DenyOnTableError,
    /// add leaves the logfile's mtime alone.
    NoMtimeOnAdd,
    /// send sends `I` even when no line was read.
    ScanIncomingWithoutLines,
}

impl PlantedBug {
    /// Every planted bug.
    pub const ALL: [PlantedBug; 14] = [
        PlantedBug::NeverTruncate,
        PlantedBug::RefreshAtBoundary,
        PlantedBug::PurgeAtBoundary,
        PlantedBug::CaseSensitiveLogfileNames,
        PlantedBug::NoFlushDeadTrigger,
        PlantedBug::NoLogfileTimesAfterSend,
        PlantedBug::SendFileIgnoresReady,
        PlantedBug::BadLineNotCounted,
        PlantedBug::NoRenameToIncoming,
        PlantedBug::WrongHashDirectory,
        PlantedBug::FailWrittenSigned,
        PlantedBug::DenyOnTableError,
        PlantedBug::NoMtimeOnAdd,
        PlantedBug::ScanIncomingWithoutLines,
    ];
}
