//! One module per command.

pub mod init;
pub mod validate;
