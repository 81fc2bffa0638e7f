//! `rampart run`: the daemon. The main lcore runs the control thread; workers poll on their own
//! lcores until SIGINT/SIGTERM (or, for finite inputs, until the ports fall idle).

use crate::config::{ClassifierKind, Config};
use crate::daemon::{totals, ControlPlane};
use dataplane::dpdk::{tsc_hz, DpdkError, Eal, LcoreId, Mempool, Port, PortConfig};
use dataplane::dpdk::{RingRx, RingTx};
use dataplane::stats::{StatsSnapshot, WorkerStats};
use dataplane::worker::{Handoff, LogRecord, Worker};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `rampart run` beyond the configuration file.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// EAL arguments given after `--` on the command line.
    pub extra_eal_args: Vec<String>,
    /// Stop once no packet has arrived for this long (for finite inputs such as net_pcap rx_pcap).
    pub exit_when_idle: Option<Duration>,
    /// Print counters this often.
    pub stats_interval: Option<Duration>,
}

/// Daemon errors.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Dpdk(#[from] DpdkError),
    #[error("port {name:?}: {source}")]
    Port { name: String, source: DpdkError },
    #[error("{0}")]
    Setup(String),
}

/// What a run did, for the final report.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub ports: Vec<PortSummary>,
    pub workers: Vec<StatsSnapshot>,
    pub total: StatsSnapshot,
    pub mbufs_in_use_start: u32,
    pub mbufs_in_use_end: u32,
    pub mbufs_in_use_closed: u32,
    pub seconds: f64,
    /// TSC ticks per second (the unit of the workers' `busy_tsc`).
    pub tsc_hz: u64,
}

/// One port's final figures.
#[derive(Clone, Debug)]
pub struct PortSummary {
    pub name: String,
    pub driver: String,
    pub rss: bool,
    pub device: dataplane::dpdk::PortStats,
}

/// Runs the daemon until `stop` is set (by a signal handler or the idle timer).
pub fn run(cfg: &Config, opts: &RunOptions, stop: Arc<AtomicBool>) -> Result<RunSummary, RunError> {
    dataplane::dpdk::simd::screen_level_cap().map_err(RunError::Setup)?;
    let eal = Eal::init(&cfg.eal_args(&opts.extra_eal_args))?;
    let result = run_on(&eal, cfg, opts, &stop);
    // Workers are joined inside run_on on every path; the EAL is cleaned up when `eal` drops.
    result
}

fn run_on(
    eal: &Eal,
    cfg: &Config,
    opts: &RunOptions,
    stop: &Arc<AtomicBool>,
) -> Result<RunSummary, RunError> {
    let lcores = pick_lcores(eal, cfg)?;
    let port_names: Vec<String> = cfg.ports.iter().map(|p| p.name.clone()).collect();
    let make: Box<crate::load::MakeClassifier<'_>> = match cfg.rules.classifier {
        ClassifierKind::Tree => Box::new(crate::load::tree_classifier),
        ClassifierKind::Linear => Box::new(|_| Ok(Box::new(dataplane::classify::Linear))),
        ClassifierKind::RteAcl => Box::new(move |rules| {
            let c = dataplane::dpdk::AclClassifier::new(
                eal,
                rules,
                &dataplane::dpdk::AclConfig::default(),
            )
            .map_err(|e| e.to_string())?;
            Ok(Box::new(c))
        }),
    };
    let nat = crate::load::NatSettings::of(cfg);
    let mut control = ControlPlane::new(
        cfg.rules.clone(),
        port_names.clone(),
        cfg.workers.count,
        nat,
        make,
    )
    .map_err(|e| RunError::Setup(format!("rules: {e}")))?;
    for (family, rs) in [
        ("IPv4", &control.current().filter.v4),
        ("IPv6", &control.current().filter.v6),
    ] {
        match rs {
            Some(rs) => eprintln!("rampart: {family}: {} flat rules", rs.rules.len()),
            None => eprintln!("rampart: no {family} rules: {family} traffic is not filtered"),
        }
    }
    let mut readers = control.readers().into_iter();
    let (log_tx, log_rx) = crossbeam_channel::bounded::<LogRecord>(LOG_QUEUE);
    // Shared with the workers (REJECT replies); the last reference is this one, dropped after
    // the workers have returned and the ports are closed.
    let pool = Arc::new(Mempool::new(
        eal,
        "rampart_mbufs",
        cfg.mempool.mbufs,
        cfg.mempool.cache,
        cfg.mempool.data_room,
        None,
    )?);
    let pcfg = PortConfig {
        queues: cfg.workers.count as u16,
        rx_desc: cfg.rings.rx_desc,
        tx_desc: cfg.rings.tx_desc,
        promiscuous: true,
        rx_checksum: true,
    };
    // Ports are declared after the pool so they drop (stop, close) before it.
    let mut ports = Vec::with_capacity(cfg.ports.len());
    for p in &cfg.ports {
        let wrap = |source| RunError::Port {
            name: p.name.clone(),
            source,
        };
        let id = Port::find(eal, &p.device).map_err(wrap)?;
        let mut port = Port::configure(
            eal,
            id,
            &p.name,
            &PortConfig {
                promiscuous: p.promiscuous,
                rx_checksum: p.rx_checksum_offload,
                ..pcfg.clone()
            },
            &pool,
        )
        .map_err(wrap)?;
        port.start().map_err(wrap)?;
        ports.push(port);
    }
    let mut per_port_queues: Vec<std::vec::IntoIter<_>> = ports
        .iter_mut()
        .map(|p| {
            p.take_queues()
                .expect("queues are taken once, here")
                .into_iter()
        })
        .collect();

    let pipeline = Arc::new(cfg.bridge());
    // `-m time` reads the wall clock as the workers' TSC clock plus this offset, read again
    // by the control loop (`WALL_REREAD`).
    publish_wall_offset();
    let hz = tsc_hz().max(1);
    let drain_tsc = hz / 1_000_000 * cfg.workers.drain_us;
    let stats: Vec<Arc<WorkerStats>> = (0..cfg.workers.count)
        .map(|_| Arc::new(WorkerStats::default()))
        .collect();
    let in_use_start = pool.in_use();

    // Each worker's conntrack table (all its memory taken now) and its management queue.
    let track = cfg.conntrack.enabled.then(|| {
        let seed = random_seed();
        cfg.conntrack.track_config(seed)
    });
    let mut ct_queues = Vec::new();
    let mut ct_receivers = Vec::new();
    for _ in 0..cfg.workers.count {
        let (tx, rx) = crossbeam_channel::bounded(4);
        ct_queues.push(tx);
        ct_receivers.push(rx);
    }
    let mut tables: Vec<Box<dataplane::track::Tables>> = match &track {
        Some(t) => (0..cfg.workers.count)
            .map(|w| {
                Box::new(dataplane::track::Tables::new(
                    &dataplane::track::TrackConfig {
                        worker: w as u16,
                        ..*t
                    },
                ))
            })
            .collect(),
        None => Vec::new(),
    };
    match tables.first() {
        Some(t) => {
            let mut pages = dataplane::dpdk::PageUse::default();
            for t in &tables {
                pages += t.ct.pages();
            }
            let thp = dataplane::dpdk::transparent_huge_bytes().map_or(String::new(), |b| {
                format!("; {} MiB of the process on transparent huge pages", b >> 20)
            });
            eprintln!(
                "rampart: conntrack: {} connections per worker ({} MiB each; all workers: {pages}{thp})",
                t.ct.capacity(),
                t.ct.memory_bytes() >> 20
            );
            control.set_conntrack(ct_queues);
        }
        None => eprintln!("rampart: conntrack off: every packet is judged as NEW"),
    }
    // Router mode: the ports' layer-3 identity with the devices' MACs, and one state per
    // worker (neighbours, counters), all allocated now.
    let router = match cfg.mode {
        crate::config::Mode::Router => {
            let macs: Vec<_> = ports.iter().map(|p| p.mac()).collect();
            let r = crate::router_conf::build_router(cfg, &macs)
                .map_err(|e| RunError::Setup(format!("router: {e}")))?;
            for (p, m) in cfg.ports.iter().zip(&macs) {
                eprintln!("rampart: router port {}: {m}", p.name);
            }
            Some(Arc::new(r))
        }
        crate::config::Mode::Bridge => None,
    };
    let mut ct_receivers = ct_receivers.into_iter();
    let mut tables = tables.drain(..);
    let mut handoffs = handoff_rings(eal, cfg, track.is_some())?.into_iter();

    for (w, &lcore) in lcores.iter().enumerate() {
        let queues = per_port_queues
            .iter_mut()
            .map(|it| it.next().expect("one queue per worker"))
            .collect();
        let worker = Worker {
            id: w,
            queues,
            pipeline: pipeline.clone(),
            stats: stats[w].clone(),
            stop: stop.clone(),
            drain_tsc,
            rules: readers.next().expect("one reader per worker"),
            logs: log_tx.clone(),
            pool: pool.clone(),
            tables: tables.next(),
            commands: ct_receivers.next().expect("one queue per worker"),
            handoff: handoffs.next().flatten(),
            router: router
                .as_ref()
                .map(|r| (r.clone(), Box::new(r.new_state(tsc_ns())))),
        };
        if let Err(e) = eal.launch(lcore, move || worker.run()) {
            stop.store(true, Ordering::SeqCst);
            eal.wait_all();
            return Err(e.into());
        }
    }
    eprintln!(
        "rampart: running: {} port(s) [{}], {} worker(s) on lcore(s) {}",
        ports.len(),
        ports
            .iter()
            .map(|p| format!(
                "{} ({}{}{})",
                p.name(),
                p.driver(),
                if p.rss() { ", rss" } else { "" },
                if p.rx_checksum() {
                    ", rx checksum offload"
                } else {
                    ""
                }
            ))
            .collect::<Vec<_>>()
            .join(", "),
        lcores.len(),
        lcores
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );

    // Management and metrics hand their requests to this thread, which owns the control plane.
    let (msg_tx, msg_rx) = crossbeam_channel::bounded::<ControlMsg>(64);
    let mode = cfg.management.mode_bits().unwrap_or(0o600);
    let mgmt_tx = msg_tx.clone();
    let handler: crate::mgmt::Handler = Arc::new(move |req| {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if mgmt_tx.send(ControlMsg::Mgmt(req, tx)).is_err() {
            return crate::mgmt::error("the daemon is stopping");
        }
        rx.recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| crate::mgmt::error("the daemon did not answer in time"))
    });
    let started_mgmt = crate::mgmt::Server::start(&cfg.management.socket, mode, handler);
    let metrics = match &cfg.metrics {
        Some(m) => {
            let metrics_tx = msg_tx.clone();
            let render: crate::metrics::Render = Arc::new(move || {
                let (tx, rx) = crossbeam_channel::bounded(1);
                if metrics_tx.send(ControlMsg::Metrics(tx)).is_err() {
                    return String::new();
                }
                rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default()
            });
            Some(
                crate::metrics::MetricsServer::start(m.listen, render)
                    .map_err(|e| format!("metrics on {}: {e}", m.listen)),
            )
        }
        None => None,
    };
    let (_mgmt, metrics) = match (started_mgmt, metrics.transpose()) {
        (Ok(m), Ok(x)) => (m, x),
        (Err(e), _) => {
            stop.store(true, Ordering::SeqCst);
            eal.wait_all();
            return Err(RunError::Setup(e.to_string()));
        }
        (_, Err(e)) => {
            stop.store(true, Ordering::SeqCst);
            eal.wait_all();
            return Err(RunError::Setup(e));
        }
    };
    eprintln!(
        "rampart: management socket {}{}",
        cfg.management.socket.display(),
        metrics
            .as_ref()
            .map(|m| format!(", metrics on http://{}/metrics", m.addr()))
            .unwrap_or_default()
    );
    if cfg
        .eal
        .args
        .iter()
        .any(|a| a == "--no-shconf" || a == "--in-memory")
    {
        eprintln!("rampart: packet capture through dpdk-dumpcap is off: the EAL runs without shared configuration");
    } else if let Err(e) = eal.enable_capture() {
        eprintln!("rampart: {e}");
    }
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .map_err(|e| RunError::Setup(format!("installing the SIGHUP handler: {e}")))?;

    let started = Instant::now();
    let mut last_rx = 0u64;
    let mut last_change = Instant::now();
    let mut last_print = Instant::now();
    let mut logger = LogLimiter::new(LOG_LINES_PER_SEC);
    let metrics_addr = metrics.as_ref().map(|m| m.addr().to_string());
    let mut wall_read = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if wall_read.elapsed() >= WALL_REREAD {
            wall_read = Instant::now();
            publish_wall_offset();
        }
        match msg_rx.recv_timeout(Duration::from_millis(20)) {
            Ok(ControlMsg::Mgmt(req, reply)) => {
                let stats_json = || stats_json(&port_names, &stats, metrics_addr.as_deref());
                let _ = reply.send(control.handle(req, &stats_json));
            }
            Ok(ControlMsg::Metrics(reply)) => {
                let total = totals(&stats);
                let workers: Vec<StatsSnapshot> = stats.iter().map(|s| s.snapshot()).collect();
                let _ = reply.send(control.metrics(&port_names, &total, &workers));
            }
            Err(_) => {}
        }
        if hup.swap(false, Ordering::SeqCst) {
            match control.reload() {
                Ok(t) => eprintln!(
                    "rampart: SIGHUP: rules reloaded; every worker runs them after {} us",
                    t.as_micros()
                ),
                Err(e) => eprintln!(
                    "rampart: SIGHUP: rules not reloaded, the previous rules stay in force:\n{e}"
                ),
            }
        }
        control.reclaim();
        let snapshot = control.current();
        while let Ok(rec) = log_rx.try_recv() {
            logger.log(&snapshot, &port_names, &rec);
        }
        let total = totals(&stats);
        if let Some(idle) = opts.exit_when_idle {
            let rx = total.rx_packets() + total.tx_packets();
            if rx != last_rx {
                last_rx = rx;
                last_change = Instant::now();
            } else if last_change.elapsed() >= idle {
                break;
            }
        }
        if let Some(every) = opts.stats_interval {
            if last_print.elapsed() >= every {
                last_print = Instant::now();
                eprintln!(
                    "rampart: rx {} tx {} dropped {} tx_refused {}",
                    total.rx_packets(),
                    total.tx_packets(),
                    total.dropped(),
                    total.tx_dropped()
                );
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    eal.wait_all();
    let seconds = started.elapsed().as_secs_f64();
    let in_use_end = pool.in_use();
    let port_summaries: Vec<PortSummary> = ports
        .iter()
        .map(|p| PortSummary {
            name: p.name().into(),
            driver: p.driver().into(),
            rss: p.rss(),
            device: p.stats(),
        })
        .collect();
    drop(per_port_queues);
    drop(ports); // stop and close every port: queues give their mbufs back
    let in_use_closed = pool.in_use();
    let workers: Vec<StatsSnapshot> = stats.iter().map(|s| s.snapshot()).collect();
    Ok(RunSummary {
        ports: port_summaries,
        total: totals(&stats),
        workers,
        mbufs_in_use_start: in_use_start,
        mbufs_in_use_end: in_use_end,
        mbufs_in_use_closed: in_use_closed,
        seconds,
        tsc_hz: hz,
    })
}

/// With tracking and several workers: each worker's rings to and from every other worker, so
/// the worker that owns a connection sees all its packets. `None` per worker otherwise.
fn handoff_rings(
    eal: &Eal,
    cfg: &Config,
    tracking: bool,
) -> Result<Vec<Option<Handoff>>, RunError> {
    let n = cfg.workers.count;
    if !tracking || n < 2 {
        return Ok((0..n).map(|_| None).collect());
    }
    let mut to: Vec<Vec<Option<RingTx>>> = (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    let mut from: Vec<Vec<RingRx>> = (0..n).map(|_| Vec::new()).collect();
    for (src, row) in to.iter_mut().enumerate() {
        for (dst, slot) in row.iter_mut().enumerate() {
            if src == dst {
                continue;
            }
            let (tx, rx) = dataplane::dpdk::handoff_ring(
                eal,
                &format!("rampart_ho_{src}_{dst}"),
                cfg.workers.handoff_ring,
            )?;
            *slot = Some(tx);
            from[dst].push(rx);
        }
    }
    eprintln!(
        "rampart: {n} workers: packets reach the worker that owns their connection (hand-off rings of {})",
        cfg.workers.handoff_ring
    );
    Ok(to
        .into_iter()
        .zip(from)
        .map(|(to, from)| {
            Some(Handoff {
                workers: n as u16,
                to,
                from,
            })
        })
        .collect())
}

/// A hash seed that differs per run (conntrack's index must not be predictable from outside).
/// The TSC in nanoseconds, as the workers' clock reads it.
fn tsc_ns() -> u64 {
    let hz = u128::from(tsc_hz().max(1));
    (u128::from(dataplane::dpdk::tsc()) * 1_000_000_000 / hz) as u64
}

/// How often the control loop reads the wall clock again for `-m time`: a step of the host's
/// clock (set by hand, NTP stepping it) reaches the workers within this (Linux reads the clock
/// per packet; a worker reads its TSC and the published offset, no system call).
const WALL_REREAD: Duration = Duration::from_millis(250);

/// What the `clock shift` request (tests only) adds to the host's wall clock.
static WALL_SHIFT_NS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Moves the wall clock the daemon reads by `ns` from the host's (tests only: `clock shift`);
/// published at the control loop's next read.
pub fn shift_wall_clock(ns: i64) {
    WALL_SHIFT_NS.store(ns, Ordering::Relaxed);
}

/// Publishes the offset between the wall clock (with any test shift) and the workers' clock.
fn publish_wall_offset() {
    let shift = WALL_SHIFT_NS.load(Ordering::Relaxed) as u64;
    let wall = wall_ns().wrapping_add(shift);
    dataplane::classify::time::set_wall_offset(wall.wrapping_sub(tsc_ns()));
}

/// The wall clock in nanoseconds since the Unix epoch.
fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// Requests the control thread serves for other threads.
enum ControlMsg {
    Mgmt(
        crate::mgmt::Request,
        crossbeam_channel::Sender<serde_json::Value>,
    ),
    Metrics(crossbeam_channel::Sender<String>),
}

/// LOG records queued between the workers and the control thread.
const LOG_QUEUE: usize = 4096;
/// LOG lines printed per second at most; the rest are counted and reported.
const LOG_LINES_PER_SEC: u32 = 100;

/// Prints LOG records as kernel-style lines, at most `per_sec` a second.
struct LogLimiter {
    per_sec: u32,
    window: Instant,
    printed: u32,
    suppressed: u64,
}

impl LogLimiter {
    fn new(per_sec: u32) -> LogLimiter {
        LogLimiter {
            per_sec,
            window: Instant::now(),
            printed: 0,
            suppressed: 0,
        }
    }

    fn log(&mut self, snap: &dataplane::filter::FilterSnapshot, ports: &[String], rec: &LogRecord) {
        if self.window.elapsed() >= Duration::from_secs(1) {
            if self.suppressed > 0 {
                eprintln!(
                    "rampart: {} LOG records suppressed (rate limit {}/s)",
                    self.suppressed, self.per_sec
                );
            }
            self.window = Instant::now();
            self.printed = 0;
            self.suppressed = 0;
        }
        if self.printed >= self.per_sec {
            self.suppressed += 1;
            return;
        }
        self.printed += 1;
        let m = &rec.meta;
        let k = &m.key;
        let rules = if rec.input {
            snap.filter.input(k.family)
        } else {
            snap.filter.rules(k.family)
        };
        // LOG's syslog level; an NFLOG record names its group instead.
        let spec = rules.and_then(|rs| rs.logs.get(rec.log as usize));
        let lead = match spec {
            Some(l) if l.group.is_some() => l.lead(),
            Some(l) => format!("<{}>{}", l.level, l.prefix),
            None => "<4>".to_string(),
        };
        let name = |i: u8| ports.get(usize::from(i)).map_or("?", String::as_str);
        let mut line = format!(
            "{lead}IN={} OUT={} SRC={} DST={} PROTO={}",
            name(m.in_port),
            name(m.out_port),
            k.src.to_std(),
            k.dst.to_std(),
            k.proto
        );
        if !m.later_fragment && matches!(k.proto, 6 | 17) {
            line += &format!(" SPT={} DPT={}", k.src_port, k.dst_port);
        }
        eprintln!("{line}");
    }
}

/// The `stats` answer: totals, per port, per worker, drops by reason.
fn stats_json(
    ports: &[String],
    stats: &[Arc<WorkerStats>],
    metrics: Option<&str>,
) -> serde_json::Value {
    let total = totals(stats);
    let drops: serde_json::Map<String, serde_json::Value> = total
        .drop_reasons()
        .map(|(r, n)| (r.name().to_string(), n.into()))
        .collect();
    serde_json::json!({
        "rx_packets": total.rx_packets(),
        "tx_packets": total.tx_packets(),
        "dropped": total.dropped(),
        "tx_refused": total.tx_dropped(),
        "reject_replies": { "sent": total.replies_sent, "lost": total.replies_lost },
        "handed_off": total.handed_off,
        "drops": drops,
        "conntrack": crate::daemon::ct_json(&total.ct),
        "router": crate::daemon::router_json(&total.router),
        "ports": ports.iter().enumerate().map(|(i, name)| serde_json::json!({
            "name": name, "rx_packets": total.ports[i].rx_packets, "rx_bytes": total.ports[i].rx_bytes,
            "tx_packets": total.ports[i].tx_packets, "tx_bytes": total.ports[i].tx_bytes,
            "tx_refused": total.ports[i].tx_dropped,
        })).collect::<Vec<_>>(),
        "workers": stats.iter().enumerate().map(|(w, s)| {
            let s = s.snapshot();
            let drops: serde_json::Map<String, serde_json::Value> =
                s.drop_reasons().map(|(r, n)| (r.name().to_string(), n.into())).collect();
            serde_json::json!({ "worker": w, "rx_packets": s.rx_packets(), "tx_packets": s.tx_packets(), "drops": drops })
        }).collect::<Vec<_>>(),
        "metrics": metrics,
    })
}

fn pick_lcores(eal: &Eal, cfg: &Config) -> Result<Vec<LcoreId>, RunError> {
    let available = eal.worker_lcores();
    let lcores: Vec<LcoreId> = if cfg.workers.lcores.is_empty() {
        available.iter().copied().take(cfg.workers.count).collect()
    } else {
        cfg.workers.lcores.iter().map(|&l| LcoreId(l)).collect()
    };
    if lcores.len() < cfg.workers.count {
        return Err(RunError::Setup(format!(
            "workers.count = {} but the EAL enabled {} worker lcore(s) ({}); give more with -l/--lcores in [eal] args, e.g. --lcores=0@0,1@1,2@1",
            cfg.workers.count,
            available.len(),
            available.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(",")
        )));
    }
    if let Some(bad) = lcores.iter().find(|l| !available.contains(l)) {
        return Err(RunError::Setup(format!(
            "workers.lcores: lcore {bad} is not a worker lcore enabled by the EAL arguments"
        )));
    }
    Ok(lcores)
}

impl RunSummary {
    /// The summary as JSON (for scripts and tests).
    pub fn to_json(&self) -> serde_json::Value {
        let drops = |s: &StatsSnapshot| -> serde_json::Map<String, serde_json::Value> {
            s.drop_reasons()
                .map(|(r, n)| (r.name().to_string(), n.into()))
                .collect()
        };
        serde_json::json!({
            "seconds": self.seconds,
            "tsc_hz": self.tsc_hz,
            "rx_packets": self.total.rx_packets(),
            "tx_packets": self.total.tx_packets(),
            "dropped": self.total.dropped(),
            "tx_refused": self.total.tx_dropped(),
            "reject_replies": { "sent": self.total.replies_sent, "lost": self.total.replies_lost },
            "handed_off": self.total.handed_off,
            "drops": drops(&self.total),
            "conntrack": crate::daemon::ct_json(&self.total.ct),
            "ports": self.ports.iter().enumerate().map(|(i, p)| serde_json::json!({
                "name": p.name, "driver": p.driver, "rss": p.rss,
                "rx_packets": self.total.ports[i].rx_packets, "tx_packets": self.total.ports[i].tx_packets,
                "rx_bytes": self.total.ports[i].rx_bytes, "tx_bytes": self.total.ports[i].tx_bytes,
                "tx_refused": self.total.ports[i].tx_dropped,
                "device": { "rx_packets": p.device.rx_packets, "tx_packets": p.device.tx_packets,
                    "rx_missed": p.device.rx_missed, "rx_errors": p.device.rx_errors, "tx_errors": p.device.tx_errors,
                    "rx_nombuf": p.device.rx_nombuf, "queue_rx_packets": p.device.queue_rx_packets,
                    "queue_tx_packets": p.device.queue_tx_packets },
            })).collect::<Vec<_>>(),
            "workers": self.workers.iter().map(|w| serde_json::json!({
                "rx_packets": w.rx_packets(), "tx_packets": w.tx_packets(), "dropped": w.dropped(),
                "busy_polls": w.busy_polls, "polls": w.polls, "busy_tsc": w.busy_tsc,
            })).collect::<Vec<_>>(),
            "mbufs_in_use": { "start": self.mbufs_in_use_start, "end": self.mbufs_in_use_end, "after_close": self.mbufs_in_use_closed },
        })
    }

    /// A human-readable report.
    pub fn report(&self) -> String {
        let mut s = format!(
            "rampart: stopped after {:.2} s: received {}, forwarded {}, dropped {}, refused by TX {}\n",
            self.seconds,
            self.total.rx_packets(),
            self.total.tx_packets(),
            self.total.dropped(),
            self.total.tx_dropped()
        );
        for (i, p) in self.ports.iter().enumerate() {
            let t = &self.total.ports[i];
            s += &format!(
                "  port {:<12} rx {:>10} tx {:>10} tx_refused {:>6}\n",
                p.name, t.rx_packets, t.tx_packets, t.tx_dropped
            );
        }
        for (r, n) in self.total.drop_reasons() {
            s += &format!("  drop {:<24} {n}\n", r.name());
        }
        for (w, ws) in self.workers.iter().enumerate() {
            s += &format!(
                "  worker {w}: rx {} tx {} dropped {}\n",
                ws.rx_packets(),
                ws.tx_packets(),
                ws.dropped()
            );
        }
        s += &format!(
            "  mbufs in use: {} at start, {} at stop, {} after ports closed{}\n",
            self.mbufs_in_use_start,
            self.mbufs_in_use_end,
            self.mbufs_in_use_closed,
            if self.mbufs_in_use_end != self.mbufs_in_use_start {
                "  LEAK"
            } else {
                ""
            }
        );
        s
    }
}
