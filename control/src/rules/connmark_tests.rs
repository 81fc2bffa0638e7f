//! `-j CONNMARK` and `-m connmark`: what the parser takes (every option, the forms
//! iptables-save writes, every table) and refuses (at the line and column), and when a rule
//! set that uses them keeps its cached verdicts.

use super::tests::{assert_refused, compile, ports, wrap};
use super::*;
use dataplane::classify::connmark::{Mode, Op};
use dataplane::classify::Check;

/// The CONNMARK operation of the first rule of `-A FORWARD {rule}`.
fn op_of(rule: &str) -> Op {
    let rs = compile(&wrap(&format!("-A FORWARD {rule}")), Family::V4).unwrap();
    let checks = rs.rules[0]
        .checks
        .as_ref()
        .expect("the operation is a check");
    checks
        .iter()
        .find_map(|c| match c {
            Check::SetConnMark(op) => Some(*op),
            _ => None,
        })
        .expect("a CONNMARK operation")
}

fn set(ctmark: u32, ctmask: u32) -> Op {
    Op {
        mode: Mode::Set,
        ctmark,
        ctmask,
        nfmask: u32::MAX,
        shift_right: false,
        shift_bits: 0,
    }
}

fn copy(mode: Mode, nfmask: u32, ctmask: u32) -> Op {
    Op {
        mode,
        ctmark: 0,
        ctmask,
        nfmask,
        shift_right: false,
        shift_bits: 0,
    }
}

#[test]
fn takes_every_option_as_libxt_connmark_stores_it() {
    let cases: &[(&str, Op)] = &[
        // What iptables-save writes (revision 2).
        ("-j CONNMARK --set-xmark 0x1/0xffffffff", set(1, u32::MAX)),
        ("-j CONNMARK --set-xmark 0x10/0x30", set(0x10, 0x30)),
        (
            "-j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff",
            copy(Mode::Save, u32::MAX, u32::MAX),
        ),
        (
            "-j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff00",
            copy(Mode::Restore, 0xff, 0xff00),
        ),
        (
            "-j CONNMARK --save-mark --nfmask 0xff --ctmask 0xff00 --left-shift-mark 8",
            Op {
                shift_bits: 8,
                ..copy(Mode::Save, 0xff, 0xff00)
            },
        ),
        (
            "-j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff00 --right-shift-mark 8",
            Op {
                shift_bits: 8,
                shift_right: true,
                ..copy(Mode::Restore, 0xff, 0xff00)
            },
        ),
        // The other spellings.
        ("-j CONNMARK --set-mark 0x1", set(1, u32::MAX)),
        ("-j CONNMARK --set-mark 0x1/0x3", set(1, 3)),
        ("-j CONNMARK --set-mark 0x4/0x3", set(4, 7)),
        ("-j CONNMARK --and-mark 0xff", set(0, !0xff)),
        ("-j CONNMARK --or-mark 0x10", set(0x10, 0x10)),
        ("-j CONNMARK --xor-mark 0x10", set(0x10, 0)),
        (
            "-j CONNMARK --save-mark",
            copy(Mode::Save, u32::MAX, u32::MAX),
        ),
        (
            "-j CONNMARK --restore-mark --mask 0xf",
            copy(Mode::Restore, 0xf, 0xf),
        ),
        // Options in any order, a later one overriding an earlier, as libxt_CONNMARK's.
        (
            "-j CONNMARK --mask 0xf --restore-mark",
            copy(Mode::Restore, 0xf, 0xf),
        ),
        ("-j CONNMARK --ctmask 0xf --set-mark 1", set(1, u32::MAX)),
        ("-j CONNMARK --set-mark 1 --ctmask 0xf", set(1, 0xf)),
        (
            "-j CONNMARK --left-shift-mark 4 --save-mark --right-shift-mark 2",
            Op {
                shift_bits: 2,
                shift_right: true,
                ..copy(Mode::Save, u32::MAX, u32::MAX)
            },
        ),
        ("-j CONNMARK --set-mark 010", set(8, u32::MAX)),
    ];
    for (rule, want) in cases {
        assert_eq!(op_of(rule), *want, "{rule}");
    }
    // The match, as iptables-save writes it and otherwise.
    for (rule, want) in [
        ("-m connmark --mark 0x1 -j ACCEPT", (1, u32::MAX, false)),
        ("-m connmark ! --mark 0x1/0xf -j ACCEPT", (1, 0xf, true)),
        ("-m connmark --mark 16/0x30 -j DROP", (16, 0x30, false)),
    ] {
        let rs = compile(&wrap(&format!("-A FORWARD {rule}")), Family::V4).unwrap();
        let c = rs.rules[0].checks.as_ref().unwrap();
        assert_eq!(
            c[..],
            [Check::ConnMark {
                value: want.0,
                mask: want.1,
                invert: want.2
            }],
            "{rule}"
        );
    }
}

/// CONNMARK and `-m connmark` in every table Rampart applies (Linux takes them anywhere),
/// IPv6 too; the security table, which Rampart does not apply, refuses a target with effect.
#[test]
fn every_applied_table_takes_them() {
    let body = "-j CONNMARK --set-mark 1\n-A {c} -m connmark --mark 1 -j ACCEPT";
    for (table, chains) in [
        (
            "mangle",
            &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"][..],
        ),
        ("nat", &["PREROUTING", "POSTROUTING"][..]),
        ("raw", &["PREROUTING"][..]),
        ("filter", &["FORWARD", "INPUT"][..]),
    ] {
        for c in chains {
            let text = format!("*{table}\n-A {c} {}\nCOMMIT\n", body.replace("{c}", c));
            for family in [Family::V4, Family::V6] {
                parse_iptables("t.rules", &text, family, &ports())
                    .unwrap_or_else(|e| panic!("{table} {c}: {e:?}"));
            }
        }
    }
    let text = "*security\n-A FORWARD -j CONNMARK --set-mark 1\nCOMMIT\n";
    let e = parse_iptables("t.rules", text, Family::V4, &ports()).unwrap_err();
    assert!(
        e[0].to_string()
            .starts_with("t.rules:2:15: target CONNMARK in the security table is not supported"),
        "{e:?}"
    );
    // The example rule set loads.
    let text = include_str!("../../../examples/iptables/connmark-multiwan.rules");
    let ports = ["lan", "wan0", "wan1"].map(String::from);
    let parsed = parse_iptables("connmark-multiwan.rules", text, Family::V4, &ports)
        .expect("the example loads");
    let rs = compile_parsed(&parsed, Hook::Forward).unwrap();
    assert!(rs.conn_marks);
}

const REFUSED: &[(&str, &str, usize)] = &[
    ("-j CONNMARK", "CONNMARK needs one of --set-xmark", 1),
    ("-j CONNMARK --mask 0xff", "CONNMARK needs one of", 1),
    (
        "-j CONNMARK --save-mark --restore-mark",
        "CONNMARK: --restore-mark cannot be combined with --save-mark",
        3,
    ),
    (
        "-j CONNMARK --set-mark 1 --or-mark 2",
        "--or-mark cannot be combined with --set-mark",
        4,
    ),
    (
        "-j CONNMARK --save-mark --ctmask 0xff --mask 0xf",
        "CONNMARK: --mask cannot be combined with --ctmask",
        5,
    ),
    (
        "-j CONNMARK --restore-mark --mask 0xf --nfmask 0xff",
        "CONNMARK: --nfmask cannot be combined with --mask",
        5,
    ),
    (
        "-j CONNMARK --save-mark --nfmask 1 --nfmask 2",
        "only one --nfmask is allowed",
        5,
    ),
    (
        "-j CONNMARK --save-mark --left-shift-mark 33",
        "invalid shift \"33\" (a number 0-32)",
        4,
    ),
    ("-j CONNMARK --set-mark 0xzz", "invalid mark \"0xzz\"", 3),
    (
        "-j CONNMARK --set-mark 1/0x1ffffffff",
        "invalid mark mask",
        3,
    ),
    ("-j CONNMARK --and-mark 4294967296", "invalid mark", 3),
    ("-j CONNMARK --ctmask -1 --save-mark", "invalid mask", 3),
    (
        "-j CONNMARK ! --set-mark 1",
        "! is not allowed before --set-mark",
        3,
    ),
    (
        "-j CONNMARK --set-mark",
        "option --set-mark needs a value",
        2,
    ),
    ("-m connmark -j ACCEPT", "-m connmark needs --mark", 0),
    ("-m connmark --mark zz -j ACCEPT", "invalid mark \"zz\"", 3),
    (
        "-m connmark --mark 1 --mark 2 -j ACCEPT",
        "only one --mark is allowed per -m connmark",
        4,
    ),
    (
        "-m connmark --ctmask 1 -j ACCEPT",
        "unsupported option --ctmask",
        2,
    ),
];

#[test]
fn refuses_what_iptables_refuses_at_its_column() {
    for &(rule, msg, word) in REFUSED {
        let text = wrap(&format!("-A FORWARD {rule}"));
        assert_refused(&text, Family::V4, 6, rule, msg, word);
    }
}

/// A set that sets a mark only at NEW, or only reads it, keeps its cached verdicts; a
/// CONNMARK rule that ESTABLISHED or RELATED packets reach makes every packet judged.
#[test]
fn cacheable_when_no_established_packet_changes_the_mark() {
    let cacheable = |body: &str| compile(&wrap(body), Family::V4).unwrap().cacheable;
    assert!(cacheable("-A FORWARD -m connmark --mark 1 -j ACCEPT"));
    assert!(cacheable(
        "-A FORWARD -m conntrack --ctstate NEW -j CONNMARK --set-mark 1\n\
         -A FORWARD -m connmark ! --mark 1 -j DROP"
    ));
    assert!(cacheable(
        "-A FORWARD -m state --state NEW,INVALID -j CONNMARK --save-mark"
    ));
    assert!(!cacheable("-A FORWARD -j CONNMARK --set-mark 1"));
    assert!(!cacheable(
        "-A FORWARD -m conntrack --ctstate NEW,RELATED -j CONNMARK --set-mark 1"
    ));
    assert!(!cacheable(
        "-A FORWARD -m conntrack --ctstate ESTABLISHED -j CONNMARK --restore-mark"
    ));
    // Through a jump: the chain's rules carry the jump's state.
    assert!(cacheable(
        ":mark - [0:0]\n-A FORWARD -m conntrack --ctstate NEW -j mark\n\
         -A mark -j CONNMARK --set-mark 1"
    ));
    let rs = compile(
        &wrap("-A FORWARD -m connmark --mark 1 -j ACCEPT"),
        Family::V4,
    )
    .unwrap();
    assert!(rs.conn_marks);
    let rs = compile(&wrap("-A FORWARD -m mark --mark 1 -j ACCEPT"), Family::V4).unwrap();
    assert!(!rs.conn_marks);
}
