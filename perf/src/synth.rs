//! Generated traffic: the demo capture (well-formed flows of every kind the parser knows, and
//! malformed frames, each with the verdict the bridge must give it).

use dataplane::wire::builder::{ExtSpec, FrameSpec, IpSpec, L4Spec};
use dataplane::wire::checksum;
use dataplane::wire::ethernet::VlanTag;
use dataplane::wire::tcp::Flags;
use dataplane::wire::{builder, MacAddr};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What the bridge must do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Forward,
    /// Dropped; the drop reason's name.
    Drop(&'static str),
}

/// One generated frame and its expected fate.
#[derive(Clone, Debug)]
pub struct SynthFrame {
    pub what: &'static str,
    pub frame: Vec<u8>,
    pub expect: Expect,
    /// The IP source, for frames that have one.
    pub src: Option<IpAddr>,
    /// True when the frame has no VLAN tag (so it maps onto a raw-IP capture).
    pub vlan_free: bool,
}

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const RESOLVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

fn src_of(spec: &FrameSpec) -> IpAddr {
    match spec.ip {
        IpSpec::V4 { src, .. } => src.into(),
        IpSpec::V6 { src, .. } => src.into(),
    }
}

fn fwd(what: &'static str, spec: &FrameSpec) -> SynthFrame {
    SynthFrame {
        what,
        frame: spec.build(),
        expect: Expect::Forward,
        src: Some(src_of(spec)),
        vlan_free: spec.vlans[0].is_none(),
    }
}

fn bad(what: &'static str, reason: &'static str, frame: Vec<u8>) -> SynthFrame {
    SynthFrame {
        what,
        frame,
        expect: Expect::Drop(reason),
        src: None,
        vlan_free: true,
    }
}

fn tcp(sport: u16, dport: u16, flags: Flags, seq: u32, ack: u32, payload: &[u8]) -> L4Spec {
    L4Spec::Tcp {
        sport,
        dport,
        seq,
        ack,
        flags,
        window: 64240,
        options: Vec::new(),
        payload: payload.to_vec(),
    }
}

/// Rewrites the IPv4 header checksum of a frame whose IPv4 header starts at byte 14.
fn fix_ipv4_checksum(frame: &mut [u8]) {
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let end = (14 + ihl.max(20)).min(frame.len());
    frame[24] = 0;
    frame[25] = 0;
    let c = checksum::checksum(&frame[14..end]);
    frame[24..26].copy_from_slice(&c.to_be_bytes());
}

fn flows() -> Vec<SynthFrame> {
    let syn = Flags::SYN;
    let synack = Flags(Flags::SYN.0 | Flags::ACK.0);
    let ack = Flags::ACK;
    let pshack = Flags(Flags::PSH.0 | Flags::ACK.0);
    let finack = Flags(Flags::FIN.0 | Flags::ACK.0);
    let get = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n";
    let c2s = |l4| FrameSpec::new(IpSpec::v4(CLIENT, SERVER), l4);
    let s2c = |l4| FrameSpec::new(IpSpec::v4(SERVER, CLIENT), l4);
    let mut v = vec![
        fwd("tcp syn", &c2s(tcp(40000, 80, syn, 1000, 0, &[]))),
        fwd("tcp syn-ack", &s2c(tcp(80, 40000, synack, 5000, 1001, &[]))),
        fwd("tcp ack", &c2s(tcp(40000, 80, ack, 1001, 5001, &[]))),
        fwd("tcp data", &c2s(tcp(40000, 80, pshack, 1001, 5001, get))),
        fwd(
            "tcp data reply",
            &s2c(tcp(
                80,
                40000,
                pshack,
                5001,
                1001 + get.len() as u32,
                &[b'x'; 600],
            )),
        ),
        fwd(
            "tcp fin",
            &c2s(tcp(40000, 80, finack, 1001 + get.len() as u32, 5601, &[])),
        ),
        fwd(
            "tcp fin reply",
            &s2c(tcp(80, 40000, finack, 5601, 1002 + get.len() as u32, &[])),
        ),
        fwd(
            "udp dns query",
            &FrameSpec::new(
                IpSpec::v4(CLIENT, RESOLVER),
                L4Spec::udp(53000, 53, &[0xab; 29]),
            ),
        ),
        fwd(
            "udp dns reply",
            &FrameSpec::new(
                IpSpec::v4(RESOLVER, CLIENT),
                L4Spec::udp(53, 53000, &[0xcd; 61]),
            ),
        ),
        fwd("icmp echo", &c2s(L4Spec::icmp_echo(7, 1))),
        fwd(
            "icmp echo reply",
            &s2c(L4Spec::Icmp {
                ty: 0,
                code: 0,
                ident: 7,
                seq: 1,
                payload: vec![0; 56],
            }),
        ),
        fwd(
            "ipv6 tcp syn",
            &FrameSpec::new(
                IpSpec::v6(CLIENT6, SERVER6),
                tcp(40001, 443, syn, 9, 0, &[]),
            ),
        ),
        fwd(
            "ipv6 tcp syn-ack",
            &FrameSpec::new(
                IpSpec::v6(SERVER6, CLIENT6),
                tcp(443, 40001, synack, 77, 10, &[]),
            ),
        ),
        fwd(
            "icmpv6 echo",
            &FrameSpec::new(IpSpec::v6(CLIENT6, SERVER6), L4Spec::icmpv6_echo(9, 1)),
        ),
        fwd("ipv6 udp with extension headers", &{
            let mut ip = IpSpec::v6(CLIENT6, SERVER6);
            if let IpSpec::V6 { ext, .. } = &mut ip {
                ext.push(ExtSpec {
                    header_type: 0,
                    body: vec![0; 6],
                });
                ext.push(ExtSpec {
                    header_type: 60,
                    body: vec![0; 14],
                });
            }
            FrameSpec::new(ip, L4Spec::udp(5000, 5001, b"ext"))
        }),
        fwd("ipv4 with options", &{
            let mut ip = IpSpec::v4(CLIENT, SERVER);
            if let IpSpec::V4 { options, .. } = &mut ip {
                // NOP, then Record Route with room for two addresses (RFC 791 section 3.1).
                options.extend_from_slice(&[1, 7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0]);
            }
            FrameSpec::new(ip, L4Spec::udp(1234, 5678, b"options"))
        }),
    ];
    let mut tagged = c2s(L4Spec::udp(6000, 6001, b"vlan 100"));
    tagged.vlans[0] = Some(VlanTag::new(0x8100, 0, false, 100));
    v.push(fwd("802.1Q udp", &tagged));
    let mut qinq = c2s(tcp(40002, 22, syn, 1, 0, &[]));
    qinq.vlans = [
        Some(VlanTag::new(0x88a8, 0, false, 10)),
        Some(VlanTag::new(0x8100, 3, false, 200)),
    ];
    v.push(fwd("802.1ad qinq tcp", &qinq));
    let mut big = c2s(L4Spec::udp(7000, 7001, &[0x5a; 3000]));
    if let IpSpec::V4 { ident, .. } = &mut big.ip {
        *ident = 0x4242;
    }
    for f in big.fragments(1400) {
        v.push(SynthFrame {
            what: "ipv4 fragment",
            frame: f,
            expect: Expect::Forward,
            src: Some(CLIENT.into()),
            vlan_free: true,
        });
    }
    let mut big6 = FrameSpec::new(
        IpSpec::v6(CLIENT6, SERVER6),
        L4Spec::udp(7002, 7003, &[0xa5; 2500]),
    );
    if let IpSpec::V6 { ident, .. } = &mut big6.ip {
        *ident = 0xbeef;
    }
    for f in big6.fragments(1200) {
        v.push(SynthFrame {
            what: "ipv6 fragment",
            frame: f,
            expect: Expect::Forward,
            src: Some(CLIENT6.into()),
            vlan_free: true,
        });
    }
    v.push(SynthFrame {
        what: "arp request",
        frame: builder::arp_request(MacAddr([0x02, 0, 0, 0, 0, 0x01]), CLIENT, SERVER),
        expect: Expect::Forward,
        src: None,
        vlan_free: true,
    });
    v
}

fn malformed() -> Vec<SynthFrame> {
    let base = FrameSpec::new(
        IpSpec::v4(CLIENT, SERVER),
        tcp(40100, 80, Flags::SYN, 1, 0, &[]),
    )
    .build();
    let udp = FrameSpec::new(IpSpec::v4(CLIENT, SERVER), L4Spec::udp(40101, 53, &[1; 20])).build();
    let mut v = Vec::new();
    v.push(bad("runt frame", "ethernet_truncated", base[..10].to_vec()));
    v.push(bad("ipv4 cut short", "ipv4_truncated", base[..40].to_vec()));
    let mut f = base.clone();
    f[24] ^= 0xff;
    v.push(bad("ipv4 bad header checksum", "ipv4_bad_checksum", f));
    let mut f = base.clone();
    f[14] = 0x55;
    fix_ipv4_checksum(&mut f);
    v.push(bad("ipv4 header says version 5", "ipv4_bad_version", f));
    let mut f = base.clone();
    f[14] = 0x44;
    v.push(bad("ipv4 ihl 4", "ipv4_bad_header_len", f));
    let mut f = base.clone();
    f[16..18].copy_from_slice(&12u16.to_be_bytes());
    fix_ipv4_checksum(&mut f);
    v.push(bad(
        "ipv4 total length below header",
        "ipv4_bad_total_len",
        f,
    ));
    let mut f = base.clone();
    f[14 + 20 + 12] = 0xf0; // data offset 15 words: beyond the 20-byte segment
    v.push(bad(
        "tcp data offset beyond segment",
        "tcp_bad_data_offset",
        f,
    ));
    let mut f = udp.clone();
    f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&4u16.to_be_bytes());
    v.push(bad("udp length 4", "udp_bad_length", f));
    let mut f = udp.clone();
    f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&200u16.to_be_bytes());
    v.push(bad("udp length beyond datagram", "udp_bad_length", f));
    let icmp = FrameSpec::new(
        IpSpec::v4(CLIENT, SERVER),
        L4Spec::Raw {
            proto: 1,
            payload: vec![8, 0, 0, 0],
        },
    )
    .build();
    v.push(bad("icmp header cut short", "icmp_truncated", icmp));
    let mut f = base.clone();
    f[20] |= 0x20; // more fragments, offset 0: a first fragment
    let ip_len = 20 + 8; // 8 of the TCP header's 20 bytes (RFC 1858 tiny fragment)
    f[16..18].copy_from_slice(&(ip_len as u16).to_be_bytes());
    f.truncate(14 + ip_len);
    fix_ipv4_checksum(&mut f);
    v.push(bad(
        "ipv4 first fragment too short for ports",
        "ipv4_tiny_fragment",
        f,
    ));
    let mut three = Vec::from(&base[..12]);
    for (tpid, vid) in [(0x88a8u16, 1u16), (0x8100, 2), (0x8100, 3)] {
        three.extend_from_slice(&tpid.to_be_bytes());
        three.extend_from_slice(&vid.to_be_bytes());
    }
    three.extend_from_slice(&base[12..]);
    v.push(bad("three vlan tags", "vlan_too_many_tags", three));
    let v6 = FrameSpec::new(
        IpSpec::v6(CLIENT6, SERVER6),
        tcp(40200, 443, Flags::SYN, 1, 0, &[]),
    )
    .build();
    v.push(bad("ipv6 cut short", "ipv6_truncated", v6[..50].to_vec()));
    let mut f = v6.clone();
    f[18..20].copy_from_slice(&60u16.to_be_bytes()); // payload length beyond the frame
    v.push(bad("ipv6 payload length beyond frame", "ipv6_truncated", f));
    let mut ip = IpSpec::v6(CLIENT6, SERVER6);
    if let IpSpec::V6 { ext, .. } = &mut ip {
        ext.push(ExtSpec {
            header_type: 60,
            body: vec![0; 6],
        });
        ext.push(ExtSpec {
            header_type: 0,
            body: vec![0; 6],
        });
    }
    v.push(bad(
        "ipv6 hop-by-hop not first",
        "ipv6_ext_header_order",
        FrameSpec::new(ip, L4Spec::udp(1, 2, b"x")).build(),
    ));
    let mut lldp = vec![
        0x01, 0x80, 0xc2, 0, 0, 0x0e, 0x02, 0, 0, 0, 0, 0x09, 0x88, 0xcc,
    ];
    lldp.extend_from_slice(&[0x02, 0x07, 0x04, 0x02, 0, 0, 0, 0, 0x09, 0, 0]);
    lldp.resize(60, 0);
    v.push(bad("lldp (non-ip)", "non_ip_policy", lldp));
    v
}

/// The demo capture: well-formed flows interleaved with malformed frames, each with its
/// expected verdict under a bridge that forwards ARP and drops other non-IP frames.
pub fn demo_frames() -> Vec<SynthFrame> {
    let good = flows();
    let bad = malformed();
    let mut out = Vec::with_capacity(good.len() + bad.len());
    let mut b = bad.into_iter();
    for (i, g) in good.into_iter().enumerate() {
        out.push(g);
        if i % 2 == 1 {
            out.extend(b.next());
        }
    }
    out.extend(b);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::pipeline::{Bridge, Policy};
    use dataplane::verdict::Verdict;

    #[test]
    fn demo_frames_get_their_expected_verdicts() {
        let bridge = Bridge::new(&[(0, 1)], Policy::Forward, Policy::Drop);
        for f in demo_frames() {
            let (v, _) = bridge.process(0, &f.frame);
            let got = match v {
                Verdict::Forward(1) => Expect::Forward,
                Verdict::Forward(p) => panic!("{}: forwarded to port {p}", f.what),
                Verdict::Local => panic!("{}: delivered locally by a bridge", f.what),
                Verdict::Drop(r) => Expect::Drop(r.name()),
            };
            assert_eq!(got, f.expect, "{}", f.what);
        }
    }
}
