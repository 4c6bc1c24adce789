//! `otalite install http://...` against hostile plain-HTTP servers on
//! 127.0.0.1 (an endless header line, endless headers, an endless body):
//! the real binary refuses each within seconds, names the limit, and its
//! peak RSS (measured by GNU `time`) stays small. Before the limits, an
//! endless header line made it grow to hundreds of MiB.

#![allow(clippy::std_instead_of_core)]

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

/// Peak RSS allowed for a refused download (a normal install needs ~10 MiB).
const MAX_RSS_KIB: u64 = 48 * 1024;

/// Serves every connection: reads the request, writes `head`, then `unit`
/// forever (until the client hangs up).
fn endless_server(head: &'static [u8], unit: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            std::thread::spawn(move || {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let block = unit.repeat(64 * 1024 / unit.len());
                let _ = stream.write_all(head);
                while stream.write_all(&block).is_ok() {}
            });
        }
    });
    port
}

/// Runs `otalite install <url>` under GNU `time`; returns (stderr, peak
/// RSS in KiB, duration).
fn install(device: &Device, url: &str) -> (String, u64, Duration) {
    require("time");
    let mut command = Command::new("time");
    let inner = device.command();
    command
        .arg("-f")
        .arg("PEAK_RSS_KIB=%M")
        .arg(inner.get_program())
        .args(inner.get_args())
        .args(["install", url]);
    for (name, value) in inner.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let started = Instant::now();
    let out = run(&mut command);
    let took = started.elapsed();
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let rss = text
        .lines()
        .find_map(|line| line.strip_prefix("PEAK_RSS_KIB="))
        .and_then(|kib| kib.trim().parse().ok())
        .expect("GNU time output");
    (text, rss, took)
}

#[test]
fn hostile_servers_are_refused_with_bounded_memory_and_time() {
    let cases: [(&[u8], &[u8], &str); 4] = [
        (b"HTTP/1.1 200 OK\r\nX-Endless: ", b"a", "bytes (the limit)"),
        (
            b"HTTP/1.1 200 OK\r\n",
            b"X-A: b\r\n",
            "more than 100 response headers (the limit)",
        ),
        // A chunked artifact has no Content-Length (refused as by the
        // reference) before a body byte is read.
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffff\r\n",
            b"x",
            "without Content-Length",
        ),
        // An endless body announced as 10 GiB: the artifact reader refuses
        // it at the first header (not a tar archive).
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 10737418240\r\n\r\n",
            b"z",
            "artifact refused",
        ),
    ];
    for (head, unit, expected) in cases {
        let device = Device::new();
        let port = endless_server(head, unit);
        let url = format!("http://127.0.0.1:{port}/a.mender");
        let (text, rss, took) = install(&device, &url);
        eprintln!("{expected}: peak RSS {rss} KiB in {took:?}");
        assert!(text.contains(expected), "{text}");
        assert!(rss < MAX_RSS_KIB, "peak RSS {rss} KiB: {text}");
        assert!(took < Duration::from_secs(10), "{took:?}");
        assert_eq!(device.env_var("upgrade_available"), "0");
        assert_eq!(device.show_artifact(), "release-1");
    }
}
