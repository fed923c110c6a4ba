//! A target: any flush server the lockstep runner can drive and observe.
//! The reference model is not a target; it is what targets are held to.

use flushbed_vocab::{Exchange, Profile, QueueName, SpoolState, Time};

/// A flush server under test, with the spool it works on.
pub trait Target {
    /// A short name for reports (`spool`, `serve`, `postfix`, ...).
    fn name(&self) -> String;

    /// The profile the target runs in; the model is run in the same one.
    fn profile(&self) -> Profile;

    /// One client connection that sends `input` in one write, at `now`.
    fn connect(&mut self, input: &[u8], now: Time) -> anyhow::Result<Exchange>;

    /// Environment: put a queue file in a queue with this mode and times.
    fn plant_queue_file(
        &mut self,
        queue_id: &str,
        queue: QueueName,
        mode: u32,
        atime: Time,
        mtime: Time,
    ) -> anyhow::Result<()>;

    /// Environment: remove a queue file from every queue.
    fn remove_queue_file(&mut self, queue_id: &str) -> anyhow::Result<()>;

    /// Environment: write a logfile's bytes as they are.
    fn write_logfile(
        &mut self,
        name: &str,
        content: &[u8],
        mode: u32,
        atime: Time,
        mtime: Time,
    ) -> anyhow::Result<()>;

    /// Environment: remove a logfile.
    fn remove_logfile(&mut self, name: &str) -> anyhow::Result<()>;

    /// Everything observable in the target's spool, read without
    /// disturbing it.
    fn observe(&mut self) -> anyhow::Result<SpoolState>;

    /// The entries of `flush/` in the order the target's directory scan
    /// returns them.
    fn flush_dir_order(&mut self) -> anyhow::Result<Vec<String>>;
}
