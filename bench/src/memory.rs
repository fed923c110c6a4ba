//! What a flush server costs the machine: its CPU time, and its peak
//! memory.
//!
//! CPU time is read from `/proc/PID/stat` (user plus system time of every
//! thread, in clock ticks), so that it counts the server's own work
//! whatever else the machine is doing. For the real Postfix it is the
//! master's own time, the time of the flush processes it has reaped, and
//! the time of those still alive.
//!
//! Peak memory is `/proc/PID/status` `VmHWM` (the
//! process's peak resident set). A server that is one process (flushbed
//! serve, the floor) is that process's VmHWM at the end of the run. The
//! real Postfix runs one flush process per concurrent client, started and
//! retired by the master (after `max_use` clients, or when idle), so its
//! figure is the largest sum, over the flush processes alive at one
//! moment, of their VmHWM, sampled through the run.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the flush processes of a Postfix master are looked at.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);

/// The kernel's clock tick: `/proc` counts CPU time in these.
const TICKS_PER_SECOND: u64 = 100;

/// Fields of `/proc/PID/stat` after the command name: (own user + system
/// time, reaped children's user + system time), in ticks.
fn cpu_ticks(pid: i32) -> Option<(u64, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    let fields: Vec<u64> = stat[close + 1..]
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // After the name: state is field 3, utime 14, stime 15, cutime 16,
    // cstime 17 (numbered from 1 with the pid).
    let at = |n: usize| fields.get(n - 3).copied();
    Some((at(14)? + at(15)?, at(16)? + at(17)?))
}

/// Whose CPU time a server is.
#[derive(Debug, Clone, Copy)]
pub enum CpuOf {
    /// One process, all its threads.
    Process(i32),
    /// A Postfix master and the processes named so that it starts.
    Master(i32, &'static str),
}

impl CpuOf {
    /// CPU time used so far, as far as it can be added up: for a master,
    /// its own, its reaped children's, and its live children's of that
    /// name. Differences between two readings are what counts.
    pub fn used(self) -> Duration {
        let ticks = match self {
            CpuOf::Process(pid) => cpu_ticks(pid).map_or(0, |(own, _)| own),
            CpuOf::Master(master, comm) => {
                let (own, reaped) = cpu_ticks(master).unwrap_or((0, 0));
                let live: u64 = children_named(master, comm)
                    .into_iter()
                    .filter_map(|pid| cpu_ticks(pid).map(|(own, _)| own))
                    .sum();
                own + reaped + live
            }
        };
        Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND)
    }
}

/// A process's peak resident set, in KiB.
pub fn vm_hwm_kib(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix("VmHWM:")?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// The children of `parent` whose command name is `comm`.
pub fn children_named(parent: i32, comm: &str) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold blanks: the
        // fields after it start at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<i32>().ok());
        if name == comm && ppid == Some(parent) {
            pids.push(pid);
        }
    }
    pids
}

/// What a [`Sampler`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peak {
    /// The largest sum of VmHWM over the processes alive at one sample, KiB.
    pub kib: u64,
    /// The most processes alive at one sample.
    pub processes: usize,
}

/// Samples the flush processes of a Postfix master in the background.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    peak: Arc<Mutex<Peak>>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling the children of `master` named `comm`.
    pub fn start(master: i32, comm: &'static str) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(Mutex::new(Peak::default()));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    sample(master, comm, &peak);
                    std::thread::sleep(SAMPLE_EVERY);
                }
                sample(master, comm, &peak);
            })
        };
        Sampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// Stops sampling and says what was seen.
    pub fn finish(mut self) -> Peak {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        *self.peak.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn sample(master: i32, comm: &str, peak: &Mutex<Peak>) {
    let pids = children_named(master, comm);
    let kib: u64 = pids.iter().filter_map(|&pid| vm_hwm_kib(pid)).sum();
    let mut peak = peak.lock().unwrap_or_else(|e| e.into_inner());
    peak.kib = peak.kib.max(kib);
    peak.processes = peak.processes.max(pids.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work() {
        let me = CpuOf::Process(std::process::id() as i32);
        let before = me.used();
        let began = std::time::Instant::now();
        let mut x = 0u64;
        while began.elapsed() < Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(me.used() > before);
    }

    #[test]
    fn this_process_has_a_peak_resident_set() {
        let kib = vm_hwm_kib(std::process::id() as i32).expect("VmHWM of this process");
        assert!(kib > 0);
    }

    #[test]
    fn a_child_is_found_by_its_parent_and_name() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let found = children_named(std::process::id() as i32, "sleep");
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&(child.id() as i32)));
    }
}
