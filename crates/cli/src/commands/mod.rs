//! One module per command or group of commands.

pub mod deploy;
pub mod environments;
pub mod init;
pub mod project;
pub mod serve;
pub mod validate;
pub mod variables;
