//! `-m rpfilter`: what the parser takes and refuses (mode, table, chain, options), and its
//! meaning on built frames judged in raw PREROUTING against a router configuration's table:
//! strict and loose, our own addresses with and without `--accept-local`, broadcasts, the
//! default route, a source without a route, Linux's special sources, both families.

use super::*;
use crate::config::Config;
use dataplane::classify::{ct, Action, Wire};
use dataplane::filter::packet_meta;
use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
use std::net::IpAddr;
use std::path::Path;

const A: Action = Action::Accept;
const D: Action = Action::Drop;

/// Three ports; an IPv4 default route out of `wan`, no IPv6 default; a 1:1 public address
/// outside every subnet.
const ROUTER: &str = r#"
mode = "router"
[[port]]
name = "lan"
device = "net_pcap0,rx_pcap=a.pcap"
addresses = ["10.0.0.1/24", "fd00::1/64"]
[[port]]
name = "wan"
device = "net_pcap1,rx_pcap=b.pcap"
addresses = ["203.0.113.1/24", "2001:db8::1/64"]
[[port]]
name = "dmz"
device = "net_pcap2,rx_pcap=c.pcap"
addresses = ["192.0.2.1/24"]
[[route]]
prefix = "0.0.0.0/0"
via = "203.0.113.254"
[[route]]
prefix = "172.16.0.0/12"
via = "10.0.0.254"
[[route]]
prefix = "2001:db8:100::/48"
via = "fd00::fe"
[[nat.one_to_one]]
public = "198.51.100.7"
private = "10.0.0.7"
"#;

const LAN: u16 = 0;
const WAN: u16 = 1;
const DMZ: u16 = 2;

fn config(text: &str) -> Config {
    Config::parse(Path::new("r.toml"), text).unwrap_or_else(|e| panic!("{e}"))
}

fn host(cfg: &Config) -> HostAddrs {
    crate::load::NatSettings::of(cfg).host
}

fn names(cfg: &Config) -> Vec<String> {
    cfg.ports.iter().map(|p| p.name.clone()).collect()
}

fn parse(text: &str, family: Family, cfg: &Config) -> Result<ParsedRules, Vec<RuleError>> {
    parse_iptables_with("p.rules", text, family, &names(cfg), &host(cfg))
}

/// The raw PREROUTING rule set of one rule with `-j DROP`, policy ACCEPT.
fn raw(rule: &str, family: Family, cfg: &Config) -> RuleSet {
    let text = format!(
        "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING {rule} -j DROP\nCOMMIT\n"
    );
    let parsed = parse(&text, family, cfg).unwrap_or_else(|e| panic!("{rule}: {e:?}"));
    let rs = compile_raw(&parsed).unwrap().expect("a raw table");
    let c = crate::load::tree_classifier(&rs.rules).unwrap();
    rs.with_classifier(c)
}

/// The raw verdict for a UDP datagram from `src` to `dst` in by `port`.
fn judge(rs: &RuleSet, src: &str, dst: &str, port: u16) -> Action {
    let ip = match (
        src.parse::<IpAddr>().unwrap(),
        dst.parse::<IpAddr>().unwrap(),
    ) {
        (IpAddr::V4(s), IpAddr::V4(d)) => IpSpec::v4(s, d),
        (IpAddr::V6(s), IpAddr::V6(d)) => IpSpec::v6(s, d),
        _ => panic!("mixed families"),
    };
    let f = FrameSpec::new(ip, L4Spec::udp(4000, 53, b"q")).build();
    let info = dataplane::wire::parse_frame(&f).unwrap();
    let mut meta = packet_meta(&f, &info, port, 0).unwrap();
    meta.ct_state = ct::INVALID;
    rs.judge(&meta, &Wire::of(&f, &info, 0), |_, _, _| {})
        .action
}

/// Whether `-m rpfilter OPTS` (matching: the rule drops) holds for each case, per option set.
fn holds(opts: &str, family: Family, cfg: &Config, cases: &[(&str, &str, u16, bool)]) {
    let rs = raw(&format!("-m rpfilter {opts}"), family, cfg);
    let inv = raw(&format!("-m rpfilter {opts} --invert"), family, cfg);
    for &(src, dst, port, want) in cases {
        let got = judge(&rs, src, dst, port);
        assert_eq!(
            got,
            if want { D } else { A },
            "{opts}: {src} -> {dst} in {port}"
        );
        let got = judge(&inv, src, dst, port);
        assert_eq!(
            got,
            if want { A } else { D },
            "{opts} --invert: {src} in {port}"
        );
    }
}

#[test]
fn strict_and_loose_v4() {
    let cfg = config(ROUTER);
    let d = "10.0.0.1";
    // (source, in port, strict, loose)
    let cases = [
        ("10.0.0.5", LAN, true, true),
        ("10.0.0.5", WAN, false, true),
        ("10.0.0.5", DMZ, false, true),
        ("172.16.3.3", LAN, true, true),
        ("172.31.255.1", DMZ, false, true),
        // The default route: out of wan.
        ("8.8.8.8", WAN, true, true),
        ("8.8.8.8", LAN, false, true),
        ("192.0.2.9", DMZ, true, true),
        ("192.0.2.9", WAN, false, true),
        // Our own addresses (RTN_LOCAL) and broadcasts (RTN_BROADCAST) fail without
        // --accept-local.
        ("10.0.0.1", LAN, false, false),
        ("203.0.113.1", WAN, false, false),
        ("10.0.0.255", LAN, false, false),
        ("255.255.255.255", LAN, false, false),
        ("198.51.100.7", WAN, false, false),
    ];
    for (flags, loose) in [("", false), ("--validmark", false), ("--loose", true)] {
        let c: Vec<_> = cases
            .iter()
            .map(|&(s, p, strict, l)| (s, d, p, if loose { l } else { strict }))
            .collect();
        holds(flags, Family::V4, &cfg, &c);
    }
    // --accept-local: our address on the port it came in by (strict), on any port (loose);
    // a 1:1 address on no port only loose. Broadcasts still fail.
    holds(
        "--accept-local",
        Family::V4,
        &cfg,
        &[
            ("10.0.0.1", d, LAN, true),
            ("10.0.0.1", d, WAN, false),
            ("203.0.113.1", d, WAN, true),
            ("198.51.100.7", d, WAN, false),
            ("10.0.0.255", d, LAN, false),
            ("10.0.0.5", d, LAN, true),
            ("10.0.0.5", d, WAN, false),
        ],
    );
    holds(
        "--loose --accept-local",
        Family::V4,
        &cfg,
        &[
            ("10.0.0.1", d, WAN, true),
            ("198.51.100.7", d, LAN, true),
            ("10.0.0.255", d, LAN, false),
            ("8.8.8.8", d, DMZ, true),
        ],
    );
}

#[test]
fn zero_source_and_no_route_v4() {
    let cfg = config(ROUTER);
    // 0.0.0.0 to the limited broadcast or 224.0.0.0/24 holds on any port; to anything else
    // the lookup of 0.0.0.0 finds the default route.
    holds(
        "",
        Family::V4,
        &cfg,
        &[
            ("0.0.0.0", "255.255.255.255", LAN, true),
            ("0.0.0.0", "224.0.0.22", DMZ, true),
            ("0.0.0.0", "224.0.1.1", LAN, false),
            ("0.0.0.0", "224.0.1.1", WAN, true),
            ("0.0.0.0", "10.0.0.1", LAN, false),
        ],
    );
    // Without a default route a source nothing covers fails, loose or not.
    let no_default = ROUTER.replace("prefix = \"0.0.0.0/0\"", "prefix = \"100.64.0.0/10\"");
    let cfg = config(&no_default);
    for opts in ["", "--loose", "--loose --accept-local"] {
        holds(
            opts,
            Family::V4,
            &cfg,
            &[
                ("8.8.8.8", "10.0.0.1", WAN, false),
                ("100.64.1.1", "10.0.0.1", WAN, true),
                ("0.0.0.0", "10.0.0.1", WAN, false),
            ],
        );
    }
}

#[test]
fn strict_and_loose_v6() {
    let cfg = config(ROUTER);
    let d = "fd00::1";
    // No IPv6 default route: 3fff::1 has no route.
    let cases = [
        ("fd00::5", LAN, true, true),
        ("fd00::5", WAN, false, true),
        ("2001:db8:100::9", LAN, true, true),
        ("2001:db8:100::9", DMZ, false, true),
        ("2001:db8::5", WAN, true, true),
        ("3fff::1", WAN, false, false),
        // Link-local sources hold on every port (fe80::/64 is on each); :: holds.
        ("fe80::1234", LAN, true, true),
        ("fe80::1234", DMZ, true, true),
        ("::", WAN, true, true),
        // Ours (RTF_LOCAL) without --accept-local, the subnet-router anycast address
        // (RTF_ANYCAST) always fail.
        ("fd00::1", LAN, false, false),
        ("fd00::", LAN, false, false),
        ("2001:db8::", WAN, false, false),
    ];
    for (flags, loose) in [("", false), ("--validmark", false), ("--loose", true)] {
        let c: Vec<_> = cases
            .iter()
            .map(|&(s, p, strict, l)| (s, d, p, if loose { l } else { strict }))
            .collect();
        holds(flags, Family::V6, &cfg, &c);
    }
    // IPv6 --accept-local: our address holds whatever the port (no device test).
    holds(
        "--accept-local",
        Family::V6,
        &cfg,
        &[
            ("fd00::1", d, LAN, true),
            ("fd00::1", d, WAN, true),
            ("2001:db8::1", d, DMZ, true),
            ("fd00::", d, LAN, false),
            ("fd00::5", d, WAN, false),
        ],
    );
}

/// The error of `rule` in `chain` of `table`, with line and column.
fn refusal(table: &str, chain: &str, rule: &str, cfg: &Config) -> (u32, u32, String) {
    let chains = match table {
        "raw" => ":PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n",
        "mangle" => {
            ":PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n\
                     :OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
        }
        _ => ":INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n",
    };
    let text = format!("*{table}\n{chains}:user - [0:0]\n-A {chain} {rule}\nCOMMIT\n");
    let lines = text.lines().count() as u32 - 1;
    let errs = parse(&text, Family::V4, cfg)
        .err()
        .unwrap_or_else(|| panic!("{rule:?} accepted in {table} {chain}"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, lines, "{errs:?}");
    (errs[0].line, errs[0].col, errs[0].message.clone())
}

#[test]
fn parser_takes_what_iptables_takes() {
    let cfg = config(ROUTER);
    for family in [Family::V4, Family::V6] {
        for rule in [
            "-m rpfilter -j DROP",
            "-m rpfilter --invert -j DROP",
            "-m rpfilter --validmark --invert -j DROP",
            "-m rpfilter --loose --validmark --accept-local --invert -j DROP",
            "-i lan -m rpfilter --accept-local -m comment --comment x -j ACCEPT",
        ] {
            for table in ["raw", "mangle"] {
                let head = if table == "raw" {
                    ":PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                } else {
                    ":PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n\
                     :OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
                };
                // Directly and from a user chain PREROUTING reaches.
                let text = format!(
                    "*{table}\n{head}:pre - [0:0]\n-A PREROUTING {rule}\n-A PREROUTING -j pre\n\
                     -A pre {rule}\nCOMMIT\n"
                );
                parse(&text, family, &cfg).unwrap_or_else(|e| panic!("{rule}: {e:?}"));
            }
        }
    }
    // The flags: the rule's check carries them.
    let rs = raw("-m rpfilter --loose --accept-local", Family::V4, &cfg);
    let flags: Vec<u8> = rs
        .rules
        .iter()
        .flat_map(|r| r.checks.iter().flat_map(|c| c.iter()))
        .filter_map(|c| match c {
            dataplane::classify::Check::RpFilter(m) => Some(m.flags),
            _ => None,
        })
        .collect();
    use dataplane::classify::rpfilter::{ACCEPT_LOCAL, LOOSE};
    assert_eq!(flags, vec![LOOSE | ACCEPT_LOCAL]);
}

#[test]
fn parser_refuses_what_iptables_refuses() {
    let cfg = config(ROUTER);
    // An option twice; `!` before an option; an unknown option; a value.
    let (_, col, m) = refusal(
        "raw",
        "PREROUTING",
        "-m rpfilter --loose --loose -j DROP",
        &cfg,
    );
    assert_eq!(col, 35, "{m}");
    assert!(m.contains("only one --loose"), "{m}");
    let (_, col, m) = refusal("raw", "PREROUTING", "-m rpfilter ! --invert -j DROP", &cfg);
    assert_eq!(col, 29, "{m}");
    assert!(m.contains("! is not allowed before --invert"), "{m}");
    let (_, col, m) = refusal("raw", "PREROUTING", "-m rpfilter --strict -j DROP", &cfg);
    assert_eq!(col, 27, "{m}");
    assert!(m.contains("--strict"), "{m}");
    let (_, col, m) = refusal("raw", "PREROUTING", "-m rpfilter --loose yes -j DROP", &cfg);
    assert_eq!(col, 35, "{m}");
    // rpfilter_check: raw and mangle only; the match's hooks: PREROUTING only.
    let (_, col, m) = refusal("filter", "INPUT", "-m rpfilter -j DROP", &cfg);
    assert_eq!(col, 10, "{m}");
    assert!(
        m.contains("only valid in the raw and mangle tables, not filter"),
        "{m}"
    );
    let (_, col, m) = refusal("raw", "OUTPUT", "-m rpfilter -j DROP", &cfg);
    assert_eq!(col, 11, "{m}");
    assert!(m.contains("only valid in PREROUTING, not OUTPUT"), "{m}");
    for chain in ["INPUT", "FORWARD", "POSTROUTING"] {
        let (_, _, m) = refusal("mangle", chain, "-m rpfilter --loose -j DROP", &cfg);
        assert!(m.contains(&format!("not {chain}")), "{m}");
    }
    // A user chain reached from FORWARD.
    let text = "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n\
                :OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:u - [0:0]\n\
                -A PREROUTING -j u\n-A FORWARD -j u\n-A u -m rpfilter -j DROP\nCOMMIT\n";
    let errs = parse(text, Family::V4, &cfg).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!((errs[0].line, errs[0].col), (10, 6), "{errs:?}");
    assert!(
        errs[0]
            .message
            .contains("can't use -m rpfilter in chain u: it is reached from FORWARD"),
        "{errs:?}"
    );
    // Bridge mode: refused, naming router mode.
    let text = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                -A PREROUTING -m rpfilter --invert -j DROP\nCOMMIT\n";
    let errs = parse_iptables_with(
        "p.rules",
        text,
        Family::V4,
        &names(&cfg),
        &HostAddrs::default(),
    )
    .unwrap_err();
    assert_eq!((errs[0].line, errs[0].col), (4, 15), "{errs:?}");
    assert!(errs[0].message.contains("needs router mode"), "{errs:?}");
}

#[test]
fn the_example_loads_with_the_example_router() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/router.toml");
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let text = include_str!("../../../examples/iptables/antispoof-rpfilter.rules");
    let parsed = parse(text, Family::V4, &cfg).unwrap_or_else(|e| panic!("{e:?}"));
    let rs = compile_raw(&parsed).unwrap().expect("a raw table");
    let c = crate::load::tree_classifier(&rs.rules).unwrap();
    let rs = rs.with_classifier(c);
    // 10.20.0.0/16 is routed by the inside port (0), the default by the outside one (1).
    assert_eq!(judge(&rs, "10.20.1.1", "203.0.113.9", 0), A);
    assert_eq!(judge(&rs, "10.20.1.1", "10.0.0.9", 1), D);
    assert_eq!(judge(&rs, "192.0.2.1", "10.0.0.9", 1), A);
    assert_eq!(judge(&rs, "192.0.2.1", "203.0.113.9", 0), D);
    assert_eq!(judge(&rs, "0.0.0.0", "255.255.255.255", 0), A);
}
