//! Foundations every layer may use: reading files from users without
//! hanging or exhausting memory (`fs`), text that is safe to show in a
//! terminal (`text`), and checking a size read from a file or an argument
//! against what the machine can hold before allocating it (`mem`), a
//! small digest for records and inputs (`digest`), and helpers for the
//! library's unit tests (`testing`, test builds only).
//!
//! Nothing here knows about models, sweeps or the screen; every other module
//! may import it, and it imports none of them.

pub mod digest;
pub mod fs;
pub mod mem;
#[cfg(test)]
pub(crate) mod testing;
pub mod text;
