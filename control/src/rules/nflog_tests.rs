//! The NFLOG target: what the parser takes and refuses (libxt_NFLOG's options), and its rules
//! on hand-built frames: non-terminating, each record naming the group.

use super::tests::{assert_refused, compile, syn, wrap};
use super::*;
use dataplane::classify::{ct, Action};
use dataplane::filter::packet_meta;

fn set(body: &str, family: Family) -> RuleSet {
    let text = format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{body}\nCOMMIT\n"
    );
    compile(&text, family).unwrap_or_else(|e| panic!("{e:?}"))
}

#[test]
fn accepts_nflog_as_iptables_save_writes_it() {
    for (rule, group, prefix) in [
        ("-j NFLOG", 0, ""),
        ("-j NFLOG --nflog-group 5", 5, ""),
        (
            "-j NFLOG --nflog-prefix \"dropped: \" --nflog-group 65535",
            65535,
            "dropped: ",
        ),
        (
            "-p tcp -j NFLOG --nflog-group 0x10 --nflog-size 128 --nflog-threshold 10",
            16,
            "",
        ),
        ("-j NFLOG --nflog-range 64 --nflog-prefix x", 0, "x"),
    ] {
        let rs = set(&format!("-A FORWARD {rule}"), Family::V4);
        assert_eq!(rs.logs.len(), 1, "{rule}");
        let l = &rs.logs[0];
        assert_eq!(
            (l.group, l.prefix.as_str()),
            (Some(group), prefix),
            "{rule}"
        );
        // NFLOG leaves the verdict to the rules after it.
        assert!(rs.cacheable, "{rule}");
    }
    // A longer prefix is cut to 63 bytes, as libxt_NFLOG's copy into its 64-byte field.
    let long = "p".repeat(80);
    let rs = set(
        &format!("-A FORWARD -j NFLOG --nflog-prefix {long}"),
        Family::V6,
    );
    assert_eq!(rs.logs[0].prefix, "p".repeat(63));
    // Allowed in the tables and chains LOG is (the filter table; not raw, mangle or nat).
    for (table, chain) in [
        ("filter", "INPUT"),
        ("filter", "OUTPUT"),
        ("raw", "PREROUTING"),
        ("mangle", "PREROUTING"),
        ("mangle", "FORWARD"),
        ("nat", "POSTROUTING"),
    ] {
        let log = format!("*{table}\n:{chain} ACCEPT [0:0]\n-A {chain} -j LOG\nCOMMIT\n");
        let nflog = log.replace("-j LOG", "-j NFLOG --nflog-group 3");
        assert_eq!(
            compile(&log, Family::V4).is_ok(),
            compile(&nflog, Family::V4).is_ok(),
            "{table} {chain}"
        );
    }
}

const REFUSED: &[(&str, &str, usize)] = &[
    ("-j NFLOG --nflog-group 65536", "invalid", 3),
    ("-j NFLOG --nflog-group -1", "invalid", 3),
    ("-j NFLOG --nflog-group x", "invalid", 3),
    ("-j NFLOG --nflog-threshold 65536", "invalid", 3),
    ("-j NFLOG --nflog-size 4294967296", "invalid", 3),
    (
        "-j NFLOG --nflog-range 1 --nflog-size 2",
        "cannot be combined",
        4,
    ),
    (
        "-j NFLOG --nflog-size 2 --nflog-range 1",
        "cannot be combined",
        4,
    ),
    (
        "-j NFLOG --nflog-group 1 --nflog-group 2",
        "only one --nflog-group",
        4,
    ),
    ("-j NFLOG ! --nflog-group 1", "! is not allowed", 3),
    ("-j NFLOG --nflog-prefix \"\"", "at least 1 character", 3),
    ("-j NFLOG --nflog-group", "needs a value", 2),
    (
        "-j LOG --nflog-group 1",
        "unsupported option --nflog-group",
        2,
    ),
    ("-j ULOG", "unsupported target ULOG", 1),
];

#[test]
fn refuses_bad_nflog_options_at_their_column() {
    for &(rule, msg, word) in REFUSED {
        let text = wrap(&format!("-A FORWARD {rule}"));
        assert_refused(&text, Family::V4, 6, rule, msg, word);
    }
    // A chain may not take the target's name.
    let text = "*filter\n:NFLOG - [0:0]\nCOMMIT\n";
    assert!(compile(text, Family::V4).unwrap_err()[0]
        .message
        .contains("clashes with a target name"));
}

#[test]
fn nflog_rules_record_their_group_and_go_on() {
    let rs = set(
        "-A FORWARD -p tcp -j NFLOG --nflog-group 7 --nflog-prefix \"in \"\n\
         -A FORWARD -p tcp -m tcp --dport 22 -j LOG --log-prefix ssh\n\
         -A FORWARD -p tcp -m tcp --dport 22 -j NFLOG\n\
         -A FORWARD -p tcp -m tcp --dport 22 -j DROP",
        Family::V4,
    );
    for (dport, want, records) in [
        (22, Action::Drop, vec!["in GROUP=7 ", "ssh", "GROUP=0 "]),
        (80, Action::Accept, vec!["in GROUP=7 "]),
    ] {
        let f = syn("203.0.113.5", 40000, "10.1.0.2", dport);
        let info = dataplane::wire::parse_frame(&f).unwrap();
        let mut meta = packet_meta(&f, &info, 0, 2).unwrap();
        meta.ct_state = ct::NEW;
        let mut got: Vec<String> = Vec::new();
        let j = rs.evaluate(&meta, |_, spec, _| got.push(spec.lead()));
        assert_eq!(j.action, want, "port {dport}");
        assert_eq!(got, records, "port {dport}");
    }
}
