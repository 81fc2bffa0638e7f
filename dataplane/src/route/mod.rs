//! Router mode: forwarding by longest-prefix match over static routes, next-hop resolution,
//! and the packets a router itself sends.
//!
//! - [`RouteTable`] ([`lpm`]): IPv4 and IPv6 tables from static and connected routes; a lookup
//!   gives a [`NextHop`] (out port, gateway or directly connected).
//! - [`neigh`]: the bounded neighbour table (ARP/NDP cache) with its states, timeouts and the
//!   small queue of packets waiting for resolution.
//! - [`ndisc`]: ARP requests and replies, IPv6 neighbour solicitations and advertisements, and
//!   the answers for a port's own addresses.
//! - [`icmp`]: TTL/hop-limit decrement and the ICMP/ICMPv6 errors a router sends (time
//!   exceeded, destination unreachable, fragmentation needed / packet too big).
//!
//! Invariants: a route table is immutable once built (a change builds a new one); lookups,
//! neighbour resolution and TTL decrement neither allocate nor lock.

pub mod icmp;
pub mod lpm;
pub mod ndisc;
pub mod neigh;

use crate::wire::{Family, IpAddr128};
use lpm::{Lpm, LpmError};

/// Where a routed packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NextHop {
    /// Out port index.
    pub port: u8,
    /// The gateway to resolve; `None` when the destination is directly connected (resolve the
    /// packet's own destination).
    pub gateway: Option<IpAddr128>,
}

impl NextHop {
    /// The address whose link-layer address the packet needs.
    #[inline]
    pub fn resolve_target(&self, dst: &IpAddr128) -> IpAddr128 {
        self.gateway.unwrap_or(*dst)
    }
}

/// One static or connected route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    pub family: Family,
    /// The network address (v4-mapped for IPv4); host bits must be zero.
    pub prefix: IpAddr128,
    /// Prefix length in bits of the family's address (0..=32 or 0..=128).
    pub len: u8,
    pub hop: NextHop,
}

/// Why routes do not make a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("{prefix}/{len}: prefix length too long for the family")]
    Length { prefix: IpAddr128, len: u8 },
    #[error("{prefix}/{len}: host bits set (Linux: \"Invalid prefix for given prefix length\")")]
    HostBits { prefix: IpAddr128, len: u8 },
    #[error("{prefix}/{len}: address or gateway of the wrong family")]
    Family { prefix: IpAddr128, len: u8 },
    #[error("table: {0}")]
    Table(#[from] LpmError),
}

/// The forwarding tables of both families.
#[derive(Clone, Debug)]
pub struct RouteTable {
    v4: Lpm,
    v6: Lpm,
    hops: Vec<NextHop>,
}

impl Route {
    /// The prefix as the key of its family's table (an IPv4 prefix in the low 32 bits), once
    /// its length, family and host bits are checked.
    pub fn key(&self) -> Result<u128, RouteError> {
        let r = self;
        let (width, key) = match r.family {
            Family::V4 => (32u8, u128::from_be_bytes(r.prefix.0) & 0xffff_ffff),
            Family::V6 => (128u8, u128::from_be_bytes(r.prefix.0)),
        };
        let e = |f: fn(IpAddr128, u8) -> RouteError| f(r.prefix, r.len);
        if r.len > width {
            return Err(e(|prefix, len| RouteError::Length { prefix, len }));
        }
        let v4_ok = |a: &IpAddr128| a.is_v4() == (r.family == Family::V4);
        if !v4_ok(&r.prefix) || r.hop.gateway.is_some_and(|g| !v4_ok(&g)) {
            return Err(e(|prefix, len| RouteError::Family { prefix, len }));
        }
        let host = if r.len == 0 {
            key
        } else if r.len == width {
            0
        } else {
            key & ((1u128 << (width - r.len)) - 1)
        };
        if host != 0 {
            return Err(e(|prefix, len| RouteError::HostBits { prefix, len }));
        }
        Ok(key)
    }
}

impl RouteTable {
    /// Builds the tables; for equal prefixes the last route wins.
    pub fn new(routes: &[Route]) -> Result<RouteTable, RouteError> {
        let mut hops: Vec<NextHop> = Vec::new();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for r in routes {
            let key = r.key()?;
            let h = match hops.iter().position(|h| *h == r.hop) {
                Some(i) => i,
                None => {
                    hops.push(r.hop);
                    hops.len() - 1
                }
            } as u32;
            match r.family {
                Family::V4 => v4.push((key, r.len, h)),
                Family::V6 => v6.push((key, r.len, h)),
            }
        }
        Ok(RouteTable {
            v4: Lpm::build(32, &v4)?,
            v6: Lpm::build(128, &v6)?,
            hops,
        })
    }

    /// The next hop for `dst` (an address of `family`), `None` when no route covers it.
    #[inline]
    pub fn lookup(&self, family: Family, dst: &IpAddr128) -> Option<&NextHop> {
        let k = u128::from_be_bytes(dst.0);
        let i = match family {
            Family::V4 => self.v4.lookup(k & 0xffff_ffff)?,
            Family::V6 => self.v6.lookup(k)?,
        };
        self.hops.get(i as usize)
    }

    pub fn memory_bytes(&self) -> usize {
        self.v4.memory_bytes() + self.v6.memory_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(a: [u8; 4]) -> IpAddr128 {
        IpAddr128::from_v4(Ipv4Addr::from(a))
    }

    fn v6(s: &str) -> IpAddr128 {
        IpAddr128::from_v6(s.parse::<Ipv6Addr>().unwrap())
    }

    fn route(family: Family, prefix: IpAddr128, len: u8, port: u8, gw: Option<IpAddr128>) -> Route {
        Route {
            family,
            prefix,
            len,
            hop: NextHop { port, gateway: gw },
        }
    }

    #[test]
    fn connected_and_static_routes_both_families() {
        let t = RouteTable::new(&[
            route(Family::V4, v4([10, 0, 0, 0]), 24, 0, None),
            route(Family::V4, v4([0, 0, 0, 0]), 0, 1, Some(v4([192, 0, 2, 1]))),
            route(Family::V4, v4([192, 0, 2, 0]), 24, 1, None),
            route(Family::V6, v6("fd00::"), 64, 0, None),
            route(Family::V6, v6("::"), 0, 1, Some(v6("fe80::1"))),
        ])
        .unwrap();
        let hop = t.lookup(Family::V4, &v4([10, 0, 0, 9])).unwrap();
        assert_eq!((hop.port, hop.gateway), (0, None));
        assert_eq!(hop.resolve_target(&v4([10, 0, 0, 9])), v4([10, 0, 0, 9]));
        let hop = t.lookup(Family::V4, &v4([8, 8, 8, 8])).unwrap();
        assert_eq!(hop.resolve_target(&v4([8, 8, 8, 8])), v4([192, 0, 2, 1]));
        assert_eq!(t.lookup(Family::V6, &v6("fd00::5")).unwrap().port, 0);
        assert_eq!(
            t.lookup(Family::V6, &v6("2001:db8::1")).unwrap().gateway,
            Some(v6("fe80::1"))
        );
        let no_default = RouteTable::new(&[route(Family::V6, v6("fd00::"), 64, 0, None)]).unwrap();
        assert_eq!(no_default.lookup(Family::V6, &v6("2001:db8::1")), None);
        assert_eq!(no_default.lookup(Family::V4, &v4([10, 0, 0, 1])), None);
    }

    #[test]
    fn bad_routes_are_refused() {
        assert!(matches!(
            RouteTable::new(&[route(Family::V4, v4([10, 0, 0, 1]), 24, 0, None)]),
            Err(RouteError::HostBits { .. })
        ));
        assert!(matches!(
            RouteTable::new(&[route(Family::V4, v4([10, 0, 0, 0]), 33, 0, None)]),
            Err(RouteError::Length { .. })
        ));
        assert!(matches!(
            RouteTable::new(&[route(
                Family::V4,
                v4([10, 0, 0, 0]),
                8,
                0,
                Some(v6("fe80::1"))
            )]),
            Err(RouteError::Family { .. })
        ));
        assert!(matches!(
            RouteTable::new(&[route(Family::V6, v4([10, 0, 0, 0]), 8, 0, None)]),
            Err(RouteError::Family { .. })
        ));
    }
}
