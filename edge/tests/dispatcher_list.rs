//! `dispatcher.list` and TOML destination sets (issue 4): what loads, what
//! fails with which line, and that no input panics the parser.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::net::SocketAddr;

use edge::dispatcher::{
    format_list, parse_list, DestinationSets, ListOptions, LoadError, LoadErrorKind, Origin,
    SetLimits, TargetHost, Transport,
};
use proptest::prelude::*;

/// Says whether an error is of the expected kind.
type KindCheck = fn(&LoadErrorKind) -> bool;

const COMPAT_EXAMPLE: &str = "\
# setid destination flags priority attrs
1 sip:10.0.0.11:5060 0 0 duid=media-1;weight=50;maxload=500
1 sip:10.0.0.12:5060 0x8 0 duid=media-2;weight=50
2 sip:pbx.example.net:5080;transport=tcp 0 10 duid=pbx
";

fn parse(text: &str) -> Result<DestinationSets, LoadError> {
    parse_list(text.as_bytes(), "dispatcher.list", &ListOptions::default()).map(|p| p.sets)
}

fn line_error(text: &str) -> (usize, LoadErrorKind) {
    match parse(text) {
        Err(LoadError {
            origin: Origin::Line { file, line },
            kind,
        }) => {
            assert_eq!(file, "dispatcher.list");
            (line, kind)
        }
        other => panic!("expected a line error, got {other:?}"),
    }
}

#[test]
fn the_compat_example_loads() {
    let sets = parse(COMPAT_EXAMPLE).unwrap();
    assert_eq!(sets.sets().len(), 2);
    let one = &sets.set(1).unwrap().destinations;
    assert_eq!(one.len(), 2);
    assert_eq!(
        one[0].target.addr,
        Some("10.0.0.11:5060".parse::<SocketAddr>().unwrap())
    );
    assert_eq!(one[0].attrs.duid.as_deref(), Some("media-1"));
    assert_eq!((one[0].attrs.weight, one[0].attrs.maxload), (Some(50), 500));
    assert_eq!(one[1].flags, 8);
    let pbx = &sets.set(2).unwrap().destinations[0];
    assert_eq!(pbx.target.host, TargetHost::Name("pbx.example.net".into()));
    assert_eq!(
        (pbx.target.port, pbx.target.transport, pbx.target.addr),
        (Some(5080), Transport::Tcp, None)
    );
    assert_eq!(pbx.priority, 10);
}

#[test]
fn ipv6_default_ports_sips_and_unknown_attrs() {
    let text = "3 sip:[2001:db8::7] 0 -5 duid=v6;site=fra;x\n3 sips:10.0.0.1\n3 sip:10.0.0.2;transport=TLS   # tail comment\n";
    let sets = parse(text).unwrap();
    let d = &sets.set(3).unwrap().destinations;
    assert_eq!(
        d[0].target.addr,
        Some("[2001:db8::7]:5060".parse().unwrap())
    );
    assert_eq!(d[0].priority, -5);
    assert_eq!(
        d[0].attrs.other,
        [
            ("site".to_string(), "fra".to_string()),
            ("x".to_string(), String::new())
        ]
    );
    assert_eq!(
        (d[1].target.transport, d[1].target.addr.unwrap().port()),
        (Transport::Tls, 5061)
    );
    assert_eq!(
        (d[2].target.transport, d[2].target.addr.unwrap().port()),
        (Transport::Tls, 5061)
    );
}

#[test]
fn bad_lines_fail_the_whole_file_with_their_line() {
    let head = "# comment\n\n1 sip:10.0.0.1\n";
    let cases: [(&str, KindCheck); 10] = [
        ("x sip:10.0.0.2", |k| {
            matches!(k, LoadErrorKind::BadSetId(_))
        }),
        ("-1 sip:10.0.0.2", |k| {
            matches!(k, LoadErrorKind::BadSetId(_))
        }),
        ("1", |k| matches!(k, LoadErrorKind::MissingUri)),
        ("1 sip:10.0.0.2 0xZZ", |k| {
            matches!(k, LoadErrorKind::BadFlags(_))
        }),
        ("1 sip:10.0.0.2 0 high", |k| {
            matches!(k, LoadErrorKind::BadPriority(_))
        }),
        ("1 sip:10.0.0.2 0 0 weight=101", |k| {
            matches!(k, LoadErrorKind::BadAttr { .. })
        }),
        ("1 sip:10.0.0.2 0 0 maxload=-1", |k| {
            matches!(k, LoadErrorKind::BadAttr { .. })
        }),
        ("1 sip:10.0.0.2 0 0 duid=a;duid=b", |k| {
            matches!(k, LoadErrorKind::BadAttr { .. })
        }),
        ("1 sip:10.0.0.2 0 0 duid=a extra", |k| {
            matches!(k, LoadErrorKind::ExtraField(_))
        }),
        ("1 sip:10.0.0.1 0 0", |k| {
            matches!(k, LoadErrorKind::Duplicate { set: 1, .. })
        }),
    ];
    for (bad, is_kind) in cases {
        let (line, kind) = line_error(&format!("{head}{bad}\n2 sip:10.0.0.3\n"));
        assert_eq!(line, 4, "{bad}");
        assert!(is_kind(&kind), "{bad}: {kind:?}");
    }
    let err = parse(&format!("{head}1 sip:10.0.0.2 0 0 weight=101\n")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "dispatcher.list:4: attribute `weight`: not a number in 0..=100"
    );
}

#[test]
fn a_bad_uri_is_skipped_with_a_warning_unless_strict() {
    let text = "1 sip:10.0.0.1\n1 http://x\n1 tel:+123\n1 sip:10.0.0.2:99999\n1 sip:10.0.0.3\n";
    let parsed = parse_list(text.as_bytes(), "d.list", &ListOptions::default()).unwrap();
    assert_eq!(parsed.sets.destination_count(), 2);
    let lines: Vec<String> = parsed
        .skipped
        .iter()
        .map(|e| e.origin.to_string())
        .collect();
    assert_eq!(lines, ["d.list:2", "d.list:3", "d.list:4"]);
    let strict = ListOptions {
        strict_uris: true,
        ..ListOptions::default()
    };
    let err = parse_list(text.as_bytes(), "d.list", &strict).unwrap_err();
    assert_eq!(
        err.origin,
        Origin::Line {
            file: "d.list".into(),
            line: 2
        }
    );
}

#[test]
fn limits_are_enforced() {
    let limits = SetLimits {
        max_sets: 2,
        max_destinations_per_set: 2,
        max_destinations: 3,
        ..SetLimits::default()
    };
    let options = ListOptions {
        limits,
        ..ListOptions::default()
    };
    let run = |text: &str| parse_list(text.as_bytes(), "l", &options);
    let per_set = run("1 sip:10.0.0.1\n1 sip:10.0.0.2\n1 sip:10.0.0.3\n").unwrap_err();
    assert!(matches!(
        per_set.kind,
        LoadErrorKind::TooManyDestinations { max: 2, .. }
    ));
    let sets = run("1 sip:10.0.0.1\n2 sip:10.0.0.2\n3 sip:10.0.0.3\n").unwrap_err();
    assert_eq!(
        (sets.kind, sets.origin),
        (
            LoadErrorKind::TooManySets { max: 2 },
            Origin::Line {
                file: "l".into(),
                line: 3
            }
        )
    );
    let total =
        run("1 sip:10.0.0.1\n1 sip:10.0.0.2\n2 sip:10.0.0.3\n2 sip:10.0.0.4\n").unwrap_err();
    assert!(matches!(
        total.kind,
        LoadErrorKind::TooManyDestinations { max: 3, .. }
    ));
    let long = format!("1 sip:10.0.0.1 0 0 x={}\n", "a".repeat(600));
    assert!(matches!(
        run(&long).unwrap_err().kind,
        LoadErrorKind::AttrsTooLong { .. } | LoadErrorKind::LineTooLong { .. }
    ));
    let huge = "#".repeat(SetLimits::default().max_file_bytes + 1);
    assert!(matches!(
        run(&huge).unwrap_err().kind,
        LoadErrorKind::FileTooLarge { .. }
    ));
    assert!(matches!(
        parse_list(b"1 sip:10.0.0.1\n\xff\n", "l", &options)
            .unwrap_err()
            .kind,
        LoadErrorKind::NotUtf8
    ));
}

#[test]
fn crlf_and_tabs_are_fine() {
    let sets = parse("1\tsip:10.0.0.1:5060\t0\t0\tduid=a\r\n\r\n  2 sip:10.0.0.2  \r\n").unwrap();
    assert_eq!(sets.destination_count(), 2);
    assert_eq!(sets.set(1).unwrap().destinations[0].attrs.body, "duid=a");
}

#[test]
fn toml_destinations_load_like_list_lines() {
    let text = r#"
        [dispatcher]
        list_file = "/etc/edge/dispatcher.list"

        [[dispatcher.destination]]
        set = 1
        uri = "sip:10.0.0.11:5060"
        duid = "media-1"
        weight = 50
        maxload = 500

        [[dispatcher.destination]]
        set = 1
        uri = "sip:10.0.0.12:5060"
        flags = 8
        attrs = "duid=media-2;weight=50"

        [[dispatcher.destination]]
        set = 2
        uri = "sip:pbx.example.net:5080;transport=tcp"
        priority = 10
        duid = "pbx"
    "#;
    let value: toml::Value = toml::from_str(text).unwrap();
    let sets =
        DestinationSets::from_toml_value(&value["dispatcher"], "edge.toml", &SetLimits::default())
            .unwrap();
    let from_list = parse(COMPAT_EXAMPLE).unwrap();
    let strip = |s: &DestinationSets| -> Vec<_> {
        s.sets()
            .iter()
            .flat_map(|set| {
                set.destinations.iter().map(move |d| {
                    (
                        set.id,
                        d.uri.clone(),
                        d.flags,
                        d.priority,
                        d.attrs.duid.clone(),
                        d.attrs.weight,
                        d.attrs.maxload,
                    )
                })
            })
            .collect()
    };
    assert_eq!(strip(&sets), strip(&from_list));
}

#[test]
fn toml_errors_name_the_entry() {
    let value: toml::Value = toml::from_str(
        "[[destination]]\nset = 1\nuri = \"sip:10.0.0.1\"\n[[destination]]\nset = 1\nuri = \"sip:10.0.0.2\"\nwieght = 5\n",
    )
    .unwrap();
    let err =
        DestinationSets::from_toml_value(&value, "edge.toml", &SetLimits::default()).unwrap_err();
    assert_eq!(
        err.origin,
        Origin::Entry {
            file: "edge.toml".into(),
            index: 1
        }
    );
    assert!(err.to_string().contains("wieght"), "{err}");
    let value: toml::Value = toml::from_str(
        "[[destination]]\nset = 1\nuri = \"sip:10.0.0.1\"\nduid = \"a\"\nattrs = \"duid=b\"\n",
    )
    .unwrap();
    let err =
        DestinationSets::from_toml_value(&value, "edge.toml", &SetLimits::default()).unwrap_err();
    assert!(matches!(err.kind, LoadErrorKind::BadAttr { .. }), "{err}");
}

#[test]
fn formatted_sets_read_back_equal() {
    let sets = parse(COMPAT_EXAMPLE).unwrap();
    assert_eq!(parse(&format_list(&sets)).unwrap(), sets);
}

/// A plausible list line from pieces, valid or not.
fn line() -> impl Strategy<Value = String> {
    let set = prop_oneof![
        Just("1".to_string()),
        Just("x".to_string()),
        (0u32..5).prop_map(|n| n.to_string())
    ];
    let host = prop_oneof![
        (1u8..255).prop_map(|n| format!("10.0.0.{n}")),
        Just("[2001:db8::1]".to_string()),
        "[a-z]{1,8}\\.example\\.net",
        "[ -~]{0,12}",
    ];
    let port = prop_oneof![
        Just(String::new()),
        (0u32..70000).prop_map(|p| format!(":{p}"))
    ];
    let params = prop_oneof![
        Just(String::new()),
        Just(";transport=tcp".to_string()),
        Just(";transport=xyz".to_string())
    ];
    let flags = prop_oneof![
        Just(String::new()),
        Just(" 0".to_string()),
        Just(" 0x20".to_string()),
        Just(" 4".to_string())
    ];
    let attrs = prop_oneof![
        Just(String::new()),
        Just(" 0 duid=a;weight=50".to_string()),
        Just(" 5 duid=b;rweight=7;maxload=3;site=x".to_string()),
        "( -?[0-9]{1,3} [a-z]{1,6}=[0-9a-z]{0,4}(;[a-z]{1,6}=[0-9]{0,4}){0,3})",
    ];
    (set, host, port, params, flags, attrs).prop_map(|(s, h, p, q, f, a)| {
        let a = if f.is_empty() { String::new() } else { a };
        format!("{s} sip:{h}{p}{q}{f}{a}")
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = parse_list(&bytes, "fuzz", &ListOptions::default());
        let strict = ListOptions { strict_uris: true, ..ListOptions::default() };
        let _ = parse_list(&bytes, "fuzz", &strict);
    }

    #[test]
    fn arbitrary_text_never_panics_and_what_loads_round_trips(text in "[ -~\\t\\r\\n#;=]{0,400}") {
        if let Ok(parsed) = parse_list(text.as_bytes(), "fuzz", &ListOptions::default()) {
            prop_assert_eq!(parse(&format_list(&parsed.sets)).unwrap(), parsed.sets);
        }
    }

    #[test]
    fn plausible_lists_round_trip(lines in proptest::collection::vec(line(), 0..20)) {
        let text = lines.join("\n");
        if let Ok(parsed) = parse_list(text.as_bytes(), "fuzz", &ListOptions::default()) {
            let again = parse(&format_list(&parsed.sets)).unwrap();
            prop_assert_eq!(again, parsed.sets);
        }
    }
}
