//! Starting a step's process: command line, working directory, environment, timeout that kills
//! the whole process tree, stdout/stderr captured line by line.
//!
//! On Unix a command line runs through `/bin/sh -c` in a new process group, so a timeout can
//! kill the group (the shell and everything it started). On Windows it runs as written
//! (`cmd /c …` is the author's choice, as in ConfigMgr): the first token is the program, the
//! rest is passed raw; a timeout kills the tree with `taskkill /T /F`, which ships with Windows
//! and Windows PE and keeps `unsafe` job-object calls out of the runner.
//! Standard input is closed, so a step never waits for a keyboard that nobody watches.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What to start.
#[derive(Debug, Clone)]
pub enum Launch {
    /// A command line: `/bin/sh -c` on Unix, as written on Windows.
    CommandLine(String),
    /// A program and its arguments, no shell.
    Exec(PathBuf, Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub launch: Launch,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    /// The exit code; on Unix a process killed by a signal reports 128 + the signal number.
    pub code: i64,
    pub timed_out: bool,
    /// Standard output (last [`KEEP_STDOUT`] bytes), for output variables.
    pub stdout: String,
}

/// Bytes of stdout kept for `SMSTSRunCommandLineOutputVariableName`.
pub const KEEP_STDOUT: usize = 64 * 1024;

enum Msg {
    Line(Stream, String),
    Eof,
}

fn spawn_reader<R: Read + Send + 'static>(r: R, stream: Stream, tx: mpsc::Sender<Msg>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(r);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\r', '\n'])
                        .to_string();
                    if tx.send(Msg::Line(stream, line)).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = tx.send(Msg::Eof);
    });
}

/// Run a process to the end (or its timeout), passing each output line to `on_line`.
pub fn run(spec: &Spec, on_line: &mut dyn FnMut(Stream, &str)) -> std::io::Result<Outcome> {
    let mut cmd = platform::command(&spec.launch);
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        spawn_reader(out, Stream::Stdout, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        spawn_reader(err, Stream::Stderr, tx.clone());
    }
    drop(tx);

    // A time-out too far away to be an Instant is no time-out (checked, never a panic).
    let deadline = spec.timeout.and_then(|t| Instant::now().checked_add(t));
    let mut stdout = String::new();
    let mut open_streams = 2;
    let mut status: Option<ExitStatus> = None;
    let mut exited_at: Option<Instant> = None;
    let mut timed_out = false;
    let mut record = |stream: Stream, line: String, stdout: &mut String| {
        if stream == Stream::Stdout {
            stdout.push_str(&line);
            stdout.push('\n');
            if stdout.len() > 2 * KEEP_STDOUT {
                let mut cut = stdout.len() - KEEP_STDOUT;
                while !stdout.is_char_boundary(cut) {
                    cut += 1;
                }
                stdout.drain(..cut);
            }
        }
        on_line(stream, &line);
    };
    loop {
        if open_streams == 0 && status.is_some() {
            break;
        }
        // After the process exits, give grandchildren that inherited the pipes a moment, then
        // stop reading: a background process must not hold the step open forever.
        if let Some(t) = exited_at {
            if t.elapsed() > Duration::from_millis(500) {
                break;
            }
        }
        let wait = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => Duration::from_millis(200),
        }
        .min(Duration::from_millis(200));
        match rx.recv_timeout(if open_streams == 0 {
            Duration::from_millis(5)
        } else {
            wait
        }) {
            Ok(Msg::Line(s, l)) => record(s, l, &mut stdout),
            Ok(Msg::Eof) => open_streams -= 1,
            Err(mpsc::RecvTimeoutError::Disconnected) => open_streams = 0,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if status.is_none() {
            if let Some(s) = child.try_wait()? {
                status = Some(s);
                exited_at = Some(Instant::now());
            }
        }
        if status.is_none() && deadline.is_some_and(|d| Instant::now() >= d) {
            timed_out = true;
            platform::kill_tree(&mut child);
            status = Some(child.wait()?);
            // Drain what is already buffered, without waiting for held pipes.
            while let Ok(m) = rx.recv_timeout(Duration::from_millis(50)) {
                if let Msg::Line(s, l) = m {
                    record(s, l, &mut stdout);
                }
            }
            break;
        }
    }
    let status = match status {
        Some(s) => s,
        None => child.wait()?,
    };
    Ok(Outcome {
        code: platform::exit_code(status),
        timed_out,
        stdout,
    })
}

/// Find a program on `PATH`; lives in [`crate::tools`], the one place that looks up programs.
pub use crate::tools::which;

#[cfg(unix)]
mod platform {
    use super::Launch;
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::{Child, Command, ExitStatus};

    pub fn command(launch: &Launch) -> Command {
        let mut cmd = match launch {
            Launch::CommandLine(line) => {
                let mut c = Command::new("/bin/sh");
                c.arg("-c").arg(line);
                c
            }
            Launch::Exec(prog, args) => {
                let mut c = Command::new(prog);
                c.args(args);
                c
            }
        };
        // Own process group: the timeout kills the shell and everything it started.
        cmd.process_group(0);
        cmd
    }

    pub fn kill_tree(child: &mut Child) {
        use nix::sys::signal::{killpg, Signal};
        use nix::unistd::Pid;
        let pgid = Pid::from_raw(child.id() as i32);
        if killpg(pgid, Signal::SIGKILL).is_err() {
            let _ = child.kill();
        }
    }

    pub fn exit_code(status: ExitStatus) -> i64 {
        match (status.code(), status.signal()) {
            (Some(c), _) => c as i64,
            (None, Some(sig)) => 128 + sig as i64,
            (None, None) => -1,
        }
    }
}

#[cfg(windows)]
mod platform {
    use super::Launch;
    use std::os::windows::process::CommandExt;
    use std::process::{Child, Command, ExitStatus, Stdio};

    /// Split a Windows command line into the program and the raw rest.
    pub fn split_program(line: &str) -> (String, &str) {
        let line = line.trim_start();
        if let Some(rest) = line.strip_prefix('"') {
            match rest.find('"') {
                Some(end) => (rest[..end].to_string(), &rest[end + 1..]),
                None => (rest.to_string(), ""),
            }
        } else {
            match line.find(char::is_whitespace) {
                Some(end) => (line[..end].to_string(), &line[end..]),
                None => (line.to_string(), ""),
            }
        }
    }

    pub fn command(launch: &Launch) -> Command {
        match launch {
            Launch::CommandLine(line) => {
                let (prog, rest) = split_program(line);
                let mut c = Command::new(prog);
                let rest = rest.trim_start();
                if !rest.is_empty() {
                    c.raw_arg(rest);
                }
                c
            }
            Launch::Exec(prog, args) => {
                let mut c = Command::new(prog);
                c.args(args);
                c
            }
        }
    }

    pub fn kill_tree(child: &mut Child) {
        // taskkill ends the whole tree; without it, only the process itself.
        let Ok(taskkill) = crate::tools::find(crate::tools::Tool::Taskkill) else {
            let _ = child.kill();
            return;
        };
        let ok = Command::new(taskkill)
            .args(["/T", "/F", "/PID", &child.id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            let _ = child.kill();
        }
    }

    pub fn exit_code(status: ExitStatus) -> i64 {
        // Windows exit codes are u32 (e.g. 0xC0000005); report them unsigned like ConfigMgr.
        status.code().map(|c| c as u32 as i64).unwrap_or(-1)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn sh(line: &str, timeout: Option<u64>) -> (Outcome, Vec<(Stream, String)>) {
        let mut lines = Vec::new();
        let spec = Spec {
            launch: Launch::CommandLine(line.into()),
            cwd: None,
            env: vec![("TSF_TEST".into(), "val".into())],
            timeout: timeout.map(Duration::from_millis),
        };
        let out = run(&spec, &mut |s, l| lines.push((s, l.to_string()))).unwrap();
        (out, lines)
    }

    #[test]
    fn captures_both_streams_and_exit_code() {
        let (out, lines) = sh("echo out $TSF_TEST; echo err >&2; exit 7", None);
        assert_eq!(out.code, 7);
        assert!(!out.timed_out);
        assert_eq!(out.stdout, "out val\n");
        assert!(lines.contains(&(Stream::Stderr, "err".into())));
    }

    #[test]
    fn timeout_kills_the_process_tree() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("late");
        let start = Instant::now();
        let (out, _) = sh(
            &format!("(sleep 2; touch {}) & sleep 30", marker.display()),
            Some(300),
        );
        assert!(out.timed_out);
        assert!(start.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(2500));
        assert!(!marker.exists(), "the grandchild survived the timeout");
    }

    #[test]
    fn background_child_holding_pipes_does_not_hang() {
        let start = Instant::now();
        let (out, _) = sh("sleep 5 & echo done", None);
        assert_eq!(out.code, 0);
        assert!(start.elapsed() < Duration::from_secs(3));
    }
}
