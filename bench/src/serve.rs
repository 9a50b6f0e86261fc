//! The answering side at run time: UAS threads on one SO_REUSEPORT address,
//! each pinned, with its own ring and its own calls (the kernel spreads
//! flows over the threads; a flow's datagrams always reach the same one).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::shell::{bind_udp, pin, Worker};
use crate::uas::{Uas, UasConfig, UasStats};

/// How often a thread sends its counters.
const REPORT_INTERVAL: Duration = Duration::from_millis(500);

/// Runs `threads` UAS threads on `listen` (pinned from `first_core` on, if
/// given) until `stop` is set; every thread sends its counters to `reports`
/// about twice a second. Returns once every thread ended. Binding errors
/// come back before any thread starts.
pub fn serve(
    listen: SocketAddr,
    threads: usize,
    first_core: Option<usize>,
    config: &UasConfig,
    stop: &Arc<AtomicBool>,
    reports: &Sender<UasStats>,
) -> io::Result<()> {
    let threads = threads.max(1);
    let mut handles = Vec::with_capacity(threads);
    for index in 0..threads {
        let mut config = config.clone();
        config.seed ^= index as u64;
        let socket = bind_udp(listen, threads > 1)?;
        let (stop, reports) = (stop.clone(), reports.clone());
        let (ready_tx, ready) = crossbeam_channel::bounded(1);
        // The ring is not Send: each thread builds its own.
        let handle = std::thread::Builder::new()
            .name(format!("uas-{index}"))
            .spawn(move || {
                if let Some(first) = first_core {
                    pin(first + index);
                }
                let worker = match Worker::new(Uas::new(config), vec![socket]) {
                    Ok(w) => w,
                    Err(e) => {
                        let _ = ready_tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                        return Err(e);
                    }
                };
                let _ = ready_tx.send(Ok(()));
                run_thread(worker, &stop, &reports)
            })?;
        ready
            .recv()
            .map_err(|_| io::Error::other("a UAS thread died at start"))??;
        handles.push(handle);
    }
    let mut result = Ok(());
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(_) => result = Err(io::Error::other("a UAS thread panicked")),
        }
    }
    result
}

fn run_thread(
    mut worker: Worker<Uas>,
    stop: &AtomicBool,
    reports: &Sender<UasStats>,
) -> io::Result<()> {
    let mut next_report = Instant::now() + REPORT_INTERVAL;
    while !stop.load(Ordering::Relaxed) {
        worker.turn(None)?;
        let now = Instant::now();
        if now >= next_report {
            next_report = now + REPORT_INTERVAL;
            let _ = reports.try_send(worker.core.take_stats());
        }
    }
    let _ = reports.try_send(worker.core.take_stats());
    Ok(())
}
