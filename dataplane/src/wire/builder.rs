//! Frame synthesis for tests, demos and the packet generator (slow path: allocates).
//!
//! A [`FrameSpec`] describes one Ethernet frame; [`FrameSpec::build`] computes every length
//! and checksum. Invariant: for any spec these functions accept, the frames they return pass
//! [`parse_frame`](super::parse_frame), and its flow key is [`FrameSpec::flow_key`] (ports 0
//! on non-first fragments). What they do not check, and what would then fail to parse, is
//! named on the field: a `Raw` payload claiming TCP/UDP/ICMP or an IPv6 extension header, more
//! than 40 bytes of IP or TCP options, or a datagram over 65535 bytes.
//!
//! Frames are not padded to the 60-byte Ethernet minimum.

use super::checksum::PseudoHeader;
use super::ethernet::{self, EtherType, MacAddr, VlanTag};
use super::flow::{icmp_ports, Family, FlowKey};
use super::tcp::{Flags, SeqNumber};
use super::{arp, icmpv4, icmpv6, ip_proto, ipv4, ipv6, tcp, udp};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Locally administered source MAC used by [`FrameSpec::new`].
pub const DEFAULT_SRC_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
/// Locally administered destination MAC used by [`FrameSpec::new`].
pub const DEFAULT_DST_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);

/// One IPv6 extension header to place between the fixed header and the L4 header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtSpec {
    /// Hop-by-Hop (0; must be first), Routing (43), Destination Options (60) or AH (51).
    pub header_type: u8,
    /// Bytes after the next-header and length octets; zero-padded to the header's unit
    /// (zero bytes are Pad1 options in Hop-by-Hop and Destination Options).
    pub body: Vec<u8>,
}

/// The IP layer of a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpSpec {
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ttl: u8,
        ident: u16,
        dont_frag: bool,
        /// Raw option bytes, at most 40; padded with EOL to a multiple of 4.
        options: Vec<u8>,
    },
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        /// Identification for the Fragment header when [`FrameSpec::fragments`] splits it.
        ident: u32,
        ext: Vec<ExtSpec>,
    },
}

impl IpSpec {
    /// IPv4, TTL 64, ident 0, no DF, no options.
    pub fn v4(src: Ipv4Addr, dst: Ipv4Addr) -> IpSpec {
        IpSpec::V4 {
            src,
            dst,
            ttl: 64,
            ident: 0,
            dont_frag: false,
            options: Vec::new(),
        }
    }

    /// IPv6, hop limit 64, no extension headers.
    pub fn v6(src: Ipv6Addr, dst: Ipv6Addr) -> IpSpec {
        IpSpec::V6 {
            src,
            dst,
            hop_limit: 64,
            ident: 0,
            ext: Vec::new(),
        }
    }

    fn pseudo_header(&self) -> PseudoHeader {
        match *self {
            IpSpec::V4 { src, dst, .. } => PseudoHeader::V4 { src, dst },
            IpSpec::V6 { src, dst, .. } => PseudoHeader::V6 { src, dst },
        }
    }
}

/// The L4 layer of a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4Spec {
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: Flags,
        window: u16,
        /// Raw option bytes, at most 40; padded with EOL to a multiple of 4.
        /// [`tcp_options`] encodes a list.
        options: Vec<u8>,
        payload: Vec<u8>,
    },
    Udp {
        sport: u16,
        dport: u16,
        payload: Vec<u8>,
    },
    /// ICMPv4 (protocol 1). `ident`/`seq` fill the rest-of-header word.
    Icmp {
        ty: u8,
        code: u8,
        ident: u16,
        seq: u16,
        payload: Vec<u8>,
    },
    /// ICMPv6 (next header 58), checksummed with the pseudo-header of the IP layer.
    Icmpv6 {
        ty: u8,
        code: u8,
        ident: u16,
        seq: u16,
        payload: Vec<u8>,
    },
    /// Any protocol, payload copied as is.
    Raw { proto: u8, payload: Vec<u8> },
}

impl L4Spec {
    /// A TCP segment with no payload, seq 1, ack 0 (or 1 when ACK is set), window 65535.
    pub fn tcp(sport: u16, dport: u16, flags: Flags) -> L4Spec {
        let ack = u32::from(flags.contains(Flags::ACK));
        L4Spec::Tcp {
            sport,
            dport,
            seq: 1,
            ack,
            flags,
            window: 0xffff,
            options: Vec::new(),
            payload: Vec::new(),
        }
    }

    /// A TCP segment with the given flags, numbers and payload, no options, window 65535.
    pub fn tcp_segment(
        sport: u16,
        dport: u16,
        flags: Flags,
        seq: u32,
        ack: u32,
        payload: &[u8],
    ) -> L4Spec {
        L4Spec::Tcp {
            sport,
            dport,
            seq,
            ack,
            flags,
            window: 0xffff,
            options: Vec::new(),
            payload: payload.to_vec(),
        }
    }

    pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> L4Spec {
        L4Spec::Udp {
            sport,
            dport,
            payload: payload.to_vec(),
        }
    }

    pub fn icmp_echo(ident: u16, seq: u16) -> L4Spec {
        L4Spec::Icmp {
            ty: icmpv4::msg_type::ECHO_REQUEST,
            code: 0,
            ident,
            seq,
            payload: Vec::new(),
        }
    }

    pub fn icmpv6_echo(ident: u16, seq: u16) -> L4Spec {
        L4Spec::Icmpv6 {
            ty: icmpv6::msg_type::ECHO_REQUEST,
            code: 0,
            ident,
            seq,
            payload: Vec::new(),
        }
    }

    /// The IP protocol number this layer carries.
    pub fn proto(&self) -> u8 {
        match self {
            L4Spec::Tcp { .. } => ip_proto::TCP,
            L4Spec::Udp { .. } => ip_proto::UDP,
            L4Spec::Icmp { .. } => ip_proto::ICMP,
            L4Spec::Icmpv6 { .. } => ip_proto::ICMPV6,
            L4Spec::Raw { proto, .. } => *proto,
        }
    }

    /// Length of the L4 header (what a first fragment must carry).
    pub fn header_len(&self) -> usize {
        match self {
            L4Spec::Tcp { options, .. } => tcp::HEADER_LEN + options.len().next_multiple_of(4),
            L4Spec::Udp { .. } => udp::HEADER_LEN,
            L4Spec::Icmp { .. } | L4Spec::Icmpv6 { .. } => icmpv4::HEADER_LEN,
            L4Spec::Raw { .. } => 0,
        }
    }

    /// The whole L4 message, checksum included.
    pub fn emit(&self, pseudo: &PseudoHeader) -> Vec<u8> {
        match self {
            L4Spec::Tcp {
                sport,
                dport,
                seq,
                ack,
                flags,
                window,
                options,
                payload,
            } => {
                let repr = tcp::Repr {
                    src_port: *sport,
                    dst_port: *dport,
                    seq_number: SeqNumber(*seq),
                    ack_number: SeqNumber(*ack),
                    flags: *flags,
                    window_len: *window,
                    urgent_at: 0,
                    options,
                    payload,
                };
                let mut buf = vec![0; repr.buffer_len()];
                repr.emit(&mut tcp::Packet::new_unchecked(&mut buf[..]), pseudo);
                buf
            }
            L4Spec::Udp {
                sport,
                dport,
                payload,
            } => {
                let repr = udp::Repr {
                    src_port: *sport,
                    dst_port: *dport,
                    payload,
                };
                let mut buf = vec![0; repr.buffer_len()];
                repr.emit(&mut udp::Packet::new_unchecked(&mut buf[..]), pseudo);
                buf
            }
            L4Spec::Icmp {
                ty,
                code,
                ident,
                seq,
                payload,
            } => {
                let repr = icmpv4::Repr::new(
                    *ty,
                    *code,
                    (u32::from(*ident) << 16) | u32::from(*seq),
                    payload,
                );
                let mut buf = vec![0; repr.buffer_len()];
                repr.emit(&mut icmpv4::Packet::new_unchecked(&mut buf[..]));
                buf
            }
            L4Spec::Icmpv6 {
                ty,
                code,
                ident,
                seq,
                payload,
            } => {
                let repr = icmpv6::Repr::new(
                    *ty,
                    *code,
                    (u32::from(*ident) << 16) | u32::from(*seq),
                    payload,
                );
                let mut buf = vec![0; repr.buffer_len()];
                repr.emit(&mut icmpv6::Packet::new_unchecked(&mut buf[..]), pseudo);
                buf
            }
            L4Spec::Raw { payload, .. } => payload.clone(),
        }
    }
}

/// One complete Ethernet frame to synthesise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameSpec {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    /// Outermost first; a `None` ends the stack.
    pub vlans: [Option<VlanTag>; 2],
    pub ip: IpSpec,
    pub l4: L4Spec,
}

impl FrameSpec {
    /// Default MACs, no VLAN tags.
    pub fn new(ip: IpSpec, l4: L4Spec) -> FrameSpec {
        FrameSpec {
            src_mac: DEFAULT_SRC_MAC,
            dst_mac: DEFAULT_DST_MAC,
            vlans: [None; 2],
            ip,
            l4,
        }
    }

    /// The flow key `parse_frame` reports for the built frame.
    pub fn flow_key(&self) -> FlowKey {
        let family = match self.ip {
            IpSpec::V4 { .. } => Family::V4,
            IpSpec::V6 { .. } => Family::V6,
        };
        let (src_port, dst_port) = match (&self.l4, family) {
            (L4Spec::Tcp { sport, dport, .. } | L4Spec::Udp { sport, dport, .. }, _) => {
                (*sport, *dport)
            }
            (
                L4Spec::Icmp {
                    ty, code, ident, ..
                },
                Family::V4,
            ) => icmp_ports(family, *ty, *code, *ident),
            (
                L4Spec::Icmpv6 {
                    ty, code, ident, ..
                },
                Family::V6,
            ) => icmp_ports(family, *ty, *code, *ident),
            _ => (0, 0),
        };
        let proto = self.l4.proto();
        match self.ip {
            IpSpec::V4 { src, dst, .. } => FlowKey::new_v4(src, dst, proto, src_port, dst_port),
            IpSpec::V6 { src, dst, .. } => FlowKey::new_v6(src, dst, proto, src_port, dst_port),
        }
    }

    /// The L4 message with its checksum.
    pub fn l4_bytes(&self) -> Vec<u8> {
        self.l4.emit(&self.ip.pseudo_header())
    }

    /// The complete frame.
    pub fn build(&self) -> Vec<u8> {
        let l4 = self.l4_bytes();
        match &self.ip {
            IpSpec::V4 { .. } => self.ipv4_frame(&l4, 0, false),
            IpSpec::V6 { ext, .. } => {
                let chain = ext_chain(ext, self.l4.proto());
                self.ipv6_frame(chain.first_next, &[&chain.bytes, &l4])
            }
        }
    }

    /// The datagram split into fragments of at most `fragment_len` L4 bytes each (rounded
    /// down to a multiple of 8, and up so the first carries the whole L4 header). A datagram
    /// that fits in one returns one unfragmented frame. IPv6 extension headers from the spec
    /// go before the Fragment header, in every fragment.
    pub fn fragments(&self, fragment_len: usize) -> Vec<Vec<u8>> {
        let l4 = self.l4_bytes();
        let chunk = (fragment_len & !7)
            .max(self.l4.header_len().next_multiple_of(8))
            .max(8);
        if l4.len() <= chunk {
            return vec![self.build()];
        }
        let pieces: Vec<&[u8]> = l4.chunks(chunk).collect();
        let last = pieces.len() - 1;
        pieces
            .iter()
            .enumerate()
            .map(|(i, piece)| {
                let offset = (i * chunk) as u16;
                let more = i != last;
                match &self.ip {
                    IpSpec::V4 { .. } => self.ipv4_frame(piece, offset, more),
                    IpSpec::V6 { ident, ext, .. } => {
                        let chain = ext_chain(ext, ip_proto::IPV6_FRAG);
                        let mut frag = [0u8; ipv6::FRAGMENT_HEADER_LEN];
                        ipv6::FragmentHeader::new_unchecked(&mut frag[..]).emit(
                            self.l4.proto(),
                            offset,
                            more,
                            *ident,
                        );
                        self.ipv6_frame(chain.first_next, &[&chain.bytes, &frag, piece])
                    }
                }
            })
            .collect()
    }

    /// Ethernet header and VLAN tags for a payload of `ethertype`.
    fn l2_header(&self, ethertype: u16) -> Vec<u8> {
        let tags: Vec<VlanTag> = self.vlans.iter().map_while(|t| *t).collect();
        let mut out = vec![0; ethernet::HEADER_LEN + tags.len() * ethernet::VLAN_HEADER_LEN];
        let first = tags.first().map_or(ethertype, |t| t.tpid);
        ethernet::Repr {
            src_addr: self.src_mac,
            dst_addr: self.dst_mac,
            ethertype: first,
        }
        .emit(&mut ethernet::Frame::new_unchecked(&mut out[..]));
        for (i, tag) in tags.iter().enumerate() {
            let next = tags.get(i + 1).map_or(ethertype, |t| t.tpid);
            let at = ethernet::HEADER_LEN + i * ethernet::VLAN_HEADER_LEN;
            ethernet::VlanRepr {
                tci: tag.tci,
                ethertype: next,
            }
            .emit(&mut ethernet::VlanHeader::new_unchecked(&mut out[at..]));
        }
        out
    }

    fn ipv4_frame(&self, payload: &[u8], frag_offset: u16, more_frags: bool) -> Vec<u8> {
        let IpSpec::V4 {
            src,
            dst,
            ttl,
            ident,
            dont_frag,
            options,
        } = &self.ip
        else {
            unreachable!("ipv4_frame on an IPv6 spec")
        };
        let repr = ipv4::Repr {
            src_addr: *src,
            dst_addr: *dst,
            protocol: self.l4.proto(),
            ttl: *ttl,
            dscp_ecn: 0,
            ident: *ident,
            dont_frag: *dont_frag,
            more_frags,
            frag_offset,
            options: ipv4::Options::new(options).expect("IPv4 options over 40 bytes"),
            payload_len: payload.len(),
        };
        let mut frame = self.l2_header(EtherType::IPV4);
        let at = frame.len();
        frame.resize(at + repr.buffer_len(), 0);
        repr.emit(&mut ipv4::Packet::new_unchecked(&mut frame[at..]));
        frame.extend_from_slice(payload);
        frame
    }

    fn ipv6_frame(&self, next_header: u8, parts: &[&[u8]]) -> Vec<u8> {
        let IpSpec::V6 {
            src,
            dst,
            hop_limit,
            ..
        } = &self.ip
        else {
            unreachable!("ipv6_frame on an IPv4 spec")
        };
        let repr = ipv6::Repr {
            src_addr: *src,
            dst_addr: *dst,
            next_header,
            hop_limit: *hop_limit,
            traffic_class: 0,
            flow_label: 0,
            payload_len: parts.iter().map(|p| p.len()).sum(),
        };
        let mut frame = self.l2_header(EtherType::IPV6);
        let at = frame.len();
        frame.resize(at + repr.buffer_len(), 0);
        repr.emit(&mut ipv6::Packet::new_unchecked(&mut frame[at..]));
        for p in parts {
            frame.extend_from_slice(p);
        }
        frame
    }
}

struct ExtChain {
    first_next: u8,
    bytes: Vec<u8>,
}

/// Encodes `ext` in order, the last header pointing at `last_next`.
fn ext_chain(ext: &[ExtSpec], last_next: u8) -> ExtChain {
    let mut bytes = Vec::new();
    for (i, e) in ext.iter().enumerate() {
        let next = ext.get(i + 1).map_or(last_next, |n| n.header_type);
        let (len, len_octet) = if e.header_type == ip_proto::AH {
            // RFC 4302 §2.2: 32-bit words minus 2; at least the 12-byte fixed part.
            let len = (2 + e.body.len()).next_multiple_of(4).max(12);
            (len, len / 4 - 2)
        } else {
            // RFC 8200 §4.3: 8-octet units minus 1.
            let len = (2 + e.body.len()).next_multiple_of(8);
            (len, len / 8 - 1)
        };
        let at = bytes.len();
        bytes.resize(at + len, 0);
        bytes[at] = next;
        bytes[at + 1] = u8::try_from(len_octet).expect("IPv6 extension header too long");
        bytes[at + 2..at + 2 + e.body.len()].copy_from_slice(&e.body);
    }
    ExtChain {
        first_next: ext.first().map_or(last_next, |e| e.header_type),
        bytes,
    }
}

/// Encodes TCP options back to back (unpadded; the TCP emitter pads).
pub fn tcp_options(options: &[tcp::TcpOption<'_>]) -> Vec<u8> {
    let mut out = vec![0; options.iter().map(|o| o.buffer_len()).sum()];
    let mut at = 0;
    for o in options {
        at += o.emit(&mut out[at..]);
    }
    out
}

/// A broadcast ARP request: who has `target_ip`? Tell `sender_ip` at `sender_mac`.
pub fn arp_request(sender_mac: MacAddr, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    arp_frame(
        MacAddr::BROADCAST,
        arp::Repr {
            operation: arp::Operation::Request,
            sender_hardware_addr: sender_mac,
            sender_protocol_addr: sender_ip,
            target_hardware_addr: MacAddr::ZERO,
            target_protocol_addr: target_ip,
        },
    )
}

/// A unicast ARP reply: `sender_ip` is at `sender_mac`, sent to `target_mac`/`target_ip`.
pub fn arp_reply(
    sender_mac: MacAddr,
    sender_ip: Ipv4Addr,
    target_mac: MacAddr,
    target_ip: Ipv4Addr,
) -> Vec<u8> {
    arp_frame(
        target_mac,
        arp::Repr {
            operation: arp::Operation::Reply,
            sender_hardware_addr: sender_mac,
            sender_protocol_addr: sender_ip,
            target_hardware_addr: target_mac,
            target_protocol_addr: target_ip,
        },
    )
}

fn arp_frame(dst: MacAddr, repr: arp::Repr) -> Vec<u8> {
    let mut frame = vec![0; ethernet::HEADER_LEN + repr.buffer_len()];
    let mut eth = ethernet::Frame::new_unchecked(&mut frame[..]);
    ethernet::Repr {
        src_addr: repr.sender_hardware_addr,
        dst_addr: dst,
        ethertype: EtherType::ARP,
    }
    .emit(&mut eth);
    repr.emit(&mut arp::Packet::new_unchecked(eth.payload_mut()));
    frame
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::{parse_frame, Fragment, L3};
    use proptest::prelude::*;

    fn arb_vlans() -> impl Strategy<Value = [Option<VlanTag>; 2]> {
        let tag = (
            prop_oneof![
                Just(EtherType::VLAN),
                Just(EtherType::QINQ),
                Just(EtherType::QINQ_LEGACY)
            ],
            any::<u16>(),
        )
            .prop_map(|(tpid, tci)| VlanTag { tpid, tci });
        prop_oneof![
            Just([None, None]),
            tag.clone().prop_map(|t| [Some(t), None]),
            (tag.clone(), tag).prop_map(|(a, b)| [Some(a), Some(b)]),
        ]
    }

    fn arb_ext() -> impl Strategy<Value = Vec<ExtSpec>> {
        let one = (
            prop_oneof![
                Just(ip_proto::IPV6_ROUTE),
                Just(ip_proto::IPV6_OPTS),
                Just(ip_proto::AH)
            ],
            proptest::collection::vec(any::<u8>(), 0..24),
        )
            .prop_map(|(header_type, body)| ExtSpec { header_type, body });
        (any::<bool>(), proptest::collection::vec(one, 0..4)).prop_map(|(hbh, mut v)| {
            if hbh {
                v.insert(
                    0,
                    ExtSpec {
                        header_type: ip_proto::HOPOPT,
                        body: vec![0; 6],
                    },
                );
            }
            v
        })
    }

    fn arb_ip() -> impl Strategy<Value = IpSpec> {
        let nops = (0usize..=40).prop_map(|n| vec![ipv4::option_kind::NOP; n]);
        prop_oneof![
            (
                any::<[u8; 4]>(),
                any::<[u8; 4]>(),
                any::<u8>(),
                any::<u16>(),
                any::<bool>(),
                nops
            )
                .prop_map(|(s, d, ttl, ident, dont_frag, options)| IpSpec::V4 {
                    src: s.into(),
                    dst: d.into(),
                    ttl,
                    ident,
                    dont_frag,
                    options
                }),
            (
                any::<[u8; 16]>(),
                any::<[u8; 16]>(),
                any::<u8>(),
                any::<u32>(),
                arb_ext()
            )
                .prop_map(|(s, d, hop_limit, ident, ext)| IpSpec::V6 {
                    src: s.into(),
                    dst: d.into(),
                    hop_limit,
                    ident,
                    ext
                }),
        ]
    }

    fn arb_l4() -> impl Strategy<Value = L4Spec> {
        let payload = || proptest::collection::vec(any::<u8>(), 0..200);
        let opts = prop_oneof![
            Just(vec![]),
            Just(tcp_options(&[
                tcp::TcpOption::MaxSegmentSize(1460),
                tcp::TcpOption::SackPermitted
            ])),
            (any::<u32>(), any::<u32>()).prop_map(|(tsval, tsecr)| tcp_options(&[
                tcp::TcpOption::NoOperation,
                tcp::TcpOption::NoOperation,
                tcp::TcpOption::Timestamps { tsval, tsecr }
            ])),
        ];
        prop_oneof![
            (
                any::<u16>(),
                any::<u16>(),
                any::<u32>(),
                any::<u32>(),
                any::<u8>(),
                any::<u16>(),
                opts,
                payload()
            )
                .prop_map(|(sport, dport, seq, ack, f, window, options, payload)| {
                    L4Spec::Tcp {
                        sport,
                        dport,
                        seq,
                        ack,
                        flags: Flags(f),
                        window,
                        options,
                        payload,
                    }
                }),
            (any::<u16>(), any::<u16>(), payload()).prop_map(|(sport, dport, payload)| {
                L4Spec::Udp {
                    sport,
                    dport,
                    payload,
                }
            }),
            (
                any::<u8>(),
                any::<u8>(),
                any::<u16>(),
                any::<u16>(),
                payload()
            )
                .prop_map(|(ty, code, ident, seq, payload)| L4Spec::Icmp {
                    ty,
                    code,
                    ident,
                    seq,
                    payload
                }),
            (
                any::<u8>(),
                any::<u8>(),
                any::<u16>(),
                any::<u16>(),
                payload()
            )
                .prop_map(|(ty, code, ident, seq, payload)| L4Spec::Icmpv6 {
                    ty,
                    code,
                    ident,
                    seq,
                    payload
                }),
            (
                prop_oneof![Just(47u8), Just(50), Just(89), Just(132)],
                payload()
            )
                .prop_map(|(proto, payload)| L4Spec::Raw { proto, payload }),
        ]
    }

    prop_compose! {
        pub(crate) fn arb_frame_spec()(
            src_mac in any::<[u8; 6]>(), dst_mac in any::<[u8; 6]>(), vlans in arb_vlans(),
            ip in arb_ip(), l4 in arb_l4(),
        ) -> FrameSpec {
            FrameSpec { src_mac: MacAddr(src_mac), dst_mac: MacAddr(dst_mac), vlans, ip, l4 }
        }
    }

    #[test]
    fn arp_frames_parse() {
        let mac = MacAddr([2, 0, 0, 0, 0, 9]);
        let req = arp_request(mac, Ipv4Addr::new(10, 0, 0, 9), Ipv4Addr::new(10, 0, 0, 1));
        let info = parse_frame(&req).unwrap();
        assert_eq!(
            (info.l3, info.ethertype, info.flow),
            (L3::Arp, EtherType::ARP, None)
        );
        let eth = ethernet::Frame::new_checked(&req[..]).unwrap();
        assert!(eth.dst_addr().is_broadcast());
        let rep = arp_reply(
            mac,
            Ipv4Addr::new(10, 0, 0, 9),
            DEFAULT_DST_MAC,
            Ipv4Addr::new(10, 0, 0, 1),
        );
        let p = arp::Packet::new_checked(&rep[ethernet::HEADER_LEN..]).unwrap();
        assert_eq!(p.operation(), arp::Operation::Reply);
        assert_eq!(parse_frame(&rep).unwrap().l3, L3::Arp);
    }

    #[test]
    fn v4_fragments_cover_the_segment() {
        let mut spec = FrameSpec::new(
            IpSpec::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)),
            L4Spec::udp(1000, 2000, &[0x5a; 100]),
        );
        if let IpSpec::V4 { ident, .. } = &mut spec.ip {
            *ident = 0xbeef;
        }
        let frags = spec.fragments(30);
        assert_eq!(frags.len(), 5); // 108 bytes in 24-byte pieces
        let mut data = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            let info = parse_frame(f).unwrap();
            let ip = ipv4::Packet::new_checked(&f[ethernet::HEADER_LEN..]).unwrap();
            assert_eq!(usize::from(ip.frag_offset()), data.len());
            data.extend_from_slice(ip.payload());
            let more = i != frags.len() - 1;
            match info.frag {
                Fragment::First { id, more: m } => {
                    assert_eq!((i, id, m), (0, 0xbeef, true));
                    assert_eq!(info.flow, Some(spec.flow_key()));
                }
                Fragment::Later {
                    id,
                    offset_bytes,
                    more: m,
                } => {
                    assert_eq!((id, usize::from(offset_bytes), m), (0xbeef, i * 24, more));
                    assert_eq!((info.flow.unwrap().src_port, info.l4_offset), (0, 0));
                }
                Fragment::None => panic!("not a fragment"),
            }
        }
        assert_eq!(data, spec.l4_bytes());
    }

    #[test]
    fn v6_fragments_with_ext_headers() {
        let mut spec = FrameSpec::new(
            IpSpec::v6(
                "2001:db8::1".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
            ),
            L4Spec::Tcp {
                sport: 1,
                dport: 2,
                seq: 3,
                ack: 4,
                flags: Flags::ACK | Flags::PSH,
                window: 5,
                options: vec![],
                payload: vec![7; 50],
            },
        );
        if let IpSpec::V6 { ident, ext, .. } = &mut spec.ip {
            *ident = 0x01020304;
            ext.push(ExtSpec {
                header_type: ip_proto::HOPOPT,
                body: vec![],
            });
        }
        let frags = spec.fragments(1);
        assert_eq!(frags.len(), 3); // 70 bytes: 24 + 24 + 22
        let first = parse_frame(&frags[0]).unwrap();
        assert_eq!(
            first.frag,
            Fragment::First {
                id: 0x01020304,
                more: true
            }
        );
        assert_eq!(first.flow, Some(spec.flow_key()));
        assert_eq!(
            usize::from(first.l4_offset),
            ethernet::HEADER_LEN + 40 + 8 + 8
        );
        let last = parse_frame(&frags[2]).unwrap();
        assert_eq!(
            last.frag,
            Fragment::Later {
                id: 0x01020304,
                offset_bytes: 48,
                more: false
            }
        );
        assert_eq!(last.flow.unwrap().proto, ip_proto::TCP);
    }

    #[test]
    fn small_datagram_is_not_fragmented() {
        let spec = FrameSpec::new(
            IpSpec::v4(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST),
            L4Spec::icmp_echo(1, 2),
        );
        assert_eq!(spec.fragments(1500), vec![spec.build()]);
    }

    proptest! {
        #[test]
        fn built_frames_parse_to_their_flow_key(spec in arb_frame_spec(), pad in 0usize..20) {
            let mut frame = spec.build();
            let len = frame.len();
            frame.resize(len + pad, 0);
            let info = parse_frame(&frame).unwrap();
            prop_assert_eq!(info.flow, Some(spec.flow_key()));
            prop_assert_eq!(info.l3_end(), len);
            prop_assert_eq!(info.frag, Fragment::None);
            prop_assert_eq!(info.vlans, spec.vlans);
            if !matches!(spec.l4, L4Spec::Raw { .. }) {
                prop_assert_eq!(info.l4_bytes(&frame), Some(&spec.l4_bytes()[..]));
            }
        }

        #[test]
        fn fragments_parse(spec in arb_frame_spec(), fragment_len in 1usize..120) {
            let key = spec.flow_key();
            let frags = spec.fragments(fragment_len);
            for (i, f) in frags.iter().enumerate() {
                let info = parse_frame(f).unwrap();
                let flow = info.flow.unwrap();
                prop_assert_eq!((flow.src, flow.dst, flow.proto), (key.src, key.dst, key.proto));
                if i == 0 {
                    prop_assert_eq!(flow, key);
                } else {
                    prop_assert_eq!((flow.src_port, flow.dst_port, info.l4_offset), (0, 0, 0));
                }
                prop_assert_eq!(info.l3_end(), f.len());
            }
            prop_assert!(!frags.is_empty());
        }
    }
}
