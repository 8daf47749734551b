//! The subcommands of the binary, one module each; argument types live in
//! main.rs.

pub mod bench;
pub mod eval;
pub mod report;
pub mod train;
