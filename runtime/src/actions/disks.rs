//! What the disk and image steps share: disk numbers to paths, the refusal of disks in use,
//! progress lines in smsts.log, and the variables that carry what a partition step made.
//!
//! Disk numbers (`DiskIndex`, `DestinationDisk`) resolve through `--disk N=PATH` first, then
//! through the machine's disks in the order `tsforge disk list` shows (internal disks first,
//! the boot medium never first). A block device holding the boot medium or a mounted file
//! system is refused unless the run was started with `--allow-mounted`. Image files and block
//! devices are alike to these steps (the disk layer makes no difference between them).

use super::Ctx;
use crate::disk::select;
use crate::image::Progress;
use crate::log::Level;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The partitions (`DISK:N`, `;`-separated) whose file system a *Format and Partition Disk*
/// step of this run made.
pub const FORMATTED_VAR: &str = "_TSForgeFormattedVolumes";

/// Resolve disk number `index` to a path: `--disk` first, then the machine's disks.
pub fn resolve_disk(index: u32, ctx: &Ctx) -> Result<PathBuf, String> {
    resolve_disk_in(index, ctx.targets)
}

/// `resolve_disk` for callers without a step context (the dry-run plan).
pub fn resolve_disk_path(index: u32, targets: &super::RunTargets) -> Result<PathBuf, String> {
    resolve_disk_in(index, targets)
}

pub(super) fn resolve_disk_in(index: u32, targets: &super::RunTargets) -> Result<PathBuf, String> {
    if let Some((_, p)) = targets.disks.iter().find(|(n, _)| *n == index) {
        return Ok(p.clone());
    }
    let disks = select::enumerate().map_err(|e| format!("listing the machine's disks: {e:#}"))?;
    let found = disks.iter().find(|d| d.index == index).ok_or_else(|| {
        format!(
            "there is no disk {index} on this machine ({} disks found; `tsforge disk list` shows \
             them, `--disk {index}=PATH` maps it to an image file or device)",
            disks.len()
        )
    })?;
    Ok(found.path.clone())
}

/// Refuse the boot medium and block devices in use (`select::check_target`: mounted, swap,
/// held by dm/md, any block device including loop devices and partitions); image files pass.
pub(super) fn check_disk(
    path: &std::path::Path,
    ctx: &mut Ctx,
    component: &str,
) -> Result<(), String> {
    let what = match select::inspect(path) {
        Ok(Some(t)) => t.describe(),
        Ok(None) => format!("image file {}", path.display()),
        Err(e) => return Err(format!("checking {}: {e:#}", path.display())),
    };
    ctx.log
        .log(Level::Info, component, &format!("Target disk: {what}"));
    select::check_target(path, ctx.targets.allow_mounted, false)
        .map(|_| ())
        .map_err(|e| format!("{e:#}"))
}

/// Progress for a person and the log: bytes, files, rate, time left; logged at most every
/// 5 seconds (and at the end), so a large image does not flood smsts.log. The same progress
/// goes to events.jsonl (and a monitor) as `step_progress` events ([`ProgressEvents`]).
pub(super) struct Reporter {
    component: &'static str,
    started: Instant,
    last: Instant,
    events: ProgressEvents,
}

/// A `step_progress` event is written when this many more percent are done…
pub(super) const PROGRESS_EVENT_PERCENT: u64 = 5;
/// …or this long after the last one.
pub(super) const PROGRESS_EVENT_EVERY: Duration = Duration::from_secs(10);

/// A long step's progress as `step_progress` events {`number`, `percent`, `message`} in
/// events.jsonl (and so to a monitor): at most one for every [`PROGRESS_EVENT_PERCENT`] done
/// or every [`PROGRESS_EVENT_EVERY`]. Fed by image steps ([`Reporter`]) and package downloads
/// (`packages::fetch`).
pub(super) struct ProgressEvents {
    /// The step's number (`step_progress`'s `number`).
    number: usize,
    /// When the last event was written, and its percent.
    last: Option<(Instant, u64)>,
}

impl ProgressEvents {
    pub(super) fn new(number: usize) -> Self {
        ProgressEvents { number, last: None }
    }

    /// `done` of `total` bytes: an event when one is due (`message` made only then). Nothing
    /// while the total is unknown (0).
    pub(super) fn update(
        &mut self,
        log: &mut crate::log::Logger,
        done: u64,
        total: u64,
        message: impl FnOnce() -> String,
    ) {
        if total == 0 {
            return;
        }
        let percent = (u128::from(done.min(total)) * 100 / u128::from(total)) as u64;
        let due = match self.last {
            None => true,
            Some((at, pct)) => {
                percent >= pct + PROGRESS_EVENT_PERCENT || at.elapsed() >= PROGRESS_EVENT_EVERY
            }
        };
        if due {
            self.last = Some((Instant::now(), percent));
            let mut fields = serde_json::Map::new();
            fields.insert("number".into(), self.number.into());
            fields.insert("percent".into(), percent.into());
            fields.insert("message".into(), message().into());
            log.event("step_progress", fields);
        }
    }
}

/// Bytes, files, rate and time left of `p`, started at `started`.
fn progress_line(p: &Progress, started: Instant) -> String {
    let files = (p.files_total > 0).then_some((p.files_done, p.files_total));
    crate::sys::rate_line(p.bytes_done, 0, p.bytes_total, files, started)
}

impl Reporter {
    pub(super) fn new(component: &'static str, number: usize) -> Self {
        let now = Instant::now();
        Reporter {
            component,
            started: now,
            last: now,
            events: ProgressEvents::new(number),
        }
    }
    pub(super) fn line(&self, p: &Progress) -> String {
        progress_line(p, self.started)
    }
    pub(super) fn update(&mut self, ctx_log: &mut crate::log::Logger, p: &Progress) {
        if self.last.elapsed() >= Duration::from_secs(5) {
            self.last = Instant::now();
            let line = self.line(p);
            ctx_log.log(Level::Info, self.component, &format!("Progress: {line}"));
            ctx_log.say(&format!("  {line}"));
        }
        let started = self.started;
        self.events
            .update(ctx_log, p.bytes_done, p.bytes_total, || {
                progress_line(p, started)
            });
    }
}
