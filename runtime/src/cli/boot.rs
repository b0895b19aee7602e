//! `tsforge boot`: what the runner does when a tsforge medium starts it (`docs/media.md`).
//!
//! 1. Find the medium (`--medium`, else every mounted volume / drive letter with
//!    `tsforge/media.toml`). 2. Verify it: the signature when the medium (or `--public-key`)
//!    names a key, every file's sha256, no file added anywhere on the medium; refuse to run
//!    anything otherwise. 3. Ask for the media password when there is one; decrypt the secret media
//!    variables. 4. Run the pre-execution hooks in the medium's order (template's, then the
//!    medium's), with the console, the boot facts and the media variables; they set variables
//!    with `tsforge env set`. 5. Select the sequence: `TSForgeSequence` (or ConfigMgr's
//!    `SMSTSPreferredAdvertID`) set by a hook or the medium, else the medium's default, else a
//!    menu. 6. Run it, with the medium's `tsforge/packages` as a distribution point.

use super::Exit;
use crate::engine::{self, RunOptions, RunOutcome};
use crate::log::{Console, Level, Logger};
use crate::media::{self, MediaConfig};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct BootConfig {
    /// The medium's root (default: search the mounted volumes for tsforge/media.toml)
    #[arg(long, value_name = "DIR")]
    pub medium: Option<PathBuf>,
    /// State directory of the run (default: a folder in the boot environment's RAM disk)
    #[arg(long, value_name = "DIR", env = "TSFORGE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Start this sequence (by name) without asking
    #[arg(long, value_name = "NAME")]
    pub sequence: Option<String>,
    /// Read the media password from this file instead of asking on the console
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// The ed25519 public key (hex, or a .pub file) the medium must be signed with
    #[arg(long, value_name = "KEY")]
    pub public_key: Option<String>,
    /// On a Restart Computer step, exit with code 3 instead of restarting the machine
    #[arg(long)]
    pub no_reboot: bool,
    /// Set a variable (after the media variables, before the hooks); repeatable
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = super::parse_var)]
    pub vars: Vec<(String, String)>,
}

/// Volumes that may hold the medium.
fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if cfg!(windows) {
        for l in b'C'..=b'Z' {
            out.push(PathBuf::from(format!("{}:\\", l as char)));
        }
    } else {
        out.push(PathBuf::from("/medium"));
        if let Ok(m) = std::fs::read_to_string("/proc/mounts") {
            for line in m.lines() {
                if let Some(mp) = line.split_whitespace().nth(1) {
                    out.push(PathBuf::from(mp.replace("\\040", " ")));
                }
            }
        }
    }
    out
}

fn find_medium() -> Result<PathBuf> {
    for c in candidates() {
        if media::find_ci(&c, media::CONFIG_FILE).is_some() {
            return Ok(c);
        }
    }
    bail!("no tsforge medium found (no mounted volume holds tsforge/media.toml); give one with --medium DIR")
}

fn default_state_dir() -> PathBuf {
    if cfg!(windows) {
        // X: is Windows PE's RAM disk.
        PathBuf::from(std::env::var("TEMP").unwrap_or_else(|_| "X:\\Windows\\Temp".into()))
            .join("tsforge")
    } else {
        PathBuf::from("/run/tsforge")
    }
}

/// Reads one line from standard input (the console); `None` at end of input. Reads byte by
/// byte from a duplicate of the descriptor, bypassing std's buffered stdin, so whatever
/// follows the line stays in the pipe for the hooks that read the console next.
fn read_line(prompt: &str) -> Option<String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut f = raw_stdin()?;
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match f.read(&mut b) {
            Ok(0) if line.is_empty() => return None,
            Ok(0) => break,
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) => line.push(b[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(
        String::from_utf8_lossy(&line)
            .trim_end_matches('\r')
            .to_string(),
    )
}

/// [`read_line`] with echo off on every console (`cli::noecho`).
fn read_password(prompt: &str) -> Option<String> {
    let _quiet = super::noecho::EchoOff::consoles();
    read_line(prompt)
}

#[cfg(unix)]
fn raw_stdin() -> Option<std::fs::File> {
    use std::os::fd::AsFd;
    let fd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    Some(std::fs::File::from(fd))
}

#[cfg(windows)]
fn raw_stdin() -> Option<std::fs::File> {
    use std::os::windows::io::AsHandle;
    let h = std::io::stdin().as_handle().try_clone_to_owned().ok()?;
    Some(std::fs::File::from(h))
}

/// The component name of `tsforge boot`'s lines in smsts.log.
const C: &str = "TSBoot";

/// The variables a boot hands to the run, in order (a later one wins).
type BootVars = Vec<(String, String)>;

/// `tsforge boot`, in the order of `docs/media.md`: (1) find the medium and open the log,
/// (2) verify the medium, (3) ask for its password and open its secrets, then either resume
/// the run found on a disk, or (4) run the pre-execution hooks, (5) select a sequence and
/// (6) run it.
pub fn boot_cmd(c: BootConfig) -> Result<Exit> {
    let exit = boot_steps(c)?;
    if cfg!(windows) && crate::machine::in_boot_environment() {
        if let Some(answer) = windows_pe_answer(exit.code()) {
            return Ok(act_in_windows_pe(answer, exit));
        }
    }
    Ok(exit)
}

/// What the failure screen's answer asks of Windows PE, where no `/init` reads the runner's
/// exit code (`winpeshl.ini` starts the runner as its last app): the runner acts itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeAnswer {
    /// `wpeutil reboot`.
    Restart,
    /// `cmd.exe` on the console, then `wpeutil shutdown` when it ends (as /init's shell is
    /// followed by the power off).
    Shell,
}

fn windows_pe_answer(code: u8) -> Option<PeAnswer> {
    match code {
        super::failure::EXIT_RESTART => Some(PeAnswer::Restart),
        super::failure::EXIT_SHELL => Some(PeAnswer::Shell),
        _ => None,
    }
}

fn act_in_windows_pe(answer: PeAnswer, exit: Exit) -> Exit {
    use crate::tools::{self, Tool};
    if answer == PeAnswer::Shell {
        match tools::find(Tool::Cmd) {
            Ok(cmd) => {
                eprintln!("A command prompt; type exit to power off.");
                if let Err(e) = std::process::Command::new(cmd).status() {
                    eprintln!("tsforge: the command prompt could not start: {e}");
                }
            }
            Err(e) => eprintln!("tsforge: no command prompt: {e}"),
        }
        match tools::find(Tool::Wpeutil) {
            Ok(w) => {
                let _ = std::process::Command::new(w).arg("shutdown").status();
            }
            Err(e) => eprintln!("tsforge: cannot power off: {e}"),
        }
        return exit;
    }
    if let Err(e) = crate::actions::restart::reboot_machine() {
        eprintln!("tsforge: the restart failed: {e}");
    }
    exit
}

fn boot_steps(c: BootConfig) -> Result<Exit> {
    let started = std::time::Instant::now();
    let (root, state_dir, home, mut log) = open(&c)?;
    let Some((cfg, package_key)) = verify(&c, &root, &state_dir, &mut log)? else {
        log.sync();
        drop(log);
        return Ok(refusal_screen(
            "THE BOOT MEDIUM FAILED ITS CHECK",
            &state_dir,
            format!(
                "the medium at {} does not match its manifest or signature (the problems are \
                 listed above and in smsts.log); nothing was run",
                root.display()
            ),
            super::failure::DEFAULT_TIMEOUT,
            Exit::Error,
        ));
    };
    let Some((mut vars, secret_names)) = unlock(&c, &cfg, &mut log)? else {
        log.sync();
        drop(log);
        let timeout = super::failure::timeout_of(
            cfg.variables
                .get("SMSTSErrorDialogTimeout")
                .map(String::as_str),
        );
        return Ok(refusal_screen(
            "MEDIA PASSWORD NOT GIVEN",
            &state_dir,
            "the media password was wrong three times, or not typed; nothing was run".into(),
            timeout,
            Exit::Error,
        ));
    };
    // A run found on a disk goes on where it stopped: no hooks, no selection.
    if let Some(h) = home {
        return resume(
            &c,
            &cfg,
            &root,
            &state_dir,
            log,
            h,
            vars,
            secret_names,
            package_key,
        );
    }
    if let Some(stop) = run_hooks(&cfg, &root, &state_dir, &mut vars, &secret_names, &mut log)? {
        let sequence = "(none started: a pre-execution hook failed)";
        let name = format!("pre-execution hook {}", stop.hook);
        // The monitor the medium or a hook names learns of it (the engine never ran), before
        // the failure screen waits for the operator.
        let mut message = format!(
            "Pre-execution hook {} failed with exit code {}; nothing else was run.",
            stop.hook, stop.code
        );
        if !stop.last_line.is_empty() {
            message.push_str(&format!(" Its last line: {}", stop.last_line));
        }
        engine::monitor::report_stopped_boot(
            &mut log,
            &state_dir,
            &vars,
            &engine::monitor::StoppedBoot {
                sequence,
                name: &name,
                exit_code: stop.code,
                message: &message,
                seconds: started.elapsed().as_secs_f64(),
            },
        );
        // The operator sees why before the power action, as for a failed step.
        log.sync();
        drop(log);
        let mut end = RunEnd::read(&state_dir, &vars);
        end.sequence = sequence.into();
        end.vars.set("_SMSTSLastActionName", name);
        end.vars
            .set("_SMSTSLastActionRetCode", stop.code.to_string());
        let shares = copy_logs(&state_dir, &end);
        return Ok(
            match failure_screen(&cfg, &state_dir, &end, &shares, None) {
                Exit::No => stop.exit,
                other => other,
            },
        );
    }
    let entry = choose(&c, &cfg, &vars)?;
    let seq_path = media::find_ci(&root, &format!("tsforge/{}", entry.file))
        .with_context(|| format!("tsforge/{} is missing", entry.file))?;
    log.log(
        Level::Info,
        C,
        &format!("Starting task sequence {} ({})", entry.name, entry.file),
    );
    log.sync();
    drop(log);
    let saved = SavedBoot {
        name: entry.name.clone(),
        file: entry.file.clone(),
    };
    std::fs::write(
        state_dir.join(BOOT_FILE),
        serde_json::to_vec(&saved).context("serializing boot.json")?,
    )
    .with_context(|| format!("writing {}", state_dir.join(BOOT_FILE).display()))?;
    run_sequence(
        &c,
        &cfg,
        &state_dir,
        &seq_path,
        vars,
        secret_names,
        &root,
        None,
        package_key,
    )
}

/// Step 1: the medium's folder, the state folder (with the run a disk holds brought back into
/// it, when `--state-dir` is not given) and the log.
fn open(c: &BootConfig) -> Result<(PathBuf, PathBuf, Option<engine::home::Home>, Logger)> {
    let root = match &c.medium {
        Some(m) => m.clone(),
        None => find_medium()?,
    };
    let root = std::path::absolute(&root).unwrap_or(root);
    // The medium's disk is never a target, and is listed last.
    crate::disk::select::set_medium_dir(&root);
    // The boot environment's own state folder (in RAM) moves to the deployed disk once there
    // is one (engine::home); an explicit --state-dir stays where it is.
    let state_on_disk = c.state_dir.is_none();
    let state_dir = c.state_dir.clone().unwrap_or_else(default_state_dir);
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    // A run interrupted by a restart or a power cut left its state on a disk: bring it back
    // before the log opens, so this boot's lines follow the run's earlier ones.
    let home = if state_on_disk {
        engine::home::resume_into(&state_dir, &Default::default())?
    } else {
        None
    };
    let mut log = Logger::open(
        &state_dir,
        crate::log::cmtrace::DEFAULT_MAX_SIZE,
        Console::detect(),
    )
    .with_context(|| format!("opening the log in {}", state_dir.display()))?;
    log.log(
        Level::Info,
        C,
        &format!(
            "tsforge {} boot: medium {}",
            env!("CARGO_PKG_VERSION"),
            root.display()
        ),
    );
    Ok((root, state_dir, home, log))
}

/// Step 2: check the medium against its manifest (and signature); read its configuration.
/// `None`: the check failed (logged and shown), nothing may run.
fn verify(
    c: &BootConfig,
    root: &Path,
    state_dir: &Path,
    log: &mut Logger,
) -> Result<Option<(MediaConfig, Option<String>)>> {
    let pinned = c.public_key.as_deref().map(media::pinned_key).transpose()?;
    let v = media::verify_dir(root, pinned.as_deref())?;
    if !v.problems.is_empty() {
        for p in &v.problems {
            log.log(Level::Error, C, &format!("Medium check failed: {p}"));
        }
        log.say(&format!(
            "The medium at {} failed its check ({} problem{}); refusing to run it. See {}.",
            root.display(),
            v.problems.len(),
            if v.problems.len() == 1 { "" } else { "s" },
            state_dir.join("smsts.log").display()
        ));
        for p in &v.problems {
            log.say(&format!("  {p}"));
        }
        return Ok(None);
    }
    log.log(
        Level::Info,
        C,
        &format!(
            "Medium verified: {} files, {} bytes{}",
            v.files,
            v.bytes,
            v.signed_by
                .as_deref()
                .map(|k| format!(", signed by {k}"))
                .unwrap_or_else(|| ", not signed".into())
        ),
    );
    if v.regions_unchecked > 0 {
        log.log(
            Level::Info,
            C,
            &format!(
                "The medium lists {} boot regions (boot code, boot sectors); they are not checked \
                 here: they ran before tsforge did. Check them with `tsforge media verify \
                 IMAGE|DEVICE --public-key KEY` on a trusted machine",
                v.regions_unchecked
            ),
        );
    }
    let cfg_path = media::find_ci(root, media::CONFIG_FILE).expect("verified above");
    let cfg = MediaConfig::parse(
        &std::fs::read_to_string(&cfg_path)?,
        &cfg_path.display().to_string(),
    )?;
    // A signed medium accepts only packages signed with its key (docs/content.md).
    let package_key = v.signed_by.clone();
    if let Some(k) = &package_key {
        log.log(
            Level::Info,
            C,
            &format!("Packages must be signed with the medium's key {k}"),
        );
    }
    Ok(Some((cfg, package_key)))
}

/// Step 3: the medium's variables, with its secrets decrypted when it has a password (asked
/// up to three times), and `--var`s. `None`: no right password was given.
fn unlock(
    c: &BootConfig,
    cfg: &MediaConfig,
    log: &mut Logger,
) -> Result<Option<(BootVars, Vec<String>)>> {
    let mut vars: Vec<(String, String)> = cfg
        .variables
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut secret_names = Vec::new();
    if let Some(pv) = &cfg.password {
        let mut key = None;
        for attempt in 1..=3 {
            let pw = match &c.password_file {
                Some(f) => std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
                None => match read_password("Media password: ") {
                    Some(p) => p,
                    None => break,
                },
            };
            if let Some(k) = media::check_password(pv, &pw)? {
                key = Some(k);
                break;
            }
            log.log(
                Level::Warning,
                C,
                &format!("Wrong media password (attempt {attempt} of 3)"),
            );
            log.say("Wrong media password.");
            if c.password_file.is_some() {
                break;
            }
        }
        let Some(key) = key else {
            log.log(
                Level::Error,
                C,
                "The media password was not given; stopping",
            );
            log.say("The media password is wrong; nothing was run.");
            return Ok(None);
        };
        for (name, sealed) in &cfg.secrets {
            let value = media::open(&key, name, sealed)?;
            vars.push((name.clone(), value));
            secret_names.push(name.clone());
        }
        log.log(
            Level::Info,
            C,
            &format!(
                "Media password accepted; {} secret variable(s) decrypted",
                cfg.secrets.len()
            ),
        );
    }
    let secret_values: Vec<String> = vars
        .iter()
        .filter(|(k, _)| secret_names.contains(k) || crate::vars::is_known_secret(k))
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty())
        .collect();
    log.set_secrets(secret_values);
    vars.extend(c.vars.iter().cloned());
    Ok(Some((vars, secret_names)))
}

/// A run found on a disk: go on with its sequence where it stopped.
#[allow(clippy::too_many_arguments)]
fn resume(
    c: &BootConfig,
    cfg: &MediaConfig,
    root: &Path,
    state_dir: &Path,
    mut log: Logger,
    h: engine::home::Home,
    vars: Vec<(String, String)>,
    secret_names: Vec<String>,
    package_key: Option<String>,
) -> Result<Exit> {
    let boot_json = state_dir.join(BOOT_FILE);
    let saved: SavedBoot = std::fs::read(&boot_json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .with_context(|| {
            format!(
                "{h} holds a run without {BOOT_FILE}: it was not started by tsforge boot; \
                 remove {} from it to start over",
                engine::home::FOLDER
            )
        })?;
    log.log(
        Level::Info,
        C,
        &format!(
            "Found the unfinished run of {} on {h}: resuming it (pre-execution hooks and the sequence menu are skipped)",
            saved.name
        ),
    );
    log.say(&format!(
        "tsforge: resuming task sequence {} from {h}",
        saved.name
    ));
    let seq_path = media::find_ci(root, &format!("tsforge/{}", saved.file)).with_context(|| {
        format!(
            "the run on {h} is of tsforge/{}, which this medium does not have",
            saved.file
        )
    })?;
    log.sync();
    drop(log);
    run_sequence(
        c,
        cfg,
        state_dir,
        &seq_path,
        vars,
        secret_names,
        root,
        Some(h),
        package_key,
    )
}

/// A pre-execution hook that failed and stops the boot.
struct HookStop {
    hook: String,
    code: i64,
    /// The hook's last line of output (its own word on why), when it wrote one.
    last_line: String,
    /// The boot's exit (the hook's code, 1 when it does not fit).
    exit: Exit,
}

/// Step 4: the pre-execution hooks, in order, with the boot facts; the variables they set
/// are added. `Some`: a hook failed and the boot stops.
fn run_hooks(
    cfg: &MediaConfig,
    root: &Path,
    state_dir: &Path,
    vars: &mut Vec<(String, String)>,
    secret_names: &[String],
    log: &mut Logger,
) -> Result<Option<HookStop>> {
    let mut facts = boot_facts(root);
    facts.push(("_TSForgeSequences".into(), names(cfg).replace(", ", ",")));

    for (i, h) in cfg.hooks.iter().enumerate() {
        let path = media::find_ci(root, &format!("tsforge/{}", h.file))
            .with_context(|| format!("hook tsforge/{} is missing", h.file))?;
        log.log(
            Level::Info,
            C,
            &format!(
                "Running pre-execution hook {} of {}: {} (from the {}; media.toml hooks run in order: template hooks, then the medium's)",
                i + 1,
                cfg.hooks.len(),
                h.file,
                h.from
            ),
        );
        let env_file = state_dir.join(format!("hook-{}.env", i + 1));
        let _ = std::fs::remove_file(&env_file);
        let (code, output) = run_hook(&path, vars, &facts, &env_file)?;
        log.log(
            Level::Info,
            C,
            &format!("Hook {} output:\n{}", h.file, output.trim_end()),
        );
        if let Ok(text) = std::fs::read_to_string(&env_file) {
            let (assignments, errors) = crate::envfile::parse(&text);
            for e in errors {
                log.log(Level::Warning, C, &format!("{}: {e:?}", env_file.display()));
            }
            for (k, v) in assignments {
                let secret = crate::vars::is_known_secret(&k)
                    || secret_names.iter().any(|n| n.eq_ignore_ascii_case(&k));
                let shown = if secret {
                    // Masked from now on, in the output of the next hooks too.
                    log.add_secret(v.clone());
                    crate::vars::MASK.to_string()
                } else {
                    v.clone()
                };
                log.log(
                    Level::Info,
                    C,
                    &format!("Hook {} set {k} = {shown}", h.file),
                );
                vars.retain(|(n, _)| !n.eq_ignore_ascii_case(&k));
                vars.push((k, v));
            }
        }
        if code != 0 {
            if h.continue_on_error {
                log.log(
                    Level::Warning,
                    C,
                    &format!(
                        "Hook {} exited with {code}; continuing (continue_on_error)",
                        h.file
                    ),
                );
            } else {
                log.log(
                    Level::Error,
                    C,
                    &format!("Hook {} exited with {code}; the boot stops", h.file),
                );
                log.say(&format!(
                    "Pre-execution hook {} failed with exit code {code}; nothing else was run.",
                    h.file
                ));
                return Ok(Some(HookStop {
                    hook: h.file.clone(),
                    code,
                    last_line: output
                        .lines()
                        .map(str::trim)
                        .rfind(|l| !l.is_empty())
                        .unwrap_or_default()
                        .chars()
                        .take(1000)
                        .collect(),
                    exit: u8::try_from(code)
                        .ok()
                        .filter(|c| *c != 0)
                        .map_or(Exit::No, Exit::from_code),
                }));
            }
        }
    }
    Ok(None)
}

/// Step 5: the sequence to run: `--sequence`, else `TSForgeSequence` or
/// `SMSTSPreferredAdvertID` (set by a hook or the medium), else the medium's default, else a
/// menu.
fn choose<'a>(
    c: &BootConfig,
    cfg: &'a MediaConfig,
    vars: &[(String, String)],
) -> Result<&'a media::SequenceEntry> {
    let chosen_var = |name: &str| {
        vars.iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let wanted = c
        .sequence
        .clone()
        .or_else(|| chosen_var("TSForgeSequence"))
        .or_else(|| chosen_var("SMSTSPreferredAdvertID"));
    let entry = match wanted {
        Some(w) => cfg
            .sequences
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(&w))
            .with_context(|| {
                format!(
                    "sequence {w:?} is not on the medium (it has: {})",
                    names(cfg)
                )
            })?,
        None => match cfg.default.as_deref().and_then(|d| {
            cfg.sequences
                .iter()
                .find(|s| s.name.eq_ignore_ascii_case(d))
        }) {
            Some(e) => e,
            None => menu(cfg)?,
        },
    };
    Ok(entry)
}

/// `boot.json` in the state directory: which sequence of the medium the run is.
const BOOT_FILE: &str = "boot.json";

#[derive(serde::Serialize, serde::Deserialize)]
struct SavedBoot {
    name: String,
    file: String,
}

/// Step 6: run the selected (or resumed) sequence, with the medium's packages as a
/// distribution point; with `package_key`, every package must be signed with it.
#[allow(clippy::too_many_arguments)]
fn run_sequence(
    c: &BootConfig,
    cfg: &MediaConfig,
    state_dir: &Path,
    seq_path: &Path,
    vars: Vec<(String, String)>,
    secret_names: Vec<String>,
    root: &Path,
    home: Option<engine::home::Home>,
    package_key: Option<String>,
) -> Result<Exit> {
    let mut opts = RunOptions::new(state_dir);
    opts.vars = vars;
    opts.vars
        .push(("_TSForgeMedium".into(), root.display().to_string()));
    opts.secret_vars = secret_names;
    opts.no_reboot = c.no_reboot;
    opts.console = Console::detect();
    opts.state_on_disk = c.state_dir.is_none();
    opts.home = home;
    if let Some(p) = media::find_ci(root, "tsforge/packages") {
        opts.targets.content.push(p.display().to_string());
    }
    // Run Task Sequence children: the medium's sequences, found by file name or package ID.
    for dir in ["tsforge/sequences", "tsforge"] {
        opts.resolver.search_dirs.extend(media::find_ci(root, dir));
    }
    opts.targets.package_public_key = package_key;
    let live = DynamicLogging::start(state_dir);
    let outcome = engine::run(seq_path, &opts);
    live.stop();
    let mut end = RunEnd::read(state_dir, &opts.vars);
    if end.sequence.is_empty() {
        end.sequence = seq_path.display().to_string();
    }
    match outcome {
        Ok(RunOutcome::RestartRequested) => Ok(Exit::Restart),
        Ok(RunOutcome::Succeeded) => {
            copy_logs(state_dir, &end);
            Ok(Exit::Ok)
        }
        Ok(RunOutcome::Failed) => {
            let shares = copy_logs(state_dir, &end);
            Ok(failure_screen(cfg, state_dir, &end, &shares, None))
        }
        // An error stopped the run (its state cannot be read or written, …): the same
        // screen, with the error, so the operator sees it before the power action.
        Err(e) => {
            let shares = copy_logs(state_dir, &end);
            let error = format!("{e:#}");
            eprintln!("tsforge: error: {error}");
            Ok(
                match failure_screen(cfg, state_dir, &end, &shares, Some(error)) {
                    Exit::No => Exit::Error,
                    other => other,
                },
            )
        }
    }
}

/// MDT's `SLShareDynamicLogging` as the run goes: a thread that copies smsts.log and
/// events.jsonl to the share the run's variables name (read from the saved state, so a step
/// may set it) each time a step has finished (`steps.jsonl` grew), and at least every
/// [`DynamicLogging::EVERY`] while the log grows. A failed copy is reported once on the
/// console; the run goes on. The copy at the end ([`copy_logs`]) is made after the thread
/// stopped.
struct DynamicLogging {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DynamicLogging {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(30);
    const POLL: std::time::Duration = std::time::Duration::from_millis(500);

    fn start(state_dir: &Path) -> DynamicLogging {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let dir = state_dir.to_path_buf();
        let thread = std::thread::spawn(move || {
            let len = |name: &str| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
            let (mut steps, mut log) = (len("steps.jsonl"), len("smsts.log"));
            let mut last = std::time::Instant::now();
            let mut warned = false;
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Self::POLL);
                let (s, l) = (len("steps.jsonl"), len("smsts.log"));
                if s == steps && (l == log || last.elapsed() < Self::EVERY) {
                    continue;
                }
                (steps, log, last) = (s, l, std::time::Instant::now());
                let end = RunEnd::read(&dir, &[]);
                let Some(share) = end.var("SLShareDynamicLogging") else {
                    continue;
                };
                let (computer, guid) = end.names();
                for r in crate::log::share::copy_logs(&dir, share, &computer, &guid) {
                    if let Err(e) = r {
                        if !warned {
                            eprintln!(
                                "tsforge: warning: could not copy the logs to \
                                 SLShareDynamicLogging: {e} (the run goes on)"
                            );
                            warned = true;
                        }
                    }
                }
            }
        });
        DynamicLogging {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the run's saved state says once it ended.
#[derive(Default)]
struct RunEnd {
    vars: crate::vars::Vars,
    sequence: String,
}

impl RunEnd {
    /// From the saved state; when there is none (an error stopped the run before it saved
    /// one, or it cannot be read), the variables the boot gave the run (`given`).
    fn read(state_dir: &Path, given: &[(String, String)]) -> RunEnd {
        let j = engine::journal::Journal::open(state_dir, false).ok();
        let vars = j
            .as_ref()
            .and_then(|j| j.load_state().ok())
            .map(|s| s.vars)
            .unwrap_or_else(|| {
                let mut v = crate::vars::Vars::default();
                for (k, val) in given {
                    v.set(k, val.clone());
                }
                v
            });
        RunEnd {
            vars,
            sequence: j
                .and_then(|j| j.load_program().ok())
                .map(|p| p.name)
                .unwrap_or_default(),
        }
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).filter(|v| !v.trim().is_empty())
    }

    /// The computer name (`OSDComputerName`, else `_SMSTSMachineName`, else this machine's)
    /// and the client GUID the log copies are named by.
    fn names(&self) -> (String, String) {
        let computer = self
            .var("OSDComputerName")
            .or_else(|| self.var("_SMSTSMachineName"))
            .map(str::to_string)
            .unwrap_or_else(crate::machine::machine_name);
        let guid = self
            .var("_SMSTSClientGuid")
            .map(str::to_string)
            .unwrap_or_else(crate::machine::client_guid);
        (computer, guid)
    }
}

/// Copies smsts.log and events.jsonl to the log shares the run names (`SLShare`, and
/// `SLShareDynamicLogging`, which is copied at the end too), each copy logged; a failed copy
/// is a warning. Returns where the logs went.
fn copy_logs(state_dir: &Path, end: &RunEnd) -> Vec<String> {
    let shares: Vec<String> = ["SLShare", "SLShareDynamicLogging"]
        .iter()
        .filter_map(|n| end.var(n).map(str::to_string))
        .fold(Vec::new(), |mut v, s| {
            if !v.contains(&s) {
                v.push(s);
            }
            v
        });
    if shares.is_empty() {
        return Vec::new();
    }
    let (computer, guid) = end.names();
    let mut log = Logger::open(
        state_dir,
        crate::log::cmtrace::DEFAULT_MAX_SIZE,
        Console::Quiet,
    )
    .ok();
    let mut say = |level: Level, msg: String| {
        if let Some(l) = log.as_mut() {
            l.log(level, C, &msg);
            l.sync();
        }
        if level == Level::Warning {
            eprintln!("tsforge: {msg}");
        }
    };
    let mut went = Vec::new();
    for share in &shares {
        say(
            Level::Info,
            format!("Copying the logs to the log share {share} ({computer}, {guid})"),
        );
        for r in crate::log::share::copy_logs(state_dir, share, &computer, &guid) {
            match r {
                Ok(dest) => {
                    say(Level::Info, format!("Log copied to {dest}"));
                    went.push(dest);
                }
                Err(e) => say(
                    Level::Warning,
                    format!("Could not copy a log to the log share: {e}"),
                ),
            }
        }
    }
    went
}

/// The failed run's screen (`cli::failure`), and the exit that tells /init what to do.
fn failure_screen(
    cfg: &MediaConfig,
    state_dir: &Path,
    end: &RunEnd,
    shares: &[String],
    error: Option<String>,
) -> Exit {
    let mut logs = vec![
        state_dir.join("smsts.log").display().to_string(),
        state_dir.join("events.jsonl").display().to_string(),
    ];
    logs.extend(shares.iter().cloned());
    let f = super::failure::Failure {
        title: String::new(),
        sequence: end.sequence.clone(),
        step: end.var("_SMSTSLastActionName").unwrap_or("").to_string(),
        code: end.var("_SMSTSLastActionRetCode").unwrap_or("").to_string(),
        log_tail: Vec::new(),
        time: String::new(),
        logs,
        error,
    };
    let timeout = super::failure::timeout_of(end.var("SMSTSErrorDialogTimeout"));
    show_and_wait(
        f,
        state_dir,
        cfg.debug_shell,
        cfg.password.as_ref(),
        timeout,
    )
}

/// The screen when nothing may run: the medium failed its check, or the media password was
/// not given. It waits as the failure screen does so the operator reads why before the power
/// action, but never offers a shell: the medium is not trusted, or the operator did not prove
/// they know its password. An untrusted medium's `SMSTSErrorDialogTimeout` is not read either
/// (the default, 900 s). `R` restarts (exit 20); anything else, or no answer: `stop`.
fn refusal_screen(title: &str, state_dir: &Path, error: String, timeout: u64, stop: Exit) -> Exit {
    let f = super::failure::Failure {
        title: title.into(),
        sequence: "(none started)".into(),
        step: "(none)".into(),
        code: String::new(),
        log_tail: Vec::new(),
        time: String::new(),
        logs: vec![state_dir.join("smsts.log").display().to_string()],
        error: Some(error),
    };
    match show_and_wait(f, state_dir, false, None, timeout) {
        Exit::No => stop,
        other => other,
    }
}

/// Show `f` (with smsts.log's last lines and the time) and, in a boot environment, wait for
/// the operator's answer: `Exit::No` for the power action, 20 restart, 21 shell.
fn show_and_wait(
    mut f: super::failure::Failure,
    state_dir: &Path,
    debug_shell: bool,
    password: Option<&media::PasswordVerifier>,
    timeout: u64,
) -> Exit {
    use super::failure;
    f.log_tail = std::fs::read_to_string(state_dir.join("smsts.log"))
        .map(|t| failure::log_tail(&t, failure::TAIL_LINES))
        .unwrap_or_default();
    f.time = crate::log::Utc::now().rfc3339();
    eprint!("{}", failure::text(&f, debug_shell, timeout));
    // Outside a boot environment (`tsforge boot` started by hand or by a test) nobody is
    // waiting at a console for this machine's power action: the screen is shown, no wait.
    if !crate::machine::in_boot_environment() {
        return Exit::No;
    }
    let Some(stdin) = raw_stdin() else {
        return Exit::No;
    };
    let lines = failure::console_lines(stdin);
    let mut ask = |lines: &std::sync::mpsc::Receiver<Option<String>>, out: &mut dyn Write| {
        let Some(pv) = password else {
            return true;
        };
        let _ = write!(out, "Media password: ");
        let _ = out.flush();
        let _quiet = super::noecho::EchoOff::consoles();
        match lines.recv_timeout(std::time::Duration::from_secs(120)) {
            Ok(Some(pw)) => matches!(media::check_password(pv, &pw), Ok(Some(_))),
            _ => false,
        }
    };
    let choice = failure::wait(
        &lines,
        std::time::Duration::from_secs(timeout),
        std::time::Duration::from_secs(10),
        debug_shell,
        &mut std::io::stderr(),
        &mut ask,
    );
    match choice {
        failure::Choice::Restart => Exit::Passed(failure::EXIT_RESTART),
        failure::Choice::Shell => Exit::Passed(failure::EXIT_SHELL),
        failure::Choice::PowerAction => Exit::No,
    }
}

fn names(cfg: &MediaConfig) -> String {
    cfg.sequences
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn menu(cfg: &MediaConfig) -> Result<&media::SequenceEntry> {
    if cfg.sequences.is_empty() {
        bail!("the medium holds no task sequence");
    }
    eprintln!("Task sequences on this medium:");
    for (i, s) in cfg.sequences.iter().enumerate() {
        eprintln!("  {}. {}", i + 1, s.name);
    }
    for _ in 0..5 {
        let Some(line) = read_line("Start which one (number or name)? ") else {
            break;
        };
        let t = line.trim();
        if let Ok(n) = t.parse::<usize>() {
            if (1..=cfg.sequences.len()).contains(&n) {
                return Ok(&cfg.sequences[n - 1]);
            }
        }
        if let Some(s) = cfg
            .sequences
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(t))
        {
            return Ok(s);
        }
        eprintln!("{t:?} is not one of them.");
    }
    bail!("no task sequence was chosen")
}

/// What hooks know about the machine before they run.
fn boot_facts(root: &Path) -> Vec<(String, String)> {
    let uefi = if cfg!(windows) {
        // Windows PE records the firmware in PEFirmwareType: 1 BIOS, 2 UEFI.
        crate::tools::find(crate::tools::Tool::Reg)
            .ok()
            .and_then(|reg| {
                std::process::Command::new(reg)
                    .args([
                        "query",
                        r"HKLM\System\CurrentControlSet\Control",
                        "/v",
                        "PEFirmwareType",
                    ])
                    .output()
                    .ok()
            })
            .is_some_and(|o| String::from_utf8_lossy(&o.stdout).contains("0x2"))
    } else {
        Path::new("/sys/firmware/efi").exists()
    };
    let disks = crate::disk::select::enumerate()
        .map(|d| d.len())
        .unwrap_or(0);
    let (macs, ips) = network_facts();
    vec![
        ("_TSForgeMACAddresses".into(), macs.join(",")),
        ("_TSForgeIPAddresses".into(), ips.join(",")),
        (
            "_SMSTSInWinPE".into(),
            crate::machine::in_boot_environment().to_string(),
        ),
        ("_SMSTSBootUEFI".into(), uefi.to_string()),
        ("_SMSTSClientGuid".into(), crate::machine::client_guid()),
        ("_TSForgeMedium".into(), root.display().to_string()),
        ("_TSForgeDiskCount".into(), disks.to_string()),
    ]
}

/// MAC addresses of the network adapters and the machine's IPv4 addresses (loopback left
/// out), from /sys/class/net and /proc/net/fib_trie on Linux. Windows PE: empty (hooks there
/// ask `ipconfig`).
fn network_facts() -> (Vec<String>, Vec<String>) {
    let mut macs = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/class/net") {
        let mut names: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        names.sort();
        for n in names {
            if let Ok(m) = std::fs::read_to_string(n.join("address")) {
                let m = m.trim().to_ascii_uppercase();
                if m.len() == 17 && m != "00:00:00:00:00:00" && !macs.contains(&m) {
                    macs.push(m);
                }
            }
        }
    }
    let mut ips = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/proc/net/fib_trie") {
        let mut last = "";
        for line in t.lines() {
            let l = line.trim();
            if let Some(a) = l.strip_prefix("|-- ") {
                last = a;
            } else if l.contains("/32 host LOCAL")
                && !last.starts_with("127.")
                && !ips.iter().any(|i| i == last)
            {
                ips.push(last.to_string());
            }
        }
    }
    (macs, ips)
}

/// Runs one hook with the console as its input; its output is shown and also returned.
fn run_hook(
    path: &Path,
    vars: &[(String, String)],
    facts: &[(String, String)],
    env_file: &Path,
) -> Result<(i64, String)> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let interpreter = |tool: crate::tools::Tool| {
        crate::tools::find(tool)
            .map(std::process::Command::new)
            .with_context(|| format!("starting hook {}", path.display()))
    };
    let mut cmd = match ext.as_str() {
        "sh" => {
            let mut c = interpreter(crate::tools::Tool::Sh)?;
            c.arg(path);
            c
        }
        "cmd" | "bat" => {
            let mut c = interpreter(crate::tools::Tool::Cmd)?;
            c.arg("/c").arg(path);
            c
        }
        "ps1" => {
            let mut c = interpreter(crate::tools::Tool::PowerShell)?;
            c.args(["-NoProfile", "-ExecutionPolicy", "Bypass", "-File"])
                .arg(path);
            c
        }
        _ => std::process::Command::new(path),
    };
    let mut names = Vec::new();
    for (k, v) in facts.iter().chain(vars.iter()) {
        cmd.env(k, v);
        names.push(k.clone());
    }
    cmd.env(crate::envfile::ENV_FILE, env_file);
    cmd.env(crate::envfile::VAR_NAMES, names.join("\n"));
    if let Some(dir) = crate::actions::exe_dir() {
        let path_var = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![dir];
        paths.extend(std::env::split_paths(&path_var));
        if let Ok(p) = std::env::join_paths(paths) {
            cmd.env("PATH", p);
        }
    }
    cmd.stdin(std::process::Stdio::inherit())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting hook {}", path.display()))?;
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let t1 = std::thread::spawn(move || tee(out, &mut std::io::stdout()));
    let t2 = std::thread::spawn(move || tee(err, &mut std::io::stderr()));
    let status = child.wait()?;
    let mut text = t1.join().unwrap_or_default();
    text.push_str(&t2.join().unwrap_or_default());
    let code = status.code().map(i64::from).unwrap_or(-1);
    Ok((code, text))
}

/// Copies `r` to `w` as it arrives (prompts without a newline show at once) and returns it.
fn tee(mut r: impl Read, w: &mut dyn Write) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let _ = w.write_all(&buf[..n]);
                let _ = w.flush();
                all.extend_from_slice(&buf[..n]);
            }
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Windows PE has no /init: the runner itself acts on the failure screen's restart (20)
    /// and shell (21) answers; every other exit code is left to `winpeshl.ini`.
    #[test]
    fn windows_pe_acts_on_the_failure_screens_answers_only() {
        assert_eq!(windows_pe_answer(20), Some(PeAnswer::Restart));
        assert_eq!(windows_pe_answer(21), Some(PeAnswer::Shell));
        for code in [0u8, 1, 2, 3, 7, 22] {
            assert_eq!(windows_pe_answer(code), None, "{code}");
        }
    }
}
