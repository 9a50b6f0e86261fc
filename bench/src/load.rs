//! The calling side at run time: UAC threads, each pinned to a core with its
//! own sockets (source ports) and ring, placing calls on an open-loop
//! schedule, and the controller that sets their rate and sums their counters.
//!
//! Open loop: a thread's calls are due at fixed intervals from the moment
//! the rate was set, whatever the answers; a call started late is measured
//! from when it was due, so a slow proxy shows as latency, not as a lower
//! offered rate (no coordinated omission).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::shell::{bind_udp, pin, Worker};
use crate::uac::{Uac, UacConfig, UacStats};

/// How often a thread sends its counters.
pub const REPORT_INTERVAL: Duration = Duration::from_millis(250);
/// Most calls a thread starts in one round, so a thread far behind its
/// schedule still reads its sockets.
const MAX_STARTS_PER_ROUND: usize = 256;

/// Where and how the UAC threads run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Protocol settings (the call-ID prefix gets the thread index added).
    pub uac: UacConfig,
    /// Threads (each pinned to a core, in order from `first_core`).
    pub threads: usize,
    /// The first core to pin to.
    pub first_core: usize,
    /// Source sockets per thread (ports chosen by the kernel).
    pub sockets_per_thread: usize,
    /// The local address to bind.
    pub local_ip: IpAddr,
    /// A fixed source port: one thread with one socket (a carrier trunk).
    pub single_port: Option<u16>,
}

/// An order to a thread.
#[derive(Clone, Copy, Debug)]
enum Control {
    /// From `at`, start calls at `cps` (this thread's share), at most
    /// `budget` more (None: no limit).
    Rate {
        cps: f64,
        at: Instant,
        budget: Option<u64>,
    },
    /// Start no more calls; exit once every call ended or at `deadline`.
    Stop { deadline: Instant },
}

/// A thread's counters since its last report.
#[derive(Debug)]
pub struct Report {
    /// The thread.
    pub thread: usize,
    /// Counters since the thread's previous report.
    pub stats: UacStats,
    /// Calls live on the thread.
    pub live: usize,
    /// Transmits the shell dropped since the previous report.
    pub send_drops: u64,
}

/// Running UAC threads.
pub struct Load {
    controls: Vec<Sender<Control>>,
    reports: Receiver<Report>,
    handles: Vec<JoinHandle<io::Result<()>>>,
    live: Vec<usize>,
}

impl Load {
    /// Binds every thread's sockets and starts the threads (idle until a
    /// rate is set). An error names what could not be set up.
    pub fn start(config: &LoadConfig) -> io::Result<Load> {
        let threads = if config.single_port.is_some() {
            1
        } else {
            config.threads.max(1)
        };
        let (report_tx, reports) = crossbeam_channel::bounded(threads * 64);
        let mut controls = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for index in 0..threads {
            let sockets = bind_sockets(config)?;
            let mut uac = config.uac.clone();
            uac.call_id_prefix = format!("{}-{index}", uac.call_id_prefix);
            let (tx, rx) = crossbeam_channel::bounded(16);
            controls.push(tx);
            let reports = report_tx.clone();
            let core = config.first_core + index;
            let (ready_tx, ready) = crossbeam_channel::bounded(1);
            // The ring is not Send: each thread builds its own.
            let handle = std::thread::Builder::new()
                .name(format!("uac-{index}"))
                .spawn(move || {
                    pin(core);
                    let worker = match Worker::new(Uac::new(uac), sockets) {
                        Ok(w) => w,
                        Err(e) => {
                            let _ = ready_tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                            return Err(e);
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    run_thread(index, worker, &rx, &reports)
                })?;
            ready
                .recv()
                .map_err(|_| io::Error::other("a UAC thread died at start"))??;
            handles.push(handle);
        }
        Ok(Load {
            controls,
            reports,
            handles,
            live: vec![0; threads],
        })
    }

    /// Threads running.
    pub fn threads(&self) -> usize {
        self.controls.len()
    }

    /// From now, `cps` calls per second over all threads; with `calls`, that
    /// many in all and no more.
    pub fn set_rate(&self, cps: f64, calls: Option<u64>) {
        let n = self.controls.len() as u64;
        let at = Instant::now();
        for (i, tx) in self.controls.iter().enumerate() {
            let budget = calls.map(|c| c / n + u64::from((i as u64) < c % n));
            let _ = tx.send(Control::Rate {
                cps: cps / n as f64,
                at,
                budget,
            });
        }
    }

    /// Sums the reports that arrive until `until` into `into`; returns the
    /// calls live over all threads at the last reports.
    pub fn collect(&mut self, until: Instant, into: &mut UacStats) -> usize {
        while let Ok(report) = self.reports.recv_deadline(until) {
            self.absorb(report, into);
            if Instant::now() >= until {
                break;
            }
        }
        self.live.iter().sum()
    }

    fn absorb(&mut self, report: Report, into: &mut UacStats) {
        into.add(&report.stats);
        if let Some(live) = self.live.get_mut(report.thread) {
            *live = report.live;
        }
        if report.send_drops > 0 {
            tracing::warn!(
                thread = report.thread,
                drops = report.send_drops,
                "send queue full: datagrams dropped"
            );
        }
    }

    /// Stops starting calls, waits until every call ended (at most `drain`),
    /// and adds the last counters to `into`.
    pub fn stop(mut self, drain: Duration, into: &mut UacStats) -> io::Result<()> {
        let deadline = Instant::now() + drain;
        for tx in &self.controls {
            let _ = tx.send(Control::Stop { deadline });
        }
        let handles = std::mem::take(&mut self.handles);
        let mut result = Ok(());
        for handle in handles {
            while !handle.is_finished() {
                self.collect(Instant::now() + REPORT_INTERVAL, into);
            }
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(io::Error::other("a UAC thread panicked")),
            }
        }
        while let Ok(report) = self.reports.try_recv() {
            self.absorb(report, into);
        }
        result
    }
}

fn bind_sockets(config: &LoadConfig) -> io::Result<Vec<std::net::UdpSocket>> {
    if let Some(port) = config.single_port {
        return Ok(vec![bind_udp(
            SocketAddr::new(config.local_ip, port),
            false,
        )?]);
    }
    (0..config.sockets_per_thread.max(1))
        .map(|_| bind_udp(SocketAddr::new(config.local_ip, 0), false))
        .collect()
}

/// A thread's schedule: when its next call is due, and how many it may
/// still start.
#[derive(Debug)]
struct Schedule {
    interval: Option<Duration>,
    next: Instant,
    budget: Option<u64>,
    stopping: Option<Instant>,
    /// Calls started (spreads them over the thread's source sockets).
    started: usize,
}

impl Schedule {
    fn apply(&mut self, control: Control) {
        match control {
            Control::Rate { cps, at, budget } => {
                self.interval = (cps > 0.0).then(|| Duration::from_secs_f64(1.0 / cps));
                self.next = at;
                self.budget = budget;
            }
            Control::Stop { deadline } => self.stopping = Some(deadline),
        }
    }

    /// The due time of the next call, if one is to be started.
    fn due(&self) -> Option<Instant> {
        let open = self.stopping.is_none() && self.budget != Some(0);
        self.interval.filter(|_| open).map(|_| self.next)
    }

    fn started_one(&mut self) {
        self.started += 1;
        if let Some(i) = self.interval {
            self.next += i;
        }
        if let Some(b) = self.budget.as_mut() {
            *b = b.saturating_sub(1);
        }
    }
}

fn run_thread(
    index: usize,
    mut worker: Worker<Uac>,
    controls: &Receiver<Control>,
    reports: &Sender<Report>,
) -> io::Result<()> {
    let mut schedule = Schedule {
        interval: None,
        next: Instant::now(),
        budget: None,
        stopping: None,
        started: 0,
    };
    let mut next_report = Instant::now() + REPORT_INTERVAL;
    let mut drops_reported = 0;
    loop {
        while let Ok(c) = controls.try_recv() {
            schedule.apply(c);
        }
        start_due_calls(&mut worker, &mut schedule);
        worker.turn(schedule.due())?;
        let now = Instant::now();
        let done = schedule
            .stopping
            .is_some_and(|d| worker.core.live_calls() == 0 || now >= d);
        if now >= next_report || done {
            next_report = now + REPORT_INTERVAL;
            let report = Report {
                thread: index,
                stats: worker.core.take_stats(),
                live: worker.core.live_calls(),
                send_drops: worker.send_drops - drops_reported,
            };
            drops_reported = worker.send_drops;
            let _ = reports.send_timeout(report, Duration::from_secs(1));
        }
        if done {
            return Ok(());
        }
    }
}

fn start_due_calls(worker: &mut Worker<Uac>, schedule: &mut Schedule) {
    let now = Instant::now();
    for _ in 0..MAX_STARTS_PER_ROUND {
        let Some(due) = schedule.due().filter(|d| *d <= now) else {
            return;
        };
        let locals = worker.locals();
        let local = locals[schedule.started % locals.len()];
        worker.core.start_call(due, now, local);
        schedule.started_one();
    }
}
