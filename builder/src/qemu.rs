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
    /// OVMF built with Secure Boot ([`OVMF_SECBOOT_CODE`]) and a variable store holding
    /// Microsoft's keys with Secure Boot enforced ([`OVMF_MS_VARS`]), as on most PCs. That
    /// firmware needs System Management Mode, so the machine is a `q35` with `smm=on` and
    /// its flash protected (`cfi.pflash01` `secure=on`): Debian's ovmf README.Debian. On q35
    /// an ISO is on the AHCI controller ([`AHCI_SLOT`]), and PCI slot 0x1f is not free.
    UefiSecureBoot,
}

impl Firmware {
    /// OVMF, with or without Secure Boot.
    pub fn is_uefi(self) -> bool {
        matches!(self, Firmware::Uefi | Firmware::UefiSecureBoot)
    }

    /// The firmware code and the variable-store template it starts from (`None`: BIOS).
    pub fn ovmf_files(self) -> Option<(&'static str, &'static str)> {
        match self {
            Firmware::Bios => None,
            Firmware::Uefi => Some((OVMF_CODE, OVMF_VARS)),
            Firmware::UefiSecureBoot => Some((OVMF_SECBOOT_CODE, OVMF_MS_VARS)),
        }
    }
}

/// What the machine boots from.
#[derive(Debug, Clone)]
pub enum BootFrom {
    /// A USB-style raw disk image, attached as a virtio disk in PCI slot [`MEDIUM_SLOT`]
    /// (before the target disks, so the guest names it first: `/dev/vda`).
    Disk(PathBuf),
    /// An ISO image as a CD-ROM.
    Cdrom(PathBuf),
    /// The network: QEMU's DHCP and TFTP serve `tftp_root`, whose `bootfile` the NIC's iPXE
    /// ROM runs (`tsforge build pxe` writes `boot.ipxe`); or, under UEFI with an EFI program
    /// as `bootfile` (`bootx64.efi`, shim), the firmware's own PXE loads it
    /// ([`MachineConfig::firmware_pxe`]).
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
/// OVMF with Secure Boot support (4 MiB flash; needs SMM), Debian's `ovmf`.
pub const OVMF_SECBOOT_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
/// Its variable store with Microsoft's keys enrolled (KEK, db: the Windows and UEFI CAs) and
/// Secure Boot on.
pub const OVMF_MS_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";

/// The fixed PCI slots of the machine's devices (QEMU's `pc` machine: slot 0 is the host
/// bridge, 1 the PIIX ISA/IDE/USB functions, 2 the display adapter), so that a firmware boot
/// entry's device path (`PciRoot(0x0)/Pci(0x5,0x0)`) names the device it boots.
pub const NIC_SLOT: u8 = 0x3;
/// The USB-style medium's virtio disk.
pub const MEDIUM_SLOT: u8 = 0x4;
/// Target disk `n` is in slot `FIRST_DISK_SLOT + n`.
pub const FIRST_DISK_SLOT: u8 = 0x5;
/// The last slot of the PCI bus: at most `LAST_SLOT - FIRST_DISK_SLOT + 1` target disks.
pub const LAST_SLOT: u8 = 0x1f;
/// An ISO medium is the secondary IDE master (`-device ide-cd,bus=ide.1,unit=0`), on the PIIX
/// IDE function: OVMF names it `PciRoot(0x0)/Pci(0x1,0x1)/Ata(Secondary,Master,0x0)`.
pub const IDE_SLOT: (u8, u8) = (0x1, 0x1);
/// On the `q35` machine ([`Firmware::UefiSecureBoot`]) the same `bus=ide.1` is port 1 of the
/// ICH9 AHCI controller: `PciRoot(0x0)/Pci(0x1F,0x2)/Sata(0x1,0xFFFF,0x0)`.
pub const AHCI_SLOT: (u8, u8) = (0x1f, 0x2);

/// How to run one virtual machine.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    pub firmware: Firmware,
    pub boot: BootFrom,
    /// Target disks (raw images), attached as virtio disks in PCI slots [`FIRST_DISK_SLOT`],
    /// … (after the medium's slot, so the guest names them after a USB-style medium).
    pub disks: Vec<PathBuf>,
    /// The firmware's boot order. `false` (the default): the target disks first (QEMU's
    /// `bootindex` 0, 1, … in `disks` order), then the medium, as on a real machine whose disk
    /// comes first: a blank disk is skipped and the medium boots; a disk a sequence made
    /// bootable boots on its own after a restart. `true`: the medium first (trying a medium
    /// against a disk that is already bootable). See [`MachineConfig::medium_boots_first`]
    /// for the one case BIOS forces.
    pub medium_first: bool,
    /// UEFI: keep an existing `OVMF_VARS.fd` in `work_dir` (the firmware's boot entries and
    /// settings from an earlier run of this machine) instead of starting from Debian's blank
    /// template. Default `false`: each QEMU process starts with a fresh variable store, kept
    /// for its life (guest restarts included).
    pub keep_vars: bool,
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
            medium_first: false,
            keep_vars: false,
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
        if let Some((code, template)) = self.firmware.ovmf_files() {
            for f in [code, template] {
                if !Path::new(f).is_file() {
                    bail!("{f} is missing: UEFI needs OVMF (apt-get install ovmf)");
                }
            }
            std::fs::create_dir_all(&self.work_dir)
                .with_context(|| format!("creating {}", self.work_dir.display()))?;
            let vars = self.vars_file();
            if !(self.keep_vars && vars.is_file()) {
                std::fs::copy(template, &vars)
                    .with_context(|| format!("copying {template} to {}", vars.display()))?;
            }
            if self.firmware == Firmware::UefiSecureBoot {
                a.push("-machine".into());
                a.push("q35,smm=on".into());
                a.push("-global".into());
                a.push("driver=cfi.pflash01,property=secure,value=on".into());
            }
            a.push("-drive".into());
            a.push(format!("if=pflash,format=raw,readonly=on,file={code}"));
            a.push("-drive".into());
            a.push(format!("if=pflash,format=raw,file={}", vars.display()));
        }
        // q35's ICH9 functions are in the last slot.
        let last_slot = if self.firmware == Firmware::UefiSecureBoot {
            LAST_SLOT - 1
        } else {
            LAST_SLOT
        };
        let max_disks = usize::from(last_slot - FIRST_DISK_SLOT) + 1;
        if self.disks.len() > max_disks {
            bail!(
                "{} target disks were given and the virtual machine has PCI slots for {max_disks}",
                self.disks.len()
            );
        }
        // QEMU's bootindex (https://qemu.org/docs/master/system/bootindex.html): the lowest
        // index is tried first; it replaces `-boot d`/`-boot n`, which cannot order disks.
        let (medium_index, first_disk_index) = if self.medium_boots_first() {
            (0, 1)
        } else {
            (self.disks.len(), 0)
        };
        let drive = |a: &mut Vec<String>, id: &str, p: &Path, slot: u8, bootindex: usize| {
            a.push("-drive".into());
            a.push(format!(
                "file={},if=none,id={id},format=raw,cache=unsafe",
                p.display()
            ));
            a.push("-device".into());
            a.push(format!(
                "virtio-blk-pci,drive={id},addr=0x{slot:x},bootindex={bootindex}"
            ));
        };
        match &self.boot {
            BootFrom::Disk(p) => drive(&mut a, "medium", p, MEDIUM_SLOT, medium_index),
            BootFrom::Cdrom(p) => {
                a.push("-drive".into());
                a.push(format!(
                    "file={},if=none,id=medium,media=cdrom,readonly=on",
                    p.display()
                ));
                a.push("-device".into());
                a.push(format!(
                    "ide-cd,drive=medium,bus=ide.1,unit=0,bootindex={medium_index}"
                ));
            }
            BootFrom::Pxe { .. } => {}
        }
        for (i, d) in self.disks.iter().enumerate() {
            drive(
                &mut a,
                &format!("disk{i}"),
                d,
                FIRST_DISK_SLOT + i as u8,
                first_disk_index + i,
            );
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
            a.push(if self.firmware_pxe() {
                // No option ROM: OVMF's own virtio-net driver and PXE client.
                format!(
                    "virtio-net-pci,netdev=n0,addr=0x{NIC_SLOT:x},bootindex={medium_index},romfile="
                )
            } else if pxe {
                format!("virtio-net-pci,netdev=n0,addr=0x{NIC_SLOT:x},bootindex={medium_index}")
            } else {
                // Not a boot device: OVMF leaves a NIC without a bootindex out of its order.
                format!("virtio-net-pci,netdev=n0,addr=0x{NIC_SLOT:x}")
            });
        } else {
            a.push("-nic".into());
            a.push("none".into());
        }
        Ok(a)
    }

    /// Whether the medium comes first in the firmware's boot order: [`Self::medium_first`],
    /// or a USB-style medium under BIOS. SeaBIOS boots only the first hard disk of its order
    /// and does not try the next one when that one has no boot sector (QEMU's bootindex page,
    /// "Limitations"; measured: a blank virtio disk first gives "Boot failed: not a bootable
    /// disk", then floppy, CD, "No bootable device"), so a USB image after a blank target disk
    /// would never boot. An ISO or PXE medium is another kind of device and comes after the
    /// disks under BIOS too.
    pub fn medium_boots_first(&self) -> bool {
        self.medium_first
            || (self.firmware == Firmware::Bios && matches!(self.boot, BootFrom::Disk(_)))
    }

    /// Whether the firmware's own PXE client boots the network, not the iPXE option ROM QEMU
    /// gives its NICs (ipxe-qemu): under UEFI when the boot file is an EFI program (`.efi`),
    /// as on a PC, whose firmware runs PXE itself. Measured with OVMF and Secure Boot: the
    /// iPXE ROM runs and loads shim, but shim fetching `grubx64.efi` through iPXE's PXE
    /// protocol gets a 4 MiB buffer for the 3.7 MiB file ("Malformed binary after Attribute
    /// Certificate Table") and stops; OVMF's own driver and PXE client give it the file.
    pub fn firmware_pxe(&self) -> bool {
        match &self.boot {
            BootFrom::Pxe { bootfile, .. } => {
                self.firmware.is_uefi() && bootfile.to_ascii_lowercase().ends_with(".efi")
            }
            _ => false,
        }
    }

    /// The machine's UEFI variable store (boot entries, …): `OVMF_VARS.fd` in `work_dir`.
    pub fn vars_file(&self) -> PathBuf {
        self.work_dir.join("OVMF_VARS.fd")
    }

    /// What boots from each device, to read the firmware's boot lines ([`boot_events`]).
    pub fn devices(&self) -> Devices {
        Devices {
            medium: match &self.boot {
                BootFrom::Disk(p) => MediumKind::Disk(p.clone()),
                BootFrom::Cdrom(_) => MediumKind::Cdrom,
                BootFrom::Pxe { .. } => MediumKind::Pxe,
            },
            disks: self.disks.clone(),
        }
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
    runner_exit(console).map(|(_, code)| code)
}

/// The medium of a machine, for [`Devices`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediumKind {
    /// A USB-style image (its partitions' GUIDs are looked up too).
    Disk(PathBuf),
    Cdrom,
    Pxe,
}

/// The devices of a machine, to tell which one a firmware boot line names.
#[derive(Debug, Clone)]
pub struct Devices {
    pub medium: MediumKind,
    /// Target disk `n` is in PCI slot [`FIRST_DISK_SLOT`] + `n`.
    pub disks: Vec<PathBuf>,
}

/// What a firmware boot entry started (or failed to load).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootDevice {
    /// The medium (USB image, CD-ROM or network card).
    Medium,
    /// Target disk `n` (0-based, in `--disk` order).
    Disk(usize),
    /// Anything else (OVMF's shell, an entry whose disk is not attached): the entry's name.
    Other(String),
}

/// One `BdsDxe:` line of OVMF's serial console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEvent {
    /// Byte offset of the line in the console text given to [`boot_events`].
    pub offset: usize,
    /// `Boot0001`.
    pub entry: String,
    /// The entry's description, e.g. `UEFI Misc Device`.
    pub name: String,
    /// Its device path, e.g. `PciRoot(0x0)/Pci(0x5,0x0)` or `HD(1,GPT,…)/\EFI\debian\shimx64.efi`.
    pub path: String,
    pub device: BootDevice,
    /// `None`: the firmware started the entry's loader; `Some(why)`: it failed to load it
    /// (`Not Found`: nothing bootable there).
    pub failed: Option<String>,
}

/// The firmware's boots in `console` (OVMF's `BdsDxe: starting Boot#### "NAME" from PATH` and
/// `BdsDxe: failed to load Boot#### "NAME" from PATH: STATUS` lines; its `loading` lines are
/// left out, each is followed by a `starting` or a failure). Lines may end in CR LF and carry
/// the terminal's escape sequences before the text. SeaBIOS prints no such line on the serial
/// console: under BIOS the list is empty.
pub fn boot_events(console: &str, devices: &Devices) -> Vec<BootEvent> {
    let mut guids: Option<Vec<(String, BootDevice)>> = None;
    let mut out = Vec::new();
    let mut offset = 0;
    for raw in console.split_inclusive('\n') {
        let here = offset;
        offset += raw.len();
        let line = raw.trim_end_matches(['\n', '\r']);
        let Some(i) = line.find("BdsDxe: ") else {
            continue;
        };
        let rest = &line[i + "BdsDxe: ".len()..];
        let (rest, starting) = if let Some(r) = rest.strip_prefix("starting ") {
            (r, true)
        } else if let Some(r) = rest.strip_prefix("failed to load ") {
            (r, false)
        } else {
            continue;
        };
        let Some((entry, rest)) = rest.split_once(" \"") else {
            continue;
        };
        let Some((name, rest)) = rest.split_once("\" from ") else {
            continue;
        };
        let (path, failed) = if starting {
            (rest.trim_end().to_string(), None)
        } else {
            match rest.rsplit_once(": ") {
                Some((p, why)) => (p.to_string(), Some(why.trim_end().to_string())),
                None => (rest.trim_end().to_string(), Some(String::new())),
            }
        };
        let device = device_of(&path, devices, &mut guids)
            .unwrap_or_else(|| BootDevice::Other(name.to_string()));
        out.push(BootEvent {
            offset: here + i,
            entry: entry.to_string(),
            name: name.to_string(),
            path,
            device,
            failed,
        });
    }
    out
}

/// The device a UEFI device path names: by its PCI slot (`PciRoot(0x0)/Pci(0x5,0x0)/…`), or by
/// the GPT partition GUID / MBR signature of a short-form `HD(…)` path (as efibootmgr writes
/// them) looked up in the disk images (read once, on the first `HD(` path).
fn device_of(
    path: &str,
    devices: &Devices,
    guids: &mut Option<Vec<(String, BootDevice)>>,
) -> Option<BootDevice> {
    let first = path.split('/').next().unwrap_or("");
    if first.starts_with("PciRoot(") {
        let pci = path.split('/').nth(1)?;
        let args = pci.strip_prefix("Pci(")?.strip_suffix(')')?;
        let (slot, func) = args.split_once(',')?;
        let num = |s: &str| u8::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok();
        let (slot, func) = (num(slot)?, num(func)?);
        return match (&devices.medium, slot) {
            (MediumKind::Disk(_), MEDIUM_SLOT) => Some(BootDevice::Medium),
            (MediumKind::Pxe, NIC_SLOT) => Some(BootDevice::Medium),
            (MediumKind::Cdrom, _) if (slot, func) == IDE_SLOT || (slot, func) == AHCI_SLOT => {
                Some(BootDevice::Medium)
            }
            _ if slot >= FIRST_DISK_SLOT
                && usize::from(slot - FIRST_DISK_SLOT) < devices.disks.len() =>
            {
                Some(BootDevice::Disk(usize::from(slot - FIRST_DISK_SLOT)))
            }
            _ => None,
        };
    }
    let hd = path.split('/').find(|s| s.starts_with("HD("))?;
    let args: Vec<&str> = hd
        .strip_prefix("HD(")?
        .strip_suffix(')')?
        .split(',')
        .collect();
    let (kind, id) = (args.get(1)?, args.get(2)?);
    let key = match *kind {
        "GPT" => id.to_ascii_lowercase(),
        "MBR" => format!(
            "mbr:{:08x}",
            u32::from_str_radix(id.trim_start_matches("0x"), 16).ok()?
        ),
        _ => return None,
    };
    let table = guids.get_or_insert_with(|| partition_ids(devices));
    table
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, d)| d.clone())
}

/// The GPT partition GUIDs (lower case) and MBR signatures (`mbr:xxxxxxxx`) of the medium and
/// the target disks; an image that cannot be read has none (its entries are then reported by
/// name).
fn partition_ids(devices: &Devices) -> Vec<(String, BootDevice)> {
    let mut images: Vec<(&Path, BootDevice)> = Vec::new();
    if let MediumKind::Disk(p) = &devices.medium {
        images.push((p, BootDevice::Medium));
    }
    for (i, d) in devices.disks.iter().enumerate() {
        images.push((d, BootDevice::Disk(i)));
    }
    let mut out = Vec::new();
    for (path, device) in images {
        for id in disk_ids(path).unwrap_or_default() {
            out.push((id, device.clone()));
        }
    }
    out
}

/// One image's partition GUIDs or MBR signature (see [`partition_ids`]).
fn disk_ids(path: &Path) -> Result<Vec<String>> {
    use std::io::{Seek, SeekFrom};
    use tsforge_runtime::disk::{layout, Disk};
    let disk = Disk::open(path, false)?;
    let Some(table) = layout::read_table(&disk)? else {
        return Ok(Vec::new());
    };
    let Some(id) = table.disk_guid else {
        return Ok(Vec::new());
    };
    if table.kind == layout::TableKind::Mbr {
        return Ok(vec![format!("mbr:{id}")]);
    }
    // read_table checked the GPT; its entries' unique GUIDs are read here. The header that
    // read_table used may be the backup one: the primary at LBA 1 is tried, then the backup.
    let ss = disk.sector_size();
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut header = vec![0u8; 92];
    let read_at = |f: &mut std::fs::File, at: u64, buf: &mut [u8]| -> Result<()> {
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(buf)
            .with_context(|| format!("reading {}", path.display()))
    };
    read_at(&mut f, ss, &mut header)?;
    if &header[..8] != b"EFI PART" {
        read_at(&mut f, disk.size() - ss, &mut header)?;
    }
    let le32 = |o: usize| u32::from_le_bytes(header[o..o + 4].try_into().expect("4 bytes"));
    let entries_lba = u64::from_le_bytes(header[72..80].try_into().expect("8 bytes"));
    let entry_size = u64::from(le32(84));
    if entry_size < 128 {
        bail!("{}: GPT entries of {entry_size} bytes", path.display());
    }
    let mut out = Vec::new();
    let mut e = vec![0u8; 128];
    for p in &table.partitions {
        let at = u64::from(p.number - 1)
            .checked_mul(entry_size)
            .and_then(|o| entries_lba.checked_mul(ss)?.checked_add(o))
            .with_context(|| format!("{}: GPT entries beyond any disk", path.display()))?;
        read_at(&mut f, at, &mut e)?;
        out.push(guid_text(&e[16..32]));
    }
    Ok(out)
}

/// A GUID in its text form (the first three fields little-endian on disk).
fn guid_text(b: &[u8]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
        b[14], b[15]
    )
}

/// Where the last "the runner exited with code N" line is in `console`, and N.
pub fn runner_exit(console: &str) -> Option<(usize, i32)> {
    const MARK: &str = "tsforge: the runner exited with code ";
    let i = console.rfind(MARK)?;
    let code = console[i + MARK.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some((i, code))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn exit_code_is_the_last_one_printed() {
        let c = "tsforge: the runner exited with code 3\r\n...\ntsforge: the runner exited with code 0\n";
        assert_eq!(runner_exit_code(&c.replace('\r', "")), Some(0));
        assert_eq!(
            runner_exit(c),
            Some((c.rfind("tsforge: the runner exited").unwrap(), 0))
        );
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
        // The NIC is the boot device by QEMU's bootindex (it replaced `-boot n`), in its slot.
        assert!(
            a.contains("-device virtio-net-pci,netdev=n0,addr=0x3,bootindex=0")
                && !a.contains("-boot")
                && a.contains("-no-reboot")
                && a.contains("-accel tcg"),
            "{a}"
        );
    }

    /// `-device` arguments of `cfg`, in order.
    /// UEFI with shim as the boot file: the NIC has no iPXE option ROM (`romfile=`), so the
    /// firmware's own PXE loads shim, as on a PC; BIOS, or UEFI with the iPXE script, keeps
    /// QEMU's iPXE ROM.
    #[test]
    fn uefi_pxe_of_an_efi_program_uses_the_firmwares_own_pxe() {
        if !Path::new(OVMF_SECBOOT_CODE).is_file() || !Path::new(OVMF_MS_VARS).is_file() {
            eprintln!("SKIP: {OVMF_SECBOOT_CODE} or {OVMF_MS_VARS} missing (apt-get install ovmf)");
            return;
        }
        let w = tempfile::tempdir().unwrap();
        let pxe = |bootfile: &str| BootFrom::Pxe {
            tftp_root: "/srv/tftp".into(),
            bootfile: bootfile.into(),
        };
        let mut cfg = MachineConfig::new(
            Firmware::UefiSecureBoot,
            pxe("bootx64.efi"),
            w.path().into(),
        );
        cfg.disks = vec!["/d/0.img".into()];
        assert!(cfg.firmware_pxe());
        assert!(devices_of(&cfg)
            .contains(&"virtio-net-pci,netdev=n0,addr=0x3,bootindex=1,romfile=".to_string()));
        let a = cfg.args().unwrap().join(" ");
        assert!(a.contains("tftp=/srv/tftp,bootfile=bootx64.efi"), "{a}");
        for (fw, bootfile) in [
            (Firmware::Bios, "bootx64.efi"),
            (Firmware::Bios, "boot.ipxe"),
            (Firmware::UefiSecureBoot, "boot.ipxe"),
        ] {
            cfg.firmware = fw;
            cfg.boot = pxe(bootfile);
            assert!(!cfg.firmware_pxe(), "{fw:?} {bootfile}");
            assert!(devices_of(&cfg)
                .contains(&"virtio-net-pci,netdev=n0,addr=0x3,bootindex=1".to_string()));
        }
    }

    fn devices_of(cfg: &MachineConfig) -> Vec<String> {
        let a = cfg.args().unwrap();
        a.windows(2)
            .filter(|w| w[0] == "-device")
            .map(|w| w[1].clone())
            .collect()
    }

    // https://qemu.org/docs/master/system/bootindex.html: the lowest bootindex is tried first.
    #[test]
    fn target_disks_boot_first_in_disk_order_then_the_medium() {
        let w = tempfile::tempdir().unwrap();
        let mut cfg = MachineConfig::new(
            Firmware::Uefi,
            BootFrom::Disk("/m/usb.img".into()),
            w.path().into(),
        );
        cfg.disks = vec!["/d/a.img".into(), "/d/b.img".into()];
        cfg.accel = Some("tcg".into());
        assert_eq!(
            devices_of(&cfg),
            [
                "virtio-blk-pci,drive=medium,addr=0x4,bootindex=2",
                "virtio-blk-pci,drive=disk0,addr=0x5,bootindex=0",
                "virtio-blk-pci,drive=disk1,addr=0x6,bootindex=1",
            ]
        );
        let a = cfg.args().unwrap().join(" ");
        assert!(
            a.contains("-drive file=/m/usb.img,if=none,id=medium,format=raw,cache=unsafe")
                && a.contains("-drive file=/d/b.img,if=none,id=disk1,format=raw,cache=unsafe")
                && a.contains("-nic none"),
            "{a}"
        );
        cfg.medium_first = true;
        assert_eq!(
            devices_of(&cfg),
            [
                "virtio-blk-pci,drive=medium,addr=0x4,bootindex=0",
                "virtio-blk-pci,drive=disk0,addr=0x5,bootindex=1",
                "virtio-blk-pci,drive=disk1,addr=0x6,bootindex=2",
            ]
        );
        // A network card that is not the medium has its slot and no boot index.
        cfg.network = true;
        assert!(devices_of(&cfg).contains(&"virtio-net-pci,netdev=n0,addr=0x3".to_string()));
    }

    #[test]
    fn bios_keeps_a_usb_medium_first_and_puts_a_cdrom_after_the_disks() {
        let mut cfg = MachineConfig::new(
            Firmware::Bios,
            BootFrom::Disk("/m/usb.img".into()),
            "/tmp/w".into(),
        );
        cfg.disks = vec!["/d/a.img".into()];
        // SeaBIOS boots only the first hard disk of its order.
        assert!(cfg.medium_boots_first());
        assert_eq!(
            devices_of(&cfg),
            [
                "virtio-blk-pci,drive=medium,addr=0x4,bootindex=0",
                "virtio-blk-pci,drive=disk0,addr=0x5,bootindex=1",
            ]
        );
        cfg.boot = BootFrom::Cdrom("/m/x.iso".into());
        assert!(!cfg.medium_boots_first());
        assert_eq!(
            devices_of(&cfg),
            [
                "ide-cd,drive=medium,bus=ide.1,unit=0,bootindex=1",
                "virtio-blk-pci,drive=disk0,addr=0x5,bootindex=0",
            ]
        );
        let a = cfg.args().unwrap().join(" ");
        assert!(
            a.contains("-drive file=/m/x.iso,if=none,id=medium,media=cdrom,readonly=on")
                && !a.contains("-boot"),
            "{a}"
        );
        cfg.disks = (0..28).map(|i| format!("/d/{i}.img").into()).collect();
        let e = cfg.args().unwrap_err().to_string();
        assert!(e.contains("28 target disks") && e.contains("for 27"), "{e}");
    }

    /// Secure Boot: Debian's Secure Boot OVMF with Microsoft's keys needs SMM, so a q35
    /// machine with `smm=on` and secure flash (Debian's ovmf README.Debian); the variable
    /// store starts from OVMF_VARS_4M.ms.fd; an ISO on q35's AHCI port is named the medium;
    /// slot 0x1f (ICH9) is not given to a disk.
    #[test]
    fn secure_boot_machines_are_q35_with_smm_and_microsofts_keys() {
        if !Path::new(OVMF_SECBOOT_CODE).is_file() || !Path::new(OVMF_MS_VARS).is_file() {
            eprintln!("SKIP: {OVMF_SECBOOT_CODE} or {OVMF_MS_VARS} missing (apt-get install ovmf)");
            return;
        }
        let w = tempfile::tempdir().unwrap();
        let mut cfg = MachineConfig::new(
            Firmware::UefiSecureBoot,
            BootFrom::Cdrom("/m/x.iso".into()),
            w.path().into(),
        );
        let a = cfg.args().unwrap().join(" ");
        assert!(a.contains("-machine q35,smm=on"), "{a}");
        assert!(
            a.contains("-global driver=cfi.pflash01,property=secure,value=on"),
            "{a}"
        );
        assert!(
            a.contains(&format!(
                "if=pflash,format=raw,readonly=on,file={OVMF_SECBOOT_CODE}"
            )),
            "{a}"
        );
        assert_eq!(
            std::fs::read(cfg.vars_file()).unwrap(),
            std::fs::read(OVMF_MS_VARS).unwrap()
        );
        assert!(Firmware::UefiSecureBoot.is_uefi() && !Firmware::Bios.is_uefi());
        let plain = MachineConfig::new(
            Firmware::Uefi,
            BootFrom::Cdrom("/m/x.iso".into()),
            w.path().join("plain"),
        );
        let a = plain.args().unwrap().join(" ");
        assert!(!a.contains("q35") && !a.contains("smm"), "{a}");

        let events = boot_events(
            "BdsDxe: starting Boot0001 \"UEFI QEMU DVD-ROM QM00003 \" from PciRoot(0x0)/Pci(0x1F,0x2)/Sata(0x1,0xFFFF,0x0)\r\n",
            &cfg.devices(),
        );
        assert_eq!(events[0].device, BootDevice::Medium);

        cfg.disks = (0..27).map(|i| format!("/d/{i}.img").into()).collect();
        let e = cfg.args().unwrap_err().to_string();
        assert!(e.contains("27 target disks") && e.contains("for 26"), "{e}");
    }

    #[test]
    fn the_variable_store_is_fresh_unless_kept() {
        let w = tempfile::tempdir().unwrap();
        let mut cfg = MachineConfig::new(
            Firmware::Uefi,
            BootFrom::Disk("/m/usb.img".into()),
            w.path().into(),
        );
        let vars = cfg.vars_file();
        std::fs::write(&vars, b"entries of an earlier run").unwrap();
        cfg.keep_vars = true;
        cfg.args().unwrap();
        assert_eq!(std::fs::read(&vars).unwrap(), b"entries of an earlier run");
        assert!(cfg
            .args()
            .unwrap()
            .join(" ")
            .contains(&format!("if=pflash,format=raw,file={}", vars.display())));
        cfg.keep_vars = false;
        cfg.args().unwrap();
        assert_eq!(
            std::fs::read(&vars).unwrap(),
            std::fs::read(OVMF_VARS).unwrap()
        );
        // Kept but absent: a fresh copy.
        std::fs::remove_file(&vars).unwrap();
        cfg.keep_vars = true;
        cfg.args().unwrap();
        assert_eq!(
            std::fs::read(&vars).unwrap(),
            std::fs::read(OVMF_VARS).unwrap()
        );
    }

    /// A 64 MiB GPT image with one EFI system partition, written by tsforge's partitioner, and
    /// that partition's unique GUID as OVMF prints it (upper case), read from the entry array
    /// (LBA 2, bytes 16..32 of entry 1).
    pub(crate) fn gpt_disk(path: &Path) -> String {
        use tsforge_runtime::disk::layout::{self, PartKind, PartitionSpec, SizeSpec, TableKind};
        let mut disk = tsforge_runtime::disk::Disk::create_image(path, 64 << 20).unwrap();
        let spec = [PartitionSpec {
            name: "EFI".into(),
            kind: PartKind::EfiSystem,
            size: SizeSpec::Rest,
            active: false,
        }];
        let plan = layout::plan(64 << 20, 512, TableKind::Gpt, &spec).unwrap();
        layout::write_table(&mut disk, TableKind::Gpt, &plan).unwrap();
        drop(disk);
        let b = std::fs::read(path).unwrap();
        let g = &b[1024 + 16..1024 + 32];
        let hex = |r: &[u8]| r.iter().map(|x| format!("{x:02X}")).collect::<String>();
        let rev = |r: &[u8]| r.iter().rev().copied().collect::<Vec<u8>>();
        format!(
            "{}-{}-{}-{}-{}",
            hex(&rev(&g[0..4])),
            hex(&rev(&g[4..6])),
            hex(&rev(&g[6..8])),
            hex(&g[8..10]),
            hex(&g[10..16])
        )
    }

    #[test]
    fn ovmf_boot_lines_name_the_medium_the_disks_and_other_entries() {
        let d = tempfile::tempdir().unwrap();
        let guid = gpt_disk(&d.path().join("target.img"));
        let devices = Devices {
            medium: MediumKind::Disk(d.path().join("usb.img")),
            disks: vec![d.path().join("target.img"), d.path().join("blank.img")],
        };
        // As Debian's OVMF prints it on -serial (measured): terminal escapes before the first
        // line, CR LF line ends.
        let console = format!(
            "\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01HBdsDxe: failed to load Boot0001 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x5,0x0): Not Found\r\n\
             BdsDxe: failed to load Boot0002 \"UEFI Misc Device 2\" from PciRoot(0x0)/Pci(0x6,0x0): Not Found\r\n\
             BdsDxe: loading Boot0003 \"UEFI Misc Device 3\" from PciRoot(0x0)/Pci(0x4,0x0)\r\n\
             BdsDxe: starting Boot0003 \"UEFI Misc Device 3\" from PciRoot(0x0)/Pci(0x4,0x0)\r\n\
             Linux version 6.1\r\n\
             BdsDxe: starting Boot0005 \"debian\" from HD(1,GPT,{guid},0x800,0x1F000)/\\EFI\\debian\\shimx64.efi\r\n\
             BdsDxe: starting Boot0006 \"old\" from HD(2,GPT,0B1E4A3C-0000-4000-8000-000000000001,0x800,0x1000)/\\EFI\\x.efi\r\n\
             BdsDxe: starting Boot0002 \"EFI Internal Shell\" from Fv(7CB8BDC9-F8EB-4F34-AAEA-3EE4AF6516A1)/FvFile(7C04A583-9E3E-4F1C-AD65-E05268D0B4D1)\r\n\
             BdsDxe: starting Boot0007 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x5,0x0)/HD(1,GPT,{guid},0x800,0x1F000)\r\n"
        );
        let e = boot_events(&console, &devices);
        let got: Vec<(&str, BootDevice, Option<&str>)> = e
            .iter()
            .map(|e| (e.entry.as_str(), e.device.clone(), e.failed.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("Boot0001", BootDevice::Disk(0), Some("Not Found")),
                ("Boot0002", BootDevice::Disk(1), Some("Not Found")),
                ("Boot0003", BootDevice::Medium, None),
                ("Boot0005", BootDevice::Disk(0), None),
                ("Boot0006", BootDevice::Other("old".into()), None),
                (
                    "Boot0002",
                    BootDevice::Other("EFI Internal Shell".into()),
                    None
                ),
                ("Boot0007", BootDevice::Disk(0), None),
            ]
        );
        assert_eq!(e[0].name, "UEFI Misc Device");
        assert_eq!(e[0].path, "PciRoot(0x0)/Pci(0x5,0x0)");
        assert!(console[e[0].offset..].starts_with("BdsDxe: failed to load Boot0001"));
        assert!(console[e[2].offset..].starts_with("BdsDxe: starting Boot0003"));
        assert!(
            e[3].path.ends_with("\\EFI\\debian\\shimx64.efi"),
            "{}",
            e[3].path
        );
        // The line as the console reader keeps it (CR removed) gives the same events.
        assert_eq!(boot_events(&console.replace('\r', ""), &devices).len(), 7);
        // An ISO medium is the secondary IDE master; a PXE one is the NIC.
        let cd = Devices {
            medium: MediumKind::Cdrom,
            disks: vec![],
        };
        let line = "BdsDxe: starting Boot0001 \"UEFI QEMU DVD-ROM QM00003 \" from PciRoot(0x0)/Pci(0x1,0x1)/Ata(Secondary,Master,0x0)\r\n";
        assert_eq!(boot_events(line, &cd)[0].device, BootDevice::Medium);
        let pxe = Devices {
            medium: MediumKind::Pxe,
            disks: vec![],
        };
        let line = "BdsDxe: starting Boot0004 \"UEFI PXEv4 (MAC:525400123456)\" from PciRoot(0x0)/Pci(0x3,0x0)/MAC(525400123456,0x1)/IPv4(0.0.0.0)\n";
        assert_eq!(boot_events(line, &pxe)[0].device, BootDevice::Medium);
        assert_eq!(
            boot_events(line, &cd)[0].device,
            BootDevice::Other("UEFI PXEv4 (MAC:525400123456)".into())
        );
        assert!(
            boot_events("SeaBIOS (version 1.16.2)\nBooting from Hard Disk...\n", &cd).is_empty()
        );
    }
}
