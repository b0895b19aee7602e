//! Validation of a parsed sequence: every problem found in one pass, each with its position.
//!
//! Errors make `tsforge validate` exit 1: values the engine cannot interpret (`disable="maybe"`,
//! `timeout="ten"`, bad success codes), conditions of unknown types or with unknown operators
//! or missing properties, steps of the native types without the properties they need, bad
//! variable names, steps that set read-only `_SMSTS*` variables, numbers outside their range
//! (`model::limits`), and *Run Task Sequence* steps whose child cannot be found, that form a
//! cycle, or that go past the limits on depth, nesting and expanded size (each child file is
//! validated once; when nothing else is wrong, the whole expansion is checked as `run` checks
//! it). Warnings: step types tsforge does not
//! implement natively (they run their `<action>` command line, as in ConfigMgr),
//! Windows-only conditions (registry, WMI, software, OS), which fail on other platforms, and
//! `runIn` orders that cannot work (`run_in::order_warnings`).

use crate::actions::custom::CustomActions;
use crate::actions::run_task_sequence::child_reference;
use crate::actions::{classify, Kind};
use crate::condition::VARIABLE_OPERATORS;
use crate::engine::program::Resolver;
use crate::error::{Diagnostic, ParseError, Severity};
use crate::sequence::model::{
    attr, check_condition_depth, expr_type, limits, parse_bool, step_type, Condition, Extra, Node,
    Pos, Sequence, Step,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What validation needs besides the sequence.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub custom: CustomActions,
    pub resolver: Resolver,
}

/// ConfigMgr action types that the disk/image issue implements natively; until then they run
/// their `<action>` and get a warning that says so.
const KNOWN_CONFIGMGR_TYPES: &[&str] = &[
    "SMS_TaskSequence_PartitionDiskAction",
    "SMS_TaskSequence_ApplyOperatingSystemAction",
    "SMS_TaskSequence_ApplyDataImageAction",
    "SMS_TaskSequence_CaptureSystemImageAction",
    "SMS_TaskSequence_ApplyDriverPackageAction",
    "SMS_TaskSequence_AutoApplyAction",
    "SMS_TaskSequence_InstallSoftwareAction",
    "SMS_TaskSequence_InstallUpdateAction",
    "SMS_TaskSequence_FormatAndPartitionAction",
    "SMS_TaskSequence_ConvertDiskAction",
    "SMS_TaskSequence_EnableBitLockerAction",
    "SMS_TaskSequence_DisableBitLockerAction",
    "SMS_TaskSequence_DownloadPackageContentAction",
    "SMS_TaskSequence_ConnectNetworkFolderAction",
    "SMS_TaskSequence_JoinDomainWorkgroupAction",
    "SMS_TaskSequence_PrepareOSAction",
    "SMS_TaskSequence_PrepareSMSClientAction",
    "SMS_TaskSequence_CaptureUserStateAction",
    "SMS_TaskSequence_RestoreUserStateAction",
    "SMS_TaskSequence_RequestStateStoreAction",
    "SMS_TaskSequence_ReleaseStateStoreAction",
    "SMS_TaskSequence_CaptureNetworkSettingsAction",
    "SMS_TaskSequence_CaptureWindowsSettingsAction",
];

struct V<'a> {
    file: &'a Path,
    out: Vec<Diagnostic>,
    ctx: &'a Context,
}

impl V<'_> {
    fn push(&mut self, sev: Severity, pos: Pos, msg: String) {
        self.out.push(Diagnostic {
            severity: sev,
            error: ParseError::new(self.file, pos.line, pos.column, msg),
        });
    }
    fn error(&mut self, pos: Pos, msg: String) {
        self.push(Severity::Error, pos, msg);
    }
    fn warn(&mut self, pos: Pos, msg: String) {
        self.push(Severity::Warning, pos, msg);
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate within a small distance.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d > 0 && *d <= (c.len() / 4).clamp(1, 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// An XML name (the ASCII part of the XML 1.0 rule; any non-ASCII character is accepted).
pub fn is_xml_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':' || !f.is_ascii())
        && c.all(|ch| ch.is_ascii_alphanumeric() || "._:-".contains(ch) || !ch.is_ascii())
}

/// Attribute names XML cannot hold (YAML can): `convert --to xml` would refuse the file.
fn check_attr_names(v: &mut V, attrs: &crate::sequence::model::Attrs, pos: Pos) {
    for (k, _) in attrs {
        if !is_xml_name(k) {
            v.error(
                pos,
                format!("attribute name {k:?} is not a valid XML name (letters, digits, '_', '-', '.', ':'; not starting with a digit)"),
            );
        }
    }
}

/// Elements tsforge keeps without interpreting that real exports carry, so `validate` does not
/// warn about them: `<referenceList>` in `<sequence>` (the packages the sequence refers to; each
/// step names its own) and the empty `<action>` MDT writes in groups.
fn expected_extra(x: &Extra, container: Container) -> bool {
    match (container, x.name()) {
        (Container::Sequence, "referenceList") => true,
        (Container::Group, "action") => {
            let x = x.xml.as_str();
            x == "<action/>"
                || x == "<action />"
                || x.strip_prefix("<action>")
                    .and_then(|r| r.strip_suffix("</action>"))
                    .is_some_and(|t| t.trim().is_empty())
        }
        _ => false,
    }
}

/// Where kept elements sit, for messages.
#[derive(Clone, Copy)]
enum Container {
    Sequence,
    Group,
    Step,
}

/// Raw XML kept for elements tsforge does not interpret must be well-formed; each element it
/// does not know is a warning at its own position (it is written back, never run).
fn check_extra_xml(v: &mut V, extra: &[Extra], container: Container, name: &str) {
    for x in extra {
        let doc = format!("<sequence>{}</sequence>", x.xml);
        if let Err(e) = crate::sequence::xml::parse(&doc, Path::new("xml_extra")) {
            v.error(
                x.pos,
                format!("raw XML {:?} is not well-formed: {}", x.xml, e.message),
            );
            continue;
        }
        if expected_extra(x, container) {
            continue;
        }
        let inside = match container {
            Container::Sequence => "<sequence>".to_string(),
            Container::Group => format!("group {name:?}"),
            Container::Step => format!("step {name:?}"),
        };
        v.warn(
            x.pos,
            format!(
                "unknown element <{}> in {inside}: tsforge keeps it (convert writes it back) \
                 but does not run or interpret it",
                x.name()
            ),
        );
    }
}

/// Validate `seq`, read from `file`. Returns every finding, errors and warnings.
pub fn validate(seq: &Sequence, file: &Path, ctx: &Context) -> Vec<Diagnostic> {
    let mut v = V {
        file,
        out: Vec::new(),
        ctx,
    };
    check_attr_names(&mut v, &seq.attrs, seq.pos);
    check_extra_xml(&mut v, &seq.extra_xml, Container::Sequence, "");
    for g in &seq.global_vars {
        if !crate::vars::valid_name(&g.name) {
            v.error(g.pos, format!("invalid variable name {:?}", g.name));
        }
        check_attr_names(&mut v, &g.attrs, g.pos);
    }
    let mut files = Files {
        stack: vec![file.canonicalize().unwrap_or_else(|_| file.to_path_buf())],
        done: HashSet::new(),
    };
    nodes(&mut v, &seq.items, file, &mut files, 0);
    for (pos, msg) in crate::engine::run_in::order_warnings(&seq.items) {
        v.warn(pos, msg);
    }
    if !v.out.iter().any(|d| d.severity == Severity::Error) {
        // What only the whole expansion shows (its size, how deep the child sequences nest
        // along every path), exactly as `run` checks it.
        if let Err(e) = crate::engine::program::compile(seq, file, &v.ctx.resolver) {
            v.out.push(Diagnostic {
                severity: Severity::Error,
                error: e.into_parse_error(),
            });
        }
    }
    v.out
}

/// The child sequences met while validating.
struct Files {
    /// The files on the way to the current one, the top one first (canonical paths).
    stack: Vec<PathBuf>,
    /// Child files already validated (each is validated once, however often it is included).
    done: HashSet<PathBuf>,
}

fn check_bool(v: &mut V, attrs: &crate::sequence::model::Attrs, key: &str, pos: Pos, what: &str) {
    if let Some(val) = attr(attrs, key) {
        if parse_bool(val).is_none() {
            v.error(
                pos,
                format!("{what} attribute {key}={val:?} must be \"true\" or \"false\""),
            );
        }
    }
}

/// Validate `items`, which sit inside `depth` groups (counting child sequences).
fn nodes(v: &mut V, items: &[Node], file: &Path, files: &mut Files, depth: usize) {
    for n in items {
        match n {
            Node::Group(g) => {
                check_attr_names(v, &g.attrs, g.pos);
                check_extra_xml(v, &g.extra_xml, Container::Group, g.name());
                check_bool(v, &g.attrs, "disable", g.pos, "group");
                check_bool(v, &g.attrs, "continueOnError", g.pos, "group");
                conditions(v, &g.condition);
                if let Err(e) = check_condition_depth(&g.condition) {
                    v.error(g.pos, format!("group {:?}: {e}", g.name()));
                }
                if depth + 1 > limits::MAX_NESTING {
                    v.error(g.pos, too_deep());
                } else {
                    nodes(v, &g.children, file, files, depth + 1);
                }
            }
            Node::Step(s) => step(v, s, file, files, depth),
        }
    }
}

fn too_deep() -> String {
    format!(
        "groups and child sequences are nested more than {} levels deep, tsforge's limit",
        limits::MAX_NESTING
    )
}

fn step(v: &mut V, s: &Step, file: &Path, files: &mut Files, depth: usize) {
    let pos = s.pos;
    let name = s.name().to_string();
    check_attr_names(v, &s.attrs, pos);
    check_extra_xml(v, &s.extra_xml, Container::Step, s.name());
    check_bool(v, &s.attrs, "disable", pos, "step");
    check_bool(v, &s.attrs, "continueOnError", pos, "step");
    check_bool(v, &s.attrs, "runFromNet", pos, "step");
    if crate::engine::run_in::RunIn::of(s).is_none() {
        v.error(
            pos,
            format!(
                "step {name:?}: runIn={:?} must be {}",
                attr(&s.attrs, "runIn").unwrap_or_default(),
                crate::engine::run_in::VALUES
            ),
        );
    }
    for problem in s.check_numbers() {
        v.error(pos, problem);
    }
    for var in &s.vars {
        if var.name.is_empty() {
            v.error(
                var.pos,
                format!("step {name:?}: a property has an empty name"),
            );
        }
    }
    conditions(v, &s.condition);
    if let Err(e) = check_condition_depth(&s.condition) {
        v.error(pos, format!("step {name:?}: {e}"));
    }
    let Some(kind) = s.kind() else {
        if s.action.as_deref().is_none_or(|a| a.trim().is_empty()) {
            v.error(
                pos,
                format!("step {name:?} has neither a type nor an <action> command line to run"),
            );
        }
        return;
    };
    match classify(s, &v.ctx.custom) {
        Kind::BuiltIn(t) => {
            for problem in (t.check)(s) {
                v.error(pos, problem);
            }
            if t.names.contains(&step_type::SUB_SEQUENCE) {
                child(v, s, file, files, depth);
            }
        }
        // Mapped by a custom action manifest.
        Kind::Custom(_) => {}
        Kind::ActionCommandLine => {
            let known = KNOWN_CONFIGMGR_TYPES
                .iter()
                .any(|t| t.eq_ignore_ascii_case(kind));
            let how = if s.action.as_deref().is_some_and(|a| !a.trim().is_empty()) {
                "it runs its <action> command line, as ConfigMgr does"
            } else {
                "it has no <action> command line, so it will fail"
            };
            let hint = if known || kind.starts_with("BDD_") {
                String::new()
            } else {
                let all = step_type::SHORT_NAMES
                    .iter()
                    .flat_map(|(s, t)| [*s, *t])
                    .chain(KNOWN_CONFIGMGR_TYPES.iter().copied())
                    .chain(v.ctx.custom.kinds());
                let cands: Vec<&str> = all.collect();
                suggest(kind, cands.iter().copied())
                    .map(|c| format!(" (did you mean {c}?)"))
                    .unwrap_or_default()
            };
            v.warn(
                pos,
                format!("step {name:?}: type {kind} is not built into tsforge; {how}{hint}"),
            );
        }
    }
}

/// A *Run Task Sequence* step: find its child and validate it (once per file), refusing
/// cycles and what goes past tsforge's limits.
fn child(v: &mut V, s: &Step, file: &Path, files: &mut Files, depth: usize) {
    let pos = s.pos;
    let name = s.name().to_string();
    let Some(r) = child_reference(s) else {
        return; // the step type's own check reports it
    };
    match v.ctx.resolver.resolve(r, file) {
        Err(e) => v.error(pos, format!("step {name:?}: {e}")),
        Ok(child) => {
            let canon = child.canonicalize().unwrap_or(child.clone());
            if files.stack.contains(&canon) {
                v.error(
                    pos,
                    format!(
                        "step {name:?}: sequences include each other in a cycle ({} is already being run)",
                        child.display()
                    ),
                );
            } else if files.stack.len() > limits::MAX_CHILD_DEPTH {
                v.error(
                    pos,
                    format!(
                        "step {name:?}: including {} would nest child sequences {} levels deep; tsforge's limit is {} levels",
                        child.display(),
                        files.stack.len(),
                        limits::MAX_CHILD_DEPTH
                    ),
                );
            } else if depth + 1 > limits::MAX_NESTING {
                v.error(pos, too_deep());
            } else if !files.done.contains(&canon) {
                match crate::sequence::load(&child) {
                    Err(e) => v.out.push(Diagnostic {
                        severity: Severity::Error,
                        error: e,
                    }),
                    Ok((seq, _)) => {
                        files.stack.push(canon.clone());
                        let mut sub = V {
                            file: &child,
                            out: Vec::new(),
                            ctx: v.ctx,
                        };
                        check_extra_xml(&mut sub, &seq.extra_xml, Container::Sequence, "");
                        nodes(&mut sub, &seq.items, &child, files, depth + 1);
                        v.out.extend(sub.out);
                        files.stack.pop();
                    }
                }
                files.done.insert(canon);
            }
        }
    }
}

fn conditions(v: &mut V, conds: &[Condition]) {
    for c in conds {
        match c {
            Condition::Operator {
                children,
                attrs,
                pos,
                ..
            } => {
                check_attr_names(v, attrs, *pos);
                conditions(v, children)
            }
            Condition::Expression(e) => {
                check_attr_names(v, &e.attrs, e.pos);
                let known = expr_type::ALL
                    .iter()
                    .find(|t| t.eq_ignore_ascii_case(&e.kind));
                let Some(kind) = known else {
                    let hint = suggest(&e.kind, expr_type::ALL.iter().copied())
                        .map(|s| format!(" (did you mean {s}?)"))
                        .unwrap_or_default();
                    v.error(
                        e.pos,
                        format!(
                            "unknown condition type {:?}{hint}; known types: {}",
                            e.kind,
                            expr_type::ALL.join(", ")
                        ),
                    );
                    continue;
                };
                let need = |v: &mut V, key: &str| {
                    if e.get(key).is_none_or(|x| x.trim().is_empty()) {
                        v.error(
                            e.pos,
                            format!(
                                "{} condition needs the {key} property",
                                crate::condition::short_kind(kind)
                            ),
                        );
                    }
                };
                match *kind {
                    expr_type::VARIABLE => {
                        need(v, "Variable");
                        let op = e.get("Operator").unwrap_or("equals");
                        if !VARIABLE_OPERATORS
                            .iter()
                            .any(|o| o.eq_ignore_ascii_case(op))
                        {
                            let hint = suggest(op, VARIABLE_OPERATORS.iter().copied())
                                .map(|s| format!(" (did you mean {s}?)"))
                                .unwrap_or_default();
                            v.error(
                                e.pos,
                                format!(
                                    "unknown variable operator {op:?}{hint}; known operators: {}",
                                    VARIABLE_OPERATORS.join(", ")
                                ),
                            );
                        }
                    }
                    expr_type::FILE | expr_type::FOLDER => {
                        need(v, "Path");
                        if let Some(dt) = e.get("DateTime").filter(|d| !d.trim().is_empty()) {
                            if crate::condition::parse_wmi_datetime(dt).is_none() {
                                v.error(
                                    e.pos,
                                    format!("DateTime {dt:?} is not a WMI datetime (yyyymmddHHMMSS.ffffff+UUU)"),
                                );
                            }
                        }
                    }
                    expr_type::WMI => {
                        need(v, "Query");
                        windows_only(v, e.pos, "WMI");
                    }
                    expr_type::REGISTRY => {
                        need(v, "KeyPath");
                        windows_only(v, e.pos, "registry");
                    }
                    expr_type::SOFTWARE => windows_only(v, e.pos, "software"),
                    expr_type::OS => windows_only(v, e.pos, "operating system"),
                    _ => {}
                }
            }
        }
    }
}

fn windows_only(v: &mut V, pos: Pos, what: &str) {
    if !cfg!(windows) {
        v.warn(
            pos,
            format!("{what} conditions are evaluated on Windows only; on {} this step fails when the condition is checked", std::env::consts::OS),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("notEqual", VARIABLE_OPERATORS.iter().copied()),
            Some("notEquals")
        );
        assert_eq!(suggest("zzzzzz", VARIABLE_OPERATORS.iter().copied()), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
