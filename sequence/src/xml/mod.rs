//! ConfigMgr 2007 / MDT task sequence XML: reader and writer.
//!
//! Three file shapes are read, chosen from the root element:
//!
//! * `<sequence>` as the root (MDT `ts.xml`, templates, our own output) → [`Shape::Sequence`];
//! * `<SmsTaskSequencePackage>` with the sequence under `<SequenceData>` (MDT's ConfigMgr
//!   templates) → [`Shape::PackageWrapper`]; the other child elements are kept as
//!   (name, text) pairs, a child holding markup keeps that markup as raw XML text, and
//!   attributes of the wrapper element itself (`xmlns:xsi`, …) are kept as pairs whose name is
//!   the attribute name prefixed with `@` (element names cannot start with `@`);
//! * ConfigMgr's *Export Task Sequence* `object.xml`, a WMI `<INSTANCE>` (found anywhere in the
//!   document) whose `Sequence` property holds the sequence XML as text → [`Shape::WmiInstance`].
//!   The sequence text is parsed a second time; positions in errors and in the model still point
//!   into the outer file (exactly for a CDATA value, entity by entity for an escaped value).
//!   `<PROPERTY>`s with a single plain `<VALUE>` keep its text; any other content of a
//!   `<PROPERTY>` (`<VALUE.ARRAY>`, qualifiers, …) is kept as raw XML in `raw`. Other children of
//!   the instance (`<PROPERTY.ARRAY>`, `<PROPERTY.REFERENCE>`, `<QUALIFIER>`, …) are kept as a
//!   whole element in `raw` (with `name`/`attrs` filled from their attributes for
//!   `PROPERTY.*`, empty otherwise); attributes of `<INSTANCE>` other than `CLASSNAME` become
//!   properties named `@attribute` with the attribute value as `value`.
//!
//! Text is kept exactly: variable values and `<action>` text are not trimmed (a whitespace-only
//! value is a value); only whitespace between the child elements of containers is ignored.
//!
//! The code is in three layers, each using only those before it: `reader` (XML text → an element
//! tree with byte ranges and positions; general XML, nothing of ConfigMgr), `configmgr` (element
//! tree → model: the shapes, elements and attributes above) and `writer` (model → XML, in the
//! shape it was read from, so that `parse(&write(&seq)) == seq`). This module holds the public
//! API: [`parse`], [`write()`] and [`MAX_DEPTH`].
//!
//! [`Shape::Sequence`]: crate::model::Shape::Sequence
//! [`Shape::PackageWrapper`]: crate::model::Shape::PackageWrapper
//! [`Shape::WmiInstance`]: crate::model::Shape::WmiInstance

mod configmgr;
mod reader;
mod writer;

pub use reader::MAX_DEPTH;
pub use writer::write;

use crate::error::ParseError;
use crate::model::Sequence;
use reader::{Ctx, Loc, Parser};
use std::path::Path;

/// Parse ConfigMgr/MDT task sequence XML (any of the three shapes). `file` names the input in
/// errors, which carry the 1-based line and column (in characters) of the problem.
pub fn parse(text: &str, file: &Path) -> Result<Sequence, ParseError> {
    let ctx = Ctx::new(file, text);
    let loc = Loc {
        ctx: &ctx,
        map: None,
    };
    let mut p = Parser::new(text, 0, text.len(), loc);
    let root = p.document(configmgr::FILE)?;
    configmgr::to_model(&root, loc, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Attrs, Condition, Expression, Group, Node, OperatorKind, Part, Pos, Shape, Step, Variable,
        WmiProperty,
    };

    fn p(text: &str) -> Sequence {
        parse(text, Path::new("t.xml")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn perr(text: &str) -> ParseError {
        parse(text, Path::new("t.xml")).expect_err("should fail")
    }

    fn at(e: &ParseError) -> (u32, u32) {
        (e.line, e.column)
    }

    fn rt(seq: &Sequence) {
        let text = write(seq);
        let back = parse(&text, Path::new("w.xml")).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(&back, seq, "\n{text}");
    }

    fn a(pairs: &[(&str, &str)]) -> Attrs {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn step_of(seq: &Sequence, i: usize) -> &Step {
        match &seq.items[i] {
            Node::Step(s) => s,
            Node::Group(_) => panic!("not a step"),
        }
    }

    /// A model with every awkward value the writer must escape.
    fn tricky() -> Sequence {
        let step = Step {
            element: crate::model::StepElement::SubTaskSequence,
            attrs: a(&[
                ("type", "SMS_TaskSequence_RunCommandLineAction"),
                ("name", "Quote \" amp & lt < gt > apos '"),
                ("description", "line1\nline2\ttab\r\n  indented  "),
                ("unknownAttr", ""),
            ]),
            condition: vec![Condition::Operator {
                kind: OperatorKind::Or,
                attrs: a(&[("note", "x&y")]),
                children: vec![
                    Condition::Expression(Expression {
                        kind: "SMS_TaskSequence_FutureConditionExpression".into(),
                        attrs: Vec::new(),
                        vars: vec![
                            Variable::new("Operator", "equals"),
                            Variable::new("Value", ""),
                        ],
                        pos: Pos::default(),
                    }),
                    Condition::Operator {
                        kind: OperatorKind::Not,
                        attrs: Vec::new(),
                        children: Vec::new(),
                        pos: Pos::default(),
                    },
                ],
                pos: Pos::default(),
            }],
            action: Some("  cmd /c echo a]]>b <c> & \"d\" \r\n\tünïcödé 日本 ".into()),
            vars: vec![
                Variable::property("CommandLine", "   "),
                Variable::property("Empty", ""),
                Variable::property("Newlines", "\n\nx\n\n"),
            ],
            extra_xml: vec!["<x a=\"1\"><![CDATA[a]]]]><![CDATA[>b]]></x>".into()],
            // Not the default order: kept as written.
            order: vec![Part::Vars, Part::Extra, Part::Action, Part::Condition],
            pos: Pos::default(),
        };
        Sequence {
            attrs: a(&[("version", "3.00"), ("name", "A & B \"C\"")]),
            global_vars: vec![Variable {
                name: "Pw".into(),
                attrs: a(&[("property", "Pw"), ("hidden", "true")]),
                value: " p<a>s&s ".into(),
                pos: Pos::default(),
            }],
            items: vec![
                Node::Group(Group {
                    attrs: a(&[("name", "Empty group")]),
                    ..Group::default()
                }),
                Node::Step(step),
                Node::Step(Step {
                    attrs: a(&[("name", "no action, no type")]),
                    ..Step::default()
                }),
                Node::Step(Step {
                    attrs: a(&[("name", "empty action")]),
                    action: Some(String::new()),
                    ..Step::default()
                }),
                Node::Group(Group {
                    attrs: a(&[("name", "nested")]),
                    children: vec![Node::Group(Group::default())],
                    extra_xml: vec!["<action />".into()],
                    ..Group::default()
                }),
            ],
            extra_xml: vec![
                "<referenceList>\n  <reference package=\"X\" />\n</referenceList>".into(),
            ],
            order: [Part::Extra, Part::Node, Part::GlobalVars]
                .into_iter()
                .chain([Part::Node; 4])
                .collect(),
            shape: Shape::Sequence,
            pos: Pos::default(),
        }
    }

    fn wmi(
        name: &str,
        attrs: &[(&str, &str)],
        value: Option<&str>,
        raw: Option<&str>,
    ) -> WmiProperty {
        WmiProperty {
            name: name.into(),
            attrs: a(attrs),
            value: value.map(String::from),
            raw: raw.map(String::from),
        }
    }

    #[test]
    fn tricky_model_round_trips_in_every_shape() {
        let mut seq = tricky();
        rt(&seq);
        seq.shape = Shape::PackageWrapper {
            properties: vec![
                (
                    "@xmlns:xsi".into(),
                    "http://www.w3.org/2001/XMLSchema-instance".into(),
                ),
                ("BootImageID".into(), "LAB00005".into()),
                ("Category".into(), String::new()),
                ("Description".into(), " a < b & c ".into()),
                (
                    "Markup".into(),
                    "<OS Name=\"x\" /><!-- c --><OS Name=\"y\" />".into(),
                ),
                ("LooksLikeMarkup".into(), "<b>bold".into()),
                ("Whitespace".into(), "  ".into()),
                ("SourceDate".into(), "2019-07-17T18:21:22".into()),
            ],
        };
        rt(&seq);
        let text = write(&seq);
        assert!(text.contains("  <Markup><OS Name=\"x\" /><!-- c --><OS Name=\"y\" /></Markup>\n"));
        assert!(text.contains("  <LooksLikeMarkup>&lt;b&gt;bold</LooksLikeMarkup>\n"));
        assert!(text.contains("  </SequenceData>\n  <Whitespace>  </Whitespace>\n"));
        seq.shape = Shape::WmiInstance {
            class_name: "SMS_TaskSequencePackage".into(),
            properties: vec![
                wmi("@xmlns:x", &[], Some("urn:x"), None),
                wmi(
                    "Name",
                    &[("TYPE", "string"), ("CLASSORIGIN", "SMS_PackageBaseclass")],
                    Some("  x ]]> & <y> "),
                    None,
                ),
                wmi("Null", &[("TYPE", "string")], None, None),
                wmi(
                    "Refs",
                    &[("TYPE", "string")],
                    None,
                    Some("<VALUE.ARRAY><VALUE>A</VALUE></VALUE.ARRAY>"),
                ),
                wmi(
                    "Arr",
                    &[("TYPE", "string")],
                    None,
                    Some("<PROPERTY.ARRAY NAME=\"Arr\" TYPE=\"string\"><VALUE.ARRAY /></PROPERTY.ARRAY>"),
                ),
                wmi(
                    "",
                    &[],
                    None,
                    Some("<QUALIFIER NAME=\"q\" TYPE=\"boolean\"><VALUE>TRUE</VALUE></QUALIFIER>"),
                ),
                wmi("Type", &[("TYPE", "uint32")], Some("4"), None),
            ],
        };
        rt(&seq);
        let text = write(&seq);
        // The `]]>` of the raw extra XML is split across CDATA sections.
        assert!(text.contains("a]]]]]]><![CDATA[><![CDATA[>b"), "{text}");
        assert!(
            text.contains("<PROPERTY NAME=\"Sequence\" TYPE=\"string\"><VALUE><![CDATA[<sequence")
        );
    }

    #[test]
    fn entities_cdata_and_line_ends() {
        let seq = p(
            "<?xml version=\"1.0\" encoding=\"utf-16\"?>\r\n<sequence>\r\n  \
             <step name=\"a&amp;b&#x41;&#66;&quot;&apos;\">\r\n    \
             <action>x &lt; y<![CDATA[ & <z> ]]>&gt;\r\nnext&#13;&#10;</action>\r\n  \
             </step>\r\n</sequence>\r\n",
        );
        let s = step_of(&seq, 0);
        assert_eq!(s.name(), "a&bAB\"'");
        assert_eq!(s.action.as_deref(), Some("x < y & <z> >\nnext\r\n"));
        assert_eq!((s.pos.line, s.pos.column), (3, 3));
        rt(&seq);
        // Attribute values: literal line ends and tabs become spaces, references do not.
        let seq = p("<sequence a=\"x\r\ny\tz&#10;w\" />");
        assert_eq!(seq.attrs, a(&[("a", "x y z\nw")]));
        rt(&seq);
    }

    #[test]
    fn whitespace_only_values_are_kept() {
        let seq = p(
            "<sequence>\n  <globalVarList>\n    <variable name=\"A\">   </variable>\n    \
             <variable name=\"B\"/>\n    <variable name=\"C\">\n</variable>\n  </globalVarList>\n  \
             <step><action> </action></step>\n</sequence>",
        );
        let vals: Vec<&str> = seq.global_vars.iter().map(|v| v.value.as_str()).collect();
        assert_eq!(vals, ["   ", "", "\n"]);
        assert_eq!(step_of(&seq, 0).action.as_deref(), Some(" "));
        rt(&seq);
    }

    #[test]
    fn unknown_children_and_operator_case() {
        let seq = p(
            "<sequence><group name=\"g\"><foo  x='1'>t<![CDATA[c]]></foo><condition>\
             <operator type=\"AND\"><expression type=\"Weird\"><variable name=\"k\" extra=\"e\">v\
             </variable></expression></operator></condition></group><bar/></sequence>",
        );
        let Node::Group(g) = &seq.items[0] else {
            panic!("group")
        };
        assert_eq!(g.extra_xml, ["<foo  x='1'>t<![CDATA[c]]></foo>"]);
        assert_eq!(seq.extra_xml, ["<bar/>"]);
        let [Condition::Operator { kind, children, .. }] = g.condition.as_slice() else {
            panic!("operator")
        };
        assert_eq!(*kind, OperatorKind::And);
        let Condition::Expression(e) = &children[0] else {
            panic!("expression")
        };
        assert_eq!(e.kind, "Weird");
        assert_eq!(e.vars[0].attrs, a(&[("extra", "e")]));
        rt(&seq);
    }

    /// The console exports *Run Task Sequence* as `<subtasksequence>`, a step under another
    /// element name: read as a step, written back under its own name.
    /// <https://learn.microsoft.com/mem/configmgr/develop/reference/osd/sms_tasksequence_subtasksequence-server-wmi-class>
    #[test]
    fn subtasksequence_element_is_a_step_written_back_as_itself() {
        let seq = p(
            "<sequence><group name=\"g\">\n<subtasksequence name=\"Child\">\
             <defaultVarList><variable name=\"OSDSubTasksequencePackageID\" \
             property=\"TsPackageID\">LAB00101</variable></defaultVarList>\
             </subtasksequence></group><subtasksequence type=\"SMS_TaskSequence_SubTasksequence\"/>\
             </sequence>",
        );
        let Node::Group(g) = &seq.items[0] else {
            panic!("group")
        };
        let Node::Step(s) = &g.children[0] else {
            panic!("step")
        };
        assert_eq!(s.element, crate::model::StepElement::SubTaskSequence);
        assert_eq!((s.pos.line, s.pos.column), (2, 1));
        assert_eq!(s.property("TsPackageID"), Some("LAB00101"));
        // No `type`: the element says what it is.
        assert_eq!(s.kind(), Some(crate::model::step_type::SUB_SEQUENCE));
        assert!(g.extra_xml.is_empty() && seq.extra_xml.is_empty());
        let text = write(&seq);
        assert!(
            text.contains("<subtasksequence name=\"Child\">\n"),
            "{text}"
        );
        assert!(text.contains("</subtasksequence>\n"), "{text}");
        assert!(
            text.contains("<subtasksequence type=\"SMS_TaskSequence_SubTasksequence\" />"),
            "{text}"
        );
        rt(&seq);
        let e = perr("<sequence><subtasksequence><step/></subtasksequence></sequence>");
        assert_eq!(at(&e), (1, 28));
        assert!(e.message.contains("steps do not nest"), "{e}");
    }

    /// The names of the elements written at exactly `indent` spaces, in order.
    fn names_at(text: &str, indent: usize) -> Vec<String> {
        text.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(&" ".repeat(indent))?;
                let tag = rest
                    .strip_prefix('<')
                    .filter(|r| !r.starts_with(['/', ' ']))?;
                let end = tag.find([' ', '>', '/']).unwrap_or(tag.len());
                Some(tag[..end].to_string())
            })
            .collect()
    }

    /// Parse `xml`, write it (directly and through YAML), and check the children of the
    /// element at `indent` come back in the order they were written.
    fn order_survives(xml: &str, indent: usize, want: &[&str]) {
        let seq = p(xml);
        let text = write(&seq);
        assert_eq!(names_at(&text, indent), want, "{xml}\n{text}");
        let y = crate::yaml::write(&seq);
        let via_yaml =
            crate::yaml::parse(&y, Path::new("o.yaml")).unwrap_or_else(|e| panic!("{e}\n{y}"));
        assert_eq!(via_yaml, seq, "{y}");
        assert_eq!(names_at(&write(&via_yaml), indent), want, "{y}");
        rt(&seq);
    }

    fn el(name: &str) -> String {
        match name {
            "condition" => {
                "<condition><expression type=\"SMS_TaskSequence_VariableConditionExpression\">\
                <variable name=\"Variable\">X</variable></expression></condition>"
                    .into()
            }
            "action" => "<action>echo a</action>".into(),
            "defaultVarList" => "<defaultVarList><variable name=\"CommandLine\" \
                property=\"CommandLine\">echo a</variable></defaultVarList>"
                .into(),
            "globalVarList" => {
                "<globalVarList><variable name=\"G\">1</variable></globalVarList>".into()
            }
            "referenceList" => {
                "<referenceList><reference package=\"LAB00001\" /></referenceList>".into()
            }
            "step" => "<step name=\"s\"><action>echo s</action></step>".into(),
            "group" => "<group name=\"g\" />".into(),
            other => format!("<{other} a=\"1\" />"),
        }
    }

    /// The order of a step's child elements, and of `<referenceList>` and unknown elements
    /// among a sequence's or a group's, is written back as read: ConfigMgr's console writes
    /// `<condition>`, `<action>`, `<defaultVarList>`; MDT's ts.xml `<defaultVarList>` before
    /// `<action>` with `<condition>` after; exports place `<referenceList>` after the steps.
    #[test]
    fn child_element_order_is_kept() {
        let real_steps: &[&[&str]] = &[
            &["condition", "action", "defaultVarList"],
            &["action", "defaultVarList"],
            &["defaultVarList", "action"],
            &["defaultVarList", "action", "condition"],
            &["action", "defaultVarList", "condition"],
            &["defaultVarList", "vendorData", "action"],
        ];
        for order in real_steps {
            let body: String = order.iter().map(|n| el(n)).collect();
            order_survives(
                &format!("<sequence><step name=\"x\">{body}</step></sequence>"),
                4,
                order,
            );
        }
        let real_sequences: &[&[&str]] = &[
            &["globalVarList", "group", "step", "referenceList"],
            &["referenceList", "globalVarList", "group"],
            &["globalVarList", "referenceList", "step", "group"],
            &["step", "globalVarList"],
        ];
        for order in real_sequences {
            let body: String = order.iter().map(|n| el(n)).collect();
            order_survives(&format!("<sequence>{body}</sequence>"), 2, order);
        }
        // Fuzz-like: random orders of every kind of child, in a step, a group and the sequence.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut shuffle = |items: &mut Vec<&str>| {
            for i in (1..items.len()).rev() {
                items.swap(i, next(i + 1));
            }
        };
        for round in 0..300 {
            let mut step = vec!["condition", "action", "defaultVarList", "x1", "x2"];
            step.truncate(2 + round % 4);
            shuffle(&mut step);
            let body: String = step.iter().map(|n| el(n)).collect();
            order_survives(
                &format!("<sequence><step>{body}</step></sequence>"),
                4,
                &step,
            );
            let mut group = vec!["condition", "step", "group", "x1", "step", "action"];
            shuffle(&mut group);
            let body: String = group.iter().map(|n| el(n)).collect();
            order_survives(
                &format!("<sequence><group>{body}</group></sequence>"),
                4,
                &group,
            );
            let mut seq = vec![
                "globalVarList",
                "referenceList",
                "step",
                "group",
                "x1",
                "step",
            ];
            shuffle(&mut seq);
            let body: String = seq.iter().map(|n| el(n)).collect();
            order_survives(&format!("<sequence>{body}</sequence>"), 2, &seq);
        }
    }

    #[test]
    fn errors_are_positioned_and_explained() {
        let cases: &[(&str, (u32, u32), &str)] = &[
            ("", (1, 1), "empty file"),
            ("  \n  ", (2, 3), "empty file"),
            (
                "<sequence>\n  <group name=\"Install\">\n",
                (3, 1),
                "unexpected end of file: <group name=\"Install\"> opened at 2:3 is not closed (expected </group>)",
            ),
            (
                "<sequence>\n  <group name=\"Install\">\n    </step>",
                (3, 5),
                "expected </group> to close <group name=\"Install\"> opened at 2:3, found </step>",
            ),
            ("<sequence><step><action>a & b</action></step></sequence>", (1, 27), "bad entity"),
            ("<sequence><step><action>&#0;</action></step></sequence>", (1, 25), "bad character reference"),
            ("<sequence><step><action>&#xD800;</action></step></sequence>", (1, 25), "bad character reference"),
            ("<sequence a=\"1\" a=\"2\"/>", (1, 17), "duplicate attribute a"),
            ("<sequence a=\"<\"/>", (1, 14), "'<' is not allowed"),
            ("<sequence a=\"1\"b=\"2\"/>", (1, 16), "expected whitespace"),
            ("<sequence a=1/>", (1, 13), "expected a quoted value"),
            ("<sequence a=\"1/>", (1, 13), "never closed"),
            ("<sequence/><x/>", (1, 12), "second root element"),
            ("<sequence/>trailing", (1, 12), "unexpected text 't'"),
            ("<TaskSequence/>", (1, 1), "unknown root element <TaskSequence>"),
            ("<sequence><step><step/></step></sequence>", (1, 17), "<step> is not allowed inside <step>"),
            ("<sequence><globalVarList><step/></globalVarList></sequence>", (1, 26), "<step> is not allowed inside <globalVarList>"),
            ("<sequence><group>\n  hello <step/></group></sequence>", (2, 3), "unexpected text \"hello\" inside <group>"),
            ("<sequence><step><condition><operator type=\"nand\"/></condition></step></sequence>", (1, 28), "unknown operator type \"nand\""),
            ("<sequence><step><condition><operator/></condition></step></sequence>", (1, 28), "<operator> has no type"),
            ("<sequence><step><condition><expression/></condition></step></sequence>", (1, 28), "<expression> has no type"),
            ("<sequence><globalVarList><variable value=\"x\"/></globalVarList></sequence>", (1, 26), "<variable> has no name"),
            ("<sequence><step><action>a<b/></action></step></sequence>", (1, 26), "may contain only text"),
            ("<sequence><step><action/><action/></step></sequence>", (1, 26), "second <action>"),
            ("<sequence><!-- x", (1, 11), "comment is never closed"),
            ("<sequence><![CDATA[ x", (1, 11), "CDATA section is never closed"),
            ("<!DOCTYPE x><sequence/>", (1, 1), "DOCTYPE"),
            ("<sequence", (1, 10), "end of file inside the start tag"),
            ("< sequence/>", (1, 2), "expected an element name"),
            ("</sequence>", (1, 1), "unexpected end tag"),
            ("<SmsTaskSequencePackage><Name>x</Name></SmsTaskSequencePackage>", (1, 1), "no <SequenceData>"),
            (
                "<INSTANCE CLASSNAME=\"SMS_TaskSequencePackage\"><PROPERTY NAME=\"Name\"><VALUE>x</VALUE></PROPERTY></INSTANCE>",
                (1, 1),
                "no <PROPERTY NAME=\"Sequence\">",
            ),
            (
                "<INSTANCE><PROPERTY NAME=\"Sequence\"><VALUE></VALUE></PROPERTY></INSTANCE>",
                (1, 44),
                "the Sequence property is empty",
            ),
            (
                "<INSTANCE><PROPERTY NAME=\"Sequence\"><VALUE><![CDATA[<group/>]]></VALUE></PROPERTY></INSTANCE>",
                (1, 53),
                "must have <sequence> as its root",
            ),
            (
                "<INSTANCE><PROPERTY NAME=\"Sequence\"><VALUE>\n&lt;sequence&gt;&lt;step&gt;&lt;/group&gt;</VALUE></PROPERTY></INSTANCE>",
                (2, 29),
                "expected </step> to close <step> opened at 2:17, found </group>",
            ),
        ];
        for (text, pos, msg) in cases {
            let e = perr(text);
            assert_eq!(at(&e), *pos, "{text:?}: {e}");
            assert!(e.message.contains(msg), "{text:?}: {e}");
        }
    }

    #[test]
    fn columns_count_characters() {
        let e = perr("<sequence name=\"Größe\"><step>ä&x;</step></sequence>");
        assert_eq!(at(&e), (1, 31));
    }

    #[test]
    fn object_xml_with_escaped_sequence_maps_positions() {
        let text = "<?xml version=\"1.0\"?>\n\
            <INSTANCES><INSTANCE CLASSNAME=\"SMS_TaskSequencePackage\" x=\"1\">\n\
            <PROPERTY NAME=\"Name\" TYPE=\"string\"><VALUE>n</VALUE></PROPERTY>\n\
            <PROPERTY NAME=\"Sequence\" TYPE=\"string\"><VALUE>&lt;sequence version=\"3.00\"&gt;\n\
            &lt;step name=\"s &amp;amp; t\"&gt;&lt;action&gt;a&lt;/action&gt;&lt;/step&gt;\n\
            &lt;/sequence&gt;</VALUE></PROPERTY></INSTANCE></INSTANCES>";
        let seq = p(text);
        assert_eq!((seq.pos.line, seq.pos.column), (4, 48));
        let s = step_of(&seq, 0);
        assert_eq!(s.name(), "s & t");
        assert_eq!((s.pos.line, s.pos.column), (5, 1));
        let Shape::WmiInstance { properties, .. } = &seq.shape else {
            panic!("wmi shape")
        };
        assert_eq!(properties[0].name, "@x");
        assert_eq!(properties[1].value.as_deref(), Some("n"));
        rt(&seq);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        fn nested(depth: usize) -> String {
            format!(
                "<sequence>{}{}</sequence>",
                "<group>".repeat(depth),
                "</group>".repeat(depth)
            )
        }
        let text = nested(MAX_DEPTH + 10);
        let handle = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || parse(&text, Path::new("deep.xml")).map(|_| ()))
            .expect("spawn");
        let e = handle.join().expect("no stack overflow").unwrap_err();
        assert!(e.message.contains("nested more than"), "{e}");
        // Just under the limit parses and writes back.
        let text = nested(MAX_DEPTH - 2);
        let handle = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                let seq = parse(&text, Path::new("deep.xml")).expect("parses");
                parse(&write(&seq), Path::new("w.xml")).expect("written parses") == seq
            })
            .expect("spawn");
        assert!(handle.join().expect("no stack overflow"));
    }

    #[test]
    fn mutated_input_never_panics() {
        // A deterministic stand-in for the fuzz target: byte mutations of a document using every
        // feature give either a model that round-trips or a positioned error.
        let base = "<?xml version=\"1.0\"?><INSTANCE CLASSNAME=\"C\"><PROPERTY NAME=\"A\" TYPE=\"s\">\
            <VALUE>&amp;x</VALUE></PROPERTY><PROPERTY NAME=\"Sequence\"><VALUE><![CDATA[<sequence v=\"1\">\
            <globalVarList><variable name=\"Ü\" hidden=\"true\">p&#x41;</variable></globalVarList>\
            <group name=\"g\"><condition><operator type=\"or\"><expression type=\"E\"><variable name=\"V\">1\
            </variable></expression></operator></condition><step type=\"T\"><action>a<![CDATA[b]]]]>\
            <![CDATA[>c]]></action></step></group></sequence>]]></VALUE></PROPERTY></INSTANCE>";
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"<>/&;#x[]!?=\"' \n\r-CDATAsequence\xc3\xbc\x00";
        for _ in 0..2000 {
            let mut bytes = base.as_bytes().to_vec();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % bytes.len();
                let c = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 => bytes[i] = c,
                    1 => {
                        bytes.remove(i);
                    }
                    _ => bytes.insert(i, c),
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            match parse(&text, Path::new("m.xml")) {
                Ok(seq) => {
                    let again =
                        parse(&write(&seq), Path::new("w.xml")).expect("written XML parses");
                    assert_eq!(again, seq, "{text}");
                }
                Err(e) => assert!(e.line >= 1 && e.column >= 1),
            }
        }
    }
}
