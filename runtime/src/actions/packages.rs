//! Content packages for the steps that use them (Run Command Line with a package, Install
//! Package, Download Package Content, Apply Driver Package; image packages are applied by
//! `apply_image`): fetched from the run's distribution points through
//! [`crate::content::Store`], verified, into the run's cache; and the property and
//! `smsswd.exe` forms these steps share (the `OSD…` variable names of a property work too).

use super::Ctx;
use crate::content::LocalPackage;
use crate::log::Level;
use crate::sequence::model::Step;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Fetches package `id` into the cache (or finds it there), logging progress; a download
/// writes `step_progress` events (`disks::ProgressEvents`: percent of the manifest's sizes).
pub fn fetch(ctx: &mut Ctx, component: &str, id: &str) -> Result<LocalPackage, String> {
    let store = ctx.store().map_err(|e| format!("{e:#}"))?;
    let found = store.find(id).map_err(|e| format!("{e:#}"))?;
    let m = &found.manifest;
    ctx.log.log(
        Level::Info,
        component,
        &format!(
            "Package {} v{} ({:?}, {} files, {} bytes) from {}",
            m.id,
            m.version,
            m.name,
            m.files.len(),
            m.size(),
            found.origin
        ),
    );
    let started = Instant::now();
    let mut last = Instant::now();
    // The download's progress goes to the monitor too, as the image steps' does.
    let mut events = super::disks::ProgressEvents::new(ctx.number);
    let log = &mut *ctx.log;
    let mut first_done = None;
    let r = store.ensure_local(&found, &mut |p| {
        let first = *first_done.get_or_insert(p.done);
        if last.elapsed() >= Duration::from_secs(5) && p.total > 0 {
            last = Instant::now();
            let line = crate::sys::rate_line(p.done, first, p.total, None, started);
            log.log(Level::Info, component, &format!("Downloading {id}: {line}"));
            log.say(&format!("  {id}: {line}"));
        }
        events.update(log, p.done, p.total, || {
            format!(
                "Downloading {id}: {}",
                crate::sys::rate_line(p.done, first, p.total, None, started)
            )
        });
    });
    let local = r.map_err(|e| format!("package {id}: {e:#}"))?;
    let how = if local.from_cache {
        "already in the cache".to_string()
    } else if local.resumed > 0 {
        format!(
            "downloaded {} bytes, resumed after {} bytes kept from an interrupted download, in {:.1} s",
            local.fetched,
            local.resumed,
            started.elapsed().as_secs_f64()
        )
    } else {
        format!(
            "downloaded {} bytes in {:.1} s",
            local.fetched,
            started.elapsed().as_secs_f64()
        )
    };
    ctx.log.log(
        Level::Info,
        component,
        &format!(
            "Package {id} verified at {} ({how}); cache {} holds {} MiB",
            local.dir.display(),
            store.cache.display(),
            store.cache_size() >> 20
        ),
    );
    Ok(local)
}

pub(super) fn prop(step: &Step, ctx: &Ctx, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| step.property(k))
        .map(|v| ctx.vars.expand(v).trim().to_string())
        .filter(|v| !v.is_empty())
}

pub(super) fn truthy(v: Option<String>) -> bool {
    v.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
}

/// `smsswd.exe /run:ID command`, `smsswd.exe /pkg:ID …` and `smsswd.exe /run: command`:
/// the package (if any) and the command line. A `/run:` token is a package ID when it has
/// ConfigMgr's shape (3 letters or digits + 5 hex digits) and a command follows it.
pub fn parse_smsswd(action: &str) -> (Option<String>, String) {
    let t = action.trim_start();
    let lower = t.to_ascii_lowercase();
    for exe in ["smsswd.exe ", "smsswd "] {
        let Some(rest) = lower.strip_prefix(exe) else {
            continue;
        };
        let off = t.len() - rest.len();
        let rest_t = t[off..].trim_start();
        let rest_l = rest_t.to_ascii_lowercase();
        if rest_l.starts_with("/pkg:") {
            let body = &rest_t[5..];
            let id: String = body.chars().take_while(|c| !c.is_whitespace()).collect();
            return (Some(id).filter(|i| !i.is_empty()), String::new());
        }
        if rest_l.starts_with("/run:") {
            let body = &rest_t[5..];
            if body.starts_with(char::is_whitespace) || body.is_empty() {
                return (None, body.trim_start().to_string());
            }
            let id: String = body.chars().take_while(|c| !c.is_whitespace()).collect();
            let after = body[id.len()..].trim_start();
            if is_configmgr_id(&id) && !after.is_empty() {
                return (Some(id), after.to_string());
            }
            return (None, body.to_string());
        }
    }
    (None, t.to_string())
}

fn is_configmgr_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 8
        && b[..3].iter().all(u8::is_ascii_alphanumeric)
        && b[3..].iter().all(u8::is_ascii_hexdigit)
}

pub(super) fn package_cwd(local: &LocalPackage, start_in: Option<String>) -> String {
    match start_in.filter(|s| !s.trim().is_empty()) {
        Some(s) if PathBuf::from(&s).is_absolute() => s,
        Some(s) => local.dir.join(s).to_string_lossy().into_owned(),
        None => local.dir.to_string_lossy().into_owned(),
    }
}

/// The content packages `step` names, expanded with `vars`: every property whose name ends in
/// `PackageID` (`PackageID`, `ImagePackageID`, `InstallPackageID`, `TsPackageID`, a driver
/// package's …), `ConfigFilePackage`, and the comma-separated `DownloadPackages`
/// (`OSDDownloadDownloadPackages`), and Install Package's `BaseVariableName` list. Used by the hand-over to stage what the steps after it
/// need; duplicates and empty values left out.
pub fn referenced(step: &Step, vars: &crate::vars::Vars) -> Vec<String> {
    use crate::sequence::model::attr;
    let mut out: Vec<String> = Vec::new();
    let mut add = |id: &str| {
        let id = id.trim();
        if !id.is_empty() && !out.iter().any(|o| o.eq_ignore_ascii_case(id)) {
            out.push(id.to_string());
        }
    };
    for v in &step.vars {
        let key = attr(&v.attrs, "property").unwrap_or(&v.name);
        let value = vars.expand(&v.value);
        let lower = key.to_ascii_lowercase();
        if lower.ends_with("packageid") || lower == "configfilepackage" {
            add(&value);
        } else if lower == "downloadpackages" || lower == "osddownloaddownloadpackages" {
            for id in value.split(',') {
                add(id);
            }
        } else if lower == "basevariablename" && !value.trim().is_empty() {
            // Install Package's list: `<base>001`, `<base>002`, … each `ID:Program`.
            for i in 1..1000 {
                let Some(entry) = vars.get(&format!("{}{i:03}", value.trim())) else {
                    break;
                };
                add(entry.split(':').next().unwrap_or_default());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smsswd_forms() {
        assert_eq!(
            parse_smsswd("smsswd.exe /run:LAB00040 cmd.exe /c install.cmd"),
            (Some("LAB00040".into()), "cmd.exe /c install.cmd".into())
        );
        assert_eq!(
            parse_smsswd("smsswd.exe /run: cmd /c dir"),
            (None, "cmd /c dir".into())
        );
        assert_eq!(parse_smsswd("SMSSWD.EXE /run:cmd"), (None, "cmd".into()));
        assert_eq!(
            parse_smsswd("smsswd.exe /pkg:LAB00007 /install /basevar: /continueOnError="),
            (Some("LAB00007".into()), String::new())
        );
        assert_eq!(
            parse_smsswd("cscript x.wsf"),
            (None, "cscript x.wsf".into())
        );
        // Eight characters but not hex: a command, not a package.
        assert_eq!(
            parse_smsswd("smsswd.exe /run:notepadz x"),
            (None, "notepadz x".into())
        );
    }

    #[test]
    fn referenced_packages_of_a_step() {
        use crate::sequence::model::{Step, Variable};
        let mut step = Step::default();
        for (k, v) in [
            ("ImagePackageID", "IMG00001"),
            ("PackageID", "%Pkg%"),
            ("DownloadPackages", "LAB00001, lab00001,LAB00002,"),
            ("BaseVariableName", "Apps"),
            ("ProgramName", "Install"),
        ] {
            step.vars.push(Variable::property(k, v));
        }
        let mut vars = crate::vars::Vars::default();
        vars.set("Pkg", "LAB00009");
        vars.set("Apps001", "LAB00003:Install");
        vars.set("Apps002", "LAB00004:Setup");
        assert_eq!(
            super::referenced(&step, &vars),
            ["IMG00001", "LAB00009", "LAB00001", "LAB00002", "LAB00003", "LAB00004"]
        );
    }
}
