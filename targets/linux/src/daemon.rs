//! `otalite daemon`: the managed mode. The agent (`otalite::agent`) holds
//! every decision (schedule, deployment, recovery after a restart, the
//! device-API policy); this file sets up the device key, the HTTP client,
//! signals and the pid file, and runs the agent in the Linux host loop.

use crate::standalone::{boxed_agent, device_type, load_keys, load_record, Failure};
use otalite::agent::{AgentConfig, HandOffRole, HookPolicy, HookSet, Mode, ServerSettings, Timing};
use otalite::board::BootControl;
use otalite::config::MenderConfig;
use otalite::protocol::upparat_ini::UpparatConfig;
use otalite_host::driver::{Ended, LinuxHost, ServerIo};
use otalite_host::http::{HttpClient, HttpConfig};
use otalite_host::jobs::HookPaths;
use otalite_host::keys::{KeySource, KeyType};
use otalite_host::paths::Paths;
use std::path::PathBuf;
use std::time::Duration;

fn normalize_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if url.contains("://") {
        url.to_string()
    } else {
        format!("https://{url}")
    }
}

/// The configured servers, in order, without duplicates.
fn servers(config: &MenderConfig) -> Result<Vec<String>, Failure> {
    let mut servers: Vec<String> = config
        .servers
        .iter()
        .flatten()
        .filter_map(|entry| entry.server_url.as_deref())
        .chain(config.server_url.as_deref())
        .filter(|url| !url.trim().is_empty())
        .map(normalize_url)
        .collect();
    servers.dedup();
    if servers.is_empty() {
        return Err(Failure::error(
            "no server configured: set ServerURL (or Servers) in mender.conf",
        ));
    }
    Ok(servers)
}

/// Test knob (debug builds only): `OTALITE_TEST_<NAME>_MS` in milliseconds.
fn test_knob_ms(name: &str) -> Option<u64> {
    if cfg!(debug_assertions) {
        std::env::var(format!("OTALITE_TEST_{name}_MS"))
            .ok()
            .and_then(|ms| ms.parse().ok())
    } else {
        None
    }
}

fn device_key(
    paths: &Paths,
    config: &MenderConfig,
) -> Result<otalite_host::keys::DeviceKey, Failure> {
    let static_key = config
        .security
        .as_ref()
        .and_then(|s| s.auth_private_key.as_deref())
        .or(config.https_client.as_ref().and_then(|h| h.key.as_deref()));
    let source = match static_key {
        Some(path) => KeySource::Static(path.into()),
        None => {
            let key_type = match config
                .device_key_type
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                None | Some("ed25519") => KeyType::Ed25519,
                Some("ecdsa-p256" | "ecdsa" | "p256") => KeyType::EcdsaP256,
                Some("rsa3072" | "rsa") => KeyType::Rsa3072,
                Some(other) => {
                    return Err(Failure::error(format!(
                        "DeviceKeyType {other:?} is not one of ed25519, ecdsa-p256, rsa3072"
                    )))
                }
            };
            KeySource::generated_in(&paths.data_dir, key_type)
        }
    };
    source
        .load_or_generate()
        .map_err(|e| Failure::error(format!("device key: {e}")))
}

/// The D-Bus API's side in the daemon: the token as the agent last had it
/// (kept by the loop through [`otalite_host::driver::JwtListener`]), and
/// `FetchJwtToken` sent to the loop as a wake-up.
#[cfg(feature = "dbus")]
struct DbusHandler {
    jwt: std::sync::Arc<std::sync::Mutex<(String, String)>>,
    wake: std::sync::mpsc::Sender<otalite_host::driver::Wake>,
}

#[cfg(feature = "dbus")]
impl otalite_host::dbus::Handler for DbusHandler {
    fn set_update_control_map(&mut self, json: &str) -> Result<i32, String> {
        // The agent (the daemon's loop) owns the maps: ask it and wait.
        let (reply, answer) = std::sync::mpsc::channel();
        self.wake
            .send(otalite_host::driver::Wake::SetControlMap(
                json.to_owned(),
                reply,
            ))
            .map_err(|_| "the daemon is stopping".to_owned())?;
        answer
            .recv_timeout(std::time::Duration::from_secs(20))
            .map_err(|_| "the daemon did not answer in time; try again".to_owned())?
    }
    fn jwt(&mut self) -> (String, String) {
        self.jwt
            .lock()
            .map(|guard| guard.clone())
            .unwrap_or_default()
    }
    fn fetch_jwt(&mut self) -> bool {
        self.wake.send(otalite_host::driver::Wake::FetchJwt).is_ok()
    }
}

/// The D-Bus service on the system bus (unless `DBus.Enabled` is false),
/// or one warning and none (as the reference, the daemon runs without
/// D-Bus); with it, the listener the loop tells token changes to.
#[cfg(feature = "dbus")]
fn start_dbus(
    config: &otalite::config::MenderConfig,
    wake: std::sync::mpsc::Sender<otalite_host::driver::Wake>,
) -> Option<(
    otalite_host::dbus::Service,
    otalite_host::driver::JwtListener,
)> {
    if !config.dbus_enabled() {
        log::info!("D-Bus API disabled (DBus.Enabled is false)");
        return None;
    }
    let jwt = std::sync::Arc::new(std::sync::Mutex::new((String::new(), String::new())));
    let handler = DbusHandler {
        jwt: std::sync::Arc::clone(&jwt),
        wake,
    };
    let service = otalite_host::dbus::Service::start_system(handler)
        .map_err(|e| log::warn!("D-Bus API not available, running without it: {e}"))
        .ok()?;
    let emitter = service.emitter();
    let listener: otalite_host::driver::JwtListener = Box::new(move |token, server| {
        if let Ok(mut guard) = jwt.lock() {
            *guard = (token.to_owned(), server.to_owned());
        }
        // A dropped token (re-authentication under way) is not news; the
        // new one is.
        if !token.is_empty() {
            if let Err(e) = emitter.jwt_token_state_change(token, server) {
                log::warn!("D-Bus: cannot send JwtTokenStateChange: {e}");
            }
        }
    });
    Some((service, listener))
}

/// `otalite report --success|--failure`: the hand-off installer's report
/// (see [`run_daemon`], which sets the agent up the same way).
pub fn run_report<B: BootControl>(
    paths: Paths,
    config: MenderConfig,
    boot: B,
    role: HandOffRole,
) -> Result<i32, Failure> {
    run_daemon(paths, config, boot, role, None)
}

/// The hooks of an INI file with upparat's `[hooks]` section (`daemon
/// --hooks`, `HooksConfig`), as upparat reads them.
///
/// # Errors
/// The file cannot be read or is not a valid INI, or names no `install`
/// hook.
pub fn load_hooks(path: &std::path::Path) -> Result<(HookPolicy, HookPaths), Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::error(format!(
            "cannot read the hooks file {}: {e}",
            path.display()
        ))
    })?;
    let ini = UpparatConfig::parse(&text, "")
        .map_err(|e| Failure::error(format!("{}: {e}", path.display())))?;
    let hooks = HookPaths {
        version: ini.hooks.version.map(PathBuf::from),
        download: ini.hooks.download.map(PathBuf::from),
        install: ini.hooks.install.map(PathBuf::from),
        restart: ini.hooks.restart.map(PathBuf::from),
        ready: ini.hooks.ready.map(PathBuf::from),
    };
    if hooks.install.is_none() {
        return Err(Failure::error(format!(
            "{}: [hooks] names no install hook: nothing would install the deployments",
            path.display()
        )));
    }
    let policy = HookPolicy {
        hooks: HookSet {
            version: hooks.version.is_some(),
            download: hooks.download.is_some(),
            install: true,
            restart: hooks.restart.is_some(),
            ready: hooks.ready.is_some(),
        },
        retry_interval_ms: u64::from(ini.hooks.retry_interval).saturating_mul(1000),
        max_retries: ini.hooks.max_retries,
    };
    Ok((policy, hooks))
}

/// `otalite daemon`: sets everything up and runs until SIGTERM.
///
/// Never inlined into `main`'s `run`, whose frame would otherwise hold the
/// standalone verbs' agents too, resident for the daemon's life.
#[inline(never)]
pub fn run_daemon<B: BootControl>(
    paths: Paths,
    config: MenderConfig,
    mut boot: B,
    hand_off: HandOffRole,
    hooks: Option<(HookPolicy, HookPaths)>,
) -> Result<i32, Failure> {
    let (hand_off, hook_paths) = match hooks {
        Some((policy, paths)) => (HandOffRole::Hooks(policy), Some(paths)),
        None => (hand_off, None),
    };
    let reporting = matches!(hand_off, HandOffRole::Report { .. });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (waker, wake) = crate::signals::wake_channel(std::sync::Arc::clone(&stop))
        .map_err(|e| Failure::error(format!("cannot set up signals: {e}")))?;
    std::fs::create_dir_all(&paths.data_dir)
        .map_err(|e| Failure::error(format!("cannot create {}: {e}", paths.data_dir.display())))?;
    let record = load_record(&paths)?;
    let device_type = device_type(&paths, &config)?;
    let (keys, signatures_required) = load_keys(&config)?;
    let key = device_key(&paths, &config)?;
    let servers = servers(&config)?;
    let server_refs: Vec<&str> = servers.iter().map(String::as_str).collect();
    let mut http = HttpConfig::from_mender(&config);
    if let Some(ms) = test_knob_ms("IO_TIMEOUT").filter(|&ms| ms > 0) {
        http.io_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = test_knob_ms("EXCHANGE_TIMEOUT").filter(|&ms| ms > 0) {
        http.exchange_timeout = Duration::from_millis(ms);
    }
    http.stop = Some(std::sync::Arc::clone(&stop));
    let client =
        HttpClient::new(http).map_err(|e| Failure::error(format!("cannot set up HTTPS: {e}")))?;
    let public_key = key.public_key_pem().to_string();
    let tenant_token = config
        .tenant_token
        .as_deref()
        .unwrap_or("")
        .trim()
        .to_string();
    let mut timing = Timing::from_config(&config);
    if let Some(ms) = test_knob_ms("BACKOFF") {
        timing.backoff_unit = ms;
    }
    let boot_state = boot
        .boot_state()
        .map_err(|e| Failure::error(format!("cannot read the bootloader environment: {e}")))?;
    let agent_config = AgentConfig {
        device_type: &device_type,
        keys: &keys,
        signatures_required,
        timing,
        mode: Mode::Managed(ServerSettings {
            servers: &server_refs,
            tenant_token: &tenant_token,
            public_key_pem: &public_key,
            client_version: env!("CARGO_PKG_VERSION"),
            hand_off,
        }),
    };
    let mut agent =
        crate::on_transient_stack(move || boxed_agent(agent_config, record, boot_state))?;
    if reporting {
        // `report`: one exchange with the server, beside a running daemon.
        drop(waker);
        let mut host = LinuxHost::new(paths, config, boot, crate::board::CommandReboot);
        host.server = Some(ServerIo { client, key });
        host.stop = Some(stop);
        host.sub_updater_log = hand_off == HandOffRole::Report { success: false };
        return match host.run(&mut agent, None) {
            Ended::Exited {
                failed: false,
                message,
            } => {
                println!("{message}");
                Ok(0)
            }
            Ended::Exited { message, .. } | Ended::Completed(_, message) => {
                Err(Failure::error(message))
            }
        };
    }
    // Held (written and flock-ed) until the daemon returns; removed on drop.
    let pid_lock = crate::signals::PidLock::acquire(&paths.data_dir).map_err(Failure::error)?;
    log::info!(
        "otalite {} daemon started{}",
        env!("CARGO_PKG_VERSION"),
        match hand_off {
            HandOffRole::Daemon => " (hand-off: deployments go to /usr/share/mender/install)",
            HandOffRole::Hooks(_) => " (deployments are installed by the hooks)",
            _ => "",
        }
    );
    // Stopped (the names released) when the daemon returns.
    #[cfg(feature = "dbus")]
    let dbus = start_dbus(&config, waker);
    #[cfg(not(feature = "dbus"))]
    drop(waker);
    let mut host = LinuxHost::new(paths, config, boot, crate::board::CommandReboot);
    #[cfg(feature = "dbus")]
    let _service = dbus.map(|(service, listener)| {
        host.on_jwt = Some(listener);
        service
    });
    host.server = Some(ServerIo { client, key });
    host.update_hooks = hook_paths;
    host.wake = Some(wake);
    host.stop = Some(stop);
    host.load_control_maps(&mut agent);
    let ended = host.run(&mut agent, None);
    drop(pid_lock);
    log::info!("otalite daemon stopped");
    match ended {
        Ended::Exited {
            failed: true,
            message,
        } => Err(Failure::error(message)),
        _ => Ok(0),
    }
}
