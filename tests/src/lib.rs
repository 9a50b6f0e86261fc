//! Helpers for end-to-end tests: find (or build) the project's binaries so a test
//! runs them as an operator would, and start real peers on loopback — SIPp
//! ([`sipp`]) and Kamailio ([`kamailio`]) — on free ports ([`ports`]), owning
//! their processes ([`process`]); run the edge proxy itself the same way
//! ([`edge`]), and the RTP relay `media` with an ng client ([`media_relay`]).

pub mod edge;
pub mod kamailio;
pub mod media_relay;
pub mod ports;
pub mod process;
pub mod rpc;
pub mod sipp;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Path to the workspace's `edge` binary, built in the profile of the running
/// test if it is not there yet.
pub fn edge_binary() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| workspace_binary("edge", "edge"))
        .clone()
}

/// Path to the workspace's `bench` binary (the load generator), built in
/// the profile of the running test if it is not there yet.
pub fn bench_binary() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| workspace_binary("bench", "bench"))
        .clone()
}

/// Path to the workspace's `media` binary (the RTP relay), built in the
/// profile of the running test if it is not there yet.
pub fn media_binary() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| workspace_binary("media", "media"))
        .clone()
}

/// Builds `bin` of `package` with the running test's profile and returns its path.
fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    // The test executable lives in target/<profile>/deps/; binaries in target/<profile>/.
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable is under target/<profile>/deps");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "-p", package, "--bin", bin]);
    if release {
        build.arg("--release");
    }
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "building {package}/{bin} failed");
    profile_dir.join(bin)
}

/// The workspace root (the parent of this crate's folder).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}
