//! Kamailio (Debian package `kamailio`) as a reference stateful proxy:
//! `tests/kamailio/proxy.cfg` run in the foreground on 127.0.0.1, forwarding
//! initial requests round-robin to the backends the test gives (dispatcher
//! set 1, algorithm 4), record-routing INVITEs, loose-routing in-dialog
//! requests and relaying CANCELs through tm.
//!
//! ```no_run
//! use edge_e2e::kamailio::Kamailio;
//! # let uas_addr: std::net::SocketAddr = "127.0.0.1:5070".parse().unwrap();
//! let proxy = Kamailio::proxy_to(uas_addr).spawn().unwrap();
//! // send calls to proxy.addr() ...
//! ```
//!
//! The process is wrapped in coreutils `timeout` (so it stops by itself
//! even if the test process dies), runs in its own process group with its
//! working, runtime and pid files in a scratch directory, and is stopped —
//! main process and workers — when the handle is dropped. `spawn` returns
//! once Kamailio answers an OPTIONS ping.

use std::fs::{self, File};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::ports::{free_udp_port, loopback, LOOPBACK};
use crate::process::{
    read_tail, wait_for_200, NotUp, OwnedProcess, StartError, TempDir, STOP_GRACE,
};
use crate::sipp::find_on_path;
use crate::workspace_root;

/// The Kamailio binary (Debian: /usr/sbin/kamailio).
pub const KAMAILIO_BINARY: &str = "kamailio";

/// Debian's module directory (the config's `mpath`).
pub const DEBIAN_MODULE_DIR: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules";

/// Whether the `kamailio` binary is installed.
pub fn kamailio_available() -> bool {
    find_on_path(KAMAILIO_BINARY).is_some()
}

/// Panics with a clear message when Kamailio is missing.
pub fn require_kamailio() {
    assert!(
        kamailio_available(),
        "`{KAMAILIO_BINARY}` is not installed: install the Debian package kamailio \
         (tests/run installs it: apt-get install -y kamailio)"
    );
}

/// The config template shipped with the tests.
pub fn default_config() -> PathBuf {
    workspace_root().join("tests/kamailio/proxy.cfg")
}

/// Builder for one Kamailio proxy.
#[derive(Clone, Debug)]
pub struct Kamailio {
    backends: Vec<SocketAddr>,
    port: Option<u16>,
    children: u32,
    shm_mb: u32,
    pkg_mb: u32,
    config: PathBuf,
    log_level: i32,
    defines: Vec<String>,
    ready_timeout: Duration,
    max_lifetime: Duration,
}

impl Kamailio {
    /// A proxy forwarding initial requests to one next hop.
    pub fn proxy_to(next_hop: SocketAddr) -> Self {
        Self::round_robin([next_hop])
    }

    /// A proxy spreading initial requests round-robin over `backends`
    /// (in-dialog requests follow their dialog).
    pub fn round_robin(backends: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self {
            backends: backends.into_iter().collect(),
            port: None,
            children: 2,
            shm_mb: 64,
            pkg_mb: 8,
            config: default_config(),
            log_level: 1,
            defines: Vec::new(),
            ready_timeout: Duration::from_secs(10),
            max_lifetime: Duration::from_secs(300),
        }
    }

    /// UDP port to listen on (default: a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// UDP worker processes (`-n`, default 2).
    pub fn children(mut self, n: u32) -> Self {
        self.children = n.max(1);
        self
    }

    /// Shared memory in MB (`-m`, default 64).
    pub fn shm_mb(mut self, mb: u32) -> Self {
        self.shm_mb = mb;
        self
    }

    /// Private memory per process in MB (`-M`, default 8).
    pub fn pkg_mb(mut self, mb: u32) -> Self {
        self.pkg_mb = mb;
        self
    }

    /// Another config file (default `tests/kamailio/proxy.cfg`).
    pub fn config(mut self, path: impl Into<PathBuf>) -> Self {
        self.config = path.into();
        self
    }

    /// Kamailio's `debug` level (default 1: errors and warnings; 3: debug).
    pub fn log_level(mut self, level: i32) -> Self {
        self.log_level = level;
        self
    }

    /// A config preprocessor define (`-A NAME` or `-A 'NAME=value'`).
    pub fn define(mut self, define: &str) -> Self {
        self.defines.push(define.to_owned());
        self
    }

    /// How long Kamailio gets to answer its first OPTIONS (default 10 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// After this long Kamailio is terminated whatever happens (default
    /// 300 s): the bound for a test process that dies without dropping
    /// the handle.
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// Writes the dispatcher list, starts Kamailio and waits until it
    /// answers an OPTIONS ping.
    pub fn spawn(self) -> Result<KamailioProcess, KamailioError> {
        if !kamailio_available() {
            return Err(StartError::NotInstalled {
                peer: "kamailio",
                package: "kamailio",
            });
        }
        if self.backends.is_empty() {
            return Err(usage("no backend".into()));
        }
        if !self.config.is_file() {
            return Err(usage(format!("no config file {}", self.config.display())));
        }
        let dir = TempDir::new("kamailio").map_err(|e| StartError::io("scratch dir", e))?;
        let port = self.port.unwrap_or_else(free_udp_port);
        let addr = loopback(port);

        let ds_list = dir.join("dispatcher.list");
        let list: String = self
            .backends
            .iter()
            .map(|b| format!("1 sip:{}:{};transport=udp\n", b.ip(), b.port()))
            .collect();
        fs::write(&ds_list, list).map_err(|e| StartError::io("writing dispatcher.list", e))?;

        let log = dir.join("kamailio.log");
        let log_file = File::create(&log).map_err(|e| StartError::io("creating the log", e))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| StartError::io("creating the log", e))?;

        let mut args: Vec<String> = vec![
            "--kill-after=5s".into(),
            format!("{}s", self.max_lifetime.as_secs().max(1)),
            KAMAILIO_BINARY.into(),
            "-DD".into(),
            "-E".into(),
            "-f".into(),
            self.config.display().to_string(),
            "-L".into(),
            DEBIAN_MODULE_DIR.into(),
            "-l".into(),
            format!("udp:{LOOPBACK}:{port}"),
            "-n".into(),
            self.children.to_string(),
            "-m".into(),
            self.shm_mb.to_string(),
            "-M".into(),
            self.pkg_mb.to_string(),
            "-w".into(),
            dir.path().display().to_string(),
            "-Y".into(),
            dir.path().display().to_string(),
            "-P".into(),
            dir.join("kamailio.pid").display().to_string(),
            "-a".into(),
            "no".into(),
            "-A".into(),
            format!("DS_LIST=\"{}\"", ds_list.display()),
            "-A".into(),
            format!("LOG_LEVEL={}", self.log_level),
        ];
        for d in &self.defines {
            args.push("-A".into());
            args.push(d.clone());
        }
        let command_line = format!("timeout {}", args.join(" "));
        let mut command = Command::new("timeout");
        command
            .args(&args)
            .current_dir(dir.path())
            .stdout(log_file)
            .stderr(log_err);
        let process = OwnedProcess::spawn("kamailio", &mut command)
            .map_err(|e| StartError::io("spawning kamailio", e))?;
        let mut kamailio = KamailioProcess {
            process,
            addr,
            backends: self.backends,
            log,
            command_line,
            dir,
        };
        kamailio.wait_ready(self.ready_timeout)?;
        Ok(kamailio)
    }
}

/// A running Kamailio. Dropping it stops it (main process and workers).
#[derive(Debug)]
pub struct KamailioProcess {
    process: OwnedProcess,
    addr: SocketAddr,
    backends: Vec<SocketAddr>,
    log: PathBuf,
    command_line: String,
    dir: TempDir,
}

impl KamailioProcess {
    /// Where it listens (UDP, 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its UDP port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The next hops, in dispatcher order.
    pub fn backends(&self) -> &[SocketAddr] {
        &self.backends
    }

    /// The scratch directory (config side files, pid file, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kamailio's log (stderr) so far.
    pub fn log(&self) -> String {
        read_tail(&self.log, 64 * 1024)
    }

    /// The command line, for diagnostics.
    pub fn command_line(&self) -> &str {
        &self.command_line
    }

    /// Whether the main process still runs.
    pub fn is_running(&mut self) -> bool {
        self.process.try_status().is_none()
    }

    /// Sends one OPTIONS to the proxy and returns the status line of the
    /// answer, or an error if none comes within `timeout`.
    pub fn options_ping(&self, timeout: Duration) -> io::Result<String> {
        options_ping(self.addr, timeout)
    }

    /// Stops Kamailio (SIGTERM to its group, SIGKILL after a grace period)
    /// and returns the exit status of the wrapper.
    pub fn stop(mut self) -> Option<ExitStatus> {
        self.process.stop(STOP_GRACE)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), KamailioError> {
        let addr = self.addr;
        // each ping waits up to 100 ms for its answer: the pacing
        let up = wait_for_200(&mut self.process, timeout, || {
            options_ping(addr, Duration::from_millis(100))
        });
        up.map_err(|e| match e {
            NotUp::Exited(status) => StartError::Exited {
                peer: "kamailio",
                status,
                diagnostics: self.diagnostics(),
            },
            NotUp::NoAnswer(last) => StartError::NotReady {
                peer: "kamailio",
                last,
                diagnostics: self.diagnostics(),
            },
        })
    }

    fn diagnostics(&self) -> String {
        format!(
            "command: {}\n--- kamailio log:\n{}",
            self.command_line,
            read_tail(&self.log, 8000).trim_end()
        )
    }
}

/// Sends an OPTIONS for `sip:<addr>` from a fresh UDP socket on 127.0.0.1
/// and returns the status line of the first answer.
pub fn options_ping(addr: SocketAddr, timeout: Duration) -> io::Result<String> {
    static SEQ: AtomicU64 = AtomicU64::new(1);
    let socket = UdpSocket::bind(loopback(0))?;
    socket.connect(addr)?;
    socket.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
    let local = socket.local_addr()?;
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let request = format!(
        "OPTIONS sip:{addr} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-e2e-ping-{pid}-{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:ping@{local}>;tag=ping{n}\r\n\
         To: <sip:{addr}>\r\n\
         Call-ID: ping-{pid}-{n}@{}\r\n\
         CSeq: {n} OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        local.ip()
    );
    socket.send(request.as_bytes())?;
    let mut buf = [0u8; 4096];
    let len = socket.recv(&mut buf)?;
    let text = String::from_utf8_lossy(&buf[..len]);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// Why kamailio could not be started.
pub type KamailioError = StartError;

fn usage(message: String) -> KamailioError {
    StartError::Usage {
        peer: "kamailio",
        message,
    }
}
