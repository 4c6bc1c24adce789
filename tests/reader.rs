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
            Event::NeedsMoreInput => {
                if pos == artifact.len() {
                    break;
                }
            }
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
            header
                .device_types
                .iter()
                .map(|d| d.as_str())
                .collect::<Vec<_>>(),
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
