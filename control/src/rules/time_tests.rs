//! `-m time`: what the parser takes and refuses (with iptables' own refusals), and the
//! meaning around each boundary on built frames judged at given packet times.

use super::tests::{assert_refused, compile, wrap};
use super::*;
use dataplane::classify::time::days_from_civil;
use dataplane::classify::{ct, Action, Wire};
use dataplane::filter::packet_meta;
use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
use std::net::Ipv4Addr;

const A: Action = Action::Accept;
const D: Action = Action::Drop;

/// Unix seconds of a UTC date and time.
fn utc(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64) -> i64 {
    (days_from_civil(y, mo) + i64::from(d) - 1) * 86_400 + h * 3600 + mi * 60 + s
}

/// FORWARD (policy DROP) with `rule` then nothing.
fn set(rule: &str) -> RuleSet {
    let rs = compile(&wrap(&format!("-A FORWARD {rule}")), Family::V4)
        .unwrap_or_else(|e| panic!("{rule}: {e:?}"));
    let c = crate::load::tree_classifier(&rs.rules).unwrap();
    rs.with_classifier(c)
}

/// The verdict for a NEW UDP packet at `unix_s`.
fn at(rs: &RuleSet, unix_s: i64) -> Action {
    let f = FrameSpec::new(
        IpSpec::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)),
        L4Spec::udp(4000, 53, b"t"),
    )
    .build();
    let info = dataplane::wire::parse_frame(&f).unwrap();
    let mut meta = packet_meta(&f, &info, 0, 2).unwrap();
    meta.ct_state = ct::NEW;
    let ns = u64::try_from(unix_s).unwrap() * 1_000_000_000 + 999_999_999;
    rs.judge(&meta, &Wire::of(&f, &info, ns), |_, _, _| {})
        .action
}

#[test]
fn accepts_time_as_iptables_save_writes_it() {
    for rule in [
        "-m time --timestart 08:00:00 --timestop 17:00:00 --weekdays Mon,Tue,Wed,Thu,Fri -j ACCEPT",
        "-m time --timestart 22:00:00 --timestop 02:00:00 --contiguous -j ACCEPT",
        "-m time --monthdays 1,15,31 --datestart 2026-01-01T00:00:00 --datestop 2026-12-31T23:59:59 -j ACCEPT",
        "-m time ! --weekdays Sat,Sun ! --monthdays 31 -j DROP",
        "-m time --timestart 8:30 --timestop 9:00 --kerneltz -j DROP",
        "-m time --weekdays Monday,Tu,3,7 --localtz -j DROP",
        "-m time --utc --datestart 1970 --datestop 2038 -j DROP",
        "-m time --timestart 12:00 --timestop 12:00 --contiguous -j DROP",
        "-m time --monthdays 0 -j DROP",
        "-m time -j DROP",
    ] {
        set(rule);
    }
}

#[test]
fn refuses_what_iptables_refuses() {
    // (rule, message, word the error points at)
    for (rule, msg, word) in [
        ("-m time --timestart 24:00 -j DROP", "invalid time", 3),
        ("-m time --timestart 8 -j DROP", "invalid time", 3),
        ("-m time --timestop 12:60 -j DROP", "invalid time", 3),
        ("-m time --timestop 12:00:60 -j DROP", "invalid time", 3),
        ("-m time --datestart 1969-12-31 -j DROP", "invalid date", 3),
        ("-m time --datestop 2039 -j DROP", "invalid date", 3),
        ("-m time --datestart 2026-13 -j DROP", "invalid date", 3),
        ("-m time --datestart 2026-01-32 -j DROP", "invalid date", 3),
        (
            "-m time --datestart 2026-01-01T24:00 -j DROP",
            "invalid date",
            3,
        ),
        (
            "-m time --datestart 2026-01T10:00 -j DROP",
            "invalid date",
            3,
        ),
        ("-m time --datestart 2026/01/01 -j DROP", "invalid date", 3),
        ("-m time --weekdays Mon,Xy -j DROP", "not a valid day", 3),
        ("-m time --weekdays 0 -j DROP", "not a week day", 3),
        ("-m time --weekdays 8 -j DROP", "not a valid day", 3),
        ("-m time --weekdays mon -j DROP", "not a valid day", 3),
        (
            "-m time --monthdays 32 -j DROP",
            "not a valid day for --monthdays",
            3,
        ),
        (
            "-m time --monthdays 1,,2 -j DROP",
            "not a valid day for --monthdays",
            3,
        ),
        (
            "-m time --timestart 08:00 --timestop 17:00 --contiguous -j DROP",
            "--contiguous only makes sense",
            6,
        ),
        (
            "-m time --contiguous -j DROP",
            "--contiguous only makes sense",
            2,
        ),
        (
            "-m time --utc --kerneltz -j DROP",
            "--utc cannot be combined",
            3,
        ),
        (
            "-m time --localtz --utc -j DROP",
            "--utc cannot be combined",
            3,
        ),
        (
            "-m time --kerneltz --localtz -j DROP",
            "only one --kerneltz",
            3,
        ),
        (
            "-m time ! --timestart 08:00 -j DROP",
            "! is not allowed before --timestart",
            3,
        ),
        (
            "-m time ! --utc -j DROP",
            "! is not allowed before --utc",
            3,
        ),
        (
            "-m time --timestart 08:00 --timestart 09:00 -j DROP",
            "only one --timestart",
            4,
        ),
        ("-m time --timestart -j DROP", "invalid time", 3),
        ("--weekdays Mon -j DROP", "unsupported option --weekdays", 0),
    ] {
        let text = wrap(&format!("-A FORWARD {rule}"));
        assert_refused(&text, Family::V4, 6, rule, msg, word);
    }
    // Not in the nat table: its rules are judged without the packet's time.
    let nat = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
               :POSTROUTING ACCEPT [0:0]\n\
               -A PREROUTING -m time --timestart 08:00 --timestop 09:00 -j DNAT --to-destination 10.0.0.9\nCOMMIT\n";
    let e = compile(nat, Family::V4).unwrap_err();
    assert!(
        e[0].message.contains("not supported in the nat table"),
        "{e:?}"
    );
}

#[test]
fn daytime_boundaries_and_midnight() {
    let fri = |h, m, s| utc(2026, 11, 27, h, m, s); // a Friday
    let rs = set("-m time --timestart 08:00 --timestop 17:00:30 -j ACCEPT");
    assert_eq!(at(&rs, fri(7, 59, 59)), D);
    assert_eq!(at(&rs, fri(8, 0, 0)), A);
    assert_eq!(at(&rs, fri(17, 0, 30)), A); // the stop second is in
    assert_eq!(at(&rs, fri(17, 0, 31)), D);
    // Over midnight on Fridays: Friday 22:00-24:00 and Friday 00:00-02:00.
    let rs = set("-m time --timestart 22:00 --timestop 02:00 --weekdays Fri -j ACCEPT");
    assert_eq!(at(&rs, fri(23, 59, 59)), A);
    assert_eq!(at(&rs, fri(1, 0, 0)), A);
    assert_eq!(at(&rs, fri(2, 0, 0)), A);
    assert_eq!(at(&rs, fri(2, 0, 1)), D);
    assert_eq!(at(&rs, fri(21, 59, 59)), D);
    assert_eq!(at(&rs, fri(24, 0, 0) + 3600), D); // Saturday 01:00
                                                  // --contiguous: the hours after midnight are the day before's night.
    let rs =
        set("-m time --timestart 22:00 --timestop 02:00 --weekdays Fri --contiguous -j ACCEPT");
    assert_eq!(at(&rs, fri(23, 0, 0)), A);
    assert_eq!(at(&rs, fri(24, 0, 0) + 3600), A); // Saturday 01:00
    assert_eq!(at(&rs, fri(24, 0, 0) + 7201), D);
    assert_eq!(at(&rs, fri(1, 0, 0)), D); // Thursday's night
}

#[test]
fn days_and_dates() {
    // The last day of a month: the 31st exists in January, not in February or April.
    let rs = set("-m time --monthdays 31 -j ACCEPT");
    assert_eq!(at(&rs, utc(2026, 1, 31, 23, 59, 59)), A);
    assert_eq!(at(&rs, utc(2026, 2, 1, 0, 0, 0)), D);
    assert_eq!(at(&rs, utc(2026, 2, 28, 12, 0, 0)), D);
    assert_eq!(at(&rs, utc(2026, 4, 30, 12, 0, 0)), D);
    // ! --monthdays and ! --weekdays: the complement (bit 0 stays out).
    let rs = set("-m time ! --monthdays 31 ! --weekdays Sat,Sun -j ACCEPT");
    assert_eq!(at(&rs, utc(2026, 1, 30, 0, 0, 0)), A); // a Friday
    assert_eq!(at(&rs, utc(2026, 1, 31, 0, 0, 0)), D); // Saturday the 31st
    assert_eq!(at(&rs, utc(2026, 3, 31, 0, 0, 0)), D); // Tuesday the 31st
    assert_eq!(at(&rs, utc(2026, 2, 1, 0, 0, 0)), D); // a Sunday
                                                      // Week days and month days both: Friday the 13th.
    let rs = set("-m time --weekdays 5 --monthdays 13 -j ACCEPT");
    assert_eq!(at(&rs, utc(2026, 11, 13, 9, 0, 0)), A);
    assert_eq!(at(&rs, utc(2026, 10, 13, 9, 0, 0)), D);
    assert_eq!(at(&rs, utc(2026, 11, 20, 9, 0, 0)), D);
    // Dates, inclusive to the second; a date alone is its midnight; month 0 is December.
    let rs = set("-m time --datestart 2026-11-01 --datestop 2026-11-30T23:59:59 -j ACCEPT");
    assert_eq!(at(&rs, utc(2026, 10, 31, 23, 59, 59)), D);
    assert_eq!(at(&rs, utc(2026, 11, 1, 0, 0, 0)), A);
    assert_eq!(at(&rs, utc(2026, 11, 30, 23, 59, 59)), A);
    assert_eq!(at(&rs, utc(2026, 12, 1, 0, 0, 0)), D);
    let rs = set("-m time --datestart 2027-00-31 -j ACCEPT");
    assert_eq!(at(&rs, utc(2026, 12, 30, 23, 59, 59)), D);
    assert_eq!(at(&rs, utc(2026, 12, 31, 0, 0, 0)), A);
    // The default --datestop is INT_MAX (2038-01-19T03:14:07).
    let rs = set("-m time -j ACCEPT");
    assert_eq!(at(&rs, i64::from(i32::MAX)), A);
    assert_eq!(at(&rs, i64::from(i32::MAX) + 1), D);
}
