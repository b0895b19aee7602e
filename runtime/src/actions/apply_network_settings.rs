//! *Apply Network Settings* (`SMS_TaskSequence_ApplyNetworkSettingsAction`): the workgroup or
//! domain the applied Windows joins, written into its answer file.
//!
//! Properties, from Microsoft's
//! [SMS_TaskSequence_ApplyNetworkSettingsAction class](https://learn.microsoft.com/intune/configmgr/develop/reference/osd/sms_tasksequence_applynetworksettingsaction-server-wmi-class)
//! (class qualifier `VariablePrefix("OSD")`) and the step's variables in
//! [Task sequence variables](https://learn.microsoft.com/intune/configmgr/osd/understand/task-sequence-variables#OSDNetworkJoinType):
//!
//! - `NetworkJoinType` (`OSDNetworkJoinType`): `0` domain, `1` workgroup;
//! - `DomainName` (`OSDDomainName`), `DomainOUName` (`OSDDomainOUName`, an RFC 1779 name,
//!   Microsoft's example `LDAP://OU=MyOu,DC=MyDom,DC=MyCompany,DC=com`), `DomainUsername`
//!   (`OSDJoinAccount`), `DomainPassword` (`OSDJoinPassword`, secret);
//! - `WorkgroupName` (`OSDWorkgroupName`).
//!
//! Written into `Windows\Panther\unattend.xml` (`osconfig::unattend`), pass `specialize`,
//! component `Microsoft-Windows-UnattendedJoin`, `Identification` (Microsoft, *Unattended
//! Windows Setup Reference*:
//! <https://learn.microsoft.com/windows-hardware/customize/desktop/unattend/microsoft-windows-unattendedjoin-identification-joindomain>):
//! `JoinDomain`, `MachineObjectOU` (the OU without `LDAP://`, which the element's examples do
//! not carry), `Credentials` (`Domain`, `Username`, `Password`); or `JoinWorkgroup`, and then the
//! domain join's elements are removed ("only one of these settings can be present"). The
//! account `DOMAIN\user` gives `Domain` and `Username`; `user@domain` is `Username` alone (the
//! `Domain` element's page allows that form without `Domain`); a bare name gets the joined
//! domain as `Domain`.
//!
//! `Credentials/Password` has no hidden form in the answer file (it is a plain string, not a
//! `Value`/`PlainText` pair): it is written in clear, never logged; docs/engine.md says so.
//! The adapters (`Adapters`, `NumAdapters`), `DNSDomain`, `DNSSuffixSearchOrder` and
//! `EnableTCPIPFiltering` are logged as not applied. For a Linux OS nothing is written: the
//! step says the settings apply to Windows only.

use super::{ActionResult, Ctx, Plan, StepType};
use crate::log::Level;
use crate::osconfig::unattend::{self, Change};
use crate::osconfig::{self, Os};
use crate::sequence::model::{step_type, Step};
use crate::vars::Vars;
use crate::volume::Location;

pub const TYPE: StepType = StepType {
    names: &[step_type::APPLY_NETWORK_SETTINGS],
    check,
    plan,
    run,
};

const JOIN: &str = "Microsoft-Windows-UnattendedJoin";
const NOT_APPLIED: &[&str] = &[
    "Adapters",
    "NumAdapters",
    "DNSDomain",
    "DNSSuffixSearchOrder",
    "EnableTCPIPFiltering",
];

/// A property, else a variable, `%NAME%`-expanded, when not blank.
fn value(s: &Step, vars: &Vars, property: &str, variable: &str) -> Option<String> {
    let from = |v: &str| {
        let x = vars.expand(v).trim().to_string();
        (!x.is_empty()).then_some(x)
    };
    s.property(property)
        .and_then(from)
        .or_else(|| vars.get(variable).and_then(from))
}

fn target(vars: &Vars) -> Option<String> {
    ["OSDTargetSystemDrive", "OSDisk"]
        .iter()
        .find_map(|n| vars.get(n).filter(|v| !v.trim().is_empty()))
        .map(str::to_string)
}

/// What the step joins.
#[derive(Debug, Clone, PartialEq)]
enum Join {
    Domain {
        domain: String,
        ou: Option<String>,
        account: Option<String>,
        password: Option<String>,
    },
    Workgroup(String),
}

fn join(s: &Step, vars: &Vars) -> Result<Join, String> {
    let kind = value(s, vars, "NetworkJoinType", "OSDNetworkJoinType");
    let domain = value(s, vars, "DomainName", "OSDDomainName");
    let workgroup = value(s, vars, "WorkgroupName", "OSDWorkgroupName");
    let is_domain = match kind.as_deref() {
        Some("0") => true,
        Some("1") => false,
        Some(other) => {
            return Err(format!(
                "NetworkJoinType (OSDNetworkJoinType) is {other:?}: 0 joins a domain, 1 a \
                 workgroup"
            ))
        }
        // Not set: whichever name is given (the class requires one or the other).
        None => domain.is_some(),
    };
    if is_domain {
        let Some(domain) = domain else {
            return Err("joining a domain (NetworkJoinType 0) needs DomainName \
                        (OSDDomainName)"
                .into());
        };
        let ou = value(s, vars, "DomainOUName", "OSDDomainOUName").map(|o| match o.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("LDAP://") => o[7..].to_string(),
            _ => o,
        });
        Ok(Join::Domain {
            domain,
            ou,
            account: value(s, vars, "DomainUsername", "OSDJoinAccount"),
            password: value(s, vars, "DomainPassword", "OSDJoinPassword"),
        })
    } else {
        match workgroup {
            Some(w) if w.chars().count() <= 32 => Ok(Join::Workgroup(w)),
            Some(w) => Err(format!(
                "WorkgroupName {w:?} is longer than 32 characters (the class allows 1-32)"
            )),
            None => Err(
                "joining a workgroup (NetworkJoinType 1) needs WorkgroupName \
                         (OSDWorkgroupName)"
                    .into(),
            ),
        }
    }
}

fn check(s: &Step) -> Vec<String> {
    match s.property("NetworkJoinType").map(str::trim) {
        Some(v) if !v.is_empty() && !v.contains('%') && v != "0" && v != "1" => vec![format!(
            "Apply Network Settings step {:?}: NetworkJoinType is {v:?}: 0 joins a domain, 1 a \
             workgroup",
            s.name()
        )],
        _ => Vec::new(),
    }
}

fn plan(s: &Step, p: &mut Plan) -> String {
    let Some(t) = target(p.vars) else {
        return "cannot plan: no applied OS (OSDTargetSystemDrive and OSDisk are not set; Apply \
                Operating System Image sets OSDTargetSystemDrive)"
            .into();
    };
    let what = match join(s, p.vars) {
        Ok(Join::Domain { domain, ou, .. }) => format!(
            "join domain {domain}{}",
            ou.map(|o| format!(" in {o}")).unwrap_or_default()
        ),
        Ok(Join::Workgroup(w)) => format!("join workgroup {w}"),
        Err(e) => return format!("cannot plan: {e}"),
    };
    format!(
        "{what}: written into Windows\\Panther\\unattend.xml of the Windows at {}",
        Location::parse(&t)
    )
}

/// The answer-file changes for `j`.
fn changes(j: &Join) -> Vec<Change> {
    match j {
        Join::Workgroup(w) => vec![
            Change::remove("specialize", JOIN, &["Identification", "JoinDomain"]),
            Change::remove("specialize", JOIN, &["Identification", "MachineObjectOU"]),
            Change::remove("specialize", JOIN, &["Identification", "Credentials"]),
            Change::set("specialize", JOIN, &["Identification", "JoinWorkgroup"], w),
        ],
        Join::Domain {
            domain,
            ou,
            account,
            password,
        } => {
            let mut out = vec![
                Change::remove("specialize", JOIN, &["Identification", "JoinWorkgroup"]),
                Change::set(
                    "specialize",
                    JOIN,
                    &["Identification", "JoinDomain"],
                    domain,
                ),
            ];
            if let Some(ou) = ou {
                out.push(Change::set(
                    "specialize",
                    JOIN,
                    &["Identification", "MachineObjectOU"],
                    ou,
                ));
            }
            if let Some(a) = account {
                let (d, u) = match a.split_once('\\') {
                    Some((d, u)) => (Some(d.to_string()), u.to_string()),
                    None if a.contains('@') => (None, a.clone()),
                    None => (Some(domain.clone()), a.clone()),
                };
                if let Some(d) = d {
                    out.push(Change::set(
                        "specialize",
                        JOIN,
                        &["Identification", "Credentials", "Domain"],
                        d,
                    ));
                } else {
                    out.push(Change::remove(
                        "specialize",
                        JOIN,
                        &["Identification", "Credentials", "Domain"],
                    ));
                }
                out.push(Change::set(
                    "specialize",
                    JOIN,
                    &["Identification", "Credentials", "Username"],
                    u,
                ));
            }
            if let Some(p) = password {
                out.push(
                    Change::set(
                        "specialize",
                        JOIN,
                        &["Identification", "Credentials", "Password"],
                        p,
                    )
                    .secret(),
                );
            }
            out
        }
    }
}

fn run(s: &Step, ctx: &mut Ctx) -> ActionResult {
    const C: &str = "ApplyNetworkSettings";
    let Some(t) = target(ctx.vars) else {
        return ActionResult::failed(
            "no applied OS to configure: OSDTargetSystemDrive and OSDisk are not set (Apply \
             Operating System Image sets OSDTargetSystemDrive)",
        );
    };
    let location = Location::parse(&t);
    let j = join(s, ctx.vars);
    let mut windows = |root: &std::path::Path, report: &mut osconfig::Report| {
        let j = j.clone().map_err(|e| anyhow::anyhow!(e))?;
        if let Join::Domain {
            account: Some(_),
            password: None,
            ..
        } = &j
        {
            report.push(
                Level::Warning,
                "DomainUsername (OSDJoinAccount) is set but DomainPassword (OSDJoinPassword) is \
                 empty: the join will ask for it or fail"
                    .into(),
            );
        }
        unattend::apply(root, &changes(&j), report).map(|_| ())
    };
    let mut report = osconfig::Report::default();
    let r = osconfig::configure_at(&location, None, &mut windows, &mut report);
    for (level, line) in &report.lines {
        ctx.log.log(*level, C, line);
    }
    match r {
        Ok(Os::Windows) => {
            let ignored: Vec<&str> = NOT_APPLIED
                .iter()
                .copied()
                .filter(|p| !super::blank(s, p))
                .collect();
            if !ignored.is_empty() {
                ctx.log.log(
                    Level::Warning,
                    C,
                    &format!(
                        "Not applied (adapter and DNS settings): {}",
                        ignored.join(", ")
                    ),
                );
            }
            ActionResult::ok()
        }
        Ok(Os::Linux(os)) => {
            ctx.log.log(
                Level::Warning,
                C,
                &format!(
                    "{} is not Windows: the workgroup or domain join goes into Windows Setup's \
                     answer file, so nothing was changed",
                    os.title()
                ),
            );
            ActionResult::ok()
        }
        Err(e) => ActionResult::failed(format!("configuring the OS at {location}: {e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_split_into_domain_and_user() {
        let j = Join::Domain {
            domain: "corp.example".into(),
            ou: None,
            account: Some("CORP\\joiner".into()),
            password: Some("pw".into()),
        };
        let c = changes(&j);
        let get = |name: &str| {
            c.iter()
                .find(|c| c.name().ends_with(name))
                .and_then(|c| c.value.clone())
        };
        assert_eq!(get("Credentials/Domain").as_deref(), Some("CORP"));
        assert_eq!(get("Credentials/Username").as_deref(), Some("joiner"));
        assert!(c.iter().any(|c| c.secret && c.name().ends_with("Password")));
        let j = Join::Domain {
            domain: "corp.example".into(),
            ou: None,
            account: Some("joiner@corp.example".into()),
            password: None,
        };
        let c = changes(&j);
        assert!(c
            .iter()
            .any(|c| c.name().ends_with("Credentials/Domain") && c.value.is_none()));
    }
}
