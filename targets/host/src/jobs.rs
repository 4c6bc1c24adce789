//! The Linux loop of the AWS IoT Jobs mode ([`otalite::agent::jobs`]):
//! the MQTT connection (TCP + TLS with the client certificate, ALPN
//! `x-amzn-mqtt-ca` as upparat offers it), the hooks and the downloads as
//! upparat lays them out.
//!
//! | what | where |
//! |---|---|
//! | job files | `<download_location>/upparat/<job id>` (upparat's) |
//! | state record | `<download_location>/upparat/.otalite-state` (atomic; keep `download_location` on persistent storage for the restart check across reboots) |
//! | hooks | the INI's commands, run as `<hook> <elapsed> <retry> <meta> [file \| force]` |
//! | built-in steps (no `install` hook, a Mender Artifact) | `<otalite> <global options> install <URL>` (after `rollback`), `commit`, `rollback`, `show-artifact`: the standalone verbs of this binary; `reboot` from `PATH` |
//!
//! One thread runs the loop; a hook or a download runs in a worker thread
//! that reports through a channel, so the MQTT connection is served (pings,
//! a cancelling `notify`) while it runs. A cancel kills the hook (SIGKILL,
//! as upparat's `process.kill()`) or stops the download (the HTTP client's
//! stop flag).

use crate::fs::atomic_write;
use crate::http::{Download, HttpClient, RawStream, Resumed, SaveError};
use otalite::agent::{
    Action, ActionId, Agent, Builtin, Command, Hook, HookOutcome, Instant, JobDownloadEnd, Outcome,
};
use std::ffi::OsString;
use std::fs;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// The state record's file name in the download directory.
pub const STATE_FILE: &str = ".otalite-state";

/// How long one wait for broker bytes lasts at most (also how fast a
/// worker's end and a stop are noticed).
const TICK: Duration = Duration::from_millis(50);

/// Where the broker is.
#[derive(Clone, Debug)]
pub struct Broker {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS (with the client certificate of the HTTP client's
    /// configuration).
    pub tls: bool,
}

/// The hooks' commands.
#[derive(Clone, Debug, Default)]
pub struct HookPaths {
    /// `version`.
    pub version: Option<PathBuf>,
    /// `download`.
    pub download: Option<PathBuf>,
    /// `install`.
    pub install: Option<PathBuf>,
    /// `restart`.
    pub restart: Option<PathBuf>,
    /// `ready`.
    pub ready: Option<PathBuf>,
}

impl HookPaths {
    /// The command of `hook`, if set.
    pub fn get(&self, hook: Hook) -> Option<&Path> {
        match hook {
            Hook::Version => self.version.as_deref(),
            Hook::Download => self.download.as_deref(),
            Hook::Install => self.install.as_deref(),
            Hook::Restart => self.restart.as_deref(),
            Hook::Ready => self.ready.as_deref(),
        }
    }
}

/// How the built-in steps run: `program args... <verb>`.
#[derive(Clone, Debug)]
pub struct BuiltinCommand {
    /// The otalite binary.
    pub program: PathBuf,
    /// Global options before the verb.
    pub args: Vec<OsString>,
}

/// What a worker thread says.
enum Work {
    Line(String),
    HookEnd(Result<(i32, Option<String>), String>),
    Progress(u64),
    DownloadEnd(u64, DownloadResult),
}

enum DownloadResult {
    Complete,
    MenderArtifact,
    Expired,
    Failed(String),
    Stopped,
}

/// The running worker.
struct Worker {
    id: ActionId,
    events: Receiver<Work>,
    /// The hook's pid (to kill it on a cancel).
    pid: Option<u32>,
    /// The download's stop flag.
    stop: Option<Arc<AtomicBool>>,
    cancelled: bool,
}

/// The jobs-mode host.
pub struct JobsHost {
    /// The HTTP client for downloads and the broker's TLS (trust store,
    /// client certificate).
    pub client: HttpClient,
    /// The broker.
    pub broker: Broker,
    /// The hooks.
    pub hooks: HookPaths,
    /// `<download_location>/upparat`.
    pub download_dir: PathBuf,
    /// Raised by SIGTERM/SIGINT: stop at the next safe point.
    pub stop: Arc<AtomicBool>,
    /// The client for the job files (pre-signed URLs: the system's trust
    /// store), when it differs from [`Self::client`].
    pub download_client: Option<HttpClient>,
    /// The standalone verbs for the built-in steps ([`Builtin`]): this
    /// binary and its global options (`--config`, `--data`).
    pub builtin: Option<BuiltinCommand>,
    stream: Option<RawStream>,
    started: std::time::Instant,
}

impl JobsHost {
    /// A host; nothing is opened yet.
    pub fn new(
        client: HttpClient,
        broker: Broker,
        hooks: HookPaths,
        download_dir: PathBuf,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Self {
            client,
            broker,
            hooks,
            download_dir,
            stop,
            download_client: None,
            builtin: None,
            stream: None,
            started: std::time::Instant::now(),
        }
    }

    /// The state record's path.
    pub fn state_path(&self) -> PathBuf {
        self.download_dir.join(STATE_FILE)
    }

    fn now(&self) -> Instant {
        Instant::from_millis(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// Runs `agent` until it exits (after a stop, or a fatal error: its
    /// message).
    ///
    /// # Errors
    /// The agent ended with an error.
    pub fn run(&mut self, agent: &mut Agent<'_>) -> Result<(), String> {
        let mut worker: Option<Worker> = None;
        let mut stop_sent = false;
        loop {
            if self.stop.load(Ordering::Relaxed) && !stop_sent {
                stop_sent = true;
                let _ = agent.handle_command(self.now(), Command::Stop);
            }
            self.serve_connection(agent);
            if let Some(active) = worker.as_mut() {
                if agent.job_cancelled() && !active.cancelled {
                    active.cancelled = true;
                    if let Some(pid) = active.pid {
                        kill(pid);
                    }
                    if let Some(stop) = &active.stop {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                match active.events.recv_timeout(TICK) {
                    Ok(event) => {
                        let id = active.id;
                        let cancelled = active.cancelled;
                        let now = self.now();
                        match event {
                            Work::Line(line) => agent.handle_hook_output(now, id, &line),
                            Work::Progress(bytes) => agent.handle_job_progress(now, id, bytes),
                            Work::HookEnd(result) => {
                                worker = None;
                                let outcome = match (&result, cancelled) {
                                    (_, true) => HookOutcome::Cancelled,
                                    (Ok((code, line)), false) => HookOutcome::Exited {
                                        code: *code,
                                        last_line: line.as_deref(),
                                    },
                                    (Err(why), false) => HookOutcome::NotRun(why),
                                };
                                agent.handle_hook(now, id, outcome);
                            }
                            Work::DownloadEnd(bytes, result) => {
                                worker = None;
                                let end = match (&result, cancelled) {
                                    (_, true) | (DownloadResult::Stopped, _) => {
                                        JobDownloadEnd::Cancelled
                                    }
                                    (DownloadResult::Complete, false) => JobDownloadEnd::Complete,
                                    (DownloadResult::MenderArtifact, false) => {
                                        JobDownloadEnd::MenderArtifact
                                    }
                                    (DownloadResult::Expired, false) => JobDownloadEnd::Expired,
                                    (DownloadResult::Failed(why), false) => {
                                        JobDownloadEnd::Failed(why)
                                    }
                                };
                                agent.handle_job_download(now, id, bytes, end);
                            }
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        // The thread died without an end: as a failure.
                        let id = active.id;
                        worker = None;
                        agent.handle_hook(
                            self.now(),
                            id,
                            HookOutcome::NotRun("the worker thread ended"),
                        );
                    }
                }
                continue;
            }
            let done = match agent.poll() {
                Some(action) => self.execute(action, &mut worker),
                None => {
                    if agent.has_exited() {
                        return Ok(());
                    }
                    self.wait(agent);
                    Executed::Nothing
                }
            };
            match done {
                Executed::Nothing => {}
                Executed::Done(id, Ok(())) => agent.handle_done(self.now(), id, Outcome::Done),
                Executed::Done(id, Err(why)) => {
                    agent.handle_done(self.now(), id, Outcome::Failed(&why));
                }
                Executed::Exit(result) => {
                    self.close();
                    return result;
                }
            }
        }
    }

    /// Runs one action.
    fn execute(&mut self, action: Action<'_>, worker: &mut Option<Worker>) -> Executed {
        match action {
            Action::Persist { id, record } => {
                let path = self.state_path();
                let result = fs::create_dir_all(&self.download_dir)
                    .and_then(|()| atomic_write(&path, record))
                    .map_err(|e| format!("cannot write {}: {e}", path.display()));
                Executed::Done(id, result)
            }
            Action::JobFiles { keep } => {
                self.tidy(keep);
                Executed::Nothing
            }
            Action::Hook {
                id,
                hook,
                elapsed_s,
                retry,
                meta,
                job_id,
                force,
            } => {
                let mut args = vec![elapsed_s.to_string(), retry.to_string(), meta.to_string()];
                match hook {
                    Hook::Install => {
                        args.push(self.download_dir.join(job_id).display().to_string());
                    }
                    Hook::Restart => args.push(if force { "True".into() } else { String::new() }),
                    _ => {}
                }
                let label = format!("{} hook", hook.as_str());
                *worker = Some(match self.hooks.get(hook) {
                    Some(path) => start_process(id, &label, path, &args, false),
                    None => ended_worker(id, format!("no {label}")),
                });
                Executed::Nothing
            }
            Action::JobDownload {
                id,
                uri,
                job_id,
                sniff,
            } => {
                *worker = Some(self.start_download(id, uri, job_id, sniff));
                Executed::Nothing
            }
            Action::JobBuiltin {
                id, builtin, uri, ..
            } => {
                *worker = Some(self.start_builtin(id, builtin, uri));
                Executed::Nothing
            }
            Action::Exit { failed, message } => Executed::Exit(if failed {
                Err(message.to_string())
            } else {
                Ok(())
            }),
            other => {
                log::warn!("unexpected action in jobs mode: {other:?}");
                Executed::Nothing
            }
        }
    }

    /// Opens, writes to and reads from the broker connection, as the
    /// agent asks (never blocks longer than a write).
    fn serve_connection(&mut self, agent: &mut Agent<'_>) {
        let now = self.now();
        if agent.mqtt_wants_connection(now) {
            self.close();
            log::debug!(
                "connecting to the MQTT broker {}:{}{}",
                self.broker.host,
                self.broker.port,
                if self.broker.tls { " (TLS)" } else { "" }
            );
            match self.client.open_stream(
                &self.broker.host,
                self.broker.port,
                self.broker.tls,
                &[ALPN],
            ) {
                Ok(stream) => {
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(1)));
                    self.stream = Some(stream);
                    agent.handle_mqtt_connected(self.now());
                }
                Err(error) => {
                    agent.handle_mqtt_lost(self.now(), &error.to_string());
                    return;
                }
            }
        }
        if self.stream.is_none() {
            return;
        }
        let mut out = vec![0u8; OUT_LEN];
        while let Some(len) = agent.poll_transmit(self.now(), &mut out) {
            let written = self.stream.as_mut().map(|stream| {
                stream
                    .write_all(out.get(..len).unwrap_or_default())
                    .and_then(|()| stream.flush())
            });
            if let Some(Err(error)) = written {
                self.close();
                agent.handle_mqtt_lost(self.now(), &format!("write: {error}"));
                return;
            }
        }
        self.read_available(agent, Duration::from_millis(1));
        let now = self.now();
        if agent.poll_at().is_some_and(|at| at <= now) {
            agent.handle_timeout(now);
        }
    }

    /// Reads what the broker sent within `wait` and feeds it to the agent.
    fn read_available(&mut self, agent: &mut Agent<'_>, wait: Duration) {
        let mut buffer = [0u8; 16 * 1024];
        let mut timeout = wait.max(Duration::from_millis(1));
        loop {
            let read = {
                let Some(stream) = self.stream.as_mut() else {
                    return;
                };
                let _ = stream.set_read_timeout(Some(timeout));
                stream.read(&mut buffer)
            };
            // Later reads only take what is there already.
            timeout = Duration::from_millis(1);
            match read {
                Ok(0) => {
                    self.close();
                    agent.handle_mqtt_lost(self.now(), "the broker closed the connection");
                    return;
                }
                Ok(count) => {
                    let mut rest = buffer.get(..count).unwrap_or_default();
                    let mut stuck = 0;
                    while !rest.is_empty() {
                        let taken = agent.handle_mqtt_bytes(self.now(), rest);
                        if agent.mqtt_wants_connection(self.now()) {
                            // The session failed on these bytes.
                            self.close();
                            return;
                        }
                        if taken == 0 {
                            // Acknowledgements wait: send them, then go on.
                            stuck += 1;
                            if stuck > 64 {
                                break;
                            }
                            self.transmit(agent);
                            continue;
                        }
                        rest = rest.get(taken..).unwrap_or_default();
                    }
                }
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    return;
                }
                Err(error) => {
                    self.close();
                    agent.handle_mqtt_lost(self.now(), &format!("read: {error}"));
                    return;
                }
            }
        }
    }

    /// Writes what the agent has to send.
    fn transmit(&mut self, agent: &mut Agent<'_>) {
        let mut out = vec![0u8; OUT_LEN];
        while let Some(len) = agent.poll_transmit(self.now(), &mut out) {
            let written = self.stream.as_mut().map(|stream| {
                stream
                    .write_all(out.get(..len).unwrap_or_default())
                    .and_then(|()| stream.flush())
            });
            if let Some(Err(error)) = written {
                self.close();
                agent.handle_mqtt_lost(self.now(), &format!("write: {error}"));
                return;
            }
        }
    }

    /// Waits for broker bytes, the agent's next timer or a stop.
    fn wait(&mut self, agent: &mut Agent<'_>) {
        let now = self.now();
        let until = agent
            .poll_at()
            .map_or(TICK, |at| Duration::from_millis(now.until(at)).min(TICK));
        if self.stream.is_some() {
            self.read_available(agent, until);
        } else {
            std::thread::sleep(until);
        }
        let now = self.now();
        if agent.poll_at().is_some_and(|at| at <= now) {
            agent.handle_timeout(now);
        }
    }

    fn close(&mut self) {
        if let Some(mut stream) = self.stream.take() {
            stream.shutdown();
        }
    }

    /// Removes the job files but `keep`'s (upparat's
    /// `clean_previous_downloads`), never the state record.
    fn tidy(&self, keep: Option<&str>) {
        let Ok(entries) = fs::read_dir(&self.download_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name == STATE_FILE
                || name
                    .to_str()
                    .is_some_and(|n| n.starts_with(&format!("{STATE_FILE}.")))
            {
                continue;
            }
            if keep.is_some_and(|keep| name == keep) {
                continue;
            }
            log::info!("removing the previous download {}", entry.path().display());
            let _ = fs::remove_file(entry.path());
        }
    }

    /// Runs a built-in step ([`Builtin`]) in a worker.
    fn start_builtin(&self, id: ActionId, builtin: Builtin, uri: &str) -> Worker {
        if builtin == Builtin::Reboot {
            return start_process::<&str>(id, "reboot", Path::new("reboot"), &[], true);
        }
        let Some(command) = &self.builtin else {
            return ended_worker(id, "the built-in Mender install is not set up".into());
        };
        let mut args = command.args.clone();
        args.push(builtin.as_str().into());
        if builtin == Builtin::Install {
            // An earlier install that waits uncommitted (the power went
            // before its restart) blocks a new one: give it up first.
            let mut rollback = command.args.clone();
            rollback.push("rollback".into());
            match std::process::Command::new(&command.program)
                .args(&rollback)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
            {
                Ok(status) if status.success() => {
                    log::info!("rolled back an earlier install that was never restarted");
                }
                Ok(_) => {}
                Err(error) => {
                    return ended_worker(
                        id,
                        format!("cannot run {}: {error}", command.program.display()),
                    );
                }
            }
            args.push(uri.into());
        }
        start_process(
            id,
            &format!("built-in {}", builtin.as_str()),
            &command.program,
            &args,
            true,
        )
    }

    fn start_download(&self, id: ActionId, uri: &str, job_id: &str, sniff: bool) -> Worker {
        let (send, events) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let mut config = self
            .download_client
            .as_ref()
            .unwrap_or(&self.client)
            .config()
            .clone();
        config.stop = Some(Arc::clone(&stop));
        let path = self.download_dir.join(job_id);
        let uri = uri.to_string();
        let dir = self.download_dir.clone();
        let flag = Arc::clone(&stop);
        std::thread::spawn(move || {
            let (bytes, result) = match HttpClient::new(config) {
                Ok(client) => download(&client, &dir, &path, &uri, sniff, &send, &flag),
                Err(error) => (0, DownloadResult::Failed(error.to_string())),
            };
            let _ = send.send(Work::DownloadEnd(bytes, result));
        });
        Worker {
            id,
            events,
            pid: None,
            stop: Some(stop),
            cancelled: false,
        }
    }
}

/// Runs `hook` to its end in this thread (the Mender daemon's loop): its
/// output lines logged, then its exit code (a signal: 128 + its number)
/// and last non-empty line, or why it could not run.
///
/// # Errors
/// The command cannot be started or waited for.
pub fn run_hook(hook: Hook, path: &Path, args: &[String]) -> Result<(i32, Option<String>), String> {
    let worker = start_process(
        ActionId(0),
        &format!("{} hook", hook.as_str()),
        path,
        args,
        false,
    );
    loop {
        match worker.events.recv() {
            Ok(Work::Line(line)) => log::info!("{} hook: {line}", hook.as_str()),
            Ok(Work::HookEnd(result)) => return result,
            Ok(_) => {}
            Err(_) => return Err("the hook's thread ended".into()),
        }
    }
}

/// A worker that has already ended: `why` it could not run.
fn ended_worker(id: ActionId, why: String) -> Worker {
    let (send, events) = channel();
    let _ = send.send(Work::HookEnd(Err(why)));
    Worker {
        id,
        events,
        pid: None,
        stop: None,
        cancelled: false,
    }
}

/// Runs `program args` in a worker thread: its non-empty output lines
/// (standard error too with `with_stderr`) as [`Work::Line`], then its
/// exit code and last line.
fn start_process<A: AsRef<std::ffi::OsStr>>(
    id: ActionId,
    label: &str,
    program: &Path,
    args: &[A],
    with_stderr: bool,
) -> Worker {
    log::info!(
        "running the {label}: {} {}",
        program.display(),
        args.iter()
            .map(|a| a.as_ref().to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let cannot =
        |error: io::Error| ended_worker(id, format!("cannot run {}: {error}", program.display()));
    let (reader, writer) = match io::pipe() {
        Ok(pair) => pair,
        Err(error) => return cannot(error),
    };
    let mut command = std::process::Command::new(program);
    command.args(args).stdin(std::process::Stdio::null());
    if with_stderr {
        match writer.try_clone() {
            Ok(copy) => command.stderr(copy),
            Err(error) => return cannot(error),
        };
    }
    command.stdout(writer);
    let spawned = command.spawn();
    // The parent's ends of the pipe go, so the reader sees the end.
    drop(command);
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => return cannot(error),
    };
    let (send, events) = channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let mut last = None;
        for line in io::BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            // The built-in steps log as the reference (logfmt): their
            // message is what the service sees.
            let line = if with_stderr {
                logfmt_message(line.trim())
            } else {
                line.trim().to_string()
            };
            if !line.is_empty() {
                last = Some(line.clone());
                let _ = send.send(Work::Line(line));
            }
        }
        let result = child
            .wait()
            .map(|status| {
                use std::os::unix::process::ExitStatusExt;
                let code = status
                    .code()
                    .or_else(|| status.signal().map(|s| 128 + s))
                    .unwrap_or(1);
                (code, last)
            })
            .map_err(|e| e.to_string());
        let _ = send.send(Work::HookEnd(result));
    });
    Worker {
        id,
        events,
        pid: Some(pid),
        stop: None,
        cancelled: false,
    }
}

/// The `msg` of a logfmt line (`time=... level=... msg="..."`, quotes and
/// `\"` escapes undone); other lines as they are.
fn logfmt_message(line: &str) -> String {
    let Some(start) = line.find("msg=") else {
        return line.to_string();
    };
    let value = line.get(start + 4..).unwrap_or_default();
    let Some(quoted) = value.strip_prefix('"') else {
        return value.split(' ').next().unwrap_or_default().to_string();
    };
    let mut out = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The first tar header of a Mender Artifact: the entry `version`, ustar.
fn is_mender_artifact(head: &[u8]) -> bool {
    head.len() >= 512
        && head.get(..8) == Some(b"version\0".as_slice())
        && head.get(257..262) == Some(b"ustar".as_slice())
}

/// upparat offers this ALPN name (AWS IoT needs it on port 443).
const ALPN: &[u8] = b"x-amzn-mqtt-ca";
/// One MQTT packet out at most (an update with its message, a resend).
const OUT_LEN: usize = 8 * 1024;

/// What one loop turn did.
enum Executed {
    Nothing,
    Done(ActionId, Result<(), String>),
    Exit(Result<(), String>),
}

/// Downloads `uri` into `path` from its current length (upparat's
/// resume); the file is removed when stopped (a cancel).
fn download(
    client: &HttpClient,
    dir: &Path,
    path: &Path,
    uri: &str,
    sniff: bool,
    send: &std::sync::mpsc::Sender<Work>,
    stop: &AtomicBool,
) -> (u64, DownloadResult) {
    if let Err(error) = fs::create_dir_all(dir) {
        return (
            0,
            DownloadResult::Failed(format!("cannot create {}: {error}", dir.display())),
        );
    }
    let have = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if sniff && have >= 512 {
        let mut head = [0u8; 512];
        let read = fs::File::open(path).and_then(|mut file| file.read_exact(&mut head));
        if read.is_ok() && is_mender_artifact(&head) {
            let _ = fs::remove_file(path);
            return (0, DownloadResult::MenderArtifact);
        }
    }
    let opened = Download::open_from(client, uri, have);
    let (mut download, from) = match opened {
        Ok(Resumed::Complete) => return (have, DownloadResult::Complete),
        Ok(Resumed::Rest(download)) => (download, have),
        Ok(Resumed::Whole(download)) => (download, 0),
        Err(crate::http::HttpError::Status { status: 403, .. }) => {
            return (have, DownloadResult::Expired)
        }
        Err(_) if stop.load(Ordering::Relaxed) => {
            let _ = fs::remove_file(path);
            return (0, DownloadResult::Stopped);
        }
        Err(error) => return (have, DownloadResult::Failed(error.to_string())),
    };
    // Where it starts (the progress counts from here).
    let _ = send.send(Work::Progress(from));
    let mut from = from;
    if sniff && from == 0 {
        // The head decides; a file that is no artifact is saved on from it.
        let mut head = Vec::with_capacity(512);
        let read = (&mut download).take(512).read_to_end(&mut head);
        if let Err(error) = read {
            return (0, DownloadResult::Failed(error.to_string()));
        }
        if is_mender_artifact(&head) {
            let _ = fs::remove_file(path);
            return (0, DownloadResult::MenderArtifact);
        }
        if let Err(error) = fs::write(path, &head) {
            return (
                0,
                DownloadResult::Failed(format!("cannot write {}: {error}", path.display())),
            );
        }
        from = head.len() as u64;
    }
    let (reached, saved) = download.save_to(path, from, &mut |bytes| {
        let _ = send.send(Work::Progress(bytes));
    });
    match saved {
        Ok(()) => (reached, DownloadResult::Complete),
        Err(SaveError::Broke(_)) if stop.load(Ordering::Relaxed) => {
            let _ = fs::remove_file(path);
            (0, DownloadResult::Stopped)
        }
        Err(SaveError::Broke(error)) => (reached, DownloadResult::Failed(error.to_string())),
        Err(error) => (reached, DownloadResult::Failed(error.to_string())),
    }
}

/// SIGKILL to `pid` (a hook of ours).
fn kill(pid: u32) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

#[cfg(test)]
mod tests {
    use super::{is_mender_artifact, logfmt_message};

    #[test]
    fn logfmt_messages() {
        assert_eq!(
            logfmt_message(
                r#"time="2026-12-02T20:02:40Z" level=error msg="artifact refused: \"x\" bad""#
            ),
            r#"artifact refused: "x" bad"#
        );
        assert_eq!(logfmt_message("level=info msg=plain rest"), "plain");
        assert_eq!(logfmt_message("no fields here"), "no fields here");
        assert_eq!(logfmt_message(r#"msg="unterminated"#), "unterminated");
    }

    #[test]
    fn artifact_heads() {
        let mut head = vec![0u8; 512];
        head[..7].copy_from_slice(b"version");
        head[257..262].copy_from_slice(b"ustar");
        assert!(is_mender_artifact(&head));
        assert!(!is_mender_artifact(&head[..511]));
        head[7] = b's';
        assert!(!is_mender_artifact(&head), "versions is another entry");
        assert!(!is_mender_artifact(&[0u8; 512]));
    }
}
