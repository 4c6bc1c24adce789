//! RSA PKCS#1 v1.5 (SHA-256) verification on `crypto-bigint`'s fixed-width
//! Montgomery arithmetic (the bignum crate the `rsa` crate is built on): at
//! most [`MAX_RSA_BITS`], no heap.
//!
//! Every key size runs at the 4096-bit width: one instance of the
//! arithmetic (about 5 KB of thumbv7em code per width), and an exponent of
//! 65537 needs only 17 products, so smaller keys gain little from a narrower
//! width (RSA-2048 verifies as fast as with the former 32-bit-limb code on
//! x86_64). Only public values (modulus, exponent, signature) go through
//! it, so it may be variable-time; the final comparison of the encoded
//! message is constant-time.

use crypto_bigint::modular::{FixedMontyForm, FixedMontyParams};
use crypto_bigint::{MontyForm, MontyMultiplier, Odd, Uint, U4096};

use super::{KeyError, SignatureError};

/// Smallest accepted RSA modulus, in bits.
pub const MIN_RSA_BITS: u32 = 2048;
/// Largest accepted RSA modulus, in bits.
pub const MAX_RSA_BITS: u32 = 4096;

/// Largest modulus in bytes.
const MAX_BYTES: usize = MAX_RSA_BITS as usize / 8;

/// `DigestInfo` prefix for SHA-256 (RFC 8017 §9.2 note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// An RSA public key (modulus and exponent), stored inline.
#[derive(Clone)]
pub struct RsaPublicKey {
    /// The modulus, odd, [`MIN_RSA_BITS`]..=[`MAX_RSA_BITS`] bits.
    n: U4096,
    bits: u32,
    e: u32,
}

impl core::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RsaPublicKey")
            .field("bits", &self.bits)
            .field("e", &self.e)
            .finish()
    }
}

impl RsaPublicKey {
    /// Builds a key from the big-endian magnitudes of modulus and exponent
    /// (no leading zero bytes).
    pub(super) fn from_be(n: &[u8], e: &[u8]) -> Result<Self, KeyError> {
        let bits = match n.first() {
            None => 0,
            Some(&top) => {
                let len = u32::try_from(n.len()).unwrap_or(u32::MAX / 16);
                len.saturating_mul(8).saturating_sub(top.leading_zeros())
            }
        };
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) || n.len() > MAX_BYTES {
            return Err(KeyError::RsaModulusSize { bits });
        }
        if n.last().is_none_or(|b| b & 1 == 0) {
            return Err(KeyError::RsaModulus);
        }
        if e.len() > 4 {
            return Err(KeyError::RsaExponent);
        }
        let e = e.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        if e < 3 || e & 1 == 0 {
            return Err(KeyError::RsaExponent);
        }
        Ok(Self {
            // `n` fits (checked above), so nothing is truncated.
            n: U4096::from_be_slice_truncated(n, U4096::BITS),
            bits,
            e,
        })
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Public exponent (usually 65537).
    pub fn exponent(&self) -> u32 {
        self.e
    }

    /// Modulus size in bytes: the required signature length.
    pub fn modulus_len(&self) -> usize {
        self.bits.div_ceil(8) as usize
    }

    /// Verifies an RSASSA-PKCS1-v1_5 signature over a SHA-256 `digest`.
    /// Not inlined so that its frame is not paid on the ECDSA path.
    #[inline(never)]
    pub(super) fn verify_sha256(
        &self,
        digest: &[u8; 32],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        let k = self.modulus_len();
        if signature.len() != k {
            return Err(SignatureError::Length);
        }
        // `signature` is k <= 512 bytes long, so nothing is truncated.
        let s = U4096::from_be_slice_truncated(signature, U4096::BITS);
        if s >= self.n {
            return Err(SignatureError::Malformed);
        }
        // `n` is odd (checked when the key was loaded).
        let n = Odd::new(self.n)
            .into_option()
            .ok_or(SignatureError::Malformed)?;
        let params = FixedMontyParams::new_vartime(n);
        let m = pow_u32(&s, self.e, &params);

        // I2OSP(m, k): big-endian, exactly k bytes (m < n < 2^(8k)).
        let encoded = m.to_be_bytes();
        let em = encoded
            .get(encoded.len().saturating_sub(k)..)
            .filter(|em| em.len() == k)
            .ok_or(SignatureError::Length)?;

        // EMSA-PKCS1-v1_5 (RFC 8017 §9.2): 00 01 FF..FF 00 DigestInfo digest,
        // generated on the fly and compared in full, in constant time.
        let t_len = SHA256_DIGEST_INFO.len() + digest.len();
        let ps_len = k
            .checked_sub(3 + t_len)
            .filter(|&n| n >= 8)
            .ok_or(SignatureError::Length)?;
        let expected = [0x00, 0x01]
            .into_iter()
            .chain(core::iter::repeat_n(0xff, ps_len))
            .chain([0x00])
            .chain(SHA256_DIGEST_INFO.iter().copied())
            .chain(digest.iter().copied());
        let diff = em
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if core::hint::black_box(diff) == 0 {
            Ok(())
        } else {
            Err(SignatureError::Invalid)
        }
    }
}

/// `base^e mod n` for `base < n`, `e >= 1`, by left-to-right square and
/// multiply in Montgomery form: 16 squarings and one product for 65537.
///
/// The multiplier works in place, so no intermediate copies of the
/// Montgomery parameters pile up on the stack; `FixedMontyForm::pow_vartime`
/// would also precompute a 16-entry window table first (14 more products
/// and 16 more integers on the stack).
fn pow_u32<const L: usize>(base: &Uint<L>, e: u32, params: &FixedMontyParams<L>) -> Uint<L> {
    let base = FixedMontyForm::new(base, params);
    let mut multiplier = <FixedMontyForm<L> as MontyForm>::Multiplier::from(params);
    let mut acc = base;
    for bit in (0..31u32.saturating_sub(e.leading_zeros())).rev() {
        multiplier.square_assign(&mut acc);
        if (e >> bit) & 1 != 0 {
            multiplier.mul_assign(&mut acc, &base);
        }
    }
    acc.retrieve()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto_bigint::{U128, U64};

    fn reference_pow(b: u128, e: u32, n: u128) -> u128 {
        // n < 2^64 so products fit in u128.
        let mut result = 1u128 % n;
        let mut base = b % n;
        let mut e = e;
        while e > 0 {
            if e & 1 == 1 {
                result = result * base % n;
            }
            base = base * base % n;
            e >>= 1;
        }
        result
    }

    #[test]
    fn pow_matches_reference_and_crypto_bigint() {
        let mut state = 0x1234_5678_9abc_def1u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..2000 {
            let n = (next() | 1) >> (round % 40);
            let n = n | 1 | (1 << 1);
            let b = next() % n;
            let e = match round % 4 {
                0 => 65537,
                1 => 3,
                2 => (next() as u32) | 1,
                _ => 1,
            };
            let params = FixedMontyParams::new_vartime(Odd::new(U128::from_u64(n)).unwrap());
            let got = pow_u32(&U128::from_u64(b), e, &params);
            let want = U128::from_u128(reference_pow(u128::from(b), e, u128::from(n)));
            assert_eq!(got, want, "n={n:#x} b={b:#x} e={e}");
            let library = FixedMontyForm::new(&U128::from_u64(b), &params)
                .pow_vartime(&U64::from_u32(e))
                .retrieve();
            assert_eq!(got, library, "n={n:#x} b={b:#x} e={e}");
        }
    }

    #[test]
    fn key_limits() {
        let mut n = [0xffu8; 256];
        assert!(RsaPublicKey::from_be(&n, &[1, 0, 1]).is_ok());
        assert_eq!(
            RsaPublicKey::from_be(&n, &[1, 0, 0]).err(),
            Some(KeyError::RsaExponent)
        );
        assert_eq!(
            RsaPublicKey::from_be(&n, &[1]).err(),
            Some(KeyError::RsaExponent)
        );
        assert_eq!(
            RsaPublicKey::from_be(&n, &[1, 0, 0, 0, 1]).err(),
            Some(KeyError::RsaExponent)
        );
        assert_eq!(
            RsaPublicKey::from_be(&n[1..], &[3]).err(),
            Some(KeyError::RsaModulusSize { bits: 2040 })
        );
        n[255] = 0xfe;
        assert_eq!(
            RsaPublicKey::from_be(&n, &[3]).err(),
            Some(KeyError::RsaModulus)
        );
        assert_eq!(
            RsaPublicKey::from_be(&[0xff; 513], &[3]).err(),
            Some(KeyError::RsaModulusSize { bits: 4104 })
        );
        assert_eq!(
            RsaPublicKey::from_be(&[], &[3]).err(),
            Some(KeyError::RsaModulusSize { bits: 0 })
        );
    }

    /// Modulus sizes that are not a multiple of a limb work at the one
    /// 4096-bit width: `s = 1` (whose encoded message is 00..01, never
    /// valid) is refused as `Invalid`, `s = n` as `Malformed`.
    #[test]
    fn modulus_sizes() {
        for bytes in [256usize, 257, 384, 385, 512] {
            let mut n = std::vec![0xffu8; bytes];
            n[0] = 0x80 | 0x01;
            let key = RsaPublicKey::from_be(&n, &[1, 0, 1]).unwrap();
            assert_eq!(key.modulus_len(), bytes);
            let mut one = std::vec![0u8; bytes];
            one[bytes - 1] = 1;
            assert_eq!(
                key.verify_sha256(&[0; 32], &one),
                Err(SignatureError::Invalid)
            );
            assert_eq!(
                key.verify_sha256(&[0; 32], &n),
                Err(SignatureError::Malformed),
                "s = n"
            );
        }
    }
}
