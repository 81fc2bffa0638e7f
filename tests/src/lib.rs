#![forbid(unsafe_code)]
//! Helpers for Rampart's integration tests: finding the built binaries, running them, deciding
//! whether privileged tests may run, and naming DPDK file prefixes so tests run side by side.
//! [`topo`] builds the namespaces of router-mode tests.

pub mod gen;
pub mod natgen;
pub mod netfilter;
pub mod topo;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// Path of a binary built by `cargo build --workspace --bins` in the same profile as this test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        p.display()
    );
    p
}

/// True when running as root (reads /proc, no libc call).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// True when under CI, where no test may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| !v.is_empty() && v != "false" && v != "0")
        .unwrap_or(false)
}

/// Returns true when a test needing root may run. Off root it prints that the test is skipped,
/// except under CI, where a skip is a failure.
pub fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(!in_ci(), "{test}: needs root, and CI must not skip it");
    eprintln!(
        "SKIPPED {test}: needs root (DPDK devices / network namespaces); run as root to include it"
    );
    false
}

/// A name unique to this process and call, for DPDK `--file-prefix`, namespaces and interfaces.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}{}x{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a command and returns its output; panics with both streams when it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    out
}

/// Runs a command that must succeed; panics with its output otherwise.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// EAL arguments for a test: no hugepages, no PCI, private runtime files, quiet logs, and the
/// given lcore map.
pub fn test_eal_args(prefix: &str, lcores: &str) -> Vec<String> {
    [
        "--no-huge",
        "-m",
        "512",
        "--no-pci",
        "--no-shconf",
        "--file-prefix",
        prefix,
        "--log-level",
        "*:warning",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(std::iter::once(format!("--lcores={lcores}")))
    .collect()
}

/// Renders EAL arguments as a TOML array.
pub fn toml_array(args: &[String]) -> String {
    format!(
        "[{}]",
        args.iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The public corpus beside the project, if present.
pub fn corpus_dir() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("RAMPART_CORPUS") {
        return Some(PathBuf::from(p)).filter(|p| p.is_dir());
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = here.join("../../shared/corpus");
    p.is_dir().then_some(p)
}

/// The frames of many flows' scripts as they would meet on a wire: scripts enter a window of
/// `window` flows in order, and each frame is taken from a flow of the window drawn by `rng`,
/// so a flow's frames stay in order and fall close together.
pub fn interleave<T>(
    mut scripts: Vec<std::collections::VecDeque<T>>,
    window: usize,
    rng: &mut dataplane::classify::classbench::SplitMix64,
) -> Vec<T> {
    let mut frames = Vec::new();
    let mut active: Vec<usize> = Vec::new();
    let mut next = 0;
    while next < scripts.len() || !active.is_empty() {
        while active.len() < window && next < scripts.len() {
            active.push(next);
            next += 1;
        }
        let k = rng.below(active.len() as u64) as usize;
        match scripts[active[k]].pop_front() {
            Some(f) => frames.push(f),
            None => {
                active.swap_remove(k);
            }
        }
    }
    frames
}

/// The seeds a generated test runs: environment variable `var` as `first..last` (inclusive,
/// `..=` taken too) or one seed, else `default`. A value that does not parse panics with the
/// variable's name.
pub fn seeds_from_env(
    var: &str,
    default: std::ops::RangeInclusive<u64>,
) -> std::ops::RangeInclusive<u64> {
    let Ok(v) = std::env::var(var) else {
        return default;
    };
    let parse = |s: &str| {
        s.trim()
            .parse::<u64>()
            .unwrap_or_else(|e| panic!("{var} {v:?}: {e}"))
    };
    match v.split_once("..") {
        Some((a, b)) => parse(a)..=parse(b.trim_start_matches('=')),
        None => parse(&v)..=parse(&v),
    }
}
