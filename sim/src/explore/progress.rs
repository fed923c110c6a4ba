//! How a long `flushbed explore` run shows it is alive: a progress bar on a
//! terminal, and on anything else (a CI log, a pipe) one line every so many
//! cases, so that a log is not flooded with redraws.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What the run loop reports as it goes.
pub trait Progress {
    /// `done` cases have finished, `failed` of them failing.
    fn cases(&mut self, done: u64, failed: u64);
    /// A failing case is being shrunk.
    fn shrinking(&mut self, case: u64);
    /// The run is over.
    fn finish(&mut self);
}

/// No progress at all (tests, libraries).
pub struct Quiet;

impl Progress for Quiet {
    fn cases(&mut self, _: u64, _: u64) {}
    fn shrinking(&mut self, _: u64) {}
    fn finish(&mut self) {}
}

/// Progress on standard error: a bar on a terminal, lines otherwise.
pub struct Stderr {
    total: u64,
    bar: Option<ProgressBar>,
    /// On a non-terminal, a line every this many cases.
    every: u64,
    last_line: u64,
    started: Instant,
}

impl Stderr {
    pub fn new(total: u64) -> Stderr {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} cases, {per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar
        });
        Stderr {
            total,
            bar,
            every: (total / 20).clamp(100, 5000),
            last_line: 0,
            started: Instant::now(),
        }
    }
}

impl Progress for Stderr {
    fn cases(&mut self, done: u64, failed: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(done);
                if failed > 0 {
                    bar.set_message(format!("{failed} failing"));
                }
            }
            None if done >= self.last_line + self.every || done == self.total => {
                self.last_line = done;
                let secs = self.started.elapsed().as_secs_f64().max(1e-9);
                let _ = writeln!(
                    std::io::stderr(),
                    "explore: {done}/{} cases, {failed} failing, {:.0} cases/s",
                    self.total,
                    done as f64 / secs
                );
            }
            None => {}
        }
    }

    fn shrinking(&mut self, case: u64) {
        match &self.bar {
            Some(bar) => bar.set_message(format!("shrinking case {case}")),
            None => {
                let _ = writeln!(std::io::stderr(), "explore: shrinking case {case}");
            }
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
