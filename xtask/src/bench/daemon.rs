//! `cargo xtask bench daemon`: the managed mode (`otalite daemon`) against the
//! reference `mender daemon` (Debian mender 3.4), both talking to the
//! project's test server (`otalite-testserver`) through a byte-counting TCP
//! proxy written here. Measures idle footprint, traffic per poll cycle and a
//! full deployment. A report, never an assertion.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use crate::util::{
    error_line, fill_slot, make_payload, one_line, path_str, run_quiet, target_dir, write_uboot_env,
};

const USAGE: &str = "\
usage: cargo xtask bench daemon [--idle-seconds N] [--settle-seconds N] [--traffic-seconds N]
                                [--size-mib N] [--runs N] [--update-poll S] [--inventory-poll S]
                                [--retry-poll S] [--jwt-hours H] [--skip-deploy] [--no-device-otalite] [--dbus]

  Runs `otalite daemon` and the reference `mender daemon` (inside the fake
  device tests/refdevice/device.sh) against otalite-testserver, through a
  byte-counting TCP proxy; writes a Markdown report to stdout and
  <target>/bench/daemon.md. Needs root.
    --idle-seconds N     idle window at the real-device intervals (default 60)
    --settle-seconds N   start-up part of the idle window excluded from CPU/h (default 10)
    --traffic-seconds N  window with UpdatePoll = InventoryPoll = 2 s (default 20)
    --size-mib N         rootfs image of the deployment, gzip artifact (default 256)
    --runs N             deployment rounds, clients alternating (default 1)
    --update-poll S      idle UpdatePollIntervalSeconds (default 1800)
    --inventory-poll S   idle InventoryPollIntervalSeconds (default 28800)
    --retry-poll S       idle RetryPollIntervalSeconds (default 300)
    --jwt-hours H        server JWT lifetime for the per-day estimate (default 168 = Mender's 604800 s)
    --skip-deploy        only idle and traffic
    --no-device-otalite  no \"otalite in device.sh\" rows
    --dbus               each daemon gets its own private system bus (dbus-daemon with the shipped
                         policies) and `DBus.Enabled`: the footprint with the D-Bus API served
";

const DEVICE_TYPE: &str = "bench-device";
const FAST_POLL: u64 = 2;

struct Opts {
    idle: u64,
    settle: u64,
    traffic: u64,
    size_mib: u64,
    runs: usize,
    update_poll: u64,
    inventory_poll: u64,
    retry_poll: u64,
    jwt_hours: f64,
    deploy: bool,
    device_otalite: bool,
    dbus: bool,
}

impl Opts {
    fn parse(args: &[&str]) -> Result<Self> {
        let mut o = Self {
            idle: 60,
            settle: 10,
            traffic: 20,
            size_mib: 256,
            runs: 1,
            update_poll: 1800,
            inventory_poll: 28800,
            retry_poll: 300,
            jwt_hours: 168.0,
            deploy: true,
            device_otalite: true,
            dbus: false,
        };
        let mut it = args.iter();
        while let Some(&arg) = it.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (arg, None),
            };
            let mut value = || -> Result<f64> {
                let v = inline
                    .or_else(|| it.next().copied())
                    .with_context(|| format!("{name} needs a value"))?;
                v.parse::<f64>()
                    .ok()
                    .filter(|x| *x >= 0.0)
                    .with_context(|| format!("{name}: not a number: {v}"))
            };
            match name {
                "--idle-seconds" => o.idle = value()? as u64,
                "--settle-seconds" => o.settle = value()? as u64,
                "--traffic-seconds" => o.traffic = value()? as u64,
                "--size-mib" => o.size_mib = value()? as u64,
                "--runs" => o.runs = value()? as usize,
                "--update-poll" => o.update_poll = value()? as u64,
                "--inventory-poll" => o.inventory_poll = value()? as u64,
                "--retry-poll" => o.retry_poll = value()? as u64,
                "--jwt-hours" => o.jwt_hours = value()?,
                "--skip-deploy" => o.deploy = false,
                "--no-device-otalite" => o.device_otalite = false,
                "--dbus" => o.dbus = true,
                "-h" | "--help" => bail!("{USAGE}"),
                _ => bail!("unknown option {arg}\n{USAGE}"),
            }
        }
        if o.idle == 0 || o.size_mib == 0 || o.runs == 0 || o.update_poll == 0 || o.jwt_hours <= 0.0
        {
            bail!("--idle-seconds, --size-mib, --runs, --update-poll and --jwt-hours must be positive");
        }
        if o.settle >= o.idle {
            o.settle = o.idle / 2;
        }
        Ok(o)
    }
}

// ---------------------------------------------------------------------------
// Byte-counting HTTP/1.1 proxy

/// One HTTP exchange seen by the proxy: bytes of the request (head + body as
/// they crossed the socket, chunk framing included) and of its response.
#[derive(Clone, Debug)]
struct Exchange {
    method: String,
    path: String,
    status: u16,
    up: u64,
    down: u64,
    at: Instant,
}

impl Exchange {
    fn class(&self) -> &'static str {
        let p = self.path.as_str();
        if p.ends_with("/authentication/auth_requests") {
            "auth"
        } else if p.contains("/inventory/") {
            "inventory"
        } else if p.ends_with("/deployments/next") {
            "next"
        } else if p.contains("/download/") || p.contains("/artifacts/") {
            "download"
        } else if p.ends_with("/status") {
            "status"
        } else if p.ends_with("/log") {
            "log"
        } else {
            "other"
        }
    }
}

#[derive(Default)]
struct ProxyState {
    exchanges: Vec<Exchange>,
    connections: u64,
    /// Bytes that could not be attributed to a request (parse failure).
    raw_up: u64,
    raw_down: u64,
}

struct Proxy {
    port: u16,
    state: Arc<Mutex<ProxyState>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Proxy {
    fn start(upstream: &str) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp, up) = (state.clone(), stop.clone(), upstream.to_string());
        let thread = thread::spawn(move || {
            while !sp.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = TcpStream::connect(&up) else {
                            continue;
                        };
                        st.lock().unwrap().connections += 1;
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let queue = Arc::new(Mutex::new(VecDeque::new()));
                        let (c2, s2) = (client.try_clone(), server.try_clone());
                        let (Ok(c2), Ok(s2)) = (c2, s2) else { continue };
                        let (st1, q1) = (st.clone(), queue.clone());
                        thread::spawn(move || relay(client, server, true, &st1, &q1));
                        let st2 = st.clone();
                        thread::spawn(move || relay(s2, c2, false, &st2, &queue));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Self {
            port,
            state,
            stop,
            thread: Some(thread),
        })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Takes the exchanges recorded so far (and resets the counters).
    fn take(&self) -> ProxyState {
        std::mem::take(&mut *self.state.lock().unwrap())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Copies HTTP messages from `src` to `dst`, parsing just enough (head,
/// Content-Length, chunked) to attribute every byte to a request. Requests
/// (`is_request`) push their index on `queue`; responses pop it (HTTP/1.1
/// without pipelining: responses come in request order).
fn relay(
    src: TcpStream,
    mut dst: TcpStream,
    is_request: bool,
    state: &Mutex<ProxyState>,
    queue: &Mutex<VecDeque<(usize, String)>>,
) {
    let mut r = BufReader::with_capacity(1 << 16, src);
    let add = |idx: Option<usize>, n: u64| {
        let mut st = state.lock().unwrap();
        match idx.and_then(|i| st.exchanges.get_mut(i)) {
            Some(e) if is_request => e.up += n,
            Some(e) => e.down += n,
            None if is_request => st.raw_up += n,
            None => st.raw_down += n,
        }
    };
    let result = (|| -> std::io::Result<()> {
        loop {
            // Head.
            let mut head = Vec::new();
            loop {
                let start = head.len();
                if r.read_until(b'\n', &mut head)? == 0 {
                    if !head.is_empty() {
                        dst.write_all(&head)?;
                        add(None, head.len() as u64);
                    }
                    return Ok(());
                }
                let line = &head[start..];
                if line == b"\r\n" || line == b"\n" {
                    if start == 0 {
                        continue; // stray empty line between messages
                    }
                    break;
                }
                if head.len() > 1 << 20 {
                    return Err(std::io::Error::other("head too long"));
                }
            }
            let text = String::from_utf8_lossy(&head);
            let mut lines = text.lines();
            let first: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
            let mut length: Option<u64> = None;
            let mut chunked = false;
            for l in lines {
                if let Some((k, v)) = l.split_once(':') {
                    let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                    if k == "content-length" {
                        length = v.parse().ok();
                    } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked")
                    {
                        chunked = true;
                    }
                }
            }
            let (idx, req_method) = if is_request {
                let method = first.first().copied().unwrap_or("?").to_string();
                let path = first
                    .get(1)
                    .copied()
                    .unwrap_or("?")
                    .split('?')
                    .next()
                    .unwrap_or("")
                    .to_string();
                let mut st = state.lock().unwrap();
                st.exchanges.push(Exchange {
                    method: method.clone(),
                    path,
                    status: 0,
                    up: 0,
                    down: 0,
                    at: Instant::now(),
                });
                let i = st.exchanges.len() - 1;
                drop(st);
                queue.lock().unwrap().push_back((i, method.clone()));
                (Some(i), method)
            } else {
                let status: u16 = first.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                if (100..200).contains(&status) {
                    add(
                        queue.lock().unwrap().front().map(|x| x.0),
                        head.len() as u64,
                    );
                    dst.write_all(&head)?;
                    continue; // interim response: the final one follows
                }
                let popped = queue.lock().unwrap().pop_front();
                if let Some((i, _)) = &popped {
                    if let Some(e) = state.lock().unwrap().exchanges.get_mut(*i) {
                        e.status = status;
                    }
                }
                let m = popped.as_ref().map(|p| p.1.clone()).unwrap_or_default();
                let no_body = m == "HEAD" || status == 204 || status == 304;
                if no_body {
                    length = Some(0);
                    chunked = false;
                }
                (popped.map(|p| p.0), m)
            };
            let _ = req_method;
            // Forwarded only now: a request is queued before the server can answer it.
            dst.write_all(&head)?;
            add(idx, head.len() as u64);
            // Body.
            let count = |n: u64| add(idx, n);
            if chunked {
                loop {
                    let mut line = Vec::new();
                    if r.read_until(b'\n', &mut line)? == 0 {
                        return Ok(());
                    }
                    dst.write_all(&line)?;
                    count(line.len() as u64);
                    let size_text = String::from_utf8_lossy(&line);
                    let size =
                        u64::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                            .map_err(|_| std::io::Error::other("bad chunk size"))?;
                    if size == 0 {
                        // Trailers up to the empty line.
                        loop {
                            let mut t = Vec::new();
                            if r.read_until(b'\n', &mut t)? == 0 {
                                return Ok(());
                            }
                            dst.write_all(&t)?;
                            count(t.len() as u64);
                            if t == b"\r\n" || t == b"\n" {
                                break;
                            }
                        }
                        break;
                    }
                    copy_n(&mut r, &mut dst, size + 2, false, &count)?;
                }
            } else if let Some(n) = length {
                copy_n(&mut r, &mut dst, n, false, &count)?;
            } else if !is_request {
                // Response delimited by the end of the connection.
                copy_n(&mut r, &mut dst, u64::MAX, true, &count)?;
            }
        }
    })();
    if result.is_err() {
        // Unparsable (or cut) stream: keep relaying, unattributed.
        let mut buf = [0u8; 65536];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if dst.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    add(None, n as u64);
                }
            }
        }
    }
    let _ = dst.shutdown(Shutdown::Write);
}

/// Copies `n` bytes (or up to EOF when `to_eof`) from `r` to `dst`.
fn copy_n(
    r: &mut BufReader<TcpStream>,
    dst: &mut TcpStream,
    mut n: u64,
    to_eof: bool,
    count: &dyn Fn(u64),
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 65536];
    while n > 0 {
        let want = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        let got = r.read(&mut buf[..want])?;
        if got == 0 {
            return if to_eof {
                Ok(())
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
        dst.write_all(&buf[..got])?;
        count(got as u64);
        n -= got as u64;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Processes

/// The test server binary, killed (by its PID, via `Child`) on drop.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(
        bin: &Path,
        artifact: &Path,
        name: &str,
        device_type: &str,
        log: &Path,
        cert_out: Option<&Path>,
    ) -> Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.args(["--artifact", &path_str(artifact), "--name", name])
            .args(["--device-type", device_type, "--quiet"]);
        if let Some(cert) = cert_out {
            // The URL printed is then the HTTPS one, its certificate in `cert`.
            cmd.arg("--https").arg("--cert-out").arg(cert);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(fs::File::create(log)?))
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().context("server stdout")?);
        out.read_line(&mut line)?;
        // Keep draining: the server narrates status reports on stdout and
        // dies of EPIPE if the pipe is closed, which hung the deployment.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut out, &mut std::io::sink());
        });
        let url = line.trim().to_string();
        if !url.starts_with("http") {
            let _ = child.kill();
            let _ = child.wait();
            bail!("test server printed no URL (log: {})", log.display());
        }
        Ok(Self { child, url })
    }

    /// `host:port` of the URL.
    fn addr(&self) -> String {
        self.url
            .split("://")
            .nth(1)
            .unwrap_or("")
            .trim_end_matches('/')
            .to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Client {
    /// `otalite daemon`, file slots in a directory.
    Otalite,
    /// `otalite daemon` inside device.sh (loop slots), like the reference.
    OtaliteDevice,
    /// `mender daemon` (reference) inside device.sh.
    Mender,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Self::Otalite => "otalite daemon (file slots)",
            Self::OtaliteDevice => "otalite daemon in device.sh",
            Self::Mender => "mender daemon 3.4 (reference, device.sh)",
        }
    }
    /// The program name in /proc/PID/comm once the client is running.
    fn comm(self) -> &'static str {
        match self {
            Self::Mender => "mender",
            _ => "otalite",
        }
    }
}

const IDENTITY: &str = "#!/bin/sh\necho mac=02:00:00:00:00:01\n";
const INVENTORY: &str =
    "#!/bin/sh\necho kernel=bench-kernel\necho ipv4=10.0.0.2/8\necho hostname=bench\n";

fn executable(path: &Path, text: &str) -> Result<()> {
    fs::create_dir_all(path.parent().context("parent")?)?;
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

struct Intervals {
    update: u64,
    inventory: u64,
    retry: u64,
}

/// Another otalite binary and trust for [`Env::prepare`] (the static
/// build over HTTPS).
struct Variant {
    binary: PathBuf,
    /// `ServerCertificate` in mender.conf.
    server_certificate: Option<PathBuf>,
}

/// A client ready to start: the command, where its fake reboot writes, and
/// the device.sh workdir to destroy afterwards.
struct Prepared {
    cmd: Command,
    reboot_log: PathBuf,
    log: PathBuf,
    device: Option<PathBuf>,
    /// The inactive slot (to fill with 0xFF before a deployment).
    slot_b: PathBuf,
}

struct Env {
    work: PathBuf,
    device_sh: PathBuf,
    otalite: PathBuf,
    server_bin: PathBuf,
    clk_tck: f64,
    /// device.sh workdirs to destroy on drop.
    devices: Vec<PathBuf>,
    /// `--dbus`: give each daemon a private system bus.
    dbus: bool,
    /// The private buses started (killed by PID on drop).
    buses: Vec<std::process::Child>,
}

impl Drop for Env {
    fn drop(&mut self) {
        for mut bus in std::mem::take(&mut self.buses) {
            let _ = bus.kill();
            let _ = bus.wait();
        }
        for d in std::mem::take(&mut self.devices) {
            destroy_device(&self.device_sh, &d);
        }
    }
}

fn destroy_device(device_sh: &Path, dir: &Path) {
    let _ = Command::new(device_sh)
        .args(["destroy", &path_str(dir)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Env {
    /// `--dbus`: a private system bus in `dir` with the policies otalite's
    /// package ships (the reference's); returns its address.
    fn start_bus(&mut self, dir: &Path) -> Result<String> {
        let root = crate::workspace_root();
        let socket = dir.join("system_bus_socket");
        let config = dir.join("bus.conf");
        fs::write(
            &config,
            crate::dist::system_bus_config(
                "system",
                &socket,
                &root.join("targets/linux/dist/dbus"),
            ),
        )?;
        let child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", path_str(&config)))
            .arg("--nofork")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start dbus-daemon (bash .ci/setup installs it)")?;
        self.buses.push(child);
        let started = std::time::Instant::now();
        while !socket.exists() {
            if started.elapsed() > std::time::Duration::from_secs(10) {
                bail!("dbus-daemon did not listen on {}", path_str(&socket));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(format!("unix:path={}", path_str(&socket)))
    }

    fn prepare(
        &mut self,
        client: Client,
        tag: &str,
        url: &str,
        iv: &Intervals,
        slot_mib: u64,
        variant: Option<&Variant>,
    ) -> Result<Prepared> {
        let dir = self.work.join(format!(
            "{tag}-{}",
            match client {
                Client::Otalite => "otalite",
                Client::OtaliteDevice => "otalite-dev",
                Client::Mender => "mender-dev",
            }
        ));
        if dir.join("loops").exists() {
            destroy_device(&self.device_sh, &dir);
        }
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let log = dir.join("daemon.log");
        let bus = if self.dbus {
            Some(self.start_bus(&dir)?)
        } else {
            None
        };
        let mut conf_extra = format!(
            "\"ServerURL\": \"{url}\",\n  \"UpdatePollIntervalSeconds\": {},\n  \"InventoryPollIntervalSeconds\": {},\n  \"RetryPollIntervalSeconds\": {}",
            iv.update, iv.inventory, iv.retry
        );
        if let Some(cert) = variant.and_then(|v| v.server_certificate.as_ref()) {
            let _ = write!(
                conf_extra,
                ",\n  \"ServerCertificate\": \"{}\"",
                path_str(cert)
            );
        }
        let otalite = variant.map_or(&self.otalite, |v| &v.binary).clone();
        match client {
            Client::Otalite => {
                let (etc, data, share) = (dir.join("etc"), dir.join("data"), dir.join("share"));
                for d in [&etc, &data, &share] {
                    fs::create_dir_all(d)?;
                }
                let (a, b) = (dir.join("mmcblk0p2"), dir.join("mmcblk0p3"));
                fs::File::create(&a)?.set_len(slot_mib << 20)?;
                fs::File::create(&b)?.set_len(slot_mib << 20)?;
                let env = dir.join("uboot.env");
                let cfg = etc.join("fw_env.config");
                write_uboot_env(&env, &cfg)?;
                fs::write(
                    etc.join("mender.conf"),
                    format!(
                        "{{\n  \"RootfsPartA\": \"{}\",\n  \"RootfsPartB\": \"{}\",\n  \"FwEnvConfig\": \"{}\",\n  {conf_extra}\n}}\n",
                        path_str(&a),
                        path_str(&b),
                        path_str(&cfg)
                    ),
                )?;
                fs::write(etc.join("artifact_info"), "artifact_name=bench-1\n")?;
                fs::write(
                    data.join("device_type"),
                    format!("device_type={DEVICE_TYPE}\n"),
                )?;
                executable(&share.join("identity/mender-device-identity"), IDENTITY)?;
                executable(&share.join("inventory/mender-inventory-bench"), INVENTORY)?;
                let reboot_log = dir.join("reboot.log");
                executable(
                    &dir.join("bin/reboot"),
                    &format!(
                        "#!/bin/sh\necho \"reboot $*\" >> {}\n",
                        reboot_log.display()
                    ),
                )?;
                let mut cmd = Command::new(&otalite);
                cmd.env("MENDER_CONF_DIR", &etc)
                    .env("MENDER_DATA_DIR", &share)
                    .env(
                        "PATH",
                        format!(
                            "{}:{}",
                            path_str(&dir.join("bin")),
                            std::env::var("PATH").unwrap_or_default()
                        ),
                    )
                    .arg("-c")
                    .arg(etc.join("mender.conf"))
                    .arg("-d")
                    .arg(&data)
                    .arg("daemon");
                if let Some(address) = &bus {
                    cmd.env("DBUS_SYSTEM_BUS_ADDRESS", address);
                }
                Ok(Prepared {
                    cmd,
                    reboot_log,
                    log,
                    device: None,
                    slot_b: b,
                })
            }
            Client::OtaliteDevice | Client::Mender => {
                let sh = path_str(&self.device_sh);
                let ds = path_str(&dir);
                run_quiet(&[
                    &sh,
                    "create",
                    &ds,
                    &slot_mib.to_string(),
                    DEVICE_TYPE,
                    "bench-1",
                ])?;
                self.devices.push(dir.clone());
                fs::write(
                    dir.join("upper/etc/mender/mender.conf"),
                    format!(
                        "{{\n  \"RootfsPartA\": \"/dev/mmcblk0p2\",\n  \"RootfsPartB\": \"/dev/mmcblk0p3\",\n  \"DBus\": {{\"Enabled\": {}}},\n  {conf_extra}\n}}\n",
                        self.dbus
                    ),
                )?;
                executable(
                    &dir.join("upper/share/identity/mender-device-identity"),
                    IDENTITY,
                )?;
                executable(
                    &dir.join("upper/share/inventory/mender-inventory-bench"),
                    INVENTORY,
                )?;
                let mut cmd = Command::new(&self.device_sh);
                cmd.args(["run", &ds, "--"]);
                if client == Client::Mender {
                    cmd.args(["mender", "--no-syslog", "daemon"]);
                } else {
                    cmd.arg(&otalite).arg("daemon");
                }
                if let Some(address) = &bus {
                    cmd.env("DBUS_SYSTEM_BUS_ADDRESS", address);
                }
                Ok(Prepared {
                    cmd,
                    reboot_log: dir.join("reboot.log"),
                    log,
                    device: Some(dir.clone()),
                    slot_b: dir.join("slot-b.img"),
                })
            }
        }
    }

    fn finish(&mut self, p: &Prepared) {
        if let Some(d) = &p.device {
            destroy_device(&self.device_sh, d);
            self.devices.retain(|x| x != d);
        }
    }
}

/// What /proc says about a process.
#[derive(Clone, Copy, Debug, Default)]
struct ProcSample {
    rss_kib: u64,
    hwm_kib: u64,
    /// utime + stime + cutime + cstime, seconds.
    cpu: f64,
}

fn proc_sample(pid: u32, clk_tck: f64) -> Option<ProcSample> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // after ')' : [0]=state (field 3), utime = field 14 -> [11] .. cstime [14]
    let ticks: u64 = (11..15).filter_map(|i| f.get(i)?.parse::<u64>().ok()).sum();
    Some(ProcSample {
        rss_kib: kib("VmRSS:")?,
        hwm_kib: kib("VmHWM:")?,
        cpu: ticks as f64 / clk_tck,
    })
}

/// On-CPU nanoseconds of all current threads of `pid` (/proc/PID/task/*/schedstat).
fn sched_ns(pid: u32) -> Option<u64> {
    let mut total = 0;
    for t in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        if let Ok(text) = fs::read_to_string(t.path().join("schedstat")) {
            total += text.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(total)
}

fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A started client: the child (whose PID becomes the client itself: device.sh
/// execs unshare, which execs the client), the CPU spent before the client's
/// exec (device.sh set-up), and when the exec was seen.
struct Running {
    child: Child,
    cpu0: f64,
    t0: Instant,
}

impl Running {
    fn start(p: &mut Prepared, client: Client, clk_tck: f64) -> Result<Self> {
        let log = fs::File::create(&p.log)?;
        let child = p
            .cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting the client")?;
        let pid = child.id();
        let mut run = Self {
            child,
            cpu0: 0.0,
            t0: Instant::now(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if comm(pid) == client.comm() {
                run.t0 = Instant::now();
                run.cpu0 = proc_sample(pid, clk_tck).map_or(0.0, |s| s.cpu);
                return Ok(run);
            }
            if let Ok(Some(st)) = run.child.try_wait() {
                bail!(
                    "client exited at start-up ({st}): {}",
                    error_line(&fs::read_to_string(&p.log).unwrap_or_default()).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!("client did not start within 30 s");
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    fn sample(&self, clk_tck: f64) -> Option<ProcSample> {
        proc_sample(self.child.id(), clk_tck).map(|mut s| {
            s.cpu -= self.cpu0;
            s
        })
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM by PID, then SIGKILL after 5 s.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Measurements

/// Where a process's resident memory is, in KiB, from /proc/PID/smaps.
#[derive(Clone, Copy, Debug, Default)]
struct RssBreakdown {
    rss: u64,
    hwm: u64,
    /// File-backed executable pages (the binary's code).
    text: u64,
    /// Other file-backed pages: ELF headers, .rodata, .eh_frame, relro, .data.
    file_other: u64,
    /// Of all file-backed pages, those written (relocated relro, .data).
    file_dirty: u64,
    /// The main thread's stack (`[stack]`): pages touched once stay.
    stack: u64,
    /// `[heap]` and anonymous mappings: malloc, .bss, thread stacks.
    anon: u64,
    threads: u64,
}

fn rss_breakdown(pid: u32) -> Option<RssBreakdown> {
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    let mut b = RssBreakdown {
        rss: field(&status, "VmRSS:")?,
        hwm: field(&status, "VmHWM:")?,
        threads: field(&status, "Threads:")?,
        ..RssBreakdown::default()
    };
    // (exec, file-backed, name) of the mapping the next lines describe.
    let mut current: (bool, bool, String) = (false, false, String::new());
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let perms = f.next().unwrap_or("");
            let inode = f.nth(2).unwrap_or("0");
            let name = f.next().unwrap_or("").to_string();
            current = (perms.contains('x'), inode != "0", name);
            continue;
        }
        let mut kib = || f.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        match first {
            "Rss:" => {
                let v = kib();
                match &current {
                    (true, true, _) => b.text += v,
                    (false, true, _) => b.file_other += v,
                    (_, false, n) if n == "[stack]" => b.stack += v,
                    _ => b.anon += v,
                }
            }
            "Private_Dirty:" if current.1 => b.file_dirty += kib(),
            _ => {}
        }
    }
    Some(b)
}

struct IdleResult {
    end: ProcSample,
    cpu_settled: f64,
    steady_per_h: f64,
    up: u64,
    down: u64,
    requests: Vec<Exchange>,
}

#[derive(Default, Clone, Copy)]
struct ClassStat {
    n: u64,
    up: u64,
    down: u64,
}

struct TrafficResult {
    seconds: f64,
    classes: Vec<(&'static str, String, ClassStat)>,
    connections: u64,
    raw: (u64, u64),
}

impl TrafficResult {
    fn class(&self, c: &str) -> ClassStat {
        let mut s = ClassStat::default();
        for (k, _, x) in &self.classes {
            if *k == c {
                s.n += x.n;
                s.up += x.up;
                s.down += x.down;
            }
        }
        s
    }
    /// The `next` requests answered 404 (v2 probes).
    fn probes(&self) -> ClassStat {
        let mut s = ClassStat::default();
        for (k, key, x) in &self.classes {
            if *k == "next" && key.ends_with(" 404") {
                s.n += x.n;
                s.up += x.up;
                s.down += x.down;
            }
        }
        s
    }
    /// Update checks = `next` exchanges that were not a 404 (the v2 probe).
    fn checks(&self) -> u64 {
        self.classes
            .iter()
            .filter(|(k, key, _)| *k == "next" && !key.ends_with(" 404"))
            .map(|(_, _, x)| x.n)
            .sum()
    }
}

struct DeployResult {
    wall: f64,
    from_next: Option<f64>,
    cpu: f64,
    hwm_kib: u64,
    up: u64,
    /// The inactive slot holds the image afterwards (`cmp`).
    verified: bool,
}

type Outcome<T> = Result<T, String>;

struct Bench {
    env: Env,
    small_artifact: PathBuf,
}

impl Bench {
    fn session(
        &self,
        artifact: &Path,
        name: &str,
        device_type: &str,
        tag: &str,
    ) -> Result<(Server, Proxy)> {
        let server = Server::start(
            &self.env.server_bin,
            artifact,
            name,
            device_type,
            &self.env.work.join(format!("{tag}-server.log")),
            None,
        )?;
        let proxy = Proxy::start(&server.addr())?;
        Ok((server, proxy))
    }

    fn idle(&mut self, client: Client, o: &Opts) -> Outcome<IdleResult> {
        let (_server, proxy) = self
            .session(
                &self.small_artifact.clone(),
                "bench-9",
                "no-such-device",
                "idle",
            )
            .map_err(|e| format!("{e:#}"))?;
        let iv = Intervals {
            update: o.update_poll,
            inventory: o.inventory_poll,
            retry: o.retry_poll,
        };
        let mut p = self
            .env
            .prepare(client, "idle", &proxy.url(), &iv, 8, None)
            .map_err(|e| format!("{e:#}"))?;
        let r = (|| {
            let mut run =
                Running::start(&mut p, client, self.env.clk_tck).map_err(|e| format!("{e:#}"))?;
            thread::sleep(Duration::from_secs(o.settle).saturating_sub(run.t0.elapsed()));
            let s1 = run.sample(self.env.clk_tck).ok_or("client gone")?;
            let n1 = sched_ns(run.child.id()).ok_or("client gone")?;
            let t1 = run.t0.elapsed().as_secs_f64();
            thread::sleep(Duration::from_secs(o.idle).saturating_sub(run.t0.elapsed()));
            if !run.alive() {
                return Err(format!("client exited: {}", log_tail(&p.log)));
            }
            let s2 = run.sample(self.env.clk_tck).ok_or("client gone")?;
            let n2 = sched_ns(run.child.id()).ok_or("client gone")?;
            let t2 = run.t0.elapsed().as_secs_f64();
            run.stop();
            thread::sleep(Duration::from_millis(200));
            let st = proxy.take();
            Ok(IdleResult {
                end: s2,
                cpu_settled: s1.cpu,
                steady_per_h: n2.saturating_sub(n1) as f64 / 1e9 / (t2 - t1).max(1e-3) * 3600.0,
                up: st.exchanges.iter().map(|e| e.up).sum::<u64>() + st.raw_up,
                down: st.exchanges.iter().map(|e| e.down).sum::<u64>() + st.raw_down,
                requests: st.exchanges,
            })
        })();
        self.env.finish(&p);
        r
    }

    /// The static binary (`static_bin`) idle against a fresh test server,
    /// over HTTPS with `ServerCertificate` (`https`) or plain HTTP, no
    /// proxy (it speaks plain HTTP only). RSS broken down after `o.idle` s.
    fn idle_static(&mut self, static_bin: &Path, https: bool, o: &Opts) -> Outcome<RssBreakdown> {
        let tag = if https { "static-https" } else { "static-http" };
        let cert = self.env.work.join(format!("{tag}-cert.pem"));
        let server = Server::start(
            &self.env.server_bin,
            &self.small_artifact.clone(),
            "bench-9",
            "no-such-device",
            &self.env.work.join(format!("{tag}-server.log")),
            https.then_some(cert.as_path()),
        )
        .map_err(|e| format!("{e:#}"))?;
        let iv = Intervals {
            update: o.update_poll,
            inventory: o.inventory_poll,
            retry: o.retry_poll,
        };
        let variant = Variant {
            binary: static_bin.to_path_buf(),
            server_certificate: https.then(|| cert.clone()),
        };
        let mut p = self
            .env
            .prepare(Client::Otalite, tag, &server.url, &iv, 8, Some(&variant))
            .map_err(|e| format!("{e:#}"))?;
        let r = (|| {
            let mut run = Running::start(&mut p, Client::Otalite, self.env.clk_tck)
                .map_err(|e| format!("{e:#}"))?;
            thread::sleep(Duration::from_secs(o.idle).saturating_sub(run.t0.elapsed()));
            if !run.alive() {
                return Err(format!("client exited: {}", log_tail(&p.log)));
            }
            let b = rss_breakdown(run.child.id()).ok_or("client gone")?;
            run.stop();
            // Only a daemon that really talked to the server counts.
            let log = fs::read_to_string(&p.log).unwrap_or_default();
            let scheme = if https { "https://" } else { "http://" };
            if !log.contains(&format!("authenticated with {scheme}")) {
                return Err(format!(
                    "the daemon did not authenticate over {scheme}: {}",
                    log_tail(&p.log)
                ));
            }
            Ok(b)
        })();
        drop(server);
        self.env.finish(&p);
        r
    }

    fn traffic(&mut self, client: Client, o: &Opts) -> Outcome<TrafficResult> {
        let (_server, proxy) = self
            .session(
                &self.small_artifact.clone(),
                "bench-9",
                "no-such-device",
                "traffic",
            )
            .map_err(|e| format!("{e:#}"))?;
        let iv = Intervals {
            update: FAST_POLL,
            inventory: FAST_POLL,
            retry: FAST_POLL,
        };
        let mut p = self
            .env
            .prepare(client, "traffic", &proxy.url(), &iv, 8, None)
            .map_err(|e| format!("{e:#}"))?;
        let r = (|| {
            let run =
                Running::start(&mut p, client, self.env.clk_tck).map_err(|e| format!("{e:#}"))?;
            thread::sleep(Duration::from_secs(o.traffic));
            let seconds = run.t0.elapsed().as_secs_f64();
            run.stop();
            thread::sleep(Duration::from_millis(200));
            let st = proxy.take();
            let mut classes: Vec<(&'static str, String, ClassStat)> = Vec::new();
            for e in &st.exchanges {
                let key = format!("{} {} {}", e.method, e.path, e.status);
                let i = match classes.iter().position(|(_, k, _)| *k == key) {
                    Some(i) => i,
                    None => {
                        classes.push((e.class(), key, ClassStat::default()));
                        classes.len() - 1
                    }
                };
                let c = &mut classes[i].2;
                c.n += 1;
                c.up += e.up;
                c.down += e.down;
            }
            Ok(TrafficResult {
                seconds,
                classes,
                connections: st.connections,
                raw: (st.raw_up, st.raw_down),
            })
        })();
        self.env.finish(&p);
        r
    }

    fn deploy(
        &mut self,
        client: Client,
        artifact: &Path,
        image: &Path,
        size_mib: u64,
    ) -> Outcome<DeployResult> {
        let (_server, proxy) = self
            .session(artifact, "bench-2", DEVICE_TYPE, "deploy")
            .map_err(|e| format!("{e:#}"))?;
        let iv = Intervals {
            update: FAST_POLL,
            inventory: 28800,
            retry: FAST_POLL,
        };
        let mut p = self
            .env
            .prepare(client, "deploy", &proxy.url(), &iv, size_mib, None)
            .map_err(|e| format!("{e:#}"))?;
        let r = (|| {
            // Inactive slot full of 0xFF: no block matches the image.
            fill_slot(&p.slot_b, size_mib).map_err(|e| format!("filling the slot: {e}"))?;
            let mut run =
                Running::start(&mut p, client, self.env.clk_tck).map_err(|e| format!("{e:#}"))?;
            let deadline = Instant::now() + Duration::from_secs(1800);
            let mut last = ProcSample::default();
            loop {
                if let Some(s) = run.sample(self.env.clk_tck) {
                    last = s;
                }
                if fs::metadata(&p.reboot_log).map_or(0, |m| m.len()) > 0 {
                    break;
                }
                if !run.alive() {
                    return Err(format!(
                        "client exited before the reboot: {}",
                        log_tail(&p.log)
                    ));
                }
                if Instant::now() > deadline {
                    return Err(format!("no reboot within 30 min: {}", log_tail(&p.log)));
                }
                thread::sleep(Duration::from_millis(50));
            }
            let t_reboot = Instant::now();
            if let Some(s) = run.sample(self.env.clk_tck) {
                last = s;
            }
            let wall = (t_reboot - run.t0).as_secs_f64();
            let t0 = run.t0;
            run.stop();
            let verified = Command::new("cmp")
                .args(["-s", "-n", &(size_mib << 20).to_string()])
                .arg(image)
                .arg(&p.slot_b)
                .status()
                .is_ok_and(|st| st.success());
            thread::sleep(Duration::from_millis(200));
            let st = proxy.take();
            let from_next = st
                .exchanges
                .iter()
                .find(|e| e.class() == "next" && e.status == 200)
                .map(|e| (t_reboot - e.at.max(t0)).as_secs_f64());
            Ok(DeployResult {
                wall,
                from_next,
                cpu: last.cpu,
                hwm_kib: last.hwm_kib,
                up: st.exchanges.iter().map(|e| e.up).sum(),
                verified,
            })
        })();
        self.env.finish(&p);
        r
    }
}

fn log_tail(log: &Path) -> String {
    error_line(&fs::read_to_string(log).unwrap_or_default()).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Driver and report

pub(crate) fn bench_daemon(args: &[&str]) -> Result<()> {
    let o = Opts::parse(args)?;
    let root = crate::workspace_root();
    let target = target_dir(&root);
    let out_dir = target.join("bench");
    let work = out_dir.join("work-daemon");
    let device_sh = root.join("tests/refdevice/device.sh");
    if run_quiet(&["id", "-u"])?.trim() != "0" {
        bail!("must run as root (the reference device uses loop devices and mount namespaces)");
    }
    for tool in [
        "mender",
        "mender-artifact",
        "mkenvimage",
        "fw_printenv",
        "unshare",
        "losetup",
    ] {
        if run_quiet(&["sh", "-c", &format!("command -v {tool}")]).is_err() {
            bail!("{tool} is not installed");
        }
    }
    if work.exists() {
        for entry in fs::read_dir(&work)?.flatten() {
            if entry.path().join("loops").exists() {
                destroy_device(&device_sh, &entry.path());
            }
        }
        fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    fs::create_dir_all(&work)?;

    eprintln!("xtask: building otalite and otalite-testserver (release)...");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "-p",
            "otalite-linux",
            "--bin",
            "otalite",
        ])
        .args(["-p", "otalite-testserver", "--bin", "otalite-testserver"])
        .status()?;
    if !status.success() {
        bail!("cargo build --release failed: {status}");
    }
    let clk_tck: f64 = run_quiet(&["getconf", "CLK_TCK"])?
        .trim()
        .parse()
        .unwrap_or(100.0);

    // A tiny artifact for the idle and traffic servers (served to another
    // device type: the clients always get "no update").
    let small_img = work.join("small.img");
    fs::write(&small_img, vec![0x5a; 64 << 10])?;
    let small_artifact = work.join("small.mender");
    run_quiet(&[
        "mender-artifact",
        "write",
        "rootfs-image",
        "-t",
        "no-such-device",
        "-n",
        "bench-9",
        "-f",
        &path_str(&small_img),
        "-o",
        &path_str(&small_artifact),
    ])?;

    let mut bench = Bench {
        env: Env {
            work: work.clone(),
            device_sh,
            otalite: target.join("release/otalite"),
            server_bin: target.join("release/otalite-testserver"),
            clk_tck,
            devices: Vec::new(),
            dbus: o.dbus,
            buses: Vec::new(),
        },
        small_artifact,
    };
    let mut clients = vec![Client::Otalite, Client::Mender];
    if o.device_otalite {
        clients.push(Client::OtaliteDevice);
    }

    let mut idle = Vec::new();
    for &c in &clients {
        eprintln!("xtask: idle {} s: {}", o.idle, c.name());
        let r = bench.idle(c, &o);
        if let Err(e) = &r {
            eprintln!("xtask:   failed: {e}");
        }
        idle.push((c, r));
    }
    eprintln!(
        "xtask: building the static otalite ({}, {})...",
        super::STATIC_TRIPLE,
        crate::dist::PROFILE
    );
    let static_bin = super::build_static(&root).map_err(|e| format!("{e:#}"));
    let mut idle_static = Vec::new();
    for https in [true, false] {
        let what = if https { "HTTPS" } else { "HTTP" };
        eprintln!("xtask: idle {} s: static otalite over {what}", o.idle);
        let r = match &static_bin {
            Ok(bin) => bench.idle_static(bin, https, &o),
            Err(e) => Err(format!("static build failed: {e}")),
        };
        if let Err(e) = &r {
            eprintln!("xtask:   failed: {e}");
        }
        idle_static.push((what, r));
    }

    let mut traffic = Vec::new();
    for &c in clients.iter().rev() {
        eprintln!(
            "xtask: traffic {} s at {FAST_POLL} s intervals: {}",
            o.traffic,
            c.name()
        );
        let r = bench.traffic(c, &o);
        if let Err(e) = &r {
            eprintln!("xtask:   failed: {e}");
        }
        traffic.push((c, r));
    }
    traffic.reverse();

    let mut deploys: Vec<(Client, usize, Outcome<DeployResult>)> = Vec::new();
    let mut payload_desc = String::new();
    let mut art_size = 0;
    if o.deploy {
        eprintln!("xtask: making a {} MiB payload...", o.size_mib);
        let (image, desc) = make_payload(&work, o.size_mib)?;
        payload_desc = desc;
        let artifact = work.join("deploy-gzip.mender");
        eprintln!("xtask: writing the gzip artifact...");
        run_quiet(&[
            "mender-artifact",
            "write",
            "rootfs-image",
            "-t",
            DEVICE_TYPE,
            "-n",
            "bench-2",
            "--compression",
            "gzip",
            "-f",
            &path_str(&image),
            "-o",
            &path_str(&artifact),
        ])?;
        art_size = fs::metadata(&artifact)?.len();
        for round in 0..o.runs {
            let mut order = clients.clone();
            if round % 2 == 1 {
                order.reverse();
            }
            for &c in &order {
                eprintln!(
                    "xtask: deployment round {}/{}: {}",
                    round + 1,
                    o.runs,
                    c.name()
                );
                let r = bench.deploy(c, &artifact, &image, o.size_mib);
                match &r {
                    Ok(d) => eprintln!(
                        "xtask:   {:.1} s to the reboot, {:.1} CPU s, {:.1} MiB peak",
                        d.wall,
                        d.cpu,
                        d.hwm_kib as f64 / 1024.0
                    ),
                    Err(e) => eprintln!("xtask:   failed: {e}"),
                }
                deploys.push((c, round, r));
            }
        }
    }

    let report = render(
        &o,
        &clients,
        &idle,
        &idle_static,
        &traffic,
        &deploys,
        &payload_desc,
        art_size,
    );
    print!("{report}");
    fs::create_dir_all(&out_dir)?;
    let md = out_dir.join("daemon.md");
    fs::write(&md, &report)?;
    eprintln!("xtask: report written to {}", md.display());
    drop(bench);
    let _ = fs::remove_dir_all(&work);
    Ok(())
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn per(s: ClassStat) -> (f64, f64) {
    if s.n == 0 {
        (0.0, 0.0)
    } else {
        (s.up as f64 / s.n as f64, s.down as f64 / s.n as f64)
    }
}

#[allow(clippy::too_many_arguments)]
fn render(
    o: &Opts,
    clients: &[Client],
    idle: &[(Client, Outcome<IdleResult>)],
    idle_static: &[(&str, Outcome<RssBreakdown>)],
    traffic: &[(Client, Outcome<TrafficResult>)],
    deploys: &[(Client, usize, Outcome<DeployResult>)],
    payload: &str,
    art_size: u64,
) -> String {
    let mut s = String::new();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let date = one_line(&[
        "date",
        "-u",
        "-d",
        &format!("@{now}"),
        "+%Y-%m-%d %H:%M UTC",
    ]);
    let mut cmd = format!(
        "cargo xtask bench daemon --idle-seconds {} --settle-seconds {} --traffic-seconds {} --size-mib {} --runs {} \
         --update-poll {} --inventory-poll {} --retry-poll {} --jwt-hours {}",
        o.idle, o.settle, o.traffic, o.size_mib, o.runs, o.update_poll, o.inventory_poll, o.retry_poll, o.jwt_hours
    );
    if !o.deploy {
        cmd.push_str(" --skip-deploy");
    }
    if !o.device_otalite {
        cmd.push_str(" --no-device-otalite");
    }
    if o.dbus {
        cmd.push_str(" --dbus");
    }
    let _ = writeln!(s, "# otalite daemon benchmark\n");
    let _ = writeln!(s, "Command: `{cmd}` (as root), {date}.  ");
    let _ = writeln!(
        s,
        "Machine: {} CPUs, `{}`. Reference: `mender {}` (Debian), run by `tests/refdevice/device.sh run` \
         (mount namespace, loop slots), `DBus.Enabled` with `--dbus` (a private system bus per daemon), else false. otalite: release build of \
         `-p otalite-linux`.  ",
        one_line(&["nproc"]),
        one_line(&["uname", "-sr"]),
        one_line(&["mender", "--version"]).split_whitespace().next().unwrap_or("?")
    );
    let _ = writeln!(
        s,
        "Server: `otalite-testserver` (plain HTTP on 127.0.0.1, accepts every device, next v2 answers 404 like \
         the open-source server). Between each client and the server sits a TCP proxy in xtask that relays \
         and counts every byte both ways and parses just enough HTTP/1.1 (head, Content-Length, chunked) to \
         attribute the bytes to a request: **bytes are TCP payload** (HTTP heads + bodies + chunk framing; no \
         TCP/IP headers, no TLS: over HTTPS add the handshake per new connection and ~22-29 bytes per TLS \
         record). Both clients use the same identity script (`mac=02:00:00:00:00:01`) and one 3-line inventory \
         script; each generates its device key at its first start, inside the measured window (otalite: Ed25519, its default; the reference: RSA 3072, its only choice). Fresh \
         server, proxy and device for every client run. CPU = utime+stime+cutime+cstime of the client process \
         from /proc/PID/stat (children it reaped: identity/inventory scripts, fw_setenv...), counted from the \
         moment /proc/PID/comm shows the client (device.sh set-up excluded). A report, not a test.\n"
    );

    // Idle.
    let _ = writeln!(
        s,
        "## 1. Idle\n\nDaemon started against a server with no deployment for it, UpdatePoll {} s, InventoryPoll {} s, \
         RetryPoll {} s; sampled after {} s.\n",
        o.update_poll, o.inventory_poll, o.retry_poll, o.idle
    );
    let _ = writeln!(
        s,
        "- **RSS**: VmRSS at the end; **VmHWM**: peak RSS since the client's exec;"
    );
    let _ = writeln!(s, "- **CPU s**: CPU seconds over the whole window (start-up: key generation, auth, first inventory and check);");
    let _ = writeln!(
        s,
        "- **CPU s/h idle**: on-CPU time of the client's threads between {t} s and {i} s (sum of \
         /proc/PID/task/*/schedstat, nanoseconds) / ({i}−{t}) s × 3600: the steady idle cost, start-up excluded;",
        i = o.idle,
        t = o.settle
    );
    let _ = writeln!(s, "- **CPU s/h naive**: whole-window CPU × 3600 / {} (start-up cost extrapolated: an upper bound);", o.idle);
    let _ = writeln!(
        s,
        "- **bytes ↑/↓**: TCP payload sent/received in the window; **requests**: what was sent.\n"
    );
    let _ = writeln!(s, "| client | RSS MiB | VmHWM MiB | CPU s | CPU s first {} s | CPU s/h idle | CPU s/h naive | bytes ↑ | bytes ↓ | requests |", o.settle);
    let _ = writeln!(
        s,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for (c, r) in idle {
        match r {
            Ok(x) => {
                let mut reqs: Vec<(String, u32)> = Vec::new();
                for e in &x.requests {
                    let k = format!("{} {}", e.class(), e.status);
                    match reqs.iter_mut().find(|(a, _)| *a == k) {
                        Some(v) => v.1 += 1,
                        None => reqs.push((k, 1)),
                    }
                }
                let reqs: Vec<String> = reqs.iter().map(|(k, n)| format!("{n}× {k}")).collect();
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {:.2} | {:.2} | {:.4} | {:.1} | {} | {} | {} |",
                    c.name(),
                    mib(x.end.rss_kib),
                    mib(x.end.hwm_kib),
                    x.end.cpu,
                    x.cpu_settled,
                    x.steady_per_h,
                    x.end.cpu * 3600.0 / o.idle as f64,
                    x.up,
                    x.down,
                    reqs.join(", ")
                );
            }
            Err(e) => {
                let _ = writeln!(
                    s,
                    "| {} | - | - | - | - | - | - | - | - | error: {} |",
                    c.name(),
                    e.replace('|', "/")
                );
            }
        }
    }

    // Idle, static binary.
    let _ = writeln!(
        s,
        "\n### 1b. Idle RSS of the static binary (what devices run)\n\n`{}` built as `cargo xtask dist` builds \
         it (profile `{}`), as `otalite daemon` with file slots, straight to a fresh `otalite-testserver` (no \
         proxy): over HTTPS with `ServerCertificate` = the server's self-signed certificate (webpki-roots and \
         the system bundle are loaded too, as on a device), and over plain HTTP. Same intervals; sampled after \
         {} s, the run counted only if the log shows it authenticated over that scheme. Breakdown from \
         /proc/PID/smaps (KiB): **text** = resident pages of the binary's code (the kernel maps up to 16 \
         cached pages around each fault, so this approaches the code size); **other file** = headers, .rodata, \
         relro, .data (**dirty**: written ones, relocations of the static PIE); **stack** = main thread's \
         stack (pages touched once stay); **anon** = [heap] and anonymous mappings (malloc, .bss, thread \
         stacks).\n",
        super::STATIC_TRIPLE,
        crate::dist::PROFILE,
        o.idle
    );
    let _ = writeln!(
        s,
        "| static otalite | RSS MiB | VmHWM MiB | text KiB | other file KiB | file dirty KiB | stack KiB | anon KiB | threads |"
    );
    let _ = writeln!(
        s,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for (what, r) in idle_static {
        match r {
            Ok(b) => {
                let _ = writeln!(
                    s,
                    "| {what} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} |",
                    b.rss as f64 / 1024.0,
                    b.hwm as f64 / 1024.0,
                    b.text,
                    b.file_other,
                    b.file_dirty,
                    b.stack,
                    b.anon,
                    b.threads
                );
            }
            Err(e) => {
                let _ = writeln!(
                    s,
                    "| {what} | - | - | - | - | - | - | - | - |\n\n{what}: {e}\n"
                );
            }
        }
    }

    // Traffic.
    let _ = writeln!(
        s,
        "\n## 2. Traffic per poll cycle\n\nUpdatePoll = InventoryPoll = RetryPoll = {FAST_POLL} s for {} s, no deployment. \
         Per request kind (method, path, status): count and mean TCP payload bytes per request, sent ↑ / received ↓.\n",
        o.traffic
    );
    let _ = writeln!(
        s,
        "| client | request | status | count | ↑ bytes/req | ↓ bytes/req |"
    );
    let _ = writeln!(s, "| --- | --- | ---: | ---: | ---: | ---: |");
    for (c, r) in traffic {
        match r {
            Ok(t) => {
                for (_, key, st) in &t.classes {
                    let mut parts = key.rsplitn(2, ' ');
                    let status = parts.next().unwrap_or("");
                    let req = parts.next().unwrap_or("");
                    let (u, d) = per(*st);
                    let _ = writeln!(
                        s,
                        "| {} | `{req}` | {status} | {} | {u:.0} | {d:.0} |",
                        c.name(),
                        st.n
                    );
                }
                let _ = writeln!(
                    s,
                    "| {} | (TCP connections opened: {}; unattributed bytes ↑{} ↓{}; window {:.1} s) | | | | |",
                    c.name(),
                    t.connections,
                    t.raw.0,
                    t.raw.1,
                    t.seconds
                );
            }
            Err(e) => {
                let _ = writeln!(
                    s,
                    "| {} | error: {} | | | | |",
                    c.name(),
                    e.replace('|', "/")
                );
            }
        }
    }
    let checks_day = 86400.0 / o.update_poll as f64;
    let inv_day = 86400.0 / o.inventory_poll as f64;
    let auth_day = 24.0 / o.jwt_hours;
    let _ = writeln!(
        s,
        "\nPer operation (↑+↓ bytes): an **update check** = all `next` requests of one check (v2 probe answered 404 + \
         v1) / number of checks; an **inventory send** = the inventory PUT; **auth** = one auth request. **Per day** \
         at UpdatePoll {} s / InventoryPoll {} s: {checks_day:.0} checks + {inv_day:.0} inventories + {auth_day:.3} \
         auths (one per JWT lifetime of {} h; a daemon restart re-authenticates too). A client that sends the v2 \
         probe (404 here) on every check pays it in \"bytes/update check\"; one that remembers the 404 pays it \
         once per start (column \"v2 probe once per start\", counted in the day like an auth). Measured as sent; a client \
         that skipped unchanged inventories would send fewer.\n",
        o.update_poll, o.inventory_poll, o.jwt_hours
    );
    let _ = writeln!(s, "| client | bytes/update check | bytes/inventory | bytes/auth | v2 probe once per start | checks seen | inventories seen | bytes/day | KiB/day |");
    let _ = writeln!(
        s,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for (c, r) in traffic {
        let Ok(t) = r else { continue };
        let next = t.class("next");
        let inv = t.class("inventory");
        let auth = t.class("auth");
        let checks = t.checks().max(1);
        let probe = t.probes();
        // A client that probes v2 on every check pays it per check; one that
        // remembers the 404 pays it once per start (like the auth).
        let (per_check, once) = if probe.n >= checks {
            ((next.up + next.down) as f64 / checks as f64, 0.0)
        } else {
            (
                (next.up + next.down - probe.up - probe.down) as f64 / checks as f64,
                (probe.up + probe.down) as f64,
            )
        };
        let per_inv = if inv.n > 0 {
            (inv.up + inv.down) as f64 / inv.n as f64
        } else {
            0.0
        };
        let per_auth = if auth.n > 0 {
            (auth.up + auth.down) as f64 / auth.n as f64
        } else {
            0.0
        };
        let day = per_check * checks_day + per_inv * inv_day + (per_auth + once) * auth_day;
        let _ = writeln!(
            s,
            "| {} | {per_check:.0} | {per_inv:.0} | {per_auth:.0} | {once:.0} | {} ({} v2 404) | {} | {day:.0} | {:.1} |",
            c.name(),
            t.checks(),
            probe.n,
            inv.n,
            day / 1024.0
        );
    }

    // Deployment.
    if !deploys.is_empty() {
        let _ = writeln!(
            s,
            "\n## 3. Full deployment\n\nArtifact: gzip rootfs-image, {:.1} MiB, of a {} MiB {payload}. The server offers it \
             to the device; UpdatePoll = RetryPoll = {FAST_POLL} s. otalite (file slots) writes a plain file slot; \
             the device.sh rows write the loop device `/dev/mmcblk0p3`. The inactive slot is filled with 0xFF (written \
             and synced before the start) so the whole image is written. Rounds: {}, client order alternating.\n",
            art_size as f64 / 1048576.0,
            o.size_mib,
            o.runs
        );
        let _ = writeln!(s, "- **wall s**: from the client's exec to its call of the (fake) `reboot` (it reports `rebooting` just before);");
        let _ = writeln!(s, "- **from next s**: from the `next` request that returned the deployment (200) to `reboot`: download + install + reports, without the start-up and first-poll wait;");
        let _ = writeln!(s, "- **CPU s**: client CPU (incl. reaped children) up to the reboot call; **peak RSS**: VmHWM;");
        let _ = writeln!(s, "- **↑ bytes**: everything the client sent to the server API (auth, checks, inventory, status reports). \
                             The artifact link in the `next` answer points at the test server itself, so the download \
                             bypasses the counting proxy (it is not slowed by it; it is the artifact size plus a few \
                             hundred bytes of HTTP head).\n");
        let _ = writeln!(
            s,
            "| client | round | wall s | from next s | CPU s | peak RSS MiB | ↑ bytes | note |"
        );
        let _ = writeln!(s, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
        for &c in clients {
            for (cc, round, r) in deploys {
                if *cc != c {
                    continue;
                }
                match r {
                    Ok(d) => {
                        let _ = writeln!(
                            s,
                            "| {} | {} | {:.2} | {} | {:.2} | {} | {} | {} |",
                            c.name(),
                            round + 1,
                            d.wall,
                            d.from_next.map_or("-".into(), |x| format!("{x:.2}")),
                            d.cpu,
                            mib(d.hwm_kib),
                            d.up,
                            if d.verified {
                                "slot = image (cmp)"
                            } else {
                                "**slot differs from the image**"
                            }
                        );
                    }
                    Err(e) => {
                        let _ = writeln!(
                            s,
                            "| {} | {} | - | - | - | - | - | error: {} |",
                            c.name(),
                            round + 1,
                            e.replace('|', "/")
                        );
                    }
                }
            }
        }
    }
    s
}
