//! `Uri::parse` on arbitrary bytes, every accessor of a parsed URI, and the
//! algebra of `Uri::equivalent`:
//! - reflexive, also when a parameter name repeats (a repeated name counts by
//!   its first value, as lookups do);
//! - symmetric for any two parsed URIs;
//! - unchanged by re-parsing the URI's own text, and by changing the case of
//!   the scheme and of a host name.
//!
//! The input is split at the first NUL: the part before is one URI, the part
//! after (if any) a second one to compare it with.

#![no_main]

use std::hint::black_box;

use edge::sip::{Host, Scheme, Uri};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (a_raw, b_raw) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], Some(&data[nul + 1..])),
        None => (data, None),
    };

    let a = Uri::parse(a_raw);
    if let Ok(a) = &a {
        views(a);
        check_self(a);
    }
    // Parsing is a function of the bytes.
    assert_eq!(Uri::parse(a_raw), a);

    if let Some(b_raw) = b_raw {
        if let Ok(b) = Uri::parse(b_raw) {
            views(&b);
            if let Ok(a) = &a {
                let ab = a.equivalent(&b);
                let ba = b.equivalent(a);
                assert_eq!(
                    ab,
                    ba,
                    "equivalent is not symmetric: {:?} vs {:?}",
                    String::from_utf8_lossy(a_raw),
                    String::from_utf8_lossy(b_raw)
                );
                if ab {
                    assert_eq!(a.scheme(), b.scheme());
                    if let (Some(ha), Some(hb)) = (a.host(), b.host()) {
                        assert!(ha.equivalent(&hb));
                    }
                    assert_eq!(a.port(), b.port());
                }
            }
        }
    }
});

fn views(u: &Uri<'_>) {
    black_box((u.as_bytes(), u.scheme(), u.user(), u.user_unescaped(), u.password()));
    black_box((u.host(), u.host_raw(), u.port(), u.headers()));
    black_box((u.transport(), u.lr(), u.maddr(), u.user_param(), u.ttl()));
    black_box(u.param("lr"));
    for p in u.params() {
        black_box(p);
    }
    for h in u.header_pairs() {
        black_box(h);
    }
    black_box(u.to_string());
    assert!(!u.as_bytes().is_empty());
    match u.scheme() {
        Scheme::Sip | Scheme::Sips => {
            assert!(u.host().is_some(), "SIP URI without a host");
            assert!(!u.host_raw().is_empty());
        }
        Scheme::Tel => assert!(u.user().is_some(), "tel URI without a number"),
        Scheme::Other => {}
    }
    if let Some(h) = u.host() {
        assert!(h.equivalent(&h));
        if let Host::Name(n) = h {
            assert!(!n.is_empty());
        }
    }
}

fn check_self(u: &Uri<'_>) {
    let raw = u.as_bytes();
    // Re-parsing the URI's own text gives the same URI.
    let again = Uri::parse(raw).expect("a parsed URI's text must parse");
    assert_eq!(again, *u);

    // Headers are compared as sets and parameters by the first value of each
    // name, so every parsed URI is equivalent to itself.
    assert!(
        u.equivalent(u),
        "URI not equivalent to itself: {:?}",
        String::from_utf8_lossy(raw)
    );

    // The scheme and a host name compare case-insensitively: upper-casing them
    // keeps the URI equivalent to itself.
    if matches!(u.scheme(), Scheme::Sip | Scheme::Sips) {
        let colon = raw.iter().position(|&b| b == b':').unwrap_or(0);
        let host = u.host_raw();
        let host_at = host_offset(raw, host);
        let mut upper = raw.to_vec();
        upper[..colon].make_ascii_uppercase();
        if let (Some(Host::Name(_)), Some(at)) = (u.host(), host_at) {
            upper[at..at + host.len()].make_ascii_uppercase();
        }
        let up = Uri::parse(&upper).expect("upper-cased scheme/host must still parse");
        assert!(
            u.equivalent(&up) && up.equivalent(u),
            "case of scheme/host matters: {:?} vs {:?}",
            String::from_utf8_lossy(raw),
            String::from_utf8_lossy(&upper)
        );
    }
}

/// Where `host` (a sub-slice of `raw`) starts in `raw`.
fn host_offset(raw: &[u8], host: &[u8]) -> Option<usize> {
    let start = host.as_ptr() as usize;
    let base = raw.as_ptr() as usize;
    (start >= base && start + host.len() <= base + raw.len()).then(|| start - base)
}
