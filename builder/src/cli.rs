//! `tsforge build usb|iso|pxe|dir`: template → medium tree → `tsforge/` folder (sequences,
//! hooks, packages, manifest, signature) → one output. The command line is fixed by the
//! media-builder issue (scripts depend on it).

use crate::media::{assemble, MediaOptions};
use crate::template::{self, Prepared, TemplateInput};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use tsforge_runtime::cli::Exit;

#[derive(Debug, Subcommand)]
pub enum BuildCmd {
    /// A raw USB disk image (MBR + FAT32; --partition-table gpt for GPT + ESP)
    Usb(BuildUsb),
    /// A hybrid ISO (El Torito BIOS + UEFI, isohybrid)
    Iso(BuildArgs),
    /// A TFTP/HTTP root for network boot (iPXE script, dnsmasq snippet); --zip for a .zip too
    Pxe(BuildPxe),
    /// The medium's files in a folder, to copy onto a formatted stick
    Dir(BuildDir),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// winpe, linux, or a template folder (template.toml with `base = "winpe"|"linux"` and
    /// optional `files/` and `hooks`)
    #[arg(long, value_name = "winpe|linux|PATH")]
    pub template: String,
    /// The template's source: a WinPE media folder or ISO; a kernel/modules folder (linux)
    #[arg(long, value_name = "DIR|ISO")]
    pub source: Option<PathBuf>,
    /// Task sequences to put on the medium (YAML or XML); repeatable
    #[arg(long = "sequence", value_name = "FILE", required = true, num_args = 1..)]
    pub sequences: Vec<PathBuf>,
    /// The sequence started without a menu (by name: its file name without extension)
    #[arg(long, value_name = "NAME")]
    pub default: Option<String>,
    /// Pre-execution hooks, run in this order after the template's; repeatable
    #[arg(long = "hook", value_name = "FILE", num_args = 1..)]
    pub hooks: Vec<PathBuf>,
    /// Distribution point folders whose packages go on the medium; repeatable
    #[arg(long = "package", value_name = "DIR", num_args = 1..)]
    pub packages: Vec<PathBuf>,
    /// Media variables; repeatable
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = tsforge_runtime::cli::parse_var)]
    pub vars: Vec<(String, String)>,
    /// Secret media variables, stored encrypted with the media password; repeatable
    #[arg(long = "secret", value_name = "NAME=VALUE", value_parser = tsforge_runtime::cli::parse_var)]
    pub secrets: Vec<(String, String)>,
    /// The media password (first line of the file)
    #[arg(long, value_name = "F")]
    pub password_file: Option<PathBuf>,
    /// Sign the manifest with this key (from `tsforge keygen`)
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,
    /// Let the failure screen open a shell (ConfigMgr's "Enable command support"); with a
    /// media password, only after it is typed again
    #[arg(long)]
    pub debug_shell: bool,
    /// Drivers to add; repeatable. linux: a kernel module built for the template's kernel
    /// (FILE.ko) or a folder of them, loaded on every boot. winpe: a driver folder (INF files
    /// and the files they name), loaded with drvload before the runner starts
    #[arg(long = "driver", value_name = "DIR|FILE.ko", num_args = 1..)]
    pub drivers: Vec<PathBuf>,
    /// The runner to put on the medium (default: tsforge.exe for winpe, this tsforge for linux)
    #[arg(long, value_name = "PATH")]
    pub runner: Option<PathBuf>,
    /// The medium's label
    #[arg(long, default_value = "TSFORGE")]
    pub label: String,
    /// Where to write the medium
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub out: PathBuf,
    /// Replace OUT if it exists (a folder: write into it, keeping other files)
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct BuildUsb {
    #[command(flatten)]
    pub common: BuildArgs,
    /// mbr (FAT32 partition, BIOS and UEFI) or gpt (EFI System partition, UEFI)
    #[arg(long, default_value = "mbr", value_name = "mbr|gpt")]
    pub partition_table: String,
    /// Also write the image onto this removable device (a USB stick: /dev/sdX,
    /// \\.\PhysicalDriveN), after checking it and asking for confirmation
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<PathBuf>,
    /// Do not ask before writing --device
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct BuildPxe {
    #[command(flatten)]
    pub common: BuildArgs,
    /// Also write OUT.zip
    #[arg(long)]
    pub zip: bool,
}

#[derive(Debug, Args)]
pub struct BuildDir {
    #[command(flatten)]
    pub common: BuildArgs,
}

fn epoch() -> Result<i64> {
    tsforge_runtime::sys::source_date_epoch_or_now()
}

/// The runner for a template when `--runner` is not given.
fn default_runner(base: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this program")?;
    if base == "linux" {
        if cfg!(target_os = "linux") {
            return Ok(exe);
        }
        bail!("the linux template needs a Linux tsforge: give it with --runner PATH");
    }
    // winpe: tsforge.exe beside this program, or the cross-built one of this checkout.
    let mut tried = Vec::new();
    let mut cands = vec![exe.with_file_name("tsforge.exe")];
    if let Some(target) = exe.parent().and_then(Path::parent) {
        for profile in ["release", "debug"] {
            cands.push(
                target
                    .join("x86_64-pc-windows-gnu")
                    .join(profile)
                    .join("tsforge.exe"),
            );
        }
    }
    for c in cands {
        if c.is_file() {
            return Ok(c);
        }
        tried.push(c.display().to_string());
    }
    bail!(
        "the winpe template needs the Windows runner tsforge.exe; build it with `cargo build \
         --release --target x86_64-pc-windows-gnu -p tsforge` and give it with --runner PATH \
         (looked at: {})",
        tried.join(", ")
    )
}

#[derive(serde::Deserialize)]
struct CustomTemplate {
    base: String,
    #[serde(default)]
    hooks: Vec<String>,
    /// linux: kernel modules to add to the initramfs and load on every boot.
    #[serde(default)]
    modules: Vec<String>,
}

/// The template's files and boot spec, plus the template's own hooks.
fn prepare(a: &BuildArgs, work: &Path, epoch: i64) -> Result<(Prepared, Vec<PathBuf>, String)> {
    let (base, custom) = match a.template.as_str() {
        "winpe" | "linux" => (a.template.clone(), None),
        path => {
            let dir = PathBuf::from(path);
            let t = dir.join("template.toml");
            let text = std::fs::read_to_string(&t).with_context(|| {
                format!(
                    "--template {path}: not winpe or linux, and {} cannot be read",
                    t.display()
                )
            })?;
            let c: CustomTemplate =
                toml::from_str(&text).with_context(|| format!("{} is not valid", t.display()))?;
            if c.base != "winpe" && c.base != "linux" {
                bail!(
                    "{}: base must be \"winpe\" or \"linux\", not {:?}",
                    t.display(),
                    c.base
                );
            }
            (c.base.clone(), Some((dir, c)))
        }
    };
    let modules = match &custom {
        Some((dir, c)) if !c.modules.is_empty() => {
            if base != "linux" {
                bail!(
                    "{}: modules = [...] is for base = \"linux\" (kernel modules); a winpe \
                     template takes drivers with --driver DIR",
                    dir.join("template.toml").display()
                );
            }
            c.modules.clone()
        }
        _ => Vec::new(),
    };
    let runner = match &a.runner {
        Some(r) => r.clone(),
        None => default_runner(&base)?,
    };
    let input = TemplateInput {
        source: a.source.clone(),
        runner,
        work: work.to_path_buf(),
        epoch,
        modules,
        drivers: a.drivers.clone(),
    };
    let mut prepared = match base.as_str() {
        "winpe" => template::winpe::prepare(&input)?,
        _ => template::linux::prepare(&input).with_context(|| match &custom {
            Some((dir, _)) => format!(
                "the linux template (custom template {})",
                dir.join("template.toml").display()
            ),
            None => "the linux template".to_string(),
        })?,
    };
    let mut hooks = Vec::new();
    if let Some((dir, c)) = custom {
        let files = dir.join("files");
        if files.is_dir() {
            prepared.tree.add_dir(&files, "")?;
            prepared
                .summary
                .push(format!("template files from {}", files.display()));
        }
        for h in c.hooks {
            let p = dir.join(&h);
            if !p.is_file() {
                bail!(
                    "{}: hook {h} does not exist",
                    dir.join("template.toml").display()
                );
            }
            hooks.push(p);
        }
    }
    Ok((prepared, hooks, base))
}

pub fn dispatch(cmd: BuildCmd) -> Result<Exit> {
    let (a, kind) = match &cmd {
        BuildCmd::Usb(u) => (&u.common, "usb"),
        BuildCmd::Iso(i) => (i, "iso"),
        BuildCmd::Pxe(p) => (&p.common, "pxe"),
        BuildCmd::Dir(d) => (&d.common, "dir"),
    };
    let started = std::time::Instant::now();
    // A device is checked before anything is built, so a wrong path costs nothing.
    let device = match &cmd {
        BuildCmd::Usb(u) => match &u.device {
            Some(d) => Some(check_device(d)?),
            None => None,
        },
        _ => None,
    };
    let epoch = epoch()?;
    let work = tempfile::tempdir().context("creating a work folder")?;
    let password = match &a.password_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading {}", f.display()))?
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
        ),
        None => None,
    };
    let signing_key = match &a.sign {
        Some(k) => Some(tsforge_runtime::media::read_key_file(k)?),
        None => None,
    };
    eprintln!(
        "tsforge build {kind}: preparing the {} template",
        a.template
    );
    let (mut prepared, template_hooks, _base) = prepare(a, work.path(), epoch)?;
    let opts = MediaOptions {
        name: a.label.clone(),
        sequences: a.sequences.clone(),
        default: a.default.clone(),
        template_hooks,
        hooks: a.hooks.clone(),
        packages: a.packages.clone(),
        vars: a.vars.clone(),
        secrets: a.secrets.clone(),
        password,
        signing_key,
        epoch,
        iterations: tsforge_runtime::media::PBKDF2_ITERATIONS,
        debug_shell: a.debug_shell,
    };
    let cfg = assemble(&mut prepared.tree, &opts)?;
    let total = prepared.tree.total_size()?;
    eprintln!(
        "tsforge build {kind}: {} files, {} MiB",
        prepared.tree.len(),
        total >> 20
    );
    let mut lines = write_output(&cmd, &prepared, epoch, work.path(), signing_key)?;
    if let (Some(info), BuildCmd::Usb(u)) = (device, &cmd) {
        lines.push(write_device(&u.common.out, &info, u.yes)?);
    }
    println!("{kind} medium {}:", a.out.display());
    for l in prepared.summary.iter().chain(lines.iter()) {
        println!("  {l}");
    }
    println!(
        "  sequences: {} (default: {}); hooks: {}; packages: {}; signed: {}; password: {}",
        cfg.sequences
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        cfg.default.as_deref().unwrap_or("menu"),
        cfg.hooks.len(),
        a.packages.len(),
        if cfg.public_key.is_some() {
            "yes"
        } else {
            "no"
        },
        if cfg.password.is_some() { "yes" } else { "no" },
    );
    println!(
        "  {} files, {} MiB, built in {:.1} s",
        prepared.tree.len(),
        total >> 20,
        started.elapsed().as_secs_f64()
    );
    Ok(Exit::Ok)
}

fn write_output(
    cmd: &BuildCmd,
    p: &Prepared,
    epoch: i64,
    work: &Path,
    key: Option<[u8; 32]>,
) -> Result<Vec<String>> {
    use crate::output;
    let mut bar = Bar::new();
    let mut progress = |done: u64, total: u64| bar.update(done, total);
    let summary = match cmd {
        BuildCmd::Dir(d) => {
            let mut o = output::DirOptions::new(epoch);
            o.force = d.common.force;
            output::write_dir(&p.tree, &p.boot, &d.common.out, &o, &mut progress)?
        }
        BuildCmd::Usb(u) => {
            let mut o = output::UsbOptions::new(work.join("usb"), epoch);
            o.label = u.common.label.clone();
            o.force = u.common.force;
            o.signing_key = key;
            o.table = match u.partition_table.to_ascii_lowercase().as_str() {
                "mbr" => output::PartitionTable::Mbr,
                "gpt" => output::PartitionTable::Gpt,
                other => bail!("--partition-table {other:?}: use mbr or gpt"),
            };
            output::write_usb(&p.tree, &p.boot, &u.common.out, &o, &mut progress)?
        }
        BuildCmd::Iso(a) => {
            let mut o = output::IsoOutputOptions::new(epoch);
            o.label = a.label.clone();
            o.force = a.force;
            o.signing_key = key;
            output::write_iso(&p.tree, &p.boot, &a.out, &o, &mut progress)?
        }
        BuildCmd::Pxe(x) => {
            let mut o = output::PxeOptions::new(epoch);
            o.force = x.common.force;
            o.signing_key = key;
            let mut lines = output::write_pxe(&p.tree, &p.boot, &x.common.out, &o, &mut progress)?;
            if x.zip {
                o.zip = true;
                let mut zip = x.common.out.clone().into_os_string();
                zip.push(".zip");
                let z = output::write_pxe(&p.tree, &p.boot, Path::new(&zip), &o, &mut progress)?;
                lines.notes.extend(z.lines());
            }
            lines
        }
    };
    bar.done();
    Ok(summary.lines())
}

/// A progress line on standard error (redrawn on a terminal, every 10 s otherwise).
struct Bar {
    start: std::time::Instant,
    last: Option<std::time::Instant>,
    tty: bool,
    drawn: bool,
}

impl Bar {
    fn new() -> Self {
        use std::io::IsTerminal;
        Bar {
            start: std::time::Instant::now(),
            last: None,
            tty: std::io::stderr().is_terminal(),
            drawn: false,
        }
    }
    fn update(&mut self, done: u64, total: u64) {
        let now = std::time::Instant::now();
        let every = std::time::Duration::from_millis(if self.tty { 100 } else { 10_000 });
        if self.last.is_some_and(|l| now - l < every) {
            return;
        }
        self.last = Some(now);
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let line = format!(
            "writing: {} / {} MiB, {:.1} MiB/s",
            done >> 20,
            total >> 20,
            done as f64 / secs / f64::from(1u32 << 20)
        );
        if self.tty {
            eprint!("\r{line}\x1b[K");
            self.drawn = true;
        } else {
            eprintln!("{line}");
        }
    }
    fn done(&mut self) {
        if self.drawn {
            eprintln!();
        }
    }
}

/// The device `--device` names, when it is a removable disk that is not the running system's,
/// has nothing mounted, and is large enough is checked later.
fn check_device(path: &Path) -> Result<tsforge_runtime::disk::select::DiskInfo> {
    use tsforge_runtime::disk::select;
    let meta = std::fs::metadata(path).with_context(|| format!("--device {}", path.display()))?;
    if meta.is_file() || meta.is_dir() {
        bail!(
            "--device {}: not a block device (give the whole disk, e.g. /dev/sdb; to make an \
             image file, use -o alone)",
            path.display()
        );
    }
    let Some(info) = select::info_for_path(path)? else {
        bail!(
            "--device {}: not one of the machine's disks (see `tsforge disk list`); give a whole \
             removable disk, not a partition or a virtual device",
            path.display()
        );
    };
    if !info.removable && info.transport != "usb" {
        bail!(
            "--device {}: {} is not a removable or USB disk; refusing to overwrite it",
            path.display(),
            info.describe()
        );
    }
    select::check_target(path, false, false)?;
    Ok(info)
}

/// Copies the built image onto the device after the operator confirms.
fn write_device(
    image: &Path,
    info: &tsforge_runtime::disk::select::DiskInfo,
    yes: bool,
) -> Result<String> {
    use std::io::{Read, Write};
    let size = std::fs::metadata(image)?.len();
    if size > info.size {
        bail!(
            "the image ({} bytes) does not fit on {} ({} bytes)",
            size,
            info.describe(),
            info.size
        );
    }
    if !yes {
        eprint!(
            "Everything on {} will be erased. Type YES to write the medium: ",
            info.describe()
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != "YES" {
            bail!("not confirmed; {} was not written", info.path.display());
        }
    }
    // Checked again: the build took a while, and a desktop may have mounted the stick.
    tsforge_runtime::disk::select::check_target(&info.path, false, false)?;
    let disk = tsforge_runtime::disk::Disk::open(&info.path, true)?;
    let mut range = disk.whole()?;
    let mut src = std::fs::File::open(image)?;
    let mut buf = vec![0u8; 4 << 20];
    let mut bar = Bar::new();
    let mut done = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        range
            .write_all(&buf[..n])
            .with_context(|| format!("writing {}", info.path.display()))?;
        done += n as u64;
        bar.update(done, size);
    }
    range.finish()?;
    disk.sync()?;
    bar.done();
    // Let the kernel see the new partition table (best effort: the stick is ready either way).
    let _ = tsforge_runtime::disk::reread::reread(&disk, 1);
    Ok(format!("written to {} ({} bytes)", info.describe(), size))
}
