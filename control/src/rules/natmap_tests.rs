//! `-j NETMAP` and `-j REDIRECT`: what the parser takes (every option, the forms iptables-save
//! writes, both families) into which nat target, and what it refuses, at the line and column,
//! where iptables refuses it.

use super::*;
use dataplane::classify::{ct, PacketMeta};
use dataplane::nat::rules::NatDecision;
use dataplane::nat::{NatKind, NatRange, NatRules, NatTarget};
use dataplane::wire::{ip_proto, FlowKey, IpAddr128};

fn ports() -> Vec<String> {
    vec!["lan0".into(), "wan0".into()]
}

fn nat(text: &str, family: Family) -> Result<NatRules, Vec<String>> {
    let parsed = parse_iptables("n.rules", text, family, &ports())
        .map_err(|e| e.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
    compile_nat(&parsed).map_err(|e| e.iter().map(|e| e.to_string()).collect())
}

fn table(rules: &str) -> String {
    format!("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:u - [0:0]\n{rules}\nCOMMIT\n")
}

/// The first line of a rule in [`table`].
const LINE: u32 = 7;

fn a(s: &str) -> IpAddr128 {
    IpAddr128::from_std(s.parse().unwrap())
}

fn meta(key: FlowKey) -> PacketMeta {
    PacketMeta {
        key,
        in_port: 0,
        out_port: 1,
        ct_state: ct::NEW,
        tcp_flags: 0x02,
        later_fragment: false,
    }
}

fn decided(chain: &dataplane::nat::NatChain, key: FlowKey) -> Option<NatTarget> {
    match chain.decide(&meta(key), |_, _, _| {}).0 {
        NatDecision::Translate(t) => Some(*t),
        _ => None,
    }
}

fn v4_tcp(dst_port: u16) -> FlowKey {
    FlowKey::new_v4(
        [192, 168, 1, 9].into(),
        [198, 19, 0, 9].into(),
        ip_proto::TCP,
        40000,
        dst_port,
    )
}

fn v6_udp() -> FlowKey {
    FlowKey::new_v6(
        "fd00::9".parse().unwrap(),
        "2001:db8:19::9".parse().unwrap(),
        ip_proto::UDP,
        5353,
        53,
    )
}

#[test]
fn netmap_takes_a_prefix_as_iptables_stores_it() {
    // (the --to value, the range kept: the prefix's first and last address)
    for (to, lo, hi) in [
        ("10.9.0.0/24", "10.9.0.0", "10.9.0.255"),
        // Host bits are dropped, as iptables-save shows them (10.9.0.0/24).
        ("10.9.0.77/24", "10.9.0.0", "10.9.0.255"),
        ("10.9.0.0/255.255.0.0", "10.9.0.0", "10.9.255.255"),
        ("10.9.8.7", "10.9.8.7", "10.9.8.7"),
        ("10.9.8.7/32", "10.9.8.7", "10.9.8.7"),
        ("10.9.8.7/0", "0.0.0.0", "255.255.255.255"),
    ] {
        for chain in ["PREROUTING", "POSTROUTING", "OUTPUT"] {
            let r = nat(
                &table(&format!("-A {chain} -j NETMAP --to {to}")),
                Family::V4,
            )
            .unwrap();
            let Some(c) = (match chain {
                "PREROUTING" => Some(&r.prerouting),
                "POSTROUTING" => Some(&r.postrouting),
                _ => None,
            }) else {
                // OUTPUT loads and applies to nothing Rampart sends.
                assert!(decided(&r.prerouting, v4_tcp(80)).is_none());
                continue;
            };
            let t = decided(c, v4_tcp(80)).expect("translates");
            assert_eq!(t.kind, NatKind::Netmap, "{to}");
            assert_eq!(
                t.range,
                NatRange {
                    addrs: Some((a(lo), a(hi))),
                    ..NatRange::to_addr(a(lo))
                },
                "{chain} {to}"
            );
        }
    }
    // Reached through a user chain, and IPv6.
    let r = nat(
        &table("-A PREROUTING -i lan0 -j u\n-A u -d 2001:db8:19::/64 -j NETMAP --to fd00:5::77/64"),
        Family::V6,
    )
    .unwrap();
    let t = decided(&r.prerouting, v6_udp()).expect("translates");
    assert_eq!(
        (t.kind, t.range.addrs),
        (
            NatKind::Netmap,
            Some((a("fd00:5::"), a("fd00:5::ffff:ffff:ffff:ffff")))
        )
    );
}

#[test]
fn redirect_takes_its_ports_and_random() {
    for (rule, ports, random) in [
        ("-p tcp -j REDIRECT", None, false),
        (
            "-p tcp -j REDIRECT --to-ports 8080",
            Some((8080, 8080)),
            false,
        ),
        (
            "-p udp -j REDIRECT --to-ports 5300-5310 --random",
            Some((5300, 5310)),
            true,
        ),
        ("-p tcp -j REDIRECT --random", None, true),
        ("-p sctp -j REDIRECT --to-ports 0", Some((0, 0)), false),
        // Without ports any protocol may be redirected (its address only).
        ("-p icmp -j REDIRECT", None, false),
        ("-j REDIRECT", None, false),
    ] {
        let r = nat(&table(&format!("-A PREROUTING {rule}")), Family::V4).unwrap();
        let key = if rule.contains("udp") {
            FlowKey {
                proto: ip_proto::UDP,
                ..v4_tcp(53)
            }
        } else if rule.contains("sctp") {
            FlowKey {
                proto: 132,
                ..v4_tcp(53)
            }
        } else if rule.contains("icmp") {
            FlowKey::new_v4(
                [1, 1, 1, 1].into(),
                [2, 2, 2, 2].into(),
                ip_proto::ICMP,
                7,
                0x0800,
            )
        } else {
            v4_tcp(80)
        };
        let t = decided(&r.prerouting, key).expect(rule);
        assert_eq!(t.kind, NatKind::Redirect, "{rule}");
        assert_eq!(
            t.range,
            NatRange {
                addrs: None,
                ports,
                random,
                random_fully: false,
                persistent: false,
            },
            "{rule}"
        );
    }
    // OUTPUT loads (and is never applied); IPv6 too.
    nat(
        &table("-A OUTPUT -p udp --dport 53 -j REDIRECT --to-ports 5353"),
        Family::V4,
    )
    .unwrap();
    let r = nat(
        &table("-A PREROUTING -p udp -j REDIRECT --to-ports 5353"),
        Family::V6,
    )
    .unwrap();
    assert_eq!(
        decided(&r.prerouting, v6_udp()).unwrap().kind,
        NatKind::Redirect
    );
}

#[test]
fn refusals_are_iptables_own_at_line_and_column() {
    let cases: &[(&str, Family, &str, u32)] = &[
        (
            "-A PREROUTING -j NETMAP",
            Family::V4,
            "NETMAP needs --to",
            18,
        ),
        (
            "-A PREROUTING -j NETMAP --to 10.0.0.0/33",
            Family::V4,
            "invalid prefix length \"33\"",
            30,
        ),
        (
            "-A PREROUTING -j NETMAP --to 10.0.0.0/-1",
            Family::V4,
            "invalid prefix length",
            30,
        ),
        (
            "-A PREROUTING -j NETMAP --to 10.0.0.0/255.0.255.0",
            Family::V4,
            "non-contiguous mask",
            30,
        ),
        (
            "-A PREROUTING -j NETMAP --to fd00::/129",
            Family::V6,
            "invalid prefix length",
            30,
        ),
        (
            "-A PREROUTING -j NETMAP --to 10.0.0.0/8",
            Family::V6,
            "IPv4 address",
            30,
        ),
        (
            "-A PREROUTING -j NETMAP --to fd00::/8",
            Family::V4,
            "IPv6 address",
            30,
        ),
        (
            "-A PREROUTING -j NETMAP --to host.example/8",
            Family::V4,
            "host names are not resolved",
            30,
        ),
        (
            "-A PREROUTING -j NETMAP --to 10.0.0.0/8:80",
            Family::V4,
            "invalid mask \"8:80\"",
            30,
        ),
        (
            "-A PREROUTING -j NETMAP ! --to 10.0.0.0/8",
            Family::V4,
            "! is not allowed before --to",
            27,
        ),
        (
            "-A PREROUTING -j NETMAP --to 10.0.0.0/8 --to 11.0.0.0/8",
            Family::V4,
            "only one --to is allowed",
            41,
        ),
        (
            "-A PREROUTING -j NETMAP --to 10.0.0.0/8 --random",
            Family::V4,
            "unsupported option --random",
            41,
        ),
        (
            "-A PREROUTING -j NETMAP --to",
            Family::V4,
            "option --to needs a value",
            25,
        ),
        (
            "-A PREROUTING -p tcp -j REDIRECT --to-ports 8080-8000",
            Family::V4,
            "min > max",
            45,
        ),
        (
            "-A PREROUTING -p tcp -j REDIRECT --to-ports 65536",
            Family::V4,
            "65536",
            45,
        ),
        (
            "-A PREROUTING -p tcp -j REDIRECT --to-ports 80:90",
            Family::V4,
            "80:90",
            45,
        ),
        (
            "-A PREROUTING -p tcp -j REDIRECT --to-ports x",
            Family::V4,
            "x",
            45,
        ),
        (
            "-A PREROUTING -j REDIRECT --to-ports 8080",
            Family::V4,
            "a port mapping needs -p tcp",
            38,
        ),
        (
            "-A PREROUTING -p tcp -j REDIRECT --to-ports 80 --to-ports 81",
            Family::V4,
            "only one --to-ports is allowed",
            48,
        ),
        (
            "-A PREROUTING -p tcp -j REDIRECT ! --to-ports 80",
            Family::V4,
            "! is not allowed before --to-ports",
            36,
        ),
        (
            "-A PREROUTING -p tcp -j REDIRECT --random-fully",
            Family::V4,
            "unsupported option --random-fully",
            34,
        ),
        (
            "-A PREROUTING -p tcp -j REDIRECT --to 1.2.3.4",
            Family::V4,
            "unsupported option --to",
            34,
        ),
        // xt_REDIRECT's hooks: PREROUTING and OUTPUT.
        (
            "-A POSTROUTING -p tcp -j REDIRECT",
            Family::V4,
            "target REDIRECT is not valid in chain POSTROUTING (only in PREROUTING, OUTPUT)",
            26,
        ),
        (
            "-A INPUT -p tcp -j REDIRECT",
            Family::V4,
            "target REDIRECT is not valid in chain INPUT",
            20,
        ),
        // Through a user chain: the chain's reach decides.
        (
            "-A POSTROUTING -j u\n-A u -p tcp -j REDIRECT",
            Family::V4,
            "target REDIRECT is not valid in chain u: it is reached from POSTROUTING",
            13,
        ),
        // nat INPUT translates traffic to Rampart itself: refused, as SNAT there is.
        (
            "-A INPUT -j NETMAP --to 10.0.0.0/8",
            Family::V4,
            "nat INPUT rules that translate are not supported",
            1,
        ),
    ];
    for &(rules, family, msg, col) in cases {
        let errs = nat(&table(rules), family).expect_err(rules);
        assert_eq!(errs.len(), 1, "{rules}: {errs:?}");
        let line = LINE + rules.matches('\n').count() as u32;
        let at = format!("n.rules:{line}:{col}: ");
        assert!(
            errs[0].starts_with(&at) && errs[0].contains(msg),
            "{rules}: {errs:?}, wanted {at}...{msg}"
        );
    }
    // Outside the nat table.
    for (t, chain) in [
        ("filter", "FORWARD"),
        ("mangle", "PREROUTING"),
        ("raw", "PREROUTING"),
    ] {
        for target in ["NETMAP --to 10.0.0.0/8", "REDIRECT"] {
            let text = format!("*{t}\n-A {chain} -p tcp -j {target}\nCOMMIT\n");
            let errs = nat(&text, Family::V4).expect_err(&text);
            let name = target.split(' ').next().unwrap();
            assert!(
                errs.len() == 1 && errs[0].contains(&format!("target {name} ")),
                "{text}: {errs:?}"
            );
        }
    }
    // Chain names that are target names.
    for name in ["NETMAP", "REDIRECT"] {
        let errs = nat(&format!("*nat\n:{name} - [0:0]\nCOMMIT\n"), Family::V4).unwrap_err();
        assert!(errs[0].contains("clashes with a target name"), "{errs:?}");
    }
}

#[test]
fn the_example_rule_set_loads_and_maps() {
    let text = include_str!("../../../examples/iptables/netmap-redirect.rules");
    let ports = vec!["inside".to_string(), "outside".to_string()];
    let parsed = parse_iptables("netmap-redirect.rules", text, Family::V4, &ports).unwrap();
    let r = compile_nat(&parsed).unwrap();
    compile_parsed(&parsed, Hook::Forward).unwrap();
    let out = FlowKey::new_v4(
        [10, 0, 0, 7].into(),
        [192, 0, 2, 1].into(),
        ip_proto::UDP,
        5000,
        123,
    );
    let t = decided(&r.postrouting, out).expect("mapped out");
    assert_eq!(
        (t.kind, t.range.addrs),
        (NatKind::Netmap, Some((a("198.18.0.0"), a("198.18.0.255"))))
    );
    let web = FlowKey::new_v4(
        [10, 0, 0, 7].into(),
        [192, 0, 2, 1].into(),
        ip_proto::TCP,
        40000,
        80,
    );
    let m = PacketMeta {
        in_port: 0,
        ..meta(web)
    };
    match r.prerouting.decide(&m, |_, _, _| {}).0 {
        NatDecision::Translate(t) => {
            assert_eq!(
                (t.kind, t.range.ports),
                (NatKind::Redirect, Some((3128, 3128)))
            )
        }
        d => panic!("{d:?}"),
    }
}
