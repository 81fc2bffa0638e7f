//! NETMAP through the pipeline (bridge mode): a prefix mapped onto another address for
//! address, the destination in PREROUTING and the source in POSTROUTING, host bits kept,
//! ports kept unless the reply tuple is taken, replies and ICMP errors quoting a translated
//! packet translated back; checked byte for byte against frames built with the expected
//! addresses (every checksum computed afresh). REDIRECT on a bridge, which has no address:
//! dropped, as Linux drops it.

use crate::load::{nat_tables, NatEnv};
use crate::nat_tests::{echo, icmp_error, tcp, udp, Rig, INSIDE, OUTSIDE, SEC};
use crate::rules::{compile_nat, compile_parsed, parse_iptables, Hook};
use dataplane::conntrack::CtState;
use dataplane::filter::Filter;
use dataplane::nat::NatError;
use dataplane::pipeline::{Bridge, Policy};
use dataplane::track::{Tables, TrackConfig};
use dataplane::verdict::{DropReason, Verdict};
use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
use dataplane::wire::tcp::Flags;
use dataplane::wire::Family;
use std::net::{Ipv4Addr, Ipv6Addr};

const FORWARD_ALL: &str = "*filter
:FORWARD ACCEPT [0:0]
COMMIT
";

/// A bridge rig with `nat` (and a filter that forwards everything) for `family`.
fn rig(nat: &str, family: Family) -> Rig {
    let ports = ["inside".to_string(), "outside".to_string()];
    let text = format!("{nat}{FORWARD_ALL}");
    let parsed = parse_iptables("netmap.rules", &text, family, &ports).expect("parses");
    let env = NatEnv {
        workers: 1,
        masquerade: &[],
        one_to_one: &[],
        host: None,
    };
    let rules = Some(compile_parsed(&parsed, Hook::Forward).expect("compiles"));
    let nat = Some(compile_nat(&parsed).expect("nat compiles"));
    let filter = match family {
        Family::V4 => Filter {
            v4: rules,
            nat: nat_tables([nat, None], &env),
            ..Filter::default()
        },
        Family::V6 => Filter {
            v6: rules,
            nat: nat_tables([None, nat], &env),
            ..Filter::default()
        },
    };
    let mut cfg = TrackConfig::new(64);
    cfg.conntrack.nat = true;
    Rig {
        bridge: Bridge::new(&[(INSIDE, OUTSIDE)], Policy::Forward, Policy::Drop),
        filter,
        tables: Tables::new(&cfg),
        now: SEC,
    }
}

const NETMAP_V4: &str = "*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i outside -d 198.19.0.0/24 -j NETMAP --to 10.0.0.0/24
-A POSTROUTING -o outside -s 10.0.0.0/24 -j NETMAP --to 198.18.7.0/24
-A POSTROUTING -o outside -s 10.2.0.0/24 -j NETMAP --to 198.18.7.99/24
-A POSTROUTING -o outside -s 10.1.0.0/16 -j NETMAP --to 100.64.0.0/10
COMMIT
";

fn v4(a: [u8; 4]) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);

#[test]
fn netmap_maps_sources_out_with_their_host_bits() {
    let mut r = rig(NETMAP_V4, Family::V4);
    let client = v4([10, 0, 0, 2]);
    let mapped = v4([198, 18, 7, 2]);
    r.passes(
        INSIDE,
        &udp(client, 5000, REMOTE, 53),
        &udp(mapped, 5000, REMOTE, 53),
    );
    let o = r.passes(
        OUTSIDE,
        &udp(REMOTE, 53, mapped, 5000),
        &udp(REMOTE, 53, client, 5000),
    );
    assert_eq!(o.state, Some(CtState::Established));
    // A /10 keeps the host bits that cross an octet: 10.1.37.201 -> 100.65.37.201.
    let far = v4([10, 1, 37, 201]);
    let far_mapped = v4([100, 65, 37, 201]);
    r.passes(
        INSIDE,
        &tcp(far, 40000, REMOTE, 443, Flags::SYN, 1, 0),
        &tcp(far_mapped, 40000, REMOTE, 443, Flags::SYN, 1, 0),
    );
    r.passes(
        OUTSIDE,
        &tcp(
            REMOTE,
            443,
            far_mapped,
            40000,
            Flags::SYN | Flags::ACK,
            9,
            2,
        ),
        &tcp(REMOTE, 443, far, 40000, Flags::SYN | Flags::ACK, 9, 2),
    );
    // An ICMP error about the mapped probe comes back quoting the probe as it was sent.
    let router = v4([198, 51, 100, 254]);
    let err = icmp_error(router, mapped, &udp(mapped, 5000, REMOTE, 53));
    let o = r.passes(
        OUTSIDE,
        &err,
        &icmp_error(router, client, &udp(client, 5000, REMOTE, 53)),
    );
    assert_eq!(o.state, Some(CtState::Related));
    // Echo: the identifier kept, the address mapped both ways.
    r.passes(
        INSIDE,
        &echo(client, REMOTE, 8, 77),
        &echo(mapped, REMOTE, 8, 77),
    );
    r.passes(
        OUTSIDE,
        &echo(REMOTE, mapped, 0, 77),
        &echo(REMOTE, client, 0, 77),
    );
    // Another network mapped onto the same prefix (host bits of `--to` dropped): 10.2.0.2
    // maps onto 198.18.7.2 too, and its flow to the same remote port clashes with the first
    // one's reply tuple: the nat core's uniqueness step moves the port in its class, as for
    // SNAT to one address.
    let twin = v4([10, 2, 0, 2]);
    let (o, out) = r.send(INSIDE, &udp(twin, 5000, REMOTE, 53));
    assert_eq!(o.verdict, Verdict::Forward(OUTSIDE));
    let t = o.nat.expect("translated").0.translated_orig();
    assert_eq!(t.src.to_v4(), Some(mapped));
    assert!(t.src_port >= 1024 && t.src_port != 5000, "{t:?}");
    assert_eq!(out, udp(mapped, t.src_port, REMOTE, 53));
    r.passes(
        OUTSIDE,
        &udp(REMOTE, 53, mapped, t.src_port),
        &udp(REMOTE, 53, twin, 5000),
    );
    // Outside the prefix: untouched.
    let other = v4([10, 3, 0, 2]);
    r.passes(
        INSIDE,
        &udp(other, 5000, REMOTE, 53),
        &udp(other, 5000, REMOTE, 53),
    );
}

#[test]
fn netmap_maps_destinations_in_and_replies_back() {
    let mut r = rig(NETMAP_V4, Family::V4);
    let public = v4([198, 19, 0, 5]);
    let server = v4([10, 0, 0, 5]);
    let o = r.passes(
        OUTSIDE,
        &tcp(REMOTE, 7000, public, 80, Flags::SYN, 1, 0),
        &tcp(REMOTE, 7000, server, 80, Flags::SYN, 1, 0),
    );
    assert_eq!(o.state, Some(CtState::New));
    // The reply is the connection's: POSTROUTING's source mapping is not consulted for it.
    r.passes(
        INSIDE,
        &tcp(server, 80, REMOTE, 7000, Flags::SYN | Flags::ACK, 5, 2),
        &tcp(public, 80, REMOTE, 7000, Flags::SYN | Flags::ACK, 5, 2),
    );
    // Every host of the prefix, to its own address: .0 and .255 too.
    for host in [0u8, 1, 77, 255] {
        let p = v4([198, 19, 0, host]);
        let s = v4([10, 0, 0, host]);
        r.passes(
            OUTSIDE,
            &udp(REMOTE, 6000, p, 53),
            &udp(REMOTE, 6000, s, 53),
        );
        r.passes(INSIDE, &udp(s, 53, REMOTE, 6000), &udp(p, 53, REMOTE, 6000));
    }
    // A router outside reports the mapped reply (sent from 198.19.0.77): the error reaches
    // the server quoting the reply as the server sent it.
    let router = v4([198, 51, 100, 254]);
    let (p, s) = (v4([198, 19, 0, 77]), v4([10, 0, 0, 77]));
    let o = r.passes(
        OUTSIDE,
        &icmp_error(router, p, &udp(p, 53, REMOTE, 6000)),
        &icmp_error(router, s, &udp(s, 53, REMOTE, 6000)),
    );
    assert_eq!(o.state, Some(CtState::Related));
    // Another connection from another remote port: its own binding, the same mapping.
    r.passes(
        OUTSIDE,
        &tcp(REMOTE, 7001, public, 80, Flags::SYN, 1, 0),
        &tcp(REMOTE, 7001, server, 80, Flags::SYN, 1, 0),
    );
    // A destination mapped onto an address already in use by the same remote endpoint clashes
    // (a DNAT without ports cannot move the port): dropped, as Linux drops it at
    // confirmation.
    let mut r = rig(
        "*nat
:PREROUTING ACCEPT [0:0]
-A PREROUTING -d 198.19.0.0/24 -j NETMAP --to 10.0.0.0/24
-A PREROUTING -d 198.20.0.0/16 -j NETMAP --to 10.0.0.0/24
COMMIT
",
        Family::V4,
    );
    r.passes(
        OUTSIDE,
        &udp(REMOTE, 6000, v4([198, 19, 0, 5]), 53),
        &udp(REMOTE, 6000, server, 53),
    );
    let (o, _) = r.send(OUTSIDE, &udp(REMOTE, 6000, v4([198, 20, 9, 5]), 53));
    assert_eq!(o.verdict, Verdict::Drop(DropReason::Nat(NatError::Clash)));
}

#[test]
fn netmap_maps_ipv6_prefixes_both_ways() {
    let mut r = rig(
        "*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i outside -d 2001:db8:19::/64 -j NETMAP --to fd00::/64
-A POSTROUTING -o outside -s fd00::/64 -j NETMAP --to 2001:db8:18::/48
COMMIT
",
        Family::V6,
    );
    let a = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    let udp6 = |s: Ipv6Addr, sp: u16, d: Ipv6Addr, dp: u16| {
        FrameSpec::new(IpSpec::v6(s, d), L4Spec::udp(sp, dp, b"query")).build()
    };
    let remote = a("2001:db8:9::9");
    let (client, mapped) = (a("fd00::2:3:4:5"), a("2001:db8:18::2:3:4:5"));
    r.passes(
        INSIDE,
        &udp6(client, 5000, remote, 53),
        &udp6(mapped, 5000, remote, 53),
    );
    r.passes(
        OUTSIDE,
        &udp6(remote, 53, mapped, 5000),
        &udp6(remote, 53, client, 5000),
    );
    let (public, server) = (a("2001:db8:19::abcd:5"), a("fd00::abcd:5"));
    r.passes(
        OUTSIDE,
        &udp6(remote, 6000, public, 53),
        &udp6(remote, 6000, server, 53),
    );
    r.passes(
        INSIDE,
        &udp6(server, 53, remote, 6000),
        &udp6(public, 53, remote, 6000),
    );
}

#[test]
fn redirect_on_a_bridge_drops_as_linux_without_an_address() {
    let mut r = rig(
        "*nat
:PREROUTING ACCEPT [0:0]
-A PREROUTING -p tcp --dport 80 -j REDIRECT --to-ports 3128
COMMIT
",
        Family::V4,
    );
    let (o, _) = r.send(
        INSIDE,
        &tcp(v4([10, 0, 0, 2]), 40000, REMOTE, 80, Flags::SYN, 1, 0),
    );
    assert_eq!(
        o.verdict,
        Verdict::Drop(DropReason::Nat(NatError::NoAddress))
    );
    // Other traffic passes.
    let f = tcp(v4([10, 0, 0, 2]), 40000, REMOTE, 443, Flags::SYN, 1, 0);
    r.passes(INSIDE, &f, &f);
}
