//! Command-line parsing, compatible with the reference `mender` 3.x:
//! global options may come before or after the verb.

use std::path::PathBuf;

/// The verbs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `install <file|URL>`.
    Install {
        location: String,
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
    /// `daemon`.
    Daemon,
    /// `check-update`: SIGUSR1 to the daemon.
    CheckUpdate,
    /// `send-inventory`: SIGUSR2 to the daemon.
    SendInventory,
    /// `--version`.
    Version,
    /// `--help` or `help`.
    Help,
}

/// Parsed arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    pub config: Option<PathBuf>,
    pub fallback_config: Option<PathBuf>,
    pub data: Option<PathBuf>,
    pub log_level: Option<String>,
    pub log_file: Option<PathBuf>,
    pub skip_verify: bool,
    pub command: Command,
}

pub const USAGE: &str = "\
otalite - over-the-air A/B updates for Mender Artifacts

USAGE:
   otalite [global options] command [command options] [arguments...]

COMMANDS:
   install <file|URL>  Install a Mender Artifact into the inactive partition
                       (--reboot-exit-code: exit 4 when a reboot is needed)
   commit              Commit the running update. Returns (2) if no update in progress.
   rollback            Roll back the update. Returns (2) if no update in progress.
   show-artifact       Print the current artifact name.
   show-provides       Print the current provides.
   daemon              Run as a service managed by a Mender server.
   check-update        Make the running daemon check for an update now.
   send-inventory      Make the running daemon send its inventory now.

GLOBAL OPTIONS:
   --config FILE, -c FILE           Configuration FILE path. (default: \"/etc/mender/mender.conf\")
   --fallback-config FILE, -b FILE  Fallback configuration FILE path. (default: \"/var/lib/mender/mender.conf\")
   --data DIR, -d DIR               State data DIRECTORY path. (default: \"/var/lib/mender\")
   --log-file FILE, -L FILE         FILE to log to (default: standard error).
   --log-level level, -l level      debug, info, warning, error. (default: \"info\")
   --skipverify                     Skip TLS certificate verification.
   --no-syslog                      Accepted for compatibility (otalite logs to stderr).
   --help, -h                       Show this help.
   --version, -v                    Print the version.
";

/// Parses `args` (without the program name).
///
/// # Errors
/// A message for the user.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        config: None,
        fallback_config: None,
        data: None,
        log_level: None,
        log_file: None,
        skip_verify: false,
        command: Command::Help,
    };
    let mut verb: Option<String> = None;
    let mut operands: Vec<String> = Vec::new();
    let mut reboot_exit_code = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_string(), Some(value.to_string()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("option {what} needs a value"))
        };
        match name.as_str() {
            "-c" | "--config" => parsed.config = Some(value(&name)?.into()),
            "-b" | "--fallback-config" => parsed.fallback_config = Some(value(&name)?.into()),
            "-d" | "--data" => parsed.data = Some(value(&name)?.into()),
            "-l" | "--log-level" => parsed.log_level = Some(value(&name)?),
            "-L" | "--log-file" => parsed.log_file = Some(value(&name)?.into()),
            "-E" | "--trusted-certs" | "--passphrase-file" => {
                let _ = value(&name)?;
            }
            "--skipverify" => parsed.skip_verify = true,
            "--no-syslog" | "-F" | "--forcebootstrap" => {}
            "--reboot-exit-code" => reboot_exit_code = true,
            "-h" | "--help" => {
                return Ok(Args {
                    command: Command::Help,
                    ..parsed
                })
            }
            "-v" | "--version" => {
                return Ok(Args {
                    command: Command::Version,
                    ..parsed
                })
            }
            flag if flag.starts_with('-') && flag != "-" => {
                if verb.is_none() && !flag.starts_with("--") && flag.len() > 2 {
                    return Err(format!(
                        "'{flag}' is not supported: use the verb without a dash (e.g. 'otalite {}')",
                        flag.trim_start_matches('-')
                    ));
                }
                return Err(format!("unknown option {flag}"));
            }
            _ if verb.is_none() => verb = Some(arg),
            _ => operands.push(arg),
        }
    }
    let no_operands = |verb: &str, operands: &[String]| {
        if operands.is_empty() {
            Ok(())
        } else {
            Err(format!("'{verb}' takes no arguments"))
        }
    };
    parsed.command = match verb.as_deref() {
        None | Some("help" | "h") => Command::Help,
        Some("install") => match operands.as_slice() {
            [location] => Command::Install {
                location: location.clone(),
                reboot_exit_code,
            },
            [] => return Err("install needs the artifact: a file path or an http(s) URL".into()),
            _ => return Err("install takes exactly one artifact".into()),
        },
        Some("commit") => no_operands("commit", &operands).map(|()| Command::Commit)?,
        Some("rollback") => no_operands("rollback", &operands).map(|()| Command::Rollback)?,
        Some("show-artifact") => {
            no_operands("show-artifact", &operands).map(|()| Command::ShowArtifact)?
        }
        Some("show-provides") => {
            no_operands("show-provides", &operands).map(|()| Command::ShowProvides)?
        }
        Some("daemon") => no_operands("daemon", &operands).map(|()| Command::Daemon)?,
        Some("check-update") => {
            no_operands("check-update", &operands).map(|()| Command::CheckUpdate)?
        }
        Some("send-inventory") => {
            no_operands("send-inventory", &operands).map(|()| Command::SendInventory)?
        }
        Some(other @ ("bootstrap" | "setup" | "snapshot")) => {
            return Err(format!(
                "'{other}' is not available in this version of otalite"
            ))
        }
        Some(other) => return Err(format!("unknown command '{other}'; see 'otalite --help'")),
    };
    if reboot_exit_code && !matches!(parsed.command, Command::Install { .. }) {
        return Err("--reboot-exit-code goes with install".into());
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, String> {
        parse(args.iter().map(|s| s.to_string()))
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
    }

    #[test]
    fn errors_are_clear() {
        assert!(p(&["-install", "x"])
            .unwrap_err()
            .contains("without a dash"));
        assert!(p(&["install"]).unwrap_err().contains("needs the artifact"));
        assert!(p(&["frobnicate"]).unwrap_err().contains("unknown command"));
        assert!(p(&["commit", "extra"]).is_err());
        assert!(p(&["-c"]).unwrap_err().contains("needs a value"));
    }
}
