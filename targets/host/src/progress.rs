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
        // Integer arithmetic only: formatting an `f64` would link core's
        // float printer (about 20 KiB of the static binary) for one field.
        let elapsed_ms = u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        // Bytes per second, and tenths of MiB/s for the text.
        let speed =
            u64::try_from(u128::from(done) * 1000 / u128::from(elapsed_ms)).unwrap_or(u64::MAX);
        let tenths = Tenths(speed.saturating_mul(10) / 1_048_576);
        if self.terminal {
            let width = 30usize;
            let filled = (percent as usize * width / 100).min(width);
            let eta = total.saturating_sub(done).checked_div(speed).unwrap_or(0);
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r[{}{}] {percent:3}%  {:>8} MiB/s  ETA {}:{:02}  ",
                "=".repeat(filled),
                " ".repeat(width - filled),
                tenths.to_string(),
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
                    "written {} of {} MiB ({percent}%), {tenths} MiB/s",
                    done >> 20,
                    total >> 20,
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

/// A count of tenths printed as a decimal with one digit (`123` as `12.3`).
struct Tenths(u64);

impl std::fmt::Display for Tenths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0 / 10, self.0 % 10)
    }
}

#[cfg(test)]
mod tests {
    use super::Tenths;

    #[test]
    fn tenths_print_one_decimal() {
        assert_eq!(Tenths(0).to_string(), "0.0");
        assert_eq!(Tenths(7).to_string(), "0.7");
        assert_eq!(Tenths(123).to_string(), "12.3");
        assert_eq!(format!("{:>6}", Tenths(123).to_string()), "  12.3");
    }
}
