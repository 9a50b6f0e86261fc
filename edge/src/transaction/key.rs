//! Transaction matching: RFC 3261 17.1.3 (client) and 17.2.3 (server).
//!
//! Keys hold zero-copy slices of the message they came from. A request whose
//! branch lacks the magic cookie (RFC 2543) is keyed by its branch text (maybe
//! empty), sent-by, method, Call-ID, CSeq number and From tag: a simplified form
//! of the 17.2.3 fallback that leaves out the Request-URI and To tag.

use bytes::Bytes;

use crate::sip::{Message, Method, ParseError, Via};

/// The RFC 3261 branch prefix that marks a transaction id.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// A server transaction's identity (17.2.3): branch, sent-by and method, with
/// ACK keyed as INVITE.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerKey {
    branch: Bytes,
    sent_by_host: Bytes,
    sent_by_port: u16,
    method: Bytes,
    /// RFC 2543 fallback only: Call-ID, CSeq number, From tag.
    legacy: Option<Box<(Bytes, u32, Bytes)>>,
}

/// A client transaction's identity (17.1.3): the branch of the top Via and
/// the CSeq method.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey {
    branch: Bytes,
    method: Bytes,
}

/// A key of either kind: the index of a transaction table.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TxnKey {
    /// A server transaction.
    Server(ServerKey),
    /// A client transaction.
    Client(ClientKey),
}

const INVITE: &[u8] = b"INVITE";

impl ServerKey {
    /// The key of a received request (an ACK gets its INVITE's key).
    pub fn from_request(request: &Message) -> Result<ServerKey, ParseError> {
        let via = request.top_via()?;
        Ok(Self::from_parts(request, &via, || {
            request.from().ok().and_then(|f| f.tag())
        }))
    }

    /// The key of `request` whose top Via is `via`; `from_tag` is asked for
    /// only by the RFC 2543 fallback.
    pub(crate) fn from_parts<'m>(
        request: &'m Message,
        via: &Via<'m>,
        from_tag: impl FnOnce() -> Option<&'m [u8]>,
    ) -> ServerKey {
        let buf = request.bytes();
        let method = match request.method() {
            Some(Method::Ack) => Bytes::from_static(INVITE),
            _ => sub(buf, request.method_name().unwrap_or_default()),
        };
        let branch = via.branch().unwrap_or_default();
        let legacy = (!branch.starts_with(MAGIC_COOKIE)).then(|| {
            let from_tag = from_tag().unwrap_or_default();
            Box::new((
                sub(buf, request.call_id()),
                request.cseq().seq,
                sub(buf, from_tag),
            ))
        });
        ServerKey {
            branch: sub(buf, branch),
            sent_by_host: sub(buf, via.host_raw()),
            sent_by_port: via.port().unwrap_or(5060),
            method,
            legacy,
        }
    }

    /// The same transaction id for another method: a CANCEL's key with
    /// `INVITE` finds the INVITE it cancels (RFC 3261 9.2).
    pub fn with_method(&self, method: &'static [u8]) -> ServerKey {
        ServerKey {
            method: Bytes::from_static(method),
            ..self.clone()
        }
    }

    /// The branch parameter.
    pub fn branch(&self) -> &[u8] {
        &self.branch
    }
}

impl ClientKey {
    /// The key of a request we send with `branch` and method token `method`.
    pub fn new(branch: Bytes, method: Bytes) -> ClientKey {
        ClientKey { branch, method }
    }

    /// The key a received response matches on.
    pub fn from_response(response: &Message) -> Result<ClientKey, ParseError> {
        let via = response.top_via()?;
        Ok(Self::from_response_via(response, &via))
    }

    /// The key of `response` whose top Via is `via`.
    pub(crate) fn from_response_via(response: &Message, via: &Via<'_>) -> ClientKey {
        let buf = response.bytes();
        ClientKey {
            branch: sub(buf, via.branch().unwrap_or_default()),
            method: sub(buf, response.cseq().method_name),
        }
    }

    /// The key of a request as sent (top Via branch, method token).
    pub fn from_request(request: &Message) -> Result<ClientKey, ParseError> {
        let buf = request.bytes();
        let via = request.top_via()?;
        Ok(ClientKey {
            branch: sub(buf, via.branch().unwrap_or_default()),
            method: sub(buf, request.method_name().unwrap_or_default()),
        })
    }

    /// The branch parameter.
    pub fn branch(&self) -> &[u8] {
        &self.branch
    }
}

/// `part` as a zero-copy slice of `buf` when it lies inside it, else a copy.
fn sub(buf: &Bytes, part: &[u8]) -> Bytes {
    let start = buf.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    if part.is_empty() {
        return Bytes::new();
    }
    if p >= start && p + part.len() <= start + buf.len() {
        buf.slice_ref(part)
    } else {
        Bytes::copy_from_slice(part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::ParseLimits;

    fn msg(text: &str) -> Message {
        Message::parse_datagram(
            Bytes::copy_from_slice(text.as_bytes()),
            &ParseLimits::datagram(),
        )
        .unwrap()
    }

    fn request(method: &str, branch: &str, sent_by: &str) -> Message {
        msg(&format!(
            "{method} sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {sent_by};branch={branch}\r\n\
From: <sip:a@example.com>;tag=f\r\nTo: <sip:b@example.com>\r\nCall-ID: c\r\n\
CSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        ))
    }

    #[test]
    fn server_matching_17_2_3() {
        let invite = ServerKey::from_request(&request("INVITE", "z9hG4bKa", "h:5060")).unwrap();
        let ack = ServerKey::from_request(&request("ACK", "z9hG4bKa", "h")).unwrap();
        let cancel = ServerKey::from_request(&request("CANCEL", "z9hG4bKa", "h")).unwrap();
        let other_host = ServerKey::from_request(&request("INVITE", "z9hG4bKa", "g")).unwrap();
        let other_branch = ServerKey::from_request(&request("INVITE", "z9hG4bKb", "h")).unwrap();
        assert_eq!(
            invite, ack,
            "ACK matches its INVITE; port 5060 is the default"
        );
        assert_ne!(invite, cancel);
        assert_eq!(cancel.with_method(b"INVITE"), invite);
        assert_ne!(invite, other_host);
        assert_ne!(invite, other_branch);
    }

    #[test]
    fn legacy_branch_uses_dialog_fields() {
        let a = ServerKey::from_request(&request("OPTIONS", "old", "h")).unwrap();
        assert!(a.legacy.is_some());
        let b = ServerKey::from_request(&request("OPTIONS", "old", "h")).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn client_matching_17_1_3() {
        let r = msg("SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP p;branch=z9hG4bKx, SIP/2.0/UDP q;branch=z9hG4bKy\r\n\
From: <sip:a@e>;tag=1\r\nTo: <sip:b@e>;tag=2\r\nCall-ID: c\r\nCSeq: 5 INVITE\r\nContent-Length: 0\r\n\r\n");
        let key = ClientKey::from_response(&r).unwrap();
        assert_eq!(
            key,
            ClientKey::new(
                Bytes::from_static(b"z9hG4bKx"),
                Bytes::from_static(b"INVITE")
            )
        );
        assert_ne!(
            key,
            ClientKey::new(
                Bytes::from_static(b"z9hG4bKx"),
                Bytes::from_static(b"CANCEL")
            )
        );
    }
}
