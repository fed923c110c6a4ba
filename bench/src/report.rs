//! The benchmarks' one table: each server's figures side by side, each
//! server's ratio to the floor and flushbed's ratio to the real Postfix,
//! the lockstep's steps per second, and whether each of the project's
//! performance goals was met. Printed as Markdown, so that it can go into
//! `docs/BENCHMARKS.md` as it is.
//!
//! Every ratio is a ratio of *cost*: time per request, latency, memory. A
//! ratio of 1.20 means 20% more time (or memory) than what it is compared
//! with; below 1 means less.

use std::fmt::Write;
use std::time::Duration;

use crate::client::Load;
use crate::lockstep::LockstepResults;

/// One server's figures.
#[derive(Debug, Clone)]
pub struct ServerResult {
    pub name: &'static str,
    /// One load per concurrency, in the order of `CLIENTS`.
    pub adds: Vec<Load>,
    /// send_site latencies, sorted; none for the floor, which only adds.
    pub sends: Vec<Duration>,
    /// Peak resident memory, KiB.
    pub memory_kib: u64,
    /// How many processes that peak was summed over.
    pub processes: usize,
}

/// The project's performance goals.
#[derive(Debug, Clone, Copy)]
pub struct Goals {
    /// flushbed serve's cost at most this times the floor's.
    pub serve_over_floor: f64,
    /// flushbed serve's throughput this times Postfix's at 16 clients,
    /// when the floor leaves that much room.
    pub serve_over_postfix: f64,
    /// The lockstep's cost at most this times the implementation's.
    pub lockstep_over_implementation: f64,
    /// The model at least this many times faster than the implementation.
    pub implementation_over_model: f64,
}

impl Default for Goals {
    fn default() -> Goals {
        Goals {
            serve_over_floor: 1.5,
            serve_over_postfix: 3.0,
            lockstep_over_implementation: 3.0,
            implementation_over_model: 50.0,
        }
    }
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub machine: String,
    pub servers: Vec<ServerResult>,
    pub lockstep: Option<LockstepResults>,
    pub sizes: String,
    pub elapsed: Duration,
    pub goals: Goals,
}

/// The machine the run was on: processors, memory, kernel, Postfix.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown processor".to_string());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let kib: f64 = l
                    .strip_prefix("MemTotal:")?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()?;
                Some(format!("{:.1} GiB", kib / 1024.0 / 1024.0))
            })
        })
        .unwrap_or_else(|| "unknown".to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    let postfix = std::process::Command::new("/usr/sbin/postconf")
        .args(["-d", "-h", "mail_version"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "not installed".to_string());
    format!("{cpus} processors ({model}), {memory} memory, Linux {kernel}, Postfix {postfix}")
}

fn micros(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

fn millis(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn ratio(cost: Option<f64>, base: Option<f64>) -> String {
    match (cost, base) {
        (Some(c), Some(b)) if b > 0.0 => format!("{:.2}", c / b),
        _ => "—".to_string(),
    }
}

fn met(yes: bool) -> &'static str {
    if yes {
        "**met**"
    } else {
        "**not met**"
    }
}

/// One row of the server table: a value per server and its cost.
struct Row {
    label: String,
    shown: Vec<Option<String>>,
    cost: Vec<Option<f64>>,
}

fn server_rows(servers: &[ServerResult]) -> Vec<Row> {
    let mut rows = Vec::new();
    let concurrencies: Vec<usize> = servers
        .first()
        .map(|s| s.adds.iter().map(|l| l.clients).collect())
        .unwrap_or_default();
    for (i, clients) in concurrencies.iter().enumerate() {
        let clients_word = if *clients == 1 { "client" } else { "clients" };
        let load = |s: &ServerResult| s.adds.get(i).cloned();
        rows.push(Row {
            label: format!("add, {clients} {clients_word}: requests/s"),
            shown: servers
                .iter()
                .map(|s| load(s).map(|l| format!("{:.0}", l.per_second())))
                .collect(),
            cost: servers
                .iter()
                .map(|s| load(s).map(|l| 1.0 / l.per_second()))
                .collect(),
        });
        rows.push(Row {
            label: format!("add, {clients} {clients_word}: server CPU per request (µs)"),
            shown: servers
                .iter()
                .map(|s| load(s).map(|l| micros(l.cpu_per_request())))
                .collect(),
            cost: servers
                .iter()
                .map(|s| load(s).map(|l| l.cpu_per_request().as_secs_f64()))
                .collect(),
        });
        for (name, fraction) in [("p50", 0.50), ("p99", 0.99)] {
            rows.push(Row {
                label: format!("add, {clients} {clients_word}: {name} latency (µs)"),
                shown: servers
                    .iter()
                    .map(|s| load(s).map(|l| micros(l.percentile(fraction))))
                    .collect(),
                cost: servers
                    .iter()
                    .map(|s| load(s).map(|l| l.percentile(fraction).as_secs_f64()))
                    .collect(),
            });
        }
    }
    let send = |s: &ServerResult, pick: fn(&[Duration]) -> Duration| {
        (!s.sends.is_empty()).then(|| pick(&s.sends))
    };
    for (label, pick) in [
        (
            "send_site, 10,000 queue files: median (ms)",
            median as fn(&[Duration]) -> Duration,
        ),
        ("send_site, 10,000 queue files: slowest (ms)", slowest),
    ] {
        rows.push(Row {
            label: label.to_string(),
            shown: servers.iter().map(|s| send(s, pick).map(millis)).collect(),
            cost: servers
                .iter()
                .map(|s| send(s, pick).map(|d| d.as_secs_f64()))
                .collect(),
        });
    }
    rows.push(Row {
        label: "peak memory, VmHWM (MiB)".to_string(),
        shown: servers
            .iter()
            .map(|s| {
                let mib = s.memory_kib as f64 / 1024.0;
                Some(if s.processes > 1 {
                    format!("{mib:.1} ({} processes)", s.processes)
                } else {
                    format!("{mib:.1}")
                })
            })
            .collect(),
        cost: servers.iter().map(|s| Some(s.memory_kib as f64)).collect(),
    });
    rows
}

fn median(sorted: &[Duration]) -> Duration {
    sorted[sorted.len() / 2]
}

fn slowest(sorted: &[Duration]) -> Duration {
    sorted[sorted.len() - 1]
}

fn find<'a>(servers: &'a [ServerResult], name: &str) -> Option<&'a ServerResult> {
    servers.iter().find(|s| s.name.starts_with(name))
}

/// The report as Markdown.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Machine: {}.", report.machine);
    let _ = writeln!(out, "Sizes: {}.", report.sizes);
    let _ = writeln!(out, "Run time: {:.0} s.", report.elapsed.as_secs_f64());

    if !report.servers.is_empty() {
        render_servers(&mut out, &report.servers);
    }
    if let Some(lockstep) = &report.lockstep {
        render_lockstep(&mut out, lockstep);
    }
    render_goals(&mut out, report);
    out
}

fn render_servers(out: &mut String, servers: &[ServerResult]) {
    let floor = servers.iter().position(|s| s.name == "floor");
    let flushbed = servers.iter().position(|s| s.name.starts_with("flushbed"));
    let postfix = servers.iter().position(|s| s.name.starts_with("Postfix"));

    let _ = writeln!(
        out,
        "\nRatios are of cost (time per request, latency, memory): below 1 is better.\n"
    );
    let mut header = String::from("| |");
    let mut rule = String::from("|---|");
    for s in servers {
        let _ = write!(header, " {} |", s.name);
        rule.push_str("---:|");
    }
    header.push_str(" flushbed / floor | Postfix / floor | flushbed / Postfix |");
    rule.push_str("---:|---:|---:|");
    let _ = writeln!(out, "{header}\n{rule}");

    for row in server_rows(servers) {
        let at = |i: Option<usize>| i.and_then(|i| row.cost[i]);
        let mut line = format!("| {} |", row.label);
        for shown in &row.shown {
            let _ = write!(line, " {} |", shown.as_deref().unwrap_or("—"));
        }
        let _ = write!(
            line,
            " {} | {} | {} |",
            ratio(at(flushbed), at(floor)),
            ratio(at(postfix), at(floor)),
            ratio(at(flushbed), at(postfix))
        );
        let _ = writeln!(out, "{line}");
    }
}

fn render_lockstep(out: &mut String, lockstep: &LockstepResults) {
    let implementation = lockstep.implementation.elapsed.as_secs_f64();
    let _ = writeln!(
        out,
        "\n| lockstep sequence | events/s | µs per event | cost / implementation alone |\n\
         |---|---:|---:|---:|"
    );
    for (name, timing) in [
        ("model alone", lockstep.model),
        (
            "implementation alone (temporary spool)",
            lockstep.implementation,
        ),
        ("lockstep of both", lockstep.lockstep),
    ] {
        let _ = writeln!(
            out,
            "| {name} | {:.0} | {:.1} | {:.3} |",
            timing.per_second(),
            timing.elapsed.as_secs_f64() * 1e6 / timing.events as f64,
            timing.elapsed.as_secs_f64() / implementation
        );
    }
}

fn render_goals(out: &mut String, report: &Report) {
    let goals = report.goals;
    let _ = writeln!(out, "\nGoals:\n");
    let servers = &report.servers;
    if let (Some(floor), Some(serve), Some(postfix)) = (
        find(servers, "floor"),
        find(servers, "flushbed"),
        find(servers, "Postfix"),
    ) {
        for (i, load) in serve.adds.iter().enumerate() {
            let (Some(f), Some(p)) = (floor.adds.get(i), postfix.adds.get(i)) else {
                continue;
            };
            let over = f.per_second() / load.per_second();
            let _ = writeln!(
                out,
                "- flushbed serve within {}x the floor, add at {} client(s): {:.2}x, {}.",
                goals.serve_over_floor,
                load.clients,
                over,
                met(over <= goals.serve_over_floor)
            );
            if load.clients > 1 {
                let room = f.per_second() / p.per_second();
                let ahead = load.per_second() / p.per_second();
                let lower_p99 = load.percentile(0.99) < p.percentile(0.99);
                let wanted = if room >= goals.serve_over_postfix {
                    goals.serve_over_postfix
                } else {
                    1.0
                };
                let _ = writeln!(
                    out,
                    "- flushbed serve ahead of Postfix at {} clients with a lower p99: \
                     {:.2}x its throughput (the floor is {:.2}x, so {}x is asked), p99 {} µs \
                     against {} µs: {}.",
                    load.clients,
                    ahead,
                    room,
                    wanted,
                    micros(load.percentile(0.99)),
                    micros(p.percentile(0.99)),
                    met(ahead >= wanted && lower_p99)
                );
            }
        }
        if !serve.sends.is_empty() && !postfix.sends.is_empty() {
            let (s, p) = (median(&serve.sends), median(&postfix.sends));
            let _ = writeln!(
                out,
                "- send_site no slower than Postfix: median {} ms against {} ms: {}.",
                millis(s),
                millis(p),
                met(s <= p)
            );
        }
    }
    if let Some(l) = &report.lockstep {
        let implementation = l.implementation.elapsed.as_secs_f64();
        let over = l.lockstep.elapsed.as_secs_f64() / implementation;
        let _ = writeln!(
            out,
            "- the lockstep at most {}x the cost of the implementation alone: {:.1}x, {}.",
            goals.lockstep_over_implementation,
            over,
            met(over <= goals.lockstep_over_implementation)
        );
        let faster = implementation / l.model.elapsed.as_secs_f64();
        let _ = writeln!(
            out,
            "- the model at least {}x faster than the implementation: {:.1}x, {}.",
            goals.implementation_over_model,
            faster,
            met(faster >= goals.implementation_over_model)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(clients: usize, per_request_us: u64) -> Load {
        Load {
            requests: 100,
            clients,
            elapsed: Duration::from_micros(per_request_us * 100),
            latencies: vec![Duration::from_micros(per_request_us); 100],
            server_cpu: Duration::from_micros(per_request_us * 50),
        }
    }

    fn server(name: &'static str, us: u64, sends: Vec<Duration>) -> ServerResult {
        ServerResult {
            name,
            adds: vec![load(1, us), load(16, us)],
            sends,
            memory_kib: 2048,
            processes: 1,
        }
    }

    #[test]
    fn ratios_are_costs_against_the_floor_and_postfix() {
        let servers = vec![
            server("floor", 10, Vec::new()),
            server("flushbed serve", 12, vec![Duration::from_millis(50)]),
            server("Postfix 3.7 flush", 40, vec![Duration::from_millis(100)]),
        ];
        let rows = server_rows(&servers);
        let text = render(&Report {
            machine: "test".into(),
            servers,
            lockstep: None,
            sizes: "small".into(),
            elapsed: Duration::from_secs(1),
            goals: Goals::default(),
        });
        assert_eq!(rows[0].label, "add, 1 client: requests/s");
        assert!(
            text.contains(
                "| add, 1 client: requests/s | 100000 | 83333 | 25000 | 1.20 | 4.00 | 0.30 |"
            ),
            "{text}"
        );
        assert!(
            text.contains("within 1.5x the floor, add at 1 client(s): 1.20x, **met**"),
            "{text}"
        );
        assert!(
            text.contains(
                "send_site no slower than Postfix: median 50.0 ms against 100.0 ms: **met**"
            ),
            "{text}"
        );
        assert!(text.contains("p99 12 µs against 40 µs: **met**"), "{text}");
    }

    #[test]
    fn a_missing_figure_has_no_ratio() {
        assert_eq!(ratio(None, Some(1.0)), "—");
        assert_eq!(ratio(Some(1.0), Some(0.0)), "—");
        assert_eq!(ratio(Some(3.0), Some(2.0)), "1.50");
    }
}
