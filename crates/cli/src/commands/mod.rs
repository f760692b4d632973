//! One module per command or group of commands.

pub mod clusters;
pub mod databases;
pub mod demo;
pub mod deploy;
pub mod environments;
pub mod init;
pub mod logs;
pub mod manual;
pub mod previews;
pub mod project;
pub mod serve;
pub mod validate;
pub mod variables;
pub mod webhooks;
