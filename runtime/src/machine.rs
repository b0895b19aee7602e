//! Facts about the machine the runner is on, for the built-in variables: `_SMSTSClientGuid`
//! (made once per machine and kept), `_SMSTSInWinPE`, `_SMSTSMachineName` and the hardware
//! variables dynamic rules use (`_SMSTSMake`, `_SMSTSModel`, `_SMSTSSerialNumber`, `_SMSTSUUID`,
//! `_SMSTSAssetTag`, `_SMSTSMacAddresses`), read from `/sys/class/dmi/id` and
//! `/sys/class/net` on Linux. Facts that cannot be read are left unset, never guessed.

use std::path::PathBuf;

/// The machine-wide folder where the client GUID is kept: `TSFORGE_MACHINE_DIR`, else
/// `/var/lib/tsforge` (Unix) or `%ProgramData%\tsforge` (Windows).
pub fn machine_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TSFORGE_MACHINE_DIR") {
        return PathBuf::from(d);
    }
    if cfg!(windows) {
        let base = std::env::var_os("ProgramData").unwrap_or_else(|| "C:\\ProgramData".into());
        PathBuf::from(base).join("tsforge")
    } else {
        PathBuf::from("/var/lib/tsforge")
    }
}

/// The client GUID: read from the machine folder, or made and saved there (best effort: in a
/// read-only boot environment the run's state keeps it instead).
pub fn client_guid() -> String {
    let path = machine_dir().join("client-guid");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim();
        if uuid::Uuid::parse_str(s).is_ok() {
            return s.to_string();
        }
    }
    let guid = uuid::Uuid::new_v4().hyphenated().to_string().to_uppercase();
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::write(&path, format!("{guid}\n"));
    guid
}

/// Whether the runner is in a pre-OS boot environment: Windows PE (`MiniNT` marker: the system
/// drive is `X:` and `wpeutil.exe` exists), or tsforge's Linux boot environment, whose init
/// sets `TSFORGE_BOOT_ENV=1`.
pub fn in_boot_environment() -> bool {
    if std::env::var_os("TSFORGE_BOOT_ENV").is_some_and(|v| v == "1") {
        return true;
    }
    if cfg!(windows) {
        let x = std::env::var("SystemDrive")
            .map(|d| d.eq_ignore_ascii_case("X:"))
            .unwrap_or(false);
        return x && std::path::Path::new("X:\\Windows\\System32\\wpeutil.exe").exists();
    }
    false
}

pub fn machine_name() -> String {
    if let Ok(n) = std::env::var("COMPUTERNAME") {
        if !n.is_empty() {
            return n;
        }
    }
    for p in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        if let Ok(s) = std::fs::read_to_string(p) {
            let s = s.trim();
            if !s.is_empty() {
                return s.to_string();
            }
        }
    }
    std::env::var("HOSTNAME").unwrap_or_default()
}

/// Hardware variables that could be read, as (name, value).
pub fn hardware_vars() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let dmi = |f: &str| {
        std::fs::read_to_string(format!("/sys/class/dmi/id/{f}"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    for (var, file) in [
        ("_SMSTSMake", "sys_vendor"),
        ("_SMSTSModel", "product_name"),
        ("_SMSTSSerialNumber", "product_serial"),
        ("_SMSTSUUID", "product_uuid"),
        ("_SMSTSAssetTag", "chassis_asset_tag"),
    ] {
        if let Some(v) = dmi(file) {
            out.push((var.to_string(), v));
        }
    }
    if let Ok(rd) = std::fs::read_dir("/sys/class/net") {
        let mut macs: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name() != "lo")
            .filter_map(|e| std::fs::read_to_string(e.path().join("address")).ok())
            .map(|s| s.trim().to_uppercase())
            .filter(|s| !s.is_empty() && s != "00:00:00:00:00:00")
            .collect();
        macs.sort();
        macs.dedup();
        if !macs.is_empty() {
            out.push(("_SMSTSMacAddresses".into(), macs.join(",")));
        }
    }
    out
}
