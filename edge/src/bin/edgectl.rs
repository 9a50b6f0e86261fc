//! `edgectl`: the operator's command line for edge's JSON-RPC control plane.
//!
//! One HTTP/1.1 POST per call over a std `TcpStream` (`Connection: close`,
//! with timeouts). Human output by default, `--json` prints the raw
//! `result`. Any failure (connection, HTTP status, JSON-RPC error) exits
//! non-zero with the server's message on stderr.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    name = "edgectl",
    version,
    about = "Control a running edge over JSON-RPC"
)]
struct Cli {
    /// The edge's RPC address (HOST:PORT).
    #[arg(
        long,
        global = true,
        env = "EDGE_RPC",
        default_value = "127.0.0.1:5090"
    )]
    rpc: String,
    /// Bearer token for the RPC server.
    #[arg(long, global = true, env = "EDGE_RPC_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the raw JSON result instead of a human rendering.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dispatcher destinations.
    #[command(subcommand)]
    Dispatcher(Dispatcher),
    /// Counters over all shards (`stats.get_statistics`): `all` by
    /// default, or groups (`core:`) and names (`rcv_requests`,
    /// `tm:created`).
    Stats {
        /// Groups or names.
        names: Vec<String>,
    },
    /// Call any JSON-RPC method; PARAMS are JSON values when they parse as
    /// JSON, strings otherwise.
    Rpc {
        /// The method, e.g. `core.version`.
        method: String,
        /// Positional parameters.
        params: Vec<String>,
    },
}

#[derive(Subcommand)]
enum Dispatcher {
    /// The destination sets with state and calls.
    List,
    /// Set the state of a destination (or `all` of a set).
    SetState {
        /// The new state.
        state: StateWord,
        /// The set id.
        group: u32,
        /// The destination URI, or `all`.
        uri: String,
    },
    /// Drain a destination: no new calls, its dialogs finish.
    Drain {
        /// The set id.
        group: u32,
        /// The destination URI, a duid, or `all`.
        uri: String,
        /// Wait until its active calls reach 0, printing progress.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this many seconds (exit non-zero).
        #[arg(long, value_name = "S", default_value_t = 300.0)]
        timeout: f64,
    },
    /// Re-read the dispatcher list.
    Reload,
}

#[derive(Clone, Copy, ValueEnum)]
enum StateWord {
    Active,
    Inactive,
    Disabled,
    Draining,
}

impl StateWord {
    fn word(self) -> &'static str {
        match self {
            StateWord::Active => "active",
            StateWord::Inactive => "inactive",
            StateWord::Disabled => "disabled",
            StateWord::Draining => "draining",
        }
    }
}

const IO_TIMEOUT: Duration = Duration::from_secs(10);

struct Client {
    addr: SocketAddr,
    host: String,
    token: Option<String>,
}

impl Client {
    fn new(rpc: &str, token: Option<String>) -> Result<Self, String> {
        let addr = rpc
            .to_socket_addrs()
            .map_err(|e| format!("bad --rpc address `{rpc}`: {e}"))?
            .next()
            .ok_or_else(|| format!("bad --rpc address `{rpc}`: no address"))?;
        Ok(Client {
            addr,
            host: rpc.to_owned(),
            token: token.filter(|t| !t.is_empty()),
        })
    }

    /// Calls `method` and returns its `result`, or the error as a sentence.
    fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        let mut req = json!({"jsonrpc": "2.0", "method": method, "id": 1});
        if !params.is_null() {
            req["params"] = params;
        }
        let (status, body) = self
            .post(req.to_string().as_bytes())
            .map_err(|e| format!("cannot reach edge at {}: {e}", self.addr))?;
        if status != 200 {
            return Err(format!("HTTP {status}: {}", body.trim()));
        }
        let response: Value = serde_json::from_str(&body)
            .map_err(|e| format!("bad JSON from edge ({e}): {}", body.trim()))?;
        if let Some(error) = response.get("error") {
            let code = error["code"].as_i64().unwrap_or(0);
            let message = error["message"].as_str().unwrap_or("(no message)");
            return Err(format!("{method}: error {code}: {message}"));
        }
        response
            .get("result")
            .cloned()
            .ok_or_else(|| format!("{method}: no result in {response}"))
    }

    fn post(&self, body: &[u8]) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let auth = self
            .token
            .as_deref()
            .map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let head = format!(
            "POST /RPC HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n{auth}Connection: close\r\n\r\n",
            self.host,
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("truncated HTTP answer"))?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("no HTTP status"))?;
        let chunked = head.lines().any(|l| {
            l.to_ascii_lowercase()
                .starts_with("transfer-encoding: chunked")
        });
        Ok((
            status,
            if chunked {
                dechunk(body)
            } else {
                body.to_owned()
            },
        ))
    }
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

fn state_name(flags: &str) -> &'static str {
    match flags.chars().next() {
        Some('A') => "active",
        Some('I') => "inactive",
        Some('D') => "disabled",
        Some('T') => "trying",
        Some('R') => "draining",
        _ => "?",
    }
}

/// `dispatcher.list` as a table: set, uri, state, active, pending.
fn list_table(result: &Value) -> String {
    let mut rows = vec![[
        "SET".to_owned(),
        "URI".to_owned(),
        "STATE".to_owned(),
        "ACTIVE".to_owned(),
        "PENDING".to_owned(),
    ]];
    let records = result["RECORDS"].as_array().cloned().unwrap_or_default();
    for record in &records {
        let set = &record["SET"];
        let targets = set["TARGETS"].as_array().cloned().unwrap_or_default();
        for target in &targets {
            let dest = &target["DEST"];
            rows.push([
                set["ID"].to_string(),
                dest["URI"].as_str().unwrap_or("").to_owned(),
                state_name(dest["FLAGS"].as_str().unwrap_or("")).to_owned(),
                dest["RUNTIME"]["ACTIVE"].to_string(),
                dest["RUNTIME"]["PENDING"].to_string(),
            ]);
        }
    }
    let mut widths = [0usize; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `stats.get_statistics`'s `"group:name = value"` lines as an object
/// `{"group:name": value}` (values that are not integers stay strings).
fn stats_object(result: &Value) -> Value {
    let lines = result.as_array().cloned().unwrap_or_default();
    let pairs = lines.iter().filter_map(|l| {
        let (name, value) = l.as_str()?.split_once(" = ")?;
        let value = value
            .trim()
            .parse::<u64>()
            .map_or_else(|_| json!(value.trim()), |n| json!(n));
        Some((name.trim().to_owned(), value))
    });
    Value::Object(pairs.collect())
}

/// One `name = value` line per statistic in the server's order, names
/// aligned.
fn stats_lines(result: &Value) -> String {
    let lines = result.as_array().cloned().unwrap_or_default();
    let pairs: Vec<(&str, &str)> = lines
        .iter()
        .filter_map(|l| l.as_str()?.split_once(" = "))
        .collect();
    let width = pairs.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(name, value)| format!("{name:<width$} = {value}\n"))
        .collect()
}

/// A command-line parameter: JSON when it parses, else a string.
fn param(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn show(json_out: bool, result: &Value, human: impl FnOnce(&Value) -> String) {
    if json_out {
        println!("{result}");
    } else {
        print!("{}", human(result));
    }
}

fn plain(result: &Value) -> String {
    match result {
        Value::String(s) => format!("{s}\n"),
        other => format!(
            "{}\n",
            serde_json::to_string_pretty(other).unwrap_or_default()
        ),
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let client = Client::new(&cli.rpc, cli.token)?;
    let json_out = cli.json;
    match cli.command {
        Command::Rpc { method, params } => {
            let params = if params.is_empty() {
                Value::Null
            } else {
                Value::Array(params.iter().map(|p| param(p)).collect())
            };
            let result = client.call(&method, params)?;
            show(json_out, &result, plain);
        }
        Command::Stats { names } => {
            let names = if names.is_empty() {
                vec!["all".to_owned()]
            } else {
                names
            };
            let result = client.call("stats.get_statistics", json!(names))?;
            if json_out {
                println!("{}", stats_object(&result));
            } else {
                print!("{}", stats_lines(&result));
            }
        }
        Command::Dispatcher(Dispatcher::List) => {
            let result = client.call("dispatcher.list", Value::Null)?;
            show(json_out, &result, list_table);
        }
        Command::Dispatcher(Dispatcher::Reload) => {
            let result = client.call("dispatcher.reload", Value::Null)?;
            show(json_out, &result, plain);
        }
        Command::Dispatcher(Dispatcher::SetState { state, group, uri }) => {
            let result = client.call("dispatcher.set_state", json!([state.word(), group, uri]))?;
            show(json_out, &result, plain);
        }
        Command::Dispatcher(Dispatcher::Drain {
            group,
            uri,
            wait,
            timeout,
        }) => {
            let result = client.call("dispatcher.drain", json!([group, uri]))?;
            show(json_out, &result, |r| {
                format!(
                    "Draining set {group} {uri}: {} active, {} pending\n",
                    r["ACTIVE"], r["PENDING"]
                )
            });
            if wait {
                wait_drained(&client, group, &uri, timeout, json_out)?;
            }
        }
    }
    Ok(())
}

/// Polls `dispatcher.active_calls` every 500 ms until 0 or `timeout` seconds.
fn wait_drained(
    client: &Client,
    group: u32,
    uri: &str,
    timeout: f64,
    json_out: bool,
) -> Result<(), String> {
    let start = Instant::now();
    let bound = Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(Duration::MAX);
    let address = if uri == "all" {
        Value::Null
    } else {
        json!(uri)
    };
    loop {
        let r = client.call("dispatcher.active_calls", json!([group, address]))?;
        let active = r["ACTIVE"].as_u64().unwrap_or(0);
        let pending = r["PENDING"].as_u64().unwrap_or(0);
        let elapsed = start.elapsed();
        if json_out {
            println!("{}", json!({"elapsed": elapsed.as_secs_f64(), "result": r}));
        } else {
            println!(
                "{:>6.1}s  {active} active, {pending} pending",
                elapsed.as_secs_f64(),
            );
        }
        // Calls still being set up when the drain began may yet be answered.
        if active == 0 && pending == 0 {
            if !json_out {
                println!("Drained.");
            }
            return Ok(());
        }
        if elapsed >= bound {
            return Err(format!(
                "timed out after {timeout}s with {active} active and {pending} pending calls on set {group} {uri}"
            ));
        }
        std::thread::sleep(Duration::from_millis(500).min(bound.saturating_sub(elapsed)));
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("edgectl: {message}");
            ExitCode::FAILURE
        }
    }
}
