//! The builder's integration tests, in one test binary (one link instead of one per file): each
//! former `tests/*.rs` binary is a module here, the helpers they share are in `common/`.
//! Run one file's tests with its module name as the filter, e.g.
//! `cargo test -p tsforge-builder --test main winpe::`.

mod common;

mod cpio;
mod iso;
#[cfg(unix)]
mod linux_template;
mod outputs;
mod winpe;
