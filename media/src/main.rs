//! `media`: the RTP relay, driven over the rtpengine ng protocol. The
//! options keep rtpengine's names so that existing configurations carry
//! over.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use edge::runtime::uring::RingConfig;
use media::runtime::{self, RelayConfig, RelayError};
use media::session::SessionConfig;

/// RTP/RTCP relay driven by the rtpengine ng protocol.
#[derive(Debug, Parser)]
#[command(name = "media", version)]
struct Cli {
    /// The address relay ports bind to and rewritten SDP advertises.
    #[arg(long, value_name = "IP")]
    interface: IpAddr,
    /// Where the ng control protocol listens (UDP).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:2223")]
    listen_ng: SocketAddr,
    /// The lowest relay port.
    #[arg(long, default_value_t = 30_000)]
    port_min: u16,
    /// The highest relay port.
    #[arg(long, default_value_t = 40_000)]
    port_max: u16,
    /// Seconds without media after which a call is deleted.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    timeout: u64,
    /// Seconds a released port pair waits before reuse.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    delete_delay: u64,
    /// Data-plane threads, one ring each (only 1 so far).
    #[arg(long, default_value_t = 1)]
    cores: usize,
}

impl Cli {
    fn config(&self) -> RelayConfig {
        RelayConfig {
            listen_ng: self.listen_ng,
            sessions: SessionConfig {
                timeout: Duration::from_secs(self.timeout),
                delete_delay: Duration::from_secs(self.delete_delay),
                advertised_address: self.interface,
                port_min: self.port_min,
                port_max: self.port_max,
                ..SessionConfig::default()
            },
            shards: self.cores,
            ring: RingConfig::default(),
        }
    }
}

fn stop_on_signals() -> Result<Arc<AtomicBool>, RelayError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| RelayError::Config(format!("cannot install a signal handler: {e}")))?;
    }
    Ok(stop)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = cli.config();
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
