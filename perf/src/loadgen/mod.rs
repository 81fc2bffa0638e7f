//! `rampart-perf loadgen`: a DPDK traffic generator.
//!
//! One lcore transmits on the TX port, at a set rate paced by the TSC or as fast as the device
//! takes packets; another lcore (or the same one when the EAL gives only one worker lcore)
//! receives on the RX port, reads the signature at the tail of each frame and records the
//! latency from the TSC stamped at transmission in an HDR histogram. The main lcore prints the
//! rates once a second and writes the final report.
//!
//! Packets the device refuses are kept and offered again (never counted as sent), so with
//! `--count` exactly that many packets leave the TX port. Latency includes the time a packet
//! waited in the generator's own TX batch when the device pushed back.

pub mod conn;
pub mod frames;

use anyhow::{bail, Context, Result};
use dataplane::dpdk::{
    tsc, tsc_hz, Eal, Mempool, Port, PortConfig, PortStats, RxBurst, RxQueue, TxBatch, TxQueue,
    MAX_BURST,
};
use dataplane::wire::ethernet::MacAddr;
use frames::{read_signature, AddrRange, PortRange, Proto, Sequencer, TrafficSpec, FCS_LEN, IMIX};
use hdrhistogram::Histogram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `rampart-perf loadgen`.
#[derive(Clone, Debug, clap::Args)]
pub struct LoadgenArgs {
    /// The TX device: a vdev with its arguments (added as `--vdev`), e.g.
    /// `net_memif0,role=client,socket=/tmp/a.sock`, or a PCI address (added as `-a`), or the
    /// name of a device the EAL arguments already probe.
    #[arg(long)]
    pub tx: String,
    /// The RX device (default: the TX device).
    #[arg(long)]
    pub rx: Option<String>,
    /// Packets per second, paced by the TSC; 0 sends as fast as the device takes them.
    #[arg(long, default_value_t = 0)]
    pub rate_pps: u64,
    /// Packets to send (default: as many as `--seconds` allows); with `--both-sides`, connections.
    #[arg(long)]
    pub count: Option<u64>,
    /// Seconds to send (default 10 when no `--count` is given).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Frame sizes with FCS, used in turn (`64`, `64,128,1518`), or `imix` (64/594/1518, 7:4:1).
    /// Sizes too small for the headers and the 16-byte signature are raised to fit.
    #[arg(long, default_value = "64")]
    pub size: String,
    /// Largest IP datagram.
    #[arg(long, default_value_t = 1500)]
    pub mtu: u16,
    #[arg(long, value_enum, default_value = "udp")]
    pub proto: Proto,
    /// Source addresses, `A` or `A-B` (IPv6 addresses make IPv6 traffic).
    #[arg(long, default_value = "198.18.0.1")]
    pub src_ip: String,
    /// Destination addresses, `A` or `A-B`.
    #[arg(long, default_value = "198.19.0.1")]
    pub dst_ip: String,
    /// Source ports (ICMP: echo identifiers), `P` or `P-Q`.
    #[arg(long, default_value = "1024-65535")]
    pub sport: String,
    /// Destination ports, `P` or `P-Q`.
    #[arg(long, default_value = "5001")]
    pub dport: String,
    /// Distinct flows, cycled in order (the source port varies fastest).
    #[arg(long, default_value_t = 1)]
    pub flows: u64,
    /// Share of packets (churn: of connections) sent to `--drop-dport` instead, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    pub drop_share: f64,
    /// The destination port the rules under test drop.
    #[arg(long, default_value_t = 9)]
    pub drop_dport: u16,
    /// TCP connection churn: each connection (the next flow) is a SYN, this many data segments
    /// and a FIN.
    #[arg(long)]
    pub churn: Option<u32>,
    /// Send the 5-tuples of a ClassBench trace file (`src dst sport dport proto ...` per line,
    /// addresses as decimal integers, as the `*_trace` files of ClassBench): one packet per
    /// line, in the file's order, then again from the first line. TCP lines become ACK
    /// segments, UDP datagrams, ICMP echo requests (identifier: the source port), any other
    /// protocol an IPv4 payload of that protocol number. Replaces `--proto`, the address and
    /// port ranges and `--flows`.
    #[arg(long, conflicts_with_all = ["churn", "flows", "drop_share"])]
    pub trace: Option<PathBuf>,
    /// With `--churn D`: both sides of every connection. The TX port is the client side, the RX
    /// port the server side: SYN out of the TX port, SYN+ACK back from the RX port when the SYN
    /// has come through, then ACK, D data segments and FIN+ACK from the client, FIN+ACK from the
    /// server, the last ACK from the client; each segment sent when the one it answers arrived.
    /// Reports connections per second completed (see docs/loadgen.md).
    #[arg(long, requires = "churn", conflicts_with = "drop_share")]
    pub both_sides: bool,
    /// With `--both-sides`: connections open at once, at most.
    #[arg(long, default_value_t = 4096)]
    pub inflight: u64,
    /// With `--both-sides`: new connections per second (0: as fast as `--inflight` allows).
    #[arg(long, default_value_t = 0)]
    pub conn_rate: u64,
    #[arg(long, default_value = "02:00:00:00:00:01")]
    pub src_mac: String,
    #[arg(long, default_value = "02:00:00:00:00:02")]
    pub dst_mac: String,
    /// Packets built and offered per TX burst (at most 32).
    #[arg(long, default_value_t = 32)]
    pub burst: usize,
    /// After the last packet is sent, stop receiving once nothing arrived for this long.
    #[arg(long, default_value_t = 500)]
    pub drain_ms: u64,
    /// Seconds to wait for the ports to come up (for memif: the peer to connect).
    #[arg(long, default_value_t = 20.0)]
    pub link_timeout: f64,
    /// Mbufs in the generator's pool.
    #[arg(long, default_value_t = 16383)]
    pub mbufs: u32,
    /// RX and TX descriptors per queue.
    #[arg(long, default_value_t = 1024)]
    pub desc: u16,
    /// Write the final report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// After the report, keep the ports up until SIGINT or SIGTERM. A `net_memif` peer whose
    /// lcore is polling when this side disconnects can crash (a race in DPDK 22.11's memif
    /// driver, seen with testpmd): a script stops the peer first, then the generator.
    #[arg(long)]
    pub linger: bool,
    /// No live lines, only the final report.
    #[arg(long)]
    pub quiet: bool,
    /// EAL arguments, after `--` (default: no hugepages, no PCI, lcores 0 and 1 on CPUs 0 and 1,
    /// a private file prefix).
    #[arg(last = true)]
    pub eal: Vec<String>,
}

impl LoadgenArgs {
    /// The traffic the options describe.
    pub fn traffic(&self) -> Result<TrafficSpec> {
        let sizes = if self.size.eq_ignore_ascii_case("imix") {
            IMIX.to_vec()
        } else {
            self.size
                .split(',')
                .map(|s| {
                    s.trim()
                        .parse::<u16>()
                        .ok()
                        .filter(|&v| v >= 64)
                        .with_context(|| format!("--size: {s:?} is not a frame size of 64 or more"))
                })
                .collect::<Result<_>>()?
        };
        if !(0.0..=1.0).contains(&self.drop_share) {
            bail!("--drop-share must be between 0 and 1");
        }
        let mac = |s: &str| -> Result<MacAddr> {
            let b: Vec<u8> = s
                .split(':')
                .map(|x| u8::from_str_radix(x, 16))
                .collect::<Result<_, _>>()
                .ok()
                .filter(|b: &Vec<u8>| b.len() == 6)
                .with_context(|| format!("{s:?} is not a MAC address"))?;
            Ok(MacAddr::from_bytes(&b))
        };
        let spec = TrafficSpec {
            proto: self.proto,
            sizes,
            mtu: self.mtu,
            src_mac: mac(&self.src_mac)?,
            dst_mac: mac(&self.dst_mac)?,
            src: AddrRange::parse(&self.src_ip)
                .map_err(anyhow::Error::msg)
                .context("--src-ip")?,
            dst: AddrRange::parse(&self.dst_ip)
                .map_err(anyhow::Error::msg)
                .context("--dst-ip")?,
            sport: PortRange::parse(&self.sport)
                .map_err(anyhow::Error::msg)
                .context("--sport")?,
            dport: PortRange::parse(&self.dport)
                .map_err(anyhow::Error::msg)
                .context("--dport")?,
            flows: self.flows,
            drop_ppm: (self.drop_share * 1e6).round() as u32,
            drop_dport: self.drop_dport,
            churn_data: self.churn,
            trace: None,
        };
        let spec = match &self.trace {
            None => spec,
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the trace {}", path.display()))?;
                let lines = frames::read_trace(&text)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("--trace {}", path.display()))?;
                TrafficSpec {
                    flows: lines.len() as u64,
                    trace: Some(Arc::new(lines)),
                    ..spec
                }
            }
        };
        spec.validate().map_err(anyhow::Error::msg)?;
        Ok(spec)
    }
}

/// Counters the lcores publish (once per burst) and the main lcore reads.
#[derive(Default)]
struct Shared {
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    tx_to_drop: AtomicU64,
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    rx_signed: AtomicU64,
    /// Latency of the last interval (ns), published by the RX side when `tick` moves.
    live_p50: AtomicU64,
    live_p99: AtomicU64,
    live_max: AtomicU64,
    tick: AtomicU64,
    tx_done: AtomicBool,
    /// Set by the RX side when it hands its result back.
    rx_done: AtomicBool,
    stop: Arc<AtomicBool>,
}

/// What the RX side hands back.
struct RxResult {
    signed: u64,
    /// Signed packets to the drop port that came back (the rules should have dropped them).
    leaked: u64,
    foreign: u64,
    reordered: u64,
    packets: u64,
    bytes: u64,
    latency: Histogram<u64>,
    first_tsc: u64,
    last_tsc: u64,
}

/// What the TX side hands back.
struct TxResult {
    packets: u64,
    bytes: u64,
    to_drop: u64,
    start_tsc: u64,
    end_tsc: u64,
    /// Packets built but never accepted by the device before the end (freed, not sent).
    unsent: u64,
}

/// Adds `--vdev`/`-a` for a device with arguments and returns the name to look the port up by.
/// A device the EAL arguments already name (`--vdev=NAME,...`, `--vdev NAME,...`, `-a NAME`) is
/// not added twice.
fn device_arg(dev: &str, eal: &mut Vec<String>) -> String {
    let name = dev.split(',').next().unwrap_or(dev).trim().to_string();
    let already = eal.iter().any(|a| {
        let a = a.strip_prefix("--vdev=").unwrap_or(a);
        a.split(',').next() == Some(name.as_str())
    });
    if !already {
        if name.starts_with("net_") || name.starts_with("eth_") {
            eal.push(format!("--vdev={dev}"));
        } else {
            eal.push("-a".into());
            eal.push(dev.into());
        }
    }
    name
}

/// Starts the ports and waits until every link is up. A memif client cannot start before its
/// server listens, and a connection made while the server's port was not yet started may never
/// come up: both are retried (the ports stopped and started again) until `timeout`.
fn bring_up(ports: &mut [Port], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    const ATTEMPT: Duration = Duration::from_secs(2);
    loop {
        let mut started = true;
        for p in ports.iter_mut() {
            if let Err(e) = p.start() {
                if Instant::now() >= deadline {
                    return Err(e).context(format!("starting port {}", p.name()));
                }
                started = false;
                break;
            }
        }
        if started {
            let until = (Instant::now() + ATTEMPT).min(deadline);
            while Instant::now() < until && !ports.iter().all(Port::link_up) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if ports.iter().all(Port::link_up) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let down: Vec<&str> = ports
                    .iter()
                    .filter(|p| !p.link_up())
                    .map(Port::name)
                    .collect();
                bail!(
                    "link down after {} s on {} (for net_memif: is the peer running with the same socket and the other role?)",
                    timeout.as_secs_f64(),
                    down.join(", ")
                );
            }
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
        for p in ports.iter_mut() {
            p.stop();
        }
    }
}

/// Runs the generator; prints live lines and the final report.
pub fn run(args: &LoadgenArgs) -> Result<()> {
    let spec = args.traffic()?;
    if args.burst == 0 || args.burst > MAX_BURST {
        bail!("--burst must be between 1 and {MAX_BURST}");
    }
    if args.both_sides && args.churn.unwrap_or(0) > 1000 {
        bail!("--both-sides: at most 1000 data segments per connection (--churn)");
    }
    let count = args.count.unwrap_or(u64::MAX);
    let seconds = match (args.count, args.seconds) {
        (_, Some(s)) if s > 0.0 => Some(s),
        (_, Some(_)) => bail!("--seconds must be positive"),
        (None, None) => Some(10.0),
        (Some(_), None) => None,
    };
    if count == 0 {
        bail!("--count must be positive");
    }
    let raised: Vec<u16> = spec
        .sizes
        .iter()
        .zip(spec.effective_sizes())
        .filter(|(a, b)| *a != b)
        .map(|(_, b)| b)
        .collect();
    // Both sides: the connection segments carry no signature.
    if let Some(s) = raised.first().filter(|_| !args.both_sides) {
        eprintln!(
            "rampart-perf loadgen: frames smaller than {s} bytes cannot carry these headers and the signature; sending {s}-byte frames instead"
        );
    }

    let mut eal_args: Vec<String> = if args.eal.is_empty() {
        [
            "--no-huge",
            "-m",
            "512",
            "--no-pci",
            "--no-shconf",
            "--lcores=0@0,1@1",
            "--log-level",
            "*:warning",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            "--file-prefix".to_string(),
            format!("rampart-loadgen-{}", std::process::id()),
        ])
        .collect()
    } else {
        args.eal.clone()
    };
    let tx_name = device_arg(&args.tx, &mut eal_args);
    let rx_name = match &args.rx {
        Some(rx) => device_arg(rx, &mut eal_args),
        None => tx_name.clone(),
    };
    let argv: Vec<String> = std::iter::once("rampart-perf".to_string())
        .chain(eal_args)
        .collect();
    let eal = Eal::init(&argv).context("starting DPDK (EAL arguments after --)")?;
    let hz = tsc_hz();
    if hz == 0 {
        bail!("the EAL reports no TSC frequency");
    }
    let lcores = eal.worker_lcores();
    if lcores.is_empty() {
        bail!(
            "no worker lcore: give at least two lcores in the EAL arguments, e.g. --lcores=0@0,1@1"
        );
    }
    let largest = spec.effective_sizes().iter().copied().max().unwrap_or(64);
    let data_room = u16::try_from(128 + usize::from(largest).max(2048))
        .context("frames too large for one mbuf")?;
    let pool = Arc::new(
        Mempool::new(
            &eal,
            "loadgen",
            args.mbufs,
            256.min(args.mbufs / 4),
            data_room,
            None,
        )
        .context("creating the mbuf pool")?,
    );
    let cfg = PortConfig {
        queues: 1,
        rx_desc: args.desc,
        tx_desc: args.desc,
        promiscuous: true,
        rx_checksum: false,
    };
    let tx_id = Port::find(&eal, &tx_name)?;
    let rx_id = Port::find(&eal, &rx_name)?;
    let mut ports: Vec<Port> = vec![Port::configure(&eal, tx_id, &tx_name, &cfg, &pool)?];
    if rx_id != tx_id {
        ports.push(Port::configure(&eal, rx_id, &rx_name, &cfg, &pool)?);
    }
    bring_up(
        &mut ports,
        Duration::from_secs_f64(args.link_timeout.max(0.0)),
    )?;
    let mut queues: Vec<(RxQueue, TxQueue)> = Vec::new();
    for p in &mut ports {
        queues.extend(p.take_queues().context("queues handed out twice")?);
    }
    if args.both_sides {
        if rx_id == tx_id {
            bail!("--both-sides needs a server-side port: give --rx a device other than --tx");
        }
        let server = queues.pop().context("no queue")?;
        let client = queues.pop().context("no queue")?;
        return run_both_sides(
            args, &spec, &eal, lcores[0], pool, client, server, hz, seconds, &mut ports,
        );
    }
    let (rx_q, tx_q) = if rx_id == tx_id {
        let (r, t) = queues.pop().context("no queue")?;
        (r, t)
    } else {
        let (_, t) = queues.remove(0);
        let (r, _) = queues.remove(0);
        (r, t)
    };

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let shared = Arc::new(Shared {
        stop,
        ..Shared::default()
    });
    let tx_job = TxJob {
        seq: Sequencer::new(&spec),
        pool: pool.clone(),
        q: tx_q,
        count,
        duration_tsc: seconds.map(|s| (s * hz as f64) as u64),
        rate_pps: args.rate_pps,
        burst: args.burst,
        hz,
        shared: shared.clone(),
    };
    let rx_job = RxJob {
        q: rx_q,
        hz,
        drain_tsc: args.drain_ms.saturating_mul(hz) / 1000,
        leak: (spec.drop_ppm > 0)
            .then(|| (14 + if spec.src.v6 { 40 } else { 20 } + 2, spec.drop_dport)),
        shared: shared.clone(),
    };
    let (tx_send, tx_recv) = std::sync::mpsc::channel();
    let (rx_send, rx_recv) = std::sync::mpsc::channel();
    if lcores.len() >= 2 {
        eal.launch(lcores[0], move || {
            let _ = tx_send.send(tx_job.run(None));
        })?;
        eal.launch(lcores[1], move || {
            let _ = rx_send.send(rx_job.run_alone());
        })?;
    } else {
        eal.launch(lcores[0], move || {
            let mut rx = RxState::new(rx_job);
            let t = tx_job.run(Some(&mut rx));
            let r = rx.finish_alone();
            let _ = tx_send.send(t);
            let _ = rx_send.send(r);
        })?;
    }

    let started = Instant::now();
    let mut last = (0u64, 0u64, 0u64, 0u64, Instant::now());
    let live = !args.quiet;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let done = shared.rx_done.load(Ordering::Acquire);
        if last.4.elapsed() >= Duration::from_secs(1) || done {
            let now = Instant::now();
            let dt = now.duration_since(last.4).as_secs_f64();
            let tp = shared.tx_packets.load(Ordering::Relaxed);
            let tb = shared.tx_bytes.load(Ordering::Relaxed);
            let rp = shared.rx_packets.load(Ordering::Relaxed);
            let rb = shared.rx_bytes.load(Ordering::Relaxed);
            shared.tick.fetch_add(1, Ordering::Relaxed);
            if live && dt > 0.05 {
                println!(
                    "{:6.1}s  tx {:8.3} Mpps {:7.3} Gbit/s  rx {:8.3} Mpps {:7.3} Gbit/s  sent {} received {}  latency p50 {} p99 {} max {}",
                    started.elapsed().as_secs_f64(),
                    (tp - last.0) as f64 / dt / 1e6,
                    gbits(tb - last.1, tp - last.0, dt),
                    (rp - last.2) as f64 / dt / 1e6,
                    gbits(rb - last.3, rp - last.2, dt),
                    tp,
                    shared.rx_signed.load(Ordering::Relaxed),
                    us(shared.live_p50.load(Ordering::Relaxed)),
                    us(shared.live_p99.load(Ordering::Relaxed)),
                    us(shared.live_max.load(Ordering::Relaxed)),
                );
            }
            last = (tp, tb, rp, rb, now);
        }
        if done {
            break;
        }
    }
    eal.wait_all();
    let tx = tx_recv
        .recv()
        .context("the TX lcore ended without a result")?;
    let rx = rx_recv
        .recv()
        .context("the RX lcore ended without a result")?;
    let tx_stats = ports[0].stats();
    let rx_stats = ports.last().map(Port::stats).unwrap_or_default();
    let report = Report::new(&spec, args, &tx, &rx, hz, tx_stats, rx_stats);
    print!("{}", report.text());
    if let Some(p) = &args.json {
        // Written whole and renamed into place: a script waiting for the file never reads half.
        let tmp = p.with_extension("json.partial");
        std::fs::write(&tmp, serde_json::to_string_pretty(&report.json)? + "\n")
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, p).with_context(|| format!("writing {}", p.display()))?;
    }
    if args.linger {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        while !shared.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for p in &mut ports {
        p.stop();
    }
    drop(ports);
    Ok(())
}

/// `--both-sides`: one lcore runs the client and the server side of every connection.
#[allow(clippy::too_many_arguments)]
fn run_both_sides(
    args: &LoadgenArgs,
    spec: &TrafficSpec,
    eal: &Eal,
    lcore: dataplane::dpdk::LcoreId,
    pool: Arc<Mempool>,
    client: (RxQueue, TxQueue),
    server: (RxQueue, TxQueue),
    hz: u64,
    seconds: Option<f64>,
    ports: &mut [Port],
) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let shared = Arc::new(conn::ConnShared::default());
    let endpoint = conn::Endpoint::new(
        spec,
        client,
        server,
        pool,
        args.inflight,
        args.conn_rate,
        args.count.unwrap_or(u64::MAX),
        seconds.map(|s| (s * hz as f64) as u64),
        args.drain_ms.saturating_mul(hz) / 1000,
        hz,
        shared.clone(),
        stop.clone(),
    );
    let (send, recv) = std::sync::mpsc::channel();
    eal.launch(lcore, move || {
        let _ = send.send(endpoint.run());
    })?;
    let started = Instant::now();
    let mut last = (0u64, 0u64, Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let done = shared.done.load(Ordering::Acquire);
        if last.2.elapsed() >= Duration::from_secs(1) || done {
            let now = Instant::now();
            let dt = now.duration_since(last.2).as_secs_f64();
            let opened = shared.opened.load(Ordering::Relaxed);
            let completed = shared.completed.load(Ordering::Relaxed);
            if !args.quiet && dt > 0.05 {
                println!(
                    "{:6.1}s  opened {:10.0}/s  completed {:10.0}/s  total opened {} completed {} abandoned {}  segments client {} server {}",
                    started.elapsed().as_secs_f64(),
                    (opened - last.0) as f64 / dt,
                    (completed - last.1) as f64 / dt,
                    opened,
                    completed,
                    shared.abandoned.load(Ordering::Relaxed),
                    shared.client_tx.load(Ordering::Relaxed),
                    shared.server_tx.load(Ordering::Relaxed),
                );
            }
            last = (opened, completed, now);
        }
        if done {
            break;
        }
    }
    eal.wait_all();
    let r = recv.recv().context("the lcore ended without a result")?;
    let data = spec.churn_data.unwrap_or(0);
    let json = r.json(hz, data, args.inflight, args.conn_rate);
    let c = &json["connections"];
    println!(
        "rampart-perf loadgen: {} connections opened, {} completed ({:.0} per second over {:.3} s), {} never completed; {} stalls (nothing back for {} ms with connections open) gave up {}, of which {} completed late",
        r.opened,
        r.completed,
        c["per_second"].as_f64().unwrap_or(0.0),
        c["seconds"].as_f64().unwrap_or(0.0),
        c["abandoned"],
        r.stalls,
        args.drain_ms.max(100),
        r.abandoned,
        r.late
    );
    println!(
        "rampart-perf loadgen: client side sent {} received {}, server side sent {} received {} ({} data segments), {} foreign",
        r.client_tx, r.client_rx, r.server_tx, r.server_rx, r.data_rx, r.foreign
    );
    if let Some(p) = &args.json {
        let tmp = p.with_extension("json.partial");
        std::fs::write(&tmp, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, p).with_context(|| format!("writing {}", p.display()))?;
    }
    if args.linger {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for p in ports.iter_mut() {
        p.stop();
    }
    Ok(())
}

fn gbits(bytes: u64, packets: u64, seconds: f64) -> f64 {
    (bytes + packets * FCS_LEN as u64) as f64 * 8.0 / seconds / 1e9
}

fn us(ns: u64) -> String {
    if ns == 0 {
        "-".into()
    } else {
        format!("{:.1}us", ns as f64 / 1e3)
    }
}

struct TxJob {
    seq: Sequencer,
    pool: Arc<Mempool>,
    q: TxQueue,
    count: u64,
    duration_tsc: Option<u64>,
    rate_pps: u64,
    burst: usize,
    hz: u64,
    shared: Arc<Shared>,
}

impl TxJob {
    fn run(mut self, mut rx: Option<&mut RxState>) -> TxResult {
        let mut batch = TxBatch::default();
        let start = tsc();
        let (mut built, mut sent, mut bytes, mut to_drop) = (0u64, 0u64, 0u64, 0u64);
        // Whether each packet waiting in the batch goes to the drop port, in batch order.
        let mut pending_drop = [false; MAX_BURST];
        let end = loop {
            let now = tsc();
            let stop = self.shared.stop.load(Ordering::Relaxed);
            let time_up = self.duration_tsc.is_some_and(|d| now - start >= d);
            if (built >= self.count || time_up) && batch.is_empty() || stop {
                break now;
            }
            if built < self.count && !time_up && !stop {
                let room = self.burst.saturating_sub(batch.len());
                let mut n = (self.count - built).min(room as u64);
                if self.rate_pps > 0 {
                    let due = ((u128::from(now - start) * u128::from(self.rate_pps))
                        / u128::from(self.hz)) as u64
                        + 1;
                    n = n.min(due.saturating_sub(built));
                }
                let n = n as usize;
                if n > 0 && batch.alloc(&self.pool, n) {
                    let first = batch.len() - n;
                    let stamp = tsc();
                    for (m, pending) in batch.packets_mut()[first..]
                        .iter_mut()
                        .zip(&mut pending_drop[first..])
                    {
                        let (tmpl, flow, tcp_seq, drop) = self.seq.next_packet();
                        *pending = drop;
                        if m.set_frame_len(tmpl.len()) {
                            let out = m.data_mut();
                            out.copy_from_slice(&tmpl.frame);
                            tmpl.write(out, &flow, tcp_seq, built as u32, stamp);
                        }
                        built += 1;
                    }
                }
            }
            let waiting = batch.len();
            let (s, b) = batch.send(&mut self.q);
            if s > 0 {
                // Drop-port packets count once the device has taken them; the refused ones
                // moved to the front of the batch, and so do their flags.
                to_drop += pending_drop[..s].iter().filter(|&&d| d).count() as u64;
                pending_drop.copy_within(s..waiting, 0);
                sent += s as u64;
                bytes += b;
                self.shared.tx_packets.store(sent, Ordering::Relaxed);
                self.shared.tx_bytes.store(bytes, Ordering::Relaxed);
                self.shared.tx_to_drop.store(to_drop, Ordering::Relaxed);
            }
            if let Some(rx) = rx.as_deref_mut() {
                rx.poll();
            }
        };
        self.shared.tx_to_drop.store(to_drop, Ordering::Relaxed);
        self.shared.tx_done.store(true, Ordering::Release);
        let unsent = batch.len() as u64;
        drop(batch);
        TxResult {
            packets: sent,
            bytes,
            to_drop,
            start_tsc: start,
            end_tsc: end,
            unsent,
        }
    }
}

struct RxJob {
    q: RxQueue,
    /// With a drop share: the offset of the destination port in received frames, and the drop
    /// port, to count packets that should not have come back.
    leak: Option<(usize, u16)>,
    hz: u64,
    drain_tsc: u64,
    shared: Arc<Shared>,
}

impl RxJob {
    fn run_alone(self) -> RxResult {
        let mut rx = RxState::new(self);
        loop {
            rx.poll();
            if rx.finished() {
                break;
            }
        }
        rx.result()
    }
}

/// The RX side's state: counters, histograms, the drain timer.
struct RxState {
    job: RxJob,
    burst: RxBurst,
    latency: Histogram<u64>,
    interval: Histogram<u64>,
    /// ns per TSC tick, as a 32.32 fixed-point factor.
    ns_per_tick_q32: u64,
    signed: u64,
    leaked: u64,
    foreign: u64,
    reordered: u64,
    packets: u64,
    bytes: u64,
    last_seq: Option<u32>,
    last_rx_tsc: u64,
    first_tsc: u64,
    seen_tick: u64,
    /// When this side first saw the TX side done.
    tx_done_tsc: Option<u64>,
}

/// Latencies above this are clamped (one minute, in ns).
const LATENCY_MAX_NS: u64 = 60_000_000_000;

impl RxState {
    fn new(job: RxJob) -> RxState {
        let hist =
            || Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_NS, 3).expect("valid bounds");
        RxState {
            ns_per_tick_q32: ((1_000_000_000u128 << 32) / u128::from(job.hz.max(1))) as u64,
            job,
            burst: RxBurst::default(),
            latency: hist(),
            interval: hist(),
            signed: 0,
            leaked: 0,
            foreign: 0,
            reordered: 0,
            packets: 0,
            bytes: 0,
            last_seq: None,
            last_rx_tsc: tsc(),
            first_tsc: 0,
            seen_tick: 0,
            tx_done_tsc: None,
        }
    }

    #[inline]
    fn poll(&mut self) {
        let n = self.burst.receive(&mut self.job.q);
        let now = tsc();
        if n > 0 {
            if self.packets == 0 {
                self.first_tsc = now;
            }
            self.last_rx_tsc = now;
            for m in self.burst.by_ref() {
                let data = m.data();
                self.packets += 1;
                self.bytes += data.len() as u64;
                match read_signature(data) {
                    Some((seq, sent_tsc)) => {
                        self.signed += 1;
                        if let Some((off, port)) = self.job.leak {
                            if data.get(off..off + 2) == Some(&port.to_be_bytes()[..]) {
                                self.leaked += 1;
                            }
                        }
                        if let Some(last) = self.last_seq {
                            if (seq.wrapping_sub(last) as i32) < 0 {
                                self.reordered += 1;
                            }
                        }
                        self.last_seq = Some(seq);
                        let ticks = now.saturating_sub(sent_tsc);
                        let ns =
                            ((u128::from(ticks) * u128::from(self.ns_per_tick_q32)) >> 32) as u64;
                        self.latency.saturating_record(ns.max(1));
                        self.interval.saturating_record(ns.max(1));
                    }
                    None => self.foreign += 1,
                }
            }
            let s = &self.job.shared;
            s.rx_packets.store(self.packets, Ordering::Relaxed);
            s.rx_bytes.store(self.bytes, Ordering::Relaxed);
            s.rx_signed.store(self.signed, Ordering::Relaxed);
        }
        let tick = self.job.shared.tick.load(Ordering::Relaxed);
        if tick != self.seen_tick {
            self.publish_interval(tick);
        }
    }

    #[cold]
    #[inline(never)]
    fn publish_interval(&mut self, tick: u64) {
        self.seen_tick = tick;
        let s = &self.job.shared;
        if self.interval.is_empty() {
            s.live_p50.store(0, Ordering::Relaxed);
            s.live_p99.store(0, Ordering::Relaxed);
            s.live_max.store(0, Ordering::Relaxed);
        } else {
            s.live_p50
                .store(self.interval.value_at_quantile(0.5), Ordering::Relaxed);
            s.live_p99
                .store(self.interval.value_at_quantile(0.99), Ordering::Relaxed);
            s.live_max.store(self.interval.max(), Ordering::Relaxed);
        }
        self.interval.reset();
    }

    /// The TX side is done, and nothing arrived for the drain time, or the drain limit (ten
    /// drain times after TX ended: an RX port that never falls quiet must not hold the run
    /// open) has passed, or a stop was asked.
    fn finished(&mut self) -> bool {
        let s = &self.job.shared;
        if !s.tx_done.load(Ordering::Acquire) {
            return false;
        }
        let now = tsc();
        let tx_end = *self.tx_done_tsc.get_or_insert(now);
        s.stop.load(Ordering::Relaxed)
            || now - self.last_rx_tsc >= self.job.drain_tsc
            || now - tx_end >= self.job.drain_tsc.saturating_mul(10)
    }

    fn finish_alone(mut self) -> RxResult {
        self.last_rx_tsc = self.last_rx_tsc.max(tsc());
        while !self.finished() {
            self.poll();
        }
        self.result()
    }

    fn result(self) -> RxResult {
        self.job.shared.rx_done.store(true, Ordering::Release);
        RxResult {
            signed: self.signed,
            leaked: self.leaked,
            foreign: self.foreign,
            reordered: self.reordered,
            packets: self.packets,
            bytes: self.bytes,
            latency: self.latency,
            first_tsc: self.first_tsc,
            last_tsc: self.last_rx_tsc,
        }
    }
}

/// The final report, as text and JSON.
struct Report {
    json: serde_json::Value,
}

fn port_json(s: &PortStats) -> serde_json::Value {
    serde_json::json!({
        "rx_packets": s.rx_packets, "tx_packets": s.tx_packets, "rx_bytes": s.rx_bytes,
        "tx_bytes": s.tx_bytes, "rx_missed": s.rx_missed, "rx_errors": s.rx_errors,
        "tx_errors": s.tx_errors, "rx_nombuf": s.rx_nombuf,
    })
}

impl Report {
    fn new(
        spec: &TrafficSpec,
        args: &LoadgenArgs,
        tx: &TxResult,
        rx: &RxResult,
        hz: u64,
        tx_stats: PortStats,
        rx_stats: PortStats,
    ) -> Report {
        let tx_s = (tx.end_tsc - tx.start_tsc) as f64 / hz as f64;
        let rx_s = if rx.packets > 0 {
            (rx.last_tsc - rx.first_tsc) as f64 / hz as f64
        } else {
            0.0
        };
        let rate = |p: u64, s: f64| if s > 0.0 { p as f64 / s / 1e6 } else { 0.0 };
        let gb = |b: u64, p: u64, s: f64| if s > 0.0 { gbits(b, p, s) } else { 0.0 };
        let expected = tx.packets - tx.to_drop.min(tx.packets);
        // Packets to the drop port that came back are not the expected ones.
        let lost = expected as i64 - (rx.signed - rx.leaked) as i64;
        let h = &rx.latency;
        let q = |x: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(x)
            }
        };
        let json = serde_json::json!({
            "tsc_hz": hz,
            "traffic": {
                "proto": format!("{:?}", spec.proto).to_lowercase(),
                "family": if spec.src.v6 { "ipv6" } else { "ipv4" },
                "sizes": spec.effective_sizes(),
                "flows": spec.flows,
                "rate_pps": args.rate_pps,
                "drop_share": args.drop_share,
                "drop_dport": spec.drop_dport,
                "churn_data_segments": spec.churn_data,
                "trace": args.trace.as_ref().map(|p| p.display().to_string()),
            },
            "tx": {
                "packets": tx.packets, "bytes": tx.bytes, "to_drop": tx.to_drop,
                "unsent": tx.unsent, "seconds": tx_s,
                "mpps": rate(tx.packets, tx_s), "gbps": gb(tx.bytes, tx.packets, tx_s),
                "device": port_json(&tx_stats),
            },
            "rx": {
                "packets": rx.packets, "bytes": rx.bytes, "signed": rx.signed,
                "leaked": rx.leaked,
                "foreign": rx.foreign, "reordered": rx.reordered, "seconds": rx_s,
                "mpps": rate(rx.packets, rx_s), "gbps": gb(rx.bytes, rx.packets, rx_s),
                "device": port_json(&rx_stats),
            },
            "expected_rx": expected,
            "lost": lost,
            "loss_ratio": if expected > 0 { lost as f64 / expected as f64 } else { 0.0 },
            "latency_ns": {
                "samples": h.len(),
                "min": if h.is_empty() { 0 } else { h.min() },
                "mean": if h.is_empty() { 0.0 } else { h.mean() },
                "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999),
                "max": if h.is_empty() { 0 } else { h.max() },
            },
        });
        Report { json }
    }

    fn text(&self) -> String {
        let j = &self.json;
        let l = &j["latency_ns"];
        let us = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0) / 1e3;
        format!(
            "rampart-perf loadgen: sent {} packets in {:.3} s ({:.3} Mpps, {:.3} Gbit/s), {} of them to the drop port\n\
             rampart-perf loadgen: received {} packets ({} with the signature, {} other) ({:.3} Mpps, {:.3} Gbit/s), {} reordered\n\
             rampart-perf loadgen: expected {}, lost {} ({:.4} %), {} sent to the drop port came back\n\
             rampart-perf loadgen: latency over {} samples: min {:.1} us, p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us\n",
            j["tx"]["packets"], j["tx"]["seconds"].as_f64().unwrap_or(0.0),
            j["tx"]["mpps"].as_f64().unwrap_or(0.0), j["tx"]["gbps"].as_f64().unwrap_or(0.0),
            j["tx"]["to_drop"],
            j["rx"]["packets"], j["rx"]["signed"], j["rx"]["foreign"],
            j["rx"]["mpps"].as_f64().unwrap_or(0.0), j["rx"]["gbps"].as_f64().unwrap_or(0.0),
            j["rx"]["reordered"],
            j["expected_rx"], j["lost"], j["loss_ratio"].as_f64().unwrap_or(0.0) * 100.0,
            j["rx"]["leaked"],
            l["samples"], us(&l["min"]), us(&l["p50"]), us(&l["p99"]), us(&l["p999"]), us(&l["max"]),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadgenArgs,
    }

    fn args(a: &[&str]) -> LoadgenArgs {
        Cli::try_parse_from(std::iter::once("loadgen").chain(a.iter().copied()))
            .expect("parses")
            .args
    }

    #[test]
    fn devices_are_added_once_to_the_eal_arguments() {
        let mut eal = vec!["--vdev=net_memif01,role=client".to_string()];
        assert_eq!(device_arg("net_memif0,role=server", &mut eal), "net_memif0");
        assert_eq!(eal.last().unwrap(), "--vdev=net_memif0,role=server");
        assert_eq!(device_arg("net_memif0", &mut eal), "net_memif0");
        assert_eq!(eal.len(), 2, "named already: not added again");
        assert_eq!(device_arg("0000:03:00.0", &mut eal), "0000:03:00.0");
        assert_eq!(&eal[2..], ["-a", "0000:03:00.0"]);
        let mut eal = vec!["-a".to_string(), "0000:03:00.1".to_string()];
        device_arg("0000:03:00.1", &mut eal);
        assert_eq!(eal.len(), 2);
    }

    #[test]
    fn a_trace_file_replaces_the_flows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small_trace");
        // Generated here: ClassBench's layout (src dst sport dport proto, then answer columns).
        std::fs::write(
            &path,
            "167772161\t3221225991\t1024\t80\t6\t0\t3\n167772162\t3221225992\t53\t53\t17\t0\t0\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let t = args(&["--tx", "x", "--trace", p]).traffic().unwrap();
        assert_eq!(t.flows, 2);
        let lines = t.trace.as_deref().unwrap();
        assert_eq!(lines[0].flow.src, 0x0a00_0001);
        assert_eq!((lines[1].flow.dport, lines[1].proto), (53, 17));
        let mut seq = Sequencer::new(&t);
        let (_, f0, _, _) = seq.next_packet();
        let (_, f1, _, _) = seq.next_packet();
        let (_, f2, _, _) = seq.next_packet();
        assert_eq!((f0, f1, f2), (lines[0].flow, lines[1].flow, lines[0].flow));
        let cli = |a: &[&str]| {
            Cli::try_parse_from(std::iter::once("loadgen").chain(a.iter().copied())).is_ok()
        };
        assert!(!cli(&["--tx", "x", "--trace", p, "--churn", "1"]));
        assert!(!cli(&["--tx", "x", "--trace", p, "--flows", "3"]));
        let missing = dir.path().join("none");
        assert!(args(&["--tx", "x", "--trace", missing.to_str().unwrap()])
            .traffic()
            .is_err());
    }

    #[test]
    fn options_make_the_traffic_or_say_what_is_wrong() {
        let t = args(&[
            "--tx",
            "x",
            "--size",
            "imix",
            "--src-ip",
            "fd00::1-fd00::ff",
            "--dst-ip",
            "fd01::1",
            "--proto",
            "tcp",
            "--flows",
            "255",
        ])
        .traffic()
        .unwrap();
        assert_eq!(t.sizes, IMIX.to_vec());
        assert!(t.src.v6 && t.src.count == 255);
        assert_eq!(
            args(&["--tx", "x", "--drop-share", "0.25"])
                .traffic()
                .unwrap()
                .drop_ppm,
            250_000
        );
        for bad in [
            &["--tx", "x", "--size", "63"][..],
            &["--tx", "x", "--size", "64,abc"],
            &["--tx", "x", "--drop-share", "1.5"],
            &["--tx", "x", "--src-mac", "02:00:00:00:00"],
            &["--tx", "x", "--src-ip", "10.0.0.1", "--dst-ip", "fd00::1"],
            &["--tx", "x", "--flows", "2", "--sport", "1"],
            &["--tx", "x", "--churn", "2"],
            &["--tx", "x", "--proto", "icmp", "--drop-share", "0.1"],
            &["--tx", "x", "--size", "1600"],
        ] {
            assert!(args(bad).traffic().is_err(), "{bad:?} accepted");
        }
    }
}
