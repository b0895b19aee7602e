//! The failure screen of `tsforge boot`: what ConfigMgr's task sequence error dialog is on a
//! console.
//!
//! When the sequence fails, the runner prints the sequence, the failed step and its exit code,
//! the last lines of smsts.log, the time and where the logs are, then waits for the operator as
//! the error dialog does: `SMSTSErrorDialogTimeout` seconds (900 when unset), with a countdown.
//! The answer is a line typed on any console (the consoles are line-buffered: a letter, then
//! Enter): `R` restarts, `S` opens a shell when the medium allows it (`debug_shell = true` in
//! media.toml, ConfigMgr's *Enable command support*; with a media password, only after the
//! password is typed again), anything else or no answer ends with the medium's power action.
//! The runner's exit code tells `/init` what to do ([`EXIT_RESTART`], [`EXIT_SHELL`], else
//! power off); `docs/media.md` lists them.

use std::io::{Read, Write};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// `tsforge boot`'s exit code when the operator asked for a restart on the failure screen:
/// `/init` restarts the machine (`reboot -f`).
pub const EXIT_RESTART: u8 = 20;
/// `tsforge boot`'s exit code when the operator asked for a shell (debug shell allowed, the
/// password given again): `/init` starts `sh`, then powers off when it ends.
pub const EXIT_SHELL: u8 = 21;
/// ConfigMgr's default for `SMSTSErrorDialogTimeout`, in seconds.
pub const DEFAULT_TIMEOUT: u64 = 900;
/// Lines of smsts.log shown.
pub const TAIL_LINES: usize = 12;

/// What the screen shows.
#[derive(Debug, Clone, Default)]
pub struct Failure {
    /// The screen's heading; empty: `TASK SEQUENCE FAILED`.
    pub title: String,
    pub sequence: String,
    pub step: String,
    pub code: String,
    /// The last messages of smsts.log, oldest first.
    pub log_tail: Vec<String>,
    /// When the sequence failed (UTC, RFC 3339).
    pub time: String,
    /// Where the logs are (folders, a share), one a line.
    pub logs: Vec<String>,
    /// The error that stopped the run, when it did not end by a failed step.
    pub error: Option<String>,
}

/// The operator's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Restart,
    Shell,
    /// The medium's power action: power off (no answer, another key, no console).
    PowerAction,
}

/// `SMSTSErrorDialogTimeout` as the screen uses it: seconds; unset, empty or not a number →
/// the default, 900.
pub fn timeout_of(value: Option<&str>) -> u64 {
    value
        .map(str::trim)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// The last `n` messages of smsts.log's text (CMTrace entries; lines as they are when the text
/// is not CMTrace), one line each.
pub fn log_tail(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<String> = match crate::log::cmtrace::parse(text) {
        Ok(entries) => entries
            .into_iter()
            .flat_map(|e| {
                e.message
                    .lines()
                    .map(|l| format!("{} {}", e.time.split('.').next().unwrap_or(""), l))
                    .collect::<Vec<_>>()
            })
            .collect(),
        Err(_) => text.lines().map(str::to_string).collect(),
    };
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// The screen's text, before the countdown.
pub fn text(f: &Failure, debug_shell: bool, timeout: u64) -> String {
    let mut s = String::new();
    let rule = "=".repeat(72);
    s.push_str(&format!("\n{rule}\n"));
    let title = if f.title.is_empty() {
        "TASK SEQUENCE FAILED"
    } else {
        &f.title
    };
    s.push_str(&format!("{title}\n"));
    s.push_str(&format!("  Task sequence: {}\n", f.sequence));
    s.push_str(&format!("  Failed step:   {}\n", f.step));
    s.push_str(&format!("  Exit code:     {}\n", f.code));
    if let Some(e) = &f.error {
        s.push_str(&format!("  Error:         {e}\n"));
    }
    s.push_str(&format!("  Time:          {}\n", f.time));
    for (i, l) in f.logs.iter().enumerate() {
        let label = if i == 0 {
            "  Logs:          "
        } else {
            "                 "
        };
        s.push_str(&format!("{label}{l}\n"));
    }
    s.push_str(&format!(
        "Last lines of smsts.log:\n{}",
        f.log_tail
            .iter()
            .map(|l| format!("  | {l}\n"))
            .collect::<String>()
    ));
    s.push_str(&format!("{rule}\n"));
    s.push_str("Type R and Enter to restart");
    if debug_shell {
        s.push_str(", S and Enter for a shell");
    }
    s.push_str(&format!(
        "; anything else, or no answer within {timeout} seconds: power off.\n"
    ));
    s
}

/// The answer a typed line means: `None` for a shell the medium does not allow.
pub fn choice_for(line: &str, debug_shell: bool) -> Option<Choice> {
    match line.trim().to_ascii_lowercase().as_str() {
        "r" => Some(Choice::Restart),
        "s" if debug_shell => Some(Choice::Shell),
        "s" => None,
        _ => Some(Choice::PowerAction),
    }
}

/// Lines typed on the console, read by a thread (`None`: end of input).
pub fn console_lines(input: impl Read + Send + 'static) -> Receiver<Option<String>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut input = input;
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        loop {
            match input.read(&mut b) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(_) if b[0] == b'\n' => {
                    let l = String::from_utf8_lossy(&line)
                        .trim_end_matches('\r')
                        .to_string();
                    line.clear();
                    if tx.send(Some(l)).is_err() {
                        return;
                    }
                }
                Ok(_) => line.push(b[0]),
            }
        }
    });
    rx
}

/// Lines typed on the console, as [`console_lines`] gives them.
pub type Lines = Receiver<Option<String>>;

/// Asks the media password on the console (lines, the screen): whether it was right.
pub type AskPassword<'a> = &'a mut dyn FnMut(&Lines, &mut dyn Write) -> bool;

/// Waits for the operator's answer, printing a countdown every `tick` to `out`. `password`:
/// asked before a shell is granted (it returns whether the right password was typed); a wrong
/// one goes back to waiting.
pub fn wait(
    lines: &Receiver<Option<String>>,
    timeout: Duration,
    tick: Duration,
    debug_shell: bool,
    out: &mut dyn Write,
    password: AskPassword,
) -> Choice {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = writeln!(out, "No answer: powering off.");
            return Choice::PowerAction;
        }
        let _ = writeln!(
            out,
            "Power off in {} s (R: restart{}).",
            left.as_secs_f64().ceil() as u64,
            if debug_shell { ", S: shell" } else { "" }
        );
        let _ = out.flush();
        match lines.recv_timeout(left.min(tick)) {
            Err(RecvTimeoutError::Timeout) => continue,
            Ok(None) | Err(RecvTimeoutError::Disconnected) => {
                let _ = writeln!(out, "No console input: powering off.");
                return Choice::PowerAction;
            }
            Ok(Some(line)) => match choice_for(&line, debug_shell) {
                None => {
                    let _ = writeln!(
                        out,
                        "A shell is not allowed on this medium (debug_shell is off in media.toml; \
                         build it with --debug-shell)."
                    );
                }
                Some(Choice::Shell) => {
                    if password(lines, out) {
                        return Choice::Shell;
                    }
                    let _ = writeln!(out, "Wrong media password: no shell.");
                }
                Some(c) => return c,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Failure {
        Failure {
            title: String::new(),
            sequence: "Deploy".into(),
            step: "Fail on purpose".into(),
            code: "7".into(),
            log_tail: vec!["09:00:00 Failed to run the last action".into()],
            time: "2026-12-07T09:00:00Z".into(),
            logs: vec!["/run/tsforge/smsts.log".into(), "/share/PC1".into()],
            error: None,
        }
    }

    fn run(
        input: &'static [u8],
        debug_shell: bool,
        timeout_ms: u64,
        pw_ok: bool,
    ) -> (Choice, String) {
        let rx = console_lines(input);
        let mut out = Vec::new();
        let mut asked = 0;
        let mut pw = |_: &Receiver<Option<String>>, _: &mut dyn Write| {
            asked += 1;
            pw_ok
        };
        let c = wait(
            &rx,
            Duration::from_millis(timeout_ms),
            Duration::from_millis(20),
            debug_shell,
            &mut out,
            &mut pw,
        );
        let text = String::from_utf8(out).unwrap() + &format!("[asked {asked}]");
        (c, text)
    }

    #[test]
    fn the_screen_names_the_sequence_the_step_the_code_the_logs_and_the_keys() {
        let t = text(&sample(), false, 30);
        for want in [
            "TASK SEQUENCE FAILED",
            "Task sequence: Deploy",
            "Failed step:   Fail on purpose",
            "Exit code:     7",
            "2026-12-07T09:00:00Z",
            "/run/tsforge/smsts.log",
            "/share/PC1",
            "| 09:00:00 Failed to run the last action",
            "Type R and Enter to restart; anything else, or no answer within 30 seconds: power off.",
        ] {
            assert!(t.contains(want), "{want:?} missing from:\n{t}");
        }
        assert!(
            !t.contains("shell"),
            "no shell offered when debug_shell is off:\n{t}"
        );
        assert!(text(&sample(), true, 30).contains("S and Enter for a shell"));
        assert!(!t.contains("Error:"), "{t}");
        let with_error = Failure {
            error: Some("state.json is corrupt".into()),
            ..sample()
        };
        assert!(text(&with_error, false, 30).contains("  Error:         state.json is corrupt\n"));
    }

    /// SMSTSErrorDialogTimeout: "If a value isn't specified, the default is 900 seconds."
    /// https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/task-sequence-variables#SMSTSErrorDialogTimeout
    /// https://learn.microsoft.com/en-us/mem/configmgr/develop/reference/core/clients/client-classes/iprogressui--showerrordialog-method
    #[test]
    fn the_timeout_is_smsts_error_dialog_timeout_or_900_seconds() {
        assert_eq!(timeout_of(None), 900);
        assert_eq!(timeout_of(Some("")), 900);
        assert_eq!(timeout_of(Some("abc")), 900);
        assert_eq!(timeout_of(Some(" 30 ")), 30);
    }

    #[test]
    fn r_restarts_and_other_keys_power_off() {
        assert_eq!(run(b"r\n", false, 5000, true).0, Choice::Restart);
        assert_eq!(run(b"R\r\n", false, 5000, true).0, Choice::Restart);
        assert_eq!(run(b"x\n", false, 5000, true).0, Choice::PowerAction);
        assert_eq!(run(b"\n", false, 5000, true).0, Choice::PowerAction);
    }

    #[test]
    fn a_shell_is_refused_without_debug_shell_and_asks_the_password_with_it() {
        let (c, t) = run(b"s\nr\n", false, 5000, true);
        assert_eq!(c, Choice::Restart, "refused, then still waiting: {t}");
        assert!(t.contains("A shell is not allowed on this medium"), "{t}");
        assert!(t.contains("[asked 0]"), "{t}");
        let (c, t) = run(b"s\n", true, 5000, true);
        assert_eq!(c, Choice::Shell);
        assert!(t.contains("[asked 1]"), "{t}");
        let (c, t) = run(b"s\nr\n", true, 5000, false);
        assert_eq!(
            c,
            Choice::Restart,
            "a wrong password goes back to waiting: {t}"
        );
        assert!(t.contains("Wrong media password: no shell."), "{t}");
    }

    #[cfg(unix)]
    #[test]
    fn no_answer_waits_for_the_timeout_with_a_countdown() {
        // A console that stays open and silent: a socket whose other end is kept.
        let (r, w) = std::os::unix::net::UnixStream::pair().unwrap();
        let rx = console_lines(r);
        let mut out = Vec::new();
        let started = Instant::now();
        let c = wait(
            &rx,
            Duration::from_millis(300),
            Duration::from_millis(100),
            false,
            &mut out,
            &mut |_: &Receiver<Option<String>>, _: &mut dyn Write| true,
        );
        drop(w);
        assert_eq!(c, Choice::PowerAction);
        assert!(started.elapsed() >= Duration::from_millis(300));
        let t = String::from_utf8(out).unwrap();
        assert!(t.matches("Power off in").count() >= 3, "{t}");
        assert!(t.contains("No answer: powering off."), "{t}");
    }

    #[test]
    fn the_end_of_input_powers_off_at_once() {
        let (c, t) = run(b"", false, 60_000, true);
        assert_eq!(c, Choice::PowerAction);
        assert!(t.contains("No console input"), "{t}");
    }

    #[test]
    fn the_log_tail_shows_the_last_messages() {
        let mut log = String::new();
        for i in 0..20 {
            log.push_str(&crate::log::cmtrace::format_entry(
                &crate::log::Utc::now(),
                crate::log::Level::Info,
                "TSManager",
                &format!("message {i}"),
                1,
            ));
        }
        let tail = log_tail(&log, 3);
        assert_eq!(tail.len(), 3);
        assert!(tail[0].ends_with("message 17"), "{tail:?}");
        assert!(tail[2].ends_with("message 19"), "{tail:?}");
        assert_eq!(log_tail("plain\ntext", 1), vec!["text".to_string()]);
    }
}
