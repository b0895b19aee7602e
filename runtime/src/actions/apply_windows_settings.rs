//! *Apply Windows Settings* (`SMS_TaskSequence_ApplyWindowsSettingsAction`), applied to the OS
//! that *Apply Operating System Image* put on the disk.
//!
//! Properties, from Microsoft's
//! [SMS_TaskSequence_ApplyWindowsSettingsAction class](https://learn.microsoft.com/intune/configmgr/develop/reference/osd/sms_tasksequence_applywindowssettingsaction-server-wmi-class)
//! (class qualifier `VariablePrefix("OSD")`) and the step's page in
//! [Task sequence steps](https://learn.microsoft.com/intune/configmgr/osd/understand/task-sequence-steps#BKMK_ApplyWindowsSettings),
//! whose variables are `OSDComputerName`, `OSDTimeZone`, …:
//!
//! - `ComputerName` ("Name assigned to the target computer. The default value is
//!   `%_SMSTSMachineName%`"), else the variable `OSDComputerName`, else `_SMSTSMachineName`;
//! - `TimeZone`, else the variable `OSDTimeZone`: a Windows time-zone name ("Pacific Standard
//!   Time").
//!
//! The OS is the one at `OSDTargetSystemDrive` (set by *Apply Operating System Image*), else
//! `OSDisk`. For a **Linux** OS the step sets the host name (`/etc/hostname`, `/etc/hosts`),
//! gives it a fresh machine ID and sets the time zone (mapped to IANA through CLDR), through
//! `osconfig`; the Windows Setup settings (registered owner, product key, administrator
//! password, locales) are listed in the log as not applying.
//!
//! For **Windows** the settings go into the answer file `Windows\Panther\unattend.xml`
//! (`osconfig::unattend`), merged into the one there (the administrator's, which *Apply
//! Operating System Image* put there, or the image's own); ours replace theirs element by
//! element and the log says which:
//!
//! - `specialize`, `Microsoft-Windows-Shell-Setup`: `ComputerName`; `RegisteredOwner` from
//!   `RegisteredUserName` (`OSDRegisteredUserName`); `RegisteredOrganization` from
//!   `RegisteredOrgName` (`OSDRegisteredOrgName`); `TimeZone` as given (a Windows name);
//!   `ProductKey` (`OSDProductKey`);
//! - `oobeSystem`, `Microsoft-Windows-Shell-Setup`: `UserAccounts/AdministratorPassword` when
//!   `RandomAdminPassword` (`OSDRandomAdminPassword`) is `false`: `Value` hidden as Windows
//!   Setup expects (`PlainText` = `false`), from `AdminPassword` (`OSDLocalAdminPassword`),
//!   which the class says "must be set" then. With `RandomAdminPassword` `true`, Microsoft's
//!   default ("sets the Administrator password to a randomly generated value. It also disables
//!   the account"), no password is written: Windows keeps its built-in Administrator disabled;
//! - `oobeSystem`, `Microsoft-Windows-International-Core`: `InputLocale`, `SystemLocale`,
//!   `UILanguage`, `UILanguageFallback`, `UserLocale` (the class points at that component).
//!
//! `ServerLicenseMode` and `ServerLicenseConnectionLimit` are logged as not written.

use super::{ActionResult, Ctx, Plan, StepType};
use crate::log::Level;
use crate::osconfig::unattend::{self, Change};
use crate::osconfig::{self, linux::Settings, Os};
use crate::sequence::model::{step_type, Step};
use crate::vars::Vars;
use crate::volume::Location;

pub const TYPE: StepType = StepType {
    names: &[step_type::APPLY_WINDOWS_SETTINGS],
    check,
    plan,
    run,
};

/// Windows Setup settings that mean nothing to a Linux OS.
const WINDOWS_ONLY: &[&str] = &[
    "RegisteredUserName",
    "RegisteredOrgName",
    "ProductKey",
    "AdminPassword",
    "InputLocale",
    "SystemLocale",
    "UILanguage",
    "UILanguageFallback",
    "UserLocale",
    "ServerLicenseMode",
    "ServerLicenseConnectionLimit",
];

fn check(s: &Step) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(tz) = s.property("TimeZone").map(str::trim) {
        if !tz.is_empty() && !tz.contains('%') && osconfig::timezone::resolve(tz).is_err() {
            // Windows knows more zones than the CLDR table tsforge maps; only a value that is
            // neither a known Windows name nor spelled like an IANA name is reported.
            out.push(format!(
                "Apply Windows Settings step {:?}: {}",
                s.name(),
                osconfig::timezone::resolve(tz).unwrap_err()
            ));
        }
    }
    out
}

/// A property, else a variable, `%NAME%`-expanded, when not blank.
fn value(s: &Step, vars: &Vars, property: &str, variable: &str) -> Option<(String, String)> {
    let from = |v: &str, src: String| {
        let x = vars.expand(v).trim().to_string();
        (!x.is_empty()).then_some((x, src))
    };
    s.property(property)
        .and_then(|v| from(v, format!("property {property}")))
        .or_else(|| {
            vars.get(variable)
                .and_then(|v| from(v, format!("variable {variable}")))
        })
}

fn target(vars: &Vars) -> Option<String> {
    ["OSDTargetSystemDrive", "OSDisk"]
        .iter()
        .find_map(|n| vars.get(n).filter(|v| !v.trim().is_empty()))
        .map(str::to_string)
}

fn plan(s: &Step, p: &mut Plan) -> String {
    let Some(t) = target(p.vars) else {
        return "cannot plan: no applied OS (OSDTargetSystemDrive and OSDisk are not set; Apply \
                Operating System Image sets OSDTargetSystemDrive)"
            .into();
    };
    let name = value(s, p.vars, "ComputerName", "OSDComputerName")
        .map(|(v, _)| v)
        .unwrap_or_else(|| "%_SMSTSMachineName%".into());
    let tz = value(s, p.vars, "TimeZone", "OSDTimeZone")
        .map(|(v, _)| format!(", time zone {v}"))
        .unwrap_or_default();
    format!(
        "configure the OS at {}: computer name {name}{tz} (Linux: /etc/hostname, /etc/hosts, a \
         new machine ID, /etc/localtime; Windows: Windows\\Panther\\unattend.xml)",
        Location::parse(&t)
    )
}

fn run(s: &Step, ctx: &mut Ctx) -> ActionResult {
    const C: &str = "ApplyWindowsSettings";
    let Some(t) = target(ctx.vars) else {
        return ActionResult::failed(
            "no applied OS to configure: OSDTargetSystemDrive and OSDisk are not set (Apply \
             Operating System Image sets OSDTargetSystemDrive)",
        );
    };
    let location = Location::parse(&t);
    let (hostname, how) = match value(s, ctx.vars, "ComputerName", "OSDComputerName") {
        Some((v, src)) => (Some(v), src),
        None => {
            // Microsoft's default, %_SMSTSMachineName%; the boot environment's own name may
            // not be a host name, and then the image's name is kept.
            let m = ctx.vars.get("_SMSTSMachineName").unwrap_or("").trim();
            if osconfig::linux::check_hostname(m).is_ok() {
                (
                    Some(m.to_string()),
                    "_SMSTSMachineName (the default)".into(),
                )
            } else {
                ctx.log.log(
                    Level::Warning,
                    C,
                    &format!(
                        "No ComputerName and no OSDComputerName, and this machine's name \
                         {m:?} (_SMSTSMachineName, the default) is not a host name: the \
                         image's host name is kept"
                    ),
                );
                (None, String::new())
            }
        }
    };
    let time_zone = value(s, ctx.vars, "TimeZone", "OSDTimeZone").map(|(v, _)| v);
    let settings = Settings {
        hostname: hostname.clone(),
        time_zone,
        files: None,
        new_machine_id: true,
    };
    let changes = windows_changes(s, ctx.vars);
    let mut windows = |root: &std::path::Path, report: &mut osconfig::Report| {
        let changes = changes.clone().map_err(|e| anyhow::anyhow!(e))?;
        unattend::apply(root, &changes, report).map(|_| ())
    };
    let mut report = osconfig::Report::default();
    let r = osconfig::configure_at(&location, Some(&settings), &mut windows, &mut report);
    for (level, line) in &report.lines {
        ctx.log.log(*level, C, line);
    }
    match r {
        Ok(Os::Linux(_)) => {
            if let Some(h) = hostname {
                ctx.log
                    .log(Level::Info, C, &format!("Computer name {h} from {how}"));
            }
            let ignored: Vec<&str> = WINDOWS_ONLY
                .iter()
                .copied()
                .filter(|p| !super::blank(s, p))
                .collect();
            if !ignored.is_empty() {
                ctx.log.log(
                    Level::Info,
                    C,
                    &format!(
                        "Not applied to a Linux OS (Windows Setup settings): {}",
                        ignored.join(", ")
                    ),
                );
            }
            ActionResult::ok()
        }
        Ok(Os::Windows) => {
            let ignored: Vec<&str> = ["ServerLicenseMode", "ServerLicenseConnectionLimit"]
                .into_iter()
                .filter(|p| !super::blank(s, p))
                .collect();
            if !ignored.is_empty() {
                ctx.log.log(
                    Level::Warning,
                    C,
                    &format!("Not written to the answer file: {}", ignored.join(", ")),
                );
            }
            ActionResult::ok()
        }
        Err(e) => ActionResult::failed(format!("configuring the OS at {location}: {e:#}")),
    }
}

const SHELL: &str = "Microsoft-Windows-Shell-Setup";
const INTL: &str = "Microsoft-Windows-International-Core";

/// `true`/`false` of a property, else its variable, else `default`.
fn flag(
    s: &Step,
    vars: &Vars,
    property: &str,
    variable: &str,
    default: bool,
) -> Result<bool, String> {
    match value(s, vars, property, variable) {
        None => Ok(default),
        Some((v, src)) => match v.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("{src} is {v:?}: expected true or false")),
        },
    }
}

/// The answer-file settings of the step, for a Windows OS.
fn windows_changes(s: &Step, vars: &Vars) -> Result<Vec<Change>, String> {
    let mut out = Vec::new();
    let name = value(s, vars, "ComputerName", "OSDComputerName")
        .map(|(v, _)| v)
        .or_else(|| {
            vars.get("_SMSTSMachineName")
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        });
    if let Some(n) = name {
        out.push(Change::set("specialize", SHELL, &["ComputerName"], n));
    }
    let plain: [(&str, &str, &'static [&'static str]); 4] = [
        (
            "RegisteredUserName",
            "OSDRegisteredUserName",
            &["RegisteredOwner"],
        ),
        (
            "RegisteredOrgName",
            "OSDRegisteredOrgName",
            &["RegisteredOrganization"],
        ),
        ("TimeZone", "OSDTimeZone", &["TimeZone"]),
        ("ProductKey", "OSDProductKey", &["ProductKey"]),
    ];
    for (property, variable, path) in plain {
        if let Some((v, _)) = value(s, vars, property, variable) {
            out.push(Change::set("specialize", SHELL, path, v));
        }
    }
    if !flag(
        s,
        vars,
        "RandomAdminPassword",
        "OSDRandomAdminPassword",
        true,
    )? {
        let Some((pw, _)) = value(s, vars, "AdminPassword", "OSDLocalAdminPassword") else {
            return Err(
                "RandomAdminPassword is false, so the local Administrator password \
                        must be set: AdminPassword (variable OSDLocalAdminPassword) is empty"
                    .into(),
            );
        };
        const V: &[&str] = &["UserAccounts", "AdministratorPassword", "Value"];
        const P: &[&str] = &["UserAccounts", "AdministratorPassword", "PlainText"];
        out.push(
            Change::set(
                "oobeSystem",
                SHELL,
                V,
                unattend::hide_password(&pw, "AdministratorPassword"),
            )
            .secret(),
        );
        out.push(Change::set("oobeSystem", SHELL, P, "false"));
    }
    let locales: [(&str, &'static [&'static str]); 5] = [
        ("InputLocale", &["InputLocale"]),
        ("SystemLocale", &["SystemLocale"]),
        ("UILanguage", &["UILanguage"]),
        ("UILanguageFallback", &["UILanguageFallback"]),
        ("UserLocale", &["UserLocale"]),
    ];
    for (property, path) in locales {
        let variable = format!("OSD{property}");
        if let Some((v, _)) = value(s, vars, property, &variable) {
            out.push(Change::set("oobeSystem", INTL, path, v));
        }
    }
    Ok(out)
}
