//! Router mode.
