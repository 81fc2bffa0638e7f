use super::*;
use crate::route::neigh::NeighConfig;
use crate::wire::builder::{self, FrameSpec, IpSpec, L4Spec};
use crate::wire::{parse_frame, VlanTag};
use proptest::prelude::*;

const IN_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x11]);
const OUT_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x22]);
/// The inside host, 10.0.0.2 / fd00::2.
const HOST: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x01]);
/// The outside gateway, 203.0.113.254 / 2001:db8::fe.
const GW: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xfe]);
const S: u64 = 1_000_000_000;

type St = RouterState<Vec<u8>>;
type Out = Vec<(u16, Vec<u8>)>;

fn a(s: &str) -> IpAddr128 {
    IpAddr128::from_std(s.parse().unwrap())
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn ifa(s: &str) -> IfAddr {
    let (addr, len) = s.split_once('/').unwrap();
    IfAddr::new(addr.parse().unwrap(), len.parse().unwrap())
}

fn default_routes() -> Vec<Route> {
    vec![
        Route {
            family: Family::V4,
            prefix: a("0.0.0.0"),
            len: 0,
            hop: NextHop {
                port: 1,
                gateway: Some(a("203.0.113.254")),
            },
        },
        Route {
            family: Family::V6,
            prefix: a("::"),
            len: 0,
            hop: NextHop {
                port: 1,
                gateway: Some(a("2001:db8::fe")),
            },
        },
    ]
}

fn ports(out_mtu: u32) -> Vec<PortL3> {
    vec![
        PortL3::new(IN_MAC, vec![ifa("10.0.0.1/24"), ifa("fd00::1/64")], 1500),
        PortL3::new(
            OUT_MAC,
            vec![ifa("203.0.113.1/24"), ifa("2001:db8::1/64")],
            out_mtu,
        ),
    ]
}

fn router_with(cfg: RouterConfig, out_mtu: u32) -> Router {
    Router::new(ports(out_mtu), &default_routes(), cfg).unwrap()
}

fn router() -> Router {
    router_with(RouterConfig::default(), 1500)
}

fn info(f: &[u8]) -> PacketInfo {
    parse_frame(f).unwrap()
}

fn spec(src_mac: MacAddr, dst_mac: MacAddr, ip: IpSpec, l4: L4Spec) -> FrameSpec {
    FrameSpec {
        src_mac,
        dst_mac,
        ..FrameSpec::new(ip, l4)
    }
}

fn ipv4(src: &str, dst: &str, ttl: u8) -> IpSpec {
    let mut ip = IpSpec::v4(v4(src), v4(dst));
    if let IpSpec::V4 { ttl: t, .. } = &mut ip {
        *t = ttl;
    }
    ip
}

fn ipv6(src: &str, dst: &str, hop: u8) -> IpSpec {
    let mut ip = IpSpec::v6(v6(src), v6(dst));
    if let IpSpec::V6 { hop_limit, .. } = &mut ip {
        *hop_limit = hop;
    }
    ip
}

/// A UDP packet from the inside host to `dst`, with this TTL.
fn from_host(dst: &str, ttl: u8, payload: usize) -> Vec<u8> {
    spec(
        HOST,
        IN_MAC,
        ipv4("10.0.0.2", dst, ttl),
        L4Spec::udp(1000, 53, &vec![0x5a; payload]),
    )
    .build()
}

fn from_host6(dst: &str, hop: u8, payload: usize) -> Vec<u8> {
    spec(
        HOST,
        IN_MAC,
        ipv6("fd00::2", dst, hop),
        L4Spec::udp(1000, 53, &vec![0x5a; payload]),
    )
    .build()
}

/// Runs `input_l2`, returning the action, the frames emitted and the packets released.
fn l2(r: &Router, st: &mut St, port: u16, f: &[u8], now: u64) -> (L2Action, Out, Out) {
    let mut out = Vec::new();
    let mut released = Vec::new();
    let act = r.input_l2(st, port, f, &info(f), now, &mut out, |p, pkt| {
        released.push((p, pkt))
    });
    (act, out, released)
}

/// The router learns the inside host (10.0.0.2 and fd00::2) from its own requests: Stale.
fn learn_host(r: &Router, st: &mut St) {
    let req = builder::arp_request(HOST, v4("10.0.0.2"), v4("10.0.0.1"));
    assert_eq!(l2(r, st, 0, &req, 0).0, L2Action::Consumed);
    let mut ns = [0u8; MAX_FRAME];
    let n = ndisc::neighbour_solicitation(&mut ns, HOST, v6("fd00::2"), v6("fd00::1"), None);
    assert_eq!(l2(r, st, 0, &ns[..n], 0).0, L2Action::Consumed);
}

/// The router learns the outside gateway from an answer: Reachable.
fn learn_gateway(r: &Router, st: &mut St, now: u64) -> Out {
    let f = from_host("198.51.100.7", 64, 4);
    let mut out = Vec::new();
    let _ = r.forward(st, 0, f.clone(), &info(&f), hop_v4(), now, &mut out);
    let reply = builder::arp_reply(GW, v4("203.0.113.254"), OUT_MAC, v4("203.0.113.1"));
    l2(r, st, 1, &reply, now).2
}

fn hop_v4() -> NextHop {
    NextHop {
        port: 1,
        gateway: Some(a("203.0.113.254")),
    }
}

fn hop_v6() -> NextHop {
    NextHop {
        port: 1,
        gateway: Some(a("2001:db8::fe")),
    }
}

fn forward(r: &Router, st: &mut St, f: &[u8], hop: NextHop, now: u64) -> (Forwarded<Vec<u8>>, Out) {
    let mut out = Vec::new();
    let res = r.forward(st, 0, f.to_vec(), &info(f), hop, now, &mut out);
    (res, out)
}

#[test]
fn link_local_is_modified_eui64() {
    assert_eq!(
        link_local_of(MacAddr([0x00, 0x11, 0x22, 0x33, 0x44, 0x55])),
        v6("fe80::211:22ff:fe33:4455")
    );
    let r = router();
    let ll = IpAddr128::from_v6(r.port(0).unwrap().link_local());
    assert!(r.is_local(&ll));
    assert_eq!(r.decide(Family::V6, &ll), Egress::Local);
}

#[test]
fn if_addr_arithmetic() {
    let x = ifa("192.0.2.77/26");
    assert_eq!(x.network(), a("192.0.2.64"));
    assert_eq!(x.broadcast(), Some(a("192.0.2.127")));
    assert!(x.contains(&a("192.0.2.100")));
    assert!(!x.contains(&a("192.0.2.128")));
    assert!(!x.contains(&a("::ffff:c000:2ff:0")));
    assert_eq!(ifa("192.0.2.1/31").broadcast(), None);
    assert_eq!(ifa("0.0.0.1/0").network(), a("0.0.0.0"));
    let y = ifa("2001:db8::1/64");
    assert_eq!(y.network(), a("2001:db8::"));
    assert!(y.contains(&a("2001:db8::ffff")));
    assert!(!y.contains(&a("2001:db8:1::1")));
    assert!(!y.contains(&a("10.0.0.1")));
    assert_eq!(y.broadcast(), None);
    assert!(ifa("::/0").contains(&a("2001:db8::1")));
    assert_eq!(y.to_string(), "2001:db8::1/64");
}

#[test]
fn decide_local_broadcast_multicast_routes_and_martians() {
    let r = router();
    use Egress::*;
    for (f, d, want) in [
        (Family::V4, "10.0.0.1", Local),
        (Family::V4, "203.0.113.1", Local),
        (Family::V4, "255.255.255.255", Local),
        (Family::V4, "10.0.0.255", Local),
        (Family::V4, "203.0.113.255", Local),
        (Family::V4, "224.0.0.5", Local),
        (
            Family::V4,
            "10.0.0.9",
            Forward(NextHop {
                port: 0,
                gateway: None,
            }),
        ),
        (Family::V4, "8.8.8.8", Forward(hop_v4())),
        (Family::V4, "127.0.0.1", Martian),
        (Family::V4, "0.1.2.3", Martian),
        (Family::V4, "240.0.0.1", Martian),
        (Family::V6, "fd00::1", Local),
        (Family::V6, "ff02::1", Local),
        (
            Family::V6,
            "fd00::9",
            Forward(NextHop {
                port: 0,
                gateway: None,
            }),
        ),
        (Family::V6, "2606:4700::1", Forward(hop_v6())),
        (Family::V6, "::1", Martian),
        (Family::V6, "::", Martian),
        (Family::V6, "fe80::1234", Martian),
        (Family::V6, "::ffff:10.0.0.1", Martian),
    ] {
        assert_eq!(r.decide(f, &a(d)), want, "{d}");
    }
    // An IPv4 packet cannot carry an IPv6 address.
    assert_eq!(r.decide(Family::V4, &a("fd00::1")), Martian);
    let bare = Router::new(ports(1500), &[], RouterConfig::default()).unwrap();
    assert_eq!(bare.decide(Family::V4, &a("8.8.8.8")), Unreachable);
    assert_eq!(bare.decide(Family::V6, &a("2606:4700::1")), Unreachable);
}

#[test]
fn source_for_prefers_the_subnet_of_the_destination() {
    let p = vec![
        PortL3::new(
            IN_MAC,
            vec![ifa("10.0.0.1/24"), ifa("10.1.0.1/24"), ifa("fd00::1/64")],
            1500,
        ),
        PortL3::new(OUT_MAC, vec![ifa("203.0.113.1/24")], 1500),
    ];
    let r = Router::new(p, &[], RouterConfig::default()).unwrap();
    assert_eq!(
        r.source_for(0, Family::V4, &a("10.1.0.5")),
        Some(a("10.1.0.1"))
    );
    assert_eq!(
        r.source_for(0, Family::V4, &a("8.8.8.8")),
        Some(a("10.0.0.1")),
        "primary"
    );
    assert_eq!(
        r.source_for(0, Family::V6, &a("2001:db8::1")),
        Some(a("fd00::1"))
    );
    assert_eq!(
        r.source_for(0, Family::V6, &a("fe80::5")),
        Some(IpAddr128::from_v6(link_local_of(IN_MAC)))
    );
    assert_eq!(r.source_for(1, Family::V6, &a("2001:db8::1")), None);
    assert_eq!(r.source_for(7, Family::V4, &a("8.8.8.8")), None);
}

/// REDIRECT's destination: the ingress port's primary address whatever the destination's
/// subnet (not MASQUERADE's choice by subnet); IPv6 its first global address, the link-local
/// one toward a link-local destination or when it has no other; none without an IPv4 address.
#[test]
fn redirect_to_is_the_ingress_ports_primary_address() {
    let p = vec![
        PortL3::new(
            IN_MAC,
            vec![
                ifa("10.0.0.1/24"),
                ifa("10.1.0.1/24"),
                ifa("fd00::1/64"),
                ifa("fd01::1/64"),
            ],
            1500,
        ),
        PortL3::new(OUT_MAC, vec![ifa("2001:db8::1/64")], 1500),
    ];
    let r = Router::new(p, &[], RouterConfig::default()).unwrap();
    for dst in ["10.1.0.5", "8.8.8.8", "10.0.0.1"] {
        assert_eq!(
            r.redirect_to(0, Family::V4, &a(dst)),
            Some(a("10.0.0.1")),
            "{dst}"
        );
    }
    assert_eq!(
        r.redirect_to(0, Family::V6, &a("fd01::9")),
        Some(a("fd00::1"))
    );
    assert_eq!(
        r.redirect_to(0, Family::V6, &a("fe80::5")),
        Some(IpAddr128::from_v6(link_local_of(IN_MAC)))
    );
    assert_eq!(
        r.redirect_to(1, Family::V4, &a("8.8.8.8")),
        None,
        "no IPv4 address"
    );
    let bare = Router::new(
        vec![PortL3::new(OUT_MAC, vec![ifa("10.9.0.1/24")], 1500)],
        &[],
        RouterConfig::default(),
    )
    .unwrap();
    assert_eq!(
        bare.redirect_to(0, Family::V6, &a("2001:db8::9")),
        Some(IpAddr128::from_v6(link_local_of(OUT_MAC))),
        "only the link-local address"
    );
    assert_eq!(r.redirect_to(7, Family::V4, &a("8.8.8.8")), None);
}

#[test]
fn build_errors() {
    let cfg = RouterConfig::default();
    let dup = vec![
        PortL3::new(IN_MAC, vec![ifa("10.0.0.1/24")], 1500),
        PortL3::new(OUT_MAC, vec![ifa("10.0.0.1/24")], 1500),
    ];
    assert!(matches!(
        Router::new(dup, &[], cfg),
        Err(RouterBuildError::Duplicate { .. })
    ));
    for bad in [
        "10.0.0.0/24",
        "10.0.0.255/24",
        "224.0.0.1/4",
        "fe80::1/64",
        "10.0.0.1/33",
    ] {
        let p = vec![PortL3::new(IN_MAC, vec![ifa(bad)], 1500)];
        assert!(
            matches!(
                Router::new(p, &[], cfg),
                Err(RouterBuildError::Address { .. })
            ),
            "{bad}"
        );
    }
    for fine in ["10.0.0.0/31", "10.0.0.1/32", "2001:db8::/64"] {
        let p = vec![PortL3::new(IN_MAC, vec![ifa(fine)], 1500)];
        assert!(Router::new(p, &[], cfg).is_ok(), "{fine}");
    }
    let p = vec![PortL3::new(IN_MAC, vec![ifa("fd00::1/64")], 1279)];
    assert!(matches!(
        Router::new(p, &[], cfg),
        Err(RouterBuildError::Mtu { .. })
    ));
    let mut routes = default_routes();
    routes[0].hop.port = 5;
    assert!(matches!(
        Router::new(ports(1500), &routes, cfg),
        Err(RouterBuildError::RoutePort { .. })
    ));
}

#[test]
fn arp_requests_for_our_address_are_answered_and_learnt() {
    let r = router();
    let mut st: St = r.new_state(0);
    let req = builder::arp_request(HOST, v4("10.0.0.2"), v4("10.0.0.1"));
    let (act, out, rel) = l2(&r, &mut st, 0, &req, 0);
    assert_eq!(act, L2Action::Consumed);
    assert!(rel.is_empty());
    assert_eq!(
        out,
        vec![(
            0,
            builder::arp_reply(IN_MAC, v4("10.0.0.1"), HOST, v4("10.0.0.2"))
        )]
    );
    assert_eq!(st.stats.arp_answered, 1);
    assert_eq!(
        st.neigh.get(0, &a("10.0.0.2")),
        Some((NeighState::Stale, HOST))
    );

    // For someone else's address: no answer, nothing created.
    let other = builder::arp_request(HOST, v4("10.0.0.3"), v4("10.0.0.9"));
    let (act, out, _) = l2(&r, &mut st, 0, &other, 0);
    assert_eq!((act, out.len()), (L2Action::Consumed, 0));
    assert_eq!(st.neigh.get(0, &a("10.0.0.3")), None);
    // For the outside address, asked on the inside port: not answered (arp_ignore=1).
    let wrong_port = builder::arp_request(HOST, v4("10.0.0.2"), v4("203.0.113.1"));
    assert!(l2(&r, &mut st, 0, &wrong_port, 0).1.is_empty());
    // From a sender outside the port's subnets: answered, not learnt.
    let off_link = builder::arp_request(HOST, v4("192.168.9.9"), v4("10.0.0.1"));
    assert_eq!(l2(&r, &mut st, 0, &off_link, 0).1.len(), 1);
    assert_eq!(st.neigh.get(0, &a("192.168.9.9")), None);
    // An ARP probe (sender 0.0.0.0, RFC 5227) is answered, and learns nothing.
    let probe = builder::arp_request(HOST, v4("0.0.0.0"), v4("10.0.0.1"));
    assert_eq!(l2(&r, &mut st, 0, &probe, 0).1.len(), 1);
    assert_eq!(st.neigh.len(), 1);
}

#[test]
fn frames_not_for_us_tagged_or_not_ip_are_dropped() {
    let r = router();
    let mut st: St = r.new_state(0);
    let mut f = from_host("198.51.100.7", 64, 4);
    f[..6].copy_from_slice(&[2, 9, 9, 9, 9, 9]);
    assert_eq!(
        l2(&r, &mut st, 0, &f, 0).0,
        L2Action::Drop(RouterDrop::NotForUs)
    );
    // To the other port's MAC: not ours on this port.
    f[..6].copy_from_slice(&OUT_MAC.0);
    assert_eq!(
        l2(&r, &mut st, 0, &f, 0).0,
        L2Action::Drop(RouterDrop::NotForUs)
    );
    f[..6].copy_from_slice(&IN_MAC.0);
    assert_eq!(l2(&r, &mut st, 0, &f, 0).0, L2Action::Ip);
    let mut tagged = FrameSpec::new(ipv4("10.0.0.2", "8.8.8.8", 64), L4Spec::udp(1, 2, b"x"));
    tagged.dst_mac = IN_MAC;
    tagged.vlans[0] = Some(VlanTag::new(0x8100, 0, false, 5));
    let t = tagged.build();
    assert_eq!(
        l2(&r, &mut st, 0, &t, 0).0,
        L2Action::Drop(RouterDrop::Tagged)
    );
    let mut other = f.clone();
    other[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    assert_eq!(
        l2(&r, &mut st, 0, &other, 0).0,
        L2Action::Drop(RouterDrop::NonIp)
    );
    assert_eq!(
        r.input_l2(&mut st, 9, &f, &info(&f), 0, &mut Vec::new(), |_, _| {}),
        L2Action::Drop(RouterDrop::BadPort)
    );
    assert_eq!(st.stats.drop_count(RouterDrop::NotForUs), 2);
    assert_eq!(st.stats.drop_count(RouterDrop::Tagged), 1);
    assert_eq!(st.stats.drop_count(RouterDrop::NonIp), 1);
    // Broadcast and multicast destinations pass the MAC check.
    let bcast = builder::arp_request(HOST, v4("10.0.0.2"), v4("10.0.0.1"));
    assert_eq!(bcast[..6], [0xff; 6]);
    assert_eq!(l2(&r, &mut st, 0, &bcast, 0).0, L2Action::Consumed);
}

#[test]
fn neighbour_solicitations_are_answered_and_learnt() {
    let r = router();
    let mut st: St = r.new_state(0);
    for target in ["fd00::1".parse().unwrap(), link_local_of(IN_MAC)] {
        let mut ns = [0u8; MAX_FRAME];
        let n = ndisc::neighbour_solicitation(&mut ns, HOST, v6("fd00::2"), target, None);
        let (act, out, _) = l2(&r, &mut st, 0, &ns[..n], 0);
        assert_eq!(act, L2Action::Consumed);
        assert_eq!(out.len(), 1, "{target}");
        let (port, na) = &out[0];
        assert_eq!(*port, 0);
        let adv = ndisc::read_nd(na, &info(na)).expect("valid NA");
        assert!(!adv.solicitation && adv.solicited && adv.router);
        assert_eq!(
            (adv.src, adv.dst, adv.target, adv.lladdr),
            (target, v6("fd00::2"), target, Some(IN_MAC))
        );
        assert_eq!(na[..6], HOST.0);
    }
    assert_eq!(st.stats.nd_answered, 2);
    assert_eq!(
        st.neigh.get(0, &a("fd00::2")),
        Some((NeighState::Stale, HOST))
    );
    // A solicitation for an address that is not ours (or on the wrong port): no answer.
    let mut ns = [0u8; MAX_FRAME];
    let n = ndisc::neighbour_solicitation(&mut ns, HOST, v6("fd00::2"), v6("fd00::7"), None);
    assert!(l2(&r, &mut st, 0, &ns[..n], 0).1.is_empty());
    let n = ndisc::neighbour_solicitation(&mut ns, HOST, v6("fd00::2"), v6("2001:db8::1"), None);
    assert!(l2(&r, &mut st, 0, &ns[..n], 0).1.is_empty());
    // A corrupted one is a counted drop.
    let n = ndisc::neighbour_solicitation(&mut ns, HOST, v6("fd00::2"), v6("fd00::1"), None);
    ns[n - 1] ^= 0xff;
    assert_eq!(
        l2(&r, &mut st, 0, &ns[..n], 0).0,
        L2Action::Drop(RouterDrop::BadNd)
    );
    // Router solicitations are consumed without an answer.
    let mut rs = spec(
        HOST,
        MacAddr([0x33, 0x33, 0, 0, 0, 2]),
        ipv6("fe80::2", "ff02::2", 255),
        L4Spec::Icmpv6 {
            ty: icmpv6::msg_type::ROUTER_SOLICIT,
            code: 0,
            ident: 0,
            seq: 0,
            payload: vec![],
        },
    );
    rs.vlans = [None; 2];
    let rs = rs.build();
    let (act, out, _) = l2(&r, &mut st, 0, &rs, 0);
    assert_eq!((act, out.len()), (L2Action::Consumed, 0));
}

#[test]
fn echo_request_v4_gets_a_reply_with_correct_checksums() {
    let r = router();
    let mut st: St = r.new_state(0);
    learn_host(&r, &mut st);
    let payload = b"abcdefghijklmnopqrstuvwxyz".to_vec();
    // DF on the request; Linux's reply has none (its ICMP socket does not set it).
    let mut ip = ipv4("10.0.0.2", "10.0.0.1", 5);
    if let IpSpec::V4 { dont_frag, .. } = &mut ip {
        *dont_frag = true;
    }
    let req = spec(
        HOST,
        IN_MAC,
        ip,
        L4Spec::Icmp {
            ty: 8,
            code: 0,
            ident: 0x1234,
            seq: 7,
            payload: payload.clone(),
        },
    )
    .build();
    let mut out = Vec::new();
    let res = r.local_ip(&mut st, 0, req.clone(), &info(&req), 0, &mut out);
    let want = spec(
        IN_MAC,
        HOST,
        ipv4("10.0.0.1", "10.0.0.2", 64),
        L4Spec::Icmp {
            ty: 0,
            code: 0,
            ident: 0x1234,
            seq: 7,
            payload,
        },
    )
    .build();
    assert_eq!(res, Forwarded::Send { port: 0, pkt: want });
    assert_eq!(st.stats.echo_replies, 1);
    // The host was learnt from its request (Stale): one unicast probe goes with the reply.
    assert_eq!(out.len(), 1);
    let probe = &out[0].1;
    assert_eq!(probe[..6], HOST.0);
    assert!(ndisc::read_arp(probe, &info(probe)).unwrap().request);
}

#[test]
fn echo_request_v6_gets_a_reply_with_correct_checksums() {
    let r = router();
    let mut st: St = r.new_state(0);
    learn_host(&r, &mut st);
    let req = spec(
        HOST,
        IN_MAC,
        ipv6("fd00::2", "2001:db8::1", 9),
        L4Spec::Icmpv6 {
            ty: 128,
            code: 0,
            ident: 0x4321,
            seq: 1,
            payload: vec![1, 2, 3],
        },
    )
    .build();
    let mut out = Vec::new();
    let res = r.local_ip(&mut st, 0, req.clone(), &info(&req), 0, &mut out);
    let want = spec(
        IN_MAC,
        HOST,
        ipv6("2001:db8::1", "fd00::2", 64),
        L4Spec::Icmpv6 {
            ty: 129,
            code: 0,
            ident: 0x4321,
            seq: 1,
            payload: vec![1, 2, 3],
        },
    )
    .build();
    assert_eq!(res, Forwarded::Send { port: 0, pkt: want });
    // From a link-local source: the reply goes back out of the ingress port.
    let ll = spec(
        HOST,
        IN_MAC,
        ipv6("fe80::2", &link_local_of(IN_MAC).to_string(), 64),
        L4Spec::icmpv6_echo(1, 1),
    )
    .build();
    let mut out = Vec::new();
    assert_eq!(
        r.local_ip(&mut st, 0, ll.clone(), &info(&ll), 0, &mut out),
        Forwarded::Queued
    );
    let ns = &out[0].1;
    let seen = ndisc::read_nd(ns, &info(ns)).unwrap();
    assert_eq!((out[0].0, seen.target), (0, v6("fe80::2")));
    assert_eq!(seen.src, link_local_of(IN_MAC));
}

#[test]
fn other_local_traffic_is_dropped() {
    let r = router();
    let mut st: St = r.new_state(0);
    learn_host(&r, &mut st);
    let mut out = Vec::new();
    let mut local = |st: &mut St, f: Vec<u8>| {
        let i = info(&f);
        match r.local_ip(st, 0, f, &i, 0, &mut out) {
            Forwarded::Dropped(_, d) => Some(d),
            _ => None,
        }
    };
    let udp = spec(
        HOST,
        IN_MAC,
        ipv4("10.0.0.2", "10.0.0.1", 64),
        L4Spec::udp(1, 22, b"x"),
    )
    .build();
    assert_eq!(local(&mut st, udp), Some(RouterDrop::NoService));
    let bcast = spec(
        HOST,
        MacAddr::BROADCAST,
        ipv4("10.0.0.2", "10.0.0.255", 64),
        L4Spec::icmp_echo(1, 1),
    )
    .build();
    assert_eq!(local(&mut st, bcast), Some(RouterDrop::NotUnicast));
    let mut bad = spec(
        HOST,
        IN_MAC,
        ipv4("10.0.0.2", "10.0.0.1", 64),
        L4Spec::icmp_echo(1, 1),
    )
    .build();
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    assert_eq!(local(&mut st, bad), Some(RouterDrop::BadLocal));
    let frags = spec(
        HOST,
        IN_MAC,
        ipv4("10.0.0.2", "10.0.0.1", 64),
        L4Spec::Icmp {
            ty: 8,
            code: 0,
            ident: 1,
            seq: 1,
            payload: vec![0; 3000],
        },
    )
    .fragments(1400);
    assert_eq!(local(&mut st, frags[0].clone()), Some(RouterDrop::BadLocal));
    assert_eq!(st.stats.echo_replies, 0);
}

#[test]
fn forwarding_resolves_queues_and_releases() {
    let r = router();
    let mut st: St = r.new_state(0);
    let f = from_host("198.51.100.7", 64, 4);
    let (res, out) = forward(&r, &mut st, &f, hop_v4(), 0);
    assert_eq!(res, Forwarded::Queued);
    assert_eq!(
        out,
        vec![(
            1,
            builder::arp_request(OUT_MAC, v4("203.0.113.1"), v4("203.0.113.254"))
        )]
    );
    let (res, out) = forward(&r, &mut st, &f, hop_v4(), 1);
    assert_eq!(
        (res, out.len()),
        (Forwarded::Queued, 0),
        "one request at a time"
    );
    let reply = builder::arp_reply(GW, v4("203.0.113.254"), OUT_MAC, v4("203.0.113.1"));
    let (act, out, released) = l2(&r, &mut st, 1, &reply, 2);
    assert_eq!((act, out.len()), (L2Action::Consumed, 0));
    let want = spec(
        OUT_MAC,
        GW,
        ipv4("10.0.0.2", "198.51.100.7", 63),
        L4Spec::udp(1000, 53, &[0x5a; 4]),
    )
    .build();
    assert_eq!(released, vec![(1, want.clone()), (1, want.clone())]);
    assert_eq!(st.stats.released, 2);
    assert_eq!(
        st.neigh.get(1, &a("203.0.113.254")),
        Some((NeighState::Reachable, GW))
    );
    // Resolved: sent at once, no probe.
    let (res, out) = forward(&r, &mut st, &f, hop_v4(), 3);
    assert_eq!(res, Forwarded::Send { port: 1, pkt: want });
    assert!(out.is_empty());
}

#[test]
fn a_full_queue_or_table_is_a_counted_drop() {
    let cfg = RouterConfig {
        neigh: NeighConfig {
            capacity: 1,
            queue_len: 1,
            ..NeighConfig::default()
        },
        ..RouterConfig::default()
    };
    let r = router_with(cfg, 1500);
    let mut st: St = r.new_state(0);
    let f = from_host("198.51.100.7", 64, 4);
    assert_eq!(forward(&r, &mut st, &f, hop_v4(), 0).0, Forwarded::Queued);
    assert!(matches!(
        forward(&r, &mut st, &f, hop_v4(), 0).0,
        Forwarded::Dropped(_, RouterDrop::NeighQueueFull)
    ));
    let direct = NextHop {
        port: 1,
        gateway: None,
    };
    let g = from_host("203.0.113.9", 64, 4);
    assert!(matches!(
        forward(&r, &mut st, &g, direct, 0).0,
        Forwarded::Dropped(_, RouterDrop::NeighTableFull)
    ));
    assert_eq!(st.stats.drop_count(RouterDrop::NeighQueueFull), 1);
    assert_eq!(st.stats.drop_count(RouterDrop::NeighTableFull), 1);
}

#[test]
fn ttl_expiry_sends_time_exceeded_before_the_decrement() {
    let r = router();
    let mut st: St = r.new_state(0);
    let f = from_host("198.51.100.7", 1, 8);
    // The host's address is not known yet: the error cannot be sent.
    let (res, out) = forward(&r, &mut st, &f, hop_v4(), 0);
    assert!(matches!(res, Forwarded::Dropped(_, RouterDrop::TtlExpired)));
    assert!(out.is_empty());
    assert_eq!(st.stats.icmp_unresolved, 1);
    learn_host(&r, &mut st);
    let (res, out) = forward(&r, &mut st, &f, hop_v4(), 0);
    let Forwarded::Dropped(back, RouterDrop::TtlExpired) = res else {
        panic!("{res:?}")
    };
    assert_eq!(back, f, "untouched");
    assert_eq!(out.len(), 1);
    let (port, e) = &out[0];
    assert_eq!(*port, 0);
    assert_eq!((&e[..6], &e[6..12]), (&HOST.0[..], &IN_MAC.0[..]));
    let ei = info(e);
    let k = ei.flow.unwrap();
    assert_eq!((k.src, k.dst), (a("10.0.0.1"), a("10.0.0.2")));
    let icmp = ei.l4_bytes(e).unwrap();
    assert_eq!((icmp[0], icmp[1]), (11, 0));
    assert_eq!(checksum::checksum(icmp), 0);
    assert_eq!(&icmp[8..], &f[14..], "the datagram as received");
    assert_eq!(st.stats.drop_count(RouterDrop::TtlExpired), 2);
    assert_eq!(st.stats.icmp_sent, 1);
    // IPv6 likewise.
    let g = from_host6("2606:4700::1", 1, 8);
    let (res, out) = forward(&r, &mut st, &g, hop_v6(), 0);
    assert!(matches!(res, Forwarded::Dropped(_, RouterDrop::TtlExpired)));
    let e = &out[0].1;
    let m = info(e).l4_bytes(e).unwrap().to_vec();
    assert_eq!((m[0], m[1]), (3, 0));
    assert!(PseudoHeader::V6 {
        src: v6("fd00::1"),
        dst: v6("fd00::2")
    }
    .verify(ip_proto::ICMPV6, &m));
}

#[test]
fn too_big_frag_needed_packet_too_big_and_no_fragmentation() {
    let r = router_with(RouterConfig::default(), 1400);
    let mut st: St = r.new_state(0);
    learn_host(&r, &mut st);
    let mut df = spec(
        HOST,
        IN_MAC,
        ipv4("10.0.0.2", "198.51.100.7", 64),
        L4Spec::udp(1, 2, &[0; 1472]),
    );
    if let IpSpec::V4 { dont_frag, .. } = &mut df.ip {
        *dont_frag = true;
    }
    let f = df.build();
    let (res, out) = forward(&r, &mut st, &f, hop_v4(), 0);
    assert!(matches!(res, Forwarded::Dropped(_, RouterDrop::TooBig)));
    let e = &out[0].1;
    let icmp = info(e).l4_bytes(e).unwrap().to_vec();
    assert_eq!((icmp[0], icmp[1]), (3, 4));
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1400);
    // Without DF: Rampart does not fragment; no error either.
    let f = from_host("198.51.100.7", 64, 1472);
    let (res, out) = forward(&r, &mut st, &f, hop_v4(), 0);
    assert!(matches!(
        res,
        Forwarded::Dropped(_, RouterDrop::NeedsFragmentation)
    ));
    assert!(out.is_empty());
    // Exactly the MTU passes.
    let f = from_host("198.51.100.7", 64, 1400 - 28);
    assert_eq!(forward(&r, &mut st, &f, hop_v4(), 0).0, Forwarded::Queued);
    // IPv6: packet too big with the 32-bit MTU.
    let g = from_host6("2606:4700::1", 64, 1400);
    let (res, out) = forward(&r, &mut st, &g, hop_v6(), 0);
    assert!(matches!(res, Forwarded::Dropped(_, RouterDrop::TooBig)));
    let e = &out[0].1;
    let m = info(e).l4_bytes(e).unwrap().to_vec();
    assert_eq!((m[0], m[1]), (2, 0));
    assert_eq!(u32::from_be_bytes([m[4], m[5], m[6], m[7]]), 1400);
    assert_eq!(st.stats.drop_count(RouterDrop::TooBig), 2);
    assert_eq!(st.stats.drop_count(RouterDrop::NeedsFragmentation), 1);
}

#[test]
fn no_route_sends_net_unreachable() {
    let r = Router::new(ports(1500), &[], RouterConfig::default()).unwrap();
    let mut st: St = r.new_state(0);
    learn_host(&r, &mut st);
    for (f, ty) in [
        (from_host("198.51.100.7", 64, 4), 3u8),
        (from_host6("2606:4700::1", 64, 4), 1),
    ] {
        let i = info(&f);
        let k = i.flow.unwrap();
        assert_eq!(r.decide(k.family, &k.dst), Egress::Unreachable);
        let mut out = Vec::new();
        r.unreachable(&mut st, 0, &f, &i, 0, &mut out);
        let e = &out[0].1;
        let m = info(e).l4_bytes(e).unwrap().to_vec();
        assert_eq!((out[0].0, m[0], m[1]), (0, ty, 0));
    }
    assert_eq!(st.stats.drop_count(RouterDrop::NoRoute), 2);
}

#[test]
fn icmp_errors_are_rate_limited() {
    let cfg = RouterConfig {
        icmp: IcmpLimit {
            per_sec: 1,
            burst: 2,
        },
        ..RouterConfig::default()
    };
    let r = router_with(cfg, 1500);
    let mut st: St = r.new_state(0);
    learn_host(&r, &mut st);
    let f = from_host("198.51.100.7", 1, 4);
    let sent = |st: &mut St, now| forward(&r, st, &f, hop_v4(), now).1.len();
    assert_eq!(
        (sent(&mut st, 0), sent(&mut st, 0), sent(&mut st, 0)),
        (1, 1, 0)
    );
    assert_eq!(st.stats.icmp_ratelimited, 1);
    assert_eq!(sent(&mut st, S / 2), 0);
    assert_eq!(sent(&mut st, S), 1, "a token a second");
    assert_eq!(st.stats.drop_count(RouterDrop::TtlExpired), 5);
    // Unlimited.
    let r = router_with(
        RouterConfig {
            icmp: IcmpLimit {
                per_sec: 0,
                burst: 1,
            },
            ..RouterConfig::default()
        },
        1500,
    );
    let mut st: St = r.new_state(0);
    learn_host(&r, &mut st);
    for _ in 0..100 {
        assert_eq!(forward(&r, &mut st, &f, hop_v4(), 0).1.len(), 1);
    }
}

#[test]
fn tick_retries_then_fails_with_host_unreachable() {
    let r = router();
    let mut st: St = r.new_state(0);
    learn_host(&r, &mut st);
    let direct = NextHop {
        port: 1,
        gateway: None,
    };
    let f = from_host("203.0.113.9", 64, 4);
    let (res, out) = forward(&r, &mut st, &f, direct, 0);
    assert_eq!(res, Forwarded::Queued);
    assert_eq!(out.len(), 1);
    let mut failed = Vec::new();
    for s in 1..=2 {
        let mut out = Vec::new();
        r.tick(&mut st, s * S, &mut out, |p| failed.push(p));
        assert_eq!(
            out,
            vec![(
                1,
                builder::arp_request(OUT_MAC, v4("203.0.113.1"), v4("203.0.113.9"))
            )],
            "retry {s}"
        );
    }
    let mut out = Vec::new();
    r.tick(&mut st, 3 * S, &mut out, |p| failed.push(p));
    assert_eq!(failed.len(), 1);
    assert_eq!(st.stats.drop_count(RouterDrop::NeighFailed), 1);
    assert_eq!(out.len(), 1, "host unreachable toward the source");
    let (port, e) = &out[0];
    assert_eq!((*port, &e[..6]), (0, &HOST.0[..]));
    let m = info(e).l4_bytes(e).unwrap().to_vec();
    assert_eq!((m[0], m[1]), (3, 1));
    assert_eq!(st.stats.solicits_sent, 3);
}

#[test]
fn ipv6_resolution_uses_solicited_node_multicast() {
    let r = router();
    let mut st: St = r.new_state(0);
    let direct = NextHop {
        port: 1,
        gateway: None,
    };
    let f = from_host6("2001:db8::7", 64, 4);
    let (res, out) = forward(&r, &mut st, &f, direct, 0);
    assert_eq!(res, Forwarded::Queued);
    let (port, ns) = &out[0];
    assert_eq!((*port, &ns[..6]), (1, &[0x33, 0x33, 0xff, 0, 0, 7][..]));
    let seen = ndisc::read_nd(ns, &info(ns)).unwrap();
    assert!(seen.solicitation);
    assert_eq!(
        (seen.src, seen.target, seen.lladdr),
        (v6("2001:db8::1"), v6("2001:db8::7"), Some(OUT_MAC))
    );
    let srv = MacAddr([2, 0, 0, 0, 0, 7]);
    let mut na = [0u8; MAX_FRAME];
    let n = ndisc::neighbour_advertisement(
        &mut na,
        srv,
        v6("2001:db8::7"),
        OUT_MAC,
        v6("2001:db8::1"),
        true,
    );
    let (act, _, released) = l2(&r, &mut st, 1, &na[..n], 1);
    assert_eq!(act, L2Action::Consumed);
    let want = spec(
        OUT_MAC,
        srv,
        ipv6("fd00::2", "2001:db8::7", 63),
        L4Spec::udp(1000, 53, &[0x5a; 4]),
    )
    .build();
    assert_eq!(released, vec![(1, want)]);
    assert_eq!(
        st.neigh.get(1, &a("2001:db8::7")),
        Some((NeighState::Reachable, srv))
    );
    // An unsolicited advertisement for an unknown address creates nothing.
    let n = ndisc::neighbour_advertisement(
        &mut na,
        srv,
        v6("2001:db8::8"),
        MacAddr([0x33, 0x33, 0, 0, 0, 1]),
        ndisc::ALL_NODES,
        false,
    );
    l2(&r, &mut st, 1, &na[..n], 1);
    assert_eq!(st.neigh.get(1, &a("2001:db8::8")), None);
}

#[test]
fn learn_gateway_then_forward_v4() {
    let r = router();
    let mut st: St = r.new_state(0);
    assert_eq!(learn_gateway(&r, &mut st, 0).len(), 1);
    let f = from_host("8.8.8.8", 10, 4);
    let Forwarded::Send { port, pkt } = forward(&r, &mut st, &f, hop_v4(), 0).0 else {
        panic!()
    };
    assert_eq!(port, 1);
    let i = info(&pkt);
    assert_eq!(pkt[14 + 8], 9);
    // The header checksum still verifies.
    assert_eq!(checksum::checksum(&pkt[14..14 + 20]), 0);
    assert_eq!(i.flow, info(&f).flow);
}

/// The neighbour a packet is sent to is the entry as it is now: a new address from an
/// ARP reply is used by the next packet, and an entry removed (unused past `gc_ns`) sends the
/// next packet to resolution, even when another neighbour has taken its slot since.
#[test]
fn neighbour_changes_reach_the_next_packet() {
    let r = router();
    let mut st: St = r.new_state(0);
    learn_gateway(&r, &mut st, 0);
    let send = |st: &mut St, now| {
        let f = from_host("8.8.8.8", 10, 4);
        forward(&r, st, &f, hop_v4(), now).0
    };
    let Forwarded::Send { pkt, .. } = send(&mut st, 0) else {
        panic!()
    };
    assert_eq!(pkt[..6], GW.0);
    // The gateway moves to another MAC: an answer says so.
    let moved = MacAddr([2, 0, 0, 0, 0, 0xfd]);
    let reply = builder::arp_reply(moved, v4("203.0.113.254"), OUT_MAC, v4("203.0.113.1"));
    assert_eq!(l2(&r, &mut st, 1, &reply, S).0, L2Action::Consumed);
    let Forwarded::Send { pkt, .. } = send(&mut st, S) else {
        panic!()
    };
    assert_eq!(pkt[..6], moved.0);
    // Unused until it is removed; a host on the outside link takes its slot.
    let gc = RouterConfig::default().neigh.gc_ns;
    let mut out = Vec::new();
    r.tick(&mut st, 2 * S + gc, &mut out, drop);
    r.tick(&mut st, 3 * S + 2 * gc, &mut out, drop);
    assert_eq!(st.neigh.get(1, &a("203.0.113.254")), None);
    let other = MacAddr([2, 0, 0, 0, 0, 0x77]);
    let req = builder::arp_request(other, v4("203.0.113.9"), v4("203.0.113.1"));
    assert_eq!(
        l2(&r, &mut st, 1, &req, 4 * S + 2 * gc).0,
        L2Action::Consumed
    );
    assert!(st.neigh.get(1, &a("203.0.113.9")).is_some());
    assert_eq!(send(&mut st, 4 * S + 2 * gc), Forwarded::Queued);
}

#[test]
fn martian_sources_are_refused() {
    let r = router();
    for (f, s, ok) in [
        (Family::V4, "10.0.0.2", true),
        (Family::V4, "127.0.0.1", false),
        (Family::V4, "0.0.0.0", false),
        (Family::V4, "224.0.0.1", false),
        (Family::V4, "255.255.255.255", false),
        (Family::V4, "10.0.0.1", false),
        (Family::V6, "fd00::2", true),
        (Family::V6, "::1", false),
        (Family::V6, "::", false),
        (Family::V6, "ff02::1", false),
        (Family::V6, "fd00::1", false),
    ] {
        assert_eq!(r.accept_source(f, &a(s), true), ok, "{s}");
    }
    assert!(!r.accept_source(Family::V6, &a("fe80::2"), true));
    assert!(r.accept_source(Family::V6, &a("fe80::2"), false));
    let mut st: St = r.new_state(0);
    r.note_martian(&mut st);
    let lo = spec(
        HOST,
        IN_MAC,
        ipv4("127.0.0.1", "8.8.8.8", 64),
        L4Spec::udp(1, 2, b"x"),
    )
    .build();
    assert!(matches!(
        forward(&r, &mut st, &lo, hop_v4(), 0).0,
        Forwarded::Dropped(_, RouterDrop::Martian)
    ));
    assert_eq!(st.stats.drop_count(RouterDrop::Martian), 2);
}

#[test]
fn nat_addresses_are_answered_and_local_but_never_a_source() {
    let mut p = ports(1500);
    p[1].nat_addrs.push(a("203.0.113.50"));
    let r = Router::new(p, &default_routes(), RouterConfig::default()).unwrap();
    assert!(r.is_local(&a("203.0.113.50")));
    assert_eq!(r.decide(Family::V4, &a("203.0.113.50")), Egress::Local);
    assert_eq!(
        r.source_for(1, Family::V4, &a("203.0.113.50")),
        Some(a("203.0.113.1"))
    );
    let mut st: St = r.new_state(0);
    let req = builder::arp_request(GW, v4("203.0.113.254"), v4("203.0.113.50"));
    let (_, out, _) = l2(&r, &mut st, 1, &req, 0);
    assert_eq!(
        out,
        vec![(
            1,
            builder::arp_reply(OUT_MAC, v4("203.0.113.50"), GW, v4("203.0.113.254"))
        )]
    );
}

#[test]
fn bucket_arithmetic_does_not_overflow() {
    let mut b = TokenBucket::new(
        IcmpLimit {
            per_sec: u32::MAX,
            burst: u32::MAX,
        },
        0,
    );
    assert!(b.take(u64::MAX));
    assert!(b.take(0), "time going backwards is ignored");
    let mut z = TokenBucket::new(
        IcmpLimit {
            per_sec: 10,
            burst: 0,
        },
        0,
    );
    assert!(z.take(0), "a burst of 0 counts as 1");
    assert!(!z.take(0));
}

fn any_hop() -> impl Strategy<Value = NextHop> {
    (0u8..3, any::<bool>()).prop_map(|(port, gw)| NextHop {
        port,
        gateway: gw.then(|| a("203.0.113.254")),
    })
}

fn exercise(r: &Router, st: &mut St, data: &[u8], hop: NextHop, now: u64) {
    let Ok(i) = parse_frame(data) else {
        return;
    };
    let mut out = Vec::new();
    for port in 0..3 {
        let _ = r.input_l2(st, port, data, &i, now, &mut out, |_, _| {});
        let _ = r.local_ip(st, port, data.to_vec(), &i, now, &mut out);
        let _ = r.forward(st, port, data.to_vec(), &i, hop, now, &mut out);
        r.unreachable(st, port, data, &i, now, &mut out);
    }
    if let Some(k) = i.flow {
        let _ = r.decide(k.family, &k.dst);
        let _ = r.accept_source(k.family, &k.src, true);
    }
    r.tick(st, now, &mut out, drop);
}

proptest! {
    /// Arbitrary bytes never panic any entry point.
    #[test]
    fn arbitrary_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..200),
        hop in any_hop(),
        now in 0u64..10 * S,
    ) {
        let r = router();
        let mut st: St = r.new_state(0);
        learn_host(&r, &mut st);
        exercise(&r, &mut st, &data, hop, now);
    }

    /// Valid frames with bytes flipped (so that most still parse) never panic either.
    #[test]
    fn mutated_frames_never_panic(
        which in 0usize..6,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        hop in any_hop(),
        now in 0u64..10 * S,
    ) {
        let r = router_with(RouterConfig::default(), 1280);
        let mut st: St = r.new_state(0);
        learn_host(&r, &mut st);
        let mut ns = [0u8; MAX_FRAME];
        let n = ndisc::neighbour_solicitation(&mut ns, HOST, v6("fd00::2"), v6("fd00::1"), None);
        let mut f = match which {
            0 => from_host("198.51.100.7", 2, 40),
            1 => from_host6("2606:4700::1", 2, 1300),
            2 => builder::arp_request(HOST, v4("10.0.0.2"), v4("10.0.0.1")),
            3 => ns[..n].to_vec(),
            4 => spec(HOST, IN_MAC, ipv4("10.0.0.2", "10.0.0.1", 64), L4Spec::icmp_echo(1, 1)).build(),
            _ => spec(HOST, IN_MAC, ipv6("fd00::2", "fd00::1", 64), L4Spec::icmpv6_echo(1, 1)).build(),
        };
        for (at, x) in flips {
            let len = f.len();
            f[at % len] ^= x;
        }
        exercise(&r, &mut st, &f, hop, now);
    }
}

/// `decide` as it was before it read one table: the router's own addresses, multicast, the
/// martian ranges and the broadcasts tested in turn over lists, then the routes alone.
fn decide_by_lists(
    local: &[IpAddr128],
    broadcasts: &[IpAddr128],
    routes: &crate::route::RouteTable,
    family: Family,
    dst: &IpAddr128,
) -> Egress {
    match family {
        Family::V4 => {
            if !dst.is_v4() {
                return Egress::Martian;
            }
            let first = dst.0[12];
            if local.contains(dst) || (224..240).contains(&first) {
                return Egress::Local;
            }
            if first == 0 || first == 127 || first >= 240 {
                return if broadcasts.contains(dst) {
                    Egress::Local
                } else {
                    Egress::Martian
                };
            }
            if broadcasts.contains(dst) {
                return Egress::Local;
            }
        }
        Family::V6 => {
            if dst.0[0] == 0xff {
                return Egress::Local;
            }
            if dst.is_v4() {
                return Egress::Martian;
            }
            if local.contains(dst) {
                return Egress::Local;
            }
            if u128::from_be_bytes(dst.0) <= 1 || is_link_local_v6(dst) {
                return Egress::Martian;
            }
        }
    }
    match routes.lookup(family, dst) {
        Some(hop) => Egress::Forward(*hop),
        None => Egress::Unreachable,
    }
}

/// Addresses near the edges `decide` cares about: the martian and multicast ranges, the
/// broadcasts, a few subnets.
fn edgy_v4() -> impl Strategy<Value = IpAddr128> {
    (
        prop::sample::select(vec![
            0u8, 10, 126, 127, 128, 192, 203, 223, 224, 239, 240, 255,
        ]),
        prop::sample::select(vec![0u8, 1, 255]),
        prop::sample::select(vec![0u8, 1, 2, 255]),
        prop::sample::select(vec![0u8, 1, 2, 3, 4, 127, 128, 254, 255]),
    )
        .prop_map(|(a, b, c, d)| IpAddr128::from_v4_octets([a, b, c, d]))
}

fn edgy_v6() -> impl Strategy<Value = IpAddr128> {
    (
        prop::sample::select(vec![
            0u128,
            0xffff << 32,
            0xfe80 << 112,
            0xfec0 << 112,
            0xfd00 << 112,
            0x2001_0db8 << 96,
            0xff02 << 112,
        ]),
        prop::sample::select(vec![0u128, 1, 2, 0xff, 1 << 64, 0x0a00_0001]),
    )
        .prop_map(|(hi, lo)| IpAddr128((hi | lo).to_be_bytes()))
}

fn edgy() -> impl Strategy<Value = IpAddr128> {
    prop_oneof![edgy_v4(), edgy_v6()]
}

fn family_of(a: &IpAddr128) -> Family {
    if a.is_v4() {
        Family::V4
    } else {
        Family::V6
    }
}

proptest! {
    /// `decide` and `is_local`, one lookup each, answer as the lists and the route table did,
    /// for routers with addresses, 1:1 addresses and routes anywhere (inside the martian and
    /// multicast ranges too), and destinations on every edge.
    #[test]
    fn decide_matches_the_lists(
        addrs in proptest::collection::vec((0usize..3, edgy(), 0u8..=32), 0..6),
        nat in proptest::collection::vec((0usize..3, edgy()), 0..3),
        routes in proptest::collection::vec((edgy(), 0u8..=40, 0u8..3, any::<bool>(), edgy()), 0..8),
        dsts in proptest::collection::vec(edgy(), 1..24),
    ) {
        let macs = [IN_MAC, OUT_MAC, MacAddr([2, 0, 0, 0, 0, 0x33])];
        let mut ports: Vec<PortL3> = macs.iter().map(|&m| PortL3::new(m, vec![], 1500)).collect();
        for (p, addr, len) in addrs {
            let len = if addr.is_v4() { len } else { len * 4 };
            ports[p].addrs.push(IfAddr { addr, len });
        }
        for (p, addr) in nat {
            ports[p].nat_addrs.push(addr);
        }
        let routes: Vec<Route> = routes
            .into_iter()
            .map(|(prefix, len, port, gw, via)| {
                let family = family_of(&prefix);
                let v = u128::from_be_bytes(prefix.0);
                let (len, net) = if prefix.is_v4() {
                    let len = len.min(32);
                    let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                    (len, IpAddr128::from_v4_octets((v as u32 & m).to_be_bytes()))
                } else {
                    let len = (len * 4).min(128);
                    let m = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
                    (len, IpAddr128((v & m).to_be_bytes()))
                };
                let gateway = (gw && via.is_v4() == prefix.is_v4()).then_some(via);
                Route { family, prefix: net, len, hop: NextHop { port, gateway } }
            })
            .collect();
        let Ok(r) = Router::new(ports.clone(), &routes, RouterConfig::default()) else {
            return Ok(());
        };
        // The lists and the table as `Router::new` made them before.
        let mut local = Vec::new();
        let mut broadcasts = vec![IpAddr128::from_v4(Ipv4Addr::BROADCAST)];
        let mut all = routes.clone();
        for (i, p) in ports.iter().enumerate() {
            for x in &p.addrs {
                local.push(x.addr);
                broadcasts.extend(x.broadcast());
                all.push(Route {
                    family: x.family(),
                    prefix: x.network(),
                    len: x.len,
                    hop: NextHop { port: i as u8, gateway: None },
                });
            }
            local.extend(p.nat_addrs.iter().copied());
            local.push(IpAddr128::from_v6(p.link_local()));
        }
        let table = crate::route::RouteTable::new(&all).unwrap();
        let probes = dsts
            .iter()
            .copied()
            .chain(local.iter().copied())
            .chain(broadcasts.iter().copied())
            .chain(all.iter().map(|x| x.prefix));
        for d in probes {
            for f in [Family::V4, Family::V6] {
                prop_assert_eq!(
                    r.decide(f, &d),
                    decide_by_lists(&local, &broadcasts, &table, f, &d),
                    "{:?} {}", f, d
                );
            }
            prop_assert_eq!(r.is_local(&d), local.contains(&d), "{}", d);
        }
    }
}

/// The stateful stage's path (`judge_and_route`, and `judge_and_route_hinted` as the worker
/// runs it) makes the forwarding checks once, on the packet as it arrived: a packet forwarded
/// leaves with its TTL and header checksum updated; one out of TTL, or too big for the out
/// port, is dropped with its error, on a connection's first packet and on its established
/// ones alike.
#[test]
fn the_stateful_path_makes_the_forwarding_checks() {
    use crate::filter::Filter;
    use crate::track::{Tables, TrackConfig};
    use crate::verdict::DropReason;
    let r = router_with(RouterConfig::default(), 1400);
    let filter = Filter::default();
    for hinted in [false, true] {
        let mut tables = Tables::new(&TrackConfig::new(64));
        let mut st: St = r.new_state(0);
        learn_host(&r, &mut st);
        learn_gateway(&r, &mut st, 0);
        let mut run = |st: &mut St, ingress: u16, f: Vec<u8>| {
            let i = info(&f);
            let key = i.flow.unwrap();
            let mut out: Out = Vec::new();
            let fate = if hinted {
                let hint = None;
                let (_, fate) = r.judge_and_route_hinted(
                    st,
                    &filter,
                    &mut tables,
                    ingress,
                    f.clone(),
                    &i,
                    &key,
                    hint,
                    0,
                    &mut out,
                    |_, _, _| {},
                );
                fate
            } else {
                let (_, fate) = r.judge_and_route(
                    st,
                    &filter,
                    &mut tables,
                    ingress,
                    f.clone(),
                    &i,
                    key,
                    0,
                    &mut out,
                    |_, _, _| {},
                );
                fate
            };
            (fate, out)
        };
        let big = |payload: usize, df: bool| {
            let mut s = spec(
                HOST,
                IN_MAC,
                ipv4("10.0.0.2", "198.51.100.7", 64),
                L4Spec::udp(1000, 53, &vec![0; payload]),
            );
            if let IpSpec::V4 { dont_frag, .. } = &mut s.ip {
                *dont_frag = df;
            }
            s.build()
        };
        let reply = spec(
            GW,
            OUT_MAC,
            ipv4("198.51.100.7", "10.0.0.2", 64),
            L4Spec::udp(53, 1000, b"ok"),
        )
        .build();
        for round in 0..2 {
            let (fate, _) = run(&mut st, 0, from_host("198.51.100.7", 10, 4));
            let Fate::Send { port: 1, pkt } = fate else {
                panic!("{fate:?}")
            };
            assert_eq!(pkt[..6], GW.0);
            assert_eq!(pkt[14 + 8], 9, "round {round}");
            assert_eq!(checksum::checksum(&pkt[14..14 + 20]), 0);
            if round == 0 {
                let (fate, _) = run(&mut st, 1, reply.clone());
                assert!(matches!(fate, Fate::Send { port: 0, .. }), "{fate:?}");
            }
            let (fate, out) = run(&mut st, 0, from_host("198.51.100.7", 1, 4));
            assert!(
                matches!(
                    fate,
                    Fate::Dropped(_, DropReason::Router(RouterDrop::TtlExpired))
                ),
                "{fate:?}"
            );
            assert_eq!(out.len(), 1, "time exceeded");
            let (fate, out) = run(&mut st, 0, big(1400 - 28 + 1, true));
            assert!(
                matches!(
                    fate,
                    Fate::Dropped(_, DropReason::Router(RouterDrop::TooBig))
                ),
                "{fate:?}"
            );
            let e = &out[0].1;
            let icmp = info(e).l4_bytes(e).unwrap().to_vec();
            assert_eq!((icmp[0], icmp[1]), (3, 4));
            let (fate, _) = run(&mut st, 0, big(1400 - 28 + 1, false));
            assert!(
                matches!(
                    fate,
                    Fate::Dropped(_, DropReason::Router(RouterDrop::NeedsFragmentation))
                ),
                "{fate:?}"
            );
            let (fate, _) = run(&mut st, 0, big(1400 - 28, true));
            assert!(matches!(fate, Fate::Send { port: 1, .. }), "{fate:?}");
        }
    }
}
