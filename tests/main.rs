//! tsforge's end-to-end tests, in one test binary (one link instead of one per file): each
//! former `tests/*.rs` binary is a module here, the helpers they share are in `common/`.
//! Run one file's tests with its module name as the filter, e.g.
//! `cargo test -p tsforge --test main hooks::`; the QEMU scenarios are `e2e_qemu::` and the
//! Windows runner under Wine is `wine::`.

mod common;

mod action_vars_cli;
mod apply_install_package;
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
mod fidelity_rules;
mod firmware_boot;
mod fs_partitions;
mod handover;
mod hooks;
mod image_cli;
#[cfg(target_os = "linux")]
mod image_meta_cli;
#[cfg(target_os = "linux")]
mod image_os;
mod media_trust;
mod monitor_cli;
mod monitor_server_cli;
mod os_boot;
mod post_action;
mod run_in;
mod run_task_sequence;
mod secrets;
mod sequence_limits;
mod set_dynamic_cli;
mod state_dir;
mod state_on_disk;
mod unattend;
mod wine;
mod xml_cli;

/// With `autotests = false`, a test file not declared above would never be compiled: every
/// `tests/*.rs` file must be a module of this binary.
#[test]
fn every_test_file_is_a_module() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let main = std::fs::read_to_string(dir.join("main.rs")).unwrap();
    let mut missing = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".rs").filter(|s| *s != "main") {
            if !main
                .lines()
                .any(|l| l.trim_end().ends_with(&format!("mod {stem};")))
            {
                missing.push(name);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "tests/main.rs does not declare {missing:?}"
    );
}
