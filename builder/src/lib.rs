//! tsforge builder: assembles boot media from a media template, the runner, pre-execution
//! hooks and task sequences. [`output`] writes a finished medium as a folder, a USB disk
//! image, an ISO or a PXE root, using the image writers [`iso`] (ISO 9660 with Joliet,
//! El Torito and an isohybrid MBR) and [`cpio`] (initramfs archives).

pub mod cli;
pub mod cpio;
pub mod iso;
pub mod media;
pub mod output;
pub mod qemu;
pub mod source;
pub mod template;
pub mod tree;
pub mod try_cmd;

/// The runtime this builder packages, re-exported for the thin `tsforge` binary.
pub use tsforge_runtime as runtime;
