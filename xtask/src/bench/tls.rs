//! `cargo xtask bench tls [--rounds N] [--per-round N]`: full TLS
//! handshake time of otalite's crypto provider (RustCrypto,
//! `targets/host/src/http/provider.rs`) against rustls' ring provider, the
//! one it replaced, both against the same `openssl s_server` on 127.0.0.1.
//!
//! The client is `targets/host/examples/tls_handshake.rs` (release build):
//! it alternates the two providers round by round in one process, so both
//! see the same machine load, and reports medians. The server's share
//! (OpenSSL's signature and key exchange) is in both times alike.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::util::{nested_cargo, one_line, path_str, run_quiet, target_dir};

const USAGE: &str = "usage: cargo xtask bench tls [--rounds N] [--per-round N]";

/// A server setup: key type (`openssl req` arguments) and `s_server`
/// flags; `bulk`: also download [`BULK_MIB`] MiB per connection.
struct Case {
    name: &'static str,
    key: &'static [&'static str],
    server: &'static [&'static str],
    bulk: bool,
}

/// Size of the bulk download, MiB.
const BULK_MIB: usize = 32;

const CASES: &[Case] = &[
    Case {
        name: "ECDSA P-256, TLS 1.3, X25519",
        key: &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        server: &["-tls1_3", "-groups", "X25519"],
        bulk: false,
    },
    Case {
        name: "ECDSA P-256, TLS 1.3, secp256r1",
        key: &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        server: &["-tls1_3", "-groups", "P-256"],
        bulk: false,
    },
    Case {
        name: "RSA 2048, TLS 1.3, X25519",
        key: &["-newkey", "rsa:2048"],
        server: &["-tls1_3", "-groups", "X25519"],
        bulk: false,
    },
    Case {
        name: "RSA 2048, TLS 1.2, X25519, AES-128-GCM",
        key: &["-newkey", "rsa:2048"],
        server: &[
            "-tls1_2",
            "-groups",
            "X25519",
            "-cipher",
            "ECDHE-RSA-AES128-GCM-SHA256",
        ],
        bulk: false,
    },
    Case {
        name: "32 MiB download, TLS 1.3 AES-128-GCM",
        key: &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        server: &["-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256"],
        bulk: true,
    },
    Case {
        name: "32 MiB download, TLS 1.3 AES-256-GCM",
        key: &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        server: &["-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"],
        bulk: true,
    },
    Case {
        name: "32 MiB download, TLS 1.3 ChaCha20-Poly1305",
        key: &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        server: &["-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"],
        bulk: true,
    },
    Case {
        name: "32 MiB download, TLS 1.2 ECDHE-ECDSA-AES128-GCM",
        key: &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        server: &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
        bulk: true,
    },
    Case {
        name: "ECDSA P-384, TLS 1.3, X25519",
        key: &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1"],
        server: &["-tls1_3", "-groups", "X25519"],
        bulk: false,
    },
    Case {
        name: "Ed25519, TLS 1.3, X25519",
        key: &["-newkey", "ed25519"],
        server: &["-tls1_3", "-groups", "X25519"],
        bulk: false,
    },
];

/// `openssl s_server`, ended by PID on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A CA and a server certificate for `localhost` of key type `key` in `dir`.
fn certificates(dir: &Path, key: &[&str]) -> Result<()> {
    let at = |name: &str| path_str(&dir.join(name));
    let mut ca = vec!["openssl", "req", "-x509", "-nodes", "-days", "2"];
    ca.extend(["-subj", "/CN=bench CA"]);
    ca.extend(key);
    let (ca_key, ca_crt) = (at("ca.key"), at("ca.crt"));
    ca.extend(["-keyout", &ca_key, "-out", &ca_crt]);
    run_quiet(&ca)?;
    let (key_path, csr) = (at("server.key"), at("server.csr"));
    let mut request = vec!["openssl", "req", "-new", "-nodes", "-subj", "/CN=localhost"];
    request.extend(key);
    request.extend(["-keyout", &key_path, "-out", &csr]);
    run_quiet(&request)?;
    let ext = at("server.ext");
    fs::write(
        &ext,
        "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )?;
    let crt = at("server.crt");
    let serial = at("ca.srl");
    run_quiet(&[
        "openssl",
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca_crt,
        "-CAkey",
        &ca_key,
        "-CAserial",
        &serial,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &ext,
        "-out",
        &crt,
    ])?;
    Ok(())
}

/// Starts `s_server` in `dir` and returns it with its port.
fn serve(dir: &Path, flags: &[&str]) -> Result<(Server, u16)> {
    let mut child = Command::new("openssl")
        .current_dir(dir)
        .args(["s_server", "-accept", "127.0.0.1:0", "-WWW"])
        .args(["-cert", "server.crt", "-key", "server.key"])
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("running openssl s_server")?;
    let stdout = child.stdout.take().context("s_server stdout")?;
    let server = Server(child);
    let mut lines = BufReader::new(stdout).lines();
    let port = lines.by_ref().map_while(Result::ok).find_map(|line| {
        line.strip_prefix("ACCEPT 127.0.0.1:")
            .and_then(|port| port.trim().parse::<u16>().ok())
    });
    std::thread::spawn(move || lines.for_each(drop));
    match port {
        Some(port) => Ok((server, port)),
        None => bail!("openssl s_server {flags:?} did not start"),
    }
}

/// `cargo xtask bench tls <args>`.
pub(crate) fn bench_tls(args: &[&str]) -> Result<()> {
    let (mut rounds, mut per_round) = (5usize, 40usize);
    let mut it = args.iter();
    while let Some(&arg) = it.next() {
        let value = it
            .next()
            .with_context(|| format!("{arg} needs a value\n{USAGE}"))?;
        let value: usize = value.parse().with_context(|| format!("{arg}: {value}"))?;
        match arg {
            "--rounds" => rounds = value,
            "--per-round" => per_round = value,
            _ => bail!("unknown option {arg}\n{USAGE}"),
        }
    }
    if rounds == 0 || per_round == 0 {
        bail!("--rounds and --per-round must be at least 1");
    }
    let root = crate::workspace_root();
    let mut build = nested_cargo(&root);
    build.args([
        "build",
        "--release",
        "-p",
        "otalite-host",
        "--example",
        "tls_handshake",
    ]);
    eprintln!("==> {build:?}");
    if !build.status().context("running cargo")?.success() {
        bail!("cargo build of the tls_handshake example failed");
    }
    let client = target_dir(&root).join("release/examples/tls_handshake");
    let work = target_dir(&root).join("bench/tls");
    let _ = fs::remove_dir_all(&work);
    let mut report = String::new();
    writeln!(
        report,
        "`cargo xtask bench tls --rounds {rounds} --per-round {per_round}`: full handshakes \
         (TCP connect included, no resumption) against `openssl s_server` on 127.0.0.1, \
         {} handshakes per provider and case, the two providers alternating by round; \
         medians (best in brackets); downloads: {BULK_MIB} MiB per connection, {} \
         connections per provider, rate of the whole connection. {}.\n",
        rounds * per_round,
        rounds * 2,
        one_line(&["openssl", "version"])
    )?;
    writeln!(report, "| server | otalite (RustCrypto) | ring | ratio |")?;
    writeln!(report, "|---|---|---|---|")?;
    for (index, case) in CASES.iter().enumerate() {
        let dir = work.join(index.to_string());
        fs::create_dir_all(&dir)?;
        certificates(&dir, case.key)?;
        let (_server, port) = serve(&dir, case.server)?;
        let mut argv = vec![
            path_str(&client),
            format!("127.0.0.1:{port}"),
            path_str(&dir.join("ca.crt")),
        ];
        if case.bulk {
            // Fewer, longer connections: a download, not handshakes.
            argv.extend([rounds.to_string(), "2".to_string()]);
            fs::write(dir.join("bulk.bin"), vec![0x5a_u8; BULK_MIB << 20])?;
            argv.push("/bulk.bin".to_string());
        } else {
            argv.extend([rounds.to_string(), per_round.to_string()]);
        }
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = run_quiet(&argv)?;
        let mut medians = Vec::new();
        for line in out.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let [name, median, min, _] = fields[..] {
                medians.push((
                    name.to_string(),
                    median.parse::<f64>()?,
                    min.parse::<f64>()?,
                ));
            }
        }
        let find = |name: &str| medians.iter().find(|(n, _, _)| n == name).cloned();
        let (Some((_, ours, ours_min)), Some((_, ring, ring_min))) =
            (find("rustcrypto"), find("ring"))
        else {
            bail!("unexpected output of tls_handshake:\n{out}");
        };
        let row = if case.bulk {
            // MiB/s from the median connection (handshake included).
            let rate = |us: f64| BULK_MIB as f64 / (us / 1e6);
            format!(
                "| {} | {:.0} MiB/s ({:.0}) | {:.0} MiB/s ({:.0}) | {:.2} (time) |",
                case.name,
                rate(ours),
                rate(ours_min),
                rate(ring),
                rate(ring_min),
                ours / ring
            )
        } else {
            format!(
                "| {} | {:.2} ms ({:.2}) | {:.2} ms ({:.2}) | {:.2} |",
                case.name,
                ours / 1000.0,
                ours_min / 1000.0,
                ring / 1000.0,
                ring_min / 1000.0,
                ours / ring
            )
        };
        eprintln!("{row}");
        writeln!(report, "{row}")?;
    }
    print!("{report}");
    let path = target_dir(&root).join("bench/tls.md");
    fs::write(&path, &report)?;
    eprintln!("report: {}", path.display());
    Ok(())
}
