//! Peak memory of a flush server, from `/proc/PID/status` `VmHWM` (the
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
