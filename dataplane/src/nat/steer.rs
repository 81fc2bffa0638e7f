//! FAST PATH: no allocation, lock, syscall or log.
//!
//! Which worker a packet belongs to when NAT is on, so that both directions of a translated
//! connection meet on the worker that holds its conntrack entry, with no shared state.
//!
//! Every worker owns a disjoint share of the ports of every address:
//! `owner_of(addr, port) = (port + mix(addr)) % workers`. A packet is steered by the first rule
//! that applies to its tuple (for ICMP queries the identifier stands for both ports):
//!
//! 0. its source is a DNAT or 1:1 target and its destination a published endpoint (hairpin
//!    between private servers, both ends translated): the owner of the pair of ports,
//!    `(sport + dport) % workers`, the same both ways while the ports are kept;
//! 1. its destination is a *published* endpoint (a DNAT rule's or a 1:1 mapping's public
//!    address, protocol and port): the owner of its **source** (the remote endpoint, which no
//!    translation touches);
//! 2. its destination is a NAT address (a SNAT pool, a MASQUERADE port address): the owner of
//!    its **destination** (the port the allocator chose for this worker);
//! 3. its source is a DNAT or 1:1 target (a private server): the owner of its **destination**
//!    (the remote endpoint again);
//! 4. otherwise: the symmetric flow hash of the tuple ([`Steer::Flow`]), as without NAT.
//!
//! Invariant, kept by [`super::Allocator`]: a worker creates a binding only when its reply
//! tuple steers to that worker. Since the original direction steers to the worker that saw the
//! first packet (the rules are a pure function of the tuple), both directions then meet there.
//! ICMP errors are steered as the reply of the packet they quote ([`Steering::steer_error`]).

use crate::wire::{ip_proto, FlowKey, IpAddr128};

/// An inclusive address range (v4-mapped for IPv4).
pub type AddrRange = (IpAddr128, IpAddr128);

/// Where a packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steer {
    /// This worker, by port ownership.
    Worker(u16),
    /// The symmetric hash of this tuple (the usual RSS placement).
    Flow(FlowKey),
}

/// Endpoints published by DNAT rules or 1:1 mappings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    pub addrs: AddrRange,
    /// Inclusive protocol range.
    pub protos: (u8, u8),
    /// Inclusive destination port range (for ICMP: the identifier).
    pub ports: (u16, u16),
}

impl Published {
    #[inline]
    fn covers(&self, addr: &IpAddr128, proto: u8, port: u16) -> bool {
        in_range(addr, &self.addrs)
            && self.protos.0 <= proto
            && proto <= self.protos.1
            && self.ports.0 <= port
            && port <= self.ports.1
    }

    /// Whether every port of `addr` for `proto` is published.
    #[inline]
    fn covers_all_ports(&self, addr: &IpAddr128, proto: u8) -> bool {
        self.covers(addr, proto, 0) && self.ports == (0, u16::MAX)
    }
}

/// Whether `a` lies in `r`: the addresses compared as big-endian 128-bit numbers, the same
/// order as their bytes' (two wide compares instead of a byte-wise loop per bound).
#[inline]
fn in_range(a: &IpAddr128, r: &AddrRange) -> bool {
    let x = u128::from_be_bytes(a.0);
    u128::from_be_bytes(r.0 .0) <= x && x <= u128::from_be_bytes(r.1 .0)
}

/// The steering tables, built from the NAT rules and the port addresses; read-only on workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Steering {
    workers: u16,
    published: Vec<Published>,
    pools: Vec<AddrRange>,
    targets: Vec<AddrRange>,
}

/// The port a tuple's `dst` (or `src`) side is known by: the port for TCP/UDP, the identifier
/// for ICMP queries, 0 for anything else.
#[inline]
fn side_port(k: &FlowKey, dst: bool) -> u16 {
    match k.proto {
        ip_proto::TCP | ip_proto::UDP => {
            if dst {
                k.dst_port
            } else {
                k.src_port
            }
        }
        _ if k.is_icmp() => k.src_port,
        _ => 0,
    }
}

impl Steering {
    /// Tables for `workers` workers (at least 1) with nothing registered: everything is
    /// [`Steer::Flow`].
    pub fn new(workers: u16) -> Steering {
        Steering {
            workers: workers.max(1),
            published: Vec::new(),
            pools: Vec::new(),
            targets: Vec::new(),
        }
    }

    pub fn workers(&self) -> u16 {
        self.workers
    }

    /// Adds everything `other` registers (the tables of another family).
    pub fn extend(&mut self, other: &Steering) {
        for &r in &other.pools {
            self.add_pool(r);
        }
        for &p in &other.published {
            self.add_published(p);
        }
        for &r in &other.targets {
            self.add_target(r);
        }
    }

    /// Registers a SNAT pool or a MASQUERADE address.
    pub fn add_pool(&mut self, r: AddrRange) {
        if !self.pools.contains(&r) {
            self.pools.push(r);
        }
    }

    /// Registers a published endpoint (DNAT match or 1:1 public address).
    pub fn add_published(&mut self, p: Published) {
        if !self.published.contains(&p) {
            self.published.push(p);
        }
    }

    /// Registers a DNAT or 1:1 target (private) address range.
    pub fn add_target(&mut self, r: AddrRange) {
        if !self.targets.contains(&r) {
            self.targets.push(r);
        }
    }

    /// The worker owning `port` of `addr`.
    #[inline]
    pub fn owner_of(&self, addr: &IpAddr128, port: u16) -> u16 {
        ((u32::from(port) + mix(addr)) % u32::from(self.workers)) as u16
    }

    /// The worker of a pair of ports, whichever way round.
    #[inline]
    pub fn owner_of_pair(&self, a: u16, b: u16) -> u16 {
        ((u32::from(a) + u32::from(b)) % u32::from(self.workers)) as u16
    }

    /// The first port `>= from` that `worker` owns at `addr`, and the step to the next ones.
    #[inline]
    pub fn first_owned(&self, worker: u16, addr: &IpAddr128, from: u16) -> (u32, u32) {
        let n = u32::from(self.workers);
        let want = u32::from(worker) % n;
        let have = self.owner_of(addr, from) as u32;
        (u32::from(from) + (want + n - have) % n, n)
    }

    /// Whether `(addr, proto, port)` is a published endpoint.
    #[inline]
    pub fn is_published(&self, addr: &IpAddr128, proto: u8, port: u16) -> bool {
        self.published.iter().any(|p| p.covers(addr, proto, port))
    }

    /// Whether every port of `addr` is published for `proto` (a 1:1 public address).
    #[inline]
    pub fn is_fully_published(&self, addr: &IpAddr128, proto: u8) -> bool {
        self.published
            .iter()
            .any(|p| p.covers_all_ports(addr, proto))
    }

    /// Where a packet with tuple `k` goes (see the module docs).
    #[inline]
    pub fn steer(&self, k: &FlowKey) -> Steer {
        match self.owner(k) {
            Some(w) => Steer::Worker(w),
            None => Steer::Flow(*k),
        }
    }

    /// [`Steering::steer`] without the tuple: the worker owning `k` by the rules of the module
    /// docs, `None` for the flow hash ([`Steer::Flow`]).
    #[inline]
    pub fn owner(&self, k: &FlowKey) -> Option<u16> {
        if self.published.is_empty() && self.pools.is_empty() && self.targets.is_empty() {
            return None;
        }
        let dport = side_port(k, true);
        let sport = side_port(k, false);
        let from_target = self.targets.iter().any(|r| in_range(&k.src, r));
        if from_target && self.is_published(&k.dst, k.proto, dport) {
            // Hairpin between private servers: both endpoints are translated, only the pair of
            // ports is common to both directions.
            return Some(self.owner_of_pair(sport, dport));
        }
        if self.is_published(&k.dst, k.proto, dport) {
            return Some(self.owner_of(&k.src, sport));
        }
        if self.pools.iter().any(|r| in_range(&k.dst, r)) {
            return Some(self.owner_of(&k.dst, dport));
        }
        if from_target {
            return Some(self.owner_of(&k.dst, dport));
        }
        None
    }

    /// Where an ICMP error quoting a packet with tuple `quoted` goes: with the replies to it.
    #[inline]
    pub fn steer_error(&self, quoted: &FlowKey) -> Steer {
        self.steer(&quoted.reply())
    }

    /// Whether replies with tuple `reply` reach `worker` (a [`Steer::Flow`] placement is
    /// accepted: that traffic is not steered by NAT).
    #[inline]
    pub fn reaches(&self, worker: u16, reply: &FlowKey) -> bool {
        self.owner(reply).is_none_or(|w| w == worker)
    }
}

/// A cheap, fixed mix of an address into 32 bits (varies the port shares between addresses).
#[inline]
fn mix(a: &IpAddr128) -> u32 {
    let w = u128::from_be_bytes(a.0);
    let x = (w as u64) ^ ((w >> 64) as u64);
    let x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 48) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn a(x: [u8; 4]) -> IpAddr128 {
        IpAddr128::from_v4(Ipv4Addr::from(x))
    }

    fn one(x: [u8; 4]) -> AddrRange {
        (a(x), a(x))
    }

    #[test]
    fn ports_are_shared_disjointly_and_completely() {
        let s = Steering::new(3);
        let addr = a([203, 0, 113, 1]);
        let mut count = [0u32; 3];
        for p in 0..=u16::MAX {
            count[usize::from(s.owner_of(&addr, p))] += 1;
        }
        assert_eq!(count.iter().sum::<u32>(), 65536);
        assert!(count.iter().all(|&c| c >= 21845));
        for w in 0..3 {
            let (first, step) = s.first_owned(w, &addr, 1000);
            assert!((1000..1003).contains(&first));
            for k in 0..10 {
                assert_eq!(s.owner_of(&addr, (first + k * step) as u16), w);
            }
        }
    }

    #[test]
    fn snat_replies_go_to_the_port_owner() {
        let mut s = Steering::new(4);
        s.add_pool(one([203, 0, 113, 1]));
        let reply = FlowKey::new_v4(
            [198, 51, 100, 7].into(),
            [203, 0, 113, 1].into(),
            ip_proto::TCP,
            80,
            5001,
        );
        assert_eq!(
            s.steer(&reply),
            Steer::Worker(s.owner_of(&a([203, 0, 113, 1]), 5001))
        );
        let other = FlowKey::new_v4([1, 1, 1, 1].into(), [2, 2, 2, 2].into(), 6, 1, 2);
        assert_eq!(s.steer(&other), Steer::Flow(other));
    }

    #[test]
    fn dnat_both_directions_follow_the_remote_endpoint() {
        let mut s = Steering::new(4);
        s.add_published(Published {
            addrs: one([203, 0, 113, 1]),
            protos: (ip_proto::TCP, ip_proto::TCP),
            ports: (80, 80),
        });
        s.add_target(one([10, 0, 0, 9]));
        let client = a([198, 51, 100, 7]);
        for cport in [1000u16, 1001, 1002, 1003, 50000] {
            let orig = FlowKey::new_v4(
                [198, 51, 100, 7].into(),
                [203, 0, 113, 1].into(),
                6,
                cport,
                80,
            );
            let reply = FlowKey::new_v4(
                [10, 0, 0, 9].into(),
                [198, 51, 100, 7].into(),
                6,
                8080,
                cport,
            );
            let w = Steer::Worker(s.owner_of(&client, cport));
            assert_eq!(s.steer(&orig), w);
            assert_eq!(s.steer(&reply), w);
            // An ICMP error quoting the translated original is steered like the reply.
            let quoted = reply.reply();
            assert_eq!(s.steer_error(&quoted), w);
        }
    }

    #[test]
    fn icmp_uses_the_identifier() {
        let mut s = Steering::new(2);
        s.add_pool(one([203, 0, 113, 1]));
        let echo_reply = FlowKey::new_v4(
            [198, 51, 100, 7].into(),
            [203, 0, 113, 1].into(),
            ip_proto::ICMP,
            77,
            0x0000,
        );
        assert_eq!(
            s.steer(&echo_reply),
            Steer::Worker(s.owner_of(&a([203, 0, 113, 1]), 77))
        );
    }
}
