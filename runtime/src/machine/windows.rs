//! The hardware variables on Windows (Windows PE or a deployed Windows), read without a
//! command and without parsing localized output:
//!
//! - `_SMSTSMake`, `_SMSTSModel`, `_SMSTSSerialNumber`, `_SMSTSUUID` from the SMBIOS *System
//!   Information* structure (type 1: Manufacturer, Product Name, Serial Number, UUID) and
//!   `_SMSTSAssetTag` from the *System Enclosure* structure (type 3: Asset Tag Number), the
//!   same fields Linux shows as `/sys/class/dmi/id/{sys_vendor,product_name,product_serial,
//!   product_uuid,chassis_asset_tag}`. The table comes from `GetSystemFirmwareTable('RSMB')`
//!   (<https://learn.microsoft.com/windows/win32/api/sysinfoapi/nf-sysinfoapi-getsystemfirmwaretable>),
//!   a kernel32 function Windows PE has as well, through the `smbios-lib` crate. The UUID is
//!   written as Linux writes it (lower-case, SMBIOS 2.6 byte order); an all-zero or all-0xFF
//!   UUID ("not present") leaves the variable unset.
//! - `_SMSTSMacAddresses` from the adapters' physical addresses and `_SMSTSIPAddresses` from
//!   their unicast addresses, both from `GetAdaptersAddresses`
//!   (<https://learn.microsoft.com/windows/win32/api/iphlpapi/nf-iphlpapi-getadaptersaddresses>)
//!   through the `mac_address` and `if-addrs` crates.
//! - `_SMSTSDefaultGateways` is left unset on Windows: neither crate returns gateways, and the
//!   crate that does (`netdev`) may send ARP requests while looking them up (docs/engine.md).

use super::{format_mac, ip_list, mac_list, text_fact};
use smbioslib::{SMBiosSystemChassisInformation, SMBiosSystemInformation, SystemUuidData};

pub fn hardware_vars() -> Vec<(String, String)> {
    let mut out = Vec::new();
    // The SMBIOS parser is a third-party crate reading firmware data: a panic in it must not
    // end the run, the facts are then unset.
    if let Ok(facts) = std::panic::catch_unwind(smbios_facts) {
        out.extend(facts);
    }
    if let Ok(iter) = mac_address::MacAddressIterator::new() {
        if let Some(macs) = mac_list(iter.map(|m| format_mac(m.bytes()))) {
            out.push(("_SMSTSMacAddresses".into(), macs));
        }
    }
    if let Ok(ifaces) = if_addrs::get_if_addrs() {
        let ips = ip_list(ifaces.iter().map(|i| i.ip()));
        if !ips.is_empty() {
            out.push(("_SMSTSIPAddresses".into(), ips.join(",")));
        }
    }
    out
}

fn smbios_facts() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(data) = smbioslib::table_load_from_device() else {
        return out;
    };
    let text = |s: smbioslib::SMBiosString| s.to_utf8_lossy().and_then(|s| text_fact(&s));
    if let Some(sys) = data.first::<SMBiosSystemInformation>() {
        for (var, value) in [
            ("_SMSTSMake", text(sys.manufacturer())),
            ("_SMSTSModel", text(sys.product_name())),
            ("_SMSTSSerialNumber", text(sys.serial_number())),
            (
                "_SMSTSUUID",
                match sys.uuid() {
                    Some(SystemUuidData::Uuid(u)) => Some(u.to_string()),
                    _ => None,
                },
            ),
        ] {
            if let Some(v) = value {
                out.push((var.to_string(), v));
            }
        }
    }
    if let Some(tag) = data
        .first::<SMBiosSystemChassisInformation>()
        .and_then(|c| text(c.asset_tag_number()))
    {
        out.push(("_SMSTSAssetTag".into(), tag));
    }
    out
}
