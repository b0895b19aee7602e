//! The linux template's drivers: which kernel modules go into the initramfs, the index files
//! busybox `modprobe` reads there (`modules.dep`, `modules.alias`), the firmware files the
//! modules declare, and out-of-tree modules given with `--driver` (checked against the
//! kernel's vermagic). See `docs/media.md` ("Drivers").
//!
//! Module metadata (`vermagic`, `depends`, `alias`, `firmware`) is read from the module's ELF
//! `.modinfo` section (NUL-separated `key=value` strings, what `modinfo` prints), so no program
//! runs per module.

use super::linux::{
    module_name, plain_module_path, DRIVER_DIRS, DRIVER_EXCLUDED, DRIVER_MODULES, MODULES,
};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

/// `modules.dep` and `modules.builtin` of a kernel.
pub struct ModuleTree {
    pub dir: PathBuf,
    dep_path: PathBuf,
    /// Module name → its path as `modules.dep` writes it.
    by_name: HashMap<String, String>,
    /// Path → dependency paths.
    by_path: HashMap<String, Vec<String>>,
    /// Every path, in `modules.dep` order.
    paths: Vec<String>,
    builtin: BTreeSet<String>,
}

impl ModuleTree {
    pub fn read(modules_dir: &Path) -> Result<ModuleTree> {
        let dep_path = modules_dir.join("modules.dep");
        let text = std::fs::read_to_string(&dep_path)
            .with_context(|| format!("reading {}", dep_path.display()))?;
        let mut t = ModuleTree {
            dir: modules_dir.to_path_buf(),
            dep_path: dep_path.clone(),
            by_name: HashMap::new(),
            by_path: HashMap::new(),
            paths: Vec::new(),
            builtin: BTreeSet::new(),
        };
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let (path, rest) = line.split_once(':').ok_or_else(|| {
                anyhow!(
                    "{}:{}: expected `path: dependencies`, found {line:?}",
                    dep_path.display(),
                    n + 1
                )
            })?;
            let path = path.trim().to_string();
            let list: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
            t.by_path.insert(path.clone(), list);
            t.by_name.insert(module_name(&path), path.clone());
            t.paths.push(path);
        }
        let builtin_path = modules_dir.join("modules.builtin");
        t.builtin = match std::fs::read_to_string(&builtin_path) {
            Ok(text) => text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| module_name(l.trim()))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", builtin_path.display())),
        };
        Ok(t)
    }

    /// The path of module `name` (`-` or `_`), when the kernel has it as a file.
    pub fn path_of(&self, name: &str) -> Option<&str> {
        self.by_name
            .get(&name.replace('-', "_"))
            .map(String::as_str)
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&name.replace('-', "_"))
    }

    /// Append `path` to `load` after everything it depends on (depth first, a module's
    /// dependencies last listed first, as modprobe loads them); `done` holds what is in.
    pub fn visit(
        &self,
        path: &str,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
        load: &mut Vec<String>,
    ) -> Result<()> {
        if done.contains(path) {
            return Ok(());
        }
        if stack.iter().any(|p| p == path) {
            bail!(
                "{}: modules depend on each other in a cycle: {} -> {path}",
                self.dep_path.display(),
                stack.join(" -> ")
            );
        }
        let list = self.by_path.get(path).ok_or_else(|| {
            anyhow!(
                "{}: {} needs {path}, which has no line of its own",
                self.dep_path.display(),
                stack.last().map(String::as_str).unwrap_or("a module")
            )
        })?;
        stack.push(path.to_string());
        for dep in list.iter().rev() {
            self.visit(dep, done, stack, load)?;
        }
        stack.pop();
        done.insert(path.to_string());
        load.push(path.to_string());
        Ok(())
    }

    fn deps_of(&self, path: &str) -> &[String] {
        self.by_path.get(path).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// A `--driver` module from outside the kernel's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalModule {
    pub host: PathBuf,
    /// Path in the modules folder of the initramfs: `extra/<name>.ko`.
    pub path: String,
    pub name: String,
    /// Kernel modules it needs (paths as `modules.dep` writes them).
    pub deps: Vec<String>,
    pub aliases: Vec<String>,
}

/// Everything the initramfs carries for drivers.
#[derive(Debug, Clone, Default)]
pub struct Drivers {
    /// Loaded by `/init` on every boot, in order: [`MODULES`], then the template's
    /// `modules = [...]` and the `--driver` modules (kernel-tree paths, then
    /// `extra/<name>.ko`), each after what it needs.
    pub always: Vec<String>,
    /// Loaded by modalias: the [`DRIVER_DIRS`] and [`DRIVER_MODULES`] modules and what they
    /// need (kernel-tree paths), every one after its dependencies.
    pub hardware: Vec<String>,
    pub external: Vec<ExternalModule>,
    /// Wanted modules built into the kernel, and ones this kernel lacks (names).
    pub builtin: Vec<String>,
    pub missing: Vec<String>,
    /// The template's `modules = [...]` that went in (names).
    pub extra: Vec<String>,
}

impl Drivers {
    /// Every module file in the initramfs (kernel-tree paths, then external).
    pub fn kernel_paths(&self) -> impl Iterator<Item = &String> {
        self.always
            .iter()
            .filter(|p| !p.starts_with("extra/"))
            .chain(&self.hardware)
    }

    /// How many module files go in.
    pub fn count(&self) -> usize {
        self.kernel_paths().count() + self.external.len()
    }

    /// Hardware modules by class: storage, network, input, other (their dependencies).
    pub fn classes(&self) -> (usize, usize, usize, usize) {
        let (mut s, mut n, mut i, mut o) = (0, 0, 0, 0);
        for p in &self.hardware {
            let p = p.as_str();
            if [
                "ata/",
                "nvme/",
                "scsi/",
                "block/",
                "cdrom/",
                "mmc/",
                "usb/storage/",
            ]
            .iter()
            .any(|d| p.starts_with(&format!("kernel/drivers/{d}")))
                || module_name(p) == "vmd"
            {
                s += 1;
            } else if p.starts_with("kernel/drivers/net/") {
                n += 1;
            } else if p.starts_with("kernel/drivers/hid/") || p.starts_with("kernel/drivers/input/")
            {
                i += 1;
            } else {
                o += 1;
            }
        }
        (s, n, i, o)
    }
}

/// Select the drivers for `tree`: [`MODULES`] and `extra` (a custom template's
/// `modules = [...]`, each of which must be a module of this kernel) loaded always, the
/// `external` `.ko` files (checked: ELF module, vermagic of this kernel, dependencies
/// present), and the hardware drivers by folder.
pub fn select(tree: &ModuleTree, extra: &[String], external: &[PathBuf]) -> Result<Drivers> {
    let mut d = Drivers::default();
    let mut done = BTreeSet::new();
    for want in MODULES {
        match tree.path_of(want) {
            Some(p) => tree.visit(p, &mut done, &mut Vec::new(), &mut d.always)?,
            None if tree.is_builtin(want) => d.builtin.push(want.replace('-', "_")),
            None => d.missing.push(want.replace('-', "_")),
        }
    }
    for want in extra {
        match tree.path_of(want) {
            Some(p) => {
                tree.visit(p, &mut done, &mut Vec::new(), &mut d.always)?;
                d.extra.push(want.replace('-', "_"));
            }
            None if tree.is_builtin(want) => d.builtin.push(want.replace('-', "_")),
            None => bail!(
                "module {want:?} (modules = [...] of the template) is not a module of this \
                 kernel: {} has no {}.ko (and modules.builtin does not list it)",
                tree.dep_path.display(),
                want.replace('-', "_")
            ),
        }
    }
    let vermagic = kernel_vermagic(tree)?;
    let mut external_names = BTreeSet::new();
    for file in external_files(external)? {
        let m = external_module(tree, &file, vermagic.as_deref())?;
        if tree.path_of(&m.name).is_some() {
            bail!(
                "--driver {}: {} is a module of this kernel ({}); --driver takes modules that \
                 are not the kernel's own (a vendor's): name it in the template's \
                 `modules = [...]` instead",
                file.display(),
                m.name,
                tree.dep_path.display()
            );
        }
        if !external_names.insert(m.name.clone()) {
            bail!(
                "--driver {}: another --driver file is a module named {} too; give one of them",
                file.display(),
                m.name
            );
        }
        for dep in &m.deps {
            tree.visit(dep, &mut done, &mut Vec::new(), &mut d.always)?;
        }
        d.always.push(m.path.clone());
        d.external.push(m);
    }
    for path in &tree.paths {
        let name = module_name(path);
        let hw = (DRIVER_DIRS.iter().any(|dir| path.starts_with(dir))
            || DRIVER_MODULES.contains(&name.as_str()))
            && !DRIVER_EXCLUDED.contains(&name.as_str());
        if hw {
            tree.visit(path, &mut done, &mut Vec::new(), &mut d.hardware)?;
        }
    }
    Ok(d)
}

/// The `.ko` files of `--driver` arguments: a file as it is, a folder's `*.ko` files (with
/// subfolders), sorted. A folder without any is an error.
fn external_files(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("--driver {}: reading the folder", dir.display()))?
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("--driver {}: reading the folder", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out)?;
            } else if p.extension().is_some_and(|x| x == "ko") {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for a in args {
        if a.is_dir() {
            let before = out.len();
            walk(a, &mut out)?;
            if out.len() == before {
                bail!(
                    "--driver {}: the folder holds no kernel module (*.ko)",
                    a.display()
                );
            }
        } else if a.is_file() {
            if a.extension().is_none_or(|x| x != "ko") {
                bail!(
                    "--driver {}: for the linux template a driver is a kernel module \
                     (FILE.ko, uncompressed) or a folder of them",
                    a.display()
                );
            }
            out.push(a.clone());
        } else {
            bail!("--driver {}: no such file or folder", a.display());
        }
    }
    Ok(out)
}

/// The kernel's vermagic, from the first of its modules (`None` when it has none).
fn kernel_vermagic(tree: &ModuleTree) -> Result<Option<String>> {
    let Some(path) = tree.paths.first() else {
        return Ok(None);
    };
    let file = tree.dir.join(path);
    let info = modinfo(&module_bytes(&file)?)
        .with_context(|| format!("reading the module information of {}", file.display()))?;
    Ok(info
        .iter()
        .find(|(k, _)| k == "vermagic")
        .map(|(_, v)| v.trim().to_string()))
}

fn external_module(
    tree: &ModuleTree,
    file: &Path,
    vermagic: Option<&str>,
) -> Result<ExternalModule> {
    let bytes = std::fs::read(file).with_context(|| format!("--driver {}", file.display()))?;
    let info = modinfo(&bytes).with_context(|| {
        format!(
            "--driver {}: not a kernel module (an x86-64 ELF .ko with a .modinfo section)",
            file.display()
        )
    })?;
    let get = |key: &str| -> Vec<&str> {
        info.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let theirs = get("vermagic").first().map(|v| v.trim().to_string());
    match (theirs.as_deref(), vermagic) {
        (None, _) => bail!(
            "--driver {}: the module has no vermagic, so it cannot be checked against the \
             kernel",
            file.display()
        ),
        (Some(t), Some(k)) if t != k => bail!(
            "--driver {}: built for another kernel: its vermagic is {t:?}, the kernel's is \
             {k:?}; build it against this kernel's headers",
            file.display()
        ),
        _ => {}
    }
    let name = get("name")
        .first()
        .map(|n| n.to_string())
        .unwrap_or_else(|| module_name(&file.to_string_lossy()))
        .replace('-', "_");
    let mut deps = Vec::new();
    for dep in get("depends")
        .iter()
        .flat_map(|d| d.split(','))
        .filter(|d| !d.is_empty())
    {
        match tree.path_of(dep) {
            Some(p) => deps.push(p.to_string()),
            None if tree.is_builtin(dep) => {}
            None => bail!(
                "--driver {}: it depends on {dep}, which this kernel has neither as a module \
                 nor built in",
                file.display()
            ),
        }
    }
    Ok(ExternalModule {
        host: file.to_path_buf(),
        path: format!("extra/{name}.ko"),
        name,
        deps,
        aliases: get("alias").iter().map(|a| a.to_string()).collect(),
    })
}

/// `modules.dep` for the initramfs: every module in it (plain `.ko` paths) with its
/// dependencies, in the kernel's format.
pub fn initramfs_modules_dep(tree: &ModuleTree, d: &Drivers) -> String {
    let mut out = String::new();
    for p in d.kernel_paths() {
        out.push_str(plain_module_path(p));
        out.push(':');
        for dep in tree.deps_of(p) {
            out.push(' ');
            out.push_str(plain_module_path(dep));
        }
        out.push('\n');
    }
    for m in &d.external {
        out.push_str(&m.path);
        out.push(':');
        for dep in &m.deps {
            out.push(' ');
            out.push_str(plain_module_path(dep));
        }
        out.push('\n');
    }
    out
}

/// `modules.alias` for the initramfs: the kernel's lines for the modules in it, then the
/// external modules' aliases. A kernel without `modules.alias` gives only the latter.
pub fn initramfs_modules_alias(tree: &ModuleTree, d: &Drivers) -> Result<String> {
    let names: BTreeSet<String> = d.kernel_paths().map(|p| module_name(p)).collect();
    let path = tree.dir.join("modules.alias");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut out = String::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("alias"), Some(_), Some(m), None) =
            (words.next(), words.next(), words.next(), words.next())
        {
            if names.contains(&m.replace('-', "_")) {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for m in &d.external {
        for a in &m.aliases {
            out.push_str(&format!("alias {a} {}\n", m.name));
        }
    }
    Ok(out)
}

/// The firmware files of the modules: name → host file (found in `dirs`, first wins, the
/// name as it is or compressed `.xz`/`.zst` as the kernel also loads it), and the names
/// found nowhere with the module that declares each.
pub fn firmware(
    modules: &[(String, &[u8])],
    dirs: &[PathBuf],
) -> Result<(BTreeMap<String, PathBuf>, BTreeMap<String, String>)> {
    let mut found = BTreeMap::new();
    let mut missing = BTreeMap::new();
    for (path, bytes) in modules {
        let info = modinfo(bytes).with_context(|| format!("reading the .modinfo of {path}"))?;
        for (_, fw) in info.iter().filter(|(k, _)| k == "firmware") {
            if fw.is_empty() || fw.contains("..") || fw.starts_with('/') {
                continue;
            }
            if ["", ".xz", ".zst"]
                .iter()
                .any(|suffix| found.contains_key(&format!("{fw}{suffix}")))
            {
                continue;
            }
            let hit = dirs.iter().find_map(|dir| {
                ["", ".xz", ".zst"].iter().find_map(|suffix| {
                    let p = dir.join(format!("{fw}{suffix}"));
                    p.is_file().then(|| (format!("{fw}{suffix}"), p))
                })
            });
            match hit {
                Some((name, host)) => {
                    found.insert(name, host);
                    missing.remove(fw);
                }
                None => {
                    missing
                        .entry(fw.clone())
                        .or_insert_with(|| module_name(path));
                }
            }
        }
    }
    Ok((found, missing))
}

/// A module file's content, decompressed when it is `.xz`, `.zst` or `.gz`.
pub fn module_bytes(file: &Path) -> Result<Vec<u8>> {
    let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file.to_string_lossy();
    let mut out = Vec::new();
    if name.ends_with(".xz") {
        lzma_rs::xz_decompress(&mut &data[..], &mut out)
            .map_err(|e| anyhow!("decompressing {} (xz): {e:?}", file.display()))?;
    } else if name.ends_with(".zst") {
        out = zstd::decode_all(&data[..])
            .with_context(|| format!("decompressing {} (zstd)", file.display()))?;
    } else if name.ends_with(".gz") {
        flate2::read::GzDecoder::new(&data[..])
            .read_to_end(&mut out)
            .with_context(|| format!("decompressing {} (gzip)", file.display()))?;
    } else {
        return Ok(data);
    }
    Ok(out)
}

/// The `key=value` strings of a module's `.modinfo` ELF section (what `modinfo` prints).
pub fn modinfo(elf: &[u8]) -> Result<Vec<(String, String)>> {
    let rd = |at: usize, n: usize| -> Result<&[u8]> {
        elf.get(
            at..at
                .checked_add(n)
                .ok_or_else(|| anyhow!("offset overflow"))?,
        )
        .ok_or_else(|| anyhow!("truncated ELF file (wanted bytes {at}..{})", at + n))
    };
    let u16_at = |at| -> Result<usize> {
        Ok(u16::from_le_bytes(rd(at, 2)?.try_into().expect("2")) as usize)
    };
    let u32_at = |at| -> Result<usize> {
        Ok(u32::from_le_bytes(rd(at, 4)?.try_into().expect("4")) as usize)
    };
    let u64_at = |at| -> Result<usize> {
        usize::try_from(u64::from_le_bytes(rd(at, 8)?.try_into().expect("8")))
            .map_err(|_| anyhow!("ELF offset too large"))
    };
    if rd(0, 4)? != b"\x7fELF" || rd(4, 2)? != [2, 1] {
        bail!("not a 64-bit little-endian ELF file");
    }
    let shoff = u64_at(40)?;
    let shentsize = u16_at(58)?;
    let shnum = u16_at(60)?;
    let shstrndx = u16_at(62)?;
    if shentsize < 64 || shstrndx >= shnum {
        bail!("bad ELF section headers");
    }
    let section = |i: usize| -> Result<(usize, usize, usize)> {
        let h = shoff + i * shentsize;
        Ok((u32_at(h)?, u64_at(h + 24)?, u64_at(h + 32)?))
    };
    let (_, stroff, strsize) = section(shstrndx)?;
    let strtab = rd(stroff, strsize)?;
    for i in 0..shnum {
        let (name, off, size) = section(i)?;
        let name = strtab
            .get(name..)
            .and_then(|s| s.split(|&b| b == 0).next())
            .unwrap_or(&[]);
        if name != b".modinfo" {
            continue;
        }
        return Ok(rd(off, size)?
            .split(|&b| b == 0)
            .filter_map(|s| {
                let s = String::from_utf8_lossy(s);
                s.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect());
    }
    bail!("no .modinfo section")
}
