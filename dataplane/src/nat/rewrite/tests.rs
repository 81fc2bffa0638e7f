//! Rewrites compared byte for byte with frames the builder synthesises from the expected tuple
//! (so every checksum is checked against a full recomputation).

use super::*;
use crate::wire::builder::{FrameSpec, IpSpec, L4Spec};
use crate::wire::tcp::Flags;
use crate::wire::{ethernet, parse_frame, Family, IpAddr128};
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn ip_spec(k: &FlowKey) -> IpSpec {
    match k.family {
        Family::V4 => IpSpec::v4(k.src.to_v4().unwrap(), k.dst.to_v4().unwrap()),
        Family::V6 => IpSpec::v6(k.src.to_v6(), k.dst.to_v6()),
    }
}

/// A frame with tuple `k` carrying `payload` (TCP/UDP data or ICMP echo data).
fn frame(k: &FlowKey, payload: &[u8]) -> Vec<u8> {
    let [ty, code] = k.dst_port.to_be_bytes();
    let l4 = match k.proto {
        ip_proto::TCP => L4Spec::Tcp {
            sport: k.src_port,
            dport: k.dst_port,
            seq: 0x1234_5678,
            ack: 0x9abc_def0,
            flags: Flags::ACK | Flags::PSH,
            window: 1000,
            options: Vec::new(),
            payload: payload.to_vec(),
        },
        ip_proto::UDP => L4Spec::udp(k.src_port, k.dst_port, payload),
        ip_proto::ICMP => L4Spec::Icmp {
            ty,
            code,
            ident: k.src_port,
            seq: 7,
            payload: payload.to_vec(),
        },
        ip_proto::ICMPV6 => L4Spec::Icmpv6 {
            ty,
            code,
            ident: k.src_port,
            seq: 7,
            payload: payload.to_vec(),
        },
        p => L4Spec::Raw {
            proto: p,
            payload: payload.to_vec(),
        },
    };
    FrameSpec::new(ip_spec(k), l4).build()
}

fn apply(f: &[u8], dir: Dir, b: &Binding) -> Result<Vec<u8>, RewriteError> {
    let mut out = f.to_vec();
    let info = parse_frame(&out).unwrap();
    rewrite(&mut out, &info, dir, b)?;
    Ok(out)
}

fn v4(a: [u8; 4]) -> IpAddr128 {
    IpAddr128::from_v4(Ipv4Addr::from(a))
}

fn key4(src: [u8; 4], dst: [u8; 4], proto: u8, sp: u16, dp: u16) -> FlowKey {
    FlowKey::new_v4(src.into(), dst.into(), proto, sp, dp)
}

fn snat(orig: FlowKey, src: IpAddr128, port: u16) -> Binding {
    let t = FlowKey {
        src,
        src_port: port,
        ..orig
    };
    Binding {
        orig,
        reply: t.reply(),
    }
}

fn dnat(orig: FlowKey, dst: IpAddr128, port: u16) -> Binding {
    let t = FlowKey {
        dst,
        dst_port: port,
        ..orig
    };
    Binding {
        orig,
        reply: t.reply(),
    }
}

/// Both directions of `b` agree with the builder, and the inverse restores the original.
fn check_both_directions(b: &Binding, payload: &[u8]) {
    for dir in [Dir::Orig, Dir::Reply] {
        let (from, to) = b.translation(dir);
        let f = frame(&from, payload);
        let out = apply(&f, dir, b).unwrap();
        assert_eq!(out, frame(&to, payload), "{dir:?} {from:?} -> {to:?}");
        assert_eq!(parse_frame(&out).unwrap().flow, Some(to));
        assert_eq!(
            apply(&out, dir, &b.inverse()).unwrap(),
            f,
            "inverse {dir:?}"
        );
    }
}

#[test]
fn snat_tcp_v4() {
    let orig = key4([10, 0, 0, 2], [198, 51, 100, 7], ip_proto::TCP, 40000, 80);
    check_both_directions(
        &snat(orig, v4([203, 0, 113, 1]), 61000),
        b"GET / HTTP/1.1\r\n",
    );
}

#[test]
fn dnat_udp_v4_and_zero_checksum() {
    let orig = key4([198, 51, 100, 7], [203, 0, 113, 1], ip_proto::UDP, 5353, 53);
    let b = dnat(orig, v4([10, 0, 0, 9]), 5300);
    check_both_directions(&b, b"query");
    // No checksum stays no checksum (RFC 768).
    let mut f = frame(&orig, b"query");
    f[14 + 20 + 6..14 + 20 + 8].fill(0);
    let out = apply(&f, Dir::Orig, &b).unwrap();
    assert_eq!(&out[14 + 20 + 6..14 + 20 + 8], &[0, 0]);
    assert_eq!(&out[14 + 16..14 + 20], &[10, 0, 0, 9]);
    assert_eq!(&out[14 + 22..14 + 24], &5300u16.to_be_bytes());
}

#[test]
fn udp_checksum_that_becomes_zero_is_stored_as_ffff() {
    // Search for a translation after which the full checksum would be 0.
    let orig = key4([10, 0, 0, 2], [198, 51, 100, 7], ip_proto::UDP, 1000, 53);
    let f = frame(&orig, b"x");
    let found = (0..=u16::MAX).find_map(|port| {
        let b = snat(orig, v4([203, 0, 113, 1]), port);
        let out = apply(&f, Dir::Orig, &b).unwrap();
        (out[14 + 20 + 6..14 + 20 + 8] == [0xff, 0xff]).then_some((b, out))
    });
    let (b, out) = found.expect("some port gives a zero sum");
    assert_eq!(
        out,
        frame(&b.translated_orig(), b"x"),
        "builder stores 0xffff too"
    );
}

#[test]
fn icmp_echo_identifier_v4_and_v6() {
    let orig = key4([10, 0, 0, 2], [198, 51, 100, 7], ip_proto::ICMP, 77, 0x0800);
    check_both_directions(&snat(orig, v4([203, 0, 113, 1]), 1234), b"ping data");
    let s: Ipv6Addr = "fd00::2".parse().unwrap();
    let d: Ipv6Addr = "2001:db8::7".parse().unwrap();
    let orig = FlowKey::new_v6(s, d, ip_proto::ICMPV6, 99, 0x8000);
    let pubv6 = IpAddr128::from_v6("2001:db8:1::1".parse().unwrap());
    check_both_directions(&snat(orig, pubv6, 4321), b"ping6");
}

#[test]
fn ipv6_tcp_and_udp_snat_and_dnat() {
    let s: Ipv6Addr = "fd00::2".parse().unwrap();
    let d: Ipv6Addr = "2001:db8::7".parse().unwrap();
    let p = IpAddr128::from_v6("2001:db8:1::1".parse().unwrap());
    for proto in [ip_proto::TCP, ip_proto::UDP] {
        let orig = FlowKey::new_v6(s, d, proto, 40000, 443);
        check_both_directions(&snat(orig, p, 50000), b"hello");
        check_both_directions(&dnat(orig, p, 8443), b"hello");
    }
}

#[test]
fn hairpin_rewrites_both_sides() {
    // Inside client 10.0.0.2 reaches inside server 10.0.0.9 through public 203.0.113.1:80,
    // source-translated to the public address too.
    let orig = key4([10, 0, 0, 2], [203, 0, 113, 1], ip_proto::TCP, 40000, 80);
    let t = key4([203, 0, 113, 1], [10, 0, 0, 9], ip_proto::TCP, 40001, 8080);
    let b = Binding {
        orig,
        reply: t.reply(),
    };
    assert!(b.rewrites_src(Dir::Orig) && b.rewrites_dst(Dir::Orig));
    check_both_directions(&b, b"payload");
}

#[test]
fn other_protocols_get_addresses_only() {
    let orig = key4([10, 0, 0, 2], [198, 51, 100, 7], 47, 0, 0);
    check_both_directions(&snat(orig, v4([203, 0, 113, 1]), 0), b"gre-ish");
}

#[test]
fn later_fragments_get_addresses_and_first_fragment_the_whole_delta() {
    let orig = key4([10, 0, 0, 2], [198, 51, 100, 7], ip_proto::UDP, 1000, 53);
    let b = snat(orig, v4([203, 0, 113, 1]), 2000);
    let spec = |k: &FlowKey| {
        FrameSpec::new(
            ip_spec(k),
            L4Spec::udp(k.src_port, k.dst_port, &[0x5a; 3000]),
        )
    };
    let before = spec(&orig).fragments(1400);
    let after = spec(&b.translated_orig()).fragments(1400);
    assert_eq!(before.len(), 3);
    for (f, want) in before.iter().zip(&after) {
        assert_eq!(&apply(f, Dir::Orig, &b).unwrap(), want);
    }
}

/// An ICMP error from `from` to `to` quoting `quote` (an IP datagram, possibly cut).
fn icmp_error_v4(from: [u8; 4], to: IpAddr128, ty: u8, code: u8, quote: &[u8]) -> Vec<u8> {
    FrameSpec::new(
        IpSpec::v4(from.into(), to.to_v4().unwrap()),
        L4Spec::Icmp {
            ty,
            code,
            ident: 0,
            seq: 0,
            payload: quote.to_vec(),
        },
    )
    .build()
}

#[test]
fn icmp_error_about_snat_traffic_is_translated_back() {
    let orig = key4([10, 0, 0, 2], [198, 51, 100, 7], ip_proto::TCP, 40000, 80);
    let b = snat(orig, v4([203, 0, 113, 1]), 61000);
    let router = [192, 0, 2, 254];
    let sent = frame(&b.translated_orig(), b"data");
    let want = frame(&orig, b"data");
    // Whole quote (inner TCP checksum included) and the RFC 792 minimum (header + 8 bytes).
    for cut in [sent.len() - 14, 28] {
        let err = icmp_error_v4(router, b.reply.dst, 11, 0, &sent[14..14 + cut]);
        let out = apply(&err, Dir::Reply, &b).unwrap();
        let expect = icmp_error_v4(router, orig.src, 11, 0, &want[14..14 + cut]);
        assert_eq!(out, expect, "quote of {cut} bytes");
        assert_eq!(apply(&out, Dir::Reply, &b.inverse()).unwrap(), err);
    }
}

#[test]
fn fragmented_icmp_error_is_translated_fragment_by_fragment() {
    // An IPv4 error quoting a large datagram, itself fragmented on the way (its quote exceeds
    // 576 bytes only because the reporting router is not RFC 1812-bound; the fragments must
    // still come out as the fragments of the translated error).
    let orig = key4([10, 0, 0, 2], [198, 51, 100, 7], ip_proto::UDP, 1000, 53);
    let b = snat(orig, v4([203, 0, 113, 1]), 2000);
    let router = [192, 0, 2, 254];
    let spec = |to: IpAddr128, quoted: &FlowKey| {
        let sent = frame(quoted, &[0x42; 1200]);
        FrameSpec::new(
            IpSpec::v4(router.into(), to.to_v4().unwrap()),
            L4Spec::Icmp {
                ty: 3,
                code: 4,
                ident: 0,
                seq: 1000,
                payload: sent[14..].to_vec(),
            },
        )
    };
    let got = spec(b.reply.dst, &b.translated_orig()).fragments(600);
    let want = spec(orig.src, &orig).fragments(600);
    assert_eq!(got.len(), 3);
    for (f, w) in got.iter().zip(&want) {
        assert_eq!(&apply(f, Dir::Reply, &b).unwrap(), w);
    }
}

#[test]
fn icmp_error_from_behind_dnat_takes_the_public_source() {
    // Client 198.51.100.7 -> 203.0.113.1:80, DNAT to 10.0.0.9:8080. A router between the
    // gateway and the server reports the translated packet back: the client must see an error
    // from the address it talked to, quoting the packet it sent.
    let orig = key4([198, 51, 100, 7], [203, 0, 113, 1], ip_proto::UDP, 5000, 80);
    let b = dnat(orig, v4([10, 0, 0, 9]), 8080);
    let sent = frame(&b.translated_orig(), b"q");
    let err = icmp_error_v4([10, 0, 0, 254], orig.src, 3, 1, &sent[14..]);
    let out = apply(&err, Dir::Reply, &b).unwrap();
    let want = frame(&orig, b"q");
    assert_eq!(
        out,
        icmp_error_v4([203, 0, 113, 1], orig.src, 3, 1, &want[14..])
    );
}

#[test]
fn icmp_error_about_a_ping_translates_the_identifier() {
    let orig = key4([10, 0, 0, 2], [198, 51, 100, 7], ip_proto::ICMP, 77, 0x0800);
    let b = snat(orig, v4([203, 0, 113, 1]), 5555);
    let sent = frame(&b.translated_orig(), b"abcdefgh");
    let err = icmp_error_v4([192, 0, 2, 254], b.reply.dst, 11, 0, &sent[14..]);
    let out = apply(&err, Dir::Reply, &b).unwrap();
    let want = frame(&orig, b"abcdefgh");
    assert_eq!(
        out,
        icmp_error_v4([192, 0, 2, 254], orig.src, 11, 0, &want[14..])
    );
}

#[test]
fn icmpv6_error_and_packet_too_big() {
    let s: Ipv6Addr = "fd00::2".parse().unwrap();
    let d: Ipv6Addr = "2001:db8::7".parse().unwrap();
    let p = IpAddr128::from_v6("2001:db8:1::1".parse().unwrap());
    let orig = FlowKey::new_v6(s, d, ip_proto::TCP, 40000, 443);
    let b = snat(orig, p, 50000);
    let sent = frame(&b.translated_orig(), &[1; 100]);
    let want = frame(&orig, &[1; 100]);
    let router: Ipv6Addr = "2001:db8:ff::1".parse().unwrap();
    let err = |to: Ipv6Addr, quote: &[u8]| {
        FrameSpec::new(
            IpSpec::v6(router, to),
            L4Spec::Icmpv6 {
                ty: icmpv6::msg_type::PACKET_TOO_BIG,
                code: 0,
                ident: 0,
                seq: 1280,
                payload: quote.to_vec(),
            },
        )
        .build()
    };
    let out = apply(&err(p.to_v6(), &sent[14..]), Dir::Reply, &b).unwrap();
    assert_eq!(out, err(s, &want[14..]));
}

#[test]
fn bad_quotes_and_non_ip_are_errors_not_panics() {
    let orig = key4([10, 0, 0, 2], [198, 51, 100, 7], ip_proto::UDP, 1, 2);
    let b = snat(orig, v4([203, 0, 113, 1]), 3);
    let err = icmp_error_v4([192, 0, 2, 1], b.reply.dst, 3, 3, &[0x60; 28]);
    assert_eq!(apply(&err, Dir::Reply, &b), Err(RewriteError::BadQuote));
    let short = icmp_error_v4([192, 0, 2, 1], b.reply.dst, 3, 3, &[0x45, 0, 0, 20]);
    assert_eq!(apply(&short, Dir::Reply, &b), Err(RewriteError::BadQuote));
    let arp = crate::wire::builder::arp_request(
        ethernet::MacAddr([2, 0, 0, 0, 0, 1]),
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 0, 0, 2),
    );
    let mut a = arp.clone();
    let info = parse_frame(&a).unwrap();
    assert_eq!(
        rewrite(&mut a, &info, Dir::Orig, &b),
        Err(RewriteError::NotIp)
    );
}

#[test]
fn tx_offload_leaves_what_the_device_completes() {
    // What a device does: the checksum of the L4 bytes, seeded by the field's content.
    let device = |l4: &[u8]| crate::wire::checksum::checksum(l4);
    let s: Ipv6Addr = "fd00::2".parse().unwrap();
    let d: Ipv6Addr = "2001:db8::7".parse().unwrap();
    for k in [
        key4([10, 0, 0, 2], [198, 51, 100, 7], ip_proto::TCP, 1, 2),
        key4([10, 0, 0, 2], [198, 51, 100, 7], ip_proto::UDP, 1, 2),
        FlowKey::new_v6(s, d, ip_proto::TCP, 3, 4),
        FlowKey::new_v6(s, d, ip_proto::UDP, 3, 4),
    ] {
        let want = frame(&k, b"offloaded payload");
        let mut f = want.clone();
        let info = parse_frame(&f).unwrap();
        assert!(prepare_tx_offload(&mut f, &info).unwrap());
        let l4 = usize::from(info.l4_offset);
        let at = l4 + if k.proto == ip_proto::TCP { 16 } else { 6 };
        let mut done = f.clone();
        let c = device(&f[l4..]);
        done[at..at + 2].copy_from_slice(&c.to_be_bytes());
        if k.family == Family::V4 {
            assert_eq!(
                &f[24..26],
                &[0, 0],
                "IPv4 header checksum left to the device"
            );
            let h = crate::wire::checksum::checksum(&done[14..34]);
            done[24..26].copy_from_slice(&h.to_be_bytes());
        }
        assert_eq!(done, want, "{k:?}");
    }
    let mut later = FrameSpec::new(
        IpSpec::v4([10, 0, 0, 2].into(), [198, 51, 100, 7].into()),
        L4Spec::udp(1, 2, &[0; 3000]),
    )
    .fragments(1400)
    .remove(1);
    let info = parse_frame(&later).unwrap();
    assert!(!prepare_tx_offload(&mut later, &info).unwrap());
}

fn arb_key(v6: bool) -> impl Strategy<Value = FlowKey> {
    let proto = prop_oneof![
        Just(ip_proto::TCP),
        Just(ip_proto::UDP),
        Just(if v6 { ip_proto::ICMPV6 } else { ip_proto::ICMP }),
        Just(47u8),
    ];
    (
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        proto,
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(move |(s, d, proto, sp, dp)| {
            let (src, dst) = if v6 {
                // Keep the builder's addresses out of the v4-mapped and multicast corners.
                let fix = |mut a: [u8; 16]| {
                    a[0] = 0x20;
                    a
                };
                (IpAddr128(fix(s)), IpAddr128(fix(d)))
            } else {
                (v4([s[0], s[1], s[2], s[3]]), v4([d[0], d[1], d[2], d[3]]))
            };
            let (sp, dp) = match proto {
                ip_proto::ICMP => (sp, 0x0800),
                ip_proto::ICMPV6 => (sp, 0x8000),
                47 => (0, 0),
                _ => (sp, dp),
            };
            FlowKey {
                src,
                dst,
                src_port: sp,
                dst_port: dp,
                proto,
                family: if v6 { Family::V6 } else { Family::V4 },
            }
        })
}

fn arb_binding() -> impl Strategy<Value = Binding> {
    any::<bool>().prop_flat_map(|v6| {
        (arb_key(v6), arb_key(v6), any::<u8>()).prop_map(|(orig, other, which)| {
            // Translate the source, the destination or both, to `other`'s values.
            let mut t = orig;
            if which & 1 != 0 || which & 3 == 0 {
                t.src = other.src;
                if orig.proto != 47 {
                    t.src_port = other.src_port;
                }
            }
            if which & 2 != 0 {
                t.dst = other.dst;
                if orig.proto == ip_proto::TCP || orig.proto == ip_proto::UDP {
                    t.dst_port = other.dst_port;
                }
            }
            Binding {
                orig,
                reply: t.reply(),
            }
        })
    })
}

proptest! {
    #[test]
    fn rewrite_matches_full_recompute_and_inverts(
        b in arb_binding(),
        payload in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        for dir in [Dir::Orig, Dir::Reply] {
            let (from, to) = b.translation(dir);
            let f = frame(&from, &payload);
            let out = apply(&f, dir, &b).unwrap();
            prop_assert_eq!(&out, &frame(&to, &payload));
            prop_assert_eq!(apply(&out, dir, &b.inverse()).unwrap(), f);
        }
    }

    #[test]
    fn icmp_error_quotes_invert(
        b in arb_binding().prop_filter("v4", |b| b.orig.family == Family::V4),
        payload in proptest::collection::vec(any::<u8>(), 0..40),
        cut in 28usize..200,
    ) {
        let sent = frame(&b.translated_orig(), &payload);
        let ip = &sent[14..];
        let quote = &ip[..cut.min(ip.len())];
        // A quote that ends inside the TCP checksum cannot have it updated (the carry needs
        // both bytes): that byte stays as it was, so the comparison below does not apply.
        prop_assume!(!(b.orig.proto == ip_proto::TCP && quote.len() == 20 + 17));
        let err = icmp_error_v4([192, 0, 2, 254], b.reply.dst, 3, 1, quote);
        let out = apply(&err, Dir::Reply, &b).unwrap();
        let icmp = &out[14 + 20..];
        prop_assert_eq!(crate::wire::checksum::checksum(icmp), 0, "outer ICMP checksum verifies");
        let orig_ip = frame(&b.orig, &payload);
        prop_assert_eq!(&icmp[8..], &orig_ip[14..14 + quote.len()], "quote translated back");
        let back = apply(&out, Dir::Reply, &b.inverse()).unwrap();
        if b.rewrites_src(Dir::Reply) {
            // The reporting router's address was replaced (as Linux does): only the message
            // comes back.
            prop_assert_eq!(&back[14 + 20..], &err[14 + 20..]);
        } else {
            prop_assert_eq!(back, err);
        }
    }

    #[test]
    fn never_panics_on_garbage(
        data in proptest::collection::vec(any::<u8>(), 0..200),
        b in arb_binding(),
        dir in prop_oneof![Just(Dir::Orig), Just(Dir::Reply)],
    ) {
        let mut f = data.clone();
        if let Ok(info) = parse_frame(&data) {
            let _ = rewrite(&mut f, &info, dir, &b);
        }
    }
}

proptest! {
    /// The straight-line IPv4 TCP/UDP path gives the general path's bytes, checksums right or
    /// wrong (a wrong one stays wrong by the same amount), a UDP checksum of zero included.
    #[test]
    fn straight_line_path_matches_the_general_one(
        b in arb_binding().prop_filter("v4 tcp/udp", |b| {
            b.orig.family == Family::V4 && matches!(b.orig.proto, ip_proto::TCP | ip_proto::UDP)
        }),
        payload in proptest::collection::vec(any::<u8>(), 0..40),
        ip_ck in any::<u16>(),
        l4_ck in prop_oneof![Just(0u16), Just(0xffff), any::<u16>()],
    ) {
        for dir in [Dir::Orig, Dir::Reply] {
            let (from, _) = b.translation(dir);
            let mut f = frame(&from, &payload);
            // Parsed before the damage (the parser refuses a bad IPv4 header checksum).
            let info = parse_frame(&f).unwrap();
            f[14 + 10..14 + 12].copy_from_slice(&ip_ck.to_be_bytes());
            let at = 14 + 20 + if from.proto == ip_proto::TCP { 16 } else { 6 };
            f[at..at + 2].copy_from_slice(&l4_ck.to_be_bytes());
            let mut fast = f.clone();
            let mut general = f.clone();
            prop_assert_eq!(rewrite(&mut fast, &info, dir, &b), Ok(()));
            prop_assert_eq!(rewrite_other(&mut general, &info, dir, &b), Ok(()));
            prop_assert_eq!(fast, general);
        }
    }
}
