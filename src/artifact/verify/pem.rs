//! PEM armor: finds the first `-----BEGIN <label>-----` block, checks the
//! matching END line and base64-decodes the body into a caller buffer.

use super::KeyError;

/// Which public-key structure a PEM block holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// `PUBLIC KEY`: SubjectPublicKeyInfo.
    Spki,
    /// `RSA PUBLIC KEY`: PKCS#1 RSAPublicKey.
    Pkcs1Rsa,
}

const BEGIN: &[u8] = b"-----BEGIN ";
const END: &[u8] = b"-----END ";
const DASHES: &[u8] = b"-----";

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Returns the text after the first `needle` in `haystack`.
fn after<'a>(haystack: &'a [u8], needle: &[u8]) -> Option<&'a [u8]> {
    let at = find(haystack, needle)?;
    haystack.get(at.checked_add(needle.len())?..)
}

/// Splits `text` at the first `needle`: (before, after).
fn split<'a>(text: &'a [u8], needle: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let at = find(text, needle)?;
    let (before, rest) = text.split_at_checked(at)?;
    Some((before, rest.get(needle.len()..)?))
}

/// Decodes the first PEM block of `pem` into `buf`; returns its kind and
/// DER bytes.
pub(super) fn decode<'b>(pem: &[u8], buf: &'b mut [u8]) -> Result<(Kind, &'b [u8]), KeyError> {
    let rest = after(pem, BEGIN).ok_or(KeyError::NotPem)?;
    let (label, rest) = split(rest, DASHES).ok_or(KeyError::NotPem)?;
    let (body, rest) = split(rest, END).ok_or(KeyError::NotPem)?;
    let (end_label, _) = split(rest, DASHES).ok_or(KeyError::NotPem)?;
    if label != end_label || label.contains(&b'\n') {
        return Err(KeyError::NotPem);
    }
    let kind = match label {
        b"PUBLIC KEY" => Kind::Spki,
        b"RSA PUBLIC KEY" => Kind::Pkcs1Rsa,
        _ => return Err(KeyError::NotPublicKey),
    };
    // Encapsulated headers ("Proc-Type: ...") never occur in public keys and
    // are refused by the base64 decoder (':' is not in the alphabet).
    let len = crate::base64::decode(body, buf).map_err(|e| match e {
        crate::base64::Base64Error::BufferTooSmall { .. } => KeyError::TooLong,
        _ => KeyError::Base64,
    })?;
    let der = buf.get(..len).ok_or(KeyError::TooLong)?;
    Ok((kind, der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn armor() {
        let mut buf = [0u8; 16];
        let pem = b"junk\n-----BEGIN PUBLIC KEY-----\naGVsbG8=\n-----END PUBLIC KEY-----\n";
        assert_eq!(decode(pem, &mut buf), Ok((Kind::Spki, &b"hello"[..])));
        let pem = b"-----BEGIN RSA PUBLIC KEY-----\naGVsbG8=\n-----END RSA PUBLIC KEY-----";
        assert_eq!(decode(pem, &mut buf), Ok((Kind::Pkcs1Rsa, &b"hello"[..])));
        let pem = b"-----BEGIN PUBLIC KEY-----\naGVsbG8=\n-----END RSA PUBLIC KEY-----";
        assert_eq!(decode(pem, &mut buf), Err(KeyError::NotPem));
        let pem = b"-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----";
        assert_eq!(decode(pem, &mut buf), Err(KeyError::NotPublicKey));
        let pem = b"-----BEGIN PUBLIC KEY-----\naGV*bG8=\n-----END PUBLIC KEY-----";
        assert_eq!(decode(pem, &mut buf), Err(KeyError::Base64));
        let pem = b"-----BEGIN PUBLIC KEY-----\naGVsbG8gaGVsbG8gaGVsbG8=\n-----END PUBLIC KEY-----";
        assert_eq!(decode(pem, &mut buf), Err(KeyError::TooLong));
        assert_eq!(decode(b"", &mut buf), Err(KeyError::NotPem));
        assert_eq!(
            decode(b"-----BEGIN PUBLIC KEY-----", &mut buf),
            Err(KeyError::NotPem)
        );
    }

    #[test]
    fn truncation_never_panics() {
        let pem = b"-----BEGIN PUBLIC KEY-----\naGVsbG8=\n-----END PUBLIC KEY-----\n";
        let mut buf = [0u8; 16];
        for len in 0..pem.len() {
            let _ = decode(&pem[..len], &mut buf);
        }
    }
}
