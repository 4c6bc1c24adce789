//! `cargo xtask ci [--quick]`: every check CI runs, one step each, with a
//! summary. `--quick` skips the cross builds (`cargo xtask dist` and its
//! package check), the emulated board (`cargo xtask qemu`) and the fuzz
//! smoke run.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// Fuzz targets and the seconds each gets in the smoke run: a replay of
/// the corpus and the checked-in seeds, then a few seconds of new inputs
/// (the long runs are `cargo fuzz run` by hand; README, Tests).
pub const FUZZ_TARGETS: &[&str] = &[
    "artifact_reader",
    "config",
    "device_files",
    "verify_key",
    "store_record",
    "uboot_env",
    "grub_env",
    "http_response",
    "deployment_next",
    "script_output",
    "http_reader",
    "agent_managed",
    "lmdb_store",
    "control_map",
    "mqtt_session",
    "jobs_messages",
    "upparat_ini",
    "agent_jobs",
];
const FUZZ_SECONDS: u32 = 5;

struct Step {
    name: String,
    ok: bool,
    seconds: f64,
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn run_step(steps: &mut Vec<Step>, name: &str, mut command: Command) {
    eprintln!("\n==> {name}: {command:?}");
    let started = Instant::now();
    let ok = command.status().map(|s| s.success()).unwrap_or(false);
    finish_step(steps, name.to_string(), ok, started);
}

/// Runs a step written in Rust (an error fails it).
fn run_check(steps: &mut Vec<Step>, name: &str, check: impl FnOnce() -> Result<()>) {
    eprintln!("\n==> {name}");
    let started = Instant::now();
    let result = check();
    if let Err(error) = &result {
        eprintln!("    {error:#}");
    }
    finish_step(steps, name.to_string(), result.is_ok(), started);
}

/// Prints a step's end and records it for the summary.
fn finish_step(steps: &mut Vec<Step>, name: String, ok: bool, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "<== {name}: {} in {seconds:.1} s",
        if ok { "ok" } else { "FAILED" }
    );
    steps.push(Step { name, ok, seconds });
}

/// Starts the `otalite-testserver` binary with a deployment of the reader's
/// fixture, runs the supervisor example against it and checks the server
/// narrated `status success` (and no spec violation).
fn supervisor_example(root: &Path) -> Result<()> {
    use std::io::{BufRead as _, BufReader};
    use std::process::Stdio;
    // Target flags apply to every listed package: two builds.
    for args in [
        &["build", "-p", "otalite-testserver"][..],
        &["build", "-p", "otalite", "--example", "supervisor"],
    ] {
        if !cargo().args(args).status()?.success() {
            bail!("cargo {} failed", args.join(" "));
        }
    }
    let mut server = Command::new(root.join("target/debug/otalite-testserver"))
        .args([
            "--artifact",
            "tests/fixtures/artifacts/rootfs-gzip.mender",
            "--name",
            "release-2",
            "--device-type",
            "beaglebone",
            "--quiet",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .context("start otalite-testserver")?;
    let mut lines = BufReader::new(server.stdout.take().context("server stdout")?).lines();
    let url = lines.next().context("no URL from the server")??;
    let dir = root.join("target/supervisor-example");
    let _ = std::fs::remove_dir_all(&dir);
    let status = Command::new(root.join("target/debug/examples/supervisor"))
        .arg("--server")
        .arg(&url)
        .arg("--dir")
        .arg(&dir)
        .status();
    // The server narrates every 100 ms; let it catch up, then stop it.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = server.kill();
    let _ = server.wait();
    let narration: Vec<String> = lines.map_while(|line| line.ok()).collect();
    eprintln!("    server: {}", narration.join("; "));
    if !status.context("run the supervisor example")?.success() {
        bail!("the supervisor example failed");
    }
    if narration.iter().any(|line| line.starts_with("violation")) {
        bail!("the server saw spec violations");
    }
    if !narration.iter().any(|line| line == "status success") {
        bail!("the server never saw status success");
    }
    Ok(())
}

/// Runs the CI steps from the workspace root.
pub fn ci(args: &[&str]) -> Result<()> {
    let quick = args.contains(&"--quick");
    let root = crate::workspace_root();
    std::env::set_current_dir(&root).with_context(|| format!("cd {}", root.display()))?;
    let mut steps = Vec::new();

    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run_step(&mut steps, "rustfmt", fmt);

    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]);
    run_step(&mut steps, "clippy (workspace, all targets)", clippy);

    let mut clippy_core = cargo();
    clippy_core.args([
        "clippy",
        "-p",
        "otalite",
        "--no-default-features",
        "--",
        "-D",
        "warnings",
    ]);
    run_step(&mut steps, "clippy (core, no_std, no alloc)", clippy_core);

    let mut nostd = cargo();
    nostd.args([
        "build",
        "-p",
        "otalite",
        "--no-default-features",
        "--target",
        "thumbv7em-none-eabihf",
    ]);
    run_step(
        &mut steps,
        "core builds for thumbv7em-none-eabihf (no_std, no heap)",
        nostd,
    );

    let mut capi_nostd = cargo();
    capi_nostd.args([
        "build",
        "-p",
        "otalite-capi",
        "--target",
        "thumbv7em-none-eabihf",
    ]);
    run_step(
        &mut steps,
        "C API builds for thumbv7em-none-eabihf (no_std, no heap)",
        capi_nostd,
    );

    run_check(
        &mut steps,
        "targets/capi/include/otalite.h is what cbindgen generates",
        || crate::capi::header(&["--check"]),
    );

    let mut clippy_mcu = cargo();
    clippy_mcu.args([
        "clippy",
        "-p",
        crate::size::PACKAGE,
        "--target",
        crate::size::TARGET,
        "--",
        "-D",
        "warnings",
    ]);
    run_step(&mut steps, "clippy (Cortex-M firmware)", clippy_mcu);

    // Links the agent into Cortex-M firmware (opt-level z, LTO) and prints
    // its flash and RAM; fails if the agent was optimized out.
    let mut size = cargo();
    size.args(["xtask", "size", "--top", "5"]);
    run_step(
        &mut steps,
        "Cortex-M firmware links the agent (cargo xtask size)",
        size,
    );

    let mut tests = cargo();
    tests.args(["test", "--workspace"]);
    run_step(
        &mut steps,
        "tests (unit, interop with real tools, end-to-end, power cuts)",
        tests,
    );

    // The agent's simulation (tests/sim) needs the private `_test` mocks,
    // which `--workspace` does not enable.
    let mut sim = cargo();
    sim.args([
        "test",
        "-p",
        "otalite",
        "--features",
        "_test",
        "--test",
        "sim",
    ]);
    run_step(
        &mut steps,
        "agent simulation: scenarios, power cuts at every step, property tests",
        sim,
    );

    run_check(
        &mut steps,
        "example: examples/supervisor.rs deploys from otalite-testserver to success",
        || supervisor_example(&root),
    );

    let mut docs = cargo();
    docs.args([
        "doc",
        "--no-deps",
        "-p",
        "otalite",
        "-p",
        "otalite-host",
        "-p",
        "otalite-uboot",
        "-p",
        "otalite-grub",
        "-p",
        "otalite-capi",
    ]);
    docs.env("RUSTDOCFLAGS", "-D warnings");
    run_step(&mut steps, "rustdoc without warnings", docs);

    // The AWS IoT Jobs reference (tests/jobs): the recorded upparat 1.12
    // transcripts still match what the real upparat does against the test
    // jobs service and a mutual-TLS mosquitto (about a minute).
    let mut jobs = Command::new("bash");
    jobs.arg("tests/jobs/check_reference.sh");
    run_step(
        &mut steps,
        "upparat 1.12 vs its recorded AWS IoT Jobs transcripts (tests/jobs)",
        jobs,
    );

    let selftest = Path::new("tests/refdevice/selftest.sh");
    if selftest.exists() && is_root() {
        let mut command = Command::new("bash");
        command.arg(selftest);
        run_step(
            &mut steps,
            "reference device (real mender in a mount namespace)",
            command,
        );
        // The debug binary the test step built: a release build of its
        // own took compare.sh about 110 s of the step's 137.
        let mut compare = Command::new("tests/refdevice/compare.sh");
        compare.arg(crate::util::target_dir(&root).join("debug/otalite"));
        run_step(&mut steps, "mender vs otalite", compare);
    }

    if !quick {
        // The core's own tests (library, signature verification, artifact
        // reader; not the agent simulation, 70 s under emulation, which
        // runs natively above) built for aarch64 and run under
        // qemu-aarch64-static: the parsers on a real 64-bit ARM (user-mode
        // emulation; no root, loop devices or network). The runner and
        // cross settings come from targets/triples/.
        run_check(
            &mut steps,
            "core tests for aarch64-unknown-linux-musl under qemu-aarch64-static",
            || core_tests_under_qemu(&root, "aarch64-unknown-linux-musl"),
        );

        // The static musl binaries (see targets/triples/; one cargo command
        // for the three targets) and the Debian packages, then their
        // install into throwaway roots (which also runs the ARM binaries
        // under qemu-user).
        let mut dist = cargo();
        dist.args(["xtask", "dist"]);
        run_step(
            &mut steps,
            "cargo xtask dist: static musl binaries (x86_64, aarch64, armv7) and .debs",
            dist,
        );
        for target in crate::dist::targets(&root).unwrap_or_default() {
            let triple = &target.triple;
            let binary = root.join(format!("target/{triple}/{}/otalite", crate::dist::PROFILE));
            if let Ok(meta) = std::fs::metadata(&binary) {
                eprintln!("    {triple} binary: {} bytes", meta.len());
            }
        }
        run_check(
            &mut steps,
            "packages install with dpkg --root; units, D-Bus policies, example config check out",
            || crate::dist::check(&[]),
        );
        // otalite on the emulated aarch64 board (board-support/qemu-virt):
        // QEMU virt + Debian's U-Boot, the dist build of the aarch64
        // binary, scenarios 1 (managed update), 2 (health-check rollback)
        // and 4 (power cuts); about 2 minutes of QEMU.
        let mut qemu = cargo();
        qemu.args(["xtask", "qemu"]);
        run_step(
            &mut steps,
            "emulated board (cargo xtask qemu): managed update, rollback, power cuts under U-Boot",
            qemu,
        );
        fuzz_smoke(&mut steps, &root);
    }

    eprintln!("\nsummary:");
    for step in &steps {
        eprintln!(
            "  {:6} {:6.1} s  {}",
            if step.ok { "ok" } else { "FAILED" },
            step.seconds,
            step.name
        );
    }
    let failed = steps.iter().filter(|s| !s.ok).count();
    let passed = steps.len() - failed;
    println!("ci: {passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} CI step(s) failed");
    }
    Ok(())
}

/// The fuzz smoke run: every target built once, then each replays its
/// corpus and seeds and runs [`FUZZ_SECONDS`] of new inputs, two at a time
/// (libFuzzer runs on one core; the VM has two). Each run's output goes to
/// `target/fuzz-smoke/<target>.log` and its tail is printed when it fails.
fn fuzz_smoke(steps: &mut Vec<Step>, root: &Path) {
    // The stable toolchain, as every other step: RUSTC_BOOTSTRAP=1 lets it
    // take the sanitizer flags cargo-fuzz passes (no nightly to download on
    // a fresh machine). `--dev`: unoptimized with overflow checks and debug
    // assertions, so an unchecked arithmetic on input panics here; it also
    // builds in half the time of the release build (85 s against 170 s for
    // all targets on the 2-core VM).
    let fuzz = || {
        let mut fuzz = cargo();
        fuzz.current_dir(root.join("fuzz"));
        fuzz.env("RUSTC_BOOTSTRAP", "1");
        fuzz
    };
    let mut build = fuzz();
    build.args(["fuzz", "build", "--dev"]);
    run_step(steps, "fuzz targets build (cargo fuzz build --dev)", build);
    let logs = crate::util::target_dir(root).join("fuzz-smoke");
    let _ = std::fs::create_dir_all(&logs);
    for pair in FUZZ_TARGETS.chunks(2) {
        let mut running = Vec::new();
        for target in pair {
            let mut run = fuzz();
            run.args(["fuzz", "run", "--dev", target]);
            // The working corpus (ignored by git) first, then the
            // checked-in seeds: real artifacts, keys and configs.
            let corpus = root.join("fuzz/corpus").join(target);
            let _ = std::fs::create_dir_all(&corpus);
            run.arg(&corpus);
            for seeds in fuzz_seeds(target) {
                run.arg(root.join(seeds));
            }
            run.args(["--", &format!("-max_total_time={FUZZ_SECONDS}")]);
            let log = logs.join(format!("{target}.log"));
            eprintln!("\n==> fuzz smoke {target}: {run:?} > {}", log.display());
            let child = std::fs::File::create(&log)
                .and_then(|out| {
                    let err = out.try_clone()?;
                    run.stdout(out).stderr(err).spawn()
                })
                .map_err(|e| eprintln!("    cannot start: {e}"))
                .ok();
            running.push((target, log, child, Instant::now()));
        }
        for (target, log, child, started) in running {
            let ok = child
                .and_then(|mut c| c.wait().ok())
                .is_some_and(|status| status.success());
            if !ok {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                for line in &lines[lines.len().saturating_sub(40)..] {
                    eprintln!("    {line}");
                }
            }
            let name = format!("fuzz smoke {target} ({FUZZ_SECONDS} s)");
            finish_step(steps, name, ok, started);
        }
    }
}

/// `cargo test -p otalite` (the library and the parser test files: the
/// code that reads untrusted bytes) cross-built for `triple` and run
/// through its runner.
fn core_tests_under_qemu(root: &Path, triple: &str) -> Result<()> {
    let targets = crate::dist::targets(root)?;
    let target = targets
        .iter()
        .find(|t| t.triple == triple)
        .with_context(|| format!("no targets/triples/{triple}.toml"))?;
    anyhow::ensure!(
        !target.runner.is_empty(),
        "targets/triples/{triple}.toml names no runner"
    );
    let mut test = cargo();
    test.args([
        "test",
        "-p",
        "otalite",
        "--features",
        "_test",
        "--target",
        triple,
        "--lib",
        "--test",
        "verify",
        "--test",
        "reader",
    ]);
    target.configure(&mut test)?;
    // Every split point of every fixture: about 4 min under qemu-user
    // (the rest takes about 45 s); the native test run covers it.
    test.args(["--", "--skip", "any_split_gives_the_same_result"]);
    eprintln!("    {test:?}");
    if !test.status().context("run cargo test")?.success() {
        bail!("the core's tests failed under {}", target.runner.join(" "));
    }
    Ok(())
}

/// Checked-in inputs each fuzz target starts from.
fn fuzz_seeds(target: &str) -> &'static [&'static str] {
    match target {
        "artifact_reader" => &["tests/fixtures/artifacts"],
        "verify_key" => &["tests/fixtures/keys"],
        "config" | "device_files" | "uboot_env" | "grub_env" | "script_output" => {
            &["fuzz/seeds/text"]
        }
        "http_response" | "deployment_next" | "http_reader" => &["fuzz/seeds/http"],
        "agent_managed" => &["fuzz/seeds/agent"],
        "lmdb_store" => &["tests/fixtures/lmdb"],
        "control_map" => &["fuzz/seeds/control_map"],
        "mqtt_session" => &["fuzz/seeds/mqtt"],
        "jobs_messages" => &["fuzz/seeds/jobs"],
        "upparat_ini" => &["fuzz/seeds/upparat"],
        "agent_jobs" => &["fuzz/seeds/agent_jobs"],
        _ => &[],
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}
