//! `-j CT --zone`, `--zone-orig`, `--zone-reply` (libxt_CT revision 2): what the parser takes
//! (every option, the value forms xtables reads, the combinations iptables-restore 1.8.9
//! loads, and what each means as xt_CT's template) and refuses (at the line and column).

use super::tests::{ports, word_col};
use super::*;
use dataplane::classify::Action;
use dataplane::conntrack::zones::{template, DIR_BOTH, DIR_ORIG, DIR_REPLY};

fn raw(rule: &str) -> String {
    format!("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING {rule}\nCOMMIT\n")
}

/// The raw PREROUTING action of `-A PREROUTING {rule}`.
fn action(rule: &str) -> Action {
    let parsed = parse_iptables("t.rules", &raw(rule), Family::V4, &ports())
        .unwrap_or_else(|e| panic!("{rule}: {e:?}"));
    let rs = compile_raw(&parsed)
        .unwrap_or_else(|e| panic!("{rule}: {e:?}"))
        .expect("a raw table");
    rs.rules[0].action
}

/// The error of `-A PREROUTING {rule}` (line 4), as `FILE:LINE:COL: message`.
fn error(text: &str) -> String {
    match parse_iptables("t.rules", text, Family::V4, &ports()) {
        Err(e) => {
            assert_eq!(e.len(), 1, "{text}: {e:?}");
            e[0].to_string()
        }
        Ok(p) => match compile_raw(&p) {
            Err(e) => e[0].to_string(),
            Ok(_) => panic!("accepted:\n{text}"),
        },
    }
}

#[test]
fn zone_options_as_xt_ct_holds_them() {
    let ct = |id, dirs, mark| Action::Ct(template(id, dirs, mark));
    assert_eq!(action("-j CT --zone 5"), ct(5, DIR_BOTH, false));
    assert_eq!(action("-j CT --zone 65535"), ct(65535, DIR_BOTH, false));
    assert_eq!(action("-j CT --zone 0x10"), ct(16, DIR_BOTH, false));
    assert_eq!(action("-j CT --zone 010"), ct(8, DIR_BOTH, false));
    assert_eq!(action("-j CT --zone +5"), ct(5, DIR_BOTH, false));
    assert_eq!(action("-j CT --zone mark"), ct(0, DIR_BOTH, true));
    assert_eq!(action("-j CT --zone MARK"), ct(0, DIR_BOTH, true));
    assert_eq!(action("-j CT --zone-orig 3"), ct(3, DIR_ORIG, false));
    assert_eq!(action("-j CT --zone-reply mark"), ct(0, DIR_REPLY, true));
    // Both directions named: both (iptables-save prints `--zone 2`); the id is the last
    // option's.
    assert_eq!(
        action("-j CT --zone-orig 1 --zone-reply 2"),
        ct(2, DIR_BOTH, false)
    );
    assert_eq!(
        action("-j CT --zone 1 --zone-orig 2"),
        ct(2, DIR_ORIG, false)
    );
    assert_eq!(
        action("-j CT --zone-orig 1 --zone 2"),
        ct(2, DIR_ORIG, false)
    );
    // `mark` once said stays (iptables-save: `--zone-orig mark`).
    assert_eq!(
        action("-j CT --zone mark --zone-orig 5"),
        ct(0, DIR_ORIG, true)
    );
    assert_eq!(
        action("-j CT --zone-reply 7 --zone-orig mark"),
        ct(0, DIR_BOTH, true)
    );
    // A plain CT is the default zone's template; --zone 0 too.
    assert_eq!(action("-j CT"), ct(0, DIR_BOTH, false));
    assert_eq!(action("-j CT --zone 0"), ct(0, DIR_BOTH, false));
    // --notrack with a zone loads, and the kernel leaves the packet untracked.
    assert_eq!(action("-j CT --notrack --zone 1"), Action::NoTrack);
    assert_eq!(action("-j CT --zone 1 --notrack"), Action::NoTrack);
    // Matches before it, as Neutron writes them.
    assert_eq!(
        action("-i in0 -m comment --comment \"Set zone for 4097\" -j CT --zone 4097"),
        ct(4097, DIR_BOTH, false)
    );
}

#[test]
fn zone_options_refused_as_iptables_refuses_them() {
    // (rule, the word the error is at, 1-based, the message).
    let bad = [
        ("-j CT --zone 65536", 4, "invalid zone ID \"65536\""),
        ("-j CT --zone -1", 4, "invalid zone ID \"-1\""),
        ("-j CT --zone abc", 4, "invalid zone ID \"abc\""),
        ("-j CT --zone 08", 4, "invalid zone ID \"08\""),
        ("-j CT --zone 1.5", 4, "invalid zone ID \"1.5\""),
        ("-j CT --zone 5,6", 4, "invalid zone ID \"5,6\""),
        ("-j CT --zone-orig x", 4, "invalid zone ID \"x\""),
        ("-j CT --zone-reply 70000", 4, "invalid zone ID \"70000\""),
        (
            "-j CT --zone 1 --zone 2",
            5,
            "CT: option --zone can only be used once",
        ),
        (
            "-j CT --zone-orig 1 --zone-orig 2",
            5,
            "option --zone-orig can only be used once",
        ),
        (
            "-j CT --notrack --notrack",
            4,
            "option --notrack can only be used once",
        ),
        ("-j CT --zone", 3, "option --zone needs a value"),
        ("-j CT ! --zone 1", 4, "! is not allowed before --zone"),
        ("-j CT --helper ftp", 3, "unsupported option --helper"),
        ("-j CT --ctevents new", 3, "unsupported option --ctevents"),
        ("-j CT --expevents new", 3, "unsupported option --expevents"),
        ("-j CT --timeout t", 3, "unsupported option --timeout"),
        (
            "-j ACCEPT --zone 1",
            3,
            "unsupported option --zone (it needs -j CT before it)",
        ),
    ];
    for (rule, word, want) in bad {
        let e = error(&raw(rule));
        let at = format!("t.rules:4:{}: ", 14 + word_col(rule, word - 1));
        assert!(
            e.starts_with(&at) && e.contains(want),
            "{rule}: {e:?}, want {at}{want}"
        );
    }
    // Only in the raw table, as xt_CT registers it.
    for table in ["filter", "mangle", "nat"] {
        let chain = if table == "filter" {
            "FORWARD"
        } else {
            "PREROUTING"
        };
        let text = format!("*{table}\n:{chain} ACCEPT [0:0]\n-A {chain} -j CT --zone 1\nCOMMIT\n");
        let e = error(&text);
        // (mangle's own refusal comes first there: it holds only what Rampart applies.)
        assert!(
            e.contains("target CT is only valid in the raw table")
                || e.contains("target CT in the mangle table is not supported"),
            "{table}: {e}"
        );
    }
}
