//! `-m hashlimit`: what the parser takes and refuses, and its tables' meaning on hand-built
//! frames judged as a worker judges them. Each test names its own tables: tables are shared by
//! name and family in the process, as Linux shares them in a network namespace.

use super::tests::{assert_refused, compile, syn, wrap};
use super::*;
use dataplane::classify::{ct, Action, Wire};
use dataplane::filter::packet_meta;

fn from(src: &str) -> Vec<u8> {
    syn(src, 40000, "10.9.0.1", 22)
}

/// The verdict for `frame` (a NEW packet) at `ms` milliseconds.
fn at(rs: &RuleSet, frame: &[u8], ms: u64) -> Action {
    let info = dataplane::wire::parse_frame(frame).expect("the test frame parses");
    let mut meta = packet_meta(frame, &info, 0, 2).expect("an IP frame");
    meta.ct_state = ct::NEW;
    rs.judge(&meta, &Wire::of(frame, &info, ms * 1_000_000), |_, _, _| {})
        .action
}

/// The verdicts for `n` packets of `frame` at `ms`.
fn burst(rs: &RuleSet, frame: &[u8], ms: u64, n: usize) -> Vec<Action> {
    (0..n).map(|_| at(rs, frame, ms)).collect()
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

#[test]
fn accepts_hashlimit_as_iptables_save_writes_it() {
    for rule in [
        "-p tcp -m tcp --dport 22 -m hashlimit --hashlimit-upto 5/min --hashlimit-burst 5 --hashlimit-name ssh -j ACCEPT",
        "-m hashlimit --hashlimit-above 3/sec --hashlimit-burst 7 --hashlimit-mode srcip,dstport --hashlimit-name t2 --hashlimit-htable-size 100 --hashlimit-htable-max 50 --hashlimit-htable-gcinterval 500 --hashlimit-htable-expire 4000 --hashlimit-srcmask 24 -j DROP",
        "-m hashlimit --hashlimit-upto 1/hour --hashlimit-burst 5 --hashlimit-name t3 --hashlimit-htable-expire 1000 -j DROP",
        "-m hashlimit --hashlimit-upto 1000000/sec --hashlimit-burst 5 --hashlimit-name t4 -j DROP",
        "-m hashlimit --hashlimit-upto 1/day --hashlimit-burst 1 --hashlimit-mode srcport,dstip,dstport --hashlimit-name t5 --hashlimit-dstmask 16 -j DROP",
        "-m hashlimit --hashlimit 3/s --hashlimit-name t6 -j DROP",
        "-m hashlimit ! --hashlimit-upto 3/SEC --hashlimit-name t7 --hashlimit-mode \"\" -j DROP",
        "-m hashlimit --hashlimit-upto 5/sec --hashlimit-burst 5 --hashlimit-name g2 --hashlimit-rate-interval 5",
    ] {
        let text = wrap(&format!("-A FORWARD {rule}"));
        if let Err(e) = compile(&text, Family::V4) {
            panic!("{rule:?}: {e:?}");
        }
    }
    let v6 = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m hashlimit --hashlimit-upto 5/min --hashlimit-mode srcip --hashlimit-srcmask 64 --hashlimit-name v6 -j ACCEPT\nCOMMIT\n";
    compile(v6, Family::V6).unwrap();
    let raw = "*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -m hashlimit --hashlimit-above 5/min --hashlimit-name r -j DROP\nCOMMIT\n";
    compile(raw, Family::V4).unwrap();
}

const REFUSED: &[(&str, &str, usize)] = &[
    (
        "-m hashlimit --hashlimit-upto 3/s -j ACCEPT",
        "needs --hashlimit-name",
        0,
    ),
    (
        "-m hashlimit --hashlimit-name x -j ACCEPT",
        "needs --hashlimit-upto or --hashlimit-above",
        0,
    ),
    (
        "-m hashlimit --hashlimit-upto 3/fortnight --hashlimit-name x",
        "invalid rate",
        3,
    ),
    ("-m hashlimit --hashlimit-upto 0/s --hashlimit-name x", "invalid rate", 3),
    (
        "-m hashlimit --hashlimit-upto 2000000/s --hashlimit-name x",
        "too fast",
        3,
    ),
    (
        "-m hashlimit --hashlimit-upto 1mb/s --hashlimit-name x",
        "byte rates",
        3,
    ),
    (
        "-m hashlimit --hashlimit-upto 3/s --hashlimit-above 4/s --hashlimit-name x",
        "cannot be combined",
        4,
    ),
    (
        "-m hashlimit --hashlimit-upto 3/s --hashlimit-burst 0 --hashlimit-name x",
        "out of range",
        5,
    ),
    (
        "-m hashlimit --hashlimit-upto 3/s --hashlimit-burst 1000001 --hashlimit-name x",
        "out of range",
        5,
    ),
    (
        "-m hashlimit --hashlimit-upto 1/day --hashlimit-burst 200000 --hashlimit-name x",
        "overflows",
        3,
    ),
    (
        "-m hashlimit --hashlimit-upto 3/s --hashlimit-mode srcip,foo --hashlimit-name x",
        "bad --hashlimit-mode",
        5,
    ),
    (
        "-m hashlimit --hashlimit-upto 3/s --hashlimit-srcmask 33 --hashlimit-name x",
        "longer than an address",
        5,
    ),
    (
        "-m hashlimit --hashlimit-upto 3/s --hashlimit-htable-expire 0 --hashlimit-name x",
        "at least 1",
        5,
    ),
    (
        "-m hashlimit --hashlimit-upto 3/s --hashlimit-htable-gcinterval x --hashlimit-name x",
        "invalid number",
        5,
    ),
    (
        "-m hashlimit --hashlimit-upto 3/s --hashlimit-name a/b",
        "invalid --hashlimit-name",
        5,
    ),
    (
        "-m hashlimit --hashlimit-upto 3/s --hashlimit-htable-max 2000000 --hashlimit-name x",
        "at most 1048576",
        5,
    ),
    (
        "-m hashlimit --hashlimit-upto 3/s --hashlimit-rate-match --hashlimit-name x",
        "--hashlimit-rate-match is not supported",
        4,
    ),
    (
        "-m hashlimit --hashlimit-upto 3/s ! --hashlimit-burst 3 --hashlimit-name x",
        "! is not allowed",
        5,
    ),
    (
        "-m hashlimit --hashlimit-upto 3/s --hashlimit-burst 3 --hashlimit-burst 4 --hashlimit-name x",
        "only one --hashlimit-burst",
        6,
    ),
];

#[test]
fn refuses_bad_hashlimit_options_at_their_column() {
    for &(rule, msg, word) in REFUSED {
        let text = wrap(&format!("-A FORWARD {rule}"));
        assert_refused(&text, Family::V4, 6, rule, msg, word);
    }
    let v6 = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m hashlimit --hashlimit-upto 5/min --hashlimit-srcmask 129 --hashlimit-name v6 -j ACCEPT\nCOMMIT\n";
    assert!(compile(v6, Family::V6).unwrap_err()[0]
        .message
        .contains("longer than an address"));
    let nat = "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -m hashlimit --hashlimit-upto 3/s --hashlimit-name x -j ACCEPT\nCOMMIT\n";
    let e = compile(nat, Family::V4).unwrap_err();
    assert!(e[0].message.contains("nat table"), "{e:?}");
    let mangle = "*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -m hashlimit --hashlimit-upto 3/s --hashlimit-name x -j ACCEPT\nCOMMIT\n";
    let e = compile(mangle, Family::V4).unwrap_err();
    assert!(e[0].message.contains("mangle table"), "{e:?}");
}

/// 2/sec with a burst of 3 per source: three at once, then one every 500 ms; each source
/// (under the /24 mask) has its own bucket.
#[test]
fn bursts_refill_and_keys_by_source_prefix() {
    let rs = set(
        "-A FORWARD -m hashlimit --hashlimit-upto 2/sec --hashlimit-burst 3 --hashlimit-mode srcip --hashlimit-srcmask 24 --hashlimit-name hl1 -j ACCEPT\n\
         -A FORWARD -j DROP",
        Family::V4,
    );
    let a = from("10.1.0.2");
    assert_eq!(burst(&rs, &a, 1000, 4), [A, A, A, D]);
    assert_eq!(at(&rs, &a, 1499), D);
    assert_eq!(at(&rs, &a, 1500), A);
    assert_eq!(at(&rs, &a, 1500), D);
    // 10.1.0.77 is the same /24; 10.1.1.2 is not.
    assert_eq!(at(&rs, &from("10.1.0.77"), 1500), D);
    assert_eq!(burst(&rs, &from("10.1.1.2"), 1500, 4), [A, A, A, D]);
    // Refill is capped at the burst: after 10 s idle, three again, not twenty.
    assert_eq!(burst(&rs, &a, 11_000, 4), [A, A, A, D]);
}

/// Keys by destination port only: sources share a port's bucket; another port has its own.
/// Without a mode, every packet shares one bucket.
#[test]
fn ports_and_no_mode() {
    let rs = set(
        "-A FORWARD -m hashlimit --hashlimit-upto 1/min --hashlimit-burst 2 --hashlimit-mode dstport --hashlimit-name hl2 -j ACCEPT\n\
         -A FORWARD -m hashlimit --hashlimit-upto 1/min --hashlimit-burst 1 --hashlimit-name hl2all -j REJECT\n\
         -A FORWARD -j DROP",
        Family::V4,
    );
    assert_eq!(at(&rs, &syn("10.1.0.1", 1000, "10.9.0.1", 22), 0), A);
    assert_eq!(at(&rs, &syn("10.1.0.2", 1001, "10.9.0.2", 22), 0), A);
    assert!(matches!(
        at(&rs, &syn("10.1.0.3", 1002, "10.9.0.3", 22), 0),
        Action::Reject(_)
    ));
    assert_eq!(at(&rs, &syn("10.1.0.3", 1002, "10.9.0.3", 22), 0), D);
    assert_eq!(at(&rs, &syn("10.1.0.3", 1002, "10.9.0.3", 80), 0), A);
}

/// `--hashlimit-above` matches what is over the rate; a target-less rule still takes from the
/// bucket (Linux runs its matches), and two rules naming one table share it with the first
/// rule's parameters.
#[test]
fn above_a_targetless_rule_and_a_shared_table() {
    let rs = set(
        "-A FORWARD -m hashlimit --hashlimit-above 1/sec --hashlimit-burst 2 --hashlimit-mode srcip --hashlimit-name hl3 -j DROP\n\
         -A FORWARD -j ACCEPT",
        Family::V4,
    );
    let a = from("10.1.0.2");
    assert_eq!(burst(&rs, &a, 0, 3), [A, A, D]);
    assert_eq!(at(&rs, &a, 1000), A);
    let rs = set(
        "-A FORWARD -m hashlimit --hashlimit-upto 1/sec --hashlimit-burst 2 --hashlimit-mode srcip --hashlimit-name hl4\n\
         -A FORWARD -m hashlimit --hashlimit-above 1/hour --hashlimit-burst 9 --hashlimit-mode dstip --hashlimit-name hl4 -j DROP\n\
         -A FORWARD -j ACCEPT",
        Family::V4,
    );
    // Each packet asks twice: the first takes one of two, the second the other; then
    // nothing is left, and the second rule drops.
    assert_eq!(burst(&rs, &a, 0, 2), [A, D]);
    // The table keys by source (the first rule's mode): another source is fresh.
    assert_eq!(at(&rs, &from("10.1.0.3"), 0), A);
    // The first rule's rate: two packets' worth after 2 s.
    assert_eq!(burst(&rs, &a, 2000, 2), [A, D]);
}

/// A limit on a jump is asked once per packet, by the gate before the inlined chain (asked by
/// each inlined rule whose fields hold, the TTL rule's would spend the second packet's).
#[test]
fn a_jump_asks_once() {
    let rs = set(
        "-A FORWARD -m hashlimit --hashlimit-upto 1/min --hashlimit-burst 2 --hashlimit-mode srcip --hashlimit-name hl5 -j user\n\
         -A FORWARD -j DROP\n\
         -A user -p udp -j DROP\n\
         -A user -p tcp -m ttl --ttl-eq 1 -j DROP\n\
         -A user -p tcp -j ACCEPT",
        Family::V4,
    );
    let a = from("10.1.0.2");
    assert_eq!(burst(&rs, &a, 0, 3), [A, A, D]);
}

/// The bound: a new key in a full table drops the packet, whatever the rule says (Linux's
/// hotdrop); known keys go on. Expired keys leave at the next collection.
#[test]
fn a_full_table_drops_new_keys() {
    let rs = set(
        "-A FORWARD -m hashlimit --hashlimit-above 1/sec --hashlimit-mode srcip --hashlimit-name hl6 --hashlimit-htable-size 2 --hashlimit-htable-max 2 --hashlimit-htable-expire 5000 -j DROP\n\
         -A FORWARD -j ACCEPT",
        Family::V4,
    );
    assert_eq!(at(&rs, &from("10.1.0.1"), 0), A);
    assert_eq!(at(&rs, &from("10.1.0.2"), 0), A);
    assert_eq!(at(&rs, &from("10.1.0.3"), 0), D, "no room for a third key");
    assert_eq!(at(&rs, &from("10.1.0.1"), 10), A);
    // 5 s after their last packets both have expired; the collection (every second) makes
    // room.
    assert_eq!(at(&rs, &from("10.1.0.3"), 6000), A);
}

/// A reload parsed while the old rule set holds a table keeps it, with its parameters even
/// when the new rules change them (as Linux keeps `/proc/net/ipt_hashlimit/NAME`); once no rule
/// set names it, a new one is made with the new parameters.
#[test]
fn tables_outlive_a_reload() {
    let r1 = "-A FORWARD -m hashlimit --hashlimit-upto 1/min --hashlimit-burst 2 --hashlimit-mode srcip --hashlimit-name hl7 -j ACCEPT\n-A FORWARD -j DROP";
    let r2 = "-A FORWARD -m hashlimit --hashlimit-upto 1/min --hashlimit-burst 4 --hashlimit-mode dstip --hashlimit-name hl7 -j ACCEPT\n-A FORWARD -j DROP";
    let old = set(r1, Family::V4);
    let a = from("10.1.0.2");
    assert_eq!(burst(&old, &a, 0, 2), [A, A]);
    let new = set(r2, Family::V4);
    drop(old);
    assert_eq!(at(&new, &a, 1), D, "the bucket is kept");
    assert_eq!(
        burst(&new, &from("10.1.0.3"), 1, 3),
        [A, A, D],
        "by source, burst 2: the old table's parameters"
    );
    drop(new);
    let fresh = set(r2, Family::V4);
    assert_eq!(
        burst(&fresh, &a, 2, 5),
        [A, A, A, A, D],
        "a new table: burst 4, by destination"
    );
    // IPv6 tables of the same name are another family's.
    let v6 = set(r1, Family::V6);
    assert_eq!(
        burst(&v6, &syn("fd00::1", 1, "fd00::2", 2), 3, 3),
        [A, A, D]
    );
}
