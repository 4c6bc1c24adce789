//! Artifact signature verification against real peers: keys, signatures and
//! artifacts made by `openssl` and `mender-artifact` (committed fixtures in
//! `tests/fixtures/keys/`, see its README), plus a run-time regeneration
//! when those tools are installed, plus malformed-input robustness.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64ct::{Base64, Encoding as _};
use otalite::artifact::verify::{KeyError, SignatureError, VerifyKey};
use sha2::{Digest, Sha256};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("fixtures/keys/", $name)).as_slice()
    };
}

const MESSAGE: &[u8] = fixture!("message.txt");

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn key(pem: &[u8]) -> VerifyKey {
    VerifyKey::from_pem(pem).expect("fixture key loads")
}

/// Base64 body of a PEM file, decoded: the SPKI DER.
fn pem_to_der(pem: &[u8]) -> Vec<u8> {
    let text = core::str::from_utf8(pem).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut out = vec![0u8; body.len()];
    let n = Base64::decode(body.as_bytes(), &mut out).unwrap().len();
    out.truncate(n);
    out
}

/// Members of an uncompressed (outer) artifact tar: (name, contents).
fn tar_members(tar: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() {
        let header = &tar[at..at + 512];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let name_end = header[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let name = String::from_utf8(header[..name_end].to_vec()).unwrap();
        let size_field = core::str::from_utf8(&header[124..136]).unwrap();
        let size =
            usize::from_str_radix(size_field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
                .unwrap();
        let data = tar[at + 512..at + 512 + size].to_vec();
        out.push((name, data));
        at += 512 + size.div_ceil(512) * 512;
    }
    out
}

/// `manifest` and decoded `manifest.sig` of an artifact.
fn manifest_and_sig(artifact: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let members = tar_members(artifact);
    let get = |n: &str| {
        members
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, d)| d.clone())
    };
    let manifest = get("manifest").expect("manifest");
    let sig_b64 = get("manifest.sig").expect("manifest.sig");
    let mut sig = vec![0u8; sig_b64.len()];
    let n = Base64::decode(&sig_b64, &mut sig).unwrap().len();
    sig.truncate(n);
    (manifest, sig)
}

/// DER ECDSA signature -> raw r || s (independent of the crate's parser).
fn der_to_raw(der: &[u8]) -> Vec<u8> {
    assert_eq!(der[0], 0x30);
    let mut at = 2;
    let mut raw = Vec::new();
    for _ in 0..2 {
        assert_eq!(der[at], 0x02);
        let len = der[at + 1] as usize;
        let mut v = der[at + 2..at + 2 + len].to_vec();
        while v.len() > 32 {
            assert_eq!(v.remove(0), 0);
        }
        raw.extend(core::iter::repeat_n(0, 32 - v.len()));
        raw.extend(v);
        at += 2 + len;
    }
    raw
}

/// raw r || s -> minimal DER.
fn raw_to_der(raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for half in raw.chunks(32) {
        let mut v: Vec<u8> = half.iter().copied().skip_while(|&b| b == 0).collect();
        if v.first().is_none_or(|&b| b & 0x80 != 0) {
            v.insert(0, 0);
        }
        body.push(0x02);
        body.push(v.len() as u8);
        body.extend(v);
    }
    let mut der = vec![0x30, body.len() as u8];
    der.extend(body);
    der
}

/// Checks that `sig` verifies `message` under `key`, and that flipping any of
/// a few message or signature bytes makes it fail.
fn assert_verifies(key: &VerifyKey, message: &[u8], sig: &[u8]) {
    let digest = sha256(message);
    assert_eq!(
        key.verify_sha256(&digest, sig),
        Ok(()),
        "{}",
        key.algorithm()
    );
    for at in [0, message.len() / 2, message.len() - 1] {
        let mut m = message.to_vec();
        m[at] ^= 0x01;
        assert_eq!(
            key.verify_sha256(&sha256(&m), sig),
            Err(SignatureError::Invalid)
        );
    }
    for at in [0, 1, sig.len() / 2, sig.len() - 1] {
        let mut s = sig.to_vec();
        s[at] ^= 0x01;
        assert!(
            key.verify_sha256(&digest, &s).is_err(),
            "{} flipped sig byte {at}",
            key.algorithm()
        );
    }
}

#[test]
fn rsa_openssl_signatures() {
    let cases: [(&[u8], &[u8], &str, usize); 3] = [
        (
            fixture!("rsa2048.pub.pem"),
            fixture!("rsa2048.message.sig"),
            "RSA-2048",
            256,
        ),
        (
            fixture!("rsa3072.pub.pem"),
            fixture!("rsa3072.message.sig"),
            "RSA-3072",
            384,
        ),
        (
            fixture!("rsa4096.pub.pem"),
            fixture!("rsa4096.message.sig"),
            "RSA-4096",
            512,
        ),
    ];
    for (pem, sig, name, len) in cases {
        let k = key(pem);
        assert_eq!(k.algorithm(), name);
        assert_eq!(sig.len(), len);
        assert_verifies(&k, MESSAGE, sig);
        // Same key from DER.
        let k = VerifyKey::from_spki_der(&pem_to_der(pem)).unwrap();
        assert_eq!(k.verify_sha256(&sha256(MESSAGE), sig), Ok(()));
        // Go requires exactly k bytes: no left-padding, no truncation.
        let mut padded = vec![0u8];
        padded.extend_from_slice(sig);
        assert_eq!(
            k.verify_sha256(&sha256(MESSAGE), &padded),
            Err(SignatureError::Length)
        );
        assert_eq!(
            k.verify_sha256(&sha256(MESSAGE), &sig[1..]),
            Err(SignatureError::Length)
        );
    }
}

#[test]
fn rsa_pkcs1_pem() {
    let k = key(fixture!("rsa2048.pkcs1.pub.pem"));
    assert_eq!(k.algorithm(), "RSA-2048");
    assert_verifies(&k, MESSAGE, fixture!("rsa2048.message.sig"));
}

#[test]
fn rsa_wrong_key() {
    let digest = sha256(MESSAGE);
    let sig = fixture!("rsa2048.message.sig");
    let other = key(fixture!("rsa2048-other.pub.pem"));
    assert!(matches!(
        other.verify_sha256(&digest, sig),
        Err(SignatureError::Invalid | SignatureError::Malformed)
    ));
    assert_eq!(
        key(fixture!("rsa3072.pub.pem")).verify_sha256(&digest, sig),
        Err(SignatureError::Length)
    );
    assert!(key(fixture!("ec256.pub.pem"))
        .verify_sha256(&digest, sig)
        .is_err());
}

#[test]
fn rsa_signature_not_below_modulus() {
    let k = key(fixture!("rsa2048.pub.pem"));
    assert_eq!(
        k.verify_sha256(&sha256(MESSAGE), &[0xff; 256]),
        Err(SignatureError::Malformed)
    );
    assert_eq!(
        k.verify_sha256(&sha256(MESSAGE), &[0x00; 256]),
        Err(SignatureError::Invalid)
    );
}

#[test]
fn ecdsa_openssl_signatures_der_and_raw() {
    let k = key(fixture!("ec256.pub.pem"));
    assert_eq!(k.algorithm(), "ECDSA-P256");
    let der = fixture!("ec256.message.der.sig");
    let raw = fixture!("ec256.message.raw.sig");
    assert_eq!(der_to_raw(der), raw);
    assert_eq!(raw_to_der(raw), der);
    assert_verifies(&k, MESSAGE, der);
    assert_verifies(&k, MESSAGE, raw);
    let other = key(fixture!("ec256-other.pub.pem"));
    assert_eq!(
        other.verify_sha256(&sha256(MESSAGE), raw),
        Err(SignatureError::Invalid)
    );
    assert_eq!(
        other.verify_sha256(&sha256(MESSAGE), der),
        Err(SignatureError::Invalid)
    );
}

/// P-256 group order.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

fn sub_be(a: &[u8; 32], b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        out[i] = d.rem_euclid(256) as u8;
        borrow = i16::from(d < 0);
    }
    out
}

#[test]
fn ecdsa_high_s_and_range() {
    // Like OpenSSL and Go, P-256 verification accepts both s and n - s.
    let k = key(fixture!("ec256.pub.pem"));
    let raw = fixture!("ec256.message.raw.sig");
    let mut flipped = raw[..32].to_vec();
    flipped.extend(sub_be(&P256_N, &raw[32..]));
    assert_eq!(k.verify_sha256(&sha256(MESSAGE), &flipped), Ok(()));
    assert_eq!(
        k.verify_sha256(&sha256(MESSAGE), &raw_to_der(&flipped)),
        Ok(())
    );
    // r = 0, s = n: out of range.
    let mut bad = vec![0u8; 32];
    bad.extend(P256_N);
    assert_eq!(
        k.verify_sha256(&sha256(MESSAGE), &bad),
        Err(SignatureError::Malformed)
    );
    // DER: trailing bytes, non-minimal integer, 33-byte magnitude.
    let mut der = fixture!("ec256.message.der.sig").to_vec();
    der.push(0);
    assert_eq!(
        k.verify_sha256(&sha256(MESSAGE), &der),
        Err(SignatureError::Malformed)
    );
    let too_long = [0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00];
    assert_eq!(
        k.verify_sha256(&sha256(MESSAGE), &too_long),
        Err(SignatureError::Malformed)
    );
    let non_minimal = [0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01];
    assert_eq!(
        k.verify_sha256(&sha256(MESSAGE), &non_minimal),
        Err(SignatureError::Malformed)
    );
    let mut wide = vec![0x30, 0x26, 0x02, 0x21, 0x01];
    wide.extend([0u8; 32]);
    wide.extend([0x02, 0x01, 0x01]);
    assert_eq!(
        k.verify_sha256(&sha256(MESSAGE), &wide),
        Err(SignatureError::Malformed)
    );
}

fn check_artifact(artifact: &[u8], right: &VerifyKey, wrong: &[VerifyKey]) {
    let (manifest, sig) = manifest_and_sig(artifact);
    assert_verifies(right, &manifest, &sig);
    for w in wrong {
        assert!(
            w.verify_sha256(&sha256(&manifest), &sig).is_err(),
            "{}",
            w.algorithm()
        );
    }
}

#[test]
fn mender_artifact_signatures() {
    let rsa = key(fixture!("rsa2048.pub.pem"));
    let ec = key(fixture!("ec256.pub.pem"));
    let rsa_other = key(fixture!("rsa2048-other.pub.pem"));
    let ec_other = key(fixture!("ec256-other.pub.pem"));
    let rsa_art = fixture!("rsa2048.mender");
    let ec_art = fixture!("ec256.mender");
    // mender-artifact 3.x writes raw r || s for ECDSA.
    assert_eq!(manifest_and_sig(ec_art).1.len(), 64);
    check_artifact(rsa_art, &rsa, &[rsa_other, ec.clone()]);
    check_artifact(ec_art, &ec, &[ec_other, rsa]);
}

#[test]
fn refused_keys() {
    assert_eq!(
        VerifyKey::from_pem(fixture!("rsa1024.pub.pem")).err(),
        Some(KeyError::RsaModulusSize { bits: 1024 })
    );
    assert_eq!(
        VerifyKey::from_pem(fixture!("ec384.pub.pem")).err(),
        Some(KeyError::UnsupportedCurve)
    );
    assert_eq!(
        VerifyKey::from_pem(fixture!("ed25519.pub.pem")).err(),
        Some(KeyError::UnsupportedAlgorithm)
    );
    let private =
        b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
    assert_eq!(
        VerifyKey::from_pem(private).err(),
        Some(KeyError::NotPublicKey)
    );
    assert_eq!(VerifyKey::from_pem(b"hello").err(), Some(KeyError::NotPem));
    // Errors print something useful.
    let e = VerifyKey::from_pem(fixture!("rsa1024.pub.pem")).unwrap_err();
    assert!(e.to_string().contains("1024"), "{e}");
}

const ALL_KEYS: [&[u8]; 10] = [
    fixture!("rsa2048.pub.pem"),
    fixture!("rsa2048.pkcs1.pub.pem"),
    fixture!("rsa3072.pub.pem"),
    fixture!("rsa4096.pub.pem"),
    fixture!("ec256.pub.pem"),
    fixture!("ec256-other.pub.pem"),
    fixture!("ec384.pub.pem"),
    fixture!("ed25519.pub.pem"),
    fixture!("rsa1024.pub.pem"),
    fixture!("rsa2048-other.pub.pem"),
];

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn truncated_keys_fail_without_panicking() {
    for pem in ALL_KEYS {
        // Truncating the PEM anywhere before the END line's dashes fails.
        let end = pem.len() - pem.iter().rev().position(|&b| b == b'Y').unwrap();
        for len in 0..end + 4 {
            assert!(VerifyKey::from_pem(&pem[..len]).is_err(), "len {len}");
        }
        let der = pem_to_der(pem);
        for len in 0..der.len() {
            assert!(
                VerifyKey::from_spki_der(&der[..len]).is_err(),
                "der len {len}"
            );
        }
        // Trailing garbage after the SPKI is refused.
        let mut long = der.clone();
        long.push(0);
        assert!(VerifyKey::from_spki_der(&long).is_err());
    }
}

#[test]
fn mutated_and_random_keys_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for pem in ALL_KEYS {
        let der = pem_to_der(pem);
        for at in 0..der.len() {
            for _ in 0..4 {
                let mut d = der.clone();
                d[at] = rng.next() as u8;
                let _ = VerifyKey::from_spki_der(&d);
            }
        }
        for at in 0..pem.len() {
            let mut p = pem.to_vec();
            p[at] = rng.next() as u8;
            let _ = VerifyKey::from_pem(&p);
        }
    }
    for _ in 0..5000 {
        let len = (rng.next() % 700) as usize;
        let mut d = rng.bytes(len);
        let _ = VerifyKey::from_spki_der(&d);
        // Make it look like a SEQUENCE to get deeper.
        if d.len() > 4 {
            d[0] = 0x30;
            d[1] = 0x82;
            d[2] = ((len - 4) >> 8) as u8;
            d[3] = (len - 4) as u8;
            let _ = VerifyKey::from_spki_der(&d);
        }
        let mut pem = b"-----BEGIN PUBLIC KEY-----\n".to_vec();
        pem.extend(rng.bytes(len));
        pem.extend(b"\n-----END PUBLIC KEY-----\n");
        let _ = VerifyKey::from_pem(&pem);
    }
}

#[test]
fn truncated_and_random_signatures_fail_without_panicking() {
    let digest = sha256(MESSAGE);
    let cases: [(&[u8], &[u8]); 5] = [
        (fixture!("rsa2048.pub.pem"), fixture!("rsa2048.message.sig")),
        (fixture!("rsa3072.pub.pem"), fixture!("rsa3072.message.sig")),
        (fixture!("rsa4096.pub.pem"), fixture!("rsa4096.message.sig")),
        (fixture!("ec256.pub.pem"), fixture!("ec256.message.der.sig")),
        (fixture!("ec256.pub.pem"), fixture!("ec256.message.raw.sig")),
    ];
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    for (pem, sig) in cases {
        let k = key(pem);
        for len in 0..sig.len() {
            assert!(
                k.verify_sha256(&digest, &sig[..len]).is_err(),
                "{} len {len}",
                k.algorithm()
            );
        }
        for _ in 0..50 {
            let len = (rng.next() % 600) as usize;
            assert!(k.verify_sha256(&digest, &rng.bytes(len)).is_err());
            assert!(k.verify_sha256(&digest, &rng.bytes(sig.len())).is_err());
        }
    }
}

// ---------------------------------------------------------------------------
// Run-time regeneration with the real tools (skipped when they are missing).

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        || Command::new(tool)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
}

fn run(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn regenerated_with_openssl_and_mender_artifact() {
    if !have("openssl") || !have("mender-artifact") {
        eprintln!("skipping: openssl or mender-artifact not installed");
        return;
    }
    let dir = TempDir(std::env::temp_dir().join(format!("otalite-verify-{}", std::process::id())));
    let d = dir.0.as_path();
    std::fs::create_dir_all(d).unwrap();
    std::fs::write(d.join("message.txt"), MESSAGE).unwrap();
    std::fs::write(d.join("img"), b"tiny rootfs image\n").unwrap();

    let mut keys = Vec::new();
    for (name, genopts) in [
        (
            "rsa2048",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"][..],
        ),
        (
            "rsa4096",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"][..],
        ),
        (
            "ec256",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
        ),
    ] {
        let private = format!("{name}.key.pem");
        let public = format!("{name}.pub.pem");
        let traditional = format!("{name}.trad.pem");
        let sig = format!("{name}.sig");
        let artifact = format!("{name}.mender");
        let mut args = vec!["genpkey"];
        args.extend_from_slice(genopts);
        args.extend_from_slice(&["-out", &private]);
        run(d, "openssl", &args);
        run(
            d,
            "openssl",
            &["pkey", "-in", &private, "-pubout", "-out", &public],
        );
        // mender-artifact 3.x wants PKCS#1 / SEC1 ("traditional") private keys.
        run(
            d,
            "openssl",
            &[
                "pkey",
                "-in",
                &private,
                "-traditional",
                "-out",
                &traditional,
            ],
        );
        run(
            d,
            "openssl",
            &[
                "dgst",
                "-sha256",
                "-sign",
                &private,
                "-out",
                &sig,
                "message.txt",
            ],
        );
        #[rustfmt::skip]
        run(d, "mender-artifact", &[
            "write", "rootfs-image", "-t", "dev", "-n", "rel", "-f", "img",
            "-o", &artifact, "-k", &traditional,
        ]);

        let k = key(&read(d, &public));
        let sig = read(d, &sig);
        assert_verifies(&k, MESSAGE, &sig);
        if name.starts_with("ec") {
            assert_verifies(&k, MESSAGE, &der_to_raw(&sig));
        }
        let (manifest, manifest_sig) = manifest_and_sig(&read(d, &artifact));
        assert_verifies(&k, &manifest, &manifest_sig);
        keys.push((k, manifest, manifest_sig));
    }
    // Every key refuses every other key's artifact.
    for (i, (k, _, _)) in keys.iter().enumerate() {
        for (j, (_, manifest, sig)) in keys.iter().enumerate() {
            if i != j {
                assert!(k.verify_sha256(&sha256(manifest), sig).is_err());
            }
        }
    }
}

// ---------------------------------------------------------------------------

/// Not an assertion: prints the time per verification. For meaningful
/// numbers run `cargo test --release --test verify timing -- --nocapture`.
#[test]
fn timing() {
    let digest = sha256(MESSAGE);
    let cases: [(&[u8], &[u8]); 4] = [
        (fixture!("rsa2048.pub.pem"), fixture!("rsa2048.message.sig")),
        (fixture!("rsa3072.pub.pem"), fixture!("rsa3072.message.sig")),
        (fixture!("rsa4096.pub.pem"), fixture!("rsa4096.message.sig")),
        (fixture!("ec256.pub.pem"), fixture!("ec256.message.raw.sig")),
    ];
    let iterations = if cfg!(debug_assertions) { 3 } else { 200 };
    for (pem, sig) in cases {
        let start = std::time::Instant::now();
        let k = key(pem);
        let load = start.elapsed();
        let start = std::time::Instant::now();
        for _ in 0..iterations {
            assert_eq!(k.verify_sha256(core::hint::black_box(&digest), sig), Ok(()));
        }
        let per = start.elapsed() / iterations;
        eprintln!("{:>10}: verify {per:?} (key load {load:?})", k.algorithm());
    }
}
