//! `tsforge try MEDIUM`: boot a medium in QEMU with blank virtual disks, show its console, and
//! report the run's outcome and the disks' layout, before a real machine is touched. The same
//! [`crate::qemu`] code runs the end-to-end tests.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::qemu::{
    self, BootDevice, BootEvent, BootFrom, Devices, Firmware, Forward, Machine, MachineConfig,
};
use tsforge_runtime::cli::Exit;
use tsforge_runtime::disk::{layout, Disk};

/// What the linux template's `/init` prints just before it starts the runner.
pub const RUNNER_STARTED: &str = "tsforge: starting the runner";

/// The longest `--timeout` (30 days, the same limit as a step's time-out); larger values
/// are refused when the command line is read.
pub const MAX_TIMEOUT_SECS: u64 = tsforge_runtime::sequence::model::limits::MAX_TIMEOUT_SECS;

#[derive(Debug, Args)]
pub struct TryCmd {
    /// The medium: a USB image (`tsforge build usb`), an ISO, or a PXE tree (`tsforge build pxe`)
    pub medium: PathBuf,
    /// Boot with UEFI firmware (OVMF); the default when OVMF is installed
    #[arg(long, conflicts_with = "bios")]
    pub uefi: bool,
    /// Boot with BIOS firmware (SeaBIOS)
    #[arg(long)]
    pub bios: bool,
    /// Boot with UEFI firmware enforcing Secure Boot with Microsoft's keys, as most PCs ship
    /// (OVMF's OVMF_CODE_4M.secboot.fd and OVMF_VARS_4M.ms.fd on a q35 machine)
    #[arg(long, conflicts_with_all = ["bios", "uefi"])]
    pub secure_boot: bool,
    /// A target disk: a size for a blank one (e.g. 8G, 512M), or an existing raw image file
    /// (used in place, so it keeps what the run wrote). Repeatable; default one blank 8G disk
    #[arg(long = "disk", value_name = "SIZE|PATH")]
    pub disks: Vec<String>,
    /// Boot MEDIUM (a PXE tree folder) from the network
    #[arg(long)]
    pub pxe: bool,
    /// Forward the guest's 10.0.2.100:PORT to a host address, e.g. 80=127.0.0.1:8080 (a
    /// distribution point on this machine); gives the machine a network card
    #[arg(long = "forward", value_name = "PORT=HOST:PORT")]
    pub forwards: Vec<String>,
    /// Give the machine a network card (QEMU user networking, restricted to the forwards)
    #[arg(long)]
    pub network: bool,
    /// Stop the machine after this many seconds (1 to 2592000, 30 days)
    #[arg(long, default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub timeout: u64,
    /// Memory of the virtual machine, in MiB
    #[arg(long, default_value_t = 1024)]
    pub memory: u32,
    /// Folder for the blank disks, the console log and the firmware's variables (kept);
    /// default: a temporary folder removed at the end
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// A guest restart ends the trial instead of rebooting (by default a Restart Computer
    /// step reboots the machine and the run resumes)
    #[arg(long)]
    pub no_reboot: bool,
    /// Boot the medium before the target disks (by default the disks come first, as on a real
    /// machine: a blank disk is skipped and the medium boots; a disk the sequence made bootable
    /// boots on its own after a restart). For a medium tried against an already bootable disk
    #[arg(long)]
    pub medium_first: bool,
    /// Show the machine's screen too: QEMU's -display (gtk, sdl, vnc=:1); Windows PE media
    /// show their console only there
    #[arg(long, value_name = "KIND")]
    pub display: Option<String>,
}

/// A PXE tree under UEFI boots its signed chain, shim as the DHCP boot file, when it has one
/// (a linux tree: `tsforge build pxe`), through the firmware's own PXE
/// ([`MachineConfig::firmware_pxe`]); else (a Windows PE tree) iPXE's script, which Secure
/// Boot cannot start.
fn pxe_loader_for(boot: BootFrom, firmware: Firmware) -> Result<BootFrom> {
    let BootFrom::Pxe {
        tftp_root,
        bootfile,
    } = boot
    else {
        return Ok(boot);
    };
    let loader = crate::template::secureboot::PXE_LOADER;
    if firmware.is_uefi() && tftp_root.join(loader).is_file() {
        return Ok(BootFrom::Pxe {
            tftp_root,
            bootfile: loader.into(),
        });
    }
    if firmware == Firmware::UefiSecureBoot {
        bail!(
            "{}: this PXE tree has no {loader} (shim, the signed chain of linux trees): it boots \
             through iPXE, which Secure Boot refuses; try it without --secure-boot",
            tftp_root.display()
        );
    }
    Ok(BootFrom::Pxe {
        tftp_root,
        bootfile,
    })
}

/// How a medium path is booted.
fn boot_from(medium: &Path, pxe: bool) -> Result<BootFrom> {
    let meta = std::fs::metadata(medium)
        .with_context(|| format!("{}: cannot read the medium", medium.display()))?;
    if meta.is_dir() {
        if !medium.join("boot.ipxe").is_file() {
            bail!(
                "{}: a folder is tried as a PXE tree, and it has no boot.ipxe (make one with `tsforge build pxe`)",
                medium.display()
            );
        }
        return Ok(BootFrom::Pxe {
            tftp_root: std::path::absolute(medium)?,
            bootfile: "boot.ipxe".into(),
        });
    }
    if pxe {
        bail!(
            "{}: --pxe needs a PXE tree folder (tsforge build pxe)",
            medium.display()
        );
    }
    // ISO 9660: "CD001" at byte 32769 (the primary volume descriptor in sector 16).
    let mut head = vec![0u8; 32774];
    let n = {
        use std::io::Read;
        let mut f = std::fs::File::open(medium)
            .with_context(|| format!("{}: cannot open the medium", medium.display()))?;
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..])? {
                0 => break,
                k => n += k,
            }
        }
        n
    };
    let path = std::path::absolute(medium)?;
    if n == head.len() && &head[32769..32774] == b"CD001" {
        Ok(BootFrom::Cdrom(path))
    } else if n >= 512 && head[510] == 0x55 && head[511] == 0xaa {
        Ok(BootFrom::Disk(path))
    } else {
        bail!(
            "{}: neither an ISO image nor a disk image with a boot sector",
            medium.display()
        )
    }
}

fn parse_forward(s: &str) -> Result<Forward> {
    let (port, host) = s
        .split_once('=')
        .with_context(|| format!("--forward {s}: expected PORT=HOST:PORT"))?;
    Ok(Forward {
        guest_port: port
            .parse()
            .with_context(|| format!("--forward {s}: {port:?} is not a port"))?,
        host: host
            .parse()
            .with_context(|| format!("--forward {s}: {host:?} is not HOST:PORT"))?,
    })
}

/// One line per partition of the disk image at `path`, as `describe_disk` prints them.
pub fn describe_disk(path: &Path) -> Result<String> {
    let disk = Disk::open(path, false)?;
    let size = disk.size();
    let mut out = format!("{} ({})", path.display(), human(size));
    match layout::read_table(&disk)? {
        None => out.push_str(": no partition table (blank)"),
        Some(t) => {
            out.push_str(&format!(": {}", format!("{:?}", t.kind).to_uppercase()));
            for p in &t.partitions {
                out.push_str(&format!(
                    "\n  {}: {} at {}, {}{}{}",
                    p.number,
                    human(p.len),
                    human(p.start),
                    p.kind,
                    if p.name.is_empty() {
                        String::new()
                    } else {
                        format!(" {:?}", p.name)
                    },
                    if p.active { ", active" } else { "" }
                ));
            }
        }
    }
    Ok(out)
}

fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn dispatch(c: TryCmd) -> Result<Exit> {
    let boot = boot_from(&c.medium, c.pxe)?;
    let firmware = if c.bios {
        Firmware::Bios
    } else if c.secure_boot {
        Firmware::UefiSecureBoot
    } else if c.uefi || Path::new(qemu::OVMF_CODE).is_file() {
        Firmware::Uefi
    } else {
        Firmware::Bios
    };
    let boot = pxe_loader_for(boot, firmware)?;
    let forwards = c
        .forwards
        .iter()
        .map(|f| parse_forward(f))
        .collect::<Result<Vec<_>>>()?;
    if qemu::qemu_available().is_none() {
        bail!(
            "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86 ovmf ipxe-qemu)"
        );
    }
    let temp;
    let work = match &c.work {
        Some(w) => {
            std::fs::create_dir_all(w).with_context(|| format!("creating {}", w.display()))?;
            w.clone()
        }
        None => {
            temp = tempfile::tempdir().context("creating a work folder")?;
            temp.path().to_path_buf()
        }
    };
    let specs = if c.disks.is_empty() {
        vec!["8G".to_string()]
    } else {
        c.disks.clone()
    };
    let mut disks = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let p = Path::new(spec);
        if p.is_file() {
            disks.push(std::path::absolute(p)?);
            continue;
        }
        let size = tsforge_runtime::disk::parse_size(spec).with_context(|| {
            format!("--disk {spec}: neither an existing file nor a size (such as 8G)")
        })?;
        let path = work.join(format!("disk{i}.img"));
        let f =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        f.set_len(size)
            .with_context(|| format!("sizing {}", path.display()))?;
        disks.push(path);
    }
    let mut cfg = MachineConfig::new(firmware, boot.clone(), work.clone());
    cfg.disks = disks.clone();
    cfg.memory_mib = c.memory;
    cfg.reboot = !c.no_reboot;
    cfg.medium_first = c.medium_first;
    cfg.network = c.network;
    cfg.forwards = forwards;
    cfg.echo = true;
    cfg.display = c.display.clone();
    let what = match &boot {
        BootFrom::Disk(p) => format!("USB disk image {}", p.display()),
        BootFrom::Cdrom(p) => format!("ISO {} as a CD-ROM", p.display()),
        BootFrom::Pxe {
            tftp_root,
            bootfile,
        } => format!("PXE from {} (boot file {bootfile})", tftp_root.display()),
    };
    eprintln!(
        "tsforge try: booting the {what} with {} firmware, {} MiB, {} target disk(s):",
        match firmware {
            Firmware::Bios => "BIOS",
            Firmware::Uefi => "UEFI",
            Firmware::UefiSecureBoot => "UEFI (Secure Boot enforced, Microsoft's keys)",
        },
        c.memory,
        disks.len()
    );
    for d in &disks {
        eprintln!("  {}", d.display());
    }
    eprintln!(
        "tsforge try: boot order: {}",
        if cfg.medium_boots_first() {
            "the medium, then the target disks"
        } else {
            "the target disks, then the medium"
        }
    );
    if cfg.medium_boots_first() && !c.medium_first {
        eprintln!("tsforge try: (SeaBIOS boots only the first hard disk of its order: a USB image medium comes first under BIOS)");
    }
    eprintln!(
        "tsforge try: the console follows; type answers to prompts here. Timeout {} s.",
        c.timeout
    );
    let mut m = Machine::start(&cfg)?;
    m.forward_stdin_after(RUNNER_STARTED);
    let timeout = Duration::from_secs(c.timeout);
    let started = Instant::now();
    let runner = m.expect(RUNNER_STARTED, timeout).map(|_| started.elapsed());
    let status = m.wait_exit(timeout.saturating_sub(started.elapsed()));
    let total = started.elapsed();
    let console = m.console();
    drop(m);
    eprintln!();
    eprintln!("tsforge try: summary");
    match &runner {
        Ok(t) => eprintln!("  boot to the runner: {:.1} s", t.as_secs_f64()),
        Err(_) => eprintln!("  the runner never started"),
    }
    eprintln!("  total: {:.1} s", total.as_secs_f64());
    let report = BootReport::read(&console, &cfg.devices(), firmware, &what);
    for line in &report.lines {
        eprintln!("  {line}");
    }
    for d in &disks {
        match describe_disk(d) {
            Ok(s) => eprintln!("  {}", s.replace('\n', "\n  ")),
            Err(e) => eprintln!("  {}: {e:#}", d.display()),
        }
    }
    if c.work.is_some() {
        eprintln!(
            "  console log: {} (work folder kept)",
            cfg.console_log.display()
        );
    }
    if let Err(e) = status {
        bail!("{e:#}");
    }
    match qemu::runner_exit_code(&console) {
        Some(0) => {
            eprintln!("  the sequence succeeded (runner exit code 0)");
            eprintln!("  its exit line: {}", report.exit_phase);
            Ok(Exit::Ok)
        }
        Some(code) => {
            eprintln!("  the sequence failed: runner exit code {code}");
            eprintln!("  its exit line: {}", report.exit_phase);
            Ok(Exit::from_code(u8::try_from(code).unwrap_or(1).max(1)))
        }
        None => bail!(
            "the machine powered off without the runner's exit code on the serial console: the medium did not boot to the linux template's /init (see the console above); Windows PE media do not report on the serial line: watch them with --display gtk"
        ),
    }
}

/// What the firmware booted, read from the console at the end of a trial.
#[derive(Debug)]
pub struct BootReport {
    /// The summary's lines: each boot, the restarts, whether the deployed disk booted.
    pub lines: Vec<String>,
    /// Whether a target disk's own loader started after the medium's runner had run (`None`:
    /// cannot be told, BIOS).
    pub deployed_booted: Option<bool>,
    /// Which boot printed the last runner exit line (for the outcome line).
    pub exit_phase: String,
}

impl BootReport {
    /// Reads the firmware's boot lines ([`qemu::boot_events`]), the runner's start marker
    /// ([`RUNNER_STARTED`]) and its last exit line from `console`; `medium` describes the
    /// medium ("USB disk image …").
    pub fn read(console: &str, devices: &Devices, firmware: Firmware, medium: &str) -> BootReport {
        let events = qemu::boot_events(console, devices);
        let started: Vec<&BootEvent> = events.iter().filter(|e| e.failed.is_none()).collect();
        let exit = qemu::runner_exit(console);
        let mut lines = Vec::new();
        if firmware == Firmware::Bios {
            // Linux prints this line when it restarts the machine (the linux template, a
            // deployed Linux whose console is the serial line).
            let restarts = console.matches("reboot: Restarting system").count();
            lines.push(format!(
                "boot devices: cannot be told under BIOS (SeaBIOS does not print the device it boots on the serial line); restarts seen: {restarts} (Linux's \"reboot: Restarting system\" lines)"
            ));
            return BootReport {
                lines,
                deployed_booted: None,
                exit_phase: "printed on the serial console".into(),
            };
        }
        let runner_at =
            |from: usize, to: usize| console[from..to].find(RUNNER_STARTED).map(|i| from + i);
        // The medium's runner: the first runner start within a boot of the medium.
        let mut medium_runner: Option<usize> = None;
        for (k, e) in started.iter().enumerate() {
            let end = started.get(k + 1).map_or(console.len(), |n| n.offset);
            if e.device == BootDevice::Medium && medium_runner.is_none() {
                medium_runner = runner_at(e.offset, end);
            }
        }
        let mut deployed = None;
        for (k, e) in started.iter().enumerate() {
            let who = match &e.device {
                BootDevice::Medium => format!("the medium ({medium})"),
                BootDevice::Disk(n) => format!("target disk {n} ({})", devices.disks[*n].display()),
                BootDevice::Other(name) => format!("other: {name:?}"),
            };
            let mut line = format!(
                "boot {}: {who}, {} {:?} from {}",
                k + 1,
                e.entry,
                e.name,
                e.path
            );
            if let BootDevice::Disk(n) = e.device {
                if medium_runner.is_some_and(|r| r < e.offset) {
                    line.push_str(": its own boot loader — the deployed disk booted on its own");
                    deployed.get_or_insert(n);
                } else {
                    line.push_str(": its own boot loader, before the medium's runner ran");
                }
            }
            lines.push(line);
        }
        if started.is_empty() {
            lines.push(
                "boot: the firmware started no boot entry (no BdsDxe line on the serial console)"
                    .into(),
            );
        }
        let failed = events.iter().filter(|e| e.failed.is_some()).count();
        if failed > 0 {
            let skipped: Vec<String> = events
                .iter()
                .filter_map(|e| {
                    let why = e.failed.as_ref()?;
                    let who = match &e.device {
                        BootDevice::Medium => "the medium".to_string(),
                        BootDevice::Disk(n) => format!("target disk {n}"),
                        BootDevice::Other(name) => format!("{name:?}"),
                    };
                    Some(format!("{who} ({why})"))
                })
                .collect();
            lines.push(format!("not bootable when tried: {}", skipped.join(", ")));
            // OVMF's status when an image's signature is not trusted (Secure Boot's db/dbx).
            if events
                .iter()
                .any(|e| e.failed.as_deref() == Some("Access Denied"))
            {
                lines.push(
                    "\"Access Denied\": Secure Boot refused a boot loader that is not signed by a \
                     key the firmware trusts"
                        .into(),
                );
            }
        }
        lines.push(format!("restarts: {}", started.len().saturating_sub(1)));
        lines.push(match (deployed, medium_runner) {
            (Some(n), _) => format!("the deployed disk booted on its own (target disk {n})"),
            (None, Some(_)) => "the deployed disk never booted on its own".into(),
            (None, None) => {
                "the medium's runner never ran, so no deployed disk booted on its own".into()
            }
        });
        let exit_phase = match exit {
            Some((at, _)) => match started.iter().rev().find(|e| e.offset < at) {
                Some(e) => match &e.device {
                    BootDevice::Medium => "printed by the medium's runner".to_string(),
                    BootDevice::Disk(n) => format!("printed on the deployed disk, target disk {n}"),
                    BootDevice::Other(name) => {
                        format!("printed after the firmware started {name:?}")
                    }
                },
                None => "printed before any boot line of the firmware".into(),
            },
            None => String::new(),
        };
        BootReport {
            lines,
            deployed_booted: Some(deployed.is_some()),
            exit_phase,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_and_media_are_recognised() {
        let f = parse_forward("80=127.0.0.1:8080").unwrap();
        assert_eq!((f.guest_port, f.host.port()), (80, 8080));
        assert!(parse_forward("80:8080")
            .unwrap_err()
            .to_string()
            .contains("PORT=HOST:PORT"));
        let d = tempfile::tempdir().unwrap();
        let iso = d.path().join("x.iso");
        let mut b = vec![0u8; 40000];
        b[32769..32774].copy_from_slice(b"CD001");
        std::fs::write(&iso, &b).unwrap();
        assert!(matches!(
            boot_from(&iso, false).unwrap(),
            BootFrom::Cdrom(_)
        ));
        let usb = d.path().join("x.img");
        let mut b = vec![0u8; 1024];
        b[510] = 0x55;
        b[511] = 0xaa;
        std::fs::write(&usb, &b).unwrap();
        assert!(matches!(boot_from(&usb, false).unwrap(), BootFrom::Disk(_)));
        std::fs::write(&usb, b"hello").unwrap();
        let e = boot_from(&usb, false).unwrap_err().to_string();
        assert!(e.contains("neither an ISO"), "{e}");
        let e = boot_from(d.path(), false).unwrap_err().to_string();
        assert!(e.contains("no boot.ipxe"), "{e}");
    }

    /// A PXE tree with shim boots it under UEFI (with or without Secure Boot) and its iPXE
    /// script under BIOS; a tree without shim (Windows PE) is refused under Secure Boot with
    /// the reason, and keeps its script under plain UEFI.
    #[test]
    fn pxe_trees_boot_shim_under_uefi_and_the_script_under_bios() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("boot.ipxe"), "#!ipxe\n").unwrap();
        let file = |b: BootFrom| match b {
            BootFrom::Pxe { bootfile, .. } => bootfile,
            other => panic!("{other:?}"),
        };
        let tree = || boot_from(d.path(), true).unwrap();
        // Windows PE style: the iPXE script only.
        let e = pxe_loader_for(tree(), Firmware::UefiSecureBoot)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no bootx64.efi") && e.contains("without --secure-boot"),
            "{e}"
        );
        assert_eq!(
            file(pxe_loader_for(tree(), Firmware::Uefi).unwrap()),
            "boot.ipxe"
        );
        // Linux: shim too.
        std::fs::write(d.path().join("bootx64.efi"), "MZ").unwrap();
        for fw in [Firmware::Uefi, Firmware::UefiSecureBoot] {
            assert_eq!(file(pxe_loader_for(tree(), fw).unwrap()), "bootx64.efi");
        }
        assert_eq!(
            file(pxe_loader_for(tree(), Firmware::Bios).unwrap()),
            "boot.ipxe"
        );
    }

    fn devices(dir: &Path) -> Devices {
        Devices {
            medium: qemu::MediumKind::Disk(dir.join("usb.img")),
            disks: vec![dir.join("target.img")],
        }
    }

    /// A deployment whose restart boots the deployed disk: the first run boots the medium
    /// (the blank target disk is skipped), the runner hands over and restarts; the second run
    /// starts the firmware entry the runner wrote (HD(…) of the target's ESP); the handed-over
    /// runner prints the last exit line there.
    #[test]
    fn the_summary_says_when_the_deployed_disk_booted_on_its_own() {
        let d = tempfile::tempdir().unwrap();
        let guid = crate::qemu::tests::gpt_disk(&d.path().join("target.img"));
        let console = format!(
            "\x1b[2J\x1b[01;01HBdsDxe: failed to load Boot0001 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x5,0x0): Not Found\r\n\
             BdsDxe: starting Boot0002 \"UEFI Misc Device 2\" from PciRoot(0x0)/Pci(0x4,0x0)\r\n\
             {RUNNER_STARTED}\r\n[1/3] Partition\r\nRestarting in 0 s\r\nreboot: Restarting system\r\n\
             \x1b[2J\x1b[01;01HBdsDxe: starting Boot0003 \"debian\" from HD(1,GPT,{guid},0x800,0x1F000)/\\EFI\\debian\\shimx64.efi\r\n\
             resuming task sequence\r\ntsforge: the runner exited with code 0\r\n"
        );
        let r = BootReport::read(
            &console,
            &devices(d.path()),
            Firmware::Uefi,
            "USB disk image u.img",
        );
        let text = r.lines.join("\n");
        assert_eq!(r.deployed_booted, Some(true), "{text}");
        assert!(
            r.lines[0].starts_with("boot 1: the medium (USB disk image u.img), Boot0002"),
            "{text}"
        );
        assert!(
            r.lines[1].starts_with("boot 2: target disk 0 (")
                && r.lines[1]
                    .ends_with("its own boot loader — the deployed disk booted on its own"),
            "{text}"
        );
        assert!(
            text.contains("not bootable when tried: target disk 0 (Not Found)"),
            "{text}"
        );
        assert!(text.contains("restarts: 1"), "{text}");
        assert!(
            text.contains("the deployed disk booted on its own (target disk 0)"),
            "{text}"
        );
        assert_eq!(r.exit_phase, "printed on the deployed disk, target disk 0");
    }

    /// OVMF's line when Secure Boot refuses an unsigned loader (measured with
    /// OVMF_CODE_4M.secboot.fd, OVMF_VARS_4M.ms.fd and systemd-boot as BOOTX64.EFI).
    #[test]
    fn the_summary_says_when_secure_boot_refused_the_medium() {
        let d = tempfile::tempdir().unwrap();
        let console = "BdsDxe: loading Boot0001 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x4,0x0)\r\n\
             BdsDxe: failed to load Boot0001 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x4,0x0): Access Denied\r\n";
        let r = BootReport::read(
            console,
            &devices(d.path()),
            Firmware::UefiSecureBoot,
            "USB disk image u.img",
        );
        let text = r.lines.join("\n");
        assert!(
            text.contains("not bootable when tried: the medium (Access Denied)"),
            "{text}"
        );
        assert!(text.contains("Secure Boot refused a boot loader"), "{text}");
    }

    #[test]
    fn the_summary_says_when_the_deployed_disk_never_booted() {
        let d = tempfile::tempdir().unwrap();
        let devices = devices(d.path());
        // The disk booted first (an old system on it), the medium after it: the runner ran
        // only once the medium had started, and nothing booted from the disk after that.
        let console = format!(
            "BdsDxe: starting Boot0001 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x5,0x0)\n\
             reboot: Restarting system\n\
             BdsDxe: starting Boot0002 \"UEFI Misc Device 2\" from PciRoot(0x0)/Pci(0x4,0x0)\n\
             {RUNNER_STARTED}\ntsforge: the runner exited with code 4\n"
        );
        let r = BootReport::read(&console, &devices, Firmware::Uefi, "u");
        let text = r.lines.join("\n");
        assert_eq!(r.deployed_booted, Some(false), "{text}");
        assert!(
            r.lines[0].ends_with("its own boot loader, before the medium's runner ran"),
            "{text}"
        );
        assert!(
            text.contains("the deployed disk never booted on its own"),
            "{text}"
        );
        assert!(text.contains("restarts: 1"), "{text}");
        assert_eq!(r.exit_phase, "printed by the medium's runner");
        // No runner at all.
        let r = BootReport::read(
            "BdsDxe: starting Boot0002 \"EFI Internal Shell\" from Fv(1)/FvFile(2)\n",
            &devices,
            Firmware::Uefi,
            "u",
        );
        let text = r.lines.join("\n");
        assert!(
            text.contains("boot 1: other: \"EFI Internal Shell\""),
            "{text}"
        );
        assert!(text.contains("the medium's runner never ran"), "{text}");
        // BIOS: SeaBIOS does not say which device it boots.
        let r = BootReport::read(
            "SeaBIOS (version 1.16.2)\nreboot: Restarting system\ntsforge: the runner exited with code 0\n",
            &devices,
            Firmware::Bios,
            "u",
        );
        assert_eq!(r.deployed_booted, None);
        assert!(
            r.lines[0].contains("cannot be told under BIOS")
                && r.lines[0].contains("restarts seen: 1"),
            "{:?}",
            r.lines
        );
    }
}
