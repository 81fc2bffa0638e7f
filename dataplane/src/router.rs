//! FAST PATH ([`Router::input_l2`] on IP frames, [`Router::decide`], [`Router::check_forward`],
//! [`Router::forward`]): no allocation, lock, syscall or log. ARP/NDP, echo replies and ICMP
//! errors are cold paths that write into the worker's preallocated scratch buffers.
//!
//! Router mode's per-packet stage, over the library pieces of [`crate::route`]:
//!
//! - [`Router`]: immutable, shared by every worker through an `Arc`, rebuilt on change. It
//!   holds the ports' layer-3 identity ([`PortL3`]: MAC, addresses, MTU, and the IPv6
//!   link-local address derived from the MAC, RFC 4291 §2.5.1 / RFC 4862 §5.3) and the
//!   routes: connected ones (one per port address) and static ones, in one longest-prefix
//!   match per family with the router's own addresses, its broadcasts and the ranges never
//!   routed, so that [`Router::decide`] reads one table.
//! - [`RouterState`]: one per worker: the neighbour table ([`NeighTable`]), the ICMP error
//!   token bucket, counters and scratch buffers.
//! - [`Emit`]: where frames the router originates go (ARP/NDP answers and requests, ICMP
//!   errors); the worker copies them into an mbuf of its mempool.
//!
//! # The sequence a worker follows
//!
//! ```text
//! rx frame
//!  -> input_l2            Ip | Consumed (ARP, NS/NA, RS/RA/redirect) | Drop
//!  -> parse, accept_source (martian sources, before any NAT)
//!  -> decide(dst)          (after DNAT, as Linux routes after PREROUTING)
//!       Local        -> filter INPUT -> local_ip(pkt)        -> Send | Queued | Dropped
//!       Forward(hop) -> filter FORWARD, NAT -> forward(pkt, hop) -> Send | Queued | Dropped
//!       Unreachable  -> unreachable(frame): ICMP net unreachable / no route; free
//!       Martian      -> free (counted by the caller with `note_martian`)
//! timer (every few ms) -> tick: neighbour retransmissions, failures
//! ```
//!
//! # Ownership
//!
//! [`Router::forward`] and [`Router::local_ip`] take the packet by value (`P`: the worker's
//! owning mbuf, `Vec<u8>` in tests) and answer [`Forwarded`]: `Send { port, pkt }` (Ethernet
//! addresses rewritten, ready for TX), `Queued` (the neighbour table holds it until resolution)
//! or `Dropped(pkt, why)` (already counted; the caller frees it). Packets released by a
//! resolution come back through [`Router::input_l2`]'s `release` closure, ready to send;
//! packets of a failed resolution through [`Router::tick`]'s `failed` closure, to be freed.
//!
//! # Choices (and where Linux differs)
//!
//! - Router ports are untagged: a VLAN-tagged frame is a counted drop ([`RouterDrop::Tagged`]).
//! - A frame whose destination MAC is neither the port's nor a group address is dropped
//!   ([`RouterDrop::NotForUs`]), as a NIC outside promiscuous mode would.
//! - ARP and NS are answered for the ingress port's own addresses only (Linux `arp_ignore=1`;
//!   Linux's default 0 answers for any local address on any port) plus the 1:1 public
//!   addresses placed on that port ([`PortL3::nat_addrs`]).
//! - Local: our unicast addresses (the link-local ones included, whatever the port), IPv4's
//!   limited broadcast and the directed broadcast of every connected subnet (Linux delivers
//!   both locally and does not forward directed broadcasts, RFC 2644), and every multicast
//!   destination (no multicast routing, RFC 1812 §5.2.1: never forwarded). Only unicast echo
//!   requests are answered (Linux `icmp_echo_ignore_broadcasts=1`).
//! - Rampart runs no local service: echo requests (ICMP type 8, ICMPv6 type 128) to our
//!   addresses get an echo reply; anything else to us is a counted drop
//!   ([`RouterDrop::NoService`]) without an answer (Linux would send a TCP RST or a port
//!   unreachable; a gateway that is silent to probes gives less away, and the INPUT chain can
//!   REJECT explicitly). Fragments to us are dropped (no local reassembly).
//! - Martian destinations (0/8, 127/8, 240/4 and, for IPv6, unspecified, loopback,
//!   link-local not ours, v4-mapped) are never routed; martian sources are refused by
//!   [`Router::accept_source`], which the caller runs before NAT (a masqueraded packet carries
//!   our own address as its source by design).
//! - IPv4 without DF larger than the out port's MTU is dropped ([`RouterDrop::NeedsFragmentation`]):
//!   Rampart does not fragment.
//! - ICMP errors are sent from the address of the port they leave by (Linux's default,
//!   `icmp_errors_use_inbound_ifaddr=0`), toward the offending packet's source, routed like any
//!   packet; the neighbour of that source is not resolved for an error (it is known almost
//!   always: the packet just came from it) — an unknown neighbour drops the error, counted
//!   (`icmp_unresolved`). They are limited by one token bucket per worker for every error type
//!   (Linux: `icmp_msgs_per_sec`/`icmp_msgs_burst` globally plus a per-destination
//!   `icmp_ratelimit`, and IPv6 packet too big is exempt); echo replies are not limited.
//! - No redirects are sent (hairpin traffic is forwarded back out of its ingress port).
//! - The errors quote the packet as it is when they are built. With NAT, the stateful stage
//!   should call [`Router::check_forward`] on the untranslated frame (as Linux's quote is
//!   translated back by conntrack); [`Router::forward`] runs the same checks on what it is
//!   given. A queued packet whose resolution fails gets a host unreachable from [`Router::tick`]
//!   when its source is routable (a masqueraded packet's source is ours: no error).

use crate::route::icmp::{self, RouterError, MAX_ERROR};
use crate::route::lpm::Lpm;
use crate::route::ndisc::{self, MAX_FRAME};
use crate::route::neigh::{Learnt, NeighConfig, NeighDrop, NeighState, NeighTable, Resolution};
use crate::route::{NextHop, Route, RouteError};
use crate::wire::checksum::{self, PseudoHeader};
use crate::wire::{
    icmpv4, icmpv6, ip_proto, parse_frame, Family, IpAddr128, MacAddr, PacketInfo, L3,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The default IP MTU of a port.
pub const DEFAULT_MTU: u32 = 1500;
/// The smallest MTU of a port with IPv6 addresses (RFC 8200 §5).
pub const MIN_MTU_V6: u32 = 1280;
/// The smallest IPv4 MTU (RFC 791).
pub const MIN_MTU_V4: u32 = 68;
/// Hop limit of the packets the router originates (echo replies; errors set their own).
const HOP_LIMIT: u8 = 64;

/// An address assigned to a port, with its prefix length (`192.0.2.1/24`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IfAddr {
    /// The address (v4-mapped for IPv4).
    pub addr: IpAddr128,
    /// Prefix length in bits of the family's address.
    pub len: u8,
}

impl IfAddr {
    pub fn new(addr: IpAddr, len: u8) -> IfAddr {
        IfAddr {
            addr: IpAddr128::from_std(addr),
            len,
        }
    }

    #[inline]
    pub fn family(&self) -> Family {
        if self.addr.is_v4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    #[inline]
    fn width(&self) -> u8 {
        if self.addr.is_v4() {
            32
        } else {
            128
        }
    }

    /// The host bits of the prefix, over the 128-bit value.
    #[inline]
    fn host_mask(&self) -> u128 {
        let host = u32::from(self.width().saturating_sub(self.len));
        if host >= 128 {
            u128::MAX
        } else {
            (1u128 << host) - 1
        }
    }

    /// Whether `a` is inside this address's subnet (never across families).
    #[inline]
    pub fn contains(&self, a: &IpAddr128) -> bool {
        a.is_v4() == self.addr.is_v4()
            && (u128::from_be_bytes(a.0) ^ u128::from_be_bytes(self.addr.0)) & !self.host_mask()
                == 0
    }

    /// The subnet's network address.
    pub fn network(&self) -> IpAddr128 {
        IpAddr128((u128::from_be_bytes(self.addr.0) & !self.host_mask()).to_be_bytes())
    }

    /// The subnet's directed broadcast: IPv4 subnets of /30 and wider (a /31 has none,
    /// RFC 3021; a /32 is a host).
    pub fn broadcast(&self) -> Option<IpAddr128> {
        (self.addr.is_v4() && self.len <= 30)
            .then(|| IpAddr128((u128::from_be_bytes(self.addr.0) | self.host_mask()).to_be_bytes()))
    }
}

impl core::fmt::Display for IfAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// The IPv6 link-local address of an interface with this MAC: `fe80::/64` and the modified
/// EUI-64 interface identifier (RFC 4291 §2.5.1 and appendix A: the universal/local bit
/// inverted, `ff:fe` in the middle).
pub fn link_local_of(mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

#[inline]
fn is_link_local_v6(a: &IpAddr128) -> bool {
    a.0[0] == 0xfe && a.0[1] & 0xc0 == 0x80
}

/// One port's layer-3 identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortL3 {
    pub mac: MacAddr,
    /// Configured addresses; per family the first is the primary (the source of last resort).
    pub addrs: Vec<IfAddr>,
    /// IP MTU: the largest IP datagram sent on the port, in bytes.
    pub mtu: u32,
    /// Addresses answered for in ARP/NDP on this port and delivered locally, but never chosen
    /// as a source address: the 1:1 public addresses inside a connected subnet of the port.
    pub nat_addrs: Vec<IpAddr128>,
}

impl PortL3 {
    /// A port with these addresses and MTU, and no NAT addresses.
    pub fn new(mac: MacAddr, addrs: Vec<IfAddr>, mtu: u32) -> PortL3 {
        PortL3 {
            mac,
            addrs,
            mtu,
            nat_addrs: Vec::new(),
        }
    }

    /// The port's IPv6 link-local address (from its MAC).
    pub fn link_local(&self) -> Ipv6Addr {
        link_local_of(self.mac)
    }
}

/// A port with the lists its answers need, computed once.
#[derive(Clone, Debug)]
struct Port {
    l3: PortL3,
    link_local: IpAddr128,
    /// IPv4 addresses ARP is answered for.
    arp_own: Vec<Ipv4Addr>,
    /// IPv6 addresses NS is answered for (the link-local one included).
    nd_own: Vec<Ipv6Addr>,
}

/// The ICMP error rate limit of one worker: a token bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpLimit {
    /// Errors per second; 0 means no limit (as Linux's `icmp_ratelimit=0`).
    pub per_sec: u32,
    /// Most errors sent back to back (the bucket's depth; at least 1).
    pub burst: u32,
}

impl Default for IcmpLimit {
    /// Linux's `icmp_msgs_per_sec=1000`, `icmp_msgs_burst=50`.
    fn default() -> IcmpLimit {
        IcmpLimit {
            per_sec: 1000,
            burst: 50,
        }
    }
}

/// The per-worker settings of router mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouterConfig {
    pub neigh: NeighConfig,
    pub icmp: IcmpLimit,
}

/// Why ports and routes do not make a router.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouterBuildError {
    #[error("{0} ports: at most 256")]
    TooManyPorts(usize),
    #[error("port {port}: {addr}: {why}")]
    Address {
        port: u16,
        addr: IfAddr,
        why: &'static str,
    },
    #[error("{addr} is assigned twice")]
    Duplicate { addr: IpAddr128 },
    #[error("port {port}: MTU {mtu} is too small")]
    Mtu { port: u16, mtu: u32 },
    #[error("route {prefix}/{len}: port {port} does not exist")]
    RoutePort {
        prefix: IpAddr128,
        len: u8,
        port: u8,
    },
    #[error("routes: {0}")]
    Route(#[from] RouteError),
    #[error("neighbour {ip}: {why}")]
    Neighbour { ip: IpAddr128, why: &'static str },
    #[error("{count} permanent neighbours leave no room in a table of {capacity}")]
    Neighbours { count: usize, capacity: usize },
}

/// A permanent neighbour: `ip` on `port` is at `mac`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaticNeigh {
    pub port: u16,
    pub ip: IpAddr128,
    pub mac: MacAddr,
}

/// Where a packet goes, by its destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Egress {
    /// To the router itself (its addresses, broadcast, multicast): the INPUT chain, then
    /// [`Router::local_ip`].
    Local,
    /// Forward by this next hop: the FORWARD chain, NAT, then [`Router::forward`].
    Forward(NextHop),
    /// No route: [`Router::unreachable`] (ICMP net unreachable / no route), then free.
    Unreachable,
    /// A destination that is never routed (loopback, unspecified, class E, foreign
    /// link-local): free silently, counted with [`Router::note_martian`].
    Martian,
}

/// Why the router dropped a frame; indexes [`RouterStats::drops`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RouterDrop {
    /// Destination MAC neither the port's nor a group address.
    NotForUs = 0,
    /// A VLAN-tagged frame (router ports are untagged).
    Tagged,
    /// Neither IP nor ARP.
    NonIp,
    /// An invalid ARP packet.
    BadArp,
    /// An invalid neighbour solicitation or advertisement (RFC 4861 §7.1).
    BadNd,
    /// Martian source or destination.
    Martian,
    /// No route to the destination.
    NoRoute,
    /// TTL or hop limit ran out (time exceeded sent).
    TtlExpired,
    /// Larger than the out port's MTU, may not be fragmented (frag needed / packet too big sent).
    TooBig,
    /// IPv4 without DF larger than the out port's MTU: Rampart does not fragment.
    NeedsFragmentation,
    /// The neighbour's queue was full.
    NeighQueueFull,
    /// The neighbour table was full.
    NeighTableFull,
    /// Resolution of the next hop failed (host unreachable sent).
    NeighFailed,
    /// To us, but not an echo request: Rampart runs no local service.
    NoService,
    /// To us, but to a broadcast or multicast address.
    NotUnicast,
    /// An echo request with a bad checksum, or a fragment to us.
    BadLocal,
    /// A port or next hop the router does not have, or a port without an address of the
    /// family.
    BadPort,
}

impl RouterDrop {
    pub const COUNT: usize = 17;
    pub const ALL: [RouterDrop; RouterDrop::COUNT] = [
        RouterDrop::NotForUs,
        RouterDrop::Tagged,
        RouterDrop::NonIp,
        RouterDrop::BadArp,
        RouterDrop::BadNd,
        RouterDrop::Martian,
        RouterDrop::NoRoute,
        RouterDrop::TtlExpired,
        RouterDrop::TooBig,
        RouterDrop::NeedsFragmentation,
        RouterDrop::NeighQueueFull,
        RouterDrop::NeighTableFull,
        RouterDrop::NeighFailed,
        RouterDrop::NoService,
        RouterDrop::NotUnicast,
        RouterDrop::BadLocal,
        RouterDrop::BadPort,
    ];

    /// A stable snake_case name, for metrics.
    pub const fn name(self) -> &'static str {
        match self {
            RouterDrop::NotForUs => "not_for_us",
            RouterDrop::Tagged => "vlan_tagged",
            RouterDrop::NonIp => "non_ip",
            RouterDrop::BadArp => "bad_arp",
            RouterDrop::BadNd => "bad_nd",
            RouterDrop::Martian => "martian",
            RouterDrop::NoRoute => "no_route",
            RouterDrop::TtlExpired => "ttl_expired",
            RouterDrop::TooBig => "too_big",
            RouterDrop::NeedsFragmentation => "needs_fragmentation",
            RouterDrop::NeighQueueFull => "neigh_queue_full",
            RouterDrop::NeighTableFull => "neigh_table_full",
            RouterDrop::NeighFailed => "neigh_failed",
            RouterDrop::NoService => "no_service",
            RouterDrop::NotUnicast => "not_unicast",
            RouterDrop::BadLocal => "bad_local",
            RouterDrop::BadPort => "bad_port",
        }
    }
}

/// Counters of one worker's router stage (single writer; the worker publishes copies).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Drops by [`RouterDrop`] index.
    pub drops: [u64; RouterDrop::COUNT],
    pub arp_answered: u64,
    pub nd_answered: u64,
    /// ARP requests and neighbour solicitations sent (first requests, retries, probes).
    pub solicits_sent: u64,
    /// Queued packets released by a resolution.
    pub released: u64,
    pub echo_replies: u64,
    /// ICMP errors sent.
    pub icmp_sent: u64,
    /// ICMP errors not sent because the token bucket was empty.
    pub icmp_ratelimited: u64,
    /// ICMP errors not sent because the neighbour toward the source was not known, or no
    /// route or source address leads back to it.
    pub icmp_unresolved: u64,
}

impl RouterStats {
    #[inline]
    pub fn drop_count(&self, d: RouterDrop) -> u64 {
        self.drops[d as usize]
    }
}

/// Where frames the router originates go: the worker copies each into an mbuf of its mempool
/// and queues it for TX on `port` (a full mempool or queue is the worker's counted loss).
pub trait Emit {
    fn emit(&mut self, port: u16, frame: &[u8]);
}

/// Collects frames (tests, replay).
impl Emit for Vec<(u16, Vec<u8>)> {
    fn emit(&mut self, port: u16, frame: &[u8]) {
        self.push((port, frame.to_vec()));
    }
}

/// What [`Router::input_l2`] made of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L2Action {
    /// An IP packet: continue with [`Router::decide`].
    Ip,
    /// Handled here (ARP, neighbour discovery): free the frame.
    Consumed,
    /// Dropped (counted): free the frame.
    Drop(RouterDrop),
}

/// The fate of a packet handed to [`Router::forward`] or [`Router::local_ip`].
#[derive(Debug, PartialEq, Eq)]
pub enum Forwarded<P> {
    /// Transmit `pkt` on `port`: its Ethernet addresses are rewritten.
    Send { port: u16, pkt: P },
    /// Held by the neighbour table until the next hop resolves (a request was sent); it comes
    /// back through `input_l2`'s `release` or `tick`'s `failed`.
    Queued,
    /// Not sent (already counted); the caller frees `P`.
    Dropped(P, RouterDrop),
}

/// A token bucket in nanotokens: `per_sec` tokens a second, at most `burst`.
#[derive(Clone, Copy, Debug)]
struct TokenBucket {
    per_sec: u64,
    cap: u64,
    level: u64,
    last_ns: u64,
}

const TOKEN: u64 = 1_000_000_000;

impl TokenBucket {
    fn new(l: IcmpLimit, now_ns: u64) -> TokenBucket {
        let cap = u64::from(l.burst.max(1)) * TOKEN;
        TokenBucket {
            per_sec: u64::from(l.per_sec),
            cap,
            level: cap,
            last_ns: now_ns,
        }
    }

    #[inline]
    fn take(&mut self, now_ns: u64) -> bool {
        if self.per_sec == 0 {
            return true;
        }
        let dt = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        self.level = self
            .level
            .saturating_add(dt.saturating_mul(self.per_sec))
            .min(self.cap);
        if self.level >= TOKEN {
            self.level -= TOKEN;
            true
        } else {
            false
        }
    }
}

/// One worker's router state: neighbours, the ICMP bucket, counters and scratch buffers, all
/// sized at creation.
pub struct RouterState<P> {
    pub neigh: NeighTable<P>,
    pub stats: RouterStats,
    bucket: TokenBucket,
    /// ICMP errors are built here.
    err: Box<[u8; MAX_ERROR]>,
    /// ARP and NDP frames are built here.
    nd: [u8; MAX_FRAME],
    /// Packets of failed resolutions between `NeighTable::tick` and their errors.
    failed: Vec<P>,
}

impl<P> RouterState<P> {
    /// Allocates everything a worker's router stage needs (`now_ns`: the bucket starts full).
    pub fn new(cfg: &RouterConfig, now_ns: u64) -> RouterState<P> {
        let n = cfg.neigh;
        RouterState {
            neigh: NeighTable::new(n),
            stats: RouterStats::default(),
            bucket: TokenBucket::new(cfg.icmp, now_ns),
            err: Box::new([0; MAX_ERROR]),
            nd: [0; MAX_FRAME],
            failed: Vec::with_capacity(n.capacity.max(1) * n.queue_len.max(1)),
        }
    }

    #[inline]
    fn count(&mut self, d: RouterDrop) -> RouterDrop {
        self.stats.drops[d as usize] += 1;
        d
    }
}

/// Writes the Ethernet destination and source of an untagged or tagged frame.
#[inline]
fn set_macs(frame: &mut [u8], dst: MacAddr, src: MacAddr) {
    if let Some(h) = frame.get_mut(..12) {
        h[..6].copy_from_slice(&dst.0);
        h[6..].copy_from_slice(&src.0);
    }
}

/// An IP packet's source and destination, read from the frame (which NAT may have rewritten
/// since `info` was made).
#[inline]
fn addrs_of(frame: &[u8], info: &PacketInfo) -> Option<(Family, IpAddr128, IpAddr128)> {
    let l3 = usize::from(info.l3_offset);
    match info.l3 {
        L3::Ipv4 => {
            let h = frame.get(l3 + 12..l3 + 20)?;
            Some((
                Family::V4,
                IpAddr128::from_v4_octets([h[0], h[1], h[2], h[3]]),
                IpAddr128::from_v4_octets([h[4], h[5], h[6], h[7]]),
            ))
        }
        L3::Ipv6 => {
            let h = frame.get(l3 + 8..l3 + 40)?;
            let mut s = [0; 16];
            let mut d = [0; 16];
            s.copy_from_slice(&h[..16]);
            d.copy_from_slice(&h[16..]);
            Some((Family::V6, IpAddr128(s), IpAddr128(d)))
        }
        _ => None,
    }
}

/// Where every destination goes, one longest-prefix match per family: the routes, over them
/// the ranges [`Router::decide`] never routes (multicast: local; IPv4 0/8, 127/8, 240/4, IPv6
/// `::`, `::1`, v4-mapped and link-local: martian; a route inside one of them is never used
/// and left out), over those the IPv4 broadcasts as local host routes, and over everything
/// our own addresses as host routes ([`OWN`]).
#[derive(Clone, Debug)]
struct Destinations {
    v4: Lpm,
    v6: Lpm,
    /// What each leaf of the tables decides, by leaf index.
    egress: Vec<Egress>,
}

/// The leaf of our own unicast addresses.
const OWN: u32 = 0;
/// The leaf of broadcast and multicast destinations (local, not ours).
const GROUP: u32 = 1;
/// The leaf of destinations never routed.
const MARTIAN: u32 = 2;

impl Destinations {
    fn new(
        routes: &[Route],
        own: &[IpAddr128],
        broadcasts: &[IpAddr128],
    ) -> Result<Destinations, RouteError> {
        let mut egress = vec![Egress::Local, Egress::Local, Egress::Martian];
        let v4k = |a: [u8; 4]| u128::from(u32::from_be_bytes(a));
        let ranges_v4 = [
            (v4k([0, 0, 0, 0]), 8, MARTIAN),
            (v4k([127, 0, 0, 0]), 8, MARTIAN),
            (v4k([224, 0, 0, 0]), 4, GROUP),
            (v4k([240, 0, 0, 0]), 4, MARTIAN),
        ];
        let ranges_v6 = [
            (0xffu128 << 120, 8, GROUP),
            (0xffffu128 << 32, 96, MARTIAN),
            (0, 128, MARTIAN),
            (1, 128, MARTIAN),
            (0xfe80u128 << 112, 10, MARTIAN),
        ];
        let inside = |width: u8, ranges: &[(u128, u8, u32)], key: u128, len: u8| {
            ranges
                .iter()
                .any(|&(p, l, _)| len >= l && (key ^ p) >> (width - l) == 0)
        };
        let mut v4: Vec<(u128, u8, u32)> = Vec::with_capacity(routes.len() + own.len() + 8);
        let mut v6: Vec<(u128, u8, u32)> = Vec::new();
        for r in routes {
            let key = r.key()?;
            let (table, skip) = match r.family {
                Family::V4 => (&mut v4, inside(32, &ranges_v4, key, r.len)),
                Family::V6 => (&mut v6, inside(128, &ranges_v6, key, r.len)),
            };
            if skip {
                continue;
            }
            let e = Egress::Forward(r.hop);
            let leaf = match egress.iter().skip(3).position(|x| *x == e) {
                Some(i) => i + 3,
                None => {
                    egress.push(e);
                    egress.len() - 1
                }
            } as u32;
            table.push((key, r.len, leaf));
        }
        v4.extend(ranges_v4);
        v6.extend(ranges_v6);
        for b in broadcasts {
            v4.push((u128::from_be_bytes(b.0) & 0xffff_ffff, 32, GROUP));
        }
        // Last: for equal prefixes the last one wins.
        for a in own {
            if a.is_v4() {
                v4.push((u128::from_be_bytes(a.0) & 0xffff_ffff, 32, OWN));
            } else {
                v6.push((u128::from_be_bytes(a.0), 128, OWN));
            }
        }
        Ok(Destinations {
            v4: Lpm::build(32, &v4)?,
            v6: Lpm::build(128, &v6)?,
            egress,
        })
    }

    /// The leaf of `a`, looked up in the table of its own family.
    #[inline(always)]
    fn leaf(&self, v4: bool, a: &IpAddr128) -> Option<u32> {
        if v4 {
            self.v4
                .lookup_v4(u32::from_be_bytes([a.0[12], a.0[13], a.0[14], a.0[15]]))
        } else {
            self.v6.lookup(u128::from_be_bytes(a.0))
        }
    }
}

/// The router: ports, routes, local addresses. Immutable; see the module docs.
#[derive(Clone, Debug)]
pub struct Router {
    ports: Vec<Port>,
    /// Routes, own addresses, broadcasts and martian ranges: what `decide` reads.
    dests: Destinations,
    /// Every unicast address of ours (port addresses, link-local, NAT addresses).
    local: Vec<IpAddr128>,
    cfg: RouterConfig,
    /// Permanent neighbours, installed in every worker's table.
    neighbours: Vec<StaticNeigh>,
}

impl Router {
    /// Builds the router from its ports (indexed as the worker's port ids) and static routes.
    /// Every port address gives a connected route; a static route for the same prefix as a
    /// connected one is overridden by it.
    pub fn new(
        ports: Vec<PortL3>,
        static_routes: &[Route],
        cfg: RouterConfig,
    ) -> Result<Router, RouterBuildError> {
        if ports.len() > 256 {
            return Err(RouterBuildError::TooManyPorts(ports.len()));
        }
        let mut routes: Vec<Route> = Vec::with_capacity(static_routes.len() + 8);
        for r in static_routes {
            if usize::from(r.hop.port) >= ports.len() {
                return Err(RouterBuildError::RoutePort {
                    prefix: r.prefix,
                    len: r.len,
                    port: r.hop.port,
                });
            }
            routes.push(*r);
        }
        let mut local = Vec::new();
        let mut broadcasts = vec![IpAddr128::from_v4(Ipv4Addr::BROADCAST)];
        let mut out = Vec::with_capacity(ports.len());
        for (i, p) in ports.into_iter().enumerate() {
            let port = i as u16;
            let v6 = p.addrs.iter().any(|a| !a.addr.is_v4());
            let min = if v6 { MIN_MTU_V6 } else { MIN_MTU_V4 };
            if p.mtu < min {
                return Err(RouterBuildError::Mtu { port, mtu: p.mtu });
            }
            for a in &p.addrs {
                let bad = |why| RouterBuildError::Address {
                    port,
                    addr: *a,
                    why,
                };
                if a.len > a.width() {
                    return Err(bad("prefix length too long"));
                }
                if Some(a.addr) == a.broadcast()
                    || a.addr.is_v4() && a.addr == a.network() && a.len <= 30
                {
                    return Err(bad("the subnet's network or broadcast address"));
                }
                let std = a.addr.to_std();
                if std.is_unspecified() || std.is_multicast() || std.is_loopback() {
                    return Err(bad("not a unicast address"));
                }
                if !a.addr.is_v4() && is_link_local_v6(&a.addr) {
                    return Err(bad("link-local addresses come from the MAC"));
                }
                if local.contains(&a.addr) {
                    return Err(RouterBuildError::Duplicate { addr: a.addr });
                }
                local.push(a.addr);
                routes.push(Route {
                    family: a.family(),
                    prefix: a.network(),
                    len: a.len,
                    hop: NextHop {
                        port: i as u8,
                        gateway: None,
                    },
                });
                broadcasts.extend(a.broadcast());
            }
            for a in &p.nat_addrs {
                if local.contains(a) {
                    return Err(RouterBuildError::Duplicate { addr: *a });
                }
                local.push(*a);
            }
            let link_local = IpAddr128::from_v6(p.link_local());
            if !local.contains(&link_local) {
                local.push(link_local);
            }
            let arp_own = p
                .addrs
                .iter()
                .map(|a| a.addr)
                .chain(p.nat_addrs.iter().copied())
                .filter_map(|a| a.to_v4())
                .collect();
            let nd_own = p
                .addrs
                .iter()
                .map(|a| a.addr)
                .chain(p.nat_addrs.iter().copied())
                .filter(|a| !a.is_v4())
                .map(|a| a.to_v6())
                .chain(std::iter::once(link_local.to_v6()))
                .collect();
            out.push(Port {
                l3: p,
                link_local,
                arp_own,
                nd_own,
            });
        }
        Ok(Router {
            dests: Destinations::new(&routes, &local, &broadcasts)?,
            ports: out,
            local,
            cfg,
            neighbours: Vec::new(),
        })
    }

    /// Adds permanent neighbours (`ip neigh add ... nud permanent`): every worker's table
    /// starts with them, and nothing the network says changes them. Each must be on an
    /// existing port, a unicast address that is not ours, at a unicast MAC, and all of them
    /// must leave room in the table.
    pub fn with_neighbours(mut self, n: Vec<StaticNeigh>) -> Result<Router, RouterBuildError> {
        for s in &n {
            let bad = |why| RouterBuildError::Neighbour { ip: s.ip, why };
            if usize::from(s.port) >= self.ports.len() {
                return Err(bad("no such port"));
            }
            let std = s.ip.to_std();
            if std.is_unspecified() || std.is_multicast() || std.is_loopback() {
                return Err(bad("not a unicast address"));
            }
            if self.local.contains(&s.ip) {
                return Err(bad("one of the router's own addresses"));
            }
            if !s.mac.is_unicast() || s.mac == MacAddr::ZERO {
                return Err(bad("not a unicast MAC address"));
            }
            if n.iter()
                .filter(|o| (o.port, o.ip) == (s.port, s.ip))
                .count()
                > 1
            {
                return Err(bad("given twice"));
            }
        }
        if n.len() >= self.cfg.neigh.capacity.max(1) {
            return Err(RouterBuildError::Neighbours {
                count: n.len(),
                capacity: self.cfg.neigh.capacity,
            });
        }
        self.neighbours = n;
        Ok(self)
    }

    /// The permanent neighbours.
    pub fn neighbours(&self) -> &[StaticNeigh] {
        &self.neighbours
    }

    /// The ports, by port id.
    pub fn ports(&self) -> impl ExactSizeIterator<Item = &PortL3> + '_ {
        self.ports.iter().map(|p| &p.l3)
    }

    /// One port, by port id.
    pub fn port(&self, port: u16) -> Option<&PortL3> {
        self.ports.get(usize::from(port)).map(|p| &p.l3)
    }

    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    /// A worker's state for this router's settings.
    pub fn new_state<P>(&self, now_ns: u64) -> RouterState<P> {
        let mut st = RouterState::new(&self.cfg, now_ns);
        for n in &self.neighbours {
            // `with_neighbours` left room for every one in an empty table.
            let added = st.neigh.add_permanent(n.port as u8, n.ip, n.mac, |_, _| {});
            debug_assert!(added);
        }
        st
    }

    /// Whether `addr` is one of our unicast addresses (port addresses, link-local addresses,
    /// 1:1 public addresses).
    #[inline]
    pub fn is_local(&self, addr: &IpAddr128) -> bool {
        self.dests.leaf(addr.is_v4(), addr) == Some(OWN)
    }

    /// Where a packet to `dst` (an address of `family`) goes; see [`Egress`] and the module
    /// docs for broadcast, multicast and martians.
    /// One longest-prefix match ([`Destinations`]): our addresses, then broadcasts and the
    /// ranges never routed, then the routes.
    #[inline(always)]
    pub fn decide(&self, family: Family, dst: &IpAddr128) -> Egress {
        let v4 = family == Family::V4;
        if v4 && !dst.is_v4() {
            return Egress::Martian;
        }
        match self.dests.leaf(v4, dst) {
            Some(i) => self
                .dests
                .egress
                .get(i as usize)
                .copied()
                .unwrap_or(Egress::Unreachable),
            None => Egress::Unreachable,
        }
    }

    /// Whether `src` may be the source of a packet routed or delivered to us: not
    /// unspecified, loopback, multicast, broadcast, class E, IPv6 link-local (for forwarding:
    /// pass `forwarding`), v4-mapped in IPv6, nor one of our own addresses. Call it on arrival,
    /// before NAT. Counts nothing; count a refusal with [`Router::note_martian`].
    #[inline(always)]
    pub fn accept_source(&self, family: Family, src: &IpAddr128, forwarding: bool) -> bool {
        structural_source_ok(family, src, forwarding) && !self.is_local(src)
    }

    /// Counts a martian (source refused or [`Egress::Martian`]).
    #[inline]
    pub fn note_martian<P>(&self, st: &mut RouterState<P>) {
        st.count(RouterDrop::Martian);
    }

    /// The address MASQUERADE (and the router's own packets) use on `port` toward `toward`:
    /// the port's address of `family` whose subnet contains `toward`, else its primary one
    /// (the first configured); for IPv6 toward a link-local address, the port's link-local
    /// address. `None` when the port has no address of the family.
    #[inline]
    pub fn source_for(&self, port: u16, family: Family, toward: &IpAddr128) -> Option<IpAddr128> {
        let p = self.ports.get(usize::from(port))?;
        let v4 = family == Family::V4;
        if !v4 && is_link_local_v6(toward) {
            return Some(p.link_local);
        }
        let mut first = None;
        for a in p.l3.addrs.iter().filter(|a| a.addr.is_v4() == v4) {
            if a.contains(toward) {
                return Some(a.addr);
            }
            first.get_or_insert(a.addr);
        }
        first
    }

    /// The address REDIRECT sends a connection to when it came in by `port` toward `dst`
    /// (`nf_nat_redirect`): the port's primary address of `family` (the first configured);
    /// for IPv6, toward a link-local address the port's link-local address, else its first
    /// global one, else its link-local one (Linux takes the first usable address of the
    /// interface's list, which holds the global ones before the link-local one, and wants a
    /// link-local one for a link-local destination). `None` when an IPv4 packet's port has no
    /// IPv4 address (Linux drops the packet).
    #[inline]
    pub fn redirect_to(&self, port: u16, family: Family, dst: &IpAddr128) -> Option<IpAddr128> {
        let p = self.ports.get(usize::from(port))?;
        let v4 = family == Family::V4;
        if !v4 && is_link_local_v6(dst) {
            return Some(p.link_local);
        }
        let first =
            p.l3.addrs
                .iter()
                .find(|a| a.addr.is_v4() == v4)
                .map(|a| a.addr);
        if v4 {
            first
        } else {
            Some(first.unwrap_or(p.link_local))
        }
    }

    /// Whether `addr` is on a link of `port`: in one of its subnets, or IPv6 link-local.
    fn on_link(&self, port: &Port, addr: &IpAddr128) -> bool {
        (!addr.is_v4() && is_link_local_v6(addr)) || port.l3.addrs.iter().any(|a| a.contains(addr))
    }

    /// The first look at every received frame: drops frames not for us and tagged frames,
    /// answers and learns from ARP and neighbour solicitations/advertisements (packets waiting
    /// for an address learnt here go to `release` with their Ethernet addresses written, ready
    /// to send on the port given), and lets IP through.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn input_l2<P: AsMut<[u8]>>(
        &self,
        st: &mut RouterState<P>,
        ingress: u16,
        frame: &[u8],
        info: &PacketInfo,
        now_ns: u64,
        emit: &mut impl Emit,
        release: impl FnMut(u16, P),
    ) -> L2Action {
        let Some(port) = self.ports.get(usize::from(ingress)) else {
            return L2Action::Drop(st.count(RouterDrop::BadPort));
        };
        let Some(dst) = frame.get(..6) else {
            return L2Action::Drop(st.count(RouterDrop::NotForUs));
        };
        if dst[0] & 1 == 0 && dst != port.l3.mac.0 {
            return L2Action::Drop(st.count(RouterDrop::NotForUs));
        }
        if info.vlans[0].is_some() {
            return L2Action::Drop(st.count(RouterDrop::Tagged));
        }
        match info.l3 {
            L3::Ipv4 => L2Action::Ip,
            L3::Ipv6 => {
                if info.proto() == Some(ip_proto::ICMPV6)
                    && !info.is_fragment()
                    && info
                        .l4_bytes(frame)
                        .and_then(|m| m.first())
                        .is_some_and(|&t| {
                            (icmpv6::msg_type::ROUTER_SOLICIT..=icmpv6::msg_type::REDIRECT)
                                .contains(&t)
                        })
                {
                    self.ndp(st, ingress, port, frame, info, now_ns, emit, release)
                } else {
                    L2Action::Ip
                }
            }
            L3::Arp => self.arp(st, ingress, port, frame, info, now_ns, emit, release),
            L3::Other => L2Action::Drop(st.count(RouterDrop::NonIp)),
        }
    }

    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn arp<P: AsMut<[u8]>>(
        &self,
        st: &mut RouterState<P>,
        ingress: u16,
        port: &Port,
        frame: &[u8],
        info: &PacketInfo,
        now_ns: u64,
        emit: &mut impl Emit,
        release: impl FnMut(u16, P),
    ) -> L2Action {
        let Some(seen) = ndisc::read_arp(frame, info) else {
            return L2Action::Drop(st.count(RouterDrop::BadArp));
        };
        let ours = port.arp_own.contains(&seen.target_ip);
        if seen.request && ours {
            if let Some(n) = ndisc::answer_arp(frame, info, port.l3.mac, &port.arp_own, &mut st.nd)
            {
                emit.emit(ingress, &st.nd[..n]);
                st.stats.arp_answered += 1;
            }
        }
        let sender = IpAddr128::from_v4(seen.sender_ip);
        if !seen.sender_ip.is_unspecified()
            && self.on_link(port, &sender)
            && !self.is_local(&sender)
        {
            let how = match (seen.request, ours) {
                (false, true) => Learnt::Answer,
                (true, true) => Learnt::Request,
                _ => Learnt::Unsolicited,
            };
            self.learn(st, ingress, sender, seen.sender_mac, how, now_ns, release);
        }
        L2Action::Consumed
    }

    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn ndp<P: AsMut<[u8]>>(
        &self,
        st: &mut RouterState<P>,
        ingress: u16,
        port: &Port,
        frame: &[u8],
        info: &PacketInfo,
        now_ns: u64,
        emit: &mut impl Emit,
        release: impl FnMut(u16, P),
    ) -> L2Action {
        let ty = info.l4_bytes(frame).and_then(|m| m.first().copied());
        if !matches!(
            ty,
            Some(icmpv6::msg_type::NEIGHBOR_SOLICIT | icmpv6::msg_type::NEIGHBOR_ADVERT)
        ) {
            // Router solicitations and advertisements, redirects: Rampart sends no router
            // advertisements and takes no redirects.
            return L2Action::Consumed;
        }
        let Some(nd) = ndisc::read_nd(frame, info) else {
            return L2Action::Drop(st.count(RouterDrop::BadNd));
        };
        if nd.solicitation {
            let ours = port.nd_own.contains(&nd.target);
            if ours {
                if let Some(n) =
                    ndisc::answer_ns(frame, info, port.l3.mac, &port.nd_own, &mut st.nd)
                {
                    emit.emit(ingress, &st.nd[..n]);
                    st.stats.nd_answered += 1;
                }
            }
            let src = IpAddr128::from_v6(nd.src);
            if let (false, Some(mac)) = (nd.src.is_unspecified(), nd.lladdr) {
                if self.on_link(port, &src) && !self.is_local(&src) {
                    let how = if ours {
                        Learnt::Request
                    } else {
                        Learnt::Unsolicited
                    };
                    self.learn(st, ingress, src, mac, how, now_ns, release);
                }
            }
        } else {
            let target = IpAddr128::from_v6(nd.target);
            if let Some(mac) = nd.lladdr {
                if self.on_link(port, &target) && !self.is_local(&target) {
                    let how = if nd.solicited {
                        Learnt::Answer
                    } else {
                        Learnt::Unsolicited
                    };
                    self.learn(st, ingress, target, mac, how, now_ns, release);
                }
            }
        }
        L2Action::Consumed
    }

    #[allow(clippy::too_many_arguments)]
    fn learn<P: AsMut<[u8]>>(
        &self,
        st: &mut RouterState<P>,
        port: u16,
        ip: IpAddr128,
        mac: MacAddr,
        how: Learnt,
        now_ns: u64,
        mut release: impl FnMut(u16, P),
    ) {
        let Some(own) = self.ports.get(usize::from(port)).map(|p| p.l3.mac) else {
            return;
        };
        let released = &mut st.stats.released;
        st.neigh
            .learn(port as u8, ip, mac, how, now_ns, |mut p, m| {
                set_macs(p.as_mut(), m, own);
                *released += 1;
                release(port, p);
            });
    }

    /// The checks before forwarding `frame` (parsed as `info`) by `hop`: a martian source
    /// (structural only: NAT may have put our own address there), TTL or hop limit (time
    /// exceeded), the out port's MTU (fragmentation needed / packet too big; IPv4 without DF:
    /// dropped, Rampart does not fragment). Sends the ICMP error (rate-limited) toward the
    /// packet's source and counts the drop. With NAT, call it on the untranslated frame so the
    /// error quotes what the sender sent; [`Router::forward`] calls it again, harmlessly.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn check_forward<P>(
        &self,
        st: &mut RouterState<P>,
        ingress: u16,
        frame: &[u8],
        info: &PacketInfo,
        hop: &NextHop,
        now_ns: u64,
        emit: &mut impl Emit,
    ) -> Result<(), RouterDrop> {
        let Some(out) = self.ports.get(usize::from(hop.port)) else {
            return Err(st.count(RouterDrop::BadPort));
        };
        let l3 = usize::from(info.l3_offset);
        let Some((family, src, _)) = addrs_of(frame, info) else {
            return Err(st.count(RouterDrop::NonIp));
        };
        if !structural_source_ok(family, &src, true) {
            return Err(st.count(RouterDrop::Martian));
        }
        let ttl = match family {
            Family::V4 => frame.get(l3 + 8),
            Family::V6 => frame.get(l3 + 7),
        };
        if ttl.is_none_or(|&t| t <= 1) {
            self.error_cold(
                st,
                ingress,
                frame,
                info,
                RouterError::TimeExceeded,
                now_ns,
                emit,
            );
            return Err(st.count(RouterDrop::TtlExpired));
        }
        if u32::from(info.l3_len) > out.l3.mtu {
            return Err(self.too_big_cold(st, ingress, frame, info, out.l3.mtu, now_ns, emit));
        }
        Ok(())
    }

    /// Whether [`Router::check_forward`] would pass an IPv4 packet by `hop` without reading
    /// more than its first octet of source: `false` for anything else (IPv6, a failed check),
    /// which `check_forward` then decides. No counter, no error.
    #[inline(always)]
    pub(crate) fn forward_checks_pass_v4(
        &self,
        frame: &[u8],
        info: &PacketInfo,
        hop: &NextHop,
    ) -> bool {
        let l3 = usize::from(info.l3_offset);
        let (Some(out), L3::Ipv4, Some(h)) = (
            self.ports.get(usize::from(hop.port)),
            info.l3,
            frame.get(l3..l3 + 20),
        ) else {
            return false;
        };
        v4_source_ok(h[12]) && h[8] > 1 && u32::from(info.l3_len) <= out.l3.mtu
    }

    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn too_big_cold<P>(
        &self,
        st: &mut RouterState<P>,
        ingress: u16,
        frame: &[u8],
        info: &PacketInfo,
        mtu: u32,
        now_ns: u64,
        emit: &mut impl Emit,
    ) -> RouterDrop {
        if icmp::too_big(frame, info, mtu) {
            self.send_error(
                st,
                ingress,
                frame,
                info,
                RouterError::TooBig { mtu },
                now_ns,
                emit,
            );
            st.count(RouterDrop::TooBig)
        } else {
            st.count(RouterDrop::NeedsFragmentation)
        }
    }

    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn error_cold<P>(
        &self,
        st: &mut RouterState<P>,
        ingress: u16,
        frame: &[u8],
        info: &PacketInfo,
        kind: RouterError,
        now_ns: u64,
        emit: &mut impl Emit,
    ) {
        self.send_error(st, ingress, frame, info, kind, now_ns, emit);
    }

    /// Forwards `pkt` (parsed as `info`; the FORWARD chain accepted it and NAT, if any, has
    /// rewritten it) by `hop`: [`Router::check_forward`], TTL / hop limit decrement (with the
    /// IPv4 checksum update), then next-hop resolution: `Send` with the Ethernet addresses
    /// rewritten, `Queued` (a request was sent when the resolution started), or `Dropped`.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn forward<P: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        st: &mut RouterState<P>,
        ingress: u16,
        mut pkt: P,
        info: &PacketInfo,
        hop: NextHop,
        now_ns: u64,
        emit: &mut impl Emit,
    ) -> Forwarded<P> {
        if let Err(d) = self.check_forward(st, ingress, pkt.as_ref(), info, &hop, now_ns, emit) {
            return Forwarded::Dropped(pkt, d);
        }
        if icmp::decrement_ttl(pkt.as_mut(), info).is_err() {
            return Forwarded::Dropped(pkt, st.count(RouterDrop::TtlExpired));
        }
        let Some((_, _, dst)) = addrs_of(pkt.as_ref(), info) else {
            return Forwarded::Dropped(pkt, st.count(RouterDrop::NonIp));
        };
        self.resolve(st, hop.port, hop.resolve_target(&dst), pkt, now_ns, emit)
    }

    /// [`Router::forward`] for a packet whose [`Router::check_forward`] by `hop` passed before
    /// its translation (as the stateful stage checks it): NAT changes neither the TTL nor the
    /// length that check read, so only the source, which SNAT may have rewritten, is checked
    /// again (structurally, as `check_forward` does), then the TTL is decremented and the next
    /// hop resolved.
    #[inline]
    pub(crate) fn forward_checked<P: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        st: &mut RouterState<P>,
        mut pkt: P,
        info: &PacketInfo,
        hop: NextHop,
        now_ns: u64,
        emit: &mut impl Emit,
    ) -> Forwarded<P> {
        let l3 = usize::from(info.l3_offset);
        let (src_ok, dst) = match (info.l3, pkt.as_ref().get(l3 + 12..l3 + 20)) {
            // IPv4: the source's first octet is all `structural_source_ok` reads.
            (L3::Ipv4, Some(h)) => (
                v4_source_ok(h[0]),
                IpAddr128::from_v4_octets([h[4], h[5], h[6], h[7]]),
            ),
            _ => match addrs_of(pkt.as_ref(), info) {
                Some((family, src, dst)) => (structural_source_ok(family, &src, true), dst),
                None => return Forwarded::Dropped(pkt, st.count(RouterDrop::NonIp)),
            },
        };
        if !src_ok {
            return Forwarded::Dropped(pkt, st.count(RouterDrop::Martian));
        }
        if icmp::decrement_ttl(pkt.as_mut(), info).is_err() {
            return Forwarded::Dropped(pkt, st.count(RouterDrop::TtlExpired));
        }
        let target = hop.resolve_target(&dst);
        // `resolve`'s common case, here rather than through its call.
        if let Some(p) = self.ports.get(usize::from(hop.port)) {
            if let Some(mac) = st.neigh.ready(hop.port, &target, now_ns) {
                set_macs(pkt.as_mut(), mac, p.l3.mac);
                return Forwarded::Send {
                    port: u16::from(hop.port),
                    pkt,
                };
            }
        }
        self.resolve(st, hop.port, target, pkt, now_ns, emit)
    }

    /// Resolves `target` on `port` for `pkt`.
    #[inline]
    fn resolve<P: AsMut<[u8]>>(
        &self,
        st: &mut RouterState<P>,
        port: u8,
        target: IpAddr128,
        pkt: P,
        now_ns: u64,
        emit: &mut impl Emit,
    ) -> Forwarded<P> {
        let Some(p) = self.ports.get(usize::from(port)) else {
            return Forwarded::Dropped(pkt, st.count(RouterDrop::BadPort));
        };
        if let Some(mac) = st.neigh.ready(port, &target, now_ns) {
            let mut pkt = pkt;
            set_macs(pkt.as_mut(), mac, p.l3.mac);
            return Forwarded::Send {
                port: u16::from(port),
                pkt,
            };
        }
        match st.neigh.resolve(port, target, pkt, now_ns) {
            Resolution::Send {
                mac,
                mut pkt,
                probe,
            } => {
                set_macs(pkt.as_mut(), mac, p.l3.mac);
                if probe {
                    self.solicit(&mut st.nd, &mut st.stats, port, target, Some(mac), emit);
                }
                Forwarded::Send {
                    port: u16::from(port),
                    pkt,
                }
            }
            Resolution::Queued { solicit } => {
                if solicit {
                    self.solicit(&mut st.nd, &mut st.stats, port, target, None, emit);
                }
                Forwarded::Queued
            }
            Resolution::Dropped(pkt, why) => {
                let d = match why {
                    NeighDrop::QueueFull => RouterDrop::NeighQueueFull,
                    NeighDrop::TableFull => RouterDrop::NeighTableFull,
                    NeighDrop::Failed => RouterDrop::NeighFailed,
                };
                Forwarded::Dropped(pkt, st.count(d))
            }
        }
    }

    /// Sends an ARP request or a neighbour solicitation for `target` on `port` (unicast to
    /// `mac` for a probe).
    #[cold]
    #[inline(never)]
    fn solicit(
        &self,
        nd: &mut [u8; MAX_FRAME],
        stats: &mut RouterStats,
        port: u8,
        target: IpAddr128,
        mac: Option<MacAddr>,
        emit: &mut impl Emit,
    ) {
        let Some(p) = self.ports.get(usize::from(port)) else {
            return;
        };
        let n = match target.to_v4() {
            Some(t) => {
                let Some(src) = self
                    .source_for(u16::from(port), Family::V4, &target)
                    .and_then(|a| a.to_v4())
                else {
                    return;
                };
                ndisc::arp_request(nd, p.l3.mac, src, t, mac)
            }
            None => {
                let src = self
                    .source_for(u16::from(port), Family::V6, &target)
                    .unwrap_or(p.link_local);
                ndisc::neighbour_solicitation(nd, p.l3.mac, src.to_v6(), target.to_v6(), mac)
            }
        };
        stats.solicits_sent += 1;
        emit.emit(u16::from(port), &nd[..n]);
    }

    /// Sends the ICMP error `kind` about `frame` (parsed as `info`) toward its source, routed
    /// like any packet (to a link-local source: out of `ingress`), if the rate limit allows and
    /// the neighbour toward the source is known. It comes from the packet's destination when
    /// that is one of our addresses (as Linux's `icmp_send` for a local route), else from the
    /// address of the port it leaves by.
    /// Returns whether it was sent. Nothing is sent about errors, non-first fragments,
    /// broadcast or multicast, or to a source that is ours or not routable.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    pub fn send_error<P>(
        &self,
        st: &mut RouterState<P>,
        ingress: u16,
        frame: &[u8],
        info: &PacketInfo,
        kind: RouterError,
        now_ns: u64,
        emit: &mut impl Emit,
    ) -> bool {
        let Some((family, src, dst)) = addrs_of(frame, info) else {
            return false;
        };
        let hop = if family == Family::V6 && is_link_local_v6(&src) {
            NextHop {
                port: ingress as u8,
                gateway: None,
            }
        } else {
            match self.decide(family, &src) {
                Egress::Forward(hop) => hop,
                _ => {
                    st.stats.icmp_unresolved += 1;
                    return false;
                }
            }
        };
        let Some(p) = self.ports.get(usize::from(hop.port)) else {
            return false;
        };
        let ours = Some(dst).filter(|d| self.is_local(d));
        let Some(from) = ours.or_else(|| self.source_for(u16::from(hop.port), family, &src)) else {
            st.stats.icmp_unresolved += 1;
            return false;
        };
        let Some(n) = icmp::build_error(frame, info, kind, from, &mut st.err) else {
            return false;
        };
        let mac = match st.neigh.get(hop.port, &hop.resolve_target(&src)) {
            Some((NeighState::Reachable | NeighState::Stale | NeighState::Permanent, mac)) => mac,
            _ => {
                st.stats.icmp_unresolved += 1;
                return false;
            }
        };
        if !st.bucket.take(now_ns) {
            st.stats.icmp_ratelimited += 1;
            return false;
        }
        set_macs(&mut st.err[..n], mac, p.l3.mac);
        emit.emit(u16::from(hop.port), &st.err[..n]);
        st.stats.icmp_sent += 1;
        true
    }

    /// Answers a packet a REJECT dropped ([`Fate::Reject`](path::Fate::Reject)): `frame` as
    /// judged (a forwarded one with its TTL decremented), arrived by `ingress`. A TCP reset,
    /// or a type without an ICMP code for the family, goes back out of `ingress` from the
    /// packet's destination ([`crate::reject::build_reply`]); an ICMP error is the router's
    /// own ([`Router::send_error`]). When `frame` is the first fragment of a datagram judged
    /// whole (`whole`, with its other fragments `rest` in offset order), the answer is about
    /// the reassembled datagram, as Linux's about the skb its defrag made: the error quotes
    /// it (fragment bits clear, no IPv6 Fragment header, the whole length), a reset reads the
    /// segment's whole length and checksum verdict. Returns whether an answer went out.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    pub fn reject<P>(
        &self,
        st: &mut RouterState<P>,
        ingress: u16,
        frame: &[u8],
        (whole, rest): (Option<crate::conntrack::frag::Whole>, &[&[u8]]),
        with: crate::classify::RejectWith,
        now_ns: u64,
        emit: &mut impl Emit,
    ) -> bool {
        let Ok(info) = parse_frame(frame) else {
            return false;
        };
        let mut buf = [0u8; crate::reject::MAX_REPLY];
        let reassembled = whole.and_then(|w| {
            crate::reject::reassembled(frame, &info, w, rest.iter().copied(), &mut buf)
                .map(|(n, i)| (n, i, w))
        });
        let (frame, info, whole) = match reassembled {
            Some((n, i, w)) => (&buf[..n], i, Some(w)),
            None => (frame, info, None),
        };
        let code = match info.l3 {
            L3::Ipv4 => crate::reject::icmp_code_v4(with),
            _ => crate::reject::icmp_code_v6(with),
        };
        match (with, code) {
            (crate::classify::RejectWith::TcpReset, _) | (_, None) => {
                let mut out = [0u8; crate::reject::MAX_REPLY];
                let n = match whole {
                    Some(w) => crate::reject::build_reply_whole(frame, &info, w, with, &mut out),
                    None => crate::reject::build_reply(frame, &info, with, &mut out),
                };
                match n {
                    Some(n) => {
                        emit.emit(ingress, &out[..n]);
                        true
                    }
                    None => false,
                }
            }
            (_, Some(code)) => {
                let kind = RouterError::Rejected { code };
                self.send_error(st, ingress, frame, &info, kind, now_ns, emit)
            }
        }
    }

    /// A datagram held for reassembly was given up at the timeout; `frame` is one of its
    /// fragments, as it arrived by `ingress`. For an IPv6 first fragment, sends ICMPv6 time
    /// exceeded, fragment reassembly time exceeded, quoting it (Linux's
    /// `ip6frag_expire_frag_queue`, which conntrack's defrag queues run too: only when the
    /// first fragment came, from the address `icmp6_send` picks, rate-limited, never about an
    /// ICMPv6 error or to a multicast destination). IPv4 sends nothing: `ip_expire` skips a
    /// conntrack defrag queue on a forwarding box. Returns whether an error was sent.
    #[cold]
    #[inline(never)]
    pub fn reassembly_timed_out<P>(
        &self,
        st: &mut RouterState<P>,
        ingress: u16,
        frame: &[u8],
        now_ns: u64,
        emit: &mut impl Emit,
    ) -> bool {
        let Ok(info) = parse_frame(frame) else {
            return false;
        };
        if info.l3 != L3::Ipv6 || !matches!(info.frag, crate::wire::Fragment::First { .. }) {
            return false;
        }
        let kind = RouterError::ReassemblyTimeout;
        self.send_error(st, ingress, frame, &info, kind, now_ns, emit)
    }

    /// For a packet whose destination has no route ([`Egress::Unreachable`]): counts it and
    /// sends ICMP destination unreachable, net unreachable (IPv4) or no route (IPv6),
    /// rate-limited. The caller frees the packet.
    #[cold]
    #[inline(never)]
    pub fn unreachable<P>(
        &self,
        st: &mut RouterState<P>,
        ingress: u16,
        frame: &[u8],
        info: &PacketInfo,
        now_ns: u64,
        emit: &mut impl Emit,
    ) {
        st.count(RouterDrop::NoRoute);
        self.send_error(st, ingress, frame, info, RouterError::NoRoute, now_ns, emit);
    }

    /// A packet to one of our addresses that the INPUT chain accepted: an echo request to a
    /// unicast address of ours becomes an echo reply in place (addresses swapped, TTL / hop
    /// limit 64, checksums updated) routed back to its sender; anything else is dropped
    /// (counted; see the module docs).
    #[inline]
    pub fn local_ip<P: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        st: &mut RouterState<P>,
        ingress: u16,
        pkt: P,
        info: &PacketInfo,
        now_ns: u64,
        emit: &mut impl Emit,
    ) -> Forwarded<P> {
        self.local_ip_as(st, ingress, pkt, info, None, now_ns, emit)
    }

    /// [`Router::local_ip`] for a packet that reached us translated by `back` (a DNAT or
    /// REDIRECT to our address; `back` translated its original direction): the echo reply is
    /// translated back as the connection's reply (from the address the sender asked), as
    /// Linux's conntrack translates its own answer.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    pub fn local_ip_as<P: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        st: &mut RouterState<P>,
        ingress: u16,
        mut pkt: P,
        info: &PacketInfo,
        back: Option<&crate::nat::Binding>,
        now_ns: u64,
        emit: &mut impl Emit,
    ) -> Forwarded<P> {
        let Some((family, src, dst)) = addrs_of(pkt.as_ref(), info) else {
            return Forwarded::Dropped(pkt, st.count(RouterDrop::NonIp));
        };
        if !self.is_local(&dst) {
            return Forwarded::Dropped(pkt, st.count(RouterDrop::NotUnicast));
        }
        if info.is_fragment() {
            return Forwarded::Dropped(pkt, st.count(RouterDrop::BadLocal));
        }
        let echo = match family {
            Family::V4 => (ip_proto::ICMP, icmpv4::msg_type::ECHO_REQUEST),
            Family::V6 => (ip_proto::ICMPV6, icmpv6::msg_type::ECHO_REQUEST),
        };
        let ty = info.l4_bytes(pkt.as_ref()).and_then(|m| m.first().copied());
        if info.proto() != Some(echo.0) || ty != Some(echo.1) {
            return Forwarded::Dropped(pkt, st.count(RouterDrop::NoService));
        }
        if !structural_source_ok(family, &src, false) {
            return Forwarded::Dropped(pkt, st.count(RouterDrop::Martian));
        }
        if !echo_reply_in_place(pkt.as_mut(), info, family) {
            return Forwarded::Dropped(pkt, st.count(RouterDrop::BadLocal));
        }
        if let Some(b) = back {
            if crate::nat::rewrite(pkt.as_mut(), info, crate::conntrack::Dir::Reply, b).is_err() {
                return Forwarded::Dropped(pkt, st.count(RouterDrop::BadLocal));
            }
        }
        let hop = if family == Family::V6 && is_link_local_v6(&src) {
            NextHop {
                port: ingress as u8,
                gateway: None,
            }
        } else {
            match self.decide(family, &src) {
                Egress::Forward(hop) => hop,
                Egress::Martian | Egress::Local => {
                    return Forwarded::Dropped(pkt, st.count(RouterDrop::Martian))
                }
                Egress::Unreachable => {
                    return Forwarded::Dropped(pkt, st.count(RouterDrop::NoRoute))
                }
            }
        };
        st.stats.echo_replies += 1;
        self.resolve(st, hop.port, hop.resolve_target(&src), pkt, now_ns, emit)
    }

    /// Runs the neighbour timers: repeats requests, sends probes, and fails resolutions that
    /// got no answer: each of their queued packets gets an ICMP host unreachable (address
    /// unreachable for IPv6) toward its source, if routable (rate-limited), and is then handed
    /// to `failed` to be freed. Call it every few milliseconds.
    pub fn tick<P: AsRef<[u8]>>(
        &self,
        st: &mut RouterState<P>,
        now_ns: u64,
        emit: &mut impl Emit,
        mut failed: impl FnMut(P),
    ) {
        let RouterState {
            neigh,
            stats,
            nd,
            failed: pending,
            ..
        } = st;
        let before = pending.len();
        neigh.tick(
            now_ns,
            |a| {
                let crate::route::neigh::TickAction::Solicit { port, ip, mac } = a;
                self.solicit(nd, stats, port, ip, mac, emit);
            },
            |_, _, p| {
                // The capacity covers every queue of every entry, so this never allocates.
                pending.push(p);
            },
        );
        stats.drops[RouterDrop::NeighFailed as usize] += (pending.len() - before) as u64;
        while let Some(p) = st.failed.pop() {
            if let Ok(info) = parse_frame(p.as_ref()) {
                // The ingress port only matters for a link-local source, which is never
                // forwarded, so never queued.
                let port = match addrs_of(p.as_ref(), &info) {
                    Some((f, src, _)) => match self.decide(f, &src) {
                        Egress::Forward(h) => u16::from(h.port),
                        _ => 0,
                    },
                    None => 0,
                };
                self.send_error(
                    st,
                    port,
                    p.as_ref(),
                    &info,
                    RouterError::Unreachable,
                    now_ns,
                    emit,
                );
            }
            failed(p);
        }
    }
}

/// The source checks that need no address list (see [`Router::accept_source`]).
#[inline]
fn structural_source_ok(family: Family, src: &IpAddr128, forwarding: bool) -> bool {
    match family {
        Family::V4 => src.is_v4() && v4_source_ok(src.0[12]),
        Family::V6 => {
            let a = u128::from_be_bytes(src.0);
            a > 1 && src.0[0] != 0xff && !src.is_v4() && !(forwarding && is_link_local_v6(src))
        }
    }
}

/// An IPv4 source's structural check, by its first octet: not 0/8, 127/8, multicast, class E
/// or broadcast.
#[inline(always)]
fn v4_source_ok(first: u8) -> bool {
    first != 0 && first != 127 && first < 224
}

/// Turns an echo request into its reply in place; `false` (nothing changed) when the
/// request's checksum is wrong or the headers are short.
fn echo_reply_in_place(frame: &mut [u8], info: &PacketInfo, family: Family) -> bool {
    let l3 = usize::from(info.l3_offset);
    let l4 = usize::from(info.l4_offset);
    let end = info.l3_end();
    if l4 == 0 || l4 + 8 > end || end > frame.len() {
        return false;
    }
    match family {
        Family::V4 => {
            let ihl = usize::from(frame[l3] & 0x0f) * 4;
            if checksum::checksum(&frame[l4..end]) != 0 || ihl < 20 || l3 + ihl > l4 {
                return false;
            }
            let (s, d) = frame[l3 + 12..l3 + 20].split_at_mut(4);
            s.swap_with_slice(d);
            frame[l3 + 8] = HOP_LIMIT;
            // Linux answers from its ICMP socket, which never sets DF (IP_PMTUDISC_DONT).
            frame[l3 + 6] &= !0x40;
            frame[l3 + 10..l3 + 12].fill(0);
            let c = checksum::checksum(&frame[l3..l3 + ihl]);
            frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
            flip_type(&mut frame[l4..], icmpv4::msg_type::ECHO_REPLY);
        }
        Family::V6 => {
            let Some((_, src, dst)) = addrs_of(frame, info) else {
                return false;
            };
            let ph = PseudoHeader::V6 {
                src: src.to_v6(),
                dst: dst.to_v6(),
            };
            if !ph.verify(ip_proto::ICMPV6, &frame[l4..end]) {
                return false;
            }
            // Swapping the addresses leaves the pseudo-header's sum as it was.
            let (s, d) = frame[l3 + 8..l3 + 40].split_at_mut(16);
            s.swap_with_slice(d);
            frame[l3 + 7] = HOP_LIMIT;
            flip_type(&mut frame[l4..], icmpv6::msg_type::ECHO_REPLY);
        }
    }
    true
}

/// Sets an ICMP message's type, updating its checksum (RFC 1624).
fn flip_type(msg: &mut [u8], ty: u8) {
    let old = u16::from_be_bytes([msg[0], msg[1]]);
    let new = u16::from_be_bytes([ty, msg[1]]);
    let c = u16::from_be_bytes([msg[2], msg[3]]);
    msg[0] = ty;
    msg[2..4].copy_from_slice(&checksum::update_u16(c, old, new).to_be_bytes());
}

mod path;
pub use path::{Arrival, Fate};

#[cfg(test)]
mod tests;
