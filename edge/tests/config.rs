//! `edge.toml` loading: defaults, a full file, errors that name the field and
//! the line, listen addresses, flag overrides, and the `--print-config` text.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::net::{Ipv6Addr, SocketAddr};

use edge::config::{Config, ConfigError, ListenAddr, Overrides, Transport, DEFAULT_CONFIG_TOML};
use edge::proxy::ProxyConfig;
use proptest::prelude::*;

fn udp(s: &str) -> ListenAddr {
    ListenAddr::udp(s.parse().unwrap())
}

/// Asserts `text` fails on `field` at `line`, and that the message says both.
fn assert_error(text: &str, field: &str, line: usize) -> ConfigError {
    let err = Config::from_toml_str(text).expect_err(text);
    assert_eq!(err.field(), Some(field), "{err}");
    assert_eq!(err.line(), Some(line), "{err}");
    let shown = err.to_string();
    assert!(shown.starts_with(&format!("edge.toml:{line}:")), "{shown}");
    assert!(shown.contains(&format!("field `{field}`")), "{shown}");
    err
}

#[test]
fn empty_file_gives_the_defaults() {
    let c = Config::from_toml_str("").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.log_level, "info");
    assert_eq!(c.listen, vec![udp("127.0.0.1:5060")]);
    assert!(c.cores.is_empty());
    assert_eq!(c.recv_buffer_bytes, 4 * 1024 * 1024);
    assert_eq!(c.send_buffer_bytes, 4 * 1024 * 1024);
    assert_eq!(c.next_hop, None);
    assert_eq!(c.next_hop_addr(), None);
    assert_eq!(c.shutdown_grace_ms, 32_000);
    assert_eq!(c.proxy, ProxyConfig::default());
}

#[test]
fn no_file_gives_the_defaults() {
    // The test runs in the crate folder, which has no edge.toml.
    assert!(!std::path::Path::new("edge.toml").exists());
    assert_eq!(Config::load_or_default(None).unwrap(), Config::default());
}

#[test]
fn empty_sections_give_the_defaults() {
    let text = "[sip]\n[runtime]\n[transaction]\n[overload]\n";
    assert_eq!(Config::from_toml_str(text).unwrap(), Config::default());
}

const FULL: &str = r#"
log_level = "edge=debug,warn"

[sip]
listen = ["udp:192.0.2.1:5060", "udp:[2001:db8::1]:5060", "10.0.0.1:5070"]
next_hop = "sip:10.0.0.2:5080;lr"
record_route = false

[runtime]
cores = [2, 3, 5]
recv_buffer_bytes = 8388608
send_buffer_bytes = 1048576
shutdown_grace_ms = 1000

[transaction]
t1_ms = 250
t2_ms = 2000
t4_ms = 2500
timer_c_ms = 200000
max_transactions_per_shard = 5000

[overload]
retry_after_s = 30
"#;

#[test]
fn full_file_sets_every_field() {
    let c = Config::from_toml_str(FULL).unwrap();
    assert_eq!(c.log_level, "edge=debug,warn");
    assert_eq!(
        c.listen,
        vec![
            udp("192.0.2.1:5060"),
            udp("[2001:db8::1]:5060"),
            udp("10.0.0.1:5070")
        ]
    );
    assert_eq!(c.next_hop.as_deref(), Some("sip:10.0.0.2:5080;lr"));
    assert_eq!(c.next_hop_addr(), Some("10.0.0.2:5080".parse().unwrap()));
    assert_eq!(c.cores, vec![2, 3, 5]);
    assert_eq!(c.recv_buffer_bytes, 8 << 20);
    assert_eq!(c.send_buffer_bytes, 1 << 20);
    assert_eq!(c.shutdown_grace_ms, 1000);
    let p = &c.proxy;
    assert_eq!(
        (p.t1_ms, p.t2_ms, p.t4_ms, p.timer_c_ms),
        (250, 2000, 2500, 200_000)
    );
    assert_eq!(p.max_transactions, 5000);
    assert_eq!(p.retry_after_s, 30);
    assert!(!p.record_route);
}

#[test]
fn load_reads_a_file_and_names_it_in_errors() {
    let dir = std::env::temp_dir().join(format!("edge-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, FULL).unwrap();
    assert_eq!(
        Config::load(&good).unwrap(),
        Config::from_toml_str(FULL).unwrap()
    );
    assert_eq!(
        Config::load_or_default(Some(&good)).unwrap(),
        Config::load(&good).unwrap()
    );

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "\n[transaction]\nt1_ms = 0\n").unwrap();
    let err = Config::load(&bad).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("{}:3: field `transaction.t1_ms`", bad.display())),
        "{err}"
    );

    let missing = dir.join("missing.toml");
    let err = Config::load_or_default(Some(&missing)).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }), "{err}");
    assert!(err.to_string().contains("cannot read"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn partial_sections_keep_other_defaults() {
    let c = Config::from_toml_str("[transaction]\nt1_ms = 100\n").unwrap();
    assert_eq!(c.proxy.t1_ms, 100);
    assert_eq!(
        c.proxy,
        ProxyConfig {
            t1_ms: 100,
            ..ProxyConfig::default()
        }
    );
    assert_eq!(c.listen, Config::default().listen);
}

#[test]
fn next_hop_addr_defaults_the_port_and_knows_localhost() {
    let with = |hop: &str| Config {
        next_hop: Some(hop.into()),
        ..Config::default()
    };
    assert_eq!(
        with("sip:192.0.2.1").next_hop_addr(),
        Some("192.0.2.1:5060".parse().unwrap())
    );
    assert_eq!(
        with("sip:[2001:db8::1]:5070").next_hop_addr(),
        Some("[2001:db8::1]:5070".parse().unwrap())
    );
    assert_eq!(
        with("sip:localhost:5080").next_hop_addr(),
        Some("127.0.0.1:5080".parse().unwrap())
    );
    assert_eq!(with("sip:example.com").next_hop_addr(), None);
    assert_eq!(with("garbage").next_hop_addr(), None);
}

// ---- validation errors: field and line -------------------------------------

#[test]
fn unsupported_transport_names_field_and_line() {
    let text = "log_level = \"info\"\n[sip]\nlisten = [\n  \"udp:127.0.0.1:5060\",\n  \"tcp:127.0.0.1:5060\",\n]\n";
    let err = assert_error(text, "sip.listen", 5);
    assert!(err.to_string().contains("tcp"), "{err}");
}

#[test]
fn listen_host_name_is_rejected() {
    assert_error("[sip]\nlisten = [\"udp:nothost:5060\"]\n", "sip.listen", 2);
    assert_error("\n\n[sip]\nlisten = [\"udp:nothost\"]\n", "sip.listen", 4);
}

#[test]
fn listen_must_not_be_empty_or_repeat() {
    assert_error("[sip]\nlisten = []\n", "sip.listen", 2);
    assert_error(
        "[sip]\nlisten = [\"udp:127.0.0.1:5060\",\n \"127.0.0.1:5060\"]\n",
        "sip.listen",
        3,
    );
    assert_error("[sip]\nlisten = [\"udp:127.0.0.1:0\"]\n", "sip.listen", 2);
}

#[test]
fn zero_timers_are_rejected() {
    for key in ["t1_ms", "t2_ms", "t4_ms", "timer_c_ms"] {
        let text = format!("[transaction]\n\n{key} = 0\n");
        let err = assert_error(&text, &format!("transaction.{key}"), 3);
        assert!(err.to_string().contains("greater than 0"), "{err}");
    }
}

#[test]
fn t2_below_t1_is_rejected_on_the_value_set() {
    let err = assert_error(
        "[transaction]\nt1_ms = 1000\nt2_ms = 500\n",
        "transaction.t2_ms",
        3,
    );
    assert!(err.to_string().contains("t1_ms"), "{err}");
    // Only T1 set, above the default T2: T1 is the one to blame.
    assert_error("[transaction]\nt1_ms = 5000\n", "transaction.t1_ms", 2);
    // Equal is fine.
    Config::from_toml_str("[transaction]\nt1_ms = 4000\n").unwrap();
}

#[test]
fn zero_max_transactions_is_rejected() {
    assert_error(
        "[transaction]\nmax_transactions_per_shard = 0\n",
        "transaction.max_transactions_per_shard",
        2,
    );
}

#[test]
fn zero_socket_buffers_are_rejected() {
    assert_error(
        "[runtime]\nrecv_buffer_bytes = 0\n",
        "runtime.recv_buffer_bytes",
        2,
    );
    assert_error(
        "[runtime]\nsend_buffer_bytes = 0\n",
        "runtime.send_buffer_bytes",
        2,
    );
}

#[test]
fn repeated_core_is_rejected() {
    assert_error("[runtime]\ncores = [0, 1,\n 1]\n", "runtime.cores", 3);
}

#[test]
fn bad_next_hops_are_rejected() {
    for hop in [
        "127.0.0.1:5080",
        "sips:127.0.0.1",
        "tel:+15551234",
        "sip:proxy.example.com",
        "sip:127.0.0.1:0",
        "sip:127.0.0.1;transport=tcp",
        "sip:",
        "",
    ] {
        let text = format!("[sip]\nrecord_route = true\nnext_hop = \"{hop}\"\n");
        assert_error(&text, "sip.next_hop", 3);
    }
    for hop in [
        "sip:127.0.0.1",
        "sip:[::1]:5080",
        "sip:LOCALHOST;lr",
        "sip:10.1.1.1;transport=UDP",
    ] {
        let text = format!("[sip]\nnext_hop = \"{hop}\"\n");
        let c = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{hop}: {e}"));
        assert!(c.next_hop_addr().is_some(), "{hop}");
    }
}

#[test]
fn bad_log_level_is_rejected() {
    assert_error("log_level = \"info,[[[\"\n", "log_level", 1);
}

// ---- errors from the TOML parser: unknown keys, wrong types, syntax --------

#[test]
fn unknown_key_names_key_and_line() {
    let err = assert_error(
        "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nlisen = []\n",
        "sip.lisen",
        3,
    );
    assert!(
        matches!(err, ConfigError::Toml { column: 1, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("unknown field `lisen`"), "{err}");
    assert_error("\nloglevel = \"info\"\n", "loglevel", 2);
    assert_error("[sip]\n[transport]\n", "transport", 2);
}

#[test]
fn wrong_type_names_key_and_line() {
    let err = assert_error("\n[transaction]\nt1_ms = \"500\"\n", "transaction.t1_ms", 3);
    assert!(
        matches!(err, ConfigError::Toml { column: 9, .. }),
        "{err:?}"
    );
    assert_error("[transaction]\nt2_ms = -1\n", "transaction.t2_ms", 2);
    assert_error("[sip]\nlisten = \"udp:127.0.0.1:5060\"\n", "sip.listen", 2);
    assert_error("[sip]\nrecord_route = \"yes\"\n", "sip.record_route", 2);
    assert_error(
        "[overload]\nretry_after_s = 5000000000\n",
        "overload.retry_after_s",
        2,
    );
}

#[test]
fn syntax_error_has_the_line() {
    let err = Config::from_toml_str("log_level = \"info\"\n[sip\n").unwrap_err();
    assert_eq!(err.line(), Some(2), "{err}");
    assert!(err.to_string().starts_with("edge.toml:2:"), "{err}");
}

// ---- listen addresses ------------------------------------------------------

#[test]
fn listen_addr_forms() {
    let v4: SocketAddr = "192.0.2.7:5060".parse().unwrap();
    for s in ["udp:192.0.2.7:5060", "UDP:192.0.2.7:5060", "192.0.2.7:5060"] {
        let a: ListenAddr = s.parse().unwrap();
        assert_eq!(
            a,
            ListenAddr {
                transport: Transport::Udp,
                addr: v4
            },
            "{s}"
        );
    }
    let v6: ListenAddr = "udp:[2001:db8::7]:5061".parse().unwrap();
    assert_eq!(v6.transport, Transport::Udp);
    assert_eq!(
        v6.addr,
        SocketAddr::from(("2001:db8::7".parse::<Ipv6Addr>().unwrap(), 5061))
    );
    assert_eq!(
        "[::1]:5060".parse::<ListenAddr>().unwrap(),
        udp("[::1]:5060")
    );
}

#[test]
fn listen_addr_display_round_trips() {
    for s in [
        "udp:127.0.0.1:5060",
        "udp:[::1]:5060",
        "udp:[2001:db8::1]:5080",
    ] {
        let a: ListenAddr = s.parse().unwrap();
        assert_eq!(a.to_string(), s);
        assert_eq!(a.to_string().parse::<ListenAddr>().unwrap(), a);
    }
}

#[test]
fn listen_addr_rejects() {
    for (s, says) in [
        ("tcp:127.0.0.1:5060", "not supported"),
        ("tls:[::1]:5061", "not supported"),
        ("udp:nothost:5060", "not udp:IP:PORT"),
        ("udp:::1:5060", "brackets"),
        ("udp:127.0.0.1", "not udp:IP:PORT"),
        ("udp:127.0.0.1:99999", "not udp:IP:PORT"),
        ("udp:127.0.0.1:0", "port 0"),
        ("udp:0.0.0.0:5060", "wildcard"),
        ("udp:[::]:5060", "wildcard"),
        ("foo:127.0.0.1:5060", "unknown transport"),
        ("127.0.0.1", "not udp:IP:PORT"),
        ("", "empty"),
        ("udp:", "not udp:IP:PORT"),
    ] {
        let err = s.parse::<ListenAddr>().expect_err(s).to_string();
        assert!(err.contains(says), "{s}: {err}");
    }
}

// ---- flag overrides --------------------------------------------------------

#[test]
fn no_overrides_change_nothing() {
    let mut c = Config::from_toml_str(FULL).unwrap();
    let before = c.clone();
    c.apply_overrides(Overrides::default()).unwrap();
    assert_eq!(c, before);
}

#[test]
fn flags_override_the_file() {
    let mut c = Config::from_toml_str(FULL).unwrap();
    c.apply_overrides(Overrides {
        listen: vec![udp("127.0.0.1:6000"), udp("[::1]:6000")],
        next_hop: Some("sip:127.0.0.1:7000".into()),
        cores: Some(3),
        dispatcher_list: None,
        rpc: None,
    })
    .unwrap();
    // --listen replaces the whole list, not appends.
    assert_eq!(c.listen, vec![udp("127.0.0.1:6000"), udp("[::1]:6000")]);
    assert_eq!(c.next_hop_addr(), Some("127.0.0.1:7000".parse().unwrap()));
    // --cores N is the first N cores, replacing the file's list.
    assert_eq!(c.cores, vec![0, 1, 2]);
    // Everything else stays as the file said.
    let file = Config::from_toml_str(FULL).unwrap();
    assert_eq!(c.proxy, file.proxy);
    assert_eq!(c.log_level, file.log_level);
    assert_eq!(c.recv_buffer_bytes, file.recv_buffer_bytes);
}

#[test]
fn bad_flags_are_rejected_and_change_nothing() {
    let mut c = Config::default();
    let err = c
        .apply_overrides(Overrides {
            next_hop: Some("sip:example.com".into()),
            ..Overrides::default()
        })
        .unwrap_err();
    assert!(err.to_string().starts_with("--next-hop: "), "{err}");
    let err = c
        .apply_overrides(Overrides {
            cores: Some(0),
            ..Overrides::default()
        })
        .unwrap_err();
    assert!(err.to_string().starts_with("--cores: "), "{err}");
    let err = c
        .apply_overrides(Overrides {
            listen: vec![udp("127.0.0.1:6000"), udp("127.0.0.1:6000")],
            ..Overrides::default()
        })
        .unwrap_err();
    assert!(err.to_string().starts_with("--listen: "), "{err}");
    assert_eq!(c, Config::default());
}

// ---- --print-config --------------------------------------------------------

#[test]
fn printed_config_parses_back_to_the_defaults() {
    assert_eq!(
        Config::from_toml_str(DEFAULT_CONFIG_TOML).unwrap(),
        Config::default()
    );
}

#[test]
fn printed_config_comments_every_field() {
    // Every `key = value` line (and the commented-out next_hop) follows a
    // comment line saying what it is.
    let lines: Vec<&str> = DEFAULT_CONFIG_TOML.lines().collect();
    let mut keys = 0;
    for (i, line) in lines.iter().enumerate() {
        let setting = line.strip_prefix("# ").unwrap_or(line);
        let is_setting = setting.split_once(" = ").is_some_and(|(k, _)| {
            !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        });
        if is_setting {
            keys += 1;
            assert!(
                i > 0 && lines[i - 1].starts_with("# ") && lines[i - 1].len() > 20,
                "no comment above `{line}`"
            );
        }
    }
    // log_level, 3 in [sip] (next_hop commented out), 4 in [runtime],
    // 5 in [transaction], 1 in [overload], 6 in [dispatcher] (list commented
    // out), 3 in [dispatcher.failover], 6 in [dispatcher.health], 2 in
    // [rpc] (both commented out): every field of the file.
    assert_eq!(keys, 31);
    let limited = DEFAULT_CONFIG_TOML.replace(
        "reload_min_interval_ms = 0",
        "reload_min_interval_ms = 5000",
    );
    let c = Config::from_toml_str(&limited).unwrap();
    assert_eq!(c.dispatcher.reload_min_interval_ms, 5000);
    // The rpc examples, uncommented, are accepted.
    let with_rpc = DEFAULT_CONFIG_TOML
        .replace("# listen = \"127", "listen = \"127")
        .replace("# token = ", "token = ");
    let c = Config::from_toml_str(&with_rpc).unwrap();
    assert_eq!(c.rpc.listen, Some("127.0.0.1:5090".parse().unwrap()));
    assert!(c.rpc.token.is_some());
    // The dispatcher list example, uncommented, is accepted.
    let with_list = DEFAULT_CONFIG_TOML.replace("# list = ", "list = ");
    let c = Config::from_toml_str(&with_list).unwrap();
    assert!(c.dispatcher.is_configured());
    // The next_hop example, uncommented, is accepted.
    let with_hop = DEFAULT_CONFIG_TOML.replace("# next_hop = ", "next_hop = ");
    let c = Config::from_toml_str(&with_hop).unwrap();
    assert_eq!(c.next_hop_addr(), Some("127.0.0.1:5080".parse().unwrap()));
}

// ---- robustness ------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any text at all: an error or a config, never a panic.
    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = Config::from_toml_str(&text);
    }

    /// TOML-shaped text with the real section and key names, to get past the
    /// parser into validation.
    #[test]
    fn toml_shaped_text_never_panics(
        lines in proptest::collection::vec(
            (
                prop_oneof![
                    Just("[sip]"), Just("[runtime]"), Just("[transaction]"),
                    Just("[overload]"), Just(""),
                ],
                prop_oneof![
                    Just("log_level"), Just("listen"), Just("next_hop"),
                    Just("record_route"), Just("cores"), Just("recv_buffer_bytes"),
                    Just("send_buffer_bytes"), Just("shutdown_grace_ms"),
                    Just("t1_ms"), Just("t2_ms"), Just("t4_ms"), Just("timer_c_ms"),
                    Just("max_transactions_per_shard"), Just("retry_after_s"),
                ],
                prop_oneof![
                    any::<i64>().prop_map(|n| n.to_string()),
                    any::<bool>().prop_map(|b| b.to_string()),
                    "\"[a-z:0-9\\[\\].;=]{0,24}\"",
                    proptest::collection::vec(0u32..70_000, 0..4)
                        .prop_map(|v| format!("{v:?}")),
                    "\\[\"(udp|tcp)?:?[0-9.:\\[\\]a-f]{0,20}\"\\]",
                    "\"sip:[0-9a-z.:\\[\\];=]{0,24}\"",
                ],
            ),
            0..12,
        )
    ) {
        let mut text = String::new();
        for (section, key, value) in lines {
            text.push_str(section);
            text.push('\n');
            text.push_str(&format!("{key} = {value}\n"));
        }
        if let Err(e) = Config::from_toml_str(&text) {
            // Every error about the file says where.
            prop_assert!(e.line().is_some_and(|l| l >= 1 && l <= text.lines().count() + 1), "{e}");
        }
    }

    /// Display of a parsed listen address parses back to it.
    #[test]
    fn listen_addr_round_trips(ip in any::<std::net::IpAddr>(), port in 1u16..) {
        prop_assume!(!ip.is_unspecified());
        let a = ListenAddr::udp(SocketAddr::new(ip, port));
        let back: ListenAddr = a.to_string().parse().unwrap();
        prop_assert_eq!(back, a);
    }
}

// ---- [dispatcher] ----------------------------------------------------------

mod dispatcher {
    use super::*;
    use edge::config::DestinationSource;
    use edge::dispatcher::Algorithm;
    use std::time::Duration;

    #[test]
    fn defaults_mean_no_dispatcher() {
        let c = Config::default();
        assert!(!c.dispatcher.is_configured());
        assert_eq!(c.dispatcher.router.default_rule.set, 1);
        assert_eq!(
            c.dispatcher.router.default_rule.algorithm,
            Algorithm::RoundRobin
        );
        assert_eq!(c.dispatcher.dispatcher.failover.max_attempts, 3);
        assert!(c.dispatcher.load_sets().unwrap().is_none());
    }

    #[test]
    fn every_field_is_read() {
        let text = r#"
[dispatcher]
list = "/tmp/d.list"
set = 2
algorithm = 9
dialog_timeout_s = 60
max_dialogs_per_shard = 10

[[dispatcher.route]]
method = "message"
set = 3
algorithm = 6

[dispatcher.failover]
attempts = 2
codes = [503]
timeout_ms = 500

[dispatcher.health]
interval_ms = 1000
timeout_ms = 400
probing_threshold = 1
inactive_threshold = 1
accepted_codes = [404]
probe_all = false
"#;
        let c = Config::from_toml_str(text).unwrap();
        let d = &c.dispatcher;
        assert_eq!(d.source, DestinationSource::List("/tmp/d.list".into()));
        assert_eq!(d.router.default_rule.set, 2);
        assert_eq!(d.router.default_rule.algorithm, Algorithm::Weight);
        assert_eq!(d.router.dialog_timeout, Duration::from_secs(60));
        assert_eq!(d.router.max_dialogs, 10);
        assert_eq!(d.router.method_rules.len(), 1);
        assert_eq!(d.router.method_rules[0].0, "MESSAGE");
        assert_eq!(d.router.method_rules[0].1.set, 3);
        assert_eq!(d.router.method_rules[0].1.algorithm, Algorithm::Random);
        let f = &d.dispatcher.failover;
        assert_eq!(f.max_attempts, 2);
        assert!(f.codes.contains(503) && !f.codes.contains(500));
        assert_eq!(f.attempt_timeout, Duration::from_millis(500));
        let h = &d.dispatcher.health;
        assert_eq!(h.probe_interval, Duration::from_secs(1));
        assert_eq!(h.probe_timeout, Duration::from_millis(400));
        assert_eq!((h.probing_threshold, h.inactive_threshold), (1, 1));
        assert!(h.accepted_codes.contains(404) && h.accepted_codes.contains(204));
        assert!(!h.probe_all);
    }

    #[test]
    fn inline_destinations_are_checked_with_their_line() {
        let text = "[dispatcher]\n\n[[dispatcher.destination]]\nset = 1\nuri = \"sip:127.0.0.1:5070\"\nweight = 60\n\n[[dispatcher.destination]]\nset = 1\nuri = \"sip:127.0.0.1:5071\"\nduid = \"b\"\n";
        let c = Config::from_toml_str(text).unwrap();
        let loaded = c.dispatcher.load_sets().unwrap().unwrap();
        assert_eq!(loaded.sets.destination_count(), 2);
        let bad = text.replace("sip:127.0.0.1:5071", "http://x");
        assert_error(&bad, "dispatcher.destination", 8);
        let unknown = text.replace("duid = \"b\"", "color = \"b\"");
        let err = Config::from_toml_str(&unknown).unwrap_err();
        assert_eq!(err.line(), Some(11), "{err}");
    }

    #[test]
    fn bad_values_name_field_and_line() {
        assert_error("[dispatcher]\nalgorithm = 7\n", "dispatcher.algorithm", 2);
        assert_error(
            "[dispatcher]\n[dispatcher.failover]\nattempts = 0\n",
            "dispatcher.failover.attempts",
            3,
        );
        assert_error(
            "[dispatcher]\n[dispatcher.failover]\ncodes = [200]\n",
            "dispatcher.failover.codes",
            3,
        );
        assert_error(
            "[dispatcher.health]\ninterval_ms = 0\n",
            "dispatcher.health.interval_ms",
            2,
        );
        assert_error(
            "[dispatcher]\nlist = \"a.list\"\n[[dispatcher.destination]]\nset = 1\nuri = \"sip:127.0.0.1\"\n",
            "dispatcher.list",
            2,
        );
    }

    #[test]
    fn the_list_flag_replaces_the_file() {
        let mut c = Config::default();
        c.apply_overrides(Overrides {
            dispatcher_list: Some("/etc/edge/d.list".into()),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(
            c.dispatcher.source,
            DestinationSource::List("/etc/edge/d.list".into())
        );
    }

    #[test]
    fn a_list_file_loads_with_file_and_line_in_errors() {
        let dir = std::env::temp_dir().join(format!("edge-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.list");
        std::fs::write(
            &path,
            "# sets\n1 sip:127.0.0.1:5070 0 0 weight=50\n1 sip:localhost:5071\n",
        )
        .unwrap();
        let mut c = Config::default();
        c.dispatcher.source = DestinationSource::List(path.clone());
        let loaded = c.dispatcher.load_sets().unwrap().unwrap();
        assert_eq!(loaded.sets.destination_count(), 2);
        let all_resolved = loaded
            .sets
            .sets()
            .iter()
            .flat_map(|s| &s.destinations)
            .all(|d| d.target.addr.is_some());
        assert!(all_resolved, "localhost resolves");
        std::fs::write(&path, "1 sip:127.0.0.1:5070\nx sip:127.0.0.1:5071\n").unwrap();
        let err = c.dispatcher.load_sets().unwrap_err();
        assert!(err.contains("d.list:2"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

// ---- [rpc] -----------------------------------------------------------------

#[test]
fn rpc_is_off_by_default_and_read_from_the_file() {
    assert_eq!(Config::default().rpc.listen, None);
    let c = Config::from_toml_str("[rpc]\nlisten = \"127.0.0.1:5090\"\n").unwrap();
    assert_eq!(c.rpc.listen, Some("127.0.0.1:5090".parse().unwrap()));
    assert_eq!(c.rpc.token, None);
    let c = Config::from_toml_str("[rpc]\nlisten = \"[::1]:5090\"\n").unwrap();
    assert!(c.rpc.listen.unwrap().ip().is_loopback());
    let c =
        Config::from_toml_str("[rpc]\nlisten = \"0.0.0.0:5090\"\ntoken = \"s3cret\"\n").unwrap();
    assert_eq!(c.rpc.token.as_deref(), Some("s3cret"));
}

#[test]
fn rpc_off_loopback_needs_a_token() {
    let err = assert_error("[rpc]\n\nlisten = \"0.0.0.0:5090\"\n", "rpc.listen", 3);
    assert!(err.to_string().contains("rpc.token"), "{err}");
    assert_error("[rpc]\nlisten = \"localhost:5090\"\n", "rpc.listen", 2);
    assert_error(
        "[rpc]\nlisten = \"127.0.0.1:5090\"\ntoken = \"\"\n",
        "rpc.token",
        3,
    );
    assert_error("[rpc]\ntoken = \"a b\"\n", "rpc.token", 2);
    assert_error("[rpc]\nport = 1\n", "rpc.port", 2);
}

#[test]
fn rpc_flag_overrides_and_is_checked() {
    let mut c = Config::default();
    c.apply_overrides(Overrides {
        rpc: Some("127.0.0.1:6090".parse().unwrap()),
        ..Overrides::default()
    })
    .unwrap();
    assert_eq!(c.rpc.listen, Some("127.0.0.1:6090".parse().unwrap()));
    let mut c = Config::default();
    let err = c
        .apply_overrides(Overrides {
            rpc: Some("192.0.2.1:6090".parse().unwrap()),
            ..Overrides::default()
        })
        .unwrap_err();
    assert!(err.to_string().starts_with("--rpc: "), "{err}");
    assert_eq!(c, Config::default());
    let mut c = Config::from_toml_str("[rpc]\ntoken = \"t0k\"\n").unwrap();
    c.apply_overrides(Overrides {
        rpc: Some("192.0.2.1:6090".parse().unwrap()),
        ..Overrides::default()
    })
    .unwrap();
    assert_eq!(c.rpc.token.as_deref(), Some("t0k"));
}
