//! ConfigMgr/MDT XML through the real binary: conversion without loss, UTF-16 files, untyped
//! MDT steps, dynamic variables, child sequences and positioned errors.

use std::path::{Path, PathBuf};
use tsforge_runtime::sequence::{self, xml, yaml, Node};

use crate::common::tsforge;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sequences")
}

fn count(nodes: &[Node], steps: &mut usize, groups: &mut usize, conds: &mut usize) {
    for n in nodes {
        *conds += n.condition().len();
        match n {
            Node::Group(g) => {
                *groups += 1;
                count(&g.children, steps, groups, conds);
            }
            Node::Step(_) => *steps += 1,
        }
    }
}

#[test]
fn xml_to_yaml_to_xml_keeps_everything_for_every_fixture() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "cm-osd-deploy.xml",
        "mdt-client-ts.xml",
        "cm-package-wrapper.xml",
        "object.xml",
        "cm-osd-deploy-utf16.xml",
        "LAB0002A.xml",
    ] {
        let src = fixtures().join(name);
        let (original, _) = sequence::load(&src).unwrap();
        // Through the library…
        let yaml_text = yaml::write(&original);
        let via_yaml = yaml::parse(&yaml_text, Path::new("x.yaml")).unwrap();
        assert_eq!(via_yaml, original, "{name}: XML -> YAML loses something");
        let back = xml::parse(&xml::write(&via_yaml), Path::new("x.xml")).unwrap();
        assert_eq!(back, original, "{name}: XML -> YAML -> XML loses something");
        // …and through `tsforge convert`, as an administrator would.
        let y = dir.path().join(format!("{name}.yaml"));
        let x = dir.path().join(format!("{name}.back.xml"));
        let convert = |from: &Path, to: &str, out: &Path| {
            let (code, _, err) = tsforge(
                dir.path(),
                &[
                    "convert",
                    from.to_str().unwrap(),
                    "--to",
                    to,
                    "-o",
                    out.to_str().unwrap(),
                ],
            );
            assert_eq!(code, 0, "convert {} --to {to}: {err}", from.display());
        };
        convert(&src, "yaml", &y);
        convert(&y, "xml", &x);
        let (reread, _) = sequence::load(&x).unwrap();
        assert_eq!(reread, original, "{name}: convert round trip");
        let (mut s, mut g, mut c) = (0, 0, 0);
        count(&reread.items, &mut s, &mut g, &mut c);
        assert!(s > 0, "{name} has steps");
    }
    // The big fixture really is big and varied.
    let (big, _) = sequence::load(&fixtures().join("cm-osd-deploy.xml")).unwrap();
    let (mut s, mut g, mut c) = (0, 0, 0);
    count(&big.items, &mut s, &mut g, &mut c);
    assert!(
        s >= 20 && g >= 10 && c >= 10,
        "steps {s} groups {g} conditions {c}"
    );
}

#[test]
fn convert_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.yaml");
    std::fs::write(&out, "keep me").unwrap();
    let src = fixtures().join("object.xml");
    let (code, _, err) = tsforge(
        dir.path(),
        &[
            "convert",
            src.to_str().unwrap(),
            "--to",
            "yaml",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me");
}

fn utf16le_bom(text: &str) -> Vec<u8> {
    let mut b = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        b.extend_from_slice(&u.to_le_bytes());
    }
    b
}

#[test]
fn utf16_xml_with_untyped_mdt_steps_and_dynamic_variables_runs() {
    let dir = tempfile::tempdir().unwrap();
    // The rules as the console exports them (property Rules); see set_dynamic_cli.rs.
    let rules = "&lt;Rules&gt;&lt;Rule&gt;&lt;condition&gt;&lt;expression type=\"SMS_TaskSequence_VariableConditionExpression\"&gt;&lt;variable name=\"Operator\"&gt;like&lt;/variable&gt;&lt;variable name=\"Value\"&gt;Latitude*&lt;/variable&gt;&lt;variable name=\"Variable\"&gt;Model&lt;/variable&gt;&lt;/expression&gt;&lt;/condition&gt;&lt;Variables&gt;&lt;Variable Name=\"DriverPack\" IsSecret=\"false\"&gt;DELL-%Model%&lt;/Variable&gt;&lt;/Variables&gt;&lt;/Rule&gt;&lt;Rule&gt;&lt;Variables&gt;&lt;Variable Name=\"TimeZone\" IsSecret=\"false\"&gt;UTC&lt;/Variable&gt;&lt;/Variables&gt;&lt;/Rule&gt;&lt;/Rules&gt;";
    let text = format!(
        "<?xml version=\"1.0\" encoding=\"utf-16\"?>\r\n<sequence version=\"3.00\" name=\"Ünïcode &amp; UTF-16\">\r\n\
  <globalVarList><variable name=\"Model\" property=\"Model\">Latitude 7490</variable></globalVarList>\r\n\
  <group name=\"MDT style\">\r\n\
    <step name=\"Gather (untyped)\" successCodeList=\"0 3010\" successCodes=\"0 42\"><action>echo gather; exit 42</action></step>\r\n\
    <step type=\"BDD_Gather\" name=\"BDD type runs its action\"><action>echo bdd &gt;&gt; marks</action>\r\n\
      <defaultVarList><variable name=\"GatherLocalOnly\" property=\"GatherLocalOnly\">true</variable></defaultVarList></step>\r\n\
    <step type=\"SMS_TaskSequence_SetDynamicVariablesAction\" name=\"Rules\"><action>osdsetdynamicvariables.exe</action>\r\n\
      <defaultVarList><variable name=\"OSDSetDynamicVariablesRules\" property=\"Rules\">{rules}</variable></defaultVarList></step>\r\n\
    <step type=\"SMS_TaskSequence_RunCommandLineAction\" name=\"Use them\"><action>smsswd.exe /run: ignored</action>\r\n\
      <defaultVarList><variable name=\"CommandLine\" property=\"CommandLine\"><![CDATA[echo \"%DriverPack%|%TimeZone%|$GatherLocalOnly\" >> marks]]></variable></defaultVarList></step>\r\n\
  </group>\r\n</sequence>\r\n"
    );
    let file = dir.path().join("ts.xml");
    std::fs::write(&file, utf16le_bom(&text)).unwrap();
    let (code, out, err) = tsforge(dir.path(), &["validate", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("type BDD_Gather is not built into tsforge"),
        "{out}"
    );
    let (code, _, err) = tsforge(
        dir.path(),
        &["run", file.to_str().unwrap(), "--state-dir", "state"],
    );
    assert_eq!(code, 0, "{err}");
    let marks = std::fs::read_to_string(dir.path().join("marks")).unwrap();
    // BDD steps get their properties as environment variables, not as task sequence variables.
    assert_eq!(marks, "bdd\nDELL-Latitude 7490|UTC|\n");
    let log = std::fs::read_to_string(dir.path().join("state/smsts.log")).unwrap();
    assert!(
        log.contains("Starting task sequence \"Ünïcode & UTF-16\""),
        "{log}"
    );
    assert!(log.contains("Step \"Gather (untyped)\" succeeded (exit code 42)"));
}

#[test]
fn xml_child_sequence_runs_from_the_fixture_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("LAB0002B.xml"),
        "<sequence version=\"3.00\"><globalVarList><variable name=\"Who\" property=\"Who\">child</variable></globalVarList>\
         <step name=\"child step\"><action>echo %Who% &gt;&gt; marks</action></step></sequence>",
    )
    .unwrap();
    let parent = dir.path().join("parent.xml");
    std::fs::write(
        &parent,
        "<sequence version=\"3.00\"><step type=\"SMS_TaskSequence_SubTasksequence\" name=\"Run Task Sequence\">\
         <action>tsmanager.exe /sub:LAB0002B</action><defaultVarList>\
         <variable name=\"SMSTSSubTaskSequencePackageID\" property=\"TsPackageID\">LAB0002B</variable>\
         </defaultVarList></step></sequence>",
    )
    .unwrap();
    let (code, _, err) = tsforge(
        dir.path(),
        &["run", parent.to_str().unwrap(), "--state-dir", "state"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("marks")).unwrap(),
        "child\n"
    );
    // The big fixture's child is found next to it.
    let (code, out, _) = tsforge(
        dir.path(),
        &[
            "validate",
            fixtures().join("cm-osd-deploy.xml").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}");
}

#[test]
fn malformed_xml_gives_file_line_column() {
    let dir = tempfile::tempdir().unwrap();
    let bad = fixtures().join("bad");
    let cases = [
        ("unclosed-group.xml", "12:1"),
        ("mismatched-end-tag.xml", "6:5"),
        ("bad-entity.xml", "5:39"),
        ("object-bad-sequence.xml", "14:7"),
        ("unknown-operator.xml", "5:7"),
    ];
    let args: Vec<String> = cases
        .iter()
        .map(|(f, _)| bad.join(f).display().to_string())
        .collect();
    let mut argv = vec!["validate"];
    argv.extend(args.iter().map(String::as_str));
    let (code, out, _) = tsforge(dir.path(), &argv);
    assert_eq!(code, 1);
    for (file, pos) in cases {
        let want = format!("{}:{pos}: ", bad.join(file).display());
        assert!(out.contains(&want), "{want} not in {out}");
    }
}

#[test]
fn dry_run_of_an_exported_object_xml() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = tsforge(
        dir.path(),
        &[
            "run",
            fixtures().join("object.xml").to_str().unwrap(),
            "--dry-run",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Plan for "), "{out}");
    assert!(out.contains("RUN "), "{out}");
}

/// Regression (fuzz K3/K4): YAML can carry attribute names and raw XML that XML cannot hold;
/// `validate` reports them and `convert --to xml` refuses instead of writing broken XML.
#[test]
fn yaml_that_xml_cannot_hold_is_reported_and_not_converted() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("odd.yaml");
    std::fs::write(
        &src,
        "attributes: {\"version 3\": \"1\"}\nxml_extra: [\"<unclosed>\"]\nsteps:\n  - name: a\n    run: echo\n",
    )
    .unwrap();
    let (code, out, _) = tsforge(dir.path(), &["validate", src.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        out.contains("\"version 3\" is not a valid XML name"),
        "{out}"
    );
    assert!(
        out.contains("raw XML \"<unclosed>\" is not well-formed"),
        "{out}"
    );
    let dst = dir.path().join("odd.xml");
    let (code, _, err) = tsforge(
        dir.path(),
        &[
            "convert",
            src.to_str().unwrap(),
            "--to",
            "xml",
            "-o",
            dst.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert!(!dst.exists());
}

/// Every input the fuzzers ever crashed or broke is kept in fuzz/regressions: none may panic
/// (exit 101) in validate, run --dry-run or convert any more.
#[test]
fn fuzz_regressions_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut seen = 0;
    for entry in std::fs::read_dir(&reg).unwrap() {
        let p = entry.unwrap().path();
        if !matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "xml")) {
            continue;
        }
        seen += 1;
        let f = p.to_str().unwrap();
        for args in [
            vec!["validate", f],
            vec!["run", f, "--dry-run"],
            vec!["convert", f, "--to", "xml"],
            vec!["convert", f, "--to", "yaml"],
        ] {
            let (code, out, err) = tsforge(dir.path(), &args);
            assert!(
                (0..=2).contains(&code),
                "{args:?} exited {code}\n{out}\n{err}"
            );
            assert!(!err.contains("panicked"), "{args:?}: {err}");
        }
    }
    assert!(seen >= 3, "regression inputs found: {seen}");
}

/// Nothing is dropped silently: an element the reader does not know, in `<sequence>`, a group
/// or a step, is kept for the round trip and `validate` warns about it at its own line and
/// column, naming it. `<referenceList>` and MDT's empty group `<action>` are known and quiet.
#[test]
fn unknown_elements_are_kept_and_reported_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("unknown-elements.xml");
    let (code, out, err) = tsforge(dir.path(), &["validate", src.to_str().unwrap()]);
    assert_eq!(code, 0, "warnings only: {out}{err}");
    let warnings: Vec<&str> = out.lines().filter(|l| l.contains("warning:")).collect();
    let file = src.display().to_string();
    assert_eq!(
        warnings,
        [
            format!("{file}:9:3: warning: unknown element <futureSetting> in <sequence>: tsforge keeps it (convert writes it back) but does not run or interpret it"),
            format!("{file}:11:5: warning: unknown element <presentation> in group \"Install\": tsforge keeps it (convert writes it back) but does not run or interpret it"),
            format!("{file}:16:7: warning: unknown element <vendorData> in step \"Echo\": tsforge keeps it (convert writes it back) but does not run or interpret it"),
        ],
        "{out}"
    );
    assert!(err.contains("0 error(s), 3 warning(s)"), "{err}");
    // Kept through YAML: the YAML file warns about the same elements at their YAML lines.
    let y = dir.path().join("u.yaml");
    let (code, _, err) = tsforge(
        dir.path(),
        &[
            "convert",
            src.to_str().unwrap(),
            "--to",
            "yaml",
            "-o",
            y.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (original, _) = sequence::load(&src).unwrap();
    let (via_yaml, _) = sequence::load(&y).unwrap();
    assert_eq!(via_yaml, original);
    let (code, out, _) = tsforge(dir.path(), &["validate", y.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    for name in ["<futureSetting>", "<presentation>", "<vendorData>"] {
        assert_eq!(
            out.lines()
                .filter(|l| l.contains("warning: unknown element") && l.contains(name))
                .count(),
            1,
            "{name}: {out}"
        );
    }
    // And the sequence runs.
    let (code, _, err) = tsforge(
        dir.path(),
        &[
            "run",
            src.to_str().unwrap(),
            "--state-dir",
            "state",
            "--no-fsync",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("marks")).unwrap(),
        "ran\n"
    );
}

/// The start tags inside `<sequence>…</sequence>` of a file, in document order.
fn sequence_tags(file: &Path) -> Vec<String> {
    let bytes = std::fs::read(file).unwrap();
    let text = sequence::decode_text(&bytes, file).unwrap();
    let start = text.find("<sequence").unwrap();
    let end = text.rfind("</sequence>").unwrap();
    // Text in CDATA sections is text, not elements.
    let mut body = String::new();
    let mut rest = &text[start..end];
    while let Some(i) = rest.find("<![CDATA[") {
        body.push_str(&rest[..i]);
        rest = rest[i..].find("]]>").map_or("", |j| &rest[i + j + 3..]);
    }
    body.push_str(rest);
    body.split('<')
        .skip(1)
        .filter(|t| t.starts_with(|c: char| c.is_ascii_alphabetic()))
        .map(|t| {
            t.split(|c: char| c.is_whitespace() || c == '/' || c == '>')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Lossless order, as an administrator meets it: every fixture converted to YAML and back to
/// XML has its elements in the order it had (MDT's `<defaultVarList>` before `<action>`, the
/// position of `<referenceList>` and of unknown elements).
#[test]
fn convert_keeps_the_order_of_every_element() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "cm-osd-deploy.xml",
        "mdt-client-ts.xml",
        "cm-package-wrapper.xml",
        "object.xml",
        "cm-osd-deploy-utf16.xml",
        "unknown-elements.xml",
        "run-task-sequence/parent.xml",
    ] {
        let src = fixtures().join(name);
        let y = dir.path().join("t.yaml");
        let x = dir.path().join("t.xml");
        for (from, to, out) in [(&src, "yaml", &y), (&y, "xml", &x)] {
            let (code, _, err) = tsforge(
                dir.path(),
                &[
                    "convert",
                    from.to_str().unwrap(),
                    "--to",
                    to,
                    "-o",
                    out.to_str().unwrap(),
                    "--force",
                ],
            );
            assert_eq!(code, 0, "{name}: {err}");
        }
        assert_eq!(sequence_tags(&x), sequence_tags(&src), "{name}");
    }
}
