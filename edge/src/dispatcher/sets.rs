//! Destination sets: the immutable snapshot that a reload swaps in whole.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::hash;
use crate::sip::{Host, Scheme, Uri};

/// Flag bit (file and RPC): the destination starts inactive.
pub const FLAG_INACTIVE: u32 = 1;
/// Flag bit: the destination starts in trying state.
pub const FLAG_TRYING: u32 = 2;
/// Flag bit: the destination is disabled by the operator.
pub const FLAG_DISABLED: u32 = 4;
/// Flag bit: the destination is probed (what matters when not all are probed).
pub const FLAG_PROBING: u32 = 8;
/// Flag bit: the destination is never probed.
pub const FLAG_NO_PING: u32 = 32;

/// Bounds on what a destination list may hold. Every parser checks them, so a
/// huge or hostile file costs at most these amounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetLimits {
    /// Most sets.
    pub max_sets: usize,
    /// Most destinations in one set.
    pub max_destinations_per_set: usize,
    /// Most destinations over all sets (the dispatcher's slot table).
    pub max_destinations: usize,
    /// Longest attrs text of one destination, bytes.
    pub max_attrs_bytes: usize,
    /// Most `name=value` pairs in one attrs text.
    pub max_attrs: usize,
    /// Longest destination URI, bytes.
    pub max_uri_bytes: usize,
    /// Longest line of a `dispatcher.list`, bytes.
    pub max_line_bytes: usize,
    /// Largest `dispatcher.list`, bytes.
    pub max_file_bytes: usize,
}

impl Default for SetLimits {
    fn default() -> Self {
        SetLimits {
            max_sets: 256,
            max_destinations_per_set: 256,
            max_destinations: 4096,
            max_attrs_bytes: 512,
            max_attrs: 16,
            max_uri_bytes: 256,
            max_line_bytes: 2048,
            max_file_bytes: 1 << 20,
        }
    }
}

/// Where a bad entry came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The whole file.
    File {
        /// File name as given by the caller.
        file: String,
    },
    /// One line of a `dispatcher.list` (1-based).
    Line {
        /// File name.
        file: String,
        /// Line number, from 1.
        line: usize,
    },
    /// One `[[dispatcher.destination]]` entry of a TOML file (0-based).
    Entry {
        /// File name.
        file: String,
        /// Index in the destination array, from 0.
        index: usize,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { file } => write!(f, "{file}"),
            Origin::Line { file, line } => write!(f, "{file}:{line}"),
            Origin::Entry { file, index } => write!(f, "{file}: dispatcher.destination[{index}]"),
        }
    }
}

/// What is wrong with an entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoadErrorKind {
    /// The file is larger than [`SetLimits::max_file_bytes`].
    #[error("file larger than {max_bytes} bytes")]
    FileTooLarge {
        /// The limit.
        max_bytes: usize,
    },
    /// A line is longer than [`SetLimits::max_line_bytes`].
    #[error("line longer than {max_bytes} bytes")]
    LineTooLong {
        /// The limit.
        max_bytes: usize,
    },
    /// A line is not UTF-8.
    #[error("line is not UTF-8")]
    NotUtf8,
    /// The set id is not a decimal number.
    #[error("field `setid`: `{0}` is not a decimal number")]
    BadSetId(String),
    /// A set id without a destination.
    #[error("field `destination`: missing")]
    MissingUri,
    /// The destination is not a usable SIP URI.
    #[error("field `destination`: `{uri}`: {reason}")]
    BadUri {
        /// The text.
        uri: String,
        /// Why.
        reason: &'static str,
    },
    /// The flags are not decimal or `0x` hex.
    #[error("field `flags`: `{0}` is not a decimal or 0x hex number")]
    BadFlags(String),
    /// The priority is not a decimal number.
    #[error("field `priority`: `{0}` is not a decimal number")]
    BadPriority(String),
    /// More than five fields.
    #[error("unexpected field `{0}` after attrs (attrs take no spaces)")]
    ExtraField(String),
    /// Attrs longer than [`SetLimits::max_attrs_bytes`].
    #[error("field `attrs`: longer than {max_bytes} bytes")]
    AttrsTooLong {
        /// The limit.
        max_bytes: usize,
    },
    /// More attrs than [`SetLimits::max_attrs`].
    #[error("field `attrs`: more than {max} attributes")]
    TooManyAttrs {
        /// The limit.
        max: usize,
    },
    /// A known attribute with a bad value, given twice, or an attrs text with
    /// whitespace.
    #[error("attribute `{name}`: {reason}")]
    BadAttr {
        /// The attribute.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// More sets than [`SetLimits::max_sets`].
    #[error("more than {max} sets")]
    TooManySets {
        /// The limit.
        max: usize,
    },
    /// A set or the whole file holds too many destinations.
    #[error("more than {max} destinations {scope}")]
    TooManyDestinations {
        /// The limit.
        max: usize,
        /// `in set N` or `in all sets`.
        scope: String,
    },
    /// The same URI or duid twice in one set.
    #[error("set {set}: `{identity}` is already a destination of this set")]
    Duplicate {
        /// The set.
        set: u32,
        /// The URI or duid given twice.
        identity: String,
    },
    /// A TOML entry that does not have the expected shape.
    #[error("{0}")]
    BadToml(String),
}

/// A destination list that cannot be loaded: where and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {kind}")]
pub struct LoadError {
    /// File and line (or entry).
    pub origin: Origin,
    /// What is wrong.
    pub kind: LoadErrorKind,
}

/// The transport of a destination (`transport=` parameter, or `sips:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP, the default of `sip:`.
    Udp,
    /// TCP.
    Tcp,
    /// TLS, the default of `sips:`.
    Tls,
    /// SCTP.
    Sctp,
    /// WebSocket.
    Ws,
    /// Secure WebSocket.
    Wss,
}

impl Transport {
    fn from_param(value: &[u8]) -> Option<Self> {
        let table = [
            (&b"udp"[..], Transport::Udp),
            (b"tcp", Transport::Tcp),
            (b"tls", Transport::Tls),
            (b"sctp", Transport::Sctp),
            (b"ws", Transport::Ws),
            (b"wss", Transport::Wss),
        ];
        table
            .iter()
            .find(|(name, _)| value.eq_ignore_ascii_case(name))
            .map(|&(_, t)| t)
    }

    /// The port used when the URI names none (RFC 3261 19.1.2).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls | Transport::Wss => 5061,
            _ => 5060,
        }
    }
}

/// The host of a destination: an address, or a name the shell resolves.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TargetHost {
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A host name, not resolved here (A/AAAA, or SRV when there is no port).
    Name(String),
}

/// Where a destination's requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Address or name.
    pub host: TargetHost,
    /// The port of the URI, if it names one.
    pub port: Option<u16>,
    /// The transport.
    pub transport: Transport,
    /// The address to send to: set for an IP host at load, for a name once the
    /// shell resolved it ([`DestinationSets::resolved`]). A destination without
    /// one is never selected.
    pub addr: Option<SocketAddr>,
}

impl Target {
    fn from_uri(uri: &Uri<'_>) -> Result<Self, &'static str> {
        let tls_default = uri.scheme() == Scheme::Sips;
        let transport = match uri.transport() {
            Some(t) => Transport::from_param(t).ok_or("unknown transport")?,
            None if tls_default => Transport::Tls,
            None => Transport::Udp,
        };
        let port = uri.port();
        let host = match uri.host().ok_or("no host")? {
            Host::Ipv4(a) => TargetHost::Ip(IpAddr::V4(a)),
            Host::Ipv6(a) => TargetHost::Ip(IpAddr::V6(a)),
            Host::Name(n) => TargetHost::Name(String::from_utf8_lossy(n).to_ascii_lowercase()),
        };
        let addr = match host {
            TargetHost::Ip(ip) => Some(SocketAddr::new(
                ip,
                port.unwrap_or(transport.default_port()),
            )),
            TargetHost::Name(_) => None,
        };
        Ok(Target {
            host,
            port,
            transport,
            addr,
        })
    }
}

/// The attributes of a destination (`name=value;...`), the known ones parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attrs {
    /// The text as given (RPC `BODY`).
    pub body: String,
    /// `duid`: unique id of the destination.
    pub duid: Option<String>,
    /// `weight`: 0..=100, for algorithm 9 and the hash algorithms (absent = 1).
    pub weight: Option<u8>,
    /// `rweight`: 0..=100, for algorithm 11 (absent = 1).
    pub rweight: Option<u8>,
    /// `maxload`: most active calls for algorithm 10, 0 = unlimited.
    pub maxload: u32,
    /// `socket`: the sending socket.
    pub socket: Option<String>,
    /// `sockname`: the sending socket, by name.
    pub sockname: Option<String>,
    /// `ping_from`: From URI of the probes.
    pub ping_from: Option<String>,
    /// Every other attribute, kept as given.
    pub other: Vec<(String, String)>,
}

impl Attrs {
    /// Parses an attrs text (`duid=a;weight=50`), checking the known values.
    pub fn parse(body: &str, limits: &SetLimits) -> Result<Self, LoadErrorKind> {
        if body.len() > limits.max_attrs_bytes {
            return Err(LoadErrorKind::AttrsTooLong {
                max_bytes: limits.max_attrs_bytes,
            });
        }
        if body
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(bad_attr(
                "attrs",
                "contains whitespace or control characters",
            ));
        }
        let mut attrs = Attrs {
            body: body.to_string(),
            ..Attrs::default()
        };
        let pairs = body.split(';').filter(|p| !p.is_empty());
        for (count, pair) in pairs.enumerate() {
            if count >= limits.max_attrs {
                return Err(LoadErrorKind::TooManyAttrs {
                    max: limits.max_attrs,
                });
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            attrs.set(name, value)?;
        }
        Ok(attrs)
    }

    fn set(&mut self, name: &str, value: &str) -> Result<(), LoadErrorKind> {
        let text = |slot: &mut Option<String>| set_once(slot, name, value.to_string());
        match name.to_ascii_lowercase().as_str() {
            "duid" if value.is_empty() => Err(bad_attr(name, "empty")),
            "duid" => text(&mut self.duid),
            "socket" => text(&mut self.socket),
            "sockname" => text(&mut self.sockname),
            "ping_from" => text(&mut self.ping_from),
            "weight" => set_once(&mut self.weight, name, percent(name, value)?),
            "rweight" => set_once(&mut self.rweight, name, percent(name, value)?),
            "maxload" => {
                self.maxload = value.parse().map_err(|_| bad_attr(name, "not a number"))?;
                Ok(())
            }
            "" => Err(bad_attr(name, "empty name")),
            _ => {
                self.other.push((name.to_string(), value.to_string()));
                Ok(())
            }
        }
    }
}

fn bad_attr(name: &str, reason: &'static str) -> LoadErrorKind {
    LoadErrorKind::BadAttr {
        name: name.to_string(),
        reason,
    }
}

fn set_once<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), LoadErrorKind> {
    if slot.is_some() {
        return Err(bad_attr(name, "given twice"));
    }
    *slot = Some(value);
    Ok(())
}

fn percent(name: &str, value: &str) -> Result<u8, LoadErrorKind> {
    match value.parse::<u8>() {
        Ok(v) if v <= 100 => Ok(v),
        _ => Err(bad_attr(name, "not a number in 0..=100")),
    }
}

/// One destination of a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The URI as written.
    pub uri: String,
    /// Where requests go.
    pub target: Target,
    /// Flag bits as given ([`FLAG_DISABLED`], ...).
    pub flags: u32,
    /// Priority: algorithm 8 tries higher values first.
    pub priority: i32,
    /// Attributes.
    pub attrs: Attrs,
    /// Hash of the identity (duid, else URI): the rendezvous seed.
    pub(crate) seed: u64,
}

impl Destination {
    /// The identity that keeps a destination's hash placement: its `duid`, or
    /// the URI when it has none.
    pub fn identity(&self) -> &str {
        self.attrs.duid.as_deref().unwrap_or(&self.uri)
    }

    /// Weight for algorithm 9 and the hash algorithms (absent = 1).
    pub fn weight(&self) -> u32 {
        u32::from(self.attrs.weight.unwrap_or(1))
    }

    /// Relative weight for algorithm 11 (absent = 1).
    pub fn rweight(&self) -> u32 {
        u32::from(self.attrs.rweight.unwrap_or(1))
    }
}

/// The key by which shards and reloads name a destination: set and URI.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DestKey {
    /// The set id.
    pub set: u32,
    /// The URI as written.
    pub uri: Arc<str>,
}

/// One set: its id and destinations in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationSet {
    /// The set id (`setid`).
    pub id: u32,
    /// Destinations, in the order given.
    pub destinations: Vec<Destination>,
}

/// All sets: an immutable value, shared as `Arc<DestinationSets>` by shards.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DestinationSets {
    sets: Vec<DestinationSet>,
}

/// One raw entry before checking: the five fields of a `dispatcher.list` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestinationSpec<'a> {
    /// Set id.
    pub set: u32,
    /// Destination URI.
    pub uri: &'a str,
    /// Flag bits.
    pub flags: u32,
    /// Priority.
    pub priority: i32,
    /// Attrs text.
    pub attrs: &'a str,
}

impl DestinationSets {
    /// The sets, in ascending id order.
    pub fn sets(&self) -> &[DestinationSet] {
        &self.sets
    }

    /// The set with this id.
    pub fn set(&self, id: u32) -> Option<&DestinationSet> {
        self.position(id).map(|i| &self.sets[i])
    }

    pub(crate) fn position(&self, id: u32) -> Option<usize> {
        self.sets.binary_search_by_key(&id, |s| s.id).ok()
    }

    /// Number of destinations over all sets.
    pub fn destination_count(&self) -> usize {
        self.sets.iter().map(|s| s.destinations.len()).sum()
    }

    /// Builds sets from raw entries; the first bad one fails the whole build,
    /// named by `file` and its index.
    pub fn from_specs<'a>(
        specs: impl IntoIterator<Item = DestinationSpec<'a>>,
        file: &str,
        limits: &SetLimits,
    ) -> Result<Self, LoadError> {
        let mut builder = SetsBuilder::new(*limits);
        for (index, spec) in specs.into_iter().enumerate() {
            builder.push(&spec).map_err(|kind| LoadError {
                origin: Origin::Entry {
                    file: file.to_string(),
                    index,
                },
                kind,
            })?;
        }
        Ok(builder.finish())
    }

    /// A copy whose host names have addresses: `resolve(name, port, transport)`
    /// gives the address to use (or `None`, leaving the destination unselectable).
    /// The shell calls it at load and reload, after DNS; IP hosts are kept.
    pub fn resolved(
        &self,
        mut resolve: impl FnMut(&str, Option<u16>, Transport) -> Option<SocketAddr>,
    ) -> DestinationSets {
        let mut copy = self.clone();
        let all = copy.sets.iter_mut().flat_map(|s| s.destinations.iter_mut());
        for d in all {
            if let TargetHost::Name(name) = &d.target.host {
                d.target.addr = resolve(name, d.target.port, d.target.transport);
            }
        }
        copy
    }
}

/// Collects checked destinations into sets, enforcing the limits.
pub(crate) struct SetsBuilder {
    limits: SetLimits,
    sets: BTreeMap<u32, Vec<Destination>>,
    identities: HashSet<(u32, String)>,
    count: usize,
}

impl SetsBuilder {
    pub(crate) fn new(limits: SetLimits) -> Self {
        SetsBuilder {
            limits,
            sets: BTreeMap::new(),
            identities: HashSet::new(),
            count: 0,
        }
    }

    /// Checks one entry and adds it.
    pub(crate) fn push(&mut self, spec: &DestinationSpec<'_>) -> Result<(), LoadErrorKind> {
        let dest = destination(spec, &self.limits)?;
        self.check_room(spec.set)?;
        for id in [Some(dest.uri.as_str()), dest.attrs.duid.as_deref()]
            .into_iter()
            .flatten()
        {
            if !self.identities.insert((spec.set, id.to_string())) {
                return Err(LoadErrorKind::Duplicate {
                    set: spec.set,
                    identity: id.to_string(),
                });
            }
        }
        self.sets.entry(spec.set).or_default().push(dest);
        self.count += 1;
        Ok(())
    }

    fn check_room(&self, set: u32) -> Result<(), LoadErrorKind> {
        let l = &self.limits;
        if self.count >= l.max_destinations {
            let scope = "in all sets".to_string();
            return Err(LoadErrorKind::TooManyDestinations {
                max: l.max_destinations,
                scope,
            });
        }
        match self.sets.get(&set) {
            None if self.sets.len() >= l.max_sets => {
                Err(LoadErrorKind::TooManySets { max: l.max_sets })
            }
            Some(d) if d.len() >= l.max_destinations_per_set => {
                let (max, scope) = (l.max_destinations_per_set, format!("in set {set}"));
                Err(LoadErrorKind::TooManyDestinations { max, scope })
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn finish(self) -> DestinationSets {
        let sets = self
            .sets
            .into_iter()
            .map(|(id, destinations)| DestinationSet { id, destinations });
        DestinationSets {
            sets: sets.collect(),
        }
    }
}

/// Checks one entry: URI, target and attrs.
fn destination(
    spec: &DestinationSpec<'_>,
    limits: &SetLimits,
) -> Result<Destination, LoadErrorKind> {
    let bad_uri = |reason| LoadErrorKind::BadUri {
        uri: spec.uri.to_string(),
        reason,
    };
    if spec.uri.len() > limits.max_uri_bytes {
        return Err(bad_uri("URI too long"));
    }
    let uri = Uri::parse(spec.uri.as_bytes()).map_err(bad_uri)?;
    if !matches!(uri.scheme(), Scheme::Sip | Scheme::Sips) {
        return Err(bad_uri("not a sip: or sips: URI"));
    }
    let target = Target::from_uri(&uri).map_err(bad_uri)?;
    let attrs = Attrs::parse(spec.attrs, limits)?;
    let identity = attrs.duid.as_deref().unwrap_or(spec.uri);
    Ok(Destination {
        uri: spec.uri.to_string(),
        target,
        flags: spec.flags,
        priority: spec.priority,
        seed: hash::identity_seed(identity.as_bytes()),
        attrs,
    })
}
