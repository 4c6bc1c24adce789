//! A small logger in the reference client's (logrus) text format:
//! `time="2026-11-22T18:47:23Z" level=info msg="..."`.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

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
