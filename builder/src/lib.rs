//! tsforge builder: assembles boot media from a media template, the runner, pre-execution
//! hooks and task sequences. The media writers arrive with the media-builder issue; what is
//! here so far are the image writers they will use: [`iso`] (ISO 9660 with Joliet, El Torito
//! and an isohybrid MBR) and [`cpio`] (initramfs archives).

pub mod cpio;
pub mod iso;
pub mod media;
pub mod source;
pub mod template;
pub mod tree;

/// The runtime this builder packages, re-exported for the thin `tsforge` binary.
pub use tsforge_runtime as runtime;
