//! `tsforge capture`, `apply` and `image info|verify`: tsforge, WIM and raw images.

use super::progress::ProgressLine;
use super::Exit;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct CaptureConfig {
    /// What to capture: a directory, or a partition `DISK:N` (FAT read directly; ext2/3/4, XFS
    /// and NTFS mounted read-only, as root)
    #[arg(value_name = "SRC")]
    pub src: PathBuf,
    /// The image to write
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
    /// The image's name (default: SRC's folder name)
    #[arg(long, value_name = "N")]
    pub name: Option<String>,
    /// The image's description
    #[arg(long, value_name = "D", default_value = "")]
    pub description: String,
    /// How file contents are compressed; `deflate` makes images that any ZIP tool
    /// (unzip, zipinfo, Windows Explorer) can test and unpack. Already-compressed data is
    /// stored either way
    #[arg(long, value_enum, default_value = "zstd")]
    pub compression: crate::image::Compression,
    /// Threads for hashing and compression (0: all cores)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
    /// Overwrite IMAGE if it exists
    #[arg(long)]
    pub force: bool,
    /// Leave out paths matching PATTERN, with what is below them; repeatable. With a `/` the
    /// pattern is a path from SRC (`/var/cache/*`), without one it matches a name anywhere
    /// (`*.tmp`); `*` and `?` do not cross `/` (docs/image-format.md, Capture)
    #[arg(long = "exclude", value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Read more --exclude patterns from FILE, one per line (`#` starts a comment line)
    #[arg(long = "exclude-from", value_name = "FILE")]
    pub exclude_from: Vec<PathBuf>,
    /// Also capture what is mounted below SRC (by default a mount point's directory is kept,
    /// empty: capturing a running system's `/` leaves out /proc, /sys, /dev, /run)
    #[arg(long)]
    pub cross_file_systems: bool,
}

#[derive(Debug, Args)]
pub struct ApplyConfig {
    /// The image to apply
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
    /// Where to apply: a directory (created if missing), a partition `DISK:N` (an image
    /// file or device and a 1-based partition number; a tsforge image goes straight into a FAT
    /// partition; ext2/3/4, XFS and NTFS are mounted, as root), or a whole DISK (raw images)
    #[arg(value_name = "TARGET")]
    pub target: PathBuf,
    /// The image to apply from a WIM file
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub index: u32,
    /// Write to a disk that has a mounted file system
    #[arg(long)]
    pub allow_mounted: bool,
    /// Apply into a non-empty TARGET: the image's paths replace what is there, other files
    /// stay
    #[arg(long)]
    pub force: bool,
    /// Write IMAGE byte for byte onto the disk or partition (plain, zstd or gzip), whatever
    /// its name. Without it a raw image must be named .img, .raw, .iso, .bin or .dd
    /// (optionally .zst or .gz); a file that starts like a ZIP or is named .tsimg is always a
    /// tsforge image, and an error if it is damaged
    #[arg(long)]
    pub raw: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Print what an image holds (from its manifest; fast)
    Info(ImageInfoConfig),
    /// Read a whole image and check every file against its sha256 (exit 1 on a mismatch
    /// or a corrupt image)
    Verify(ImageVerifyConfig),
}

#[derive(Debug, Args)]
pub struct ImageInfoConfig {
    /// The image
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub format: InfoFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum InfoFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ImageVerifyConfig {
    /// The image
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
}

fn print_info(info: &crate::image::ImageInfo, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "name:           {}", info.name)?;
    writeln!(out, "description:    {}", info.description)?;
    writeln!(out, "created:        {} (Unix seconds)", info.created)?;
    writeln!(out, "tsforge:        {}", info.tsforge_version)?;
    writeln!(out, "compression:    {}", info.compression.as_str())?;
    writeln!(
        out,
        "entries:        {} files, {} directories, {} links",
        info.files, info.dirs, info.symlinks
    )?;
    if info.hardlinks + info.devices + info.fifos > 0 {
        writeln!(
            out,
            "                {} hard links, {} device nodes, {} FIFOs",
            info.hardlinks, info.devices, info.fifos
        )?;
    }
    writeln!(out, "total bytes:    {}", info.total_bytes)?;
    writeln!(out, "distinct bytes: {}", info.stored_bytes)?;
    writeln!(out, "image bytes:    {}", info.image_bytes)
}

pub fn capture_cmd(c: CaptureConfig) -> Result<Exit> {
    use crate::image;
    use crate::volume::{self, Location};
    if c.image.exists() && !c.force {
        bail!("{} exists; pass --force to overwrite it", c.image.display());
    }
    let source = Location::parse(&c.src.to_string_lossy());
    let mut exclude = c.exclude.clone();
    for f in &c.exclude_from {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading the exclusion list {}", f.display()))?;
        exclude.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    if !matches!(source, Location::Dir(_)) {
        if !exclude.is_empty() || c.cross_file_systems {
            bail!(
                "--exclude, --exclude-from and --cross-file-systems apply to a folder; {source} \
                 is a partition or disk (capture its mounted folder instead)"
            );
        }
        let opts = image::CaptureOptions {
            name: c.name.clone().unwrap_or_else(|| "Captured image".into()),
            description: c.description.clone(),
            compression: c.compression,
            threads: c.threads,
        };
        let scratch = std::env::temp_dir();
        let mut line = ProgressLine::new("capture");
        let mut left_out = Vec::new();
        let r = volume::capture(
            &source,
            &c.image,
            &opts,
            &scratch,
            &mut |p| line.update(p),
            &mut left_out,
            &[],
        );
        line.done();
        for l in left_out {
            eprintln!("left out: {l}");
        }
        let info = r.with_context(|| format!("capturing {source} into {}", c.image.display()))?;
        for w in info.iter().flat_map(|i| &i.warnings) {
            eprintln!("{w}");
        }
        eprintln!(
            "captured {source} into {} in {:.1} s",
            c.image.display(),
            line.start.elapsed().as_secs_f64()
        );
        return Ok(Exit::Ok);
    }
    let src =
        std::fs::canonicalize(&c.src).with_context(|| format!("opening {}", c.src.display()))?;
    let out_dir = c
        .image
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(d) = std::fs::canonicalize(out_dir) {
        if d.starts_with(&src) {
            bail!(
                "{} is inside {}: the image would capture itself; write it elsewhere",
                c.image.display(),
                c.src.display()
            );
        }
    }
    let name = c.name.unwrap_or_else(|| {
        src.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let opts = image::CaptureOptions {
        name,
        description: c.description,
        compression: c.compression,
        threads: c.threads,
    };
    let mut line = ProgressLine::new("capture");
    let source = image::DirSource::with_filter(
        &src,
        image::CaptureFilter {
            exclude,
            cross_file_systems: c.cross_file_systems,
        },
    );
    let r = image::capture(&source, &c.image, &opts, &mut |p| line.update(p));
    line.done();
    for l in source.left_out() {
        eprintln!("left out: {l}");
    }
    let info =
        r.with_context(|| format!("capturing {} into {}", c.src.display(), c.image.display()))?;
    eprintln!(
        "captured {} files ({} MiB, {} MiB distinct) into {} ({} MiB) in {:.1} s",
        info.files,
        info.total_bytes >> 20,
        info.stored_bytes >> 20,
        c.image.display(),
        info.image_bytes >> 20,
        line.start.elapsed().as_secs_f64()
    );
    Ok(Exit::Ok)
}

pub fn apply_cmd(c: ApplyConfig) -> Result<Exit> {
    use crate::image;
    use crate::volume::{self, Location};
    let target = Location::parse(&c.target.to_string_lossy());
    if !matches!(target, Location::Dir(_))
        || volume::detect(&c.image, c.raw)? != volume::ImageKind::Tsforge
    {
        if let Location::Disk(d) | Location::Partition { disk: d, .. } = &target {
            crate::disk::select::check_target(d, c.allow_mounted, false)?;
        }
        let mut line = ProgressLine::new("apply");
        let res = volume::apply(&c.image, c.index, &target, c.force, c.raw, &mut |p| {
            line.update(p)
        });
        line.done();
        let info = res.with_context(|| format!("applying {} to {target}", c.image.display()))?;
        for w in info.iter().flat_map(|i| &i.warnings) {
            eprintln!("warning: {w}");
        }
        eprintln!(
            "applied {} to {target} in {:.1} s",
            c.image.display(),
            line.start.elapsed().as_secs_f64()
        );
        return Ok(Exit::Ok);
    }
    let f =
        std::fs::File::open(&c.image).with_context(|| format!("opening {}", c.image.display()))?;
    let mut r = std::io::BufReader::with_capacity(crate::sys::BUFFER_SIZE, f);
    let mut sink = image::DirSink::new(&c.target, c.force)?;
    let mut line = ProgressLine::new("apply");
    let res = image::apply(&mut r, &mut sink, &mut |p| line.update(p));
    line.done();
    let info = res.with_context(|| {
        format!(
            "applying {} to {} (the target may hold a partial tree)",
            c.image.display(),
            c.target.display()
        )
    })?;
    for w in &info.warnings {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "applied {} files ({} MiB) to {} in {:.1} s",
        info.files,
        info.total_bytes >> 20,
        c.target.display(),
        line.start.elapsed().as_secs_f64()
    );
    Ok(Exit::Ok)
}

pub fn image_info_cmd(c: ImageInfoConfig) -> Result<Exit> {
    let info = crate::image::info(&c.image)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match c.format {
        InfoFormat::Text => print_info(&info, &mut out)?,
        InfoFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &info)?;
            writeln!(out)?;
        }
    }
    Ok(Exit::Ok)
}

pub fn image_verify_cmd(c: ImageVerifyConfig) -> Result<Exit> {
    // A missing or unreadable image is an error (exit 2), not a "no".
    std::fs::File::open(&c.image).with_context(|| format!("opening {}", c.image.display()))?;
    let mut line = ProgressLine::new("verify");
    let r = crate::image::verify_with_progress(&c.image, &mut |p| line.update(p));
    line.done();
    match r {
        Ok(info) => {
            println!(
                "{}: OK ({} files, {} bytes checked)",
                c.image.display(),
                info.files,
                info.total_bytes
            );
            Ok(Exit::Ok)
        }
        Err(e) => {
            println!("{}: FAILED: {e:#}", c.image.display());
            Ok(Exit::No)
        }
    }
}
