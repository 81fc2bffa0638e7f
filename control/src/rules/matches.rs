//! Values of the match extensions whose conditions are checked on the packet's bytes
//! ([`dataplane::classify::Check`]: ttl, hl, length, tos, dscp, ecn, pkttype, mac, tcpmss,
//! `--tcp-option`), of `-m limit`, and of `-m addrtype`, whose address types become address
//! sets here. Each parser takes what iptables' own extension takes and says why it refuses
//! the rest.

use super::ast::AddrRange;
use dataplane::classify::checks::{self, PktType};
use dataplane::classify::{PortMask, ANY_PORT};
use dataplane::router::IfAddr;
use dataplane::wire::{Family, IpAddr128};

/// What rules may know of the host besides its port names: the router's own addresses, per
/// configured port (in port order), for `-m addrtype`'s LOCAL and directed BROADCAST (empty in
/// bridge mode: Rampart then has no address); whether packets are routed (router mode: no
/// packet is bridged, so `-m physdev` answers as for a packet without bridge information); and
/// in bridge mode the bridge's name, which `-i`/`-o` take for every port (br_netfilter shows a
/// bridged packet to iptables with the bridge as its interfaces).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostAddrs {
    pub ports: Vec<Vec<IfAddr>>,
    pub routed: bool,
    pub bridge: Option<String>,
    /// Router mode: the router's table, where `-m rpfilter` looks sources up
    /// ([`dataplane::classify::rpfilter`]).
    pub rpf: Option<std::sync::Arc<dataplane::classify::rpfilter::RpFib>>,
}

/// An unsigned number as `strtoul` with base 0 reads it (decimal, `0x` hex, leading-`0`
/// octal), at most `max`.
pub(crate) fn number(s: &str, max: u32, what: &str) -> Result<u32, String> {
    let bad = || format!("invalid {what} {s:?} (a number 0-{max})");
    match number64(s).ok_or_else(bad)? {
        n if n <= u64::from(max) => Ok(n as u32),
        _ => Err(bad()),
    }
}

/// An unsigned 64-bit number as xtables reads one (decimal, `0x` hex, leading-`0` octal);
/// `None` when it is not one or does not fit.
pub(crate) fn number64(s: &str) -> Option<u64> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// `a`, `a:b`, `:b` or `a:` (the open ends 0 and `max`), as xtables' ranges.
pub(crate) fn range(s: &str, max: u32, what: &str) -> Result<(u32, u32), String> {
    match s.split_once(':') {
        None => {
            let n = number(s, max, what)?;
            Ok((n, n))
        }
        Some((a, b)) => {
            let lo = if a.is_empty() {
                0
            } else {
                number(a, max, what)?
            };
            let hi = if b.is_empty() {
                max
            } else {
                number(b, max, what)?
            };
            Ok((lo, hi))
        }
    }
}

/// `--tos value[/mask]` or a symbolic name (mask 0x3f, libxt_tos revision 1): `(value, mask)`.
pub(crate) fn tos(s: &str) -> Result<(u8, u8), String> {
    const NAMES: &[(&str, u8)] = &[
        ("Minimize-Delay", 0x10),
        ("Maximize-Throughput", 0x08),
        ("Maximize-Reliability", 0x04),
        ("Minimize-Cost", 0x02),
        ("Normal-Service", 0x00),
    ];
    if let Some(&(_, v)) = NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
        return Ok((v, 0x3f));
    }
    let (v, m) = match s.split_once('/') {
        Some((v, m)) => (v, Some(m)),
        None => (s, None),
    };
    let bad = |_| {
        format!(
            "invalid TOS {s:?} (a value 0-255 with an optional /mask, or one of \
             Minimize-Delay, Maximize-Throughput, Maximize-Reliability, Minimize-Cost, \
             Normal-Service)"
        )
    };
    let value = number(v, 255, "TOS").map_err(bad)? as u8;
    let mask = match m {
        Some(m) => number(m, 255, "TOS mask").map_err(bad)? as u8,
        None => 0xff,
    };
    Ok((value, mask))
}

/// `--dscp-class`: the class's DSCP value.
pub(crate) fn dscp_class(s: &str) -> Result<u8, String> {
    const CLASSES: &[(&str, u8)] = &[
        ("CS0", 0),
        ("CS1", 8),
        ("CS2", 16),
        ("CS3", 24),
        ("CS4", 32),
        ("CS5", 40),
        ("CS6", 48),
        ("CS7", 56),
        ("BE", 0),
        ("AF11", 10),
        ("AF12", 12),
        ("AF13", 14),
        ("AF21", 18),
        ("AF22", 20),
        ("AF23", 22),
        ("AF31", 26),
        ("AF32", 28),
        ("AF33", 30),
        ("AF41", 34),
        ("AF42", 36),
        ("AF43", 38),
        ("EF", 46),
    ];
    CLASSES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(s))
        .map(|&(_, v)| v)
        .ok_or_else(|| format!("invalid DSCP class {s:?} (one of BE, EF, CS0-CS7, AF11-AF43)"))
}

/// `--pkt-type`.
pub(crate) fn pkt_type(s: &str) -> Result<PktType, String> {
    match s.to_ascii_lowercase().as_str() {
        "unicast" | "host" => Ok(PktType::Unicast),
        "broadcast" | "bcast" => Ok(PktType::Broadcast),
        "multicast" | "mcast" => Ok(PktType::Multicast),
        "otherhost" | "outgoing" | "loopback" => Err(format!(
            "packet type {s} is not supported: Rampart sees only received frames, which are \
             unicast, broadcast or multicast"
        )),
        _ => Err(format!(
            "invalid packet type {s:?} (unicast, broadcast or multicast)"
        )),
    }
}

/// `--mac-source XX:XX:XX:XX:XX:XX` (one or two hex digits a byte).
pub(crate) fn mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || format!("invalid MAC address {s:?} (six hex bytes separated by colons)");
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        let p = parts.next().ok_or_else(bad)?;
        if p.is_empty() || p.len() > 2 || !p.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(out)
}

/// `--limit N[/second|/minute|/hour|/day]` (any prefix of the unit, as libxt_limit reads it):
/// the average interval in 1/10000 s.
pub(crate) fn rate(s: &str) -> Result<u32, String> {
    let bad = || {
        format!("invalid rate {s:?} (a number of packets per second, minute, hour or day: 3/min)")
    };
    let (n, unit) = match s.split_once('/') {
        Some((n, u)) => (n, Some(u)),
        None => (s, None),
    };
    let mult: u64 = match unit {
        None => 1,
        Some("") => return Err(bad()),
        Some(u) => {
            let u = u.to_ascii_lowercase();
            if "second".starts_with(&u) {
                1
            } else if "minute".starts_with(&u) {
                60
            } else if "hour".starts_with(&u) {
                3600
            } else if "day".starts_with(&u) {
                86400
            } else {
                return Err(bad());
            }
        }
    };
    if n.is_empty() || !n.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let r: u64 = n.parse().map_err(|_| bad())?;
    if r == 0 || r > u64::from(u32::MAX) {
        return Err(bad());
    }
    let avg = u64::from(checks::LIMIT_SCALE) * mult / r;
    if avg == 0 {
        return Err(format!("rate {s:?} is too fast (at most 10000/second)"));
    }
    u32::try_from(avg).map_err(|_| bad())
}

/// The address types of `-m addrtype`, as Linux's `RTN_*` numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AddrType {
    Unspec,
    Unicast,
    Local,
    Broadcast,
    Multicast,
}

/// `TYPE[,TYPE...]`.
pub(crate) fn addr_types(s: &str, family: Family) -> Result<Vec<AddrType>, String> {
    let mut out = Vec::new();
    for t in s.split(',') {
        let ty = match t.to_ascii_uppercase().as_str() {
            "UNSPEC" => AddrType::Unspec,
            "UNICAST" => AddrType::Unicast,
            "LOCAL" => AddrType::Local,
            "BROADCAST" if family == Family::V6 => {
                return Err(
                    "address type BROADCAST is not valid for IPv6 (Linux refuses it)".into(),
                )
            }
            "BROADCAST" => AddrType::Broadcast,
            "MULTICAST" => AddrType::Multicast,
            "ANYCAST" | "BLACKHOLE" | "UNREACHABLE" | "PROHIBIT" | "THROW" | "NAT" | "XRESOLVE" => {
                return Err(format!(
                    "address type {t} is not supported: it depends on routes of that kind, \
                     which Rampart's routing table does not have"
                ))
            }
            _ => {
                return Err(format!(
                    "invalid address type {t:?} (UNSPEC, UNICAST, LOCAL, BROADCAST or MULTICAST)"
                ))
            }
        };
        out.push(ty);
    }
    Ok(out)
}

fn v4(a: [u8; 4]) -> u128 {
    u128::from_be_bytes(IpAddr128::from_v4_octets(a).0)
}

fn v4_block(a: [u8; 4], len: u32) -> (u128, u128) {
    let lo = v4(a);
    (lo, lo | ((1u128 << (32 - len)) - 1))
}

fn v6_block(hi16: u128, len: u32) -> (u128, u128) {
    let lo = hi16;
    (lo, lo | ((1u128 << (128 - len)) - 1))
}

fn to_ranges(ivs: Vec<(u128, u128)>) -> Vec<AddrRange> {
    ivs.into_iter()
        .map(|(lo, hi)| AddrRange {
            lo: IpAddr128(lo.to_be_bytes()),
            hi: IpAddr128(hi.to_be_bytes()),
        })
        .collect()
}

/// The addresses whose type is one of `types` (IPv4: Linux's `inet_dev_addr_type`, a union)
/// or all of them (IPv6: `match_type6` requires each), looked up for port `dev` (`None`:
/// any device). Unsorted, possibly overlapping.
fn type_set(
    family: Family,
    types: &[AddrType],
    host: &HostAddrs,
    dev: Option<usize>,
) -> Vec<(u128, u128)> {
    let on_dev = |p: usize| dev.is_none_or(|d| d == p);
    let mine = |fam: Family| -> Vec<(usize, IfAddr)> {
        host.ports
            .iter()
            .enumerate()
            .flat_map(|(p, a)| a.iter().map(move |a| (p, *a)))
            .filter(|(_, a)| a.addr.is_v4() == (fam == Family::V4))
            .collect()
    };
    match family {
        Family::V4 => {
            // The local table: own addresses and the loopback block (LOCAL), the directed
            // broadcasts of own subnets and 127.255.255.255 (BROADCAST); 0.0.0.0/8 and
            // 255.255.255.255 are BROADCAST and 224.0.0.0/4 MULTICAST before any lookup;
            // every other address is UNICAST.
            let lo_dev = dev.is_none();
            let mut local = Vec::new();
            let mut bcast = vec![v4_block([0, 0, 0, 0], 8), v4_block([255; 4], 32)];
            if lo_dev {
                local.push(v4_block([127, 0, 0, 0], 8));
                bcast.push(v4_block([127, 255, 255, 255], 32));
            }
            for (p, a) in mine(Family::V4) {
                if !on_dev(p) {
                    continue;
                }
                let x = u128::from_be_bytes(a.addr.0);
                local.push((x, x));
                if a.len <= 30 {
                    let host_bits = (1u128 << (32 - u32::from(a.len))) - 1;
                    bcast.push((x | host_bits, x | host_bits));
                }
            }
            let multi = [v4_block([224, 0, 0, 0], 4)];
            let universe = (v4([0; 4]), v4([255; 4]));
            // Longest match: a directed broadcast or 127.255.255.255 is not LOCAL even inside
            // the loopback block.
            let local = super::compile::subtract(local, &bcast);
            let mut out = Vec::new();
            for t in types {
                match t {
                    AddrType::Local => out.extend(local.iter().copied()),
                    AddrType::Broadcast => out.extend(bcast.iter().copied()),
                    AddrType::Multicast => out.extend(multi.iter().copied()),
                    AddrType::Unicast => {
                        let mut not = local.clone();
                        not.extend(bcast.iter().copied());
                        not.extend(multi.iter().copied());
                        out.extend(super::compile::subtract(vec![universe], &not));
                    }
                    AddrType::Unspec => {}
                }
            }
            out
        }
        Family::V6 => {
            let all = (0u128, u128::MAX);
            let multi = v6_block(0xff << 120, 8);
            let mapped = v6_block(0xffff << 32, 96);
            let mut set = vec![all];
            for t in types {
                let allowed = match t {
                    AddrType::Multicast => vec![multi],
                    AddrType::Unicast => {
                        super::compile::subtract(vec![all], &[multi, (0, 0), mapped])
                    }
                    AddrType::Unspec => vec![(0, 0)],
                    AddrType::Local => {
                        let mut l: Vec<(u128, u128)> = mine(Family::V6)
                            .into_iter()
                            .filter(|(p, _)| on_dev(*p))
                            .map(|(_, a)| {
                                let x = u128::from_be_bytes(a.addr.0);
                                (x, x)
                            })
                            .collect();
                        if dev.is_none() {
                            l.push((1, 1));
                        }
                        l
                    }
                    AddrType::Broadcast => Vec::new(),
                };
                set = super::compile::intersect(&set, &allowed);
            }
            set
        }
    }
}

/// `-m addrtype`'s alternatives for one of `--src-type`/`--dst-type`: `(ports, addresses)`
/// pairs whose port masks split the ports, the condition holding where the packet's port
/// (in or out per `limit`) is in a mask and its address in that mask's set.
pub(crate) fn addr_type_alts(
    family: Family,
    types: &[AddrType],
    host: &HostAddrs,
    limit: bool,
    nports: usize,
) -> Vec<(PortMask, Vec<AddrRange>)> {
    if !limit {
        return vec![(ANY_PORT, to_ranges(type_set(family, types, host, None)))];
    }
    let mut out = Vec::new();
    let mut rest = ANY_PORT;
    for p in 0..nports.min(32) {
        out.push((1u32 << p, to_ranges(type_set(family, types, host, Some(p)))));
        rest &= !(1u32 << p);
    }
    if rest != 0 {
        // No configured port: only the address-class types can hold.
        out.push((
            rest,
            to_ranges(type_set(
                family,
                types,
                &HostAddrs::default(),
                Some(usize::MAX),
            )),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_rates() {
        assert_eq!(number("0x40", 255, "x"), Ok(64));
        assert_eq!(number("010", 255, "x"), Ok(8));
        assert!(number("256", 255, "x").is_err());
        assert!(number("", 255, "x").is_err());
        assert_eq!(range(":100", 65535, "x"), Ok((0, 100)));
        assert_eq!(range("100:", 65535, "x"), Ok((100, 65535)));
        assert_eq!(rate("3/min"), Ok(200_000));
        assert_eq!(rate("3/minute"), Ok(200_000));
        assert_eq!(rate("5/s"), Ok(2000));
        assert_eq!(rate("10"), Ok(1000));
        assert_eq!(rate("1/day"), Ok(864_000_000));
        assert!(rate("0/s").is_err() && rate("3/fortnight").is_err() && rate("20000/s").is_err());
        assert_eq!(tos("Minimize-Delay"), Ok((0x10, 0x3f)));
        assert_eq!(tos("0x10/0x3f"), Ok((0x10, 0x3f)));
        assert_eq!(tos("8"), Ok((8, 0xff)));
        assert_eq!(
            mac("0:1b:21:aa:BB:cc"),
            Ok([0, 0x1b, 0x21, 0xaa, 0xbb, 0xcc])
        );
        assert!(mac("00:1b:21:aa:bb").is_err() && mac("000:1b:21:aa:bb:cc").is_err());
    }
}
