//! *Run Task Sequence* as ConfigMgr exports it, through the real binary: the console's
//! `<subtasksequence>` element and the older `<step type="SMS_TaskSequence_SubTasksequence">`,
//! children found by the package ID in their wrapper, and the variables shared both ways.
//!
//! Microsoft: the step ("Run Task Sequence", the child runs with the parent's task sequence
//! environment) <https://learn.microsoft.com/mem/configmgr/osd/understand/task-sequence-steps#BKMK_RunTaskSequence>,
//! and its `TsPackageID` property
//! <https://learn.microsoft.com/mem/configmgr/develop/reference/osd/sms_tasksequence_subtasksequence-server-wmi-class>.

use std::path::{Path, PathBuf};
use tsforge_runtime::sequence::{self, xml, yaml, Node, StepElement};

use crate::common::tsforge;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sequences/run-task-sequence")
}

/// The fixture folder copied to a fresh temporary folder (runs write `marks` beside it).
fn copy_fixtures(to: &Path) {
    for e in std::fs::read_dir(fixtures()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

const EXPECTED_MARKS: &str =
    "apps: hello-from-parent from-apps-globals\ndrivers: hello-from-child\nparent: hello-from-child\n";

#[test]
fn both_step_forms_find_their_child_by_package_id_and_share_variables() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixtures(dir.path());
    // validate follows both children (found by the PackageID in their wrappers, not by name).
    let (code, out, err) = tsforge(dir.path(), &["validate", "parent.xml"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("0 error(s), 0 warning(s)"), "{err}");
    // The dry run shows the children's steps in place of the two steps.
    let (code, out, err) = tsforge(dir.path(), &["run", "parent.xml", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    let want = [
        "GROUP \"Run Task Sequence: Apps\"",
        "RUN    2 \"Apps child reads the parent's variable\"",
        "echo \"apps: hello-from-parent from-apps-globals\" >> marks",
        "GROUP \"Run Task Sequence: Drivers\"",
        "RUN    4 \"Drivers child\"",
        "RUN    5 \"Parent reads the child's variable\"",
    ];
    let mut at = 0;
    for w in want {
        let i = out[at..]
            .find(w)
            .unwrap_or_else(|| panic!("{w:?} in order in {out}"));
        at += i + w.len();
    }
    // A real run: the child reads the parent's variable and its own globals; the parent and the
    // next child read what the child set.
    let (code, _, err) = tsforge(
        dir.path(),
        &["run", "parent.xml", "--state-dir", "state", "--no-fsync"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("marks")).unwrap(),
        EXPECTED_MARKS
    );
}

#[test]
fn children_are_found_in_sequence_dirs_by_package_id() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("library");
    std::fs::create_dir(&lib).unwrap();
    copy_fixtures(&lib);
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::rename(lib.join("parent.xml"), run.join("parent.xml")).unwrap();
    // Without --sequence-dir: a positioned error for each step, naming the ID and the folders.
    let (code, out, _) = tsforge(&run, &["validate", "parent.xml"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("parent.xml:18:7: step \"Run Task Sequence: Apps\": child sequence \"LAB00101\" not found")
            && out.contains("with the package ID LAB00101"),
        "{out}"
    );
    assert!(out.contains("parent.xml:30:7: step \"Run Task Sequence: Drivers\": child sequence \"LAB00102\" not found"), "{out}");
    let (code, _, err) = tsforge(&run, &["run", "parent.xml", "--state-dir", "s0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("parent.xml:18:7"), "{err}");
    assert!(!run.join("marks").exists(), "nothing ran");
    // With it, the run is the same as beside the children.
    let (code, _, err) = tsforge(
        &run,
        &[
            "run",
            "parent.xml",
            "--sequence-dir",
            lib.to_str().unwrap(),
            "--state-dir",
            "state",
            "--no-fsync",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(run.join("marks")).unwrap(),
        EXPECTED_MARKS
    );
    // Two files carrying one package ID: an error naming both, never a guess.
    std::fs::copy(lib.join("drivers.xml"), lib.join("drivers-copy.xml")).unwrap();
    let (code, out, _) = tsforge(
        &run,
        &[
            "validate",
            "parent.xml",
            "--sequence-dir",
            lib.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("parent.xml:30:7: ")
            && out.contains("several files carry the package ID LAB00102")
            && out.contains("drivers-copy.xml")
            && out.contains("drivers.xml"),
        "{out}"
    );
}

/// A child kept in a package of its own on a distribution point (as ConfigMgr keeps every task
/// sequence in a package): the run fetches the package (verified, into its cache) and runs the
/// sequence file in it; without the package, the error names the distribution point.
#[test]
fn children_are_taken_from_packages_on_a_distribution_point() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("library");
    std::fs::create_dir(&lib).unwrap();
    copy_fixtures(&lib);
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::rename(lib.join("parent.xml"), run.join("parent.xml")).unwrap();
    let dp = dir.path().join("dp");
    // LAB00101: the child under another name (found by the package ID in its wrapper);
    // LAB00102: the only sequence file of its package.
    for (id, file, name) in [
        ("LAB00101", "apps.xml", "task-sequence.xml"),
        ("LAB00102", "drivers.xml", "drivers.xml"),
    ] {
        let src = dir.path().join(id);
        std::fs::create_dir(&src).unwrap();
        std::fs::copy(lib.join(file), src.join(name)).unwrap();
        std::fs::write(src.join("readme.txt"), "not a sequence").unwrap();
        let (code, out, err) = tsforge(
            dir.path(),
            &[
                "package",
                "build",
                src.to_str().unwrap(),
                "--id",
                id,
                "--out",
                dp.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 0, "{out}{err}");
    }
    // The first child only: the second is missing from the distribution point.
    let half = dir.path().join("half-dp");
    let (code, out, err) = tsforge(
        dir.path(),
        &[
            "package",
            "build",
            dir.path().join("LAB00101").to_str().unwrap(),
            "--id",
            "LAB00101",
            "--out",
            half.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = tsforge(
        &run,
        &[
            "run",
            "parent.xml",
            "--content",
            half.to_str().unwrap(),
            "--state-dir",
            "s0",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("parent.xml:30:7")
            && err.contains("child sequence \"LAB00102\"")
            && err.contains("distribution point")
            && err.contains("LAB00102"),
        "{err}"
    );
    assert!(!run.join("marks").exists(), "nothing ran");
    // The dry run reads the children from the packages too, and keeps nothing.
    let (code, out, err) = tsforge(
        &run,
        &[
            "run",
            "parent.xml",
            "--dry-run",
            "--content",
            dp.to_str().unwrap(),
            "--state-dir",
            "dry",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("RUN    4 \"Drivers child\""), "{out}");
    assert!(
        !run.join("dry").exists(),
        "the dry run wrote its state folder"
    );
    // With both packages: the same run as beside the children, and the packages are in the
    // run's cache.
    let (code, _, err) = tsforge(
        &run,
        &[
            "run",
            "parent.xml",
            "--content",
            dp.to_str().unwrap(),
            "--state-dir",
            "state",
            "--no-fsync",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(run.join("marks")).unwrap(),
        EXPECTED_MARKS
    );
    assert!(run.join("state/cache/LAB00101").is_dir());
    assert!(run.join("state/cache/LAB00102").is_dir());
}

#[test]
fn the_subtasksequence_element_round_trips_through_yaml_and_convert() {
    let src = fixtures().join("parent.xml");
    let (original, _) = sequence::load(&src).unwrap();
    let forms: Vec<StepElement> = original
        .items
        .iter()
        .filter_map(|n| match n {
            Node::Step(s) => Some(s.element),
            Node::Group(_) => None,
        })
        .collect();
    assert_eq!(
        forms,
        [
            StepElement::Step,
            StepElement::SubTaskSequence,
            StepElement::Step,
            StepElement::Step
        ]
    );
    let y = yaml::write(&original);
    assert!(y.contains("element: subtasksequence"), "{y}");
    let via_yaml = yaml::parse(&y, Path::new("p.yaml")).unwrap();
    assert_eq!(via_yaml, original);
    let x = xml::write(&via_yaml);
    assert!(
        x.contains("<subtasksequence type=\"SMS_TaskSequence_SubTasksequence\" name=\"Run Task Sequence: Apps\"")
            && x.contains("</subtasksequence>"),
        "{x}"
    );
    assert_eq!(x.matches("<subtasksequence ").count(), 1, "{x}");
    assert_eq!(xml::parse(&x, Path::new("p.xml")).unwrap(), original);
    // Through the binary, as an administrator converts it: YAML, then XML again.
    let dir = tempfile::tempdir().unwrap();
    copy_fixtures(dir.path());
    let (code, _, err) = tsforge(
        dir.path(),
        &["convert", "parent.xml", "--to", "yaml", "-o", "parent.yaml"],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = tsforge(
        dir.path(),
        &["convert", "parent.yaml", "--to", "xml", "-o", "back.xml"],
    );
    assert_eq!(code, 0, "{err}");
    let (back, _) = sequence::load(&dir.path().join("back.xml")).unwrap();
    assert_eq!(back, original);
    // The YAML form runs too, its children found by package ID as well.
    let (code, _, err) = tsforge(
        dir.path(),
        &["run", "parent.yaml", "--state-dir", "state", "--no-fsync"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("marks")).unwrap(),
        EXPECTED_MARKS
    );
}
