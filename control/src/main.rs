#![forbid(unsafe_code)]
//! The `rampart` command.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use control::config::Config;
use control::prefix::Prefix;
use control::replay::{replay, ReplayOptions};
use control::run::{run, RunOptions};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// Rampart: a DPDK stateful firewall and NAT gateway.
#[derive(Parser)]
#[command(name = "rampart", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon. EAL arguments come from the configuration; more may follow `--`.
    Run {
        /// The TOML configuration.
        #[arg(long)]
        config: PathBuf,
        /// Stop once no packet has moved for this many milliseconds (for finite inputs such as
        /// net_pcap rx_pcap files).
        #[arg(long, value_name = "MS")]
        exit_when_idle_ms: Option<u64>,
        /// Print counters every this many milliseconds.
        #[arg(long, value_name = "MS")]
        stats_interval_ms: Option<u64>,
        /// Also write the final report as JSON to this file.
        #[arg(long, value_name = "FILE")]
        summary_json: Option<PathBuf>,
        /// Extra EAL arguments.
        #[arg(last = true)]
        eal: Vec<String>,
    },
    /// Replay a capture through the pipeline, offline and deterministically (no EAL).
    Replay {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
        /// One JSON line per input packet: index, ports, verdict, rule, ct_state, nat, reason.
        #[arg(long)]
        verdicts: Option<PathBuf>,
        /// Sources in these prefixes (comma-separated) arrive on the inside port.
        #[arg(long, value_delimiter = ',')]
        inside: Vec<Prefix>,
        /// A configuration giving port names, pairs and policies.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("rampart: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            exit_when_idle_ms,
            stats_interval_ms,
            summary_json,
            eal,
        } => {
            let cfg = Config::load(&config)?;
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(sig, stop.clone())
                    .context("installing signal handlers")?;
            }
            let opts = RunOptions {
                extra_eal_args: eal,
                exit_when_idle: exit_when_idle_ms.map(Duration::from_millis),
                stats_interval: stats_interval_ms.map(Duration::from_millis),
            };
            let summary = run(&cfg, &opts, stop)?;
            print!("{}", summary.report());
            if let Some(p) = summary_json {
                std::fs::write(&p, summary.to_json().to_string())
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            if summary.mbufs_in_use_end != summary.mbufs_in_use_start {
                anyhow::bail!(
                    "mbuf leak: {} in use at start, {} at stop",
                    summary.mbufs_in_use_start,
                    summary.mbufs_in_use_end
                );
            }
            Ok(())
        }
        Command::Replay {
            input,
            output,
            verdicts,
            inside,
            config,
        } => {
            let config = config.map(|p| Config::load(&p)).transpose()?;
            eprintln!("rampart: no IPv4 rules: IPv4 traffic is not filtered");
            eprintln!("rampart: no IPv6 rules: IPv6 traffic is not filtered");
            let s = replay(&ReplayOptions {
                input,
                output,
                verdicts,
                inside,
                config,
                filter: Default::default(),
            })?;
            println!(
                "rampart: replayed {} packets: forwarded {}, dropped {}",
                s.packets, s.forwarded, s.dropped
            );
            for (reason, n) in &s.drops {
                println!("  drop {reason:<24} {n}");
            }
            Ok(())
        }
    }
}
