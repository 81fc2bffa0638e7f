//! `-m rpfilter` (ipt_rpfilter, ip6t_rpfilter): the reverse-path check of a received packet,
//! in router mode. The packet's source is looked up as a destination in the router's own
//! table ([`RpFib`]: the connected and static routes, the router's addresses and the IPv4
//! broadcasts, as [`crate::router::Router`] is built from them); the match holds when that
//! lookup finds
//!
//! - a unicast route out of the port the packet came in on, or any unicast route with
//!   `--loose`;
//! - one of the router's own addresses with `--accept-local`: IPv4 then also asks for the
//!   address's port unless `--loose` (the local route's device), IPv6 does not
//!   (`RTF_LOCAL` answers alone).
//!
//! Linux's special cases come first: an IPv4 packet from `0.0.0.0` to `255.255.255.255` or
//! to `224.0.0.0/24` holds (DHCP), an IPv6 packet from `::` holds, and an IPv6 link-local
//! source holds (the lookup is bound to the ingress port, where `fe80::/64` always is: every
//! router port has a link-local address). An IPv6 source that is one of the router's
//! subnet-router anycast addresses (a port prefix with zero host bits) does not
//! (`RTF_ANYCAST`), nor does an IPv4 broadcast (`RTN_BROADCAST`), nor a source without a
//! route. `--invert` negates the answer.
//!
//! The router's routes carry no mark and there is no policy routing, so `--validmark`
//! (the packet's mark in the lookup) changes no answer; nor are there blackhole,
//! unreachable or prohibit routes (which fail in Linux), so a lookup that finds a route
//! finds a unicast one. The check costs one longest-prefix match per packet that reaches it.

use super::PacketMeta;
use crate::route::lpm::{Lpm, LpmError};
use crate::wire::{Family, IpAddr128};

/// `XT_RPFILTER_LOOSE`.
pub const LOOSE: u8 = 1;
/// `XT_RPFILTER_VALID_MARK`.
pub const VALID_MARK: u8 = 2;
/// `XT_RPFILTER_ACCEPT_LOCAL`.
pub const ACCEPT_LOCAL: u8 = 4;
/// `XT_RPFILTER_INVERT`.
pub const INVERT: u8 = 8;

/// What a table entry gives: a unicast route out of a port (`0..=255`), one of our
/// addresses on a port (`LOCAL | port`), or a destination that is not unicast.
const LOCAL: u32 = 0x100;
/// One of our addresses on no port (a 1:1 public address outside every port's subnets).
const LOCAL_NO_PORT: u32 = 0x200;
/// Not a unicast destination: an IPv4 broadcast, an IPv6 subnet-router anycast address.
const NOT_UNICAST: u32 = 0x300;

/// The reverse-path table: both families' entries as given (compared and hashed by them) and
/// the longest-prefix match built from them.
#[derive(Clone, Debug)]
pub struct RpFib {
    entries: [Vec<(u128, u8, u32)>; 2],
    v4: Lpm,
    v6: Lpm,
}

impl PartialEq for RpFib {
    fn eq(&self, o: &RpFib) -> bool {
        self.entries == o.entries
    }
}

impl Eq for RpFib {}

impl std::hash::Hash for RpFib {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.entries.hash(h);
    }
}

/// One entry of [`RpFib::new`]: a prefix (v4-mapped for IPv4) and what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpEntry {
    /// A connected or static route out of `port`.
    Route {
        prefix: IpAddr128,
        len: u8,
        port: u8,
    },
    /// One of the router's addresses, on `port` (`None`: on no port).
    Local { addr: IpAddr128, port: Option<u8> },
    /// An address that is not unicast: a directed IPv4 broadcast, the limited broadcast, an
    /// IPv6 subnet-router anycast address.
    NotUnicast { addr: IpAddr128 },
}

impl RpFib {
    /// The table of `entries`: routes first, then the router's addresses and broadcasts as
    /// host routes over them (for equal prefixes the later entry wins).
    pub fn new(entries: &[RpEntry]) -> Result<RpFib, LpmError> {
        let mut t: [Vec<(u128, u8, u32)>; 2] = [Vec::new(), Vec::new()];
        let key = |a: &IpAddr128| -> (usize, u128) {
            if a.is_v4() {
                (0, u128::from_be_bytes(a.0) & 0xffff_ffff)
            } else {
                (1, u128::from_be_bytes(a.0))
            }
        };
        let host = |v4: usize| if v4 == 0 { 32 } else { 128 };
        let (mut locals, mut others) = (Vec::new(), Vec::new());
        for e in entries {
            match *e {
                RpEntry::Route { prefix, len, port } => {
                    let (f, k) = key(&prefix);
                    t[f].push((k, len, u32::from(port)));
                }
                RpEntry::Local { addr, port } => {
                    let (f, k) = key(&addr);
                    let v = port.map_or(LOCAL_NO_PORT, |p| LOCAL | u32::from(p));
                    locals.push((f, (k, host(f), v)));
                }
                RpEntry::NotUnicast { addr } => {
                    let (f, k) = key(&addr);
                    others.push((f, (k, host(f), NOT_UNICAST)));
                }
            }
        }
        // Our addresses over broadcasts and anycast addresses (a /31's or /32's address may
        // be both).
        for (f, e) in others.into_iter().chain(locals) {
            t[f].push(e);
        }
        Ok(RpFib {
            v4: Lpm::build(32, &t[0])?,
            v6: Lpm::build(128, &t[1])?,
            entries: t,
        })
    }

    /// What `a` (of `family`) looks up to; `None`: no route.
    #[inline]
    fn lookup(&self, family: Family, a: &IpAddr128) -> Option<u32> {
        match family {
            Family::V4 => self
                .v4
                .lookup_v4(u32::from_be_bytes([a.0[12], a.0[13], a.0[14], a.0[15]])),
            Family::V6 => self.v6.lookup(u128::from_be_bytes(a.0)),
        }
    }
}

/// One `-m rpfilter`: its flags (the `XT_RPFILTER_*` bits) and the router's table.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RpFilterMatch {
    pub flags: u8,
    pub fib: std::sync::Arc<RpFib>,
}

impl RpFilterMatch {
    /// Whether the match holds for the packet `p` (its source, destination, ingress port).
    #[inline]
    pub fn holds(&self, p: &PacketMeta) -> bool {
        self.reverse_path_ok(p) != (self.flags & INVERT != 0)
    }

    fn reverse_path_ok(&self, p: &PacketMeta) -> bool {
        let (src, dst) = (&p.key.src, &p.key.dst);
        let flags = self.flags;
        let loose = flags & LOOSE != 0;
        match p.key.family {
            Family::V4 => {
                let s = &src.0[12..16];
                if s == [0, 0, 0, 0] {
                    let d = &dst.0[12..16];
                    if d == [255, 255, 255, 255] || d[..3] == [224, 0, 0] {
                        return true;
                    }
                }
                match self.fib.lookup(Family::V4, src) {
                    Some(port) if port < LOCAL => loose || port == u32::from(p.in_port),
                    Some(l) if l & !0xff == LOCAL && flags & ACCEPT_LOCAL != 0 => {
                        loose || l & 0xff == u32::from(p.in_port)
                    }
                    Some(LOCAL_NO_PORT) => loose && flags & ACCEPT_LOCAL != 0,
                    _ => false,
                }
            }
            Family::V6 => {
                if src.0 == [0; 16] {
                    return true;
                }
                if src.0[0] == 0xfe && src.0[1] & 0xc0 == 0x80 {
                    return true;
                }
                match self.fib.lookup(Family::V6, src) {
                    Some(port) if port < LOCAL => loose || port == u32::from(p.in_port),
                    Some(l) if l & !0xff == LOCAL || l == LOCAL_NO_PORT => {
                        flags & ACCEPT_LOCAL != 0
                    }
                    _ => false,
                }
            }
        }
    }
}
