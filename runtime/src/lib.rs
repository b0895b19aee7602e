//! tsforge runtime: everything the target machine needs to run a task sequence.
//!
//! The sequence model and its XML/YAML formats (`sequence`), variables (`vars`), conditions
//! (`condition`), the engine that walks the tree and journals every step (`engine`), the
//! built-in actions (`actions`), and the logs (`log`). Nothing here depends on the builder.

pub mod error;
pub mod sequence;

pub use error::{Diagnostic, ParseError, Severity};
