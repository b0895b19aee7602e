//! Task sequence variables: a case-insensitive store, `%NAME%` expansion, secrets.
//!
//! Semantics follow ConfigMgr 2007: names are case-insensitive (the first spelling set is kept
//! for display), `%NAME%` is replaced by the variable's value and left as written when no such
//! variable exists (so `%windir%` still reaches `cmd.exe`), expansion is not recursive, and
//! variables whose names start with `_SMSTS` are read-only to steps: only the engine sets them.
//!
//! Setting a variable to the empty string **deletes** it ("To delete a variable, set the
//! variable value to an empty string": *How to use task sequence variables*,
//! https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/using-task-sequence-variables):
//! afterwards `exists` is false and steps no longer see it in their environment.
//!
//! A variable is *secret* when it was declared so (a global variable with `hidden: true` in
//! YAML / `hidden="true"` in `<globalVarList>`, a *Set Task Sequence Variable* step with
//! `DoNotShowVariableValue`, a medium's `--secret`, [`Vars::set_secret`] for steps such as *Set
//! Dynamic Variables* with `IsSecret`), or its name is one ConfigMgr treats as a password
//! (`OSDJoinPassword`, …, [`KNOWN_SECRETS`]). Secret values are masked in the values a log
//! line shows ([`mask_secrets`]), never in the names of steps and groups (`log::Part`). The
//! flag belongs to the name: it outlives a deletion, so setting the variable again keeps it
//! secret.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Variable names whose values are secret without being declared so: the passwords, PINs and
/// keys of Microsoft's variable references. Neither page marks variables "secret"; these are
/// the ones whose documented value is a password, a PIN or a key.
///
/// - ConfigMgr, *Task sequence variables*
///   (<https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/task-sequence-variables>);
/// - MDT, *Toolkit reference: Properties*
///   (<https://learn.microsoft.com/en-us/mem/configmgr/mdt/properties>).
pub const KNOWN_SECRETS: &[&str] = &[
    // ConfigMgr: "the password for the OSDJoinAccount" (Apply Network Settings, Join Domain or
    // Workgroup).
    "OSDJoinPassword",
    // ConfigMgr: "the local Administrator account password" (Apply Windows Settings).
    "OSDLocalAdminPassword",
    // ConfigMgr: "the password for the Windows account (OSDCaptureAccount)" (Capture OS Image).
    "OSDCaptureAccountPassword",
    // ConfigMgr: "the password for the SMSConnectNetworkFolderAccount" (Connect To Network
    // Folder).
    "SMSConnectNetworkFolderPassword",
    // ConfigMgr: "the password for the account specified by SMSTSRunCommandLineUserName" (Run
    // Command Line); also an MDT property.
    "SMSTSRunCommandLineUserPassword",
    // ConfigMgr: "the password for the account specified by SMSTSRunPowerShellUserName" (Run
    // PowerShell Script).
    "SMSTSRunPowerShellUserPassword",
    // ConfigMgr: "the password assigned to all migrated local accounts" (Restore User State).
    "OSDMigrateLocalAccountPassword",
    // ConfigMgr: "the PIN for BitLocker encryption" (Enable BitLocker).
    "OSDBitLockerPIN",
    // ConfigMgr: "uses the specified value as the recovery password" (Enable BitLocker).
    "OSDBitLockerRecoveryPassword",
    // ConfigMgr: "a valid, 256-bit Base64-encoded BitLocker startup key" (Enable BitLocker).
    "OSDBitLockerStartupKey",
    // MDT: "the password that will be assigned to the local Administrator user account".
    "AdminPassword",
    // MDT: "the password used for the domain Administrator account specified in DomainAdmin".
    "DomainAdminPassword",
    // MDT: with UserDomain and UserID, the credentials used for SQLShare and LTI.
    "UserPassword",
    // MDT: "the password for the user account specified in the DBID property".
    "DBPwd",
    // MDT: "account credentials that can be used when promoting the server to a domain
    // controller".
    "ADDSPassword",
    // MDT: "the PIN to be assigned to the target computer when configuring BitLocker".
    "BDEPin",
    // Not on Microsoft's current pages; kept because their names say they hold passwords and
    // this list had them before (masking a value that is not secret costs little, showing one
    // that is costs much).
    "SMSTSRunCommandLineAsUserPassword",
    "OSDRegisteredUserPassword",
    "OSDNetworkJoinPassword",
    // tsforge's own: the password that unlocks a medium's secrets.
    "TSFORGE_MEDIA_PASSWORD",
    // tsforge's own: the token a runner presents to its monitor (docs/monitor.md).
    "TSForgeMonitorToken",
];

/// The text that replaces a secret value in logs.
pub const MASK: &str = "********";

/// Whether a name is secret by convention (case-insensitive).
pub fn is_known_secret(name: &str) -> bool {
    KNOWN_SECRETS.iter().any(|s| s.eq_ignore_ascii_case(name))
}

/// Whether steps may not set this variable (`_SMSTS*`, the engine's own).
pub fn is_read_only(name: &str) -> bool {
    name.get(..6)
        .is_some_and(|p| p.eq_ignore_ascii_case("_SMSTS"))
}

/// Whether `name` is a usable variable name: non-empty, no `=`, `%`, control characters or
/// NUL, at most 256 characters (ConfigMgr's limit).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 256
        && !name.chars().any(|c| c == '=' || c == '%' || c.is_control())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Var {
    /// The name as first written.
    pub name: String,
    pub value: String,
    pub secret: bool,
}

/// The variable store of one run. Serialized into the run's journal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vars {
    /// The variables that exist (never an empty value: setting one to "" deletes it).
    map: BTreeMap<String, Var>,
    /// Upper-cased names marked secret, set or not (the flag outlives a deletion).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    secret_names: BTreeSet<String>,
    /// Names of secret variables whose values were left out of this copy
    /// ([`Vars::without_secret_values`]).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    withheld: BTreeSet<String>,
}

/// A step tried to set a variable it may not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VarError {
    #[error("variable {0} is read-only: names starting with _SMSTS are set by the engine only")]
    ReadOnly(String),
    #[error("invalid variable name {0:?}: names are 1-256 characters without '=', '%' or control characters")]
    InvalidName(String),
}

impl Vars {
    pub fn new() -> Self {
        Self::default()
    }

    fn key(name: &str) -> String {
        name.to_uppercase()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(&Self::key(name)).map(|v| v.value.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(&Self::key(name))
    }

    /// Set a variable as the engine (no read-only check). Keeps an existing secret flag. An
    /// empty value deletes the variable (ConfigMgr's rule).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        let key = Self::key(name);
        self.withheld.retain(|w| Self::key(w) != key);
        if value.is_empty() {
            self.map.remove(&key);
            return;
        }
        let secret = is_known_secret(name) || self.secret_names.contains(&key);
        self.map
            .entry(key)
            .and_modify(|v| {
                v.value = value.clone();
                v.secret |= secret;
            })
            .or_insert_with(|| Var {
                name: name.to_string(),
                value,
                secret,
            });
    }

    /// Set a variable as a step would: `_SMSTS*` names are refused.
    /// An empty value deletes the variable, as for [`Vars::set`].
    pub fn set_from_step(&mut self, name: &str, value: impl Into<String>) -> Result<(), VarError> {
        check_step_name(name)?;
        self.set(name, value);
        Ok(())
    }

    /// Set only when not yet defined (defaults from `<globalVarList>`).
    pub fn set_default(&mut self, name: &str, value: impl Into<String>) {
        if !self.contains(name) {
            self.set(name, value);
        }
    }

    /// Mark a variable secret (it need not exist yet: the flag is kept for when it is set, and
    /// kept when it is deleted). Marking does not create the variable.
    pub fn mark_secret(&mut self, name: &str) {
        let key = Self::key(name);
        if let Some(v) = self.map.get_mut(&key) {
            v.secret = true;
        }
        self.secret_names.insert(key);
    }

    /// Set a secret variable: its value is masked in every log from now on (what *Set Dynamic
    /// Variables* does for a value with `IsSecret`). An empty value deletes it, the flag stays.
    pub fn set_secret(&mut self, name: &str, value: impl Into<String>) {
        self.mark_secret(name);
        self.set(name, value);
    }

    /// [`Vars::set_secret`] as a step would: `_SMSTS*` and invalid names are refused.
    pub fn set_secret_from_step(
        &mut self,
        name: &str,
        value: impl Into<String>,
    ) -> Result<(), VarError> {
        check_step_name(name)?;
        self.set_secret(name, value);
        Ok(())
    }

    pub fn is_secret(&self, name: &str) -> bool {
        let key = Self::key(name);
        self.map.get(&key).is_some_and(|v| v.secret)
            || self.secret_names.contains(&key)
            || is_known_secret(name)
    }

    /// Delete a variable (what setting it to an empty value does).
    pub fn remove(&mut self, name: &str) {
        self.map.remove(&Self::key(name));
    }

    /// Every variable, ordered by upper-cased name.
    pub fn iter(&self) -> impl Iterator<Item = &Var> {
        self.map.values()
    }

    /// A copy without the secret variables (their names and flags kept, and remembered as
    /// withheld): what may be written to disk.
    pub fn without_secret_values(&self) -> Vars {
        let mut out = self.clone();
        let secret: Vec<(String, String)> = out
            .map
            .iter()
            .filter(|(_, v)| v.secret)
            .map(|(k, v)| (k.clone(), v.name.clone()))
            .collect();
        for (key, name) in secret {
            out.map.remove(&key);
            out.secret_names.insert(key);
            out.withheld.insert(name);
        }
        out
    }

    /// Whether this copy left out the value of the secret variable `name`.
    pub fn is_withheld(&self, name: &str) -> bool {
        let key = Self::key(name);
        self.withheld.iter().any(|w| Self::key(w) == key)
    }

    /// Names of secret variables whose values this copy left out and nothing set since (lost
    /// when a run was resumed from a copy of its state without secret values).
    pub fn empty_secrets(&self) -> Vec<String> {
        self.withheld
            .iter()
            .filter(|n| !self.contains(n))
            .cloned()
            .collect()
    }

    /// The non-empty values of every secret variable (what the log must mask).
    pub fn secret_values(&self) -> Vec<String> {
        self.map
            .values()
            .filter(|v| v.secret && !v.value.is_empty())
            .map(|v| v.value.clone())
            .collect()
    }

    /// Expand `%NAME%` references; unknown names are left as written. Not recursive: a value
    /// that itself contains `%X%` is inserted as is.
    pub fn expand(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find('%') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            match after.find('%') {
                Some(end) => {
                    let name = &after[..end];
                    match (valid_name(name), self.get(name)) {
                        (true, Some(value)) => {
                            out.push_str(value);
                            rest = &after[end + 1..];
                        }
                        _ => {
                            // Not a known variable: keep the '%' and go on from the next
                            // character, so the closing '%' may open the next reference.
                            out.push('%');
                            rest = after;
                        }
                    }
                }
                None => {
                    out.push('%');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// A name a step may set: valid, and not `_SMSTS*`.
fn check_step_name(name: &str) -> Result<(), VarError> {
    if !valid_name(name) {
        return Err(VarError::InvalidName(name.to_string()));
    }
    if is_read_only(name) {
        return Err(VarError::ReadOnly(name.to_string()));
    }
    Ok(())
}

/// Secret values shorter than this many characters are masked only where they stand alone
/// (see [`mask_secrets`]).
pub const SHORT_SECRET_CHARS: usize = 4;

/// Replace the secret values in `text` with [`MASK`]; `text` is a *value* (a command line,
/// a program's output, a message quoting a property), never a step name (the logger keeps
/// names out of this, see `log::Part`).
///
/// - A secret of [`SHORT_SECRET_CHARS`] characters or more is masked wherever it occurs, even
///   inside a word: passwords are glued to other text in real command lines (`-p%Pass%`,
///   `/p:%Pass%`, `pwd=%Pass%;`), and a program may print one any way.
/// - A shorter secret is masked only where it stands alone: not preceded or followed by a
///   letter or digit. Masking a 1-character secret `1` inside every number, or `ab` inside
///   every word, would destroy the log and protect nothing (such a value is guessed at once).
///
/// Occurrences may overlap (secrets containing each other, a secret repeated): every
/// character of every occurrence is covered, and each run of covered text becomes one mask.
pub fn mask_secrets(text: &str, secrets: &[String]) -> String {
    let mut covered: Vec<(usize, usize)> = Vec::new();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        let short = s.chars().count() < SHORT_SECRET_CHARS;
        let mut from = 0;
        while let Some(i) = text[from..].find(s.as_str()).map(|i| i + from) {
            let end = i + s.len();
            let alone = || {
                let before = text[..i].chars().next_back();
                let after = text[end..].chars().next();
                !before.is_some_and(char::is_alphanumeric)
                    && !after.is_some_and(char::is_alphanumeric)
            };
            if !short || alone() {
                covered.push((i, end));
            }
            // Next search from the next character, so overlapping occurrences are found.
            from = i + text[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    if covered.is_empty() {
        return text.to_string();
    }
    covered.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    let mut k = 0;
    while k < covered.len() {
        let (start, mut end) = covered[k];
        k += 1;
        while k < covered.len() && covered[k].0 <= end {
            end = end.max(covered[k].1);
            k += 1;
        }
        out.push_str(&text[done..start]);
        out.push_str(MASK);
        done = end;
    }
    out.push_str(&text[done..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive_and_keep_first_spelling() {
        let mut v = Vars::new();
        v.set("OSDisk", "C:");
        v.set("osdisk", "D:");
        assert_eq!(v.get("OSDISK"), Some("D:"));
        assert_eq!(v.iter().next().unwrap().name, "OSDisk");
    }

    #[test]
    fn expansion_table() {
        let mut v = Vars::new();
        v.set("A", "1");
        v.set("Share", "\\\\srv\\s");
        v.set("P", "%A%");
        let cases = [
            ("plain", "no refs", "no refs"),
            ("one", "x%A%y", "x1y"),
            ("case", "%a%", "1"),
            ("unknown kept", "%windir%\\x", "%windir%\\x"),
            ("percent text", "100% of %A%", "100% of 1"),
            ("adjacent", "%A%%A%", "11"),
            ("lone", "50%", "50%"),
            ("not recursive", "%P%", "%A%"),
            ("empty name", "%%A%", "%1"),
            ("path", "%Share%\\%A%-smsts.log", "\\\\srv\\s\\1-smsts.log"),
        ];
        for (name, input, want) in cases {
            assert_eq!(v.expand(input), want, "case {name}");
        }
    }

    #[test]
    fn read_only_check_handles_multibyte_names() {
        // Regression (fuzz K1): byte 6 inside 'é' used to panic.
        assert!(!is_read_only("Compté"));
        assert!(is_read_only("_smstsX"));
        assert!(!is_read_only("_SMS"));
    }

    #[test]
    fn steps_cannot_set_smsts_variables() {
        let mut v = Vars::new();
        assert_eq!(
            v.set_from_step("_SMSTSInWinPE", "true"),
            Err(VarError::ReadOnly("_SMSTSInWinPE".into()))
        );
        assert!(v.set_from_step("bad=name", "x").is_err());
        v.set_from_step("Mine", "ok").unwrap();
        assert_eq!(v.get("mine"), Some("ok"));
    }

    #[test]
    fn secrets_are_known_or_marked_and_masked() {
        let mut v = Vars::new();
        v.set("OSDJoinPassword", "P@ss");
        v.mark_secret("Custom");
        v.set("Custom", "hunter2");
        v.set("Plain", "visible");
        let mut s = v.secret_values();
        s.sort();
        assert_eq!(s, vec!["P@ss".to_string(), "hunter2".to_string()]);
        assert_eq!(
            mask_secrets("join P@ss and hunter2, visible", &s),
            "join ******** and ********, visible"
        );
    }

    /// docs/engine.md, *Secrets in logs*: a value of 4 characters or more is masked wherever
    /// it occurs, even glued to other text; a shorter one only where it stands alone.
    #[test]
    fn masking_table() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let cases: &[(&str, &[&str], &str, &str)] = &[
            ("none", &[], "plain 1", "plain 1"),
            (
                "glued option",
                &["hunter2"],
                "7z -phunter2 /p:hunter2",
                "7z -p******** /p:********",
            ),
            (
                "inside a word",
                &["OSDisk"],
                "OSDisk-2 and MyOSDisk",
                "********-2 and My********",
            ),
            ("repeated, adjacent", &["abcd"], "abcdabcd!", "********!"),
            ("overlapping", &["aaaa"], "aaaaa b", "******** b"),
            (
                "one contains the other",
                &["P@ss", "P@ssw0rd"],
                "P@ssw0rd P@ss",
                "******** ********",
            ),
            (
                "short alone",
                &["1"],
                "pin 1, code 10, x1, 2021, (1)",
                "pin ********, code 10, x1, 2021, (********)",
            ),
            ("short glued stays", &["abc"], "-pabc abc", "-pabc ********"),
            ("short at the ends", &["ab"], "ab", "********"),
            (
                "short next to a non-ASCII letter",
                &["ab"],
                "éab ab",
                "éab ********",
            ),
            (
                "multibyte secret",
                &["pässwörd"],
                "x=pässwörd;",
                "x=********;",
            ),
            ("empty secret ignored", &[""], "text", "text"),
        ];
        for (name, secrets, text, want) in cases {
            assert_eq!(mask_secrets(text, &s(secrets)), *want, "case {name}");
        }
    }

    #[test]
    fn every_known_secret_is_secret_whatever_its_case() {
        for name in KNOWN_SECRETS {
            let mut v = Vars::new();
            v.set(&name.to_lowercase(), "v4lue-of-it");
            assert!(v.is_secret(name), "{name}");
            assert_eq!(v.secret_values(), vec!["v4lue-of-it".to_string()], "{name}");
        }
    }

    /// "To delete a variable, set the variable value to an empty string." — How to use task
    /// sequence variables,
    /// https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/using-task-sequence-variables
    #[test]
    fn an_empty_value_deletes_the_variable() {
        let mut v = Vars::new();
        v.set("Target", "lab");
        assert!(v.contains("target"));
        v.set("TARGET", "");
        assert!(!v.contains("Target"), "deleted, so `exists` is false");
        assert_eq!(v.get("Target"), None);
        assert_eq!(v.iter().count(), 0, "not in the environment either");
        assert_eq!(v.expand("x%Target%y"), "x%Target%y", "unknown again");
        // From a step too, and setting it again brings it back.
        v.set_from_step("Target", "prod").unwrap();
        v.set_from_step("Target", "").unwrap();
        assert!(!v.contains("Target"));
        // Deleting a variable that does not exist is not an error.
        v.set_from_step("Never", "").unwrap();
        // _SMSTS* stays read-only: a step cannot delete it either.
        v.set("_SMSTSLogPath", "/logs");
        assert!(v.set_from_step("_SMSTSLogPath", "").is_err());
        assert_eq!(v.get("_SMSTSLogPath"), Some("/logs"));
        // A default of "" defines nothing.
        v.set_default("Empty", "");
        assert!(!v.contains("Empty"));
    }

    #[test]
    fn marking_secret_creates_nothing_and_the_flag_outlives_a_deletion() {
        let mut v = Vars::new();
        v.mark_secret("Token");
        assert!(!v.contains("Token"), "marked, not set");
        assert!(v.is_secret("token"));
        v.set("Token", "abc123");
        assert_eq!(v.secret_values(), vec!["abc123".to_string()]);
        v.set("Token", "");
        assert!(!v.contains("Token"));
        v.set("Token", "def456");
        assert_eq!(v.secret_values(), vec!["def456".to_string()]);
        v.set_secret_from_step("Dyn", "s3cret").unwrap();
        assert!(v.is_secret("DYN"));
        assert!(v.set_secret_from_step("_SMSTSX", "1").is_err());
    }

    #[test]
    fn copies_on_disk_withhold_secret_values_and_say_which() {
        let mut v = Vars::new();
        v.set("OSDJoinPassword", "P@ss");
        v.set("Plain", "x");
        let disk = v.without_secret_values();
        assert!(!disk.contains("OSDJoinPassword"));
        assert!(disk.secret_values().is_empty());
        assert_eq!(disk.empty_secrets(), vec!["OSDJoinPassword".to_string()]);
        assert!(disk.is_withheld("osdjoinpassword"));
        assert_eq!(disk.get("Plain"), Some("x"));
        let json = serde_json::to_string(&disk).unwrap();
        assert!(!json.contains("P@ss"), "{json}");
        let mut back: Vars = serde_json::from_str(&json).unwrap();
        back.set("OSDJoinPassword", "again");
        assert!(back.empty_secrets().is_empty());
        assert!(back.is_secret("OSDJoinPassword"));
    }
}
