//! Proof on a (virtual) machine: media built by `tsforge build` boot in QEMU (TCG, with
//! Debian's kernel, busybox, shim and GRUB, syslinux, OVMF and iPXE) and the runner deploys the
//! machine's blank disks; the host then checks those disks with independent tools (`sgdisk -v`,
//! `fsck.fat -n`, mtools) and every applied file against the image's source.
//!
//! Every scenario talks to the machine through `tsforge_builder::qemu` (the code `tsforge try`
//! uses): a deadline per wait and an expect loop on the serial console, no fixed sleeps. The
//! console of each run is written to `target/tmp/e2e/<scenario>/console*.log` and kept; the
//! disk images are removed when the scenario passes. Each scenario prints its boot-to-first-step
//! and total times (`E2E <scenario>: …`), the figures the README quotes.
//!
//! Disks, as the guest numbers them (`docs/disks.md`: the boot medium is listed last): disk 0
//! is the target (`/dev/vdb` when the medium is a USB image attached as the first virtio disk,
//! `/dev/vda` for ISO and PXE boots), disk 1 the "share" (a FAT disk the host made).
//!
//! Needs qemu-system-x86, ovmf, ipxe-qemu and the linux template's packages (scripts/setup.sh):
//! without them each test prints `SKIP …` and passes, unless `TSFORGE_REQUIRE_TOOLS=1` (CI).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tsforge_builder::qemu::{self, BootFrom, Firmware, Forward, Machine, MachineConfig};
use tsforge_runtime::disk::{fat, layout, Disk};

use crate::common::fixed_time::tsforge_ok;
use crate::common::used_disk;
use crate::common::{data, httpd, required, tool};
use crate::monitor_server_cli::Monitor;

/// A boot under TCG takes 10–20 s; applying and checking adds to it. Generous, so a loaded CI
/// machine does not fail a good run, but a hung guest still ends.
const BOOT: Duration = Duration::from_secs(240);
const RUN: Duration = Duration::from_secs(600);
const COMPUTER_NAME: &str = "LAB-PC07";

/// Whether this runs as root, which `scenario` needs for `why`; not as root: a failure under
/// TSFORGE_REQUIRE_TOOLS (CI), else SKIP.
fn as_root(scenario: &str, why: &str) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        assert!(!required(), "e2e {scenario} needs root ({why})");
        eprintln!("SKIP e2e {scenario}: needs root ({why})");
    }
    root
}

/// Whether this machine can run the scenarios (QEMU, OVMF, a kernel for the linux template).
fn ready(uefi: bool) -> bool {
    let mut missing = Vec::new();
    if qemu::qemu_available().is_none() {
        missing.push("qemu-system-x86_64 (apt-get install qemu-system-x86)");
    }
    if uefi && !Path::new("/usr/share/OVMF/OVMF_CODE.fd").is_file() {
        missing.push("/usr/share/OVMF/OVMF_CODE.fd (apt-get install ovmf)");
    }
    if tsforge_builder::template::linux::find_kernel_in(Path::new("/")).is_err() {
        missing.push("a kernel in /boot (apt-get install linux-image-amd64)");
    }
    if missing.is_empty() {
        return true;
    }
    if required() {
        panic!("missing (TSFORGE_REQUIRE_TOOLS=1): {}", missing.join(", "));
    }
    eprintln!("SKIP e2e: missing {}", missing.join(", "));
    false
}

/// A scenario's folder under target/tmp/e2e, emptied first.
fn scenario_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("e2e")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The image the sequences apply: a tree of text and incompressible files of `mib` MiB in
/// all, captured and built into the distribution point `dp` as package IMG00001. Returns the
/// tree (relative path, content).
fn image_package(d: &Path, mib: usize) -> Vec<(String, Vec<u8>)> {
    let src = d.join("src");
    let mut files = vec![
        (
            "Windows/System32/config.txt".to_string(),
            b"tsforge e2e\n".repeat(300),
        ),
        ("Users/Public/readme.txt".to_string(), b"hello\n".to_vec()),
        ("empty.txt".to_string(), Vec::new()),
    ];
    let chunk = 2 << 20;
    for i in 0..(mib * (1 << 20)).div_ceil(chunk) {
        files.push((
            format!("Data/blob{i:03}.bin"),
            data::random(chunk, 7 + i as u32),
        ));
    }
    for (p, bytes) in &files {
        let full = src.join(p);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, bytes).unwrap();
    }
    tsforge_ok(
        d,
        &[
            "capture",
            "src",
            "image.tsimg",
            "--name",
            "E2E",
            "--compression",
            "none",
        ],
    );
    tsforge_ok(
        d,
        &[
            "package",
            "build",
            "image.tsimg",
            "--id",
            "IMG00001",
            "--out",
            "dp",
        ],
    );
    files
}

/// A target disk image, filled with random bytes as a used disk is.
fn blank(path: &Path, size: u64) -> PathBuf {
    used_disk::random_disk(path, size);
    path.to_path_buf()
}

/// The "share": a 64 MiB disk holding one FAT file system (no partition table, like a
/// superfloppy), which sequences mount and write to.
fn share_disk(path: &Path) -> PathBuf {
    let disk = Disk::create_image(path, 64 << 20).unwrap();
    fat::format(disk.whole().unwrap(), "SHARE", None).unwrap();
    drop(disk);
    path.to_path_buf()
}

/// The deployment sequence of scenarios 1–3: partition the target as GPT (ESP + data, both
/// FAT32), apply IMG00001 to the data partition, write the computer name the hook asked for.
const DEPLOY: &str = r#"
name: Deploy
steps:
  - name: List the disks
    run: tsforge disk list
  - name: Partition the target disk
    type: partition-disk
    properties:
      DiskIndex: "0"
      PartitionStyle: GPT
      Partitions0Type: EFI
      Partitions0FileSystem: FAT32
      Partitions0Size: "64"
      Partitions0SizeUnits: MB
      Partitions0VolumeName: SYSTEM
      Partitions1Type: Primary
      Partitions1FileSystem: FAT32
      Partitions1Size: "100"
      Partitions1SizeUnits: "%"
      Partitions1VolumeName: DATA
      Partitions1VolumeVariable: OSDisk
      Partitions: "2"
  - name: Apply the image
    type: apply-image
    properties:
      ImagePackageID: IMG00001
      DestinationVariable: OSDisk
  - name: Write the computer name
    run: mkdir -p /mnt/os && mount -t vfat %TargetDevice%2 /mnt/os && echo %OSDComputerName% > /mnt/os/computername.txt && umount /mnt/os
"#;

/// Build a medium of `kind` (usb, iso, pxe) with `sequence`, the sample computer-name hook,
/// `extra` builder arguments; returns the output path.
fn build(d: &Path, kind: &str, sequence: &str, extra: &[&str]) -> PathBuf {
    std::fs::write(d.join("ts.yaml"), sequence).unwrap();
    let hook = Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/ask-computer-name.sh");
    let out = d.join(match kind {
        "usb" => "medium.img",
        "iso" => "medium.iso",
        _ => "pxe",
    });
    let out_s = out.display().to_string();
    let hook_s = hook.display().to_string();
    let mut args = vec![
        "build",
        kind,
        "--template",
        "linux",
        "--sequence",
        "ts.yaml",
        "--hook",
        &hook_s,
        "--force",
        "-o",
        &out_s,
    ];
    args.extend_from_slice(extra);
    tsforge_ok(d, &args);
    out
}

/// Times of one boot, printed for the README.
struct Times {
    started: Instant,
    first_step: Option<Duration>,
}

impl Times {
    fn report(&self, scenario: &str) {
        let first = self
            .first_step
            .map(|t| format!("{:.1} s", t.as_secs_f64()))
            .unwrap_or_else(|| "-".into());
        let line = format!(
            "E2E {scenario}: boot to first step {first}, total {:.1} s",
            self.started.elapsed().as_secs_f64()
        );
        eprintln!("{line}");
        // Also kept in target/tmp/e2e/times.txt, which scripts/test.sh prints after the tests.
        use std::io::Write;
        let times = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e/times.txt");
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(times)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Answer the hook, wait for the first step, then for the runner's exit code and the power-off.
fn drive(m: &mut Machine, times: &mut Times) -> i32 {
    m.expect("Computer name:", BOOT).unwrap();
    m.send_line(COMPUTER_NAME).unwrap();
    m.expect("[1/", BOOT).unwrap();
    times.first_step = Some(times.started.elapsed());
    m.expect("the runner exited with code", RUN).unwrap();
    m.wait_exit(BOOT).unwrap();
    qemu::runner_exit_code(&m.console()).expect("the runner's exit code on the console")
}

fn start(cfg: &MachineConfig) -> (Machine, Times) {
    let m = Machine::start(cfg).unwrap();
    let t = Times {
        started: m.started(),
        first_step: None,
    };
    (m, t)
}

fn config(d: &Path, fw: Firmware, boot: BootFrom, disks: Vec<PathBuf>, log: &str) -> MachineConfig {
    let mut cfg = MachineConfig::new(fw, boot, d.to_path_buf());
    cfg.disks = disks;
    cfg.console_log = d.join(log);
    cfg
}

/// Host-side checks of a deployed target: a valid GPT (sgdisk -v), two clean FAT file systems
/// (fsck.fat -n on each), the computer name and every file of the image (mtools).
fn check_target(disk: &Path, files: &[(String, Vec<u8>)], scratch: &Path) {
    if let Some(sgdisk) = tool("sgdisk") {
        let out = Command::new(sgdisk).arg("-v").arg(disk).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("No problems found"),
            "sgdisk -v: {text}"
        );
    }
    let partitions = layout::read_table(&Disk::open(disk, false).unwrap())
        .unwrap()
        .expect("a partition table")
        .partitions;
    assert_eq!(partitions.len(), 2, "{partitions:?}");
    let part1 = scratch.join("part1.img");
    partition_copy(disk, 1, &part1);
    let _ = std::fs::remove_file(part1);
    let part2 = scratch.join("part2.img");
    partition_copy(disk, 2, &part2);
    let out_dir = scratch.join("applied");
    if mcopy_all(&part2, &out_dir) {
        for (rel, bytes) in files {
            let got = std::fs::read(out_dir.join(rel))
                .unwrap_or_else(|e| panic!("{rel} is not on the data partition: {e}"));
            assert!(got == *bytes, "{rel} differs from the image");
        }
        let name = std::fs::read_to_string(out_dir.join("computername.txt")).unwrap();
        assert_eq!(name.trim(), COMPUTER_NAME);
        assert!(
            !out_dir.join("_SMSTaskSequence").exists(),
            "the run's state folder is left on the deployed disk"
        );
    }
    let _ = std::fs::remove_file(part2);
}

/// Partition `number` of `disk` copied to `path`, which fsck.fat -n must find clean.
fn partition_copy(disk: &Path, number: u32, path: &Path) {
    let table = layout::read_table(&Disk::open(disk, false).unwrap())
        .unwrap()
        .expect("a partition table");
    let p = table
        .partitions
        .iter()
        .find(|p| p.number == number)
        .unwrap_or_else(|| panic!("no partition {number}: {table:?}"));
    let mut f = std::fs::File::open(disk).unwrap();
    use std::io::{Read, Seek};
    f.seek(std::io::SeekFrom::Start(p.start)).unwrap();
    let mut out = std::fs::File::create(path).unwrap();
    std::io::copy(&mut f.take(p.len), &mut out).unwrap();
    if let Some(fsck) = tool("fsck.fat") {
        let out = Command::new(fsck).arg("-n").arg(path).output().unwrap();
        assert!(
            out.status.success(),
            "fsck.fat -n partition {number}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every file of the FAT image `part` copied into `out_dir` (emptied first) with mtools;
/// `false` when mtools is missing.
fn mcopy_all(part: &Path, out_dir: &Path) -> bool {
    let Some(mcopy) = tool("mcopy") else {
        return false;
    };
    let _ = std::fs::remove_dir_all(out_dir);
    std::fs::create_dir_all(out_dir).unwrap();
    let st = Command::new(&mcopy)
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-s", "-n", "-i"])
        .arg(part)
        .arg("::/*")
        .arg(out_dir)
        .status()
        .unwrap();
    assert!(st.success(), "mcopy from {}", part.display());
    true
}

/// What a passing scenario leaves: its console logs only.
fn clean(d: &Path) {
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let p = e.path();
        let keep = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("console"));
        if !keep {
            if p.is_dir() {
                let _ = std::fs::remove_dir_all(&p);
            } else {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

/// Scenario 1: A USB image (GPT + ESP, shim and GRUB) on OVMF deploys the machine's second disk.
#[test]
fn usb_image_uefi_deploys_the_second_disk() {
    if !ready(true) {
        return;
    }
    let d = scenario_dir("usb-uefi");
    let files = image_package(&d, 8);
    let medium = build(
        &d,
        "usb",
        DEPLOY,
        &[
            "--partition-table",
            "gpt",
            "--package",
            "dp",
            "--var",
            "TargetDevice=/dev/vdb",
        ],
    );
    let target = blank(&d.join("target.img"), 512 << 20);
    let cfg = config(
        &d,
        Firmware::Uefi,
        BootFrom::Disk(medium),
        vec![target.clone()],
        "console.log",
    );
    let (mut m, mut times) = start(&cfg);
    let code = drive(&mut m, &mut times);
    times.report("usb-uefi");
    assert_eq!(code, 0, "{}", m.console());
    check_target(&target, &files, &d);
    clean(&d);
}

/// Scenario 2: The same sequence from a hybrid ISO as a CD-ROM, under SeaBIOS and under OVMF.
#[test]
fn iso_bios_and_uefi_deploy_the_disk() {
    if !ready(true) {
        return;
    }
    let d = scenario_dir("iso");
    let files = image_package(&d, 8);
    let medium = build(
        &d,
        "iso",
        DEPLOY,
        &["--package", "dp", "--var", "TargetDevice=/dev/vda"],
    );
    for (fw, name) in [(Firmware::Bios, "bios"), (Firmware::Uefi, "uefi")] {
        let target = blank(&d.join(format!("target-{name}.img")), 512 << 20);
        let cfg = config(
            &d,
            fw,
            BootFrom::Cdrom(medium.clone()),
            vec![target.clone()],
            &format!("console-{name}.log"),
        );
        let (mut m, mut times) = start(&cfg);
        let code = drive(&mut m, &mut times);
        times.report(&format!("iso-{name}"));
        assert_eq!(code, 0, "{}", m.console());
        check_target(&target, &files, &d);
    }
    clean(&d);
}

/// Scenario 3: PXE: QEMU's TFTP serves `tsforge build pxe`; the image comes from a distribution point on
/// the host's loopback (a real HTTP server), reached only through `guestfwd` (`restrict=on`).
#[test]
fn pxe_boot_deploys_from_an_http_distribution_point() {
    if !ready(false) {
        return;
    }
    let d = scenario_dir("pxe");
    let files = image_package(&d, 8);
    let server = httpd::Server::start(&d.join("dp"));
    let host: std::net::SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    // The runner reports to a monitor on the host (issue 18), reached as the distribution
    // point is, through guestfwd.
    let monitor = Monitor::start(&d);
    let tree = build(
        &d,
        "pxe",
        DEPLOY,
        &[
            "--var",
            "TargetDevice=/dev/vda",
            "--var",
            "SMSTSContentLocations=http://10.0.2.100/",
            "--var",
            "TSForgeMonitorURL=http://10.0.2.100:9800",
        ],
    );
    // The tree carries the payload but not the boot-loader files: it verifies all the same.
    tsforge_ok(&d, &["media", "verify", &tree.display().to_string()]);
    let target = blank(&d.join("target.img"), 512 << 20);
    let bootfile = pxe_bootfile(&tree);
    let mut cfg = config(
        &d,
        Firmware::Bios,
        BootFrom::Pxe {
            tftp_root: tree,
            bootfile,
        },
        vec![target.clone()],
        "console.log",
    );
    cfg.forwards = vec![
        Forward {
            guest_port: 80,
            host,
        },
        Forward {
            guest_port: 9800,
            host: monitor.addr.parse().unwrap(),
        },
    ];
    cfg.relay_program = Some(env!("CARGO_BIN_EXE_tsforge").into());
    let (mut m, mut times) = start(&cfg);
    let code = drive(&mut m, &mut times);
    times.report("pxe");
    assert_eq!(code, 0, "{}", m.console());
    // The monitor has the whole deployment: its final state from the API, every step, the
    // machine's identity and the uploaded smsts.log.
    let list = monitor.get_json("/api/v1/deployments");
    let deployments = list["deployments"].as_array().unwrap();
    assert_eq!(deployments.len(), 1, "{list}");
    let dep = &deployments[0];
    assert_eq!(dep["state"], "succeeded", "{dep}");
    assert_eq!(dep["sequence"], "Deploy", "{dep}");
    assert_eq!(dep["computer_name"], COMPUTER_NAME, "{dep}");
    assert_eq!(dep["step"], dep["steps"], "{dep}");
    assert!(dep["failure"].is_null(), "{dep}");
    assert!(
        dep["macs"].as_array().is_some_and(|m| m
            .iter()
            .any(|a| a.as_str().is_some_and(|a| a.starts_with("52:54:00")))),
        "the machine's MAC address: {dep}"
    );
    let run = dep["run"].as_str().unwrap();
    let one = monitor.get_json(&format!("/api/v1/deployments/{run}"));
    let steps = one["steps"].as_array().unwrap();
    assert_eq!(steps.len() as u64, dep["steps"].as_u64().unwrap(), "{one}");
    assert!(steps.iter().all(|s| s["state"] == "succeeded"), "{one}");
    let (code, log) = monitor.get_text(&format!("/api/v1/deployments/{run}/log"));
    assert_eq!(code, 200, "{log}");
    assert!(log.contains("<![LOG[") && log.contains("Apply"), "{log}");
    assert!(
        server.sent("IMG00001") > 0 || server.requests().iter().any(|r| r.sent > 0),
        "the image did not come from the HTTP distribution point: {:?}",
        server.requests()
    );
    check_target(&target, &files, &d);
    clean(&d);
}

/// The iPXE script of a `tsforge build pxe` tree.
fn pxe_bootfile(tree: &Path) -> String {
    for name in ["boot.ipxe", "tsforge.ipxe"] {
        if tree.join(name).is_file() {
            return name.to_string();
        }
    }
    panic!("no iPXE script in {}", tree.display());
}

/// A hook that mounts the share (disk 1) where `SHARE` points, as administrators map a
/// network share in a pre-execution hook.
const MOUNT_SHARE: &str = "#!/bin/sh\nset -e\nmkdir -p \"$SHARE\"\nmount -t vfat \"$ShareDevice\" \"$SHARE\"\necho \"share mounted on $SHARE\"\n";

/// Build a USB medium (MBR, BIOS) with `sequence` and the share-mounting hook.
fn build_with_share(d: &Path, sequence: &str, extra: &[&str]) -> PathBuf {
    std::fs::write(d.join("mount-share.sh"), MOUNT_SHARE).unwrap();
    let mut args = vec![
        "--hook",
        "mount-share.sh",
        "--var",
        "SHARE=/mnt/share",
        "--var",
        "ShareDevice=/dev/vdc",
        "--var",
        "TargetDevice=/dev/vdb",
    ];
    args.extend_from_slice(extra);
    build(d, "usb", sequence, &args)
}

/// A file of a FAT disk without partition table (the share), through mtools.
fn share_file(share: &Path, name: &str) -> Option<Vec<u8>> {
    let mcopy = tool("mcopy")?;
    let out = Command::new(mcopy)
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(share)
        .arg(format!("::/{name}"))
        .arg("-")
        .output()
        .unwrap();
    out.status.success().then_some(out.stdout)
}

fn share_listing(share: &Path) -> String {
    let Some(mdir) = tool("mdir") else {
        return String::new();
    };
    let out = Command::new(mdir)
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-b", "-i"])
        .arg(share)
        .arg("::/")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Scenario 4: The seed's error handler, unchanged (`examples/error-handler.yaml`): a step fails in the
/// continue-on-error group; the handler copies smsts.log to the share as
/// `<_SMSTSClientGuid>-smsts.log`; the host finds it there, in CMTrace format.
#[test]
fn error_handler_copies_the_log_to_the_share() {
    if !ready(false) {
        return;
    }
    let d = scenario_dir("error-handler");
    let seq = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/error-handler.yaml"),
    )
    .unwrap();
    let medium = build_with_share(&d, &seq, &[]);
    let target = blank(&d.join("target.img"), 64 << 20);
    let share = share_disk(&d.join("share.img"));
    let cfg = config(
        &d,
        Firmware::Bios,
        BootFrom::Disk(medium),
        vec![target, share.clone()],
        "console.log",
    );
    let (mut m, mut times) = start(&cfg);
    let code = drive(&mut m, &mut times);
    times.report("error-handler");
    assert!(m.console().contains("share mounted on /mnt/share"));
    // Every failure was absorbed by continue-on-error: the sequence succeeds (ConfigMgr).
    assert_eq!(code, 0, "{}", m.console());
    let listing = share_listing(&share);
    let name = listing
        .lines()
        .map(|l| l.trim().trim_start_matches("::/").to_string())
        .find(|l| l.to_ascii_lowercase().ends_with("-smsts.log"))
        .unwrap_or_else(|| panic!("no <guid>-smsts.log on the share: {listing}"));
    let guid = name.trim_end_matches("-smsts.log");
    assert!(
        guid.len() == 36 && guid.matches('-').count() == 4,
        "{name} is not named by a GUID"
    );
    let log = String::from_utf8(share_file(&share, &name).unwrap()).unwrap();
    let entries = tsforge_runtime::log::cmtrace::parse(&log)
        .unwrap_or_else(|line| panic!("{name} is not CMTrace (line {line}): {log}"));
    assert!(!entries.is_empty(), "{name} is empty");
    assert!(
        log.contains("Step \"Fail on purpose\" failed"),
        "the failure is not in the copied log: {log}"
    );
    assert!(log.contains(guid), "{log}");
    clean(&d);
}

/// Steps of the restart scenario: partition, a marker, restart, another marker, copy the log.
const RESTART: &str = r#"
name: Restart in the middle
steps:
  - name: Partition the target disk
    type: partition-disk
    properties:
      DiskIndex: "0"
      PartitionStyle: GPT
      Partitions0Type: Primary
      Partitions0FileSystem: FAT32
      Partitions0Size: "100"
      Partitions0SizeUnits: "%"
      Partitions0VolumeName: DATA
      Partitions0VolumeVariable: OSDisk
      Partitions: "1"
  - name: Before the restart
    run: echo "before restart" >> %SHARE%/ran.txt
  - name: Restart the computer
    type: restart
    properties:
      SMSRebootTimeout: "0"
  - name: Mount the share again
    run: mkdir -p %SHARE% && mount -t vfat %ShareDevice% %SHARE%
  - name: After the restart
    run: echo "after restart %_SMSTSMDataPath%" >> %SHARE%/ran.txt
  - name: Copy the log
    run: cp "%_SMSTSLogPath%/smsts.log" "%SHARE%/smsts.log"
"#;

/// Scenario 5: A *Restart Computer* step reboots the machine; the runner comes back, finds its state on
/// the deployed disk, and finishes: no step runs twice.
#[test]
fn restart_resumes_from_the_deployed_disk() {
    if !ready(false) {
        return;
    }
    let d = scenario_dir("restart");
    let medium = build_with_share(&d, RESTART, &[]);
    let target = blank(&d.join("target.img"), 128 << 20);
    let share = share_disk(&d.join("share.img"));
    let mut cfg = config(
        &d,
        Firmware::Bios,
        BootFrom::Disk(medium),
        vec![target, share.clone()],
        "console.log",
    );
    cfg.reboot = true;
    let (mut m, mut times) = start(&cfg);
    m.expect("Computer name:", BOOT).unwrap();
    m.send_line(COMPUTER_NAME).unwrap();
    m.expect("[1/", BOOT).unwrap();
    times.first_step = Some(times.started.elapsed());
    m.expect("Restarting in 0 s", RUN).unwrap();
    // The second boot skips the hooks (the sequence mounts the share again itself).
    m.expect("resuming task sequence", BOOT).unwrap();
    m.expect("the runner exited with code", RUN).unwrap();
    m.wait_exit(BOOT).unwrap();
    times.report("restart");
    let console = m.console();
    assert_eq!(qemu::runner_exit_code(&console), Some(0), "{console}");
    assert_eq!(
        console.matches("Computer name:").count(),
        1,
        "the hook ran again after the restart: {console}"
    );
    let ran = String::from_utf8(share_file(&share, "ran.txt").unwrap()).unwrap();
    let lines: Vec<&str> = ran.lines().collect();
    assert_eq!(lines.len(), 2, "a step ran twice or not at all: {ran}");
    assert_eq!(lines[0], "before restart");
    assert!(
        lines[1].starts_with("after restart /dev/vdb:1/_SMSTaskSequence"),
        "{ran}"
    );
    let log = String::from_utf8(share_file(&share, "smsts.log").unwrap()).unwrap();
    assert!(
        log.contains("Found the unfinished run of") && log.contains("on /dev/vdb:1"),
        "{log}"
    );
    assert_eq!(
        log.matches("Start executing step 2 of").count(),
        1,
        "step 2 ran twice: {log}"
    );
    clean(&d);
}

/// Every file of `files` is on FAT partition `number` of `disk`, with the same bytes, and
/// nothing else is (besides `extra`); the file system is clean (fsck.fat -n).
fn check_partition(
    disk: &Path,
    number: u32,
    files: &[(String, Vec<u8>)],
    extra: &[&str],
    scratch: &Path,
) {
    let part = scratch.join("part.img");
    partition_copy(disk, number, &part);
    let out_dir = scratch.join("applied");
    if mcopy_all(&part, &out_dir) {
        let mut want: Vec<String> = files
            .iter()
            .map(|(r, _)| r.clone())
            .chain(extra.iter().map(|s| s.to_string()))
            .collect();
        want.sort();
        assert_eq!(
            relative_files(&out_dir),
            want,
            "the files on partition {number}"
        );
        for (rel, bytes) in files {
            let got = std::fs::read(out_dir.join(rel)).unwrap();
            assert!(got == *bytes, "{rel} differs from the image");
        }
        let _ = std::fs::remove_dir_all(&out_dir);
    }
    let _ = std::fs::remove_file(part);
}

/// The files (not folders) under `dir`, as sorted paths relative to it.
fn relative_files(dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().to_string_lossy().into_owned())
        .collect();
    found.sort();
    found
}

/// Files (not folders) under `dir`, recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Bytes the host has allocated for a sparse image (grows as the guest writes).
/// One 4 KiB block every 4 MiB of a disk image: on a disk that held random bytes, the blocks
/// that differ from an earlier sample show how far a sequential write has come.
fn sample(path: &Path) -> Vec<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    (0..len / (4 << 20))
        .map(|i| {
            let mut b = vec![0u8; 4096];
            f.read_exact_at(&mut b, i * (4 << 20)).unwrap();
            b
        })
        .collect()
}

/// Bytes written since `before` was sampled, counted in whole 4 MiB steps.
fn written_since(path: &Path, before: &[Vec<u8>]) -> u64 {
    let now = sample(path);
    now.iter().zip(before).filter(|(a, b)| a != b).count() as u64 * (4 << 20)
}

const APPLY_LARGE: &str = r#"
name: Apply a large image
steps:
  - name: Partition the target disk
    type: partition-disk
    properties:
      DiskIndex: "0"
      PartitionStyle: GPT
      Partitions0Type: Primary
      Partitions0FileSystem: FAT32
      Partitions0Size: "100"
      Partitions0SizeUnits: "%"
      Partitions0VolumeName: DATA
      Partitions0VolumeVariable: OSDisk
      Partitions: "1"
  - name: Apply the image
    type: apply-image
    properties:
      ImagePackageID: IMG00001
      DestinationVariable: OSDisk
  - name: Done
    run: echo done
"#;

/// Scenario 6: Power cut: the host kills QEMU while the image is being applied; the next boot finds
/// the run on the disk, applies again, and the disk ends up as a clean run leaves it: the
/// image's files and nothing else, on a clean file system.
#[test]
fn power_cut_while_applying_resumes_and_ends_like_a_clean_run() {
    if !ready(false) {
        return;
    }
    let d = scenario_dir("power-cut");
    let files = image_package(&d, 96);
    let medium = build(
        &d,
        "usb",
        APPLY_LARGE,
        &["--package", "dp", "--var", "TargetDevice=/dev/vdb"],
    );
    let target = blank(&d.join("target.img"), 512 << 20);
    let cfg = config(
        &d,
        Firmware::Bios,
        BootFrom::Disk(medium.clone()),
        vec![target.clone()],
        "console-1.log",
    );
    let (mut m, mut times) = start(&cfg);
    m.expect("Computer name:", BOOT).unwrap();
    m.send_line(COMPUTER_NAME).unwrap();
    m.expect("[2/", RUN).unwrap();
    times.first_step = Some(times.started.elapsed());
    // Cut the power once a part of the image reached the disk, well before all of it.
    let before = sample(&target);
    let deadline = Instant::now() + RUN;
    while written_since(&target, &before) < (24 << 20) {
        assert!(
            Instant::now() < deadline,
            "the apply wrote nothing: {}",
            m.console()
        );
        assert!(
            !m.console().contains("[3/"),
            "the apply ended before the power cut (make the image larger)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    m.kill();
    times.report("power-cut (first boot, killed)");
    assert!(
        !m.console().contains("[3/"),
        "the apply ended before the power cut"
    );

    let cfg = config(
        &d,
        Firmware::Bios,
        BootFrom::Disk(medium),
        vec![target.clone()],
        "console-2.log",
    );
    let (mut m, times) = start(&cfg);
    m.expect("resuming task sequence", BOOT).unwrap();
    m.expect("the runner exited with code", RUN).unwrap();
    m.wait_exit(BOOT).unwrap();
    times.report("power-cut (second boot)");
    let console = m.console();
    assert_eq!(qemu::runner_exit_code(&console), Some(0), "{console}");
    assert!(
        !console.contains("Computer name:"),
        "the resumed boot ran the hooks: {console}"
    );
    check_partition(&target, 1, &files, &[], &d);
    clean(&d);
}

const CAPTURE: &str = r#"
name: Deploy and capture
steps:
  - name: Partition the target disk
    type: partition-disk
    properties:
      DiskIndex: "0"
      PartitionStyle: MBR
      Partitions0Type: Primary
      Partitions0FileSystem: FAT32
      Partitions0Size: "100"
      Partitions0SizeUnits: "%"
      Partitions0VolumeName: DATA
      Partitions0VolumeVariable: OSDisk
      Partitions: "1"
  - name: Apply the image
    type: apply-image
    properties:
      ImagePackageID: IMG00001
      DestinationVariable: OSDisk
  - name: Capture the data partition to the share
    type: capture-image
    properties:
      CaptureSource: "%OSDisk%"
      CaptureDestination: "%SHARE%/captured.tsimg"
      ImageName: Captured
      ImageDescription: captured in QEMU
"#;

/// Scenario 7: Capture: the deployed partition is captured to an image on the share; applying that
/// image on the host gives the same files.
#[test]
fn capture_to_the_share_gives_back_the_same_files() {
    if !ready(false) {
        return;
    }
    let d = scenario_dir("capture");
    let files = image_package(&d, 8);
    let medium = build_with_share(&d, CAPTURE, &["--package", "dp"]);
    let target = blank(&d.join("target.img"), 128 << 20);
    let share = share_disk(&d.join("share.img"));
    let cfg = config(
        &d,
        Firmware::Bios,
        BootFrom::Disk(medium),
        vec![target, share.clone()],
        "console.log",
    );
    let (mut m, mut times) = start(&cfg);
    let code = drive(&mut m, &mut times);
    times.report("capture");
    assert_eq!(code, 0, "{}", m.console());
    let image = share_file(&share, "captured.tsimg").expect("captured.tsimg on the share");
    std::fs::write(d.join("captured.tsimg"), image).unwrap();
    tsforge_ok(&d, &["apply", "captured.tsimg", "back"]);
    let back = d.join("back");
    let mut want: Vec<String> = files.iter().map(|(r, _)| r.clone()).collect();
    want.sort();
    assert_eq!(relative_files(&back), want);
    for (rel, bytes) in &files {
        assert!(
            std::fs::read(back.join(rel)).unwrap() == *bytes,
            "{rel} differs after capture and apply"
        );
    }
    clean(&d);
}

/// `tsforge try`, as administrators run it: the answer to the hook comes on standard input; it
/// reports the runner's outcome and the disk's new layout, and its exit code says whether the
/// sequence succeeded (0) or not.
#[test]
fn tsforge_try_reports_the_outcome_and_the_layout() {
    if !ready(false) {
        return;
    }
    let d = scenario_dir("try");
    let files = image_package(&d, 1);
    let medium = build(
        &d,
        "usb",
        DEPLOY,
        &["--package", "dp", "--var", "TargetDevice=/dev/vdb"],
    );
    let try_it = |medium: &Path, work: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tsforge"))
            .args([
                "try",
                "--bios",
                "--disk",
                "256M",
                "--timeout",
                "600",
                "--work",
                work,
            ])
            .arg(medium)
            .current_dir(&d)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "{COMPUTER_NAME}").unwrap();
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let (code, out) = try_it(&medium, "ok");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("the sequence succeeded (runner exit code 0)"),
        "{out}"
    );
    assert!(out.contains("(256.0 MiB): GPT"), "{out}");
    assert!(out.contains("1: 64.0 MiB at 1.0 MiB, EFI system"), "{out}");
    check_target(&d.join("ok/disk0.img"), &files, &d);

    // The failure screen waits SMSTSErrorDialogTimeout seconds (900 by default) for a key
    // before the power action: 3 here, so the trial ends on its own.
    let failing = build(
        &d,
        "usb",
        "name: Fails\nsteps:\n  - name: Fail\n    run: exit 5\n",
        &["--var", "SMSTSErrorDialogTimeout=3"],
    );
    let (code, out) = try_it(&failing, "fail");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("the sequence failed: runner exit code 1"),
        "{out}"
    );
    assert!(out.contains("no partition table (blank)"), "{out}");
    clean(&d);
}

/// The sequence of the end-to-end deployment: in the boot environment, partition (GPT: ESP +
/// ext4 root), apply the Debian image (made bootable), name the computer as the hook asked,
/// hand over; in the deployed OS (`run_in: FullOS`), write a marker. `SMSTSPostAction` (set
/// at build time) powers the machine off once the run has ended and cleaned up.
const DEPLOY_DEBIAN: &str = r#"
name: Deploy Debian end to end
steps:
  - name: Partition the target disk
    type: partition-disk
    properties:
      DiskIndex: "0"
      PartitionStyle: GPT
      Partitions0Type: EFI
      Partitions0FileSystem: FAT32
      Partitions0Size: "100"
      Partitions0SizeUnits: MB
      Partitions0VolumeName: ESP
      Partitions1Type: Primary
      Partitions1FileSystem: ext4
      Partitions1Size: "100"
      Partitions1SizeUnits: "%"
      Partitions1VolumeName: root
      Partitions1VolumeVariable: OSDisk
      Partitions: "2"
  - name: Apply Debian
    type: apply-image
    properties:
      ImagePackageID: IMG00001
      DestinationVariable: OSDisk
  - name: Apply Windows Settings
    type: apply-windows-settings
  - name: Setup Windows and ConfigMgr
    type: hand-over
  - name: Write the marker
    run_in: FullOS
    run: echo "%_SMSTSInWinPE% %_SMSTSMachineName%" > /root/tsforge-marker
  - name: Install the lab tools
    type: install-package
    run_in: FullOS
    properties:
      PackageID: LAB00042
      ProgramName: Install
  - name: Restart in the deployed OS
    type: restart
    run_in: FullOS
    properties:
      SMSRebootTarget: HD
      SMSRebootTimeout: "0"
  - name: Long step cut by a power cut
    run_in: FullOS
    run: if [ -e /root/cut-once ]; then echo resumed >> /root/tsforge-marker; else touch /root/cut-once; sync; echo "waiting for the power cut" > /dev/ttyS0; sleep 900; fi
  - name: Last step
    run_in: FullOS
    run: echo last >> /root/tsforge-marker
"#;

/// Scenario 8 (issue 16, "Proven end to end"): bare metal to the deployed OS's own first boot.
/// The Debian 12 reference system is captured into an image package on the medium; a blank
/// UEFI machine boots the linux medium, which partitions, applies and makes Debian bootable,
/// sets the computer name the hook asked for (Apply Windows Settings) and hands the run over
/// (Setup Windows and ConfigMgr), then restarts. The medium is removed: the machine boots the
/// disk (OVMF's fallback `EFI/BOOT/BOOTX64.EFI`), the deployed Debian's first boot resumes the
/// run for its FullOS steps: a marker, *Install Package* from the package the hand-over staged
/// (the medium is gone), a *Restart Computer* (the unit resumes at the next boot), a step cut
/// by a power cut (QEMU killed; the next boot runs it again), a last step; then the run cleans
/// up and powers off (`SMSTSPostAction`). The host then checks the disk with independent
/// tools, and that every completed step ran once.
///
/// Rules followed: Setup Windows and ConfigMgr, then the task sequence goes on in the new OS
/// (<https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/task-sequence-steps#BKMK_SetupWindowsandConfigMgr>);
/// `_SMSTSInWinPE` is `false` in the full OS, `_SMSTSMachineName` is the computer's name, and
/// `SMSTSPostAction` runs after the sequence ends
/// (<https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/task-sequence-variables>);
/// `runIn` (SMS_TaskSequence_Action,
/// <https://learn.microsoft.com/en-us/mem/configmgr/develop/reference/osd/sms_tasksequence_action-server-wmi-class>);
/// Apply Windows Settings takes the name from `OSDComputerName`
/// (<https://learn.microsoft.com/en-us/mem/configmgr/develop/reference/osd/sms_tasksequence_applywindowssettingsaction-server-wmi-class>).
#[test]
fn bare_metal_to_the_deployed_debian_first_boot() {
    if !ready(true) {
        return;
    }
    if !as_root(
        "deploy-debian",
        "capture of the reference system, loop devices",
    ) {
        return;
    }
    let reference = crate::common::loopdev::must(
        "bash",
        &[
            &crate::common::repo("scripts/reference-rootfs.sh"),
            "--path",
        ],
    );
    if !Path::new(&reference).join("etc/os-release").exists() {
        assert!(
            !required(),
            "the reference system is missing: bash scripts/reference-rootfs.sh"
        );
        eprintln!("SKIP e2e deploy-debian: no reference system (bash scripts/reference-rootfs.sh)");
        return;
    }
    let d = scenario_dir("deploy-debian");
    tsforge_ok(
        &d,
        &["capture", &reference, "debian.tsimg", "--name", "Debian 12"],
    );
    tsforge_ok(
        &d,
        &[
            "package",
            "build",
            "debian.tsimg",
            "--id",
            "IMG00001",
            "--out",
            "dp",
        ],
    );
    let _ = std::fs::remove_file(d.join("debian.tsimg"));
    // The package the full OS installs: staged into the deployed OS by the hand-over.
    let pkg = d.join("lab-tools");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("payload.txt"), "lab tools 1.0\n").unwrap();
    std::fs::write(
        pkg.join("install.sh"),
        "set -e\nmkdir -p /opt/lab\ncp payload.txt /opt/lab/\n",
    )
    .unwrap();
    tsforge_ok(
        &d,
        &[
            "package",
            "build",
            "lab-tools",
            "--id",
            "LAB00042",
            "--program",
            "Install=sh install.sh",
            "--out",
            "dp",
        ],
    );
    let medium = build(
        &d,
        "usb",
        DEPLOY_DEBIAN,
        &[
            "--partition-table",
            "gpt",
            "--package",
            "dp",
            "--var",
            "SMSTSPostAction=systemctl poweroff",
        ],
    );
    let _ = std::fs::remove_dir_all(d.join("dp"));
    let target = d.join("target.img");
    used_disk::random_ends_disk(&target, 2 << 30);

    // First boot: the medium, the blank disk; the hand-over's restart ends QEMU (-no-reboot).
    let cfg = config(
        &d,
        Firmware::Uefi,
        BootFrom::Disk(medium.clone()),
        vec![target.clone()],
        "console-1.log",
    );
    let (mut m, mut times) = start(&cfg);
    m.expect("Computer name:", BOOT).unwrap();
    m.send_line(COMPUTER_NAME).unwrap();
    m.expect("[1/", BOOT).unwrap();
    times.first_step = Some(times.started.elapsed());
    m.expect("Restarting in 0 s", RUN).unwrap();
    m.wait_exit(BOOT).unwrap();
    times.report("deploy-debian (boot medium, until the hand-over)");
    let _ = std::fs::remove_file(&medium);

    // Second boot: the medium is gone; the firmware (its variables kept from the first boot)
    // boots the entry the medium wrote with efibootmgr, named BootNext by the hand-over's
    // restart.
    let mut cfg = config(
        &d,
        Firmware::Uefi,
        BootFrom::Disk(target.clone()),
        Vec::new(),
        "console-2.log",
    );
    cfg.keep_vars = true;
    let (mut m, mut times) = start(&cfg);
    // Its systemd-boot menu, then its own kernel (the loader entry has console=ttyS0).
    m.expect("Debian GNU/Linux 12", BOOT).unwrap();
    m.expect("Linux version", BOOT).unwrap();
    times.first_step = Some(times.started.elapsed());
    // The FullOS steps, up to the Restart Computer step (-no-reboot ends QEMU there).
    m.wait_exit(RUN).unwrap();
    times.report("deploy-debian (first boot of the deployed OS; first step = its kernel)");
    let events = qemu::boot_events(&m.console(), &cfg.devices());
    assert!(
        events.iter().any(|e| e.failed.is_none()
            && e.name.contains("Debian GNU/Linux 12")
            && e.path.contains("HD(")),
        "the firmware did not start the boot entry the medium wrote: {events:?}"
    );

    // Third boot: the unit resumes after the restart; the long step is cut by a power cut.
    let mut cfg = config(
        &d,
        Firmware::Uefi,
        BootFrom::Disk(target.clone()),
        Vec::new(),
        "console-3.log",
    );
    cfg.keep_vars = true;
    let (mut m, _) = start(&cfg);
    m.expect("waiting for the power cut", BOOT + RUN).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    m.kill();

    // Fourth boot: the unit resumes again, the cut step runs again and the run ends;
    // SMSTSPostAction powers off.
    let mut cfg = config(
        &d,
        Firmware::Uefi,
        BootFrom::Disk(target.clone()),
        Vec::new(),
        "console-4.log",
    );
    cfg.keep_vars = true;
    let (mut m, _) = start(&cfg);
    m.wait_exit(BOOT + RUN).unwrap();

    check_deployed_debian(&target, &d);
    clean(&d);
}

/// Host-side checks of the deployed Debian disk: a valid GPT, a clean ESP (fsck.fat -n) and
/// root (e2fsck -fn), the host name, the FullOS step's marker, smsts.log of both phases, and
/// nothing of the hand-over left.
fn check_deployed_debian(disk: &Path, scratch: &Path) {
    let sgdisk = tool("sgdisk").expect("sgdisk (gdisk)");
    let out = Command::new(sgdisk).arg("-v").arg(disk).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("No problems found"),
        "sgdisk -v: {text}"
    );
    let esp = scratch.join("esp.img");
    partition_copy(disk, 1, &esp);
    let esp_dir = scratch.join("esp");
    if mcopy_all(&esp, &esp_dir) {
        let files = relative_files(&esp_dir);
        assert!(
            files.iter().any(|f| f == "EFI/BOOT/BOOTX64.EFI"),
            "no fallback boot loader on the ESP: {files:?}"
        );
        assert!(
            !files.iter().any(|f| f.starts_with("_SMSTaskSequence")),
            "the run's state is left on the ESP: {files:?}"
        );
    }
    let _ = std::fs::remove_file(&esp);

    let mut lo =
        crate::common::loopdev::Loop::attach(disk, "e2e deploy-debian").expect("a loop device");
    lo.add_partitions();
    let root_dev = lo.part(2);
    let fsck = tool("e2fsck").expect("e2fsck");
    let out = Command::new(fsck)
        .arg("-fn")
        .arg(&root_dev)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "e2fsck -fn of the root: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let root = scratch.join("root");
    lo.mount_ro(&root_dev, &root);
    let read = |p: &str| {
        std::fs::read_to_string(root.join(p))
            .unwrap_or_else(|e| panic!("/{p} on the deployed root: {e}"))
    };
    assert_eq!(read("etc/hostname").trim(), COMPUTER_NAME);
    assert_eq!(
        read("root/tsforge-marker").trim(),
        format!("false {COMPUTER_NAME}\nresumed\nlast"),
        "the FullOS steps' marker (each once; the cut step's second run resumed)"
    );
    assert_eq!(
        read("opt/lab/payload.txt"),
        "lab tools 1.0\n",
        "the package installed in the full OS"
    );
    let logs = root.join("var/log/tsforge");
    let smsts = read("var/log/tsforge/smsts.log");
    let mut all = String::new();
    for f in walk(&logs) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("smsts") && name.ends_with(".log") {
            let text = std::fs::read_to_string(&f).unwrap();
            tsforge_runtime::log::cmtrace::parse(&text)
                .unwrap_or_else(|line| panic!("{name} is not CMTrace (line {line})"));
            all.push_str(&text);
        }
    }
    assert!(!smsts.is_empty());
    for step in [
        "Partition the target disk",
        "Apply Debian",
        "Setup Windows and ConfigMgr",
        "Write the marker",
    ] {
        assert!(
            all.contains(step),
            "step {step:?} is not in the logs of /var/log/tsforge: {all}"
        );
    }
    // The medium's efibootmgr wrote the entry, and the hand-over's restart named it BootNext.
    assert!(
        all.contains("Firmware boot entry Boot") && all.contains("written (first in BootOrder)"),
        "the logs do not show the firmware boot entry: {all}"
    );
    for n in [5, 6, 7, 9] {
        assert_eq!(
            all.matches(&format!("Start executing step {n} of")).count(),
            1,
            "FullOS step {n} ran other than once: {all}"
        );
    }
    // The step the power cut interrupted runs again when the run resumes.
    assert_eq!(
        all.matches("Start executing step 8 of").count(),
        2,
        "the interrupted step: {all}"
    );
    assert!(
        all.contains("Staged package LAB00042"),
        "the hand-over did not stage the package: {all}"
    );
    for left in [
        "etc/systemd/system/tsforge-handover.service",
        "etc/systemd/system/multi-user.target.wants/tsforge-handover.service",
        "var/lib/tsforge/handover",
        "_SMSTaskSequence",
    ] {
        assert!(
            std::fs::symlink_metadata(root.join(left)).is_err(),
            "/{left} is left on the deployed OS"
        );
    }
    lo.release();
}

/// The README's first command, as a test (issue 16: "the README's first command deploys a
/// bootable OS … and `tsforge try` shows the deployed disk booting on its own and reports
/// it"): the sample OS of `scripts/sample-os.sh` captured into package LAB00001, the USB
/// medium built from `examples/lab-deploy.yaml` with the computer-name hook, and `tsforge try`
/// with a blank 2 GiB disk (target disk first in the boot order, restarts allowed). The
/// medium deploys and hands over, the restart boots the disk through the firmware entry the
/// medium wrote, the sample OS resumes the run and powers off; `try` exits 0 and its summary
/// says the deployed disk booted on its own and where the exit line came from. The host then
/// checks the disk it kept (`--work`).
#[test]
fn readme_sample_os_deploys_and_boots_on_its_own() {
    if !ready(true) {
        return;
    }
    if !as_root("readme", "the ext4 apply mounts") {
        return;
    }
    let d = scenario_dir("readme");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sample = Command::new("bash")
        .arg(repo.join("scripts/sample-os.sh"))
        .output()
        .unwrap();
    assert!(
        sample.status.success(),
        "scripts/sample-os.sh: {}",
        String::from_utf8_lossy(&sample.stderr)
    );
    let tree = String::from_utf8_lossy(&sample.stdout).trim().to_string();
    tsforge_ok(
        &d,
        &["capture", &tree, "lab.tsimg", "--name", "tsforge sample OS"],
    );
    tsforge_ok(
        &d,
        &[
            "package",
            "build",
            "lab.tsimg",
            "--id",
            "LAB00001",
            "--out",
            "lab-dp",
        ],
    );
    let seq = repo.join("examples/lab-deploy.yaml").display().to_string();
    let hook = repo
        .join("hooks/ask-computer-name.sh")
        .display()
        .to_string();
    tsforge_ok(
        &d,
        &[
            "build",
            "usb",
            "--template",
            "linux",
            "--sequence",
            &seq,
            "--package",
            "lab-dp",
            "--hook",
            &hook,
            "--var",
            "TSForgeMonitorURL=http://10.0.2.100:9800",
            "--force",
            "-o",
            "usb.img",
        ],
    );
    // Both phases report to a monitor on the host (issue 18): the boot environment and the
    // deployed OS (its own network, the sample OS's DHCP), one run across the restart.
    let monitor = Monitor::start(&d);
    let forward = format!("9800={}", monitor.addr);
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tsforge"))
        .args([
            "try",
            "usb.img",
            "--disk",
            "2G",
            "--work",
            "work",
            "--timeout",
            "900",
            "--forward",
            &forward,
        ])
        .current_dir(&d)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"LAB-PC01\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "E2E readme (try: medium, then the deployed disk): total {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    for want in [
        "tsforge sample OS LAB-PC01: booted from",
        "boot 1: the medium (USB disk image",
        "the deployed disk booted on its own (target disk 0)",
        "the sequence succeeded (runner exit code 0)",
        "its exit line: printed on the deployed disk, target disk 0",
    ] {
        assert!(
            text.contains(want),
            "{want:?} not in the try output:\n{text}"
        );
    }
    let boot2 = text
        .lines()
        .find(|l| l.trim_start().starts_with("boot 2: target disk 0"))
        .unwrap_or_else(|| panic!("no second boot from target disk 0:\n{text}"));
    assert!(
        boot2.contains("\"tsforge sample OS") && boot2.contains("HD(1,GPT,"),
        "the second boot did not go through the firmware entry the medium wrote: {boot2}"
    );
    // The monitor saw one deployment through both phases, to its end in the deployed OS.
    let list = monitor.get_json("/api/v1/deployments");
    let deployments = list["deployments"].as_array().unwrap();
    assert_eq!(deployments.len(), 1, "{list}\n{text}");
    let dep = &deployments[0];
    assert_eq!(dep["state"], "succeeded", "{dep}\n{text}");
    assert_eq!(dep["phase"], "FullOS", "{dep}");
    assert_eq!(dep["sequence"], "Lab deployment", "{dep}");
    assert_eq!(dep["computer_name"], "LAB-PC01", "{dep}");
    let run = dep["run"].as_str().unwrap();
    let events = monitor.get_json(&format!("/api/v1/deployments/{run}/events"));
    let events = events["events"].as_array().unwrap();
    let phases: std::collections::BTreeSet<&str> =
        events.iter().filter_map(|e| e["phase"].as_str()).collect();
    assert_eq!(
        phases,
        ["FullOS", "WinPE"].into_iter().collect(),
        "{events:?}"
    );
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    for k in ["run_start", "restart", "run_resume", "run_end"] {
        assert!(kinds.contains(&k), "no {k} event: {kinds:?}");
    }
    let one = monitor.get_json(&format!("/api/v1/deployments/{run}"));
    let report = one["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "Report from the deployed OS")
        .unwrap_or_else(|| panic!("the FullOS step is not in the timeline: {one}"));
    assert_eq!(report["state"], "succeeded", "{one}");
    let (code, log) = monitor.get_text(&format!("/api/v1/deployments/{run}/log"));
    assert_eq!(code, 200, "{log}");
    assert!(log.contains("_SMSTSInWinPE=false"), "{log}");

    // The disk try kept: a valid GPT, clean ESP and root, the report of the FullOS step,
    // the hand-over's line gone from inittab.
    let disk = d.join("work/disk0.img");
    let sgdisk = tool("sgdisk").expect("sgdisk (gdisk)");
    let o = Command::new(sgdisk).arg("-v").arg(&disk).output().unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("No problems found"),
        "sgdisk -v: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let esp = d.join("esp.img");
    partition_copy(&disk, 1, &esp);
    let mut lo = crate::common::loopdev::Loop::attach(&disk, "e2e readme").expect("a loop device");
    lo.add_partitions();
    let root_dev = lo.part(2);
    let o = Command::new(tool("e2fsck").expect("e2fsck"))
        .arg("-fn")
        .arg(&root_dev)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "e2fsck -fn: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let mnt = d.join("root");
    lo.mount_ro(&root_dev, &mnt);
    let report = std::fs::read_to_string(mnt.join("var/log/tsforge-report")).unwrap();
    assert!(
        report.contains("_SMSTSInWinPE=false on LAB-PC01"),
        "{report}"
    );
    let inittab = std::fs::read_to_string(mnt.join("etc/inittab")).unwrap();
    assert!(!inittab.contains("tsforge"), "{inittab}");
    for left in ["var/lib/tsforge/handover", "_SMSTaskSequence"] {
        assert!(
            std::fs::symlink_metadata(mnt.join(left)).is_err(),
            "/{left} is left on the deployed OS"
        );
    }
    lo.release();
    clean(&d);
}

/// Whether every file in `files` exists; when one is missing the scenario is skipped, or fails
/// under `TSFORGE_REQUIRE_TOOLS=1` (CI).
fn files_present(files: &[&str]) -> bool {
    let missing: Vec<&str> = files
        .iter()
        .copied()
        .filter(|f| !Path::new(f).is_file())
        .collect();
    if !missing.is_empty() {
        assert!(
            !required(),
            "missing (TSFORGE_REQUIRE_TOOLS=1): {missing:?}"
        );
        eprintln!("SKIP e2e: missing {missing:?}");
    }
    missing.is_empty()
}

/// The Secure Boot scenario's sequence: the kernel says Secure Boot is on and runs locked
/// down (integrity), and the runner's disk work still works under lockdown: partitioning and
/// formatting the target (raw block-device writes) and firmware variables through efibootmgr
/// (efivarfs writes: BootNext set, then removed).
const SECURE_BOOT: &str = r#"
name: Secure Boot
steps:
  - name: Secure Boot and lockdown
    run: 'dmesg | grep "secureboot: Secure boot enabled" && (grep -q securityfs /proc/mounts || mount -t securityfs securityfs /sys/kernel/security) && grep -F "[integrity]" /sys/kernel/security/lockdown'
  - name: Partition the target disk
    type: partition-disk
    properties:
      DiskIndex: "0"
      PartitionStyle: GPT
      Partitions0Type: EFI
      Partitions0FileSystem: FAT32
      Partitions0Size: "100"
      Partitions0SizeUnits: "%"
      Partitions0VolumeName: SYSTEM
      Partitions: "1"
  - name: Firmware variables
    run: 'efibootmgr --bootnext 0001 && efibootmgr | grep "BootNext: 0001" && efibootmgr --delete-bootnext'
"#;

/// Builds a `kind` medium of the Secure Boot sequence at `out`, boots it from `boot` under OVMF
/// with Secure Boot enforced and a blank target `target{suffix}.img`, and checks the sequence
/// exited 0. Returns the machine's configuration, the target and the console.
fn secure_boot_run(
    d: &Path,
    kind: &str,
    out: &Path,
    boot: BootFrom,
    suffix: &str,
) -> (MachineConfig, PathBuf, String) {
    tsforge_ok(
        d,
        &[
            "build",
            kind,
            "--template",
            "linux",
            "--sequence",
            "ts.yaml",
            "--force",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let target = blank(&d.join(format!("target{suffix}.img")), 64 << 20);
    let cfg = config(
        d,
        Firmware::UefiSecureBoot,
        boot,
        vec![target.clone()],
        &format!("console{suffix}.log"),
    );
    let (mut m, mut times) = start(&cfg);
    m.expect("[1/", BOOT).unwrap();
    times.first_step = Some(times.started.elapsed());
    m.expect("the runner exited with code", RUN).unwrap();
    m.wait_exit(BOOT).unwrap();
    times.report(&format!("secure-boot ({kind})"));
    let console = m.console();
    assert_eq!(
        qemu::runner_exit_code(&console),
        Some(0),
        "the {kind} medium's sequence under Secure Boot: {console}"
    );
    (cfg, target, console)
}

/// Scenario: Secure Boot (issue 17). OVMF with Secure Boot enforced and Microsoft's keys
/// (OVMF_CODE_4M.secboot.fd, OVMF_VARS_4M.ms.fd, as most PCs ship) boots the linux USB image
/// through shim, Debian's signed GRUB and signed kernel, and the sequence above exits 0; the
/// ISO (its El Torito UEFI image, as a CD-ROM) does the same. Then the USB medium with an
/// unsigned loader as EFI/BOOT/BOOTX64.EFI (Debian's systemd-boot) is
/// refused by the same firmware: the check is real.
#[test]
fn secure_boot_usb_and_iso_boot_signed_and_unsigned_is_refused() {
    // systemd-boot-efi's loader, not signed for Secure Boot.
    const UNSIGNED: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";
    if !ready(true) {
        return;
    }
    if !files_present(&[qemu::OVMF_SECBOOT_CODE, qemu::OVMF_MS_VARS, UNSIGNED]) {
        return;
    }
    let d = scenario_dir("secure-boot");
    std::fs::write(d.join("ts.yaml"), SECURE_BOOT).unwrap();
    let medium = d.join("medium.img");
    let (cfg, target, console) =
        secure_boot_run(&d, "usb", &medium, BootFrom::Disk(medium.clone()), "");
    assert!(console.contains("Welcome to GRUB!"), "{console}");
    let sgdisk = tool("sgdisk").expect("sgdisk (gdisk)");
    let o = Command::new(sgdisk)
        .arg("-v")
        .arg(&target)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("No problems found"),
        "sgdisk -v of the target partitioned under lockdown: {}",
        String::from_utf8_lossy(&o.stdout)
    );

    // The ISO (El Torito UEFI image with the same shim, signed GRUB and kernel) under the same
    // firmware, as a CD-ROM.
    let iso = d.join("medium.iso");
    secure_boot_run(&d, "iso", &iso, BootFrom::Cdrom(iso.clone()), "-iso");
    let _ = std::fs::remove_file(&iso);

    // The unsigned loader in place of shim, on the medium's FAT partition (at 1 MiB).
    let o = Command::new(tool("mcopy").expect("mcopy (mtools)"))
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-o")
        .arg("-i")
        .arg(format!("{}@@1M", medium.display()))
        .arg(UNSIGNED)
        .arg("::/EFI/BOOT/BOOTX64.EFI")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut cfg = cfg;
    cfg.console_log = d.join("console-unsigned.log");
    let mut m = Machine::start(&cfg).unwrap();
    let line = m.expect("Access Denied", BOOT).unwrap_or_else(|e| {
        panic!(
            "the unsigned loader was not refused: {e:#}\n{}",
            m.console()
        )
    });
    m.kill();
    let refused = qemu::boot_events(&m.console(), &cfg.devices());
    assert!(
        refused.iter().any(|e| e.device == qemu::BootDevice::Medium
            && e.failed.as_deref() == Some("Access Denied")),
        "{line}\n{refused:?}"
    );
    assert!(
        !refused
            .iter()
            .any(|e| e.device == qemu::BootDevice::Medium && e.failed.is_none()),
        "the firmware started the unsigned loader: {refused:?}"
    );
    clean(&d);
}

/// Scenario: PXE under Secure Boot (issue 17). The same firmware as above (Secure Boot
/// enforced, Microsoft's keys), no disk medium: QEMU's DHCP names shim (`bootx64.efi`) as the
/// boot file of the `tsforge build pxe` tree it serves by TFTP; the firmware's own PXE loads
/// shim, shim fetches Debian's signed network GRUB (`grubx64.efi`) from the same server, GRUB
/// reads `grub/grub.cfg` and loads the signed kernel, the initramfs and the payload by TFTP,
/// and the Secure Boot sequence (lockdown, partitioning, firmware variables) exits 0. The
/// blank target disk comes first in the boot order, as `tsforge try` sets it.
#[test]
fn secure_boot_pxe_boots_shim_and_signed_grub_over_tftp() {
    if !ready(true) {
        return;
    }
    if !files_present(&[qemu::OVMF_SECBOOT_CODE, qemu::OVMF_MS_VARS]) {
        return;
    }
    let d = scenario_dir("secure-boot-pxe");
    std::fs::write(d.join("ts.yaml"), SECURE_BOOT).unwrap();
    let tree = d.join("pxe");
    let boot = BootFrom::Pxe {
        tftp_root: tree.clone(),
        bootfile: tsforge_builder::template::secureboot::PXE_LOADER.into(),
    };
    let (cfg, _target, console) = secure_boot_run(&d, "pxe", &tree, boot, "");
    assert!(cfg.firmware_pxe(), "the firmware's own PXE loads shim");
    // The firmware started the NIC's PXE entry (not a disk), shim fetched GRUB by TFTP, GRUB
    // read the tree's configuration, and the kernel saw Secure Boot on.
    let events = qemu::boot_events(&console, &cfg.devices());
    assert!(
        events
            .iter()
            .any(|e| e.device == qemu::BootDevice::Medium && e.failed.is_none()),
        "{events:?}"
    );
    for line in [
        "Fetching Netboot Image grubx64.efi",
        "tsforge: loading /vmlinuz and /initrd.img /payload.img by TFTP",
        "using the PXE payload in /pxe",
    ] {
        assert!(console.contains(line), "{line:?} not on the console");
    }
    clean(&d);
}

/// A sequence that fails at its second step (the share is mounted by the medium's hook).
const FAILS: &str = r#"
name: Fails on the target
steps:
  - name: Say hello
    run: echo hello from the target
  - name: The driver given with --driver is loaded
    run: sh -c "grep '^dummy ' /proc/modules"
  - name: Fail on purpose
    run: sh -c "exit 7"
"#;

/// A module for `build --driver`, which takes modules that are not the kernel's own (a
/// vendor's): the kernel's `dummy.ko` (newest `/boot/vmlinuz-<version>`, the kernel the linux
/// template takes) with its modinfo name changed to `dumm2` and its signature removed, written
/// into `d`. No hardware
/// loads it; once insmod-ed it shows in /proc/modules as `dummy` (the kernel names a module
/// from its own structure, not from modinfo).
fn extra_driver(d: &Path) -> PathBuf {
    let mut versions: Vec<String> = std::fs::read_dir("/boot")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_prefix("vmlinuz-"))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    let dummy = versions
        .iter()
        .rev()
        .map(|v| PathBuf::from(format!("/lib/modules/{v}/kernel/drivers/net/dummy.ko")))
        .find(|p| p.exists())
        .expect("dummy.ko of the newest /boot/vmlinuz-* (linux-image-amd64)");
    let mut bytes = std::fs::read(&dummy).unwrap();
    let at = bytes
        .windows(11)
        .position(|w| w == b"name=dummy\0")
        .expect("modinfo name=dummy in dummy.ko");
    bytes[at..at + 11].copy_from_slice(b"name=dumm2\0");
    // Without Debian's signature, which no longer matches (the kernel rejects a module whose
    // signature is wrong even without Secure Boot, and loads an unsigned one, tainted, as a
    // vendor's module usually is): the signature, its 12-byte descriptor (length last, big
    // endian) and the marker are cut off the end.
    const MARKER: &[u8] = b"~Module signature appended~\n";
    if bytes.ends_with(MARKER) {
        let desc = bytes.len() - MARKER.len() - 12;
        let sig_len = u32::from_be_bytes(bytes[desc + 8..desc + 12].try_into().unwrap()) as usize;
        bytes.truncate(desc - sig_len);
    }
    let out = d.join("dumm2.ko");
    std::fs::write(&out, bytes).unwrap();
    out
}

/// Scenario: a failing sequence on a medium with a password. The password typed on the serial
/// console is never shown; the failure screen (failed step, exit code) waits
/// `SMSTSErrorDialogTimeout` = 30 s — the machine is still up 10 s later — as ConfigMgr's
/// error dialog does (https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/task-sequence-variables#SMSTSErrorDialogTimeout);
/// the logs reached the share named by `SLShare`, under the computer name, named by
/// `_SMSTSClientGuid` (https://learn.microsoft.com/en-us/mem/configmgr/mdt/toolkit-reference#slshare);
/// R restarts the machine (QEMU runs with -no-reboot, so it exits).
#[test]
fn failure_screen_waits_keeps_the_logs_and_hides_the_password() {
    if !ready(false) {
        return;
    }
    const PASSWORD: &str = "Zq7-console-secret";
    let d = scenario_dir("failure-screen");
    std::fs::write(d.join("pw.txt"), format!("{PASSWORD}\n")).unwrap();
    let medium = build_with_share(
        &d,
        FAILS,
        &[
            "--password-file",
            "pw.txt",
            "--var",
            "SMSTSErrorDialogTimeout=30",
            "--var",
            "SLShare=/mnt/share",
            "--driver",
            extra_driver(&d).to_str().unwrap(),
        ],
    );
    let target = blank(&d.join("target.img"), 16 << 20);
    let share = share_disk(&d.join("share.img"));
    let cfg = config(
        &d,
        Firmware::Bios,
        BootFrom::Disk(medium),
        vec![target, share.clone()],
        "console.log",
    );
    let (mut m, mut times) = start(&cfg);
    m.expect("Media password:", BOOT).unwrap();
    m.send_line(PASSWORD).unwrap();
    m.expect("Computer name:", BOOT).unwrap();
    m.send_line(COMPUTER_NAME).unwrap();
    m.expect("[1/", BOOT).unwrap();
    times.first_step = Some(times.started.elapsed());
    m.expect("TASK SEQUENCE FAILED", RUN).unwrap();
    m.expect("Power off in 30 s", BOOT).unwrap();
    let shown = Instant::now();
    // The countdown's next line comes 10 s later, from a machine that is still up.
    m.expect("Power off in 20 s", Duration::from_secs(40))
        .unwrap();
    assert!(shown.elapsed() >= Duration::from_secs(9));
    m.send_line("r").unwrap();
    m.expect("restarting (asked on the failure screen)", BOOT)
        .unwrap();
    m.wait_exit(BOOT).unwrap();
    times.report("failure-screen");
    let console = m.console();
    // The steps before it succeeded, the `--driver` module's check among them (a medium's
    // driver is loaded at boot, issue 17).
    assert!(
        console.contains("Failed step:   Fail on purpose"),
        "{console}"
    );
    assert!(
        console.contains("[2/3] The driver given with --driver is loaded"),
        "{console}"
    );
    assert!(console.contains("Exit code:     7"), "{console}");
    assert!(
        console.contains("Task sequence: Fails on the target"),
        "{console}"
    );
    assert_eq!(qemu::runner_exit_code(&console), Some(20), "{console}");
    assert!(
        !console.contains(PASSWORD),
        "the media password appears on the console:\n{console}"
    );
    // The logs on the share: <computer name>/<guid>-smsts.log (mtools: FAT long names).
    {
        let mdir = tool("mdir").expect("mtools' mdir reads the share (apt-get install mtools)");
        let out = Command::new(mdir)
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-b", "-i"])
            .arg(&share)
            .arg(format!("::/{COMPUTER_NAME}"))
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&out.stdout).into_owned();
        let name = listing
            .lines()
            .map(|l| l.trim().rsplit('/').next().unwrap_or("").to_string())
            .find(|l| l.to_ascii_lowercase().ends_with("-smsts.log"))
            .unwrap_or_else(|| panic!("no <guid>-smsts.log on the share: {listing}\n{console}"));
        let log =
            String::from_utf8(share_file(&share, &format!("{COMPUTER_NAME}/{name}")).unwrap())
                .unwrap();
        assert!(log.contains("Fail on purpose"), "{log}");
        assert!(!log.contains(PASSWORD), "{log}");
        assert!(
            listing.to_ascii_lowercase().contains("-events.jsonl"),
            "{listing}"
        );
    }
    clean(&d);
}
