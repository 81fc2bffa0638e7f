//! Connection tracking scenarios: short captures whose packets exercise one part of
//! netfilter's conntrack each (TCP handshakes and teardowns, retransmissions, out-of-window
//! segments, invalid openings, simultaneous open, UDP, ICMP echo, ICMP errors quoting tracked and
//! unknown flows, fragments), over IPv4 and IPv6. The differential tests replay them through
//! Linux and through Rampart and compare the two packet by packet.
//!
//! Invariants: every checksum is valid unless the frame's description says otherwise; sources in
//! [`INSIDE`] are the inside hosts, everything else is outside; timestamps start at
//! [`EPOCH_S`] and grow by [`GAP`] per frame, so no conntrack timeout expires inside a
//! scenario; fragment identifiers are unique across all scenarios, so a reassembly queue left
//! over from one scenario never completes a datagram of another.

use anyhow::{bail, Context, Result};
use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
use dataplane::wire::tcp::Flags;
use dataplane::wire::{icmpv4, icmpv6};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The inside prefixes, as `rampart replay --inside` takes them.
pub const INSIDE: &str = "10.0.0.0/8,fd00::/8";
/// Timestamp of the first frame of every scenario (seconds since the Unix epoch).
pub const EPOCH_S: u64 = 1_767_225_600;
/// Time between two frames of a scenario.
pub const GAP: Duration = Duration::from_millis(1);

/// One frame of a scenario.
#[derive(Clone, Debug)]
pub struct Frame {
    /// A one-line description: direction, flags, what netfilter should make of it.
    pub what: String,
    pub timestamp: Duration,
    pub data: Vec<u8>,
}

/// A named capture.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub frames: Vec<Frame>,
}

/// The address family of a scenario and its hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fam {
    V4,
    V6,
}

impl Fam {
    /// The inside client.
    fn client(self) -> IpAddr {
        match self {
            Fam::V4 => Ipv4Addr::new(10, 1, 0, 2).into(),
            Fam::V6 => Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2).into(),
        }
    }

    /// An outside server.
    fn server(self) -> IpAddr {
        match self {
            Fam::V4 => Ipv4Addr::new(198, 51, 100, 20).into(),
            Fam::V6 => Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x20).into(),
        }
    }

    /// An outside router on the path (source of time-exceeded errors).
    fn router(self) -> IpAddr {
        match self {
            Fam::V4 => Ipv4Addr::new(192, 0, 2, 1).into(),
            Fam::V6 => Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1).into(),
        }
    }

    /// An outside host that opens connections towards the inside.
    fn stranger(self) -> IpAddr {
        match self {
            Fam::V4 => Ipv4Addr::new(203, 0, 113, 5).into(),
            Fam::V6 => Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 5).into(),
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Fam::V4 => "",
            Fam::V6 => "-v6",
        }
    }

    fn ip(self, src: IpAddr, dst: IpAddr) -> IpSpec {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => IpSpec::v4(s, d),
            (IpAddr::V6(s), IpAddr::V6(d)) => IpSpec::v6(s, d),
            _ => unreachable!("mixed families in one packet"),
        }
    }

    /// Length of the fixed IP header.
    fn ip_header_len(self) -> usize {
        match self {
            Fam::V4 => 20,
            Fam::V6 => 40,
        }
    }
}

const ETH_LEN: usize = 14;
/// A TCP window that holds every segment of these scenarios (no window scaling is offered).
const WINDOW: u16 = 64240;

/// Frames under construction, timestamped as they are added.
struct Capture {
    fam: Fam,
    frames: Vec<Frame>,
}

impl Capture {
    fn new(fam: Fam) -> Capture {
        Capture {
            fam,
            frames: Vec::new(),
        }
    }

    fn push_bytes(&mut self, what: String, data: Vec<u8>) {
        let timestamp = Duration::from_secs(EPOCH_S) + GAP * self.frames.len() as u32;
        self.frames.push(Frame {
            what,
            timestamp,
            data,
        });
    }

    fn push(&mut self, what: impl Into<String>, spec: &FrameSpec) {
        self.push_bytes(what.into(), spec.build());
    }

    fn spec(&self, src: IpAddr, dst: IpAddr, l4: L4Spec) -> FrameSpec {
        FrameSpec::new(self.fam.ip(src, dst), l4)
    }

    /// A frame whose L4 checksum is wrong (one bit flipped).
    fn push_bad_checksum(&mut self, what: &str, spec: &FrameSpec) {
        let mut data = spec.build();
        let at = ETH_LEN
            + self.fam.ip_header_len()
            + match spec.l4 {
                L4Spec::Tcp { .. } => 16,
                L4Spec::Udp { .. } => 6,
                _ => 2,
            };
        data[at + 1] ^= 0x01;
        self.push_bytes(format!("{what} (bad L4 checksum)"), data);
    }

    /// The datagram as fragments of `piece` L4 bytes, added in the order `order` gives (indexes
    /// into the fragment list; may leave fragments out).
    fn push_fragments(&mut self, what: &str, spec: &FrameSpec, piece: usize, order: &[usize]) {
        let frags = spec.fragments(piece);
        assert!(
            order.iter().all(|&i| i < frags.len()),
            "{what}: {} fragments",
            frags.len()
        );
        for &i in order {
            self.push_bytes(
                format!("{what} fragment {}/{}", i + 1, frags.len()),
                frags[i].clone(),
            );
        }
    }

    fn finish(self, name: &str) -> Scenario {
        Scenario {
            name: format!("{name}{}", self.fam.suffix()),
            frames: self.frames,
        }
    }
}

/// Sets the IP identification (IPv4) or fragment identification (IPv6) of a spec.
fn with_ident(mut spec: FrameSpec, id: u32) -> FrameSpec {
    match &mut spec.ip {
        IpSpec::V4 { ident, .. } => *ident = id as u16,
        IpSpec::V6 { ident, .. } => *ident = id,
    }
    spec
}

fn tcp(sport: u16, dport: u16, flags: Flags, seq: u32, ack: u32, payload: &[u8]) -> L4Spec {
    L4Spec::Tcp {
        sport,
        dport,
        seq,
        ack,
        flags,
        window: WINDOW,
        options: Vec::new(),
        payload: payload.to_vec(),
    }
}

/// The MSS option a SYN carries (and no window scaling, so windows are taken as they are).
fn syn(sport: u16, dport: u16, flags: Flags, seq: u32, ack: u32) -> L4Spec {
    let mut l4 = tcp(sport, dport, flags, seq, ack, &[]);
    if let L4Spec::Tcp { options, .. } = &mut l4 {
        *options = dataplane::wire::builder::tcp_options(&[
            dataplane::wire::tcp::TcpOption::MaxSegmentSize(1460),
        ]);
    }
    l4
}

const SYN: Flags = Flags::SYN;
const ACK: Flags = Flags::ACK;
const SYN_ACK: Flags = Flags(Flags::SYN.0 | Flags::ACK.0);
const PSH_ACK: Flags = Flags(Flags::PSH.0 | Flags::ACK.0);
const FIN_ACK: Flags = Flags(Flags::FIN.0 | Flags::ACK.0);
const RST: Flags = Flags::RST;
const RST_ACK: Flags = Flags(Flags::RST.0 | Flags::ACK.0);

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

/// One TCP connection between the inside client and an outside server, with the sequence
/// numbers of both ends kept as segments are added.
struct Conn {
    fam: Fam,
    c: IpAddr,
    s: IpAddr,
    cport: u16,
    sport: u16,
    /// Next sequence number of the client and of the server.
    cseq: u32,
    sseq: u32,
    /// How descriptions name the two directions.
    c2s_label: &'static str,
    s2c_label: &'static str,
}

impl Conn {
    fn new(fam: Fam, cport: u16, sport: u16, ciss: u32, siss: u32) -> Conn {
        Conn {
            fam,
            c: fam.client(),
            s: fam.server(),
            cport,
            sport,
            cseq: ciss,
            sseq: siss,
            c2s_label: "c>s",
            s2c_label: "s>c",
        }
    }

    /// Client to server.
    fn c2s(&self, flags: Flags, payload: &[u8]) -> FrameSpec {
        let ack = if flags.contains(ACK) { self.sseq } else { 0 };
        FrameSpec::new(
            self.fam.ip(self.c, self.s),
            if flags.contains(SYN) {
                syn(self.cport, self.sport, flags, self.cseq, ack)
            } else {
                tcp(self.cport, self.sport, flags, self.cseq, ack, payload)
            },
        )
    }

    /// Server to client.
    fn s2c(&self, flags: Flags, payload: &[u8]) -> FrameSpec {
        let ack = if flags.contains(ACK) { self.cseq } else { 0 };
        FrameSpec::new(
            self.fam.ip(self.s, self.c),
            if flags.contains(SYN) {
                syn(self.sport, self.cport, flags, self.sseq, ack)
            } else {
                tcp(self.sport, self.cport, flags, self.sseq, ack, payload)
            },
        )
    }

    /// Sends a client segment and advances the client's sequence number.
    fn client(&mut self, cap: &mut Capture, what: &str, flags: Flags, payload: &[u8]) {
        cap.push(
            format!("{} {what}", self.c2s_label),
            &self.c2s(flags, payload),
        );
        self.cseq = self.cseq.wrapping_add(seg_len(flags, payload));
    }

    /// Sends a server segment and advances the server's sequence number.
    fn server(&mut self, cap: &mut Capture, what: &str, flags: Flags, payload: &[u8]) {
        cap.push(
            format!("{} {what}", self.s2c_label),
            &self.s2c(flags, payload),
        );
        self.sseq = self.sseq.wrapping_add(seg_len(flags, payload));
    }

    fn handshake(&mut self, cap: &mut Capture) {
        self.client(cap, "SYN", SYN, &[]);
        self.server(cap, "SYN/ACK", SYN_ACK, &[]);
        self.client(cap, "ACK", ACK, &[]);
    }
}

/// Sequence space a segment occupies: its payload, plus one for SYN and for FIN.
fn seg_len(flags: Flags, payload: &[u8]) -> u32 {
    payload.len() as u32 + u32::from(flags.contains(SYN)) + u32::from(flags.contains(Flags::FIN))
}

/// The invoking packet an ICMP error quotes: the IP packet of `spec`, cut as routers cut it
/// (IPv4: header and the first 8 bytes of the payload, RFC 792; IPv6: all of it that fits in
/// the minimum MTU, RFC 4443 §2.4).
fn quote(fam: Fam, spec: &FrameSpec) -> Vec<u8> {
    let frame = spec.build();
    let ip = &frame[ETH_LEN..];
    match fam {
        Fam::V4 => ip[..(20 + 8).min(ip.len())].to_vec(),
        Fam::V6 => ip[..ip.len().min(1280 - 48)].to_vec(),
    }
}

/// The kinds of ICMP errors the scenarios send.
#[derive(Clone, Copy)]
enum IcmpError {
    PortUnreachable,
    TimeExceeded,
    /// ICMPv6 only.
    PacketTooBig,
}

fn icmp_error(fam: Fam, kind: IcmpError, quoted: Vec<u8>) -> L4Spec {
    match fam {
        Fam::V4 => {
            let (ty, code) = match kind {
                IcmpError::PortUnreachable => (icmpv4::msg_type::DEST_UNREACHABLE, 3),
                IcmpError::TimeExceeded => (icmpv4::msg_type::TIME_EXCEEDED, 0),
                IcmpError::PacketTooBig => (icmpv4::msg_type::DEST_UNREACHABLE, 4),
            };
            L4Spec::Icmp {
                ty,
                code,
                ident: 0,
                seq: if matches!(kind, IcmpError::PacketTooBig) {
                    1280
                } else {
                    0
                },
                payload: quoted,
            }
        }
        Fam::V6 => {
            let (ty, code, mtu) = match kind {
                IcmpError::PortUnreachable => (icmpv6::msg_type::DEST_UNREACHABLE, 4, 0),
                IcmpError::TimeExceeded => (icmpv6::msg_type::TIME_EXCEEDED, 0, 0),
                IcmpError::PacketTooBig => (icmpv6::msg_type::PACKET_TOO_BIG, 0, 1280),
            };
            L4Spec::Icmpv6 {
                ty,
                code,
                ident: 0,
                seq: mtu,
                payload: quoted,
            }
        }
    }
}

fn echo(fam: Fam, reply: bool, ident: u16, seq: u16) -> L4Spec {
    let payload = data(32, seq as u8);
    match fam {
        Fam::V4 => L4Spec::Icmp {
            ty: if reply {
                icmpv4::msg_type::ECHO_REPLY
            } else {
                icmpv4::msg_type::ECHO_REQUEST
            },
            code: 0,
            ident,
            seq,
            payload,
        },
        Fam::V6 => L4Spec::Icmpv6 {
            ty: if reply {
                icmpv6::msg_type::ECHO_REPLY
            } else {
                icmpv6::msg_type::ECHO_REQUEST
            },
            code: 0,
            ident,
            seq,
            payload,
        },
    }
}

/// Handshake, data both ways, FIN from each side, and a late ACK in TIME_WAIT.
fn tcp_handshake_fin(fam: Fam) -> Scenario {
    let mut cap = Capture::new(fam);
    let mut k = Conn::new(fam, 40001, 80, 1_000_000, 3_000_000);
    k.handshake(&mut cap);
    k.client(&mut cap, "data 100", PSH_ACK, &data(100, 1));
    k.server(&mut cap, "ACK", ACK, &[]);
    k.server(&mut cap, "data 300", PSH_ACK, &data(300, 2));
    k.client(&mut cap, "ACK", ACK, &[]);
    k.client(&mut cap, "FIN", FIN_ACK, &[]);
    k.server(&mut cap, "ACK of FIN", ACK, &[]);
    k.server(&mut cap, "FIN", FIN_ACK, &[]);
    k.client(&mut cap, "last ACK", ACK, &[]);
    cap.push("c>s ACK again (TIME_WAIT)", &k.c2s(ACK, &[]));
    // A connection opened from outside to an inside server, closed the same way.
    let mut o = Conn::new(fam, 22, 50001, 7_000_000, 9_000_000);
    o.c = fam.client();
    o.s = fam.stranger();
    (o.c2s_label, o.s2c_label) = ("c>x", "x>c");
    // The outside host opens this one.
    o.server(&mut cap, "SYN from outside to inside port 22", SYN, &[]);
    o.client(&mut cap, "SYN/ACK from inside", SYN_ACK, &[]);
    o.server(&mut cap, "ACK", ACK, &[]);
    o.server(&mut cap, "data 40", PSH_ACK, &data(40, 3));
    o.client(&mut cap, "data 40 + ACK", PSH_ACK, &data(40, 4));
    o.server(&mut cap, "FIN", FIN_ACK, &[]);
    o.client(&mut cap, "FIN", FIN_ACK, &[]);
    o.server(&mut cap, "last ACK", ACK, &[]);
    cap.finish("tcp-handshake-fin")
}

/// Connections torn down by RST from either side, and what follows the reset.
fn tcp_rst(fam: Fam) -> Scenario {
    let mut cap = Capture::new(fam);
    let mut k = Conn::new(fam, 40002, 443, 2_000_000, 4_000_000);
    k.handshake(&mut cap);
    k.client(&mut cap, "data 50", PSH_ACK, &data(50, 5));
    k.server(&mut cap, "RST/ACK", RST_ACK, &[]);
    k.client(&mut cap, "data after reset", PSH_ACK, &data(20, 6));
    let mut k2 = Conn::new(fam, 40003, 443, 5_000_000, 6_000_000);
    k2.handshake(&mut cap);
    k2.server(&mut cap, "data 30", PSH_ACK, &data(30, 7));
    k2.client(&mut cap, "RST", RST, &[]);
    k2.server(&mut cap, "data after reset", PSH_ACK, &data(10, 8));
    // A reset answering a SYN: the connection is refused.
    let mut k3 = Conn::new(fam, 40004, 25, 8_000_000, 0);
    k3.client(&mut cap, "SYN", SYN, &[]);
    k3.server(&mut cap, "RST/ACK (refused)", RST_ACK, &[]);
    k3.client(&mut cap, "SYN again (new attempt)", SYN, &[]);
    cap.finish("tcp-rst")
}

/// Retransmitted SYN, SYN/ACK, data and ACK.
fn tcp_retransmit(fam: Fam) -> Scenario {
    let mut cap = Capture::new(fam);
    let mut k = Conn::new(fam, 40005, 80, 11_000_000, 12_000_000);
    cap.push("c>s SYN", &k.c2s(SYN, &[]));
    cap.push("c>s SYN retransmitted", &k.c2s(SYN, &[]));
    k.cseq += 1;
    cap.push("s>c SYN/ACK", &k.s2c(SYN_ACK, &[]));
    cap.push("s>c SYN/ACK retransmitted", &k.s2c(SYN_ACK, &[]));
    k.sseq += 1;
    k.client(&mut cap, "ACK", ACK, &[]);
    let d = data(200, 9);
    cap.push("c>s data 200", &k.c2s(PSH_ACK, &d));
    cap.push("c>s data 200 retransmitted", &k.c2s(PSH_ACK, &d));
    k.cseq += d.len() as u32;
    cap.push("s>c ACK", &k.s2c(ACK, &[]));
    cap.push("s>c duplicate ACK", &k.s2c(ACK, &[]));
    k.server(&mut cap, "data 100", PSH_ACK, &data(100, 10));
    k.client(&mut cap, "ACK", ACK, &[]);
    cap.finish("tcp-retransmit")
}

/// Segments outside the receiver's window, and ACKs of data never sent.
fn tcp_out_of_window(fam: Fam) -> Scenario {
    let mut cap = Capture::new(fam);
    let mut k = Conn::new(fam, 40006, 80, 21_000_000, 22_000_000);
    k.handshake(&mut cap);
    k.client(&mut cap, "data 100", PSH_ACK, &data(100, 11));
    k.server(&mut cap, "ACK", ACK, &[]);
    let far = FrameSpec::new(
        fam.ip(k.s, k.c),
        tcp(
            k.sport,
            k.cport,
            PSH_ACK,
            k.sseq.wrapping_add(1_000_000),
            k.cseq,
            &data(100, 12),
        ),
    );
    cap.push("s>c data 1 MB beyond the window", &far);
    let behind = FrameSpec::new(
        fam.ip(k.c, k.s),
        tcp(
            k.cport,
            k.sport,
            PSH_ACK,
            k.cseq.wrapping_sub(500_000),
            k.sseq,
            &data(50, 13),
        ),
    );
    cap.push("c>s data 500 KB before the window", &behind);
    let ack_ahead = FrameSpec::new(
        fam.ip(k.c, k.s),
        tcp(
            k.cport,
            k.sport,
            ACK,
            k.cseq,
            k.sseq.wrapping_add(200_000),
            &[],
        ),
    );
    cap.push("c>s ACK of 200 KB never sent", &ack_ahead);
    k.server(&mut cap, "data 100 in window", PSH_ACK, &data(100, 14));
    k.client(&mut cap, "ACK", ACK, &[]);
    cap.finish("tcp-out-of-window")
}

/// Segments that open nothing: SYN/ACK, RST, FIN and bad flag combinations without a
/// connection, a bad checksum, and an ACK picked up mid-stream.
fn tcp_invalid(fam: Fam) -> Scenario {
    let mut cap = Capture::new(fam);
    let (c, s, x) = (fam.client(), fam.server(), fam.stranger());
    cap.push(
        "x>c SYN/ACK without SYN",
        &cap.spec(x, c, syn(443, 40010, SYN_ACK, 100, 200)),
    );
    cap.push(
        "s>c RST without a connection",
        &cap.spec(s, c, tcp(80, 40011, RST, 100, 0, &[])),
    );
    cap.push(
        "c>s FIN without a connection",
        &cap.spec(c, s, tcp(40012, 80, FIN_ACK, 100, 200, &[])),
    );
    cap.push(
        "c>s SYN+FIN",
        &cap.spec(
            c,
            s,
            tcp(40013, 80, Flags(SYN.0 | Flags::FIN.0), 100, 0, &[]),
        ),
    );
    cap.push(
        "c>s no flags at all",
        &cap.spec(c, s, tcp(40014, 80, Flags(0), 100, 0, &[])),
    );
    let bad = cap.spec(c, s, syn(40015, 80, SYN, 100, 0));
    cap.push_bad_checksum("c>s SYN", &bad);
    // Mid-stream pickup (nf_conntrack_tcp_loose=1): an ACK opens a connection.
    cap.push(
        "c>s ACK mid-stream (picked up)",
        &cap.spec(c, s, tcp(40016, 80, PSH_ACK, 5000, 9000, &data(20, 15))),
    );
    cap.push(
        "s>c ACK mid-stream reply",
        &cap.spec(s, c, tcp(80, 40016, ACK, 9000, 5020, &[])),
    );
    cap.push(
        "x>c ACK mid-stream from outside",
        &cap.spec(x, c, tcp(50017, 22, ACK, 5000, 9000, &[])),
    );
    cap.finish("tcp-invalid")
}

/// Both ends send SYN at once, then SYN/ACK (RFC 9293 §3.5 figure 8).
fn tcp_simultaneous_open(fam: Fam) -> Scenario {
    let mut cap = Capture::new(fam);
    let mut k = Conn::new(fam, 40020, 40021, 31_000_000, 32_000_000);
    cap.push("c>s SYN", &k.c2s(SYN, &[]));
    cap.push("s>c SYN (crossing)", &k.s2c(SYN, &[]));
    k.cseq += 1;
    k.sseq += 1;
    let synack_c = FrameSpec::new(
        fam.ip(k.c, k.s),
        syn(k.cport, k.sport, SYN_ACK, k.cseq - 1, k.sseq),
    );
    cap.push("c>s SYN/ACK", &synack_c);
    let synack_s = FrameSpec::new(
        fam.ip(k.s, k.c),
        syn(k.sport, k.cport, SYN_ACK, k.sseq - 1, k.cseq),
    );
    cap.push("s>c SYN/ACK", &synack_s);
    k.client(&mut cap, "ACK", ACK, &[]);
    k.client(&mut cap, "data 64", PSH_ACK, &data(64, 16));
    k.server(&mut cap, "ACK", ACK, &[]);
    cap.finish("tcp-simultaneous-open")
}

/// UDP: request and response, repeated; unreplied flows from either side; a bad checksum.
fn udp(fam: Fam) -> Scenario {
    let mut cap = Capture::new(fam);
    let (c, s, x) = (fam.client(), fam.server(), fam.stranger());
    let q = |p: &[u8]| L4Spec::udp(53001, 53, p);
    let r = |p: &[u8]| L4Spec::udp(53, 53001, p);
    cap.push("c>s query", &cap.spec(c, s, q(&data(30, 17))));
    cap.push("s>c response", &cap.spec(s, c, r(&data(90, 18))));
    cap.push("c>s second query", &cap.spec(c, s, q(&data(30, 19))));
    cap.push("s>c second response", &cap.spec(s, c, r(&data(90, 20))));
    for i in 0..3 {
        cap.push(
            format!("c>s unreplied datagram {}", i + 1),
            &cap.spec(c, s, L4Spec::udp(40030, 5000, &data(20, i))),
        );
    }
    for i in 0..2 {
        cap.push(
            format!("x>c unsolicited datagram {}", i + 1),
            &cap.spec(x, c, L4Spec::udp(40031, 5001, &data(20, i))),
        );
    }
    cap.push_bad_checksum(
        "c>s datagram",
        &cap.spec(c, s, L4Spec::udp(40032, 53, b"x")),
    );
    cap.finish("udp")
}

/// ICMP echo: request and reply, repeated; a reply nobody asked for; unreplied requests.
fn icmp_echo(fam: Fam) -> Scenario {
    let mut cap = Capture::new(fam);
    let (c, s, x) = (fam.client(), fam.server(), fam.stranger());
    cap.push(
        "c>s echo request",
        &cap.spec(c, s, echo(fam, false, 0x100, 1)),
    );
    cap.push("s>c echo reply", &cap.spec(s, c, echo(fam, true, 0x100, 1)));
    cap.push(
        "c>s echo request 2",
        &cap.spec(c, s, echo(fam, false, 0x100, 2)),
    );
    cap.push(
        "s>c echo reply 2",
        &cap.spec(s, c, echo(fam, true, 0x100, 2)),
    );
    cap.push(
        "x>c echo reply without a request",
        &cap.spec(x, c, echo(fam, true, 0x200, 1)),
    );
    cap.push(
        "x>c echo request from outside",
        &cap.spec(x, c, echo(fam, false, 0x300, 1)),
    );
    cap.push(
        "x>c echo request from outside, unanswered",
        &cap.spec(x, c, echo(fam, false, 0x300, 2)),
    );
    cap.push(
        "c>s echo request, unanswered",
        &cap.spec(c, s, echo(fam, false, 0x400, 1)),
    );
    cap.finish("icmp-echo")
}

/// ICMP errors quoting a tracked TCP and UDP flow (RELATED) and quoting flows nobody opened.
fn icmp_errors(fam: Fam) -> Scenario {
    let mut cap = Capture::new(fam);
    let (c, s, r) = (fam.client(), fam.server(), fam.router());
    let mut k = Conn::new(fam, 40040, 80, 41_000_000, 42_000_000);
    let syn_spec = k.c2s(SYN, &[]);
    k.client(&mut cap, "SYN", SYN, &[]);
    cap.push(
        "r>c time exceeded quoting the SYN",
        &cap.spec(
            r,
            c,
            icmp_error(fam, IcmpError::TimeExceeded, quote(fam, &syn_spec)),
        ),
    );
    k.server(&mut cap, "SYN/ACK", SYN_ACK, &[]);
    k.client(&mut cap, "ACK", ACK, &[]);
    let big = k.c2s(PSH_ACK, &data(1000, 21));
    k.client(&mut cap, "data 1000", PSH_ACK, &data(1000, 21));
    let (kind, what) = match fam {
        Fam::V4 => (
            IcmpError::PacketTooBig,
            "r>c fragmentation needed quoting the data",
        ),
        Fam::V6 => (
            IcmpError::PacketTooBig,
            "r>c packet too big quoting the data",
        ),
    };
    cap.push(
        what,
        &cap.spec(r, c, icmp_error(fam, kind, quote(fam, &big))),
    );
    let udp_spec = cap.spec(c, s, L4Spec::udp(40041, 4000, &data(40, 22)));
    cap.push("c>s UDP datagram", &udp_spec);
    cap.push(
        "s>c port unreachable quoting the datagram",
        &cap.spec(
            s,
            c,
            icmp_error(fam, IcmpError::PortUnreachable, quote(fam, &udp_spec)),
        ),
    );
    let never = cap.spec(c, s, L4Spec::udp(40042, 4001, &data(40, 23)));
    cap.push(
        "s>c port unreachable quoting a datagram never sent",
        &cap.spec(
            s,
            c,
            icmp_error(fam, IcmpError::PortUnreachable, quote(fam, &never)),
        ),
    );
    let never_tcp = cap.spec(c, s, syn(40043, 81, SYN, 1, 0));
    cap.push(
        "r>c time exceeded quoting a SYN never sent",
        &cap.spec(
            r,
            c,
            icmp_error(fam, IcmpError::TimeExceeded, quote(fam, &never_tcp)),
        ),
    );
    // An error travelling inside-to-outside about the reply direction of the TCP flow.
    let reply = k.s2c(ACK, &[]);
    cap.push(
        "c>s port unreachable quoting a server segment",
        &cap.spec(
            c,
            s,
            icmp_error(fam, IcmpError::PortUnreachable, quote(fam, &reply)),
        ),
    );
    cap.finish("icmp-errors")
}

/// Fragmented UDP and ICMP echo: in order, out of order, and incomplete datagrams.
fn fragments(fam: Fam, ids: u32) -> Scenario {
    let mut cap = Capture::new(fam);
    let (c, s, x) = (fam.client(), fam.server(), fam.stranger());
    let q = with_ident(
        cap.spec(c, s, L4Spec::udp(40050, 7000, &data(1200, 24))),
        ids,
    );
    cap.push_fragments("c>s UDP 1200 in order", &q, 512, &[0, 1, 2]);
    let r = with_ident(
        cap.spec(s, c, L4Spec::udp(7000, 40050, &data(1000, 25))),
        ids + 1,
    );
    cap.push_fragments("s>c UDP 1000 out of order", &r, 400, &[2, 0, 1]);
    let e = with_ident(cap.spec(c, s, echo_big(fam, false)), ids + 2);
    cap.push_fragments("c>s echo request 1400 in order", &e, 600, &[0, 1, 2]);
    let er = with_ident(cap.spec(s, c, echo_big(fam, true)), ids + 3);
    cap.push_fragments("s>c echo reply 1400 last first", &er, 600, &[2, 1, 0]);
    let lone = with_ident(
        cap.spec(x, c, L4Spec::udp(40051, 7001, &data(900, 26))),
        ids + 4,
    );
    cap.push_fragments("x>c UDP 900 without its first", &lone, 400, &[1, 2]);
    let head = with_ident(
        cap.spec(c, s, L4Spec::udp(40052, 7002, &data(900, 27))),
        ids + 5,
    );
    cap.push_fragments("c>s UDP 900 without its last", &head, 400, &[0, 1]);
    cap.finish("fragments")
}

fn echo_big(fam: Fam, reply: bool) -> L4Spec {
    let mut l4 = echo(fam, reply, 0x500, 1);
    match &mut l4 {
        L4Spec::Icmp { payload, .. } | L4Spec::Icmpv6 { payload, .. } => *payload = data(1400, 28),
        _ => unreachable!(),
    }
    l4
}

/// Every scenario, IPv4 first, then the IPv6 twins.
pub fn all() -> Vec<Scenario> {
    let mut v = Vec::new();
    for (i, fam) in [Fam::V4, Fam::V6].into_iter().enumerate() {
        v.push(tcp_handshake_fin(fam));
        v.push(tcp_rst(fam));
        v.push(tcp_retransmit(fam));
        v.push(tcp_out_of_window(fam));
        v.push(tcp_invalid(fam));
        v.push(tcp_simultaneous_open(fam));
        v.push(udp(fam));
        v.push(icmp_echo(fam));
        v.push(icmp_errors(fam));
        v.push(fragments(fam, 0x4a00 + 0x10 * i as u32));
    }
    v
}

/// The names of [`all`], in order.
pub fn names() -> Vec<String> {
    all().into_iter().map(|s| s.name).collect()
}

/// Writes `NAME.pcap` and `NAME.txt` (one line per frame: index and description) into `dir`
/// for each scenario in `only` (all when empty); returns the pcap paths.
pub fn write(dir: &Path, only: &[String]) -> Result<Vec<PathBuf>> {
    let all = all();
    if let Some(unknown) = only.iter().find(|n| !all.iter().any(|s| &s.name == *n)) {
        bail!(
            "unknown scenario {unknown:?}; known: {}",
            names().join(", ")
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut paths = Vec::new();
    for s in all
        .into_iter()
        .filter(|s| only.is_empty() || only.contains(&s.name))
    {
        let pcap = dir.join(format!("{}.pcap", s.name));
        let mut w = control::pcap::FrameWriter::create(&pcap, control::pcap::Link::Ethernet)?;
        for f in &s.frames {
            w.write(f.timestamp, &f.data)?;
        }
        w.finish()?;
        let text: String = s
            .frames
            .iter()
            .enumerate()
            .map(|(i, f)| format!("{i:3} {}\n", f.what))
            .collect();
        let txt = dir.join(format!("{}.txt", s.name));
        std::fs::write(&txt, text).with_context(|| format!("writing {}", txt.display()))?;
        paths.push(pcap);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::wire::checksum::PseudoHeader;
    use dataplane::wire::{parse_frame, Fragment};

    #[test]
    fn names_are_unique_and_both_families_are_covered() {
        let names = names();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        for n in &names {
            if !n.ends_with("-v6") {
                assert!(names.contains(&format!("{n}-v6")), "{n} has no IPv6 twin");
            }
        }
    }

    /// Every frame parses; frames that claim a valid checksum carry one (the L4 checksum
    /// over the pseudo-header sums to zero), and the one-bit-flipped ones do not.
    #[test]
    fn frames_parse_and_checksums_hold() {
        for s in all() {
            let mut last = Duration::ZERO;
            for (i, f) in s.frames.iter().enumerate() {
                assert!(f.timestamp > last, "{} {i}: timestamps grow", s.name);
                last = f.timestamp;
                let info = parse_frame(&f.data)
                    .unwrap_or_else(|e| panic!("{} {i} {}: {e:?}", s.name, f.what));
                if !matches!(info.frag, Fragment::None) {
                    continue;
                }
                let l4 = info.l4_bytes(&f.data).unwrap();
                let key = info.flow.unwrap();
                let pseudo = match (key.src.to_std(), key.dst.to_std()) {
                    (IpAddr::V4(src), IpAddr::V4(dst)) => PseudoHeader::V4 { src, dst },
                    (IpAddr::V6(src), IpAddr::V6(dst)) => PseudoHeader::V6 { src, dst },
                    _ => unreachable!(),
                };
                let sum = if key.proto == dataplane::wire::ip_proto::ICMP {
                    dataplane::wire::checksum::checksum(l4)
                } else {
                    pseudo_sum(&pseudo, key.proto, l4)
                };
                let bad = f.what.contains("bad L4 checksum");
                assert_eq!(sum == 0, !bad, "{} {i} {}: checksum", s.name, f.what);
            }
        }
    }

    fn pseudo_sum(p: &PseudoHeader, proto: u8, l4: &[u8]) -> u16 {
        let mut buf = Vec::new();
        match p {
            PseudoHeader::V4 { src, dst } => {
                buf.extend_from_slice(&src.octets());
                buf.extend_from_slice(&dst.octets());
                buf.extend_from_slice(&[0, proto]);
                buf.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            }
            PseudoHeader::V6 { src, dst } => {
                buf.extend_from_slice(&src.octets());
                buf.extend_from_slice(&dst.octets());
                buf.extend_from_slice(&(l4.len() as u32).to_be_bytes());
                buf.extend_from_slice(&[0, 0, 0, proto]);
            }
        }
        buf.extend_from_slice(l4);
        dataplane::wire::checksum::checksum(&buf)
    }

    #[test]
    fn tcp_sequence_numbers_follow_the_conversation() {
        let s = all()
            .into_iter()
            .find(|s| s.name == "tcp-handshake-fin")
            .unwrap();
        let seq_ack = |i: usize| {
            let f = &s.frames[i].data;
            let t = &f[ETH_LEN + 20..];
            (
                u32::from_be_bytes(t[4..8].try_into().unwrap()),
                u32::from_be_bytes(t[8..12].try_into().unwrap()),
            )
        };
        assert_eq!(seq_ack(0), (1_000_000, 0));
        assert_eq!(seq_ack(1), (3_000_000, 1_000_001));
        assert_eq!(seq_ack(2), (1_000_001, 3_000_001));
        // After 100 bytes from the client, the server acknowledges them.
        assert_eq!(seq_ack(4), (3_000_001, 1_000_101));
    }

    #[test]
    fn write_refuses_unknown_names() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write(dir.path(), &["nope".into()]).is_err());
        let paths = write(dir.path(), &["udp-v6".into()]).unwrap();
        assert_eq!(paths.len(), 1);
        let frames = control::pcap::read_frames(&paths[0]).unwrap();
        assert_eq!(frames.len(), udp(Fam::V6).frames.len());
        assert_eq!(frames[0].timestamp, Duration::from_secs(EPOCH_S));
    }
}
