//! The metadata of a tree entry that capture reads and sinks apply ([`Meta`]), and the nodes
//! without content ([`Special`]). Below both `tree` and `dirfs`, which use them.

/// Metadata kept for every entry. `mode` is the Unix permission bits (`0o7777` mask), `None`
/// when the source has none (Windows); `mtime_ns` is nanoseconds since the Unix epoch; `uid`
/// and `gid` the numeric owner (`None` when the source has none); `xattrs` every extended
/// attribute, sorted by name; `sparse` a regular file with holes (written sparse on apply).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta {
    pub mode: Option<u32>,
    pub mtime_ns: Option<i64>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub xattrs: Vec<(String, Vec<u8>)>,
    pub sparse: bool,
}

/// A node without content: a device node or a named pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// A character (`block == false`) or block device with its device number.
    Device {
        block: bool,
        major: u32,
        minor: u32,
    },
    Fifo,
}
