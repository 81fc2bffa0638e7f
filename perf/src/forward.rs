//! `rampart-perf forward`: Rampart's pass-through rate per worker against `dpdk-testpmd` in io
//! forwarding mode, on the same virtual devices, in the same run. Pass-through means the
//! bridge with neither rules nor connection tracking (`[conntrack] enabled = false`); the
//! stateful pipeline's cost is `rampart-perf stateful`'s.
//!
//! Each case is one program forwarding between two ports with one forwarding lcore for a fixed
//! time; cases run one after the other, never side by side. Both programs get the same EAL memory
//! set-up, lcores, rings (1024 descriptors), burst (32), mempool (16383/16384 mbufs, cache 256).
//! Two rates per case: packets the forwarding lcore sent over the wall-clock seconds it
//! forwarded, and the same packets over the seconds its thread was actually on a CPU (the
//! kernel's schedstat). On a quiet machine with the lcore on its own core the two agree; when
//! other work shares the cores (a build, another benchmark) the wall rate falls with the CPU
//! share while the on-CPU rate stays what the lcore does alone, so the ratio is taken on it.
//! Cycles per packet are TSC cycles on CPU over packets sent (TSC rate from Rampart's summary).
//! Rampart's own `busy_tsc` per packet is printed for each run. testpmd's `--record-core-cycles`
//! is not used: it slows testpmd by about a sixth, which would lower the ceiling.

use anyhow::{bail, Context, Result};
use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A kind of virtual device both programs forward between.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    /// `net_null`: RX hands out zero-filled mbufs, TX frees them.
    Null,
    /// `net_pcap` with `infinite_rx=1` over a capture of 64-byte UDP frames; TX drops.
    Pcap,
}

impl Device {
    fn name(self) -> &'static str {
        match self {
            Device::Null => "net_null",
            Device::Pcap => "net_pcap",
        }
    }
}

/// Options of `rampart-perf forward`.
#[derive(Clone, Debug)]
pub struct ForwardOpts {
    pub seconds: f64,
    pub runs: usize,
    pub devices: Vec<Device>,
    pub markdown: Option<PathBuf>,
    pub no_huge: bool,
    pub rampart: Option<PathBuf>,
    pub testpmd: PathBuf,
    /// The command line as typed, for the record.
    pub command_line: String,
}

/// One measured case.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Packets the forwarding lcore sent.
    packets: u64,
    /// Wall-clock seconds it forwarded.
    seconds: f64,
    /// Seconds its thread was on a CPU (kernel schedstat), when known.
    cpu_seconds: Option<f64>,
    /// Rampart's busy_tsc, when reported.
    busy_tsc: Option<u64>,
    /// TSC ticks per second, when the program reported it.
    tsc_hz: Option<u64>,
}

impl Sample {
    /// Packets per wall-clock second, in millions.
    fn mpps(&self) -> f64 {
        self.packets as f64 / self.seconds / 1e6
    }

    /// Packets per second the forwarding thread spent on a CPU, in millions: what the lcore
    /// would do alone on its core, even when other work shares the machine.
    fn cpu_mpps(&self) -> f64 {
        self.packets as f64 / self.cpu_seconds.unwrap_or(self.seconds) / 1e6
    }
}

use perf::report::{self, spread};

struct DeviceResult {
    device: Device,
    rampart: Vec<Sample>,
    testpmd: Vec<Sample>,
    tsc_hz: f64,
}

/// Where the benchmark runs: memory set-up, lcores, scratch directory.
struct Env {
    dir: PathBuf,
    huge: bool,
    lcores: String,
    /// Forwarding lcores (Rampart's workers, testpmd's forwarding cores), each with its own RX
    /// and TX queue on both ports.
    workers: usize,
    rampart: PathBuf,
    testpmd: PathBuf,
    seconds: f64,
    pcap: PathBuf,
}

/// Runs the benchmark, prints the table and writes it when asked.
pub fn run(opts: &ForwardOpts) -> Result<()> {
    if opts.runs == 0 || opts.seconds <= 0.0 || opts.devices.is_empty() {
        bail!("--runs, --seconds and --devices must be positive and non-empty");
    }
    let rampart = perf::procs::rampart_binary(opts.rampart.as_deref())?;
    let dir = std::env::temp_dir().join(format!("rampart-perf-forward-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let env = Env {
        huge: !opts.no_huge && free_hugepages_mb() >= 2 * EAL_MEMORY_MB,
        lcores: lcore_map(1, cores),
        workers: 1,
        rampart,
        testpmd: opts.testpmd.clone(),
        seconds: opts.seconds,
        pcap: dir.join("udp64.pcap"),
        dir,
    };
    let frames = udp64_frames();
    control::pcap::write_frames(&env.pcap, frames.iter().map(Vec::as_slice))?;

    let machine = machine_info(env.huge, cores);
    eprintln!("rampart-perf: forward: {machine}");
    let mut results = Vec::new();
    for &device in &opts.devices {
        let mut r = DeviceResult {
            device,
            rampart: Vec::new(),
            testpmd: Vec::new(),
            tsc_hz: f64::NAN,
        };
        for k in 0..opts.runs {
            // Alternate which program goes first so drift (thermal, neighbours) hits both.
            let order = if k % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for is_rampart in order {
                let s = if is_rampart {
                    run_rampart(&env, device, k)?
                } else {
                    run_testpmd(&env, device, k)?
                };
                eprintln!(
                    "rampart-perf: {} run {}/{} {:8}: {:7.3} Mpps, {:7.3} Mpps on CPU ({} packets in {:.2} s, {:.2} s on CPU{})",
                    device.name(),
                    k + 1,
                    opts.runs,
                    if is_rampart { "rampart" } else { "testpmd" },
                    s.mpps(),
                    s.cpu_mpps(),
                    s.packets,
                    s.seconds,
                    s.cpu_seconds.unwrap_or(f64::NAN),
                    s.busy_tsc
                        .filter(|_| s.packets > 0)
                        .map(|b| format!(", busy_tsc/packet {:.1}", b as f64 / s.packets as f64))
                        .unwrap_or_default()
                );
                if is_rampart {
                    r.rampart.push(s);
                } else {
                    r.testpmd.push(s);
                }
            }
        }
        // Rampart reports the TSC rate; testpmd runs on the same machine.
        r.tsc_hz = spread(
            &r.rampart
                .iter()
                .filter_map(|s| s.tsc_hz.map(|h| h as f64))
                .collect::<Vec<_>>(),
        )
        .median;
        results.push(r);
    }
    let _ = std::fs::remove_dir_all(&env.dir);

    let table = table(&results);
    println!("{table}");
    for r in &results {
        let ratio = ratio(r);
        println!(
            "{}: rampart {:.2} Mpps on CPU ({:.2} wall), testpmd {:.2} Mpps on CPU ({:.2} wall), ratio {:.1}% on CPU ({:.1}% wall), median of the pairs' ratios {:.1}% ({})",
            r.device.name(),
            spread(&cpu_mpps(&r.rampart)).median,
            spread(&mpps(&r.rampart)).median,
            spread(&cpu_mpps(&r.testpmd)).median,
            spread(&mpps(&r.testpmd)).median,
            ratio * 100.0,
            wall_ratio(r) * 100.0,
            spread(&paired_ratios(r)).median * 100.0,
            if meets_target(r) {
                "meets the 90% target"
            } else {
                "BELOW the 90% target"
            }
        );
    }
    if let Some(path) = &opts.markdown {
        let verdicts = results
            .iter()
            .map(|r| {
                let met = if meets_target(r) { "met" } else { "not met" };
                format!("{} {met}", r.device.name())
            })
            .collect::<Vec<_>>()
            .join(", ");
        let section = markdown_section(opts, env.huge, &machine, &table, &verdicts);
        update_markdown(path, env.huge, &section)?;
        eprintln!("rampart-perf: wrote {}", path.display());
    }
    Ok(())
}

/// EAL memory per process, in MB.
const EAL_MEMORY_MB: u64 = 256;
const MBUFS: u32 = 16383;
const MBUF_CACHE: u32 = 256;
const DESCRIPTORS: u32 = 1024;
/// Frames in the capture replayed by `net_pcap`, and flows among them.
const PCAP_FRAMES: usize = 64;
const PCAP_FLOWS: usize = 16;
/// Bytes of every frame in the capture (no FCS), like net_null's default packet size.
const FRAME_BYTES: usize = 64;

/// 64-byte IPv4/UDP frames over a few flows.
fn udp64_frames() -> Vec<Vec<u8>> {
    // 14 Ethernet + 20 IPv4 + 8 UDP.
    let payload = vec![0x5a; FRAME_BYTES - 42];
    (0..PCAP_FRAMES)
        .map(|i| {
            let flow = (i % PCAP_FLOWS) as u16;
            let spec = FrameSpec::new(
                IpSpec::v4(
                    Ipv4Addr::new(10, 0, 0, 2 + flow as u8),
                    Ipv4Addr::new(198, 51, 100, 10),
                ),
                L4Spec::udp(40000 + flow, 53, &payload),
            );
            let f = spec.build();
            debug_assert_eq!(f.len(), FRAME_BYTES);
            f
        })
        .collect()
}

/// The EAL lcore map for `workers` forwarding lcores on `cores` CPUs: the main lcore on CPU 0,
/// worker i on CPU i (wrapping), so with one worker it has a CPU to itself and with as many
/// workers as CPUs the main lcore (which only waits) shares CPU 0 with the last one.
fn lcore_map(workers: usize, cores: usize) -> String {
    let cores = cores.max(1);
    std::iter::once("0@0".to_string())
        .chain((1..=workers).map(|i| format!("{i}@{}", i % cores)))
        .collect::<Vec<_>>()
        .join(",")
}

fn free_hugepages_mb() -> u64 {
    let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") else {
        return 0;
    };
    let field = |name: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    field("HugePages_Free:") * field("Hugepagesize:") / 1024
}

fn eal_args(env: &Env, prefix: &str) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    if env.huge {
        a.push("--in-memory".into());
    } else {
        a.extend(["--no-huge".into(), "--no-shconf".into()]);
    }
    a.extend([
        "-m".into(),
        EAL_MEMORY_MB.to_string(),
        "--no-pci".into(),
        "--file-prefix".into(),
        prefix.into(),
        format!("--lcores={}", env.lcores),
        "--log-level".into(),
        "*:warning".into(),
    ]);
    a
}

/// The two vdev strings of a case; names are unique per run.
fn vdevs(env: &Env, device: Device, tag: &str) -> [String; 2] {
    match device {
        Device::Null => [format!("net_null{tag}a"), format!("net_null{tag}b")],
        Device::Pcap => {
            // One RX queue per rx_pcap argument. No tx_pcap/tx_iface: net_pcap then drops (and
            // counts) what is sent, on as many TX queues as RX queues.
            let rx = vec![format!("rx_pcap={}", env.pcap.display()); env.workers].join(",");
            [
                format!("net_pcap{tag}a,{rx},infinite_rx=1"),
                format!("net_pcap{tag}b,{rx},infinite_rx=1"),
            ]
        }
    }
}

fn toml_array(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("[{}]", quoted.join(", "))
}

fn run_rampart(env: &Env, device: Device, k: usize) -> Result<Sample> {
    let tag = format!("rp{}{}", std::process::id(), k);
    let prefix = format!("rperf-{}-{}-rampart-{k}", std::process::id(), device.name());
    let [a, b] = vdevs(env, device, &tag);
    let non_ip = match device {
        // net_null frames are zero-filled: ethertype 0, neither IP nor ARP.
        Device::Null => "forward",
        Device::Pcap => "drop",
    };
    let cfg = format!(
        r#"mode = "bridge"
[eal]
args = {eal}
[[port]]
name = "a"
device = "{a}"
[[port]]
name = "b"
device = "{b}"
[bridge]
pairs = [["a", "b"]]
non_ip = "{non_ip}"
[workers]
count = {workers}
[management]
socket = "{socket}"
[mempool]
mbufs = {MBUFS}
cache = {MBUF_CACHE}
[rings]
rx_desc = {DESCRIPTORS}
tx_desc = {DESCRIPTORS}
[conntrack]
enabled = false
"#,
        eal = toml_array(&eal_args(env, &prefix)),
        socket = env.dir.join(format!("{prefix}.sock")).display(),
        workers = env.workers,
    );
    let cfg_path = env.dir.join(format!("{prefix}.toml"));
    std::fs::write(&cfg_path, cfg).with_context(|| format!("writing {}", cfg_path.display()))?;
    let summary = env.dir.join(format!("{prefix}.json"));
    let log = env.dir.join(format!("{prefix}.log"));
    let mut child = Command::new(&env.rampart)
        .arg("run")
        .arg("--config")
        .arg(&cfg_path)
        .arg("--summary-json")
        .arg(&summary)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file(&log)?)
        .spawn()
        .with_context(|| format!("starting {}", env.rampart.display()))?;
    wait_for_line(&mut child, &log, "rampart: running", "rampart")?;
    std::thread::sleep(Duration::from_secs_f64(env.seconds));
    signal(&child, "TERM")?;
    let (status, cpu_seconds) = wait_tracking_cpu(&mut child, "rampart")?;
    if !status.success() {
        bail!(
            "rampart run exited with {status}:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let text = std::fs::read_to_string(&summary)
        .with_context(|| format!("reading {}", summary.display()))?;
    let s: serde_json::Value = serde_json::from_str(&text).context("parsing the summary")?;
    let workers = s["workers"].as_array().context("summary: workers")?;
    if workers.len() != env.workers {
        bail!(
            "rampart ran {} workers, {} asked",
            workers.len(),
            env.workers
        );
    }
    let mut packets = 0;
    let mut busy = Some(0u64);
    for w in workers {
        packets += w["tx_packets"]
            .as_u64()
            .context("summary: workers[].tx_packets")?;
        busy = busy.zip(w["busy_tsc"].as_u64()).map(|(a, b)| a + b);
    }
    let seconds = s["seconds"].as_f64().context("summary: seconds")?;
    let busy_tsc = busy;
    let tsc_hz = s["tsc_hz"].as_u64().filter(|&h| h > 0);
    let dropped = s["dropped"].as_u64().unwrap_or(0) + s["tx_refused"].as_u64().unwrap_or(0);
    if dropped > 0 {
        eprintln!(
            "rampart-perf: warning: rampart dropped {dropped} packets: {}",
            s["drops"]
        );
    }
    Ok(Sample {
        packets,
        seconds,
        cpu_seconds,
        busy_tsc,
        tsc_hz,
    })
}

fn run_testpmd(env: &Env, device: Device, k: usize) -> Result<Sample> {
    let tag = format!("tp{}{}", std::process::id(), k);
    let prefix = format!("rperf-{}-{}-testpmd-{k}", std::process::id(), device.name());
    let log = env.dir.join(format!("{prefix}.log"));
    // Line-buffered stdout so the moment forwarding starts and stops is seen as it happens.
    let mut cmd = Command::new("stdbuf");
    cmd.arg("-oL").arg(&env.testpmd);
    cmd.args(eal_args(env, &prefix));
    for v in vdevs(env, device, &tag) {
        cmd.arg("--vdev").arg(v);
    }
    cmd.arg("--").args([
        "--forward-mode=io".to_string(),
        format!("--nb-cores={}", env.workers),
        format!("--rxq={}", env.workers),
        format!("--txq={}", env.workers),
        format!("--rxd={DESCRIPTORS}"),
        format!("--txd={DESCRIPTORS}"),
        "--burst=32".into(),
        format!("--total-num-mbufs={}", MBUFS + 1),
        format!("--mbcache={MBUF_CACHE}"),
    ]);
    let out = log_file(&log)?;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(out.try_clone().context("duplicating the log file")?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {} (through stdbuf)", env.testpmd.display()))?;
    // Without --interactive or --stats-period, testpmd forwards until stdin ends.
    let started = wait_for_line(&mut child, &log, "Press enter to exit", "dpdk-testpmd")?;
    std::thread::sleep(Duration::from_secs_f64(env.seconds));
    let stdin = child.stdin.take();
    drop(stdin);
    let stopped = wait_for_line(&mut child, &log, "Telling cores to stop", "dpdk-testpmd")
        .unwrap_or_else(|_| Instant::now());
    let (status, cpu_seconds) = wait_tracking_cpu(&mut child, "dpdk-testpmd")?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    if !status.success() {
        bail!("dpdk-testpmd exited with {status}:\n{text}");
    }
    let packets = parse_testpmd(&text)
        .with_context(|| format!("no accumulated forward statistics in:\n{text}"))?;
    Ok(Sample {
        packets,
        seconds: stopped.duration_since(started).as_secs_f64(),
        cpu_seconds,
        busy_tsc: None,
        tsc_hz: None,
    })
}

/// The accumulated TX-packets of all ports from testpmd's final report.
fn parse_testpmd(text: &str) -> Option<u64> {
    let block = &text[text.find("Accumulated forward statistics for all ports")?..];
    let tx = block.find("TX-packets:")?;
    block[tx + "TX-packets:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn log_file(path: &Path) -> Result<std::fs::File> {
    std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))
}

/// Waits until `log` holds `needle`; returns when it was seen. Fails if the process exits first
/// or nothing comes within a minute.
fn wait_for_line(child: &mut Child, log: &Path, needle: &str, what: &str) -> Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return Ok(Instant::now());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited ({status}) before {needle:?}:\n{text}");
        }
        if Instant::now() > deadline {
            let _ = signal(child, "KILL");
            let _ = child.wait();
            bail!("{what}: no {needle:?} within 60 s:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn signal(child: &Child, sig: &str) -> Result<()> {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .context("running kill")?;
    if !st.success() {
        bail!("kill -{sig} {} failed", child.id());
    }
    Ok(())
}

/// On-CPU nanoseconds of each EAL worker thread of `pid` (by thread id), from
/// `/proc/PID/task/TID/schedstat` (its first field). The forwarding lcores are the only worker
/// lcores in these runs.
fn worker_cpu_ns(pid: u32, seen: &mut std::collections::HashMap<String, u64>) {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for t in dir.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.contains("worker") {
            continue;
        }
        let Some(ns) = std::fs::read_to_string(t.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        else {
            continue;
        };
        let e = seen
            .entry(t.file_name().to_string_lossy().into_owned())
            .or_default();
        *e = (*e).max(ns);
    }
}

/// Waits for a stopping program, reading its worker lcore's CPU time until it exits (an EAL
/// worker thread sleeps once its job returns, so the last reading is its total).
fn wait_tracking_cpu(
    child: &mut Child,
    what: &str,
) -> Result<(std::process::ExitStatus, Option<f64>)> {
    // Each thread's last reading counts, also for threads that end before the process does.
    let mut seen = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        worker_cpu_ns(child.id(), &mut seen);
        if let Some(st) = child.try_wait()? {
            let cpu = (!seen.is_empty()).then(|| seen.values().sum::<u64>() as f64 / 1e9);
            return Ok((st, cpu));
        }
        if Instant::now() > deadline {
            let _ = signal(child, "KILL");
            let _ = child.wait();
            bail!("{what} did not stop within 30 s");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn mpps(samples: &[Sample]) -> Vec<f64> {
    samples.iter().map(Sample::mpps).collect()
}

fn cpu_mpps(samples: &[Sample]) -> Vec<f64> {
    samples.iter().map(Sample::cpu_mpps).collect()
}

/// TSC cycles per packet while the forwarding thread was on a CPU.
fn cycles(samples: &[Sample], tsc_hz: f64) -> Vec<f64> {
    samples
        .iter()
        .map(|s| tsc_hz / (s.cpu_mpps() * 1e6))
        .collect()
}

/// Rampart's rate over testpmd's, both per second on CPU (medians).
fn ratio(r: &DeviceResult) -> f64 {
    spread(&cpu_mpps(&r.rampart)).median / spread(&cpu_mpps(&r.testpmd)).median
}

/// The same with wall-clock rates.
fn wall_ratio(r: &DeviceResult) -> f64 {
    spread(&mpps(&r.rampart)).median / spread(&mpps(&r.testpmd)).median
}

/// Run `k`'s Rampart rate over run `k`'s testpmd rate (on CPU), for every run: the two ran
/// back to back, so a slow spell of the machine that spans a pair reaches both sides of it.
fn paired_ratios(r: &DeviceResult) -> Vec<f64> {
    r.rampart
        .iter()
        .zip(&r.testpmd)
        .map(|(a, b)| a.cpu_mpps() / b.cpu_mpps())
        .collect()
}

/// Whether both readings of the ratio (of the medians, and the median of the pairs') reach
/// the 90 % target.
fn meets_target(r: &DeviceResult) -> bool {
    ratio(r) >= 0.9 && spread(&paired_ratios(r)).median >= 0.9
}

fn table(results: &[DeviceResult]) -> String {
    let mut t = String::from(
        "| device | program | Mpps on CPU, median (min – max) | Mpps wall, median (min – max) | cycles/packet | ratio to testpmd | ratio of each pair, median (min – max) |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    );
    let range = |v: &[f64]| {
        let m = spread(v);
        format!("{:.2} ({:.2} – {:.2})", m.median, m.min, m.max)
    };
    for r in results {
        let pairs = spread(&paired_ratios(r));
        let pairs = format!(
            "{:.1}% ({:.1}% – {:.1}%)",
            pairs.median * 100.0,
            pairs.min * 100.0,
            pairs.max * 100.0
        );
        for (name, samples, ratio, pairs) in [
            (
                "rampart (bridge)",
                &r.rampart,
                Some(ratio(r)),
                pairs.as_str(),
            ),
            ("dpdk-testpmd (io)", &r.testpmd, None, ""),
        ] {
            let c = spread(&cycles(samples, r.tsc_hz)).median;
            let _ = writeln!(
                t,
                "| {} (64 B) | {name} | {} | {} | {} | {} | {pairs} |",
                r.device.name(),
                range(&cpu_mpps(samples)),
                range(&mpps(samples)),
                if c.is_finite() {
                    format!("{c:.1}")
                } else {
                    "n/a".into()
                },
                ratio.map_or("(ceiling)".into(), |x| format!("**{:.1}%**", x * 100.0)),
            );
        }
    }
    t
}

/// CPU model, SIMD flags, cores, DPDK version, memory.
fn machine_info(huge: bool, cores: usize) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    };
    let model = field("model name");
    let flags = field("flags");
    let simd: Vec<&str> = flags
        .split_whitespace()
        .filter(|f| {
            [
                "sse4_2",
                "avx",
                "avx2",
                "avx512f",
                "avx512bw",
                "avx512vl",
                "bmi2",
                "aes",
                "pclmulqdq",
                "vpclmulqdq",
                "gfni",
            ]
            .contains(f)
        })
        .collect();
    let virt = if flags.split_whitespace().any(|f| f == "hypervisor") {
        ", virtual machine"
    } else {
        ""
    };
    format!(
        "{model}{virt}; SIMD: {}; {cores} core(s); DPDK {}; {}",
        simd.join(" "),
        dataplane::DPDK_VERSION,
        if huge {
            "2 MB hugepages (--in-memory)"
        } else {
            "no hugepages (--no-huge)"
        }
    )
}

/// The markers around the section `--markdown` owns; one section per memory set-up, so a run
/// with hugepages and one without can sit side by side.
fn markers(huge: bool) -> (String, String) {
    let mode = if huge { "hugepages" } else { "no-huge" };
    (
        format!("<!-- rampart-perf forward {mode}: begin -->"),
        format!("<!-- rampart-perf forward {mode}: end -->"),
    )
}

fn markdown_section(
    opts: &ForwardOpts,
    huge: bool,
    machine: &str,
    table: &str,
    verdicts: &str,
) -> String {
    let (begin, end) = markers(huge);
    let mut s = String::new();
    let _ = writeln!(s, "{begin}");
    let _ = writeln!(
        s,
        "## Forwarding: Rampart against dpdk-testpmd ({})\n",
        if huge {
            "2 MB hugepages"
        } else {
            "no hugepages"
        }
    );
    let _ = writeln!(
        s,
        "One worker lcore forwards between two ports of the same virtual device kind; \
         `dpdk-testpmd --forward-mode=io` on the same devices, with the same EAL memory, lcores, \
         rings ({DESCRIPTORS} descriptors), bursts (32) and mempool ({MBUFS} mbufs, cache \
         {MBUF_CACHE}), is the ceiling. Rates are packets sent by the forwarding lcore per \
         second on CPU (the thread's on-CPU time from the kernel's schedstat, which discounts \
         time other processes took from the core) and per wall-clock second; cycles/packet are \
         TSC cycles on CPU per packet. The ratio compares on-CPU rates. Each case ran {} times \
         for {} s, alternating which program went first; the table gives the median and range. \
         The last column divides each run of Rampart by the testpmd run beside it (the two ran \
         back to back, so a slow spell of the machine that spans a pair reaches both sides); \
         the target counts as met only when both readings of the ratio reach it.\n",
        opts.runs, opts.seconds
    );
    let _ = writeln!(
        s,
        "- `net_null`: zero-filled 64-byte frames (ethertype 0), so Rampart's bridge runs with \
         `non_ip = \"forward\"`; the parser still reads every frame.\n\
         - `net_pcap`: `infinite_rx=1` over a capture of {PCAP_FRAMES} IPv4/UDP frames of \
         {FRAME_BYTES} bytes in {PCAP_FLOWS} flows (`dataplane::wire::builder`), no TX capture \
         (the PMD drops what it is given); each RX copies a frame into a fresh mbuf.\n"
    );
    let _ = writeln!(s, "- machine: {machine}");
    let _ = writeln!(s, "- commit: {}", report::commit());
    let _ = writeln!(s, "- command: `{}`\n", opts.command_line);
    let _ = writeln!(s, "{table}");
    let _ = writeln!(
        s,
        "Target: Rampart's pass-through at least 90% of testpmd's rate: {verdicts}."
    );
    let _ = write!(s, "{end}");
    s
}

fn update_markdown(path: &Path, huge: bool, section: &str) -> Result<()> {
    let (begin, end) = markers(huge);
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{section}{}", &old[..b], &old[e + end.len()..])
        }
        _ if old.trim().is_empty() => format!("# Benchmarks\n\n{section}\n"),
        _ => format!("{}\n\n{section}\n", old.trim_end()),
    };
    let mut f =
        std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?;
    f.write_all(new.as_bytes())?;
    Ok(())
}

/// One device and worker count of `rampart-perf scaling`.
struct ScalingRow {
    device: Device,
    workers: usize,
    lcores: String,
    rampart: Vec<Sample>,
    testpmd: Vec<Sample>,
}

/// `rampart-perf scaling`: the forwarding case of [`run`] with 1, then N forwarding lcores,
/// each with its own RX and TX queue on both ports, Rampart's bridge beside testpmd io with the
/// same number of forwarding cores and queues.
pub fn run_scaling(opts: &ForwardOpts, workers: &[usize]) -> Result<()> {
    if opts.runs == 0 || opts.seconds <= 0.0 || opts.devices.is_empty() || workers.is_empty() {
        bail!("--runs, --seconds, --devices and --workers must be positive and non-empty");
    }
    if workers.iter().any(|&w| w == 0 || w > 16) {
        bail!("--workers: each count must be between 1 and 16");
    }
    let rampart = perf::procs::rampart_binary(opts.rampart.as_deref())?;
    let dir = std::env::temp_dir().join(format!("rampart-perf-scaling-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut env = Env {
        huge: !opts.no_huge && free_hugepages_mb() >= 2 * EAL_MEMORY_MB,
        lcores: lcore_map(1, cores),
        workers: 1,
        rampart,
        testpmd: opts.testpmd.clone(),
        seconds: opts.seconds,
        pcap: dir.join("udp64.pcap"),
        dir,
    };
    let frames = udp64_frames();
    control::pcap::write_frames(&env.pcap, frames.iter().map(Vec::as_slice))?;
    let machine = machine_info(env.huge, cores);
    let load_before = report::loadavg();
    let mut rows = Vec::new();
    for &device in &opts.devices {
        for &w in workers {
            env.workers = w;
            env.lcores = lcore_map(w, cores);
            let mut row = ScalingRow {
                device,
                workers: w,
                lcores: env.lcores.clone(),
                rampart: Vec::new(),
                testpmd: Vec::new(),
            };
            for k in 0..opts.runs {
                let order = if k % 2 == 0 {
                    [true, false]
                } else {
                    [false, true]
                };
                for is_rampart in order {
                    let serial = w * 1000 + k;
                    let s = if is_rampart {
                        run_rampart(&env, device, serial)?
                    } else {
                        run_testpmd(&env, device, serial)?
                    };
                    eprintln!(
                        "rampart-perf scaling: {} {w} worker(s) run {}/{} {:8}: {:7.3} Mpps wall, {:7.3} Mpps per worker on CPU ({} packets, {:.2} s, {:.2} s on CPU)",
                        device.name(),
                        k + 1,
                        opts.runs,
                        if is_rampart { "rampart" } else { "testpmd" },
                        s.mpps(),
                        s.cpu_mpps(),
                        s.packets,
                        s.seconds,
                        s.cpu_seconds.unwrap_or(f64::NAN),
                    );
                    if is_rampart {
                        row.rampart.push(s);
                    } else {
                        row.testpmd.push(s);
                    }
                }
            }
            rows.push(row);
        }
    }
    let _ = std::fs::remove_dir_all(&env.dir);
    let table = scaling_table(&rows);
    println!("{table}");
    if let Some(path) = &opts.markdown {
        let mut body =
            String::from("## Scaling from 1 to N workers: Rampart against dpdk-testpmd\n\n");
        let _ = writeln!(
            body,
            "The forwarding case above with 1, then {} forwarding lcores: Rampart's bridge (pass-through, `[conntrack] enabled = false`, `[workers] count = N`) and `dpdk-testpmd --forward-mode=io --nb-cores=N --rxq=N --txq=N`, each lcore polling its own RX queue of both ports and sending on its own TX queue (`net_null`: every queue makes its own zero-filled frames; `net_pcap`: one `rx_pcap` per queue over the same capture, `infinite_rx=1`). Same EAL memory, rings, bursts and mempool as the forwarding case; lcores as in the table (the main lcore only waits). Each case ran {} times for {} s, alternating which program went first; medians with their range. *Wall* is packets sent by all forwarding lcores over the wall-clock seconds; *per worker on CPU* is the same packets over the seconds the forwarding threads were on a CPU (summed over threads), i.e. what one lcore does while it runs. Speed-up is the wall rate over the same program's rate with 1 lcore.\n",
            workers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", then "),
            opts.runs,
            opts.seconds
        );
        let _ = writeln!(body, "- machine: {machine}");
        let _ = writeln!(
            body,
            "- machine load (1-minute load average) before and after: {load_before} and {}",
            report::loadavg()
        );
        let _ = writeln!(body, "- commit: {}", report::commit());
        let _ = writeln!(body, "- command: `{}`\n", opts.command_line);
        body.push_str(&table);
        body.push_str(SCALING_MODEL);
        perf::report::replace_section(path, "rampart-perf scaling", &body)?;
        eprintln!("rampart-perf: wrote {}", path.display());
    }
    Ok(())
}

/// What more cores give, and why: written under the scaling table.
const SCALING_MODEL: &str = "
**What this machine can show.** It has 2 virtual CPUs, shared with other work. With 2 forwarding lcores, each has at most one CPU and the main lcore and everything else on the machine (the other program's idle threads, the kernel, other jobs) take turns with them, so the 2-lcore rows measure two busy-polling threads competing for a whole machine, not two cores' worth of forwarding. A speed-up close to 2 on the wall rate is not expected here; what the table can show is that the per-worker rate on CPU stays where it was with one worker (nothing per packet grows with the worker count), and that testpmd, which shares nothing either, scales the same way on the same CPUs. When the per-worker rate on CPU falls for both programs alike once the second lcore runs, the cause is something the two virtual CPUs share below the programs (the host's scheduling of the vCPUs, which may be sibling hyperthreads of one physical core, and its caches and memory), since neither program's workers share anything writable.

**The model of what more cores give.** Every worker owns one RX and one TX queue of every port, its own mbuf cache, its own connection table shard (the connections whose packets the NIC's RSS hash brings to it), its own counters and its own TX buffers. What workers share is read-only on the packet path: the published rule set and classifier (swapped by pointer with a quiescent-state wait, never locked), the configuration, and the mempool behind the per-lcore caches. So a packet costs the same cycles whether one worker runs or sixteen, and the rate is N times one worker's until something outside the workers is the limit:

- **NIC queues and RSS.** A worker gets only the packets the NIC's hash sends to its queue. A few heavy flows (or a hash that maps them together) load some workers and idle others; the aggregate is then N times the slowest share, not N times the average. The NIC's own packet rate per port (about 148.8 Mpps at 100 GbE, less on many NICs) caps the sum.
- **Memory bandwidth and the last-level cache.** Packets that the NIC writes and the CPU reads (DDIO into the LLC where it exists), connection tables larger than the cache (each new connection or cold entry a DRAM access, prefetched a burst ahead), and mbuf recycling all draw on a resource every core shares; with many cores and large tables, misses per packet times packets per second reaches the memory system's limit before the cores' cycles run out.
- **Hand-off of packets another worker owns.** With connection tracking and more than one worker, a packet whose connection was created on another worker (the reply direction when RSS is not symmetric, or NAT's translated tuple) goes to that worker over a single-producer ring (`[workers] handoff_ring`). Each handed-off packet costs an enqueue, a dequeue and a cache line moving between cores; a symmetric RSS key (both directions of a connection hash to one queue) keeps this share near zero, and with it the scaling near linear.
";

fn scaling_table(rows: &[ScalingRow]) -> String {
    let mut t = String::from(
        "| device | workers (lcores) | program | Mpps wall, median (min – max) | Mpps per worker on CPU | speed-up over 1 worker (wall) | Rampart / testpmd (wall) |\n|---|---|---|---:|---:|---:|---:|\n",
    );
    let range = |v: &[f64]| {
        let m = spread(v);
        format!("{:.2} ({:.2} – {:.2})", m.median, m.min, m.max)
    };
    for r in rows {
        let base = rows.iter().find(|b| b.device == r.device && b.workers == 1);
        let rp = spread(&mpps(&r.rampart)).median;
        let tp = spread(&mpps(&r.testpmd)).median;
        for (name, samples, ratio) in [
            ("rampart (bridge)", &r.rampart, Some(rp / tp)),
            ("dpdk-testpmd (io)", &r.testpmd, None),
        ] {
            let wall = spread(&mpps(samples)).median;
            let speedup = base
                .map(|b| {
                    let b = if ratio.is_some() {
                        &b.rampart
                    } else {
                        &b.testpmd
                    };
                    format!("{:.2}x", wall / spread(&mpps(b)).median)
                })
                .unwrap_or_else(|| "n/a".into());
            let _ = writeln!(
                t,
                "| {} (64 B) | {} (`{}`) | {name} | {} | {:.2} | {speedup} | {} |",
                r.device.name(),
                r.workers,
                r.lcores,
                range(&mpps(samples)),
                spread(&cpu_mpps(samples)).median,
                ratio.map_or("(ceiling)".into(), |x| format!("{:.1}%", x * 100.0)),
            );
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_64_byte_udp_that_parse() {
        for f in udp64_frames() {
            assert_eq!(f.len(), FRAME_BYTES);
            let info = dataplane::wire::parse_frame(&f).expect("parses");
            assert_eq!(info.proto(), Some(17));
        }
    }

    #[test]
    fn lcore_maps_give_each_worker_a_cpu_in_turn() {
        assert_eq!(lcore_map(1, 2), "0@0,1@1");
        assert_eq!(lcore_map(2, 2), "0@0,1@1,2@0");
        assert_eq!(lcore_map(1, 1), "0@0,1@0");
        assert_eq!(lcore_map(3, 4), "0@0,1@1,2@2,3@3");
    }

    #[test]
    fn parses_testpmd_final_report() {
        let text =
            "  +++++++++++++++ Accumulated forward statistics for all ports+++++++++++++++\n\
                    \x20 RX-packets: 178353920      RX-dropped: 0             RX-total: 178353920\n\
                    \x20 TX-packets: 178353900      TX-dropped: 0             TX-total: 178353920\n\
                    \x20 ++++++++\n";
        assert_eq!(parse_testpmd(text), Some(178353900));
    }

    #[test]
    fn markdown_section_is_replaced_in_place() {
        let dir = std::env::temp_dir().join(format!("rampart-perf-md-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("B.md");
        std::fs::write(&p, "# Benchmarks\n\nintro\n").unwrap();
        let (b, e) = markers(true);
        let (b2, e2) = markers(false);
        update_markdown(&p, true, &format!("{b}\none\n{e}")).unwrap();
        update_markdown(&p, false, &format!("{b2}\nother\n{e2}")).unwrap();
        update_markdown(&p, true, &format!("{b}\ntwo\n{e}")).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("# Benchmarks\n\nintro\n"));
        assert!(text.contains("two") && !text.contains("one") && text.contains("other"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
