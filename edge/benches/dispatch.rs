//! Dispatcher selection cost per call: every algorithm with 4 and 100
//! destinations, ranking the first choice plus two failovers (the default
//! `max_attempts` of 3). Inputs cycle over 1,024 distinct calls so the hash
//! algorithms do not see one key. Figures go to `docs/benchmarks.md`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use edge::dispatcher::{
    parse_list, Algorithm, Dispatcher, DispatcherConfig, ListOptions, SelectionInput,
};

/// Distinct calls the inputs cycle over.
const CALLS: usize = 1024;

/// One set of `n` destinations with mixed weights.
fn dispatcher(n: usize) -> Dispatcher {
    let text: String = (0..n)
        .map(|i| {
            let attrs = format!("duid=m{i};weight={};rweight={}", 10 + i % 40, 1 + i % 7);
            format!(
                "1 sip:10.0.{}.{}:5060 0 {} {attrs}\n",
                i / 250,
                i % 250 + 1,
                i % 5
            )
        })
        .collect();
    let sets =
        parse_list(text.as_bytes(), "bench.list", &ListOptions::default()).expect("valid list");
    Dispatcher::new(
        Instant::now(),
        Arc::new(sets.sets),
        DispatcherConfig::default(),
    )
}

/// Per call: Call-ID, From, To, R-URI, user, each about as long as a real one.
fn calls() -> Vec<[String; 5]> {
    (0..CALLS)
        .map(|i| {
            [
                format!("{i:08x}-d2a4-4b6e-9e7c-0a5d8f1e2c33@198.51.100.17"),
                format!("sip:+49409876{i:05}@trunk.example.org;user=phone"),
                format!("sip:+49301234{i:05}@edge.example.net;user=phone"),
                format!("sip:+49301234{i:05}@edge.example.net;user=phone"),
                format!("user{i}"),
            ]
        })
        .collect()
}

fn selection(c: &mut Criterion) {
    let calls = calls();
    let inputs: Vec<SelectionInput<'_>> = calls
        .iter()
        .enumerate()
        .map(|(i, [call_id, from, to, ruri, user])| SelectionInput {
            call_id: call_id.as_bytes(),
            from_uri: from.as_bytes(),
            to_uri: to.as_bytes(),
            ruri: ruri.as_bytes(),
            auth_user: user.as_bytes(),
            random: (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        })
        .collect();
    let mut group = c.benchmark_group("select");
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_millis(500));
    for n in [4, 100] {
        let mut d = dispatcher(n);
        for alg in Algorithm::ALL {
            let id = BenchmarkId::new(format!("{:02}_{alg:?}", alg.number()), n);
            let mut i = 0;
            group.bench_function(id, |b| {
                b.iter(|| {
                    i = (i + 1) % CALLS;
                    black_box(d.select(1, alg, black_box(&inputs[i])))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(dispatch, selection);
criterion_main!(dispatch);
