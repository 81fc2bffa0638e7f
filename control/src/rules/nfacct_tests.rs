//! `-m nfacct`: what the parser takes and refuses, and the counting on built frames: every
//! packet reaching the match counted once with its datagram length, on a jump too (asked once,
//! at the jump), objects shared by name across rules and rule sets.

use super::tests::{ports, V4_HEAD};
use super::*;
use dataplane::classify::{ct, nfacct, Action, Wire};
use dataplane::filter::packet_meta;
use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
use std::net::Ipv4Addr;

fn parse(text: &str) -> Result<ParsedRules, Vec<RuleError>> {
    parse_iptables("n.rules", text, Family::V4, &ports())
}

fn forward(body: &str) -> RuleSet {
    let parsed = parse(&format!("{V4_HEAD}{body}\nCOMMIT\n")).unwrap_or_else(|e| panic!("{e:?}"));
    let rs = compile_parsed(&parsed, Hook::Forward).unwrap_or_else(|e| panic!("{e:?}"));
    let c = crate::load::tree_classifier(&rs.rules).unwrap();
    rs.with_classifier(c)
}

/// A UDP datagram to port `dport` with `payload` bytes (IP length 28 + payload).
fn judge(rs: &RuleSet, dport: u16, payload: usize) -> Action {
    let f = FrameSpec::new(
        IpSpec::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)),
        L4Spec::udp(4000, dport, &vec![0u8; payload]),
    )
    .build();
    let info = dataplane::wire::parse_frame(&f).unwrap();
    let mut meta = packet_meta(&f, &info, 0, 2).unwrap();
    meta.ct_state = ct::NEW;
    rs.judge(&meta, &Wire::of(&f, &info, 0), |_, _, _| {})
        .action
}

fn counts(name: &str) -> (u64, u64) {
    let (_, p, b) = nfacct::get(name, false).unwrap_or_else(|e| panic!("{e}"));
    (p, b)
}

#[test]
fn counts_every_packet_reaching_the_match() {
    let rs = forward(
        "-A FORWARD -p udp --dport 53 -m nfacct --nfacct-name t-rule-dns -j ACCEPT\n\
         -A FORWARD -m nfacct --nfacct-name t-rule-all -p udp --dport 54 -j DROP\n\
         -A FORWARD -j user\n\
         -A user -m nfacct --nfacct-name t-rule-all -j ACCEPT",
    );
    assert_eq!(judge(&rs, 53, 10), Action::Accept);
    assert_eq!(judge(&rs, 53, 0), Action::Accept);
    assert_eq!(judge(&rs, 54, 2), Action::Drop);
    assert_eq!(judge(&rs, 80, 4), Action::Accept);
    // The match always holds; only packets that reach it count.
    assert_eq!(counts("t-rule-dns"), (2, 38 + 28));
    assert_eq!(counts("t-rule-all"), (2, 30 + 32));
    // A rule set naming the same object adds to it.
    let again = forward("-A FORWARD -m nfacct --nfacct-name t-rule-dns -j ACCEPT");
    assert_eq!(judge(&again, 9, 0), Action::Accept);
    assert_eq!(counts("t-rule-dns"), (3, 94));
}

#[test]
fn a_jump_counts_once() {
    // The jump's match is asked once, at the jump, however many rules of the chain the packet
    // is tried against (each of these has its fields match and a check of its own fail).
    let rs = forward(
        "-A FORWARD -m nfacct --nfacct-name t-rule-jump -j user\n\
         -A user -p udp -m length --length 1000:2000 -j DROP\n\
         -A user -p udp -m ttl --ttl-eq 1 -j DROP\n\
         -A user -p udp --dport 7 -j DROP\n-A user -j ACCEPT",
    );
    assert_eq!(judge(&rs, 53, 0), Action::Accept);
    assert_eq!(judge(&rs, 7, 0), Action::Drop);
    assert_eq!(counts("t-rule-jump"), (2, 56));
}

#[test]
fn parser_takes_and_refuses_what_iptables_does() {
    for rule in [
        "-A FORWARD -m nfacct --nfacct-name a -j ACCEPT",
        "-A FORWARD -m nfacct --nfacct-name 0123456789012345678901234567890 -j ACCEPT",
        "-A FORWARD -m nfacct --nfacct-name a -m nfacct --nfacct-name b",
    ] {
        parse(&format!("{V4_HEAD}{rule}\nCOMMIT\n")).unwrap_or_else(|e| panic!("{rule}: {e:?}"));
    }
    for (rule, col, msg) in [
        (
            "-A FORWARD -m nfacct -j ACCEPT",
            12,
            "-m nfacct needs --nfacct-name",
        ),
        (
            "-A FORWARD -m nfacct --nfacct-name 01234567890123456789012345678901 -j ACCEPT",
            36,
            "invalid accounting object name",
        ),
        (
            "-A FORWARD -m nfacct ! --nfacct-name a",
            24,
            "! is not allowed before",
        ),
        (
            "-A FORWARD -m nfacct --nfacct-name a --nfacct-name b",
            38,
            "only one --nfacct-name",
        ),
        (
            "-A FORWARD -m nfacct --nfacct-name",
            22,
            "option --nfacct-name needs a value",
        ),
        (
            "-A FORWARD --nfacct-name a",
            12,
            "unsupported option --nfacct-name",
        ),
    ] {
        let errs = parse(&format!("{V4_HEAD}{rule}\nCOMMIT\n"))
            .err()
            .unwrap_or_else(|| panic!("{rule} accepted"));
        assert_eq!((errs[0].line, errs[0].col), (6, col), "{rule}: {errs:?}");
        assert!(errs[0].message.contains(msg), "{rule}: {errs:?}");
    }
}
