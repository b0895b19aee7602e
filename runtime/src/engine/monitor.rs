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
