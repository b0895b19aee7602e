//! Time zones: ConfigMgr's `TimeZone` / `OSDTimeZone` holds a Windows time-zone name ("the
//! language-neutral name … the `Std` value … under `HKLM\SOFTWARE\Microsoft\Windows
//! NT\CurrentVersion\Time Zones`", Microsoft, *Task sequence variables*, OSDTimeZone:
//! <https://learn.microsoft.com/intune/configmgr/osd/understand/task-sequence-variables#OSDTimeZone-input>),
//! such as `Pacific Standard Time`; Linux wants an IANA name (`America/Los_Angeles`).
//!
//! [`WINDOWS_ZONES`] is the territory-`001` (the zone's main location) mapping of Unicode CLDR's
//! `windowsZones.xml` for the common zones
//! (<https://github.com/unicode-org/cldr/blob/main/common/supplemental/windowsZones.xml>; facts,
//! as CLDR publishes them, including CLDR's older spellings such as `Asia/Calcutta`, which
//! tzdata keeps as links). A name that is already an IANA name is taken as it is.

/// Windows time-zone name → IANA name (CLDR windowsZones, territory 001).
pub const WINDOWS_ZONES: &[(&str, &str)] = &[
    ("Dateline Standard Time", "Etc/GMT+12"),
    ("UTC-11", "Etc/GMT+11"),
    ("Hawaiian Standard Time", "Pacific/Honolulu"),
    ("Alaskan Standard Time", "America/Anchorage"),
    ("Pacific Standard Time (Mexico)", "America/Tijuana"),
    ("Pacific Standard Time", "America/Los_Angeles"),
    ("US Mountain Standard Time", "America/Phoenix"),
    ("Mountain Standard Time (Mexico)", "America/Mazatlan"),
    ("Mountain Standard Time", "America/Denver"),
    ("Central America Standard Time", "America/Guatemala"),
    ("Central Standard Time", "America/Chicago"),
    ("Central Standard Time (Mexico)", "America/Mexico_City"),
    ("Canada Central Standard Time", "America/Regina"),
    ("SA Pacific Standard Time", "America/Bogota"),
    ("Eastern Standard Time (Mexico)", "America/Cancun"),
    ("Eastern Standard Time", "America/New_York"),
    ("US Eastern Standard Time", "America/Indianapolis"),
    ("Venezuela Standard Time", "America/Caracas"),
    ("Atlantic Standard Time", "America/Halifax"),
    ("SA Western Standard Time", "America/La_Paz"),
    ("Central Brazilian Standard Time", "America/Cuiaba"),
    ("Pacific SA Standard Time", "America/Santiago"),
    ("Newfoundland Standard Time", "America/St_Johns"),
    ("E. South America Standard Time", "America/Sao_Paulo"),
    ("Argentina Standard Time", "America/Buenos_Aires"),
    ("SA Eastern Standard Time", "America/Cayenne"),
    ("Montevideo Standard Time", "America/Montevideo"),
    ("UTC-02", "Etc/GMT+2"),
    ("Azores Standard Time", "Atlantic/Azores"),
    ("Cape Verde Standard Time", "Atlantic/Cape_Verde"),
    ("UTC", "Etc/UTC"),
    ("GMT Standard Time", "Europe/London"),
    ("Greenwich Standard Time", "Atlantic/Reykjavik"),
    ("Morocco Standard Time", "Africa/Casablanca"),
    ("W. Europe Standard Time", "Europe/Berlin"),
    ("Central Europe Standard Time", "Europe/Budapest"),
    ("Romance Standard Time", "Europe/Paris"),
    ("Central European Standard Time", "Europe/Warsaw"),
    ("W. Central Africa Standard Time", "Africa/Lagos"),
    ("GTB Standard Time", "Europe/Bucharest"),
    ("Middle East Standard Time", "Asia/Beirut"),
    ("Egypt Standard Time", "Africa/Cairo"),
    ("E. Europe Standard Time", "Europe/Chisinau"),
    ("South Africa Standard Time", "Africa/Johannesburg"),
    ("FLE Standard Time", "Europe/Kiev"),
    ("Israel Standard Time", "Asia/Jerusalem"),
    ("Jordan Standard Time", "Asia/Amman"),
    ("Arabic Standard Time", "Asia/Baghdad"),
    ("Turkey Standard Time", "Europe/Istanbul"),
    ("Arab Standard Time", "Asia/Riyadh"),
    ("Belarus Standard Time", "Europe/Minsk"),
    ("Russian Standard Time", "Europe/Moscow"),
    ("E. Africa Standard Time", "Africa/Nairobi"),
    ("Iran Standard Time", "Asia/Tehran"),
    ("Arabian Standard Time", "Asia/Dubai"),
    ("Azerbaijan Standard Time", "Asia/Baku"),
    ("Georgian Standard Time", "Asia/Tbilisi"),
    ("Caucasus Standard Time", "Asia/Yerevan"),
    ("Afghanistan Standard Time", "Asia/Kabul"),
    ("West Asia Standard Time", "Asia/Tashkent"),
    ("Pakistan Standard Time", "Asia/Karachi"),
    ("India Standard Time", "Asia/Calcutta"),
    ("Sri Lanka Standard Time", "Asia/Colombo"),
    ("Nepal Standard Time", "Asia/Katmandu"),
    ("Bangladesh Standard Time", "Asia/Dhaka"),
    ("Myanmar Standard Time", "Asia/Rangoon"),
    ("SE Asia Standard Time", "Asia/Bangkok"),
    ("N. Central Asia Standard Time", "Asia/Novosibirsk"),
    ("North Asia Standard Time", "Asia/Krasnoyarsk"),
    ("China Standard Time", "Asia/Shanghai"),
    ("Singapore Standard Time", "Asia/Singapore"),
    ("W. Australia Standard Time", "Australia/Perth"),
    ("Taipei Standard Time", "Asia/Taipei"),
    ("Ulaanbaatar Standard Time", "Asia/Ulaanbaatar"),
    ("Tokyo Standard Time", "Asia/Tokyo"),
    ("Korea Standard Time", "Asia/Seoul"),
    ("Cen. Australia Standard Time", "Australia/Adelaide"),
    ("AUS Central Standard Time", "Australia/Darwin"),
    ("E. Australia Standard Time", "Australia/Brisbane"),
    ("AUS Eastern Standard Time", "Australia/Sydney"),
    ("West Pacific Standard Time", "Pacific/Port_Moresby"),
    ("Tasmania Standard Time", "Australia/Hobart"),
    ("Vladivostok Standard Time", "Asia/Vladivostok"),
    ("Central Pacific Standard Time", "Pacific/Guadalcanal"),
    ("New Zealand Standard Time", "Pacific/Auckland"),
    ("Fiji Standard Time", "Pacific/Fiji"),
    ("Tonga Standard Time", "Pacific/Tongatapu"),
    ("Samoa Standard Time", "Pacific/Apia"),
    ("Line Islands Standard Time", "Pacific/Kiritimati"),
];

/// The IANA name of a Windows time-zone name (compared ignoring case), if [`WINDOWS_ZONES`]
/// has it.
pub fn from_windows(name: &str) -> Option<&'static str> {
    let name = name.trim();
    WINDOWS_ZONES
        .iter()
        .find(|(w, _)| w.eq_ignore_ascii_case(name))
        .map(|(_, i)| *i)
}

/// Whether `name` is spelled like an IANA zone name (`Area/Location`, `UTC`, `Etc/GMT+2`):
/// letters, digits, `_`, `-`, `+` and `/`, no empty, `.` or `..` part.
pub fn looks_like_iana(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-+/".contains(c))
        && name.split('/').all(|p| !p.is_empty())
}

/// The IANA name for a `TimeZone` value: a mapped Windows name, else the value itself when it
/// is spelled like an IANA name. The caller checks that the OS has that zone.
pub fn resolve(value: &str) -> Result<String, String> {
    let v = value.trim();
    if let Some(i) = from_windows(v) {
        return Ok(i.to_string());
    }
    if looks_like_iana(v) {
        return Ok(v.to_string());
    }
    Err(format!(
        "time zone {v:?} is neither a Windows time-zone name tsforge maps (CLDR windowsZones: \
         e.g. \"Pacific Standard Time\", \"W. Europe Standard Time\") nor an IANA name (e.g. \
         \"Europe/Berlin\")"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CLDR windowsZones.xml, territory 001:
    /// <https://github.com/unicode-org/cldr/blob/main/common/supplemental/windowsZones.xml>.
    #[test]
    fn windows_names_map_to_cldr_zones() {
        assert_eq!(
            from_windows("Pacific Standard Time"),
            Some("America/Los_Angeles")
        );
        assert_eq!(
            from_windows("pacific standard time"),
            Some("America/Los_Angeles")
        );
        assert_eq!(
            from_windows("Pacific Standard Time (Mexico)"),
            Some("America/Tijuana")
        );
        assert_eq!(
            from_windows("W. Europe Standard Time"),
            Some("Europe/Berlin")
        );
        assert_eq!(from_windows("GMT Standard Time"), Some("Europe/London"));
        assert_eq!(from_windows("Tokyo Standard Time"), Some("Asia/Tokyo"));
        assert_eq!(from_windows("UTC"), Some("Etc/UTC"));
        assert_eq!(resolve("Europe/Paris").unwrap(), "Europe/Paris");
        let e = resolve("Mars Standard Time").unwrap_err();
        assert!(e.contains("\"Mars Standard Time\""), "{e}");
        assert!(resolve("../../etc/passwd").is_err());
        let mut seen = std::collections::BTreeSet::new();
        for (w, i) in WINDOWS_ZONES {
            assert!(seen.insert(w.to_ascii_lowercase()), "{w} twice");
            assert!(looks_like_iana(i), "{i}");
        }
    }
}
