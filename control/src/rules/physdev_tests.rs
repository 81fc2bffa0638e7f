//! `-m physdev` and the bridge's name in `-i`/`-o`: what the parser takes and refuses, and the
//! meaning at each hook in bridge mode (every packet bridged, ports in and out) and router
//! mode (no packet bridged), on built frames judged as a worker judges them.

use super::tests::{ports, V4_HEAD};
use super::*;
use dataplane::classify::{ct, Action, Wire};
use dataplane::filter::packet_meta;
use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
use std::net::Ipv4Addr;

const A: Action = Action::Accept;
const D: Action = Action::Drop;

/// Bridge mode with the bridge named `br0`.
fn bridge() -> HostAddrs {
    HostAddrs {
        bridge: Some("br0".into()),
        ..HostAddrs::default()
    }
}

/// Router mode.
fn router() -> HostAddrs {
    HostAddrs {
        routed: true,
        ..HostAddrs::default()
    }
}

fn parse(text: &str, host: &HostAddrs) -> Result<ParsedRules, Vec<RuleError>> {
    parse_iptables_with("p.rules", text, Family::V4, &ports(), host)
}

/// The filter FORWARD rule set of `body` (FORWARD's policy DROP).
fn forward(body: &str, host: &HostAddrs) -> RuleSet {
    let text = format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n{body}\nCOMMIT\n"
    );
    let parsed = parse(&text, host).unwrap_or_else(|e| panic!("{e:?}"));
    with_tree(compile_parsed(&parsed, Hook::Forward).unwrap_or_else(|e| panic!("{e:?}")))
}

fn with_tree(rs: RuleSet) -> RuleSet {
    let c = crate::load::tree_classifier(&rs.rules).unwrap();
    rs.with_classifier(c)
}

/// A UDP datagram.
fn frame() -> Vec<u8> {
    FrameSpec::new(
        IpSpec::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)),
        L4Spec::udp(4000, 53, b"q"),
    )
    .build()
}

/// The verdict for a NEW packet in by port `inp`, out by port `out` (indexes of
/// [`ports`]: in0 in1 out0 out1).
fn judge(rs: &RuleSet, inp: u16, out: u16) -> Action {
    let f = frame();
    let info = dataplane::wire::parse_frame(&f).unwrap();
    let mut meta = packet_meta(&f, &info, inp, out).unwrap();
    meta.ct_state = ct::NEW;
    rs.judge(&meta, &Wire::of(&f, &info, 0), |_, _, _| {})
        .action
}

/// The verdicts for every (in, out) pair of distinct ports, in order.
fn verdicts(rs: &RuleSet) -> Vec<Action> {
    let mut out = Vec::new();
    for i in 0..4 {
        for o in 0..4 {
            if i != o {
                out.push(judge(rs, i, o));
            }
        }
    }
    out
}

/// Which (in, out) pairs `verdicts` would accept if the accepted set were `f`.
fn expect(f: impl Fn(u16, u16) -> bool) -> Vec<Action> {
    let mut out = Vec::new();
    for i in 0..4 {
        for o in 0..4 {
            if i != o {
                out.push(if f(i, o) { A } else { D });
            }
        }
    }
    out
}

/// The error `rule` in FORWARD (line 5) gives, with its column.
fn refusal(rule: &str, host: &HostAddrs) -> (u32, u32, String) {
    let text = format!("{V4_HEAD}-A FORWARD {rule}\nCOMMIT\n");
    let errs = parse(&text, host)
        .err()
        .unwrap_or_else(|| panic!("{rule:?} accepted"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    (errs[0].line, errs[0].col, errs[0].message.clone())
}

#[test]
fn accepts_physdev_as_iptables_save_writes_it() {
    for host in [bridge(), router()] {
        for rule in [
            "-m physdev --physdev-in in0 -j ACCEPT",
            "-m physdev --physdev-out out1 --physdev-is-bridged -j ACCEPT",
            "-m physdev ! --physdev-in in+ ! --physdev-out out0 -j DROP",
            "-m physdev --physdev-is-in --physdev-is-out ! --physdev-is-bridged -j DROP",
            "-m physdev --physdev-in in0 -m physdev --physdev-out out+ -j ACCEPT",
            "-p udp -m physdev --physdev-in lo -m udp --dport 53 -j DROP",
        ] {
            let text = format!("{V4_HEAD}-A FORWARD {rule}\nCOMMIT\n");
            parse(&text, &host).unwrap_or_else(|e| panic!("{rule}: {e:?}"));
        }
    }
}

#[test]
fn refuses_what_iptables_refuses() {
    // (rule, message, the word the error points at: its first occurrence in the rule)
    for (rule, msg, at) in [
        (
            "-m physdev -j ACCEPT",
            "-m physdev needs --physdev-in",
            "-m",
        ),
        (
            "-m physdev --physdev-in tap9 -j ACCEPT",
            "unknown port tap9",
            "tap9",
        ),
        (
            "-m physdev --physdev-in br0 -j ACCEPT",
            "-m physdev names Rampart's ports",
            "br0",
        ),
        (
            "-m physdev --physdev-out -j ACCEPT",
            "unknown port -j",
            "-j",
        ),
        (
            "-m physdev --physdev-in in0 --physdev-in in1 -j ACCEPT",
            "only one --physdev-in is allowed per -m physdev",
            "--physdev-in in1",
        ),
        (
            "-m physdev --physdev-is-in --physdev-is-in -j ACCEPT",
            "only one --physdev-is-in",
            "--physdev-is-in -j",
        ),
        (
            "-m physdev --physdev-in ! in0 -j ACCEPT",
            "! must come before the option",
            "!",
        ),
        (
            "-m physdev --physdev-in abcdefghijklmnop -j ACCEPT",
            "too long",
            "abc",
        ),
        (
            "-m physdev --physdev-in \"\" -j ACCEPT",
            "empty interface name",
            "\"",
        ),
        (
            "--physdev-in in0 -j ACCEPT",
            "unsupported option --physdev-in",
            "--",
        ),
        (
            "-m physdev --physdev-in in0 -m physdev -j ACCEPT",
            "-m physdev needs",
            "-m physdev -j",
        ),
    ] {
        let (line, c, m) = refusal(rule, &bridge());
        assert!(m.contains(msg), "{rule}: {m:?} lacks {msg:?}");
        let col = 12 + rule.find(at).unwrap() as u32;
        assert_eq!((line, c), (6, col), "{rule}: {m}");
    }
}

#[test]
fn output_refuses_an_output_port_without_is_bridged() {
    // physdev_mt_check: the built-in OUTPUT chain and user chains reached from it.
    let out = |rule: &str| {
        format!(
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             :sg - [0:0]\n-A OUTPUT -j sg\n-A sg {rule}\n-A OUTPUT {rule}\nCOMMIT\n"
        )
    };
    for rule in [
        "-m physdev --physdev-out out0 -j DROP",
        "-m physdev --physdev-is-out -j DROP",
        "-m physdev --physdev-out out0 ! --physdev-is-bridged -j DROP",
    ] {
        let errs = parse(&out(rule), &bridge()).unwrap_err();
        assert_eq!(errs.len(), 2, "{rule}: {errs:?}");
        for (e, at) in errs.iter().zip([(7, 7), (8, 11)]) {
            assert!(
                e.message.contains("only supported in the FORWARD")
                    || e.message.contains("reached from OUTPUT"),
                "{e}"
            );
            assert_eq!((e.line, e.col), at, "{rule}: {e}");
        }
    }
    for rule in [
        "-m physdev --physdev-out out0 --physdev-is-bridged -j DROP",
        "-m physdev --physdev-in in0 -j DROP",
        "-m physdev --physdev-is-in -j DROP",
    ] {
        parse(&out(rule), &bridge()).unwrap_or_else(|e| panic!("{rule}: {e:?}"));
    }
    // FORWARD and user chains reached from it only: no refusal.
    let text = format!("{V4_HEAD}-A FORWARD -m physdev --physdev-is-out -j DROP\nCOMMIT\n");
    parse(&text, &bridge()).unwrap();
}

#[test]
fn bridge_mode_forward_tests_the_ports() {
    // An OpenStack-style per-port chain set: what leaves by out0 goes through its group.
    let rs = forward(
        ":sg-chain - [0:0]\n:o-out0 - [0:0]\n\
         -A FORWARD -m physdev --physdev-out out0 --physdev-is-bridged -j sg-chain\n\
         -A FORWARD -m physdev --physdev-in in+ ! --physdev-out out1 -j ACCEPT\n\
         -A sg-chain -m physdev --physdev-out out0 --physdev-is-bridged -j o-out0\n\
         -A o-out0 -m physdev --physdev-in in1 -j RETURN\n\
         -A o-out0 -j ACCEPT",
        &bridge(),
    );
    // in0 1 -> out0 2: accepted by o-out0; in1 -> out0: returns, then the second rule (in+,
    // not out1) accepts; others by the second rule only.
    assert_eq!(verdicts(&rs), expect(|i, o| o == 2 || (i <= 1 && o != 3)));
    // Negated flags: every bridged packet is in, out and bridged at FORWARD.
    for (rule, all) in [
        (
            "-m physdev --physdev-is-in --physdev-is-out --physdev-is-bridged",
            true,
        ),
        ("-m physdev ! --physdev-is-bridged", false),
        ("-m physdev ! --physdev-is-in", false),
        ("-m physdev ! --physdev-is-out", false),
    ] {
        let rs = forward(&format!("-A FORWARD {rule} -j ACCEPT"), &bridge());
        assert_eq!(verdicts(&rs), expect(|_, _| all), "{rule}");
    }
    let rs = forward(
        "-A FORWARD -m physdev ! --physdev-in out+ --physdev-out out1 -j ACCEPT",
        &bridge(),
    );
    assert_eq!(verdicts(&rs), expect(|i, o| i <= 1 && o == 3));
}

#[test]
fn router_mode_answers_as_for_an_unbridged_packet() {
    // Without bridge information the match holds when each option given is negated.
    for (rule, holds) in [
        ("-m physdev --physdev-in in0", false),
        ("-m physdev ! --physdev-in in0", true),
        ("-m physdev ! --physdev-out out0 ! --physdev-is-in", true),
        ("-m physdev ! --physdev-out out0 --physdev-is-in", false),
        ("-m physdev --physdev-is-bridged", false),
        ("-m physdev ! --physdev-is-bridged", true),
        ("-m physdev ! --physdev-is-out", true),
        ("-m physdev ! --physdev-in in0 --physdev-is-out", false),
    ] {
        let rs = forward(&format!("-A FORWARD {rule} -j ACCEPT"), &router());
        assert_eq!(verdicts(&rs), expect(|_, _| holds), "{rule}");
        // The same rule in bridge mode: the ports are tested (a different answer somewhere).
        let b = forward(&format!("-A FORWARD {rule} -j ACCEPT"), &bridge());
        assert_ne!(verdicts(&b), verdicts(&rs), "{rule}");
    }
}

#[test]
fn prerouting_has_no_output_port() {
    // raw PREROUTING in bridge mode: the input port, no output port yet (not bridged).
    let raw = |rule: &str| {
        let text = format!(
            "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:pre - [0:0]\n\
             -A PREROUTING -j pre\n-A pre {rule} -j DROP\nCOMMIT\n"
        );
        let parsed = parse(&text, &bridge()).unwrap_or_else(|e| panic!("{rule}: {e:?}"));
        with_tree(compile_raw(&parsed).unwrap().expect("a raw table"))
    };
    // (rule, drops: which in ports)
    for (rule, drops) in [
        ("-m physdev --physdev-in in1", &[1u16][..]),
        ("-m physdev ! --physdev-in in1", &[0, 2, 3]),
        ("-m physdev --physdev-is-in", &[0, 1, 2, 3]),
        ("-m physdev --physdev-is-bridged", &[]),
        ("-m physdev ! --physdev-is-bridged", &[0, 1, 2, 3]),
        ("-m physdev ! --physdev-is-out", &[0, 1, 2, 3]),
        // `physdev_mt` fails `--physdev-out` without an output port, `!` or not.
        ("-m physdev --physdev-out out0", &[]),
        ("-m physdev ! --physdev-out out0", &[]),
        ("-m physdev --physdev-in in0 ! --physdev-is-bridged", &[0]),
    ] {
        let rs = raw(rule);
        for p in 0..4u16 {
            let want = if drops.contains(&p) { D } else { A };
            assert_eq!(judge(&rs, p, (p + 2) % 4), want, "{rule}, in port {p}");
        }
    }
}

#[test]
fn the_bridge_name_is_every_port() {
    let rs = forward("-A FORWARD -i br0 -o br0 -p udp -j ACCEPT", &bridge());
    assert_eq!(verdicts(&rs), expect(|_, _| true));
    let rs = forward("-A FORWARD ! -i br+ -j ACCEPT", &bridge());
    assert_eq!(verdicts(&rs), expect(|_, _| false));
    // Port names keep their meaning beside it.
    let rs = forward("-A FORWARD -i br0 -o out0 -j ACCEPT", &bridge());
    assert_eq!(verdicts(&rs), expect(|_, o| o == 2));
    // Without a configured name (and in router mode) br0 names nothing.
    for host in [HostAddrs::default(), router()] {
        let (line, col, m) = refusal("-i br0 -j ACCEPT", &host);
        assert!(m.contains("unknown port br0"), "{m}");
        assert_eq!((line, col), (6, 15));
    }
}

#[test]
fn physdev_rules_are_not_patched_in_place() {
    // What a physdev rule is depends on the hook: the reload tier flattens it afresh.
    let text = format!("{V4_HEAD}-A FORWARD -m physdev --physdev-in in0 -j ACCEPT\nCOMMIT\n");
    let parsed = parse(&text, &bridge()).unwrap();
    let rule = &parsed.table(TableKind::Filter).unwrap().chains[1].rules[0];
    assert!(!compile::simple(rule, TableKind::Filter));
}

#[test]
fn the_openstack_example_loads_with_its_configuration() {
    let cfg = crate::config::Config::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/bridge-physdev.toml"
    )))
    .unwrap();
    let host = crate::load::NatSettings::of(&cfg).host;
    assert_eq!(host.bridge.as_deref(), Some("brq-7c1e"));
    let ports: Vec<String> = cfg.ports.iter().map(|p| p.name.clone()).collect();
    let text = include_str!("../../../examples/iptables/openstack-hybrid.rules");
    let parsed = parse_iptables_with("o.rules", text, Family::V4, &ports, &host)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let rs = with_tree(compile_parsed(&parsed, Hook::Forward).unwrap());
    // Ports: 0 web instance, 1 uplink0, 2 db instance, 3 uplink1. HTTP to the web instance
    // (out by port 0) passes its ingress group; to the database (out by port 2) it does not.
    let http = |inp: u16, out: u16| {
        let f = FrameSpec::new(
            IpSpec::v4(Ipv4Addr::new(198, 51, 100, 7), Ipv4Addr::new(10, 0, 0, 5)),
            L4Spec::tcp_segment(40000, 80, dataplane::wire::tcp::Flags::SYN, 1, 0, &[]),
        )
        .build();
        let info = dataplane::wire::parse_frame(&f).unwrap();
        let mut meta = packet_meta(&f, &info, inp, out).unwrap();
        meta.ct_state = ct::NEW;
        rs.judge(&meta, &Wire::of(&f, &info, 0), |_, _, _| {})
            .action
    };
    assert_eq!(http(1, 0), A);
    assert_eq!(http(3, 2), D);
}
