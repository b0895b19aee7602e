//! The run's journal in its state directory: what lets a run resume after a restart, a killed
//! runner or a power cut without running a finished step twice.
//!
//! Files in the state directory:
//! - `program.json`: the flattened program, written once when the run starts.
//! - `state.json`: the checkpoint: instruction pointer, open groups, variables and phase.
//!   Rewritten before and after every step: written to `state.json.tmp`, `fsync`ed, renamed
//!   over `state.json`, then the directory is `fsync`ed, so a power cut leaves either the old
//!   or the new checkpoint, never a torn one.
//! - `steps.jsonl`: one line per finished step (append-only history for people and tests).
//!
//! A `state.json` that cannot be read or parsed is an error that names the file and says what
//! to do; it never silently restarts the sequence. So is one that does not fit the run
//! ([`Journal::check`]): an instruction pointer outside the program or not where its phase
//! says, open groups that are not the ones around it, fewer finished steps in `steps.jsonl`
//! than it counts, or a journal that records steps the program does not have or goes past
//! the instruction pointer. A state directory holding `program.json` or `steps.jsonl` without
//! `state.json` is damaged too, not new ([`Journal::leftover`]).
//!
//! The one damage a power cut may legitimately cause is an incomplete last line of
//! `steps.jsonl` (the record of a step being written when the power went; `state.json` still
//! says the step was running, so it runs again): it is not counted, and cut off before the run
//! goes on ([`Journal::cut_torn_tail`]), so the next record starts on a line of its own.

use super::home::{Home, Mirror};
use super::program::{Instr, Program};
use crate::vars::Vars;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const STATE_SCHEMA: u32 = 1;

/// An open group on the way to the current instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// Index of the group's `Enter`.
    pub enter: usize,
    /// A step (or child group) inside failed without continue-on-error.
    pub failed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Between instructions; `pc` is the next one.
    Ready,
    /// The step at `pc` started and has not finished: if the run is found in this phase, it
    /// was interrupted and the step runs again.
    InStep { attempt: u32 },
    /// A *Restart Computer* step finished and the machine is (being) restarted; `pc` is the
    /// step after it.
    Restarting,
    /// The sequence ended.
    Finished { succeeded: bool },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub schema: u32,
    /// `Program::fingerprint()` of `program.json`.
    pub program: String,
    pub pc: usize,
    pub frames: Vec<Frame>,
    pub vars: Vars,
    #[serde(flatten)]
    pub phase: Phase,
    /// Steps actually executed so far (across restarts).
    pub steps_run: usize,
    /// Whether the last finished step failed (also tracked in the variables; kept here to
    /// decide the run's final outcome).
    pub last_failed: bool,
    /// Disk overrides and content locations the run started with.
    #[serde(default)]
    pub targets: crate::actions::RunTargets,
    /// Set when *Setup Windows and ConfigMgr* handed the run over to the deployed OS: from
    /// then on the run is on a deployment target (`runIn="WinPE"` is enforced), and the end
    /// of the run removes what the hand-over installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<crate::actions::HandOver>,
    /// The run's id for a monitor (`docs/monitor.md`): a UUID v4 made when the run starts,
    /// kept across restarts, power cuts and the hand-over. Older state files have none; a
    /// resumed run then makes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The number of the next event queued for the monitor (its key `<run>:<n>`), kept here
    /// as well as in the queue so keys never repeat, even where the queue files are not
    /// carried (the copy of the state on a deployed disk).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub event_next: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One line of `steps.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub pc: usize,
    pub number: usize,
    pub name: String,
    pub kind: String,
    pub exit_code: i64,
    pub succeeded: bool,
    pub attempts: u32,
    pub seconds: f64,
}

pub struct Journal {
    dir: PathBuf,
    fsync: bool,
    /// The copy on the deployed disk (`super::home`), once there is one.
    home: RefCell<Option<(Home, Mirror)>>,
    /// Why the home was given up (taken by the engine to log it).
    home_lost: RefCell<Option<String>>,
}

impl Journal {
    /// Open (create) a state directory. `fsync` off trades power-cut safety for speed
    /// (benchmarks, throw-away runs).
    pub fn open(dir: &Path, fsync: bool) -> Result<Journal> {
        fs::create_dir_all(dir)
            .with_context(|| format!("creating state directory {}", dir.display()))?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            fsync,
            home: RefCell::new(None),
            home_lost: RefCell::new(None),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keep a copy of every checkpoint on `home` from now on (`None`: RAM only again), and
    /// write the current one there at once.
    pub fn set_home(&self, home: Option<Home>) -> Result<()> {
        *self.home.borrow_mut() = home.map(|h| (h, Mirror::default()));
        if self.home.borrow().is_some() && self.exists() {
            let state = self.load_state()?;
            self.mirror(&state);
        }
        Ok(())
    }

    pub fn home(&self) -> Option<Home> {
        self.home.borrow().as_ref().map(|(h, _)| h.clone())
    }

    /// Why the copy on the deployed disk was given up since the last call, if it was.
    pub fn take_home_lost(&self) -> Option<String> {
        self.home_lost.borrow_mut().take()
    }

    /// The run ended: remove its folder from the home (and stop copying).
    pub fn finish_home(&self) -> Option<Result<Home>> {
        let (home, _) = self.home.borrow_mut().take()?;
        Some(home.remove().map(|_| home))
    }

    fn mirror(&self, state: &State) {
        let mut slot = self.home.borrow_mut();
        let Some((home, mirror)) = slot.as_mut() else {
            return;
        };
        let result = serde_json::to_vec(&redact(state))
            .context("serializing the run state")
            .and_then(|json| home.write(&self.dir, &json, mirror));
        if let Err(e) = result {
            *self.home_lost.borrow_mut() = Some(format!(
                "the state can no longer be kept on {home} ({e:#}); it stays in RAM, so a \
                 restart from now on starts the sequence over"
            ));
            *slot = None;
        }
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Whether this directory holds a run (finished or not).
    pub fn exists(&self) -> bool {
        self.state_path().exists()
    }

    /// A file of a run in a directory without `state.json`: the path of `program.json` or
    /// `steps.jsonl`, whichever is there. Such a directory is damaged, not new: starting over
    /// would run finished steps again.
    pub fn leftover(&self) -> Option<PathBuf> {
        if self.exists() {
            return None;
        }
        ["program.json", STEPS]
            .iter()
            .map(|n| self.dir.join(n))
            .find(|p| p.exists())
    }

    /// Check a loaded `state` against its `program` and `steps.jsonl` (see the module
    /// documentation). Errors name the file at fault and what does not fit.
    pub fn check(&self, state: &State, program: &Program) -> Result<StepsCheck> {
        let state_path = self.state_path();
        check_state(state, program).map_err(|why| {
            anyhow::anyhow!(
                "{}: {why}; the state directory was altered or damaged. Refusing to guess where \
                 to resume: inspect it (steps.jsonl lists the finished steps), or start over \
                 with a new --state-dir",
                state_path.display()
            )
        })?;
        let steps_path = self.dir.join(STEPS);
        let bytes = match fs::read(&steps_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", steps_path.display())),
        };
        let damaged = |line: Option<usize>, why: String| {
            let at = line.map(|l| format!(":{l}")).unwrap_or_default();
            anyhow::anyhow!(
                "{}{at}: {why}; the state directory was altered or damaged. Refusing to guess \
                 where to resume: inspect it, or start over with a new --state-dir",
                steps_path.display()
            )
        };
        let check = read_steps(&bytes);
        let records = &check.records;
        for (i, (line, r)) in records.iter().enumerate() {
            match program.instrs.get(r.pc) {
                Some(Instr::Step { number, .. }) if *number == r.number => {}
                _ => {
                    return Err(damaged(
                        Some(*line),
                        format!(
                            "records step {} at instruction {}, which is not where program.json \
                             has that step",
                            r.number, r.pc
                        ),
                    ))
                }
            }
            if i > 0 && r.pc < records[i - 1].1.pc {
                return Err(damaged(
                    Some(*line),
                    format!(
                        "records instruction {} after instruction {}, but a run only moves forward",
                        r.pc,
                        records[i - 1].1.pc
                    ),
                ));
            }
        }
        if let Some(line) = check.bad_line {
            return Err(damaged(Some(line), "not a step record".into()));
        }
        if records.len() < state.steps_run {
            return Err(anyhow::anyhow!(
                "{}: counts {} finished steps, but {} records {}; the state directory was \
                 altered or damaged. Refusing to guess where to resume: inspect it, or start \
                 over with a new --state-dir",
                state_path.display(),
                state.steps_run,
                steps_path.display(),
                records.len()
            ));
        }
        if let Some((_, last)) = records.last() {
            // The step at `pc` may have finished without its checkpoint (InStep: it runs again;
            // a top-level failure ends the run at the failed step); otherwise `pc` is past it.
            let may_equal = matches!(state.phase, Phase::InStep { .. } | Phase::Finished { .. });
            if state.pc < last.pc || (state.pc == last.pc && !may_equal) {
                return Err(anyhow::anyhow!(
                    "{}: resumes at instruction {}, but {} records instruction {} as finished; \
                     the state directory was altered or damaged. Refusing to guess where to \
                     resume: inspect it, or start over with a new --state-dir",
                    state_path.display(),
                    state.pc,
                    steps_path.display(),
                    last.pc
                ));
            }
        }
        Ok(StepsCheck {
            records: records.len(),
            torn: check.torn,
        })
    }

    /// Cut the incomplete last line `check` found off `steps.jsonl`.
    pub fn cut_torn_tail(&self, torn: &Torn) -> Result<()> {
        let path = self.dir.join(STEPS);
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        f.set_len(torn.keep)
            .with_context(|| format!("cutting the incomplete last line of {}", path.display()))?;
        if self.fsync {
            f.sync_all()
                .with_context(|| format!("syncing {}", path.display()))?;
        }
        Ok(())
    }

    pub fn load_program(&self) -> Result<Program> {
        let path = self.dir.join("program.json");
        let bytes = fs::read(&path).with_context(|| {
            format!(
                "reading {} (the state directory holds a run but its program is missing; \
                 use a new --state-dir to start over)",
                path.display()
            )
        })?;
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is corrupt; the run cannot be resumed safely. Inspect it, or use a new \
                 --state-dir to start the sequence over",
                path.display()
            )
        })
    }

    pub fn save_program(&self, program: &Program) -> Result<()> {
        let json = serde_json::to_vec(program).context("serializing the program")?;
        self.atomic_write("program.json", &json)
    }

    pub fn load_state(&self) -> Result<State> {
        let path = self.state_path();
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let state: State = serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "{}: the run's state is corrupt or truncated ({e}); refusing to guess where to \
                 resume. Inspect the file (steps.jsonl lists the finished steps), or start \
                 over with a new --state-dir",
                path.display()
            )
        })?;
        if state.schema != STATE_SCHEMA {
            bail!(
                "{}: state schema {} is not the {} this runner reads",
                path.display(),
                state.schema,
                STATE_SCHEMA
            );
        }
        Ok(state)
    }

    pub fn save_state(&self, state: &State) -> Result<()> {
        let json = serde_json::to_vec(state).context("serializing the run state")?;
        self.atomic_write("state.json", &json)?;
        self.mirror(state);
        Ok(())
    }

    pub fn append_step(&self, record: &StepRecord) -> Result<()> {
        let path = self.dir.join(STEPS);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let mut line = serde_json::to_vec(record).context("serializing a step record")?;
        line.push(b'\n');
        f.write_all(&line)
            .with_context(|| format!("writing {}", path.display()))?;
        if self.fsync {
            f.sync_data()
                .with_context(|| format!("syncing {}", path.display()))?;
        }
        Ok(())
    }

    /// Write `name` atomically: `name.tmp`, fsync, rename, fsync the directory.
    fn atomic_write(&self, name: &str, data: &[u8]) -> Result<()> {
        let tmp = self.dir.join(format!("{name}.tmp"));
        crate::sys::write_atomic(&self.dir.join(name), &tmp, data, self.fsync)
    }
}

/// The journal of finished steps.
const STEPS: &str = "steps.jsonl";

/// What [`Journal::check`] found in `steps.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepsCheck {
    /// Complete step records.
    pub records: usize,
    /// An incomplete last line, left by a power cut while it was written.
    pub torn: Option<Torn>,
}

/// An incomplete last line of `steps.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Torn {
    /// Bytes of the file before it (the length to keep).
    pub keep: u64,
    /// Its length in bytes.
    pub len: u64,
}

struct StepsRead {
    /// (1-based line, record) of every complete record.
    records: Vec<(usize, StepRecord)>,
    /// The first line that is not a record and not the last line.
    bad_line: Option<usize>,
    torn: Option<Torn>,
}

/// Split `steps.jsonl` into records. The last line is *torn* when it has no line end or is not
/// a record: a record is written with its line end in one write, so only a power cut in the
/// middle of that write leaves such a line, and only as the last one.
fn read_steps(bytes: &[u8]) -> StepsRead {
    let mut out = StepsRead {
        records: Vec::new(),
        bad_line: None,
        torn: None,
    };
    let mut start = 0usize;
    let mut line = 0usize;
    while start < bytes.len() {
        line += 1;
        let (end, complete) = match bytes[start..].iter().position(|b| *b == b'\n') {
            Some(i) => (start + i + 1, true),
            None => (bytes.len(), false),
        };
        let last = end == bytes.len();
        let record = if complete {
            serde_json::from_slice::<StepRecord>(&bytes[start..end - 1]).ok()
        } else {
            None
        };
        match record {
            Some(r) => out.records.push((line, r)),
            None if last => {
                out.torn = Some(Torn {
                    keep: start as u64,
                    len: (end - start) as u64,
                })
            }
            None => {
                out.bad_line.get_or_insert(line);
            }
        }
        start = end;
    }
    out
}

/// Whether `state` fits `program` (see the module documentation); `Err` says what does not.
fn check_state(state: &State, program: &Program) -> std::result::Result<(), String> {
    let instrs = &program.instrs;
    let n = instrs.len();
    if state.pc > n {
        return Err(format!(
            "its instruction pointer (pc) {} is past the end of the program, which has {n} \
             instructions (program.json)",
            state.pc
        ));
    }
    let is_step = |i: usize| matches!(instrs.get(i), Some(Instr::Step { .. }));
    match state.phase {
        Phase::InStep { .. } if !is_step(state.pc) => {
            return Err(format!(
                "it says the step at instruction {} was running, but that instruction is not a \
                 step",
                state.pc
            ))
        }
        Phase::Restarting if state.pc == 0 || !is_step(state.pc - 1) => {
            return Err(format!(
                "it says a Restart Computer step before instruction {} finished, but that \
                 instruction does not follow a step",
                state.pc
            ))
        }
        Phase::Finished { .. } => {
            if !state.frames.is_empty() {
                return Err("it says the run finished, but lists open groups".into());
            }
            return Ok(());
        }
        _ => {}
    }
    // The groups open at `pc`: every Enter before it whose group has not ended before it.
    let mut open: Vec<usize> = Vec::new();
    for (i, instr) in instrs[..state.pc].iter().enumerate() {
        match instr {
            Instr::Enter { .. } => open.push(i),
            Instr::Exit { .. } => {
                open.pop();
            }
            Instr::Step { .. } => {}
        }
    }
    let listed: Vec<usize> = state.frames.iter().map(|f| f.enter).collect();
    if listed != open {
        return Err(format!(
            "it lists the open groups at instructions {listed:?}, but at instruction {} the \
             groups entered at {open:?} are open",
            state.pc
        ));
    }
    for (i, f) in state.frames.iter().enumerate() {
        let innermost = i + 1 == state.frames.len();
        let at_exit = matches!(
            instrs.get(f.enter),
            Some(Instr::Enter { exit, .. }) if *exit == state.pc
        );
        if f.failed && !(innermost && at_exit) {
            return Err(format!(
                "it marks the group entered at instruction {} as failed, but a failed group is \
                 the innermost one and the run is at its end",
                f.enter
            ));
        }
    }
    Ok(())
}

/// The state as it goes to the deployed disk: secret values emptied.
pub(crate) fn redact(state: &State) -> State {
    let mut s = state.clone();
    s.vars = s.vars.without_secret_values();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_state_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), true).unwrap();
        fs::write(dir.path().join("state.json"), b"{\"schema\":1,\"pro").unwrap();
        let e = format!("{:#}", j.load_state().unwrap_err());
        assert!(e.contains("state.json"), "{e}");
        assert!(e.contains("corrupt or truncated"), "{e}");
    }

    #[test]
    fn state_round_trips_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), true).unwrap();
        let mut vars = Vars::new();
        vars.set("A", "1");
        let s = State {
            schema: STATE_SCHEMA,
            program: "abc".into(),
            pc: 3,
            frames: vec![Frame {
                enter: 1,
                failed: false,
            }],
            vars,
            phase: Phase::InStep { attempt: 1 },
            steps_run: 2,
            last_failed: false,
            targets: Default::default(),
            handover: None,
            run_id: Some("0b6e".into()),
            event_next: 7,
        };
        j.save_state(&s).unwrap();
        assert_eq!(j.load_state().unwrap(), s);
        assert!(!dir.path().join("state.json.tmp").exists());
    }
}
