//! Replies: the outcome of a command as the dictionary rtpengine would
//! send, in rtpengine's key order.
//!
//! - `ok` (or `pong`): the command's keys (e.g. `sdp`), then `warning` if
//!   anything went only partly right, then `result` last.
//! - `error`: `result` then `error-reason`, nothing else.
//! - `load limit`: `result` then `message`, only to a client that sent
//!   `supports: ["load limit"]` (Kamailio then tries the next relay); any
//!   other client gets an `error` with the same sentence.

use bytes::Bytes;

use super::bencode::{Dict, Value};
use super::datagram::{frame_reply, Cookie};
use super::request::Warning;

/// Delete's warning for an unknown call (its error with flag `fatal`).
pub const CALL_NOT_FOUND: &str = "Call-ID not found or tags didn't match";
/// A load-limit message: too many sessions.
pub const LOAD_LIMIT_SESSIONS: &str = "Parallel session limit reached";
/// A load-limit message: CPU.
pub const LOAD_LIMIT_CPU: &str = "CPU usage limit exceeded";
/// A load-limit message: load average.
pub const LOAD_LIMIT_LOAD: &str = "Load limit exceeded";
/// A load-limit message: bandwidth.
pub const LOAD_LIMIT_BANDWIDTH: &str = "Bandwidth limit exceeded";

/// At most this many warnings are spelled out in one reply; the rest are
/// counted. With [`super::request::MAX_SHOWN_BYTES`] per quoted value this
/// keeps `warning` to a few hundred bytes, well inside one datagram.
pub const MAX_WARNINGS_SHOWN: usize = 4;

/// What a command came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `result: ok`, after `fields` (which must not hold `result`).
    Ok {
        /// The command's keys, in the order to write them.
        fields: Dict,
        /// The command's own warnings, after the request's.
        warnings: Vec<Warning>,
    },
    /// `result: pong`, the answer to `ping`.
    Pong,
    /// `result: error` with this `error-reason`.
    Error(String),
    /// `result: load limit` with this `message` (one of the `LOAD_LIMIT_*`
    /// sentences), or an error for a client that does not support it.
    LoadLimit(String),
}

impl Outcome {
    /// `ok` with no keys of its own.
    pub fn ok() -> Self {
        Outcome::ok_with(Dict::new())
    }

    /// `ok` with `fields` before `result`.
    pub fn ok_with(fields: Dict) -> Self {
        Outcome::Ok {
            fields,
            warnings: Vec::new(),
        }
    }

    /// `error` with `reason`.
    pub fn error(reason: impl Into<String>) -> Self {
        Outcome::Error(reason.into())
    }
}

/// The reply dictionary for `outcome`. `request_warnings` are those found
/// while parsing the request; `supports_load_limit` is the request's
/// [`super::request::Options::supports_load_limit`].
pub fn reply_dict(
    outcome: &Outcome,
    request_warnings: &[Warning],
    supports_load_limit: bool,
) -> Dict {
    match outcome {
        Outcome::Ok { fields, warnings } => {
            let all: Vec<&Warning> = request_warnings.iter().chain(warnings).collect();
            success(fields.clone(), &all, "ok")
        }
        Outcome::Pong => {
            let all: Vec<&Warning> = request_warnings.iter().collect();
            success(Dict::new(), &all, "pong")
        }
        Outcome::Error(reason) => error_dict(reason),
        Outcome::LoadLimit(message) if supports_load_limit => {
            let mut d = Dict::with_capacity(2);
            d.push("result", "load limit");
            d.push("message", message.clone());
            d
        }
        Outcome::LoadLimit(message) => error_dict(message),
    }
}

/// The whole reply datagram: `COOKIE SP` and the bencoded
/// [`reply_dict`].
pub fn encode_reply(
    cookie: &Cookie,
    outcome: &Outcome,
    request_warnings: &[Warning],
    supports_load_limit: bool,
) -> Bytes {
    let dict = reply_dict(outcome, request_warnings, supports_load_limit);
    frame_reply(cookie, &dict.to_bytes())
}

/// The reply datagram for an error before any command ran.
pub fn encode_error(cookie: &Cookie, reason: &str) -> Bytes {
    frame_reply(cookie, &error_dict(reason).to_bytes())
}

fn error_dict(reason: &str) -> Dict {
    let mut d = Dict::with_capacity(2);
    d.push("result", "error");
    d.push("error-reason", reason.to_owned());
    d
}

fn success(mut fields: Dict, warnings: &[&Warning], result: &'static str) -> Dict {
    if !warnings.is_empty() {
        fields.push("warning", Value::from(warning_text(warnings)));
    }
    fields.push("result", result);
    fields
}

/// The warnings as one sentence list, the first [`MAX_WARNINGS_SHOWN`]
/// spelled out.
fn warning_text(warnings: &[&Warning]) -> String {
    let shown: Vec<String> = warnings
        .iter()
        .take(MAX_WARNINGS_SHOWN)
        .map(ToString::to_string)
        .collect();
    let mut text = shown.join("; ");
    let more = warnings.len().saturating_sub(MAX_WARNINGS_SHOWN);
    if more > 0 {
        text.push_str(&format!("; and {more} more"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ng::datagram::split_datagram;

    fn cookie() -> Cookie {
        split_datagram(&Bytes::from_static(b"1_27_17 "))
            .expect("framed")
            .0
    }

    #[test]
    fn error_reply_is_byte_exact() {
        let reply = encode_reply(&cookie(), &Outcome::error("Ran out of ports"), &[], false);
        assert_eq!(
            reply,
            &b"1_27_17 d6:result5:error12:error-reason16:Ran out of portse"[..]
        );
    }

    #[test]
    fn errors_carry_no_warnings() {
        let w = [Warning::UnknownFlag("x".into())];
        let d = reply_dict(&Outcome::error("No call-id in message"), &w, false);
        assert_eq!(
            d.to_bytes(),
            &b"d6:result5:error12:error-reason21:No call-id in messagee"[..]
        );
    }

    #[test]
    fn pong_and_plain_ok() {
        assert_eq!(
            reply_dict(&Outcome::Pong, &[], false).to_bytes(),
            &b"d6:result4:ponge"[..]
        );
        assert_eq!(
            reply_dict(&Outcome::ok(), &[], false).to_bytes(),
            &b"d6:result2:oke"[..]
        );
    }

    #[test]
    fn ok_writes_fields_then_warning_then_result() {
        let mut fields = Dict::new();
        fields.push("sdp", "v=0\r\n");
        let outcome = Outcome::Ok {
            fields,
            warnings: vec![Warning::Other(CALL_NOT_FOUND.into())],
        };
        let request_warnings = [Warning::UnknownFlag("bogus".into())];
        let d = reply_dict(&outcome, &request_warnings, false);
        let keys: Vec<&[u8]> = d.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, [&b"sdp"[..], b"warning", b"result"]);
        assert_eq!(
            d.get(b"warning"),
            Some(&Value::from(
                "Unknown flag \"bogus\"; Call-ID not found or tags didn't match"
            ))
        );
    }

    #[test]
    fn warnings_are_bounded() {
        let many: Vec<Warning> = (0..10).map(|i| Warning::Other(format!("w{i}"))).collect();
        let d = reply_dict(&Outcome::ok(), &many, false);
        assert_eq!(
            d.get(b"warning"),
            Some(&Value::from("w0; w1; w2; w3; and 6 more"))
        );
    }

    #[test]
    fn load_limit_only_to_clients_that_support_it() {
        let outcome = Outcome::LoadLimit(LOAD_LIMIT_SESSIONS.into());
        assert_eq!(
            reply_dict(&outcome, &[], true).to_bytes(),
            &b"d6:result10:load limit7:message30:Parallel session limit reachede"[..]
        );
        assert_eq!(
            reply_dict(&outcome, &[], false).to_bytes(),
            &b"d6:result5:error12:error-reason30:Parallel session limit reachede"[..]
        );
    }
}
