//! FAST PATH: no allocation, lock, syscall or log.
//!
//! The flow key: the 5-tuple plus address family, as conntrack hashes and compares it.
//!
//! Invariants:
//! - Addresses are 16 bytes; IPv4 addresses are stored v4-mapped (`::ffff:a.b.c.d`,
//!   RFC 4291 §2.5.5.2), so one key type serves both families. `family` disambiguates a real
//!   IPv6 packet carrying a v4-mapped address.
//! - TCP/UDP: `src_port`/`dst_port` are the L4 ports.
//! - ICMP/ICMPv6: `src_port` is the identifier for query types (echo, timestamp, info, address
//!   mask; ICMPv6 echo) and 0 otherwise; `dst_port` is `(type << 8) | code`. [`FlowKey::reply`]
//!   swaps the addresses and maps a query type to its reply type (and back), so the reply of a
//!   ping has the key `reply()` predicts.
//! - Other protocols, and non-first fragments: both ports 0.
//! - `FlowKey` is 38 bytes with no padding, so hashing it never reads uninitialised bytes.

use super::{icmpv4, icmpv6, ip_proto};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Address family of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Family {
    V4 = 4,
    V6 = 6,
}

/// A 16-byte IP address; IPv4 is stored v4-mapped. Ordered as its bytes are (the
/// address as a big-endian number).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IpAddr128(pub [u8; 16]);

impl Ord for IpAddr128 {
    /// The bytes' order, as two wide compares instead of the derived byte-by-byte loop
    /// (rule matching compares addresses with ranges on every rule it tries).
    #[inline]
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        u128::from_be_bytes(self.0).cmp(&u128::from_be_bytes(other.0))
    }
}

impl PartialOrd for IpAddr128 {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl IpAddr128 {
    pub const UNSPECIFIED: IpAddr128 = IpAddr128([0; 16]);

    #[inline]
    pub const fn from_v4(a: Ipv4Addr) -> IpAddr128 {
        let o = a.octets();
        IpAddr128([
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, o[0], o[1], o[2], o[3],
        ])
    }

    #[inline]
    pub const fn from_v6(a: Ipv6Addr) -> IpAddr128 {
        IpAddr128(a.octets())
    }

    /// From 4 raw bytes (IPv4) at no cost beyond the copy.
    #[inline]
    pub const fn from_v4_octets(o: [u8; 4]) -> IpAddr128 {
        IpAddr128([
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, o[0], o[1], o[2], o[3],
        ])
    }

    /// The mapped form of the IPv4 address whose four octets, in wire order, are `w` read
    /// little-endian (as a header's bytes loaded in one word): built as one 128-bit number,
    /// where [`IpAddr128::from_v4_octets`] of the word's bytes took the compiler a dozen
    /// byte moves and shifts.
    #[inline(always)]
    pub const fn from_v4_le_word(w: u32) -> IpAddr128 {
        IpAddr128(((w as u128) << 96 | 0xffff << 80).to_le_bytes())
    }

    #[inline]
    pub fn from_std(a: IpAddr) -> IpAddr128 {
        match a {
            IpAddr::V4(a) => Self::from_v4(a),
            IpAddr::V6(a) => Self::from_v6(a),
        }
    }

    /// Whether this is a v4-mapped address.
    #[inline]
    pub const fn is_v4(&self) -> bool {
        // The first twelve bytes are `::ffff`: one wide compare instead of twelve.
        u128::from_be_bytes(self.0) >> 32 == 0xffff
    }

    /// The IPv4 address, if v4-mapped.
    #[inline]
    pub const fn to_v4(&self) -> Option<Ipv4Addr> {
        if self.is_v4() {
            Some(Ipv4Addr::new(
                self.0[12], self.0[13], self.0[14], self.0[15],
            ))
        } else {
            None
        }
    }

    #[inline]
    pub fn to_v6(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.0)
    }

    /// `IpAddr::V4` when v4-mapped, else `IpAddr::V6`. Where the family is known, prefer
    /// [`FlowKey::src_ip`]/[`FlowKey::dst_ip`].
    #[inline]
    pub fn to_std(&self) -> IpAddr {
        match self.to_v4() {
            Some(a) => IpAddr::V4(a),
            None => IpAddr::V6(self.to_v6()),
        }
    }

    #[inline]
    pub const fn octets(&self) -> [u8; 16] {
        self.0
    }
}

impl From<Ipv4Addr> for IpAddr128 {
    #[inline]
    fn from(a: Ipv4Addr) -> IpAddr128 {
        Self::from_v4(a)
    }
}

impl From<Ipv6Addr> for IpAddr128 {
    #[inline]
    fn from(a: Ipv6Addr) -> IpAddr128 {
        Self::from_v6(a)
    }
}

impl From<IpAddr> for IpAddr128 {
    #[inline]
    fn from(a: IpAddr) -> IpAddr128 {
        Self::from_std(a)
    }
}

impl core::fmt::Display for IpAddr128 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.to_std().fmt(f)
    }
}

/// The flow key of one packet; see the module docs for the port conventions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: IpAddr128,
    pub dst: IpAddr128,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    pub family: Family,
}

const _: () = assert!(core::mem::size_of::<FlowKey>() == 38);

impl FlowKey {
    #[inline]
    pub const fn new_v4(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        proto: u8,
        src_port: u16,
        dst_port: u16,
    ) -> FlowKey {
        FlowKey {
            src: IpAddr128::from_v4(src),
            dst: IpAddr128::from_v4(dst),
            src_port,
            dst_port,
            proto,
            family: Family::V4,
        }
    }

    #[inline]
    pub const fn new_v6(
        src: Ipv6Addr,
        dst: Ipv6Addr,
        proto: u8,
        src_port: u16,
        dst_port: u16,
    ) -> FlowKey {
        FlowKey {
            src: IpAddr128::from_v6(src),
            dst: IpAddr128::from_v6(dst),
            src_port,
            dst_port,
            proto,
            family: Family::V6,
        }
    }

    #[inline]
    pub fn src_ip(&self) -> IpAddr {
        self.ip(&self.src)
    }

    #[inline]
    pub fn dst_ip(&self) -> IpAddr {
        self.ip(&self.dst)
    }

    #[inline]
    fn ip(&self, a: &IpAddr128) -> IpAddr {
        match self.family {
            Family::V4 => IpAddr::V4(Ipv4Addr::new(a.0[12], a.0[13], a.0[14], a.0[15])),
            Family::V6 => IpAddr::V6(a.to_v6()),
        }
    }

    /// Whether this is an ICMP flow of its family (ICMPv4 over IPv4, ICMPv6 over IPv6).
    /// (The family and the protocol as one 16-bit word against the two pairs' words: the
    /// compiler made the pair test a select of the family's protocol and a compare.)
    #[inline]
    pub const fn is_icmp(&self) -> bool {
        const V4_ICMP: u16 = (Family::V4 as u16) << 8 | ip_proto::ICMP as u16;
        const V6_ICMP: u16 = (Family::V6 as u16) << 8 | ip_proto::ICMPV6 as u16;
        let w = (self.family as u16) << 8 | self.proto as u16;
        w == V4_ICMP || w == V6_ICMP
    }

    /// The key the other direction of this flow carries: addresses swapped; TCP/UDP/other
    /// ports swapped; for ICMP the identifier kept and the type mapped query <-> reply.
    /// An involution: `k.reply().reply() == k`.
    #[inline]
    pub fn reply(&self) -> FlowKey {
        let (src_port, dst_port) = if self.is_icmp() {
            let [ty, code] = self.dst_port.to_be_bytes();
            let ty = match self.family {
                Family::V4 => icmpv4::reply_type(ty),
                Family::V6 => icmpv6::reply_type(ty),
            };
            (self.src_port, u16::from_be_bytes([ty, code]))
        } else {
            (self.dst_port, self.src_port)
        };
        FlowKey {
            src: self.dst,
            dst: self.src,
            src_port,
            dst_port,
            ..*self
        }
    }
}

/// The flow-key ports of an ICMP/ICMPv6 message: `(ident or 0, (type << 8) | code)`.
#[inline]
pub fn icmp_ports(family: Family, msg_type: u8, code: u8, ident: u16) -> (u16, u16) {
    let query = match family {
        Family::V4 => icmpv4::is_query(msg_type),
        Family::V6 => icmpv6::is_query(msg_type),
    };
    (
        if query { ident } else { 0 },
        u16::from_be_bytes([msg_type, code]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn v4_mapping() {
        let a = IpAddr128::from_v4(Ipv4Addr::new(192, 0, 2, 1));
        assert!(a.is_v4());
        assert_eq!(a.to_std(), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(a.to_v6(), "::ffff:192.0.2.1".parse::<Ipv6Addr>().unwrap());
        let b = IpAddr128::from_v6("2001:db8::1".parse().unwrap());
        assert!(!b.is_v4());
        assert_eq!(b.to_string(), "2001:db8::1");
        // A genuine IPv6 flow with a mapped address keeps its family.
        let k = FlowKey {
            family: Family::V6,
            ..FlowKey::new_v4(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 6, 1, 2)
        };
        assert!(k.src_ip().is_ipv6());
    }

    #[test]
    fn ping_reply_key() {
        let (s, d) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let (sp, dp) = icmp_ports(Family::V4, icmpv4::msg_type::ECHO_REQUEST, 0, 77);
        let req = FlowKey::new_v4(s, d, ip_proto::ICMP, sp, dp);
        let (sp, dp) = icmp_ports(Family::V4, icmpv4::msg_type::ECHO_REPLY, 0, 77);
        assert_eq!(req.reply(), FlowKey::new_v4(d, s, ip_proto::ICMP, sp, dp));
        assert_eq!(
            icmp_ports(Family::V6, icmpv6::msg_type::PACKET_TOO_BIG, 0, 0x1234),
            (0, 0x0200)
        );
        let tcp = FlowKey::new_v6(Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED, 6, 1000, 22);
        assert_eq!((tcp.reply().src_port, tcp.reply().dst_port), (22, 1000));
    }

    #[test]
    fn icmp_is_the_family_s_own() {
        for family in [Family::V4, Family::V6] {
            for proto in 0..=u8::MAX {
                let k = FlowKey {
                    proto,
                    family,
                    ..FlowKey::new_v4(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 0, 0, 0)
                };
                let want = matches!(
                    (family, proto),
                    (Family::V4, ip_proto::ICMP) | (Family::V6, ip_proto::ICMPV6)
                );
                assert_eq!(k.is_icmp(), want, "{family:?} {proto}");
            }
        }
    }

    proptest! {
        #[test]
        fn address_order_is_the_bytes_order(a in any::<[u8; 16]>(), b in any::<[u8; 16]>()) {
            prop_assert_eq!(IpAddr128(a).cmp(&IpAddr128(b)), a.cmp(&b));
        }

        #[test]
        fn v4_le_word_is_the_octets(o in any::<[u8; 4]>()) {
            prop_assert_eq!(IpAddr128::from_v4_le_word(u32::from_le_bytes(o)), IpAddr128::from_v4_octets(o));
        }

        #[test]
        fn v4_mapped_is_the_prefix(mut a in any::<[u8; 16]>(), mapped in any::<bool>()) {
            if mapped {
                a[..12].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
            }
            prop_assert_eq!(IpAddr128(a).is_v4(), a[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        }

        #[test]
        fn reply_is_involution(src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), proto in prop_oneof![Just(1u8), Just(6), Just(17), Just(58), any::<u8>()],
                               sp in any::<u16>(), dp in any::<u16>(), v6 in any::<bool>()) {
            let k = FlowKey { src: IpAddr128(src), dst: IpAddr128(dst), src_port: sp, dst_port: dp, proto,
                              family: if v6 { Family::V6 } else { Family::V4 } };
            prop_assert_eq!(k.reply().reply(), k);
        }
    }
}
