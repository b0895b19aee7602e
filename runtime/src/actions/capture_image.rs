//! *Capture Operating System Image* (`SMS_TaskSequence_CaptureSystemImageAction`):
//! `CaptureSource` (a location; default the `OSDisk` variable), `CaptureDestination` (default
//! the `OSDCaptureDestination` variable), `ImageName`, `ImageDescription`, `ImageVersion`,
//! `ImageCreator`, `Compression` (`zstd`, `deflate`, `none`). `validate` checks nothing more:
//! source and destination may come from variables set at run time.

use super::disks::Reporter;
use super::{ActionResult, Ctx, StepType};
use crate::image::{CaptureOptions, Compression, Progress};
use crate::log::Level;
use crate::sequence::model::{step_type, Step};
use crate::volume::Location;
use std::path::PathBuf;

pub const TYPE: StepType = StepType {
    names: &[step_type::CAPTURE_IMAGE],
    check: |_| Vec::new(),
    plan: super::plan_action_text,
    run: capture,
};

/// *Capture Operating System Image*.
pub fn capture(step: &Step, ctx: &mut Ctx) -> ActionResult {
    const C: &str = "CaptureImage";
    let get = |k: &str| {
        step.property(k)
            .map(|v| ctx.vars.expand(v))
            .filter(|v| !v.trim().is_empty())
    };
    let Some(source) = get("CaptureSource").or_else(|| ctx.vars.get("OSDisk").map(str::to_string))
    else {
        return ActionResult::failed(
            "no capture source: set CaptureSource (a folder or DISK:N) or the OSDisk variable",
        );
    };
    let Some(dest) = get("CaptureDestination")
        .or_else(|| ctx.vars.get("OSDCaptureDestination").map(str::to_string))
        .filter(|d| !d.trim().is_empty())
    else {
        return ActionResult::failed(
            "no capture destination: set CaptureDestination or the OSDCaptureDestination variable",
        );
    };
    let compression = match get("Compression").as_deref().map(str::to_ascii_lowercase) {
        None => Compression::Zstd,
        Some(c) if c == "zstd" => Compression::Zstd,
        Some(c) if c == "deflate" => Compression::Deflate,
        Some(c) if c == "none" => Compression::None,
        Some(c) => {
            return ActionResult::failed(format!("Compression {c:?} is not zstd, deflate or none"))
        }
    };
    let mut description = get("ImageDescription").unwrap_or_default();
    for (k, label) in [("ImageVersion", "version"), ("ImageCreator", "created by")] {
        if let Some(v) = get(k) {
            if !description.is_empty() {
                description.push_str("; ");
            }
            description.push_str(&format!("{label} {v}"));
        }
    }
    let opts = CaptureOptions {
        name: get("ImageName").unwrap_or_else(|| "Captured image".into()),
        description,
        compression,
        threads: 0,
    };
    let source = Location::parse(&source);
    let out = PathBuf::from(dest);
    ctx.log.log(
        Level::Info,
        C,
        &format!("Capturing {source} into {}", out.display()),
    );
    if let Some(what) = crate::volume::describe(&source) {
        ctx.log.log(Level::Info, C, &what);
    }
    let scratch = ctx.state_dir.join("scratch");
    let mut rep = Reporter::new(C, ctx.number);
    let mut last = Progress::default();
    let log = &mut *ctx.log;
    let mut left_out = Vec::new();
    // A folder capture (a running system's own tree) leaves out the run itself: its state
    // directory, its logs, and the image being written.
    let mut tmp = out.clone().into_os_string();
    tmp.push(".tmp");
    let mut leave_out = vec![ctx.state_dir.to_path_buf(), out.clone(), PathBuf::from(tmp)];
    if let Some(logs) = ctx.vars.get("_SMSTSLogPath") {
        leave_out.push(PathBuf::from(logs));
    }
    let r = crate::volume::capture(
        &source,
        &out,
        &opts,
        &scratch,
        &mut |p| {
            last = *p;
            rep.update(log, p);
        },
        &mut left_out,
        &leave_out,
    );
    for l in left_out {
        ctx.log.log(Level::Info, C, &format!("Left out: {l}"));
    }
    match r {
        Ok(info) => {
            for w in info.iter().flat_map(|i| &i.warnings) {
                ctx.log.log(Level::Warning, C, w);
            }
            let what = info
                .map(|i| {
                    format!(
                        ": {} files, {} MiB ({} MiB distinct) into {} MiB",
                        i.files,
                        i.total_bytes >> 20,
                        i.stored_bytes >> 20,
                        i.image_bytes >> 20
                    )
                })
                .unwrap_or_default();
            ctx.log.log(
                Level::Info,
                C,
                &format!("Captured {source} into {}{what}", out.display()),
            );
            ActionResult::ok()
        }
        Err(e) => ActionResult::failed(format!("capturing {source} into {}: {e:#}", out.display())),
    }
}
