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
//! | `StateScriptTimeoutSeconds` | int | 3600 |
//! | `StateScriptRetryTimeoutSeconds` | int | 1800 |
//! | `StateScriptRetryIntervalSeconds` | int | 60 |
//! | `DaemonLogLevel` | string | none |
//! | `Security.AuthPrivateKey` | path | none (a key is generated in `<DATA>`) |
//! | `HttpsClient.Certificate`, `HttpsClient.Key` | paths | none |
//! | `DeviceKeyType` (otalite) | `ed25519` / `ecdsa-p256` / `rsa3072` | `ed25519` |
//! | `FwEnvConfig` (otalite) | path | `/etc/fw_env.config` |
//! | `GrubEnvDir` (otalite) | path | searched as grub-mender-grubenv does |

use heapless::{String, Vec};

/// Longest path or URL kept from the configuration.
pub const MAX_PATH_LEN: usize = 256;
/// Most entries in `ArtifactVerifyKeys` and `Servers`.
pub const MAX_LIST_LEN: usize = 4;
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
    #[serde(rename = "statescripttimeoutseconds")]
    pub state_script_timeout_seconds: Option<u32>,
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

/// Why a configuration file was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file is larger than [`MAX_CONFIG_LEN`].
    TooLarge,
    /// Not valid JSON for the expected types (or a value over capacity),
    /// near this byte offset.
    Syntax(usize),
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
            Self::Syntax(at) => write!(f, "invalid JSON or value out of range near byte {at}"),
            Self::BothVerifyKeyForms => {
                f.write_str("both ArtifactVerifyKey and ArtifactVerifyKeys are set; use one")
            }
            Self::BothServerForms => f.write_str("both ServerURL and Servers are set; use one"),
            Self::SamePartitions => f.write_str("RootfsPartA and RootfsPartB must differ"),
        }
    }
}

impl core::error::Error for ConfigError {}

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
        let (mut config, _) = serde_json_core::from_slice::<Self>(json)
            .map_err(|_| ConfigError::Syntax(first_difference_hint(json)))?;
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
            state_script_timeout_seconds: main
                .state_script_timeout_seconds
                .or(self.state_script_timeout_seconds),
            state_script_retry_timeout_seconds: main
                .state_script_retry_timeout_seconds
                .or(self.state_script_retry_timeout_seconds),
            state_script_retry_interval_seconds: main
                .state_script_retry_interval_seconds
                .or(self.state_script_retry_interval_seconds),
            daemon_log_level: main.daemon_log_level.or(self.daemon_log_level),
            security: main.security.or(self.security),
            https_client: main.https_client.or(self.https_client),
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

    /// `RetryPollIntervalSeconds` or its default (300).
    pub fn retry_poll_interval(&self) -> u32 {
        self.retry_poll_interval_seconds.unwrap_or(300)
    }

    /// `StateScriptTimeoutSeconds` or its default (3600).
    pub fn state_script_timeout(&self) -> u32 {
        self.state_script_timeout_seconds.unwrap_or(3600)
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

/// A rough position for syntax errors: serde-json-core does not report one,
/// so point at the first byte that is not part of a plausible JSON text.
fn first_difference_hint(json: &[u8]) -> usize {
    json.iter()
        .position(|&b| !(b.is_ascii_graphic() || b.is_ascii_whitespace() || b >= 0x80))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn errors() {
        assert!(matches!(parse("{"), Err(ConfigError::Syntax(_))));
        assert!(matches!(
            parse(r#"{"RootfsPartA": 5}"#),
            Err(ConfigError::Syntax(_))
        ));
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
}
