//! Validation of a parsed sequence (being written).
