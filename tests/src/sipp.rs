//! SIPp (Debian package `sip-tester`, binary `sipp`, 3.6.x) as a real peer:
//! a builder for its command line, a launcher that owns the child process,
//! and the parsed results of a run.
//!
//! ```no_run
//! use edge_e2e::sipp::{Sipp, Scenario};
//!
//! let uas = Sipp::uas(Scenario::builtin("uas")).calls(10).spawn().unwrap();
//! let uac = Sipp::uac(Scenario::builtin("uac"), uas.local_addr())
//!     .rate(10.0)
//!     .calls(10)
//!     .run()
//!     .unwrap();
//! uac.assert_calls_succeeded(10);
//! uas.wait().unwrap().assert_calls_succeeded(10);
//! ```
//!
//! Every SIPp gets `-timeout` (so it stops by itself even if the test
//! process dies) and `-nostdin`, runs in the foreground in its own process
//! group with its files (statistics, screen, errors) in a scratch directory,
//! and is killed if it outlives the harness deadline or its handle is
//! dropped. After a normal exit the final statistics (`-trace_stat`) and the
//! per-message counters of the scenario screen (`-trace_screen`) are parsed.

use std::collections::BTreeMap;
use std::env;
use std::error::Error;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::ports::{free_udp_port, udp_port_bound, LOOPBACK};
use crate::process::{poll_until, read_tail, OwnedProcess, TempDir};
use crate::workspace_root;

/// The SIPp binary, looked up on `PATH`.
pub const SIPP_BINARY: &str = "sipp";

/// How long a UAS gets to bind its port after start.
const BIND_TIMEOUT: Duration = Duration::from_secs(5);

/// SIPp's own global timeout when the test sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether `sipp` is on `PATH`.
pub fn sipp_available() -> bool {
    find_on_path(SIPP_BINARY).is_some()
}

/// Panics with a clear message when `sipp` is missing.
pub fn require_sipp() {
    assert!(
        sipp_available(),
        "`{SIPP_BINARY}` is not on PATH: install the Debian package sip-tester \
         (tests/run installs it: apt-get install -y sip-tester)"
    );
}

/// The version line of the installed SIPp, e.g. `SIPp v3.6.1-SCTP-PCAP-RTPSTREAM.`
pub fn sipp_version() -> Option<String> {
    let out = Command::new(SIPP_BINARY)
        .arg("-v")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("SIPp v"))
        .map(str::to_owned)
}

/// Path of a scenario in `tests/scenarios/` (`name` with or without `.xml`).
pub fn scenario_path(name: &str) -> PathBuf {
    let file = if name.ends_with(".xml") {
        name.to_owned()
    } else {
        format!("{name}.xml")
    };
    workspace_root().join("tests/scenarios").join(file)
}

pub(crate) fn find_on_path(binary: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(binary))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// What SIPp plays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// An embedded scenario (`-sn uac`, `-sn uas`, ...).
    BuiltIn(String),
    /// An XML scenario file (`-sf path`).
    File(PathBuf),
}

impl Scenario {
    /// `-sn name`.
    pub fn builtin(name: &str) -> Self {
        Self::BuiltIn(name.to_owned())
    }

    /// `-sf path`.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::File(path.into())
    }

    /// `-sf tests/scenarios/<name>.xml`.
    pub fn named(name: &str) -> Self {
        Self::File(scenario_path(name))
    }

    fn label(&self) -> String {
        match self {
            Self::BuiltIn(name) => name.clone(),
            Self::File(path) => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string()),
        }
    }
}

/// Which side SIPp plays: a UAC places calls to a remote address, a UAS
/// answers on its local port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Places calls (needs a remote address).
    Uac,
    /// Answers calls.
    Uas,
}

/// Builder for one SIPp run. Every option maps to one SIPp flag.
#[derive(Clone, Debug)]
pub struct Sipp {
    role: Role,
    scenario: Scenario,
    name: Option<String>,
    local_ip: IpAddr,
    local_port: Option<u16>,
    remote: Option<SocketAddr>,
    rsa: Option<SocketAddr>,
    service: Option<String>,
    rate: Option<f64>,
    rate_period: Option<Duration>,
    calls: Option<u64>,
    limit: Option<u64>,
    hold: Option<Duration>,
    lost_percent: Option<f64>,
    timeout: Duration,
    timeout_error: bool,
    max_retrans: Option<u32>,
    recv_timeout: Option<Duration>,
    trace_msg: bool,
    extra: Vec<OsString>,
    deadline: Option<Duration>,
}

impl Sipp {
    fn new(role: Role, scenario: Scenario, remote: Option<SocketAddr>) -> Self {
        Self {
            role,
            scenario,
            name: None,
            local_ip: IpAddr::V4(LOOPBACK),
            local_port: None,
            remote,
            rsa: None,
            service: None,
            rate: None,
            rate_period: None,
            calls: None,
            limit: None,
            hold: None,
            lost_percent: None,
            timeout: DEFAULT_TIMEOUT,
            timeout_error: true,
            max_retrans: None,
            recv_timeout: None,
            trace_msg: false,
            extra: Vec::new(),
            deadline: None,
        }
    }

    /// A UAC playing `scenario` towards `remote` (SIPp's `remote_host:port`).
    pub fn uac(scenario: Scenario, remote: SocketAddr) -> Self {
        Self::new(Role::Uac, scenario, Some(remote))
    }

    /// A UAS playing `scenario` on its local port.
    pub fn uas(scenario: Scenario) -> Self {
        Self::new(Role::Uas, scenario, None)
    }

    /// The test backend: `uas_basic_rr` on `port`, with `-aa` so SIPp
    /// answers the edge's OPTIONS probes (and INFO, NOTIFY, UPDATE) itself.
    pub fn backend(port: u16) -> Self {
        Self::uas(Scenario::named("uas_basic_rr"))
            .local_port(port)
            .arg("-aa")
    }

    /// `-sn uac` towards `remote`.
    pub fn builtin_uac(remote: SocketAddr) -> Self {
        Self::uac(Scenario::builtin("uac"), remote)
    }

    /// `-sn uas`.
    pub fn builtin_uas() -> Self {
        Self::uas(Scenario::builtin("uas"))
    }

    /// Label in diagnostics (default: role and scenario).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// `-i ip` (default 127.0.0.1).
    pub fn local_ip(mut self, ip: IpAddr) -> Self {
        self.local_ip = ip;
        self
    }

    /// `-p port` (default: a free port from [`crate::ports`]).
    pub fn local_port(mut self, port: u16) -> Self {
        self.local_port = Some(port);
        self
    }

    /// The remote `host:port` (first positional argument).
    pub fn remote(mut self, remote: SocketAddr) -> Self {
        self.remote = Some(remote);
        self
    }

    /// `-rsa host:port`: send to this address whatever the Request-URI says.
    pub fn rsa(mut self, addr: SocketAddr) -> Self {
        self.rsa = Some(addr);
        self
    }

    /// `-s service`: the user part of the Request-URI (`[service]`).
    pub fn service(mut self, service: &str) -> Self {
        self.service = Some(service.to_owned());
        self
    }

    /// `-r rate`: calls per rate period (default period 1 s).
    pub fn rate(mut self, calls_per_period: f64) -> Self {
        self.rate = Some(calls_per_period);
        self
    }

    /// `-rp ms`: the rate period.
    pub fn rate_period(mut self, period: Duration) -> Self {
        self.rate_period = Some(period);
        self
    }

    /// `-m calls`: stop after this many calls were processed.
    pub fn calls(mut self, calls: u64) -> Self {
        self.calls = Some(calls);
        self
    }

    /// `-l limit`: at most this many simultaneous calls.
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// `-d ms`: duration of the scenario's `<pause/>` (call hold time).
    pub fn hold(mut self, hold: Duration) -> Self {
        self.hold = Some(hold);
        self
    }

    /// `-lost pct`: drop this percentage of packets (sent and received).
    pub fn lost_percent(mut self, percent: f64) -> Self {
        self.lost_percent = Some(percent);
        self
    }

    /// `-timeout`: SIPp's global timeout (default [`DEFAULT_TIMEOUT`]); with
    /// [`Sipp::timeout_error`] (the default) reaching it is a failure
    /// (SIPp 3.6 then exits 255, [`SippExit::FatalError`], with statistics).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `-timeout_error` (default on): SIPp exits with failure when its
    /// global timeout is reached.
    pub fn timeout_error(mut self, on: bool) -> Self {
        self.timeout_error = on;
        self
    }

    /// `-max_retrans n`: UDP retransmissions before a call fails.
    pub fn max_retrans(mut self, n: u32) -> Self {
        self.max_retrans = Some(n);
        self
    }

    /// `-recv_timeout ms`: a call fails when an expected message does not
    /// come within this time.
    pub fn recv_timeout(mut self, timeout: Duration) -> Self {
        self.recv_timeout = Some(timeout);
        self
    }

    /// `-trace_msg`: log every message sent and received
    /// ([`SippRun::message_log`]). Costly under load.
    pub fn trace_msg(mut self, on: bool) -> Self {
        self.trace_msg = on;
        self
    }

    /// Any other SIPp argument, appended as is.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.extra.push(arg.into());
        self
    }

    /// The harness's own limit on the run, after which the process is killed
    /// and the run is an error (default: the SIPp timeout plus 5 s).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Starts SIPp. For a UAS, returns once its port is bound.
    pub fn spawn(self) -> Result<SippProcess, SippError> {
        if !sipp_available() {
            return Err(SippError::NotInstalled);
        }
        if self.role == Role::Uac && self.remote.is_none() {
            return Err(SippError::Usage("a UAC needs a remote address".into()));
        }
        if let Scenario::File(path) = &self.scenario {
            if !path.is_file() {
                return Err(SippError::Usage(format!(
                    "no scenario file {}",
                    path.display()
                )));
            }
        }
        let name = self.name.clone().unwrap_or_else(|| {
            let role = match self.role {
                Role::Uac => "uac",
                Role::Uas => "uas",
            };
            format!("sipp-{role}({})", self.scenario.label())
        });
        let dir = TempDir::new("sipp").map_err(|e| SippError::io("creating a scratch dir", e))?;
        let files = SippFiles::in_dir(dir.path());
        let port = self.local_port.unwrap_or_else(free_udp_port);
        let local = SocketAddr::new(self.local_ip, port);
        let args = self.args(port, &files);
        let command_line = std::iter::once(SIPP_BINARY.to_owned())
            .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ");

        let stdout =
            File::create(&files.stdout).map_err(|e| SippError::io("creating stdout.log", e))?;
        let stderr =
            File::create(&files.stderr).map_err(|e| SippError::io("creating stderr.log", e))?;
        let mut command = Command::new(SIPP_BINARY);
        command
            .args(&args)
            .current_dir(dir.path())
            .env("TERM", "dumb")
            .stdout(stdout)
            .stderr(stderr);
        let started = Instant::now();
        let process = OwnedProcess::spawn(&name, &mut command)
            .map_err(|e| SippError::io("spawning sipp", e))?;
        let deadline = started
            + self
                .deadline
                .unwrap_or(self.timeout + Duration::from_secs(5));
        let mut sipp = SippProcess {
            name,
            role: self.role,
            process,
            dir,
            files,
            local,
            started,
            deadline,
            command_line,
        };
        if self.role == Role::Uas {
            sipp.wait_bound()?;
        }
        Ok(sipp)
    }

    /// Starts SIPp and waits for it to exit: [`Sipp::spawn`] + [`SippProcess::wait`].
    pub fn run(self) -> Result<SippRun, SippError> {
        self.spawn()?.wait()
    }

    fn args(&self, port: u16, files: &SippFiles) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |s: &dyn AsRef<std::ffi::OsStr>| a.push(s.as_ref().to_owned());
        if let Some(remote) = self.remote {
            push(&remote.to_string());
        }
        match &self.scenario {
            Scenario::BuiltIn(name) => {
                push(&"-sn");
                push(name);
            }
            Scenario::File(path) => {
                push(&"-sf");
                push(path);
            }
        }
        push(&"-i");
        push(&self.local_ip.to_string());
        push(&"-p");
        push(&port.to_string());
        push(&"-t");
        push(&"u1");
        push(&"-nostdin");
        push(&"-timeout");
        push(&format!("{}ms", self.timeout.as_millis().max(1)));
        if self.timeout_error {
            push(&"-timeout_error");
        }
        push(&"-trace_stat");
        push(&"-stf");
        push(&files.stats);
        push(&"-trace_screen");
        push(&"-screen_file");
        push(&files.screen);
        push(&"-trace_err");
        push(&"-error_file");
        push(&files.errors);
        if self.trace_msg {
            push(&"-trace_msg");
            push(&"-message_file");
            push(&files.messages);
        }
        if let Some(service) = &self.service {
            push(&"-s");
            push(service);
        }
        if let Some(rsa) = self.rsa {
            push(&"-rsa");
            push(&rsa.to_string());
        }
        if let Some(rate) = self.rate {
            push(&"-r");
            push(&rate.to_string());
        }
        if let Some(period) = self.rate_period {
            push(&"-rp");
            push(&format!("{}ms", period.as_millis().max(1)));
        }
        if let Some(calls) = self.calls {
            push(&"-m");
            push(&calls.to_string());
        }
        if let Some(limit) = self.limit {
            push(&"-l");
            push(&limit.to_string());
        }
        if let Some(hold) = self.hold {
            push(&"-d");
            push(&hold.as_millis().to_string());
        }
        if let Some(lost) = self.lost_percent {
            push(&"-lost");
            push(&lost.to_string());
        }
        if let Some(n) = self.max_retrans {
            push(&"-max_retrans");
            push(&n.to_string());
        }
        if let Some(t) = self.recv_timeout {
            push(&"-recv_timeout");
            push(&format!("{}ms", t.as_millis().max(1)));
        }
        a.extend(self.extra.iter().cloned());
        a
    }
}

#[derive(Clone, Debug)]
struct SippFiles {
    stats: PathBuf,
    screen: PathBuf,
    errors: PathBuf,
    messages: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl SippFiles {
    fn in_dir(dir: &Path) -> Self {
        Self {
            stats: dir.join("stats.csv"),
            screen: dir.join("screen.log"),
            errors: dir.join("errors.log"),
            messages: dir.join("messages.log"),
            stdout: dir.join("stdout.log"),
            stderr: dir.join("stderr.log"),
        }
    }

    fn diagnostics(&self, command_line: &str) -> String {
        format!(
            "command: {command_line}\n--- stderr:\n{}\n--- errors log:\n{}\n--- stdout (screen):\n{}",
            read_tail(&self.stderr, 4000).trim_end(),
            read_tail(&self.errors, 4000).trim_end(),
            read_tail(&self.stdout, 3000).trim_end(),
        )
    }
}

/// A running SIPp. Dropping it kills the process.
#[derive(Debug)]
pub struct SippProcess {
    name: String,
    role: Role,
    process: OwnedProcess,
    dir: TempDir,
    files: SippFiles,
    local: SocketAddr,
    started: Instant,
    deadline: Instant,
    command_line: String,
}

impl SippProcess {
    /// The address SIPp listens on (`-i`:`-p`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Its label in diagnostics.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// UAC or UAS.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The full command line, for diagnostics.
    pub fn command_line(&self) -> &str {
        &self.command_line
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.process.try_status().is_none()
    }

    /// Waits for SIPp to exit by itself (calls done, or its timeout),
    /// then collects the results. Past the harness deadline the process is
    /// killed and the run is an error.
    pub fn wait(mut self) -> Result<SippRun, SippError> {
        match self.process.wait_until(self.deadline) {
            Some(status) => self.collect(status),
            None => {
                self.process.stop(Duration::from_secs(2));
                Err(SippError::Deadline {
                    name: self.name.clone(),
                    after: self.started.elapsed(),
                    diagnostics: self.files.diagnostics(&self.command_line),
                })
            }
        }
    }

    /// Asks SIPp to stop (SIGUSR1: no new calls, wait for the running ones,
    /// then exit with its statistics) and waits for it like [`SippProcess::wait`].
    pub fn stop(mut self) -> Result<SippRun, SippError> {
        self.process
            .signal("USR1")
            .map_err(|e| SippError::io("signalling sipp", e))?;
        self.wait()
    }

    fn wait_bound(&mut self) -> Result<(), SippError> {
        let port = self.local.port();
        let deadline = Instant::now() + BIND_TIMEOUT;
        let mut exited = None;
        let bound = poll_until(deadline, Duration::from_millis(2), || {
            exited = self.process.try_status();
            exited.is_some() || udp_port_bound(port)
        });
        if let Some(status) = exited {
            return Err(SippError::Exited {
                name: self.name.clone(),
                exit: SippExit::from_status(status),
                diagnostics: self.files.diagnostics(&self.command_line),
            });
        }
        if !bound {
            return Err(SippError::NotListening {
                name: self.name.clone(),
                port,
                diagnostics: self.files.diagnostics(&self.command_line),
            });
        }
        Ok(())
    }

    fn collect(self, status: ExitStatus) -> Result<SippRun, SippError> {
        let exit = SippExit::from_status(status);
        let elapsed = self.started.elapsed();
        let diagnostics = || self.files.diagnostics(&self.command_line);
        let stats = match fs::read_to_string(&self.files.stats) {
            Ok(csv) => match SippStats::parse_csv(&csv) {
                Some(stats) => stats,
                None => {
                    return Err(SippError::Exited {
                        name: self.name.clone(),
                        exit,
                        diagnostics: format!("unreadable statistics file\n{}", diagnostics()),
                    })
                }
            },
            Err(_) => {
                return Err(SippError::Exited {
                    name: self.name.clone(),
                    exit,
                    diagnostics: format!("no statistics file\n{}", diagnostics()),
                })
            }
        };
        let screen = fs::read_to_string(&self.files.screen).unwrap_or_default();
        let messages = parse_scenario_screen(&screen);
        let errors = fs::read_to_string(&self.files.errors).unwrap_or_default();
        let stderr = fs::read_to_string(&self.files.stderr).unwrap_or_default();
        Ok(SippRun {
            name: self.name,
            role: self.role,
            exit,
            stats,
            messages,
            elapsed,
            errors,
            screen,
            stderr,
            command_line: self.command_line,
            message_log: self.files.messages,
            _dir: self.dir,
        })
    }
}

/// How SIPp exited (its exit codes, `screen.hpp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SippExit {
    /// 0: every call succeeded.
    AllCallsSucceeded,
    /// 1: at least one call failed.
    SomeCallsFailed,
    /// 95: stopped manually.
    ManuallyStopped,
    /// 96: killed.
    Killed,
    /// 97: exit on internal command (a scenario's `<exec int_cmd="stop_now">`).
    InternalCommand,
    /// 98: unknown result.
    Unknown,
    /// 99: normal exit without any call processed.
    NoCallsProcessed,
    /// 255 (-1): fatal error (bad scenario, bad option...). SIPp 3.6 also
    /// exits so when `-timeout` expires under `-timeout_error`.
    FatalError,
    /// 254 (-2): could not bind a socket.
    BindError,
    /// 253 (-3): system error.
    SystemError,
    /// Any other code.
    Other(i32),
    /// Terminated by this signal.
    Signal(i32),
}

impl SippExit {
    /// Interprets a process exit status.
    pub fn from_status(status: ExitStatus) -> Self {
        match status.code() {
            Some(0) => Self::AllCallsSucceeded,
            Some(1) => Self::SomeCallsFailed,
            Some(95) => Self::ManuallyStopped,
            Some(96) => Self::Killed,
            Some(97) => Self::InternalCommand,
            Some(98) => Self::Unknown,
            Some(99) => Self::NoCallsProcessed,
            Some(255) => Self::FatalError,
            Some(254) => Self::BindError,
            Some(253) => Self::SystemError,
            Some(code) => Self::Other(code),
            None => Self::Signal(status.signal().unwrap_or(0)),
        }
    }

    /// The numeric exit code, if SIPp exited (rather than being killed).
    pub fn code(self) -> Option<i32> {
        Some(match self {
            Self::AllCallsSucceeded => 0,
            Self::SomeCallsFailed => 1,
            Self::ManuallyStopped => 95,
            Self::Killed => 96,
            Self::InternalCommand => 97,
            Self::Unknown => 98,
            Self::NoCallsProcessed => 99,
            Self::FatalError => 255,
            Self::BindError => 254,
            Self::SystemError => 253,
            Self::Other(code) => code,
            Self::Signal(_) => return None,
        })
    }
}

/// SIPp's final cumulative statistics (the last line of the `-trace_stat`
/// CSV, the `(C)` columns). Counters missing from the file read as 0; every
/// column is in [`SippStats::raw`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SippStats {
    /// `TotalCallCreated`.
    pub created_calls: u64,
    /// `IncomingCall(C)`: calls created by a received INVITE (UAS).
    pub incoming_calls: u64,
    /// `OutgoingCall(C)`: calls placed (UAC).
    pub outgoing_calls: u64,
    /// `CurrentCall`: calls still open at exit.
    pub current_calls: u64,
    /// `SuccessfulCall(C)`: calls that reached the end of the scenario.
    pub successful_calls: u64,
    /// `FailedCall(C)`.
    pub failed_calls: u64,
    /// `FailedCannotSendMessage(C)`.
    pub failed_cannot_send: u64,
    /// `FailedMaxUDPRetrans(C)`.
    pub failed_max_udp_retrans: u64,
    /// `FailedUnexpectedMessage(C)`.
    pub failed_unexpected_message: u64,
    /// `FailedCallRejected(C)`.
    pub failed_call_rejected: u64,
    /// `FailedRegexpDoesntMatch(C)`: a `check_it` regexp did not match.
    pub failed_regexp_doesnt_match: u64,
    /// `FailedRegexpShouldntMatch(C)`: a `check_it_inverse` regexp matched.
    pub failed_regexp_shouldnt_match: u64,
    /// `FailedRegexpHdrNotFound(C)`: the header a `check_it` regexp looks in is missing.
    pub failed_regexp_hdr_not_found: u64,
    /// `FailedTimeoutOnRecv(C)`.
    pub failed_timeout_on_recv: u64,
    /// `FailedTimeoutOnSend(C)`.
    pub failed_timeout_on_send: u64,
    /// `FailedOutboundCongestion(C)`.
    pub failed_outbound_congestion: u64,
    /// `OutOfCallMsgs(C)`: messages matching no call.
    pub out_of_call_msgs: u64,
    /// `DeadCallMsgs(C)`: messages for calls already ended.
    pub dead_call_msgs: u64,
    /// `Retransmissions(C)`: retransmissions SIPp sent.
    pub retransmissions: u64,
    /// `AutoAnswered(C)`.
    pub auto_answered: u64,
    /// `Warnings(C)`.
    pub warnings: u64,
    /// `FatalErrors(C)`.
    pub fatal_errors: u64,
    /// `WatchdogMajor(C)`: SIPp's main loop stalled badly (an overloaded host).
    pub watchdog_major: u64,
    /// `WatchdogMinor(C)`.
    pub watchdog_minor: u64,
    /// `CallRate(C)`: average calls per second over the run.
    pub call_rate: f64,
    /// `ResponseTime1(C)`: mean of the first response-time measure (`rtd`).
    pub response_time_1: Option<Duration>,
    /// `CallLength(C)`: mean call length.
    pub call_length: Option<Duration>,
    /// Every column of the last line, by header name.
    pub raw: BTreeMap<String, String>,
}

impl SippStats {
    /// Parses the text of a `-trace_stat` file (header line, then one line
    /// per dump; the last one is the final state). `None` if there is no
    /// data line.
    pub fn parse_csv(csv: &str) -> Option<Self> {
        let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<&str> = lines.next()?.split(';').collect();
        let last: Vec<&str> = lines.next_back()?.split(';').collect();
        let raw: BTreeMap<String, String> = header
            .iter()
            .zip(last.iter())
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect();
        let n = |name: &str| -> u64 {
            raw.get(name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Some(Self {
            created_calls: n("TotalCallCreated"),
            incoming_calls: n("IncomingCall(C)"),
            outgoing_calls: n("OutgoingCall(C)"),
            current_calls: n("CurrentCall"),
            successful_calls: n("SuccessfulCall(C)"),
            failed_calls: n("FailedCall(C)"),
            failed_cannot_send: n("FailedCannotSendMessage(C)"),
            failed_max_udp_retrans: n("FailedMaxUDPRetrans(C)"),
            failed_unexpected_message: n("FailedUnexpectedMessage(C)"),
            failed_call_rejected: n("FailedCallRejected(C)"),
            failed_regexp_doesnt_match: n("FailedRegexpDoesntMatch(C)"),
            failed_regexp_shouldnt_match: n("FailedRegexpShouldntMatch(C)"),
            failed_regexp_hdr_not_found: n("FailedRegexpHdrNotFound(C)"),
            failed_timeout_on_recv: n("FailedTimeoutOnRecv(C)"),
            failed_timeout_on_send: n("FailedTimeoutOnSend(C)"),
            failed_outbound_congestion: n("FailedOutboundCongestion(C)"),
            out_of_call_msgs: n("OutOfCallMsgs(C)"),
            dead_call_msgs: n("DeadCallMsgs(C)"),
            retransmissions: n("Retransmissions(C)"),
            auto_answered: n("AutoAnswered(C)"),
            warnings: n("Warnings(C)"),
            fatal_errors: n("FatalErrors(C)"),
            watchdog_major: n("WatchdogMajor(C)"),
            watchdog_minor: n("WatchdogMinor(C)"),
            call_rate: raw
                .get("CallRate(C)")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0),
            response_time_1: raw
                .get("ResponseTime1(C)")
                .and_then(|v| parse_hms_micros(v)),
            call_length: raw.get("CallLength(C)").and_then(|v| parse_hms_micros(v)),
            raw,
        })
    }
}

/// SIPp's `HH:MM:SS:uuuuuu`.
fn parse_hms_micros(v: &str) -> Option<Duration> {
    let parts: Vec<u64> = v
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    match parts[..] {
        [h, m, s, us] => {
            Some(Duration::from_secs(h * 3600 + m * 60 + s) + Duration::from_micros(us))
        }
        [h, m, s] => Some(Duration::from_secs(h * 3600 + m * 60 + s)),
        _ => None,
    }
}

/// Which way a scenario element's message went, from this SIPp's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// A `<send>`.
    Sent,
    /// A `<recv>`.
    Received,
    /// A `<pause>` (or `timewait`): `messages` counts the calls that went through it.
    Pause,
}

/// One row of SIPp's scenario screen: the counters of one scenario element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageStats {
    /// Method or status code (`INVITE`, `180`...), or `Pause`.
    pub label: String,
    /// Sent, received, or pause.
    pub direction: Direction,
    /// Messages sent / received (for a pause: calls that paused).
    pub messages: u64,
    /// Retransmissions (sent or received).
    pub retransmissions: u64,
    /// Timeouts waiting for this message.
    pub timeouts: u64,
    /// Unexpected messages received at this point.
    pub unexpected: u64,
    /// Messages dropped on purpose (`-lost`).
    pub lost: u64,
}

/// Parses the per-message rows of the last "Scenario Screen" of a
/// `-trace_screen` file, in scenario order. The counters are read by column,
/// under the table's header (which gains "Lost" with `-lost`).
pub fn parse_scenario_screen(screen: &str) -> Vec<MessageStats> {
    let Some(start) = screen.rfind("Scenario Screen") else {
        return Vec::new();
    };
    let mut columns = None;
    let mut rows = Vec::new();
    for line in screen[start..].lines().skip(1) {
        match &columns {
            None => columns = ScreenColumns::from_header(line),
            Some(_) if line.starts_with("---") => break,
            Some(cols) => rows.extend(parse_screen_row(line, cols)),
        }
    }
    rows
}

/// Byte offsets of the counter columns of the scenario screen.
#[derive(Debug)]
struct ScreenColumns {
    starts: [usize; 5],
}

impl ScreenColumns {
    const MESSAGES: usize = 0;
    const RETRANS: usize = 1;
    const TIMEOUT: usize = 2;
    const UNEXPECTED: usize = 3;
    const LOST: usize = 4;

    fn from_header(line: &str) -> Option<Self> {
        let messages = line.find("Messages")?;
        let retrans = line.find("Retrans")?;
        let timeout = line.find("Timeout")?;
        let unexpected = line.find("Unexp")?;
        let lost = line.find("Lost").unwrap_or(usize::MAX);
        Some(Self {
            starts: [messages, retrans, timeout, unexpected, lost],
        })
    }

    /// The number in column `i` of `row`, 0 if the cell is empty.
    fn get(&self, row: &str, i: usize) -> u64 {
        let start = self.starts[i];
        let end = self.starts.get(i + 1).copied().unwrap_or(usize::MAX);
        row.get(start.min(row.len())..end.min(row.len()))
            .and_then(|cell| cell.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

fn parse_screen_row(line: &str, cols: &ScreenColumns) -> Option<MessageStats> {
    const RIGHT: &str = "---------->";
    const LEFT: &str = "<----------";
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let (label, direction) = if let Some(i) = tokens.iter().position(|t| *t == RIGHT || *t == LEFT)
    {
        let arrow_right = tokens[i] == RIGHT;
        // "INVITE ---------->" / "100 <----------" (UAC layout) or
        // "----------> INVITE" / "<---------- 180" (UAS layout); the arrow
        // always points from the caller's side to the callee's.
        let (label, label_left) = if i == 0 {
            (*tokens.get(1)?, false)
        } else {
            (tokens[i - 1], true)
        };
        let direction = if label_left == arrow_right {
            Direction::Sent
        } else {
            Direction::Received
        };
        (label.to_owned(), direction)
    } else if tokens.contains(&"Pause") {
        ("Pause".to_owned(), Direction::Pause)
    } else {
        return None;
    };
    let at = |i| cols.get(line, i);
    Some(MessageStats {
        label,
        direction,
        messages: at(ScreenColumns::MESSAGES),
        retransmissions: at(ScreenColumns::RETRANS),
        timeouts: at(ScreenColumns::TIMEOUT),
        unexpected: at(ScreenColumns::UNEXPECTED),
        lost: at(ScreenColumns::LOST),
    })
}

/// The outcome of a SIPp run that exited by itself.
#[derive(Debug)]
pub struct SippRun {
    /// Label of the run.
    pub name: String,
    /// UAC or UAS.
    pub role: Role,
    /// Exit code, interpreted.
    pub exit: SippExit,
    /// Final statistics.
    pub stats: SippStats,
    /// Per scenario element counters, in scenario order.
    pub messages: Vec<MessageStats>,
    /// Wall-clock time from spawn to exit.
    pub elapsed: Duration,
    /// Unexpected messages and errors SIPp logged (`-trace_err`).
    pub errors: String,
    /// The final screens (`-trace_screen`).
    pub screen: String,
    /// SIPp's stderr.
    pub stderr: String,
    /// The command line.
    pub command_line: String,
    message_log: PathBuf,
    _dir: TempDir,
}

impl SippRun {
    /// Exit 0 and no failed call.
    pub fn succeeded(&self) -> bool {
        self.exit == SippExit::AllCallsSucceeded && self.stats.failed_calls == 0
    }

    /// Sum of the `messages` counters of the received rows labelled `label`.
    pub fn received(&self, label: &str) -> u64 {
        self.count(label, Direction::Received)
    }

    /// Sum of the `messages` counters of the sent rows labelled `label`.
    pub fn sent(&self, label: &str) -> u64 {
        self.count(label, Direction::Sent)
    }

    /// Sum of the `unexpected` counters of all rows.
    pub fn unexpected(&self) -> u64 {
        self.messages.iter().map(|m| m.unexpected).sum()
    }

    fn count(&self, label: &str, direction: Direction) -> u64 {
        self.messages
            .iter()
            .filter(|m| m.direction == direction && m.label.eq_ignore_ascii_case(label))
            .map(|m| m.messages)
            .sum()
    }

    /// The `-trace_msg` log (empty unless [`Sipp::trace_msg`] was on).
    pub fn message_log(&self) -> String {
        fs::read_to_string(&self.message_log).unwrap_or_default()
    }

    /// Panics, with the whole story, unless SIPp exited 0 with exactly
    /// `calls` successful calls and none failed.
    pub fn assert_calls_succeeded(&self, calls: u64) {
        assert!(
            self.exit == SippExit::AllCallsSucceeded
                && self.stats.successful_calls == calls
                && self.stats.failed_calls == 0,
            "{}: expected {calls} successful calls and exit 0\n{self}",
            self.name
        );
    }

    /// Panics, with the whole story, unless every one of `calls` calls
    /// failed on a scenario check (a regexp that did not match, or a header
    /// it needed that was missing) and none succeeded.
    pub fn assert_calls_failed_their_checks(&self, calls: u64) {
        let s = &self.stats;
        assert!(
            self.exit == SippExit::SomeCallsFailed
                && s.successful_calls == 0
                && s.failed_calls == calls
                && s.failed_regexp_hdr_not_found + s.failed_regexp_doesnt_match == calls,
            "{}: expected {calls} calls failed on a check\n{self}",
            self.name
        );
    }
}

impl fmt::Display for SippRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        writeln!(
            f,
            "{}: exit {:?} after {:.2?}; calls created {}, successful {}, failed {} \
             (unexpected msg {}, max retrans {}, recv timeout {}, rejected {}, \
             regexp no match {}, regexp header missing {}, regexp should not match {}), \
             retransmissions {}, out-of-call msgs {}, dead-call msgs {}, watchdog {}/{}",
            self.name,
            self.exit,
            self.elapsed,
            s.created_calls,
            s.successful_calls,
            s.failed_calls,
            s.failed_unexpected_message,
            s.failed_max_udp_retrans,
            s.failed_timeout_on_recv,
            s.failed_call_rejected,
            s.failed_regexp_doesnt_match,
            s.failed_regexp_hdr_not_found,
            s.failed_regexp_shouldnt_match,
            s.retransmissions,
            s.out_of_call_msgs,
            s.dead_call_msgs,
            s.watchdog_major,
            s.watchdog_minor,
        )?;
        writeln!(f, "command: {}", self.command_line)?;
        for m in &self.messages {
            writeln!(
                f,
                "  {:<8} {:<9} messages {:>6} retrans {:>4} timeouts {:>4} unexpected {:>4} lost {:>4}",
                m.label,
                format!("{:?}", m.direction),
                m.messages,
                m.retransmissions,
                m.timeouts,
                m.unexpected,
                m.lost
            )?;
        }
        if !self.stderr.trim().is_empty() {
            writeln!(f, "--- stderr:\n{}", tail(&self.stderr, 3000))?;
        }
        if !self.errors.trim().is_empty() {
            writeln!(f, "--- errors log:\n{}", tail(&self.errors, 6000))?;
        }
        Ok(())
    }
}

fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Why a SIPp run did not produce results.
#[derive(Debug)]
pub enum SippError {
    /// `sipp` is not on PATH.
    NotInstalled,
    /// The builder was used wrongly.
    Usage(String),
    /// An I/O error of the harness.
    Io {
        /// What the harness was doing.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// SIPp exited before it was ready, or without statistics.
    Exited {
        /// The run's label.
        name: String,
        /// How it exited.
        exit: SippExit,
        /// Command line, stderr, error log, screen.
        diagnostics: String,
    },
    /// A UAS did not bind its port in time.
    NotListening {
        /// The run's label.
        name: String,
        /// The port.
        port: u16,
        /// Command line, stderr, error log, screen.
        diagnostics: String,
    },
    /// SIPp outlived the harness deadline and was killed.
    Deadline {
        /// The run's label.
        name: String,
        /// Time since spawn.
        after: Duration,
        /// Command line, stderr, error log, screen.
        diagnostics: String,
    },
}

impl SippError {
    fn io(what: &str, source: io::Error) -> Self {
        Self::Io {
            what: what.to_owned(),
            source,
        }
    }
}

impl fmt::Display for SippError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInstalled => write!(
                f,
                "`{SIPP_BINARY}` is not on PATH: install the Debian package sip-tester"
            ),
            Self::Usage(msg) => write!(f, "sipp harness misuse: {msg}"),
            Self::Io { what, source } => write!(f, "{what}: {source}"),
            Self::Exited {
                name,
                exit,
                diagnostics,
            } => write!(f, "{name} exited ({exit:?}) without results\n{diagnostics}"),
            Self::NotListening {
                name,
                port,
                diagnostics,
            } => write!(f, "{name} did not bind UDP port {port}\n{diagnostics}"),
            Self::Deadline {
                name,
                after,
                diagnostics,
            } => write!(
                f,
                "{name} still running after {after:.1?}: killed\n{diagnostics}"
            ),
        }
    }
}

impl Error for SippError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UAC_SCREEN: &str = "\
------------------------------ Scenario Screen -------- [1-9]: Change Screen --
  Call rate (length)   Port   Total-time  Total-calls  Remote-host
  100.0(0 ms)/1.000s   15061      0.21 s           20  127.0.0.1:15060(UDP)

                                 Messages  Retrans   Timeout   Unexpected-Msg
      INVITE ---------->  B-RTD1 20        1         0                         
         100 <----------         0         0         0         0               
         180 <----------  E-RTD1 20        0         0         2               
       Pause [      0ms]         20                            0        
         BYE ---------->         20        0         0                         
         200 <----------         20        0         0         0               

------- Waiting for active calls to end. Press [q] again to force exit. -------
";

    const UAS_SCREEN: &str = "\
------------------------------ Scenario Screen -------- [1-9]: Change Screen --
                                 Messages  Retrans   Timeout   Unexp.    Lost
  ----------> INVITE             50        0         0         0         4     

  <---------- 180                50        0                             2     
  ----------> ACK         E-RTD1 50        3         0         0               
  <---------- 200                20        1                                   
  [   4000ms] Pause              50                            1        
------- Waiting for active calls to end. Press [q] again to force exit. -------
";

    #[test]
    fn uac_screen_rows() {
        let rows = parse_scenario_screen(UAC_SCREEN);
        assert_eq!(rows.len(), 6);
        assert_eq!(
            rows[0],
            MessageStats {
                label: "INVITE".into(),
                direction: Direction::Sent,
                messages: 20,
                retransmissions: 1,
                timeouts: 0,
                unexpected: 0,
                lost: 0,
            }
        );
        assert_eq!(rows[2].direction, Direction::Received);
        assert_eq!(rows[2].unexpected, 2);
        assert_eq!(rows[3].direction, Direction::Pause);
        assert_eq!(rows[3].messages, 20);
        assert_eq!(rows[5].label, "200");
    }

    #[test]
    fn uas_screen_rows() {
        let rows = parse_scenario_screen(UAS_SCREEN);
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[0].direction, Direction::Received);
        assert_eq!(rows[0].label, "INVITE");
        assert_eq!(rows[0].lost, 4);
        assert_eq!(rows[1].direction, Direction::Sent);
        assert_eq!(rows[1].label, "180");
        assert_eq!((rows[1].messages, rows[1].lost), (50, 2));
        assert_eq!(rows[2].retransmissions, 3);
        assert_eq!(rows[3].label, "200");
        assert_eq!((rows[3].retransmissions, rows[3].timeouts), (1, 0));
        assert_eq!(rows[4].direction, Direction::Pause);
        assert_eq!((rows[4].messages, rows[4].unexpected), (50, 1));
    }

    #[test]
    fn stats_csv_last_line() {
        let csv = "StartTime;TotalCallCreated;CurrentCall;SuccessfulCall(P);SuccessfulCall(C);\
                   FailedCall(C);Retransmissions(C);CallRate(C);ResponseTime1(C);\n\
                   x;0;0;0;0;0;0;0;00:00:00:000000;\n\
                   x;20;1;5;19;1;3;93.9;00:00:01:005000;\n";
        let s = SippStats::parse_csv(csv).unwrap();
        assert_eq!(s.created_calls, 20);
        assert_eq!(s.current_calls, 1);
        assert_eq!(s.successful_calls, 19);
        assert_eq!(s.failed_calls, 1);
        assert_eq!(s.retransmissions, 3);
        assert!((s.call_rate - 93.9).abs() < 1e-9);
        assert_eq!(s.response_time_1, Some(Duration::from_micros(1_005_000)));
        assert_eq!(SippStats::parse_csv("only;a;header\n"), None);
    }
}
