//! The pipeline with connection tracking, driven by compiled iptables-save rule sets: each
//! packet's verdict and conntrack state in sequence, as netfilter gives them.

use crate::rules::{compile_parsed, compile_raw, parse_iptables, Hook};
use dataplane::conntrack::CtState;
use dataplane::filter::Filter;
use dataplane::pipeline::{Bridge, Policy};
use dataplane::track::{Tables, TrackConfig};
use dataplane::verdict::{DropReason, Verdict};
use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
use dataplane::wire::icmpv4::msg_type;
use dataplane::wire::tcp::Flags;
use dataplane::wire::Family;
use std::net::Ipv4Addr;

const INSIDE: u16 = 0;
const OUTSIDE: u16 = 1;
const SEC: u64 = 1_000_000_000;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);

/// Replies and related traffic in; new connections out to TCP 80 and UDP 53 only.
const STATEFUL: &str = "*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -m conntrack --ctstate INVALID -j DROP
-A FORWARD -i inside -p tcp --dport 80 -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -i inside -p udp --dport 53 -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -m conntrack --ctstate UNTRACKED -j ACCEPT
COMMIT
";

struct Rig {
    bridge: Bridge,
    filter: Filter,
    tables: Tables,
    now: u64,
}

impl Rig {
    fn new(rules: &str, capacity: u32) -> Rig {
        let ports = ["inside".to_string(), "outside".to_string()];
        let parsed = parse_iptables("test.rules", rules, Family::V4, &ports).expect("parses");
        let filter = Filter {
            v4: Some(compile_parsed(&parsed, Hook::Forward).expect("compiles")),
            raw_v4: compile_raw(&parsed).expect("raw compiles"),
            ..Filter::default()
        };
        Rig {
            bridge: Bridge::new(&[(INSIDE, OUTSIDE)], Policy::Forward, Policy::Drop),
            filter,
            tables: Tables::new(&TrackConfig::new(capacity)),
            now: SEC,
        }
    }

    /// A TCP connection from the client's `port` to the server's port 80, opened with the
    /// three packets of a handshake (each forwarded): assured once done.
    fn handshake(&mut self, port: u16) {
        let syn = tcp(CLIENT, SERVER, port, 80, Flags::SYN, 100, 0, b"");
        assert_eq!(self.send(INSIDE, &syn).0, FWD_IN);
        let synack = tcp(
            SERVER,
            CLIENT,
            80,
            port,
            Flags::SYN | Flags::ACK,
            500,
            101,
            b"",
        );
        assert_eq!(self.send(OUTSIDE, &synack).0, FWD_OUT);
        let ack = tcp(CLIENT, SERVER, port, 80, Flags::ACK, 101, 501, b"");
        assert_eq!(self.send(INSIDE, &ack).0, FWD_IN);
    }

    /// One frame from `ingress`, a millisecond after the previous one.
    fn send(&mut self, ingress: u16, frame: &[u8]) -> (Verdict, Option<CtState>) {
        self.now += SEC / 1000;
        let o = self.bridge.judge(
            &self.filter,
            Some(&mut self.tables),
            ingress,
            &mut frame.to_vec(),
            self.now,
            |_, _, _| {},
        );
        (o.verdict, o.state)
    }

    /// Holds `frags` as a worker does and judges the datagram they make once it is whole (its
    /// fragments in offset order): their verdicts in that order, none while it is not whole.
    fn send_datagram(
        &mut self,
        ingress: u16,
        frags: &[Vec<u8>],
    ) -> Vec<(Verdict, Option<CtState>)> {
        let mut held = dataplane::conntrack::frag::Reassembly::new(self.tables.hold);
        for f in frags {
            let info = dataplane::wire::parse_frame(f).expect("parses");
            held.hold(
                f.clone(),
                |f| f.as_slice(),
                &info,
                self.now,
                |_, e| panic!("held fragment dropped: {e:?}"),
            );
        }
        let mut out = Vec::new();
        let mut whole = Vec::new();
        while let Some(w) = held.take_whole(usize::MAX, |f| whole.push(f)) {
            self.tables.whole = Some(w);
            for f in whole.drain(..) {
                out.push(self.send(ingress, &f));
            }
            self.tables.whole = None;
        }
        out
    }
}

#[allow(clippy::too_many_arguments)]
fn tcp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: Flags,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    FrameSpec::new(
        IpSpec::v4(src, dst),
        L4Spec::tcp_segment(sport, dport, flags, seq, ack, payload),
    )
    .build()
}

fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    FrameSpec::new(IpSpec::v4(src, dst), L4Spec::udp(sport, dport, b"query")).build()
}

/// An ICMP error from `from` quoting `quoted` (an Ethernet frame; its IP datagram is quoted).
fn icmp_error(from: Ipv4Addr, to: Ipv4Addr, ty: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
    FrameSpec::new(
        IpSpec::v4(from, to),
        L4Spec::Icmp {
            ty,
            code,
            ident: 0,
            seq: 0,
            payload: quoted[14..].to_vec(),
        },
    )
    .build()
}

const FWD_IN: Verdict = Verdict::Forward(OUTSIDE);
const FWD_OUT: Verdict = Verdict::Forward(INSIDE);
const DROPPED: Verdict = Verdict::Drop(DropReason::RuleDrop);

#[test]
fn tcp_connection_is_new_then_established_and_replies_come_back() {
    let mut r = Rig::new(STATEFUL, 1024);
    let (a, b) = (1000u32, 5000u32);
    let syn = tcp(CLIENT, SERVER, 40000, 80, Flags::SYN, a, 0, b"");
    assert_eq!(r.send(INSIDE, &syn), (FWD_IN, Some(CtState::New)));
    let synack = tcp(
        SERVER,
        CLIENT,
        80,
        40000,
        Flags::SYN | Flags::ACK,
        b,
        a + 1,
        b"",
    );
    assert_eq!(
        r.send(OUTSIDE, &synack),
        (FWD_OUT, Some(CtState::Established))
    );
    let ack = tcp(CLIENT, SERVER, 40000, 80, Flags::ACK, a + 1, b + 1, b"");
    assert_eq!(r.send(INSIDE, &ack), (FWD_IN, Some(CtState::Established)));
    let data = tcp(
        CLIENT,
        SERVER,
        40000,
        80,
        Flags::ACK | Flags::PSH,
        a + 1,
        b + 1,
        b"GET /",
    );
    assert_eq!(r.send(INSIDE, &data), (FWD_IN, Some(CtState::Established)));
    let reply = tcp(
        SERVER,
        CLIENT,
        80,
        40000,
        Flags::ACK | Flags::PSH,
        b + 1,
        a + 6,
        b"200",
    );
    assert_eq!(
        r.send(OUTSIDE, &reply),
        (FWD_OUT, Some(CtState::Established))
    );
    assert_eq!(r.tables.ct.len(), 1);

    // The server cannot open a connection back.
    let syn_in = tcp(SERVER, CLIENT, 80, 40001, Flags::SYN, 9, 0, b"");
    assert_eq!(r.send(OUTSIDE, &syn_in), (DROPPED, Some(CtState::New)));
    // A SYN/ACK nobody asked for is INVALID.
    let stray = tcp(
        SERVER,
        CLIENT,
        80,
        40002,
        Flags::SYN | Flags::ACK,
        9,
        77,
        b"",
    );
    assert_eq!(r.send(OUTSIDE, &stray), (DROPPED, Some(CtState::Invalid)));
    // A port the rules do not open.
    let ssh = tcp(CLIENT, SERVER, 40003, 22, Flags::SYN, 1, 0, b"");
    assert_eq!(r.send(INSIDE, &ssh), (DROPPED, Some(CtState::New)));
    // Dropped first packets leave no entry.
    assert_eq!(r.tables.ct.len(), 1);
}

#[test]
fn a_dropped_syn_leaves_nothing_for_its_answer() {
    let mut r = Rig::new(STATEFUL, 1024);
    let ssh = tcp(CLIENT, SERVER, 40003, 22, Flags::SYN, 1, 0, b"");
    assert_eq!(r.send(INSIDE, &ssh), (DROPPED, Some(CtState::New)));
    let synack = tcp(
        SERVER,
        CLIENT,
        22,
        40003,
        Flags::SYN | Flags::ACK,
        50,
        2,
        b"",
    );
    assert_eq!(r.send(OUTSIDE, &synack), (DROPPED, Some(CtState::Invalid)));
    assert!(r.tables.ct.is_empty());
}

#[test]
fn udp_reply_and_icmp_errors_are_established_and_related() {
    let mut r = Rig::new(STATEFUL, 1024);
    let q = udp(CLIENT, SERVER, 5353, 53);
    assert_eq!(r.send(INSIDE, &q), (FWD_IN, Some(CtState::New)));
    let a = udp(SERVER, CLIENT, 53, 5353);
    assert_eq!(r.send(OUTSIDE, &a), (FWD_OUT, Some(CtState::Established)));
    // An error about the query, from a router on the way: RELATED.
    let router = Ipv4Addr::new(198, 51, 100, 1);
    let err = icmp_error(router, CLIENT, msg_type::DEST_UNREACHABLE, 3, &q);
    assert_eq!(r.send(OUTSIDE, &err), (FWD_OUT, Some(CtState::Related)));
    // An error quoting a flow nobody opened: INVALID, dropped.
    let other = udp(CLIENT, SERVER, 6000, 53);
    let err = icmp_error(router, CLIENT, msg_type::DEST_UNREACHABLE, 3, &other);
    assert_eq!(r.send(OUTSIDE, &err), (DROPPED, Some(CtState::Invalid)));
    // Unsolicited UDP from outside.
    let scan = udp(SERVER, CLIENT, 53, 7000);
    assert_eq!(r.send(OUTSIDE, &scan), (DROPPED, Some(CtState::New)));
}

#[test]
fn icmp_echo_reply_needs_its_request() {
    let rules = "*filter
:FORWARD DROP [0:0]
-A FORWARD -m state --state ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -i inside -p icmp --icmp-type echo-request -j ACCEPT
COMMIT
";
    let mut r = Rig::new(rules, 1024);
    let ping = FrameSpec::new(IpSpec::v4(CLIENT, SERVER), L4Spec::icmp_echo(7, 1)).build();
    assert_eq!(r.send(INSIDE, &ping), (FWD_IN, Some(CtState::New)));
    let pong = FrameSpec::new(
        IpSpec::v4(SERVER, CLIENT),
        L4Spec::Icmp {
            ty: msg_type::ECHO_REPLY,
            code: 0,
            ident: 7,
            seq: 1,
            payload: Vec::new(),
        },
    )
    .build();
    assert_eq!(
        r.send(OUTSIDE, &pong),
        (FWD_OUT, Some(CtState::Established))
    );
    // A reply with another identifier matches nothing: INVALID (a reply cannot start one).
    let stray = FrameSpec::new(
        IpSpec::v4(SERVER, CLIENT),
        L4Spec::Icmp {
            ty: msg_type::ECHO_REPLY,
            code: 0,
            ident: 8,
            seq: 1,
            payload: Vec::new(),
        },
    )
    .build();
    assert_eq!(r.send(OUTSIDE, &stray), (DROPPED, Some(CtState::Invalid)));
}

#[test]
fn raw_notrack_leaves_packets_untracked_and_raw_drop_drops() {
    let rules = "*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p udp --dport 53 -j NOTRACK
-A PREROUTING -p udp --dport 9 -j DROP
COMMIT
*filter
:FORWARD DROP [0:0]
-A FORWARD -m conntrack --ctstate UNTRACKED -j ACCEPT
-A FORWARD -m conntrack --ctstate ESTABLISHED -j ACCEPT
-A FORWARD -i inside -m conntrack --ctstate NEW -j ACCEPT
COMMIT
";
    let mut r = Rig::new(rules, 1024);
    let q = udp(CLIENT, SERVER, 5353, 53);
    assert_eq!(r.send(INSIDE, &q), (FWD_IN, Some(CtState::Untracked)));
    assert!(r.tables.ct.is_empty(), "NOTRACK creates no entry");
    // NOTRACK applies to the query only: the answer's destination port is 5353, so it is
    // tracked, finds no connection and is NEW from outside, which the rules drop.
    let a = udp(SERVER, CLIENT, 53, 5353);
    assert_eq!(r.send(OUTSIDE, &a), (DROPPED, Some(CtState::New)));
    let discard = udp(CLIENT, SERVER, 5353, 9);
    assert_eq!(r.send(INSIDE, &discard).0, DROPPED);
    assert!(r.tables.ct.is_empty(), "raw DROP happens before conntrack");
}

#[test]
fn full_table_drops_new_connections_and_keeps_the_old_ones() {
    let mut r = Rig::new(STATEFUL, 2);
    // Two assured TCP connections fill the table.
    for port in [41000u16, 41001] {
        r.handshake(port);
    }
    assert_eq!(r.tables.ct.len(), 2);
    let syn = tcp(CLIENT, SERVER, 41002, 80, Flags::SYN, 100, 0, b"");
    assert_eq!(
        r.send(INSIDE, &syn),
        (Verdict::Drop(DropReason::CtFull), Some(CtState::New))
    );
    assert_eq!(r.tables.ct.stats().ct_full, 1);
    // The established ones still pass.
    let data = tcp(SERVER, CLIENT, 80, 41000, Flags::ACK, 501, 101, b"x");
    assert_eq!(
        r.send(OUTSIDE, &data),
        (FWD_OUT, Some(CtState::Established))
    );
}

#[test]
fn an_unassured_connection_is_evicted_for_a_new_one() {
    let mut r = Rig::new(STATEFUL, 1);
    let q = udp(CLIENT, SERVER, 5353, 53);
    assert_eq!(r.send(INSIDE, &q).0, FWD_IN);
    let q2 = udp(CLIENT, SERVER, 5354, 53);
    assert_eq!(r.send(INSIDE, &q2), (FWD_IN, Some(CtState::New)));
    assert_eq!(r.tables.ct.stats().early_drop, 1);
    assert_eq!(r.tables.ct.len(), 1);
}

#[test]
fn later_fragments_share_their_datagrams_verdict() {
    let mut r = Rig::new(STATEFUL, 1024);
    let big = |dport: u16, id_src: Ipv4Addr| {
        FrameSpec::new(
            IpSpec::v4(id_src, SERVER),
            L4Spec::Udp {
                sport: 5000,
                dport,
                payload: vec![0x5a; 3000],
            },
        )
        .fragments(1200)
    };
    // Allowed datagram (sent last fragment first): every fragment forwarded, all NEW (the
    // datagram's state).
    let frags = big(53, CLIENT);
    assert!(frags.len() >= 3);
    let reversed: Vec<Vec<u8>> = frags.iter().rev().cloned().collect();
    let got = r.send_datagram(INSIDE, &reversed);
    assert_eq!(got, vec![(FWD_IN, Some(CtState::New)); frags.len()]);
    // Refused datagram: every fragment dropped.
    let refused = big(9999, Ipv4Addr::new(10, 0, 0, 3));
    let got = r.send_datagram(INSIDE, &refused);
    assert_eq!(got.len(), refused.len());
    assert!(got.iter().all(|g| g.0 == DROPPED), "{got:?}");
    // A datagram not whole is held, never judged: a fragment met outside a whole datagram is
    // never a free pass.
    let incomplete = big(53, Ipv4Addr::new(10, 0, 0, 4));
    assert!(r
        .send_datagram(INSIDE, &incomplete[..incomplete.len() - 1])
        .is_empty());
    assert_eq!(
        r.send(INSIDE, &incomplete[1]).0,
        Verdict::Drop(DropReason::Fragment(
            dataplane::conntrack::frag::FragError::Incomplete
        ))
    );
    // The L4 checksum spans every fragment: one byte changed in the last makes the datagram
    // INVALID (nf_conntrack_checksum over the reassembled datagram), and all of it is dropped.
    let mut bad = big(53, Ipv4Addr::new(10, 0, 0, 5));
    let last = bad.len() - 1;
    let at = bad[last].len() - 1;
    bad[last][at] ^= 1;
    let got = r.send_datagram(INSIDE, &bad);
    assert_eq!(got, vec![(DROPPED, Some(CtState::Invalid)); bad.len()]);
    // `-m length` sees the whole datagram.
    let rules = "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -p udp -m length --length 3000:3100 -j DROP
COMMIT
";
    let mut r = Rig::new(rules, 1024);
    let got = r.send_datagram(INSIDE, &big(53, CLIENT));
    assert!(got.iter().all(|g| g.0 == DROPPED), "{got:?}");
}

#[test]
fn connections_expire_after_their_timeout() {
    let mut r = Rig::new(STATEFUL, 1024);
    let q = udp(CLIENT, SERVER, 5353, 53);
    assert_eq!(r.send(INSIDE, &q).0, FWD_IN);
    // Linux's UDP timeout is 30 s: an answer 31 s later finds nothing and is NEW.
    r.now += 31 * SEC;
    r.tables.expire(r.now, u32::MAX);
    assert!(r.tables.ct.is_empty());
    let a = udp(SERVER, CLIENT, 53, 5353);
    assert_eq!(r.send(OUTSIDE, &a), (DROPPED, Some(CtState::New)));
}

#[test]
fn raw_table_rejects_log() {
    let rules = "*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -j LOG
COMMIT
";
    let parsed = parse_iptables("t", rules, Family::V4, &[]).expect("parses");
    let e = compile_raw(&parsed).expect_err("LOG in raw is refused");
    assert!(e[0].to_string().contains("raw table"), "{}", e[0]);
}

/// An established connection's verdict comes from its entry until the rule set changes; a
/// rule set that logs keeps logging every packet.
#[test]
fn cached_verdicts_end_with_their_rule_set_and_never_skip_a_log() {
    let mut r = Rig::new(STATEFUL, 1024);
    let (a, b) = (1000u32, 5000u32);
    let syn = tcp(CLIENT, SERVER, 40000, 80, Flags::SYN, a, 0, b"");
    let synack = tcp(
        SERVER,
        CLIENT,
        80,
        40000,
        Flags::SYN | Flags::ACK,
        b,
        a + 1,
        b"",
    );
    let ack = tcp(CLIENT, SERVER, 40000, 80, Flags::ACK, a + 1, b + 1, b"");
    let reply = tcp(SERVER, CLIENT, 80, 40000, Flags::ACK, b + 1, a + 1, b"data");
    assert_eq!(r.send(INSIDE, &syn).0, FWD_IN);
    assert_eq!(r.send(OUTSIDE, &synack).0, FWD_OUT);
    for _ in 0..3 {
        assert_eq!(r.send(INSIDE, &ack).0, FWD_IN);
        assert_eq!(r.send(OUTSIDE, &reply).0, FWD_OUT);
    }
    // The operator now refuses the server's traffic: the very next packet is dropped.
    let ports = ["inside".to_string(), "outside".to_string()];
    let swap = |text: &str| {
        let parsed = parse_iptables("swap.rules", text, Family::V4, &ports).unwrap();
        Filter {
            v4: Some(compile_parsed(&parsed, Hook::Forward).unwrap()),
            ..Filter::default()
        }
    };
    r.filter = swap(
        // Rule 0 (the index cached under the old set) accepts, but not this packet.
        "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -p udp --dport 9 -j ACCEPT\n\
         -A FORWARD -i outside -p tcp --sport 80 -j DROP\n\
         -A FORWARD -m conntrack --ctstate ESTABLISHED -j ACCEPT\nCOMMIT\n",
    );
    assert_eq!(
        r.send(OUTSIDE, &reply),
        (DROPPED, Some(CtState::Established))
    );
    assert_eq!(r.send(INSIDE, &ack).0, FWD_IN);
    // A rule set that logs established packets logs each of them.
    r.filter = swap(
        "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -m conntrack --ctstate ESTABLISHED -j LOG --log-prefix est\n\
         -A FORWARD -m conntrack --ctstate ESTABLISHED -j ACCEPT\nCOMMIT\n",
    );
    let mut logged = 0;
    for _ in 0..5 {
        r.now += SEC / 1000;
        let o = r.bridge.judge(
            &r.filter,
            Some(&mut r.tables),
            INSIDE,
            &mut ack.clone(),
            r.now,
            |_, _, _| logged += 1,
        );
        assert_eq!(o.verdict, FWD_IN);
    }
    assert_eq!(logged, 5);
}

/// Rules on TCP flags make a verdict depend on each segment: nothing is cached.
#[test]
fn tcp_flag_rules_are_judged_per_segment() {
    let rules = "*filter\n:FORWARD DROP [0:0]\n\
        -A FORWARD -p tcp --tcp-flags FIN FIN -j DROP\n\
        -A FORWARD -m conntrack --ctstate ESTABLISHED,NEW -j ACCEPT\nCOMMIT\n";
    let mut r = Rig::new(rules, 1024);
    let (a, b) = (1000u32, 5000u32);
    let syn = tcp(CLIENT, SERVER, 40000, 80, Flags::SYN, a, 0, b"");
    let synack = tcp(
        SERVER,
        CLIENT,
        80,
        40000,
        Flags::SYN | Flags::ACK,
        b,
        a + 1,
        b"",
    );
    let ack = tcp(CLIENT, SERVER, 40000, 80, Flags::ACK, a + 1, b + 1, b"");
    let fin = tcp(
        CLIENT,
        SERVER,
        40000,
        80,
        Flags::ACK | Flags::FIN,
        a + 1,
        b + 1,
        b"",
    );
    assert!(!r.filter.v4.as_ref().unwrap().cacheable);
    assert_eq!(r.send(INSIDE, &syn).0, FWD_IN);
    assert_eq!(r.send(OUTSIDE, &synack).0, FWD_OUT);
    assert_eq!(r.send(INSIDE, &ack).0, FWD_IN);
    assert_eq!(r.send(INSIDE, &ack).0, FWD_IN);
    assert_eq!(r.send(INSIDE, &fin).0, DROPPED);
}

/// A full table whose entries' time is up makes room for a new connection even before the
/// timer wheel reaped them (assured entries cannot be evicted early).
#[test]
fn a_full_table_of_timed_out_connections_takes_a_new_one() {
    let mut r = Rig::new(STATEFUL, 2);
    let mut cfg = TrackConfig::new(2);
    cfg.conntrack.tcp.timeouts.state_ns
        [dataplane::conntrack::tcp::TcpState::Established as usize] = 10 * SEC;
    r.tables = Tables::new(&cfg);
    for port in [41000u16, 41001] {
        r.handshake(port);
    }
    let syn = tcp(CLIENT, SERVER, 41002, 80, Flags::SYN, 100, 0, b"");
    assert_eq!(r.send(INSIDE, &syn).0, Verdict::Drop(DropReason::CtFull));
    // Their 10 s pass; no expire() call in between.
    r.now += 11 * SEC;
    assert_eq!(r.send(INSIDE, &syn), (FWD_IN, Some(CtState::New)));
    assert_eq!(r.tables.ct.stats().expired, 2);
}

/// An IPv6 atomic fragment (offset 0, M clear) under tracking is judged as nf_defrag_ipv6
/// leaves it: a datagram of its own without the Fragment header, so `-m frag` and
/// `ipv6header` do not see the header and `-m length` counts 8 bytes fewer; without
/// tracking (no defrag in Linux either) they see it.
#[test]
fn an_atomic_fragment_is_judged_without_its_fragment_header() {
    use dataplane::wire::builder::ExtSpec;
    let rules = "*filter
:FORWARD ACCEPT [0:0]
-A FORWARD -m frag --fragid 0:0xffffffff -j DROP
-A FORWARD -m ipv6header --header frag --soft -j DROP
-A FORWARD -p udp -m length --length 60 -j DROP
COMMIT
";
    let ports = ["inside".to_string(), "outside".to_string()];
    let parsed = parse_iptables("test.rules", rules, Family::V6, &ports).expect("parses");
    let filter = Filter {
        v6: Some(compile_parsed(&parsed, Hook::Forward).expect("compiles")),
        raw_v6: compile_raw(&parsed).expect("raw compiles"),
        ..Filter::default()
    };
    let bridge = Bridge::new(&[(INSIDE, OUTSIDE)], Policy::Forward, Policy::Drop);
    let mut tables = Tables::new(&TrackConfig::new(64));
    let frame = |atomic: bool, payload: usize| {
        let mut ip = IpSpec::v6("fd00::2".parse().unwrap(), "2001:db8::5".parse().unwrap());
        if let (IpSpec::V6 { ext, .. }, true) = (&mut ip, atomic) {
            // Offset 0, M clear, identification 7.
            ext.push(ExtSpec {
                header_type: 44,
                body: vec![0, 0, 0, 0, 0, 7],
            });
        }
        FrameSpec::new(ip, L4Spec::udp(4000, 53, &vec![0; payload])).build()
    };
    let mut now = SEC;
    let mut judge = |tables: Option<&mut Tables>, f: Vec<u8>| {
        now += SEC / 1000;
        let mut f = f;
        bridge
            .judge(&filter, tables, INSIDE, &mut f, now, |_, _, _| {})
            .verdict
    };
    let fwd = Verdict::Forward(OUTSIDE);
    let dropped = Verdict::Drop(DropReason::RuleDrop);
    // 40 + 8 + 8 + 4 bytes: 52 as Linux's conntrack leaves it, 60 on the wire.
    assert_eq!(judge(Some(&mut tables), frame(true, 4)), fwd);
    assert_eq!(
        judge(Some(&mut tables), frame(true, 12)),
        dropped,
        "-m length 60"
    );
    assert_eq!(
        judge(Some(&mut tables), frame(false, 12)),
        dropped,
        "60 bytes"
    );
    assert_eq!(judge(None, frame(true, 4)), dropped);
}
