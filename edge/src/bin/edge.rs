//! The `edge` command. Until the proxy lands, it offers `edge check`: parse SIP
//! messages from files with the codec a proxy uses and say what it would do.

use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use edge::sip::{Message, ParseLimits};

#[derive(Parser)]
#[command(version, about = "Carrier SIP edge")]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    let Command::Check { files } = Cli::parse().command;
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
