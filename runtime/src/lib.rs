//! tsforge runtime: everything the target machine needs to run a task sequence.
//!
//! The sequence model, its XML/YAML formats and errors (`sequence`, `error`: the
//! `tsforge-sequence` crate, re-exported so their paths stay), variables (`vars`), conditions
//! (`condition`), the engine that walks the tree and journals every step (`engine`), the
//! built-in actions (`actions`), the logs (`log`), the disk layer (`disk`: GPT/MBR, FAT, disk
//! selection), the runner's command line (`cli`); tsforge, raw and WIM images (`image`),
//! external formatters (`fsformat`) and the one table of external programs with their lookup
//! and "missing tool" errors (`tools`), and the small helpers everything shares (`sys`: hex,
//! atomic file replacement, buffer sizes, `SOURCE_DATE_EPOCH`, progress lines).
//! Nothing here depends on the builder, so a runner-only build (musl, or windows-gnu for
//! Windows PE) needs nothing else.

pub mod actions;
pub mod cli;
pub mod condition;
pub mod content;
pub mod disk;
pub mod engine;
pub mod envfile;
pub mod fsformat;
pub mod image;
#[cfg(test)]
mod layers;
pub mod log;
pub mod machine;
pub mod media;
pub mod osconfig;
pub mod sys;
pub mod tools;
pub mod vars;
pub mod volume;

pub use tsforge_sequence as sequence;
pub use tsforge_sequence::error;

pub use error::{Diagnostic, ParseError, Severity};
