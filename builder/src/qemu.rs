//! Boot a medium in QEMU and watch its serial console: the engine of `tsforge try` and of the
//! end-to-end tests (`tests/e2e_qemu.rs`), so what administrators run is what CI proves.
//!
//! [`Machine::start`] runs `qemu-system-x86_64` with the serial console on its standard input
//! and output (`-serial stdio`, no display), a reader thread that appends everything the guest
//! prints to a buffer (and to the console log file, and optionally to our own stdout), and
//! [`Machine::expect`] waits on a condition variable until a text appears or a deadline passes:
//! no fixed sleeps. A failure names what was awaited and shows the last console lines.
//!
//! Written by hand: the crates that drive QEMU talk QMP to a running daemon or wrap libvirt;
//! what is needed here is a command line, a pipe and a deadline. Plain emulation (TCG) is the
//! default because `/dev/kvm` on the machines this was written on is present but hangs guests;
//! `TSFORGE_QEMU_ACCEL=kvm` (or [`MachineConfig::accel`]) opts in to KVM.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tsforge_runtime::cli::Exit;
use tsforge_runtime::tools::{self, Tool};

/// Firmware the virtual machine starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS, QEMU's default.
    Bios,
    /// OVMF (Debian's `ovmf`), with a private copy of its variable store.
    Uefi,
}

/// What the machine boots from.
#[derive(Debug, Clone)]
pub enum BootFrom {
    /// A USB-style raw disk image, attached as the first virtio disk.
    Disk(PathBuf),
    /// An ISO image as a CD-ROM.
    Cdrom(PathBuf),
    /// The network: QEMU's DHCP and TFTP serve `tftp_root`, whose `bootfile` the NIC's iPXE
    /// ROM runs (`tsforge build pxe` writes `boot.ipxe`).
    Pxe {
        tftp_root: PathBuf,
        bootfile: String,
    },
}

/// A guest TCP port forwarded to a host socket (`guestfwd`): the guest reaches
/// `10.0.2.100:guest_port`. QEMU's `guestfwd=…-tcp:HOST` connects once, at start, and carries
/// a single connection; so each guest connection instead starts `tsforge qemu-relay HOST`
/// (`guestfwd=…-cmd:…`, [`relay`]), which joins its standard input and output to a new
/// connection to `host`.
#[derive(Debug, Clone)]
pub struct Forward {
    pub guest_port: u16,
    pub host: SocketAddr,
}

/// The guest address that [`Forward`]s listen on.
pub const GUEST_FORWARD_ADDR: &str = "10.0.2.100";

/// OVMF's firmware and variable store templates (Debian's `ovmf`).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";

/// How to run one virtual machine.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    pub firmware: Firmware,
    pub boot: BootFrom,
    /// Target disks (raw images), attached as virtio disks after a boot disk.
    pub disks: Vec<PathBuf>,
    pub memory_mib: u32,
    /// `true`: a guest reboot restarts the machine (a Restart Computer step); `false`: QEMU
    /// exits on reboot as on power-off (`-no-reboot`).
    pub reboot: bool,
    /// A network card with QEMU's user networking, `restrict=on` (the guest reaches nothing
    /// but QEMU's DHCP/TFTP and the forwards). Always on for [`BootFrom::Pxe`].
    pub network: bool,
    pub forwards: Vec<Forward>,
    /// Everything the serial console showed, written as it arrives.
    pub console_log: PathBuf,
    /// Scratch folder (OVMF variable store).
    pub work_dir: PathBuf,
    /// `tcg` (default) or `kvm`; `None`: `TSFORGE_QEMU_ACCEL`, else `tcg`.
    pub accel: Option<String>,
    /// Copy the console to our standard output as it arrives (`tsforge try`).
    pub echo: bool,
    /// The tsforge binary that runs `qemu-relay` for [`Forward`]s (default: this program).
    pub relay_program: Option<PathBuf>,
    /// QEMU's `-display` (`gtk`, `sdl`, `vnc=:1`, …) to see the screen too; `None`: no screen
    /// (the serial console only, all the linux template needs).
    pub display: Option<String>,
}

impl MachineConfig {
    pub fn new(firmware: Firmware, boot: BootFrom, work_dir: PathBuf) -> MachineConfig {
        MachineConfig {
            firmware,
            boot,
            disks: Vec::new(),
            memory_mib: 1024,
            reboot: false,
            network: false,
            forwards: Vec::new(),
            console_log: work_dir.join("console.log"),
            work_dir,
            accel: None,
            echo: false,
            relay_program: None,
            display: None,
        }
    }

    /// The QEMU arguments for this machine (after the program name).
    pub fn args(&self) -> Result<Vec<String>> {
        let accel = self
            .accel
            .clone()
            .or_else(|| std::env::var("TSFORGE_QEMU_ACCEL").ok())
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "tcg".into());
        let mut a: Vec<String> = vec![
            "-accel".into(),
            accel,
            "-m".into(),
            self.memory_mib.to_string(),
            "-display".into(),
            self.display.clone().unwrap_or_else(|| "none".into()),
            "-serial".into(),
            "stdio".into(),
            "-monitor".into(),
            "none".into(),
        ];
        if !self.reboot {
            a.push("-no-reboot".into());
        }
        if self.firmware == Firmware::Uefi {
            for f in [OVMF_CODE, OVMF_VARS] {
                if !Path::new(f).is_file() {
                    bail!("{f} is missing: UEFI needs OVMF (apt-get install ovmf)");
                }
            }
            std::fs::create_dir_all(&self.work_dir)
                .with_context(|| format!("creating {}", self.work_dir.display()))?;
            let vars = self.work_dir.join("OVMF_VARS.fd");
            std::fs::copy(OVMF_VARS, &vars)
                .with_context(|| format!("copying {OVMF_VARS} to {}", vars.display()))?;
            a.push("-drive".into());
            a.push(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"));
            a.push("-drive".into());
            a.push(format!("if=pflash,format=raw,file={}", vars.display()));
        }
        let drive = |a: &mut Vec<String>, p: &Path| {
            a.push("-drive".into());
            a.push(format!(
                "file={},if=virtio,format=raw,cache=unsafe",
                p.display()
            ));
        };
        match &self.boot {
            BootFrom::Disk(p) => drive(&mut a, p),
            BootFrom::Cdrom(p) => {
                a.push("-drive".into());
                a.push(format!(
                    "file={},media=cdrom,readonly=on,if=ide,index=2",
                    p.display()
                ));
                a.push("-boot".into());
                a.push("d".into());
            }
            BootFrom::Pxe { .. } => {
                a.push("-boot".into());
                a.push("n".into());
            }
        }
        for d in &self.disks {
            drive(&mut a, d);
        }
        let pxe = matches!(self.boot, BootFrom::Pxe { .. });
        if self.network || pxe || !self.forwards.is_empty() {
            let mut netdev = "user,id=n0,restrict=on".to_string();
            if let BootFrom::Pxe {
                tftp_root,
                bootfile,
            } = &self.boot
            {
                netdev.push_str(&format!(
                    ",tftp={},bootfile={bootfile}",
                    tftp_root.display()
                ));
            }
            if !self.forwards.is_empty() {
                let relay = match &self.relay_program {
                    Some(p) => p.clone(),
                    None => std::env::current_exe().context("finding the tsforge program")?,
                };
                let relay = relay.display().to_string();
                if relay.contains([',', ' ', '\'', '"']) {
                    bail!("{relay}: a path with commas, spaces or quotes cannot be given to QEMU's guestfwd");
                }
                for f in &self.forwards {
                    netdev.push_str(&format!(
                        ",guestfwd=tcp:{GUEST_FORWARD_ADDR}:{}-cmd:{relay} qemu-relay {}",
                        f.guest_port, f.host
                    ));
                }
            }
            a.push("-netdev".into());
            a.push(netdev);
            a.push("-device".into());
            a.push("virtio-net-pci,netdev=n0".into());
        } else {
            a.push("-nic".into());
            a.push("none".into());
        }
        Ok(a)
    }
}

/// `tsforge qemu-relay ADDR`: joins standard input and output to a new TCP connection to
/// `addr`, until either side ends (one guest connection of a [`Forward`]).
/// `timeout` from now; a time-out too far away for an `Instant` (only a caller passing an
/// absurd value) waits about 136 years instead of overflowing.
fn far_deadline(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(u32::MAX.into())))
        .unwrap_or(now)
}

pub fn relay(addr: SocketAddr) -> Result<Exit> {
    let sock = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .with_context(|| format!("connecting to {addr}"))?;
    let mut to_host = sock.try_clone()?;
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to_host);
        let _ = to_host.shutdown(std::net::Shutdown::Write);
    });
    let mut from_host = sock;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from_host.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                    break;
                }
            }
        }
    }
    drop(up);
    Ok(Exit::Ok)
}

/// `qemu-system-x86_64` on PATH, if any.
pub fn qemu_available() -> Option<PathBuf> {
    tools::find(Tool::QemuSystemX86_64).ok()
}

#[derive(Default)]
struct Shared {
    text: String,
    /// QEMU's output streams (stdout, stderr) that have ended; both: `eof`.
    ended: u8,
    eof: bool,
}

/// A running (or finished) virtual machine and its console.
pub struct Machine {
    child: Child,
    stdin: Option<ChildStdin>,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    /// Where the last [`Machine::expect`] matched, so the next one looks after it.
    cursor: usize,
    started: Instant,
    log: PathBuf,
    exit: Option<std::process::ExitStatus>,
}

impl Machine {
    /// Starts QEMU with `cfg`.
    pub fn start(cfg: &MachineConfig) -> Result<Machine> {
        let qemu = tools::find(Tool::QemuSystemX86_64)?;
        let args = cfg.args()?;
        if let Some(dir) = cfg.console_log.parent() {
            std::fs::create_dir_all(dir).ok();
        }
        let mut log = std::fs::File::create(&cfg.console_log)
            .with_context(|| format!("creating {}", cfg.console_log.display()))?;
        let _ = writeln!(log, "# qemu-system-x86_64 {}", args.join(" "));
        let mut child = Command::new(&qemu)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", qemu.display()))?;
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let echo = cfg.echo;
        for (stream, is_err) in [
            (
                Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
                false,
            ),
            (Box::new(child.stderr.take().expect("piped")), true),
        ] {
            let shared = shared.clone();
            let mut log = log.try_clone().context("console log")?;
            std::thread::spawn(move || pump(stream, &shared, &mut log, echo, is_err));
        }
        Ok(Machine {
            stdin: child.stdin.take(),
            child,
            shared,
            cursor: 0,
            started: Instant::now(),
            log: cfg.console_log.clone(),
            exit: None,
        })
    }

    /// When QEMU was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Everything the console has shown so far (serial output and QEMU's own messages).
    pub fn console(&self) -> String {
        self.shared.0.lock().expect("console lock").text.clone()
    }

    /// Waits until `needle` appears on the console after the previous match and returns the
    /// console up to the end of the match; an error, with the console's last lines, when the
    /// deadline passes or the machine stops first.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = far_deadline(timeout);
        let (lock, cv) = &*self.shared;
        let mut s = lock.lock().expect("console lock");
        loop {
            if let Some(i) = s.text[self.cursor.min(s.text.len())..].find(needle) {
                self.cursor += i + needle.len();
                return Ok(s.text[..self.cursor].to_string());
            }
            let now = Instant::now();
            if s.eof {
                let text = s.text.clone();
                drop(s);
                bail!(
                    "the virtual machine stopped before the console showed {needle:?}{}",
                    self.tail(&text)
                );
            }
            if now >= deadline {
                let text = s.text.clone();
                drop(s);
                bail!(
                    "the console did not show {needle:?} within {} s{}",
                    timeout.as_secs(),
                    self.tail(&text)
                );
            }
            s = cv.wait_timeout(s, deadline - now).expect("console lock").0;
        }
    }

    fn tail(&self, text: &str) -> String {
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(40);
        format!(
            " (console log: {}); its last lines:\n{}",
            self.log.display(),
            lines[from..].join("\n")
        )
    }

    /// Types `line` and Enter on the serial console.
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .context("the virtual machine's console is closed")?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|_| stdin.flush())
            .context("typing on the virtual machine's console")
    }

    /// Forwards our own standard input to the serial console, in a thread, once the console
    /// has shown `marker` (so typed-ahead or piped answers are not lost to a guest that is not
    /// reading the serial line yet). Used by `tsforge try`.
    pub fn forward_stdin_after(&mut self, marker: &str) {
        let Some(mut to_guest) = self.stdin.take() else {
            return;
        };
        let shared = self.shared.clone();
        let marker = marker.to_string();
        std::thread::spawn(move || {
            {
                let (lock, cv) = &*shared;
                let s = lock.lock().expect("console lock");
                let s = cv
                    .wait_while(s, |s| !s.eof && !s.text.contains(&marker))
                    .expect("console lock");
                if s.eof {
                    return;
                }
            }
            let mut buf = [0u8; 1024];
            let mut input = std::io::stdin();
            while let Ok(n) = input.read(&mut buf) {
                if n == 0 || to_guest.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = to_guest.flush();
            }
        });
    }

    /// Waits for QEMU to exit (the guest powered off) within `timeout`; kills it and fails
    /// after that.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = far_deadline(timeout);
        loop {
            if let Some(st) = self.child.try_wait()? {
                self.exit = Some(st);
                self.wait_output(Duration::from_secs(5));
                return Ok(st);
            }
            if Instant::now() >= deadline {
                self.kill();
                let text = self.console();
                bail!(
                    "the virtual machine did not power off within {} s{}",
                    timeout.as_secs(),
                    self.tail(&text)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the reader threads have seen the end of QEMU's output.
    fn wait_output(&self, timeout: Duration) {
        let (lock, cv) = &*self.shared;
        let s = lock.lock().expect("console lock");
        let _ = cv.wait_timeout_while(s, timeout, |s| !s.eof);
    }

    /// Pulls the plug: kills QEMU at once (a power cut for the guest).
    pub fn kill(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            if let Ok(st) = self.child.wait() {
                self.exit = Some(st);
            }
            self.wait_output(Duration::from_secs(5));
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.kill();
    }
}

fn pump(
    mut r: Box<dyn Read + Send>,
    shared: &(Mutex<Shared>, Condvar),
    log: &mut std::fs::File,
    echo: bool,
    is_err: bool,
) {
    let mut buf = [0u8; 4096];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let _ = log.write_all(&buf[..n]);
        if echo {
            if is_err {
                let _ = std::io::stderr().write_all(&buf[..n]);
            } else {
                let mut out = std::io::stdout();
                let _ = out.write_all(&buf[..n]);
                let _ = out.flush();
            }
        }
        let (lock, cv) = shared;
        let mut s = lock.lock().expect("console lock");
        // The guest's console ends lines with CR LF.
        s.text
            .push_str(&String::from_utf8_lossy(&buf[..n]).replace('\r', ""));
        cv.notify_all();
    }
    let (lock, cv) = shared;
    let mut s = lock.lock().expect("console lock");
    // Two readers (stdout, stderr): the second to finish marks the end.
    s.ended += 1;
    s.eof = s.ended >= 2;
    cv.notify_all();
}

/// The exit code the linux template's `/init` printed for the runner (the last one shown).
pub fn runner_exit_code(console: &str) -> Option<i32> {
    const MARK: &str = "tsforge: the runner exited with code ";
    let i = console.rfind(MARK)?;
    console[i + MARK.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_is_the_last_one_printed() {
        let c = "tsforge: the runner exited with code 3\r\n...\ntsforge: the runner exited with code 0\n";
        assert_eq!(runner_exit_code(&c.replace('\r', "")), Some(0));
        assert_eq!(runner_exit_code("no runner here"), None);
    }

    #[test]
    fn pxe_machines_get_a_restricted_network_with_tftp_and_forwards() {
        let mut cfg = MachineConfig::new(
            Firmware::Bios,
            BootFrom::Pxe {
                tftp_root: "/srv/tftp".into(),
                bootfile: "boot.ipxe".into(),
            },
            "/tmp/w".into(),
        );
        cfg.forwards.push(Forward {
            guest_port: 80,
            host: "127.0.0.1:8080".parse().unwrap(),
        });
        cfg.accel = Some("tcg".into());
        cfg.relay_program = Some("/usr/bin/tsforge".into());
        let a = cfg.args().unwrap().join(" ");
        assert!(a.contains("-netdev user,id=n0,restrict=on,tftp=/srv/tftp,bootfile=boot.ipxe,guestfwd=tcp:10.0.2.100:80-cmd:/usr/bin/tsforge qemu-relay 127.0.0.1:8080"), "{a}");
        assert!(
            a.contains("-boot n") && a.contains("-no-reboot") && a.contains("-accel tcg"),
            "{a}"
        );
    }
}
