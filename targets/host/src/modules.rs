//! Update Modules v3 on the host: the module's file tree, the `Download`
//! call fed through the `stream-next` FIFO protocol while the artifact
//! streams, and the later calls the agent decides
//! ([`otalite::agent::Action::ModuleCall`]).
//!
//! # The file tree (`<DATA>/modules/v3/payloads/0000/tree/`)
//!
//! | path | content |
//! |---|---|
//! | `version` | the artifact format version |
//! | `current_artifact_name`, `current_artifact_group`, `current_device_type` | what the device runs |
//! | `header/artifact_name`, `header/artifact_group`, `header/payload_type` | the artifact's |
//! | `header/header-info`, `header/type-info`, `header/meta-data` | JSON rebuilt from the parsed header (`meta-data`: `null`) |
//! | `tmp/` | the module's scratch space |
//! | `stream-next`, `streams/<file>` | FIFOs: the module reads `stream-next` for the next stream's path (an empty line ends them) and reads the payload file from it |
//! | `files/<file>` | the payload files, when the module's `Download` exited 0 without reading `stream-next` |
//!
//! # The `Download` call
//!
//! | event | what the host does |
//! |---|---|
//! | header accepted | builds the tree, starts `<module> Download <tree>` (own process group, cwd the tree) |
//! | a payload file starts | module mode: creates `streams/<file>`, writes `streams/<file>\n` into `stream-next` once the module opens it, opens the stream FIFO; the module exited 0 before opening `stream-next`: `files/` mode from then on |
//! | payload bytes | straight into the FIFO (or the file): never stored twice |
//! | the artifact verified | module mode: an empty `stream-next`; waits for `Download` to exit (non-zero: the download fails) |
//!
//! Every call is bounded by `ModuleTimeoutSeconds` (then SIGTERM to the
//! process group, SIGKILL a minute later).

use otalite::agent::ModuleState;
use otalite::artifact::ArtifactHeader;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a timed-out module gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(60);
/// Polling step while waiting for the module.
const POLL: Duration = Duration::from_millis(2);

/// Where modules live and work.
#[derive(Clone, Debug)]
pub struct ModuleDirs {
    /// `<share>/modules/v3`: the modules, named by payload type.
    pub modules: PathBuf,
    /// `<data>/modules/v3`: their work trees.
    pub work: PathBuf,
    /// `ModuleTimeoutSeconds`.
    pub timeout: Duration,
}

/// What the device runs (for the tree's `current_*` files).
#[derive(Clone, Debug, Default)]
pub struct Current {
    /// `current_artifact_name`.
    pub artifact_name: String,
    /// `current_artifact_group`.
    pub artifact_group: String,
    /// `current_device_type`.
    pub device_type: String,
}

impl ModuleDirs {
    /// The tree of payload 0000.
    pub fn tree(&self) -> PathBuf {
        self.work.join("payloads").join("0000").join("tree")
    }

    /// The module for `payload_type`, if installed (an executable file).
    pub fn program(&self, payload_type: &str) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        if payload_type.is_empty() || payload_type.contains('/') || payload_type.starts_with('.') {
            return None;
        }
        let path = self.modules.join(payload_type);
        let meta = fs::metadata(&path).ok()?;
        (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(path)
    }

    /// Runs `state` on the tree's module; the stdout without its last
    /// newline, or why it failed. `Cleanup` without a tree does nothing
    /// (as the reference) and removes the tree afterwards.
    pub fn call(&self, state: ModuleState) -> Result<String, String> {
        let tree = self.tree();
        if state == ModuleState::Cleanup && !tree.exists() {
            log::info!(
                "{} does not exist; assuming the cleanup was done",
                tree.display()
            );
            return Ok(String::new());
        }
        let result = self.run(&tree, state);
        if state == ModuleState::Cleanup {
            if let Err(error) = fs::remove_dir_all(&tree) {
                log::error!("cannot remove {}: {error}", tree.display());
            }
        }
        result
    }

    fn run(&self, tree: &Path, state: ModuleState) -> Result<String, String> {
        let payload_type = fs::read_to_string(tree.join("header").join("payload_type"))
            .map_err(|e| format!("no update module tree in {}: {e}", tree.display()))?;
        let program = self
            .program(payload_type.trim_end_matches('\n'))
            .ok_or_else(|| format!("no update module for payload type {payload_type}"))?;
        log::debug!(
            "calling module: {} {} {}",
            program.display(),
            state.as_str(),
            tree.display()
        );
        let mut child = Command::new(&program)
            .arg(state.as_str())
            .arg(tree)
            .current_dir(tree)
            .stdin(Stdio::null())
            .stdout(if state.is_query() {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .process_group(0)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot execute the update module {}: {e}",
                    program.display()
                )
            })?;
        let stdout = child.stdout.take();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(stdout) = stdout {
                let mut limited = stdout.take(64 * 1024);
                let _ = limited.read_to_end(&mut out);
                let _ = std::io::copy(&mut limited.into_inner(), &mut std::io::sink());
            }
            out
        });
        let status = wait_bounded(&mut child, Instant::now() + self.timeout);
        let out = reader.join().unwrap_or_default();
        let status = status?;
        if !status.success() {
            return Err(format!(
                "Update module terminated abnormally: {} {} {status}",
                program.display(),
                state.as_str()
            ));
        }
        let text = String::from_utf8_lossy(&out).into_owned();
        Ok(text.strip_suffix('\n').unwrap_or(&text).to_string())
    }
}

/// Waits for `child` until `deadline`, then SIGTERMs its process group and
/// SIGKILLs it after [`KILL_GRACE`].
fn wait_bounded(child: &mut Child, deadline: Instant) -> Result<ExitStatus, String> {
    let mut termed = false;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => {}
            Err(error) => return Err(format!("waiting for the update module: {error}")),
        }
        let now = Instant::now();
        if now >= deadline && !termed {
            log::error!("update module {} timed out; sending SIGTERM", child.id());
            signal_group(child.id(), rustix::process::Signal::TERM);
            termed = true;
        }
        if termed && now >= deadline + KILL_GRACE {
            log::error!("update module {} timed out; sending SIGKILL", child.id());
            crate::scripts::kill_process_group(child.id());
            let _ = child.kill();
            let _ = child.wait();
            return Err("the update module timed out".into());
        }
        std::thread::sleep(POLL);
    }
}

fn signal_group(pgid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pgid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

fn mkfifo(path: &Path) -> std::io::Result<()> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .map_err(std::io::Error::from)
}

/// JSON string literal.
fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `{"k": "v", ...}` of the type-info provides, indented as Go's
/// `MarshalIndent(.., "", "  ")` at `depth`.
fn provides_json(header: &ArtifactHeader, depth: usize) -> String {
    let pad = "  ".repeat(depth + 1);
    let items: Vec<String> = header
        .provides
        .iter()
        .map(|p| format!("{pad}{}: {}", quoted(p.key), quoted(p.value)))
        .collect();
    if items.is_empty() {
        return "null".into();
    }
    format!("{{\n{}\n{}}}", items.join(",\n"), "  ".repeat(depth))
}

fn type_info_json(header: &ArtifactHeader) -> String {
    let payload_type = header.payload_type.as_deref().unwrap_or_default();
    let clears = match &header.clears_provides {
        Some(list) if !list.is_empty() => format!(
            "[\n{}\n  ]",
            list.iter()
                .map(|c| format!("    {}", quoted(c)))
                .collect::<Vec<_>>()
                .join(",\n")
        ),
        _ => "null".into(),
    };
    format!(
        "{{\n  \"type\": {},\n  \"artifact_provides\": {},\n  \"artifact_depends\": null,\n  \"clears_artifact_provides\": {clears}\n}}",
        quoted(payload_type),
        provides_json(header, 1)
    )
}

fn header_info_json(header: &ArtifactHeader) -> String {
    let payload_type = header.payload_type.as_deref().unwrap_or_default();
    let group = header
        .artifact_group
        .as_deref()
        .map(|g| format!(",\n    \"artifact_group\": {}", quoted(g)))
        .unwrap_or_default();
    let devices = header
        .device_types
        .iter()
        .map(|d| format!("      {}", quoted(d)))
        .collect::<Vec<_>>()
        .join(",\n");
    format!(
        "{{\n  \"payloads\": [\n    {{\n      \"type\": {}\n    }}\n  ],\n  \"artifact_provides\": {{\n    \"artifact_name\": {}{group}\n  }},\n  \"artifact_depends\": {{\n    \"device_type\": [\n{devices}\n    ]\n  }}\n}}",
        quoted(payload_type),
        quoted(&header.artifact_name)
    )
}

/// Where the `Download` call stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The module has not opened `stream-next` yet.
    Unknown,
    /// The module reads the streams.
    Module,
    /// The module exited without taking them: files go into `files/`.
    Files,
}

/// A running `Download` call.
pub struct ModuleDownload {
    tree: PathBuf,
    child: Option<Child>,
    status: Option<ExitStatus>,
    mode: Mode,
    current: Option<File>,
    deadline: Instant,
}

impl ModuleDownload {
    /// Builds the tree for `header` and starts `<program> Download`.
    ///
    /// # Errors
    /// The tree cannot be made or the module cannot run.
    pub fn start(
        dirs: &ModuleDirs,
        program: &Path,
        header: &ArtifactHeader,
        current: &Current,
    ) -> std::io::Result<Self> {
        let tree = dirs.tree();
        match fs::remove_dir_all(&tree) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        for dir in ["header", "tmp", "streams"] {
            fs::create_dir_all(tree.join(dir))?;
            fs::set_permissions(
                tree.join(dir),
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            )?;
        }
        let payload_type = header.payload_type.as_deref().unwrap_or_default();
        let files: [(&str, String); 10] = [
            ("version", header.format_version.to_string()),
            ("current_artifact_name", current.artifact_name.clone()),
            ("current_artifact_group", current.artifact_group.clone()),
            ("current_device_type", current.device_type.clone()),
            (
                "header/artifact_group",
                header.artifact_group.as_deref().unwrap_or_default().into(),
            ),
            ("header/artifact_name", header.artifact_name.to_string()),
            ("header/payload_type", payload_type.into()),
            ("header/header-info", header_info_json(header)),
            ("header/type-info", type_info_json(header)),
            ("header/meta-data", "null".into()),
        ];
        for (name, content) in files {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(tree.join(name))?
                .write_all(content.as_bytes())?;
        }
        mkfifo(&tree.join("stream-next"))?;
        rustix::fs::sync();
        log::debug!(
            "calling module: {} Download {}",
            program.display(),
            tree.display()
        );
        let child = Command::new(program)
            .arg("Download")
            .arg(&tree)
            .current_dir(&tree)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()?;
        Ok(Self {
            tree,
            child: Some(child),
            status: None,
            mode: Mode::Unknown,
            current: None,
            deadline: Instant::now() + dirs.timeout,
        })
    }

    /// The module's exit status, if it ended (polled).
    fn exited(&mut self) -> std::io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            if let Some(child) = &mut self.child {
                self.status = child.try_wait()?;
            }
        }
        Ok(self.status)
    }

    fn timed_out(&mut self) -> std::io::Error {
        self.abort();
        std::io::Error::other("the update module's Download timed out")
    }

    /// Opens the FIFO `path` for writing once the module opens it for
    /// reading; `None` when the module exited instead.
    fn open_fifo(&mut self, path: &Path) -> std::io::Result<Option<File>> {
        loop {
            match OpenOptions::new()
                .write(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(path)
            {
                Ok(file) => {
                    rustix::fs::fcntl_setfl(&file, rustix::fs::OFlags::empty())?;
                    return Ok(Some(file));
                }
                Err(error)
                    if error.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) => {}
                Err(error) => return Err(error),
            }
            if self.exited()?.is_some() {
                return Ok(None);
            }
            if Instant::now() >= self.deadline {
                return Err(self.timed_out());
            }
            std::thread::sleep(POLL);
        }
    }

    /// The module exited while the client waited for it.
    fn module_ended(&mut self) -> std::io::Result<()> {
        let status = self.status.unwrap_or_default();
        if !status.success() {
            return Err(std::io::Error::other(format!(
                "Update module terminated abnormally: {status}"
            )));
        }
        if self.mode == Mode::Module {
            return Err(std::io::Error::other(
                "Update module terminated in the middle of the download",
            ));
        }
        // The module did not take the streams: the client stores them.
        log::debug!("the module's Download ended without reading stream-next: storing the files");
        self.mode = Mode::Files;
        let _ = fs::remove_dir_all(self.tree.join("streams"));
        let _ = fs::remove_file(self.tree.join("stream-next"));
        fs::create_dir(self.tree.join("files"))?;
        Ok(())
    }

    /// A payload file starts.
    ///
    /// # Errors
    /// The module failed or cannot take it.
    pub fn file_start(&mut self, name: &str) -> std::io::Result<()> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(std::io::Error::other(format!(
                "refusing payload file name '{name}'"
            )));
        }
        if self.mode != Mode::Files && self.exited()?.is_some() {
            self.module_ended()?;
        }
        if self.mode != Mode::Files {
            let stream = self.tree.join("streams").join(name);
            mkfifo(&stream)?;
            match self.open_fifo(&self.tree.join("stream-next"))? {
                Some(mut next) => {
                    next.write_all(format!("streams/{name}\n").as_bytes())?;
                    drop(next);
                    self.mode = Mode::Module;
                    match self.open_fifo(&stream)? {
                        Some(file) => {
                            self.current = Some(file);
                            return Ok(());
                        }
                        None => return self.module_ended(),
                    }
                }
                None => self.module_ended()?,
            }
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.tree.join("files").join(name))?;
        self.current = Some(file);
        Ok(())
    }

    /// Payload bytes of the current file.
    ///
    /// # Errors
    /// Writing failed (the module closed its stream).
    pub fn file_data(&mut self, data: &[u8]) -> std::io::Result<()> {
        match &mut self.current {
            Some(file) => file.write_all(data),
            None => Err(std::io::Error::other("payload data outside a payload file")),
        }
    }

    /// The current file ended (checksum verified).
    ///
    /// # Errors
    /// Closing failed.
    pub fn file_end(&mut self) -> std::io::Result<()> {
        if let Some(file) = self.current.take() {
            if self.mode == Mode::Files {
                file.sync_all()?;
            }
        }
        Ok(())
    }

    /// No more files: an empty `stream-next` (module mode), then the
    /// module's exit.
    ///
    /// # Errors
    /// The module failed or timed out.
    pub fn finish(&mut self) -> std::io::Result<()> {
        self.current = None;
        if self.mode != Mode::Files && self.exited()?.is_none() {
            let next = self.tree.join("stream-next");
            if let Some(file) = self.open_fifo(&next)? {
                drop(file);
            }
        }
        if self.mode == Mode::Files {
            rustix::fs::sync();
        }
        loop {
            if let Some(status) = self.exited()? {
                self.child = None;
                if !status.success() {
                    return Err(std::io::Error::other(format!(
                        "Update module terminated abnormally: {status}"
                    )));
                }
                return Ok(());
            }
            if Instant::now() >= self.deadline {
                return Err(self.timed_out());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Kills a `Download` still running (the download failed).
    pub fn abort(&mut self) {
        self.current = None;
        if let Some(mut child) = self.child.take() {
            if self.status.is_none() {
                crate::scripts::kill_process_group(child.id());
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for ModuleDownload {
    fn drop(&mut self) {
        self.abort();
    }
}
