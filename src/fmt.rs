//! Logging shim: `trace!` .. `error!` forward to the `log` crate when the
//! `log` feature is on and compile to nothing otherwise.
#![allow(unused_macros)]

#[cfg(feature = "log")]
macro_rules! trace { ($($t:tt)*) => { ::log::trace!($($t)*) }; }
#[cfg(feature = "log")]
macro_rules! debug { ($($t:tt)*) => { ::log::debug!($($t)*) }; }
#[cfg(feature = "log")]
macro_rules! info { ($($t:tt)*) => { ::log::info!($($t)*) }; }
#[cfg(feature = "log")]
macro_rules! warn { ($($t:tt)*) => { ::log::warn!($($t)*) }; }
#[cfg(feature = "log")]
macro_rules! error { ($($t:tt)*) => { ::log::error!($($t)*) }; }

#[cfg(not(feature = "log"))]
macro_rules! trace { ($($t:tt)*) => {{ let _ = || { let _ = ::core::format_args!($($t)*); }; }}; }
#[cfg(not(feature = "log"))]
macro_rules! debug { ($($t:tt)*) => {{ let _ = || { let _ = ::core::format_args!($($t)*); }; }}; }
#[cfg(not(feature = "log"))]
macro_rules! info { ($($t:tt)*) => {{ let _ = || { let _ = ::core::format_args!($($t)*); }; }}; }
#[cfg(not(feature = "log"))]
macro_rules! warn { ($($t:tt)*) => {{ let _ = || { let _ = ::core::format_args!($($t)*); }; }}; }
#[cfg(not(feature = "log"))]
macro_rules! error { ($($t:tt)*) => {{ let _ = || { let _ = ::core::format_args!($($t)*); }; }}; }
