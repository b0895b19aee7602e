//! The tree of groups and steps, flattened into a program the engine can resume anywhere.
//!
//! A group becomes `Enter … Exit`; each `Enter` knows the index of its `Exit`, so skipping a
//! group or leaving it after a failure is one jump. A *Run Task Sequence* step
//! (`SMS_TaskSequence_SubTasksequence`) is expanded here, at compile time, into a group holding
//! the child sequence's items: the journal then records one flat instruction pointer for parent
//! and child alike, and a child that includes itself (directly or not) is reported as a cycle.
//! Child sequences, nesting and the expanded size are limited (`sequence::model::limits`), and
//! every step's numbers are checked, so a run never starts on a program it would misread.
//! The compiled program is saved in the state directory when a run starts, so a resumed run
//! executes exactly what the interrupted one was executing.

use crate::sequence::model::{
    attr, check_condition_depth, limits, step_type, Condition, Node, Pos, Sequence, Step, Variable,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Instr {
    Enter {
        name: String,
        disabled: bool,
        continue_on_error: bool,
        condition: Vec<Condition>,
        /// Variables set (when not yet defined) on entering: a child sequence's globals.
        defaults: Vec<Variable>,
        /// Index of the matching `Exit`.
        exit: usize,
        /// The file this group came from, for messages.
        file: String,
        pos: Pos,
    },
    Step {
        step: Step,
        /// 1-based number of this step among all steps, for progress.
        number: usize,
        file: String,
    },
    Exit {
        enter: usize,
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    /// The sequence's name (`_SMSTSPackageName`).
    pub name: String,
    pub global_vars: Vec<Variable>,
    pub instrs: Vec<Instr>,
    pub step_total: usize,
}

/// Errors while flattening: a child sequence that cannot be found, read, or that loops.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("{file}:{line}:{column}: Run Task Sequence step {step:?}: {message}")]
    Child {
        file: String,
        line: u32,
        column: u32,
        step: String,
        message: String,
    },
    /// A value out of range, or a limit of `sequence::model::limits` reached, at a node.
    #[error("{file}:{line}:{column}: {message}")]
    At {
        file: String,
        line: u32,
        column: u32,
        message: String,
    },
    #[error(transparent)]
    Parse(#[from] crate::error::ParseError),
}

impl CompileError {
    /// The error as a positioned finding (for `validate`).
    pub fn into_parse_error(self) -> crate::error::ParseError {
        use crate::error::ParseError;
        match self {
            CompileError::Child {
                file,
                line,
                column,
                ref step,
                ref message,
            } => ParseError::new(
                file.clone(),
                line,
                column,
                format!("Run Task Sequence step {step:?}: {message}"),
            ),
            CompileError::At {
                file,
                line,
                column,
                message,
            } => ParseError::new(file, line, column, message),
            CompileError::Parse(e) => e,
        }
    }
}

/// Where child sequences are looked up: next to the parent file, then in each directory given
/// (`--sequence-dir`, and for `tsforge boot` the medium's sequence folders).
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    pub search_dirs: Vec<PathBuf>,
    /// Distribution points to look in when no file holds the child (a run's `--content`
    /// locations, `SMSTSContentLocations`, a medium's packages); `validate` has none.
    pub packages: Option<PackageSource>,
}

/// Where a *Run Task Sequence* child may come from besides files: a content package with the
/// child's package ID (as ConfigMgr stores a task sequence in a package of its own) whose files
/// hold the child's sequence file.
#[derive(Debug, Clone, Default)]
pub struct PackageSource {
    /// Distribution points: folders or http(s):// URLs.
    pub locations: Vec<String>,
    /// The run's package cache (packages are fetched there, verified).
    pub cache: PathBuf,
    /// The ed25519 key packages must be signed with, as for every other package of the run.
    pub public_key: Option<String>,
    /// Variables the run starts with (`SMSTSContentLocations…` add distribution points).
    pub vars: Vec<(String, String)>,
}

impl PackageSource {
    fn variables(&self) -> crate::vars::Vars {
        let mut vars = crate::vars::Vars::new();
        for (k, v) in &self.vars {
            vars.set(k, v.as_str());
        }
        vars
    }

    /// The distribution points, in the order a step's packages are looked up.
    fn origins(&self) -> Vec<crate::content::Origin> {
        crate::content::origins(&self.locations, &self.variables())
    }
    /// The sequence file of package `id`: fetched into the cache (verified), then the file in
    /// it whose wrapper carries `id`, else its only sequence file.
    fn fetch_sequence(&self, id: &str) -> Result<PathBuf, String> {
        use crate::content::{HttpOptions, PackageKind, Store};
        let vars = self.variables();
        let store = Store::new(
            self.origins(),
            self.cache.clone(),
            HttpOptions::from_vars(&vars),
        )
        .map_err(|e| format!("{e:#}"))?
        .with_public_key(self.public_key.clone());
        let found = store.find(id).map_err(|e| format!("{e:#}"))?;
        if found.manifest.kind != PackageKind::Files {
            return Err(format!(
                "package {id} on {} is an {} package, not a package holding a task sequence",
                found.origin, found.manifest.kind
            ));
        }
        let local = store
            .ensure_local(&found, &mut |_| {})
            .map_err(|e| format!("package {id}: {e:#}"))?;
        let (by_id, _) = find_by_package_id(id, std::slice::from_ref(&local.dir));
        let files = sequence_files(&local.dir);
        match (by_id.as_slice(), files.as_slice()) {
            ([one], _) => Ok(one.clone()),
            ([], [one]) => Ok(one.clone()),
            _ => Err(format!(
                "package {id} from {} holds {} sequence files ({}) and not exactly one carries \
                 the package ID {id}: keep one sequence file in the package",
                found.origin,
                files.len(),
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

/// File names tried for a child sequence ID, in order.
const CHILD_NAMES: &[&str] = &["{}.yaml", "{}.yml", "{}.xml", "{}/object.xml"];

/// Files larger than this are not read while looking for a package ID (no sequence is near it).
const MAX_SCANNED_FILE: u64 = 64 << 20;

impl Resolver {
    /// Find the file for a *Run Task Sequence* reference: a path (relative to the parent's
    /// folder); a package ID looked up as `ID.yaml`, `ID.yml`, `ID.xml` or `ID/object.xml`;
    /// else the one sequence file (`*.xml`, `*.yaml`, `*.yml`, `*/object.xml`) in those
    /// folders whose wrapper carries that package ID ([`Sequence::package_id`]).
    pub fn resolve(&self, reference: &str, parent: &Path) -> Result<PathBuf, String> {
        let parent_dir = parent
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let direct = parent_dir.join(reference);
        if direct.is_file() {
            return Ok(direct);
        }
        let mut looked = Vec::new();
        let mut dirs = vec![parent_dir.to_path_buf()];
        for d in &self.search_dirs {
            if !dirs.contains(d) {
                dirs.push(d.clone());
            }
        }
        for dir in &dirs {
            for pattern in CHILD_NAMES {
                let candidate = dir.join(pattern.replace("{}", reference));
                if candidate.is_file() {
                    return Ok(candidate);
                }
                looked.push(candidate.display().to_string());
            }
        }
        let (found, unreadable) = find_by_package_id(reference, &dirs);
        match found.as_slice() {
            [one] => return Ok(one.clone()),
            [] => {}
            many => {
                return Err(format!(
                    "child sequence {reference:?}: several files carry the package ID \
                     {reference}: {}; keep one of them in the folders searched",
                    many.iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        }
        if let Some(src) = self.packages.as_ref().filter(|p| !p.origins().is_empty()) {
            // Not in a folder: the child's own package on a distribution point.
            return src.fetch_sequence(reference).map_err(|e| {
                format!(
                    "child sequence {reference:?} is not in {} and could not be taken from a \
                     distribution point: {e}",
                    dirs.iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
        }
        let mut msg = format!(
            "child sequence {reference:?} not found; looked for {}, and for a sequence file with \
             the package ID {reference} in {} (add a folder with --sequence-dir)",
            looked.join(", "),
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !unreadable.is_empty() {
            msg.push_str(&format!(
                "; these files mention {reference} but could not be read: {}",
                unreadable.join("; ")
            ));
        }
        Err(msg)
    }
}

/// The sequence files of `dirs` whose package ID is `id` (each file once), and the files that
/// mention `id` but could not be read as sequences (with why).
fn find_by_package_id(id: &str, dirs: &[PathBuf]) -> (Vec<PathBuf>, Vec<String>) {
    let mut found: Vec<PathBuf> = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut unreadable = Vec::new();
    let needle = id.to_ascii_lowercase();
    for dir in dirs {
        for file in sequence_files(dir) {
            let canonical = file.canonicalize().unwrap_or_else(|_| file.clone());
            if seen.contains(&canonical) {
                continue;
            }
            seen.push(canonical);
            let too_big = std::fs::metadata(&file).is_ok_and(|m| m.len() > MAX_SCANNED_FILE);
            let Ok(bytes) = (if too_big {
                Err(())
            } else {
                std::fs::read(&file).map_err(|_| ())
            }) else {
                continue;
            };
            // Only files that mention the ID are parsed.
            let Ok(text) = crate::sequence::decode_text(&bytes, &file) else {
                continue;
            };
            if !text.to_ascii_lowercase().contains(&needle) {
                continue;
            }
            let format = crate::sequence::detect(&text);
            match crate::sequence::parse_str(&text, &file, format) {
                Ok(seq) => {
                    if seq.package_id().is_some_and(|p| p.eq_ignore_ascii_case(id)) {
                        found.push(file);
                    }
                }
                Err(e) => unreadable.push(e.to_string()),
            }
        }
    }
    (found, unreadable)
}

/// The files of `dir` that may hold a sequence, sorted: `*.xml`, `*.yaml`, `*.yml`, and
/// `SUBFOLDER/object.xml`. A folder that cannot be read has none.
fn sequence_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            let object = path.join("object.xml");
            if object.is_file() {
                out.push(object);
            }
        } else if path.is_file() {
            let ext = path
                .extension()
                .map(|x| x.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            if matches!(ext.as_str(), "xml" | "yaml" | "yml") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn is_sub_sequence(step: &Step) -> bool {
    step.kind()
        .is_some_and(|k| k.eq_ignore_ascii_case(step_type::SUB_SEQUENCE))
}

/// The display name of a sequence: its `name` attribute, the package's `Name`, or the file stem.
pub fn sequence_name(seq: &Sequence, path: &Path) -> String {
    use crate::sequence::model::Shape;
    if let Some(n) = attr(&seq.attrs, "name").filter(|n| !n.is_empty()) {
        return n.to_string();
    }
    let from_shape = match &seq.shape {
        Shape::PackageWrapper { properties } => properties
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Name"))
            .map(|(_, v)| v.clone()),
        Shape::WmiInstance { properties, .. } => properties
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case("Name"))
            .and_then(|p| p.value.clone()),
        Shape::Sequence => None,
    };
    from_shape.filter(|n| !n.is_empty()).unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "sequence".into())
    })
}

/// Flatten `seq` (read from `path`) into a program.
///
/// Refused with an error positioned at the node: a number out of range
/// ([`Step::check_numbers`]), child sequences that include each other, and the limits of
/// [`limits`]: *Run Task Sequence* levels, nesting, and the size of the expanded program. The
/// limits are checked before going deeper, so neither a long chain of files nor files that
/// include the next one several times can exhaust the stack, the memory or the time.
pub fn compile(seq: &Sequence, path: &Path, resolver: &Resolver) -> Result<Program, CompileError> {
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mut c = Compiler {
        resolver,
        top: path,
        stack: vec![canonical],
        loaded: HashMap::new(),
        out: Vec::new(),
        number: 0,
        items: 0,
    };
    c.emit(&seq.items, path, 0)?;
    Ok(Program {
        name: sequence_name(seq, path),
        global_vars: seq.global_vars.clone(),
        instrs: c.out,
        step_total: c.number,
    })
}

struct Compiler<'a> {
    resolver: &'a Resolver,
    /// The sequence being compiled, for messages.
    top: &'a Path,
    /// The files being expanded, the top one first (canonical paths).
    stack: Vec<PathBuf>,
    /// Child sequences read so far: a file included many times is read once.
    loaded: HashMap<PathBuf, Rc<Sequence>>,
    out: Vec<Instr>,
    /// Steps emitted (for their numbers).
    number: usize,
    /// Steps and groups emitted (for [`limits::MAX_EXPANDED`]).
    items: usize,
}

impl Compiler<'_> {
    /// Count one more step or group at `pos`, refusing past [`limits::MAX_EXPANDED`].
    fn count(&mut self, file: &str, pos: Pos) -> Result<(), CompileError> {
        self.items += 1;
        if self.items > limits::MAX_EXPANDED {
            return Err(CompileError::At {
                file: file.to_string(),
                line: pos.line,
                column: pos.column,
                message: format!(
                    "with its child sequences expanded, {} has more than {} steps and groups, \
                     tsforge's limit (does a child sequence include the next one several times \
                     at each level?)",
                    self.top.display(),
                    limits::MAX_EXPANDED
                ),
            });
        }
        Ok(())
    }

    /// Refuse a group (or child sequence) at `pos` that would be nested `depth` levels deep.
    fn nest(file: &str, pos: Pos, depth: usize) -> Result<(), CompileError> {
        if depth > limits::MAX_NESTING {
            return Err(CompileError::At {
                file: file.to_string(),
                line: pos.line,
                column: pos.column,
                message: format!(
                    "groups and child sequences are nested more than {} levels deep, tsforge's \
                     limit",
                    limits::MAX_NESTING
                ),
            });
        }
        Ok(())
    }

    /// Refuse a condition of `what` nested deeper than [`limits::MAX_CONDITION_DEPTH`].
    fn conditions(
        file: &str,
        pos: Pos,
        what: &str,
        conds: &[Condition],
    ) -> Result<(), CompileError> {
        check_condition_depth(conds).map_err(|e| CompileError::At {
            file: file.to_string(),
            line: pos.line,
            column: pos.column,
            message: format!("{what}: {e}"),
        })
    }

    /// Refuse a step with a number out of range or a condition nested too deep.
    fn check_step(file: &str, s: &Step) -> Result<(), CompileError> {
        let what = format!("step {:?}", s.name());
        Self::conditions(file, s.pos, &what, &s.condition)?;
        match s.check_numbers().into_iter().next() {
            Some(message) => Err(CompileError::At {
                file: file.to_string(),
                line: s.pos.line,
                column: s.pos.column,
                message,
            }),
            None => Ok(()),
        }
    }

    /// Emit `nodes` of `file`, which sit inside `depth` groups. Recursive, so its frame is kept
    /// small: the work for each node is done by the helpers below.
    fn emit(&mut self, nodes: &[Node], file: &Path, depth: usize) -> Result<(), CompileError> {
        for node in nodes {
            match node {
                Node::Group(g) => {
                    let enter = self.enter_group(node, g, file, depth)?;
                    self.emit(&g.children, file, depth + 1)?;
                    close(&mut self.out, enter, g.name());
                }
                Node::Step(s) if is_sub_sequence(s) => {
                    let (enter, child, child_path) = self.enter_child(node, s, file, depth)?;
                    self.emit(&child.items, &child_path, depth + 1)?;
                    self.stack.pop();
                    close(&mut self.out, enter, s.name());
                }
                Node::Step(s) => self.step(s, file)?,
            }
        }
        Ok(())
    }

    /// Check group `g` and emit its `Enter`; returns the `Enter`'s index.
    #[inline(never)]
    fn enter_group(
        &mut self,
        node: &Node,
        g: &crate::sequence::model::Group,
        file: &Path,
        depth: usize,
    ) -> Result<usize, CompileError> {
        let file_s = file.display().to_string();
        let what = format!("group {:?}", g.name());
        Self::conditions(&file_s, g.pos, &what, &g.condition)?;
        Self::nest(&file_s, g.pos, depth + 1)?;
        self.count(&file_s, g.pos)?;
        let enter = self.out.len();
        self.out.push(Instr::Enter {
            name: g.name().to_string(),
            disabled: node.disabled(),
            continue_on_error: node.continue_on_error(),
            condition: g.condition.clone(),
            defaults: Vec::new(),
            exit: 0,
            file: file_s,
            pos: g.pos,
        });
        Ok(enter)
    }

    /// Check *Run Task Sequence* step `s`, find and read its child, emit the `Enter` of the
    /// group it becomes and push the child on the stack. Returns the `Enter`'s index, the
    /// child and its path.
    #[inline(never)]
    fn enter_child(
        &mut self,
        node: &Node,
        s: &Step,
        file: &Path,
        depth: usize,
    ) -> Result<(usize, Rc<Sequence>, PathBuf), CompileError> {
        let file_s = file.display().to_string();
        let child_err = |message: String| CompileError::Child {
            file: file_s.clone(),
            line: s.pos.line,
            column: s.pos.column,
            step: s.name().to_string(),
            message,
        };
        Self::check_step(&file_s, s)?;
        let reference = crate::actions::run_task_sequence::child_reference(s).ok_or_else(|| {
            child_err(
                "has no TsPackageID property (OSDSubTasksequencePackageID, or SubTaskSequenceID \
                 in older files) naming the child sequence"
                    .into(),
            )
        })?;
        let child_path = self.resolver.resolve(reference, file).map_err(child_err)?;
        let canonical = child_path.canonicalize().unwrap_or(child_path.clone());
        if let Some(i) = self.stack.iter().position(|p| *p == canonical) {
            let chain: Vec<String> = self.stack[i..]
                .iter()
                .chain(std::iter::once(&canonical))
                .map(|p| p.display().to_string())
                .collect();
            return Err(child_err(format!(
                "sequences include each other in a cycle: {}",
                chain.join(" -> ")
            )));
        }
        // The child would be at level `stack.len()` of Run Task Sequence steps.
        if self.stack.len() > limits::MAX_CHILD_DEPTH {
            return Err(child_err(format!(
                "including {} would nest child sequences {} levels deep; tsforge's limit is {} \
                 levels",
                child_path.display(),
                self.stack.len(),
                limits::MAX_CHILD_DEPTH
            )));
        }
        Self::nest(&file_s, s.pos, depth + 1)?;
        self.count(&file_s, s.pos)?;
        let child = match self.loaded.get(&canonical) {
            Some(c) => c.clone(),
            None => {
                let (child, _) = crate::sequence::load(&child_path)?;
                let child = Rc::new(child);
                self.loaded.insert(canonical.clone(), child.clone());
                child
            }
        };
        let enter = self.out.len();
        self.out.push(Instr::Enter {
            name: s.name().to_string(),
            disabled: node.disabled(),
            continue_on_error: node.continue_on_error(),
            condition: s.condition.clone(),
            defaults: child.global_vars.clone(),
            exit: 0,
            file: file_s.clone(),
            pos: s.pos,
        });
        self.stack.push(canonical);
        Ok((enter, child, child_path))
    }

    /// Check step `s` and emit it.
    #[inline(never)]
    fn step(&mut self, s: &Step, file: &Path) -> Result<(), CompileError> {
        let file_s = file.display().to_string();
        Self::check_step(&file_s, s)?;
        self.count(&file_s, s.pos)?;
        self.number += 1;
        self.out.push(Instr::Step {
            step: s.clone(),
            number: self.number,
            file: file_s,
        });
        Ok(())
    }
}

fn close(out: &mut Vec<Instr>, enter: usize, name: &str) {
    let exit_index = out.len();
    out.push(Instr::Exit {
        enter,
        name: name.to_string(),
    });
    if let Instr::Enter { exit, .. } = &mut out[enter] {
        *exit = exit_index;
    }
}

impl Program {
    /// A stable fingerprint of the program (sha256 of its JSON), stored in the journal so a
    /// state directory is never resumed with a different sequence. The files steps came from
    /// are left out: a run resumes wherever its sequence now is (on the boot medium, then
    /// copied into the deployed OS), as long as the steps are the same.
    pub fn fingerprint(&self) -> String {
        let mut located = self.clone();
        for i in &mut located.instrs {
            match i {
                Instr::Enter { file, .. } | Instr::Step { file, .. } => file.clear(),
                Instr::Exit { .. } => {}
            }
        }
        located.digest()
    }

    /// The fingerprint journals written before [`Program::fingerprint`] left the files out
    /// (paths included), so a run started by an older runner still resumes.
    pub fn located_fingerprint(&self) -> String {
        self.digest()
    }

    /// Whether `fingerprint`, from a journal, is this program's.
    pub fn matches(&self, fingerprint: &str) -> bool {
        self.fingerprint() == fingerprint || self.located_fingerprint() == fingerprint
    }

    fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_vec(self).expect("a program always serializes to JSON");
        let digest = Sha256::digest(&json);
        crate::sys::hex(&digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::model::Group;

    fn step(name: &str) -> Node {
        Node::Step(Step {
            attrs: vec![("name".into(), name.into())],
            ..Default::default()
        })
    }

    #[test]
    fn fingerprint_ignores_where_the_sequence_is_but_not_what_it_holds() {
        let seq = Sequence {
            items: vec![step("a"), step("b")],
            ..Default::default()
        };
        let on_medium =
            compile(&seq, Path::new("/media/seq/x.yaml"), &Resolver::default()).unwrap();
        let in_os = compile(
            &seq,
            Path::new("/var/lib/tsforge/x.yaml"),
            &Resolver::default(),
        )
        .unwrap();
        assert_ne!(on_medium, in_os, "the files differ");
        assert_eq!(on_medium.fingerprint(), in_os.fingerprint());
        // A journal written by a runner that kept the paths in the fingerprint still matches.
        assert!(in_os.matches(&in_os.located_fingerprint()));
        assert!(!in_os.matches(&on_medium.located_fingerprint()));
        let other = Sequence {
            items: vec![step("a"), step("c")],
            ..Default::default()
        };
        let changed =
            compile(&other, Path::new("/media/seq/x.yaml"), &Resolver::default()).unwrap();
        assert!(!changed.matches(&on_medium.fingerprint()));
    }

    #[test]
    fn groups_become_enter_exit_with_jump_targets() {
        let seq = Sequence {
            items: vec![
                step("a"),
                Node::Group(Group {
                    attrs: vec![("name".into(), "g".into())],
                    children: vec![step("b"), step("c")],
                    ..Default::default()
                }),
                step("d"),
            ],
            ..Default::default()
        };
        let p = compile(&seq, Path::new("x.yaml"), &Resolver::default()).unwrap();
        assert_eq!(p.step_total, 4);
        assert_eq!(p.instrs.len(), 6);
        match &p.instrs[1] {
            Instr::Enter { exit, .. } => assert_eq!(*exit, 4),
            other => panic!("expected Enter, got {other:?}"),
        }
        assert!(matches!(p.instrs[4], Instr::Exit { enter: 1, .. }));
        assert_eq!(p.name, "x");
    }

    /// `depth` groups inside each other around one step.
    fn nested_groups(depth: usize) -> Sequence {
        let mut node = Node::Step(Step {
            attrs: vec![("name".into(), "inner".into())],
            action: Some("echo inner".into()),
            ..Default::default()
        });
        for _ in 0..depth {
            node = Node::Group(Group {
                attrs: vec![("name".into(), "g".into())],
                children: vec![node],
                ..Default::default()
            });
        }
        Sequence {
            items: vec![node],
            ..Default::default()
        }
    }

    /// Run `f` on a thread with a 1 MiB stack, the smallest main-thread stack tsforge meets
    /// (Windows), and return its result: a stack overflow would abort the test.
    fn small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .expect("no stack overflow")
    }

    #[test]
    fn nesting_is_limited_before_the_stack_is() {
        let ok = small_stack(|| {
            let seq = nested_groups(limits::MAX_NESTING);
            let p = compile(&seq, Path::new("x.yaml"), &Resolver::default()).map(|p| p.step_total);
            let d =
                crate::engine::validate::validate(&seq, Path::new("x.yaml"), &Default::default());
            (p.ok(), d.len())
        });
        assert_eq!(ok, (Some(1), 0), "the limit itself is allowed");
        let err = small_stack(|| {
            let seq = nested_groups(limits::MAX_NESTING + 1);
            let e = compile(&seq, Path::new("x.yaml"), &Resolver::default()).unwrap_err();
            let d =
                crate::engine::validate::validate(&seq, Path::new("x.yaml"), &Default::default());
            (
                e.to_string(),
                d.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            )
        });
        assert!(err.0.contains("nested more than 256 levels"), "{}", err.0);
        assert_eq!(err.1.len(), 1, "{:?}", err.1);
        assert!(
            err.1[0].contains("nested more than 256 levels"),
            "{:?}",
            err.1
        );
    }

    /// A condition `depth` operators deep on a step and on a group.
    fn deep_condition(depth: usize) -> Sequence {
        let mut cond = Condition::Expression(crate::sequence::model::Expression {
            kind: crate::sequence::model::expr_type::VARIABLE.into(),
            vars: vec![Variable::new("Variable", "X")],
            ..Default::default()
        });
        for _ in 0..depth {
            cond = Condition::Operator {
                kind: crate::sequence::model::OperatorKind::And,
                attrs: Vec::new(),
                children: vec![cond],
                pos: Pos::default(),
            };
        }
        let Node::Step(mut s) = step("s") else {
            unreachable!()
        };
        s.condition = vec![cond.clone()];
        Sequence {
            items: vec![Node::Group(Group {
                attrs: vec![("name".into(), "g".into())],
                condition: vec![cond],
                children: vec![Node::Step(s)],
                ..Default::default()
            })],
            ..Default::default()
        }
    }

    #[test]
    fn the_deepest_condition_allowed_reads_back_from_program_json() {
        let seq = deep_condition(limits::MAX_CONDITION_DEPTH);
        let p = compile(&seq, Path::new("x.yaml"), &Resolver::default()).unwrap();
        let json = serde_json::to_vec(&p).unwrap();
        let back: Program = serde_json::from_slice(&json).expect("program.json reads back");
        assert_eq!(back, p);
        let seq = deep_condition(limits::MAX_CONDITION_DEPTH + 1);
        let e = compile(&seq, Path::new("x.yaml"), &Resolver::default()).unwrap_err();
        assert!(
            e.to_string().contains(
                "group \"g\": the condition nests operators 33 deep; tsforge's limit is 32"
            ),
            "{e}"
        );
    }
}
