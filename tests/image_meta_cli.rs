//! A Linux operating system's tree through `tsforge capture` and `tsforge apply` without loss
//! (docs/image-format.md, manifest version 2): owners, setuid/setgid/sticky modes,
//! `security.capability`, `user.*` attributes, access and default ACLs, hard links, device
//! nodes, a FIFO, a sparse file; a socket is left out and said so. The result is compared with
//! the source by independent tools: `rsync -aHAXc --numeric-ids --dry-run --itemize-changes`
//! (rsync(1): `-H` hard links, `-A` ACLs, `-X` extended attributes, `-c` contents) must list
//! nothing, and `getfattr -R -d -m - -h` (getfattr(1): every attribute, links not followed)
//! must dump the same. Apply as root keeps everything; the same image applied by an ordinary
//! user (through `setpriv`) keeps modes, times, `user.*` attributes and ACLs, and says in one
//! warning what it skipped.
//!
//! These tests need root (to give files other owners and make device nodes) and the `attr`,
//! `acl` and `rsync` packages (scripts/setup.sh); without them they print SKIP.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use crate::common::fixed_time::tsforge;
use crate::common::{output, required, tool};

/// Every path's modification time in the test tree.
const MTIME: &str = "@1600000000";

/// The value `setcap cap_net_raw+ep` writes (a version 2 `vfs_cap_data`: magic and flags
/// 0x02000001, permitted CAP_NET_RAW (bit 13), inheritable 0), as getfattr's base64.
const CAP_NET_RAW: &str = "0sAQAAAgAgAAAAAAAAAAAAAAAAAAA=";

fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Root and the tools, or `None` after printing why the test is skipped.
fn ready() -> Option<()> {
    if !is_root() {
        assert!(
            !required(),
            "these tests run as root (TSFORGE_REQUIRE_TOOLS=1)"
        );
        eprintln!("SKIP: not running as root");
        return None;
    }
    for t in [
        "setfattr", "getfattr", "setfacl", "getfacl", "rsync", "setpriv",
    ] {
        tool(t)?;
    }
    Some(())
}

fn sh(dir: &Path, script: &str) {
    let (code, out, err) = output(Command::new("sh").args(["-euc", script]).current_dir(dir));
    assert_eq!(code, 0, "{script}\n{out}{err}");
}

fn run(dir: &Path, prog: &str, args: &[&str]) -> String {
    let (code, out, err) = output(Command::new(prog).args(args).current_dir(dir));
    assert_eq!(code, 0, "{prog} {args:?}: {err}");
    out
}

/// What an operating system's tree holds beyond contents, under `dir/src`.
fn os_tree(dir: &Path) {
    sh(
        dir,
        &format!(
            r#"
mkdir -p src/etc src/bin src/srv/shared src/other src/dev src/run src/tmp src/srv/team src/srv/acl
printf 'root:x:0:0::/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\n' > src/etc/passwd
printf 'root:x:0:\nstaff:x:1002:\n' > src/etc/group
# Three names of one file in one directory, a fourth in another.
echo shared > src/srv/shared/a
ln src/srv/shared/a src/srv/shared/b
ln src/srv/shared/a src/srv/shared/c
ln src/srv/shared/a src/other/d
chown 1001:1002 src/srv/shared/a
setfattr -n user.note -v hello src/srv/shared/a
# A binary with a file capability, setuid (chown clears both, so apply must set them after).
cp /bin/true src/bin/ping
chmod 4755 src/bin/ping
setfattr -n security.capability -v {CAP_NET_RAW} src/bin/ping
echo x > src/bin/suid
chown 1001:1001 src/bin/suid
chmod 4755 src/bin/suid
setfattr -n user.empty src/bin/suid
setfacl -m u:1007:r src/bin/suid
echo y > src/bin/sgid
chown 0:1002 src/bin/sgid
chmod 2711 src/bin/sgid
chmod 1777 src/tmp
chown 1003:1004 src/srv/team
chmod 2775 src/srv/team
setfacl -m u:1005:rwx src/srv/acl
setfacl -d -m g:1006:rx src/srv/acl
mknod src/dev/null c 1 3
mknod src/dev/loop0 b 7 0
chown 0:6 src/dev/loop0
chmod 660 src/dev/loop0
mkfifo src/run/initctl
chmod 600 src/run/initctl
truncate -s 100M src/sparse.img
printf middle | dd of=src/sparse.img bs=1 seek=52428800 conv=notrunc 2>/dev/null
ln -s /etc/passwd src/etc/abs-link
chown -h 1001:1002 src/etc/abs-link
chown 1001:1001 src/other
chmod 755 src
find src -exec touch -h -d {MTIME} {{}} +
"#
        ),
    );
    // A socket, which capture leaves out.
    let _sock = std::os::unix::net::UnixListener::bind(dir.join("src/run/x.sock")).unwrap();
    sh(dir, &format!("touch -h -d {MTIME} src/run src/run/x.sock"));
}

/// `getfattr` of every path below `root`, names relative to it.
fn xattr_dump(dir: &Path, root: &str) -> String {
    let out = run(
        dir,
        "getfattr",
        &["-R", "-h", "-d", "-m", "-", "--absolute-names", root],
    );
    out.replace(&format!("# file: {root}"), "# file: ROOT")
}

#[test]
fn an_os_tree_round_trips_through_capture_and_apply() {
    if ready().is_none() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    os_tree(d);
    let (code, _, err) = tsforge(d, &["capture", "src", "os.tsimg"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.lines().any(|l| l == "left out: run/x.sock (a socket)"),
        "{err}"
    );
    // The socket is gone with its program: the source then holds what the image does.
    fs::remove_file(d.join("src/run/x.sock")).unwrap();
    sh(d, &format!("touch -h -d {MTIME} src/run"));

    let (code, _, err) = tsforge(d, &["apply", "os.tsimg", "dst"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "root keeps everything: {err}");
    // The root folder itself is not part of an image (docs/image-format.md).
    sh(d, &format!("chmod 755 dst && touch -h -d {MTIME} dst"));

    let diff = run(
        d,
        "rsync",
        &[
            "-aHAXc",
            "--numeric-ids",
            "--dry-run",
            "--itemize-changes",
            "src/",
            "dst/",
        ],
    );
    assert_eq!(diff, "", "rsync finds differences");
    let (a, b) = (xattr_dump(d, "src"), xattr_dump(d, "dst"));
    assert_eq!(a, b);
    assert!(
        b.contains("security.capability=0sAQAAAgAgAAAAAAAAAAAAAAAAAAA="),
        "{b}"
    );
    assert!(b.contains("system.posix_acl_default="), "{b}");
    let md = |p: &str| fs::symlink_metadata(d.join("dst").join(p)).unwrap();
    assert_eq!(md("bin/ping").mode() & 0o7777, 0o4755);
    assert_eq!(md("bin/suid").mode() & 0o7777, 0o4755);
    assert_eq!((md("bin/suid").uid(), md("bin/suid").gid()), (1001, 1001));
    assert_eq!(md("srv/shared/a").nlink(), 4);
    assert_eq!(md("srv/shared/a").ino(), md("other/d").ino());
    assert_eq!(md("dev/null").rdev(), md("/dev/null").rdev());
    // Sparse: 100 MiB long, a few blocks allocated, the same content (rsync -c compared it).
    let sparse = md("sparse.img");
    assert_eq!(sparse.len(), 100 << 20);
    let blocks = run(d, "stat", &["-c", "%b", "dst/sparse.img"]);
    assert!(
        blocks.trim().parse::<u64>().unwrap() < 1024,
        "{blocks} blocks of 512 bytes allocated for a file with 6 bytes of data"
    );

    // The manifest names the owners from the tree's own etc/passwd and etc/group.
    let info = crate::common::fixed_time::tsforge_ok(d, &["image", "info", "os.tsimg"]);
    assert!(
        info.contains("3 hard links, 2 device nodes, 1 FIFOs"),
        "{info}"
    );
    let (_, json, _) = output(Command::new("unzip").args([
        "-p",
        &d.join("os.tsimg").display().to_string(),
        "tsforge-image.json",
    ]));
    let m: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(m["version"], 2);
    let entry = |p: &str| {
        m["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == p)
            .unwrap()
            .clone()
    };
    // The first name in path order is the file, the others name it.
    let a = entry("other/d");
    assert_eq!(
        (&a["uid"], &a["gid"], &a["user"], &a["group"]),
        (
            &serde_json::json!(1001),
            &serde_json::json!(1002),
            &serde_json::json!("alice"),
            &serde_json::json!("staff")
        )
    );
    for p in ["srv/shared/a", "srv/shared/b", "srv/shared/c"] {
        assert_eq!(
            entry(p),
            serde_json::json!({"path": p, "type": "hardlink", "target": "other/d"})
        );
    }
    // No name for ids the tree's files do not list.
    assert!(entry("srv/team").get("user").is_none());
}

/// An ordinary user applies what it may, and says in one line what it could not.
#[test]
fn apply_by_an_ordinary_user_keeps_modes_times_and_user_attributes() {
    if ready().is_none() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    os_tree(d);
    let (code, _, err) = tsforge(d, &["capture", "src", "os.tsimg"]);
    assert_eq!(code, 0, "{err}");
    // A folder nobody (65534) owns, reachable by nobody.
    sh(
        d,
        "chmod 755 . && chmod 644 os.tsimg && mkdir nb && chown 65534:65534 nb",
    );
    let (code, _, err) = output(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                env!("CARGO_BIN_EXE_tsforge"),
                "apply",
                "os.tsimg",
                "nb/out",
            ])
            .current_dir(d)
            .env("TSFORGE_MACHINE_DIR", d.join("nb/machine")),
    );
    assert_eq!(code, 0, "{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning")).collect();
    // 21 paths with metadata (10 directories, 7 files, 1 link, 1 FIFO, 2 device nodes; the 3
    // hard links share their file's), all owned by others than nobody; the device nodes are
    // not made at all, so 19 owners are skipped, and the root directory's own (the image's
    // `root`, owned by root) makes 20.
    assert_eq!(
        warnings,
        vec![
            "warning: not running as root: the owners of 20 paths, 2 device nodes and 1 \
             security/trusted extended attribute were not applied; apply as root (the boot \
             environment does) to keep them"
        ],
        "{err}"
    );
    let out = d.join("nb/out");
    let md = |p: &str| fs::symlink_metadata(out.join(p)).unwrap();
    assert_eq!(md("bin/suid").mode() & 0o7777, 0o4755);
    assert_eq!(md("tmp").mode() & 0o7777, 0o1777);
    assert_eq!(md("srv/team").mode() & 0o7777, 0o2775);
    assert_eq!(md("bin/suid").mtime(), 1_600_000_000);
    assert_eq!(md("srv/acl").mtime(), 1_600_000_000);
    assert_eq!(md("srv/shared/c").ino(), md("srv/shared/a").ino());
    assert!(md("run/initctl").file_type().is_fifo());
    assert!(
        !out.join("dev/null").exists(),
        "no device node without root"
    );
    assert_eq!(md("bin/suid").uid(), 65534);
    let dump = xattr_dump(d, "nb/out");
    assert!(dump.contains("user.note=\"hello\""), "{dump}");
    assert!(dump.contains("system.posix_acl_access="), "{dump}");
    assert!(dump.contains("system.posix_acl_default="), "{dump}");
    assert!(!dump.contains("security.capability"), "{dump}");
    let acl = run(d, "getfacl", &["-p", "nb/out/srv/acl"]);
    assert!(
        acl.contains("user:1005:rwx") && acl.contains("default:group:1006:r-x"),
        "{acl}"
    );
}
