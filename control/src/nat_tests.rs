//! The pipeline with a nat table (bridge mode): translations decided on a connection's first
//! packet and applied to every packet of both directions, checked byte for byte against frames
//! built with the expected addresses (every checksum computed afresh), as Linux translates.

use crate::load::{nat_tables, NatEnv};
use crate::rules::{compile_nat, compile_parsed, parse_iptables, Hook};
use dataplane::classify::PacketMeta;
use dataplane::conntrack::{CtState, Dir};
use dataplane::filter::Filter;
use dataplane::nat::{NatError, OneToOne};
use dataplane::pipeline::{Bridge, Outcome, Policy};
use dataplane::track::{Tables, TrackConfig};
use dataplane::verdict::{DropReason, Verdict};
use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
use dataplane::wire::icmpv4::msg_type;
use dataplane::wire::tcp::Flags;
use dataplane::wire::{Family, IpAddr128};
use std::net::Ipv4Addr;

pub(crate) const INSIDE: u16 = 0;
pub(crate) const OUTSIDE: u16 = 1;
pub(crate) const SEC: u64 = 1_000_000_000;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const CLIENT2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const CLIENT3: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 4);
const PRIVATE_SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
const PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);
const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 254);

const FORWARD_STATEFUL: &str = "*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -i inside -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -i outside -d 10.0.0.5/32 -p tcp --dport 80 -m conntrack --ctstate NEW -j ACCEPT
COMMIT
";

pub(crate) struct Rig {
    pub(crate) bridge: Bridge,
    pub(crate) filter: Filter,
    pub(crate) tables: Tables,
    pub(crate) now: u64,
}

impl Rig {
    fn new(nat: &str, one_to_one: &[OneToOne]) -> Rig {
        Rig::with_filter(nat, FORWARD_STATEFUL, one_to_one)
    }

    fn with_filter(nat: &str, filter: &str, one_to_one: &[OneToOne]) -> Rig {
        let ports = ["inside".to_string(), "outside".to_string()];
        let text = format!("{nat}{filter}");
        let parsed = parse_iptables("nat.rules", &text, Family::V4, &ports).expect("parses");
        let nat = compile_nat(&parsed).expect("nat compiles");
        let env = NatEnv {
            workers: 1,
            masquerade: &[],
            one_to_one,
            host: None,
        };
        let filter = Filter {
            v4: Some(compile_parsed(&parsed, Hook::Forward).expect("compiles")),
            nat: nat_tables([Some(nat), None], &env),
            ..Filter::default()
        };
        assert!(filter.nat.is_some(), "the table translates");
        let mut cfg = TrackConfig::new(64);
        cfg.conntrack.nat = true;
        Rig {
            bridge: Bridge::new(&[(INSIDE, OUTSIDE)], Policy::Forward, Policy::Drop),
            filter,
            tables: Tables::new(&cfg),
            now: SEC,
        }
    }

    /// One frame from `ingress`; returns the outcome and the frame as it leaves.
    pub(crate) fn send(&mut self, ingress: u16, frame: &[u8]) -> (Outcome, Vec<u8>) {
        self.now += SEC / 1000;
        let mut f = frame.to_vec();
        let o = self.bridge.judge(
            &self.filter,
            Some(&mut self.tables),
            ingress,
            &mut f,
            self.now,
            |_, _, _| {},
        );
        (o, f)
    }

    /// [`Rig::send`], with the packet as each LOG rule it passed saw it.
    fn send_logged(&mut self, ingress: u16, frame: &[u8]) -> (Outcome, Vec<PacketMeta>) {
        self.now += SEC / 1000;
        let mut f = frame.to_vec();
        let mut logged = Vec::new();
        let o = self.bridge.judge(
            &self.filter,
            Some(&mut self.tables),
            ingress,
            &mut f,
            self.now,
            |_, _, meta| logged.push(*meta),
        );
        (o, logged)
    }

    /// Sends `frame` and checks that it leaves by the other port as `expect`.
    pub(crate) fn passes(&mut self, ingress: u16, frame: &[u8], expect: &[u8]) -> Outcome {
        let (o, out) = self.send(ingress, frame);
        assert_eq!(o.verdict, Verdict::Forward(1 - ingress), "{o:?}");
        assert_eq!(out, expect, "translated frame");
        o
    }
}

pub(crate) fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    FrameSpec::new(IpSpec::v4(src, dst), L4Spec::udp(sport, dport, b"query")).build()
}

pub(crate) fn tcp(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    flags: Flags,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    FrameSpec::new(
        IpSpec::v4(src, dst),
        L4Spec::tcp_segment(sport, dport, flags, seq, ack, &[]),
    )
    .build()
}

pub(crate) fn icmp_error(from: Ipv4Addr, to: Ipv4Addr, quoted: &[u8]) -> Vec<u8> {
    FrameSpec::new(
        IpSpec::v4(from, to),
        L4Spec::Icmp {
            ty: msg_type::TIME_EXCEEDED,
            code: 0,
            ident: 0,
            seq: 0,
            payload: quoted[14..].to_vec(),
        },
    )
    .build()
}

pub(crate) fn echo(src: Ipv4Addr, dst: Ipv4Addr, ty: u8, ident: u16) -> Vec<u8> {
    FrameSpec::new(
        IpSpec::v4(src, dst),
        L4Spec::Icmp {
            ty,
            code: 0,
            ident,
            seq: 1,
            payload: b"ping".to_vec(),
        },
    )
    .build()
}

const SNAT: &str = "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 10.0.0.0/24 -o outside -j SNAT --to-source 203.0.113.1
COMMIT
";

#[test]
fn snat_translates_both_directions_and_keeps_the_port() {
    let mut r = Rig::new(SNAT, &[]);
    let o = r.passes(
        INSIDE,
        &udp(CLIENT, 40000, REMOTE, 53),
        &udp(PUBLIC, 40000, REMOTE, 53),
    );
    assert_eq!(o.state, Some(CtState::New));
    let (b, dir) = o.nat.expect("translated");
    assert_eq!(dir, Dir::Orig);
    assert!(b.rewrites_src(Dir::Orig) && !b.rewrites_dst(Dir::Orig));
    // The reply comes to the public address and goes back to the client.
    let o = r.passes(
        OUTSIDE,
        &udp(REMOTE, 53, PUBLIC, 40000),
        &udp(REMOTE, 53, CLIENT, 40000),
    );
    assert_eq!(
        (o.state, o.nat.map(|n| n.1)),
        (Some(CtState::Established), Some(Dir::Reply))
    );
    // The filter saw the reply's destination translated (FORWARD comes after PREROUTING).
    assert_eq!(o.meta.unwrap().key.dst, IpAddr128::from_v4(CLIENT));
    // The untranslated reply tuple is no connection's: a NEW packet from outside, dropped.
    let (o, _) = r.send(OUTSIDE, &udp(REMOTE, 53, CLIENT, 40000));
    assert_eq!(o.verdict, Verdict::Drop(DropReason::RuleDrop));
    // Traffic the rule does not cover is not translated.
    let mut other = r.passes(
        INSIDE,
        &udp(Ipv4Addr::new(10, 9, 0, 1), 1234, REMOTE, 53),
        &udp(Ipv4Addr::new(10, 9, 0, 1), 1234, REMOTE, 53),
    );
    assert!(other.nat.take().is_none());
}

#[test]
fn snat_moves_a_taken_port_and_tcp_survives_the_handshake() {
    let mut r = Rig::new(SNAT, &[]);
    r.passes(
        INSIDE,
        &udp(CLIENT, 40000, REMOTE, 53),
        &udp(PUBLIC, 40000, REMOTE, 53),
    );
    // A second client with the same port to the same server: its reply tuple would clash.
    let (o, out) = r.send(INSIDE, &udp(CLIENT2, 40000, REMOTE, 53));
    assert_eq!(o.verdict, Verdict::Forward(OUTSIDE));
    let (b, _) = o.nat.unwrap();
    let moved = b.translated_orig().src_port;
    assert_ne!(moved, 40000);
    assert!(moved >= 1024, "the port stays in its class");
    assert_eq!(out, udp(PUBLIC, moved, REMOTE, 53));
    r.passes(
        OUTSIDE,
        &udp(REMOTE, 53, PUBLIC, moved),
        &udp(REMOTE, 53, CLIENT2, 40000),
    );
    // TCP through SNAT: the three-way handshake, conntrack following each side's sequence.
    let syn = tcp(CLIENT, 5000, REMOTE, 80, Flags::SYN, 100, 0);
    r.passes(
        INSIDE,
        &syn,
        &tcp(PUBLIC, 5000, REMOTE, 80, Flags::SYN, 100, 0),
    );
    let synack = tcp(REMOTE, 80, PUBLIC, 5000, Flags::SYN | Flags::ACK, 900, 101);
    r.passes(
        OUTSIDE,
        &synack,
        &tcp(REMOTE, 80, CLIENT, 5000, Flags::SYN | Flags::ACK, 900, 101),
    );
    let ack = tcp(CLIENT, 5000, REMOTE, 80, Flags::ACK, 101, 901);
    let o = r.passes(
        INSIDE,
        &ack,
        &tcp(PUBLIC, 5000, REMOTE, 80, Flags::ACK, 101, 901),
    );
    assert_eq!(o.state, Some(CtState::Established));
}

#[test]
fn dnat_publishes_an_inside_server_and_the_filter_sees_the_private_address() {
    let nat = "*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 203.0.113.1/32 -p tcp --dport 8080 -j DNAT --to-destination 10.0.0.5:80
COMMIT
";
    let mut r = Rig::new(nat, &[]);
    let syn = tcp(REMOTE, 5555, PUBLIC, 8080, Flags::SYN, 1, 0);
    let o = r.passes(
        OUTSIDE,
        &syn,
        &tcp(REMOTE, 5555, PRIVATE_SERVER, 80, Flags::SYN, 1, 0),
    );
    // Accepted by `-d 10.0.0.5 --dport 80`: FORWARD sees the translated destination.
    let meta = o.meta.unwrap();
    assert_eq!(
        (meta.key.dst, meta.key.dst_port),
        (IpAddr128::from_v4(PRIVATE_SERVER), 80)
    );
    let synack = tcp(
        PRIVATE_SERVER,
        80,
        REMOTE,
        5555,
        Flags::SYN | Flags::ACK,
        70,
        2,
    );
    r.passes(
        INSIDE,
        &synack,
        &tcp(PUBLIC, 8080, REMOTE, 5555, Flags::SYN | Flags::ACK, 70, 2),
    );
    // Another port of the public address is not published: NEW from outside, dropped.
    let (o, _) = r.send(OUTSIDE, &tcp(REMOTE, 5556, PUBLIC, 22, Flags::SYN, 1, 0));
    assert_eq!(o.verdict, Verdict::Drop(DropReason::RuleDrop));
}

/// firewalld's forward chain with a port forward: `--ctstate RELATED,ESTABLISHED,DNAT`
/// accepts what the nat table published (every packet of a DNAT'd connection, the first
/// included) and nothing else from outside; a plain state rule matches translated packets too;
/// `! --ctstate DNAT` (kube-proxy's shape) holds for untranslated ones only.
#[test]
fn ctstate_dnat_is_the_connections_destination_translation() {
    let nat = "*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 203.0.113.1/32 -p tcp --dport 8080 -j DNAT --to-destination 10.0.0.5:80
-A PREROUTING -d 203.0.113.1/32 -p tcp --dport 2222 -j DNAT --to-destination :22
COMMIT
";
    let filter = "*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -p tcp --dport 22 -m conntrack --ctstate NEW -j REJECT
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT
-A FORWARD -i inside -m conntrack ! --ctstate DNAT -j ACCEPT
COMMIT
";
    let mut r = Rig::with_filter(nat, filter, &[]);
    // Published: the SYN is NEW and DNAT'd, accepted by the DNAT state alone.
    let syn = tcp(REMOTE, 5555, PUBLIC, 8080, Flags::SYN, 1, 0);
    let o = r.passes(
        OUTSIDE,
        &syn,
        &tcp(REMOTE, 5555, PRIVATE_SERVER, 80, Flags::SYN, 1, 0),
    );
    assert_eq!(o.meta.unwrap().ct_state, dataplane::classify::ct::NEW_DNAT);
    // The server's answer is ESTABLISHED and DNAT'd (the connection's status, both ways): it
    // is not accepted as "from inside and not DNAT'd" but by rule 2.
    let synack = tcp(
        PRIVATE_SERVER,
        80,
        REMOTE,
        5555,
        Flags::SYN | Flags::ACK,
        70,
        2,
    );
    let o = r.passes(
        INSIDE,
        &synack,
        &tcp(PUBLIC, 8080, REMOTE, 5555, Flags::SYN | Flags::ACK, 70, 2),
    );
    let meta = o.meta.unwrap();
    assert_eq!(meta.ct_state, dataplane::classify::ct::ESTABLISHED_DNAT);
    assert_eq!(
        r.filter.v4.as_ref().unwrap().origins[o.filter.rule().unwrap() as usize].label,
        "FORWARD:2"
    );
    // Not published: NEW without DNAT from outside, dropped by the policy.
    let (o, _) = r.send(OUTSIDE, &tcp(REMOTE, 5556, PUBLIC, 80, Flags::SYN, 1, 0));
    assert_eq!(o.verdict, Verdict::Drop(DropReason::RuleDrop));
    // A port-only DNAT to 22: NEW (twin DNAT) still matches the plain `--ctstate NEW` rule.
    let (o, _) = r.send(OUTSIDE, &tcp(REMOTE, 5557, PUBLIC, 2222, Flags::SYN, 1, 0));
    assert_eq!(o.verdict, Verdict::Drop(DropReason::RuleReject), "{o:?}");
    // From inside without translation: NEW, not DNAT: rule 3.
    let (o, _) = r.send(INSIDE, &tcp(CLIENT, 6000, REMOTE, 443, Flags::SYN, 1, 0));
    assert_eq!(o.verdict, Verdict::Forward(OUTSIDE), "{o:?}");
    assert_eq!(o.meta.unwrap().ct_state, dataplane::classify::ct::NEW);
}

#[test]
fn icmp_errors_and_echo_through_snat() {
    let mut r = Rig::new(SNAT, &[]);
    let probe = udp(CLIENT, 33434, REMOTE, 33434);
    let on_wire = udp(PUBLIC, 33434, REMOTE, 33434);
    r.passes(INSIDE, &probe, &on_wire);
    // A router outside says the probe's TTL ran out, quoting the packet as it saw it.
    let err = icmp_error(ROUTER, PUBLIC, &on_wire);
    let o = r.passes(OUTSIDE, &err, &icmp_error(ROUTER, CLIENT, &probe));
    assert_eq!(o.state, Some(CtState::Related));
    // Echo: the identifier is kept when free, the address translated both ways.
    r.passes(
        INSIDE,
        &echo(CLIENT, REMOTE, 8, 77),
        &echo(PUBLIC, REMOTE, 8, 77),
    );
    r.passes(
        OUTSIDE,
        &echo(REMOTE, PUBLIC, 0, 77),
        &echo(REMOTE, CLIENT, 0, 77),
    );
    // Another client pinging with the same identifier gets another one.
    let (o, out) = r.send(INSIDE, &echo(CLIENT2, REMOTE, 8, 77));
    assert_eq!(o.verdict, Verdict::Forward(OUTSIDE));
    let id = o.nat.unwrap().0.translated_orig().src_port;
    assert_ne!(id, 77);
    assert_eq!(out, echo(PUBLIC, REMOTE, 8, id));
    r.passes(
        OUTSIDE,
        &echo(REMOTE, PUBLIC, 0, id),
        &echo(REMOTE, CLIENT2, 0, 77),
    );
}

#[test]
fn exhaustion_drops_new_connections_only() {
    let nat = "*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 10.0.0.0/24 -p udp -j SNAT --to-source 203.0.113.1:2000-2001
COMMIT
";
    let mut r = Rig::new(nat, &[]);
    let mut ports = Vec::new();
    for c in [CLIENT, CLIENT2] {
        let (o, _) = r.send(INSIDE, &udp(c, 40000, REMOTE, 53));
        assert_eq!(o.verdict, Verdict::Forward(OUTSIDE));
        ports.push(o.nat.unwrap().0.translated_orig().src_port);
    }
    ports.sort_unstable();
    assert_eq!(ports, [2000, 2001]);
    let (o, _) = r.send(INSIDE, &udp(CLIENT3, 40000, REMOTE, 53));
    assert_eq!(
        o.verdict,
        Verdict::Drop(DropReason::Nat(NatError::Exhausted))
    );
    assert_eq!(r.tables.ct.len(), 2, "the refused connection left no entry");
    // Existing connections carry on.
    let (o, out) = r.send(INSIDE, &udp(CLIENT, 40000, REMOTE, 53));
    assert_eq!(o.verdict, Verdict::Forward(OUTSIDE));
    assert_eq!(out[26..30], PUBLIC.octets());
}

#[test]
fn one_to_one_maps_both_ways() {
    let map = [OneToOne {
        public: IpAddr128::from_v4(PUBLIC),
        private: IpAddr128::from_v4(PRIVATE_SERVER),
    }];
    let nat = "*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
COMMIT
";
    let mut r = Rig::new(nat, &map);
    // Outbound from the private server: the public address, ports kept.
    r.passes(
        INSIDE,
        &udp(PRIVATE_SERVER, 4000, REMOTE, 53),
        &udp(PUBLIC, 4000, REMOTE, 53),
    );
    // Inbound to the public address (allowed to 10.0.0.5:80 by the filter): the private one.
    let syn = tcp(REMOTE, 6000, PUBLIC, 80, Flags::SYN, 1, 0);
    r.passes(
        OUTSIDE,
        &syn,
        &tcp(REMOTE, 6000, PRIVATE_SERVER, 80, Flags::SYN, 1, 0),
    );
    r.passes(
        INSIDE,
        &tcp(
            PRIVATE_SERVER,
            80,
            REMOTE,
            6000,
            Flags::SYN | Flags::ACK,
            9,
            2,
        ),
        &tcp(PUBLIC, 80, REMOTE, 6000, Flags::SYN | Flags::ACK, 9, 2),
    );
}

#[test]
fn fragments_of_a_translated_datagram_follow_its_first() {
    let mut r = Rig::new(SNAT, &[]);
    let spec = |src: Ipv4Addr| {
        let mut ip = IpSpec::v4(src, REMOTE);
        if let IpSpec::V4 { ident, .. } = &mut ip {
            *ident = 0x1234;
        }
        FrameSpec::new(ip, L4Spec::udp(40000, 53, &[7u8; 64]))
    };
    let frags = spec(CLIENT).fragments(32);
    let want = spec(PUBLIC).fragments(32);
    assert!(frags.len() >= 3);
    // Held until whole (as a worker holds them), then judged in offset order.
    let mut held = dataplane::conntrack::frag::Reassembly::new(r.tables.hold);
    for f in &frags {
        let info = dataplane::wire::parse_frame(f).expect("parses");
        held.hold(
            f.clone(),
            |f| f.as_slice(),
            &info,
            r.now,
            |_, e| panic!("held fragment dropped: {e:?}"),
        );
    }
    let mut whole = Vec::new();
    r.tables.whole = held.take_whole(usize::MAX, |f| whole.push(f));
    assert!(r.tables.whole.is_some_and(|w| w.csum_ok));
    assert_eq!(whole, frags);
    for (f, w) in frags.iter().zip(&want) {
        // Every fragment leaves with the public source; the first one's UDP checksum covers
        // the whole datagram's change, so the bytes are those of the datagram built with it.
        r.passes(INSIDE, f, w);
    }
    r.tables.whole = None;
    // The reply, whole, comes back to the client.
    r.passes(
        OUTSIDE,
        &udp(REMOTE, 53, PUBLIC, 40000),
        &udp(REMOTE, 53, CLIENT, 40000),
    );
}

mod prop {
    use super::*;
    use dataplane::conntrack::{Config as CtConfig, Conntrack, Invalid};
    use dataplane::wire::parse_frame;
    use proptest::prelude::*;

    const BOTH: &str = "*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 203.0.113.1/32 -p tcp --dport 8080 -j DNAT --to-destination 10.0.0.5:80
-A PREROUTING -d 203.0.113.1/32 -p udp --dport 5353 -j DNAT --to-destination 10.0.0.5:53
-A POSTROUTING -s 10.0.0.0/24 -o outside -p udp -j SNAT --to-source 203.0.113.1:3000-3003
-A POSTROUTING -s 10.0.0.0/24 -o outside -j SNAT --to-source 203.0.113.1
COMMIT
";

    /// A frame between a few inside and outside hosts and ports (so that flows meet, clash
    /// and exhaust the small UDP range), of TCP, UDP or ICMP echo.
    fn arb_frame() -> impl Strategy<Value = (u16, Vec<u8>)> {
        (any::<bool>(), 0u8..3, 0u8..3, 0u8..3, 0u8..4, 0u8..6).prop_map(
            |(from_inside, proto, host, port, peer, flags)| {
                let inside = [CLIENT, CLIENT2, PRIVATE_SERVER][usize::from(host)];
                let outside = [REMOTE, ROUTER, PUBLIC, REMOTE][usize::from(peer)];
                let ports = [80u16, 8080, 5353, 40000];
                let (p_in, p_out) = (ports[usize::from(port)], ports[usize::from(peer)]);
                let (s, sp, d, dp) = if from_inside {
                    (inside, p_in, outside, p_out)
                } else {
                    (outside, p_out, inside.max(PUBLIC), p_in)
                };
                let f = match proto {
                    0 => {
                        let fl = [
                            Flags::SYN,
                            Flags::SYN | Flags::ACK,
                            Flags::ACK,
                            Flags::RST,
                            Flags(0x11),
                            Flags(0x18),
                        ];
                        tcp(s, sp, d, dp, fl[usize::from(flags)], 1000, 2000)
                    }
                    1 => udp(s, sp, d, dp),
                    _ => echo(s, d, if flags % 2 == 0 { 8 } else { 0 }, p_in),
                };
                (if from_inside { INSIDE } else { OUTSIDE }, f)
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_traffic_through_nat_keeps_checksums_and_tables_sound(
            frames in proptest::collection::vec(arb_frame(), 1..80)
        ) {
            let mut r = Rig::new(BOTH, &[]);
            // A table that checks L4 checksums, to read the frames Rampart sends.
            let mut check = Conntrack::new(CtConfig::new(1024));
            for (ingress, f) in &frames {
                let (o, out) = r.send(*ingress, f);
                if let Verdict::Forward(_) = o.verdict {
                    let info = parse_frame(&out).expect("a forwarded frame parses");
                    let t = check.track(&out, &info, r.now);
                    prop_assert_ne!(t.invalid, Some(Invalid::BadChecksum), "{:?}", o.nat);
                }
                let st = r.tables.ct.stats();
                prop_assert!(st.nat_live <= u64::from(r.tables.ct.len()));
            }
        }
    }
}

#[test]
fn ipv6_snat_and_dnat() {
    use std::net::Ipv6Addr;
    let text = "*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 2001:db8::1/128 -p tcp --dport 8443 -j DNAT --to-destination [fd00::5]:443
-A POSTROUTING -s fd00::/64 -o outside -j SNAT --to-source 2001:db8::1
COMMIT
*filter
:FORWARD DROP [0:0]
-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -i inside -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -d fd00::5/128 -p tcp --dport 443 -m conntrack --ctstate NEW -j ACCEPT
COMMIT
";
    let ports = ["inside".to_string(), "outside".to_string()];
    let parsed = parse_iptables("nat6.rules", text, Family::V6, &ports).expect("parses");
    let env = NatEnv {
        workers: 1,
        masquerade: &[],
        one_to_one: &[],
        host: None,
    };
    let filter = Filter {
        v6: Some(compile_parsed(&parsed, Hook::Forward).expect("compiles")),
        nat: nat_tables([None, Some(compile_nat(&parsed).expect("nat"))], &env),
        ..Filter::default()
    };
    let mut cfg = TrackConfig::new(64);
    cfg.conntrack.nat = true;
    let mut r = Rig {
        bridge: Bridge::new(&[(INSIDE, OUTSIDE)], Policy::Forward, Policy::Drop),
        filter,
        tables: Tables::new(&cfg),
        now: SEC,
    };
    let a = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    let (client, public, remote, server) = (
        a("fd00::2"),
        a("2001:db8::1"),
        a("2001:db8:9::9"),
        a("fd00::5"),
    );
    let udp6 = |s: Ipv6Addr, sp: u16, d: Ipv6Addr, dp: u16| {
        FrameSpec::new(IpSpec::v6(s, d), L4Spec::udp(sp, dp, b"query")).build()
    };
    let tcp6 = |s: Ipv6Addr, sp: u16, d: Ipv6Addr, dp: u16, flags: Flags| {
        FrameSpec::new(
            IpSpec::v6(s, d),
            L4Spec::Tcp {
                sport: sp,
                dport: dp,
                seq: 1,
                ack: 0,
                flags,
                window: 0xffff,
                options: Vec::new(),
                payload: Vec::new(),
            },
        )
        .build()
    };
    r.passes(
        INSIDE,
        &udp6(client, 5000, remote, 53),
        &udp6(public, 5000, remote, 53),
    );
    r.passes(
        OUTSIDE,
        &udp6(remote, 53, public, 5000),
        &udp6(remote, 53, client, 5000),
    );
    r.passes(
        OUTSIDE,
        &tcp6(remote, 7000, public, 8443, Flags::SYN),
        &tcp6(remote, 7000, server, 443, Flags::SYN),
    );
    r.passes(
        INSIDE,
        &tcp6(server, 443, remote, 7000, Flags::SYN | Flags::ACK),
        &tcp6(public, 8443, remote, 7000, Flags::SYN | Flags::ACK),
    );
}

#[test]
fn log_in_forward_sees_the_destination_translated_and_the_source_not() {
    let nat = "*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 203.0.113.1/32 -p tcp --dport 8080 -j DNAT --to-destination 10.0.0.5:80
-A POSTROUTING -o outside -j SNAT --to-source 203.0.113.1
COMMIT
";
    let filter = "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -j LOG --log-prefix \"fw \"
COMMIT
";
    let mut r = Rig::with_filter(nat, filter, &[]);
    let seen = |m: &PacketMeta| (m.key.src, m.key.src_port, m.key.dst, m.key.dst_port);
    let v4 = IpAddr128::from_v4;
    // DNAT: FORWARD (and its LOG) sees the private destination, as Linux's LOG prints it.
    let (o, logged) = r.send_logged(OUTSIDE, &tcp(REMOTE, 5555, PUBLIC, 8080, Flags::SYN, 1, 0));
    assert_eq!(o.verdict, Verdict::Forward(INSIDE));
    assert_eq!(logged.len(), 1);
    assert_eq!(seen(&logged[0]), (v4(REMOTE), 5555, v4(PRIVATE_SERVER), 80));
    // NEW, of a connection whose destination is translated (`--ctstate DNAT`).
    assert_eq!(logged[0].ct_state, dataplane::classify::ct::NEW_DNAT);
    // Its reply: the source is translated back only after FORWARD (POSTROUTING's de-DNAT).
    let synack = tcp(
        PRIVATE_SERVER,
        80,
        REMOTE,
        5555,
        Flags::SYN | Flags::ACK,
        70,
        2,
    );
    let (_, logged) = r.send_logged(INSIDE, &synack);
    assert_eq!(seen(&logged[0]), (v4(PRIVATE_SERVER), 80, v4(REMOTE), 5555));
    // SNAT: FORWARD sees the inside source, translated later in POSTROUTING.
    let (o, logged) = r.send_logged(INSIDE, &udp(CLIENT, 40000, REMOTE, 53));
    assert_eq!(o.verdict, Verdict::Forward(OUTSIDE));
    assert_eq!(seen(&logged[0]), (v4(CLIENT), 40000, v4(REMOTE), 53));
    // Its reply arrives for the public address and FORWARD sees the inside one.
    let (_, logged) = r.send_logged(OUTSIDE, &udp(REMOTE, 53, PUBLIC, 40000));
    assert_eq!(seen(&logged[0]), (v4(REMOTE), 53, v4(CLIENT), 40000));
}
