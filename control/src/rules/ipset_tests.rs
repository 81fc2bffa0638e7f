//! `-m set` and `ipset save` files: what the two parsers take and refuse, and the match's
//! meaning on hand-built frames judged as a worker judges them.

use super::ipsets::parse_ipsets;
use super::tests::{ports, word_col};
use super::*;
use dataplane::classify::{ct, Action, Wire};
use dataplane::filter::packet_meta;
use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// What `ipset save` printed here (ipset 7.17) for sets of every type Rampart holds.
const SAVED: &str = r#"create a hash:ip family inet hashsize 64 maxelem 10 timeout 100 counters comment bucketsize 12 initval 0x4adecdfe
add a 10.0.0.1 timeout 49 packets 0 bytes 0 comment "x y"
create n hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0xf123c530
add n 10.1.0.0/16 nomatch
add n 10.0.0.0/8
add n 10.1.2.0/24
create p hash:ip,port family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x9d4fdfe5
add p 10.0.0.2,tcp:80
add p 10.0.0.1,udp:53
add p 10.0.0.1,tcp:80
add p 10.0.0.1,icmp:echo-request
add p 10.0.0.3,icmp:host-unreachable
add p 10.0.0.5,gre:0
create np hash:net,port family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x0d762309
add np 10.0.0.0/24,tcp:22
add np 10.0.0.128/25,tcp:22 nomatch
create ipi hash:ip,port,ip family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1557cc6a
add ipi 10.0.0.1,tcp:22,10.0.0.2
create ipn hash:ip,port,net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x549b7fc2
add ipn 10.0.0.1,tcp:22,10.9.0.0/16
create bp bitmap:port range 1-1024
add bp 22
add bp 80
create bi bitmap:ip range 192.168.0.0-192.168.0.255 netmask 30
add bi 192.168.0.4
create h6 hash:ip family inet6 hashsize 1024 maxelem 65536 netmask 64 bucketsize 12 initval 0x8000a653
add h6 2001:db8::
create l list:set size 8
add l a
add l n
"#;

fn sets(text: &str) -> Arc<dataplane::classify::ipset::SetsCell> {
    dataplane::classify::ipset::SetsCell::new(
        parse_ipsets("s.sets", text).unwrap_or_else(|e| panic!("{e:?}")),
    )
}

fn compile_with(sets_text: &str, body: &str, family: Family) -> Result<RuleSet, Vec<RuleError>> {
    let s = sets(sets_text);
    let text = format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{body}\nCOMMIT\n"
    );
    let parsed = parse_iptables_sets(
        "t.rules",
        &text,
        family,
        &ports(),
        &HostAddrs::default(),
        Some(&s),
    )?;
    compile_parsed(&parsed, Hook::Forward)
}

fn rules(sets_text: &str, body: &str, family: Family) -> RuleSet {
    let rs = compile_with(sets_text, body, family).unwrap_or_else(|e| panic!("{e:?}"));
    let c = crate::load::tree_classifier(&rs.rules).unwrap();
    rs.with_classifier(c)
}

/// The verdict for `frame` (a NEW packet) at `ms` milliseconds.
fn at(rs: &RuleSet, frame: &[u8], ms: u64) -> Action {
    let info = dataplane::wire::parse_frame(frame).expect("the test frame parses");
    let mut meta = packet_meta(frame, &info, 0, 2).expect("an IP frame");
    meta.ct_state = ct::NEW;
    rs.judge(&meta, &Wire::of(frame, &info, ms * 1_000_000), |_, _, _| {})
        .action
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn tcp(src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
    FrameSpec::new(
        IpSpec::v4(v4(src), v4(dst)),
        L4Spec::tcp(sport, dport, Default::default()),
    )
    .build()
}

fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
    FrameSpec::new(IpSpec::v4(v4(src), v4(dst)), L4Spec::udp(sport, dport, &[])).build()
}

fn icmp(src: &str, dst: &str, ty: u8, code: u8) -> Vec<u8> {
    FrameSpec::new(
        IpSpec::v4(v4(src), v4(dst)),
        L4Spec::Icmp {
            ty,
            code,
            ident: 7,
            seq: 1,
            payload: Vec::new(),
        },
    )
    .build()
}

fn raw(src: &str, dst: &str, proto: u8) -> Vec<u8> {
    FrameSpec::new(
        IpSpec::v4(v4(src), v4(dst)),
        L4Spec::Raw {
            proto,
            payload: vec![0; 8],
        },
    )
    .build()
}

const A: Action = Action::Accept;
const D: Action = Action::Drop;

/// One rule `-m set ... -j DROP` before an ACCEPT policy: D when the set matches.
fn one(rule: &str) -> RuleSet {
    rules(
        SAVED,
        &format!("-A FORWARD -m set {rule} -j DROP"),
        Family::V4,
    )
}

#[test]
fn reads_what_ipset_save_writes() {
    let s = sets(SAVED).snapshot();
    assert_eq!(s.sets.len(), 10);
    let n = &s.sets[s.find("n").unwrap()];
    assert_eq!(n.len(), 3);
    assert_eq!(n.cidrs.iter().map(|c| c.0).collect::<Vec<_>>(), [24, 16, 8]);
    assert_eq!(s.sets[s.find("l").unwrap()].members.len(), 2);
    assert_eq!(s.sets[s.find("p").unwrap()].len(), 6);
    // Comments, blank lines, flush and del are taken too.
    let s = sets("# saved\n\ncreate x hash:ip\nadd x 1.2.3.4\nadd x 1.2.3.5\ndel x 1.2.3.4\nflush x\nadd x 1.1.1.1\n").snapshot();
    assert_eq!(s.sets[0].len(), 1);
}

/// Every refusal at its line and column, as `FILE:LINE:COL`.
#[test]
fn refuses_bad_sets_files_at_their_column() {
    let cases: &[(&str, &str, u32, u32)] = &[
        (
            "create x hash:mac",
            "set type hash:mac is not supported",
            1,
            10,
        ),
        ("create x hash:ip foo 1", "foo is not an option", 1, 18),
        (
            "create x hash:ip forceadd",
            "option forceadd is not supported",
            1,
            18,
        ),
        (
            "create x hash:ip bitmask 255.255.0.0",
            "bitmask is not supported",
            1,
            18,
        ),
        ("create x hash:ip family inet7", "invalid family", 1, 25),
        ("create x bitmap:port", "needs a range", 1, 10),
        (
            "create x bitmap:ip range 10.0.0.0/8",
            "more than 65536",
            1,
            26,
        ),
        ("create x hash:ip maxelem 0", "invalid maxelem", 1, 26),
        (
            "create x list:set netmask 24",
            "not an option of list:set",
            1,
            19,
        ),
        (
            "create x hash:ip\ncreate x hash:net",
            "already exists",
            2,
            8,
        ),
        ("add y 1.2.3.4", "does not exist", 1, 5),
        (
            "create x hash:ip\nadd x 1.2.3.400",
            "not an IPv4 address",
            2,
            7,
        ),
        ("create x hash:ip\nadd x 0.0.0.0", "zero valued", 2, 7),
        (
            "create x hash:ip family inet6\nadd x ::",
            "zero valued",
            2,
            7,
        ),
        (
            "create x hash:ip\nadd x 10.0.0.0/24",
            "range or prefix",
            2,
            7,
        ),
        (
            "create x hash:ip\nadd x 1.2.3.4 timeout 5",
            "without timeout support",
            2,
            15,
        ),
        (
            "create x hash:ip\nadd x 1.2.3.4 nomatch",
            "not an entry option",
            2,
            15,
        ),
        (
            "create x hash:ip\nadd x 1.2.3.4\nadd x 1.2.3.4",
            "already added",
            3,
            7,
        ),
        ("create x hash:ip\ndel x 1.2.3.4", "not added", 2, 7),
        (
            "create x hash:net\nadd x 10.0.0.0/0",
            "invalid prefix length",
            2,
            7,
        ),
        (
            "create x hash:net\nadd x 10.0.0.0/33",
            "invalid prefix length",
            2,
            7,
        ),
        ("create x hash:ip,port\nadd x 1.2.3.4", "2 parts", 2, 7),
        (
            "create x hash:ip,port\nadd x 1.2.3.4,icmpv6:1/0",
            "family inet6 only",
            2,
            7,
        ),
        (
            "create x hash:ip,port\nadd x 1.2.3.4,icmp:8",
            "ICMP type/code",
            2,
            7,
        ),
        (
            "create x hash:ip,port\nadd x 1.2.3.4,gre:5",
            "has no ports",
            2,
            7,
        ),
        (
            "create x hash:ip,port\nadd x 1.2.3.4,tcp:70000",
            "out of range",
            2,
            7,
        ),
        (
            "create x bitmap:port range 1-100\nadd x 200",
            "outside the set's range",
            2,
            7,
        ),
        (
            "create x hash:ip maxelem 1\nadd x 1.1.1.1\nadd x 1.1.1.2",
            "is full",
            3,
            7,
        ),
        (
            "create x list:set size 1\ncreate y hash:ip\ncreate z hash:ip\nadd x y\nadd x z",
            "is full",
            5,
            7,
        ),
        ("create x list:set\nadd x y", "does not exist", 2, 7),
        (
            "create x list:set\ncreate y list:set\nadd x y",
            "cannot be a member",
            3,
            7,
        ),
        (
            "create x hash:ip family inet6\nadd x 10.0.0.1",
            "not an IPv6 address",
            2,
            7,
        ),
        ("swap a b", "unsupported command", 1, 1),
        (
            "create x hash:ip\nadd x 1.2.3.4 comment \"unclosed",
            "quote",
            2,
            23,
        ),
    ];
    for &(text, msg, line, col) in cases {
        let e = match parse_ipsets("s.sets", text) {
            Ok(_) => panic!("{text:?} accepted"),
            Err(e) => e,
        };
        assert_eq!(e.len(), 1, "{text:?}: {e:?}");
        assert!(
            e[0].message.contains(msg),
            "{text:?}: {:?} lacks {msg:?}",
            e[0].message
        );
        assert_eq!((e[0].line, e[0].col), (line, col), "{text:?}: {}", e[0]);
        assert!(e[0]
            .to_string()
            .starts_with(&format!("s.sets:{line}:{col}: ")));
    }
}

#[test]
fn accepts_set_matches_as_iptables_save_writes_them() {
    for rule in [
        "-m set --match-set a src -j DROP",
        "-m set ! --match-set n dst -j DROP",
        "-m set --match-set p src,dst -j DROP",
        "-m set --match-set ipi src,dst,dst --return-nomatch -j DROP",
        "-m set ! --match-set a src --return-nomatch ! --update-counters ! --update-subcounters -j DROP",
        "-m set --match-set a src -m set --match-set ipp_none dst",
        "-m set --set a src -j DROP",
        "-m set --match-set a srcx,dst,dst,dst,dst,dst -j DROP",
        "-m set --match-set l src -j DROP",
        "-m set --match-set bp dst -j DROP",
    ] {
        let rule = rule.replace(" -m set --match-set ipp_none dst", " -m set --match-set np dst,dst");
        compile_with(SAVED, &format!("-A FORWARD {rule}"), Family::V4)
            .unwrap_or_else(|e| panic!("{rule}: {e:?}"));
    }
    // The raw table takes it too.
    let raw = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -m set --match-set a src -j DROP\nCOMMIT\n";
    let s = sets(SAVED);
    parse_iptables_sets(
        "r.rules",
        raw,
        Family::V4,
        &ports(),
        &HostAddrs::default(),
        Some(&s),
    )
    .unwrap();
    // An IPv6 set in ip6tables, and a set of both families.
    let v6 = "-A FORWARD -m set --match-set h6 src -j DROP\n-A FORWARD -m set --match-set bp dst -j DROP";
    compile_with(SAVED, v6, Family::V6).unwrap();
}

#[test]
fn refuses_what_iptables_refuses() {
    let cases: &[(&str, &str, usize)] = &[
        (
            "-m set --match-set nope src -j DROP",
            "Set nope doesn't exist",
            3,
        ),
        (
            "-m set --match-set h6 src -j DROP",
            "family of set h6 is IPv6",
            3,
        ),
        (
            "-m set --match-set a src,dst,src,dst,src,dst,src -j DROP",
            "more src/dst options than 6",
            4,
        ),
        ("-m set --match-set a foo -j DROP", "'src' or 'dst'", 4),
        ("-m set --match-set a src,,dst -j DROP", "'src' or 'dst'", 4),
        ("-m set --match-set a -j DROP", "requires two args", 2),
        ("-m set -j DROP", "needs --match-set", 0),
        (
            "-m set --match-set a src --packets-gt 3 -j DROP",
            "no packet or byte counters",
            5,
        ),
        (
            "-m set --match-set a src --bytes-eq 3 -j DROP",
            "no packet or byte counters",
            5,
        ),
        (
            "-m set --match-set a src --match-set n src -j DROP",
            "only one --match-set",
            5,
        ),
        (
            "-m set --match-set a src ! --return-nomatch -j DROP",
            "! is not allowed",
            6,
        ),
        (
            "-m set --match-set abcdefghijabcdefghijabcdefghijXY src",
            "too long",
            3,
        ),
    ];
    for &(rule, msg, word) in cases {
        let e = match compile_with(SAVED, &format!("-A FORWARD {rule}"), Family::V4) {
            Ok(_) => panic!("{rule:?} accepted"),
            Err(e) => e,
        };
        assert_eq!(e.len(), 1, "{rule}: {e:?}");
        assert!(
            e[0].message.contains(msg),
            "{rule}: {:?} lacks {msg:?}",
            e[0].message
        );
        assert_eq!(
            (e[0].line, e[0].col),
            (5, 11 + word_col(rule, word)),
            "{rule}: {}",
            e[0]
        );
    }
    let e = compile_with(SAVED, "-A FORWARD -j SET --add-set a src", Family::V4).unwrap_err();
    assert!(
        e[0].message
            .contains("unsupported target SET: sets change only"),
        "{e:?}"
    );
    // Without a sets file every set is unknown, and the message says where sets come from.
    let text = super::tests::wrap("-A FORWARD -m set --match-set a src -j DROP");
    let e = super::tests::compile(&text, Family::V4).unwrap_err();
    assert!(e[0].message.contains("no sets file"), "{e:?}");
    // Only filter and raw.
    let s = sets(SAVED);
    for (table, chain) in [("nat", "PREROUTING"), ("mangle", "PREROUTING")] {
        let text = format!("*{table}\n:{chain} ACCEPT [0:0]\n-A {chain} -m set --match-set a src -j ACCEPT\nCOMMIT\n");
        let e = parse_iptables_sets(
            "x.rules",
            &text,
            Family::V4,
            &ports(),
            &HostAddrs::default(),
            Some(&s),
        )
        .unwrap_err();
        assert!(e[0].message.contains("filter and raw only"), "{e:?}");
        assert_eq!((e[0].line, e[0].col), (3, 15));
    }
}

#[test]
fn hash_ip_and_negation() {
    let rs = one("--match-set a src");
    assert_eq!(at(&rs, &tcp("10.0.0.1", 1, "10.9.9.9", 80), 0), D);
    assert_eq!(at(&rs, &tcp("10.0.0.2", 1, "10.9.9.9", 80), 0), A);
    assert_eq!(at(&rs, &tcp("10.9.9.9", 1, "10.0.0.1", 80), 0), A);
    let rs = one("--match-set a dst");
    assert_eq!(at(&rs, &tcp("10.9.9.9", 1, "10.0.0.1", 80), 0), D);
    let rs = one("! --match-set a src");
    assert_eq!(at(&rs, &tcp("10.0.0.1", 1, "10.9.9.9", 80), 0), A);
    assert_eq!(at(&rs, &tcp("10.0.0.2", 1, "10.9.9.9", 80), 0), D);
}

/// Entry timeouts count from the first packet that meets them: `timeout 49` lasts 49 s.
#[test]
fn timeouts_run_on_packet_time() {
    let rs = one("--match-set a src");
    let f = tcp("10.0.0.1", 1, "10.9.9.9", 80);
    assert_eq!(at(&rs, &f, 5_000), D);
    assert_eq!(at(&rs, &f, 54_000), D);
    assert_eq!(at(&rs, &f, 54_001), A);
    assert_eq!(at(&rs, &f, 60_000), A);
    // A timeout of 0 never expires; the set's default applies to entries without one.
    let rs = rules(
        "create t hash:ip timeout 10\nadd t 1.1.1.1 timeout 0\nadd t 1.1.1.2\n",
        "-A FORWARD -m set --match-set t src -j DROP",
        Family::V4,
    );
    let (a, b) = (
        tcp("1.1.1.1", 1, "2.2.2.2", 2),
        tcp("1.1.1.2", 1, "2.2.2.2", 2),
    );
    assert_eq!((at(&rs, &a, 100), at(&rs, &b, 100)), (D, D));
    assert_eq!((at(&rs, &a, 10_100), at(&rs, &b, 10_100)), (D, D));
    assert_eq!((at(&rs, &a, 10_101), at(&rs, &b, 10_101)), (D, A));
}

/// The most specific prefix present decides; a nomatch entry says no, and
/// `--return-nomatch` turns found entries round.
#[test]
fn hash_net_prefixes_and_nomatch() {
    let rs = one("--match-set n src");
    let from = |a: &str| tcp(a, 1, "192.0.2.1", 80);
    assert_eq!(at(&rs, &from("10.200.0.1"), 0), D);
    assert_eq!(at(&rs, &from("10.1.9.9"), 0), A);
    assert_eq!(at(&rs, &from("10.1.2.3"), 0), D);
    assert_eq!(at(&rs, &from("11.0.0.1"), 0), A);
    let rs = one("--match-set n src --return-nomatch");
    assert_eq!(at(&rs, &from("10.200.0.1"), 0), A);
    assert_eq!(at(&rs, &from("10.1.9.9"), 0), D);
    assert_eq!(at(&rs, &from("11.0.0.1"), 0), A);
    // Negated: the nomatch address is "not in the set".
    let rs = one("! --match-set n src");
    assert_eq!(at(&rs, &from("10.1.9.9"), 0), D);
    assert_eq!(at(&rs, &from("10.200.0.1"), 0), A);
}

/// The port dimension: protocol and port (TCP by default), ICMP type/code, port 0 for
/// protocols without ports; each flag picks its own direction.
#[test]
fn ports_protocols_and_directions() {
    let rs = one("--match-set p src,dst");
    assert_eq!(at(&rs, &tcp("10.0.0.1", 999, "1.1.1.1", 80), 0), D);
    assert_eq!(at(&rs, &tcp("10.0.0.1", 80, "1.1.1.1", 999), 0), A);
    assert_eq!(at(&rs, &udp("10.0.0.1", 999, "1.1.1.1", 80), 0), A);
    assert_eq!(at(&rs, &udp("10.0.0.1", 999, "1.1.1.1", 53), 0), D);
    assert_eq!(at(&rs, &icmp("10.0.0.1", "1.1.1.1", 8, 0), 0), D);
    assert_eq!(at(&rs, &icmp("10.0.0.1", "1.1.1.1", 0, 0), 0), A);
    assert_eq!(at(&rs, &icmp("10.0.0.3", "1.1.1.1", 3, 1), 0), D);
    assert_eq!(at(&rs, &icmp("10.0.0.3", "1.1.1.1", 3, 3), 0), A);
    assert_eq!(at(&rs, &raw("10.0.0.5", "1.1.1.1", 47), 0), D);
    assert_eq!(at(&rs, &raw("10.0.0.5", "1.1.1.1", 50), 0), A);
    // dst,src: the address is the destination's, the port the source's.
    let rs = one("--match-set p dst,src");
    assert_eq!(at(&rs, &tcp("1.1.1.1", 80, "10.0.0.2", 5), 0), D);
    assert_eq!(at(&rs, &tcp("1.1.1.1", 5, "10.0.0.2", 80), 0), A);
    // One flag for a two-dimensional set: never in it (and so always "not in it").
    let rs = one("--match-set p src");
    assert_eq!(at(&rs, &tcp("10.0.0.1", 999, "1.1.1.1", 80), 0), A);
    let rs = one("! --match-set p src");
    assert_eq!(at(&rs, &tcp("10.0.0.1", 999, "1.1.1.1", 80), 0), D);
    // hash:net,port with a nomatch half.
    let rs = one("--match-set np dst,dst");
    assert_eq!(at(&rs, &tcp("1.1.1.1", 5, "10.0.0.5", 22), 0), D);
    assert_eq!(at(&rs, &tcp("1.1.1.1", 5, "10.0.0.200", 22), 0), A);
    assert_eq!(at(&rs, &tcp("1.1.1.1", 5, "10.0.0.5", 23), 0), A);
    // Three dimensions.
    let rs = one("--match-set ipi src,dst,dst");
    assert_eq!(at(&rs, &tcp("10.0.0.1", 5, "10.0.0.2", 22), 0), D);
    assert_eq!(at(&rs, &tcp("10.0.0.1", 5, "10.0.0.3", 22), 0), A);
    let rs = one("--match-set ipn src,dst,dst");
    assert_eq!(at(&rs, &tcp("10.0.0.1", 5, "10.9.3.4", 22), 0), D);
    assert_eq!(at(&rs, &tcp("10.0.0.1", 5, "10.8.3.4", 22), 0), A);
    // bitmap:port: TCP and UDP only.
    let rs = one("--match-set bp dst");
    assert_eq!(at(&rs, &tcp("1.1.1.1", 5, "2.2.2.2", 22), 0), D);
    assert_eq!(at(&rs, &udp("1.1.1.1", 5, "2.2.2.2", 80), 0), D);
    assert_eq!(at(&rs, &udp("1.1.1.1", 5, "2.2.2.2", 81), 0), A);
    assert_eq!(at(&rs, &tcp("1.1.1.1", 5, "2.2.2.2", 2000), 0), A);
    // bitmap:ip under its netmask: .4 stands for .4 to .7.
    let rs = one("--match-set bi src");
    assert_eq!(at(&rs, &tcp("192.168.0.6", 5, "2.2.2.2", 22), 0), D);
    assert_eq!(at(&rs, &tcp("192.168.0.8", 5, "2.2.2.2", 22), 0), A);
    assert_eq!(at(&rs, &tcp("192.168.1.6", 5, "2.2.2.2", 22), 0), A);
    // list:set: any member.
    let rs = one("--match-set l src");
    assert_eq!(at(&rs, &tcp("10.0.0.1", 5, "2.2.2.2", 22), 0), D);
    assert_eq!(at(&rs, &tcp("10.200.0.1", 5, "2.2.2.2", 22), 0), D);
    assert_eq!(at(&rs, &tcp("10.1.9.9", 5, "2.2.2.2", 22), 0), A);
}

/// A non-first fragment has no ports: a set with a port dimension never holds it (TCP, UDP,
/// ICMP), while an address-only set still does.
#[test]
fn later_fragments_have_no_ports() {
    let spec = FrameSpec::new(
        IpSpec::v4(v4("10.0.0.1"), v4("1.1.1.1")),
        L4Spec::udp(999, 53, &[0; 64]),
    );
    let frags = spec.fragments(16);
    assert!(frags.len() > 1);
    let rs = one("--match-set p src,dst");
    assert_eq!(at(&rs, &frags[0], 0), D);
    assert_eq!(at(&rs, &frags[1], 0), A);
    let rs = one("--match-set a src");
    assert_eq!(at(&rs, &frags[1], 0), D);
}

#[test]
fn ipv6_sets() {
    let rs = rules(
        SAVED,
        "-A FORWARD -m set --match-set h6 src -j DROP",
        Family::V6,
    );
    let f = |s: &str| {
        FrameSpec::new(
            IpSpec::v6(
                s.parse::<Ipv6Addr>().unwrap(),
                "2001:db8:1::1".parse().unwrap(),
            ),
            L4Spec::tcp(1, 2, Default::default()),
        )
        .build()
    };
    // netmask 64: any address of 2001:db8::/64.
    assert_eq!(at(&rs, &f("2001:db8::77"), 0), D);
    assert_eq!(at(&rs, &f("2001:db8:0:1::77"), 0), A);
}

/// hash:net,net and hash:net,port,net: every pair of prefix lengths present is tried, the
/// first network's longest first and within it the second's, and the first entry found
/// answers (a `nomatch` one: not in the set).
#[test]
fn two_network_sets_try_prefix_pairs_first_dimension_outer() {
    let sets = "create nn hash:net,net family inet hashsize 1024 maxelem 65536
add nn 203.0.113.96/28,10.1.0.0/16
add nn 203.0.113.64/26,10.1.0.0/24 nomatch
add nn 198.51.100.0/24,10.2.0.0/16
create npn hash:net,port,net family inet hashsize 1024 maxelem 65536
add npn 203.0.113.192/26,udp:80,10.1.0.0/16
add npn 203.0.113.128/25,udp:80,10.1.0.0/24 nomatch
";
    let s = parse_ipsets("s.sets", sets).unwrap();
    let nn = &s.sets[0];
    assert_eq!((nn.cidrs.len(), nn.cidrs2.len()), (3, 2));
    let rs = rules(
        sets,
        "-A FORWARD -m set --match-set nn src,dst -j DROP\n\
         -A FORWARD -m set --match-set npn src,dst,dst -j DROP",
        Family::V4,
    );
    let f = |src: [u8; 4], dst: [u8; 4], dport: u16| {
        FrameSpec::new(
            IpSpec::v4(src.into(), dst.into()),
            L4Spec::udp(1000, dport, b"x"),
        )
        .build()
    };
    // (28, 16) is tried before (26, 24): the plain entry answers.
    assert_eq!(at(&rs, &f([203, 0, 113, 100], [10, 1, 0, 2], 9), 0), D);
    // Only (26, 24) holds it: nomatch.
    assert_eq!(at(&rs, &f([203, 0, 113, 70], [10, 1, 0, 2], 9), 0), A);
    assert_eq!(at(&rs, &f([198, 51, 100, 1], [10, 2, 9, 9], 9), 0), D);
    assert_eq!(at(&rs, &f([198, 51, 100, 1], [10, 3, 0, 1], 9), 0), A);
    // The flags choose the directions: dst,src does not meet the entry.
    let swapped = rules(
        sets,
        "-A FORWARD -m set --match-set nn dst,src -j DROP",
        Family::V4,
    );
    assert_eq!(at(&swapped, &f([203, 0, 113, 100], [10, 1, 0, 2], 9), 0), A);
    assert_eq!(at(&swapped, &f([10, 1, 0, 2], [203, 0, 113, 100], 9), 0), D);
    // One flag is fewer than hash:net,net's two: never in the set.
    let one = rules(
        sets,
        "-A FORWARD -m set --match-set nn src -j DROP",
        Family::V4,
    );
    assert_eq!(at(&one, &f([203, 0, 113, 100], [10, 1, 0, 2], 9), 0), A);
    // net,port,net: (26, 16) before (25, 24); the port and protocol count.
    assert_eq!(at(&rs, &f([203, 0, 113, 200], [10, 1, 0, 2], 80), 0), D);
    assert_eq!(at(&rs, &f([203, 0, 113, 150], [10, 1, 0, 2], 80), 0), A);
    assert_eq!(at(&rs, &f([203, 0, 113, 200], [10, 1, 0, 2], 53), 0), A);
    // The file's refusals: both networks need their part; a prefix of 0 is refused.
    for (line, want) in [
        (
            "add nn 10.0.0.0/8",
            "invalid entry \"10.0.0.0/8\" for hash:net,net",
        ),
        ("add nn 10.0.0.0/8,10.0.0.0/0", "invalid prefix length"),
        ("add npn 10.0.0.0/8,10.0.0.0/8", "invalid entry"),
        (
            "add nn 10.0.0.0/8,10.0.0.0/8 nomatch timeout 1",
            "timeout cannot be used",
        ),
    ] {
        let text = format!("{sets}{line}\n");
        let e = parse_ipsets("s.sets", &text).unwrap_err();
        assert!(e[0].message.contains(want), "{line}: {e:?}");
    }
}
