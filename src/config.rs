//! `mender.conf`: the reference client's configuration, parsed without a
//! heap.
//!
//! Keys are matched case-insensitively (the reference uses Go's JSON decoder)
//! and unknown keys are ignored. The fallback file (`/var/lib/mender/mender.conf`)
//! is read first, then the main file (`/etc/mender/mender.conf`); a key set
//! in the main file wins ([`MenderConfig::merge`]).
//!
//! | key | type | default |
//! |---|---|---|
//! | `RootfsPartA`, `RootfsPartB` | device path | none (required to install) |
//! | `ArtifactVerifyKey` / `ArtifactVerifyKeys` | path / list of paths | none (both set is an error) |
//! | `DeviceTypeFile` | path | `<DATA>/device_type` |
//! | `ServerURL` / `Servers` | URL / list of `{ServerURL}` | none (both set is an error) |
//! | `ServerCertificate` | path | none |
//! | `SkipVerify` | bool | false |
//! | `TenantToken` | string | "" |
//! | `UpdatePollIntervalSeconds` | int | 1800 |
//! | `InventoryPollIntervalSeconds` | int | 1800 |
//! | `RetryPollIntervalSeconds` | int | 300 |
//! | `RetryPollCount` | int | 0 (automatic) |
//! | `UpdateControlMapExpirationTimeSeconds` | int | 2 x `UpdatePollIntervalSeconds` (0 = default) |
//! | `UpdateControlMapBootExpirationTimeSeconds` | int | 600 (0 = default) |
//! | `StateScriptTimeoutSeconds` | int | 3600 |
//! | `ModuleTimeoutSeconds` | int | 14400 (0 = default) |
//! | `StateScriptRetryTimeoutSeconds` | int | 1800 |
//! | `StateScriptRetryIntervalSeconds` | int | 60 |
//! | `DaemonLogLevel` | string | none |
//! | `Security.AuthPrivateKey` | path | none (a key is generated in `<DATA>`) |
//! | `HttpsClient.Certificate`, `HttpsClient.Key` | paths | none |
//! | `DBus.Enabled` | bool | `true` (the D-Bus API, when the binary has it) |
//! | `DeviceKeyType` (otalite) | `ed25519` / `ecdsa-p256` / `rsa3072` | `ed25519` |
//! | `FwEnvConfig` (otalite) | path | `/etc/fw_env.config` |
//! | `GrubEnvDir` (otalite) | path | searched as grub-mender-grubenv does |
//! | `HooksConfig` (otalite) | path | an INI file with upparat's `[hooks]` section (`version`, `download`, `install`, `restart`, `ready`, `retry_interval`, `max_retries`): deployments are downloaded to `<DATA>/artifact.mender` and installed by those hooks, the daemon reporting the Mender statuses |
//! | `HandOff` (otalite) | bool | `false`: the daemon installs; `true`: it downloads to `<DATA>/artifact.mender` and hands over to `/usr/share/mender/install` (the Mender Python client's flow) |

//!
//! The file must be strict JSON (one object). Errors say where: a syntax
//! error gives the line, column and expected token; a value of the wrong
//! type or over its capacity names the member, its position and what it
//! must be ([`ConfigError`]). Capacities: paths and URLs 256 bytes,
//! `TenantToken` 1024, lists ([`MAX_LIST_LEN`]) 16 entries.

use heapless::{String, Vec};

/// Longest path or URL kept from the configuration.
pub const MAX_PATH_LEN: usize = 256;
/// Most entries in `ArtifactVerifyKeys` and `Servers` (real configurations
/// use one to three; a longer list is refused with an error naming this
/// limit).
pub const MAX_LIST_LEN: usize = 16;
/// Largest configuration file accepted.
pub const MAX_CONFIG_LEN: usize = 16 * 1024;

/// A path or URL from the configuration.
pub type ConfigPath = String<MAX_PATH_LEN>;

/// One entry of `Servers`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct ServerEntry {
    /// The server's URL.
    #[serde(rename = "serverurl")]
    pub server_url: Option<ConfigPath>,
}

/// `Security` (device authentication key).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct SecurityConfig {
    /// `AuthPrivateKey`: a static key file, never generated or replaced.
    #[serde(rename = "authprivatekey")]
    pub auth_private_key: Option<ConfigPath>,
}

/// `HttpsClient` (mutual TLS; its key also signs auth requests when
/// `Security.AuthPrivateKey` is not set).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct HttpsClientConfig {
    /// `Certificate`: client certificate chain (PEM).
    #[serde(rename = "certificate")]
    pub certificate: Option<ConfigPath>,
    /// `Key`: client private key (PEM).
    #[serde(rename = "key")]
    pub key: Option<ConfigPath>,
}

/// `DBus` (the reference's D-Bus API on the system bus).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct DBusConfig {
    /// `Enabled`: serve the API (default `true`).
    #[serde(rename = "enabled")]
    pub enabled: Option<bool>,
}

/// The parsed configuration; `None` means "not set in this file".
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[allow(missing_docs)]
pub struct MenderConfig {
    #[serde(rename = "rootfsparta")]
    pub rootfs_part_a: Option<ConfigPath>,
    #[serde(rename = "rootfspartb")]
    pub rootfs_part_b: Option<ConfigPath>,
    #[serde(rename = "artifactverifykey")]
    pub artifact_verify_key: Option<ConfigPath>,
    #[serde(rename = "artifactverifykeys")]
    pub artifact_verify_keys: Option<Vec<ConfigPath, MAX_LIST_LEN>>,
    #[serde(rename = "devicetypefile")]
    pub device_type_file: Option<ConfigPath>,
    #[serde(rename = "serverurl")]
    pub server_url: Option<ConfigPath>,
    #[serde(rename = "servers")]
    pub servers: Option<Vec<ServerEntry, MAX_LIST_LEN>>,
    #[serde(rename = "servercertificate")]
    pub server_certificate: Option<ConfigPath>,
    #[serde(rename = "skipverify")]
    pub skip_verify: Option<bool>,
    /// `HandOff` (otalite): hand deployments to the installer program
    /// (the Mender Python client's flow).
    #[serde(rename = "handoff")]
    pub hand_off: Option<bool>,
    /// `HooksConfig` (otalite): an INI file with upparat's `[hooks]`
    /// section; its hooks install deployments instead of the slot
    /// installer.
    #[serde(rename = "hooksconfig")]
    pub hooks_config: Option<ConfigPath>,
    #[serde(rename = "tenanttoken")]
    pub tenant_token: Option<String<1024>>,
    #[serde(rename = "updatepollintervalseconds")]
    pub update_poll_interval_seconds: Option<u32>,
    #[serde(rename = "inventorypollintervalseconds")]
    pub inventory_poll_interval_seconds: Option<u32>,
    #[serde(rename = "retrypollintervalseconds")]
    pub retry_poll_interval_seconds: Option<u32>,
    #[serde(rename = "retrypollcount")]
    pub retry_poll_count: Option<u32>,
    #[serde(rename = "updatecontrolmapexpirationtimeseconds")]
    pub update_control_map_expiration_time_seconds: Option<u32>,
    #[serde(rename = "updatecontrolmapbootexpirationtimeseconds")]
    pub update_control_map_boot_expiration_time_seconds: Option<u32>,
    #[serde(rename = "statescripttimeoutseconds")]
    pub state_script_timeout_seconds: Option<u32>,
    #[serde(rename = "moduletimeoutseconds")]
    pub module_timeout_seconds: Option<u32>,
    #[serde(rename = "statescriptretrytimeoutseconds")]
    pub state_script_retry_timeout_seconds: Option<u32>,
    #[serde(rename = "statescriptretryintervalseconds")]
    pub state_script_retry_interval_seconds: Option<u32>,
    #[serde(rename = "daemonloglevel")]
    pub daemon_log_level: Option<String<16>>,
    #[serde(rename = "security")]
    pub security: Option<SecurityConfig>,
    #[serde(rename = "httpsclient")]
    pub https_client: Option<HttpsClientConfig>,
    #[serde(rename = "dbus")]
    pub dbus: Option<DBusConfig>,
    /// otalite extension: type of a generated device key: `ed25519`
    /// (default), `ecdsa-p256` or `rsa3072`.
    #[serde(rename = "devicekeytype")]
    pub device_key_type: Option<String<16>>,
    /// otalite extension: the libubootenv config (default `/etc/fw_env.config`).
    #[serde(rename = "fwenvconfig")]
    pub fw_env_config: Option<ConfigPath>,
    /// otalite extension: the grub-mender-grubenv directory (default: searched
    /// like the reference).
    #[serde(rename = "grubenvdir")]
    pub grub_env_dir: Option<ConfigPath>,
}

/// Why a configuration file was refused. Positions are 1-based; columns
/// count bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file is larger than [`MAX_CONFIG_LEN`].
    TooLarge,
    /// Not valid JSON (or not a JSON object).
    Syntax {
        /// Line of the offending byte.
        line: u32,
        /// Column of the offending byte.
        column: u32,
        /// What the parser expected there.
        reason: &'static str,
        /// The offending byte, `None` at the end of the text.
        found: Option<u8>,
    },
    /// A member's value has the wrong type or does not fit its buffer.
    Value {
        /// The member's name, as documented (`UpdatePollIntervalSeconds`).
        field: &'static str,
        /// Line of the value.
        line: u32,
        /// Column of the value.
        column: u32,
        /// What the value must be.
        expected: &'static str,
    },
    /// A list member has more entries than otalite keeps.
    TooMany {
        /// The member's name (`ArtifactVerifyKeys`, `Servers`).
        field: &'static str,
        /// Line of the list.
        line: u32,
        /// Column of the list.
        column: u32,
        /// Entries in the file.
        count: usize,
        /// The limit ([`MAX_LIST_LEN`]).
        limit: usize,
    },
    /// The text is valid JSON and every member is valid on its own, yet the
    /// whole does not parse (a key given twice, for instance).
    Invalid,
    /// Both `ArtifactVerifyKey` and `ArtifactVerifyKeys` are set.
    BothVerifyKeyForms,
    /// Both `ServerURL` and `Servers` are set.
    BothServerForms,
    /// `RootfsPartA` and `RootfsPartB` name the same device.
    SamePartitions,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooLarge => write!(f, "the configuration is larger than {MAX_CONFIG_LEN} bytes"),
            Self::Syntax {
                line,
                column,
                reason,
                found,
            } => {
                write!(f, "syntax error at line {line}, column {column}: {reason}")?;
                match found {
                    None => f.write_str(" (found the end of the file)"),
                    Some(byte) if byte.is_ascii_graphic() => {
                        write!(f, " (found '{}')", char::from(*byte))
                    }
                    Some(byte) => write!(f, " (found byte 0x{byte:02x})"),
                }
            }
            Self::Value {
                field,
                line,
                column,
                expected,
            } => write!(
                f,
                "{field} (line {line}, column {column}) must be {expected}"
            ),
            Self::TooMany {
                field,
                line,
                column,
                count,
                limit,
            } => write!(
                f,
                "{field} (line {line}, column {column}) has {count} entries; otalite supports at most {limit}"
            ),
            Self::Invalid => f.write_str(
                "the configuration does not match the expected types (is a key given twice?)",
            ),
            Self::BothVerifyKeyForms => {
                f.write_str("both ArtifactVerifyKey and ArtifactVerifyKeys are set; use one")
            }
            Self::BothServerForms => f.write_str("both ServerURL and Servers are set; use one"),
            Self::SamePartitions => f.write_str("RootfsPartA and RootfsPartB must differ"),
        }
    }
}

impl core::error::Error for ConfigError {}

const PATH: &str = "a string of at most 256 bytes (a path or URL)";
const NUMBER: &str = "a whole number from 0 to 4294967295";
const SHORT: &str = "a string of at most 16 bytes";

/// Every member the parse knows: its documented name, what its value must
/// be, and whether it is a list limited to [`MAX_LIST_LEN`].
const FIELDS: [(&str, &str, bool); 29] = [
    ("RootfsPartA", PATH, false),
    ("RootfsPartB", PATH, false),
    ("ArtifactVerifyKey", PATH, false),
    (
        "ArtifactVerifyKeys",
        "a list of at most 16 strings of at most 256 bytes (paths)",
        true,
    ),
    ("DeviceTypeFile", PATH, false),
    ("ServerURL", PATH, false),
    (
        "Servers",
        "a list of at most 16 objects like {\"ServerURL\": \"https://...\"} (URLs of at most 256 bytes)",
        true,
    ),
    ("ServerCertificate", PATH, false),
    ("SkipVerify", "true or false", false),
    ("HandOff", "true or false", false),
    ("HooksConfig", PATH, false),
    ("TenantToken", "a string of at most 1024 bytes", false),
    ("UpdatePollIntervalSeconds", NUMBER, false),
    ("InventoryPollIntervalSeconds", NUMBER, false),
    ("RetryPollIntervalSeconds", NUMBER, false),
    ("RetryPollCount", NUMBER, false),
    ("UpdateControlMapExpirationTimeSeconds", NUMBER, false),
    ("UpdateControlMapBootExpirationTimeSeconds", NUMBER, false),
    ("StateScriptTimeoutSeconds", NUMBER, false),
    ("ModuleTimeoutSeconds", NUMBER, false),
    ("StateScriptRetryTimeoutSeconds", NUMBER, false),
    ("StateScriptRetryIntervalSeconds", NUMBER, false),
    ("DaemonLogLevel", SHORT, false),
    (
        "Security",
        "an object like {\"AuthPrivateKey\": \"/path\"} (paths of at most 256 bytes)",
        false,
    ),
    (
        "HttpsClient",
        "an object like {\"Certificate\": \"/path\", \"Key\": \"/path\"} (paths of at most 256 bytes)",
        false,
    ),
    ("DBus", "an object like {\"Enabled\": true}", false),
    ("DeviceKeyType", SHORT, false),
    ("FwEnvConfig", PATH, false),
    ("GrubEnvDir", PATH, false),
];

/// Line and column (1-based, bytes) of `offset` in `text`.
fn position(text: &[u8], offset: usize) -> (u32, u32) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.iter().filter(|&&b| b == b'\n').count();
    let column = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(before.len(), |newline| {
            before.len().saturating_sub(newline).saturating_sub(1)
        });
    let clamp = |n: usize| u32::try_from(n.saturating_add(1)).unwrap_or(u32::MAX);
    (clamp(line), clamp(column))
}

/// Deepest nesting the syntax check follows (real configs use 3).
const MAX_DEPTH: usize = 32;

/// A JSON syntax check that knows where it failed (serde-json-core does
/// not report positions). Also yields the top-level members' spans.
struct Scanner<'t> {
    text: &'t [u8],
    pos: usize,
}

type ScanResult<T> = Result<T, (usize, &'static str)>;

impl<'t> Scanner<'t> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn fail<T>(&self, reason: &'static str) -> ScanResult<T> {
        Err((self.pos, reason))
    }

    fn bump(&mut self) {
        self.pos = self.pos.saturating_add(1);
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.bump();
        }
    }

    fn expect(&mut self, byte: u8, reason: &'static str) -> ScanResult<()> {
        if self.peek() == Some(byte) {
            self.bump();
            Ok(())
        } else {
            self.fail(reason)
        }
    }

    fn string(&mut self) -> ScanResult<()> {
        self.expect(b'"', "expected a string")?;
        loop {
            match self.peek() {
                None => return self.fail("unterminated string"),
                Some(b'"') => {
                    self.bump();
                    return Ok(());
                }
                Some(b'\\') => {
                    self.bump();
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.bump();
                        }
                        Some(b'u') => {
                            self.bump();
                            for _ in 0..4 {
                                if !self.peek().is_some_and(|b| b.is_ascii_hexdigit()) {
                                    return self.fail("expected 4 hex digits after \\u");
                                }
                                self.bump();
                            }
                        }
                        _ => return self.fail("invalid escape in a string"),
                    }
                }
                Some(byte) if byte < 0x20 => {
                    return self.fail("control character in a string (escape it)")
                }
                Some(_) => self.bump(),
            }
        }
    }

    fn digits(&mut self) -> ScanResult<()> {
        if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
            return self.fail("expected a digit");
        }
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.bump();
        }
        Ok(())
    }

    fn number(&mut self) -> ScanResult<()> {
        if self.peek() == Some(b'-') {
            self.bump();
        }
        if self.peek() == Some(b'0') {
            self.bump();
        } else {
            self.digits()?;
        }
        if self.peek() == Some(b'.') {
            self.bump();
            self.digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.bump();
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.bump();
            }
            self.digits()?;
        }
        Ok(())
    }

    fn literal(&mut self, word: &'static [u8]) -> ScanResult<()> {
        let end = self.pos.saturating_add(word.len());
        if self.text.get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(())
        } else {
            self.fail("expected a value (a string, number, object, list, true, false or null)")
        }
    }

    fn value(&mut self, depth: usize) -> ScanResult<()> {
        if depth > MAX_DEPTH {
            return self.fail("nested too deeply");
        }
        match self.peek() {
            Some(b'{') => self.object(depth, |_, _, _| {}),
            Some(b'[') => {
                self.bump();
                self.ws();
                if self.peek() == Some(b']') {
                    self.bump();
                    return Ok(());
                }
                loop {
                    self.ws();
                    self.value(depth.saturating_add(1))?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.bump(),
                        Some(b']') => {
                            self.bump();
                            return Ok(());
                        }
                        _ => return self.fail("expected ',' or ']' in a list"),
                    }
                }
            }
            Some(b'"') => self.string(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            _ => {
                self.fail("expected a value (a string, number, object, list, true, false or null)")
            }
        }
    }

    /// An object; `member(key span, value start, value end)` for each
    /// member (the key span includes its quotes).
    fn object(
        &mut self,
        depth: usize,
        mut member: impl FnMut((usize, usize), usize, usize),
    ) -> ScanResult<()> {
        self.expect(b'{', "expected '{'")?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.bump();
            return Ok(());
        }
        loop {
            self.ws();
            let key_start = self.pos;
            if self.peek() != Some(b'"') {
                return self.fail("expected a string key");
            }
            self.string()?;
            let key = (key_start, self.pos);
            self.ws();
            self.expect(b':', "expected ':' after the key")?;
            self.ws();
            let value_start = self.pos;
            self.value(depth.saturating_add(1))?;
            member(key, value_start, self.pos);
            self.ws();
            match self.peek() {
                Some(b',') => self.bump(),
                Some(b'}') => {
                    self.bump();
                    return Ok(());
                }
                _ => return self.fail("expected ',' or '}' after a member"),
            }
        }
    }

    /// The whole text: one object, nothing after it.
    fn config(&mut self, member: impl FnMut((usize, usize), usize, usize)) -> ScanResult<()> {
        self.ws();
        if self.peek() != Some(b'{') {
            return self.fail("the configuration must be a JSON object ('{ ... }')");
        }
        self.object(0, member)?;
        self.ws();
        if self.pos < self.text.len() {
            return self.fail("unexpected text after the configuration object");
        }
        Ok(())
    }
}

/// Entries of the JSON list `value` (already syntax-checked).
fn list_len(value: &[u8]) -> usize {
    let mut scanner = Scanner {
        text: value,
        pos: 0,
    };
    if scanner.peek() != Some(b'[') {
        return 0;
    }
    scanner.bump();
    let mut count = 0usize;
    loop {
        scanner.ws();
        if matches!(scanner.peek(), Some(b']') | None) {
            return count;
        }
        if scanner.value(1).is_err() {
            return count;
        }
        count = count.saturating_add(1);
        scanner.ws();
        if scanner.peek() == Some(b',') {
            scanner.bump();
        }
    }
}

/// Explains why the typed parse refused `text`: the syntax error's
/// position, or the first member whose value alone does not parse.
fn diagnose(text: &[u8], scratch: &mut [u8]) -> ConfigError {
    let mut members: heapless::Vec<((usize, usize), usize, usize), 64> = heapless::Vec::new();
    let mut scanner = Scanner { text, pos: 0 };
    // Past 64 members (no real configuration has that many), the rest are
    // syntax-checked but not diagnosed one by one.
    if let Err((offset, reason)) = scanner.config(|key, start, end| {
        let _ = members.push((key, start, end));
    }) {
        let (line, column) = position(text, offset);
        return ConfigError::Syntax {
            line,
            column,
            reason,
            found: text.get(offset).copied(),
        };
    }
    for ((key_start, key_end), start, end) in members {
        let key = text
            .get(key_start.saturating_add(1)..key_end.saturating_sub(1))
            .unwrap_or_default();
        let Some(&(field, expected, is_list)) = FIELDS
            .iter()
            .find(|(name, _, _)| name.as_bytes().eq_ignore_ascii_case(key))
        else {
            continue;
        };
        let value = text.get(start..end).unwrap_or_default();
        let (line, column) = position(text, start);
        if is_list {
            let count = list_len(value);
            if count > MAX_LIST_LEN {
                return ConfigError::TooMany {
                    field,
                    line,
                    column,
                    count,
                    limit: MAX_LIST_LEN,
                };
            }
        }
        // `{"<lower-case key>":<value>}` alone through the typed parse.
        let len = key.len().saturating_add(value.len()).saturating_add(5);
        let Some(single) = scratch.get_mut(..len) else {
            continue;
        };
        let mut at = 0usize;
        for part in [b"{\"".as_slice(), key, b"\":", value, b"}"] {
            let next = at.saturating_add(part.len());
            if let Some(slot) = single.get_mut(at..next) {
                slot.copy_from_slice(part);
            }
            at = next;
        }
        lowercase_keys(single);
        if serde_json_core::from_slice::<MenderConfig>(single).is_err() {
            return ConfigError::Value {
                field,
                line,
                column,
                expected,
            };
        }
    }
    ConfigError::Invalid
}

/// Lower-cases every object key of the JSON text in place (values are left
/// alone), so that the typed parse can match keys case-insensitively.
fn lowercase_keys(json: &mut [u8]) {
    let mut index = 0usize;
    while index < json.len() {
        if json.get(index) != Some(&b'"') {
            index += 1;
            continue;
        }
        let start = index + 1;
        let mut end = start;
        while let Some(&byte) = json.get(end) {
            match byte {
                b'\\' => end += 2,
                b'"' => break,
                _ => end += 1,
            }
        }
        let mut after = end + 1;
        while json.get(after).is_some_and(u8::is_ascii_whitespace) {
            after += 1;
        }
        if json.get(after) == Some(&b':') {
            if let Some(key) = json.get_mut(start..end) {
                key.make_ascii_lowercase();
            }
        }
        index = end + 1;
    }
}

/// Resolves the JSON escapes `\"`, `\\` and `\/` that the typed parse keeps
/// verbatim. Other escapes are rare in paths and are left as they are.
fn unescape<const N: usize>(value: &mut String<N>) {
    if !value.contains('\\') {
        return;
    }
    let mut out: String<N> = String::new();
    let mut chars = value.chars();
    while let Some(ch) = chars.next() {
        let resolved = if ch == '\\' {
            match chars.next() {
                Some(next @ ('"' | '\\' | '/')) => next,
                Some('n') => '\n',
                Some('t') => '\t',
                Some(other) => {
                    let _ = out.push('\\');
                    other
                }
                None => '\\',
            }
        } else {
            ch
        };
        let _ = out.push(resolved);
    }
    *value = out;
}

impl MenderConfig {
    /// Parses one configuration file. `scratch` must hold the whole text
    /// (keys are rewritten in it); the text is copied there first.
    ///
    /// # Errors
    /// See [`ConfigError`].
    pub fn parse(text: &[u8], scratch: &mut [u8]) -> Result<Self, ConfigError> {
        if text.len() > MAX_CONFIG_LEN || text.len() > scratch.len() {
            return Err(ConfigError::TooLarge);
        }
        let copy = scratch.get_mut(..text.len()).ok_or(ConfigError::TooLarge)?;
        copy.copy_from_slice(text);
        lowercase_keys(copy);
        let trimmed_len = copy
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |p| p + 1);
        let json = copy.get(..trimmed_len).unwrap_or_default();
        // Strict JSON first, as the reference's decoder (serde-json-core
        // skips unknown members leniently and reports no position).
        // The typed parse runs only on text that passed (so is nested at
        // most MAX_DEPTH deep).
        if (Scanner { text: json, pos: 0 })
            .config(|_, _, _| {})
            .is_err()
        {
            return Err(diagnose(text, scratch));
        }
        let Ok((mut config, _)) = serde_json_core::from_slice::<Self>(json) else {
            return Err(diagnose(text, scratch));
        };
        config.unescape_all();
        config.validate()?;
        Ok(config)
    }

    fn unescape_all(&mut self) {
        for value in [
            &mut self.rootfs_part_a,
            &mut self.rootfs_part_b,
            &mut self.artifact_verify_key,
            &mut self.device_type_file,
            &mut self.server_url,
            &mut self.server_certificate,
            &mut self.fw_env_config,
            &mut self.grub_env_dir,
        ]
        .into_iter()
        .flatten()
        {
            unescape(value);
        }
        for value in self.artifact_verify_keys.iter_mut().flatten() {
            unescape(value);
        }
        for server in self.servers.iter_mut().flatten() {
            if let Some(url) = &mut server.server_url {
                unescape(url);
            }
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.artifact_verify_key.is_some() && self.artifact_verify_keys.is_some() {
            return Err(ConfigError::BothVerifyKeyForms);
        }
        if self.server_url.is_some() && self.servers.as_ref().is_some_and(|s| !s.is_empty()) {
            return Err(ConfigError::BothServerForms);
        }
        if let (Some(a), Some(b)) = (&self.rootfs_part_a, &self.rootfs_part_b) {
            if a == b {
                return Err(ConfigError::SamePartitions);
            }
        }
        Ok(())
    }

    /// Lays `main` over `self` (the fallback): every key set in `main` wins.
    ///
    /// # Errors
    /// When the merged result is inconsistent (see [`ConfigError`]).
    pub fn merge(self, main: Self) -> Result<Self, ConfigError> {
        // The verify-key and server forms are exclusive per merged result:
        // a form set in the main file replaces the other form from the
        // fallback.
        let (artifact_verify_key, artifact_verify_keys) =
            if main.artifact_verify_key.is_some() || main.artifact_verify_keys.is_some() {
                (main.artifact_verify_key, main.artifact_verify_keys)
            } else {
                (self.artifact_verify_key, self.artifact_verify_keys)
            };
        let (server_url, servers) = if main.server_url.is_some() || main.servers.is_some() {
            (main.server_url, main.servers)
        } else {
            (self.server_url, self.servers)
        };
        let merged = Self {
            rootfs_part_a: main.rootfs_part_a.or(self.rootfs_part_a),
            rootfs_part_b: main.rootfs_part_b.or(self.rootfs_part_b),
            artifact_verify_key,
            artifact_verify_keys,
            device_type_file: main.device_type_file.or(self.device_type_file),
            server_url,
            servers,
            server_certificate: main.server_certificate.or(self.server_certificate),
            skip_verify: main.skip_verify.or(self.skip_verify),
            hand_off: main.hand_off.or(self.hand_off),
            hooks_config: main.hooks_config.or(self.hooks_config),
            tenant_token: main.tenant_token.or(self.tenant_token),
            update_poll_interval_seconds: main
                .update_poll_interval_seconds
                .or(self.update_poll_interval_seconds),
            inventory_poll_interval_seconds: main
                .inventory_poll_interval_seconds
                .or(self.inventory_poll_interval_seconds),
            retry_poll_interval_seconds: main
                .retry_poll_interval_seconds
                .or(self.retry_poll_interval_seconds),
            retry_poll_count: main.retry_poll_count.or(self.retry_poll_count),
            update_control_map_expiration_time_seconds: main
                .update_control_map_expiration_time_seconds
                .or(self.update_control_map_expiration_time_seconds),
            update_control_map_boot_expiration_time_seconds: main
                .update_control_map_boot_expiration_time_seconds
                .or(self.update_control_map_boot_expiration_time_seconds),
            state_script_timeout_seconds: main
                .state_script_timeout_seconds
                .or(self.state_script_timeout_seconds),
            module_timeout_seconds: main.module_timeout_seconds.or(self.module_timeout_seconds),
            state_script_retry_timeout_seconds: main
                .state_script_retry_timeout_seconds
                .or(self.state_script_retry_timeout_seconds),
            state_script_retry_interval_seconds: main
                .state_script_retry_interval_seconds
                .or(self.state_script_retry_interval_seconds),
            daemon_log_level: main.daemon_log_level.or(self.daemon_log_level),
            security: main.security.or(self.security),
            https_client: main.https_client.or(self.https_client),
            dbus: main.dbus.or(self.dbus),
            device_key_type: main.device_key_type.or(self.device_key_type),
            fw_env_config: main.fw_env_config.or(self.fw_env_config),
            grub_env_dir: main.grub_env_dir.or(self.grub_env_dir),
        };
        merged.validate()?;
        Ok(merged)
    }

    /// Every configured artifact verification key path, in order.
    pub fn verify_key_paths(&self) -> impl Iterator<Item = &str> {
        self.artifact_verify_key
            .iter()
            .chain(self.artifact_verify_keys.iter().flatten())
            .map(String::as_str)
    }

    /// `UpdatePollIntervalSeconds` or its default (1800).
    pub fn update_poll_interval(&self) -> u32 {
        self.update_poll_interval_seconds.unwrap_or(1800)
    }

    /// `InventoryPollIntervalSeconds` or its default (1800).
    pub fn inventory_poll_interval(&self) -> u32 {
        self.inventory_poll_interval_seconds.unwrap_or(1800)
    }

    /// `UpdateControlMapExpirationTimeSeconds` or its default, twice
    /// [`Self::update_poll_interval`] (0 also means the default, as in the
    /// reference; which doubles the raw `UpdatePollIntervalSeconds`, 0 when
    /// unset, where this doubles the effective interval).
    pub fn update_control_map_expiration(&self) -> u32 {
        match self.update_control_map_expiration_time_seconds {
            Some(0) | None => self.update_poll_interval().saturating_mul(2),
            Some(seconds) => seconds,
        }
    }

    /// `UpdateControlMapBootExpirationTimeSeconds` or its default (600; 0
    /// also means the default, as in the reference): the expiration given
    /// to the maps reloaded at start-up.
    pub fn update_control_map_boot_expiration(&self) -> u32 {
        match self.update_control_map_boot_expiration_time_seconds {
            Some(0) | None => crate::agent::control_map::DEFAULT_BOOT_EXPIRATION_SECS,
            Some(seconds) => seconds,
        }
    }

    /// `RetryPollIntervalSeconds` or its default (300).
    pub fn retry_poll_interval(&self) -> u32 {
        self.retry_poll_interval_seconds.unwrap_or(300)
    }

    /// `DBus.Enabled` or its default (`true`).
    pub fn dbus_enabled(&self) -> bool {
        self.dbus.as_ref().and_then(|d| d.enabled).unwrap_or(true)
    }

    /// `StateScriptTimeoutSeconds` or its default (3600).
    pub fn state_script_timeout(&self) -> u32 {
        self.state_script_timeout_seconds.unwrap_or(3600)
    }

    /// `ModuleTimeoutSeconds` or its default (14400, also for 0, as the
    /// reference).
    pub fn module_timeout(&self) -> u32 {
        match self.module_timeout_seconds {
            Some(seconds) if seconds > 0 => seconds,
            _ => 14400,
        }
    }

    /// `StateScriptRetryTimeoutSeconds` or its default (1800).
    pub fn state_script_retry_timeout(&self) -> u32 {
        self.state_script_retry_timeout_seconds.unwrap_or(1800)
    }

    /// `StateScriptRetryIntervalSeconds` or its default (60).
    pub fn state_script_retry_interval(&self) -> u32 {
        self.state_script_retry_interval_seconds.unwrap_or(60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    fn parse(text: &str) -> Result<MenderConfig, ConfigError> {
        let mut scratch = [0u8; MAX_CONFIG_LEN];
        MenderConfig::parse(text.as_bytes(), &mut scratch)
    }

    #[test]
    fn keys_are_case_insensitive_and_unknown_ignored() {
        let config = parse(
            r#"{"rootfsparta":"/dev/mmcblk0p2","ROOTFSPARTB":"/dev/mmcblk0p3",
               "UpdatePollIntervalSeconds": 5, "Unknown": {"a":[1,2]},
               "ArtifactVerifyKeys":["/etc/k1.pem","/etc\/k2.pem"], "SkipVerify": true}"#,
        )
        .unwrap();
        assert_eq!(config.rootfs_part_a.as_deref(), Some("/dev/mmcblk0p2"));
        assert_eq!(config.rootfs_part_b.as_deref(), Some("/dev/mmcblk0p3"));
        assert_eq!(config.update_poll_interval(), 5);
        assert_eq!(config.inventory_poll_interval(), 1800);
        assert_eq!(
            config.verify_key_paths().collect::<std::vec::Vec<_>>(),
            ["/etc/k1.pem", "/etc/k2.pem"]
        );
        assert_eq!(config.skip_verify, Some(true));
    }

    #[test]
    fn values_keep_their_case() {
        let config = parse(r#"{"ServerURL": "https://Hosted.Mender.io"}"#).unwrap();
        assert_eq!(
            config.server_url.as_deref(),
            Some("https://Hosted.Mender.io")
        );
    }

    fn message(text: &str) -> std::string::String {
        std::string::ToString::to_string(&parse(text).unwrap_err())
    }

    #[test]
    fn syntax_errors_say_where() {
        assert_eq!(
            message("{\n  \"RootfsPartA\": \"/dev/x\", bad\n}"),
            "syntax error at line 2, column 28: expected a string key (found 'b')"
        );
        assert_eq!(
            message("{"),
            "syntax error at line 1, column 2: expected a string key (found the end of the file)"
        );
        assert_eq!(
            message("{\"a\": 1,\n\"b\": [1 2]}"),
            "syntax error at line 2, column 9: expected ',' or ']' in a list (found '2')"
        );
        assert_eq!(
            message("[]"),
            "syntax error at line 1, column 1: the configuration must be a JSON object ('{ ... }') (found '[')"
        );
        assert_eq!(
            message("{} x"),
            "syntax error at line 1, column 4: unexpected text after the configuration object (found 'x')"
        );
        assert_eq!(
            message("{\"a\": \"x\ty\"}"),
            "syntax error at line 1, column 9: control character in a string (escape it) (found byte 0x09)"
        );
        assert!(message("{\"a\": tru}").contains("column 7: expected a value"));
        let deep = format!("{{\"a\": {}}}", "[".repeat(10_000));
        assert!(
            message(&deep).contains("nested too deeply"),
            "{}",
            message(&deep)
        );
    }

    #[test]
    fn value_errors_name_the_field() {
        assert_eq!(
            message("{\"Unknown\": [1],\n \"updatePollIntervalSeconds\": \"x\"}"),
            "UpdatePollIntervalSeconds (line 2, column 31) must be a whole number from 0 to 4294967295"
        );
        let negative = message(r#"{"RetryPollCount": -1}"#);
        assert!(
            negative.starts_with("RetryPollCount (line 1, column 20) must be"),
            "{negative}"
        );
        let long = "x".repeat(300);
        assert!(message(&format!(r#"{{"RootfsPartA": "{long}"}}"#))
            .starts_with("RootfsPartA (line 1, column 17) must be a string of at most 256 bytes"));
        assert!(message(r#"{"Security": {"AuthPrivateKey": 1}}"#)
            .starts_with("Security (line 1, column 14)"));
        assert!(message(r#"{"SkipVerify": "yes"}"#).contains("true or false"));
    }

    #[test]
    fn list_capacities() {
        let keys = |n: usize| {
            let list: std::vec::Vec<std::string::String> = (0..n)
                .map(|i| format!("\"/etc/mender/key{i}.pem\""))
                .collect();
            format!("{{\"ArtifactVerifyKeys\": [{}]}}", list.join(","))
        };
        assert_eq!(parse(&keys(5)).unwrap().verify_key_paths().count(), 5);
        assert_eq!(
            parse(&keys(MAX_LIST_LEN))
                .unwrap()
                .verify_key_paths()
                .count(),
            MAX_LIST_LEN
        );
        assert_eq!(
            message(&keys(MAX_LIST_LEN + 1)),
            "ArtifactVerifyKeys (line 1, column 24) has 17 entries; otalite supports at most 16"
        );
        let servers: std::vec::Vec<std::string::String> = (0..17)
            .map(|i| format!("{{\"ServerURL\": \"https://s{i}\"}}"))
            .collect();
        assert!(
            message(&format!("{{\"Servers\": [{}]}}", servers.join(",")))
                .contains("has 17 entries; otalite supports at most 16")
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse(r#"{"ArtifactVerifyKey":"a","ArtifactVerifyKeys":["b"]}"#),
            Err(ConfigError::BothVerifyKeyForms)
        );
        assert_eq!(
            parse(r#"{"RootfsPartA":"/a","RootfsPartB":"/a"}"#),
            Err(ConfigError::SamePartitions)
        );
        assert_eq!(parse("{}").unwrap(), MenderConfig::default());
        assert_eq!(parse("  {}  \n").unwrap(), MenderConfig::default());
    }

    #[test]
    fn nested_objects() {
        let config = parse(r#"{"Security": {"AuthPrivateKey": "/data/key.pem"}, "HttpsClient": {"Certificate": "/c.pem", "KEY": "/k.pem"}, "DeviceKeyType": "rsa3072"}"#).unwrap();
        assert_eq!(
            config.security.unwrap().auth_private_key.as_deref(),
            Some("/data/key.pem")
        );
        assert_eq!(config.https_client.unwrap().key.as_deref(), Some("/k.pem"));
        assert_eq!(config.device_key_type.as_deref(), Some("rsa3072"));
    }

    #[test]
    fn main_wins_over_fallback() {
        let fallback =
            parse(r#"{"RootfsPartA":"/dev/a","RootfsPartB":"/dev/b","ArtifactVerifyKey":"/k"}"#)
                .unwrap();
        let main = parse(r#"{"RootfsPartB":"/dev/c","ArtifactVerifyKeys":["/k2"]}"#).unwrap();
        let merged = fallback.merge(main).unwrap();
        assert_eq!(merged.rootfs_part_a.as_deref(), Some("/dev/a"));
        assert_eq!(merged.rootfs_part_b.as_deref(), Some("/dev/c"));
        assert_eq!(
            merged.verify_key_paths().collect::<std::vec::Vec<_>>(),
            ["/k2"]
        );
    }

    proptest::proptest! {
        /// Any bytes: an answer, never a panic; a syntax error's position
        /// lies within the text (or just past its end).
        #[test]
        fn any_input_is_answered(text in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Err(ConfigError::Syntax { line, column, .. }) = parse_bytes(&text) {
                let lines = text.iter().filter(|&&b| b == b'\n').count() + 1;
                proptest::prop_assert!(line as usize <= lines);
                proptest::prop_assert!(column as usize <= text.len() + 1);
            }
        }

        /// JSON-shaped text (the bytes a real config is made of).
        #[test]
        fn json_like_input_is_answered(text in "[{}\\[\\]\",: a-zA-Z0-9\\\\\n-]{0,200}") {
            let _ = parse_bytes(text.as_bytes());
        }
    }

    fn parse_bytes(text: &[u8]) -> Result<MenderConfig, ConfigError> {
        let mut scratch = [0u8; MAX_CONFIG_LEN];
        MenderConfig::parse(text, &mut scratch)
    }
}
