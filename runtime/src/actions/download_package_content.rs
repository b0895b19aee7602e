//! *Download Package Content* (`SMS_TaskSequence_DownloadPackageContentAction`):
//! `DownloadPackages` (IDs, comma separated), `DestinationLocationType` (`TSCache`/`CCMCache`:
//! the run's cache; `Custom`: `DestinationPath\<ID>`), `DestinationVariable` (set `<var>01`,
//! `<var>02`, … to each package's folder), `ContinueDownloadOnError` (the `OSD…` variable names
//! work too).

use super::packages::{fetch, prop, truthy};
use super::{ActionResult, Ctx, Plan, StepType};
use crate::log::Level;
use crate::sequence::model::{step_type, Step};
use std::path::PathBuf;

pub const TYPE: StepType = StepType {
    names: &[step_type::DOWNLOAD_PACKAGE_CONTENT],
    check,
    plan,
    run: download_package_content,
};

fn check(s: &Step) -> Vec<String> {
    let has = |k: &str| !super::blank(s, k);
    if !has("DownloadPackages") && !has("OSDDownloadDownloadPackages") && !has("PackageID") {
        return vec![format!(
            "Download Package Content step {:?} needs DownloadPackages",
            s.name()
        )];
    }
    Vec::new()
}

fn plan(step: &Step, p: &mut Plan) -> String {
    format!(
        "download packages {}",
        p.vars.expand(
            step.property("DownloadPackages")
                .or_else(|| step.property("PackageID"))
                .unwrap_or_default()
        )
    )
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
