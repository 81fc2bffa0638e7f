//! The fast path for established packets ([`super::established`]) against the general path:
//! two copies of the same tables judge the same packets, one through [`judge_tracked`] and one
//! with the fast path compiled out, and must give the same judgements, write the same bytes,
//! log the same rules, route and check the same packets, and leave the same connections
//! (states, counters, timeouts) behind. A third copy takes the worker's lean path
//! ([`judge_lean`], then [`judge_resumed`] where it stops) and must give the same verdict,
//! count the same rule, route the same tuples, write the same bytes and leave the same tables.

use super::*;
use crate::classify::{connmark, Check, FlatRule, LogSpec, Origin, RuleSet, ANY_PORT};
use crate::nat::rules::NatDecision;
use crate::nat::{NatChain, NatKind, NatRange, NatRules, NatTables, NatTarget, OneToOne};
use crate::wire::builder::{FrameSpec, IpSpec, L4Spec};
use crate::wire::tcp::Flags;
use crate::wire::{parse_frame, Family, IpAddr128};
use proptest::prelude::*;
use std::net::Ipv4Addr;

const MS: u64 = 1_000_000;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// Mapped one-to-one onto [`PUBLIC`].
const PRIVATE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
/// Routed to Rampart itself ([`Routes`]: last octet 9).
const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);
/// No route (last octet 8).
const NOWHERE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 8);

/// Routes by the destination's last octet (9: local, 8: nowhere, else out of the other port
/// of the pair), remembering the tuples it was asked to route (the copies must route on the
/// same, translated, destinations); counts the checks, which fail for a TTL of 1, as a
/// router's do.
#[derive(Default)]
struct Routes {
    routed: u32,
    checked: u32,
    /// Every tuple routed, in order.
    keys: Vec<FlowKey>,
}

impl Forwarding for Routes {
    fn route(&mut self, ingress: u16, key: &FlowKey) -> Route {
        self.routed += 1;
        self.keys.push(*key);
        match key.dst.0[15] {
            9 => Route::Local,
            8 => Route::Unreachable,
            _ => Route::Forward(NextHop {
                port: (ingress ^ 1) as u8,
                gateway: None,
            }),
        }
    }

    fn masquerade_source(&mut self, _port: u16, _key: &FlowKey) -> Option<IpAddr128> {
        None
    }

    fn check(&mut self, frame: &[u8], info: &PacketInfo, _hop: &NextHop) -> Result<(), DropReason> {
        self.checked += 1;
        match frame.get(usize::from(info.l3_offset) + 8) {
            Some(1) => Err(DropReason::NoRoute),
            _ => Ok(()),
        }
    }
}

fn any_rule(action: Action, states: u8) -> FlatRule {
    let mut r = FlatRule::any(Family::V4, action, 0);
    r.ct_states = states;
    r
}

/// The rule sets a test swaps between (each compile is a new epoch).
fn rule_set(which: u8) -> RuleSet {
    let est = ct::ESTABLISHED | ct::RELATED;
    let mut rules = Vec::new();
    let mut logs = Vec::new();
    match which % 7 {
        // The usual stateful set.
        0 => {
            rules.push(any_rule(Action::Accept, est));
            let mut new = any_rule(Action::Accept, ct::NEW);
            new.in_ports = 1;
            rules.push(new);
        }
        // Logs established packets arriving on port 1, then accepts everything.
        1 => {
            logs.push(LogSpec {
                prefix: "est".into(),
                level: 4,
                group: None,
            });
            let mut log = any_rule(Action::Log(0), ct::ESTABLISHED);
            log.in_ports = 1 << 1;
            rules.push(log);
            rules.push(any_rule(Action::Accept, est | ct::NEW));
        }
        // Established TCP to port 80 rejected, established UDP dropped, the rest accepted.
        2 => {
            let mut rej = any_rule(Action::Reject(crate::classify::RejectWith::TcpReset), est);
            rej.proto = (ip_proto::TCP, ip_proto::TCP);
            rej.dport = (80, 80);
            rules.push(rej);
            let mut udp = any_rule(Action::Drop, ct::ESTABLISHED);
            udp.proto = (ip_proto::UDP, ip_proto::UDP);
            rules.push(udp);
            rules.push(any_rule(Action::Accept, est | ct::NEW));
        }
        // A TCP-flag rule: nothing may be cached.
        3 => {
            let mut fin = any_rule(Action::Drop, ct::ANY);
            fin.proto = (ip_proto::TCP, ip_proto::TCP);
            fin.tcp_flags = Some((0x01, 0x01));
            rules.push(fin);
            rules.push(any_rule(Action::Accept, est | ct::NEW));
        }
        // CONNMARK at NEW only (connections opened on port 1 marked 1), `-m connmark` on
        // ESTABLISHED and RELATED packets: cacheable, and the cached verdict must follow each
        // connection's mark.
        5 => {
            let mut set = any_rule(Action::Mark, ct::NEW);
            set.in_ports = 1 << 1;
            set.checks = Some(std::sync::Arc::new(vec![Check::SetConnMark(
                connmark::Op {
                    mode: connmark::Mode::Set,
                    ctmark: 1,
                    ctmask: u32::MAX,
                    nfmask: 0,
                    shift_right: false,
                    shift_bits: 0,
                },
            )]));
            rules.push(set);
            let mut marked = any_rule(Action::Accept, est);
            marked.checks = Some(std::sync::Arc::new(vec![Check::ConnMark {
                value: 1,
                mask: u32::MAX,
                invert: false,
            }]));
            rules.push(marked);
            rules.push(any_rule(Action::Accept, ct::NEW));
        }
        // `--xor-mark 1` on every TCP packet, whatever its state, and only odd marks accepted:
        // a connection's packets alternate, so nothing may be cached.
        6 => {
            let mut flip = any_rule(Action::Mark, ct::ANY);
            flip.proto = (ip_proto::TCP, ip_proto::TCP);
            flip.checks = Some(std::sync::Arc::new(vec![Check::SetConnMark(
                connmark::Op {
                    mode: connmark::Mode::Set,
                    ctmark: 1,
                    ctmask: 0,
                    nfmask: 0,
                    shift_right: false,
                    shift_bits: 0,
                },
            )]));
            rules.push(flip);
            let mut odd = any_rule(Action::Accept, ct::ANY);
            odd.proto = (ip_proto::TCP, ip_proto::TCP);
            odd.checks = Some(std::sync::Arc::new(vec![Check::ConnMark {
                value: 1,
                mask: 1,
                invert: false,
            }]));
            rules.push(odd);
            let mut even = any_rule(Action::Drop, ct::ANY);
            even.proto = (ip_proto::TCP, ip_proto::TCP);
            rules.push(even);
            rules.push(any_rule(Action::Accept, est | ct::NEW));
        }
        // Everything accepted whatever the state, replies only from port 1's side.
        _ => {
            let mut out = any_rule(Action::Accept, ct::ANY);
            out.out_ports = 1;
            rules.push(out);
            rules.push(any_rule(Action::Accept, est));
        }
    }
    rules.push(FlatRule::any(Family::V4, Action::Drop, 0));
    for (i, r) in rules.iter_mut().enumerate() {
        r.origin = i as u32;
    }
    let origins = (0..rules.len())
        .map(|i| Origin {
            file: "test".into(),
            line: i as u32,
            label: format!("rule {i}"),
        })
        .collect();
    assert_eq!(ANY_PORT, u32::MAX);
    RuleSet::new(Family::V4, rules, origins, logs)
}

/// The nat table of each test mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Nat {
    None,
    /// [`PRIVATE`] mapped one-to-one onto [`PUBLIC`] (rules in both chains).
    OneToOne,
    /// A gateway: PREROUTING without rules, POSTROUTING SNATs [`PRIVATE`] to [`PUBLIC`].
    Snat,
}

fn arb_nat() -> impl Strategy<Value = Nat> {
    prop_oneof![Just(Nat::None), Just(Nat::OneToOne), Just(Nat::Snat)]
}

fn snat_rules() -> NatRules {
    let fam = Family::V4;
    let private = IpAddr128::from_v4_octets(PRIVATE.octets());
    let mut from_private = FlatRule::any(fam, Action::Accept, 0);
    from_private.src = (private, private);
    let origins = (0..2)
        .map(|i| Origin {
            file: "test".into(),
            line: i,
            label: format!("nat rule {i}"),
        })
        .collect();
    let rules = RuleSet::new(
        fam,
        vec![from_private, FlatRule::any(fam, Action::Accept, 1)],
        origins,
        Vec::new(),
    );
    let snat = NatTarget {
        kind: NatKind::Snat,
        range: NatRange::to_addr(IpAddr128::from_v4_octets(PUBLIC.octets())),
        origin: 0,
    };
    NatRules {
        family: fam,
        prerouting: NatChain::accept_all(fam, "test", "policy PREROUTING ACCEPT"),
        postrouting: NatChain::new(rules, vec![0, crate::nat::rules::NO_NAT], vec![snat])
            .expect("a valid chain"),
    }
}

fn filter(which: u8, nat: Nat) -> Filter {
    let rules = match nat {
        Nat::None => None,
        Nat::OneToOne => Some(
            NatRules::accept_all(Family::V4).with_one_to_one(&[OneToOne {
                public: IpAddr128::from_v4_octets(PUBLIC.octets()),
                private: IpAddr128::from_v4_octets(PRIVATE.octets()),
            }]),
        ),
        Nat::Snat => Some(snat_rules()),
    };
    let nat = rules.map(|v4| {
        let steering = v4.steering(1, &[]);
        Box::new(NatTables {
            v4: Some(v4),
            v6: None,
            steering,
        })
    });
    let mut f = Filter {
        v4: Some(rule_set(which)),
        nat,
        ..Filter::default()
    };
    f.note_conn_marks();
    f
}

/// `f` with every rule set walked for every packet (no verdict cached).
fn uncached(mut f: Filter) -> Filter {
    if let Some(rs) = f.v4.as_mut() {
        rs.cacheable = false;
    }
    f
}

/// One endpoint pair of the test traffic, and the port its client side arrives on.
#[derive(Clone, Copy, Debug)]
struct Flow {
    client: (Ipv4Addr, u16),
    server: (Ipv4Addr, u16),
    /// The ends of the server's packets on the wire: a 1:1 SNAT of the client makes them go
    /// to its public address, a DNAT of the server come from its private one.
    reply_from: (Ipv4Addr, u16),
    reply_to: (Ipv4Addr, u16),
    tcp: bool,
    client_port: u16,
}

const FLOWS: [Flow; 7] = [
    Flow {
        client: (CLIENT, 40000),
        server: (SERVER, 80),
        reply_from: (SERVER, 80),
        reply_to: (CLIENT, 40000),
        tcp: true,
        client_port: 0,
    },
    Flow {
        client: (PRIVATE, 40001),
        server: (SERVER, 443),
        reply_from: (SERVER, 443),
        reply_to: (PUBLIC, 40001),
        tcp: true,
        client_port: 0,
    },
    Flow {
        client: (CLIENT, 5000),
        server: (SERVER, 53),
        reply_from: (SERVER, 53),
        reply_to: (CLIENT, 5000),
        tcp: false,
        client_port: 0,
    },
    // To the public address from outside: DNAT to the private one.
    Flow {
        client: (OUTSIDE, 6000),
        server: (PUBLIC, 53),
        reply_from: (PRIVATE, 53),
        reply_to: (OUTSIDE, 6000),
        tcp: false,
        client_port: 1,
    },
    Flow {
        client: (CLIENT, 40002),
        server: (LOCAL, 22),
        reply_from: (LOCAL, 22),
        reply_to: (CLIENT, 40002),
        tcp: true,
        client_port: 0,
    },
    Flow {
        client: (CLIENT, 5001),
        server: (NOWHERE, 53),
        reply_from: (NOWHERE, 53),
        reply_to: (CLIENT, 5001),
        tcp: false,
        client_port: 0,
    },
    Flow {
        client: (OUTSIDE, 40003),
        server: (SERVER, 80),
        reply_from: (SERVER, 80),
        reply_to: (OUTSIDE, 40003),
        tcp: true,
        client_port: 1,
    },
];

/// What the test does next.
#[derive(Clone, Debug)]
enum Op {
    /// A handshake (TCP) or a request and its answer (UDP).
    Open(usize),
    /// Data one way (`len` bytes), from the right port or (`stray`) the other one, with TTL 1
    /// (`ttl1`: the router's check refuses it).
    Data {
        flow: usize,
        c2s: bool,
        len: u8,
        stray: bool,
        ttl1: bool,
    },
    /// A segment with arbitrary flags and numbers.
    Segment {
        flow: usize,
        c2s: bool,
        flags: u8,
        seq: u32,
        ack: u32,
    },
    /// A datagram split into fragments.
    Fragments {
        flow: usize,
        c2s: bool,
    },
    /// An ICMP error about the flow's last client packet, from its server side.
    IcmpError(usize),
    /// Another rule set (a new epoch).
    Swap(u8),
    Wait(u64),
}

fn arb_op() -> impl Strategy<Value = Op> {
    let flow = 0..FLOWS.len();
    prop_oneof![
        2 => flow.clone().prop_map(Op::Open),
        8 => (flow.clone(), any::<bool>(), 0u8..40, prop::bool::weighted(0.1), prop::bool::weighted(0.05))
            .prop_map(|(flow, c2s, len, stray, ttl1)| Op::Data { flow, c2s, len, stray, ttl1 }),
        2 => (flow.clone(), any::<bool>(), prop_oneof![Just(0x10u8), Just(0x11), Just(0x04), Just(0x02), Just(0x12), any::<u8>()], any::<u32>(), any::<u32>())
            .prop_map(|(flow, c2s, flags, seq, ack)| Op::Segment { flow, c2s, flags, seq, ack }),
        1 => (flow.clone(), any::<bool>()).prop_map(|(flow, c2s)| Op::Fragments { flow, c2s }),
        1 => flow.prop_map(Op::IcmpError),
        1 => any::<u8>().prop_map(Op::Swap),
        1 => prop_oneof![0u64..50, Just(31_000), Just(130_000)].prop_map(Op::Wait),
    ]
}

/// A frame and its ingress port.
type Framed = (u16, Vec<u8>);

/// Each flow's next sequence numbers and last client packet.
struct Model {
    seq: [(u32, u32); FLOWS.len()],
    last_client_frame: [Option<Vec<u8>>; FLOWS.len()],
}

impl Model {
    fn new() -> Model {
        Model {
            seq: [(1000, 5000); FLOWS.len()],
            last_client_frame: Default::default(),
        }
    }

    /// The frames of one step (none for a swap or a wait), with their ingress ports.
    fn frames(&mut self, op: &Op) -> Vec<Framed> {
        match *op {
            Op::Open(flow) => {
                let (c, s) = (1000 + flow as u32 * 7919, 5000 + flow as u32 * 104_729);
                if FLOWS[flow].tcp {
                    self.seq[flow] = (c + 1, s + 1);
                    vec![
                        frame(flow, true, Flags::SYN, c, 0, 0, 64),
                        frame(flow, false, Flags::SYN | Flags::ACK, s, c + 1, 0, 64),
                        frame(flow, true, Flags::ACK, c + 1, s + 1, 0, 64),
                    ]
                } else {
                    vec![
                        frame(flow, true, Flags(0), 0, 0, 4, 64),
                        frame(flow, false, Flags(0), 0, 0, 4, 64),
                    ]
                }
            }
            Op::Data {
                flow,
                c2s,
                len,
                stray,
                ttl1,
            } => {
                let (c, s) = self.seq[flow];
                let (seq, ack) = if c2s { (c, s) } else { (s, c) };
                let ttl = if ttl1 { 1 } else { 64 };
                let (p, f) = frame(flow, c2s, Flags::ACK | Flags::PSH, seq, ack, len, ttl);
                let l = u32::from(len);
                if c2s {
                    self.seq[flow].0 = c.wrapping_add(l);
                    self.last_client_frame[flow] = Some(f.clone());
                } else {
                    self.seq[flow].1 = s.wrapping_add(l);
                }
                vec![(if stray { p ^ 1 } else { p }, f)]
            }
            Op::Segment {
                flow,
                c2s,
                flags,
                seq,
                ack,
            } => vec![frame(flow, c2s, Flags(flags), seq, ack, 0, 64)],
            Op::Fragments { flow, c2s } => {
                let fl = FLOWS[flow];
                let ((s, sp), (d, dp)) = if c2s {
                    (fl.client, fl.server)
                } else {
                    (fl.reply_from, fl.reply_to)
                };
                let spec = FrameSpec::new(
                    IpSpec::V4 {
                        src: s,
                        dst: d,
                        ttl: 64,
                        ident: 0x4000 + flow as u16,
                        dont_frag: false,
                        options: Vec::new(),
                    },
                    L4Spec::udp(sp, dp, &[7; 100]),
                );
                let port = if c2s {
                    fl.client_port
                } else {
                    fl.client_port ^ 1
                };
                spec.fragments(48).into_iter().map(|f| (port, f)).collect()
            }
            Op::IcmpError(flow) => {
                let Some(quoted) = self.last_client_frame[flow].as_ref() else {
                    return Vec::new();
                };
                let fl = FLOWS[flow];
                let ip = &quoted[crate::wire::ethernet::HEADER_LEN..];
                let payload = ip[..ip.len().min(28)].to_vec();
                let f = FrameSpec::new(
                    IpSpec::v4(fl.reply_from.0, fl.reply_to.0),
                    L4Spec::Icmp {
                        ty: 3,
                        code: 3,
                        ident: 0,
                        seq: 0,
                        payload,
                    },
                )
                .build();
                vec![(fl.client_port ^ 1, f)]
            }
            Op::Swap(_) | Op::Wait(_) => Vec::new(),
        }
    }
}

/// A frame of `flow`, from its client (`c2s`) or its server, and its ingress port.
fn frame(
    flow: usize,
    c2s: bool,
    flags: Flags,
    seq: u32,
    ack: u32,
    len: u8,
    ttl: u8,
) -> (u16, Vec<u8>) {
    let f = FLOWS[flow];
    let ((s, sp), (d, dp)) = if c2s {
        (f.client, f.server)
    } else {
        (f.reply_from, f.reply_to)
    };
    let ip = IpSpec::V4 {
        src: s,
        dst: d,
        ttl,
        ident: flow as u16,
        dont_frag: false,
        options: Vec::new(),
    };
    let payload = vec![0x5a; usize::from(len)];
    let l4 = if f.tcp {
        L4Spec::Tcp {
            sport: sp,
            dport: dp,
            seq,
            ack,
            flags,
            window: 8192,
            options: Vec::new(),
            payload,
        }
    } else {
        L4Spec::Udp {
            sport: sp,
            dport: dp,
            payload,
        }
    };
    let port = if c2s {
        f.client_port
    } else {
        f.client_port ^ 1
    };
    (port, FrameSpec::new(ip, l4).build())
}

/// Both copies of the state.
struct Twin {
    nat: Nat,
    filter: Filter,
    fast: (Tables, Routes),
    general: (Tables, Routes),
    lean: (Tables, Routes),
    /// The general path under [`uncached`]'s copy of the rule sets: what every packet's own
    /// walk answers, the reference for the cached verdicts.
    uncached: (Filter, Tables, Routes),
    now: u64,
    model: Model,
    /// Packets the fast path judged.
    fast_hits: u32,
    /// Packets the lean path answered alone.
    lean_hits: u32,
    /// Packets of translated connections the lean path answered alone.
    lean_nat_hits: u32,
}

impl Twin {
    fn new(capacity: u32, nat: Nat) -> Twin {
        Twin {
            nat,
            filter: filter(0, nat),
            fast: (Tables::new(&config(capacity, nat)), Routes::default()),
            general: (Tables::new(&config(capacity, nat)), Routes::default()),
            lean: (Tables::new(&config(capacity, nat)), Routes::default()),
            uncached: (
                uncached(filter(0, nat)),
                Tables::new(&config(capacity, nat)),
                Routes::default(),
            ),
            now: 1_000 * MS,
            model: Model::new(),
            fast_hits: 0,
            lean_hits: 0,
            lean_nat_hits: 0,
        }
    }

    /// Judges one frame through both copies and compares everything.
    fn send(&mut self, ingress: u16, frame: &[u8]) -> IpJudgement {
        self.now += MS;
        let now = self.now;
        let info = parse_frame(frame).expect("test frames parse");
        let key = info.flow.expect("IP");
        let (mut fa, mut fb) = (frame.to_vec(), frame.to_vec());
        let (mut la, mut lb) = (Vec::new(), Vec::new());
        let hits = FAST_HITS.with(|h| h.get());
        // The fast copy is given the tuple's tag, as a worker's prefetch pass gives it.
        let tag = Some(self.fast.0.ct.tag_of(&key));
        let a = judge_tracked_by::<_, true>(
            &self.filter,
            &mut self.fast.0,
            &mut fa,
            &info,
            key,
            tag,
            ingress,
            &mut self.fast.1,
            now,
            |r, _, _| la.push(r),
        );
        self.fast_hits += FAST_HITS.with(|h| h.get()) - hits;
        let b = judge_tracked_by::<_, false>(
            &self.filter,
            &mut self.general.0,
            &mut fb,
            &info,
            key,
            None,
            ingress,
            &mut self.general.1,
            now,
            |r, _, _| lb.push(r),
        );
        assert_eq!(a, b, "judgements differ for {key:?} from port {ingress}");
        assert_eq!(la, lb, "logged rules differ");
        // Every packet walked: the cached verdicts give its answers.
        let (uf, ut, ur) = &mut self.uncached;
        let mut lu = Vec::new();
        let u = judge_tracked_by::<_, false>(
            uf,
            ut,
            &mut frame.to_vec(),
            &info,
            key,
            None,
            ingress,
            ur,
            now,
            |r, _, _| lu.push(r),
        );
        assert_eq!(b, u, "a cached verdict differs from the walk's for {key:?}");
        assert_eq!(lb, lu, "logged rules differ from the walk's");
        let va = crate::pipeline::translate(&mut fa, &info, &a);
        let vb = crate::pipeline::translate(&mut fb, &info, &b);
        assert_eq!((va, &fa), (vb, &fb), "translations differ");
        let (ra, rb) = (&self.fast.1, &self.general.1);
        assert_eq!((ra.routed, ra.checked), (rb.routed, rb.checked));
        assert_eq!(ra.keys, rb.keys, "routed tuples differ");
        same_tables(&self.fast.0, &self.general.0, now);

        // The worker's lean path, as `pipeline::tracked_one` takes it.
        let mut fc = frame.to_vec();
        let mut lc = Vec::new();
        let (tables, routes) = &mut self.lean;
        // The hint as the prefetch pass makes it (the guess taken when it holds).
        let (hint, _) = tables.ct.prefetch_entry(tables.ct.prefetch_index(&key));
        let hits = LEAN_HITS.with(|h| h.get());
        let nat_hits = LEAN_NAT_HITS.with(|h| h.get());
        let lean = judge_lean(
            &self.filter,
            tables,
            frame,
            &info,
            &key,
            hint,
            ingress,
            routes,
            now,
        );
        self.lean_hits += LEAN_HITS.with(|h| h.get()) - hits;
        self.lean_nat_hits += LEAN_NAT_HITS.with(|h| h.get()) - nat_hits;
        let (vc, counted) = match lean {
            Ok(l) => (
                crate::pipeline::lean_translate(tables, &mut fc, &info, &l),
                l.filter.rule().map(|_| l.filter),
            ),
            Err(r) => {
                let c = judge_resumed(
                    &self.filter,
                    tables,
                    &mut fc,
                    &info,
                    key,
                    ingress,
                    routes,
                    now,
                    |r, _, _| lc.push(r),
                    r,
                );
                let counted = (c.judged && !c.raw && !c.input)
                    .then_some(c.filter)
                    .filter(|f| f.rule().is_some());
                (crate::pipeline::translate(&mut fc, &info, &c), counted)
            }
        };
        let counted_b = (b.judged && !b.raw && !b.input)
            .then_some(b.filter)
            .filter(|f| f.rule().is_some());
        assert_eq!(
            (vc, counted),
            (vb, counted_b),
            "the lean path differs for {key:?}"
        );
        assert_eq!(fc, fb, "the lean path's translation differs");
        assert_eq!(lc, lb, "the lean path's logged rules differ");
        let rc = &self.lean.1;
        assert_eq!((rc.routed, rc.checked), (rb.routed, rb.checked));
        assert_eq!(rc.keys, rb.keys, "the lean path routes other tuples");
        same_tables(&self.lean.0, &self.general.0, now);
        a
    }

    fn run(&mut self, op: &Op) {
        match *op {
            Op::Swap(which) => {
                self.filter = filter(which, self.nat);
                self.uncached.0 = uncached(filter(which, self.nat));
            }
            Op::Wait(ms) => {
                self.now += ms * MS;
                let now = self.now;
                let x = self.fast.0.expire(now, 8);
                let y = self.general.0.expire(now, 8);
                let z = self.lean.0.expire(now, 8);
                let u = self.uncached.1.expire(now, 8);
                assert_eq!((x, z, u), (y, y, y));
                same_tables(&self.fast.0, &self.general.0, now);
                same_tables(&self.lean.0, &self.general.0, now);
            }
            _ => {
                for (port, f) in self.model.frames(op) {
                    self.send(port, &f);
                }
            }
        }
    }
}

fn config(capacity: u32, nat: Nat) -> TrackConfig {
    let mut cfg = TrackConfig::new(capacity);
    cfg.conntrack.nat = nat != Nat::None;
    cfg.frag_datagrams = 4;
    cfg
}

fn same_tables(a: &Tables, b: &Tables, now: u64) {
    let (a, b) = (&a.ct, &b.ct);
    assert_eq!(a.stats(), b.stats());
    assert_eq!(a.len(), b.len());
    assert!(a.list(now).eq(b.list(now)), "connections differ");
}

#[test]
fn established_packets_take_the_fast_path_and_get_the_general_paths_answers() {
    for nat in [Nat::None, Nat::OneToOne, Nat::Snat] {
        let mut t = Twin::new(64, nat);
        for flow in 0..FLOWS.len() {
            t.run(&Op::Open(flow));
        }
        for round in 0..4 {
            for flow in 0..FLOWS.len() {
                for c2s in [true, false] {
                    t.run(&Op::Data {
                        flow,
                        c2s,
                        len: 10,
                        stray: round == 3 && flow == 0,
                        ttl1: round == 2 && flow == 1,
                    });
                }
            }
        }
        // A swap: the first packet of each direction is judged again, the next ones cached.
        t.run(&Op::Swap(2));
        for _ in 0..2 {
            for flow in 0..FLOWS.len() {
                for c2s in [true, false] {
                    t.run(&Op::Data {
                        flow,
                        c2s,
                        len: 5,
                        stray: false,
                        ttl1: false,
                    });
                }
            }
        }
        assert!(t.fast_hits > 20, "the fast path ran {} times", t.fast_hits);
        assert!(t.lean_hits > 10, "the lean path ran {} times", t.lean_hits);
        if nat != Nat::None {
            assert!(
                t.lean_nat_hits > 10,
                "the lean path took {} translated packets",
                t.lean_nat_hits
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random traffic (handshakes, data both ways from the right and the wrong port, odd
    /// segments, fragments, ICMP errors, rule swaps, timeouts) through a small table, with and
    /// without NAT: the fast path answers as the general path does, and leaves the same
    /// tables; and both answer as every packet's own walk (no verdict cached) does, with rule
    /// sets that cache (connection marks set at NEW among them) and that may not.
    #[test]
    fn the_fast_path_answers_as_the_general_path(
        ops in proptest::collection::vec(arb_op(), 1..160),
        capacity in 2u32..12,
        nat in arb_nat(),
    ) {
        let mut t = Twin::new(capacity, nat);
        for op in &ops {
            t.run(op);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The worker's path (a prefetch pass over each burst, then each frame judged with what
    /// the pass found, some frames skipped as if handed to another worker) answers as the
    /// replay's (each frame alone, its tuple hashed and probed anew), with lookups that find
    /// timed-out entries and remove them, new connections inserted, and entries killed in the
    /// middle of a burst.
    #[test]
    fn lookups_from_the_prefetch_pass_answer_as_fresh_ones(
        ops in proptest::collection::vec(arb_op(), 1..160),
        skips in proptest::collection::vec(prop::bool::weighted(0.1), 32),
        capacity in 2u32..12,
        nat in arb_nat(),
        budget in 0u32..3,
    ) {
        let filter = filter(0, nat);
        let bridge = crate::pipeline::Bridge::new(
            &[(0, 1)],
            crate::pipeline::Policy::Forward,
            crate::pipeline::Policy::Drop,
        );
        let mut worker = Tables::new(&config(capacity, nat));
        let mut replay = Tables::new(&config(capacity, nat));
        let mut model = Model::new();
        // Bursts: the frames of consecutive steps, cut by waits and at 32.
        let mut bursts: Vec<(u64, Vec<Framed>)> = vec![(1_000 * MS, Vec::new())];
        for op in &ops {
            if let Op::Wait(ms) = op {
                let now = bursts.last().expect("one").0 + ms * MS + MS;
                bursts.push((now, Vec::new()));
                continue;
            }
            for f in model.frames(op) {
                let (now, b) = bursts.last_mut().expect("one");
                if b.len() == crate::dpdk::MAX_BURST {
                    let now = *now + MS;
                    bursts.push((now, vec![f]));
                } else {
                    b.push(f);
                }
            }
        }
        for (now, burst) in &bursts {
            let now = *now;
            worker.expire(now, budget);
            replay.expire(now, budget);
            let mut ring: Vec<Vec<u8>> = burst.iter().map(|(_, f)| f.clone()).collect();
            let mut parsed = [None; crate::dpdk::MAX_BURST];
            let mut hints = [conntrack::Hint::default(); crate::dpdk::MAX_BURST];
            prefetch_burst(&worker, ring.iter().map(|f| &f[..]), &mut parsed, &mut hints);
            for (j, (ingress, frame)) in burst.iter().enumerate() {
                if skips[j] {
                    continue;
                }
                let a = match &parsed[j] {
                    Some(info) => bridge.judge_verdict_parsed(
                        &filter, Some(&mut worker), *ingress, &mut ring[j], info, hints[j], now,
                        |_, _, _| {}, |_, _| {},
                    ),
                    None => bridge.judge_verdict(
                        &filter, Some(&mut worker), *ingress, &mut ring[j], now,
                        |_, _, _| {}, |_, _| {},
                    ),
                };
                let mut copy = frame.clone();
                let b = bridge.judge(&filter, Some(&mut replay), *ingress, &mut copy, now, |_, _, _| {});
                prop_assert_eq!(a, b.verdict);
                prop_assert_eq!(&ring[j], &copy);
                same_tables(&worker, &replay, now);
            }
        }
    }
}

proptest! {
    /// A chain of its policy alone keeps every tuple without being evaluated, as evaluating
    /// it would.
    #[test]
    fn an_empty_nat_chain_keeps_the_tuple(
        src in any::<[u8; 4]>(),
        dst in any::<[u8; 4]>(),
        ports in any::<(u16, u16)>(),
        proto in any::<u8>(),
        state in 0u32..5,
    ) {
        let chain = NatChain::accept_all(Family::V4, "test", "policy");
        let meta = PacketMeta {
            key: FlowKey::new_v4(src.into(), dst.into(), proto, ports.0, ports.1),
            in_port: 0,
            out_port: 1,
            ct_state: 1 << state,
            tcp_flags: 0,
            later_fragment: false,
        };
        prop_assert_eq!(NatDecision::from(decide(&chain, &meta, &mut Default::default())), chain.decide(&meta, |_, _, _| {}).0);
        prop_assert_eq!(decide(&chain, &meta, &mut Default::default()), NatChoice::Keep);
        let snat = snat_rules();
        prop_assert_eq!(NatDecision::from(decide(&snat.postrouting, &meta, &mut Default::default())), snat.postrouting.decide(&meta, |_, _, _| {}).0);
    }
}
