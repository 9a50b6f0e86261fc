//! Drives running UAC threads through a plan (a fixed rate, or a ramp),
//! samples their counters about once a second for the timeline and the
//! progress display, and ends with every call drained.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::load::Load;
use crate::ramp::{Next, Ramp, RampConfig};
use crate::report::{latency_table, RunResult, Sample, Totals};
use crate::uac::UacStats;

/// How often the timeline is sampled.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// What to offer.
#[derive(Clone, Debug)]
pub enum Plan {
    /// One rate, for `calls` calls or `duration` (whichever is given; with
    /// both, whichever ends first).
    Fixed {
        /// Calls per second.
        cps: f64,
        /// Calls in all.
        calls: Option<u64>,
        /// How long.
        duration: Option<Duration>,
    },
    /// Step the rate up until a step does not hold.
    Ramp(RampConfig),
}

/// Progress output: a line rewritten in place on a terminal, plain lines
/// otherwise (both on stderr, so stdout keeps only the results).
struct Progress {
    terminal: bool,
}

impl Progress {
    fn show(&self, sample: &Sample) {
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal {
            write!(err, "\r{}", sample.line())
        } else {
            writeln!(err, "{}", sample.line())
        };
        let _ = err.flush();
    }

    fn end(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}

/// The run's accumulated state.
struct Run {
    load: Load,
    started: Instant,
    total: UacStats,
    timeline: Vec<Sample>,
    progress: Progress,
}

impl Run {
    /// Collects one sample of at most `length` at `offered` cps; returns its
    /// counters.
    fn sample(&mut self, length: Duration, offered: f64) -> UacStats {
        let begin = Instant::now();
        let mut stats = UacStats::default();
        let live = self.load.collect(begin + length, &mut stats);
        let t = self.started.elapsed().as_secs_f64();
        let sample = Sample::of(&stats, t, begin.elapsed().as_secs_f64(), offered, live);
        self.progress.show(&sample);
        self.timeline.push(sample);
        self.total.add(&stats);
        stats
    }
}

/// Runs `plan` on `load` (until it ends or `stop` is set), then stops the
/// threads, letting calls end for at most `drain`.
pub fn drive(
    load: Load,
    plan: &Plan,
    target: &str,
    stop: &AtomicBool,
    drain: Duration,
) -> Result<RunResult, String> {
    let mut run = Run {
        load,
        started: Instant::now(),
        total: UacStats::default(),
        timeline: Vec::new(),
        progress: Progress {
            terminal: std::io::stderr().is_terminal(),
        },
    };
    let (cps_limit, steps) = match plan {
        Plan::Fixed {
            cps,
            calls,
            duration,
        } => {
            fixed(&mut run, *cps, *calls, *duration, stop);
            (None, Vec::new())
        }
        Plan::Ramp(config) => {
            let (limit, ramp) = ramp(&mut run, config, stop);
            (Some(limit), ramp.steps().to_vec())
        }
    };
    run.progress.end();
    let mut total = std::mem::take(&mut run.total);
    run.load
        .stop(drain, &mut total)
        .map_err(|e| format!("stopping the UAC threads: {e}"))?;
    Ok(RunResult {
        target: target.to_string(),
        cps_limit,
        steps,
        timeline: run.timeline,
        latency: latency_table(&total),
        totals: Totals::of(&total),
    })
}

fn fixed(
    run: &mut Run,
    cps: f64,
    calls: Option<u64>,
    duration: Option<Duration>,
    stop: &AtomicBool,
) {
    // Without a duration, the calls take calls/cps; allow that once.
    let length = duration
        .unwrap_or_else(|| Duration::from_secs_f64(calls.unwrap_or(0) as f64 / cps.max(1e-3)));
    let end = Instant::now() + length;
    run.load.set_rate(cps, calls);
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        let left = end.saturating_duration_since(Instant::now());
        run.sample(SAMPLE_INTERVAL.min(left).max(Duration::from_millis(1)), cps);
        if calls.is_some_and(|c| run.total.started >= c) {
            break;
        }
    }
}

fn ramp(run: &mut Run, config: &RampConfig, stop: &AtomicBool) -> (f64, Ramp) {
    let mut ramp = Ramp::new(config.clone());
    loop {
        let cps = ramp.current_cps();
        run.load.set_rate(cps, None);
        let begin = Instant::now();
        let end = begin + config.step_duration;
        let mut step = UacStats::default();
        while Instant::now() < end && !stop.load(Ordering::Relaxed) {
            let left = end.saturating_duration_since(Instant::now());
            let s = run.sample(SAMPLE_INTERVAL.min(left).max(Duration::from_millis(1)), cps);
            step.add(&s);
        }
        if stop.load(Ordering::Relaxed) {
            return (
                ramp.steps()
                    .last()
                    .filter(|s| s.held)
                    .map_or(0.0, |s| s.offered_cps),
                ramp,
            );
        }
        match ramp.on_step(&step, begin.elapsed()) {
            Next::Step(_) => {}
            Next::Done { cps_limit } => return (cps_limit, ramp),
        }
    }
}
