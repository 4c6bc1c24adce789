//! A small logger in the reference client's (logrus) text format:
//! `time="2026-11-22T18:47:23Z" level=info msg="..."`.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::Mutex;

struct Logger {
    out: Mutex<Box<dyn Write + Send>>,
}

impl Log for Logger {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let level = match record.level() {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        let message = record
            .args()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(
                out,
                "time=\"{}\" level={level} msg=\"{message}\"",
                rfc3339_now()
            );
        }
    }

    fn flush(&self) {
        if let Ok(mut out) = self.out.lock() {
            let _ = out.flush();
        }
    }
}

pub use otalite_host::time::rfc3339_now;

/// Parses a reference log level name.
pub fn parse_level(name: &str) -> Result<LevelFilter, String> {
    match name.to_ascii_lowercase().as_str() {
        "trace" => Ok(LevelFilter::Trace),
        "debug" => Ok(LevelFilter::Debug),
        "info" => Ok(LevelFilter::Info),
        "warn" | "warning" => Ok(LevelFilter::Warn),
        "error" | "fatal" | "panic" => Ok(LevelFilter::Error),
        other => Err(format!(
            "unknown log level '{other}' (debug, info, warning, error)"
        )),
    }
}

/// Installs the logger writing to `out`.
pub fn init(level: LevelFilter, out: Box<dyn Write + Send>) {
    let logger = Box::leak(Box::new(Logger {
        out: Mutex::new(out),
    }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}
