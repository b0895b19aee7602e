//! *Apply Driver Package* (`SMS_TaskSequence_ApplyDriverPackageAction`): `DriverPackageID`,
//! `InstallUnsignedDriver`; the package's drivers are added to the applied Windows image
//! (`OSDTargetSystemDrive`, else `OSDisk`, a folder/drive) with DISM, which only runs on
//! Windows (Windows PE).

use super::packages::{fetch, prop, truthy};
use super::{ActionResult, Ctx, Plan, StepType};
use crate::content::LocalPackage;
use crate::sequence::model::{step_type, Step};

pub const TYPE: StepType = StepType {
    names: &[step_type::APPLY_DRIVER_PACKAGE],
    check,
    plan,
    run: apply_driver_package,
};

fn check(s: &Step) -> Vec<String> {
    if super::blank(s, "DriverPackageID") {
        return vec![format!(
            "Apply Driver Package step {:?} needs DriverPackageID",
            s.name()
        )];
    }
    Vec::new()
}

fn plan(step: &Step, p: &mut Plan) -> String {
    format!(
        "add the drivers of package {} to the applied image",
        p.vars
            .expand(step.property("DriverPackageID").unwrap_or_default())
    )
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
        crate::log::Level::Info,
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
