//! The edits on built frames, their checksums checked against frames built whole.

use super::*;
use crate::wire::builder::{tcp_options, FrameSpec, IpSpec, L4Spec};
use crate::wire::tcp::{Flags, TcpOption};
use crate::wire::{checksum, parse_frame};
use std::net::{Ipv4Addr, Ipv6Addr};

fn v4() -> IpSpec {
    IpSpec::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2))
}

fn v6() -> IpSpec {
    IpSpec::v6(
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
    )
}

/// A SYN from `ip` with `opts` and `payload`.
fn syn(ip: IpSpec, opts: &[TcpOption<'_>], payload: &[u8]) -> Vec<u8> {
    let mut l4 = L4Spec::tcp_segment(40000, 80, Flags::SYN, 7, 0, payload);
    if let L4Spec::Tcp { options, .. } = &mut l4 {
        *options = tcp_options(opts);
    }
    FrameSpec::new(ip, l4).build()
}

fn cx_of(frame: &[u8], mtu: u32) -> EditCtx {
    let info = parse_frame(frame).expect("parses");
    EditCtx {
        family: info.flow.expect("ip").family,
        l3: info.l3_offset,
        l4: info.l4_offset,
        later_fragment: false,
        hops_taken: 0,
        whole_len: 0,
        mtu,
    }
}

fn edited(mut frame: Vec<u8>, e: Edit, mtu: u32) -> (bool, Vec<u8>) {
    let cx = cx_of(&frame, mtu);
    let ok = apply(&e, &mut frame, &cx);
    (ok, frame)
}

#[test]
fn mss_is_lowered_never_raised() {
    let wscale = TcpOption::WindowScale(7);
    for ip in [v4(), v6()] {
        let mss = |m| [TcpOption::MaxSegmentSize(m), TcpOption::NoOperation, wscale];
        let f = syn(ip.clone(), &mss(1460), &[]);
        // Lowered: the frame is the one built with the new option (both checksums whole).
        let (ok, got) = edited(f.clone(), Edit::Mss(Some(1400)), 1500);
        assert!(ok);
        assert_eq!(got, syn(ip.clone(), &mss(1400), &[]));
        // Never raised.
        assert_eq!(
            edited(f.clone(), Edit::Mss(Some(1500)), 1500),
            (true, f.clone())
        );
        // Clamped to the path MTU less the headers (40 for IPv4, 60 for IPv6).
        let (ok, got) = edited(f.clone(), Edit::Mss(None), 1400);
        let want = if matches!(ip, IpSpec::V4 { .. }) {
            1360
        } else {
            1340
        };
        assert!(ok);
        assert_eq!(got, syn(ip.clone(), &mss(want), &[]));
        // An MTU no larger than the headers drops, as the kernel's target does.
        assert!(!edited(f, Edit::Mss(None), 40).0);
    }
}

#[test]
fn mss_is_inserted_into_a_syn_without_one_when_the_frame_has_room() {
    // The kernel's defaults cap what it inserts: 536 for IPv4.
    let bare = syn(v4(), &[], &[]);
    let mut padded = bare.clone();
    padded.extend_from_slice(&[0; 6]);
    let (ok, got) = edited(padded, Edit::Mss(Some(1400)), 1500);
    assert!(ok);
    let want = syn(v4(), &[TcpOption::MaxSegmentSize(536)], &[]);
    assert_eq!(&got[..want.len()], &want[..]);
    let (ok, got) = edited(bare.clone(), Edit::Mss(Some(500)), 1500);
    // No room after the datagram: left as it is.
    assert_eq!((ok, got), (true, bare));
    // IPv6: 1220 at most.
    let mut f = syn(v6(), &[], &[]);
    f.extend_from_slice(&[0; 4]);
    let (_, got) = edited(f, Edit::Mss(None), 1500);
    let want = syn(v6(), &[TcpOption::MaxSegmentSize(1220)], &[]);
    assert_eq!(got, want);
    // A SYN with data gets none (the kernel does not move data).
    let mut f = syn(v4(), &[], b"data");
    f.extend_from_slice(&[0; 8]);
    assert_eq!(edited(f.clone(), Edit::Mss(Some(1000)), 1500), (true, f));
}

#[test]
fn a_segment_shorter_than_its_header_is_dropped() {
    let mut f = syn(v4(), &[], &[]);
    let cx = cx_of(&f, 1500);
    // doff says 24 bytes of header, the datagram holds 20.
    f[usize::from(cx.l4) + 12] = 6 << 4;
    assert!(!apply(&Edit::Mss(Some(1400)), &mut f, &cx));
    // A later fragment is left alone.
    let cx = EditCtx {
        later_fragment: true,
        ..cx
    };
    assert!(apply(&Edit::Mss(Some(1400)), &mut f, &cx));
}

fn ttl_frame(ttl: u8) -> Vec<u8> {
    let ip = match v4() {
        IpSpec::V4 { src, dst, .. } => IpSpec::V4 {
            src,
            dst,
            ttl,
            ident: 0,
            dont_frag: false,
            options: Vec::new(),
        },
        v => v,
    };
    FrameSpec::new(ip, L4Spec::udp(1, 53, b"q")).build()
}

#[test]
fn ttl_set_inc_dec_with_the_header_checksum() {
    let cases = [
        (HopOp::Set(7), 64, 7),
        (HopOp::Inc(200), 64, 255),
        (HopOp::Inc(1), 64, 65),
        (HopOp::Dec(10), 64, 54),
        (HopOp::Dec(100), 64, 0),
    ];
    for (op, from, to) in cases {
        let (ok, got) = edited(ttl_frame(from), Edit::Hops(op), 1500);
        assert!(ok);
        assert_eq!(got, ttl_frame(to), "{op:?} on {from}");
    }
    // A router's FORWARD chain: the chain sees one less, the frame keeps one more.
    let mut f = ttl_frame(64);
    let cx = EditCtx {
        hops_taken: 1,
        ..cx_of(&f, 1500)
    };
    assert!(apply(&Edit::Hops(HopOp::Set(10)), &mut f, &cx));
    assert_eq!(f, ttl_frame(11));
}

#[test]
fn tos_and_dscp_with_the_header_checksum() {
    let f = ttl_frame(64);
    let l3 = 14;
    let ops = [
        // --set-dscp 0x2e (EF): the ECN bits stay.
        (
            Edit::Tos {
                mask: 0xfc,
                xor: 0x2e << 2,
            },
            0x01,
            0xb9,
        ),
        // --set-tos 0x10/0x3f.
        (
            Edit::Tos {
                mask: 0x3f,
                xor: 0x10,
            },
            0xc3,
            0xd0,
        ),
        // --and-tos 0x0f, --or-tos 0x20, --xor-tos 0xff.
        (
            Edit::Tos {
                mask: !0x0f,
                xor: 0,
            },
            0xab,
            0x0b,
        ),
        (
            Edit::Tos {
                mask: 0x20,
                xor: 0x20,
            },
            0x01,
            0x21,
        ),
        (Edit::Tos { mask: 0, xor: 0xff }, 0x0f, 0xf0),
    ];
    for (e, from, to) in ops {
        let mut g = f.clone();
        g[l3 + 1] = from;
        let sum = checksum::checksum(&{
            let mut h = g[l3..l3 + 20].to_vec();
            h[10..12].fill(0);
            h
        });
        g[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
        let (ok, got) = edited(g, e, 1500);
        assert!(ok);
        assert_eq!(got[l3 + 1], to, "{e:?}");
        let hdr: [u8; 20] = got[l3..l3 + 20].try_into().unwrap();
        assert!(checksum::verify_20(&hdr), "{e:?}");
    }
    // IPv6: the traffic class spans the first two bytes; the flow label stays.
    let mut g = FrameSpec::new(v6(), L4Spec::udp(1, 53, b"q")).build();
    g[l3] = 0x60 | 0x0a;
    g[l3 + 1] = 0x15;
    let (_, got) = edited(
        g,
        Edit::Tos {
            mask: 0xfc,
            xor: 0x2e << 2,
        },
        1500,
    );
    assert_eq!((got[l3], got[l3 + 1]), (0x6b, 0x95));
}

#[test]
fn edits_round_trip_through_the_action() {
    let all = [
        Edit::Mss(Some(1400)),
        Edit::Mss(Some(0)),
        Edit::Mss(None),
        Edit::Tos {
            mask: 0xfc,
            xor: 0xb8,
        },
        Edit::Hops(HopOp::Set(0)),
        Edit::Hops(HopOp::Inc(3)),
        Edit::Hops(HopOp::Dec(255)),
    ];
    for e in all {
        assert_eq!(Edit::decode(e.encode()), Some(e));
    }
    assert_eq!(Edit::decode(3 << 24), None);
}
