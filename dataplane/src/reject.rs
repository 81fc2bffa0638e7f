//! The replies REJECT sends back out of the ingress port: a TCP reset or an ICMP/ICMPv6
//! destination unreachable, built the way Linux's nf_reject does in bridge mode (the reply's
//! source is the original destination, MAC addresses swapped, VLAN tags kept).
//!
//! No reply is sent for: a non-first fragment, a TCP segment that carries RST, a TCP segment with
//! a bad checksum, an ICMP error (never answer an error with an error), or a broadcast/multicast
//! destination. Rare path: called only when a REJECT rule matched.

use crate::classify::RejectWith;
use crate::conntrack::frag::{v6_fragment_header, Whole};
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
    build_reply_of(frame, info, with, None, out)
}

/// [`build_reply`] for a reassembled datagram: `frame` is its start as [`reassembled`] wrote
/// it (parsed as `info`), `whole` what its fragments told. A TCP reset takes the segment's
/// length and checksum verdict from `whole`, as `nf_send_reset` reads the reassembled skb.
pub fn build_reply_whole(
    frame: &[u8],
    info: &PacketInfo,
    whole: Whole,
    with: RejectWith,
    out: &mut [u8; MAX_REPLY],
) -> Option<usize> {
    build_reply_of(frame, info, with, Some(whole), out)
}

fn build_reply_of(
    frame: &[u8],
    info: &PacketInfo,
    with: RejectWith,
    whole: Option<Whole>,
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
        (L3::Ipv4, RejectWith::TcpReset) => tcp_reset_v4(ip, info, whole, body)?,
        (L3::Ipv6, RejectWith::TcpReset) => tcp_reset_v6(ip, info, whole, body)?,
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
/// `whole`: the segment was reassembled, `seg` is its start; its length and checksum verdict
/// are the whole datagram's.
fn tcp_reset(
    seg: &[u8],
    pseudo: &PseudoHeader,
    whole: Option<(usize, bool)>,
    out: &mut [u8],
) -> Option<()> {
    if seg.len() < 20 {
        return None;
    }
    let (seg_len, ok) = match whole {
        Some(w) => w,
        None => (seg.len(), pseudo.verify(ip_proto::TCP, seg)),
    };
    if !ok {
        return None;
    }
    let flags = seg[13];
    if flags & 0x04 != 0 {
        return None;
    }
    let seq = u32::from_be_bytes(seg[4..8].try_into().ok()?);
    let ack = u32::from_be_bytes(seg[8..12].try_into().ok()?);
    let hdr = usize::from(seg[12] >> 4) * 4;
    let data = seg_len.saturating_sub(hdr) as u32;
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

fn tcp_reset_v4(
    ip: &[u8],
    info: &PacketInfo,
    whole: Option<Whole>,
    out: &mut [u8],
) -> Option<usize> {
    if info.proto() != Some(ip_proto::TCP) || info.l4_offset == 0 {
        return None;
    }
    let l4 = usize::from(info.l4_offset - info.l3_offset);
    let seg = &ip[l4..];
    let whole = whole.map(|w| ((w.len as usize).saturating_sub(l4), w.csum_ok));
    let (src, dst) = v4_addrs(ip);
    tcp_reset(seg, &PseudoHeader::V4 { src, dst }, whole, &mut out[20..])?;
    let c = PseudoHeader::V4 { src: dst, dst: src }.checksum(ip_proto::TCP, &out[20..40]);
    out[36..38].copy_from_slice(&c.to_be_bytes());
    ipv4_header(out, dst, src, ip_proto::TCP, 40);
    Some(40)
}

fn tcp_reset_v6(
    ip: &[u8],
    info: &PacketInfo,
    whole: Option<Whole>,
    out: &mut [u8],
) -> Option<usize> {
    if info.proto() != Some(ip_proto::TCP) || info.l4_offset == 0 {
        return None;
    }
    let l4 = usize::from(info.l4_offset - info.l3_offset);
    let seg = &ip[l4..];
    let whole = whole.map(|w| ((w.len as usize).saturating_sub(l4), w.csum_ok));
    let (src, dst) = v6_addrs(ip);
    tcp_reset(seg, &PseudoHeader::V6 { src, dst }, whole, &mut out[40..])?;
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

/// Writes into `out` the start of the datagram reassembled from `first` (its first fragment,
/// parsed as `info`) and `rest` (its other fragments, in offset order), as Linux's defrag
/// leaves it for the tables and for the errors about it (`ip_frag_reasm`,
/// `nf_ct_frag6_reasm`): IPv4 with the whole length, the fragment bits clear (DF kept) and
/// the header checksum made again; IPv6 without the Fragment header (the header before it
/// takes its next header value) and with the whole payload length. Returns the bytes written
/// (as much of the datagram as `out` holds: more than any reply quotes) and their parse: an
/// unfragmented datagram whose `l3_len` is what was written. Cold: only for a REJECT of a
/// reassembled datagram; nothing is copied otherwise.
#[cold]
#[inline(never)]
pub fn reassembled<'a>(
    first: &[u8],
    info: &PacketInfo,
    whole: Whole,
    rest: impl IntoIterator<Item = &'a [u8]>,
    out: &mut [u8; MAX_REPLY],
) -> Option<(usize, PacketInfo)> {
    let l2 = usize::from(info.l3_offset);
    let l4 = usize::from(info.l4_offset);
    if !matches!(info.frag, Fragment::First { .. }) || l4 < l2 {
        return None;
    }
    let ip = first.get(l2..info.l3_end())?;
    out.get_mut(..l2)?.copy_from_slice(&first[..l2]);
    let mut pi = *info;
    pi.frag = Fragment::None;
    // Where the fragmentable part starts in the first fragment, and in `out`.
    let (data_at, start) = match info.l3 {
        L3::Ipv4 => {
            let hl = usize::from(ip[0] & 15) * 4;
            let n = hl.min(out.len() - l2);
            out[l2..l2 + n].copy_from_slice(&ip[..n]);
            (hl, l2 + hl)
        }
        L3::Ipv6 => {
            let (nh, at) = v6_fragment_header(ip)?;
            let fh = ip.get(at..at + 8)?;
            out[l2..l2 + at].copy_from_slice(&ip[..at]);
            out[l2 + nh] = fh[0];
            pi.l4_offset = pi.l4_offset.checked_sub(8)?;
            (at + 8, l2 + at)
        }
        _ => return None,
    };
    // The fragmentable part, piece by piece at its offset, as far as `out` goes.
    let mut put = |off: usize, data: &[u8]| {
        let Some(to) = out.get_mut(start + off..) else {
            return;
        };
        let n = data.len().min(to.len());
        to[..n].copy_from_slice(&data[..n]);
    };
    put(0, ip.get(data_at..)?);
    // IPv4: the whole's fragment bits by the largest fragment's DF, as Linux's reassembly.
    let mut v4 = crate::conntrack::frag::WholeV4::default();
    v4.see(ip);
    for f in rest {
        let Ok(fi) = crate::wire::parse_frame(f) else {
            continue;
        };
        let Fragment::Later { offset_bytes, .. } = fi.frag else {
            continue;
        };
        let fip = &f[usize::from(fi.l3_offset)..fi.l3_end().min(f.len())];
        let skip = match fi.l3 {
            L3::Ipv4 => usize::from(fip[0] & 15) * 4,
            _ => match v6_fragment_header(fip) {
                Some((_, at)) => at + 8,
                None => continue,
            },
        };
        v4.see(fip);
        if let Some(d) = fip.get(skip..) {
            put(usize::from(offset_bytes), d);
        }
    }
    let len = whole.len as usize;
    let ipo = &mut out[l2..];
    match info.l3 {
        L3::Ipv4 => {
            let hl = usize::from(ipo[0] & 15) * 4;
            v4.finish(ipo.get_mut(..hl)?, len as u16);
        }
        _ => ipo[4..6].copy_from_slice(&(len.saturating_sub(40) as u16).to_be_bytes()),
    }
    let n = (l2 + len).min(out.len());
    pi.l3_len = (n - l2) as u16;
    Some((n, pi))
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

    /// The reply to the first fragment of `spec` cut at `chunk`, judged whole.
    fn whole_reply(spec: &FrameSpec, chunk: usize, with: RejectWith) -> Option<Vec<u8>> {
        let frags = spec.fragments(chunk);
        assert!(frags.len() > 1);
        let whole = spec.build();
        let info = parse_frame(&frags[0]).unwrap();
        let w = Whole {
            len: (whole.len() - 14) as u32,
            csum_ok: true,
        };
        let mut buf = [0u8; MAX_REPLY];
        let rest: Vec<&[u8]> = frags[1..].iter().map(|f| &f[..]).collect();
        let (n, pi) = reassembled(&frags[0], &info, w, rest, &mut buf).unwrap();
        assert_eq!(&buf[..n], &whole[..n], "the reassembled datagram's start");
        let mut out = [0u8; MAX_REPLY];
        build_reply_whole(&buf[..n], &pi, w, with, &mut out).map(|n| out[..n].to_vec())
    }

    #[test]
    fn a_whole_datagram_is_quoted_reassembled() {
        // IPv4: the quote is the datagram as reassembled (no MF, the whole length), up to
        // 576 bytes of error, from both fragments.
        let spec = FrameSpec::new(
            IpSpec::v4([192, 0, 2, 1].into(), [10, 0, 0, 5].into()),
            L4Spec::udp(5000, 53, &(0..900).map(|i| i as u8).collect::<Vec<_>>()),
        );
        let whole = spec.build();
        let r = whole_reply(&spec, 256, RejectWith::IcmpPortUnreachable).unwrap();
        assert_eq!(r.len() - 14, 576);
        assert_eq!(&r[42..], &whole[14..14 + 548]);
        assert_eq!(checksum::checksum(&r[34..]), 0);
        // IPv6: no Fragment header in the quote, the whole payload length.
        let s: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let d: Ipv6Addr = "fd00::5".parse().unwrap();
        let mut ip = IpSpec::v6(s, d);
        if let IpSpec::V6 { ident, .. } = &mut ip {
            *ident = 0x1234;
        }
        let spec = FrameSpec::new(ip, L4Spec::udp(5000, 53, &[9; 600]));
        let whole = spec.build();
        let r = whole_reply(&spec, 256, RejectWith::Icmp6AdmProhibited).unwrap();
        assert_eq!(&r[62..], &whole[14..], "quoted whole");
        assert!(PseudoHeader::V6 { src: d, dst: s }.verify(ip_proto::ICMPV6, &r[54..]));
    }

    #[test]
    fn a_whole_segment_is_reset_by_its_whole_length() {
        let mut l4 = L4Spec::tcp(40000, 23, Flags::PSH | Flags::ACK);
        if let L4Spec::Tcp { seq, payload, .. } = &mut l4 {
            *seq = 1000;
            *payload = vec![1; 700];
        }
        let spec = FrameSpec::new(
            IpSpec::v4([192, 0, 2, 1].into(), [10, 0, 0, 5].into()),
            l4.clone(),
        );
        let r = whole_reply(&spec, 256, RejectWith::TcpReset).expect("a reset");
        assert_eq!(r[34 + 13], 0x04, "RST to an ACK");
        if let L4Spec::Tcp { flags, .. } = &mut l4 {
            *flags = Flags::PSH;
        }
        let spec = FrameSpec::new(IpSpec::v4([192, 0, 2, 1].into(), [10, 0, 0, 5].into()), l4);
        let r = whole_reply(&spec, 256, RejectWith::TcpReset).expect("a reset");
        assert_eq!(
            u32::from_be_bytes(r[42..46].try_into().unwrap()),
            1700,
            "acks the whole segment"
        );
        // The first fragment alone: its checksum covers one piece, no reset.
        let frags = spec.fragments(256);
        assert!(reply(&frags[0], RejectWith::TcpReset).is_none());
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
