//! FAST PATH: no allocation, lock, syscall or log (runs once per new translated connection).
//!
//! Choosing a connection's translated tuple, as Linux's `nf_nat_core` (`get_unique_tuple`,
//! `find_best_ips_proto`, `nf_nat_l4proto_unique_tuple`) does, on one worker:
//!
//! - SNAT/MASQUERADE without `--random`/`--random-fully`: the tuple is kept as it is when its
//!   source is already in the range and its reply tuple is unused.
//! - The address: the range's only address, or one picked by a hash of the source address and
//!   (unless `--persistent`) the destination address, so a client keeps its address across
//!   connections.
//! - The port (or ICMP identifier): kept when in the range (or no range was given) and the
//!   reply tuple is unused, unless random; otherwise searched from an offset (random for source
//!   translation and `--random*`, the range start for DNAT): up to 128 sequential candidates,
//!   then rounds of half as many from new random offsets, down to 16 (Linux's bounded search:
//!   a nearly full large range may report exhaustion while a port is still free).
//! - Without `--to-ports`, a source port is searched in Linux's default class of the original
//!   port (1-511, 600-1023 or 1024-65535); a DNAT without ports cannot change the port and
//!   fails on a clash ([`NatError::Clash`]).
//!
//! What Rampart adds: a source port is only chosen among the ports this worker owns at the
//! address ([`Steering::owner_of`]) and never among published (DNAT) ports, so the replies are
//! steered back to this worker; a kept original port must steer back too. Every finished
//! binding's reply tuple is checked against the steering ([`NatError::Unsteerable`]; with more
//! than one worker the reply must be steered by ownership, so a pool or target missing from the
//! steering tables is refused rather than misrouted). The
//! uniqueness probe `in_use(reply)` is the caller's: a lookup of the reply tuple in its
//! conntrack table (reply tuples are per worker, and disjoint port shares keep the tables
//! disjoint).
//!
//! Differences from Linux: no "same source, same mapping" table (`find_appropriate_src`):
//! the address hash gives the same address for a client anyway; the offsets come from a
//! per-worker xorshift generator seeded by the caller, not from the kernel's random pool.

use super::steer::Steering;
use super::Binding;
use crate::wire::{ip_proto, Family, FlowKey, IpAddr128};

/// Which side of the original tuple a translation changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Manip {
    /// SNAT, MASQUERADE (POSTROUTING).
    Src,
    /// DNAT (PREROUTING).
    Dst,
}

/// Where a translation maps to (`--to-source`/`--to-destination`/MASQUERADE resolved).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NatRange {
    /// Inclusive address range; `None` keeps the address.
    pub addrs: Option<(IpAddr128, IpAddr128)>,
    /// Inclusive port (ICMP identifier) range; `None` keeps the port when it can.
    pub ports: Option<(u16, u16)>,
    /// `--random`.
    pub random: bool,
    /// `--random-fully`.
    pub random_fully: bool,
    /// `--persistent`.
    pub persistent: bool,
}

impl NatRange {
    /// To one address, ports kept.
    pub fn to_addr(a: IpAddr128) -> NatRange {
        NatRange {
            addrs: Some((a, a)),
            ports: None,
            random: false,
            random_fully: false,
            persistent: false,
        }
    }

    #[inline]
    fn random_all(&self) -> bool {
        self.random || self.random_fully
    }

    /// The range made ready for the connections of `family` ([`Prepared`]).
    pub fn prepare(&self, family: Family) -> Prepared {
        let addrs = match self.addrs {
            None => Addrs::Keep,
            Some((lo, hi)) => {
                let v4 = family == Family::V4;
                let (l, h) = (u128::from_be_bytes(lo.0), u128::from_be_bytes(hi.0));
                if lo.is_v4() != v4 || hi.is_v4() != v4 || l > h {
                    Addrs::Wrong
                } else if v4 {
                    Addrs::V4(l as u32, h as u32)
                } else {
                    Addrs::V6(l, h)
                }
            }
        };
        Prepared {
            addrs,
            ports: self.ports,
            random_all: self.random_all(),
            persistent: self.persistent,
        }
    }
}

/// A [`NatRange`] made ready for the connections of one family ([`NatRange::prepare`]): its
/// addresses checked against the family and ordered once (when a nat chain is built), and an
/// IPv4 range held as 32-bit numbers, so that the choice for each connection neither checks
/// nor byte-swaps 128-bit numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prepared {
    pub addrs: Addrs,
    /// Inclusive port (ICMP identifier) range; `None` keeps the port when it can.
    pub ports: Option<(u16, u16)>,
    /// `--random` or `--random-fully`.
    pub random_all: bool,
    /// `--persistent`.
    pub persistent: bool,
}

/// A prepared range's addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Addrs {
    /// No address range: the address is kept.
    Keep,
    /// An IPv4 range, inclusive, as numbers.
    V4(u32, u32),
    /// An IPv6 range, inclusive, as numbers.
    V6(u128, u128),
    /// Not of the family, or empty: the connections of the family fail with
    /// [`NatError::Family`].
    Wrong,
}

impl Prepared {
    /// This range (MASQUERADE's, without addresses) to the one address `a`, for connections of
    /// `family`.
    #[inline]
    pub fn to_addr(&self, a: IpAddr128, family: Family) -> Prepared {
        let addrs = match (family, a.is_v4()) {
            (Family::V4, true) => Addrs::V4(v4_bits(&a), v4_bits(&a)),
            (Family::V6, false) => {
                let x = u128::from_be_bytes(a.0);
                Addrs::V6(x, x)
            }
            _ => Addrs::Wrong,
        };
        Prepared { addrs, ..*self }
    }
}

impl Prepared {
    /// NETMAP's range for the connection whose mapped side has address `a`: this range's
    /// prefix (`addrs` from the prefix's first to its last address, so the mask is the bits
    /// the two share, `xt_NETMAP`'s `~(min ^ max)`) with `a`'s host bits, as one address.
    /// `a` is of the range's family (the range was prepared for the connection's); a range
    /// that is not stays as it is ([`Addrs::Wrong`]: the connection fails as
    /// [`NatError::Family`]).
    #[inline]
    pub fn netmap(&self, a: &IpAddr128) -> Prepared {
        let addrs = match self.addrs {
            Addrs::V4(lo, hi) => {
                let mask = !(lo ^ hi);
                let x = (v4_bits(a) & !mask) | (lo & mask);
                Addrs::V4(x, x)
            }
            Addrs::V6(lo, hi) => {
                let mask = !(lo ^ hi);
                let x = (u128::from_be_bytes(a.0) & !mask) | (lo & mask);
                Addrs::V6(x, x)
            }
            other => other,
        };
        Prepared { addrs, ..*self }
    }
}

/// An address's last four bytes as a number: an IPv4 address, when v4-mapped (as a key's
/// addresses of the IPv4 family are).
#[inline(always)]
fn v4_bits(a: &IpAddr128) -> u32 {
    let [.., a0, a1, a2, a3] = a.0;
    u32::from_be_bytes([a0, a1, a2, a3])
}

/// Why no translated tuple was found; the caller drops the new connection and counts it
/// ([`NatError::index`] into a counter array).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum NatError {
    /// Every candidate port this worker owns in the range is in use.
    Exhausted = 0,
    /// A DNAT without a port range met an existing connection with the same reply tuple.
    Clash = 1,
    /// The range's addresses are not of the connection's family.
    Family = 2,
    /// The finished binding's replies would be steered to another worker.
    Unsteerable = 3,
    /// MASQUERADE on a port without an address of the connection's family.
    NoAddress = 4,
}

impl NatError {
    /// How many variants (the size of a counter array).
    pub const COUNT: usize = 5;

    /// Every variant, in index order.
    pub const ALL: [NatError; NatError::COUNT] = [
        NatError::Exhausted,
        NatError::Clash,
        NatError::Family,
        NatError::Unsteerable,
        NatError::NoAddress,
    ];

    /// A stable counter index.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The counter's name.
    pub const fn name(self) -> &'static str {
        match self {
            NatError::Exhausted => "nat_exhausted",
            NatError::Clash => "nat_clash",
            NatError::Family => "nat_family",
            NatError::Unsteerable => "nat_unsteerable",
            NatError::NoAddress => "nat_no_address",
        }
    }
}

/// Most sequential candidates in a first search round (Linux's `max_attempts`).
const MAX_ATTEMPTS: u32 = 128;
/// Rounds stop when their size falls below this (Linux's cut-off).
const MIN_ROUND: u32 = 16;

/// One worker's tuple selector.
#[derive(Clone, Debug)]
pub struct Allocator {
    worker: u16,
    seed: u64,
    rng: u64,
}

impl Allocator {
    /// The selector of `worker`; `seed` varies the address hash and the random offsets
    /// (use the same seed on every worker so a client maps to the same address everywhere).
    pub fn new(worker: u16, seed: u64) -> Allocator {
        Allocator {
            worker,
            seed,
            rng: (seed ^ (u64::from(worker) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1,
        }
    }

    pub fn worker(&self) -> u16 {
        self.worker
    }

    #[inline]
    fn random(&mut self) -> u32 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    /// The binding of a new connection `orig`: DNAT first (PREROUTING), then SNAT or
    /// MASQUERADE (POSTROUTING), then the steering check. `in_use(reply)` says whether a
    /// connection with that reply tuple exists.
    pub fn bind(
        &mut self,
        orig: &FlowKey,
        dnat: Option<&NatRange>,
        snat: Option<&NatRange>,
        steering: &Steering,
        mut in_use: impl FnMut(&FlowKey) -> bool,
    ) -> Result<Binding, NatError> {
        let mut b = Binding::identity(*orig);
        if let Some(r) = dnat {
            b = self.apply(&b, Manip::Dst, r, steering, &mut in_use)?;
        }
        if let Some(r) = snat {
            b = self.apply(&b, Manip::Src, r, steering, &mut in_use)?;
        }
        self.steerable(b, steering)
    }

    /// The last step of [`Allocator::bind`], for callers that apply the translations one at a
    /// time: `b` if its replies come back to this worker.
    #[inline]
    pub fn steerable(&self, b: Binding, steering: &Steering) -> Result<Binding, NatError> {
        // Replies must come back here by port ownership; a reply tuple the tables do not know
        // (an unregistered pool or target) would be spread by the flow hash instead, which only
        // a single worker can afford.
        match steering.owner(&b.reply) {
            Some(w) if w == self.worker => Ok(b),
            None if steering.workers() == 1 || b.is_identity() => Ok(b),
            _ => Err(NatError::Unsteerable),
        }
    }

    /// One translation step on top of `current` (which may already carry a DNAT).
    pub fn apply(
        &mut self,
        current: &Binding,
        manip: Manip,
        range: &NatRange,
        steering: &Steering,
        in_use: &mut impl FnMut(&FlowKey) -> bool,
    ) -> Result<Binding, NatError> {
        let mut b = *current;
        self.apply_in_place(&mut b, manip, range, steering, in_use)?;
        Ok(b)
    }

    /// [`Allocator::apply`] on `b` itself: [`Allocator::apply_prepared`] with `range` prepared
    /// for the connection's family.
    pub fn apply_in_place<F: FnMut(&FlowKey) -> bool>(
        &mut self,
        b: &mut Binding,
        manip: Manip,
        range: &NatRange,
        steering: &Steering,
        in_use: &mut F,
    ) -> Result<(bool, bool), NatError> {
        let range = range.prepare(b.orig.family);
        self.apply_prepared(b, manip, &range, steering, in_use)
    }

    /// [`Allocator::apply`] on `b` itself, with a range prepared for the connection's family
    /// ([`NatRange::prepare`]): on success its reply tuple is the translated one
    /// (its original tuple never changes), on failure `b` is as it was. `Ok` holds whether
    /// the result's reply tuple is known to come back to this worker (it steers here by port
    /// ownership, [`super::steer::Steer::Worker`], or this is the only worker), so that the
    /// caller need not check it with [`Allocator::steerable`] again, and whether the step changed
    /// the translated tuple (when it did not, `b` translates exactly what it translated
    /// before). On success the last tuple given to `in_use` is the binding's reply tuple (the
    /// caller may keep what its probe computed for it, such as its index tag). The form the
    /// stateful stage takes: a binding is 80 bytes, and each copy of it costs more than most
    /// steps of the choice. Out of line: it runs once per new translated connection, and
    /// inlined into the stateful stage it lengthens the path of every packet.
    #[inline(never)]
    pub fn apply_prepared<F: FnMut(&FlowKey) -> bool>(
        &mut self,
        b: &mut Binding,
        manip: Manip,
        range: &Prepared,
        steering: &Steering,
        in_use: &mut F,
    ) -> Result<(bool, bool), NatError> {
        let cur = b.translated_orig();
        match (range.addrs, cur.family) {
            (Addrs::Keep, _) | (Addrs::V4(..), Family::V4) | (Addrs::V6(..), Family::V6) => {}
            _ => return Err(NatError::Family),
        }
        let ported = has_ports(&cur);
        // With one worker, every reply comes back here: nothing to steer.
        let single = steering.workers() == 1 && self.worker == 0;
        // Each candidate's reply tuple is made once, in place ([`candidate`]).
        let worker = self.worker;

        // SNAT keeps a tuple that is already in range.
        if manip == Manip::Src && !range.random_all && in_range(&cur, manip, range, ported) {
            if let Some(here) =
                candidate(&cur, &mut b.reply, in_use, manip, single, steering, worker)
            {
                return Ok((here, false));
            }
        }

        let mut t = cur;
        // Whether `t` differs from `cur` (so far only in the address).
        let mut moved = false;
        if let Some(a) = self.pick_addr(&cur, range) {
            let at = match manip {
                Manip::Src => &mut t.src,
                Manip::Dst => &mut t.dst,
            };
            moved = *at != a;
            *at = a;
        }
        if !range.random_all {
            let port_ok = match range.ports {
                Some(_) => !ported || port_in(&t, manip, range.ports),
                None => true,
            };
            if port_ok {
                if let Some(here) =
                    candidate(&t, &mut b.reply, in_use, manip, single, steering, worker)
                {
                    return Ok((here, moved));
                }
            }
        }
        if !ported {
            return Err(if manip == Manip::Dst {
                NatError::Clash
            } else {
                NatError::Exhausted
            });
        }
        let (min, max) = match range.ports {
            Some(p) => p,
            None if cur.is_icmp() => (0, u16::MAX),
            None if manip == Manip::Dst => return Err(NatError::Clash),
            None => default_class(get_port(&cur, manip)),
        };
        let t = self.search(t, manip, min, max, range.random_all, steering, in_use)?;
        b.reply = t.reply();
        Ok((false, t != cur))
    }

    /// Linux's bounded search over the candidates of `[min, max]`.
    #[allow(clippy::too_many_arguments)]
    fn search(
        &mut self,
        mut t: FlowKey,
        manip: Manip,
        min: u16,
        max: u16,
        random_all: bool,
        steering: &Steering,
        in_use: &mut impl FnMut(&FlowKey) -> bool,
    ) -> Result<FlowKey, NatError> {
        // Whose ports: a source port is chosen among this worker's share of the NAT address,
        // unless the address is fully published (a 1:1 public address, steered by the remote
        // endpoint); a destination port (DNAT) steers nothing.
        let nat_addr = t.src;
        let owned = manip == Manip::Src && !steering.is_fully_published(&nat_addr, t.proto);
        let (first, step) = if owned {
            steering.first_owned(self.worker, &nat_addr, min)
        } else {
            (u32::from(min), 1)
        };
        if first > u32::from(max) {
            return Err(NatError::Exhausted);
        }
        let count = (u32::from(max) - first) / step + 1;
        let mut off = if random_all || manip == Manip::Src {
            self.random()
        } else {
            0
        };
        let mut attempts = count.min(MAX_ATTEMPTS);
        loop {
            for i in 0..attempts {
                let port = (first + (off.wrapping_add(i) % count) * step) as u16;
                set_port(&mut t, manip, port);
                if owned && steering.is_published(&nat_addr, t.proto, port) {
                    continue;
                }
                if in_use(&t.reply()) {
                    continue;
                }
                if manip == Manip::Src && !owned && !steering.reaches(self.worker, &t.reply()) {
                    // A fully published address steers by the other end (or by the port pair
                    // in a hairpin): only some ports bring the replies here.
                    continue;
                }
                return Ok(t);
            }
            if attempts >= count || attempts < MIN_ROUND {
                return Err(NatError::Exhausted);
            }
            attempts /= 2;
            off = self.random();
        }
    }

    /// `find_best_ips_proto`: the only address, or a hash of source (and destination unless
    /// persistent) spread over the range; `None` when the range keeps the address.
    #[inline]
    fn pick_addr(&self, k: &FlowKey, r: &Prepared) -> Option<IpAddr128> {
        match r.addrs {
            Addrs::V4(lo, hi) => {
                if lo == hi {
                    return Some(IpAddr128::from_v4_octets(lo.to_be_bytes()));
                }
                let dst = (!r.persistent).then(|| v4_bits(&k.dst));
                let h = hash_v4(self.seed, v4_bits(&k.src), dst);
                // Linux's scaling: (h * size) >> 32 keeps the spread even.
                let off = (u64::from(h) * (u64::from(hi - lo) + 1)) >> 32;
                Some(IpAddr128::from_v4_octets((lo + off as u32).to_be_bytes()))
            }
            Addrs::V6(l, hv) => {
                if l == hv {
                    return Some(IpAddr128(l.to_be_bytes()));
                }
                let h = hash_addrs(self.seed, &k.src, (!r.persistent).then_some(&k.dst));
                let span = hv - l;
                let off = if span == u128::MAX {
                    u128::from(h)
                } else if span < 1 << 32 {
                    (u128::from(h) * (span + 1)) >> 32
                } else {
                    u128::from(h) % (span + 1)
                };
                Some(IpAddr128((l + off).to_be_bytes()))
            }
            Addrs::Keep | Addrs::Wrong => None,
        }
    }
}

/// [`Allocator::apply_in_place`]'s test of candidate tuple `t`: its reply tuple must be unused
/// and (for SNAT) reach this worker: `None` when it does not, else whether it is known to come
/// back here (by port ownership, or because this is the only worker, `single`), with `reply`
/// set to it. Inlined always: a closure of the choice, called from two places, was left out of
/// line with a frame of its own.
#[inline(always)]
fn candidate<F: FnMut(&FlowKey) -> bool>(
    t: &FlowKey,
    reply: &mut FlowKey,
    in_use: &mut F,
    manip: Manip,
    single: bool,
    steering: &Steering,
    worker: u16,
) -> Option<bool> {
    let r = t.reply();
    if in_use(&r) {
        return None;
    }
    let here = if manip == Manip::Dst {
        false
    } else if single {
        true
    } else {
        match steering.owner(&r) {
            Some(w) if w == worker => true,
            Some(_) => return None,
            None => false,
        }
    };
    *reply = r;
    Some(here)
}

/// Whether the protocol has ports (or an ICMP query identifier) to translate.
#[inline]
fn has_ports(k: &FlowKey) -> bool {
    match k.proto {
        ip_proto::TCP | ip_proto::UDP => true,
        _ if k.is_icmp() => {
            let ty = (k.dst_port >> 8) as u8;
            match k.family {
                Family::V4 => crate::wire::icmpv4::is_query(ty),
                Family::V6 => crate::wire::icmpv6::is_query(ty),
            }
        }
        _ => false,
    }
}

/// The port a manip changes: the source or destination port; for ICMP the identifier.
#[inline]
fn get_port(k: &FlowKey, manip: Manip) -> u16 {
    if k.is_icmp() || manip == Manip::Src {
        k.src_port
    } else {
        k.dst_port
    }
}

#[inline]
fn set_port(k: &mut FlowKey, manip: Manip, port: u16) {
    if k.is_icmp() || manip == Manip::Src {
        k.src_port = port;
    } else {
        k.dst_port = port;
    }
}

#[inline]
fn port_in(k: &FlowKey, manip: Manip, ports: Option<(u16, u16)>) -> bool {
    match ports {
        None => true,
        Some((lo, hi)) => (lo..=hi).contains(&get_port(k, manip)),
    }
}

/// `nf_nat_inet_in_range` plus the port check: the tuple's translated side already lies in
/// the range.
#[inline]
fn in_range(k: &FlowKey, manip: Manip, r: &Prepared, ported: bool) -> bool {
    let a = match manip {
        Manip::Src => &k.src,
        Manip::Dst => &k.dst,
    };
    let addr_ok = match r.addrs {
        Addrs::Keep => true,
        Addrs::V4(lo, hi) => (lo..=hi).contains(&v4_bits(a)),
        Addrs::V6(lo, hi) => (lo..=hi).contains(&u128::from_be_bytes(a.0)),
        Addrs::Wrong => false,
    };
    addr_ok && (!ported || port_in(k, manip, r.ports))
}

/// Linux's default source port class when no range is given: privileged ports stay
/// privileged (and below 512 when they were).
#[inline]
fn default_class(port: u16) -> (u16, u16) {
    if port < 512 {
        (1, 511)
    } else if port < 1024 {
        (600, 1023)
    } else {
        (1024, u16::MAX)
    }
}

/// A keyed hash of one or two IPv4 addresses into 32 bits: one 64-bit word through
/// SplitMix64's finalizer.
#[inline]
fn hash_v4(seed: u64, a: u32, b: Option<u32>) -> u32 {
    let x = u64::from(a) << 32 | u64::from(b.unwrap_or(0));
    let mut h = (seed ^ 0x243f_6a88_85a3_08d3).wrapping_add(x);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((h ^ (h >> 31)) >> 32) as u32
}

/// A keyed hash of one or two addresses into 32 bits.
#[inline]
fn hash_addrs(seed: u64, a: &IpAddr128, b: Option<&IpAddr128>) -> u32 {
    let mut h = seed ^ 0x243f_6a88_85a3_08d3;
    let mut eat = |x: &IpAddr128| {
        let w = u128::from_be_bytes(x.0);
        for part in [w as u64, (w >> 64) as u64] {
            h = (h ^ part).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            h ^= h >> 29;
        }
    };
    eat(a);
    if let Some(b) = b {
        eat(b);
    }
    (h.wrapping_mul(0xbf58_476d_1ce4_e5b9) >> 32) as u32
}

#[cfg(test)]
mod tests;
