//! The runtime's integration tests, in one test binary (one link instead of one per file):
//! each former `tests/*.rs` binary is a module here, the helpers they share are in `common/`.
//! Run one file's tests with its module name as the filter, e.g.
//! `cargo test -p tsforge-runtime --test main image_roundtrip::`.

mod common;

mod disk_fatbuild;
mod disk_tools;
mod image_limits;
mod image_roundtrip;
#[cfg(unix)]
mod tools_fsformat;
#[cfg(unix)]
mod tools_missing;
mod tools_raw;
#[cfg(unix)]
mod tools_wim;
mod xml_fixtures;
mod yaml_format;
