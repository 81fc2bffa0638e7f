//! `-m recent`: what the parser takes and refuses, and its lists' meaning on hand-built
//! frames judged as a worker judges them. Each test names its own lists: lists are shared by
//! name in the process, as Linux shares them in a network namespace.

use super::tests::{assert_refused, compile, wrap};
use super::*;
use dataplane::classify::{ct, Action, Wire};
use dataplane::filter::packet_meta;

/// An IPv4 (or IPv6) TCP SYN from `src` to `dst` with TTL `ttl`, port 22.
fn syn(src: &str, dst: &str, ttl: u8) -> Vec<u8> {
    let mut fr = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    let mut tcp = vec![
        0x9c, 0x40, 0, 22, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff,
    ];
    tcp.extend_from_slice(&[0, 0, 0, 0]);
    match (
        src.parse::<std::net::IpAddr>().unwrap(),
        dst.parse().unwrap(),
    ) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            fr.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 40, 0, 1, 0x40, 0, ttl, 6, 0, 0]);
            fr.extend_from_slice(&s.octets());
            fr.extend_from_slice(&d.octets());
            let sum = dataplane::wire::checksum::checksum(&fr[14..34]);
            fr[24..26].copy_from_slice(&sum.to_be_bytes());
        }
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
            fr.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 20, 6, ttl]);
            fr.extend_from_slice(&s.octets());
            fr.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed families"),
    }
    fr.extend_from_slice(&tcp);
    fr
}

/// The verdict for `frame` (a NEW packet) at `ms` milliseconds.
fn at(rs: &RuleSet, frame: &[u8], ms: u64) -> Action {
    let info = dataplane::wire::parse_frame(frame).expect("the test frame parses");
    let mut meta = packet_meta(frame, &info, 0, 2).expect("an IP frame");
    meta.ct_state = ct::NEW;
    rs.judge(&meta, &Wire::of(frame, &info, ms * 1_000_000), |_, _, _| {})
        .action
}

fn set(body: &str, family: Family) -> RuleSet {
    let text = format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :user - [0:0]\n:limit - [0:0]\n{body}\nCOMMIT\n"
    );
    let rs = compile(&text, family).unwrap_or_else(|e| panic!("{e:?}"));
    let c = crate::load::tree_classifier(&rs.rules).unwrap();
    rs.with_classifier(c)
}

const REJECT: Action = Action::Reject(dataplane::classify::RejectWith::IcmpPortUnreachable);

#[test]
fn accepts_recent_as_iptables_save_writes_it() {
    for rule in [
        // ufw's `ufw limit` pair.
        "-p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -m recent --set --name DEFAULT --mask 255.255.255.255 --rsource",
        "-p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -m recent --update --seconds 30 --hitcount 6 --name DEFAULT --mask 255.255.255.255 --rsource -j user",
        // kube-proxy's session affinity, as it would read in the filter table.
        "-m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-X --mask 255.255.255.255 --rsource -j ACCEPT",
        "-m recent --set --name KUBE-SEP-X --mask 255.255.255.255 --rsource -j ACCEPT",
        "-m recent ! --rcheck --seconds 60 --hitcount 255 --rttl --name a --mask 255.255.255.0 --rdest -j DROP",
        "-m recent --remove -j ACCEPT",
        "-m recent --set -m recent --update --hitcount 2 --name other -j DROP",
    ] {
        let text = wrap(&format!("-A FORWARD {rule}"));
        if let Err(e) = compile(&text, Family::V4) {
            panic!("{rule:?}: {e:?}");
        }
    }
    let v6 = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m recent --update --seconds 30 --hitcount 6 --name DEFAULT --mask ffff:ffff:ffff:ffff:: --rsource -j DROP\nCOMMIT\n";
    compile(v6, Family::V6).unwrap();
}

const REFUSED: &[(&str, &str, usize)] = &[
    ("-m recent -j ACCEPT", "needs one of --set", 0),
    ("-m recent --set --rcheck -j ACCEPT", "only one of", 3),
    (
        "-m recent --set --seconds 5 -j ACCEPT",
        "--seconds goes with",
        2,
    ),
    (
        "-m recent --remove --hitcount 5 -j ACCEPT",
        "--hitcount goes with",
        2,
    ),
    ("-m recent --set --rttl -j ACCEPT", "--rttl goes with", 2),
    (
        "-m recent --rcheck --reap -j ACCEPT",
        "--reap needs --seconds",
        3,
    ),
    (
        "-m recent --rcheck --hitcount 256 -j ACCEPT",
        "larger than the kernel allows",
        4,
    ),
    (
        "-m recent --rcheck --seconds x -j ACCEPT",
        "invalid seconds",
        4,
    ),
    (
        "-m recent --rcheck --mask 255.255.0 -j ACCEPT",
        "invalid --mask",
        4,
    ),
    (
        "-m recent --rcheck --name \"\" -j ACCEPT",
        "must be 1 to",
        4,
    ),
    (
        "-m recent --rcheck ! --seconds 5 -j ACCEPT",
        "! is not allowed",
        4,
    ),
    (
        "-m recent --rcheck --rsource --rdest -j ACCEPT",
        "cannot be combined",
        4,
    ),
    (
        "-m recent --rcheck --seconds 5 --seconds 6 -j ACCEPT",
        "only one --seconds",
        5,
    ),
];

#[test]
fn refuses_bad_recent_options_at_their_column() {
    for &(rule, msg, word) in REFUSED {
        let text = wrap(&format!("-A FORWARD {rule}"));
        assert_refused(&text, Family::V4, 6, rule, msg, word);
    }
    // The nat table is judged without the packet; mangle is not applied.
    let nat = "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -m recent --set -j ACCEPT\nCOMMIT\n";
    let e = compile(nat, Family::V4).unwrap_err();
    assert!(e[0].message.contains("nat table"), "{e:?}");
    let mangle = "*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -m recent --set\nCOMMIT\n";
    let e = compile(mangle, Family::V4).unwrap_err();
    assert!(e[0].message.contains("mangle table"), "{e:?}");
}

/// ufw's `ufw limit`: a target-less `--set` (which must still be walked), then `--update
/// --seconds 30 --hitcount 6` into a rejecting chain, then the accept. The sixth NEW packet
/// from one source within 30 s is the first with six stamps, so it and every later one are
/// refused (each refused one stamps again) until 30 s pass without one.
#[test]
fn ufw_limit_refuses_from_the_sixth_new_connection() {
    let rs = set(
        "-A FORWARD -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -m recent --set --name ufw1 --mask 255.255.255.255 --rsource\n\
         -A FORWARD -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -m recent --update --seconds 30 --hitcount 6 --name ufw1 --mask 255.255.255.255 --rsource -j limit\n\
         -A FORWARD -p tcp -m tcp --dport 22 -j ACCEPT\n\
         -A limit -j REJECT --reject-with icmp-port-unreachable",
        Family::V4,
    );
    let a = syn("10.1.0.2", "10.9.0.1", 64);
    let b = syn("10.1.0.3", "10.9.0.1", 64);
    let got: Vec<Action> = (0..7).map(|i| at(&rs, &a, 1000 + i * 1000)).collect();
    let mut want = vec![Action::Accept; 5];
    want.extend([REJECT, REJECT]);
    assert_eq!(got, want);
    // Another source has its own entry.
    assert_eq!(at(&rs, &b, 8000), Action::Accept);
    // Refused packets stamp too (1..5 s, 6 and 7 s twice): at 31.5 s the window holds
    // eight of them and the new set.
    assert_eq!(at(&rs, &a, 31_500), REJECT);
    // At 70 s only the new set is in the window.
    assert_eq!(at(&rs, &a, 70_000), Action::Accept);
}

#[test]
fn seconds_rdest_mask_remove_and_inversion() {
    let rs = set(
        "-A FORWARD -p tcp -m recent --rcheck --seconds 10 --name r2src --mask 255.255.255.0 --rsource -j DROP\n\
         -A FORWARD -p tcp -d 10.9.0.0/16 -m recent --set --name r2src --rsource -j ACCEPT\n\
         -A FORWARD -p tcp -m recent --update --name r2dst --rdest -j REJECT\n\
         -A FORWARD -p tcp -d 10.8.0.1 -m recent --set --name r2dst --rdest -j ACCEPT\n\
         -A FORWARD -p tcp -d 10.7.0.1 -m recent --remove --name r2src -j ACCEPT\n\
         -A FORWARD -p tcp -m recent ! --rcheck --name r2dst --rdest -j ACCEPT\n\
         -A FORWARD -j DROP",
        Family::V4,
    );
    // The list's mask is its first rule's (/24): 10.1.0.2 to 10.9.0.1 is set as 10.1.0.0,
    // and within 10 s 10.1.0.77 is dropped.
    assert_eq!(at(&rs, &syn("10.1.0.2", "10.9.0.1", 64), 0), Action::Accept);
    assert_eq!(
        at(&rs, &syn("10.1.0.77", "10.9.0.1", 64), 9_999),
        Action::Drop
    );
    assert_eq!(
        at(&rs, &syn("10.1.1.77", "10.9.0.1", 64), 9_999),
        Action::Accept
    );
    // --rcheck does not stamp: the set at 0 is the only stamp, so at 10.001 s the rule no
    // longer matches and the set stamps again.
    assert_eq!(
        at(&rs, &syn("10.1.0.5", "10.9.0.1", 64), 10_001),
        Action::Accept
    );
    assert_eq!(
        at(&rs, &syn("10.1.0.5", "10.9.0.1", 64), 20_000),
        Action::Drop
    );
    // --rdest: the destination 10.8.0.1 is set by one host, then updated for another.
    assert_eq!(at(&rs, &syn("10.3.0.1", "10.8.0.1", 64), 0), Action::Accept);
    assert!(matches!(
        at(&rs, &syn("10.4.0.1", "10.8.0.1", 64), 1),
        Action::Reject(_)
    ));
    // ! --rcheck: a destination not in r2dst.
    assert_eq!(at(&rs, &syn("10.5.0.1", "10.6.0.1", 64), 1), Action::Accept);
    // The --rcheck comes before the --remove here; a set without it removes 10.1.0.0.
    assert_eq!(
        at(&rs, &syn("10.1.0.9", "10.7.0.1", 64), 20_001),
        Action::Drop
    );
    let rs2 = set(
        "-A FORWARD -p tcp -d 10.7.0.1 -m recent --remove --name r2src -j ACCEPT\n-A FORWARD -j DROP",
        Family::V4,
    );
    assert_eq!(
        at(&rs2, &syn("10.1.0.9", "10.7.0.1", 64), 20_002),
        Action::Accept
    );
    assert_eq!(
        at(&rs2, &syn("10.1.0.9", "10.7.0.1", 64), 20_003),
        Action::Drop,
        "removed"
    );
    assert_eq!(
        at(&rs, &syn("10.1.0.9", "10.9.0.1", 64), 20_004),
        Action::Accept
    );
}

/// `--rttl` at FORWARD compares the TTL before forwarding (the header's plus one) with the
/// one stamped; a target-less `--set` at the end of a chain (a continue onto the next rule)
/// is still walked.
#[test]
fn rttl_and_a_set_at_the_end_of_a_chain() {
    let rs = set(
        "-A FORWARD -m recent --rcheck --rttl --name r3 -j DROP\n\
         -A FORWARD -j user\n\
         -A FORWARD -j ACCEPT\n\
         -A user -p udp -j ACCEPT\n\
         -A user -m recent --set --name r3",
        Family::V4,
    );
    let p = |ttl| syn("10.1.0.2", "10.9.0.1", ttl);
    assert_eq!(at(&rs, &p(64), 0), Action::Accept);
    assert_eq!(
        at(&rs, &p(64), 1),
        Action::Drop,
        "the set in user was walked"
    );
    assert_eq!(
        at(&rs, &p(63), 2),
        Action::Accept,
        "another TTL (the set then takes it)"
    );
    assert_eq!(at(&rs, &p(63), 3), Action::Drop);
    // A TTL of 255 (0 before forwarding, wrapped) matches an entry of any TTL.
    assert_eq!(at(&rs, &p(255), 4), Action::Drop);
    // IPv6, a list of its own name shared with nothing else.
    let rs6 = set(
        "-A FORWARD -m recent --update --hitcount 2 --name r3v6 -j DROP\n-A FORWARD -m recent --set --name r3v6 -j ACCEPT",
        Family::V6,
    );
    let p = syn("fd00::1", "fd00::2", 64);
    assert_eq!(at(&rs6, &p, 0), Action::Accept);
    assert_eq!(at(&rs6, &p, 1), Action::Accept);
    assert_eq!(at(&rs6, &p, 2), Action::Drop);
}

/// A reload parsed while the old rule set holds a list keeps the list; once no rule set
/// names it, it is gone.
#[test]
fn lists_outlive_a_reload() {
    let body = "-A FORWARD -m recent --update --name r4 -j DROP\n-A FORWARD -m recent --set --name r4 -j ACCEPT";
    let old = set(body, Family::V4);
    let p = syn("10.1.0.2", "10.9.0.1", 64);
    assert_eq!(at(&old, &p, 0), Action::Accept);
    let new = set(body, Family::V4);
    drop(old);
    assert_eq!(at(&new, &p, 1), Action::Drop, "kept across the reload");
    drop(new);
    let fresh = set(body, Family::V4);
    assert_eq!(at(&fresh, &p, 2), Action::Accept, "a new list");
}

/// ufw 0.36.2's whole rule sets after `ufw limit 22/tcp`, `ufw allow 80/tcp` and `ufw limit
/// from 192.0.2.0/24 to any port 2222 proto tcp` (iptables-save and ip6tables-save in a
/// throwaway namespace; ufw left the last two rules of its user6 template out of the IPv6
/// set on that host, and they are added back), compiled for INPUT where ufw puts them: the
/// sixth NEW connection to
/// 22 from one host within 30 s is refused, port 80 is not limited, and the 2222 rules feed
/// the same DEFAULT list.
#[test]
fn ufw_and_ufw6_limit_sets() {
    let v4 = include_str!("testdata/ufw-limit.v4");
    let v6 = include_str!("testdata/ufw-limit.v6");
    // A router whose first port has 10.9.0.1 and fd00:1::2 (ufw-not-local drops what is
    // not for a local address).
    let a = |s: &str, len| dataplane::router::IfAddr::new(s.parse().unwrap(), len);
    let host = HostAddrs {
        ports: vec![vec![a("10.9.0.1", 24), a("fd00:1::2", 64)]],
        routed: true,
        bridge: None,
        rpf: None,
    };
    let input = |text: &str, family| {
        let parsed = parse_iptables_with("ufw", text, family, &super::tests::ports(), &host)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let rs = compile_parsed(&parsed, Hook::Input).unwrap_or_else(|e| panic!("{e:?}"));
        let c = crate::load::tree_classifier(&rs.rules).unwrap();
        rs.with_classifier(c)
    };
    // The lists are shared by name in the process: this test alone uses DEFAULT, and the two
    // families' sets share it (as ufw's and ufw6's do in Linux).
    let (rs4, rs6) = (input(v4, Family::V4), input(v6, Family::V6));
    let one = syn("10.1.0.2", "10.9.0.1", 64);
    let got: Vec<Action> = (0..7).map(|i| at(&rs4, &one, 100_000 + i)).collect();
    let mut want = vec![Action::Accept; 5];
    want.extend([REJECT, REJECT]);
    assert_eq!(got, want);
    let mut web = syn("10.1.0.2", "10.9.0.1", 64);
    web[36..38].copy_from_slice(&80u16.to_be_bytes());
    assert_eq!(at(&rs4, &web, 100_010), Action::Accept);
    let v6host = syn("2001:db8:2::5", "fd00:1::2", 64);
    let got: Vec<Action> = (0..7).map(|i| at(&rs6, &v6host, 200_000 + i)).collect();
    assert_eq!(got[..5], [Action::Accept; 5]);
    assert!(
        got[5..].iter().all(|a| matches!(a, Action::Reject(_))),
        "{got:?}"
    );
}
