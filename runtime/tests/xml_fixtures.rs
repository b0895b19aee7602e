//! The XML reader and writer against the fixtures in `tests/fixtures/sequences/`.

use std::path::{Path, PathBuf};
use tsforge_runtime::sequence::{
    decode_text, expr_type, load, parse_str, step_type, xml, Condition, Format, Node, OperatorKind,
    Sequence, Shape, Step,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/sequences")
        .join(name)
}

fn load_xml(name: &str) -> Sequence {
    let (seq, format) = load(&fixture(name)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(format, Format::Xml);
    seq
}

/// Write, read back, compare; and the written text keeps the shape.
fn round_trip(seq: &Sequence) -> String {
    let text = xml::write(seq);
    let back = xml::parse(&text, Path::new("written.xml"))
        .unwrap_or_else(|e| panic!("written XML does not parse: {e}\n{text}"));
    assert_eq!(&back, seq, "round trip changed the model:\n{text}");
    // Writing again gives the same text.
    assert_eq!(xml::write(&back), text);
    text
}

fn steps(seq: &Sequence) -> Vec<&Step> {
    let mut out = Vec::new();
    seq.walk(&mut |n, _| {
        if let Node::Step(s) = n {
            out.push(s);
        }
    });
    out
}

fn find_step<'a>(seq: &'a Sequence, name: &str) -> &'a Step {
    steps(seq)
        .into_iter()
        .find(|s| s.name() == name)
        .unwrap_or_else(|| panic!("no step {name:?}"))
}

fn group_names(seq: &Sequence) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    seq.walk(&mut |n, depth| {
        if let Node::Group(g) = n {
            out.push((depth, g.name().to_string()));
        }
    });
    out
}

fn collect_expr_kinds(conds: &[Condition], out: &mut Vec<String>) {
    for c in conds {
        match c {
            Condition::Operator { children, .. } => collect_expr_kinds(children, out),
            Condition::Expression(e) => out.push(e.kind.clone()),
        }
    }
}

#[test]
fn cm_osd_deploy_parses_with_expected_structure() {
    let seq = load_xml("cm-osd-deploy.xml");
    assert_eq!(seq.shape, Shape::Sequence);
    assert_eq!(
        seq.attrs,
        vec![
            ("version".to_string(), "3.00".to_string()),
            ("dependentProgram".to_string(), String::new())
        ]
    );
    assert_eq!((seq.pos.line, seq.pos.column), (3, 1));
    assert_eq!(seq.items.len(), 2);
    assert_eq!(seq.step_count(), 24);
    assert_eq!(seq.extra_xml.len(), 1);
    assert!(seq.extra_xml[0].starts_with("<referenceList>\n    <reference package=\"LAB00002\" />"));
    assert!(!seq.extra_xml[0].contains('\r'), "line ends are normalised");

    // Global variables, including a hidden password with entities, a value with spaces kept
    // and an empty one.
    assert_eq!(seq.global_vars.len(), 9);
    let pw = seq
        .global_vars
        .iter()
        .find(|v| v.name == "OSDJoinPassword")
        .unwrap();
    assert!(pw.hidden());
    assert_eq!(pw.value, "P@ss&w0rd<2019>");
    assert_eq!((pw.pos.line, pw.pos.column), (8, 5));
    let org = seq
        .global_vars
        .iter()
        .find(|v| v.name == "OSDRegisteredOrgName")
        .unwrap();
    assert_eq!(org.value, " Contoso Ltd. ");
    assert_eq!(seq.global_vars[8].value, "");
    assert_eq!(
        seq.global_vars[8].attrs,
        vec![("property".to_string(), "PreserveDriveLetter".to_string())]
    );

    // Groups nest three levels and more, with their attributes in order.
    let groups = group_names(&seq);
    assert!(
        groups.contains(&(4, "Latitude 7490".to_string())),
        "{groups:?}"
    );
    let Node::Group(top) = &seq.items[0] else {
        panic!("first item is a group")
    };
    assert_eq!(top.name(), "Deploy Windows 10");
    assert!(seq.items[0].continue_on_error());
    assert_eq!(
        top.attrs
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>(),
        ["name", "description", "continueOnError", "expand"]
    );

    // Step types.
    let kinds: Vec<&str> = steps(&seq).iter().filter_map(|s| s.kind()).collect();
    for t in [
        "SMS_TaskSequence_PartitionDiskAction",
        "SMS_TaskSequence_ApplyOperatingSystemAction",
        step_type::RUN_COMMAND_LINE,
        step_type::SET_VARIABLE,
        step_type::SET_DYNAMIC_VARIABLES,
        step_type::RUN_POWERSHELL,
        step_type::REBOOT,
        step_type::SUB_SEQUENCE,
    ] {
        assert!(kinds.contains(&t), "missing step type {t}");
    }

    // Every condition expression type appears.
    let mut exprs = Vec::new();
    seq.walk(&mut |n, _| collect_expr_kinds(n.condition(), &mut exprs));
    for t in expr_type::ALL {
        assert!(exprs.iter().any(|e| e == t), "missing expression type {t}");
    }

    // Partition step properties; disabled BIOS variant.
    let part = find_step(&seq, "Partition Disk 0 - UEFI");
    assert_eq!(part.property("DiskIndex"), Some("0"));
    assert_eq!(part.property("Partitions0SizeUnits"), Some("%"));
    assert_eq!(part.property("Partitions0VolumeVariable"), Some("OSDisk"));
    assert_eq!(part.property("Partitions1VolumeVariable"), Some(""));
    let bios = seq
        .items
        .iter()
        .flat_map(|n| match n {
            Node::Group(g) => g.children.iter().collect::<Vec<_>>(),
            _ => vec![],
        })
        .flat_map(|n| match n {
            Node::Group(g) => g.children.iter().collect::<Vec<_>>(),
            _ => vec![],
        })
        .find(|n| n.name() == "Partition Disk 0 - BIOS")
        .unwrap();
    assert!(bios.disabled());

    // Run Command Line attributes and properties.
    let rec = find_step(&seq, "Record Source Computer");
    assert_eq!(rec.timeout_secs(), Some(300));
    assert_eq!(rec.retry_count(), 2);
    assert_eq!(rec.start_in(), Some("%SystemRoot%\\System32"));
    assert_eq!(rec.success_codes(), vec![0]);
    assert_eq!(
        rec.property("OutputVariableName"),
        Some("SourceComputerName")
    );
    assert_eq!(
        rec.property("SMSTSRunCommandLineOutputVariableName"),
        Some("SourceComputerName")
    );

    // Entities and CDATA in one action.
    let stamp = find_step(&seq, "Stamp deployment info");
    assert_eq!(
        stamp.action.as_deref(),
        Some(
            "cmd.exe /c reg add \"HKLM\\SOFTWARE\\Contoso\\OSD\" /v Stamp /d \
             \"%_SMSTSPackageName% & %_SMSTSAdvertID%\" /f > \"%_SMSTSLogPath%\\stamp.log\" \
             && echo <stamped> & exit /b 0"
        )
    );
    assert_eq!(stamp.success_codes(), vec![0, 3010, 1641]);

    // A multi-line property keeps its line breaks (LF, the file is CRLF).
    let ps = find_step(&seq, "Remove built-in apps");
    let script = ps.property("SourceScript").unwrap();
    assert_eq!(script.lines().count(), 5);
    assert!(!script.contains('\r'));
    assert!(script.contains("-notcontains $_.DisplayName -and"));
    // The unknown attribute is kept.
    assert_eq!(
        ps.attrs.last(),
        Some(&("author".to_string(), "jdoe".to_string()))
    );
    // Nested and/not with registry and software expressions.
    let [Condition::Operator {
        kind: OperatorKind::And,
        children,
        ..
    }] = ps.condition.as_slice()
    else {
        panic!("expected one and operator: {:?}", ps.condition)
    };
    assert!(
        matches!(&children[0], Condition::Expression(e) if e.kind == expr_type::REGISTRY
        && e.get("KeyPath") == Some("HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion"))
    );
    let Condition::Operator {
        kind: OperatorKind::Not,
        children: not_children,
        pos,
        ..
    } = &children[1]
    else {
        panic!("expected not")
    };
    assert_eq!((pos.line, pos.column), (293, 13));
    assert!(
        matches!(&not_children[0], Condition::Expression(e) if e.kind == expr_type::SOFTWARE
        && e.get("ProductCode") == Some("{90160000-008C-0000-1000-0000000FF1CE}"))
    );

    // The error handler pattern.
    let Node::Group(handler) = &seq.items[1] else {
        panic!("second item is the error handler group")
    };
    assert_eq!(handler.name(), "Error Handler");
    let [Condition::Expression(e)] = handler.condition.as_slice() else {
        panic!("one expression")
    };
    assert_eq!(e.get("Variable"), Some("_SMSTSLastActionSucceeded"));
    assert_eq!(e.get("Operator"), Some("equals"));
    assert_eq!(e.get("Value"), Some("false"));
    assert_eq!(handler.children.len(), 2);
    let in_pe: Vec<&str> = handler
        .children
        .iter()
        .map(|n| match n.condition() {
            [Condition::Expression(e)] => e.get("Value").unwrap(),
            other => panic!("unexpected condition {other:?}"),
        })
        .collect();
    assert_eq!(in_pe, ["true", "false"]);
    for n in &handler.children {
        let Node::Step(s) = n else { panic!() };
        assert!(s
            .action
            .as_deref()
            .unwrap()
            .ends_with("\"\\\\server\\share\\%_SMSTSClientGuid%-smsts.log\""));
        assert!(n.continue_on_error());
    }
}

#[test]
fn cm_osd_deploy_round_trips() {
    let seq = load_xml("cm-osd-deploy.xml");
    let text = round_trip(&seq);
    assert!(
        text.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<sequence version=\"3.00\"")
    );
    assert!(text.contains("\n  <globalVarList>\n    <variable name=\"OSDDomainName\""));
}

#[test]
fn mdt_client_ts_parses() {
    let seq = load_xml("mdt-client-ts.xml");
    assert_eq!(seq.shape, Shape::Sequence);
    assert_eq!(
        seq.attrs
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>(),
        ["version", "name", "description"]
    );
    assert_eq!(seq.global_vars.len(), 8);
    assert_eq!(
        seq.global_vars[7].value,
        "Windows 10 Enterprise in W10-22H2 install.wim"
    );
    let names: Vec<String> = group_names(&seq)
        .into_iter()
        .filter(|(d, _)| *d == 0)
        .map(|(_, n)| n)
        .collect();
    assert_eq!(
        names,
        [
            "Initialization",
            "Validation",
            "State Capture",
            "Preinstall",
            "Install",
            "Postinstall",
            "State Restore"
        ]
    );
    assert_eq!(seq.step_count(), 32);
    let all = steps(&seq);
    let untyped: Vec<&&Step> = all.iter().filter(|s| s.kind().is_none()).collect();
    assert_eq!(untyped.len(), 14);
    let validate = find_step(&seq, "Check BIOS");
    assert_eq!(validate.kind(), None);
    assert_eq!(
        validate.action.as_deref(),
        Some("cscript.exe \"%SCRIPTROOT%\\ZTIBIOSCheck.wsf\"")
    );
    for t in [
        "BDD_Gather",
        "BDD_Validate",
        "BDD_InstallOS",
        "BDD_InstallApplication",
        "BDD_InstallRoles",
        "BDD_InjectDrivers",
    ] {
        assert!(all.iter().any(|s| s.kind() == Some(t)), "missing {t}");
    }
    // Both success code attributes are kept, in order.
    let bl = find_step(&seq, "Backup BitLocker recovery key");
    assert_eq!(
        bl.attrs
            .iter()
            .filter(|(k, _)| k.starts_with("successCode"))
            .cloned()
            .collect::<Vec<_>>(),
        vec![
            ("successCodeList".to_string(), "0 3010".to_string()),
            ("successCodes".to_string(), "0 1 3010".to_string())
        ]
    );
    assert_eq!(bl.success_codes(), vec![0, 3010, 1]);
    assert_eq!(bl.start_in(), Some("%SCRIPTROOT%"));
    // MDT writes <defaultVarList> before <action>; a condition after the action works too.
    let diskpart = find_step(&seq, "Format and Partition Disk (UEFI)");
    assert_eq!(diskpart.vars.len(), 12);
    assert_eq!(diskpart.condition.len(), 1);
    assert_eq!(
        diskpart.action.as_deref(),
        Some("cscript.exe \"%SCRIPTROOT%\\ZTIDiskpart.wsf\"")
    );
    // MDT groups carry an empty <action>, kept as raw XML.
    let Node::Group(init) = &seq.items[0] else {
        panic!()
    };
    assert_eq!(init.extra_xml, ["<action></action>"]);
    // Non-ASCII and entities.
    let theme = find_step(&seq, "Set wallpaper (Café & Büro theme)");
    assert!(theme.action.as_deref().unwrap().contains("'Café & Büro'"));
    round_trip(&seq);
}

#[test]
fn package_wrapper_parses_and_round_trips() {
    let seq = load_xml("cm-package-wrapper.xml");
    let Shape::PackageWrapper { properties } = &seq.shape else {
        panic!("shape {:?}", seq.shape)
    };
    let keys: Vec<&str> = properties.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "@xmlns:xsi",
            "@xmlns:xsd",
            "BootImageID",
            "Category",
            "DependentProgram",
            "Description",
            "Duration",
            "Name",
            "ProgramFlags",
            "SourceDate",
            "SupportedOperatingSystems",
            "IconSize"
        ]
    );
    assert_eq!(properties[3], ("Category".to_string(), String::new()));
    assert_eq!(
        properties[5].1,
        "MDT-integrated client template: gather, apply image, applications & capture of logs"
    );
    // Positions point into the file.
    assert_eq!((seq.pos.line, seq.pos.column), (11, 5));
    assert_eq!(seq.step_count(), 9);
    assert_eq!(seq.extra_xml.len(), 1);
    let text = round_trip(&seq);
    assert!(text.contains("<SmsTaskSequencePackage xmlns:xsi="));
    assert!(text.contains("  <ProgramFlags>152084496</ProgramFlags>\n  <SequenceData>\n    <sequence version=\"3.00\""));
    assert!(text.contains("  </SequenceData>\n  <SourceDate>"));
}

#[test]
fn object_xml_parses_and_round_trips() {
    let seq = load_xml("object.xml");
    let Shape::WmiInstance {
        class_name,
        properties,
    } = &seq.shape
    else {
        panic!("shape {:?}", seq.shape)
    };
    assert_eq!(class_name, "SMS_TaskSequencePackage");
    assert_eq!(properties.len(), 17);
    assert!(!properties.iter().any(|p| p.name == "Sequence"));
    let get = |n: &str| properties.iter().find(|p| p.name == n).unwrap();
    assert_eq!(get("PackageID").value.as_deref(), Some("LAB00021"));
    assert_eq!(get("Category").value.as_deref(), Some("Build & Capture"));
    assert_eq!(get("AlternateContentProviders").value.as_deref(), Some(""));
    assert_eq!(get("CustomResultsColumns").value, None);
    assert_eq!(get("CustomResultsColumns").raw, None);
    assert_eq!(
        get("Duration").attrs,
        vec![("TYPE".to_string(), "uint32".to_string())]
    );
    assert_eq!(
        get("References").raw.as_deref(),
        Some("<VALUE.ARRAY><VALUE>LAB00002</VALUE><VALUE>LAB00019</VALUE></VALUE.ARRAY>")
    );
    assert_eq!(
        get("SupportedOperatingSystems").raw.as_deref(),
        Some("<PROPERTY.ARRAY NAME=\"SupportedOperatingSystems\" TYPE=\"object\"><VALUE.ARRAY></VALUE.ARRAY></PROPERTY.ARRAY>")
    );
    // The inner sequence: positions are positions in object.xml.
    assert_eq!((seq.pos.line, seq.pos.column), (15, 59));
    assert_eq!(seq.global_vars.len(), 3);
    assert!(seq.global_vars[2].hidden());
    assert_eq!(seq.global_vars[2].value, "C@pture&2019");
    assert_eq!(
        (seq.global_vars[0].pos.line, seq.global_vars[0].pos.column),
        (17, 5)
    );
    assert_eq!(seq.step_count(), 7);
    let cap = find_step(&seq, "Capture the Reference Machine");
    assert_eq!(
        cap.property("ImageDescription"),
        Some("Built by LAB00021 <automated>")
    );
    let text = round_trip(&seq);
    assert!(text.contains(
        "  <PROPERTY NAME=\"Sequence\" TYPE=\"string\"><VALUE><![CDATA[<sequence version=\"3.00\">\n  <globalVarList>"
    ));
    assert!(text.contains("</sequence>]]></VALUE></PROPERTY>\n  <PROPERTY NAME=\"SequenceFlags\""));
}

#[test]
fn utf16_fixture_loads() {
    let seq = load_xml("cm-osd-deploy-utf16.xml");
    assert_eq!(seq.step_count(), 2);
    assert_eq!(seq.global_vars[1].value, "Contoso Straße GmbH");
    let Node::Group(g) = &seq.items[0] else {
        panic!()
    };
    assert_eq!(g.attrs[1].1, "UTF-16 export: Größe, café, 日本語");
    assert_eq!(
        find_step(&seq, "Say hello").action.as_deref(),
        Some("cmd.exe /c echo Grüße aus Köln")
    );
    // Same model as the UTF-8 source it was generated from.
    let src = std::fs::read_to_string(fixture("cm-osd-deploy-utf16.src.xml")).unwrap();
    assert_eq!(xml::parse(&src, Path::new("src.xml")).unwrap(), seq);
    round_trip(&seq);
}

#[test]
fn bad_fixtures_report_exact_positions() {
    let cases: &[(&str, u32, u32, &str)] = &[
        (
            "unclosed-group.xml",
            12,
            1,
            "expected </group> to close <group name=\"Install Operating System\"> opened at 3:3, found </sequence>",
        ),
        (
            "mismatched-end-tag.xml",
            6,
            5,
            "expected </step> to close <step name=\"Stamp\"> opened at 4:5, found </group>",
        ),
        ("bad-entity.xml", 5, 39, "bad entity &nbsp;"),
        ("unknown-root.xml", 3, 1, "unknown root element <unattend>"),
        (
            "object-bad-sequence.xml",
            14,
            7,
            "expected </defaultVarList> to close <defaultVarList> opened at 12:7, found </defaultVarlist>",
        ),
        (
            "object-escaped-bad-sequence.xml",
            7,
            24,
            "unknown operator type \"xor\"",
        ),
        ("unknown-operator.xml", 5, 7, "unknown operator type \"xor\""),
        ("variable-without-name.xml", 5, 5, "<variable> has no name attribute"),
        (
            "step-in-condition.xml",
            5,
            7,
            "<step> is not allowed inside <condition>",
        ),
        ("empty.xml", 1, 1, "empty file"),
        ("garbage-after-root.xml", 5, 1, "unexpected second root element"),
    ];
    for (name, line, column, msg) in cases {
        let path = fixture(&format!("bad/{name}"));
        // Read as XML whatever the content (an empty file would otherwise be taken for YAML).
        let text = decode_text(&std::fs::read(&path).unwrap(), &path).unwrap();
        let err = parse_str(&text, &path, Format::Xml).expect_err(name);
        assert_eq!(
            (err.line, err.column),
            (*line, *column),
            "{name}: wrong position in {err}"
        );
        assert!(
            err.message.contains(msg),
            "{name}: message {:?}",
            err.message
        );
        assert!(err
            .to_string()
            .starts_with(&format!("{}:{line}:{column}: ", path.display())));
    }
    // Every bad fixture is covered above and listed in INDEX.
    let index = std::fs::read_to_string(fixture("bad/INDEX")).unwrap();
    let mut files: Vec<String> = std::fs::read_dir(fixture("bad"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "INDEX")
        .collect();
    files.sort();
    for f in &files {
        assert!(cases.iter().any(|(n, ..)| n == f), "{f} has no test case");
        assert!(index.contains(f.as_str()), "{f} is not listed in bad/INDEX");
    }
}

#[test]
fn index_lists_every_fixture() {
    let index = std::fs::read_to_string(fixture("INDEX")).unwrap();
    for e in std::fs::read_dir(fixture("")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name != "INDEX" {
            assert!(index.contains(&name), "{name} is not listed in INDEX");
        }
    }
}

#[test]
fn fixtures_never_panic_when_truncated() {
    // A cheap stand-in for the fuzz target: every prefix of a fixture is either a valid
    // document or a positioned error.
    for name in ["object.xml", "cm-package-wrapper.xml"] {
        let text = std::fs::read_to_string(fixture(name)).unwrap();
        let mut cut = 0;
        while cut < text.len() {
            if text.is_char_boundary(cut) {
                if let Err(e) = xml::parse(&text[..cut], Path::new(name)) {
                    assert!(e.line >= 1 && e.column >= 1, "{e}");
                }
            }
            cut += 7;
        }
    }
}
