//! The header of a WIM file, read by tsforge itself (no external program): what a boot image
//! needs checked before a tool is run on it. Microsoft's WIM format starts with a 208-byte
//! header; this reads its size, part numbers, image count and boot index, and refuses what
//! Windows PE cannot boot from (pipable, split, empty or corrupt WIMs) with the reason.

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::Path;

/// What tsforge needs from a WIM header (Microsoft's WIM format: a 208-byte header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WimHeader {
    pub image_count: u32,
    /// The bootable image (1-based), 0 when none is marked.
    pub boot_index: u32,
    pub part_number: u16,
    pub total_parts: u16,
    pub file_size: u64,
}

const WIM_MAGIC: &[u8; 8] = b"MSWIM\0\0\0";
const WIM_PIPABLE_MAGIC: &[u8; 8] = b"WLPWM\0\0\0";
const WIM_HEADER_SIZE: usize = 208;

impl WimHeader {
    /// Reads and checks the header of `path`; errors name the file and what is wrong.
    pub fn read(path: &Path) -> Result<WimHeader> {
        let mut f =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let file_size = f
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        let mut buf = Vec::with_capacity(WIM_HEADER_SIZE);
        (&mut f)
            .take(WIM_HEADER_SIZE as u64)
            .read_to_end(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&buf, file_size).with_context(|| format!("{}", path.display()))
    }

    /// Checks a header read from a file of `file_size` bytes.
    pub fn parse(buf: &[u8], file_size: u64) -> Result<WimHeader> {
        if buf.len() >= 8 && &buf[..8] == WIM_PIPABLE_MAGIC {
            bail!(
                "a pipable WIM, which Windows cannot boot; convert it with \
                 wimlib-imagex optimize --not-pipable"
            );
        }
        if buf.len() < 8 || &buf[..8] != WIM_MAGIC {
            bail!("not a WIM file (it does not start with MSWIM)");
        }
        if buf.len() < WIM_HEADER_SIZE {
            bail!(
                "a truncated WIM file ({} bytes, the header alone is {WIM_HEADER_SIZE})",
                buf.len()
            );
        }
        let u32_at = |o: usize| u32::from_le_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
        let u16_at = |o: usize| u16::from_le_bytes([buf[o], buf[o + 1]]);
        let header_size = u32_at(0x08);
        if header_size as usize != WIM_HEADER_SIZE {
            bail!("a WIM header size of {header_size}, not {WIM_HEADER_SIZE}: corrupt or an unknown WIM version");
        }
        let h = WimHeader {
            part_number: u16_at(0x28),
            total_parts: u16_at(0x2A),
            image_count: u32_at(0x2C),
            boot_index: u32_at(0x78),
            file_size,
        };
        if h.total_parts != 1 || h.part_number != 1 {
            bail!(
                "part {} of a split WIM of {} parts; Windows PE boots only from a \
                 single-part WIM (join it with wimlib-imagex join or dism /Export-Image)",
                h.part_number,
                h.total_parts
            );
        }
        if h.image_count == 0 {
            bail!("a WIM file without images");
        }
        if h.boot_index > h.image_count {
            bail!(
                "marks image {} bootable but holds {} image(s): corrupt WIM header",
                h.boot_index,
                h.image_count
            );
        }
        Ok(h)
    }

    /// The image Windows PE boots: the bootable one, or image 1 when none is marked.
    pub fn boot_image(&self) -> u32 {
        if self.boot_index == 0 {
            1
        } else {
            self.boot_index
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(image_count: u32, boot_index: u32, parts: (u16, u16)) -> Vec<u8> {
        let mut h = vec![0u8; WIM_HEADER_SIZE];
        h[..8].copy_from_slice(WIM_MAGIC);
        h[8..12].copy_from_slice(&(WIM_HEADER_SIZE as u32).to_le_bytes());
        h[0x28..0x2A].copy_from_slice(&parts.0.to_le_bytes());
        h[0x2A..0x2C].copy_from_slice(&parts.1.to_le_bytes());
        h[0x2C..0x30].copy_from_slice(&image_count.to_le_bytes());
        h[0x78..0x7C].copy_from_slice(&boot_index.to_le_bytes());
        h
    }

    #[test]
    fn wim_header_checks() {
        let h = WimHeader::parse(&header(2, 2, (1, 1)), 1000).unwrap();
        assert_eq!((h.image_count, h.boot_image()), (2, 2));
        assert_eq!(
            WimHeader::parse(&header(1, 0, (1, 1)), 1)
                .unwrap()
                .boot_image(),
            1
        );
        for (name, bytes, want) in [
            ("not a WIM", b"PK\x03\x04".to_vec(), "not a WIM"),
            (
                "truncated",
                header(1, 1, (1, 1))[..100].to_vec(),
                "truncated",
            ),
            ("split", header(1, 1, (1, 2)), "split WIM"),
            ("no images", header(0, 0, (1, 1)), "without images"),
            ("bad boot index", header(1, 3, (1, 1)), "marks image 3"),
            ("pipable", b"WLPWM\0\0\0rest".to_vec(), "pipable"),
        ] {
            let e = WimHeader::parse(&bytes, 1).unwrap_err().to_string();
            assert!(e.contains(want), "{name}: {e}");
        }
    }
}
