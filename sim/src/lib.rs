//! flushbed's simulator: the world around a flush server, and the lockstep
//! runner that holds a target to the reference model.
//!
//! - [`clock`]: the virtual clock, the only time source of a run.
//! - [`observe`]: reads a real spool into a `SpoolState` without touching
//!   any logfile's atime.
//! - [`target`]: the [`target::Target`] trait and the in-process spool
//!   target.
//! - [`qmgr`]: a simulated queue manager, as far as flush(8) depends on it.
//! - [`clients`]: `ETRN`, `postqueue -s`, `-i` and `-f`, end to end.
//! - [`scenario`]: the scenario file format.
//! - [`lockstep`]: the runner, and what it reports.
//! - [`narrate`]: a scenario's run told step by step.
//! - [`lab`]: private real Postfix instances, the oracle.
//! - [`invariants`]: what no request may do to the spool under strict.
//! - [`faults`]: the fault-exploring run.

pub mod clients;
pub mod clock;
pub mod escape;
pub mod explore;
pub mod faults;
pub mod invariants;
pub mod lab;
pub mod lockstep;
pub mod narrate;
pub mod observe;
pub mod qmgr;
pub mod scenario;
pub mod target;
