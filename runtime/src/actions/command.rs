//! A process on behalf of a step, as every step type that starts a program runs it (Run
//! Command Line, Run PowerShell Script, Install Package, custom actions): the step's
//! variables as environment variables, every output line in smsts.log, variables set back
//! through `TSFORGE_ENV_FILE` (see `envfile`), the `timeout` killing the process tree, success
//! codes from `successCodeList`/`successCodes` (default `0 3010`), and the output variable
//! (like ConfigMgr, the last 1,000 characters of stdout).
//!
//! Also the `<action>` command line of steps whose type is not built in, which runs as the
//! ConfigMgr engine runs it (its `smsswd.exe /run:` wrapper removed).

use super::process::{self, Launch, Spec, Stream};
use super::{ActionResult, Ctx};
use crate::envfile;
use crate::log::Level;
use crate::sequence::model::Step;
use std::path::PathBuf;
use std::time::Duration;

/// Characters of output kept in the output variable (ConfigMgr keeps the last 1,000).
pub const OUTPUT_VARIABLE_CHARS: usize = 1000;

/// Options for one process run on behalf of a step.
pub struct ProcessRun<'s> {
    pub component: &'s str,
    pub launch: Launch,
    pub cwd: Option<String>,
    pub timeout: Option<Duration>,
    pub success_codes: Vec<i64>,
    pub extra_env: Vec<(String, String)>,
    pub output_variable: Option<String>,
}

/// Run a process for a step: environment, logging, env-file variables, success codes.
pub fn run_process(run: ProcessRun, ctx: &mut Ctx) -> ActionResult {
    let component = run.component;
    let cwd = match run.cwd.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(dir) => {
            let p = PathBuf::from(dir);
            if !p.is_dir() {
                return ActionResult::failed(format!(
                    "working directory {dir:?} does not exist or is not a folder"
                ));
            }
            Some(p)
        }
        None => None,
    };
    let env_file = ctx.state_dir.join(format!("step-{}.env", ctx.number));
    if let Err(e) = std::fs::write(&env_file, b"") {
        return ActionResult::failed(format!("cannot create {}: {e}", env_file.display()));
    }
    let mut env: Vec<(String, String)> = Vec::new();
    let mut names = Vec::new();
    for v in ctx.vars.iter() {
        if !v.name.is_empty()
            && !v.name.contains('=')
            && !v.name.contains('\0')
            && !v.value.contains('\0')
        {
            env.push((v.name.clone(), v.value.clone()));
            names.push(v.name.clone());
        }
    }
    env.extend(run.extra_env.iter().cloned());
    env.push((envfile::ENV_FILE.into(), env_file.display().to_string()));
    env.push((envfile::VAR_NAMES.into(), names.join("\n")));
    if let Some(dir) = super::exe_dir() {
        let mut paths = vec![dir];
        if let Some(p) = std::env::var_os("PATH") {
            paths.extend(std::env::split_paths(&p));
        }
        if let Ok(joined) = std::env::join_paths(paths) {
            env.push(("PATH".into(), joined.to_string_lossy().into_owned()));
        }
    }
    let what = match &run.launch {
        Launch::CommandLine(l) => l.clone(),
        Launch::Exec(p, a) => format!("{} {}", p.display(), a.join(" ")),
    };
    ctx.log.log(
        Level::Info,
        component,
        &format!(
            "Command line: {what}{}{}",
            cwd.as_ref()
                .map(|d| format!(" (in {})", d.display()))
                .unwrap_or_default(),
            run.timeout
                .map(|t| format!(" (timeout {} s)", t.as_secs()))
                .unwrap_or_default()
        ),
    );
    let spec = Spec {
        launch: run.launch,
        cwd,
        env,
        timeout: run.timeout,
    };
    let log = &mut *ctx.log;
    let result = process::run(&spec, &mut |stream, line| {
        let level = match stream {
            Stream::Stdout => Level::Info,
            Stream::Stderr => Level::Warning,
        };
        let tag = match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        log.log(level, component, &format!("[{tag}] {line}"));
    });
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            let _ = std::fs::remove_file(&env_file);
            return ActionResult::failed(format!("cannot start {what:?}: {e}"));
        }
    };
    apply_env_file(ctx, &env_file, component);
    let _ = std::fs::remove_file(&env_file);
    if let Some(var) = run.output_variable.filter(|v| !v.trim().is_empty()) {
        let out = outcome.stdout.trim_end_matches(['\r', '\n']);
        let chars: Vec<char> = out.chars().collect();
        let start = chars.len().saturating_sub(OUTPUT_VARIABLE_CHARS);
        let value: String = chars[start..].iter().collect();
        if let Err(e) = super::set_variable(ctx, component, &var, value) {
            ctx.log.log(Level::Error, component, &e.to_string());
        }
    }
    if outcome.timed_out {
        return ActionResult::Exit {
            code: outcome.code,
            succeeded: false,
            message: Some(format!(
                "timed out after {} s; the process tree was killed",
                spec.timeout.map(|t| t.as_secs()).unwrap_or(0)
            )),
        };
    }
    let succeeded = run.success_codes.contains(&outcome.code);
    ActionResult::Exit {
        code: outcome.code,
        succeeded,
        message: (!succeeded).then(|| {
            format!(
                "exit code {} is not a success code ({})",
                outcome.code,
                run.success_codes
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }),
    }
}

/// Apply `NAME=VALUE` lines the process wrote to its env file.
fn apply_env_file(ctx: &mut Ctx, path: &std::path::Path, component: &str) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let (assignments, errors) = envfile::parse(&text);
    for (line, msg) in errors {
        ctx.log.log(
            Level::Warning,
            component,
            &format!("{}:{line}: {msg}", path.display()),
        );
    }
    for (name, value) in assignments {
        if let Err(e) = super::set_variable(ctx, component, &name, value) {
            ctx.log.log(Level::Error, component, &e.to_string());
        }
    }
}

/// `smsswd.exe /run: X` and `smsswd.exe /run:X` → `X` (ConfigMgr wraps command lines this way
/// in `<action>`; the wrapper does not exist outside ConfigMgr).
pub fn strip_smsswd(action: &str) -> &str {
    let t = action.trim_start();
    let lower = t.to_ascii_lowercase();
    for prefix in ["smsswd.exe /run:", "smsswd /run:"] {
        if lower.starts_with(prefix) {
            return t[prefix.len()..].trim_start();
        }
    }
    t
}

/// A step that is not built in: run its `<action>` command line, as ConfigMgr does.
pub fn run_action_text(step: &Step, ctx: &mut Ctx) -> ActionResult {
    let Some(action) = step.action.as_deref().filter(|a| !a.trim().is_empty()) else {
        return ActionResult::failed(format!(
            "step type {} is not built into tsforge and the step has no <action> command line to run",
            step.kind().unwrap_or("(none)")
        ));
    };
    let line = ctx.vars.expand(strip_smsswd(action));
    let run = ProcessRun {
        component: "RunAction",
        launch: Launch::CommandLine(line),
        cwd: step.start_in().map(|s| ctx.vars.expand(s)),
        timeout: step.timeout_secs().map(Duration::from_secs),
        success_codes: step.success_codes(),
        extra_env: step
            .vars
            .iter()
            .map(|v| (v.name.clone(), ctx.vars.expand(&v.value)))
            .collect(),
        output_variable: None,
    };
    run_process(run, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smsswd_wrapper_is_removed() {
        assert_eq!(strip_smsswd("smsswd.exe /run: cmd /c dir"), "cmd /c dir");
        assert_eq!(strip_smsswd("SMSSWD.EXE /run:cmd"), "cmd");
        assert_eq!(strip_smsswd("cscript x.wsf"), "cscript x.wsf");
    }
}
