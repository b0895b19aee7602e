//! Adding files to an image of an existing WIM file, with the platform's tool: one
//! `wimlib-imagex update` (Linux, or Windows with wimlib installed), else DISM on Windows
//! (mount, copy, unmount with `/Commit`, or `/Discard` on failure). Both programs are looked up
//! through the tools table ([`crate::tools`]), so a missing one is reported with its package.
//!
//! `wimlib-imagex update` gets one `add` command per file on standard input and runs
//! case-insensitively (`WIMLIB_IMAGEX_IGNORE_CASE=1`), so `\Windows\System32` is found however
//! the image spells it. Files already in the image at those paths are replaced.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::tools::{self, Tool};

/// The program that adds files to a WIM image.
#[derive(Debug)]
pub enum WimBackend {
    /// `wimlib-imagex update` (Linux, or Windows with wimlib installed).
    Wimlib(PathBuf),
    /// DISM mount, copy, unmount (Windows).
    #[cfg(windows)]
    Dism(PathBuf),
}

impl WimBackend {
    /// DISM on Windows when it is there, else `wimlib-imagex`, from `PATH` (and, on Unix, the
    /// `sbin` folders). `what` says what the files are added for ("adding the runner to
    /// boot.wim"); it starts the error when neither program is found, which names both and
    /// how to get them.
    pub fn find(what: &str) -> Result<WimBackend> {
        Self::find_in(&std::env::var_os("PATH").unwrap_or_default(), what)
    }

    /// [`WimBackend::find`] with an explicit search path (`PATH` syntax).
    pub fn find_in(path: &std::ffi::OsStr, what: &str) -> Result<WimBackend> {
        #[cfg(windows)]
        if let Some(p) = tools::which_in(Tool::Dism.program(), path) {
            return Ok(WimBackend::Dism(p));
        }
        if let Some(p) = tools::which_in(Tool::WimlibImagex.program(), path) {
            return Ok(WimBackend::Wimlib(p));
        }
        bail!(
            "{what} needs wimlib-imagex or DISM, and neither was found on PATH. \
             wimlib-imagex: {} DISM: {}",
            Tool::WimlibImagex.how_to_get(),
            Tool::Dism.how_to_get()
        )
    }

    /// How the files are added, for a summary line.
    pub fn name(&self) -> &'static str {
        match self {
            WimBackend::Wimlib(_) => "wimlib-imagex update",
            #[cfg(windows)]
            WimBackend::Dism(_) => "DISM",
        }
    }

    /// Adds each `(file name in stage, path in the image)` to image `index` (1-based) of
    /// `wim`, replacing files already there; `wim` is changed in place. File names are plain
    /// (letters, digits, `.`, `_`, `-`) and image paths use `/` and hold no blanks. `work` is a
    /// scratch folder.
    pub fn add_files(
        &self,
        wim: &Path,
        index: u32,
        stage: &Path,
        files: &[(&str, &str)],
        work: &Path,
    ) -> Result<()> {
        match self {
            WimBackend::Wimlib(p) => wimlib_add(p, wim, index, stage, files, work),
            #[cfg(windows)]
            WimBackend::Dism(p) => dism_add(p, wim, index, stage, files, work),
        }
    }
}

/// One `wimlib-imagex update` with an `add` command per file on standard input, run in
/// `stage` so the commands name the files without host paths that would need quoting.
fn wimlib_add(
    program: &Path,
    wim: &Path,
    index: u32,
    stage: &Path,
    files: &[(&str, &str)],
    work: &Path,
) -> Result<()> {
    let mut commands = String::new();
    for (name, in_wim) in files {
        debug_assert!(name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)));
        commands.push_str(&format!("add {name} /{in_wim}\n"));
    }
    let cmd_file = work.join("wimlib-update.txt");
    std::fs::write(&cmd_file, &commands)
        .with_context(|| format!("writing {}", cmd_file.display()))?;
    let stdin = std::fs::File::open(&cmd_file)
        .with_context(|| format!("opening {}", cmd_file.display()))?;
    let args: Vec<OsString> = vec!["update".into(), wim.into(), index.to_string().into()];
    let cmdline = format!(
        "cd {} && WIMLIB_IMAGEX_IGNORE_CASE=1 {} < {}",
        stage.display(),
        tools::command_line(program, &args),
        cmd_file.display()
    );
    let out = std::process::Command::new(program)
        .args(&args)
        .current_dir(stage)
        .env("WIMLIB_IMAGEX_IGNORE_CASE", "1")
        .stdin(stdin)
        .output()
        .with_context(|| format!("starting `{cmdline}`"))?;
    if !out.status.success() {
        bail!(
            "`{cmdline}` failed ({}):\n{}",
            out.status,
            tail(&out.stderr, 1024)
        );
    }
    Ok(())
}

/// The last `max` bytes of a program's output, as text.
fn tail(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end();
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// DISM: mount image `index` of `wim`, copy the files in, unmount with `/Commit`; on any
/// failure after mounting, unmount with `/Discard` so no mount is left behind.
#[cfg(windows)]
fn dism_add(
    program: &Path,
    wim: &Path,
    index: u32,
    stage: &Path,
    files: &[(&str, &str)],
    work: &Path,
) -> Result<()> {
    let mount = work.join("mount");
    std::fs::create_dir_all(&mount).with_context(|| format!("creating {}", mount.display()))?;
    let arg = |prefix: &str, p: &Path| {
        let mut s = OsString::from(prefix);
        s.push(p.as_os_str());
        s
    };
    let mount_args = vec![
        OsString::from("/English"),
        "/Mount-Image".into(),
        arg("/ImageFile:", wim),
        format!("/Index:{index}").into(),
        arg("/MountDir:", &mount),
    ];
    tools::run_program(program, &mount_args, "mounting boot.wim with DISM")?;
    let copied = (|| -> Result<()> {
        for (name, in_wim) in files {
            let host = stage.join(name);
            let dest = mount.join(in_wim.replace('/', "\\"));
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::copy(&host, &dest)
                .with_context(|| format!("copying {} to {}", host.display(), dest.display()))?;
        }
        Ok(())
    })();
    let unmount = |how: &str| {
        let args = vec![
            OsString::from("/English"),
            "/Unmount-Image".into(),
            arg("/MountDir:", &mount),
            how.into(),
        ];
        tools::run_program(program, &args, "unmounting boot.wim with DISM")
    };
    match copied {
        Ok(()) => {
            unmount("/Commit")?;
            Ok(())
        }
        Err(e) => {
            if let Err(u) = unmount("/Discard") {
                return Err(e.context(format!(
                    "and discarding the mounted image failed too ({u:#}); run dism \
                     /Cleanup-Mountpoints"
                )));
            }
            Err(e)
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_missing_wim_tool_names_both() {
        let empty = tempfile::tempdir().unwrap();
        match WimBackend::find_in(empty.path().as_os_str(), "adding the runner to boot.wim") {
            // Installed in an sbin folder, which is always searched: nothing to check.
            Ok(_) => eprintln!("SKIP wimlib-imagex is in an sbin folder"),
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("wimlib-imagex or DISM"), "{e}");
                assert!(e.contains("apt-get install wimtools"), "{e}");
                assert!(e.contains("dism is a Windows program"), "{e}");
            }
        }
    }
}
