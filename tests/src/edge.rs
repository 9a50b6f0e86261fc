//! The workspace's `edge` binary as a test peer: a builder for its command
//! line, a launcher that owns the process, and parsers for what it logs.
//!
//! ```no_run
//! use std::time::Duration;
//! use edge_e2e::edge::Edge;
//! # let uas_addr: std::net::SocketAddr = "127.0.0.1:5070".parse().unwrap();
//! let edge = Edge::proxy_to(uas_addr)
//!     .cores(2)
//!     .shutdown_grace(Duration::from_secs(3))
//!     .spawn()
//!     .unwrap();
//! // send calls to edge.addr() ...
//! let exit = edge.stop(Duration::from_secs(10));
//! assert!(exit.success(), "{exit}");
//! let counters = exit.shard_counters();
//! ```
//!
//! Like Kamailio's launcher ([`crate::kamailio`]): the process is wrapped in
//! coreutils `timeout` (so it stops by itself even if the test process dies;
//! `timeout` passes a SIGTERM on to `edge` and exits with its status), runs
//! in its own process group with its log (stderr) and config file in a
//! scratch directory, and is killed when the handle is dropped. `spawn`
//! returns once `edge` answers an OPTIONS ping with 200; `stop` sends SIGTERM
//! and waits, with a bound, for the graceful exit.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::edge_binary;
use crate::kamailio::options_ping;
use crate::ports::{free_tcp_port, free_udp_port, loopback};
use crate::process::{read_tail, wait_for_200, NotUp, OwnedProcess, StartError, TempDir};

/// `edge`'s own default for `runtime.shutdown_grace_ms` (64*T1).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_millis(32_000);

/// Builder for one `edge` proxy on 127.0.0.1.
#[derive(Clone, Debug)]
pub struct Edge {
    binary: Option<PathBuf>,
    port: Option<u16>,
    next_hop: Option<String>,
    cores: Option<u32>,
    shutdown_grace: Option<Duration>,
    config_toml: Option<String>,
    log_filter: Option<String>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    ready_timeout: Duration,
    max_lifetime: Duration,
    rpc: bool,
}

impl Default for Edge {
    fn default() -> Self {
        Self::new()
    }
}

impl Edge {
    /// An `edge` with no next hop (initial requests get 503), one core.
    pub fn new() -> Self {
        Self {
            binary: None,
            port: None,
            next_hop: None,
            cores: Some(1),
            shutdown_grace: None,
            config_toml: None,
            log_filter: Some("info".into()),
            args: Vec::new(),
            env: Vec::new(),
            ready_timeout: Duration::from_secs(10),
            max_lifetime: Duration::from_secs(300),
            rpc: false,
        }
    }

    /// An `edge` forwarding initial requests to `next_hop` (`--next-hop sip:IP:PORT`).
    pub fn proxy_to(next_hop: SocketAddr) -> Self {
        Self::new().next_hop(next_hop)
    }

    /// The binary to run (default: [`edge_binary`], built in the test's profile).
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// UDP port on 127.0.0.1 to listen on (default: a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// `--next-hop sip:IP:PORT`.
    pub fn next_hop(mut self, addr: SocketAddr) -> Self {
        self.next_hop = Some(format!("sip:{addr}"));
        self
    }

    /// `--next-hop URI`, as written.
    pub fn next_hop_uri(mut self, uri: &str) -> Self {
        self.next_hop = Some(uri.to_owned());
        self
    }

    /// `--dispatcher-list FILE`: route initial requests with the dispatcher
    /// over this Kamailio `dispatcher.list` (settings from [`Edge::config_toml`]).
    pub fn dispatcher_list(mut self, path: impl Into<PathBuf>) -> Self {
        self.args.push("--dispatcher-list".into());
        self.args.push(path.into().into_os_string());
        self
    }

    /// `--rpc 127.0.0.1:PORT` on a free TCP port: the JSON-RPC server
    /// ([`EdgeProcess::rpc_addr`]; a token comes with [`Edge::config_toml`]).
    pub fn rpc(mut self) -> Self {
        self.rpc = true;
        self
    }

    /// `--cores N` (default 1); `None` leaves it to the config (all cores).
    pub fn cores(mut self, n: impl Into<Option<u32>>) -> Self {
        self.cores = n.into();
        self
    }

    /// `runtime.shutdown_grace_ms` in a generated config file (default: the
    /// binary's own, [`DEFAULT_SHUTDOWN_GRACE`]). Not with [`Edge::config_toml`].
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = Some(grace);
        self
    }

    /// A whole config file (`--config`), written to the scratch directory;
    /// the flags (`--listen`, `--next-hop`, `--cores`) override it.
    pub fn config_toml(mut self, text: &str) -> Self {
        self.config_toml = Some(text.to_owned());
        self
    }

    /// `RUST_LOG` (default `info`, which logs the exit counters); `None`
    /// leaves the variable as inherited.
    pub fn log_filter(mut self, filter: impl Into<Option<String>>) -> Self {
        self.log_filter = filter.into();
        self
    }

    /// Any other argument, appended as is.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// An environment variable for the process.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// How long `edge` gets to answer its first OPTIONS with 200 (default 10 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// After this long `edge` is terminated whatever happens (default 300 s):
    /// the bound for a test process that dies without dropping the handle.
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// Starts `edge` and waits until it answers an OPTIONS ping with 200.
    pub fn spawn(self) -> Result<EdgeProcess, EdgeError> {
        if self.shutdown_grace.is_some() && self.config_toml.is_some() {
            return Err(usage(
                "shutdown_grace and config_toml together: put shutdown_grace_ms in the TOML".into(),
            ));
        }
        let binary = self.binary.clone().unwrap_or_else(edge_binary);
        if !binary.is_file() {
            return Err(usage(format!("no binary {}", binary.display())));
        }
        let dir = TempDir::new("edge").map_err(|e| StartError::io("scratch dir", e))?;
        let port = self.port.unwrap_or_else(free_udp_port);
        let addr = loopback(port);

        let config_text = match (&self.config_toml, self.shutdown_grace) {
            (Some(text), _) => Some(text.clone()),
            (None, Some(grace)) => Some(format!(
                "[runtime]\nshutdown_grace_ms = {}\n",
                grace.as_millis()
            )),
            (None, None) => None,
        };
        let config_file = match config_text {
            Some(text) => {
                let path = dir.join("edge.toml");
                fs::write(&path, text).map_err(|e| StartError::io("writing edge.toml", e))?;
                Some(path)
            }
            None => None,
        };
        let grace = self.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE);

        let log = dir.join("edge.log");
        let log_file = File::create(&log).map_err(|e| StartError::io("creating the log", e))?;
        let stdout = dir.join("stdout.log");
        let stdout_file =
            File::create(&stdout).map_err(|e| StartError::io("creating stdout.log", e))?;

        // timeout passes our SIGTERM on; its own SIGKILL comes only after
        // the edge's grace period and a margin.
        let kill_after = grace + Duration::from_secs(10);
        let mut args: Vec<OsString> = vec![
            format!("--kill-after={}s", kill_after.as_secs().max(1)).into(),
            format!("{}s", self.max_lifetime.as_secs().max(1)).into(),
            binary.clone().into_os_string(),
            "--listen".into(),
            format!("udp:{addr}").into(),
        ];
        if let Some(hop) = &self.next_hop {
            args.push("--next-hop".into());
            args.push(hop.into());
        }
        if let Some(n) = self.cores {
            args.push("--cores".into());
            args.push(n.to_string().into());
        }
        let rpc_addr = self.rpc.then(|| loopback(free_tcp_port()));
        if let Some(rpc) = rpc_addr {
            args.push("--rpc".into());
            args.push(rpc.to_string().into());
        }
        if let Some(path) = &config_file {
            args.push("--config".into());
            args.push(path.clone().into_os_string());
        }
        args.extend(self.args.iter().cloned());
        let command_line = std::iter::once("timeout".to_owned())
            .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ");

        let mut command = Command::new("timeout");
        command
            .args(&args)
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .stdout(stdout_file)
            .stderr(log_file);
        if let Some(filter) = &self.log_filter {
            command.env("RUST_LOG", filter);
        }
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let process = OwnedProcess::spawn("edge", &mut command)
            .map_err(|e| StartError::io("spawning edge", e))?;
        let mut edge = EdgeProcess {
            process,
            addr,
            rpc_addr,
            grace,
            log,
            command_line,
            dir,
            terminated_at: None,
        };
        edge.wait_ready(self.ready_timeout)?;
        Ok(edge)
    }
}

/// A running `edge`. Dropping it kills it (SIGKILL to its process group).
#[derive(Debug)]
pub struct EdgeProcess {
    process: OwnedProcess,
    addr: SocketAddr,
    rpc_addr: Option<SocketAddr>,
    grace: Duration,
    log: PathBuf,
    command_line: String,
    dir: TempDir,
    terminated_at: Option<Instant>,
}

impl EdgeProcess {
    /// Where it listens (UDP, 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where its JSON-RPC server listens (TCP), if started with [`Edge::rpc`].
    pub fn rpc_addr(&self) -> Option<SocketAddr> {
        self.rpc_addr
    }

    /// Its UDP port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Pid of the process group leader (the `timeout` wrapper).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The shutdown grace period it runs with.
    pub fn shutdown_grace(&self) -> Duration {
        self.grace
    }

    /// The scratch directory (log, config file).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The log (stderr) so far, at most its last 4 MiB.
    pub fn log(&self) -> String {
        read_tail(&self.log, 4 << 20)
    }

    /// The command line, for diagnostics.
    pub fn command_line(&self) -> &str {
        &self.command_line
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        self.process.try_status().is_none()
    }

    /// Sends one OPTIONS to it and returns the status line of the answer.
    pub fn options_ping(&self, timeout: Duration) -> io::Result<String> {
        options_ping(self.addr, timeout)
    }

    /// Sends SIGHUP (re-read the dispatcher list) and returns at once. The
    /// signal goes to `edge` itself, not to its `timeout` wrapper (which
    /// would pass a SIGHUP on and exit).
    pub fn reload(&self) -> io::Result<()> {
        let status = Command::new("pkill")
            .args(["-HUP", "-P", &self.process.pid().to_string()])
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("pkill -HUP -P: {status}")))
        }
    }

    /// Waits, at most `bound`, until the log holds a line containing every
    /// one of `parts`; returns that line.
    pub fn wait_for_log(&self, parts: &[&str], bound: Duration) -> Option<String> {
        let deadline = Instant::now() + bound;
        loop {
            let log = strip_ansi(&self.log());
            if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                return Some(line.to_owned());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many log lines so far contain every one of `parts`.
    pub fn count_log_lines(&self, parts: &[&str]) -> usize {
        count_lines(&strip_ansi(&self.log()), parts)
    }

    /// Waits, at most `bound`, until at least `count` log lines contain
    /// every one of `parts` (e.g. the n-th `dispatcher sets reloaded` of
    /// every shard); returns the number seen, which is below `count` on
    /// timeout.
    pub fn wait_for_log_count(&self, parts: &[&str], count: usize, bound: Duration) -> usize {
        let deadline = Instant::now() + bound;
        loop {
            let seen = self.count_log_lines(parts);
            if seen >= count || Instant::now() >= deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM (graceful shutdown) and returns at once.
    pub fn terminate(&mut self) -> io::Result<()> {
        self.terminated_at.get_or_insert_with(Instant::now);
        self.process.signal("TERM")
    }

    /// Waits, at most `bound`, for the process to exit; `None` if it still
    /// runs (it is left running).
    pub fn wait_exit(&mut self, bound: Duration) -> Option<ExitStatus> {
        self.process.wait_until(Instant::now() + bound)
    }

    /// SIGTERM (unless [`EdgeProcess::terminate`] sent it already), then waits
    /// at most `bound` for the exit; past it the group is killed and
    /// [`EdgeExit::exited_in_time`] is false. Returns the status and the log.
    pub fn stop(mut self, bound: Duration) -> EdgeExit {
        if self.terminated_at.is_none() {
            let _ = self.terminate();
        }
        let since = self.terminated_at.unwrap_or_else(Instant::now);
        let status = self.process.wait_until(since + bound);
        let after = since.elapsed();
        let exited_in_time = status.is_some();
        let status = if exited_in_time {
            status
        } else {
            self.process.stop(Duration::ZERO)
        };
        EdgeExit {
            status,
            exited_in_time,
            after_sigterm: after,
            log: self.log(),
            command_line: self.command_line.clone(),
        }
    }

    /// [`EdgeProcess::stop`], then panics (a failed test) unless the edge
    /// exited 0 in time with no ERROR line; returns the log.
    pub fn stop_cleanly(self, bound: Duration) -> String {
        let exit = self.stop(bound);
        assert!(exit.success(), "{exit}");
        let errors = exit.error_lines();
        assert!(errors.is_empty(), "ERROR lines:\n{}", errors.join("\n"));
        exit.log
    }

    /// An `edgectl` command aimed at this edge's RPC server (`--rpc`), with
    /// `EDGE_RPC` and `EDGE_RPC_TOKEN` cleared so the caller's environment
    /// cannot redirect it.
    pub fn edgectl(&self) -> Command {
        let mut cmd = Command::new(edgectl_binary());
        if let Some(rpc) = self.rpc_addr {
            cmd.arg("--rpc").arg(rpc.to_string());
        }
        cmd.env_remove("EDGE_RPC").env_remove("EDGE_RPC_TOKEN");
        cmd
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), EdgeError> {
        let addr = self.addr;
        // each ping waits up to 100 ms for its answer: the pacing
        let up = wait_for_200(&mut self.process, timeout, || {
            options_ping(addr, Duration::from_millis(100))
        });
        up.map_err(|e| match e {
            NotUp::Exited(status) => StartError::Exited {
                peer: "edge",
                status,
                diagnostics: self.diagnostics(),
            },
            NotUp::NoAnswer(last) => StartError::NotReady {
                peer: "edge",
                last,
                diagnostics: self.diagnostics(),
            },
        })
    }

    /// Command line and the end of the log.
    pub fn diagnostics(&self) -> String {
        format!(
            "command: {}\n--- edge log:\n{}",
            self.command_line,
            read_tail(&self.log, 8000).trim_end()
        )
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        // SIGTERM and SIGKILL to the group at once: no graceful wait.
        self.process.stop(Duration::ZERO);
    }
}

/// How an `edge` ended after [`EdgeProcess::stop`].
#[derive(Debug)]
pub struct EdgeExit {
    /// The exit status (`timeout` passes on `edge`'s); `None` if even the
    /// SIGKILL did not end it.
    pub status: Option<ExitStatus>,
    /// Whether it exited by itself within the bound after SIGTERM.
    pub exited_in_time: bool,
    /// Time from SIGTERM to the moment the exit was seen (or to the bound):
    /// call [`EdgeProcess::stop`] before the exit is due for a precise figure.
    pub after_sigterm: Duration,
    /// The whole log (stderr).
    pub log: String,
    /// The command line.
    pub command_line: String,
}

impl EdgeExit {
    /// Exited by itself, in time, with status 0.
    pub fn success(&self) -> bool {
        self.exited_in_time && self.status.is_some_and(|s| s.success())
    }

    /// The `shard exited` lines, parsed, in shard order.
    pub fn shard_counters(&self) -> Vec<ShardCounters> {
        parse_shard_counters(&self.log)
    }

    /// Log lines at level ERROR.
    pub fn error_lines(&self) -> Vec<&str> {
        lines_at_level(&self.log, "ERROR")
    }

    /// Log lines at level WARN.
    pub fn warn_lines(&self) -> Vec<&str> {
        lines_at_level(&self.log, "WARN")
    }
}

impl fmt::Display for EdgeExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "edge: status {:?}, {} {:.2?} after SIGTERM",
            self.status,
            if self.exited_in_time {
                "exited"
            } else {
                "still running (killed)"
            },
            self.after_sigterm
        )?;
        writeln!(f, "command: {}", self.command_line)?;
        let text = strip_ansi(&self.log);
        let start = text.len().saturating_sub(8000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        write!(f, "--- edge log:\n{}", &text[start..])
    }
}

/// The counters one shard logs when it exits (`shard exited shard=N
/// counters=ShellCounters { handoffs_out: .., .. }`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardCounters {
    /// The shard index.
    pub shard: usize,
    /// Datagrams handed to another shard (owner of their Call-ID).
    pub handoffs_out: u64,
    /// Datagrams received from other shards.
    pub handoffs_in: u64,
    /// Handoffs dropped because the peer's queue was full.
    pub handoff_drops: u64,
    /// Failed sends.
    pub send_drops: u64,
    /// Failed receives.
    pub ring_errors: u64,
    /// Every `name: number` field of the struct, by name.
    pub raw: BTreeMap<String, u64>,
}

/// Parses every `shard exited` line of an `edge` log, sorted by shard.
/// Colour escapes (if the log has any) are ignored.
pub fn parse_shard_counters(log: &str) -> Vec<ShardCounters> {
    let text = strip_ansi(log);
    let mut out: Vec<ShardCounters> = text
        .lines()
        .filter(|l| l.contains("shard exited"))
        .filter_map(parse_counters_line)
        .collect();
    out.sort_by_key(|c| c.shard);
    out
}

fn parse_counters_line(line: &str) -> Option<ShardCounters> {
    let shard = field_after(line, "shard=")?.parse().ok()?;
    let open = line.find('{')?;
    let close = line[open..].find('}')? + open;
    let raw: BTreeMap<String, u64> = line[open + 1..close]
        .split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once(':')?;
            Some((k.trim().to_owned(), v.trim().parse().ok()?))
        })
        .collect();
    let get = |k: &str| raw.get(k).copied().unwrap_or(0);
    Some(ShardCounters {
        shard,
        handoffs_out: get("handoffs_out"),
        handoffs_in: get("handoffs_in"),
        handoff_drops: get("handoff_drops"),
        send_drops: get("send_drops"),
        ring_errors: get("ring_errors"),
        raw,
    })
}

/// The value of `key` (`shard=`) up to the next space, as a whole word.
fn field_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(i) = line[from..].find(key) {
        let at = from + i;
        let word_start = at == 0 || line.as_bytes()[at - 1] == b' ';
        if word_start {
            let rest = &line[at + key.len()..];
            let end = rest.find([' ', ',']).unwrap_or(rest.len());
            return Some(&rest[..end]);
        }
        from = at + key.len();
    }
    None
}

/// How many lines of `log` contain every one of `parts`.
pub fn count_lines(log: &str, parts: &[&str]) -> usize {
    log.lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .count()
}

/// Lines whose level (the tracing `fmt` layout: time, level, target) is `level`.
pub fn lines_at_level<'a>(log: &'a str, level: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| {
            // tolerate colour codes around the level
            strip_ansi(l).split_whitespace().nth(1) == Some(level)
        })
        .collect()
}

/// The text without ANSI CSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Why edge could not be started.
pub type EdgeError = StartError;

fn usage(message: String) -> EdgeError {
    StartError::Usage {
        peer: "edge",
        message,
    }
}

/// Writes `text` as `dispatcher.list` in `dir` and returns its path.
pub fn write_dispatcher_list(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("dispatcher.list");
    std::fs::write(&path, text).expect("the test directory is writable");
    path
}

/// Path to the workspace's `edgectl` binary (next to `edge`), built in the
/// profile of the running test (cargo builds it only if it is out of date).
pub fn edgectl_binary() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let edge = edge_binary();
        let release = edge
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "-p", "edge", "--bin", "edgectl"]);
        if release {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building edge/edgectl failed");
        edge.with_file_name("edgectl")
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
2026-11-30T09:43:19.941691Z  INFO edge::runtime::shard: stopping: new calls get 503 shard=1
2026-11-30T09:43:19.950548Z  INFO edge::runtime: shard exited shard=1 counters=ShellCounters { handoffs_out: 7, handoffs_in: 1, handoff_drops: 0, send_drops: 0, ring_errors: 2 }
2026-11-30T09:43:19.950548Z ERROR edge::runtime::shard: could not join the shard mesh shard=0
\u{1b}[2m2026-11-30T09:43:19.950604Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \u{1b}[2medge::runtime\u{1b}[0m\u{1b}[2m:\u{1b}[0m shard exited \u{1b}[3mshard\u{1b}[0m\u{1b}[2m=\u{1b}[0m0 \u{1b}[3mcounters\u{1b}[0m\u{1b}[2m=\u{1b}[0mShellCounters { handoffs_out: 1, handoffs_in: 7, handoff_drops: 3, send_drops: 0, ring_errors: 0 }
";

    #[test]
    fn parses_exit_counters_plain_and_coloured() {
        let c = parse_shard_counters(LOG);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].shard, 0);
        assert_eq!(
            (c[0].handoffs_out, c[0].handoffs_in, c[0].handoff_drops),
            (1, 7, 3)
        );
        assert_eq!(c[1].shard, 1);
        assert_eq!((c[1].handoffs_out, c[1].handoffs_in), (7, 1));
        assert_eq!(c[1].ring_errors, 2);
        assert_eq!(c[1].raw.len(), 5);
    }

    #[test]
    fn finds_lines_by_level() {
        assert_eq!(lines_at_level(LOG, "ERROR").len(), 1);
        assert_eq!(lines_at_level(LOG, "INFO").len(), 3);
        assert!(lines_at_level(LOG, "WARN").is_empty());
    }

    #[test]
    fn counts_lines_with_every_part() {
        assert_eq!(count_lines(LOG, &["shard exited"]), 2);
        assert_eq!(count_lines(LOG, &["shard exited", "shard=1"]), 1);
        assert_eq!(count_lines(LOG, &["shard exited", "nowhere"]), 0);
    }

    #[test]
    fn strips_colour() {
        assert_eq!(strip_ansi("\u{1b}[2ma\u{1b}[0m=b"), "a=b");
    }
}
