//! The applied OS made bootable and configured (issue 16, items 1 and 2), as a user meets it:
//! `tsforge run` on a sequence that partitions a used disk (GPT, FAT32 EFI system partition,
//! ext4 root), applies a small Debian-like tree and runs *Apply Windows Settings*; the disk is
//! then checked with independent tools (`fsck.fat -n`, `mcopy`, `blkid`, `e2fsck -fn`, a
//! read-only mount). Errors: no OS, no boot loader, an MBR disk, Windows on the linux medium.
//! The real proof, `reference_debian_boots_from_its_own_disk`, copies the Debian 12 reference
//! system onto an ext4 partition, makes it bootable with tsforge and boots it in QEMU (OVMF).
//!
//! Rules followed (cited where they are checked):
//! - Microsoft, *Task sequence steps*, Apply Operating System Image ("Copy Windows boot loaders
//!   into the active partition. Set the boot.ini or the Boot Configuration Database (BCD) to
//!   reference the newly installed OS"):
//!   <https://learn.microsoft.com/intune/configmgr/osd/understand/task-sequence-steps#BKMK_ApplyOperatingSystemImage>;
//! - Microsoft, SMS_TaskSequence_ApplyWindowsSettingsAction (`ComputerName`, `TimeZone`,
//!   `VariablePrefix("OSD")`):
//!   <https://learn.microsoft.com/intune/configmgr/develop/reference/osd/sms_tasksequence_applywindowssettingsaction-server-wmi-class>;
//! - UAPI Group, Boot Loader Specification (Type #1 entries):
//!   <https://uapi-group.org/specifications/specs/boot_loader_specification/>;
//! - systemd loader.conf(5): <https://manpages.ubuntu.com/manpages/jammy/man5/loader.conf.5.html>;
//! - CLDR windowsZones: <https://github.com/unicode-org/cldr/blob/main/common/supplemental/windowsZones.xml>.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::loopdev::{must, Loop};
use crate::common::{note, repo, tool, tsforge, used_disk};
use tsforge_runtime::disk::{layout, Disk};

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Root is needed (tsforge mounts the ext4 partition); CI runs as root.
fn needs_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(!crate::common::required(), "{test} needs root");
    note(&format!("SKIP {test}: needs root (mount)"));
    false
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn bytes(seed: u32, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

const OLD_MACHINE_ID: &str = "0123456789abcdef0123456789abcdef";
const FOREIGN_UUID: &str = "11111111-2222-3333-4444-555555555555";

/// A small Debian-like tree: os-release (as a relative link, as Debian has it), two kernels
/// (the newer must win), systemd-boot, a time-zone file, an fstab naming another machine's
/// disks, the old identity.
fn fake_debian(root: &Path, with_loader: bool) {
    write(
        root,
        "usr/lib/os-release",
        b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
          VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nID=debian\n",
    );
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::os::unix::fs::symlink("../usr/lib/os-release", root.join("etc/os-release")).unwrap();
    write(root, "boot/vmlinuz-6.1.0-1-amd64", &bytes(1, 300_000));
    write(root, "boot/initrd.img-6.1.0-1-amd64", &bytes(2, 500_000));
    write(root, "boot/vmlinuz-5.10.0-9-amd64", &bytes(3, 1000));
    write(root, "boot/initrd.img-5.10.0-9-amd64", &bytes(4, 1000));
    if with_loader {
        write(
            root,
            "usr/lib/systemd/boot/efi/systemd-bootx64.efi",
            &bytes(5, 90_000),
        );
    }
    write(
        root,
        "usr/share/zoneinfo/America/Los_Angeles",
        b"TZif2 fake",
    );
    write(root, "usr/share/zoneinfo/Europe/Berlin", b"TZif2 fake");
    write(
        root,
        "etc/fstab",
        format!(
            "# /etc/fstab of the reference machine\n\
             UUID=aaaaaaaa-0000-0000-0000-000000000000 / ext4 errors=remount-ro 0 1\n\
             UUID={FOREIGN_UUID} /srv ext4 defaults 0 2\n\
             proc /proc proc defaults 0 0\n"
        )
        .as_bytes(),
    );
    write(root, "etc/hostname", b"reference\n");
    write(
        root,
        "etc/hosts",
        b"127.0.0.1\tlocalhost\n127.0.1.1\treference\n::1\tlocalhost ip6-localhost\n",
    );
    write(
        root,
        "etc/machine-id",
        format!("{OLD_MACHINE_ID}\n").as_bytes(),
    );
    write(
        root,
        "var/lib/dbus/machine-id",
        format!("{OLD_MACHINE_ID}\n").as_bytes(),
    );
}

fn capture(d: &Path, src: &str, image: &str) {
    let (code, _, err) = tsforge(d, &["capture", src, image, "--name", "OS"]);
    assert_eq!(code, 0, "{err}");
}

/// `mcopy` a file out of the FAT partition at `offset` of `disk`.
fn mcopy(disk: &Path, offset: u64, path: &str) -> Vec<u8> {
    let mcopy = tool("mcopy").expect("mtools");
    let o = Command::new(mcopy)
        .env("MTOOLS_SKIP_CHECK", "1")
        .args([
            "-n",
            "-i",
            &format!("{}@@{offset}", disk.display()),
            &format!("::/{path}"),
            "-",
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "mcopy {path}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

fn blkid_uuid(dev: &Path) -> String {
    must(
        "blkid",
        &["-s", "UUID", "-o", "value", dev.to_str().unwrap()],
    )
}

fn run_log(d: &Path, args: &[&str]) -> (i32, String) {
    let (code, _, err) = tsforge(d, args);
    let log = std::fs::read_to_string(d.join("state/smsts.log")).unwrap_or_default();
    (code, format!("{err}\n{log}"))
}

/// The whole flow on a disk that held data before: partitioned, Debian applied onto ext4 and
/// made bootable with its own systemd-boot, then configured.
#[test]
fn linux_is_made_bootable_and_configured_on_a_used_disk() {
    if !needs_root("os_boot::linux_is_made_bootable_and_configured_on_a_used_disk") {
        return;
    }
    let (Some(_), Some(_), Some(_)) = (tool("mcopy"), tool("e2fsck"), tool("blkid")) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    fake_debian(&d.join("src"), true);
    capture(d, "src", "debian.tsimg");
    std::fs::copy(
        repo("tests/fixtures/sequences/deploy-linux.yaml"),
        d.join("ts.yaml"),
    )
    .unwrap();
    let disk = d.join("disk.img");
    used_disk::random_disk(&disk, 400 << 20);
    let (code, log) = run_log(
        d,
        &[
            "run",
            "ts.yaml",
            "--state-dir",
            "state",
            "--disk",
            "0=disk.img",
        ],
    );
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("is bootable: Debian GNU/Linux 12 (bookworm)"),
        "{log}"
    );
    assert!(
        log.contains("No firmware boot entry written: not running on the target machine"),
        "{log}"
    );

    let table = layout::read_table(&Disk::open(&disk, false).unwrap())
        .unwrap()
        .unwrap();
    let esp = &table.partitions[0];
    assert_eq!(esp.kind, "EFI system");
    if let Some(r) = used_disk::fsck_fat(&disk, esp.start, esp.len) {
        r.unwrap();
    }
    // Firmware with no boot entry starts EFI/BOOT/BOOTX64.EFI: the image's own systemd-boot.
    let sd = std::fs::read(d.join("src/usr/lib/systemd/boot/efi/systemd-bootx64.efi")).unwrap();
    assert_eq!(mcopy(&disk, esp.start, "EFI/BOOT/BOOTX64.EFI"), sd);
    assert_eq!(
        mcopy(&disk, esp.start, "EFI/systemd/systemd-bootx64.efi"),
        sd
    );
    // The newest kernel (version-sorted) and its initrd.
    assert_eq!(
        mcopy(&disk, esp.start, "debian/6.1.0-1-amd64/linux"),
        std::fs::read(d.join("src/boot/vmlinuz-6.1.0-1-amd64")).unwrap()
    );
    assert_eq!(
        mcopy(&disk, esp.start, "debian/6.1.0-1-amd64/initrd"),
        std::fs::read(d.join("src/boot/initrd.img-6.1.0-1-amd64")).unwrap()
    );
    let conf = String::from_utf8(mcopy(&disk, esp.start, "loader/loader.conf")).unwrap();
    assert!(
        conf.contains("default debian-6.1.0-1-amd64.conf\n"),
        "{conf}"
    );

    let mut lo = Loop::attach(&disk, "os_boot").expect("root has loop devices");
    lo.add_partitions();
    let (esp_dev, root_dev) = (lo.part(1), lo.part(2));
    let root_uuid = blkid_uuid(&root_dev);
    let esp_uuid = blkid_uuid(&esp_dev);
    // A Type #1 entry (Boot Loader Specification) booting the root file system by its UUID.
    let entry = String::from_utf8(mcopy(
        &disk,
        esp.start,
        "loader/entries/debian-6.1.0-1-amd64.conf",
    ))
    .unwrap();
    assert_eq!(
        entry,
        format!(
            "title Debian GNU/Linux 12 (bookworm)\nversion 6.1.0-1-amd64\n\
             linux /debian/6.1.0-1-amd64/linux\ninitrd /debian/6.1.0-1-amd64/initrd\n\
             options root=UUID={root_uuid} rw console=ttyS0,115200 console=tty0\n"
        )
    );
    let fsck = Command::new(tool("e2fsck").unwrap())
        .args(["-fn", root_dev.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "e2fsck -fn: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    let mnt = d.join("mnt");
    lo.mount_ro(&root_dev, &mnt);
    let read = |p: &str| std::fs::read_to_string(mnt.join(p)).unwrap();
    let fstab = read("etc/fstab");
    assert!(
        fstab.contains(&format!("UUID={root_uuid} / ext4 errors=remount-ro 0 1\n")),
        "{fstab}"
    );
    assert!(
        fstab.contains(&format!("UUID={esp_uuid} /boot/efi vfat umask=0077 0 1\n")),
        "{fstab}"
    );
    assert!(!fstab.contains("aaaaaaaa-0000"), "{fstab}");
    assert!(
        fstab.contains(&format!("\n# UUID={FOREIGN_UUID} /srv ext4 defaults 0 2\n")),
        "the foreign disk's line is commented out: {fstab}"
    );
    assert!(
        fstab.contains("\nproc /proc proc defaults 0 0\n"),
        "{fstab}"
    );
    assert!(
        log.contains(&format!("commented out \"UUID={FOREIGN_UUID}")),
        "{log}"
    );
    assert!(mnt.join("boot/efi").is_dir());
    // Apply Windows Settings: ComputerName -> host name, TimeZone (a Windows name) -> IANA.
    assert_eq!(read("etc/hostname"), "web01\n");
    let hosts = read("etc/hosts");
    assert!(
        hosts.contains("\n127.0.1.1\tweb01\n") && !hosts.contains("reference"),
        "{hosts}"
    );
    let id = read("etc/machine-id");
    let id = id.trim_end();
    assert!(
        id.len() == 32 && id.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
        "{id:?}"
    );
    assert_ne!(id, OLD_MACHINE_ID);
    assert!(!mnt.join("var/lib/dbus/machine-id").exists());
    assert_eq!(
        std::fs::read_link(mnt.join("etc/localtime")).unwrap(),
        PathBuf::from("/usr/share/zoneinfo/America/Los_Angeles")
    );
    assert_eq!(read("etc/timezone"), "America/Los_Angeles\n");
    assert!(
        log.contains("Windows time zone \"Pacific Standard Time\""),
        "{log}"
    );
    lo.release();
}

/// A GPT disk (ESP + a partition formatted `fs`) or an MBR disk, with `tree` applied by Apply
/// Operating System Image: the run's exit code and log.
fn apply_onto(d: &Path, tree: &str, style: &str, fs: &str) -> (i32, String) {
    let esp = if style == "GPT" {
        "      Partitions0Type: EFI\n      Partitions0FileSystem: FAT32\n      \
         Partitions0Size: \"64\"\n      Partitions0SizeUnits: MB\n"
    } else {
        "      Partitions0Type: Primary\n      Partitions0FileSystem: FAT32\n      \
         Partitions0Size: \"64\"\n      Partitions0SizeUnits: MB\n"
    };
    std::fs::write(
        d.join("ts.yaml"),
        format!(
            "steps:\n  - name: Partition\n    type: partition-disk\n    properties:\n      \
             DiskIndex: \"0\"\n      PartitionStyle: {style}\n{esp}      Partitions1Type: \
             Primary\n      Partitions1FileSystem: {fs}\n      Partitions1Size: \"100\"\n      \
             Partitions1SizeUnits: \"%\"\n      Partitions1VolumeVariable: OSDisk\n      \
             Partitions: \"2\"\n  - name: Apply\n    type: apply-image\n    properties:\n      \
             ImagePath: {tree}\n      DestinationVariable: OSDisk\n"
        ),
    )
    .unwrap();
    used_disk::random_disk(&d.join("disk.img"), 200 << 20);
    let r = run_log(
        d,
        &[
            "run",
            "ts.yaml",
            "--state-dir",
            "state",
            "--disk",
            "0=disk.img",
        ],
    );
    std::fs::remove_dir_all(d.join("state")).unwrap();
    std::fs::remove_file(d.join("disk.img")).unwrap();
    r
}

/// Each way making the volume bootable fails says why and what to do; an image with no OS is
/// applied and left as it is, with a warning.
#[test]
fn make_bootable_errors_name_the_problem() {
    if !needs_root("os_boot::make_bootable_errors_name_the_problem") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    fake_debian(&d.join("debian"), true);
    capture(d, "debian", "debian.tsimg");
    fake_debian(&d.join("noloader"), false);
    capture(d, "noloader", "noloader.tsimg");
    // A Linux tree on FAT (no links there): refused before anything is written.
    let fatlinux = d.join("fatlinux");
    write(
        &fatlinux,
        "etc/os-release",
        b"ID=debian\nPRETTY_NAME=\"Debian\"\n",
    );
    capture(d, "fatlinux", "fatlinux.tsimg");
    write(&d.join("win"), "Windows/System32/config/SYSTEM", b"regf");
    capture(d, "win", "win.tsimg");
    write(&d.join("data"), "Windows/System32/notes.txt", b"no OS here");
    capture(d, "data", "data.tsimg");

    let (code, log) = apply_onto(d, "noloader.tsimg", "GPT", "ext4");
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("no UEFI boot loader")
            && log.contains("Debian package systemd-boot")
            && log.contains("grub-efi-amd64-bin"),
        "{log}"
    );
    let (code, log) = apply_onto(d, "debian.tsimg", "MBR", "ext4");
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("has an MBR partition table") && log.contains("only with UEFI"),
        "{log}"
    );
    let (code, log) = apply_onto(d, "win.tsimg", "GPT", "FAT32");
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("holds Windows")
            && log.contains("needs bcdboot")
            && log.contains("Windows PE medium"),
        "{log}"
    );
    let (code, log) = apply_onto(d, "fatlinux.tsimg", "GPT", "FAT32");
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("holds Debian on a FAT file system")
            && log.contains("format the OS partition ext4"),
        "{log}"
    );
    let (code, log) = apply_onto(d, "data.tsimg", "GPT", "FAT32");
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("holds no operating system tsforge recognises (looked for etc/os-release")
            && log.contains("it was applied but not made bootable"),
        "{log}"
    );
}

/// The exported Apply Windows Settings step on an OS in a folder: `ComputerName` (here from
/// `%MachineName%`), `TimeZone` mapped through CLDR, the administrator password never logged;
/// a Windows OS gets an answer file; no OS and an unknown time zone fail naming the problem.
#[test]
fn apply_windows_settings_configures_a_linux_folder() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    fake_debian(&d.join("os"), true);
    let fixture = repo("tests/fixtures/sequences/apply-windows-settings.xml");
    let run = |target: &str, extra: &[&str]| {
        let _ = std::fs::remove_dir_all(d.join("state"));
        let mut args = vec![
            "run",
            fixture.as_str(),
            "--state-dir",
            "state",
            "--var",
            "MachineName=lab-07",
        ];
        let t = format!("OSDTargetSystemDrive={target}");
        args.extend(["--var", &t]);
        args.extend(extra);
        run_log(d, &args)
    };
    let (code, log) = run("os", &[]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        std::fs::read_to_string(d.join("os/etc/hostname")).unwrap(),
        "lab-07\n"
    );
    assert_eq!(
        std::fs::read_link(d.join("os/etc/localtime")).unwrap(),
        PathBuf::from("/usr/share/zoneinfo/Europe/Berlin")
    );
    assert!(!log.contains("Adm1n!Lab"), "{log}");
    assert!(
        log.contains(
            "Not applied to a Linux OS (Windows Setup settings): RegisteredUserName, \
                      RegisteredOrgName, AdminPassword"
        ),
        "{log}"
    );
    // OSDComputerName set by the run overrides the property (action variable).
    let (code, log) = run("os", &["--var", "OSDComputerName=web-09"]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        std::fs::read_to_string(d.join("os/etc/hostname")).unwrap(),
        "web-09\n"
    );
    let (code, log) = run("os", &["--var", "OSDTimeZone=Mars Standard Time"]);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("time zone \"Mars Standard Time\" is neither a Windows time-zone name"),
        "{log}"
    );
    write(&d.join("win"), "Windows/System32/config/SYSTEM", b"regf");
    // Windows: the settings go into Windows/Panther/unattend.xml (tests/unattend.rs checks it
    // element by element).
    let (code, log) = run("win", &[]);
    assert_eq!(code, 0, "{log}");
    assert!(
        d.join("win/Windows/Panther/unattend.xml").is_file(),
        "{log}"
    );
    assert!(!log.contains("Adm1n!Lab"), "{log}");
    std::fs::create_dir_all(d.join("empty")).unwrap();
    let (code, log) = run("empty", &[]);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("holds no operating system tsforge recognises (looked for etc/os-release"),
        "{log}"
    );
}

/// THE REAL PROOF: the Debian 12 reference system (scripts/reference-rootfs.sh: kernel 6.1,
/// systemd-boot, built by mmdebstrap) copied onto an ext4 partition next to an ESP, made
/// bootable by tsforge, then booted in QEMU with OVMF (UEFI, TCG) from that disk alone until
/// its systemd offers a login on the serial console (about 40 s here: 700 MB copied, a TCG
/// boot), so it is not ignored.
#[test]
fn reference_debian_boots_from_its_own_disk() {
    if !needs_root("os_boot::reference_debian_boots_from_its_own_disk") {
        return;
    }
    let path = must("bash", &[&repo("scripts/reference-rootfs.sh"), "--path"]);
    let reference = Path::new(&path);
    if !reference.join("etc/os-release").exists() {
        assert!(
            !crate::common::required(),
            "the reference system is missing: bash scripts/reference-rootfs.sh"
        );
        note("SKIP reference_debian_boots_from_its_own_disk: no reference system");
        return;
    }
    let (Some(_), Some(_)) = (tool("qemu-system-x86_64"), tool("mkfs.ext4")) else {
        return;
    };
    if !Path::new(tsforge_builder::qemu::OVMF_CODE).is_file() {
        assert!(
            !crate::common::required(),
            "OVMF is missing (apt-get install ovmf)"
        );
        note("SKIP reference_debian_boots_from_its_own_disk: no OVMF");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let disk = d.join("disk.img");
    // ESP + ext4 root, written by tsforge's own partitioning; the tree copied with cp -a.
    std::fs::write(
        d.join("part.yaml"),
        "steps:\n  - name: Partition\n    type: partition-disk\n    properties:\n      \
         DiskIndex: \"0\"\n      PartitionStyle: GPT\n      Partitions0Type: EFI\n      \
         Partitions0FileSystem: FAT32\n      Partitions0Size: \"200\"\n      \
         Partitions0SizeUnits: MB\n      Partitions1Type: Primary\n      \
         Partitions1FileSystem: ext4\n      Partitions1Size: \"100\"\n      \
         Partitions1SizeUnits: \"%\"\n      Partitions: \"2\"\n",
    )
    .unwrap();
    used_disk::random_ends_disk(&disk, 2 << 30);
    let (code, log) = run_log(
        d,
        &[
            "run",
            "part.yaml",
            "--state-dir",
            "state",
            "--disk",
            "0=disk.img",
        ],
    );
    assert_eq!(code, 0, "{log}");
    {
        let mut lo = Loop::attach(&disk, "os_boot").expect("loop device");
        lo.add_partitions();
        let mnt = d.join("root");
        std::fs::create_dir_all(&mnt).unwrap();
        must(
            "mount",
            &[lo.part(2).to_str().unwrap(), mnt.to_str().unwrap()],
        );
        let cp = Command::new("cp")
            .args(["-a", &format!("{path}/."), mnt.to_str().unwrap()])
            .status()
            .unwrap();
        let _ = Command::new("umount").arg(&mnt).status();
        assert!(cp.success(), "cp -a of the reference system");
    }
    let mut report = tsforge_runtime::osconfig::Report::default();
    let opts = tsforge_runtime::osconfig::BootOptions {
        kernel_options: vec!["console=ttyS0,115200".into()],
        firmware_entry: false,
    };
    let out = tsforge_runtime::osconfig::make_bootable(&disk, 2, &opts, &mut report);
    let lines: Vec<String> = report.lines.iter().map(|(_, l)| l.clone()).collect();
    let out = out.unwrap_or_else(|e| panic!("{e:#}\n{}", lines.join("\n")));
    assert!(
        matches!(out, tsforge_runtime::osconfig::Outcome::Linux { .. }),
        "{out:?}"
    );
    let mut cfg = tsforge_builder::qemu::MachineConfig::new(
        tsforge_builder::qemu::Firmware::Uefi,
        tsforge_builder::qemu::BootFrom::Disk(disk.clone()),
        d.join("vm"),
    );
    cfg.memory_mib = 1024;
    let mut m = tsforge_builder::qemu::Machine::start(&cfg).unwrap();
    let r = m.expect("login:", Duration::from_secs(600));
    let console = m.console();
    m.kill();
    r.unwrap_or_else(|e| panic!("{e:#}\n{console}"));
    assert!(console.contains("Debian GNU/Linux 12"), "{console}");
    let tail: Vec<&str> = console.lines().rev().take(6).collect();
    note(&format!(
        "reference Debian booted from its own disk in {:?}; console ends:\n{}",
        m.started().elapsed(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    ));
    std::fs::remove_file(&disk).unwrap();
}

/// The README's sample OS (`scripts/sample-os.sh`) deployed by the README's sequence
/// (`examples/lab-deploy.yaml`) onto a random-filled disk, as the medium does before it
/// restarts: tsforge detects the tree as Linux, makes it bootable from its own disk (its own
/// systemd-boot as the fallback loader, its kernel and initrd, a Type #1 entry by the root's
/// UUID), names it, and hands the run over through an `/etc/inittab` line (the sample OS has
/// busybox init, no systemd). The initramfs holds what reaches an ext4 root on a virtio disk.
/// Checked with sgdisk -v, fsck.fat -n, e2fsck -fn and a read-only mount.
///
/// Rules: Apply Operating System Image and Setup Windows and ConfigMgr,
/// <https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/task-sequence-steps#BKMK_ApplyOperatingSystemImage>,
/// <https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/task-sequence-steps#BKMK_SetupWindowsandConfigMgr>;
/// busybox init's inittab (the id field names the tty, empty = the console),
/// <https://git.busybox.net/busybox/tree/examples/inittab>.
#[test]
fn sample_os_is_detected_made_bootable_and_handed_over() {
    if !needs_root("os_boot::sample_os_is_detected_made_bootable_and_handed_over") {
        return;
    }
    let tools = [
        "sgdisk", "fsck.fat", "e2fsck", "cpio", "busybox", "modprobe",
    ];
    if let Some(missing) = tools.iter().find(|t| tool(t).is_none()) {
        assert!(!crate::common::required(), "{missing} is missing");
        note(&format!("SKIP sample OS: {missing} is missing"));
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let out = Command::new("bash")
        .arg(repo("scripts/sample-os.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/sample-os.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let inittab = std::fs::read(tree.join("etc/inittab")).unwrap();
    let kernel = std::fs::read_dir(tree.join("boot"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find_map(|n| n.strip_prefix("vmlinuz-").map(str::to_string))
        .expect("a kernel in the sample OS");

    // The initramfs: /init, busybox, the virtio disk and ext4 modules.
    let initrd = std::fs::read(tree.join(format!("boot/initrd.img-{kernel}"))).unwrap();
    let listed = Command::new("sh")
        .args(["-c", "gzip -dc \"$1\" | cpio -t --quiet", "sh"])
        .arg(tree.join(format!("boot/initrd.img-{kernel}")))
        .output()
        .unwrap();
    assert!(listed.status.success(), "gzip -dc | cpio -t");
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    for f in [
        "init",
        "bin/busybox",
        "lib/modules/virtio_blk.ko",
        "lib/modules/virtio_pci.ko",
        "lib/modules/ext4.ko",
        "lib/modules/jbd2.ko",
    ] {
        assert!(
            listed.lines().any(|l| l == f),
            "{f} in the initramfs:\n{listed}"
        );
    }

    // Capture, package, and the README's sequence on a used disk.
    capture(d, tree.to_str().unwrap(), "sample.tsimg");
    let (code, _, err) = tsforge(
        d,
        &[
            "package",
            "build",
            "sample.tsimg",
            "--id",
            "LAB00001",
            "--out",
            "dp",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let disk = d.join("disk.img");
    used_disk::random_disk(&disk, 400 << 20);
    let (code, log) = run_log(
        d,
        &[
            "run",
            &repo("examples/lab-deploy.yaml"),
            "--state-dir",
            "state",
            "--disk",
            "0=disk.img",
            "--content",
            "dp",
            "--var",
            "OSDComputerName=LAB-PC01",
            "--no-reboot",
        ],
    );
    assert_eq!(code, 3, "the hand-over restarts into the OS: {log}");
    assert!(log.contains("is bootable: tsforge sample OS 1"), "{log}");

    let sgdisk = Command::new(tool("sgdisk").unwrap())
        .arg("-v")
        .arg(&disk)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&sgdisk.stdout).contains("No problems found"),
        "sgdisk -v: {}",
        String::from_utf8_lossy(&sgdisk.stdout)
    );
    let table = layout::read_table(&Disk::open(&disk, false).unwrap())
        .unwrap()
        .unwrap();
    let esp = &table.partitions[0];
    used_disk::fsck_fat(&disk, esp.start, esp.len)
        .expect("fsck.fat")
        .unwrap();
    let sd = std::fs::read(tree.join("usr/lib/systemd/boot/efi/systemd-bootx64.efi")).unwrap();
    assert_eq!(mcopy(&disk, esp.start, "EFI/BOOT/BOOTX64.EFI"), sd);
    assert_eq!(
        mcopy(&disk, esp.start, &format!("tsforge-sample/{kernel}/linux")),
        std::fs::read(tree.join(format!("boot/vmlinuz-{kernel}"))).unwrap()
    );
    assert_eq!(
        mcopy(&disk, esp.start, &format!("tsforge-sample/{kernel}/initrd")),
        initrd
    );

    let mut lo = Loop::attach(&disk, "os_boot sample").expect("root has loop devices");
    lo.add_partitions();
    let root_dev = lo.part(2);
    let root_uuid = blkid_uuid(&root_dev);
    let entry = String::from_utf8(mcopy(
        &disk,
        esp.start,
        &format!("loader/entries/tsforge-sample-{kernel}.conf"),
    ))
    .unwrap();
    assert!(
        entry.contains(&format!("options root=UUID={root_uuid} rw ")),
        "{entry}"
    );
    let fsck = Command::new(tool("e2fsck").unwrap())
        .args(["-fn", root_dev.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "e2fsck -fn: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    let mnt = d.join("mnt");
    lo.mount_ro(&root_dev, &mnt);
    assert_eq!(
        std::fs::read_to_string(mnt.join("etc/hostname")).unwrap(),
        "LAB-PC01\n"
    );
    let mut expected = inittab.clone();
    expected.extend_from_slice(b"::once:/var/lib/tsforge/handover/start\n");
    assert_eq!(
        String::from_utf8_lossy(&std::fs::read(mnt.join("etc/inittab")).unwrap()),
        String::from_utf8_lossy(&expected),
        "the hand-over's line appended to the sample OS's inittab"
    );
    assert!(mnt.join("var/lib/tsforge/handover/start").is_file());
    assert!(mnt.join("var/lib/tsforge/handover/tsforge").is_file());
    assert!(mnt.join("_SMSTaskSequence/state/state.json").is_file());
    assert!(!mnt.join("etc/systemd").exists(), "no systemd unit");
    lo.release();
}

/// The scripts of the README's first command parse (`bash -n`), and `sample-os.sh --path`
/// names its cached tree under the build folder without building anything.
#[test]
fn sample_os_scripts_parse_and_name_their_cache() {
    for s in ["scripts/sample-os.sh", "scripts/setup.sh"] {
        let o = Command::new("bash")
            .args(["-n", &repo(s)])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "bash -n {s}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let path = must("bash", &[&repo("scripts/sample-os.sh"), "--path"]);
    assert!(path.contains("/sample-os/tree-"), "{path}");
    let o = Command::new("bash")
        .args([&repo("scripts/sample-os.sh"), "--bogus"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unknown option --bogus"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
