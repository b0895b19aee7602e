//! The medium as a plain folder: every file of the tree at its path, stamped with the build
//! time. Useful to inspect a medium, to copy it onto a stick formatted by other means, or as
//! the input of another tool. A folder does not boot by itself.

use super::{
    content_bytes, copy_buffer, copy_to_file, plan_files, OutputKind, OutputSummary, Placed,
    Progress, TempOutput,
};
use crate::template::BootSpec;
use crate::tree::MediaTree;
use anyhow::Result;
use std::path::Path;

/// Options of [`write_dir`].
#[derive(Debug, Clone)]
pub struct DirOptions {
    /// Time of every file (seconds since 1970, UTC; `SOURCE_DATE_EPOCH`).
    pub epoch: i64,
    /// Write into an existing non-empty folder: the medium's top-level entries replace those
    /// of the same name; others are kept.
    pub force: bool,
}

impl DirOptions {
    pub fn new(epoch: i64) -> DirOptions {
        DirOptions {
            epoch,
            force: false,
        }
    }
}

/// Write `tree` into the folder `out` (missing or empty, or anything with `force`).
pub fn write_dir(
    tree: &MediaTree,
    boot: &BootSpec,
    out: &Path,
    opts: &DirOptions,
    progress: Progress<'_>,
) -> Result<OutputSummary> {
    let files = plan_files(tree)?;
    let total = content_bytes(&files);
    let tmp = TempOutput::new(out, opts.force, true)?;
    std::fs::create_dir(tmp.path())
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", tmp.path().display()))?;
    let mut buf = copy_buffer();
    let mut done = 0u64;
    progress(0, total);
    for f in &files {
        let dest = tmp.path().join(f.path);
        copy_to_file(f, &dest, opts.epoch, &mut buf, &mut |n| {
            done += n;
            progress(done, total);
        })?;
    }
    let path = tmp.commit()?;
    let mut notes = vec![
        "a folder does not boot by itself; copy it to a FAT32-formatted stick \
         or use `tsforge build usb` / `tsforge build iso`"
            .to_string(),
    ];
    if boot.uefi_removable_path {
        notes.push(
            "EFI/BOOT/BOOTX64.EFI is present: a FAT32 stick with these files boots under UEFI"
                .into(),
        );
    }
    Ok(OutputSummary {
        kind: OutputKind::Dir,
        path,
        bytes: total,
        files: files.len() as u64,
        content_bytes: total,
        placed: vec![Placed {
            what: format!("{} files", files.len()),
            offset: None,
            bytes: total,
        }],
        notes,
    })
}
