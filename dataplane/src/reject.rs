//! The replies REJECT sends back out of the ingress port: a TCP reset or an ICMP/ICMPv6
//! destination unreachable, built the way Linux's nf_reject does in bridge mode (the reply's
//! source is the original destination, MAC addresses swapped, VLAN tags kept).
//!
//! No reply is sent for: a non-first fragment, a TCP segment that carries RST, a TCP segment with
//! a bad checksum, an ICMP error (never answer an error with an error), or a broadcast/multicast
//! destination. Rare path: called only when a REJECT rule matched.

use crate::classify::RejectWith;
use crate::wire::checksum::{self, PseudoHeader};
use crate::wire::{icmpv4, icmpv6, ip_proto, Fragment, PacketInfo, L3};
use std::net::{Ipv4Addr, Ipv6Addr};

/// The largest reply: ICMPv4 errors carry at most 576 bytes of IP (RFC 1812 4.3.2.3), ICMPv6 at
/// most 1280 (RFC 4443 2.4(c)); plus Ethernet and two VLAN tags.
pub const MAX_REPLY: usize = 14 + 8 + 1280;

/// Writes the reply to `frame` (parsed as `info`) into `out`; returns its length, or `None` when
/// no reply must be sent.
pub fn build_reply(
    frame: &[u8],
    info: &PacketInfo,
    with: RejectWith,
    out: &mut [u8; MAX_REPLY],
) -> Option<usize> {
    if matches!(info.frag, Fragment::Later { .. }) || frame.len() < usize::from(info.l3_offset) {
        return None;
    }
    if frame[0] & 1 != 0 {
        return None; // broadcast or multicast destination MAC
    }
    let l2 = usize::from(info.l3_offset);
    // Ethernet (and tags): swap the addresses, keep the rest.
    out[..l2].copy_from_slice(&frame[..l2]);
    out[..6].copy_from_slice(&frame[6..12]);
    out[6..12].copy_from_slice(&frame[..6]);
    let ip = &frame[l2..info.l3_end().min(frame.len())];
    let body = &mut out[l2..];
    let n = match (info.l3, with) {
        (L3::Ipv4, RejectWith::TcpReset) => tcp_reset_v4(ip, info, body)?,
        (L3::Ipv6, RejectWith::TcpReset) => tcp_reset_v6(ip, info, body)?,
        (L3::Ipv4, w) => icmp_v4(ip, info, icmp_code_v4(w)?, body)?,
        (L3::Ipv6, w) => icmp_v6(ip, info, icmp_code_v6(w)?, body)?,
        _ => return None,
    };
    Some(l2 + n)
}

pub(crate) fn icmp_code_v4(w: RejectWith) -> Option<u8> {
    Some(match w {
        RejectWith::IcmpNetUnreachable => 0,
        RejectWith::IcmpHostUnreachable => 1,
        RejectWith::IcmpProtoUnreachable => 2,
        RejectWith::IcmpPortUnreachable => 3,
        RejectWith::IcmpNetProhibited => 9,
        RejectWith::IcmpHostProhibited => 10,
        RejectWith::IcmpAdminProhibited => 13,
        // An ICMPv6 type on an IPv4 packet: the compiler never produces it.
        _ => return None,
    })
}

pub(crate) fn icmp_code_v6(w: RejectWith) -> Option<u8> {
    Some(match w {
        RejectWith::Icmp6NoRoute => 0,
        RejectWith::Icmp6AdmProhibited => 1,
        RejectWith::Icmp6AddrUnreachable => 3,
        RejectWith::Icmp6PortUnreachable => 4,
        _ => return None,
    })
}

fn v4_addrs(ip: &[u8]) -> (Ipv4Addr, Ipv4Addr) {
    (
        Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
    )
}

fn v6_addrs(ip: &[u8]) -> (Ipv6Addr, Ipv6Addr) {
    let a: [u8; 16] = ip[8..24].try_into().unwrap_or([0; 16]);
    let b: [u8; 16] = ip[24..40].try_into().unwrap_or([0; 16]);
    (a.into(), b.into())
}

/// A 20-byte IPv4 header from `src` to `dst`.
fn ipv4_header(out: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, proto: u8, total: usize) {
    out[..20].fill(0);
    out[0] = 0x45;
    out[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    out[6] = 0x40; // DF
    out[8] = 64;
    out[9] = proto;
    out[12..16].copy_from_slice(&src.octets());
    out[16..20].copy_from_slice(&dst.octets());
    let c = checksum::checksum(&out[..20]);
    out[10..12].copy_from_slice(&c.to_be_bytes());
}

fn ipv6_header(out: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: usize) {
    out[..40].fill(0);
    out[0] = 0x60;
    out[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
    out[6] = next;
    out[7] = 64; // hop limit
    out[8..24].copy_from_slice(&src.octets());
    out[24..40].copy_from_slice(&dst.octets());
}

/// The TCP reset for a segment: RFC 9293 3.10.7.1 (ACK set: seq = its ack; else seq 0 and ack
/// = seq + length), only for a segment that is not itself a reset and has a valid checksum.
fn tcp_reset(seg: &[u8], pseudo: &PseudoHeader, out: &mut [u8]) -> Option<()> {
    if seg.len() < 20 || !pseudo.verify(ip_proto::TCP, seg) {
        return None;
    }
    let flags = seg[13];
    if flags & 0x04 != 0 {
        return None;
    }
    let seq = u32::from_be_bytes(seg[4..8].try_into().ok()?);
    let ack = u32::from_be_bytes(seg[8..12].try_into().ok()?);
    let hdr = usize::from(seg[12] >> 4) * 4;
    let data = seg.len().saturating_sub(hdr) as u32;
    out[..20].fill(0);
    out[0..2].copy_from_slice(&seg[2..4]);
    out[2..4].copy_from_slice(&seg[0..2]);
    if flags & 0x10 != 0 {
        out[4..8].copy_from_slice(&ack.to_be_bytes());
        out[13] = 0x04;
    } else {
        let len = data + u32::from(flags & 0x02 != 0) + u32::from(flags & 0x01 != 0);
        out[8..12].copy_from_slice(&seq.wrapping_add(len).to_be_bytes());
        out[13] = 0x14;
    }
    out[12] = 5 << 4;
    Some(())
}

fn tcp_reset_v4(ip: &[u8], info: &PacketInfo, out: &mut [u8]) -> Option<usize> {
    if info.proto() != Some(ip_proto::TCP) || info.l4_offset == 0 {
        return None;
    }
    let seg = &ip[usize::from(info.l4_offset - info.l3_offset)..];
    let (src, dst) = v4_addrs(ip);
    tcp_reset(seg, &PseudoHeader::V4 { src, dst }, &mut out[20..])?;
    let c = PseudoHeader::V4 { src: dst, dst: src }.checksum(ip_proto::TCP, &out[20..40]);
    out[36..38].copy_from_slice(&c.to_be_bytes());
    ipv4_header(out, dst, src, ip_proto::TCP, 40);
    Some(40)
}

fn tcp_reset_v6(ip: &[u8], info: &PacketInfo, out: &mut [u8]) -> Option<usize> {
    if info.proto() != Some(ip_proto::TCP) || info.l4_offset == 0 {
        return None;
    }
    let seg = &ip[usize::from(info.l4_offset - info.l3_offset)..];
    let (src, dst) = v6_addrs(ip);
    tcp_reset(seg, &PseudoHeader::V6 { src, dst }, &mut out[40..])?;
    let c = PseudoHeader::V6 { src: dst, dst: src }.checksum(ip_proto::TCP, &out[40..60]);
    out[56..58].copy_from_slice(&c.to_be_bytes());
    ipv6_header(out, dst, src, ip_proto::TCP, 20);
    Some(60)
}

/// True for an ICMP error (or an unparsable ICMP message, which gets no reply either).
fn is_icmp_error(info: &PacketInfo, ip: &[u8], v6: bool) -> bool {
    let proto = if v6 { ip_proto::ICMPV6 } else { ip_proto::ICMP };
    if info.proto() != Some(proto) {
        return false;
    }
    let off = usize::from(info.l4_offset.saturating_sub(info.l3_offset));
    match ip.get(off) {
        Some(&ty) if v6 => icmpv6::is_error(ty) || info.l4_offset == 0,
        Some(&ty) => icmpv4::is_error(ty) || info.l4_offset == 0,
        None => true,
    }
}

fn icmp_v4(ip: &[u8], info: &PacketInfo, code: u8, out: &mut [u8]) -> Option<usize> {
    if is_icmp_error(info, ip, false) {
        return None;
    }
    let (src, dst) = v4_addrs(ip);
    if dst.is_broadcast() || dst.is_multicast() || src.is_unspecified() || src.is_multicast() {
        return None;
    }
    let quoted = ip.len().min(576 - 28);
    let msg = &mut out[20..28 + quoted];
    msg[..8].fill(0);
    msg[0] = icmpv4::msg_type::DEST_UNREACHABLE;
    msg[1] = code;
    msg[8..].copy_from_slice(&ip[..quoted]);
    let c = checksum::checksum(msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4_header(out, dst, src, ip_proto::ICMP, 28 + quoted);
    Some(28 + quoted)
}

fn icmp_v6(ip: &[u8], info: &PacketInfo, code: u8, out: &mut [u8]) -> Option<usize> {
    if is_icmp_error(info, ip, true) {
        return None;
    }
    let (src, dst) = v6_addrs(ip);
    if dst.is_multicast() || src.is_unspecified() || src.is_multicast() {
        return None;
    }
    let quoted = ip.len().min(1280 - 48);
    let msg = &mut out[40..48 + quoted];
    msg[..8].fill(0);
    msg[0] = icmpv6::msg_type::DEST_UNREACHABLE;
    msg[1] = code;
    msg[8..].copy_from_slice(&ip[..quoted]);
    let c = PseudoHeader::V6 { src: dst, dst: src }.checksum(ip_proto::ICMPV6, msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    ipv6_header(out, dst, src, ip_proto::ICMPV6, 8 + quoted);
    Some(48 + quoted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::{FrameSpec, IpSpec, L4Spec};
    use crate::wire::parse_frame;
    use crate::wire::tcp::Flags;

    fn reply(frame: &[u8], with: RejectWith) -> Option<Vec<u8>> {
        let info = parse_frame(frame).unwrap();
        let mut out = [0u8; MAX_REPLY];
        build_reply(frame, &info, with, &mut out).map(|n| out[..n].to_vec())
    }

    fn v4(l4: L4Spec) -> Vec<u8> {
        FrameSpec::new(IpSpec::v4([192, 0, 2, 1].into(), [10, 0, 0, 5].into()), l4).build()
    }

    #[test]
    fn tcp_reset_answers_a_syn_with_rst_ack() {
        let mut l4 = L4Spec::tcp(40000, 23, Flags::SYN);
        if let L4Spec::Tcp { seq, .. } = &mut l4 {
            *seq = 1000;
        }
        let f = v4(l4);
        let r = reply(&f, RejectWith::TcpReset).unwrap();
        let info = parse_frame(&r).expect("the reply parses");
        let k = info.flow.unwrap();
        assert_eq!(
            (k.src.to_std().to_string(), k.dst.to_std().to_string()),
            ("10.0.0.5".into(), "192.0.2.1".into())
        );
        assert_eq!((k.src_port, k.dst_port), (23, 40000));
        let tcp = &r[34..];
        assert_eq!(tcp[13], 0x14, "RST|ACK");
        assert_eq!(
            u32::from_be_bytes(tcp[8..12].try_into().unwrap()),
            1001,
            "acks the SYN"
        );
        let (s, d) = (Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(192, 0, 2, 1));
        assert!(PseudoHeader::V4 { src: s, dst: d }.verify(ip_proto::TCP, tcp));
        assert_eq!(&r[..6], &f[6..12], "MACs swapped");
    }

    #[test]
    fn tcp_reset_to_an_ack_uses_its_ack_number_and_never_answers_rst() {
        let mut l4 = L4Spec::tcp(40000, 23, Flags::ACK);
        if let L4Spec::Tcp { ack, .. } = &mut l4 {
            *ack = 777;
        }
        let r = reply(&v4(l4), RejectWith::TcpReset).unwrap();
        assert_eq!(r[34 + 13], 0x04);
        assert_eq!(u32::from_be_bytes(r[38..42].try_into().unwrap()), 777);
        assert!(reply(&v4(L4Spec::tcp(1, 2, Flags::RST)), RejectWith::TcpReset).is_none());
        let mut bad = v4(L4Spec::tcp(1, 2, Flags::SYN));
        bad[14 + 20 + 16] ^= 0xff; // TCP checksum
        assert!(
            reply(&bad, RejectWith::TcpReset).is_none(),
            "no reset for a corrupt segment"
        );
    }

    #[test]
    fn icmp_port_unreachable_quotes_the_datagram() {
        let f = v4(L4Spec::udp(5000, 53, b"query"));
        let r = reply(&f, RejectWith::IcmpPortUnreachable).unwrap();
        let info = parse_frame(&r).unwrap();
        assert_eq!(info.proto(), Some(ip_proto::ICMP));
        let icmp = &r[34..];
        assert_eq!((icmp[0], icmp[1]), (3, 3));
        assert_eq!(
            &icmp[8..],
            &f[14..],
            "the whole original datagram is quoted"
        );
        assert_eq!(checksum::checksum(icmp), 0, "valid ICMP checksum");
        assert!(reply(
            &v4(L4Spec::Icmp {
                ty: 3,
                code: 1,
                ident: 0,
                seq: 0,
                payload: vec![0; 28]
            }),
            RejectWith::IcmpPortUnreachable
        )
        .is_none());
        let big = v4(L4Spec::udp(5000, 53, &[7; 1400]));
        let r = reply(&big, RejectWith::IcmpHostProhibited).unwrap();
        assert_eq!(r.len() - 14, 576, "IPv4 error bounded to 576 bytes");
        assert_eq!(r[34 + 1], 10);
    }

    #[test]
    fn icmpv6_and_v6_resets() {
        let s: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let d: Ipv6Addr = "fd00::5".parse().unwrap();
        let f = FrameSpec::new(IpSpec::v6(s, d), L4Spec::udp(1, 2, b"x")).build();
        let r = reply(&f, RejectWith::Icmp6AdmProhibited).unwrap();
        let info = parse_frame(&r).unwrap();
        assert_eq!(info.proto(), Some(ip_proto::ICMPV6));
        assert_eq!((r[54], r[55]), (1, 1));
        assert!(PseudoHeader::V6 { src: d, dst: s }.verify(ip_proto::ICMPV6, &r[54..]));
        let t = FrameSpec::new(IpSpec::v6(s, d), L4Spec::tcp(1, 22, Flags::SYN)).build();
        let r = reply(&t, RejectWith::TcpReset).unwrap();
        assert!(PseudoHeader::V6 { src: d, dst: s }.verify(ip_proto::TCP, &r[54..]));
        assert!(
            reply(&f, RejectWith::IcmpPortUnreachable).is_none(),
            "a v4 code on a v6 packet"
        );
    }

    #[test]
    fn fragments_and_multicast_get_nothing() {
        let spec = FrameSpec::new(
            IpSpec::v4([192, 0, 2, 1].into(), [10, 0, 0, 5].into()),
            L4Spec::udp(1, 2, &[0; 3000]),
        );
        let frags = spec.fragments(1400);
        assert!(reply(&frags[1], RejectWith::IcmpPortUnreachable).is_none());
        assert!(reply(&frags[0], RejectWith::IcmpPortUnreachable).is_some());
        let m = FrameSpec::new(
            IpSpec::v4([192, 0, 2, 1].into(), [224, 0, 0, 5].into()),
            L4Spec::udp(1, 2, b"x"),
        )
        .build();
        assert!(reply(&m, RejectWith::IcmpPortUnreachable).is_none());
    }
}
