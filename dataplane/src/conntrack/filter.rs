//! Slow path: which connections a management request (`rampart ctl conntrack list`, `delete`,
//! `count`) selects, with the meaning conntrack-tools' filters have (`conntrack -L/-D` with
//! `-p`, `-s`, `-d`, `-r`, `-q`, the port options, `--state`, `-m`, `-u`, `-f`, `-n`, `-g`,
//! `-j`). Every condition given must hold (they AND together); a filter with none selects
//! every connection.

use super::tcp::TcpState;
use super::ConnInfo;
use crate::wire::{Family, IpAddr128};

/// An address condition: the connection's address equals `addr` in its first `bits` bits
/// (of the 128-bit form, where an IPv4 address is the last 32; a single address has all 128).
/// It holds only for connections of `family`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    pub family: Family,
    pub addr: IpAddr128,
    pub bits: u8,
}

impl Net {
    /// `addr/prefix` (`prefix` counted in the family's own bits: at most 32 for IPv4).
    pub fn new(addr: std::net::IpAddr, prefix: u8) -> Net {
        let (family, bits) = match addr {
            std::net::IpAddr::V4(_) => (Family::V4, 96 + prefix.min(32)),
            std::net::IpAddr::V6(_) => (Family::V6, prefix.min(128)),
        };
        Net {
            family,
            addr: IpAddr128::from_std(addr),
            bits,
        }
    }

    fn mask(&self) -> u128 {
        match self.bits {
            0 => 0,
            b => u128::MAX << (128 - u32::from(b)),
        }
    }

    /// Whether `a` (of `family`) is in the network.
    pub fn holds(&self, family: Family, a: &IpAddr128) -> bool {
        let m = self.mask();
        family == self.family
            && u128::from_be_bytes(a.0) & m == u128::from_be_bytes(self.addr.0) & m
    }

    /// The prefix length in the family's own bits.
    pub fn prefix(&self) -> u8 {
        match self.family {
            Family::V4 => self.bits - 96,
            Family::V6 => self.bits,
        }
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

/// `-n/--src-nat`, `-g/--dst-nat`, `-j/--any-nat`, each with an optional address and port
/// the translation must have used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatFilter {
    /// `-n`: the source is translated (to `addr`/`port` when given).
    pub src: bool,
    /// `-g`: the destination is translated (to `addr`/`port` when given).
    pub dst: bool,
    /// `-j`: either is (conntrack refuses `-j` with `-n` or `-g`).
    pub any: bool,
    pub addr: Option<IpAddr128>,
    pub port: Option<u16>,
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
    /// `-w/--zone`: not parsed yet; kept here so the zone filter lands without changing the
    /// type's users. `Some` selects nothing until connections carry a zone.
    pub zone: Option<u16>,
}

impl CtFilter {
    /// Whether the connection is selected.
    pub fn matches(&self, c: &ConnInfo) -> bool {
        let (o, r) = (&c.orig, &c.reply);
        let net = |n: &Option<Net>, a: &IpAddr128| n.is_none_or(|n| n.holds(o.family, a));
        let port = |p: Option<u16>, v: u16| p.is_none_or(|p| p == v);
        let status = u32::from(c.seen_reply) * status::SEEN_REPLY
            + u32::from(c.assured) * status::ASSURED;
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
            && self.zone.is_none()
            && self.nat_matches(c)
    }

    /// conntrack's `filter_nat`: the source is translated when the reply's destination (or
    /// its port) is not the original source, the destination when the reply's source (or its
    /// port) is not the original destination; an address or port given must be the one the
    /// reply names.
    fn nat_matches(&self, c: &ConnInfo) -> bool {
        let n = &self.nat;
        if !(n.src || n.dst || n.any) {
            return true;
        }
        let (o, r) = (&c.orig, &c.reply);
        let side = |addr_changed: bool, port_changed: bool, addr: &IpAddr128, port: u16| {
            match (n.addr, n.port) {
                (None, None) => addr_changed || port_changed,
                (Some(a), None) => addr_changed && a == *addr,
                (None, Some(p)) => port_changed && p == port,
                (Some(a), Some(p)) => addr_changed && a == *addr && port_changed && p == port,
            }
        };
        let snat = side(o.src != r.dst, o.src_port != r.dst_port, &r.dst, r.dst_port);
        let dnat = side(o.dst != r.src, o.dst_port != r.src_port, &r.src, r.src_port);
        if n.any {
            snat || dnat
        } else {
            (!n.src || snat) && (!n.dst || dnat)
        }
    }
}
