//! *Apply Windows Settings* and *Apply Network Settings* on a Windows tree in a folder (the
//! real binary on the exported-XML and YAML fixtures in tests/fixtures/sequences/unattend/):
//! `Windows/Panther/unattend.xml` is parsed with quick-xml and checked element by element,
//! the administrator's own settings still there, no password in smsts.log.
//!
//! Microsoft pages these tests encode:
//! - SMS_TaskSequence_ApplyWindowsSettingsAction (AdminPassword/OSDLocalAdminPassword,
//!   RandomAdminPassword, RegisteredOrgName, RegisteredUserName, TimeZone, ProductKey):
//!   <https://learn.microsoft.com/intune/configmgr/develop/reference/osd/sms_tasksequence_applywindowssettingsaction-server-wmi-class>
//! - SMS_TaskSequence_ApplyNetworkSettingsAction (DomainName, DomainOUName, DomainUsername/
//!   OSDJoinAccount, DomainPassword/OSDJoinPassword, NetworkJoinType 0/1, WorkgroupName):
//!   <https://learn.microsoft.com/intune/configmgr/develop/reference/osd/sms_tasksequence_applynetworksettingsaction-server-wmi-class>
//! - UserAccounts/AdministratorPassword, Value hidden as base64(UTF-16LE(password +
//!   "AdministratorPassword")), PlainText false:
//!   <https://learn.microsoft.com/windows-hardware/customize/desktop/unattend/microsoft-windows-shell-setup-useraccounts>
//! - Microsoft-Windows-UnattendedJoin Identification (JoinDomain, MachineObjectOU,
//!   Credentials, JoinWorkgroup: "only one of these settings can be present"):
//!   <https://learn.microsoft.com/windows-hardware/customize/desktop/unattend/microsoft-windows-unattendedjoin-identification-joinworkgroup>

use crate::common::{repo, tsforge};
use base64::Engine as _;
use quick_xml::events::Event;
use quick_xml::Reader;
use std::path::Path;

/// Every element's text in the file, keyed `pass/component/Element/Child`.
pub(crate) fn settings(file: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut r = Reader::from_str(&text);
    let mut stack: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut current = String::new();
    loop {
        match r.read_event().unwrap() {
            Event::Eof => break,
            Event::Start(e) => {
                let name = String::from_utf8(e.local_name().as_ref().to_vec()).unwrap();
                let label = |key: &[u8]| {
                    e.attributes()
                        .map(|a| a.unwrap())
                        .find(|a| a.key.local_name().as_ref() == key)
                        .map(|a| String::from_utf8(a.value.to_vec()).unwrap())
                };
                let part = match name.as_str() {
                    "settings" => label(b"pass").unwrap(),
                    "component" => label(b"name").unwrap(),
                    _ => name,
                };
                stack.push(part);
                current.clear();
            }
            Event::Text(t) => current.push_str(&t.unescape().unwrap()),
            Event::End(_) => {
                let path = stack[1..].join("/");
                if !current.trim().is_empty() {
                    out.push((path, current.trim().to_string()));
                }
                current.clear();
                stack.pop();
            }
            _ => {}
        }
    }
    out
}

pub(crate) fn get<'a>(s: &'a [(String, String)], path: &str) -> Option<&'a str> {
    let all: Vec<&str> = s
        .iter()
        .filter(|(p, _)| p == path)
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(all.len() <= 1, "{path} appears {} times: {s:?}", all.len());
    all.first().copied()
}

/// A Windows tree (osconfig::detect looks for Windows/System32/config/SYSTEM) holding the
/// administrator's answer file where Apply Operating System Image puts it.
fn windows_tree(root: &Path, answer: Option<&str>) {
    std::fs::create_dir_all(root.join("Windows/System32/config")).unwrap();
    std::fs::write(root.join("Windows/System32/config/SYSTEM"), b"regf").unwrap();
    if let Some(a) = answer {
        std::fs::create_dir_all(root.join("Windows/Panther")).unwrap();
        std::fs::copy(
            repo(&format!("tests/fixtures/sequences/unattend/{a}")),
            root.join("Windows/Panther/unattend.xml"),
        )
        .unwrap();
    }
}

fn run(d: &Path, fixture: &str, vars: &[&str]) -> (i32, String) {
    let _ = std::fs::remove_dir_all(d.join("state"));
    let f = repo(&format!("tests/fixtures/sequences/unattend/{fixture}"));
    let mut args = vec![
        "run",
        f.as_str(),
        "--state-dir",
        "state",
        "--var",
        "OSDTargetSystemDrive=win",
    ];
    for v in vars {
        args.extend(["--var", v]);
    }
    let (code, out, err) = tsforge(d, &args);
    let log = std::fs::read_to_string(d.join("state/smsts.log")).unwrap_or_default();
    (code, format!("{out}\n{err}\n{log}"))
}

pub(crate) fn decode_admin_password(value: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .unwrap();
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).unwrap()
}

/// The settings `windows-domain.xml` (the exported Apply Windows Settings and Apply Network
/// Settings steps) merges into `admin-unattend.xml`, checked element by element: the computer
/// name, time zone, owner, organisation, product key, the hidden administrator password, the
/// domain join with OU and credentials (and no workgroup), and the administrator's own
/// CopyProfile kept. Returns the hidden password value.
pub(crate) fn check_domain_fixture(s: &[(String, String)], computer: &str) -> String {
    let shell = "specialize/Microsoft-Windows-Shell-Setup";
    assert_eq!(get(s, &format!("{shell}/ComputerName")), Some(computer));
    assert_eq!(
        get(s, &format!("{shell}/TimeZone")),
        Some("W. Europe Standard Time")
    );
    assert_eq!(
        get(s, &format!("{shell}/RegisteredOwner")),
        Some("IT Department")
    );
    assert_eq!(
        get(s, &format!("{shell}/RegisteredOrganization")),
        Some("Contoso")
    );
    assert_eq!(
        get(s, &format!("{shell}/ProductKey")),
        Some("VK7JG-NPHTM-C97JM-9MPGT-3V66T")
    );
    let admin = "oobeSystem/Microsoft-Windows-Shell-Setup/UserAccounts/AdministratorPassword";
    assert_eq!(get(s, &format!("{admin}/PlainText")), Some("false"));
    let hidden = get(s, &format!("{admin}/Value")).unwrap();
    assert_eq!(
        decode_admin_password(hidden),
        "Adm1n!LabAdministratorPassword"
    );
    let id = "specialize/Microsoft-Windows-UnattendedJoin/Identification";
    assert_eq!(
        get(s, &format!("{id}/JoinDomain")),
        Some("corp.contoso.com")
    );
    assert_eq!(
        get(s, &format!("{id}/MachineObjectOU")),
        Some("OU=Workstations,DC=corp,DC=contoso,DC=com")
    );
    assert_eq!(get(s, &format!("{id}/Credentials/Domain")), Some("CORP"));
    assert_eq!(
        get(s, &format!("{id}/Credentials/Username")),
        Some("svc-join")
    );
    // The join password has no hidden form in the answer file.
    assert_eq!(
        get(s, &format!("{id}/Credentials/Password")),
        Some("J0in!Secret")
    );
    // JoinDomain and JoinWorkgroup cannot both be present: the administrator's workgroup went.
    assert_eq!(get(s, &format!("{id}/JoinWorkgroup")), None);
    // The administrator's other settings are untouched.
    assert_eq!(get(s, &format!("{shell}/CopyProfile")), Some("true"));
    hidden.to_string()
}

/// The exported steps merged into the administrator's answer file: domain join with OU and
/// credentials, the administrator password hidden, their other settings untouched.
#[test]
fn exported_steps_merge_into_the_administrators_answer_file() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    windows_tree(&d.join("win"), Some("admin-unattend.xml"));
    let (code, log) = run(d, "windows-domain.xml", &["MachineName=LAB-0042"]);
    assert_eq!(code, 0, "{log}");
    let s = settings(&d.join("win/Windows/Panther/unattend.xml"));
    let hidden = check_domain_fixture(&s, "LAB-0042");
    let hidden = hidden.as_str();
    let run1 = "specialize/Microsoft-Windows-Deployment/RunSynchronous/RunSynchronousCommand";
    assert_eq!(
        get(&s, &format!("{run1}/Path")),
        Some("cmd /c echo first & exit 0")
    );
    assert_eq!(get(&s, &format!("{run1}/Order")), Some("1"));
    let oobe = "oobeSystem/Microsoft-Windows-Shell-Setup/OOBE";
    assert_eq!(get(&s, &format!("{oobe}/HideEULAPage")), Some("true"));
    assert_eq!(get(&s, &format!("{oobe}/ProtectYourPC")), Some("3"));
    let text = std::fs::read_to_string(d.join("win/Windows/Panther/unattend.xml")).unwrap();
    assert!(text.contains("wcm:action=\"add\""), "{text}");
    assert!(
        text.contains("<!-- The administrator's answer file"),
        "{text}"
    );
    // The log says which of the administrator's values were replaced; no password in it.
    assert!(
        log.contains(
            "specialize/Microsoft-Windows-Shell-Setup/ComputerName = \"LAB-0042\" (replaces \
             the answer file's own value)"
        ),
        "{log}"
    );
    assert!(
        log.contains("Identification/JoinWorkgroup removed from the answer file"),
        "{log}"
    );
    for secret in ["Adm1n!Lab", "J0in!Secret", hidden] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    let smsts = std::fs::read_to_string(d.join("state/smsts.log")).unwrap();
    assert!(
        smsts.contains("AdministratorPassword/Value = (hidden)"),
        "{smsts}"
    );
}

/// YAML short names, no answer file before: a new one; a random administrator password
/// writes none; a workgroup join.
#[test]
fn yaml_steps_write_a_new_answer_file_with_a_workgroup() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    windows_tree(&d.join("win"), None);
    let (code, log) = run(d, "windows-workgroup.yaml", &["Site=HQ"]);
    assert_eq!(code, 0, "{log}");
    let file = d.join("win/Windows/Panther/unattend.xml");
    let s = settings(&file);
    let shell = "specialize/Microsoft-Windows-Shell-Setup";
    assert_eq!(get(&s, &format!("{shell}/ComputerName")), Some("KIOSK-HQ"));
    assert_eq!(
        get(&s, &format!("{shell}/TimeZone")),
        Some("Pacific Standard Time")
    );
    assert_eq!(
        get(&s, &format!("{shell}/RegisteredOwner")),
        Some("Front desk")
    );
    assert_eq!(
        get(&s, &format!("{shell}/RegisteredOrganization")),
        Some("Fabrikam")
    );
    let id = "specialize/Microsoft-Windows-UnattendedJoin/Identification";
    assert_eq!(get(&s, &format!("{id}/JoinWorkgroup")), Some("LOBBY"));
    assert_eq!(get(&s, &format!("{id}/JoinDomain")), None);
    assert!(
        !s.iter().any(|(p, _)| p.contains("AdministratorPassword")),
        "{s:?}"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("<unattend xmlns=\"urn:schemas-microsoft-com:unattend\">"),
        "{text}"
    );
    assert!(
        text.contains("processorArchitecture=\"amd64\" publicKeyToken=\"31bf3856ad364e35\""),
        "{text}"
    );
    assert!(log.contains("writing a new one"), "{log}");
}

/// Errors: the administrator's file not XML (file, line, column; left as it was), a fixed
/// a join type other than 0 and 1.
#[test]
fn errors_name_the_input_and_what_is_wrong() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    windows_tree(&d.join("win"), Some("not-xml.xml"));
    let before = std::fs::read(d.join("win/Windows/Panther/unattend.xml")).unwrap();
    let (code, log) = run(d, "windows-domain.xml", &["MachineName=LAB-1"]);
    assert_ne!(code, 0, "{log}");
    assert!(
        log.contains("Windows/Panther/unattend.xml: line 5, column"),
        "{log}"
    );
    assert!(log.contains("not well-formed XML"), "{log}");
    assert_eq!(
        std::fs::read(d.join("win/Windows/Panther/unattend.xml")).unwrap(),
        before
    );
    windows_tree(&d.join("win"), Some("admin-unattend.xml"));
    let (code, log) = run(
        d,
        "windows-domain.xml",
        &["MachineName=LAB-1", "OSDNetworkJoinType=2"],
    );
    assert_ne!(code, 0, "{log}");
    assert!(
        log.contains(
            "NetworkJoinType (OSDNetworkJoinType) is \"2\": 0 joins a domain, 1 a workgroup"
        ),
        "{log}"
    );
}

/// *Apply Operating System Image* with the administrator's answer file
/// (`ConfigFilePackage` + `ConfigFileName`, Microsoft's SMS_TaskSequence_ApplyOperatingSystemAction
/// class) copies it from its package to `Windows\Panther\unattend.xml` of the applied Windows;
/// *Apply Windows Settings* then merges into it. A package the step names that is not on the
/// distribution point fails the step, naming it.
#[test]
fn apply_os_places_the_administrators_answer_file_and_settings_merge_into_it() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    windows_tree(&d.join("tree"), None);
    let (code, _, err) = tsforge(d, &["capture", "tree", "win.tsimg"]);
    assert_eq!(code, 0, "{err}");
    let answer = d.join("answer");
    std::fs::create_dir_all(&answer).unwrap();
    std::fs::copy(
        repo("tests/fixtures/sequences/unattend/admin-unattend.xml"),
        answer.join("Unattend.xml"),
    )
    .unwrap();
    let (code, _, err) = tsforge(
        d,
        &[
            "package", "build", "answer", "--id", "LAB00020", "--out", "dp",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let seq = "steps:\n  - name: Apply Windows\n    type: apply-image\n    properties:\n      \
               ImagePath: win.tsimg\n      Destination: out\n      ConfigFilePackage: %PKG%\n      \
               ConfigFileName: Unattend.xml\n  - name: Settings\n    type: apply-windows-settings\n    \
               properties:\n      ComputerName: LAB-0777\n      RandomAdminPassword: \"true\"\n";
    std::fs::write(d.join("ok.yaml"), seq.replace("%PKG%", "LAB00020")).unwrap();
    let (code, out, err) = tsforge(
        d,
        &["run", "ok.yaml", "--content", "dp", "--state-dir", "state"],
    );
    let log = std::fs::read_to_string(d.join("state/smsts.log")).unwrap_or_default();
    assert_eq!(code, 0, "{out}{err}\n{log}");
    assert!(
        log.contains("Answer file Unattend.xml from package LAB00020 placed at Windows\\Panther\\unattend.xml"),
        "{log}"
    );
    let s = settings(&d.join("out/Windows/Panther/unattend.xml"));
    let shell = "specialize/Microsoft-Windows-Shell-Setup";
    assert_eq!(get(&s, &format!("{shell}/ComputerName")), Some("LAB-0777"));
    // The administrator's own settings came with their file and stayed.
    assert_eq!(get(&s, &format!("{shell}/CopyProfile")), Some("true"));
    let oobe = "oobeSystem/Microsoft-Windows-Shell-Setup/OOBE";
    assert_eq!(get(&s, &format!("{oobe}/HideEULAPage")), Some("true"));

    std::fs::write(
        d.join("missing.yaml"),
        seq.replace("%PKG%", "LAB00099")
            .replace("Destination: out", "Destination: out2"),
    )
    .unwrap();
    let (code, out, err) = tsforge(
        d,
        &[
            "run",
            "missing.yaml",
            "--content",
            "dp",
            "--state-dir",
            "state2",
        ],
    );
    assert_ne!(code, 0, "{out}{err}");
    assert!(format!("{out}{err}").contains("LAB00099"), "{out}{err}");
    assert!(
        !d.join("out2").exists(),
        "written before the answer file's package was found"
    );
}
