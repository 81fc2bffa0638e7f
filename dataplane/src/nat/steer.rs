//! FAST PATH: no allocation, lock, syscall or log.
//!
//! Which worker a packet belongs to when NAT is on, so that both directions of a translated
//! connection meet on the worker that holds its conntrack entry, with no shared state.
//!
//! Every worker owns a disjoint share of the ports of every address:
//! `owner_of(addr, port) = (port + mix(addr)) % workers`. Each endpoint of a packet (for ICMP
//! queries the identifier stands for both ports) names the endpoint whose owner takes it:
//!
//! - a *published* endpoint (a DNAT rule's or a 1:1 mapping's public address, protocol and
//!   port) names the **other** end (the remote endpoint, which no translation touches);
//! - a NAT address (a SNAT pool, a MASQUERADE port address) names **itself** (the port the
//!   allocator chose for this worker);
//! - a DNAT or 1:1 target (a private server) names the **other** end (the remote endpoint
//!   again);
//! - any other address names nothing.
//!
//! The first of these that applies to an endpoint is what it names. When the two ends name the
//! same endpoint, or only one names any, the packet goes to that endpoint's owner; when they
//! disagree (a private server reaching another through its published address, both ends
//! translated; two private servers), to the owner of the pair of ports, `(sport + dport) %
//! workers`, the same both ways while the ports are kept; when neither names one, by the
//! symmetric flow hash of the tuple ([`Steer::Flow`]), as without NAT. The rule reads the same
//! from either end, so a connection no rule translates meets one worker both ways (nothing
//! checks a binding that translates nothing): before, only the destination was asked to be
//! published or a pool and only the source to be a target, and a private server's own
//! connections (out untranslated, or reached directly) went by the remote endpoint one way and
//! by the flow hash the other.
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
        // Which end each endpoint names for the owner, as "the destination?": the destination
        // names itself when it names itself, the source when it names itself not.
        let dst_names = self.names_itself(&k.dst, k.proto, dport);
        let src_names = self
            .names_itself(&k.src, k.proto, sport)
            .map(|itself| !itself);
        match (src_names, dst_names) {
            (None, None) => None,
            (Some(true), None | Some(true)) | (None, Some(true)) => {
                Some(self.owner_of(&k.dst, dport))
            }
            (Some(false), None | Some(false)) | (None, Some(false)) => {
                Some(self.owner_of(&k.src, sport))
            }
            // Each end names the other (hairpin between private servers, both ends
            // translated), or each itself: only the pair of ports is common to both
            // directions.
            (Some(_), Some(_)) => Some(self.owner_of_pair(sport, dport)),
        }
    }

    /// Which endpoint an endpoint of a packet names for its owner: `Some(true)` itself (a NAT
    /// pool address: the port the allocator chose), `Some(false)` the other end (a published
    /// endpoint or a private server: the remote end, which no translation changes), `None`
    /// neither (an ordinary address).
    #[inline]
    fn names_itself(&self, addr: &IpAddr128, proto: u8, port: u16) -> Option<bool> {
        if self.is_published(addr, proto, port) {
            Some(false)
        } else if self.pools.iter().any(|r| in_range(addr, r)) {
            Some(true)
        } else if self.targets.iter().any(|r| in_range(addr, r)) {
            Some(false)
        } else {
            None
        }
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

    /// Tables with every kind of entry: a DNAT published by port and one by address, a pool, two
    /// private servers.
    fn every_kind(workers: u16) -> Steering {
        let mut s = Steering::new(workers);
        s.add_published(Published {
            addrs: one([203, 0, 113, 2]),
            protos: (ip_proto::TCP, ip_proto::TCP),
            ports: (80, 80),
        });
        s.add_published(Published {
            addrs: one([203, 0, 113, 3]),
            protos: (0, u8::MAX),
            ports: (0, u16::MAX),
        });
        s.add_pool(one([203, 0, 113, 1]));
        s.add_pool(one([10, 0, 0, 1]));
        s.add_target((a([10, 0, 0, 8]), a([10, 0, 0, 9])));
        s
    }

    /// Where a packet goes on the worker: its owner, else the address pair's hash.
    fn placed(s: &Steering, k: &FlowKey) -> u16 {
        s.owner(k)
            .unwrap_or_else(|| crate::steer::pick(k.src, k.dst, s.workers()))
    }

    proptest::proptest! {
        /// A connection no rule translates (a private server talking to the world, a remote
        /// host reaching a private server directly, private servers between themselves, a
        /// host talking to a pool or published address that is a real remote end) has its
        /// replies steered where its first packet went: nothing checks a binding that
        /// translates nothing. Before, a private server's own connections went by the remote
        /// endpoint one way and by the address pair the other.
        #[test]
        fn untranslated_connections_meet_one_worker(
            workers in 2u16..6,
            ends in proptest::collection::vec((0usize..8, 0usize..4), 2),
            udp in proptest::bool::ANY,
        ) {
            let s = every_kind(workers);
            let addrs = [
                [203, 0, 113, 2], [203, 0, 113, 3], [203, 0, 113, 1], [10, 0, 0, 1],
                [10, 0, 0, 8], [10, 0, 0, 9], [198, 51, 100, 7], [10, 0, 0, 20],
            ];
            let ports = [80u16, 1000, 5001, 40000];
            let (a0, p0) = ends[0];
            let (a1, p1) = ends[1];
            proptest::prop_assume!(a0 != a1);
            let proto = if udp { ip_proto::UDP } else { ip_proto::TCP };
            let k = FlowKey::new_v4(addrs[a0].into(), addrs[a1].into(), proto, ports[p0], ports[p1]);
            proptest::prop_assert_eq!(placed(&s, &k), placed(&s, &k.reply()), "{:?}", k);
        }
    }

    #[test]
    fn a_private_servers_own_connections_meet_one_worker() {
        let s = every_kind(2);
        let mut split = 0;
        for port in 1000..1100u16 {
            // Out, untranslated, and in, directly to it.
            for k in [
                FlowKey::new_v4([10, 0, 0, 8].into(), [198, 51, 100, 7].into(), 6, port, 443),
                FlowKey::new_v4([198, 51, 100, 7].into(), [10, 0, 0, 9].into(), 17, port, 53),
            ] {
                split += usize::from(placed(&s, &k) != placed(&s, &k.reply()));
            }
        }
        assert_eq!(split, 0);
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
