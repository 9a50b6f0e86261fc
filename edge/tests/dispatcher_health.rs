//! Dispatcher failover, health probing, drain, call load and reload (issue 4),
//! driven with a fake clock.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::Arc;
use std::time::{Duration, Instant};

use edge::dispatcher::{
    parse_list, AdminState, Algorithm, CodeSet, DestId, DestKey, DestState, Dispatcher,
    DispatcherConfig, FailoverConfig, HealthConfig, HuntVerdict, ListOptions, Liveness,
    ProbeOutcome, SelectionInput,
};

/// A clock that moves only when told.
struct FakeClock(Instant);

impl FakeClock {
    fn start() -> Self {
        FakeClock(Instant::now())
    }
    fn now(&self) -> Instant {
        self.0
    }
    fn advance(&mut self, d: Duration) {
        self.0 += d;
    }
}

fn sets(text: &str) -> Arc<edge::dispatcher::DestinationSets> {
    Arc::new(
        parse_list(text.as_bytes(), "test.list", &ListOptions::default())
            .unwrap()
            .sets,
    )
}

fn list(n: usize) -> String {
    (1..=n)
        .map(|i| format!("1 sip:10.0.0.{i}:5060 0 0 duid=m{i}\n"))
        .collect()
}

fn id(d: &Dispatcher, host: usize) -> DestId {
    d.find(&DestKey {
        set: 1,
        uri: Arc::from(format!("sip:10.0.0.{host}:5060").as_str()),
    })
    .unwrap()
}

fn rr(d: &mut Dispatcher, track_load: bool) -> edge::dispatcher::Hunt {
    d.start_hunt(
        1,
        Algorithm::RoundRobin,
        &SelectionInput::default(),
        track_load,
    )
}

// ----- failover -----

#[test]
fn failover_follows_the_ranking_up_to_the_attempt_limit() {
    let clock = FakeClock::start();
    let mut d = Dispatcher::new(clock.now(), sets(&list(5)), DispatcherConfig::default());
    let mut hunt = rr(&mut d, true);
    let now = clock.now();
    assert_eq!(hunt.next_destination(&mut d, now), Some(id(&d, 1)));
    assert_eq!(
        hunt.on_response(&mut d, now, 503),
        HuntVerdict::Retry { dest: id(&d, 2) }
    );
    assert_eq!(
        hunt.on_response(&mut d, now, 500),
        HuntVerdict::Retry { dest: id(&d, 3) }
    );
    assert_eq!(
        hunt.on_response(&mut d, now, 502),
        HuntVerdict::Exhausted { code: 502 }
    );
    assert_eq!(hunt.attempts(), 3, "default max_attempts");
    assert!(hunt.is_done());
    assert_eq!(hunt.on_response(&mut d, now, 200), HuntVerdict::Ignored);
    assert!(
        (1..=5).all(|h| d.load(id(&d, h)).unwrap().total() == 0),
        "no call counted"
    );
}

#[test]
fn only_failover_codes_fail_over() {
    let clock = FakeClock::start();
    let now = clock.now();
    let mut d = Dispatcher::new(now, sets(&list(3)), DispatcherConfig::default());
    for (code, want_retry) in [
        (408, true),
        (504, true),
        (480, false),
        (486, false),
        (404, false),
        (603, false),
        (501, false),
    ] {
        let mut hunt = rr(&mut d, false);
        hunt.next_destination(&mut d, now).unwrap();
        let v = hunt.on_response(&mut d, now, code);
        assert_eq!(
            matches!(v, HuntVerdict::Retry { .. }),
            want_retry,
            "{code}: {v:?}"
        );
        if !want_retry {
            assert_eq!(v, HuntVerdict::Final);
        }
    }
    // Configurable: 486 fails over, one attempt only.
    let config = DispatcherConfig {
        failover: FailoverConfig {
            max_attempts: 1,
            codes: CodeSet::of(&[486]),
            ..FailoverConfig::default()
        },
        ..DispatcherConfig::default()
    };
    let mut d = Dispatcher::new(now, sets(&list(3)), config);
    let mut hunt = rr(&mut d, false);
    hunt.next_destination(&mut d, now).unwrap();
    assert_eq!(
        hunt.on_response(&mut d, now, 486),
        HuntVerdict::Exhausted { code: 486 }
    );
}

#[test]
fn an_attempt_without_any_reply_times_out_and_a_provisional_stops_the_timer() {
    let mut clock = FakeClock::start();
    let mut d = Dispatcher::new(clock.now(), sets(&list(3)), DispatcherConfig::default());
    let mut hunt = rr(&mut d, true);
    hunt.next_destination(&mut d, clock.now()).unwrap();
    let deadline = hunt.poll_timeout().unwrap();
    assert_eq!(deadline, clock.now() + Duration::from_secs(4));
    clock.advance(Duration::from_secs(3));
    assert_eq!(
        hunt.on_timeout(&mut d, clock.now()),
        HuntVerdict::Ignored,
        "not yet"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        hunt.on_timeout(&mut d, clock.now()),
        HuntVerdict::Retry { dest: id(&d, 2) }
    );
    assert_eq!(
        hunt.poll_timeout(),
        Some(clock.now() + Duration::from_secs(4))
    );
    assert_eq!(
        hunt.on_response(&mut d, clock.now(), 180),
        HuntVerdict::Provisional
    );
    assert_eq!(hunt.poll_timeout(), None, "a ringing destination is alive");
    assert_eq!(
        hunt.on_response(&mut d, clock.now(), 200),
        HuntVerdict::Answered { dest: id(&d, 2) }
    );
    assert_eq!(d.load(id(&d, 2)).unwrap().active, 1);
    assert_eq!(d.load(id(&d, 1)).unwrap().total(), 0);
}

#[test]
fn cancel_stops_the_hunt_and_releases_the_attempt() {
    let clock = FakeClock::start();
    let now = clock.now();
    let mut d = Dispatcher::new(now, sets(&list(3)), DispatcherConfig::default());
    let mut hunt = rr(&mut d, true);
    let dest = hunt.next_destination(&mut d, now).unwrap();
    assert_eq!(d.load(dest).unwrap().pending, 1);
    hunt.on_cancel(&mut d);
    assert!(hunt.is_done());
    assert_eq!(d.load(dest).unwrap().total(), 0);
    assert_eq!(hunt.next_destination(&mut d, now), None);
    assert_eq!(
        hunt.on_timeout(&mut d, now + Duration::from_secs(60)),
        HuntVerdict::Ignored
    );
}

#[test]
fn failover_failures_mark_a_destination_passively() {
    let clock = FakeClock::start();
    let now = clock.now();
    let mut d = Dispatcher::new(now, sets(&list(2)), DispatcherConfig::default());
    let one = id(&d, 1);
    for expected in [DestState::Trying, DestState::Trying, DestState::Inactive] {
        let mut hunt = d.start_hunt(1, Algorithm::Priority, &SelectionInput::default(), false);
        assert_eq!(hunt.next_destination(&mut d, now), Some(one));
        assert!(matches!(
            hunt.on_response(&mut d, now, 503),
            HuntVerdict::Retry { .. }
        ));
        assert_eq!(d.state(one), Some(expected));
    }
    // Events for the other shards: trying, then inactive.
    let events: Vec<DestState> = std::iter::from_fn(|| d.poll_event())
        .map(|e| e.state())
        .collect();
    assert_eq!(events, [DestState::Trying, DestState::Inactive]);
    let mut hunt = d.start_hunt(1, Algorithm::Priority, &SelectionInput::default(), false);
    assert_eq!(
        hunt.next_destination(&mut d, now),
        Some(id(&d, 2)),
        "inactive gets no call"
    );
}

#[test]
fn a_candidate_that_went_down_during_the_hunt_is_skipped() {
    let clock = FakeClock::start();
    let now = clock.now();
    let mut d = Dispatcher::new(now, sets(&list(3)), DispatcherConfig::default());
    let mut hunt = rr(&mut d, false);
    assert_eq!(hunt.next_destination(&mut d, now), Some(id(&d, 1)));
    d.set_state(id(&d, 2), DestState::Disabled);
    assert_eq!(
        hunt.on_response(&mut d, now, 503),
        HuntVerdict::Retry { dest: id(&d, 3) }
    );
}

// ----- probes -----

fn drain_probes(d: &mut Dispatcher, now: Instant) -> Vec<DestId> {
    std::iter::from_fn(|| d.poll_probe(now).map(|p| p.id))
        .take(1000)
        .collect()
}

#[test]
fn each_destination_is_probed_once_per_interval() {
    let mut clock = FakeClock::start();
    let mut d = Dispatcher::new(clock.now(), sets(&list(4)), DispatcherConfig::default());
    let first = d.poll_timeout().unwrap();
    assert!(
        first <= clock.now() + Duration::from_secs(10),
        "first probes within one interval"
    );
    clock.advance(Duration::from_secs(10));
    let mut probed = drain_probes(&mut d, clock.now());
    probed.sort_by_key(|p| p.slot());
    assert_eq!(probed.len(), 4);
    assert!(
        drain_probes(&mut d, clock.now()).is_empty(),
        "in flight: no second probe"
    );
    for p in &probed {
        d.on_probe_result(clock.now(), *p, ProbeOutcome::Response(200));
    }
    assert_eq!(
        d.poll_timeout(),
        Some(clock.now() + Duration::from_secs(10))
    );
    clock.advance(Duration::from_secs(10) - Duration::from_millis(1));
    assert!(drain_probes(&mut d, clock.now()).is_empty());
    clock.advance(Duration::from_millis(1));
    assert_eq!(drain_probes(&mut d, clock.now()).len(), 4);
}

/// Runs one probe round of destination `target` with `outcome` (others answer 200).
fn probe_round(d: &mut Dispatcher, clock: &mut FakeClock, target: DestId, outcome: Option<u16>) {
    clock.advance(Duration::from_secs(10));
    for p in drain_probes(d, clock.now()) {
        match (p == target, outcome) {
            (true, Some(code)) => d.on_probe_result(clock.now(), p, ProbeOutcome::Response(code)),
            (true, None) => {}
            (false, _) => d.on_probe_result(clock.now(), p, ProbeOutcome::Response(200)),
        }
    }
    clock.advance(Duration::from_secs(5));
    d.handle_timeout(clock.now());
}

#[test]
fn probe_thresholds_take_a_destination_down_and_back() {
    let mut clock = FakeClock::start();
    let mut d = Dispatcher::new(clock.now(), sets(&list(2)), DispatcherConfig::default());
    let one = id(&d, 1);
    probe_round(&mut d, &mut clock, one, None);
    assert_eq!(d.state(one), Some(DestState::Trying), "1 failure of 3");
    probe_round(&mut d, &mut clock, one, Some(503));
    assert_eq!(d.state(one), Some(DestState::Trying), "2 failures of 3");
    assert!(d.takes_new_calls(one), "trying still takes calls");
    probe_round(&mut d, &mut clock, one, None);
    assert_eq!(d.state(one), Some(DestState::Inactive), "3 failures");
    assert!(!d.takes_new_calls(one));
    probe_round(&mut d, &mut clock, one, Some(200));
    assert_eq!(d.state(one), Some(DestState::Inactive), "1 success of 2");
    probe_round(&mut d, &mut clock, one, Some(200));
    assert_eq!(d.state(one), Some(DestState::Active), "2 successes");
    assert_eq!(d.stats().probe_failures, 3);
}

#[test]
fn accepted_codes_no_ping_and_disabled() {
    let mut clock = FakeClock::start();
    let health = HealthConfig {
        accepted_codes: CodeSet::of(&[200, 404]),
        probing_threshold: 1,
        ..HealthConfig::default()
    };
    let text = "1 sip:10.0.0.1:5060 0\n1 sip:10.0.0.2:5060 32\n1 sip:10.0.0.3:5060 4\n";
    let mut d = Dispatcher::new(
        clock.now(),
        sets(text),
        DispatcherConfig {
            health,
            ..DispatcherConfig::default()
        },
    );
    clock.advance(Duration::from_secs(10));
    let probed = drain_probes(&mut d, clock.now());
    assert_eq!(probed, [id(&d, 1)], "no-ping and disabled are not probed");
    d.on_probe_result(clock.now(), id(&d, 1), ProbeOutcome::Response(404));
    assert_eq!(d.state(id(&d, 1)), Some(DestState::Active));
    clock.advance(Duration::from_secs(10));
    drain_probes(&mut d, clock.now());
    d.on_probe_result(clock.now(), id(&d, 1), ProbeOutcome::Response(403));
    assert_eq!(d.state(id(&d, 1)), Some(DestState::Inactive), "threshold 1");
    // A reply with no probe in flight is ignored.
    d.on_probe_result(clock.now(), id(&d, 1), ProbeOutcome::Response(200));
    assert_eq!(d.state(id(&d, 1)), Some(DestState::Inactive));
}

#[test]
fn exactly_one_shard_probes_each_destination() {
    let clock = FakeClock::start();
    let mut shards: Vec<Dispatcher> = (0..3)
        .map(|s| {
            let mut d = Dispatcher::new(clock.now(), sets(&list(30)), DispatcherConfig::default());
            d.set_probe_share(s, 3);
            d
        })
        .collect();
    let later = clock.now() + Duration::from_secs(10);
    let mut all: Vec<String> = Vec::new();
    for d in &mut shards {
        for p in drain_probes(d, later) {
            all.push(d.destination(p).unwrap().uri.clone());
        }
    }
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!((before, all.len()), (30, 30));
}

#[test]
fn state_changes_reach_other_shards_as_events() {
    let clock = FakeClock::start();
    let mut a = Dispatcher::new(clock.now(), sets(&list(3)), DispatcherConfig::default());
    let mut b = Dispatcher::new(clock.now(), sets(&list(3)), DispatcherConfig::default());
    a.set_state(id(&a, 2), DestState::Draining);
    a.set_state(id(&a, 3), DestState::Inactive);
    let events: Vec<_> = std::iter::from_fn(|| a.poll_event()).collect();
    assert_eq!(events.len(), 2);
    assert_eq!(
        (events[0].admin, events[0].liveness),
        (AdminState::Draining, Liveness::Active)
    );
    for e in &events {
        assert!(b.apply_state_change(e));
    }
    assert_eq!(b.state(id(&b, 2)), Some(DestState::Draining));
    assert_eq!(b.state(id(&b, 3)), Some(DestState::Inactive));
    assert_eq!(b.poll_event(), None, "applying does not echo");
}

// ----- drain and call load -----

#[test]
fn a_draining_destination_gets_no_new_call_while_its_calls_continue() {
    let clock = FakeClock::start();
    let now = clock.now();
    let mut d = Dispatcher::new(now, sets(&list(3)), DispatcherConfig::default());
    let two = id(&d, 2);
    let mut answered = Vec::new();
    for _ in 0..3 {
        let mut hunt = rr(&mut d, true);
        hunt.next_destination(&mut d, now).unwrap();
        if let HuntVerdict::Answered { dest } = hunt.on_response(&mut d, now, 200) {
            answered.push(dest);
        }
    }
    assert_eq!(d.load(two).unwrap().active, 1);
    d.set_state(two, DestState::Draining);
    for alg in Algorithm::ALL {
        for i in 0..200u64 {
            let c = format!("call-{i}");
            let input = SelectionInput {
                call_id: c.as_bytes(),
                from_uri: c.as_bytes(),
                to_uri: c.as_bytes(),
                ruri: c.as_bytes(),
                auth_user: c.as_bytes(),
                random: i,
            };
            assert!(
                !d.select(1, alg, &input).as_slice().contains(&two),
                "{alg:?}"
            );
        }
    }
    // Its call continues and is counted until it ends: the operator sees it empty.
    let row = d
        .load_snapshot()
        .into_iter()
        .find(|r| r.key.uri.as_ref() == "sip:10.0.0.2:5060")
        .unwrap();
    assert_eq!((row.state, row.load.active), (DestState::Draining, 1));
    d.call_ended(two);
    assert_eq!(d.load(two).unwrap().active, 0);
    // Probes continue under drain; the liveness underneath is kept.
    d.set_state(two, DestState::Active);
    assert!(d.takes_new_calls(two));
}

// ----- reload -----

#[test]
fn reload_keeps_state_and_counters_of_destinations_that_stay() {
    let clock = FakeClock::start();
    let now = clock.now();
    let mut d = Dispatcher::new(now, sets(&list(3)), DispatcherConfig::default());
    let (one, two, three) = (id(&d, 1), id(&d, 2), id(&d, 3));
    let mut hunt = rr(&mut d, true);
    assert_eq!(hunt.next_destination(&mut d, now), Some(one));
    hunt.on_response(&mut d, now, 200);
    let mut pending = rr(&mut d, true);
    assert_eq!(pending.next_destination(&mut d, now), Some(two));
    d.set_state(two, DestState::Inactive);
    // Drop 3, add 4; the URI of 1 changes but its duid stays.
    let text = "1 sip:10.0.1.1:5060 0 0 duid=m1\n1 sip:10.0.0.2:5060 0 0 duid=m2\n1 sip:10.0.0.4:5060 0 0 duid=m4\n";
    d.reload(now, sets(text));
    assert_eq!(
        d.find(&DestKey {
            set: 1,
            uri: Arc::from("sip:10.0.1.1:5060")
        }),
        Some(one),
        "matched by duid"
    );
    assert_eq!(id(&d, 2), two);
    assert_eq!(d.load(one).unwrap().active, 1);
    assert_eq!(d.state(two), Some(DestState::Inactive));
    assert_eq!(d.state(three), None, "removed without calls: forgotten");
    assert!(d.destination(three).is_none() && !d.takes_new_calls(three));
    // The attempt in flight on 2 ends normally after the reload.
    assert_eq!(
        pending.on_response(&mut d, now, 200),
        HuntVerdict::Answered { dest: two }
    );
    assert_eq!(d.load(two).unwrap().active, 1);
}

#[test]
fn a_removed_destination_is_forgotten_when_its_last_call_ends() {
    let clock = FakeClock::start();
    let now = clock.now();
    let mut d = Dispatcher::new(now, sets(&list(2)), DispatcherConfig::default());
    let mut hunt = rr(&mut d, true);
    let one = hunt.next_destination(&mut d, now).unwrap();
    hunt.on_response(&mut d, now, 200);
    d.reload(now, sets("1 sip:10.0.0.2:5060 0 0 duid=m2\n"));
    let removed: Vec<_> = d
        .load_snapshot()
        .into_iter()
        .filter(|r| r.removed)
        .collect();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].load.active, 1);
    d.call_ended(one);
    assert!(d.load_snapshot().iter().all(|r| !r.removed));
    assert_eq!(d.state(one), None);
}

#[test]
fn changed_file_flags_apply_at_reload_unchanged_ones_keep_runtime_state() {
    let clock = FakeClock::start();
    let now = clock.now();
    let mut d = Dispatcher::new(now, sets(&list(2)), DispatcherConfig::default());
    d.set_state(id(&d, 1), DestState::Inactive);
    d.reload(
        now,
        sets("1 sip:10.0.0.1:5060 0 0 duid=m1\n1 sip:10.0.0.2:5060 4 0 duid=m2\n"),
    );
    assert_eq!(d.state(id(&d, 1)), Some(DestState::Inactive));
    assert_eq!(d.state(id(&d, 2)), Some(DestState::Disabled));
}

#[test]
fn a_finished_hunt_releases_nothing_twice() {
    let clock = FakeClock::start();
    let now = clock.now();
    let mut d = Dispatcher::new(now, sets(&list(2)), DispatcherConfig::default());
    let input = SelectionInput::default();
    let mut answered = d.start_hunt(1, Algorithm::Priority, &input, true);
    let one = answered.next_destination(&mut d, now).unwrap();
    let mut ringing = d.start_hunt(1, Algorithm::Priority, &input, true);
    assert_eq!(ringing.next_destination(&mut d, now), Some(one));
    answered.on_response(&mut d, now, 200);
    // A CANCEL racing the 200, and a stray next_destination: no effect.
    answered.on_cancel(&mut d);
    assert_eq!(answered.next_destination(&mut d, now), None);
    let load = d.load(one).unwrap();
    assert_eq!((load.pending, load.active), (1, 1));
}

/// The row of `load_snapshot` for destination `host`.
fn row(d: &Dispatcher, host: usize) -> edge::dispatcher::DestLoad {
    let uri = format!("sip:10.0.0.{host}:5060");
    let rows = d.load_snapshot();
    rows.into_iter().find(|r| *r.key.uri == *uri).unwrap()
}

#[test]
fn failures_and_probe_round_trips_are_counted_per_destination() {
    let mut clock = FakeClock::start();
    let mut d = Dispatcher::new(clock.now(), sets(&list(2)), DispatcherConfig::default());
    let (one, two) = (id(&d, 1), id(&d, 2));
    assert_eq!((row(&d, 1).failures, row(&d, 1).probe_rtt), (0, None));
    // Probes: 1 answers after 40 ms, 2 answers 503 after 15 ms.
    clock.advance(Duration::from_secs(10));
    let probed = drain_probes(&mut d, clock.now());
    assert_eq!(probed.len(), 2);
    clock.advance(Duration::from_millis(15));
    d.on_probe_result(clock.now(), two, ProbeOutcome::Response(503));
    clock.advance(Duration::from_millis(25));
    d.on_probe_result(clock.now(), one, ProbeOutcome::Response(200));
    assert_eq!(row(&d, 1).probe_rtt, Some(Duration::from_millis(40)));
    assert_eq!(row(&d, 2).probe_rtt, Some(Duration::from_millis(15)));
    assert_eq!((row(&d, 1).failures, row(&d, 2).failures), (0, 1));
    // A timed-out probe is a failure and keeps the last round trip.
    clock.advance(Duration::from_secs(10));
    drain_probes(&mut d, clock.now());
    clock.advance(Duration::from_secs(5));
    d.handle_timeout(clock.now());
    assert_eq!(row(&d, 1).failures, 1);
    assert_eq!(row(&d, 1).probe_rtt, Some(Duration::from_millis(40)));
    // A failover counts against the destination that failed.
    let mut hunt = d.start_hunt(1, Algorithm::Priority, &SelectionInput::default(), false);
    assert_eq!(hunt.next_destination(&mut d, clock.now()), Some(one));
    hunt.on_response(&mut d, clock.now(), 503);
    assert_eq!(row(&d, 1).failures, 2);
}

#[test]
fn probing_off_sends_no_probe_and_does_not_spin() {
    let mut clock = FakeClock::start();
    let mut d = Dispatcher::new(clock.now(), sets(&list(3)), DispatcherConfig::default());
    clock.advance(Duration::from_secs(10));
    let in_flight = drain_probes(&mut d, clock.now());
    assert_eq!(in_flight.len(), 3);
    d.set_probing(clock.now(), false);
    assert!(!d.probing());
    // Only the probes in flight can still time out.
    assert_eq!(d.poll_timeout(), Some(clock.now() + Duration::from_secs(5)));
    clock.advance(Duration::from_secs(5));
    d.handle_timeout(clock.now());
    assert_eq!(d.poll_timeout(), None, "nothing to wake up for");
    clock.advance(Duration::from_secs(60));
    assert!(drain_probes(&mut d, clock.now()).is_empty());
    // On again: the next probes spread over one interval from now.
    d.set_probing(clock.now(), true);
    let next = d.poll_timeout().unwrap();
    assert!(next >= clock.now() && next <= clock.now() + Duration::from_secs(10));
    clock.advance(Duration::from_secs(10));
    assert_eq!(drain_probes(&mut d, clock.now()).len(), 3);
}
