//! Install progress: a bar with speed and ETA on a terminal, plain log
//! lines (every 10 %) otherwise.

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Progress reporter.
pub struct Progress {
    started: Instant,
    terminal: bool,
    last_decile: u64,
    drawn: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// A reporter that draws a bar when standard error is a terminal.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
            last_decile: 0,
            drawn: false,
        }
    }

    /// Reports `done` of `total` bytes.
    pub fn update(&mut self, done: u64, total: u64) {
        if done == 0 {
            self.started = Instant::now();
        }
        let percent = done.saturating_mul(100).checked_div(total).unwrap_or(100);
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let speed = done as f64 / elapsed;
        if self.terminal {
            let width = 30usize;
            let filled = (percent as usize * width / 100).min(width);
            let eta = if speed > 0.0 {
                (total.saturating_sub(done)) as f64 / speed
            } else {
                0.0
            };
            let eta = eta as u64;
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r[{}{}] {percent:3}%  {:8.1} MiB/s  ETA {}:{:02}  ",
                "=".repeat(filled),
                " ".repeat(width - filled),
                speed / 1_048_576.0,
                eta / 60,
                eta % 60
            );
            self.drawn = true;
            if done >= total {
                let _ = writeln!(err);
                self.drawn = false;
            }
            let _ = err.flush();
        } else {
            let decile = percent / 10;
            if decile > self.last_decile || done >= total {
                self.last_decile = decile;
                log::info!(
                    "written {} of {} MiB ({percent}%), {:.1} MiB/s",
                    done >> 20,
                    total >> 20,
                    speed / 1_048_576.0
                );
            }
        }
    }

    /// Ends a half-drawn bar (on errors).
    pub fn abandon(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}
