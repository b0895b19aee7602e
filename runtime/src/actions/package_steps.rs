//! Steps that use content packages: *Run Command Line* with a package, *Install Package*,
//! *Download Package Content*, *Apply Driver Package* (image packages are applied by
//! `disk_steps`). Packages come from the run's distribution points through
//! [`crate::content::Store`], verified, into the run's cache.
//!
//! Properties, as exported by ConfigMgr (the `OSD…` variable names work too):
//! - Run Command Line: `PackageID`, or `<action>` `smsswd.exe /run:ID command` /
//!   `smsswd.exe /pkg:ID …`; the command runs in the package's folder (a relative
//!   `startIn` is inside it).
//! - Install Package: `PackageID` + `ProgramName`, or `BaseVariableName` (variables
//!   `<base>001`, `<base>002`, … each `ID:Program`, stopping at the first one not set).
//! - Download Package Content: `DownloadPackages` (IDs, comma separated),
//!   `DestinationLocationType` (`TSCache`/`CCMCache`: the run's cache; `Custom`:
//!   `DestinationPath\<ID>`), `DestinationVariable` (set `<var>01`, `<var>02`, … to each
//!   package's folder), `ContinueDownloadOnError`.
//! - Apply Driver Package: `DriverPackageID`, `InstallUnsignedDriver`; drivers are added to the
//!   applied Windows image (`OSDTargetSystemDrive`, else `OSDisk`, a folder/drive) with DISM.

use super::run::{run_process, ProcessRun};
use super::{ActionResult, Ctx};
use crate::actions::process::Launch;
use crate::content::LocalPackage;
use crate::log::Level;
use crate::sequence::model::Step;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Fetches package `id` into the cache (or finds it there), logging progress.
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

fn prop(step: &Step, ctx: &Ctx, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| step.property(k))
        .map(|v| ctx.vars.expand(v).trim().to_string())
        .filter(|v| !v.is_empty())
}

fn truthy(v: Option<String>) -> bool {
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

/// The package a *Run Command Line* step uses, if any.
pub fn command_line_package(step: &Step, ctx: &Ctx) -> Option<String> {
    prop(step, ctx, &["PackageID"]).or_else(|| {
        step.action
            .as_deref()
            .and_then(|a| parse_smsswd(a).0)
            .map(|id| ctx.vars.expand(&id))
    })
}

/// *Run Command Line* with a package: fetch it, run the command in its folder.
pub fn run_command_line_with_package(step: &Step, ctx: &mut Ctx, id: &str) -> ActionResult {
    const C: &str = "RunCommandLine";
    let raw = match step.property("CommandLine") {
        Some(c) if !c.trim().is_empty() => c.to_string(),
        _ => match step.action.as_deref().map(parse_smsswd) {
            Some((_, cmd)) if !cmd.trim().is_empty() => cmd,
            _ => {
                return ActionResult::failed(format!(
                    "Run Command Line step uses package {id} but has no CommandLine property"
                ))
            }
        },
    };
    let local = match fetch(ctx, C, id) {
        Ok(l) => l,
        Err(e) => return ActionResult::failed(e),
    };
    let cwd = package_cwd(&local, step.start_in().map(|s| ctx.vars.expand(s)));
    let run = ProcessRun {
        component: C,
        launch: Launch::CommandLine(ctx.vars.expand(&raw)),
        cwd: Some(cwd),
        timeout: step.timeout_secs().map(Duration::from_secs),
        success_codes: step.success_codes(),
        extra_env: Vec::new(),
        output_variable: step
            .property("SMSTSRunCommandLineOutputVariableName")
            .map(|s| ctx.vars.expand(s)),
    };
    run_process(run, ctx)
}

fn package_cwd(local: &LocalPackage, start_in: Option<String>) -> String {
    match start_in.filter(|s| !s.trim().is_empty()) {
        Some(s) if PathBuf::from(&s).is_absolute() => s,
        Some(s) => local.dir.join(s).to_string_lossy().into_owned(),
        None => local.dir.to_string_lossy().into_owned(),
    }
}

/// *Install Package*.
pub fn install_package(step: &Step, ctx: &mut Ctx) -> ActionResult {
    const C: &str = "InstallPackage";
    let mut list: Vec<(String, String)> = Vec::new();
    if let Some(base) = prop(step, ctx, &["BaseVariableName"]) {
        for i in 1..1000 {
            let Some(v) = ctx.vars.get(&format!("{base}{i:03}")) else {
                break;
            };
            match v.split_once(':') {
                Some((id, prog)) if !id.trim().is_empty() && !prog.trim().is_empty() => {
                    list.push((id.trim().to_string(), prog.trim().to_string()))
                }
                _ => {
                    return ActionResult::failed(format!(
                        "{base}{i:03} = {v:?} is not PACKAGEID:Program name"
                    ))
                }
            }
        }
        if list.is_empty() {
            ctx.log.log(
                Level::Info,
                C,
                &format!("No {base}001 variable: no package to install"),
            );
            return ActionResult::ok();
        }
    } else {
        match (
            prop(step, ctx, &["PackageID"]),
            prop(step, ctx, &["ProgramName"]),
        ) {
            (Some(id), Some(p)) => list.push((id, p)),
            _ => {
                return ActionResult::failed(
                    "Install Package needs PackageID and ProgramName (or BaseVariableName)",
                )
            }
        }
    }
    let mut last = ActionResult::ok();
    for (id, program) in list {
        let local = match fetch(ctx, C, &id) {
            Ok(l) => l,
            Err(e) => return ActionResult::failed(e),
        };
        let Some(p) = local.manifest.program(&program) else {
            let known: Vec<&str> = local
                .manifest
                .programs
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            return ActionResult::failed(format!(
                "package {id} has no program {program:?} (it has: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        };
        ctx.log.log(
            Level::Info,
            C,
            &format!("Installing {id} program {:?}: {}", p.name, p.command_line),
        );
        let run = ProcessRun {
            component: C,
            launch: Launch::CommandLine(ctx.vars.expand(&p.command_line)),
            cwd: Some(local.dir.to_string_lossy().into_owned()),
            timeout: step.timeout_secs().map(Duration::from_secs),
            success_codes: step.success_codes(),
            extra_env: Vec::new(),
            output_variable: None,
        };
        last = run_process(run, ctx);
        if !matches!(
            last,
            ActionResult::Exit {
                succeeded: true,
                ..
            }
        ) {
            return last;
        }
    }
    last
}

/// *Download Package Content*.
pub fn download_package_content(step: &Step, ctx: &mut Ctx) -> ActionResult {
    const C: &str = "DownloadPackageContent";
    let Some(ids) = prop(
        step,
        ctx,
        &[
            "DownloadPackages",
            "OSDDownloadDownloadPackages",
            "PackageID",
        ],
    ) else {
        return ActionResult::failed(
            "Download Package Content needs DownloadPackages (package IDs, comma separated)",
        );
    };
    let ids: Vec<String> = ids
        .split([',', ';', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let kind = prop(
        step,
        ctx,
        &[
            "DestinationLocationType",
            "OSDDownloadDestinationLocationType",
        ],
    )
    .unwrap_or_else(|| "TSCache".into());
    let custom = if kind.eq_ignore_ascii_case("Custom") {
        match prop(
            step,
            ctx,
            &["DestinationPath", "OSDDownloadDestinationPath"],
        ) {
            Some(p) => Some(PathBuf::from(p)),
            None => {
                return ActionResult::failed(
                    "DestinationLocationType is Custom but DestinationPath is not set",
                )
            }
        }
    } else if kind.eq_ignore_ascii_case("TSCache") || kind.eq_ignore_ascii_case("CCMCache") {
        None
    } else {
        return ActionResult::failed(format!(
            "DestinationLocationType {kind:?} is not TSCache, CCMCache or Custom"
        ));
    };
    let var = prop(
        step,
        ctx,
        &["DestinationVariable", "OSDDownloadDestinationVariable"],
    );
    let keep_going = truthy(prop(
        step,
        ctx,
        &[
            "ContinueDownloadOnError",
            "OSDDownloadContinueDownloadOnError",
        ],
    ));
    let mut failures = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let r = fetch(ctx, C, id).and_then(|local| match &custom {
            None => Ok(local.dir.clone()),
            Some(root) => {
                let dest = root.join(id);
                copy_tree(&local.dir, &dest)
                    .map(|_| dest)
                    .map_err(|e| format!("copying package {id} to {}: {e}", root.display()))
            }
        });
        match r {
            Ok(dir) => {
                ctx.log.log(
                    Level::Info,
                    C,
                    &format!("Package {id} is at {}", dir.display()),
                );
                if let Some(v) = &var {
                    let name = format!("{v}{:02}", n + 1);
                    if let Err(e) =
                        super::set_variable(ctx, C, &name, dir.to_string_lossy().into_owned())
                    {
                        return ActionResult::failed(e.to_string());
                    }
                }
            }
            Err(e) if keep_going => {
                ctx.log.log(Level::Warning, C, &e);
                failures.push(e);
            }
            Err(e) => return ActionResult::failed(e),
        }
    }
    if failures.len() == ids.len() && !ids.is_empty() {
        return ActionResult::failed(failures.join("; "));
    }
    ActionResult::ok()
}

/// Copies a verified package folder (replacing what is there).
fn copy_tree(src: &std::path::Path, dst: &std::path::Path) -> std::io::Result<()> {
    if dst.exists() {
        std::fs::remove_dir_all(dst)?;
    }
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let to = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &to)?;
        } else {
            std::fs::copy(e.path(), &to)?;
        }
    }
    Ok(())
}

/// *Apply Driver Package*.
pub fn apply_driver_package(step: &Step, ctx: &mut Ctx) -> ActionResult {
    const C: &str = "ApplyDriverPackage";
    let Some(id) = prop(step, ctx, &["DriverPackageID", "OSDDriverPackageID"]) else {
        return ActionResult::failed("Apply Driver Package needs DriverPackageID");
    };
    let local = match fetch(ctx, C, &id) {
        Ok(l) => l,
        Err(e) => return ActionResult::failed(e),
    };
    let target = ctx
        .vars
        .get("OSDTargetSystemDrive")
        .or_else(|| ctx.vars.get("OSDisk"))
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let unsigned = truthy(prop(
        step,
        ctx,
        &["InstallUnsignedDriver", "OSDAllowUnsignedDriver"],
    ));
    add_drivers(ctx, C, &local, target, unsigned)
}

#[cfg(windows)]
fn add_drivers(
    ctx: &mut Ctx,
    component: &str,
    local: &LocalPackage,
    target: Option<String>,
    unsigned: bool,
) -> ActionResult {
    let Some(target) = target else {
        return ActionResult::failed(
            "Apply Driver Package: no applied Windows image (set OSDTargetSystemDrive or OSDisk \
             to its drive, e.g. C:)",
        );
    };
    let mut root = target.trim_end_matches(['\\', '/']).to_string();
    root.push('\\');
    let mut args: Vec<std::ffi::OsString> = vec![
        format!("/Image:{root}").into(),
        "/Add-Driver".into(),
        format!("/Driver:{}", local.dir.display()).into(),
        "/Recurse".into(),
    ];
    if unsigned {
        args.push("/ForceUnsigned".into());
    }
    ctx.log.log(
        Level::Info,
        component,
        &format!(
            "Adding the drivers of {} to the Windows image at {root} (DISM)",
            local.manifest.id
        ),
    );
    let dism = match crate::tools::find(crate::tools::Tool::Dism) {
        Ok(p) => p,
        Err(e) => return ActionResult::failed(e.to_string()),
    };
    match crate::tools::run_program(&dism, &args, "adding drivers") {
        Ok(_) => ActionResult::ok(),
        Err(e) => ActionResult::failed(format!("{e:#}")),
    }
}

#[cfg(not(windows))]
fn add_drivers(
    ctx: &mut Ctx,
    component: &str,
    local: &LocalPackage,
    target: Option<String>,
    _unsigned: bool,
) -> ActionResult {
    let _ = (ctx, component);
    ActionResult::failed(format!(
        "Apply Driver Package: package {} was fetched to {}, but drivers are added to an \
         offline Windows image with DISM, which only runs on Windows (Windows PE); this runner \
         is on {} (target: {})",
        local.manifest.id,
        local.dir.display(),
        std::env::consts::OS,
        target.as_deref().unwrap_or("not set")
    ))
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
}
