//! Slow path: which connections a management request (`rampart ctl conntrack list`, `delete`,
//! `count`) selects, with the meaning conntrack-tools' filters have (`conntrack -L/-D` with
//! `-p`, `-s`, `-d`, `-r`, `-q`, the port options, `--state`, `-m`, `-u`, `-f`, `-n`, `-g`,
//! `-j`). Every condition given must hold (they AND together); a filter with none selects
//! every connection.

use super::tcp::TcpState;
use super::{ConnInfo, Dir};
use crate::wire::{Family, IpAddr128};

/// An address condition: the connection's address, masked by `mask`, equals `addr` masked
/// (as conntrack's `--mask-src`, which need not be a prefix; an IPv4 address and its mask
/// are the last 32 bits of the 128-bit form). It holds only for connections of `family`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    pub family: Family,
    pub addr: IpAddr128,
    pub mask: u128,
}

impl Net {
    /// `addr/prefix` (`prefix` counted in the family's own bits: at most 32 for IPv4).
    pub fn new(addr: std::net::IpAddr, prefix: u8) -> Net {
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let p = u32::from(prefix).min(width);
        let ones = if p == 0 { 0 } else { u128::MAX << (128 - p) };
        Net::with_mask(addr, ones >> (128 - width))
    }

    /// `addr` under `mask` (the family's own bits: the low 32 for IPv4); the address kept is
    /// the masked one.
    pub fn with_mask(addr: std::net::IpAddr, mask: u128) -> Net {
        let (family, mask) = match addr {
            std::net::IpAddr::V4(_) => (Family::V4, (mask & 0xffff_ffff) | !0xffff_ffffu128),
            std::net::IpAddr::V6(_) => (Family::V6, mask),
        };
        let a = u128::from_be_bytes(IpAddr128::from_std(addr).0) & mask;
        Net {
            family,
            addr: IpAddr128(a.to_be_bytes()),
            mask,
        }
    }

    /// Whether `a` (of `family`) is in the network.
    pub fn holds(&self, family: Family, a: &IpAddr128) -> bool {
        family == self.family
            && u128::from_be_bytes(a.0) & self.mask == u128::from_be_bytes(self.addr.0) & self.mask
    }

    /// The mask in the family's own bits.
    pub fn family_mask(&self) -> u128 {
        match self.family {
            Family::V4 => self.mask & 0xffff_ffff,
            Family::V6 => self.mask,
        }
    }

    /// The prefix length, when the mask is one.
    pub fn prefix(&self) -> Option<u8> {
        let (m, width) = match self.family {
            Family::V4 => (self.family_mask() << 96, 32),
            Family::V6 => (self.mask, 128),
        };
        let p = m.leading_ones();
        (m.checked_shl(p).unwrap_or(0) == 0).then_some(p.min(width) as u8)
    }
}

/// Status bits as Linux numbers them (`IPS_*`), for `-u/--status`.
pub mod status {
    pub const EXPECTED: u32 = 1 << 0;
    pub const SEEN_REPLY: u32 = 1 << 1;
    pub const ASSURED: u32 = 1 << 2;
    pub const FIXED_TIMEOUT: u32 = 1 << 10;
    pub const OFFLOAD: u32 = 1 << 14;
    pub const HW_OFFLOAD: u32 = 1 << 15;
}

/// What `-n/--src-nat`, `-g/--dst-nat` or `-j/--any-nat` asks of a translation: that there
/// is one, and, when given, the address and port it translates to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatTo {
    pub addr: Option<IpAddr128>,
    pub port: Option<u16>,
}

/// The NAT conditions (conntrack refuses `-j` with `-n` or `-g`; `-n` and `-g` together
/// both must hold).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatFilter {
    pub src: Option<NatTo>,
    pub dst: Option<NatTo>,
    pub any: Option<NatTo>,
}

/// What a conntrack management request selects. `Default` selects everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtFilter {
    /// `-f`, or the family of an address given.
    pub family: Option<Family>,
    /// `-p`: the layer-4 protocol number.
    pub proto: Option<u8>,
    /// `-s` (with a prefix or `--mask-src`), `-d`, `-r`, `-q`.
    pub orig_src: Option<Net>,
    pub orig_dst: Option<Net>,
    pub reply_src: Option<Net>,
    pub reply_dst: Option<Net>,
    /// `--sport`, `--dport`, `--reply-port-src`, `--reply-port-dst`.
    pub orig_sport: Option<u16>,
    pub orig_dport: Option<u16>,
    pub reply_sport: Option<u16>,
    pub reply_dport: Option<u16>,
    /// `--state` (TCP).
    pub tcp_state: Option<TcpState>,
    /// `-m MARK[/MASK]`: `mark & mask == value`.
    pub mark: Option<(u32, u32)>,
    /// `-u`: status bits that must be set, and bits that must be clear (`UNREPLIED`, `!NAME`).
    pub status_set: u32,
    pub status_clear: u32,
    pub nat: NatFilter,
    /// `-w/--zone`: the connection's zone id (`CT --zone`, in either direction; 0 selects the
    /// connections outside every zone).
    pub zone: Option<u16>,
    /// `--orig-zone`, `--reply-zone`: the zone id that applies to that direction's tuple (0
    /// where none does).
    pub orig_zone: Option<u16>,
    pub reply_zone: Option<u16>,
}

impl CtFilter {
    /// Whether the connection is selected.
    pub fn matches(&self, c: &ConnInfo) -> bool {
        let (o, r) = (&c.orig, &c.reply);
        let net = |n: &Option<Net>, a: &IpAddr128| n.is_none_or(|n| n.holds(o.family, a));
        let port = |p: Option<u16>, v: u16| p.is_none_or(|p| p == v);
        let status =
            u32::from(c.seen_reply) * status::SEEN_REPLY + u32::from(c.assured) * status::ASSURED;
        self.family.is_none_or(|f| f == o.family)
            && self.proto.is_none_or(|p| p == o.proto)
            && net(&self.orig_src, &o.src)
            && net(&self.orig_dst, &o.dst)
            && net(&self.reply_src, &r.src)
            && net(&self.reply_dst, &r.dst)
            && port(self.orig_sport, o.src_port)
            && port(self.orig_dport, o.dst_port)
            && port(self.reply_sport, r.src_port)
            && port(self.reply_dport, r.dst_port)
            && self.tcp_state.is_none_or(|s| c.tcp_state == Some(s))
            && self.mark.is_none_or(|(v, m)| c.mark & m == v)
            && status & self.status_set == self.status_set
            && status & self.status_clear == 0
            && self.zone.is_none_or(|z| c.zone.id() == z)
            && self.orig_zone.is_none_or(|z| c.zone.id_for(Dir::Orig) == z)
            && self
                .reply_zone
                .is_none_or(|z| c.zone.id_for(Dir::Reply) == z)
            && self.nat_matches(c)
    }

    /// conntrack's `filter_nat`: the source is translated when the reply's destination (or
    /// its port) is not the original source, the destination when the reply's source (or its
    /// port) is not the original destination; an address or port given must be the one the
    /// reply names. (libnetfilter_conntrack also wants Linux's `IPS_*_NAT_DONE` status, which
    /// every connection gets once the nat table is loaded; an ICMP query's type then reads as
    /// a changed port, so `-n` selects every ICMP connection there. Not followed: an ICMP
    /// query is translated here when its addresses or identifier are.)
    fn nat_matches(&self, c: &ConnInfo) -> bool {
        let n = &self.nat;
        if n.src.is_none() && n.dst.is_none() && n.any.is_none() {
            return true;
        }
        let (o, r) = (&c.orig, &c.reply);
        let side = |to: &NatTo,
                    addr_changed: bool,
                    port_changed: bool,
                    addr: &IpAddr128,
                    port: u16| {
            match (to.addr, to.port) {
                (None, None) => addr_changed || port_changed,
                (Some(a), None) => addr_changed && a == *addr,
                (None, Some(p)) => port_changed && p == port,
                (Some(a), Some(p)) => addr_changed && a == *addr && port_changed && p == port,
            }
        };
        // An ICMP query's identifier is the source "port" both ways (a source translation
        // may change it); its other "port" is the type, which differs between the directions.
        let (s_changed, s_port, d_changed, d_port) = if o.is_icmp() {
            (o.src_port != r.src_port, r.src_port, false, 0)
        } else {
            let (s, d) = (r.dst_port, r.src_port);
            (o.src_port != s, s, o.dst_port != d, d)
        };
        let snat = |to: &NatTo| side(to, o.src != r.dst, s_changed, &r.dst, s_port);
        let dnat = |to: &NatTo| side(to, o.dst != r.src, d_changed, &r.src, d_port);
        match n.any {
            Some(to) => snat(&to) || dnat(&to),
            None => n.src.is_none_or(|to| snat(&to)) && n.dst.is_none_or(|to| dnat(&to)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn nets_mask_and_keep_to_their_family() {
        let n = Net::new(a("10.1.0.0"), 16);
        assert_eq!(n.prefix(), Some(16));
        assert!(n.holds(Family::V4, &IpAddr128::from_std(a("10.1.200.3"))));
        assert!(!n.holds(Family::V4, &IpAddr128::from_std(a("10.2.0.1"))));
        // The mapped form of an IPv4 address is not an IPv6 connection's address.
        assert!(!n.holds(Family::V6, &IpAddr128::from_std(a("10.1.0.1"))));
        assert!(Net::new(a("0.0.0.0"), 0).holds(Family::V4, &IpAddr128::from_std(a("1.2.3.4"))));
        assert!(!Net::new(a("0.0.0.0"), 0).holds(Family::V6, &IpAddr128::from_std(a("::1"))));
        let one = Net::new(a("192.0.2.1"), 32);
        assert_eq!(one.prefix(), Some(32));
        assert!(!one.holds(Family::V4, &IpAddr128::from_std(a("192.0.2.0"))));
        // A mask that is no prefix (conntrack's --mask-src takes any).
        let odd = Net::with_mask(a("10.0.0.7"), 0xff00_00ff);
        assert_eq!(odd.prefix(), None);
        assert!(odd.holds(Family::V4, &IpAddr128::from_std(a("10.9.9.7"))));
        assert!(!odd.holds(Family::V4, &IpAddr128::from_std(a("10.9.9.8"))));
        let v6 = Net::new(a("2001:db8::"), 32);
        assert_eq!(v6.prefix(), Some(32));
        assert!(v6.holds(Family::V6, &IpAddr128::from_std(a("2001:db8:1::5"))));
        assert!(!v6.holds(Family::V6, &IpAddr128::from_std(a("2001:db9::5"))));
        assert_eq!(Net::new(a("::"), 0).prefix(), Some(0));
        assert_eq!(Net::new(a("::1"), 128).prefix(), Some(128));
    }

    #[test]
    fn an_icmp_query_is_translated_only_when_its_addresses_or_identifier_are() {
        let orig = crate::wire::FlowKey::new_v4(
            "10.0.0.4".parse().unwrap(),
            "203.0.113.10".parse().unwrap(),
            crate::wire::ip_proto::ICMP,
            77,
            0x0800,
        );
        let mut c = ConnInfo {
            id: super::super::EntryId(0),
            orig,
            reply: orig.reply(),
            tcp_state: None,
            seen_reply: true,
            assured: false,
            mark: 0,
            zone: super::super::zones::Zone::DEFAULT,
            timeout_left_ns: 1,
            packets: [1, 1],
            bytes: [1, 1],
        };
        let nat = |src, dst, any| CtFilter {
            nat: NatFilter { src, dst, any },
            ..CtFilter::default()
        };
        let some = Some(NatTo::default());
        for f in [
            nat(some, None, None),
            nat(None, some, None),
            nat(None, None, some),
        ] {
            assert!(!f.matches(&c), "{f:?}");
        }
        // Sent as 203.0.113.5 with identifier 99.
        c.reply.dst = IpAddr128::from_std(a("203.0.113.5"));
        c.reply.src_port = 99;
        let to = |port| {
            Some(NatTo {
                addr: Some(IpAddr128::from_std(a("203.0.113.5"))),
                port,
            })
        };
        assert!(nat(some, None, None).matches(&c));
        assert!(nat(to(Some(99)), None, None).matches(&c));
        assert!(!nat(to(Some(77)), None, None).matches(&c));
        assert!(!nat(None, some, None).matches(&c));
        assert!(nat(None, None, to(None)).matches(&c));
    }

    #[test]
    fn zones_select_as_conntrack_shows_them() {
        use super::super::zones::{Zone, DIR_BOTH, DIR_ORIG, DIR_REPLY};
        let orig = crate::wire::FlowKey::new_v4(
            "10.0.0.4".parse().unwrap(),
            "10.0.0.9".parse().unwrap(),
            crate::wire::ip_proto::UDP,
            5000,
            53,
        );
        let conn = |zone| ConnInfo {
            id: super::super::EntryId(0),
            orig,
            reply: orig.reply(),
            tcp_state: None,
            seen_reply: false,
            assured: false,
            mark: 0,
            zone,
            timeout_left_ns: 1,
            packets: [1, 0],
            bytes: [1, 0],
        };
        let f = |zone, orig_zone, reply_zone| CtFilter {
            zone,
            orig_zone,
            reply_zone,
            ..CtFilter::default()
        };
        let (none, both, only_orig, only_reply) = (
            conn(Zone::DEFAULT),
            conn(Zone::new(4097, DIR_BOTH)),
            conn(Zone::new(7, DIR_ORIG)),
            conn(Zone::new(7, DIR_REPLY)),
        );
        // -w N: the id in either direction; -w 0: no zone at all.
        assert!(f(Some(0), None, None).matches(&none));
        assert!(!f(Some(0), None, None).matches(&both));
        assert!(f(Some(4097), None, None).matches(&both));
        assert!(!f(Some(4098), None, None).matches(&both));
        assert!(f(Some(7), None, None).matches(&only_orig));
        assert!(f(Some(7), None, None).matches(&only_reply));
        // --orig-zone/--reply-zone: the id that applies to that direction's tuple.
        assert!(f(None, Some(7), None).matches(&only_orig));
        assert!(!f(None, Some(7), None).matches(&only_reply));
        assert!(f(None, Some(0), None).matches(&only_reply));
        assert!(f(None, None, Some(7)).matches(&only_reply));
        assert!(f(None, Some(4097), Some(4097)).matches(&both));
        assert!(!f(None, None, Some(4097)).matches(&none));
    }
}
