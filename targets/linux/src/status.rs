//! `otalite status [--json]`: what the device is doing, read-only: the
//! persisted update step, the pending deployment, the A/B slots and the
//! boot environment values the update flow uses. Every part that cannot be
//! read is shown with its error instead of failing the whole verb.

use otalite::board::BootEnv;
use otalite::config::MenderConfig;
use otalite::store::{StateRecord, UpdateStep};
use otalite_host::paths::Paths;
use otalite_host::slot::partition_number;
use otalite_host::state;
use std::fmt::Write as _;
use std::path::Path;

/// The boot environment variables shown.
const ENV_VARS: [&str; 5] = [
    "mender_boot_part",
    "mender_boot_part_hex",
    "upgrade_available",
    "bootcount",
    "bootlimit",
];

/// A JSON string literal.
fn json_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_opt(value: Option<&str>) -> String {
    value.map_or_else(|| "null".to_string(), json_string)
}

/// What the persisted step means, and its pending update.
struct Step {
    name: &'static str,
    artifact: Option<String>,
    deployment: Option<String>,
    trial_part: Option<u32>,
    previous_part: Option<u32>,
}

fn describe(step: &UpdateStep) -> Step {
    let pending = |name, p: &otalite::store::PendingUpdate| Step {
        name,
        artifact: Some(p.provides.artifact_name.to_string()),
        deployment: p.deployment_id.as_ref().map(ToString::to_string),
        trial_part: Some(p.trial_part),
        previous_part: Some(p.previous_part),
    };
    match step {
        UpdateStep::Idle => Step {
            name: "idle",
            artifact: None,
            deployment: None,
            trial_part: None,
            previous_part: None,
        },
        UpdateStep::Installed(p) => pending("installed", p),
        UpdateStep::Committing(p) => pending("committing", p),
        UpdateStep::RollingBack(p) => pending("rolling-back", p),
        UpdateStep::Rebooting(p) => pending("rebooting", p),
        UpdateStep::HandingOff(d) | UpdateStep::HandedOff(d) => Step {
            name: if matches!(step, UpdateStep::HandingOff(_)) {
                "handing-off"
            } else {
                "handed-off"
            },
            artifact: Some(d.artifact_name.to_string()),
            deployment: Some(d.deployment_id.to_string()),
            trial_part: None,
            previous_part: None,
        },
        UpdateStep::Job(job) => Step {
            name: match job.phase {
                otalite::store::JobPhase::Downloading => "job-downloading",
                otalite::store::JobPhase::Installing => "job-installing",
                otalite::store::JobPhase::Restarting => "job-restarting",
            },
            artifact: None,
            deployment: Some(job.job_id.to_string()),
            trial_part: None,
            previous_part: None,
        },
        UpdateStep::Downloading(d) => Step {
            name: "downloading",
            artifact: Some(d.artifact_name.to_string()),
            deployment: Some(d.deployment_id.to_string()),
            trial_part: None,
            previous_part: None,
        },
        UpdateStep::RollbackRebooting(r) => Step {
            name: "rollback-rebooting",
            artifact: None,
            deployment: Some(r.deployment_id.to_string()),
            trial_part: None,
            previous_part: None,
        },
        UpdateStep::Reporting(r) => Step {
            name: if r.success {
                "reporting-success"
            } else {
                "reporting-failure"
            },
            artifact: None,
            deployment: Some(r.deployment_id.to_string()),
            trial_part: None,
            previous_part: None,
        },
    }
}

/// The bootloader's kind and its variables (name, value; `None`: unset).
type EnvValues = (String, Vec<(&'static str, Option<String>)>);

/// Reads the boot environment values, or why it cannot.
fn boot_env(config: &MenderConfig) -> Result<EnvValues, String> {
    let mut env = crate::board::open_env(config)?;
    let kind = match &env {
        crate::board::AnyEnv::Uboot(_) => "u-boot",
        crate::board::AnyEnv::Grub(_) => "grub",
        crate::board::AnyEnv::None => "none",
    };
    let mut values = Vec::new();
    for name in ENV_VARS {
        let mut buffer = [0u8; 256];
        let value = env
            .read(name, &mut buffer)
            .map_err(|e| format!("cannot read {name}: {e}"))?
            .map(|len| String::from_utf8_lossy(buffer.get(..len).unwrap_or_default()).into_owned());
        values.push((name, value));
    }
    Ok((kind.to_string(), values))
}

/// Prints the status; exit 0 unless nothing could be read at all.
pub fn run(paths: &Paths, config: &MenderConfig, json: bool) -> i32 {
    let record: Result<Option<StateRecord>, String> =
        state::load(&paths.data_dir).map_err(|e| e.to_string());
    let artifact = match &record {
        Ok(Some(record)) => Some(record.installed.artifact_name.to_string()),
        _ => std::fs::read(paths.artifact_info()).ok().and_then(|t| {
            otalite::device::parse_artifact_info(&t)
                .ok()
                .map(|name| name.to_string())
        }),
    };
    let step = match &record {
        Ok(Some(record)) => Ok(describe(&record.step)),
        Ok(None) => Ok(describe(&UpdateStep::Idle)),
        Err(e) => Err(e.clone()),
    };
    let slot = |path: Option<&str>| path.map(|p| (p.to_string(), partition_number(Path::new(p))));
    let slots = [
        ("A", slot(config.rootfs_part_a.as_deref())),
        ("B", slot(config.rootfs_part_b.as_deref())),
    ];
    let env = boot_env(config);
    let boot_part: Option<u32> = env.as_ref().ok().and_then(|(_, values)| {
        values
            .iter()
            .find(|(name, _)| *name == "mender_boot_part")
            .and_then(|(_, v)| v.as_deref())
            .and_then(|v| v.trim().parse().ok())
    });
    let daemon = crate::signals::find_daemon(&paths.data_dir).map(|pid| pid.as_raw_pid());
    let mut out = String::new();
    if json {
        out.push('{');
        let _ = write!(out, "\"artifact_name\":{}", json_opt(artifact.as_deref()));
        let _ = write!(
            out,
            ",\"daemon_pid\":{}",
            daemon.as_ref().map_or("null".into(), ToString::to_string)
        );
        match &step {
            Ok(step) => {
                let _ = write!(
                    out,
                    ",\"step\":{},\"pending\":{}",
                    json_string(step.name),
                    if step.artifact.is_some() || step.deployment.is_some() {
                        format!(
                            "{{\"artifact_name\":{},\"deployment_id\":{},\"trial_part\":{},\"previous_part\":{}}}",
                            json_opt(step.artifact.as_deref()),
                            json_opt(step.deployment.as_deref()),
                            step.trial_part.map_or("null".into(), |p| p.to_string()),
                            step.previous_part.map_or("null".into(), |p| p.to_string()),
                        )
                    } else {
                        "null".to_string()
                    }
                );
            }
            Err(e) => {
                let _ = write!(out, ",\"step\":null,\"step_error\":{}", json_string(e));
            }
        }
        out.push_str(",\"slots\":[");
        for (index, (name, slot)) in slots.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            let (device, part) = match slot {
                Some((device, part)) => (Some(device.as_str()), *part),
                None => (None, None),
            };
            let _ = write!(
                out,
                "{{\"name\":\"{name}\",\"device\":{},\"partition\":{},\"boots_next\":{}}}",
                json_opt(device),
                part.map_or("null".into(), |p| p.to_string()),
                part.is_some() && part == boot_part
            );
        }
        out.push(']');
        match &env {
            Ok((kind, values)) => {
                let _ = write!(out, ",\"bootloader\":{},\"boot_env\":{{", json_string(kind));
                for (index, (name, value)) in values.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "\"{name}\":{}", json_opt(value.as_deref()));
                }
                out.push('}');
            }
            Err(e) => {
                let _ = write!(
                    out,
                    ",\"bootloader\":null,\"boot_env\":null,\"boot_env_error\":{}",
                    json_string(e)
                );
            }
        }
        out.push_str("}\n");
    } else {
        let _ = writeln!(
            out,
            "Artifact:        {}",
            artifact.as_deref().unwrap_or("(unknown)")
        );
        let _ = match &daemon {
            Ok(pid) => writeln!(out, "Daemon:          running (pid {pid})"),
            Err(why) => writeln!(out, "Daemon:          {why}"),
        };
        match &step {
            Ok(step) => {
                let _ = writeln!(out, "Update step:     {}", step.name);
                if let Some(name) = &step.artifact {
                    let _ = writeln!(out, "Pending update:  {name}");
                }
                if let Some(id) = &step.deployment {
                    let _ = writeln!(out, "Deployment:      {id}");
                }
                if let (Some(trial), Some(previous)) = (step.trial_part, step.previous_part) {
                    let _ = writeln!(out, "Trial partition: {trial} (previous {previous})");
                }
            }
            Err(e) => {
                let _ = writeln!(out, "Update step:     unreadable: {e}");
            }
        }
        for (name, slot) in &slots {
            match slot {
                Some((device, part)) => {
                    let next = if part.is_some() && *part == boot_part {
                        "  <- boots next"
                    } else {
                        ""
                    };
                    let _ = writeln!(out, "Slot {name}:          {device}{next}");
                }
                None => {
                    let _ = writeln!(out, "Slot {name}:          (RootfsPart{name} not set)");
                }
            }
        }
        match &env {
            Ok((kind, values)) => {
                let _ = writeln!(out, "Boot environment ({kind}):");
                for (name, value) in values {
                    let _ = writeln!(out, "  {name}={}", value.as_deref().unwrap_or("(unset)"));
                }
            }
            Err(e) => {
                let _ = writeln!(out, "Boot environment: unreadable: {e}");
            }
        }
    }
    print!("{out}");
    if step.is_err() && env.is_err() {
        crate::standalone::EXIT_ERROR
    } else {
        crate::standalone::EXIT_OK
    }
}
