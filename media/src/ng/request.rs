//! The typed ng request: which command, the call it names, and the options
//! Kamailio's `rtpengine` module sends with it.
//!
//! Keys are matched whatever their spelling: a space, a hyphen or an
//! underscore between words, any ASCII case (`received-from`,
//! `received from`, `ICE`, `ice`). Keys we do not use are ignored, as
//! rtpengine ignores them; the same key twice (in any two spellings) is an
//! error, since we could not tell which one the client meant.
//!
//! Each command's required keys are checked in rtpengine's order, and a
//! missing one gives rtpengine's sentence (`No call-id in message`).
//! Unknown flags, `replace` entries and option values are not errors: they
//! come back as [`Warning`]s for the reply's `warning` key.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use thiserror::Error;

use super::bencode::{self, DecodeError, Dict, Limits, Value};

/// The commands we answer, by their ng names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommandKind {
    /// `ping`: a liveness probe, answered `pong`.
    Ping,
    /// `offer`: an SDP offer to rewrite, creating or updating a call.
    Offer,
    /// `answer`: the SDP answer to rewrite.
    Answer,
    /// `delete`: end a call (or one branch of it).
    Delete,
    /// `query`: a call's statistics.
    Query,
    /// `list`: the call-ids we hold.
    List,
    /// `statistics`: the relay's totals.
    Statistics,
}

impl CommandKind {
    /// Every command, in the order of the table above.
    pub const ALL: [CommandKind; 7] = [
        CommandKind::Ping,
        CommandKind::Offer,
        CommandKind::Answer,
        CommandKind::Delete,
        CommandKind::Query,
        CommandKind::List,
        CommandKind::Statistics,
    ];

    /// The command's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            CommandKind::Ping => "ping",
            CommandKind::Offer => "offer",
            CommandKind::Answer => "answer",
            CommandKind::Delete => "delete",
            CommandKind::Query => "query",
            CommandKind::List => "list",
            CommandKind::Statistics => "statistics",
        }
    }

    /// The command called `name` (any ASCII case).
    pub fn from_name(name: &[u8]) -> Option<Self> {
        Self::ALL.into_iter().find(|c| token_eq(name, c.name()))
    }
}

/// The keys that name one side of a call. A re-INVITE from the callee
/// carries the callee's tag as `from_tag`: match sides by tag, not role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallIds {
    /// `call-id`, never empty.
    pub call_id: Bytes,
    /// `from-tag`, never empty.
    pub from_tag: Bytes,
    /// `via-branch`, if sent.
    pub via_branch: Option<Bytes>,
}

/// A command with the keys it requires, checked present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `ping`.
    Ping,
    /// `offer`: `sdp`, `call-id` and `from-tag` required; `to-tag` is sent
    /// on in-dialog offers (re-INVITEs).
    Offer {
        /// The call and the offering side.
        ids: CallIds,
        /// `to-tag`, if sent.
        to_tag: Option<Bytes>,
        /// The SDP to rewrite, exactly as received (CRLFs intact).
        sdp: Bytes,
    },
    /// `answer`: as `offer`, plus `to-tag`.
    Answer {
        /// The call and the offering side.
        ids: CallIds,
        /// `to-tag`: the answering side.
        to_tag: Bytes,
        /// The SDP to rewrite, exactly as received.
        sdp: Bytes,
    },
    /// `delete`: `call-id` and `from-tag` required.
    Delete {
        /// The call and the side asking.
        ids: CallIds,
        /// `to-tag`, if sent.
        to_tag: Option<Bytes>,
    },
    /// `query`: `call-id` required.
    Query {
        /// `call-id`, never empty.
        call_id: Bytes,
        /// `from-tag`, if sent.
        from_tag: Option<Bytes>,
        /// `to-tag`, if sent.
        to_tag: Option<Bytes>,
    },
    /// `list`.
    List {
        /// `limit`: at most this many call-ids, if sent.
        limit: Option<u32>,
    },
    /// `statistics`.
    Statistics,
}

impl Command {
    /// Which command this is.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::Ping => CommandKind::Ping,
            Command::Offer { .. } => CommandKind::Offer,
            Command::Answer { .. } => CommandKind::Answer,
            Command::Delete { .. } => CommandKind::Delete,
            Command::Query { .. } => CommandKind::Query,
            Command::List { .. } => CommandKind::List,
            Command::Statistics => CommandKind::Statistics,
        }
    }
}

/// The `flags` we know. Others come back as [`Warning::UnknownFlag`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flag {
    /// `trust-address`: use the SDP's address, not the packet's source.
    TrustAddress,
    /// `symmetric`: send media back to where it comes from.
    Symmetric,
    /// `asymmetric`: send media where the SDP says.
    Asymmetric,
    /// `strict-source`: drop media from other sources after latching.
    StrictSource,
    /// `port-latching`: latch onto the first source once, not again.
    PortLatching,
    /// `fast` (delete): reply without the call's statistics.
    Fast,
    /// `fatal` (delete): an unknown call is an error, not a warning.
    Fatal,
}

const FLAGS: [(&str, Flag); 7] = [
    ("trust-address", Flag::TrustAddress),
    ("symmetric", Flag::Symmetric),
    ("asymmetric", Flag::Asymmetric),
    ("strict-source", Flag::StrictSource),
    ("port-latching", Flag::PortLatching),
    ("fast", Flag::Fast),
    ("fatal", Flag::Fatal),
];

/// The `replace` entries we know. Others are a [`Warning`] only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Replace {
    /// `origin`: rewrite the `o=` line's address.
    Origin,
    /// `session-connection`: rewrite the session-level `c=` line.
    SessionConnection,
    /// `SDP-version`: bump the `o=` line's version when the SDP changes.
    SdpVersion,
}

const REPLACES: [(&str, Replace); 3] = [
    ("origin", Replace::Origin),
    ("session-connection", Replace::SessionConnection),
    ("sdp-version", Replace::SdpVersion),
];

/// `ICE`: what to do with ICE attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ice {
    /// `remove`: strip ICE attributes.
    Remove,
    /// `force`: add our own ICE candidates.
    Force,
}

const ICE: [(&str, Ice); 2] = [("remove", Ice::Remove), ("force", Ice::Force)];

/// `transport-protocol`: the profile for the outgoing SDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportProtocol {
    /// `RTP/AVP`.
    RtpAvp,
    /// `RTP/SAVP`.
    RtpSavp,
    /// `RTP/AVPF`.
    RtpAvpf,
    /// `RTP/SAVPF`.
    RtpSavpf,
    /// `UDP/TLS/RTP/SAVP`.
    UdpTlsRtpSavp,
    /// `UDP/TLS/RTP/SAVPF`.
    UdpTlsRtpSavpf,
}

const TRANSPORT_PROTOCOLS: [(&str, TransportProtocol); 6] = [
    ("RTP/AVP", TransportProtocol::RtpAvp),
    ("RTP/SAVP", TransportProtocol::RtpSavp),
    ("RTP/AVPF", TransportProtocol::RtpAvpf),
    ("RTP/SAVPF", TransportProtocol::RtpSavpf),
    ("UDP/TLS/RTP/SAVP", TransportProtocol::UdpTlsRtpSavp),
    ("UDP/TLS/RTP/SAVPF", TransportProtocol::UdpTlsRtpSavpf),
];

impl TransportProtocol {
    /// The name as written in SDP `m=` lines.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportProtocol::RtpAvp => "RTP/AVP",
            TransportProtocol::RtpSavp => "RTP/SAVP",
            TransportProtocol::RtpAvpf => "RTP/AVPF",
            TransportProtocol::RtpSavpf => "RTP/SAVPF",
            TransportProtocol::UdpTlsRtpSavp => "UDP/TLS/RTP/SAVP",
            TransportProtocol::UdpTlsRtpSavpf => "UDP/TLS/RTP/SAVPF",
        }
    }
}

/// `rtcp-mux` entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RtcpMux {
    /// `offer`: offer rtcp-mux to the other side.
    Offer,
    /// `require`: use rtcp-mux on the outgoing side whatever it says.
    Require,
    /// `demux`: take rtcp-mux in, send RTCP separately out.
    Demux,
    /// `accept`: accept rtcp-mux when offered.
    Accept,
    /// `reject`: refuse rtcp-mux.
    Reject,
}

const RTCP_MUX: [(&str, RtcpMux); 5] = [
    ("offer", RtcpMux::Offer),
    ("require", RtcpMux::Require),
    ("demux", RtcpMux::Demux),
    ("accept", RtcpMux::Accept),
    ("reject", RtcpMux::Reject),
];

/// `sip-message-type`: whether the SDP came in a request or a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SipMessageType {
    /// `sip-request` (also `request`).
    Request,
    /// `sip-response` (also `sip-reply`, `response`, `reply`).
    Response,
}

const SIP_MESSAGE_TYPES: [(&str, SipMessageType); 6] = [
    ("sip-request", SipMessageType::Request),
    ("request", SipMessageType::Request),
    ("sip-response", SipMessageType::Response),
    ("sip-reply", SipMessageType::Response),
    ("response", SipMessageType::Response),
    ("reply", SipMessageType::Response),
];

/// The options that come with a command. Absent keys leave the defaults
/// (empty lists, `None`, `false`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `flags`, the known ones, in the order sent.
    pub flags: Vec<Flag>,
    /// `replace`, the known entries, in the order sent.
    pub replace: Vec<Replace>,
    /// `direction`: up to two interface names (from, to).
    pub direction: Vec<Bytes>,
    /// `ICE`.
    pub ice: Option<Ice>,
    /// `transport-protocol`.
    pub transport_protocol: Option<TransportProtocol>,
    /// `rtcp-mux`, the known entries.
    pub rtcp_mux: Vec<RtcpMux>,
    /// `received-from`: where the SIP message came from.
    pub received_from: Option<IpAddr>,
    /// `supports` holds `load limit`: the client understands a
    /// `result` of `load limit` and will try the next relay.
    pub supports_load_limit: bool,
    /// `sip-message-type`.
    pub sip_message_type: Option<SipMessageType>,
}

impl Options {
    /// Whether `flags` holds `flag`.
    pub fn has_flag(&self, flag: Flag) -> bool {
        self.flags.contains(&flag)
    }

    /// Whether `replace` holds `what`.
    pub fn replaces(&self, what: Replace) -> bool {
        self.replace.contains(&what)
    }
}

/// A request: the command with its required keys, and its options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// What to do, with the keys it needs.
    pub command: Command,
    /// How to do it.
    pub options: Options,
}

/// A problem that does not stop the command, for the reply's `warning`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// A `flags` entry we do not know (normalized, at most
    /// [`MAX_SHOWN_BYTES`]).
    UnknownFlag(String),
    /// A `replace` entry we do not know.
    UnknownReplace(String),
    /// An unknown value for a key that takes one of a set of values.
    UnknownValue {
        /// The key, as rtpengine spells it.
        key: &'static str,
        /// The value (at most [`MAX_SHOWN_BYTES`]).
        value: String,
    },
    /// A warning from the command itself, e.g. delete's
    /// [`super::reply::CALL_NOT_FOUND`].
    Other(String),
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::UnknownFlag(flag) => write!(f, "Unknown flag \"{flag}\""),
            Warning::UnknownReplace(what) => write!(f, "Unknown replace entry \"{what}\""),
            Warning::UnknownValue { key, value } => {
                write!(f, "Unknown value \"{value}\" for key \"{key}\"")
            }
            Warning::Other(text) => f.write_str(text),
        }
    }
}

/// Peer text quoted in a warning is cut to this many bytes, so that a
/// client cannot make our replies large.
pub const MAX_SHOWN_BYTES: usize = 64;

/// A key a command needs that the request lacks (or sent empty); the
/// sentences are rtpengine's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum Missing {
    /// No `sdp`.
    #[error("No SDP body in message")]
    Sdp,
    /// No `call-id`.
    #[error("No call-id in message")]
    CallId,
    /// No `from-tag`.
    #[error("No from-tag in message")]
    FromTag,
    /// No `to-tag`.
    #[error("No to-tag in message")]
    ToTag,
}

/// Why a request is refused; the message is the reply's `error-reason`.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RequestError {
    /// Nothing after the cookie.
    #[error("Invalid data (no payload)")]
    NoPayload,
    /// Neither bencode nor JSON, or over a limit.
    #[error("Could not decode dictionary: {0}")]
    Decode(#[from] DecodeError),
    /// A valid value, but not a dictionary.
    #[error("Could not decode dictionary: the message is {0}, not a dictionary")]
    NotDictionary(&'static str),
    /// No `command` key.
    #[error("Dictionary contains no key \"command\"")]
    NoCommand,
    /// A `command` we do not answer (its name, at most
    /// [`MAX_SHOWN_BYTES`]).
    #[error("Unrecognized command \"{0}\"")]
    UnknownCommand(String),
    /// A key the command requires is absent or empty.
    #[error("{0}")]
    Missing(Missing),
    /// A key with a value of the wrong kind.
    #[error("Key \"{key}\" must be {expected}, not {found}")]
    WrongType {
        /// The key, as rtpengine spells it.
        key: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it is.
        found: &'static str,
    },
    /// The same key twice, in any two spellings.
    #[error("Duplicate key \"{0}\"")]
    DuplicateKey(&'static str),
    /// A value of the right kind that we cannot use.
    #[error("Invalid value for key \"{key}\": {reason}")]
    InvalidValue {
        /// The key, as rtpengine spells it.
        key: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Parses a request dictionary (the part after the cookie), bencode or
/// JSON, into the request and the warnings for its reply.
pub fn parse_request(
    body: &Bytes,
    limits: &Limits,
) -> Result<(Request, Vec<Warning>), RequestError> {
    if body.is_empty() {
        return Err(RequestError::NoPayload);
    }
    let value = bencode::parse(body, limits)?;
    let Value::Dict(dict) = &value else {
        return Err(RequestError::NotDictionary(value.kind()));
    };
    let fields = Fields::collect(dict)?;
    let command = fields.command()?;
    let mut warnings = Vec::new();
    let options = fields.options(&mut warnings)?;
    Ok((Request { command, options }, warnings))
}

/// The keys we read, as rtpengine spells them. [`Key`]'s discriminants
/// index this table.
const KEYS: [&str; 16] = [
    "command",
    "call-id",
    "from-tag",
    "to-tag",
    "via-branch",
    "sdp",
    "flags",
    "replace",
    "direction",
    "ICE",
    "transport-protocol",
    "rtcp-mux",
    "received-from",
    "supports",
    "sip-message-type",
    "limit",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Command,
    CallId,
    FromTag,
    ToTag,
    ViaBranch,
    Sdp,
    Flags,
    Replace,
    Direction,
    Ice,
    TransportProtocol,
    RtcpMux,
    ReceivedFrom,
    Supports,
    SipMessageType,
    Limit,
}

const ALL_KEYS: [Key; 16] = [
    Key::Command,
    Key::CallId,
    Key::FromTag,
    Key::ToTag,
    Key::ViaBranch,
    Key::Sdp,
    Key::Flags,
    Key::Replace,
    Key::Direction,
    Key::Ice,
    Key::TransportProtocol,
    Key::RtcpMux,
    Key::ReceivedFrom,
    Key::Supports,
    Key::SipMessageType,
    Key::Limit,
];

impl Key {
    fn name(self) -> &'static str {
        KEYS[self as usize]
    }

    fn lookup(raw: &[u8]) -> Option<Key> {
        ALL_KEYS.into_iter().find(|k| token_eq(raw, k.name()))
    }
}

/// Whether `raw` is `canonical` written with spaces or underscores for
/// hyphens, in any ASCII case.
fn token_eq(raw: &[u8], canonical: &str) -> bool {
    let hyphenate = |b: u8| match b {
        b' ' | b'_' => b'-',
        b => b.to_ascii_lowercase(),
    };
    raw.len() == canonical.len()
        && raw
            .iter()
            .zip(canonical.bytes())
            .all(|(&r, c)| hyphenate(r) == hyphenate(c))
}

fn lookup<T: Copy>(table: &[(&str, T)], raw: &[u8]) -> Option<T> {
    table
        .iter()
        .find(|(name, _)| token_eq(raw, name))
        .map(|(_, v)| *v)
}

/// Peer text for a message: normalized like keys, lossy UTF-8, cut to
/// [`MAX_SHOWN_BYTES`] (on a character boundary).
fn shown(raw: &[u8]) -> String {
    let cut = &raw[..raw.len().min(MAX_SHOWN_BYTES)];
    let mut text: String = String::from_utf8_lossy(cut)
        .chars()
        .map(|c| match c {
            ' ' | '_' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    while text.len() > MAX_SHOWN_BYTES {
        text.pop();
    }
    text
}

/// The request's known keys, each at most once.
struct Fields<'a> {
    values: [Option<&'a Value>; KEYS.len()],
}

impl<'a> Fields<'a> {
    fn collect(dict: &'a Dict) -> Result<Self, RequestError> {
        let mut values = [None; KEYS.len()];
        for (raw, value) in dict.iter() {
            let Some(key) = Key::lookup(raw) else {
                continue;
            };
            let slot = &mut values[key as usize];
            if slot.is_some() {
                return Err(RequestError::DuplicateKey(key.name()));
            }
            *slot = Some(value);
        }
        Ok(Fields { values })
    }

    fn get(&self, key: Key) -> Option<&'a Value> {
        self.values[key as usize]
    }

    /// A string key, if present.
    fn string(&self, key: Key) -> Result<Option<Bytes>, RequestError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bytes(b)) => Ok(Some(b.clone())),
            Some(other) => Err(wrong_type(key, "a string", other)),
        }
    }

    /// A string key that must be present and not empty.
    fn required(&self, key: Key, missing: Missing) -> Result<Bytes, RequestError> {
        match self.string(key)? {
            Some(b) if !b.is_empty() => Ok(b),
            _ => Err(RequestError::Missing(missing)),
        }
    }

    /// A list-of-strings key; absent is empty.
    fn strings(&self, key: Key) -> Result<Vec<&'a Bytes>, RequestError> {
        const EXPECTED: &str = "a list of strings";
        let Some(value) = self.get(key) else {
            return Ok(Vec::new());
        };
        let items = value
            .as_list()
            .ok_or_else(|| wrong_type(key, EXPECTED, value))?;
        items
            .iter()
            .map(|item| {
                item.as_bytes()
                    .ok_or_else(|| wrong_type(key, EXPECTED, item))
            })
            .collect()
    }

    fn call_ids(&self) -> Result<CallIds, RequestError> {
        Ok(CallIds {
            call_id: self.required(Key::CallId, Missing::CallId)?,
            from_tag: self.required(Key::FromTag, Missing::FromTag)?,
            via_branch: self.string(Key::ViaBranch)?,
        })
    }

    fn command(&self) -> Result<Command, RequestError> {
        let name = self.string(Key::Command)?.ok_or(RequestError::NoCommand)?;
        let kind = CommandKind::from_name(&name)
            .ok_or_else(|| RequestError::UnknownCommand(shown(&name)))?;
        match kind {
            CommandKind::Ping => Ok(Command::Ping),
            CommandKind::Offer => {
                // rtpengine's order: sdp, call-id, from-tag.
                let sdp = self.required(Key::Sdp, Missing::Sdp)?;
                let ids = self.call_ids()?;
                let to_tag = self.string(Key::ToTag)?;
                Ok(Command::Offer { ids, to_tag, sdp })
            }
            CommandKind::Answer => {
                let sdp = self.required(Key::Sdp, Missing::Sdp)?;
                let ids = self.call_ids()?;
                let to_tag = self.required(Key::ToTag, Missing::ToTag)?;
                Ok(Command::Answer { ids, to_tag, sdp })
            }
            CommandKind::Delete => Ok(Command::Delete {
                ids: self.call_ids()?,
                to_tag: self.string(Key::ToTag)?,
            }),
            CommandKind::Query => Ok(Command::Query {
                call_id: self.required(Key::CallId, Missing::CallId)?,
                from_tag: self.string(Key::FromTag)?,
                to_tag: self.string(Key::ToTag)?,
            }),
            CommandKind::List => Ok(Command::List {
                limit: self.limit()?,
            }),
            CommandKind::Statistics => Ok(Command::Statistics),
        }
    }

    fn limit(&self) -> Result<Option<u32>, RequestError> {
        let Some(value) = self.get(Key::Limit) else {
            return Ok(None);
        };
        let n = value
            .as_int()
            .ok_or_else(|| wrong_type(Key::Limit, "an integer", value))?;
        u32::try_from(n)
            .map(Some)
            .map_err(|_| RequestError::InvalidValue {
                key: Key::Limit.name(),
                reason: "must be from 0 to 4294967295",
            })
    }

    fn options(&self, warnings: &mut Vec<Warning>) -> Result<Options, RequestError> {
        Ok(Options {
            flags: self.known(Key::Flags, &FLAGS, warnings, |raw| {
                Warning::UnknownFlag(shown(raw))
            })?,
            replace: self.known(Key::Replace, &REPLACES, warnings, |raw| {
                Warning::UnknownReplace(shown(raw))
            })?,
            direction: self.direction()?,
            ice: self.one_of(Key::Ice, &ICE, warnings)?,
            transport_protocol: self.one_of(
                Key::TransportProtocol,
                &TRANSPORT_PROTOCOLS,
                warnings,
            )?,
            rtcp_mux: self.known(Key::RtcpMux, &RTCP_MUX, warnings, |raw| {
                unknown_value(Key::RtcpMux, raw)
            })?,
            received_from: self.received_from()?,
            supports_load_limit: self
                .strings(Key::Supports)?
                .iter()
                .any(|s| token_eq(s, "load-limit")),
            sip_message_type: self.one_of(Key::SipMessageType, &SIP_MESSAGE_TYPES, warnings)?,
        })
    }

    /// A list key's known entries; each unknown one adds a warning.
    fn known<T: Copy>(
        &self,
        key: Key,
        table: &[(&str, T)],
        warnings: &mut Vec<Warning>,
        warn: impl Fn(&[u8]) -> Warning,
    ) -> Result<Vec<T>, RequestError> {
        let mut out = Vec::new();
        for raw in self.strings(key)? {
            match lookup(table, raw) {
                Some(v) => out.push(v),
                None => warnings.push(warn(raw)),
            }
        }
        Ok(out)
    }

    /// A string key that takes one of `table`'s values; an unknown one is
    /// a warning and leaves the option unset.
    fn one_of<T: Copy>(
        &self,
        key: Key,
        table: &[(&str, T)],
        warnings: &mut Vec<Warning>,
    ) -> Result<Option<T>, RequestError> {
        let Some(raw) = self.string(key)? else {
            return Ok(None);
        };
        let found = lookup(table, &raw);
        if found.is_none() {
            warnings.push(unknown_value(key, &raw));
        }
        Ok(found)
    }

    fn direction(&self) -> Result<Vec<Bytes>, RequestError> {
        let names = self.strings(Key::Direction)?;
        if names.len() > 2 {
            return Err(RequestError::InvalidValue {
                key: Key::Direction.name(),
                reason: "at most two interface names",
            });
        }
        Ok(names.into_iter().cloned().collect())
    }

    /// `["IP4", "198.51.100.1"]` or `["IP6", "2001:db8::1"]`.
    fn received_from(&self) -> Result<Option<IpAddr>, RequestError> {
        let parts = self.strings(Key::ReceivedFrom)?;
        let invalid = |reason| RequestError::InvalidValue {
            key: Key::ReceivedFrom.name(),
            reason,
        };
        match parts.as_slice() {
            [] if self.get(Key::ReceivedFrom).is_none() => Ok(None),
            [family, address] => parse_address(family, address).map(Some).map_err(invalid),
            _ => Err(invalid("must be a family and an address")),
        }
    }
}

fn parse_address(family: &[u8], address: &[u8]) -> Result<IpAddr, &'static str> {
    let text = std::str::from_utf8(address).map_err(|_| "the address is not text")?;
    if token_eq(family, "IP4") {
        let v4: Ipv4Addr = text.parse().map_err(|_| "not an IPv4 address")?;
        Ok(IpAddr::V4(v4))
    } else if token_eq(family, "IP6") {
        let v6: Ipv6Addr = text.parse().map_err(|_| "not an IPv6 address")?;
        Ok(IpAddr::V6(v6))
    } else {
        Err("the family must be IP4 or IP6")
    }
}

fn wrong_type(key: Key, expected: &'static str, found: &Value) -> RequestError {
    RequestError::WrongType {
        key: key.name(),
        expected,
        found: found.kind(),
    }
}

fn unknown_value(key: Key, raw: &[u8]) -> Warning {
    Warning::UnknownValue {
        key: key.name(),
        value: shown(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &'static [u8]) -> Result<(Request, Vec<Warning>), RequestError> {
        parse_request(&Bytes::from_static(body), &Limits::default())
    }

    fn encode(entries: Vec<(&'static str, Value)>) -> Bytes {
        let mut d = Dict::new();
        for (k, v) in entries {
            d.push(k, v);
        }
        d.to_bytes()
    }

    fn list(items: &[&'static str]) -> Value {
        Value::List(items.iter().map(|s| Value::from(*s)).collect())
    }

    fn offer_ids() -> CallIds {
        CallIds {
            call_id: Bytes::from_static(b"c1"),
            from_tag: Bytes::from_static(b"f1"),
            via_branch: None,
        }
    }

    #[test]
    fn tables_match_their_enums() {
        for (i, key) in ALL_KEYS.iter().enumerate() {
            assert_eq!(*key as usize, i);
        }
        for (name, p) in TRANSPORT_PROTOCOLS {
            assert_eq!(p.as_str(), name);
        }
    }

    #[test]
    fn ping_needs_nothing_else() {
        let (req, warnings) = parse(b"d7:command4:pinge").expect("valid");
        assert_eq!(req.command, Command::Ping);
        assert_eq!(req.options, Options::default());
        assert!(warnings.is_empty());
    }

    #[test]
    fn offer_parses_with_its_options() {
        let body = encode(vec![
            ("command", "offer".into()),
            ("sdp", "v=0".into()),
            ("call-id", "c1".into()),
            ("from-tag", "f1".into()),
            ("flags", list(&["trust-address", "symmetric"])),
            ("replace", list(&["origin", "SDP-version"])),
            ("direction", list(&["internal", "external"])),
            ("ICE", "force".into()),
            ("transport-protocol", "RTP/SAVP".into()),
            ("rtcp-mux", list(&["demux"])),
            ("received-from", list(&["IP4", "198.51.100.1"])),
            ("supports", list(&["load limit"])),
            ("sip-message-type", "sip-request".into()),
        ]);
        let (req, warnings) = parse_request(&body, &Limits::default()).expect("valid");
        assert_eq!(
            req.command,
            Command::Offer {
                ids: offer_ids(),
                to_tag: None,
                sdp: Bytes::from_static(b"v=0"),
            }
        );
        let o = &req.options;
        assert_eq!(o.flags, [Flag::TrustAddress, Flag::Symmetric]);
        assert!(o.has_flag(Flag::TrustAddress) && !o.has_flag(Flag::Fast));
        assert_eq!(o.replace, [Replace::Origin, Replace::SdpVersion]);
        assert!(o.replaces(Replace::Origin));
        assert_eq!(o.direction, [&b"internal"[..], b"external"]);
        assert_eq!(o.ice, Some(Ice::Force));
        assert_eq!(o.transport_protocol, Some(TransportProtocol::RtpSavp));
        assert_eq!(o.rtcp_mux, [RtcpMux::Demux]);
        assert_eq!(o.received_from, Some("198.51.100.1".parse().expect("ip")));
        assert!(o.supports_load_limit);
        assert_eq!(o.sip_message_type, Some(SipMessageType::Request));
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn both_key_spellings_are_the_same_key() {
        for body in [
            &b"d7:command6:answer3:sdp3:v=07:call id2:c18:from tag2:f16:to tag2:t1e"[..],
            b"d7:command6:answer3:sdp3:v=07:call-id2:c18:from-tag2:f16:to-tag2:t1e",
            b"d7:COMMAND6:answer3:SDP3:v=07:Call_ID2:c18:from_tag2:f16:To-Tag2:t1e",
        ] {
            let (req, _) =
                parse_request(&Bytes::from_static(body), &Limits::default()).expect("valid");
            assert_eq!(
                req.command,
                Command::Answer {
                    ids: offer_ids(),
                    to_tag: Bytes::from_static(b"t1"),
                    sdp: Bytes::from_static(b"v=0"),
                }
            );
        }
        let (req, _) = parse(
            b"d7:command5:offer3:sdp3:v=07:call-id2:c18:from-tag2:f1\
              13:received froml3:IP611:2001:db8::1ee",
        )
        .expect("valid");
        assert_eq!(
            req.options.received_from,
            Some("2001:db8::1".parse().expect("ip"))
        );
    }

    #[test]
    fn the_same_key_twice_is_an_error() {
        assert_eq!(
            parse(b"d7:command4:ping7:call-id1:a7:call id1:be").map(|_| ()),
            Err(RequestError::DuplicateKey("call-id"))
        );
    }

    #[test]
    fn missing_required_keys_give_rtpengines_sentences() {
        let cases: [(&[u8], &str); 9] = [
            (
                b"d7:command5:offer7:call-id1:a8:from-tag1:be",
                "No SDP body in message",
            ),
            (
                b"d7:command5:offer3:sdp3:v=08:from-tag1:be",
                "No call-id in message",
            ),
            (
                b"d7:command5:offer3:sdp3:v=07:call-id1:ae",
                "No from-tag in message",
            ),
            (
                b"d7:command6:answer3:sdp3:v=07:call-id1:a8:from-tag1:be",
                "No to-tag in message",
            ),
            (b"d7:command6:deletee", "No call-id in message"),
            (b"d7:command6:delete7:call-id1:ae", "No from-tag in message"),
            (b"d7:command5:querye", "No call-id in message"),
            (
                b"d7:command6:delete7:call-id0:8:from-tag1:be",
                "No call-id in message",
            ),
            (b"d3:sdp3:v=0e", "Dictionary contains no key \"command\""),
        ];
        for (body, sentence) in cases {
            let err = parse_request(&Bytes::from_static(body), &Limits::default())
                .expect_err("missing key");
            assert_eq!(err.to_string(), sentence);
        }
    }

    #[test]
    fn other_commands_parse() {
        let (req, _) =
            parse(b"d7:command6:delete7:call-id2:c18:from-tag2:f16:to-tag2:t1e").expect("valid");
        assert_eq!(
            req.command,
            Command::Delete {
                ids: offer_ids(),
                to_tag: Some(Bytes::from_static(b"t1"))
            }
        );
        let (req, _) = parse(b"d7:command5:query7:call-id2:c1e").expect("valid");
        assert_eq!(
            req.command,
            Command::Query {
                call_id: Bytes::from_static(b"c1"),
                from_tag: None,
                to_tag: None
            }
        );
        let (req, _) = parse(b"d7:command4:list5:limiti32ee").expect("valid");
        assert_eq!(req.command, Command::List { limit: Some(32) });
        let (req, _) = parse(b"d7:command10:statisticse").expect("valid");
        assert_eq!(req.command.kind(), CommandKind::Statistics);
    }

    #[test]
    fn unknown_commands_and_bad_shapes_are_errors() {
        assert_eq!(
            parse(b"d7:command15:start recordinge").map(|_| ()),
            Err(RequestError::UnknownCommand("start-recording".into()))
        );
        assert_eq!(
            parse(b"d7:commandi1ee").map(|_| ()),
            Err(RequestError::WrongType {
                key: "command",
                expected: "a string",
                found: "an integer"
            })
        );
        assert_eq!(
            parse(b"l7:commande").map(|_| ()),
            Err(RequestError::NotDictionary("a list"))
        );
        assert_eq!(parse(b"").map(|_| ()), Err(RequestError::NoPayload));
        let err = parse(b"d7:command4:ping").expect_err("truncated");
        assert_eq!(
            err.to_string(),
            "Could not decode dictionary: input ends early at byte 16"
        );
        assert_eq!(
            parse(b"d7:command4:ping5:flags9:symmetrice")
                .expect_err("wrong type")
                .to_string(),
            "Key \"flags\" must be a list of strings, not a string"
        );
        assert!(matches!(
            parse(b"d7:command4:ping5:flagsli1eee"),
            Err(RequestError::WrongType { key: "flags", .. })
        ));
        assert!(matches!(
            parse(b"d7:command4:list5:limiti-1ee"),
            Err(RequestError::InvalidValue { key: "limit", .. })
        ));
    }

    #[test]
    fn unknown_flags_and_values_are_warnings() {
        let body = encode(vec![
            ("command", "ping".into()),
            (
                "flags",
                list(&["symmetric", "Loop_Protect", "strict source"]),
            ),
            ("replace", list(&["session-name", "origin"])),
            ("ICE", "sideway".into()),
            ("rtcp-mux", list(&["bogus", "accept"])),
            ("sip-message-type", "meh".into()),
        ]);
        let (req, warnings) = parse_request(&body, &Limits::default()).expect("valid");
        assert_eq!(req.options.flags, [Flag::Symmetric, Flag::StrictSource]);
        assert_eq!(req.options.replace, [Replace::Origin]);
        assert_eq!(req.options.ice, None);
        assert_eq!(req.options.rtcp_mux, [RtcpMux::Accept]);
        let texts: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "Unknown flag \"loop-protect\"",
                "Unknown replace entry \"session-name\"",
                "Unknown value \"sideway\" for key \"ICE\"",
                "Unknown value \"bogus\" for key \"rtcp-mux\"",
                "Unknown value \"meh\" for key \"sip-message-type\"",
            ]
        );
    }

    #[test]
    fn bad_received_from_is_an_error() {
        for body in [
            &b"d7:command4:ping13:received-froml3:IP411:2001:db8::1ee"[..],
            b"d7:command4:ping13:received-froml3:IP57:1.2.3.4ee",
            b"d7:command4:ping13:received-froml3:IP4ee",
            b"d7:command4:ping13:received-fromlee",
        ] {
            let err = parse_request(&Bytes::from_static(body), &Limits::default())
                .expect_err("bad address");
            assert!(
                matches!(
                    err,
                    RequestError::InvalidValue {
                        key: "received-from",
                        ..
                    }
                ),
                "{err:?}"
            );
        }
    }

    #[test]
    fn quoted_peer_text_is_bounded() {
        let long = "x".repeat(300);
        let body = format!("d7:command{}:{long}e", long.len());
        let err = parse_request(&Bytes::from(body), &Limits::default()).expect_err("unknown");
        assert_eq!(
            err,
            RequestError::UnknownCommand("x".repeat(MAX_SHOWN_BYTES))
        );
        assert!(shown("é".repeat(40).as_bytes()).len() <= MAX_SHOWN_BYTES);
    }

    #[test]
    fn json_requests_parse_the_same() {
        let (req, warnings) = parse(
            br#"{"command":"offer","sdp":"v=0","call-id":"c1","from tag":"f1","flags":["trust address","bogus"]}"#,
        )
        .expect("valid");
        assert_eq!(
            req.command,
            Command::Offer {
                ids: offer_ids(),
                to_tag: None,
                sdp: Bytes::from_static(b"v=0")
            }
        );
        assert_eq!(req.options.flags, [Flag::TrustAddress]);
        assert_eq!(warnings, [Warning::UnknownFlag("bogus".into())]);
    }
}
