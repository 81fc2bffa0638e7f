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

use perf::report::spread;

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
    let rampart = match &opts.rampart {
        Some(p) => p.clone(),
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
    let dir = std::env::temp_dir().join(format!("rampart-perf-forward-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let env = Env {
        huge: !opts.no_huge && free_hugepages_mb() >= 2 * EAL_MEMORY_MB,
        lcores: if cores >= 2 { "0@0,1@1" } else { "0@0,1@0" }.into(),
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
            "{}: rampart {:.2} Mpps on CPU ({:.2} wall), testpmd {:.2} Mpps on CPU ({:.2} wall), ratio {:.1}% on CPU ({:.1}% wall) ({})",
            r.device.name(),
            spread(&cpu_mpps(&r.rampart)).median,
            spread(&mpps(&r.rampart)).median,
            spread(&cpu_mpps(&r.testpmd)).median,
            spread(&mpps(&r.testpmd)).median,
            ratio * 100.0,
            wall_ratio(r) * 100.0,
            if ratio >= 0.9 {
                "meets the 90% target"
            } else {
                "BELOW the 90% target"
            }
        );
    }
    if let Some(path) = &opts.markdown {
        let section = markdown_section(opts, env.huge, &machine, &table);
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
            let p = env.pcap.display();
            // No tx_pcap/tx_iface: net_pcap then drops (and counts) what is sent.
            [
                format!("net_pcap{tag}a,rx_pcap={p},infinite_rx=1"),
                format!("net_pcap{tag}b,rx_pcap={p},infinite_rx=1"),
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
count = 1
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
    let w = &s["workers"][0];
    let packets = w["tx_packets"]
        .as_u64()
        .context("summary: workers[0].tx_packets")?;
    let seconds = s["seconds"].as_f64().context("summary: seconds")?;
    let busy_tsc = w["busy_tsc"].as_u64();
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
        "--nb-cores=1".into(),
        "--rxq=1".into(),
        "--txq=1".into(),
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

/// Seconds the EAL worker threads of `pid` have spent on a CPU, from
/// `/proc/PID/task/TID/schedstat` (its first field is on-CPU nanoseconds). The forwarding
/// lcore is the only worker lcore in these runs.
fn worker_cpu_seconds(pid: u32) -> Option<f64> {
    let mut ns = 0u64;
    let mut found = false;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.contains("worker") {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
        found = true;
    }
    found.then(|| ns as f64 / 1e9)
}

/// Waits for a stopping program, reading its worker lcore's CPU time until it exits (an EAL
/// worker thread sleeps once its job returns, so the last reading is its total).
fn wait_tracking_cpu(
    child: &mut Child,
    what: &str,
) -> Result<(std::process::ExitStatus, Option<f64>)> {
    let mut cpu = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(c) = worker_cpu_seconds(child.id()) {
            cpu = Some(c);
        }
        if let Some(st) = child.try_wait()? {
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

fn table(results: &[DeviceResult]) -> String {
    let mut t = String::from(
        "| device | program | Mpps on CPU, median (min – max) | Mpps wall, median (min – max) | cycles/packet | ratio to testpmd |\n\
         |---|---|---:|---:|---:|---:|\n",
    );
    let range = |v: &[f64]| {
        let m = spread(v);
        format!("{:.2} ({:.2} – {:.2})", m.median, m.min, m.max)
    };
    for r in results {
        for (name, samples, ratio) in [
            ("rampart (bridge)", &r.rampart, Some(ratio(r))),
            ("dpdk-testpmd (io)", &r.testpmd, None),
        ] {
            let c = spread(&cycles(samples, r.tsc_hz)).median;
            let _ = writeln!(
                t,
                "| {} (64 B) | {name} | {} | {} | {} | {} |",
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

fn commit() -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "--short", "HEAD"]) {
        Some(c) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c} (with uncommitted changes)")
            } else {
                c
            }
        }
        None => "unknown".into(),
    }
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

fn markdown_section(opts: &ForwardOpts, huge: bool, machine: &str, table: &str) -> String {
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
         for {} s, alternating which program went first; the table gives the median and range.\n",
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
    let _ = writeln!(s, "- commit: {}", commit());
    let _ = writeln!(s, "- command: `{}`\n", opts.command_line);
    let _ = writeln!(s, "{table}");
    let _ = writeln!(
        s,
        "Target: Rampart's pass-through at least 90% of testpmd's rate."
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
