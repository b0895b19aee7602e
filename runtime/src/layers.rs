//! The runtime's import order, checked: imports run one way, from the command line down to the
//! sequence model (`docs/architecture.md`).
//!
//! [`LAYERS`] lists the top-level modules from the top down. A module may use modules of its
//! own layer and of the layers below it, never one above; within a layer the imports between
//! modules must not form a cycle; and inside each module folder, files must not import each
//! other in a cycle (a folder's `mod.rs` is left out: it declares its files and they use its
//! shared types). A new top-level module must be placed in the table.
//!
//! The test reads the source text (`crate::NAME` and `super::NAME` paths outside comments), as
//! a reviewer would; it needs no tool beyond `cargo test`.

/// Top-level modules of `src/`, from the top layer down.
pub const LAYERS: &[&[&str]] = &[
    // The command line: parses arguments, prints, maps outcomes to exit codes.
    &["cli"],
    // Walks a sequence: conditions, journal, resume, plan, validation.
    &["engine"],
    // What each step type does.
    &["actions"],
    // Packages and distribution points, images onto locations, boot media, the applied OS
    // made bootable and configured.
    &["content", "volume", "media", "osconfig"],
    // Image formats, disks and file systems, conditions over variables.
    &["image", "disk", "fsformat", "condition"],
    // The sequence model (its own crate), logs, variables, external programs, shared helpers.
    &[
        "sequence", "error", "log", "vars", "tools", "sys", "envfile", "machine",
    ],
];

#[cfg(test)]
mod tests {
    use super::LAYERS;
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    /// A source file: its module path under `src/` (`["actions", "run"]`) and its text with
    /// comments removed.
    struct Source {
        module: Vec<String>,
        is_mod_rs: bool,
        text: String,
    }

    /// The text without comments and without the unit tests at the end of the file (`#[cfg(test)]
    /// mod tests`): tests may build their inputs with any module.
    fn strip_comments(text: &str) -> String {
        let text = match text.find("#[cfg(test)]\nmod tests") {
            Some(i) => &text[..i],
            None => text,
        };
        text.lines()
            .map(|l| match l.find("//") {
                Some(i) => &l[..i],
                None => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn sources(dir: &Path, prefix: &[String], out: &mut Vec<Source>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                let mut m = prefix.to_vec();
                m.push(name);
                sources(&p, &m, out);
            } else if let Some(stem) = name.strip_suffix(".rs") {
                let mut module = prefix.to_vec();
                let is_mod_rs = stem == "mod";
                if !is_mod_rs && !(prefix.is_empty() && (stem == "lib" || stem == "main")) {
                    module.push(stem.to_string());
                }
                let text = strip_comments(&std::fs::read_to_string(&p).unwrap());
                out.push(Source {
                    module,
                    is_mod_rs,
                    text,
                });
            }
        }
    }

    /// The identifiers that follow `prefix` (`crate::`, `super::`) in `text`.
    fn paths_after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().next_back();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // `tsforge_crate::…` and the like
            }
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if end > 0 {
                out.push(&rest[..end]);
            }
        }
        out
    }

    fn rank(module: &str) -> Option<usize> {
        LAYERS.iter().position(|l| l.contains(&module))
    }

    /// A cycle in `edges`, as the list of its nodes, if there is one.
    fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
        fn visit(
            n: &str,
            edges: &BTreeMap<String, BTreeSet<String>>,
            state: &mut BTreeMap<String, u8>,
            stack: &mut Vec<String>,
        ) -> Option<Vec<String>> {
            match state.get(n) {
                Some(2) => return None,
                Some(1) => {
                    let at = stack.iter().position(|s| s == n).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(n.to_string());
                    return Some(cycle);
                }
                _ => {}
            }
            state.insert(n.to_string(), 1);
            stack.push(n.to_string());
            for m in edges.get(n).into_iter().flatten() {
                if let Some(c) = visit(m, edges, state, stack) {
                    return Some(c);
                }
            }
            stack.pop();
            state.insert(n.to_string(), 2);
            None
        }
        let mut state = BTreeMap::new();
        for n in edges.keys() {
            if let Some(c) = visit(n, edges, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
        None
    }

    /// Every way the sources break the import order, one line each.
    fn violations(all: &[Source]) -> Vec<String> {
        let mut problems = Vec::new();
        let tops: BTreeSet<String> = all
            .iter()
            .filter_map(|s| s.module.first().cloned())
            .filter(|t| t != "layers")
            .collect();
        for t in &tops {
            if rank(t).is_none() {
                problems.push(format!(
                    "module {t} is not in runtime/src/layers.rs LAYERS: place it in its layer"
                ));
            }
        }
        // Top-level modules: direction, and cycles within a layer.
        let mut top_edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for s in all {
            let Some(from) = s.module.first().filter(|m| tops.contains(*m)) else {
                continue;
            };
            for to in paths_after(&s.text, "crate::") {
                if to == from || !tops.contains(to) {
                    continue;
                }
                top_edges
                    .entry(from.clone())
                    .or_default()
                    .insert(to.to_string());
                if let (Some(a), Some(b)) = (rank(from), rank(to)) {
                    if b < a {
                        problems.push(format!(
                            "src/{}: `{from}` imports `crate::{to}`, a layer above it",
                            s.module.join("/")
                        ));
                    }
                }
            }
        }
        if let Some(c) = find_cycle(&top_edges) {
            problems.push(format!("import cycle between modules: {}", c.join(" -> ")));
        }
        // Files of one folder: no cycle among siblings.
        let mut file_edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let files: BTreeSet<Vec<String>> = all
            .iter()
            .filter(|s| !s.is_mod_rs)
            .map(|s| s.module.clone())
            .collect();
        for s in all.iter().filter(|s| !s.is_mod_rs && s.module.len() >= 2) {
            let parent = &s.module[..s.module.len() - 1];
            let mut targets: Vec<&str> = paths_after(&s.text, "super::");
            let crate_parent = format!("crate::{}::", parent.join("::"));
            targets.extend(paths_after(&s.text, &crate_parent));
            for t in targets {
                let mut sibling = parent.to_vec();
                sibling.push(t.to_string());
                if sibling != s.module && files.contains(&sibling) {
                    file_edges
                        .entry(s.module.join("/"))
                        .or_default()
                        .insert(sibling.join("/"));
                }
            }
        }
        if let Some(c) = find_cycle(&file_edges) {
            problems.push(format!("import cycle between files: {}", c.join(" -> ")));
        }
        problems
    }

    #[test]
    fn imports_run_one_way() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut all = Vec::new();
        sources(&src, &[], &mut all);
        assert!(
            all.len() > 20,
            "read {} files from {}",
            all.len(),
            src.display()
        );
        let problems = violations(&all);
        assert!(
            problems.is_empty(),
            "the runtime's imports break the order of runtime/src/layers.rs:\n{}",
            problems.join("\n")
        );
    }

    /// The check itself: an upward import, a cycle inside a layer and a cycle between files
    /// are each found.
    #[test]
    fn the_check_finds_upward_imports_and_cycles() {
        let file = |module: &str, text: &str| Source {
            module: module.split('/').map(str::to_string).collect(),
            is_mod_rs: false,
            text: strip_comments(text),
        };
        let upward = [
            file("vars", "use crate::cli::Exit;"),
            file("cli", "use crate::vars::Vars;"),
        ];
        let found = violations(&upward);
        assert!(
            found
                .iter()
                .any(|p| p.contains("`vars` imports `crate::cli`")),
            "{found:?}"
        );
        let in_layer = [
            file("content", "crate::volume::detect(p)"),
            file("volume", "use crate::content::Store;"),
        ];
        let found = violations(&in_layer);
        assert!(
            found.iter().any(|p| p.contains("cycle between modules")),
            "{found:?}"
        );
        let files = [
            file("actions/run", "use super::package_steps::install;"),
            file(
                "actions/package_steps",
                "use crate::actions::run::run_process;",
            ),
        ];
        let found = violations(&files);
        assert!(
            found.iter().any(|p| p.contains("cycle between files")),
            "{found:?}"
        );
        let comment_only = [file("vars", "// see crate::cli::Exit")];
        assert_eq!(violations(&comment_only), Vec::<String>::new());
    }
}
