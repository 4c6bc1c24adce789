//! GRUB environment support for otalite: a GRUB env block codec and
//! [`GrubEnv`], an [`otalite::board::BootEnv`] over Mender's
//! [grub-mender-grubenv] layout or over a single grubenv file.
//!
//! # Environment block format ([`block`])
//! A GRUB env block is a fixed-size file (normally 1024 bytes):
//! `# GRUB Environment Block\n`, then `name=value\n` per variable (`\` and
//! newline in values escaped as `\\` and `\` + newline), then `#` up to the
//! block size. Writing never changes the size.
//!
//! # grub-mender-grubenv layout
//! `ENV_DIR` is found by [`find_env_dir`] (`/etc/mender_grubenv.config` or a
//! list of candidates, like `grub-mender-grubenv-print`).
//!
//! | path under `ENV_DIR` | format | content |
//! |---|---|---|
//! | `mender_grubenv1/env` | env block | copy 1 of the variables; the one GRUB loads when both locks are clean |
//! | `mender_grubenv1/lock` | env block | `editing=0`, or `editing=1` while `env` is being written |
//! | `mender_grubenv1/lock.sha256sum` | `sha256sum` output | `<hex>  lock`: checksum of the clean (`editing=0`) lock file; only the Linux tools check it |
//! | `mender_grubenv2/env` | env block | copy 2, written first |
//! | `mender_grubenv2/lock` | env block | as for copy 1 |
//! | `mender_grubenv2/lock.sha256sum` | `sha256sum` output | as for copy 1 |
//! | `/var/lock/grub-mender-grubenv-set.lock` | empty | `flock`ed around every access by the tools and by [`GrubEnv`] |
//!
//! **Which copy is valid** (GRUB's `mender_check_and_restore_env`, used by
//! [`GrubEnv`] reads and writes): if lock 2 does not say `editing=0` (or
//! cannot be read), copy 1; else if lock 1 does not, copy 2; else copy 1.
//!
//! **Write protocol** (`grub-mender-grubenv-set`), every file write followed
//! by an fsync:
//! 1. restore: if the copy that is not valid has a lock other than
//!    `editing=0` or a failing `lock.sha256sum`, overwrite its `env` with the
//!    valid copy's bytes, recreate its `lock` as a fresh block with
//!    `editing=0` and rewrite its `lock.sha256sum`;
//! 2. copy 2: `lock` `editing=1`, `env` with the new variables, `lock`
//!    `editing=0` (a checksum that does not match the clean lock is
//!    rewritten);
//! 3. copy 1: the same.
//!
//! A power cut at any point leaves a lock other than `editing=0` only on the
//! copy being written, so GRUB (and [`GrubEnv`]) use the other, complete
//! copy: the old values before step 2 ends, the new ones after.
//!
//! [grub-mender-grubenv]: https://github.com/mendersoftware/grub-mender-grubenv
#![forbid(unsafe_code)]

pub mod block;
mod env;
mod error;

pub use block::{BlockError, Variable};
pub use env::{find_env_dir, GrubEnv, CONFIG_FILE, DEFAULT_PROCESS_LOCK};
pub use error::Error;
