//! RSA PKCS#1 v1.5 (SHA-256) verification with a fixed-capacity Montgomery
//! exponentiation: 32-bit limbs, at most [`MAX_RSA_BITS`], no heap.
//!
//! Only public values (modulus, exponent, signature) go through the
//! arithmetic, so it is variable-time; the final comparison of the encoded
//! message is constant-time.

use super::{KeyError, SignatureError};

/// Smallest accepted RSA modulus, in bits.
pub const MIN_RSA_BITS: u32 = 2048;
/// Largest accepted RSA modulus, in bits.
pub const MAX_RSA_BITS: u32 = 4096;

const MAX_LIMBS: usize = MAX_RSA_BITS as usize / 32;
const MAX_BYTES: usize = MAX_RSA_BITS as usize / 8;

/// A number of up to [`MAX_RSA_BITS`], little-endian 32-bit limbs. Limbs at
/// and above the modulus' limb count are always zero.
type Limbs = [u32; MAX_LIMBS];

/// `DigestInfo` prefix for SHA-256 (RFC 8017 §9.2 note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// An RSA public key (modulus and exponent), stored inline.
#[derive(Clone)]
pub struct RsaPublicKey {
    n: Limbs,
    /// Limbs in use: `ceil(bits / 32)`.
    limbs: usize,
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

/// Loads big-endian `bytes` into little-endian limbs (`bytes` must fit).
fn load_be(bytes: &[u8], out: &mut Limbs) {
    for (limb, chunk) in out.iter_mut().zip(bytes.rchunks(4)) {
        *limb = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
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
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
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
        let mut limbs = [0u32; MAX_LIMBS];
        load_be(n, &mut limbs);
        Ok(Self {
            n: limbs,
            limbs: bits.div_ceil(32) as usize,
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
    /// Not inlined so that the ~5 KiB frame is not paid on the ECDSA path.
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
        let mut s = [0u32; MAX_LIMBS];
        load_be(signature, &mut s);
        let modulus = Modulus::new(&self.n, self.limbs);
        if !modulus.less_than(&s, &self.n) {
            return Err(SignatureError::Malformed);
        }
        let m = modulus.pow(&s, self.e);

        // I2OSP(m, k): big-endian, exactly k bytes (m < n < 2^(8k)).
        let mut em = [0u8; MAX_BYTES];
        let em = em.get_mut(..k).ok_or(SignatureError::Length)?;
        for (chunk, limb) in em.rchunks_mut(4).zip(m.iter()) {
            for (i, byte) in chunk.iter_mut().rev().enumerate() {
                *byte = (limb >> (8 * i)) as u8;
            }
        }

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

/// Montgomery arithmetic modulo an odd `n` of `limbs` limbs (R = 2^(32·limbs)).
struct Modulus<'a> {
    n: &'a Limbs,
    limbs: usize,
    /// `-n^-1 mod 2^32`.
    n0inv: u32,
}

impl<'a> Modulus<'a> {
    fn new(n: &'a Limbs, limbs: usize) -> Self {
        let n0 = n.first().copied().unwrap_or(1);
        // Newton iteration: each step doubles the correct low bits (1 -> 32).
        let mut inv: u32 = 1;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inv)));
        }
        Self {
            n,
            limbs,
            n0inv: inv.wrapping_neg(),
        }
    }

    /// `a < b` over the used limbs.
    fn less_than(&self, a: &Limbs, b: &Limbs) -> bool {
        for (x, y) in a
            .iter()
            .take(self.limbs)
            .rev()
            .zip(b.iter().take(self.limbs).rev())
        {
            if x != y {
                return x < y;
            }
        }
        false
    }

    /// `a -= n` over the used limbs (wrapping; callers ensure a >= n, or an
    /// implicit top carry that the borrow cancels).
    fn sub_n(&self, a: &mut Limbs) {
        let mut borrow = 0u64;
        for (x, &y) in a.iter_mut().zip(self.n.iter()).take(self.limbs) {
            let d = u64::from(*x)
                .wrapping_sub(u64::from(y))
                .wrapping_sub(borrow);
            *x = d as u32;
            borrow = (d >> 63) & 1;
        }
    }

    /// `a = 2a mod n` for `a < n`.
    fn double(&self, a: &mut Limbs) {
        let mut carry = 0u32;
        for x in a.iter_mut().take(self.limbs) {
            let next = *x >> 31;
            *x = (*x << 1) | carry;
            carry = next;
        }
        if carry != 0 || !self.less_than(a, self.n) {
            self.sub_n(a);
        }
    }

    /// Montgomery product `a·b·R^-1 mod n` (CIOS) for `a, b < n`.
    fn mul(&self, a: &Limbs, b: &Limbs) -> Limbs {
        let mut t = [0u32; MAX_LIMBS];
        // Limb `limbs` of the running sum; limb `limbs + 1` is at most 1 and
        // folded into it after the shift.
        let mut t_hi: u32 = 0;
        let n0 = u64::from(self.n.first().copied().unwrap_or(0));
        for &ai in a.iter().take(self.limbs) {
            let ai = u64::from(ai);
            let mut carry = 0u64;
            for (tj, &bj) in t.iter_mut().zip(b.iter()).take(self.limbs) {
                let s = u64::from(*tj) + ai * u64::from(bj) + carry;
                *tj = s as u32;
                carry = s >> 32;
            }
            let s = u64::from(t_hi) + carry;
            t_hi = s as u32;
            let t_top = (s >> 32) as u32;

            // Add m·n so that the lowest limb becomes zero, and shift it out.
            let mut it = t.iter_mut().take(self.limbs);
            let Some(mut prev) = it.next() else {
                break;
            };
            let m = u64::from(prev.wrapping_mul(self.n0inv));
            let mut carry = (u64::from(*prev) + m * n0) >> 32;
            for (tj, &nj) in it.zip(self.n.iter().skip(1)) {
                let s = u64::from(*tj) + m * u64::from(nj) + carry;
                *prev = s as u32;
                carry = s >> 32;
                prev = tj;
            }
            let s = u64::from(t_hi) + carry;
            *prev = s as u32;
            t_hi = t_top + (s >> 32) as u32;
        }
        // Now t < 2n.
        if t_hi != 0 || !self.less_than(&t, self.n) {
            self.sub_n(&mut t);
        }
        t
    }

    /// `R^2 mod n`, for converting into Montgomery form.
    fn r_squared(&self) -> Limbs {
        let bits = self.bit_len();
        let mut x = [0u32; MAX_LIMBS];
        // Start from 2^(bits-1) < n and double up to R mod n.
        let top = bits.saturating_sub(1);
        if let Some(limb) = x.get_mut(top / 32) {
            *limb = 1 << (top % 32);
        }
        for _ in top..self.limbs * 32 {
            self.double(&mut x);
        }
        // x = R mod n is the Montgomery form of 1. Square-and-double up to
        // the Montgomery form of 2^(32·limbs), which is R^2 mod n.
        let exponent = self.limbs * 32;
        for bit in (0..usize::BITS - exponent.leading_zeros()).rev() {
            x = self.mul(&x, &x);
            if (exponent >> bit) & 1 != 0 {
                self.double(&mut x);
            }
        }
        x
    }

    fn bit_len(&self) -> usize {
        let mut bits = self.limbs * 32;
        for limb in self.n.iter().take(self.limbs).rev() {
            if *limb != 0 {
                return bits - limb.leading_zeros() as usize;
            }
            bits -= 32;
        }
        0
    }

    /// `base^e mod n` for `base < n`, `e >= 1`.
    fn pow(&self, base: &Limbs, e: u32) -> Limbs {
        let r2 = self.r_squared();
        let base_m = self.mul(base, &r2);
        let mut acc = base_m;
        for bit in (0..31u32.saturating_sub(e.leading_zeros())).rev() {
            acc = self.mul(&acc, &acc);
            if (e >> bit) & 1 != 0 {
                acc = self.mul(&acc, &base_m);
            }
        }
        let mut one = [0u32; MAX_LIMBS];
        if let Some(first) = one.first_mut() {
            *first = 1;
        }
        self.mul(&acc, &one)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_limbs(v: u128) -> Limbs {
        let mut l = [0u32; MAX_LIMBS];
        for (i, limb) in l.iter_mut().take(4).enumerate() {
            *limb = (v >> (32 * i)) as u32;
        }
        l
    }

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
    fn montgomery_pow_matches_reference() {
        let mut state = 0x1234_5678_9abc_def1u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..2000 {
            let limbs = 1 + round % 2;
            let mask = if limbs == 1 {
                u64::from(u32::MAX)
            } else {
                u64::MAX
            };
            let n = (next() & mask) | 1 | (1 << (32 * limbs - 1 - (round % 5)));
            let b = next() % n;
            let e = match round % 4 {
                0 => 65537,
                1 => 3,
                2 => (next() as u32) | 1,
                _ => 1,
            };
            let nl = to_limbs(u128::from(n));
            let m = Modulus::new(&nl, limbs);
            let got = m.pow(&to_limbs(u128::from(b)), e);
            let want = to_limbs(reference_pow(u128::from(b), e, u128::from(n)));
            assert_eq!(got, want, "n={n:#x} b={b:#x} e={e}");
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
}
