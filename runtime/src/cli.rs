//! The runner half of the `tsforge` command line: `validate`, `run`, `convert`, `env`,
//! `capture`, `apply`, `image info|verify`.
//! The runner half of the `tsforge` command line: `validate`, `run`, `convert`, `env`, `disk`.
//!
//! One `…Config` struct and one function per leaf command; the thin binary in the workspace
//! root flattens [`RunnerCmd`] into its own command tree next to the builder's commands.
//! Exit codes (also in `--help`): 0 done; 1 the answer is "no" (validation errors, the
//! sequence failed); 2 an error stopped the command; 3 a restart was requested (`--no-reboot`).

use crate::actions::custom::{CustomActions, MANIFEST_NAME};
use crate::engine::validate;
use crate::engine::{self, program::Resolver, RunOptions, RunOutcome, EXIT_RESTART};
use crate::envfile;
use crate::error::Severity;
use crate::log::Console;
use crate::sequence::{self, Format};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const EXIT_OK: u8 = 0;
pub const EXIT_NO: u8 = 1;
pub const EXIT_ERROR: u8 = 2;

/// Help text listing the exit codes.
pub const EXIT_CODES_HELP: &str = "Exit codes: 0 done; 1 the command ran and the answer is \"no\" \
(validation errors, the sequence failed); 2 an error stopped the command (bad arguments, I/O, \
corrupt state); 3 `run --no-reboot`: a Restart Computer step asked for a restart (run again \
with the same --state-dir to resume).";

#[derive(Debug, Subcommand)]
pub enum RunnerCmd {
    /// Check task sequences (YAML or ConfigMgr/MDT XML) and report every problem
    ///
    /// Prints each finding as FILE:LINE:COL: message. Exits 0 when there are no errors
    /// (warnings allowed), 1 when any file has errors.
    Validate(ValidateConfig),
    /// Run a task sequence (or resume it from its state directory)
    ///
    /// Every step is journaled before and after it runs, so running the same command again
    /// after a restart, a killed runner or a power cut resumes at the right step.
    Run(RunConfig),
    /// Convert a sequence between YAML and ConfigMgr/MDT XML without loss
    Convert(ConvertConfig),
    /// Get and set task sequence variables from inside a step or hook
    #[command(subcommand)]
    Env(EnvCmd),
    /// Capture a directory into a tsforge image
    ///
    /// The image is a ZIP archive: a manifest (every path with size, sha256, mode, time,
    /// link target) and each distinct content once. It is written to IMAGE.tmp and renamed
    /// when complete. Set SOURCE_DATE_EPOCH for a byte-identical image of the same tree.
    /// See docs/image-format.md.
    Capture(CaptureConfig),
    /// Apply a tsforge, WIM or raw image to a directory, a partition or a disk
    ///
    /// A tsforge image is read once from front to back and every file checked against its
    /// sha256; a mismatch stops the apply with the file's name. A damaged or truncated image
    /// file fails before anything is written. TARGET (a directory) must be empty or missing
    /// unless --force. See docs/image-format.md.
    Apply(ApplyConfig),
    /// List and inspect disks, write partition tables and format FAT partitions
    #[command(subcommand)]
    Disk(crate::disk::cli::DiskCmd),
    /// Inspect and check tsforge images
    #[command(subcommand)]
    Image(ImageCmd),
    /// Content packages: build them into a distribution point, list, verify
    #[command(subcommand)]
    Package(crate::content::PackageCmd),
    /// Start from a tsforge medium: verify it, ask for its password, run its pre-execution
    /// hooks, select a task sequence and run it (what the boot environment starts)
    Boot(crate::boot::BootConfig),
    /// Make an ed25519 key pair for signing media (NAME.key, secret; NAME.pub)
    Keygen(KeygenConfig),
    /// Check or describe a medium (a folder or a mounted medium)
    #[command(subcommand)]
    Media(MediaCmd),
}

#[derive(Debug, Args)]
pub struct KeygenConfig {
    /// Path prefix of the two files (NAME.key and NAME.pub)
    #[arg(short, long, value_name = "NAME")]
    pub output: PathBuf,
    /// Overwrite existing key files
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum MediaCmd {
    /// Check every file against the manifest and the signature (exit 1 naming each problem)
    Verify(MediaVerifyConfig),
    /// Show what a medium holds: sequences, hooks, variables, packages, signature
    Inspect(MediaVerifyConfig),
}

#[derive(Debug, Args)]
pub struct MediaVerifyConfig {
    /// The medium: a folder (a `dir` output, or a mounted USB stick or ISO)
    #[arg(value_name = "MEDIUM")]
    pub medium: PathBuf,
    /// The ed25519 public key (hex, or a .pub file) the medium must be signed with
    #[arg(long, value_name = "KEY")]
    pub public_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct CaptureConfig {
    /// What to capture: a directory, or a FAT partition `DISK:N`
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
}

#[derive(Debug, Args)]
pub struct ApplyConfig {
    /// The image to apply
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
    /// Where to apply: a directory (created if missing), a partition `DISK:N` (an image
    /// file or device and a 1-based partition number; a tsforge image goes straight into a FAT
    /// partition), or a whole DISK (raw images)
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

/// Options shared by commands that load sequences.
#[derive(Debug, Clone, Args)]
pub struct SequenceOptions {
    /// Custom action manifest (TOML) mapping step types to programs; repeatable.
    /// A custom-actions.toml next to the sequence is read automatically.
    #[arg(long = "actions", value_name = "FILE")]
    pub actions: Vec<PathBuf>,
    /// Folder searched for child sequences of Run Task Sequence steps (ID.yaml, ID.xml, …);
    /// repeatable. The sequence's own folder is always searched first.
    #[arg(long = "sequence-dir", value_name = "DIR")]
    pub sequence_dirs: Vec<PathBuf>,
}

impl SequenceOptions {
    fn custom_actions(&self, sequence: &Path) -> Result<CustomActions> {
        let mut c = CustomActions::default();
        let beside = sequence
            .parent()
            .unwrap_or(Path::new("."))
            .join(MANIFEST_NAME);
        if beside.is_file() {
            c.load(&beside)?;
        }
        for a in &self.actions {
            c.load(a)?;
        }
        Ok(c)
    }
    fn resolver(&self) -> Resolver {
        Resolver {
            search_dirs: self.sequence_dirs.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct ValidateConfig {
    /// Sequence files (YAML or XML; the format is detected from the content)
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub seq: SequenceOptions,
}

#[derive(Debug, Args)]
pub struct RunConfig {
    /// The sequence file (YAML or ConfigMgr/MDT XML)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Where the run keeps its journal; run again with the same folder to resume
    #[arg(
        long,
        value_name = "DIR",
        default_value = "tsforge-state",
        env = "TSFORGE_STATE_DIR"
    )]
    pub state_dir: PathBuf,
    /// Where smsts.log and events.jsonl go (default: the state directory)
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Set a variable before the first step (overrides the sequence's defaults); repeatable
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// On a Restart Computer step, exit with code 3 instead of restarting the machine
    #[arg(long)]
    pub no_reboot: bool,
    /// Print the steps that would run (assuming every step succeeds) and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not fsync the journal (faster, not power-cut safe; for benchmarks and tests)
    #[arg(long, hide = true)]
    pub no_fsync: bool,
    /// Map disk number N of the sequence (DiskIndex) to an image file or device; repeatable
    #[arg(long = "disk", value_name = "N=PATH", value_parser = parse_disk)]
    pub disks: Vec<(u32, PathBuf)>,
    /// A distribution point: a folder or an http(s):// URL holding content packages (made with
    /// `tsforge package build`); repeatable, tried in order before SMSTSContentLocations
    #[arg(long = "content", value_name = "DIR|URL")]
    pub content: Vec<String>,
    /// Accept only packages signed with this ed25519 public key (hex, or a .pub file from
    /// `tsforge keygen`); without it, package hashes give integrity, not authenticity
    #[arg(long, value_name = "KEY")]
    pub public_key: Option<String>,
    /// Let disk steps write to a disk that has a mounted file system
    #[arg(long)]
    pub allow_mounted: bool,
    /// Keep the run's state on the deployed disk once a Format and Partition Disk step made
    /// one (_SMSTaskSequence on its FAT partition, as `tsforge boot` does), and, when
    /// --state-dir holds no run, resume the run found there on the sequence's disks
    #[arg(long)]
    pub state_on_disk: bool,
    /// Rotate smsts.log when it would exceed this many bytes
    #[arg(long, hide = true, default_value_t = crate::log::cmtrace::DEFAULT_MAX_SIZE)]
    pub max_log_size: u64,
    #[command(flatten)]
    pub seq: SequenceOptions,
}

#[derive(Debug, Args)]
pub struct ConvertConfig {
    /// The sequence file to convert
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Output format
    #[arg(long, value_enum)]
    pub to: Format,
    /// Write here instead of standard output (written to a temporary name, then renamed)
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Overwrite OUT if it exists
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum EnvCmd {
    /// Print a variable's value (exit 1 when it is not set)
    Get { name: String },
    /// Set a variable for the steps that follow (only inside a step: needs TSFORGE_ENV_FILE)
    Set { name: String, value: String },
    /// List the task sequence variables visible to this step as NAME=VALUE
    List,
}

/// `NAME=VALUE` for `--var`.
pub fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((n, v)) if crate::vars::valid_name(n) => Ok((n.to_string(), v.to_string())),
        Some((n, _)) => Err(format!("invalid variable name {n:?}")),
        None => Err(format!("expected NAME=VALUE, found {s:?}")),
    }
}

/// `N=PATH` for `--disk`.
pub fn parse_disk(s: &str) -> Result<(u32, PathBuf), String> {
    match s.split_once('=') {
        Some((n, p)) if !p.is_empty() => n
            .trim()
            .parse::<u32>()
            .map(|n| (n, PathBuf::from(p)))
            .map_err(|_| format!("disk number {n:?} is not a whole number (expected N=PATH)")),
        _ => Err(format!("expected N=PATH (e.g. 0=disk.img), found {s:?}")),
    }
}

/// Run one runner command; returns the process exit code.
pub fn dispatch(cmd: RunnerCmd) -> Result<u8> {
    match cmd {
        RunnerCmd::Validate(c) => validate_cmd(c),
        RunnerCmd::Run(c) => run_cmd(c),
        RunnerCmd::Convert(c) => convert_cmd(c),
        RunnerCmd::Env(c) => env_cmd(c),
        RunnerCmd::Capture(c) => capture_cmd(c),
        RunnerCmd::Apply(c) => apply_cmd(c),
        RunnerCmd::Image(ImageCmd::Info(c)) => image_info_cmd(c),
        RunnerCmd::Image(ImageCmd::Verify(c)) => image_verify_cmd(c),
        RunnerCmd::Disk(c) => crate::disk::cli::dispatch(c),
        RunnerCmd::Package(c) => crate::content::dispatch(c),
        RunnerCmd::Boot(c) => crate::boot::boot_cmd(c),
        RunnerCmd::Keygen(c) => keygen_cmd(c),
        RunnerCmd::Media(MediaCmd::Verify(c)) => media_verify_cmd(c, false),
        RunnerCmd::Media(MediaCmd::Inspect(c)) => media_verify_cmd(c, true),
    }
}

pub fn validate_cmd(c: ValidateConfig) -> Result<u8> {
    let mut errors = 0usize;
    let mut warnings = 0usize;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for file in &c.files {
        let ctx = validate::Context {
            custom: c.seq.custom_actions(file)?,
            resolver: c.seq.resolver(),
        };
        match sequence::load(file) {
            Err(e) => {
                errors += 1;
                writeln!(out, "{e}")?;
            }
            Ok((seq, _)) => {
                for d in validate::validate(&seq, file, &ctx) {
                    match d.severity {
                        Severity::Error => errors += 1,
                        Severity::Warning => warnings += 1,
                    }
                    writeln!(out, "{d}")?;
                }
            }
        }
    }
    eprintln!(
        "{} file(s): {errors} error(s), {warnings} warning(s)",
        c.files.len()
    );
    Ok(if errors > 0 { EXIT_NO } else { EXIT_OK })
}

pub fn run_cmd(mut c: RunConfig) -> Result<u8> {
    // Absolute, so locations stored in variables (OSDisk = DISK:N) stay valid in any step.
    for (_, p) in c.disks.iter_mut() {
        *p = std::path::absolute(&*p).with_context(|| format!("resolving {}", p.display()))?;
    }
    for p in c.content.iter_mut() {
        if !crate::content::http::is_url(p) {
            let abs = std::path::absolute(&*p).with_context(|| format!("resolving {p}"))?;
            *p = abs.to_string_lossy().into_owned();
        }
    }
    let package_public_key = c
        .public_key
        .as_deref()
        .map(crate::media::public_key_arg)
        .transpose()?;
    // A --disk that is a block device in use (mounted, swap, held by dm/md) or the boot medium
    // is refused before any step runs; the disk steps check again when they reach it.
    for (n, p) in &c.disks {
        crate::disk::select::check_target(p, c.allow_mounted, false)
            .with_context(|| format!("--disk {n}={}", p.display()))?;
    }
    let resolver = c.seq.resolver();
    let custom = c.seq.custom_actions(&c.file)?;
    if c.dry_run {
        let program = engine::load_program(&c.file, &resolver)?;
        let mut opts = RunOptions::new(&c.state_dir);
        opts.vars = c.vars.clone();
        let log_dir = c.log_dir.clone().unwrap_or_else(|| c.state_dir.clone());
        let vars = engine::initial_vars(&program, &opts, &log_dir);
        let targets = crate::actions::RunTargets {
            disks: c.disks.clone(),
            content: c.content.clone(),
            allow_mounted: c.allow_mounted,
            package_public_key: package_public_key.clone(),
        };
        let plan = engine::plan::plan(&program, vars, &custom, &targets);
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for line in plan {
            writeln!(out, "{line}")?;
        }
        return Ok(EXIT_OK);
    }
    let targets = crate::actions::RunTargets {
        disks: c.disks,
        content: c.content,
        allow_mounted: c.allow_mounted,
        package_public_key,
    };
    let home = if c.state_on_disk {
        engine::home::resume_into(&c.state_dir, &targets)?
    } else {
        None
    };
    let opts = RunOptions {
        state_dir: c.state_dir,
        log_dir: c.log_dir,
        vars: c.vars,
        secret_vars: Vec::new(),
        no_reboot: c.no_reboot,
        fsync: !c.no_fsync,
        custom,
        resolver,
        console: Console::detect(),
        max_log_size: c.max_log_size,
        targets,
        state_on_disk: c.state_on_disk,
        home,
    };
    Ok(match engine::run(&c.file, &opts)? {
        RunOutcome::Succeeded => EXIT_OK,
        RunOutcome::Failed => EXIT_NO,
        RunOutcome::RestartRequested => EXIT_RESTART,
    })
}

pub fn convert_cmd(c: ConvertConfig) -> Result<u8> {
    let (seq, _) = sequence::load(&c.file)?;
    let text = sequence::write(&seq, c.to);
    // Never hand out a file that does not read back as the same sequence: YAML can carry
    // attribute names or raw XML that XML cannot represent.
    match sequence::parse_str(&text, Path::new("(converted output)"), c.to) {
        Ok(back) if back == seq => {}
        Ok(_) => bail!(
            "{} cannot be written as {:?} without loss (an attribute name or raw XML fragment \
             that format cannot hold); nothing was written",
            c.file.display(),
            c.to
        ),
        Err(e) => bail!(
            "{} cannot be written as {:?}: the result would not read back ({}); nothing was \
             written. Check attribute names and raw XML (`xml_extra`) in the source",
            c.file.display(),
            c.to,
            e.message
        ),
    }
    match &c.output {
        None => {
            std::io::stdout().lock().write_all(text.as_bytes())?;
        }
        Some(out) => {
            if out.exists() && !c.force {
                bail!("{} exists; pass --force to overwrite it", out.display());
            }
            let dir = out
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let name = out
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "out".into());
            let tmp = dir.join(format!(".{name}.tmp"));
            crate::sys::write_atomic(out, &tmp, text.as_bytes(), true)?;
        }
    }
    Ok(EXIT_OK)
}

pub fn env_cmd(c: EnvCmd) -> Result<u8> {
    match c {
        EnvCmd::Get { name } => match std::env::var(&name) {
            Ok(v) => {
                println!("{v}");
                Ok(EXIT_OK)
            }
            Err(_) => Ok(EXIT_NO),
        },
        EnvCmd::Set { name, value } => {
            if !crate::vars::valid_name(&name) {
                bail!("invalid variable name {name:?}");
            }
            if crate::vars::is_read_only(&name) {
                bail!("{name} is read-only: names starting with _SMSTS are set by the engine only");
            }
            let Some(file) = std::env::var_os(envfile::ENV_FILE) else {
                bail!(
                    "{} is not set: `tsforge env set` works inside a step or hook started by `tsforge run`",
                    envfile::ENV_FILE
                );
            };
            envfile::append(Path::new(&file), &name, &value)
                .with_context(|| format!("writing {}", Path::new(&file).display()))?;
            Ok(EXIT_OK)
        }
        EnvCmd::List => {
            let names = std::env::var(envfile::VAR_NAMES).unwrap_or_default();
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            for n in names.lines().filter(|n| !n.is_empty()) {
                if let Ok(v) = std::env::var(n) {
                    writeln!(out, "{n}={v}")?;
                }
            }
            Ok(EXIT_OK)
        }
    }
}

/// Progress on stderr: one line redrawn at most ten times a second on a terminal, a plain
/// line every ten seconds otherwise.
pub(crate) struct ProgressLine {
    what: &'static str,
    start: std::time::Instant,
    last: Option<std::time::Instant>,
    tty: bool,
    drawn: bool,
}

impl ProgressLine {
    pub(crate) fn new(what: &'static str) -> ProgressLine {
        use std::io::IsTerminal;
        ProgressLine {
            what,
            start: std::time::Instant::now(),
            last: None,
            tty: std::io::stderr().is_terminal(),
            drawn: false,
        }
    }
    pub(crate) fn update(&mut self, p: &crate::image::Progress) {
        let now = std::time::Instant::now();
        let every = std::time::Duration::from_millis(if self.tty { 100 } else { 10_000 });
        if self.last.is_some_and(|l| now - l < every) {
            return;
        }
        self.last = Some(now);
        let line = self.line(p);
        if self.tty {
            eprint!("\r{line}\x1b[K");
            self.drawn = true;
        } else {
            eprintln!("{line}");
        }
    }
    fn line(&self, p: &crate::image::Progress) -> String {
        let secs = self.start.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            p.bytes_done as f64 / secs
        } else {
            0.0
        };
        let left = if rate > 0.0 {
            format!(
                ", {:.0} s left",
                p.bytes_total.saturating_sub(p.bytes_done) as f64 / rate
            )
        } else {
            String::new()
        };
        let files = if p.files_total > 0 {
            format!(", {} / {} files", p.files_done, p.files_total)
        } else {
            String::new()
        };
        format!(
            "{}: {} / {} MiB{files}, {:.1} MiB/s{left}",
            self.what,
            p.bytes_done >> 20,
            p.bytes_total >> 20,
            rate / f64::from(1u32 << 20)
        )
    }
    pub(crate) fn done(&mut self) {
        if self.drawn {
            eprintln!();
        }
    }
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
    writeln!(out, "total bytes:    {}", info.total_bytes)?;
    writeln!(out, "distinct bytes: {}", info.stored_bytes)?;
    writeln!(out, "image bytes:    {}", info.image_bytes)
}

pub fn capture_cmd(c: CaptureConfig) -> Result<u8> {
    use crate::image;
    use crate::volume::{self, Location};
    if c.image.exists() && !c.force {
        bail!("{} exists; pass --force to overwrite it", c.image.display());
    }
    let source = Location::parse(&c.src.to_string_lossy());
    if !matches!(source, Location::Dir(_)) {
        let opts = image::CaptureOptions {
            name: c.name.clone().unwrap_or_else(|| "Captured image".into()),
            description: c.description.clone(),
            compression: c.compression,
            threads: c.threads,
        };
        let scratch = std::env::temp_dir();
        let mut line = ProgressLine::new("capture");
        let r = volume::capture(&source, &c.image, &opts, &scratch, &mut |p| line.update(p));
        line.done();
        r.with_context(|| format!("capturing {source} into {}", c.image.display()))?;
        eprintln!(
            "captured {source} into {} in {:.1} s",
            c.image.display(),
            line.start.elapsed().as_secs_f64()
        );
        return Ok(EXIT_OK);
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
    let r = image::capture(&image::DirSource::new(&src), &c.image, &opts, &mut |p| {
        line.update(p)
    });
    line.done();
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
    Ok(EXIT_OK)
}

pub fn apply_cmd(c: ApplyConfig) -> Result<u8> {
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
        res.with_context(|| format!("applying {} to {target}", c.image.display()))?;
        eprintln!(
            "applied {} to {target} in {:.1} s",
            c.image.display(),
            line.start.elapsed().as_secs_f64()
        );
        return Ok(EXIT_OK);
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
    eprintln!(
        "applied {} files ({} MiB) to {} in {:.1} s",
        info.files,
        info.total_bytes >> 20,
        c.target.display(),
        line.start.elapsed().as_secs_f64()
    );
    Ok(EXIT_OK)
}

pub fn image_info_cmd(c: ImageInfoConfig) -> Result<u8> {
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
    Ok(EXIT_OK)
}

pub fn image_verify_cmd(c: ImageVerifyConfig) -> Result<u8> {
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
            Ok(EXIT_OK)
        }
        Err(e) => {
            println!("{}: FAILED: {e:#}", c.image.display());
            Ok(EXIT_NO)
        }
    }
}

pub fn keygen_cmd(c: KeygenConfig) -> Result<u8> {
    let key = c.output.with_extension("key");
    let public = c.output.with_extension("pub");
    for p in [&key, &public] {
        if p.exists() && !c.force {
            bail!("{} exists; use --force to replace it", p.display());
        }
    }
    let (sk, pk) = crate::media::keygen()?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&key)
        .with_context(|| format!("creating {}", key.display()))?;
    writeln!(
        f,
        "# tsforge media signing key (ed25519, secret): keep it off the media\n{sk}"
    )?;
    std::fs::write(&public, format!("{pk}\n"))
        .with_context(|| format!("writing {}", public.display()))?;
    println!(
        "{}: secret key\n{}: public key {pk}",
        key.display(),
        public.display()
    );
    Ok(EXIT_OK)
}

pub fn media_verify_cmd(c: MediaVerifyConfig, inspect: bool) -> Result<u8> {
    let pinned = c
        .public_key
        .as_deref()
        .map(crate::media::pinned_key)
        .transpose()?;
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let (root, v) = crate::media::verify_medium(&c.medium, scratch.path(), pinned.as_deref())?;
    if inspect {
        let p = crate::media::find_ci(&root, crate::media::CONFIG_FILE).context("no media.toml")?;
        let cfg = crate::media::MediaConfig::parse(
            &std::fs::read_to_string(&p)?,
            &p.display().to_string(),
        )?;
        println!(
            "medium {:?} ({}), created {}",
            cfg.name,
            c.medium.display(),
            cfg.created
        );
        for s in &cfg.sequences {
            let mark = if cfg.default.as_deref() == Some(s.name.as_str()) {
                " (default)"
            } else {
                ""
            };
            println!("  sequence {}: tsforge/{}{mark}", s.name, s.file);
        }
        for h in &cfg.hooks {
            println!("  hook tsforge/{} (from the {})", h.file, h.from);
        }
        for (k, val) in &cfg.variables {
            let shown = if crate::vars::is_known_secret(k) {
                crate::vars::MASK
            } else {
                val.as_str()
            };
            println!("  variable {k} = {shown}");
        }
        for k in cfg.secrets.keys() {
            println!("  secret variable {k} (encrypted)");
        }
        println!(
            "  password: {}",
            if cfg.password.is_some() {
                "yes (PBKDF2-SHA256)"
            } else {
                "no"
            }
        );
        if let Ok(i) = crate::content::build::read_index(&root.join("tsforge/packages")) {
            for p in i.packages {
                println!(
                    "  package {} v{} ({}, {} bytes) {}",
                    p.id, p.version, p.kind, p.size, p.name
                );
            }
        }
    }
    if v.regions_unchecked > 0 {
        println!(
            "{}: note: its {} boot regions (boot code, boot sectors) were not checked: a folder \
             does not show them; verify the image file or the device (e.g. /dev/sdb) for those",
            c.medium.display(),
            v.regions_unchecked
        );
    }
    if v.problems.is_empty() {
        println!(
            "{}: OK ({} files, {} bytes{}{})",
            c.medium.display(),
            v.files,
            v.bytes,
            if v.regions > 0 {
                format!(", {} boot regions", v.regions)
            } else {
                String::new()
            },
            v.signed_by
                .map(|k| format!(", signed by {k}"))
                .unwrap_or_else(|| ", not signed".into())
        );
        Ok(EXIT_OK)
    } else {
        for p in &v.problems {
            println!("{}: {p}", c.medium.display());
        }
        Ok(EXIT_NO)
    }
}
