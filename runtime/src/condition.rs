//! Condition evaluation: ConfigMgr 2007 condition trees (`<operator type="and|or|not">` over
//! `<expression type="SMS_TaskSequence_…ConditionExpression">`).
//!
//! - Variable: `equals`, `notEquals`, `greater`, `greaterEqual`, `less`, `lessEqual`, `exists`,
//!   `notExists` (ConfigMgr's operators) and `like`. As ConfigMgr 2007's *Task Sequence Variable
//!   Condition* page documents, values compare as numbers only when **both** are integers
//!   (`10` and `9`, `-3` and `+4`), otherwise as case-sensitive text (`2.5` against `10`, `1e3`
//!   against `999`, `10.0` against `10`, `TRUE` against `true`). `like` takes `*` or `%` for any
//!   run of characters and `?` for one character, ignoring case (Windows wildcards; the
//!   documentation does not say, see docs/engine.md).
//! - File: `Path` exists and is a file; optional `DateTime` + `DateTimeOperator` compare the
//!   file's modification time with a WMI datetime (`yyyymmddHHMMSS.ffffff+UUU`). A `Version`
//!   check needs the file's version resource and is only evaluated on Windows.
//! - Folder: `Path` exists and is a folder; optional `DateTime` as for files.
//! - Registry, WMI, Software and OS conditions query Windows; on any other platform they are an
//!   error that names the condition, which fails the step (the engine reports it).
//!
//! Several conditions at the top of a `<condition>` are combined with *and*; `not` is the
//! editor's *If none*: true when none of its children is true; an empty `and` is true, an empty
//! `or` false, an empty `not` true.

use crate::sequence::model::{expr_type, Condition, Expression, OperatorKind};
use crate::vars::Vars;
use std::cmp::Ordering;
use std::path::Path;

/// Why a condition could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("condition at {line}:{column} ({kind}): {message}")]
pub struct ConditionError {
    pub kind: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

fn err(e: &Expression, message: impl Into<String>) -> ConditionError {
    ConditionError {
        kind: short_kind(&e.kind).to_string(),
        line: e.pos.line,
        column: e.pos.column,
        message: message.into(),
    }
}

/// `SMS_TaskSequence_FileConditionExpression` → `FileConditionExpression`.
pub fn short_kind(kind: &str) -> &str {
    kind.strip_prefix("SMS_TaskSequence_").unwrap_or(kind)
}

/// Variable comparison operators, as written in exported XML.
pub const VARIABLE_OPERATORS: &[&str] = &[
    "equals",
    "notEquals",
    "greater",
    "greaterEqual",
    "less",
    "lessEqual",
    "exists",
    "notExists",
    "like",
];

/// Evaluate the top-level condition list of a step or group (an empty list is true).
pub fn evaluate(conditions: &[Condition], vars: &Vars) -> Result<bool, ConditionError> {
    for c in conditions {
        if !eval_one(c, vars)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn eval_one(c: &Condition, vars: &Vars) -> Result<bool, ConditionError> {
    match c {
        Condition::Operator { kind, children, .. } => match kind {
            OperatorKind::And => evaluate(children, vars),
            OperatorKind::Or => {
                for ch in children {
                    if eval_one(ch, vars)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            // The editor's "None" (ConfigMgr 2007 *If Statement*): true when none of the
            // children is true, so `not(a, b)` is `!a && !b`, not `!(a && b)`.
            OperatorKind::Not => {
                for ch in children {
                    if eval_one(ch, vars)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
        },
        Condition::Expression(e) => eval_expression(e, vars),
    }
}

/// Evaluate one expression. Values of its variables are `%NAME%`-expanded first.
pub fn eval_expression(e: &Expression, vars: &Vars) -> Result<bool, ConditionError> {
    let get = |k: &str| e.get(k).map(|v| vars.expand(v));
    let kind = e.kind.as_str();
    if kind.eq_ignore_ascii_case(expr_type::VARIABLE) {
        let name = get("Variable").ok_or_else(|| err(e, "missing the Variable property"))?;
        let op = get("Operator").unwrap_or_else(|| "equals".to_string());
        let value = get("Value").unwrap_or_default();
        compare_variable(vars.get(&name), &op, &value).map_err(|m| err(e, m))
    } else if kind.eq_ignore_ascii_case(expr_type::FILE) {
        let path = get("Path").ok_or_else(|| err(e, "missing the Path property"))?;
        let meta = match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => m,
            _ => return Ok(false),
        };
        if let Some(v) = get("Version").filter(|v| !v.is_empty()) {
            return platform::file_version_matches(
                Path::new(&path),
                &v,
                &get("VersionOperator").unwrap_or_else(|| "equals".into()),
            )
            .map_err(|m| err(e, m));
        }
        check_datetime(e, &meta, get("DateTime"), get("DateTimeOperator"))
    } else if kind.eq_ignore_ascii_case(expr_type::FOLDER) {
        let path = get("Path").ok_or_else(|| err(e, "missing the Path property"))?;
        let meta = match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => m,
            _ => return Ok(false),
        };
        check_datetime(e, &meta, get("DateTime"), get("DateTimeOperator"))
    } else if kind.eq_ignore_ascii_case(expr_type::REGISTRY) {
        platform::registry(e, &get).map_err(|m| err(e, m))
    } else if kind.eq_ignore_ascii_case(expr_type::WMI) {
        let query = get("Query").ok_or_else(|| err(e, "missing the Query property"))?;
        let ns = get("Namespace").unwrap_or_else(|| "root\\cimv2".into());
        platform::wmi(&ns, &query).map_err(|m| err(e, m))
    } else if kind.eq_ignore_ascii_case(expr_type::SOFTWARE) {
        platform::software(e, &get).map_err(|m| err(e, m))
    } else if kind.eq_ignore_ascii_case(expr_type::OS) {
        platform::os(e, &get).map_err(|m| err(e, m))
    } else {
        Err(err(
            e,
            format!(
                "unknown condition type {:?}; known types: {}",
                e.kind,
                expr_type::ALL.join(", ")
            ),
        ))
    }
}

/// Compare a variable's value (`None` when it does not exist) with `value` using `op`.
pub fn compare_variable(actual: Option<&str>, op: &str, value: &str) -> Result<bool, String> {
    let op_l = op.to_ascii_lowercase();
    match op_l.as_str() {
        "exists" => return Ok(actual.is_some()),
        "notexists" => return Ok(actual.is_none()),
        _ => {}
    }
    // ConfigMgr treats a variable that does not exist as an empty string in comparisons.
    let a = actual.unwrap_or("");
    let ord = compare_values(a, value);
    Ok(match op_l.as_str() {
        "equals" => ord == Ordering::Equal,
        "notequals" => ord != Ordering::Equal,
        "greater" => ord == Ordering::Greater,
        "greaterequal" => ord != Ordering::Less,
        "less" => ord == Ordering::Less,
        "lessequal" => ord != Ordering::Greater,
        "like" => like(a, value),
        _ => {
            return Err(format!(
                "unknown operator {op:?}; known operators: {}",
                VARIABLE_OPERATORS.join(", ")
            ))
        }
    })
}

/// Two integers compare as numbers; anything else as case-sensitive text (ConfigMgr 2007,
/// *Task Sequence Variable Condition*: "a case-sensitive string comparison unless both the
/// value of the variable and the comparison value are integers").
pub fn compare_values(a: &str, b: &str) -> Ordering {
    match (Integer::parse(a), Integer::parse(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// An integer of any length: an optional sign, then ASCII digits (spaces around it ignored).
/// Kept as its digits so values longer than any machine integer still compare exactly.
#[derive(Debug, PartialEq, Eq)]
struct Integer<'a> {
    negative: bool,
    /// Without leading zeros (`""` for zero).
    digits: &'a str,
}

impl<'a> Integer<'a> {
    fn parse(s: &'a str) -> Option<Integer<'a>> {
        let t = s.trim();
        let (negative, body) = match t.as_bytes().first()? {
            b'-' => (true, &t[1..]),
            b'+' => (false, &t[1..]),
            _ => (false, t),
        };
        if body.is_empty() || !body.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let digits = body.trim_start_matches('0');
        Some(Integer {
            negative: negative && !digits.is_empty(),
            digits,
        })
    }

    fn magnitude_cmp(&self, other: &Integer) -> Ordering {
        self.digits
            .len()
            .cmp(&other.digits.len())
            .then_with(|| self.digits.cmp(other.digits))
    }
}

impl Ord for Integer<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.magnitude_cmp(other),
            (true, true) => other.magnitude_cmp(self),
        }
    }
}

impl PartialOrd for Integer<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Case-insensitive wildcard match: `*` or `%` any run, `?` one character.
pub fn like(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    // Iterative matcher with backtracking to the last star: linear-ish, no recursion.
    let (mut ti, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] == t[ti] && p[pi] != '*' && p[pi] != '%')) {
            ti += 1;
            pi += 1;
        } else if pi < p.len() && (p[pi] == '*' || p[pi] == '%') {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && (p[pi] == '*' || p[pi] == '%') {
        pi += 1;
    }
    pi == p.len()
}

fn check_datetime(
    e: &Expression,
    meta: &std::fs::Metadata,
    dt: Option<String>,
    op: Option<String>,
) -> Result<bool, ConditionError> {
    let Some(dt) = dt.filter(|d| !d.trim().is_empty()) else {
        return Ok(true);
    };
    let want = parse_wmi_datetime(&dt).ok_or_else(|| {
        err(
            e,
            format!("DateTime {dt:?} is not a WMI datetime (yyyymmddHHMMSS.ffffff+UUU)"),
        )
    })?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .ok_or_else(|| err(e, "cannot read the modification time"))?;
    let op = op.unwrap_or_else(|| "equals".to_string());
    compare_variable(Some(&mtime.to_string()), &op, &want.to_string()).map_err(|m| err(e, m))
}

/// Parse a WMI (DMTF) datetime `yyyymmddHHMMSS.ffffff+UUU` (UUU = minutes from UTC) into
/// seconds since the Unix epoch.
pub fn parse_wmi_datetime(s: &str) -> Option<i64> {
    let s = s.trim();
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.chars().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (h, mi, se) = (digits(8..10)?, digits(10..12)?, digits(12..14)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let offset_min = match s.get(21..22) {
        Some(sign @ ("+" | "-")) => {
            let m = digits(22..25)?;
            if sign == "-" {
                -m
            } else {
                m
            }
        }
        _ => 0,
    };
    let days = crate::log::days_from_civil(y, mo as u32, d as u32);
    Some(days * 86400 + h * 3600 + mi * 60 + se - offset_min * 60)
}

#[cfg(not(windows))]
mod platform {
    //! Non-Windows: Windows-only conditions are errors that name the condition.
    use crate::sequence::model::Expression;
    use std::path::Path;

    fn windows_only(what: &str) -> String {
        format!(
            "{what} conditions query Windows and cannot be evaluated on {}; \
             run this step on Windows (PE) or change its condition",
            std::env::consts::OS
        )
    }
    pub fn file_version_matches(_p: &Path, _v: &str, _op: &str) -> Result<bool, String> {
        Err(windows_only("file version"))
    }
    pub fn registry(
        _e: &Expression,
        _get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<bool, String> {
        Err(windows_only("registry"))
    }
    pub fn wmi(_ns: &str, _q: &str) -> Result<bool, String> {
        Err(windows_only("WMI"))
    }
    pub fn software(
        _e: &Expression,
        _get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<bool, String> {
        Err(windows_only("software"))
    }
    pub fn os(_e: &Expression, _get: &dyn Fn(&str) -> Option<String>) -> Result<bool, String> {
        Err(windows_only("operating system"))
    }
}

#[cfg(windows)]
mod platform {
    //! Windows: registry through `reg.exe query`, WMI and file versions through PowerShell's
    //! CIM cmdlets (both ship in Windows PE with the WMI/PowerShell optional components). Using
    //! the system tools keeps `unsafe` Win32 calls out of the runner.
    use super::compare_variable;
    use crate::sequence::model::Expression;
    use crate::tools::{self, Tool};
    use std::path::Path;
    use std::process::{Command, Stdio};

    /// A command for `tool`, found through the tools table.
    fn command(tool: Tool, what: &str) -> Result<Command, String> {
        tools::find(tool)
            .map(Command::new)
            .map_err(|e| format!("{what}: {e}"))
    }

    fn run(cmd: &mut Command, what: &str) -> Result<(bool, String), String> {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{what}: cannot start {:?}: {e}", cmd.get_program()))?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    }

    fn powershell(script: &str, what: &str) -> Result<String, String> {
        let (ok, out) = run(
            command(Tool::PowerShell, what)?.args([
                "-NoLogo",
                "-NoProfile",
                "-NonInteractive",
                "-Command",
                script,
            ]),
            what,
        )?;
        if !ok {
            return Err(format!("{what}: PowerShell failed"));
        }
        Ok(out.trim().to_string())
    }

    fn ps_quote(s: &str) -> String {
        format!("'{}'", s.replace('\'', "''"))
    }

    pub fn file_version_matches(p: &Path, v: &str, op: &str) -> Result<bool, String> {
        let script = format!(
            "(Get-Item -LiteralPath {}).VersionInfo.FileVersionRaw.ToString()",
            ps_quote(&p.display().to_string())
        );
        let actual = powershell(&script, "file version")?;
        compare_variable(Some(&actual), op, v)
    }

    pub fn registry(_e: &Expression, get: &dyn Fn(&str) -> Option<String>) -> Result<bool, String> {
        let key = get("KeyPath").ok_or("missing the KeyPath property")?;
        let value = get("Value").unwrap_or_default();
        let op = get("Operator").unwrap_or_else(|| "exists".into());
        let existence = matches!(op.to_ascii_lowercase().as_str(), "exists" | "notexists");
        let mut cmd = command(Tool::Reg, "registry")?;
        cmd.arg("query").arg(&key);
        if !value.is_empty() {
            cmd.arg("/v").arg(&value);
        } else if !existence {
            // Comparing data without a value name compares the key's default value.
            cmd.arg("/ve");
        }
        let (found, out) = run(&mut cmd, "registry")?;
        match op.to_ascii_lowercase().as_str() {
            "exists" => Ok(found),
            "notexists" => Ok(!found),
            _ if !found => Ok(false),
            _ => {
                let data = out
                    .lines()
                    .find(|l| l.contains("REG_"))
                    .and_then(|l| l.split("REG_").nth(1))
                    .and_then(|l| l.split_once(char::is_whitespace))
                    .map(|(_, d)| d.trim().to_string())
                    .unwrap_or_default();
                compare_variable(Some(&data), &op, &get("Data").unwrap_or_default())
            }
        }
    }

    pub fn wmi(ns: &str, q: &str) -> Result<bool, String> {
        let script = format!(
            "@(Get-CimInstance -Namespace {} -Query {}).Count",
            ps_quote(ns),
            ps_quote(q)
        );
        let n = powershell(&script, "WMI query")?;
        Ok(n.parse::<u64>().map(|n| n > 0).unwrap_or(false))
    }

    pub fn software(_e: &Expression, get: &dyn Fn(&str) -> Option<String>) -> Result<bool, String> {
        let code = get("ProductCode")
            .or_else(|| get("UpgradeCode"))
            .ok_or("missing the ProductCode property")?;
        for root in [
            "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall",
            "HKLM\\SOFTWARE\\WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\Uninstall",
        ] {
            let (found, _) = run(
                command(Tool::Reg, "software")?
                    .arg("query")
                    .arg(format!("{root}\\{code}")),
                "software",
            )?;
            if found {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub fn os(_e: &Expression, get: &dyn Fn(&str) -> Option<String>) -> Result<bool, String> {
        let actual = powershell(
            "(Get-CimInstance Win32_OperatingSystem).Version",
            "operating system",
        )?;
        let want = get("Version").unwrap_or_default();
        let op = get("Operator").unwrap_or_else(|| "equals".into());
        if want.is_empty() {
            return Ok(true);
        }
        compare_variable(Some(&actual), &op, &want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::model::Variable;

    fn var_expr(name: &str, op: &str, value: Option<&str>) -> Condition {
        let mut vars = vec![Variable::new("Operator", op)];
        if let Some(v) = value {
            vars.push(Variable::new("Value", v));
        }
        vars.push(Variable::new("Variable", name));
        Condition::Expression(Expression {
            kind: expr_type::VARIABLE.into(),
            vars,
            ..Default::default()
        })
    }

    fn op(kind: OperatorKind, children: Vec<Condition>) -> Condition {
        Condition::Operator {
            kind,
            attrs: vec![],
            children,
            pos: Default::default(),
        }
    }

    #[test]
    fn every_variable_operator() {
        let mut v = Vars::new();
        v.set("N", "10");
        v.set("S", "Hello");
        let cases: &[(&str, &str, &str, Option<&str>, bool)] = &[
            // Text compares case-sensitively (see the test below for the rule's source).
            (
                "equals text is case-sensitive",
                "S",
                "equals",
                Some("hello"),
                false,
            ),
            ("equals text", "S", "equals", Some("Hello"), true),
            (
                "10 is not 10.0: not both integers",
                "N",
                "equals",
                Some("10.0"),
                false,
            ),
            ("notEquals", "S", "notEquals", Some("world"), true),
            (
                "greater numeric (not text)",
                "N",
                "greater",
                Some("9"),
                true,
            ),
            ("greater false", "N", "greater", Some("10"), false),
            ("greaterEqual", "N", "greaterEqual", Some("10"), true),
            ("less numeric", "N", "less", Some("100"), true),
            ("lessEqual", "N", "lessEqual", Some("9"), false),
            ("exists", "S", "exists", None, true),
            ("exists missing", "Nope", "exists", None, false),
            ("notExists", "Nope", "notExists", None, true),
            ("like star", "S", "like", Some("h*o"), true),
            ("like percent", "S", "like", Some("%LL%"), true),
            ("like question", "S", "like", Some("h?llo"), true),
            ("like no", "S", "like", Some("x*"), false),
            ("missing equals empty", "Nope", "equals", Some(""), true),
            ("operator case", "S", "NOTEQUALS", Some("Hello"), false),
        ];
        for (name, var, o, val, want) in cases {
            let c = var_expr(var, o, *val);
            assert_eq!(evaluate(&[c], &v).unwrap(), *want, "case {name}");
        }
    }

    /// ConfigMgr 2007, *Task Sequence Options: Task Sequence Variable*
    /// (https://technet.microsoft.com/library/bb632960.aspx; the same text of Microsoft's
    /// Configuration Manager 2007 library is mirrored at
    /// http://systemscenter.ru/smsv4.en/html/a6a05766-3d9b-41fc-ac66-dec45f5275df.htm):
    /// "This option uses a case-sensitive string comparison unless both the value of the
    /// variable and the comparison value are integers, in which case a numeric comparison is
    /// performed".
    #[test]
    fn integers_compare_as_numbers_everything_else_as_case_sensitive_text() {
        use Ordering::*;
        let cases: &[(&str, &str, Ordering)] = &[
            // both integers: numbers
            ("10", "9", Greater),
            ("9", "10", Less),
            ("007", "7", Equal),
            ("-3", "2", Less),
            ("-10", "-9", Less),
            ("+4", "4", Equal),
            ("-0", "0", Equal),
            (" 12 ", "12", Equal),
            (
                "123456789012345678901234567890",
                "99999999999999999999999999999",
                Greater,
            ),
            // not both integers: text, as written
            ("2.5", "10", Greater),
            ("1e3", "999", Less),
            ("10.0", "10", Greater),
            ("0x10", "9", Less),
            ("", "0", Less),
            ("abc", "ABC", Greater),
            ("true", "TRUE", Greater),
            ("Dell", "Dell", Equal),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare_values(a, b), *want, "{a:?} vs {b:?}");
            assert_eq!(compare_values(b, a), want.reverse(), "{b:?} vs {a:?}");
        }
        let mut v = Vars::new();
        v.set("Ver", "2.5");
        v.set("InWinPE", "TRUE");
        let holds =
            |name: &str, o: &str, val: &str| evaluate(&[var_expr(name, o, Some(val))], &v).unwrap();
        assert!(holds("Ver", "greater", "10"), "2.5 > 10 as text");
        assert!(!holds("Ver", "less", "10"));
        assert!(!holds("InWinPE", "equals", "true"), "case-sensitive");
        assert!(holds("InWinPE", "notEquals", "true"));
        assert!(holds("InWinPE", "equals", "TRUE"));
    }

    #[test]
    fn unknown_operator_is_an_error() {
        let v = Vars::new();
        let e = evaluate(&[var_expr("X", "approx", Some("1"))], &v).unwrap_err();
        assert!(e.message.contains("unknown operator \"approx\""), "{e}");
    }

    #[test]
    fn nested_and_or_not() {
        let mut v = Vars::new();
        v.set("A", "1");
        v.set("B", "2");
        let t = || var_expr("A", "equals", Some("1"));
        let f = || var_expr("B", "equals", Some("3"));
        let cases = vec![
            ("and tt", op(OperatorKind::And, vec![t(), t()]), true),
            ("and tf", op(OperatorKind::And, vec![t(), f()]), false),
            ("or ff", op(OperatorKind::Or, vec![f(), f()]), false),
            ("or ft", op(OperatorKind::Or, vec![f(), t()]), true),
            ("not f", op(OperatorKind::Not, vec![f()]), true),
            (
                "not (t and t)",
                op(OperatorKind::Not, vec![t(), t()]),
                false,
            ),
            // `not` is the editor's If statement "None": ConfigMgr 2007's *If Statement* page
            // (http://systemscenter.ru/smsv4.en/html/b298ff83-905e-474c-89b4-06cb9f7abfe0.htm)
            // makes it true only when none of its conditions is true; MDT's "IF Statements in
            // Conditions" (http://systemscenter.ru/mdt2012.en/ifstatementsinconditions.htm)
            // says the same. One true child is enough to make it false (it used to be
            // not-of-and, which is true here).
            (
                "none of (t, f)",
                op(OperatorKind::Not, vec![t(), f()]),
                false,
            ),
            (
                "none of (f, t)",
                op(OperatorKind::Not, vec![f(), t()]),
                false,
            ),
            (
                "none of (f, f)",
                op(OperatorKind::Not, vec![f(), f()]),
                true,
            ),
            ("empty none", op(OperatorKind::Not, vec![]), true),
            (
                "or(not t, and(t, not f))",
                op(
                    OperatorKind::Or,
                    vec![
                        op(OperatorKind::Not, vec![t()]),
                        op(
                            OperatorKind::And,
                            vec![t(), op(OperatorKind::Not, vec![f()])],
                        ),
                    ],
                ),
                true,
            ),
            ("empty and", op(OperatorKind::And, vec![]), true),
            ("empty or", op(OperatorKind::Or, vec![]), false),
        ];
        for (name, c, want) in cases {
            assert_eq!(evaluate(&[c], &v).unwrap(), want, "case {name}");
        }
        // Top-level list is an implicit and.
        assert!(!evaluate(&[t(), f()], &v).unwrap());
    }

    #[test]
    fn file_and_folder_conditions() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.txt");
        std::fs::write(&file, "x").unwrap();
        let mut v = Vars::new();
        v.set("DIR", dir.path().to_str().unwrap());
        let expr = |kind: &str, path: String, extra: Vec<Variable>| {
            let mut vars = vec![Variable::new("Path", path)];
            vars.extend(extra);
            Condition::Expression(Expression {
                kind: kind.into(),
                vars,
                ..Default::default()
            })
        };
        let f = |p: &str| expr(expr_type::FILE, p.to_string(), vec![]);
        let d = |p: &str| expr(expr_type::FOLDER, p.to_string(), vec![]);
        assert!(evaluate(&[f("%DIR%/f.txt")], &v).unwrap());
        assert!(!evaluate(&[f("%DIR%/missing")], &v).unwrap());
        assert!(
            !evaluate(&[f("%DIR%")], &v).unwrap(),
            "a folder is not a file"
        );
        assert!(evaluate(&[d("%DIR%")], &v).unwrap());
        assert!(!evaluate(&[d("%DIR%/f.txt")], &v).unwrap());
        let dated = |op: &str| {
            expr(
                expr_type::FILE,
                "%DIR%/f.txt".into(),
                vec![
                    Variable::new("DateTime", "20000101000000.000000+000"),
                    Variable::new("DateTimeOperator", op),
                ],
            )
        };
        assert!(evaluate(&[dated("greater")], &v).unwrap());
        assert!(!evaluate(&[dated("less")], &v).unwrap());
    }

    #[cfg(not(windows))]
    #[test]
    fn windows_only_conditions_fail_with_their_name() {
        let v = Vars::new();
        for (kind, word) in [
            (expr_type::REGISTRY, "registry"),
            (expr_type::WMI, "WMI"),
            (expr_type::SOFTWARE, "software"),
            (expr_type::OS, "operating system"),
        ] {
            let c = Condition::Expression(Expression {
                kind: kind.into(),
                vars: vec![Variable::new("Query", "SELECT * FROM Win32_BIOS")],
                ..Default::default()
            });
            let e = evaluate(&[c], &v).unwrap_err();
            assert!(e.message.contains(word), "{kind}: {e}");
            assert!(e.to_string().contains(short_kind(kind)), "{e}");
        }
    }

    #[test]
    fn wmi_datetime() {
        assert_eq!(parse_wmi_datetime("19700101000000.000000+000"), Some(0));
        assert_eq!(parse_wmi_datetime("19700101010000.000000+060"), Some(0));
        assert_eq!(parse_wmi_datetime("2024"), None);
        assert_eq!(parse_wmi_datetime("20241301000000"), None);
    }

    #[test]
    fn like_edge_cases() {
        assert!(like("", "*"));
        assert!(like("abc", "a*c"));
        assert!(like("abcbc", "a*bc"));
        assert!(!like("ab", "a?c"));
        assert!(like("PC-LAB-01", "pc-lab-%"));
    }
}
