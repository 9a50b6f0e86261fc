//! The runtime shell: one pinned glommio executor per data-plane core, each with
//! its own SO_REUSEPORT sockets, moving datagrams and time in and out of the
//! sans-IO proxy core it owns.

use crate::config::Config;

/// Why the runtime could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Something the operator must fix; the message names the fix.
    #[error("{0}")]
    Setup(String),
}

/// Runs the proxy until SIGTERM or SIGINT, then drains and returns.
pub fn run(config: Config) -> Result<(), RuntimeError> {
    let _ = config;
    Err(RuntimeError::Setup("runtime not built yet".into()))
}
