//! Property tests of the SIP codec (`edge::sip`): generated messages round-trip
//! through the parser, the editor changes exactly what it is asked to, framing
//! on streams and datagrams follows RFC 3261 18.3, URI comparison follows 19.1.4,
//! and no input makes the codec panic.
//!
//! Strategies build a *model* of a message (what its typed accessors must
//! return). [`Style`] then decides how the model is written: LWS and folding,
//! header-name case and compact forms, how list values spread over header lines,
//! and the order of the header lines. A failing case shrinks in content and, since
//! `Style(None)` is the canonical form, in formatting too.
//!
//! Failure persistence is off (no regression files are written); run with
//! `PROPTEST_CASES=10000` for a deeper search.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::HashSet;
use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use edge::sip::{
    AuthParams, Contact, ContentType, EditError, Editor, HeaderKind, Host, Message, Method,
    NameAddr, Param, Params, ParseError, ParseLimits, Scheme, Uri, Via,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::TestCaseError;

// ---------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------

/// `(name, value)` parameters, exactly as written (a quoted value keeps its quotes).
type PList = Vec<(String, Option<String>)>;

#[derive(Clone, Debug)]
enum GenHost {
    Name(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

#[derive(Clone, Debug)]
enum GenUri {
    Sip {
        secure: bool,
        user: Option<String>,
        host: GenHost,
        port: Option<u16>,
        params: PList,
    },
    Tel {
        number: String,
        params: PList,
    },
}

#[derive(Clone, Debug)]
enum Display {
    /// The unquoted text; written as a quoted-string with `"` and `\` escaped.
    Quoted(String),
    /// `token *(SP token)`, written as is.
    Tokens(String),
}

/// A name-addr or addr-spec with header parameters (From, To, Route, ...).
#[derive(Clone, Debug)]
struct GenAddr {
    display: Option<Display>,
    uri: GenUri,
    brackets: bool,
    params: PList,
}

#[derive(Clone, Debug)]
struct GenContact {
    addr: GenAddr,
    /// q in thousandths.
    q: Option<u16>,
    expires: Option<u32>,
}

#[derive(Clone, Debug)]
struct GenVia {
    transport: String,
    host: GenHost,
    port: Option<u16>,
    branch: Option<String>,
    rport: Option<Option<u16>>,
    received: Option<IpAddr>,
    extra: Option<(String, Option<String>)>,
}

#[derive(Clone, Debug)]
struct GenCt {
    media: String,
    sub: String,
    params: PList,
}

#[derive(Clone, Debug)]
enum Start {
    Request { method: String, uri: GenUri },
    Response { code: u16, reason: String },
}

#[derive(Clone, Debug)]
struct Msg {
    start: Start,
    vias: Vec<GenVia>,
    from: GenAddr,
    to: GenAddr,
    call_id: String,
    cseq: (u32, String),
    max_forwards: Option<u8>,
    contacts: Vec<GenContact>,
    routes: Vec<GenAddr>,
    record_routes: Vec<GenAddr>,
    supported: Vec<String>,
    /// `X-` headers in message order.
    extras: Vec<(String, String)>,
    content_type: Option<GenCt>,
    body: Vec<u8>,
}

const METHODS: [(&str, Method); 14] = [
    ("INVITE", Method::Invite),
    ("ACK", Method::Ack),
    ("BYE", Method::Bye),
    ("CANCEL", Method::Cancel),
    ("OPTIONS", Method::Options),
    ("REGISTER", Method::Register),
    ("PRACK", Method::Prack),
    ("SUBSCRIBE", Method::Subscribe),
    ("NOTIFY", Method::Notify),
    ("PUBLISH", Method::Publish),
    ("INFO", Method::Info),
    ("REFER", Method::Refer),
    ("MESSAGE", Method::Message),
    ("UPDATE", Method::Update),
];

/// The method a token names; methods are case-sensitive (RFC 3261 7.1).
fn method_kind(token: &str) -> Method {
    METHODS
        .iter()
        .find(|(name, _)| *name == token)
        .map_or(Method::Extension, |&(_, m)| m)
}

fn lookup(params: &PList, name: &str) -> Option<String> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.clone())
}

impl GenHost {
    fn text(&self) -> String {
        match self {
            GenHost::Name(n) => n.clone(),
            GenHost::V4(a) => a.to_string(),
            GenHost::V6(a) => format!("[{a}]"),
        }
    }

    fn expected(&self) -> Host<'_> {
        match self {
            GenHost::Name(n) => Host::Name(n.as_bytes()),
            GenHost::V4(a) => Host::Ipv4(*a),
            GenHost::V6(a) => Host::Ipv6(*a),
        }
    }
}

impl GenUri {
    fn text(&self) -> String {
        match self {
            GenUri::Sip {
                secure,
                user,
                host,
                port,
                params,
            } => {
                let scheme = if *secure { "sips" } else { "sip" };
                let user = user.as_ref().map_or(String::new(), |u| format!("{u}@"));
                let port = port.map_or(String::new(), |p| format!(":{p}"));
                format!("{scheme}:{user}{}{port}{}", host.text(), uri_params(params))
            }
            GenUri::Tel { number, params } => format!("tel:{number}{}", uri_params(params)),
        }
    }

    fn params(&self) -> &PList {
        match self {
            GenUri::Sip { params, .. } | GenUri::Tel { params, .. } => params,
        }
    }
}

impl Display {
    fn expected(&self) -> String {
        match self {
            Display::Quoted(s) | Display::Tokens(s) => s.clone(),
        }
    }
}

impl GenContact {
    /// The address with q and expires appended to its parameters.
    fn addr(&self) -> GenAddr {
        let mut addr = self.addr.clone();
        if let Some(q) = self.q {
            addr.params.push(("q".into(), Some(q_text(q))));
        }
        if let Some(e) = self.expires {
            addr.params.push(("expires".into(), Some(e.to_string())));
        }
        addr
    }
}

impl GenVia {
    fn params(&self) -> PList {
        let mut p = PList::new();
        if let Some(b) = &self.branch {
            p.push(("branch".into(), Some(b.clone())));
        }
        if let Some(r) = self.rport {
            p.push(("rport".into(), r.map(|n| n.to_string())));
        }
        if let Some(r) = self.received {
            p.push(("received".into(), Some(r.to_string())));
        }
        p.extend(self.extra.clone());
        p
    }
}

/// `qvalue` (RFC 3261 20.10) from thousandths: `1`, `0`, `0.5`, `0.125`.
fn q_text(q: u16) -> String {
    if q == 1000 {
        return "1".into();
    }
    let frac = format!("{q:03}");
    match frac.trim_end_matches('0') {
        "" => "0".into(),
        f => format!("0.{f}"),
    }
}

// ---------------------------------------------------------------------------
// Writing a model
// ---------------------------------------------------------------------------

/// `LWS = [*WSP CRLF] 1*WSP` (RFC 3261 25.1); the last three fold the line.
const LWS: [&str; 7] = [" ", "\t", "  ", " \t", "\r\n ", "\r\n\t", " \r\n  "];

/// Formatting choices, drawn from a seeded splitmix64. `Style(None)` is the
/// canonical form: long names as registered, single spaces, one line per header.
#[derive(Clone, Debug)]
struct Style(Option<u64>);

impl Style {
    /// A number below `n`; always 0 in the canonical form.
    fn pick(&mut self, n: usize) -> usize {
        let Some(s) = &mut self.0 else { return 0 };
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }

    fn coin(&mut self) -> bool {
        self.pick(2) == 1
    }

    fn lws(&mut self) -> &'static str {
        LWS[self.pick(LWS.len())]
    }

    /// `SWS = [LWS]`.
    fn sws(&mut self) -> &'static str {
        if self.coin() {
            self.lws()
        } else {
            ""
        }
    }

    /// `s` with the case of random letters flipped.
    fn case(&mut self, s: &str) -> String {
        s.chars()
            .map(|c| if self.coin() { flip_case(c) } else { c })
            .collect()
    }

    /// A header name: the compact form or the long one, in random case.
    fn name(&mut self, long: &str, compact: Option<char>) -> String {
        match compact {
            Some(c) if self.coin() => self.case(&c.to_string()),
            _ => self.case(long),
        }
    }

    /// `name HCOLON value CRLF`, `HCOLON = *( SP / HTAB ) ":" SWS`.
    fn field(&mut self, name: &str, value: &str) -> String {
        let before = ["", " ", "\t"][self.pick(3)];
        let after = if self.pick(4) == 0 { " " } else { self.sws() };
        format!("{name}{before}:{after}{value}\r\n")
    }

    fn line(&mut self, long: &str, compact: Option<char>, value: &str) -> Vec<String> {
        let name = self.name(long, compact);
        vec![self.field(&name, value)]
    }

    /// List values spread over one or several header lines (RFC 3261 7.3.1),
    /// `COMMA = SWS "," SWS` inside a line.
    fn list(&mut self, long: &str, compact: Option<char>, values: Vec<String>) -> Vec<String> {
        let mut lines = Vec::new();
        let mut current: Option<String> = None;
        for v in values {
            let new_line = self.coin();
            current = Some(match current.take() {
                Some(cur) if new_line => {
                    lines.extend(self.line(long, compact, &cur));
                    v
                }
                Some(cur) => format!("{cur}{},{}{v}", self.sws(), self.sws()),
                None => v,
            });
        }
        if let Some(cur) = current {
            lines.extend(self.line(long, compact, &cur));
        }
        lines
    }

    /// A random interleaving that keeps the order inside each group.
    fn interleave(&mut self, mut groups: Vec<Vec<String>>) -> Vec<String> {
        groups.iter_mut().for_each(|g| g.reverse());
        let mut out = Vec::new();
        loop {
            groups.retain(|g| !g.is_empty());
            if groups.is_empty() {
                return out;
            }
            let i = self.pick(groups.len());
            out.extend(groups[i].pop());
        }
    }
}

fn flip_case(c: char) -> char {
    if c.is_ascii_uppercase() {
        c.to_ascii_lowercase()
    } else {
        c.to_ascii_uppercase()
    }
}

fn quote(s: &str) -> String {
    let mut q = String::from('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// URI parameters: no whitespace allowed.
fn uri_params(params: &PList) -> String {
    params
        .iter()
        .map(|(n, v)| match v {
            Some(v) => format!(";{n}={v}"),
            None => format!(";{n}"),
        })
        .collect()
}

/// Header parameters, `SEMI = SWS ";" SWS` and `EQUAL = SWS "=" SWS`.
fn header_params(params: &PList, st: &mut Style) -> String {
    let mut s = String::new();
    for (n, v) in params {
        s += &format!("{};{}{n}", st.sws(), st.sws());
        if let Some(v) = v {
            s += &format!("{}={}{v}", st.sws(), st.sws());
        }
    }
    s
}

/// `sent-protocol LWS sent-by *( SEMI via-params )`, `SLASH` and `COLON` with SWS.
fn via_text(v: &GenVia, st: &mut Style) -> String {
    let mut s = format!(
        "SIP{}/{}2.0{}/{}{}{}{}",
        st.sws(),
        st.sws(),
        st.sws(),
        st.sws(),
        v.transport,
        st.lws(),
        v.host.text()
    );
    if let Some(p) = v.port {
        s += &format!("{}:{}{p}", st.sws(), st.sws());
    }
    s + &header_params(&v.params(), st)
}

fn addr_text(a: &GenAddr, st: &mut Style) -> String {
    let mut s = match &a.display {
        Some(Display::Quoted(d)) => quote(d) + st.sws(),
        Some(Display::Tokens(d)) => d.clone() + st.sws(),
        None => String::new(),
    };
    if a.brackets {
        s += &format!("<{}>", a.uri.text());
    } else {
        s += &a.uri.text();
    }
    s + &header_params(&a.params, st)
}

fn ct_text(ct: &GenCt, st: &mut Style) -> String {
    let (a, b) = (st.sws(), st.sws());
    format!("{}{a}/{b}{}", ct.media, ct.sub) + &header_params(&ct.params, st)
}

fn render(g: &Msg, st: &mut Style) -> Vec<u8> {
    let start = match &g.start {
        Start::Request { method, uri } => format!("{method} {} SIP/2.0\r\n", uri.text()),
        Start::Response { code, reason } => format!("SIP/2.0 {code} {reason}\r\n"),
    };
    let vias = g.vias.iter().map(|v| via_text(v, st)).collect();
    let contacts = g
        .contacts
        .iter()
        .map(|c| addr_text(&c.addr(), st))
        .collect();
    let routes = g.routes.iter().map(|a| addr_text(a, st)).collect();
    let rrs = g.record_routes.iter().map(|a| addr_text(a, st)).collect();
    let (from, to) = (addr_text(&g.from, st), addr_text(&g.to, st));
    let cseq = format!("{}{}{}", g.cseq.0, st.lws(), g.cseq.1);
    let mut groups = vec![
        st.list("Via", Some('v'), vias),
        st.line("From", Some('f'), &from),
        st.line("To", Some('t'), &to),
        st.line("Call-ID", Some('i'), &g.call_id),
        st.line("CSeq", None, &cseq),
        st.list("Contact", Some('m'), contacts),
        st.list("Route", None, routes),
        st.list("Record-Route", None, rrs),
        st.list("Supported", Some('k'), g.supported.clone()),
        g.extras.iter().map(|(n, v)| st.field(n, v)).collect(),
        st.line("Content-Length", Some('l'), &g.body.len().to_string()),
    ];
    if let Some(mf) = g.max_forwards {
        groups.push(st.line("Max-Forwards", None, &mf.to_string()));
    }
    if let Some(ct) = &g.content_type {
        let value = ct_text(ct, st);
        groups.push(st.line("Content-Type", Some('c'), &value));
    }
    let mut out = start.into_bytes();
    for line in st.interleave(groups) {
        out.extend_from_slice(line.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&g.body);
    out
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

fn style() -> impl Strategy<Value = Style> {
    option::of(any::<u64>()).prop_map(Style)
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.!%*_+`'~-]{1,10}"
}

fn method() -> impl Strategy<Value = String> {
    let known: Vec<String> = METHODS.iter().map(|(n, _)| n.to_string()).collect();
    prop_oneof![select(known), token()]
}

fn host() -> BoxedStrategy<GenHost> {
    let label = "[a-zA-Z]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?";
    let name = format!("{label}(\\.{label}){{0,3}}");
    prop_oneof![
        2 => proptest::string::string_regex(&name).unwrap().prop_map(GenHost::Name),
        1 => any::<[u8; 4]>().prop_map(|a| GenHost::V4(a.into())),
        1 => ipv6().prop_map(GenHost::V6),
    ]
    .boxed()
}

/// IPv6 addresses with runs of zero groups, so `::` compression is exercised.
fn ipv6() -> BoxedStrategy<Ipv6Addr> {
    prop::array::uniform8(prop_oneof![Just(0u16), any::<u16>()])
        .prop_map(Ipv6Addr::from)
        .boxed()
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| IpAddr::V4(a.into())),
        ipv6().prop_map(IpAddr::V6),
    ]
}

/// Parameters with distinct names (case-insensitively).
fn distinct_params(params: PList) -> PList {
    let mut seen = HashSet::new();
    params
        .into_iter()
        .filter(|(n, _)| seen.insert(n.to_ascii_lowercase()))
        .collect()
}

fn uri_param() -> BoxedStrategy<(String, Option<String>)> {
    let named = |name: &'static str, values: Vec<&'static str>| {
        select(values).prop_map(move |v| (name.to_string(), Some(v.to_string())))
    };
    prop_oneof![
        Just(("lr".to_string(), None)),
        named("transport", vec!["udp", "tcp", "TLS", "sctp", "ws"]),
        named("user", vec!["phone", "ip"]),
        any::<u8>().prop_map(|t| ("ttl".into(), Some(t.to_string()))),
        any::<[u8; 4]>().prop_map(|a| ("maddr".into(), Some(Ipv4Addr::from(a).to_string()))),
        (
            "x[a-z0-9-]{0,5}",
            option::of(r"[a-zA-Z0-9_.!~*'()\[\]/:&+$-]{1,8}")
        ),
    ]
    .boxed()
}

fn sip_uri() -> BoxedStrategy<GenUri> {
    let user = "([a-zA-Z0-9_.!~*'()&=+$-]|%[0-9a-fA-F]{2}){1,8}";
    (
        any::<bool>(),
        option::of(user),
        host(),
        option::of(any::<u16>()),
        vec(uri_param(), 0..4).prop_map(distinct_params),
    )
        .prop_map(|(secure, user, host, port, params)| GenUri::Sip {
            secure,
            user,
            host,
            port,
            params,
        })
        .boxed()
}

fn tel_uri() -> BoxedStrategy<GenUri> {
    let param = ("x[a-z0-9-]{0,5}", option::of("[a-zA-Z0-9.+-]{1,8}"));
    (
        r"\+?[0-9]{1,4}([-.][0-9]{1,4}){0,3}",
        vec(param, 0..2).prop_map(distinct_params),
    )
        .prop_map(|(number, params)| GenUri::Tel { number, params })
        .boxed()
}

fn any_uri() -> BoxedStrategy<GenUri> {
    prop_oneof![3 => sip_uri(), 1 => tel_uri()].boxed()
}

fn display() -> BoxedStrategy<Display> {
    prop_oneof![
        "[a-zA-Z0-9 ,;:<>@\"\\\\.é]{0,12}".prop_map(Display::Quoted),
        "[A-Za-z0-9.!%*_+`'~-]{1,8}( [A-Za-z0-9.!%*_+`'~-]{1,8}){0,2}".prop_map(Display::Tokens),
    ]
    .boxed()
}

/// A generic-param (`token [EQUAL (token / quoted-string)]`) named `x...`, so it
/// never shadows tag, q, expires, branch, rport or received.
fn generic_param() -> BoxedStrategy<(String, Option<String>)> {
    let quoted = "[a-zA-Z0-9 ;,=<>\"\\\\]{0,8}".prop_map(|s| quote(&s));
    let value = prop_oneof![token(), quoted];
    ("x[a-z0-9-]{0,5}", option::of(value)).boxed()
}

/// Without `<>` the URI may carry no parameters (they would be the header's).
fn name_addr(
    uri: impl Strategy<Value = GenUri>,
    params: impl Strategy<Value = PList>,
) -> impl Strategy<Value = GenAddr> {
    (option::of(display()), uri, any::<bool>(), params).prop_map(
        |(display, uri, brackets, params)| {
            let brackets = brackets || display.is_some() || !uri.params().is_empty();
            GenAddr {
                display,
                uri,
                brackets,
                params,
            }
        },
    )
}

fn from_to() -> BoxedStrategy<GenAddr> {
    let params = (option::of(token()), option::of(generic_param())).prop_map(|(tag, p)| {
        let tag = tag.map(|t| ("tag".to_string(), Some(t)));
        tag.into_iter().chain(p).collect()
    });
    name_addr(any_uri(), params).boxed()
}

fn route() -> BoxedStrategy<GenAddr> {
    let params = option::of(generic_param()).prop_map(|p| p.into_iter().collect());
    name_addr(sip_uri(), params)
        .prop_map(|a| GenAddr {
            brackets: true,
            ..a
        })
        .boxed()
}

fn contact() -> BoxedStrategy<GenContact> {
    let params = vec(generic_param(), 0..2);
    (
        name_addr(any_uri(), params),
        option::of(0u16..=1000),
        option::of(any::<u32>()),
    )
        .prop_map(|(addr, q, expires)| GenContact { addr, q, expires })
        .boxed()
}

fn via() -> BoxedStrategy<GenVia> {
    let transports = vec!["UDP", "TCP", "TLS", "SCTP", "WS", "WSS", "udp"];
    (
        select(transports),
        host(),
        option::of(any::<u16>()),
        option::of("z9hG4bK[A-Za-z0-9.!%*_+`'~-]{1,12}"),
        option::of(option::of(any::<u16>())),
        option::of(ip()),
        option::of(generic_param()),
    )
        .prop_map(
            |(transport, host, port, branch, rport, received, extra)| GenVia {
                transport: transport.into(),
                host,
                port,
                branch,
                rport,
                received,
                extra,
            },
        )
        .boxed()
}

fn content_type() -> BoxedStrategy<GenCt> {
    let known = vec![
        ("application", "sdp", None),
        ("text", "plain", Some(("charset", "utf-8"))),
        ("message", "sipfrag", Some(("version", "2.0"))),
        ("multipart", "mixed", Some(("boundary", "\"b;1 x\""))),
        ("application", "pidf+xml", None),
    ];
    select(known)
        .prop_map(|(media, sub, param)| GenCt {
            media: media.into(),
            sub: sub.into(),
            params: param
                .map(|(n, v)| (n.to_string(), Some(v.to_string())))
                .into_iter()
                .collect(),
        })
        .boxed()
}

/// `X-` headers from a small pool of names, so that repeats occur.
fn x_name() -> impl Strategy<Value = String> {
    "X-[a-cA-C]"
}

fn x_value() -> impl Strategy<Value = String> {
    "[!-~]([ !-~]{0,15}[!-~])?"
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..128)
}

fn start() -> BoxedStrategy<Start> {
    prop_oneof![
        3 => (method(), any_uri()).prop_map(|(method, uri)| Start::Request { method, uri }),
        1 => (100u16..700, "([A-Za-zé][A-Za-z é]{0,15})?")
            .prop_map(|(code, reason)| Start::Response { code, reason }),
    ]
    .boxed()
}

fn msg() -> BoxedStrategy<Msg> {
    let addrs = (
        from_to(),
        from_to(),
        vec(contact(), 0..3),
        vec(route(), 0..3),
        vec(route(), 0..3),
    );
    let call_id = r#"[a-zA-Z0-9.!%*_+`'~()<>:\\"/\[\]?{}-]{1,16}(@[a-zA-Z0-9.-]{1,12})?"#;
    let misc = (
        call_id,
        0u32..1 << 31,
        method(),
        option::of(any::<u8>()),
        vec(token(), 0..3),
        vec((x_name(), x_value()), 0..4),
        option::of(content_type()),
        body(),
    );
    (start(), vec(via(), 1..5), addrs, misc)
        .prop_map(|(start, vias, addrs, misc)| {
            let (from, to, contacts, routes, record_routes) = addrs;
            let (
                call_id,
                seq,
                response_method,
                max_forwards,
                supported,
                extras,
                content_type,
                body,
            ) = misc;
            let cseq_method = match &start {
                Start::Request { method, .. } => method.clone(),
                Start::Response { .. } => response_method,
            };
            Msg {
                start,
                vias,
                from,
                to,
                call_id,
                cseq: (seq, cseq_method),
                max_forwards,
                contacts,
                routes,
                record_routes,
                supported,
                extras,
                content_type,
                body,
            }
        })
        .boxed()
}

// ---------------------------------------------------------------------------
// Checking a parsed message against its model
// ---------------------------------------------------------------------------

fn fail(e: impl Debug) -> TestCaseError {
    TestCaseError::fail(format!("{e:?}"))
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Adds the message bytes (escaped, byte-exact) to a failure.
fn with_bytes<T>(r: Result<T, TestCaseError>, bytes: &[u8]) -> Result<T, TestCaseError> {
    r.map_err(|e| TestCaseError::fail(format!("{e}\nmessage: b\"{}\"", bytes.escape_ascii())))
}

fn datagram(bytes: &[u8]) -> Result<Message, ParseError> {
    Message::parse_datagram(Bytes::copy_from_slice(bytes), &ParseLimits::datagram())
}

fn stream(bytes: &[u8]) -> Result<(Message, usize), ParseError> {
    Message::parse_stream(&Bytes::copy_from_slice(bytes), &ParseLimits::stream())
}

fn check_params<'a>(
    got: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    want: &PList,
) -> Result<(), TestCaseError> {
    let got: PList = got.map(|(n, v)| (s(n), v.map(s))).collect();
    prop_assert_eq!(&got, want);
    Ok(())
}

/// Header parameters as `(name, value)`.
fn pairs(p: Params<'_>) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
    p.iter().map(|p| (p.name, p.value))
}

fn check_uri(u: &Uri<'_>, g: &GenUri) -> Result<(), TestCaseError> {
    prop_assert_eq!(s(u.as_bytes()), g.text());
    match g {
        GenUri::Sip {
            secure,
            user,
            host,
            port,
            ..
        } => {
            let scheme = if *secure { Scheme::Sips } else { Scheme::Sip };
            prop_assert_eq!(u.scheme(), scheme);
            prop_assert_eq!(u.user().map(s), user.clone());
            prop_assert_eq!(u.host(), Some(host.expected()));
            prop_assert_eq!(u.port(), *port);
        }
        GenUri::Tel { number, .. } => {
            prop_assert_eq!(u.scheme(), Scheme::Tel);
            prop_assert_eq!(u.user().map(s), Some(number.clone()));
            prop_assert_eq!(u.host(), None);
        }
    }
    check_params(u.params(), g.params())
}

fn check_addr(a: &NameAddr<'_>, g: &GenAddr) -> Result<(), TestCaseError> {
    let display = a.display_name().map(|d| s(&d));
    prop_assert_eq!(display, g.display.as_ref().map(Display::expected));
    prop_assert_eq!(a.in_brackets(), g.brackets);
    check_uri(&a.uri(), &g.uri)?;
    prop_assert_eq!(a.tag().map(s), lookup(&g.params, "tag"));
    check_params(pairs(a.params()), &g.params)
}

fn check_addrs<'a>(
    got: impl Iterator<Item = Result<NameAddr<'a>, ParseError>>,
    want: &[GenAddr],
) -> Result<(), TestCaseError> {
    let got: Vec<_> = got.collect::<Result<_, _>>().map_err(fail)?;
    prop_assert_eq!(got.len(), want.len());
    got.iter().zip(want).try_for_each(|(a, g)| check_addr(a, g))
}

fn check_via(v: &Via<'_>, g: &GenVia) -> Result<(), TestCaseError> {
    prop_assert_eq!(s(v.protocol_name()), "SIP");
    prop_assert_eq!(s(v.protocol_version()), "2.0");
    prop_assert_eq!(s(v.transport()), g.transport.clone());
    prop_assert_eq!(v.host(), g.host.expected());
    prop_assert_eq!(v.port(), g.port);
    prop_assert_eq!(v.branch().map(s), g.branch.clone());
    prop_assert_eq!(v.rport(), g.rport);
    prop_assert_eq!(v.received().map(s), g.received.map(|r| r.to_string()));
    check_params(pairs(v.params()), &g.params())
}

fn check_start(m: &Message, g: &Msg) -> Result<(), TestCaseError> {
    match &g.start {
        Start::Request { method, uri } => {
            prop_assert!(m.is_request());
            prop_assert_eq!(m.method_name().map(s), Some(method.clone()));
            prop_assert_eq!(m.method(), Some(method_kind(method)));
            let parsed = m.request_uri().ok_or_else(|| fail("no Request-URI"))?;
            check_uri(&parsed, uri)
        }
        Start::Response { code, reason } => {
            prop_assert!(!m.is_request());
            prop_assert_eq!(m.status_code(), Some(*code));
            prop_assert_eq!(m.reason_phrase().map(s), Some(reason.clone()));
            Ok(())
        }
    }
}

fn check_contacts(m: &Message, want: &[GenContact]) -> Result<(), TestCaseError> {
    let got: Vec<_> = m.contacts().collect::<Result<_, _>>().map_err(fail)?;
    prop_assert_eq!(got.len(), want.len());
    for (c, g) in got.iter().zip(want) {
        let Contact::Address(a) = c else {
            return Err(fail("Contact: * read back"));
        };
        check_addr(a, &g.addr())?;
        prop_assert_eq!(a.q(), g.q.map(Ok));
        prop_assert_eq!(a.expires(), g.expires);
    }
    Ok(())
}

fn check_extras(m: &Message, want: &[(String, String)]) -> Result<(), TestCaseError> {
    let is_x = |name: &[u8]| name.len() > 2 && name[..2].eq_ignore_ascii_case(b"x-");
    let got: Vec<(String, String)> = m
        .headers()
        .filter(|h| h.kind == HeaderKind::Other && is_x(h.name))
        .map(|h| (s(h.name), s(h.value)))
        .collect();
    prop_assert_eq!(&got, &want.to_vec());
    for (name, _) in want {
        let got: Vec<String> = m.headers_named(name).map(|h| s(h.value)).collect();
        let same_name = want.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
        prop_assert_eq!(got, same_name.map(|(_, v)| v.clone()).collect::<Vec<_>>());
    }
    Ok(())
}

fn check_content_type(m: &Message, want: Option<&GenCt>) -> Result<(), TestCaseError> {
    match (m.content_type().map_err(fail)?, want) {
        (None, None) => Ok(()),
        (Some(ct), Some(g)) => {
            prop_assert_eq!(s(ct.media_type), g.media.clone());
            prop_assert_eq!(s(ct.subtype), g.sub.clone());
            check_params(pairs(ct.params), &g.params)
        }
        (got, want) => Err(fail(format!("Content-Type {got:?}, want {want:?}"))),
    }
}

/// Every typed value of `m` equals the model `g`.
fn check_msg(m: &Message, g: &Msg) -> Result<(), TestCaseError> {
    check_start(m, g)?;
    let vias: Vec<Via<'_>> = m.vias().collect::<Result<_, _>>().map_err(fail)?;
    prop_assert_eq!(vias.len(), g.vias.len());
    vias.iter()
        .zip(&g.vias)
        .try_for_each(|(v, w)| check_via(v, w))?;
    check_addr(&m.from().map_err(fail)?, &g.from)?;
    check_addr(&m.to().map_err(fail)?, &g.to)?;
    prop_assert_eq!(s(m.call_id()), g.call_id.clone());
    prop_assert_eq!(m.cseq().seq, g.cseq.0);
    prop_assert_eq!(s(m.cseq().method_name), g.cseq.1.clone());
    prop_assert_eq!(m.cseq().method, method_kind(&g.cseq.1));
    prop_assert_eq!(m.max_forwards(), Ok(g.max_forwards));
    check_contacts(m, &g.contacts)?;
    check_addrs(m.routes(), &g.routes)?;
    check_addrs(m.record_routes(), &g.record_routes)?;
    let supported: Vec<String> = m.tokens(HeaderKind::Supported).map(s).collect();
    prop_assert_eq!(&supported, &g.supported);
    check_extras(m, &g.extras)?;
    check_content_type(m, g.content_type.as_ref())?;
    prop_assert_eq!(m.content_length(), Some(g.body.len() as u32));
    prop_assert_eq!(m.body(), &g.body[..]);
    Ok(())
}

/// Parses `bytes` as a datagram, validates it and checks it against `g`.
fn check_round_trip(bytes: &[u8], g: &Msg) -> Result<(), TestCaseError> {
    let m = datagram(bytes).map_err(fail)?;
    m.validate().map_err(fail)?;
    prop_assert_eq!(m.as_bytes(), bytes);
    check_msg(&m, g)
}

// ---------------------------------------------------------------------------
// Edits
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Edit {
    PrependVia(GenVia),
    RemoveTopVia,
    PrependRecordRoute(GenAddr),
    PopRoute,
    MaxForwards(u8),
    RequestUri(GenUri),
    AddHeader(String, String),
    SetHeader(String, String),
    RemoveHeader(String),
    Body(Option<GenCt>, Vec<u8>),
}

impl Edit {
    /// Edits with the same key conflict; a sequence keeps one of each.
    fn key(&self) -> String {
        match self {
            Edit::AddHeader(n, _) | Edit::SetHeader(n, _) | Edit::RemoveHeader(n) => {
                n.to_ascii_lowercase()
            }
            other => format!("{:?}", std::mem::discriminant(other)),
        }
    }
}

fn edit() -> BoxedStrategy<Edit> {
    prop_oneof![
        via().prop_map(Edit::PrependVia),
        Just(Edit::RemoveTopVia),
        route().prop_map(Edit::PrependRecordRoute),
        Just(Edit::PopRoute),
        any::<u8>().prop_map(Edit::MaxForwards),
        any_uri().prop_map(Edit::RequestUri),
        (x_name(), x_value()).prop_map(|(n, v)| Edit::AddHeader(n, v)),
        (x_name(), x_value()).prop_map(|(n, v)| Edit::SetHeader(n, v)),
        x_name().prop_map(Edit::RemoveHeader),
        (option::of(content_type()), body()).prop_map(|(c, b)| Edit::Body(c, b)),
    ]
    .boxed()
}

/// A random sequence of edits, one of each kind (one per X- header name).
fn edit_sequence() -> impl Strategy<Value = Vec<Edit>> {
    vec(edit(), 0..8).prop_map(|edits| {
        let mut seen = HashSet::new();
        edits.into_iter().filter(|e| seen.insert(e.key())).collect()
    })
}

fn done(r: Result<&mut Editor<'_>, EditError>) -> Result<bool, TestCaseError> {
    r.map(|_| true).map_err(fail)
}

/// Applies `edit` to `e`; `false` when it does not apply to the message `g`.
/// Values are written in `st` without folds (the editor refuses CR and LF).
fn apply(e: &mut Editor<'_>, edit: &Edit, g: &Msg, st: &mut Style) -> Result<bool, TestCaseError> {
    let unfold = |s: String| s.replace("\r\n", "");
    let is_request = matches!(g.start, Start::Request { .. });
    match edit {
        Edit::PrependVia(v) => done(e.prepend_via(unfold(via_text(v, st)).as_bytes())),
        Edit::RemoveTopVia if g.vias.len() > 1 => done(e.remove_top_via()),
        Edit::PopRoute if !g.routes.is_empty() => done(e.pop_route()),
        Edit::RemoveTopVia | Edit::PopRoute => Ok(false),
        Edit::PrependRecordRoute(a) => {
            done(e.prepend_record_route(unfold(addr_text(a, st)).as_bytes()))
        }
        Edit::MaxForwards(n) => done(e.set_max_forwards(*n)),
        Edit::RequestUri(u) if is_request => done(e.set_request_uri(u.text().as_bytes())),
        Edit::RequestUri(u) => {
            let r = e.set_request_uri(u.text().as_bytes()).map(|_| ());
            prop_assert_eq!(r, Err(EditError::NotARequest));
            Ok(false)
        }
        Edit::AddHeader(n, v) => done(e.add_header(n, v.as_bytes())),
        Edit::SetHeader(n, v) => done(e.set_header(n, v.as_bytes())),
        Edit::RemoveHeader(n) => done(e.remove_header(n)),
        Edit::Body(ct, body) => {
            let ct = ct.as_ref().map(|c| unfold(ct_text(c, st)));
            done(e.set_body(ct.as_deref().map(str::as_bytes), body))
        }
    }
}

/// What the model of `g` becomes after `edits` (all applicable). Edits address
/// the received message, so "remove the top Via" removes the received top Via
/// even when a Via is prepended in the same pass.
fn edited(mut g: Msg, edits: &[Edit]) -> Msg {
    for edit in edits {
        match edit {
            Edit::RemoveTopVia => {
                g.vias.remove(0);
            }
            Edit::PopRoute => {
                g.routes.remove(0);
            }
            _ => {}
        }
    }
    for edit in edits.iter().cloned() {
        match edit {
            Edit::PrependVia(v) => g.vias.insert(0, v),
            Edit::PrependRecordRoute(a) => g.record_routes.insert(0, a),
            Edit::MaxForwards(n) => g.max_forwards = Some(n),
            Edit::RequestUri(u) => {
                if let Start::Request { uri, .. } = &mut g.start {
                    *uri = u;
                }
            }
            Edit::AddHeader(n, v) => g.extras.push((n, v)),
            Edit::SetHeader(n, v) => set_extra(&mut g.extras, n, v),
            Edit::RemoveHeader(n) => g.extras.retain(|(m, _)| !m.eq_ignore_ascii_case(&n)),
            Edit::Body(ct, body) => {
                g.content_type = ct.or(g.content_type.take());
                g.body = body;
            }
            Edit::RemoveTopVia | Edit::PopRoute => {}
        }
    }
    g
}

/// `set_header`: the first header of that name takes the value, the others go;
/// appended when there is none.
fn set_extra(extras: &mut Vec<(String, String)>, name: String, value: String) {
    let Some(first) = extras
        .iter()
        .position(|(n, _)| n.eq_ignore_ascii_case(&name))
    else {
        extras.push((name, value));
        return;
    };
    extras[first].1 = value;
    let mut i = 0;
    extras.retain(|(n, _)| {
        i += 1;
        i - 1 == first || !n.eq_ignore_ascii_case(&name)
    });
}

// ---------------------------------------------------------------------------
// Calling everything (no-panic properties)
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Mutation {
    Set(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let special = b"\r\n \t:;,=<>\"\\%@[]/?0123456789".to_vec();
    let byte = prop_oneof![any::<u8>(), select(special)];
    prop_oneof![
        (any::<Index>(), byte.clone()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), vec(byte, 1..8)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match m {
        Mutation::Insert(i, b) => {
            let at = i.index(len + 1);
            bytes.splice(at..at, b.iter().copied());
        }
        _ if len == 0 => {}
        Mutation::Set(i, b) => bytes[i.index(len)] = *b,
        Mutation::Delete(i, n) => {
            let at = i.index(len);
            bytes.drain(at..(at + n).min(len));
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(len)),
    }
}

fn exercise_uri(u: &Uri<'_>) {
    let _ = (
        u.as_bytes(),
        u.scheme(),
        u.user(),
        u.user_unescaped(),
        u.password(),
    );
    let _ = (
        u.host(),
        u.host_raw(),
        u.port(),
        u.param("lr"),
        u.transport(),
        u.lr(),
    );
    let _ = (
        u.maddr(),
        u.user_param(),
        u.ttl(),
        u.headers(),
        u.to_string(),
    );
    let _ = (
        u.params().count(),
        u.header_pairs().count(),
        u.equivalent(u),
    );
}

fn exercise_params<'a>(params: impl Iterator<Item = Param<'a>>) {
    params.for_each(|p| drop(p.value_unquoted()));
}

fn exercise_addr(a: &NameAddr<'_>) {
    let _ = (a.display_name_raw(), a.display_name(), a.in_brackets());
    let _ = (a.tag(), a.q(), a.expires(), a.params().as_bytes());
    exercise_params(a.params().iter());
    exercise_uri(&a.uri());
}

fn exercise_via(v: &Via<'_>) {
    let _ = (
        v.protocol_name(),
        v.protocol_version(),
        v.transport(),
        v.host(),
    );
    let _ = (v.host_raw(), v.port(), v.branch(), v.received(), v.rport());
    let _ = (
        v.maddr(),
        v.ttl(),
        v.params().is_empty(),
        v.params().get("x"),
    );
    exercise_params(v.params().iter());
}

fn exercise_auth(a: &AuthParams<'_>) {
    let _ = (
        a.scheme(),
        a.is_digest(),
        a.username(),
        a.realm(),
        a.nonce(),
    );
    let _ = (a.response(), a.uri());
    exercise_params(a.iter());
}

fn exercise_contact(c: &Contact<'_>) {
    if let Contact::Address(a) = c {
        exercise_addr(a);
    }
}

/// Calls every accessor of `m` and drains every iterator.
fn exercise(m: &Message) {
    let _ = (
        m.validate(),
        m.as_bytes(),
        m.bytes(),
        m.start_line(),
        m.is_request(),
    );
    let _ = (
        m.method(),
        m.method_name(),
        m.request_uri_raw(),
        m.status_code(),
    );
    let _ = (m.reason_phrase(), m.header_count(), m.call_id(), m.cseq());
    let _ = (
        m.content_length(),
        m.body(),
        m.body_bytes(),
        m.user_agent(),
        m.expires(),
    );
    let _ = (m.max_forwards(), m.top_via(), m.content_type());
    if let Some(u) = m.request_uri() {
        exercise_uri(&u);
    }
    for h in m.headers() {
        let name = s(h.name);
        let _ = m.headers_named(&name).count();
    }
    for &kind in HeaderKind::ALL {
        let _ = (
            m.header(kind),
            m.headers_of(kind).count(),
            m.has_token(kind, "x"),
        );
        let _ = m.tokens(kind).count();
        m.auth(kind).flatten().for_each(|a| exercise_auth(&a));
    }
    m.vias().flatten().for_each(|v| exercise_via(&v));
    m.from().iter().chain(&m.to()).for_each(exercise_addr);
    m.contacts().flatten().for_each(|c| exercise_contact(&c));
    m.routes()
        .chain(m.record_routes())
        .flatten()
        .for_each(|a| exercise_addr(&a));
    if let Ok(Some(ct)) = m.content_type() {
        let _ = ct.is("application", "sdp");
        exercise_params(ct.params.iter());
    }
}

/// Every parser entry point on `bytes`, and every accessor of what parses.
fn parse_everything(bytes: &[u8]) {
    let tight = ParseLimits {
        max_message_bytes: 400,
        max_headers: 6,
        max_via_values: 2,
    };
    for limits in [ParseLimits::datagram(), ParseLimits::stream(), tight] {
        match Message::parse_datagram(Bytes::copy_from_slice(bytes), &limits) {
            Ok(m) => exercise(&m),
            Err(e) => drop((e.status_code(), e.to_string())),
        }
        let mut rest = Bytes::copy_from_slice(bytes);
        while let Ok((m, used)) = Message::parse_stream(&rest, &limits) {
            exercise(&m);
            rest = rest.slice(used..);
        }
    }
    if let Ok(u) = Uri::parse(bytes) {
        exercise_uri(&u);
    }
    if let Ok(v) = Via::parse(bytes) {
        exercise_via(&v);
    }
    if let Ok(a) = NameAddr::parse(bytes) {
        exercise_addr(&a);
    }
    if let Ok(c) = Contact::parse(bytes) {
        exercise_contact(&c);
    }
    if let Ok(a) = AuthParams::parse(bytes) {
        exercise_auth(&a);
    }
    if let Ok(ct) = ContentType::parse(bytes) {
        exercise_params(ct.params.iter());
    }
}

/// Each edit alone, then all together, on a message that may be malformed.
fn edit_everything(m: &Message) {
    type Op = fn(&mut Editor<'_>) -> Result<(), EditError>;
    let ops: [Op; 10] = [
        |e| {
            e.prepend_via(b"SIP/2.0/UDP edge.example;branch=z9hG4bKe")
                .map(|_| ())
        },
        |e| e.remove_top_via().map(|_| ()),
        |e| e.prepend_record_route(b"<sip:edge.example;lr>").map(|_| ()),
        |e| e.pop_route().map(|_| ()),
        |e| e.set_max_forwards(69).map(|_| ()),
        |e| e.set_request_uri(b"sip:b@192.0.2.1").map(|_| ()),
        |e| e.set_header("X-A", b"1").map(|_| ()),
        |e| e.remove_header("Via").map(|_| ()),
        |e| e.add_header("Route", b"<sip:r.example;lr>").map(|_| ()),
        |e| e.set_body(Some(b"text/plain"), b"hi").map(|_| ()),
    ];
    for op in ops {
        let mut e = Editor::new(m);
        if op(&mut e).is_ok() {
            if let Ok(out) = e.finish() {
                parse_everything(&out);
            }
        }
    }
    let mut all = Editor::new(m);
    for op in ops {
        let _ = op(&mut all);
    }
    if let Ok(out) = all.finish() {
        parse_everything(&out);
    }
}

/// A disguised copy of a SIP URI (RFC 3261 19.1.4): scheme, host and parameter
/// case changed, unreserved user characters `%HH`-escaped.
fn disguise(u: &GenUri, st: &mut Style) -> String {
    let GenUri::Sip {
        secure,
        user,
        host,
        port,
        params,
    } = u
    else {
        return u.text();
    };
    let mut out = st.case(if *secure { "sips:" } else { "sip:" });
    if let Some(user) = user {
        out += &escape_unreserved(user, st);
        out.push('@');
    }
    out += &match host {
        GenHost::Name(n) => st.case(n),
        other => other.text(),
    };
    out += &port.map_or(String::new(), |p| format!(":{p}"));
    let params: PList = params
        .iter()
        .map(|(n, v)| (st.case(n), v.as_ref().map(|v| st.case(v))))
        .collect();
    out + &uri_params(&params)
}

fn escape_unreserved(user: &str, st: &mut Style) -> String {
    let mut out = String::new();
    let mut chars = user.chars();
    while let Some(c) = chars.next() {
        let unreserved = c.is_ascii_alphanumeric() || "-_.!~*'()".contains(c);
        if c == '%' {
            out.push(c);
            out.extend(chars.by_ref().take(2));
        } else if unreserved && st.coin() {
            let hex = format!("%{:02X}", c as u32);
            out += &if st.coin() {
                hex.to_ascii_lowercase()
            } else {
                hex
            };
        } else {
            out.push(c);
        }
    }
    out
}

/// A change to a SIP URI and whether RFC 3261 19.1.4 still calls it equivalent.
#[derive(Clone, Debug)]
enum Change {
    Port(u16),
    AddParam(String, Option<String>),
    DropParam(Index),
    Secure,
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        any::<u16>().prop_map(Change::Port),
        uri_param().prop_map(|(n, v)| Change::AddParam(n, v)),
        any::<Index>().prop_map(Change::DropParam),
        Just(Change::Secure),
    ]
}

/// user, ttl, method, maddr and transport must match even when one URI lacks them.
fn must_match(name: &str) -> bool {
    ["user", "ttl", "method", "maddr", "transport"]
        .iter()
        .any(|m| m.eq_ignore_ascii_case(name))
}

/// `u` changed by `c`, and the expected equivalence to `u` when it is known.
fn changed(u: &GenUri, c: &Change) -> (GenUri, Option<bool>) {
    let mut v = u.clone();
    let GenUri::Sip {
        secure,
        port,
        params,
        ..
    } = &mut v
    else {
        return (v, None);
    };
    let expected = match c {
        Change::Port(p) => {
            let same = *port == Some(*p);
            *port = Some(*p);
            Some(same)
        }
        Change::AddParam(n, value) => {
            let present = params.iter().any(|(m, _)| m.eq_ignore_ascii_case(n));
            params.push((n.clone(), value.clone()));
            (!present).then_some(!must_match(n))
        }
        Change::DropParam(i) if !params.is_empty() => {
            let (n, _) = params.remove(i.index(params.len()));
            Some(!must_match(&n))
        }
        Change::DropParam(_) => Some(true),
        Change::Secure => {
            *secure = !*secure;
            Some(false)
        }
    };
    (v, expected)
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// RFC 3261 7 and 25 (with 7.3.1 folding and multi-value headers, the
    /// compact forms of 7.3.3, case-insensitive header names, LWS/SWS around
    /// separators of 25.1, and 19.1 URIs): a well-formed message parses,
    /// validates, and every typed value reads back as generated.
    #[test]
    fn round_trip_reads_back_every_value(g in msg(), mut st in style()) {
        let bytes = render(&g, &mut st);
        with_bytes(check_round_trip(&bytes, &g), &bytes)?;
    }

    /// RFC 3261 25.1 (`*( SEMI generic-param )`, possibly none): the parameters
    /// of a Via, name-addr or media type iterate exactly as written, and a value
    /// without parameters iterates none.
    #[test]
    fn header_params_iterate_as_written(v in via(), mut st in style()) {
        let text = via_text(&v, &mut st);
        let via = Via::parse(text.as_bytes()).map_err(fail)?;
        let got = via.params().iter().map(|p| (p.name, p.value));
        with_bytes(check_params(got, &v.params()), text.as_bytes())?;
    }

    /// RFC 3261 20.20 and 25.1 (`from-spec = ( name-addr / addr-spec ) *( SEMI
    /// from-param )`, `gen-value = token / host / quoted-string`): an addr-spec
    /// whose parameter is a quoted string holding `<` is a valid From value.
    #[test]
    fn addr_spec_param_may_quote_angle(
        uri in sip_uri(),
        quoted in "[a-z>]{0,3}<[a-z<>]{0,3}",
        mut st in style(),
    ) {
        let uri = match uri {
            GenUri::Sip { secure, user, host, port, .. } => {
                GenUri::Sip { secure, user, host, port, params: PList::new() }
            }
            tel => tel,
        };
        let params = vec![("x".to_string(), Some(quote(&quoted)))];
        let g = GenAddr { display: None, uri, brackets: false, params };
        let text = addr_text(&g, &mut st);
        let a = NameAddr::parse(text.as_bytes()).map_err(fail);
        with_bytes(a.and_then(|a| check_addr(&a, &g)), text.as_bytes())?;
    }

    /// RFC 3261 16.6 (steps 3, 4, 8: Max-Forwards, Record-Route, Via), 16.4
    /// (popping a loose-route Route), 16.7 (removing the top Via) and 20.14
    /// (Content-Length follows the new body): a sequence of non-conflicting
    /// edits yields a valid message where the edited values read back as set and
    /// nothing else changed.
    #[test]
    fn editor_changes_only_what_it_is_asked_to(
        g in msg(),
        mut st in style(),
        edits in edit_sequence(),
    ) {
        let bytes = render(&g, &mut st);
        let m = with_bytes(datagram(&bytes).map_err(fail), &bytes)?;
        let mut editor = Editor::new(&m);
        let mut applied = Vec::new();
        for edit in &edits {
            if with_bytes(apply(&mut editor, edit, &g, &mut st), &bytes)? {
                applied.push(edit.clone());
            }
        }
        let out = editor.finish().map_err(fail)?;
        with_bytes(check_round_trip(&out, &edited(g, &applied)), &out)?;
    }

    /// RFC 3261 18.3 / 21.4.1 robustness (a malformed message gets a 400 or is
    /// dropped, never a crash): arbitrary bytes through every parser and
    /// accessor do not panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..2048)) {
        parse_everything(&bytes);
    }

    /// As above, for near-valid input: a generated message with random byte
    /// changes, insertions, deletions and truncation.
    #[test]
    fn mutated_messages_never_panic(
        g in msg(),
        mut st in style(),
        mutations in vec(mutation(), 1..8),
    ) {
        let mut bytes = render(&g, &mut st);
        mutations.iter().for_each(|m| mutate(&mut bytes, m));
        parse_everything(&bytes);
    }

    /// RFC 3261 16.6 on hostile input: every Editor operation on a mutated but
    /// parseable message returns a value or an error, never panics.
    #[test]
    fn editor_never_panics_on_mutated_messages(
        g in msg(),
        mut st in style(),
        mutations in vec(mutation(), 1..4),
    ) {
        let mut bytes = render(&g, &mut st);
        mutations.iter().for_each(|m| mutate(&mut bytes, m));
        if let Ok(m) = datagram(&bytes) {
            edit_everything(&m);
        }
    }

    /// RFC 3261 18.3 (stream framing by Content-Length) and RFC 5626 3.5.1
    /// (CRLF keep-alives between messages): fed in arbitrary chunks, a stream of
    /// k messages yields exactly those k messages; a strict prefix of a message is
    /// `Incomplete`, never a message.
    #[test]
    fn stream_yields_exactly_the_messages_sent(
        msgs in vec((msg(), style(), 0usize..3), 1..4),
        trailing in 0usize..3,
        chunks in vec(1usize..400, 1..16),
        cuts in vec(any::<Index>(), 1..12),
    ) {
        let mut wire = Vec::new();
        let mut sent = Vec::new();
        for (g, mut st, keepalives) in msgs {
            let bytes = render(&g, &mut st);
            wire.extend(b"\r\n".repeat(keepalives));
            wire.extend_from_slice(&bytes);
            sent.push((g, bytes));
        }
        wire.extend(b"\r\n".repeat(trailing));
        let received = with_bytes(receive(&wire, &chunks), &wire)?;
        prop_assert_eq!(received.len(), sent.len());
        for (m, (g, bytes)) in received.iter().zip(&sent) {
            prop_assert_eq!(m.as_bytes(), &bytes[..]);
            with_bytes(check_msg(m, g), bytes)?;
        }
        let whole = &sent[0].1;
        let (m, used) = stream(whole).map_err(fail)?;
        prop_assert_eq!((m.as_bytes(), used), (&whole[..], whole.len()));
        for cut in cuts.iter().map(|c| 1 + c.index(whole.len() - 1)).chain([whole.len() - 1]) {
            let got = stream(&whole[..cut]).map(|(m, _)| m.as_bytes().to_vec());
            if got != Err(ParseError::Incomplete) {
                let msg = format!("cut at {cut}: {got:?}\nmessage: b\"{}\"", whole.escape_ascii());
                return Err(TestCaseError::fail(msg));
            }
        }
    }

    /// RFC 3261 18.3 (datagrams) and 7.5 (CRLFs before the start line are
    /// ignored): bytes after Content-Length are discarded; a datagram with fewer
    /// body bytes than Content-Length is rejected (`BodyTooShort`); one cut inside
    /// the header section is `Unterminated`.
    #[test]
    fn datagram_is_framed_by_content_length(
        g in msg(),
        mut st in style(),
        leading in 0usize..3,
        extra in vec(any::<u8>(), 1..64),
        cut in any::<Index>(),
    ) {
        let bytes = render(&g, &mut st);
        let crlfs = b"\r\n".repeat(leading);
        let longer = [&crlfs[..], &bytes[..], &extra[..]].concat();
        let m = with_bytes(datagram(&longer).map_err(fail), &longer)?;
        prop_assert_eq!(m.as_bytes(), &bytes[..]);
        with_bytes(check_msg(&m, &g), &longer)?;
        let body_start = bytes.len() - g.body.len();
        if !g.body.is_empty() {
            let present = cut.index(g.body.len());
            let got = datagram(&bytes[..body_start + present]).map(|_| ());
            let declared = g.body.len();
            prop_assert_eq!(got, Err(ParseError::BodyTooShort { declared, present }));
        }
        let head_cut = 1 + cut.index(body_start - 1);
        let got = datagram(&bytes[..head_cut]).map(|_| ());
        prop_assert_eq!(got, Err(ParseError::Unterminated), "cut at {}", head_cut);
    }

    /// RFC 3261 19.1.4 (URI comparison): equivalence is reflexive; invariant
    /// under the case of scheme, host and parameters and under `%HH`-escaping of
    /// unreserved user characters; symmetric; and a different port, scheme,
    /// or one-sided user/ttl/method/maddr/transport parameter breaks it while any
    /// other one-sided parameter does not.
    #[test]
    fn uri_equivalence_follows_rfc3261(
        u in sip_uri(),
        mut st in style(),
        c in change(),
        other in sip_uri(),
    ) {
        let text = u.text();
        let a = Uri::parse(text.as_bytes()).map_err(fail)?;
        prop_assert!(a.equivalent(&a), "{} not equivalent to itself", text);
        let disguised = disguise(&u, &mut st);
        let b = Uri::parse(disguised.as_bytes()).map_err(fail)?;
        prop_assert!(a.equivalent(&b), "{} vs {}", text, disguised);
        prop_assert!(b.equivalent(&a), "{} vs {}", disguised, text);
        let (v, expected) = changed(&u, &c);
        let (v_text, o_text) = (v.text(), other.text());
        for t in [&v_text, &o_text] {
            let d = Uri::parse(t.as_bytes()).map_err(fail)?;
            prop_assert_eq!(a.equivalent(&d), d.equivalent(&a), "{} vs {}", text, t);
        }
        if let Some(expected) = expected {
            let d = Uri::parse(v_text.as_bytes()).map_err(fail)?;
            prop_assert_eq!(a.equivalent(&d), expected, "{} vs {}", text, v_text);
        }
    }
}

/// Feeds `wire` to `parse_stream` in chunks of the given sizes, as a TCP reader
/// does, and returns the messages in order. Keep-alive CRLFs may remain unread.
fn receive(wire: &[u8], chunks: &[usize]) -> Result<Vec<Message>, TestCaseError> {
    let mut sizes = chunks.iter().cycle();
    let (mut buf, mut fed, mut out) = (Vec::new(), 0, Vec::new());
    loop {
        match stream(&buf) {
            Ok((m, used)) => {
                buf.drain(..used);
                out.push(m);
            }
            Err(ParseError::Incomplete | ParseError::Empty) if fed < wire.len() => {
                let n = (*sizes.next().unwrap()).min(wire.len() - fed);
                buf.extend_from_slice(&wire[fed..fed + n]);
                fed += n;
            }
            Err(ParseError::Empty) => return Ok(out),
            Err(e) => return Err(fail(format!("{e:?} after {fed} bytes"))),
        }
    }
}
