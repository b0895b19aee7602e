//! *Set Dynamic Variables* as the ConfigMgr console exports it (property `Rules`, action
//! variable `OSDSetDynamicVariablesRules`), through the real binary: `validate`, `--dry-run`
//! and `run` on tests/fixtures/sequences/set-dynamic-variables.xml.
//!
//! The rules follow Microsoft's page for the step,
//! https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/task-sequence-steps#BKMK_SetDynamicVariables:
//! rules are evaluated in order and set the variables of every rule that is true; a *Computer*
//! rule is true when any of its values is; *Make and Model* needs both and takes `*` and `?`;
//! a variable can be hidden (*Do not display this value*), and then smsts.log does not show it.

use crate::common::{repo, Env};

const FIXTURE: &str = "tests/fixtures/sequences/set-dynamic-variables.xml";

/// The machine as the rules of the fixture see it: every rule's values match.
const MATCHING: &[&str] = &[
    "--var",
    "_SMSTSSerialNumber=1234",
    // Computer rule: the page writes the MAC with dashes, the variable lists colons.
    "--var",
    "_SMSTSMacAddresses=00:11:22:33:44:55,26:78:13:5A:A4:22",
    "--var",
    "_SMSTSMake=Dell Inc.",
    "--var",
    "_SMSTSModel=Latitude 7490",
    "--var",
    "_SMSTSDefaultGateways=10.0.0.1,192.0.2.1",
    "--var",
    "Ring=pilot",
];

/// A machine none of the conditional rules match.
const OTHER: &[&str] = &[
    "--var",
    "_SMSTSSerialNumber=1234",
    "--var",
    "_SMSTSMacAddresses=00:11:22:33:44:55",
    "--var",
    "_SMSTSMake=Dell Inc.",
    "--var",
    "_SMSTSModel=Latitude 5490",
    "--var",
    "_SMSTSDefaultGateways=10.0.0.1",
];

#[test]
fn exported_rules_validate_and_run_in_order() {
    let e = Env::new();
    let file = std::path::PathBuf::from(repo(FIXTURE));
    let (code, out, err) = e.run(&["validate", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("needs the"), "{out}");

    let (code, out, err) = e.run_seq(&file, MATCHING);
    assert_eq!(code, 0, "{out}{err}");
    // Every rule applied, in order: the rule without condition (last) overrides `Order`.
    assert_eq!(e.read("marks"), "LAB-1234|LAB00031|Lab|yes|UTC|last\n");
    // The hidden value reaches the step that uses it ...
    assert_eq!(e.read("secret.txt"), "Pa55w0rd!");
    // ... and never the logs (it is a secret like any hidden variable: docs/engine.md).
    let log = e.read("state/smsts.log");
    assert!(log.contains("Set variable JoinPw = ********"), "{log}");
    assert!(log.contains("Rule 5 has no condition: applies"), "{log}");
    for f in ["state/smsts.log", "state/events.jsonl"] {
        assert!(!e.read(f).contains("Pa55w0rd!"), "{f} shows the secret");
    }

    // On another machine only the rule without condition applies.
    let e = Env::new();
    let (code, out, err) = e.run_seq(&file, OTHER);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        e.read("marks"),
        "%OSDComputerName%|%DriverPack%|%Site%|%Ring2%|UTC|last\n"
    );
    let log = e.read("state/smsts.log");
    for n in 1..=4 {
        assert!(log.contains(&format!("Rule {n} does not apply")), "{log}");
    }
}

#[test]
fn dry_run_shows_which_rules_apply_with_secrets_masked() {
    let e = Env::new();
    let file = std::path::PathBuf::from(repo(FIXTURE));
    let mut args = vec!["--dry-run"];
    args.extend_from_slice(MATCHING);
    args.extend_from_slice(&["--var", "Ring=ring1"]);
    let (code, out, err) = e.run_seq(&file, &args);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "rule 1 applies: OSDComputerName = LAB-1234, JoinPw = ********, Order = computer"
        ),
        "{out}"
    );
    assert!(
        out.contains("rule 2 applies: DriverPack = LAB00031"),
        "{out}"
    );
    assert!(out.contains("rule 3 applies: Site = Lab"), "{out}");
    assert!(out.contains("rule 4 does not apply"), "{out}");
    assert!(
        out.contains("rule 5 (no condition) applies: TimeZone = UTC, Order = last"),
        "{out}"
    );
    // Later steps of the plan see the values.
    assert!(
        out.contains("echo \"LAB-1234|LAB00031|Lab|%Ring2%|UTC|last\""),
        "{out}"
    );
    assert!(!out.contains("Pa55w0rd!"), "{out}");
    assert!(!e.path("marks").exists());
}

#[test]
fn malformed_rules_are_positioned_errors() {
    let e = Env::new();
    let seq = e.write(
        "bad.xml",
        "<sequence version=\"3.00\">\n\
         \x20 <step type=\"SMS_TaskSequence_SetDynamicVariablesAction\" name=\"Dyn\">\n\
         \x20   <defaultVarList><variable name=\"OSDSetDynamicVariablesRules\" property=\"Rules\">\
         &lt;Rules&gt;&lt;Rule&gt;&lt;Variables&gt;&lt;Variable IsSecret=\"false\"&gt;v&lt;/Variable&gt;\
         &lt;/Variables&gt;&lt;/Rule&gt;&lt;/Rules&gt;</variable></defaultVarList>\n\
         \x20 </step>\n\
         \x20 <step type=\"SMS_TaskSequence_SetDynamicVariablesAction\" name=\"Old\">\n\
         \x20   <defaultVarList><variable name=\"DynamicRules\" property=\"DynamicRules\">&lt;rules/&gt;</variable></defaultVarList>\n\
         \x20 </step>\n\
         \x20 <step type=\"SMS_TaskSequence_SetDynamicVariablesAction\" name=\"None\"/>\n\
         </sequence>\n",
    );
    let f = seq.display().to_string();
    let (code, out, _) = e.run(&["validate", &f]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "{f}:2:3: step \"Dyn\": the Rules property is not valid at line 1, column 25 of its text: <Variable> without a Name"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{f}:5:3: Set Dynamic Variables step \"Old\" has a DynamicRules property"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{f}:8:3: Set Dynamic Variables step \"None\" needs the Rules property"
        )),
        "{out}"
    );
    // `run` fails the step with the same message; nothing after it runs.
    let (code, out, err) = e.run_seq(&seq, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("Step \"Dyn\" failed (exit code 2147500037): the Rules property is not valid at line 1, column 25 of its text: <Variable> without a Name"),
        "{err}"
    );
    assert!(err.contains("(1 steps run)"), "{err}");
}

#[test]
fn yaml_rules_run_like_the_export() {
    let e = Env::new();
    let seq = e.write(
        "ts.yaml",
        r#"
steps:
  - name: Dyn
    type: set-dynamic-variables
    properties:
      Rules: >-
        <Rules><Rule><condition><expression type="SMS_TaskSequence_VariableConditionExpression">
        <variable name="Operator">equals</variable><variable name="Value">pilot</variable>
        <variable name="Variable">Ring</variable></expression></condition>
        <Variables><Variable Name="Wave" IsSecret="false">1</Variable></Variables></Rule></Rules>
  - name: Show
    run: echo "%Wave%" >> marks
"#,
    );
    let (code, out, err) = e.run(&["validate", seq.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = e.run_seq(&seq, &["--var", "Ring=pilot"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(e.read("marks"), "1\n");
}
