//! FAST PATH: no allocation, lock, syscall or log (writes into caller buffers).
//!
//! Address resolution messages: ARP (RFC 826) for IPv4, neighbour solicitation and
//! advertisement (RFC 4861 §4.3, §4.4) for IPv6, the reading of received ones with the
//! validity checks of RFC 4861 §7.1, and the answers for a port's own addresses.
//!
//! Invariants: builders write exactly the length they return, at most [`MAX_FRAME`] bytes;
//! readers look only inside the parsed datagram and return `None` for anything invalid (the
//! caller drops it and counts it). Requests Rampart originates are untagged; answers keep the
//! VLAN tags of the message they answer.

use crate::wire::checksum::PseudoHeader;
use crate::wire::{arp, ethernet, icmpv6, ip_proto, EtherType, MacAddr, PacketInfo, L3};
use std::net::{Ipv4Addr, Ipv6Addr};

/// The largest frame built here: Ethernet with two tags, IPv6, a 24-byte NS/NA and one
/// 8-byte link-layer address option.
pub const MAX_FRAME: usize = ethernet::HEADER_LEN + 8 + 40 + 24 + 8;

/// RFC 4861 §4.6.1 option types.
const OPT_SOURCE_LLADDR: u8 = 1;
const OPT_TARGET_LLADDR: u8 = 2;
/// NA flags (RFC 4861 §4.4).
const NA_ROUTER: u8 = 0x80;
const NA_SOLICITED: u8 = 0x40;
const NA_OVERRIDE: u8 = 0x20;

/// All-nodes multicast (RFC 4291 §2.7.1).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The solicited-node multicast address of `a` (RFC 4291 §2.7.1): `ff02::1:ffXX:XXXX`.
pub fn solicited_node(a: &Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// The Ethernet address of an IPv6 multicast group (RFC 2464 §7): `33:33` and its last 4 bytes.
pub fn multicast_mac(a: &Ipv6Addr) -> MacAddr {
    let o = a.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

fn eth(out: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: u16) {
    out[0..6].copy_from_slice(&dst.0);
    out[6..12].copy_from_slice(&src.0);
    out[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

fn arp_body(
    out: &mut [u8],
    op: arp::Operation,
    sha: MacAddr,
    spa: Ipv4Addr,
    tha: MacAddr,
    tpa: Ipv4Addr,
) {
    arp::Repr {
        operation: op,
        sender_hardware_addr: sha,
        sender_protocol_addr: spa,
        target_hardware_addr: tha,
        target_protocol_addr: tpa,
    }
    .emit(&mut arp::Packet::new_unchecked(&mut out[..arp::PACKET_LEN]));
}

/// An ARP request for `target` from `src_ip`/`src_mac`: broadcast, or unicast to `probe_mac`
/// (confirming a stale entry, RFC 1122 §2.3.2.1). Returns the frame length.
pub fn arp_request(
    out: &mut [u8; MAX_FRAME],
    src_mac: MacAddr,
    src_ip: Ipv4Addr,
    target: Ipv4Addr,
    probe_mac: Option<MacAddr>,
) -> usize {
    eth(
        out,
        probe_mac.unwrap_or(MacAddr::BROADCAST),
        src_mac,
        EtherType::ARP,
    );
    arp_body(
        &mut out[14..],
        arp::Operation::Request,
        src_mac,
        src_ip,
        MacAddr::ZERO,
        target,
    );
    14 + arp::PACKET_LEN
}

/// An ARP reply: `src_ip` is at `src_mac`, sent to `dst_mac`/`dst_ip` (untagged). Returns the
/// frame length.
pub fn arp_reply(
    out: &mut [u8; MAX_FRAME],
    src_mac: MacAddr,
    src_ip: Ipv4Addr,
    dst_mac: MacAddr,
    dst_ip: Ipv4Addr,
) -> usize {
    eth(out, dst_mac, src_mac, EtherType::ARP);
    arp_body(
        &mut out[14..],
        arp::Operation::Reply,
        src_mac,
        src_ip,
        dst_mac,
        dst_ip,
    );
    14 + arp::PACKET_LEN
}

/// What a received ARP packet says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpSeen {
    pub request: bool,
    pub sender_ip: Ipv4Addr,
    pub sender_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

/// Reads an Ethernet/IPv4 ARP request or reply (`None` for anything else).
pub fn read_arp(frame: &[u8], info: &PacketInfo) -> Option<ArpSeen> {
    if info.l3 != L3::Arp {
        return None;
    }
    let p = arp::Packet::new_checked(frame.get(usize::from(info.l3_offset)..)?).ok()?;
    let r = arp::Repr::parse(&p).ok()?;
    let request = match r.operation {
        arp::Operation::Request => true,
        arp::Operation::Reply => false,
        arp::Operation::Unknown(_) => return None,
    };
    Some(ArpSeen {
        request,
        sender_ip: r.sender_protocol_addr,
        sender_mac: r.sender_hardware_addr,
        target_ip: r.target_protocol_addr,
    })
}

/// The reply to an ARP request for one of `own` (the port's addresses), from `port_mac`,
/// keeping the request's VLAN tags. `None` when the frame is not such a request.
pub fn answer_arp(
    frame: &[u8],
    info: &PacketInfo,
    port_mac: MacAddr,
    own: &[Ipv4Addr],
    out: &mut [u8; MAX_FRAME],
) -> Option<usize> {
    let seen = read_arp(frame, info)?;
    if !seen.request || !own.contains(&seen.target_ip) || !seen.sender_mac.is_unicast() {
        return None;
    }
    let l2 = usize::from(info.l3_offset);
    out[..l2].copy_from_slice(frame.get(..l2)?);
    out[0..6].copy_from_slice(&seen.sender_mac.0);
    out[6..12].copy_from_slice(&port_mac.0);
    arp_body(
        &mut out[l2..],
        arp::Operation::Reply,
        port_mac,
        seen.target_ip,
        seen.sender_mac,
        seen.sender_ip,
    );
    Some(l2 + arp::PACKET_LEN)
}

/// An ICMPv6 NS/NA after an untagged Ethernet header: IPv6 header (hop limit 255), the
/// message with its checksum.
#[allow(clippy::too_many_arguments)]
fn nd_frame(
    out: &mut [u8],
    l2: usize,
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
    ty: u8,
    flags: u8,
    target: &Ipv6Addr,
    opt: u8,
    lladdr: MacAddr,
) -> usize {
    let len = 24 + 8;
    let ip = &mut out[l2..l2 + 40 + len];
    ip[..40].fill(0);
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&(len as u16).to_be_bytes());
    ip[6] = ip_proto::ICMPV6;
    ip[7] = 255;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    let m = &mut ip[40..];
    m.fill(0);
    m[0] = ty;
    m[4] = flags;
    m[8..24].copy_from_slice(&target.octets());
    m[24] = opt;
    m[25] = 1;
    m[26..32].copy_from_slice(&lladdr.0);
    let c = PseudoHeader::V6 {
        src: *src,
        dst: *dst,
    }
    .checksum(ip_proto::ICMPV6, m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    l2 + 40 + len
}

/// A neighbour solicitation for `target` from `src_ip`/`src_mac` (with the source link-layer
/// address option): to the target's solicited-node group, or unicast to `probe_mac` and the
/// target itself (RFC 4861 §7.2.2, §7.3.3). Returns the frame length.
pub fn neighbour_solicitation(
    out: &mut [u8; MAX_FRAME],
    src_mac: MacAddr,
    src_ip: Ipv6Addr,
    target: Ipv6Addr,
    probe_mac: Option<MacAddr>,
) -> usize {
    let (dst_ip, dst_mac) = match probe_mac {
        Some(m) => (target, m),
        None => {
            let g = solicited_node(&target);
            (g, multicast_mac(&g))
        }
    };
    eth(out, dst_mac, src_mac, EtherType::IPV6);
    nd_frame(
        out,
        14,
        &src_ip,
        &dst_ip,
        icmpv6::msg_type::NEIGHBOR_SOLICIT,
        0,
        &target,
        OPT_SOURCE_LLADDR,
        src_mac,
    )
}

/// A neighbour advertisement for our address `target` from `src_mac` with the router and
/// override flags and the target link-layer option (untagged): `solicited` answers `dst_ip` at
/// `dst_mac`; otherwise it is an unsolicited announcement, normally to [`ALL_NODES`]
/// (RFC 4861 §7.2.6). Returns the frame length.
pub fn neighbour_advertisement(
    out: &mut [u8; MAX_FRAME],
    src_mac: MacAddr,
    target: Ipv6Addr,
    dst_mac: MacAddr,
    dst_ip: Ipv6Addr,
    solicited: bool,
) -> usize {
    eth(out, dst_mac, src_mac, EtherType::IPV6);
    let s = if solicited { NA_SOLICITED } else { 0 };
    nd_frame(
        out,
        14,
        &target,
        &dst_ip,
        icmpv6::msg_type::NEIGHBOR_ADVERT,
        NA_ROUTER | NA_OVERRIDE | s,
        &target,
        OPT_TARGET_LLADDR,
        src_mac,
    )
}

/// What a received NS or NA says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NdSeen {
    /// A solicitation (else an advertisement).
    pub solicitation: bool,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub target: Ipv6Addr,
    /// The source (NS) or target (NA) link-layer address option.
    pub lladdr: Option<MacAddr>,
    pub router: bool,
    pub solicited: bool,
    pub override_: bool,
}

/// Reads a valid NS or NA (RFC 4861 §7.1.1, §7.1.2): hop limit 255, correct checksum, code 0,
/// at least 24 bytes, a unicast target, well-formed options; an NS from the unspecified address
/// goes to a solicited-node group without a link-layer option; a multicast NA is unsolicited.
pub fn read_nd(frame: &[u8], info: &PacketInfo) -> Option<NdSeen> {
    if info.l3 != L3::Ipv6 || info.proto() != Some(ip_proto::ICMPV6) || info.is_fragment() {
        return None;
    }
    let ip = frame.get(usize::from(info.l3_offset)..info.l3_end())?;
    let m = info.l4_bytes(frame)?;
    if ip.get(7) != Some(&255) || m.len() < 24 || m[1] != 0 {
        return None;
    }
    let solicitation = match m[0] {
        icmpv6::msg_type::NEIGHBOR_SOLICIT => true,
        icmpv6::msg_type::NEIGHBOR_ADVERT => false,
        _ => return None,
    };
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(ip.get(8..24)?).ok()?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(ip.get(24..40)?).ok()?);
    if !(PseudoHeader::V6 { src, dst }).verify(ip_proto::ICMPV6, m) {
        return None;
    }
    let target = Ipv6Addr::from(<[u8; 16]>::try_from(&m[8..24]).ok()?);
    if target.is_multicast() {
        return None;
    }
    let want = if solicitation {
        OPT_SOURCE_LLADDR
    } else {
        OPT_TARGET_LLADDR
    };
    let mut lladdr = None;
    let mut opts = &m[24..];
    while !opts.is_empty() {
        let len = usize::from(*opts.get(1)?) * 8;
        if len == 0 || len > opts.len() {
            return None;
        }
        if opts[0] == want && len == 8 {
            lladdr = Some(MacAddr(opts[2..8].try_into().ok()?));
        }
        opts = &opts[len..];
    }
    let flags = m[4];
    let seen = NdSeen {
        solicitation,
        src,
        dst,
        target,
        lladdr,
        router: flags & NA_ROUTER != 0,
        solicited: flags & NA_SOLICITED != 0,
        override_: flags & NA_OVERRIDE != 0,
    };
    if solicitation && src.is_unspecified() && (dst != solicited_node(&target) || lladdr.is_some())
    {
        return None;
    }
    if !solicitation && dst.is_multicast() && seen.solicited {
        return None;
    }
    Some(seen)
}

/// The advertisement answering a solicitation for one of `own` (the port's addresses), from
/// `port_mac`, with the router and override flags and the target link-layer option: unicast
/// and solicited to the sender, or to all nodes and unsolicited for a duplicate address
/// detection probe (unspecified source), RFC 4861 §7.2.4. Keeps the VLAN tags.
pub fn answer_ns(
    frame: &[u8],
    info: &PacketInfo,
    port_mac: MacAddr,
    own: &[Ipv6Addr],
    out: &mut [u8; MAX_FRAME],
) -> Option<usize> {
    let ns = read_nd(frame, info)?;
    if !ns.solicitation || !own.contains(&ns.target) {
        return None;
    }
    let (dst_ip, dst_mac, solicited) = if ns.src.is_unspecified() {
        (ALL_NODES, multicast_mac(&ALL_NODES), 0)
    } else {
        let mac = ns
            .lladdr
            .unwrap_or(MacAddr(frame.get(6..12)?.try_into().ok()?));
        if !mac.is_unicast() {
            return None;
        }
        (ns.src, mac, NA_SOLICITED)
    };
    let l2 = usize::from(info.l3_offset);
    out[..l2].copy_from_slice(frame.get(..l2)?);
    out[0..6].copy_from_slice(&dst_mac.0);
    out[6..12].copy_from_slice(&port_mac.0);
    Some(nd_frame(
        out,
        l2,
        &ns.target,
        &dst_ip,
        icmpv6::msg_type::NEIGHBOR_ADVERT,
        NA_ROUTER | NA_OVERRIDE | solicited,
        &ns.target,
        OPT_TARGET_LLADDR,
        port_mac,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::{self, FrameSpec, IpSpec, L4Spec};
    use crate::wire::{parse_frame, VlanTag};

    const OURS: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xaa]);
    const HOST: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x01]);

    #[test]
    fn arp_request_and_answer() {
        let mut out = [0u8; MAX_FRAME];
        let n = arp_request(
            &mut out,
            OURS,
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            None,
        );
        assert_eq!(
            &out[..n],
            &builder::arp_request(OURS, [10, 0, 0, 1].into(), [10, 0, 0, 2].into())[..]
        );
        let n = arp_request(
            &mut out,
            OURS,
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            Some(HOST),
        );
        assert_eq!(&out[..6], &HOST.0, "unicast probe");
        assert!(
            read_arp(&out[..n], &parse_frame(&out[..n]).unwrap())
                .unwrap()
                .request
        );

        let req = builder::arp_request(HOST, [10, 0, 0, 2].into(), [10, 0, 0, 1].into());
        let info = parse_frame(&req).unwrap();
        let n = answer_arp(&req, &info, OURS, &[[10, 0, 0, 1].into()], &mut out).unwrap();
        assert_eq!(
            &out[..n],
            &builder::arp_reply(OURS, [10, 0, 0, 1].into(), HOST, [10, 0, 0, 2].into())[..]
        );
        let seen = read_arp(&out[..n], &parse_frame(&out[..n]).unwrap()).unwrap();
        assert_eq!((seen.request, seen.sender_mac), (false, OURS));
        assert!(answer_arp(&req, &info, OURS, &[[10, 0, 0, 9].into()], &mut out).is_none());
        let reply = builder::arp_reply(HOST, [10, 0, 0, 2].into(), OURS, [10, 0, 0, 1].into());
        let info = parse_frame(&reply).unwrap();
        assert!(answer_arp(&reply, &info, OURS, &[[10, 0, 0, 1].into()], &mut out).is_none());
    }

    #[test]
    fn standalone_reply_and_advertisement() {
        let mut out = [0u8; MAX_FRAME];
        let n = arp_reply(
            &mut out,
            OURS,
            [10, 0, 0, 1].into(),
            HOST,
            [10, 0, 0, 2].into(),
        );
        assert_eq!(
            &out[..n],
            &builder::arp_reply(OURS, [10, 0, 0, 1].into(), HOST, [10, 0, 0, 2].into())[..]
        );
        let n = neighbour_advertisement(
            &mut out,
            OURS,
            addr("fd00::aa"),
            multicast_mac(&ALL_NODES),
            ALL_NODES,
            false,
        );
        let adv = read_nd(&out[..n], &parse_frame(&out[..n]).unwrap()).unwrap();
        assert!(!adv.solicitation && !adv.solicited && adv.override_);
        assert_eq!((adv.target, adv.lladdr), (addr("fd00::aa"), Some(OURS)));
        // A multicast NA claiming to be solicited is invalid.
        let n = neighbour_advertisement(
            &mut out,
            OURS,
            addr("fd00::aa"),
            multicast_mac(&ALL_NODES),
            ALL_NODES,
            true,
        );
        assert!(read_nd(&out[..n], &parse_frame(&out[..n]).unwrap()).is_none());
    }

    proptest::proptest! {
        #[test]
        fn readers_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            if let Ok(info) = parse_frame(&data) {
                let mut out = [0u8; MAX_FRAME];
                let _ = read_nd(&data, &info);
                let _ = read_arp(&data, &info);
                let _ = answer_arp(&data, &info, OURS, &[[10, 0, 0, 1].into()], &mut out);
                let _ = answer_ns(&data, &info, OURS, &[addr("fd00::aa")], &mut out);
            }
        }
    }

    #[test]
    fn arp_answer_keeps_vlan_tags() {
        let req = builder::arp_request(HOST, [10, 0, 0, 2].into(), [10, 0, 0, 1].into());
        let mut tagged = req[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        tagged.extend_from_slice(&req[12..]);
        let info = parse_frame(&tagged).unwrap();
        assert_eq!(info.vlans[0], Some(VlanTag::new(0x8100, 0, false, 7)));
        let mut out = [0u8; MAX_FRAME];
        let n = answer_arp(&tagged, &info, OURS, &[[10, 0, 0, 1].into()], &mut out).unwrap();
        let r = parse_frame(&out[..n]).unwrap();
        assert_eq!(r.vlans, info.vlans);
        assert!(!read_arp(&out[..n], &r).unwrap().request);
    }

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn ns_na_round_trip() {
        let mut ns = [0u8; MAX_FRAME];
        let n = neighbour_solicitation(&mut ns, HOST, addr("fe80::1"), addr("fd00::aa"), None);
        let info = parse_frame(&ns[..n]).unwrap();
        assert_eq!(&ns[..6], &[0x33, 0x33, 0xff, 0, 0, 0xaa]);
        let seen = read_nd(&ns[..n], &info).unwrap();
        assert!(seen.solicitation);
        assert_eq!(seen.dst, addr("ff02::1:ff00:aa"));
        assert_eq!(seen.lladdr, Some(HOST));

        let mut na = [0u8; MAX_FRAME];
        let m = answer_ns(&ns[..n], &info, OURS, &[addr("fd00::aa")], &mut na).unwrap();
        let ninfo = parse_frame(&na[..m]).unwrap();
        let adv = read_nd(&na[..m], &ninfo).expect("valid NA, checksum included");
        assert!(!adv.solicitation && adv.solicited && adv.router && adv.override_);
        assert_eq!(
            (adv.src, adv.dst, adv.target),
            (addr("fd00::aa"), addr("fe80::1"), addr("fd00::aa"))
        );
        assert_eq!(adv.lladdr, Some(OURS));
        assert_eq!(&na[..6], &HOST.0);
        assert!(answer_ns(&ns[..n], &info, OURS, &[addr("fd00::ab")], &mut na).is_none());
        assert!(answer_ns(&na[..m], &ninfo, OURS, &[addr("fd00::aa")], &mut ns).is_none());
    }

    #[test]
    fn dad_probe_is_answered_to_all_nodes() {
        let target = addr("fd00::aa");
        let g = solicited_node(&target);
        let mut body = [0u8; 20];
        body[4..20].copy_from_slice(&target.octets());
        let mut spec = FrameSpec::new(
            IpSpec::v6(Ipv6Addr::UNSPECIFIED, g),
            L4Spec::Icmpv6 {
                ty: icmpv6::msg_type::NEIGHBOR_SOLICIT,
                code: 0,
                ident: 0,
                seq: 0,
                payload: body[4..].to_vec(),
            },
        );
        if let IpSpec::V6 { hop_limit, .. } = &mut spec.ip {
            *hop_limit = 255;
        }
        let f = spec.build();
        let info = parse_frame(&f).unwrap();
        assert!(read_nd(&f, &info).is_some());
        let mut out = [0u8; MAX_FRAME];
        let n = answer_ns(&f, &info, OURS, &[target], &mut out).unwrap();
        let adv = read_nd(&out[..n], &parse_frame(&out[..n]).unwrap()).unwrap();
        assert_eq!(adv.dst, ALL_NODES);
        assert!(!adv.solicited);
        // Hop limit below 255: not from the link, ignored.
        if let IpSpec::V6 { hop_limit, .. } = &mut spec.ip {
            *hop_limit = 254;
        }
        let f = spec.build();
        assert!(read_nd(&f, &parse_frame(&f).unwrap()).is_none());
    }

    #[test]
    fn invalid_nd_is_refused() {
        let mut ns = [0u8; MAX_FRAME];
        let n =
            neighbour_solicitation(&mut ns, HOST, addr("fe80::1"), addr("fd00::aa"), Some(OURS));
        assert_eq!(&ns[..6], &OURS.0);
        let ok = ns[..n].to_vec();
        let info = parse_frame(&ok).unwrap();
        assert_eq!(read_nd(&ok, &info).unwrap().dst, addr("fd00::aa"));
        let mut bad = ok.clone();
        bad[14 + 40 + 2] ^= 1; // checksum
        assert!(read_nd(&bad, &info).is_none());
        // Well-formed checksums over malformed content.
        let refill = |f: &mut Vec<u8>| {
            f[14 + 40 + 2..14 + 40 + 4].fill(0);
            let ph = PseudoHeader::V6 {
                src: addr("fe80::1"),
                dst: addr("fd00::aa"),
            };
            let c = ph.checksum(ip_proto::ICMPV6, &f[14 + 40..]);
            f[14 + 40 + 2..14 + 40 + 4].copy_from_slice(&c.to_be_bytes());
        };
        let mut bad = ok.clone();
        bad[14 + 40 + 24 + 1] = 0; // option length 0
        refill(&mut bad);
        assert!(read_nd(&bad, &info).is_none());
        let mut bad = ok.clone();
        bad[14 + 40 + 8] = 0xff; // multicast target
        refill(&mut bad);
        assert!(read_nd(&bad, &info).is_none());
        let mut bad = ok.clone();
        bad[14 + 40 + 1] = 1; // code
        refill(&mut bad);
        assert!(read_nd(&bad, &info).is_none());
        let mut fine = ok.clone();
        refill(&mut fine);
        assert_eq!(fine, ok, "refill recomputes the same checksum");
    }
}
