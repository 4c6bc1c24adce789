//! Update Modules v3 in daemon (managed) mode against the reference: the
//! real `otalite daemon` and the real `mender daemon` 3.4 (Debian's
//! `mender-client`, on a `tests/refdevice/device.sh` device) go through the
//! same deployment of a module artifact, and the module calls, the state
//! scripts, the statuses the server got and the files the module wrote are
//! compared.
//!
//! The shipped modules (`/usr/share/mender/modules/v3`), unchanged, sit
//! behind a logging wrapper installed as `<share>/modules/v3/<type>` on
//! both devices: it appends `M-<state>` to the log the state scripts write
//! their names to, then execs a copy of the real module (as
//! `tests/refdevice/compare.sh` does in standalone mode). The artifacts
//! carry every `Artifact*` script; `/etc/mender/scripts` has the `Idle`,
//! `Sync` and `Download` ones.
//!
//! | case | artifact (made by) | what happens | final status |
//! |---|---|---|---|
//! | `single-file` | `single-file-artifact-gen` | install, no reboot, commit | `success` |
//! | `directory` | `directory-artifact-gen` | install, no reboot, commit | `success` |
//! | `script` | `mender-artifact write module-image -T script` | no rollback support: install, commit | `success` |
//! | `install-fails` | `single-file-artifact-gen` into a destination below a file | `ArtifactInstall` fails: rollback, failure, cleanup | `failure` |
//! | `script-fails` | `mender-artifact write module-image -T script` | the script exits 1 in `ArtifactInstall`; no rollback support: failure, cleanup, recorded as `<name>_INCONSISTENT` | `failure` |
//! | `install-interrupted` | `-T rebooter` (answering `No`) | the daemon dies (`kill -9` from the module) in the first `ArtifactInstall`; the next start rolls back through the module | `failure` |
//! | `reboot-automatic` | `mender-artifact write module-image -T rebooter` | a test module answering `NeedsArtifactReboot` with `Automatic`: the device reboots, then verify and commit | `success` |
//! | `reboot-yes` | same, `-T rebooter` answering `Yes` | the module's own `ArtifactReboot`, then verify and commit | `success` |
//!
//! # What is compared
//!
//! * the log from the first `Download_Enter` to the last line that is not
//!   an `Idle`/`Sync` script (module calls and scripts, interleaved);
//! * the statuses the server got for the deployment, in order (without the
//!   reference's per-script reports, those with a `substate`);
//! * the files below the modules' output directory (path, mode, content
//!   hash).
//!
//! The reference runs live when it can (root, `mender` installed); its
//! results must then also match the recording in
//! `tests/fixtures/modules/` (re-record with `OTALITE_RECORD_MODULES=1`).
//! Without root or `mender`, otalite is compared with the recording alone.

#![allow(clippy::std_instead_of_core)]

mod common;

use common::managed::*;
use common::reference::*;
use common::*;
use otalite_testserver::ServerConfig;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Set to re-record the reference's results into the fixtures.
const RECORD: &str = "OTALITE_RECORD_MODULES";
const REBOOT: &str = "(reboot)";
const RESTART: &str = "(restart)";
const GEN: &str = "/usr/share/doc/mender-client/examples";
const SHIPPED: &str = "/usr/share/mender/modules/v3";

#[derive(Clone, Copy, Debug)]
enum Case {
    SingleFile,
    Directory,
    Script,
    InstallFails,
    ScriptFails,
    InstallInterrupted,
    RebootAutomatic,
    RebootYes,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Self::SingleFile => "single-file",
            Self::Directory => "directory",
            Self::Script => "script",
            Self::InstallFails => "install-fails",
            Self::ScriptFails => "script-fails",
            Self::InstallInterrupted => "install-interrupted",
            Self::RebootAutomatic => "reboot-automatic",
            Self::RebootYes => "reboot-yes",
        }
    }

    fn module(self) -> &'static str {
        match self {
            Self::SingleFile | Self::InstallFails => "single-file",
            Self::Directory => "directory",
            Self::Script | Self::ScriptFails => "script",
            Self::RebootAutomatic | Self::RebootYes | Self::InstallInterrupted => "rebooter",
        }
    }

    /// A test module's `NeedsArtifactReboot` answer (`None`: a shipped
    /// module).
    fn reboot_answer(self) -> Option<&'static str> {
        match self {
            Self::RebootAutomatic => Some("Automatic"),
            Self::RebootYes => Some("Yes"),
            Self::InstallInterrupted => Some("No"),
            _ => None,
        }
    }

    fn final_status(self) -> &'static str {
        match self {
            Self::InstallFails | Self::ScriptFails | Self::InstallInterrupted => "failure",
            _ => "success",
        }
    }

    fn fixture(self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/modules")
            .join(format!("{}.txt", self.name()))
    }
}

/// What one daemon did in a case.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    order: Vec<String>,
    statuses: Vec<String>,
    files: Vec<String>,
}

/// A script that logs its name to `log`.
fn script(dir: &Path, name: &str, log: &Path) -> PathBuf {
    let path = dir.join(name);
    executable(
        &path,
        &format!("#!/bin/sh\necho {name} >> {}\nexit 0\n", log.display()),
    );
    path
}

fn tool(cmd: &mut Command) {
    require("mender-artifact");
    run_ok(cmd);
}

/// Installs the scripts and the module wrapper, writes the case's
/// artifact; returns (artifact name, artifact, log, output directory).
fn prepare(client: &dyn Client, case: Case) -> (String, PathBuf, PathBuf, PathBuf) {
    let dir = client.dir().join("modules-case");
    let (log, out, src, real) = (
        dir.join("ran.log"),
        dir.join("out"),
        dir.join("src"),
        dir.join("real"),
    );
    for d in [&out, &src, &real] {
        std::fs::create_dir_all(d).unwrap();
    }
    let rootfs = client.rootfs_scripts();
    for group in ["Idle", "Sync", "Download"] {
        for phase in ["Enter", "Leave", "Error"] {
            script(&rootfs, &format!("{group}_{phase}_01"), &log);
        }
    }
    std::fs::write(rootfs.join("version"), "3\n").unwrap();
    let mut scripts = Vec::new();
    for group in ARTIFACT_GROUPS {
        for phase in ["Enter", "Leave", "Error"] {
            let path = script(&dir.join("artifact"), &format!("{group}_{phase}_01"), &log);
            scripts.push("-s".to_string());
            scripts.push(path.display().to_string());
        }
    }
    // The real module, copied before an overlay can hide it, behind the
    // logging wrapper.
    let module = case.module();
    match case.reboot_answer() {
        Some(answer) => {
            // The interrupted case: the first ArtifactInstall kills the
            // daemon (its parent), as a power cut would.
            let die = if let Case::InstallInterrupted = case {
                format!(
                    "  ArtifactInstall) if [ ! -e {m} ]; then touch {m}; kill -9 $PPID; exit 1; fi ;;\n",
                    m = dir.join("killed").display()
                )
            } else {
                String::new()
            };
            executable(
                &real.join(module),
                &format!(
                    "#!/bin/sh\ncase \"$1\" in\n  NeedsArtifactReboot) echo {answer} ;;\n  SupportsRollback) echo Yes ;;\n{die}esac\nexit 0\n"
                ),
            );
        }
        None => {
            std::fs::copy(Path::new(SHIPPED).join(module), real.join(module)).unwrap();
        }
    }
    executable(
        &client.modules_dir().join(module),
        &format!(
            "#!/bin/sh\necho \"M-$1\" >> {}\nexec {} \"$@\"\n",
            log.display(),
            real.join(module).display()
        ),
    );
    let name = format!("mod-{}-1", case.name());
    let artifact = dir.join(format!("{name}.mender"));
    match case {
        Case::SingleFile | Case::InstallFails => {
            let payload = src.join("payload.txt");
            std::fs::write(&payload, "single file payload\n").unwrap();
            std::fs::set_permissions(
                &payload,
                std::os::unix::fs::PermissionsExt::from_mode(0o640),
            )
            .unwrap();
            let dest = if let Case::InstallFails = case {
                // A file where the module wants a directory.
                std::fs::write(out.join("blocker"), "x\n").unwrap();
                out.join("blocker/sub")
            } else {
                out.join("sf")
            };
            tool(
                Command::new("bash")
                    .current_dir(&src)
                    .arg(Path::new(GEN).join("single-file-artifact-gen"))
                    .args(["-n", &name, "-t", DEVICE_TYPE, "-d"])
                    .arg(&dest)
                    .arg("-o")
                    .arg(&artifact)
                    .arg("payload.txt")
                    .arg("--")
                    .args(&scripts),
            );
        }
        Case::Directory => {
            let tree = src.join("tree");
            std::fs::create_dir_all(tree.join("sub")).unwrap();
            std::fs::write(tree.join("a.txt"), "new a\n").unwrap();
            std::fs::write(tree.join("sub/b.txt"), "new b\n").unwrap();
            // Replaced by the update.
            std::fs::create_dir_all(out.join("dir")).unwrap();
            std::fs::write(out.join("dir/old.txt"), "old\n").unwrap();
            tool(
                Command::new("bash")
                    .arg(Path::new(GEN).join("directory-artifact-gen"))
                    .args(["-n", &name, "-t", DEVICE_TYPE, "-d"])
                    .arg(out.join("dir"))
                    .arg("-o")
                    .arg(&artifact)
                    .arg(&tree)
                    .arg("--")
                    .args(&scripts),
            );
        }
        Case::RebootAutomatic | Case::RebootYes | Case::InstallInterrupted => {
            let payload = src.join("payload.bin");
            std::fs::write(&payload, "rebooter payload\n").unwrap();
            tool(
                Command::new("mender-artifact")
                    .args(["write", "module-image", "-T", module, "-n", &name])
                    .args(["-t", DEVICE_TYPE, "-f"])
                    .arg(&payload)
                    .arg("-o")
                    .arg(&artifact)
                    .args(&scripts),
            );
        }
        Case::Script | Case::ScriptFails => {
            let run_me = src.join("run-me.sh");
            let fail = if let Case::ScriptFails = case {
                "exit 1\n"
            } else {
                ""
            };
            std::fs::write(
                &run_me,
                format!(
                    "#!/bin/sh\necho \"script module ran\" > {}/script-ran\n{fail}",
                    out.display()
                ),
            )
            .unwrap();
            tool(
                Command::new("mender-artifact")
                    .args(["write", "module-image", "-T", "script", "-n", &name])
                    .args(["-t", DEVICE_TYPE, "-f"])
                    .arg(&run_me)
                    .arg("-o")
                    .arg(&artifact)
                    .args(&scripts),
            );
        }
    }
    (name, artifact, log, out)
}

fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// FNV-1a, 64 bits: enough to tell contents apart in a fixture.
fn hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// `path:mode:hash` of every file below `out`, sorted.
fn files(out: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, found: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                walk(base, &path, found);
            } else {
                let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
                found.push(format!(
                    "{}:{mode:o}:{}",
                    path.strip_prefix(base).unwrap().display(),
                    hash(&std::fs::read(&path).unwrap_or_default())
                ));
            }
        }
    }
    let mut found = Vec::new();
    walk(out, out, &mut found);
    found.sort();
    found
}

/// Runs `case` on `client`.
fn run(client: &dyn Client, case: Case) -> Outcome {
    let (name, artifact, log, out) = prepare(client, case);
    let server = client.server();
    let id = server.add_deployment(&artifact, &name, &[DEVICE_TYPE]);
    let mut daemon = client.start();
    let mut reboots = 0;
    let mut marks = Vec::new();
    let killed = log.with_file_name("killed");
    let mut restarted = false;
    let finished = || {
        server
            .statuses(&id)
            .iter()
            .any(|(s, _)| s == case.final_status())
    };
    loop {
        wait_for(
            client,
            "a reboot, a kill or the end of the deployment",
            || client.reboots() > reboots || finished() || (!restarted && killed.exists()),
        );
        if !restarted && killed.exists() {
            // Killed by the module: start again, as after a power cut.
            wait_for(client, "the killed daemon to exit", || {
                matches!(daemon.try_wait(), Ok(Some(_)))
            });
            restarted = true;
            marks.push((lines(&log).len(), RESTART));
            daemon = client.start();
            continue;
        }
        if client.reboots() > reboots {
            daemon.kill().unwrap();
            daemon.wait().unwrap();
            reboots = client.reboots();
            marks.push((lines(&log).len(), REBOOT));
            daemon = client.start();
            continue;
        }
        break;
    }
    // Let the deployment's last scripts finish (the later Idle and Sync
    // runs are not compared).
    std::thread::sleep(Duration::from_millis(1500));
    drop(daemon);
    let mut order = lines(&log);
    for (at, mark) in marks.into_iter().rev() {
        order.insert(at, mark.into());
    }
    Outcome {
        order: deployment_window(&order),
        // The reference also reports each state script it runs (a status
        // with a `substate`); otalite does not: only the plain statuses
        // are compared.
        statuses: server
            .statuses(&id)
            .into_iter()
            .filter(|(_, substate)| substate.is_none())
            .map(|(s, _)| s)
            .collect(),
        files: files(&out),
    }
}

fn read_fixture(case: Case) -> Outcome {
    let path = case.fixture();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; record it with {RECORD}=1 (root, mender installed)",
            path.display()
        )
    });
    let mut outcome = Outcome {
        order: Vec::new(),
        statuses: Vec::new(),
        files: Vec::new(),
    };
    let mut section = "";
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line {
            "[order]" | "[statuses]" | "[files]" => section = line,
            _ => match section {
                "[order]" => outcome.order.push(line.into()),
                "[statuses]" => outcome.statuses.push(line.into()),
                "[files]" => outcome.files.push(line.into()),
                _ => panic!("{}: {line} outside a section", path.display()),
            },
        }
    }
    outcome
}

fn write_fixture(case: Case, outcome: &Outcome) {
    let path = case.fixture();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut text = format!(
        "# The reference's module calls (M-<state>) and state scripts, statuses\n\
         # and written files (path:mode:fnv64), case `{}` of tests/module_daemon.rs.\n\
         # Recorded with {RECORD}=1 and `{}`\n\
         # (tests/refdevice/device.sh, otalite-testserver, 1 s polls).\n",
        case.name(),
        Reference::version()
    );
    for (title, lines) in [
        ("[order]", &outcome.order),
        ("[statuses]", &outcome.statuses),
        ("[files]", &outcome.files),
    ] {
        text.push_str(title);
        text.push('\n');
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
    }
    std::fs::write(&path, text).unwrap();
    eprintln!("recorded {}", path.display());
}

fn differences(ours: &Outcome, theirs: &Outcome) -> String {
    let mut text = String::new();
    for (what, a, b) in [
        ("module calls and scripts", &ours.order, &theirs.order),
        ("statuses", &ours.statuses, &theirs.statuses),
        ("files", &ours.files, &theirs.files),
    ] {
        if a != b {
            text.push_str(&format!(
                "{what}:\n{}",
                side_by_side("otalite", a, "reference", b)
            ));
        }
    }
    text
}

fn check(case: Case) {
    let recording = Recording {
        record_var: RECORD,
        fixture: case.fixture(),
        read: &|| read_fixture(case),
        write: &|outcome| write_fixture(case, outcome),
        same: &|a, b| a == b,
        show: &|live, recorded| differences(live, recorded),
    };
    let Some(reference) = recording.reference(|| run(&Reference::new(), case)) else {
        return;
    };
    let managed = Managed::new(ServerConfig::default());
    let otalite = run(&managed, case);
    assert!(
        otalite == reference,
        "otalite differs from the reference (case {}):\n{}\notalite's log:\n{}",
        case.name(),
        differences(&otalite, &reference),
        managed.log()
    );
    let installed = managed.device.show_artifact();
    match case {
        Case::InstallFails => assert_eq!(installed, "release-1"),
        // No rollback support: the reference's broken-artifact flag.
        Case::ScriptFails => assert_eq!(installed, "mod-script-fails-1_INCONSISTENT"),
        Case::InstallInterrupted => assert_eq!(installed, "release-1"),
        _ => assert_eq!(installed, format!("mod-{}-1", case.name())),
    }
    // No slot or boot variable is involved.
    let reboots = usize::from(matches!(case, Case::RebootAutomatic));
    assert_eq!(managed.reboots(), reboots);
    assert_eq!(managed.device.env_var("mender_boot_part"), "2");
    assert_eq!(managed.device.env_var("upgrade_available"), "0");
    managed.done(&format!("module daemon {}", case.name()));
}

#[test]
fn single_file() {
    check(Case::SingleFile);
}

#[test]
fn directory() {
    check(Case::Directory);
}

#[test]
fn script_module() {
    check(Case::Script);
}

#[test]
fn single_file_install_fails() {
    check(Case::InstallFails);
}

#[test]
fn reboot_automatic() {
    check(Case::RebootAutomatic);
}

#[test]
fn reboot_yes() {
    check(Case::RebootYes);
}

#[test]
fn script_module_install_fails() {
    check(Case::ScriptFails);
}

#[test]
fn install_interrupted_by_a_restart() {
    check(Case::InstallInterrupted);
}
