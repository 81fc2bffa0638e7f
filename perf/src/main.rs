#![forbid(unsafe_code)]
//! `rampart-perf`: traffic generation and benchmarks.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use perf::synth::{demo_frames, Expect};
use std::path::PathBuf;

mod forward;

#[derive(Parser)]
#[command(
    name = "rampart-perf",
    version,
    about = "Rampart's traffic generator and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    /// Mixed flows and malformed frames, each with a known verdict.
    Demo,
    /// A capture with no frames (an RX source that stays silent).
    Empty,
}

#[derive(Subcommand)]
enum Command {
    /// The benchmark suite: forwarding against testpmd, classification against rte_acl,
    /// connection tracking against pass-through, rule swaps, latency through memif; each case
    /// writes its section of the markdown file (machine, commit, command, baseline).
    Suite {
        #[arg(long, default_value = "BENCHMARKS.md")]
        markdown: PathBuf,
        /// Shorter runs and smaller sets (a smoke test of the suite, not figures to quote).
        #[arg(long)]
        quick: bool,
    },
    /// Classifier lookups, builds and one-rule changes: the tree against rte_acl on ClassBench sets.
    Classify(perf::bench_classify::ClassifyArgs),
    /// The pause a conntrack management request's answer adds to a worker's poll loop: a
    /// full table walked chunk by chunk (list, count, delete, flush), each chunk timed.
    CtSelect(perf::bench_ctselect::CtSelectArgs),
    /// Connection tracking's cost on the pipeline: established traffic and new connections
    /// with 1M+ tracked flows and a 10K-rule set, against pass-through in the same run.
    Stateful(perf::bench_stateful::StatefulArgs),
    /// Source NAT's cost on the pipeline: established SNAT traffic and new translated
    /// connections, against tracking without NAT and pass-through in the same run.
    Nat(perf::bench_nat::NatArgs),
    /// Rule swap latency in a running daemon: the tree against rte_acl, 1K to 100K rules.
    Swap(perf::bench_swap::SwapArgs),
    /// Packets lost and let through while rule sets are swapped under load (10K rules, one-rule
    /// and whole-file changes), against the same run without swaps.
    SwapLoss(perf::bench_swaploss::SwapLossArgs),
    /// New TCP connections per second with both sides of every connection (SYN, SYN+ACK, ACK,
    /// data, FIN both ways) through Rampart with conntrack and a stateful set, beside
    /// pass-through and dpdk-testpmd on the same memif devices.
    ConnRate(perf::bench_conn::ConnArgs),
    /// Traffic generator: sends on one DPDK port at a set rate, receives on another, reports
    /// rates, loss and latency percentiles.
    Loadgen(Box<perf::loadgen::LoadgenArgs>),
    /// Latency through Rampart at 10%, 50% and 90% of its maximum rate, beside dpdk-testpmd on
    /// the same memif devices.
    Latency(perf::bench_latency::LatencyArgs),
    /// Forwarding with 1, then N workers (one RX/TX queue each on both ports), beside
    /// `dpdk-testpmd` io with as many forwarding cores and queues, and the model of what more
    /// cores give.
    Scaling {
        /// Worker counts, in order.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        workers: Vec<usize>,
        /// Seconds each case forwards.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Runs of each case; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Device kinds to measure.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "null,pcap")]
        devices: Vec<forward::Device>,
        /// Write (or update in place) the scaling section of this markdown file.
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Use no hugepages even when enough are free.
        #[arg(long)]
        no_huge: bool,
        /// The rampart binary (default: next to rampart-perf).
        #[arg(long)]
        rampart: Option<PathBuf>,
        /// The testpmd binary.
        #[arg(long, default_value = "dpdk-testpmd")]
        testpmd: PathBuf,
    },
    /// Write a generated capture.
    GenPcap {
        #[arg(long, value_enum)]
        kind: Kind,
        #[arg(long)]
        output: PathBuf,
        /// Also write the expected verdict of every frame, one per line.
        #[arg(long)]
        expected: Option<PathBuf>,
    },
    /// Write the connection tracking scenarios (NAME.pcap and NAME.txt per scenario).
    GenScenarios {
        #[arg(long, required_unless_present = "list")]
        dir: Option<PathBuf>,
        /// Only these scenarios (comma-separated); all by default.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Print the scenario names and exit.
        #[arg(long)]
        list: bool,
    },
    /// Forwarding Mpps per worker of Rampart's bridge against `dpdk-testpmd` (io mode) on the
    /// same virtual devices, and their ratio.
    Forward {
        /// Seconds each case forwards.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Runs of each case; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Device kinds to measure.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "null,pcap")]
        devices: Vec<forward::Device>,
        /// Write (or update in place) the results section of this markdown file.
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Use no hugepages even when enough are free.
        #[arg(long)]
        no_huge: bool,
        /// The rampart binary (default: next to rampart-perf).
        #[arg(long)]
        rampart: Option<PathBuf>,
        /// The testpmd binary.
        #[arg(long, default_value = "dpdk-testpmd")]
        testpmd: PathBuf,
    },
}

fn main() -> Result<()> {
    dispatch(Cli::parse().command, command_line())
}

/// The suite's cases, as command lines (without the program name).
fn suite_cases(md: &str, quick: bool) -> Vec<Vec<String>> {
    let cases: Vec<Vec<&str>> = if quick {
        vec![
            vec!["forward", "--seconds", "2", "--runs", "1"],
            vec![
                "scaling",
                "--seconds",
                "2",
                "--runs",
                "1",
                "--devices",
                "null",
            ],
            vec!["classify", "--sizes", "1K,10K", "--runs", "1"],
            vec!["stateful", "--flows", "100K", "--runs", "1"],
            vec!["nat", "--flows", "100K", "--runs", "1"],
            vec!["swap", "--sizes", "1000,10000"],
            vec!["swap-loss", "--rules", "1000", "--seconds", "4"],
            vec!["latency", "--seconds", "2", "--runs", "1"],
            vec![
                "conn-rate",
                "--seconds",
                "2",
                "--runs",
                "1",
                "--rules",
                "1000",
            ],
        ]
    } else {
        vec![
            vec!["forward"],
            vec!["scaling"],
            vec!["classify"],
            vec!["stateful", "--flows", "1M,10M"],
            vec!["nat", "--flows", "1M"],
            vec!["swap"],
            vec!["swap-loss", "--runs", "3"],
            vec!["latency"],
            vec!["conn-rate"],
        ]
    };
    cases
        .into_iter()
        .map(|c| {
            c.into_iter()
                .chain(["--markdown", md])
                .map(String::from)
                .collect()
        })
        .collect()
}

/// The benchmark suite: each case with its baseline, each writing its section of `markdown`.
fn suite(markdown: &std::path::Path, quick: bool) -> Result<()> {
    let md = markdown.display().to_string();
    let cases = suite_cases(&md, quick);
    let started = std::time::Instant::now();
    let mut failed = Vec::new();
    for case in cases {
        let argv: Vec<&str> = std::iter::once("rampart-perf")
            .chain(case.iter().map(String::as_str))
            .collect();
        let line = argv.join(" ");
        eprintln!("rampart-perf suite: {line}");
        let cli = Cli::try_parse_from(&argv).with_context(|| format!("suite case {line}"))?;
        // One case failing (a missing tool, a device that does not come up) does not stop the
        // others; the suite fails at the end.
        if let Err(e) = dispatch(cli.command, line.clone()) {
            eprintln!("rampart-perf suite: {line}: {e:#}");
            failed.push(line);
        }
    }
    eprintln!(
        "rampart-perf suite: done in {:.0} s; {} written",
        started.elapsed().as_secs_f64(),
        markdown.display()
    );
    if !failed.is_empty() {
        anyhow::bail!("cases failed: {}", failed.join("; "));
    }
    Ok(())
}

fn dispatch(command: Command, line: String) -> Result<()> {
    match command {
        Command::Suite { markdown, quick } => suite(&markdown, quick),
        Command::Classify(a) => perf::bench_classify::run(&a),
        Command::Swap(a) => perf::bench_swap::run(&a),
        Command::SwapLoss(a) => perf::bench_swaploss::run(&a),
        Command::Stateful(a) => perf::bench_stateful::run(&a),
        Command::CtSelect(a) => perf::bench_ctselect::run(&a),
        Command::Nat(a) => perf::bench_nat::run(&a),
        Command::GenScenarios { dir, only, list } => {
            if list {
                println!("{}", perf::scenarios::names().join("\n"));
                return Ok(());
            }
            let dir = dir.context("--dir is required")?;
            let n = perf::scenarios::write(&dir, &only)?.len();
            eprintln!("rampart-perf: wrote {n} scenarios to {}", dir.display());
            Ok(())
        }
        Command::Loadgen(a) => perf::loadgen::run(&a),
        Command::Latency(a) => perf::bench_latency::run(&a),
        Command::ConnRate(a) => perf::bench_conn::run(&a),
        Command::Forward {
            seconds,
            runs,
            devices,
            markdown,
            no_huge,
            rampart,
            testpmd,
        } => forward::run(&forward::ForwardOpts {
            seconds,
            runs,
            devices,
            markdown,
            no_huge,
            rampart,
            testpmd,
            command_line: line,
        }),
        Command::Scaling {
            workers,
            seconds,
            runs,
            devices,
            markdown,
            no_huge,
            rampart,
            testpmd,
        } => forward::run_scaling(
            &forward::ForwardOpts {
                seconds,
                runs,
                devices,
                markdown,
                no_huge,
                rampart,
                testpmd,
                command_line: line,
            },
            &workers,
        ),
        Command::GenPcap {
            kind,
            output,
            expected,
        } => {
            let frames = match kind {
                Kind::Demo => demo_frames(),
                Kind::Empty => Vec::new(),
            };
            control::pcap::write_frames(&output, frames.iter().map(|f| f.frame.as_slice()))?;
            if let Some(p) = expected {
                let text: String = frames
                    .iter()
                    .enumerate()
                    .map(|(i, f)| match f.expect {
                        Expect::Forward => format!("{i:3} forward  {}\n", f.what),
                        Expect::Drop(r) => format!("{i:3} drop     {} ({r})\n", f.what),
                    })
                    .collect();
                std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
            }
            eprintln!(
                "rampart-perf: wrote {} frames to {}",
                frames.len(),
                output.display()
            );
            Ok(())
        }
    }
}

/// The command line as typed, with the program's file name only.
fn command_line() -> String {
    let mut args = std::env::args();
    let prog = args
        .next()
        .map(|p| {
            std::path::Path::new(&p)
                .file_name()
                .map_or(p.clone(), |f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "rampart-perf".into());
    std::iter::once(prog)
        .chain(args.map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a
            }
        }))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_suite_case_parses() {
        for quick in [false, true] {
            for case in suite_cases("B.md", quick) {
                let argv = std::iter::once("rampart-perf".to_string()).chain(case.clone());
                assert!(Cli::try_parse_from(argv).is_ok(), "{case:?}");
            }
        }
    }
}
