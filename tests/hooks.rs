//! The sample pre-execution hooks do what their README says.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn run_hook(input: &str, env_file: &Path) -> (i32, String) {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_tsforge")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/hooks/ask-computer-name.sh"
    ))
    .env("PATH", path)
    .env("TSFORGE_ENV_FILE", env_file)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ask_computer_name_checks_and_sets_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("vars.env");
    std::fs::write(&env_file, "").unwrap();
    let (code, err) = run_hook(
        "bad name!\n12345\nTHIS-NAME-IS-TOO-LONG\nLAB-PC01\n",
        &env_file,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        err.matches("is not a valid computer name").count(),
        3,
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&env_file).unwrap(),
        "OSDComputerName=LAB-PC01\n"
    );
    let (code, err) = run_hook("", &env_file);
    assert_eq!(code, 1);
    assert!(err.contains("no input"), "{err}");
}
