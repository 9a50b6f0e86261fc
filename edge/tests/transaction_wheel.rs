//! The timer wheel's cost does not grow with the number of live timers: a
//! tick with nothing due visits no entry, and each timer is visited at most
//! once a level (fired, or moved down) however many others are armed. Work is
//! measured by the wheel's visit counter, not by time.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use edge::transaction::{TimerWheel, TICK_MS};

const LIVE: usize = 100_000;
const LEVELS: u64 = 6;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn idle_ticks_cost_nothing_with_100k_live_timers() {
    let t0 = Instant::now();
    let mut w = TimerWheel::new(LIVE + 1);
    w.start(t0);
    // 100K transactions waiting on Timer C (180 s) and one on Timer A.
    for i in 0..LIVE {
        w.insert(t0 + ms(180_000 + (i as u64 % 1000)), i).unwrap();
    }
    w.insert(t0 + ms(500), usize::MAX).unwrap();
    let mut out = Vec::new();
    let mut per_tick = Vec::new();
    for tick in 1..=1_000u64 {
        let before = w.visited();
        w.advance(t0 + ms(tick * TICK_MS), &mut out, usize::MAX);
        per_tick.push(w.visited() - before);
    }
    assert_eq!(out, [usize::MAX], "only the 500 ms timer fired");
    assert_eq!(per_tick.iter().sum::<u64>(), 1, "one visit in 1000 ticks");
    assert_eq!(per_tick[49], 1, "at 500 ms");
    assert_eq!(w.len(), LIVE);
}

#[test]
fn staggered_100k_timers_cost_amortized_o1_each() {
    let t0 = Instant::now();
    let mut w = TimerWheel::new(LIVE);
    w.start(t0);
    // 100K deadlines spread over 60 s, like transactions arriving at ~1.7K/s.
    let mut expected: Vec<(u64, usize)> = (0..LIVE)
        .map(|i| ((i as u64 * 7_919) % 60_000 + 1, i))
        .collect();
    for &(d, i) in &expected {
        w.insert(t0 + ms(d), i).unwrap();
    }
    let mut fired = Vec::new();
    let mut max_tick_fired = 0;
    let mut tick = 0;
    while !w.is_empty() {
        tick += 1;
        let (visits, before) = (w.visited(), fired.len());
        w.advance(t0 + ms(tick * TICK_MS), &mut fired, usize::MAX);
        let (visits, fired_now) = (w.visited() - visits, (fired.len() - before) as u64);
        max_tick_fired = max_tick_fired.max(fired_now);
        // Beyond the due timers, a tick only moves entries down a level, and
        // only at a slot boundary of level 1 (every 64 ticks).
        assert!(
            visits == fired_now || tick % 64 == 0,
            "tick {tick}: {visits} visits, {fired_now} fired"
        );
        assert!(tick < 10_000, "the wheel must drain");
    }
    // Every timer fired once, in deadline order (ties in any order).
    expected.sort_unstable();
    let mut got = fired.clone();
    got.sort_unstable();
    assert_eq!(got, (0..LIVE).collect::<Vec<_>>());
    let deadline_of = |i: usize| (i as u64 * 7_919) % 60_000 + 1;
    assert!(fired
        .windows(2)
        .all(|p| deadline_of(p[0]).div_ceil(TICK_MS) <= deadline_of(p[1]).div_ceil(TICK_MS)));
    // Amortized: deadlines up to 6000 ticks sit at most on levels 2, 1 and
    // 0, so each timer is visited at most three times in its life.
    assert!(w.visited() <= 3 * LIVE as u64, "{} visits", w.visited());
    assert!(w.visited() <= LEVELS * LIVE as u64);
    assert!(max_tick_fired <= 20, "{max_tick_fired}");
}
