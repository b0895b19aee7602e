//! The file tree of a boot medium before it is written: every file's path on the medium and
//! where its bytes come from. Templates fill it, the media core adds the `tsforge/` folder, and
//! each output (`dir`, `usb`, `iso`, `pxe`) writes the same tree its own way.

use crate::source::Source;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Files of a medium by path (`/`-separated, no leading `/`). Paths are unique ignoring ASCII
/// case, because FAT and ISO 9660 media are case-insensitive.
#[derive(Clone, Default)]
pub struct MediaTree {
    files: BTreeMap<String, Source>,
}

impl MediaTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or, with the same path, replaces) a file.
    pub fn add(&mut self, path: &str, source: impl Into<Source>) -> Result<()> {
        check_path(path)?;
        let key = self
            .files
            .keys()
            .find(|k| k.eq_ignore_ascii_case(path))
            .cloned()
            .unwrap_or_else(|| path.to_string());
        self.files.insert(key, source.into());
        Ok(())
    }

    /// Adds every regular file under the host folder `dir` below `prefix` ("" for the root).
    pub fn add_dir(&mut self, dir: &Path, prefix: &str) -> Result<()> {
        let rd = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        let mut entries: Vec<_> = rd.collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e
                .file_name()
                .into_string()
                .map_err(|n| anyhow::anyhow!("{n:?} in {} is not UTF-8", dir.display()))?;
            let path = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let meta = std::fs::metadata(e.path())
                .with_context(|| format!("reading {}", e.path().display()))?;
            if meta.is_dir() {
                self.add_dir(&e.path(), &path)?;
            } else if meta.is_file() {
                self.add(&path, Source::path(e.path()))?;
            }
        }
        Ok(())
    }

    /// The file at `path` (ASCII case ignored).
    pub fn get(&self, path: &str) -> Option<&Source> {
        self.files
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(path))
            .map(|(_, v)| v)
    }

    pub fn contains(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    pub fn remove(&mut self, path: &str) -> Option<Source> {
        let key = self
            .files
            .keys()
            .find(|k| k.eq_ignore_ascii_case(path))
            .cloned()?;
        self.files.remove(&key)
    }

    /// Files in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Source)> {
        self.files.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Bytes of all files (reads each file's size).
    pub fn total_size(&self) -> Result<u64> {
        let mut n = 0;
        for (p, s) in &self.files {
            n += s
                .size()
                .with_context(|| format!("{p} (from {})", s.describe()))?;
        }
        Ok(n)
    }

    /// Writes the tree into the host folder `out` (which must not exist or be empty).
    pub fn write_to_dir(&self, out: &Path) -> Result<()> {
        if out.exists() && std::fs::read_dir(out)?.next().is_some() {
            bail!("{} is not empty", out.display());
        }
        for (p, s) in &self.files {
            let dest = out.join(p);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let mut r = s
                .open()
                .with_context(|| format!("{p}: opening {}", s.describe()))?;
            let mut w = std::fs::File::create(&dest)
                .with_context(|| format!("creating {}", dest.display()))?;
            std::io::copy(&mut r, &mut w).with_context(|| format!("writing {}", dest.display()))?;
        }
        Ok(())
    }
}

fn check_path(p: &str) -> Result<()> {
    if p.is_empty()
        || p.starts_with('/')
        || p.ends_with('/')
        || p.contains(['\\', '\0', ':'])
        || p.split('/').any(|c| c.is_empty() || c == "." || c == "..")
    {
        bail!("{p:?} is not a valid path on a medium");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_unique_ignoring_case() {
        let mut t = MediaTree::new();
        t.add("EFI/Boot/bootx64.efi", b"a".to_vec()).unwrap();
        t.add("efi/boot/BOOTX64.EFI", b"b".to_vec()).unwrap();
        assert_eq!(t.len(), 1);
        assert!(t.contains("EFI/BOOT/BOOTX64.EFI"));
        assert!(t.add("../x", b"".to_vec()).is_err());
        assert!(t.add("a//b", b"".to_vec()).is_err());
    }
}
