//! The authentication request body
//! (`POST /api/devices/v1/authentication/auth_requests`).
//!
//! The bytes written are the bytes to sign and to send, unchanged: the
//! host signs exactly `out[..len]` for `X-MEN-Signature`.
//!
//! ```text
//! {"id_data":"{\"mac\":\"02:00:00:00:00:01\"}","tenant_token":"","pubkey":"-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----\n"}\n
//! ```
//!
//! | field | content |
//! |---|---|
//! | `id_data` | the identity as a compact JSON object with sorted keys, **encoded as a string**; a key seen once is a string, a repeated key an array |
//! | `tenant_token` | `TenantToken`, empty when unset (always sent) |
//! | `pubkey` | the SubjectPublicKeyInfo PEM |
//!
//! Field order, escaping (`<`, `>`, `&` as `\u003c` ...) and the final
//! newline are those of the Go client 3.x (`json.Encoder` on its
//! `AuthReqData` struct), so a server sees the same bytes from both.

use super::keyvalue::Attributes;
use super::write::{values, JsonWriter, WriteError};

/// How identity values are written inside `id_data`. The server keys a
/// device on the normalised identity, in which `"a"` and `["a"]` differ:
/// a device keeps its identity only when the values keep their form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdentityForm {
    /// The Go client's (`mender` 3.x): a key seen once is a string, a
    /// repeated key an array.
    #[default]
    Go,
    /// The Mender Python client's: every value an array
    /// (`{"mac":["02:00:00:00:00:01"]}`).
    Lists,
}

/// Writes the authentication request body into `out` and returns its
/// length.
///
/// # Errors
/// [`WriteError::Empty`] when the identity has no attribute (the reference
/// refuses an empty identity); [`WriteError::BufferTooSmall`] with the size
/// needed.
pub fn write_auth_request(
    identity: &Attributes<'_>,
    public_key_pem: &str,
    tenant_token: &str,
    out: &mut [u8],
) -> Result<usize, WriteError> {
    write_auth_request_as(
        identity,
        IdentityForm::Go,
        public_key_pem,
        tenant_token,
        out,
    )
}

/// [`write_auth_request`] with the identity values in `form`.
///
/// # Errors
/// As [`write_auth_request`].
pub fn write_auth_request_as(
    identity: &Attributes<'_>,
    form: IdentityForm,
    public_key_pem: &str,
    tenant_token: &str,
    out: &mut [u8],
) -> Result<usize, WriteError> {
    if identity.is_empty() {
        return Err(WriteError::Empty);
    }
    let mut writer = JsonWriter::new(out);
    writer.raw("{\"id_data\":\"");
    writer.set_embedded(true);
    write_identity(&mut writer, identity, form);
    writer.set_embedded(false);
    writer.raw("\",\"tenant_token\":");
    writer.string(tenant_token);
    writer.raw(",\"pubkey\":");
    writer.string(public_key_pem);
    writer.raw("}\n");
    writer.finish()
}

/// Writes the identity alone as Go's `json.Marshal` of the identity map
/// (`{"mac":"02:00:00:00:00:01"}`); the server keys the device on this.
///
/// # Errors
/// [`WriteError::BufferTooSmall`] with the size needed.
pub fn write_identity_json(identity: &Attributes<'_>, out: &mut [u8]) -> Result<usize, WriteError> {
    let mut writer = JsonWriter::new(out);
    write_identity(&mut writer, identity, IdentityForm::Go);
    writer.finish()
}

fn write_identity(writer: &mut JsonWriter<'_>, identity: &Attributes<'_>, form: IdentityForm) {
    writer.raw("{");
    for (index, key) in identity.keys().enumerate() {
        if index > 0 {
            writer.raw(",");
        }
        writer.string(key);
        writer.raw(":");
        if form == IdentityForm::Lists {
            writer.raw("[");
            for (index, value) in identity.values(key).enumerate() {
                if index > 0 {
                    writer.raw(",");
                }
                writer.string(value);
            }
            writer.raw("]");
        } else {
            values(writer, identity.values(key));
        }
    }
    writer.raw("}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::keyvalue::KeyValueText;

    fn body(identity: &[u8], pem: &str, token: &str) -> std::string::String {
        let texts = [KeyValueText::new_checked(identity).unwrap()];
        let mut out = [0u8; 512];
        let len = write_auth_request(&Attributes::new(&texts), pem, token, &mut out).unwrap();
        std::string::String::from_utf8(out[..len].to_vec()).unwrap()
    }

    #[test]
    fn matches_go_bytes() {
        let pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n";
        assert_eq!(
            body(b"mac=02:00:00:00:00:01\n", pem, ""),
            "{\"id_data\":\"{\\\"mac\\\":\\\"02:00:00:00:00:01\\\"}\",\"tenant_token\":\"\",\
             \"pubkey\":\"-----BEGIN PUBLIC KEY-----\\nMCowBQYDK2VwAyEA\\n-----END PUBLIC KEY-----\\n\"}\n"
        );
        // Sorted keys, repeated key as an array, HTML characters escaped
        // inside id_data and in the token.
        assert_eq!(
            body(b"sn=1\nmac=b\nmac=a\nx=<&>\n", "P", "t\"k"),
            r#"{"id_data":"{\"mac\":[\"b\",\"a\"],\"sn\":\"1\",\"x\":\"\\u003c\\u0026\\u003e\"}","tenant_token":"t\"k","pubkey":"P"}
"#
        );
    }

    #[test]
    fn python_client_lists() {
        let texts = [KeyValueText::new_checked(b"sn=1\nmac=b\nmac=a\n").unwrap()];
        let mut out = [0u8; 512];
        let len = write_auth_request_as(
            &Attributes::new(&texts),
            IdentityForm::Lists,
            "P",
            "",
            &mut out,
        )
        .unwrap();
        assert_eq!(
            core::str::from_utf8(&out[..len]).unwrap(),
            r#"{"id_data":"{\"mac\":[\"b\",\"a\"],\"sn\":[\"1\"]}","tenant_token":"","pubkey":"P"}
"#
        );
    }

    #[test]
    fn empty_and_short() {
        let texts = [KeyValueText::new_checked(b"\n").unwrap()];
        let mut out = [0u8; 512];
        assert_eq!(
            write_auth_request(&Attributes::new(&texts), "P", "", &mut out),
            Err(WriteError::Empty)
        );
        let texts = [KeyValueText::new_checked(b"a=b").unwrap()];
        let full = write_auth_request(&Attributes::new(&texts), "P", "", &mut out).unwrap();
        assert_eq!(
            write_auth_request(&Attributes::new(&texts), "P", "", &mut out[..full - 1]),
            Err(WriteError::BufferTooSmall { required: full })
        );
        let mut identity = [0u8; 64];
        let len = write_identity_json(&Attributes::new(&texts), &mut identity).unwrap();
        assert_eq!(&identity[..len], br#"{"a":"b"}"#);
    }
}
