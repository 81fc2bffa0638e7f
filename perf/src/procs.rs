//! The processes the benchmarks start: Rampart and the load generator, each a DPDK process
//! over virtual devices.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// EAL arguments for a DPDK process on virtual devices only: no huge pages (512 MiB of
/// ordinary memory), no PCI scan, no shared configuration, its own file prefix, on `lcores`.
pub fn vdev_eal(prefix: &str, lcores: &str) -> Vec<String> {
    [
        "--no-huge",
        "-m",
        "512",
        "--no-pci",
        "--no-shconf",
        "--log-level",
        "*:warning",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "--file-prefix".into(),
        prefix.into(),
        format!("--lcores={lcores}"),
    ])
    .collect()
}

/// Stops `child` with SIGTERM, as an operator would, and waits up to 20 s for it to exit;
/// kills it after that. Returns whether it exited by itself (before or on SIGTERM).
pub fn stop(child: &mut Child) -> bool {
    if let Ok(Some(_)) = child.try_wait() {
        return true;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// The `rampart` binary a benchmark runs: `given`, or the one beside this program.
pub fn rampart_binary(given: Option<&Path>) -> Result<PathBuf> {
    let rampart = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .context("locating rampart-perf")?
            .with_file_name("rampart"),
    };
    if !rampart.exists() {
        bail!(
            "{} not found: build it first (cargo build --release --bins)",
            rampart.display()
        );
    }
    Ok(rampart)
}
