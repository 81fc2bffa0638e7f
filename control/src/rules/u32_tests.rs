//! `-m u32`: libxt_u32's grammar and refusals, and the published idioms on hand-built frames.

use super::parse::u32_parse;
use super::tests::{assert_refused, compile, wrap};
use super::*;
use dataplane::classify::u32_match::Op;
use dataplane::classify::{Action, Check, Wire};
use dataplane::filter::packet_meta;
use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
use std::net::{Ipv4Addr, Ipv6Addr};

fn set(body: &str, family: Family) -> RuleSet {
    let text = format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{body}\nCOMMIT\n"
    );
    compile(&text, family).unwrap_or_else(|e| panic!("{e:?}"))
}

fn judge(rs: &RuleSet, frame: &[u8], whole_len: u16) -> Action {
    let info = dataplane::wire::parse_frame(frame).expect("the test frame parses");
    let meta = packet_meta(frame, &info, 0, 2).expect("an IP frame");
    let w = Wire {
        whole_len,
        ..Wire::of(frame, &info, 0)
    };
    rs.judge(&meta, &w, |_, _, _| {}).action
}

fn ip(v6: bool) -> IpSpec {
    if v6 {
        IpSpec::v6(
            Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 5),
            Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2),
        )
    } else {
        IpSpec::v4(Ipv4Addr::new(203, 0, 113, 5), Ipv4Addr::new(10, 1, 0, 2))
    }
}

#[test]
fn grammar_as_libxt_u32_reads_it() {
    let m = u32_parse("0>>22&0x3C@12>>26&0x3C@0=0x47455420", false).unwrap();
    assert_eq!(m.tests.len(), 1);
    let t = &m.tests[0];
    assert_eq!(t.start, 0);
    assert_eq!(
        t.ops,
        vec![
            (Op::Shr, 22),
            (Op::And, 0x3c),
            (Op::At, 12),
            (Op::Shr, 26),
            (Op::And, 0x3c),
            (Op::At, 0)
        ]
    );
    assert_eq!(t.ranges, vec![(0x4745_5420, 0x4745_5420)]);
    // Blanks, ranges, lists, several tests, octal, a sign.
    let m = u32_parse(" 6 & 0xFF = 1 , 6:17 && 4&0x3FFF=0 && 010<<1=+16", true).unwrap();
    assert!(m.invert);
    assert_eq!(m.tests.len(), 3);
    assert_eq!(m.tests[0].ranges, vec![(1, 1), (6, 17)]);
    assert_eq!(m.tests[2].start, 8);
    assert_eq!(m.tests[2].ranges, vec![(16, 16)]);
    // Ten of each are taken.
    let ten_tests = ["0=0"; 10].join("&&");
    assert_eq!(u32_parse(&ten_tests, false).unwrap().tests.len(), 10);
    let ten_nums = format!("0{}=0", "&1".repeat(9));
    assert!(u32_parse(&ten_nums, false).is_ok());
    let ten_ranges = format!("0=0{}", ",1".repeat(9));
    assert!(u32_parse(&ten_ranges, false).is_ok());
    for (text, err) in [
        ("", "abrupt end"),
        ("0", "abrupt end"),
        ("0=", "no value"),
        ("=1", "at char 0: location spec missing"),
        ("0&&1=1", "not a number"),
        ("0<1=1", "a second '<'"),
        ("0>1=1", "a second '>'"),
        ("0 1=1", "at char 2: operator expected"),
        ("0=1&1=1", "a second '&'"),
        ("0=&&1=1", "value spec missing"),
        ("0=1 2", "expected \",\" or \"&&\""),
        ("0=0x100000000", "out of range"),
        ("0=-1", "out of range"),
        ("0=x", "not a number"),
        ("0=1:", "not a number"),
    ] {
        let e = u32_parse(text, false).expect_err(text);
        assert!(e.contains(err), "{text:?}: {e}");
    }
    assert!(u32_parse(&["0=0"; 11].join("&&"), false)
        .unwrap_err()
        .contains("too many \"&&\"s"));
    assert!(u32_parse(&format!("0{}=0", "&1".repeat(10)), false)
        .unwrap_err()
        .contains("too many operators"));
    assert!(u32_parse(&format!("0=0{}", ",1".repeat(10)), false)
        .unwrap_err()
        .contains("too many \",\"s"));
    assert_eq!(
        u32_parse("0=-0", false).unwrap().tests[0].ranges,
        vec![(0, 0)]
    );
}

const REFUSED: &[(&str, &str, usize)] = &[
    ("-m u32 -j DROP", "needs --u32", 0),
    ("-m u32 --u32 0=1 --u32 0=2 -j DROP", "only one --u32", 4),
    ("-m u32 --u32 0=1&&", "abrupt end", 3),
    ("-m u32 --u32 =1 -j DROP", "location spec missing", 3),
    ("--u32 0=1 -j DROP", "unsupported option --u32", 0),
];

#[test]
fn refuses_bad_u32_options_at_their_column() {
    for &(rule, msg, word) in REFUSED {
        let text = wrap(&format!("-A FORWARD {rule}"));
        assert_refused(&text, Family::V4, 6, rule, msg, word);
    }
    let nat = "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -m u32 --u32 0=1 -j ACCEPT\nCOMMIT\n";
    assert!(compile(nat, Family::V4).is_err());
}

#[test]
fn published_idioms_on_built_frames() {
    // IPv4: the first word of the TCP payload ("GET "), IP ID, ICMP type, total length.
    let rs = set(
        "-A FORWARD -p tcp -m u32 --u32 \"0>>22&0x3C@12>>26&0x3C@0=0x47455420\" -j DROP\n\
         -A FORWARD -m u32 --u32 \"4&0xFFFF0000=0x12340000\" -j DROP\n\
         -A FORWARD -p icmp -m u32 --u32 \"0>>22&0x3C@0>>24=8\" -j DROP\n\
         -A FORWARD -p udp -m u32 --u32 \"0&0xFFFF=0x200:0xFFFF\" -j DROP\n\
         -A FORWARD -p udp -m u32 --u32 \"4&0x3FFF=0x1:0x3FFF\" -j DROP",
        Family::V4,
    );
    assert!(rs.reads_payload && !rs.cacheable);
    let tcp = |data: &[u8]| {
        FrameSpec::new(
            ip(false),
            L4Spec::tcp_segment(40000, 80, dataplane::wire::tcp::Flags::ACK, 1, 1, data),
        )
        .build()
    };
    assert_eq!(judge(&rs, &tcp(b"GET / HTTP/1.0\r\n"), 0), Action::Drop);
    assert_eq!(judge(&rs, &tcp(b"POST / HTTP/1.0\r\n"), 0), Action::Accept);
    // No payload: the read past the end fails the test.
    assert_eq!(judge(&rs, &tcp(b""), 0), Action::Accept);
    let mut with_id = FrameSpec::new(ip(false), L4Spec::udp(1, 9, b"x")).build();
    with_id[18..20].copy_from_slice(&[0x12, 0x34]);
    with_id[24..26].copy_from_slice(&[0, 0]);
    let sum = dataplane::wire::checksum::checksum(&with_id[14..34]);
    with_id[24..26].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(judge(&rs, &with_id, 0), Action::Drop);
    let ping = FrameSpec::new(ip(false), L4Spec::icmp_echo(1, 1)).build();
    assert_eq!(judge(&rs, &ping, 0), Action::Drop);
    let big = FrameSpec::new(ip(false), L4Spec::udp(1, 9, &[0; 600])).build();
    assert_eq!(judge(&rs, &big, 0), Action::Drop);
    let small = FrameSpec::new(ip(false), L4Spec::udp(1, 9, &[0; 60])).build();
    assert_eq!(judge(&rs, &small, 0), Action::Accept);
    // A fragmented datagram is read as reassembled: no fragment bits, the whole length.
    let frags = FrameSpec::new(ip(false), L4Spec::udp(1, 9, &[0; 64])).fragments(32);
    assert_eq!(judge(&rs, &frags[0], 0), Action::Drop, "a fragment alone");
    dataplane::classify::payload::gather(frags.iter().map(|f| &f[..]));
    assert_eq!(judge(&rs, &frags[0], 20 + 8 + 64), Action::Accept);
    dataplane::classify::payload::clear();
    let frags = FrameSpec::new(ip(false), L4Spec::udp(1, 9, &[0; 600])).fragments(256);
    dataplane::classify::payload::gather(frags.iter().map(|f| &f[..]));
    assert_eq!(judge(&rs, &frags[0], 20 + 8 + 600), Action::Drop);
    dataplane::classify::payload::clear();

    // IPv6: the next header, the UDP destination port, the TCP payload's first word.
    let rs = set(
        "-A FORWARD -m u32 --u32 \"4>>8&0xFF=44\" -j DROP\n\
         -A FORWARD -p udp -m u32 --u32 \"40&0xFFFF=53\" -j DROP\n\
         -A FORWARD -p tcp -m u32 --u32 \"52>>26&0x3C@40=0x47455420\" -j DROP",
        Family::V6,
    );
    let dns = FrameSpec::new(ip(true), L4Spec::udp(1, 53, b"q")).build();
    assert_eq!(judge(&rs, &dns, 0), Action::Drop);
    let other = FrameSpec::new(ip(true), L4Spec::udp(1, 54, b"q")).build();
    assert_eq!(judge(&rs, &other, 0), Action::Accept);
    let get = FrameSpec::new(
        ip(true),
        L4Spec::tcp_segment(40000, 80, dataplane::wire::tcp::Flags::ACK, 1, 1, b"GET /"),
    )
    .build();
    assert_eq!(judge(&rs, &get, 0), Action::Drop);
    // The reassembled datagram has no Fragment header.
    let frags = FrameSpec::new(ip(true), L4Spec::udp(1, 54, &[0; 64])).fragments(32);
    assert_eq!(judge(&rs, &frags[0], 0), Action::Drop, "a fragment alone");
    dataplane::classify::payload::gather(frags.iter().map(|f| &f[..]));
    assert_eq!(judge(&rs, &frags[0], 40 + 8 + 64), Action::Accept);
    dataplane::classify::payload::clear();
}

#[test]
fn reads_stop_at_the_datagram_not_the_frame() {
    for v6 in [false, true] {
        let fam = if v6 { Family::V6 } else { Family::V4 };
        let test = if v6 {
            "52=0:0xFFFFFFFF"
        } else {
            "0>>22&0x3C@12=0:0xFFFFFFFF"
        };
        let rs = set(
            &format!("-A FORWARD -p udp -m u32 ! --u32 \"{test}\" -j DROP"),
            fam,
        );
        // The word at payload bytes 4..8: there with 8 bytes, not with 7 (Ethernet padding
        // after a short datagram is not the packet's).
        let f = |n: usize| FrameSpec::new(ip(v6), L4Spec::udp(1, 9, &vec![b'x'; n])).build();
        assert_eq!(judge(&rs, &f(8), 0), Action::Accept, "v6 {v6}");
        assert_eq!(judge(&rs, &f(7), 0), Action::Drop, "v6 {v6}");
        let m = rs
            .rules
            .iter()
            .flat_map(|r| r.checks.iter().flat_map(|c| c.iter()))
            .find_map(|c| match c {
                Check::U32(m) => Some(m.clone()),
                _ => None,
            })
            .unwrap();
        assert!(m.invert);
    }
}
