//! FAST PATH: no allocation, lock, syscall or log.
//!
//! The worker loop (DPDK l3fwd's shape): for each port, RX a burst from this worker's queue,
//! judge each packet, queue it on the TX buffer of its egress port, flush a buffer when it is full
//! and every buffer when the drain timer fires; what TX refuses is freed and counted.
//!
//! A worker owns queue `w` of every port, so workers share nothing writable.

use crate::classify::{LogSpec, PacketMeta, RejectWith};
use crate::conntrack::frag::{FragError, HoldLimits, Reassembly};
use crate::conntrack::ConnInfo;
use crate::dpdk::simd::{
    screen_level_cap, CalledScreen, NoScreen, Screen, ScreenTask, Simd, SimdLevel,
};
use crate::dpdk::{
    tsc, tsc_hz, Flushed, HandedOff, HandoffBuffer, Mbuf, Mempool, RingRx, RingTx, RxBurst,
    RxQueue, TxBuffer, TxQueue, MAX_BURST,
};
use crate::filter::{FilterSnapshot, FilterVerdict};
use crate::pipeline::{passes_through, Bridge, PassThrough, MAX_PORTS, UNCOMMON};
use crate::rcu::Reader;
use crate::router::{Arrival, Emit, Fate, Router, RouterState};
use crate::stats::{bump, WorkerStats};
use crate::track::Tables;
use crate::verdict::{DropReason, Verdict};
use crate::wire::parse::ether_kinds;
use crate::wire::{Family, L3};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Everything one worker needs; moved onto its lcore.
pub struct Worker {
    pub id: usize,
    /// This worker's RX/TX queue on every port, indexed by port index.
    pub queues: Vec<(RxQueue, TxQueue)>,
    pub pipeline: Arc<Bridge>,
    pub stats: Arc<WorkerStats>,
    pub stop: Arc<AtomicBool>,
    /// TX buffers are flushed at least this often (TSC ticks).
    pub drain_tsc: u64,
    /// The rule sets, published by the control thread.
    pub rules: Reader<FilterSnapshot>,
    /// Where REJECT replies are allocated.
    pub pool: Arc<Mempool>,
    /// LOG records for the control thread (bounded; full means the record is counted and lost).
    pub logs: crossbeam_channel::Sender<LogRecord>,
    /// This worker's connections and fragments; `None` runs the bridge without tracking.
    pub tables: Option<Box<Tables>>,
    /// Management requests about this worker's tables (answered between bursts).
    pub commands: crossbeam_channel::Receiver<CtCommand>,
    /// Rings to and from the other workers, when there are several and they track
    /// connections ([`crate::steer`]).
    pub handoff: Option<Handoff>,
    /// Router mode: the router (shared) and this worker's neighbours and counters. Needs
    /// `tables` (router mode tracks connections).
    pub router: Option<(Arc<Router>, Box<RouterState<Mbuf>>)>,
}

/// A worker's hand-off rings: packets whose connection another worker owns go there.
pub struct Handoff {
    /// Workers in all.
    pub workers: u16,
    /// `to[w]`: the ring to worker `w` (`None` for this worker itself).
    pub to: Vec<Option<RingTx>>,
    /// Rings from the other workers.
    pub from: Vec<RingRx>,
}

/// [`Handoff`] with a buffer per destination.
struct Steering {
    workers: u16,
    to: Vec<Option<(RingTx, HandoffBuffer)>>,
    from: Vec<RingRx>,
}

/// Connections a `List` request returns at most per answer: a chunk is small enough that the
/// worker answers it between two bursts without stalling traffic.
pub const LIST_CHUNK: usize = 4096;
/// Slots a `Flush` request clears per answer.
pub const FLUSH_CHUNK: u32 = 65_536;

/// A management request to a worker about its conntrack table. The control thread walks a
/// table a chunk at a time, each answer naming where to continue.
#[derive(Debug)]
pub enum CtCommand {
    /// Live connections from slot `from` on, as many as `buf`'s capacity (the control thread
    /// provides the memory).
    List {
        from: u32,
        buf: Vec<ConnInfo>,
        reply: crossbeam_channel::Sender<CtListChunk>,
    },
    /// Removes the connections of the next [`FLUSH_CHUNK`] slots from `from`.
    Flush {
        from: u32,
        reply: crossbeam_channel::Sender<CtFlushChunk>,
    },
}

/// One answer to [`CtCommand::List`].
#[derive(Debug)]
pub struct CtListChunk {
    pub conns: Vec<ConnInfo>,
    /// Where to continue; `None` when the table is done.
    pub next: Option<u32>,
}

/// One answer to [`CtCommand::Flush`].
#[derive(Clone, Copy, Debug)]
pub struct CtFlushChunk {
    pub removed: u32,
    pub next: Option<u32>,
}

/// Converts TSC ticks to nanoseconds with one multiply (a 32.32 fixed-point factor).
#[derive(Clone, Copy, Debug)]
struct TscClock {
    mult: u128,
}

impl TscClock {
    fn new(hz: u64) -> TscClock {
        TscClock {
            mult: (1_000_000_000u128 << 32) / u128::from(hz.max(1)),
        }
    }

    #[inline(always)]
    fn ns(self, tsc: u64) -> u64 {
        ((u128::from(tsc) * self.mult) >> 32) as u64
    }
}

/// The workers' packet clock (`Wire::now_ns`) read now, for the control thread (runtime
/// ipset entry timeouts count on it).
pub fn clock_ns() -> u64 {
    match tsc_hz() {
        // No EAL (no workers either): any monotonic clock.
        0 => {
            static T0: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            T0.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64
        }
        hz => TscClock::new(hz).ns(tsc()),
    }
}

/// Expired connections retired per loop iteration at most.
const EXPIRE_BUDGET: u32 = 128;

/// A packet that passed a LOG rule, for the control thread to print.
#[derive(Clone, Copy, Debug)]
pub struct LogRecord {
    /// Index into the rule set's `logs` (of the packet's family) at the time of the match.
    pub log: u32,
    /// The rule was in the INPUT chain's rule set (router mode), not FORWARD's.
    pub input: bool,
    /// The packet as the rule saw it.
    pub meta: PacketMeta,
}

/// What one burst needs besides the packets.
struct Ctx<'a> {
    id: usize,
    pipeline: &'a Bridge,
    rules: &'a FilterSnapshot,
    stats: &'a WorkerStats,
    logs: &'a crossbeam_channel::Sender<LogRecord>,
    pool: &'a Mempool,
    /// Fragments held until their datagram is whole ([`Reassembly`]).
    held: &'a RefCell<Reassembly<Mbuf>>,
}

struct Egress {
    q: TxQueue,
    buf: TxBuffer,
}

impl Worker {
    /// Polls until `stop` is set, then flushes what is buffered and returns.
    pub fn run(self) {
        let Worker {
            id,
            queues,
            pipeline,
            stats,
            stop,
            drain_tsc,
            mut rules,
            logs,
            pool,
            mut tables,
            commands,
            handoff,
            mut router,
        } = self;
        let mut steering = handoff.map(|h| Steering {
            workers: h.workers,
            to: h
                .to
                .into_iter()
                .map(|r| r.map(|r| (r, HandoffBuffer::default())))
                .collect(),
            from: h.from,
        });
        let clock = TscClock::new(tsc_hz());
        let stateful = tables.is_some() || steering.is_some();
        assert!(
            queues.len() <= MAX_PORTS,
            "ports are bounded by configuration"
        );
        let (mut rx, tx): (Vec<RxQueue>, Vec<TxQueue>) = queues.into_iter().unzip();
        let mut egress: Vec<Egress> = tx
            .into_iter()
            .map(|q| Egress {
                q,
                buf: TxBuffer::default(),
            })
            .collect();
        // The pass-through judge of each port (they depend on the bridge alone).
        let judges: Vec<PassThrough> = (0..rx.len())
            .map(|p| pipeline.pass_judge(p as u16))
            .collect();
        // The pass-through loop's burst screen: the widest SIMD level this CPU runs, or at
        // most the one the environment names (for measuring the narrower builds; the daemon
        // refuses to start with a value that names no level).
        let simd = Simd::detect_up_to(screen_level_cap().unwrap_or(SimdLevel::Avx512));
        let mut burst = RxBurst::default();
        // Ports whose last burst was IPv4 alone: their next is checked without the screen.
        let mut scalar = 0u32;
        let mut last_drain = tsc();
        let mut last_tsc = last_drain;
        let held = RefCell::new(Reassembly::new(match tables.as_deref() {
            Some(t) => t.hold,
            None => HoldLimits {
                fragments: 0,
                bytes: 0,
                timeout_ns: 0,
            },
        }));

        while !stop.load(Ordering::Relaxed) {
            // The pass-through bridge first, before anything the other paths need is gathered
            // (without tracking there are no tables, which the router path needs): whole
            // iterations in a loop of its own, which gives the TSC that ended the last. Not at
            // the AVX-512 level: there the loop of its own ran behind the worker loop's
            // per-burst pass-through in alternating runs (docs/design/foundation.md).
            let through = !stateful && passes_through(&rules.get().filter);
            let now = if through && simd.level() != SimdLevel::Avx512 {
                simd.run_screen(PassLoop {
                    rx: &mut rx,
                    judges: &judges,
                    burst: &mut burst,
                    scalar: &mut scalar,
                    stats: &stats,
                    egress: &mut egress,
                    stop: &stop,
                    rules: &mut rules,
                    last_tsc: &mut last_tsc,
                    last_drain: &mut last_drain,
                    drain_tsc,
                    routed: router.is_some(),
                    commands: &commands,
                })
            } else {
                let mut got = 0usize;
                if through {
                    got += pass_ports(
                        &mut rx,
                        &judges,
                        CalledScreen(simd),
                        &mut burst,
                        &mut scalar,
                        &stats,
                        &mut egress,
                    );
                } else {
                    for (ingress, q) in rx.iter_mut().enumerate() {
                        let n = burst.receive(q);
                        if n == 0 {
                            continue;
                        }
                        got += n;
                        let now_ns = clock.ns(last_tsc);
                        let ctx = Ctx {
                            id,
                            pipeline: &pipeline,
                            rules: rules.get(),
                            stats: &stats,
                            logs: &logs,
                            pool: &pool,
                            held: &held,
                        };
                        if let (Some((r, st)), Some(t)) = (router.as_mut(), tables.as_deref_mut()) {
                            route_burst(
                                Source::Port(ingress as u16),
                                &mut burst,
                                &ctx,
                                t,
                                (r, st),
                                steering.as_mut(),
                                now_ns,
                                &mut egress,
                            );
                        } else if stateful {
                            handle_burst::<true>(
                                Source::Port(ingress as u16),
                                &mut burst,
                                &ctx,
                                tables.as_deref_mut(),
                                steering.as_mut(),
                                now_ns,
                                &mut egress,
                            );
                        } else {
                            handle_burst::<false>(
                                Source::Port(ingress as u16),
                                &mut burst,
                                &ctx,
                                None,
                                None,
                                now_ns,
                                &mut egress,
                            );
                        }
                    }
                }
                if let Some(st) = steering.as_mut() {
                    let now_ns = clock.ns(last_tsc);
                    for r in 0..st.from.len() {
                        let n = burst.receive_ring(&mut st.from[r]);
                        if n == 0 {
                            continue;
                        }
                        got += n;
                        let ctx = Ctx {
                            id,
                            pipeline: &pipeline,
                            rules: rules.get(),
                            stats: &stats,
                            logs: &logs,
                            pool: &pool,
                            held: &held,
                        };
                        if let (Some((rt, rst)), Some(t)) = (router.as_mut(), tables.as_deref_mut())
                        {
                            route_burst(
                                Source::Ring,
                                &mut burst,
                                &ctx,
                                t,
                                (rt, rst),
                                None,
                                now_ns,
                                &mut egress,
                            );
                            continue;
                        }
                        handle_burst::<true>(
                            Source::Ring,
                            &mut burst,
                            &ctx,
                            tables.as_deref_mut(),
                            None,
                            now_ns,
                            &mut egress,
                        );
                    }
                }
                // Held fragments (only with tracking): whole datagrams to judge, incomplete
                // ones whose time is up.
                if stateful && !held.borrow().is_empty() {
                    if let Some(t) = tables.as_deref_mut() {
                        let ctx = Ctx {
                            id,
                            pipeline: &pipeline,
                            rules: rules.get(),
                            stats: &stats,
                            logs: &logs,
                            pool: &pool,
                            held: &held,
                        };
                        let now_ns = clock.ns(last_tsc);
                        let router = router.as_mut().map(|(r, st)| (&**r, &mut **st));
                        release_whole(
                            &ctx,
                            t,
                            router,
                            steering.as_mut(),
                            &mut burst,
                            now_ns,
                            &mut egress,
                        );
                    }
                }
                // Quiescent point: nothing of the rule snapshot is held across it.
                rules.quiesce();
                // One TSC read per iteration: it ends this iteration and starts the next.
                let now = tsc();
                end_poll(&stats, got, now, &mut last_tsc);
                now
            };
            if let Some(t) = tables.as_deref_mut() {
                t.expire(clock.ns(now), EXPIRE_BUDGET);
            }
            if now.wrapping_sub(last_drain) >= drain_tsc {
                if let Some((r, st)) = router.as_mut() {
                    router_tick(r, st, clock.ns(now), &pool, &mut egress, &stats);
                }
                drain(&mut egress, &stats);
                last_drain = now;
                if let Some(t) = tables.as_deref() {
                    stats.ct.publish(t);
                    stats.ct.publish_hold(&held.borrow().stats);
                }
                if let Some((_, st)) = router.as_ref() {
                    stats.router.publish(st);
                }
                if !commands.is_empty() {
                    answer(&commands, tables.as_deref_mut(), clock.ns(now));
                }
            }
        }
        // Datagrams still incomplete never become whole.
        held.borrow_mut().drain(|m, why| {
            stats.drop_packet(DropReason::Fragment(why));
            drop(m);
        });
        drain(&mut egress, &stats);
        if let Some(t) = tables.as_deref() {
            stats.ct.publish(t);
            stats.ct.publish_hold(&held.borrow().stats);
        }
        if let Some((_, st)) = router.as_ref() {
            stats.router.publish(st);
        }
    }
}

/// Answers the pending management requests (slow path, between bursts).
#[cold]
#[inline(never)]
fn answer(
    commands: &crossbeam_channel::Receiver<CtCommand>,
    mut tables: Option<&mut Tables>,
    now_ns: u64,
) {
    while let Ok(c) = commands.try_recv() {
        match c {
            CtCommand::List {
                from,
                mut buf,
                reply,
            } => {
                buf.clear();
                let next = match tables.as_deref() {
                    Some(t) => t.ct.list_from(from, &mut buf, now_ns),
                    None => None,
                };
                // The requester may have gone; nothing to do then.
                let _ = reply.try_send(CtListChunk { conns: buf, next });
            }
            CtCommand::Flush { from, reply } => {
                let (removed, next) = match tables.as_deref_mut() {
                    Some(t) => t.ct.flush_from(from, FLUSH_CHUNK),
                    None => (0, None),
                };
                let _ = reply.try_send(CtFlushChunk { removed, next });
            }
        }
    }
}

/// Marks a packet of the burst as dropped in the egress array.
const DROPPED: u16 = u16::MAX;
/// No packet of the burst parsed ahead.
const NOT_PARSED: [Option<crate::wire::PacketInfo>; MAX_BURST] = [None; MAX_BURST];

/// Marks a packet handed to worker `w` as `HANDED | w`.
const HANDED: u16 = 0x8000;
/// Marks a fragment held until its datagram is whole ([`hold_fragment`]).
const HELD: u16 = u16::MAX - 1;

/// Holds a fragment until its datagram is whole, as Linux's conntrack reassembles before any
/// table; what the store drops for it (itself, its datagram, the oldest datagram for room) is
/// counted with the reason.
#[cold]
#[inline(never)]
fn hold_fragment(ctx: &Ctx<'_>, mut m: Mbuf, ingress: u16, now_ns: u64) {
    m.set_port(ingress);
    let drop_with = |m: Mbuf, why: FragError| {
        ctx.stats.drop_packet(DropReason::Fragment(why));
        drop(m);
    };
    match crate::wire::parse_frame(m.data()) {
        Ok(info) => ctx
            .held
            .borrow_mut()
            .hold(m, |m| m.data(), &info, now_ns, drop_with),
        Err(_) => drop_with(m, FragError::NotAFragment),
    }
}

/// Judges the whole datagrams, one at a time, as bursts from a hand-off ring (each mbuf's
/// port is the port it came in by; its fragments in offset order, the first judged for the
/// datagram and the others taking its verdict), and drops those whose time is up. Fragments
/// are held by the worker of their address pair; a whole datagram whose first fragment
/// belongs to another worker (an ICMP error by its quote, a tuple the NAT steering places) is
/// handed to it whole, where it is held again and judged.
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn release_whole(
    ctx: &Ctx<'_>,
    tables: &mut Tables,
    mut router: Option<(&Router, &mut RouterState<Mbuf>)>,
    mut steering: Option<&mut Steering>,
    burst: &mut RxBurst,
    now_ns: u64,
    egress: &mut [Egress],
) {
    {
        // Router mode answers a datagram given up at the timeout (IPv6, its first fragment
        // came) with time exceeded, as Linux's defrag queue does.
        let out = RefCell::new(Out {
            pool: ctx.pool,
            egress: &mut *egress,
            stats: ctx.stats,
        });
        ctx.held.borrow_mut().expire(now_ns, |m, why| {
            if let (Some((r, st)), FragError::Timeout) = (router.as_mut(), why) {
                r.reassembly_timed_out(st, m.port(), m.data(), now_ns, &mut Shared(&out));
            }
            ctx.stats.drop_packet(DropReason::Fragment(why));
            drop(m);
        });
    }
    loop {
        let mut ready: [Option<Mbuf>; MAX_BURST] = std::array::from_fn(|_| None);
        let mut n = 0;
        let payload = ctx.rules.filter.reads_payload();
        if payload {
            crate::classify::payload::gather(ctx.held.borrow().next_whole().map(|m| m.data()));
        }
        let whole = ctx.held.borrow_mut().take_whole(MAX_BURST, |m| {
            ready[n] = Some(m);
            n += 1;
        });
        let Some(whole) = whole else {
            return;
        };
        if let Some(st) = steering.as_deref_mut() {
            let owner = ready[0]
                .as_ref()
                .and_then(|m| whole_owner(ctx, m.data(), st.workers));
            if let Some(w) = owner.filter(|&w| usize::from(w) != ctx.id) {
                match st.to.get_mut(usize::from(w)).and_then(Option::as_mut) {
                    Some((ring, buf)) => {
                        for m in ready.iter_mut().filter_map(Option::take) {
                            handed(ctx.stats, buf.push(m, ring));
                        }
                        handed(ctx.stats, buf.flush(ring));
                    }
                    None => {
                        for m in ready.iter_mut().filter_map(Option::take) {
                            ctx.stats.drop_packet(DropReason::HandoffFull);
                            drop(m);
                        }
                    }
                }
                if payload {
                    // Judged by its owner, which gathers it again.
                    crate::classify::payload::clear();
                }
                continue;
            }
        }
        burst.refill(ready.iter_mut().filter_map(Option::take));
        tables.whole = Some(whole);
        match router.as_mut() {
            Some((r, st)) => route_burst(
                Source::Ring,
                burst,
                ctx,
                tables,
                (r, st),
                None,
                now_ns,
                egress,
            ),
            None => handle_burst::<true>(
                Source::Ring,
                burst,
                ctx,
                Some(&mut *tables),
                None,
                now_ns,
                egress,
            ),
        }
        tables.whole = None;
        if payload {
            crate::classify::payload::clear();
        }
    }
}

/// The owner of a whole datagram, by its first fragment (`frame`) as if it were not
/// fragmented ([`crate::steer::owner_nat_whole`], [`crate::steer::owner_of_whole`]).
fn whole_owner(ctx: &Ctx<'_>, frame: &[u8], workers: u16) -> Option<u16> {
    let info = crate::wire::parse_frame(frame).ok()?;
    match ctx.rules.filter.nat.as_deref() {
        Some(nat) => crate::steer::owner_nat_whole(frame, &info, &nat.steering),
        None => crate::steer::owner_of_whole(frame, &info, workers),
    }
}

/// Where a burst came from.
#[derive(Clone, Copy)]
enum Source {
    /// This worker's queue on a port (by index).
    Port(u16),
    /// Another worker's hand-off ring; each packet's port index is in its mbuf.
    Ring,
}

/// Judges a received burst in stages (prefetch, verdicts over the whole burst, then hand-off)
/// and moves each packet to its egress buffer or frees it. Counters are added once per burst.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn handle_burst<const STATEFUL: bool>(
    source: Source,
    burst: &mut RxBurst,
    ctx: &Ctx<'_>,
    mut tables: Option<&mut Tables>,
    mut steering: Option<&mut Steering>,
    now_ns: u64,
    egress: &mut [Egress],
) {
    // Without tracking the compiler drops every stateful branch: the loop keeps the few
    // registers the pass-through path needs (spilling them costs a third of its rate).
    if !STATEFUL {
        tables = None;
        steering = None;
    }
    let stats = ctx.stats;
    burst.prefetch_data();
    // What the prefetch pass parsed (stateful instance only: the pass-through one reads a
    // constant and keeps no burst-sized array alive), and what it learnt of each IP frame's
    // tuple.
    let mut hints = [crate::conntrack::Hint::default(); MAX_BURST];
    let scratch;
    let parsed: &[Option<crate::wire::PacketInfo>; MAX_BURST] = match tables.as_deref() {
        Some(t) if STATEFUL => {
            let mut p = [None; MAX_BURST];
            prefetch_received(t, burst, &mut p, &mut hints);
            scratch = p;
            &scratch
        }
        _ => &NOT_PARSED,
    };
    let mut out = [DROPPED; MAX_BURST];
    let mut rx_bytes = 0u64;
    let mut whole_reject = None;
    let pkts = burst.packets_mut();
    let n = pkts.len();
    for (i, (m, o)) in pkts.iter_mut().zip(out.iter_mut()).enumerate() {
        rx_bytes += m.pkt_len() as u64;
        let ingress = match source {
            Source::Port(p) => usize::from(p),
            Source::Ring if STATEFUL => usize::from(m.port()),
            Source::Ring => unreachable!("rings exist only with tracking"),
        };
        if let Some(st) = steering.as_deref() {
            // The prefetch pass parsed the frame already (unless it left it to the full parser).
            let owner = match (&parsed[i], ctx.rules.filter.nat.as_deref()) {
                (Some(info), None) => crate::steer::owner_of(m.data(), info, st.workers),
                (None, None) => crate::steer::owner(m.data(), st.workers),
                (info, Some(nat)) => steer_nat(m.data(), *info, &nat.steering),
            };
            if let Some(w) = owner {
                if usize::from(w) != ctx.id {
                    m.set_port(ingress as u16);
                    *o = HANDED | w;
                    continue;
                }
            }
        }
        let (verdict, with) = if m.segments() > 1 && !m.contiguous() {
            (Verdict::Drop(DropReason::Unlinearizable), None)
        } else {
            let len = m.pkt_len() as u64;
            judge(
                ctx,
                tables.as_deref_mut(),
                now_ns,
                ingress as u16,
                m.data_mut(),
                if STATEFUL {
                    parsed[i].as_ref().map(|p| (p, hints[i]))
                } else {
                    None
                },
                len,
            )
        };
        *o = match verdict {
            Verdict::Forward(port) => port,
            // Router mode only: a bridge never delivers locally.
            Verdict::Local => {
                stats.drop_packet(DropReason::NoPeer);
                DROPPED
            }
            Verdict::Drop(DropReason::Fragment(FragError::Incomplete)) if STATEFUL => HELD,
            Verdict::Drop(reason) => {
                stats.drop_packet(reason);
                if let Some(with) = with {
                    match tables.as_deref().and_then(|t| t.whole) {
                        // A whole datagram's first fragment: answered below, about the
                        // datagram its fragments in this burst make.
                        Some(w) if STATEFUL => whole_reject = Some((i, ingress, w, with)),
                        _ => reject(ctx, ingress, m.data(), with, egress),
                    }
                }
                DROPPED
            }
        };
    }
    if let Some((i, ingress, w, with)) = whole_reject.filter(|_| STATEFUL) {
        reject_whole(ctx, ingress, &mut burst.packets_mut()[i..], w, with, egress);
    }
    if let Source::Port(ingress) = source {
        // Counted where the packets arrived, not again where they are handed.
        let in_ctr = &stats.ports[usize::from(ingress)];
        bump(&in_ctr.rx_packets, n as u64);
        bump(&in_ctr.rx_bytes, rx_bytes);
    }

    let first = out[0];
    if first < HANDED && out[..n].iter().all(|&o| o == first) {
        // The common case in a bridge: the whole burst leaves by the peer port.
        send_all(egress, stats, first, burst, rx_bytes);
        return;
    }
    for (m, &o) in burst.by_ref().zip(out.iter()) {
        if o == DROPPED {
            drop(m);
        } else if o == HELD {
            let ingress = match source {
                Source::Port(p) => p,
                Source::Ring => m.port(),
            };
            hold_fragment(ctx, m, ingress, now_ns);
        } else if o & HANDED != 0 {
            let to = steering
                .as_deref_mut()
                .and_then(|st| st.to.get_mut(usize::from(o & !HANDED)))
                .and_then(Option::as_mut);
            match to {
                Some((ring, buf)) => handed(stats, buf.push(m, ring)),
                None => {
                    stats.drop_packet(DropReason::HandoffFull);
                    drop(m);
                }
            }
        } else {
            let e = &mut egress[usize::from(o)];
            let f = e.buf.push(m, &mut e.q);
            account(stats, usize::from(o), f);
        }
    }
    if let Some(st) = steering {
        for (ring, buf) in st.to.iter_mut().flatten() {
            if !buf.is_empty() {
                handed(stats, buf.flush(ring));
            }
        }
    }
}

/// Conntrack's prefetch pass ([`crate::track::prefetch_burst`]) over a received burst, each
/// frame's parse then given the device's L4 checksum verdict (RX offload), for conntrack.
#[inline(always)]
fn prefetch_received(
    tables: &Tables,
    burst: &mut RxBurst,
    parsed: &mut [Option<crate::wire::PacketInfo>; MAX_BURST],
    hints: &mut [crate::conntrack::Hint; MAX_BURST],
) {
    crate::track::prefetch_burst(
        tables,
        burst.packets_mut().iter().map(|m| m.data()),
        parsed,
        hints,
    );
    for (info, m) in parsed.iter_mut().zip(burst.packets_mut().iter()) {
        if let Some(i) = info {
            i.l4_csum = m.rx_l4_csum();
        }
    }
}

/// The counters of one poll of every queue, `got` packets received, ended at TSC `now`.
#[inline(always)]
fn end_poll(stats: &WorkerStats, got: usize, now: u64, last_tsc: &mut u64) {
    bump(&stats.polls, 1);
    if got > 0 {
        bump(&stats.busy_polls, 1);
        bump(&stats.busy_tsc, now.wrapping_sub(*last_tsc));
    }
    *last_tsc = now;
}

/// Iterations of the worker loop for the pass-through bridge: [`pass_burst`] for each port's
/// burst, the quiescent point, the poll counters and the drain, as the worker loop does them
/// without tables, compiled for the screen's SIMD level (the screen inlined, and the loop's
/// values kept in registers rather than in the worker loop's crowded frame and set up again
/// for every poll). Returns after the iteration in which `stop` is set, a published rule set
/// ends the pass-through, or the drain falls due with more to do than the drain itself (a
/// router's tick, management requests), with the TSC that ended it; the worker loop goes on
/// from there as after any iteration.
struct PassLoop<'a> {
    rx: &'a mut [RxQueue],
    judges: &'a [PassThrough],
    burst: &'a mut RxBurst,
    scalar: &'a mut u32,
    stats: &'a WorkerStats,
    egress: &'a mut [Egress],
    stop: &'a AtomicBool,
    rules: &'a mut Reader<FilterSnapshot>,
    last_tsc: &'a mut u64,
    last_drain: &'a mut u64,
    drain_tsc: u64,
    /// A router runs: its tick goes with the drain.
    routed: bool,
    commands: &'a crossbeam_channel::Receiver<CtCommand>,
}

impl ScreenTask for PassLoop<'_> {
    type Output = u64;

    #[inline(always)]
    fn run<S: Screen>(self, s: S) -> u64 {
        let mut last_tsc = *self.last_tsc;
        loop {
            let got = pass_ports(
                self.rx,
                self.judges,
                s,
                self.burst,
                self.scalar,
                self.stats,
                self.egress,
            );
            // Quiescent point: nothing of the rule snapshot is held across it.
            self.rules.quiesce();
            let now = tsc();
            end_poll(self.stats, got, now, &mut last_tsc);
            let mut leave =
                self.stop.load(Ordering::Relaxed) || !passes_through(&self.rules.get().filter);
            if now.wrapping_sub(*self.last_drain) >= self.drain_tsc {
                if self.routed || !self.commands.is_empty() {
                    leave = true;
                } else {
                    drain(self.egress, self.stats);
                    *self.last_drain = now;
                }
            }
            if leave {
                *self.last_tsc = last_tsc;
                return now;
            }
        }
    }
}

/// One poll of every port for the pass-through bridge, [`pass_burst`] for each port's burst;
/// returns the packets received. A port whose last burst was IPv4 alone (bit `p` of
/// `scalar` for port `p`) has its next checked by the straight-line parser instead of the
/// screen `s`: on the AMD guest the scalar checks ran about three cycles a packet ahead of the
/// screen's gathers on IPv4 frames and far behind them on others, and a port's bursts are
/// mostly of one kind (docs/design/foundation.md, seventh round). Either way every packet
/// gets the same verdict.
#[inline(always)]
fn pass_ports<S: Screen>(
    rx: &mut [RxQueue],
    judges: &[PassThrough],
    s: S,
    burst: &mut RxBurst,
    scalar: &mut u32,
    stats: &WorkerStats,
    egress: &mut [Egress],
) -> usize {
    let mut got = 0usize;
    for (ingress, (q, judge)) in rx.iter_mut().zip(judges).enumerate() {
        let n = burst.receive(q);
        if n == 0 {
            continue;
        }
        got += n;
        let bit = 1u32 << ingress;
        let seen = if *scalar & bit != 0 {
            pass_burst_scalar(ingress, judge, burst, stats, egress)
        } else {
            pass_burst(ingress, judge, s, burst, stats, egress)
        };
        if seen == IPV4_ONLY {
            *scalar |= bit;
        } else {
            *scalar &= !bit;
        }
    }
    got
}

/// The bridge with neither tracking nor a rule set: each packet parsed and judged by its kind
/// ([`PassThrough`]), malformed ones dropped with their reason, then the burst sent on as
/// [`handle_burst`] does. Counters are added once per burst.
///
/// The first pass over the burst only validates: it notes the set of kinds of frame seen.
/// The burst screen ([`RxBurst::screen`], SIMD) finds the frames that are plainly IPv4 with a
/// UDP or TCP header, or of an ethertype the parser passes untouched, several at a time; the
/// straight-line parser checks the rest one by one. When every kind seen leaves by the peer
/// port (the usual burst) the burst goes there whole; otherwise a second pass judges each
/// packet, sending the ones the straight-line parser left (and multi-segment ones) to the
/// full parser.
#[inline(always)]
fn pass_burst<S: Screen>(
    ingress: usize,
    pass: &PassThrough,
    screen: S,
    burst: &mut RxBurst,
    stats: &WorkerStats,
    egress: &mut [Egress],
) -> u32 {
    let screened = burst.screen(screen, ether_kinds());
    let mut rx_bytes = screened.bytes;
    // Bit `k` set when some packet is of kind `k`.
    let mut seen = (u32::from(screened.ipv4 != 0) << L3::Ipv4 as u32)
        | (u32::from(screened.other != 0) << L3::Other as u32);
    let pkts = burst.packets_mut();
    let n = pkts.len();
    // Packets the screen did not settle, those it did not look at included (it sets no bit
    // past `screened`): the straight-line parser decides.
    let settled = screened.ipv4 | screened.other;
    if settled != low_bits(n) {
        let (kinds, bytes) = unsettled(pkts, settled, screened.screened);
        seen |= kinds;
        rx_bytes += bytes;
    }
    let in_ctr = &stats.ports[ingress];
    bump(&in_ctr.rx_packets, n as u64);
    bump(&in_ctr.rx_bytes, rx_bytes);

    if let Some(port) = pass.all_forwarded(seen) {
        send_all(egress, stats, port, burst, rx_bytes);
        return seen;
    }
    pass_each(pass, burst, stats, egress);
    seen
}

/// [`pass_burst`] without the screen: the straight-line parser checks every packet. Out of
/// line, so that the screened burst, inlined, is compiled as it was without this one.
#[inline(never)]
fn pass_burst_scalar(
    ingress: usize,
    pass: &PassThrough,
    burst: &mut RxBurst,
    stats: &WorkerStats,
    egress: &mut [Egress],
) -> u32 {
    pass_burst(ingress, pass, NoScreen, burst, stats, egress)
}

/// The `seen` of a burst of IPv4 frames alone.
const IPV4_ONLY: u32 = 1 << L3::Ipv4 as u32;

/// The kinds of the packets of `pkts` the screen did not settle (bit `k` for kind `k`), by
/// the straight-line parser, and the lengths of those it did not look at: it looked at the
/// first `screened` and settled those of `settled` (bit `j` for packet `j`). The values are
/// passed by value so that the screen's answer need not be written to memory.
#[inline(never)]
fn unsettled(pkts: &[Mbuf], settled: u32, screened: usize) -> (u32, u64) {
    let kind = |m: &Mbuf| {
        if m.segments() == 1 {
            PassThrough::kind(m.data())
        } else {
            UNCOMMON
        }
    };
    let mut seen = 0u32;
    let mut rest = !settled & low_bits(screened);
    while rest != 0 {
        let i = rest.trailing_zeros() as usize;
        rest &= rest - 1;
        if let Some(m) = pkts.get(i) {
            seen |= 1 << kind(m);
        }
    }
    let mut bytes = 0u64;
    for m in pkts.get(screened..).unwrap_or_default() {
        bytes += m.pkt_len() as u64;
        seen |= 1 << kind(m);
    }
    (seen, bytes)
}

/// A mask of the low `n` bits (`n` at most 32).
#[inline(always)]
fn low_bits(n: usize) -> u32 {
    (((1u64 << n) - 1) & 0xffff_ffff) as u32
}

/// The second pass of [`pass_burst`], for a burst not all forwarded to the peer: each packet
/// judged again (its kind is not kept: that would cost every burst a store per packet),
/// queued or dropped and counted.
#[inline(never)]
fn pass_each(pass: &PassThrough, burst: &mut RxBurst, stats: &WorkerStats, egress: &mut [Egress]) {
    for mut m in burst.by_ref() {
        let verdict = if m.segments() > 1 && !m.contiguous() {
            Verdict::Drop(DropReason::Unlinearizable)
        } else {
            pass.verdict(m.data())
        };
        match verdict {
            Verdict::Forward(port) => {
                let e = &mut egress[usize::from(port)];
                let f = e.buf.push(m, &mut e.q);
                account(stats, usize::from(port), f);
            }
            Verdict::Local => {
                stats.drop_packet(DropReason::NoPeer);
                drop(m);
            }
            Verdict::Drop(reason) => {
                stats.drop_packet(reason);
                drop(m);
            }
        }
    }
}

/// The owner of a frame's connection when a nat table is loaded ([`crate::steer::owner_nat`]).
#[cold]
#[inline(never)]
fn steer_nat(
    frame: &[u8],
    parsed: Option<crate::wire::PacketInfo>,
    steering: &crate::nat::Steering,
) -> Option<u16> {
    let info = match parsed {
        Some(i) => i,
        None => crate::wire::parse_frame(frame).ok()?,
    };
    crate::steer::owner_nat(frame, &info, steering)
}

/// Counts packets handed to other workers, and those their rings refused.
#[inline]
fn handed(stats: &WorkerStats, f: HandedOff) {
    if f.sent > 0 {
        bump(&stats.handed_off, u64::from(f.sent));
    }
    for _ in 0..f.dropped {
        stats.drop_packet(DropReason::HandoffFull);
    }
}

/// Bridge, conntrack and filter for one packet; counts the deciding rule and queues LOG
/// records. Also returns what a REJECT rule asks to send back. `parsed`: what the prefetch
/// pass parsed of the frame and learnt of its tuple, when it did.
#[inline(always)]
fn judge(
    ctx: &Ctx<'_>,
    tables: Option<&mut Tables>,
    now_ns: u64,
    ingress: u16,
    frame: &mut [u8],
    parsed: Option<(&crate::wire::PacketInfo, crate::conntrack::Hint)>,
    len: u64,
) -> (Verdict, Option<RejectWith>) {
    let mut with = None;
    // LOG rules passed, recorded once the frame is free to read again (rare: a cold path).
    let mut logged = Logged::default();
    let count = |family: Family, fv: FilterVerdict, with: &mut Option<RejectWith>| {
        if let Some(rule) = fv.rule() {
            if let Some(c) = ctx.rules.counters(family, ctx.id) {
                c.hit(rule, len);
            }
        }
        if let FilterVerdict::Reject { with: w, .. } = fv {
            *with = Some(w);
        }
    };
    let v = match parsed {
        Some((info, hint)) => ctx.pipeline.judge_verdict_parsed(
            &ctx.rules.filter,
            tables,
            ingress,
            frame,
            info,
            hint,
            now_ns,
            |log_rule, spec, meta| logged.push(log_rule, spec, meta),
            |family, fv| count(family, fv, &mut with),
        ),
        None => ctx.pipeline.judge_verdict(
            &ctx.rules.filter,
            tables,
            ingress,
            frame,
            now_ns,
            |log_rule, spec, meta| logged.push(log_rule, spec, meta),
            |family, fv| count(family, fv, &mut with),
        ),
    };
    if logged.n > 0 {
        logged.flush(ctx, frame.len());
    }
    (v, with)
}

/// The LOG rules one packet passed, each with the packet as the filter saw it (a packet passes
/// few; more are counted as lost).
#[derive(Default)]
struct Logged {
    /// The rule, which LOG target (its address in the rule set, to tell FORWARD's from
    /// INPUT's; never read through), the packet.
    rules: [(u32, usize, Option<PacketMeta>); 2],
    n: usize,
}

impl Logged {
    #[inline]
    fn push(&mut self, rule: u32, spec: &LogSpec, meta: &PacketMeta) {
        self.note(rule, spec, meta);
    }

    #[cold]
    #[inline(never)]
    fn note(&mut self, rule: u32, spec: &LogSpec, meta: &PacketMeta) {
        if let Some(r) = self.rules.get_mut(self.n) {
            *r = (rule, spec as *const LogSpec as usize, Some(*meta));
        }
        self.n += 1;
    }

    /// Hands the records to the control thread. Each holds the packet as the rule saw it: in
    /// the filter table, with a DNAT'd destination and an untranslated source, as Linux's LOG
    /// in FORWARD or INPUT shows it.
    #[cold]
    #[inline(never)]
    fn flush(&self, ctx: &Ctx<'_>, frame_len: usize) {
        for &(rule, spec, meta) in &self.rules[..self.n.min(self.rules.len())] {
            if let Some(meta) = meta {
                log(ctx, frame_len, rule, spec, meta);
            }
        }
        if self.n > self.rules.len() {
            bump(&ctx.stats.logs_lost, (self.n - self.rules.len()) as u64);
        }
    }
}

/// A REJECT rule matched: send the TCP reset or ICMP error back out of the ingress port.
#[cold]
#[inline(never)]
fn reject(ctx: &Ctx<'_>, ingress: usize, frame: &[u8], with: RejectWith, egress: &mut [Egress]) {
    let Ok(info) = crate::wire::parse_frame(frame) else {
        return;
    };
    let mut buf = [0u8; crate::reject::MAX_REPLY];
    let Some(n) = crate::reject::build_reply(frame, &info, with, &mut buf) else {
        return;
    };
    send_reply(ctx, ingress, &buf[..n], egress);
}

/// Sends a reply of the worker's own out of `port`.
fn send_reply(ctx: &Ctx<'_>, ingress: usize, frame: &[u8], egress: &mut [Egress]) {
    match ctx.pool.alloc_frame(frame) {
        Some(m) => {
            let e = &mut egress[ingress];
            let f = e.buf.push(m, &mut e.q);
            account(ctx.stats, ingress, f);
            bump(&ctx.stats.replies_sent, 1);
        }
        None => bump(&ctx.stats.replies_lost, 1),
    }
}

/// Router mode: a REJECT's answer ([`Router::reject`]), about the reassembled datagram when
/// `frame` is the first fragment of a whole one (`whole`; its other fragments are `rest`, the
/// burst's packets not yet taken).
#[cold]
#[inline(never)]
fn reject_routed(
    router: &Router,
    st: &mut RouterState<Mbuf>,
    (ingress, frame): (u16, &[u8]),
    (whole, rest): (Option<crate::conntrack::frag::Whole>, &mut [Mbuf]),
    with: RejectWith,
    now_ns: u64,
    emit: &mut impl Emit,
) {
    let mut frags: [&[u8]; MAX_BURST] = [&[]; MAX_BURST];
    let n = rest.len().min(MAX_BURST);
    if whole.is_some() {
        for (f, m) in frags.iter_mut().zip(rest.iter()) {
            *f = m.data();
        }
    }
    router.reject(st, ingress, frame, (whole, &frags[..n]), with, now_ns, emit);
}

/// Bridge mode: a REJECT of the first fragment of a whole datagram (`frags`: it and its other
/// fragments, in offset order), answered about the reassembled datagram
/// ([`crate::reject::reassembled`]).
#[cold]
#[inline(never)]
fn reject_whole(
    ctx: &Ctx<'_>,
    ingress: usize,
    frags: &mut [Mbuf],
    whole: crate::conntrack::frag::Whole,
    with: RejectWith,
    egress: &mut [Egress],
) {
    let Some((first, rest)) = frags.split_first() else {
        return;
    };
    let Ok(info) = crate::wire::parse_frame(first.data()) else {
        return;
    };
    let mut buf = [0u8; crate::reject::MAX_REPLY];
    let rest = rest.iter().map(|m| m.data());
    let Some((n, pi)) = crate::reject::reassembled(first.data(), &info, whole, rest, &mut buf)
    else {
        return reject(ctx, ingress, first.data(), with, egress);
    };
    let mut reply = [0u8; crate::reject::MAX_REPLY];
    if let Some(n) = crate::reject::build_reply_whole(&buf[..n], &pi, whole, with, &mut reply) {
        send_reply(ctx, ingress, &reply[..n], egress);
    }
}

/// A LOG rule matched: count it and hand the record to the control thread. `spec` is the
/// address of its target in the FORWARD or the INPUT rule set.
#[cold]
#[inline(never)]
fn log(ctx: &Ctx<'_>, frame_len: usize, rule: u32, spec: usize, meta: PacketMeta) {
    let family = meta.key.family;
    let filter = &ctx.rules.filter;
    let found = [(false, filter.rules(family)), (true, filter.input(family))]
        .into_iter()
        .find_map(|(input, rs)| {
            let i = rs?
                .logs
                .iter()
                .position(|l| l as *const LogSpec as usize == spec)?;
            Some((input, i as u32))
        });
    let Some((input, log)) = found else {
        return;
    };
    // Per-rule counters exist for FORWARD's rules.
    if !input {
        if let Some(c) = ctx.rules.counters(family, ctx.id) {
            c.hit(rule, frame_len as u64);
        }
    }
    if ctx.logs.try_send(LogRecord { log, input, meta }).is_err() {
        bump(&ctx.stats.logs_lost, 1);
    }
}

#[inline]
fn drain(egress: &mut [Egress], stats: &WorkerStats) {
    for (i, e) in egress.iter_mut().enumerate() {
        if !e.buf.is_empty() {
            let f = e.buf.flush(&mut e.q);
            account(stats, i, f);
        }
    }
}

/// A whole received burst (`bytes` long) queued on `port`'s TX buffer.
#[inline(always)]
fn send_all(
    egress: &mut [Egress],
    stats: &WorkerStats,
    port: u16,
    burst: &mut RxBurst,
    bytes: u64,
) {
    let e = &mut egress[usize::from(port)];
    let f = e.buf.push_all(burst, &mut e.q, bytes);
    account(stats, usize::from(port), f);
}

#[inline]
fn account(stats: &WorkerStats, port: usize, f: Flushed) {
    if f.sent | f.dropped == 0 {
        return;
    }
    let c = &stats.ports[port];
    bump(&c.tx_packets, u64::from(f.sent));
    bump(&c.tx_bytes, f.sent_bytes);
    if f.dropped > 0 {
        bump(&c.tx_dropped, u64::from(f.dropped));
    }
}

/// Where the router's own frames and the packets it releases go: this worker's TX buffers.
struct Out<'a> {
    pool: &'a Mempool,
    egress: &'a mut [Egress],
    stats: &'a WorkerStats,
}

impl Out<'_> {
    #[inline]
    fn send(&mut self, port: u16, m: Mbuf) {
        match self.egress.get_mut(usize::from(port)) {
            Some(e) => {
                let f = e.buf.push(m, &mut e.q);
                account(self.stats, usize::from(port), f);
            }
            None => self
                .stats
                .drop_packet(DropReason::Router(crate::router::RouterDrop::BadPort)),
        }
    }
}

/// [`Out`] shared by the router's frame sink and its release closure (never both at once).
struct Shared<'r, 'a>(&'r RefCell<Out<'a>>);

impl Emit for Shared<'_, '_> {
    #[cold]
    fn emit(&mut self, port: u16, frame: &[u8]) {
        let mut o = self.0.borrow_mut();
        match o.pool.alloc_frame(frame) {
            Some(m) => {
                o.send(port, m);
                bump(&o.stats.replies_sent, 1);
            }
            None => bump(&o.stats.replies_lost, 1),
        }
    }
}

/// Whether a frame is a neighbour answer (an ARP reply or an IPv6 neighbour advertisement):
/// what every worker's neighbour table must learn, whichever queue it arrived on.
fn is_neighbour_answer(frame: &[u8], info: &crate::wire::PacketInfo) -> bool {
    match info.l3 {
        crate::wire::L3::Arp => {
            let op = usize::from(info.l3_offset) + 6;
            frame.get(op..op + 2) == Some(&[0, 2][..])
        }
        crate::wire::L3::Ipv6 => {
            info.flow
                .is_some_and(|k| k.proto == crate::wire::ip_proto::ICMPV6)
                && info.l4_offset != 0
                && frame.get(usize::from(info.l4_offset)) == Some(&136)
        }
        _ => false,
    }
}

/// Router mode with several workers: a copy of a neighbour answer for every other worker, so
/// that each learns it and sends what it queued for that neighbour.
#[cold]
#[inline(never)]
fn share_answer(ctx: &Ctx<'_>, steering: &mut Steering, ingress: u16, frame: &[u8]) {
    for (ring, buf) in steering.to.iter_mut().flatten() {
        match ctx.pool.alloc_frame(frame) {
            Some(mut c) => {
                c.set_port(ingress);
                handed(ctx.stats, buf.push(c, ring));
            }
            None => bump(&ctx.stats.replies_lost, 1),
        }
    }
}

/// Router mode: one received burst through the router stage and the stateful stage
/// ([`crate::router`]'s sequence), each packet sent, queued for its next hop, handed to the
/// worker owning its connection, or freed. Neighbour answers are learnt here and copied to the
/// other workers.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn route_burst(
    source: Source,
    burst: &mut RxBurst,
    ctx: &Ctx<'_>,
    tables: &mut Tables,
    (router, st): (&Router, &mut RouterState<Mbuf>),
    mut steering: Option<&mut Steering>,
    now_ns: u64,
    egress: &mut [Egress],
) {
    let stats = ctx.stats;
    let n = burst.packets_mut().len();
    let mut rx_bytes = 0u64;
    // The stateful bridge's prefetch pass (`handle_burst`): each frame parsed once, its
    // conntrack bucket and entry loaded, and what the pass learnt of its tuple kept for the
    // judgement. A frame the straight-line parser leaves goes to the full parser below.
    burst.prefetch_data();
    let mut parsed = [None; MAX_BURST];
    let mut hints = [crate::conntrack::Hint::default(); MAX_BURST];
    prefetch_received(tables, burst, &mut parsed, &mut hints);
    let out = RefCell::new(Out {
        pool: ctx.pool,
        egress,
        stats,
    });
    let mut i = usize::MAX;
    // (Not a `for` over the burst: a REJECT of a whole datagram's first fragment reads the
    // other fragments, still in the burst.)
    while let Some(mut m) = burst.next() {
        i = i.wrapping_add(1);
        let len = m.pkt_len() as u64;
        rx_bytes += len;
        let ingress = match source {
            Source::Port(p) => p,
            Source::Ring => m.port(),
        };
        if m.segments() > 1 && !m.contiguous() {
            stats.drop_packet(DropReason::Unlinearizable);
            continue;
        }
        let full;
        let (info, hint) = match &parsed[i] {
            Some(info) => (info, Some(hints[i])),
            None => match crate::wire::parse_frame(m.data()) {
                Ok(mut info) => {
                    info.l4_csum = m.rx_l4_csum();
                    full = info;
                    (&full, None)
                }
                Err(e) => {
                    stats.drop_packet(DropReason::Parse(e));
                    continue;
                }
            },
        };
        let arrival = router.arrive(
            st,
            ingress,
            m.data(),
            info,
            now_ns,
            &mut Shared(&out),
            |port, p| out.borrow_mut().send(port, p),
        );
        let key = match arrival {
            Arrival::Ip(key) => key,
            Arrival::Consumed => {
                if let Some(stg) = steering.as_deref_mut() {
                    if is_neighbour_answer(m.data(), info) {
                        share_answer(ctx, stg, ingress, m.data());
                    }
                }
                continue;
            }
            Arrival::Drop(why) => {
                stats.drop_packet(why);
                continue;
            }
        };
        if let Some(stg) = steering.as_deref_mut() {
            let owner = match ctx.rules.filter.nat.as_deref() {
                Some(nat) => crate::steer::owner_nat(m.data(), info, &nat.steering),
                None => crate::steer::owner_of(m.data(), info, stg.workers),
            };
            if let Some(w) = owner.filter(|&w| usize::from(w) != ctx.id) {
                m.set_port(ingress);
                match stg.to.get_mut(usize::from(w)).and_then(Option::as_mut) {
                    Some((ring, buf)) => handed(stats, buf.push(m, ring)),
                    None => stats.drop_packet(DropReason::HandoffFull),
                }
                continue;
            }
        }
        let mut logged = Logged::default();
        let (counted, fate) = router.judge_and_route_hinted(
            st,
            &ctx.rules.filter,
            tables,
            ingress,
            m,
            info,
            &key,
            hint,
            now_ns,
            &mut Shared(&out),
            |rule, spec, meta| logged.push(rule, spec, meta),
        );
        if let (Some(rule), Some(c)) = (counted.rule(), ctx.rules.counters(key.family, ctx.id)) {
            c.hit(rule, len);
        }
        if logged.n > 0 {
            logged.flush(ctx, len as usize);
        }
        match fate {
            Fate::Send { port, pkt } => out.borrow_mut().send(port, pkt),
            Fate::Queued => {}
            Fate::Dropped(pkt, DropReason::Fragment(FragError::Incomplete)) => {
                hold_fragment(ctx, pkt, ingress, now_ns);
            }
            Fate::Dropped(pkt, why) => {
                drop(pkt);
                stats.drop_packet(why);
            }
            Fate::Reject { pkt, with } => {
                stats.drop_packet(DropReason::RuleReject);
                reject_routed(
                    router,
                    st,
                    (ingress, pkt.data()),
                    (tables.whole, burst.packets_mut()),
                    with,
                    now_ns,
                    &mut Shared(&out),
                );
            }
        }
    }
    if let Some(stg) = steering {
        for (ring, buf) in stg.to.iter_mut().flatten() {
            if !buf.is_empty() {
                handed(stats, buf.flush(ring));
            }
        }
    }
    if let Source::Port(ingress) = source {
        let in_ctr = &stats.ports[usize::from(ingress)];
        bump(&in_ctr.rx_packets, n as u64);
        bump(&in_ctr.rx_bytes, rx_bytes);
    }
}

/// Router mode, between bursts: neighbour retransmissions and failures (their packets freed
/// and counted).
#[cold]
#[inline(never)]
fn router_tick(
    router: &Router,
    st: &mut RouterState<Mbuf>,
    now_ns: u64,
    pool: &Mempool,
    egress: &mut [Egress],
    stats: &WorkerStats,
) {
    let out = RefCell::new(Out {
        pool,
        egress,
        stats,
    });
    router.tick(st, now_ns, &mut Shared(&out), |p| {
        drop(p);
        stats.drop_packet(DropReason::Router(crate::router::RouterDrop::NeighFailed));
    });
}
