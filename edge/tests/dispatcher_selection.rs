//! Dispatcher selection (issue 4): algorithm by algorithm, deterministic
//! inputs, no clock but a fixed start instant.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use edge::dispatcher::{
    parse_list, Algorithm, DestId, DestKey, DestState, Dispatcher, DispatcherConfig, ListOptions,
    SelectionInput,
};

fn dispatcher_with(text: &str, config: DispatcherConfig) -> Dispatcher {
    let parsed = parse_list(text.as_bytes(), "test.list", &ListOptions::default()).unwrap();
    assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
    Dispatcher::new(Instant::now(), Arc::new(parsed.sets), config)
}

fn dispatcher(text: &str) -> Dispatcher {
    dispatcher_with(text, DispatcherConfig::default())
}

fn reload(d: &mut Dispatcher, text: &str) {
    let parsed = parse_list(text.as_bytes(), "test.list", &ListOptions::default()).unwrap();
    d.reload(Instant::now(), Arc::new(parsed.sets));
}

/// `n` destinations 10.0.0.1.. in set 1, with `attrs(i)` each.
fn list(n: usize, attrs: impl Fn(usize) -> String) -> String {
    (0..n)
        .map(|i| format!("1 sip:10.0.0.{}:5060 0 0 {}\n", i + 1, attrs(i)))
        .collect()
}

/// The destination 10.0.0.`host` of set 1.
fn id(d: &Dispatcher, host: usize) -> DestId {
    let uri = format!("sip:10.0.0.{host}:5060");
    d.find(&DestKey {
        set: 1,
        uri: Arc::from(uri.as_str()),
    })
    .unwrap()
}

fn first(d: &mut Dispatcher, alg: Algorithm, input: &SelectionInput<'_>) -> DestId {
    d.select(1, alg, input).first().expect("a destination")
}

fn call(i: usize) -> String {
    format!("{i:08x}-4b6e-9e7c-0a5d8f1e2c33@198.51.100.17")
}

/// The first choice of algorithm 0 for `calls` Call-IDs.
fn placement(d: &mut Dispatcher, calls: usize) -> Vec<DestId> {
    (0..calls)
        .map(|i| {
            let c = call(i);
            let input = SelectionInput {
                call_id: c.as_bytes(),
                ..Default::default()
            };
            first(d, Algorithm::CallId, &input)
        })
        .collect()
}

fn counts(picks: &[DestId]) -> HashMap<DestId, usize> {
    let mut m = HashMap::new();
    picks.iter().for_each(|&p| *m.entry(p).or_default() += 1);
    m
}

#[test]
fn round_robin_order_is_exact_and_skips_what_takes_no_calls() {
    let mut d = dispatcher(&list(3, |_| String::new()));
    let input = SelectionInput::default();
    let picks: Vec<DestId> = (0..7)
        .map(|_| first(&mut d, Algorithm::RoundRobin, &input))
        .collect();
    assert_eq!(picks, [1, 2, 3, 1, 2, 3, 1].map(|h| id(&d, h)));
    // The failovers of one call are the following destinations, in order.
    let c = d.select(1, Algorithm::RoundRobin, &input);
    assert_eq!(c.as_slice(), [2, 3, 1].map(|h| id(&d, h)));
    assert!(d.set_state(id(&d, 2), DestState::Disabled));
    let picks: Vec<DestId> = (0..4)
        .map(|_| first(&mut d, Algorithm::RoundRobin, &input))
        .collect();
    assert_eq!(picks, [3, 1, 3, 1].map(|h| id(&d, h)));
}

#[test]
fn hash_algorithms_are_sticky_per_call_across_shards_and_reloads() {
    let text = list(8, |i| format!("duid=m{i}"));
    let mut a = dispatcher(&text);
    let mut b = dispatcher(&text); // another shard
    for i in 0..500 {
        let (c, f, t, r, u) = (
            call(i),
            format!("sip:u{i}@a.example"),
            format!("sip:+49{i}@b.example"),
            format!("sip:+49{i}@edge"),
            format!("user{i}"),
        );
        let input = SelectionInput {
            call_id: c.as_bytes(),
            from_uri: f.as_bytes(),
            to_uri: t.as_bytes(),
            ruri: r.as_bytes(),
            auth_user: u.as_bytes(),
            random: i as u64,
        };
        for alg in [
            Algorithm::CallId,
            Algorithm::FromUri,
            Algorithm::ToUri,
            Algorithm::RequestUri,
            Algorithm::AuthUser,
            Algorithm::Random,
        ] {
            let x = a.select(1, alg, &input);
            assert_eq!(x, a.select(1, alg, &input), "{alg:?} again");
            let y = b.select(1, alg, &input);
            let uris = |d: &Dispatcher, c: &[DestId]| {
                c.iter()
                    .map(|&i| d.destination(i).unwrap().uri.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                uris(&a, x.as_slice()),
                uris(&b, y.as_slice()),
                "{alg:?} on another shard"
            );
        }
    }
    // A reload that adds a set elsewhere changes no placement.
    let before = placement(&mut a, 2000);
    reload(&mut a, &format!("{text}2 sip:10.9.9.9\n"));
    assert_eq!(placement(&mut a, 2000), before);
}

#[test]
fn uri_hashes_ignore_tags_params_and_default_ports() {
    let mut d = dispatcher(&list(8, |_| String::new()));
    let key = |d: &mut Dispatcher, uri: &str| {
        first(
            d,
            Algorithm::FromUri,
            &SelectionInput {
                from_uri: uri.as_bytes(),
                ..Default::default()
            },
        )
    };
    let a = key(&mut d, "sip:alice@example.net");
    assert_eq!(a, key(&mut d, "<sip:alice@EXAMPLE.net:5060;transport=tcp>"));
    let moved = (0..50)
        .filter(|i| key(&mut d, &format!("sip:alice@example.net:{}", 5070 + i)) != a)
        .count();
    assert!(
        moved > 30,
        "a non-default port is part of the key ({moved}/50 moved)"
    );
}

#[test]
fn weight_algorithm_follows_weights_within_2_percent() {
    let weights = [10, 20, 30, 40];
    let mut d = dispatcher(&list(4, |i| format!("weight={}", weights[i])));
    let picks: Vec<DestId> = (0..100_000)
        .map(|_| first(&mut d, Algorithm::Weight, &SelectionInput::default()))
        .collect();
    let c = counts(&picks);
    for (i, w) in weights.iter().enumerate() {
        let share = c[&id(&d, i + 1)] as f64 / 100_000.0;
        let want = f64::from(*w) / 100.0;
        assert!(
            (share - want).abs() <= want * 0.02,
            "dest {i}: {share} vs {want}"
        );
    }
}

#[test]
fn relative_weight_spreads_over_active_destinations_only() {
    let rweights = [10, 20, 30, 40];
    let mut d = dispatcher(&list(4, |i| format!("rweight={}", rweights[i])));
    d.set_state(id(&d, 4), DestState::Inactive);
    let picks: Vec<DestId> = (0..100_000)
        .map(|_| {
            first(
                &mut d,
                Algorithm::RelativeWeight,
                &SelectionInput::default(),
            )
        })
        .collect();
    let c = counts(&picks);
    assert!(!c.contains_key(&id(&d, 4)));
    for (i, w) in rweights[..3].iter().enumerate() {
        let share = c[&id(&d, i + 1)] as f64 / 100_000.0;
        let want = f64::from(*w) / 60.0;
        assert!(
            (share - want).abs() <= want * 0.02,
            "dest {i}: {share} vs {want}"
        );
    }
}

#[test]
fn weighted_rendezvous_follows_weights() {
    let weights = [10, 20, 30, 40];
    let mut d = dispatcher(&list(4, |i| format!("weight={}", weights[i])));
    let c = counts(&placement(&mut d, 100_000));
    for (i, w) in weights.iter().enumerate() {
        let share = c[&id(&d, i + 1)] as f64 / 100_000.0;
        let want = f64::from(*w) / 100.0;
        // Hashing, not counting: within one percentage point (σ ≈ 0.15 points).
        assert!((share - want).abs() <= 0.01, "dest {i}: {share} vs {want}");
    }
}

#[test]
fn random_is_uniform_and_follows_the_callers_number() {
    let mut d = dispatcher(&list(5, |_| String::new()));
    let pick = |d: &mut Dispatcher, r: u64| {
        first(
            d,
            Algorithm::Random,
            &SelectionInput {
                random: r,
                ..Default::default()
            },
        )
    };
    assert_eq!(pick(&mut d, 42), pick(&mut d, 42));
    let picks: Vec<DestId> = (0..100_000).map(|r| pick(&mut d, r)).collect();
    for (_, n) in counts(&picks) {
        assert!((n as f64 / 100_000.0 - 0.2).abs() <= 0.01, "{n}");
    }
}

#[test]
fn auth_user_hash_falls_back_to_round_robin_without_credentials() {
    let mut d = dispatcher(&list(3, |_| String::new()));
    let none = SelectionInput::default();
    let picks: Vec<DestId> = (0..3)
        .map(|_| first(&mut d, Algorithm::AuthUser, &none))
        .collect();
    assert_eq!(picks, [1, 2, 3].map(|h| id(&d, h)));
    let alice = SelectionInput {
        auth_user: b"alice",
        ..Default::default()
    };
    let a = first(&mut d, Algorithm::AuthUser, &alice);
    assert!((0..10).all(|_| first(&mut d, Algorithm::AuthUser, &alice) == a));
}

#[test]
fn priority_orders_higher_first_and_skips_disabled() {
    let text = "1 sip:10.0.0.1:5060 0 5\n1 sip:10.0.0.2:5060 0 20\n1 sip:10.0.0.3:5060 0 10\n";
    let mut d = dispatcher(text);
    let c = d.select(1, Algorithm::Priority, &SelectionInput::default());
    assert_eq!(c.as_slice(), [2, 3, 1].map(|h| id(&d, h)));
    d.set_state(id(&d, 2), DestState::Disabled);
    let c = d.select(1, Algorithm::Priority, &SelectionInput::default());
    assert_eq!(c.as_slice(), [3, 1].map(|h| id(&d, h)));
}

#[test]
fn call_load_picks_the_least_loaded_and_honours_maxload() {
    let mut d = dispatcher(&list(3, |i| {
        if i == 0 {
            "maxload=2".into()
        } else {
            String::new()
        }
    }));
    let now = Instant::now();
    let input = SelectionInput::default();
    let answer = |d: &mut Dispatcher| {
        let mut hunt = d.start_hunt(1, Algorithm::CallLoad, &input, true);
        let dest = hunt.next_destination(d, now).expect("a destination");
        hunt.on_response(d, now, 200);
        dest
    };
    // Equal loads: set order; each answered call raises its destination's load.
    let picks: Vec<DestId> = (0..6).map(|_| answer(&mut d)).collect();
    assert_eq!(picks, [1, 2, 3, 1, 2, 3].map(|h| id(&d, h)));
    // Destination 1 is at its maxload of 2: the next calls go to 2 and 3.
    let picks: Vec<DestId> = (0..4).map(|_| answer(&mut d)).collect();
    assert_eq!(picks, [2, 3, 2, 3].map(|h| id(&d, h)));
    d.call_ended(id(&d, 1));
    assert_eq!(
        answer(&mut d),
        id(&d, 1),
        "below maxload again, least loaded"
    );
    // A call being set up counts too (pending), so a burst spreads.
    let mut d = dispatcher(&list(3, |_| String::new()));
    let mut hunts = Vec::new();
    let mut sent = Vec::new();
    for _ in 0..3 {
        let mut hunt = d.start_hunt(1, Algorithm::CallLoad, &input, true);
        sent.push(hunt.next_destination(&mut d, now).unwrap());
        hunts.push(hunt); // not answered yet
    }
    assert_eq!(sent, [1, 2, 3].map(|h| id(&d, h)));
}

#[test]
fn call_load_with_every_destination_full_selects_none() {
    let mut d = dispatcher(&list(2, |_| "maxload=1".into()));
    let now = Instant::now();
    for _ in 0..2 {
        let mut hunt = d.start_hunt(1, Algorithm::CallLoad, &SelectionInput::default(), true);
        hunt.next_destination(&mut d, now).unwrap();
        hunt.on_response(&mut d, now, 200);
    }
    assert!(d
        .select(1, Algorithm::CallLoad, &SelectionInput::default())
        .is_empty());
    assert_eq!(d.stats().no_destination, 1);
}

/// Removing one of ten destinations moves only its calls, and spreads them
/// evenly over the other nine.
fn assert_only_its_calls_move(before: &[DestId], after: &[DestId], gone: DestId) {
    let theirs = before.iter().filter(|&&p| p == gone).count();
    let moved: Vec<DestId> = before
        .iter()
        .zip(after)
        .filter(|(b, a)| b != a)
        .map(|(_, &a)| a)
        .collect();
    assert!(
        before.iter().zip(after).all(|(b, a)| b == a || *b == gone),
        "only the removed one's calls move"
    );
    assert_eq!(moved.len(), theirs);
    let share = theirs as f64 / before.len() as f64;
    assert!((0.09..=0.11).contains(&share), "its share was {share}");
    let spread = counts(&moved);
    assert_eq!(spread.len(), 9, "every other destination takes some");
    let fair = theirs as f64 / 9.0;
    for (_, n) in spread {
        assert!(
            (n as f64 - fair).abs() <= fair * 0.15,
            "{n} of {theirs} vs fair {fair}"
        );
    }
}

#[test]
fn rendezvous_moves_only_the_calls_of_a_destination_that_goes_down() {
    let mut d = dispatcher(&list(10, |_| String::new()));
    let before = placement(&mut d, 100_000);
    let gone = id(&d, 7);
    d.set_state(gone, DestState::Inactive);
    let after = placement(&mut d, 100_000);
    assert_only_its_calls_move(&before, &after, gone);
    // It comes back: every call returns to where it was.
    d.set_state(gone, DestState::Active);
    assert_eq!(placement(&mut d, 100_000), before);
}

#[test]
fn rendezvous_moves_only_the_calls_of_a_drained_or_removed_destination() {
    let text = list(10, |_| String::new());
    let mut d = dispatcher(&text);
    let before = placement(&mut d, 100_000);
    let gone = id(&d, 3);
    d.set_state(gone, DestState::Draining);
    assert_only_its_calls_move(&before, &placement(&mut d, 100_000), gone);
    let without: String = text
        .lines()
        .filter(|l| !l.contains("10.0.0.3:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut d = dispatcher(&text);
    reload(&mut d, &without);
    assert_only_its_calls_move(&before, &placement(&mut d, 100_000), gone);
}

#[test]
fn hash_failovers_are_the_next_ranked_and_spread() {
    let mut d = dispatcher(&list(10, |_| String::new()));
    let mut seconds = HashMap::new();
    for i in 0..20_000 {
        let c = call(i);
        let ranked = d.select(
            1,
            Algorithm::CallId,
            &SelectionInput {
                call_id: c.as_bytes(),
                ..Default::default()
            },
        );
        assert_eq!(ranked.len(), 3, "first choice and two failovers");
        let s = ranked.as_slice();
        assert!(s[0] != s[1] && s[1] != s[2] && s[0] != s[2]);
        *seconds.entry((s[0], s[1])).or_insert(0usize) += 1;
    }
    // Each first choice fails over to all nine others, not to one neighbour.
    assert_eq!(seconds.len(), 90);
}

#[test]
fn unknown_set_or_nothing_eligible_selects_none() {
    let mut d = dispatcher(&list(2, |_| String::new()));
    assert!(d
        .select(9, Algorithm::RoundRobin, &SelectionInput::default())
        .is_empty());
    d.set_state(id(&d, 1), DestState::Disabled);
    d.set_state(id(&d, 2), DestState::Inactive);
    for alg in Algorithm::ALL {
        let input = SelectionInput {
            call_id: b"x",
            auth_user: b"u",
            ..Default::default()
        };
        assert!(d.select(1, alg, &input).is_empty(), "{alg:?}");
    }
}
