//! The logger, in the reference client's (logrus) text formats:
//!
//! - not a terminal: `time="2026-11-22T18:47:23Z" level=info msg="..."`;
//! - a terminal: `INFO[0000] message` (coloured level, seconds since start);
//! - under systemd (stderr is the journal stream, `JOURNAL_STREAM`): the
//!   first form with an sd-daemon `<N>` priority prefix, so journald keeps
//!   the levels;
//! - syslog (`/dev/log`, facility user, tag `otalite[pid]`) gets every
//!   record too, unless `--no-syslog` or journald already has them.
//!
//! One record is always one line: values are quoted and escaped as logrus
//! quotes them (Go `%q`: `\n`, `\"`, `\x1b`...), so an artifact name or a
//! script's output cannot forge a log line.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::{IsTerminal, Write};
use std::os::unix::net::UnixDatagram;
use std::sync::Mutex;
use std::time::Instant;

pub use otalite_host::time::rfc3339_now;

/// Where records go and in which form.
struct Logger {
    out: Mutex<Box<dyn Write + Send>>,
    /// `INFO[0000]` form (stderr is a terminal).
    tty: bool,
    /// sd-daemon `<N>` prefixes (stderr is the journal).
    journal: bool,
    syslog: Option<UnixDatagram>,
    start: Instant,
}

/// logrus leaves a value bare only when it has nothing but these.
fn is_bare(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '/' | '@' | '^' | '+')
}

/// Appends `c` escaped as Go's `strconv.Quote` does (`quotes`: also `"`
/// and `\`), so that no control character reaches the output.
fn push_escaped(out: &mut String, c: char, quotes: bool) {
    match c {
        '"' if quotes => out.push_str("\\\""),
        '\\' if quotes => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0b' => out.push_str("\\v"),
        '\x0c' => out.push_str("\\f"),
        c if u32::from(c) < 0x20 || c == '\x7f' => {
            out.push_str(&format!("\\x{:02x}", u32::from(c)));
        }
        c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
        c => out.push(c),
    }
}

/// A logrus text value: bare when safe (or empty), else quoted and escaped.
pub fn quote_value(value: &str) -> String {
    if value.chars().all(is_bare) {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        push_escaped(&mut out, c, true);
    }
    out.push('"');
    out
}

/// Control characters escaped (the terminal form does not quote).
fn escape_controls(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        push_escaped(&mut out, c, false);
    }
    out
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// syslog / sd-daemon severity.
fn severity(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// The logrus text line (no newline).
pub fn text_line(time: &str, level: Level, message: &str) -> String {
    format!(
        "time={} level={} msg={}",
        quote_value(time),
        level_name(level),
        quote_value(message)
    )
}

/// The logrus terminal line (no newline): `INFO[0012] message`.
fn tty_line(level: Level, seconds: u64, message: &str) -> String {
    let (color, name) = match level {
        Level::Error => (31, "ERRO"),
        Level::Warn => (33, "WARN"),
        Level::Info => (36, "INFO"),
        Level::Debug => (37, "DEBU"),
        Level::Trace => (37, "TRAC"),
    };
    format!(
        "\x1b[{color}m{name}\x1b[0m[{seconds:04}] {:<44} ",
        escape_controls(message)
    )
}

/// `Dec  2 01:58:22` (RFC 3164 timestamp, UTC) from an RFC 3339 time.
fn syslog_stamp(rfc3339: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = rfc3339
        .get(5..7)
        .and_then(|m| m.parse::<usize>().ok())
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .copied()
        .unwrap_or("Jan");
    let day = rfc3339
        .get(8..10)
        .and_then(|d| d.parse::<u8>().ok())
        .unwrap_or(1);
    let time = rfc3339.get(11..19).unwrap_or("00:00:00");
    format!("{month} {day:>2} {time}")
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = record.level();
        let message = record.args().to_string();
        let time = rfc3339_now();
        let text = text_line(&time, level, &message);
        if let Some(socket) = &self.syslog {
            let datagram = format!(
                "<{}>{} otalite[{}]: {text}",
                8 + severity(level),
                syslog_stamp(&time),
                std::process::id()
            );
            let _ = socket.send(datagram.as_bytes());
        }
        let line = if self.tty {
            tty_line(level, self.start.elapsed().as_secs(), &message)
        } else if self.journal {
            format!("<{}>{text}", severity(level))
        } else {
            text
        };
        // One write per record: lines from several threads or processes
        // sharing the file never interleave.
        let mut line = line;
        line.push('\n');
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(line.as_bytes());
        }
    }

    fn flush(&self) {
        if let Ok(mut out) = self.out.lock() {
            let _ = out.flush();
        }
    }
}

/// Parses a reference log level name.
///
/// # Errors
/// An unknown name.
pub fn parse_level(name: &str) -> Result<LevelFilter, String> {
    match name.to_ascii_lowercase().as_str() {
        "trace" => Ok(LevelFilter::Trace),
        "debug" => Ok(LevelFilter::Debug),
        "info" => Ok(LevelFilter::Info),
        "warn" | "warning" => Ok(LevelFilter::Warn),
        "error" | "fatal" | "panic" => Ok(LevelFilter::Error),
        other => Err(format!(
            "unknown log level '{}' (debug, info, warning, error, fatal, panic)",
            other.escape_debug()
        )),
    }
}

/// `JOURNAL_STREAM=<dev>:<inode>` names our stderr: systemd connected it to
/// journald, which understands `<N>` prefixes.
fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let Ok(stat) = rustix::fs::fstat(std::io::stderr()) else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(stat.st_dev) && ino.parse::<u64>().ok() == Some(stat.st_ino)
}

/// The syslog socket: `/dev/log`, or in debug builds the test knob
/// `OTALITE_TEST_SYSLOG_SOCKET`.
fn syslog_path() -> std::path::PathBuf {
    if cfg!(debug_assertions) {
        if let Some(path) = std::env::var_os("OTALITE_TEST_SYSLOG_SOCKET") {
            return path.into();
        }
    }
    "/dev/log".into()
}

/// Installs the logger: records at `level` and above go to `file` (or
/// stderr) and, unless `no_syslog`, to syslog.
pub fn init(level: LevelFilter, file: Option<std::fs::File>, no_syslog: bool) {
    let (out, tty, journal): (Box<dyn Write + Send>, bool, bool) = match file {
        Some(file) => (Box::new(file), false, false),
        None => (
            Box::new(std::io::stderr()),
            std::io::stderr().is_terminal(),
            stderr_is_journal(),
        ),
    };
    let mut syslog_error = None;
    // Under systemd, journald already stores stderr with its levels: a copy
    // to /dev/log (which journald also reads) would double every record.
    let syslog = if no_syslog || journal {
        None
    } else {
        let path = syslog_path();
        match UnixDatagram::unbound().and_then(|s| s.connect(&path).map(|()| s)) {
            Ok(socket) => Some(socket),
            Err(error) => {
                syslog_error = Some(format!("{}: {error}", path.display()));
                None
            }
        }
    };
    let logger = Box::leak(Box::new(Logger {
        out: Mutex::new(out),
        tty,
        journal,
        syslog,
        start: Instant::now(),
    }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
    if let Some(error) = syslog_error {
        // The reference warns the same way when there is no syslog daemon.
        log::warn!(
            "Could not connect to syslog daemon: {error} (use --no-syslog to disable completely)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_record_one_line() {
        let line = text_line(
            "2026-12-02T01:02:03Z",
            Level::Info,
            "artifact \"x\"\ntime=\"2020\" level=error msg=forged\x1b[31m\\",
        );
        assert_eq!(
            line,
            "time=\"2026-12-02T01:02:03Z\" level=info msg=\"artifact \\\"x\\\"\\ntime=\\\"2020\\\" \
             level=error msg=forged\\x1b[31m\\\\\""
        );
        assert!(!line.contains('\n'));
        assert_eq!(quote_value("release-1"), "release-1");
        assert_eq!(quote_value(""), "");
        assert_eq!(quote_value("a\u{85}b"), "\"a\\u0085b\"");
        assert!(!tty_line(Level::Warn, 3, "a\nb").contains('\n'));
        assert!(tty_line(Level::Warn, 3, "a").starts_with("\x1b[33mWARN\x1b[0m[0003] a "));
    }

    #[test]
    fn syslog_timestamps() {
        assert_eq!(syslog_stamp("2026-12-02T01:58:22Z"), "Dec  2 01:58:22");
        assert_eq!(syslog_stamp("2026-01-15T23:00:00Z"), "Jan 15 23:00:00");
    }
}
