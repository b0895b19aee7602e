//! The runner half of the `tsforge` command line: `validate`, `run`, `convert`, `env`, `disk`.
//!
//! One `…Config` struct and one function per leaf command; the thin binary in the workspace
//! root flattens [`RunnerCmd`] into its own command tree next to the builder's commands.
//! Exit codes (also in `--help`): 0 done; 1 the answer is "no" (validation errors, the
//! sequence failed); 2 an error stopped the command; 3 a restart was requested (`--no-reboot`).

use crate::actions::custom::{CustomActions, MANIFEST_NAME};
use crate::engine::{self, program::Resolver, RunOptions, RunOutcome, EXIT_RESTART};
use crate::envfile;
use crate::error::Severity;
use crate::log::Console;
use crate::sequence::{self, validate, Format};
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
    /// List and inspect disks, write partition tables and format FAT partitions
    #[command(subcommand)]
    Disk(crate::disk::cli::DiskCmd),
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

/// Run one runner command; returns the process exit code.
pub fn dispatch(cmd: RunnerCmd) -> Result<u8> {
    match cmd {
        RunnerCmd::Validate(c) => validate_cmd(c),
        RunnerCmd::Run(c) => run_cmd(c),
        RunnerCmd::Convert(c) => convert_cmd(c),
        RunnerCmd::Env(c) => env_cmd(c),
        RunnerCmd::Disk(c) => crate::disk::cli::dispatch(c),
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

pub fn run_cmd(c: RunConfig) -> Result<u8> {
    let resolver = c.seq.resolver();
    let custom = c.seq.custom_actions(&c.file)?;
    if c.dry_run {
        let program = engine::load_program(&c.file, &resolver)?;
        let mut opts = RunOptions::new(&c.state_dir);
        opts.vars = c.vars.clone();
        let log_dir = c.log_dir.clone().unwrap_or_else(|| c.state_dir.clone());
        let vars = engine::initial_vars(&program, &opts, &log_dir);
        let plan = engine::plan::plan(&program, vars, &custom);
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for line in plan {
            writeln!(out, "{line}")?;
        }
        return Ok(EXIT_OK);
    }
    let opts = RunOptions {
        state_dir: c.state_dir,
        log_dir: c.log_dir,
        vars: c.vars,
        no_reboot: c.no_reboot,
        fsync: !c.no_fsync,
        custom,
        resolver,
        console: Console::detect(),
        max_log_size: c.max_log_size,
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
            {
                let mut f = std::fs::File::create(&tmp)
                    .with_context(|| format!("creating {}", tmp.display()))?;
                f.write_all(text.as_bytes())
                    .with_context(|| format!("writing {}", tmp.display()))?;
                f.sync_all()
                    .with_context(|| format!("syncing {}", tmp.display()))?;
            }
            std::fs::rename(&tmp, out)
                .with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
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
