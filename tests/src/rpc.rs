//! A tiny HTTP/1.1 client for edge's JSON-RPC server: one POST per
//! connection (`Connection: close`) over a std `TcpStream`, so the tests
//! speak to the server as any operator's script would, with no HTTP library
//! between.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};

/// An HTTP answer: status code and body.
#[derive(Clone, Debug)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

impl HttpReply {
    /// The body as JSON (`Value::Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends `method path` with `body` (and `Authorization: Bearer token` if
/// given) and reads the whole answer.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    token: Option<&str>,
) -> io::Result<HttpReply> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{auth}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other(format!("no end of headers in {text:?}")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no status in {head:?}")))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(HttpReply { status, body })
}

fn dechunk(mut text: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = text.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        text = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A JSON-RPC client of one server.
#[derive(Clone, Debug)]
pub struct RpcClient {
    addr: SocketAddr,
    token: Option<String>,
}

impl RpcClient {
    /// A client of the server at `addr`, without a token.
    pub fn new(addr: SocketAddr) -> Self {
        RpcClient { addr, token: None }
    }

    /// Sends `Authorization: Bearer token`.
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// POSTs `body` as is to `/RPC`.
    pub fn post_raw(&self, body: &[u8]) -> io::Result<HttpReply> {
        request(self.addr, "POST", "/RPC", body, self.token.as_deref())
    }

    /// Calls `method` with `params` (`Value::Null` for none) and returns the
    /// whole JSON-RPC response; an HTTP status other than 200 is an error.
    pub fn call(&self, method: &str, params: Value) -> io::Result<Value> {
        let mut req = json!({"jsonrpc": "2.0", "method": method, "id": 1});
        if !params.is_null() {
            req["params"] = params;
        }
        let reply = self.post_raw(req.to_string().as_bytes())?;
        if reply.status != 200 {
            return Err(io::Error::other(format!(
                "HTTP {}: {}",
                reply.status, reply.body
            )));
        }
        Ok(reply.json())
    }

    /// The `result` of a call that must succeed.
    pub fn result(&self, method: &str, params: Value) -> io::Result<Value> {
        let response = self.call(method, params)?;
        match response.get("result") {
            Some(r) => Ok(r.clone()),
            None => Err(io::Error::other(format!("{method}: {response}"))),
        }
    }

    /// The `(code, message)` of a call that must fail.
    pub fn error(&self, method: &str, params: Value) -> io::Result<(i64, String)> {
        let response = self.call(method, params)?;
        let code = response["error"]["code"].as_i64();
        let message = response["error"]["message"].as_str().map(str::to_owned);
        match (code, message) {
            (Some(c), Some(m)) => Ok((c, m)),
            _ => Err(io::Error::other(format!("{method}: {response}"))),
        }
    }
}
