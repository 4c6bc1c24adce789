//! Deployments API messages: the update check (`next`), status reports and
//! the deployment log.
//!
//! | call | body written / read here |
//! |---|---|
//! | `POST /api/devices/v2/deployments/device/deployments/next` | [`write_next_request`]: `{"device_provides":{...},"update_control_map":true}` |
//! | `POST /api/devices/v1/deployments/device/deployments/next` | [`write_device_provides`]: the same flat map, unwrapped |
//! | `GET /api/devices/v1/deployments/device/deployments/next?...` | [`write_next_query`]: `artifact_name=<enc>&device_type=<enc>` |
//! | `next` answered 200 | [`DeploymentInstructions::parse`] |
//! | `PUT .../deployments/<id>/status` (204; **409 = aborted**) | [`write_status`]: `{"status":"...","substate":"..."}` |
//! | `PUT .../deployments/<id>/log` (204) | [`write_log`]: `{"messages":[{"level":..,"message":..,"timestamp":..}]}` |

use super::write::{escaped_len, hex_digit, JsonWriter, WriteError};
use crate::artifact::{StrList, MAX_DEVICE_TYPES_LEN, MAX_NAME_LEN};
use crate::device::{Name, Provides};
use crate::json::{Json, JsonErrorKind};
use heapless::String;

/// Longest deployment id kept (the server sends a 36-character UUID).
pub const MAX_DEPLOYMENT_ID_LEN: usize = 64;
/// Longest artifact download URI kept. Presigned S3/Azure/GCS links are
/// typically 1–2 KiB; 4 KiB leaves room for long object keys and tokens.
pub const MAX_URI_LEN: usize = 4096;
/// Longest object key read in a `next` answer; longer keys are an error.
const MAX_KEY_LEN: usize = 256;
/// Most characters of a status `substate` (the server's limit).
pub const MAX_SUBSTATE_CHARS: usize = 200;
/// Largest log body [`write_log`] produces: 1 KiB under the server's
/// 1 MiB request limit.
pub const MAX_LOG_BODY_LEN: usize = 1024 * 1024 - 1024;

/// A deployment id.
pub type DeploymentId = String<MAX_DEPLOYMENT_ID_LEN>;

/// Writes the flat `device_provides` map: every stored provide plus
/// `artifact_name` and `device_type`, keys sorted (as Go's `json.Marshal`
/// of a `map[string]string`). A stored `device_type` provide is replaced by
/// `device_type`.
///
/// # Errors
/// [`WriteError::BufferTooSmall`] with the size needed.
pub fn write_device_provides(
    provides: &Provides,
    device_type: &str,
    out: &mut [u8],
) -> Result<usize, WriteError> {
    let mut writer = JsonWriter::new(out);
    device_provides(&mut writer, provides, device_type);
    writer.finish()
}

/// Writes the v2 `next` body. `update_control_map` asks an Enterprise
/// server for Update Control Maps (the Go client 3.x sends `true`); when
/// false the field is left out, as the C++ client does.
///
/// # Errors
/// [`WriteError::BufferTooSmall`] with the size needed.
pub fn write_next_request(
    provides: &Provides,
    device_type: &str,
    update_control_map: bool,
    out: &mut [u8],
) -> Result<usize, WriteError> {
    let mut writer = JsonWriter::new(out);
    writer.raw("{\"device_provides\":");
    device_provides(&mut writer, provides, device_type);
    if update_control_map {
        writer.raw(",\"update_control_map\":true");
    }
    writer.raw("}");
    writer.finish()
}

fn device_provides(writer: &mut JsonWriter<'_>, provides: &Provides, device_type: &str) {
    const DEVICE_TYPE: &str = "device_type";
    let mut first = true;
    let mut device_type_written = false;
    let mut pair = |writer: &mut JsonWriter<'_>, key: &str, value: &str| {
        if !first {
            writer.raw(",");
        }
        first = false;
        writer.string(key);
        writer.raw(":");
        writer.string(value);
    };
    writer.raw("{");
    provides.for_each_sorted(|key, value| {
        if !device_type_written && key >= DEVICE_TYPE {
            pair(writer, DEVICE_TYPE, device_type);
            device_type_written = true;
        }
        if key != DEVICE_TYPE {
            pair(writer, key, value);
        }
    });
    if !device_type_written {
        pair(writer, DEVICE_TYPE, device_type);
    }
    writer.raw("}");
}

/// Writes the v1 `GET next` query (without the `?`):
/// `artifact_name=<enc>&device_type=<enc>`, encoded as Go's
/// `url.Values.Encode` (space as `+`, `A-Za-z0-9-_.~` kept, other bytes
/// `%XX`).
///
/// # Errors
/// [`WriteError::BufferTooSmall`] with the size needed.
pub fn write_next_query(
    artifact_name: &str,
    device_type: &str,
    out: &mut [u8],
) -> Result<usize, WriteError> {
    let mut writer = JsonWriter::new(out);
    writer.raw("artifact_name=");
    query_escape(&mut writer, artifact_name);
    writer.raw("&device_type=");
    query_escape(&mut writer, device_type);
    writer.finish()
}

fn query_escape(writer: &mut JsonWriter<'_>, text: &str) {
    let mut start = 0usize;
    for (index, byte) in text.bytes().enumerate() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            continue;
        }
        writer.raw(text.get(start..index).unwrap_or(""));
        start = index + 1;
        if byte == b' ' {
            writer.raw("+");
        } else {
            let encoded = [
                b'%',
                hex_digit(u32::from(byte >> 4), true),
                hex_digit(u32::from(byte), true),
            ];
            writer.raw(core::str::from_utf8(&encoded).unwrap_or(""));
        }
    }
    writer.raw(text.get(start..).unwrap_or(""));
}

/// Why a `next` answer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NextError {
    /// Not valid JSON, or a field of the wrong type, near this byte offset.
    Syntax(usize),
    /// A string is longer than its capacity ([`MAX_URI_LEN`] ...), or a
    /// key longer than 256 bytes, near this byte offset.
    TooLong(usize),
    /// The compatible device types take more than [`MAX_DEVICE_TYPES_LEN`]
    /// bytes.
    TooManyDeviceTypes,
    /// `id` is missing or empty.
    MissingId,
    /// `artifact.artifact_name` is missing or empty.
    MissingArtifactName,
    /// `artifact.source.uri` is missing or empty.
    MissingUri,
    /// `artifact.device_types_compatible` is missing or empty.
    MissingDeviceTypes,
}

impl core::fmt::Display for NextError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Syntax(at) => write!(f, "invalid deployment instructions near byte {at}"),
            Self::TooLong(at) => {
                write!(f, "a deployment instruction field is too long (byte {at})")
            }
            Self::TooManyDeviceTypes => write!(
                f,
                "the deployment's compatible device types take more than {MAX_DEVICE_TYPES_LEN} bytes (the limit)"
            ),
            Self::MissingId => f.write_str("the deployment has no id"),
            Self::MissingArtifactName => f.write_str("the deployment has no artifact name"),
            Self::MissingUri => f.write_str("the deployment has no download link"),
            Self::MissingDeviceTypes => {
                f.write_str("the deployment lists no compatible device type")
            }
        }
    }
}

impl core::error::Error for NextError {}

/// A `next` answer (200), validated like the Go client: non-empty `id`,
/// `artifact_name`, `uri` and at least one compatible device type.
///
/// About 6.5 KiB; keep it in static or heap storage on small targets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeploymentInstructions {
    /// The deployment id used in later status and log calls.
    pub id: DeploymentId,
    /// The artifact's name.
    pub artifact_name: Name,
    /// The presigned download link (not authenticated with the JWT).
    pub uri: String<MAX_URI_LEN>,
    /// Device types the artifact is for.
    pub device_types_compatible: StrList<MAX_DEVICE_TYPES_LEN>,
    /// The answer carries a (non-null) `update_control_map` (Enterprise).
    pub has_update_control_map: bool,
}

fn next_error(error: crate::json::JsonError) -> NextError {
    match error.kind {
        JsonErrorKind::Capacity => NextError::TooLong(error.offset),
        JsonErrorKind::Syntax => NextError::Syntax(error.offset),
    }
}

/// Reads a string value into `slot`; `null` leaves it empty (as Go does).
fn string_or_null<const N: usize>(
    json: &mut Json<'_>,
    slot: &mut String<N>,
) -> Result<(), NextError> {
    *slot = if json.null() {
        String::new()
    } else {
        json.string::<N>().map_err(next_error)?
    };
    Ok(())
}

/// Calls `field(json, key)` for each key of an object (or nothing for
/// `null`). Keys are compared ASCII case-insensitively by the callers, as
/// Go's decoder does; unknown keys are skipped by `field`.
fn object(
    json: &mut Json<'_>,
    mut field: impl FnMut(&mut Json<'_>, &str) -> Result<(), NextError>,
) -> Result<(), NextError> {
    if json.null() {
        return Ok(());
    }
    json.begin_object().map_err(next_error)?;
    let mut first = true;
    while let Some(key) = json
        .next_key::<MAX_KEY_LEN>(&mut first)
        .map_err(next_error)?
    {
        field(json, &key)?;
    }
    Ok(())
}

impl DeploymentInstructions {
    /// Parses and validates a 200 `next` body. Unknown keys are ignored,
    /// keys match case-insensitively (ASCII), `null` counts as absent, and
    /// a repeated key keeps its last value.
    ///
    /// # Errors
    /// See [`NextError`].
    pub fn parse(body: &[u8]) -> Result<Self, NextError> {
        let mut json = Json::new(body);
        let mut out = Self::default();
        object(&mut json, |json, key| {
            if key.eq_ignore_ascii_case("id") {
                string_or_null(json, &mut out.id)
            } else if key.eq_ignore_ascii_case("artifact") {
                out.artifact_name.clear();
                out.uri.clear();
                out.device_types_compatible.clear();
                object(json, |json, key| out.artifact_field(json, key))
            } else if key.eq_ignore_ascii_case("update_control_map") {
                out.has_update_control_map = !json.null();
                if out.has_update_control_map {
                    json.skip_value().map_err(next_error)?;
                }
                Ok(())
            } else {
                json.skip_value().map_err(next_error)
            }
        })?;
        json.end().map_err(next_error)?;
        out.validate()?;
        Ok(out)
    }

    fn artifact_field(&mut self, json: &mut Json<'_>, key: &str) -> Result<(), NextError> {
        if key.eq_ignore_ascii_case("artifact_name") {
            string_or_null::<MAX_NAME_LEN>(json, &mut self.artifact_name)
        } else if key.eq_ignore_ascii_case("source") {
            self.uri.clear();
            object(json, |json, key| {
                if key.eq_ignore_ascii_case("uri") {
                    string_or_null(json, &mut self.uri)
                } else {
                    json.skip_value().map_err(next_error)
                }
            })
        } else if key.eq_ignore_ascii_case("device_types_compatible") {
            self.device_types_compatible.clear();
            if json.null() {
                return Ok(());
            }
            json.begin_array().map_err(next_error)?;
            let mut first = true;
            while json.next_element(&mut first).map_err(next_error)? {
                let device_type = json.string::<MAX_NAME_LEN>().map_err(next_error)?;
                self.device_types_compatible
                    .push(&device_type)
                    .map_err(|_| NextError::TooManyDeviceTypes)?;
            }
            Ok(())
        } else {
            json.skip_value().map_err(next_error)
        }
    }

    fn validate(&self) -> Result<(), NextError> {
        if self.id.is_empty() {
            Err(NextError::MissingId)
        } else if self.device_types_compatible.is_empty() {
            Err(NextError::MissingDeviceTypes)
        } else if self.artifact_name.is_empty() {
            Err(NextError::MissingArtifactName)
        } else if self.uri.is_empty() {
            Err(NextError::MissingUri)
        } else {
            Ok(())
        }
    }
}

/// A deployment status, as the server names it (`model/status.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum DeploymentStatus {
    Downloading,
    PauseBeforeInstalling,
    Installing,
    PauseBeforeRebooting,
    Rebooting,
    PauseBeforeCommitting,
    Success,
    Failure,
    /// Decided by the server; no client sends it.
    AlreadyInstalled,
}

impl DeploymentStatus {
    /// Every status, in deployment order.
    pub const ALL: [Self; 9] = [
        Self::Downloading,
        Self::PauseBeforeInstalling,
        Self::Installing,
        Self::PauseBeforeRebooting,
        Self::Rebooting,
        Self::PauseBeforeCommitting,
        Self::Success,
        Self::Failure,
        Self::AlreadyInstalled,
    ];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Downloading => "downloading",
            Self::PauseBeforeInstalling => "pause_before_installing",
            Self::Installing => "installing",
            Self::PauseBeforeRebooting => "pause_before_rebooting",
            Self::Rebooting => "rebooting",
            Self::PauseBeforeCommitting => "pause_before_committing",
            Self::Success => "success",
            Self::Failure => "failure",
            Self::AlreadyInstalled => "already-installed",
        }
    }
}

impl core::fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Writes a status report body: `{"status":"installing"}`, plus
/// `"substate"` when `substate` is not empty, cut to
/// [`MAX_SUBSTATE_CHARS`] characters (the server refuses longer ones).
///
/// # Errors
/// [`WriteError::BufferTooSmall`] with the size needed.
pub fn write_status(
    status: DeploymentStatus,
    substate: &str,
    out: &mut [u8],
) -> Result<usize, WriteError> {
    let mut writer = JsonWriter::new(out);
    writer.raw("{\"status\":\"");
    writer.raw(status.as_str());
    writer.raw("\"");
    if !substate.is_empty() {
        let cut = substate
            .char_indices()
            .nth(MAX_SUBSTATE_CHARS)
            .map_or(substate.len(), |(index, _)| index);
        writer.raw(",\"substate\":");
        writer.string(substate.get(..cut).unwrap_or(substate));
    }
    writer.raw("}");
    writer.finish()
}

/// One deployment log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogMessage<'a> {
    /// Level name (`info`, `error` ...); must not be empty.
    pub level: &'a str,
    /// The text; must not be empty.
    pub message: &'a str,
    /// RFC 3339 time (`2024-05-01T12:00:00Z`); must not be empty.
    pub timestamp: &'a str,
}

impl LogMessage<'_> {
    /// Bytes of `{"level":..,"message":..,"timestamp":..}`.
    fn encoded_len(&self) -> usize {
        // {"level":"" ,"message":"" ,"timestamp":"" }
        const FIXED: usize = 11 + 13 + 15 + 1;
        FIXED
            .saturating_add(escaped_len(self.level))
            .saturating_add(escaped_len(self.message))
            .saturating_add(escaped_len(self.timestamp))
    }
}

/// What [`write_log`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogBody {
    /// Body length.
    pub len: usize,
    /// Oldest messages left out to fit.
    pub dropped: usize,
}

/// Writes the log body from `messages` (oldest first), leaving out the
/// oldest messages when the whole body would not fit in `out` or exceed
/// [`MAX_LOG_BODY_LEN`]. The newest message is always kept.
///
/// # Errors
/// [`WriteError::Empty`] for no message (the server refuses an empty
/// list); [`WriteError::BufferTooSmall`] when even the newest message alone
/// does not fit, with the size it needs.
pub fn write_log(messages: &[LogMessage<'_>], out: &mut [u8]) -> Result<LogBody, WriteError> {
    const PREFIX: &str = "{\"messages\":[";
    const SUFFIX: &str = "]}";
    if messages.is_empty() {
        return Err(WriteError::Empty);
    }
    let limit = out.len().min(MAX_LOG_BODY_LEN);
    let mut total = messages.iter().fold(
        PREFIX.len() + SUFFIX.len() + messages.len() - 1,
        |sum, message| sum.saturating_add(message.encoded_len()),
    );
    let mut dropped = 0usize;
    for message in messages.iter().take(messages.len() - 1) {
        if total <= limit {
            break;
        }
        total = total.saturating_sub(message.encoded_len() + 1);
        dropped += 1;
    }
    if total > limit {
        return Err(WriteError::BufferTooSmall { required: total });
    }
    let mut writer = JsonWriter::new(out);
    writer.raw(PREFIX);
    for (index, message) in messages.iter().skip(dropped).enumerate() {
        if index > 0 {
            writer.raw(",");
        }
        writer.raw("{\"level\":");
        writer.string(message.level);
        writer.raw(",\"message\":");
        writer.string(message.message);
        writer.raw(",\"timestamp\":");
        writer.string(message.timestamp);
        writer.raw("}");
    }
    writer.raw(SUFFIX);
    let len = writer.finish()?;
    Ok(LogBody { len, dropped })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::provide;

    fn text(bytes: &[u8]) -> &str {
        core::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn next_request_bodies() {
        let mut provides = Provides::named("release-1");
        provides.artifact_group = Some("stable".try_into().unwrap());
        for (key, value) in [
            ("rootfs-image.version", "release-1"),
            ("device_type", "stale"),
            ("a.b", "x\"y"),
        ] {
            provides
                .provides
                .push(provide(key, value).unwrap())
                .unwrap();
        }
        let mut out = [0u8; 512];
        let len = write_next_request(&provides, "raspberrypi4", true, &mut out).unwrap();
        assert_eq!(
            text(&out[..len]),
            r#"{"device_provides":{"a.b":"x\"y","artifact_group":"stable","artifact_name":"release-1","device_type":"raspberrypi4","rootfs-image.version":"release-1"},"update_control_map":true}"#
        );
        let len = write_next_request(&Provides::named("a"), "b", false, &mut out).unwrap();
        assert_eq!(
            text(&out[..len]),
            r#"{"device_provides":{"artifact_name":"a","device_type":"b"}}"#
        );
        let len = write_device_provides(&Provides::named("a"), "b", &mut out).unwrap();
        assert_eq!(
            text(&out[..len]),
            r#"{"artifact_name":"a","device_type":"b"}"#
        );
        assert_eq!(
            write_device_provides(&Provides::named("a"), "b", &mut out[..5]),
            Err(WriteError::BufferTooSmall { required: len })
        );
    }

    #[test]
    fn query() {
        let mut out = [0u8; 128];
        let len = write_next_query("rel 1+2/é", "rpi-4_b.~", &mut out).unwrap();
        assert_eq!(
            text(&out[..len]),
            "artifact_name=rel+1%2B2%2F%C3%A9&device_type=rpi-4_b.~"
        );
    }

    const NEXT: &[u8] = br#"{
        "id": "2a1c0f3e-5d7e-4b2e-9b35-1b2f2c8c9e10",
        "artifact": {
            "id": "7b6c",
            "artifact_name": "release-2",
            "source": {"uri": "https://s3.example/a?X-Amz=1&b=\u0026", "expire": "2024-05-01T12:00:00Z", "header": {"x": ["y"]}},
            "device_types_compatible": ["raspberrypi4", "rpi3"]
        },
        "extra": [1, {"n": null}, true]
    }"#;

    #[test]
    fn parses_next() {
        let next = DeploymentInstructions::parse(NEXT).unwrap();
        assert_eq!(next.id, "2a1c0f3e-5d7e-4b2e-9b35-1b2f2c8c9e10");
        assert_eq!(next.artifact_name, "release-2");
        assert_eq!(next.uri, "https://s3.example/a?X-Amz=1&b=&");
        assert!(next
            .device_types_compatible
            .iter()
            .eq(["raspberrypi4", "rpi3"]));
        assert!(!next.has_update_control_map);

        let upper = br#"{"ID":"1","Artifact":{"Artifact_Name":"n","SOURCE":{"URI":"u"},"device_types_compatible":["t"]},"update_control_map":{"priority":1}}"#;
        let next = DeploymentInstructions::parse(upper).unwrap();
        assert_eq!((next.id.as_str(), next.uri.as_str()), ("1", "u"));
        assert!(next.has_update_control_map);
    }

    #[test]
    fn refuses_invalid_next() {
        let cases: [(&[u8], NextError); 6] = [
            (br#"{"artifact":{"artifact_name":"n","source":{"uri":"u"},"device_types_compatible":["t"]}}"#, NextError::MissingId),
            (br#"{"id":"1","artifact":{"artifact_name":"n","source":{"uri":"u"},"device_types_compatible":[]}}"#, NextError::MissingDeviceTypes),
            (br#"{"id":"1","artifact":{"artifact_name":"","source":{"uri":"u"},"device_types_compatible":["t"]}}"#, NextError::MissingArtifactName),
            (br#"{"id":"1","artifact":{"artifact_name":"n","source":null,"device_types_compatible":["t"]}}"#, NextError::MissingUri),
            (br#"{"id":"1","artifact":{"artifact_name":"n","source":{"uri":3},"device_types_compatible":["t"]}}"#, NextError::Syntax(58)),
            (br#"{"id":"1"} x"#, NextError::Syntax(11)),
        ];
        for (body, error) in cases {
            assert_eq!(
                DeploymentInstructions::parse(body),
                Err(error),
                "{}",
                text(body)
            );
        }
        let mut long = std::vec::Vec::from(&br#"{"id":""#[..]);
        long.extend(core::iter::repeat_n(b'a', MAX_DEPLOYMENT_ID_LEN + 1));
        long.extend(br#""}"#);
        assert!(matches!(
            DeploymentInstructions::parse(&long),
            Err(NextError::TooLong(_))
        ));
    }

    #[test]
    fn next_never_panics_on_prefixes() {
        for end in 0..NEXT.len() {
            let _ = DeploymentInstructions::parse(&NEXT[..end]);
        }
    }

    #[test]
    fn statuses() {
        let mut out = [0u8; 512];
        let names: std::vec::Vec<_> = DeploymentStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "downloading",
                "pause_before_installing",
                "installing",
                "pause_before_rebooting",
                "rebooting",
                "pause_before_committing",
                "success",
                "failure",
                "already-installed"
            ]
        );
        let len = write_status(DeploymentStatus::Downloading, "", &mut out).unwrap();
        assert_eq!(text(&out[..len]), r#"{"status":"downloading"}"#);
        let len = write_status(
            DeploymentStatus::Installing,
            "Executing script: ArtifactInstall_Enter_00",
            &mut out,
        )
        .unwrap();
        assert_eq!(
            text(&out[..len]),
            r#"{"status":"installing","substate":"Executing script: ArtifactInstall_Enter_00"}"#
        );
        let long: std::string::String = core::iter::repeat_n('é', 250).collect();
        let len = write_status(DeploymentStatus::Failure, &long, &mut out).unwrap();
        let expected: std::string::String = core::iter::repeat_n('é', 200).collect();
        assert_eq!(
            text(&out[..len]),
            std::format!(r#"{{"status":"failure","substate":"{expected}"}}"#)
        );
    }

    #[test]
    fn logs() {
        let messages = [
            LogMessage {
                level: "info",
                message: "Running Mender client version: 3.5.3",
                timestamp: "2024-05-01T12:00:00Z",
            },
            LogMessage {
                level: "error",
                message: "Artifact install failed: \"x\"",
                timestamp: "2024-05-01T12:00:05Z",
            },
        ];
        let mut out = [0u8; 512];
        let body = write_log(&messages, &mut out).unwrap();
        let expected = r#"{"messages":[{"level":"info","message":"Running Mender client version: 3.5.3","timestamp":"2024-05-01T12:00:00Z"},{"level":"error","message":"Artifact install failed: \"x\"","timestamp":"2024-05-01T12:00:05Z"}]}"#;
        assert_eq!(text(&out[..body.len]), expected);
        assert_eq!(body.dropped, 0);
        assert_eq!(
            messages[0].encoded_len() + messages[1].encoded_len() + 1 + 15,
            expected.len()
        );

        // Exactly too small for both: the oldest goes.
        let body = write_log(&messages, &mut out[..expected.len() - 1]).unwrap();
        assert_eq!(body.dropped, 1);
        assert_eq!(
            text(&out[..body.len]),
            r#"{"messages":[{"level":"error","message":"Artifact install failed: \"x\"","timestamp":"2024-05-01T12:00:05Z"}]}"#
        );
        let newest_alone = body.len;
        assert_eq!(
            write_log(&messages, &mut out[..newest_alone - 1]),
            Err(WriteError::BufferTooSmall {
                required: newest_alone
            })
        );
        assert_eq!(write_log(&[], &mut out), Err(WriteError::Empty));
    }
}
