//! The run's monitor (`docs/monitor.md`; the queue and its sender are `log::report`): started
//! as soon as the run's variables name one (`TSForgeMonitorURL`, else MDT's `EventService`),
//! whether the sequence, the medium, a hook or a step set it; flushed, with a bounded wait,
//! before a restart and at the end of the run, when smsts.log is uploaded too.

use crate::log::report::{self, Machine, Reporter};
use crate::log::{Level, Logger};
use crate::vars::Vars;
use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// What starting the run's monitor needs: the queue's folder, the run's id and the floor of
/// its key numbers (from the run's state).
pub struct Monitor {
    dir: PathBuf,
    run: String,
    floor: u64,
    /// The URL last refused (logged once).
    refused: RefCell<Option<String>>,
}

/// `WinPE` in the boot environment (Windows PE or tsforge's Linux one), `FullOS` elsewhere.
pub fn phase() -> &'static str {
    if crate::machine::in_boot_environment() {
        "WinPE"
    } else {
        "FullOS"
    }
}

impl Monitor {
    pub fn new(dir: &Path, run: &str, floor: u64) -> Monitor {
        Monitor {
            dir: dir.to_path_buf(),
            run: run.to_string(),
            floor,
            refused: RefCell::new(None),
        }
    }

    /// Start reporting when the variables name a monitor and it is not started yet; else give
    /// the sender the machine's identity and the monitor as the variables say now.
    pub fn refresh(&self, logger: &mut Logger, vars: &Vars) {
        let Some(target) = report::target(vars) else {
            return;
        };
        let machine = Machine::from_vars(vars);
        if let Some(m) = logger.monitor() {
            m.update(target, machine);
            return;
        }
        if let Err(e) = report::check_url(&target.url) {
            if self.refused.borrow().as_deref() != Some(target.url.as_str()) {
                *self.refused.borrow_mut() = Some(target.url.clone());
                logger.log(
                    Level::Warning,
                    report::COMPONENT,
                    &format!("{e}; no events are sent to it"),
                );
            }
            return;
        }
        let url = target.url.clone();
        match Reporter::start(&self.dir, self.floor, target, &self.run, phase(), machine) {
            Ok((r, unreadable)) => {
                let waiting = r.pending();
                logger.set_monitor(Some(r));
                logger.log(
                    Level::Info,
                    report::COMPONENT,
                    &format!(
                        "Reporting the run's events to the monitor at {url} (run {}; {waiting} \
                         events waiting in {})",
                        self.run,
                        self.dir.join(report::QUEUE_FILE).display()
                    ),
                );
                if unreadable > 0 {
                    logger.log(
                        Level::Warning,
                        report::COMPONENT,
                        &format!(
                            "{unreadable} unreadable lines of {} were skipped (a line cut by a \
                             power cut)",
                            report::QUEUE_FILE
                        ),
                    );
                }
            }
            Err(e) => logger.log(
                Level::Warning,
                report::COMPONENT,
                &format!(
                    "Cannot queue events for the monitor at {url} in {}: {e}; no events are sent \
                     to it",
                    self.dir.display()
                ),
            ),
        }
    }
}

/// Wait (at most `report::FLUSH_WAIT`) for the queued events to be sent; what is left stays in
/// the state folder for the run to send when it goes on. `when` ends the log line.
pub fn flush(logger: &mut Logger, when: &str) {
    let Some(f) = logger.monitor().map(|m| m.flush(report::FLUSH_WAIT)) else {
        return;
    };
    logger.monitor_warnings();
    if f.left > 0 {
        logger.log(
            Level::Warning,
            report::COMPONENT,
            &format!(
                "{} events for the monitor are left in the state folder {when} ({}); the run \
                 sends them when it goes on",
                f.left, f.why
            ),
        );
    }
}

/// The end of the run: flush, upload smsts.log (`PUT <url>/api/v1/runs/<run>/log`), stop the
/// sender.
pub fn end(logger: &mut Logger) {
    if logger.monitor().is_none() {
        return;
    }
    flush(logger, "at the end of the run");
    if logger.monitor().is_some_and(|m| m.unauthorized()) {
        logger.set_monitor(None);
        return;
    }
    logger.log(
        Level::Info,
        report::COMPONENT,
        "Uploading smsts.log to the monitor",
    );
    logger.sync();
    let log = logger.log_dir().join("smsts.log");
    let result = match std::fs::read(&log) {
        Ok(text) => logger
            .monitor()
            .map(|m| m.upload_log(&text))
            .unwrap_or(Ok(())),
        Err(e) => Err(format!("reading {}: {e}", log.display())),
    };
    if let Err(e) = result {
        logger.log(
            Level::Warning,
            report::COMPONENT,
            &format!("Could not upload smsts.log to the monitor: {e}"),
        );
    }
    logger.set_monitor(None);
    logger.sync();
}

/// The folder (in the state folder) of the queue of a boot that stopped before any run: its
/// own, so a later run in the same state folder never finds these events in its queue.
pub const STOPPED_BOOT_DIR: &str = "monitor-boot";

/// Why a boot stopped before the engine started a run (a pre-execution hook failed): what the
/// failure screen shows, reported as a run of its own.
pub struct StoppedBoot<'a> {
    /// The sequence line of the failure screen (no sequence started).
    pub sequence: &'a str,
    /// The failed step line of the failure screen (`pre-execution hook <hook>`).
    pub name: &'a str,
    pub exit_code: i64,
    pub message: &'a str,
    /// How long the boot ran.
    pub seconds: f64,
}

/// A boot that stopped before any run (`tsforge boot`, a failed pre-execution hook) and whose
/// variables (`given`: the medium's, then the hooks', then `--var`) name a monitor: a run of
/// its own for the monitor (a new run id; `run_start` with no steps, `failure`, `run_end`
/// failed), flushed with the usual bounded wait, then smsts.log uploaded, as at the end of a
/// run. The queue is in [`STOPPED_BOOT_DIR`] under `state_dir`, emptied first. The events also
/// go to events.jsonl. Nothing happens when no monitor is named.
pub fn report_stopped_boot(
    logger: &mut Logger,
    state_dir: &Path,
    given: &[(String, String)],
    stop: &StoppedBoot,
) {
    // The machine's identity as a run would have it: its facts, then the variables given.
    let mut vars = Vars::new();
    for (k, v) in crate::machine::hardware_vars() {
        vars.set(&k, v);
    }
    vars.set("_SMSTSClientGuid", crate::machine::client_guid());
    vars.set("_SMSTSMachineName", crate::machine::machine_name());
    for (k, v) in given {
        vars.set(k, v.clone());
    }
    if report::target(&vars).is_none() {
        return;
    }
    let dir = state_dir.join(STOPPED_BOOT_DIR);
    for f in [report::QUEUE_FILE, report::SENT_FILE] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let run = uuid::Uuid::new_v4().hyphenated().to_string();
    Monitor::new(&dir, &run, 0).refresh(logger, &vars);
    if logger.monitor().is_none() {
        return;
    }
    let event = |v: serde_json::Value| match v {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    logger.event(
        "run_start",
        event(serde_json::json!({"sequence": stop.sequence, "steps": 0,
            "client_guid": vars.get("_SMSTSClientGuid")})),
    );
    logger.event(
        "failure",
        event(
            serde_json::json!({"name": stop.name, "exit_code": stop.exit_code,
            "message": stop.message}),
        ),
    );
    logger.event(
        "run_end",
        event(serde_json::json!({"succeeded": false, "steps_run": 0,
            "seconds": stop.seconds})),
    );
    end(logger);
}
