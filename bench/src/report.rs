//! What a run reports: a timeline of one-second samples, the ramp's steps,
//! the latency table, a JSON result file and an SVG report with two plots
//! (achieved against offered calls per second over time; setup latency
//! percentiles against the offered rate).

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use crate::ramp::StepResult;
use crate::uac::UacStats;

/// One sample of the timeline (about a second).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sample {
    /// Seconds since the load began.
    pub t_s: f64,
    /// The rate offered then.
    pub offered_cps: f64,
    /// Calls started per second in the sample.
    pub started_cps: f64,
    /// Calls answered per second in the sample.
    pub answered_cps: f64,
    /// Calls live at its end.
    pub live: usize,
    /// Calls failed in the sample.
    pub failed: u64,
    /// Setup latency percentiles in the sample, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
}

impl Sample {
    /// The sample of `stats` gathered over `seconds`, ending `t_s` after the
    /// start, at `offered_cps`, with `live` calls.
    pub fn of(stats: &UacStats, t_s: f64, seconds: f64, offered_cps: f64, live: usize) -> Sample {
        let seconds = seconds.max(1e-3);
        Sample {
            t_s,
            offered_cps,
            started_cps: stats.started as f64 / seconds,
            answered_cps: stats.answered as f64 / seconds,
            live,
            failed: stats.failed + stats.refused + stats.late,
            p50_ms: stats.invite_to_200.quantile_us(0.5) as f64 / 1000.0,
            p99_ms: stats.invite_to_200.quantile_us(0.99) as f64 / 1000.0,
        }
    }

    /// The one-line progress display.
    pub fn line(&self) -> String {
        format!(
            "{:>6.1}s offered {:>8.0} cps  achieved {:>8.0} cps  live {:>6}  failed {:>5}  p50 {:>7.2} ms  p99 {:>7.2} ms",
            self.t_s,
            self.offered_cps,
            self.answered_cps,
            self.live,
            self.failed,
            self.p50_ms,
            self.p99_ms
        )
    }
}

/// Latency percentiles of one measure, milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Percentiles {
    /// The measure.
    pub name: &'static str,
    /// Values.
    pub count: u64,
    /// Percentiles.
    pub p50_ms: f64,
    /// 90th.
    pub p90_ms: f64,
    /// 99th.
    pub p99_ms: f64,
    /// 99.9th.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// The three latency measures of `stats`.
pub fn latency_table(stats: &UacStats) -> Vec<Percentiles> {
    [
        ("INVITE->180", &stats.invite_to_180),
        ("INVITE->200", &stats.invite_to_200),
        ("BYE->200", &stats.bye_to_200),
    ]
    .into_iter()
    .map(|(name, h)| {
        let ms = |q: f64| h.quantile_us(q) as f64 / 1000.0;
        Percentiles {
            name,
            count: h.count(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: ms(1.0),
        }
    })
    .collect()
}

/// The latency table as text.
pub fn format_latency(rows: &[Percentiles]) -> String {
    let mut out =
        String::from("latency        count      p50 ms    p90 ms    p99 ms  p99.9 ms    max ms\n");
    for r in rows {
        let _ = writeln!(
            out,
            "{:<12} {:>7} {:>11.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            r.name, r.count, r.p50_ms, r.p90_ms, r.p99_ms, r.p999_ms, r.max_ms
        );
    }
    out
}

/// Totals of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Totals {
    /// Calls started.
    pub started: u64,
    /// Answered 2xx.
    pub answered: u64,
    /// Completed (BYE answered).
    pub completed: u64,
    /// Failed, by kind.
    pub failed: u64,
    /// No final response (Timer B/F).
    pub failed_timeout: u64,
    /// A non-2xx final to the INVITE.
    pub failed_code: u64,
    /// A non-2xx final to the BYE.
    pub failed_bye: u64,
    /// Refused at the live-call limit.
    pub refused: u64,
    /// Not answered within the late bound.
    pub late: u64,
    /// Retransmissions sent.
    pub retransmissions: u64,
    /// Datagrams that matched no call.
    pub unexpected: u64,
}

impl Totals {
    /// The totals of `s`.
    pub fn of(s: &UacStats) -> Totals {
        Totals {
            started: s.started,
            answered: s.answered,
            completed: s.completed,
            failed: s.failed,
            failed_timeout: s.failed_timeout,
            failed_code: s.failed_code,
            failed_bye: s.failed_bye,
            refused: s.refused,
            late: s.late,
            retransmissions: s.retransmissions,
            unexpected: s.unexpected,
        }
    }
}

/// Everything a run reports, as written to the JSON result file.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    /// What was measured (the target address and how it was set up).
    pub target: String,
    /// The ramp's verdict, when it was a ramp.
    pub cps_limit: Option<f64>,
    /// The ramp's steps.
    pub steps: Vec<StepResult>,
    /// The timeline.
    pub timeline: Vec<Sample>,
    /// Latency over the whole run.
    pub latency: Vec<Percentiles>,
    /// Counters over the whole run.
    pub totals: Totals,
}

impl RunResult {
    /// Writes the JSON result file.
    pub fn write_json(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Writes the SVG report.
    pub fn write_svg(&self, path: &Path) -> Result<(), String> {
        plot(self, path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

type PlotResult = Result<(), Box<dyn std::error::Error>>;

fn plot(result: &RunResult, path: &Path) -> PlotResult {
    let root = SVGBackend::new(path, (960, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(400);
    plot_rates(result, &upper)?;
    plot_latency(result, &lower)?;
    root.present()?;
    Ok(())
}

fn plot_rates<DB: DrawingBackend>(
    result: &RunResult,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> PlotResult
where
    DB::ErrorType: 'static,
{
    let t_max = result.timeline.last().map_or(1.0, |s| s.t_s).max(1.0);
    let y_max = result
        .timeline
        .iter()
        .map(|s| s.offered_cps.max(s.answered_cps))
        .fold(1.0, f64::max)
        * 1.1;
    let title = format!("{}: offered and achieved calls per second", result.target);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..t_max, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("calls/s")
        .draw()?;
    let series = [
        (
            "offered",
            BLUE,
            (|s: &Sample| s.offered_cps) as fn(&Sample) -> f64,
        ),
        ("achieved (answered)", RED, |s: &Sample| s.answered_cps),
    ];
    for (label, color, value) in series {
        let points = result.timeline.iter().map(|s| (s.t_s, value(s)));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    Ok(())
}

fn plot_latency<DB: DrawingBackend>(
    result: &RunResult,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> PlotResult
where
    DB::ErrorType: 'static,
{
    // A ramp plots per step; a fixed-rate run per sample.
    let points: Vec<(f64, f64, f64)> = if result.steps.is_empty() {
        result
            .timeline
            .iter()
            .map(|s| (s.offered_cps, s.p50_ms, s.p99_ms))
            .collect()
    } else {
        let ms = |us: u64| us as f64 / 1000.0;
        result
            .steps
            .iter()
            .map(|s| (s.offered_cps, ms(s.p50_setup_us), ms(s.p99_setup_us)))
            .collect()
    };
    let x_max = points.iter().map(|p| p.0).fold(1.0, f64::max) * 1.05;
    let y_max = points.iter().map(|p| p.2).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "setup latency (scheduled INVITE to 200) by offered rate",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc("offered calls/s")
        .y_desc("ms")
        .draw()?;
    for (label, color, pick) in [
        (
            "p50",
            GREEN,
            (|p: &(f64, f64, f64)| p.1) as fn(&(f64, f64, f64)) -> f64,
        ),
        ("p99", MAGENTA, |p: &(f64, f64, f64)| p.2),
    ] {
        let line = points.iter().map(|p| (p.0, pick(p)));
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(
            points
                .iter()
                .map(|p| Circle::new((p.0, pick(p)), 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    Ok(())
}
