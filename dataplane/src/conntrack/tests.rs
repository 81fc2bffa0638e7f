//! Tests of the conntrack table over frames built byte by byte with `wire::builder`.

use super::*;
use crate::wire::builder::{tcp_options, FrameSpec, IpSpec, L4Spec};
use crate::wire::tcp::{Flags, TcpOption};
use crate::wire::{ethernet, parse_frame};
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const CPORT: u16 = 40000;
const SPORT: u16 = 443;
const MS: u64 = 1_000_000;

fn table(capacity: u32) -> Conntrack {
    Conntrack::new(Config::new(capacity))
}

fn track(ct: &mut Conntrack, frame: &[u8], now: u64) -> Tracked {
    let info = parse_frame(frame).expect("frame parses");
    ct.track(frame, &info, now)
}

/// Tracks and, like an accepting rule set, confirms.
fn pass(ct: &mut Conntrack, frame: &[u8], now: u64) -> Tracked {
    let mut t = track(ct, frame, now);
    ct.confirm(&mut t, now).expect("room in the table");
    t
}

/// A TCP segment; `c2s`: from the client to the server.
fn seg(c2s: bool, flags: Flags, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    seg_opts(c2s, flags, seq, ack, payload, vec![])
}

fn seg_opts(
    c2s: bool,
    flags: Flags,
    seq: u32,
    ack: u32,
    payload: &[u8],
    options: Vec<u8>,
) -> Vec<u8> {
    let (s, d, sp, dp) = if c2s {
        (CLIENT, SERVER, CPORT, SPORT)
    } else {
        (SERVER, CLIENT, SPORT, CPORT)
    };
    FrameSpec::new(
        IpSpec::v4(s, d),
        L4Spec::Tcp {
            sport: sp,
            dport: dp,
            seq,
            ack,
            flags,
            window: 65535,
            options,
            payload: payload.to_vec(),
        },
    )
    .build()
}

fn tcp_state(ct: &Conntrack, t: &Tracked, now: u64) -> TcpState {
    ct.get(t.entry().expect("an entry"), now)
        .and_then(|c| c.tcp_state)
        .expect("a TCP entry")
}

const A: Flags = Flags::ACK;
const SYN: Flags = Flags::SYN;
const FIN: Flags = Flags(0x11);
const PSH: Flags = Flags(0x18);

/// Client ISN 1000, server ISN 5000; returns the table after the three-way handshake.
fn handshake(ct: &mut Conntrack) -> Tracked {
    let t = pass(ct, &seg(true, SYN, 1000, 0, &[]), 0);
    assert_eq!((t.state, t.dir), (CtState::New, Dir::Orig));
    assert_eq!(tcp_state(ct, &t, 0), TcpState::SynSent);
    let t = pass(ct, &seg(false, SYN | A, 5000, 1001, &[]), MS);
    assert_eq!((t.state, t.dir), (CtState::Established, Dir::Reply));
    assert_eq!(tcp_state(ct, &t, MS), TcpState::SynRecv);
    let t = pass(ct, &seg(true, A, 1001, 5001, &[]), 2 * MS);
    assert_eq!((t.state, t.dir), (CtState::Established, Dir::Orig));
    assert_eq!(tcp_state(ct, &t, 2 * MS), TcpState::Established);
    t
}

#[test]
fn tcp_handshake_data_and_fin_teardown() {
    let mut ct = table(16);
    let t = handshake(&mut ct);
    let id = t.entry().unwrap();
    let info = ct.get(id, 2 * MS).unwrap();
    assert!(info.assured && info.seen_reply);
    assert_eq!(info.timeout_left_ns, 5 * 24 * 3600 * SEC);

    // Data both ways.
    let t = pass(&mut ct, &seg(true, PSH, 1001, 5001, b"GET /"), 3 * MS);
    assert_eq!(t.state, CtState::Established);
    // Unacknowledged data: the shorter timeout.
    assert_eq!(ct.get(id, 3 * MS).unwrap().timeout_left_ns, 300 * SEC);
    let t = pass(&mut ct, &seg(false, PSH, 5001, 1006, b"200 OK"), 4 * MS);
    assert_eq!((t.state, t.dir), (CtState::Established, Dir::Reply));
    pass(&mut ct, &seg(true, A, 1006, 5007, &[]), 5 * MS);
    assert_eq!(
        ct.get(id, 5 * MS).unwrap().timeout_left_ns,
        5 * 24 * 3600 * SEC
    );

    // Client closes.
    let t = pass(&mut ct, &seg(true, FIN, 1006, 5007, &[]), 6 * MS);
    assert_eq!(tcp_state(&ct, &t, 6 * MS), TcpState::FinWait);
    let t = pass(&mut ct, &seg(false, A, 5007, 1007, &[]), 7 * MS);
    assert_eq!(tcp_state(&ct, &t, 7 * MS), TcpState::CloseWait);
    let t = pass(&mut ct, &seg(false, FIN, 5007, 1007, &[]), 8 * MS);
    assert_eq!(tcp_state(&ct, &t, 8 * MS), TcpState::LastAck);
    let t = pass(&mut ct, &seg(true, A, 1007, 5008, &[]), 9 * MS);
    assert_eq!(tcp_state(&ct, &t, 9 * MS), TcpState::TimeWait);
    let info = ct.get(id, 9 * MS).unwrap();
    assert_eq!(info.timeout_left_ns, 120 * SEC);
    assert_eq!(info.packets, [6, 4]);
    assert_eq!(info.orig.reply(), info.reply);

    // The same tuple opens again from TIME_WAIT: a new connection.
    let t = pass(&mut ct, &seg(true, SYN, 9000, 0, &[]), 10 * MS);
    assert_eq!(t.state, CtState::New);
    assert_eq!(tcp_state(&ct, &t, 10 * MS), TcpState::SynSent);
    assert_eq!(ct.len(), 1);
}

#[test]
fn tcp_rst_closes_and_rst_to_syn_kills() {
    let mut ct = table(16);
    let t = handshake(&mut ct);
    let id = t.entry().unwrap();
    let t = pass(&mut ct, &seg(false, Flags::RST, 5001, 0, &[]), 3 * MS);
    assert_eq!(t.state, CtState::Established);
    assert_eq!(tcp_state(&ct, &t, 3 * MS), TcpState::Close);
    assert_eq!(ct.get(id, 3 * MS).unwrap().timeout_left_ns, 10 * SEC);

    // A RST|ACK answering a SYN: the entry dies at once, the RST passes as ESTABLISHED.
    let mut ct = table(16);
    pass(&mut ct, &seg(true, SYN, 1000, 0, &[]), 0);
    let t = pass(&mut ct, &seg(false, Flags::RST | A, 0, 1001, &[]), MS);
    assert_eq!(
        (t.state, t.dir, t.handle),
        (CtState::Established, Dir::Reply, Handle::None)
    );
    assert!(ct.is_empty());
}

#[test]
fn tcp_rst_out_of_window_is_invalid() {
    let mut ct = table(16);
    handshake(&mut ct);
    pass(&mut ct, &seg(true, PSH, 1001, 5001, &[0; 100]), 3 * MS);
    pass(&mut ct, &seg(false, A, 5001, 1101, &[]), 4 * MS);
    // Below what the server already acknowledged.
    let t = track(&mut ct, &seg(true, Flags::RST, 1050, 0, &[]), 5 * MS);
    assert_eq!(t.invalid, Some(Invalid::TcpRst));
}

#[test]
fn tcp_retransmissions() {
    let mut ct = table(16);
    let t = pass(&mut ct, &seg(true, SYN, 1000, 0, &[]), 0);
    let id = t.entry().unwrap();
    // A retransmitted SYN is still NEW and does not extend the entry's life.
    let t = pass(&mut ct, &seg(true, SYN, 1000, 0, &[]), 3 * SEC);
    assert_eq!((t.state, t.entry()), (CtState::New, Some(id)));
    assert_eq!(ct.get(id, 3 * SEC).unwrap().timeout_left_ns, 117 * SEC);
    pass(&mut ct, &seg(false, SYN | A, 5000, 1001, &[]), 4 * SEC);
    pass(&mut ct, &seg(true, A, 1001, 5001, &[]), 4 * SEC);
    // The same ACK again and again: after `max_retrans` the timeout drops to 300 s.
    for n in 0..4 {
        let t = pass(&mut ct, &seg(false, A, 5001, 1001, &[]), 5 * SEC + n);
        assert_eq!(t.state, CtState::Established);
    }
    assert_eq!(
        ct.get(id, 6 * SEC).unwrap().timeout_left_ns,
        300 * SEC - SEC + 3
    );
    // A data segment sent twice: both pass.
    for _ in 0..2 {
        let t = pass(&mut ct, &seg(true, PSH, 1001, 5001, b"abc"), 7 * SEC);
        assert_eq!(t.state, CtState::Established);
    }
}

#[test]
fn tcp_out_of_window() {
    let mut ct = table(16);
    handshake(&mut ct);
    // Far beyond the receiver's window.
    let t = track(
        &mut ct,
        &seg(true, PSH, 1001 + 10_000_000, 5001, b"x"),
        3 * MS,
    );
    assert_eq!(
        (t.state, t.invalid),
        (CtState::Invalid, Some(Invalid::TcpSeqOverWindow))
    );
    // Acknowledges data the server never sent.
    let t = track(&mut ct, &seg(true, A, 1001, 5001 + 100_000, &[]), 3 * MS);
    assert_eq!(t.invalid, Some(Invalid::TcpAckOverUpperBound));
    // Data already acknowledged, far below the window: let through, nothing learnt.
    pass(&mut ct, &seg(true, PSH, 1001, 5001, &[1; 1000]), 4 * MS);
    pass(&mut ct, &seg(false, A, 5001, 2001, &[]), 5 * MS);
    let t = track(
        &mut ct,
        &seg(true, PSH, 1001u32.wrapping_sub(200_000), 5001, &[1; 10]),
        6 * MS,
    );
    assert_eq!(t.state, CtState::Established);
    // With be_liberal, only RSTs are checked.
    let mut cfg = Config::new(16);
    cfg.tcp.be_liberal = true;
    let mut ct = Conntrack::new(cfg);
    handshake(&mut ct);
    let t = track(
        &mut ct,
        &seg(true, PSH, 1001 + 10_000_000, 5001, b"x"),
        3 * MS,
    );
    assert_eq!(t.state, CtState::Established);
}

#[test]
fn tcp_window_scaling_is_honoured() {
    let mut ct = table(16);
    let ws = |s| tcp_options(&[TcpOption::WindowScale(s)]);
    pass(&mut ct, &seg_opts(true, SYN, 1000, 0, &[], ws(7)), 0);
    pass(
        &mut ct,
        &seg_opts(false, SYN | A, 5000, 1001, &[], ws(7)),
        MS,
    );
    pass(&mut ct, &seg(true, A, 1001, 5001, &[]), 2 * MS);
    // 65535 << 7 = 8 MB of window: a segment 1 MB ahead of the ACK is in window.
    let t = track(
        &mut ct,
        &seg(false, PSH, 5001 + 1_000_000, 1001, b"x"),
        3 * MS,
    );
    assert_eq!(t.state, CtState::Established);
}

#[test]
fn tcp_simultaneous_open() {
    let mut ct = table(16);
    let t = pass(&mut ct, &seg(true, SYN, 1000, 0, &[]), 0);
    let id = t.entry().unwrap();
    let t = pass(&mut ct, &seg(false, SYN, 5000, 0, &[]), MS);
    assert_eq!((t.state, t.dir), (CtState::Established, Dir::Reply));
    assert_eq!(tcp_state(&ct, &t, MS), TcpState::SynSent2);
    let t = pass(&mut ct, &seg(true, SYN | A, 1000, 5001, &[]), 2 * MS);
    assert_eq!(tcp_state(&ct, &t, 2 * MS), TcpState::SynRecv);
    // The other SYN/ACK is ignored in SYN_RECV.
    let t = pass(&mut ct, &seg(false, SYN | A, 5000, 1001, &[]), 3 * MS);
    assert_eq!(t.state, CtState::Established);
    assert_eq!(tcp_state(&ct, &t, 3 * MS), TcpState::SynRecv);
    // A reply ACK completes a simultaneous open.
    let t = pass(&mut ct, &seg(false, A, 5001, 1001, &[]), 4 * MS);
    assert_eq!(tcp_state(&ct, &t, 4 * MS), TcpState::Established);
    assert_eq!(t.entry(), Some(id));
}

#[test]
fn tcp_mid_stream_pickup() {
    let mut ct = table(16);
    let t = pass(&mut ct, &seg(true, PSH, 77_000, 99_000, b"hello"), 0);
    assert_eq!(t.state, CtState::New);
    let id = t.entry().unwrap();
    let info = ct.get(id, 0).unwrap();
    assert_eq!(info.tcp_state, Some(TcpState::Established));
    // Never answered: the unacknowledged timeout, not five days.
    assert_eq!(info.timeout_left_ns, 300 * SEC);
    // More from the same side, still unanswered: still NEW.
    let t = pass(&mut ct, &seg(true, PSH, 77_005, 99_000, b"again"), MS);
    assert_eq!(t.state, CtState::New);
    let t = pass(&mut ct, &seg(false, A, 99_000, 77_010, &[]), 2 * MS);
    assert_eq!((t.state, t.dir), (CtState::Established, Dir::Reply));
    let t = pass(&mut ct, &seg(true, A, 77_010, 99_000, &[]), 3 * MS);
    assert_eq!(t.state, CtState::Established);
    assert!(ct.get(id, 3 * MS).unwrap().assured);

    // Without loose pickup, only a SYN starts a connection.
    let mut cfg = Config::new(16);
    cfg.tcp.loose = false;
    let mut ct = Conntrack::new(cfg);
    let t = track(&mut ct, &seg(true, PSH, 77_000, 99_000, b"hello"), 0);
    assert_eq!(t.invalid, Some(Invalid::TcpNotNew));
}

#[test]
fn tcp_bad_flags_checksum_and_no_new() {
    let mut ct = table(16);
    let t = track(&mut ct, &seg(true, SYN | Flags::FIN, 1000, 0, &[]), 0);
    assert_eq!(t.invalid, Some(Invalid::TcpFlags));
    let t = track(&mut ct, &seg(true, Flags::EMPTY, 1000, 0, &[]), 0);
    assert_eq!(t.invalid, Some(Invalid::TcpFlags));
    // Only a SYN or an ACK may start a connection.
    for f in [SYN | A, FIN, Flags::RST] {
        let t = track(&mut ct, &seg(true, f, 1000, 1, &[]), 0);
        assert_eq!(t.state, CtState::Invalid, "{f:?}");
    }
    let mut frame = seg(true, SYN, 1000, 0, &[]);
    let ck = ethernet::HEADER_LEN + 20 + 16;
    frame[ck] ^= 0x55;
    assert_eq!(
        track(&mut ct, &frame, 0).invalid,
        Some(Invalid::BadChecksum)
    );
    let mut cfg = Config::new(4);
    cfg.checksum = false;
    assert_eq!(
        track(&mut Conntrack::new(cfg), &frame, 0).state,
        CtState::New
    );
    assert_eq!(ct.stats().invalid[Invalid::BadChecksum.index()], 1);
    assert!(ct.is_empty());
}

#[test]
fn dropped_new_packet_leaves_no_entry() {
    let mut ct = table(16);
    let syn = seg(true, SYN, 1000, 0, &[]);
    let t = track(&mut ct, &syn, 0);
    assert!(matches!(t.handle, Handle::New(_)));
    // The rule set dropped it: no confirm.
    assert!(ct.is_empty());
    // Its answer finds nothing (a SYN/ACK cannot start a connection).
    let t = track(&mut ct, &seg(false, SYN | A, 5000, 1001, &[]), MS);
    assert_eq!(t.invalid, Some(Invalid::TcpNotNew));
    // Two first packets confirmed in a row join one entry.
    let mut a = track(&mut ct, &syn, 0);
    let mut b = track(&mut ct, &syn, 0);
    ct.confirm(&mut a, 0).unwrap();
    ct.confirm(&mut b, 0).unwrap();
    assert_eq!(a.entry(), b.entry());
    assert_eq!((ct.len(), ct.stats().clash), (1, 1));
}

#[test]
fn tcp_over_ipv6() {
    let mut ct = table(16);
    let (c, s): (Ipv6Addr, Ipv6Addr) = (
        "2001:db8::1".parse().unwrap(),
        "2001:db8::2".parse().unwrap(),
    );
    let f = |c2s: bool, flags, seq, ack| {
        let (a, b, pa, pb) = if c2s {
            (c, s, 1234, 80)
        } else {
            (s, c, 80, 1234)
        };
        FrameSpec::new(
            IpSpec::v6(a, b),
            L4Spec::Tcp {
                sport: pa,
                dport: pb,
                seq,
                ack,
                flags,
                window: 1000,
                options: vec![],
                payload: vec![],
            },
        )
        .build()
    };
    assert_eq!(pass(&mut ct, &f(true, SYN, 1, 0), 0).state, CtState::New);
    assert_eq!(
        pass(&mut ct, &f(false, SYN | A, 9, 2), 1).state,
        CtState::Established
    );
    let t = pass(&mut ct, &f(true, A, 2, 10), 2);
    assert_eq!(tcp_state(&ct, &t, 2), TcpState::Established);
}

fn udp(c2s: bool, payload: &[u8]) -> Vec<u8> {
    let (s, d, sp, dp) = if c2s {
        (CLIENT, SERVER, 5353, 53)
    } else {
        (SERVER, CLIENT, 53, 5353)
    };
    FrameSpec::new(IpSpec::v4(s, d), L4Spec::udp(sp, dp, payload)).build()
}

#[test]
fn udp_unreplied_and_stream_timeouts() {
    let mut ct = table(16);
    let t = pass(&mut ct, &udp(true, b"q"), 0);
    assert_eq!(t.state, CtState::New);
    let id = t.entry().unwrap();
    assert_eq!(ct.get(id, 0).unwrap().timeout_left_ns, 30 * SEC);
    // More queries, no answer: NEW still.
    assert_eq!(pass(&mut ct, &udp(true, b"q"), SEC).state, CtState::New);
    // The answer: ESTABLISHED, still the short timeout.
    let t = pass(&mut ct, &udp(false, b"a"), SEC + 1);
    assert_eq!((t.state, t.dir), (CtState::Established, Dir::Reply));
    assert_eq!(ct.get(id, SEC + 1).unwrap().timeout_left_ns, 30 * SEC);
    assert!(!ct.get(id, SEC + 1).unwrap().assured);
    // Both ways and older than 2 s: a stream, assured, 120 s.
    let t = pass(&mut ct, &udp(true, b"q"), 3 * SEC);
    assert_eq!(t.state, CtState::Established);
    let info = ct.get(id, 3 * SEC).unwrap();
    assert!(info.assured);
    assert_eq!(info.timeout_left_ns, 120 * SEC);
    assert_eq!((info.packets, info.bytes[1]), ([3, 1], 29));

    // An unreplied flow dies after 30 s: the next packet is NEW again.
    let mut ct = table(16);
    pass(&mut ct, &udp(true, b"q"), 0);
    assert_eq!(ct.expire(30 * SEC - 1, 100), 0);
    assert_eq!(ct.expire(31 * SEC, 100), 1);
    assert!(ct.is_empty());
    assert_eq!(
        pass(&mut ct, &udp(true, b"q"), 31 * SEC).state,
        CtState::New
    );
    // Even without the wheel visiting it, a dead entry is not found.
    assert_eq!(
        pass(&mut ct, &udp(false, b"a"), 62 * SEC).state,
        CtState::New
    );
}

#[test]
fn udp_bad_checksum_and_zero_checksum() {
    let mut ct = table(16);
    let mut frame = udp(true, b"q");
    let ck = ethernet::HEADER_LEN + 20 + 6;
    frame[ck] ^= 1;
    assert_eq!(
        track(&mut ct, &frame, 0).invalid,
        Some(Invalid::BadChecksum)
    );
    frame[ck..ck + 2].copy_from_slice(&[0, 0]);
    assert_eq!(track(&mut ct, &frame, 0).state, CtState::New);
}

fn icmp(from: Ipv4Addr, to: Ipv4Addr, ty: u8, code: u8, ident: u16, payload: Vec<u8>) -> Vec<u8> {
    FrameSpec::new(
        IpSpec::v4(from, to),
        L4Spec::Icmp {
            ty,
            code,
            ident,
            seq: 1,
            payload,
        },
    )
    .build()
}

/// The first `n` bytes of a frame's IP datagram, as an ICMP error quotes them.
fn quote(frame: &[u8], n: usize) -> Vec<u8> {
    frame[ethernet::HEADER_LEN..ethernet::HEADER_LEN + n].to_vec()
}

#[test]
fn icmp_echo_by_identifier() {
    let mut ct = table(16);
    let t = pass(&mut ct, &icmp(CLIENT, SERVER, 8, 0, 77, vec![]), 0);
    assert_eq!(t.state, CtState::New);
    let t = pass(&mut ct, &icmp(SERVER, CLIENT, 0, 0, 77, vec![]), MS);
    assert_eq!((t.state, t.dir), (CtState::Established, Dir::Reply));
    assert_eq!(
        pass(&mut ct, &icmp(CLIENT, SERVER, 8, 0, 77, vec![]), 2 * MS).state,
        CtState::Established
    );
    assert_eq!(
        ct.get(t.entry().unwrap(), 2 * MS).unwrap().timeout_left_ns,
        30 * SEC
    );
    // Another identifier is another flow; an unsolicited reply is INVALID.
    assert_eq!(
        track(&mut ct, &icmp(CLIENT, SERVER, 8, 0, 78, vec![]), 0).state,
        CtState::New
    );
    assert_eq!(
        track(&mut ct, &icmp(SERVER, CLIENT, 0, 0, 79, vec![]), 0).invalid,
        Some(Invalid::IcmpNotNew)
    );
    assert_eq!(
        track(&mut ct, &icmp(SERVER, CLIENT, 40, 0, 0, vec![]), 0).invalid,
        Some(Invalid::IcmpType)
    );
    let mut bad = icmp(CLIENT, SERVER, 8, 0, 77, vec![]);
    bad[ethernet::HEADER_LEN + 20 + 2] ^= 1;
    assert_eq!(track(&mut ct, &bad, 0).invalid, Some(Invalid::BadChecksum));
}

#[test]
fn icmp_errors_quoting_tcp_and_udp_are_related() {
    let mut ct = table(16);
    let syn = seg(true, SYN, 1000, 0, &[]);
    let t = pass(&mut ct, &syn, 0);
    let tcp_id = t.entry().unwrap();
    let query = udp(true, b"q");
    let udp_id = pass(&mut ct, &query, 0).entry().unwrap();

    // A router on the way says the server is unreachable: to the client, quoting the SYN.
    let err = icmp(ROUTER, CLIENT, 3, 1, 0, quote(&syn, 28));
    let t = track(&mut ct, &err, MS);
    assert_eq!(
        (t.state, t.dir, t.entry()),
        (CtState::Related, Dir::Reply, Some(tcp_id))
    );
    // The server itself: port unreachable for the UDP query (quoting 8 bytes of UDP).
    let t = track(
        &mut ct,
        &icmp(SERVER, CLIENT, 3, 3, 0, quote(&query, 28)),
        MS,
    );
    assert_eq!((t.state, t.entry()), (CtState::Related, Some(udp_id)));
    // Time exceeded quoting only the ports (4 bytes of TCP) is enough.
    let t = track(
        &mut ct,
        &icmp(ROUTER, CLIENT, 11, 0, 0, quote(&syn, 24)),
        MS,
    );
    assert_eq!(t.state, CtState::Related);
    // An error sent to a third party, quoting the client's packet: INVALID.
    let t = track(&mut ct, &icmp(ROUTER, SERVER, 3, 1, 0, quote(&syn, 28)), MS);
    assert_eq!(t.invalid, Some(Invalid::IcmpWrongDestination));
    // Quoting an unknown connection, or too little.
    let other = seg(true, SYN, 1000, 0, &[]);
    let mut other_q = quote(&other, 28);
    other_q[20] ^= 0xff; // another source port
    assert_eq!(
        track(&mut ct, &icmp(ROUTER, CLIENT, 3, 1, 0, other_q), MS).invalid,
        Some(Invalid::IcmpNoMatch)
    );
    assert_eq!(
        track(&mut ct, &icmp(ROUTER, CLIENT, 3, 1, 0, quote(&syn, 22)), MS).invalid,
        Some(Invalid::IcmpQuote)
    );
    // Errors do not refresh or count.
    assert_eq!(ct.get(tcp_id, MS).unwrap().packets, [1, 0]);
    // An error about an echo request relates to the echo's entry.
    let ping = icmp(CLIENT, SERVER, 8, 0, 5, vec![]);
    let ping_id = pass(&mut ct, &ping, 0).entry().unwrap();
    let t = track(
        &mut ct,
        &icmp(ROUTER, CLIENT, 11, 0, 0, quote(&ping, 28)),
        MS,
    );
    assert_eq!((t.state, t.entry()), (CtState::Related, Some(ping_id)));
}

#[test]
fn icmpv6_errors_and_neighbour_discovery() {
    let mut ct = table(16);
    let (c, s, r): (Ipv6Addr, Ipv6Addr, Ipv6Addr) = (
        "2001:db8::1".parse().unwrap(),
        "2001:db8:1::80".parse().unwrap(),
        "2001:db8:ffff::1".parse().unwrap(),
    );
    let data = FrameSpec::new(IpSpec::v6(c, s), L4Spec::udp(4000, 4433, &[0; 1200])).build();
    let id = pass(&mut ct, &data, 0).entry().unwrap();
    let too_big = FrameSpec::new(
        IpSpec::v6(r, c),
        L4Spec::Icmpv6 {
            ty: icmpv6::msg_type::PACKET_TOO_BIG,
            code: 0,
            ident: 0,
            seq: 1280,
            payload: quote(&data, 48 + 100),
        },
    )
    .build();
    let t = track(&mut ct, &too_big, MS);
    assert_eq!(
        (t.state, t.dir, t.entry()),
        (CtState::Related, Dir::Reply, Some(id))
    );
    let ns = FrameSpec::new(
        IpSpec::v6(c, s),
        L4Spec::Icmpv6 {
            ty: icmpv6::msg_type::NEIGHBOR_SOLICIT,
            code: 0,
            ident: 0,
            seq: 0,
            payload: vec![0; 16],
        },
    )
    .build();
    assert_eq!(track(&mut ct, &ns, MS).state, CtState::Untracked);
    let echo = FrameSpec::new(IpSpec::v6(c, s), L4Spec::icmpv6_echo(9, 1)).build();
    assert_eq!(pass(&mut ct, &echo, MS).state, CtState::New);
    let reply = FrameSpec::new(
        IpSpec::v6(s, c),
        L4Spec::Icmpv6 {
            ty: icmpv6::msg_type::ECHO_REPLY,
            code: 0,
            ident: 9,
            seq: 1,
            payload: vec![],
        },
    )
    .build();
    assert_eq!(pass(&mut ct, &reply, 2 * MS).state, CtState::Established);
    // A node information response answers its query (generated seed 165 of the
    // differential test: Linux ESTABLISHED, Rampart INVALID); alone it is not NEW.
    let ni = |from: Ipv6Addr, to: Ipv6Addr, ty: u8| {
        FrameSpec::new(
            IpSpec::v6(from, to),
            L4Spec::Icmpv6 {
                ty,
                code: 0,
                ident: 3,
                seq: 0,
                payload: vec![0; 8],
            },
        )
        .build()
    };
    assert_eq!(
        track(&mut ct, &ni(s, c, 140), 2 * MS).invalid,
        Some(Invalid::IcmpNotNew)
    );
    assert_eq!(pass(&mut ct, &ni(c, s, 139), 2 * MS).state, CtState::New);
    let t = pass(&mut ct, &ni(s, c, 140), 3 * MS);
    assert_eq!((t.state, t.dir), (CtState::Established, Dir::Reply));
}

fn raw(from: Ipv4Addr, to: Ipv4Addr, proto: u8) -> Vec<u8> {
    FrameSpec::new(
        IpSpec::v4(from, to),
        L4Spec::Raw {
            proto,
            payload: vec![1, 2, 3, 4],
        },
    )
    .build()
}

#[test]
fn unknown_protocol_by_address_pair() {
    let mut ct = table(16);
    let t = pass(&mut ct, &raw(CLIENT, SERVER, 47), 0);
    assert_eq!(t.state, CtState::New);
    assert_eq!(
        ct.get(t.entry().unwrap(), 0).unwrap().timeout_left_ns,
        600 * SEC
    );
    let t = pass(&mut ct, &raw(SERVER, CLIENT, 47), MS);
    assert_eq!((t.state, t.dir), (CtState::Established, Dir::Reply));
    // Another protocol between the same hosts is another connection.
    assert_eq!(
        pass(&mut ct, &raw(SERVER, CLIENT, 50), MS).state,
        CtState::New
    );
    assert_eq!(ct.len(), 2);
}

fn udp_flow(n: u16) -> Vec<u8> {
    FrameSpec::new(
        IpSpec::v4(CLIENT, SERVER),
        L4Spec::udp(10_000 + n, 53, b"q"),
    )
    .build()
}

fn udp_flow_reply(n: u16) -> Vec<u8> {
    FrameSpec::new(
        IpSpec::v4(SERVER, CLIENT),
        L4Spec::udp(53, 10_000 + n, b"a"),
    )
    .build()
}

#[test]
fn full_table_early_drops_unassured_then_refuses() {
    let mut ct = table(4);
    for n in 0..4 {
        pass(&mut ct, &udp_flow(n), 0);
    }
    // Room is made by evicting an unassured entry.
    let t = pass(&mut ct, &udp_flow(4), 0);
    assert!(t.entry().is_some());
    assert_eq!((ct.len(), ct.stats().early_drop), (4, 1));

    // All assured (UDP streams): nothing may be evicted.
    let mut ct = table(4);
    for n in 0..4 {
        pass(&mut ct, &udp_flow(n), 0);
        pass(&mut ct, &udp_flow_reply(n), 0);
        pass(&mut ct, &udp_flow(n), 3 * SEC);
    }
    assert!(ct.list(3 * SEC).all(|c| c.assured));
    let mut t = track(&mut ct, &udp_flow(9), 3 * SEC);
    assert_eq!(ct.confirm(&mut t, 3 * SEC), Err(TableFull));
    assert_eq!(ct.stats().ct_full, 1);
    // Existing connections keep working.
    assert_eq!(
        pass(&mut ct, &udp_flow(1), 4 * SEC).state,
        CtState::Established
    );
    // An expired entry is reclaimed before anything else.
    let mut t = track(&mut ct, &udp_flow(9), 500 * SEC);
    assert_eq!(ct.confirm(&mut t, 500 * SEC), Ok(()));
}

#[test]
fn expiry_follows_the_timeouts() {
    let mut ct = table(16);
    // Created at 0: ICMP 30 s, UDP 30 s then refreshed at 20 s (dies at 50 s), TCP SYN 120 s,
    // generic 600 s; a connection reset at 5 s (CLOSE, 10 s: dies at 15 s).
    let ping = pass(&mut ct, &icmp(CLIENT, SERVER, 8, 0, 1, vec![]), 0)
        .entry()
        .unwrap();
    let dns = pass(&mut ct, &udp(true, b"q"), 0).entry().unwrap();
    let syn = pass(&mut ct, &seg(true, SYN, 1000, 0, &[]), 0)
        .entry()
        .unwrap();
    let gre = pass(&mut ct, &raw(CLIENT, SERVER, 47), 0).entry().unwrap();
    let other = FrameSpec::new(
        IpSpec::v4(CLIENT, SERVER),
        L4Spec::Tcp {
            sport: 1,
            dport: 2,
            seq: 10,
            ack: 0,
            flags: SYN,
            window: 100,
            options: vec![],
            payload: vec![],
        },
    )
    .build();
    let reset_id = pass(&mut ct, &other, 0).entry().unwrap();
    let back = FrameSpec::new(
        IpSpec::v4(SERVER, CLIENT),
        L4Spec::Tcp {
            sport: 2,
            dport: 1,
            seq: 70,
            ack: 11,
            flags: SYN | A,
            window: 100,
            options: vec![],
            payload: vec![],
        },
    )
    .build();
    pass(&mut ct, &back, SEC);
    let rst_frame = FrameSpec::new(
        IpSpec::v4(CLIENT, SERVER),
        L4Spec::Tcp {
            sport: 1,
            dport: 2,
            seq: 11,
            ack: 0,
            flags: Flags::RST,
            window: 0,
            options: vec![],
            payload: vec![],
        },
    )
    .build();
    pass(&mut ct, &rst_frame, 5 * SEC);
    pass(&mut ct, &udp(true, b"q"), 20 * SEC);

    let mut order = Vec::new();
    let mut now = 0;
    while now <= 700 * SEC {
        let before: Vec<EntryId> = ct.list(0).map(|c| c.id).collect();
        ct.expire(now, 1000);
        for id in before {
            if ct.get(id, 0).is_none() {
                order.push((id, now / SEC));
            }
        }
        now += SEC;
    }
    assert_eq!(
        order,
        vec![
            (reset_id, 15),
            (ping, 30),
            (dns, 50),
            (syn, 120),
            (gre, 600)
        ]
    );
    assert_eq!(ct.stats().expired, 5);
    assert!(ct.is_empty());
}

#[test]
fn list_and_flush() {
    let mut ct = table(16);
    handshake(&mut ct);
    pass(&mut ct, &udp(true, b"q"), 0);
    let list: Vec<ConnInfo> = ct.list(3 * MS).collect();
    assert_eq!(list.len(), 2);
    let tcp = list.iter().find(|c| c.tcp_state.is_some()).unwrap();
    assert_eq!(tcp.orig.src_port, CPORT);
    assert_eq!((tcp.reply.src_port, tcp.reply.dst_port), (SPORT, CPORT));
    assert_eq!((tcp.packets, tcp.bytes), ([2, 1], [80, 40]));
    ct.flush();
    assert!(ct.is_empty());
    assert_eq!(ct.list(0).count(), 0);
    assert_eq!(ct.expire(u64::MAX / 2, 100), 0);
    // Usable again: the answer to a forgotten SYN is not a connection.
    assert_eq!(
        track(&mut ct, &seg(false, SYN | A, 5000, 1001, &[]), 0).state,
        CtState::Invalid
    );
    handshake(&mut ct);
}

#[test]
fn verdict_cache_by_epoch() {
    let mut ct = table(16);
    let id = handshake(&mut ct).entry().unwrap();
    assert_eq!(ct.verdict(id, Dir::Orig, 1), None);
    ct.set_verdict(id, Dir::Orig, 1, 42);
    assert_eq!(
        (ct.verdict(id, Dir::Orig, 1), ct.verdict(id, Dir::Orig, 2)),
        (Some(42), None)
    );
    assert_eq!(ct.verdict(id, Dir::Reply, 1), None, "per direction");
    ct.set_verdict(id, Dir::Reply, 1, 7);
    assert_eq!(
        (ct.verdict(id, Dir::Orig, 1), ct.verdict(id, Dir::Reply, 1)),
        (Some(42), Some(7))
    );
    // A new rule set epoch forgets both directions' verdicts.
    ct.set_verdict(id, Dir::Reply, 2, 8);
    assert_eq!(
        (ct.verdict(id, Dir::Orig, 2), ct.verdict(id, Dir::Reply, 2)),
        (None, Some(8))
    );
}

#[test]
fn fragments_reach_the_tracker_only_when_first() {
    let mut ct = table(16);
    let mut spec = FrameSpec::new(IpSpec::v4(CLIENT, SERVER), L4Spec::udp(7, 9, &[3; 200]));
    if let IpSpec::V4 { ident, .. } = &mut spec.ip {
        *ident = 99;
    }
    let frags = spec.fragments(64);
    let mut table: frag::Fragments<Option<CtState>> = frag::Fragments::new(64, 30 * SEC, 7);
    let first = parse_frame(&frags[0]).unwrap();
    let t = pass(&mut ct, &frags[0], 0);
    assert_eq!(t.state, CtState::New);
    table.first(&frags[0], &first, Some(t.state), 0).unwrap();
    for f in &frags[1..] {
        let info = parse_frame(f).unwrap();
        assert_eq!(ct.track(f, &info, 0).invalid, Some(Invalid::LaterFragment));
        assert_eq!(table.later(f, &info, 0), Ok(Some(CtState::New)));
    }
}

/// A fragmented segment tracked whole ([`Conntrack::track_whole`]): its sequence space is the
/// whole datagram's, so the server's ACK of all of it is in bounds and the connection stays
/// strict (a segment far beyond the window is INVALID, as for Linux's reassembled skb).
/// Tracked from its first fragment's bytes alone, the connection goes liberal instead.
#[test]
fn a_fragmented_segment_is_tracked_whole() {
    for whole in [true, false] {
        let mut ct = table(16);
        handshake(&mut ct);
        let frame = seg(true, PSH, 1001, 5001, &[5; 3000]);
        let mut spec = FrameSpec::new(
            IpSpec::v4(CLIENT, SERVER),
            L4Spec::Tcp {
                sport: CPORT,
                dport: SPORT,
                seq: 1001,
                ack: 5001,
                flags: PSH,
                window: 65535,
                options: vec![],
                payload: vec![5; 3000],
            },
        );
        if let IpSpec::V4 { ident, .. } = &mut spec.ip {
            *ident = 77;
        }
        let frags = spec.fragments(1480);
        assert!(frags.len() > 2 && frame.len() > frags[0].len());
        let first = parse_frame(&frags[0]).unwrap();
        let mut t = if whole {
            ct.track_whole(&frags[0], &first, None, 20 + 3000, 3 * MS)
        } else {
            ct.track(&frags[0], &first, 3 * MS)
        };
        ct.confirm(&mut t, 3 * MS).unwrap();
        assert_eq!(t.state, CtState::Established);
        let mut t = track(&mut ct, &seg(false, A, 5001, 4001, &[]), 4 * MS);
        if whole {
            assert_eq!((t.state, t.invalid), (CtState::Established, None));
            ct.confirm(&mut t, 4 * MS).unwrap();
        } else {
            // The first fragment's 1460 bytes were all the tracker saw.
            assert_eq!(t.invalid, Some(Invalid::TcpAckOverUpperBound));
        }
        let t = track(
            &mut ct,
            &seg(true, PSH, 1001 + 10_000_000, 5001, b"x"),
            5 * MS,
        );
        if whole {
            assert_eq!(t.invalid, Some(Invalid::TcpSeqOverWindow));
        } else {
            assert_eq!(t.state, CtState::Established, "liberal");
        }
    }
}

/// A compact description of a random TCP exchange step.
fn arb_step() -> impl Strategy<Value = (bool, u8, u32, u32, u8)> {
    (
        any::<bool>(),
        prop_oneof![
            Just(0x02u8),
            Just(0x12),
            Just(0x10),
            Just(0x18),
            Just(0x11),
            Just(0x04),
            Just(0x14),
            any::<u8>()
        ],
        0u32..4000,
        0u32..4000,
        0u8..40,
    )
}

proptest! {
    /// Random segments on a few tuples never panic, and the table stays consistent: every
    /// listed entry is found again by its tuples, the count matches, and expiry empties it.
    #[test]
    fn random_tcp_traffic_keeps_the_table_consistent(
        steps in proptest::collection::vec((0u16..3, arb_step()), 1..120),
        cap in 1u32..6,
    ) {
        let mut ct = table(cap);
        let mut now = 0u64;
        for (flow, (c2s, flags, seq, ack, len)) in steps {
            let (s, d, sp, dp) = if c2s { (CLIENT, SERVER, 1000 + flow, 80) } else { (SERVER, CLIENT, 80, 1000 + flow) };
            let frame = FrameSpec::new(IpSpec::v4(s, d), L4Spec::Tcp {
                sport: sp, dport: dp, seq, ack, flags: Flags(flags), window: 2000,
                options: vec![], payload: vec![0; usize::from(len)],
            }).build();
            now += 50 * MS;
            let mut t = track(&mut ct, &frame, now);
            let _ = ct.confirm(&mut t, now);
            prop_assert!(ct.len() <= cap);
            ct.expire(now, 4);
        }
        let live: Vec<ConnInfo> = ct.list(now).collect();
        for c in &live {
            let (i, dir) = ct.lookup(&c.orig, now).unwrap();
            prop_assert_eq!((i, dir), (c.id.index(), Dir::Orig));
            let (i, dir) = ct.lookup(&c.reply, now).unwrap();
            prop_assert_eq!((i, dir), (c.id.index(), Dir::Reply));
        }
        ct.expire(now + 6 * 24 * 3600 * SEC, u32::MAX);
        prop_assert!(ct.is_empty());
    }
}

/// A UDP datagram between arbitrary endpoints.
fn udp_between(s: (Ipv4Addr, u16), d: (Ipv4Addr, u16)) -> Vec<u8> {
    FrameSpec::new(
        IpSpec::v4(s.0, d.0),
        L4Spec::Udp {
            sport: s.1,
            dport: d.1,
            payload: b"q".to_vec(),
        },
    )
    .build()
}

#[test]
fn nat_binding_finds_replies_by_the_translated_tuple() {
    const PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    let mut ct = Conntrack::new(Config {
        nat: true,
        ..Config::new(64)
    });
    let out = udp_between((CLIENT, CPORT), (SERVER, 53));
    let mut t = track(&mut ct, &out, 0);
    assert_eq!(t.state, CtState::New);
    let orig = parse_frame(&out).unwrap().flow.unwrap();
    // SNAT to PUBLIC:50000: replies come to the public address.
    let reply = FlowKey::new_v4(SERVER, PUBLIC, ip_proto::UDP, 53, 50000);
    assert!(!ct.tuple_in_use(&reply, 0));
    ct.confirm_with(&mut t, Some(reply), 0).unwrap();
    let id = t.entry().unwrap();
    assert_eq!(ct.stats().nat_live, 1);
    // An untranslated connection beside it, in the same table with NAT room: its reference
    // carries no NAT flag (so its packets do not load a reply-tuple slot).
    let plain = udp_between((CLIENT, CPORT + 1), (SERVER, 53));
    pass(&mut ct, &plain, 0);
    ct.assert_references();
    assert!(ct.tuple_in_use(&reply, 0) && ct.tuple_in_use(&orig, 0));
    // The untranslated reply tuple belongs to no connection.
    assert!(!ct.tuple_in_use(&orig.reply(), 0));
    let b = ct.binding(id).expect("a NAT binding");
    assert_eq!((b.orig, b.reply), (orig, reply));
    assert_eq!(ct.get(id, 0).unwrap().reply, reply);

    // The reply as it arrives on the wire.
    let back = udp_between((SERVER, 53), (PUBLIC, 50000));
    let r = track(&mut ct, &back, MS);
    assert_eq!(
        (r.state, r.dir, r.entry()),
        (CtState::Established, Dir::Reply, Some(id))
    );
    // A reply to the untranslated address is not part of it.
    let stray = udp_between((SERVER, 53), (CLIENT, CPORT));
    assert_eq!(track(&mut ct, &stray, MS).state, CtState::New);
    // An ICMP error from a router outside, quoting the translated packet, is RELATED.
    let translated = udp_between((PUBLIC, 50000), (SERVER, 53));
    let err = icmp(ROUTER, PUBLIC, 11, 0, 0, quote(&translated, 28));
    let e = track(&mut ct, &err, MS);
    assert_eq!(
        (e.state, e.dir, e.entry()),
        (CtState::Related, Dir::Reply, Some(id))
    );

    ct.assert_references();
    // Removal frees both tuples.
    ct.flush_from(0, 64, u32::MAX);
    ct.assert_references();
    assert_eq!(ct.stats().nat_live, 0);
    assert!(!ct.tuple_in_use(&reply, 0) && !ct.tuple_in_use(&orig, 0));
    assert!(ct.binding(id).is_none());
}

/// The lean path's guess (the entry the prefetch pass found under the tuple's tag) is taken
/// only for a live entry, and as the reply direction only of an entry without a binding:
/// a removed entry keeps its tuple and deadline, and the untranslated reverse of a
/// translated connection's tuple is under the same tag.
#[test]
fn the_lean_guess_takes_only_live_entries_and_untranslated_replies() {
    const PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    let lean = |ct: &mut Conntrack, frame: &[u8], now: u64| {
        let info = parse_frame(frame).expect("frame parses");
        let key = info.flow.expect("an IP frame");
        let (hint, found) = ct.prefetch_entry(ct.prefetch_index(&key));
        assert!(found, "the prefetch pass finds a candidate under the tag");
        ct.track_established(frame, &info, &key, hint, now)
    };
    // A removed entry: its reply's guess still names it.
    let mut ct = table(8);
    pass(&mut ct, &udp_flow(1), 0);
    pass(&mut ct, &udp_flow_reply(1), 0);
    let info = parse_frame(&udp_flow_reply(1)).unwrap();
    let key = info.flow.unwrap();
    let (hint, _) = ct.prefetch_entry(ct.prefetch_index(&key));
    assert!(lean(&mut ct, &udp_flow_reply(1), MS).is_some());
    ct.flush_from(0, 8, u32::MAX);
    assert_eq!(ct.len(), 0);
    let frame = udp_flow_reply(1);
    assert_eq!(
        ct.track_established(&frame, &info, &key, hint, 2 * MS),
        None
    );

    // A translated connection: the reverse of its original tuple is not its reply.
    let mut ct = Conntrack::new(Config {
        nat: true,
        ..Config::new(64)
    });
    let out = udp_between((CLIENT, CPORT), (SERVER, 53));
    let mut t = track(&mut ct, &out, 0);
    let reply = FlowKey::new_v4(SERVER, PUBLIC, ip_proto::UDP, 53, 50000);
    ct.confirm_with(&mut t, Some(reply), 0).unwrap();
    let back = udp_between((SERVER, 53), (PUBLIC, 50000));
    assert_eq!(track(&mut ct, &back, MS).state, CtState::Established);
    assert!(lean(&mut ct, &out, 2 * MS).is_some());
    let stray = udp_between((SERVER, 53), (CLIENT, CPORT));
    assert_eq!(lean(&mut ct, &stray, 2 * MS), None);
}

#[test]
fn nat_binding_needs_a_nat_table() {
    let mut ct = table(8);
    let out = udp_between((CLIENT, CPORT), (SERVER, 53));
    let mut t = track(&mut ct, &out, 0);
    let reply = FlowKey::new_v4(SERVER, ROUTER, ip_proto::UDP, 53, 50000);
    assert_eq!(ct.confirm_with(&mut t, Some(reply), 0), Err(TableFull));
    assert!(ct.is_empty());
    // An identity binding is a plain confirmation.
    let orig = parse_frame(&out).unwrap().flow.unwrap();
    ct.confirm_with(&mut t, Some(orig.reply()), 0).unwrap();
    assert_eq!(ct.len(), 1);
    assert!(ct.binding(t.entry().unwrap()).is_none());
}

proptest! {
    /// A tuple and its reply tuple share their index tag (the index holds a connection once),
    /// for every protocol, ICMP queries and their answers included.
    #[test]
    fn tag_is_the_same_both_ways(
        src in any::<[u8; 16]>(),
        dst in any::<[u8; 16]>(),
        proto in prop_oneof![Just(1u8), Just(6), Just(17), Just(58), any::<u8>()],
        sp in any::<u16>(),
        dp in any::<u16>(),
        v6 in any::<bool>(),
    ) {
        let ct = table(4);
        let k = FlowKey {
            src: IpAddr128(src),
            dst: IpAddr128(dst),
            src_port: sp,
            dst_port: dp,
            proto,
            family: if v6 { Family::V6 } else { Family::V4 },
        };
        prop_assert_eq!(ct.tag(&k), ct.tag(&k.reply()));
        prop_assert!(is_reply_of(&k, &k.reply()));
        // An entry keeps the tuple as words, and gives it back whole.
        prop_assert_eq!(Words::of(&k).key(), k);
    }
}

proptest! {
    /// The pseudo-header checksum summed from the tuple gives the wire module's answer, for
    /// both families and any length, valid or not.
    #[test]
    fn l4_checksum_matches_the_pseudo_header(
        src in any::<[u8; 16]>(),
        dst in any::<[u8; 16]>(),
        proto in prop_oneof![Just(6u8), Just(17), Just(58)],
        v6 in any::<bool>(),
        mut data in proptest::collection::vec(any::<u8>(), 0..300),
        fix in any::<bool>(),
    ) {
        use crate::wire::checksum::PseudoHeader;
        let (src, dst) = if v6 {
            (IpAddr128(src), IpAddr128(dst))
        } else {
            let v4 = |a: [u8; 16]| IpAddr128::from_v4(Ipv4Addr::new(a[0], a[1], a[2], a[3]));
            (v4(src), v4(dst))
        };
        let key = FlowKey {
            src,
            dst,
            src_port: 1,
            dst_port: 2,
            proto,
            family: if v6 { Family::V6 } else { Family::V4 },
        };
        let pseudo = if v6 {
            PseudoHeader::V6 { src: src.to_v6(), dst: dst.to_v6() }
        } else {
            PseudoHeader::V4 { src: src.to_v4().unwrap(), dst: dst.to_v4().unwrap() }
        };
        if fix && data.len() >= 8 {
            // A correct checksum in bytes 6..8 (where UDP keeps it).
            data[6] = 0;
            data[7] = 0;
            let c = pseudo.checksum(proto, &data);
            data[6..8].copy_from_slice(&c.to_be_bytes());
        }
        prop_assert_eq!(
            Conntrack::l4_checksum_ok(&key, &data),
            pseudo.verify(proto, &data)
        );
    }
}

#[test]
fn device_checksum_verdicts() {
    use crate::wire::RxCsum;
    let with = |ct: &mut Conntrack, frame: &[u8], csum: RxCsum| {
        let mut info = parse_frame(frame).expect("frame parses");
        info.l4_csum = csum;
        ct.track(frame, &info, 0)
    };
    let mut tcp = seg(true, SYN, 1000, 0, &[]);
    tcp[ethernet::HEADER_LEN + 20 + 16] ^= 0x55;
    let mut dgram = udp(true, b"q");
    dgram[ethernet::HEADER_LEN + 20 + 6] ^= 1;
    for frame in [&tcp, &dgram] {
        let mut ct = table(16);
        // A sum the device found good is not checked again (the corruption here stands for
        // one the device would have seen).
        assert_eq!(with(&mut ct, frame, RxCsum::Good).state, CtState::New);
        // Without a verdict, or with a bad one, the software sum decides.
        for csum in [RxCsum::Unchecked, RxCsum::Bad] {
            assert_eq!(
                with(&mut ct, frame, csum).invalid,
                Some(Invalid::BadChecksum),
                "{csum:?}"
            );
        }
    }
    // A bad verdict on a datagram without a checksum (UDP, zero) is not believed.
    let mut zero = udp(true, b"q");
    zero[ethernet::HEADER_LEN + 20 + 6..][..2].copy_from_slice(&[0, 0]);
    assert_eq!(with(&mut table(16), &zero, RxCsum::Bad).state, CtState::New);
}

/// The counters' low parts carry into the side table: counts stay exact past 65536 packets
/// and 4 GiB, and a slot reused by a new connection starts from zero.
#[test]
fn counters_carry_past_their_low_parts() {
    let mut ct = table(1);
    let (out, back) = (udp(true, b"x"), udp(false, b"yz"));
    let len = |f: &[u8]| u64::from(parse_frame(f).unwrap().l3_len);
    let (len_out, len_back) = (len(&out), len(&back));
    let id = pass(&mut ct, &out, 0).entry().unwrap();
    let n = 70_000u64;
    for i in 1..n {
        track(&mut ct, &out, i);
        track(&mut ct, &back, i);
    }
    let c = ct.get(id, n).unwrap();
    assert_eq!(c.packets, [n, n - 1]);
    assert_eq!(c.bytes, [n * len_out, (n - 1) * len_back]);
    // Just below the byte counter's carry (set by hand: 4 GiB of traffic takes a while).
    ct.entries[id.index() as usize].bytes_lo[1] = u32::MAX - 1;
    track(&mut ct, &back, n);
    let c = ct.get(id, n).unwrap();
    assert_eq!(c.bytes[1], u64::from(u32::MAX - 1) + len_back);
    assert_eq!(c.packets, [n, n]);
    // The slot's next connection counts from one.
    ct.flush_from(0, 1, u32::MAX);
    let id2 = pass(&mut ct, &out, n).entry().unwrap();
    assert_eq!(id2, id);
    let c = ct.get(id2, n).unwrap();
    assert_eq!((c.packets, c.bytes), ([1, 0], [len_out, 0]));
}

#[test]
fn memory_is_counted_part_by_part() {
    let plain = Conntrack::new(Config::new(1000));
    let m = plain.memory();
    assert_eq!(m.entries, 1000 * 128);
    assert_eq!(m.counters_high, 1000 * 16);
    assert_eq!(m.index, 2 * 1000 * 8);
    assert_eq!(m.free_stack, 1000 * 4);
    assert_eq!(m.nat_replies, 0);
    assert_eq!(m.total(), plain.memory_bytes());
    let mut cfg = Config::new(1000);
    cfg.nat = true;
    let nat = Conntrack::new(cfg).memory();
    assert_eq!(nat.nat_replies, 1000 * core::mem::size_of::<FlowKey>());
    assert_eq!(nat.index, 2 * m.index);
    assert_eq!(nat.total() - m.total(), nat.nat_replies + m.index);
}

/// Tracks and confirms in zone `z` (as the raw table's `CT --zone` leaves the packet), then
/// leaves the default zone again, as the judgement does.
fn pass_in(ct: &mut Conntrack, z: zones::Zone, frame: &[u8], now: u64) -> Tracked {
    ct.set_zone(z);
    let t = pass(ct, frame, now);
    ct.set_zone(zones::Zone::DEFAULT);
    t
}

fn track_in(ct: &mut Conntrack, z: zones::Zone, frame: &[u8], now: u64) -> Tracked {
    ct.set_zone(z);
    let t = track(ct, frame, now);
    ct.set_zone(zones::Zone::DEFAULT);
    t
}

/// The same tuple in two zones is two connections, each answered only in its own zone
/// (`nf_ct_key_equal`), its reply too; an ICMP error is RELATED in the error's own zone;
/// the default zone's entry is apart from both; the listing shows each zone.
#[test]
fn zones_keep_connections_of_one_tuple_apart() {
    use zones::{Zone, DIR_BOTH};
    let (z1, z2) = (Zone::new(1, DIR_BOTH), Zone::new(2, DIR_BOTH));
    let mut ct = table(16);
    let q = udp(true, b"q");
    let a = pass_in(&mut ct, z1, &q, 0);
    assert_eq!(a.state, CtState::New);
    let b = pass_in(&mut ct, z2, &q, 0);
    assert_eq!(
        b.state,
        CtState::New,
        "zone 2 has no connection of its own yet"
    );
    assert_ne!(a.entry(), b.entry());
    assert_eq!(ct.len(), 2);
    ct.assert_references();
    // The answer in zone 1 belongs to zone 1's connection, not zone 2's.
    let r = pass_in(&mut ct, z1, &udp(false, b"a"), MS);
    assert_eq!(
        (r.state, r.dir, r.entry()),
        (CtState::Established, Dir::Reply, a.entry())
    );
    // In the default zone, the answer is a new connection of its own.
    let r = track(&mut ct, &udp(false, b"a"), MS);
    assert_eq!(r.state, CtState::New);
    // Zone 2's connection is still unreplied: the next query there is NEW again (UDP).
    let again = pass_in(&mut ct, z2, &q, MS);
    assert_eq!((again.state, again.entry()), (CtState::New, b.entry()));
    let info = |id| ct.get(id, MS).unwrap();
    assert!(info(a.entry().unwrap()).seen_reply && !info(b.entry().unwrap()).seen_reply);
    assert_eq!(info(a.entry().unwrap()).zone, z1);
    assert_eq!(info(b.entry().unwrap()).zone, z2);
    assert_eq!(ct.zone(b.entry().unwrap()), z2);
    // An error about the query, arriving in zone 2, relates to zone 2's connection; in the
    // default zone to none.
    let err = icmp(SERVER, CLIENT, 3, 3, 0, quote(&q, 28));
    let e = track_in(&mut ct, z2, &err, MS);
    assert_eq!((e.state, e.entry()), (CtState::Related, b.entry()));
    assert_eq!(track(&mut ct, &err, MS).state, CtState::Invalid);
    // The lean path's guess never takes a zoned entry for a default-zone packet.
    let info = parse_frame(&q).unwrap();
    let key = info.flow.unwrap();
    let (hint, found) = ct.prefetch_entry(ct.prefetch_index(&key));
    assert!(found);
    assert_eq!(ct.track_established(&q, &info, &key, hint, MS), None);
    // A connection in the default zone beside them.
    let d = pass(&mut ct, &q, 2 * MS);
    assert_eq!(d.state, CtState::New);
    assert_eq!(ct.len(), 3);
    assert_eq!(
        ct.get(d.entry().unwrap(), 2 * MS).unwrap().zone,
        Zone::DEFAULT
    );
    // Flush forgets every zone's.
    ct.flush_from(0, 16, u32::MAX);
    assert_eq!(ct.len(), 0);
    ct.assert_references();
}

/// A TCP handshake in zone 7: its reply in another zone is not ESTABLISHED (no connection
/// there: a SYN/ACK without one is INVALID), in zone 7 it is.
#[test]
fn a_reply_in_the_wrong_zone_is_not_established() {
    use zones::{Zone, DIR_BOTH};
    let z7 = Zone::new(7, DIR_BOTH);
    let mut ct = table(16);
    let t = pass_in(&mut ct, z7, &seg(true, SYN, 1000, 0, &[]), 0);
    assert_eq!(t.state, CtState::New);
    let wrong = track_in(
        &mut ct,
        Zone::new(8, DIR_BOTH),
        &seg(false, SYN | A, 5000, 1001, &[]),
        MS,
    );
    assert_ne!(wrong.state, CtState::Established);
    let wrong = track(&mut ct, &seg(false, SYN | A, 5000, 1001, &[]), MS);
    assert_ne!(wrong.state, CtState::Established);
    let right = track_in(&mut ct, z7, &seg(false, SYN | A, 5000, 1001, &[]), MS);
    assert_eq!(
        (right.state, right.dir, right.entry()),
        (CtState::Established, Dir::Reply, t.entry())
    );
}

/// Directional zones: with `--zone-orig 5` the original tuple is in zone 5 and the reply
/// tuple in the default zone, so replies arriving without a zone find it, and replies in
/// zone 5 do not; `--zone-reply 5` the other way round.
#[test]
fn directional_zones_apply_to_their_direction_only() {
    use zones::{Zone, DIR_BOTH, DIR_ORIG, DIR_REPLY};
    let orig5 = Zone::new(5, DIR_ORIG);
    let mut ct = table(16);
    let a = pass_in(&mut ct, orig5, &udp(true, b"q"), 0);
    assert_eq!(a.state, CtState::New);
    // The query again, in the default zone: zone 5 holds its original tuple, not zone 0.
    assert_eq!(track(&mut ct, &udp(true, b"q"), 0).state, CtState::New);
    // A reply in zone 5 (both directions): the connection's reply id is 0, not 5.
    assert_eq!(
        track_in(&mut ct, Zone::new(5, DIR_BOTH), &udp(false, b"a"), MS).state,
        CtState::New
    );
    // A reply in the default zone finds it.
    let r = pass(&mut ct, &udp(false, b"a"), MS);
    assert_eq!(
        (r.state, r.dir, r.entry()),
        (CtState::Established, Dir::Reply, a.entry())
    );
    // A reply in `--zone-orig 5` (whose reply id is 0) finds it too.
    let r = track_in(&mut ct, orig5, &udp(false, b"a"), MS);
    assert_eq!((r.state, r.entry()), (CtState::Established, a.entry()));
    assert_eq!(
        ct.get(a.entry().unwrap(), MS).unwrap().zone.label(),
        Some(("zone-orig", 5))
    );

    let reply5 = Zone::new(5, DIR_REPLY);
    let mut ct = table(16);
    let a = pass_in(&mut ct, reply5, &udp(true, b"q"), 0);
    // Its original tuple is in the default zone: the query without a zone is the same
    // connection.
    let q = pass(&mut ct, &udp(true, b"q"), 0);
    assert_eq!(q.entry(), a.entry());
    // Its reply tuple is in zone 5: a reply without a zone is not it.
    assert_eq!(track(&mut ct, &udp(false, b"a"), MS).state, CtState::New);
    let r = track_in(&mut ct, Zone::new(5, DIR_BOTH), &udp(false, b"a"), MS);
    assert_eq!(
        (r.state, r.dir, r.entry()),
        (CtState::Established, Dir::Reply, a.entry())
    );
}

/// `--zone mark`: the zone's id is the packet's mark's low 16 bits; other template forms.
#[test]
fn templates_give_the_zone() {
    use zones::*;
    assert_eq!(template_zone(0, 9), Zone::DEFAULT);
    assert!(template_notrack(TEMPLATE_NOTRACK));
    assert!(!template_notrack(template(5, DIR_BOTH, false)));
    assert_eq!(template_zone(TEMPLATE_NOTRACK, 9), Zone::DEFAULT);
    assert_eq!(
        template_zone(template(5, DIR_BOTH, false), 9),
        Zone::new(5, DIR_BOTH)
    );
    assert_eq!(
        template_zone(template(0, DIR_ORIG, true), 0x1_0009),
        Zone::new(9, DIR_ORIG)
    );
    assert_eq!(
        template_zone(template(0, DIR_BOTH, true), 0x1_0000),
        Zone::DEFAULT
    );
    assert_eq!(
        template_zone(template(0, DIR_BOTH, false), 3),
        Zone::DEFAULT
    );
    assert_ne!(
        template(0, DIR_BOTH, false),
        0,
        "a plain CT is a template still"
    );
    assert_eq!(Zone::new(0, DIR_ORIG), Zone::DEFAULT);
    assert_eq!(Zone::new(4, DIR_REPLY).id_for(Dir::Orig), 0);
    assert_eq!(Zone::new(4, DIR_REPLY).id_for(Dir::Reply), 4);
}

/// NAT in two zones may choose the same reply tuple: each zone's uniqueness probe sees only
/// its own zone's tuples, and each reply finds its own zone's connection.
#[test]
fn nat_in_two_zones_may_share_a_reply_tuple() {
    use zones::{Zone, DIR_BOTH};
    const PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    let (z1, z2) = (Zone::new(1, DIR_BOTH), Zone::new(2, DIR_BOTH));
    let mut ct = Conntrack::new(Config {
        nat: true,
        ..Config::new(64)
    });
    let out = udp_between((CLIENT, CPORT), (SERVER, 53));
    let reply = FlowKey::new_v4(SERVER, PUBLIC, ip_proto::UDP, 53, 50000);
    let mut ids = Vec::new();
    for z in [z1, z2] {
        ct.set_zone(z);
        assert!(!ct.tuple_in_use(&reply, 0), "free in its own zone");
        let mut t = ct.track(&out, &parse_frame(&out).unwrap(), 0);
        assert_eq!(t.state, CtState::New);
        ct.confirm_with(&mut t, Some(reply), 0).unwrap();
        assert!(ct.tuple_in_use(&reply, 0));
        ids.push(t.entry().unwrap());
        ct.set_zone(Zone::DEFAULT);
    }
    assert_ne!(ids[0], ids[1]);
    // In the default zone the reply tuple is free.
    assert!(!ct.tuple_in_use(&reply, 0));
    ct.assert_references();
    let back = udp_between((SERVER, 53), (PUBLIC, 50000));
    for (z, id) in [(z2, ids[1]), (z1, ids[0])] {
        let r = track_in(&mut ct, z, &back, MS);
        assert_eq!(
            (r.state, r.dir, r.entry()),
            (CtState::Established, Dir::Reply, Some(id))
        );
    }
    // The lean path takes neither zone's connection for the reply in the default zone (the
    // translated reply tuple's reference is probed, never guessed).
    let info = parse_frame(&back).unwrap();
    let key = info.flow.unwrap();
    let (hint, found) = ct.prefetch_entry(ct.prefetch_index(&key));
    assert!(found);
    assert_eq!(ct.track_established(&back, &info, &key, hint, 2 * MS), None);
    assert_eq!(track(&mut ct, &back, MS).state, CtState::New);
    ct.flush_from(0, 64, u32::MAX);
    ct.assert_references();
    assert_eq!(ct.stats().nat_live, 0);
}
