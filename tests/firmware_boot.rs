//! *Restart Computer*'s target on the linux medium under UEFI: `BootNext` set with efibootmgr
//! before the restart. The real `tsforge run` with `TSFORGE_BOOT_ENV=1` (the boot
//! environment) runs tests/fixtures/sequences/restart-targets.xml with a fake `efibootmgr` on
//! `PATH` that records its command lines, and a fake `/` (`TSFORGE_FIRMWARE_ROOT`) holding
//! `/sys/firmware/efi/efivars`, `/proc/mounts` and `/sys/class/block` for the medium's
//! partition. `--no-reboot` keeps the machine running (exit code 3, the restart requested).
//!
//! Microsoft, *Task sequence steps*, Restart Computer
//! (<https://learn.microsoft.com/intune/configmgr/osd/understand/task-sequence-steps#BKMK_RestartComputer>):
//! "The boot image assigned to this task sequence" or "The currently installed default
//! operating system" (`SMSRebootTarget` `HD`). efibootmgr(8): `--bootnext XXXX` "Set BootNext
//! to XXXX (hex)"; `--create` "Create new variable bootnum and add to bootorder" with
//! `--disk`, `--part`, `--label`, `--loader`; `--bootnum XXXX --delete-bootnum`.

use crate::common::{repo, Env};
use std::path::{Path, PathBuf};

/// The fake efibootmgr: appends its arguments to `$FAKE_EFI_LOG`; `--verbose` lists the
/// entries (Boot0005 is an earlier medium entry on the same partition), `--create` lists them
/// with the new entry reusing the freed number 0005; `FAKE_EFI_FAIL=1`: fails as efibootmgr
/// does when the variables cannot be written.
const FAKE: &str = r#"#!/bin/sh
echo "$*" >> "$FAKE_EFI_LOG"
if [ "$FAKE_EFI_FAIL" = 1 ]; then
    echo "Could not set BootNext: Read-only file system" >&2
    exit 5
fi
case "$1" in
--verbose)
    printf 'BootCurrent: 0005\nTimeout: 0 seconds\nBootOrder: 0004,0005,0001\n'
    printf 'Boot0001* UEFI QEMU QEMU HARDDISK \tPciRoot(0x0)/Pci(0x4,0x0)/Scsi(0,0)N.....YM....R,Y.\n'
    printf 'Boot0004* Debian GNU/Linux 12 (bookworm)\tHD(1,GPT,6ee0f7ab-5b83-4a59-a4ee-0a0d0a1e1c67,0x800,0x100000)/File(\\EFI\\systemd\\systemd-bootx64.efi)\n'
    printf 'Boot0005* tsforge boot medium\tHD(1,MBR,0x1a2b3c4d,0x800,0x3f800)/File(\\EFI\\BOOT\\BOOTX64.EFI)\n'
    ;;
--create)
    printf 'BootCurrent: 0005\nTimeout: 0 seconds\nBootOrder: 0005,0004,0001\n'
    printf 'Boot0001* UEFI QEMU QEMU HARDDISK \nBoot0004* Debian GNU/Linux 12 (bookworm)\nBoot0005* tsforge boot medium\n'
    ;;
esac
"#;

struct Firmware {
    e: Env,
    bin: PathBuf,
    root: PathBuf,
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

impl Firmware {
    /// A UEFI machine with efivarfs, booted from partition 1 of the USB disk sdb (mounted at
    /// /medium), 0x3f800 sectors from sector 0x800.
    fn new() -> Firmware {
        let e = Env::new();
        let bin = e.path("fakebin");
        write(&bin.join("efibootmgr"), FAKE);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            bin.join("efibootmgr"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let root = e.path("root");
        write(
            &root.join("sys/firmware/efi/efivars/BootOrder-8be4df61-93ca-11d2-aa0d-00e098032b8c"),
            "",
        );
        write(
            &root.join("proc/mounts"),
            "proc /proc proc rw 0 0\n/dev/sdb1 /medium vfat ro,relatime 0 0\n/dev/sr0 /cdrom iso9660 ro 0 0\n",
        );
        let dev = root.join("sys/devices/pci0000:00/usb1/1-1/host2/block/sdb");
        write(&dev.join("sdb1/partition"), "1\n");
        write(&dev.join("sdb1/start"), "2048\n");
        write(&dev.join("sdb1/size"), "260096\n");
        write(&dev.join("queue/logical_block_size"), "512\n");
        std::fs::create_dir_all(root.join("sys/class/block")).unwrap();
        std::os::unix::fs::symlink(
            "../../devices/pci0000:00/usb1/1-1/host2/block/sdb/sdb1",
            root.join("sys/class/block/sdb1"),
        )
        .unwrap();
        Firmware { e, bin, root }
    }

    /// Runs the fixture to `to` (`HD` or `WinPE`) in the boot environment: (exit code, the
    /// efibootmgr command lines, the log's Reboot lines).
    fn restart(
        &self,
        to: &str,
        extra_env: &[(&str, &str)],
        vars: &[&str],
    ) -> (i32, Vec<String>, String) {
        let calls = self.e.path("efibootmgr.calls");
        let _ = std::fs::remove_file(&calls);
        let _ = std::fs::remove_dir_all(self.e.path("state"));
        let seq = repo("tests/fixtures/sequences/restart-targets.xml");
        let var = format!("RestartTo={to}");
        let mut args = vec![
            "run",
            seq.as_str(),
            "--state-dir",
            "state",
            "--no-reboot",
            "--var",
            &var,
        ];
        for v in vars {
            args.extend(["--var", v]);
        }
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = self.e.cmd(&args);
        cmd.env("TSFORGE_BOOT_ENV", "1")
            .env("TSFORGE_FIRMWARE_ROOT", &self.root)
            .env("FAKE_EFI_LOG", &calls)
            .env("PATH", path);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let log = std::fs::read_to_string(self.e.path("state/smsts.log")).unwrap_or_default();
        let reboot: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("BootNext") || l.contains("boot order"))
            .collect();
        let calls = std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        let code = out.status.code().unwrap_or(-1);
        assert_eq!(
            code,
            3,
            "the restart is requested whatever happens to BootNext: {}{}\n{log}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (code, calls, reboot.join("\n"))
    }
}

#[test]
fn restart_to_hd_sets_bootnext_to_the_deployed_os_entry() {
    let f = Firmware::new();
    // The entry Apply Operating System Image wrote (its number in _TSForgeBootEntry).
    let (_, calls, log) = f.restart("HD", &[], &["_TSForgeBootEntry=0004"]);
    assert_eq!(calls, vec!["--bootnext 0004"]);
    assert!(
        log.contains("BootNext set to Boot0004 (the installed operating system (HD))"),
        "{log}"
    );

    // No entry written by this run: the firmware's order is left alone.
    let (_, calls, log) = f.restart("HD", &[], &[]);
    assert!(calls.is_empty(), "{calls:?}");
    assert!(
        log.contains("this run wrote no firmware boot entry for a deployed OS (_TSForgeBootEntry is not set); the firmware's boot order decides"),
        "{log}"
    );
}

#[test]
fn restart_to_the_boot_image_sets_bootnext_to_the_medium() {
    let f = Firmware::new();
    let (_, calls, log) = f.restart("WinPE", &[], &["_TSForgeMedium=/medium"]);
    assert_eq!(
        calls,
        vec![
            "--verbose",
            // The earlier entry for the same partition is replaced, not piled up.
            "--bootnum 0005 --delete-bootnum",
            "--create --disk /dev/sdb --part 1 --label tsforge boot medium --loader \\EFI\\BOOT\\BOOTX64.EFI",
            "--bootnext 0005",
        ]
    );
    assert!(
        log.contains("BootNext set to Boot0005 (the boot medium)"),
        "{log}"
    );

    // An ISO disc and a PXE boot: no entry, the firmware's order decides.
    let (_, calls, log) = f.restart("WinPE", &[], &["_TSForgeMedium=/cdrom"]);
    assert!(calls.is_empty(), "{calls:?}");
    assert!(log.contains("ISO 9660"), "{log}");
    let (_, calls, log) = f.restart("WinPE", &[], &["_TSForgeMedium=/pxe"]);
    assert!(calls.is_empty(), "{calls:?}");
    assert!(log.contains("PXE"), "{log}");
}

#[test]
fn efibootmgr_failing_or_missing_is_a_warning_and_the_restart_happens() {
    let f = Firmware::new();
    let (_, calls, log) = f.restart("HD", &[("FAKE_EFI_FAIL", "1")], &["_TSForgeBootEntry=0004"]);
    assert_eq!(calls, vec!["--bootnext 0004"]);
    assert!(
        log.contains("Could not set BootNext: Read-only file system"),
        "{log}"
    );
    assert!(log.contains("the firmware's boot order decides"), "{log}");
    let warning = tsforge_runtime::log::cmtrace::parse(
        &std::fs::read_to_string(f.e.path("state/smsts.log")).unwrap(),
    )
    .unwrap()
    .into_iter()
    .find(|x| x.message.contains("Read-only file system"))
    .unwrap();
    assert_eq!(warning.level, 2, "a warning: {warning:?}");

    // No efibootmgr: PATH holds only the (now empty) fake folder; tsforge also looks in
    // /usr/sbin and /sbin, where Debian does not put it (/usr/bin/efibootmgr).
    std::fs::remove_file(f.bin.join("efibootmgr")).unwrap();
    let log = f.restart_with_path("HD");
    assert!(
        log.contains(
            "BootNext not set for the installed operating system (HD): efibootmgr is not installed"
        ),
        "{log}"
    );
}

#[test]
fn bootnext_is_left_alone_off_the_target_and_without_uefi() {
    let f = Firmware::new();
    // Not in the boot environment: never touched.
    let calls = f.e.path("efibootmgr.calls");
    let seq = repo("tests/fixtures/sequences/restart-targets.xml");
    let path = format!(
        "{}:{}",
        f.bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out =
        f.e.cmd(&[
            "run",
            &seq,
            "--state-dir",
            "off",
            "--no-reboot",
            "--var",
            "RestartTo=HD",
            "--var",
            "_TSForgeBootEntry=0004",
        ])
        .env("TSFORGE_FIRMWARE_ROOT", &f.root)
        .env("FAKE_EFI_LOG", &calls)
        .env("PATH", path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(!calls.exists(), "efibootmgr ran off the target");
    let log = std::fs::read_to_string(f.e.path("off/smsts.log")).unwrap();
    assert!(
        log.contains(
            "BootNext not set for the installed operating system (HD): not in the boot environment"
        ),
        "{log}"
    );

    // BIOS (no /sys/firmware/efi), then UEFI without efivarfs mounted.
    std::fs::remove_dir_all(f.root.join("sys/firmware/efi/efivars")).unwrap();
    let (_, calls, log) = f.restart("HD", &[], &["_TSForgeBootEntry=0004"]);
    assert!(calls.is_empty(), "{calls:?}");
    assert!(log.contains("efivarfs is not mounted"), "{log}");
    std::fs::remove_dir_all(f.root.join("sys/firmware")).unwrap();
    let (_, calls, log) = f.restart("WinPE", &[], &["_TSForgeMedium=/medium"]);
    assert!(calls.is_empty(), "{calls:?}");
    assert!(log.contains("did not start with UEFI"), "{log}");
}

impl Firmware {
    /// [`Firmware::restart`] to `HD` with a known entry and `PATH` holding only the (now
    /// empty) fake folder.
    fn restart_with_path(&self, to: &str) -> String {
        let _ = std::fs::remove_dir_all(self.e.path("state"));
        let seq = repo("tests/fixtures/sequences/restart-targets.xml");
        let var = format!("RestartTo={to}");
        let out = self
            .e
            .cmd(&[
                "run",
                &seq,
                "--state-dir",
                "state",
                "--no-reboot",
                "--var",
                &var,
                "--var",
                "_TSForgeBootEntry=0004",
            ])
            .env("TSFORGE_BOOT_ENV", "1")
            .env("TSFORGE_FIRMWARE_ROOT", &self.root)
            .env("PATH", &self.bin)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "the restart is requested");
        std::fs::read_to_string(self.e.path("state/smsts.log")).unwrap_or_default()
    }
}
