//! `otalite-testserver`: serves one deployment to a Mender-compatible agent
//! (used by `cargo xtask demo`).
//!
//! ```text
//! otalite-testserver --artifact PATH --name NAME --device-type T [--port P]
//!                    [--https] [--cert-out FILE] [--next-v2] [--quiet]
//!                    [--public-url URL]
//! ```
//!
//! Prints the server URL on the first line of stdout, then serves until
//! killed, printing `status <value>` for every status report and
//! `violation ...` for every request that does not match the API spec. With `--https` the URL is the HTTPS one and the certificate is
//! written to `--cert-out` (default: `otalite-testserver.pem` in the temp
//! directory); its path goes to stderr. `--public-url` is the base of the
//! artifact links (for a device that reaches the server under another
//! address, e.g. `http://10.0.2.2:PORT` from a QEMU guest). Requests and spec violations are
//! logged to stderr unless `--quiet`.
#![allow(clippy::std_instead_of_core)]

use otalite_testserver::{ServerConfig, TestServer};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: otalite-testserver --artifact PATH --name NAME --device-type T [--port P] [--https] [--cert-out FILE] [--next-v2] [--quiet] [--public-url URL]";

fn main() -> ExitCode {
    let mut artifact = None;
    let mut name = None;
    let mut device_types = Vec::new();
    let mut port = 0u16;
    let mut https = false;
    let mut cert_out = None;
    let mut next_v2 = false;
    let mut quiet = false;
    let mut public_url = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |what: &str| args.next().ok_or_else(|| format!("{a} needs {what}"));
        let r = match a.as_str() {
            "--artifact" => value("a path").map(|v| artifact = Some(PathBuf::from(v))),
            "--name" => value("a name").map(|v| name = Some(v)),
            "--device-type" => value("a device type").map(|v| device_types.push(v)),
            "--port" => value("a port").and_then(|v| {
                v.parse()
                    .map(|p| port = p)
                    .map_err(|_| format!("bad port {v:?}"))
            }),
            "--cert-out" => value("a path").map(|v| cert_out = Some(PathBuf::from(v))),
            "--public-url" => {
                value("a URL").map(|v| public_url = Some(v.trim_end_matches('/').to_string()))
            }
            "--https" => {
                https = true;
                Ok(())
            }
            "--next-v2" => {
                next_v2 = true;
                Ok(())
            }
            "--quiet" => {
                quiet = true;
                Ok(())
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => Err(format!("unknown argument {other:?}")),
        };
        if let Err(e) = r {
            eprintln!("otalite-testserver: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let (Some(artifact), Some(name)) = (artifact, name) else {
        eprintln!("otalite-testserver: --artifact and --name are required\n{USAGE}");
        return ExitCode::from(2);
    };
    if device_types.is_empty() {
        eprintln!("otalite-testserver: at least one --device-type is required\n{USAGE}");
        return ExitCode::from(2);
    }
    if !artifact.is_file() {
        eprintln!("otalite-testserver: {} is not a file", artifact.display());
        return ExitCode::from(2);
    }
    let config = ServerConfig {
        http_port: if https { 0 } else { port },
        https_port: if https { port } else { 0 },
        next_v2,
        verbose: !quiet,
        public_url,
        ..ServerConfig::default()
    };
    let server = TestServer::start(config);
    let types: Vec<&str> = device_types.iter().map(String::as_str).collect();
    let id = server.add_deployment(&artifact, &name, &types);
    let url = if https {
        server.https_url()
    } else {
        server.url()
    };
    if https {
        let path = cert_out.unwrap_or_else(|| std::env::temp_dir().join("otalite-testserver.pem"));
        if let Err(e) = std::fs::write(&path, server.cert_pem()) {
            eprintln!("otalite-testserver: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("certificate: {}", path.display());
    }
    println!("{url}");
    let _ = std::io::stdout().flush();
    eprintln!(
        "serving deployment {id}: {} as {name:?} for {} (Ctrl-C to stop)",
        artifact.display(),
        device_types.join(", ")
    );
    // Narrate the deployment on stdout: one `status <value>` line per
    // report, and every spec violation.
    let mut seen_statuses = 0;
    let mut seen_violations = 0;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let statuses = server.statuses(&id);
        for (status, substate) in statuses.iter().skip(seen_statuses) {
            match substate {
                Some(substate) => println!("status {status} ({substate})"),
                None => println!("status {status}"),
            }
        }
        seen_statuses = statuses.len();
        let violations = server.violations();
        for violation in violations.iter().skip(seen_violations) {
            println!("violation {violation:?}");
        }
        seen_violations = violations.len();
        let _ = std::io::stdout().flush();
    }
}
