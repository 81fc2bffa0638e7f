//! Per-worker counters: written by one worker only, read by the control thread at any time.
//!
//! Each counter is an `AtomicU64` updated with a relaxed load and store (no locked
//! read-modify-write: there is a single writer), so the reader sees a recent, never torn, value.
//! The block is cache-line aligned so two workers never share a line.

use crate::pipeline::MAX_PORTS;
use crate::verdict::DropReason;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Adds `n` to a single-writer counter.
#[inline(always)]
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

/// One port's counters as seen by one worker.
#[derive(Debug, Default)]
pub struct PortCounters {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// Packets the device refused at TX, freed by the worker.
    pub tx_dropped: AtomicU64,
}

/// All counters of one worker.
#[derive(Debug)]
#[repr(align(64))]
pub struct WorkerStats {
    pub ports: [PortCounters; MAX_PORTS],
    pub drops: [AtomicU64; DropReason::COUNT],
    /// RX bursts that returned at least one packet.
    pub busy_polls: AtomicU64,
    /// All RX polls (busy or not).
    pub polls: AtomicU64,
    /// TSC cycles spent in loop iterations that handled packets.
    pub busy_tsc: AtomicU64,
    /// LOG records lost because the control thread's queue was full.
    pub logs_lost: AtomicU64,
    /// REJECT replies sent, and those not sent because the mempool was empty.
    pub replies_sent: AtomicU64,
    pub replies_lost: AtomicU64,
    /// Packets handed to the worker that owns their connection.
    pub handed_off: AtomicU64,
    /// The worker's conntrack table, copied from it between bursts.
    pub ct: CtCounters,
    /// Router mode: the router stage's counters, copied between bursts.
    pub router: RouterCounters,
}

/// A worker's router-stage counters (copies of its state's; drops are counted as drop reasons).
#[derive(Debug, Default)]
pub struct RouterCounters {
    pub arp_answered: AtomicU64,
    pub nd_answered: AtomicU64,
    pub solicits_sent: AtomicU64,
    pub released: AtomicU64,
    pub echo_replies: AtomicU64,
    pub icmp_sent: AtomicU64,
    pub icmp_ratelimited: AtomicU64,
    pub icmp_unresolved: AtomicU64,
    /// Neighbour entries (a gauge).
    pub neighbours: AtomicU64,
}

/// Plain copies of [`RouterCounters`], summed over workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouterTotals {
    pub arp_answered: u64,
    pub nd_answered: u64,
    pub solicits_sent: u64,
    pub released: u64,
    pub echo_replies: u64,
    pub icmp_sent: u64,
    pub icmp_ratelimited: u64,
    pub icmp_unresolved: u64,
    pub neighbours: u64,
}

impl RouterCounters {
    /// Publishes a worker's router state (single writer: the owning worker).
    pub fn publish<P>(&self, st: &crate::router::RouterState<P>) {
        let set = |c: &AtomicU64, v: u64| c.store(v, Relaxed);
        let r = &st.stats;
        set(&self.arp_answered, r.arp_answered);
        set(&self.nd_answered, r.nd_answered);
        set(&self.solicits_sent, r.solicits_sent);
        set(&self.released, r.released);
        set(&self.echo_replies, r.echo_replies);
        set(&self.icmp_sent, r.icmp_sent);
        set(&self.icmp_ratelimited, r.icmp_ratelimited);
        set(&self.icmp_unresolved, r.icmp_unresolved);
        set(&self.neighbours, st.neigh.len() as u64);
    }

    fn add_to(&self, t: &mut RouterTotals) {
        let get = |c: &AtomicU64| c.load(Relaxed);
        t.arp_answered += get(&self.arp_answered);
        t.nd_answered += get(&self.nd_answered);
        t.solicits_sent += get(&self.solicits_sent);
        t.released += get(&self.released);
        t.echo_replies += get(&self.echo_replies);
        t.icmp_sent += get(&self.icmp_sent);
        t.icmp_ratelimited += get(&self.icmp_ratelimited);
        t.icmp_unresolved += get(&self.icmp_unresolved);
        t.neighbours += get(&self.neighbours);
    }
}

/// A worker's connection-tracking counters (copies of its table's, published between bursts).
#[derive(Debug, Default)]
pub struct CtCounters {
    /// Live connections (a gauge).
    pub entries: AtomicU64,
    pub created: AtomicU64,
    pub expired: AtomicU64,
    pub early_drop: AtomicU64,
    pub clash: AtomicU64,
    /// INVALID packets by [`crate::conntrack::Invalid::index`].
    pub invalid: [AtomicU64; crate::conntrack::Invalid::COUNT],
    /// Fragmented datagrams seen whole.
    pub frag_completed: AtomicU64,
    /// Fragments held for reassembly ([`crate::conntrack::frag::Reassembly`]); the worker
    /// publishes these beside the table's counters.
    pub frag_held: AtomicU64,
    /// Datagrams given up: not whole within the timeout, or for room.
    pub frag_timeouts: AtomicU64,
    pub frag_overflows: AtomicU64,
    /// Whole datagrams whose L4 checksum did not verify.
    pub frag_bad_checksum: AtomicU64,
    /// Fragments and datagrams held now (gauges).
    pub frag_held_fragments: AtomicU64,
    pub frag_held_datagrams: AtomicU64,
    /// Live NAT bindings (a gauge).
    pub nat_bindings: AtomicU64,
}

/// Plain copies of [`CtCounters`], summed over workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtTotals {
    pub entries: u64,
    pub created: u64,
    pub expired: u64,
    pub early_drop: u64,
    pub clash: u64,
    pub invalid: [u64; crate::conntrack::Invalid::COUNT],
    pub frag_completed: u64,
    pub frag_held: u64,
    pub frag_timeouts: u64,
    pub frag_overflows: u64,
    pub frag_bad_checksum: u64,
    pub frag_held_fragments: u64,
    pub frag_held_datagrams: u64,
    pub nat_bindings: u64,
}

impl CtCounters {
    /// Publishes a table's counters (single writer: the owning worker).
    pub fn publish(&self, tables: &crate::track::Tables) {
        let set = |c: &AtomicU64, v: u64| c.store(v, Relaxed);
        let st = tables.ct.stats();
        set(&self.entries, u64::from(tables.ct.len()));
        set(&self.created, st.created);
        set(&self.expired, st.expired);
        set(&self.early_drop, st.early_drop);
        set(&self.clash, st.clash);
        for (c, &v) in self.invalid.iter().zip(st.invalid.iter()) {
            set(c, v);
        }
        set(&self.frag_completed, tables.frags.completed);
        set(&self.nat_bindings, st.nat_live);
    }

    /// Publishes the counts of the worker's held fragments.
    pub fn publish_hold(&self, h: &crate::conntrack::frag::HoldStats) {
        let set = |c: &AtomicU64, v: u64| c.store(v, Relaxed);
        set(&self.frag_held, h.held_total);
        set(&self.frag_timeouts, h.timeouts);
        set(&self.frag_overflows, h.overflows);
        set(&self.frag_bad_checksum, h.bad_checksum);
        set(&self.frag_held_fragments, u64::from(h.fragments_now));
        set(&self.frag_held_datagrams, u64::from(h.datagrams_now));
    }

    fn add_to(&self, t: &mut CtTotals) {
        t.entries += self.entries.load(Relaxed);
        t.created += self.created.load(Relaxed);
        t.expired += self.expired.load(Relaxed);
        t.early_drop += self.early_drop.load(Relaxed);
        t.clash += self.clash.load(Relaxed);
        for (d, c) in t.invalid.iter_mut().zip(self.invalid.iter()) {
            *d += c.load(Relaxed);
        }
        t.frag_completed += self.frag_completed.load(Relaxed);
        t.frag_held += self.frag_held.load(Relaxed);
        t.frag_timeouts += self.frag_timeouts.load(Relaxed);
        t.frag_overflows += self.frag_overflows.load(Relaxed);
        t.frag_bad_checksum += self.frag_bad_checksum.load(Relaxed);
        t.frag_held_fragments += self.frag_held_fragments.load(Relaxed);
        t.frag_held_datagrams += self.frag_held_datagrams.load(Relaxed);
        t.nat_bindings += self.nat_bindings.load(Relaxed);
    }
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            ports: std::array::from_fn(|_| PortCounters::default()),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            busy_polls: AtomicU64::new(0),
            polls: AtomicU64::new(0),
            busy_tsc: AtomicU64::new(0),
            logs_lost: AtomicU64::new(0),
            replies_sent: AtomicU64::new(0),
            replies_lost: AtomicU64::new(0),
            handed_off: AtomicU64::new(0),
            ct: CtCounters::default(),
            router: RouterCounters::default(),
        }
    }
}

impl WorkerStats {
    /// Counts a drop.
    #[inline]
    pub fn drop_packet(&self, reason: DropReason) {
        bump(&self.drops[reason.index()], 1);
    }

    /// A plain copy of the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut s = StatsSnapshot::default();
        self.add_to(&mut s);
        s
    }

    /// Adds these counters to `s` (for totals over workers).
    pub fn add_to(&self, s: &mut StatsSnapshot) {
        for (dst, p) in s.ports.iter_mut().zip(self.ports.iter()) {
            dst.rx_packets += p.rx_packets.load(Relaxed);
            dst.rx_bytes += p.rx_bytes.load(Relaxed);
            dst.tx_packets += p.tx_packets.load(Relaxed);
            dst.tx_bytes += p.tx_bytes.load(Relaxed);
            dst.tx_dropped += p.tx_dropped.load(Relaxed);
        }
        for (dst, d) in s.drops.iter_mut().zip(self.drops.iter()) {
            *dst += d.load(Relaxed);
        }
        s.busy_polls += self.busy_polls.load(Relaxed);
        s.polls += self.polls.load(Relaxed);
        s.busy_tsc += self.busy_tsc.load(Relaxed);
        s.replies_sent += self.replies_sent.load(Relaxed);
        s.replies_lost += self.replies_lost.load(Relaxed);
        s.handed_off += self.handed_off.load(Relaxed);
        self.ct.add_to(&mut s.ct);
        self.router.add_to(&mut s.router);
    }
}

/// Plain counters of one port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortTotals {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_dropped: u64,
}

/// A copy of one or more workers' counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub ports: [PortTotals; MAX_PORTS],
    pub drops: [u64; DropReason::COUNT],
    pub busy_polls: u64,
    pub polls: u64,
    pub busy_tsc: u64,
    pub replies_sent: u64,
    pub replies_lost: u64,
    pub handed_off: u64,
    pub ct: CtTotals,
    pub router: RouterTotals,
}

impl Default for StatsSnapshot {
    fn default() -> Self {
        StatsSnapshot {
            ports: [PortTotals::default(); MAX_PORTS],
            drops: [0; DropReason::COUNT],
            busy_polls: 0,
            polls: 0,
            busy_tsc: 0,
            replies_sent: 0,
            replies_lost: 0,
            handed_off: 0,
            ct: CtTotals::default(),
            router: RouterTotals::default(),
        }
    }
}

impl StatsSnapshot {
    /// Packets received on all ports.
    pub fn rx_packets(&self) -> u64 {
        self.ports.iter().map(|p| p.rx_packets).sum()
    }
    /// Packets sent on all ports.
    pub fn tx_packets(&self) -> u64 {
        self.ports.iter().map(|p| p.tx_packets).sum()
    }
    /// Packets refused by devices at TX.
    pub fn tx_dropped(&self) -> u64 {
        self.ports.iter().map(|p| p.tx_dropped).sum()
    }
    /// Packets dropped by the pipeline.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }
    /// Non-zero drop counters by reason.
    pub fn drop_reasons(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::all()
            .map(|r| (r, self.drops[r.index()]))
            .filter(|&(_, n)| n > 0)
    }
}
