//! `tsforge package build`: a folder or an image file into a package of a distribution point.

use super::manifest::{
    check_id, check_rel_path, DpIndex, FileEntry, IndexEntry, PackageKind, PackageManifest,
    Program, BLOCK_SIZE, FILES_DIR, FORMAT, INDEX_FILE, INDEX_SIG_FILE, PACKAGE_FILE,
    PACKAGE_SIG_FILE,
};
use crate::sys::hex;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    pub id: String,
    /// Default: the source's file or folder name.
    pub name: Option<String>,
    /// Default: one more than the version already in the distribution point, else 1.
    pub version: Option<u32>,
    pub programs: Vec<Program>,
    /// The ed25519 secret key (`--sign KEY`, a `tsforge keygen` key): signs the package
    /// manifest and the index.
    pub signing_key: Option<[u8; 32]>,
}

/// Builds `src` (a folder: a files package; a tsforge image or WIM: an image package) as
/// package `opts.id` in the distribution point `dp` (created if needed), replacing an older
/// version of the same ID, and updates the index. Files are written under a temporary name and
/// renamed, so a failed build leaves the distribution point as it was.
pub fn build(
    src: &Path,
    dp: &Path,
    opts: &BuildOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<PackageManifest> {
    check_id(&opts.id)?;
    for p in &opts.programs {
        if p.name.trim().is_empty() || p.command_line.trim().is_empty() {
            bail!("a program needs a name and a command line (NAME=COMMAND LINE)");
        }
    }
    let meta = fs::metadata(src).with_context(|| format!("reading {}", src.display()))?;
    let (kind, sources) = if meta.is_dir() {
        let mut files = Vec::new();
        walk(src, src, &mut files)?;
        files.sort();
        (PackageKind::Files, files)
    } else if meta.is_file() {
        match crate::volume::detect(src, false) {
            Ok(crate::volume::ImageKind::Tsforge | crate::volume::ImageKind::Wim) => {}
            // A damaged tsforge image or WIM: say what is wrong with it.
            Err(e) if crate::volume::claims_tsforge_or_wim(src) => return Err(e),
            _ => bail!(
                "{} is a file but not a tsforge image or a WIM; to package files, give the \
                 folder that holds them",
                src.display()
            ),
        }
        let name = src
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no usable file name", src.display()))?;
        (
            PackageKind::Image,
            vec![(name.to_string(), src.to_path_buf())],
        )
    } else {
        bail!("{} is neither a folder nor a file", src.display());
    };
    if kind == PackageKind::Image && !opts.programs.is_empty() {
        bail!("an image package has no programs (--program is for files packages)");
    }

    fs::create_dir_all(dp).with_context(|| format!("creating {}", dp.display()))?;
    let mut index = read_index(dp)?;
    let previous = index
        .packages
        .iter()
        .find(|p| p.id.eq_ignore_ascii_case(&opts.id))
        .map(|p| p.version);
    let version = opts.version.unwrap_or(previous.map_or(1, |v| v + 1));

    let tmp = dp.join(format!(".tmp-{}-{}", opts.id, std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let result = (|| -> Result<PackageManifest> {
        let files_dir = tmp.join(FILES_DIR);
        fs::create_dir_all(&files_dir)?;
        let total: u64 = sources
            .iter()
            .map(|(_, p)| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        let mut done = 0u64;
        progress(done, total);
        let mut entries = Vec::new();
        for (rel, path) in &sources {
            check_rel_path(rel).with_context(|| format!("{}", path.display()))?;
            let out = files_dir.join(rel.replace('/', std::path::MAIN_SEPARATOR_STR));
            if let Some(parent) = out.parent() {
                fs::create_dir_all(parent)?;
            }
            entries.push(copy_hashed(path, &out, rel, &mut |n| {
                done += n;
                progress(done, total);
            })?);
        }
        let name = opts.name.clone().unwrap_or_else(|| {
            src.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| opts.id.clone())
        });
        let mut m = PackageManifest {
            format: FORMAT,
            id: opts.id.clone(),
            name,
            version,
            kind,
            created: crate::sys::source_date_epoch_or_now()?,
            programs: opts.programs.clone(),
            files: entries,
            hash: String::new(),
        };
        m.hash = m.compute_hash();
        let json = m.to_json();
        let mut f = File::create(tmp.join(PACKAGE_FILE))?;
        f.write_all(&json)?;
        f.sync_all()?;
        if let Some(seed) = &opts.signing_key {
            let (sig, _) = crate::media::sign(seed, &json);
            let mut f = File::create(tmp.join(PACKAGE_SIG_FILE))?;
            f.write_all(&sig)?;
            f.sync_all()?;
        }
        Ok(m)
    })();
    let m = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e.context(format!(
                "building package {} from {}",
                opts.id,
                src.display()
            )));
        }
    };
    // Replace the old version: move it aside, move the new one in, then drop the old one.
    let dest = dp.join(&m.id);
    let old = dp.join(format!(".old-{}-{}", m.id, std::process::id()));
    if dest.exists() {
        fs::rename(&dest, &old).with_context(|| format!("moving {} aside", dest.display()))?;
    }
    fs::rename(&tmp, &dest).with_context(|| format!("creating {}", dest.display()))?;
    let _ = fs::remove_dir_all(&old);
    index.format = FORMAT;
    index.upsert(IndexEntry::of(&m));
    write_index(dp, &index, opts.signing_key.as_ref())?;
    Ok(m)
}

/// The index of the distribution point folder `dp` (empty when there is none yet).
pub fn read_index(dp: &Path) -> Result<DpIndex> {
    let p = dp.join(INDEX_FILE);
    match fs::read(&p) {
        Ok(b) => DpIndex::parse(&b, &p.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DpIndex {
            format: FORMAT,
            packages: Vec::new(),
        }),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

/// Writes the index and, with a key, its signature; without one, an older signature (of the
/// index as it was) is removed: it no longer matches.
fn write_index(dp: &Path, index: &DpIndex, signing_key: Option<&[u8; 32]>) -> Result<()> {
    let bytes = index.to_json();
    replace_file(dp, INDEX_FILE, &bytes)?;
    let sig = dp.join(INDEX_SIG_FILE);
    match signing_key {
        Some(seed) => replace_file(dp, INDEX_SIG_FILE, &crate::media::sign(seed, &bytes).0),
        None => match fs::remove_file(&sig) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing the outdated {}", sig.display()))
            }
            _ => Ok(()),
        },
    }
}

/// `dp/name` replaced by `bytes` through a temporary file and a rename.
fn replace_file(dp: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dp.join(format!(".{name}.tmp"));
    crate::sys::write_atomic(&dp.join(name), &tmp, bytes, true)
}

/// Regular files under `dir`, as (relative `/` path, path). Symbolic links and special files
/// are refused: a package is copied onto FAT and NTFS volumes and Windows file shares.
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    let rd = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for e in rd {
        let e = e.with_context(|| format!("reading {}", dir.display()))?;
        let path = e.path();
        let t = e
            .file_type()
            .with_context(|| format!("reading {}", path.display()))?;
        if t.is_dir() {
            walk(root, &path, out)?;
        } else if t.is_file() {
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .components()
                .map(|c| {
                    c.as_os_str()
                        .to_str()
                        .map(str::to_string)
                        .with_context(|| format!("{} is not a UTF-8 name", path.display()))
                })
                .collect::<Result<Vec<_>>>()?
                .join("/");
            out.push((rel, path));
        } else {
            bail!(
                "{} is a symbolic link or special file; a package holds regular files only",
                path.display()
            );
        }
    }
    Ok(())
}

/// Copies `src` to `dst`, hashing the whole file and each block on the way.
fn copy_hashed(
    src: &Path,
    dst: &Path,
    rel: &str,
    progress: &mut dyn FnMut(u64),
) -> Result<FileEntry> {
    let mut r = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let mut w = File::create(dst).with_context(|| format!("creating {}", dst.display()))?;
    let mut whole = Sha256::new();
    let mut blocks = Vec::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; BLOCK_SIZE as usize];
    loop {
        let mut n = 0;
        while n < buf.len() {
            match r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).with_context(|| format!("reading {}", src.display())),
            }
        }
        if n == 0 {
            break;
        }
        whole.update(&buf[..n]);
        blocks.push(hex(&Sha256::digest(&buf[..n])));
        w.write_all(&buf[..n])
            .with_context(|| format!("writing {}", dst.display()))?;
        size += n as u64;
        progress(n as u64);
        if n < buf.len() {
            break;
        }
    }
    w.sync_all()
        .with_context(|| format!("writing {}", dst.display()))?;
    if size <= BLOCK_SIZE {
        blocks.clear();
    }
    Ok(FileEntry {
        path: rel.to_string(),
        size,
        sha256: hex(&whole.finalize()),
        blocks,
    })
}
