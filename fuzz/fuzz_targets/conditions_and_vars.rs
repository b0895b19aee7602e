//! An arbitrary variable store, `%NAME%` expansion, variable comparisons, `like` wildcards and
//! WMI datetimes on arbitrary strings. None may panic; a few properties must hold.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tsforge_runtime::condition::{compare_values, compare_variable, like, parse_wmi_datetime};
use tsforge_runtime::vars::{mask_secrets, valid_name, Vars};

#[path = "known.rs"]
mod known;

#[derive(Debug, Arbitrary)]
enum Op {
    Set(String, String),
    SetFromStep(String, String),
    SetDefault(String, String),
    MarkSecret(String),
    Remove(String),
}

#[derive(Debug, Arbitrary)]
struct Input {
    ops: Vec<Op>,
    text: String,
    lookup: String,
    operator: String,
    value: String,
    pattern: String,
    datetime: String,
}

const OPERATORS: &[&str] = &[
    "equals", "notequals", "greater", "greaterequal", "less", "lessequal", "like", "exists",
    "notexists",
];

fuzz_target!(|input: Input| {
    let mut vars = Vars::new();
    for op in &input.ops {
        match op {
            // Setting an empty value deletes the variable (ConfigMgr's rule).
            Op::Set(n, v) => {
                vars.set(n, v.as_str());
                let expected = Some(v.as_str()).filter(|v| !v.is_empty());
                assert_eq!(vars.get(n), expected, "set then get {n:?}");
            }
            Op::SetFromStep(n, v) => {
                if vars.set_from_step(n, v.as_str()).is_ok() {
                    assert!(valid_name(n));
                    assert_eq!(vars.get(n), Some(v.as_str()).filter(|v| !v.is_empty()));
                }
            }
            Op::SetDefault(n, v) => vars.set_default(n, v.as_str()),
            Op::MarkSecret(n) => {
                vars.mark_secret(n);
                assert!(vars.is_secret(n));
            }
            Op::Remove(n) => {
                vars.remove(n);
                assert!(!vars.contains(n));
            }
        }
    }

    // Expansion: never panics; with no variables it is the identity.
    let _ = vars.expand(&input.text);
    assert_eq!(Vars::new().expand(&input.text), input.text);
    let _ = mask_secrets(&vars.expand(&input.text), &vars.secret_values());

    // Comparisons.
    let actual = vars.get(&input.lookup);
    let _ = compare_variable(actual, &input.operator, &input.value);
    for op in OPERATORS {
        compare_variable(actual, op, &input.value).expect("known operator refused");
    }
    assert!(compare_variable(Some(&input.value), "equals", &input.value).unwrap());
    assert_eq!(
        compare_values(&input.value, &input.pattern),
        compare_values(&input.pattern, &input.value).reverse(),
        "compare_values is not antisymmetric"
    );

    // Wildcards: a string matches itself, and `*` matches anything.
    let _ = like(&input.value, &input.pattern);
    assert!(like(&input.value, &input.value), "like(x, x) is false");
    assert!(like(&input.value, "*"));

    let _ = parse_wmi_datetime(&input.datetime);
    let _ = parse_wmi_datetime(&input.value);
});
