//! `upparat [-v] -c <config> [-t <thing>]` (the otalite binary called as
//! `upparat`) and `otalite jobs ...` (the same): the AWS IoT Jobs flow
//! with upparat's INI file, as upparat 1.12 reads it.

use crate::standalone::{boxed_agent, Failure};
use otalite::agent::{AgentConfig, HookSet, JobsSettings, Mode, Timing};
use otalite::board::BootState;
use otalite::protocol::upparat_ini::UpparatConfig;
use otalite::store::StateRecord;
use otalite_host::http::{ClientAuth, HttpClient, HttpConfig};
use otalite_host::jobs::{Broker, BuiltinCommand, HookPaths, JobsHost};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

const USAGE: &str = "\
usage: upparat [-h] [-v] [-c CONFIG_FILE] [-t THING_NAME]

AWS IoT Jobs agent (otalite, upparat 1.12 compatible)

options:
  -h, --help            show this help message and exit
  -v, --verbose         log at debug level
  -c, --config-file CONFIG_FILE
                        Load configuration from a file.
  -t, --thing-name THING_NAME
                        AWS thing name
";

/// upparat's command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobsArgs {
    /// `-v`.
    pub verbose: bool,
    /// `-c`.
    pub config: Option<PathBuf>,
    /// `-t`.
    pub thing_name: Option<String>,
    /// `-h`.
    pub help: bool,
}

/// Parses upparat's options.
///
/// # Errors
/// An unknown option or a missing value (exit 2, as argparse).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<JobsArgs, Failure> {
    use lexopt::prelude::*;
    let usage = |message: String| Failure {
        message: format!("{message}\n{USAGE}"),
        code: 2,
    };
    let mut parsed = JobsArgs::default();
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| usage(e.to_string()))? {
        match arg {
            Short('v') | Long("verbose") => parsed.verbose = true,
            Short('h') | Long("help") => parsed.help = true,
            Short('c') | Long("config-file") => {
                parsed.config = Some(PathBuf::from(
                    parser.value().map_err(|e| usage(e.to_string()))?,
                ));
            }
            Short('t') | Long("thing-name") => {
                let value = parser.value().map_err(|e| usage(e.to_string()))?;
                parsed.thing_name = Some(
                    value
                        .into_string()
                        .map_err(|_| usage("the thing name is not UTF-8".into()))?,
                );
            }
            other => return Err(usage(other.unexpected().to_string())),
        }
    }
    Ok(parsed)
}

fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Runs the jobs agent until SIGTERM/SIGINT.
///
/// # Errors
/// An unreadable or invalid INI, TLS files that cannot be used, a fatal
/// agent error.
pub fn run(args: &JobsArgs) -> Result<i32, Failure> {
    if args.help {
        print!("{USAGE}");
        return Ok(0);
    }
    let text = match &args.config {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| Failure::error(format!("cannot read {}: {e}", path.display())))?,
        None => String::new(),
    };
    let host = hostname();
    let ini = UpparatConfig::parse(&text, &host).map_err(|e| {
        Failure::error(format!(
            "{}: {e}",
            args.config
                .as_deref()
                .map_or("<defaults>".into(), |p| p.display().to_string())
        ))
    })?;
    let level = if args.verbose {
        log::LevelFilter::Debug
    } else {
        crate::logger::parse_level(ini.service.log_level).unwrap_or(log::LevelFilter::Info)
    };
    crate::logger::init(level.max(log::LevelFilter::Info), None, true);
    let thing = args
        .thing_name
        .clone()
        .unwrap_or_else(|| ini.broker.thing_name.to_string());
    let download_dir = ini
        .service
        .download_location
        .map_or_else(std::env::temp_dir, PathBuf::from)
        .join("upparat");
    std::fs::create_dir_all(&download_dir)
        .map_err(|e| Failure::error(format!("cannot create {}: {e}", download_dir.display())))?;
    let mut http = HttpConfig::default();
    if let Some(tls) = &ini.broker.tls {
        // The broker's CA only, as upparat's `load_verify_locations`.
        http.server_certificate = Some(PathBuf::from(tls.cafile));
        http.client_auth = Some(ClientAuth {
            certificate: PathBuf::from(tls.certfile),
            key: PathBuf::from(tls.keyfile),
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    http.stop = Some(Arc::clone(&stop));
    let client = HttpClient::new(http.clone())
        .map_err(|e| Failure::error(format!("cannot set up TLS: {e}")))?;
    // Downloads trust the system store (pre-signed S3 URLs), not only the
    // broker's CA.
    let mut download_http = http;
    download_http.server_certificate = None;
    download_http.client_auth = None;
    let download_client = HttpClient::new(download_http)
        .map_err(|e| Failure::error(format!("cannot set up HTTPS: {e}")))?;
    let hooks = HookPaths {
        version: ini.hooks.version.map(PathBuf::from),
        download: ini.hooks.download.map(PathBuf::from),
        install: ini.hooks.install.map(PathBuf::from),
        restart: ini.hooks.restart.map(PathBuf::from),
        ready: ini.hooks.ready.map(PathBuf::from),
    };
    let hooks_install_unset = hooks.install.is_none();
    let settings = JobsSettings {
        thing_name: &thing,
        client_id: ini.broker.client_id,
        job_prefix: otalite::protocol::jobs::UPPARAT_JOB_PREFIX,
        hooks: HookSet {
            version: hooks.version.is_some(),
            download: hooks.download.is_some(),
            install: hooks.install.is_some(),
            restart: hooks.restart.is_some(),
            ready: hooks.ready.is_some(),
        },
        retry_interval_ms: u64::from(ini.hooks.retry_interval).saturating_mul(1000),
        max_retries: ini.hooks.max_retries,
        keep_alive_secs: 60,
        mender_install: ini.otalite.mender_install,
    };
    otalite::protocol::jobs::validate_thing_name(&thing)
        .map_err(|e| Failure::error(format!("thing name '{thing}': {e}")))?;
    let mut host = JobsHost::new(
        client,
        Broker {
            host: ini.broker.host.to_string(),
            port: ini.broker.port,
            tls: ini.broker.tls.is_some(),
        },
        hooks,
        download_dir,
        Arc::clone(&stop),
    );
    host.download_client = Some(download_client);
    if settings.mender_install && hooks_install_unset {
        let program = std::env::current_exe()
            .map_err(|e| Failure::error(format!("cannot find this program: {e}")))?;
        host.builtin = Some(BuiltinCommand {
            program,
            args: vec![
                "--config".into(),
                ini.otalite.mender_config.into(),
                "--data".into(),
                ini.otalite.mender_data.into(),
                "--no-syslog".into(),
            ],
        });
    }
    let record = match std::fs::read(host.state_path()) {
        Ok(bytes) => StateRecord::decode(&bytes).unwrap_or_else(|e| {
            log::warn!("{}: {e}; starting fresh", host.state_path().display());
            StateRecord::default()
        }),
        Err(_) => StateRecord::default(),
    };
    let config = AgentConfig {
        device_type: "",
        keys: &[],
        signatures_required: false,
        timing: Timing::from_config(&otalite::config::MenderConfig::default()),
        mode: Mode::Jobs(settings),
    };
    let mut agent = crate::on_transient_stack(move || {
        boxed_agent(
            config,
            record,
            // The hooks own the bootloader in this mode.
            BootState {
                boot_part: None,
                upgrade_available: false,
                bootcount: None,
            },
        )
    })?;
    // SIGTERM / SIGINT raise `stop`; the loop stops at the next safe point.
    let (_waker, _wake) = crate::signals::wake_channel(Arc::clone(&stop))
        .map_err(|e| Failure::error(format!("cannot set up signals: {e}")))?;
    log::info!(
        "otalite {} AWS IoT Jobs agent started: thing {thing}, broker {}:{}",
        env!("CARGO_PKG_VERSION"),
        ini.broker.host,
        ini.broker.port
    );
    host.run(&mut agent).map_err(Failure::error)?;
    log::info!("stopped");
    Ok(0)
}
