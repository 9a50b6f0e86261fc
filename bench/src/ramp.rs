//! The ramp's decisions (sans-IO): which rate to offer next, and whether a
//! step held. A step holds when at most `max_failed_ratio` of its calls
//! failed and the 99th percentile of its setup latency (scheduled start to
//! 200) stayed under `max_p99_setup`. The CPS limit is the highest rate
//! that held.

use std::time::Duration;

use crate::uac::UacStats;

/// Settings of a ramp.
#[derive(Clone, Debug, PartialEq)]
pub struct RampConfig {
    /// The first offered rate, calls per second.
    pub start_cps: f64,
    /// Added at each step.
    pub step_cps: f64,
    /// How long each step offers its rate.
    pub step_duration: Duration,
    /// The ramp ends here even if every step held.
    pub max_cps: f64,
    /// Failed calls over calls ended in a step above which it did not hold
    /// (default 0.001: 0.1 %).
    pub max_failed_ratio: f64,
    /// p99 setup latency above which a step did not hold.
    pub max_p99_setup: Duration,
}

impl Default for RampConfig {
    fn default() -> Self {
        RampConfig {
            start_cps: 500.0,
            step_cps: 500.0,
            step_duration: Duration::from_secs(5),
            max_cps: 100_000.0,
            max_failed_ratio: 0.001,
            max_p99_setup: Duration::from_millis(200),
        }
    }
}

/// How one step went.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StepResult {
    /// Offered rate.
    pub offered_cps: f64,
    /// Calls started per second in the step.
    pub started_cps: f64,
    /// Calls answered (2xx) per second in the step.
    pub answered_cps: f64,
    /// Calls that ended in the step: completed and failed.
    pub ended: u64,
    /// Failed ones.
    pub failed: u64,
    /// Setup latency (scheduled start to 200) percentiles, microseconds.
    pub p50_setup_us: u64,
    /// 99th percentile.
    pub p99_setup_us: u64,
    /// Did it hold?
    pub held: bool,
    /// Why not, when it did not.
    pub reason: Option<String>,
}

/// What to do after a step.
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    /// Offer this rate for the next step.
    Step(f64),
    /// Done: the limit (0 when not even the first step held).
    Done {
        /// The highest rate that held.
        cps_limit: f64,
    },
}

/// The ramp's state.
#[derive(Clone, Debug)]
pub struct Ramp {
    config: RampConfig,
    current: f64,
    best: f64,
    steps: Vec<StepResult>,
}

impl Ramp {
    /// A ramp at its first rate.
    pub fn new(config: RampConfig) -> Self {
        let current = config.start_cps.max(1.0);
        Ramp {
            config,
            current,
            best: 0.0,
            steps: Vec::new(),
        }
    }

    /// The rate to offer now.
    pub fn current_cps(&self) -> f64 {
        self.current
    }

    /// The steps so far.
    pub fn steps(&self) -> &[StepResult] {
        &self.steps
    }

    /// Judges the step just run from its counters (`stats` cover exactly its
    /// duration) and says what comes next.
    pub fn on_step(&mut self, stats: &UacStats, elapsed: Duration) -> Next {
        let step = judge(&self.config, self.current, stats, elapsed);
        let held = step.held;
        self.steps.push(step);
        if !held {
            return Next::Done {
                cps_limit: self.best,
            };
        }
        self.best = self.current;
        let next = self.current + self.config.step_cps.max(1.0);
        if next > self.config.max_cps {
            return Next::Done {
                cps_limit: self.best,
            };
        }
        self.current = next;
        Next::Step(next)
    }
}

fn judge(config: &RampConfig, offered: f64, stats: &UacStats, elapsed: Duration) -> StepResult {
    let seconds = elapsed.as_secs_f64().max(1e-3);
    let ended = stats.completed + stats.failed;
    let failed = stats.failed + stats.refused + stats.late;
    let p99 = stats.invite_to_200.quantile_us(0.99);
    let max_p99 = u64::try_from(config.max_p99_setup.as_micros()).unwrap_or(u64::MAX);
    let ratio = failed as f64 / (ended + stats.refused + stats.late).max(1) as f64;
    let reason = if ratio > config.max_failed_ratio {
        Some(format!(
            "{failed} of {} calls failed ({:.2} %)",
            ended + stats.refused + stats.late,
            ratio * 100.0
        ))
    } else if p99 > max_p99 {
        Some(format!("p99 setup {:.1} ms", p99 as f64 / 1000.0))
    } else if stats.answered == 0 && stats.started > 0 {
        Some("no call was answered".to_string())
    } else {
        None
    };
    StepResult {
        offered_cps: offered,
        started_cps: stats.started as f64 / seconds,
        answered_cps: stats.answered as f64 / seconds,
        ended,
        failed,
        p50_setup_us: stats.invite_to_200.quantile_us(0.5),
        p99_setup_us: p99,
        held: reason.is_none(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(answered: u64, failed: u64, setup_ms: u64) -> UacStats {
        let mut s = UacStats {
            started: answered + failed,
            answered,
            completed: answered,
            failed,
            ..UacStats::default()
        };
        for _ in 0..answered {
            s.invite_to_200.record(Duration::from_millis(setup_ms));
        }
        s
    }

    fn ramp() -> Ramp {
        Ramp::new(RampConfig {
            start_cps: 100.0,
            step_cps: 100.0,
            step_duration: Duration::from_secs(1),
            max_cps: 1_000.0,
            ..RampConfig::default()
        })
    }

    #[test]
    fn steps_up_while_steps_hold_and_reports_the_last_that_held() {
        let mut r = ramp();
        let second = Duration::from_secs(1);
        assert_eq!(r.on_step(&stats(100, 0, 5), second), Next::Step(200.0));
        assert_eq!(r.on_step(&stats(200, 0, 5), second), Next::Step(300.0));
        // 1 failure in 300 is over 0.1 %.
        let next = r.on_step(&stats(299, 1, 5), second);
        assert_eq!(next, Next::Done { cps_limit: 200.0 });
        let last = r.steps().last().unwrap();
        assert!(!last.held && last.reason.as_deref().unwrap().contains("failed"));
        assert_eq!(r.steps()[0].answered_cps, 100.0);
    }

    #[test]
    fn slow_setup_ends_the_ramp_and_a_first_failure_gives_zero() {
        let mut r = ramp();
        assert_eq!(
            r.on_step(&stats(100, 0, 500), Duration::from_secs(1)),
            Next::Done { cps_limit: 0.0 }
        );
        assert!(r.steps()[0].reason.as_deref().unwrap().starts_with("p99"));
    }

    #[test]
    fn late_and_refused_calls_count_as_failed_and_the_top_ends_it() {
        let mut r = ramp();
        let mut s = stats(100, 0, 5);
        s.late = 1;
        assert_eq!(
            r.on_step(&s, Duration::from_secs(1)),
            Next::Done { cps_limit: 0.0 }
        );
        let mut r = Ramp::new(RampConfig {
            start_cps: 900.0,
            step_cps: 200.0,
            max_cps: 1_000.0,
            ..RampConfig::default()
        });
        let next = r.on_step(&stats(900, 0, 5), Duration::from_secs(1));
        assert_eq!(next, Next::Done { cps_limit: 900.0 });
    }
}
