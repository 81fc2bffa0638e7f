//! The matches checked on the packet's bytes (ttl, hl, length, tos, dscp, ecn, pkttype, mac,
//! tcpmss, `--tcp-option`), `-m limit` and `-m addrtype`: what the parser takes and refuses,
//! and their meaning on hand-built frames, judged through the frame parser, the classifier
//! and the rule set's checks as a worker judges them.

use super::tests::{assert_refused, compile, ports, wrap};
use super::*;
use dataplane::classify::{Action, Wire};
use dataplane::filter::packet_meta;
use dataplane::router::IfAddr;

// ---------------------------------------------------------------- frames

const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// What a test frame is made of.
#[derive(Clone)]
struct F {
    v6: bool,
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    hops: u8,
    /// TOS / traffic class.
    tos: u8,
    proto: u8,
    flags: u8,
    /// TCP options (a multiple of 4 bytes).
    opts: Vec<u8>,
    payload: usize,
    dst: &'static str,
}

fn f() -> F {
    F {
        v6: false,
        dst_mac: HOST_MAC,
        src_mac: PEER_MAC,
        hops: 64,
        tos: 0,
        proto: 6,
        flags: 0x02,
        opts: Vec::new(),
        payload: 0,
        dst: "192.0.2.1",
    }
}

fn csum(b: &[u8]) -> u16 {
    let mut s = 0u32;
    for c in b.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

impl F {
    fn bytes(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        if self.proto == 6 {
            l4.extend_from_slice(&40000u16.to_be_bytes());
            l4.extend_from_slice(&80u16.to_be_bytes());
            l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
            l4.push((((20 + self.opts.len()) / 4) << 4) as u8);
            l4.push(self.flags);
            l4.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
            l4.extend_from_slice(&self.opts);
        } else {
            l4.extend_from_slice(&[0x9c, 0x40, 0, 53, 0, 8, 0, 0]);
            let n = (8 + self.payload) as u16;
            l4[4..6].copy_from_slice(&n.to_be_bytes());
        }
        l4.extend(std::iter::repeat_n(0u8, self.payload));
        let mut fr = Vec::new();
        fr.extend_from_slice(&self.dst_mac);
        fr.extend_from_slice(&self.src_mac);
        if self.v6 {
            fr.extend_from_slice(&[0x86, 0xdd]);
            fr.push(0x60 | self.tos >> 4);
            fr.push(self.tos << 4);
            fr.extend_from_slice(&[0, 0]);
            fr.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            fr.push(self.proto);
            fr.push(self.hops);
            let s: std::net::Ipv6Addr = "2001:db8:1::1".parse().unwrap();
            let d: std::net::Ipv6Addr = self.dst.parse().unwrap();
            fr.extend_from_slice(&s.octets());
            fr.extend_from_slice(&d.octets());
        } else {
            fr.extend_from_slice(&[0x08, 0x00]);
            let mut ip = vec![0x45, self.tos];
            ip.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&[0, 1, 0x40, 0, self.hops, self.proto, 0, 0]);
            let d: std::net::Ipv4Addr = self.dst.parse().unwrap();
            ip.extend_from_slice(&[10, 0, 0, 1]);
            ip.extend_from_slice(&d.octets());
            let c = csum(&ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            fr.extend_from_slice(&ip);
        }
        fr.extend_from_slice(&l4);
        fr
    }
}

/// The action of `rs` for the frame, at `now_ns`, as a worker judges it (parser, classifier,
/// checks), with the number of LOG rules passed.
fn judge_at(rs: &RuleSet, fr: &F, now_ns: u64) -> (Action, usize) {
    let bytes = fr.bytes();
    let info = dataplane::wire::parse_frame(&bytes).expect("the test frame parses");
    let meta = packet_meta(&bytes, &info, 0, 2).expect("an IP frame");
    let mut logs = 0;
    let j = rs.judge(&meta, &Wire::of(&bytes, &info, now_ns), |_, _, _| logs += 1);
    (j.action, logs)
}

fn judge(rs: &RuleSet, fr: &F) -> Action {
    judge_at(rs, fr, 1_000_000_000).0
}

/// FORWARD DROP with `body`'s rules, compiled with the tree classifier.
fn set(body: &str, family: Family) -> RuleSet {
    let text = if family == Family::V4 {
        wrap(body)
    } else {
        format!("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:user - [0:0]\n{body}\nCOMMIT\n")
    };
    let rs = compile(&text, family).unwrap_or_else(|e| panic!("{e:?}"));
    let c = crate::load::tree_classifier(&rs.rules).unwrap();
    rs.with_classifier(c)
}

const ACCEPT: Action = Action::Accept;
const DROP: Action = Action::Drop;

// ---------------------------------------------------------------- parser

#[test]
fn accepts_the_matches_as_iptables_save_writes_them() {
    for rule in [
        "-m ttl --ttl-eq 64 -j ACCEPT",
        "-m ttl ! --ttl-eq 64 -j ACCEPT",
        "-m ttl --ttl-lt 5 -j DROP",
        "-m ttl --ttl-gt 0x80 -j DROP",
        "-m length --length 0:100 -j ACCEPT",
        "-m length ! --length 1400:65535 -j ACCEPT",
        "-m length --length 1500 -j ACCEPT",
        "-m tos --tos 0x10/0x3f -j ACCEPT",
        "-m tos ! --tos Minimize-Delay -j ACCEPT",
        "-m dscp --dscp 0x2e -j ACCEPT",
        "-m dscp ! --dscp-class AF41 -j ACCEPT",
        "-p tcp -m ecn --ecn-tcp-ece ! --ecn-tcp-cwr --ecn-ip-ect 1 -j ACCEPT",
        "-m ecn --ecn-ip-ect 3 -j DROP",
        "-m pkttype --pkt-type broadcast -j DROP",
        "-m pkttype ! --pkt-type unicast -j DROP",
        "-m mac --mac-source 00:1B:21:aa:bb:cc -j ACCEPT",
        "-m mac ! --mac-source 0:1b:21:aa:bb:cc -j DROP",
        "-p tcp -m tcpmss --mss 1400:1500 -j DROP",
        "-p tcp -m tcp --tcp-flags SYN,RST SYN -m tcpmss ! --mss 536 -j DROP",
        "-p tcp -m tcp --tcp-option 8 -j ACCEPT",
        "-p tcp -m tcp ! --tcp-option 2 --dport 80 -j ACCEPT",
        "-m limit --limit 3/min --limit-burst 10 -j LOG --log-prefix \"[UFW BLOCK] \"",
        "-m limit -j ACCEPT",
        "-m limit --limit 5/sec -j ACCEPT",
        "-m addrtype --dst-type LOCAL -j ACCEPT",
        "-m addrtype ! --src-type LOCAL,MULTICAST --dst-type BROADCAST -j DROP",
        "-m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT",
        "-m addrtype --src-type UNICAST --limit-iface-out -j ACCEPT",
    ] {
        let text = wrap(&format!("-A FORWARD {rule}"));
        if let Err(e) = compile(&text, Family::V4) {
            panic!("{rule:?} refused: {e:?}");
        }
    }
    for rule in [
        "-p ipv6-icmp -m hl --hl-eq 255 -j ACCEPT",
        "-m hl ! --hl-eq 1 -j ACCEPT",
        "-m hl --hl-lt 2 -j DROP",
        "-m length --length 40:1280 -j ACCEPT",
        "-m tos --tos 0x20/0xe0 -j ACCEPT",
        "-m addrtype --dst-type LOCAL -j ACCEPT",
        "-m addrtype --dst-type MULTICAST -j ACCEPT",
        "-m addrtype --src-type UNSPEC -j DROP",
        "-m rt --rt-type 0 -j DROP",
        "-m rt ! --rt-type 2 --rt-segsleft 1:3 ! --rt-len 24 -j DROP",
    ] {
        let text = format!("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD {rule}\nCOMMIT\n");
        if let Err(e) = compile(&text, Family::V6) {
            panic!("{rule:?} refused: {e:?}");
        }
    }
}

/// (rule after `-A FORWARD `, message substring, index of the offending word in the rule).
const REFUSED: &[(&str, &str, usize)] = &[
    ("-m ttl -j ACCEPT", "-m ttl needs --ttl-eq", 0),
    (
        "-m ttl ! --ttl-lt 5 -j ACCEPT",
        "! is not allowed before --ttl-lt",
        3,
    ),
    ("-m ttl --ttl-eq 256 -j ACCEPT", "invalid TTL", 3),
    (
        "-m ttl --ttl-eq 1 --ttl-gt 2 -j ACCEPT",
        "cannot be combined",
        4,
    ),
    (
        "-m hl --hl-eq 1 -j ACCEPT",
        "unsupported option -m hl in iptables",
        1,
    ),
    ("-m length --length 10:70000 -j ACCEPT", "invalid length", 3),
    ("-m tos --tos Fast -j ACCEPT", "invalid TOS", 3),
    ("-m dscp --dscp 64 -j ACCEPT", "invalid DSCP value", 3),
    (
        "-m dscp --dscp-class AF44 -j ACCEPT",
        "invalid DSCP class",
        3,
    ),
    (
        "-m dscp --dscp 1 --dscp-class EF -j ACCEPT",
        "cannot be combined",
        4,
    ),
    ("-m ecn --ecn-tcp-ece -j ACCEPT", "needs -p tcp", 0),
    ("-m ecn --ecn-ip-ect 4 -j ACCEPT", "invalid ECT value", 3),
    (
        "-m pkttype --pkt-type otherhost -j ACCEPT",
        "not supported",
        3,
    ),
    (
        "-m mac --mac-source 00:11:22:33:44 -j ACCEPT",
        "invalid MAC",
        3,
    ),
    (
        "-m tcpmss --mss 1400 -j ACCEPT",
        "-m tcpmss needs -p tcp",
        0,
    ),
    ("-p tcp -m tcpmss --mss 1:x -j ACCEPT", "invalid MSS", 5),
    ("-p tcp --tcp-option 300 -j ACCEPT", "invalid TCP option", 3),
    (
        "-m limit ! --limit 3/min -j ACCEPT",
        "does not support !",
        3,
    ),
    ("-m limit --limit 3/fortnight -j ACCEPT", "invalid rate", 3),
    ("-m limit --limit 20000/s -j ACCEPT", "too fast", 3),
    ("-m limit --limit-burst 10001 -j ACCEPT", "invalid burst", 3),
    ("-m limit --limit-burst 0 -j ACCEPT", "out of range", 0),
    ("-m addrtype -j ACCEPT", "needs --src-type or --dst-type", 0),
    (
        "-m addrtype --dst-type BLACKHOLE -j ACCEPT",
        "address type BLACKHOLE is not supported",
        3,
    ),
    (
        "-m addrtype --dst-type LOCL -j ACCEPT",
        "invalid address type",
        3,
    ),
    (
        "-m addrtype --dst-type LOCAL --limit-iface-in --limit-iface-out -j ACCEPT",
        "cannot be combined",
        5,
    ),
    (
        "-m hashlimit --hashlimit-upto 5/s -j ACCEPT",
        "-m hashlimit needs --hashlimit-name",
        0,
    ),
];

#[test]
fn refuses_bad_values_at_their_column() {
    for &(rule, msg, word) in REFUSED {
        let text = wrap(&format!("-A FORWARD {rule}"));
        assert_refused(&text, Family::V4, 6, rule, msg, word);
    }
    // Chains where the condition cannot be: mac after routing, addrtype's interface
    // limits in the wrong direction, per-packet checks in the nat table, IPv6 BROADCAST.
    let e = compile(
        &wrap("-A OUTPUT -m mac --mac-source 00:11:22:33:44:55 -j ACCEPT"),
        Family::V4,
    )
    .unwrap_err();
    assert!(
        e[0].message.contains("-m mac is not valid in chain OUTPUT"),
        "{e:?}"
    );
    let e = compile(
        &wrap("-A OUTPUT -j user\n-A user -m mac --mac-source 00:11:22:33:44:55 -j ACCEPT"),
        Family::V4,
    )
    .unwrap_err();
    assert!(
        e[0].message
            .contains("can't use -m mac in chain user: it is reached from OUTPUT"),
        "{e:?}"
    );
    let e = compile(
        &wrap("-A OUTPUT -m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT"),
        Family::V4,
    )
    .unwrap_err();
    assert!(
        e[0].message
            .contains("--limit-iface-in is not valid in chain OUTPUT"),
        "{e:?}"
    );
    let nat = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -m ttl --ttl-lt 5 -j ACCEPT\nCOMMIT\n";
    let e = parse_iptables("n", nat, Family::V4, &ports()).unwrap_err();
    assert!(
        e[0].message.contains("not supported in the nat table"),
        "{e:?}"
    );
    let nat_addrtype = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\nCOMMIT\n";
    parse_iptables("n", nat_addrtype, Family::V4, &ports()).expect("docker's nat rule loads");
    let v6 = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m addrtype --dst-type BROADCAST -j DROP\nCOMMIT\n";
    let e = compile(v6, Family::V6).unwrap_err();
    assert!(
        e[0].message.contains("BROADCAST is not valid for IPv6"),
        "{e:?}"
    );
}

// ---------------------------------------------------------------- meaning

#[test]
fn ttl_and_hop_limit_around_their_bounds() {
    let rs = set("-A FORWARD -m ttl --ttl-lt 5 -j DROP\n-A FORWARD -m ttl ! --ttl-eq 64 -j ACCEPT\n-A FORWARD -m ttl --ttl-gt 63 -j DROP", Family::V4);
    let at = |h: u8| judge(&rs, &F { hops: h, ..f() });
    assert_eq!(at(4), DROP);
    assert_eq!(at(5), ACCEPT);
    assert_eq!(at(63), ACCEPT);
    // 64: not `! --ttl-eq 64`, then `--ttl-gt 63`.
    assert_eq!(at(64), DROP);
    assert_eq!(at(65), ACCEPT);
    assert!(!rs.cacheable, "a TTL is a per-packet condition");
    let rs = set("-A FORWARD -m hl --hl-eq 255 -j ACCEPT\n-A FORWARD -m hl --hl-lt 2 -j DROP\n-A FORWARD -j ACCEPT", Family::V6);
    let v6 = |h: u8| {
        judge(
            &rs,
            &F {
                v6: true,
                hops: h,
                dst: "2001:db8:2::1",
                ..f()
            },
        )
    };
    assert_eq!(v6(255), ACCEPT);
    assert_eq!(v6(1), DROP);
    assert_eq!(v6(2), ACCEPT);
}

#[test]
fn length_is_the_ip_length() {
    // IPv4 UDP: 20 + 8 + payload.
    let rs = set(
        "-A FORWARD -m length --length 100:200 -j ACCEPT",
        Family::V4,
    );
    let at = |n: usize| {
        judge(
            &rs,
            &F {
                proto: 17,
                payload: n - 28,
                ..f()
            },
        )
    };
    assert_eq!(at(99), DROP);
    assert_eq!(at(100), ACCEPT);
    assert_eq!(at(200), ACCEPT);
    assert_eq!(at(201), DROP);
    let rs = set(
        "-A FORWARD -m length ! --length 100:200 -j ACCEPT",
        Family::V4,
    );
    let at = |n: usize| {
        judge(
            &rs,
            &F {
                proto: 17,
                payload: n - 28,
                ..f()
            },
        )
    };
    assert_eq!((at(99), at(100), at(201)), (ACCEPT, DROP, ACCEPT));
    // IPv6: payload length + 40.
    let rs = set("-A FORWARD -m length --length 100 -j ACCEPT", Family::V6);
    let v6 = |n: usize| {
        judge(
            &rs,
            &F {
                v6: true,
                proto: 17,
                payload: n - 48,
                dst: "2001:db8:2::1",
                ..f()
            },
        )
    };
    assert_eq!((v6(99), v6(100), v6(101)), (DROP, ACCEPT, DROP));
}

#[test]
fn tos_dscp_and_ecn() {
    let rs = set("-A FORWARD -m dscp --dscp-class EF -j ACCEPT\n-A FORWARD -m tos --tos Minimize-Delay -j ACCEPT\n-A FORWARD -m ecn --ecn-ip-ect 3 -j ACCEPT", Family::V4);
    let at = |t: u8| judge(&rs, &F { tos: t, ..f() });
    assert_eq!(at(46 << 2), ACCEPT);
    assert_eq!(at(46 << 2 | 1), ACCEPT, "the ECN bits are not the DSCP's");
    assert_eq!(at(45 << 2), DROP);
    // Minimize-Delay is 0x10 under mask 0x3f: the precedence bits do not count.
    assert_eq!(at(0x10 | 0xc0), ACCEPT);
    assert_eq!(at(0x18), DROP);
    assert_eq!(at(3), ACCEPT);
    let rs = set("-A FORWARD -m dscp ! --dscp 0 -j ACCEPT", Family::V6);
    let v6 = |t: u8| {
        judge(
            &rs,
            &F {
                v6: true,
                tos: t,
                dst: "2001:db8:2::1",
                ..f()
            },
        )
    };
    assert_eq!((v6(0), v6(3), v6(8 << 2)), (DROP, DROP, ACCEPT));
    // ECE / CWR are TCP flags.
    let rs = set(
        "-A FORWARD -p tcp -m ecn --ecn-tcp-ece ! --ecn-tcp-cwr -j ACCEPT",
        Family::V4,
    );
    let at = |fl: u8| judge(&rs, &F { flags: fl, ..f() });
    assert_eq!((at(0x42), at(0xc2), at(0x02)), (ACCEPT, DROP, DROP));
}

#[test]
fn packet_type_and_source_mac() {
    let rs = set("-A FORWARD -m pkttype --pkt-type broadcast -j DROP\n-A FORWARD -m pkttype ! --pkt-type unicast -j LOG\n-A FORWARD -m pkttype --pkt-type multicast -j ACCEPT\n-A FORWARD -m mac --mac-source 02:00:00:00:00:02 -j ACCEPT", Family::V4);
    let at = |d: [u8; 6], s: [u8; 6]| {
        judge_at(
            &rs,
            &F {
                dst_mac: d,
                src_mac: s,
                ..f()
            },
            0,
        )
    };
    assert_eq!(at([0xff; 6], PEER_MAC), (DROP, 0));
    assert_eq!(at([0x01, 0, 0x5e, 0, 0, 1], PEER_MAC), (ACCEPT, 1));
    assert_eq!(at(HOST_MAC, PEER_MAC), (ACCEPT, 0));
    assert_eq!(at(HOST_MAC, [0x02, 0, 0, 0, 0, 3]), (DROP, 0));
}

#[test]
fn tcpmss_and_tcp_options() {
    let mss = |v: u16| {
        let mut o = vec![2, 4];
        o.extend_from_slice(&v.to_be_bytes());
        o
    };
    let rs = set("-A FORWARD -p tcp -m tcpmss --mss 1400:1500 -j DROP\n-A FORWARD -p tcp -m tcpmss ! --mss 536:1500 -j ACCEPT", Family::V4);
    let at = |o: Vec<u8>| judge(&rs, &F { opts: o, ..f() });
    // 1399: below the first range, inside the second: the policy.
    assert_eq!(at(mss(1399)), DROP);
    assert_eq!(at(mss(1400)), DROP);
    assert_eq!(at(mss(1501)), ACCEPT);
    assert_eq!(at(mss(535)), ACCEPT);
    // No MSS option: only the negated match holds.
    assert_eq!(at(Vec::new()), ACCEPT);
    assert_eq!(at(vec![1, 1, 1, 1]), ACCEPT);
    // After a NOP and a timestamp.
    let mut o = vec![1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0];
    o.extend(mss(1460));
    assert_eq!(at(o.clone()), DROP);
    let rs = set("-A FORWARD -p tcp --tcp-option 8 -j ACCEPT\n-A FORWARD -p tcp ! --tcp-option 4 -j LOG\n-A FORWARD -p tcp -m tcp --tcp-option 0 -j DROP", Family::V4);
    assert_eq!(judge_at(&rs, &F { opts: o, ..f() }, 0), (ACCEPT, 0));
    assert_eq!(
        judge_at(
            &rs,
            &F {
                opts: vec![4, 2, 1, 1],
                ..f()
            },
            0
        ),
        (DROP, 0)
    );
    assert_eq!(
        judge_at(
            &rs,
            &F {
                opts: mss(1460),
                ..f()
            },
            0
        ),
        (DROP, 1)
    );
}

#[test]
fn limit_passes_the_burst_then_the_rate() {
    // 1/hour with a burst of 3: only the burst passes within the test's seconds.
    let rs = set("-A FORWARD -m limit --limit 1/hour --limit-burst 3 -j LOG\n-A FORWARD -m limit --limit 2/sec --limit-burst 2 -j ACCEPT", Family::V4);
    assert!(!rs.cacheable);
    let t0 = 7_000_000_000u64;
    let got: Vec<(Action, usize)> = (0..5).map(|i| judge_at(&rs, &f(), t0 + i)).collect();
    // The LOG rule's burst is 3, the ACCEPT rule's 2.
    assert_eq!(
        got,
        vec![(ACCEPT, 1), (ACCEPT, 1), (DROP, 1), (DROP, 0), (DROP, 0)]
    );
    // 2/sec refills one packet every 500 ms.
    assert_eq!(judge_at(&rs, &f(), t0 + 499_999_999), (DROP, 0));
    assert_eq!(judge_at(&rs, &f(), t0 + 500_000_000), (ACCEPT, 0));
    // A limit on a jump (ufw's `ufw-not-local`) is asked once per packet, at the jump: the
    // chain's two rules do not each take from the bucket, and once it is empty the chain is
    // skipped.
    let rs = set("-A FORWARD -m limit --limit 1/hour --limit-burst 2 -j user\n-A user -p udp -j LOG\n-A user -p tcp -j DROP\n-A FORWARD -j ACCEPT", Family::V4);
    let got: Vec<(Action, usize)> = (0..3).map(|i| judge_at(&rs, &f(), t0 + i)).collect();
    assert_eq!(got, vec![(DROP, 0), (DROP, 0), (ACCEPT, 0)]);
    let udp = F { proto: 17, ..f() };
    assert_eq!(judge_at(&rs, &udp, t0), (ACCEPT, 0));
    let rs = set("-A FORWARD -p udp -m limit --limit 1/hour --limit-burst 1 -g user\n-A user -j LOG\n-A FORWARD -j ACCEPT", Family::V4);
    let udp = |i| judge_at(&rs, &F { proto: 17, ..f() }, t0 + i);
    assert_eq!((udp(0), udp(1)), ((DROP, 1), (ACCEPT, 0)));
    assert_eq!(
        judge_at(&rs, &f(), t0 + 2),
        (ACCEPT, 0),
        "TCP never takes the jump"
    );
    // One bucket per rule: the flat rules of a rule with two cubes share it.
    let rs = set("-A FORWARD -p udp -m multiport --dports 53,123 -m limit --limit 1/hour --limit-burst 2 -j ACCEPT", Family::V4);
    assert!(rs.rules.len() > 2);
    assert_eq!(rs.buckets.len(), 1);
    let udp = |p| judge(&rs, &F { proto: 17, ..f() }).eq(&p);
    assert!(udp(ACCEPT) && udp(ACCEPT) && udp(DROP));
}

#[test]
fn a_failed_check_goes_on_with_the_next_rule() {
    // A jump whose condition fails is not taken; its chain's rules carry it.
    let rs = set("-A FORWARD -m ttl --ttl-lt 5 -j user\n-A FORWARD -m length --length 0:40 -j ACCEPT\n-A user -m tos --tos 0x10 -j RETURN\n-A user -j DROP\n-A FORWARD -j ACCEPT", Family::V4);
    assert_eq!(judge(&rs, &F { hops: 4, ..f() }), DROP);
    assert_eq!(
        judge(
            &rs,
            &F {
                hops: 4,
                tos: 0x10,
                payload: 1,
                ..f()
            }
        ),
        ACCEPT
    );
    assert_eq!(judge(&rs, &F { hops: 64, ..f() }), ACCEPT);
    // A set without checks stays cacheable.
    assert!(set("-A FORWARD -p tcp --dport 80 -j ACCEPT", Family::V4).cacheable);
}

fn host() -> HostAddrs {
    let a = |s: &str, len| IfAddr::new(s.parse().unwrap(), len);
    HostAddrs {
        ports: vec![
            vec![a("10.1.0.1", 24), a("2001:db8:1::1", 64)],
            vec![a("10.2.0.1", 30)],
            vec![a("192.0.2.254", 24)],
            vec![],
        ],
        routed: true,
        bridge: None,
        rpf: None,
    }
}

fn router_set(body: &str, family: Family, host: &HostAddrs) -> RuleSet {
    let text = format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n{body}\nCOMMIT\n"
    );
    let parsed =
        parse_iptables_with("t", &text, family, &ports(), host).unwrap_or_else(|e| panic!("{e:?}"));
    compile_parsed(&parsed, Hook::Forward).unwrap()
}

fn addr_judge(rs: &RuleSet, dst: &str, in_port: u8) -> Action {
    let d: std::net::IpAddr = dst.parse().unwrap();
    let s: std::net::IpAddr = if d.is_ipv4() {
        "198.51.100.7".parse().unwrap()
    } else {
        "2001:db8:9::7".parse().unwrap()
    };
    let p = dataplane::classify::PacketMeta {
        key: dataplane::wire::FlowKey {
            src: dataplane::wire::IpAddr128::from_std(s),
            dst: dataplane::wire::IpAddr128::from_std(d),
            src_port: 1,
            dst_port: 2,
            proto: 17,
            family: if d.is_ipv4() { Family::V4 } else { Family::V6 },
        },
        in_port,
        out_port: 2,
        ct_state: dataplane::classify::ct::NEW,
        tcp_flags: 0,
        later_fragment: false,
    };
    rs.evaluate(&p, |_, _, _| {}).action
}

#[test]
fn addrtype_from_the_routers_addresses() {
    let h = host();
    let rs = router_set(
        "-A FORWARD -m addrtype --dst-type LOCAL -j ACCEPT",
        Family::V4,
        &h,
    );
    assert!(
        rs.cacheable,
        "an address type is the address's, not the packet's"
    );
    for (dst, want) in [
        ("10.1.0.1", ACCEPT),
        ("10.2.0.1", ACCEPT),
        ("127.0.0.1", ACCEPT),
        ("127.255.255.255", DROP),
        ("10.1.0.2", DROP),
        ("10.1.0.255", DROP),
    ] {
        assert_eq!(addr_judge(&rs, dst, 0), want, "{dst}");
    }
    let rs = router_set(
        "-A FORWARD -m addrtype --dst-type BROADCAST -j ACCEPT",
        Family::V4,
        &h,
    );
    for (dst, want) in [
        ("255.255.255.255", ACCEPT),
        ("0.1.2.3", ACCEPT),
        ("10.1.0.255", ACCEPT),
        ("10.2.0.3", ACCEPT),
        ("192.0.2.255", ACCEPT),
        ("10.1.0.0", DROP),
        ("10.1.0.1", DROP),
    ] {
        assert_eq!(addr_judge(&rs, dst, 0), want, "{dst}");
    }
    let rs = router_set(
        "-A FORWARD -m addrtype ! --dst-type UNICAST -j ACCEPT",
        Family::V4,
        &h,
    );
    for (dst, want) in [
        ("224.0.0.1", ACCEPT),
        ("10.1.0.1", ACCEPT),
        ("10.1.0.255", ACCEPT),
        ("8.8.8.8", DROP),
        ("10.1.0.0", DROP),
    ] {
        assert_eq!(addr_judge(&rs, dst, 0), want, "{dst}");
    }
    // --limit-iface-in: another port's address is UNICAST seen from this one.
    let rs = router_set(
        "-A FORWARD -m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT",
        Family::V4,
        &h,
    );
    assert_eq!(addr_judge(&rs, "10.1.0.1", 0), ACCEPT);
    assert_eq!(addr_judge(&rs, "10.1.0.1", 1), DROP);
    assert_eq!(addr_judge(&rs, "10.2.0.1", 1), ACCEPT);
    // Bridge mode: no address of Rampart's is LOCAL.
    let rs = router_set(
        "-A FORWARD -m addrtype --dst-type LOCAL -j ACCEPT",
        Family::V4,
        &HostAddrs::default(),
    );
    assert_eq!(addr_judge(&rs, "10.1.0.1", 0), DROP);
    // IPv6: the type tests are a conjunction (match_type6).
    let rs = router_set("-A FORWARD -m addrtype --dst-type LOCAL -j ACCEPT\n-A FORWARD -m addrtype --dst-type UNICAST,MULTICAST -j ACCEPT\n-A FORWARD -m addrtype ! --dst-type UNICAST -j LOG\n-A FORWARD -m addrtype --dst-type MULTICAST -j ACCEPT", Family::V6, &h);
    for (dst, want) in [
        ("2001:db8:1::1", ACCEPT),
        ("::1", ACCEPT),
        ("2001:db8:1::2", DROP),
        ("ff02::1", ACCEPT),
        ("::", DROP),
        ("::ffff:10.1.0.1", DROP),
    ] {
        assert_eq!(addr_judge(&rs, dst, 0), want, "{dst}");
    }
}

#[test]
fn ipv6_routing_header() {
    // Ethernet, IPv6 (next header 43), a Routing header of `ty` with `segs` left (24 bytes),
    // UDP.
    let frame = |ty: u8, segs: u8, rh: bool| {
        let mut fr = Vec::new();
        fr.extend_from_slice(&HOST_MAC);
        fr.extend_from_slice(&PEER_MAC);
        fr.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        let plen: u16 = if rh { 32 } else { 8 };
        fr.extend_from_slice(&plen.to_be_bytes());
        fr.push(if rh { 43 } else { 17 });
        fr.push(64);
        let s: std::net::Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        let d: std::net::Ipv6Addr = "2001:db8:2::1".parse().unwrap();
        fr.extend_from_slice(&s.octets());
        fr.extend_from_slice(&d.octets());
        if rh {
            fr.extend_from_slice(&[17, 2, ty, segs, 0, 0, 0, 0]);
            fr.extend_from_slice(&d.octets());
        }
        fr.extend_from_slice(&[0x9c, 0x40, 0, 53, 0, 8, 0, 0]);
        fr
    };
    let text = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m rt --rt-type 0 -j DROP\n-A FORWARD -m rt ! --rt-type 2 --rt-segsleft 1:3 --rt-len 24 -j REJECT\n-A FORWARD -m rt --rt-type 4 ! --rt-segsleft 0 -j DROP\nCOMMIT\n";
    let rs = compile(text, Family::V6).unwrap();
    let at = |ty, segs, rh| {
        let bytes = frame(ty, segs, rh);
        let info = dataplane::wire::parse_frame(&bytes).expect("parses");
        let meta = packet_meta(&bytes, &info, 0, 2).unwrap();
        rs.judge(&meta, &Wire::of(&bytes, &info, 0), |_, _, _| {})
            .action
    };
    assert_eq!(at(0, 0, true), DROP);
    assert_eq!(at(0, 0, false), ACCEPT);
    assert!(matches!(at(3, 2, true), Action::Reject(_)));
    assert_eq!(at(3, 4, true), ACCEPT);
    assert_eq!(at(2, 2, true), ACCEPT);
    assert_eq!(at(4, 5, true), DROP);
    assert_eq!(at(4, 0, true), ACCEPT);
}
