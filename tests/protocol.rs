//! Device-API messages end to end on the host: identity and inventory
//! scripts in a temp dir produce the expected bodies, and device keys of
//! every type sign auth requests that an independent implementation (the
//! `openssl` command) verifies.

use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;
use otalite::protocol::auth::write_auth_request;
use otalite::protocol::inventory::{write_inventory, InventoryBase};
use otalite::protocol::keyvalue::Attributes;
use otalite_host::identity::{run_identity, run_inventory, IdentityError};
use otalite_host::keys::{base64_encode, DeviceKey, KeySource, KeyType};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "otalite-protocol-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn script(path: &Path, body: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

const TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn identity_script_gives_the_go_auth_body() {
    let share = TempDir::new("identity");
    let path = share.0.join("identity/mender-device-identity");
    script(
        &path,
        "echo mac=02:00:00:00:00:01; echo; echo serial=A=1; echo mac=02:00:00:00:00:02; echo junk >&2",
        0o755,
    );
    let identity = run_identity(&share.0, TIMEOUT).unwrap();
    let texts = identity.texts();
    let mut body = [0u8; 1024];
    let pem = "-----BEGIN PUBLIC KEY-----\nMCow\n-----END PUBLIC KEY-----\n";
    let len = write_auth_request(&Attributes::new(&texts), pem, "tok", &mut body).unwrap();
    assert_eq!(
        core::str::from_utf8(&body[..len]).unwrap(),
        concat!(
            r#"{"id_data":"{\"mac\":[\"02:00:00:00:00:01\",\"02:00:00:00:00:02\"],\"serial\":\"A=1\"}","#,
            r#""tenant_token":"tok","pubkey":"-----BEGIN PUBLIC KEY-----\nMCow\n-----END PUBLIC KEY-----\n"}"#,
            "\n"
        )
    );
}

#[test]
fn identity_failures() {
    let share = TempDir::new("identity-fail");
    let path = share.0.join("identity/mender-device-identity");
    assert!(matches!(
        run_identity(&share.0, TIMEOUT),
        Err(IdentityError::CannotRun(..))
    ));
    script(&path, "echo mac=1; exit 3", 0o755);
    assert!(matches!(
        run_identity(&share.0, TIMEOUT),
        Err(IdentityError::Failed(..))
    ));
    script(&path, "echo; echo", 0o755);
    assert!(matches!(
        run_identity(&share.0, TIMEOUT),
        Err(IdentityError::Empty(..))
    ));
    script(&path, "echo mac=1; echo oops", 0o755);
    assert!(matches!(
        run_identity(&share.0, TIMEOUT),
        Err(IdentityError::Parse(..))
    ));
    script(&path, "echo mac=1; sleep 30", 0o755);
    let started = std::time::Instant::now();
    assert!(matches!(
        run_identity(&share.0, Duration::from_millis(300)),
        Err(IdentityError::TimedOut(..))
    ));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn inventory_scripts_merge_into_the_body() {
    let share = TempDir::new("inventory");
    let dir = share.0.join("inventory");
    script(
        &dir.join("mender-inventory-b-network"),
        "echo ipv4_eth0=10.0.0.2/8",
        0o755,
    );
    script(
        &dir.join("mender-inventory-a-os"),
        "echo os=Linux; echo ipv4_eth0=192.168.1.10/24; echo device_type=spoofed",
        0o755,
    );
    // Non-zero exit: its lines still count.
    script(
        &dir.join("mender-inventory-c-fails"),
        "echo kernel=6.1; exit 1",
        0o755,
    );
    // A bad line: contributes nothing.
    script(
        &dir.join("mender-inventory-d-bad"),
        "echo good=1; echo bad",
        0o755,
    );
    // Not executable, or not named mender-inventory-*: not run.
    script(
        &dir.join("mender-inventory-e-noexec"),
        "echo noexec=1",
        0o644,
    );
    script(&dir.join("other-script"), "echo other=1", 0o755);
    // Hangs: killed, contributes nothing.
    script(
        &dir.join("mender-inventory-f-hangs"),
        "echo hang=1; sleep 30",
        0o755,
    );

    let outputs = run_inventory(&share.0, Duration::from_millis(500));
    let texts = outputs.texts();
    let base = InventoryBase {
        device_type: "raspberrypi4",
        artifact_name: "release-1",
        client_version: "otalite 0.1.0",
    };
    let mut body = [0u8; 1024];
    let len = write_inventory(&base, &Attributes::new(&texts), &mut body).unwrap();
    assert_eq!(
        core::str::from_utf8(&body[..len]).unwrap(),
        concat!(
            r#"[{"name":"device_type","value":"raspberrypi4"},"#,
            r#"{"name":"artifact_name","value":"release-1"},"#,
            r#"{"name":"mender_client_version","value":"otalite 0.1.0"},"#,
            r#"{"name":"ipv4_eth0","value":["192.168.1.10/24","10.0.0.2/8"]},"#,
            r#"{"name":"kernel","value":"6.1"},"#,
            r#"{"name":"os","value":"Linux"}]"#
        )
    );
}

fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command is needed for this test")
}

/// Signs an auth body with a fresh key of `key_type`, stores the key, and
/// checks the signature and the public key with `openssl`.
fn check_key_type(key_type: KeyType) {
    let data = TempDir::new("keys");
    let source = KeySource::generated_in(&data.0, key_type);
    let key = source.load_or_generate().unwrap();
    assert_eq!(key.key_type(), key_type);
    let key_path = data.0.join("mender-agent.pem");
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    assert!(key
        .public_key_pem()
        .starts_with("-----BEGIN PUBLIC KEY-----\n"));

    // Loading again gives the same key, and does not regenerate.
    let again = source.load_or_generate().unwrap();
    assert_eq!(again.public_key_pem(), key.public_key_pem());

    // OpenSSL derives the same public key from the private key file.
    let derived = openssl(&["pkey", "-in", key_path.to_str().unwrap(), "-pubout"]);
    assert!(derived.status.success(), "{derived:?}");
    assert_eq!(
        core::str::from_utf8(&derived.stdout).unwrap(),
        key.public_key_pem()
    );

    let share = TempDir::new("keys-share");
    script(
        &share.0.join("identity/mender-device-identity"),
        "echo mac=02:00:00:00:00:01",
        0o755,
    );
    let identity = run_identity(&share.0, TIMEOUT).unwrap();
    let texts = identity.texts();
    let mut body = vec![0u8; 4096];
    let len = write_auth_request(
        &Attributes::new(&texts),
        key.public_key_pem(),
        "",
        &mut body,
    )
    .unwrap();
    body.truncate(len);
    let signature = key.sign(&body).unwrap();
    match key_type {
        KeyType::Ed25519 => assert_eq!(signature.len(), 64),
        KeyType::EcdsaP256 => assert_eq!(signature[0], 0x30, "DER SEQUENCE"),
        KeyType::Rsa3072 => assert_eq!(signature.len(), 384),
        _ => unreachable!(),
    }
    assert_eq!(
        key.signature_header(&body).unwrap().len(),
        base64_encode(&signature).len()
    );

    let dir = &data.0;
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let public = write("public.pem", key.public_key_pem().as_bytes());
    let body_path = write("body.json", &body);
    let signature_path = write("body.sig", &signature);
    let verified = match key_type {
        // Pure Ed25519 over the raw body.
        KeyType::Ed25519 => openssl(&[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            &public,
            "-rawin",
            "-in",
            &body_path,
            "-sigfile",
            &signature_path,
        ]),
        // SHA-256, DER ECDSA / PKCS#1 v1.5 RSA.
        _ => openssl(&[
            "dgst",
            "-sha256",
            "-verify",
            &public,
            "-signature",
            &signature_path,
            &body_path,
        ]),
    };
    assert!(
        verified.status.success(),
        "{key_type:?}: {}",
        String::from_utf8_lossy(&verified.stderr)
    );
    // A changed body does not verify.
    let mut tampered = body.clone();
    tampered[len - 2] ^= 1;
    let tampered_path = write("tampered.json", &tampered);
    let refused = match key_type {
        KeyType::Ed25519 => openssl(&[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            &public,
            "-rawin",
            "-in",
            &tampered_path,
            "-sigfile",
            &signature_path,
        ]),
        _ => openssl(&[
            "dgst",
            "-sha256",
            "-verify",
            &public,
            "-signature",
            &signature_path,
            &tampered_path,
        ]),
    };
    assert!(!refused.status.success());
}

#[test]
fn ed25519_key_signs_verifiably() {
    check_key_type(KeyType::Ed25519);
}

#[test]
fn ecdsa_p256_key_signs_verifiably() {
    check_key_type(KeyType::EcdsaP256);
}

#[cfg(feature = "rsa-keygen")]
#[test]
fn rsa_3072_key_signs_verifiably() {
    check_key_type(KeyType::Rsa3072);
}

/// The minimal build (no `rsa-keygen`) refuses to make an RSA key with a
/// message that says why and what to do, and writes no key file; RSA keys
/// made elsewhere still load and sign (`loads_openssl_keys`).
#[cfg(not(feature = "rsa-keygen"))]
#[test]
fn rsa_key_generation_left_out_is_a_clear_error() {
    let error = DeviceKey::generate(KeyType::Rsa3072).err().unwrap();
    let text = error.to_string();
    assert!(text.contains("feature rsa-keygen"), "{text}");
    assert!(text.contains("DeviceKeyType"), "{text}");
    let data = TempDir::new("nokeygen");
    let source = KeySource::generated_in(&data.0, KeyType::Rsa3072);
    assert!(source.load_or_generate().is_err());
    assert_eq!(std::fs::read_dir(&data.0).unwrap().count(), 0);
}

/// Keys made by OpenSSL in every format we claim to read load and give
/// the public key OpenSSL derives.
#[test]
fn loads_openssl_keys() {
    let dir = TempDir::new("openssl-keys");
    let rsa_pkcs8 = dir.0.join("rsa-pkcs8.pem");
    let rsa_pkcs8 = rsa_pkcs8.to_str().unwrap();
    let cases: [(&str, &[&str], KeyType); 5] = [
        (
            "ed25519.pem",
            &["genpkey", "-algorithm", "ed25519"],
            KeyType::Ed25519,
        ),
        (
            "p256-pkcs8.pem",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
            KeyType::EcdsaP256,
        ),
        (
            "p256-sec1.pem",
            &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
            KeyType::EcdsaP256,
        ),
        (
            "rsa-pkcs8.pem",
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            KeyType::Rsa3072,
        ),
        (
            "rsa-pkcs1.pem",
            &["rsa", "-traditional", "-in", rsa_pkcs8],
            KeyType::Rsa3072,
        ),
    ];
    for (name, args, key_type) in cases {
        let path = dir.0.join(name);
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-out", path.to_str().unwrap()]);
        let made = openssl(&all);
        assert!(made.status.success(), "{name}: {made:?}");
        let text = std::fs::read_to_string(&path).unwrap();
        let expected_label = match name {
            "p256-sec1.pem" => "-----BEGIN EC PRIVATE KEY-----",
            "rsa-pkcs1.pem" => "-----BEGIN RSA PRIVATE KEY-----",
            _ => "-----BEGIN PRIVATE KEY-----",
        };
        assert!(text.starts_with(expected_label), "{name}: {text}");
        let key = DeviceKey::load(&path).unwrap().unwrap();
        assert_eq!(key.key_type(), key_type, "{name}");
        let derived = openssl(&["pkey", "-in", path.to_str().unwrap(), "-pubout"]);
        assert_eq!(
            core::str::from_utf8(&derived.stdout).unwrap(),
            key.public_key_pem(),
            "{name}"
        );
        // A static key is used as is and never replaced.
        let source = KeySource::Static(path.clone());
        assert_eq!(
            source.load_or_generate().unwrap().public_key_pem(),
            key.public_key_pem()
        );
        assert!(source.regenerate().is_err());
    }
    // A missing static key is an error, not a reason to generate one.
    let missing = KeySource::Static(dir.0.join("missing.pem"));
    assert!(missing.load_or_generate().is_err());
    assert!(!dir.0.join("missing.pem").exists());
    // A generated-key path holding garbage is an error and is left alone.
    let garbage = dir.0.join("mender-agent.pem");
    std::fs::write(&garbage, "not a key").unwrap();
    assert!(KeySource::generated_in(&dir.0, KeyType::Ed25519)
        .load_or_generate()
        .is_err());
    assert_eq!(std::fs::read_to_string(&garbage).unwrap(), "not a key");
}
