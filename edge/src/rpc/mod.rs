//! The control plane: JSON-RPC 2.0 over HTTP, Kamailio `jsonrpcs`-shaped
//! (method names, positional parameters and result shapes as Kamailio's:
//! `dispatcher.list`, `dispatcher.reload`, `dispatcher.set_state`,
//! `dispatcher.set_duid_state`, `dispatcher.ping_active`, `dispatcher.add`,
//! `dispatcher.remove`, `core.version`, `core.uptime`,
//! `stats.get_statistics`, `tm.stats`), plus ours (`dispatcher.drain`,
//! `dispatcher.active_calls`). Named parameters are accepted too, by the
//! names in [`dispatch`]'s errors.
//!
//! `dispatcher.add` and `dispatcher.remove` change the running sets only,
//! as in Kamailio: the next `dispatcher.reload` reads the file again.
//!
//! `core.uptime` gives `now` and `up_since` as Unix seconds (Kamailio prints
//! them with ctime). State changes reach the shards about at once; the states
//! and calls read back come from the shards' reports, about a second old.
//!
//! This module does no I/O: [`parse_request`] turns a peer's bytes into a
//! [`Request`] or the JSON-RPC error to answer, and [`dispatch`] runs a
//! method against a [`Backend`] (the runtime's main thread, which owns the
//! dispatcher view and the reload path). [`server`] is the HTTP thread.

pub mod server;
pub mod stats;

use std::net::SocketAddr;

use serde_json::{json, Map, Value};

use crate::dispatcher::{
    DestKey, DestState, Destination, DestinationSets, DestinationSpec, SetLimits, FLAG_NO_PING,
    FLAG_PROBING,
};
use crate::runtime::{DestinationTotal, ShardReport};

/// Malformed JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON, but not a JSON-RPC 2.0 request object.
pub const INVALID_REQUEST: i64 = -32600;
/// No such method.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Wrong number, names or types of parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// An operational failure (Kamailio answers these with 500 too).
pub const OPERATIONAL: i64 = 500;

/// The methods [`dispatch`] knows.
pub const METHODS: &[&str] = &[
    "core.version",
    "core.uptime",
    "dispatcher.list",
    "dispatcher.reload",
    "dispatcher.active_calls",
    "dispatcher.set_state",
    "dispatcher.set_duid_state",
    "dispatcher.drain",
    "dispatcher.ping_active",
    "dispatcher.add",
    "dispatcher.remove",
    "stats.get_statistics",
    "tm.stats",
];

/// A JSON-RPC error: its code and a sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcError {
    /// One of the codes above.
    pub code: i64,
    /// What went wrong.
    pub message: String,
}

impl RpcError {
    /// An error with `code` and `message`.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }

    fn params(message: impl Into<String>) -> Self {
        RpcError::new(INVALID_PARAMS, message)
    }
}

/// A request's parameters: none, positional or named.
#[derive(Clone, Debug, PartialEq)]
pub enum Params {
    /// Absent (or `null`).
    None,
    /// A JSON array.
    Positional(Vec<Value>),
    /// A JSON object.
    Named(Map<String, Value>),
}

impl Params {
    /// The parameter at `index` (positional) or called `name` (named).
    pub fn get(&self, index: usize, name: &str) -> Option<&Value> {
        match self {
            Params::None => None,
            Params::Positional(v) => v.get(index),
            Params::Named(m) => m.get(name),
        }
    }

    /// Refuses parameters beyond `names` (by position or by name).
    pub fn expect_at_most(&self, names: &[&str]) -> Result<(), RpcError> {
        match self {
            Params::None => Ok(()),
            Params::Positional(v) if v.len() <= names.len() => Ok(()),
            Params::Positional(v) => Err(RpcError::params(format!(
                "takes at most {} parameters ({}), got {}",
                names.len(),
                names.join(", "),
                v.len()
            ))),
            Params::Named(m) => match m.keys().find(|k| !names.contains(&k.as_str())) {
                None => Ok(()),
                Some(k) if names.is_empty() => {
                    Err(RpcError::params(format!("takes no parameters, got `{k}`")))
                }
                Some(k) => Err(RpcError::params(format!(
                    "unknown parameter `{k}`; expected {}",
                    names.join(", ")
                ))),
            },
        }
    }

    /// An optional set id: a number or a decimal string (kamcli sends strings).
    fn group(&self, index: usize) -> Result<Option<u32>, RpcError> {
        let bad = || RpcError::params("`group` must be a set id, a number from 0 to 4294967295");
        match self.get(index, "group") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(bad),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    /// A set id that must be given.
    fn required_group(&self, index: usize) -> Result<u32, RpcError> {
        self.group(index)?
            .ok_or_else(|| RpcError::params("`group` is required"))
    }

    /// A string parameter that must be given.
    fn required_string(&self, index: usize, name: &str) -> Result<&str, RpcError> {
        self.string(index, name)?
            .ok_or_else(|| RpcError::params(format!("`{name}` is required")))
    }

    /// An optional integer parameter (a number or a decimal string).
    fn integer(&self, index: usize, name: &str) -> Result<Option<i64>, RpcError> {
        let bad = || RpcError::params(format!("`{name}` must be an integer"));
        match self.get(index, name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(bad),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    /// An optional string parameter.
    fn string(&self, index: usize, name: &str) -> Result<Option<&str>, RpcError> {
        match self.get(index, name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(RpcError::params(format!("`{name}` must be a string"))),
        }
    }
}

/// One JSON-RPC 2.0 request.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The id to answer with; `None` for a notification (no answer).
    pub id: Option<Value>,
    /// The method name.
    pub method: String,
    /// Its parameters.
    pub params: Params,
}

/// A request that cannot be run: the id to answer with (`null` if it could
/// not be read) and the error.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    /// The request's id, or `null`.
    pub id: Value,
    /// Why.
    pub error: RpcError,
}

/// Reads one request from a peer's bytes. Never panics, whatever the input.
/// Batches (arrays) are refused with -32600, as Kamailio does not run them.
pub fn parse_request(body: &[u8]) -> Result<Request, Rejected> {
    let reject = |id: Value, code, message: &str| Rejected {
        id,
        error: RpcError::new(code, message),
    };
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| reject(Value::Null, PARSE_ERROR, &format!("Parse error: {e}")))?;
    let mut object = match value {
        Value::Object(o) => o,
        Value::Array(_) => {
            return Err(reject(
                Value::Null,
                INVALID_REQUEST,
                "Invalid Request: batch requests are not supported",
            ))
        }
        _ => {
            return Err(reject(
                Value::Null,
                INVALID_REQUEST,
                "Invalid Request: not a JSON object",
            ))
        }
    };
    let id = match object.remove("id") {
        None => None,
        Some(v @ (Value::Null | Value::Number(_) | Value::String(_))) => Some(v),
        Some(_) => {
            return Err(reject(
                Value::Null,
                INVALID_REQUEST,
                "Invalid Request: `id` must be a string, a number or null",
            ))
        }
    };
    let answer_id = id.clone().unwrap_or(Value::Null);
    if object.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return Err(reject(
            answer_id,
            INVALID_REQUEST,
            "Invalid Request: `jsonrpc` must be \"2.0\"",
        ));
    }
    let method = match object.remove("method") {
        Some(Value::String(m)) => m,
        _ => {
            return Err(reject(
                answer_id,
                INVALID_REQUEST,
                "Invalid Request: `method` must be a string",
            ))
        }
    };
    let params = match object.remove("params") {
        None | Some(Value::Null) => Params::None,
        Some(Value::Array(a)) => Params::Positional(a),
        Some(Value::Object(o)) => Params::Named(o),
        Some(_) => {
            return Err(reject(
                answer_id,
                INVALID_REQUEST,
                "Invalid Request: `params` must be an array or an object",
            ))
        }
    };
    if let Some(k) = object.keys().find(|k| k.as_str() != "jsonrpc") {
        let message = format!("Invalid Request: unknown member `{k}`");
        return Err(reject(answer_id, INVALID_REQUEST, &message));
    }
    Ok(Request { id, method, params })
}

/// `{"jsonrpc":"2.0","result":R,"id":ID}`.
pub fn success(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "result": result, "id": id})
}

/// `{"jsonrpc":"2.0","error":{"code":C,"message":S},"id":ID}`.
pub fn failure(id: Value, error: &RpcError) -> Value {
    json!({
        "jsonrpc": "2.0",
        "error": {"code": error.code, "message": error.message},
        "id": id,
    })
}

/// What the methods read and do, on the runtime's main thread.
pub trait Backend {
    /// Process start and now, seconds since the Unix epoch.
    fn clock(&self) -> (u64, u64);
    /// The running destination sets, `None` without a dispatcher.
    fn sets(&self) -> Option<&DestinationSets>;
    /// State and calls per destination over all shards (latest reports).
    fn totals(&self) -> Vec<DestinationTotal>;
    /// Are destinations without the probing flag probed too?
    fn probe_all(&self) -> bool;
    /// Re-reads the dispatcher list and sends it to every shard (the SIGHUP
    /// path); `who` is logged. An error is a sentence naming file and line.
    fn reload(&mut self, who: &str) -> Result<(), String>;
    /// Sets the state of `keys` on every shard (one shard applies it and
    /// sends the change to the others); `who` is logged.
    fn set_state(&mut self, keys: Vec<DestKey>, state: DestState, who: &str) -> Result<(), String>;
    /// Resolves the names of `sets` and sends them to every shard as the
    /// running sets (`dispatcher.add` and `.remove`); `who` is logged.
    fn replace_sets(&mut self, sets: DestinationSets, who: &str) -> Result<(), String>;
    /// Turns probing on or off on every shard when `on` is given; returns
    /// the state before. `who` is logged.
    fn ping_active(&mut self, on: Option<bool>, who: &str) -> Result<bool, String>;
    /// Each shard's latest report.
    fn reports(&self) -> Vec<ShardReport>;
}

/// Runs `request` from `remote` against `backend`.
pub fn dispatch(
    backend: &mut impl Backend,
    request: &Request,
    remote: SocketAddr,
) -> Result<Value, RpcError> {
    let p = &request.params;
    match request.method.as_str() {
        "core.version" => {
            p.expect_at_most(&[])?;
            Ok(Value::String(version()))
        }
        "core.uptime" => {
            p.expect_at_most(&[])?;
            let (up_since, now) = backend.clock();
            Ok(json!({"now": now, "up_since": up_since, "uptime": now.saturating_sub(up_since)}))
        }
        "dispatcher.list" => {
            p.expect_at_most(&[])?;
            let sets = configured(backend.sets())?;
            Ok(dispatcher_list(
                sets,
                &backend.totals(),
                backend.probe_all(),
            ))
        }
        "dispatcher.reload" => {
            p.expect_at_most(&[])?;
            backend
                .reload(&format!("rpc {remote}"))
                .map_err(operational)?;
            Ok(Value::String(
                "Ok. Dispatcher successfully reloaded.".into(),
            ))
        }
        "dispatcher.active_calls" => {
            p.expect_at_most(&["group", "address"])?;
            let group = p.group(0)?;
            let address = p.string(1, "address")?;
            if backend.sets().is_none() {
                return Err(RpcError::new(OPERATIONAL, "No dispatcher is configured"));
            }
            active_calls(backend.sets(), &backend.totals(), group, address)
        }
        "dispatcher.set_state" | "dispatcher.set_duid_state" => {
            let by_duid = request.method == "dispatcher.set_duid_state";
            let what = if by_duid { "duid" } else { "address" };
            p.expect_at_most(&["state", "group", what])?;
            let state = parse_state(p.string(0, "state")?)?;
            let group = p.required_group(1)?;
            let target = p
                .string(2, what)?
                .ok_or_else(|| RpcError::params(format!("`{what}` is required")))?;
            let sets = configured(backend.sets())?;
            let keys = select(sets, group, target, by_duid)?;
            backend
                .set_state(keys, state, &format!("rpc {remote}"))
                .map_err(operational)?;
            Ok(Value::String("Ok. Dispatcher state updated.".into()))
        }
        "dispatcher.drain" => {
            p.expect_at_most(&["group", "address"])?;
            let group = p.required_group(0)?;
            let target = p.string(1, "address")?.ok_or_else(|| {
                RpcError::params("`address` (a URI, a duid or `all`) is required")
            })?;
            let sets = configured(backend.sets())?;
            let keys = select(sets, group, target, false)
                .or_else(|_| select(sets, group, target, true))?;
            let address = (target != "all").then_some(target);
            let calls = active_calls(backend.sets(), &backend.totals(), Some(group), address)?;
            backend
                .set_state(keys, DestState::Draining, &format!("rpc {remote}"))
                .map_err(operational)?;
            Ok(calls)
        }
        "dispatcher.ping_active" => {
            p.expect_at_most(&["state"])?;
            let on = match p.get(0, "state") {
                None | Some(Value::Null) => None,
                Some(v) => Some(flag(v)?),
            };
            let old = backend
                .ping_active(on, &format!("rpc {remote}"))
                .map_err(operational)?;
            Ok(match on {
                None => json!({"OldPingState": u8::from(old)}),
                Some(new) => json!({"NewPingState": u8::from(new), "OldPingState": u8::from(old)}),
            })
        }
        "dispatcher.add" => {
            p.expect_at_most(&["group", "address", "flags", "priority", "attrs"])?;
            let group = p.required_group(0)?;
            let address = p.required_string(1, "address")?;
            let flags = p.integer(2, "flags")?.unwrap_or(0);
            let flags = u32::try_from(flags).map_err(|_| RpcError::params("bad `flags`"))?;
            let priority = p.integer(3, "priority")?.unwrap_or(0);
            let priority =
                i32::try_from(priority).map_err(|_| RpcError::params("bad `priority`"))?;
            let attrs = p.string(4, "attrs")?.unwrap_or("");
            let sets = configured(backend.sets())?;
            let spec = DestinationSpec {
                set: group,
                uri: address,
                flags,
                priority,
                attrs,
            };
            let sets = with_destination(sets, &spec)?;
            backend
                .replace_sets(sets, &format!("rpc {remote}"))
                .map_err(operational)?;
            Ok(Value::String("Ok. Dispatcher destination added.".into()))
        }
        "dispatcher.remove" => {
            p.expect_at_most(&["group", "address"])?;
            let group = p.required_group(0)?;
            let address = p.required_string(1, "address")?;
            let sets = configured(backend.sets())?;
            let sets = without_destination(sets, group, address)?;
            backend
                .replace_sets(sets, &format!("rpc {remote}"))
                .map_err(operational)?;
            Ok(Value::String("Ok. Dispatcher destination removed.".into()))
        }
        "stats.get_statistics" => stats::get_statistics(&backend.reports(), p),
        "tm.stats" => {
            p.expect_at_most(&[])?;
            Ok(stats::tm_stats(&backend.reports()))
        }
        other => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("Method not found: `{other}`"),
        )),
    }
}

/// The running sets, or the operational error of an edge without a
/// dispatcher.
fn configured(sets: Option<&DestinationSets>) -> Result<&DestinationSets, RpcError> {
    sets.ok_or_else(|| RpcError::new(OPERATIONAL, "No dispatcher is configured"))
}

/// A backend's failure sentence as an operational error.
fn operational(message: String) -> RpcError {
    RpcError::new(OPERATIONAL, message)
}

/// A 0/1 parameter (a number, a decimal string or a boolean).
fn flag(v: &Value) -> Result<bool, RpcError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(false),
        Value::Number(n) if n.as_u64() == Some(1) => Ok(true),
        Value::String(s) if s.trim() == "0" => Ok(false),
        Value::String(s) if s.trim() == "1" => Ok(true),
        _ => Err(RpcError::params("`state` must be 0 or 1")),
    }
}

/// The specs of every destination of `sets`, for building a changed copy.
fn specs(sets: &DestinationSets) -> impl Iterator<Item = DestinationSpec<'_>> {
    sets.sets().iter().flat_map(|set| {
        set.destinations.iter().map(move |d| DestinationSpec {
            set: set.id,
            uri: &d.uri,
            flags: d.flags,
            priority: d.priority,
            attrs: &d.attrs.body,
        })
    })
}

/// `sets` with `spec` added at the end of its set (a new set if needed).
/// A URI already in the set is an operational error; a bad URI or bad
/// attributes are bad parameters.
pub fn with_destination(
    sets: &DestinationSets,
    spec: &DestinationSpec<'_>,
) -> Result<DestinationSets, RpcError> {
    let present = sets
        .set(spec.set)
        .is_some_and(|s| s.destinations.iter().any(|d| d.uri == spec.uri));
    if present {
        return Err(RpcError::new(
            OPERATIONAL,
            format!("Destination `{}` is already in set {}", spec.uri, spec.set),
        ));
    }
    let all = specs(sets).chain(std::iter::once(*spec));
    DestinationSets::from_specs(all, "dispatcher.add", &SetLimits::default())
        .map_err(|e| RpcError::params(e.to_string()))
}

/// `sets` without destination `uri` of set `group` (an empty set goes).
pub fn without_destination(
    sets: &DestinationSets,
    group: u32,
    uri: &str,
) -> Result<DestinationSets, RpcError> {
    let present = sets
        .set(group)
        .is_some_and(|s| s.destinations.iter().any(|d| d.uri == uri));
    if !present {
        return Err(RpcError::new(
            OPERATIONAL,
            format!("Destination not found: `{uri}` in set {group}"),
        ));
    }
    let rest = specs(sets).filter(|s| !(s.set == group && s.uri == uri));
    DestinationSets::from_specs(rest, "dispatcher.remove", &SetLimits::default())
        .map_err(|e| RpcError::new(OPERATIONAL, e.to_string()))
}

/// A state parameter: Kamailio's letter (`a`, `i`, `d`, `t`; ours `r`
/// draining) or the word (`active`, `inactive`, `disabled`, `trying`,
/// `draining`), any case. Kamailio's probing suffix `p` is refused: here
/// probing follows `[dispatcher.health]`.
pub fn parse_state(text: Option<&str>) -> Result<DestState, RpcError> {
    let text = text.ok_or_else(|| RpcError::params("`state` is required"))?;
    match text.to_ascii_lowercase().as_str() {
        "a" | "active" => Ok(DestState::Active),
        "i" | "inactive" => Ok(DestState::Inactive),
        "d" | "disabled" => Ok(DestState::Disabled),
        "t" | "trying" => Ok(DestState::Trying),
        "r" | "draining" => Ok(DestState::Draining),
        s if s.len() == 2 && s.ends_with('p') => Err(RpcError::params(
            "the probing suffix `p` is not supported: probing follows [dispatcher.health]",
        )),
        _ => Err(RpcError::params(format!(
            "unknown state `{text}`; expected a, i, d, t, r or active, inactive, disabled, trying, draining"
        ))),
    }
}

/// The destinations of set `group` that `target` names: a URI (or a duid
/// with `by_duid`), or `all`. None is an operational error, as in Kamailio.
pub fn select(
    sets: &DestinationSets,
    group: u32,
    target: &str,
    by_duid: bool,
) -> Result<Vec<DestKey>, RpcError> {
    let set = sets
        .set(group)
        .ok_or_else(|| RpcError::new(OPERATIONAL, format!("No destination set {group}")))?;
    let keys: Vec<DestKey> = set
        .destinations
        .iter()
        .filter(|d| {
            (!by_duid && target == "all")
                || if by_duid {
                    d.attrs.duid.as_deref() == Some(target)
                } else {
                    d.uri == target
                }
        })
        .map(|d| DestKey {
            set: group,
            uri: d.uri.as_str().into(),
        })
        .collect();
    if keys.is_empty() {
        return Err(RpcError::new(
            OPERATIONAL,
            format!("Destination not found: `{target}` in set {group}"),
        ));
    }
    Ok(keys)
}

/// `core.version`: `edge 0.1.0 (x86_64/linux)`, Kamailio's shape.
pub fn version() -> String {
    format!(
        "edge {} ({}/{})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

/// Kamailio's two letters: state (`A`, `T`, `I`, `D`, ours `R` draining),
/// then `P` probed, `N` no-ping, `X` neither.
fn flags_text(state: DestState, dest: &Destination, probe_all: bool) -> String {
    let probe = if dest.flags & FLAG_NO_PING != 0 {
        'N'
    } else if probe_all || dest.flags & FLAG_PROBING != 0 {
        'P'
    } else {
        'X'
    };
    format!("{}{probe}", state.letter())
}

/// The state a destination has before any shard reported: from its flags.
fn initial_state(dest: &Destination) -> DestState {
    use crate::dispatcher::{FLAG_DISABLED, FLAG_INACTIVE, FLAG_TRYING};
    if dest.flags & FLAG_DISABLED != 0 {
        DestState::Disabled
    } else if dest.flags & FLAG_INACTIVE != 0 {
        DestState::Inactive
    } else if dest.flags & FLAG_TRYING != 0 {
        DestState::Trying
    } else {
        DestState::Active
    }
}

/// `dispatcher.list`, Kamailio's shape plus `RUNTIME` (calls over all shards).
pub fn dispatcher_list(
    sets: &DestinationSets,
    totals: &[DestinationTotal],
    probe_all: bool,
) -> Value {
    let records: Vec<Value> = sets
        .sets()
        .iter()
        .map(|set| {
            let targets: Vec<Value> = set
                .destinations
                .iter()
                .map(|d| {
                    let total = totals
                        .iter()
                        .find(|t| t.key.set == set.id && *t.key.uri == *d.uri);
                    let state = total.map_or_else(|| initial_state(d), |t| t.state);
                    json!({"DEST": {
                        "URI": d.uri,
                        "FLAGS": flags_text(state, d, probe_all),
                        "PRIORITY": d.priority,
                        "ATTRS": {
                            "BODY": d.attrs.body,
                            "DUID": d.attrs.duid.as_deref().unwrap_or(""),
                            "MAXLOAD": d.attrs.maxload,
                            "WEIGHT": d.attrs.weight.unwrap_or(0),
                            "RWEIGHT": d.attrs.rweight.unwrap_or(0),
                        },
                        "RUNTIME": {
                            "ACTIVE": total.map_or(0, |t| t.active),
                            "PENDING": total.map_or(0, |t| t.pending),
                        },
                    }})
                })
                .collect();
            json!({"SET": {"ID": set.id, "TARGETS": targets}})
        })
        .collect();
    json!({"NRSETS": sets.sets().len(), "RECORDS": records})
}

/// `dispatcher.active_calls [group [address]]` (ours): calls per destination
/// and their sum, over all shards; `address` is a URI or a duid. Destinations
/// a reload removed are listed while calls remain on them.
pub fn active_calls(
    sets: Option<&DestinationSets>,
    totals: &[DestinationTotal],
    group: Option<u32>,
    address: Option<&str>,
) -> Result<Value, RpcError> {
    let duid_of = |t: &DestinationTotal| {
        sets.and_then(|s| s.set(t.key.set))
            .and_then(|s| s.destinations.iter().find(|d| *d.uri == *t.key.uri))
            .and_then(|d| d.attrs.duid.clone())
    };
    let mut rows = Vec::new();
    let (mut active, mut pending) = (0u64, 0u64);
    for t in totals {
        if group.is_some_and(|g| g != t.key.set) {
            continue;
        }
        let duid = duid_of(t);
        if let Some(a) = address {
            if *t.key.uri != *a && duid.as_deref() != Some(a) {
                continue;
            }
        }
        active += t.active;
        pending += t.pending;
        rows.push(json!({
            "SET": t.key.set,
            "URI": &*t.key.uri,
            "DUID": duid.unwrap_or_default(),
            "STATE": t.state.letter().to_string(),
            "ACTIVE": t.active,
            "PENDING": t.pending,
        }));
    }
    let configured = |g: u32, a: Option<&str>| {
        sets.and_then(|s| s.set(g)).is_some_and(|s| {
            a.is_none_or(|a| {
                s.destinations
                    .iter()
                    .any(|d| d.uri == a || d.attrs.duid.as_deref() == Some(a))
            })
        })
    };
    if rows.is_empty() && (group.is_some() || address.is_some()) {
        // Not reported yet (the first report comes within a second) is
        // zero calls; not configured at all is an error.
        let known = match group {
            Some(g) => configured(g, address),
            None => sets.is_some_and(|s| s.sets().iter().any(|s| configured(s.id, address))),
        };
        if !known {
            return Err(RpcError::new(OPERATIONAL, "No such destination"));
        }
    }
    Ok(json!({"ACTIVE": active, "PENDING": pending, "TARGETS": rows}))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(body: &str) -> Rejected {
        parse_request(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn reads_positional_named_and_absent_params() {
        let r =
            parse_request(br#"{"jsonrpc":"2.0","method":"m","params":[1,"a"],"id":7}"#).unwrap();
        assert_eq!(r.id, Some(json!(7)));
        assert_eq!(r.method, "m");
        assert_eq!(r.params.get(1, "x"), Some(&json!("a")));
        let r =
            parse_request(br#"{"jsonrpc":"2.0","method":"m","params":{"x":2},"id":"a"}"#).unwrap();
        assert_eq!(r.params.get(0, "x"), Some(&json!(2)));
        let r = parse_request(br#"{"jsonrpc":"2.0","method":"m"}"#).unwrap();
        assert_eq!((r.id, r.params), (None, Params::None));
    }

    #[test]
    fn codes_for_bad_requests() {
        assert_eq!(err("{").error.code, PARSE_ERROR);
        assert_eq!(err("").error.code, PARSE_ERROR);
        assert_eq!(err("[]").error.code, INVALID_REQUEST);
        assert_eq!(err("3").error.code, INVALID_REQUEST);
        let e = err(r#"{"method":"m","id":4}"#);
        assert_eq!((e.error.code, e.id), (INVALID_REQUEST, json!(4)));
        assert_eq!(
            err(r#"{"jsonrpc":"2.0","id":1}"#).error.code,
            INVALID_REQUEST
        );
        assert_eq!(
            err(r#"{"jsonrpc":"2.0","method":1,"id":1}"#).error.code,
            INVALID_REQUEST
        );
        assert_eq!(
            err(r#"{"jsonrpc":"2.0","method":"m","params":3}"#)
                .error
                .code,
            INVALID_REQUEST
        );
        let e = err(r#"{"jsonrpc":"2.0","method":"m","id":{}}"#);
        assert_eq!((e.error.code, e.id), (INVALID_REQUEST, Value::Null));
        assert_eq!(
            err(r#"{"jsonrpc":"2.0","method":"m","x":1}"#).error.code,
            INVALID_REQUEST
        );
    }

    #[test]
    fn arity_and_types_are_checked() {
        let p = Params::Positional(vec![json!(1), json!(2), json!(3)]);
        assert_eq!(
            p.expect_at_most(&["group", "address"]).unwrap_err().code,
            INVALID_PARAMS
        );
        let p = Params::Named(Map::from_iter([("grp".to_owned(), json!(1))]));
        assert!(p.expect_at_most(&["group"]).is_err());
        let p = Params::Positional(vec![json!("12")]);
        assert_eq!(p.group(0).unwrap(), Some(12));
        let p = Params::Positional(vec![json!(-1)]);
        assert_eq!(p.group(0).unwrap_err().code, INVALID_PARAMS);
        let p = Params::Named(Map::from_iter([("address".to_owned(), json!(5))]));
        assert_eq!(p.string(1, "address").unwrap_err().code, INVALID_PARAMS);
    }

    #[test]
    fn states_read_letters_and_words() {
        assert_eq!(parse_state(Some("a")).unwrap(), DestState::Active);
        assert_eq!(parse_state(Some("Inactive")).unwrap(), DestState::Inactive);
        assert_eq!(parse_state(Some("draining")).unwrap(), DestState::Draining);
        assert_eq!(parse_state(Some("ap")).unwrap_err().code, INVALID_PARAMS);
        assert_eq!(parse_state(Some("x")).unwrap_err().code, INVALID_PARAMS);
        assert_eq!(parse_state(None).unwrap_err().code, INVALID_PARAMS);
    }

    #[test]
    fn responses_have_the_jsonrpc_shape() {
        assert_eq!(
            success(json!(1), json!("x")).to_string(),
            r#"{"id":1,"jsonrpc":"2.0","result":"x"}"#
        );
        let f = failure(Value::Null, &RpcError::new(METHOD_NOT_FOUND, "no"));
        assert_eq!(f["error"]["code"], json!(-32601));
        assert_eq!(f["id"], Value::Null);
    }

    struct Fake {
        sets: Option<DestinationSets>,
        changed: Vec<(Vec<DestKey>, DestState)>,
        probing: bool,
    }

    impl Backend for Fake {
        fn clock(&self) -> (u64, u64) {
            (100, 130)
        }
        fn sets(&self) -> Option<&DestinationSets> {
            self.sets.as_ref()
        }
        fn totals(&self) -> Vec<DestinationTotal> {
            Vec::new()
        }
        fn probe_all(&self) -> bool {
            true
        }
        fn reload(&mut self, _who: &str) -> Result<(), String> {
            Err("d.list:3: bad".into())
        }
        fn set_state(
            &mut self,
            keys: Vec<DestKey>,
            state: DestState,
            _who: &str,
        ) -> Result<(), String> {
            self.changed.push((keys, state));
            Ok(())
        }
        fn replace_sets(&mut self, sets: DestinationSets, _who: &str) -> Result<(), String> {
            self.sets = Some(sets);
            Ok(())
        }
        fn ping_active(&mut self, on: Option<bool>, _who: &str) -> Result<bool, String> {
            let old = self.probing;
            self.probing = on.unwrap_or(old);
            Ok(old)
        }
        fn reports(&self) -> Vec<ShardReport> {
            Vec::new()
        }
    }

    fn fake() -> Fake {
        use crate::dispatcher::{DestinationSpec, SetLimits};
        let spec = |uri, flags, attrs| DestinationSpec {
            set: 1,
            uri,
            flags,
            priority: 0,
            attrs,
        };
        let sets = DestinationSets::from_specs(
            [
                spec("sip:192.0.2.1:5060", 0, "duid=x;weight=20"),
                spec("sip:192.0.2.2:5060", 32 | 1, ""),
            ],
            "t",
            &SetLimits::default(),
        )
        .unwrap();
        Fake {
            sets: Some(sets),
            changed: Vec::new(),
            probing: true,
        }
    }

    fn run(b: &mut Fake, method: &str, params: Params) -> Result<Value, RpcError> {
        let request = Request {
            id: Some(json!(1)),
            method: method.into(),
            params,
        };
        dispatch(b, &request, SocketAddr::from(([127, 0, 0, 1], 9)))
    }

    #[test]
    fn methods_against_a_backend() {
        let mut b = fake();
        let up = run(&mut b, "core.uptime", Params::None).unwrap();
        assert_eq!(up, json!({"now": 130, "up_since": 100, "uptime": 30}));
        let list = run(&mut b, "dispatcher.list", Params::None).unwrap();
        let targets = &list["RECORDS"][0]["SET"]["TARGETS"];
        assert_eq!(targets[0]["DEST"]["FLAGS"], json!("AP"));
        assert_eq!(targets[0]["DEST"]["ATTRS"]["WEIGHT"], json!(20));
        assert_eq!(targets[1]["DEST"]["FLAGS"], json!("IN"));
        let e = run(&mut b, "dispatcher.reload", Params::None).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (OPERATIONAL, "d.list:3: bad"));
        assert_eq!(
            run(&mut b, "x", Params::None).unwrap_err().code,
            METHOD_NOT_FOUND
        );
        let p = Params::Positional(vec![json!("d"), json!(1), json!("x")]);
        run(&mut b, "dispatcher.set_duid_state", p).unwrap();
        let p = Params::Positional(vec![json!(1), json!("all")]);
        run(&mut b, "dispatcher.drain", p).unwrap();
        assert_eq!(b.changed.len(), 2);
        assert_eq!(b.changed[0].0.len(), 1);
        assert_eq!(b.changed[0].1, DestState::Disabled);
        assert_eq!(b.changed[1].0.len(), 2);
        assert_eq!(b.changed[1].1, DestState::Draining);
        b.sets = None;
        let e = run(&mut b, "dispatcher.list", Params::None).unwrap_err();
        assert_eq!(e.code, OPERATIONAL);
        for m in METHODS {
            let e = run(&mut b, m, Params::None).err();
            assert!(e.is_none_or(|e| e.code != METHOD_NOT_FOUND), "{m}");
        }
    }

    fn uris(b: &Fake, set: u32) -> Vec<String> {
        let set = b.sets.as_ref().unwrap().set(set);
        set.map(|s| s.destinations.iter().map(|d| d.uri.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn ping_active_reads_and_sets() {
        let mut b = fake();
        let r = run(&mut b, "dispatcher.ping_active", Params::None).unwrap();
        assert_eq!(r, json!({"OldPingState": 1}));
        let p = Params::Positional(vec![json!(0)]);
        let r = run(&mut b, "dispatcher.ping_active", p).unwrap();
        assert_eq!(r, json!({"NewPingState": 0, "OldPingState": 1}));
        assert!(!b.probing);
        let p = Params::Positional(vec![json!("1")]);
        let r = run(&mut b, "dispatcher.ping_active", p).unwrap();
        assert_eq!(r, json!({"NewPingState": 1, "OldPingState": 0}));
        for bad in [json!(2), json!("on"), json!([1])] {
            let p = Params::Positional(vec![bad]);
            let e = run(&mut b, "dispatcher.ping_active", p).unwrap_err();
            assert_eq!(e.code, INVALID_PARAMS);
        }
    }

    #[test]
    fn add_and_remove_change_the_running_sets() {
        let mut b = fake();
        let p = Params::Positional(vec![
            json!(1),
            json!("sip:192.0.2.3:5060"),
            json!(0),
            json!(5),
            json!("duid=z;weight=7"),
        ]);
        let r = run(&mut b, "dispatcher.add", p).unwrap();
        assert_eq!(r, json!("Ok. Dispatcher destination added."));
        assert_eq!(
            uris(&b, 1),
            [
                "sip:192.0.2.1:5060",
                "sip:192.0.2.2:5060",
                "sip:192.0.2.3:5060"
            ]
        );
        let added = &b.sets.as_ref().unwrap().set(1).unwrap().destinations[2];
        assert_eq!((added.priority, added.attrs.weight), (5, Some(7)));
        // A new set by name, named parameters.
        let p = Params::Named(Map::from_iter([
            ("group".to_owned(), json!(2)),
            ("address".to_owned(), json!("sip:192.0.2.9")),
        ]));
        run(&mut b, "dispatcher.add", p).unwrap();
        assert_eq!(uris(&b, 2), ["sip:192.0.2.9"]);
        // Already there: 500; a bad URI or attrs: -32602; no group: -32602.
        let again = Params::Positional(vec![json!(1), json!("sip:192.0.2.3:5060")]);
        let e = run(&mut b, "dispatcher.add", again).unwrap_err();
        assert_eq!(e.code, OPERATIONAL, "{}", e.message);
        let bad = Params::Positional(vec![json!(1), json!("mailto:x@y")]);
        assert_eq!(
            run(&mut b, "dispatcher.add", bad).unwrap_err().code,
            INVALID_PARAMS
        );
        let bad = Params::Positional(vec![
            json!(1),
            json!("sip:192.0.2.4"),
            json!(0),
            json!(0),
            json!("weight=500"),
        ]);
        assert_eq!(
            run(&mut b, "dispatcher.add", bad).unwrap_err().code,
            INVALID_PARAMS
        );
        let bad = Params::Positional(vec![]);
        assert_eq!(
            run(&mut b, "dispatcher.add", bad).unwrap_err().code,
            INVALID_PARAMS
        );

        let p = Params::Positional(vec![json!(1), json!("sip:192.0.2.1:5060")]);
        let r = run(&mut b, "dispatcher.remove", p.clone()).unwrap();
        assert_eq!(r, json!("Ok. Dispatcher destination removed."));
        assert_eq!(uris(&b, 1), ["sip:192.0.2.2:5060", "sip:192.0.2.3:5060"]);
        assert_eq!(
            run(&mut b, "dispatcher.remove", p).unwrap_err().code,
            OPERATIONAL
        );
        let p = Params::Positional(vec![json!(2), json!("sip:192.0.2.9")]);
        run(&mut b, "dispatcher.remove", p).unwrap();
        assert!(
            b.sets.as_ref().unwrap().set(2).is_none(),
            "an emptied set goes"
        );
    }

    #[test]
    fn statistics_methods_answer_without_reports() {
        let mut b = fake();
        let t = run(&mut b, "tm.stats", Params::None).unwrap();
        assert_eq!(t["current"], json!(0));
        let p = Params::Positional(vec![json!(1)]);
        assert_eq!(run(&mut b, "tm.stats", p).unwrap_err().code, INVALID_PARAMS);
        let all = run(&mut b, "stats.get_statistics", Params::None).unwrap();
        assert!(all
            .as_array()
            .unwrap()
            .contains(&json!("core:rcv_requests = 0")));
    }

    proptest! {
        /// A peer's bytes: a request or a rejection, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_request(&body);
        }

        /// JSON-shaped text around the real members: never a panic, and a
        /// rejection is one of the two request-level codes.
        #[test]
        fn json_shaped_requests_never_panic(
            id in prop_oneof![Just("1".to_owned()), Just("null".to_owned()), "\"[a-z]{0,4}\"", Just("[]".to_owned())],
            method in prop_oneof![Just("\"dispatcher.list\"".to_owned()), "[0-9a-z\"{}]{0,8}"],
            params in prop_oneof![Just("[]".to_owned()), Just("{}".to_owned()), "[\\[\\]{}0-9a-z\",:]{0,12}"],
        ) {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":{method},"params":{params}}}"#);
            if let Err(r) = parse_request(body.as_bytes()) {
                prop_assert!(r.error.code == PARSE_ERROR || r.error.code == INVALID_REQUEST);
            }
        }
    }
}
