//! Conformance (what iptables-restore accepts and refuses), semantics on hand-written rule
//! sets, and the main property: an independent interpreter walking the parsed chains the way
//! netfilter does agrees with the compiled flat set on random rule sets and packets.

use super::*;
use dataplane::classify::{ct, Action, PacketMeta, RejectWith};
use dataplane::wire::{FlowKey, IpAddr128};
use proptest::prelude::*;
use std::net::IpAddr;

pub(crate) fn ports() -> Vec<String> {
    ["in0", "in1", "out0", "out1"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

pub(crate) const V4_HEAD: &str =
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:user - [0:0]\n";

pub(crate) fn wrap(rule: &str) -> String {
    format!("{V4_HEAD}{rule}\nCOMMIT\n")
}

pub(crate) fn compile(text: &str, family: Family) -> Result<RuleSet, Vec<RuleError>> {
    compile_iptables("t.rules", text, family, &ports(), Hook::Forward)
}

/// Asserts that `text` (whose line `line` is `-A FORWARD RULE`) is refused with one error,
/// whose message holds `msg`, at the `word`-th word of `rule`.
pub(crate) fn assert_refused(
    text: &str,
    family: Family,
    line: u32,
    rule: &str,
    msg: &str,
    word: usize,
) {
    let errs = match compile(text, family) {
        Ok(_) => panic!("{rule:?} accepted"),
        Err(e) => e,
    };
    assert_eq!(errs.len(), 1, "{rule:?}: {errs:?}");
    let e = &errs[0];
    assert!(
        e.message.contains(msg),
        "{rule:?}: {:?} lacks {msg:?}",
        e.message
    );
    assert_eq!(
        (e.line, e.col),
        (line, 11 + word_col(rule, word)),
        "{rule:?}: {e}"
    );
}

/// The 1-based column of the `k`-th blank-separated word of `s`.
pub(crate) fn word_col(s: &str, k: usize) -> u32 {
    let mut col = None;
    let mut n = 0;
    let mut in_word = false;
    for (i, ch) in s.chars().enumerate() {
        if ch == ' ' {
            in_word = false;
        } else if !in_word {
            in_word = true;
            if n == k {
                col = Some(i as u32 + 1);
                break;
            }
            n += 1;
        }
    }
    col.expect("word index in range")
}

/// An IPv4 (or IPv6) TCP SYN from `src`:`sport` to `dst`:`dport`.
pub(crate) fn syn(src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
    let mut fr = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    let mut tcp = sport.to_be_bytes().to_vec();
    tcp.extend_from_slice(&dport.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    match (
        src.parse::<std::net::IpAddr>().unwrap(),
        dst.parse().unwrap(),
    ) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            fr.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0]);
            fr.extend_from_slice(&s.octets());
            fr.extend_from_slice(&d.octets());
            let sum = dataplane::wire::checksum::checksum(&fr[14..34]);
            fr[24..26].copy_from_slice(&sum.to_be_bytes());
        }
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
            fr.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 20, 6, 64]);
            fr.extend_from_slice(&s.octets());
            fr.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed families"),
    }
    fr.extend_from_slice(&tcp);
    fr
}

// ---------------------------------------------------------------- conformance

const ACCEPTED_V4: &[&str] = &[
    "-s 10.0.0.0/8 -j ACCEPT",
    "! -s 10.0.0.0/8 -j ACCEPT",
    "-s 10.0.0.0/255.0.0.0 -j DROP",
    "-s 10.1.2.3/8 -j DROP",
    "-s 10.0.0.1/32 -d 192.168.0.0/16 -j DROP",
    "-s 0.0.0.0/0 -j DROP",
    "-s 10.0.0.1,10.0.0.2 -j ACCEPT",
    "--source 10.0.0.0/8 --protocol tcp --jump ACCEPT",
    "-p 6 --dport 22 -j ACCEPT",
    "-p TCP --dport 22 -j ACCEPT",
    "-p tcp -m tcp --dport 1: -j ACCEPT",
    "-p tcp --dport :1024 -j ACCEPT",
    "-p tcp --dport 1000:2000 -j ACCEPT",
    "-p tcp --sport ssh -j ACCEPT",
    "-p tcp -m tcp ! --dport 22 -j ACCEPT",
    "-p udp -m udp --source-port 53 --destination-port 1024:65535 -j ACCEPT",
    "-m tcp -p tcp --dport 22 -j ACCEPT",
    "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    "-m conntrack --ctstate established -j ACCEPT",
    "-m state --state NEW,UNTRACKED -j ACCEPT",
    "-m conntrack ! --ctstate INVALID -j ACCEPT",
    "-m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT",
    "-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
    "-m conntrack --ctstate SNAT,DNAT -j ACCEPT",
    "-p tcp -m multiport --dports 22,80,443:445 -j ACCEPT",
    "-p udp -m multiport ! --sports 53,123 -j ACCEPT",
    "-p tcp -m multiport --ports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 -j ACCEPT",
    "-p tcp -m multiport --dports 80 -m multiport --sports 1024:65535 -j ACCEPT",
    "-p icmp --icmp-type 3/4 -j ACCEPT",
    "-p icmp -m icmp --icmp-type echo-request -j ACCEPT",
    "-p icmp -m icmp --icmp-type 8 -j ACCEPT",
    "-p icmp -m icmp ! --icmp-type any -j ACCEPT",
    "-p icmp -m icmp -j ACCEPT",
    "-p tcp --tcp-flags SYN,ACK SYN -j DROP",
    "-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT",
    "-p tcp ! --syn -m conntrack --ctstate NEW -j DROP",
    "-p tcp --tcp-flags ALL NONE -j DROP",
    "-f -j DROP",
    "! -f -j ACCEPT",
    "-i in0 -o out+ -j ACCEPT",
    "! -i in+ -j DROP",
    "-i + -j ACCEPT",
    "-m iprange --src-range 10.0.0.1-10.0.0.9 ! --dst-range 10.0.1.0-10.0.1.255 -j ACCEPT",
    "-m iprange --src-range 10.0.0.1 -j ACCEPT",
    r#"-m comment --comment "allow \"web\" traffic" -j ACCEPT"#,
    r#"-j LOG --log-prefix "FW drop: " --log-level 6"#,
    "-j LOG --log-level warning",
    r#"-j LOG --log-prefix "IN " --log-level 7 --log-tcp-sequence --log-tcp-options --log-ip-options --log-uid --log-macdecode"#,
    "-j LOG",
    "-j REJECT --reject-with icmp-host-prohibited",
    "-j REJECT --reject-with icmp-admin-prohibited",
    "-p tcp -j REJECT --reject-with tcp-reset",
    "-j REJECT",
    "-j RETURN",
    "-j user",
    "-g user",
    "-p gre -j ACCEPT",
    "-p esp -j ACCEPT",
    "-p ah -j ACCEPT",
    "-p sctp -j ACCEPT",
    "-p all -j ACCEPT",
    "-p 0 -j ACCEPT",
    "-p tcp --dport 22",
    "-c 10 20 -j ACCEPT",
    "-6 -s 2001:db8::1 -j ACCEPT",
    "-4 -j ACCEPT",
];

const ACCEPTED_V6: &[&str] = &[
    "-s 2001:db8::/32 -j ACCEPT",
    "! -d fe80::/10 -j DROP",
    "-s 2001:db8::1/ffff:ffff:: -j DROP",
    "-p ipv6-icmp --icmpv6-type echo-request -j ACCEPT",
    "-p icmpv6 -m icmp6 --icmpv6-type 1/4 -j ACCEPT",
    "-p 58 --icmpv6-type neighbour-solicitation -j ACCEPT",
    "-p ipv6-icmp -m icmpv6 ! --icmpv6-type 128 -j ACCEPT",
    "-j REJECT --reject-with icmp6-adm-prohibited",
    "-j REJECT --reject-with icmp6-port-unreachable",
    "-j REJECT --reject-with icmp6-addr-unreachable",
    "-p tcp -j REJECT --reject-with tcp-reset",
    "-m iprange --src-range 2001:db8::1-2001:db8::ff -j ACCEPT",
    "-p tcp --dport 443 -j ACCEPT",
    "-4 -s 10.0.0.1 -j ACCEPT",
];

#[test]
fn accepts_what_iptables_restore_accepts() {
    for (family, lines) in [(Family::V4, ACCEPTED_V4), (Family::V6, ACCEPTED_V6)] {
        for line in lines {
            let text = wrap(&format!("-A FORWARD {line}"));
            if let Err(e) = compile(&text, family) {
                panic!("{family:?} {line:?} refused: {e:?}");
            }
        }
    }
    // Counters before -A, comments, blank lines, the legacy long command.
    let text = format!("# Generated by iptables-save\n\n{V4_HEAD}[5:300] -A FORWARD -j ACCEPT\n--append user -j RETURN\nCOMMIT\n# Completed\n");
    compile(&text, Family::V4).unwrap();
}

/// (rule after `-A FORWARD `, message substring, index of the offending word in the rule).
const REFUSED_V4: &[(&str, &str, usize)] = &[
    (
        "-m set --match-set foo src -j DROP",
        "Set foo doesn't exist (no sets file was given",
        3,
    ),
    (
        "-m recent --name x -j DROP",
        "-m recent needs one of --set, --rcheck, --update or --remove",
        0,
    ),
    (
        "-m hashlimit --hashlimit-upto 5/s -j ACCEPT",
        "-m hashlimit needs --hashlimit-name",
        0,
    ),
    ("--dport 22 -j ACCEPT", "unsupported option --dport", 0),
    ("-p tcp --foo 1 -j ACCEPT", "unsupported option --foo", 2),
    ("--ctstate NEW -j ACCEPT", "unsupported option --ctstate", 0),
    (
        "! -p tcp --dport 22 -j ACCEPT",
        "unsupported option --dport",
        3,
    ),
    (
        "-p sctp --dport 22 -j ACCEPT",
        "unsupported option --dport",
        2,
    ),
    (
        "-p tcp --dport 22 --dport 23 -j ACCEPT",
        "only one --dport",
        4,
    ),
    (
        "-p udp --tcp-option 2 -j ACCEPT",
        "unsupported option --tcp-option",
        2,
    ),
    (
        "-s ! 10.0.0.0/8 -j ACCEPT",
        "! must come before the option",
        1,
    ),
    ("-s 10.0.0.0/33 -j ACCEPT", "invalid prefix length", 1),
    (
        "-s 10.0.0.0/255.0.255.0 -j ACCEPT",
        "non-contiguous mask",
        1,
    ),
    ("-s example.com -j ACCEPT", "invalid address", 1),
    (
        "-s 2001:db8::1 -j ACCEPT",
        "IPv6 address 2001:db8::1 in an iptables",
        1,
    ),
    ("-s 10.0.0.1 -s 10.0.0.2 -j ACCEPT", "multiple -s", 2),
    ("! -s 10.0.0.1,10.0.0.2 -j ACCEPT", "several addresses", 2),
    ("-s -j ACCEPT", "invalid address", 1),
    ("-p foo -j ACCEPT", "unknown protocol", 1),
    ("! -p all -j ACCEPT", "never match", 1),
    ("-p tcp -p udp -j ACCEPT", "multiple -p", 2),
    ("-p tcp --dport 2000:1000 -j ACCEPT", "min > max", 3),
    ("-p tcp --dport 65536 -j ACCEPT", "out of range", 3),
    (
        "-p tcp --dport nosuchservice -j ACCEPT",
        "invalid port/service",
        3,
    ),
    (
        "-p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15:16 -j ACCEPT",
        "too many ports",
        5,
    ),
    (
        "-p tcp -m multiport --dports 80,22:21 -j ACCEPT",
        "multiport needs min < max",
        5,
    ),
    (
        "-p tcp -m multiport --dports 80:80 -j ACCEPT",
        "multiport needs min < max",
        5,
    ),
    (
        "-p tcp -m multiport --dports 80 --sports 80 -j ACCEPT",
        "cannot be combined",
        6,
    ),
    (
        "-m multiport --dports 22 -j ACCEPT",
        "-m multiport needs -p tcp or -p udp",
        0,
    ),
    (
        "-p tcp -m multiport -j ACCEPT",
        "-m multiport needs --sports",
        2,
    ),
    ("-m tcp --dport 22 -j ACCEPT", "-m tcp needs -p tcp", 0),
    (
        "-p udp -m tcp --dport 22 -j ACCEPT",
        "-m tcp needs -p tcp",
        2,
    ),
    ("! -p tcp -m tcp -j ACCEPT", "-m tcp needs -p tcp", 3),
    ("-p tcp --tcp-flags SYN", "needs a value", 2),
    (
        "-p tcp --tcp-flags SYN,FOO SYN -j ACCEPT",
        "unknown TCP flag",
        3,
    ),
    (
        "-p tcp --syn --tcp-flags SYN SYN -j ACCEPT",
        "cannot be combined",
        3,
    ),
    (
        "-p icmp --icmp-type bogus -j ACCEPT",
        "invalid ICMP type",
        3,
    ),
    (
        "-p icmp --icmp-type 3/300 -j ACCEPT",
        "invalid ICMP code",
        3,
    ),
    (
        "-p icmp --icmpv6-type 1 -j ACCEPT",
        "unsupported option --icmpv6-type",
        2,
    ),
    (
        "-m icmp6 --icmpv6-type 1 -j ACCEPT",
        "unsupported option -m icmp6",
        1,
    ),
    (
        "-m conntrack --ctstate NEW,BOGUS -j ACCEPT",
        "invalid conntrack state",
        3,
    ),
    (
        "-m state --state RELATED,ESTABLISHED,DNAT -j ACCEPT",
        "invalid state \"DNAT\"",
        3,
    ),
    (
        "--ctproto tcp -j ACCEPT",
        "unsupported option --ctproto (it needs -m conntrack before it)",
        0,
    ),
    (
        "-m conntrack --ctstate NEW --ctdir SIDEWAYS -j ACCEPT",
        "bad --ctdir",
        5,
    ),
    (
        "-m set --match-set NIPv4abc src -j RETURN",
        "Set NIPv4abc doesn't exist (no sets file was given",
        3,
    ),
    (
        "-m owner --uid-owner 0 -j ACCEPT",
        "unsupported option -m owner (match owner is not supported: it tests the local socket",
        0,
    ),
    ("-m connmark -j ACCEPT", "-m connmark needs --mark", 0),
    (
        "-m rpfilter --invert -j DROP",
        "-m rpfilter needs router mode (mode = \"router\")",
        0,
    ),
    (
        "-m cpu --cpu 0 -j RETURN",
        "unsupported option -m cpu (match cpu is not supported)",
        0,
    ),
    (
        "-j CONNMARK --save-mark --set-mark 1",
        "CONNMARK: --set-mark cannot be combined with --save-mark",
        3,
    ),
    ("-m conntrack -j ACCEPT", "-m conntrack needs --ctstate", 0),
    ("-m state -j ACCEPT", "-m state needs --state", 0),
    ("-m comment -j ACCEPT", "-m comment needs --comment", 0),
    (
        "-m comment ! --comment x -j ACCEPT",
        "! is not allowed before --comment",
        3,
    ),
    ("-m iprange -j ACCEPT", "-m iprange needs", 0),
    (
        "-m iprange --src-range 10.0.0.9-10.0.0.1 -j ACCEPT",
        "empty address range",
        3,
    ),
    (
        "-i eth9 -j ACCEPT",
        "unknown port eth9 (ports: in0, in1, out0, out1)",
        1,
    ),
    ("-i veth+ -j ACCEPT", "no configured port matches veth+", 1),
    ("-i averyveryverylongname -j ACCEPT", "too long", 1),
    ("-i in0 -i in1 -j ACCEPT", "multiple -i", 2),
    ("-j FOO", "unknown target or chain FOO", 0),
    ("-j QUEUE", "unsupported target QUEUE", 1),
    (
        "-j REDIRECT --to-ports 8080",
        "target REDIRECT is only valid in the nat table",
        1,
    ),
    ("-j MASQUERADE", "only valid in the nat table", 1),
    (
        "-j SNAT --to-source 1.2.3.4",
        "only valid in the nat table",
        1,
    ),
    ("-j NOTRACK", "only valid in the raw table", 1),
    ("-j CT --notrack", "only valid in the raw table", 1),
    (
        "-j REJECT --reject-with tcp-reset",
        "tcp-reset needs -p tcp",
        3,
    ),
    (
        "-j REJECT --reject-with icmp6-no-route",
        "invalid --reject-with",
        3,
    ),
    (
        "-j REJECT --reject-with icmp-port-unreachable --reject-with icmp-net-unreachable",
        "only one --reject-with",
        4,
    ),
    (
        "-j LOG --log-prefix 0123456789012345678901234567890",
        "longer than 29",
        3,
    ),
    ("-j LOG --log-level 9", "out of range", 3),
    ("-j LOG --log-level loud", "invalid log level", 3),
    (
        "-j LOG --log-tcp-options --log-uid --log-tcp-options",
        "only one --log-tcp-options",
        4,
    ),
    ("-j ACCEPT --log-uid", "unsupported option --log-uid", 2),
    (
        "-j ACCEPT --log-prefix x",
        "unsupported option --log-prefix",
        2,
    ),
    (
        "--reject-with tcp-reset -j REJECT",
        "unsupported option --reject-with",
        0,
    ),
    ("-j ACCEPT -j DROP", "multiple -j", 2),
    ("-j ACCEPT -g user", "multiple -j", 2),
    ("-g ACCEPT", "-g needs a user chain", 1),
    ("-j FORWARD", "cannot jump to built-in chain", 1),
    ("-j ACCEPT !", "negates nothing", 2),
    ("! ! -s 10.0.0.1 -j ACCEPT", "multiple ! flags", 1),
    ("! -j ACCEPT", "! is not allowed before -j", 1),
    ("! -m tcp -p tcp -j ACCEPT", "! is not allowed before -m", 1),
    (
        "-p tcp --dport 22 bogus -j ACCEPT",
        "unexpected argument",
        4,
    ),
    ("-j", "needs a value", 0),
    ("-I FORWARD -j ACCEPT", "unsupported option -I", 0),
];

#[test]
fn refuses_what_iptables_restore_refuses() {
    for &(rule, msg, word) in REFUSED_V4 {
        let text = wrap(&format!("-A FORWARD {rule}"));
        assert_refused(&text, Family::V4, 6, rule, msg, word);
    }
}

#[test]
fn refuses_v6_specifics() {
    let cases: &[(&str, &str, usize)] = &[
        ("-f -j DROP", "unsupported option -f", 0),
        ("-s 10.0.0.1 -j ACCEPT", "IPv4 address", 1),
        (
            "-p icmp --icmp-type 8 -j ACCEPT",
            "unsupported option --icmp-type",
            2,
        ),
        ("-m icmp --icmp-type 8 -j ACCEPT", "-m icmp in ip6tables", 1),
        (
            "-p icmpv6 -m icmp6 -j ACCEPT",
            "-m icmp6 needs --icmpv6-type",
            2,
        ),
        (
            "-m icmp6 --icmpv6-type 1 -j ACCEPT",
            "-m icmp6 needs -p icmpv6",
            0,
        ),
        (
            "-j REJECT --reject-with icmp-port-unreachable",
            "invalid --reject-with",
            3,
        ),
        (
            "-j REJECT --reject-with icmp6-policy-fail",
            "unsupported --reject-with",
            3,
        ),
        (
            "-p ipv6-icmp --icmpv6-type any -j ACCEPT",
            "invalid ICMPv6 type",
            3,
        ),
        ("-s 2001:db8::/129 -j ACCEPT", "invalid prefix length", 1),
    ];
    for &(rule, msg, word) in cases {
        let errs = compile(&wrap(&format!("-A FORWARD {rule}")), Family::V6).expect_err(rule);
        assert_eq!(errs.len(), 1, "{rule:?}: {errs:?}");
        assert!(
            errs[0].message.contains(msg),
            "{rule:?}: {:?} lacks {msg:?}",
            errs[0].message
        );
        assert_eq!(
            errs[0].col,
            11 + word_col(rule, word),
            "{rule:?}: {}",
            errs[0]
        );
    }
}

fn errors(text: &str) -> Vec<String> {
    match compile(text, Family::V4) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn file_structure_errors() {
    let e = errors("*filter\n:FORWARD DROP [0:0]\n-A FORWARD -j ACCEPT\n");
    assert_eq!(
        e,
        ["t.rules:4:1: COMMIT expected: table filter (opened at line 1) is not committed"]
    );
    let e = errors("*filter\nCOMMIT\n*filter\nCOMMIT\n");
    assert_eq!(
        e,
        ["t.rules:3:1: table filter appears twice (first at line 1)"]
    );
    let e = errors("*rawpost\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n");
    assert_eq!(
        e,
        ["t.rules:1:1: unsupported table rawpost (Rampart supports filter, nat and raw, and mangle and security when their rules change nothing)"]
    );
    let e = errors("-A FORWARD -j ACCEPT\n");
    assert!(
        e[0].starts_with("t.rules:1:1: \"-A\" outside a table"),
        "{e:?}"
    );
    let e = errors("*filter\n-A NOPE -j ACCEPT\nCOMMIT\n");
    assert!(
        e[0].starts_with("t.rules:2:4: chain NOPE is not declared"),
        "{e:?}"
    );
    let e = errors("*filter\n:user DROP [0:0]\nCOMMIT\n");
    assert!(
        e[0].contains("user chain user cannot have a policy"),
        "{e:?}"
    );
    let e = errors("*filter\n:FORWARD BOGUS [0:0]\nCOMMIT\n");
    assert!(e[0].starts_with("t.rules:2:10: invalid policy"), "{e:?}");
    let e = errors("*filter\n:FORWARD DROP [x:0]\nCOMMIT\n");
    assert!(e[0].starts_with("t.rules:2:15: invalid counters"), "{e:?}");
    let e = errors("*filter\n:a - [0:0]\n:a - [0:0]\nCOMMIT\n");
    assert!(e[0].contains("declared twice"), "{e:?}");
    let e = errors("*filter\n:ACCEPT - [0:0]\nCOMMIT\n");
    assert!(e[0].contains("clashes with a target"), "{e:?}");
    let e = errors("*filter\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n");
    assert!(e[0].contains("has no built-in chain PREROUTING"), "{e:?}");
    let e = errors("*filter\n-A FORWARD -j ACCEPT\n*nat\nCOMMIT\n");
    assert!(
        e[0].starts_with("t.rules:3:1: COMMIT expected before *nat"),
        "{e:?}"
    );
    let e = errors("COMMIT\n");
    assert!(e[0].contains("COMMIT without a table"), "{e:?}");
    let e = errors("*filter\n-A FORWARD -m comment --comment \"open\nCOMMIT\n");
    assert_eq!(e, ["t.rules:2:33: unterminated quote"]);
}

#[test]
fn chain_graph_errors() {
    let e =
        errors("*filter\n:a - [0:0]\n:b - [0:0]\n-A FORWARD -j a\n-A a -j b\n-A b -g a\nCOMMIT\n");
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("t.rules:5:6: jump loop: chain a reaches itself through b"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("t.rules:6:6: jump loop: chain b reaches itself through a"),
        "{e:?}"
    );
    let e = errors("*filter\n:a - [0:0]\n-A a -j a\nCOMMIT\n");
    assert!(
        e[0].contains("jump loop: chain a reaches itself through a"),
        "{e:?}"
    );
    let e = errors("*filter\n-A INPUT -o out0 -j ACCEPT\n-A OUTPUT -i in0 -j ACCEPT\nCOMMIT\n");
    assert_eq!(
        e,
        [
            "t.rules:2:10: can't use -o with INPUT",
            "t.rules:3:11: can't use -i with OUTPUT"
        ]
    );
    // iptables checks the built-in chains only: a user chain reached from INPUT may test `-o`,
    // which sees the empty name there (only `+` matches it), and the packet's port in FORWARD.
    let text = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:u - [0:0]\n-A INPUT -j u\n-A FORWARD -j u\n\
                -A u -o out0 -j ACCEPT\n-A u ! -o out1 -p udp -j ACCEPT\n-A u -o + -p icmp -j ACCEPT\nCOMMIT\n";
    let key = |proto| FlowKey {
        proto,
        ..FlowKey::new_v4(
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            6,
            1,
            2,
        )
    };
    let meta = |proto, out_port| PacketMeta {
        key: key(proto),
        in_port: 0,
        out_port,
        ct_state: ct::NEW,
        tcp_flags: 0x02,
        later_fragment: false,
    };
    let input = compile_iptables("t.rules", text, Family::V4, &ports(), Hook::Input).unwrap();
    let forward = compile_iptables("t.rules", text, Family::V4, &ports(), Hook::Forward).unwrap();
    let act = |rs: &RuleSet, m| rs.evaluate(&m, |_, _, _| {}).action;
    // -o out0: never in INPUT; in FORWARD for out0.
    assert_eq!(act(&input, meta(6, 2)), Action::Drop);
    assert_eq!(act(&forward, meta(6, 2)), Action::Accept);
    // ! -o out1: always in INPUT; in FORWARD for the other ports.
    assert_eq!(act(&input, meta(17, 3)), Action::Accept);
    assert_eq!(act(&forward, meta(17, 3)), Action::Drop);
    assert_eq!(act(&forward, meta(17, 2)), Action::Accept);
    // -o +: any name, the empty one too.
    assert_eq!(act(&input, meta(1, 3)), Action::Accept);
    assert_eq!(act(&forward, meta(1, 3)), Action::Accept);
}

#[test]
fn nat_and_raw_tables_are_validated() {
    let good = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:fwd - [0:0]\n\
                -A PREROUTING -i in0 -p tcp --dport 80 -j DNAT --to-destination 10.0.0.5:8080\n\
                -A PREROUTING -j fwd\n\
                -A fwd -d 192.0.2.1 -j DNAT --to-destination 10.0.0.6\n\
                -A POSTROUTING -o out0 -j MASQUERADE\n\
                -A POSTROUTING -o out1 -p udp -j MASQUERADE --to-ports 1024-65535 --random\n\
                -A POSTROUTING -s 10.0.0.0/8 -j SNAT --to-source 198.51.100.1-198.51.100.9 --persistent\n\
                -A POSTROUTING -p tcp -j SNAT --to-source 198.51.100.1:1024-2047 --random-fully\n\
                -A INPUT -j SNAT --to-source 198.51.100.2\n\
                -A OUTPUT -j RETURN\n\
                COMMIT\n*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                -A PREROUTING -p udp --dport 53 -j NOTRACK\n-A OUTPUT -j CT --notrack\nCOMMIT\n";
    let parsed = parse_iptables("t.rules", good, Family::V4, &ports()).unwrap();
    let nat = parsed.table(TableKind::Nat).unwrap();
    let Some(TargetSpec {
        target: Target::Dnat(to),
        ..
    }) = &nat.chain("PREROUTING").unwrap().rules[0].target
    else {
        panic!("DNAT expected")
    };
    assert_eq!(to.ports, Some((8080, 8080)));
    assert_eq!(
        to.addrs.unwrap().lo,
        IpAddr128::from_std("10.0.0.5".parse().unwrap())
    );
    // Without a filter table, everything is accepted.
    let rs = compile(good, Family::V4).unwrap();
    assert_eq!(rs.rules.len(), 1);
    assert_eq!(rs.rules[0].action, Action::Accept);

    let v6 = "*nat\n-A PREROUTING -p tcp -j DNAT --to-destination [2001:db8::5]:8080\n\
              -A POSTROUTING -j SNAT --to-source 2001:db8::1-2001:db8::9\nCOMMIT\n";
    compile(v6, Family::V6).unwrap();
    // ip6tables writes a range with ports inside one pair of brackets and takes `[A]`; it
    // refuses `[A]-[B]` (reading `:B]` as a port), and so does Rampart.
    let v6 = |to: &str| format!("*nat\n-A POSTROUTING -p tcp -j SNAT --to-source {to}\nCOMMIT\n");
    let parsed = parse_iptables(
        "t.rules",
        &v6("[fd00::1-fd00::2]:100-200"),
        Family::V6,
        &ports(),
    )
    .unwrap();
    let nat = parsed.table(TableKind::Nat).unwrap();
    let Some(TargetSpec {
        target: Target::Snat(to),
        ..
    }) = &nat.chain("POSTROUTING").unwrap().rules[0].target
    else {
        panic!("SNAT expected")
    };
    assert_eq!(to.ports, Some((100, 200)));
    let r = to.addrs.unwrap();
    assert_eq!(r.lo, IpAddr128::from_std("fd00::1".parse().unwrap()));
    assert_eq!(r.hi, IpAddr128::from_std("fd00::2".parse().unwrap()));
    compile(&v6("[fd00::1]"), Family::V6).unwrap();
    for bad in ["[fd00::1]-[fd00::2]:100", "[fd00::1]-[fd00::2]", "[fd00::1"] {
        let e = compile(&v6(bad), Family::V6).unwrap_err();
        assert!(e[0].message.contains("invalid"), "{bad}: {e:?}");
    }

    let bad: &[(&str, &str)] = &[
        (
            "*nat\n-A POSTROUTING -j DNAT --to-destination 10.0.0.1\nCOMMIT\n",
            "target DNAT is not valid in chain POSTROUTING",
        ),
        (
            "*nat\n-A PREROUTING -j SNAT --to-source 10.0.0.1\nCOMMIT\n",
            "target SNAT is not valid in chain PREROUTING",
        ),
        (
            "*nat\n-A OUTPUT -j MASQUERADE\nCOMMIT\n",
            "target MASQUERADE is not valid in chain OUTPUT",
        ),
        (
            "*nat\n-A POSTROUTING -j DROP\nCOMMIT\n",
            "DROP is not allowed in the nat table",
        ),
        (
            "*nat\n-A POSTROUTING -j REJECT\nCOMMIT\n",
            "only valid in the filter table",
        ),
        (
            "*nat\n-A POSTROUTING -j SNAT\nCOMMIT\n",
            "SNAT needs --to-source",
        ),
        (
            "*nat\n-A POSTROUTING -j SNAT --to-source 10.0.0.1:80\nCOMMIT\n",
            "a port mapping needs -p tcp",
        ),
        (
            "*nat\n-A POSTROUTING -j MASQUERADE --to-ports 80\nCOMMIT\n",
            "a port mapping needs -p tcp",
        ),
        (
            "*nat\n-A POSTROUTING -j SNAT --to-source 10.0.0.1 --to-source 10.0.0.2\nCOMMIT\n",
            "only one --to-source",
        ),
        (
            "*nat\n:p - [0:0]\n-A PREROUTING -j p\n-A p -j MASQUERADE\nCOMMIT\n",
            "MASQUERADE is not valid in chain p: it is reached from PREROUTING",
        ),
        (
            "*nat\n-A PREROUTING -o out0 -j ACCEPT\nCOMMIT\n",
            "can't use -o with PREROUTING",
        ),
        (
            "*nat\n-A POSTROUTING -i in0 -j ACCEPT\nCOMMIT\n",
            "can't use -i with POSTROUTING",
        ),
        (
            "*nat\n-A FORWARD -j ACCEPT\nCOMMIT\n",
            "chain FORWARD is not declared in table nat",
        ),
        (
            "*raw\n-A PREROUTING -j CT --helper ftp\nCOMMIT\n",
            "unsupported option --helper (target CT supports --notrack, --zone",
        ),
        (
            "*raw\n-A PREROUTING -j DNAT --to-destination 1.2.3.4\nCOMMIT\n",
            "only valid in the nat table",
        ),
        (
            "*raw\n-A INPUT -j ACCEPT\nCOMMIT\n",
            "chain INPUT is not declared in table raw",
        ),
    ];
    for (text, msg) in bad {
        let e = errors(text);
        assert_eq!(e.len(), 1, "{text}: {e:?}");
        assert!(e[0].contains(msg), "{text}: {e:?} lacks {msg:?}");
    }
}

/// `--ctstate DNAT` (firewalld's `RELATED,ESTABLISHED,DNAT`, kube-proxy's
/// `! --ctstate RELATED,ESTABLISHED,DNAT`) tests the packet's DNAT twin state; a plain state
/// matches both twins. `--ctstate SNAT` loads only when the nat table translates nothing (then,
/// as in Linux, no connection has it); with a translating rule every match naming it is an error.
#[test]
fn nat_conntrack_states() {
    let filter = "*filter\n:FORWARD DROP [0:0]\n\
                  -A FORWARD -s 10.9.0.0/16 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\n\
                  -A FORWARD -s 10.8.0.0/16 -m conntrack --ctstate NEW -j ACCEPT\n\
                  -A FORWARD -s 10.7.0.0/16 -m state --state ESTABLISHED -j ACCEPT\n\
                  -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT\n\
                  -A FORWARD -m conntrack --ctstate SNAT -j LOG\nCOMMIT\n";
    let dnat = "*nat\n-A PREROUTING -p tcp --dport 80 -j DNAT --to-destination 10.0.0.5\nCOMMIT\n";
    let masq = "*nat\n-A POSTROUTING -o out0 -j MASQUERADE\nCOMMIT\n";
    let rs = compile(filter, Family::V4).unwrap();
    let at = |src: &str, state: u8| {
        let mut p = pkt(src, "10.0.0.5", 6, 40000, 80);
        p.ct_state = state;
        judge(&rs, &p).1
    };
    // 10.9/16: dropped unless RELATED, ESTABLISHED or DNAT'd (kube-proxy's localnet rule).
    assert_eq!(at("10.9.0.1", ct::NEW), "FORWARD:1");
    assert_eq!(at("10.9.0.1", ct::INVALID), "FORWARD:1");
    assert_eq!(at("10.9.0.1", ct::NEW_DNAT), "FORWARD:4");
    assert_eq!(at("10.9.0.1", ct::ESTABLISHED), "FORWARD:4");
    // A plain state matches its DNAT twin (-m conntrack and -m state alike).
    assert_eq!(at("10.8.0.1", ct::NEW_DNAT), "FORWARD:2");
    assert_eq!(at("10.7.0.1", ct::ESTABLISHED_DNAT), "FORWARD:3");
    assert_eq!(at("10.7.0.1", ct::RELATED_DNAT), "FORWARD:4");
    // firewalld's first rule: any DNAT'd packet, not a plain NEW one; SNAT never holds.
    assert_eq!(at("192.0.2.1", ct::NEW_DNAT), "FORWARD:4");
    assert_eq!(at("192.0.2.1", ct::NEW), "policy FORWARD DROP");
    assert_eq!(at("192.0.2.1", ct::UNTRACKED), "policy FORWARD DROP");
    // DNAT loads with DNAT rules; SNAT does not with any translating rule.
    for nat in [dnat, masq] {
        let e = errors(&format!("{filter}{nat}"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("t.rules:7:25: --ctstate SNAT is not supported"),
            "{e:?}"
        );
        assert!(e[0].contains("(line 10)"), "{e:?}");
    }
    let no_snat = filter.replace("-A FORWARD -m conntrack --ctstate SNAT -j LOG\n", "");
    compile(&format!("{dnat}{no_snat}"), Family::V4).unwrap();
}

/// firewalld's iptables backend fills mangle and security with chains that only jump: such
/// tables load and change nothing; what Rampart does not apply there is refused at its line
/// (the mangle targets it applies: `mangle_tests`).
#[test]
fn mangle_and_security_load_when_they_change_nothing() {
    let filter = "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -p tcp --dport 22 -j ACCEPT\nCOMMIT\n";
    let noop = "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n\
                :OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:PREROUTING_ZONES - [0:0]\n\
                :PRE_public - [0:0]\n:PRE_public_allow - [0:0]\n\
                -A PREROUTING -j PREROUTING_ZONES\n-A PREROUTING_ZONES -i in0 -g PRE_public\n\
                -A PREROUTING_ZONES -g PRE_public\n-A PRE_public -j PRE_public_allow\n\
                -A PRE_public_allow -p tcp --dport 80 -j ACCEPT\n-A PRE_public_allow -j RETURN\n\
                -A FORWARD -s 10.0.0.0/8\n\
                -A POSTROUTING -o in0 -p udp --dport 68 -j CHECKSUM --checksum-fill\nCOMMIT\n\
                *security\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                :FORWARD_direct - [0:0]\n-A FORWARD -j FORWARD_direct\nCOMMIT\n";
    let a = compile(&format!("{noop}{filter}"), Family::V4).unwrap();
    let b = compile(filter, Family::V4).unwrap();
    assert_eq!(a.rules, b.rules);
    let parsed = parse_iptables("t.rules", noop, Family::V4, &ports()).unwrap();
    assert_eq!(parsed.table(TableKind::Mangle).unwrap().chains.len(), 8);
    let bad: &[(&str, &str)] = &[
        (
            "*mangle\n-A PREROUTING -j CONNMARK --set-mark 1 --left-shift-mark 33\nCOMMIT\n",
            "t.rules:2:58: invalid shift \"33\" (a number 0-32)",
        ),
        (
            "*mangle\n-A FORWARD -p tcp -j LOG\nCOMMIT\n",
            "t.rules:2:22: target LOG in the mangle table",
        ),
        (
            "*mangle\n-A FORWARD -j TCPMSS --set-mss 1400\nCOMMIT\n",
            "t.rules:2:15: TCPMSS needs -p tcp",
        ),
        (
            "*mangle\n-A FORWARD -j REJECT\nCOMMIT\n",
            "t.rules:2:15: target REJECT in the mangle table",
        ),
        (
            "*mangle\n-A POSTROUTING -p udp -j CHECKSUM\nCOMMIT\n",
            "t.rules:2:26: CHECKSUM needs --checksum-fill",
        ),
        (
            "*raw\n-A PREROUTING -p udp -j CHECKSUM --checksum-fill\nCOMMIT\n",
            "t.rules:2:25: target CHECKSUM is only valid in the mangle table",
        ),
        (
            "*security\n:FORWARD DROP [0:0]\nCOMMIT\n",
            "t.rules:2:10: policy DROP in the security table is not supported",
        ),
        (
            "*mangle\n:u - [0:0]\n-A INPUT -j u\n-A u -j TTL\nCOMMIT\n",
            "t.rules:4:9: TTL needs exactly one of",
        ),
        (
            "*security\n-A FORWARD -m set --match-set x src -j ACCEPT\nCOMMIT\n",
            "t.rules:2:31: Set x doesn't exist",
        ),
    ];
    for (text, want) in bad {
        let e = errors(&format!("{filter}{text}").replace("t.rules:2:", "t.rules:6:"));
        let want = want
            .replace("t.rules:2:", "t.rules:6:")
            .replace("t.rules:4:", "t.rules:8:");
        assert_eq!(e.len(), 1, "{text}: {e:?}");
        assert!(e[0].starts_with(&want), "{text}: {e:?} is not {want:?}");
    }
}

#[test]
fn all_errors_are_collected_in_order() {
    let text = "*filter\n-A FORWARD -m set -j DROP\n-A FORWARD -j ACCEPT\n-A FORWARD -p tcp --dport x -j DROP\n-A FORWARD -j nowhere\nCOMMIT\n*security\n:FORWARD DROP [0:0]\nCOMMIT\n";
    let e = errors(text);
    assert_eq!(e.len(), 4, "{e:?}");
    let lines: Vec<&str> = e.iter().map(|e| e.split(": ").next().unwrap()).collect();
    assert_eq!(
        lines,
        [
            "t.rules:2:12",
            "t.rules:4:27",
            "t.rules:5:12",
            "t.rules:8:10"
        ]
    );
}

#[test]
fn error_display() {
    let e = RuleError {
        file: "r.v4".into(),
        line: 3,
        col: 14,
        message: "unsupported option --foo".into(),
    };
    assert_eq!(e.to_string(), "r.v4:3:14: unsupported option --foo");
}

#[test]
fn infers_family() {
    assert_eq!(
        infer_family(&wrap(
            "-A FORWARD -s 10.0.0.0/8 -p tcp --dport 1:1024 -j ACCEPT"
        )),
        Family::V4
    );
    assert_eq!(
        infer_family(&wrap("-A FORWARD -s 2001:db8::/32 -j ACCEPT")),
        Family::V6
    );
    assert_eq!(
        infer_family(&wrap("-A FORWARD -p ipv6-icmp -j ACCEPT")),
        Family::V6
    );
    assert_eq!(
        infer_family(&wrap("-A FORWARD -p icmpv6 -j ACCEPT")),
        Family::V6
    );
    assert_eq!(
        infer_family(&wrap("-A FORWARD -p 58 --icmpv6-type 1 -j ACCEPT")),
        Family::V6
    );
    assert_eq!(
        infer_family(&wrap(
            "-A FORWARD -j REJECT --reject-with icmp6-adm-prohibited"
        )),
        Family::V6
    );
    assert_eq!(
        infer_family(&wrap("-A FORWARD -m iprange --src-range ::1-::5 -j ACCEPT")),
        Family::V6
    );
    assert_eq!(
        infer_family("*nat\n-A PREROUTING -j DNAT --to-destination [2001:db8::1]:80\nCOMMIT\n"),
        Family::V6
    );
    // Comments and log prefixes do not count.
    assert_eq!(infer_family("# ip6tables? no: 2001:db8::1\n*filter\n-A FORWARD -m comment --comment \"fe80::1\" -j ACCEPT\nCOMMIT\n"), Family::V4);
    assert_eq!(infer_family(""), Family::V4);
}

// ---------------------------------------------------------------- semantics

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

fn pkt(src: &str, dst: &str, proto: u8, sport: u16, dport: u16) -> PacketMeta {
    let s: IpAddr = src.parse().unwrap();
    let d: IpAddr = dst.parse().unwrap();
    let key = FlowKey {
        src: IpAddr128::from_std(s),
        dst: IpAddr128::from_std(d),
        src_port: sport,
        dst_port: dport,
        proto,
        family: if s.is_ipv4() { Family::V4 } else { Family::V6 },
    };
    PacketMeta {
        key,
        in_port: 0,
        out_port: 2,
        ct_state: ct::NEW,
        tcp_flags: SYN,
        later_fragment: false,
    }
}

fn tcp(dport: u16) -> PacketMeta {
    pkt("10.0.0.1", "192.0.2.1", 6, 40000, dport)
}

/// The action and the origin label of the deciding rule.
fn judge(rs: &RuleSet, p: &PacketMeta) -> (Action, String) {
    let j = rs.evaluate(p, |_, _, _| {});
    let label = rs
        .rules
        .get(j.rule as usize)
        .map(|r| rs.origins[r.origin as usize].label.clone())
        .unwrap_or_default();
    (j.action, label)
}

fn rules(body: &str) -> RuleSet {
    let text = format!("{V4_HEAD}:a - [0:0]\n:b - [0:0]\n{body}\nCOMMIT\n");
    compile(&text, Family::V4).unwrap_or_else(|e| panic!("{e:?}"))
}

#[test]
fn open_ports_only() {
    let rs = rules(
        "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A FORWARD -p tcp -m multiport --dports 22,80,443 -j ACCEPT",
    );
    for port in [22, 80, 443] {
        assert_eq!(judge(&rs, &tcp(port)), (Action::Accept, "FORWARD:2".into()));
    }
    for port in [0, 21, 23, 81, 442, 444, 8080] {
        assert_eq!(
            judge(&rs, &tcp(port)),
            (Action::Drop, "policy FORWARD DROP".into())
        );
    }
    let udp = pkt("10.0.0.1", "192.0.2.1", 17, 40000, 80);
    assert_eq!(judge(&rs, &udp).0, Action::Drop);
    let est = PacketMeta {
        ct_state: ct::ESTABLISHED,
        ..udp
    };
    assert_eq!(judge(&rs, &est), (Action::Accept, "FORWARD:1".into()));
    // The policy rule points at its declaration line.
    let last = rs.rules.last().unwrap();
    assert_eq!(rs.origins[last.origin as usize].line, 3);
    assert_eq!(rs.origins[last.origin as usize].file, "t.rules");
}

#[test]
fn deny_prefix_then_accept() {
    let rs = rules("-A FORWARD -s 10.0.0.0/8 -j DROP\n-A FORWARD -j ACCEPT");
    assert_eq!(judge(&rs, &tcp(22)), (Action::Drop, "FORWARD:1".into()));
    assert_eq!(
        judge(&rs, &pkt("11.0.0.1", "192.0.2.1", 6, 1, 22)),
        (Action::Accept, "FORWARD:2".into())
    );
    assert_eq!(
        judge(&rs, &pkt("9.255.255.255", "192.0.2.1", 6, 1, 22)).0,
        Action::Accept
    );
    assert_eq!(
        judge(&rs, &pkt("10.255.255.255", "192.0.2.1", 6, 1, 22)).0,
        Action::Drop
    );
}

#[test]
fn user_chains_with_return_and_nesting() {
    let rs = rules(
        "-A FORWARD -p tcp -j a\n\
         -A FORWARD -p udp -j DROP\n\
         -A FORWARD -j ACCEPT\n\
         -A a -s 10.0.0.0/8 -j b\n\
         -A a -p tcp --dport 22 -j ACCEPT\n\
         -A a -j REJECT\n\
         -A b -s 10.0.0.1 -j RETURN\n\
         -A b -p tcp --dport 80 -j ACCEPT\n\
         -A b -j DROP",
    );
    // 10.0.0.1 returns from b, then a: 22 accepted, else rejected.
    assert_eq!(judge(&rs, &tcp(22)), (Action::Accept, "a:2".into()));
    assert_eq!(
        judge(&rs, &tcp(80)),
        (
            Action::Reject(RejectWith::IcmpPortUnreachable),
            "a:3".into()
        )
    );
    // 10.0.0.2 stays in b.
    assert_eq!(
        judge(&rs, &pkt("10.0.0.2", "192.0.2.1", 6, 1, 80)),
        (Action::Accept, "b:2".into())
    );
    assert_eq!(
        judge(&rs, &pkt("10.0.0.2", "192.0.2.1", 6, 1, 22)),
        (Action::Drop, "b:3".into())
    );
    // Not 10/8: a only.
    assert_eq!(
        judge(&rs, &pkt("172.16.0.1", "192.0.2.1", 6, 1, 22)),
        (Action::Accept, "a:2".into())
    );
    // Not tcp: a is never entered.
    assert_eq!(
        judge(&rs, &pkt("10.0.0.1", "192.0.2.1", 17, 1, 22)),
        (Action::Drop, "FORWARD:2".into())
    );
    assert_eq!(
        judge(&rs, &pkt("10.0.0.1", "192.0.2.1", 47, 0, 0)),
        (Action::Accept, "FORWARD:3".into())
    );
}

#[test]
fn return_in_builtin_chain_means_policy() {
    let rs = rules("-A FORWARD -s 10.0.0.0/8 -j RETURN\n-A FORWARD -j ACCEPT");
    assert_eq!(
        judge(&rs, &tcp(1)),
        (Action::Drop, "policy FORWARD DROP".into())
    );
    assert_eq!(
        judge(&rs, &pkt("11.0.0.1", "192.0.2.1", 6, 1, 1)),
        (Action::Accept, "FORWARD:2".into())
    );
}

#[test]
fn goto_returns_to_the_callers_caller() {
    let rs = rules(
        "-A FORWARD -j a\n\
         -A FORWARD -j DROP\n\
         -A a -p tcp -g b\n\
         -A a -j ACCEPT\n\
         -A b -p tcp --dport 22 -j REJECT\n\
         -A b -p tcp --dport 23 -j RETURN",
    );
    // tcp goes to b; b's RETURN and falling off b both return to FORWARD (past the jump to a).
    assert_eq!(judge(&rs, &tcp(22)).1, "b:1");
    assert_eq!(judge(&rs, &tcp(23)), (Action::Drop, "FORWARD:2".into()));
    assert_eq!(judge(&rs, &tcp(24)), (Action::Drop, "FORWARD:2".into()));
    // udp stays in a.
    assert_eq!(
        judge(&rs, &pkt("10.0.0.1", "192.0.2.1", 17, 1, 1)),
        (Action::Accept, "a:2".into())
    );
    // A goto from the built-in chain returns to its policy.
    let rs = rules("-A FORWARD -g a\n-A FORWARD -j ACCEPT\n-A a -p udp -j ACCEPT");
    assert_eq!(
        judge(&rs, &tcp(1)),
        (Action::Drop, "policy FORWARD DROP".into())
    );
}

#[test]
fn log_continues() {
    let rs = rules(
        "-A FORWARD -j LOG --log-prefix \"all: \"\n\
         -A FORWARD -p tcp -j a\n\
         -A FORWARD -j ACCEPT\n\
         -A a -j LOG --log-prefix \"tcp: \" --log-level debug\n\
         -A a -p tcp --dport 22 -j DROP",
    );
    let mut seen = Vec::new();
    let j = rs.evaluate(&tcp(22), |_, spec, _| {
        seen.push((spec.prefix.clone(), spec.level))
    });
    assert_eq!(j.action, Action::Drop);
    assert_eq!(seen, [("all: ".to_string(), 4), ("tcp: ".to_string(), 7)]);
    seen.clear();
    let j = rs.evaluate(&tcp(80), |_, spec, _| {
        seen.push((spec.prefix.clone(), spec.level))
    });
    assert_eq!(j.action, Action::Accept);
    assert_eq!(seen.len(), 2);
}

#[test]
fn negations() {
    let rs = rules(
        "-A FORWARD ! -s 10.0.0.0/8 -p tcp ! --dport 1000:2000 -j DROP\n\
         -A FORWARD ! -p udp -j ACCEPT\n\
         -A FORWARD -m conntrack ! --ctstate NEW -j ACCEPT\n\
         -A FORWARD -m iprange ! --src-range 10.0.0.0-10.0.0.127 -j REJECT",
    );
    assert_eq!(
        judge(&rs, &pkt("11.0.0.1", "192.0.2.1", 6, 1, 22)).1,
        "FORWARD:1"
    );
    assert_eq!(
        judge(&rs, &pkt("11.0.0.1", "192.0.2.1", 6, 1, 1500)).1,
        "FORWARD:2"
    );
    assert_eq!(
        judge(&rs, &pkt("10.0.0.1", "192.0.2.1", 6, 1, 22)).1,
        "FORWARD:2"
    );
    let udp = pkt("10.0.0.1", "192.0.2.1", 17, 1, 22);
    assert_eq!(
        judge(&rs, &udp),
        (Action::Drop, "policy FORWARD DROP".into())
    );
    assert_eq!(
        judge(
            &rs,
            &PacketMeta {
                ct_state: ct::ESTABLISHED,
                ..udp
            }
        )
        .1,
        "FORWARD:3"
    );
    assert_eq!(
        judge(&rs, &pkt("10.0.0.200", "192.0.2.1", 17, 1, 22)).1,
        "FORWARD:4"
    );
    // `! -s` over a prefix is two flat rules, per extra negated field more (cross product).
    let origins: Vec<u32> = rs.rules.iter().map(|r| r.origin).collect();
    assert_eq!(origins.iter().filter(|&&o| o == origins[0]).count(), 4);
}

#[test]
fn multiport_ports_is_either_direction() {
    let rs = rules("-A FORWARD -p tcp -m multiport --ports 22,80 -j ACCEPT\n-A FORWARD -p udp -m multiport ! --ports 53 -j ACCEPT");
    assert_eq!(
        judge(&rs, &pkt("10.0.0.1", "192.0.2.1", 6, 22, 40000)).0,
        Action::Accept
    );
    assert_eq!(
        judge(&rs, &pkt("10.0.0.1", "192.0.2.1", 6, 40000, 80)).0,
        Action::Accept
    );
    assert_eq!(
        judge(&rs, &pkt("10.0.0.1", "192.0.2.1", 6, 40000, 81)).0,
        Action::Drop
    );
    assert_eq!(
        judge(&rs, &pkt("10.0.0.1", "192.0.2.1", 17, 53, 40000)).0,
        Action::Drop
    );
    assert_eq!(
        judge(&rs, &pkt("10.0.0.1", "192.0.2.1", 17, 40000, 53)).0,
        Action::Drop
    );
    assert_eq!(
        judge(&rs, &pkt("10.0.0.1", "192.0.2.1", 17, 40000, 54)).0,
        Action::Accept
    );
}

#[test]
fn fragments_never_match_l4_rules() {
    let rs = rules(
        "-A FORWARD -p tcp ! --dport 22 -j REJECT\n\
         -A FORWARD -p tcp --dport 22 -j ACCEPT\n\
         -A FORWARD -f -j LOG\n\
         -A FORWARD -p tcp -j ACCEPT",
    );
    let first = tcp(22);
    let later = PacketMeta {
        later_fragment: true,
        key: FlowKey {
            src_port: 0,
            dst_port: 0,
            ..first.key
        },
        ..first
    };
    assert_eq!(judge(&rs, &first).1, "FORWARD:2");
    let mut logged = 0;
    let j = rs.evaluate(&later, |_, _, _| logged += 1);
    assert_eq!((j.action, logged), (Action::Accept, 1));
    assert_eq!(
        rs.origins[rs.rules[j.rule as usize].origin as usize].label,
        "FORWARD:4"
    );
    // `-m tcp` alone already excludes later fragments; `! -f` too.
    let rs = rules("-A FORWARD -p tcp -m tcp -j ACCEPT\n-A FORWARD ! -f -j REJECT");
    assert_eq!(judge(&rs, &later).0, Action::Drop);
    assert_eq!(judge(&rs, &first).0, Action::Accept);
    // Flags: no match on later fragments, nor for `! --syn`.
    let rs = rules("-A FORWARD -p tcp ! --syn -j REJECT\n-A FORWARD -p tcp --syn -j ACCEPT");
    assert_eq!(judge(&rs, &first).1, "FORWARD:2");
    assert_eq!(
        judge(
            &rs,
            &PacketMeta {
                tcp_flags: SYN | ACK,
                ..first
            }
        )
        .1,
        "FORWARD:1"
    );
    assert_eq!(judge(&rs, &later).1, "policy FORWARD DROP");
}

#[test]
fn interfaces_and_wildcards() {
    let rs = rules("-A FORWARD -i in+ -o out1 -j ACCEPT\n-A FORWARD ! -i in1 -j REJECT");
    let p = |i: u8, o: u8| PacketMeta {
        in_port: i,
        out_port: o,
        ..tcp(1)
    };
    assert_eq!(judge(&rs, &p(0, 3)).1, "FORWARD:1");
    assert_eq!(judge(&rs, &p(1, 3)).1, "FORWARD:1");
    assert_eq!(judge(&rs, &p(0, 2)).1, "FORWARD:2");
    assert_eq!(judge(&rs, &p(1, 2)).1, "policy FORWARD DROP");
    assert_eq!(judge(&rs, &p(2, 3)).1, "FORWARD:2");
    // The loopback interface, when no port has its name, is none of them (`-i lo -j ACCEPT`
    // as every host's rule set has it); other unknown names are still errors.
    let rs = rules("-A FORWARD -i lo -j ACCEPT\n-A FORWARD -o lo -j ACCEPT\n-A FORWARD ! -i lo -p tcp -j REJECT");
    for (i, o) in [(0, 2), (1, 3), (3, 0)] {
        assert_eq!(judge(&rs, &p(i, o)).1, "FORWARD:3");
    }
    let e = errors(&wrap("-A FORWARD -i lo0 -j ACCEPT"));
    assert!(e[0].contains("unknown port lo0"), "{e:?}");
    let mut with_lo = ports();
    with_lo.push("lo".into());
    let rs = compile_iptables(
        "t.rules",
        &wrap("-A FORWARD -i lo -j ACCEPT"),
        Family::V4,
        &with_lo,
        Hook::Forward,
    )
    .unwrap();
    assert_eq!(
        judge(
            &rs,
            &PacketMeta {
                in_port: 4,
                ..tcp(1)
            }
        )
        .1,
        "FORWARD:1"
    );
}

#[test]
fn icmp_types() {
    let rs = rules(
        "-A FORWARD -p icmp --icmp-type echo-request -j ACCEPT\n\
         -A FORWARD -p icmp --icmp-type fragmentation-needed -j ACCEPT\n\
         -A FORWARD -p icmp ! --icmp-type 3 -j REJECT",
    );
    let icmp = |ty: u8, code: u8| {
        pkt(
            "10.0.0.1",
            "192.0.2.1",
            1,
            7,
            u16::from_be_bytes([ty, code]),
        )
    };
    assert_eq!(judge(&rs, &icmp(8, 0)).1, "FORWARD:1");
    assert_eq!(judge(&rs, &icmp(8, 9)).1, "FORWARD:1");
    assert_eq!(judge(&rs, &icmp(3, 4)).1, "FORWARD:2");
    assert_eq!(judge(&rs, &icmp(3, 3)).1, "policy FORWARD DROP");
    assert_eq!(judge(&rs, &icmp(0, 0)).1, "FORWARD:3");
    let v6 = "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -p ipv6-icmp --icmpv6-type echo-request -j ACCEPT\n\
              -A FORWARD -s 2001:db8::/32 -p tcp -j REJECT --reject-with tcp-reset\nCOMMIT\n";
    let rs = compile(v6, Family::V6).unwrap();
    assert_eq!(rs.family, Family::V6);
    assert_eq!(
        judge(&rs, &pkt("2001:db8::1", "2001:db8::2", 58, 1, 0x8000)).1,
        "FORWARD:1"
    );
    assert_eq!(
        judge(&rs, &pkt("2001:db8::1", "2001:db8::2", 58, 1, 0x8100)).0,
        Action::Drop
    );
    assert_eq!(
        judge(&rs, &pkt("2001:db8::1", "::1", 6, 1, 1)).0,
        Action::Reject(RejectWith::TcpReset)
    );
    assert_eq!(
        judge(&rs, &pkt("2001:db9::1", "::1", 6, 1, 1)).0,
        Action::Drop
    );
}

#[test]
fn empty_and_input_hook() {
    for text in ["", "*nat\nCOMMIT\n", "*filter\nCOMMIT\n"] {
        let rs = compile(text, Family::V4).unwrap();
        assert_eq!(rs.rules.len(), 1);
        assert_eq!(
            judge(&rs, &tcp(1)),
            (Action::Accept, "policy FORWARD ACCEPT".into())
        );
    }
    let text = "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\n-A FORWARD -j DROP\nCOMMIT\n";
    let rs = compile_iptables("t", text, Family::V4, &ports(), Hook::Input).unwrap();
    assert_eq!(judge(&rs, &tcp(22)), (Action::Accept, "INPUT:1".into()));
    assert_eq!(
        judge(&rs, &tcp(23)),
        (Action::Drop, "policy INPUT DROP".into())
    );
    let rs = compile(text, Family::V4).unwrap();
    assert_eq!(judge(&rs, &tcp(22)), (Action::Drop, "FORWARD:1".into()));
}

#[test]
fn rules_without_target_change_nothing() {
    let rs = rules("-A FORWARD -p tcp\n-A FORWARD -p tcp --dport 22 -j ACCEPT");
    assert_eq!(judge(&rs, &tcp(22)), (Action::Accept, "FORWARD:2".into()));
    assert_eq!(rs.rules.len(), 2);
}

#[test]
fn impossible_rules_compile_to_nothing() {
    // An empty intersection drops the flat rule: -f with a port, disjoint ranges in a jump.
    let rs = rules("-A FORWARD -f -p tcp --dport 22 -j ACCEPT\n-A FORWARD -s 10.0.0.0/8 -j a\n-A a -s 11.0.0.0/8 -j ACCEPT");
    assert_eq!(rs.rules.len(), 1);
    // A jump into an empty chain leaves no trace; a trailing RETURN is a no-op.
    let rs = rules("-A FORWARD -j a\n-A FORWARD -j b\n-A b -p udp -j RETURN");
    assert_eq!(rs.rules.len(), 1);
}

#[test]
fn inlining_is_bounded() {
    // 10 chains each jumping 10 times to the next: 10^10 paths.
    let mut text = String::from("*filter\n");
    for i in 0..10 {
        text += &format!(":c{i} - [0:0]\n");
    }
    text += "-A FORWARD -j c0\n";
    for i in 0..9 {
        for _ in 0..10 {
            text += &format!("-A c{i} -j c{}\n", i + 1);
        }
    }
    text += "-A c9 -j ACCEPT\nCOMMIT\n";
    let e = errors(&text);
    assert!(e[0].contains("rule set too large"), "{e:?}");
    // Deep nesting.
    let mut text = String::from("*filter\n");
    for i in 0..200 {
        text += &format!(":c{i} - [0:0]\n");
    }
    text += "-A FORWARD -j c0\n";
    for i in 0..199 {
        text += &format!("-A c{i} -j c{}\n", i + 1);
    }
    text += "COMMIT\n";
    let e = errors(&text);
    assert!(e[0].contains("jumps nest deeper than"), "{e:?}");
}

#[test]
fn parsed_rules_keep_positions_and_counters() {
    let text = format!("{V4_HEAD}[7:420] -A FORWARD ! -s 10.0.0.0/8 -m comment --comment \"x y\" -j ACCEPT\nCOMMIT\n");
    let parsed = parse_iptables("t.rules", &text, Family::V4, &ports()).unwrap();
    let filter = parsed.table(TableKind::Filter).unwrap();
    let fwd = filter.chain("FORWARD").unwrap();
    assert_eq!(
        (fwd.policy, fwd.line, fwd.counters),
        (Some(Policy::Drop), 3, Some(Counters::default()))
    );
    let r = &fwd.rules[0];
    assert_eq!((r.line, r.col, r.number), (6, 9, 1));
    assert_eq!(
        r.counters,
        Some(Counters {
            packets: 7,
            bytes: 420
        })
    );
    assert_eq!(r.matches[0].col, 22);
    assert!(r.matches[0].negated);
    assert_eq!(r.matches[2].cond, Cond::Comment("x y".into()));
    assert_eq!(
        r.target,
        Some(TargetSpec {
            col: 63,
            goto: false,
            target: Target::Accept
        })
    );
    assert_eq!(filter.chain("user").unwrap().hook, None);
}

// ---------------------------------------------------------------- the reference interpreter

fn port_matches(ports: &[String], name: &str, port: u8) -> bool {
    let Some(p) = ports.get(usize::from(port)) else {
        return false;
    };
    match name.strip_suffix('+') {
        Some(stem) => p.starts_with(stem),
        None => p == name,
    }
}

fn in_addr(r: &AddrRange, a: IpAddr128) -> bool {
    r.lo <= a && a <= r.hi
}

fn in_ports(r: &[PortRange], p: u16) -> bool {
    r.iter().any(|&(lo, hi)| lo <= p && p <= hi)
}

/// Whether one match holds, read straight from netfilter's match functions.
fn ref_match(m: &Match, p: &PacketMeta, ports: &[String]) -> bool {
    let k = &p.key;
    let frag = p.later_fragment;
    let raw = match &m.cond {
        Cond::Source(nets) => nets.iter().any(|r| in_addr(r, k.src)),
        Cond::Destination(nets) => nets.iter().any(|r| in_addr(r, k.dst)),
        Cond::Protocol(None) => true,
        Cond::Protocol(Some(n)) => k.proto == *n,
        Cond::InInterface(i) => port_matches(ports, &i.name, p.in_port),
        Cond::OutInterface(i) => port_matches(ports, &i.name, p.out_port),
        Cond::Fragment => frag,
        Cond::Module(m) => !(m.is_l4() && frag),
        Cond::SourceRange(r) => in_addr(r, k.src),
        Cond::DestinationRange(r) => in_addr(r, k.dst),
        Cond::ConnState(bits) => u16::from(p.ct_state) & bits != 0,
        Cond::Comment(_) => true,
        // The L4 matches return false on a later fragment before looking at `!`.
        Cond::SourcePorts(r) if !frag => in_ports(r, k.src_port),
        Cond::DestinationPorts(r) if !frag => in_ports(r, k.dst_port),
        Cond::Ports(r) if !frag => in_ports(r, k.src_port) || in_ports(r, k.dst_port),
        Cond::TcpFlags { mask, comp } if !frag => p.tcp_flags & mask == *comp,
        Cond::Icmp(IcmpMatch::Any) if !frag => true,
        Cond::Icmp(IcmpMatch::Type {
            ty,
            code_lo,
            code_hi,
        }) if !frag => {
            let [t, c] = k.dst_port.to_be_bytes();
            t == *ty && *code_lo <= c && c <= *code_hi
        }
        _ => return false,
    };
    raw != m.negated
}

/// The outcome of netfilter's traversal: action, deciding rule's label, LOG rule labels, and
/// an upper bound on the continue steps (LOG, RETURN, end of a goto'd chain) the compiled set
/// takes for the packet.
fn reference(
    table: &Table,
    root: &str,
    p: &PacketMeta,
    ports: &[String],
) -> (Action, String, Vec<String>, usize) {
    let root_i = table.chain_index(root).unwrap();
    let mut stack: Vec<(usize, usize)> = Vec::new();
    let (mut chain, mut pos) = (root_i, 0usize);
    let mut logs = Vec::new();
    let mut steps = 0;
    let policy = |logs: Vec<String>, steps| {
        let pol = table.chains[root_i].policy.unwrap();
        let a = if pol == Policy::Accept {
            Action::Accept
        } else {
            Action::Drop
        };
        (a, format!("policy {root} {}", pol.name()), logs, steps)
    };
    loop {
        let c = &table.chains[chain];
        let Some(rule) = c.rules.get(pos) else {
            // Off the end: a built-in chain's policy, or back to the caller.
            if chain == root_i {
                return policy(logs, steps);
            }
            match stack.pop() {
                Some((c2, p2)) => {
                    steps += 1;
                    (chain, pos) = (c2, p2);
                    continue;
                }
                None => return policy(logs, steps + 1),
            }
        };
        pos += 1;
        if !rule.matches.iter().all(|m| ref_match(m, p, ports)) {
            continue;
        }
        let label = format!("{}:{}", c.name, rule.number);
        let Some(spec) = &rule.target else { continue };
        match &spec.target {
            Target::Accept => return (Action::Accept, label, logs, steps),
            Target::Drop => return (Action::Drop, label, logs, steps),
            Target::Reject(w) => return (Action::Reject(*w), label, logs, steps),
            Target::Log(_) => {
                steps += 1;
                logs.push(label);
            }
            Target::Return => {
                steps += 1;
                if chain == root_i {
                    return policy(logs, steps);
                }
                match stack.pop() {
                    Some((c2, p2)) => (chain, pos) = (c2, p2),
                    None => return policy(logs, steps),
                }
            }
            Target::Jump(name) => {
                let t = table.chain_index(name).unwrap();
                if !spec.goto {
                    stack.push((chain, pos));
                }
                (chain, pos) = (t, 0);
            }
            other => panic!("not a filter target: {other:?}"),
        }
    }
}

fn compiled(rs: &RuleSet, p: &PacketMeta) -> (Action, String, Vec<String>) {
    let label = |i: u32| {
        rs.origins[rs.rules[i as usize].origin as usize]
            .label
            .clone()
    };
    let mut logs = Vec::new();
    let j = rs.evaluate(p, |i, _, _| logs.push(label(i)));
    assert_ne!(j.rule, u32::MAX, "evaluation ran out of steps");
    (j.action, label(j.rule), logs)
}

// ---------------------------------------------------------------- random rule sets

const PROTO_V4: &[&str] = &[
    "-p tcp",
    "-p udp",
    "! -p tcp",
    "-p icmp",
    "-p 47",
    "-p tcp --dport 22",
    "-p tcp ! --dport 1000:2000",
    "-p udp --sport 53",
    "-p udp --dport 53:",
    "-p tcp --sport :1023",
    "-p tcp -m multiport --dports 22,80,443:445",
    "-p tcp -m multiport ! --ports 80,443",
    "-p udp -m multiport --ports 53,123",
    "-p udp -m multiport ! --sports 1000:2000,53",
    "-p tcp --syn",
    "-p tcp ! --syn",
    "-p tcp --tcp-flags SYN,ACK ACK",
    "-p tcp ! --tcp-flags ALL NONE",
    "-p tcp --tcp-flags SYN SYN,ACK",
    "-p tcp --dport 22 -m tcp --dport 20:30",
    "-p icmp --icmp-type echo-request",
    "-p icmp ! --icmp-type 3/4",
    "-p icmp -m icmp --icmp-type any",
    "-p icmp -m icmp ! --icmp-type any",
    "-p tcp -m tcp",
    "-p 6 --dport 80",
    "-p udp -m udp ! --dport 0:1023",
];
const PROTO_V6: &[&str] = &[
    "-p tcp",
    "! -p udp",
    "-p ipv6-icmp",
    "-p tcp --dport 22",
    "-p udp ! --sport 53",
    "-p tcp -m multiport --ports 22,80",
    "-p tcp ! --syn",
    "-p ipv6-icmp --icmpv6-type echo-request",
    "-p ipv6-icmp ! --icmpv6-type 1/4",
    "-p icmpv6 -m icmp6 --icmpv6-type destination-unreachable",
];
const SRC_V4: &[&str] = &[
    "-s 10.0.0.0/8",
    "! -s 10.0.0.0/8",
    "-s 10.1.0.0/255.255.0.0",
    "-s 192.168.1.5",
    "-s 10.0.0.0/8,192.168.0.0/16",
    "-m iprange --src-range 10.0.0.5-10.0.1.200",
    "-m iprange ! --src-range 0.0.0.0-10.0.0.5",
];
const DST_V4: &[&str] = &[
    "-d 192.168.1.0/24",
    "! -d 192.168.1.5/32",
    "-d 0.0.0.0/0",
    "-d 255.255.255.255",
    "! -d 0.0.0.0/1",
];
const SRC_V6: &[&str] = &[
    "-s 2001:db8::/32",
    "! -s 2001:db8::/32",
    "-s fe80::/10",
    "-m iprange ! --src-range ::-2001:db8::5",
];
const DST_V6: &[&str] = &["-d 2001:db8:1::5", "! -d ::/1", "-d ffff::/16"];
const IFACE_IN: &[&str] = &["-i in0", "! -i in0", "-i in+", "-i +", "! -i in+"];
const IFACE_OUT: &[&str] = &["-o out1", "! -o out+", "-o out0"];
const FRAG: &[&str] = &["-f", "! -f"];
const STATE: &[&str] = &[
    "-m conntrack --ctstate ESTABLISHED,RELATED",
    "-m state ! --state NEW",
    "-m conntrack --ctstate INVALID,UNTRACKED",
    "-m state --state NEW",
];
const COMMENT: &[&str] = &["-m comment --comment \"some words\""];

#[derive(Clone, Debug)]
enum T {
    Accept,
    Drop,
    Reject,
    Return,
    Log,
    Nothing,
    Jump(usize),
    Goto(usize),
}

#[derive(Clone, Debug)]
struct GenRule {
    matches: Vec<Option<&'static str>>,
    target: T,
}

fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = Option<&'static str>> {
    prop::option::weighted(0.25, prop::sample::select(pool))
}

fn gen_rule(v6: bool) -> impl Strategy<Value = GenRule> {
    let (proto, src, dst) = if v6 {
        (PROTO_V6, SRC_V6, DST_V6)
    } else {
        (PROTO_V4, SRC_V4, DST_V4)
    };
    let frag: &'static [&'static str] = if v6 {
        &["-m comment --comment f"]
    } else {
        FRAG
    };
    let matches = (
        pick(proto),
        pick(src),
        pick(dst),
        pick(IFACE_IN),
        pick(IFACE_OUT),
        pick(frag),
        pick(STATE),
        pick(COMMENT),
    )
        .prop_map(|(a, b, c, d, e, f, g, h)| vec![a, b, c, d, e, f, g, h]);
    let target = prop_oneof![
        3 => Just(T::Accept),
        3 => Just(T::Drop),
        1 => Just(T::Reject),
        2 => Just(T::Return),
        1 => Just(T::Log),
        1 => Just(T::Nothing),
        3 => (0usize..8).prop_map(T::Jump),
        2 => (0usize..8).prop_map(T::Goto),
    ];
    (matches, target).prop_map(|(matches, target)| GenRule { matches, target })
}

/// A filter table with FORWARD and up to 3 user chains (`U1`..); chain i jumps only to
/// chains after it, so there are no loops.
pub(crate) fn gen_ruleset(v6: bool) -> impl Strategy<Value = String> {
    (0usize..=3, any::<bool>())
        .prop_flat_map(move |(users, drop)| {
            let chains =
                prop::collection::vec(prop::collection::vec(gen_rule(v6), 0..=6), users + 1);
            (Just(users), Just(drop), chains)
        })
        .prop_map(|(users, drop, chains)| {
            let mut text = String::from("*filter\n");
            text += if drop {
                ":FORWARD DROP [0:0]\n"
            } else {
                ":FORWARD ACCEPT [0:0]\n"
            };
            for u in 1..=users {
                text += &format!(":U{u} - [0:0]\n");
            }
            for (ci, rules) in chains.iter().enumerate() {
                let name = if ci == 0 {
                    "FORWARD".to_string()
                } else {
                    format!("U{ci}")
                };
                for r in rules {
                    text += &format!("-A {name}");
                    for m in r.matches.iter().flatten() {
                        text += " ";
                        text += m;
                    }
                    let callee =
                        |k: usize| (ci < users).then(|| format!("U{}", ci + 1 + k % (users - ci)));
                    let t = match &r.target {
                        T::Accept => Some("-j ACCEPT".to_string()),
                        T::Drop => Some("-j DROP".into()),
                        T::Reject => Some("-j REJECT".into()),
                        T::Return => Some("-j RETURN".into()),
                        T::Log => Some(format!("-j LOG --log-prefix \"{name} \"")),
                        T::Nothing => None,
                        T::Jump(k) => {
                            Some(callee(*k).map_or("-j ACCEPT".into(), |c| format!("-j {c}")))
                        }
                        T::Goto(k) => {
                            Some(callee(*k).map_or("-j DROP".into(), |c| format!("-g {c}")))
                        }
                    };
                    if let Some(t) = t {
                        text += " ";
                        text += &t;
                    }
                    text += "\n";
                }
            }
            text += "COMMIT\n";
            text
        })
}

fn gen_addr(v6: bool) -> BoxedStrategy<IpAddr128> {
    let pool: Vec<&'static str> = if v6 {
        vec![
            "2001:db8::1",
            "2001:db8::5",
            "2001:db8::6",
            "2001:db8:1::5",
            "fe80::1",
            "::",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "ffff::1",
            "7fff:ffff::1",
            "8000::",
        ]
    } else {
        vec![
            "10.0.0.1",
            "10.0.0.5",
            "10.0.0.4",
            "10.0.1.200",
            "10.0.1.201",
            "10.1.2.3",
            "192.168.1.5",
            "192.168.1.4",
            "192.168.1.255",
            "192.168.2.0",
            "8.8.8.8",
            "0.0.0.0",
            "255.255.255.255",
            "127.255.255.255",
            "128.0.0.0",
        ]
    };
    let fixed = prop::sample::select(pool).prop_map(|s| IpAddr128::from_std(s.parse().unwrap()));
    if v6 {
        prop_oneof![3 => fixed, 1 => any::<[u8; 16]>().prop_map(IpAddr128)].boxed()
    } else {
        prop_oneof![3 => fixed, 1 => any::<[u8; 4]>().prop_map(IpAddr128::from_v4_octets)].boxed()
    }
}

pub(crate) fn gen_packet(v6: bool) -> impl Strategy<Value = PacketMeta> {
    let port = prop_oneof![
        3 => prop::sample::select(vec![0u16, 22, 20, 30, 53, 80, 123, 443, 444, 445, 446, 999, 1000, 1500, 2000, 2001, 1023, 1024, 65535]),
        1 => any::<u16>(),
        // ICMP (type << 8) | code values.
        2 => prop::sample::select(vec![0x0800u16, 0x0803, 0x0304, 0x0303, 0x0000, 0x0b00, 0x8000, 0x8100, 0x0104, 0x0100, 0x0200]),
    ];
    let proto = prop_oneof![4 => prop::sample::select(vec![1u8, 6, 17, 58, 47]), 1 => any::<u8>()];
    let ct_state = prop::sample::select(vec![
        ct::NEW,
        ct::ESTABLISHED,
        ct::RELATED,
        ct::INVALID,
        ct::UNTRACKED,
    ]);
    let flags = prop_oneof![
        prop::sample::select(vec![SYN, ACK, SYN | ACK, 0, 0x3f, 0x01, 0x04]),
        any::<u8>()
    ];
    (
        gen_addr(v6),
        gen_addr(v6),
        proto,
        port.clone(),
        port,
        0u8..4,
        0u8..4,
        ct_state,
        flags,
        prop::bool::weighted(0.15),
    )
        .prop_map(
            move |(
                src,
                dst,
                proto,
                sport,
                dport,
                in_port,
                out_port,
                ct_state,
                tcp_flags,
                later,
            )| {
                let family = if v6 { Family::V6 } else { Family::V4 };
                let (src_port, dst_port) = if later { (0, 0) } else { (sport, dport) };
                PacketMeta {
                    key: FlowKey {
                        src,
                        dst,
                        src_port,
                        dst_port,
                        proto,
                        family,
                    },
                    in_port,
                    out_port,
                    ct_state,
                    tcp_flags,
                    later_fragment: later,
                }
            },
        )
}

fn check_agreement(text: &str, v6: bool, packets: &[PacketMeta]) -> Result<(), TestCaseError> {
    let family = if v6 { Family::V6 } else { Family::V4 };
    let ports = ports();
    let parsed = parse_iptables("gen", text, family, &ports)
        .map_err(|e| TestCaseError::fail(format!("{e:?}\n{text}")))?;
    let rs = compile_parsed(&parsed, Hook::Forward)
        .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    prop_assert!(matches!(
        rs.rules.last().unwrap().action,
        Action::Accept | Action::Drop
    ));
    for (i, r) in rs.rules.iter().enumerate() {
        if let Action::ContinueAt(t) = r.action {
            prop_assert!(
                t as usize > i + 1 && (t as usize) < rs.rules.len(),
                "continue {i} -> {t}"
            );
        }
    }
    let table = parsed.table(TableKind::Filter).unwrap();
    for p in packets {
        let (action, label, logs, steps) = reference(table, "FORWARD", p, &ports);
        // The dataplane caps continue steps per packet; keep the comparison within it.
        if steps > 48 {
            continue;
        }
        let got = compiled(&rs, p);
        prop_assert_eq!(got, (action, label, logs), "packet {:?}\n{}", p, text);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn flattening_agrees_with_netfilter_traversal_v4(text in gen_ruleset(false), packets in prop::collection::vec(gen_packet(false), 24)) {
        check_agreement(&text, false, &packets)?;
    }

    #[test]
    fn flattening_agrees_with_netfilter_traversal_v6(text in gen_ruleset(true), packets in prop::collection::vec(gen_packet(true), 24)) {
        check_agreement(&text, true, &packets)?;
    }

    #[test]
    fn rule_labels_are_chain_colon_number(name in "[A-Z_]{0,8}", number in any::<u32>()) {
        prop_assert_eq!(compile::rule_label(&name, number), format!("{name}:{number}"));
    }

    /// A rule's cubes, computed as it is parsed (one cube at a time while there is one), are
    /// the conjunction of its matches' cubes taken pairwise.
    #[test]
    fn rule_cubes_are_the_pairwise_conjunction(text in gen_ruleset(false), v6_text in gen_ruleset(true)) {
        for (text, family) in [(text, Family::V4), (v6_text, Family::V6)] {
            let parsed = parse_iptables("gen", &text, family, &ports()).unwrap();
            for rule in parsed.tables.iter().flat_map(|t| &t.chains).flat_map(|c| &c.rules) {
                let mut want = Some(vec![compile::Cube::full(family)]);
                for m in &rule.matches {
                    let Some(acc) = want.as_ref() else { break };
                    if acc.is_empty() {
                        break;
                    }
                    want = compile::meet_all(acc, &compile::match_cubes(family, m), MAX_RULE_ALTERNATIVES);
                }
                prop_assert_eq!(&rule.cubes, &want);
            }
        }
    }
}

// ---------------------------------------------------------------- robustness

const SOUP: &[&str] = &[
    "*filter",
    "*nat",
    "*raw",
    "*mangle",
    "COMMIT",
    ":FORWARD",
    ":INPUT",
    ":u",
    "ACCEPT",
    "DROP",
    "-",
    "[0:0]",
    "[1:",
    "-A",
    "FORWARD",
    "u",
    "-j",
    "-g",
    "-s",
    "-d",
    "!",
    "-p",
    "tcp",
    "udp",
    "icmp",
    "--dport",
    "--sport",
    "22",
    "1:",
    ":2",
    "65536",
    "-m",
    "multiport",
    "--ports",
    "1,2,3",
    "conntrack",
    "--ctstate",
    "NEW,ESTABLISHED",
    "10.0.0.0/8",
    "::1/128",
    "10.0.0.1-10.0.0.0",
    "--tcp-flags",
    "SYN,ACK",
    "ALL",
    "--syn",
    "-f",
    "-i",
    "-o",
    "in+",
    "in0",
    "+",
    "-j",
    "LOG",
    "--log-prefix",
    "\"x y\"",
    "\"",
    "\\",
    "REJECT",
    "--reject-with",
    "tcp-reset",
    "RETURN",
    "SNAT",
    "--to-source",
    "[::1]:80",
    "1.2.3.4:1-2",
    "DNAT",
    "--to-destination",
    "MASQUERADE",
    "--to-ports",
    "NOTRACK",
    "CT",
    "--notrack",
    "--zone",
    "--zone-orig",
    "mark",
    "--icmp-type",
    "3/4",
    "any",
    "-c",
    "-4",
    "-6",
    "#",
    "é",
    "\t",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn token_soup_never_panics(lines in prop::collection::vec(prop::collection::vec(prop::sample::select(SOUP), 0..12), 0..12),
                               v6 in any::<bool>()) {
        let text: String = lines.iter().map(|l| l.join(" ") + "\n").collect();
        let family = if v6 { Family::V6 } else { Family::V4 };
        let _ = compile_iptables("soup", &text, family, &ports(), Hook::Forward);
        let _ = compile_iptables("soup", &text, family, &[], Hook::Input);
        let _ = infer_family(&text);
        // The same words inside a filter table, so that the option parser sees them.
        let body: String = lines.iter().map(|l| format!("-A FORWARD {}\n", l.join(" "))).collect();
        let _ = compile_iptables("soup", &wrap(&body), family, &ports(), Hook::Forward);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = compile_iptables("bytes", &text, Family::V4, &ports(), Hook::Forward);
        let _ = compile_iptables("bytes", &wrap(&format!("-A FORWARD {text}")), Family::V6, &ports(), Hook::Forward);
        let _ = infer_family(&text);
    }
}
