pub mod raw;
pub mod wim;
