//! A Windows volume made bootable: `bcdboot` copies the boot manager from the applied
//! `Windows` folder onto the system partition and writes the Boot Configuration Data (BCD) that
//! names it, as ConfigMgr's *Apply Operating System Image* does ("Copy Windows boot loaders
//! into the active partition; set the boot.ini or the Boot Configuration Database (BCD) to
//! reference the newly installed OS", Microsoft, *Task sequence steps*, Apply Operating System
//! Image: <https://learn.microsoft.com/intune/configmgr/osd/understand/task-sequence-steps#BKMK_ApplyOperatingSystemImage>).
//! Command line: Microsoft, *BCDBoot Command-Line Options*
//! (<https://learn.microsoft.com/windows-hardware/manufacture/desktop/bcdboot-command-line-options-techref-di>):
//! `bcdboot <source> /s <volume letter> /f UEFI|BIOS|ALL`.
//!
//! The BCD is a registry hive only `bcdboot`/`bcdedit` write; tsforge has no writer of its own,
//! so on the linux medium a Windows volume is refused with that reason.

use anyhow::Result;
use std::ffi::OsString;

/// The firmware the boot files are made for (`/f`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    Uefi,
    Bios,
}

/// `bcdboot`'s arguments: `<windows>` the applied `Windows` folder (`C:\Windows`),
/// `<system>` the system partition's drive letter (`S:`).
pub fn bcdboot_args(windows: &str, system: &str, firmware: Firmware) -> Vec<OsString> {
    vec![
        windows.into(),
        "/s".into(),
        system.into(),
        "/f".into(),
        match firmware {
            Firmware::Uefi => "UEFI",
            Firmware::Bios => "BIOS",
        }
        .into(),
    ]
}

/// `bcdboot`'s arguments on the target machine: only the applied `Windows` folder, so the boot
/// files go to "the system partition identified by the firmware" (Microsoft, *bcdboot*:
/// <https://learn.microsoft.com/windows-server/administration/windows-commands/bcdboot>, `/s`:
/// "The default is the system partition identified by the firmware"; `/f` is only taken with
/// `/s`).
pub fn bcdboot_firmware_default_args(windows: &str) -> Vec<OsString> {
    vec![windows.into()]
}

/// Run `bcdboot <windows>` on the target (Windows PE), the firmware's system partition
/// receiving the boot files; its output.
pub fn run_bcdboot_on_target(windows: &str) -> Result<String> {
    let out = crate::tools::run(
        crate::tools::Tool::Bcdboot,
        bcdboot_firmware_default_args(windows),
        &format!("making {windows} bootable"),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Run `bcdboot` through the tools table (Windows PE and Windows only).
pub fn run_bcdboot(windows: &str, system: &str, firmware: Firmware) -> Result<String> {
    let args = bcdboot_args(windows, system, firmware);
    let out = crate::tools::run(
        crate::tools::Tool::Bcdboot,
        &args,
        &format!("making {windows} bootable from {system}"),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Why a Windows volume cannot be made bootable from the linux medium.
pub fn refuse_on_linux(what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} holds Windows (Windows/System32/config/SYSTEM): making it bootable needs \
         bcdboot, which writes the Boot Configuration Data (BCD) that Windows' boot manager \
         reads; tsforge has no BCD writer on Linux. Deploy Windows from a Windows PE medium \
         (`tsforge build iso --template winpe …`), where this step runs bcdboot"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Microsoft, BCDBoot Command-Line Options:
    /// <https://learn.microsoft.com/windows-hardware/manufacture/desktop/bcdboot-command-line-options-techref-di>.
    #[test]
    fn bcdboot_command_line() {
        let a = bcdboot_args(r"C:\Windows", "S:", Firmware::Uefi);
        assert_eq!(a, [r"C:\Windows", "/s", "S:", "/f", "UEFI"]);
        let b = bcdboot_args(r"W:\Windows", "W:", Firmware::Bios);
        assert_eq!(b, [r"W:\Windows", "/s", "W:", "/f", "BIOS"]);
        let line = crate::tools::command_line(std::path::Path::new("bcdboot"), &a);
        assert_eq!(line, r"bcdboot C:\Windows /s S: /f UEFI");
    }
}
