//! `bench run`: the all-in-one job. Starts `edge` with a generated
//! configuration and `bench uas` backends on loopback, ramps, prints the
//! limit and the latency table, and stops everything it started, also when
//! the run is interrupted (the children are killed when their guard drops).

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (and reaped) when dropped.
pub struct ChildGuard {
    name: String,
    child: Child,
}

impl ChildGuard {
    /// Starts `command` as `name`, its output to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<ChildGuard, String> {
        let file = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({command:?}): {e}"))?;
        eprintln!(
            "bench run: started {name} (pid {}), log {}",
            child.id(),
            log.display()
        );
        Ok(ChildGuard {
            name: name.to_string(),
            child,
        })
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(mut self, grace: Duration) {
        self.terminate(grace);
    }

    fn terminate(&mut self, grace: Duration) {
        if !self.running() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        let deadline = Instant::now() + grace;
        while self.running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.running() {
            tracing::warn!(name = %self.name, "did not stop: killed");
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(2));
    }
}

/// A UDP port free on 127.0.0.1 now (the kernel's choice).
pub fn free_port() -> Result<u16, String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    socket
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// Sends OPTIONS to `addr` until a 200 comes back or `bound` passes.
pub fn wait_for_options_200(addr: SocketAddr, bound: Duration) -> Result<(), String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + bound;
    for n in 0u32.. {
        let options = format!(
            "OPTIONS sip:{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-ready-{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:bench@{local}>;tag=ready\r\nTo: <sip:{addr}>\r\n\
             Call-ID: ready-{n}@{local}\r\nCSeq: {} OPTIONS\r\nContent-Length: 0\r\n\r\n",
            n + 1
        );
        let _ = socket.send_to(options.as_bytes(), addr);
        let mut buf = [0u8; 2048];
        if let Ok((len, _)) = socket.recv_from(&mut buf) {
            if buf[..len].starts_with(b"SIP/2.0 200") {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            break;
        }
    }
    Err(format!(
        "{addr} did not answer OPTIONS with 200 within {bound:?}"
    ))
}

/// The `edge` binary: `explicit`, or the one beside this executable.
pub fn edge_binary(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let edge = me.with_file_name("edge");
    if edge.exists() {
        return Ok(edge);
    }
    Err(format!(
        "no edge binary at {}: build it (cargo build --release -p edge) or pass --edge PATH",
        edge.display()
    ))
}

/// Transactions per shard in the generated configuration. Each call leaves
/// its BYE's server transaction for Timer J (64*T1, 32 s) and client
/// transaction for Timer K (T4, 5 s): the table must hold about 37 per call/s
/// so that the CPU, not the table, limits a ramp (edge's default, 400,000,
/// holds 10,800 calls/s).
pub const EDGE_TRANSACTIONS_PER_SHARD: usize = 2_000_000;

/// The generated `edge.toml`: one listen address, the dispatcher over the
/// backends (round robin, no probes), shards on `cores`, a transaction
/// table sized for the rates a ramp reaches.
pub fn edge_config(listen: SocketAddr, list: &Path, cores: &[usize]) -> String {
    let cores: Vec<String> = cores.iter().map(ToString::to_string).collect();
    format!(
        "log_level = \"warn\"\n\n[sip]\nlisten = [\"udp:{listen}\"]\n\n[runtime]\ncores = [{}]\n\
         shutdown_grace_ms = 2000\n\n[transaction]\nmax_transactions_per_shard = {EDGE_TRANSACTIONS_PER_SHARD}\n\n\
         [dispatcher]\nlist = \"{}\"\nalgorithm = 4\n\n[dispatcher.health]\nprobe_all = false\n",
        cores.join(", "),
        list.display()
    )
}

/// The dispatcher list of `backends`, set 1.
pub fn dispatcher_list(backends: &[SocketAddr]) -> String {
    backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("1 sip:{b} 0 0 duid=uas-{i}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_config_is_accepted_by_the_edge() {
        let listen: SocketAddr = "127.0.0.1:5999".parse().unwrap_or_else(|_| unreachable!());
        let text = edge_config(listen, Path::new("/tmp/d.list"), &[0]);
        let config = edge::config::Config::from_toml_str(&text);
        assert!(config.is_ok(), "{config:?}\n{text}");
        let a: SocketAddr = "127.0.0.1:6000".parse().unwrap_or_else(|_| unreachable!());
        let b: SocketAddr = "127.0.0.1:6001".parse().unwrap_or_else(|_| unreachable!());
        let list = dispatcher_list(&[a, b]);
        let parsed = edge::dispatcher::parse_list(
            list.as_bytes(),
            "t",
            &edge::dispatcher::ListOptions::default(),
        );
        assert!(parsed.is_ok_and(|p| p.sets.destination_count() == 2));
    }
}
