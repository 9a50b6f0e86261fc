//! `media`: the RTP relay, driven over the rtpengine ng protocol. The
//! options keep rtpengine's names so that existing configurations carry
//! over; a TOML file (`--config`) takes the same names.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use media::config::Options;
use media::runtime::{self, RelayError};

fn stop_on_signals() -> Result<Arc<AtomicBool>, RelayError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| RelayError::Config(format!("cannot install a signal handler: {e}")))?;
    }
    Ok(stop)
}

fn main() -> ExitCode {
    let options = Options::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match options.with_file().and_then(|o| o.relay_config()) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("media: {e}");
            return ExitCode::from(2);
        }
    };
    let result = config
        .validate()
        .and_then(|()| stop_on_signals())
        .and_then(|stop| runtime::run(config, stop));
    match result {
        Ok(counters) => {
            tracing::info!(?counters, "media relay stopped");
            ExitCode::SUCCESS
        }
        Err(e @ (RelayError::Config(_) | RelayError::Ports(_))) => {
            tracing::error!("{e}");
            eprintln!("media: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("media: {e}");
            ExitCode::FAILURE
        }
    }
}
