//! What the Wine tests (`tests/wine.rs`, `tests/hooks.rs`) need before they start: wine,
//! wineserver, mingw's gcc and the Windows build of tsforge (`TSFORGE_WINDOWS_EXE`, set by
//! `scripts/test.sh`), and a folder holding that exe with the ProcessPrng shim beside it.
//!
//! Wine 8 (Debian 12) has no `bcryptprimitives.dll`, whose `ProcessPrng` Rust's standard library
//! imports, so [`WineTools::install_app`] builds a small stand-in from
//! `tests/wine/processprng.c` with mingw (never shipped).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const MINGW_GCC: &str = "x86_64-w64-mingw32-gcc";

pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `env` if set, else the first of `candidates` found: a name is looked up on PATH, an
/// absolute path taken as is.
pub fn find_tool(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    candidates.iter().find_map(|c| {
        let p = Path::new(c);
        if p.is_absolute() {
            p.is_file().then(|| p.to_path_buf())
        } else {
            which(c)
        }
    })
}

/// `/tmp/x/y` → `Z:\tmp\x\y` (a fresh Wine prefix maps `Z:` to `/`).
pub fn wine_path(p: &Path) -> String {
    assert!(p.is_absolute(), "{} is not absolute", p.display());
    format!("Z:{}", p.display().to_string().replace('/', "\\"))
}

pub struct WineTools {
    pub exe: PathBuf,
    pub wine: PathBuf,
    pub wineserver: PathBuf,
    pub gcc: PathBuf,
}

impl WineTools {
    /// The tools, or what is missing (one message, `; `-separated).
    pub fn find() -> Result<WineTools, String> {
        let mut missing = Vec::new();
        let exe = match std::env::var_os("TSFORGE_WINDOWS_EXE").filter(|p| !p.is_empty()) {
            None => {
                missing.push(
                    "TSFORGE_WINDOWS_EXE is not set (scripts/test.sh builds tsforge.exe and sets it)"
                        .to_string(),
                );
                None
            }
            Some(p) if !Path::new(&p).is_file() => {
                missing.push(format!(
                    "TSFORGE_WINDOWS_EXE={} is not a file",
                    Path::new(&p).display()
                ));
                None
            }
            Some(p) => Some(PathBuf::from(p)),
        };
        let wine = find_tool("TSFORGE_WINE", &["wine", "/usr/lib/wine/wine64"]);
        if wine.is_none() {
            missing.push("wine not found (apt-get install wine wine64)".into());
        }
        let wineserver = find_tool(
            "TSFORGE_WINESERVER",
            &[
                "wineserver",
                "/usr/lib/wine/wineserver64",
                "/usr/lib/wine/wineserver",
            ],
        );
        if wineserver.is_none() {
            missing.push("wineserver not found (apt-get install wine wine64)".into());
        }
        let gcc = which(MINGW_GCC);
        if gcc.is_none() {
            missing.push(format!("{MINGW_GCC} not found (apt-get install mingw-w64)"));
        }
        match (exe, wine, wineserver, gcc) {
            (Some(exe), Some(wine), Some(wineserver), Some(gcc)) if missing.is_empty() => {
                Ok(WineTools {
                    exe,
                    wine,
                    wineserver,
                    gcc,
                })
            }
            _ => Err(missing.join("; ")),
        }
    }

    /// Puts `tsforge.exe` and the ProcessPrng shim (`bcryptprimitives.dll`) into `app`.
    pub fn install_app(&self, app: &Path) {
        let shim_src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wine");
        let built = Command::new(&self.gcc)
            .args(["-shared", "-O2", "-s", "-o"])
            .arg(app.join("bcryptprimitives.dll"))
            .arg(shim_src.join("processprng.c"))
            .arg(shim_src.join("processprng.def"))
            .arg("-ladvapi32")
            .stdin(Stdio::null())
            .output()
            .expect("running mingw gcc");
        assert!(
            built.status.success(),
            "building the ProcessPrng shim failed:\n{}",
            String::from_utf8_lossy(&built.stderr)
        );
        std::fs::copy(&self.exe, app.join("tsforge.exe")).unwrap();
    }
}
