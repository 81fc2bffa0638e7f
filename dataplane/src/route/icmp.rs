//! FAST PATH (TTL decrement): no allocation, lock, syscall or log. The error builders run on
//! the rare path, into a caller buffer.
//!
//! The per-hop work on a forwarded packet and the ICMP errors a router sends about it:
//!
//! - [`decrement_ttl`]: IPv4 TTL (with the RFC 1624 header checksum update) or IPv6 hop limit;
//!   a packet arriving with 1 or 0 must not be forwarded (RFC 1812 §5.3.1, RFC 8200 §3).
//! - [`build_error`]: time exceeded in transit, destination unreachable (no route; host or
//!   address unreachable when resolution failed), fragmentation needed with the next-hop MTU
//!   (RFC 1191) and packet too big (RFC 8201, RFC 4443 §3.2). The error goes back out of the
//!   ingress port to the previous hop (Ethernet addresses swapped, VLAN tags kept), from the
//!   router's `src` address on that port, quoting the offending datagram as received: for
//!   IPv4 as much as keeps the error within 576 bytes (RFC 1812 §4.3.2.3; RFC 792's minimum is
//!   the header and 64 bits), for IPv6 as much as keeps it within the minimum MTU of 1280
//!   (RFC 4443 §2.4 (c)). Call it before decrementing the TTL.
//!
//! No error is sent (RFC 1812 §4.3.2.7, RFC 4443 §2.4 (e)) about an ICMP error, a non-first
//! fragment, a packet to a broadcast or multicast address (IPv6 packet too big excepted), or a
//! packet from an unspecified, multicast, broadcast or loopback source. Rate limiting (RFC 4443
//! §2.4 (f)) is the caller's: one token bucket per worker ahead of this function.

use crate::wire::checksum::{self, PseudoHeader};
use crate::wire::{icmpv4, icmpv6, ip_proto, Fragment, IpAddr128, PacketInfo, L3};
use std::net::{Ipv4Addr, Ipv6Addr};

/// The largest error frame: 1280 bytes of IPv6 plus Ethernet and two VLAN tags.
pub const MAX_ERROR: usize = 14 + 8 + 1280;

/// The TTL or hop limit ran out: answer with [`RouterError::TimeExceeded`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TtlExpired;

/// Decrements the TTL / hop limit of an IP packet, updating the IPv4 header checksum.
#[inline]
pub fn decrement_ttl(frame: &mut [u8], info: &PacketInfo) -> Result<(), TtlExpired> {
    let l3 = usize::from(info.l3_offset);
    match info.l3 {
        L3::Ipv4 => {
            let Some(h) = frame.get_mut(l3..l3 + 20) else {
                return Err(TtlExpired);
            };
            let ttl = h[8];
            if ttl <= 1 {
                return Err(TtlExpired);
            }
            let c = u16::from_be_bytes([h[10], h[11]]);
            h[8] = ttl - 1;
            h[10..12].copy_from_slice(&ttl_checksum(c).to_be_bytes());
            Ok(())
        }
        L3::Ipv6 => match frame.get_mut(l3 + 7) {
            Some(hop) if *hop > 1 => {
                *hop -= 1;
                Ok(())
            }
            _ => Err(TtlExpired),
        },
        _ => Ok(()),
    }
}

/// The IPv4 header checksum once the TTL (the high byte of its 16-bit word) is one less:
/// RFC 1624's `HC' = ~(~HC + ~m + m')` with `m' = m - 0x100`, where `~m + m'` is always
/// `0xfeff` (`checksum::update_u16` with that sum known; one fold suffices).
#[inline(always)]
fn ttl_checksum(c: u16) -> u16 {
    let s = u32::from(!c) + 0xfeff;
    !((s & 0xffff) + (s >> 16)) as u16
}

/// The errors a router sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouterError {
    /// TTL or hop limit exceeded in transit.
    TimeExceeded,
    /// No route to the destination (ICMP net unreachable, ICMPv6 no route).
    NoRoute,
    /// The next hop did not answer resolution (ICMP host unreachable, ICMPv6 address
    /// unreachable).
    Unreachable,
    /// The packet is larger than the out port's MTU (bytes of IP datagram) and may not be
    /// fragmented: IPv4 with DF set (fragmentation needed), or any IPv6 packet (packet too big).
    TooBig { mtu: u32 },
    /// Destination unreachable with the code a REJECT rule asked for (the family's own code:
    /// ICMP for IPv4, ICMPv6 for IPv6).
    Rejected { code: u8 },
    /// Time exceeded, fragment reassembly time exceeded (code 1): a datagram given up at the
    /// reassembly timeout, about its first fragment.
    ReassemblyTimeout,
}

impl RouterError {
    /// (type, code, rest-of-header word) for IPv4.
    fn v4(self) -> (u8, u8, u32) {
        match self {
            RouterError::TimeExceeded => (icmpv4::msg_type::TIME_EXCEEDED, 0, 0),
            RouterError::NoRoute => (icmpv4::msg_type::DEST_UNREACHABLE, 0, 0),
            RouterError::Unreachable => (icmpv4::msg_type::DEST_UNREACHABLE, 1, 0),
            // RFC 1191 §4: the next-hop MTU in the low 16 bits.
            RouterError::TooBig { mtu } => (icmpv4::msg_type::DEST_UNREACHABLE, 4, mtu.min(0xffff)),
            RouterError::Rejected { code } => (icmpv4::msg_type::DEST_UNREACHABLE, code, 0),
            RouterError::ReassemblyTimeout => (icmpv4::msg_type::TIME_EXCEEDED, 1, 0),
        }
    }

    fn v6(self) -> (u8, u8, u32) {
        match self {
            RouterError::TimeExceeded => (icmpv6::msg_type::TIME_EXCEEDED, 0, 0),
            RouterError::NoRoute => (icmpv6::msg_type::DEST_UNREACHABLE, 0, 0),
            RouterError::Unreachable => (icmpv6::msg_type::DEST_UNREACHABLE, 3, 0),
            RouterError::TooBig { mtu } => (icmpv6::msg_type::PACKET_TOO_BIG, 0, mtu),
            RouterError::Rejected { code } => (icmpv6::msg_type::DEST_UNREACHABLE, code, 0),
            RouterError::ReassemblyTimeout => (icmpv6::msg_type::TIME_EXCEEDED, 1, 0),
        }
    }
}

/// Whether an IPv4 datagram of `len` bytes with this info needs fragmentation-needed for `mtu`
/// (DF set and larger than the MTU); IPv6: larger than the MTU.
#[inline]
pub fn too_big(frame: &[u8], info: &PacketInfo, mtu: u32) -> bool {
    if u32::from(info.l3_len) <= mtu {
        return false;
    }
    match info.l3 {
        L3::Ipv4 => frame
            .get(usize::from(info.l3_offset) + 6)
            .is_some_and(|b| b & 0x40 != 0),
        L3::Ipv6 => true,
        _ => false,
    }
}

/// Writes the error `kind` about `frame` (parsed as `info`), from the router's address `src`,
/// into `out`; returns its length, or `None` when no error may be sent.
pub fn build_error(
    frame: &[u8],
    info: &PacketInfo,
    kind: RouterError,
    src: IpAddr128,
    out: &mut [u8; MAX_ERROR],
) -> Option<usize> {
    if matches!(info.frag, Fragment::Later { .. }) {
        return None;
    }
    let l2 = usize::from(info.l3_offset);
    let ip = frame.get(l2..info.l3_end())?;
    let v6 = match info.l3 {
        L3::Ipv4 => false,
        L3::Ipv6 => true,
        _ => return None,
    };
    let too_big_v6 = v6 && matches!(kind, RouterError::TooBig { .. });
    if frame.first()? & 1 != 0 && !too_big_v6 {
        return None; // multicast or broadcast frame
    }
    if is_error(info, ip, v6) {
        return None;
    }
    out[..l2].copy_from_slice(&frame[..l2]);
    out[..6].copy_from_slice(&frame[6..12]);
    out[6..12].copy_from_slice(&frame[..6]);
    let body = &mut out[l2..];
    let n = if v6 {
        error_v6(ip, kind, src.to_v6(), too_big_v6, body)?
    } else {
        error_v4(ip, kind, src.to_v4()?, body)?
    };
    Some(l2 + n)
}

/// An ICMP error (or an ICMP message whose type cannot be read).
fn is_error(info: &PacketInfo, ip: &[u8], v6: bool) -> bool {
    let proto = if v6 { ip_proto::ICMPV6 } else { ip_proto::ICMP };
    if info.proto() != Some(proto) {
        return false;
    }
    let off = usize::from(info.l4_offset.saturating_sub(info.l3_offset));
    match ip.get(off) {
        Some(&ty) if info.l4_offset != 0 => {
            if v6 {
                icmpv6::is_error(ty)
            } else {
                icmpv4::is_error(ty)
            }
        }
        _ => true,
    }
}

fn error_v4(ip: &[u8], kind: RouterError, src: Ipv4Addr, out: &mut [u8]) -> Option<usize> {
    let s = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let d = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    if d.is_broadcast()
        || d.is_multicast()
        || s.is_unspecified()
        || s.is_multicast()
        || s.is_broadcast()
        || s.is_loopback()
    {
        return None;
    }
    let quoted = ip.len().min(576 - 28);
    let msg = &mut out[20..28 + quoted];
    let (ty, code, rest) = kind.v4();
    msg[..8].fill(0);
    msg[0] = ty;
    msg[1] = code;
    msg[4..8].copy_from_slice(&rest.to_be_bytes());
    msg[8..].copy_from_slice(&ip[..quoted]);
    let c = checksum::checksum(msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    let total = 28 + quoted;
    let h = &mut out[..20];
    h.fill(0);
    h[0] = 0x45;
    // Linux's icmp_send: the quoted packet's TOS bits under precedence "internetwork control".
    h[1] = (ip[1] & 0x1e) | 0xc0;
    h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    h[8] = 64;
    h[9] = ip_proto::ICMP;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&s.octets());
    let c = checksum::checksum(h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    Some(total)
}

fn error_v6(
    ip: &[u8],
    kind: RouterError,
    src: Ipv6Addr,
    multicast_ok: bool,
    out: &mut [u8],
) -> Option<usize> {
    let s = Ipv6Addr::from(<[u8; 16]>::try_from(ip.get(8..24)?).ok()?);
    let d = Ipv6Addr::from(<[u8; 16]>::try_from(ip.get(24..40)?).ok()?);
    if (d.is_multicast() && !multicast_ok)
        || s.is_unspecified()
        || s.is_multicast()
        || s.is_loopback()
    {
        return None;
    }
    let quoted = ip.len().min(1280 - 48);
    let msg = &mut out[40..48 + quoted];
    let (ty, code, rest) = kind.v6();
    msg[..8].fill(0);
    msg[0] = ty;
    msg[1] = code;
    msg[4..8].copy_from_slice(&rest.to_be_bytes());
    msg[8..].copy_from_slice(&ip[..quoted]);
    let c = PseudoHeader::V6 { src, dst: s }.checksum(ip_proto::ICMPV6, msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    let h = &mut out[..40];
    h.fill(0);
    h[0] = 0x60;
    h[4..6].copy_from_slice(&((8 + quoted) as u16).to_be_bytes());
    h[6] = ip_proto::ICMPV6;
    h[7] = 64;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&s.octets());
    Some(48 + quoted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::{FrameSpec, IpSpec, L4Spec};
    use crate::wire::tcp::Flags;
    use crate::wire::{parse_frame, Family};
    use proptest::prelude::*;

    const ROUTER: [u8; 4] = [10, 0, 0, 1];

    /// The TTL's checksum update is RFC 1624's for every checksum, TTL and protocol.
    #[test]
    fn ttl_checksum_is_the_incremental_update() {
        for proto in [0u8, 1, 6, 17, 0xff] {
            for ttl in 2..=255u8 {
                let old = u16::from_be_bytes([ttl, proto]);
                let new = u16::from_be_bytes([ttl - 1, proto]);
                for c in 0..=u16::MAX {
                    assert_eq!(
                        ttl_checksum(c),
                        checksum::update_u16(c, old, new),
                        "{c:#x} {ttl}"
                    );
                }
            }
        }
    }

    fn v4_frame(ttl: u8, len: usize, df: bool) -> Vec<u8> {
        let mut ip = IpSpec::v4([10, 0, 0, 2].into(), [198, 51, 100, 7].into());
        if let IpSpec::V4 {
            ttl: t, dont_frag, ..
        } = &mut ip
        {
            *t = ttl;
            *dont_frag = df;
        }
        FrameSpec::new(ip, L4Spec::udp(1000, 53, &vec![0x5a; len])).build()
    }

    fn err(f: &[u8], kind: RouterError, src: IpAddr128) -> Option<Vec<u8>> {
        let info = parse_frame(f).unwrap();
        let mut out = [0u8; MAX_ERROR];
        build_error(f, &info, kind, src, &mut out).map(|n| out[..n].to_vec())
    }

    #[test]
    fn ttl_decrement_and_expiry() {
        let mut f = v4_frame(2, 10, false);
        let info = parse_frame(&f).unwrap();
        decrement_ttl(&mut f, &info).unwrap();
        assert_eq!(
            f,
            v4_frame(1, 10, false),
            "TTL and checksum as a fresh build"
        );
        assert_eq!(decrement_ttl(&mut f, &info), Err(TtlExpired));
        let mut z = v4_frame(0, 10, false);
        assert_eq!(decrement_ttl(&mut z, &info), Err(TtlExpired));
        let s: Ipv6Addr = "fd00::2".parse().unwrap();
        let mut ip = IpSpec::v6(s, "2001:db8::1".parse().unwrap());
        if let IpSpec::V6 { hop_limit, .. } = &mut ip {
            *hop_limit = 2;
        }
        let mut f6 = FrameSpec::new(ip, L4Spec::udp(1, 2, b"x")).build();
        let info6 = parse_frame(&f6).unwrap();
        decrement_ttl(&mut f6, &info6).unwrap();
        assert_eq!(f6[14 + 7], 1);
        assert_eq!(decrement_ttl(&mut f6, &info6), Err(TtlExpired));
    }

    #[test]
    fn time_exceeded_v4_quotes_and_verifies() {
        let f = v4_frame(1, 20, false);
        let r = err(
            &f,
            RouterError::TimeExceeded,
            IpAddr128::from_v4(ROUTER.into()),
        )
        .unwrap();
        let info = parse_frame(&r).unwrap();
        let k = info.flow.unwrap();
        assert_eq!(
            (k.src, k.dst),
            (
                IpAddr128::from_v4(ROUTER.into()),
                IpAddr128::from_v4([10, 0, 0, 2].into())
            )
        );
        let icmp = &r[34..];
        assert_eq!((icmp[0], icmp[1]), (11, 0));
        assert_eq!(checksum::checksum(icmp), 0);
        assert_eq!(&icmp[8..], &f[14..], "whole datagram quoted");
        assert_eq!(&r[..6], &f[6..12]);
        // TOS: precedence 6 over the quoted packet's TOS bits (Linux's icmp_send).
        assert_eq!(r[15], 0xc0);
        let mut g = f.clone();
        g[15] = 0xbb;
        g[24..26].fill(0);
        let c = checksum::checksum(&g[14..34]);
        g[24..26].copy_from_slice(&c.to_be_bytes());
        let r = err(
            &g,
            RouterError::TimeExceeded,
            IpAddr128::from_v4(ROUTER.into()),
        )
        .unwrap();
        assert_eq!(r[15], 0xda);
    }

    #[test]
    fn frag_needed_carries_the_mtu_and_bounds_the_quote() {
        let f = v4_frame(64, 1472, true);
        let info = parse_frame(&f).unwrap();
        assert!(too_big(&f, &info, 1400));
        assert!(!too_big(&f, &info, 1500));
        assert!(
            !too_big(&v4_frame(64, 1472, false), &info, 1400),
            "no DF: fragment instead"
        );
        let r = err(
            &f,
            RouterError::TooBig { mtu: 1400 },
            IpAddr128::from_v4(ROUTER.into()),
        )
        .unwrap();
        assert_eq!(r.len() - 14, 576);
        let icmp = &r[34..];
        assert_eq!((icmp[0], icmp[1]), (3, 4));
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1400);
        assert_eq!(checksum::checksum(icmp), 0);
        let nr = err(&f, RouterError::NoRoute, IpAddr128::from_v4(ROUTER.into())).unwrap();
        assert_eq!((nr[34], nr[35]), (3, 0));
        let hu = err(
            &f,
            RouterError::Unreachable,
            IpAddr128::from_v4(ROUTER.into()),
        )
        .unwrap();
        assert_eq!((hu[34], hu[35]), (3, 1));
    }

    #[test]
    fn v6_errors() {
        let s: Ipv6Addr = "fd00::2".parse().unwrap();
        let d: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let rtr: Ipv6Addr = "fd00::1".parse().unwrap();
        let f = FrameSpec::new(IpSpec::v6(s, d), L4Spec::tcp(1, 2, Flags::SYN)).build();
        for (kind, ty, code, rest) in [
            (RouterError::TimeExceeded, 3, 0, 0),
            (RouterError::NoRoute, 1, 0, 0),
            (RouterError::Unreachable, 1, 3, 0),
            (RouterError::TooBig { mtu: 1280 }, 2, 0, 1280),
        ] {
            let r = err(&f, kind, IpAddr128::from_v6(rtr)).unwrap();
            let info = parse_frame(&r).unwrap();
            assert_eq!(info.flow.unwrap().family, Family::V6);
            let m = &r[54..];
            assert_eq!((m[0], m[1]), (ty, code));
            assert_eq!(u32::from_be_bytes(m[4..8].try_into().unwrap()), rest);
            assert!(PseudoHeader::V6 { src: rtr, dst: s }.verify(ip_proto::ICMPV6, m));
            assert_eq!(&m[8..], &f[14..]);
        }
        let big = FrameSpec::new(IpSpec::v6(s, d), L4Spec::udp(1, 2, &[0; 2000])).build();
        let r = err(
            &big,
            RouterError::TooBig { mtu: 1500 },
            IpAddr128::from_v6(rtr),
        )
        .unwrap();
        assert_eq!(r.len() - 14, 1280);
        // Packet too big goes even about a multicast destination; other errors do not.
        let m = FrameSpec::new(
            IpSpec::v6(s, "ff0e::1".parse().unwrap()),
            L4Spec::udp(1, 2, &[0; 1400]),
        )
        .build();
        assert!(err(
            &m,
            RouterError::TooBig { mtu: 1280 },
            IpAddr128::from_v6(rtr)
        )
        .is_some());
        assert!(err(&m, RouterError::TimeExceeded, IpAddr128::from_v6(rtr)).is_none());
    }

    #[test]
    fn never_about_errors_fragments_or_broadcast() {
        let router = IpAddr128::from_v4(ROUTER.into());
        let icmp_err = FrameSpec::new(
            IpSpec::v4([10, 0, 0, 2].into(), [198, 51, 100, 7].into()),
            L4Spec::Icmp {
                ty: 3,
                code: 1,
                ident: 0,
                seq: 0,
                payload: vec![0; 28],
            },
        )
        .build();
        assert!(err(&icmp_err, RouterError::TimeExceeded, router).is_none());
        let ping = FrameSpec::new(
            IpSpec::v4([10, 0, 0, 2].into(), [198, 51, 100, 7].into()),
            L4Spec::icmp_echo(1, 1),
        )
        .build();
        assert!(err(&ping, RouterError::TimeExceeded, router).is_some());
        let frags = FrameSpec::new(
            IpSpec::v4([10, 0, 0, 2].into(), [198, 51, 100, 7].into()),
            L4Spec::udp(1, 2, &[0; 3000]),
        )
        .fragments(1400);
        assert!(err(&frags[0], RouterError::TimeExceeded, router).is_some());
        assert!(err(&frags[1], RouterError::TimeExceeded, router).is_none());
        let bcast = FrameSpec::new(
            IpSpec::v4([10, 0, 0, 2].into(), [255, 255, 255, 255].into()),
            L4Spec::udp(1, 2, b"x"),
        )
        .build();
        assert!(err(&bcast, RouterError::TimeExceeded, router).is_none());
        let lo = FrameSpec::new(
            IpSpec::v4([127, 0, 0, 1].into(), [198, 51, 100, 7].into()),
            L4Spec::udp(1, 2, b"x"),
        )
        .build();
        assert!(err(&lo, RouterError::TimeExceeded, router).is_none());
        // A v6 router address for a v4 packet: nothing rather than garbage.
        let f = v4_frame(1, 1, false);
        assert!(err(
            &f,
            RouterError::TimeExceeded,
            IpAddr128::from_v6(Ipv6Addr::LOCALHOST)
        )
        .is_none());
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..300), ttl_only in any::<bool>()) {
            let mut f = data.clone();
            if let Ok(info) = parse_frame(&data) {
                if ttl_only {
                    let _ = decrement_ttl(&mut f, &info);
                } else {
                    let mut out = [0u8; MAX_ERROR];
                    let _ = build_error(&data, &info, RouterError::TimeExceeded, IpAddr128::from_v4(ROUTER.into()), &mut out);
                }
            }
        }
    }
}
