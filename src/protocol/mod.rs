//! Mender device-API messages (sans-IO): what the agent sends and how it
//! reads the answers, without a heap. Transport lives in `crate::host`.

pub mod http;
