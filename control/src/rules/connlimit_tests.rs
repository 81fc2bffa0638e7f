//! `-m connlimit`: what the parser takes and refuses, and the counts' meaning on hand-built
//! frames judged as a worker judges them (the connection's reservations kept or released by
//! hand here, as conntrack keeps them at confirmation and releases them at the end).

use super::tests::{assert_refused, compile, syn, wrap};
use super::*;
use dataplane::classify::connlimit::{Conn, Counting};
use dataplane::classify::{ct, Action, Check, Wire};
use dataplane::filter::packet_meta;

/// A connection's held counts (table, slot), as conntrack's tag keeps them.
type Tag = Vec<(
    std::sync::Arc<dataplane::classify::connlimit::CountTable>,
    u32,
)>;

/// Judges `frame` as the first packet of a NEW connection; the counts it reserved are
/// returned (the caller keeps them while the connection lives, or releases them).
fn open(rs: &RuleSet, frame: &[u8]) -> (Action, Tag) {
    let info = dataplane::wire::parse_frame(frame).expect("the test frame parses");
    let mut meta = packet_meta(frame, &info, 0, 2).expect("an IP frame");
    meta.ct_state = ct::NEW;
    let c = Counting::new(Conn::New);
    let w = Wire {
        count: Some(&c),
        ..Wire::of(frame, &info, 0)
    };
    let a = rs.judge(&meta, &w, |_, _, _| {}).action;
    (a, c.take_added().collect())
}

/// [`open`], and the reservation released unless the packet was accepted (the connection
/// is confirmed only then).
fn connect(rs: &RuleSet, frame: &[u8], live: &mut Vec<Tag>) -> Action {
    let (a, tag) = open(rs, frame);
    if a == Action::Accept {
        live.push(tag);
    } else {
        close(tag);
    }
    a
}

fn close(tag: Tag) {
    for (t, slot) in tag {
        t.release(slot);
    }
}

fn set(body: &str, family: Family) -> RuleSet {
    let text = format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :user - [0:0]\n{body}\nCOMMIT\n"
    );
    let rs = compile(&text, family).unwrap_or_else(|e| panic!("{e:?}"));
    let c = crate::load::tree_classifier(&rs.rules).unwrap();
    rs.with_classifier(c)
}

const A: Action = Action::Accept;
const D: Action = Action::Drop;

fn the_match(rs: &RuleSet) -> dataplane::classify::connlimit::ConnLimitMatch {
    rs.rules
        .iter()
        .flat_map(|r| r.checks.iter().flat_map(|c| c.iter()))
        .find_map(|c| match c {
            Check::ConnLimit(m) => Some((**m).clone()),
            _ => None,
        })
        .expect("a connlimit check")
}

#[test]
fn accepts_connlimit_as_iptables_save_writes_it() {
    for (rule, above, limit, plen, daddr) in [
        ("-p tcp -m tcp --dport 22 --tcp-flags FIN,SYN,RST,ACK SYN -m connlimit --connlimit-above 3 --connlimit-mask 32 --connlimit-saddr -j REJECT --reject-with tcp-reset", true, 3, 32, false),
        ("-m connlimit --connlimit-upto 10 --connlimit-mask 24 --connlimit-saddr -j ACCEPT", false, 10, 24, false),
        ("-m connlimit --connlimit-above 0 --connlimit-mask 0 --connlimit-daddr -j DROP", true, 0, 0, true),
        ("-m connlimit ! --connlimit-upto 2 -j DROP", true, 2, 32, false),
        ("-m connlimit ! --connlimit-above 4294967295 -j DROP", false, u32::MAX, 32, false),
        ("-m connlimit --connlimit-mask 16 --connlimit-above 1 --connlimit-daddr -j DROP", true, 1, 16, true),
    ] {
        let rs = set(&format!("-A FORWARD {rule}"), Family::V4);
        let m = the_match(&rs);
        assert_eq!((m.above, m.limit, m.daddr), (above, limit, daddr), "{rule}");
        assert_eq!(
            m.mask,
            dataplane::classify::connlimit::prefix_mask(Family::V4, plen),
            "{rule}"
        );
        assert!(rs.reads_conn && rs.counts_conns && !rs.cacheable, "{rule}");
    }
    // The default mask is the family's whole address.
    let rs = set(
        "-A FORWARD -m connlimit --connlimit-above 2 -j DROP",
        Family::V6,
    );
    assert_eq!(
        the_match(&rs).mask,
        dataplane::classify::connlimit::prefix_mask(Family::V6, 128)
    );
    let rs = set(
        "-A FORWARD -m connlimit --connlimit-above 2 --connlimit-mask 64 -j DROP",
        Family::V6,
    );
    assert_eq!(
        the_match(&rs).mask,
        dataplane::classify::connlimit::prefix_mask(Family::V6, 64)
    );
    // Rule sets without it do not count.
    let rs = set("-A FORWARD -p tcp -j ACCEPT", Family::V4);
    assert!(!rs.counts_conns);
}

const REFUSED: &[(&str, &str, usize)] = &[
    (
        "-m connlimit -j DROP",
        "needs --connlimit-above or --connlimit-upto",
        0,
    ),
    (
        "-m connlimit --connlimit-mask 24 -j DROP",
        "needs --connlimit-above or --connlimit-upto",
        0,
    ),
    (
        "-m connlimit --connlimit-upto 3 --connlimit-above 4 -j DROP",
        "cannot be combined",
        4,
    ),
    (
        "-m connlimit --connlimit-above 4 --connlimit-upto 3 -j DROP",
        "cannot be combined",
        4,
    ),
    (
        "-m connlimit --connlimit-above 4 --connlimit-saddr --connlimit-daddr -j DROP",
        "cannot be combined",
        5,
    ),
    (
        "-m connlimit --connlimit-above 4 --connlimit-mask 33 -j DROP",
        "longer than an address",
        5,
    ),
    (
        "-m connlimit --connlimit-above 4 --connlimit-mask -1 -j DROP",
        "invalid",
        5,
    ),
    (
        "-m connlimit --connlimit-above 4 --connlimit-mask 24x -j DROP",
        "invalid",
        5,
    ),
    ("-m connlimit --connlimit-above x -j DROP", "invalid", 3),
    ("-m connlimit --connlimit-above 4294967296 -j DROP", "", 3),
    ("-m connlimit --connlimit-above -1 -j DROP", "invalid", 3),
    (
        "-m connlimit --connlimit-above 4 ! --connlimit-mask 24 -j DROP",
        "! is not allowed",
        5,
    ),
    (
        "-m connlimit --connlimit-above 4 ! --connlimit-daddr -j DROP",
        "! is not allowed",
        5,
    ),
    (
        "-m connlimit --connlimit-above 4 --connlimit-mask 24 --connlimit-mask 16 -j DROP",
        "only one --connlimit-mask",
        6,
    ),
    (
        "-m connlimit --connlimit-above 4 --connlimit-daddr --connlimit-daddr -j DROP",
        "only one --connlimit-daddr",
        5,
    ),
    (
        "--connlimit-above 4 -j DROP",
        "unsupported option --connlimit-above",
        0,
    ),
];

#[test]
fn refuses_bad_connlimit_options_at_their_column() {
    for &(rule, msg, word) in REFUSED {
        let text = wrap(&format!("-A FORWARD {rule}"));
        assert_refused(&text, Family::V4, 6, rule, msg, word);
    }
    let v6 = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m connlimit --connlimit-above 2 --connlimit-mask 129 -j DROP\nCOMMIT\n";
    assert!(compile(v6, Family::V6).unwrap_err()[0]
        .message
        .contains("longer than an address"));
    for table in ["nat", "mangle", "raw"] {
        let chain = if table == "nat" || table == "raw" {
            "PREROUTING"
        } else {
            "FORWARD"
        };
        let t = format!(
            "*{table}\n:{chain} ACCEPT [0:0]\n-A {chain} -m connlimit --connlimit-above 2 -j ACCEPT\nCOMMIT\n"
        );
        let e = compile(&t, Family::V4).unwrap_err();
        assert!(e[0].message.contains(&format!("{table} table")), "{e:?}");
    }
}

/// Three connections a source: the fourth is refused; one ending lets a new one in. Each
/// source counts apart, and a refused connection (its first packet dropped) leaves no count.
#[test]
fn counts_a_sources_connections_until_they_end() {
    let rs = set(
        "-A FORWARD -p tcp --syn -m connlimit --connlimit-above 3 -j DROP\n\
         -A FORWARD -j ACCEPT",
        Family::V4,
    );
    let m = the_match(&rs);
    let mut live = Vec::new();
    let a = |p| syn("10.1.0.2", p, "10.9.0.1", 22);
    let got: Vec<Action> = (0..5)
        .map(|p| connect(&rs, &a(40000 + p), &mut live))
        .collect();
    assert_eq!(got, [A, A, A, D, D]);
    assert_eq!(m.table.total(), 3, "refused connections leave no count");
    // Another source has its own count.
    assert_eq!(
        connect(&rs, &syn("10.1.0.3", 1, "10.9.0.1", 22), &mut live),
        A
    );
    close(live.remove(0));
    assert_eq!(connect(&rs, &a(41000), &mut live), A);
    assert_eq!(connect(&rs, &a(41001), &mut live), D);
    for t in live.drain(..) {
        close(t);
    }
    assert_eq!(m.table.total(), 0);
}

/// `--connlimit-upto`, masks grouping sources, `--connlimit-daddr`, IPv6 prefixes.
#[test]
fn masks_daddr_and_upto() {
    let rs = set(
        "-A FORWARD -m connlimit --connlimit-upto 2 --connlimit-mask 24 -j ACCEPT\n\
         -A FORWARD -j DROP",
        Family::V4,
    );
    let mut live = Vec::new();
    let got: Vec<Action> = ["10.1.0.2", "10.1.0.3", "10.1.0.200", "10.1.1.2"]
        .iter()
        .map(|s| connect(&rs, &syn(s, 1000, "10.9.0.1", 22), &mut live))
        .collect();
    assert_eq!(got, [A, A, D, A], "one /24 shares a count");
    let rs = set(
        "-A FORWARD -m connlimit --connlimit-above 1 --connlimit-daddr -j DROP",
        Family::V4,
    );
    let got: Vec<Action> = [
        ("10.1.0.2", "10.9.0.1"),
        ("10.1.0.3", "10.9.0.1"),
        ("10.1.0.3", "10.9.0.2"),
    ]
    .iter()
    .map(|(s, d)| connect(&rs, &syn(s, 1000, d, 22), &mut live))
    .collect();
    assert_eq!(got, [A, D, A], "counted by destination");
    let rs = set(
        "-A FORWARD -m connlimit --connlimit-above 1 --connlimit-mask 64 -j DROP",
        Family::V6,
    );
    let got: Vec<Action> = ["2001:db8:0:1::2", "2001:db8:0:1::3", "2001:db8:0:2::2"]
        .iter()
        .map(|s| connect(&rs, &syn(s, 1000, "2001:db8:9::1", 22), &mut live))
        .collect();
    assert_eq!(got, [A, D, A]);
    for t in live.drain(..) {
        close(t);
    }
}

/// A packet without a connection counts as one more and adds nothing; a confirmed
/// connection already counted reads the count without adding.
#[test]
fn confirmed_and_untracked_packets_add_nothing_twice() {
    let rs = set(
        "-A FORWARD -m connlimit --connlimit-above 1 -j DROP\n-A FORWARD -j ACCEPT",
        Family::V4,
    );
    let m = the_match(&rs);
    let fr = syn("10.1.0.2", 1000, "10.9.0.1", 22);
    let info = dataplane::wire::parse_frame(&fr).unwrap();
    let meta = packet_meta(&fr, &info, 0, 2).unwrap();
    // No connection: 0 + 1 is not above 1.
    assert_eq!(
        rs.judge(&meta, &Wire::of(&fr, &info, 0), |_, _, _| {})
            .action,
        A
    );
    assert_eq!(m.table.total(), 0);
    let mut live = Vec::new();
    assert_eq!(connect(&rs, &fr, &mut live), A);
    // The same connection, confirmed and counted: its later packets read 1.
    let c = Counting::new(Conn::Confirmed);
    for (t, slot) in &live[0] {
        c.hold((std::sync::Arc::as_ptr(t), *slot));
    }
    for _ in 0..3 {
        let w = Wire {
            count: Some(&c),
            ..Wire::of(&fr, &info, 0)
        };
        assert_eq!(rs.judge(&meta, &w, |_, _, _| {}).action, A);
    }
    assert!(!c.reserved());
    assert_eq!(m.table.total(), 1);
    // A confirmed connection this rule never counted (a reload's new rule) is added once.
    let c2 = Counting::new(Conn::Confirmed);
    let w = Wire {
        count: Some(&c2),
        ..Wire::of(&fr, &info, 0)
    };
    assert_eq!(rs.judge(&meta, &w, |_, _, _| {}).action, D, "2 > 1");
    assert_eq!(
        rs.judge(&meta, &w, |_, _, _| {}).action,
        D,
        "still 2: added once"
    );
    assert_eq!(m.table.total(), 2);
    close(c2.take_added().collect());
    for t in live.drain(..) {
        close(t);
    }
    assert_eq!(m.table.total(), 0);
}

/// A reload makes new counts: the same rules start at zero.
#[test]
fn a_reload_starts_empty() {
    let body = "-A FORWARD -m connlimit --connlimit-above 1 -j DROP\n-A FORWARD -j ACCEPT";
    let rs = set(body, Family::V4);
    let mut live = Vec::new();
    assert_eq!(
        connect(&rs, &syn("10.1.0.2", 1, "10.9.0.1", 22), &mut live),
        A
    );
    assert_eq!(
        connect(&rs, &syn("10.1.0.2", 2, "10.9.0.1", 22), &mut live),
        D
    );
    let rs2 = set(body, Family::V4);
    assert_eq!(
        connect(&rs2, &syn("10.1.0.2", 3, "10.9.0.1", 22), &mut live),
        A
    );
    for t in live.drain(..) {
        close(t);
    }
}

/// On a jump the match is asked once (a gate), as netfilter asks it once at the jump.
#[test]
fn a_jump_counts_once() {
    let rs = set(
        "-A FORWARD -m connlimit --connlimit-above 1 -j user\n\
         -A FORWARD -j ACCEPT\n\
         -A user -p udp -j DROP\n\
         -A user -p tcp -j DROP",
        Family::V4,
    );
    let m = the_match(&rs);
    let mut live = Vec::new();
    assert_eq!(
        connect(&rs, &syn("10.1.0.2", 1, "10.9.0.1", 22), &mut live),
        A
    );
    assert_eq!(m.table.total(), 1);
    assert_eq!(
        connect(&rs, &syn("10.1.0.2", 2, "10.9.0.1", 22), &mut live),
        D
    );
    for t in live.drain(..) {
        close(t);
    }
    assert_eq!(m.table.total(), 0);
}
