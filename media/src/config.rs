//! The relay's settings: command-line options and a TOML file with the
//! same names (rtpengine's, so operators feel at home). One struct is both,
//! so the two can never drift apart; an option given on the command line
//! wins over the file.
//!
//! ```toml
//! interface = "192.0.2.10"
//! listen-ng = "127.0.0.1:2223"
//! port-min = 30000
//! port-max = 40000
//! timeout = 60
//! cores = 2
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use edge::runtime::datagram_io::Backend;
use edge::runtime::uring::RingConfig;
use serde::Deserialize;

use crate::runtime::RelayConfig;
use crate::session::SessionConfig;

/// The largest config file read, bytes.
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// The default ng address (rtpengine's usual port).
pub const DEFAULT_LISTEN_NG: &str = "127.0.0.1:2223";

/// RTP/RTCP relay driven by the rtpengine ng protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq, Parser, Deserialize)]
#[command(name = "media", version)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Options {
    /// A TOML file with these same settings; options given here win.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// The address relay ports bind to and rewritten SDP advertises.
    #[arg(long, value_name = "IP")]
    pub interface: Option<IpAddr>,
    /// Where the ng control protocol listens on UDP [default: 127.0.0.1:2223].
    #[arg(long, value_name = "IP:PORT")]
    pub listen_ng: Option<SocketAddr>,
    /// Where the ng control protocol listens on TCP, if anywhere.
    #[arg(long, value_name = "IP:PORT")]
    pub listen_tcp_ng: Option<SocketAddr>,
    /// Where Prometheus metrics are served (GET /metrics), if anywhere.
    #[arg(long, value_name = "IP:PORT")]
    pub listen_http: Option<SocketAddr>,
    /// The lowest relay port [default: 30000].
    #[arg(long)]
    pub port_min: Option<u16>,
    /// The highest relay port [default: 40000].
    #[arg(long)]
    pub port_max: Option<u16>,
    /// Seconds without media after which a call is deleted [default: 60].
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Seconds after which a call is deleted whatever it does [default: none].
    #[arg(long, value_name = "SECONDS")]
    pub final_timeout: Option<u64>,
    /// Seconds a released port pair waits before reuse [default: 30].
    #[arg(long, value_name = "SECONDS")]
    pub delete_delay: Option<u64>,
    /// The most calls held, over all cores [default: 10000 per core].
    #[arg(long)]
    pub max_sessions: Option<usize>,
    /// Data-plane threads, one pinned ring each [default: 1].
    #[arg(long)]
    pub cores: Option<usize>,
    /// The UDP driver: io_uring, recvmmsg/sendmmsg, or io_uring when this
    /// kernel runs it [default: auto].
    #[arg(long, value_enum)]
    pub io: Option<IoDriver>,
}

/// The `io` setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IoDriver {
    /// io_uring if a probe ring works, else recvmmsg/sendmmsg.
    Auto,
    /// io_uring: multishot receive into a provided buffer ring.
    IoUring,
    /// recvmmsg/sendmmsg over epoll.
    Mmsg,
}

/// The ring of a relay shard. Media is many small datagrams on thousands
/// of sockets: enough provided buffers that a burst never runs the multishot
/// receives out of them (each ENOBUFS ends a receive, and re-arming
/// thousands of them costs more than the burst), each taking any datagram
/// up to about 4 KB (longer ones are counted as truncated and dropped), and
/// a submission queue that takes a turn's sends in one `io_uring_enter`.
/// About 48 MiB per shard.
pub fn relay_ring_config() -> RingConfig {
    RingConfig {
        entries: 4096,
        buffers: 8192,
        buffer_size: 4096,
        send_slots: 8192,
        send_buffer_size: 2048,
        max_completions: 4096,
        ..RingConfig::default()
    }
}

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file is not valid TOML for these settings.
    #[error("{path}: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message, with the line.
        reason: String,
    },
    /// A required setting is missing.
    #[error("{0} is required (on the command line or in the config file)")]
    Missing(&'static str),
    /// A setting is out of range.
    #[error("{0}")]
    Invalid(String),
}

impl Options {
    /// Parses a config file's text; `path` names it in errors.
    pub fn from_toml(text: &str, path: &str) -> Result<Options, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            reason: e.to_string(),
        })
    }

    /// Reads the file `--config` names (if any) and lays these options
    /// over it.
    pub fn with_file(self) -> Result<Options, ConfigError> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let shown = path.display().to_string();
        let read_error = |reason: String| ConfigError::Read {
            path: shown.clone(),
            reason,
        };
        let size = std::fs::metadata(&path)
            .map_err(|e| read_error(e.to_string()))?
            .len();
        if size > MAX_CONFIG_BYTES {
            return Err(read_error(format!("over {MAX_CONFIG_BYTES} bytes")));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| read_error(e.to_string()))?;
        Ok(Options::from_toml(&text, &shown)?.overlaid_by(self))
    }

    /// These options with every setting `over` has replacing ours.
    pub fn overlaid_by(self, over: Options) -> Options {
        Options {
            config: over.config.or(self.config),
            interface: over.interface.or(self.interface),
            listen_ng: over.listen_ng.or(self.listen_ng),
            listen_tcp_ng: over.listen_tcp_ng.or(self.listen_tcp_ng),
            listen_http: over.listen_http.or(self.listen_http),
            port_min: over.port_min.or(self.port_min),
            port_max: over.port_max.or(self.port_max),
            timeout: over.timeout.or(self.timeout),
            final_timeout: over.final_timeout.or(self.final_timeout),
            delete_delay: over.delete_delay.or(self.delete_delay),
            max_sessions: over.max_sessions.or(self.max_sessions),
            cores: over.cores.or(self.cores),
            io: over.io.or(self.io),
        }
    }

    /// The relay's configuration, defaults filled in.
    pub fn relay_config(&self) -> Result<RelayConfig, ConfigError> {
        let interface = self.interface.ok_or(ConfigError::Missing("interface"))?;
        let defaults = SessionConfig::default();
        let shards = self.cores.unwrap_or(1);
        let listen_ng = match self.listen_ng {
            Some(addr) => addr,
            None => DEFAULT_LISTEN_NG
                .parse()
                .map_err(|_| ConfigError::Invalid("bad default ng address".into()))?,
        };
        let max_calls = match self.max_sessions {
            // Each shard holds the calls that hash to it: its share, with
            // room for an uneven spread.
            Some(total) => total.div_ceil(shards.max(1)).saturating_mul(5) / 4,
            None => defaults.max_calls,
        };
        if max_calls == 0 {
            return Err(ConfigError::Invalid("max-sessions must be positive".into()));
        }
        Ok(RelayConfig {
            listen_ng,
            listen_tcp_ng: self.listen_tcp_ng,
            listen_http: self.listen_http,
            sessions: SessionConfig {
                timeout: self.timeout.map_or(defaults.timeout, Duration::from_secs),
                final_timeout: self.final_timeout.map(Duration::from_secs),
                delete_delay: self
                    .delete_delay
                    .map_or(defaults.delete_delay, Duration::from_secs),
                max_calls,
                advertised_address: interface,
                port_min: self.port_min.unwrap_or(defaults.port_min),
                port_max: self.port_max.unwrap_or(defaults.port_max),
                ..defaults
            },
            shards,
            ring: relay_ring_config(),
            io: match self.io {
                None | Some(IoDriver::Auto) => None,
                Some(IoDriver::IoUring) => Some(Backend::IoUring),
                Some(IoDriver::Mmsg) => Some(Backend::Mmsg),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "interface = \"192.0.2.10\"\nlisten-ng = \"127.0.0.1:2223\"\n\
                        port-min = 31000\nport-max = 31999\ntimeout = 30\ncores = 2\n\
                        listen-http = \"127.0.0.1:9900\"\nio = \"mmsg\"\n";

    #[test]
    fn the_file_uses_the_option_names() -> Result<(), ConfigError> {
        let options = Options::from_toml(FILE, "media.toml")?;
        let config = options.relay_config()?;
        assert_eq!(config.sessions.advertised_address.to_string(), "192.0.2.10");
        assert_eq!(
            (config.sessions.port_min, config.sessions.port_max),
            (31_000, 31_999)
        );
        assert_eq!(config.sessions.timeout, Duration::from_secs(30));
        assert_eq!(
            config.sessions.delete_delay,
            SessionConfig::default().delete_delay
        );
        assert_eq!(config.shards, 2);
        assert_eq!(config.listen_http.map(|a| a.port()), Some(9_900));
        assert_eq!(config.io, Some(Backend::Mmsg));
        Ok(())
    }

    #[test]
    fn the_command_line_wins_over_the_file() -> Result<(), ConfigError> {
        let file = Options::from_toml(FILE, "media.toml")?;
        let cli = Options::try_parse_from(["media", "--port-min", "32000", "--timeout", "5"])
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let config = file.overlaid_by(cli).relay_config()?;
        assert_eq!(
            (config.sessions.port_min, config.sessions.port_max),
            (32_000, 31_999)
        );
        assert_eq!(config.sessions.timeout, Duration::from_secs(5));
        assert_eq!(config.shards, 2);
        Ok(())
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let unknown = Options::from_toml("interface = \"127.0.0.1\"\nport-mni = 1\n", "m.toml");
        assert!(
            matches!(&unknown, Err(ConfigError::Parse { reason, .. }) if reason.contains("port-mni"))
        );
        let bad_type = Options::from_toml("port-min = \"high\"\n", "m.toml");
        assert!(matches!(bad_type, Err(ConfigError::Parse { .. })));
        let bad_addr = Options::from_toml("interface = \"not-an-ip\"\n", "m.toml");
        assert!(matches!(bad_addr, Err(ConfigError::Parse { .. })));
        let missing = Options::from_toml("", "m.toml").and_then(|o| o.relay_config());
        assert_eq!(missing.err(), Some(ConfigError::Missing("interface")));
    }

    #[test]
    fn max_sessions_is_shared_over_the_cores() -> Result<(), ConfigError> {
        let options = Options {
            interface: Some(IpAddr::from([127, 0, 0, 1])),
            max_sessions: Some(1_000),
            cores: Some(2),
            ..Options::default()
        };
        assert_eq!(options.relay_config()?.sessions.max_calls, 625);
        Ok(())
    }
}
