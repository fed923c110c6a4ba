//! `flushbed-bench`: measures flush(8) servers side by side on this
//! machine, over loopback UNIX sockets only, with the same client for each,
//! and the reference model, the implementation and their lockstep on one
//! generated event sequence. It prints one table with ratios, and says for
//! each of the project's performance goals whether it was met.
//!
//! The servers: the real Postfix flush server (a private, flush-only
//! instance), `flushbed serve` in the `strict` profile, and the floor (a
//! server that makes only the system calls an `add` needs). For each:
//! `add` throughput and latency with 1 and 16 concurrent clients,
//! `send_site` of a logfile naming 10,000 deferred queue files, and peak
//! memory.
//!
//! Measurements, never assertions: a run fails only when a server gives a
//! wrong answer (a reply that is not OK, a send that left mail behind) or
//! cannot be started. Everything a run starts, it stops, also on an error
//! or a signal.
//!
//! ```sh
//! cargo build --release -p flushbed -p flushbed-bench
//! target/release/flushbed-bench            # a minute or two
//! target/release/flushbed-bench --long     # ten times the requests
//! ```

mod cleanup;
mod client;
mod floor;
mod lockstep;
mod memory;
mod postfix;
mod report;
mod serve;
mod spool;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use flushbed_vocab::wire;

use crate::client::Load;
use crate::report::{Goals, ServerResult};
use crate::spool::{QmgrListener, SendWorkload};

#[derive(Debug, Parser)]
#[command(
    name = "flushbed-bench",
    about = "Benchmarks of flush(8) servers side by side, and of the model, the implementation and their lockstep"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Ten times the requests, send_site iterations and lockstep events.
    #[arg(long)]
    long: bool,
    /// The flushbed binary to run as `flushbed serve` (default: the one
    /// next to this program).
    #[arg(long)]
    flushbed: Option<PathBuf>,
    /// Measure only the servers, or only the lockstep.
    #[arg(long, value_enum)]
    only: Option<Part>,
    /// Measure only these servers (repeatable; default all three).
    #[arg(long = "server", value_enum)]
    servers: Vec<Server>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Server {
    Floor,
    Flushbed,
    Postfix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    Servers,
    Lockstep,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the floor server (started by the benchmarks themselves).
    #[command(hide = true)]
    Floor { socket: PathBuf, flush_dir: PathBuf },
    /// Send the add load to a server that is already running, for a
    /// profiler watching it; prints requests/s and latencies.
    Load {
        /// The server's flush socket.
        socket: PathBuf,
        #[arg(long, default_value_t = 1)]
        clients: usize,
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
    },
}

/// How much work a run does.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    warmup: usize,
    requests: usize,
    send_iterations: usize,
    send_queue_files: usize,
    lockstep: lockstep::Shape,
}

impl Sizes {
    fn new(long: bool) -> Sizes {
        let scale = if long { 10 } else { 1 };
        Sizes {
            warmup: 500 * scale,
            requests: 5_000 * scale,
            send_iterations: 3 * scale,
            send_queue_files: 10_000,
            lockstep: lockstep::Shape {
                events: 2_000 * scale,
                sites: 36,
                queue_files: 300,
                seed: 20_261_204,
            },
        }
    }
}

/// The sites of the add workload, every one eligible (`mx.example.com`
/// through its parent domain).
const ADD_SITES: [&str; 5] = [
    "example.com",
    "example.net",
    "example.org",
    "mx.example.com",
    "shop.example",
];
/// The site of the send_site workload, and its logfile.
const SEND_SITE: &str = "bulk.example";
const SEND_LOGFILE: &str = "bulk_example";
/// `main.cf` for both real servers, the paths aside.
const MAIN_CF: &str = "compatibility_level = 3.6\n\
                       fast_flush_domains = example.com, example.net, example.org, shop.example, \
                       bulk.example\n";
/// The concurrencies of the add workload.
const CLIENTS: [usize; 2] = [1, 16];

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    if let Some(Cmd::Floor { socket, flush_dir }) = &cli.command {
        return match floor::serve(socket, flush_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("flushbed-bench floor: {e:#}");
                ExitCode::FAILURE
            }
        };
    }

    if let Some(Cmd::Load {
        socket,
        clients,
        requests,
    }) = &cli.command
    {
        let warmup = add_wires('L', 0, 100);
        let wires = add_wires('L', 100, *requests);
        let nothing = || Duration::ZERO;
        return match client::run_load(socket, (*clients).max(1), &warmup, &wires, &nothing) {
            Ok(load) => {
                println!(
                    "{:.0} requests/s, p50 {:?}, p99 {:?}",
                    load.per_second(),
                    load.percentile(0.5),
                    load.percentile(0.99)
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("flushbed-bench load: {e:#}");
                ExitCode::FAILURE
            }
        };
    }

    if let Err(e) = cleanup::install() {
        eprintln!("flushbed-bench: {e:#}");
        return ExitCode::FAILURE;
    }
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flushbed-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let sizes = Sizes::new(cli.long);
    let began = Instant::now();
    let mut servers = Vec::new();
    let mut lockstep = None;

    let wanted = |server| cli.servers.is_empty() || cli.servers.contains(&server);
    if cli.only != Some(Part::Lockstep) {
        if wanted(Server::Floor) {
            servers.push(bench_floor(sizes).context("the floor")?);
        }
        if wanted(Server::Flushbed) {
            let flushbed = match &cli.flushbed {
                Some(path) => path.clone(),
                None => std::env::current_exe()?
                    .with_file_name("flushbed")
                    .canonicalize()
                    .context(
                        "no flushbed binary next to flushbed-bench: \
                         build it (cargo build --release -p flushbed) or name it with --flushbed",
                    )?,
            };
            servers.push(bench_flushbed(&flushbed, sizes).context("flushbed serve")?);
        }
        if wanted(Server::Postfix) {
            servers.push(bench_postfix(sizes).context("the real Postfix")?);
        }
    }
    if cli.only != Some(Part::Servers) {
        let phase = Instant::now();
        lockstep = Some(lockstep::run(sizes.lockstep)?);
        eprintln!(
            "lockstep: {} events, {:.1} s",
            sizes.lockstep.events,
            phase.elapsed().as_secs_f64()
        );
    }

    let text = report::render(&report::Report {
        machine: report::machine(),
        servers,
        lockstep,
        sizes: format!(
            "add: {} requests after {} of warm-up, to {} sites; send_site: {} queue files, \
             {} iterations after 1 of warm-up; lockstep: {} events over {} sites, {} queue files",
            sizes.requests,
            sizes.warmup,
            ADD_SITES.len(),
            sizes.send_queue_files,
            sizes.send_iterations,
            sizes.lockstep.events,
            sizes.lockstep.sites,
            sizes.lockstep.queue_files
        ),
        elapsed: began.elapsed(),
        goals: Goals::default(),
    });
    println!("{text}");
    Ok(())
}

/// The add requests of one load: each to one of the sites in turn, each
/// with a queue ID of its own.
fn add_wires(prefix: char, first: usize, count: usize) -> Vec<Vec<u8>> {
    (first..first + count)
        .map(|n| {
            let site = ADD_SITES[n % ADD_SITES.len()];
            wire::add_request(site.as_bytes(), format!("{prefix}{n:010X}").as_bytes())
        })
        .collect()
}

/// The add loads, 1 and 16 clients, each with its own queue IDs.
fn add_loads(socket: &Path, cpu: memory::CpuOf, sizes: Sizes) -> anyhow::Result<Vec<Load>> {
    let mut loads = Vec::new();
    for (round, clients) in CLIENTS.into_iter().enumerate() {
        let prefix = (b'A' + round as u8) as char;
        let warmup = add_wires(prefix, 0, sizes.warmup);
        let wires = add_wires(prefix, sizes.warmup, sizes.requests);
        let phase = Instant::now();
        loads.push(
            client::run_load(socket, clients, &warmup, &wires, &|| cpu.used())
                .with_context(|| format!("add with {clients} client(s)"))?,
        );
        eprintln!(
            "  add, {clients} client(s): {} requests, {:.1} s",
            wires.len(),
            phase.elapsed().as_secs_f64()
        );
    }
    Ok(loads)
}

/// send_site of the bulk logfile, planted afresh (untimed) before each.
fn send_loads(
    socket: &Path,
    spool: &Path,
    owner: spool::Owner,
    qmgr: &QmgrListener,
    sizes: Sizes,
) -> anyhow::Result<Vec<Duration>> {
    let work = SendWorkload::new(SEND_LOGFILE, sizes.send_queue_files);
    let request = wire::send_site_request(SEND_SITE.as_bytes());
    let phase = Instant::now();
    let mut times = Vec::new();
    for iteration in 0..=sizes.send_iterations {
        work.plant(spool, owner)?;
        let began = Instant::now();
        let reply = client::request(socket, &request)?;
        let elapsed = began.elapsed();
        if reply != client::OK_REPLY {
            anyhow::bail!("send_site got {:?}, not OK", client::escape(&reply));
        }
        work.check_sent(spool)?;
        // The first is the warm-up.
        if iteration > 0 {
            times.push(elapsed);
        }
    }
    // Each send triggers F and I, after its reply is written perhaps.
    let wanted = 2 * (sizes.send_iterations + 1);
    let deadline = Instant::now() + Duration::from_secs(2);
    while qmgr.triggers() < wanted && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if qmgr.triggers() < wanted {
        anyhow::bail!(
            "the queue manager got {} triggers from {} sends, not {wanted}",
            qmgr.triggers(),
            sizes.send_iterations + 1
        );
    }
    times.sort_unstable();
    eprintln!(
        "  send_site: {} iterations, {:.1} s with the planting",
        sizes.send_iterations,
        phase.elapsed().as_secs_f64()
    );
    Ok(times)
}

fn bench_floor(sizes: Sizes) -> anyhow::Result<ServerResult> {
    eprintln!("floor");
    let dir = tempfile::Builder::new()
        .prefix("flushbed-bench-floor.")
        .tempdir()?;
    let flush_dir = dir.path().join("flush");
    std::fs::create_dir(&flush_dir)?;
    let socket = dir.path().join("flush.socket");
    let floor = floor::FloorProcess::start(&socket, &flush_dir)?;
    let loads = add_loads(&socket, memory::CpuOf::Process(floor.pid()), sizes)?;
    let memory = memory::vm_hwm_kib(floor.pid()).unwrap_or(0);
    Ok(ServerResult {
        name: "floor",
        adds: loads,
        sends: Vec::new(),
        memory_kib: memory,
        processes: 1,
    })
}

fn bench_flushbed(flushbed: &Path, sizes: Sizes) -> anyhow::Result<ServerResult> {
    eprintln!("flushbed serve ({})", flushbed.display());
    let serve = serve::ServeProcess::start(flushbed, MAIN_CF)?;
    let owner = serve::current_owner();
    let qmgr = QmgrListener::start(&serve.spool(), owner)?;
    let socket = serve.flush_socket();
    let cpu = memory::CpuOf::Process(serve.pid());
    let result = (|| {
        let adds = add_loads(&socket, cpu, sizes)?;
        let sends = send_loads(&socket, &serve.spool(), owner, &qmgr, sizes)?;
        anyhow::Ok((adds, sends))
    })();
    let (adds, sends) =
        result.with_context(|| format!("flushbed serve's log:\n{}", serve.log()))?;
    let memory = memory::vm_hwm_kib(serve.pid()).unwrap_or(0);
    Ok(ServerResult {
        name: "flushbed serve",
        adds,
        sends,
        memory_kib: memory,
        processes: 1,
    })
}

fn bench_postfix(sizes: Sizes) -> anyhow::Result<ServerResult> {
    eprintln!("Postfix flush");
    let postfix = postfix::PostfixServer::start(MAIN_CF)?;
    let owner = postfix.owner();
    let qmgr = QmgrListener::start(postfix.spool(), owner)?;
    let master = postfix.master_pid()?;
    let sampler = memory::Sampler::start(master, "flush");
    let socket = postfix.flush_socket();
    let cpu = memory::CpuOf::Master(master, "flush");
    let result = (|| {
        let adds = add_loads(&socket, cpu, sizes)?;
        let sends = send_loads(&socket, postfix.spool(), owner, &qmgr, sizes)?;
        anyhow::Ok((adds, sends))
    })();
    let peak = sampler.finish();
    let (adds, sends) =
        result.with_context(|| format!("the maillog ends:\n{}", postfix.maillog_tail()))?;
    drop(qmgr);
    postfix.stop()?;
    Ok(ServerResult {
        name: "Postfix 3.7 flush",
        adds,
        sends,
        memory_kib: peak.kib,
        processes: peak.processes,
    })
}
