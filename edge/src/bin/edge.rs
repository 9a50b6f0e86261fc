//! The `edge` command. Without a subcommand it runs the proxy with the
//! configuration from `--config FILE` (defaults without it) and the flags over it;
//! `edge check` parses SIP messages from files with the codec a proxy uses and
//! says what it would do.

use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use edge::config::{Config, ListenAddr, Overrides, DEFAULT_CONFIG_TOML};
use edge::sip::{Message, ParseLimits};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    version,
    about = "Carrier SIP edge",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

/// Flags of the proxy itself (no subcommand).
#[derive(Args)]
struct RunArgs {
    /// Configuration file [default: ./edge.toml if present, else built-in defaults].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the default configuration as commented TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Listen address, `udp:IP:PORT` or `udp:[IPv6]:PORT`; repeat for more.
    /// Replaces `sip.listen` of the file.
    #[arg(long, value_name = "ADDR")]
    listen: Vec<ListenAddr>,
    /// Where initial requests go, a `sip:` URI with an IP host; replaces `sip.next_hop`.
    #[arg(long, value_name = "URI")]
    next_hop: Option<String>,
    /// A Kamailio `dispatcher.list` to route initial requests by (re-read on
    /// SIGHUP); replaces `dispatcher.list` and inline destinations of the file.
    #[arg(long, value_name = "FILE")]
    dispatcher_list: Option<PathBuf>,
    /// Run on the first N cores (0..N); replaces `runtime.cores`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    cores: Option<u32>,
    /// Serve JSON-RPC 2.0 over HTTP (POST /RPC) on IP:PORT; replaces `rpc.listen`.
    /// Off loopback it needs `rpc.token` in the file.
    #[arg(long, value_name = "ADDR")]
    rpc: Option<std::net::SocketAddr>,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and validate SIP messages, one per file, as if each arrived in one UDP
    /// datagram; print the verdict. Exits 1 if any message is rejected.
    Check {
        /// Files holding one message each, in wire format.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check { files }) => check_files(files),
        None => run(cli.run),
    }
}

/// Loads the configuration, starts logging and runs the proxy. Exits 2 on a
/// configuration error, 1 if the runtime fails.
fn run(args: RunArgs) -> ExitCode {
    if args.print_config {
        print!("{DEFAULT_CONFIG_TOML}");
        return ExitCode::SUCCESS;
    }
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&config.log_level);
    tracing::info!(
        listen = ?config.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
        next_hop = config.next_hop.as_deref().unwrap_or("none"),
        dispatcher = ?config.dispatcher.source_name(),
        cores = ?config.cores,
        "edge starting"
    );
    match edge::runtime::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(args: &RunArgs) -> Result<Config, edge::config::ConfigError> {
    let mut config = Config::load_or_default(args.config.as_deref())?;
    config.apply_overrides(Overrides {
        listen: args.listen.clone(),
        next_hop: args.next_hop.clone(),
        cores: args.cores.map(|n| n as usize),
        dispatcher_list: args.dispatcher_list.clone(),
        rpc: args.rpc,
    })?;
    Ok(config)
}

/// Logs to stderr, filtered by `RUST_LOG` if set (and valid), else by the
/// configured `log_level`.
fn init_tracing(log_level: &str) {
    let from_env = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => match EnvFilter::try_new(&v) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("edge: ignoring RUST_LOG={v:?}: {e}");
                None
            }
        },
        _ => None,
    };
    // log_level was validated when the configuration was loaded.
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn check_files(files: Vec<PathBuf>) -> ExitCode {
    let mut all_ok = true;
    for path in files {
        match std::fs::read(&path) {
            Ok(data) => all_ok &= check(&path, Bytes::from(data)),
            Err(e) => {
                eprintln!("{}: cannot read: {e}", path.display());
                all_ok = false;
            }
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints `path: accepted ...` or `path: rejected <status> <reason>`.
fn check(path: &std::path::Path, data: Bytes) -> bool {
    let verdict = Message::parse_datagram(data, &ParseLimits::datagram())
        .and_then(|m| m.validate().map(|()| m));
    match verdict {
        Ok(m) => {
            let what = match (m.method_name(), m.status_code()) {
                (Some(method), _) => String::from_utf8_lossy(method).into_owned(),
                (None, Some(code)) => format!("response {code}"),
                (None, None) => String::new(),
            };
            println!(
                "{}: accepted {what}, {} headers, {} body bytes, Call-ID {}",
                path.display(),
                m.header_count(),
                m.body().len(),
                String::from_utf8_lossy(m.call_id())
            );
            true
        }
        Err(e) => {
            println!("{}: rejected {} {e}", path.display(), e.status_code());
            false
        }
    }
}
