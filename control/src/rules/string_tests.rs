//! `-m string`: what the parser takes and refuses (libxt_string's options and its hex
//! syntax), and the match on hand-built frames, whole and fragmented.

use super::parse::string_hex;
use super::tests::{assert_refused, compile, wrap};
use super::*;
use dataplane::classify::string::Algo;
use dataplane::classify::{Action, Check, Wire};
use dataplane::filter::packet_meta;
use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
use std::net::{Ipv4Addr, Ipv6Addr};

fn set(body: &str, family: Family) -> RuleSet {
    let text = format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{body}\nCOMMIT\n"
    );
    compile(&text, family).unwrap_or_else(|e| panic!("{e:?}"))
}

fn the_match(rs: &RuleSet) -> dataplane::classify::string::StringMatch {
    rs.rules
        .iter()
        .flat_map(|r| r.checks.iter().flat_map(|c| c.iter()))
        .find_map(|c| match c {
            Check::String(m) => Some((**m).clone()),
            _ => None,
        })
        .expect("a string check")
}

/// Judges `frame` (a whole datagram's first fragment when `whole_len` is not 0).
fn judge(rs: &RuleSet, frame: &[u8], whole_len: u16) -> Action {
    let info = dataplane::wire::parse_frame(frame).expect("the test frame parses");
    let meta = packet_meta(frame, &info, 0, 2).expect("an IP frame");
    let w = Wire {
        whole_len,
        ..Wire::of(frame, &info, 0)
    };
    rs.judge(&meta, &w, |_, _, _| {}).action
}

fn spec(v6: bool, l4: L4Spec) -> FrameSpec {
    let ip = if v6 {
        IpSpec::v6(
            Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 5),
            Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2),
        )
    } else {
        IpSpec::v4(Ipv4Addr::new(203, 0, 113, 5), Ipv4Addr::new(10, 1, 0, 2))
    };
    FrameSpec::new(ip, l4)
}

/// A DNS query for `name` (dotted), as its question section writes it.
fn dns_query(name: &str) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

#[test]
fn accepts_string_as_iptables_save_writes_it() {
    for (rule, algo, pattern, from, to, icase, invert) in [
        (
            "-p udp -m udp --dport 53 -m string --hex-string \"|076578616d706c6503636f6d00|\" --algo bm --to 65535 -j DROP",
            Algo::Bm,
            b"\x07example\x03com\x00".to_vec(),
            0,
            65535,
            false,
            false,
        ),
        (
            "-m string --string \"Host: a.test\" --algo kmp --from 40 --to 1500 --icase -j DROP",
            Algo::Kmp,
            b"Host: a.test".to_vec(),
            40,
            1500,
            true,
            false,
        ),
        (
            "-m string ! --string abc --algo bm -j DROP",
            Algo::Bm,
            b"abc".to_vec(),
            0,
            65535,
            false,
            true,
        ),
        (
            "-m string --algo kmp --from 0x10 --hex-string |00|a|ff| -j DROP",
            Algo::Kmp,
            b"\x00a\xff".to_vec(),
            16,
            65535,
            false,
            false,
        ),
    ] {
        let rs = set(&format!("-A FORWARD {rule}"), Family::V4);
        let m = the_match(&rs);
        assert_eq!(
            (m.algo, m.pattern.clone(), m.from, m.to, m.icase, m.invert),
            (algo, pattern, from, to, icase, invert),
            "{rule}"
        );
        assert!(rs.reads_payload && !rs.cacheable, "{rule}");
    }
    // Rule sets without it read no payload.
    assert!(!set("-A FORWARD -p tcp -j ACCEPT", Family::V4).reads_payload);
    // The same in ip6tables, and in the raw and mangle tables.
    let rs = set(
        "-A FORWARD -m string --string x --algo bm -j DROP",
        Family::V6,
    );
    assert!(rs.reads_payload);
    for table in ["raw", "mangle"] {
        let text = format!(
            "*{table}\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -m string --string x --algo kmp -j DROP\nCOMMIT\n"
        );
        compile_iptables(
            "t.rules",
            &text,
            Family::V4,
            &super::tests::ports(),
            Hook::Forward,
        )
        .unwrap_or_else(|e| panic!("{table}: {e:?}"));
    }
}

#[test]
fn hex_strings_as_libxt_string_reads_them() {
    for (text, want) in [
        ("|41 42|", &b"AB"[..]),
        ("|4142|", b"AB"),
        ("a|41|b", b"aAb"),
        ("| 41|", b"A"),
        ("\\|x", b"|x"),
        ("|41|\\", b"A\\"),
        // The character after a closing `|` is text, even a `|`.
        ("|41||42|", b"A|42"),
        ("abc|", b"abc"),
        ("|ff 00 7f|", b"\xff\x00\x7f"),
    ] {
        assert_eq!(string_hex(text).as_deref(), Ok(want), "{text:?}");
    }
    for (text, err) in [
        ("", "at least one char"),
        ("|4|", "Invalid hex block"),
        ("|41", "Invalid hex block"),
        ("|4", "Odd number"),
        ("|4g|", "Invalid hex char 'g'"),
        ("|41  42|", "Invalid hex char ' '"),
        ("|41\\42|", "literals in hex"),
        ("|\\41|", "Invalid hex char '\\'"),
        ("ab\\", "Bad literal placement"),
    ] {
        let e = string_hex(text).expect_err(text);
        assert!(e.contains(err), "{text:?}: {e}");
    }
    // 128 bytes at most; libxt_string counts before each character it reads, so a closing
    // `|` after the 128th byte is one too many (127 hex bytes and a text byte make 128).
    let max = format!("|{}|A", "41".repeat(127));
    assert_eq!(string_hex(&max).unwrap().len(), 128);
    assert_eq!(
        string_hex(&format!("|{}|", "41".repeat(127)))
            .unwrap()
            .len(),
        127
    );
    let over = format!("|{}|", "41".repeat(128));
    assert!(string_hex(&over).unwrap_err().contains("too long"));
    assert!(string_hex(&"a".repeat(129))
        .unwrap_err()
        .contains("too long"));
}

const REFUSED: &[(&str, &str, usize)] = &[
    ("-m string --string x -j DROP", "needs --algo", 0),
    (
        "-m string --algo bm -j DROP",
        "needs --string or --hex-string",
        0,
    ),
    (
        "-m string --algo xyz --string x -j DROP",
        "unknown --algo",
        3,
    ),
    (
        "-m string --algo fsm --string x -j DROP",
        "fsm is not supported",
        3,
    ),
    (
        "-m string --algo bm --string x --hex-string |41| -j DROP",
        "cannot be combined",
        6,
    ),
    (
        "-m string --algo bm --string x --string y -j DROP",
        "only one --string",
        6,
    ),
    (
        "-m string --algo bm --string x --from 65536 -j DROP",
        "invalid",
        7,
    ),
    (
        "-m string --algo bm --string x --to -1 -j DROP",
        "invalid",
        7,
    ),
    (
        "-m string --algo bm --string x --from 100 --to 99 -j DROP",
        "past --to",
        7,
    ),
    (
        "-m string --algo bm ! --from 1 --string x -j DROP",
        "! is not allowed",
        5,
    ),
    (
        "-m string --algo bm --string x ! --icase -j DROP",
        "! is not allowed",
        7,
    ),
    (
        "-m string ! --algo bm --string x -j DROP",
        "! is not allowed",
        3,
    ),
    (
        "-m string --algo bm --hex-string |4g| -j DROP",
        "Invalid hex char",
        5,
    ),
    ("-m string --algo bm --hex-string | -j DROP", "empty", 5),
    ("--algo bm -j DROP", "unsupported option --algo", 0),
];

#[test]
fn refuses_bad_string_options_at_their_column() {
    for &(rule, msg, word) in REFUSED {
        let text = wrap(&format!("-A FORWARD {rule}"));
        assert_refused(&text, Family::V4, 6, rule, msg, word);
    }
    let long = "x".repeat(129);
    let rule = format!("-m string --algo bm --string {long} -j DROP");
    assert_refused(
        &wrap(&format!("-A FORWARD {rule}")),
        Family::V4,
        6,
        &rule,
        "too long",
        5,
    );
    let ok = format!(
        "-A FORWARD -m string --algo bm --string {} -j DROP",
        &long[1..]
    );
    assert!(compile(&wrap(&ok), Family::V4).is_ok());
    // The nat table judges without the packet's bytes.
    let nat = "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -m string --string x --algo bm -j ACCEPT\nCOMMIT\n";
    assert!(compile(nat, Family::V4).is_err());
}

#[test]
fn dns_names_and_host_headers_on_built_frames() {
    for v6 in [false, true] {
        let fam = if v6 { Family::V6 } else { Family::V4 };
        let rs = set(
            "-A FORWARD -p udp -m udp --dport 53 -m string --hex-string \"|07|example|03|com|00|\" --algo bm -j DROP\n\
             -A FORWARD -p tcp -m string --string \"host: blocked.test\" --algo kmp --icase -j DROP\n\
             -A FORWARD -p udp -m udp --dport 9 -m string ! --string needle --algo kmp -j DROP",
            fam,
        );
        let dns = |name: &str| spec(v6, L4Spec::udp(40000, 53, &dns_query(name))).build();
        assert_eq!(judge(&rs, &dns("www.example.com"), 0), Action::Drop);
        assert_eq!(judge(&rs, &dns("example.com"), 0), Action::Drop);
        assert_eq!(judge(&rs, &dns("www.example.org"), 0), Action::Accept);
        assert_eq!(judge(&rs, &dns("www.notexample.com"), 0), Action::Accept);
        let http = |req: &[u8]| {
            spec(
                v6,
                L4Spec::tcp_segment(40001, 80, dataplane::wire::tcp::Flags::ACK, 1, 1, req),
            )
            .build()
        };
        let get = |host: &str| format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes();
        assert_eq!(judge(&rs, &http(&get("BLOCKED.test")), 0), Action::Drop);
        assert_eq!(judge(&rs, &http(&get("open.test")), 0), Action::Accept);
        let udp9 = |p: &[u8]| spec(v6, L4Spec::udp(40000, 9, p)).build();
        assert_eq!(judge(&rs, &udp9(b"a needle here"), 0), Action::Accept);
        assert_eq!(judge(&rs, &udp9(b"a pin here"), 0), Action::Drop);
        // Ethernet padding after a short datagram is not searched.
        let mut padded = udp9(b"a");
        padded.extend_from_slice(b"needle");
        assert_eq!(judge(&rs, &padded, 0), Action::Drop);
    }
}

#[test]
fn offsets_count_from_the_network_header() {
    for v6 in [false, true] {
        let fam = if v6 { Family::V6 } else { Family::V4 };
        // The payload starts after the IP and UDP headers; EDGE at payload offset 4.
        let at = if v6 { 52 } else { 32 };
        let f = spec(v6, L4Spec::udp(40000, 9, b"xxxxEDGExxxx")).build();
        for algo in ["bm", "kmp"] {
            for (from, to, hit) in [
                (at, at + 4, true),
                (at, at + 3, false),
                (at + 1, 65535, false),
                (0, at + 4, true),
                (at, at, false),
            ] {
                let rs = set(
                    &format!(
                        "-A FORWARD -m string --string EDGE --algo {algo} --from {from} --to {to} -j DROP"
                    ),
                    fam,
                );
                let want = if hit { Action::Drop } else { Action::Accept };
                assert_eq!(judge(&rs, &f, 0), want, "{algo} {from}..{to} v6 {v6}");
            }
        }
    }
}

/// A pattern split between two fragments: found by kmp, not by bm (Linux searches the
/// reassembled skb block by block, one block per fragment); found by both when inside one
/// fragment. The first fragment judged alone sees only its own bytes.
#[test]
fn patterns_over_fragments_as_the_reassembled_datagram() {
    for v6 in [false, true] {
        let fam = if v6 { Family::V6 } else { Family::V4 };
        let rs = |algo: &str| {
            set(
                &format!("-A FORWARD -m string --string SPLITPAT --algo {algo} -j DROP"),
                fam,
            )
        };
        let (bm, kmp) = (rs("bm"), rs("kmp"));
        // Fragments of 32 L4 bytes: the UDP header and 24 bytes of payload in the first.
        let mut payload = vec![b'.'; 64];
        payload[20..28].copy_from_slice(b"SPLITPAT");
        let split = spec(v6, L4Spec::udp(40000, 9, &payload)).fragments(32);
        assert_eq!(split.len(), 3);
        let mut payload = vec![b'.'; 64];
        payload[30..38].copy_from_slice(b"SPLITPAT");
        let inside = spec(v6, L4Spec::udp(40000, 9, &payload)).fragments(32);
        let whole_len = (if v6 { 40 } else { 20 } + 8 + 64) as u16;
        for (frames, bm_hit) in [(&split, false), (&inside, true)] {
            dataplane::classify::payload::gather(frames.iter().map(|f| &f[..]));
            let want = |hit| if hit { Action::Drop } else { Action::Accept };
            assert_eq!(
                judge(&kmp, &frames[0], whole_len),
                want(true),
                "kmp v6 {v6}"
            );
            assert_eq!(
                judge(&bm, &frames[0], whole_len),
                want(bm_hit),
                "bm v6 {v6}"
            );
            dataplane::classify::payload::clear();
            // Without the gathered datagram only the first fragment is read.
            assert_eq!(judge(&kmp, &frames[0], whole_len), Action::Accept);
        }
        // The gathered datagram is the reassembled one: headers fixed up, the Fragment header
        // gone, the length the whole's, so offsets count as over the unfragmented datagram.
        let at = if v6 { 48 } else { 28 } + 20;
        let win = set(
            &format!(
                "-A FORWARD -m string --string SPLITPAT --algo kmp --from {at} --to {} -j DROP",
                at + 8
            ),
            fam,
        );
        dataplane::classify::payload::gather(split.iter().map(|f| &f[..]));
        assert_eq!(judge(&win, &split[0], whole_len), Action::Drop);
        dataplane::classify::payload::clear();
    }
}
