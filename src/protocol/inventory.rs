//! The inventory body (`PUT /api/devices/v1/inventory/device/attributes`,
//! answered with **200**).
//!
//! ```text
//! [{"name":"device_type","value":"raspberrypi4"},
//!  {"name":"artifact_name","value":"release-1"},
//!  {"name":"mender_client_version","value":"3.5.3"},
//!  {"name":"ipv4_eth0","value":["192.168.1.10/24","10.0.0.2/8"]}]
//! ```
//!
//! (one line, no blanks). The three attributes the reference always sets
//! come first and win over script output with the same name; script
//! attributes follow in sorted name order (Go's order is random; the C++
//! client sorts). A name seen once has a string value, a repeated name an
//! array in output order.

use super::keyvalue::Attributes;
use super::write::{values, JsonWriter, WriteError};

/// Attribute names the agent sets itself; scripts cannot override them.
pub const RESERVED_NAMES: [&str; 3] = ["device_type", "artifact_name", "mender_client_version"];

/// What the agent reports about itself alongside the script output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InventoryBase<'a> {
    /// `device_type` from the device type file.
    pub device_type: &'a str,
    /// The current artifact name.
    pub artifact_name: &'a str,
    /// `mender_client_version`: the agent's version string.
    pub client_version: &'a str,
}

/// Writes the inventory body into `out` and returns its length.
///
/// # Errors
/// [`WriteError::BufferTooSmall`] with the size needed.
pub fn write_inventory(
    base: &InventoryBase<'_>,
    attributes: &Attributes<'_>,
    out: &mut [u8],
) -> Result<usize, WriteError> {
    let mut writer = JsonWriter::new(out);
    writer.raw("[");
    let fixed = [base.device_type, base.artifact_name, base.client_version];
    for (index, (name, value)) in RESERVED_NAMES.iter().zip(fixed).enumerate() {
        if index > 0 {
            writer.raw(",");
        }
        attribute_start(&mut writer, name);
        writer.string(value);
        writer.raw("}");
    }
    for name in attributes.keys() {
        if RESERVED_NAMES.contains(&name) {
            continue;
        }
        writer.raw(",");
        attribute_start(&mut writer, name);
        values(&mut writer, attributes.values(name));
        writer.raw("}");
    }
    writer.raw("]");
    writer.finish()
}

fn attribute_start(writer: &mut JsonWriter<'_>, name: &str) {
    writer.raw("{\"name\":");
    writer.string(name);
    writer.raw(",\"value\":");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::keyvalue::KeyValueText;

    #[test]
    fn merges_and_overrides() {
        let one = KeyValueText::new_checked(
            b"ipv4_eth0=192.168.1.10/24\nos=Linux \"x\"\ndevice_type=evil\n",
        )
        .unwrap();
        let two = KeyValueText::new_checked(b"ipv4_eth0=10.0.0.2/8\n").unwrap();
        let texts = [one, two];
        let base = InventoryBase {
            device_type: "raspberrypi4",
            artifact_name: "release-1",
            client_version: "3.5.3",
        };
        let mut out = [0u8; 512];
        let len = write_inventory(&base, &Attributes::new(&texts), &mut out).unwrap();
        assert_eq!(
            core::str::from_utf8(&out[..len]).unwrap(),
            r#"[{"name":"device_type","value":"raspberrypi4"},{"name":"artifact_name","value":"release-1"},{"name":"mender_client_version","value":"3.5.3"},{"name":"ipv4_eth0","value":["192.168.1.10/24","10.0.0.2/8"]},{"name":"os","value":"Linux \"x\""}]"#
        );
        assert_eq!(
            write_inventory(&base, &Attributes::new(&texts), &mut out[..10]),
            Err(WriteError::BufferTooSmall { required: len })
        );
        let len = write_inventory(&base, &Attributes::new(&[]), &mut out).unwrap();
        assert!(out[..len].ends_with(br#""value":"3.5.3"}]"#));
    }
}
