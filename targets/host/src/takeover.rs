//! Taking a device over from the reference client (`mender` 3.x): on
//! otalite's first start, what the reference kept in its store
//! (`<DATA>/mender-store`, LMDB, read with [`crate::lmdb`]) becomes
//! otalite's own state record (`<DATA>/otalite.state`, written atomically).
//! The reference's files are opened read-only and never changed, so the
//! old binary still works if a device maker swaps back.
//!
//! It runs only when otalite has no state record yet and the store exists.
//! An unreadable or damaged store is a warning: otalite then starts as on
//! a fresh device (the name from `artifact_info`).
//!
//! Keys read (values as the reference 3.4 writes them):
//!
//! | key | value | becomes |
//! |---|---|---|
//! | `artifact-name` | the committed artifact name (plain text) | `installed.artifact_name` (absent: `/etc/mender/artifact_info`, as the reference) |
//! | `artifact-group` | the committed group (plain text) | `installed.artifact_group` |
//! | `artifact-provides` | JSON object of the committed type-info provides | `installed.provides` |
//! | `standalone-state` | JSON: `Version`, `ArtifactName`, `ArtifactGroup`, `ArtifactTypeInfoProvides`, `ArtifactClearsProvides`, `PayloadTypes` (an install not yet committed) | step `Installed`: `otalite commit` / `rollback` finish it |
//! | `state` (or `state-uncommitted` for the same deployment when `state` is an older schema) | JSON: `Version`, `Name` (the daemon's state), `UpdateInfo` (`ID` = deployment id, `Artifact` with `artifact_name`, `artifact_group`, `artifact_provides`, `clears_artifact_provides`, `SupportsRollback`, `StateDataStoreCount`) | a managed step, see below |
//!
//! The daemon's state, mapped as the reference's own restart handles it
//! (`initState.getNextState` in 3.4):
//!
//! | reference state | reference after restart | otalite step |
//! |---|---|---|
//! | `update-fetch`, `status-report-error` | idle | `Idle` |
//! | `reboot` | verify the reboot: commit and `success`, or roll back and `failure` | `Rebooting` |
//! | `rollback-reboot`, `verify-rollback-reboot`, `after-rollback-reboot` | verify the rollback, `failure` | `RollingBack` |
//! | `update-after-first-commit`, `update-after-commit` | finish the commit, `success` | `Reporting(success)` |
//! | `update-store`, `update-after-store`, `update-error`, `cleanup`, `update-status-report`, `update-retry-report` | report `failure` | `Reporting(failure)` |
//! | any other | roll back if the update supports it, `failure` | `RollingBack` (rollback supported) or `Reporting(failure)` |
//!
//! Not carried: the auth token (otalite authenticates again with the same
//! device key, `<DATA>/mender-agent.pem`, which both clients use unchanged),
//! update control maps (otalite does not implement them) and the
//! reference's deployment log files.

use crate::lmdb::{Lmdb, LmdbError};
use crate::paths::Paths;
use crate::slot::SlotLayout;
use crate::state::{self, STATE_FILE};
use otalite::artifact::{ArtifactHeader, MAX_CLEARS_LEN};
use otalite::board::{BootState, PartNumber};
use otalite::config::MenderConfig;
use otalite::device::{parse_artifact_info, provide, Name, Provides};
use otalite::store::{DeploymentId, FinalReport, PendingUpdate, StateRecord, UpdateStep};
use std::path::PathBuf;

/// The reference's store file name in the data directory.
pub const REFERENCE_STORE: &str = "mender-store";

/// What [`take_over`] did.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// otalite already has its record, or there is no reference store.
    NotNeeded,
    /// The store holds nothing to carry (the reference never installed).
    NothingStored,
    /// The record was written from the store.
    TookOver(Box<StateRecord>),
    /// The store could not be used (logged as a warning).
    Failed(String),
}

/// A JSON object of strings (provides), in the order written. Own
/// `Deserialize`: serde-json-core reads object keys only through
/// `deserialize_str` (its `deserialize_string` on a key is unreachable), and
/// a `Vec` keeps the binary free of a `BTreeMap` instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct StringMap(Vec<(String, String)>);

impl StringMap {
    fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// An object key, read with `deserialize_str`.
struct Key(String);

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string key")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Key, E> {
                Ok(Key(value.to_string()))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl<'de> serde::Deserialize<'de> for StringMap {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StringMap;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<StringMap, A::Error> {
                let mut out = Vec::new();
                while let Some((Key(key), value)) = map.next_entry::<Key, String>()? {
                    out.retain(|(k, _): &(String, String)| *k != key);
                    out.push((key, value));
                }
                Ok(StringMap(out))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// `standalone-state`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StandaloneState {
    #[serde(default)]
    artifact_name: String,
    #[serde(default)]
    artifact_group: String,
    #[serde(default)]
    artifact_type_info_provides: Option<StringMap>,
    #[serde(default)]
    artifact_clears_provides: Option<Vec<String>>,
}

/// `state` / `state-uncommitted`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StateData {
    #[serde(default)]
    version: i64,
    name: String,
    update_info: UpdateInfo,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateInfo {
    #[serde(default)]
    artifact: Artifact,
    #[serde(default, rename = "ID")]
    id: String,
    #[serde(default)]
    supports_rollback: String,
    #[serde(default)]
    state_data_store_count: u32,
}

#[derive(Default, serde::Deserialize)]
struct Artifact {
    #[serde(default)]
    artifact_name: String,
    #[serde(default)]
    artifact_group: String,
    #[serde(default)]
    artifact_provides: Option<StringMap>,
    #[serde(default)]
    clears_artifact_provides: Option<Vec<String>>,
}

/// The artifact an update was installing, as [`Provides::after_commit`]
/// takes it.
fn header(
    name: &str,
    group: &str,
    provides: Option<&StringMap>,
    clears: Option<&Vec<String>>,
) -> Result<ArtifactHeader, String> {
    let mut header = ArtifactHeader {
        artifact_name: Name::try_from(name)
            .map_err(|_| format!("artifact name {name:?} is too long"))?,
        ..ArtifactHeader::default()
    };
    if !group.is_empty() {
        header.artifact_group = Some(
            Name::try_from(group).map_err(|_| format!("artifact group {group:?} is too long"))?,
        );
    }
    for (key, value) in provides.into_iter().flat_map(StringMap::iter) {
        let entry = provide(key, value).ok_or_else(|| format!("provide {key} is too long"))?;
        header
            .provides
            .push(entry)
            .map_err(|_| "too many provides".to_string())?;
    }
    if let Some(clears) = clears {
        let list = header.clears_provides.get_or_insert_with(Default::default);
        for pattern in clears {
            list.push(pattern.as_str()).map_err(|_| {
                format!("clears_artifact_provides pattern {pattern:?} does not fit (limit: {MAX_CLEARS_LEN} bytes in all)")
            })?;
        }
    }
    Ok(header)
}

/// Reads the reference's store and, when otalite has no record yet, writes
/// otalite's record from it. `boot_state` reads the bootloader environment
/// (called only when an update is pending: it tells which slot is on trial).
///
/// Never fails the caller: problems are logged and returned.
pub fn take_over(
    paths: &Paths,
    boot_state: impl FnOnce(&MenderConfig) -> Result<BootState, String>,
) -> Outcome {
    let record_path = paths.data_dir.join(STATE_FILE);
    let store_path = paths.data_dir.join(REFERENCE_STORE);
    if std::fs::symlink_metadata(&record_path).is_ok() || !store_path.is_file() {
        return Outcome::NotNeeded;
    }
    match carry(paths, &store_path, boot_state) {
        Ok(None) => {
            log::debug!(
                "the reference's store {} holds no installed artifact: nothing to take over",
                store_path.display()
            );
            Outcome::NothingStored
        }
        Ok(Some(record)) => {
            if let Err(error) = state::save(&paths.data_dir, &record) {
                log::warn!("taking over from mender: {error}");
                return Outcome::Failed(error.to_string());
            }
            log_carried(&store_path, &record);
            Outcome::TookOver(Box::new(record))
        }
        Err(message) => {
            log::warn!(
                "cannot take over from the reference's store {} (left unchanged; starting as a fresh device): {message}",
                store_path.display()
            );
            Outcome::Failed(message)
        }
    }
}

fn log_carried(store: &std::path::Path, record: &StateRecord) {
    let mut provides = Vec::new();
    record
        .installed
        .for_each_sorted(|k, v| provides.push(format!("{k}={v}")));
    log::info!(
        "took over from mender ({}): installed {} ({})",
        store.display(),
        record.installed.artifact_name,
        provides.join(", ")
    );
    let pending = |what: &str, p: &PendingUpdate| {
        log::info!(
            "took over from mender: {what} {} on partition {} (previous {}){}",
            p.provides.artifact_name,
            p.trial_part,
            p.previous_part,
            p.deployment_id
                .as_ref()
                .map(|id| format!(", deployment {id}"))
                .unwrap_or_default()
        );
    };
    match &record.step {
        UpdateStep::Installed(p) => pending("update installed, not committed:", p),
        UpdateStep::Rebooting(p) => pending("deployment rebooted into", p),
        UpdateStep::RollingBack(p) => pending("deployment rolling back:", p),
        UpdateStep::Reporting(r) => log::info!(
            "took over from mender: deployment {} ends with status {}",
            r.deployment_id,
            if r.success { "success" } else { "failure" }
        ),
        _ => {}
    }
}

/// Decodes a JSON value of the store (Go's `encoding/json` output: `\u`
/// escapes unescaped) with the core's serde-json-core, already in the
/// binary for the configuration.
fn json<T: serde::de::DeserializeOwned>(bytes: &[u8], key: &str) -> Result<T, String> {
    let mut scratch = vec![0u8; bytes.len()];
    serde_json_core::from_slice_escaped(bytes, &mut scratch)
        .map(|(value, _)| value)
        .map_err(|e| format!("{key}: {e}"))
}

fn text(value: &[u8], key: &str) -> Result<String, String> {
    String::from_utf8(value.to_vec()).map_err(|_| format!("{key} is not UTF-8"))
}

/// The record the store describes; `None` when it holds nothing to carry.
fn carry(
    paths: &Paths,
    store_path: &std::path::Path,
    boot_state: impl FnOnce(&MenderConfig) -> Result<BootState, String>,
) -> Result<Option<StateRecord>, String> {
    let store = Lmdb::open(store_path).map_err(|e: LmdbError| e.to_string())?;
    let entries = store.entries().map_err(|e| e.to_string())?;
    let get = |key: &str| {
        entries
            .iter()
            .find(|(k, _)| k == key.as_bytes())
            .map(|(_, v)| v)
    };

    let stored_name = get("artifact-name")
        .map(|v| text(v, "artifact-name"))
        .transpose()?;
    let standalone = get("standalone-state")
        .map(|v| json::<StandaloneState>(v, "standalone-state"))
        .transpose()?;
    let daemon = daemon_state(get("state"), get("state-uncommitted"))?;
    if stored_name.is_none() && standalone.is_none() && daemon.is_none() {
        return Ok(None);
    }

    let name = match stored_name {
        Some(name) => name,
        None => std::fs::read(paths.artifact_info())
            .ok()
            .and_then(|t| parse_artifact_info(&t).ok().map(|n| n.to_string()))
            .unwrap_or_else(|| "unknown".to_string()),
    };
    let mut installed = Provides::named(&name);
    if let Some(group) = get("artifact-group") {
        let group = text(group, "artifact-group")?;
        if !group.is_empty() {
            installed.artifact_group =
                Some(Name::try_from(group.as_str()).map_err(|_| "artifact-group is too long")?);
        }
    }
    if let Some(json_text) = get("artifact-provides") {
        let map: StringMap = json(json_text, "artifact-provides")?;
        for (key, value) in map.iter() {
            if key == "artifact_name" || key == "artifact_group" {
                continue;
            }
            let entry = provide(key, value).ok_or_else(|| format!("provide {key} is too long"))?;
            installed
                .provides
                .push(entry)
                .map_err(|_| "too many provides".to_string())?;
        }
    }

    let mut record = StateRecord {
        installed,
        ..StateRecord::default()
    };
    if let Some(standalone) = standalone {
        let header = header(
            &standalone.artifact_name,
            &standalone.artifact_group,
            standalone.artifact_type_info_provides.as_ref(),
            standalone.artifact_clears_provides.as_ref(),
        )?;
        let (trial_part, previous_part) = parts(paths, boot_state)?;
        record.step = UpdateStep::Installed(PendingUpdate {
            provides: record.installed.after_commit(&header),
            trial_part,
            previous_part,
            deployment_id: None,
        });
        record.store_count = 1;
    } else if let Some(daemon) = daemon {
        record.step = daemon_step(paths, &record.installed, &daemon, boot_state)?;
        record.store_count = daemon.update_info.state_data_store_count.max(1);
    }
    Ok(Some(record))
}

/// `state`, or `state-uncommitted` for the same deployment when `state` is
/// an older schema (as the reference's `LoadStateData`).
fn daemon_state(
    state: Option<&Vec<u8>>,
    uncommitted: Option<&Vec<u8>>,
) -> Result<Option<StateData>, String> {
    let Some(state) = state else {
        return Ok(None);
    };
    let data: StateData = json(state, "state")?;
    if data.version < 2 {
        if let Some(newer) = uncommitted
            .and_then(|bytes| json::<StateData>(bytes, "state-uncommitted").ok())
            .filter(|newer| newer.update_info.id == data.update_info.id)
        {
            return Ok(Some(newer));
        }
    }
    Ok(Some(data))
}

fn daemon_step(
    paths: &Paths,
    installed: &Provides,
    data: &StateData,
    boot_state: impl FnOnce(&MenderConfig) -> Result<BootState, String>,
) -> Result<UpdateStep, String> {
    let info = &data.update_info;
    let id = DeploymentId::try_from(info.id.as_str())
        .map_err(|_| format!("deployment id {:?} is too long", info.id))?;
    let report = |success| {
        UpdateStep::Reporting(FinalReport {
            deployment_id: id.clone(),
            success,
            attempts: 0,
        })
    };
    Ok(match data.name.as_str() {
        "update-fetch" | "status-report-error" => UpdateStep::Idle,
        "reboot" => UpdateStep::Rebooting(pending(paths, installed, info, &id, boot_state)?),
        "rollback-reboot" | "verify-rollback-reboot" | "after-rollback-reboot" => {
            UpdateStep::RollingBack(pending(paths, installed, info, &id, boot_state)?)
        }
        "update-after-first-commit" | "update-after-commit" => report(true),
        "update-store"
        | "update-after-store"
        | "update-error"
        | "cleanup"
        | "update-status-report"
        | "update-retry-report" => report(false),
        _ if info.supports_rollback == "rollback-supported" => {
            UpdateStep::RollingBack(pending(paths, installed, info, &id, boot_state)?)
        }
        _ => report(false),
    })
}

/// The update a deployment was installing.
fn pending(
    paths: &Paths,
    installed: &Provides,
    info: &UpdateInfo,
    id: &DeploymentId,
    boot_state: impl FnOnce(&MenderConfig) -> Result<BootState, String>,
) -> Result<PendingUpdate, String> {
    let artifact = &info.artifact;
    let header = header(
        &artifact.artifact_name,
        &artifact.artifact_group,
        artifact.artifact_provides.as_ref(),
        artifact.clears_artifact_provides.as_ref(),
    )?;
    let (trial_part, previous_part) = parts(paths, boot_state)?;
    Ok(PendingUpdate {
        provides: installed.after_commit(&header),
        trial_part,
        previous_part,
        deployment_id: Some(id.clone()),
    })
}

/// `(trial, previous)`: the slot the reference switched to and the one it
/// came from. With `upgrade_available=1` the trial is `mender_boot_part`;
/// without it the bootloader already went back (or the switch never
/// happened), so `mender_boot_part` is the previous slot.
fn parts(
    paths: &Paths,
    boot_state: impl FnOnce(&MenderConfig) -> Result<BootState, String>,
) -> Result<(PartNumber, PartNumber), String> {
    let config = paths.load_config().map_err(|e| e.to_string())?;
    let layout = SlotLayout::new(
        config.rootfs_part_a.as_deref(),
        config.rootfs_part_b.as_deref(),
    )
    .map_err(|e| e.to_string())?;
    let boot = boot_state(&config)?;
    let boot_part = boot
        .boot_part
        .filter(|part| layout.path_of(*part).is_some())
        .ok_or_else(|| "mender_boot_part does not name a rootfs slot".to_string())?;
    Ok(if boot.upgrade_available {
        (boot_part, layout.other(boot_part))
    } else {
        (layout.other(boot_part), boot_part)
    })
}

/// The store's path for `paths` (for messages and tests).
pub fn store_path(paths: &Paths) -> PathBuf {
    paths.data_dir.join(REFERENCE_STORE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A data dir holding the fixture store `store` (written by the real
    /// mender 3.4), slots p2/p3, `artifact_info` naming `release-1`.
    struct Setup {
        dir: PathBuf,
        paths: Paths,
    }

    impl Drop for Setup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn setup(store: &str) -> Setup {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "otalite-takeover-{}-{n}-{store}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let (data, etc) = (dir.join("data"), dir.join("etc"));
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/lmdb")
                .join(store),
            data.join(REFERENCE_STORE),
        )
        .unwrap();
        std::fs::write(
            etc.join("mender.conf"),
            r#"{"RootfsPartA": "/dev/mmcblk0p2", "RootfsPartB": "/dev/mmcblk0p3"}"#,
        )
        .unwrap();
        std::fs::write(etc.join("artifact_info"), "artifact_name=release-1\n").unwrap();
        let paths = Paths {
            config: etc.join("mender.conf"),
            fallback_config: data.join("mender.conf"),
            data_dir: data,
            conf_dir: etc.clone(),
            share_dir: etc,
        };
        Setup { dir, paths }
    }

    fn boot(
        part: PartNumber,
        upgrade_available: bool,
    ) -> impl FnOnce(&MenderConfig) -> Result<BootState, String> {
        move |_| {
            Ok(BootState {
                boot_part: Some(part),
                upgrade_available,
                bootcount: Some(1),
            })
        }
    }

    fn took_over(outcome: Outcome) -> StateRecord {
        match outcome {
            Outcome::TookOver(record) => *record,
            other => panic!("expected a take-over, got {other:?}"),
        }
    }

    #[test]
    fn a_rebooted_deployment_becomes_rebooting_once() {
        let setup = setup("daemon-reboot.mdb");
        let record = took_over(take_over(&setup.paths, boot(3, true)));
        assert_eq!(record.installed, Provides::named("release-1"));
        let UpdateStep::Rebooting(pending) = &record.step else {
            panic!("{:?}", record.step);
        };
        assert_eq!((pending.trial_part, pending.previous_part), (3, 2));
        assert_eq!(
            pending.deployment_id.as_deref(),
            Some("2f6f1aaa-8de3-4f46-aff2-3496d8696892")
        );
        assert_eq!(pending.provides.artifact_name, "release-2");
        assert_eq!(
            pending.provides.get("rootfs-image.version"),
            Some("release-2")
        );
        assert_eq!(record.store_count, 5);
        assert_eq!(state::load(&setup.paths.data_dir).unwrap(), Some(record));
        // Once: otalite's own record is there now.
        assert!(matches!(
            take_over(&setup.paths, |_| panic!("not read")),
            Outcome::NotNeeded
        ));
    }

    #[test]
    fn after_a_fallback_the_trial_is_the_other_slot() {
        let setup = setup("daemon-reboot.mdb");
        let record = took_over(take_over(&setup.paths, boot(2, false)));
        let UpdateStep::Rebooting(pending) = &record.step else {
            panic!("{:?}", record.step);
        };
        assert_eq!((pending.trial_part, pending.previous_part), (3, 2));
    }

    #[test]
    fn a_rollback_reboot_becomes_rolling_back() {
        let setup = setup("daemon-rollback-reboot.mdb");
        let record = took_over(take_over(&setup.paths, boot(2, false)));
        assert!(
            matches!(&record.step, UpdateStep::RollingBack(p) if p.deployment_id.is_some()),
            "{:?}",
            record.step
        );
    }

    #[test]
    fn a_standalone_install_becomes_installed() {
        let setup = setup("standalone-installed.mdb");
        let record = took_over(take_over(&setup.paths, boot(3, true)));
        let UpdateStep::Installed(pending) = &record.step else {
            panic!("{:?}", record.step);
        };
        assert_eq!(pending.deployment_id, None);
        assert_eq!((pending.trial_part, pending.previous_part), (3, 2));
        assert_eq!(pending.provides.get("rootfs-image.custom"), Some("foo"));
    }

    #[test]
    fn a_committed_store_needs_no_boot_env() {
        let setup = setup("committed.mdb");
        let record = took_over(take_over(&setup.paths, |_| panic!("not read")));
        assert_eq!(record.step, UpdateStep::Idle);
        assert_eq!(record.installed.artifact_name, "release-2");
        assert_eq!(record.installed.get("rootfs-image.custom"), Some("foo"));
    }

    #[test]
    fn a_foreign_file_is_a_warning_and_writes_nothing() {
        let setup = setup("committed.mdb");
        std::fs::write(setup.paths.data_dir.join(REFERENCE_STORE), b"junk").unwrap();
        assert!(matches!(
            take_over(&setup.paths, |_| panic!("not read")),
            Outcome::Failed(_)
        ));
        assert_eq!(state::load(&setup.paths.data_dir).unwrap(), None);
    }

    /// The reference's restart handling, state by state.
    #[test]
    fn daemon_states_map_as_the_reference_restarts_them() {
        let setup = setup("committed.mdb");
        let installed = Provides::named("release-1");
        let step = |name: &str, rollback: &str| {
            let json_text = format!(
                r#"{{"Version":2,"Name":"{name}","UpdateInfo":{{"ID":"d1","SupportsRollback":"{rollback}","Artifact":{{"artifact_name":"release-2"}}}}}}"#
            );
            let data: StateData = json(json_text.as_bytes(), "test").unwrap();
            daemon_step(&setup.paths, &installed, &data, boot(3, true)).unwrap()
        };
        let report = |success| {
            UpdateStep::Reporting(FinalReport {
                deployment_id: DeploymentId::try_from("d1").unwrap(),
                success,
                attempts: 0,
            })
        };
        assert_eq!(step("update-fetch", ""), UpdateStep::Idle);
        assert_eq!(step("update-after-commit", ""), report(true));
        assert_eq!(step("update-after-first-commit", ""), report(true));
        assert_eq!(step("update-store", "rollback-supported"), report(false));
        assert_eq!(step("cleanup", ""), report(false));
        assert_eq!(step("update-install", ""), report(false));
        assert!(matches!(step("reboot", ""), UpdateStep::Rebooting(_)));
        assert!(matches!(
            step("update-install", "rollback-supported"),
            UpdateStep::RollingBack(_)
        ));
        assert!(matches!(
            step("verify-rollback-reboot", ""),
            UpdateStep::RollingBack(_)
        ));
    }

    /// The store's JSON as Go writes it (`\u0026` in URLs, nulls, unknown
    /// members) decodes; any cut or damaged value is an error, never a
    /// panic (serde-json-core has `unreachable!` paths for some key types).
    #[test]
    fn store_json_decodes_and_damage_never_panics() {
        let state = br#"{"Version":2,"Name":"reboot","UpdateInfo":{"Artifact":{"Source":{"URI":"https://s3/x?a=1\u0026b=\"2\"","Expire":"2026"},"device_types_compatible":["t"],"PayloadTypes":null,"artifact_name":"r\u00e9lease-2","artifact_group":"","artifact_provides":{"rootfs-image.version":"2","k\u0026":"v"},"clears_artifact_provides":null},"ID":"d1","RebootRequested":null,"SupportsRollback":"rollback-supported","StateDataStoreCount":5,"HasDBSchemaUpdate":false}}"#;
        let data: StateData = json(state, "state").unwrap();
        assert_eq!(data.name, "reboot");
        assert_eq!(data.update_info.artifact.artifact_name, "r\u{e9}lease-2");
        let provides = data.update_info.artifact.artifact_provides.unwrap();
        assert!(provides.iter().any(|kv| kv == ("k&", "v")), "{provides:?}");
        let standalone = br#"{"Version":1,"ArtifactName":"a","ArtifactGroup":"","ArtifactTypeInfoProvides":{"x":"y"},"ArtifactClearsProvides":["x*"],"PayloadTypes":["rootfs-image"]}"#;
        assert!(json::<StandaloneState>(standalone, "s").is_ok());
        let odd: [&[u8]; 8] = [
            b"{1:2}",
            b"{\"a\":{\"b\":[1,{\"c\":null}]}}",
            b"[]",
            b"null",
            b"{\"Name\":5}",
            b"{\"\\ud83d\\ude00\":\"x\"}",
            b"{\"UpdateInfo\":{\"Artifact\":{\"artifact_provides\":{\"a\":1}}}}",
            b"\"\\u12\"",
        ];
        for value in odd.iter().copied().chain([&state[..], &standalone[..]]) {
            for cut in 0..=value.len() {
                let part = &value[..cut];
                let _ = json::<StateData>(part, "t");
                let _ = json::<StandaloneState>(part, "t");
                let _ = json::<StringMap>(part, "t");
            }
            for at in 0..value.len() {
                for byte in [b'"', b'{', b'}', b'[', b':', b',', b'1', b'\\', 0xFF] {
                    let mut damaged = value.to_vec();
                    damaged[at] = byte;
                    let _ = json::<StateData>(&damaged, "t");
                    let _ = json::<StandaloneState>(&damaged, "t");
                    let _ = json::<StringMap>(&damaged, "t");
                }
            }
        }
    }
}
