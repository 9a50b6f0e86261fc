//! Checks made before any shard starts, so that a host that cannot run the data
//! plane fails at once with the fix named, not with an errno from a worker.

use std::io;

use super::RuntimeError;

/// Locked memory a shard's ring needs (rings, the provided-buffer ring),
/// rounded up; it counts against RLIMIT_MEMLOCK on kernels that account
/// io_uring memory that way, unless the process has CAP_IPC_LOCK.
pub(super) const IO_MEMORY_BYTES: usize = 256 << 10;

/// CAP_IPC_LOCK's bit in the capability sets of /proc/self/status.
const CAP_IPC_LOCK_BIT: u32 = 14;

/// Fails with the fix when io_uring cannot be set up here.
pub(super) fn io_uring_available() -> Result<(), RuntimeError> {
    match io_uring::IoUring::new(4) {
        Ok(_) => Ok(()),
        Err(e) => Err(RuntimeError::Setup(io_uring_advice(&e))),
    }
}

fn io_uring_advice(e: &io::Error) -> String {
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    match e.raw_os_error() {
        Some(1) if sysctl != "0" && !sysctl.is_empty() => format!(
            "io_uring is disabled on this host (kernel.io_uring_disabled = {sysctl}): \
             run `sysctl -w kernel.io_uring_disabled=0`"
        ),
        Some(1) | Some(38) => format!(
            "io_uring_setup was refused ({e}): a seccomp profile blocks it (in Docker, \
             run with a profile that allows io_uring_setup, io_uring_enter and \
             io_uring_register) or the kernel is older than 5.8"
        ),
        Some(12) => format!(
            "io_uring_setup ran out of locked memory ({e}): raise the memlock limit \
             (`ulimit -l`, LimitMEMLOCK= in systemd, --ulimit memlock= in Docker)"
        ),
        _ => format!("io_uring is not usable here: {e}"),
    }
}

/// Fails when `shards` shards cannot lock the io_uring memory they register.
pub(super) fn memlock(shards: usize) -> Result<(), RuntimeError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if has_ipc_lock(&status) {
        return Ok(());
    }
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let need_bytes = (shards * IO_MEMORY_BYTES) as u64;
    match memlock_soft_bytes(&limits) {
        Some(have_bytes) if have_bytes < need_bytes => Err(RuntimeError::Setup(format!(
            "the memlock limit is {} KiB but {shards} shards need {} KiB: raise it \
             (`ulimit -l {}`, LimitMEMLOCK= in systemd, --ulimit memlock= in Docker) \
             or run fewer cores",
            have_bytes / 1024,
            need_bytes / 1024,
            need_bytes / 1024 * 2,
        ))),
        _ => Ok(()),
    }
}

/// Is CAP_IPC_LOCK in the effective set (`CapEff:` of /proc/self/status)?
fn has_ipc_lock(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK_BIT) != 0)
}

/// The soft "Max locked memory" of /proc/self/limits; `None` when unlimited.
fn memlock_soft_bytes(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))?;
    let soft = line["Max locked memory".len()..]
        .split_whitespace()
        .next()?;
    soft.parse().ok()
}

/// The cores to run shards on: the configured list, or every core this process
/// may run on. Each must be usable.
pub(super) fn cores(configured: &[usize]) -> Result<Vec<usize>, RuntimeError> {
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    if configured.is_empty() {
        return Ok((0..online).collect());
    }
    if let Some(bad) = configured.iter().find(|&&c| c >= online) {
        return Err(RuntimeError::Setup(format!(
            "runtime.cores lists core {bad}, but this host has cores 0..{} only",
            online - 1
        )));
    }
    let mut cores = configured.to_vec();
    cores.sort_unstable();
    cores.dedup();
    Ok(cores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_capabilities_and_limits() {
        assert!(has_ipc_lock("Name:\tx\nCapEff:\t000001ffffffffff\n"));
        assert!(!has_ipc_lock("CapEff:\t0000000000000000\n"));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max locked memory         8388608              8388608              bytes\n";
        assert_eq!(memlock_soft_bytes(limits), Some(8_388_608));
        let unlimited =
            "Max locked memory         unlimited            unlimited            bytes\n";
        assert_eq!(memlock_soft_bytes(unlimited), None);
    }

    #[test]
    fn rejects_cores_the_host_lacks() {
        assert!(cores(&[usize::MAX]).is_err());
        assert_eq!(cores(&[0, 0]).unwrap(), vec![0]);
        assert!(!cores(&[]).unwrap().is_empty());
    }

    #[test]
    fn advice_names_the_fix() {
        let seccomp = io_uring_advice(&io::Error::from_raw_os_error(38));
        assert!(seccomp.contains("seccomp"), "{seccomp}");
        let nomem = io_uring_advice(&io::Error::from_raw_os_error(12));
        assert!(nomem.contains("ulimit -l"), "{nomem}");
    }
}
