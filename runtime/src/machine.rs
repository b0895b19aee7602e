//! Facts about the machine the runner is on, for the built-in variables: `_SMSTSClientGuid`
//! (made once per machine and kept), `_SMSTSInWinPE`, `_SMSTSMachineName` and the hardware
//! variables *Set Dynamic Variables* gathers (`_SMSTSMake`, `_SMSTSModel`, `_SMSTSSerialNumber`,
//! `_SMSTSUUID`, `_SMSTSAssetTag`, `_SMSTSMacAddresses`, `_SMSTSIPAddresses`,
//! `_SMSTSDefaultGateways`), read on Linux from `/sys/class/dmi/id`, `/sys/class/net`,
//! `/proc/net/fib_trie`, `/proc/net/if_inet6` and `/proc/net/route`, and on Windows (Windows PE
//! or a deployed Windows) by [`windows`]: the SMBIOS table and the network adapters. Lists are
//! comma-separated, in the same form on both: MAC addresses upper-case `AA:BB:CC:DD:EE:FF`,
//! sorted; IPv4 addresses then global IPv6 addresses, loopback left out. Facts that cannot be
//! read are left unset, never guessed.

use std::net::IpAddr;
use std::path::PathBuf;

#[cfg(windows)]
mod windows;

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
    #[cfg(windows)]
    {
        windows::hardware_vars()
    }
    #[cfg(not(windows))]
    {
        linux_hardware_vars()
    }
}

/// A MAC address as the variables hold it: upper-case hex pairs joined by `:` (Linux reads
/// them as text already).
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) fn format_mac(bytes: [u8; 6]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// `_SMSTSMacAddresses`: the addresses upper-cased, the empty and all-zero ones (loopback,
/// adapters without one) left out, sorted, each once, comma-separated; `None` when none is left.
pub(crate) fn mac_list(macs: impl IntoIterator<Item = String>) -> Option<String> {
    let mut macs: Vec<String> = macs
        .into_iter()
        .map(|s| s.trim().to_uppercase())
        .filter(|s| !s.is_empty() && s.chars().any(|c| c != '0' && c != ':'))
        .collect();
    macs.sort();
    macs.dedup();
    (!macs.is_empty()).then(|| macs.join(","))
}

/// `_SMSTSIPAddresses` from the addresses of the machine's adapters, as the Linux side lists
/// them: the IPv4 addresses but loopback, then the global IPv6 ones (loopback, unspecified,
/// link-local `fe80::/10` and site-local `fec0::/10` left out), each group sorted, each once.
pub(crate) fn ip_list(addrs: impl IntoIterator<Item = IpAddr>) -> Vec<String> {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for a in addrs {
        match a {
            IpAddr::V4(a) if !a.is_loopback() && !a.is_unspecified() => v4.push(a.to_string()),
            IpAddr::V6(a) => {
                let scoped = matches!(a.segments()[0] & 0xffc0, 0xfe80 | 0xfec0);
                if !a.is_loopback() && !a.is_unspecified() && !scoped {
                    v6.push(a.to_string());
                }
            }
            _ => {}
        }
    }
    for l in [&mut v4, &mut v6] {
        l.sort();
        l.dedup();
    }
    v4.extend(v6);
    v4
}

/// A text fact (make, model, serial number, asset tag) as the variables hold it: trimmed,
/// `None` when nothing is left.
pub(crate) fn text_fact(s: &str) -> Option<String> {
    let t = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!t.is_empty()).then(|| t.to_string())
}

#[cfg(not(windows))]
fn linux_hardware_vars() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let dmi = |f: &str| {
        std::fs::read_to_string(format!("/sys/class/dmi/id/{f}"))
            .ok()
            .and_then(|s| text_fact(&s))
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
        let macs = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name() != "lo")
            .filter_map(|e| std::fs::read_to_string(e.path().join("address")).ok());
        if let Some(macs) = mac_list(macs) {
            out.push(("_SMSTSMacAddresses".into(), macs));
        }
    }
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let ips = ip_list(
        ipv4_local(&read("/proc/net/fib_trie"))
            .into_iter()
            .chain(ipv6_global(&read("/proc/net/if_inet6")))
            .filter_map(|a| a.parse().ok()),
    );
    if !ips.is_empty() {
        out.push(("_SMSTSIPAddresses".into(), ips.join(",")));
    }
    let gateways = default_gateways(&read("/proc/net/route"));
    if !gateways.is_empty() {
        out.push(("_SMSTSDefaultGateways".into(), gateways.join(",")));
    }
    out
}

#[cfg_attr(windows, allow(dead_code))]
/// The machine's own IPv4 addresses from `/proc/net/fib_trie` (the `/32 host LOCAL` entries),
/// loopback left out, sorted, each once.
fn ipv4_local(fib_trie: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut last: Option<&str> = None;
    for line in fib_trie.lines() {
        let t = line.trim_start();
        if let Some(a) = t.strip_prefix("|-- ") {
            last = Some(a.trim());
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(a) = last.filter(|a| !a.starts_with("127.")) {
                out.push(a.to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg_attr(windows, allow(dead_code))]
/// Global IPv6 addresses from `/proc/net/if_inet6` (scope 00), loopback left out.
fn ipv6_global(if_inet6: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in if_inet6.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[3] != "00" || f[5] == "lo" || f[0].len() != 32 {
            continue;
        }
        let Ok(n) = u128::from_str_radix(f[0], 16) else {
            continue;
        };
        out.push(std::net::Ipv6Addr::from(n).to_string());
    }
    out.sort();
    out.dedup();
    out
}

#[cfg_attr(windows, allow(dead_code))]
/// Default gateways from `/proc/net/route` (destination 0, a gateway set; little-endian hex).
fn default_gateways(route: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in route.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 || f[1] != "00000000" {
            continue;
        }
        match u32::from_str_radix(f[2], 16) {
            Ok(g) if g != 0 => {
                out.push(std::net::Ipv4Addr::from(g.to_le_bytes()).to_string());
            }
            _ => {}
        }
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_from_proc() {
        let fib = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 127.0.0.1\n        /32 host LOCAL\n\
                   |-- 192.0.2.0\n           /24 link UNICAST\n           |-- 192.0.2.2\n\
                   /32 host LOCAL\n        |-- 192.0.2.255\n           /32 link BROADCAST\n\
                   Local:\n           |-- 192.0.2.2\n              /32 host LOCAL\n";
        assert_eq!(ipv4_local(fib), ["192.0.2.2"]);
        let v6 = "fd000000000000000000000000000002 04 40 00 82     eth0\n\
                  fe8000000000000000fc00fffe000001 04 40 20 80     eth0\n\
                  00000000000000000000000000000001 01 80 10 80       lo\n";
        assert_eq!(ipv6_global(v6), ["fd00::2"]);
        let route = "Iface\tDestination\tGateway\tFlags\n\
                     eth0\t00000000\t010200C0\t0003\n\
                     eth0\t000200C0\t00000000\t0001\n";
        assert_eq!(default_gateways(route), ["192.0.2.1"]);
    }

    /// The list forms both platforms give (`_SMSTSMacAddresses`, `_SMSTSIPAddresses`): what a
    /// Set Dynamic Variables rule or the monitor sees must not depend on the runner's platform.
    #[test]
    fn list_forms_shared_by_linux_and_windows() {
        assert_eq!(
            format_mac([0x02, 0xfc, 0x00, 0x0a, 0xbc, 0x01]),
            "02:FC:00:0A:BC:01"
        );
        let macs = [
            "aa:bb:cc:dd:ee:02\n",
            "00:00:00:00:00:00",
            "",
            "AA:BB:CC:DD:EE:01",
        ]
        .into_iter()
        .chain(["aa:bb:cc:dd:ee:02"])
        .map(String::from);
        assert_eq!(
            mac_list(macs).as_deref(),
            Some("AA:BB:CC:DD:EE:01,AA:BB:CC:DD:EE:02")
        );
        assert_eq!(mac_list(["00:00:00:00:00:00".to_string()]), None);
        let addrs = [
            "fd00::2",
            "192.0.2.9",
            "127.0.0.1",
            "::1",
            "fe80::fc00:ff:fe00:1",
            "fec0::1",
            "0.0.0.0",
            "10.0.0.5",
            "192.0.2.9",
            "2001:db8::1",
        ]
        .map(|a| a.parse::<IpAddr>().unwrap());
        assert_eq!(
            ip_list(addrs),
            ["10.0.0.5", "192.0.2.9", "2001:db8::1", "fd00::2"]
        );
        assert_eq!(text_fact("  QEMU\n").as_deref(), Some("QEMU"));
        assert_eq!(text_fact(" \0 "), None);
    }
}
