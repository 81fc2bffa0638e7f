//! `rampart-perf latency`: latency through Rampart at 10%, 50% and 90% of its measured maximum
//! rate, beside the same generator looped through `dpdk-testpmd` io forwarding over the same
//! `net_memif` devices at the same offered rates.
//!
//! For every generator run a forwarder (Rampart's bridge with a small rule set, or testpmd) is
//! started with two memif servers, and `rampart-perf loadgen` runs against it as a separate
//! process: flat-out runs give the forwarder's maximum (its received rate), then paced runs at
//! the three loads. The forwarder is stopped before the generator closes its ports: a memif
//! server whose lcore polls while its client disconnects can crash (seen with testpmd and
//! DPDK 22.11), so no forwarder outlives the client it served. Rampart's maximum sets the offered rates for both forwarders, so each row compares the
//! two at the same load. Every case runs `--runs` times; the table gives medians, with the range
//! of p99.

use crate::procs::{self, vdev_eal};
use crate::report;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Options of `rampart-perf latency`.
#[derive(Clone, Debug, clap::Args)]
pub struct LatencyArgs {
    /// Seconds each generator run sends.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Runs of each case; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Loads, as fractions of Rampart's maximum rate.
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.5,0.9")]
    pub loads: Vec<f64>,
    /// Frame size with FCS.
    #[arg(long, default_value_t = 64)]
    pub size: u16,
    /// Flows the generator cycles through.
    #[arg(long, default_value_t = 1024)]
    pub flows: u64,
    /// Lcore map of the forwarder (main lcore and one forwarding lcore).
    #[arg(long, default_value = "0@0,1@1")]
    pub fw_lcores: String,
    /// Lcore map of the generator (with one worker lcore it transmits and receives in one loop).
    #[arg(long, default_value = "0@0,1@0")]
    pub gen_lcores: String,
    /// Rampart's TX drain timer (`[workers] drain_us`): how long a partial TX burst may wait.
    /// Default: Rampart's own default.
    #[arg(long)]
    pub drain_us: Option<u64>,
    /// Write (or update in place) the latency section of this markdown file.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// The rampart binary (default: next to rampart-perf).
    #[arg(long)]
    pub rampart: Option<PathBuf>,
    /// The testpmd binary.
    #[arg(long, default_value = "dpdk-testpmd")]
    pub testpmd: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Forwarder {
    Rampart,
    Testpmd,
}

impl Forwarder {
    fn label(self) -> &'static str {
        match self {
            Forwarder::Rampart => "rampart (bridge, 2 rules)",
            Forwarder::Testpmd => "dpdk-testpmd (io)",
        }
    }
}

/// What one generator run measured.
#[derive(Clone, Copy, Debug)]
struct Run {
    rx_mpps: f64,
    tx_mpps: f64,
    loss_ratio: f64,
    p50_ns: f64,
    p99_ns: f64,
    p999_ns: f64,
    max_ns: f64,
}

use crate::report::median;

fn range(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

struct Bench<'a> {
    args: &'a LatencyArgs,
    dir: PathBuf,
    rampart: PathBuf,
    loadgen: PathBuf,
    /// Numbers every forwarder instance and generator run (file prefixes, file names).
    serial: u32,
    /// The serial of the running forwarder, which names its memif sockets.
    fw_serial: u32,
}

const RULES: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
-A FORWARD -p udp --dport 9 -j DROP\n-A FORWARD -p tcp --dport 9 -j DROP\nCOMMIT\n";

impl Bench<'_> {
    fn start(&mut self, fw: Forwarder) -> Result<Child> {
        self.serial += 1;
        self.fw_serial = self.serial;
        let tag = format!("lat{}x{}", std::process::id() % 100_000, self.serial);
        let (a, b) = (self.sock("a"), self.sock("b"));
        let mut cmd = match fw {
            Forwarder::Rampart => {
                let rules = self.dir.join("rules");
                std::fs::write(&rules, RULES)?;
                let eal = vdev_eal(&tag, &self.args.fw_lcores);
                let cfg = format!(
                    "mode = \"bridge\"\n[eal]\nargs = [{}]\n[[port]]\nname = \"a\"\ndevice = \"net_memif{tag}a,role=server,socket={a},rsize=12\"\n[[port]]\nname = \"b\"\ndevice = \"net_memif{tag}b,role=server,socket={b},rsize=12\"\n[bridge]\npairs = [[\"a\", \"b\"]]\n{}[rules]\nipv4 = \"{}\"\n[management]\nsocket = \"{}/m{}.sock\"\n[mempool]\nmbufs = 16383\n[rings]\nrx_desc = 1024\ntx_desc = 1024\n",
                    eal.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", "),
                    self.args
                        .drain_us
                        .map(|d| format!("[workers]\ndrain_us = {d}\n"))
                        .unwrap_or_default(),
                    rules.display(),
                    self.dir.display(),
                    self.serial,
                );
                let path = self.dir.join(format!("fw{}.toml", self.serial));
                std::fs::write(&path, cfg)?;
                let mut c = Command::new(&self.rampart);
                c.args(["run", "--config"]).arg(path);
                c
            }
            Forwarder::Testpmd => {
                let mut c = Command::new(&self.args.testpmd);
                c.args(vdev_eal(&tag, &self.args.fw_lcores))
                    .arg(format!(
                        "--vdev=net_memif{tag}a,role=server,socket={a},rsize=12"
                    ))
                    .arg(format!(
                        "--vdev=net_memif{tag}b,role=server,socket={b},rsize=12"
                    ))
                    .args([
                        "--",
                        "--forward-mode=io",
                        "--auto-start",
                        "--stats-period",
                        "1",
                        "--total-num-mbufs=16384",
                        "--no-mlockall",
                    ]);
                c
            }
        };
        let log = std::fs::File::create(self.dir.join(format!("fw{}.log", self.serial)))?;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", fw.label()))
    }

    fn stop(&self, mut child: Child) -> Result<()> {
        if !procs::stop(&mut child) {
            bail!("the forwarder did not stop on SIGTERM");
        }
        Ok(())
    }

    /// One generator run against the running forwarder, at `rate_pps` (0: flat out).
    /// Fails, with the end of its log, when the forwarder has exited.
    fn check_alive(&self, child: &mut Child) -> Result<()> {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(self.dir.join(format!("fw{}.log", self.fw_serial)))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            bail!(
                "the forwarder exited ({status}); the end of its log:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }

    /// One generator run at `rate_pps` (0: flat out) through a freshly started `fw`. The
    /// generator lingers after its report so the forwarder stops first: a memif server whose
    /// lcore polls while its client disconnects can crash (DPDK 22.11).
    fn generate(&mut self, fw: Forwarder, rate_pps: u64) -> Result<Run> {
        let mut child = self.start(fw)?;
        let r = self.generate_through(&mut child, rate_pps);
        let stopped = self.stop(child);
        let r = r?;
        stopped?;
        Ok(r)
    }

    fn generate_through(&mut self, child: &mut Child, rate_pps: u64) -> Result<Run> {
        self.serial += 1;
        let json = self.dir.join(format!("gen{}.json", self.serial));
        let prefix = format!("latg{}x{}", std::process::id() % 100_000, self.serial);
        let log = std::fs::File::create(self.dir.join(format!("gen{}.log", self.serial)))?;
        let mut gen = Command::new(&self.loadgen)
            .arg("loadgen")
            .arg("--tx")
            .arg(format!(
                "net_memif{prefix}0,role=client,socket={},rsize=12",
                self.sock("a")
            ))
            .arg("--rx")
            .arg(format!(
                "net_memif{prefix}1,role=client,socket={},rsize=12",
                self.sock("b")
            ))
            .args(["--quiet", "--linger", "--rate-pps", &rate_pps.to_string()])
            .args(["--seconds", &self.args.seconds.to_string()])
            .args(["--size", &self.args.size.to_string()])
            .args(["--flows", &self.args.flows.to_string()])
            .args(["--src-ip", "10.0.0.1-10.0.3.255", "--sport", "1024-65535"])
            .arg("--json")
            .arg(&json)
            .arg("--")
            .args(vdev_eal(&prefix, &self.args.gen_lcores))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("running rampart-perf loadgen")?;
        let deadline = Instant::now() + Duration::from_secs_f64(self.args.seconds + 60.0);
        let waited = loop {
            if json.exists() {
                break Ok(());
            }
            if let Some(status) = gen.try_wait()? {
                break Err(anyhow::anyhow!(
                    "loadgen exited ({status}) without a report"
                ));
            }
            if Instant::now() > deadline {
                break Err(anyhow::anyhow!("loadgen gave no report in time"));
            }
            if let Err(e) = self.check_alive(child) {
                break Err(e);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let _ = Command::new("kill")
            .args(["-TERM", &gen.id().to_string()])
            .status();
        let _ = gen.wait();
        waited.with_context(|| {
            format!(
                "generator run {} (its log: gen{}.log)",
                self.serial, self.serial
            )
        })?;
        let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
        let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
        Ok(Run {
            rx_mpps: f(&j["rx"]["mpps"]),
            tx_mpps: f(&j["tx"]["mpps"]),
            loss_ratio: f(&j["loss_ratio"]),
            p50_ns: f(&j["latency_ns"]["p50"]),
            p99_ns: f(&j["latency_ns"]["p99"]),
            p999_ns: f(&j["latency_ns"]["p999"]),
            max_ns: f(&j["latency_ns"]["max"]),
        })
    }

    /// Socket path of memif pair `side` ("a" or "b") of the running forwarder.
    fn sock(&self, side: &str) -> String {
        format!("{}/{side}{}.sock", self.dir.display(), self.fw_serial)
    }
}

/// Results of one forwarder: its maximum runs and, per load, its runs.
struct FwResult {
    fw: Forwarder,
    max: Vec<Run>,
    loads: Vec<(f64, u64, Vec<Run>)>,
}

/// Runs the benchmark, prints the table and writes it when asked.
pub fn run(args: &LatencyArgs) -> Result<()> {
    if args.runs == 0 || args.seconds <= 0.0 || args.loads.is_empty() {
        bail!("--runs, --seconds and --loads must be positive and non-empty");
    }
    if let Some(l) = args
        .loads
        .iter()
        .find(|l| !(0.0..=1.0).contains(*l) || **l == 0.0)
    {
        bail!("--loads: {l} is not a fraction in (0, 1]");
    }
    let rampart = procs::rampart_binary(args.rampart.as_deref())?;
    let tmp = tempfile::Builder::new()
        .prefix("rampart-perf-latency")
        .tempdir()
        .context("creating a temporary directory")?;
    let mut bench = Bench {
        args,
        dir: tmp.path().to_path_buf(),
        rampart,
        loadgen: std::env::current_exe().context("locating rampart-perf")?,
        serial: 0,
        fw_serial: 0,
    };

    let load_before = report::loadavg();
    let forwarders = [Forwarder::Rampart, Forwarder::Testpmd];
    let mut results: Vec<FwResult> = forwarders
        .iter()
        .map(|&fw| FwResult {
            fw,
            max: Vec::new(),
            loads: Vec::new(),
        })
        .collect();
    // Run k of every case goes Rampart first when k is even and testpmd first when it is odd,
    // so drift in what else the machine runs reaches both alike.
    let order = |k: usize| -> [usize; 2] {
        if k.is_multiple_of(2) {
            [0, 1]
        } else {
            [1, 0]
        }
    };
    let measured = (|| -> Result<()> {
        for k in 0..args.runs {
            for i in order(k) {
                let fw = forwarders[i];
                let m = bench.generate(fw, 0)?;
                eprintln!(
                    "rampart-perf latency: {} max run {}/{}: {:.3} Mpps received of {:.3} sent",
                    fw.label(),
                    k + 1,
                    args.runs,
                    m.rx_mpps,
                    m.tx_mpps
                );
                results[i].max.push(m);
            }
        }
        let max_pps = median(&results[0].max.iter().map(|m| m.rx_mpps).collect::<Vec<_>>()) * 1e6;
        if max_pps.is_nan() || max_pps < 1.0 {
            bail!("{} forwarded nothing flat out", forwarders[0].label());
        }
        for &load in &args.loads {
            let rate = (max_pps * load).round().max(1.0) as u64;
            for r in results.iter_mut() {
                r.loads.push((load, rate, Vec::new()));
            }
            for k in 0..args.runs {
                for i in order(k) {
                    let fw = forwarders[i];
                    let x = bench.generate(fw, rate)?;
                    eprintln!(
                        "rampart-perf latency: {} at {:.0}% ({} pps) run {}/{}: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us, loss {:.4}%",
                        fw.label(),
                        load * 100.0,
                        rate,
                        k + 1,
                        args.runs,
                        x.p50_ns / 1e3,
                        x.p99_ns / 1e3,
                        x.p999_ns / 1e3,
                        x.max_ns / 1e3,
                        x.loss_ratio * 100.0
                    );
                    if let Some(last) = results[i].loads.last_mut() {
                        last.2.push(x);
                    }
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = measured {
        // Keep the logs and reports for a look.
        let kept = tmp.keep();
        return Err(e.context(format!("logs and reports kept in {}", kept.display())));
    }

    let table = table(&results);
    println!("{table}");
    if let Some(path) = &args.markdown {
        let mut body = String::new();
        let _ = writeln!(
            body,
            "## Latency under load: Rampart against dpdk-testpmd\n"
        );
        let _ = writeln!(
            body,
            "`rampart-perf loadgen` in its own process sends {}-byte IPv4/UDP frames ({} flows) over a `net_memif` pair into the forwarder and receives them back over a second pair; latency is the generator's TSC at receipt minus the TSC stamped in the frame, so it includes the generator's own TX and RX paths and both memif copies (copy mode, no hugepages). The forwarder is Rampart's bridge with two rules (neither matches this traffic) or `dpdk-testpmd --forward-mode=io` on the same devices, each with one forwarding lcore (`--lcores={}`); the generator runs with `--lcores={}`. Rampart's maximum (its received rate flat out, median of {} runs) sets the offered rates for both forwarders (the generator never drops a packet the device refuses, so when a forwarder falls behind, `sent` falls below `offered` and the queue shows in the latency); each case ran {} times for {} s, and the table gives medians (p99 with its range). The two forwarders take turns run by run (Rampart first in odd-numbered runs, testpmd first in even-numbered ones), so drift in the machine reaches both.\n",
            args.size, args.flows, args.fw_lcores, args.gen_lcores, args.runs, args.runs, args.seconds
        );
        let drain = match args.drain_us {
            Some(d) => format!("{d} us, `--drain-us`"),
            None => format!(
                "{} us, Rampart's default",
                control::config::WorkersConf::default().drain_us
            ),
        };
        let _ = writeln!(
            body,
            "Rampart's worker sends a partial TX burst when its drain timer fires ({drain}); testpmd's io mode sends every burst at once. At low rates most bursts are partial, so the timer is in Rampart's p50 there.\n"
        );
        let _ = writeln!(
            body,
            "- machine: {}",
            report::machine("no hugepages (--no-huge), net_memif copy mode")
        );
        let _ = writeln!(
            body,
            "- machine load (1-minute load average) before and after the run: {load_before} and {}",
            report::loadavg()
        );
        let _ = writeln!(body, "- commit: {}", report::commit());
        let _ = writeln!(body, "- command: `{}`\n", command_line());
        body.push_str(&table);
        let _ = writeln!(
            body,
            "\nOn a machine where the generator and the forwarder share cores with each other (and with other work), a busy-polling lcore waits for its turn at the scheduler, which puts milliseconds into the tail; read p99 and max here as the machine's, and p50 as the forwarding path's."
        );
        report::replace_section(path, "rampart-perf latency", &body)?;
        eprintln!("rampart-perf: wrote {}", path.display());
    }
    Ok(())
}

fn us(ns: f64) -> String {
    format!("{:.1}", ns / 1e3)
}

fn table(results: &[FwResult]) -> String {
    let mut t = String::from(
        "| forwarder | load | offered (pps) | sent (Mpps) | received (Mpps) | loss | p50 (us) | p99 (us), median (min – max) | p99.9 (us) | max (us) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in results {
        let rx: Vec<f64> = r.max.iter().map(|m| m.rx_mpps).collect();
        let (lo, hi) = range(&rx);
        let _ = writeln!(
            t,
            "| {} | max | flat out | {:.3} | {:.3} ({:.3} – {:.3}) | {:.3}% | {} | {} | {} | {} |",
            r.fw.label(),
            median(&r.max.iter().map(|m| m.tx_mpps).collect::<Vec<_>>()),
            median(&rx),
            lo,
            hi,
            median(
                &r.max
                    .iter()
                    .map(|m| m.loss_ratio * 100.0)
                    .collect::<Vec<_>>()
            ),
            us(median(&r.max.iter().map(|m| m.p50_ns).collect::<Vec<_>>())),
            us(median(&r.max.iter().map(|m| m.p99_ns).collect::<Vec<_>>())),
            us(median(&r.max.iter().map(|m| m.p999_ns).collect::<Vec<_>>())),
            us(median(&r.max.iter().map(|m| m.max_ns).collect::<Vec<_>>())),
        );
        for (load, rate, runs) in &r.loads {
            let col = |f: fn(&Run) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
            let p99 = col(|x| x.p99_ns);
            let (lo, hi) = range(&p99);
            let _ = writeln!(
                t,
                "| {} | {:.0}% | {} | {:.3} | {:.3} | {:.3}% | {} | {} ({} – {}) | {} | {} |",
                r.fw.label(),
                load * 100.0,
                rate,
                median(&col(|x| x.tx_mpps)),
                median(&col(|x| x.rx_mpps)),
                median(&col(|x| x.loss_ratio * 100.0)),
                us(median(&col(|x| x.p50_ns))),
                us(median(&p99)),
                us(lo),
                us(hi),
                us(median(&col(|x| x.p999_ns))),
                us(median(&col(|x| x.max_ns))),
            );
        }
    }
    t
}

/// The command line as typed, with the program's file name only.
fn command_line() -> String {
    let mut args = std::env::args();
    let prog = args
        .next()
        .and_then(|p| {
            Path::new(&p)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "rampart-perf".into());
    std::iter::once(prog)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}
