//! `rampart-perf conn-rate`: TCP connections per second through Rampart with connection
//! tracking and a stateful rule set, beside the same generator through Rampart's pass-through
//! and through `dpdk-testpmd` io forwarding on the same `net_memif` devices.
//!
//! The generator (`rampart-perf loadgen --churn D --both-sides`, its own process, one lcore) is
//! the client on one memif pair and the server on the other: SYN, SYN+ACK, ACK, D data
//! segments, FIN+ACK both ways and the last ACK, each segment sent when the one it answers has
//! come through the forwarder, so conntrack sees every connection open, reach ESTABLISHED and
//! close. At most `--inflight` connections are open at once; the figure is connections
//! completed (the server side received the last ACK) per second.

use crate::procs::{self, vdev_eal};
use crate::report;
use anyhow::{bail, Context, Result};
use dataplane::classify::classbench::{synth_rules, SynthConfig};
use dataplane::wire::Family;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Options of `rampart-perf conn-rate`.
#[derive(Clone, Debug, clap::Args)]
pub struct ConnArgs {
    /// Seconds each generator run opens connections.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Runs of each case; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Data segments per connection (client to server).
    #[arg(long, default_value_t = 1)]
    pub data: u32,
    /// Connections open at once, at most.
    #[arg(long, default_value_t = 1024)]
    pub inflight: u64,
    /// Synthetic ClassBench-like rules in the stateful set (besides the state rules).
    #[arg(long, default_value_t = 10_000)]
    pub rules: usize,
    /// Conntrack entries (`[conntrack] max`); completed connections stay in TIME_WAIT, so this
    /// must hold every connection of a run.
    #[arg(long, default_value_t = 1_048_576)]
    pub ct_max: u32,
    /// Lcore map of the forwarder.
    #[arg(long, default_value = "0@0,1@1")]
    pub fw_lcores: String,
    /// Lcore map of the generator (one worker lcore runs both sides).
    #[arg(long, default_value = "0@0,1@0")]
    pub gen_lcores: String,
    /// Write (or replace) the connection-rate section of this markdown file.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// The rampart binary (default: next to this one).
    #[arg(long)]
    pub rampart: Option<PathBuf>,
    /// The testpmd binary.
    #[arg(long, default_value = "dpdk-testpmd")]
    pub testpmd: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Forwarder {
    Stateful,
    PassThrough,
    Testpmd,
}

impl Forwarder {
    fn label(self) -> &'static str {
        match self {
            Forwarder::Stateful => "rampart (conntrack, stateful set)",
            Forwarder::PassThrough => "rampart (pass-through)",
            Forwarder::Testpmd => "dpdk-testpmd (io)",
        }
    }
}

/// One generator run.
#[derive(Clone, Copy, Debug)]
struct Run {
    per_second: f64,
    opened: u64,
    completed: u64,
    abandoned: u64,
    stalls: u64,
    /// Segments both sides sent, per second of the run.
    segments_mpps: f64,
}

const GEN_SRC: &str = "10.0.0.0-10.0.255.255";
const GEN_DST: &str = "198.19.0.1";

/// The stateful set: established and related accepted, invalid dropped, the synthetic rules,
/// new TCP connections to port 80 of the server accepted; policy DROP.
fn stateful_rules(n: usize) -> String {
    let synth = synth_rules(&SynthConfig {
        rules: n,
        family: Family::V4,
        seed: 80,
        default_rule: false,
    });
    let body = crate::bench_swap::iptables_text(&synth);
    let body: String = body
        .lines()
        .filter(|l| l.starts_with("-A "))
        .map(|l| format!("{l}\n"))
        .collect();
    format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n\
         -A FORWARD -m conntrack --ctstate INVALID -j DROP\n\
         {body}-A FORWARD -d {GEN_DST}/32 -p tcp --dport 80 -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n"
    )
}

struct Bench<'a> {
    args: &'a ConnArgs,
    dir: PathBuf,
    rampart: PathBuf,
    loadgen: PathBuf,
    rules: PathBuf,
    serial: u32,
}

impl Bench<'_> {
    fn start(&self, fw: Forwarder, n: u32) -> Result<Child> {
        let tag = format!("cr{}x{n}", std::process::id() % 100_000);
        let (a, b) = (
            self.dir.join(format!("a{n}.sock")),
            self.dir.join(format!("b{n}.sock")),
        );
        let dev = |side: &str, p: &std::path::Path| {
            format!(
                "net_memif{tag}{side},role=server,socket={},rsize=12",
                p.display()
            )
        };
        let log = std::fs::File::create(self.dir.join(format!("fw{n}.log")))?;
        let mut cmd = match fw {
            Forwarder::Testpmd => {
                let mut c = Command::new(&self.args.testpmd);
                c.args(vdev_eal(&tag, &self.args.fw_lcores))
                    .arg(format!("--vdev={}", dev("a", &a)))
                    .arg(format!("--vdev={}", dev("b", &b)))
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
            Forwarder::Stateful | Forwarder::PassThrough => {
                let tail = if fw == Forwarder::Stateful {
                    format!(
                        "[rules]\nipv4 = \"{}\"\n[conntrack]\nmax = {}\n",
                        self.rules.display(),
                        self.args.ct_max
                    )
                } else {
                    "[conntrack]\nenabled = false\n".into()
                };
                let cfg = format!(
                    "mode = \"bridge\"\n[eal]\nargs = [{}]\n[[port]]\nname = \"a\"\ndevice = \"{}\"\n[[port]]\nname = \"b\"\ndevice = \"{}\"\n[bridge]\npairs = [[\"a\", \"b\"]]\n[management]\nsocket = \"{}/m{n}.sock\"\n[mempool]\nmbufs = 16383\n[rings]\nrx_desc = 1024\ntx_desc = 1024\n{tail}",
                    vdev_eal(&tag, &self.args.fw_lcores)
                        .iter()
                        .map(|s| format!("{s:?}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    dev("a", &a),
                    dev("b", &b),
                    self.dir.display(),
                );
                let path = self.dir.join(format!("fw{n}.toml"));
                std::fs::write(&path, cfg)?;
                let mut c = Command::new(&self.rampart);
                c.args(["run", "--config"]).arg(path);
                c
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", fw.label()))
    }

    fn generate(&mut self, fw: Forwarder) -> Result<Run> {
        self.serial += 1;
        let n = self.serial;
        let mut child = self.start(fw, n)?;
        let r = self.generate_through(&mut child, n);
        procs::stop(&mut child);
        r.with_context(|| format!("{} run {n} (logs: fw{n}.log, gen{n}.log)", fw.label()))
    }

    fn generate_through(&self, fw: &mut Child, n: u32) -> Result<Run> {
        let prefix = format!("crg{}x{n}", std::process::id() % 100_000);
        let json = self.dir.join(format!("gen{n}.json"));
        let log = std::fs::File::create(self.dir.join(format!("gen{n}.log")))?;
        let sock = |side: &str| self.dir.join(format!("{side}{n}.sock"));
        let mut gen = Command::new(&self.loadgen)
            .arg("loadgen")
            .arg("--tx")
            .arg(format!(
                "net_memif{prefix}0,role=client,socket={},rsize=12",
                sock("a").display()
            ))
            .arg("--rx")
            .arg(format!(
                "net_memif{prefix}1,role=client,socket={},rsize=12",
                sock("b").display()
            ))
            .args(["--quiet", "--linger", "--proto", "tcp", "--both-sides"])
            .args(["--churn", &self.args.data.to_string()])
            .args(["--inflight", &self.args.inflight.to_string()])
            .args(["--seconds", &self.args.seconds.to_string()])
            .args(["--src-ip", GEN_SRC, "--dst-ip", GEN_DST, "--dport", "80"])
            .args(["--sport", "1024-65535", "--flows", "4000000000"])
            .arg("--json")
            .arg(&json)
            .arg("--")
            .args(vdev_eal(&prefix, &self.args.gen_lcores))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("running rampart-perf loadgen")?;
        let deadline = Instant::now() + Duration::from_secs_f64(self.args.seconds + 90.0);
        let waited = loop {
            if json.exists() {
                break Ok(());
            }
            if let Some(st) = gen.try_wait()? {
                break Err(anyhow::anyhow!("loadgen exited ({st}) without a report"));
            }
            if let Some(st) = fw.try_wait()? {
                break Err(anyhow::anyhow!(
                    "the forwarder exited ({st}) during the run"
                ));
            }
            if Instant::now() > deadline {
                break Err(anyhow::anyhow!("loadgen gave no report in time"));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The forwarder stops before the generator closes its memif ports (see bench_latency).
        procs::stop(fw);
        procs::stop(&mut gen);
        waited?;
        let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
        let c = &j["connections"];
        let u = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        let secs = c["seconds"].as_f64().unwrap_or(0.0);
        let segments = u(&j["client"]["tx_packets"]) + u(&j["server"]["tx_packets"]);
        Ok(Run {
            per_second: c["per_second"].as_f64().unwrap_or(0.0),
            opened: u(&c["opened"]),
            completed: u(&c["completed"]),
            abandoned: u(&c["abandoned"]),
            stalls: u(&c["stalls"]),
            segments_mpps: if secs > 0.0 {
                segments as f64 / secs / 1e6
            } else {
                0.0
            },
        })
    }
}

/// Runs the benchmark; prints the table and writes it when asked.
pub fn run(args: &ConnArgs) -> Result<()> {
    if args.runs == 0 || args.seconds <= 0.0 || args.inflight == 0 {
        bail!("--runs, --seconds and --inflight must be positive");
    }
    let rampart = procs::rampart_binary(args.rampart.as_deref())?;
    let tmp = tempfile::Builder::new()
        .prefix("rampart-perf-conn")
        .tempdir()?;
    let rules = tmp.path().join("stateful.rules");
    std::fs::write(&rules, stateful_rules(args.rules))?;
    let mut bench = Bench {
        args,
        dir: tmp.path().to_path_buf(),
        rampart,
        loadgen: std::env::current_exe().context("locating rampart-perf")?,
        rules,
        serial: 0,
    };
    let forwarders = [
        Forwarder::Stateful,
        Forwarder::PassThrough,
        Forwarder::Testpmd,
    ];
    let mut results: Vec<Vec<Run>> = vec![Vec::new(); forwarders.len()];
    let load_before = report::loadavg();
    let measured = (|| -> Result<()> {
        for k in 0..args.runs {
            // Rotate which forwarder goes first, so drift reaches all alike.
            for i in 0..forwarders.len() {
                let i = (i + k) % forwarders.len();
                let fw = forwarders[i];
                let r = bench.generate(fw)?;
                eprintln!(
                    "rampart-perf conn-rate: {} run {}/{}: {:.0} connections/s ({} opened, {} completed, {} abandoned), {:.3} M segments/s",
                    fw.label(),
                    k + 1,
                    args.runs,
                    r.per_second,
                    r.opened,
                    r.completed,
                    r.abandoned,
                    r.segments_mpps
                );
                results[i].push(r);
            }
        }
        Ok(())
    })();
    if let Err(e) = measured {
        let kept = tmp.keep();
        return Err(e.context(format!("logs kept in {}", kept.display())));
    }
    let mut table = String::from(
        "| forwarder | connections/s, median (min – max) | ratio to testpmd | opened | completed | never completed | stalls | segments/s (M) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let tp = report::median(&results[2].iter().map(|r| r.per_second).collect::<Vec<_>>());
    for (fw, runs) in forwarders.iter().zip(&results) {
        let rate: Vec<f64> = runs.iter().map(|r| r.per_second).collect();
        let s = report::spread(&rate);
        let med = |f: fn(&Run) -> f64| report::median(&runs.iter().map(f).collect::<Vec<_>>());
        let _ = writeln!(
            table,
            "| {} | {:.0} ({:.0} – {:.0}) | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.3} |",
            fw.label(),
            s.median,
            s.min,
            s.max,
            if *fw == Forwarder::Testpmd {
                "(ceiling)".to_string()
            } else {
                format!("{:.1}%", s.median / tp * 100.0)
            },
            med(|r| r.opened as f64),
            med(|r| r.completed as f64),
            med(|r| r.abandoned as f64),
            med(|r| r.stalls as f64),
            med(|r| r.segments_mpps),
        );
    }
    println!("{table}");
    if let Some(path) = &args.markdown {
        let mut s =
            String::from("## New TCP connections per second, both sides of every connection\n\n");
        let _ = writeln!(
            s,
            "`rampart-perf loadgen --churn {d} --both-sides` in its own process (one lcore, `--lcores={gl}`) is the client on one `net_memif` pair and the server on the other: every connection is a SYN from the client, the server's SYN+ACK, the client's ACK, {d} data segment(s) of 64-byte frames, the client's FIN+ACK, the server's FIN+ACK and the client's last ACK ({seg} segments), each sent when the segment it answers has come through the forwarder; at most {inf} connections are open at once, each on a new 5-tuple (10.0.0.0/16, ports 1024-65535, to {GEN_DST}:80). Connections/s = connections whose last ACK reached the server side, over the time from the first SYN to the last completion; never completed = connections whose last ACK never arrived (a segment lost or refused: nothing is retransmitted); stalls = times nothing came back for half a second while connections were open (the generator then gives them up and opens new ones; those that complete later count as completed, so a stall costs time, not connections). Forwarders, one lcore each (`--lcores={fl}`): Rampart with connection tracking (`[conntrack] max = {max}`, so the TIME_WAIT entries of a whole run fit) and a stateful set (ESTABLISHED,RELATED accepted, INVALID dropped, {rules} synthetic ClassBench-like rules, NEW TCP to port 80 accepted, policy DROP); Rampart's pass-through (`[conntrack] enabled = false`, no rules); and `dpdk-testpmd --forward-mode=io`, the ceiling, on the same devices. Each case ran {runs} times for {secs} s, the forwarders in rotating order; medians. The generator's single lcore shares CPU 0 with the forwarder's main lcore and builds every segment's checksums, so the testpmd row is also the generator's own ceiling here. With the open connections bounded, the rate is the bound over a connection's lifetime (four round trips through the forwarder, each through both processes' memif rings and the scheduler of a shared 2-vCPU machine), so these figures weigh each forwarder's latency per segment as much as its cycles per segment; Rampart's own cost per new connection on one core, without I/O, is in the stateful section (`rampart-perf stateful`).\n",
            d = args.data,
            gl = args.gen_lcores,
            seg = args.data + 6,
            inf = args.inflight,
            fl = args.fw_lcores,
            max = args.ct_max,
            rules = args.rules,
            runs = args.runs,
            secs = args.seconds,
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
            "- command: `rampart-perf conn-rate --seconds {} --runs {} --data {} --inflight {} --rules {}`\n",
            args.seconds, args.runs, args.data, args.inflight, args.rules
        );
        s += &table;
        report::replace_section(path, "rampart-perf conn-rate", &s)?;
        eprintln!("rampart-perf: wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stateful_set_compiles() {
        let text = stateful_rules(200);
        let rs = control::rules::compile_iptables(
            "t",
            &text,
            Family::V4,
            &[],
            control::rules::Hook::Forward,
        )
        .unwrap_or_else(|e| panic!("{}", e[0]));
        assert!(rs.rules.len() >= 203);
        assert!(text.contains(":FORWARD DROP"));
    }
}
