//! `otalite`: the Linux agent. A drop-in for the reference `mender` 3.x
//! standalone verbs (same options, paths and exit codes).

// A binary exports nothing: `pub` inside its modules means "used by main".
#![allow(unreachable_pub)]
// A std program: `std::` paths are the natural ones here.
#![allow(clippy::std_instead_of_core)]

mod board;
mod cli;
mod control_map;
mod daemon;
mod jobs;
mod logger;
mod signals;
mod standalone;
mod status;

use otalite::agent::HandOffRole;
use otalite::board::MenderBootControl;
use otalite::config::MenderConfig;
use otalite_host::paths::Paths;
use standalone::{Failure, Verb, EXIT_OK};
use std::process::ExitCode;

/// `otalite --version`: the version and what this build is.
fn version() -> String {
    format!(
        "otalite {} (commit {}, target {}, {} build)\n\
         features: payloads none/gzip/xz/zstd, signatures RSA/ECDSA P-256, \
         boot env u-boot/grub, syslog/journald logging\n\
         compatible with: mender client 3.4 command line, Mender Artifact format 3 (and 2)\n",
        env!("CARGO_PKG_VERSION"),
        env!("OTALITE_GIT_COMMIT"),
        env!("OTALITE_TARGET"),
        env!("OTALITE_PROFILE"),
    )
}

/// The configuration for a debug log: secrets replaced.
fn redacted(config: &MenderConfig) -> MenderConfig {
    let mut shown = config.clone();
    if shown.tenant_token.is_some() {
        shown.tenant_token = heapless::String::try_from("<redacted>").ok();
    }
    shown
}

fn load_config(args: &cli::Args, paths: &Paths) -> Result<MenderConfig, Failure> {
    // A missing fallback file is normal (the reference's default too, and
    // what `-b /nonexistent` is used for: no fallback at all).
    for (what, path, given) in [
        ("fallback configuration", &paths.fallback_config, false),
        ("configuration", &paths.config, args.config.is_some()),
    ] {
        if path.exists() {
            log::debug!("reading the {what} {}", path.display());
        } else if given {
            // The reference silently uses defaults; a path given on the
            // command line that does not exist is almost always a typo.
            return Err(Failure::error(format!(
                "the {what} file {} given on the command line does not exist",
                path.display()
            )));
        } else {
            log::debug!("{what} file {} does not exist (defaults)", path.display());
        }
    }
    let mut config = paths
        .load_config()
        .map_err(|e| Failure::error(e.to_string()))?;
    // `--skipverify` overrides `SkipVerify`, as in the reference.
    if args.skip_verify {
        log::debug!("--skipverify: TLS certificates are not verified");
        config.skip_verify = Some(true);
    }
    if let Some(certs) = &args.trusted_certs {
        std::fs::File::open(certs).map_err(|e| {
            Failure::error(format!(
                "cannot read the trusted certificates {} (-E): {e}",
                certs.display()
            ))
        })?;
        let text = certs.to_str().ok_or_else(|| {
            Failure::error(format!(
                "the trusted certificates path {} (-E) is not valid UTF-8",
                certs.display()
            ))
        })?;
        config.server_certificate = Some(heapless::String::try_from(text).map_err(|_| {
            Failure::error(format!(
                "the trusted certificates path (-E) is longer than {} bytes",
                otalite::config::MAX_PATH_LEN
            ))
        })?);
        log::debug!("-E {text}: used as ServerCertificate");
    }
    log::debug!("configuration: {:?}", redacted(&config));
    Ok(config)
}

/// Runs `work` on a short-lived thread and returns its result.
///
/// For set-up steps with deep stacks (parsing the configuration into its
/// 12.7 KB struct, building the 87 KB agent: 200-270 KB of frames, every
/// page touched by the stack probes). On the main thread those pages would
/// stay resident for the daemon's life; a thread's stack is unmapped when
/// it is joined (README, Measured: idle RSS). Falls back to running `work`
/// here when no thread can be started.
pub fn on_transient_stack<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    let mut pending = Some(work);
    let slot = &mut pending;
    let ran = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("otalite-setup".into())
            .spawn_scoped(scope, move || slot.take().map(|work| work()))
            .ok()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
    });
    match (ran.flatten(), pending) {
        (Some(result), _) => result,
        // No thread: the closure was dropped unrun, the work is still here.
        (None, Some(work)) => work(),
        (None, None) => unreachable!("the set-up thread took the work and returned nothing"),
    }
}

/// The program was started under this name (a symlink: `upparat`,
/// `mender-python-client`).
fn called_as(name: &str) -> bool {
    std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|path| path.file_name().map(|n| n == name))
        .unwrap_or(false)
}

fn run() -> Result<i32, Failure> {
    // upparat's command line: called as `upparat`, or `otalite jobs ...`.
    if called_as("upparat") {
        return jobs::run(&jobs::parse(std::env::args_os().skip(1))?);
    }
    if std::env::args_os()
        .nth(1)
        .is_some_and(|verb| verb == "jobs")
    {
        return jobs::run(&jobs::parse(std::env::args_os().skip(2))?);
    }
    let args = cli::parse(std::env::args_os().skip(1)).map_err(|e| Failure {
        message: e.message,
        code: e.code,
    })?;
    match &args.command {
        cli::Command::Help(text) => {
            print!("{text}");
            return Ok(EXIT_OK);
        }
        cli::Command::Version => {
            print!("{}", version());
            return Ok(EXIT_OK);
        }
        _ => {}
    }
    let level =
        logger::parse_level(args.log_level.as_deref().unwrap_or("info")).map_err(Failure::error)?;
    let file = match &args.log_file {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    Failure::error(format!("cannot open log file {}: {e}", path.display()))
                })?,
        ),
        None => None,
    };
    logger::init(level, file, args.no_syslog);
    log::debug!("otalite {} started: {:?}", env!("CARGO_PKG_VERSION"), args);
    if args.passphrase_file.is_some() {
        return Err(Failure::error(
            "--passphrase-file: encrypted device keys are not supported by otalite",
        ));
    }
    if args.force_bootstrap {
        log::debug!("-F/--forcebootstrap: the daemon authenticates at every start anyway");
    }
    let paths = Paths::resolve(
        args.config.clone(),
        args.fallback_config.clone(),
        args.data.clone(),
    );
    for name in ["MENDER_CONF_DIR", "MENDER_DATASTORE_DIR", "MENDER_DATA_DIR"] {
        match std::env::var_os(name) {
            Some(value) => log::debug!("environment {name}={}", value.to_string_lossy()),
            None => log::debug!("environment {name} not set (default)"),
        }
    }
    log::debug!(
        "paths: config {}, fallback config {}, data {}, conf dir {}, share dir {}",
        paths.config.display(),
        paths.fallback_config.display(),
        paths.data_dir.display(),
        paths.conf_dir.display(),
        paths.share_dir.display()
    );
    // First start after the reference client: carry its store over.
    if !matches!(args.command, cli::Command::Help(_) | cli::Command::Version) {
        on_transient_stack(|| otalite_host::takeover::take_over(&paths, board::boot_state));
    }
    match args.command.clone() {
        cli::Command::Help(_) | cli::Command::Version => Ok(EXIT_OK),
        cli::Command::Unsupported(verb) => Err(Failure::error(format!(
            "'{verb}' is not supported by otalite (see 'otalite {verb} --help')"
        ))),
        cli::Command::ShowArtifact => standalone::show(&paths, false),
        cli::Command::ShowProvides => standalone::show(&paths, true),
        cli::Command::CheckUpdate => {
            signals::signal_daemon(&paths.data_dir, signals::Request::CheckUpdate)
                .map(|()| EXIT_OK)
                .map_err(Failure::error)
        }
        cli::Command::SendInventory => {
            signals::signal_daemon(&paths.data_dir, signals::Request::SendInventory)
                .map(|()| EXIT_OK)
                .map_err(Failure::error)
        }
        cli::Command::ControlMap(verb) => {
            let config = load_config(&args, &paths)?;
            control_map::run(&paths, &config, &verb).map_err(Failure::error)
        }
        cli::Command::Status { json } => {
            let config = load_config(&args, &paths)?;
            Ok(status::run(&paths, &config, json))
        }
        command => {
            let config = on_transient_stack(|| load_config(&args, &paths))?;
            if matches!(command, cli::Command::Daemon { .. }) && args.log_level.is_none() {
                if let Some(name) = config.daemon_log_level.as_deref() {
                    match logger::parse_level(name) {
                        Ok(level) => {
                            log::set_max_level(level);
                            log::debug!("DaemonLogLevel {name} applies");
                        }
                        Err(e) => log::warn!("DaemonLogLevel in mender.conf: {e}; using info"),
                    }
                }
            }
            let hooks = match &command {
                cli::Command::Daemon { hooks, hand_off } if !hand_off => hooks
                    .clone()
                    .or_else(|| config.hooks_config.as_deref().map(std::path::PathBuf::from)),
                _ => None,
            };
            let hooks = hooks.map(|path| daemon::load_hooks(&path)).transpose()?;
            let hand_off = match command {
                cli::Command::Daemon { hand_off, .. } => {
                    hooks.is_some()
                        || hand_off
                        || config.hand_off == Some(true)
                        || called_as("mender-python-client")
                }
                cli::Command::Report { .. } => true,
                _ => false,
            };
            // The hand-off flows never touch the bootloader: the installer
            // owns it (a device may not even have an env otalite reads).
            let env = if hand_off {
                board::AnyEnv::None
            } else {
                board::open_env(&config).map_err(Failure::error)?
            };
            let boot = MenderBootControl::new(env);
            match command {
                cli::Command::Install {
                    location,
                    reboot_exit_code,
                } => {
                    let location = location.into_string().map_err(|location| {
                        Failure::error(format!(
                            "the artifact path {} is not valid UTF-8: rename the file",
                            std::path::Path::new(&location).display()
                        ))
                    })?;
                    standalone::run(
                        paths,
                        config,
                        boot,
                        Verb::Install {
                            location,
                            reboot_exit_code,
                        },
                    )
                }
                cli::Command::Commit => standalone::run(paths, config, boot, Verb::Commit),
                cli::Command::Rollback => standalone::run(paths, config, boot, Verb::Rollback),
                cli::Command::Daemon { .. } if hooks.is_some() => {
                    daemon::run_daemon(paths, config, boot, HandOffRole::Off, hooks)
                }
                cli::Command::Daemon { .. } if hand_off => {
                    daemon::run_daemon(paths, config, boot, HandOffRole::Daemon, None)
                }
                cli::Command::Daemon { .. } => {
                    daemon::run_daemon(paths, config, boot, HandOffRole::Off, None)
                }
                cli::Command::Report { success } => {
                    daemon::run_report(paths, config, boot, HandOffRole::Report { success })
                }
                _ => Ok(EXIT_OK),
            }
        }
    }
}

fn main() -> ExitCode {
    let code = match run() {
        Ok(code) => code,
        Err(failure) => {
            log::error!("{}", failure.message);
            if log::max_level() == log::LevelFilter::Off {
                eprintln!("otalite: {}", failure.message);
            }
            failure.code
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
