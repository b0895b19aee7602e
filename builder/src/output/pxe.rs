//! The medium as a network-boot root, for a TFTP server (dnsmasq, tftpd-hpa) or an HTTP
//! server that iPXE fetches from: the boot files under fixed names at the root, the
//! medium's `tsforge/` folder (the payload: runner, sequences, hooks), `boot.ipxe`, a
//! `dnsmasq.conf.snippet` and a `README.txt`. With `zip`, the same files as one `.zip`
//! (deflate, every entry dated `epoch`, mode 0644) to carry to the server.
//!
//! * [`PxeBoot::Linux`]: `vmlinuz` and `initrd.img`; `boot.ipxe` loads the kernel with the
//!   template's command line and `initrd=initrd.img` (iPXE names an initrd after the last
//!   part of its URL, and the kernel finds it by that name under UEFI). With the template's
//!   [`PxeUefi`] (the linux template's), UEFI clients boot through Debian's signed chain
//!   instead, so Secure Boot firmware starts them: the DHCP boot file `bootx64.efi` (shim),
//!   `grubx64.efi` (the signed network GRUB shim fetches beside itself), `mmx64.efi`, and
//!   `grub/grub.cfg` (where that GRUB reads its configuration: the root must be the TFTP
//!   server's root), booting the same kernel, initrds and command line
//!   ([`crate::template::secureboot`]).
//! * [`PxeBoot::WinPe`]: `bootmgr`, `BCD`, `boot.sdi`, `boot.wim` for iPXE's wimboot, which
//!   hands them to Windows Boot Manager in a virtual disk. wimboot itself is not in Debian
//!   (ipxe.org/wimboot, github.com/ipxe/wimboot releases): the administrator puts it at the
//!   root as `wimboot`; the summary and README say so.
//!
//! The iPXE binaries that start the chain from a PXE ROM (`undionly.kpxe` for BIOS,
//! `ipxe.efi` for UEFI without the signed chain; Debian package `ipxe`, /usr/lib/ipxe/) are
//! not copied: the snippet names them and the README says where to get them.

use super::{
    copy_buffer, copy_error, copy_to_file, plan_files, OutputKind, OutputSummary, Placed,
    PlannedFile, Progress, TempOutput,
};
use crate::source::{copy_exact, Source};
use crate::template::{secureboot, BootSpec, PxeBoot, PxeUefi};
use crate::tree::MediaTree;
use anyhow::{anyhow, bail, Context, Result};
use std::io::Write;
use std::path::Path;

/// Options of [`write_pxe`].
#[derive(Debug, Clone)]
pub struct PxeOptions {
    /// Time of every file (`SOURCE_DATE_EPOCH`).
    pub epoch: i64,
    /// Replace an existing output (folder: entries of the same name; zip: the file).
    pub force: bool,
    /// Write a `.zip` of the root instead of a folder.
    pub zip: bool,
    /// The key the medium's manifest is signed with (`--sign`): needed to re-sign it when the
    /// tree is a signed medium.
    pub signing_key: Option<[u8; 32]>,
}

impl PxeOptions {
    pub fn new(epoch: i64) -> PxeOptions {
        PxeOptions {
            epoch,
            force: false,
            zip: false,
            signing_key: None,
        }
    }
}

/// The payload folder of every medium.
const PAYLOAD: &str = "tsforge";
/// The Linux payload as an initrd (`pxe/tsforge/…` in a cpio archive). It holds the manifest,
/// so the manifest cannot list it; `media verify` accepts it at a PXE root.
pub const PAYLOAD_INITRD: &str = tsforge_runtime::media::PXE_PAYLOAD;
/// At the root of a PXE tree and of the unpacked payload, and listed in the manifest: the
/// medium's boot-loader files (EFI/, syslinux/, tsforge/boot/, …) are listed in the manifest
/// but not carried, and [`tsforge_runtime::media::verify_dir`] accepts their absence.
pub const PXE_MARKER: &str = tsforge_runtime::media::PXE_MARKER;
const PXE_MARKER_TEXT: &str =
    "A tsforge PXE tree: the medium's boot-loader files are not part of it.\n";
/// Where the snippet says the zip was unpacked (a zip cannot know its server's path).
const ZIP_ROOT_PLACEHOLDER: &str = "/srv/tftp/tsforge";
/// The note of a PXE output without the signed UEFI chain: what the root lacks for the first
/// step of the chain.
const IPXE_NOTE: &str =
    "the PXE ROM must first load iPXE: put undionly.kpxe (BIOS) and ipxe.efi (UEFI) from \
     Debian's `ipxe` package (/usr/lib/ipxe/) into the root, see dnsmasq.conf.snippet";
/// The note of a PXE output with the signed UEFI chain.
const SIGNED_NOTE: &str =
    "UEFI clients (Secure Boot on or off) boot bootx64.efi (shim) -> grubx64.efi (Debian's \
     signed network GRUB, reading grub/grub.cfg) -> vmlinuz: this folder must be the TFTP \
     server's root; BIOS clients first load iPXE: put undionly.kpxe from Debian's `ipxe` \
     package (/usr/lib/ipxe/) into the root, see dnsmasq.conf.snippet";

/// Write the PXE root for `tree` at `out` (a folder, or a `.zip` file with `opts.zip`).
pub fn write_pxe(
    tree: &MediaTree,
    boot: &BootSpec,
    out: &Path,
    opts: &PxeOptions,
    progress: Progress<'_>,
) -> Result<OutputSummary> {
    let pxe = boot.pxe.as_ref().ok_or_else(|| {
        anyhow!("this template does not say how it boots from the network (no PXE boot in its BootSpec); build usb or iso instead")
    })?;
    let root_text = if opts.zip {
        ZIP_ROOT_PLACEHOLDER.to_string()
    } else {
        absolute(out)?.display().to_string()
    };
    // The boot method's files and texts, and the manifest re-made to list them.
    let BootFiles {
        mut entries,
        mut notes,
        script,
        readme_boot,
        uefi_loader,
    } = boot_files(tree, pxe, &root_text)?;
    let snippet = dnsmasq_snippet(&root_text, uefi_loader).into_bytes();
    let readme = readme(&root_text, &readme_boot, opts.zip, uefi_loader).into_bytes();
    let sealed_tree = seal_root(
        tree,
        &entries,
        &[
            ("boot.ipxe", script.as_bytes()),
            ("dnsmasq.conf.snippet", &snippet[..]),
            ("README.txt", &readme[..]),
            (PXE_MARKER, PXE_MARKER_TEXT.as_bytes()),
        ],
        opts.signing_key.as_ref(),
    )?;
    let tree = sealed_tree.as_ref().unwrap_or(tree);
    // The payload, the marker and (Linux) the payload as a second initrd.
    let planned = plan_files(tree)?;
    let payload = payload_files(&planned)?;
    for f in &payload {
        entries.push((f.path.to_string(), f.source.clone()));
    }
    entries.push((PXE_MARKER.into(), Source::bytes(PXE_MARKER_TEXT.as_bytes())));
    let payload_initrd = match pxe {
        PxeBoot::Linux { .. } => Some(payload_initrd(&payload, opts.epoch)?),
        PxeBoot::WinPe { .. } => None,
    };
    if let Some(tmp) = &payload_initrd {
        entries.push((PAYLOAD_INITRD.into(), Source::path(tmp.path())));
    }
    // The root's own files; then everything, by name, written.
    entries.push(("boot.ipxe".into(), Source::bytes(script.into_bytes())));
    entries.push(("dnsmasq.conf.snippet".into(), Source::bytes(snippet)));
    entries.push(("README.txt".into(), Source::bytes(readme)));
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let sized = sized(entries)?;
    let total: u64 = sized.iter().map(|e| e.2).sum();
    let files = as_planned(&sized);
    let (path, bytes) = write_root(out, opts, &files, total, progress)?;
    drop(payload_initrd);
    notes.push(
        if uefi_loader == secureboot::PXE_LOADER {
            SIGNED_NOTE
        } else {
            IPXE_NOTE
        }
        .into(),
    );
    Ok(OutputSummary {
        kind: if opts.zip {
            OutputKind::PxeZip
        } else {
            OutputKind::Pxe
        },
        path,
        bytes,
        files: files.len() as u64,
        content_bytes: total,
        placed: placed(&files, &payload),
        notes,
    })
}

/// What the boot method puts at the root: its files, its notes, `boot.ipxe` and the README's
/// paragraph about it.
struct BootFiles {
    /// (name at the root, source).
    entries: Vec<(String, Source)>,
    notes: Vec<String>,
    script: String,
    readme_boot: String,
    /// The DHCP boot file of UEFI clients: shim ([`secureboot::PXE_LOADER`]) with the signed
    /// chain, else iPXE's `ipxe.efi`.
    uefi_loader: &'static str,
}

/// The boot files of `pxe`, looked up in the tree, with the script that boots them.
fn boot_files(tree: &MediaTree, pxe: &PxeBoot, root_text: &str) -> Result<BootFiles> {
    match pxe {
        PxeBoot::Linux {
            kernel,
            initrd,
            cmdline,
            uefi,
        } => linux_boot_files(tree, kernel, initrd, cmdline, uefi.as_ref()),
        PxeBoot::WinPe {
            bootmgr,
            bcd,
            boot_sdi,
            boot_wim,
        } => winpe_boot_files(tree, [bootmgr, bcd, boot_sdi, boot_wim], root_text),
    }
}

/// The file at `path` of the tree, which the template names as its `what`.
fn named<'t>(tree: &'t MediaTree, path: &str, what: &str) -> Result<&'t Source> {
    tree.get(path)
        .ok_or_else(|| anyhow!("the {what} {path:?} named by the template is not in the medium"))
}

/// Linux: the kernel and initramfs as `vmlinuz` and `initrd.img`, booted with the template's
/// command line and the payload as a second initrd; by iPXE (`boot.ipxe`), and with `uefi`
/// by shim and the signed network GRUB too.
fn linux_boot_files(
    tree: &MediaTree,
    kernel: &str,
    initrd: &str,
    cmdline: &str,
    uefi: Option<&PxeUefi>,
) -> Result<BootFiles> {
    let mut entries = vec![
        ("vmlinuz".into(), named(tree, kernel, "kernel")?.clone()),
        ("initrd.img".into(), named(tree, initrd, "initrd")?.clone()),
    ];
    let cmdline = cmdline.trim();
    let mut readme_uefi = String::new();
    if let Some(u) = uefi {
        entries.push((
            secureboot::PXE_LOADER.into(),
            named(tree, &u.shim, "shim")?.clone(),
        ));
        entries.push((
            secureboot::PXE_MOK_MANAGER.into(),
            named(tree, &u.mok_manager, "MOK manager")?.clone(),
        ));
        entries.push((secureboot::PXE_GRUB.into(), u.grub_net.clone()));
        let cfg = secureboot::pxe_grub_cfg("vmlinuz", &["initrd.img", PAYLOAD_INITRD], cmdline);
        entries.push((
            secureboot::PXE_GRUB_CFG.into(),
            Source::bytes(cfg.into_bytes()),
        ));
        readme_uefi = format!(
            "UEFI clients, with Secure Boot on or off, boot Debian's signed chain instead: the\n\
             firmware's PXE loads {loader} (shim, signed by Microsoft's UEFI CA), shim loads\n\
             {grub} from the same server and folder (Debian's signed GRUB for network boot),\n\
             which reads {cfg} from the TFTP server's root and loads vmlinuz, initrd.img and\n\
             {PAYLOAD_INITRD} (the kernel is signed by Debian). {mok} is shim's MOK manager.\n\
             So this folder must be the TFTP root itself (tftp-root=, not a folder below it).\n",
            loader = secureboot::PXE_LOADER,
            grub = secureboot::PXE_GRUB,
            cfg = secureboot::PXE_GRUB_CFG,
            mok = secureboot::PXE_MOK_MANAGER,
        );
    }
    let args = if cmdline.is_empty() {
        String::new()
    } else {
        format!(" {cmdline}")
    };
    Ok(BootFiles {
        entries,
        notes: Vec::new(),
        script: format!(
            "#!ipxe\n# tsforge: Linux boot environment\nkernel vmlinuz{args} initrd=initrd.img initrd={PAYLOAD_INITRD}\ninitrd initrd.img\ninitrd {PAYLOAD_INITRD}\nboot\n"
        ),
        readme_boot: format!(
            "boot.ipxe loads vmlinuz and initrd.img (the template's kernel and initramfs), and\n\
             {PAYLOAD_INITRD}: the tsforge/ folder below as a second initrd, unpacked under /pxe\n\
             (without tsforge/boot/, which the network boot has already loaded).\n{readme_uefi}"
        ),
        uefi_loader: if uefi.is_some() {
            secureboot::PXE_LOADER
        } else {
            "ipxe.efi"
        },
    })
}

/// Windows PE: `bootmgr`, `BCD`, `boot.sdi` and `boot.wim` for wimboot, which the
/// administrator adds (the note and the README say where to get it).
fn winpe_boot_files(
    tree: &MediaTree,
    [bootmgr, bcd, boot_sdi, boot_wim]: [&String; 4],
    root_text: &str,
) -> Result<BootFiles> {
    let mut entries = Vec::new();
    for (name, path, what) in [
        ("bootmgr", bootmgr, "boot manager"),
        ("BCD", bcd, "boot configuration data"),
        ("boot.sdi", boot_sdi, "boot.sdi"),
        ("boot.wim", boot_wim, "boot.wim"),
    ] {
        entries.push((name.into(), named(tree, path, what)?.clone()));
    }
    Ok(BootFiles {
        entries,
        notes: vec![format!(
            "wimboot is not included (not packaged in Debian): download it from \
             https://github.com/ipxe/wimboot/releases (see https://ipxe.org/wimboot) and \
             put it at {root_text}/wimboot"
        )],
        script: "#!ipxe\n# tsforge: Windows PE through wimboot (put wimboot next to this file)\n\
                 kernel wimboot\n\
                 initrd -n bootmgr bootmgr\n\
                 initrd -n BCD BCD\n\
                 initrd -n boot.sdi boot.sdi\n\
                 initrd -n boot.wim boot.wim\n\
                 boot\n"
            .to_string(),
        readme_boot: "boot.ipxe starts wimboot, which loads bootmgr, BCD, boot.sdi and boot.wim.\n\
                      wimboot is NOT included: it is not packaged in Debian. Download it from\n\
                      https://github.com/ipxe/wimboot/releases (documentation: https://ipxe.org/wimboot)\n\
                      and put it in this folder as `wimboot`.\n"
            .to_string(),
        uefi_loader: "ipxe.efi",
    })
}

/// The tree with a manifest that also lists the boot files and `written` (the root's own
/// files and the marker), so `media verify` checks a PXE root, and the marker means something
/// only when the signature covers it. `None` when the tree has no manifest.
fn seal_root(
    tree: &MediaTree,
    boot_files: &[(String, Source)],
    written: &[(&str, &[u8])],
    signing_key: Option<&[u8; 32]>,
) -> Result<Option<MediaTree>> {
    if !tree.contains(tsforge_runtime::media::MANIFEST_FILE) {
        return Ok(None);
    }
    let mut updates = Vec::new();
    for (name, src) in boot_files {
        let mut bytes = Vec::new();
        src.open()
            .and_then(|mut r| std::io::Read::read_to_end(&mut r, &mut bytes))
            .with_context(|| format!("{name}: reading {}", src.describe()))?;
        updates.push(crate::media::entry_of(name, &bytes));
    }
    for (name, bytes) in written {
        updates.push(crate::media::entry_of(name, bytes));
    }
    let mut t = tree.clone();
    crate::media::reseal(tree, signing_key, &updates)?
        .expect("the tree has a manifest")
        .add_to(&mut t)?;
    Ok(Some(t))
}

/// The files of the medium's payload folder, which the booted machine runs; refused when
/// there are none.
fn payload_files<'p, 't>(planned: &'p [PlannedFile<'t>]) -> Result<Vec<&'p PlannedFile<'t>>> {
    let prefix = format!("{PAYLOAD}/");
    let payload: Vec<&PlannedFile<'_>> = planned
        .iter()
        .filter(|f| {
            f.path.len() > prefix.len() && f.path[..prefix.len()].eq_ignore_ascii_case(&prefix)
        })
        .collect();
    if payload.is_empty() {
        bail!("the medium has no {PAYLOAD}/ folder (runner, sequences): nothing for the booted machine to run");
    }
    Ok(payload)
}

/// Linux: the payload (without `tsforge/boot/`) and the marker under `pxe/` as a cpio archive
/// in a temporary file, the second initrd: the kernel unpacks every initrd it is given into
/// the same root, so the booted system has the payload without a network file system. A
/// temporary file, not memory: packages can be large.
fn payload_initrd(payload: &[&PlannedFile<'_>], epoch: i64) -> Result<tempfile::NamedTempFile> {
    let mut cpio = crate::cpio::CpioBuilder::new(epoch);
    let boot_dir = format!("{PAYLOAD}/boot/");
    for f in payload.iter().filter(|f| {
        !(f.path.len() > boot_dir.len() && f.path[..boot_dir.len()].eq_ignore_ascii_case(&boot_dir))
    }) {
        cpio.add_file(&format!("pxe/{}", f.path), f.source.clone(), 0o644)
            .with_context(|| format!("adding {} to {PAYLOAD_INITRD}", f.path))?;
    }
    cpio.add_file(
        &format!("pxe/{PXE_MARKER}"),
        Source::bytes(PXE_MARKER_TEXT.as_bytes()),
        0o644,
    )?;
    let tmp = tempfile::NamedTempFile::new().context("creating a temporary file")?;
    cpio.write(
        std::io::BufWriter::new(tmp.as_file()),
        crate::cpio::Compression::None,
    )
    .with_context(|| format!("writing {PAYLOAD_INITRD}"))?;
    Ok(tmp)
}

/// Each entry with its size, taken once; an unreadable source is an error naming it.
fn sized(entries: Vec<(String, Source)>) -> Result<Vec<(String, Source, u64)>> {
    entries
        .into_iter()
        .map(|(name, s)| {
            let size = s
                .size()
                .with_context(|| format!("{name}: cannot read {}", s.describe()))?;
            Ok((name, s, size))
        })
        .collect()
}

/// The sized entries as the files an output writes.
fn as_planned(sized: &[(String, Source, u64)]) -> Vec<PlannedFile<'_>> {
    sized
        .iter()
        .map(|(name, source, size)| PlannedFile {
            path: name,
            source,
            size: *size,
        })
        .collect()
}

/// Writes `files` (of `total` bytes) as a folder or a zip next to `out`, reporting progress,
/// then moves it to its name: the path and the bytes of the output.
fn write_root(
    out: &Path,
    opts: &PxeOptions,
    files: &[PlannedFile<'_>],
    total: u64,
    progress: Progress<'_>,
) -> Result<(std::path::PathBuf, u64)> {
    let tmp = TempOutput::new(out, opts.force, !opts.zip)?;
    let mut buf = copy_buffer();
    let mut done = 0u64;
    progress(0, total);
    let bytes = if opts.zip {
        write_zip(tmp.path(), files, opts.epoch, &mut buf, &mut |n| {
            done += n;
            progress(done, total);
        })?
    } else {
        std::fs::create_dir(tmp.path())
            .with_context(|| format!("creating {}", tmp.path().display()))?;
        for f in files {
            copy_to_file(
                f,
                &tmp.path().join(f.path),
                opts.epoch,
                &mut buf,
                &mut |n| {
                    done += n;
                    progress(done, total);
                },
            )?;
        }
        total
    };
    Ok((tmp.commit()?, bytes))
}

/// What the summary lists: each file at the root, then the payload folder as one line.
fn placed(files: &[PlannedFile<'_>], payload: &[&PlannedFile<'_>]) -> Vec<Placed> {
    files
        .iter()
        .filter(|f| !f.path.contains('/'))
        .map(|f| Placed {
            what: f.path.to_string(),
            offset: None,
            bytes: f.size,
        })
        .chain(std::iter::once(Placed {
            what: format!("{PAYLOAD}/ ({} files)", payload.len()),
            offset: None,
            bytes: payload.iter().map(|f| f.size).sum(),
        }))
        .collect()
}

fn absolute(p: &Path) -> Result<std::path::PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
}

/// The dnsmasq settings for the root: UEFI clients get `uefi_loader` (shim with the signed
/// chain, else iPXE's `ipxe.efi`), BIOS clients iPXE's `undionly.kpxe`, clients running iPXE
/// the script.
fn dnsmasq_snippet(root: &str, uefi_loader: &str) -> String {
    let signed = uefi_loader == secureboot::PXE_LOADER;
    let (how, uefi_comment) = if signed {
        (
            format!(
                "# dnsmasq serves the files by TFTP. UEFI clients (Secure Boot on or off) load shim\n\
                 # ({uefi_loader}), which loads {grub} from the same server and folder, which reads\n\
                 # {cfg} from the TFTP root: so tftp-root is this folder itself. BIOS clients'\n\
                 # PXE ROMs load iPXE, and iPXE runs boot.ipxe.\n",
                grub = secureboot::PXE_GRUB,
                cfg = secureboot::PXE_GRUB_CFG,
            ),
            format!(
                "# Not yet iPXE: BIOS clients load undionly.kpxe (copy it from Debian's `ipxe`\n\
                 # package, /usr/lib/ipxe/, into the root); UEFI clients load shim, {uefi_loader}.\n"
            ),
        )
    } else {
        (
            "# dnsmasq serves the files by TFTP; clients' PXE ROMs load iPXE, iPXE runs boot.ipxe.\n"
                .to_string(),
            "# Not yet iPXE: BIOS clients load undionly.kpxe, UEFI clients ipxe.efi (copy both\n\
             # from Debian's `ipxe` package, /usr/lib/ipxe/, into the root).\n"
                .to_string(),
        )
    };
    format!(
        "# tsforge PXE root: add to dnsmasq's configuration (e.g. /etc/dnsmasq.d/tsforge.conf).\n\
         {how}\
         enable-tftp\n\
         tftp-root={root}\n\
         # iPXE announces itself with DHCP option 175: those clients get the script.\n\
         dhcp-match=set:ipxe,175\n\
         # UEFI x86-64 PXE clients (client architecture 7 or 9).\n\
         dhcp-match=set:efi64,option:client-arch,7\n\
         dhcp-match=set:efi64,option:client-arch,9\n\
         {uefi_comment}\
         dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe\n\
         dhcp-boot=tag:!ipxe,tag:efi64,{uefi_loader}\n\
         dhcp-boot=tag:ipxe,boot.ipxe\n\
         #\n\
         # Next to an existing DHCP server, answer as proxyDHCP only (use your subnet), and\n\
         # offer the loaders with pxe-service (see `man dnsmasq`, pxe-service, for how BIOS\n\
         # file names are completed):\n\
         #dhcp-range=192.168.1.0,proxy\n\
         #pxe-service=tag:!ipxe,x86PC,\"tsforge\",undionly.kpxe\n\
         #pxe-service=tag:!ipxe,X86-64_EFI,\"tsforge\",{uefi_loader}\n\
         #pxe-service=tag:ipxe,x86PC,\"tsforge\",boot.ipxe\n\
         #pxe-service=tag:ipxe,X86-64_EFI,\"tsforge\",boot.ipxe\n"
    )
}

fn readme(root: &str, boot: &str, zip: bool, uefi_loader: &str) -> String {
    let unpack = if zip {
        format!("Unpack this archive into the server's TFTP root, e.g. {root}.\n\n")
    } else {
        String::new()
    };
    let (loaders, signed_files) = if uefi_loader == secureboot::PXE_LOADER {
        (
            "The PXE ROM of a BIOS client loads iPXE first: copy undionly.kpxe from Debian's\n\
             `ipxe` package (/usr/lib/ipxe/) into this folder. UEFI clients need nothing more:\n\
             give them the DHCP boot file name bootx64.efi (see dnsmasq.conf.snippet).\n"
                .to_string(),
            format!(
                "\x20 {:<21} shim (Microsoft-signed), the DHCP boot file of UEFI clients\n\
                 \x20 {:<21} Debian's signed GRUB for network boot, which shim loads\n\
                 \x20 {:<21} shim's MOK manager\n\
                 \x20 {:<21} GRUB's configuration (read from the TFTP root)\n",
                secureboot::PXE_LOADER,
                secureboot::PXE_GRUB,
                secureboot::PXE_MOK_MANAGER,
                secureboot::PXE_GRUB_CFG,
            ),
        )
    } else {
        (
            "The PXE ROM of a client loads iPXE first: copy undionly.kpxe (BIOS) and ipxe.efi\n\
             (UEFI) from Debian's `ipxe` package (/usr/lib/ipxe/) into this folder.\n"
                .to_string(),
            String::new(),
        )
    };
    format!(
        "tsforge network boot root\n\
         =========================\n\n\
         {unpack}{boot}\n\
         Files:\n\
         \x20 boot.ipxe             the iPXE script clients run\n\
         {signed_files}\
         \x20 tsforge/              the payload (runner, sequences, hooks); serve it over HTTP\n\
         \x20                       as well if the boot environment fetches it from there\n\
         \x20 dnsmasq.conf.snippet  dnsmasq settings: TFTP from {root}, DHCP boot file names\n\n\
         {loaders}Clients already running iPXE can also `chain http://SERVER/PATH/boot.ipxe`: the script's\n\
         relative names resolve against its own URL, so HTTP works as well as TFTP.\n"
    )
}

/// The files as a zip at `path`: deflate, one fixed date, mode 0644, names sorted.
fn write_zip(
    path: &Path,
    files: &[PlannedFile<'_>],
    epoch: i64,
    buf: &mut [u8],
    step: &mut dyn FnMut(u64),
) -> Result<u64> {
    use zip::write::SimpleFileOptions;
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut z = zip::ZipWriter::new(std::io::BufWriter::with_capacity(buf.len(), file));
    let (y, mo, d, h, mi, s) = civil(epoch);
    let time = zip::DateTime::from_date_and_time(y, mo, d, h, mi, s)
        .map_err(|_| anyhow!("timestamp {epoch}: a zip date runs from 1980 to 2107; set SOURCE_DATE_EPOCH to a time in that range"))?;
    for f in files {
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(time)
            .unix_permissions(0o644)
            .large_file(f.size >= u64::from(u32::MAX));
        z.start_file(f.path, options)
            .with_context(|| format!("{}: adding it to {}", f.path, path.display()))?;
        copy_exact(f.source, f.size, &mut z, buf, step).map_err(|e| copy_error(f, e, path))?;
    }
    let mut w = z
        .finish()
        .with_context(|| format!("finishing {}", path.display()))?;
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    let file = w
        .into_inner()
        .map_err(|e| anyhow!("writing {}: {}", path.display(), e.error()))?;
    file.sync_all()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(file.metadata()?.len())
}

/// `epoch` as (year, month, day, hour, minute, second), UTC; years clamped to zip's range.
fn civil(epoch: i64) -> (u16, u8, u8, u8, u8, u8) {
    let (y, m, d) = tsforge_runtime::log::civil_from_days(epoch.div_euclid(86_400));
    let s = epoch.rem_euclid(86_400);
    (
        u16::try_from(y).unwrap_or(0),
        m as u8,
        d as u8,
        (s / 3600) as u8,
        (s / 60 % 60) as u8,
        (s % 60) as u8,
    )
}
