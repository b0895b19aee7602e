//! `tsforge try MEDIUM`: boot a medium in QEMU with blank virtual disks, show its console, and
//! report the run's outcome and the disks' layout, before a real machine is touched. The same
//! [`crate::qemu`] code runs the end-to-end tests.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::qemu::{self, BootFrom, Firmware, Forward, Machine, MachineConfig};
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
    /// Show the machine's screen too: QEMU's -display (gtk, sdl, vnc=:1); Windows PE media
    /// show their console only there
    #[arg(long, value_name = "KIND")]
    pub display: Option<String>,
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
    } else if c.uefi || Path::new(qemu::OVMF_CODE).is_file() {
        Firmware::Uefi
    } else {
        Firmware::Bios
    };
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
    cfg.network = c.network;
    cfg.forwards = forwards;
    cfg.echo = true;
    cfg.display = c.display.clone();
    let what = match &boot {
        BootFrom::Disk(p) => format!("USB disk image {}", p.display()),
        BootFrom::Cdrom(p) => format!("ISO {} as a CD-ROM", p.display()),
        BootFrom::Pxe { tftp_root, .. } => format!("PXE from {}", tftp_root.display()),
    };
    eprintln!(
        "tsforge try: booting the {what} with {} firmware, {} MiB, {} target disk(s):",
        match firmware {
            Firmware::Bios => "BIOS",
            Firmware::Uefi => "UEFI",
        },
        c.memory,
        disks.len()
    );
    for d in &disks {
        eprintln!("  {}", d.display());
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
            Ok(Exit::Ok)
        }
        Some(code) => {
            eprintln!("  the sequence failed: runner exit code {code}");
            Ok(Exit::from_code(u8::try_from(code).unwrap_or(1).max(1)))
        }
        None => bail!(
            "the machine powered off without the runner's exit code on the serial console: the medium did not boot to the linux template's /init (see the console above); Windows PE media do not report on the serial line: watch them with --display gtk"
        ),
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
}
