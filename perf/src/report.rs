//! What every benchmark report carries: the machine, the commit, and a marked section of
//! `BENCHMARKS.md` replaced in place.

use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;

/// CPU model, SIMD flags, cores, DPDK version and the memory set-up.
pub fn machine(memory: &str) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    };
    let flags = field("flags");
    const SIMD: [&str; 7] = [
        "sse4_2", "avx", "avx2", "avx512f", "avx512bw", "avx512vl", "gfni",
    ];
    let simd: Vec<&str> = flags
        .split_whitespace()
        .filter(|f| SIMD.contains(f))
        .collect();
    let virt = if flags.split_whitespace().any(|f| f == "hypervisor") {
        ", virtual machine"
    } else {
        ""
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{}{virt}; SIMD: {}; {cores} core(s); DPDK {}; {memory}",
        field("model name"),
        simd.join(" "),
        dataplane::DPDK_VERSION
    )
}

/// Median, minimum and maximum of a set of measurements.
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// The [`Spread`] of the finite values (all NaN when there are none); the median of an even
/// count is the mean of the middle two.
pub fn spread(values: &[f64]) -> Spread {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return Spread {
            median: f64::NAN,
            min: f64::NAN,
            max: f64::NAN,
        };
    }
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Spread {
        median,
        min: v[0],
        max: v[n - 1],
    }
}

/// The median of the finite values ([`spread`]'s).
/// A benchmark target's verdict over runs at several table sizes, said plainly: `**met**`,
/// `**not met**`, or `**met at N flows, not met at M flows**`.
pub fn met_by_flows<T>(
    results: &[T],
    flows: impl Fn(&T) -> usize,
    ok: impl Fn(&T) -> bool,
) -> String {
    let n = results.iter().filter(|r| ok(r)).count();
    if n == results.len() {
        return "**met**".to_string();
    }
    if n == 0 {
        return "**not met**".to_string();
    }
    let at = |want: bool| {
        results
            .iter()
            .filter(|r| ok(r) == want)
            .map(|r| format!("{} flows", flows(r)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("**met at {}, not met at {}**", at(true), at(false))
}

/// Each run's figure with its table size: `X at N flows, Y at M flows`.
pub fn each_by_flows<T>(
    results: &[T],
    flows: impl Fn(&T) -> usize,
    f: impl Fn(&T) -> String,
) -> String {
    results
        .iter()
        .map(|r| format!("{} at {} flows", f(r), flows(r)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn median(values: &[f64]) -> f64 {
    spread(values).median
}

/// The 1-minute load average, as the kernel reports it.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// The short commit, marked when the tree has uncommitted changes.
pub fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(c)
            if git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty()) =>
        {
            format!("{c} (with uncommitted changes)")
        }
        Some(c) => c,
        None => "unknown".into(),
    }
}

/// Replaces the section between `<!-- NAME: begin -->` and `<!-- NAME: end -->` in `path`
/// (appending it when absent).
pub fn replace_section(path: &Path, name: &str, body: &str) -> Result<()> {
    let (begin, end) = (
        format!("<!-- {name}: begin -->"),
        format!("<!-- {name}: end -->"),
    );
    let section = format!("{begin}\n{}\n{end}", body.trim_end());
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(b), Some(e)) if b < e => format!("{}{section}{}", &old[..b], &old[e + end.len()..]),
        _ if old.trim().is_empty() => format!("# Benchmarks\n\n{section}\n"),
        _ => format!("{}\n\n{section}\n", old.trim_end()),
    };
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_the_median() {
        let s = spread(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(spread(&[1.0, 2.0, 4.0, 3.0]).median, 2.5);
        assert!(spread(&[f64::NAN]).median.is_nan());
    }

    #[test]
    fn sections_are_replaced_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("B.md");
        replace_section(&p, "x", "one").unwrap();
        replace_section(&p, "y", "two").unwrap();
        replace_section(&p, "x", "three").unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(
            s.contains("three") && s.contains("two") && !s.contains("one"),
            "{s}"
        );
        assert!(
            s.find("three").unwrap() < s.find("two").unwrap(),
            "x stays first"
        );
    }
}
