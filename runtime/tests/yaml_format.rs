//! The YAML sequence format: examples, lossless round trips, stable output, positioned errors.

use std::path::{Path, PathBuf};
use tsforge_runtime::sequence::yaml::{parse, write};
use tsforge_runtime::sequence::{
    default_order, expr_type, normalize_order, step_type, Condition, Expression, Extra, Group,
    Node, OperatorKind, Part, Parts, Pos, Sequence, Shape, Step, StepElement, Variable,
    WmiProperty,
};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn p(text: &str) -> Sequence {
    parse(text, Path::new("t.yaml")).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn err(text: &str) -> (u32, u32, String) {
    let e = parse(text, Path::new("t.yaml")).unwrap_err();
    (e.line, e.column, e.message)
}

fn round_trip(m: &Sequence) {
    let text = write(m);
    let back = parse(&text, Path::new("w.yaml")).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(&back, m, "round trip differs; written:\n{text}");
    assert_eq!(write(&back), text, "second write differs");
}

fn attrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn var_cond(var: &str, op: &str, value: Option<&str>) -> Condition {
    let mut vars = vec![Variable::new("Operator", op)];
    if let Some(v) = value {
        vars.push(Variable::new("Value", v));
    }
    vars.push(Variable::new("Variable", var));
    Condition::Expression(Expression {
        kind: expr_type::VARIABLE.into(),
        attrs: vec![],
        vars,
        pos: Pos::default(),
    })
}

fn expr(kind: &str, vars: &[(&str, &str)]) -> Condition {
    Condition::Expression(Expression {
        kind: kind.into(),
        attrs: vec![],
        vars: vars.iter().map(|(k, v)| Variable::new(*k, *v)).collect(),
        pos: Pos::default(),
    })
}

fn op(kind: OperatorKind, children: Vec<Condition>) -> Condition {
    Condition::Operator {
        kind,
        attrs: vec![],
        children,
        pos: Pos::default(),
    }
}

#[test]
fn examples_parse_and_round_trip() {
    let mut count = 0;
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let seq = parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
        assert!(seq.step_count() > 0, "{}", path.display());
        round_trip(&seq);
        let crlf = parse(&text.replace('\n', "\r\n"), &path).unwrap();
        assert_eq!(crlf, seq, "CRLF line ends read the same");
        count += 1;
    }
    assert!(count >= 3);
}

#[test]
fn error_handler_example_has_the_seed_pattern() {
    let text = std::fs::read_to_string(examples_dir().join("error-handler.yaml")).unwrap();
    let seq = p(&text);
    assert_eq!(
        seq.global_vars,
        vec![Variable::new("SHARE", "/tmp/tsforge-share")]
    );
    let Node::Group(deploy) = &seq.items[0] else {
        panic!()
    };
    assert!(deploy
        .attrs
        .contains(&("continueOnError".into(), "true".into())));
    let Node::Group(handler) = &seq.items[1] else {
        panic!()
    };
    assert_eq!(
        handler.condition,
        vec![var_cond(
            "_SMSTSLastActionSucceeded",
            "equals",
            Some("false")
        )]
    );
    let Node::Step(winpe) = &handler.children[0] else {
        panic!()
    };
    assert_eq!(winpe.kind(), Some(step_type::RUN_COMMAND_LINE));
    assert_eq!(
        winpe.vars,
        vec![Variable::property(
            "CommandLine",
            "mkdir -p \"%SHARE%\" && cp \"%_SMSTSLogPath%/smsts.log\" \"%SHARE%/%_SMSTSClientGuid%-smsts.log\""
        )]
    );
    assert_eq!(
        winpe.condition,
        vec![var_cond("_SMSTSInWinPE", "equals", Some("true"))]
    );
}

/// A model with every feature of the format.
fn everything() -> Sequence {
    let tricky = [
        "True",
        " x ",
        "",
        "a: b",
        "#",
        "\\\\server\\share\\%_SMSTSClientGuid%-smsts.log",
        "ünïcödé ✓ 日本",
        "line1\r\nline2",
        "0",
        "3010",
        "1e3",
        "0x10",
        "no",
        "~",
        "- x",
    ];
    let mut tricky_vars: Vec<Variable> = tricky
        .iter()
        .enumerate()
        .map(|(i, t)| Variable::new(format!("V{i}"), *t))
        .collect();
    tricky_vars.push(Variable {
        name: "Secret".into(),
        attrs: attrs(&[("hidden", "true"), ("other", "x")]),
        value: "pw".into(),
        pos: Pos::default(),
    });
    tricky_vars.push(Variable {
        name: "Prop".into(),
        attrs: attrs(&[("property", "Prop")]),
        value: "p".into(),
        pos: Pos::default(),
    });
    let full_file = Condition::Expression(Expression {
        kind: expr_type::FILE.into(),
        attrs: vec![],
        vars: vec![
            Variable::new("Path", "C:\\Windows\\explorer.exe"),
            Variable::new("Version", "10.0"),
            Variable::new("VersionOperator", "greaterEqual"),
            Variable::new("DateTime", "2020-01-01T00:00:00"),
            Variable::new("DateTimeOperator", "less"),
        ],
        pos: Pos::default(),
    });
    let odd_order_file = expr(expr_type::FILE, &[("DateTime", "x"), ("Path", "C:\\a.txt")]);
    let with_attrs = Condition::Expression(Expression {
        kind: expr_type::VARIABLE.into(),
        attrs: attrs(&[("extra", "1")]),
        vars: vec![
            Variable::new("Operator", "exists"),
            Variable::new("Variable", "X"),
        ],
        pos: Pos::default(),
    });
    let registry = expr(
        expr_type::REGISTRY,
        &[
            ("KeyPath", "HKEY_LOCAL_MACHINE\\SOFTWARE\\X"),
            ("Operator", "exists"),
            ("Type", "REG_SZ"),
            ("Value", ""),
            ("Data", ""),
        ],
    );
    let conditions = vec![
        var_cond("_SMSTSLastActionSucceeded", "equals", Some("false")),
        var_cond("A", "notExists", None),
        var_cond("B", "like", Some("%x%")),
        op(
            OperatorKind::Or,
            vec![
                expr(expr_type::FILE, &[("Path", "C:\\Windows\\explorer.exe")]),
                expr(expr_type::FOLDER, &[("Path", "C:\\Windows")]),
                full_file,
                expr(
                    expr_type::FOLDER,
                    &[
                        ("Path", "C:\\"),
                        ("DateTime", "d"),
                        ("DateTimeOperator", "greater"),
                    ],
                ),
            ],
        ),
        op(
            OperatorKind::Not,
            vec![
                expr(
                    expr_type::WMI,
                    &[(
                        "Query",
                        "SELECT * FROM Win32_ComputerSystem WHERE Model LIKE \"%Virtual%\"",
                    )],
                ),
                expr(
                    expr_type::WMI,
                    &[("Namespace", "root\\cimv2"), ("Query", "SELECT 1")],
                ),
                op(OperatorKind::And, vec![registry, odd_order_file]),
            ],
        ),
        Condition::Operator {
            kind: OperatorKind::And,
            attrs: attrs(&[("x", "y")]),
            children: vec![],
            pos: Pos::default(),
        },
        with_attrs,
        // Variable condition in a non-canonical order: general form.
        expr(
            expr_type::VARIABLE,
            &[("Variable", "X"), ("Operator", "equals"), ("Value", "1")],
        ),
        expr(expr_type::VARIABLE, &[("variable", "lowercase")]),
        expr("SMS_TaskSequence_SoftwareConditionExpression", &[]),
    ];
    let run_step = Step {
        attrs: attrs(&[("type", step_type::RUN_COMMAND_LINE), ("name", "Echo")]),
        vars: vec![Variable::property("CommandLine", "echo hello")],
        ..Default::default()
    };
    let run_plus = Step {
        attrs: attrs(&[
            ("name", "Run with dir"),
            ("type", step_type::RUN_COMMAND_LINE),
            ("timeout", "900"),
        ]),
        vars: vec![
            Variable::property("CommandLine", "cmd /c dir"),
            Variable::property("WorkingDirectory", "C:\\"),
        ],
        ..Default::default()
    };
    let typed = Step {
        attrs: attrs(&[
            ("type", "SMS_TaskSequence_PartitionDiskAction"),
            ("name", "Format disk"),
            ("description", ""),
            ("disable", "false"),
            ("continueOnError", "True"),
            ("successCodeList", "0 3010"),
            ("successCodes", "0"),
            ("runIn", "WinPE"),
            ("timeout", "0900"),
            ("startIn", " "),
            ("retryCount", "-1"),
            ("runFromNet", "false"),
            ("someUnknownAttr", "x"),
            ("name2", "y"),
            ("ContinueOnError", "z"),
        ]),
        condition: conditions.clone(),
        action: Some("osddiskpart.exe".into()),
        vars: vec![
            Variable::property("DiskIndex", "0"),
            Variable {
                name: "Pw".into(),
                attrs: attrs(&[("property", "Pw"), ("hidden", "true")]),
                value: "secret".into(),
                pos: Pos::default(),
            },
            Variable {
                name: "NoProp".into(),
                attrs: vec![],
                value: "v".into(),
                pos: Pos::default(),
            },
            Variable {
                name: "HiddenFirst".into(),
                attrs: attrs(&[("hidden", "TRUE"), ("property", "Other")]),
                value: "v".into(),
                pos: Pos::default(),
            },
            Variable {
                name: "Weird".into(),
                attrs: attrs(&[("x", "1"), ("property", "Weird")]),
                value: "".into(),
                pos: Pos::default(),
            },
        ],
        extra_xml: vec!["<foo a=\"1\">\n  <bar/>\n</foo>".into(), "<x/>".into()],
        ..Default::default()
    };
    let case_type = Step {
        attrs: attrs(&[("type", "sms_tasksequence_runcommandlineaction")]),
        vars: vec![Variable::property("CommandLine", "x")],
        ..Default::default()
    };
    let short_name_type = Step {
        attrs: attrs(&[("name", "raw short"), ("type", "run"), ("timeout", "1")]),
        ..Default::default()
    };
    let unknown_first = Step {
        attrs: attrs(&[
            ("foo", "1"),
            ("type", step_type::SET_VARIABLE),
            ("name", "n"),
        ]),
        action: Some(String::new()),
        ..Default::default()
    };
    let untyped = Step {
        attrs: attrs(&[("name", "MDT untyped")]),
        action: Some("cscript.exe ZTIGather.wsf".into()),
        ..Default::default()
    };
    let duplicate_props = Step {
        attrs: attrs(&[("type", step_type::SET_DYNAMIC_VARIABLES)]),
        vars: vec![Variable::property("A", "1"), Variable::property("A", "2")],
        ..Default::default()
    };
    let inner = Group {
        attrs: attrs(&[("description", "no name, first"), ("name", "Inner")]),
        condition: vec![var_cond("X", "equals", Some("1"))],
        children: vec![
            Node::Step(untyped),
            Node::Group(Group::default()),
            Node::Group(Group {
                attrs: attrs(&[("name", "")]),
                ..Default::default()
            }),
        ],
        extra_xml: vec!["<g/>".into()],
        // The raw element first, the condition after the steps (not the default order).
        order: vec![
            Part::Extra,
            Part::Node,
            Part::Node,
            Part::Condition,
            Part::Node,
        ],
        pos: Pos::default(),
    };
    let outer = Group {
        attrs: attrs(&[
            ("name", "Install"),
            ("description", "d"),
            ("disable", "true"),
            ("continueOnError", "false"),
            ("expand", "true"),
            ("unknown", "u"),
        ]),
        condition: vec![op(OperatorKind::Or, vec![])],
        children: vec![Node::Group(inner), Node::Step(typed), Node::Step(run_plus)],
        extra_xml: vec![],
        order: vec![],
        pos: Pos::default(),
    };
    Sequence {
        attrs: attrs(&[("name", "Deploy Windows"), ("version", "3.00")]),
        global_vars: tricky_vars,
        items: vec![
            Node::Group(outer),
            Node::Step(run_step),
            Node::Step(case_type),
            Node::Step(short_name_type),
            Node::Step(unknown_first),
            Node::Step(duplicate_props),
        ],
        extra_xml: vec!["<referenceList><reference package=\"X\"/></referenceList>".into()],
        order: vec![],
        shape: Shape::Sequence,
        pos: Pos::default(),
    }
}

#[test]
fn every_feature_round_trips() {
    let m = everything();
    round_trip(&m);
    // The short forms were used where they are exact.
    let text = write(&m);
    assert!(text.contains("run: echo hello"), "{text}");
    assert!(text.contains("type: sms_tasksequence_runcommandlineaction"));
    assert!(text.contains("variable: _SMSTSLastActionSucceeded"));
    assert!(text.contains("wmi: SELECT 1"));
    assert!(text.contains("expression: SMS_TaskSequence_RegistryConditionExpression"));
    assert!(text.contains("continue_on_error: \"True\""));
    assert!(text.contains("timeout: \"0900\""));
    assert!(text.contains("disabled: true"));
}

#[test]
fn every_shape_round_trips() {
    let mut m = everything();
    m.attrs = attrs(&[("version", "3.00"), ("name", "not first")]);
    m.shape = Shape::PackageWrapper {
        properties: vec![
            ("Name".into(), "Deploy".into()),
            ("BootImageID".into(), "XYZ00001".into()),
            ("Description".into(), "".into()),
        ],
    };
    round_trip(&m);
    m.shape = Shape::PackageWrapper {
        properties: vec![("A".into(), "1".into()), ("A".into(), "2".into())],
    };
    round_trip(&m);
    m.shape = Shape::PackageWrapper { properties: vec![] };
    round_trip(&m);
    m.shape = Shape::WmiInstance {
        class_name: "SMS_TaskSequencePackage".into(),
        properties: vec![
            WmiProperty {
                name: "PackageID".into(),
                attrs: attrs(&[("TYPE", "string"), ("CLASSORIGIN", "SMS_Package")]),
                value: Some("XYZ00002".into()),
                raw: None,
            },
            WmiProperty {
                name: "Null".into(),
                attrs: vec![],
                value: None,
                raw: None,
            },
            WmiProperty {
                name: "Empty".into(),
                attrs: vec![],
                value: Some(String::new()),
                raw: Some("<VALUE.ARRAY><VALUE>a</VALUE></VALUE.ARRAY>".into()),
            },
        ],
    };
    round_trip(&m);
    m.shape = Shape::WmiInstance {
        class_name: String::new(),
        properties: vec![],
    };
    round_trip(&m);
    assert_eq!(
        p("source: {shape: sequence}\nsteps: []\n").shape,
        Shape::Sequence
    );
}

#[test]
fn empty_model_round_trips() {
    round_trip(&Sequence::default());
    assert_eq!(write(&Sequence::default()), "steps: []\n");
}

#[test]
fn yaml_text_is_stable_on_second_write() {
    let text = std::fs::read_to_string(examples_dir().join("windows-deploy.yaml")).unwrap();
    let once = write(&p(&text));
    let twice = write(&p(&once));
    assert_eq!(once, twice);
}

#[test]
fn short_forms_build_the_canonical_model() {
    let seq = p(r#"
steps:
  - name: s
    condition:
      - variable: V
        operator: exists
      - file: C:\f
        date_time_operator: less
        version: "1.0"
      - wmi: SELECT 1
        namespace: root\x
"#);
    let Node::Step(st) = &seq.items[0] else {
        panic!()
    };
    assert!(st.attrs == attrs(&[("name", "s")]));
    assert_eq!(st.condition[0], var_cond("V", "exists", None));
    assert_eq!(
        st.condition[1],
        expr(
            expr_type::FILE,
            &[
                ("Path", "C:\\f"),
                ("Version", "1.0"),
                ("DateTimeOperator", "less")
            ]
        )
    );
    assert_eq!(
        st.condition[2],
        expr(
            expr_type::WMI,
            &[("Namespace", "root\\x"), ("Query", "SELECT 1")]
        )
    );
}

#[test]
fn attribute_order_follows_the_document() {
    let seq = p("steps:\n  - timeout: 5\n    attributes: {foo: bar}\n    name: n\n    run: x\n");
    let Node::Step(st) = &seq.items[0] else {
        panic!()
    };
    assert_eq!(
        st.attrs,
        attrs(&[
            ("timeout", "5"),
            ("foo", "bar"),
            ("name", "n"),
            ("type", step_type::RUN_COMMAND_LINE)
        ])
    );
}

#[test]
fn syntax_error_is_positioned() {
    let (line, col, msg) = err("steps:\n  - name: a\n    run: \"unterminated\n");
    assert!(msg.starts_with("YAML syntax error"), "{msg}");
    assert!(line >= 3, "{line}:{col} {msg}");
    let (line, col, msg) = err("steps:\n  - name: a\n   bad: [1\n");
    assert!(msg.starts_with("YAML syntax error"), "{msg}");
    assert!(line >= 3 && col >= 1, "{line}:{col} {msg}");
}

#[test]
fn unknown_key_is_positioned_with_suggestion() {
    let (line, col, msg) = err("steps:\n  - name: a\n    continue_on_eror: true\n");
    assert_eq!((line, col), (3, 5));
    assert_eq!(
        msg,
        "unknown key `continue_on_eror` in a step (did you mean `continue_on_error`?)"
    );
    let (line, col, msg) = err("steps: []\nvariabels: {}\n");
    assert_eq!((line, col), (2, 1));
    assert!(msg.contains("did you mean `variables`"), "{msg}");
    let (_, _, msg) = err("steps:\n  - group: g\n    continueOnError: true\n");
    assert!(msg.contains("did you mean `continue_on_error`"), "{msg}");
    let (line, col, msg) = err("steps:\n  - name: a\n    condition:\n      - varible: X\n");
    assert_eq!((line, col), (4, 9));
    assert!(msg.contains("did you mean `variable`"), "{msg}");
}

#[test]
fn wrong_kind_is_positioned() {
    let (line, col, msg) = err("steps:\n  - name: [a, b]\n");
    assert_eq!((line, col), (2, 11));
    assert_eq!(msg, "expected a string for `name`, found a list");
    let (line, col, msg) = err("steps:\n  - name: a\n    properties:\n      X:\n        - 1\n");
    assert_eq!((line, col), (5, 9));
    assert!(msg.contains("found a list"), "{msg}");
    let (line, col, msg) = err("steps: oops\n");
    assert_eq!((line, col), (1, 8));
    assert_eq!(msg, "expected a list for `steps`, found a string");
    let (line, col, msg) = err("steps:\n  - just a string\n");
    assert_eq!((line, col), (2, 5));
    assert!(msg.contains("expected a step or a group"), "{msg}");
    let (line, col, msg) = err("steps:\n  - name: a\n    condition:\n      variable: {a: b}\n");
    assert_eq!((line, col), (4, 17));
    assert!(msg.contains("found a mapping"), "{msg}");
}

#[test]
fn steps_under_a_step_is_an_error() {
    let (line, col, msg) = err("steps:\n  - name: a\n    steps:\n      - name: b\n");
    assert_eq!((line, col), (3, 5));
    assert!(msg.contains("only allowed in a group"), "{msg}");
}

#[test]
fn condition_forms_are_checked() {
    let (line, col, msg) = err("steps:\n  - name: a\n    condition:\n      - value: x\n");
    assert_eq!((line, col), (4, 9));
    assert!(msg.contains("needs one of"), "{msg}");
    let (line, col, msg) =
        err("steps:\n  - name: a\n    condition:\n      - variable: x\n        file: y\n");
    assert_eq!((line, col), (5, 9));
    assert!(msg.contains("both `variable` and `file`"), "{msg}");
    let (line, col, msg) =
        err("steps:\n  - name: a\n    condition:\n      - file: x\n        value: y\n");
    assert_eq!((line, col), (5, 9));
    assert!(msg.contains("does not belong"), "{msg}");
    // Unknown operator names are the validator's business, not the reader's.
    let seq = p("steps:\n  - name: a\n    condition: {variable: X, operator: bogus, value: 1}\n");
    assert_eq!(
        seq.items[0].condition()[0],
        var_cond("X", "bogus", Some("1"))
    );
}

#[test]
fn other_errors() {
    let (line, col, msg) = err("");
    assert_eq!((line, col), (1, 1));
    assert_eq!(msg, "empty file: expected a mapping with `steps:`");
    let (_, _, msg) = err("just text\n");
    assert!(msg.contains("expected a mapping with `steps:`"), "{msg}");
    let (line, col, msg) = err("steps:\n  - name: a\n    name: b\n");
    assert_eq!((line, col), (3, 5));
    assert!(msg.contains("duplicate key"), "{msg}");
    let (line, col, msg) = err("steps:\n  - name: a\n    attributes: {name: b}\n");
    assert_eq!((line, col), (3, 18));
    assert!(msg.contains("given twice"), "{msg}");
    let (_, _, msg) = err("steps:\n  - run: a\n    type: run\n");
    assert!(msg.contains("`type` is given twice"), "{msg}");
}

// ------------------------------------------------------------------------------------------------
// Round trips over generated models (a small deterministic generator; no extra dependencies).

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    fn string(&mut self) -> String {
        const PIECES: &[&str] = &[
            "",
            " ",
            "a",
            "Z",
            "true",
            "False",
            "no",
            "~",
            "null",
            "0",
            "12",
            "-3",
            "1e3",
            "0x1",
            ".5",
            ":",
            ": ",
            "#",
            " #",
            "-",
            "- ",
            "?",
            "&",
            "*",
            "!",
            "|",
            ">",
            "'",
            "\"",
            "%",
            "@",
            "`",
            "{",
            "}",
            "[",
            "]",
            ",",
            "\t",
            "\n",
            "\r\n",
            "\\",
            "é",
            "日本",
            "✓",
            "\u{0}",
            "\u{7}",
            "\u{85}",
            "\u{feff}",
            "\u{2028}",
            "...",
            "---",
            "<<",
            "=",
            "SMS_TaskSequence_RunCommandLineAction",
            "run",
            "CommandLine",
            "property",
            "hidden",
            "name",
            "type",
            "equals",
            "Path",
            "Operator",
            "Value",
            "Variable",
        ];
        let n = self.below(4);
        (0..n).map(|_| self.pick(PIECES)).collect()
    }
    fn attrs(&mut self, known: &[&str]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for _ in 0..self.below(5) {
            let name = if self.chance(60) {
                self.pick(known).to_string()
            } else {
                self.string()
            };
            if out.iter().any(|(k, _)| *k == name) {
                continue; // XML cannot repeat an attribute
            }
            let value = match self.below(4) {
                0 => self
                    .pick(&["true", "false", "0", "3010", "900"])
                    .to_string(),
                1 => self
                    .pick(&[step_type::RUN_COMMAND_LINE, "run", "Run", "set-variable"])
                    .to_string(),
                _ => self.string(),
            };
            out.push((name, value));
        }
        out
    }
    fn var(&mut self, property_like: bool) -> Variable {
        let name = if self.chance(50) {
            self.pick(&["CommandLine", "Path", "Operator", "Value", "Variable", "X"])
                .to_string()
        } else {
            self.string()
        };
        let attrs = if property_like && self.chance(60) {
            vec![("property".to_string(), name.clone())]
        } else {
            self.attrs(&["property", "hidden", "x"])
        };
        Variable {
            name,
            attrs,
            value: self.string(),
            pos: Pos::default(),
        }
    }
    fn condition(&mut self, depth: usize) -> Condition {
        if depth < 3 && self.chance(30) {
            let kind = [OperatorKind::And, OperatorKind::Or, OperatorKind::Not][self.below(3)];
            let children = (0..self.below(3))
                .map(|_| self.condition(depth + 1))
                .collect();
            return Condition::Operator {
                kind,
                attrs: if self.chance(20) {
                    self.attrs(&["x"])
                } else {
                    vec![]
                },
                children,
                pos: Pos::default(),
            };
        }
        let kind = if self.chance(80) {
            self.pick(expr_type::ALL).to_string()
        } else {
            self.string()
        };
        let canonical: &[&str] = match kind.as_str() {
            expr_type::VARIABLE => &["Operator", "Value", "Variable"],
            expr_type::FILE => &[
                "Path",
                "Version",
                "VersionOperator",
                "DateTime",
                "DateTimeOperator",
            ],
            expr_type::FOLDER => &["Path", "DateTime", "DateTimeOperator"],
            expr_type::WMI => &["Namespace", "Query"],
            _ => &["A", "B"],
        };
        let vars = if self.chance(70) {
            let mut vars = Vec::new();
            for n in canonical {
                if self.chance(70) {
                    vars.push(Variable::new(*n, self.string()));
                }
            }
            vars
        } else {
            (0..self.below(4)).map(|_| self.var(false)).collect()
        };
        Condition::Expression(Expression {
            kind,
            attrs: if self.chance(20) {
                self.attrs(&["x"])
            } else {
                vec![]
            },
            vars,
            pos: Pos::default(),
        })
    }
    fn conditions(&mut self) -> Vec<Condition> {
        (0..self.below(3)).map(|_| self.condition(0)).collect()
    }
    /// A valid order of the children `parts` describes: the default, or a shuffle of it.
    fn order(&mut self, parts: &Parts) -> Vec<Part> {
        let mut order = default_order(parts);
        if self.chance(40) {
            for i in (1..order.len()).rev() {
                let j = self.below(i + 1);
                order.swap(i, j);
            }
        }
        normalize_order(order, parts)
    }
    fn extra(&mut self) -> Vec<Extra> {
        (0..self.below(2)).map(|_| self.string().into()).collect()
    }
    fn node(&mut self, depth: usize) -> Node {
        let step_keys: Vec<&str> = tsforge_runtime::sequence::STEP_ATTRS
            .iter()
            .map(|(x, _)| *x)
            .collect();
        let group_keys: Vec<&str> = tsforge_runtime::sequence::GROUP_ATTRS
            .iter()
            .map(|(x, _)| *x)
            .collect();
        if depth < 3 && self.chance(30) {
            let mut g = Group {
                attrs: self.attrs(&group_keys),
                condition: self.conditions(),
                children: (0..self.below(4)).map(|_| self.node(depth + 1)).collect(),
                extra_xml: self.extra(),
                order: vec![],
                pos: Pos::default(),
            };
            g.order = self.order(&g.parts());
            Node::Group(g)
        } else {
            let mut attrs = self.attrs(&step_keys);
            let mut vars: Vec<Variable> = (0..self.below(4)).map(|_| self.var(true)).collect();
            if self.chance(30) {
                attrs.retain(|(k, _)| k != "type");
                attrs.insert(
                    self.below(attrs.len() + 1),
                    ("type".into(), step_type::RUN_COMMAND_LINE.into()),
                );
                vars.insert(0, Variable::property("CommandLine", self.string()));
            }
            let mut st = Step {
                element: if self.chance(20) {
                    StepElement::SubTaskSequence
                } else {
                    StepElement::Step
                },
                attrs,
                condition: self.conditions(),
                action: if self.chance(50) {
                    Some(self.string())
                } else {
                    None
                },
                vars,
                extra_xml: self.extra(),
                order: vec![],
                pos: Pos::default(),
            };
            st.order = self.order(&st.parts());
            Node::Step(st)
        }
    }
    fn sequence(&mut self) -> Sequence {
        let shape = match self.below(3) {
            0 => Shape::Sequence,
            1 => Shape::PackageWrapper {
                properties: (0..self.below(3))
                    .map(|_| (self.string(), self.string()))
                    .collect(),
            },
            _ => Shape::WmiInstance {
                class_name: self.string(),
                properties: (0..self.below(3))
                    .map(|_| WmiProperty {
                        name: self.string(),
                        attrs: self.attrs(&["TYPE"]),
                        value: if self.chance(70) {
                            Some(self.string())
                        } else {
                            None
                        },
                        raw: if self.chance(30) {
                            Some(self.string())
                        } else {
                            None
                        },
                    })
                    .collect(),
            },
        };
        let mut seq = Sequence {
            attrs: self.attrs(&["name", "version"]),
            global_vars: (0..self.below(4)).map(|_| self.var(false)).collect(),
            items: (0..self.below(5)).map(|_| self.node(0)).collect(),
            extra_xml: self.extra(),
            order: vec![],
            shape,
            pos: Pos::default(),
        };
        seq.order = self.order(&seq.parts());
        seq
    }
}

#[test]
fn generated_models_round_trip() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for _ in 0..1500 {
        let m = rng.sequence();
        round_trip(&m);
    }
}

#[test]
fn documentation_examples_parse() {
    let doc = std::fs::read_to_string(examples_dir().join("../docs/sequence-format.md")).unwrap();
    let mut count = 0;
    for block in doc.split("```yaml\n").skip(1) {
        let block = block.split("```").next().unwrap();
        // Complete documents start at the top level; fragments (list items, `source:` alone) are
        // wrapped in `steps: []` to check that they are valid YAML of the right shape.
        if block.starts_with("name:") || block.starts_with("source:") {
            let text = if block.starts_with("source:") {
                format!("{block}steps: []\n")
            } else {
                block.to_string()
            };
            let seq = parse(&text, Path::new("doc.yaml")).unwrap_or_else(|e| panic!("{e}\n{text}"));
            round_trip(&seq);
            count += 1;
        }
    }
    assert!(count >= 6, "{count}");
}
