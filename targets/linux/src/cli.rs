//! Command-line parsing, compatible with the reference `mender` 3.4: the
//! same global options and verbs, the same exit codes for usage errors (1,
//! and 3 for an unknown verb). Global options may come before or after the
//! verb. Arguments are `OsString`s: a path that is not valid UTF-8 is kept
//! as it is, any other non-UTF-8 argument is a usage error (never a panic).

use lexopt::prelude::*;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// Exit code of a usage error (the reference's).
pub const EXIT_USAGE: i32 = 1;
/// Exit code of an unknown verb (the reference's "No help topic").
pub const EXIT_UNKNOWN_VERB: i32 = 3;

/// The verbs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `install <file|URL>`.
    Install {
        /// The artifact: a file path, `-` (stdin) or an http(s) URL.
        location: OsString,
        /// `--reboot-exit-code`: exit 4 when a reboot is needed.
        reboot_exit_code: bool,
    },
    /// `commit`.
    Commit,
    /// `rollback`.
    Rollback,
    /// `show-artifact`.
    ShowArtifact,
    /// `show-provides`.
    ShowProvides,
    /// `daemon [--hand-off | --hooks FILE]`.
    Daemon {
        /// `--hand-off` (or called as `mender-python-client`): hand
        /// deployments to `/usr/share/mender/install` (the Mender Python
        /// client's flow; also `HandOff` in mender.conf).
        hand_off: bool,
        /// `--hooks <upparat.ini>`: upparat's hooks install deployments
        /// (also `HooksConfig` in mender.conf).
        hooks: Option<PathBuf>,
    },
    /// `report --success|--failure` (the Mender Python client's): report
    /// the handed-off deployment's final status and remove the lock.
    Report {
        /// `--success` (else `--failure`).
        success: bool,
    },
    /// `check-update`: SIGUSR1 to the daemon.
    CheckUpdate,
    /// `send-inventory`: SIGUSR2 to the daemon.
    SendInventory,
    /// `status [--json]` (otalite): the persisted step, slots and boot env.
    Status {
        /// `--json`: one JSON object instead of text.
        json: bool,
    },
    /// `control-map set <file|->`, `control-map show`, `control-map clear`
    /// (otalite): Update Control Maps without D-Bus.
    ControlMap(ControlMapVerb),
    /// A reference verb otalite does not implement (`bootstrap`, `setup`,
    /// `snapshot`): refused with a clear message.
    Unsupported(&'static str),
    /// `--version`.
    Version,
    /// `--help`, `help`, `help <verb>` or `<verb> --help`: the text to print.
    Help(&'static str),
}

/// What `control-map` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlMapVerb {
    /// Set (or, without states, delete) the map in this file (`-`: stdin).
    Set(OsString),
    /// Print the maps, one JSON object a line.
    Show,
    /// Remove every map.
    Clear,
}

/// Parsed arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    /// `-c/--config`.
    pub config: Option<PathBuf>,
    /// `-b/--fallback-config`.
    pub fallback_config: Option<PathBuf>,
    /// `-d/--data`.
    pub data: Option<PathBuf>,
    /// `-l/--log-level`.
    pub log_level: Option<String>,
    /// `-L/--log-file`.
    pub log_file: Option<PathBuf>,
    /// `-E/--trusted-certs`.
    pub trusted_certs: Option<PathBuf>,
    /// `--passphrase-file`.
    pub passphrase_file: Option<PathBuf>,
    /// `--skipverify` (or `--skip-verify`).
    pub skip_verify: bool,
    /// `--no-syslog`.
    pub no_syslog: bool,
    /// `-F/--forcebootstrap`.
    pub force_bootstrap: bool,
    /// The verb.
    pub command: Command,
}

/// A usage error: the message and the exit code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError {
    /// What is wrong, for the user.
    pub message: String,
    /// [`EXIT_USAGE`] or [`EXIT_UNKNOWN_VERB`].
    pub code: i32,
}

impl UsageError {
    fn usage(message: impl Into<String>) -> Self {
        Self {
            message: format!("{}; see 'otalite --help'", message.into()),
            code: EXIT_USAGE,
        }
    }
}

impl From<lexopt::Error> for UsageError {
    fn from(error: lexopt::Error) -> Self {
        Self::usage(error.to_string())
    }
}

/// `otalite --help`.
pub const USAGE: &str = "\
NAME:
   otalite - over-the-air A/B updates for Mender Artifacts (a drop-in for the mender client)

USAGE:
   otalite [global options] command [command options] [arguments...]

COMMANDS:
   bootstrap       Not supported: the daemon authenticates by itself.
   check-update    Force update check.
   commit          Commit current Artifact. Returns (2) if no update in progress.
   daemon          Start the client as a background service.
   install         Mender Artifact to install - local file or a `URL`.
   rollback        Rollback current Artifact. Returns (2) if no update in progress.
   send-inventory  Force inventory update.
   setup           Not supported: write mender.conf yourself.
   snapshot        Not supported.
   show-artifact   Print the current artifact name to the command line and exit.
   show-provides   Print the current provides to the command line and exit.
   status          Print the update step, pending deployment, slots and boot env (--json).
   control-map     Update Control Maps without D-Bus: set <file|->, show, clear.
   report          --success|--failure: the hand-off installer's report (daemon --hand-off).
   jobs            AWS IoT Jobs agent with upparat's options: jobs [-v] -c <upparat.ini> [-t thing].
   help, h         Shows a list of commands or help for one command

GLOBAL OPTIONS:
   --config FILE, -c FILE           Configuration FILE path. (default: \"/etc/mender/mender.conf\")
   --fallback-config FILE, -b FILE  Fallback configuration FILE path. (default: \"/var/lib/mender/mender.conf\")
   --data DIR, -d DIR               State data DIRECTORY path. (default: \"/var/lib/mender\")
   --log-file FILE, -L FILE         FILE to log to (default: standard error).
   --log-level level, -l level      debug, info, warning, error. (default: \"info\")
   --trusted-certs FILE, -E FILE    Trusted server certificates FILE path (overrides ServerCertificate).
   --forcebootstrap, -F             Accepted for compatibility (the daemon always authenticates at start).
   --no-syslog                      Disable logging to syslog. (default: false)
   --skipverify                     Skip certificate verification. (default: false)
   --passphrase-file FILE           Not supported (encrypted device keys): refused.
   --help, -h                       show help (default: false)
   --version, -v                    print the version (default: false)

EXIT CODES:
   0 success, 1 error or usage error, 2 nothing to commit or roll back,
   3 unknown command, 4 installed and a reboot is needed (--reboot-exit-code).
";

const HELP_INSTALL: &str = "\
NAME:
   otalite install - Mender Artifact to install - local file or a `URL`.

USAGE:
   otalite install [command options] <IMAGEURL>

OPTIONS:
   --reboot-exit-code       Return exit code 4 if a manual reboot is required after the Artifact installation. (default: false)
   --help, -h               show help (default: false)
";

const HELP_STATUS: &str = "\
NAME:
   otalite status - Print the persisted update step, the pending deployment,
   the A/B slots and the boot environment values that matter.

USAGE:
   otalite status [--json]

OPTIONS:
   --json       One JSON object on standard output. (default: false)
   --help, -h   show help (default: false)
";

/// `(verb, one-line description)` for the verbs with no options.
const SIMPLE_VERBS: [(&str, &str); 11] = [
    ("commit", "otalite commit - Commit current Artifact. Returns (2) if no update in progress."),
    ("rollback", "otalite rollback - Rollback current Artifact. Returns (2) if no update in progress."),
    ("show-artifact", "otalite show-artifact - Print the current artifact name to the command line and exit."),
    ("show-provides", "otalite show-provides - Print the current provides to the command line and exit."),
    ("daemon", "otalite daemon [--hand-off | --hooks <upparat.ini>] - Start the client as a background service. --hand-off: download deployments to <DATA>/artifact.mender and hand them to /usr/share/mender/install (the Mender Python client's flow). --hooks: install them with the hooks of that INI's [hooks] section (upparat's; also HooksConfig in mender.conf)."),
    ("jobs", "otalite jobs [-v] -c <upparat.ini> [-t THING] - The AWS IoT Jobs agent, with upparat 1.12's options and configuration file (also: the binary called as 'upparat')."),
    ("report", "otalite report --success|--failure - Report the status of the update handed to /usr/share/mender/install (the update lock's deployment), then remove the lock. Returns (1) if no update is in progress or the server cannot be told."),
    ("check-update", "otalite check-update - Force update check (signals the running daemon; exit 1 when none runs)."),
    ("send-inventory", "otalite send-inventory - Force inventory update (signals the running daemon; exit 1 when none runs)."),
    ("bootstrap", "otalite bootstrap - Not supported by otalite: the daemon authenticates at start."),
    ("setup", "otalite setup - Not supported by otalite: write mender.conf yourself."),
];

const HELP_CONTROL_MAP: &str = "\
NAME:
   otalite control-map - Update Control Maps for devices without D-Bus
   (the same maps as io.mender.Update1.SetUpdateControlMap).

USAGE:
   otalite control-map set <file|->   Set the map in the file (- for stdin); a map
                                      without states deletes the map with its id and
                                      priority. Prints the refresh interval in seconds:
                                      send the map again within it, or it expires.
   otalite control-map show           Print the maps, one JSON object a line.
   otalite control-map clear          Remove every map.

   With a running daemon, the daemon applies the request (it answers within
   20 s); without one, the stored maps are changed for its next start.
";

const HELP_SNAPSHOT: &str = "\
NAME:
   otalite snapshot - Not supported by otalite.
";

/// Every verb name (and its aliases).
const VERBS: [&str; 17] = [
    "control-map",
    "jobs",
    "report",
    "install",
    "commit",
    "rollback",
    "show-artifact",
    "show-provides",
    "daemon",
    "check-update",
    "send-inventory",
    "status",
    "bootstrap",
    "setup",
    "snapshot",
    "help",
    "h",
];

/// The help text of `verb`, `None` when there is no such verb.
fn verb_help(verb: &str) -> Option<&'static str> {
    match verb {
        "install" => Some(HELP_INSTALL),
        "status" => Some(HELP_STATUS),
        "control-map" => Some(HELP_CONTROL_MAP),
        "snapshot" => Some(HELP_SNAPSHOT),
        "help" | "h" => Some(USAGE),
        _ => SIMPLE_VERBS
            .iter()
            .find(|(name, _)| *name == verb)
            .map(|(_, text)| *text),
    }
}

/// The text `otalite <verb> --help` prints.
fn help_for(verb: &str) -> Command {
    match verb_help(verb) {
        Some(text) if SIMPLE_VERBS.iter().any(|(name, _)| *name == verb) => {
            // Leaked once per process (help is printed and the process exits).
            let text = format!(
                "NAME:\n   {text}\n\nUSAGE:\n   otalite {verb}\n\nOPTIONS:\n   --help, -h  show help (default: false)\n"
            );
            Command::Help(String::leak(text))
        }
        Some(text) => Command::Help(text),
        None => Command::Help(USAGE),
    }
}

fn unknown_verb(verb: &OsStr) -> UsageError {
    UsageError {
        message: format!(
            "unknown command '{}'; see 'otalite --help'",
            verb.to_string_lossy().escape_debug()
        ),
        code: EXIT_UNKNOWN_VERB,
    }
}

fn path(value: OsString) -> PathBuf {
    PathBuf::from(value)
}

fn text(option: &str, value: OsString) -> Result<String, UsageError> {
    value.into_string().map_err(|value| {
        UsageError::usage(format!(
            "the value of {option} is not valid UTF-8: {}",
            value.to_string_lossy().escape_debug()
        ))
    })
}

/// Parses `args` (without the program name).
///
/// # Errors
/// A usage error: the message and the exit code (1, or 3 for an unknown
/// verb).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Args, UsageError> {
    let args: Vec<OsString> = args.into_iter().collect();
    // `-install` and friends: a common slip, worth a precise message.
    for arg in &args {
        if let Some(name) = arg.to_str().and_then(|a| a.strip_prefix('-')) {
            if !name.starts_with('-') && VERBS.contains(&name) && name.len() > 1 {
                return Err(UsageError::usage(format!(
                    "'-{name}' is not supported: use the verb without a dash (e.g. 'otalite {name}')"
                )));
            }
        }
    }
    let mut parsed = Args {
        config: None,
        fallback_config: None,
        data: None,
        log_level: None,
        log_file: None,
        trusted_certs: None,
        passphrase_file: None,
        skip_verify: false,
        no_syslog: false,
        force_bootstrap: false,
        command: Command::Help(USAGE),
    };
    let mut verb: Option<OsString> = None;
    let mut operands: Vec<OsString> = Vec::new();
    let mut reboot_exit_code = false;
    let mut json = false;
    let mut hand_off = false;
    let mut hooks: Option<PathBuf> = None;
    let mut report: Option<bool> = None;
    let mut help = false;
    let mut version = false;
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next()? {
        match arg {
            Short('c') | Long("config") => parsed.config = Some(path(parser.value()?)),
            Short('b') | Long("fallback-config") => {
                parsed.fallback_config = Some(path(parser.value()?));
            }
            Short('d') | Long("data") => parsed.data = Some(path(parser.value()?)),
            Short('l') | Long("log-level") => {
                parsed.log_level = Some(text("--log-level", parser.value()?)?);
            }
            Short('L') | Long("log-file") => parsed.log_file = Some(path(parser.value()?)),
            Short('E') | Long("trusted-certs") => {
                parsed.trusted_certs = Some(path(parser.value()?));
            }
            Long("passphrase-file") => parsed.passphrase_file = Some(path(parser.value()?)),
            Long("skipverify" | "skip-verify") => parsed.skip_verify = true,
            Long("no-syslog") => parsed.no_syslog = true,
            Short('F') | Long("forcebootstrap") => parsed.force_bootstrap = true,
            Long("reboot-exit-code") => reboot_exit_code = true,
            Long("json") => json = true,
            Long("hand-off") => hand_off = true,
            Long("hooks") => hooks = Some(path(parser.value()?)),
            Long("success") | Long("failure") if report.is_some() => {
                return Err(UsageError::usage(
                    "report takes one of --success and --failure",
                ))
            }
            Long("success") => report = Some(true),
            Long("failure") => report = Some(false),
            Short('h') | Long("help") => help = true,
            Short('v') | Long("version") => version = true,
            Value(value) if verb.is_none() => verb = Some(value),
            Value(value) => operands.push(value),
            other => return Err(other.unexpected().into()),
        }
    }
    let verb_name = match &verb {
        None => None,
        Some(raw) => Some(raw.to_str().ok_or_else(|| unknown_verb(raw))?),
    };
    if version && verb_name.is_none() {
        parsed.command = Command::Version;
        return Ok(parsed);
    }
    if help {
        parsed.command = match verb_name {
            None => Command::Help(USAGE),
            Some(name) if verb_help(name).is_some() => help_for(name),
            Some(_) => return Err(unknown_verb(verb.as_deref().unwrap_or_default())),
        };
        return Ok(parsed);
    }
    let no_operands = |command: Command| {
        if let Some(extra) = operands.first() {
            Err(UsageError::usage(format!(
                "'{}' takes no arguments (got '{}')",
                verb_name.unwrap_or_default(),
                extra.to_string_lossy().escape_debug()
            )))
        } else {
            Ok(command)
        }
    };
    parsed.command = match verb_name {
        None => Command::Help(USAGE),
        Some("help" | "h") => match operands.as_slice() {
            [] => Command::Help(USAGE),
            [topic] => match topic.to_str().filter(|t| verb_help(t).is_some()) {
                Some(topic) => help_for(topic),
                None => return Err(unknown_verb(topic)),
            },
            _ => return Err(UsageError::usage("help takes at most one command")),
        },
        Some("install") => match operands.as_slice() {
            [location] => Command::Install {
                location: location.clone(),
                reboot_exit_code,
            },
            [] => {
                return Err(UsageError::usage(
                    "install needs the artifact: a file path or an http(s) URL",
                ))
            }
            _ => return Err(UsageError::usage("install takes exactly one artifact")),
        },
        Some("commit") => no_operands(Command::Commit)?,
        Some("rollback") => no_operands(Command::Rollback)?,
        Some("show-artifact") => no_operands(Command::ShowArtifact)?,
        Some("show-provides") => no_operands(Command::ShowProvides)?,
        Some("daemon") => no_operands(Command::Daemon {
            hand_off,
            hooks: hooks.clone(),
        })?,
        Some("report") => match report {
            Some(success) => no_operands(Command::Report { success })?,
            None => {
                return Err(UsageError {
                    message: "No report status given: use --success or --failure".into(),
                    code: 1,
                })
            }
        },
        Some("check-update") => no_operands(Command::CheckUpdate)?,
        Some("send-inventory") => no_operands(Command::SendInventory)?,
        Some("status") => no_operands(Command::Status { json })?,
        Some("control-map") => match operands.as_slice() {
            [verb, file] if verb == "set" => Command::ControlMap(ControlMapVerb::Set(file.clone())),
            [verb] if verb == "show" => Command::ControlMap(ControlMapVerb::Show),
            [verb] if verb == "clear" => Command::ControlMap(ControlMapVerb::Clear),
            _ => {
                return Err(UsageError::usage(
                    "control-map takes 'set <file|->', 'show' or 'clear'",
                ))
            }
        },
        // `otalite jobs ...` is routed before this parser (upparat's own
        // options follow it); here it came after global options.
        Some("jobs") => {
            return Err(UsageError::usage(
                "'jobs' takes upparat's options only and comes first: otalite jobs [-v] -c <upparat.ini> [-t THING]",
            ))
        }
        Some("bootstrap") => Command::Unsupported("bootstrap"),
        Some("setup") => Command::Unsupported("setup"),
        Some("snapshot") => Command::Unsupported("snapshot"),
        Some(_) => return Err(unknown_verb(verb.as_deref().unwrap_or_default())),
    };
    if reboot_exit_code && !matches!(parsed.command, Command::Install { .. }) {
        return Err(UsageError::usage("--reboot-exit-code goes with install"));
    }
    if hand_off && !matches!(parsed.command, Command::Daemon { .. }) {
        return Err(UsageError::usage("--hand-off goes with daemon"));
    }
    if hooks.is_some() && !matches!(parsed.command, Command::Daemon { .. }) {
        return Err(UsageError::usage("--hooks goes with daemon"));
    }
    if hand_off && hooks.is_some() {
        return Err(UsageError::usage(
            "daemon takes --hand-off or --hooks, not both",
        ));
    }
    if report.is_some() && !matches!(parsed.command, Command::Report { .. }) {
        return Err(UsageError::usage("--success and --failure go with report"));
    }
    if json && !matches!(parsed.command, Command::Status { .. }) {
        return Err(UsageError::usage("--json goes with status"));
    }
    if version {
        parsed.command = Command::Version;
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, UsageError> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn global_options_anywhere() {
        let a = p(&[
            "-c",
            "/x.conf",
            "install",
            "a.mender",
            "-d",
            "/data",
            "--reboot-exit-code",
        ])
        .unwrap();
        assert_eq!(a.config.as_deref(), Some(std::path::Path::new("/x.conf")));
        assert_eq!(a.data.as_deref(), Some(std::path::Path::new("/data")));
        assert_eq!(
            a.command,
            Command::Install {
                location: "a.mender".into(),
                reboot_exit_code: true
            }
        );
        assert_eq!(
            p(&["--config=/y", "commit"]).unwrap().command,
            Command::Commit
        );
        assert_eq!(
            p(&["status", "--json", "--no-syslog"]).unwrap().command,
            Command::Status { json: true }
        );
    }

    #[test]
    fn errors_are_clear() {
        let err = |args: &[&str]| p(args).unwrap_err();
        assert!(err(&["-install", "x"]).message.contains("without a dash"));
        assert!(err(&["install"]).message.contains("needs the artifact"));
        assert_eq!(err(&["frobnicate"]).code, EXIT_UNKNOWN_VERB);
        assert_eq!(err(&["help", "frobnicate"]).code, EXIT_UNKNOWN_VERB);
        assert_eq!(err(&["commit", "extra"]).code, EXIT_USAGE);
        assert!(err(&["-c"]).message.contains("missing argument"));
        assert!(err(&["--bogus"]).message.contains("--bogus"));
        assert!(err(&["commit", "--json"]).message.contains("status"));
    }

    #[test]
    fn per_verb_help() {
        for args in [
            &["install", "--help"][..],
            &["help", "install"],
            &["-h", "install"],
        ] {
            assert_eq!(p(args).unwrap().command, Command::Help(HELP_INSTALL));
        }
        match p(&["commit", "-h"]).unwrap().command {
            Command::Help(text) => assert!(text.contains("otalite commit"), "{text}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(p(&[]).unwrap().command, Command::Help(USAGE));
        assert_eq!(p(&["-v"]).unwrap().command, Command::Version);
    }

    #[test]
    fn non_utf8_arguments() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'/', 0xff, b'x']);
        let a = parse([OsString::from("-c"), bad.clone(), OsString::from("commit")]).unwrap();
        assert_eq!(a.config.unwrap().into_os_string(), bad);
        let a = parse([OsString::from("install"), bad.clone()]).unwrap();
        assert!(matches!(a.command, Command::Install { location, .. } if location == bad));
        assert_eq!(parse([bad.clone()]).unwrap_err().code, EXIT_UNKNOWN_VERB);
        assert_eq!(
            parse([OsString::from("-l"), bad]).unwrap_err().code,
            EXIT_USAGE
        );
    }
}
