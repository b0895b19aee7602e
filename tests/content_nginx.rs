//! Scale comes from existing servers: 20 runners apply the same image package at once from one
//! Debian nginx on loopback; every one must verify and succeed. Prints the aggregate
//! throughput. (The fault-injection tests are in tests/content.rs.)

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::data::random;
use crate::common::tool;

const RUNNERS: usize = 20;

/// nginx serving `root` on a free loopback port, stopped on drop.
struct Nginx {
    bin: PathBuf,
    dir: PathBuf,
    url: String,
}

impl Nginx {
    fn start(bin: PathBuf, dir: &Path, root: &Path) -> Nginx {
        Self::start_with(bin, dir, root, None)
    }

    /// With `tls = Some((cert, key))`, serves HTTPS.
    fn start_with(bin: PathBuf, dir: &Path, root: &Path, tls: Option<(&Path, &Path)>) -> Nginx {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let root_user = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let d = dir.display();
        let conf = format!(
            "{user}\ndaemon on;\nworker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n  access_log {d}/access.log;\n  sendfile on;\n  default_type application/octet-stream;\n  \
             client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;\n  \
             uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n  \
             server {{ listen 127.0.0.1:{port}{ssl}; root {root}; {certs} }}\n}}\n",
            user = if root_user { "user root;" } else { "" },
            root = root.display(),
            ssl = if tls.is_some() { " ssl" } else { "" },
            certs = tls
                .map(|(c, k)| format!(
                    "ssl_certificate {}; ssl_certificate_key {};",
                    c.display(),
                    k.display()
                ))
                .unwrap_or_default()
        );
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let o = Command::new(&bin)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "nginx did not start: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx is not listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx {
            bin,
            dir: dir.to_path_buf(),
            url,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new(&self.bin)
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .args(["-s", "stop"])
            .output();
    }
}

#[test]
fn twenty_runners_apply_one_image_package_from_nginx() {
    let Some(nginx) = tool("nginx") else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // nginx workers may run as another user: let them read the tree.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let src = d.join("src");
    let mut files = Vec::new();
    for i in 0..40u32 {
        let data = random(50_000 + (i as usize) * 7_000, i + 1);
        let p = format!("dir{}/file{i:02}.bin", i % 4);
        std::fs::create_dir_all(src.join(format!("dir{}", i % 4))).unwrap();
        std::fs::write(src.join(&p), &data).unwrap();
        files.push((p, data));
    }
    let big = random(6 << 20, 4242);
    std::fs::write(src.join("big.bin"), &big).unwrap();
    files.push(("big.bin".into(), big));
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_tsforge"))
            .args(args)
            .current_dir(d)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&["capture", "src", "base.tsimg"]);
    run(&[
        "package",
        "build",
        "base.tsimg",
        "--id",
        "IMG00001",
        "--out",
        "dp",
    ]);
    let image_size = std::fs::metadata(d.join("base.tsimg")).unwrap().len();
    let server = Nginx::start(nginx, &d.join("nginx"), &d.join("dp"));
    std::fs::write(
        d.join("ts.yaml"),
        "steps:\n  - name: Apply\n    type: apply-data-image\n    properties: {ImagePackageID: IMG00001, Destination: out}\n",
    )
    .unwrap();

    let started = Instant::now();
    let children: Vec<(usize, Child)> = (0..RUNNERS)
        .map(|i| {
            let wd = d.join(format!("runner{i:02}"));
            std::fs::create_dir_all(&wd).unwrap();
            let c = Command::new(env!("CARGO_BIN_EXE_tsforge"))
                .args([
                    "run",
                    "../ts.yaml",
                    "--state-dir",
                    "state",
                    "--no-fsync",
                    "--content",
                ])
                .arg(&server.url)
                .current_dir(&wd)
                .env("TSFORGE_MACHINE_DIR", wd.join("machine"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (i, c)
        })
        .collect();
    for (i, c) in children {
        let o = c.wait_with_output().unwrap();
        let wd = d.join(format!("runner{i:02}"));
        let log = std::fs::read_to_string(wd.join("state/smsts.log")).unwrap_or_default();
        assert!(
            o.status.success(),
            "runner {i}: {}\n{log}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(log.contains("streamed and verified"), "runner {i}: {log}");
        for (p, data) in &files {
            assert_eq!(
                &std::fs::read(wd.join("out").join(p)).unwrap(),
                data,
                "runner {i}: {p}"
            );
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let total = image_size * RUNNERS as u64;
    eprintln!(
        "nginx load: {RUNNERS} runners applied {} MiB each in {secs:.2} s: {:.1} MiB/s aggregate",
        image_size >> 20,
        total as f64 / secs / (1 << 20) as f64
    );
    // nginx served the image once per runner, whole, with status 200.
    let access = std::fs::read_to_string(d.join("nginx/access.log")).unwrap();
    let gets = access
        .lines()
        .filter(|l| l.contains("GET /IMG00001/files/base.tsimg") && l.contains("\" 200 "))
        .count();
    assert_eq!(gets, RUNNERS, "{access}");
}

/// HTTPS from nginx with the organization's own CA: refused (and named) without
/// `TSForgeTrustedCA`, applied with it.
#[test]
fn https_distribution_point_with_a_private_ca() {
    let (Some(nginx), Some(openssl)) = (tool("nginx"), tool("openssl")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // A CA and a server certificate for 127.0.0.1 signed by it.
    let sh = |args: &[&str]| {
        let o = Command::new(&openssl)
            .args(args)
            .current_dir(d)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    sh(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=tsforge test CA",
    ]);
    sh(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "dp.key",
        "-out",
        "dp.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    sh(&[
        "x509",
        "-req",
        "-in",
        "dp.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "dp.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);

    let src = d.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let data = random(300_000, 5);
    std::fs::write(src.join("a.bin"), &data).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tsforge"))
            .args(args)
            .current_dir(d)
            .env("TSFORGE_MACHINE_DIR", d.join("machine"))
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap()
    };
    assert!(run(&["capture", "src", "base.tsimg"]).status.success());
    assert!(run(&[
        "package",
        "build",
        "base.tsimg",
        "--id",
        "IMG00001",
        "--out",
        "dp"
    ])
    .status
    .success());
    let server = Nginx::start_with(
        nginx,
        &d.join("nginx"),
        &d.join("dp"),
        Some((&d.join("dp.pem"), &d.join("dp.key"))),
    );
    std::fs::write(
        d.join("ts.yaml"),
        "steps:\n  - name: Apply\n    type: apply-data-image\n    properties: {ImagePackageID: IMG00001, Destination: out}\n",
    )
    .unwrap();
    // Not trusted: a clear certificate error naming the URL.
    let o = run(&[
        "run",
        "ts.yaml",
        "--state-dir",
        "s1",
        "--content",
        &server.url,
        "--var",
        "SMSTSDownloadRetryCount=0",
    ]);
    let log = std::fs::read_to_string(d.join("s1/smsts.log")).unwrap();
    assert_eq!(o.status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("GET {}/IMG00001/tsforge-package.json", server.url))
            && log.to_ascii_lowercase().contains("certificate"),
        "{log}"
    );
    // Trusted through TSForgeTrustedCA.
    let ca = d.join("ca.pem");
    let o = run(&[
        "run",
        "ts.yaml",
        "--state-dir",
        "s2",
        "--content",
        &server.url,
        "--var",
        &format!("TSForgeTrustedCA={}", ca.display()),
    ]);
    let log = std::fs::read_to_string(d.join("s2/smsts.log")).unwrap();
    assert!(o.status.success(), "{log}");
    assert_eq!(std::fs::read(d.join("out/a.bin")).unwrap(), data);
    // package list takes the CA too.
    let o = run(&[
        "package",
        "list",
        &server.url,
        "--trusted-ca",
        ca.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("IMG00001"));
}
