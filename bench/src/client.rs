//! The one flush client every server is measured with: connect to the
//! flush socket, read the protocol announcement, write one request in one
//! write, read the status reply, close, as `flush_clnt.c` does. And the
//! load runner: a fixed number of requests from one or more concurrent
//! clients, a warm-up first, the latency of each request kept.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// What the server announces on connect.
pub const ANNOUNCEMENT: &[u8] = b"protocol\0queue_flush_protocol\0\0";
/// The reply of a request that succeeded.
pub const OK_REPLY: &[u8] = b"status\x000\x00\x00";
/// How long a client waits for a server before it calls the run failed.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// One request: the bytes the server wrote after its announcement.
pub fn request(socket: &Path, wire: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut stream = UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;

    let mut buf = Vec::with_capacity(64);
    read_list(&mut stream, &mut buf)?;
    if buf != ANNOUNCEMENT {
        bail!(
            "{}: unexpected announcement {:?}",
            socket.display(),
            escape(&buf)
        );
    }

    stream.write_all(wire)?;
    buf.clear();
    read_list(&mut stream, &mut buf)?;
    Ok(buf)
}

/// Reads one attribute list (names and values ended by NUL, the list by an
/// empty name), or up to the end of input.
fn read_list(stream: &mut UnixStream, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    let mut chunk = [0u8; 256];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("reading from the flush server"),
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if list_complete(buf) {
            return Ok(());
        }
    }
}

/// Whether `buf` holds a whole attribute list: pairs of NUL-ended strings,
/// then an empty name.
fn list_complete(buf: &[u8]) -> bool {
    let mut fields = buf.split(|&b| b == 0);
    loop {
        match fields.next() {
            // The empty name; `split` leaves one more (empty) piece after
            // the last NUL.
            Some([]) => return fields.next() == Some(&[][..]) && fields.next().is_none(),
            Some(_) => {}
            None => return false,
        }
        match fields.next() {
            Some(_) if fields.clone().next().is_some() => {}
            _ => return false,
        }
    }
}

/// Bytes as a person reads them in an error message.
pub fn escape(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// How a load ran.
#[derive(Debug, Clone)]
pub struct Load {
    pub requests: usize,
    pub clients: usize,
    pub elapsed: Duration,
    /// Each request's latency, sorted.
    pub latencies: Vec<Duration>,
    /// The CPU time the server used for the measured requests.
    pub server_cpu: Duration,
}

impl Load {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// The server's CPU time per request.
    pub fn cpu_per_request(&self) -> Duration {
        self.server_cpu / self.requests.max(1) as u32
    }

    /// The latency below which `fraction` of the requests finished.
    pub fn percentile(&self, fraction: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = (fraction * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }
}

/// Sends `warmup` requests and then `wires.len()` measured ones, each batch
/// shared out among `clients` concurrent clients; every reply must be
/// [`OK_REPLY`]. `cpu` reads the server's CPU time used so far.
pub fn run_load(
    socket: &Path,
    clients: usize,
    warmup: &[Vec<u8>],
    wires: &[Vec<u8>],
    cpu: &dyn Fn() -> Duration,
) -> anyhow::Result<Load> {
    run_batch(socket, clients, warmup).context("warm-up")?;
    let before = cpu();
    let mut load = run_batch(socket, clients, wires)?;
    load.server_cpu = cpu().saturating_sub(before);
    Ok(load)
}

fn run_batch(socket: &Path, clients: usize, wires: &[Vec<u8>]) -> anyhow::Result<Load> {
    let next = AtomicUsize::new(0);
    let start = Barrier::new(clients + 1);
    let (elapsed, results) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<Vec<Duration>> {
                    let mut latencies = Vec::with_capacity(wires.len() / clients + 1);
                    start.wait();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(wire) = wires.get(i) else {
                            return Ok(latencies);
                        };
                        let began = Instant::now();
                        let reply = request(socket, wire)?;
                        latencies.push(began.elapsed());
                        if reply != OK_REPLY {
                            bail!(
                                "request {:?} got {:?}, not OK",
                                escape(wire),
                                escape(&reply)
                            );
                        }
                    }
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        let results: Vec<_> = workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a client panicked")))
            })
            .collect();
        (began.elapsed(), results)
    });

    let mut latencies = Vec::with_capacity(wires.len());
    for result in results {
        latencies.extend(result?);
    }
    latencies.sort_unstable();
    Ok(Load {
        requests: wires.len(),
        clients,
        elapsed,
        latencies,
        server_cpu: Duration::ZERO,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_complete_only_after_its_empty_name() {
        assert!(list_complete(b"status\x000\x00\x00"));
        assert!(list_complete(ANNOUNCEMENT));
        assert!(!list_complete(b"status\x000\x00"));
        assert!(!list_complete(b"status\x00"));
        assert!(!list_complete(b"status"));
        assert!(!list_complete(b""));
    }

    #[test]
    fn a_value_may_be_empty() {
        assert!(list_complete(b"name\x00\x00\x00"));
        assert!(!list_complete(b"name\x00\x00"));
    }

    #[test]
    fn percentiles_are_ranks_of_the_sorted_latencies() {
        let load = Load {
            requests: 100,
            clients: 1,
            elapsed: Duration::from_secs(1),
            latencies: (1..=100).map(Duration::from_millis).collect(),
            server_cpu: Duration::from_millis(300),
        };
        assert_eq!(load.percentile(0.5), Duration::from_millis(50));
        assert_eq!(load.percentile(0.99), Duration::from_millis(99));
        assert_eq!(load.per_second(), 100.0);
        assert_eq!(load.cpu_per_request(), Duration::from_millis(3));
    }
}
