//! Custom actions: a manifest maps a step type to an executable, the way ConfigMgr's custom
//! actions map a MOF class to a program.
//!
//! Manifest (TOML), e.g. `custom-actions.toml`:
//! ```toml
//! [[action]]
//! type = "Contoso_SetBiosSettingsAction"   # the step's type= (case-insensitive)
//! program = "bin/setbios.sh"               # relative to the manifest, absolute, or on PATH
//! args = ["--apply", "%OSDComputerName%"]  # optional; each %NAME%-expanded
//! success_codes = [0, 3010]                # optional; else the step's own (default 0 3010)
//! description = "Applies BIOS settings"    # optional
//! ```
//! The step's properties reach the program as environment variables named like the properties
//! (values expanded), next to every task sequence variable; the program sets variables back
//! through `TSFORGE_ENV_FILE` like any step. A `custom-actions.toml` next to a sequence file is
//! read automatically; more manifests come from `--actions FILE`.

use super::command::{run_process, ProcessRun};
use super::process::Launch;
use super::{ActionResult, Ctx};
use crate::sequence::model::Step;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file name read automatically next to a sequence.
pub const MANIFEST_NAME: &str = "custom-actions.toml";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomAction {
    #[serde(rename = "type")]
    pub kind: String,
    pub program: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub success_codes: Option<Vec<i64>>,
    #[serde(default)]
    pub description: Option<String>,
    /// Folder of the manifest (filled when loading), for relative programs.
    #[serde(skip)]
    pub base: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(default)]
    action: Vec<CustomAction>,
}

#[derive(Debug, Clone, Default)]
pub struct CustomActions {
    actions: Vec<CustomAction>,
}

impl CustomActions {
    /// Load a manifest; errors name the file and the line/column TOML reports.
    pub fn load(&mut self, path: &Path) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("reading custom action manifest {}: {e}", path.display())
        })?;
        let manifest: Manifest = toml::from_str(&text).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(&text, s.start)).unwrap_or((1, 1));
            anyhow::anyhow!("{}:{line}:{col}: {}", path.display(), e.message())
        })?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        for mut a in manifest.action {
            a.base = base.clone();
            self.actions
                .retain(|x| !x.kind.eq_ignore_ascii_case(&a.kind));
            self.actions.push(a);
        }
        Ok(())
    }

    pub fn get(&self, kind: &str) -> Option<&CustomAction> {
        self.actions
            .iter()
            .find(|a| a.kind.eq_ignore_ascii_case(kind))
    }

    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.actions.iter().map(|a| a.kind.as_str())
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

impl CustomAction {
    /// The program to start: relative to the manifest when such a file exists, else as given
    /// (absolute, or looked up on PATH by the OS).
    pub fn program_path(&self) -> PathBuf {
        let p = Path::new(&self.program);
        if p.is_absolute() {
            return p.to_path_buf();
        }
        let local = self.base.join(p);
        if local.is_file() {
            local
        } else {
            p.to_path_buf()
        }
    }
}

pub fn execute(action: &CustomAction, step: &Step, ctx: &mut Ctx) -> ActionResult {
    let args = action.args.iter().map(|a| ctx.vars.expand(a)).collect();
    let extra_env = step
        .vars
        .iter()
        .map(|v| (v.name.clone(), ctx.vars.expand(&v.value)))
        .collect();
    let run = ProcessRun {
        component: "CustomAction",
        launch: Launch::Exec(action.program_path(), args),
        cwd: step.start_in().map(|s| ctx.vars.expand(s)),
        timeout: step.timeout_secs().map(Duration::from_secs),
        success_codes: action
            .success_codes
            .clone()
            .unwrap_or_else(|| step.success_codes()),
        extra_env,
        output_variable: None,
    };
    run_process(run, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_errors_are_positioned() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("custom-actions.toml");
        std::fs::write(&p, "[[action]]\ntype = \"X\"\nprogramm = \"y\"\n").unwrap();
        let e = CustomActions::default().load(&p).unwrap_err().to_string();
        assert!(e.contains("custom-actions.toml:3:1"), "{e}");
        assert!(e.contains("programm"), "{e}");
    }

    #[test]
    fn later_manifest_overrides_and_lookup_ignores_case() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(
            &p,
            "[[action]]\ntype = \"Contoso_X\"\nprogram = \"/bin/true\"\n",
        )
        .unwrap();
        let mut c = CustomActions::default();
        c.load(&p).unwrap();
        std::fs::write(
            &p,
            "[[action]]\ntype = \"contoso_x\"\nprogram = \"/bin/false\"\n",
        )
        .unwrap();
        c.load(&p).unwrap();
        assert_eq!(c.get("CONTOSO_X").unwrap().program, "/bin/false");
        assert_eq!(c.kinds().count(), 1);
    }
}
