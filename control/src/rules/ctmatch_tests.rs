//! The connection matches (`-m conntrack`'s options besides `--ctstate`, `-m connbytes`):
//! what the parser takes and refuses, and their meaning on built frames judged through the
//! bridge with connection tracking, packet by packet as netfilter judges them.

use super::tests::{assert_refused, compile, wrap};
use super::*;
use dataplane::classify::ctmatch::{status, BytesDir, BytesMode};
use dataplane::classify::Check;
use dataplane::conntrack::CtState;
use dataplane::filter::Filter;
use dataplane::pipeline::{Bridge, Policy};
use dataplane::track::{Tables, TrackConfig};
use dataplane::verdict::{DropReason, Verdict};
use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
use dataplane::wire::tcp::Flags;
use std::net::Ipv4Addr;

const REFUSED: &[(&str, &str, usize)] = &[
    (
        "-m conntrack ! --ctdir REPLY -j ACCEPT",
        "! is not allowed",
        3,
    ),
    (
        "-m conntrack --ctstatus ASSURED,BOGUS -j ACCEPT",
        "bad --ctstatus",
        3,
    ),
    (
        "-m conntrack --ctexpire 10:5 -j ACCEPT",
        "minimum is above",
        3,
    ),
    ("-m conntrack --ctexpire x -j ACCEPT", "invalid seconds", 3),
    (
        "-m conntrack --ctorigsrc 10.0.0.0/33 -j ACCEPT",
        "invalid prefix length",
        3,
    ),
    (
        "-m conntrack --ctrepldst 2001:db8::1 -j ACCEPT",
        "IPv6 address",
        3,
    ),
    (
        "-m conntrack --ctorigdstport 80:70 -j ACCEPT",
        "min > max",
        3,
    ),
    ("-m conntrack ! --ctproto all -j ACCEPT", "never match", 4),
    (
        "-m conntrack --ctproto bogus -j ACCEPT",
        "unknown protocol",
        3,
    ),
    (
        "-m conntrack --ctdir REPLY --ctdir ORIGINAL -j ACCEPT",
        "only one --ctdir",
        4,
    ),
    ("-m conntrack -j ACCEPT", "-m conntrack needs", 0),
    (
        "-m connbytes --connbytes 10 --connbytes-dir both -j ACCEPT",
        "-m connbytes needs --connbytes-mode",
        0,
    ),
    (
        "-m connbytes --connbytes 10:5 --connbytes-dir both --connbytes-mode bytes -j ACCEPT",
        "first count is above",
        3,
    ),
    (
        "-m connbytes --connbytes 1 --connbytes-dir sideways --connbytes-mode bytes -j ACCEPT",
        "bad --connbytes-dir",
        5,
    ),
    (
        "-m connbytes --connbytes 1 --connbytes-dir both --connbytes-mode BYTES -j ACCEPT",
        "bad --connbytes-mode",
        7,
    ),
    (
        "-m connbytes --connbytes 1 ! --connbytes-dir both --connbytes-mode bytes -j ACCEPT",
        "! is not allowed",
        5,
    ),
    ("--connbytes-dir both -j ACCEPT", "it needs -m connbytes", 0),
    (
        "-m connbytes -j ACCEPT",
        "-m connbytes needs --connbytes",
        0,
    ),
    ("-m quota -j ACCEPT", "-m quota needs --quota", 0),
    ("-m quota --quota 1k -j ACCEPT", "invalid quota", 3),
    ("--quota 10 -j ACCEPT", "it needs -m quota", 0),
    (
        "-m quota --quota 10 --quota 20 -j ACCEPT",
        "only one --quota",
        4,
    ),
];

#[test]
fn refuses_bad_values_at_their_column() {
    for &(rule, msg, word) in REFUSED {
        let text = wrap(&format!("-A FORWARD {rule}"));
        assert_refused(&text, Family::V4, 6, rule, msg, word);
    }
    // The nat table is judged without the connection's view.
    let text = "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
                -A PREROUTING -m conntrack --ctdir ORIGINAL -j ACCEPT\nCOMMIT\n";
    let e = compile(text, Family::V4).unwrap_err();
    assert!(
        e[0].message.contains("not supported in the nat table"),
        "{e:?}"
    );
    assert_eq!((e[0].line, e[0].col), (4, 15), "{e:?}");
    // Nor are mangle chains.
    let text = "*mangle\n:FORWARD ACCEPT [0:0]\n\
                -A FORWARD -m connbytes --connbytes 10 --connbytes-dir both --connbytes-mode packets -j MARK --set-mark 1\nCOMMIT\n";
    let e = compile(text, Family::V4).unwrap_err();
    assert!(
        e[0].message.contains("not supported in the mangle table"),
        "{e:?}"
    );
}

/// The checks of the rule set's first rule.
fn first_checks(rs: &RuleSet) -> Vec<Check> {
    rs.rules[0]
        .checks
        .as_ref()
        .map(|c| c.to_vec())
        .unwrap_or_default()
}

#[test]
fn takes_iptables_save_spellings() {
    let rs = compile(
        &wrap(
            "-A FORWARD -m conntrack --ctstate ESTABLISHED --ctdir REPLY --ctproto tcp \
             --ctorigsrc 10.0.0.0/8 ! --ctorigdst 192.0.2.0/255.255.255.0 --ctreplsrc 10.1.0.5 \
             --ctrepldst 10.0.0.2/32 --ctorigsrcport 1024:65535 ! --ctorigdstport 22 \
             --ctreplsrcport 8080 --ctrepldstport 1:2 ! --ctstatus SEEN_REPLY,confirmed \
             --ctexpire 10:20 -j ACCEPT",
        ),
        Family::V4,
    )
    .expect("compiles");
    let Check::Ct(m) = &first_checks(&rs)[0] else {
        panic!("{:?}", rs.rules[0]);
    };
    assert!(m.has_state);
    assert_eq!(m.dir, Some(true));
    assert_eq!(m.proto, Some((6, false)));
    assert!(m.addrs.iter().all(Option::is_some));
    assert!(m.addrs[1].is_some_and(|a| a.invert) && !m.addrs[0].unwrap().invert);
    assert_eq!(m.ports[0], Some((1024, 65535, false)));
    assert_eq!(m.ports[1], Some((22, 22, true)));
    assert_eq!(
        m.status,
        Some((status::SEEN_REPLY | status::CONFIRMED, true))
    );
    assert_eq!(m.expire, Some((10, 20, false)));
    // The time left and ASSURED change during a connection's life: not cached. The rest is.
    assert!(!rs.cacheable && rs.reads_conn);
    let cacheable = |rule: &str| {
        compile(&wrap(&format!("-A FORWARD {rule} -j ACCEPT")), Family::V4)
            .unwrap()
            .cacheable
    };
    assert!(!cacheable("-m conntrack --ctstatus ASSURED"));
    assert!(!cacheable("-m conntrack ! --ctstatus SEEN_REPLY,ASSURED"));
    assert!(cacheable(
        "-m conntrack --ctstatus SEEN_REPLY,CONFIRMED --ctdir REPLY --ctorigdstport 80 \
         --ctproto tcp --ctreplsrc 10.0.0.1"
    ));
    // --ctstate alone is the classifier's field: no check, nothing read.
    let rs = compile(
        &wrap("-A FORWARD -m conntrack --ctstate NEW -j ACCEPT"),
        Family::V4,
    )
    .unwrap();
    assert!(rs.rules[0].checks.is_none() && rs.cacheable && !rs.reads_conn);
    // `!` on --connbytes swaps the ends, as libxt_connbytes stores it; a count alone is open.
    let rs = compile(
        &wrap(
            "-A FORWARD -m connbytes ! --connbytes 10 --connbytes-dir reply --connbytes-mode \
             avgpkt -j ACCEPT\n-A FORWARD -m connbytes --connbytes 5:6 --connbytes-dir both \
             --connbytes-mode packets -j ACCEPT",
        ),
        Family::V4,
    )
    .unwrap();
    assert!(!rs.cacheable);
    let Check::ConnBytes(cb) = first_checks(&rs)[0] else {
        panic!()
    };
    assert_eq!(
        (cb.from, cb.to, cb.dir, cb.mode),
        (u64::MAX, 10, BytesDir::Reply, BytesMode::AvgPkt)
    );
    // ip6tables: addresses of the family.
    let text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                -A FORWARD -m conntrack --ctorigdst 2001:db8::/32 -j ACCEPT\nCOMMIT\n";
    compile(text, Family::V6).expect("IPv6 compiles");
}

// ---------------------------------------------------------------- on frames

const INSIDE: u16 = 0;
const OUTSIDE: u16 = 1;
const SEC: u64 = 1_000_000_000;
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
const FWD_IN: Verdict = Verdict::Forward(OUTSIDE);
const FWD_OUT: Verdict = Verdict::Forward(INSIDE);
const DROPPED: Verdict = Verdict::Drop(DropReason::RuleDrop);

/// A bridge between `inside` and `outside` filtering with FORWARD DROP and `body`.
struct Rig {
    bridge: Bridge,
    filter: Filter,
    tables: Tables,
    now: u64,
}

impl Rig {
    fn new(body: &str) -> Rig {
        let text = wrap(body);
        let ports = ["inside".to_string(), "outside".to_string()];
        let parsed = parse_iptables("t.rules", &text, Family::V4, &ports).expect("parses");
        Rig {
            bridge: Bridge::new(&[(INSIDE, OUTSIDE)], Policy::Forward, Policy::Drop),
            filter: Filter {
                v4: Some(compile_parsed(&parsed, Hook::Forward).expect("compiles")),
                ..Filter::default()
            },
            tables: Tables::new(&TrackConfig::new(64)),
            now: SEC,
        }
    }

    /// One frame from `ingress`, `after_ns` after the previous one.
    fn send_after(&mut self, after_ns: u64, ingress: u16, frame: &[u8]) -> (Verdict, CtState) {
        self.now += after_ns;
        let o = self.bridge.judge(
            &self.filter,
            Some(&mut self.tables),
            ingress,
            &mut frame.to_vec(),
            self.now,
            |_, _, _| {},
        );
        (o.verdict, o.state.expect("tracked"))
    }

    fn send(&mut self, ingress: u16, frame: &[u8]) -> Verdict {
        self.send_after(SEC / 1000, ingress, frame).0
    }

    /// The verdicts of a handshake from the client's `port` to the server's `dport`, and of
    /// a data segment each way after it.
    fn conversation(&mut self, port: u16, dport: u16) -> [Verdict; 5] {
        [
            self.send(
                INSIDE,
                &tcp(CLIENT, SERVER, port, dport, Flags::SYN, 100, 0),
            ),
            self.send(
                OUTSIDE,
                &tcp(
                    SERVER,
                    CLIENT,
                    dport,
                    port,
                    Flags::SYN | Flags::ACK,
                    500,
                    101,
                ),
            ),
            self.send(
                INSIDE,
                &tcp(CLIENT, SERVER, port, dport, Flags::ACK, 101, 501),
            ),
            self.send(
                INSIDE,
                &tcp(CLIENT, SERVER, port, dport, Flags::ACK, 101, 501),
            ),
            self.send(
                OUTSIDE,
                &tcp(SERVER, CLIENT, dport, port, Flags::ACK, 501, 101),
            ),
        ]
    }
}

fn tcp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: Flags,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    FrameSpec::new(
        IpSpec::v4(src, dst),
        L4Spec::tcp_segment(sport, dport, flags, seq, ack, b""),
    )
    .build()
}

fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    FrameSpec::new(IpSpec::v4(src, dst), L4Spec::udp(sport, dport, b"query")).build()
}

#[test]
fn ctdir_sees_the_packets_direction_and_is_cached_per_direction() {
    let mut r = Rig::new(
        "-A FORWARD -m conntrack --ctstate ESTABLISHED --ctdir REPLY -j ACCEPT\n\
         -A FORWARD -m conntrack --ctstate NEW -j ACCEPT",
    );
    assert!(r.filter.v4.as_ref().unwrap().cacheable);
    // The SYN is NEW; the answers pass, the client's established segments do not (twice:
    // the second from the cached verdict of its direction).
    assert_eq!(
        r.conversation(40000, 80),
        [FWD_IN, FWD_OUT, DROPPED, DROPPED, FWD_OUT]
    );
    assert_eq!(
        r.send(
            OUTSIDE,
            &tcp(SERVER, CLIENT, 80, 40000, Flags::ACK, 501, 101)
        ),
        FWD_OUT
    );
}

#[test]
fn ctstatus_follows_confirmation_reply_and_assurance() {
    // Unconfirmed: only the first packet. SEEN_REPLY: from the first answer on. ASSURED:
    // from the handshake's third packet on (nf_conntrack_proto_tcp sets it on the ACK that
    // ends SYN_RECV, before the filter sees it).
    let mut r = Rig::new(
        "-A FORWARD -m conntrack --ctstatus ASSURED -j DROP\n\
         -A FORWARD -m conntrack ! --ctstatus CONFIRMED -j ACCEPT\n\
         -A FORWARD -m conntrack --ctstatus SEEN_REPLY -j ACCEPT",
    );
    assert!(!r.filter.v4.as_ref().unwrap().cacheable);
    assert_eq!(
        r.conversation(40000, 80),
        [FWD_IN, FWD_OUT, DROPPED, DROPPED, DROPPED]
    );
    // NONE names no bit: `--ctstatus NONE` never matches, its negation always does; a
    // packet without a connection matches neither (INVALID: SYN with FIN).
    let mut r = Rig::new("-A FORWARD -m conntrack ! --ctstatus NONE -j ACCEPT");
    assert_eq!(
        r.conversation(40001, 80),
        [FWD_IN, FWD_OUT, FWD_IN, FWD_IN, FWD_OUT]
    );
    let bad = tcp(CLIENT, SERVER, 40002, 80, Flags::SYN | Flags::FIN, 1, 0);
    assert_eq!(r.send_after(1, INSIDE, &bad), (DROPPED, CtState::Invalid));
    // ... unless the match has --ctstate, which alone decides then (xt_conntrack returns
    // after the state test when there is no connection).
    let mut r = Rig::new(
        "-A FORWARD -m conntrack --ctstate INVALID --ctstatus ASSURED --ctdir REPLY -j ACCEPT",
    );
    assert_eq!(r.send_after(1, INSIDE, &bad), (FWD_IN, CtState::Invalid));
    // UDP: a stream (assured) once a reply was seen and the connection is 2 s old.
    let mut r =
        Rig::new("-A FORWARD -m conntrack --ctstatus ASSURED -j DROP\n-A FORWARD -j ACCEPT");
    let q = udp(CLIENT, SERVER, 5000, 53);
    let a = udp(SERVER, CLIENT, 53, 5000);
    assert_eq!(r.send(INSIDE, &q), FWD_IN);
    assert_eq!(r.send(OUTSIDE, &a), FWD_OUT);
    assert_eq!(r.send(INSIDE, &q), FWD_IN);
    assert_eq!(r.send_after(3 * SEC, INSIDE, &q).0, DROPPED);
}

#[test]
fn tuples_are_the_connections_not_the_packets() {
    // The original tuple names the client's connection to port 80, so its answers match
    // too (-d and --dport would not).
    let mut r = Rig::new(
        "-A FORWARD -m conntrack --ctproto tcp --ctorigsrc 10.0.0.0/24 --ctorigdst 192.0.2.80 \
         --ctorigdstport 80 --ctorigsrcport 1024:65535 --ctreplsrc 192.0.2.80/32 \
         ! --ctrepldst 10.9.0.0/16 --ctreplsrcport 80 --ctrepldstport 40000:40010 -j ACCEPT",
    );
    assert_eq!(
        r.conversation(40000, 80),
        [FWD_IN, FWD_OUT, FWD_IN, FWD_IN, FWD_OUT]
    );
    assert_eq!(
        r.conversation(40000, 81),
        [DROPPED, DROPPED, DROPPED, DROPPED, DROPPED]
    );
    assert_eq!(
        r.conversation(40011, 80),
        [DROPPED, DROPPED, DROPPED, DROPPED, DROPPED]
    );
    let mut r = Rig::new("-A FORWARD -m conntrack ! --ctproto tcp -j ACCEPT");
    assert_eq!(r.conversation(40000, 80)[0], DROPPED);
    assert_eq!(r.send(INSIDE, &udp(CLIENT, SERVER, 5000, 53)), FWD_IN);
}

#[test]
fn ctexpire_reads_the_timeout_the_packet_set() {
    // The first packet's connection is not confirmed: 0 s left (Linux keeps a relative
    // timeout there, which nf_ct_expires reads as 0). The SYN-ACK sets SYN_RECV's 60 s,
    // the handshake's end ESTABLISHED's 5 days.
    let mut r = Rig::new(
        "-A FORWARD -m conntrack --ctexpire 0 -j ACCEPT\n\
         -A FORWARD -m conntrack --ctexpire 31:60 -j ACCEPT\n\
         -A FORWARD -m conntrack ! --ctexpire 0:431999 -j ACCEPT",
    );
    assert_eq!(
        r.conversation(40000, 80),
        [FWD_IN, FWD_OUT, FWD_IN, FWD_IN, FWD_OUT]
    );
    let mut r = Rig::new("-A FORWARD -m conntrack --ctexpire 1:59 -j ACCEPT");
    assert_eq!(
        r.conversation(40000, 80),
        [DROPPED, DROPPED, DROPPED, DROPPED, DROPPED]
    );
}

#[test]
fn connbytes_counts_the_packet_at_hand() {
    // Counted in conntrack before the filter: the SYN is packet 1.
    let mut r = Rig::new(
        "-A FORWARD -m connbytes --connbytes 0:3 --connbytes-dir both --connbytes-mode packets \
         -j ACCEPT",
    );
    assert_eq!(
        r.conversation(40000, 80),
        [FWD_IN, FWD_OUT, FWD_IN, DROPPED, DROPPED]
    );
    // One direction; `!` (outside 0..=1): the client's second packet on.
    let mut r = Rig::new(
        "-A FORWARD -m connbytes ! --connbytes 0:1 --connbytes-dir original --connbytes-mode \
         packets -j ACCEPT\n-A FORWARD -m conntrack --ctstate NEW -j ACCEPT\n\
         -A FORWARD -m conntrack --ctdir REPLY -j ACCEPT",
    );
    assert_eq!(
        r.conversation(40000, 80),
        [FWD_IN, FWD_OUT, FWD_IN, FWD_IN, FWD_OUT]
    );
    // Bytes and the average: a bare TCP segment is a 40-byte datagram.
    let mut r = Rig::new(
        "-A FORWARD -m connbytes --connbytes 40:40 --connbytes-dir both --connbytes-mode avgpkt \
         -m connbytes --connbytes 0:120 --connbytes-dir both --connbytes-mode bytes -j ACCEPT",
    );
    assert_eq!(
        r.conversation(40000, 80),
        [FWD_IN, FWD_OUT, FWD_IN, DROPPED, DROPPED]
    );
}

#[test]
fn quota_counts_ip_bytes_once_per_rule_and_stays_empty() {
    // Bare TCP segments are 40-byte datagrams: 100 bytes take two, the third finds 20 left
    // and empties the counter, so a later smaller packet does not pass either.
    let mut r = Rig::new("-A FORWARD -m quota --quota 100 -j ACCEPT");
    assert!(!r.filter.v4.as_ref().unwrap().cacheable);
    assert_eq!(
        r.conversation(40000, 80),
        [FWD_IN, FWD_OUT, DROPPED, DROPPED, DROPPED]
    );
    // `!`: matches once the quota is spent (the first 80 bytes pass the second rule).
    let mut r = Rig::new("-A FORWARD -m quota ! --quota 80 -j DROP\n-A FORWARD -j ACCEPT");
    assert_eq!(
        r.conversation(40000, 80),
        [FWD_IN, FWD_OUT, DROPPED, DROPPED, DROPPED]
    );
    // On a jump the quota is asked once per packet, not by each inlined rule (the first of
    // which fails on its length after the jump's quota was drawn).
    let mut r = Rig::new(
        "-A FORWARD -m quota --quota 80 -j user\n\
         -A user -m length --length 0:10 -j ACCEPT\n-A user -j ACCEPT",
    );
    assert_eq!(
        r.conversation(40000, 80),
        [FWD_IN, FWD_OUT, DROPPED, DROPPED, DROPPED]
    );
    // One counter per iptables rule, whichever flat rule (`-s` alternatives) holds it.
    let mut r = Rig::new("-A FORWARD -s 10.0.0.0/8,192.0.2.0/24 -m quota --quota 120 -j ACCEPT");
    assert_eq!(
        r.conversation(40000, 80),
        [FWD_IN, FWD_OUT, FWD_IN, DROPPED, DROPPED]
    );
}
