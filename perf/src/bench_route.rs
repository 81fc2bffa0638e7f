//! Router mode for `rampart-perf nat --routed`: the same SNAT scenario through the router's
//! code path as a worker runs it (`route_burst` in `dataplane/src/worker.rs`): each burst's
//! frames parsed, `Router::arrive` (L2 checks, martian sources), then
//! `Router::judge_and_route` (the stateful stage with the router's forwarding decisions, the
//! translation, the TTL and the next hop's Ethernet addresses), each packet back in its
//! buffer once sent. No DPDK: packets are byte vectors, as `rampart replay` runs router mode.
//!
//! Two ports with addresses (inside 192.168.0.1/24, outside 203.0.113.1/24), the clients'
//! 10.0.0.0/8 behind an inside gateway and a default route to an outside one, both gateways
//! permanent neighbours: no ARP in the timed part.

use crate::bench_stateful::Arena;
use anyhow::{bail, Context, Result};
use dataplane::filter::Filter;
use dataplane::router::{Arrival, Fate, Router, RouterState};
use dataplane::track::Tables;
use dataplane::wire::MacAddr;
use std::path::Path;

const CONFIG: &str = r#"
mode = "router"
[[port]]
name = "inside"
device = "net_null0"
addresses = ["192.168.0.1/24"]
[[port]]
name = "outside"
device = "net_null1"
addresses = ["203.0.113.1/24"]
[[route]]
prefix = "10.0.0.0/8"
via = "192.168.0.254"
[[route]]
prefix = "0.0.0.0/0"
via = "203.0.113.254"
[[neighbour]]
port = "inside"
address = "192.168.0.254"
mac = "02:00:00:00:00:fe"
[[neighbour]]
port = "outside"
address = "203.0.113.254"
mac = "02:00:00:00:fe:fe"
"#;

/// The ports' MAC addresses (inside, outside): frames arriving on a port are sent to it.
pub(crate) const MACS: [MacAddr; 2] = [MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2])];

/// A router and one worker's router state, with the frames it owes nobody in the timed part
/// (errors and neighbour requests: none are expected).
pub(crate) struct Rig {
    pub(crate) router: Router,
    st: RouterState<Vec<u8>>,
    emitted: Vec<(u16, Vec<u8>)>,
}

impl Rig {
    pub(crate) fn new(now_ns: u64) -> Result<Rig> {
        let cfg = control::config::Config::parse(Path::new("bench-router.toml"), CONFIG)
            .context("the benchmark's router configuration")?;
        let router = control::router_conf::build_router(&cfg, &MACS)
            .map_err(|e| anyhow::anyhow!("router: {e}"))?;
        let st = router.new_state(now_ns);
        Ok(Rig {
            router,
            st,
            emitted: Vec::new(),
        })
    }

    /// Frames the router sent of its own since the last call (ICMP errors, ARP requests).
    pub(crate) fn take_emitted(&mut self) -> usize {
        let n = self.emitted.len();
        self.emitted.clear();
        n
    }

    /// One frame through the router, as `route_burst` takes it (parsed here); answers the
    /// frame it forwards and the judgement's binding (for opening flows, untimed).
    pub(crate) fn one(
        &mut self,
        filter: &Filter,
        tables: &mut Tables,
        ingress: u16,
        frame: Vec<u8>,
        now_ns: u64,
    ) -> Option<(Vec<u8>, Option<dataplane::nat::Binding>)> {
        let info = dataplane::wire::parse_frame(&frame).ok()?;
        let Arrival::Ip(key) = self.router.arrive(
            &mut self.st,
            ingress,
            &frame,
            &info,
            now_ns,
            &mut self.emitted,
            |_, _| {},
        ) else {
            return None;
        };
        let (j, fate) = self.router.judge_and_route(
            &mut self.st,
            filter,
            tables,
            ingress,
            frame,
            &info,
            key,
            now_ns,
            &mut self.emitted,
            |_, _, _| {},
        );
        match fate {
            Fate::Send { pkt, .. } => Some((pkt, j.nat.map(|(b, _)| b))),
            _ => None,
        }
    }
}

/// Routes every frame of `arena` (in `order`, when given) `passes` times as a worker's
/// `route_burst` does; returns TSC cycles per packet and how many were sent in the last pass.
/// Each burst is copied (untimed) into 32 packet buffers, as a NIC fills mbufs. `PREFETCH`:
/// the worker's path, conntrack's prefetch pass over the burst and each frame judged with its
/// parse and hint (`Router::judge_and_route_hinted`); without, the path before it: each frame
/// parsed and judged in turn (`Router::judge_and_route`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn route_all<const PREFETCH: bool>(
    rig: &mut Rig,
    filter: &Filter,
    tables: &mut Tables,
    arena: &Arena,
    order: Option<&[u32]>,
    now_ns: u64,
    passes: usize,
) -> Result<(f64, usize)> {
    const BURST: usize = dataplane::dpdk::MAX_BURST;
    let mut ring: Vec<Vec<u8>> = (0..BURST).map(|_| Vec::with_capacity(256)).collect();
    let Rig {
        router,
        st,
        emitted,
    } = rig;
    let mut sent = 0;
    let mut cycles = 0u64;
    let mut lost = 0usize;
    for _ in 0..passes {
        sent = 0;
        for start in (0..arena.len()).step_by(BURST) {
            let n = (arena.len() - start).min(BURST);
            let mut ports = [0u16; BURST];
            for (j, (buf, port)) in ring.iter_mut().zip(ports.iter_mut()).take(n).enumerate() {
                let at = order.map_or(start + j, |o| o[start + j] as usize);
                let (f, ingress) = arena.get(at);
                buf.clear();
                buf.extend_from_slice(f);
                *port = ingress;
            }
            let t0 = dataplane::dpdk::tsc();
            let mut parsed = [None; BURST];
            let mut hints = [dataplane::conntrack::Hint::default(); BURST];
            if PREFETCH {
                dataplane::track::prefetch_burst(
                    tables,
                    ring[..n].iter().map(|b| b.as_slice()),
                    &mut parsed,
                    &mut hints,
                );
            }
            for (j, (slot, &ingress)) in ring.iter_mut().zip(ports.iter()).take(n).enumerate() {
                let full;
                let (info, hint) = match &parsed[j] {
                    Some(info) if PREFETCH => (info, Some(hints[j])),
                    _ => {
                        let p = if PREFETCH {
                            None
                        } else {
                            dataplane::wire::parse::parse_common(slot)
                        };
                        match p.map_or_else(|| dataplane::wire::parse_frame(slot), Ok) {
                            Ok(i) => {
                                full = i;
                                (&full, None)
                            }
                            Err(_) => continue,
                        }
                    }
                };
                let key = match router.arrive(st, ingress, slot, info, now_ns, emitted, |_, _| {}) {
                    Arrival::Ip(key) => key,
                    Arrival::Consumed | Arrival::Drop(_) => continue,
                };
                let pkt = std::mem::take(slot);
                let fate = if PREFETCH {
                    let (_, fate) = router.judge_and_route_hinted(
                        st,
                        filter,
                        tables,
                        ingress,
                        pkt,
                        info,
                        &key,
                        hint,
                        now_ns,
                        emitted,
                        |_, _, _| {},
                    );
                    fate
                } else {
                    let (_, fate) = router.judge_and_route(
                        st,
                        filter,
                        tables,
                        ingress,
                        pkt,
                        info,
                        key,
                        now_ns,
                        emitted,
                        |_, _, _| {},
                    );
                    fate
                };
                *slot = match fate {
                    Fate::Send { pkt, .. } => {
                        sent += 1;
                        pkt
                    }
                    Fate::Dropped(pkt, _) | Fate::Reject { pkt, .. } => pkt,
                    Fate::Queued => {
                        lost += 1;
                        Vec::with_capacity(256)
                    }
                };
            }
            cycles += dataplane::dpdk::tsc() - t0;
        }
    }
    if lost != 0 {
        bail!("routed: {lost} packets queued for a neighbour");
    }
    Ok((cycles as f64 / (arena.len() * passes) as f64, sent))
}

/// The frame a client or server sends to the router's port `ingress`.
pub(crate) fn to_port(mut frame: Vec<u8>, ingress: u16) -> Vec<u8> {
    frame[..6].copy_from_slice(&MACS[usize::from(ingress)].0);
    frame
}
