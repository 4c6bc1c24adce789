//! Mender device-API messages (sans-IO): what the agent sends and how it
//! reads the answers, without a heap. Transport lives in the `otalite-host` crate.
//!
//! Writers fill a caller buffer and return the length, or
//! [`WriteError::BufferTooSmall`] with the exact size needed; nothing is
//! truncated silently.

pub mod auth;
pub mod deployments;
pub mod http;
pub mod inventory;
pub mod jobs;
pub mod keyvalue;
pub mod mqtt;
pub mod upparat_ini;
mod write;

pub(crate) use write::JsonWriter;
pub use write::WriteError;
