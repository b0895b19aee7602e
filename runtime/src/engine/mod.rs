//! The engine: walks a compiled program step by step, journaling before and after each step.
//!
//! Semantics (ConfigMgr 2007 OSD; where its documentation is silent the choice is noted):
//! - Steps and groups run in order; a disabled one, or one whose condition is false, is skipped
//!   (skips do not change `_SMSTSLastActionSucceeded`).
//! - A step that fails (exit code not a success code, timeout, condition that cannot be
//!   evaluated, action that cannot start) is retried `retryCount` times; if it still fails and
//!   has no continue-on-error, its group fails: the rest of the group is skipped. A failed group
//!   with continue-on-error lets its parent go on; without, the failure climbs further. A
//!   failure that reaches the top ends the sequence as failed.
//! - `_SMSTSLastActionName` / `_SMSTSLastActionSucceeded` / `_SMSTSLastActionRetCode` describe
//!   the last step that ran (its name, whether it succeeded, its exit code), so an error-handler
//!   group after a continue-on-error group sees the failure and which step it was.
//! - A sequence whose failures were all absorbed by continue-on-error ends as succeeded, as in
//!   ConfigMgr: an error handler that wants the run to fail ends with a failing step.
//! - A group whose condition cannot be evaluated fails like a failed step in its parent.

pub mod home;
pub mod journal;
pub mod monitor;
pub mod plan;
pub mod program;
pub mod run_in;
pub mod validate;

use crate::actions::{self, custom::CustomActions, ActionResult, Ctx};
use crate::condition;
use crate::log::{self, Console, Level, Logger, Part};
use crate::sequence::model::Step;
use crate::vars::Vars;
use anyhow::{bail, Context, Result};
use journal::{Frame, Journal, Phase, State, StepRecord, STATE_SCHEMA};
use program::{Instr, Program, Resolver};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Exit code of `tsforge run` when a *Restart Computer* step asked for a restart and
/// `--no-reboot` was given: restart the machine (or just run again), and the run resumes.
pub const EXIT_RESTART: u8 = 3;

const COMPONENT: &str = "TSManager";

/// Key numbers of the monitor's events left to the boot environment's runner after a
/// hand-over copied the run's state into the deployed OS (it writes one or two more events
/// before the restart); the deployed OS's runner numbers its events after them.
const HANDOVER_EVENT_GAP: u64 = 1000;

/// How a run ended (this invocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Succeeded,
    Failed,
    /// A restart was requested and `--no-reboot` was given.
    RestartRequested,
}

/// Options of `tsforge run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub state_dir: PathBuf,
    pub log_dir: Option<PathBuf>,
    /// `--var NAME=VALUE`, applied after the sequence's defaults (fresh runs only).
    pub vars: Vec<(String, String)>,
    /// Names among `vars` whose values are secret (the medium's encrypted variables): masked
    /// in every log like hidden properties.
    pub secret_vars: Vec<String>,
    pub no_reboot: bool,
    /// fsync the journal (off only for benchmarks and throw-away runs).
    pub fsync: bool,
    pub custom: CustomActions,
    pub resolver: Resolver,
    pub console: Console,
    pub max_log_size: u64,
    /// `--disk`, `--content`, `--allow-mounted` (fresh runs; a resumed run keeps its own).
    pub targets: crate::actions::RunTargets,
    /// Keep the state on the deployed disk once a *Format and Partition Disk* step made one
    /// (`home`): `tsforge boot`, whose state directory is in RAM.
    pub state_on_disk: bool,
    /// The state directory was restored from this home (`home::restore`): keep it up to date.
    pub home: Option<home::Home>,
}

impl RunOptions {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        RunOptions {
            state_dir: state_dir.into(),
            log_dir: None,
            vars: Vec::new(),
            secret_vars: Vec::new(),
            no_reboot: false,
            fsync: true,
            custom: CustomActions::default(),
            resolver: Resolver::default(),
            console: Console::Quiet,
            max_log_size: log::cmtrace::DEFAULT_MAX_SIZE,
            targets: Default::default(),
            state_on_disk: false,
            home: None,
        }
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
}

/// The folder beside a handed-over run's state files that holds the packages staged for the
/// steps after the hand-over (a distribution point's layout: `<ID>/tsforge-package.json`, …).
pub const STAGED_PACKAGES: &str = "packages";

/// The hand-over stages, into `dest`, every package the steps after `state.pc` name that is on
/// a distribution point folder of the run (the medium's packages), copied as it is there
/// (manifest, signature, files; checked again when a step uses it). The deployed OS then needs
/// neither the medium nor a network for them, as ConfigMgr's stand-alone media do not. A
/// package on an HTTP distribution point is left there (the full OS fetches it), and one not
/// found anywhere is left for its step to report; each case is a log line.
fn stage_packages(program: &Program, state: &State, dest: &Path) -> Result<Vec<(Level, String)>> {
    let mut ids: Vec<String> = Vec::new();
    for instr in program.instrs.iter().skip(state.pc) {
        if let program::Instr::Step { step, .. } = instr {
            for id in actions::packages::referenced(step, &state.vars) {
                if !ids.iter().any(|i| i.eq_ignore_ascii_case(&id)) {
                    ids.push(id);
                }
            }
        }
    }
    let origins = crate::content::origins(&state.targets.content, &state.vars);
    let mut lines = Vec::new();
    for id in ids {
        if crate::content::manifest::check_id(&id).is_err() {
            lines.push((
                Level::Warning,
                format!("Package {id:?} named by a later step is not a package ID; not staged"),
            ));
            continue;
        }
        let local = origins.iter().find_map(|o| match o {
            crate::content::Origin::Dir(d)
                if d.join(&id)
                    .join(crate::content::manifest::PACKAGE_FILE)
                    .is_file() =>
            {
                Some(d.join(&id))
            }
            _ => None,
        });
        match local {
            Some(from) => {
                crate::osconfig::handover::copy_tree(&from, &dest.join(&id), &[])?;
                lines.push((
                    Level::Info,
                    format!(
                        "Staged package {id} from {} for the steps after the hand-over",
                        from.display()
                    ),
                ));
            }
            None => lines.push((
                Level::Info,
                format!(
                    "Package {id} is not on a distribution point folder of this run; the step \
                     that needs it fetches it from the run's distribution points"
                ),
            )),
        }
    }
    Ok(lines)
}

/// Load and compile a sequence file.
/// The resolver of a run: the options' folders, and the run's distribution points for a child
/// sequence kept in a package of its own (fetched into the run's cache, verified with the
/// run's package key).
fn run_resolver(
    opts: &RunOptions,
    targets: &crate::actions::RunTargets,
    state_dir: &Path,
) -> Resolver {
    let mut r = opts.resolver.clone();
    if r.packages.is_none() {
        r.packages = Some(program::PackageSource {
            locations: targets.content.clone(),
            cache: crate::content::cache_dir(state_dir),
            public_key: targets.package_public_key.clone(),
            vars: opts.vars.clone(),
        });
    }
    r
}

pub fn load_program(path: &Path, resolver: &Resolver) -> Result<Program> {
    let (seq, _) = crate::sequence::load(path).map_err(anyhow::Error::new)?;
    program::compile(&seq, path, resolver).map_err(anyhow::Error::new)
}

/// The built-in variables that describe where the run is now: the machine's facts
/// (make, model, addresses, boot mode, …), whether it runs in the boot environment, the
/// machine's name and the log folder. Set when a run starts and again each time it resumes
/// (after a restart the run may continue in the deployed OS, under a new name, with new
/// addresses). `_SMSTSClientGuid` and `_SMSTSPackageName` name the run and stay.
fn location_vars(log_dir: &Path) -> Vec<(String, String)> {
    let mut out = crate::machine::hardware_vars();
    let in_pe = if crate::machine::in_boot_environment() {
        "true"
    } else {
        "false"
    };
    out.push(("_SMSTSInWinPE".into(), in_pe.into()));
    out.push(("_SMSTSMachineName".into(), crate::machine::machine_name()));
    out.push(("_SMSTSLogPath".into(), log_dir.display().to_string()));
    out
}

/// On resume: the built-ins of [`location_vars`] as they are now; returns `name: old -> new`
/// for each one that changed.
fn refresh_location_vars(vars: &mut Vars, log_dir: &Path) -> Vec<String> {
    let mut changed = Vec::new();
    for (k, v) in location_vars(log_dir) {
        let old = vars.get(&k).map(str::to_string);
        if old.as_deref() != Some(v.as_str()) {
            changed.push(format!(
                "{k}: {} -> {v}",
                old.as_deref().unwrap_or("(not set)")
            ));
            vars.set(&k, v);
        }
    }
    changed
}

/// The variables a fresh run starts with: built-ins, the sequence's defaults, then `--var`.
pub fn initial_vars(program: &Program, opts: &RunOptions, log_dir: &Path) -> Vars {
    let mut vars = Vars::new();
    for (k, v) in location_vars(log_dir) {
        vars.set(&k, v);
    }
    vars.set("_SMSTSClientGuid", crate::machine::client_guid());
    vars.set("_SMSTSPackageName", program.name.clone());
    vars.set("_SMSTSLastActionSucceeded", "true");
    vars.set("_SMSTSLastActionRetCode", "0");
    for g in &program.global_vars {
        if g.hidden() {
            vars.mark_secret(&g.name);
        }
        vars.set(&g.name, g.value.clone());
    }
    for (k, v) in &opts.vars {
        if opts.secret_vars.iter().any(|s| s.eq_ignore_ascii_case(k)) {
            vars.mark_secret(k);
        }
        vars.set(k, v.clone());
    }
    vars
}

fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Run (or resume) the sequence at `path` with the state in `opts.state_dir`.
pub fn run(path: &Path, opts: &RunOptions) -> Result<RunOutcome> {
    let journal = Journal::open(&absolute(&opts.state_dir)?, opts.fsync)?;
    // Absolute, so steps that change their working directory still find the logs.
    let log_dir = absolute(opts.log_dir.as_ref().unwrap_or(&opts.state_dir))?;
    let resuming = journal.exists();
    let (program, mut state, torn) = if resuming {
        load_saved(&journal, path, opts)?
    } else {
        start_new(&journal, path, opts, &log_dir)?
    };

    let mut logger = Logger::open(&log_dir, opts.max_log_size, opts.console)
        .with_context(|| format!("opening the logs in {}", log_dir.display()))?;
    if let Some(h) = &opts.home {
        keep_home(h, opts, &mut state, &journal, &mut logger)?;
    }
    // Only secret variables are masked: `hidden="true"` on a step property is the editor's flag
    // (console exports put it on CommandLine, PackageID, VariableName, …), not a secret.
    if state.run_id.is_none() {
        // A run started by an older runner: its id for the monitor is made now, and kept.
        state.run_id = Some(uuid::Uuid::new_v4().hyphenated().to_string());
        journal.save_state(&state)?;
    }
    let reporting = monitor::Monitor::new(
        journal.dir(),
        state.run_id.as_deref().unwrap_or_default(),
        state.event_next,
    );
    // After each step: its secrets masked from now on, and the monitor it may have named.
    let update_secrets = |logger: &mut Logger, vars: &Vars| {
        logger.set_secrets(vars.secret_values());
        reporting.refresh(logger, vars);
    };
    update_secrets(&mut logger, &state.vars);

    if let Phase::Finished { succeeded } = state.phase {
        logger.say_parts(&[
            Part::Text(&format!(
                "The sequence {:?} already finished ({}) in ",
                program.name,
                if succeeded { "succeeded" } else { "failed" },
            )),
            Part::Value(&opts.state_dir.display().to_string()),
            Part::Text("; use a new --state-dir to run it again"),
        ]);
        // Events a run left unsent (the monitor was down when it ended) are sent now.
        if logger.monitor().is_some_and(|m| m.pending() > 0) {
            monitor::end(&mut logger);
        }
        return Ok(if succeeded {
            RunOutcome::Succeeded
        } else {
            RunOutcome::Failed
        });
    }

    if resuming {
        log_resume(
            &journal,
            torn.as_ref(),
            opts,
            &program,
            &mut state,
            &mut logger,
        )?;
        let changed = refresh_location_vars(&mut state.vars, &log_dir);
        if !changed.is_empty() {
            logger.log(
                Level::Info,
                COMPONENT,
                &format!(
                    "Built-in variables re-evaluated on resume: {}",
                    changed.join("; ")
                ),
            );
        }
    } else {
        logger.log_parts(
            Level::Info,
            COMPONENT,
            &[
                Part::Text(&format!(
                    "Starting task sequence {:?}: {} steps, state in ",
                    program.name, program.step_total,
                )),
                Part::Value(&opts.state_dir.display().to_string()),
            ],
        );
        logger.event(
            "run_start",
            fields(
                json!({"sequence": program.name, "steps": program.step_total,
                "client_guid": state.vars.get("_SMSTSClientGuid")}),
            ),
        );
    }

    let started = Instant::now();
    let sequence_files = sequence_files(&program, path, journal.dir())?;
    let mut walker = Walker {
        program: &program,
        journal: &journal,
        logger: &mut logger,
        opts,
        started,
        sequence_files,
        log_dir: log_dir.clone(),
        pending_handover: None,
        failed_step: None,
    };
    let result = walker.walk(&mut state, &update_secrets);
    match &result {
        Ok(RunOutcome::Succeeded | RunOutcome::Failed) => monitor::end(&mut logger),
        Ok(RunOutcome::RestartRequested) => monitor::flush(&mut logger, "at the restart"),
        Err(e) => {
            logger.event("failure", fields(json!({"message": format!("{e:#}")})));
            monitor::flush(&mut logger, "as the runner stops");
        }
    }
    logger.sync();
    result
}

/// The run's sequence file (absolute) first, then the child sequence files its steps came
/// from (those fetched into the state directory's cache are left out: they are fetched again).
fn sequence_files(program: &Program, path: &Path, state_dir: &Path) -> Result<Vec<PathBuf>> {
    let top = absolute(path)?;
    let mut out = vec![top.clone()];
    for i in &program.instrs {
        if let Instr::Enter { file, .. } | Instr::Step { file, .. } = i {
            if file.is_empty() {
                continue;
            }
            let f = absolute(Path::new(file))?;
            if !f.starts_with(state_dir) && !out.contains(&f) && f.is_file() {
                out.push(f);
            }
        }
    }
    Ok(out)
}

/// A saved run: its program and state, checked against each other, against the sequence file
/// as it is now, and against the step journal (whose torn last line, if any, is returned).
fn load_saved(
    journal: &Journal,
    path: &Path,
    opts: &RunOptions,
) -> Result<(Program, State, Option<journal::Torn>)> {
    let state = journal.load_state()?;
    let program = journal.load_program()?;
    if !program.matches(&state.program) {
        bail!(
            "{}: program.json does not match state.json (the state directory was altered); \
             use a new --state-dir to start over",
            opts.state_dir.display()
        );
    }
    let resolver = run_resolver(opts, &state.targets, journal.dir());
    let current = load_program(path, &resolver)
        .with_context(|| format!("reading {} to compare with the saved run", path.display()))?;
    if !current.matches(&state.program) {
        bail!(
            "the state directory {} holds a run of a different version of this sequence \
             (or another sequence); finish it with the file it started with, or use a new \
             --state-dir to start over",
            opts.state_dir.display()
        );
    }
    let steps = journal.check(&state, &program)?;
    // The sequence as it is now: the same steps, maybe at another path (messages name it).
    Ok((current, state, steps.torn))
}

/// A new run: refuse a state folder that holds pieces of another run, compile the sequence,
/// and save its program and first state before anything runs.
fn start_new(
    journal: &Journal,
    path: &Path,
    opts: &RunOptions,
    log_dir: &Path,
) -> Result<(Program, State, Option<journal::Torn>)> {
    if let Some(file) = journal.leftover() {
        bail!(
            "{}: missing, but the state directory holds {} of a run; starting over would \
             run its finished steps again. Refusing to guess: inspect the directory, or \
             start over with a new --state-dir",
            journal.dir().join("state.json").display(),
            file.display()
        );
    }
    let program = load_program(path, &run_resolver(opts, &opts.targets, journal.dir()))?;
    let vars = initial_vars(&program, opts, log_dir);
    let state = State {
        schema: STATE_SCHEMA,
        program: program.fingerprint(),
        pc: 0,
        frames: Vec::new(),
        vars,
        phase: Phase::Ready,
        steps_run: 0,
        last_failed: false,
        targets: opts.targets.clone(),
        handover: None,
        run_id: Some(uuid::Uuid::new_v4().hyphenated().to_string()),
        event_next: 0,
    };
    journal.save_program(&program)?;
    journal.save_state(&state)?;
    Ok((program, state, None))
}

/// The run's state lives on a disk (`home`): say so, give back the medium's secret values the
/// copy on disk does not hold, and keep journaling there.
fn keep_home(
    h: &home::Home,
    opts: &RunOptions,
    state: &mut State,
    journal: &Journal,
    logger: &mut Logger,
) -> Result<()> {
    logger.log(
        Level::Info,
        COMPONENT,
        &format!(
            "The run's state was found on {h} ({}); it is kept there",
            home::FOLDER
        ),
    );
    // The copy on disk has no secret values: the medium's come back from the options.
    for (k, v) in &opts.vars {
        if opts.secret_vars.iter().any(|s| s.eq_ignore_ascii_case(k))
            && state.vars.is_withheld(k)
            && !state.vars.contains(k)
        {
            state.vars.set(k, v.clone());
        }
    }
    let lost = state.vars.empty_secrets();
    if !lost.is_empty() {
        logger.log(
            Level::Warning,
            COMPONENT,
            &format!(
                "Secret variables are not written to disk; these are empty after the restart: {}",
                lost.join(", ")
            ),
        );
    }
    journal.set_home(Some(h.clone()))?;
    Ok(())
}

/// Resuming: cut a torn journal line, warn about options a resumed run ignores, and say
/// where the run goes on.
fn log_resume(
    journal: &Journal,
    torn: Option<&journal::Torn>,
    opts: &RunOptions,
    program: &Program,
    state: &mut State,
    logger: &mut Logger,
) -> Result<()> {
    if let Some(t) = torn {
        journal.cut_torn_tail(t)?;
        logger.log(
            Level::Warning,
            COMPONENT,
            &format!(
                "steps.jsonl ended with an incomplete line ({} bytes) left when the runner \
                 stopped while writing it; the line was removed",
                t.len
            ),
        );
    }
    if !opts.vars.is_empty() {
        logger.log(
            Level::Warning,
            COMPONENT,
            "--var values are ignored when resuming: the run keeps the variables it had",
        );
    }
    if opts.targets != Default::default() && opts.targets != state.targets {
        logger.log(
            Level::Warning,
            COMPONENT,
            "--disk/--content/--allow-mounted differ from the run's start; the resumed run keeps the ones it started with",
        );
    }
    // A handed-over run finds the packages staged for it beside its state, wherever that is.
    let staged = journal.dir().join(STAGED_PACKAGES);
    if state.handover.is_some() && staged.is_dir() {
        let shown = staged.display().to_string();
        if !state.targets.content.contains(&shown) {
            state.targets.content.insert(0, shown.clone());
            logger.log(
                Level::Info,
                COMPONENT,
                &format!("Distribution point {shown}: the packages staged by the hand-over"),
            );
        }
    }
    let how = match &state.phase {
        Phase::InStep { .. } => "the step that was running when it stopped runs again",
        Phase::Restarting => "after the restart requested by the sequence",
        _ => "at the next step",
    };
    logger.log_parts(
        Level::Info,
        COMPONENT,
        &[Part::Text(&format!(
            "Resuming task sequence {:?} at instruction {} ({how})",
            program.name, state.pc
        ))],
    );
    logger.event(
        "run_resume",
        fields(json!({"sequence": program.name, "pc": state.pc, "reason": how})),
    );
    if let Phase::InStep { .. } = state.phase {
        // Keep the InStep phase: the loop below re-runs the step at pc.
    } else {
        state.phase = Phase::Ready;
    }
    Ok(())
}

struct Walker<'a> {
    program: &'a Program,
    journal: &'a Journal,
    logger: &'a mut Logger,
    opts: &'a RunOptions,
    started: Instant,
    sequence_files: Vec<PathBuf>,
    log_dir: PathBuf,
    /// Set by the step that just ran when it handed the run over.
    pending_handover: Option<actions::HandOver>,
    /// The last step that failed (number, name, exit code, message): the `failure` event's
    /// facts when the run ends failed.
    failed_step: Option<(usize, String, i64, Option<String>)>,
}

impl Walker<'_> {
    /// Save the run's state (with the number of the next event for the monitor).
    fn save(&mut self, state: &mut State) -> Result<()> {
        if let Some(m) = self.logger.monitor() {
            state.event_next = state.event_next.max(m.next());
        }
        self.journal.save_state(state)
    }

    /// A failure climbs to the innermost open group (jump to its Exit), or ends the sequence.
    /// Returns false when the sequence has failed.
    fn fail_up(&mut self, state: &mut State) -> bool {
        match state.frames.last_mut() {
            Some(top) => {
                top.failed = true;
                if let Instr::Enter { exit, .. } = &self.program.instrs[top.enter] {
                    state.pc = *exit;
                }
                true
            }
            None => false,
        }
    }

    fn finish(&mut self, state: &mut State, succeeded: bool) -> Result<RunOutcome> {
        state.phase = Phase::Finished { succeeded };
        self.save(state)?;
        self.log_home_lost();
        self.remove_handover(state);
        let ended_home = match self.journal.finish_home() {
            Some(Ok(h)) => {
                self.logger.log(
                    Level::Info,
                    COMPONENT,
                    &format!("Removed {} from {h}: the run ended", home::FOLDER),
                );
                Some(h)
            }
            Some(Err(e)) => {
                self.logger.log(
                    Level::Warning,
                    COMPONENT,
                    &format!(
                        "Could not remove {} from the deployed disk: {e:#}",
                        home::FOLDER
                    ),
                );
                None
            }
            None => None,
        };
        // A failed run's logs stay on the deployed disk, where the operator finds them; a
        // run that succeeded leaves the disk as its steps made it (docs/engine.md, "Logs").
        let ended_home = ended_home.filter(|_| !succeeded);
        if let Some(h) = &ended_home {
            self.logger.log(
                Level::Info,
                COMPONENT,
                &format!(
                    "The logs stay on the deployed disk: {}/ on {h} (smsts.log, events.jsonl)",
                    home::LOGS_FOLDER
                ),
            );
        }
        let msg = format!(
            "Task sequence {:?} {} ({} steps run)",
            self.program.name,
            if succeeded {
                "completed successfully"
            } else {
                "failed"
            },
            state.steps_run
        );
        self.logger.log_parts(
            if succeeded { Level::Info } else { Level::Error },
            COMPONENT,
            &[Part::Text(&msg)],
        );
        if succeeded {
            self.logger.say_parts(&[Part::Text(&msg)]);
        }
        if !succeeded {
            let (number, name, code, message) = self.failed_step.clone().unwrap_or_else(|| {
                (
                    0,
                    state
                        .vars
                        .get("_SMSTSLastActionName")
                        .unwrap_or_default()
                        .to_string(),
                    state
                        .vars
                        .get("_SMSTSLastActionRetCode")
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0),
                    None,
                )
            });
            self.logger.event(
                "failure",
                fields(json!({"name": name, "number": number, "exit_code": code,
                    "message": message})),
            );
        }
        self.logger.event(
            "run_end",
            fields(json!({"succeeded": succeeded, "steps_run": state.steps_run,
                "seconds": self.started.elapsed().as_secs_f64()})),
        );
        if let Some(h) = ended_home {
            self.keep_logs(&h);
        }
        self.post_action(state);
        Ok(if succeeded {
            RunOutcome::Succeeded
        } else {
            RunOutcome::Failed
        })
    }

    /// The run failed with its state on a deployed disk: its logs stay there
    /// (`home::LOGS_FOLDER`); a failed copy is a warning.
    fn keep_logs(&mut self, h: &home::Home) {
        self.logger.sync();
        let dir = self.logger.log_dir().to_path_buf();
        if let Err(e) = h.keep_logs(&dir) {
            self.logger.log(
                Level::Warning,
                COMPONENT,
                &format!(
                    "Could not keep the logs in {}/ on {h}: {e:#}",
                    home::LOGS_FOLDER
                ),
            );
        }
    }

    fn walk(
        &mut self,
        state: &mut State,
        update_secrets: &dyn Fn(&mut Logger, &Vars),
    ) -> Result<RunOutcome> {
        let instrs = &self.program.instrs;
        loop {
            if state.pc >= instrs.len() {
                return self.finish(state, true);
            }
            match &instrs[state.pc] {
                Instr::Enter {
                    name,
                    disabled,
                    continue_on_error,
                    condition: cond,
                    defaults,
                    exit,
                    ..
                } => {
                    if *disabled {
                        self.skip(name, "group", "disabled");
                        state.pc = exit + 1;
                        continue;
                    }
                    match condition::evaluate(cond, &state.vars) {
                        Ok(true) => {}
                        Ok(false) => {
                            self.skip(name, "group", "its condition is false");
                            state.pc = exit + 1;
                            continue;
                        }
                        Err(e) => {
                            self.logger.log_parts(
                                Level::Error,
                                COMPONENT,
                                &[
                                    Part::Text(&format!("Group {name:?} failed: ")),
                                    Part::Value(&e.to_string()),
                                ],
                            );
                            state.vars.set("_SMSTSLastActionName", name.clone());
                            state.vars.set("_SMSTSLastActionSucceeded", "false");
                            state.last_failed = true;
                            if *continue_on_error {
                                state.pc = exit + 1;
                            } else if !self.fail_up(state) {
                                return self.finish(state, false);
                            }
                            continue;
                        }
                    }
                    for d in defaults {
                        if d.hidden() {
                            state.vars.mark_secret(&d.name);
                        }
                        state.vars.set_default(&d.name, d.value.clone());
                    }
                    self.logger.log_parts(
                        Level::Info,
                        COMPONENT,
                        &[Part::Text(&format!("Entering group {name:?}"))],
                    );
                    self.logger
                        .event("group_start", fields(json!({"name": name, "pc": state.pc})));
                    state.frames.push(Frame {
                        enter: state.pc,
                        failed: false,
                    });
                    state.pc += 1;
                }
                Instr::Exit { enter, name } => {
                    let frame = state.frames.pop().unwrap_or(Frame {
                        enter: *enter,
                        failed: false,
                    });
                    let coe = matches!(
                        &instrs[*enter],
                        Instr::Enter {
                            continue_on_error: true,
                            ..
                        }
                    );
                    self.logger.event(
                        "group_end",
                        fields(json!({"name": name, "failed": frame.failed})),
                    );
                    if frame.failed {
                        if coe {
                            self.logger.log_parts(
                                Level::Warning,
                                COMPONENT,
                                &[Part::Text(&format!(
                                    "Group {name:?} failed; continuing because it has continue on error"
                                ))],
                            );
                            state.pc += 1;
                        } else {
                            self.logger.log_parts(
                                Level::Error,
                                COMPONENT,
                                &[Part::Text(&format!("Group {name:?} failed"))],
                            );
                            if !self.fail_up(state) {
                                return self.finish(state, false);
                            }
                        }
                    } else {
                        self.logger.log_parts(
                            Level::Info,
                            COMPONENT,
                            &[Part::Text(&format!("Leaving group {name:?}"))],
                        );
                        state.pc += 1;
                    }
                }
                Instr::Step { step, number, .. } => {
                    let node_disabled = crate::sequence::model::Node::Step(step.clone());
                    let name = step.name().to_string();
                    if matches!(state.phase, Phase::Ready) {
                        if node_disabled.disabled() {
                            self.skip(&name, "step", "disabled");
                            state.pc += 1;
                            continue;
                        }
                        match condition::evaluate(&step.condition, &state.vars) {
                            Ok(true) => {}
                            Ok(false) => {
                                self.skip(&name, "step", "its condition is false");
                                state.pc += 1;
                                continue;
                            }
                            Err(e) => {
                                let result = ActionResult::failed(e.to_string());
                                if let Some(done) =
                                    self.after_step(state, step, *number, result, 1, 0.0)?
                                {
                                    return Ok(done);
                                }
                                continue;
                            }
                        }
                        match run_in::check(step, &state.vars, state.handover.is_some()) {
                            run_in::Verdict::Run => {}
                            run_in::Verdict::NotEnforced(why) => {
                                self.logger.log(Level::Info, COMPONENT, &why);
                            }
                            run_in::Verdict::Refuse(why) => {
                                let result = ActionResult::failed(why);
                                if let Some(done) =
                                    self.after_step(state, step, *number, result, 1, 0.0)?
                                {
                                    return Ok(done);
                                }
                                continue;
                            }
                        }
                    } else {
                        self.logger.log_parts(
                            Level::Warning,
                            COMPONENT,
                            &[Part::Text(&format!(
                                "Step {name:?} was interrupted before it finished; running it again"
                            ))],
                        );
                    }
                    if let Some(done) = self.run_step(state, step, *number, update_secrets)? {
                        return Ok(done);
                    }
                }
            }
        }
    }

    fn skip(&mut self, name: &str, what: &str, why: &str) {
        self.logger.log_parts(
            Level::Info,
            COMPONENT,
            &[Part::Text(&format!("Skipping {what} {name:?}: {why}"))],
        );
        self.logger.event(
            "step_skip",
            fields(json!({"name": name, "kind": what, "reason": why})),
        );
    }

    /// Run the step at `state.pc`; returns `Some` when the run must stop now.
    fn run_step(
        &mut self,
        state: &mut State,
        step: &Step,
        number: usize,
        update_secrets: &dyn Fn(&mut Logger, &Vars),
    ) -> Result<Option<RunOutcome>> {
        let name = step.name().to_string();
        let kind = step.kind().unwrap_or("(command line)").to_string();
        state.vars.set("_SMSTSCurrentActionName", name.clone());
        let interrupted = matches!(state.phase, Phase::InStep { .. });
        state.phase = Phase::InStep { attempt: 1 };
        self.save(state)?;
        self.logger.progress(
            number,
            self.program.step_total,
            &name,
            self.started.elapsed(),
        );
        self.logger.log_parts(
            Level::Info,
            COMPONENT,
            &[Part::Text(&format!(
                "Start executing step {number} of {}: {name:?} ({kind}), instruction {}",
                self.program.step_total, state.pc
            ))],
        );
        self.logger.event(
            "step_start",
            fields(json!({"number": number, "name": name, "type": kind, "pc": state.pc})),
        );
        let retries = step.retry_count();
        let targets = state.targets.clone();
        let t0 = Instant::now();
        let mut attempt = 1u32;
        let mut partitioned = None;
        let result = loop {
            let mut ctx = Ctx {
                vars: &mut state.vars,
                log: self.logger,
                state_dir: self.journal.dir(),
                custom: &self.opts.custom,
                number,
                targets: &targets,
                interrupted,
                partitioned_disk: None,
                sequence_files: &self.sequence_files,
                handover: None,
            };
            let r = actions::execute(step, &mut ctx);
            self.pending_handover = ctx.handover.take();
            if let Some(disk) = ctx.partitioned_disk.take() {
                partitioned = Some(disk);
            }
            update_secrets(self.logger, &state.vars);
            match &r {
                ActionResult::Exit {
                    succeeded: false,
                    code,
                    message,
                } if attempt <= retries => {
                    self.logger.log_parts(
                        Level::Warning,
                        COMPONENT,
                        &[
                            Part::Text(&format!("Step {name:?} failed (exit code {code}")),
                            Part::Value(
                                &message
                                    .as_deref()
                                    .map(|m| format!(": {m}"))
                                    .unwrap_or_default(),
                            ),
                            Part::Text(&format!("); retry {attempt} of {retries}")),
                        ],
                    );
                    attempt += 1;
                }
                _ => break r,
            }
        };
        let out = self.after_step(
            state,
            step,
            number,
            result,
            attempt,
            t0.elapsed().as_secs_f64(),
        )?;
        if let Some(disk) = partitioned.filter(|_| out.is_none() && self.opts.state_on_disk) {
            self.place_home(state, disk)?;
        }
        self.log_home_lost();
        Ok(out)
    }

    /// After *Format and Partition Disk*: keep the state on the disk it partitioned (or stay in
    /// RAM, saying why).
    fn place_home(&mut self, state: &mut State, disk: PathBuf) -> Result<()> {
        let old = self.journal.home();
        if old
            .as_ref()
            .is_some_and(|h| h.disk != disk && h.holds_state())
        {
            return Ok(()); // already on another disk, which this step did not touch
        }
        match home::choose(&disk, &state.vars) {
            Ok(h) => {
                state
                    .vars
                    .set("_SMSTSMDataPath", format!("{h}/{}", home::FOLDER));
                self.save(state)?;
                self.journal.set_home(Some(h.clone()))?;
                if self.journal.home().is_some() {
                    self.logger.log(
                        Level::Info,
                        COMPONENT,
                        &format!(
                            "The run's state is now kept on {h} in {} (a restart resumes from there)",
                            home::FOLDER
                        ),
                    );
                }
            }
            Err(why) => {
                self.journal.set_home(None)?;
                self.logger.log(
                    Level::Warning,
                    COMPONENT,
                    &format!(
                        "The run's state stays in RAM, so a restart starts the sequence over: {why}"
                    ),
                );
            }
        }
        Ok(())
    }

    fn log_home_lost(&mut self) {
        if let Some(why) = self.journal.take_home_lost() {
            self.logger.log(Level::Warning, COMPONENT, &why);
        }
    }

    /// After a hand-over step was journaled: its state (secret values emptied, as on the
    /// deployed disk's home; no package cache) and the first phase's smsts.log into the
    /// deployed OS, and the home on the deployed disk's FAT partition removed (the run now
    /// lives in the deployed OS).
    fn copy_into_deployed_os(&mut self, state: &State, ho: &actions::HandOver) -> Result<()> {
        use crate::osconfig::handover as h;
        // The queue is copied with the state: sent first, so the deployed OS does not send
        // again what the monitor already has (a resend is harmless, but the copy is smaller).
        monitor::flush(self.logger, "at the hand-over");
        self.logger.sync();
        let location = crate::volume::Location::parse(&ho.target);
        let from = self.journal.dir().to_path_buf();
        let log = self.log_dir.join("smsts.log");
        let logger = &mut *self.logger;
        h::with_root(&location, |root| {
            let dest = h::make_dir(root, &ho.state_dir)?;
            h::copy_tree(&from, &dest, &["cache"])?;
            // The run in the deployed OS numbers its events for the monitor after the ones
            // this runner still writes (the restart event, lines about a failed copy).
            let mut copy = journal::redact(state);
            copy.event_next = logger
                .monitor()
                .map_or(copy.event_next, |m| m.next())
                .max(copy.event_next)
                + HANDOVER_EVENT_GAP;
            Journal::open(&dest, self.opts.fsync)?.save_state(&copy)?;
            // Staged before smsts.log is copied, so the deployed OS's log says what was.
            for (level, line) in stage_packages(self.program, state, &dest.join(STAGED_PACKAGES))? {
                logger.log(level, COMPONENT, &line);
            }
            logger.sync();
            let logs = h::make_dir(root, &ho.log_dir)?;
            if log.is_file() {
                std::fs::copy(&log, logs.join("smsts.log"))
                    .with_context(|| format!("copying {}", log.display()))?;
            }
            Ok(())
        })?;
        self.logger.log(
            Level::Info,
            COMPONENT,
            &format!(
                "Copied the run's state to {} and smsts.log to {} in the deployed OS at {}",
                ho.state_dir, ho.log_dir, ho.target
            ),
        );

        match self.journal.finish_home() {
            Some(Ok(home)) => self.logger.log(
                Level::Info,
                COMPONENT,
                &format!(
                    "Removed {} from {home}: the run continues in the deployed OS",
                    home::FOLDER
                ),
            ),
            Some(Err(e)) => self.logger.log(
                Level::Warning,
                COMPONENT,
                &format!(
                    "Could not remove {} from the deployed disk: {e:#}",
                    home::FOLDER
                ),
            ),
            None => {}
        }
        Ok(())
    }

    /// The end of a run that was handed over, in the deployed OS: remove what the hand-over
    /// installed (its logs stay), each removal in smsts.log.
    fn remove_handover(&mut self, state: &State) {
        let Some(ho) = &state.handover else { return };
        let in_pe = state
            .vars
            .get("_SMSTSInWinPE")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        if in_pe {
            return;
        }
        use crate::osconfig::handover as h;
        let root = std::env::var_os(h::ROOT_ENV)
            .map(PathBuf::from)
            .or_else(|| h::root_of_state(self.journal.dir(), &ho.state_dir))
            .unwrap_or_else(h::os_root);
        for a in &ho.added {
            match h::remove_text(&root, &a.file, &a.text) {
                Ok(true) => self.logger.log(
                    Level::Info,
                    COMPONENT,
                    &format!(
                        "Removed the line \"{}\" from {}: the handed-over run ended",
                        a.text.trim(),
                        a.file
                    ),
                ),
                Ok(false) => {}
                Err(e) => self.logger.log(
                    Level::Warning,
                    COMPONENT,
                    &format!(
                        "Could not remove the hand-over's line from {}: {e:#}",
                        a.file
                    ),
                ),
            }
        }
        for p in &ho.cleanup {
            match h::remove(&root, p) {
                Ok(true) => self.logger.log(
                    Level::Info,
                    COMPONENT,
                    &format!("Removed {p}: the handed-over run ended"),
                ),
                Ok(false) => {}
                Err(e) => self.logger.log(
                    Level::Warning,
                    COMPONENT,
                    &format!("Could not remove {p}: {e:#}"),
                ),
            }
        }
        self.logger.log(
            Level::Info,
            COMPONENT,
            &format!("The logs stay in {}", self.log_dir.display()),
        );
    }

    /// `SMSTSPostAction`: the command run after the sequence ended (succeeded or failed), as
    /// ConfigMgr does (task sequence variables,
    /// <https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/task-sequence-variables#SMSTSPostAction>).
    /// It runs as a Run Command Line step's command line (`/bin/sh -c`, or as written on
    /// Windows) with the run's variables; its output and exit code go to smsts.log and do not
    /// change the run's outcome.
    fn post_action(&mut self, state: &mut State) {
        let Some(line) = state
            .vars
            .get("SMSTSPostAction")
            .map(|v| state.vars.expand(v))
            .filter(|v| !v.trim().is_empty())
        else {
            return;
        };
        self.logger.log_parts(
            Level::Info,
            COMPONENT,
            &[
                Part::Text("Running SMSTSPostAction, the command after the sequence ended: "),
                Part::Value(&line),
            ],
        );
        let scratch = if self.journal.dir().is_dir() {
            self.journal.dir().to_path_buf()
        } else {
            self.log_dir.clone()
        };
        let targets = state.targets.clone();
        let mut ctx = Ctx {
            vars: &mut state.vars,
            log: self.logger,
            state_dir: &scratch,
            custom: &self.opts.custom,
            number: 0,
            targets: &targets,
            interrupted: false,
            partitioned_disk: None,
            sequence_files: &self.sequence_files,
            handover: None,
        };
        let r = actions::command::run_process(
            actions::command::ProcessRun {
                component: "PostAction",
                launch: actions::process::Launch::CommandLine(line),
                cwd: None,
                timeout: None,
                success_codes: vec![0],
                extra_env: Vec::new(),
                output_variable: None,
            },
            &mut ctx,
        );
        let text = match r {
            ActionResult::Exit {
                code,
                succeeded: true,
                ..
            } => format!("SMSTSPostAction finished (exit code {code})"),
            ActionResult::Exit { code, message, .. } if code == actions::E_FAIL => format!(
                "SMSTSPostAction could not run ({}); the run's outcome is unchanged",
                message.unwrap_or_default()
            ),
            ActionResult::Exit { code, .. } => {
                format!("SMSTSPostAction failed (exit code {code}); the run's outcome is unchanged")
            }
            ActionResult::Restart(_) => String::new(),
        };
        self.logger.log(Level::Info, COMPONENT, &text);
        self.logger.sync();
    }

    /// Record a step's result, decide where to go next and journal it.
    fn after_step(
        &mut self,
        state: &mut State,
        step: &Step,
        number: usize,
        result: ActionResult,
        attempts: u32,
        seconds: f64,
    ) -> Result<Option<RunOutcome>> {
        let name = step.name().to_string();
        let kind = step.kind().unwrap_or("(command line)").to_string();
        let coe = crate::sequence::model::Node::Step(step.clone()).continue_on_error();
        match result {
            ActionResult::Exit {
                code,
                succeeded,
                message,
            } => {
                self.pending_handover = None;
                state.vars.set("_SMSTSLastActionName", name.clone());
                state.vars.set("_SMSTSLastActionRetCode", code.to_string());
                state.vars.set(
                    "_SMSTSLastActionSucceeded",
                    if succeeded { "true" } else { "false" },
                );
                state.last_failed = !succeeded;
                state.steps_run += 1;
                let detail = message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                if succeeded {
                    self.logger.log_parts(
                        Level::Info,
                        COMPONENT,
                        &[Part::Text(&format!(
                            "Step {name:?} succeeded (exit code {code})"
                        ))],
                    );
                } else {
                    self.logger.log_parts(
                        Level::Error,
                        COMPONENT,
                        &[
                            Part::Text(&format!("Step {name:?} failed (exit code {code})")),
                            Part::Value(&detail),
                        ],
                    );
                }
                self.logger.log_parts(
                    Level::Info,
                    COMPONENT,
                    &[Part::Text(&format!(
                        "Set _SMSTSLastActionName = {name:?}, _SMSTSLastActionRetCode = {code}, \
                         _SMSTSLastActionSucceeded = {succeeded}"
                    ))],
                );
                self.logger.event(
                    "step_end",
                    fields(json!({"number": number, "name": name, "type": kind,
                        "exit_code": code, "succeeded": succeeded, "attempts": attempts,
                        "seconds": seconds, "message": message})),
                );
                if !succeeded {
                    self.failed_step = Some((number, name.clone(), code, message.clone()));
                }
                self.journal.append_step(&StepRecord {
                    pc: state.pc,
                    number,
                    name: name.clone(),
                    kind,
                    exit_code: code,
                    succeeded,
                    attempts,
                    seconds,
                })?;
                state.phase = Phase::Ready;
                if succeeded {
                    state.pc += 1;
                } else if coe {
                    self.logger.log_parts(
                        Level::Warning,
                        COMPONENT,
                        &[Part::Text(&format!(
                            "Continuing after {name:?}: the step has continue on error"
                        ))],
                    );
                    state.pc += 1;
                } else if !self.fail_up(state) {
                    return self.finish(state, false).map(Some);
                }
                self.save(state)?;
                Ok(None)
            }
            ActionResult::Restart(req) => {
                state.vars.set("_SMSTSLastActionName", name.clone());
                state.vars.set("_SMSTSLastActionRetCode", "0");
                state.vars.set("_SMSTSLastActionSucceeded", "true");
                state.last_failed = false;
                state.steps_run += 1;
                self.journal.append_step(&StepRecord {
                    pc: state.pc,
                    number,
                    name: name.clone(),
                    kind,
                    exit_code: 0,
                    succeeded: true,
                    attempts,
                    seconds,
                })?;
                state.pc += 1;
                state.phase = Phase::Restarting;
                let handover = self.pending_handover.take();
                if let Some(ho) = &handover {
                    state.handover = Some(ho.clone());
                }
                self.save(state)?;
                if let Some(ho) = &handover {
                    if let Err(e) = self.copy_into_deployed_os(state, ho) {
                        // Undo: the run stays here, and the step fails.
                        state.handover = None;
                        state.pc -= 1;
                        state.phase = Phase::Ready;
                        self.save(state)?;
                        let result = ActionResult::failed(format!(
                            "copying the run's state into the deployed OS at {}: {e:#}",
                            ho.target
                        ));
                        return self.after_step(state, step, number, result, attempts, seconds);
                    }
                }
                self.logger.event(
                    "restart",
                    fields(json!({"number": number, "name": name, "target": req.target,
                        "resume_pc": state.pc, "no_reboot": self.opts.no_reboot})),
                );
                // What boots next (UEFI BootNext on the linux medium in the boot environment;
                // elsewhere a line saying the firmware's order decides). Also with --no-reboot:
                // whoever restarts the machine then gets the step's target. Never fails.
                let mut firmware = crate::osconfig::Report::default();
                crate::osconfig::efi::prepare_restart(
                    &mut crate::osconfig::efi::efibootmgr,
                    &req.target,
                    state.vars.get(crate::osconfig::efi::BOOT_ENTRY_VAR),
                    state.vars.get("_TSForgeMedium").map(std::path::Path::new),
                    &mut firmware,
                );
                for (level, line) in &firmware.lines {
                    self.logger.log(*level, "Reboot", line);
                }
                self.logger.sync();
                if self.opts.no_reboot {
                    let msg = format!(
                        "Restart requested by {name:?}; --no-reboot given, exiting with code {EXIT_RESTART}. Run again with the same --state-dir to resume."
                    );
                    self.logger
                        .log_parts(Level::Info, COMPONENT, &[Part::Text(&msg)]);
                    self.logger.say_parts(&[Part::Text(&msg)]);
                    return Ok(Some(RunOutcome::RestartRequested));
                }
                monitor::flush(self.logger, "at the restart");
                if !req.message.is_empty() {
                    self.logger.say(&req.message);
                }
                self.logger.say(&format!(
                    "Restarting in {} s (the sequence resumes after the restart)",
                    req.timeout_secs
                ));
                std::thread::sleep(std::time::Duration::from_secs(
                    req.timeout_secs
                        .min(crate::sequence::model::limits::MAX_REBOOT_TIMEOUT_SECS),
                ));
                let e = actions::restart::reboot_machine().unwrap_err();
                self.logger
                    .log(Level::Error, COMPONENT, &format!("Could not restart: {e}"));
                bail!("the sequence asked for a restart and the restart failed: {e}")
            }
        }
    }
}
