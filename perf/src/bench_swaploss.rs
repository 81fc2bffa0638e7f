//! `rampart-perf swap-loss`: packets lost or let through wrongly while rule sets are swapped
//! under load, against the same run without swaps.
//!
//! Rampart runs as a bridge between two `net_memif` servers with a 10K-rule IPv4 set (the
//! synthetic ClassBench-like rules of `rampart-perf swap`, ACCEPT) between a first rule that
//! drops UDP to port 9 and a last one that accepts the generator's flows, with the FORWARD
//! policy DROP: a packet of the generator's flows is forwarded only by a rule set in force, and
//! a packet to port 9 only by a wrong one. `rampart-perf loadgen` in its own process sends
//! paced traffic with a share of it to port 9 and receives what comes back. In the swap run, a
//! thread loads the two alternating files through the management socket (as `rampart ctl rules
//! load` does) from the moment traffic flows until just before it ends; the baseline run is the
//! same daemon, files and traffic with no swap. Lost = expected back minus received (not
//! counting port-9 packets that came back); leaked = port-9 packets that came back.

use crate::bench_swap::iptables_text;
use crate::procs::{self, vdev_eal};
use crate::report;
use anyhow::{bail, Context, Result};
use dataplane::classify::classbench::{synth_rules, SynthConfig};
use dataplane::wire::{ip_proto, Family};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `rampart-perf swap-loss`.
#[derive(Clone, Debug, clap::Args)]
pub struct SwapLossArgs {
    /// Rules in each file (besides the drop and accept rules).
    #[arg(long, default_value_t = 10_000)]
    pub rules: usize,
    /// Seconds the generator sends in each run.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Packets per second offered (well below Rampart's maximum over memif, so the baseline
    /// loses nothing).
    #[arg(long, default_value_t = 1_000_000)]
    pub rate_pps: u64,
    /// Pause between two swaps, in milliseconds (a swap starts when the previous one answered
    /// and this long has passed).
    #[arg(long, default_value_t = 100)]
    pub interval_ms: u64,
    /// Share of packets sent to the dropped port.
    #[arg(long, default_value_t = 0.1)]
    pub drop_share: f64,
    /// Runs of each case (baseline and swaps alternate which goes first).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Lcore map of the daemon (main lcore, which compiles the rules, and one worker).
    #[arg(long, default_value = "0@0,1@1")]
    pub fw_lcores: String,
    /// Lcore map of the generator.
    #[arg(long, default_value = "0@0,1@0")]
    pub gen_lcores: String,
    /// Write (or replace) the swap-loss section of this markdown file.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// The rampart binary (default: next to this one).
    #[arg(long)]
    pub rampart: Option<PathBuf>,
}

/// What the two alternating files differ by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    OneRule,
    WholeFile,
}

impl Change {
    fn name(self) -> &'static str {
        match self {
            Change::OneRule => "one rule",
            Change::WholeFile => "whole file",
        }
    }
}

/// One run's figures.
#[derive(Clone, Debug, Default)]
struct RunResult {
    sent: u64,
    to_drop: u64,
    expected: u64,
    received: u64,
    lost: i64,
    leaked: u64,
    swaps: usize,
    swap_us: Vec<f64>,
}

const GEN_SRC: &str = "10.254.0.1-10.254.3.255";
const GEN_DST: &str = "198.19.0.1";
const GEN_DPORT: u16 = 5001;
const DROP_DPORT: u16 = 9;

/// The rule file: the drop rule, the synthetic set, the accept rule; policy DROP.
fn rule_text(size: usize, seed: u64, one_rule_changed: bool) -> String {
    let mut rules = synth_rules(&SynthConfig {
        rules: size,
        family: Family::V4,
        seed,
        default_rule: false,
    });
    if one_rule_changed {
        if let Some(r) = rules.first_mut() {
            r.dport = (4242, 4242);
            r.proto = (ip_proto::TCP, ip_proto::TCP);
        }
    }
    let text = iptables_text(&rules).replace(":FORWARD ACCEPT [0:0]", ":FORWARD DROP [0:0]");
    let (head, rest) = text
        .split_once("-A FORWARD")
        .map(|(h, r)| (h.to_string(), format!("-A FORWARD{r}")))
        .unwrap_or_else(|| (text.replace("COMMIT\n", ""), "COMMIT\n".into()));
    let rest = rest.replace(
        "COMMIT\n",
        &format!("-A FORWARD -d {GEN_DST}/32 -p udp --dport {GEN_DPORT} -j ACCEPT\nCOMMIT\n"),
    );
    format!("{head}-A FORWARD -p udp --dport {DROP_DPORT} -j DROP\n{rest}")
}

fn request(socket: &Path, req: &Value) -> Result<Value> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    writeln!(s, "{req}")?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    Ok(serde_json::from_str(&line)?)
}

struct Bench<'a> {
    args: &'a SwapLossArgs,
    dir: PathBuf,
    rampart: PathBuf,
    loadgen: PathBuf,
    serial: u32,
}

impl Bench<'_> {
    /// One run: daemon on `a`, generator through it, swaps between `a` and `b` when `swap`.
    fn run(&mut self, a: &Path, b: &Path, swap: bool) -> Result<RunResult> {
        self.serial += 1;
        let n = self.serial;
        let tag = format!("sl{}x{n}", std::process::id() % 100_000);
        let dir = &self.dir;
        let (sa, sb) = (
            dir.join(format!("a{n}.sock")),
            dir.join(format!("b{n}.sock")),
        );
        let mgmt = dir.join(format!("m{n}.sock"));
        let cfg = format!(
            "mode = \"bridge\"\n[eal]\nargs = [{}]\n[[port]]\nname = \"a\"\ndevice = \"net_memif{tag}a,role=server,socket={},rsize=12\"\n[[port]]\nname = \"b\"\ndevice = \"net_memif{tag}b,role=server,socket={},rsize=12\"\n[bridge]\npairs = [[\"a\", \"b\"]]\n[rules]\nipv4 = \"{}\"\n[management]\nsocket = \"{}\"\n[mempool]\nmbufs = 16383\n[rings]\nrx_desc = 1024\ntx_desc = 1024\n",
            vdev_eal(&tag, &self.args.fw_lcores)
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            sa.display(),
            sb.display(),
            a.display(),
            mgmt.display(),
        );
        let cfg_path = dir.join(format!("fw{n}.toml"));
        std::fs::write(&cfg_path, cfg)?;
        let fw_log = std::fs::File::create(dir.join(format!("fw{n}.log")))?;
        let mut fw = Command::new(&self.rampart)
            .args(["run", "--config"])
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(fw_log.try_clone()?)
            .stderr(fw_log)
            .spawn()
            .context("starting rampart")?;
        let r = self.generate(&mut fw, n, &sa, &sb, &mgmt, a, b, swap);
        procs::stop(&mut fw);
        r.with_context(|| format!("run {n} (logs: fw{n}.log, gen{n}.log)"))
    }

    #[allow(clippy::too_many_arguments)]
    fn generate(
        &self,
        fw: &mut Child,
        n: u32,
        sa: &Path,
        sb: &Path,
        mgmt: &Path,
        a: &Path,
        b: &Path,
        swap: bool,
    ) -> Result<RunResult> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while UnixStream::connect(mgmt).is_err() {
            if let Some(st) = fw.try_wait()? {
                bail!("rampart exited ({st}) at start");
            }
            if Instant::now() > deadline {
                bail!("rampart did not start within 120 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let prefix = format!("slg{}x{n}", std::process::id() % 100_000);
        let json = self.dir.join(format!("gen{n}.json"));
        let gen_log_path = self.dir.join(format!("gen{n}.log"));
        let gen_log = std::fs::File::create(&gen_log_path)?;
        let mut gen = Command::new(&self.loadgen)
            .arg("loadgen")
            .arg("--tx")
            .arg(format!(
                "net_memif{prefix}0,role=client,socket={},rsize=12",
                sa.display()
            ))
            .arg("--rx")
            .arg(format!(
                "net_memif{prefix}1,role=client,socket={},rsize=12",
                sb.display()
            ))
            .args(["--linger", "--rate-pps", &self.args.rate_pps.to_string()])
            .args(["--seconds", &self.args.seconds.to_string()])
            .args(["--flows", "1024", "--src-ip", GEN_SRC, "--dst-ip", GEN_DST])
            .args(["--dport", &GEN_DPORT.to_string()])
            .args(["--drop-share", &self.args.drop_share.to_string()])
            .args(["--drop-dport", &DROP_DPORT.to_string()])
            .arg("--json")
            .arg(&json)
            .arg("--")
            .args(vdev_eal(&prefix, &self.args.gen_lcores))
            .stdin(Stdio::null())
            .stdout(gen_log.try_clone()?)
            .stderr(gen_log)
            .spawn()
            .context("running rampart-perf loadgen")?;
        let stop_swaps = Arc::new(AtomicBool::new(false));
        let swapper = swap.then(|| {
            let (mgmt, a, b) = (mgmt.to_path_buf(), a.to_path_buf(), b.to_path_buf());
            let (log, stop_flag) = (gen_log_path.clone(), stop_swaps.clone());
            let seconds = self.args.seconds;
            let interval = Duration::from_millis(self.args.interval_ms);
            std::thread::spawn(move || -> Result<Vec<f64>> {
                // Traffic flows once the generator prints its first live line.
                let t0 = Instant::now();
                while !std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains(" tx ")
                {
                    if stop_flag.load(Ordering::Relaxed) || t0.elapsed().as_secs() > 60 {
                        bail!("no traffic seen from the generator");
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                // The first live line comes a second after TX started; stop a second before
                // it ends, so every swap falls inside the traffic.
                let end = Instant::now() + Duration::from_secs_f64((seconds - 2.0).max(0.5));
                let mut times = Vec::new();
                let mut k = 0usize;
                while Instant::now() < end && !stop_flag.load(Ordering::Relaxed) {
                    let file = if k.is_multiple_of(2) { &b } else { &a };
                    let v = request(
                        &mgmt,
                        &json!({"cmd": "rules load", "file": file.display().to_string()}),
                    )?;
                    if v["ok"] != true {
                        bail!("swap failed: {v}");
                    }
                    times.push(v["swap_us"].as_f64().unwrap_or(f64::NAN));
                    k += 1;
                    std::thread::sleep(interval);
                }
                // Leave the daemon on the file it started with.
                if k % 2 == 1 {
                    let _ = request(
                        &mgmt,
                        &json!({"cmd": "rules load", "file": a.display().to_string()}),
                    );
                }
                Ok(times)
            })
        });
        let deadline = Instant::now() + Duration::from_secs_f64(self.args.seconds + 90.0);
        let waited = loop {
            if json.exists() {
                break Ok(());
            }
            if let Some(st) = gen.try_wait()? {
                break Err(anyhow::anyhow!("loadgen exited ({st}) without a report"));
            }
            if let Some(st) = fw.try_wait()? {
                break Err(anyhow::anyhow!("rampart exited ({st}) during the run"));
            }
            if Instant::now() > deadline {
                break Err(anyhow::anyhow!("loadgen gave no report in time"));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        stop_swaps.store(true, Ordering::Relaxed);
        let times = match swapper {
            Some(h) => h
                .join()
                .map_err(|_| anyhow::anyhow!("the swap thread panicked"))?,
            None => Ok(Vec::new()),
        };
        // The daemon stops before the generator closes its memif ports (see bench_latency).
        procs::stop(fw);
        procs::stop(&mut gen);
        waited?;
        let times = times?;
        let j: Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
        let u = |v: &Value| v.as_u64().unwrap_or(0);
        Ok(RunResult {
            sent: u(&j["tx"]["packets"]),
            to_drop: u(&j["tx"]["to_drop"]),
            expected: u(&j["expected_rx"]),
            received: u(&j["rx"]["signed"]).saturating_sub(u(&j["rx"]["leaked"])),
            lost: j["lost"].as_i64().unwrap_or(0),
            leaked: u(&j["rx"]["leaked"]),
            swaps: times.len(),
            swap_us: times,
        })
    }
}

/// Runs the benchmark; prints the table and writes it when asked.
pub fn run(args: &SwapLossArgs) -> Result<()> {
    if args.runs == 0 || args.seconds < 3.0 || args.rules == 0 {
        bail!("--runs and --rules must be positive, --seconds at least 3");
    }
    let rampart = procs::rampart_binary(args.rampart.as_deref())?;
    let tmp = tempfile::Builder::new()
        .prefix("rampart-perf-swaploss")
        .tempdir()?;
    let mut bench = Bench {
        args,
        dir: tmp.path().to_path_buf(),
        rampart,
        loadgen: std::env::current_exe().context("locating rampart-perf")?,
        serial: 0,
    };
    let load_before = report::loadavg();
    let mut rows: Vec<(Change, bool, RunResult)> = Vec::new();
    let measured = (|| -> Result<()> {
        for change in [Change::OneRule, Change::WholeFile] {
            let a = bench.dir.join(format!("{}-a.rules", change as u8));
            let b = bench.dir.join(format!("{}-b.rules", change as u8));
            let seed = args.rules as u64;
            std::fs::write(&a, rule_text(args.rules, seed, false))?;
            std::fs::write(
                &b,
                match change {
                    Change::OneRule => rule_text(args.rules, seed, true),
                    Change::WholeFile => rule_text(args.rules, seed + 1, false),
                },
            )?;
            for k in 0..args.runs {
                let order = if k % 2 == 0 {
                    [false, true]
                } else {
                    [true, false]
                };
                for swap in order {
                    let r = bench.run(&a, &b, swap)?;
                    eprintln!(
                        "rampart-perf swap-loss: {} {} run {}/{}: sent {} ({} to port {DROP_DPORT}), expected {}, received {}, lost {}, leaked {}, swaps {}",
                        change.name(),
                        if swap { "swaps" } else { "baseline" },
                        k + 1,
                        args.runs,
                        r.sent,
                        r.to_drop,
                        r.expected,
                        r.received,
                        r.lost,
                        r.leaked,
                        r.swaps
                    );
                    rows.push((change, swap, r));
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = measured {
        let kept = tmp.keep();
        return Err(e.context(format!("logs kept in {}", kept.display())));
    }
    let table = table(&rows);
    println!("{table}");
    if let Some(path) = &args.markdown {
        let mut s = String::from("## Rule swaps under load: packets lost and let through\n\n");
        let _ = writeln!(
            s,
            "Rampart's bridge between two `net_memif` servers (one worker, `--lcores={}`; the main lcore, which compiles rule files, shares CPU 0 with the generator, `--lcores={}`) forwards {} pps of 64-byte IPv4/UDP frames in 1024 flows from `rampart-perf loadgen`, {:.0}% of them to UDP port {DROP_DPORT}. Each rule file holds a first rule that drops UDP to port {DROP_DPORT}, {} synthetic ClassBench-like ACCEPT rules (those of `rampart-perf swap`), and a last rule that accepts the generator's flows, with the FORWARD policy DROP; connection tracking is on (Rampart's default), so an established flow's cached verdict is judged again after every swap. A packet of the generator's flows comes back only through a rule set in force, and a packet to port {DROP_DPORT} only through a wrong one. In the *swaps* run a client loads the two files in turn through the management socket (`{{\"cmd\": \"rules load\"}}`, as `rampart ctl rules load`), waiting for each answer and then {} ms, from the first second of traffic to one second before its end; the *baseline* is the same daemon, files and traffic without swaps, in the same run. *one rule*: the files differ in one rule; *whole file*: two unrelated synthetic sets. Lost = packets expected back (sent minus those to port {DROP_DPORT}) that did not come back; leaked = packets to port {DROP_DPORT} that came back. Each run lasted {} s; {} run(s) of each.\n",
            args.fw_lcores,
            args.gen_lcores,
            args.rate_pps,
            args.drop_share * 100.0,
            args.rules,
            args.interval_ms,
            args.seconds,
            args.runs
        );
        let _ = writeln!(
            s,
            "- machine: {}",
            report::machine("no hugepages (--no-huge), net_memif copy mode")
        );
        let _ = writeln!(
            s,
            "- machine load (1-minute load average) before and after: {load_before} and {}",
            report::loadavg()
        );
        let _ = writeln!(s, "- commit: {}", report::commit());
        let _ = writeln!(
            s,
            "- command: `rampart-perf swap-loss --rules {} --seconds {} --rate-pps {} --interval-ms {} --runs {}`\n",
            args.rules, args.seconds, args.rate_pps, args.interval_ms, args.runs
        );
        s += &table;
        s += "\nLoss per swap is the swap run's loss less the baseline's (in the same run), over the swaps done. Swaps publish a new rule set by pointer and wait for each worker's quiescent point; a worker never runs without rules, so a loss per swap above zero would come from the worker's time spent judging again the flows whose cached verdicts the swap invalidated, or from the main lcore's compile taking CPU time from the generator on the shared CPU (which slows the sending, not the forwarding).\n";
        report::replace_section(path, "rampart-perf swap-loss", &s)?;
        eprintln!("rampart-perf: wrote {}", path.display());
    }
    Ok(())
}

fn table(rows: &[(Change, bool, RunResult)]) -> String {
    let mut t = String::from(
        "| change | run | swaps | swap median (ms) | sent | to port 9 | expected back | received | lost | leaked | lost per swap (over baseline) |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (change, swap, r) in rows {
        let per_swap = if *swap && r.swaps > 0 {
            // The baseline runs of the same change, their mean loss.
            let base: Vec<f64> = rows
                .iter()
                .filter(|(c, s, _)| c == change && !s)
                .map(|(_, _, b)| b.lost as f64)
                .collect();
            let base = if base.is_empty() {
                0.0
            } else {
                base.iter().sum::<f64>() / base.len() as f64
            };
            format!("{:.2}", (r.lost as f64 - base) / r.swaps as f64)
        } else {
            "–".into()
        };
        let med = report::median(&r.swap_us);
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            change.name(),
            if *swap { "swaps" } else { "baseline" },
            r.swaps,
            if med.is_finite() {
                format!("{:.2}", med / 1e3)
            } else {
                "–".into()
            },
            r.sent,
            r.to_drop,
            r.expected,
            r.received,
            r.lost,
            r.leaked,
            per_swap
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_files_drop_port_9_first_and_accept_the_flows_last() {
        for changed in [false, true] {
            let text = rule_text(300, 5, changed);
            let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("-A")).collect();
            assert_eq!(
                lines[0],
                format!("-A FORWARD -p udp --dport {DROP_DPORT} -j DROP")
            );
            assert!(lines
                .last()
                .unwrap()
                .contains(&format!("--dport {GEN_DPORT} -j ACCEPT")));
            assert!(text.contains(":FORWARD DROP"));
            control::rules::compile_iptables(
                "t",
                &text,
                Family::V4,
                &[],
                control::rules::Hook::Forward,
            )
            .unwrap_or_else(|e| panic!("{}", e[0]));
        }
        assert_ne!(rule_text(300, 5, false), rule_text(300, 5, true));
    }
}
