//! The run's state moves from the boot environment's RAM to `_SMSTaskSequence` on the deployed
//! disk once a *Format and Partition Disk* step made it, so a restart (or a power cut) that
//! loses the RAM disk resumes there: `tsforge run --state-on-disk`, the engine path
//! `tsforge boot` takes. The folder on the disk image is read with mtools and the file system
//! checked with fsck.fat, not only with our own reader.

use std::path::Path;
use std::process::{Command, Stdio};
use tsforge_runtime::disk::{layout, Disk};

use crate::common::data;
use crate::common::used_disk;
use crate::common::{tool, tsforge_text};

/// `tsforge run ts.yaml --state-on-disk` on disk 0 = disk.img with the state in `state`.
fn run_on_disk(d: &Path, state: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec![
        "run",
        "ts.yaml",
        "--state-dir",
        state,
        "--disk",
        "0=disk.img",
        "--state-on-disk",
    ];
    args.extend_from_slice(extra);
    tsforge_text(d, &args)
}

const SEQUENCE: &str = r#"
name: Restart in the middle
steps:
  - name: Partition disk 0
    type: partition-disk
    properties:
      DiskIndex: "0"
      PartitionStyle: GPT
      Partitions0Type: EFI
      Partitions0FileSystem: FAT32
      Partitions0Size: "40"
      Partitions0SizeUnits: MB
      Partitions0VolumeName: SYSTEM
      Partitions1Type: Primary
      Partitions1FileSystem: FAT32
      Partitions1Size: "100"
      Partitions1SizeUnits: "%"
      Partitions1VolumeName: DATA
      Partitions1VolumeVariable: OSDisk
      Partitions: "2"
  - name: Before the restart
    run: echo before >> ran.txt
  - name: Restart
    type: restart
    properties:
      SMSRebootTimeout: "0"
  - name: After the restart
    run: echo "after %OSDisk%" >> ran.txt
"#;

/// (offset, FAT label) of each partition of `disk`.
fn partitions(disk: &Path) -> Vec<(u64, String)> {
    let d = Disk::open(disk, false).unwrap();
    let t = layout::read_table(&d).unwrap().unwrap();
    t.partitions
        .iter()
        .map(|p| (p.start, p.name.clone()))
        .collect()
}

fn mtools(prog: &str, image_at: &str, path: &str) -> Option<(bool, String)> {
    let bin = tool(prog)?;
    let out = Command::new(bin)
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i", image_at, path])
        .output()
        .unwrap();
    Some((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// fsck.fat -n on a copy of the partition at `offset` (fsck.fat reads whole devices/files).
fn fsck_partition(disk: &Path, offset: u64, len: u64, scratch: &Path) {
    let Some(fsck) = tool("fsck.fat") else {
        return;
    };
    let data = std::fs::read(disk).unwrap();
    std::fs::write(scratch, &data[offset as usize..(offset + len) as usize]).unwrap();
    let out = Command::new(fsck).arg("-n").arg(scratch).output().unwrap();
    assert!(
        out.status.success(),
        "fsck.fat -n: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_restart_that_loses_the_ram_state_resumes_from_the_deployed_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("ts.yaml"), SEQUENCE).unwrap();
    used_disk::random_disk(&d.join("disk.img"), 128 << 20);

    // First boot: runs up to the restart (--no-reboot: exit code 3 instead of rebooting).
    let (code, out) = run_on_disk(
        d,
        "ram1",
        &["--no-reboot", "--var", "OSDJoinPassword=hunter2-secret"],
    );
    assert_eq!(code, 3, "{out}");
    let log = std::fs::read_to_string(d.join("ram1/smsts.log")).unwrap();
    assert!(
        log.contains("disk.img:2 in _SMSTaskSequence (a restart resumes from there)"),
        "{log}"
    );

    // The state is on the DATA partition (the OSDisk one, not the larger-numbered ESP rule).
    let parts = partitions(&d.join("disk.img"));
    let data_at = format!("{}@@{}", d.join("disk.img").display(), parts[1].0);
    let esp_at = format!("{}@@{}", d.join("disk.img").display(), parts[0].0);
    if let Some((ok, listing)) = mtools("mdir", &data_at, "::/_SMSTaskSequence") {
        assert!(ok, "{listing}");
        for f in [
            "STATE    JSON",
            "PROGRAM  JSON",
            "STEPS    JSONL",
            "SMSTS    LOG",
        ] {
            let short = f.split_whitespace().next().unwrap().to_ascii_lowercase();
            assert!(
                listing.to_ascii_lowercase().contains(&short),
                "{short} missing in {listing}"
            );
        }
        let (ok, state) = mtools("mtype", &data_at, "::/_SMSTaskSequence/state.json").unwrap();
        assert!(ok, "{state}");
        assert!(state.contains("\"phase\":\"restarting\""), "{state}");
        assert!(state.contains("OSDJoinPassword"), "{state}");
        assert!(
            !state.contains("hunter2-secret"),
            "a secret reached the disk: {state}"
        );
        let (ok, esp) = mtools("mdir", &esp_at, "::/").unwrap();
        assert!(ok, "{esp}");
        assert!(!esp.contains("_SMSTas"), "state on the ESP too: {esp}");
    }

    // The RAM disk is gone after the restart; a new state directory finds the run on disk.
    std::fs::remove_dir_all(d.join("ram1")).unwrap();
    let (code, out) = run_on_disk(d, "ram2", &["--no-reboot"]);
    assert_eq!(code, 0, "{out}");
    let ran = std::fs::read_to_string(d.join("ran.txt")).unwrap();
    let lines: Vec<&str> = ran.lines().collect();
    assert_eq!(lines.len(), 2, "every step runs exactly once: {ran}");
    assert_eq!(lines[0], "before");
    assert!(
        lines[1].starts_with("after /") && lines[1].ends_with("/disk.img:2"),
        "OSDisk survived the restart: {ran}"
    );
    let log = std::fs::read_to_string(d.join("ram2/smsts.log")).unwrap();
    assert!(
        log.contains("disk.img:2 (_SMSTaskSequence); it is kept there"),
        "{log}"
    );
    assert!(log.contains("OSDJoinPassword"), "{log}");
    assert!(log.contains("/disk.img:2: the run ended"), "{log}");
    // The earlier boot's lines came back with the state: one log for the whole run.
    assert!(log.contains("Before the restart"), "{log}");

    if let Some((ok, listing)) = mtools("mdir", &data_at, "::/") {
        assert!(ok, "{listing}");
        assert!(
            !listing.contains("_SMSTas"),
            "_SMSTaskSequence left behind: {listing}"
        );
        // A run that succeeded leaves no logs on the deployed disk (a failed one does: below).
        assert!(!listing.contains("SMSTSLog"), "{listing}");
    }
    let d2 = Disk::open(&d.join("disk.img"), false).unwrap();
    let t = layout::read_table(&d2).unwrap().unwrap();
    for p in &t.partitions {
        fsck_partition(&d.join("disk.img"), p.start, p.len, &d.join("part.img"));
    }

    // A third run with a fresh state directory finds nothing on the disk: it starts over.
    let (code, out) = run_on_disk(d, "ram3", &["--no-reboot"]);
    assert_eq!(code, 3, "{out}");
}

/// Without a FAT partition the state stays in RAM and the log says why.
#[test]
fn no_fat_partition_keeps_the_state_in_ram_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(
        d.join("ts.yaml"),
        r#"
name: Unformatted
steps:
  - name: Partition disk 0
    type: partition-disk
    properties:
      DiskIndex: "0"
      PartitionStyle: MBR
      Partitions0Type: Primary
      Partitions0Size: "100"
      Partitions0SizeUnits: "%"
      Partitions: "1"
"#,
    )
    .unwrap();
    used_disk::random_disk(&d.join("disk.img"), 16 << 20);
    let (code, out) = run_on_disk(d, "s", &[]);
    assert_eq!(code, 0, "{out}");
    let log = std::fs::read_to_string(d.join("s/smsts.log")).unwrap();
    assert!(
        log.contains("The run's state stays in RAM, so a restart starts the sequence over: ")
            && log.contains("disk.img has no FAT partition"),
        "{log}"
    );
}

/// Files of pseudo-random data (incompressible, so applying them takes a while).
fn random_tree(root: &Path, files: usize, size: usize) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for i in 0..files {
        let data = data::random(size, 2463534242 + i as u32);
        let rel = format!("Data/part{:02}/file{i:03}.bin", i % 7);
        let full = root.join(&rel);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, &data).unwrap();
        out.push((rel, data));
    }
    out
}

/// A runner killed in the middle of applying an image onto the partition that holds its state
/// (what a power cut does to the runner): a fresh state directory finds the run on the disk,
/// the apply step runs again on a FAT file system made again, and the disk ends up with every
/// file of the image and a clean file system (fsck.fat -n, and mtools reading every file).
#[test]
fn a_runner_killed_while_applying_resumes_from_the_disk_and_ends_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let files = random_tree(&d.join("src"), 48, 2 << 20);
    let (code, out) = tsforge_text(
        d,
        &[
            "capture",
            "src",
            "big.tsimg",
            "--name",
            "Big",
            "--compression",
            "none",
        ],
    );
    assert_eq!(code, 0, "{out}");
    std::fs::write(
        d.join("ts.yaml"),
        r#"
name: Apply a large image
steps:
  - name: Partition disk 0
    type: partition-disk
    properties:
      DiskIndex: "0"
      PartitionStyle: MBR
      Partitions0Type: Primary
      Partitions0FileSystem: FAT32
      Partitions0Size: "100"
      Partitions0SizeUnits: "%"
      Partitions0VolumeName: DATA
      Partitions0VolumeVariable: OSDisk
      Partitions: "1"
  - name: Apply the image
    type: apply-image
    properties:
      ImagePath: big.tsimg
      DestinationVariable: OSDisk
  - name: Done
    run: echo done >> ran.txt
"#,
    )
    .unwrap();
    used_disk::random_disk(&d.join("disk.img"), 256 << 20);

    let mut child = Command::new(env!("CARGO_BIN_EXE_tsforge"))
        .args([
            "run",
            "ts.yaml",
            "--state-dir",
            "ram1",
            "--disk",
            "0=disk.img",
            "--state-on-disk",
        ])
        .current_dir(d)
        .env("TSFORGE_MACHINE_DIR", d.join("machine"))
        .env_remove("TSFORGE_STATE_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once the apply has written part of the image (the log reports progress).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let killed_mid_apply = loop {
        let log = std::fs::read_to_string(d.join("ram1/smsts.log")).unwrap_or_default();
        if log.contains("Applying big.tsimg") {
            std::thread::sleep(std::time::Duration::from_millis(150));
            let log = std::fs::read_to_string(d.join("ram1/smsts.log")).unwrap_or_default();
            let mid = !log.contains("Applied big.tsimg");
            child.kill().unwrap();
            break mid;
        }
        if child.try_wait().unwrap().is_some() || std::time::Instant::now() > deadline {
            panic!("the runner ended before the apply started: {log}");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    child.wait().unwrap();
    assert!(
        killed_mid_apply,
        "the apply finished before the kill: make the image larger"
    );
    std::fs::remove_dir_all(d.join("ram1")).unwrap();

    let (code, out) = run_on_disk(d, "ram2", &[]);
    assert_eq!(code, 0, "{out}");
    let log = std::fs::read_to_string(d.join("ram2/smsts.log")).unwrap();
    assert!(
        log.contains("the step that was running when it stopped runs again"),
        "{log}"
    );
    assert!(log.contains("was made again (label \"DATA\")"), "{log}");
    assert_eq!(
        std::fs::read_to_string(d.join("ran.txt")).unwrap(),
        "done\n"
    );

    let disk = d.join("disk.img");
    let dd = Disk::open(&disk, false).unwrap();
    let t = layout::read_table(&dd).unwrap().unwrap();
    let p = &t.partitions[0];
    fsck_partition(&disk, p.start, p.len, &d.join("part.img"));
    let at = format!("{}@@{}", disk.display(), p.start);
    if tool("mcopy").is_some() {
        let out_dir = d.join("out");
        std::fs::create_dir_all(&out_dir).unwrap();
        let st = Command::new(tool("mcopy").unwrap())
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-s", "-n", "-i", &at, "::/Data"])
            .arg(&out_dir)
            .status()
            .unwrap();
        assert!(st.success());
        for (rel, data) in &files {
            let got = std::fs::read(out_dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
            assert!(got == *data, "{rel} differs after the resumed apply");
        }
        let (ok, root) = mtools("mdir", &at, "::/").unwrap();
        assert!(ok && !root.contains("_SMSTas"), "{root}");
    }
}

/// A failed run's logs stay on the deployed disk, in `SMSTSLog/` at the root of the partition
/// that held `_SMSTaskSequence` (one of smsts.log's documented places, "C:\\SMSTSLog":
/// https://systemscenter.ru/mdt2012.en/mdtlogs.htm), with the whole run up to its end.
#[test]
fn a_failed_run_keeps_its_logs_on_the_deployed_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let failing = SEQUENCE.replace(
        "  - name: Restart\n    type: restart\n    properties:\n      SMSRebootTimeout: \"0\"\n",
        "  - name: Fail on purpose\n    run: sh -c \"exit 5\"\n",
    );
    assert_ne!(failing, SEQUENCE);
    std::fs::write(d.join("ts.yaml"), failing).unwrap();
    used_disk::random_disk(&d.join("disk.img"), 128 << 20);
    let (code, out) = run_on_disk(d, "ram", &[]);
    assert_eq!(code, 1, "{out}");
    let log = std::fs::read_to_string(d.join("ram/smsts.log")).unwrap();
    assert!(
        log.contains("The logs stay on the deployed disk: SMSTSLog/ on"),
        "{log}"
    );
    // The DATA partition (OSDisk), the second one.
    let parts = partitions(&d.join("disk.img"));
    let data_at = format!("{}@@{}", d.join("disk.img").display(), parts[1].0);
    let Some((ok, listing)) = mtools("mdir", &data_at, "::/") else {
        return;
    };
    assert!(ok, "{listing}");
    assert!(!listing.contains("_SMSTas"), "{listing}");
    let (ok, kept) = mtools("mtype", &data_at, "::/SMSTSLog/smsts.log").unwrap();
    assert!(ok, "{kept}");
    assert!(kept.contains("Step \"Fail on purpose\" failed"), "{kept}");
    assert!(
        kept.contains("Task sequence \"Restart in the middle\" failed"),
        "{kept}"
    );
    let (ok, events) = mtools("mtype", &data_at, "::/SMSTSLog/events.jsonl").unwrap();
    assert!(ok && events.contains("run_end"), "{events}");
}
