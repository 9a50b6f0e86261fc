//! The HTTP side of the control plane: one thread of its own (not pinned to
//! a data-plane core) running a `tiny_http` server. It reads and checks each
//! request and hands the method call to the main thread, which owns the
//! dispatcher view and the reload path, then writes the answer.
//!
//! `GET /metrics` is answered here from the main thread's latest copy of the
//! shards' reports ([`crate::metrics`]), without a call to the main thread.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use serde_json::Value;

use super::{failure, parse_request, success, Request, RpcError, OPERATIONAL};
use crate::metrics::Metrics;

/// The largest request body read, bytes; a longer one gets 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long a call waits for the main thread.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(200);

/// A method call for the main thread.
pub struct Call {
    /// The request.
    pub request: Request,
    /// Who sent it.
    pub remote: SocketAddr,
    /// Where the result goes.
    pub reply: Sender<Result<Value, RpcError>>,
}

/// The running server.
pub struct RpcServer {
    addr: SocketAddr,
    thread: JoinHandle<()>,
}

impl RpcServer {
    /// Binds `addr` (an error is a sentence for the operator) and starts the
    /// thread; calls arrive on the returned receiver until `stop` is set.
    pub fn start(
        addr: SocketAddr,
        token: Option<String>,
        stop: Arc<AtomicBool>,
        metrics: Metrics,
    ) -> Result<(RpcServer, Receiver<Call>), String> {
        let server = tiny_http::Server::http(addr)
            .map_err(|e| format!("rpc: cannot listen on {addr}: {e}"))?;
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| format!("rpc: {addr} is not an IP address"))?;
        let (tx, rx) = crossbeam_channel::bounded(64);
        let thread = std::thread::Builder::new()
            .name("rpc".into())
            .spawn(move || serve(&server, token.as_deref(), &tx, &stop, &metrics))
            .map_err(|e| format!("rpc: cannot start its thread: {e}"))?;
        Ok((
            RpcServer {
                addr: bound,
                thread,
            },
            rx,
        ))
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for the thread (after the stop flag was set).
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("rpc: the server thread panicked");
        }
    }
}

fn serve(
    server: &tiny_http::Server,
    token: Option<&str>,
    calls: &Sender<Call>,
    stop: &AtomicBool,
    metrics: &Metrics,
) {
    while !stop.load(Ordering::Relaxed) {
        match server.recv_timeout(POLL) {
            Ok(Some(request)) => handle(request, token, calls, metrics),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("rpc: accepting a request failed: {e}");
                std::thread::sleep(POLL);
            }
        }
    }
}

fn header(name: &str, value: &str) -> Option<tiny_http::Header> {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

fn respond(request: tiny_http::Request, status: u16, body: String, extra: Option<(&str, &str)>) {
    let mut response = tiny_http::Response::from_string(body).with_status_code(status);
    let content_type = if status == 200 {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    if let Some(h) = header("Content-Type", content_type) {
        response.add_header(h);
    }
    if let Some(h) = extra.and_then(|(n, v)| header(n, v)) {
        response.add_header(h);
    }
    if let Err(e) = request.respond(response) {
        tracing::debug!("rpc: writing the response failed: {e}");
    }
}

/// Compares without stopping at the first difference.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(request: &tiny_http::Request, token: &str) -> bool {
    request
        .headers()
        .iter()
        .filter(|h| h.field.equiv("Authorization"))
        .any(|h| {
            let v = h.value.as_str();
            v.len() > 7
                && v[..7].eq_ignore_ascii_case("Bearer ")
                && same_secret(v[7..].trim().as_bytes(), token.as_bytes())
        })
}

/// The Prometheus text of the shards' latest reports.
fn serve_metrics(request: tiny_http::Request, metrics: &Metrics) {
    let mut response = tiny_http::Response::from_string(metrics.render());
    if let Some(h) = header("Content-Type", crate::metrics::CONTENT_TYPE) {
        response.add_header(h);
    }
    if let Err(e) = request.respond(response) {
        tracing::debug!("rpc: writing the metrics failed: {e}");
    }
}

fn handle(
    mut request: tiny_http::Request,
    token: Option<&str>,
    calls: &Sender<Call>,
    metrics: &Metrics,
) {
    let remote = request
        .remote_addr()
        .copied()
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let path = request.url().split('?').next().unwrap_or("");
    let is_metrics = path == "/metrics";
    if !is_metrics && path != "/RPC" && path != "/" {
        return respond(
            request,
            404,
            "Not found: POST to /RPC, or GET /metrics\n".into(),
            None,
        );
    }
    if is_metrics && *request.method() != tiny_http::Method::Get {
        return respond(request, 405, "GET only\n".into(), Some(("Allow", "GET")));
    }
    if !is_metrics && *request.method() != tiny_http::Method::Post {
        return respond(request, 405, "POST only\n".into(), Some(("Allow", "POST")));
    }
    if let Some(token) = token {
        if !authorized(&request, token) {
            tracing::warn!(%remote, "rpc: request without the bearer token refused");
            return respond(
                request,
                401,
                "Unauthorized: send Authorization: Bearer TOKEN\n".into(),
                Some(("WWW-Authenticate", "Bearer")),
            );
        }
    }
    if is_metrics {
        return serve_metrics(request, metrics);
    }
    if request.body_length().is_some_and(|n| n > MAX_BODY_BYTES) {
        return respond(request, 413, "Request body too large\n".into(), None);
    }
    let mut body = Vec::new();
    let read = request
        .as_reader()
        .take(MAX_BODY_BYTES as u64 + 1)
        .read_to_end(&mut body);
    if let Err(e) = read {
        tracing::debug!(%remote, "rpc: reading the request failed: {e}");
        return;
    }
    if body.len() > MAX_BODY_BYTES {
        return respond(request, 413, "Request body too large\n".into(), None);
    }
    let answer = match parse_request(&body) {
        Err(rejected) => Some(failure(rejected.id, &rejected.error)),
        Ok(req) => {
            let id = req.id.clone();
            tracing::debug!(%remote, method = %req.method, "rpc call");
            let result = call(calls, req, remote);
            id.map(|id| match result {
                Ok(r) => success(id, r),
                Err(e) => failure(id, &e),
            })
        }
    };
    match answer {
        Some(a) => respond(request, 200, a.to_string(), None),
        // A notification: run, never answered (JSON-RPC 2.0, 4.1).
        None => respond(request, 204, String::new(), None),
    }
}

fn call(calls: &Sender<Call>, request: Request, remote: SocketAddr) -> Result<Value, RpcError> {
    let gone = || RpcError::new(OPERATIONAL, "The edge is shutting down");
    let (reply, result) = crossbeam_channel::bounded(1);
    calls
        .send_timeout(
            Call {
                request,
                remote,
                reply,
            },
            CALL_TIMEOUT,
        )
        .map_err(|_| gone())?;
    result.recv_timeout(CALL_TIMEOUT).map_err(|_| gone())?
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
    }
}
