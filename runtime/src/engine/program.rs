//! The tree of groups and steps, flattened into a program the engine can resume anywhere.
//!
//! A group becomes `Enter … Exit`; each `Enter` knows the index of its `Exit`, so skipping a
//! group or leaving it after a failure is one jump. A *Run Task Sequence* step
//! (`SMS_TaskSequence_SubTasksequence`) is expanded here, at compile time, into a group holding
//! the child sequence's items: the journal then records one flat instruction pointer for parent
//! and child alike, and a child that includes itself (directly or not) is reported as a cycle.
//! The compiled program is saved in the state directory when a run starts, so a resumed run
//! executes exactly what the interrupted one was executing.

use crate::sequence::model::{attr, step_type, Condition, Node, Pos, Sequence, Step, Variable};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
    #[error(transparent)]
    Parse(#[from] crate::error::ParseError),
}

/// Where child sequences are looked up: next to the parent file, then in each directory given.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    pub search_dirs: Vec<PathBuf>,
}

/// File names tried for a child sequence ID, in order.
const CHILD_NAMES: &[&str] = &["{}.yaml", "{}.yml", "{}.xml", "{}/object.xml"];

impl Resolver {
    /// Find the file for a *Run Task Sequence* reference: a path (relative to the parent's
    /// folder) or a package ID looked up as `ID.yaml`, `ID.yml`, `ID.xml` or `ID/object.xml`.
    pub fn resolve(&self, reference: &str, parent: &Path) -> Result<PathBuf, String> {
        let parent_dir = parent.parent().unwrap_or(Path::new("."));
        let direct = parent_dir.join(reference);
        if direct.is_file() {
            return Ok(direct);
        }
        let mut looked = Vec::new();
        let dirs =
            std::iter::once(parent_dir.to_path_buf()).chain(self.search_dirs.iter().cloned());
        for dir in dirs {
            for pattern in CHILD_NAMES {
                let candidate = dir.join(pattern.replace("{}", reference));
                if candidate.is_file() {
                    return Ok(candidate);
                }
                looked.push(candidate.display().to_string());
            }
        }
        Err(format!(
            "child sequence {reference:?} not found; looked for {} (add a folder with --sequence-dir)",
            looked.join(", ")
        ))
    }
}

/// The child reference of a *Run Task Sequence* step (`TsPackageID`, or `SequencePath`).
pub fn child_reference(step: &Step) -> Option<&str> {
    step.property("TsPackageID")
        .or_else(|| step.property("SequencePath"))
        .filter(|s| !s.trim().is_empty())
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
pub fn compile(seq: &Sequence, path: &Path, resolver: &Resolver) -> Result<Program, CompileError> {
    let mut instrs = Vec::new();
    let mut number = 0;
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mut stack = vec![canonical];
    emit(
        &seq.items,
        path,
        resolver,
        &mut stack,
        &mut instrs,
        &mut number,
    )?;
    Ok(Program {
        name: sequence_name(seq, path),
        global_vars: seq.global_vars.clone(),
        instrs,
        step_total: number,
    })
}

fn emit(
    nodes: &[Node],
    file: &Path,
    resolver: &Resolver,
    stack: &mut Vec<PathBuf>,
    out: &mut Vec<Instr>,
    number: &mut usize,
) -> Result<(), CompileError> {
    let file_s = file.display().to_string();
    for node in nodes {
        match node {
            Node::Group(g) => {
                let enter = out.len();
                out.push(Instr::Enter {
                    name: g.name().to_string(),
                    disabled: node.disabled(),
                    continue_on_error: node.continue_on_error(),
                    condition: g.condition.clone(),
                    defaults: Vec::new(),
                    exit: 0,
                    file: file_s.clone(),
                    pos: g.pos,
                });
                emit(&g.children, file, resolver, stack, out, number)?;
                close(out, enter, g.name());
            }
            Node::Step(s) if is_sub_sequence(s) => {
                let child_err = |message: String| CompileError::Child {
                    file: file_s.clone(),
                    line: s.pos.line,
                    column: s.pos.column,
                    step: s.name().to_string(),
                    message,
                };
                let reference = child_reference(s).ok_or_else(|| {
                    child_err("has no TsPackageID property naming the child sequence".into())
                })?;
                let child_path = resolver.resolve(reference, file).map_err(child_err)?;
                let canonical = child_path.canonicalize().unwrap_or(child_path.clone());
                if let Some(i) = stack.iter().position(|p| *p == canonical) {
                    let chain: Vec<String> = stack[i..]
                        .iter()
                        .chain(std::iter::once(&canonical))
                        .map(|p| p.display().to_string())
                        .collect();
                    return Err(child_err(format!(
                        "sequences include each other in a cycle: {}",
                        chain.join(" -> ")
                    )));
                }
                let (child, _) = crate::sequence::load(&child_path)?;
                let enter = out.len();
                out.push(Instr::Enter {
                    name: s.name().to_string(),
                    disabled: node.disabled(),
                    continue_on_error: node.continue_on_error(),
                    condition: s.condition.clone(),
                    defaults: child.global_vars.clone(),
                    exit: 0,
                    file: file_s.clone(),
                    pos: s.pos,
                });
                stack.push(canonical);
                emit(&child.items, &child_path, resolver, stack, out, number)?;
                stack.pop();
                close(out, enter, s.name());
            }
            Node::Step(s) => {
                *number += 1;
                out.push(Instr::Step {
                    step: s.clone(),
                    number: *number,
                    file: file_s.clone(),
                });
            }
        }
    }
    Ok(())
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
    /// state directory is never resumed with a different sequence.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_vec(self).expect("a program always serializes to JSON");
        let digest = Sha256::digest(&json);
        digest.iter().map(|b| format!("{b:02x}")).collect()
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
}
