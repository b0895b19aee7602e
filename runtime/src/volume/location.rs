//! Where disk and image steps read and write: a *location* is a directory, a whole disk, or a
//! partition of a disk, written `PATH` or `DISK:N`.
//!
//! `DISK` is an image file or a block device (`/dev/sda`, `\\.\PhysicalDrive0`) and `N` the
//! 1-based partition number, so `/dev/sda:3` or `disk.img:2`. *Format and Partition Disk* stores
//! such a location in the variable named by `PartitionsNVolumeVariable` (ConfigMgr's `OSDisk`
//! pattern), and apply/capture steps accept it wherever ConfigMgr takes a drive. A trailing
//! `:N` is read as a partition only when `N` is a number and what comes before it is not a
//! bare drive letter, so `C:` and `D:\` stay directories.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory (or a Windows drive letter).
    Dir(PathBuf),
    /// A whole disk (image file or block device).
    Disk(PathBuf),
    /// Partition `number` (1-based) of a disk.
    Partition { disk: PathBuf, number: u32 },
}

impl Location {
    /// Parse a location. A path that is an existing directory is a directory; `X:N` with a
    /// numeric `N` a partition; any other existing file or device a whole disk.
    pub fn parse(s: &str) -> Location {
        let s = s.trim();
        if let Some((disk, n)) = s.rsplit_once(':') {
            let drive_letter = disk.len() == 1 && disk.chars().all(|c| c.is_ascii_alphabetic());
            if !drive_letter
                && !disk.is_empty()
                && !n.is_empty()
                && n.chars().all(|c| c.is_ascii_digit())
            {
                if let Ok(number) = n.parse::<u32>() {
                    return Location::Partition {
                        disk: PathBuf::from(disk),
                        number,
                    };
                }
            }
        }
        let p = Path::new(s);
        if p.is_dir() || !p.exists() {
            Location::Dir(p.to_path_buf())
        } else {
            Location::Disk(p.to_path_buf())
        }
    }

    /// The `DISK:N` text stored in variables.
    pub fn partition_text(disk: &Path, number: u32) -> String {
        format!("{}:{number}", disk.display())
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Dir(p) => write!(f, "folder {}", p.display()),
            Location::Disk(p) => write!(f, "disk {}", p.display()),
            Location::Partition { disk, number } => {
                write!(f, "partition {number} of {}", disk.display())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        std::fs::write(&img, b"x").unwrap();
        let d = dir.path().to_str().unwrap();
        let cases = [
            (
                "/dev/sda:3",
                Location::Partition {
                    disk: "/dev/sda".into(),
                    number: 3,
                },
            ),
            (
                r"\\.\PhysicalDrive0:2",
                Location::Partition {
                    disk: r"\\.\PhysicalDrive0".into(),
                    number: 2,
                },
            ),
            ("C:", Location::Dir("C:".into())),
            (d, Location::Dir(dir.path().into())),
            (img.to_str().unwrap(), Location::Disk(img.clone())),
            ("/no/such/dir", Location::Dir("/no/such/dir".into())),
        ];
        for (input, want) in cases {
            assert_eq!(Location::parse(input), want, "{input}");
        }
        assert_eq!(
            Location::partition_text(Path::new("/dev/sda"), 3),
            "/dev/sda:3"
        );
    }
}
