//! conntrack's filter options: every option, its short and long forms, conntrack's refusals,
//! and the JSON form's round trip and refusals.

use super::*;
use dataplane::conntrack::{Config, ConnInfo, Conntrack};
use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
use dataplane::wire::{parse_frame, FlowKey};

/// A connection as a table lists it (its fields are then set by hand).
fn template() -> ConnInfo {
    let mut ct = Conntrack::new(Config::new(16));
    let f = FrameSpec::new(
        IpSpec::v4([10, 0, 0, 1].into(), [10, 0, 0, 2].into()),
        L4Spec::udp(1, 2, b"x"),
    )
    .build();
    let info = parse_frame(&f).unwrap();
    let mut t = ct.track(&f, &info, 1);
    ct.confirm(&mut t, 1).unwrap();
    let c = ct.list(1).next().unwrap();
    c
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn ok(s: &str) -> CtFilter {
    let p = parse_args(&words(s), true).unwrap_or_else(|e| panic!("{s}: {e}"));
    // Every filter survives its JSON form.
    assert_eq!(from_json(&to_json(&p.filter)), Ok(p.filter), "{s}");
    p.filter
}

fn err(s: &str) -> String {
    parse_args(&words(s), false).expect_err(s)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn a128(s: &str) -> IpAddr128 {
    IpAddr128::from_std(ip(s))
}

#[test]
fn every_option_and_its_forms() {
    assert_eq!(ok(""), CtFilter::default());
    for s in [
        "-p tcp",
        "--proto tcp",
        "--protonum TCP",
        "-p 6",
        "-ptcp",
        "--protonum=tcp",
    ] {
        assert_eq!(ok(s).proto, Some(6), "{s}");
    }
    assert_eq!(ok("-p udp").proto, Some(17));
    assert_eq!(ok("-p icmpv6").proto, Some(58));
    assert_eq!(ok("-p 0x2f").proto, Some(47));
    for s in ["-s 10.0.0.1", "--src 10.0.0.1", "--orig-src 10.0.0.1"] {
        let f = ok(s);
        assert_eq!(f.orig_src, Some(Net::new(ip("10.0.0.1"), 32)), "{s}");
        assert_eq!(f.family, Some(Family::V4), "an address gives the family");
    }
    for s in [
        "-d 2001:db8::1",
        "--dst 2001:db8::1",
        "--orig-dst 2001:db8::1",
    ] {
        let f = ok(s);
        assert_eq!(f.orig_dst, Some(Net::new(ip("2001:db8::1"), 128)), "{s}");
        assert_eq!(f.family, Some(Family::V6));
    }
    assert_eq!(
        ok("-s 10.1.0.0/16").orig_src,
        Some(Net::new(ip("10.1.0.0"), 16))
    );
    assert_eq!(ok("-d fd00::/8").orig_dst, Some(Net::new(ip("fd00::"), 8)));
    assert_eq!(
        ok("-s 10.0.0.7 --mask-src 255.0.0.255").orig_src,
        Some(Net::with_mask(ip("10.0.0.7"), 0xff00_00ff))
    );
    assert_eq!(
        ok("--mask-dst 255.255.0.0 -d 10.9.8.7").orig_dst,
        Some(Net::new(ip("10.9.0.0"), 16))
    );
    for s in ["-r 192.0.2.1", "--reply-src 192.0.2.1"] {
        assert_eq!(ok(s).reply_src, Some(Net::new(ip("192.0.2.1"), 32)));
    }
    for s in ["-q 192.0.2.2", "--reply-dst 192.0.2.2"] {
        assert_eq!(ok(s).reply_dst, Some(Net::new(ip("192.0.2.2"), 32)));
    }
    let f = ok("-p udp --sport 1 --dport 2 --reply-port-src 3 --reply-port-dst 4");
    assert_eq!(
        (f.orig_sport, f.orig_dport, f.reply_sport, f.reply_dport),
        (Some(1), Some(2), Some(3), Some(4))
    );
    let f = ok("-p tcp --orig-port-src 65535 --orig-port-dst 0");
    assert_eq!((f.orig_sport, f.orig_dport), (Some(65535), Some(0)));
    assert_eq!(
        ok("-p tcp --state ESTABLISHED").tcp_state,
        Some(TcpState::Established)
    );
    assert_eq!(
        ok("-p tcp --state LISTEN").tcp_state,
        Some(TcpState::SynSent2)
    );
    for s in TcpState::ALL {
        assert_eq!(
            ok(&format!("-p tcp --state {}", s.name())).tcp_state,
            Some(s)
        );
    }
    for (s, m) in [
        ("-m 5", (5, u32::MAX)),
        ("--mark 0x10/0xf0", (16, 0xf0)),
        ("-m 010", (8, u32::MAX)),
        ("-m 4294967295/0", (u32::MAX, 0)),
    ] {
        assert_eq!(ok(s).mark, Some(m), "{s}");
    }
    let f = ok("-u ASSURED");
    assert_eq!((f.status_set, f.status_clear), (status::ASSURED, 0));
    let f = ok("--status seen_reply,ass");
    assert_eq!(f.status_set, status::ASSURED | status::SEEN_REPLY);
    let f = ok("-u UNREPLIED");
    assert_eq!((f.status_set, f.status_clear), (0, status::SEEN_REPLY));
    let f = ok("-u !ASSURED,EXPECTED");
    assert_eq!(
        (f.status_set, f.status_clear),
        (status::EXPECTED, status::ASSURED)
    );
    assert_eq!(ok("-u UNSET"), CtFilter::default(), "UNSET is no bit");
    let p = parse_args(&words("-u SRC_NAT"), false).unwrap();
    assert_eq!(p.filter, CtFilter::default());
    assert_eq!(
        p.warnings,
        ["WARNING: ignoring SRC_NAT, use --src-nat instead"]
    );
    for (s, fam) in [("-f ipv4", Family::V4), ("--family ipv6", Family::V6)] {
        assert_eq!(ok(s).family, Some(fam));
    }
    assert_eq!(ok("-n").nat.src, Some(NatTo::default()));
    assert_eq!(ok("--src-nat").nat.src, Some(NatTo::default()));
    assert_eq!(
        ok("-g -p tcp").nat.dst,
        Some(NatTo::default()),
        "a dash ends -g"
    );
    assert_eq!(ok("--any-nat").nat.any, Some(NatTo::default()));
    let f = ok("-n 203.0.113.5");
    assert_eq!(
        f.nat.src,
        Some(NatTo {
            addr: Some(a128("203.0.113.5")),
            port: None
        })
    );
    assert_eq!(f.family, Some(Family::V4));
    let f = ok("-g 10.0.0.2:8080 -n");
    assert_eq!(
        f.nat.dst,
        Some(NatTo {
            addr: Some(a128("10.0.0.2")),
            port: Some(8080)
        })
    );
    assert_eq!(f.nat.src, Some(NatTo::default()));
    assert_eq!(
        ok("-j [fd00::2]:53").nat.any,
        Some(NatTo {
            addr: Some(a128("fd00::2")),
            port: Some(53)
        })
    );
    assert_eq!(
        ok("--dst-nat=fd00::2").nat.dst.unwrap().addr,
        Some(a128("fd00::2"))
    );
    assert_eq!(
        parse_args(&words("--max 7 -p tcp"), true).unwrap().max,
        Some(7)
    );
    // Several together, in any order.
    let f = ok("-p udp --dport 53 -d 10.96.0.10 -f ipv4 -u ASSURED -m 1/1");
    assert_eq!(
        (f.proto, f.orig_dport, f.family, f.mark),
        (Some(17), Some(53), Some(Family::V4), Some((1, 1)))
    );
}

#[test]
fn bad_filters_get_conntracks_errors() {
    for (s, want) in [
        ("-p foo", "`foo' unsupported protocol"),
        ("-p 256", "`256' unsupported protocol"),
        ("-s 1.2.3", "Invalid IP address `1.2.3'"),
        ("-s 10.0.0.0/33", "Invalid netmask"),
        ("-d ::/129", "Invalid netmask"),
        ("-s 10.0.0.0/x", "Invalid netmask"),
        (
            "-r 10.0.0.0/8",
            "CIDR notation unavailable for `--reply-src'",
        ),
        ("-q ::1/64", "CIDR notation unavailable for `--reply-dst'"),
        ("-n 10.0.0.0/8", "CIDR notation unavailable for `--src-nat'"),
        ("--sport 5", "unknown option `--sport'"),
        ("-p icmp --dport 5", "unknown option `--dport'"),
        ("-p udp --state ESTABLISHED", "unknown option `--state'"),
        ("--state ESTABLISHED", "unknown option `--state'"),
        ("-p tcp --sport abc", "Invalid port `abc'"),
        ("-p tcp --dport 70000", "Invalid port `70000'"),
        ("-p tcp --reply-port-src -1", "Invalid port `-1'"),
        (
            "-p tcp --state established",
            "unknown TCP state `established'",
        ),
        ("-u FOO", "Bad parameter `FOO'"),
        ("-u ASSURED,,SEEN_REPLY", "Bad parameter `,SEEN_REPLY'"),
        ("-u ASSURED,", "Bad parameter `'"),
        ("-u !", "Bad parameter `!'"),
        ("-m x", "unexpected value 'x' with -m option"),
        ("-m 1/2/3", "unexpected value '1/2/3' with -m option"),
        (
            "-m 4294967296",
            "unexpected value '4294967296' with -m option",
        ),
        ("-f ipv5", "`ipv5' unsupported protocol"),
        ("-s 1.2.3.4 -d ::1", "mismatched address family"),
        ("-f ipv6 -s 10.0.0.1", "mismatched address family"),
        ("-s 10.0.0.1 --mask-src ffff::", "mismatched address family"),
        ("-n 10.0.0.1 -f ipv6", "mismatched address family"),
        (
            "-j -n",
            "cannot specify `--src-nat' or `--dst-nat' with `--any-nat'",
        ),
        (
            "-g -j",
            "cannot specify `--src-nat' or `--dst-nat' with `--any-nat'",
        ),
        ("--mask-src 255.0.0.0", "Can't use --mask-src without --src"),
        ("--mask-dst 255.0.0.0", "Can't use --mask-dst without --dst"),
        ("-n 10.0.0.1:", "No port specified after `:'"),
        ("-n 10.0.0.1:x", "Invalid port `x'"),
        ("-g []:80", "No IPv6 address specified"),
        ("-g [fd00::1", "No closing ']' around IPv6 address"),
        ("-x", "unknown option `-x'"),
        ("--bogus 1", "unknown option `--bogus'"),
        ("-s", "option `-s' requires an argument"),
        ("-p tcp --dport", "option `--dport' requires an argument"),
        ("tcp", "unexpected argument `tcp'"),
        ("--max 5", "unknown option `--max'"),
    ] {
        assert_eq!(err(s), want, "{s}");
    }
    for (s, what) in [
        ("-t 30", "timeouts"),
        ("-l x", "labels"),
        ("-o extended", "output formats"),
        ("-p icmp --icmp-type 8", "ICMP fields"),
    ] {
        let e = err(s);
        assert!(e.contains("not supported") && e.contains(what), "{s}: {e}");
    }
    assert_eq!(
        parse_args(&words("--max x"), true).unwrap_err(),
        "--max wants a number, not `x'"
    );
}

#[test]
fn json_is_versioned_and_checked() {
    let f = ok("-p tcp -s 10.0.0.0/8 --mask-dst 255.0.255.0 -d 10.1.2.3 --dport 80 --state TIME_WAIT -m 3/7 -u ASSURED,!SEEN_REPLY -g 10.0.0.1:8080");
    let v = to_json(&f);
    assert_eq!(v["version"], FILTER_VERSION);
    assert_eq!(v["orig_src"], "10.0.0.0/8");
    assert_eq!(
        v["orig_dst"], "10.0.2.0/255.0.255.0",
        "the address kept is the masked one"
    );
    assert_eq!(v["status_clear"], json!(["SEEN_REPLY"]));
    assert_eq!(from_json(&v), Ok(f));
    assert_eq!(from_json(&json!({"version": 1})), Ok(CtFilter::default()));
    for (bad, want) in [
        (json!({}), "no \"version\""),
        (json!({"version": 2}), "version 2 is unknown"),
        (json!([1]), "is an object"),
        (
            json!({"version": 1, "zones": 3}),
            "unknown filter field \"zones\"",
        ),
        (json!({"version": 1, "zone": 65536}), "a number up to 65535"),
        (json!({"version": 1, "proto": 256}), "a number up to 255"),
        (
            json!({"version": 1, "proto": 6, "orig_sport": 65536}),
            "up to 65535",
        ),
        (
            json!({"version": 1, "orig_dport": 53}),
            "a port needs a proto",
        ),
        (
            json!({"version": 1, "proto": 17, "state": "ESTABLISHED"}),
            "needs proto 6",
        ),
        (
            json!({"version": 1, "orig_src": "10.0.0.1", "orig_dst": "::1"}),
            "mismatched",
        ),
        (
            json!({"version": 1, "orig_src": "10.0.0.1/40"}),
            "prefix length or mask",
        ),
        (
            json!({"version": 1, "mark": {"value": 1}}),
            "32-bit numbers",
        ),
        (
            json!({"version": 1, "status_set": ["NOPE"]}),
            "unknown status",
        ),
        (
            json!({"version": 1, "any_nat": {}, "src_nat": {}}),
            "any_nat with",
        ),
        (json!({"version": 1, "src_nat": {"to": 1}}), "unknown field"),
    ] {
        let e = from_json(&bad).unwrap_err();
        assert!(e.contains(want), "{bad}: {e}");
    }
}

fn conn(
    src: &str,
    dst: &str,
    sport: u16,
    dport: u16,
    reply_dst: &str,
    reply_dport: u16,
) -> ConnInfo {
    let k = |s: &str, d: &str, sp: u16, dp: u16| {
        let (s, d) = (ip(s), ip(d));
        match (s, d) {
            (IpAddr::V4(s), IpAddr::V4(d)) => FlowKey::new_v4(s, d, 6, sp, dp),
            (IpAddr::V6(s), IpAddr::V6(d)) => FlowKey::new_v6(s, d, 6, sp, dp),
            _ => unreachable!(),
        }
    };
    ConnInfo {
        orig: k(src, dst, sport, dport),
        reply: k(dst, reply_dst, dport, reply_dport),
        tcp_state: Some(TcpState::Established),
        seen_reply: true,
        assured: false,
        mark: 0x35,
        timeout_left_ns: 1,
        ..template()
    }
}

#[test]
fn parsed_filters_select_as_conntrack_does() {
    let plain = conn("10.0.0.1", "192.0.2.80", 1000, 22, "10.0.0.1", 1000);
    let snat = conn("10.0.0.2", "192.0.2.80", 1000, 22, "203.0.113.5", 40000);
    let v6 = conn("fd00::1", "2001:db8::80", 1000, 22, "fd00::1", 1000);
    let sel = |s: &str| -> Vec<bool> {
        let f = ok(s);
        [&plain, &snat, &v6].iter().map(|c| f.matches(c)).collect()
    };
    assert_eq!(sel(""), [true, true, true]);
    assert_eq!(sel("-f ipv4"), [true, true, false]);
    assert_eq!(sel("-s 10.0.0.0/30"), [true, true, false]);
    assert_eq!(sel("-s 10.0.0.1"), [true, false, false]);
    assert_eq!(sel("-n"), [false, true, false]);
    assert_eq!(sel("-g"), [false, false, false]);
    assert_eq!(sel("-j"), [false, true, false]);
    assert_eq!(sel("-n 203.0.113.5:40000"), [false, true, false]);
    assert_eq!(sel("-n 203.0.113.5:40001"), [false, false, false]);
    assert_eq!(sel("-q 203.0.113.5"), [false, true, false]);
    assert_eq!(sel("-p tcp --reply-port-dst 40000"), [false, true, false]);
    assert_eq!(sel("-p udp"), [false, false, false]);
    assert_eq!(
        sel("-p tcp --dport 22 --state ESTABLISHED"),
        [true, true, true]
    );
    assert_eq!(sel("-p tcp --state SYN_SENT"), [false, false, false]);
    assert_eq!(sel("-m 0x35"), [true, true, true]);
    assert_eq!(sel("-m 0x5/0xf"), [true, true, true]);
    assert_eq!(
        sel("-m 0x35/0xf"),
        [false, false, false],
        "the value is not masked"
    );
    assert_eq!(sel("-u SEEN_REPLY"), [true, true, true]);
    assert_eq!(sel("-u ASSURED"), [false, false, false]);
    assert_eq!(sel("-u UNREPLIED"), [false, false, false]);
    assert_eq!(sel("-u !ASSURED"), [true, true, true]);
    assert_eq!(sel("-d 2001:db8::/32"), [false, false, true]);
}

#[test]
fn zone_filters_are_parsed() {
    assert_eq!(ok("-w 4097").zone, Some(4097));
    assert_eq!(ok("--zone=0").zone, Some(0));
    let f = ok("--orig-zone 1 --reply-zone 0x10");
    assert_eq!((f.orig_zone, f.reply_zone), (Some(1), Some(16)));
    for s in ["-w 65536", "-w x", "--orig-zone -1"] {
        assert!(err(s).starts_with("Wrong zone value"), "{s}: {}", err(s));
    }
    assert_eq!(err("-w"), "option `-w' requires an argument");
}
