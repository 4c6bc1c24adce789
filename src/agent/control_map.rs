//! Update Control Maps, as the Go client 3.x (`mendersoftware/mender`
//! 3.4/3.5, `app/updatecontrolmap`, `app/updatemanager.go`) implements
//! them: pure logic, no I/O, no heap. The host feeds maps in (from the
//! server's `next` answer and its refreshes, from a local application over
//! D-Bus or the CLI), asks [`Pool::query_and_update`] before
//! `ArtifactInstall_Enter`, `ArtifactReboot_Enter` and
//! `ArtifactCommit_Enter`, and stores [`Pool::encode`] after every change.
//!
//! # Schema ([`ControlMap::parse`])
//!
//! | member | type | rule |
//! |---|---|---|
//! | `id` | string | a UUID: 36 characters, `-` at 8, 13, 18, 23, hex digits (either case) elsewhere; missing or empty is an error |
//! | `priority` | integer | in [-10, 10]; missing = 0; a fraction or exponent is an error |
//! | `states` | object | keys only `ArtifactInstall_Enter`, `ArtifactReboot_Enter`, `ArtifactCommit_Enter`; missing or `null` = no states |
//! | `states.*.action` | string | `continue`, `force_continue`, `pause`, `fail`; missing or `""` = `continue` |
//! | `states.*.on_map_expire` | string | `continue`, `force_continue`, `fail`; missing or `""` = the action, but `pause` gives `fail` |
//! | `states.*.on_action_executed` | string | any action; missing or `""` = the action |
//!
//! Unknown members are errors (at both levels), member names match ASCII
//! case-insensitively, a repeated member keeps its last value (a repeated
//! `states` object adds to the first, as Go's decoder fills the same map),
//! `null` leaves a member unchanged (but `"states": null` empties it). A
//! state that is `continue`/`continue`/`continue` after the defaults is
//! dropped; a map left without states means "delete" (local maps).
//!
//! # Precedence ([`Pool::query_and_update`])
//!
//! | step | rule |
//! |---|---|
//! | 1 | maps whose expiry time has come are marked expired |
//! | 2 | only maps with an entry for the state take part, whatever their id |
//! | 3 | priority levels are walked from the highest to the lowest |
//! | 4 | a map's answer is its `action`, or its `on_map_expire` once expired |
//! | 5 | every map of the level is consulted and its `action` for the state becomes its `on_action_executed` (also when it is expired) |
//! | 6 | a level answering any `fail` gives [`Decision::Fail`], else any `pause` gives [`Decision::Pause`], else any `force_continue` gives [`Decision::Continue`]; a level answering only `continue` passes to the next level |
//! | 7 | no level decided: [`Decision::Continue`] |
//!
//! # Expiry
//!
//! | event | rule |
//! |---|---|
//! | insertion (server or local) | stamped `now`; expires after `UpdateControlMapExpirationTimeSeconds` (default 2 x `UpdatePollIntervalSeconds`, [`crate::config::MenderConfig::update_control_map_expiration`]); half-life after half of it |
//! | expiry | the map stays, answering `on_map_expire` ([`Pool::expire`], also done by the query) |
//! | entering `idle` | expired maps are removed ([`Pool::clear_expired`]) |
//! | start-up ([`Pool::load`]) | every map is re-stamped with `UpdateControlMapBootExpirationTimeSeconds` (default 600 s); maps expired before stay expired |
//! | local insertion answer | refresh interval = expiration / 2, integer seconds ([`refresh_interval_secs`]) |
//! | paused | [`Pool::pause_timer`]: until the earliest half-life of the deployment's active maps, at most `UpdatePollIntervalSeconds`, then refresh the server map; also wake at [`Pool::next_expiry`] |
//!
//! # Persisted format ([`Pool::encode`], [`Pool::load`])
//!
//! The reference keeps JSON (`update-control-maps` =
//! `{"active":[...],"expired":[...]}`); otalite keeps the same content in a
//! compact binary record (stamps are not kept: they are re-made at boot):
//!
//! | offset | bytes | content |
//! |---|---|---|
//! | 0 | 1 | format version, 1 |
//! | 1 | 1 | number of maps `n` (at most [`MAX_MAPS`]) |
//! | then, `n` times | 1 | flags: bit 0 = expired, other bits 0 |
//! | | 1 | priority, two's complement, in [-10, 10] |
//! | | 1 | id length `L`, 1 to 36 |
//! | | `L` | id, UTF-8 |
//! | | 3 | `ArtifactInstall_Enter`, `ArtifactReboot_Enter`, `ArtifactCommit_Enter`: 0 = absent, else `0x80 + action + 4 * on_map_expire + 16 * on_action_executed` (0 continue, 1 force_continue, 2 pause, 3 fail; `on_map_expire` never pause) |
//! | end | 4 | CRC-32 (IEEE) of all the bytes before, little-endian |
//!
//! At most [`MAX_ENCODED_LEN`] bytes. Anything else is refused by
//! [`Pool::load`] (the reference then starts with an empty pool).

use core::fmt;

use heapless::{String, Vec};

use super::Instant;
use crate::json::{Json, JsonError, JsonErrorKind};
use crate::protocol::WriteError;

/// Most maps the pool holds (server and local together).
pub const MAX_MAPS: usize = 8;
/// Length of a map id (a UUID).
pub const ID_LEN: usize = 36;
/// Lowest accepted priority.
pub const MIN_PRIORITY: i8 = -10;
/// Highest accepted priority.
pub const MAX_PRIORITY: i8 = 10;
/// Default `UpdateControlMapBootExpirationTimeSeconds`.
pub const DEFAULT_BOOT_EXPIRATION_SECS: u32 = 600;
/// Largest [`Pool::encode`] output.
pub const MAX_ENCODED_LEN: usize = 2 + MAX_MAPS * (3 + ID_LEN + STATE_COUNT) + 4;
/// Version byte of the persisted format.
const FORMAT_VERSION: u8 = 1;
/// Number of states a map can control.
const STATE_COUNT: usize = 3;
/// Longest member name kept while parsing (longer ones are unknown).
const MAX_KEY_LEN: usize = 32;
/// Longest action value kept while parsing (longer ones are invalid).
const MAX_VALUE_LEN: usize = 16;

/// A map id: a UUID, or the deployment id a server map was given.
pub type MapId = String<ID_LEN>;

/// Why a map, a pool operation or a persisted pool was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Not valid JSON, or a member of the wrong type, at this byte offset.
    Syntax(usize),
    /// The document is `null` (the reference treats it as no map).
    Null,
    /// A member the schema does not have.
    UnknownMember,
    /// `id` is not a UUID.
    InvalidId,
    /// `priority` is outside [-10, 10].
    InvalidPriority,
    /// A `states` key other than the three controllable states.
    InvalidState,
    /// An `action`, `on_map_expire` or `on_action_executed` value outside
    /// its set.
    InvalidAction,
    /// A server map whose id is not the deployment id.
    IdMismatch,
    /// The pool already holds [`MAX_MAPS`] maps.
    PoolFull,
    /// A persisted pool that is not in the format (or fails its CRC).
    Corrupt,
    /// The output buffer is too small; `required` bytes are needed.
    BufferTooSmall {
        /// Bytes needed for the whole output.
        required: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax(offset) => write!(
                f,
                "update control map: invalid JSON or a value of the wrong type at byte {offset}"
            ),
            Self::Null => f.write_str("update control map: the document is null"),
            Self::UnknownMember => f.write_str("update control map contains unsupported fields"),
            Self::InvalidId => f.write_str("update control map: ID must be a UUID"),
            Self::InvalidPriority => f.write_str(
                "update control map: invalid priority, value must be in the range [-10, 10]",
            ),
            Self::InvalidState => f.write_str(
                "update control map: states may only be ArtifactInstall_Enter, ArtifactReboot_Enter, ArtifactCommit_Enter",
            ),
            Self::InvalidAction => f.write_str(
                "update control map: invalid action (continue, force_continue, pause, fail; on_map_expire not pause)",
            ),
            Self::IdMismatch => {
                f.write_str("mismatched control map ID and deployment ID")
            }
            Self::PoolFull => write!(
                f,
                "update control map pool is full ({MAX_MAPS} maps)"
            ),
            Self::Corrupt => f.write_str("persisted update control maps are corrupt"),
            Self::BufferTooSmall { required } => {
                write!(f, "the output needs a buffer of {required} bytes")
            }
        }
    }
}

impl core::error::Error for Error {}

fn json_error(error: JsonError) -> Error {
    Error::Syntax(error.offset)
}

/// A state a map can hold the update before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ControlState {
    /// Before `ArtifactInstall` (after the download).
    ArtifactInstallEnter,
    /// Before `ArtifactReboot` (only when the update needs a reboot).
    ArtifactRebootEnter,
    /// Before `ArtifactCommit` (after the post-reboot checks).
    ArtifactCommitEnter,
}

impl ControlState {
    /// The three states, in the persisted order.
    pub const ALL: [Self; STATE_COUNT] = [
        Self::ArtifactInstallEnter,
        Self::ArtifactRebootEnter,
        Self::ArtifactCommitEnter,
    ];

    /// The key in a map's `states`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ArtifactInstallEnter => "ArtifactInstall_Enter",
            Self::ArtifactRebootEnter => "ArtifactReboot_Enter",
            Self::ArtifactCommitEnter => "ArtifactCommit_Enter",
        }
    }

    /// The state a `states` key names (exact match, as Go's map keys).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.name() == name)
    }

    /// The `substate` reported while paused before this state.
    pub const fn pause_status(self) -> &'static str {
        match self {
            Self::ArtifactInstallEnter => "pause_before_installing",
            Self::ArtifactRebootEnter => "pause_before_rebooting",
            Self::ArtifactCommitEnter => "pause_before_committing",
        }
    }

    const fn index(self) -> usize {
        match self {
            Self::ArtifactInstallEnter => 0,
            Self::ArtifactRebootEnter => 1,
            Self::ArtifactCommitEnter => 2,
        }
    }
}

/// What a map says for a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// No objection (never overrides a lower priority).
    Continue,
    /// Continue, overriding lower priorities.
    ForceContinue,
    /// Hold the update before the state.
    Pause,
    /// Fail the update.
    Fail,
}

impl Action {
    /// The JSON value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Continue => "continue",
            Self::ForceContinue => "force_continue",
            Self::Pause => "pause",
            Self::Fail => "fail",
        }
    }

    /// The action a JSON value names (exact match).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Continue, Self::ForceContinue, Self::Pause, Self::Fail]
            .into_iter()
            .find(|action| action.as_str() == name)
    }

    const fn code(self) -> u8 {
        match self {
            Self::Continue => 0,
            Self::ForceContinue => 1,
            Self::Pause => 2,
            Self::Fail => 3,
        }
    }

    const fn from_code(code: u8) -> Self {
        match code & 3 {
            0 => Self::Continue,
            1 => Self::ForceContinue,
            2 => Self::Pause,
            _ => Self::Fail,
        }
    }
}

/// One state's entry of a map, with its defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StateActions {
    action: Action,
    on_map_expire: Action,
    on_action_executed: Action,
}

impl StateActions {
    /// An entry; `None` for a member gives its default. `None` (the whole
    /// entry) when `on_map_expire` is `pause`, which the schema forbids.
    pub fn new(
        action: Option<Action>,
        on_map_expire: Option<Action>,
        on_action_executed: Option<Action>,
    ) -> Option<Self> {
        let action = action.unwrap_or(Action::Continue);
        let on_map_expire = on_map_expire.unwrap_or(match action {
            Action::Pause => Action::Fail,
            other => other,
        });
        if on_map_expire == Action::Pause {
            return None;
        }
        Some(Self {
            action,
            on_map_expire,
            on_action_executed: on_action_executed.unwrap_or(action),
        })
    }

    /// The current action (replaced by `on_action_executed` once
    /// consulted).
    pub const fn action(&self) -> Action {
        self.action
    }

    /// The answer once the map has expired (never `pause`).
    pub const fn on_map_expire(&self) -> Action {
        self.on_map_expire
    }

    /// The action after the map was consulted for this state.
    pub const fn on_action_executed(&self) -> Action {
        self.on_action_executed
    }

    /// `continue` everywhere: such an entry is dropped.
    pub fn is_default(&self) -> bool {
        self.action == Action::Continue
            && self.on_map_expire == Action::Continue
            && self.on_action_executed == Action::Continue
    }

    fn encode(self) -> u8 {
        0x80 | self.action.code()
            | self.on_map_expire.code() << 2
            | self.on_action_executed.code() << 4
    }

    fn decode(byte: u8) -> Result<Option<Self>, Error> {
        if byte == 0 {
            return Ok(None);
        }
        if byte & 0xC0 != 0x80 {
            return Err(Error::Corrupt);
        }
        Self::new(
            Some(Action::from_code(byte)),
            Some(Action::from_code(byte >> 2)),
            Some(Action::from_code(byte >> 4)),
        )
        .map(Some)
        .ok_or(Error::Corrupt)
    }
}

/// True for a UUID as the reference checks it (hex digits of either case).
pub fn is_uuid(text: &str) -> bool {
    text.len() == ID_LEN
        && text.bytes().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

/// How many seconds a local application may wait before re-sending its map
/// (the D-Bus `SetUpdateControlMap` answer): half the expiration time,
/// rounded down. The reference returns it also when the map is refused.
pub const fn refresh_interval_secs(expiration_secs: u32) -> u32 {
    expiration_secs / 2
}

/// One update control map.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ControlMap {
    id: MapId,
    priority: i8,
    states: [Option<StateActions>; STATE_COUNT],
}

/// An action member as decoded, validated only at the end (a repeated
/// member may replace an invalid value, as in Go).
#[derive(Clone, Copy, Default)]
enum RawAction {
    #[default]
    Unset,
    Valid(Action),
    Invalid,
}

#[derive(Clone, Copy, Default)]
struct RawState {
    action: RawAction,
    on_map_expire: RawAction,
    on_action_executed: RawAction,
}

impl RawState {
    fn finish(self) -> Result<Option<StateActions>, Error> {
        let get = |raw: RawAction| match raw {
            RawAction::Unset => Ok(None),
            RawAction::Valid(action) => Ok(Some(action)),
            RawAction::Invalid => Err(Error::InvalidAction),
        };
        let actions = StateActions::new(
            get(self.action)?,
            get(self.on_map_expire)?,
            get(self.on_action_executed)?,
        )
        .ok_or(Error::InvalidAction)?;
        Ok((!actions.is_default()).then_some(actions))
    }
}

/// The iteration over an object's members: `field(json, key)` per member,
/// `Ok(false)` from `null`.
fn members(
    json: &mut Json<'_>,
    mut field: impl FnMut(&mut Json<'_>, Option<&str>) -> Result<(), Error>,
) -> Result<(), Error> {
    json.begin_object().map_err(json_error)?;
    let mut first = true;
    // `Some(None)`: a name too long for any known member.
    while let Some(key) = json
        .next_key_capped::<MAX_KEY_LEN>(&mut first)
        .map_err(json_error)?
    {
        field(json, key.as_deref())?;
    }
    Ok(())
}

fn raw_action(json: &mut Json<'_>, slot: &mut RawAction) -> Result<(), Error> {
    if json.null() {
        return Ok(());
    }
    *slot = match json.string_capped::<MAX_VALUE_LEN>().map_err(json_error)? {
        Some(text) if text.is_empty() => RawAction::Unset,
        Some(text) => Action::from_name(&text).map_or(RawAction::Invalid, RawAction::Valid),
        None => RawAction::Invalid,
    };
    Ok(())
}

fn raw_state(json: &mut Json<'_>) -> Result<RawState, Error> {
    let mut state = RawState::default();
    if json.null() {
        return Ok(state);
    }
    if json.peek() != Some(b'{') {
        return Err(json_error(json.error(JsonErrorKind::Syntax)));
    }
    members(json, |json, key| {
        let key = key.ok_or(Error::UnknownMember)?;
        if key.eq_ignore_ascii_case("action") {
            raw_action(json, &mut state.action)
        } else if key.eq_ignore_ascii_case("on_map_expire") {
            raw_action(json, &mut state.on_map_expire)
        } else if key.eq_ignore_ascii_case("on_action_executed") {
            raw_action(json, &mut state.on_action_executed)
        } else {
            Err(Error::UnknownMember)
        }
    })?;
    Ok(state)
}

impl ControlMap {
    /// A map with no states. `id` must be a UUID and `priority` in
    /// [-10, 10].
    ///
    /// # Errors
    /// [`Error::InvalidId`], [`Error::InvalidPriority`].
    pub fn new(id: &str, priority: i8) -> Result<Self, Error> {
        if !is_uuid(id) {
            return Err(Error::InvalidId);
        }
        if !(MIN_PRIORITY..=MAX_PRIORITY).contains(&priority) {
            return Err(Error::InvalidPriority);
        }
        Ok(Self {
            id: MapId::try_from(id).map_err(|_| Error::InvalidId)?,
            priority,
            states: [None; STATE_COUNT],
        })
    }

    /// Parses and validates one map (the whole of `json`, blanks around
    /// it allowed), applies the defaults and drops all-`continue` states.
    ///
    /// # Errors
    /// [`Error::Null`] for `null`, the validation errors of the module
    /// table, [`Error::Syntax`] otherwise.
    pub fn parse(json: &[u8]) -> Result<Self, Error> {
        let mut parser = Json::new(json);
        if parser.null() {
            parser.end().map_err(json_error)?;
            return Err(Error::Null);
        }
        let map = Self::parse_value(&mut parser)?;
        parser.end().map_err(json_error)?;
        Ok(map)
    }

    /// Finds the `update_control_map` member of a server answer (the v2
    /// `next` body, or the `.../update_control_map` refresh body) and
    /// parses it. `Ok(None)` when the member is missing or `null`: after a
    /// `next` answer that means [`Pool::insert_server`] with `None`; after
    /// a refresh the reference counts it as an error ("No control map
    /// returned") and retries. Other members are skipped unchecked beyond
    /// their syntax.
    ///
    /// # Errors
    /// [`Error::Syntax`] for a body that is not a JSON object, the map's
    /// own errors.
    pub fn from_response_body(body: &[u8]) -> Result<Option<Self>, Error> {
        let mut json = Json::new(body);
        let mut found = None;
        if json.peek() != Some(b'{') {
            return Err(json_error(json.error(JsonErrorKind::Syntax)));
        }
        members(&mut json, |json, key| {
            if key.is_some_and(|key| key.eq_ignore_ascii_case("update_control_map")) {
                found = if json.null() {
                    None
                } else {
                    Some(Self::parse_value(json)?)
                };
                Ok(())
            } else {
                json.skip_value().map_err(json_error)
            }
        })?;
        json.end().map_err(json_error)?;
        Ok(found)
    }

    fn parse_value(json: &mut Json<'_>) -> Result<Self, Error> {
        // `None` = longer than a UUID.
        let mut id: Option<MapId> = Some(MapId::new());
        let mut priority: i64 = 0;
        let mut states = [None::<RawState>; STATE_COUNT];
        let mut unknown_state = false;
        if json.peek() != Some(b'{') {
            return Err(json_error(json.error(JsonErrorKind::Syntax)));
        }
        members(json, |json, key| {
            let key = key.ok_or(Error::UnknownMember)?;
            if key.eq_ignore_ascii_case("id") {
                if !json.null() {
                    id = json.string_capped::<ID_LEN>().map_err(json_error)?;
                }
                Ok(())
            } else if key.eq_ignore_ascii_case("priority") {
                if !json.null() {
                    priority = json.integer().map_err(json_error)?;
                }
                Ok(())
            } else if key.eq_ignore_ascii_case("states") {
                if json.null() {
                    // Go sets the map to nil.
                    states = [None; STATE_COUNT];
                    unknown_state = false;
                    return Ok(());
                }
                if json.peek() != Some(b'{') {
                    return Err(json_error(json.error(JsonErrorKind::Syntax)));
                }
                members(json, |json, name| {
                    let state = raw_state(json)?;
                    match name.and_then(ControlState::from_name) {
                        Some(which) => {
                            if let Some(slot) = states.get_mut(which.index()) {
                                *slot = Some(state);
                            }
                        }
                        None => unknown_state = true,
                    }
                    Ok(())
                })
            } else {
                Err(Error::UnknownMember)
            }
        })?;
        // Validation in the reference's order: id, priority, state keys,
        // state values.
        let id = id.filter(|id| is_uuid(id)).ok_or(Error::InvalidId)?;
        let priority = i8::try_from(priority)
            .ok()
            .filter(|p| (MIN_PRIORITY..=MAX_PRIORITY).contains(p))
            .ok_or(Error::InvalidPriority)?;
        if unknown_state {
            return Err(Error::InvalidState);
        }
        let mut map = Self {
            id,
            priority,
            states: [None; STATE_COUNT],
        };
        for (slot, raw) in map.states.iter_mut().zip(states) {
            *slot = match raw {
                Some(raw) => raw.finish()?,
                None => None,
            };
        }
        Ok(map)
    }

    /// The map's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The map's priority, in [-10, 10].
    pub const fn priority(&self) -> i8 {
        self.priority
    }

    /// The entry for `state`, if the map controls it.
    pub fn state(&self, state: ControlState) -> Option<&StateActions> {
        self.states.get(state.index()).and_then(Option::as_ref)
    }

    /// Sets (or with `None` removes) the entry for `state`; an
    /// all-`continue` entry is removed, as parsing drops it.
    pub fn set_state(&mut self, state: ControlState, actions: Option<StateActions>) {
        if let Some(slot) = self.states.get_mut(state.index()) {
            *slot = actions.filter(|actions| !actions.is_default());
        }
    }

    /// No state left: a local map like this deletes its id and priority.
    pub fn is_empty(&self) -> bool {
        self.states.iter().all(Option::is_none)
    }

    /// Writes the map as JSON, like the reference marshals it (states in
    /// Go's sorted key order, all three members), for
    /// `otalite control-map show`. Returns the length written.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] with the size needed.
    pub fn write_json(&self, out: &mut [u8]) -> Result<usize, Error> {
        let mut writer = crate::protocol::JsonWriter::new(out);
        writer.raw("{\"id\":");
        writer.string(&self.id);
        writer.raw(",\"priority\":");
        let mut digits = [0u8; 4];
        writer.raw(priority_text(self.priority, &mut digits));
        writer.raw(",\"states\":{");
        let mut first = true;
        // Go's encoding/json sorts map keys.
        for state in [
            ControlState::ArtifactCommitEnter,
            ControlState::ArtifactInstallEnter,
            ControlState::ArtifactRebootEnter,
        ] {
            let Some(actions) = self.state(state) else {
                continue;
            };
            if !first {
                writer.raw(",");
            }
            first = false;
            writer.string(state.name());
            writer.raw(":{\"action\":");
            writer.string(actions.action.as_str());
            writer.raw(",\"on_map_expire\":");
            writer.string(actions.on_map_expire.as_str());
            writer.raw(",\"on_action_executed\":");
            writer.string(actions.on_action_executed.as_str());
            writer.raw("}");
        }
        writer.raw("}}");
        writer.finish().map_err(|error| match error {
            WriteError::BufferTooSmall { required } => Error::BufferTooSmall { required },
            _ => Error::BufferTooSmall { required: 0 },
        })
    }
}

/// `priority` in decimal (it is in [-128, 127]).
fn priority_text(priority: i8, buf: &mut [u8; 4]) -> &str {
    let mut len = 0;
    if priority < 0 {
        buf[0] = b'-';
        len = 1;
    }
    let magnitude = priority.unsigned_abs();
    let mut started = false;
    for divisor in [100u8, 10, 1] {
        let digit = magnitude / divisor % 10;
        if digit != 0 || started || divisor == 1 {
            started = true;
            if let Some(slot) = buf.get_mut(len) {
                *slot = b'0' + digit;
                len += 1;
            }
        }
    }
    core::str::from_utf8(buf.get(..len).unwrap_or(&[])).unwrap_or("0")
}

/// A map in the pool, with its stamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    map: ControlMap,
    half_way: Instant,
    expiry: Instant,
    expired: bool,
}

impl Entry {
    fn stamped(map: ControlMap, now: Instant, expiration_secs: u32) -> Self {
        let ms = u64::from(expiration_secs).saturating_mul(1000);
        Self {
            map,
            half_way: now.after(ms / 2),
            expiry: now.after(ms),
            expired: false,
        }
    }

    /// The map (its actions as updated by the queries).
    pub const fn map(&self) -> &ControlMap {
        &self.map
    }

    /// Half of the expiration time after the stamp: when a server map is
    /// refreshed while paused.
    pub const fn half_way(&self) -> Instant {
        self.half_way
    }

    /// When the map expires.
    pub const fn expiry(&self) -> Instant {
        self.expiry
    }

    /// Marked expired (by [`Pool::expire`] or a query).
    pub const fn is_expired(&self) -> bool {
        self.expired
    }
}

/// What the host does next while paused before a state
/// ([`Pool::pause_timer`]). In every case it also wakes up at
/// [`Pool::next_expiry`] or when a map is inserted or deleted, and then
/// queries again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseTimer {
    /// After `after_ms`, refresh this deployment's server map, then query
    /// again.
    RefreshServerMap {
        /// Milliseconds from `now`.
        after_ms: u64,
    },
    /// No active map of this deployment: after `after_ms` (the earliest
    /// half-life of any active map), query again.
    Requery {
        /// Milliseconds from `now`.
        after_ms: u64,
    },
    /// No active map at all: query again now.
    NoActiveMaps,
}

/// The answer of [`Pool::query_and_update`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Enter the state.
    Continue,
    /// Report the state's [`ControlState::pause_status`] once, then wait
    /// ([`Pool::pause_timer`]).
    Pause,
    /// Take the state's error path ("Forced a failed update").
    Fail,
}

/// The maps a device knows, at most [`MAX_MAPS`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pool {
    entries: Vec<Entry, MAX_MAPS>,
}

impl Pool {
    /// An empty pool.
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// The maps, in insertion order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Number of maps.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No maps.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes the maps matching `remove`, then appends `entry`; nothing
    /// changes when the rest would not leave room.
    fn replace(&mut self, remove: impl Fn(&ControlMap) -> bool, entry: Entry) -> Result<(), Error> {
        let kept = self.entries.iter().filter(|e| !remove(&e.map)).count();
        if kept >= MAX_MAPS {
            return Err(Error::PoolFull);
        }
        self.entries.retain(|e| !remove(&e.map));
        self.entries.push(entry).map_err(|_| Error::PoolFull)
    }

    /// A map from a local application (D-Bus `SetUpdateControlMap`, CLI):
    /// replaces the map with the same id and priority, or, without states,
    /// deletes it. Answer the caller with [`refresh_interval_secs`].
    ///
    /// # Errors
    /// [`Error::PoolFull`] (the pool is unchanged).
    pub fn insert_local(
        &mut self,
        map: ControlMap,
        now: Instant,
        expiration_secs: u32,
    ) -> Result<(), Error> {
        if map.is_empty() {
            self.delete(&map.id, map.priority);
            return Ok(());
        }
        let (id, priority) = (map.id.clone(), map.priority);
        self.replace(
            |m| m.id == id && m.priority == priority,
            Entry::stamped(map, now, expiration_secs),
        )
    }

    /// [`ControlMap::parse`] then [`Self::insert_local`], as the D-Bus
    /// method does: `null` is accepted and changes nothing.
    ///
    /// # Errors
    /// Those of both.
    pub fn set_local_json(
        &mut self,
        json: &[u8],
        now: Instant,
        expiration_secs: u32,
    ) -> Result<(), Error> {
        match ControlMap::parse(json) {
            Ok(map) => self.insert_local(map, now, expiration_secs),
            Err(Error::Null) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// The server's map for `deployment_id` (from the `next` answer or a
    /// refresh): replaces every map with that id, whatever its priority
    /// (a map without states is kept too, as the reference does). `None`
    /// deletes every map with that id. A map with an empty id takes the
    /// deployment id.
    ///
    /// # Errors
    /// [`Error::IdMismatch`], [`Error::InvalidId`] (empty id and a
    /// deployment id longer than [`ID_LEN`]), [`Error::PoolFull`]; the
    /// pool is then unchanged.
    pub fn insert_server(
        &mut self,
        deployment_id: &str,
        map: Option<ControlMap>,
        now: Instant,
        expiration_secs: u32,
    ) -> Result<(), Error> {
        let Some(mut map) = map else {
            self.delete_all(deployment_id);
            return Ok(());
        };
        if map.id.is_empty() {
            map.id = MapId::try_from(deployment_id).map_err(|_| Error::InvalidId)?;
        } else if map.id != deployment_id {
            return Err(Error::IdMismatch);
        }
        self.replace(
            |m| m.id == deployment_id,
            Entry::stamped(map, now, expiration_secs),
        )
    }

    /// Deletes the map with this id and priority.
    pub fn delete(&mut self, id: &str, priority: i8) {
        self.entries
            .retain(|e| e.map.id != id || e.map.priority != priority);
    }

    /// Deletes every map with this id (the deployment's maps, at cleanup).
    pub fn delete_all(&mut self, id: &str) {
        self.entries.retain(|e| e.map.id != id);
    }

    /// A map with this id exists, expired or not (then the reference
    /// refreshes it from the server before each controlled state).
    pub fn has_map(&self, id: &str) -> bool {
        self.entries.iter().any(|e| e.map.id == id)
    }

    /// Removes the expired maps (the reference does it entering `idle`).
    pub fn clear_expired(&mut self) {
        self.entries.retain(|e| !e.expired);
    }

    /// Marks the maps whose expiry has come; true if one was marked.
    pub fn expire(&mut self, now: Instant) -> bool {
        let mut changed = false;
        for entry in &mut self.entries {
            if !entry.expired && now >= entry.expiry {
                entry.expired = true;
                changed = true;
            }
        }
        changed
    }

    /// When the next unexpired map expires (the host wakes up then).
    pub fn next_expiry(&self) -> Option<Instant> {
        self.entries
            .iter()
            .filter(|e| !e.expired)
            .map(|e| e.expiry)
            .min()
    }

    /// Re-stamps every map at `now` with `boot_expiration_secs`; expired
    /// maps stay expired (done by [`Self::load`]).
    pub fn restamp(&mut self, now: Instant, boot_expiration_secs: u32) {
        for entry in &mut self.entries {
            let expired = entry.expired;
            *entry = Entry::stamped(entry.map.clone(), now, boot_expiration_secs);
            entry.expired = expired;
        }
    }

    /// The decision for entering `state` at `now` (module table,
    /// Precedence). Consulted maps move to their `on_action_executed`:
    /// persist the pool afterwards.
    pub fn query_and_update(&mut self, state: ControlState, now: Instant) -> Decision {
        self.expire(now);
        let index = state.index();
        let mut level = i16::MAX;
        // Distinct priorities, high to low (n <= MAX_MAPS).
        while let Some(priority) = self
            .entries
            .iter()
            .map(|e| i16::from(e.map.priority))
            .filter(|&p| p < level)
            .max()
        {
            level = priority;
            let (mut fail, mut pause, mut force) = (false, false, false);
            for entry in &mut self.entries {
                if i16::from(entry.map.priority) != level {
                    continue;
                }
                let expired = entry.expired;
                let Some(Some(actions)) = entry.map.states.get_mut(index) else {
                    continue;
                };
                let answer = if expired {
                    actions.on_map_expire
                } else {
                    actions.action
                };
                actions.action = actions.on_action_executed;
                match answer {
                    Action::Fail => fail = true,
                    Action::Pause => pause = true,
                    Action::ForceContinue => force = true,
                    Action::Continue => {}
                }
            }
            if fail {
                return Decision::Fail;
            }
            if pause {
                return Decision::Pause;
            }
            if force {
                return Decision::Continue;
            }
        }
        Decision::Continue
    }

    /// What to wait for while paused in `deployment_id` at `now`
    /// (`poll_interval_secs` = `UpdatePollIntervalSeconds`). Maps whose
    /// expiry has come count as expired.
    ///
    /// Differences from the reference (`controlMapPauseState`), which waits
    /// `30` as a `time.Duration`, i.e. 30 ns, when the half-life has
    /// passed: a passed half-life of a server map gives `after_ms: 0`
    /// (refresh now), and one of another map gives 30 s instead of a busy
    /// loop until that map expires.
    pub fn pause_timer(
        &self,
        deployment_id: &str,
        now: Instant,
        poll_interval_secs: u32,
    ) -> PauseTimer {
        let active = |e: &&Entry| !e.expired && now < e.expiry;
        let server = self
            .entries
            .iter()
            .filter(active)
            .filter(|e| e.map.id == deployment_id)
            .map(|e| e.half_way)
            .min();
        if let Some(half_way) = server {
            let cap = u64::from(poll_interval_secs).saturating_mul(1000);
            return PauseTimer::RefreshServerMap {
                after_ms: now.until(half_way).min(cap),
            };
        }
        match self.entries.iter().filter(active).map(|e| e.half_way).min() {
            Some(half_way) if half_way > now => PauseTimer::Requery {
                after_ms: now.until(half_way),
            },
            Some(_) => PauseTimer::Requery { after_ms: 30_000 },
            None => PauseTimer::NoActiveMaps,
        }
    }

    /// Writes the persisted record (module table). Returns its length (at
    /// most [`MAX_ENCODED_LEN`]).
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] with the size needed.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
        let required = 2
            + self
                .entries
                .iter()
                .map(|e| 3 + e.map.id.len() + STATE_COUNT)
                .sum::<usize>()
            + 4;
        let out = out
            .get_mut(..required)
            .ok_or(Error::BufferTooSmall { required })?;
        let mut bytes: Vec<u8, MAX_ENCODED_LEN> = Vec::new();
        let mut put = |slice: &[u8]| bytes.extend_from_slice(slice).map_err(|_| Error::Corrupt);
        put(&[
            FORMAT_VERSION,
            u8::try_from(self.entries.len()).unwrap_or(0),
        ])?;
        for entry in &self.entries {
            let id = entry.map.id.as_bytes();
            put(&[
                u8::from(entry.expired),
                entry.map.priority.to_le_bytes()[0],
                u8::try_from(id.len()).unwrap_or(0),
            ])?;
            put(id)?;
            let mut states = [0u8; STATE_COUNT];
            for (byte, state) in states.iter_mut().zip(&entry.map.states) {
                *byte = state.map_or(0, StateActions::encode);
            }
            put(&states)?;
        }
        let crc = crate::crc32::crc32(&bytes);
        bytes
            .extend_from_slice(&crc.to_le_bytes())
            .map_err(|_| Error::Corrupt)?;
        if bytes.len() != out.len() {
            return Err(Error::Corrupt);
        }
        out.copy_from_slice(&bytes);
        Ok(required)
    }

    /// Reads a persisted record and re-stamps every map at `now` with
    /// `boot_expiration_secs` (`UpdateControlMapBootExpirationTimeSeconds`),
    /// previously expired maps staying expired. All-`continue` states are
    /// dropped, as the reference's reload does.
    ///
    /// # Errors
    /// [`Error::Corrupt`]; the host then starts with an empty pool.
    pub fn load(bytes: &[u8], now: Instant, boot_expiration_secs: u32) -> Result<Self, Error> {
        let (body, crc) = bytes.split_last_chunk::<4>().ok_or(Error::Corrupt)?;
        if crate::crc32::crc32(body) != u32::from_le_bytes(*crc) {
            return Err(Error::Corrupt);
        }
        let mut reader = Reader(body);
        if reader.take::<1>()? != [FORMAT_VERSION] {
            return Err(Error::Corrupt);
        }
        let [count] = reader.take::<1>()?;
        let mut pool = Self::new();
        for _ in 0..count {
            let [flags, priority, id_len] = reader.take::<3>()?;
            if flags > 1 {
                return Err(Error::Corrupt);
            }
            let id = reader.slice(usize::from(id_len))?;
            let id = core::str::from_utf8(id).map_err(|_| Error::Corrupt)?;
            let priority = i8::from_le_bytes([priority]);
            if id.is_empty() || !(MIN_PRIORITY..=MAX_PRIORITY).contains(&priority) {
                return Err(Error::Corrupt);
            }
            let mut map = ControlMap {
                id: MapId::try_from(id).map_err(|_| Error::Corrupt)?,
                priority,
                states: [None; STATE_COUNT],
            };
            for (slot, byte) in map.states.iter_mut().zip(reader.take::<STATE_COUNT>()?) {
                *slot = StateActions::decode(byte)?.filter(|s| !s.is_default());
            }
            let mut entry = Entry::stamped(map, now, boot_expiration_secs);
            entry.expired = flags == 1;
            pool.entries.push(entry).map_err(|_| Error::Corrupt)?;
        }
        if !reader.0.is_empty() {
            return Err(Error::Corrupt);
        }
        Ok(pool)
    }
}

/// Consumes a persisted record.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn slice(&mut self, len: usize) -> Result<&'a [u8], Error> {
        if len > self.0.len() {
            return Err(Error::Corrupt);
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or(Error::Corrupt)?;
        self.0 = rest;
        Ok(*head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;
    use std::string::ToString;
    use Action::{Continue as C, Fail as F, ForceContinue as FC, Pause as P};
    use ControlState::ArtifactInstallEnter as INSTALL;

    const UUID: &str = "3380e4f2-c913-11eb-9119-c39aba66b261";
    const UUID2: &str = "68711312-c913-11eb-a0ab-1ba9e86afdfd";
    const UUID3: &str = "01234567-89ab-cdef-0123-456789abcdef";

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn one(json: &str) -> Result<ControlMap, Error> {
        ControlMap::parse(json.as_bytes())
    }

    fn map_with(id: &str, priority: i8, states: &str) -> ControlMap {
        let json = format!(r#"{{"id":"{id}","priority":{priority},"states":{{{states}}}}}"#);
        one(&json).unwrap()
    }

    /// Expected outcome of a parse row: an error, or the install entry as
    /// (action, on_map_expire, on_action_executed) plus the state count.
    type Parsed = Result<(Option<(Action, Action, Action)>, usize), Error>;

    /// Validation and defaults, ported from the reference's
    /// `app/updatecontrolmap/updatecontrolmap_test.go` (3.5.3).
    const PARSE_CASES: &[(&str, &str, Parsed)] = &[
        // TestUpdateControlMapValidation: "Empty, shall invalidate".
        ("Validation/empty", r#"{}"#, Err(Error::InvalidId)),
        // "Only ID, shall validate" (no states: a delete).
        (
            "Validation/only-id",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261"}"#,
            Ok((None, 0)),
        ),
        (
            "Validation/uuid+a",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261a"}"#,
            Err(Error::InvalidId),
        ),
        (
            "Validation/hyphens",
            r#"{"id":"3380e4f2-c913-11eb-91199-c39aba66b26"}"#,
            Err(Error::InvalidId),
        ),
        (
            "Validation/illegal-char",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b26g"}"#,
            Err(Error::InvalidId),
        ),
        // isUUID lower-cases first: upper-case hex is a UUID.
        (
            "isUUID/upper-case",
            r#"{"id":"3380E4F2-C913-11EB-9119-C39ABA66B261"}"#,
            Ok((None, 0)),
        ),
        (
            "Validation/priority-10",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","priority":-10}"#,
            Ok((None, 0)),
        ),
        (
            "Validation/priority-9",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","priority":-9}"#,
            Ok((None, 0)),
        ),
        (
            "Validation/priority1",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","priority":1}"#,
            Ok((None, 0)),
        ),
        (
            "Validation/priority9",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","priority":9}"#,
            Ok((None, 0)),
        ),
        (
            "Validation/priority10",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","priority":10}"#,
            Ok((None, 0)),
        ),
        (
            "Validation/priority-11",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","priority":-11}"#,
            Err(Error::InvalidPriority),
        ),
        (
            "Validation/priority11",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","priority":11}"#,
            Err(Error::InvalidPriority),
        ),
        (
            "Validation/priority999",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","priority":999}"#,
            Err(Error::InvalidPriority),
        ),
        (
            "Validation/priority-999",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","priority":-999}"#,
            Err(Error::InvalidPriority),
        ),
        // Go decodes into an int: a fraction is a type error.
        (
            "decode/priority-fraction",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","priority":1.0}"#,
            Err(Error::Syntax(56)),
        ),
        // "Legal values" of state keys (empty entries: all defaults, dropped).
        (
            "Validation/ArtifactInstall_Enter",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","states":{"ArtifactInstall_Enter":{}}}"#,
            Ok((None, 0)),
        ),
        (
            "Validation/ArtifactReboot_Enter",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","states":{"ArtifactReboot_Enter":{}}}"#,
            Ok((None, 0)),
        ),
        (
            "Validation/ArtifactCommit_Enter",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","states":{"ArtifactCommit_Enter":{}}}"#,
            Ok((None, 0)),
        ),
        (
            "Validation/ArtifactInstall_Enter0",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","states":{"ArtifactInstall_Enter0":{}}}"#,
            Err(Error::InvalidState),
        ),
        (
            "Validation/0ArtifactReboot_Enter",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","states":{"0ArtifactReboot_Enter":{}}}"#,
            Err(Error::InvalidState),
        ),
        (
            "Validation/ArtifactCommit_Leave",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","states":{"ArtifactCommit_Leave":{}}}"#,
            Err(Error::InvalidState),
        ),
        // TestUpdateControlMapStateValidation: legal and illegal values.
        (
            "StateValidation/action-pause",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","states":{"ArtifactInstall_Enter":{"action":"pause"}}}"#,
            Ok((Some((P, F, P)), 1)),
        ),
        (
            "StateValidation/on_map_expire-pause",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","states":{"ArtifactInstall_Enter":{"on_map_expire":"pause"}}}"#,
            Err(Error::InvalidAction),
        ),
        (
            "StateValidation/on_action_executed-pause",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","states":{"ArtifactInstall_Enter":{"on_action_executed":"pause"}}}"#,
            Ok((Some((C, C, P)), 1)),
        ),
        (
            "StateValidation/action-foo",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","states":{"ArtifactInstall_Enter":{"action":"foo"}}}"#,
            Err(Error::InvalidAction),
        ),
        (
            "StateValidation/on_map_expire-bar",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","states":{"ArtifactInstall_Enter":{"on_map_expire":"bar"}}}"#,
            Err(Error::InvalidAction),
        ),
        (
            "StateValidation/on_action_executed-baz",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","states":{"ArtifactInstall_Enter":{"on_action_executed":"baz"}}}"#,
            Err(Error::InvalidAction),
        ),
        // TestUpdateControlMapStateSanitize, cases 0 to 7.
        (
            "StateSanitize/0",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","states":{"ArtifactInstall_Enter":{"action":"pause","on_map_expire":"force_continue","on_action_executed":"fail"}}}"#,
            Ok((Some((P, FC, F)), 1)),
        ),
        (
            "StateSanitize/1",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","states":{"ArtifactInstall_Enter":{"action":"","on_map_expire":"","on_action_executed":""}}}"#,
            Ok((None, 0)),
        ),
        (
            "StateSanitize/2",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","states":{"ArtifactInstall_Enter":{"action":"force_continue"}}}"#,
            Ok((Some((FC, FC, FC)), 1)),
        ),
        (
            "StateSanitize/3",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","states":{"ArtifactInstall_Enter":{"on_map_expire":"force_continue"}}}"#,
            Ok((Some((C, FC, C)), 1)),
        ),
        (
            "StateSanitize/4",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","states":{"ArtifactInstall_Enter":{"on_action_executed":"force_continue"}}}"#,
            Ok((Some((C, C, FC)), 1)),
        ),
        (
            "StateSanitize/5",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","states":{"ArtifactInstall_Enter":{"action":"fail"}}}"#,
            Ok((Some((F, F, F)), 1)),
        ),
        (
            "StateSanitize/6",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","states":{"ArtifactInstall_Enter":{"action":"pause"}}}"#,
            Ok((Some((P, F, P)), 1)),
        ),
        (
            "StateSanitize/7",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","states":{"ArtifactInstall_Enter":{"on_map_expire":"fail","on_action_executed":"fail"}}}"#,
            Ok((Some((C, F, F)), 1)),
        ),
        // TestUpdateControlMapSanitize: all-default states are removed.
        (
            "Sanitize/all-default",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","priority":10,"states":{"ArtifactInstall_Enter":{"action":"continue","on_map_expire":"continue","on_action_executed":"continue"},"ArtifactReboot_Enter":{"action":"continue","on_map_expire":"continue","on_action_executed":"continue"},"ArtifactCommit_Enter":{"action":"continue","on_map_expire":"continue","on_action_executed":"continue"}}}"#,
            Ok((None, 0)),
        ),
        (
            "Sanitize/one-state",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","priority":10,"states":{"ArtifactInstall_Enter":{"action":"continue","on_map_expire":"continue","on_action_executed":"continue"},"ArtifactReboot_Enter":{"action":"fail","on_map_expire":"continue","on_action_executed":"continue"},"ArtifactCommit_Enter":{"action":"continue","on_map_expire":"continue","on_action_executed":"continue"}}}"#,
            Ok((None, 1)),
        ),
        // TestUpdateControlMapValidationFromJSON.
        (
            "ValidationFromJSON",
            r#"{"priority":0,"states":{"ArtifactInstall_Enter":{"action":"continue","on_map_expire":"force_continue","on_action_executed":"pause"},"ArtifactReboot_Enter":{"action":"pause","on_map_expire":"fail","on_action_executed":"continue"}},"id":"01234567-89ab-cdef-0123-456789abcdef"}"#,
            Ok((Some((C, FC, P)), 2)),
        ),
        // UnmarshalJSON: DisallowUnknownFields, at both levels.
        (
            "UnmarshalJSON/unknown-member",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","extra":1}"#,
            Err(Error::UnknownMember),
        ),
        (
            "UnmarshalJSON/unknown-state-member",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","states":{"ArtifactInstall_Enter":{"actions":"pause"}}}"#,
            Err(Error::UnknownMember),
        ),
        // encoding/json: names match case-insensitively, the last repeat wins.
        (
            "decode/case-insensitive",
            r#"{"ID":"3380e4f2-c913-11eb-9119-c39aba66b261","States":{"ArtifactInstall_Enter":{"Action":"fail"}}}"#,
            Ok((Some((F, F, F)), 1)),
        ),
        (
            "decode/last-repeat-wins",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","states":{"ArtifactInstall_Enter":{"action":"foo","action":"pause"}}}"#,
            Ok((Some((P, F, P)), 1)),
        ),
        (
            "decode/states-null",
            r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","states":{"ArtifactInstall_Enter":{"action":"fail"}},"states":null}"#,
            Ok((None, 0)),
        ),
        ("decode/null", "null", Err(Error::Null)),
    ];

    #[test]
    fn parse_table() {
        for (name, json, expected) in PARSE_CASES {
            let got = one(json).map(|map| {
                let install = map
                    .state(INSTALL)
                    .map(|s| (s.action(), s.on_map_expire(), s.on_action_executed()));
                (install, map.states.iter().flatten().count())
            });
            assert_eq!(&got, expected, "{name}");
        }
    }

    /// (priority, expired, install entry as action/on_map_expire/
    /// on_action_executed, `None` = no entry). Entries are built as the Go
    /// tests build them (unsanitized; Go's "" is `continue` here).
    type MapRow = (i8, bool, Option<(Action, Action, Action)>);

    /// Precedence, ported from `TestQueryLogic` in the reference's
    /// `app/updatemanager_test.go` (3.5.3): maps, then the decisions of
    /// successive queries.
    const QUERY_CASES: &[(&str, &[MapRow], &[Decision])] = &[
        (
            "Fail exists: Action",
            &[
                (2, false, Some((F, F, F))),
                (1, false, Some((C, C, C))),
                (1, false, Some((C, C, C))),
            ],
            &[Decision::Fail],
        ),
        (
            "Fail exists: OnMapExpire",
            &[
                (2, true, Some((C, F, C))),
                (1, false, Some((C, C, C))),
                (1, false, Some((C, C, C))),
            ],
            &[Decision::Fail],
        ),
        (
            "Pause exists: Action",
            &[
                (2, false, Some((P, F, P))),
                (1, false, Some((F, F, F))),
                (1, false, Some((C, C, C))),
            ],
            &[Decision::Pause],
        ),
        (
            "Pause exists: OnMapExpire",
            &[
                (2, true, Some((C, P, C))),
                (1, false, Some((F, F, F))),
                (1, false, Some((C, C, C))),
            ],
            &[Decision::Pause],
        ),
        (
            "force_continue exists: Action",
            &[
                (2, false, Some((FC, FC, FC))),
                (1, false, Some((F, F, F))),
                (1, false, Some((C, C, C))),
            ],
            &[Decision::Continue],
        ),
        (
            "force_continue exists: OnMapExpire",
            &[
                (2, true, Some((C, FC, C))),
                (1, false, Some((F, F, F))),
                (1, false, Some((C, C, C))),
            ],
            &[Decision::Continue],
        ),
        (
            "No value exist - return continue",
            &[(0, false, None), (1, false, None), (1, false, None)],
            &[Decision::Continue],
        ),
        // The Go test checks the first query; the second shows the override.
        (
            "on_action_executed - overrides",
            &[
                (0, false, Some((F, F, P))),
                (1, false, Some((C, C, C))),
                (1, false, Some((C, C, C))),
            ],
            &[Decision::Fail, Decision::Pause, Decision::Pause],
        ),
        (
            "Fail overrides pause - equal priorities: Action",
            &[
                (2, false, Some((F, F, F))),
                (2, false, Some((P, F, P))),
                (1, false, Some((C, C, C))),
            ],
            &[Decision::Fail],
        ),
        (
            "Fail overrides pause - equal priorities: OnMapExpire",
            &[
                (2, true, Some((C, F, C))),
                (2, true, Some((C, P, C))),
                (1, false, Some((C, C, C))),
            ],
            &[Decision::Fail],
        ),
        (
            "Check Action overrides OnMapExpire for active map",
            &[
                (2, false, Some((P, F, P))),
                (1, false, Some((C, C, C))),
                (1, false, Some((C, C, C))),
            ],
            &[Decision::Pause],
        ),
        // Go code (queryActionList): plain continue never overrides.
        (
            "continue does not override a lower pause",
            &[(5, false, Some((C, C, C))), (-5, false, Some((P, F, C)))],
            &[Decision::Pause, Decision::Continue],
        ),
        // pause, then once consulted its on_action_executed: continue.
        (
            "pause once then continue",
            &[(0, false, Some((P, F, C)))],
            &[Decision::Pause, Decision::Continue],
        ),
        // A lower level not reached keeps its action.
        (
            "lower level untouched",
            &[(3, false, Some((FC, FC, C))), (1, false, Some((F, F, C)))],
            &[Decision::Continue, Decision::Fail, Decision::Continue],
        ),
    ];

    #[test]
    fn query_table() {
        let ids = [UUID, UUID2, UUID3, UUID, UUID2];
        for (name, maps, decisions) in QUERY_CASES {
            let mut pool = Pool::new();
            for (index, (priority, expired, install)) in maps.iter().enumerate() {
                let mut map = ControlMap::new(ids[index], *priority).unwrap();
                map.states[0] =
                    install.map(|(action, on_map_expire, on_action_executed)| StateActions {
                        action,
                        on_map_expire,
                        on_action_executed,
                    });
                let mut entry = Entry::stamped(map, t(0), 3);
                entry.expired = *expired;
                pool.entries.push(entry).unwrap();
            }
            for (round, expected) in decisions.iter().enumerate() {
                assert_eq!(
                    pool.query_and_update(INSTALL, t(1)),
                    *expected,
                    "{name}, query {round}"
                );
            }
        }
    }

    /// TestMapExpired, TestCleanExpiredMaps: expiry by time, removal at idle.
    #[test]
    fn expiry_and_clear() {
        let mut pool = Pool::new();
        let map = map_with(UUID, 0, r#""ArtifactInstall_Enter":{"action":"pause"}"#);
        pool.insert_local(map, t(1000), 4).unwrap();
        assert_eq!(pool.next_expiry(), Some(t(5000)));
        assert_eq!(pool.entries()[0].half_way(), t(3000));
        assert!(!pool.expire(t(4999)));
        assert_eq!(pool.query_and_update(INSTALL, t(4999)), Decision::Pause);
        // Expired: on_map_expire (default for pause: fail).
        assert_eq!(pool.query_and_update(INSTALL, t(5000)), Decision::Fail);
        assert!(pool.entries()[0].is_expired());
        assert_eq!(pool.next_expiry(), None);
        pool.clear_expired();
        assert!(pool.is_empty());
    }

    /// TestInsertMatchingMap, TestInsertMatching, TestDelete,
    /// TestDeleteAllPriorities, TestInsertReplaceAllPriorities,
    /// TestUpdateControlMapEqual (id and priority identify a local map).
    #[test]
    fn insert_and_delete() {
        let pause = r#""ArtifactInstall_Enter":{"action":"pause"}"#;
        let fail = r#""ArtifactInstall_Enter":{"action":"fail"}"#;
        let mut pool = Pool::new();
        pool.insert_local(map_with(UUID, 1, pause), t(0), 60)
            .unwrap();
        pool.insert_local(map_with(UUID, 2, pause), t(0), 60)
            .unwrap();
        pool.insert_local(map_with(UUID2, 1, pause), t(0), 60)
            .unwrap();
        assert_eq!(pool.len(), 3);
        // Same id and priority: replaced.
        pool.insert_local(map_with(UUID, 1, fail), t(0), 60)
            .unwrap();
        assert_eq!(pool.len(), 3);
        // No states: deletes that id and priority only.
        pool.insert_local(map_with(UUID, 2, ""), t(0), 60).unwrap();
        assert_eq!(pool.len(), 2);
        // Server map: replaces every priority of its id.
        pool.insert_server(UUID2, Some(map_with(UUID2, 5, fail)), t(0), 60)
            .unwrap();
        assert_eq!(pool.len(), 2);
        assert_eq!(
            pool.insert_server(UUID3, Some(map_with(UUID2, 5, fail)), t(0), 60),
            Err(Error::IdMismatch)
        );
        let mut empty_id = map_with(UUID2, 0, fail);
        empty_id.id.clear();
        pool.insert_server(UUID3, Some(empty_id), t(0), 60).unwrap();
        assert!(pool.has_map(UUID3));
        pool.insert_server(UUID3, None, t(0), 60).unwrap();
        assert!(!pool.has_map(UUID3));
        pool.delete(UUID, 1);
        assert!(!pool.has_map(UUID));
        pool.delete_all(UUID2);
        assert!(pool.is_empty());
    }

    #[test]
    fn full_pool_is_refused_unchanged() {
        let pause = r#""ArtifactInstall_Enter":{"action":"pause"}"#;
        let mut pool = Pool::new();
        for priority in 0..MAX_MAPS as i8 {
            pool.insert_local(map_with(UUID, priority, pause), t(0), 60)
                .unwrap();
        }
        let before = pool.clone();
        assert_eq!(
            pool.insert_local(map_with(UUID2, 0, pause), t(0), 60),
            Err(Error::PoolFull)
        );
        assert_eq!(pool, before);
        // Replacing is still possible.
        pool.insert_local(map_with(UUID, 0, pause), t(5), 60)
            .unwrap();
        assert_eq!(pool.insert_server(UUID, None, t(0), 60), Ok(()));
        assert!(pool.is_empty());
        assert!(Error::PoolFull.to_string().contains('8'));
    }

    /// TestSaveAndLoadToDB, TestActiveAndExpiredPoolKeys: the pool survives
    /// a reboot, re-stamped, expired maps staying expired.
    #[test]
    fn persist_and_reload() {
        let mut pool = Pool::new();
        let state = r#""ArtifactInstall_Enter":{"action":"pause","on_action_executed":"fail"},"ArtifactCommit_Enter":{"action":"force_continue"}"#;
        pool.insert_local(map_with(UUID, -3, state), t(0), 10)
            .unwrap();
        pool.insert_server(UUID2, Some(map_with(UUID2, 7, state)), t(0), 100)
            .unwrap();
        assert!(pool.expire(t(10_000)));
        let mut buf = [0u8; MAX_ENCODED_LEN];
        let len = pool.encode(&mut buf).unwrap();
        assert_eq!(
            pool.encode(&mut [0u8; 10]),
            Err(Error::BufferTooSmall { required: len })
        );
        let loaded = Pool::load(&buf[..len], t(50_000), 600).unwrap();
        assert_eq!(loaded.len(), 2);
        assert!(loaded.entries()[0].is_expired());
        assert!(!loaded.entries()[1].is_expired());
        assert_eq!(loaded.entries()[1].expiry(), t(650_000));
        assert_eq!(loaded.entries()[1].half_way(), t(350_000));
        assert_eq!(loaded.entries()[1].map(), pool.entries()[1].map());
        // Any flipped byte is refused.
        for index in 0..len {
            let mut bad = buf;
            bad[index] ^= 0x10;
            assert_eq!(Pool::load(&bad[..len], t(0), 600), Err(Error::Corrupt));
        }
        assert_eq!(Pool::load(&buf[..len - 1], t(0), 600), Err(Error::Corrupt));
        // Empty pool round trip.
        let len = Pool::new().encode(&mut buf).unwrap();
        assert_eq!(Pool::load(&buf[..len], t(0), 600), Ok(Pool::new()));
    }

    /// TestUpdateControlMapHalfTime and `controlMapPauseState`.
    #[test]
    fn pause_timer() {
        let pause = r#""ArtifactInstall_Enter":{"action":"pause"}"#;
        let mut pool = Pool::new();
        assert_eq!(pool.pause_timer(UUID, t(0), 60), PauseTimer::NoActiveMaps);
        pool.insert_local(map_with(UUID2, 0, pause), t(0), 1000)
            .unwrap();
        assert_eq!(
            pool.pause_timer(UUID, t(0), 60),
            PauseTimer::Requery { after_ms: 500_000 }
        );
        assert_eq!(
            pool.pause_timer(UUID, t(600_000), 60),
            PauseTimer::Requery { after_ms: 30_000 }
        );
        pool.insert_server(UUID, Some(map_with(UUID, 0, pause)), t(0), 1000)
            .unwrap();
        // Capped at the poll interval.
        assert_eq!(
            pool.pause_timer(UUID, t(0), 60),
            PauseTimer::RefreshServerMap { after_ms: 60_000 }
        );
        assert_eq!(
            pool.pause_timer(UUID, t(0), 6000),
            PauseTimer::RefreshServerMap { after_ms: 500_000 }
        );
        assert_eq!(
            pool.pause_timer(UUID, t(700_000), 6000),
            PauseTimer::RefreshServerMap { after_ms: 0 }
        );
        assert_eq!(refresh_interval_secs(3601), 1800);
    }

    #[test]
    fn local_json_and_response_body() {
        let mut pool = Pool::new();
        assert_eq!(pool.set_local_json(b" null ", t(0), 60), Ok(()));
        assert_eq!(
            pool.set_local_json(b"{\"id\":\"x\"}", t(0), 60),
            Err(Error::InvalidId)
        );
        let body = format!(
            r#"{{"id":"{UUID}","artifact":{{}},"update_control_map":{{"id":"{UUID}","states":{{"ArtifactReboot_Enter":{{"action":"pause"}}}}}}}}"#
        );
        let map = ControlMap::from_response_body(body.as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(map.id(), UUID);
        assert!(map.state(ControlState::ArtifactRebootEnter).is_some());
        assert_eq!(
            ControlMap::from_response_body(br#"{"update_control_map":null}"#),
            Ok(None)
        );
        assert_eq!(ControlMap::from_response_body(b"{}"), Ok(None));
        assert!(ControlMap::from_response_body(br#"{"update_control_map":{}}"#).is_err());
    }

    #[test]
    fn write_json_round_trips() {
        let json = r#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","priority":-10,"states":{"ArtifactCommit_Enter":{"action":"force_continue","on_map_expire":"force_continue","on_action_executed":"force_continue"},"ArtifactInstall_Enter":{"action":"pause","on_map_expire":"fail","on_action_executed":"continue"}}}"#;
        let map = one(json).unwrap();
        let mut out = [0u8; 512];
        let len = map.write_json(&mut out).unwrap();
        assert_eq!(core::str::from_utf8(&out[..len]).unwrap(), json);
        assert_eq!(
            map.write_json(&mut [0u8; 8]),
            Err(Error::BufferTooSmall { required: len })
        );
        for priority in [-10i8, -1, 0, 7, 10, -128, 127] {
            let mut buf = [0u8; 4];
            assert_eq!(priority_text(priority, &mut buf), priority.to_string());
        }
    }

    #[test]
    fn garbage_never_panics() {
        let base = br#"{"id":"3380e4f2-c913-11eb-9119-c39aba66b261","priority":-1,"states":{"ArtifactInstall_Enter":{"action":"pause"}}}"#;
        for cut in 0..base.len() {
            let _ = ControlMap::parse(&base[..cut]);
            let mut flipped = *base;
            flipped[cut] = b'"';
            let _ = ControlMap::parse(&flipped);
        }
        let _ = ControlMap::parse(b"\"\\ud800\"");
        assert!(ControlMap::parse(b"{\"id\":\"1\"} x").is_err());
    }
}
