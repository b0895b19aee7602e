//! tsforge builder: assembles boot media from a media template, the runner, pre-execution
//! hooks and task sequences. The media writers arrive with the media-builder issue; this crate
//! exists now so the workspace has its final shape and the dependency direction
//! (builder → runtime, never the reverse) is fixed from the start.

/// The runtime this builder packages, re-exported for the thin `tsforge` binary.
pub use tsforge_runtime as runtime;
