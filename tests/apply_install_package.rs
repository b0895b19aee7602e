//! *Apply Operating System Image* from an OS install package (Windows setup files), through the
//! real binary: `validate`, `run --dry-run` and `run` on the exported shape in
//! tests/fixtures/sequences/apply-install-package.xml, and YAML sequences for the other cases.
//!
//! The rules come from Microsoft's pages:
//! - the step, *Apply operating system image from an original installation source* ("If there
//!   are multiple editions associated with the specified package, … select the Edition"),
//!   https://learn.microsoft.com/mem/configmgr/osd/understand/task-sequence-steps#BKMK_ApplyOperatingSystemImage
//! - the properties `InstallPackageID`, `InstallEditionIndex` (required with
//!   `InstallPackageID`; action variable `OSDInstallEditionIndex`, default 0), `ConfigFilePackage`
//!   and `ConfigFileName` (required with `ConfigFilePackage`; `OSDConfigFileName`),
//!   https://learn.microsoft.com/intune/configmgr/develop/reference/osd/sms_tasksequence_applyoperatingsystemaction-server-wmi-class
//! - action variables override the property of their name,
//!   https://learn.microsoft.com/mem/configmgr/osd/understand/using-task-sequence-variables#action-variables
//!
//! The setup folders are made with wimlib-imagex (capture, append, split, export --solid) and
//! packaged with `tsforge package build`; what lands on the target is compared with the source
//! trees, and on a FAT partition checked with fsck.fat and mtools.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::data::random;
use crate::common::fixed_time::tsforge;
use crate::common::{repo, tool, used_disk};

const FIXTURE: &str = "tests/fixtures/sequences/apply-install-package.xml";
const INVALID: &str = "tests/fixtures/sequences/apply-install-invalid.xml";

/// The two editions' trees: what each one holds, by path.
fn edition(n: u32) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    files.insert(
        "Windows/System32/edition.txt".to_string(),
        format!("edition {n}\n").into_bytes(),
    );
    files.insert(
        "Windows/System32/kernel.bin".to_string(),
        random(200_000 + n as usize * 1000, n),
    );
    files.insert(
        "Windows/common.txt".to_string(),
        b"both editions\n".to_vec(),
    );
    if n == 2 {
        files.insert(
            "Program Files/Pro/pro.txt".to_string(),
            b"pro only\n".to_vec(),
        );
    } else {
        files.insert(
            "Users/Default/home.txt".to_string(),
            b"home only\n".to_vec(),
        );
    }
    files
}

fn write_tree(root: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (p, data) in files {
        let full = root.join(p);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, data).unwrap();
    }
}

/// Every file below `root`, by `/`-separated relative path.
fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn wimlib(wim: &Path, args: &[&str]) {
    let w = tool("wimlib-imagex").expect("checked by the caller");
    let o = Command::new(w).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "wimlib-imagex {args:?} ({}): {}",
        wim.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A Windows setup folder `d/name`: setup.exe, sources/lang.ini and sources/install.wim holding
/// edition 1 ("Home") and edition 2 ("Pro"). Returns the folder.
fn setup_folder(d: &Path, name: &str) -> PathBuf {
    let media = d.join(name);
    std::fs::create_dir_all(media.join("sources")).unwrap();
    std::fs::write(media.join("setup.exe"), b"MZ not really setup\n").unwrap();
    std::fs::write(
        media.join("sources/lang.ini"),
        b"[Available UI Languages]\n",
    )
    .unwrap();
    let wim = media.join("sources/install.wim");
    for n in [1u32, 2] {
        let src = d.join(format!("{name}-edition{n}"));
        write_tree(&src, &edition(n));
        let verb = if n == 1 { "capture" } else { "append" };
        let title = if n == 1 { "Home" } else { "Pro" };
        wimlib(
            &wim,
            &[verb, src.to_str().unwrap(), wim.to_str().unwrap(), title],
        );
    }
    media
}

fn package(d: &Path, folder: &Path, id: &str) {
    let (code, _, err) = tsforge(
        d,
        &[
            "package",
            "build",
            folder.to_str().unwrap(),
            "--id",
            id,
            "--out",
            "dp",
        ],
    );
    assert_eq!(code, 0, "package build {id}: {err}");
}

/// Package LAB00020, the administrator's answer file `Unattend.xml` the fixture names
/// (`ConfigFilePackage`/`ConfigFileName`): a step fails when a package it names is missing.
fn answer_package(d: &Path) {
    let folder = d.join("answer");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(
        repo("tests/fixtures/sequences/unattend/admin-unattend.xml"),
        folder.join("Unattend.xml"),
    )
    .unwrap();
    package(d, &folder, "LAB00020");
}

fn log_of(d: &Path) -> String {
    std::fs::read_to_string(d.join("state/smsts.log")).unwrap_or_default()
}

/// `tsforge run FILE --content dp --state-dir state EXTRA…` in `d`.
fn run(d: &Path, file: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["run", file, "--content", "dp", "--state-dir", "state"];
    args.extend_from_slice(extra);
    let (code, out, err) = tsforge(d, &args);
    (code, format!("{out}{err}"))
}

#[test]
fn exported_step_validates_and_its_dry_run_shows_edition_package_and_answer_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fixture = repo(FIXTURE);
    let (code, out, err) = tsforge(d, &["validate", &fixture]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("not built into tsforge"), "{out}");

    let out_dir = d.join("out");
    let (code, out, err) = tsforge(
        d,
        &[
            "run",
            &fixture,
            "--dry-run",
            "--var",
            &format!("OSDisk={}", out_dir.display()),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "apply edition 2 of sources/install.wim (or .esd, .swm) from OS install package \
             LAB00030 to folder {}, unattend: Unattend.xml from package LAB00020",
            out_dir.display()
        )),
        "{out}"
    );
    // The action variable OSDInstallEditionIndex overrides the property (Microsoft, "How to
    // use task sequence variables", Action variables).
    let (code, out, _) = tsforge(
        d,
        &[
            "run",
            &fixture,
            "--dry-run",
            "--var",
            "OSDisk=out",
            "--var",
            "OSDInstallEditionIndex=1",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("apply edition 1 of sources/install.wim"),
        "{out}"
    );
    assert!(!out.contains("nothing was written"), "{out}");
}

#[test]
fn invalid_install_package_steps_are_reported_at_their_steps() {
    let dir = tempfile::tempdir().unwrap();
    let file = repo(INVALID);
    let text = std::fs::read_to_string(&file).unwrap();
    let at = |name: &str| {
        let line = text
            .lines()
            .position(|l| l.contains(&format!("name=\"{name}\"")) && l.contains("<step"))
            .unwrap()
            + 1;
        format!("{file}:{line}:3:")
    };
    let (code, out, err) = tsforge(dir.path(), &["validate", &file]);
    let all = format!("{out}{err}");
    assert_eq!(code, 1, "{all}");
    for (step, message) in [
        ("No edition", "InstallPackageID needs InstallEditionIndex"),
        (
            "Edition by name",
            "InstallEditionIndex=\"Pro\" must be a whole number from 0 to 4294967295",
        ),
        (
            "Both forms",
            "names both an image (ImagePackageID) and an OS install package (InstallPackageID)",
        ),
        (
            "Answer file without name",
            "ConfigFilePackage needs ConfigFileName",
        ),
        (
            "Action line only",
            "needs ImagePackageID (an image package) or InstallPackageID",
        ),
    ] {
        let want = at(step);
        assert!(
            all.lines()
                .any(|l| l.starts_with(&want) && l.contains(message)),
            "no {message:?} at {want}:\n{all}"
        );
    }
}

#[test]
fn edition_two_of_the_install_wim_lands_in_a_folder() {
    if tool("wimlib-imagex").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let media = setup_folder(d, "media");
    package(d, &media, "LAB00030");
    answer_package(d);
    let fixture = repo(FIXTURE);
    let out_dir = d.join("out");
    let (code, out) = run(
        d,
        &fixture,
        &["--var", &format!("OSDisk={}", out_dir.display())],
    );
    let log = log_of(d);
    assert_eq!(code, 0, "{out}\n{log}");
    assert_eq!(read_tree(&out_dir), edition(2));
    assert!(
        log.contains("Edition 2 (\"Pro\") of sources/install.wim"),
        "{log}"
    );
    assert!(
        log.contains("Answer file: Unattend.xml from package LAB00020"),
        "{log}"
    );
    // The setup folder's editions hold no Windows\System32\config\SYSTEM: no Windows is
    // recognised, so the answer file is fetched but not placed, and the log says why.
    assert!(
        log.contains("the answer file Unattend.xml was not placed"),
        "{log}"
    );

    // OSDInstallEditionIndex=1 (the action variable) gives edition 1, in a new folder.
    let out1 = d.join("out1");
    std::fs::remove_dir_all(d.join("state")).unwrap();
    let (code, out) = run(
        d,
        &fixture,
        &[
            "--var",
            &format!("OSDisk={}", out1.display()),
            "--var",
            "OSDInstallEditionIndex=1",
        ],
    );
    assert_eq!(code, 0, "{out}\n{}", log_of(d));
    assert_eq!(read_tree(&out1), edition(1));
}

const PARTITION_AND_APPLY: &str = r#"
steps:
  - name: Partition disk 0
    type: partition-disk
    properties:
      DiskIndex: "0"
      PartitionStyle: MBR
      Partitions0Type: Primary
      Partitions0FileSystem: FAT32
      Partitions0Size: "100"
      Partitions0SizeUnits: "%"
      Partitions0VolumeName: WINDOWS
      Partitions0VolumeVariable: OSDisk
      Partitions: "1"
  - name: Apply Operating System
    type: SMS_TaskSequence_ApplyOperatingSystemAction
    properties:
      InstallPackageID: LAB00030
      OSDInstallEditionIndex: {value: "1", property: InstallEditionIndex}
      DestinationVariable: OSDisk
"#;

#[test]
fn edition_one_lands_on_a_fat_partition_of_a_used_disk() {
    if tool("wimlib-imagex").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let media = setup_folder(d, "media");
    package(d, &media, "LAB00030");
    let disk = d.join("disk.img");
    used_disk::random_disk(&disk, 96 << 20);
    std::fs::write(d.join("ts.yaml"), PARTITION_AND_APPLY).unwrap();
    let (code, out) = run(d, "ts.yaml", &["--disk", "0=disk.img"]);
    assert_eq!(code, 0, "{out}\n{}", log_of(d));
    // The partition starts at 1 MiB (MBR, aligned) and runs to the end of the disk.
    let start = 1u64 << 20;
    let len = (96u64 << 20) - start;
    if let Some(r) = used_disk::fsck_fat(&disk, start, len) {
        r.unwrap();
    }
    for (path, bytes) in edition(1) {
        if let Some(r) = used_disk::mcopy(&disk, start, &path) {
            assert_eq!(r.unwrap(), bytes, "{path}");
        }
    }
    if let Some(r) = used_disk::mcopy(&disk, start, "Program Files/Pro/pro.txt") {
        assert!(r.is_err(), "edition 2's file is on the partition");
    }
}

/// The error a run of the fixture (edition 2, unless `extra` overrides it) gives with `dp`
/// holding `LAB00030` built from `folder`; the target folder must stay absent.
fn failure(d: &Path, extra: &[&str]) -> String {
    let _ = std::fs::remove_dir_all(d.join("state"));
    let out_dir = d.join("never");
    let osdisk = format!("OSDisk={}", out_dir.display());
    let mut args = vec!["--var", osdisk.as_str()];
    args.extend_from_slice(extra);
    let (code, out) = run(d, &repo(FIXTURE), &args);
    let log = log_of(d);
    assert_eq!(code, 1, "{out}\n{log}");
    assert!(!out_dir.exists(), "something was written");
    log
}

#[test]
fn missing_install_image_missing_edition_and_non_setup_packages_are_clear_errors() {
    if tool("wimlib-imagex").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let media = setup_folder(d, "media");
    package(d, &media, "LAB00030");

    // An index past the last edition.
    let log = failure(d, &["--var", "OSDInstallEditionIndex=3"]);
    assert!(
        log.contains(
            "InstallEditionIndex 3 is past the last edition: sources/install.wim of OS install \
             package LAB00030 holds 2 edition(s) (1 \"Home\", 2 \"Pro\")"
        ),
        "{log}"
    );
    // 0, Microsoft's default (Windows Setup picks by product key), with two editions.
    let log = failure(d, &["--var", "OSDInstallEditionIndex=0"]);
    assert!(
        log.contains("InstallEditionIndex is 0") && log.contains("holds 2 editions"),
        "{log}"
    );

    // A setup folder without sources/install.wim.
    std::fs::remove_file(media.join("sources/install.wim")).unwrap();
    package(d, &media, "LAB00030");
    let log = failure(d, &[]);
    assert!(
        log.contains(
            "OS install package LAB00030 has no install image: sources/install.wim is missing"
        ) && log.contains("sources/lang.ini"),
        "{log}"
    );

    // A package that is not a setup folder at all.
    let other = d.join("tools");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("install.cmd"), b"echo hi\n").unwrap();
    package(d, &other, "LAB00030");
    let log = failure(d, &[]);
    assert!(
        log.contains("package LAB00030 is not a Windows setup folder")
            && log.contains("install.cmd"),
        "{log}"
    );
}

#[test]
fn split_swm_and_esd_install_images_apply() {
    if tool("wimlib-imagex").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let media = setup_folder(d, "media");
    let sources = media.join("sources");
    let wim = sources.join("install.wim");
    // install.swm + install2.swm (+ more) instead of install.wim: parts of about 0.2 MB.
    let swm = sources.join("install.swm");
    wimlib(
        &wim,
        &["split", wim.to_str().unwrap(), swm.to_str().unwrap(), "0.2"],
    );
    let esd = d.join("install.esd");
    wimlib(
        &wim,
        &[
            "export",
            wim.to_str().unwrap(),
            "1",
            esd.to_str().unwrap(),
            "--solid",
        ],
    );
    std::fs::remove_file(&wim).unwrap();
    assert!(sources.join("install2.swm").is_file());
    package(d, &media, "LAB00030");
    answer_package(d);
    let out_dir = d.join("out");
    let (code, out) = run(
        d,
        &repo(FIXTURE),
        &["--var", &format!("OSDisk={}", out_dir.display())],
    );
    assert_eq!(code, 0, "{out}\n{}", log_of(d));
    assert_eq!(read_tree(&out_dir), edition(2));

    // A split set missing its second part.
    std::fs::remove_file(sources.join("install2.swm")).unwrap();
    package(d, &media, "LAB00030");
    let log = failure(d, &[]);
    assert!(
        log.contains("sources/install.swm of OS install package LAB00030 is the first of")
            && log.contains("the package lacks sources/install2.swm"),
        "{log}"
    );

    // An .esd of one edition; InstallEditionIndex 0 (the documented default) applies it.
    for f in std::fs::read_dir(&sources).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "swm") {
            std::fs::remove_file(p).unwrap();
        }
    }
    std::fs::rename(&esd, sources.join("install.esd")).unwrap();
    package(d, &media, "LAB00030");
    let _ = std::fs::remove_dir_all(d.join("state"));
    let out0 = d.join("out0");
    let (code, out) = run(
        d,
        &repo(FIXTURE),
        &[
            "--var",
            &format!("OSDisk={}", out0.display()),
            "--var",
            "OSDInstallEditionIndex=0",
        ],
    );
    let log = log_of(d);
    assert_eq!(code, 0, "{out}\n{log}");
    assert_eq!(read_tree(&out0), edition(1));
    assert!(
        log.contains("sources/install.esd of OS install package LAB00030 holds one edition"),
        "{log}"
    );
}
