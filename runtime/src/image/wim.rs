//! WIM images through the platform's tool: `wimlib-imagex` on Linux, DISM on Windows (both
//! found through [`crate::tools`], so a missing one is a clear error naming its package).
//!
//! | operation | Linux (wimlib-imagex) | Windows (DISM) |
//! |---|---|---|
//! | [`apply`] | `apply WIM INDEX TARGET [--ref=GLOB]` | `/Apply-Image /ImageFile: /Index: /ApplyDir: [/SWMFile:]` |
//! | [`capture`] | `capture DIR WIM NAME [DESC] --compress=…` | `/Capture-Image /ImageFile: /CaptureDir: /Name: [/Description:] /Compress:` |
//! | [`info`] | `info WIM` | `/Get-ImageInfo /ImageFile:` |
//!
//! A split WIM (`.swm`) is applied from its first part; the other parts are found next to it
//! by name (`install.swm`, `install2.swm`, …), as both tools expect.
//!
//! On Linux, `apply`'s target may also be an unformatted-but-NTFS block device: wimlib then
//! writes the NTFS volume directly, keeping Windows' security descriptors and attributes.
//!
//! Two parts for changing an existing WIM (the builder's Windows PE template uses them):
//! [`header`] reads and checks a WIM file's header itself ([`WimHeader`]: image count, boot
//! index, split and pipable WIMs), and [`update`] adds files to one of its images
//! ([`WimBackend`]: `wimlib-imagex update`, or DISM mount/copy/unmount on Windows).

pub mod header;
pub mod update;

pub use header::WimHeader;
pub use update::WimBackend;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use crate::tools::{self, Tool};

/// One image in a WIM file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WimImage {
    /// 1-based, as both tools count.
    pub index: u32,
    pub name: String,
    pub description: String,
}

/// What [`info`] reads from a WIM file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WimInfo {
    pub images: Vec<WimImage>,
}

/// WIM compression, by the names users write (`none`, `fast`/`xpress`, `maximum`/`max`/`lzx`,
/// `recovery`/`lzms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Fast,
    Maximum,
    Recovery,
}

impl Compression {
    pub fn parse(s: &str) -> Result<Compression> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "none" => Compression::None,
            "fast" | "xpress" => Compression::Fast,
            "maximum" | "max" | "lzx" | "" => Compression::Maximum,
            "recovery" | "lzms" => Compression::Recovery,
            _ => bail!(
                "unknown WIM compression {s:?}; use none, fast (XPRESS), maximum (LZX) or \
                 recovery (LZMS)"
            ),
        })
    }

    /// The `--compress=` value of wimlib-imagex.
    pub fn wimlib_name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Fast => "XPRESS",
            Compression::Maximum => "LZX",
            Compression::Recovery => "LZMS",
        }
    }

    /// The `/Compress:` value of DISM.
    pub fn dism_name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Fast => "fast",
            Compression::Maximum => "max",
            Compression::Recovery => "recovery",
        }
    }
}

/// Apply image `index` (1-based) of `wim` to `target_dir` (on Linux also an NTFS block device).
pub fn apply(wim: &Path, index: u32, target_dir: &Path) -> Result<()> {
    let what = format!(
        "applying image {index} of {} to {}",
        wim.display(),
        target_dir.display()
    );
    check_input(wim).with_context(|| what.clone())?;
    if index == 0 {
        bail!("{what}: WIM image indexes start at 1");
    }
    if !target_dir.exists() {
        bail!("{what}: the target {} does not exist", target_dir.display());
    }
    let (tool, args) = apply_args(wim, index, target_dir);
    tools::run(tool, args, &what)?;
    Ok(())
}

/// Capture `src_dir` into a new WIM file `wim` as an image called `name`. `compress` is one of
/// the names [`Compression::parse`] knows. An existing `wim` is never overwritten.
pub fn capture(
    src_dir: &Path,
    wim: &Path,
    name: &str,
    description: &str,
    compress: &str,
) -> Result<()> {
    capture_excluding(src_dir, wim, name, description, compress, &[])
}

/// What `wimlib-imagex capture` leaves out when no `--config` is given (its manual,
/// wimcapture(1), "--config"); a configuration file replaces that list, so it is repeated in
/// ours.
const WIMLIB_DEFAULT_EXCLUSIONS: &[&str] = &[
    "\\$ntfs.log",
    "\\hiberfil.sys",
    "\\pagefile.sys",
    "\\swapfile.sys",
    "\\System Volume Information",
    "\\RECYCLER",
    "\\$RECYCLE.BIN",
    "\\$Recycle.Bin",
    "\\Windows\\CSC",
];

/// [`capture`], leaving out `exclude` (paths from the root, `/_SMSTaskSequence`; a directory
/// with what it holds) through a capture configuration file's `[ExclusionList]` (wimlib
/// `--config=`, DISM `/ConfigFile:`). On Linux `src` may also be a block device holding an
/// unmounted NTFS volume: wimlib then reads it with libntfs-3g (its "NTFS volume capture"
/// mode), keeping security descriptors, alternate data streams and reparse points.
pub fn capture_excluding(
    src: &Path,
    wim: &Path,
    name: &str,
    description: &str,
    compress: &str,
    exclude: &[&str],
) -> Result<()> {
    let what = format!("capturing {} into {}", src.display(), wim.display());
    let compression = Compression::parse(compress).with_context(|| what.clone())?;
    if !src.is_dir() && !is_block_device(src) {
        bail!("{what}: {} is not a directory", src.display());
    }
    if wim.exists() {
        bail!(
            "{what}: {} already exists; remove it or choose another name",
            wim.display()
        );
    }
    if name.is_empty() {
        bail!("{what}: the image needs a name");
    }
    let config = if exclude.is_empty() {
        None
    } else {
        let mut text = String::from("[ExclusionList]\n");
        for p in WIMLIB_DEFAULT_EXCLUSIONS.iter().chain(exclude) {
            text.push_str(p);
            text.push('\n');
        }
        let mut f = tempfile::Builder::new()
            .prefix("tsforge-wimcapture-")
            .suffix(".ini")
            .tempfile()
            .with_context(|| format!("{what}: writing the capture configuration file"))?;
        std::io::Write::write_all(&mut f, text.as_bytes())
            .with_context(|| format!("{what}: writing the capture configuration file"))?;
        Some(f)
    };
    let (tool, args) = capture_args(
        src,
        wim,
        name,
        description,
        compression,
        config.as_ref().map(|f| f.path()),
    );
    if let Err(e) = tools::run(tool, args, &what) {
        // A failed capture may leave a partial file: never present it as a WIM.
        let _ = std::fs::remove_file(wim);
        return Err(e);
    }
    Ok(())
}

fn is_block_device(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device())
    }
    #[cfg(not(unix))]
    {
        let _ = p;
        false
    }
}

/// The images in a WIM file.
pub fn info(wim: &Path) -> Result<WimInfo> {
    let what = format!("reading the image list of {}", wim.display());
    check_input(wim).with_context(|| what.clone())?;
    let (tool, args) = info_args(wim);
    let out = tools::run(tool, args, &what)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let info = parse_info(&text);
    if info.images.is_empty() {
        bail!(
            "{what}: the tool listed no images; its output was:\n{}",
            text.trim_end()
        );
    }
    Ok(info)
}

fn check_input(wim: &Path) -> Result<()> {
    if !wim.is_file() {
        bail!("{} does not exist or is not a file", wim.display());
    }
    Ok(())
}

/// For a split WIM's first part `dir/install.swm`: the pattern of all parts, `dir/install*.swm`.
pub fn split_parts_pattern(wim: &Path) -> Option<PathBuf> {
    let ext = wim.extension()?.to_str()?;
    if !ext.eq_ignore_ascii_case("swm") {
        return None;
    }
    let stem = wim.file_stem()?.to_string_lossy();
    Some(wim.with_file_name(format!("{stem}*.{ext}")))
}

/// The parts a split WIM needs besides its first, `dir/install.swm`: `dir/install2.swm` …
/// `dir/installN.swm`, N read from the first part's header (its part number must be 1). Errors
/// name the file and what is wrong; a WIM that is not split needs no other part.
pub fn split_parts(first: &Path) -> Result<Vec<PathBuf>> {
    let mut head = Vec::with_capacity(0x30);
    std::fs::File::open(first)
        .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, 0x30), &mut head))
        .with_context(|| format!("reading {}", first.display()))?;
    if head.len() < 0x30 || !head.starts_with(b"MSWIM\0\0\0") {
        bail!(
            "{} is not a WIM file (it does not start with the MSWIM header)",
            first.display()
        );
    }
    let part = u16::from_le_bytes([head[0x28], head[0x29]]);
    let total = u16::from_le_bytes([head[0x2A], head[0x2B]]);
    if part != 1 {
        bail!(
            "{} is part {part} of a split WIM of {total} parts, not its first part",
            first.display()
        );
    }
    let (Some(stem), Some(ext)) = (first.file_stem(), first.extension()) else {
        bail!("{} has no file name", first.display());
    };
    Ok((2..=total)
        .map(|n| {
            let mut name = stem.to_os_string();
            name.push(format!("{n}."));
            name.push(ext);
            first.with_file_name(name)
        })
        .collect())
}

fn os(s: impl Into<OsString>) -> OsString {
    s.into()
}

fn joined(prefix: &str, p: &Path) -> OsString {
    let mut s = OsString::from(prefix);
    s.push(p.as_os_str());
    s
}

#[cfg(not(windows))]
fn apply_args(wim: &Path, index: u32, target: &Path) -> (Tool, Vec<OsString>) {
    let mut args = vec![os("apply"), os(wim), os(index.to_string()), os(target)];
    if let Some(pattern) = split_parts_pattern(wim) {
        args.push(joined("--ref=", &pattern));
    }
    (Tool::WimlibImagex, args)
}

#[cfg(windows)]
fn apply_args(wim: &Path, index: u32, target: &Path) -> (Tool, Vec<OsString>) {
    let mut args = vec![
        os("/English"),
        os("/Apply-Image"),
        joined("/ImageFile:", wim),
        os(format!("/Index:{index}")),
        joined("/ApplyDir:", target),
    ];
    if let Some(pattern) = split_parts_pattern(wim) {
        args.push(joined("/SWMFile:", &pattern));
    }
    (Tool::Dism, args)
}

#[cfg(not(windows))]
fn capture_args(
    src: &Path,
    wim: &Path,
    name: &str,
    desc: &str,
    c: Compression,
    config: Option<&Path>,
) -> (Tool, Vec<OsString>) {
    let mut args = vec![os("capture"), os(src), os(wim), os(name)];
    if !desc.is_empty() {
        args.push(os(desc));
    }
    args.push(os(format!("--compress={}", c.wimlib_name())));
    if let Some(config) = config {
        args.push(joined("--config=", config));
    }
    (Tool::WimlibImagex, args)
}

#[cfg(windows)]
fn capture_args(
    src: &Path,
    wim: &Path,
    name: &str,
    desc: &str,
    c: Compression,
    config: Option<&Path>,
) -> (Tool, Vec<OsString>) {
    let mut args = vec![
        os("/English"),
        os("/Capture-Image"),
        joined("/ImageFile:", wim),
        joined("/CaptureDir:", src),
        os(format!("/Name:{name}")),
    ];
    if !desc.is_empty() {
        args.push(os(format!("/Description:{desc}")));
    }
    args.push(os(format!("/Compress:{}", c.dism_name())));
    if let Some(config) = config {
        args.push(joined("/ConfigFile:", config));
    }
    (Tool::Dism, args)
}

#[cfg(not(windows))]
fn info_args(wim: &Path) -> (Tool, Vec<OsString>) {
    (Tool::WimlibImagex, vec![os("info"), os(wim)])
}

#[cfg(windows)]
fn info_args(wim: &Path) -> (Tool, Vec<OsString>) {
    (
        Tool::Dism,
        vec![
            os("/English"),
            os("/Get-ImageInfo"),
            joined("/ImageFile:", wim),
        ],
    )
}

/// Read the image list from `wimlib-imagex info` or `dism /English /Get-ImageInfo` output:
/// `Key: value` (wimlib, aligned with spaces) or `Key : value` (DISM) lines, an `Index` line
/// starting each image. Values keep everything after the first colon, so names with colons
/// survive. Lines of other shapes are ignored.
pub fn parse_info(text: &str) -> WimInfo {
    let mut images: Vec<WimImage> = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim();
        let value = value.trim();
        match key {
            "Index" => {
                if let Ok(index) = value.parse::<u32>() {
                    images.push(WimImage {
                        index,
                        name: String::new(),
                        description: String::new(),
                    });
                }
            }
            "Name" => {
                if let Some(img) = images.last_mut() {
                    img.name = value.to_string();
                }
            }
            "Description" => {
                if let Some(img) = images.last_mut() {
                    // DISM prints "<undefined>" for an image without a description.
                    if value != "<undefined>" {
                        img.description = value.to_string();
                    }
                }
            }
            _ => {}
        }
    }
    WimInfo { images }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIMLIB: &str = "WIM Information:
----------------
Path:           wt/t.wim
GUID:           0xe8cb819e641d8a466be8890b9731014b
Version:        68864
Image Count:    2
Compression:    LZX
Part Number:    1/1
Attributes:     Relative path junction

Available Images:
-----------------
Index:                  1
Name:                   My Image
Description:            
Directory Count:        2
Creation Time:          Wed Nov 25 04:29:08 2026 UTC

Index:                  2
Name:                   Two: colon
Description:            desc with : colon
Display Name:           shown
WIMBoot compatible:     no
";

    const DISM: &str = "
Deployment Image Servicing and Management tool
Version: 10.0.22621.1

Details for image : D:\\sources\\install.wim

Index : 1
Name : Windows 11 Pro
Description : Windows 11 Pro
Size : 16,321,255,446 bytes

Index : 6
Name : Windows 11 Education
Description : <undefined>
Size : 16,000 bytes

The operation completed successfully.
";

    #[test]
    fn parses_wimlib_info() {
        let info = parse_info(WIMLIB);
        assert_eq!(
            info.images,
            vec![
                WimImage {
                    index: 1,
                    name: "My Image".into(),
                    description: "".into()
                },
                WimImage {
                    index: 2,
                    name: "Two: colon".into(),
                    description: "desc with : colon".into()
                },
            ]
        );
    }

    #[test]
    fn parses_dism_info() {
        let info = parse_info(&DISM.replace('\n', "\r\n"));
        assert_eq!(info.images.len(), 2);
        assert_eq!(info.images[0].name, "Windows 11 Pro");
        assert_eq!(info.images[1].index, 6);
        assert_eq!(info.images[1].description, "");
    }

    #[test]
    fn compression_names() {
        assert_eq!(Compression::parse("LZX").unwrap(), Compression::Maximum);
        assert_eq!(Compression::parse("fast").unwrap().wimlib_name(), "XPRESS");
        assert_eq!(Compression::parse("max").unwrap().dism_name(), "max");
        let e = Compression::parse("zip").unwrap_err().to_string();
        assert!(e.contains("none, fast"), "{e}");
    }

    #[test]
    fn split_parts_from_the_first_parts_header() {
        let dir = tempfile::tempdir().unwrap();
        let header = |part: u16, total: u16| {
            let mut h = vec![0u8; 208];
            h[..8].copy_from_slice(b"MSWIM\0\0\0");
            h[0x28..0x2A].copy_from_slice(&part.to_le_bytes());
            h[0x2A..0x2C].copy_from_slice(&total.to_le_bytes());
            h
        };
        let first = dir.path().join("install.swm");
        std::fs::write(&first, header(1, 3)).unwrap();
        assert_eq!(
            split_parts(&first).unwrap(),
            vec![
                dir.path().join("install2.swm"),
                dir.path().join("install3.swm")
            ]
        );
        let whole = dir.path().join("install.wim");
        std::fs::write(&whole, header(1, 1)).unwrap();
        assert!(split_parts(&whole).unwrap().is_empty());
        std::fs::write(&first, header(2, 3)).unwrap();
        let e = split_parts(&first).unwrap_err().to_string();
        assert!(e.contains("is part 2 of a split WIM of 3 parts"), "{e}");
        std::fs::write(&first, b"not a wim").unwrap();
        let e = split_parts(&first).unwrap_err().to_string();
        assert!(e.contains("not a WIM file"), "{e}");
    }

    #[test]
    fn split_pattern() {
        assert_eq!(
            split_parts_pattern(Path::new("/d/install.swm")),
            Some(PathBuf::from("/d/install*.swm"))
        );
        assert_eq!(split_parts_pattern(Path::new("/d/install.wim")), None);
    }
}
