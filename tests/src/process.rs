//! Child processes the tests own: each runs in its own process group, is
//! waited for by a thread (so a test waits on a signal, not on a sleep), and
//! is stopped — its whole group — when its guard is dropped, panics included.
//! Also a scratch directory that goes away with its guard.

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a process gets between SIGTERM and SIGKILL when it is stopped.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// A spawned process, leader of its own process group.
///
/// Dropping it stops the group (SIGTERM, then SIGKILL after [`STOP_GRACE`])
/// unless the leader has already exited; a SIGKILL to the group follows in
/// every case, so helpers the leader forked (Kamailio's workers) go too.
pub struct OwnedProcess {
    name: String,
    pid: u32,
    exited: Receiver<io::Result<ExitStatus>>,
    status: Option<ExitStatus>,
    group_reaped: bool,
}

impl OwnedProcess {
    /// Spawns `command` in a new process group, stdin from /dev/null.
    /// `name` labels the process in error messages.
    pub fn spawn(name: &str, command: &mut Command) -> io::Result<Self> {
        command.stdin(Stdio::null()).process_group(0);
        let mut child: Child = command
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {name}: {e}")))?;
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name(format!("wait-{name}-{pid}"))
            .spawn(move || {
                let _ = tx.send(child.wait());
            })?;
        Ok(Self {
            name: name.to_owned(),
            pid,
            exited: rx,
            status: None,
            group_reaped: false,
        })
    }

    /// Process id of the leader (also the process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The label given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The exit status, if the leader has exited; does not block.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            match self.exited.try_recv() {
                Ok(status) => self.status = Some(status.unwrap_or_else(|_| failed_status())),
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => self.status = Some(failed_status()),
            }
        }
        self.status
    }

    /// Waits for the leader to exit, at most until `deadline`. `None`: still
    /// running at the deadline.
    pub fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        if self.status.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.exited.recv_timeout(left) {
                Ok(status) => self.status = Some(status.unwrap_or_else(|_| failed_status())),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.status = Some(failed_status()),
            }
        }
        self.status
    }

    /// Sends `signal` (a name `kill -s` knows: "TERM", "USR1", ...) to the
    /// leader alone. No-op once the leader has exited.
    pub fn signal(&mut self, signal: &str) -> io::Result<()> {
        if self.try_status().is_some() {
            return Ok(());
        }
        kill(signal, &self.pid.to_string())
    }

    /// Stops the whole group: SIGTERM, up to `grace` for the leader to exit,
    /// then SIGKILL to whatever is left of the group. Returns the leader's
    /// exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.try_status().is_none() {
            let _ = kill("TERM", &format!("-{}", self.pid));
            self.wait_until(Instant::now() + grace);
        }
        self.reap_group()
    }

    fn reap_group(&mut self) -> Option<ExitStatus> {
        if !self.group_reaped {
            // ESRCH when the group is already empty: nothing to do.
            let _ = kill("KILL", &format!("-{}", self.pid));
            self.group_reaped = true;
            self.wait_until(Instant::now() + Duration::from_secs(5));
        }
        self.status
    }
}

impl Drop for OwnedProcess {
    fn drop(&mut self) {
        self.stop(STOP_GRACE);
    }
}

impl fmt::Debug for OwnedProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedProcess")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("status", &self.status)
            .finish()
    }
}

/// `kill -s SIGNAL -- TARGET` (a pid, or `-pgid` for a group).
fn kill(signal: &str, target: &str) -> io::Result<()> {
    let out = Command::new("kill")
        .args(["-s", signal, "--", target])
        .stdin(Stdio::null())
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "kill -s {signal} {target}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A status that reads as failure, for a leader whose wait() itself failed.
fn failed_status() -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    ExitStatus::from_raw(255 << 8)
}

/// A scratch directory under the system temp dir, removed on drop — but kept
/// (and its path printed) when the thread is panicking, for the post-mortem.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `$TMPDIR/edge-e2e-<prefix>-<pid>-<n>-<nanos>`.
    pub fn new(prefix: &str) -> io::Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "edge-e2e-{prefix}-{}-{n}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&path)?;
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path().join(name)`.
    pub fn join(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.path.join(name.as_ref())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("edge-e2e: kept {} for inspection", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Reads a file for a diagnostic: its text, or a note why there is none.
/// Long files are cut to their last `max` bytes.
pub fn read_tail(path: &Path, max: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            let text = String::from_utf8_lossy(&bytes[start..]).into_owned();
            if start > 0 {
                format!("[... {start} bytes cut ...]\n{text}")
            } else {
                text
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => "(none)".to_owned(),
        Err(e) => format!("<{}: {e}>", path.display()),
    }
}

/// Polls `condition` every `every` until it holds (true) or `deadline`
/// passes (false). For conditions nothing signals, like "a socket is bound".
pub fn poll_until(deadline: Instant, every: Duration, mut condition: impl FnMut() -> bool) -> bool {
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(every);
    }
}

/// Why a server peer (edge, Kamailio) could not be started. One type for
/// every launcher; `peer` names the program in the message.
#[derive(Debug)]
pub enum StartError {
    /// The program is not installed.
    NotInstalled {
        /// The program.
        peer: &'static str,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// The launcher was used wrongly.
    Usage {
        /// The program.
        peer: &'static str,
        /// What was wrong.
        message: String,
    },
    /// An I/O error of the harness.
    Io {
        /// What the harness was doing.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// The program exited during startup (bad config, port taken...).
    Exited {
        /// The program.
        peer: &'static str,
        /// Its exit status.
        status: ExitStatus,
        /// Command line and log.
        diagnostics: String,
    },
    /// The program did not answer OPTIONS with 200 in time.
    NotReady {
        /// The program.
        peer: &'static str,
        /// The last ping's outcome.
        last: String,
        /// Command line and log.
        diagnostics: String,
    },
}

impl StartError {
    /// An I/O error while doing `what`.
    pub fn io(what: &str, source: io::Error) -> Self {
        Self::Io {
            what: what.to_owned(),
            source,
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInstalled { peer, package } => write!(
                f,
                "`{peer}` is not installed: install the Debian package {package}"
            ),
            Self::Usage { peer, message } => write!(f, "{peer} harness misuse: {message}"),
            Self::Io { what, source } => write!(f, "{what}: {source}"),
            Self::Exited {
                peer,
                status,
                diagnostics,
            } => write!(f, "{peer} exited during startup ({status})\n{diagnostics}"),
            Self::NotReady {
                peer,
                last,
                diagnostics,
            } => write!(
                f,
                "{peer} did not answer OPTIONS with 200 in time (last: {last})\n{diagnostics}"
            ),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why a server did not come up.
#[derive(Debug)]
pub enum NotUp {
    /// It exited.
    Exited(ExitStatus),
    /// It did not answer 200 in time; the last ping's outcome.
    NoAnswer(String),
}

/// Calls `ping` (which waits at most about 100 ms for an answer) until it
/// returns a `SIP/2.0 200` status line, the process exits, or `timeout`
/// passes.
pub fn wait_for_200(
    process: &mut OwnedProcess,
    timeout: Duration,
    mut ping: impl FnMut() -> io::Result<String>,
) -> Result<(), NotUp> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = process.try_status() {
            return Err(NotUp::Exited(status));
        }
        match ping() {
            Ok(status) if status.starts_with("SIP/2.0 200") => return Ok(()),
            Ok(_) | Err(_) if Instant::now() < deadline => {
                // refused (not bound yet) comes back at once: don't spin
                thread::sleep(Duration::from_millis(10));
            }
            result => return Err(NotUp::NoAnswer(format!("{result:?}"))),
        }
    }
}
