#![forbid(unsafe_code)]
//! `rampart-perf`: traffic generation and benchmarks.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use perf::synth::{demo_frames, Expect};
use std::path::PathBuf;

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
}

fn main() -> Result<()> {
    match Cli::parse().command {
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
