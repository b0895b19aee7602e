//! `tsforge validate`, `run`, `convert` and `env`: the commands that read and run sequences.

use super::{parse_disk, parse_var, Exit};
use crate::actions::custom::{CustomActions, MANIFEST_NAME};
use crate::engine::validate;
use crate::engine::{self, program::Resolver, RunOptions, RunOutcome};
use crate::envfile;
use crate::error::Severity;
use crate::log::Console;
use crate::sequence::{self, Format};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Options shared by commands that load sequences.
#[derive(Debug, Clone, Args)]
pub struct SequenceOptions {
    /// Custom action manifest (TOML) mapping step types to programs; repeatable.
    /// A custom-actions.toml next to the sequence is read automatically.
    #[arg(long = "actions", value_name = "FILE")]
    pub actions: Vec<PathBuf>,
    /// Folder searched for child sequences of Run Task Sequence steps (ID.yaml, ID.xml, …, or
    /// any sequence file whose wrapper carries the package ID);
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
            packages: None,
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

pub fn validate_cmd(c: ValidateConfig) -> Result<Exit> {
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
    Ok(if errors > 0 { Exit::No } else { Exit::Ok })
}

pub fn run_cmd(mut c: RunConfig) -> Result<Exit> {
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
        // A child kept in a package on a distribution point is read through a scratch cache
        // that is removed afterwards: the dry run changes nothing.
        let scratch = tempfile::tempdir().context("creating a scratch folder")?;
        let mut resolver = resolver;
        resolver.packages = Some(engine::program::PackageSource {
            locations: c.content.clone(),
            cache: scratch.path().to_path_buf(),
            public_key: package_public_key.clone(),
            vars: c.vars.clone(),
        });
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
        return Ok(Exit::Ok);
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
        RunOutcome::Succeeded => Exit::Ok,
        RunOutcome::Failed => Exit::No,
        RunOutcome::RestartRequested => Exit::Restart,
    })
}

pub fn convert_cmd(c: ConvertConfig) -> Result<Exit> {
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
    Ok(Exit::Ok)
}

pub fn env_cmd(c: EnvCmd) -> Result<Exit> {
    match c {
        EnvCmd::Get { name } => match std::env::var(&name) {
            Ok(v) => {
                println!("{v}");
                Ok(Exit::Ok)
            }
            Err(_) => Ok(Exit::No),
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
            Ok(Exit::Ok)
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
            Ok(Exit::Ok)
        }
    }
}
