//! `edge.toml`: the whole configuration of an `edge` process, with a default
//! for every field so that no file at all gives a working proxy on
//! 127.0.0.1:5060 UDP.
//!
//! Loading goes in two steps: serde reads the file into raw structs that keep
//! the span of every value (`deny_unknown_fields`, so a misspelt key is an
//! error), then [`Config`] is built from them and every value is checked. An
//! error names the file, the line and the field:
//! `edge.toml:4: field `sip.listen`: transport `tcp` is not supported`.
//!
//! [`DEFAULT_CONFIG_TOML`] is the commented default file `edge --print-config`
//! prints; a test keeps it equal to [`Config::default`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;
use toml::Spanned;

use crate::dispatcher::{
    parse_list, Algorithm, CodeSet, DestinationSets, DispatcherConfig, ListOptions, RouteRule,
    RouterConfig, SetLimits, TomlDestination,
};
use crate::proxy::ProxyConfig;
use crate::sip::{Host, Scheme, Uri};

/// The file name used in messages when the text did not come from a file.
pub const DEFAULT_FILE_NAME: &str = "edge.toml";

/// The port of a `next_hop` URI that names none (RFC 3261 19.1.2).
pub const DEFAULT_SIP_PORT: u16 = 5060;

/// Default SO_RCVBUF and SO_SNDBUF, bytes (4 MiB).
pub const DEFAULT_SOCKET_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Default time shutdown waits for live transactions, ms (64*T1, Timer B/F).
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 32_000;

/// The default configuration as a commented `edge.toml`, which
/// `edge --print-config` prints. Parsing it gives exactly [`Config::default`].
pub const DEFAULT_CONFIG_TOML: &str = r#"# edge.toml: configuration of the edge SIP proxy.
# Every field is optional; the values below are the defaults.

# Log filter in tracing syntax (e.g. "info" or "edge=debug,info"); RUST_LOG overrides it.
log_level = "info"

[sip]
# Addresses to receive SIP on, "udp:IP:PORT" or "udp:[IPv6]:PORT"; every shard binds each one.
listen = ["udp:127.0.0.1:5060"]
# Where initial requests go: a sip: URI with an IP (or localhost) host, port 5060 if absent; unset = none.
# next_hop = "sip:127.0.0.1:5080"
# Add Record-Route (with lr) to initial INVITE and SUBSCRIBE (true/false).
record_route = true

[runtime]
# CPU cores to run a shard on, one pinned thread each, e.g. [0, 1]; empty = all cores.
cores = []
# Receive buffer (SO_RCVBUF) of each socket, bytes.
recv_buffer_bytes = 4194304
# Send buffer (SO_SNDBUF) of each socket, bytes.
send_buffer_bytes = 4194304
# How long shutdown (SIGTERM/SIGINT) waits for live transactions, milliseconds.
shutdown_grace_ms = 32000

[transaction]
# RFC 3261 T1, the round-trip time estimate, milliseconds.
t1_ms = 500
# RFC 3261 T2, the longest non-INVITE request retransmit interval, milliseconds (>= t1_ms).
t2_ms = 4000
# RFC 3261 T4, how long the network may hold a message, milliseconds.
t4_ms = 5000
# Timer C, how long a proxied INVITE waits for a final response, milliseconds.
timer_c_ms = 180000
# Most live transactions (server and client) per shard; a new INVITE beyond it gets 503.
# A call keeps its BYE's transactions for 37 s (Timers J and K): 400000 sustains about
# 10,800 calls/s per shard, at about 1.6 KB a transaction.
max_transactions_per_shard = 400000

[overload]
# Retry-After in 503 responses sent on overload and shutdown, seconds.
retry_after_s = 5

[dispatcher]
# A Kamailio dispatcher.list (setid uri flags priority attrs, one a line), re-read on SIGHUP;
# or [[dispatcher.destination]] tables (set, uri, flags, priority, duid, weight, maxload, attrs).
# With neither there is no dispatcher and initial requests go to sip.next_hop.
# list = "/etc/edge/dispatcher.list"
# Destination set of initial requests; [[dispatcher.route]] tables (method, set, algorithm) override it by method.
set = 1
# Selection algorithm by Kamailio number: 0 Call-ID, 1 From, 2 To, 3 R-URI hash, 4 round-robin,
# 5 auth user hash, 6 random, 8 priority, 9 weight, 10 call load, 11 relative weight.
algorithm = 4
# An answered call with no BYE stops counting on its destination after this long, seconds.
dialog_timeout_s = 43200
# Most answered calls remembered per shard for the call load; beyond it the oldest is released.
max_dialogs_per_shard = 100000
# Shortest time between two reloads (SIGHUP, dispatcher.reload), milliseconds; 0 = no limit.
# Reloads are atomic here, so none is needed (Kamailio refuses reloads closer than 5 s).
reload_min_interval_ms = 0

[dispatcher.failover]
# Destinations tried for one request, the first included (1 to 16).
attempts = 3
# Final response codes after which the request goes to the next destination.
codes = [408, 500, 502, 503, 504]
# An attempt with no response at all (not even 100) for this long goes to the next one, milliseconds.
timeout_ms = 4000

[dispatcher.health]
# Time between two OPTIONS probes of one destination, milliseconds.
interval_ms = 10000
# A probe with no final response for this long has failed, milliseconds (at most interval_ms).
timeout_ms = 5000
# Failures in a row that make a destination inactive (Kamailio ds_probing_threshold).
probing_threshold = 3
# Successful probes in a row that bring an inactive one back (Kamailio ds_inactive_threshold).
inactive_threshold = 2
# Probe response codes that count as up besides any 2xx, e.g. [403, 404, 405, 501].
accepted_codes = []
# Probe every destination not flagged no-ping (32); false probes only those flagged probing (8).
probe_all = true

[rpc]
# JSON-RPC 2.0 over HTTP (POST /RPC or /) on its own thread, "IP:PORT"; unset = no RPC server.
# listen = "127.0.0.1:5090"
# Bearer token clients must send (Authorization: Bearer TOKEN); required to listen off loopback.
# token = "a-long-random-secret"
"#;

/// A transport and address to listen on, written `udp:127.0.0.1:5060` or
/// `udp:[::1]:5060`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr {
    /// Only UDP for now.
    pub transport: Transport,
    /// The address bound on every shard (SO_REUSEPORT).
    pub addr: SocketAddr,
}

/// A SIP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// RFC 3261 over UDP.
    Udp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Udp => f.write_str("udp"),
        }
    }
}

impl ListenAddr {
    /// A UDP listen address.
    pub fn udp(addr: SocketAddr) -> Self {
        ListenAddr {
            transport: Transport::Udp,
            addr,
        }
    }
}

impl fmt::Display for ListenAddr {
    /// `udp:127.0.0.1:5060`, `udp:[::1]:5060`: the form [`FromStr`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}

/// Why a listen address did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ListenAddrError(String);

impl FromStr for ListenAddr {
    type Err = ListenAddrError;

    /// Reads `udp:IP:PORT`, `udp:[IPv6]:PORT`, or a bare `IP:PORT` /
    /// `[IPv6]:PORT` (UDP). The transport is case-insensitive; host names are
    /// not accepted (nothing is resolved), the port must not be 0 and the
    /// address not a wildcard (0.0.0.0, ::).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |m: String| Err(ListenAddrError(m));
        if s.is_empty() {
            return err("empty listen address, expected udp:IP:PORT".into());
        }
        let addr_text = if s.parse::<SocketAddr>().is_ok() {
            s
        } else {
            match s.split_once(':') {
                Some((t, rest)) if t.eq_ignore_ascii_case("udp") => rest,
                Some((t, _))
                    if ["tcp", "tls", "ws", "wss", "sctp"]
                        .iter()
                        .any(|k| t.eq_ignore_ascii_case(k)) =>
                {
                    return err(format!(
                        "transport `{t}` is not supported, only udp (in `{s}`)"
                    ));
                }
                Some((t, _)) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphabetic()) => {
                    return err(format!(
                        "`{s}`: unknown transport `{t}` or not an IP address; expected udp:IP:PORT"
                    ));
                }
                _ => s,
            }
        };
        let addr: SocketAddr = match addr_text.parse() {
            Ok(a) => a,
            Err(_) => {
                return err(format!(
                    "`{s}` is not udp:IP:PORT (an IP literal, IPv6 in brackets like \
                     udp:[::1]:5060; host names are not resolved)"
                ))
            }
        };
        if addr.port() == 0 {
            return err(format!(
                "`{s}`: port 0 is not allowed, every shard must bind the same port"
            ));
        }
        if addr.ip().is_unspecified() {
            // The proxy writes its listen address into Via and Record-Route;
            // a wildcard there would send responses and dialogs nowhere.
            return err(format!(
                "`{s}`: a wildcard address cannot be advertised in Via and \
                 Record-Route; listen on each interface address instead"
            ));
        }
        Ok(ListenAddr::udp(addr))
    }
}

/// The whole configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Log filter (`tracing` directives); `RUST_LOG` overrides it.
    pub log_level: String,
    /// Listen addresses; every shard binds each one.
    pub listen: Vec<ListenAddr>,
    /// Cores to run a shard on (one pinned thread each); empty means all.
    pub cores: Vec<usize>,
    /// SO_RCVBUF for each socket, bytes.
    pub recv_buffer_bytes: usize,
    /// SO_SNDBUF for each socket, bytes.
    pub send_buffer_bytes: usize,
    /// Where initial requests go, as `sip:host:port` (resolved at start).
    pub next_hop: Option<String>,
    /// How long SIGTERM waits for live transactions, ms.
    pub shutdown_grace_ms: u64,
    /// Proxy and transaction settings, per shard.
    pub proxy: ProxyConfig,
    /// The dispatcher (`[dispatcher]`).
    pub dispatcher: DispatcherSettings,
    /// The JSON-RPC control server (`[rpc]`).
    pub rpc: RpcSettings,
}

/// The `[rpc]` section: the JSON-RPC server, off unless `listen` is set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RpcSettings {
    /// Where the HTTP server listens; `None` runs none.
    pub listen: Option<SocketAddr>,
    /// The bearer token every request must carry when set; required when
    /// `listen` is not a loopback address.
    pub token: Option<String>,
}

impl RpcSettings {
    /// Refuses a non-loopback `listen` without a token.
    fn check(&self) -> Result<(), String> {
        match self.listen {
            Some(addr) if !addr.ip().is_loopback() && self.token.is_none() => Err(format!(
                "`{addr}` is not a loopback address: set rpc.token (a bearer token) to listen there"
            )),
            _ => Ok(()),
        }
    }
}

/// Where the dispatcher's destinations come from.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum DestinationSource {
    /// No dispatcher: initial requests go to `sip.next_hop`.
    #[default]
    None,
    /// A Kamailio `dispatcher.list` file, read at start and on SIGHUP.
    List(PathBuf),
    /// `[[dispatcher.destination]]` tables, checked at load.
    Inline(DestinationSets),
}

/// The `[dispatcher]` section.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DispatcherSettings {
    /// The destinations.
    pub source: DestinationSource,
    /// Route rules, dialog timeout and table size.
    pub router: RouterConfig,
    /// Failover and health.
    pub dispatcher: DispatcherConfig,
    /// Shortest time between two reloads, milliseconds (0: no limit).
    pub reload_min_interval_ms: u64,
}

/// Destination sets read from their source, names resolved.
#[derive(Clone, Debug)]
pub struct LoadedSets {
    /// The sets.
    pub sets: DestinationSets,
    /// Lines skipped (bad URIs), with file and line, and names that did not resolve.
    pub warnings: Vec<String>,
}

impl DispatcherSettings {
    /// The source for logs: `none`, the list file, or `inline`.
    pub fn source_name(&self) -> String {
        match &self.source {
            DestinationSource::None => "none".into(),
            DestinationSource::List(p) => p.display().to_string(),
            DestinationSource::Inline(_) => "inline".into(),
        }
    }

    /// Is a dispatcher configured (a list file or inline destinations)?
    pub fn is_configured(&self) -> bool {
        self.source != DestinationSource::None
    }

    /// Reads the destinations (the list file, or the inline ones) and
    /// resolves host names (A/AAAA, first address) with the system resolver:
    /// blocking, for the main thread only. `None` without a dispatcher; an
    /// error names the file and line.
    pub fn load_sets(&self) -> Result<Option<LoadedSets>, String> {
        let (sets, mut warnings) = match &self.source {
            DestinationSource::None => return Ok(None),
            DestinationSource::Inline(sets) => (sets.clone(), Vec::new()),
            DestinationSource::List(path) => {
                let file = path.display().to_string();
                let text = std::fs::read(path).map_err(|e| format!("{file}: cannot read: {e}"))?;
                let parsed =
                    parse_list(&text, &file, &ListOptions::default()).map_err(|e| e.to_string())?;
                let mut warnings: Vec<String> =
                    parsed.skipped.iter().map(ToString::to_string).collect();
                if parsed.skipped_total > parsed.skipped.len() {
                    warnings.push(format!(
                        "{file}: {} more lines skipped",
                        parsed.skipped_total - parsed.skipped.len()
                    ));
                }
                (parsed.sets, warnings)
            }
        };
        let resolved = resolve_names(&sets, &mut warnings);
        Ok(Some(LoadedSets {
            sets: resolved,
            warnings,
        }))
    }
}

/// `sets` with every host name resolved (A/AAAA, the first address); a name
/// that does not resolve adds a warning and its destinations take no calls.
/// Blocking DNS: for the main thread only.
pub fn resolve_names(sets: &DestinationSets, warnings: &mut Vec<String>) -> DestinationSets {
    sets.resolved(|name, port, transport| {
        use std::net::ToSocketAddrs;
        let port = port.unwrap_or(transport.default_port());
        let addr = (name, port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next());
        if addr.is_none() {
            warnings.push(format!(
                "`{name}` does not resolve: its destinations take no calls"
            ));
        }
        addr
    })
}

impl Default for Config {
    /// Listens on udp:127.0.0.1:5060 on all cores, no next hop, and the
    /// defaults of [`ProxyConfig`].
    fn default() -> Self {
        Config {
            log_level: "info".into(),
            listen: vec![ListenAddr::udp(SocketAddr::from((
                Ipv4Addr::LOCALHOST,
                5060,
            )))],
            cores: Vec::new(),
            recv_buffer_bytes: DEFAULT_SOCKET_BUFFER_BYTES,
            send_buffer_bytes: DEFAULT_SOCKET_BUFFER_BYTES,
            next_hop: None,
            shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
            proxy: ProxyConfig::default(),
            dispatcher: DispatcherSettings::default(),
            rpc: RpcSettings::default(),
        }
    }
}

/// Why a configuration could not be loaded. Each variant says where: the
/// file and line, or the command-line flag.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {message}")]
    Io {
        /// The file, as given.
        file: String,
        /// The OS error.
        message: String,
    },
    /// The TOML parser rejected the file: bad syntax, an unknown key or a
    /// value of the wrong type.
    #[error("{file}:{line}:{column}: {}{message}", field.as_ref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
    Toml {
        /// The file name.
        file: String,
        /// 1-based line of the offending text (1 if the parser gave no position).
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// Dotted path of the key, e.g. `sip.listen`, when known.
        field: Option<String>,
        /// The parser's message.
        message: String,
    },
    /// A value of the right type that is not acceptable.
    #[error("{file}:{line}: field `{field}`: {message}")]
    Invalid {
        /// The file name.
        file: String,
        /// 1-based line of the offending value.
        line: usize,
        /// Dotted path of the key, e.g. `transaction.t1_ms`.
        field: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// A command-line flag has an unacceptable value.
    #[error("{flag}: {message}")]
    Flag {
        /// The flag, e.g. `--next-hop`.
        flag: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

impl ConfigError {
    /// The dotted path of the offending field, when known.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Toml { field, .. } => field.as_deref(),
            ConfigError::Invalid { field, .. } => Some(field),
            ConfigError::Io { .. } | ConfigError::Flag { .. } => None,
        }
    }

    /// The 1-based line in the file, for errors about the file's contents.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Toml { line, .. } | ConfigError::Invalid { line, .. } => Some(*line),
            ConfigError::Io { .. } | ConfigError::Flag { .. } => None,
        }
    }
}

/// Command-line values that replace the file's (see [`Config::apply_overrides`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--listen`, repeated: if not empty, replaces `sip.listen` entirely.
    pub listen: Vec<ListenAddr>,
    /// `--next-hop URI`: replaces `sip.next_hop`.
    pub next_hop: Option<String>,
    /// `--cores N`: run on the first N cores, `0..N`; replaces `runtime.cores`.
    pub cores: Option<usize>,
    /// `--dispatcher-list FILE`: replaces `dispatcher.list` (and inline destinations).
    pub dispatcher_list: Option<PathBuf>,
    /// `--rpc IP:PORT`: replaces `rpc.listen`.
    pub rpc: Option<SocketAddr>,
}

impl Config {
    /// Parses and validates the text of an `edge.toml`; errors name the file
    /// as `edge.toml`. Never panics, whatever the input.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str_named(text, DEFAULT_FILE_NAME)
    }

    /// Like [`Config::from_toml_str`], with `file` as the name in errors.
    pub fn from_toml_str_named(text: &str, file: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(text, file, &e))?;
        Validator { text, file }.build(raw)
    }

    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            file: file.clone(),
            message: e.to_string(),
        })?;
        Config::from_toml_str_named(&text, &file)
    }

    /// Loads `path` if given (it must exist), else [`Config::default`]. A file
    /// is never picked up from the working directory unasked.
    pub fn load_or_default(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(p) => Config::load(p),
            None => Ok(Config::default()),
        }
    }

    /// Applies command-line flags over the file: a non-empty `listen` replaces
    /// the list, `next_hop` replaces the next hop (validated as in the file),
    /// `cores = Some(n)` selects cores `0..n` (`n` must be at least 1).
    pub fn apply_overrides(&mut self, overrides: Overrides) -> Result<(), ConfigError> {
        let Overrides {
            listen,
            next_hop,
            cores,
            dispatcher_list,
            rpc,
        } = overrides;
        if let Some(addr) = rpc {
            let settings = RpcSettings {
                listen: Some(addr),
                token: self.rpc.token.clone(),
            };
            settings.check().map_err(|message| ConfigError::Flag {
                flag: "--rpc".into(),
                message,
            })?;
            self.rpc = settings;
        }
        if let Some(path) = dispatcher_list {
            if path.as_os_str().is_empty() {
                return Err(ConfigError::Flag {
                    flag: "--dispatcher-list".into(),
                    message: "needs a file name".into(),
                });
            }
            self.dispatcher.source = DestinationSource::List(path);
        }
        if let Some(hop) = next_hop {
            check_next_hop(&hop).map_err(|message| ConfigError::Flag {
                flag: "--next-hop".into(),
                message,
            })?;
            self.next_hop = Some(hop);
        }
        if let Some(n) = cores {
            if n == 0 {
                return Err(ConfigError::Flag {
                    flag: "--cores".into(),
                    message: "must be at least 1 (the first N cores are used)".into(),
                });
            }
            self.cores = (0..n).collect();
        }
        if !listen.is_empty() {
            if let Some(dup) = first_duplicate(&listen) {
                return Err(ConfigError::Flag {
                    flag: "--listen".into(),
                    message: format!("`{dup}` is given twice"),
                });
            }
            self.listen = listen;
        }
        Ok(())
    }

    /// The socket address of `next_hop`: its IP host (`localhost` is
    /// 127.0.0.1) and port, 5060 if the URI has none. `None` if there is no
    /// next hop or it is not a valid `sip:` URI with an IP host.
    pub fn next_hop_addr(&self) -> Option<SocketAddr> {
        self.next_hop
            .as_deref()
            .and_then(|h| next_hop_socket_addr(h).ok())
    }
}

/// Checks a next-hop URI the way the file and `--next-hop` are checked.
fn check_next_hop(uri: &str) -> Result<(), String> {
    next_hop_socket_addr(uri).map(|_| ())
}

fn next_hop_socket_addr(text: &str) -> Result<SocketAddr, String> {
    let uri = Uri::parse(text.as_bytes()).map_err(|e| format!("`{text}` is not a SIP URI: {e}"))?;
    if uri.scheme() != Scheme::Sip {
        return Err(format!("`{text}`: only sip: URIs are supported"));
    }
    let ip = match uri.host() {
        Some(Host::Ipv4(a)) => IpAddr::V4(a),
        Some(Host::Ipv6(a)) => IpAddr::V6(a),
        Some(Host::Name(n)) if n.eq_ignore_ascii_case(b"localhost") => {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
        _ => {
            return Err(format!(
                "`{text}`: the host must be an IP address or localhost (names are not resolved yet)"
            ))
        }
    };
    if let Some(t) = uri.transport() {
        if !t.eq_ignore_ascii_case(b"udp") {
            return Err(format!("`{text}`: only transport=udp is supported"));
        }
    }
    let port = uri.port().unwrap_or(DEFAULT_SIP_PORT);
    if port == 0 {
        return Err(format!("`{text}`: port 0 is not allowed"));
    }
    Ok(SocketAddr::new(ip, port))
}

fn first_duplicate<T: PartialEq>(items: &[T]) -> Option<&T> {
    items
        .iter()
        .enumerate()
        .find(|(i, a)| items[..*i].contains(a))
        .map(|(_, a)| a)
}

/// The file as serde reads it: every value optional and with its span.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    log_level: Option<Spanned<String>>,
    sip: Option<RawSip>,
    runtime: Option<RawRuntime>,
    transaction: Option<RawTransaction>,
    overload: Option<RawOverload>,
    dispatcher: Option<RawDispatcher>,
    rpc: Option<RawRpc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRpc {
    listen: Option<Spanned<String>>,
    token: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDispatcher {
    list: Option<Spanned<String>>,
    set: Option<u32>,
    algorithm: Option<Spanned<u32>>,
    dialog_timeout_s: Option<Spanned<u64>>,
    max_dialogs_per_shard: Option<Spanned<usize>>,
    reload_min_interval_ms: Option<u64>,
    failover: Option<RawFailover>,
    health: Option<RawHealth>,
    route: Option<Vec<RawRoute>>,
    destination: Option<Spanned<Vec<Spanned<TomlDestination>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFailover {
    attempts: Option<Spanned<u8>>,
    codes: Option<Vec<Spanned<u16>>>,
    timeout_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    interval_ms: Option<Spanned<u64>>,
    timeout_ms: Option<Spanned<u64>>,
    probing_threshold: Option<Spanned<u8>>,
    inactive_threshold: Option<Spanned<u8>>,
    accepted_codes: Option<Vec<Spanned<u16>>>,
    probe_all: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    method: Spanned<String>,
    set: Option<u32>,
    algorithm: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSip {
    listen: Option<Spanned<Vec<Spanned<String>>>>,
    next_hop: Option<Spanned<String>>,
    record_route: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    cores: Option<Spanned<Vec<Spanned<usize>>>>,
    recv_buffer_bytes: Option<Spanned<usize>>,
    send_buffer_bytes: Option<Spanned<usize>>,
    shutdown_grace_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransaction {
    t1_ms: Option<Spanned<u64>>,
    t2_ms: Option<Spanned<u64>>,
    t4_ms: Option<Spanned<u64>>,
    timer_c_ms: Option<Spanned<u64>>,
    max_transactions_per_shard: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverload {
    retry_after_s: Option<u32>,
}

/// Builds a [`Config`] from the raw structs, checking each value.
struct Validator<'a> {
    text: &'a str,
    file: &'a str,
}

impl Validator<'_> {
    fn invalid(&self, span: Range<usize>, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line: line_col(self.text, span.start).0,
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// The value of a nonzero integer field, or its default.
    fn nonzero<T: Copy + PartialEq + Default>(
        &self,
        value: Option<Spanned<T>>,
        field: &str,
        default: T,
        unit: &str,
    ) -> Result<T, ConfigError> {
        match value {
            None => Ok(default),
            Some(v) if *v.get_ref() == T::default() => {
                Err(self.invalid(v.span(), field, format!("must be greater than 0 ({unit})")))
            }
            Some(v) => Ok(v.into_inner()),
        }
    }

    fn build(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if let Some(level) = raw.log_level {
            if let Err(e) = tracing_subscriber::EnvFilter::try_new(level.get_ref()) {
                return Err(self.invalid(
                    level.span(),
                    "log_level",
                    format!("not a tracing filter ({e}); e.g. \"info\" or \"edge=debug,info\""),
                ));
            }
            config.log_level = level.into_inner();
        }
        if let Some(sip) = raw.sip {
            self.sip(sip, &mut config)?;
        }
        if let Some(rt) = raw.runtime {
            self.runtime(rt, &mut config)?;
        }
        if let Some(tr) = raw.transaction {
            self.transaction(tr, &mut config.proxy)?;
        }
        if let Some(ov) = raw.overload {
            if let Some(r) = ov.retry_after_s {
                config.proxy.retry_after_s = r;
            }
        }
        if let Some(d) = raw.dispatcher {
            self.dispatcher(d, &mut config.dispatcher)?;
        }
        if let Some(rpc) = raw.rpc {
            self.rpc(rpc, &mut config.rpc)?;
        }
        Ok(config)
    }

    fn algorithm(&self, n: Spanned<u32>, field: &str) -> Result<Algorithm, ConfigError> {
        Algorithm::from_number(*n.get_ref()).ok_or_else(|| {
            self.invalid(
                n.span(),
                field,
                format!(
                    "unknown algorithm {}; Kamailio numbers 0-6 and 8-11 are supported",
                    n.get_ref()
                ),
            )
        })
    }

    fn codes(
        &self,
        codes: Vec<Spanned<u16>>,
        field: &str,
        range: (u16, u16),
    ) -> Result<Vec<u16>, ConfigError> {
        codes
            .into_iter()
            .map(|c| match *c.get_ref() {
                n if (range.0..=range.1).contains(&n) => Ok(n),
                n => Err(self.invalid(
                    c.span(),
                    field,
                    format!("{n} is not a status code in {}..={}", range.0, range.1),
                )),
            })
            .collect()
    }

    fn dispatcher(
        &self,
        raw: RawDispatcher,
        out: &mut DispatcherSettings,
    ) -> Result<(), ConfigError> {
        let router = &mut out.router;
        if let Some(set) = raw.set {
            router.default_rule.set = set;
        }
        if let Some(a) = raw.algorithm {
            router.default_rule.algorithm = self.algorithm(a, "dispatcher.algorithm")?;
        }
        if let Some(t) = raw.dialog_timeout_s {
            let s = self.nonzero(Some(t), "dispatcher.dialog_timeout_s", 0, "seconds")?;
            router.dialog_timeout = std::time::Duration::from_secs(s);
        }
        router.max_dialogs = self.nonzero(
            raw.max_dialogs_per_shard,
            "dispatcher.max_dialogs_per_shard",
            router.max_dialogs,
            "calls",
        )?;
        if let Some(ms) = raw.reload_min_interval_ms {
            out.reload_min_interval_ms = ms;
        }
        for r in raw.route.unwrap_or_default() {
            let method = r.method.get_ref().trim().to_ascii_uppercase();
            if method.is_empty()
                || !method
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
            {
                return Err(self.invalid(
                    r.method.span(),
                    "dispatcher.route.method",
                    "must be a SIP method token, e.g. \"MESSAGE\"",
                ));
            }
            let rule = RouteRule {
                set: r.set.unwrap_or(router.default_rule.set),
                algorithm: match r.algorithm {
                    Some(a) => self.algorithm(a, "dispatcher.route.algorithm")?,
                    None => router.default_rule.algorithm,
                },
            };
            router.method_rules.retain(|(m, _)| *m != method);
            router.method_rules.push((method, rule));
        }
        let failover = &mut out.dispatcher.failover;
        if let Some(f) = raw.failover {
            if let Some(a) = f.attempts {
                let max = crate::dispatcher::MAX_CANDIDATES as u8;
                if !(1..=max).contains(a.get_ref()) {
                    return Err(self.invalid(
                        a.span(),
                        "dispatcher.failover.attempts",
                        format!("must be 1 to {max}"),
                    ));
                }
                failover.max_attempts = a.into_inner();
            }
            if let Some(codes) = f.codes {
                failover.codes =
                    CodeSet::of(&self.codes(codes, "dispatcher.failover.codes", (300, 699))?);
            }
            let ms = self.nonzero(
                f.timeout_ms,
                "dispatcher.failover.timeout_ms",
                failover.attempt_timeout.as_millis() as u64,
                "milliseconds",
            )?;
            failover.attempt_timeout = std::time::Duration::from_millis(ms);
        }
        let health = &mut out.dispatcher.health;
        if let Some(h) = raw.health {
            let ms = |d: std::time::Duration| d.as_millis() as u64;
            let interval = self.nonzero(
                h.interval_ms,
                "dispatcher.health.interval_ms",
                ms(health.probe_interval),
                "milliseconds",
            )?;
            health.probe_interval = std::time::Duration::from_millis(interval);
            let timeout = self.nonzero(
                h.timeout_ms,
                "dispatcher.health.timeout_ms",
                ms(health.probe_timeout),
                "milliseconds",
            )?;
            health.probe_timeout = std::time::Duration::from_millis(timeout);
            health.probing_threshold = self.nonzero(
                h.probing_threshold,
                "dispatcher.health.probing_threshold",
                health.probing_threshold,
                "failures",
            )?;
            health.inactive_threshold = self.nonzero(
                h.inactive_threshold,
                "dispatcher.health.inactive_threshold",
                health.inactive_threshold,
                "probes",
            )?;
            if let Some(codes) = h.accepted_codes {
                let mut set = CodeSet::range(200, 299);
                for c in self.codes(codes, "dispatcher.health.accepted_codes", (100, 699))? {
                    set.insert(c);
                }
                health.accepted_codes = set;
            }
            if let Some(all) = h.probe_all {
                health.probe_all = all;
            }
        }
        match (raw.list, raw.destination) {
            (Some(list), Some(dests)) if !dests.get_ref().is_empty() => {
                return Err(self.invalid(
                    list.span(),
                    "dispatcher.list",
                    "give either a list file or [[dispatcher.destination]] tables, not both",
                ));
            }
            (Some(list), _) => {
                if list.get_ref().trim().is_empty() {
                    return Err(self.invalid(list.span(), "dispatcher.list", "needs a file name"));
                }
                out.source = DestinationSource::List(PathBuf::from(list.into_inner()));
            }
            (None, Some(dests)) if !dests.get_ref().is_empty() => {
                let dests = dests.into_inner();
                let spans: Vec<Range<usize>> = dests.iter().map(Spanned::span).collect();
                let entries: Vec<TomlDestination> =
                    dests.into_iter().map(Spanned::into_inner).collect();
                let sets = DestinationSets::from_toml(&entries, self.file, &SetLimits::default())
                    .map_err(|e| {
                    let span = match &e.origin {
                        crate::dispatcher::Origin::Entry { index, .. } => {
                            spans.get(*index).cloned().unwrap_or(0..0)
                        }
                        _ => spans.first().cloned().unwrap_or(0..0),
                    };
                    self.invalid(span, "dispatcher.destination", e.kind.to_string())
                })?;
                out.source = DestinationSource::Inline(sets);
            }
            _ => {}
        }
        Ok(())
    }

    fn rpc(&self, raw: RawRpc, rpc: &mut RpcSettings) -> Result<(), ConfigError> {
        if let Some(token) = raw.token {
            let t = token.get_ref();
            if t.is_empty() || t.bytes().any(|b| !b.is_ascii_graphic()) {
                return Err(self.invalid(
                    token.span(),
                    "rpc.token",
                    "must be non-empty printable ASCII without spaces",
                ));
            }
            rpc.token = Some(token.into_inner());
        }
        if let Some(listen) = raw.listen {
            let addr: SocketAddr = listen.get_ref().parse().map_err(|_| {
                self.invalid(
                    listen.span(),
                    "rpc.listen",
                    "not an IP:PORT, e.g. \"127.0.0.1:5090\" or \"[::1]:5090\"",
                )
            })?;
            rpc.listen = Some(addr);
            rpc.check()
                .map_err(|m| self.invalid(listen.span(), "rpc.listen", m))?;
        }
        Ok(())
    }

    fn sip(&self, sip: RawSip, config: &mut Config) -> Result<(), ConfigError> {
        if let Some(list) = sip.listen {
            let span = list.span();
            let mut listen = Vec::new();
            for item in list.into_inner() {
                let addr: ListenAddr = item
                    .get_ref()
                    .parse()
                    .map_err(|e: ListenAddrError| self.invalid(item.span(), "sip.listen", e.0))?;
                if listen.contains(&addr) {
                    return Err(self.invalid(
                        item.span(),
                        "sip.listen",
                        format!("`{addr}` is listed twice"),
                    ));
                }
                listen.push(addr);
            }
            if listen.is_empty() {
                return Err(self.invalid(
                    span,
                    "sip.listen",
                    "needs at least one address, e.g. [\"udp:192.0.2.1:5060\"]",
                ));
            }
            config.listen = listen;
        }
        if let Some(hop) = sip.next_hop {
            check_next_hop(hop.get_ref())
                .map_err(|m| self.invalid(hop.span(), "sip.next_hop", m))?;
            config.next_hop = Some(hop.into_inner());
        }
        if let Some(rr) = sip.record_route {
            config.proxy.record_route = rr;
        }
        Ok(())
    }

    fn runtime(&self, rt: RawRuntime, config: &mut Config) -> Result<(), ConfigError> {
        if let Some(list) = rt.cores {
            let mut cores = Vec::new();
            for core in list.into_inner() {
                if cores.contains(core.get_ref()) {
                    return Err(self.invalid(
                        core.span(),
                        "runtime.cores",
                        format!("core {} is listed twice", core.get_ref()),
                    ));
                }
                cores.push(core.into_inner());
            }
            config.cores = cores;
        }
        config.recv_buffer_bytes = self.nonzero(
            rt.recv_buffer_bytes,
            "runtime.recv_buffer_bytes",
            config.recv_buffer_bytes,
            "bytes",
        )?;
        config.send_buffer_bytes = self.nonzero(
            rt.send_buffer_bytes,
            "runtime.send_buffer_bytes",
            config.send_buffer_bytes,
            "bytes",
        )?;
        if let Some(g) = rt.shutdown_grace_ms {
            config.shutdown_grace_ms = g;
        }
        Ok(())
    }

    fn transaction(&self, tr: RawTransaction, proxy: &mut ProxyConfig) -> Result<(), ConfigError> {
        let t2_span = tr.t2_ms.as_ref().map(Spanned::span);
        let t1_span = tr.t1_ms.as_ref().map(Spanned::span);
        proxy.t1_ms = self.nonzero(tr.t1_ms, "transaction.t1_ms", proxy.t1_ms, "milliseconds")?;
        proxy.t2_ms = self.nonzero(tr.t2_ms, "transaction.t2_ms", proxy.t2_ms, "milliseconds")?;
        proxy.t4_ms = self.nonzero(tr.t4_ms, "transaction.t4_ms", proxy.t4_ms, "milliseconds")?;
        proxy.timer_c_ms = self.nonzero(
            tr.timer_c_ms,
            "transaction.timer_c_ms",
            proxy.timer_c_ms,
            "milliseconds",
        )?;
        proxy.max_transactions = self.nonzero(
            tr.max_transactions_per_shard,
            "transaction.max_transactions_per_shard",
            proxy.max_transactions,
            "transactions",
        )?;
        if proxy.t2_ms < proxy.t1_ms {
            let message = format!(
                "t2_ms ({}) must not be less than t1_ms ({})",
                proxy.t2_ms, proxy.t1_ms
            );
            // Blame the value the file set; t2 if both or only t2 were set.
            return Err(match (t2_span, t1_span) {
                (Some(s), _) => self.invalid(s, "transaction.t2_ms", message),
                (None, Some(s)) => self.invalid(s, "transaction.t1_ms", message),
                (None, None) => self.invalid(0..0, "transaction.t2_ms", message),
            });
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Turns toml's error into [`ConfigError::Toml`] with line, column and, when
/// the parser knows it, the dotted key.
fn toml_error(text: &str, file: &str, e: &toml::de::Error) -> ConfigError {
    let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
    let message = e.message().trim_end().to_owned();
    ConfigError::Toml {
        file: file.to_owned(),
        line,
        column,
        field: toml_error_field(e, &message),
        message,
    }
}

/// The dotted path toml's error is about: the keys it went through (which it
/// shows, without the source text, as a final "in `a.b`" line) plus the key
/// named by an "unknown field" message.
fn toml_error_field(e: &toml::de::Error, message: &str) -> Option<String> {
    let mut bare = e.clone();
    bare.set_input(None);
    let rendered = bare.to_string();
    let mut path: Vec<String> = rendered
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("in `"))
        .and_then(|l| l.strip_suffix('`'))
        .map(|keys| keys.split('.').map(str::to_owned).collect())
        .unwrap_or_default();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((name, _)) = rest.split_once('`') {
            path.push(name.to_owned());
        }
    }
    (!path.is_empty()).then(|| path.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("a\nbc", 0), (1, 1));
        assert_eq!(line_col("a\nbc", 3), (2, 2));
        assert_eq!(line_col("a\né", 4), (2, 2));
        assert_eq!(line_col("", 10), (1, 1));
    }
}
