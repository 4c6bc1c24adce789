//! `otalite control-map set|show|clear`: Update Control Maps for devices
//! without D-Bus, with the semantics of `io.mender.Update1.SetUpdateControlMap`
//! (otalite::agent::control_map).
//!
//! | daemon | `set <file\|->` | `show` | `clear` |
//! |---|---|---|---|
//! | running | request file + SIGHUP; the daemon applies it and answers (20 s at most) | the stored maps | request + SIGHUP |
//! | not running | the stored maps (`<data>/otalite.control-maps`) changed atomically, for its next start | the stored maps | the stored maps removed |
//!
//! `set` prints the refresh interval in seconds, as the D-Bus method
//! returns it: send the map again within it or it expires.

use crate::signals;
use otalite::agent::control_map::{refresh_interval_secs, ControlMap, Pool, MAX_ENCODED_LEN};
use otalite::agent::Instant;
use otalite::config::MenderConfig;
use otalite_host::fs::atomic_write;
use otalite_host::paths::Paths;
use otalite_host::state::{CONTROL_MAPS_FILE, CONTROL_MAP_REPLY_FILE, CONTROL_MAP_REQUEST_FILE};
use std::ffi::OsString;
use std::io::Read;
use std::time::{Duration, Instant as StdInstant};

use crate::cli::ControlMapVerb;

/// How long `set`/`clear` waits for the running daemon's answer.
const ANSWER_WAIT: Duration = Duration::from_secs(20);

/// Runs the verb; the exit code or the error to print.
pub fn run(paths: &Paths, config: &MenderConfig, verb: &ControlMapVerb) -> Result<i32, String> {
    let expiration = config.update_control_map_expiration();
    match verb {
        ControlMapVerb::Show => show(paths, config),
        ControlMapVerb::Set(file) => {
            let json = read_map(file)?;
            // Refused here with the reason, before any daemon is bothered.
            match ControlMap::parse(json.as_bytes()) {
                Ok(_) | Err(otalite::agent::control_map::Error::Null) => {}
                Err(e) => return Err(format!("invalid update control map: {e}")),
            }
            if signals::find_daemon(&paths.data_dir).is_ok() {
                let answer = ask_daemon(paths, &format!("set\n{json}"))?;
                println!("{answer}");
                return Ok(0);
            }
            let mut pool = stored(paths, config)?;
            pool.set_local_json(json.as_bytes(), Instant::from_millis(0), expiration)
                .map_err(|e| format!("invalid update control map: {e}"))?;
            store(paths, &pool)?;
            println!("{}", refresh_interval_secs(expiration));
            Ok(0)
        }
        ControlMapVerb::Clear => {
            if signals::find_daemon(&paths.data_dir).is_ok() {
                ask_daemon(paths, "clear")?;
                return Ok(0);
            }
            let path = paths.data_dir.join(CONTROL_MAPS_FILE);
            match std::fs::remove_file(&path) {
                Ok(()) => Ok(0),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
                Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
            }
        }
    }
}

fn read_map(file: &OsString) -> Result<String, String> {
    let mut text = String::new();
    if file == "-" {
        std::io::stdin()
            .take(64 * 1024)
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the map from standard input: {e}"))?;
    } else {
        text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.to_string_lossy()))?;
    }
    Ok(text)
}

/// The stored pool (empty when there is none).
fn stored(paths: &Paths, config: &MenderConfig) -> Result<Pool, String> {
    let path = paths.data_dir.join(CONTROL_MAPS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => Pool::load(
            &bytes,
            Instant::from_millis(0),
            config.update_control_map_boot_expiration(),
        )
        .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Pool::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn store(paths: &Paths, pool: &Pool) -> Result<(), String> {
    let mut buf = [0u8; MAX_ENCODED_LEN];
    let len = pool
        .encode(&mut buf)
        .map_err(|e| format!("cannot encode the maps: {e}"))?;
    let path = paths.data_dir.join(CONTROL_MAPS_FILE);
    std::fs::create_dir_all(&paths.data_dir)
        .and_then(|()| atomic_write(&path, buf.get(..len).unwrap_or_default()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn show(paths: &Paths, config: &MenderConfig) -> Result<i32, String> {
    let pool = stored(paths, config)?;
    let mut buf = [0u8; 1024];
    for entry in pool.entries() {
        let len = entry
            .map()
            .write_json(&mut buf)
            .map_err(|e| format!("cannot print a map: {e}"))?;
        let text = String::from_utf8_lossy(buf.get(..len).unwrap_or_default());
        if entry.is_expired() {
            println!("{text} (expired)");
        } else {
            println!("{text}");
        }
    }
    Ok(0)
}

/// Hands `request` to the running daemon and waits for its answer.
fn ask_daemon(paths: &Paths, request: &str) -> Result<String, String> {
    let dir = &paths.data_dir;
    let reply = dir.join(CONTROL_MAP_REPLY_FILE);
    let _ = std::fs::remove_file(&reply);
    let path = dir.join(CONTROL_MAP_REQUEST_FILE);
    atomic_write(&path, request.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    signals::signal_daemon(dir, signals::Request::ControlMap)?;
    let started = StdInstant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&reply) {
            let _ = std::fs::remove_file(&reply);
            return match text.split_once(' ') {
                Some(("ok", rest)) => Ok(rest.trim().to_owned()),
                Some(("error", why)) => Err(why.trim().to_owned()),
                _ => Err(format!("unexpected answer from the daemon: {text}")),
            };
        }
        if started.elapsed() > ANSWER_WAIT {
            let _ = std::fs::remove_file(&path);
            return Err("the daemon did not answer within 20 s".to_owned());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
