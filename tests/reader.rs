//! Integration tests of the streaming artifact reader against artifacts
//! written by the real `mender-artifact` tool (at run time) and committed
//! fixtures (see `tests/fixtures/artifacts/README.md`).

use otalite::artifact::{ArtifactError, ArtifactHeader, ArtifactReader, Event, Member, WINDOW_LEN};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Everything a run produced, with data events merged so that any input
/// split compares equal.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    events: Vec<Event>,
    payload: Vec<u8>,
    scripts: Vec<(String, Vec<u8>)>,
    payload_name: String,
    header: Option<ArtifactHeader>,
    error: Option<ArtifactError>,
}

fn push_event(events: &mut Vec<Event>, event: Event) {
    match (events.last_mut(), event) {
        (_, Event::NeedsMoreInput) => {}
        (Some(Event::PayloadData(total)), Event::PayloadData(n)) => *total += n,
        (Some(Event::ScriptData(total)), Event::ScriptData(n)) => *total += n,
        _ => events.push(event),
    }
}

/// Feeds `artifact` in chunks given by `split` (sizes, cycled), output
/// buffer of `out_len` bytes.
fn run(artifact: &[u8], chunks: &[usize], out_len: usize) -> Outcome {
    let mut window = vec![0u8; WINDOW_LEN];
    let mut reader = ArtifactReader::new(&mut window).unwrap();
    let mut output = vec![0u8; out_len];
    let mut outcome = Outcome::default();
    let mut pos = 0usize;
    let mut chunk_index = 0usize;
    let mut end = 0usize;
    let mut guard = 0usize;
    loop {
        guard += 1;
        assert!(guard < 50_000_000, "reader does not make progress");
        if pos == end {
            let size = chunks[chunk_index % chunks.len()].max(1);
            chunk_index += 1;
            end = (pos + size).min(artifact.len());
        }
        let result = reader.feed(&artifact[pos..end], &mut output);
        let (event, consumed) = match result {
            Ok(v) => v,
            Err(e) => {
                outcome.error = Some(e);
                break;
            }
        };
        pos += consumed;
        push_event(&mut outcome.events, event);
        match event {
            Event::SignatureCheck => reader.verify_signature(&[]).unwrap(),
            Event::HeaderReady => {
                outcome.header = Some(reader.header().clone());
                reader.accept_header();
            }
            Event::ScriptStart { .. } => outcome
                .scripts
                .push((reader.file_name().to_owned(), Vec::new())),
            Event::ScriptData(n) => outcome
                .scripts
                .last_mut()
                .unwrap()
                .1
                .extend_from_slice(&output[..n]),
            Event::PayloadStart { .. } => outcome.payload_name = reader.file_name().to_owned(),
            Event::PayloadData(n) => outcome.payload.extend_from_slice(&output[..n]),
            Event::Done => break,
            Event::NeedsMoreInput if pos == artifact.len() => break,
            _ => {}
        }
    }
    if outcome.error.is_none() {
        if let Err(e) = reader.finish() {
            outcome.error = Some(e);
        }
    }
    outcome
}

fn run_whole(artifact: &[u8]) -> Outcome {
    run(artifact, &[usize::MAX / 2], 64 * 1024)
}

struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("otalite-reader-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Half random, half compressible.
            if (i / 4096) % 2 == 0 {
                state as u8
            } else {
                (i % 251) as u8
            }
        })
        .collect()
}

fn mender_artifact(args: &[&str], dir: &Path) -> Option<Vec<u8>> {
    let status = Command::new("mender-artifact")
        .args(args)
        .current_dir(dir)
        .output();
    match status {
        Ok(out) if out.status.success() => Some(std::fs::read(dir.join("out.mender")).unwrap()),
        Ok(out) => panic!(
            "mender-artifact failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => {
            eprintln!("mender-artifact not installed: skipping");
            None
        }
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/artifacts")
            .join(name),
    )
    .unwrap()
}

#[test]
fn rootfs_image_all_compressions() {
    let dir = TempDir::new("rootfs");
    let image = pseudo_random(200_000, 7);
    std::fs::write(dir.0.join("img.ext4"), &image).unwrap();
    for compression in ["none", "gzip", "lzma"] {
        let Some(artifact) = mender_artifact(
            &[
                "write",
                "rootfs-image",
                "-t",
                "beaglebone",
                "-n",
                "release-2",
                "-f",
                "img.ext4",
                "-o",
                "out.mender",
                "--compression",
                compression,
            ],
            &dir.0,
        ) else {
            return;
        };
        let outcome = run_whole(&artifact);
        assert_eq!(outcome.error, None, "{compression}");
        assert_eq!(outcome.payload.len(), image.len(), "{compression}");
        assert!(outcome.payload == image, "{compression}");
        assert_eq!(outcome.payload_name, "img.ext4");
        let header = outcome.header.unwrap();
        assert_eq!(header.artifact_name.as_str(), "release-2");
        assert_eq!(
            header.device_types.iter().collect::<Vec<_>>(),
            ["beaglebone"]
        );
        assert_eq!(header.payload_type.as_deref(), Some("rootfs-image"));
        assert_eq!(header.format_version, 3);
        assert!(!header.signed);
        assert_eq!(
            outcome.events,
            [
                Event::SignatureCheck,
                Event::HeaderReady,
                Event::PayloadStart {
                    size: image.len() as u64
                },
                Event::PayloadData(image.len()),
                Event::PayloadEnd,
                Event::Done
            ]
        );
    }
}

fn fixture_image() -> Vec<u8> {
    fixture("img.ext4")
}

fn assert_fixture_outcome(outcome: &Outcome, name: &str) {
    assert_eq!(outcome.error, None, "{name}");
    assert!(
        outcome.payload == fixture_image(),
        "{name}: payload differs"
    );
    assert_eq!(outcome.payload_name, "img.ext4", "{name}");
    let header = outcome.header.as_ref().unwrap();
    assert_eq!(header.artifact_name.as_str(), "release-2");
    assert_eq!(
        header.device_types.iter().collect::<Vec<_>>(),
        ["beaglebone", "bbb2"]
    );
    assert_eq!(header.payload_type.as_deref(), Some("rootfs-image"));
    let provides: Vec<_> = header.provides.iter().map(|p| (p.key, p.value)).collect();
    assert!(
        provides.contains(&("rootfs-image.extra", "yes")),
        "{provides:?}"
    );
    assert!(
        provides.contains(&("rootfs-image.version", "release-2")),
        "{provides:?}"
    );
    let depends: Vec<_> = header
        .depends
        .iter()
        .map(|d| (d.key, d.values().collect::<Vec<_>>()))
        .collect();
    assert!(
        depends.contains(&("artifact_name", vec!["release-1"])),
        "{depends:?}"
    );
    assert!(
        depends.contains(&("rootfs-image.version", vec!["release-1"])),
        "{depends:?}"
    );
    let clears: Vec<_> = header.clears_provides.as_ref().unwrap().iter().collect();
    assert!(clears.contains(&"custom.*"), "{clears:?}");
    let scripts: Vec<_> = outcome
        .scripts
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_slice()))
        .collect();
    assert_eq!(
        scripts,
        [
            (
                "ArtifactInstall_Enter_00",
                fixture("ArtifactInstall_Enter_00").as_slice()
            ),
            (
                "ArtifactCommit_Leave_10_cleanup",
                fixture("ArtifactCommit_Leave_10_cleanup").as_slice()
            ),
        ]
    );
    assert_eq!(header.scripts.len(), 2);
    assert_eq!(outcome.events.last(), Some(&Event::Done));
}

#[test]
fn committed_fixtures() {
    for name in [
        "rootfs-none.mender",
        "rootfs-gzip.mender",
        "rootfs-zstd.mender",
        "rootfs-gzip-signed.mender",
    ] {
        let outcome = run_whole(&fixture(name));
        assert_fixture_outcome(&outcome, name);
        assert_eq!(
            outcome.header.as_ref().unwrap().signed,
            name.contains("signed")
        );
    }
}

#[test]
fn any_split_gives_the_same_result() {
    for name in [
        "rootfs-none.mender",
        "rootfs-gzip.mender",
        "rootfs-zstd.mender",
    ] {
        let artifact = fixture(name);
        let reference = run_whole(&artifact);
        assert_fixture_outcome(&reference, name);
        for out_len in [1, 7, 4096] {
            assert_eq!(
                run(&artifact, &[1], out_len),
                reference,
                "{name}: bytewise, out {out_len}"
            );
            assert_eq!(
                run(&artifact, &[513, 1, 7000], out_len),
                reference,
                "{name}: mixed, out {out_len}"
            );
        }
        for cut in 0..=artifact.len() {
            let first = cut.max(1);
            let outcome = run(&artifact, &[first, artifact.len()], 4096);
            assert_eq!(outcome, reference, "{name}: split at {cut}");
        }
    }
}

#[test]
fn payload_corruption_fails_at_payload_end() {
    let artifact = fixture("rootfs-none.mender");
    let image = fixture_image();
    let at = artifact
        .windows(image.len())
        .position(|w| w == image.as_slice())
        .unwrap()
        + 100;
    let mut bad = artifact.clone();
    bad[at] ^= 1;
    let outcome = run_whole(&bad);
    assert_eq!(
        outcome.error,
        Some(ArtifactError::ChecksumMismatch(Member::Payload))
    );
    assert!(!outcome.events.contains(&Event::Done));
    assert!(!outcome.events.contains(&Event::PayloadEnd));
}

#[test]
fn header_and_manifest_corruption() {
    // Compressed header bytes: the member checksum (or gzip) must catch it.
    let artifact = fixture("rootfs-gzip.mender");
    let header_at = find(&artifact, b"header.tar.gz") + 512 + 200;
    let mut bad = artifact.clone();
    bad[header_at] ^= 0x40;
    let outcome = run_whole(&bad);
    assert!(outcome.error.is_some());
    assert!(!outcome.events.contains(&Event::HeaderReady));
    // Manifest: a changed checksum digit.
    let manifest_at = find(&artifact, b"manifest\0") + 512 + 3;
    let mut bad = artifact.clone();
    bad[manifest_at] = if bad[manifest_at] == b'0' { b'1' } else { b'0' };
    let outcome = run_whole(&bad);
    assert!(
        matches!(
            outcome.error,
            Some(ArtifactError::ChecksumMismatch(_) | ArtifactError::Tar { .. })
        ),
        "{:?}",
        outcome.error
    );
    assert!(!outcome.events.contains(&Event::Done));
    // Uncompressed header: the header checksum must catch a changed byte
    // inside header-info.
    let artifact = fixture("rootfs-none.mender");
    let at = find(&artifact, b"beaglebone");
    let mut bad = artifact.clone();
    bad[at] = b'B';
    assert_eq!(
        run_whole(&bad).error,
        Some(ArtifactError::ChecksumMismatch(Member::Header))
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

#[test]
fn truncation_never_completes() {
    for name in ["rootfs-none.mender", "rootfs-gzip.mender"] {
        let artifact = fixture(name);
        // The end-of-archive marker starts after the last data block; the
        // artifact is complete from there on.
        let full = run_whole(&artifact);
        assert_eq!(full.error, None);
        for cut in (0..artifact.len() - 1024).step_by(37) {
            let outcome = run(&artifact[..cut], &[usize::MAX / 2], 4096);
            assert!(!outcome.events.contains(&Event::Done), "{name}: cut {cut}");
            assert!(
                outcome.error.is_some(),
                "{name}: cut {cut}: finish must fail"
            );
        }
    }
}

/// Builds an outer tar from `(name, contents)` members.
fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in members {
        let mut header = [0u8; 512];
        header[..name.len()].copy_from_slice(name.as_bytes());
        header[100..108].copy_from_slice(b"0000644\0");
        header[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// Splits a tar into `(name, contents)` members (test helper, ustar only).
fn members_of(artifact: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 512 <= artifact.len() && artifact[pos..pos + 512].iter().any(|&b| b != 0) {
        let header = &artifact[pos..pos + 512];
        let name_end = header[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let name = String::from_utf8(header[..name_end].to_vec()).unwrap();
        let size_text = core::str::from_utf8(&header[124..136])
            .unwrap()
            .trim_matches(|c: char| c == '\0' || c == ' ');
        let size = usize::from_str_radix(size_text, 8).unwrap();
        out.push((name, artifact[pos + 512..pos + 512 + size].to_vec()));
        pos += 512 + size.div_ceil(512) * 512;
    }
    out
}

#[test]
fn member_order_is_enforced() {
    let members = members_of(&fixture("rootfs-gzip.mender"));
    let refs: Vec<(&str, &[u8])> = members
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    // Sanity: re-tarring in order still reads.
    assert_eq!(run_whole(&tar_of(&refs)).error, None);
    // manifest before version.
    let swapped = [refs[1], refs[0], refs[2], refs[3]];
    assert_eq!(
        run_whole(&tar_of(&swapped)).error,
        Some(ArtifactError::UnexpectedMember)
    );
    // data before header.
    let swapped = [refs[0], refs[1], refs[3], refs[2]];
    let outcome = run_whole(&tar_of(&swapped));
    assert_eq!(outcome.error, Some(ArtifactError::UnexpectedMember));
    // Unknown member.
    let extra = [
        refs[0],
        refs[1],
        ("surprise", b"x".as_slice()),
        refs[2],
        refs[3],
    ];
    assert_eq!(
        run_whole(&tar_of(&extra)).error,
        Some(ArtifactError::UnexpectedMember)
    );
    // Delta artifacts are refused clearly.
    let delta = [
        refs[0],
        refs[1],
        ("manifest-augment", b"".as_slice()),
        refs[2],
        refs[3],
    ];
    assert_eq!(
        run_whole(&tar_of(&delta)).error,
        Some(ArtifactError::UnsupportedDelta)
    );
    // Two payloads.
    let two = [
        refs[0],
        refs[1],
        refs[2],
        refs[3],
        ("data/0001.tar.gz", refs[3].1),
    ];
    assert_eq!(
        run_whole(&tar_of(&two)).error,
        Some(ArtifactError::TooManyPayloads)
    );
    // Missing payload.
    let none = [refs[0], refs[1], refs[2]];
    assert_eq!(
        run_whole(&tar_of(&none)).error,
        Some(ArtifactError::MissingPayload)
    );
    // Unsupported version.
    let v9 = [
        ("version", br#"{"format":"mender","version":9}"#.as_slice()),
        refs[1],
        refs[2],
        refs[3],
    ];
    assert_eq!(
        run_whole(&tar_of(&v9)).error,
        Some(ArtifactError::UnsupportedVersion(9))
    );
    // A changed version file no longer matches the manifest.
    let v3 = [
        ("version", br#"{"version":3,"format":"mender"}"#.as_slice()),
        refs[1],
        refs[2],
        refs[3],
    ];
    assert_eq!(
        run_whole(&tar_of(&v3)).error,
        Some(ArtifactError::ChecksumMismatch(Member::Version))
    );
}

#[test]
fn signature_checkpoint() {
    use otalite::artifact::verify::VerifyKey;
    let mut output = vec![0u8; 4096];
    for (name, signed) in [
        ("rootfs-gzip.mender", false),
        ("rootfs-gzip-signed.mender", true),
    ] {
        let artifact = fixture(name);
        let mut window = vec![0u8; WINDOW_LEN];
        let mut reader = ArtifactReader::new(&mut window).unwrap();
        let (event, used) = reader.feed(&artifact, &mut output).unwrap();
        assert_eq!(event, Event::SignatureCheck);
        assert_eq!(reader.signature().is_empty(), !signed);
        // Feeding on without the check is refused (and not fatal).
        assert_eq!(
            reader.feed(&artifact[used..], &mut output),
            Err(ArtifactError::SignatureNotChecked)
        );
        // A real key that did not sign the fixture: an RSA key from the
        // verify fixtures.
        let other = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/keys/rsa2048.pub.pem"),
        )
        .unwrap();
        let keys = [VerifyKey::from_pem(&other).unwrap()];
        let expected = if signed {
            ArtifactError::SignatureInvalid
        } else {
            ArtifactError::SignatureRequired
        };
        assert_eq!(reader.verify_signature(&keys), Err(expected));
        assert_eq!(reader.feed(&artifact[used..], &mut output), Err(expected));
        assert_eq!(reader.finish(), Err(expected));
        // No keys: accepted, and the header says the signature was not checked.
        let mut window = vec![0u8; WINDOW_LEN];
        let mut reader = ArtifactReader::new(&mut window).unwrap();
        let (event, used) = reader.feed(&artifact, &mut output).unwrap();
        assert_eq!(event, Event::SignatureCheck);
        reader.verify_signature(&[]).unwrap();
        let mut used2 = 0;
        loop {
            let (event, n) = reader.feed(&artifact[used + used2..], &mut output).unwrap();
            used2 += n;
            if event == Event::HeaderReady {
                break;
            }
        }
        assert_eq!(reader.header().signed, signed);
        assert!(!reader.header().signature_verified);
        assert_eq!(
            reader.feed(&artifact[used + used2..], &mut output),
            Err(ArtifactError::HeaderNotAccepted)
        );
        reader.accept_header();
        let mut pos = used + used2;
        loop {
            let (event, n) = reader.feed(&artifact[pos..], &mut output).unwrap();
            pos += n;
            if event == Event::Done {
                break;
            }
        }
        reader.finish().unwrap();
        // After Done nothing more is consumed.
        assert_eq!(
            reader.feed(&artifact[pos..], &mut output),
            Ok((Event::Done, 0))
        );
    }
}

#[test]
fn module_image_and_options() {
    let dir = TempDir::new("module");
    std::fs::write(dir.0.join("a.bin"), pseudo_random(10_000, 3)).unwrap();
    std::fs::write(dir.0.join("b.conf"), b"key=value\n").unwrap();
    std::fs::write(
        dir.0.join("meta.json"),
        br#"{"x": [1, "two"], "y": {"z": null}}"#,
    )
    .unwrap();
    let Some(artifact) = mender_artifact(
        &[
            "write",
            "module-image",
            "-T",
            "my-module",
            "-t",
            "dev-a",
            "-n",
            "mod-1",
            "-f",
            "a.bin",
            "-f",
            "b.conf",
            "-m",
            "meta.json",
            "-o",
            "out.mender",
            "-g",
            "grp",
            "-G",
            "grp-old",
            "-p",
            "my.key:v1",
        ],
        &dir.0,
    ) else {
        return;
    };
    let outcome = run(&artifact, &[1000], 777);
    assert_eq!(outcome.error, None);
    let header = outcome.header.unwrap();
    assert_eq!(header.payload_type.as_deref(), Some("my-module"));
    assert_eq!(header.artifact_group.as_deref(), Some("grp"));
    assert!(header
        .depends
        .iter()
        .any(|d| d.key == "artifact_group" && d.values().next() == Some("grp-old")));
    assert!(header
        .provides
        .iter()
        .any(|p| p.key == "my.key" && p.value == "v1"));
    let starts = outcome
        .events
        .iter()
        .filter(|e| matches!(e, Event::PayloadStart { .. }))
        .count();
    assert_eq!(starts, 2);
    let mut expected = pseudo_random(10_000, 3);
    expected.extend_from_slice(b"key=value\n");
    assert!(outcome.payload == expected);
}

#[test]
fn bootstrap_artifact_has_no_payload() {
    let dir = TempDir::new("bootstrap");
    let Some(artifact) = mender_artifact(
        &[
            "write",
            "bootstrap-artifact",
            "-t",
            "dev-a",
            "-n",
            "boot-1",
            "-o",
            "out.mender",
            "-p",
            "rootfs-image.version:boot-1",
        ],
        &dir.0,
    ) else {
        return;
    };
    let outcome = run_whole(&artifact);
    assert_eq!(outcome.error, None);
    assert_eq!(
        outcome.events,
        [Event::SignatureCheck, Event::HeaderReady, Event::Done]
    );
    assert_eq!(outcome.header.unwrap().payload_type, None);
}

/// xorshift64*.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn never_panics_on_garbage_or_mutations() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let bases = [
        fixture("rootfs-none.mender"),
        fixture("rootfs-gzip.mender"),
        fixture("rootfs-zstd.mender"),
    ];
    for iteration in 0..3000 {
        let data = if iteration % 10 == 0 {
            (0..rng.below(4096))
                .map(|_| rng.next() as u8)
                .collect::<Vec<_>>()
        } else {
            let mut data = bases[iteration % bases.len()].clone();
            for _ in 0..1 + rng.below(4) {
                if data.is_empty() {
                    break;
                }
                let at = rng.below(data.len());
                match rng.below(3) {
                    0 => data[at] ^= 1 << rng.below(8),
                    1 => data[at] = rng.next() as u8,
                    _ => data.truncate(at),
                }
            }
            data
        };
        let chunk = 1 + rng.below(2000);
        let out = 1 + rng.below(5000);
        let _ = run(&data, &[chunk], out);
    }
}

/// Prints the reader's size and throughput on 64 MiB payloads. Run with
/// `cargo test --release -p otalite --test reader throughput -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: prints numbers, asserts nothing"]
fn throughput() {
    println!(
        "size_of::<ArtifactReader>() = {}",
        core::mem::size_of::<ArtifactReader<'static>>()
    );
    let dir = TempDir::new("bench");
    let image = pseudo_random(64 << 20, 11);
    std::fs::write(dir.0.join("img.ext4"), &image).unwrap();
    for compression in ["none", "gzip", "lzma"] {
        let Some(artifact) = mender_artifact(
            &[
                "write",
                "rootfs-image",
                "-t",
                "b",
                "-n",
                "r",
                "-f",
                "img.ext4",
                "-o",
                "out.mender",
                "--compression",
                compression,
            ],
            &dir.0,
        ) else {
            return;
        };
        let mut window = vec![0u8; WINDOW_LEN];
        let mut output = vec![0u8; 256 * 1024];
        let start = std::time::Instant::now();
        let mut reader = ArtifactReader::new(&mut window).unwrap();
        let mut pos = 0;
        let mut total = 0usize;
        loop {
            let end = (pos + 256 * 1024).min(artifact.len());
            let (event, n) = reader.feed(&artifact[pos..end], &mut output).unwrap();
            pos += n;
            match event {
                Event::SignatureCheck => reader.verify_signature(&[]).unwrap(),
                Event::HeaderReady => reader.accept_header(),
                Event::PayloadData(n) => total += n,
                Event::Done => break,
                _ => {}
            }
        }
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(total, image.len());
        println!(
            "{compression}: {} MiB payload in {secs:.3} s = {:.0} MiB/s",
            total >> 20,
            (total >> 20) as f64 / secs
        );
    }
}

/// The signed fixture verifies with its own key through the real verifier,
/// and the header records it.
#[test]
fn signed_fixture_verifies_with_its_key() {
    use otalite::artifact::verify::VerifyKey;
    let pem = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/artifacts/ecdsa-p256.pub.pem"),
    )
    .unwrap();
    let key = VerifyKey::from_pem(&pem).unwrap();
    let artifact = fixture("rootfs-gzip-signed.mender");
    let mut window = vec![0u8; WINDOW_LEN];
    let mut output = vec![0u8; 4096];
    let mut reader = ArtifactReader::new(&mut window).unwrap();
    let mut pos = 0;
    loop {
        let (event, n) = reader.feed(&artifact[pos..], &mut output).unwrap();
        pos += n;
        match event {
            Event::SignatureCheck => reader
                .verify_signature(core::slice::from_ref(&key))
                .unwrap(),
            Event::HeaderReady => {
                assert!(reader.header().signed && reader.header().signature_verified);
                reader.accept_header();
            }
            Event::Done => break,
            _ => {}
        }
    }
    reader.finish().unwrap();
}

/// Feeds `artifact` in `chunk`-byte pieces, then ends the input with
/// [`ArtifactReader::end_of_input`]; returns the header and the result.
fn run_to_end(
    artifact: &[u8],
    chunk: usize,
) -> (Option<ArtifactHeader>, Result<(), ArtifactError>) {
    let mut window = vec![0u8; WINDOW_LEN];
    let mut reader = ArtifactReader::new(&mut window).unwrap();
    let mut output = vec![0u8; 4096];
    let mut header = None;
    let mut pos = 0;
    while pos < artifact.len() {
        let end = (pos + chunk).min(artifact.len());
        let (event, consumed) = match reader.feed(&artifact[pos..end], &mut output) {
            Ok(step) => step,
            Err(error) => return (header, Err(error)),
        };
        pos += consumed;
        match event {
            Event::SignatureCheck => reader.verify_signature(&[]).unwrap(),
            Event::HeaderReady => {
                header = Some(reader.header().clone());
                reader.accept_header();
            }
            Event::Done => break,
            _ => {}
        }
    }
    (header, reader.end_of_input())
}

#[test]
fn missing_end_of_archive_blocks_are_complete_at_every_split() {
    // rootfs-none.mender without its two zero blocks, and with one.
    for name in [
        "rootfs-none.mender",
        "rootfs-no-end-blocks.mender",
        "rootfs-one-zero-block.mender",
    ] {
        let artifact = fixture(name);
        for chunk in [1, 511, 512, 513, 4096, artifact.len()] {
            let (header, result) = run_to_end(&artifact, chunk);
            assert_eq!(result, Ok(()), "{name} in {chunk}-byte pieces");
            assert_eq!(header.unwrap().artifact_name.as_str(), "release-2");
        }
    }
    // Cut anywhere before the last member's end: truncated.
    let full = fixture("rootfs-no-end-blocks.mender");
    for cut in [0, 511, 512, 1000, full.len() - 512, full.len() - 1] {
        let (_, result) = run_to_end(&full[..cut], 700);
        assert!(result.is_err(), "cut at {cut}");
    }
    // Half a zero block is not an end.
    let mut half = full.clone();
    half.extend_from_slice(&[0u8; 100]);
    assert_eq!(run_to_end(&half, 512).1, Err(ArtifactError::Truncated));
}

#[test]
fn empty_payload_list_is_refused() {
    let (_, result) = run_to_end(&fixture("empty-payloads.mender"), 4096);
    let error = result.unwrap_err();
    assert_eq!(error, ArtifactError::NoPayload);
    assert!(error.to_string().contains("empty payload list"), "{error}");
}

#[test]
fn realistic_header_fits_the_fixed_capacities() {
    // 200-byte name, 20 device types, 12 artifact_name depends, 12 depends
    // keys, 20 provides (plus the two mender-artifact adds).
    let (header, result) = run_to_end(&fixture("realistic-header.mender"), 1000);
    assert_eq!(result, Ok(()));
    let header = header.unwrap();
    assert_eq!(header.artifact_name.as_str(), "n".repeat(200));
    assert_eq!(header.device_types.len(), 20);
    assert_eq!(
        header
            .depends
            .get("artifact_name")
            .unwrap()
            .values()
            .count(),
        12
    );
    assert_eq!(header.depends.len(), 13);
    assert_eq!(header.provides.len(), 22);
    assert_eq!(header.provides.get("fleet.key-20"), Some("value-20"));
    assert_eq!(
        header.provides.get("rootfs-image.version"),
        Some("n".repeat(200).as_str())
    );
}
