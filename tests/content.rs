//! Content packages and distribution points, end to end: `tsforge package build|list|verify`,
//! and sequences that use packages from a distribution point served over HTTP on loopback by
//! a real server (tests/common/httpd.rs) — dropped connections, a killed runner, tampering,
//! an unreachable server, a stalled one.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::data::random;
use crate::common::fixed_time::tsforge;
use crate::common::httpd::Server;
use crate::common::tool;
use crate::common::used_disk;

fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = tsforge(dir, args);
    assert_eq!(code, 0, "tsforge {args:?}\n{out}\n{err}");
    out
}

fn log_of(state: &Path) -> String {
    std::fs::read_to_string(state.join("smsts.log")).unwrap_or_default()
}

/// A tools package TSF00001 (a script, a data file, a program) and a 20 MiB package
/// BIG00001, built into `dp`.
fn make_dp(d: &Path) -> Vec<u8> {
    let tools = d.join("tools");
    std::fs::create_dir_all(tools.join("sub dir")).unwrap();
    std::fs::write(
        tools.join("hello.sh"),
        "echo \"hello from $(pwd)\" > \"$OUT/hello.txt\"\ncat 'sub dir/data.txt' >> \"$OUT/hello.txt\"\n",
    )
    .unwrap();
    std::fs::write(tools.join("sub dir/data.txt"), "package data\n").unwrap();
    std::fs::write(
        tools.join("install.sh"),
        "echo installed > \"$OUT/installed.txt\"\n",
    )
    .unwrap();
    ok(
        d,
        &[
            "package",
            "build",
            "tools",
            "--id",
            "TSF00001",
            "--name",
            "Tools",
            "--program",
            "Install=sh install.sh",
            "--out",
            "dp",
        ],
    );
    let big = random(20 << 20, 7);
    std::fs::create_dir_all(d.join("big")).unwrap();
    std::fs::write(d.join("big/payload.bin"), &big).unwrap();
    ok(
        d,
        &["package", "build", "big", "--id", "BIG00001", "--out", "dp"],
    );
    big
}

#[test]
fn package_build_list_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_dp(d);
    let out = ok(d, &["package", "list", "dp"]);
    assert!(
        out.contains("TSF00001") && out.contains("BIG00001"),
        "{out}"
    );
    assert!(out.contains("20971520"), "{out}");
    // Rebuilding a package replaces it with the next version; the other stays.
    ok(
        d,
        &[
            "package", "build", "tools", "--id", "TSF00001", "--out", "dp",
        ],
    );
    let json = ok(d, &["package", "list", "dp", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let pk = v["packages"].as_array().unwrap();
    assert_eq!(pk.len(), 2);
    assert_eq!(pk[1]["id"], "TSF00001");
    assert_eq!(pk[1]["version"], 2);
    // Every file with its size and sha256, checked by sha256sum.
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("dp/BIG00001/tsforge-package.json")).unwrap())
            .unwrap();
    let f = &m["files"][0];
    assert_eq!(f["path"], "payload.bin");
    assert_eq!(f["blocks"].as_array().unwrap().len(), 5);
    if let Some(sha) = tool("sha256sum") {
        let o = Command::new(sha)
            .arg(d.join("dp/BIG00001/files/payload.bin"))
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&o.stdout).starts_with(f["sha256"].as_str().unwrap()));
    }

    // Over HTTP too, and verify finds a tampered byte and names the file.
    let server = Server::start(&d.join("dp"));
    let out = ok(d, &["package", "list", &server.url]);
    assert!(out.contains("BIG00001"), "{out}");
    ok(d, &["package", "verify", &server.url]);
    let p = d.join("dp/BIG00001/files/payload.bin");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[9 << 20] ^= 1;
    std::fs::write(&p, bytes).unwrap();
    let (code, out, _) = tsforge(d, &["package", "verify", &server.url, "BIG00001"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("BIG00001/files/payload.bin (block 2") && out.contains("does not match"),
        "{out}"
    );

    // Bad input is named.
    let (code, _, err) = tsforge(
        d,
        &["package", "build", "tools", "--id", "../x", "--out", "dp"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("not a package ID"), "{err}");
    let (code, _, err) = tsforge(
        d,
        &[
            "package",
            "build",
            "tools/hello.sh",
            "--id",
            "X1",
            "--out",
            "dp",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("not a tsforge image or a WIM"), "{err}");
}

const PACKAGE_STEPS: &str = r#"
steps:
  - name: Command line with a package (YAML)
    type: run
    properties:
      PackageID: TSF00001
      CommandLine: sh hello.sh
  - name: Install the package's program
    type: install-package
    properties:
      PackageID: TSF00001
      ProgramName: install
  - name: Download
    type: download-package
    properties:
      DownloadPackages: BIG00001,TSF00001
      DestinationLocationType: Custom
      DestinationPath: "%OUT%/downloads"
      DestinationVariable: DL
  - name: Record
    run: echo "%DL01%|%DL02%" > "%OUT%/dl.txt"
  - name: Drivers
    type: apply-driver-package
    continue_on_error: true
    properties:
      DriverPackageID: TSF00001
"#;

#[test]
fn steps_use_packages_over_http_and_fetch_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let big = make_dp(d);
    let server = Server::start(&d.join("dp"));
    std::fs::write(d.join("ts.yaml"), PACKAGE_STEPS).unwrap();
    let out_dir = d.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let state = d.join("state");
    let (code, out, err) = tsforge(
        d,
        &[
            "run",
            "ts.yaml",
            "--state-dir",
            state.to_str().unwrap(),
            "--content",
            &server.url,
            "--var",
            &format!("OUT={}", out_dir.display()),
        ],
    );
    let log = log_of(&state);
    assert_eq!(code, 0, "{out}\n{err}\n{log}");
    // Ran in the package's folder in the cache, with the package's files.
    let hello = std::fs::read_to_string(out_dir.join("hello.txt")).unwrap();
    let cached = state.join("cache/TSF00001/files");
    assert_eq!(
        hello,
        format!("hello from {}\npackage data\n", cached.display())
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("installed.txt")).unwrap(),
        "installed\n"
    );
    // Downloaded to the custom folder, one variable per package.
    assert_eq!(
        std::fs::read(out_dir.join("downloads/BIG00001/payload.bin")).unwrap(),
        big
    );
    let dl = std::fs::read_to_string(out_dir.join("dl.txt")).unwrap();
    assert_eq!(
        dl.trim(),
        format!(
            "{}|{}",
            out_dir.join("downloads/BIG00001").display(),
            out_dir.join("downloads/TSF00001").display()
        )
    );
    // The tools package was used by three steps and fetched once.
    let fetched = server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("TSF00001/files/hello.sh"))
        .count();
    assert_eq!(fetched, 1, "{:?}", server.requests());
    assert!(log.contains("already in the cache"), "{log}");
    assert!(log.contains("cache ") && log.contains(" MiB"), "{log}");
    // Apply Driver Package says why it cannot run here (continue on error).
    if !cfg!(windows) {
        assert!(log.contains("DISM, which only runs on Windows"), "{log}");
    }
}

#[test]
fn configmgr_xml_command_line_with_package() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_dp(d);
    let out_dir = d.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let xml = r#"<?xml version="1.0"?>
<sequence version="3.00">
  <step type="SMS_TaskSequence_RunCommandLineAction" name="Use Toolkit Package" successCodeList="0 3010">
    <action>smsswd.exe /run:TSF00001 sh hello.sh</action>
    <defaultVarList>
      <variable name="PackageID" property="PackageID">TSF00001</variable>
      <variable name="CommandLine" property="CommandLine">sh hello.sh</variable>
    </defaultVarList>
  </step>
  <step type="SMS_TaskSequence_InstallSoftwareAction" name="Install Software" successCodeList="0 3010">
    <action>smsswd.exe /pkg:TSF00001 /install /basevar: /continueOnError=</action>
    <defaultVarList>
      <variable name="PackageID" property="PackageID">TSF00001</variable>
      <variable name="ProgramName" property="ProgramName">Install</variable>
    </defaultVarList>
  </step>
</sequence>
"#;
    std::fs::write(d.join("ts.xml"), xml).unwrap();
    // From a distribution point folder, given through SMSTSContentLocations.
    let (code, out, err) = tsforge(
        d,
        &[
            "run",
            "ts.xml",
            "--state-dir",
            "state",
            "--var",
            &format!("SMSTSContentLocations={}", d.join("dp").display()),
            "--var",
            &format!("OUT={}", out_dir.display()),
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}\n{}", log_of(&d.join("state")));
    assert!(std::fs::read_to_string(out_dir.join("hello.txt"))
        .unwrap()
        .contains("package data"));
    assert!(out_dir.join("installed.txt").exists());
}

fn download_sequence(d: &Path) {
    std::fs::write(
        d.join("dl.yaml"),
        "steps:\n  - name: Download\n    type: download-package\n    properties:\n      DownloadPackages: BIG00001\n      DestinationVariable: DL\n",
    )
    .unwrap();
}

#[test]
fn dropped_connection_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let big = make_dp(d);
    let server = Server::start(&d.join("dp"));
    download_sequence(d);
    // The first response is cut after 5 MiB + 123 bytes, the second after 3 MiB more.
    server.faults(|f| {
        f.drop_after
            .push(("BIG00001/files/payload.bin".into(), (5 << 20) + 123));
        f.drop_after
            .push(("BIG00001/files/payload.bin".into(), 3 << 20));
    });
    let (code, out, err) = tsforge(
        d,
        &[
            "run",
            "dl.yaml",
            "--state-dir",
            "state",
            "--content",
            &server.url,
            "--var",
            "SMSTSDownloadRetryDelay=0.1",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}\n{}", log_of(&d.join("state")));
    assert_eq!(
        std::fs::read(d.join("state/cache/BIG00001/files/payload.bin")).unwrap(),
        big
    );
    let reqs: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("payload.bin"))
        .collect();
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    assert_eq!(reqs[1].start, (5 << 20) + 123, "{reqs:?}");
    assert_eq!(reqs[2].start, (8 << 20) + 123, "{reqs:?}");
    // Nothing was fetched twice.
    assert_eq!(server.sent("payload.bin"), big.len() as u64);
}

#[test]
fn killed_runner_resumes_its_download() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let big = make_dp(d);
    let server = Server::start(&d.join("dp"));
    download_sequence(d);
    server.faults(|f| f.rate = Some(4 << 20));
    let mut child = Command::new(env!("CARGO_BIN_EXE_tsforge"))
        .args([
            "run",
            "dl.yaml",
            "--state-dir",
            "state",
            "--content",
            &server.url,
        ])
        .current_dir(d)
        .env("TSFORGE_MACHINE_DIR", d.join("machine"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once more than two blocks (8 MiB) are on disk.
    let partial = d.join("state/cache/.partial");
    let deadline = Instant::now() + Duration::from_secs(60);
    let size_on_disk = || -> u64 {
        std::fs::read_dir(&partial)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("files/payload.bin"))
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    };
    while size_on_disk() < (9 << 20) {
        assert!(Instant::now() < deadline, "the download did not progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the runner ended early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let first_sent = server.sent("payload.bin");
    assert!(first_sent < big.len() as u64);
    server.faults(|f| f.rate = None);
    let mark = server.requests().len();

    let (code, out, err) = tsforge(
        d,
        &[
            "run",
            "dl.yaml",
            "--state-dir",
            "state",
            "--content",
            &server.url,
        ],
    );
    let log = log_of(&d.join("state"));
    assert_eq!(code, 0, "{out}\n{err}\n{log}");
    assert_eq!(
        std::fs::read(d.join("state/cache/BIG00001/files/payload.bin")).unwrap(),
        big
    );
    let reqs: Vec<_> = server
        .requests_since(mark)
        .into_iter()
        .filter(|r| r.path.ends_with("payload.bin"))
        .collect();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    // Resumed at a verified block boundary at or past 8 MiB, not from the start.
    assert!(
        reqs[0].start >= 8 << 20 && reqs[0].start % (4 << 20) == 0,
        "{reqs:?}"
    );
    assert!(log.contains("resumed after"), "{log}");
}

#[test]
fn tampered_file_fails_the_step_names_it_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_dp(d);
    let p = d.join("dp/TSF00001/files/sub dir/data.txt");
    std::fs::write(&p, "package dat4\n").unwrap();
    let server = Server::start(&d.join("dp"));
    std::fs::write(
        d.join("ts.yaml"),
        "steps:\n  - name: Use it\n    type: run\n    properties:\n      PackageID: TSF00001\n      CommandLine: touch ran.txt\n",
    )
    .unwrap();
    let (code, _, _) = tsforge(
        d,
        &[
            "run",
            "ts.yaml",
            "--state-dir",
            "state",
            "--content",
            &server.url,
        ],
    );
    let log = log_of(&d.join("state"));
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("TSF00001/files/sub%20dir/data.txt does not match the package manifest"),
        "{log}"
    );
    assert!(!d.join("state/cache/TSF00001").exists());
    let leftovers: Vec<_> = walk(&d.join("state/cache"))
        .into_iter()
        .filter(|p| p.ends_with("data.txt"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn unreachable_server_fails_clearly_after_the_retries() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    download_sequence(d);
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/dp");
    let started = Instant::now();
    let (code, _, _) = tsforge(
        d,
        &[
            "run",
            "dl.yaml",
            "--state-dir",
            "state",
            "--content",
            &url,
            "--var",
            "SMSTSDownloadRetryCount=2",
            "--var",
            "SMSTSDownloadRetryDelay=0.2",
        ],
    );
    let log = log_of(&d.join("state"));
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains(&format!("GET {url}/BIG00001/tsforge-package.json"))
            && log.contains("gave up after 3 attempts"),
        "{log}"
    );
    // Two retries: 0.2 s then 0.4 s.
    assert!(started.elapsed() >= Duration::from_millis(600));
}

#[test]
fn stalled_server_times_out_and_the_read_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let big = make_dp(d);
    let server = Server::start(&d.join("dp"));
    download_sequence(d);
    server.faults(|f| {
        f.stall_after.push(("payload.bin".into(), 1 << 20));
        f.stall_for = Duration::from_secs(20);
    });
    let started = Instant::now();
    let (code, out, err) = tsforge(
        d,
        &[
            "run",
            "dl.yaml",
            "--state-dir",
            "state",
            "--content",
            &server.url,
            "--var",
            "TSForgeDownloadStallTimeout=1",
            "--var",
            "SMSTSDownloadRetryDelay=0.1",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}\n{}", log_of(&d.join("state")));
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(
        std::fs::read(d.join("state/cache/BIG00001/files/payload.bin")).unwrap(),
        big
    );
    let reqs: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("payload.bin"))
        .collect();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[1].start, 1 << 20);
}

/// A server that sends a byte every 50 ms after the first MiB never leaves a read waiting
/// for the stall timeout, but is far below the minimum rate (TSForgeDownloadMinRate, averaged
/// over TSForgeDownloadStallTimeout): the transfer is treated as stalled and resumed.
#[test]
fn trickling_server_is_too_slow_and_the_read_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let big = make_dp(d);
    let server = Server::start(&d.join("dp"));
    download_sequence(d);
    server.faults(|f| {
        f.trickle_after.push(("payload.bin".into(), 1 << 20));
        f.trickle_every = Duration::from_millis(50);
    });
    let started = Instant::now();
    let (code, out, err) = tsforge(
        d,
        &[
            "run",
            "dl.yaml",
            "--state-dir",
            "state",
            "--content",
            &server.url,
            "--var",
            "TSForgeDownloadStallTimeout=1",
            "--var",
            "TSForgeDownloadMinRate=4096",
            "--var",
            "SMSTSDownloadRetryDelay=0.1",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}\n{}", log_of(&d.join("state")));
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(
        std::fs::read(d.join("state/cache/BIG00001/files/payload.bin")).unwrap(),
        big
    );
    let reqs: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("payload.bin"))
        .collect();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert!(
        reqs[1].start >= 1 << 20 && reqs[1].start < (1 << 20) + 100,
        "{reqs:?}"
    );
}

/// A server that trickles on every connection runs out of retries, and the error says why.
#[test]
fn a_server_that_always_trickles_fails_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_dp(d);
    let server = Server::start(&d.join("dp"));
    download_sequence(d);
    server.faults(|f| {
        for _ in 0..5 {
            f.trickle_after.push(("payload.bin".into(), 0));
        }
        f.trickle_every = Duration::from_millis(50);
    });
    let started = Instant::now();
    let (code, _, _) = tsforge(
        d,
        &[
            "run",
            "dl.yaml",
            "--state-dir",
            "state",
            "--content",
            &server.url,
            "--var",
            "TSForgeDownloadStallTimeout=0.5",
            "--var",
            "SMSTSDownloadRetryCount=2",
            "--var",
            "SMSTSDownloadRetryDelay=0.1",
        ],
    );
    let log = log_of(&d.join("state"));
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("too slow") && log.contains("gave up after 3 attempts"),
        "{log}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}

const APPLY_SEQUENCE: &str = r#"
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
  - name: Apply the image from the distribution point
    type: apply-image
    properties:
      ImagePackageID: IMG00001
      DestinationVariable: OSDisk
"#;

/// A tree of 24 files (one of 9 MiB, so the image spans several blocks).
fn image_tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for i in 0..20 {
        files.push((
            format!("Windows/System32/f{i:02}.dll"),
            random(10_000 + i * 3_000, i as u32 + 1),
        ));
    }
    files.push(("Windows/big.bin".into(), random(9 << 20, 99)));
    files.push((
        "Users/Public/readme.txt".into(),
        b"deployed over http\n".to_vec(),
    ));
    files.push((
        "Users/Public/copy.txt".into(),
        b"deployed over http\n".to_vec(),
    ));
    files.push(("empty.txt".into(), Vec::new()));
    for (p, data) in &files {
        let full = root.join(p);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, data).unwrap();
    }
    files
}

fn check_applied(d: &Path, disk: &Path, files: &[(String, Vec<u8>)]) {
    // The partition starts at 1 MiB (MBR, aligned).
    let start = 1u64 << 20;
    if let Some(fsck) = tool("fsck.fat") {
        let part = d.join("part.img");
        let all = std::fs::read(disk).unwrap();
        std::fs::write(&part, &all[start as usize..]).unwrap();
        let o = Command::new(&fsck).arg("-n").arg(&part).output().unwrap();
        assert!(
            o.status.success(),
            "fsck.fat -n: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::remove_file(part).unwrap();
    }
    if let Some(mcopy) = tool("mcopy") {
        let img = format!("{}@@{start}", disk.display());
        for (path, bytes) in files {
            let o = Command::new(&mcopy)
                .env("MTOOLS_SKIP_CHECK", "1")
                .args(["-n", "-i", &img, &format!("::/{path}"), "-"])
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "mcopy {path}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert_eq!(&o.stdout, bytes, "{path} read back by mtools");
        }
    }
}

#[test]
fn image_package_streams_from_http_onto_a_partition() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let files = image_tree(&d.join("src"));
    ok(d, &["capture", "src", "base.tsimg", "--name", "Base"]);
    ok(
        d,
        &[
            "package",
            "build",
            "base.tsimg",
            "--id",
            "IMG00001",
            "--out",
            "dp",
        ],
    );
    let image_size = std::fs::metadata(d.join("base.tsimg")).unwrap().len();
    assert!(image_size > 8 << 20);
    std::fs::write(d.join("ts.yaml"), APPLY_SEQUENCE).unwrap();
    let server = Server::start(&d.join("dp"));
    // The connection drops once in the middle of the image; the stream resumes.
    server.faults(|f| f.drop_after.push(("base.tsimg".into(), (6 << 20) + 17)));
    let disk = d.join("disk.img");
    used_disk::random_disk(&disk, 100 << 20);
    let (code, out, err) = tsforge(
        d,
        &[
            "run",
            "ts.yaml",
            "--state-dir",
            "state",
            "--disk",
            "0=disk.img",
            "--content",
            &server.url,
            "--var",
            "SMSTSDownloadRetryDelay=0.1",
        ],
    );
    let log = log_of(&d.join("state"));
    assert_eq!(code, 0, "{out}\n{err}\n{log}");
    assert!(
        log.contains("streamed and verified block by block"),
        "{log}"
    );
    check_applied(d, &disk, &files);
    // Streamed: no copy of the image in the cache; each byte sent once.
    assert!(!d.join("state/cache/IMG00001").exists());
    assert_eq!(server.sent("base.tsimg"), image_size);
    let reqs: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("base.tsimg"))
        .collect();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[1].start, (6 << 20) + 17);

    // A tampered image on the server: the step fails, naming the file, and is not reported
    // as applied.
    let p = d.join("dp/IMG00001/files/base.tsimg");
    let mut bytes = std::fs::read(&p).unwrap();
    let at = bytes.len() - 100_000;
    bytes[at] ^= 0x40;
    std::fs::write(&p, bytes).unwrap();
    let (code, _, _) = tsforge(
        d,
        &[
            "run",
            "ts.yaml",
            "--state-dir",
            "state2",
            "--disk",
            "0=disk.img",
            "--content",
            &server.url,
        ],
    );
    let log = log_of(&d.join("state2"));
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("IMG00001/files/base.tsimg (block")
            && log.contains("does not match the package manifest"),
        "{log}"
    );
    assert!(!log.contains("Applied "), "{log}");
}

/// A files package source whose `run.sh` writes `$OUT/<name>.txt`.
fn runnable(d: &Path, name: &str) -> std::path::PathBuf {
    let src = d.join(format!("src-{name}"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("run.sh"),
        format!("echo {name} > \"$OUT/{name}.txt\"\n"),
    )
    .unwrap();
    src
}

/// `tsforge run` of one step using package `id` from `url`, with `extra` arguments.
fn run_package(d: &Path, id: &str, url: &str, state: &str, extra: &[&str]) -> (i32, String) {
    std::fs::write(
        d.join(format!("{id}.yaml")),
        format!(
            "steps:\n  - name: Use {id}\n    type: run\n    properties:\n      PackageID: {id}\n      CommandLine: sh run.sh\n"
        ),
    )
    .unwrap();
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let yaml = format!("{id}.yaml");
    let var = format!("OUT={}", out.display());
    let mut args = vec![
        "run",
        yaml.as_str(),
        "--state-dir",
        state,
        "--content",
        url,
        "--var",
        var.as_str(),
    ];
    args.extend_from_slice(extra);
    let (code, _, err) = tsforge(d, &args);
    (code, format!("{err}\n{}", log_of(&d.join(state))))
}

#[test]
fn with_a_public_key_only_signed_packages_are_used() {
    use tsforge_builder::runtime::content::manifest::PackageManifest;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["keygen", "-o", "k"]);
    ok(d, &["keygen", "-o", "other"]);
    let build = |id: &str, src: &Path, sign: Option<&str>| {
        let src = src.to_str().unwrap();
        let mut args = vec!["package", "build", src, "--id", id, "--out", "dp"];
        if let Some(k) = sign {
            args.extend(["--sign", k]);
        }
        let out = ok(d, &args);
        assert!(
            out.contains(if sign.is_some() {
                "signed by"
            } else {
                "not signed"
            }),
            "{out}"
        );
    };
    build("UNS00001", &runnable(d, "unsigned"), None);
    build("OTH00001", &runnable(d, "other"), Some("other.key"));
    build("FRG00001", &runnable(d, "forged"), Some("k.key"));
    build("SIG00001", &runnable(d, "signed"), Some("k.key"));
    assert!(d.join("dp/SIG00001/tsforge-package.json.sig").is_file());
    assert!(!d.join("dp/UNS00001/tsforge-package.json.sig").exists());

    // An attacker who controls the server changes a file of a signed package and rewrites the
    // manifest to match: the file's sha256 and size, and the package hash.
    let script = d.join("dp/FRG00001/files/run.sh");
    std::fs::write(&script, "echo pwned > \"$OUT/pwned.txt\"\n").unwrap();
    let (sha, size) = tsforge_builder::runtime::media::sha256_file(&script).unwrap();
    let mpath = d.join("dp/FRG00001/tsforge-package.json");
    let mut m = PackageManifest::parse(&std::fs::read(&mpath).unwrap(), "m").unwrap();
    m.files[0].sha256 = sha;
    m.files[0].size = size;
    m.hash = m.compute_hash();
    std::fs::write(&mpath, m.to_json()).unwrap();
    // Consistent: without a key, the integrity checks pass.
    ok(d, &["package", "verify", "dp", "FRG00001"]);

    let server = Server::start(&d.join("dp"));
    let url = server.url.clone();
    let key = ["--public-key", "k.pub"];
    let (code, text) = run_package(d, "SIG00001", &url, "s1", &key);
    assert_eq!(code, 0, "{text}");
    assert!(d.join("out/signed.txt").is_file(), "{text}");
    for (id, state, why) in [
        ("UNS00001", "s2", "is unsigned"),
        ("OTH00001", "s3", "the signature does not match"),
        ("FRG00001", "s4", "the signature does not match"),
    ] {
        let (code, text) = run_package(d, id, &url, state, &key);
        assert_eq!(code, 1, "{id}: {text}");
        assert!(
            text.contains(&format!("package {id} from the distribution point {url}"))
                && text.contains(why),
            "{id}: {text}"
        );
        // Nothing of it was fetched or run.
        assert!(!d.join(state).join("cache").join(id).exists(), "{id}");
        assert!(
            !server
                .requests()
                .iter()
                .any(|r| r.path.contains(&format!("{id}/files/"))),
            "{id}: {:?}",
            server.requests()
        );
    }
    for f in ["unsigned.txt", "other.txt", "forged.txt", "pwned.txt"] {
        assert!(!d.join("out").join(f).exists(), "{f}");
    }
    // Without a key, as before: integrity only.
    let (code, text) = run_package(d, "UNS00001", &url, "s5", &[]);
    assert_eq!(code, 0, "{text}");
    assert!(d.join("out/unsigned.txt").is_file());

    // package verify / list: the index was last signed with k.
    let (code, out, _) = tsforge(d, &["package", "verify", &url, "--public-key", "k.pub"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("SIG00001: OK"), "{out}");
    assert!(
        out.contains("UNS00001: FAILED") && out.contains("is unsigned"),
        "{out}"
    );
    assert!(out.contains("FRG00001: FAILED"), "{out}");
    ok(
        d,
        &[
            "package",
            "verify",
            &url,
            "SIG00001",
            "--public-key",
            "k.pub",
        ],
    );
    ok(d, &["package", "list", &url, "--public-key", "k.pub"]);
    let (code, out, _) = tsforge(d, &["package", "list", &url, "--public-key", "other.pub"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("the index tsforge-dp.json") && out.contains("does not match"),
        "{out}"
    );
    // An unsigned rebuild takes the index's signature away rather than leave a wrong one.
    build("UNS00001", &runnable(d, "unsigned"), None);
    assert!(!d.join("dp/tsforge-dp.json.sig").exists());
    let (code, out, _) = tsforge(d, &["package", "list", "dp", "--public-key", "k.pub"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("is unsigned"), "{out}");
    let (code, _, err) = tsforge(d, &["package", "list", "dp", "--public-key", "nonsense"]);
    assert_eq!(code, 2);
    assert!(err.contains("--public-key nonsense"), "{err}");
}
