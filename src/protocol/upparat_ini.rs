//! upparat's configuration file (`upparat -c FILE`), read as Python's
//! `configparser.ConfigParser()` reads it and with upparat 1.12's defaults
//! (`config.py`). Values borrow from the text.
//!
//! | section | key | default | type |
//! |---|---|---|---|
//! | `service` | `log_level` | `WARNING` | text (`-v` forces `DEBUG`) |
//! | `service` | `download_location` | the temp dir | path; upparat appends `/upparat` |
//! | `service` | `sentry` | none | Sentry DSN |
//! | `broker` | `host` | `127.0.0.1` | text |
//! | `broker` | `port` | `1883` | integer |
//! | `broker` | `thing_name` | the host name (`-t` overrides) | text |
//! | `broker` | `client_id` | `upparat` | text |
//! | `broker` | `cafile`, `certfile`, `keyfile` | none | paths; all three or none |
//! | `hooks` | `version`, `download`, `install`, `restart`, `ready` | none | commands; empty = none |
//! | `hooks` | `retry_interval` | `60` | integer (seconds) |
//! | `hooks` | `max_retries` | `60` | integer |
//! | `otalite` | `mender_install` | `yes` | boolean (`1`/`yes`/`true`/`on`, `0`/`no`/`false`/`off`): with no `install` hook, a Mender Artifact goes into the inactive slot |
//! | `otalite` | `mender_config` | `/etc/mender/mender.conf` | path: the built-in install's configuration |
//! | `otalite` | `mender_data` | `/var/lib/mender` | path: its data directory |
//!
//! The `[otalite]` section is otalite's own (upparat ignores it).
//!
//! configparser rules kept: `key = value` or `key: value` (split at the
//! first `=` or `:`), keys case-insensitive, blanks around keys and values
//! stripped, whole-line comments starting with `#` or `;` (no inline
//! comments: `a = b # c` is the value `b # c`), `[section]` names
//! case-sensitive, `[DEFAULT]` values as fallbacks for existing sections,
//! unknown sections and keys ignored, a duplicate section or key an error
//! (strict mode), a key line without `=`/`:` an error.
//!
//! Refused where configparser would build a value this borrowed view
//! cannot hold: continuation lines (an indented line after a key) and
//! `%` in a value (configparser's interpolation, `%(name)s` / `%%`).

/// Where and why the text is refused (1-based line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IniError {
    /// A key line before any `[section]`.
    MissingSectionHeader {
        /// Line number.
        line: usize,
    },
    /// A line that is neither a section, a key nor a comment (or an empty key).
    Syntax {
        /// Line number.
        line: usize,
    },
    /// A section given twice.
    DuplicateSection {
        /// Line number.
        line: usize,
    },
    /// A known key given twice in one section.
    DuplicateKey {
        /// Line number.
        line: usize,
    },
    /// A continuation line (multi-line value).
    Continuation {
        /// Line number.
        line: usize,
    },
    /// A `%` in a known key's value (interpolation).
    Interpolation {
        /// Line number.
        line: usize,
    },
    /// `port`, `retry_interval` or `max_retries` is not an integer in range.
    InvalidInteger {
        /// The key's name.
        key: &'static str,
    },
    /// Only some of `cafile`, `certfile`, `keyfile` are set.
    IncompleteTls,
    /// A boolean key is none of configparser's words.
    InvalidBoolean {
        /// The key's name.
        key: &'static str,
    },
}

impl core::fmt::Display for IniError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::MissingSectionHeader { line } => {
                write!(f, "line {line}: key before any [section]")
            }
            Self::Syntax { line } => write!(f, "line {line}: not a section, key or comment"),
            Self::DuplicateSection { line } => write!(f, "line {line}: section given twice"),
            Self::DuplicateKey { line } => write!(f, "line {line}: key given twice"),
            Self::Continuation { line } => {
                write!(f, "line {line}: multi-line values are not supported")
            }
            Self::Interpolation { line } => {
                write!(f, "line {line}: '%' interpolation is not supported")
            }
            Self::InvalidInteger { key } => write!(f, "{key} is not a valid integer"),
            Self::IncompleteTls => f.write_str("set all of cafile, certfile and keyfile, or none"),
            Self::InvalidBoolean { key } => {
                write!(
                    f,
                    "{key} is not a boolean (yes/no, true/false, on/off, 1/0)"
                )
            }
        }
    }
}

impl core::error::Error for IniError {}

/// `[service]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceConfig<'a> {
    /// Python logging level name (`WARNING` by default).
    pub log_level: &'a str,
    /// Base download directory; `None` = the system temp dir. upparat
    /// downloads into `<this>/upparat/<job id>`.
    pub download_location: Option<&'a str>,
    /// Sentry DSN (upparat's key is `sentry`).
    pub sentry: Option<&'a str>,
}

/// `[broker]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrokerConfig<'a> {
    /// MQTT broker host.
    pub host: &'a str,
    /// MQTT broker port (443 or 8883 for AWS IoT with TLS; 443 uses the
    /// ALPN protocol `x-amzn-mqtt-ca`).
    pub port: u16,
    /// AWS IoT thing name.
    pub thing_name: &'a str,
    /// MQTT client id.
    pub client_id: &'a str,
    /// TLS client authentication files, all three or none.
    pub tls: Option<TlsFiles<'a>>,
}

/// The TLS files of `[broker]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsFiles<'a> {
    /// CA certificate (Amazon Root CA).
    pub cafile: &'a str,
    /// Client certificate.
    pub certfile: &'a str,
    /// Client private key.
    pub keyfile: &'a str,
}

/// `[hooks]`: commands (an empty value means no hook, as in upparat).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HooksConfig<'a> {
    /// Prints the installed version.
    pub version: Option<&'a str>,
    /// Downloads the job's file.
    pub download: Option<&'a str>,
    /// Installs it.
    pub install: Option<&'a str>,
    /// Restarts the device or service.
    pub restart: Option<&'a str>,
    /// Checks the device is ready after the restart.
    pub ready: Option<&'a str>,
    /// Seconds between retries of a hook that exits 3.
    pub retry_interval: u32,
    /// Retries of a hook that exits 3.
    pub max_retries: u32,
}

/// `[otalite]`: the built-in Mender install (otalite's own section).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OtaliteSection<'a> {
    /// With no `install` hook, a job file that is a Mender Artifact is
    /// streamed into the inactive slot.
    pub mender_install: bool,
    /// The Mender configuration file the install reads.
    pub mender_config: &'a str,
    /// The Mender data directory.
    pub mender_data: &'a str,
}

/// upparat's whole configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpparatConfig<'a> {
    /// `[service]`.
    pub service: ServiceConfig<'a>,
    /// `[broker]`.
    pub broker: BrokerConfig<'a>,
    /// `[hooks]`.
    pub hooks: HooksConfig<'a>,
    /// `[otalite]`.
    pub otalite: OtaliteSection<'a>,
}

/// The keys read, with their section.
const KEYS: [(Section, &str); 20] = [
    (Section::Service, "log_level"),
    (Section::Service, "download_location"),
    (Section::Service, "sentry"),
    (Section::Broker, "host"),
    (Section::Broker, "port"),
    (Section::Broker, "thing_name"),
    (Section::Broker, "client_id"),
    (Section::Broker, "cafile"),
    (Section::Broker, "certfile"),
    (Section::Broker, "keyfile"),
    (Section::Hooks, "version"),
    (Section::Hooks, "download"),
    (Section::Hooks, "install"),
    (Section::Hooks, "restart"),
    (Section::Hooks, "ready"),
    (Section::Hooks, "retry_interval"),
    (Section::Hooks, "max_retries"),
    (Section::Otalite, "mender_install"),
    (Section::Otalite, "mender_config"),
    (Section::Otalite, "mender_data"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Section {
    Default,
    Service,
    Broker,
    Hooks,
    Otalite,
    Other,
}

impl Section {
    fn of(name: &str) -> Self {
        match name {
            "DEFAULT" => Self::Default,
            "service" => Self::Service,
            "broker" => Self::Broker,
            "hooks" => Self::Hooks,
            "otalite" => Self::Otalite,
            _ => Self::Other,
        }
    }

    fn index(self) -> Option<usize> {
        match self {
            Self::Service => Some(0),
            Self::Broker => Some(1),
            Self::Hooks => Some(2),
            Self::Otalite => Some(3),
            Self::Default | Self::Other => None,
        }
    }
}

/// Raw values as found: in their own section, and in `[DEFAULT]`.
#[derive(Default)]
struct Raw<'a> {
    present: [bool; 4],
    own: [Option<&'a str>; KEYS.len()],
    default: [Option<&'a str>; KEYS.len()],
}

impl<'a> Raw<'a> {
    /// What `config.get(section, key, fallback=None)` returns.
    fn get(&self, key: &str) -> Option<&'a str> {
        let index = KEYS.iter().position(|(_, name)| *name == key)?;
        let (section, _) = KEYS.get(index)?;
        if !*self.present.get(section.index()?)? {
            return None;
        }
        self.own
            .get(index)
            .copied()
            .flatten()
            .or(self.default.get(index).copied().flatten())
    }
}

fn is_blank(c: char) -> bool {
    c.is_whitespace()
}

impl<'a> UpparatConfig<'a> {
    /// upparat's configuration when no file is given (`hostname` is the
    /// thing name, as `socket.gethostname()`).
    pub const fn defaults(hostname: &'a str) -> Self {
        Self {
            service: ServiceConfig {
                log_level: "WARNING",
                download_location: None,
                sentry: None,
            },
            broker: BrokerConfig {
                host: "127.0.0.1",
                port: 1883,
                thing_name: hostname,
                client_id: "upparat",
                tls: None,
            },
            hooks: HooksConfig {
                version: None,
                download: None,
                install: None,
                restart: None,
                ready: None,
                retry_interval: 60,
                max_retries: 60,
            },
            otalite: OtaliteSection {
                mender_install: true,
                mender_config: "/etc/mender/mender.conf",
                mender_data: "/var/lib/mender",
            },
        }
    }

    /// Parses `text` as upparat does; `hostname` is the fallback thing
    /// name. Bounded by the text's length; never allocates.
    ///
    /// # Errors
    /// [`IniError`] with the line, where configparser or upparat would
    /// refuse the file (or this view cannot hold a value).
    pub fn parse(text: &'a str, hostname: &'a str) -> Result<Self, IniError> {
        let raw = read(text)?;
        let defaults = Self::defaults(hostname);
        let integer = |key: &'static str, fallback: u32| -> Result<u32, IniError> {
            raw.get(key).map_or(Ok(fallback), |value| {
                parse_int(value).ok_or(IniError::InvalidInteger { key })
            })
        };
        let port = match raw.get("port") {
            None => defaults.broker.port,
            Some(value) => parse_int(value)
                .and_then(|port| u16::try_from(port).ok())
                .ok_or(IniError::InvalidInteger { key: "port" })?,
        };
        let tls = match (raw.get("cafile"), raw.get("certfile"), raw.get("keyfile")) {
            (None, None, None) => None,
            (Some(cafile), Some(certfile), Some(keyfile)) => Some(TlsFiles {
                cafile,
                certfile,
                keyfile,
            }),
            _ => return Err(IniError::IncompleteTls),
        };
        // A hook set to an empty value is "no hook" (Python: falsy).
        let hook = |key: &str| raw.get(key).filter(|command| !command.is_empty());
        Ok(Self {
            service: ServiceConfig {
                log_level: raw.get("log_level").unwrap_or(defaults.service.log_level),
                download_location: raw.get("download_location"),
                sentry: raw.get("sentry"),
            },
            broker: BrokerConfig {
                host: raw.get("host").unwrap_or(defaults.broker.host),
                port,
                thing_name: raw.get("thing_name").unwrap_or(hostname),
                client_id: raw.get("client_id").unwrap_or(defaults.broker.client_id),
                tls,
            },
            hooks: HooksConfig {
                version: hook("version"),
                download: hook("download"),
                install: hook("install"),
                restart: hook("restart"),
                ready: hook("ready"),
                retry_interval: integer("retry_interval", defaults.hooks.retry_interval)?,
                max_retries: integer("max_retries", defaults.hooks.max_retries)?,
            },
            otalite: OtaliteSection {
                mender_install: match raw.get("mender_install") {
                    None => defaults.otalite.mender_install,
                    Some(value) => parse_bool(value).ok_or(IniError::InvalidBoolean {
                        key: "mender_install",
                    })?,
                },
                mender_config: raw
                    .get("mender_config")
                    .unwrap_or(defaults.otalite.mender_config),
                mender_data: raw
                    .get("mender_data")
                    .unwrap_or(defaults.otalite.mender_data),
            },
        })
    }
}

/// configparser's `getboolean`: `1`/`yes`/`true`/`on` or
/// `0`/`no`/`false`/`off`, any case.
fn parse_bool(value: &str) -> Option<bool> {
    const TRUE: [&str; 4] = ["1", "yes", "true", "on"];
    const FALSE: [&str; 4] = ["0", "no", "false", "off"];
    if TRUE.iter().any(|t| t.eq_ignore_ascii_case(value)) {
        Some(true)
    } else if FALSE.iter().any(|f| f.eq_ignore_ascii_case(value)) {
        Some(false)
    } else {
        None
    }
}

/// Python's `int(value)` for what a config holds: optional sign, ASCII
/// digits with single `_` between them; negative values are refused.
fn parse_int(value: &str) -> Option<u32> {
    let digits = value.strip_prefix('+').unwrap_or(value);
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    digits
        .bytes()
        .filter(|b| *b != b'_')
        .try_fold(0u32, |total, b| {
            let digit = char::from(b).to_digit(10)?;
            total.checked_mul(10)?.checked_add(digit)
        })
}

/// configparser's `_read`, keeping only the known keys.
fn read(text: &str) -> Result<Raw<'_>, IniError> {
    let mut raw = Raw::default();
    let mut section: Option<Section> = None;
    let mut seen_sections = [false; 4];
    let mut seen_default_keys = [false; KEYS.len()];
    // Indent of the last key line while a value may continue.
    let mut key_indent: Option<usize> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let stripped = line.trim_matches(is_blank);
        if stripped.is_empty() || stripped.starts_with('#') || stripped.starts_with(';') {
            continue;
        }
        let indent = line.len() - line.trim_start_matches(is_blank).len();
        if key_indent.is_some_and(|key_indent| indent > key_indent) {
            return Err(IniError::Continuation { line: number });
        }
        if let Some(header) = stripped.strip_prefix('[') {
            // `\[(?P<header>.+)\]`: up to the last `]`, text after it ignored.
            if let Some(end) = header.rfind(']').filter(|end| *end > 0) {
                let name = header.get(..end).unwrap_or("");
                let kind = Section::of(name);
                // Duplicates of unknown sections go unnoticed (not kept).
                if let Some(slot) = kind.index() {
                    if seen_sections.get(slot).copied().unwrap_or(false) {
                        return Err(IniError::DuplicateSection { line: number });
                    }
                    if let Some(seen) = seen_sections.get_mut(slot) {
                        *seen = true;
                    }
                    if let Some(present) = raw.present.get_mut(slot) {
                        *present = true;
                    }
                }
                section = Some(kind);
                key_indent = None;
                continue;
            }
        }
        let Some(current) = section else {
            return Err(IniError::MissingSectionHeader { line: number });
        };
        let Some(split) = stripped.find(['=', ':']) else {
            return Err(IniError::Syntax { line: number });
        };
        let key = stripped.get(..split).unwrap_or("").trim_matches(is_blank);
        let value = stripped
            .get(split + 1..)
            .unwrap_or("")
            .trim_matches(is_blank);
        if key.is_empty() {
            return Err(IniError::Syntax { line: number });
        }
        key_indent = Some(indent);
        let known = KEYS.iter().position(|(owner, name)| {
            name.eq_ignore_ascii_case(key) && (current == Section::Default || *owner == current)
        });
        let Some(key_index) = known else {
            continue;
        };
        if value.contains('%') {
            return Err(IniError::Interpolation { line: number });
        }
        let (slot, seen) = if current == Section::Default {
            (
                raw.default.get_mut(key_index),
                seen_default_keys.get_mut(key_index),
            )
        } else {
            let already = raw.own.get(key_index).copied().flatten().is_some();
            if already {
                return Err(IniError::DuplicateKey { line: number });
            }
            (raw.own.get_mut(key_index), None)
        };
        if let Some(seen) = seen {
            if *seen {
                return Err(IniError::DuplicateKey { line: number });
            }
            *seen = true;
        }
        if let Some(slot) = slot {
            *slot = Some(value);
        }
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// upparat's `misc/examples/upparat/config/config.alpn.ini.tmpl`,
    /// filled in.
    const ALPN_EXAMPLE: &str = "[service]
log_level = DEBUG
download_location = /tmp

[broker]
# https://docs.aws.amazon.com/general/latest/gr/iot-core.html
host = abc-ats.iot.eu-central-1.amazonaws.com
port = 443

# AWS IoT Thingname
thing_name = device-1
client_id = device-1

certfile = /config/certfile
keyfile = /config/keyfile
cafile = /config/cafile

[hooks]
version = /hooks/version.sh
install = /hooks/install.sh
download = /hooks/download.sh
; ready =
; install =
; restart =
";

    #[test]
    fn parses_upparats_example() {
        let config = UpparatConfig::parse(ALPN_EXAMPLE, "host").unwrap();
        assert_eq!(config.service.log_level, "DEBUG");
        assert_eq!(config.service.download_location, Some("/tmp"));
        assert_eq!(config.broker.host, "abc-ats.iot.eu-central-1.amazonaws.com");
        assert_eq!(config.broker.port, 443);
        assert_eq!(config.broker.thing_name, "device-1");
        assert_eq!(config.broker.client_id, "device-1");
        assert_eq!(
            config.broker.tls,
            Some(TlsFiles {
                cafile: "/config/cafile",
                certfile: "/config/certfile",
                keyfile: "/config/keyfile"
            })
        );
        assert_eq!(config.hooks.version, Some("/hooks/version.sh"));
        assert_eq!(config.hooks.ready, None);
        assert_eq!(config.hooks.restart, None);
        assert_eq!(config.hooks.retry_interval, 60);
    }

    /// upparat's `tests/config/config_test.py` sample, and the defaults.
    #[test]
    fn defaults_match_upparat() {
        let sample = "\n[service]\nlog_level=WARNING\nsentry=sentry.dsn.com\n\n[broker]\nhost=host.com\n\n[hooks]\nversion=./version.sh\n";
        let config = UpparatConfig::parse(sample, "my-host").unwrap();
        assert_eq!(config.service.sentry, Some("sentry.dsn.com"));
        assert_eq!(config.broker.host, "host.com");
        assert_eq!(config.broker.port, 1883);
        assert_eq!(config.broker.thing_name, "my-host");
        assert_eq!(config.broker.client_id, "upparat");
        assert_eq!(config.broker.tls, None);
        assert_eq!(config.hooks.version, Some("./version.sh"));
        assert_eq!(
            (config.hooks.retry_interval, config.hooks.max_retries),
            (60, 60)
        );
        assert_eq!(
            UpparatConfig::parse("", "h").unwrap(),
            UpparatConfig::defaults("h")
        );
    }

    #[test]
    fn follows_configparser_syntax() {
        let text = "  # comment\n[broker]\n  HOST :  a b  \nPort=+1_884\n; x = y\nunknown = %z\n[other]\nport = nonsense\n[hooks]\nready =\ninstall = ./i.sh # not a comment\n[DEFAULT]\nclient_id = from-default\nrestart = /r\n";
        let config = UpparatConfig::parse(text, "h").unwrap();
        assert_eq!(config.broker.host, "a b");
        assert_eq!(config.broker.port, 1884);
        assert_eq!(config.broker.client_id, "from-default");
        assert_eq!(config.hooks.ready, None);
        assert_eq!(config.hooks.install, Some("./i.sh # not a comment"));
        assert_eq!(config.hooks.restart, Some("/r"));
        // [DEFAULT] does not apply to a section that is not there.
        assert_eq!(config.service.log_level, "WARNING");
        // Section names are case-sensitive.
        let config = UpparatConfig::parse("[BROKER]\nhost = x\n", "h").unwrap();
        assert_eq!(config.broker.host, "127.0.0.1");
        // Trailing text after `]` is ignored.
        let config = UpparatConfig::parse("[broker] ; c\nhost = y\n", "h").unwrap();
        assert_eq!(config.broker.host, "y");
        let config = UpparatConfig::parse("[broker]\r\nhost = z\r\n", "h").unwrap();
        assert_eq!(config.broker.host, "z");
    }

    #[test]
    fn refuses_what_upparat_refuses() {
        let cases = [
            ("host = x\n", IniError::MissingSectionHeader { line: 1 }),
            ("[broker]\nhost\n", IniError::Syntax { line: 2 }),
            ("[broker]\n= x\n", IniError::Syntax { line: 2 }),
            (
                "[broker]\n[broker]\n",
                IniError::DuplicateSection { line: 2 },
            ),
            (
                "[broker]\nhost=a\nHOST=b\n",
                IniError::DuplicateKey { line: 3 },
            ),
            (
                "[broker]\nhost=a\n  b\n",
                IniError::Continuation { line: 3 },
            ),
            (
                "[broker]\nhost=a\n\n  [hooks]\n",
                IniError::Continuation { line: 4 },
            ),
            (
                "[hooks]\nversion=%(x)s\n",
                IniError::Interpolation { line: 2 },
            ),
            (
                "[broker]\nport=70000\n",
                IniError::InvalidInteger { key: "port" },
            ),
            (
                "[broker]\nport=\n",
                IniError::InvalidInteger { key: "port" },
            ),
            (
                "[hooks]\nmax_retries=-1\n",
                IniError::InvalidInteger { key: "max_retries" },
            ),
            (
                "[hooks]\nretry_interval=1__0\n",
                IniError::InvalidInteger {
                    key: "retry_interval",
                },
            ),
            ("[broker]\ncafile=a\ncertfile=b\n", IniError::IncompleteTls),
        ];
        for (text, error) in cases {
            assert_eq!(UpparatConfig::parse(text, "h"), Err(error), "{text:?}");
        }
        // An empty TLS path still counts as set (upparat checks `is None`).
        let config = UpparatConfig::parse("[broker]\ncafile=\ncertfile=\nkeyfile=\n", "h").unwrap();
        assert!(config.broker.tls.is_some());
    }

    #[test]
    fn reads_the_otalite_section() {
        let defaults = UpparatConfig::parse("[hooks]\ninstall = /x\n", "h").unwrap();
        assert_eq!(defaults.otalite, UpparatConfig::defaults("h").otalite);
        assert!(defaults.otalite.mender_install);
        let text = "[otalite]\nmender_install = Off\nmender_config = /c/m.conf\nmender_data = /d\n";
        let config = UpparatConfig::parse(text, "h").unwrap();
        assert!(!config.otalite.mender_install);
        assert_eq!(config.otalite.mender_config, "/c/m.conf");
        assert_eq!(config.otalite.mender_data, "/d");
        for text in [
            "[otalite]\nmender_install = 1\n",
            "[otalite]\nmender_install = yes\n",
            "[otalite]\nmender_install = TRUE\n",
            "[otalite]\nmender_install = on\n",
        ] {
            assert!(
                UpparatConfig::parse(text, "h")
                    .unwrap()
                    .otalite
                    .mender_install
            );
        }
        assert_eq!(
            UpparatConfig::parse("[otalite]\nmender_install = maybe\n", "h"),
            Err(IniError::InvalidBoolean {
                key: "mender_install"
            })
        );
        // From [DEFAULT] only when the section exists, as configparser.
        let text = "[DEFAULT]\nmender_install = no\n[otalite]\n";
        assert!(
            !UpparatConfig::parse(text, "h")
                .unwrap()
                .otalite
                .mender_install
        );
        let text = "[DEFAULT]\nmender_install = no\n";
        assert!(
            UpparatConfig::parse(text, "h")
                .unwrap()
                .otalite
                .mender_install
        );
    }
}
