//! FAST PATH (`Endpoint::step` and what it calls): no allocation (the queues are allocated
//! once with their bound), lock, syscall or log.
//!
//! TCP connections with both sides, for connection-rate tests of a stateful firewall. The TX
//! port is the client side and the RX port the server side of every connection; each segment
//! after the SYN is sent when the one it answers has come through the device under test, so
//! conntrack sees a connection in the order a real one has:
//!
//! ```text
//! client (TX port)                      server (RX port)
//!   SYN            seq=C           -->
//!                                  <--  SYN+ACK  seq=S      ack=C+1
//!   ACK            seq=C+1 ack=S+1 -->
//!   D x PSH+ACK    (data)          -->
//!   FIN+ACK        seq=C+1+L       -->
//!                                  <--  FIN+ACK  seq=S+1    ack=C+2+L
//!   ACK            seq=C+2+L ack=S+2 -->          (connection complete)
//! ```
//!
//! Responses are built from the segment received (its addresses and ports swapped, its
//! sequence and acknowledgement numbers advanced), so the generator keeps no per-connection
//! state; it counts connections opened, and completed when the server side receives the last
//! ACK. At most `inflight` connections are open at once; when nothing arrives for the stall
//! time while some are open, they are counted as abandoned (a segment was lost: nothing is
//! retransmitted) and new ones open. One lcore runs both sides.
//!
//! Invariants: every frame sent parses with `parse_frame` and carries valid IPv4 and TCP
//! checksums (checked by the unit tests), is at least 60 bytes (64 with FCS), and client frames
//! carry the configured MACs, server frames the same MACs swapped.

use super::frames::{FlowCursor, FlowFields, TrafficSpec, FCS_LEN};
use dataplane::dpdk::{tsc, Mempool, RxBurst, RxQueue, TxBatch, TxQueue, MAX_BURST};
use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
use dataplane::wire::checksum::{checksum, PseudoHeader};
use dataplane::wire::ip_proto;
use dataplane::wire::tcp::Flags;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// The client's initial sequence number.
pub const CLIENT_ISN: u32 = 0x1000_0000;
/// The server's initial sequence number.
pub const SERVER_ISN: u32 = 0x7000_0000;

const SYN: u8 = Flags::SYN.0;
const ACK: u8 = Flags::ACK.0;
const FIN: u8 = Flags::FIN.0;
const PSH: u8 = Flags::PSH.0;

/// The frame shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Client: SYN.
    Syn,
    /// Server: SYN+ACK.
    SynAck,
    /// Client: ACK (the handshake's third segment, and the last one).
    Ack,
    /// Client: PSH+ACK with payload.
    Data,
    /// Client or server: FIN+ACK.
    FinAck,
}

/// One segment to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub kind: Kind,
    /// Addresses and ports as sent (source is the sender).
    pub flow: FlowFields,
    pub seq: u32,
    pub ack: u32,
}

/// A received TCP segment's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    pub flow: FlowFields,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub payload: u32,
}

/// Frame templates of one side.
#[derive(Clone, Debug)]
pub struct Shapes {
    v6: bool,
    syn: Vec<u8>,
    syn_ack: Vec<u8>,
    ack: Vec<u8>,
    data: Vec<u8>,
    fin_ack: Vec<u8>,
    /// Payload bytes of a data segment.
    pub data_len: u32,
}

const L3: usize = 14;

impl Shapes {
    /// The shapes for `spec`: data segments of its first size (with FCS), control segments
    /// padded to 64 bytes with FCS. `server` swaps the MACs.
    pub fn new(spec: &TrafficSpec, server: bool) -> Shapes {
        let v6 = spec.src.v6;
        let hdr = L3 + if v6 { 40 } else { 20 } + 20;
        let size = usize::from(spec.sizes.first().copied().unwrap_or(64));
        let data_len = size.saturating_sub(FCS_LEN + hdr).max(1);
        let (src_mac, dst_mac) = if server {
            (spec.dst_mac, spec.src_mac)
        } else {
            (spec.src_mac, spec.dst_mac)
        };
        let build = |flags: u8, payload: usize| {
            let ip = if v6 {
                IpSpec::v6(Ipv6Addr::UNSPECIFIED, Ipv6Addr::UNSPECIFIED)
            } else {
                IpSpec::v4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED)
            };
            let mut f = FrameSpec {
                src_mac,
                dst_mac,
                ..FrameSpec::new(
                    ip,
                    L4Spec::Tcp {
                        sport: 0,
                        dport: 0,
                        seq: 0,
                        ack: 0,
                        flags: Flags(flags),
                        window: 0xffff,
                        options: Vec::new(),
                        payload: vec![0x5a; payload],
                    },
                )
            }
            .build();
            if f.len() < 60 {
                f.resize(60, 0);
            }
            f
        };
        Shapes {
            v6,
            syn: build(SYN, 0),
            syn_ack: build(SYN | ACK, 0),
            ack: build(ACK, 0),
            data: build(PSH | ACK, data_len),
            fin_ack: build(FIN | ACK, 0),
            data_len: data_len as u32,
        }
    }

    fn frame(&self, kind: Kind) -> &[u8] {
        match kind {
            Kind::Syn => &self.syn,
            Kind::SynAck => &self.syn_ack,
            Kind::Ack => &self.ack,
            Kind::Data => &self.data,
            Kind::FinAck => &self.fin_ack,
        }
    }

    /// Frame length of `kind` in the mbuf (no FCS).
    pub fn len(&self, kind: Kind) -> usize {
        self.frame(kind).len()
    }

    /// Writes `seg` into `out` (of [`Shapes::len`] bytes): the template, the addresses, ports,
    /// sequence and acknowledgement numbers, and both checksums.
    pub fn write(&self, out: &mut [u8], seg: &Segment) {
        out.copy_from_slice(self.frame(seg.kind));
        let (l4, ph) = if self.v6 {
            let (s, d) = (Ipv6Addr::from(seg.flow.src), Ipv6Addr::from(seg.flow.dst));
            out[L3 + 8..L3 + 24].copy_from_slice(&s.octets());
            out[L3 + 24..L3 + 40].copy_from_slice(&d.octets());
            (L3 + 40, PseudoHeader::V6 { src: s, dst: d })
        } else {
            let (s, d) = (
                Ipv4Addr::from(seg.flow.src as u32),
                Ipv4Addr::from(seg.flow.dst as u32),
            );
            out[L3 + 12..L3 + 16].copy_from_slice(&s.octets());
            out[L3 + 16..L3 + 20].copy_from_slice(&d.octets());
            out[L3 + 10..L3 + 12].fill(0);
            let c = checksum(&out[L3..L3 + 20]);
            out[L3 + 10..L3 + 12].copy_from_slice(&c.to_be_bytes());
            (L3 + 20, PseudoHeader::V4 { src: s, dst: d })
        };
        out[l4..l4 + 2].copy_from_slice(&seg.flow.sport.to_be_bytes());
        out[l4 + 2..l4 + 4].copy_from_slice(&seg.flow.dport.to_be_bytes());
        out[l4 + 4..l4 + 8].copy_from_slice(&seg.seq.to_be_bytes());
        out[l4 + 8..l4 + 12].copy_from_slice(&seg.ack.to_be_bytes());
        out[l4 + 16..l4 + 18].fill(0);
        let end = l4
            + 20
            + if seg.kind == Kind::Data {
                self.data_len as usize
            } else {
                0
            };
        let c = ph.checksum(ip_proto::TCP, &out[l4..end]);
        out[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
    }
}

/// Reads a TCP segment of the generator's family from a frame (no VLAN tag), or None.
#[inline]
pub fn parse(frame: &[u8], v6: bool) -> Option<Received> {
    let be16 = |o: usize| -> Option<u16> {
        Some(u16::from_be_bytes(frame.get(o..o + 2)?.try_into().ok()?))
    };
    let be32 = |o: usize| -> Option<u32> {
        Some(u32::from_be_bytes(frame.get(o..o + 4)?.try_into().ok()?))
    };
    let (l4, src, dst, ip_payload) = if v6 {
        if be16(12)? != 0x86dd || *frame.get(L3 + 6)? != ip_proto::TCP {
            return None;
        }
        let a = |o: usize| -> Option<u128> {
            Some(u128::from_be_bytes(frame.get(o..o + 16)?.try_into().ok()?))
        };
        (L3 + 40, a(L3 + 8)?, a(L3 + 24)?, u32::from(be16(L3 + 4)?))
    } else {
        if be16(12)? != 0x0800 || *frame.get(L3 + 9)? != ip_proto::TCP {
            return None;
        }
        let ihl = usize::from(frame[L3] & 0x0f) * 4;
        (
            L3 + ihl,
            u128::from(be32(L3 + 12)?),
            u128::from(be32(L3 + 16)?),
            u32::from(be16(L3 + 2)?).checked_sub(ihl as u32)?,
        )
    };
    let doff = u32::from(*frame.get(l4 + 12)? >> 4) * 4;
    Some(Received {
        flow: FlowFields {
            src,
            dst,
            sport: be16(l4)?,
            dport: be16(l4 + 2)?,
        },
        seq: be32(l4 + 4)?,
        ack: be32(l4 + 8)?,
        flags: *frame.get(l4 + 13)?,
        payload: ip_payload.checked_sub(doff)?,
    })
}

fn swapped(f: &FlowFields) -> FlowFields {
    FlowFields {
        src: f.dst,
        dst: f.src,
        sport: f.dport,
        dport: f.sport,
    }
}

/// What the server side answers to `r`, and whether `r` completed a connection.
#[inline]
pub fn server_reply(r: &Received) -> (Option<Segment>, bool) {
    let flow = swapped(&r.flow);
    if r.flags & (SYN | ACK) == SYN {
        let s = Segment {
            kind: Kind::SynAck,
            flow,
            seq: SERVER_ISN,
            ack: r.seq.wrapping_add(1),
        };
        return (Some(s), false);
    }
    if r.flags & FIN != 0 {
        let s = Segment {
            kind: Kind::FinAck,
            flow,
            seq: r.ack,
            ack: r.seq.wrapping_add(r.payload).wrapping_add(1),
        };
        return (Some(s), false);
    }
    let last =
        r.flags & (SYN | FIN | ACK) == ACK && r.payload == 0 && r.ack == SERVER_ISN.wrapping_add(2);
    (None, last)
}

/// What the client side sends on `r`: after a SYN+ACK the ACK, `data` data segments and a
/// FIN+ACK (pushed to `out`); after the server's FIN+ACK the last ACK. Returns how many.
#[inline]
pub fn client_reply(r: &Received, data: u32, data_len: u32, out: &mut VecDeque<Segment>) -> u32 {
    let flow = swapped(&r.flow);
    let ack = r.seq.wrapping_add(1);
    if r.flags & (SYN | ACK) == SYN | ACK {
        let mut seq = r.ack;
        out.push_back(Segment {
            kind: Kind::Ack,
            flow,
            seq,
            ack,
        });
        for _ in 0..data {
            out.push_back(Segment {
                kind: Kind::Data,
                flow,
                seq,
                ack,
            });
            seq = seq.wrapping_add(data_len);
        }
        out.push_back(Segment {
            kind: Kind::FinAck,
            flow,
            seq,
            ack,
        });
        return data + 2;
    }
    if r.flags & FIN != 0 {
        out.push_back(Segment {
            kind: Kind::Ack,
            flow,
            seq: r.ack,
            ack,
        });
        return 1;
    }
    0
}

/// Counters the lcore publishes and the main lcore prints.
#[derive(Default)]
pub struct ConnShared {
    pub opened: AtomicU64,
    pub completed: AtomicU64,
    pub abandoned: AtomicU64,
    pub client_tx: AtomicU64,
    pub server_tx: AtomicU64,
    pub done: AtomicBool,
}

/// What a run measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnResult {
    pub opened: u64,
    pub completed: u64,
    /// Connections given up after a stall (some segment did not come through).
    pub abandoned: u64,
    /// Connections that completed after they were given up.
    pub late: u64,
    /// Times nothing came back for the stall time while connections were open.
    pub stalls: u64,
    pub client_tx: u64,
    pub client_rx: u64,
    pub server_tx: u64,
    pub server_rx: u64,
    /// Server-side data segments received.
    pub data_rx: u64,
    /// Frames received that were not TCP of this family.
    pub foreign: u64,
    pub start_tsc: u64,
    /// When the last connection was opened.
    pub open_end_tsc: u64,
    /// When the last connection completed.
    pub last_done_tsc: u64,
}

/// One side's queues and what waits to be sent on it.
struct Side {
    rx: RxQueue,
    tx: TxQueue,
    burst: RxBurst,
    batch: TxBatch,
    pending: VecDeque<Segment>,
    shapes: Shapes,
}

impl Side {
    /// Moves pending segments into the batch and offers it; returns packets the device took.
    fn flush(&mut self, pool: &Mempool) -> u64 {
        let room = MAX_BURST - self.batch.len();
        let n = room.min(self.pending.len());
        if n > 0 && self.batch.alloc(pool, n) {
            let first = self.batch.len() - n;
            for m in &mut self.batch.packets_mut()[first..] {
                let Some(seg) = self.pending.pop_front() else {
                    break;
                };
                if m.set_frame_len(self.shapes.len(seg.kind)) {
                    self.shapes.write(m.data_mut(), &seg);
                }
            }
        }
        if self.batch.is_empty() {
            return 0;
        }
        self.batch.send(&mut self.tx).0 as u64
    }
}

/// The two-sided connection generator.
pub struct Endpoint {
    client: Side,
    server: Side,
    cursor: FlowCursor,
    pool: Arc<Mempool>,
    data: u32,
    inflight: u64,
    conn_rate: u64,
    max_conns: u64,
    duration_tsc: Option<u64>,
    stall_tsc: u64,
    drain_tsc: u64,
    hz: u64,
    shared: Arc<ConnShared>,
    stop: Arc<AtomicBool>,
    v6: bool,
}

/// Pending segments one side may hold (a bound, so the queues never grow).
const PENDING_CAP: usize = 1 << 16;

impl Endpoint {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        spec: &TrafficSpec,
        client: (RxQueue, TxQueue),
        server: (RxQueue, TxQueue),
        pool: Arc<Mempool>,
        inflight: u64,
        conn_rate: u64,
        max_conns: u64,
        duration_tsc: Option<u64>,
        drain_tsc: u64,
        hz: u64,
        shared: Arc<ConnShared>,
        stop: Arc<AtomicBool>,
    ) -> Endpoint {
        let side = |(rx, tx): (RxQueue, TxQueue), server: bool| Side {
            rx,
            tx,
            burst: RxBurst::default(),
            batch: TxBatch::default(),
            pending: VecDeque::with_capacity(PENDING_CAP + MAX_BURST * 64),
            shapes: Shapes::new(spec, server),
        };
        Endpoint {
            client: side(client, false),
            server: side(server, true),
            cursor: FlowCursor::new(spec),
            pool,
            data: spec.churn_data.unwrap_or(0),
            inflight: inflight.max(1),
            conn_rate,
            max_conns,
            duration_tsc,
            stall_tsc: drain_tsc.max(hz / 10),
            drain_tsc,
            hz,
            shared,
            stop,
            v6: spec.src.v6,
        }
    }

    /// Runs until the time or connection count is reached and every open connection has
    /// completed or been given up.
    pub fn run(mut self) -> ConnResult {
        let mut r = ConnResult {
            start_tsc: tsc(),
            ..ConnResult::default()
        };
        let start = r.start_tsc;
        let mut last_rx = start;
        let data_len = self.client.shapes.data_len;
        let per_conn_client = (self.data + 2) as usize;
        loop {
            let now = tsc();
            let stop = self.stop.load(Ordering::Relaxed);
            let time_up = self.duration_tsc.is_some_and(|d| now - start >= d);
            let opening = !stop && !time_up && r.opened < self.max_conns;
            let open_now = r
                .opened
                .saturating_sub(r.completed + r.abandoned)
                .min(r.opened);
            if opening {
                let mut n = self
                    .inflight
                    .saturating_sub(open_now)
                    .min(self.max_conns - r.opened)
                    .min(MAX_BURST as u64);
                if self.conn_rate > 0 {
                    let due = ((u128::from(now - start) * u128::from(self.conn_rate))
                        / u128::from(self.hz)) as u64
                        + 1;
                    n = n.min(due.saturating_sub(r.opened));
                }
                if self.client.pending.len() + n as usize > PENDING_CAP {
                    n = 0;
                }
                for _ in 0..n {
                    let (flow, _) = self.cursor.next_flow();
                    self.client.pending.push_back(Segment {
                        kind: Kind::Syn,
                        flow,
                        seq: CLIENT_ISN,
                        ack: 0,
                    });
                }
                if n > 0 {
                    r.opened += n;
                    r.open_end_tsc = now;
                }
            } else if open_now == 0
                && self.client.pending.is_empty()
                && self.server.pending.is_empty()
                && self.client.batch.is_empty()
                && self.server.batch.is_empty()
                && (stop || now - last_rx >= self.drain_tsc)
            {
                break;
            }
            r.client_tx += self.client.flush(&self.pool);
            r.server_tx += self.server.flush(&self.pool);
            // Server side: answers at most one segment per segment received.
            if self.server.pending.len() + MAX_BURST <= PENDING_CAP {
                let n = self.server.burst.receive(&mut self.server.rx);
                if n > 0 {
                    last_rx = now;
                    r.server_rx += n as u64;
                    for m in self.server.burst.by_ref() {
                        let Some(seg) = parse(m.data(), self.v6) else {
                            r.foreign += 1;
                            continue;
                        };
                        if seg.payload > 0 && seg.flags & FIN == 0 {
                            r.data_rx += 1;
                        }
                        let (reply, done) = server_reply(&seg);
                        if let Some(s) = reply {
                            self.server.pending.push_back(s);
                        }
                        if done {
                            r.completed += 1;
                            r.last_done_tsc = now;
                        }
                    }
                }
            }
            // Client side: a SYN+ACK brings the rest of the connection.
            if self.client.pending.len() + MAX_BURST * per_conn_client <= PENDING_CAP {
                let n = self.client.burst.receive(&mut self.client.rx);
                if n > 0 {
                    last_rx = now;
                    r.client_rx += n as u64;
                    for m in self.client.burst.by_ref() {
                        match parse(m.data(), self.v6) {
                            Some(seg) => {
                                client_reply(&seg, self.data, data_len, &mut self.client.pending);
                            }
                            None => r.foreign += 1,
                        }
                    }
                }
            }
            // A stall: connections open, nothing waiting to be sent, nothing received.
            if open_now > 0
                && self.client.pending.is_empty()
                && self.server.pending.is_empty()
                && now - last_rx >= self.stall_tsc
            {
                r.abandoned += open_now;
                r.stalls += 1;
                last_rx = now;
            }
            if r.completed + r.abandoned > r.opened {
                r.late = r.completed + r.abandoned - r.opened;
            }
            let s = &self.shared;
            s.opened.store(r.opened, Ordering::Relaxed);
            s.completed.store(r.completed, Ordering::Relaxed);
            s.abandoned.store(r.abandoned, Ordering::Relaxed);
            s.client_tx.store(r.client_tx, Ordering::Relaxed);
            s.server_tx.store(r.server_tx, Ordering::Relaxed);
        }
        self.shared.done.store(true, Ordering::Release);
        r
    }
}

impl ConnResult {
    /// The report as JSON.
    pub fn json(&self, hz: u64, data: u32, inflight: u64, conn_rate: u64) -> serde_json::Value {
        let secs = |a: u64, b: u64| b.saturating_sub(a) as f64 / hz as f64;
        let done_s = secs(self.start_tsc, self.last_done_tsc);
        serde_json::json!({
            "tsc_hz": hz,
            "mode": "connections, both sides",
            "traffic": {
                "data_segments": data,
                "segments_per_connection": data + 6,
                "inflight": inflight,
                "conn_rate": conn_rate,
            },
            "connections": {
                "opened": self.opened,
                "completed": self.completed,
                "abandoned": self.abandoned.saturating_sub(self.late),
                "given_up": self.abandoned,
                "late": self.late,
                "stalls": self.stalls,
                "seconds": done_s,
                "per_second": if done_s > 0.0 { self.completed as f64 / done_s } else { 0.0 },
                "opening_seconds": secs(self.start_tsc, self.open_end_tsc),
            },
            "client": { "tx_packets": self.client_tx, "rx_packets": self.client_rx },
            "server": { "tx_packets": self.server_tx, "rx_packets": self.server_rx,
                        "data_segments": self.data_rx },
            "foreign": self.foreign,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::frames::{AddrRange, PortRange, Proto};
    use dataplane::wire::builder::{DEFAULT_DST_MAC, DEFAULT_SRC_MAC};
    use dataplane::wire::parse::parse_frame;

    fn spec(v6: bool) -> TrafficSpec {
        let (src, dst) = if v6 {
            ("fd00::1-fd00::ff", "fd01::80")
        } else {
            ("10.0.0.1-10.0.0.255", "192.0.2.80")
        };
        TrafficSpec {
            proto: Proto::Tcp,
            sizes: vec![128],
            mtu: 1500,
            src_mac: DEFAULT_SRC_MAC,
            dst_mac: DEFAULT_DST_MAC,
            src: AddrRange::parse(src).unwrap(),
            dst: AddrRange::parse(dst).unwrap(),
            sport: PortRange::parse("1024-65535").unwrap(),
            dport: PortRange::parse("80").unwrap(),
            flows: 1000,
            drop_ppm: 0,
            drop_dport: 9,
            churn_data: Some(2),
            trace: None,
        }
    }

    fn emit(shapes: &Shapes, seg: &Segment) -> Vec<u8> {
        let mut out = vec![0u8; shapes.len(seg.kind)];
        shapes.write(&mut out, seg);
        let info = parse_frame(&out).expect("parses");
        let l4 = info.l4_bytes(&out).expect("TCP");
        let key = info.flow.unwrap();
        let ph = if shapes.v6 {
            PseudoHeader::V6 {
                src: Ipv6Addr::from(seg.flow.src),
                dst: Ipv6Addr::from(seg.flow.dst),
            }
        } else {
            assert_eq!(dataplane::wire::checksum::sum(&out[14..34]), 0xffff);
            PseudoHeader::V4 {
                src: Ipv4Addr::from(seg.flow.src as u32),
                dst: Ipv4Addr::from(seg.flow.dst as u32),
            }
        };
        assert!(ph.verify(ip_proto::TCP, l4), "{seg:?}");
        assert_eq!(
            (key.src_port, key.dst_port),
            (seg.flow.sport, seg.flow.dport)
        );
        assert!(out.len() + FCS_LEN >= 64);
        out
    }

    /// A whole connection, as the two sides exchange it through a forwarder that changes
    /// nothing: the order, the flags and the sequence numbers of a real one.
    #[test]
    fn a_connection_goes_through_both_handshakes_in_order() {
        for v6 in [false, true] {
            let s = spec(v6);
            let (cs, ss) = (Shapes::new(&s, false), Shapes::new(&s, true));
            assert_eq!(
                cs.data_len as usize,
                128 - 4 - 14 - if v6 { 40 } else { 20 } - 20
            );
            let mut cur = FlowCursor::new(&s);
            let (flow, _) = cur.next_flow();
            let mut to_server: VecDeque<Vec<u8>> = VecDeque::new();
            let mut to_client: VecDeque<Vec<u8>> = VecDeque::new();
            let mut log: Vec<(bool, u8, u32, u32, u32)> = Vec::new();
            to_server.push_back(emit(
                &cs,
                &Segment {
                    kind: Kind::Syn,
                    flow,
                    seq: CLIENT_ISN,
                    ack: 0,
                },
            ));
            let mut completed = 0;
            let mut pending = VecDeque::new();
            for _ in 0..20 {
                while let Some(f) = to_server.pop_front() {
                    let r = parse(&f, v6).unwrap();
                    assert_eq!((r.flow.src, r.flow.sport), (flow.src, flow.sport));
                    log.push((true, r.flags, r.seq, r.ack, r.payload));
                    let (reply, done) = server_reply(&r);
                    completed += u32::from(done);
                    if let Some(x) = reply {
                        let f = emit(&ss, &x);
                        assert_eq!(&f[0..6], &s.src_mac.0[..], "server frames go back");
                        to_client.push_back(f);
                    }
                }
                while let Some(f) = to_client.pop_front() {
                    let r = parse(&f, v6).unwrap();
                    log.push((false, r.flags, r.seq, r.ack, r.payload));
                    client_reply(&r, 2, cs.data_len, &mut pending);
                    for x in pending.drain(..) {
                        to_server.push_back(emit(&cs, &x));
                    }
                }
            }
            let (c, sv, l) = (CLIENT_ISN, SERVER_ISN, cs.data_len);
            let want = vec![
                (true, SYN, c, 0, 0),
                (false, SYN | ACK, sv, c + 1, 0),
                (true, ACK, c + 1, sv + 1, 0),
                (true, PSH | ACK, c + 1, sv + 1, l),
                (true, PSH | ACK, c + 1 + l, sv + 1, l),
                (true, FIN | ACK, c + 1 + 2 * l, sv + 1, 0),
                (false, FIN | ACK, sv + 1, c + 2 + 2 * l, 0),
                (true, ACK, c + 2 + 2 * l, sv + 2, 0),
            ];
            assert_eq!(log, want, "v6={v6}");
            assert_eq!(completed, 1);
        }
    }

    #[test]
    fn foreign_frames_are_not_segments() {
        let s = spec(false);
        let cs = Shapes::new(&s, false);
        let mut f = emit(
            &cs,
            &Segment {
                kind: Kind::Ack,
                flow: s.flow_at(0),
                seq: 1,
                ack: 2,
            },
        );
        assert!(parse(&f, true).is_none(), "family differs");
        f[23] = ip_proto::UDP;
        assert!(parse(&f, false).is_none());
        assert!(parse(&f[..20], false).is_none());
    }
}
