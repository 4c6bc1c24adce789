//! The rustls crypto provider: RustCrypto crates instead of ring.
//!
//! The device key and the artifact signatures already link RustCrypto
//! (`p256`, `rsa`, `ed25519-dalek`, `sha2`); with this provider TLS uses the
//! same code instead of a second copy of every algorithm in ring (about
//! 240 KiB of the static binary, README, Size). `rustls-rustcrypto`, the
//! crate that does this, is an alpha pinned to the previous RustCrypto
//! generation (p256 0.13, rsa 0.9, sha2 0.10, aead 0.5): it would link a
//! second copy of each, which is what this module is here to avoid.
//!
//! What a device client needs from a Mender server, and nothing else:
//!
//! | piece | supported |
//! | --- | --- |
//! | versions | TLS 1.3, TLS 1.2 |
//! | TLS 1.3 suites | `AES_256_GCM_SHA384`, `AES_128_GCM_SHA256`, `CHACHA20_POLY1305_SHA256` (first on a CPU without AES instructions) |
//! | TLS 1.2 suites | `ECDHE_{ECDSA,RSA}_WITH_{AES_256_GCM_SHA384, AES_128_GCM_SHA256, CHACHA20_POLY1305_SHA256}` |
//! | key exchange | X25519 (`curve25519-dalek`), secp256r1 (`p256`), secp384r1 (`p384`, last) |
//! | signatures (certificates and handshake) | ECDSA P-256 and P-384 with SHA-256/384, RSA PKCS#1 v1.5 and PSS with SHA-256/384/512 (2048..=8192 bits), Ed25519 |
//! | random | `getrandom` (the kernel's) |
//! | client keys | ECDSA P-256, RSA, Ed25519 (`client_key`): mutual TLS for AWS IoT's broker and `HttpsClient` |
//!
//! TLS 1.2 key exchange is ECDHE only (no RSA key transport, no finite
//! field DH), as with rustls' own providers.

use aes_gcm::aead::{AeadCore, AeadInOut, KeyInit, Nonce as AeadNonce, Tag};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use chacha20poly1305::ChaCha20Poly1305;
use hmac::Mac;
use rustls::crypto::cipher::{
    make_tls12_aad, make_tls13_aad, AeadKey, InboundOpaqueMessage, InboundPlainMessage, Iv,
    KeyBlockShape, MessageDecrypter, MessageEncrypter, Nonce, OutboundOpaqueMessage,
    OutboundPlainMessage, PrefixedPayload, Tls12AeadAlgorithm, Tls13AeadAlgorithm,
    UnsupportedOperationError, NONCE_LEN,
};
use rustls::crypto::hash::HashAlgorithm;
use rustls::crypto::tls12::PrfUsingHmac;
use rustls::crypto::tls13::HkdfUsingHmac;
use rustls::crypto::{
    hash, hmac as rustls_hmac, ActiveKeyExchange, CryptoProvider, GetRandomFailed,
    KeyExchangeAlgorithm, KeyProvider, SecureRandom, SharedSecret, SupportedKxGroup,
    WebPkiSupportedAlgorithms,
};
use rustls::pki_types::{
    alg_id, AlgorithmIdentifier, InvalidSignature, PrivateKeyDer, SignatureVerificationAlgorithm,
};
use rustls::sign::SigningKey;
use rustls::{
    CipherSuite, CipherSuiteCommon, ConnectionTrafficSecrets, ContentType, Error, NamedGroup,
    PeerMisbehaved, ProtocolVersion, SignatureScheme, SupportedCipherSuite, Tls12CipherSuite,
    Tls13CipherSuite,
};
use sha2::digest::Digest as _;
use sha2::{Sha256, Sha384, Sha512};
use std::sync::Arc;

/// The provider: the suites, groups and signature algorithms of the module
/// documentation, the kernel's random numbers, no client keys.
pub(super) fn provider() -> CryptoProvider {
    CryptoProvider {
        cipher_suites: cipher_suites(aes_in_hardware()),
        kx_groups: KX_GROUPS.to_vec(),
        signature_verification_algorithms: SIGNATURE_ALGORITHMS,
        secure_random: &Kernel,
        key_provider: &Kernel,
    }
}

/// Cipher suites in preference order (rustls' order: AES-256 first).
static CIPHER_SUITES: &[SupportedCipherSuite] = &[
    TLS13_AES_256_GCM_SHA384,
    TLS13_AES_128_GCM_SHA256,
    TLS13_CHACHA20_POLY1305_SHA256,
    tls12_suite(&TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
    tls12_suite(&TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
    tls12_suite(&TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
    tls12_suite(&TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
    tls12_suite(&TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
    tls12_suite(&TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
];

/// The suites in preference order: AES-GCM first where the CPU has AES
/// and carry-less multiply instructions (which `aes` and `polyval` use),
/// ChaCha20-Poly1305 first where it has not (armv7 boards, for one):
/// software AES-GCM is several times slower than ChaCha20-Poly1305, and a
/// server that follows the client's order (OpenSSL by default; Go, so the
/// Mender server, when the client lists ChaCha20-Poly1305 first) then picks
/// the fast one. TLS 1.3 suites stay before TLS 1.2 ones.
fn cipher_suites(aes_in_hardware: bool) -> Vec<SupportedCipherSuite> {
    let mut suites = CIPHER_SUITES.to_vec();
    if !aes_in_hardware {
        // Stable: the order is otherwise kept.
        suites.sort_by_key(|suite| {
            let chacha = matches!(
                suite.suite(),
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
                    | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                    | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
            );
            (matches!(suite, SupportedCipherSuite::Tls12(_)), !chacha)
        });
    }
    suites
}

/// Whether this CPU has the instructions the AES-GCM code uses when
/// present (AES and carry-less multiply: x86_64 AES-NI and PCLMULQDQ,
/// aarch64 AES and PMULL); other architectures run software AES.
fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Key exchange groups in preference order (the first is offered in the
/// TLS 1.3 client hello).
/// secp384r1 is last: in TLS 1.2 a server may only use an ECDSA
/// certificate on a curve the client lists (RFC 8422 §5.1), so without it
/// a TLS 1.2 server with a P-384 certificate refuses the handshake
/// (OpenSSL does); its arithmetic is linked anyway for P-384 signatures.
static KX_GROUPS: &[&dyn SupportedKxGroup] = &[&X25519, &SECP256R1, &SECP384R1];

// ---------------------------------------------------------------------------
// Random numbers, keys

/// `getrandom` as rustls' random source; also the (empty) key provider.
#[derive(Debug)]
struct Kernel;

impl SecureRandom for Kernel {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        getrandom::fill(buf).map_err(|_| GetRandomFailed)
    }
}

impl KeyProvider for Kernel {
    fn load_private_key(
        &self,
        key_der: PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn SigningKey>, Error> {
        super::client_key::load(&key_der)
    }
}

/// `N` random bytes from the kernel.
fn random<const N: usize>() -> Result<[u8; N], GetRandomFailed> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|_| GetRandomFailed)?;
    Ok(bytes)
}

// ---------------------------------------------------------------------------
// Hashes and HMAC

/// A SHA-2 hash for rustls (transcript hash).
struct Sha2<D>(HashAlgorithm, core::marker::PhantomData<fn() -> D>);

static SHA256: Sha2<Sha256> = Sha2(HashAlgorithm::SHA256, core::marker::PhantomData);
static SHA384: Sha2<Sha384> = Sha2(HashAlgorithm::SHA384, core::marker::PhantomData);

impl<D: sha2::Digest + Clone + Send + Sync + 'static> hash::Hash for Sha2<D> {
    fn start(&self) -> Box<dyn hash::Context> {
        Box::new(HashContext(D::new()))
    }

    fn hash(&self, data: &[u8]) -> hash::Output {
        hash::Output::new(&D::digest(data))
    }

    fn output_len(&self) -> usize {
        <D as sha2::Digest>::output_size()
    }

    fn algorithm(&self) -> HashAlgorithm {
        self.0
    }
}

/// A running transcript hash.
struct HashContext<D>(D);

impl<D: sha2::Digest + Clone + Send + Sync + 'static> hash::Context for HashContext<D> {
    fn fork_finish(&self) -> hash::Output {
        hash::Output::new(&self.0.clone().finalize())
    }

    fn fork(&self) -> Box<dyn hash::Context> {
        Box::new(Self(self.0.clone()))
    }

    fn finish(self: Box<Self>) -> hash::Output {
        hash::Output::new(&self.0.finalize())
    }

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
}

/// HMAC over a SHA-2 hash (the TLS 1.3 HKDF and the TLS 1.2 PRF are built
/// on it by rustls' `HkdfUsingHmac` and `PrfUsingHmac`); `M` is the
/// `hmac` crate's type.
struct Hmac<M>(core::marker::PhantomData<fn() -> M>);

static HMAC_SHA256: Hmac<hmac::Hmac<Sha256>> = Hmac(core::marker::PhantomData);
static HMAC_SHA384: Hmac<hmac::Hmac<Sha384>> = Hmac(core::marker::PhantomData);

impl<M> rustls_hmac::Hmac for Hmac<M>
where
    M: Mac + hmac::KeyInit + Clone + Send + Sync + 'static,
{
    fn with_key(&self, key: &[u8]) -> Box<dyn rustls_hmac::Key> {
        // HMAC takes keys of any length (longer ones are hashed).
        Box::new(HmacKey(<M as hmac::KeyInit>::new_from_slice(key).ok()))
    }

    fn hash_output_len(&self) -> usize {
        <M as hmac::digest::OutputSizeUser>::output_size()
    }
}

/// A keyed HMAC, cloned for every tag (`None` never happens: HMAC accepts
/// every key length).
struct HmacKey<M>(Option<M>);

impl<M: Mac + Clone + Send + Sync> rustls_hmac::Key for HmacKey<M> {
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> rustls_hmac::Tag {
        let Some(mac) = &self.0 else {
            return rustls_hmac::Tag::new(&[]);
        };
        let mut mac = mac.clone();
        mac.update(first);
        for part in middle {
            mac.update(part);
        }
        mac.update(last);
        rustls_hmac::Tag::new(&mac.finalize().into_bytes())
    }

    fn tag_len(&self) -> usize {
        <M as hmac::digest::OutputSizeUser>::output_size()
    }
}

// ---------------------------------------------------------------------------
// Key exchange

/// X25519 (RFC 7748) on `curve25519-dalek`'s Montgomery ladder.
#[derive(Debug)]
struct X25519Group;

static X25519: X25519Group = X25519Group;

impl SupportedKxGroup for X25519Group {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let secret = random::<32>()?;
        let public = curve25519_dalek::MontgomeryPoint::mul_base_clamped(secret).to_bytes();
        Ok(Box::new(X25519Exchange { secret, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

/// An X25519 exchange in progress: our secret scalar and public point.
struct X25519Exchange {
    secret: [u8; 32],
    public: [u8; 32],
}

impl Drop for X25519Exchange {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

impl ActiveKeyExchange for X25519Exchange {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, Error> {
        let peer: [u8; 32] = peer
            .try_into()
            .map_err(|_| Error::from(PeerMisbehaved::InvalidKeyShare))?;
        let shared = curve25519_dalek::MontgomeryPoint(peer)
            .mul_clamped(self.secret)
            .to_bytes();
        // A low-order peer point gives all zeroes (RFC 7748 §6.1, RFC 8446
        // §7.4.2): refused, as ring does.
        if shared.iter().fold(0u8, |acc, b| acc | b) == 0 {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        Ok(SharedSecret::from(&shared[..]))
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

/// ECDH on a NIST curve (`p256`, `p384`), uncompressed points as TLS
/// requires.
macro_rules! nist_group {
    ($group:ident, $exchange:ident, $static:ident, $curve:ident, $name:ident, $len:literal) => {
        #[doc = concat!("ECDH on `", stringify!($curve), "`.")]
        #[derive(Debug)]
        struct $group;

        static $static: $group = $group;

        impl SupportedKxGroup for $group {
            fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
                // A random string is a valid scalar except with probability
                // below 2^-32; a few tries always find one.
                for _ in 0..8 {
                    if let Ok(secret) = $curve::SecretKey::from_slice(&random::<$len>()?) {
                        let public = secret.public_key().to_sec1_bytes();
                        return Ok(Box::new($exchange { secret, public }));
                    }
                }
                Err(GetRandomFailed.into())
            }

            fn name(&self) -> NamedGroup {
                NamedGroup::$name
            }
        }

        #[doc = concat!("An ECDH exchange on `", stringify!($curve), "` in progress.")]
        struct $exchange {
            secret: $curve::SecretKey,
            public: Box<[u8]>,
        }

        impl ActiveKeyExchange for $exchange {
            fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, Error> {
                // TLS allows only the uncompressed form (RFC 8446 §4.2.8.2).
                if peer.first() != Some(&0x04) {
                    return Err(PeerMisbehaved::InvalidKeyShare.into());
                }
                let peer = $curve::PublicKey::from_sec1_bytes(peer)
                    .map_err(|_| Error::from(PeerMisbehaved::InvalidKeyShare))?;
                let shared =
                    $curve::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), peer.as_affine());
                Ok(SharedSecret::from(&shared.raw_secret_bytes()[..]))
            }

            fn pub_key(&self) -> &[u8] {
                &self.public
            }

            fn group(&self) -> NamedGroup {
                NamedGroup::$name
            }
        }
    };
}

nist_group!(
    Secp256r1Group,
    Secp256r1Exchange,
    SECP256R1,
    p256,
    secp256r1,
    32
);
nist_group!(
    Secp384r1Group,
    Secp384r1Exchange,
    SECP384R1,
    p384,
    secp384r1,
    48
);

// ---------------------------------------------------------------------------
// Record protection (AEAD)

/// Largest TLS plaintext fragment (RFC 8446 §5.1).
const MAX_FRAGMENT_LEN: usize = 16_384;
/// Tag length of all three AEADs.
const TAG_LEN: usize = 16;
/// TLS 1.2 AES-GCM: the explicit part of the nonce sent in each record.
const GCM_EXPLICIT_NONCE_LEN: usize = 8;

/// An AEAD from the RustCrypto crates with a 12-byte nonce and a 16-byte
/// tag, keyed; `None` only if rustls handed a key of the wrong length
/// (it never does): every record then fails instead of panicking.
struct Keyed<A>(Option<A>);

impl<A: KeyInit + AeadInOut> Keyed<A> {
    fn new(key: &AeadKey) -> Self {
        Self(A::new_from_slice(key.as_ref()).ok())
    }

    /// Encrypts `data` in place, returns the tag.
    fn seal(&self, nonce: [u8; NONCE_LEN], aad: &[u8], data: &mut [u8]) -> Result<Tag<A>, Error> {
        let cipher = self.0.as_ref().ok_or(Error::EncryptError)?;
        let nonce = AeadNonce::<A>::try_from(&nonce[..]).map_err(|_| Error::EncryptError)?;
        cipher
            .encrypt_inout_detached(&nonce, aad, data.into())
            .map_err(|_| Error::EncryptError)
    }

    /// Decrypts `data` (ciphertext then tag) in place; returns the
    /// plaintext length.
    fn open(&self, nonce: [u8; NONCE_LEN], aad: &[u8], data: &mut [u8]) -> Result<usize, Error> {
        let cipher = self.0.as_ref().ok_or(Error::DecryptError)?;
        let plain_len = data.len().checked_sub(TAG_LEN).ok_or(Error::DecryptError)?;
        let (text, tag) = data.split_at_mut(plain_len);
        let nonce = AeadNonce::<A>::try_from(&nonce[..]).map_err(|_| Error::DecryptError)?;
        let tag = Tag::<A>::try_from(&*tag).map_err(|_| Error::DecryptError)?;
        cipher
            .decrypt_inout_detached(&nonce, aad, text.into(), &tag)
            .map_err(|_| Error::DecryptError)?;
        Ok(plain_len)
    }
}

/// Which AEAD a suite uses, for the key length and `extract_keys`.
#[derive(Clone, Copy)]
enum AeadKind {
    Aes128Gcm,
    Aes256Gcm,
    ChaCha20Poly1305,
}

impl AeadKind {
    fn key_len(self) -> usize {
        match self {
            Self::Aes128Gcm => 16,
            Self::Aes256Gcm | Self::ChaCha20Poly1305 => 32,
        }
    }

    fn secrets(self, key: AeadKey, iv: Iv) -> ConnectionTrafficSecrets {
        match self {
            Self::Aes128Gcm => ConnectionTrafficSecrets::Aes128Gcm { key, iv },
            Self::Aes256Gcm => ConnectionTrafficSecrets::Aes256Gcm { key, iv },
            Self::ChaCha20Poly1305 => ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv },
        }
    }
}

/// The AEAD of a suite, for both TLS versions.
struct Aead<A>(AeadKind, core::marker::PhantomData<fn() -> A>);

static AES128_GCM: Aead<Aes128Gcm> = Aead(AeadKind::Aes128Gcm, core::marker::PhantomData);
static AES256_GCM: Aead<Aes256Gcm> = Aead(AeadKind::Aes256Gcm, core::marker::PhantomData);
static CHACHA20_POLY1305: Aead<ChaCha20Poly1305> =
    Aead(AeadKind::ChaCha20Poly1305, core::marker::PhantomData);

impl<A> Tls13AeadAlgorithm for Aead<A>
where
    A: KeyInit + AeadInOut + AeadCore + Send + Sync + 'static,
{
    fn encrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageEncrypter> {
        Box::new(Tls13Records {
            cipher: Keyed::<A>::new(&key),
            iv,
        })
    }

    fn decrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageDecrypter> {
        Box::new(Tls13Records {
            cipher: Keyed::<A>::new(&key),
            iv,
        })
    }

    fn key_len(&self) -> usize {
        self.0.key_len()
    }

    fn extract_keys(
        &self,
        key: AeadKey,
        iv: Iv,
    ) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        Ok(self.0.secrets(key, iv))
    }
}

/// TLS 1.3 record protection (RFC 8446 §5.2): the nonce is the IV XOR the
/// sequence number, the additional data the record header, and the
/// content type travels encrypted after the plaintext.
struct Tls13Records<A> {
    cipher: Keyed<A>,
    iv: Iv,
}

impl<A: KeyInit + AeadInOut + Send + Sync> MessageEncrypter for Tls13Records<A> {
    fn encrypt(
        &mut self,
        msg: OutboundPlainMessage<'_>,
        seq: u64,
    ) -> Result<OutboundOpaqueMessage, Error> {
        let total_len = self.encrypted_payload_len(msg.payload.len());
        let mut payload = PrefixedPayload::with_capacity(total_len);
        payload.extend_from_chunks(&msg.payload);
        payload.extend_from_slice(&msg.typ.to_array());
        let nonce = Nonce::new(&self.iv, seq).0;
        let tag = self
            .cipher
            .seal(nonce, &make_tls13_aad(total_len), payload.as_mut())?;
        payload.extend_from_slice(&tag);
        Ok(OutboundOpaqueMessage::new(
            ContentType::ApplicationData,
            ProtocolVersion::TLSv1_2,
            payload,
        ))
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        payload_len.saturating_add(1 + TAG_LEN)
    }
}

impl<A: KeyInit + AeadInOut + Send + Sync> MessageDecrypter for Tls13Records<A> {
    fn decrypt<'a>(
        &mut self,
        mut msg: InboundOpaqueMessage<'a>,
        seq: u64,
    ) -> Result<InboundPlainMessage<'a>, Error> {
        let payload = &mut msg.payload;
        let nonce = Nonce::new(&self.iv, seq).0;
        let aad = make_tls13_aad(payload.len());
        let plain_len = self.cipher.open(nonce, &aad, payload)?;
        payload.truncate(plain_len);
        msg.into_tls13_unpadded_message()
    }
}

impl<A> Tls12AeadAlgorithm for Aead<A>
where
    A: KeyInit + AeadInOut + AeadCore + Send + Sync + 'static,
{
    fn encrypter(&self, key: AeadKey, iv: &[u8], explicit: &[u8]) -> Box<dyn MessageEncrypter> {
        Box::new(Tls12Records {
            cipher: Keyed::<A>::new(&key),
            iv: self.tls12_iv(iv, explicit),
            explicit_nonce: self.explicit_nonce(),
        })
    }

    fn decrypter(&self, key: AeadKey, iv: &[u8]) -> Box<dyn MessageDecrypter> {
        Box::new(Tls12Records {
            cipher: Keyed::<A>::new(&key),
            iv: self.tls12_iv(iv, &[]),
            explicit_nonce: self.explicit_nonce(),
        })
    }

    fn key_block_shape(&self) -> KeyBlockShape {
        match self.0 {
            // RFC 5288: 4 bytes of salt from the key block, 8 sent.
            AeadKind::Aes128Gcm | AeadKind::Aes256Gcm => KeyBlockShape {
                enc_key_len: self.0.key_len(),
                fixed_iv_len: 4,
                explicit_nonce_len: GCM_EXPLICIT_NONCE_LEN,
            },
            // RFC 7905: a 12-byte IV XORed with the sequence number.
            AeadKind::ChaCha20Poly1305 => KeyBlockShape {
                enc_key_len: 32,
                fixed_iv_len: NONCE_LEN,
                explicit_nonce_len: 0,
            },
        }
    }

    fn extract_keys(
        &self,
        key: AeadKey,
        iv: &[u8],
        explicit: &[u8],
    ) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        Ok(self.0.secrets(key, self.tls12_iv(iv, explicit)))
    }
}

impl<A> Aead<A> {
    /// Whether records carry an explicit nonce (AES-GCM in TLS 1.2).
    fn explicit_nonce(&self) -> bool {
        !matches!(self.0, AeadKind::ChaCha20Poly1305)
    }

    /// The 12-byte IV: the fixed part (4 bytes for GCM, all 12 for
    /// ChaCha20-Poly1305) followed by the explicit part, zero-padded.
    fn tls12_iv(&self, fixed: &[u8], explicit: &[u8]) -> Iv {
        let mut iv = [0u8; NONCE_LEN];
        for (slot, byte) in iv.iter_mut().zip(fixed.iter().chain(explicit)) {
            *slot = *byte;
        }
        Iv::new(iv)
    }
}

/// TLS 1.2 record protection. AES-GCM (RFC 5288): the nonce is the 4-byte
/// salt and an 8-byte explicit part sent before the ciphertext (ours is
/// the IV XOR the sequence number, as rustls' providers do, so it never
/// repeats). ChaCha20-Poly1305 (RFC 7905): as in TLS 1.3, nothing sent.
/// The additional data is the sequence number and the record header.
struct Tls12Records<A> {
    cipher: Keyed<A>,
    iv: Iv,
    explicit_nonce: bool,
}

impl<A: KeyInit + AeadInOut + Send + Sync> MessageEncrypter for Tls12Records<A> {
    fn encrypt(
        &mut self,
        msg: OutboundPlainMessage<'_>,
        seq: u64,
    ) -> Result<OutboundOpaqueMessage, Error> {
        let total_len = self.encrypted_payload_len(msg.payload.len());
        let mut payload = PrefixedPayload::with_capacity(total_len);
        let nonce = Nonce::new(&self.iv, seq).0;
        let aad = make_tls12_aad(seq, msg.typ, msg.version, msg.payload.len());
        let explicit_len = if self.explicit_nonce {
            let explicit = nonce.get(4..).ok_or(Error::EncryptError)?;
            payload.extend_from_slice(explicit);
            explicit.len()
        } else {
            0
        };
        payload.extend_from_chunks(&msg.payload);
        let text = payload
            .as_mut()
            .get_mut(explicit_len..)
            .ok_or(Error::EncryptError)?;
        let tag = self.cipher.seal(nonce, &aad, text)?;
        payload.extend_from_slice(&tag);
        Ok(OutboundOpaqueMessage::new(msg.typ, msg.version, payload))
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        let explicit = if self.explicit_nonce {
            GCM_EXPLICIT_NONCE_LEN
        } else {
            0
        };
        payload_len.saturating_add(explicit + TAG_LEN)
    }
}

impl<A: KeyInit + AeadInOut + Send + Sync> MessageDecrypter for Tls12Records<A> {
    fn decrypt<'a>(
        &mut self,
        mut msg: InboundOpaqueMessage<'a>,
        seq: u64,
    ) -> Result<InboundPlainMessage<'a>, Error> {
        let mut nonce = Nonce::new(&self.iv, seq).0;
        let explicit_len = if self.explicit_nonce {
            let explicit = msg
                .payload
                .get(..GCM_EXPLICIT_NONCE_LEN)
                .ok_or(Error::DecryptError)?;
            // The salt (first 4 bytes of the IV), then what the peer sent.
            let salt = self.iv.as_ref().get(..4).ok_or(Error::DecryptError)?;
            for (slot, byte) in nonce.iter_mut().zip(salt.iter().chain(explicit)) {
                *slot = *byte;
            }
            GCM_EXPLICIT_NONCE_LEN
        } else {
            0
        };
        let plain_len = msg
            .payload
            .len()
            .checked_sub(explicit_len + TAG_LEN)
            .ok_or(Error::DecryptError)?;
        let aad = make_tls12_aad(seq, msg.typ, msg.version, plain_len);
        let text = msg
            .payload
            .get_mut(explicit_len..)
            .ok_or(Error::DecryptError)?;
        let plain_len = self.cipher.open(nonce, &aad, text)?;
        if plain_len > MAX_FRAGMENT_LEN {
            return Err(Error::PeerSentOversizedRecord);
        }
        Ok(msg.into_plain_message_range(explicit_len..explicit_len + plain_len))
    }
}

// ---------------------------------------------------------------------------
// Cipher suites

/// A TLS 1.2 suite as a `SupportedCipherSuite` (in a `static` list).
const fn tls12_suite(suite: &'static Tls12CipherSuite) -> SupportedCipherSuite {
    SupportedCipherSuite::Tls12(suite)
}

/// AES-GCM: at most 2^24 full records per key (rustls' figure).
const GCM_LIMIT: u64 = 1 << 24;

/// TLS 1.3, AES-256-GCM, SHA-384.
static TLS13_AES_256_GCM_SHA384: SupportedCipherSuite =
    SupportedCipherSuite::Tls13(&Tls13CipherSuite {
        common: CipherSuiteCommon {
            suite: CipherSuite::TLS13_AES_256_GCM_SHA384,
            hash_provider: &SHA384,
            confidentiality_limit: GCM_LIMIT,
        },
        hkdf_provider: &HkdfUsingHmac(&HMAC_SHA384),
        aead_alg: &AES256_GCM,
        quic: None,
    });

/// TLS 1.3, AES-128-GCM, SHA-256.
static TLS13_AES_128_GCM_SHA256: SupportedCipherSuite =
    SupportedCipherSuite::Tls13(&Tls13CipherSuite {
        common: CipherSuiteCommon {
            suite: CipherSuite::TLS13_AES_128_GCM_SHA256,
            hash_provider: &SHA256,
            confidentiality_limit: GCM_LIMIT,
        },
        hkdf_provider: &HkdfUsingHmac(&HMAC_SHA256),
        aead_alg: &AES128_GCM,
        quic: None,
    });

/// TLS 1.3, ChaCha20-Poly1305, SHA-256.
static TLS13_CHACHA20_POLY1305_SHA256: SupportedCipherSuite =
    SupportedCipherSuite::Tls13(&Tls13CipherSuite {
        common: CipherSuiteCommon {
            suite: CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            hash_provider: &SHA256,
            confidentiality_limit: u64::MAX,
        },
        hkdf_provider: &HkdfUsingHmac(&HMAC_SHA256),
        aead_alg: &CHACHA20_POLY1305,
        quic: None,
    });

/// Handshake signatures a TLS 1.2 ECDSA suite accepts.
static TLS12_ECDSA_SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::ED25519,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ECDSA_NISTP256_SHA256,
];

/// Handshake signatures a TLS 1.2 RSA suite accepts.
static TLS12_RSA_SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PKCS1_SHA512,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA256,
];

/// The TLS 1.2 PRF (RFC 5246 §5) on HMAC-SHA-256 and HMAC-SHA-384.
static PRF_SHA256: PrfUsingHmac<'static> = PrfUsingHmac(&HMAC_SHA256);
static PRF_SHA384: PrfUsingHmac<'static> = PrfUsingHmac(&HMAC_SHA384);

/// A TLS 1.2 ECDHE suite.
const fn tls12(
    suite: CipherSuite,
    hash: &'static dyn hash::Hash,
    prf: &'static PrfUsingHmac<'static>,
    sign: &'static [SignatureScheme],
    aead: &'static dyn Tls12AeadAlgorithm,
    confidentiality_limit: u64,
) -> Tls12CipherSuite {
    Tls12CipherSuite {
        common: CipherSuiteCommon {
            suite,
            hash_provider: hash,
            confidentiality_limit,
        },
        prf_provider: prf,
        kx: KeyExchangeAlgorithm::ECDHE,
        sign,
        aead_alg: aead,
    }
}

static TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: Tls12CipherSuite = tls12(
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    &SHA384,
    &PRF_SHA384,
    TLS12_ECDSA_SCHEMES,
    &AES256_GCM,
    GCM_LIMIT,
);
static TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: Tls12CipherSuite = tls12(
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    &SHA256,
    &PRF_SHA256,
    TLS12_ECDSA_SCHEMES,
    &AES128_GCM,
    GCM_LIMIT,
);
static TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: Tls12CipherSuite = tls12(
    CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    &SHA256,
    &PRF_SHA256,
    TLS12_ECDSA_SCHEMES,
    &CHACHA20_POLY1305,
    u64::MAX,
);
static TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: Tls12CipherSuite = tls12(
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    &SHA384,
    &PRF_SHA384,
    TLS12_RSA_SCHEMES,
    &AES256_GCM,
    GCM_LIMIT,
);
static TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: Tls12CipherSuite = tls12(
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    &SHA256,
    &PRF_SHA256,
    TLS12_RSA_SCHEMES,
    &AES128_GCM,
    GCM_LIMIT,
);
static TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256: Tls12CipherSuite = tls12(
    CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    &SHA256,
    &PRF_SHA256,
    TLS12_RSA_SCHEMES,
    &CHACHA20_POLY1305,
    u64::MAX,
);

// ---------------------------------------------------------------------------
// Signature verification (certificates and handshake signatures)

/// The hash an algorithm signs.
#[derive(Debug, Clone, Copy)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    /// The digest of `message`, up to 64 bytes, and its length.
    fn digest(self, message: &[u8]) -> ([u8; 64], usize) {
        let mut out = [0u8; 64];
        let bytes: &[u8] = match self {
            Self::Sha256 => &Sha256::digest(message),
            Self::Sha384 => &Sha384::digest(message),
            Self::Sha512 => &Sha512::digest(message),
        };
        let len = bytes.len().min(out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..len), bytes.get(..len)) {
            dst.copy_from_slice(src);
        }
        (out, len)
    }
}

/// The key and signature formats of a verification algorithm. webpki hands
/// over the `subjectPublicKey` bits: the SEC1 point (ECDSA), the PKCS#1
/// `RSAPublicKey` (RSA), the 32-byte key (Ed25519).
#[derive(Debug, Clone, Copy)]
enum Scheme {
    /// ECDSA on P-256, DER signature.
    EcdsaP256,
    /// ECDSA on P-384, DER signature.
    EcdsaP384,
    /// RSASSA-PKCS1-v1_5.
    RsaPkcs1,
    /// RSASSA-PSS with MGF1 on the same hash and a salt as long as it.
    RsaPss,
    /// Ed25519 (the message itself is signed).
    Ed25519,
}

/// One `SignatureVerificationAlgorithm`: a scheme, a hash and the
/// algorithm identifiers webpki matches certificates against.
#[derive(Debug)]
struct Verify {
    scheme: Scheme,
    hash: Hash,
    public_key_alg_id: AlgorithmIdentifier,
    signature_alg_id: AlgorithmIdentifier,
}

/// Smallest RSA modulus accepted, in bits (as ring and webpki).
const MIN_RSA_BITS: usize = 2048;

impl SignatureVerificationAlgorithm for Verify {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        use rsa::signature::Verifier as _;
        use rsa::traits::PublicKeyParts as _;

        // ECDSA verifies a digest; RSA and Ed25519 hash the message themselves.
        let digest = || {
            let (digest, len) = self.hash.digest(message);
            (digest, len.min(digest.len()))
        };
        match self.scheme {
            Scheme::EcdsaP256 => {
                use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
                let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key)
                    .map_err(|_| InvalidSignature)?;
                let signature =
                    p256::ecdsa::DerSignature::try_from(signature).map_err(|_| InvalidSignature)?;
                let (digest, len) = digest();
                key.verify_prehash(digest.get(..len).ok_or(InvalidSignature)?, &signature)
                    .map_err(|_| InvalidSignature)
            }
            Scheme::EcdsaP384 => {
                use p384::ecdsa::signature::hazmat::PrehashVerifier as _;
                let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(public_key)
                    .map_err(|_| InvalidSignature)?;
                let signature =
                    p384::ecdsa::DerSignature::try_from(signature).map_err(|_| InvalidSignature)?;
                let (digest, len) = digest();
                key.verify_prehash(digest.get(..len).ok_or(InvalidSignature)?, &signature)
                    .map_err(|_| InvalidSignature)
            }
            Scheme::Ed25519 => {
                let key: &[u8; 32] = public_key.try_into().map_err(|_| InvalidSignature)?;
                let key =
                    ed25519_dalek::VerifyingKey::from_bytes(key).map_err(|_| InvalidSignature)?;
                let signature = ed25519_dalek::Signature::from_slice(signature)
                    .map_err(|_| InvalidSignature)?;
                key.verify_strict(message, &signature)
                    .map_err(|_| InvalidSignature)
            }
            Scheme::RsaPkcs1 | Scheme::RsaPss => {
                use rsa::pkcs1::DecodeRsaPublicKey as _;
                // At most 8192 bits (rsa's default limit, as ring).
                let key =
                    rsa::RsaPublicKey::from_pkcs1_der(public_key).map_err(|_| InvalidSignature)?;
                if (key.n().bits_vartime() as usize) < MIN_RSA_BITS {
                    return Err(InvalidSignature);
                }
                let result = match (self.scheme, self.hash) {
                    (Scheme::RsaPss, hash) => {
                        let signature = rsa::pss::Signature::try_from(signature)
                            .map_err(|_| InvalidSignature)?;
                        match hash {
                            Hash::Sha256 => rsa::pss::VerifyingKey::<Sha256>::new(key)
                                .verify(message, &signature),
                            Hash::Sha384 => rsa::pss::VerifyingKey::<Sha384>::new(key)
                                .verify(message, &signature),
                            Hash::Sha512 => rsa::pss::VerifyingKey::<Sha512>::new(key)
                                .verify(message, &signature),
                        }
                    }
                    (_, hash) => {
                        let signature = rsa::pkcs1v15::Signature::try_from(signature)
                            .map_err(|_| InvalidSignature)?;
                        match hash {
                            Hash::Sha256 => rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key)
                                .verify(message, &signature),
                            Hash::Sha384 => rsa::pkcs1v15::VerifyingKey::<Sha384>::new(key)
                                .verify(message, &signature),
                            Hash::Sha512 => rsa::pkcs1v15::VerifyingKey::<Sha512>::new(key)
                                .verify(message, &signature),
                        }
                    }
                };
                result.map_err(|_| InvalidSignature)
            }
        }
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        self.public_key_alg_id
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.signature_alg_id
    }
}

/// A verification algorithm as a `static`.
const fn verify(
    scheme: Scheme,
    hash: Hash,
    public_key_alg_id: AlgorithmIdentifier,
    signature_alg_id: AlgorithmIdentifier,
) -> Verify {
    Verify {
        scheme,
        hash,
        public_key_alg_id,
        signature_alg_id,
    }
}

static ECDSA_P256_SHA256: Verify = verify(
    Scheme::EcdsaP256,
    Hash::Sha256,
    alg_id::ECDSA_P256,
    alg_id::ECDSA_SHA256,
);
static ECDSA_P256_SHA384: Verify = verify(
    Scheme::EcdsaP256,
    Hash::Sha384,
    alg_id::ECDSA_P256,
    alg_id::ECDSA_SHA384,
);
static ECDSA_P384_SHA256: Verify = verify(
    Scheme::EcdsaP384,
    Hash::Sha256,
    alg_id::ECDSA_P384,
    alg_id::ECDSA_SHA256,
);
static ECDSA_P384_SHA384: Verify = verify(
    Scheme::EcdsaP384,
    Hash::Sha384,
    alg_id::ECDSA_P384,
    alg_id::ECDSA_SHA384,
);
static ED25519: Verify = verify(
    Scheme::Ed25519,
    Hash::Sha512,
    alg_id::ED25519,
    alg_id::ED25519,
);
static RSA_PKCS1_SHA256: Verify = verify(
    Scheme::RsaPkcs1,
    Hash::Sha256,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PKCS1_SHA256,
);
static RSA_PKCS1_SHA384: Verify = verify(
    Scheme::RsaPkcs1,
    Hash::Sha384,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PKCS1_SHA384,
);
static RSA_PKCS1_SHA512: Verify = verify(
    Scheme::RsaPkcs1,
    Hash::Sha512,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PKCS1_SHA512,
);
static RSA_PSS_SHA256: Verify = verify(
    Scheme::RsaPss,
    Hash::Sha256,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PSS_SHA256,
);
static RSA_PSS_SHA384: Verify = verify(
    Scheme::RsaPss,
    Hash::Sha384,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PSS_SHA384,
);
static RSA_PSS_SHA512: Verify = verify(
    Scheme::RsaPss,
    Hash::Sha512,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PSS_SHA512,
);

/// Every verification algorithm (certificate chains), and which of them
/// check each TLS handshake signature scheme (as rustls' ring provider
/// maps them).
static SIGNATURE_ALGORITHMS: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[
        &ECDSA_P256_SHA256,
        &ECDSA_P256_SHA384,
        &ECDSA_P384_SHA256,
        &ECDSA_P384_SHA384,
        &ED25519,
        &RSA_PSS_SHA256,
        &RSA_PSS_SHA384,
        &RSA_PSS_SHA512,
        &RSA_PKCS1_SHA256,
        &RSA_PKCS1_SHA384,
        &RSA_PKCS1_SHA512,
    ],
    mapping: &[
        (
            SignatureScheme::ECDSA_NISTP384_SHA384,
            &[&ECDSA_P384_SHA384, &ECDSA_P256_SHA384],
        ),
        (
            SignatureScheme::ECDSA_NISTP256_SHA256,
            &[&ECDSA_P256_SHA256, &ECDSA_P384_SHA256],
        ),
        (SignatureScheme::ED25519, &[&ED25519]),
        (SignatureScheme::RSA_PSS_SHA512, &[&RSA_PSS_SHA512]),
        (SignatureScheme::RSA_PSS_SHA384, &[&RSA_PSS_SHA384]),
        (SignatureScheme::RSA_PSS_SHA256, &[&RSA_PSS_SHA256]),
        (SignatureScheme::RSA_PKCS1_SHA512, &[&RSA_PKCS1_SHA512]),
        (SignatureScheme::RSA_PKCS1_SHA384, &[&RSA_PKCS1_SHA384]),
        (SignatureScheme::RSA_PKCS1_SHA256, &[&RSA_PKCS1_SHA256]),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    fn names(suites: &[SupportedCipherSuite]) -> Vec<CipherSuite> {
        suites.iter().map(SupportedCipherSuite::suite).collect()
    }

    #[test]
    fn chacha20_poly1305_first_only_without_aes_instructions() {
        assert_eq!(names(&cipher_suites(true)), names(CIPHER_SUITES));
        assert_eq!(
            names(&cipher_suites(false)),
            [
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
                CipherSuite::TLS13_AES_256_GCM_SHA384,
                CipherSuite::TLS13_AES_128_GCM_SHA256,
                CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
                CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            ]
        );
    }

    #[test]
    fn this_test_machine_has_aes_instructions_when_x86_64_says_so() {
        // The detection itself, checked against /proc/cpuinfo's flags.
        #[cfg(target_arch = "x86_64")]
        if let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") {
            let flags = cpuinfo
                .lines()
                .find(|line| line.starts_with("flags"))
                .unwrap_or_default();
            let has = |flag: &str| flags.split_whitespace().any(|word| word == flag);
            assert_eq!(aes_in_hardware(), has("aes") && has("pclmulqdq"));
        }
    }
}
