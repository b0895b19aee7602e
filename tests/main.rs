//! tsforge's end-to-end tests, in one test binary (one link instead of one per file): each
//! former `tests/*.rs` binary is a module here, the helpers they share are in `common/`.
//! Run one file's tests with its module name as the filter, e.g.
//! `cargo test -p tsforge --test main hooks::`; the QEMU scenarios are `e2e_qemu::` and the
//! Windows runner under Wine is `wine::`.

mod common;

mod boot;
mod build_cli;
mod content;
mod content_nginx;
mod disk_busy;
mod disk_cli;
mod disk_sequence;
mod e2e_qemu;
mod engine_cli;
mod fat_apply;
mod hooks;
mod image_cli;
mod media_trust;
mod sequence_limits;
mod state_dir;
mod state_on_disk;
mod wine;
mod xml_cli;
