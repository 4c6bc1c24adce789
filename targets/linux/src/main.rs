//! `otalite`: the Linux agent. A drop-in for the reference `mender` 3.x
//! standalone verbs (same options, paths and exit codes).

// A binary exports nothing: `pub` inside its modules means "used by main".
#![allow(unreachable_pub)]
// A std program: `std::` paths are the natural ones here.
#![allow(clippy::std_instead_of_core)]

mod board;
mod cli;
mod daemon;
mod logger;
mod signals;
mod standalone;

use otalite::board::MenderBootControl;
use otalite_host::paths::Paths;
use standalone::{Failure, Verb, EXIT_ERROR, EXIT_OK};
use std::process::ExitCode;

fn run() -> Result<i32, Failure> {
    let args = cli::parse(std::env::args().skip(1)).map_err(|message| Failure {
        message,
        code: EXIT_ERROR,
    })?;
    let level =
        logger::parse_level(args.log_level.as_deref().unwrap_or("info")).map_err(|message| {
            Failure {
                message,
                code: EXIT_ERROR,
            }
        })?;
    let out: Box<dyn std::io::Write + Send> = match &args.log_file {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| Failure {
                    message: format!("cannot open log file {}: {e}", path.display()),
                    code: EXIT_ERROR,
                })?,
        ),
        None => Box::new(std::io::stderr()),
    };
    logger::init(level, out);
    let paths = Paths::resolve(
        args.config.clone(),
        args.fallback_config.clone(),
        args.data.clone(),
    );
    // First start after the reference client: carry its store over.
    if !matches!(args.command, cli::Command::Help | cli::Command::Version) {
        otalite_host::takeover::take_over(&paths, board::boot_state);
    }
    match args.command {
        cli::Command::Help => {
            print!("{}", cli::USAGE);
            Ok(EXIT_OK)
        }
        cli::Command::Version => {
            println!("otalite {}", env!("CARGO_PKG_VERSION"));
            Ok(EXIT_OK)
        }
        cli::Command::ShowArtifact => standalone::show(&paths, false),
        cli::Command::ShowProvides => standalone::show(&paths, true),
        cli::Command::CheckUpdate => signals::signal_daemon(&paths.data_dir, "USR1")
            .map(|()| EXIT_OK)
            .map_err(|message| Failure {
                message,
                code: EXIT_ERROR,
            }),
        cli::Command::SendInventory => signals::signal_daemon(&paths.data_dir, "USR2")
            .map(|()| EXIT_OK)
            .map_err(|message| Failure {
                message,
                code: EXIT_ERROR,
            }),
        command => {
            let mut config = paths.load_config().map_err(|e| Failure {
                message: e.to_string(),
                code: EXIT_ERROR,
            })?;
            // `--skipverify` overrides `SkipVerify`, as in the reference.
            if args.skip_verify {
                config.skip_verify = Some(true);
            }
            let env = board::open_env(&config).map_err(|message| Failure {
                message,
                code: EXIT_ERROR,
            })?;
            let boot = MenderBootControl::new(env);
            match command {
                cli::Command::Install {
                    location,
                    reboot_exit_code,
                } => standalone::run(
                    paths,
                    config,
                    boot,
                    Verb::Install {
                        location,
                        reboot_exit_code,
                    },
                ),
                cli::Command::Commit => standalone::run(paths, config, boot, Verb::Commit),
                cli::Command::Rollback => standalone::run(paths, config, boot, Verb::Rollback),
                cli::Command::Daemon => daemon::run_daemon(paths, config, boot),
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
